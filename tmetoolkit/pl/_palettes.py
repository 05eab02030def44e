"""Fixed palettes, so the same label has the same colour in every figure and report."""

from __future__ import annotations

from functools import lru_cache

from .. import _keys

_LINEAGE = {
    "CD8 T": "#d62728", "CD4 T": "#ff9896", "NK": "#e377c2", "B": "#1f77b4", "Plasma": "#aec7e8",
    "Monocyte/Macrophage": "#2ca02c", "Neutrophil": "#98df8a", "DC": "#17becf", "Mast": "#9edae5",
    "Fibroblast": "#d9c5a0", "Pericyte": "#bcbd22", "Endothelial": "#9467bd", "Malignant/Epithelial": "#7f7f7f",
    "unassigned": "#dddddd",
}
_STATE_SHADES = {
    "CD8 T": ["#fcbba1", "#fb6a4a", "#cb181d", "#67000d"],
    "CD4 T": ["#fdd0a2", "#fd8d3c", "#a63603"],
    "Monocyte/Macrophage": ["#c7e9c0", "#74c476", "#238b45", "#00441b"],
    "Neutrophil": ["#d9f0a3", "#78c679"],
    "Fibroblast": ["#d8b365", "#8c510a", "#c7a97f"],
}


# at most 12 colours that stay apart for the common colour-vision deficiencies: Paul Tol's "muted" scheme (9) with
# Okabe & Ito's orange, blue and black (Tol 2021, SRON/EPS/TN/09-002; Okabe & Ito 2008, jfly.uni-koeln.de/color)
COLORBLIND_SAFE = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
                   "#AA4499", "#E69F00", "#0072B2", "#000000")
OTHER_COLOR = "#DDDDDD"  # grouped labels and "unassigned"


@lru_cache(maxsize=1)
def lineage_colors() -> dict[str, str]:
    return dict(_LINEAGE)


@lru_cache(maxsize=1)
def state_colors() -> dict[str, str]:
    out = dict(_LINEAGE)
    for lin, states in _keys.STATES.items():
        out.update(dict(zip(states, _STATE_SHADES[lin], strict=True)))
    return out


def phenotype_colors() -> dict[str, str]:
    return dict(_keys.PHENOTYPE_COLORS)

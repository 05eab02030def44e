"""Fixed palettes, so the same label has the same colour in every figure and report."""

from __future__ import annotations

from .. import _keys

# at most 12 colours that stay apart for the common colour-vision deficiencies: Paul Tol's "muted" scheme (9) with
# Okabe & Ito's orange, blue and black (Tol 2021, SRON/EPS/TN/09-002; Okabe & Ito 2008, jfly.uni-koeln.de/color)
COLORBLIND_SAFE = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
                   "#AA4499", "#E69F00", "#0072B2", "#000000")
OTHER_COLOR = "#DDDDDD"  # grouped labels and "unassigned"


def lineage_colors() -> dict[str, str]:
    return _keys.label_colors()


def state_colors() -> dict[str, str]:
    return _keys.state_label_colors()


def phenotype_colors() -> dict[str, str]:
    return dict(_keys.PHENOTYPE_COLORS)


def subset_colors() -> dict[str, str]:
    """Fixed colours of the TAM and CAF subsets (each column's labels in the rules' order, from the colour-blind-safe
    palette) and of the TAM polarization (M1-like and M2-like as the TAM states), grey where no call was made."""
    from .._core.annotation.rules import SUBSET_RULES

    states, grey = state_colors(), _keys.label_colors()["unassigned"]
    out = {"undetermined": grey, "neither": grey, "M1-like": states["TAM M1-like"],
           "M2-like": states["TAM M2-like"], "M1/M2 mixed": "#E69F00"}
    for _, labels in SUBSET_RULES.values():
        out.update(zip(labels, COLORBLIND_SAFE, strict=False))
    return out

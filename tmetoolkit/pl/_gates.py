"""Marker gates of a protein panel: where each marker's positive cells begin, and who was called positive."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .. import _keys
from .._core.checkpoints import PROTEIN_MARKERS
from .._matrix import dense_matrix, get_matrix
from .._utils import TmtInputError, TmtKeyError
from ._utils import style

# how a canonical marker reads in a title: the protein's usual name (the checkpoints' as tl.checkpoints names
# them), or what a marker family stands for
TITLE_NAMES = {**{marker: name for name, marker in PROTEIN_MARKERS.items()},
               "tumor": "tumour marker", "TCF1": "TCF-1", "HLADR": "HLA-DR", "CD11C": "CD11c",
               "granulocyte": "granulocyte marker", "mast": "mast-cell marker", "stroma": "stromal marker",
               "endothelial": "endothelial marker", "B": "B-cell marker", "M1": "M1 marker"}


def gates(adata: AnnData, *, markers=None, ncols: int = 4, panel_size: float = 2.6, bins: int = 60,
          ax=None) -> Figure:
    """Histogram of each gated marker's intensity with its gate and the cells called positive.

    Intensities are drawn as imaged, on a log axis (channels with negative values, transformed or z-scored, on a
    linear one); cells at exactly 0, which a log axis cannot show, are counted in the panel's title. Cells above
    the gate that were not called positive lost their signal to spill-over removal (``spillover=`` in
    :func:`tmetoolkit.tl.annotate`): they owe it to a bright touching neighbour. The title says when the gate is
    the user's (``gates=``) or the upper tail of a channel that shows one population (markers that define no
    lineage, such as PD-1: ``tmetoolkit._core.annotation.protein.TAIL_SDS``).

    Parameters
    ----------
    adata
        A protein panel after :func:`tmetoolkit.tl.annotate`.
    markers
        Canonical marker names to draw (``"CD8"``, ``"tumor"``, ...); default every gated marker.
    ncols
        Panels per row.
    panel_size
        Width of one panel in inches.
    bins
        Histogram bins.
    ax
        Axes to draw into; only with a single marker.

    Returns
    -------
    The Figure.
    """
    res = adata.uns.get(_keys.ANNOTATE)
    if res is None or "gates" not in res:
        msg = "adata.uns['tmt_annotate']['gates'] is missing: run tmt.tl.annotate on a protein panel first."
        raise TmtKeyError(msg)
    table = res["gates"].set_index("marker")
    names = list(table.index) if markers is None else [markers] if isinstance(markers, str) else list(markers)
    unknown = [m for m in names if m not in table.index]
    if unknown:
        msg = f"no gate for {unknown}; gated markers: {list(table.index)}."
        raise TmtKeyError(msg)
    if ax is not None and len(names) > 1:
        msg = "ax= draws one marker: pass markers=[name]."
        raise TmtInputError(msg)
    layer = res["params"].get("layer", "X")
    X = dense_matrix(get_matrix(adata, None if layer == "X" else layer))
    scores = adata.obsm[_keys.MARKER_EVIDENCE]
    spill = float(res["params"].get("spillover", 0.0))
    with style():
        if ax is None:
            nrow = int(np.ceil(len(names) / ncols))
            ncol = min(ncols, len(names))
            fig, axes = plt.subplots(nrow, ncol, figsize=(panel_size * ncol, panel_size * 0.8 * nrow), squeeze=False)
            axes = axes.ravel()
            for a in axes[len(names):]:
                a.set_visible(False)
        else:
            fig, axes = ax.figure, [ax]
        for a, marker in zip(axes, names, strict=False):
            row = table.loc[marker]
            j = list(map(str, adata.var_names)).index(str(row["channel"]))
            x = X[:, j].copy()
            transformed = bool((x < 0).any())  # gated on its own values, as annotate did
            positive = scores[f"{marker}+"].to_numpy() > 0
            share = positive.mean()
            zero = np.zeros(len(x), dtype=bool) if transformed else x == 0
            if not (~zero).any():
                a.text(0.5, 0.5, f"all {len(x):,} cells at 0", transform=a.transAxes, ha="center", va="center")
            x, positive = x[~zero], positive[~zero]
            if transformed:
                edges = np.linspace(x.min(), x.max(), bins + 1)
            elif len(x):
                edges = np.geomspace(x.min(), x.max() * 1.001, bins + 1)
            # off a log axis: counted in the title (inside the panel the note covered the bars), not drawn at a
            # made-up value
            at_zero = f"\n{_cells(zero.sum())} at 0, not drawn" if zero.any() and (~zero).any() else ""
            above = x > row["gate"]
            parts = [x[positive], x[~positive & above], x[~positive & ~above]]
            labels = ["positive", "above gate, spill-over", "negative"]
            colors = ["#c0392b", "#e5a29a", "#9a9a9a"]
            keep = [i for i, p in enumerate(parts) if len(p) and (i != 1 or spill > 0)]
            if keep:
                a.hist([parts[i] for i in keep], bins=edges, stacked=True, color=[colors[i] for i in keep],
                       label=[labels[i] for i in keep], linewidth=0)
            a.axvline(row["gate"], color="black", lw=0.8, ls="--")
            if not transformed and keep:
                a.set_xscale("log")
                a.xaxis.set_minor_formatter(NullFormatter())
            how = {"tail": "\none population: its tail", "given": "\ngiven gate"}.get(str(row.get("source", "")), "")
            a.set_title(f"{TITLE_NAMES.get(marker, marker)}: {share:.1%} positive{how}{at_zero}", fontsize=9)
            a.set_xlabel(str(row["channel"]), fontsize=8)
            a.set_ylabel("cells")
        if ax is not None:
            ax.legend(frameon=False, fontsize=7)
        else:
            handles = {}
            for a in axes[: len(names)]:  # the spill-over class may be absent from the first panel
                for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
                    handles.setdefault(lab, h)
            fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=len(handles), frameon=False,
                       fontsize=8, bbox_to_anchor=(0.5, 1.0))
            fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))
    return fig


def _cells(n: int) -> str:
    """``"1 cell"``, ``"1,395 cells"``."""
    return f"{n:,} cell{'' if n == 1 else 's'}"

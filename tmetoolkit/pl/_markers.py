"""Dot plot of the genes behind the cell-state calls."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from .. import _keys
from .._utils import TmtInputError
from ..get._markers import marker_values
from ..get._markers import markers as marker_table
from ..tl._checkpoints import is_protein
from ._utils import fits_new_figure

MIN_HEIGHT = 2.6  # inches: scanpy stacks the size legend and the colour bar right of the dots, with their titles
MIN_ROW_CELLS = 20  # rows of fewer cells are drawn faded: a detection fraction of 20 cells is uncertain by +-0.2


@fits_new_figure
def markers(adata: AnnData, key: str = _keys.STATE, *, lineage: str | None = None, n_genes: int = 3,
            ax: Axes | None = None) -> Axes:
    """Scanpy dot plot of each label's top deciding genes across the labels of ``key``.

    The genes are those of :func:`tmetoolkit.get.markers` with the largest difference between a label's cells
    and the cells it was chosen against. Dot size is the fraction of cells detecting the gene and colour the mean
    log-normalised expression, scaled per gene to 0-1; a good call shows a diagonal. On a protein panel the
    dots are the markers of each label's rule: size the fraction of cells above the marker's gate, colour the
    mean marker evidence (SDs from the gate). Each row names its number of cells; rows of fewer than 20 cells
    (a fraction from 20 cells has a 95% interval of about +-0.2) are drawn faded, their labels grey.

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.annotate`.
    key
        ``"tmt_state"``, ``"tmt_lineage"``, ``"tmt_tam_subset"`` or ``"tmt_caf_subset"``.
    lineage
        Only the states of this lineage (e.g. ``"Monocyte/Macrophage"``), for ``key="tmt_state"``.
    n_genes
        Genes per label.
    ax
        Axes to draw into (scanpy divides it into the plot and its legends).

    Returns
    -------
    The Axes of the dots (on a new figure, sized from the numbers of genes and rows and fitted to its labels,
    when ``ax`` is ``None``).
    """
    import scanpy as sc

    table = marker_table(adata, key, n_genes=n_genes)
    table = table[table["direction"] == "up"]
    if lineage is not None:
        options = sorted(set(table["compared_with"]) - {"all cells"})
        if lineage not in options:
            msg = f"lineage {lineage!r} has no called states in adata.obs[{key!r}]; choose one of {options}."
            raise TmtInputError(msg)
        table = table[table["compared_with"] == lineage]
    labels = list(dict.fromkeys(table["label"]))
    cols = list(dict.fromkeys(table["column"]))
    keep = adata.obs[key].astype(str).isin(labels).to_numpy()
    sub = AnnData(marker_values(adata, cols)[keep],
                  obs=pd.DataFrame({key: pd.Categorical(adata.obs[key].astype(str)[keep], categories=labels)},
                                   index=adata.obs_names[keep]),
                  var=pd.DataFrame(index=adata.var_names[cols]))
    var_names = {lab: list(table.loc[table["label"] == lab, "gene"]) for lab in labels}
    # one row scaled per gene is 0/0: its colours would say nothing, so a lone label shows its own means
    scaled = len(labels) > 1
    if is_protein(adata):
        titles = {"colorbar_title": "mean marker evidence" + ("\nscaled per marker" if scaled else " (SDs)"),
                  "size_title": "above the gate\n(%)"}
    else:
        titles = {"colorbar_title": "mean expression\n" + ("scaled per gene" if scaled else "(log)"),
                  "size_title": "fraction of cells\n(%)"}
    size = None if ax is not None else _dotplot_size(sum(map(len, var_names.values())), len(labels))
    axes = sc.pl.dotplot(sub, var_names, groupby=key, standard_scale="var" if scaled else None, ax=ax, show=False,
                         figsize=size, **titles)
    main = axes["mainplot_ax"]
    _label_rows(main, sub.obs[key].value_counts().reindex(labels).fillna(0).astype(int))
    return main


def _dotplot_size(n_genes: int, n_rows: int) -> tuple[float, float]:
    """Inches for a dot plot of this many genes and rows: about a quarter inch per dot, with room for the
    gene-group brackets and the legends."""
    return 0.26 * n_genes + 2.2, max(0.26 * n_rows + 1.6, MIN_HEIGHT)


def _label_rows(ax: Axes, counts: pd.Series) -> None:
    """Row labels with their cell numbers; rows of fewer than ``MIN_ROW_CELLS`` cells faded."""
    import numpy as np

    ticks = [t.get_text() for t in ax.get_yticklabels()]
    few = {lab for lab in ticks if counts.get(lab, 0) < MIN_ROW_CELLS}
    ax.set_yticks(ax.get_yticks(), [f"{lab} (n={counts.get(lab, 0):,})" for lab in ticks])
    for text, lab in zip(ax.get_yticklabels(), ticks, strict=True):
        if lab in few:
            text.set_color("0.6")
    if not few:
        return
    rows = [i for i, lab in enumerate(ticks) if lab in few]
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets) == 0:
            continue
        colours = np.array(coll.get_facecolors())
        if len(colours) != len(offsets):
            continue
        row_of = np.floor(np.asarray(offsets)[:, 1]).astype(int)
        faded = np.isin(row_of, rows)
        colours[faded, 3] = 0.25
        coll.set_facecolors(colours)
        edges = np.array(coll.get_edgecolors())
        if len(edges) == len(offsets):
            edges[faded, 3] = 0.25
            coll.set_edgecolors(edges)

"""Cell states on an embedding, drawn by scanpy with tmetoolkit's fixed colours."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from .. import _keys
from .._utils import TmtKeyError, missing_key_error
from ._utils import colors_for, fits_new_figure, new_ax, readable, require_obs, style, y_down


@fits_new_figure
def embedding(adata: AnnData, color: str = _keys.STATE, *, basis: str = "umap", ax: Axes | None = None,
              **kwargs) -> Axes:
    """Cells on an existing embedding (``obsm["X_<basis>"]``) coloured by a tmetoolkit label.

    A thin wrapper over :func:`scanpy.pl.embedding` that applies tmetoolkit's fixed palette (the same colours as
    every other figure) and returns the Axes. Compute the embedding with scanpy first (``sc.tl.umap`` ...).
    ``basis="spatial"`` is drawn with its y axis down, as :func:`tmetoolkit.pl.spatial` draws the same cells.

    Parameters
    ----------
    adata
        Data with ``obsm["X_<basis>"]``.
    color
        ``obs`` column (default ``"tmt_state"``): labels in their fixed colours, or numbers (``"tmt_confidence"``,
        ``"tmt_suppression_score"``) on a colour scale with its colour bar.
    basis
        Embedding name without ``X_`` (``"umap"``, ``"pca"``, ``"tsne"``, ``"spatial"`` ...).
    ax
        Axes to draw into.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (not ``show`` or ``save``: like every tmetoolkit plot it returns the
        Axes and never shows; save with ``ax.figure.savefig(path)``).

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    import scanpy as sc

    for name in ("show", "save"):  # scanpy would show, or write into its figure folder and close the figure
        if name in kwargs:
            msg = (f"embedding() got an unexpected keyword argument {name!r}: tmetoolkit plots return the Axes and "
                   "never show; save with ax.figure.savefig(path).")
            raise TypeError(msg)
    if isinstance(color, list | tuple):
        msg = (f"color takes one obs column, got {color!r}: draw each into axes of its own, e.g. fig, axs = "
               f"plt.subplots(1, {len(color)}), then tmt.pl.embedding(adata, {color[0]!r}, ax=axs[0]) ...")
        raise TypeError(msg)
    genes = adata.var_names if adata.raw is None else adata.var_names.union(adata.raw.var_names)
    if color not in adata.obs and color in genes:
        msg = (f"{color!r} is a gene; tmt.pl.embedding colours by obs columns (tmetoolkit's labels and scores): "
               f"draw genes with scanpy, sc.pl.embedding(adata, basis={basis!r}, color={color!r}).")
        raise TmtKeyError(msg)
    key = basis if basis in adata.obsm else f"X_{basis}"
    if key not in adata.obsm:
        raise missing_key_error(f"X_{basis}", "adata.obsm (compute the embedding with scanpy first)", adata.obsm.keys())
    values = require_obs(adata, color)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    labels = values.astype(float) if numeric else values.astype("category")
    # scanpy stores the palette it draws with in uns["<color>_colors"]: it draws a copy of the labels and the
    # embedding, so that the user's AnnData keeps its own colours
    drawn = AnnData(obs=pd.DataFrame({color: labels}, index=adata.obs_names), obsm={key: np.asarray(adata.obsm[key])})
    if not numeric:
        cmap = colors_for(adata, color)
        drawn.uns[f"{color}_colors"] = [cmap[c] for c in labels.cat.categories]
    with style(), warnings.catch_warnings():
        # scanpy's own colour-map call (set_bad) warns on every plot with matplotlib >= 3.10; not the user's to fix
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="scanpy")
        ax = new_ax(ax, (5, 4.5))
        kwargs.setdefault("title", readable(color))  # scanpy titles the panel with the key itself ("tmt_state")
        sc.pl.embedding(drawn, basis=basis, color=color, ax=ax, show=False, frameon=False, **kwargs)
    if key == "spatial":  # image coordinates, drawn as tmt.pl.spatial draws them
        y_down(ax)
    return ax

"""Spot data (Visium): recognised by their array coordinates; the spot graph from squidpy's grid neighbours.

The computation on the graph lives in :mod:`tmetoolkit._core.spatial.spots`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

SPOT_COLUMNS = ("array_row", "array_col")


def is_spot_data(adata: AnnData) -> bool:
    """Visium-like data: array coordinates of a spot grid in ``obs`` (as written by scanpy and squidpy readers)."""
    return all(c in adata.obs for c in SPOT_COLUMNS)


def spot_graph(xy: np.ndarray, images: pd.Series):
    """Hexagonal neighbour graph of the spots (squidpy grid neighbours), never joining two images."""
    import logging

    import squidpy as sq

    view = AnnData(obs=pd.DataFrame({"image": pd.Categorical(images.to_numpy())}, index=images.index))
    view.obsm["spatial"] = xy
    quiet = logging.getLogger("spatialdata._logging")  # squidpy logs every graph it builds here
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        res = sq.gr.spatial_neighbors(view, coord_type="grid", n_neighs=6, library_key="image", copy=True)
    finally:
        quiet.setLevel(level)
    conn = res[0]
    return ((conn + conn.T) > 0).astype(np.int8).tocsr()

"""Cells that touch in a segmented image: what spill-over between neighbouring cells is read from."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

N_TOUCHING = 6  # a cell's candidates: its nearest cells in its image


def touching_cells(xy: np.ndarray, images: np.ndarray,
                   n_neighbors: int = N_TOUCHING) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: its cells (``rows``), their ``n_neighbors`` nearest cells (``near``, cells x neighbours, as rows
    of ``xy``) and whether each of those touches (``touching``: within twice the image's median nearest-neighbour
    distance, about one cell diameter). Distances are relative to the image's own packing, so coordinates may be in
    any unit."""
    from sklearn.neighbors import NearestNeighbors

    groups = pd.factorize(np.asarray(images))[0]
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        k = min(n_neighbors + 1, len(rows))
        if k < 2:
            continue
        dist, idx = NearestNeighbors(n_neighbors=k).fit(xy[rows]).kneighbors(xy[rows])
        yield rows, rows[idx[:, 1:]], dist[:, 1:] <= 2 * np.median(dist[:, 1])

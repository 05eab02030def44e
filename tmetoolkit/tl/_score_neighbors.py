"""Neighbours in score space, used to average noisy per-cell scores before labels are decided."""

from __future__ import annotations

import numpy as np

from .._utils import logger

# above this many cells, approximate neighbours (pynndescent) replace the exact search. On 2 cores the exact search
# took 14 s for 100,000 cells and 54 s for 200,000; pynndescent 25 s for 100,000 in a fresh process (mostly numba
# compiling it) and 3 s for 200,000 once compiled.
EXACT_LIMIT = 100_000


def score_neighbors(S: np.ndarray, n_neighbors: int, *, n_comps: int = 20, seed: int = 0) -> np.ndarray:
    """Indices of each cell's ``n_neighbors`` nearest cells (itself included) in standardised score space.

    ``S`` is cells x scores (``annotate`` passes its label evidence). Every column is z-scored so that no programme
    dominates by its scale, the matrix is reduced to its first ``n_comps`` principal components, and neighbours
    are searched there: exactly (scikit-learn) up to ``EXACT_LIMIT`` cells and approximately (pynndescent, as
    scanpy does) beyond.
    """
    from sklearn.decomposition import PCA

    X = np.nan_to_num(np.asarray(S, dtype=np.float64))
    sd = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    k = min(n_neighbors, X.shape[0])
    n_comps = min(n_comps, X.shape[1], X.shape[0] - 1)
    if n_comps >= 1:
        X = PCA(n_comps, random_state=seed).fit_transform(X)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.shape[0] <= EXACT_LIMIT:
        from sklearn.neighbors import NearestNeighbors

        return NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X, return_distance=False)
    import pynndescent

    logger.info("approximate %d-neighbour search over %d cells (pynndescent)", k, X.shape[0])
    index = pynndescent.NNDescent(X, n_neighbors=k, random_state=seed, n_jobs=-1)
    return index.neighbor_graph[0]


def neighbour_mean(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean of each row's neighbours (``idx`` from :func:`score_neighbors`); NaN neighbours are skipped."""
    import warnings

    out = np.empty(values.shape, dtype=np.float64)
    for start in range(0, len(idx), 20_000):  # bounded memory: (block x k x columns)
        block = values[idx[start:start + 20_000]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows whose neighbours are all empty stay NaN
            out[start:start + 20_000] = np.nanmean(block, axis=1)
    out[np.isnan(values)] = np.nan  # an empty cell stays empty
    return out

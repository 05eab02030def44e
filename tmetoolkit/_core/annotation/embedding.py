"""The data set's own expression space: principal components of its variable genes and a neighbour graph."""

from __future__ import annotations

from collections.abc import Iterable

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

N_TOP_GENES = 2000
N_COMPS = 30
N_NEIGHBORS = 15
# above this many cells the neighbours are searched within partitions of the cells (approximate_neighbours), below
# it exactly: on 100,000 cells x 30 PCs the exact search takes 19-24 s on 2 cores, the partitioned one about 3 s
# and finds 0.99 of the exact neighbours (simulate(), 20 samples of 5,000 cells)
EXACT_LIMIT = 75_000
# the principal axes are fitted on at most this many cells (a random subset), then every cell is projected
MAX_FIT_CELLS = 20_000
# approximate_neighbours: about this many cells per partition, and each cell is listed in the partitions of its
# PROBES nearest centres (so that a cell near a border finds its neighbours across it)
CELLS_PER_PART, PROBES = 500, 4
# dense query x candidate distance blocks are kept below this many entries (4 bytes each)
MAX_BLOCK = 20_000_000


def fit_cells(n_obs: int, seed: int = 0) -> np.ndarray:
    """The cells the principal axes (and the variable genes) are fitted on: all, or a random ``MAX_FIT_CELLS``."""
    if n_obs <= MAX_FIT_CELLS:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng(seed).choice(n_obs, MAX_FIT_CELLS, replace=False))


def component_columns(n_vars: int, variable: np.ndarray | None, keep_cols: np.ndarray) -> np.ndarray:
    """The columns the principal components are computed on: the variable genes (boolean mask over ``n_vars``
    columns, ``None`` for all) and ``keep_cols`` (the markers), increasing."""
    return np.arange(n_vars) if variable is None else np.union1d(np.flatnonzero(variable), keep_cols)


def principal_components(fit: sp.csr_matrix, cols: np.ndarray, blocks: Iterable[np.ndarray], n_obs: int, *,
                         n_comps: int = N_COMPS, seed: int = 0) -> np.ndarray:
    """PCs of the log-normalised matrix on its columns ``cols`` (:func:`component_columns`), with the axes fitted
    on ``fit`` (the rows of the cells :func:`fit_cells` chose, every column) and all ``n_obs`` cells projected from
    ``blocks``: dense float32 row blocks of columns ``cols`` alone, in order.

    Genes are scaled to unit variance (clipped at 10 SD, as ``sc.pp.scale``) so that a rare population's markers
    weigh as much as the abundant ones' genes.
    """
    from sklearn.decomposition import PCA

    F = dense_columns(fit, cols)
    mean, sd = F.mean(axis=0), F.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    n_comps = max(1, min(n_comps, n_obs - 1, F.shape[1] - 1))
    pca = PCA(n_comps, svd_solver="randomized" if min(F.shape) > 500 else "full", random_state=seed)
    out = np.empty((n_obs, n_comps), dtype=np.float32)
    # one BLAS thread: on a machine whose cores are busy, threads wait for each other (the fit on 20,000 cells x
    # 2,000 genes took 4-7 s with two threads, 1.4-1.9 s with one, on 2 cores shared with other jobs)
    with threadpool_limits(1):
        pca.fit(_scaled(F, mean, sd))
    del F
    # bounded memory: one dense block at a time, read outside the limit (numba's threads are OpenMP's, which it
    # holds to one too)
    start = 0
    for block in blocks:
        stop = start + block.shape[0]
        block = _scaled(block, mean, sd)
        with threadpool_limits(1):
            out[start:stop] = pca.transform(block)
        start = stop
    return out


def _scaled(D: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``clip((D - mean) / sd, -10, 10)``, in place (20,000 cells x 2,000 genes are 160 MB a copy)."""
    D -= mean
    D /= sd
    return np.clip(D, -10, 10, out=D)


def dense_columns(M: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
    """Columns ``cols`` of a CSR matrix as a dense float32 array, in one pass over its entries."""
    new = np.full(M.shape[1], -1, dtype=np.int64)
    new[cols] = np.arange(cols.size)
    out = np.zeros((M.shape[0], cols.size), dtype=np.float32)
    _scatter_columns(M.indptr.astype(np.int64), M.indices, M.data, new, out)
    return out


@numba.njit(parallel=True, cache=True)
def _scatter_columns(indptr, indices, data, new, out):  # pragma: no cover - compiled
    for i in numba.prange(indptr.size - 1):
        for p in range(indptr[i], indptr[i + 1]):
            j = new[indices[p]]
            if j >= 0:
                out[i, j] = data[p]


def take_columns(M: sp.csr_matrix, cols: np.ndarray) -> sp.csr_matrix:
    """Columns ``cols`` (increasing) of a CSR matrix in one pass over its entries (scipy's column indexing takes
    several times longer on a large matrix)."""
    new = np.full(M.shape[1], -1, dtype=np.int64)
    new[cols] = np.arange(cols.size)
    j = new[M.indices]
    keep = j >= 0
    indptr = np.concatenate([[0], np.cumsum(keep)])[M.indptr]
    return sp.csr_matrix((M.data[keep], j[keep], indptr), shape=(M.shape[0], cols.size))


def neighbour_weights(pcs: np.ndarray, n_neighbors: int = N_NEIGHBORS, *, seed: int = 0) -> sp.csr_matrix:
    """Row-normalised k-nearest-neighbour matrix (each cell and its ``n_neighbors - 1`` nearest) on ``pcs``."""
    n = pcs.shape[0]
    k = int(min(n_neighbors, n))
    if n <= EXACT_LIMIT:
        from sklearn.neighbors import NearestNeighbors

        idx = NearestNeighbors(n_neighbors=k).fit(pcs).kneighbors(pcs, return_distance=False)
    else:
        idx = approximate_neighbours(pcs, k, seed=seed)
    rows = np.repeat(np.arange(n), k)
    return sp.csr_matrix((np.full(n * k, 1.0 / k), (rows, idx.ravel())), shape=(n, n))


def approximate_neighbours(pcs: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Each cell's ``k`` nearest cells (itself first), searched exactly within partitions of the cells.

    The cells are partitioned by k-means (centres fitted on at most ``MAX_FIT_CELLS`` cells); a cell is searched
    for among the cells listed in its nearest centre's partition, and every cell is listed in the partitions of
    its ``PROBES`` nearest centres. This is the inverted-file search of Jégou, Douze & Schmid 2011
    (doi:10.1109/TPAMI.2010.57) with overlapping lists, in numpy and scikit-learn (no compilation per process).
    """
    from sklearn.cluster import KMeans

    X = np.ascontiguousarray(pcs, dtype=np.float32)
    n = X.shape[0]
    n_parts = max(1, n // CELLS_PER_PART)
    probes = min(PROBES, n_parts)
    with threadpool_limits(1):  # as for principal_components
        sub = fit_cells(n, seed)
        centres = KMeans(n_parts, n_init=1, max_iter=20, random_state=seed).fit(X[sub]).cluster_centers_
        centres = centres.astype(np.float32)
        near, home = nearest_centres(X, centres, probes)
        by_part = np.argsort(near.ravel(), kind="stable")
        listed = np.repeat(np.arange(n), near.shape[1])[by_part]
        list_bounds = np.searchsorted(near.ravel()[by_part], np.arange(n_parts + 1))
        by_home = np.argsort(home, kind="stable")
        home_bounds = np.searchsorted(home[by_home], np.arange(n_parts + 1))
        sq = (X ** 2).sum(axis=1)
        where = np.full(n, -1, dtype=np.int64)
        out = np.empty((n, k), dtype=np.int64)
        for j in range(n_parts):
            cand = listed[list_bounds[j]:list_bounds[j + 1]]
            queries = by_home[home_bounds[j]:home_bounds[j + 1]]
            if not queries.size:
                continue
            where[cand] = np.arange(cand.size)
            Xc, kk = X[cand], min(k, cand.size)
            step = max(1, MAX_BLOCK // cand.size)
            for s in range(0, queries.size, step):
                q = queries[s:s + step]
                D = sq[cand][None, :] - 2 * X[q] @ Xc.T
                D[np.arange(q.size), where[q]] = -np.inf  # each cell is its own first neighbour
                part = np.argpartition(D, kk - 1, axis=1)[:, :kk]
                order = np.argsort(np.take_along_axis(D, part, axis=1), axis=1)
                found = cand[np.take_along_axis(part, order, axis=1)]
                if kk < k:  # a partition smaller than k: the nearest cells repeat
                    found = np.concatenate([found, np.repeat(found[:, :1], k - kk, axis=1)], axis=1)
                out[q] = found
    return out


def nearest_centres(X: np.ndarray, centres: np.ndarray, probes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``X``, its ``probes`` nearest ``centres`` (in no order) and the nearest of those.

    The distances are taken ``MAX_BLOCK`` at a time: all at once they are cells x centres, 8 GB at 1,000,000
    cells (2,000 centres) and, with the temporaries of their computation, three times that.
    """
    n, n_parts = X.shape[0], centres.shape[0]
    norms = (centres ** 2).sum(axis=1)[None, :]
    near = np.empty((n, probes), dtype=np.intp)
    home = np.empty(n, dtype=np.intp)
    step = max(1, MAX_BLOCK // n_parts)
    for start in range(0, n, step):
        d = norms - 2 * X[start:start + step] @ centres.T
        part = np.argpartition(d, probes - 1, axis=1)[:, :probes] if probes < n_parts else \
            np.tile(np.arange(n_parts), (d.shape[0], 1))
        near[start:start + step] = part
        home[start:start + step] = part[np.arange(d.shape[0]), np.argmin(np.take_along_axis(d, part, axis=1), axis=1)]
    return near, home


def graph_weights(connectivities) -> sp.csr_matrix:
    """A user's neighbour graph (``obsp["connectivities"]``) as row-normalised weights, each cell included."""
    W = sp.csr_matrix(connectivities, dtype=np.float64)
    W = W + sp.identity(W.shape[0], format="csr") * max(float(W.max()) if W.nnz else 1.0, 1.0)
    s = np.asarray(W.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / s) @ W)

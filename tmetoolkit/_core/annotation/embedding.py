"""The data set's own expression space: principal components of its variable genes and a neighbour graph."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

N_TOP_GENES = 2000
N_COMPS = 30
N_NEIGHBORS = 15
# above this many cells, approximate neighbours (pynndescent, as scanpy) replace the exact search: the exact search
# grows with the square of the cells, pynndescent carries about 12 s of compilation per process; on 2 cores they
# cross near 75,000 cells (100,000 cells x 30 PCs: 19-24 s exact, 14 s pynndescent with 0.95 of the exact neighbours)
EXACT_LIMIT = 75_000
# the principal axes are fitted on at most this many cells (a random subset), then every cell is projected
MAX_FIT_CELLS = 20_000


def principal_components(lognorm, keep_cols: np.ndarray, *, n_top: int = N_TOP_GENES, n_comps: int = N_COMPS,
                         seed: int = 0) -> np.ndarray:
    """PCs of the log-normalised matrix on its ``n_top`` most variable genes plus ``keep_cols`` (the markers).

    Genes are scaled to unit variance (clipped at 10 SD, as ``sc.pp.scale``) so that a rare population's markers
    weigh as much as the abundant ones' genes.
    """
    import anndata as ad
    import scanpy as sc

    n_obs, n_vars = lognorm.shape
    M = sp.csr_matrix(lognorm, dtype=np.float32) if sp.issparse(lognorm) else np.asarray(lognorm, dtype=np.float32)
    rng = np.random.default_rng(seed)
    fit = np.sort(rng.choice(n_obs, MAX_FIT_CELLS, replace=False)) if n_obs > MAX_FIT_CELLS else np.arange(n_obs)
    cols = np.arange(n_vars)
    if n_vars > n_top:  # the variable genes of the cells the axes are fitted on
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hv = sc.pp.highly_variable_genes(ad.AnnData(M[fit]), n_top_genes=n_top, flavor="seurat", inplace=False)
        cols = np.union1d(np.flatnonzero(hv["highly_variable"].to_numpy()), keep_cols)
    X = M[:, cols]
    F = X[fit].toarray() if sp.issparse(X) else np.asarray(X[fit])
    mean, sd = F.mean(axis=0), F.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    n_comps = max(1, min(n_comps, n_obs - 1, F.shape[1] - 1))
    from sklearn.decomposition import PCA

    pca = PCA(n_comps, svd_solver="randomized" if min(F.shape) > 500 else "full", random_state=seed)
    pca.fit(np.clip((F - mean) / sd, -10, 10))
    out = np.empty((n_obs, n_comps), dtype=np.float32)
    for start in range(0, n_obs, MAX_FIT_CELLS):  # bounded memory: one dense block at a time
        B = X[start:start + MAX_FIT_CELLS]
        B = B.toarray() if sp.issparse(B) else np.asarray(B)
        out[start:start + MAX_FIT_CELLS] = pca.transform(np.clip((B - mean) / sd, -10, 10))
    return out


def neighbour_weights(pcs: np.ndarray, n_neighbors: int = N_NEIGHBORS, *, seed: int = 0) -> sp.csr_matrix:
    """Row-normalised k-nearest-neighbour matrix (each cell and its ``n_neighbors - 1`` nearest) on ``pcs``."""
    n = pcs.shape[0]
    k = int(min(n_neighbors, n))
    if n <= EXACT_LIMIT:
        from sklearn.neighbors import NearestNeighbors

        idx = NearestNeighbors(n_neighbors=k).fit(pcs).kneighbors(pcs, return_distance=False)
    else:
        import pynndescent

        idx = pynndescent.NNDescent(pcs, n_neighbors=k, random_state=seed, n_jobs=-1).neighbor_graph[0]
    rows = np.repeat(np.arange(n), k)
    return sp.csr_matrix((np.full(n * k, 1.0 / k), (rows, idx.ravel())), shape=(n, n))


def graph_weights(connectivities) -> sp.csr_matrix:
    """A user's neighbour graph (``obsp["connectivities"]``) as row-normalised weights, each cell included."""
    W = sp.csr_matrix(connectivities, dtype=np.float64)
    W = W + sp.identity(W.shape[0], format="csr") * max(float(W.max()) if W.nnz else 1.0, 1.0)
    s = np.asarray(W.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / s) @ W)

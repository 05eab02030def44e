"""Pure numerical kernels for scoring: no AnnData here, arrays in and arrays out."""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(parallel=True, cache=True)
def _rank_transform(indptr, data, n_genes, max_rank, aucell):  # pragma: no cover - compiled
    """Per row, the descending rank of each non-zero (ties averaged) turned into a per-gene contribution.

    ``aucell=False``: contribution is ``min(rank, max_rank + 1)`` (UCell's capped rank).
    ``aucell=True``: contribution is ``max(0, max_rank - (rank - 1))`` (area under the recovery curve).
    Also returns, per row, the contribution of a gene that is not expressed (all zeros tie at the bottom).
    """
    n_rows = indptr.size - 1
    out = np.empty(data.size, dtype=np.float64)
    zero_val = np.empty(n_rows, dtype=np.float64)
    for i in numba.prange(n_rows):
        a = indptr[i]
        b = indptr[i + 1]
        k = b - a
        vals = data[a:b]
        order = np.argsort(-vals, kind="mergesort")
        j = 0
        while j < k:
            m = j
            while m + 1 < k and vals[order[m + 1]] == vals[order[j]]:
                m += 1
            r = (j + m) / 2.0 + 1.0
            c = max(0.0, max_rank - (r - 1.0)) if aucell else min(r, max_rank + 1.0)
            for t in range(j, m + 1):
                out[a + order[t]] = c
            j = m + 1
        zr = (k + 1 + n_genes) / 2.0
        zero_val[i] = max(0.0, max_rank - (zr - 1.0)) if aucell else min(zr, max_rank + 1.0)
    return out, zero_val


@numba.njit(parallel=True, cache=True)
def _csr_dense_matmul(indptr, indices, data, W):  # pragma: no cover - compiled
    out = np.zeros((indptr.size - 1, W.shape[1]), dtype=np.float64)
    for i in numba.prange(indptr.size - 1):
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            row = W[indices[p]]
            for j in range(W.shape[1]):
                out[i, j] += v * row[j]
    return out


def matmul(block, W: np.ndarray) -> np.ndarray:
    """``block @ W`` for a CSR or dense block and a dense genes x signatures ``W``, in float64, on all cores."""
    if sp.issparse(block):
        csr = block.tocsr()
        return _csr_dense_matmul(csr.indptr, csr.indices, csr.data, W)
    return np.asarray(block, dtype=np.float64) @ W


def rank_sums(block, membership: sp.csr_matrix, max_rank: int, *, aucell: bool) -> np.ndarray:
    """Sum of rank contributions of each signature's genes, for every row of ``block``.

    ``membership`` is genes x signatures with 1 where a gene belongs to a signature.
    """
    csr = sp.csr_matrix(block, dtype=np.float64, copy=True)  # blocks may be views on the user's matrix
    csr.eliminate_zeros()
    n_genes = csr.shape[1]
    contrib, zero_val = _rank_transform(csr.indptr, csr.data, n_genes, float(max_rank), aucell)
    ranked = sp.csr_matrix((contrib, csr.indices, csr.indptr), shape=csr.shape)
    expressed = sp.csr_matrix((np.ones_like(contrib), csr.indices, csr.indptr), shape=csr.shape)
    n_sig = np.asarray(membership.sum(axis=0)).ravel()
    n_expr = np.asarray((expressed @ membership).todense())
    return np.asarray((ranked @ membership).todense()) + zero_val[:, None] * (n_sig[None, :] - n_expr)


def ucell(sum_ranks: np.ndarray, n: np.ndarray, max_rank: int) -> np.ndarray:
    """UCell's Mann-Whitney U statistic, 1 when all genes rank at the top, 0 when none is in the top ``max_rank``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - (sum_ranks - n * (n + 1) / 2.0) / (n * max_rank)


def auc(sum_contrib: np.ndarray, n: np.ndarray, max_rank: int) -> np.ndarray:
    """Area under the gene-recovery curve up to ``max_rank``, normalised by its maximum for ``n`` genes."""
    best = n * max_rank - n * (n - 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return sum_contrib / best


def control_genes(gene_means: np.ndarray, sig_idx: np.ndarray, *, n_bins: int, ctrl_size: int, rng) -> np.ndarray:
    """Control genes for one gene set, matched by expression bin (the Tirosh 2016 procedure).

    Genes are binned by the rank of their mean expression; from every bin that holds a signature gene (in bin
    order), ``ctrl_size`` genes are drawn, and signature genes are removed from the result. With a
    ``numpy.random.RandomState(seed)`` the draws are those of :func:`scanpy.tl.score_genes` with
    ``random_state=seed``, so both give identical scores.
    """
    finite = np.flatnonzero(np.isfinite(gene_means))
    n_items = max(int(np.round(finite.size / (n_bins - 1))), 1)
    ranks = np.empty(gene_means.size)
    ranks[:] = np.nan
    order = gene_means[finite].argsort(kind="mergesort")
    # rank with ties taking the minimum rank, as pandas' rank(method="min")
    sorted_vals = gene_means[finite][order]
    first = np.searchsorted(sorted_vals, sorted_vals, side="left") + 1
    ranks[finite[order]] = first
    cuts = ranks // n_items
    chosen: set[int] = set()
    for cut in np.unique(cuts[sig_idx][np.isfinite(cuts[sig_idx])]):
        pool = np.flatnonzero(cuts == cut)
        if pool.size > ctrl_size:
            pool = pool[rng.choice(pool.size, size=ctrl_size, replace=False)]
        chosen.update(pool.tolist())
    chosen.difference_update(sig_idx.tolist())
    return np.array(sorted(chosen), dtype=np.int64)

"""Access to the expression matrix: which matrix, its row chunks, and the normalisation applied per chunk."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._utils import TmtInputError, TmtMatrixError, missing_key_error

DEFAULT_CHUNK = 10_000


# a bulk sample detects more genes than a cell does (Racle's melanoma samples 25,005; a Smart-seq2 cell a few
# thousand, a droplet cell hundreds to a few thousand); bulk cohorts this small are read whole
BULK_DETECTED, MAX_BULK_SAMPLES = 10_000, 1000


def get_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, never copied, unless a sparse matrix stores an entry more than once
    (see :func:`summed_duplicates`)."""
    if layer is None:
        if adata.X is None:
            msg = "adata.X is empty; pass layer= naming the layer that holds expression values."
            raise TmtMatrixError(msg)
        return summed_duplicates(adata.X)
    if layer not in adata.layers:
        raise missing_key_error(layer, "adata.layers", adata.layers.keys())
    return summed_duplicates(adata.layers[layer])


def summed_duplicates(X):
    """``X``, or, when a CSR/CSC matrix with sorted indices stores some entries more than once (built from its
    arrays by hand), a copy with them summed, which is the matrix scipy and scanpy read (``X.toarray()``): the stored
    values themselves would be read as separate ones (Chen's counts stored as two halves each were read as
    non-integer values, and half of the cells changed lineage). ``X`` itself is never changed. Unsorted indices
    may hide repeats too; telling would sort the whole matrix, so :func:`row_block` sums them chunk by chunk."""
    if not sp.issparse(X) or X.format not in ("csr", "csc") or X.has_canonical_format or not X.has_sorted_indices:
        return X
    Y = X.copy()  # sorted but not canonical: an index repeats within a row
    Y.sum_duplicates()
    return Y


def raw_adata(adata: AnnData) -> AnnData:
    """``adata.raw`` as an AnnData with ``adata``'s observations (``raw``'s matrix and genes, not copied)."""
    import pandas as pd

    if adata.raw is None:
        msg = "use_raw=True, but adata.raw is empty; leave it out to read X (or layer= for a layer)."
        raise TmtInputError(msg)
    return AnnData(X=adata.raw.X, obs=pd.DataFrame(index=adata.obs_names), var=adata.raw.var.copy())


def is_dask(X) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(X, da.Array)


def _float(dtype) -> np.dtype:
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def row_block(X, start: int, stop: int):
    """Rows ``start:stop`` as an in-memory CSR matrix or ndarray (floating point; float32 stays float32).

    For an in-memory CSR matrix with sorted indices the block is a view on ``X``'s arrays: read it, never write to
    it. With unsorted indices it is a copy: scipy sorts a matrix's indices in place when it takes row minima.
    """
    if sp.issparse(X) and X.format == "csr" and np.issubdtype(X.dtype, np.floating):
        a, b = X.indptr[start], X.indptr[stop]
        block = sp.csr_matrix((X.data[a:b], X.indices[a:b], X.indptr[start : stop + 1] - a),
                              shape=(stop - start, X.shape[1]), copy=not X.has_sorted_indices)
        if not block.has_canonical_format:  # an entry stored twice is read as the sum, as scipy reads it
            block = block.copy() if X.has_sorted_indices else block
            block.sum_duplicates()
        return block
    block = X[start:stop]
    if is_dask(block):
        block = block.compute()
    if sp.issparse(block):
        block = sp.csr_matrix(block, dtype=_float(block.dtype), copy=False)
        if not block.has_canonical_format:
            block = block.copy()
            block.sum_duplicates()
        return block
    block = np.asarray(block)
    return block.astype(_float(block.dtype), copy=False)


# the cells whose values a score records (``values_check``): 4 runs of 16 rows spread over the matrix
CHECK_RUNS, CHECK_ROWS = 4, 16


def row_checksums(X, rows) -> np.ndarray:
    """CRC32 of the values of each row of ``rows`` (positions, in any order), read through :func:`row_block` one
    run of consecutive rows at a time; a sparse row's column positions count too."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros(len(rows), dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    s = rows[order]
    breaks = np.flatnonzero(np.diff(s) != 1) + 1
    for run in np.split(np.arange(len(s)), breaks) if len(s) else []:
        block = row_block(X, int(s[run[0]]), int(s[run[-1]]) + 1)
        for k, i in enumerate(run):
            if sp.issparse(block):
                a, b = block.indptr[k], block.indptr[k + 1]
                crc = zlib.crc32(np.ascontiguousarray(block.indices[a:b], dtype=np.int64).view(np.uint8),
                                 zlib.crc32(np.ascontiguousarray(block.data[a:b], dtype=np.float64).view(np.uint8)))
            else:
                row = np.asarray(block[k], dtype=np.float64)
                nz = np.flatnonzero(row)  # dense and sparse storage of the same values agree
                crc = zlib.crc32(nz.astype(np.int64).view(np.uint8), zlib.crc32(row[nz].view(np.uint8)))
            out[order[i]] = crc
    return out


def values_check(X, obs_names) -> dict:
    """What a score records of the values it was made from: the names of ``CHECK_RUNS`` runs of ``CHECK_ROWS``
    cells spread over ``X`` and their :func:`row_checksums`."""
    n = X.shape[0]
    starts = np.unique(np.linspace(0, max(n - CHECK_ROWS, 0), CHECK_RUNS).astype(int))
    rows = np.unique(np.concatenate([np.arange(a, min(a + CHECK_ROWS, n)) for a in starts])) if n else np.array([])
    return {"cells": [str(obs_names[i]) for i in rows], "crc": row_checksums(X, rows).tolist()}


def same_values(X, obs_names, check) -> bool:
    """Whether the recorded cells of ``check`` (:func:`values_check`) that ``obs_names`` still holds carry the
    values they had: a subset of the cells keeps its scores, values changed in place (``X * 2``, normalised again)
    do not. True where nothing can be compared (no recorded cell left, repeated names)."""
    names = pd.Index(obs_names).astype(str)
    if not isinstance(check, dict) or "cells" not in check or not names.is_unique:
        return True
    pos = names.get_indexer(pd.Index([str(c) for c in check["cells"]]))  # a list, or an array read back
    present = pos >= 0
    if not present.any():
        return True
    return bool(np.array_equal(row_checksums(X, pos[present]), np.asarray(check["crc"], dtype=np.int64)[present]))


# bases of log values recognised by one total per row once taken back (scanpy's log1p, log2(TPM + 1), log10)
LOG_BASES = (np.e, 2.0, 10.0)
MAX_TOTAL_CV = 0.01  # the coefficient of variation of the cells' totals at which a base is recognised


def log_base(block) -> float | None:
    """The base ``b`` of ``LOG_BASES`` for which the rows of log values, taken back as ``b ** x - 1``, share one
    total (coefficient of variation at most ``MAX_TOTAL_CV``), or ``None``."""
    M = csr64(block)
    if M.nnz == 0 or M.data.min() < 0:
        return None
    best, best_cv = None, MAX_TOTAL_CV
    for b in LOG_BASES:
        totals = np.asarray(taken_back(M, b).sum(axis=1)).ravel()
        totals = totals[totals > 0]
        cv = totals.std() / totals.mean() if totals.size > 1 else np.inf
        if cv <= best_cv:
            best, best_cv = b, cv
    return best


def log_encoding(block) -> tuple[float | None, float]:
    """The base of log values (:func:`log_base`) and the value their zeros take, or ``(None, 0.0)``.

    ``log2(x + eps)`` is ``log2(x / eps + 1)`` shifted by ``log2(eps)``: values whose lowest entry is not zero are
    read from it, so that ``log2(CPM + 0.1)`` is recognised as ``log2(CPM + 1)`` is.
    """
    if not block.shape[0] or not block.shape[1]:
        return None, 0.0
    low = float(block.min())
    if low == 0:
        return log_base(block), 0.0
    base = log_base((block.toarray() if sp.issparse(block) else np.asarray(block, dtype=np.float64)) - low)
    return (base, low) if base is not None else (None, 0.0)


def encoded_values(block, base: float, floor: float = 0.0) -> sp.csr_matrix:
    """The linear values that log values of ``base`` whose zeros sit at ``floor`` encode: ``b ** v - b ** floor``
    (``log_b(x + eps)`` gives back ``x``; with ``floor`` 0, :func:`taken_back`), zeros stored as none."""
    if not floor:
        return taken_back(csr64(block), base)
    dense = block.toarray() if sp.issparse(block) else np.asarray(block, dtype=np.float64)
    return csr64(np.maximum(np.power(base, dense) - base**floor, 0.0))


def pseudocount_one(block, base: float, floor: float) -> sp.csr_matrix:
    """Log values ``log_b(x + eps)`` (zeros at ``floor = log_b(eps)``) as ``log_b(x + 1)``, the pseudocount
    scanpy's log1p and log2(TPM + 1) use (:func:`encoded_values`)."""
    M = encoded_values(block, base, floor)
    M.data = np.log1p(M.data) / np.log(base)
    return M


def csr64(block) -> sp.csr_matrix:
    return sp.csr_matrix(block if sp.issparse(block) else np.asarray(block), dtype=np.float64)


def taken_back(M: sp.csr_matrix, base: float) -> sp.csr_matrix:
    """``base ** x - 1`` of every stored entry (zeros stay zero)."""
    return sp.csr_matrix((np.expm1(M.data * np.log(base)), M.indices, M.indptr), shape=M.shape)


def dense_matrix(X) -> np.ndarray:
    """All of ``X`` (in memory, sparse, backed or dask, dense or sparse chunks) as a float64 ndarray: for small
    panels (protein channels), never for a transcriptome."""
    block = row_block(X, 0, X.shape[0])
    return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)


@numba.njit(parallel=True, cache=True)
def _column_sums_csr(indices, data, n_cols, n_threads):  # pragma: no cover - compiled
    """Per-column sums of CSR ``data``, one partial sum per thread."""
    partial = np.zeros((n_threads, n_cols))
    step = (data.size + n_threads - 1) // n_threads
    for t in numba.prange(n_threads):
        for p in range(t * step, min((t + 1) * step, data.size)):
            partial[t, indices[p]] += data[p]
    return partial.sum(axis=0)


def column_sums(X) -> np.ndarray | None:
    """Per-gene sums of an in-memory CSR matrix without slicing rows (``None`` for other matrix types)."""
    if not (sp.issparse(X) and X.format == "csr"):
        return None
    return _column_sums_csr(X.indices, X.data, X.shape[1], numba.get_num_threads())


def _available_memory() -> float:
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return float("inf")


def check_chunks(X, chunk_size: int) -> None:
    """Clear errors for a dask array without known chunk sizes and for a dense chunk that cannot fit in memory."""
    if chunk_size < 1:
        msg = f"chunk_size must be a positive number of cells, got {chunk_size}."
        raise TmtInputError(msg)
    if is_dask(X) and any(np.isnan(c).any() for c in map(np.asarray, X.chunks)):
        msg = ("the dask array has unknown chunk sizes (e.g. after boolean indexing); call "
               "adata.X = adata.X.compute_chunk_sizes() first.")
        raise TmtInputError(msg)
    dense = isinstance(X, np.ndarray) or (is_dask(X) and not sp.issparse(getattr(X, "_meta", None)))
    if dense:
        need = min(chunk_size, X.shape[0]) * X.shape[1] * 8 * 3  # the block, its float64 copy and a transform
        if need > _available_memory():
            msg = (f"chunk_size={chunk_size} needs about {need / 2**30:.1f} GiB per chunk for {X.shape[1]} genes, "
                   f"more than this machine has free; pass a smaller chunk_size.")
            raise MemoryError(msg)


def iter_rows(X, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, int, object]]:
    """Yield ``(start, stop, block)`` over row chunks of any supported matrix (in memory, backed or dask)."""
    n = X.shape[0]
    check_chunks(X, chunk_size)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        yield start, stop, row_block(X, start, stop)


def row_sums(block) -> np.ndarray:
    return np.asarray(block.sum(axis=1)).ravel()


def normalise_block(block, state: str, target_sum: float | None, cols=None):
    """Bring a chunk to log-normalised scale: counts -> log1p(x / libsize * target), linear -> log1p(x).

    With ``cols``, only those columns are returned; library sizes still come from every column, and the other
    columns are never normalised (much less memory when few genes are needed).
    """
    lib = row_sums(block) if state == "counts" else None
    if cols is not None:
        block = block[:, cols]
    if state == "counts":
        scale = np.divide(target_sum, lib, out=np.zeros_like(lib), where=lib > 0)
        if sp.issparse(block):
            block = sp.diags(scale) @ block
            block.data = np.log1p(block.data)
            return block.tocsr()
        return np.log1p(block * scale[:, None])
    if state == "linear":
        if sp.issparse(block):
            block = block.copy()
            block.data = np.log1p(block.data)
            return block
        return np.log1p(block)
    return block


def row_floor(block) -> np.ndarray:
    """Per row, the value its zero counts map to: the row's minimum (0 for counts, TPM and log1p values;
    log2(eps) for log2(x + eps); the constant of a shift). A single cell always has genes with no counts."""
    low = block.min(axis=1)
    return np.asarray(low.toarray() if sp.issparse(low) else low, dtype=np.float64).ravel()


def above_floor(values, floor: np.ndarray) -> np.ndarray:
    """Whether each value is above its row's ``floor`` (a relative tolerance keeps float noise out)."""
    f = np.asarray(floor, dtype=np.float64)[:, None]
    return np.asarray(values) > f + 1e-6 * np.maximum(1.0, np.abs(f))


def median_detected(adata: AnnData, layer: str | None, max_obs: int = 200) -> float:
    """Median number of genes detected per observation (above the row's floor, so that log values with negatives
    count as counts do), over the first ``max_obs`` observations."""
    if not adata.n_obs:
        return 0.0
    X = row_block(get_matrix(adata, layer), 0, min(adata.n_obs, max_obs))
    dense = X.toarray() if sp.issparse(X) else X
    return float(np.median(above_floor(dense, row_floor(X)).sum(axis=1)))


def looks_like_bulk(adata: AnnData, layer: str | None) -> bool:
    """At most ``MAX_BULK_SAMPLES`` observations, each detecting a median of more than ``BULK_DETECTED`` genes: bulk
    samples, not cells."""
    return adata.n_obs <= MAX_BULK_SAMPLES and median_detected(adata, layer) > BULK_DETECTED

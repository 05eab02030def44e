"""Within-cell ranks of marker genes (UCell's reading of expression: Andreatta & Carmona 2021,
doi:10.1016/j.csbj.2021.06.043).

A gene's rank among the genes a cell expresses does not change with library size, log transformation or
normalisation, and it needs no control genes drawn from the rest of the panel, so the same cell reads the same
whether its matrix holds counts, CPM or log values.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from .touching import touching_cells

# UCell's default: a gene ranked below the 1,500th of a cell counts as not expressed by it
MAX_RANK = 1500
# On a panel of selected genes (2,000 highly variable genes, a 500-gene targeted panel) a cell's 1,500th gene is near
# the bottom of what it expresses, so a single stray transcript would read as a marker. There the cut is the top
# quarter of the panel's genes. Measured across the four labelled RNA sets and their 2,000-gene variants, shares
# 0.1-0.25 of the panel against the fixed 1,500 (benchmarks/validate_annotation.py): 0.25 is the largest share that
# costs no set more than 0.02 and gains on the selected panels (Puram 2,000 genes 0.778 -> 0.856, Chen's 479-gene
# MERFISH 0.504 -> 0.535); 0.1 lowered Puram's 7,943-gene file by 0.07.
PANEL_SHARE = 0.25


# Ambient RNA: droplet assays capture the cell-free RNA of lysed cells with every cell, in the proportions of the
# data set's pooled profile (SoupX, Young & Behjati 2020, doi:10.1093/gigascience/giaa151: T cells and myeloid cells
# carry the B and plasma cells' IGKC; the fraction varies from 2% to 50% between experiments, about 10% being
# common). A marker counted in a cell at no more than this share of the cell's UMIs in the pooled profile's
# proportions is one that ambient RNA explains, and counts as not expressed. Read on whole-number counts only:
# normalised values, TPM and log values hold no library size to scale the soup by.
# Measured across the labelled sets (docs/validation.md): Qian 2020's ovarian cells 0.894 -> 0.902, at 2,000
# variable genes 0.833 -> 0.877 (a sample's 199 tumour cells were plasma seeds on ambient IGKC, DERL3 and FKBP11;
# now none); every other set and stress within 0.01.
AMBIENT_SHARE = 0.1


def whole_numbers(values: np.ndarray) -> bool:
    """Whether every value is a whole number (UMI or read counts rather than normalised values)."""
    return bool(np.all(values == np.round(values)))


def discount_ambient(R: np.ndarray, counts: sp.csr_matrix, library: np.ndarray, share: float = AMBIENT_SHARE, *,
                     columns: np.ndarray | None = None) -> int:
    """Set to 0 (in place) the rank scores of markers counted in a cell at most ``share`` x the cell's library x
    the marker's share of all the data set's counts; returns how many counts were read as ambient.

    ``counts`` holds the markers' counts, ``library`` each cell's total over every gene; ``R``'s column ``j`` reads
    column ``columns[j]`` of ``counts`` (default: the same column).
    """
    if share <= 0 or counts.nnz == 0 or library.sum() <= 0:
        return 0
    pooled = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel() / float(library.sum())
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    ambient = counts.data <= share * library[rows] * pooled[counts.indices]
    flags = sp.csr_matrix((np.ones(int(ambient.sum()), dtype=np.int8), (rows[ambient], counts.indices[ambient])),
                          shape=counts.shape)
    if columns is not None:
        flags = flags[:, columns]
    R[flags.nonzero()] = 0.0
    return int(ambient.sum())


def spillover_reads(counts: sp.csr_matrix, xy: np.ndarray, images: np.ndarray, fraction: float) -> sp.csr_matrix:
    """The marker reads a touching cell explains: where a cell's count is at most ``fraction`` x the count of its
    touching neighbour with the most of that marker (:func:`.touching.touching_cells`), as a boolean matrix shaped
    like ``counts`` (the markers' counts).

    Segmentation gives a cell some of the transcripts of the cell beside it: a T cell touching a macrophage carries a
    few of its C1Q transcripts, in the proportion the protein panels' ``spillover`` assumes for intensities.
    """
    hit_rows, hit_cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    if fraction > 0 and counts.nnz:
        for rows, near, touching in touching_cells(xy, images):
            most = sp.csr_matrix((len(rows), counts.shape[1]), dtype=np.float64)
            for j in range(near.shape[1]):  # one neighbour rank at a time: memory stays that of the image's counts
                most = most.maximum(sp.diags(touching[:, j].astype(np.float64)) @ counts[near[:, j]])
            own = counts[rows].tocoo()
            beside = np.asarray(most.tocsr()[own.row, own.col], dtype=np.float64).ravel()
            hit = own.data <= fraction * beside
            hit_rows.append(rows[own.row[hit]])
            hit_cols.append(own.col[hit].astype(np.int64))
    r, c = np.concatenate(hit_rows), np.concatenate(hit_cols)
    return sp.csr_matrix((np.ones(r.size, dtype=bool), (r, c)), shape=counts.shape)


def max_rank_for(n_genes: int) -> float:
    """The rank below which a gene counts as not expressed, on a panel of ``n_genes`` genes."""
    return float(min(MAX_RANK, max(1.0, PANEL_SHARE * n_genes)))


def within_cell_ranks(block, cols: np.ndarray, max_rank: float = MAX_RANK) -> np.ndarray:
    """``1 - (rank - 1) / max_rank`` (clipped to 0-1) of columns ``cols`` in each row; 0 where not expressed.

    ``rank`` is 1 for the cell's highest gene; tied values share their mean rank. Values at or below a row's
    minimum count as not expressed, so log values with negatives read like the counts they came from.
    """
    cols = np.asarray(cols, dtype=np.int64)
    if sp.issparse(block):  # float32 stays float32: the order of a row's values is all that counts
        B = sp.csr_matrix(block, dtype=block.dtype if block.dtype in (np.float32, np.float64) else np.float64)
    else:
        D = np.asarray(block, dtype=np.float64)
        if D.size and D.min() < 0:
            D = D - D.min(axis=1, keepdims=True)
        B = sp.csr_matrix(D)
    n = B.shape[0]
    if cols.size == 0 or B.nnz == 0:
        return np.zeros((n, cols.size), dtype=np.float32)
    # a gene read twice (two symbols on one column) is ranked once
    unique, inverse = np.unique(cols, return_inverse=True)
    slot = np.full(B.shape[1], -1, dtype=np.int64)
    slot[unique] = np.arange(unique.size)
    out = _marker_ranks(B.indptr.astype(np.int64), B.indices.astype(np.int64), B.data, slot, unique.size,
                        float(max_rank))
    return out[:, inverse]


@numba.njit(parallel=True, cache=True)
def _marker_ranks(indptr, indices, data, slot, n_slots, max_rank):  # pragma: no cover - compiled
    """Rank scores of the marker columns (``slot[column] >= 0``) in each row of a CSR matrix."""
    out = np.zeros((indptr.size - 1, n_slots), dtype=np.float32)
    for i in numba.prange(indptr.size - 1):
        _row_ranks(indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]], slot, max_rank, out[i])
    return out


@numba.njit(cache=True)
def _row_ranks(indices, data, slot, max_rank, out):  # pragma: no cover - compiled
    """One row, without sorting it: its few expressed markers are sorted, and each of the row's values is counted
    against them (how many values lie above each marker's value, how many tie with it)."""
    is_marker = np.empty(data.size, dtype=np.bool_)
    for p in range(data.size):
        is_marker[p] = slot[indices[p]] >= 0 and data[p] > 0
    where = np.flatnonzero(is_marker)
    if where.size == 0:
        return
    values = data[where]
    levels = np.unique(values)
    past = np.zeros(levels.size + 1, dtype=np.int64)  # past[j]: values above level j - 1, not above level j
    tied = np.zeros(levels.size, dtype=np.int64)
    for p in range(data.size):
        x = data[p]
        if x > 0:
            j = np.searchsorted(levels, x)
            past[j] += 1
            if j < levels.size and levels[j] == x:
                tied[j] += 1
    above = np.cumsum(past[::-1])[::-1][1:]  # above[j]: values above level j
    for t in range(where.size):
        j = np.searchsorted(levels, values[t])
        rank = above[j] + (tied[j] + 1) / 2.0
        out[slot[indices[where[t]]]] = min(1.0, max(0.0, 1.0 - (rank - 1.0) / max_rank))

"""Cell identity from RNA: within-cell ranks of the marker genes, pooled over expression neighbours, and the
lineages the classifier learns from the clearest cells (one pass over the matrix, no AnnData)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..._matrix import encoded_values, iter_rows, log_encoding, normalise_block
from ..._utils import warn
from ...sig._genes import control_probes, match_genes
from . import embedding, ranks
from . import lineage as lineage_core
from .lineage import UNASSIGNED
from .markers import MarkerTable
from .states import cluster_probability_calls, lend_cluster_calls

# among cells known to be T cells, a co-receptor seed needs half a lineage seed's evidence (the T-cell call already
# rests on a lineage seed's): measured across the five labelled RNA sets (benchmarks/validate_annotation.py) when it
# was set (45603b0; today's figures are in docs/validation.md), with the classifier deciding every T cell, lineage
# accuracy rose on Puram (0.933 -> 0.939; 0.856 -> 0.883 at 1,000 counts per cell), Zilionis human (0.846 -> 0.895)
# and the PBMC sample (0.766 -> 0.782), Chen moved 0.535 -> 0.534
SPLIT_SEED_EVIDENCE = 0.1
# a cell's marker evidence is pooled over at most 2% of the cells, and over MIN_POOL (the cell included) where that
# is at most one cell in POOL_SHARE: on 180 cells (Puram's, 20 per type) 5, on 100 cells 2, on 60 cells one. Pooled
# over 5, a data set of 30 cells mixed its lineages: lineage accuracy on 30 cells drawn from Puram, Zilionis (human,
# mouse) and Chen, 3 draws each, 0.31 (now 0.65); on 60 cells 0.54 (0.70), on 100 0.66 (0.70); from 180 cells on
# the pool is what it was
MIN_POOL, POOL_SHARE = 5, 36
# log values whose linear profile has one total per cell (scanpy's log1p after normalize_total, log2(TPM + 1),
# log2(CPM + 1)) are read as the counts they encode, normalised to 10,000 per cell as counts are, so that the
# principal components depend neither on the base of the logarithm (scanpy's variable-gene selection reads its
# input as natural logs) nor on the total the user normalised to. Taken as they were, the Zilionis human cells at
# 1e6 per cell gave lineage accuracy 0.821 logged to base e, 0.754 to base 2 and 0.895 to base 10; read at their
# own total, 0.821 for each (validate_annotation.py --formats, log2(CPM + 1), each set at its 1e4 figure: Puram
# 0.950 -> 0.939, Chen 0.621 -> 0.632, Zilionis human 0.821 -> 0.884, mouse 0.941 -> 0.921, PBMC 0.825 -> 0.824).
# A file of selected genes has no such total and is read as it is (the base: tmetoolkit._matrix.log_base).
# 10,000 per cell, not the data's median depth (Ahlmann-Eltze & Huber 2023): measured in session 30, the median
# depth lost lineage accuracy on both shallow files (Chen 0.632 -> 0.606, the mouse file's 2,000 variable genes
# 0.571 -> 0.542) and the mouse Treg call (0.609 -> 0.400), also clipped to 1,000-10,000 (docs/validation.md).


Encoding = tuple[float | None, float]  # the base of log values and the value their zeros take (log_encoding)
NOT_ENCODED: Encoding = (None, 0.0)


@dataclass
class Expression:
    """What one pass over the matrix reads: the markers' within-cell ranks and the log-normalised genes of the cells
    the principal axes are fitted on; :meth:`lognorm_columns` reads the other genes' log values again, a few at a
    time."""

    ranks: np.ndarray  # within-cell rank scores of the marker genes, one column per gene of ``gene_col``
    gene_col: dict[str, int]
    fit_matrix: sp.csr_matrix  # the ``fit`` cells' log-normalised genes (float32, control probes left out)
    marker_cols: np.ndarray  # the gene columns that hold the markers the components always include
    fit: np.ndarray  # the cells the principal axes and the variable genes are fitted on
    empty: np.ndarray  # cells without a single nonzero value among the genes
    matrix: object  # the matrix read (never copied), for :meth:`lognorm_columns`
    genes_only: np.ndarray  # its columns that hold genes (not control probes)
    state: str
    encoding: Encoding = NOT_ENCODED  # log values read as the counts they encode: their base, their zeros' level
    # segmented cells: the marker reads a touching cell explains (ranks.spillover_reads), as columns of ``ranks``,
    # and the fraction of a neighbour's count they were read at (0: not read)
    explained: sp.csr_matrix | None = None
    spillover: float = 0.0

    @property
    def n_genes(self) -> int:
        return int(self.genes_only.size)

    def lognorm_columns(self, cols: np.ndarray) -> Iterator[np.ndarray]:
        """The log-normalised values of gene columns ``cols`` (increasing), as dense float32 row blocks in order:
        each value as in the whole matrix (library sizes from every gene), without holding the whole matrix's
        log values (at 200,000 cells x 6,047 genes that copy alone took 2.3 GB, as much as the input)."""
        for _, _, block in iter_rows(self.matrix):
            yield _lognorm_dense(_genes_of(block, self.genes_only), self.state, self.encoding, cols)


@dataclass
class Identity:
    """Marker evidence (own and rank scores), the neighbour weights it was pooled with, and the lineage calls."""

    result: lineage_core.LineageResult
    evidence_own: pd.DataFrame
    weights: sp.csr_matrix
    graph: str
    ranks: np.ndarray  # within-cell rank scores of the marker genes
    gene_col: dict[str, int]
    pcs: np.ndarray | None


def read_expression(X, var_names, *, species: str, state: str, table: MarkerTable, seed: int = 0,
                    xy: np.ndarray | None = None, images: np.ndarray | None = None,
                    spillover: float = 0.0) -> Expression:
    """One pass over the matrix: the markers' within-cell ranks and the log-normalised values of the cells the data
    set's own principal axes and variable genes are fitted on (``fit``); every cell's values are read again when
    it is projected (:meth:`Expression.lognorm_columns`). On whole-number counts, markers at the ambient level read
    as not expressed (:func:`.ranks.discount_ambient`), and given the segmented cells' coordinates ``xy`` and
    ``images``, the reads a touching cell explains at ``spillover`` are marked (:func:`.ranks.spillover_reads`)."""
    found = match_genes(table.genes, var_names, species)
    genes = list(found)
    cols = np.array([found[g][0] for g in genes], dtype=np.int64)
    genes_only = np.flatnonzero(~control_probes(var_names))
    max_rank = ranks.max_rank_for(genes_only.size)
    rank_cols = np.searchsorted(genes_only, cols).clip(max=max(genes_only.size - 1, 0))
    on_gene = np.isin(cols, genes_only).astype(np.float32)  # a marker matched to a probe's column reads 0
    n_obs = X.shape[0]
    fit = embedding.fit_cells(n_obs, seed)
    R = np.zeros((n_obs, cols.size), dtype=np.float32)  # filled in place: no second copy while stacking
    empty = np.zeros(n_obs, dtype=bool)
    F_parts, encoding = [], (None, 0.0)
    # the markers' counts and the cells' library sizes, to tell ambient RNA from a cell's own (ranks.AMBIENT_SHARE)
    umis = state == "counts"
    V_parts, library = [], np.zeros(n_obs, dtype=np.float64)
    unique_cols, unique_of = np.unique(rank_cols, return_inverse=True)
    for start, stop, block in iter_rows(X):
        # ranks and library sizes are among the genes: blank and negative-control probes take no part
        block = _genes_of(block, genes_only)
        if start == 0 and state == "lognorm":
            encoding = log_encoding(block[:1000])
        R[start:stop] = ranks.within_cell_ranks(block, rank_cols, max_rank) * on_gene
        if umis:
            counts = sp.csr_matrix(block)
            umis = ranks.whole_numbers(counts.data)
            library[start:stop] = np.asarray(counts.sum(axis=1, dtype=np.float64)).ravel()
            V_parts.append(embedding.take_columns(counts, unique_cols))
        empty[start:stop] = np.asarray(abs(block).sum(axis=1)).ravel() == 0
        here = fit[(fit >= start) & (fit < stop)] - start
        if here.size:
            F_parts.append(_lognorm(block, state, encoding, rows=here))
    explained = None
    if umis and V_parts:
        V = sp.vstack(V_parts, format="csr")
        ranks.discount_ambient(R, V, library, columns=unique_of)
        if xy is not None and spillover > 0:
            explained = ranks.spillover_reads(V, xy, images, spillover)[:, unique_of]
    F = sp.vstack(F_parts, format="csr") if F_parts else sp.csr_matrix((0, genes_only.size), dtype=np.float32)
    # the markers join the variable genes the components are computed on (stand-ins only when they are read)
    spare = table.reserve_genes
    marker_cols = np.unique([c for g, c in zip(genes, cols, strict=True) if g not in spare])
    keep = np.searchsorted(genes_only, np.intersect1d(marker_cols, genes_only))
    return Expression(R, {g: i for i, g in enumerate(genes)}, F, keep, fit, empty, X, genes_only, state, encoding,
                      explained, spillover if explained is not None else 0.0)


def _genes_of(block, genes_only: np.ndarray):
    """A row block without its control-probe columns (the block itself when every column is a gene)."""
    if genes_only.size == block.shape[1]:
        return block
    return embedding.take_columns(sp.csr_matrix(block), genes_only) if sp.issparse(block) else block[:, genes_only]


def _lognorm(block, state: str, encoding: Encoding = NOT_ENCODED, *, rows: np.ndarray | None = None,
             cols: np.ndarray | None = None) -> sp.csr_matrix:
    """A row block log-normalised as :func:`~tmetoolkit._matrix.normalise_block` does (counts to 10,000 per cell),
    as float32 CSR; log values of a recognised ``encoding`` are read as the counts they encode. A CSR block of counts
    without scipy's general sparse product. ``rows`` / ``cols`` (increasing): only those rows / columns are
    returned, each value as in the whole block (library sizes from every column)."""
    block, state = _as_counts(block, state, encoding)
    if _is_csr_counts(block, state):
        scale = _scale(block)
        if rows is not None:
            block, scale = block[rows], scale[rows]
        if cols is not None:
            block = embedding.take_columns(block, cols)
        data = _log_scaled(block.indptr, block.data, scale)
        return sp.csr_matrix((data, block.indices, block.indptr), shape=block.shape)
    block = sp.csr_matrix(block, dtype=np.float64) if sp.issparse(block) else np.asarray(block, dtype=np.float64)
    out = sp.csr_matrix(normalise_block(block, state, 1e4, cols=cols), dtype=np.float32)
    return out if rows is None else out[rows]


def _lognorm_dense(block, state: str, encoding: Encoding, cols: np.ndarray) -> np.ndarray:
    """Columns ``cols`` (increasing) of :func:`_lognorm` of a row block as a dense float32 array; a CSR block of
    counts in one pass over its entries (taking the columns, then the logs, then the dense array took three)."""
    block, state = _as_counts(block, state, encoding)
    if _is_csr_counts(block, state):
        slot = np.full(block.shape[1], -1, dtype=np.int64)
        slot[cols] = np.arange(cols.size)
        return _log_scaled_columns(block.indptr, block.indices, block.data, _scale(block), slot, cols.size)
    return embedding.dense_columns(_lognorm(block, state, cols=cols), np.arange(cols.size))


def _as_counts(block, state: str, encoding: Encoding):
    """Log values of a recognised encoding taken back to the counts they encode, as ``(block, "counts")``."""
    base, floor = encoding
    if state != "lognorm" or base is None:
        return block, state
    return encoded_values(block, base, floor), "counts"


def _is_csr_counts(block, state: str) -> bool:
    return state == "counts" and sp.issparse(block) and block.format == "csr"


def _scale(block: sp.csr_matrix) -> np.ndarray:
    """Per row, the factor that brings its total to 10,000 (0 for an empty row)."""
    lib = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
    return np.divide(1e4, lib, out=np.zeros_like(lib), where=lib > 0)


@numba.njit(parallel=True, cache=True)
def _log_scaled_columns(indptr, indices, data, scale, slot, n_cols):  # pragma: no cover - compiled
    """:func:`_log_scaled` of the entries in columns ``slot[column] >= 0``, as a dense float32 rows x ``n_cols``."""
    out = np.zeros((indptr.size - 1, n_cols), dtype=np.float32)
    for i in numba.prange(indptr.size - 1):
        for p in range(indptr[i], indptr[i + 1]):
            j = slot[indices[p]]
            if j >= 0:
                out[i, j] = np.log1p(np.float64(data[p]) * scale[i])
    return out


@numba.njit(parallel=True, cache=True)
def _log_scaled(indptr, data, scale):  # pragma: no cover - compiled
    """``log1p(value * scale[row])`` of each entry of a CSR matrix, computed in float64, stored as float32."""
    out = np.empty(data.size, dtype=np.float32)
    for i in numba.prange(indptr.size - 1):
        for p in range(indptr[i], indptr[i + 1]):
            out[p] = np.log1p(np.float64(data[p]) * scale[i])
    return out


def rna_identity(expr: Expression, obs_names, *, variable: np.ndarray | None, table: MarkerTable, connectivities,
                 n_neighbors: int, seed: int, min_confidence: float) -> Identity:
    """Marker evidence from within-cell ranks, pooled over expression neighbours, and the classifier's calls.

    ``variable`` marks the variable genes among the columns of ``expr.fit_matrix`` (``None``: all genes) that, with
    the markers, span the principal components; ``connectivities`` is the user's neighbour graph or ``None``.
    """
    R, gene_col = expr.ranks, expr.gene_col
    E, missing = lineage_core.label_evidence(R, gene_col, table, expr.explained)
    E.index = obs_names
    n_obs = len(obs_names)
    pcs = None
    if n_obs > 2:
        genes = embedding.component_columns(expr.n_genes, variable, expr.marker_cols)
        pcs = embedding.principal_components(expr.fit_matrix, genes, expr.lognorm_columns(genes), n_obs, seed=seed)
    conn = connectivities
    if conn is not None and conn.shape == (n_obs, n_obs):
        W, graph = embedding.graph_weights(conn), "obsp['connectivities']"
    elif pcs is not None and n_neighbors > 1:
        # in a small data set 15 neighbours reach beyond a population of 20 cells
        k = int(max(1, min(n_neighbors, max(n_obs // 50, min(MIN_POOL, n_obs // POOL_SHARE)))))
        W, graph = embedding.neighbour_weights(pcs, k, seed=seed), f"{k} nearest cells on PCs"
    else:
        W, graph = sp.identity(n_obs, format="csr"), "none"
    pooled = lineage_core.pool(E, W)
    E_free, _ = lineage_core.label_evidence(R, gene_col, table, expr.explained, without_siblings=True)
    E_free.index = obs_names
    res = lineage_core.call_lineages(pooled, pcs, min_confidence=min_confidence, seed=seed, not_assessable=missing,
                                     sibling_free=lineage_core.pool(E_free, W) if E_free.shape[1] else None)
    lineage_core.apply_decisive(res, E, R, gene_col, table)
    # a cell without a single read has no identity of its own, whatever its neighbours are
    res.lineage[expr.empty], res.label[expr.empty], res.confidence[expr.empty] = UNASSIGNED, UNASSIGNED, 0.0
    for parent in table.splits:
        _split(res, parent, table.split(parent), R, gene_col, W, pcs, seed, expr.explained)
    if res.by_markers:
        warn(f"too few confident cells to learn {', '.join(res.by_markers)} from this data set (fewer than "
             f"{lineage_core.MIN_SEEDS}): their cells are called by their markers alone")
    return Identity(res, E, W, graph, R, gene_col, pcs)


def _split(res: lineage_core.LineageResult, parent: str, sub: MarkerTable, R: np.ndarray, gene_col: dict,
           W: sp.csr_matrix, pcs, seed: int, explained: sp.csr_matrix | None = None) -> None:
    """Divide the cells called ``parent`` (T cells) into the lineages of ``sub`` (CD8 T, CD4 T), in place.

    Evidence is pooled over neighbours of the same parent only; seeds and the classifier work as for lineages, and
    every such cell gets the likelier lineage (its confidence is the lower of the two calls).
    """
    mask = res.lineage == parent
    E, missing = lineage_core.label_evidence(R[mask], gene_col, sub, None if explained is None else explained[mask])
    res.not_assessable.update(missing)
    if not mask.any():
        return
    if E.shape[1] < 2:  # one lineage cannot be measured (no CD8 genes): the other is called where its markers are
        have = lineage_core.pool(E, W[mask][:, mask]) if E.shape[1] else None
        sub_lin = np.full(int(mask.sum()), UNASSIGNED, dtype=object)
        if have is not None:
            sub_lin[have.iloc[:, 0].to_numpy() > 0] = have.columns[0]
        res.lineage[mask] = sub_lin
        res.label[mask] = sub_lin
        res.confidence[mask] = np.where(sub_lin == UNASSIGNED, 0.0, res.confidence[mask])
        return
    Ws = W[mask][:, mask]
    s = np.asarray(Ws.sum(axis=1)).ravel()
    Ws = sp.csr_matrix(sp.diags(1.0 / np.where(s > 0, s, 1.0)) @ Ws)
    part = lineage_core.call_lineages(lineage_core.pool(E, Ws), None if pcs is None else pcs[mask],
                                      min_confidence=0.0, seed=seed, require_evidence=False,
                                      seed_evidence=SPLIT_SEED_EVIDENCE)
    res.n_seeds.update(part.n_seeds)
    for lab in part.by_markers:
        if lab not in res.by_markers:
            res.by_markers.append(lab)
    res.lineage[mask] = part.lineage
    res.label[mask] = part.lineage
    res.confidence[mask] = np.minimum(res.confidence[mask], np.where(part.lineage == UNASSIGNED, 0.0, part.confidence))


def neighbour_mean_w(values: np.ndarray, W: sp.csr_matrix, step: int = 8) -> np.ndarray:
    """Rows averaged with row-normalised weights ``W``; NaN entries are skipped, an empty row stays empty.

    ``step`` columns at a time: all at once, the temporaries were five copies of ``values`` (cells x signatures in
    float64: 2.7 GB at 1,000,000 cells and 68 signatures).
    """
    out = np.empty(values.shape, dtype=np.float64)
    for start in range(0, values.shape[1], step):
        v = values[:, start:start + step]
        finite = np.isfinite(v)
        num = W @ np.where(finite, v, 0.0)
        den = W @ finite.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = num / den
        part[~finite] = np.nan
        out[:, start:start + step] = part
    return out


def cluster_consensus(res: lineage_core.LineageResult, groups: pd.Series, override: float,
                       min_confidence: float, parents=()) -> tuple[np.ndarray, np.ndarray]:
    """Lineages smoothed over clusters: a cluster whose cells' mean probability for one lineage reaches ``override``
    gives that lineage to its cells that are less sure of their own call. Mixed clusters (CD4 and CD8 T cells in
    one Leiden cluster) and cells without a cluster keep the cells' own calls; so do the cells of a cluster whose
    lineage is divided further (``parents``: T cells, divided into CD8 T and CD4 T cell by cell)."""
    P = res.probability
    if P.shape[1] == 0:
        return res.lineage.copy(), res.confidence.copy()
    g_lab, g_conf = cluster_probability_calls(P, groups)
    g_conf = g_conf.where(~g_lab.isin(list(parents)), 0.0)
    lineage, conf = lend_cluster_calls(g_lab, g_conf, groups, res.lineage, res.confidence, override)
    return np.where(conf >= min_confidence, lineage, UNASSIGNED).astype(object), conf

"""The scoring methods on a cells x genes matrix, one vectorised pass for all signatures: matrices and gene
positions in, scores out; the runner (``tmetoolkit.tl._score``) matches signatures to genes and writes the keys."""

from __future__ import annotations

import zlib
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..._matrix import DEFAULT_CHUNK, column_sums, iter_rows, normalise_block, pseudocount_one
from ..._utils import progress_bar
from . import kernels as _kernels

Method = Literal["mean_ctrl", "rank", "aucell", "ssgsea"]
METHODS = ("mean_ctrl", "rank", "aucell", "ssgsea")


def positions(sig, found: dict[str, list[int]], genes) -> tuple[np.ndarray, np.ndarray]:
    """Matrix columns and weights for the given genes; a gene mapped to several columns shares its weight."""
    cols, w = [], []
    for g in genes:
        if g in found:
            pos = found[g]
            cols += pos
            w += [sig.weight(g) / len(pos)] * len(pos)
    return np.asarray(cols, dtype=np.int64), np.asarray(w, dtype=np.float64)


def _gene_means(X, state: str, target_sum, chunk_size: int, prepare=None) -> np.ndarray:
    if state not in ("counts", "linear") and prepare is None:
        if isinstance(X, np.ndarray):
            return X.mean(axis=0, dtype=np.float64)
        sums = column_sums(X)
        if sums is not None:
            return sums / X.shape[0]
    total = np.zeros(X.shape[1])
    for _, _, block in iter_rows(X, chunk_size):
        block = normalise_block(block, state, target_sum)
        total += np.asarray((prepare(block) if prepare else block).sum(axis=0)).ravel()
    return total / X.shape[0]


def _mean_ctrl_weights(plan, n_vars, means, *, n_bins, ctrl_size, seed) -> tuple[np.ndarray, np.ndarray]:
    """Genes x columns matrix ``W`` and the signature of each column.

    ``X @ W`` gives, per signature, the up part (up-gene mean minus control mean) and, for signatures with down
    genes, a second column with the down part; see :func:`_combine_parts`.
    """
    rows, cols, vals, owner = [], [], [], []
    for j, (up, w_up, down, w_down) in enumerate(plan):
        for idx, w in ((up, w_up), (down, w_down)):
            if idx.size == 0:
                continue
            # a fresh legacy generator per gene set reproduces scanpy.tl.score_genes(random_state=seed)
            rng = np.random.RandomState(seed)
            ctrl = _kernels.control_genes(means, np.unique(idx), n_bins=n_bins, ctrl_size=ctrl_size, rng=rng)
            col = len(owner)
            owner.append(j)
            rows += [idx, ctrl]
            cols += [np.full(idx.size, col), np.full(ctrl.size, col)]
            vals += [w / w.sum(), np.full(ctrl.size, -1.0 / max(ctrl.size, 1))]
    W = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_vars, len(owner)))
    return W.toarray(), np.asarray(owner)  # genes x columns is small; a dense right operand keeps the result dense


def _combine_parts(parts: np.ndarray, owner: np.ndarray, n_sig: int) -> np.ndarray:
    """Score = up part minus the down part where positive: missing down genes never raise a score."""
    first = np.r_[True, owner[1:] != owner[:-1]]
    out = np.empty((parts.shape[0], n_sig))
    out[:, owner[first]] = parts[:, first]
    if (~first).any():
        out[:, owner[~first]] -= np.maximum(parts[:, ~first], 0.0)
    return out


def nonnegative_rows(block):
    """``block`` with each row shifted so that its smallest value is 0, when it has negative values.

    Log values may be negative (voom log-CPM, log2 intensities, log2(TPM + 0.001)); the rank methods take the zeros
    of a sparse row as its lowest values. A shift within a row keeps its ranks, so their scores do not change.
    """
    if sp.issparse(block):
        if block.data.size == 0 or block.data.min() >= 0:
            return block
        block = block.toarray()
    block = np.asarray(block, dtype=np.float64)
    if block.size == 0 or block.min() >= 0:
        return block
    return block - block.min(axis=1, keepdims=True)


def _membership(plan, n_vars, which: int) -> sp.csr_matrix:
    rows = [p[which] for p in plan]
    cols = [np.full(r.size, j) for j, r in enumerate(rows)]
    data = np.ones(sum(r.size for r in rows))
    return sp.coo_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=(n_vars, len(plan))).tocsr()


def _ssgsea_block(block, plan, *, seed: int) -> np.ndarray:
    """Single-sample GSEA enrichment scores (gseapy, Barbie 2009) for one block of observations.

    Genes are named by their column so that a signature's matched columns (aliases, orthologs) are used as is. The
    raw enrichment score (not gseapy's NES, which is rescaled by the range over the samples given) keeps every
    sample's score independent of the others, so chunks and subsets agree. Down genes count as for the rank methods.
    """
    import gseapy

    dense = block.toarray() if sp.issparse(block) else np.asarray(block)
    # every gene takes part in the ranking; genes are named by their column number
    df = pd.DataFrame(dense.T, index=[f"g{j}" for j in range(dense.shape[1])],
                      columns=[f"s{i}" for i in range(dense.shape[0])])
    sets = {}
    for j, (up, _, down, _) in enumerate(plan):
        sets[f"up{j}"] = [f"g{c}" for c in np.unique(up)]
        if down.size:
            sets[f"down{j}"] = [f"g{c}" for c in np.unique(down)]
    res = gseapy.ssgsea(data=df, gene_sets=sets, sample_norm_method="rank", min_size=1, max_size=100_000,
                        outdir=None, no_plot=True, threads=1, seed=seed, verbose=False)
    es = res.res2d.pivot(index="Name", columns="Term", values="ES").astype(float).reindex(df.columns)
    out = np.column_stack([es[f"up{j}"].to_numpy() for j in range(len(plan))])
    for j, (_, _, down, _) in enumerate(plan):
        if down.size:
            out[:, j] = np.maximum(0.0, out[:, j] - np.nan_to_num(es[f"down{j}"].to_numpy()))
    return out


def score_matrix(
    X,
    plan: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    state: str,
    method: Method,
    target_sum: float | None = None,
    n_bins: int = 25,
    ctrl_size: int = 50,
    max_rank: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    seed: int = 0,
    progress: bool = False,
    background: np.ndarray | None = None,
    encoding: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict]:
    """Score a cells x genes matrix for every signature of ``plan`` (up columns, weights, down columns, weights).

    ``background`` (boolean, per column) marks the genes: ``mean_ctrl`` draws controls only from them and ``rank``
    and ``aucell`` rank only them (the others are control probes); default all columns. ``encoding``: the base and
    zeros' level of log values with a pseudocount below one, which ``mean_ctrl`` reads as ``log_b(x + 1)``
    (:func:`~tmetoolkit._matrix.pseudocount_one`; the rank methods do not depend on it).
    Returns the cells x signatures scores and the parameters actually used.
    """
    n_obs, n_vars = X.shape
    out = np.empty((n_obs, len(plan)))
    used: dict = {}
    chunks = iter_rows(X, chunk_size)
    n_chunks = -(-n_obs // chunk_size)
    if method == "mean_ctrl":
        prepare = (lambda block: pseudocount_one(block, *encoding)) if encoding is not None else None
        means = _gene_means(X, state, target_sum, chunk_size, prepare)
        if background is not None:
            means = np.where(background, means, np.nan)  # left out of every expression bin
        W, owner = _mean_ctrl_weights(plan, n_vars, means, n_bins=n_bins, ctrl_size=ctrl_size, seed=seed)
        for start, stop, block in progress_bar(chunks, total=n_chunks, disable=not progress, desc="scoring"):
            block = normalise_block(block, state, target_sum)
            parts = _kernels.matmul(prepare(block) if prepare else block, W)
            out[start:stop] = _combine_parts(parts, owner, len(plan))
        used.update(n_bins=n_bins, ctrl_size=ctrl_size)
    elif method == "ssgsea":
        for start, stop, block in progress_bar(chunks, total=n_chunks, disable=not progress, desc="ssGSEA"):
            out[start:stop] = _ssgsea_block(nonnegative_rows(normalise_block(block, state, target_sum)), plan,
                                            seed=seed)
        used.update(sample_norm_method="rank", statistic="ES")
    else:
        aucell = method == "aucell"
        genes = np.flatnonzero(background) if background is not None else None  # ranked among genes only
        n_ranked = n_vars if genes is None else genes.size
        if max_rank is None:
            max_rank = int(np.ceil(0.05 * n_ranked)) if aucell else 1500
        max_rank = int(min(max_rank, n_ranked))
        m_up, m_down = _membership(plan, n_vars, 0), _membership(plan, n_vars, 2)
        if genes is not None:
            m_up, m_down = m_up[genes], m_down[genes]
        n_up = np.asarray(m_up.sum(axis=0)).ravel()
        n_down = np.asarray(m_down.sum(axis=0)).ravel()
        has_down = n_down > 0
        finish = _kernels.auc if aucell else _kernels.ucell
        for start, stop, block in progress_bar(chunks, total=n_chunks, disable=not progress, desc="ranking"):
            if genes is not None:
                block = block[:, genes]
            block = nonnegative_rows(block)
            up = finish(_kernels.rank_sums(block, m_up, max_rank, aucell=aucell), n_up, max_rank)
            if has_down.any():
                down = finish(_kernels.rank_sums(block, m_down, max_rank, aucell=aucell), n_down, max_rank)
                up = np.where(has_down, np.maximum(0.0, up - np.nan_to_num(down)), up)
            out[start:stop] = up
        used.update(max_rank=max_rank)
    return out, used


def score_settings(method: str, *, seed: int, n_bins: int, ctrl_size: int, max_rank: int | None,
                   var_names) -> str:
    """The parameters besides method and layer that a score depends on, as recorded per signature, with the gene
    panel ``var_names`` (every method reads genes beyond a signature's own: control genes, within-cell ranks), so
    that a score made on other genes is not reused."""
    if method == "mean_ctrl":
        out = f"seed={seed}, n_bins={n_bins}, ctrl_size={ctrl_size}"
    elif method == "ssgsea":
        out = f"seed={seed}"
    else:
        out = f"max_rank={max_rank}"
    return f"{out}, panel={panel_id(var_names)}"


def panel_id(var_names) -> str:
    """A short fingerprint of a gene panel: its size and a checksum of its names in order."""
    names = [str(g) for g in var_names]
    return f"{len(names)}:{zlib.crc32(chr(10).join(names).encode()):08x}"


def not_yet_scored(sigs, genes_used, table: pd.DataFrame, scored, *, method: str, layer: str, settings: str) -> list:
    """The signatures of ``sigs`` that the stored per-signature ``table`` (``uns["tmt_scores"]["signatures"]``)
    does not hold as this call would score them: on the same ``genes_used``, with the same method, layer and
    ``settings``, and among the ``scored`` columns (a signature recorded as not scorable is not tried again)."""
    done = table.drop_duplicates("signature", keep="last").set_index("signature")
    todo = []
    for s, genes in zip(sigs, genes_used, strict=True):
        row = done.loc[s.name] if s.name in done.index else None
        same = (row is not None and row["genes_used"] == genes and row["method"] == method
                and row["layer"] == layer and row["settings"] == settings)
        if not (same and (s.name in scored or not row["scored"])):
            todo.append(s)
    return todo

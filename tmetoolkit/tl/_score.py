"""``tmt.tl.score``: every selected signature scored per cell in one vectorised pass over the matrix."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._core.scoring import kernels as _kernels
from .._matrix import DEFAULT_CHUNK, check_chunks, column_sums, get_matrix, iter_rows, normalise_block
from .._utils import TmtCoverageWarning, TmtEmptyCellsWarning, TmtInputError, check_tmt_key, logger, progress_bar, warn
from ..pp._check import InputReport, control_probes, coverage, detect_gene_id, hint_raw, input_error, inspect
from ..sig import as_signatures

Method = Literal["mean_ctrl", "rank", "aucell", "ssgsea"]
METHODS = ("mean_ctrl", "rank", "aucell", "ssgsea")


def _refuse_bad_input(report: InputReport) -> None:
    """Scaled data, NaN/inf and Ensembl IDs are refused by every method (ranks of z-scores are not expression ranks)."""
    if report.problems:
        raise input_error(report, "cannot score this input: " + " ".join(report.problems))


def _positions(sig, found: dict[str, list[int]], genes) -> tuple[np.ndarray, np.ndarray]:
    """Matrix columns and weights for the given genes; a gene mapped to several columns shares its weight."""
    cols, w = [], []
    for g in genes:
        if g in found:
            pos = found[g]
            cols += pos
            w += [sig.weight(g) / len(pos)] * len(pos)
    return np.asarray(cols, dtype=np.int64), np.asarray(w, dtype=np.float64)


def _gene_means(X, state: str, target_sum, chunk_size: int) -> np.ndarray:
    if state not in ("counts", "linear"):
        if isinstance(X, np.ndarray):
            return X.mean(axis=0, dtype=np.float64)
        sums = column_sums(X)
        if sums is not None:
            return sums / X.shape[0]
    total = np.zeros(X.shape[1])
    for _, _, block in iter_rows(X, chunk_size):
        total += np.asarray(normalise_block(block, state, target_sum).sum(axis=0)).ravel()
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
) -> tuple[np.ndarray, dict]:
    """Score a cells x genes matrix for every signature of ``plan`` (up columns, weights, down columns, weights).

    ``background`` (boolean, per column) marks the genes: ``mean_ctrl`` draws controls only from them and ``rank``
    and ``aucell`` rank only them (the others are control probes); default all columns.
    Returns the cells x signatures scores and the parameters actually used.
    """
    n_obs, n_vars = X.shape
    out = np.empty((n_obs, len(plan)))
    used: dict = {}
    chunks = iter_rows(X, chunk_size)
    n_chunks = -(-n_obs // chunk_size)
    if method == "mean_ctrl":
        means = _gene_means(X, state, target_sum, chunk_size)
        if background is not None:
            means = np.where(background, means, np.nan)  # left out of every expression bin
        W, owner = _mean_ctrl_weights(plan, n_vars, means, n_bins=n_bins, ctrl_size=ctrl_size, seed=seed)
        for start, stop, block in progress_bar(chunks, total=n_chunks, disable=not progress, desc="scoring"):
            parts = _kernels.matmul(normalise_block(block, state, target_sum), W)
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


def _hint_raw(adata: AnnData, layer: str | None, sigs, cov: pd.DataFrame, species: str) -> None:
    """Warn when ``X`` holds a gene subset (highly variable genes) of ``adata.raw`` and raw would cover more genes."""
    if layer is None:
        hint_raw(adata, sigs, cov, species)


def score(
    adata: AnnData,
    signatures="all",
    *,
    method: Method = "mean_ctrl",
    layer: str | None = None,
    key_added: str = _keys.SCORES,
    species: str | None = None,
    n_bins: int = 25,
    ctrl_size: int = 50,
    max_rank: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    seed: int = 0,
    use_raw: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Score gene signatures per cell (or per sample) in one vectorised pass over the expression matrix.

    Raw counts are normalised internally (library size to the median, then ``log1p``) and linear values such as
    TPM are ``log1p``-transformed, chunk by chunk; ``X``, ``raw`` and layers are never changed. Log values with
    negatives (voom log-CPM, log2 intensities, log2(TPM + 0.001)) are scored as they are, with no flag: the rank
    methods and ssGSEA rank within each observation and ``mean_ctrl`` subtracts control genes, so shifting all
    values by a constant changes no score. Values centred per gene (z-scores) are refused; see
    :func:`tmetoolkit.pp.check_input`. Mouse symbols are
    matched through the packaged ortholog table, and outdated symbols through the alias table.

    Parameters
    ----------
    adata
        Cells (or samples) x genes.
    signatures
        A collection name (``"tam"``, ``"caf"``, ... or ``"all"``), signature names, :class:`~tmetoolkit.sig.Signature`
        objects, a ``{name: genes}`` dict (a gene ending in ``-`` is a down gene), or a GMT path.
    method
        ``"mean_ctrl"``: mean of the signature genes minus the mean of expression-matched control genes
        (Tirosh 2016, as :func:`scanpy.tl.score_genes`), honouring weights; down genes (scored the same way)
        are subtracted only where they are expressed above their controls, so lacking them never raises a score.
        ``"rank"``: UCell-like Mann-Whitney statistic on within-cell ranks, capped at ``max_rank`` (default 1500);
        independent of normalisation. ``"aucell"``: area under the recovery curve of the top ``max_rank`` genes
        (default 5% of genes), as AUCell. ``"ssgsea"``: single-sample GSEA enrichment score through gseapy
        (Barbie 2009), the usual choice for bulk cohorts; slow on many cells. For the rank methods and ssGSEA a
        signature with down genes scores ``max(0, up - down)``.
    layer
        Use this layer instead of ``adata.X``.
    key_added
        Key in ``obsm`` and ``uns``.
    species
        ``"human"`` or ``"mouse"``; by default detected from ``var_names``.
    n_bins, ctrl_size
        Expression bins and control genes drawn per bin for ``mean_ctrl``.
    max_rank
        Rank cap for ``rank`` and ``aucell``.
    chunk_size
        Cells per chunk; memory grows with the chunk, not with the data.
    seed
        Seed for drawing control genes.
    use_raw
        Read ``adata.raw`` (all genes, when ``X`` holds highly variable genes only) instead of ``X``; the scores
        are written into ``adata`` as usual.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets:

    ``adata.obsm[key_added]``
        :class:`pandas.DataFrame`, cells x signatures. Columns of signatures scored earlier and not now are kept.
    ``adata.uns[key_added]``
        ``params`` (method, layer, input state, ``target_sum``: the median library size raw counts were normalised
        to, seed, ...) and ``signatures``: one row per requested signature with
        version, genes used and missing, whether it was scored, and the ``method``, ``layer`` and ``settings`` it
        was scored with. The tools that need a signature (``annotate``, ``immunosuppression``, ...) reuse its column
        when it was scored on the same genes with the same method, layer and settings, so a run scores each
        signature once; score again after changing the matrix.

    Examples
    --------
    >>> import tmetoolkit as tmt
    >>> adata = tmt.datasets.simulate(n_samples=2, n_cells=300, seed=0)
    >>> tmt.tl.score(adata, ["TAM_M1_like", "TAM_M2_like"])
    >>> adata.obsm["tmt_scores"].shape
    (600, 2)
    """
    if method not in METHODS:
        msg = f"method must be one of {METHODS}, got {method!r}."
        raise ValueError(msg)
    if species not in (None, "human", "mouse"):
        msg = f"species must be 'human', 'mouse' or None (detect), got {species!r}."
        raise ValueError(msg)
    adata = adata.copy() if copy else adata
    if use_raw:
        _score_raw(adata, signatures, layer=layer, key_added=key_added, method=method, species=species,
                   n_bins=n_bins, ctrl_size=ctrl_size, max_rank=max_rank, chunk_size=chunk_size, seed=seed)
        return adata if copy else None
    check_chunks(get_matrix(adata, layer), chunk_size)
    report = inspect(adata, layer, chunk_size=chunk_size, species=species)
    _refuse_bad_input(report)
    sigs = as_signatures(signatures)
    cov, found = coverage(adata.var_names, sigs, report.species, return_matches=True)
    dropped = cov.loc[~cov["scorable"]]
    if len(dropped):
        detail = ", ".join(f"{r.signature} ({r.n_found}/{r.n_genes}, needs {r.min_genes})"
                           for r in dropped.itertuples())
        warn(f"{len(dropped)} signatures have too few genes in the data and are not scored: {detail}.",
             category=TmtCoverageWarning)
    _hint_raw(adata, layer, sigs, cov, report.species)
    keep = [s for s, ok in zip(sigs, cov["scorable"], strict=True) if ok]
    if not keep:
        msg = (
            f"none of the {len(sigs)} signatures has its minimum genes in var_names "
            f"(detected {report.gene_id}s, {report.species}). Check that var_names hold gene symbols of the right "
            "species."
        )
        raise TmtInputError(msg)

    plan = [(*_positions(s, found[s.name], s.genes_up), *_positions(s, found[s.name], s.genes_down)) for s in keep]

    X = get_matrix(adata, layer)
    logger.info("scoring %d signatures on %d cells with %s", len(keep), adata.n_obs, method)
    probes = control_probes(adata.var_names)
    scores, used = score_matrix(
        X, plan, state=report.state, method=method, target_sum=report.target_sum, n_bins=n_bins,
        ctrl_size=ctrl_size, max_rank=max_rank, chunk_size=chunk_size, seed=seed,
        progress=adata.n_obs > 5 * chunk_size, background=~probes if probes.any() else None,
    )
    if probes.any() and method != "ssgsea":
        used["control_probes_left_out"] = int(probes.sum())
    if report.n_empty_cells:
        scores[report.empty_mask] = np.nan
        warn(f"{report.n_empty_cells} cells have no expression; their scores are NaN.", category=TmtEmptyCellsWarning)

    new = pd.DataFrame(scores, index=adata.obs_names, columns=[s.name for s in keep])
    old = adata.obsm.get(key_added)
    if isinstance(old, pd.DataFrame) and old.index.equals(new.index):
        new = pd.concat([old.drop(columns=[c for c in new.columns if c in old.columns]), new], axis=1)
    elif key_added in adata.obsm:
        check_tmt_key(adata.obsm, key_added, "adata.obsm")
    adata.obsm[key_added] = new

    cov = cov.assign(scored=cov["scorable"], method=method, layer=layer or "X",
                     settings=_settings(method, seed=seed, n_bins=n_bins, ctrl_size=ctrl_size, max_rank=max_rank))
    prev = adata.uns.get(key_added, {}).get("signatures") if isinstance(adata.uns.get(key_added), dict) else None
    if isinstance(prev, pd.DataFrame):
        cov = pd.concat([prev[~prev["signature"].isin(cov["signature"])], cov], ignore_index=True)
    adata.uns[key_added] = {
        "params": {
            "method": method,
            "layer": layer or "X",
            "input_state": report.state,
            "target_sum": float("nan") if report.target_sum is None else report.target_sum,
            "species": report.species,
            "seed": seed,
            "n_empty_cells": report.n_empty_cells,
            **used,
        },
        "signatures": cov.reset_index(drop=True),
    }
    logger.info("added adata.obsm[%r] (%d signatures) and adata.uns[%r]", key_added, len(keep), key_added)
    return adata if copy else None


def _settings(method: str, *, seed: int, n_bins: int, ctrl_size: int, max_rank: int | None) -> str:
    """The parameters besides method and layer that a score depends on, as recorded per signature."""
    if method == "mean_ctrl":
        return f"seed={seed}, n_bins={n_bins}, ctrl_size={ctrl_size}"
    if method == "ssgsea":
        return f"seed={seed}"
    return f"max_rank={max_rank}"


def score_once(adata: AnnData, signatures, *, method: Method = "mean_ctrl", layer: str | None = None,
               species: str | None = None, seed: int = 0, n_bins: int = 25, ctrl_size: int = 50,
               max_rank: int | None = None) -> None:
    """:func:`score` for the ``signatures`` that ``obsm["tmt_scores"]`` does not hold yet as this call would score
    them: on the same genes, with the same method, layer and settings (and the unscorable ones not tried again).
    The tools call it, so a signature the run scored once is shared by every tool that needs it."""
    sigs = as_signatures(signatures)
    species = species or detect_gene_id(adata.var_names)[1]
    stored = adata.uns.get(_keys.SCORES)
    table = stored.get("signatures") if isinstance(stored, dict) else None
    S = adata.obsm.get(_keys.SCORES)
    todo = sigs
    if isinstance(table, pd.DataFrame) and isinstance(S, pd.DataFrame) and {"layer", "settings"} <= set(table):
        cov = coverage(adata.var_names, sigs, species)
        settings = _settings(method, seed=seed, n_bins=n_bins, ctrl_size=ctrl_size, max_rank=max_rank)
        done = table.drop_duplicates("signature", keep="last").set_index("signature")
        todo = []
        for s, genes in zip(sigs, cov["genes_used"], strict=True):
            row = done.loc[s.name] if s.name in done.index else None
            same = (row is not None and row["genes_used"] == genes and row["method"] == method
                    and row["layer"] == (layer or "X") and row["settings"] == settings)
            if not (same and (s.name in S.columns or not row["scored"])):
                todo.append(s)
    if todo:
        score(adata, todo, method=method, layer=layer, species=species, seed=seed, n_bins=n_bins,
              ctrl_size=ctrl_size, max_rank=max_rank)


def _score_raw(adata: AnnData, signatures, *, layer: str | None, key_added: str, **kwargs) -> None:
    """:func:`score` on ``adata.raw``, the results written into ``adata``."""
    from .._matrix import raw_adata

    if layer is not None:
        msg = "use_raw=True reads adata.raw; leave out layer= (or use_raw=False to read the layer)."
        raise TmtInputError(msg)
    raw = raw_adata(adata)
    for store in ("obsm", "uns"):  # earlier scores under key_added are kept, as without use_raw
        if key_added in getattr(adata, store):
            getattr(raw, store)[key_added] = getattr(adata, store)[key_added]
    score(raw, signatures, key_added=key_added, **kwargs)
    if key_added in adata.obsm:
        check_tmt_key(adata.obsm, key_added, "adata.obsm")
    adata.obsm[key_added] = raw.obsm[key_added]
    adata.uns[key_added] = raw.uns[key_added]
    table = adata.uns[key_added]["signatures"]
    now = table["signature"].isin([s.name for s in as_signatures(signatures)])
    table.loc[now, "layer"] = "raw"  # never taken for a score of X
    adata.uns[key_added]["params"]["layer"] = "raw"

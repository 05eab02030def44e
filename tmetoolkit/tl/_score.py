"""``tmt.tl.score``: every selected signature scored per cell in one vectorised pass over the matrix.

The runner: checks the input, matches signatures to genes and writes the keys; the methods are in
:mod:`tmetoolkit._core.scoring.methods`.
"""

from __future__ import annotations

import contextvars

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.scoring.methods import METHODS, Method, not_yet_scored, positions, score_matrix, score_settings
from .._matrix import DEFAULT_CHUNK, check_chunks, get_matrix, log_encoding, row_block, same_values, values_check
from .._utils import (
    TmtCoverageWarning,
    TmtEmptyCellsWarning,
    TmtInputError,
    TmtSpeciesWarning,
    check_tmt_key,
    logger,
    target,
    warn,
)
from ..pp._check import (
    InputReport,
    coverage,
    detect_gene_id,
    hint_raw,
    input_error,
    inspect,
    no_signature_scorable,
    refuse_non_finite,
    warn_duplicated,
)
from ..sig import as_signatures
from ..sig._genes import control_probes


def _refuse_bad_input(report: InputReport) -> None:
    """Scaled data, NaN/inf and Ensembl IDs are refused by every method (ranks of z-scores are not expression ranks)."""
    if report.problems:
        raise input_error(report, "cannot score this input: " + " ".join(report.problems))


def _warn_species(report: InputReport) -> None:
    """Say so when upper-case symbols were read as mouse from the names that exist in mouse only."""
    if report.species_basis == "species-only names":
        warn(f"species: {report.species_reason}. Signatures are matched through their mouse orthologs; pass "
             "species='human' if these are human genes.", category=TmtSpeciesWarning)


def _hint_raw(adata: AnnData, layer: str | None, sigs, cov: pd.DataFrame, species: str) -> None:
    """Warn when ``X`` holds a gene subset (highly variable genes) of ``adata.raw`` and raw would cover more genes."""
    if layer is None:
        hint_raw(adata, sigs, cov, species)


# False while score() writes into an AnnData the package made for its own use (score_internal)
_INTO_USER_DATA: contextvars.ContextVar[bool] = contextvars.ContextVar("into_user_data", default=True)


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
    values by a constant changes no score. ``mean_ctrl`` scores of log2 or log10 values of a whole transcriptome
    (one total per cell once taken back) are given in natural-log units, as those of ``log1p`` values, so that
    every threshold in score units reads them alike. Values centred per gene (z-scores) are refused; see
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
        ``"human"`` or ``"mouse"``; by default detected from ``var_names`` (Ensembl prefixes, the symbols' letter
        case, or for upper-case symbols the names that exist in one species only, as ``H2-K1`` or ``HLA-A``, with a
        :class:`~tmetoolkit._utils.TmtSpeciesWarning` when these make it mouse).
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
        :class:`pandas.DataFrame`, cells x signatures. Columns of signatures scored earlier and not requested now
        are kept; a requested signature that cannot be scored on these genes loses its earlier column.
    ``adata.uns[key_added]``
        ``params`` (method, layer, input state, ``target_sum``: the median library size raw counts were normalised
        to, ``log_base`` of log values recognised for ``mean_ctrl`` and ``log_pseudocount``, the ``eps`` of
        ``log_b(x + eps)``: values with one below 1 are scored as ``log_b(x + 1)``, so log2(TPM + 0.001) scores as
        log2(TPM + 1) does; ``values_check``: the checksums of 64 cells' values; seed, ...) and ``signatures``: one
        row per requested signature with version, genes used and missing, whether it was scored, and the
        ``method``, ``layer`` and ``settings`` it was scored with (``settings`` names the gene panel too). The tools
        that need a signature (``annotate``, ``immunosuppression``, ...) reuse its column when it was scored on the
        same genes and panel with the same method, layer and settings, so a run scores each signature once (a gene
        subset of a scored object is scored again; a subset of its cells keeps the scores). Values changed since
        (``X * 2``, normalised again), as the recorded cells show, drop the stored scores: they are scored again.

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
        raise TmtInputError(msg)
    if species not in (None, "human", "mouse"):
        msg = f"species must be 'human', 'mouse' or None (detect), got {species!r}."
        raise TmtInputError(msg)
    adata = target(adata, copy)
    if use_raw:
        _score_raw(adata, signatures, layer=layer, key_added=key_added, method=method, species=species,
                   n_bins=n_bins, ctrl_size=ctrl_size, max_rank=max_rank, chunk_size=chunk_size, seed=seed)
        return adata if copy else None
    check_chunks(get_matrix(adata, layer), chunk_size)
    report = inspect(adata, layer, chunk_size=chunk_size, species=species)
    _refuse_bad_input(report)
    warn_duplicated(report)
    _warn_species(report)
    sigs = as_signatures(signatures)
    if not sigs:
        msg = ("signatures is empty: pass a collection name ('all', 'tam', ...), signature names, Signature objects, "
               "a {name: genes} dict or a GMT path.")
        raise TmtInputError(msg)
    cov, found = coverage(adata.var_names, sigs, report.species, return_matches=True)
    dropped = cov.loc[~cov["scorable"]]
    if len(dropped):
        detail = ", ".join(f"{r.signature} ({r.n_found}/{r.n_genes}, needs {r.min_genes}"
                           + (")" if r.n_found < r.min_genes else " with an up gene)") for r in dropped.itertuples())
        warn(f"{len(dropped)} signatures have too few genes in the data and are not scored: {detail}.",
             category=TmtCoverageWarning)
    _hint_raw(adata, layer, sigs, cov, report.species)
    keep = [s for s, ok in zip(sigs, cov["scorable"], strict=True) if ok]
    if not keep:
        raise TmtInputError(no_signature_scorable(adata.var_names, len(sigs), report, adata.obs_names, cov=cov,
                                                  raw_n_vars=None if adata.raw is None else adata.raw.n_vars))

    plan = [(*positions(s, found[s.name], s.genes_up), *positions(s, found[s.name], s.genes_down)) for s in keep]

    X = get_matrix(adata, layer)
    logger.info("scoring %d signatures on %d observations with %s", len(keep), adata.n_obs, method)
    probes = control_probes(adata.var_names)
    base, floor = None, 0.0
    if method == "mean_ctrl" and report.state == "lognorm":
        # densified only where the lowest value is not zero: 1,000 cells of a whole transcriptome are 0.3 GB
        base, floor = log_encoding(row_block(X, 0, min(adata.n_obs, 1000))[:, np.flatnonzero(~probes)])
    scores, used = score_matrix(
        X, plan, state=report.state, method=method, target_sum=report.target_sum, n_bins=n_bins,
        ctrl_size=ctrl_size, max_rank=max_rank, chunk_size=chunk_size, seed=seed,
        progress=adata.n_obs > 5 * chunk_size, background=~probes if probes.any() else None,
        encoding=(base, floor) if base is not None and floor else None,
    )
    if probes.any() and method != "ssgsea":
        used["control_probes_left_out"] = int(probes.sum())
    if method == "mean_ctrl" and report.state == "lognorm":
        if base is not None:  # differences of log2 or log10 values, in the natural-log units of log1p
            scores *= np.log(base)
        used["log_base"] = {None: "", np.e: "e", 2.0: "2", 10.0: "10"}[base]
        if base is not None:
            used["log_pseudocount"] = float(base**floor)
    if report.n_empty_cells:
        scores[report.empty_mask] = np.nan
        warn(f"{report.n_empty_cells} cells have no expression; their scores are NaN.", category=TmtEmptyCellsWarning)

    new = pd.DataFrame(scores, index=adata.obs_names, columns=[s.name for s in keep])
    check = values_check(X, adata.obs_names)
    _drop_stale(adata, key_added, layer or "X", X, keep=[s.name for s in sigs])
    old = adata.obsm.get(key_added)
    if isinstance(old, pd.DataFrame) and old.index.equals(new.index):
        # a requested signature no longer scorable here (a gene subset of a scored object) loses its old column
        asked = {sig.name for sig in sigs}
        new = pd.concat([old.drop(columns=[c for c in old.columns if c in asked]), new], axis=1)
    elif key_added in adata.obsm:
        check_tmt_key(adata.obsm, key_added, "adata.obsm")
    adata.obsm[key_added] = new

    cov = cov.assign(scored=cov["scorable"], method=method, layer=layer or "X",
                     settings=score_settings(method, seed=seed, n_bins=n_bins, ctrl_size=ctrl_size, max_rank=max_rank,
                                             var_names=adata.var_names))
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
            "species_reason": report.species_reason,
            "seed": seed,
            "n_empty_cells": report.n_empty_cells,
            **used,
            "values_check": check,
        },
        "signatures": cov.reset_index(drop=True),
    }
    if _INTO_USER_DATA.get():
        logger.info("added adata.obsm[%r] (%d signatures) and adata.uns[%r]", key_added, len(keep), key_added)
    return adata if copy else None


def score_internal(adata: AnnData, signatures, **kwargs) -> None:
    """:func:`score` (with ``kwargs``) into an AnnData the package made for its own use (a pseudobulk), without
    the message naming the keys added: they are not added to the user's data."""
    token = _INTO_USER_DATA.set(False)
    try:
        score(adata, signatures, **kwargs)
    finally:
        _INTO_USER_DATA.reset(token)


def _stored_values_differ(adata: AnnData, key: str, layer: str, X) -> bool:
    """Whether the scores under ``key`` were made, on this layer, from values other than ``X``'s now (changed in
    place since: ``X * 2``, normalised again); a subset of the scored cells holds the same values."""
    stored = adata.uns.get(key)
    params = stored.get("params", {}) if isinstance(stored, dict) else {}
    if str(params.get("layer", "")) != layer or "values_check" not in params:
        return False
    return not same_values(X, adata.obs_names, params["values_check"])


def _drop_stale(adata: AnnData, key: str, layer: str, X, *, keep) -> None:
    """Remove the stored scores made from values the matrix no longer holds (all but ``keep``, scored now)."""
    if not _stored_values_differ(adata, key, layer, X):
        return
    table = adata.uns[key].get("signatures")
    if isinstance(table, pd.DataFrame):
        stale = table.loc[~table["signature"].isin(keep), "signature"].tolist()
        adata.uns[key]["signatures"] = table[table["signature"].isin(keep)].reset_index(drop=True)
        if isinstance(adata.obsm.get(key), pd.DataFrame):
            adata.obsm[key] = adata.obsm[key].drop(columns=[c for c in stale if c in adata.obsm[key].columns])
        if stale:
            logger.info("values changed since %d signatures were scored: their scores are dropped", len(stale))


def score_once(adata: AnnData, signatures, *, method: Method = "mean_ctrl", layer: str | None = None,
               species: str | None = None, seed: int = 0, n_bins: int = 25, ctrl_size: int = 50,
               max_rank: int | None = None) -> None:
    """:func:`score` for the ``signatures`` that ``obsm["tmt_scores"]`` does not hold yet as this call would score
    them: on the same genes, with the same method, layer and settings (and the unscorable ones not tried again).
    The tools call it, so a signature the run scored once is shared by every tool that needs it. NaN or infinite
    values in the matrix are refused (:class:`~tmetoolkit._utils.TmtInputError`) whether or not it scores."""
    sigs = as_signatures(signatures)
    species = species or detect_gene_id(adata.var_names)[1]
    stored = adata.uns.get(_keys.SCORES)
    table = stored.get("signatures") if isinstance(stored, dict) else None
    S = adata.obsm.get(_keys.SCORES)
    todo = sigs
    if _stored_values_differ(adata, _keys.SCORES, layer or "X", get_matrix(adata, layer)):
        table = None  # made from values the matrix no longer holds: every signature is scored again
    if isinstance(table, pd.DataFrame) and isinstance(S, pd.DataFrame) and {"layer", "settings"} <= set(table):
        cov = coverage(adata.var_names, sigs, species)
        settings = score_settings(method, seed=seed, n_bins=n_bins, ctrl_size=ctrl_size, max_rank=max_rank,
                                  var_names=adata.var_names)
        todo = not_yet_scored(sigs, cov["genes_used"], table, S.columns, method=method, layer=layer or "X",
                              settings=settings)
        _warn_rescored(table, [s.name for s in todo], layer or "X")
        # scored before on other genes (a subset of the genes of an annotated object) and not scorable on these:
        # the stale scores go, and the table records them as not scored
        lost = cov.set_index("signature").loc[[s.name for s in todo]].query("not scorable")
        if len(lost):
            adata.obsm[_keys.SCORES] = S.drop(columns=[c for c in lost.index if c in S.columns])
            rows = lost.reset_index().assign(scored=False, method=method, layer=layer or "X", settings=settings)
            stored["signatures"] = pd.concat([table[~table["signature"].isin(lost.index)], rows], ignore_index=True)
            todo = [s for s in todo if s.name not in lost.index]
    if todo:  # score() refuses NaN/inf itself, in its scan of the matrix
        score(adata, todo, method=method, layer=layer, species=species, seed=seed, n_bins=n_bins,
              ctrl_size=ctrl_size, max_rank=max_rank)
    else:  # the tool goes on reading stored scores, and often the matrix, whose values may have gone bad since
        refuse_non_finite(adata, layer, "read the expression values")


def _warn_rescored(table: pd.DataFrame, names: list[str], layer: str) -> None:
    """Warn when scores made on another layer (``use_raw=True`` reads ``"raw"``) are about to be replaced."""
    other = table[table["signature"].isin(names) & (table["layer"].astype(str) != layer)
                  & table.get("scored", pd.Series(True, index=table.index)).astype(bool)]
    if len(other):
        made = ", ".join(map(repr, sorted(other["layer"].astype(str).unique())))
        warn(f"{len(other)} signatures scored before on {made} are scored again on {layer!r}, which this tool reads "
             "(replacing them in obsm['tmt_scores']). To keep reading adata.raw, run the tools on "
             "r = adata.raw.to_adata() (tmetoolkit run --use-raw) and copy the tmt_ keys back.", stacklevel=5)


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
    if isinstance(raw.uns.get(key_added), dict):  # the values they were made from are X's, not raw's
        raw.uns[key_added] = {**raw.uns[key_added], "params": {
            k: v for k, v in raw.uns[key_added].get("params", {}).items() if k != "values_check"}}
    score(raw, signatures, key_added=key_added, **kwargs)
    if key_added in adata.obsm:
        check_tmt_key(adata.obsm, key_added, "adata.obsm")
    adata.obsm[key_added] = raw.obsm[key_added]
    adata.uns[key_added] = raw.uns[key_added]
    table = adata.uns[key_added]["signatures"]
    now = table["signature"].isin([s.name for s in as_signatures(signatures)])
    table.loc[now, "layer"] = "raw"  # never taken for a score of X
    adata.uns[key_added]["params"]["layer"] = "raw"

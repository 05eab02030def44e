"""Immune phenotype from expression alone (dissociated single-cell or bulk): exclusion is inferred, never seen.

Bulk samples and the pseudobulk of single-cell samples (counts summed, log values averaged) take one path: the same
programmes scored the same way, so the same tumours get comparable calls from either.

Per sample, the T-cell programmes (Mariathasan 2018 CD8 T-effector, Ayers 2017 IFN-gamma 6-gene and the Cristescu
2018 T-cell-inflamed GEP) are scored by single-sample GSEA (gseapy, the usual choice for bulk cohorts) and so is a
stromal programme (pan-fibroblast TGF-beta response, Mariathasan 2018, and the MFP CAF programme, Bagaev 2021).

Cohort-relative (``reference="cohort"``, the default from ``MIN_COHORT`` samples): the CD8 T-effector programme
is cut into cohort terciles, top inflamed, middle excluded, bottom desert: the obvious rule a user would write, and
the published reading of it (in IMvigor210 desert tumours had low T-effector expression, excluded ones intermediate,
inflamed ones high; Mariathasan 2018). It is the one of the three programmes made of T-cell and IFN-gamma-induced
genes only. Nothing overturns that call; what else the expression says is reported beside it and enters the
confidence:

- ``immune_axis`` (the lead as a robust z across samples: median, MAD) and ``t_cell_programmes`` (mean robust z of
  the three); ``programmes_agreeing``: how many of the three programmes, each cut into its own terciles, give the
  same call; ``immune_axis_uncertainty`` combines the disagreement of the three (their standard error) with the
  standard error of a tercile of the cohort (``sqrt(p(1 - p) / n) / density`` at p = 1/3, normal density).
- ``stromal_axis`` (TGF-beta response of fibroblasts and the CAF programme). It does not decide excluded against
  desert. On 30 simulated cohorts of 12 to 48 samples (``benchmarks/bench_sample_level.py``), with or without a
  fibrotic rim planted around the excluded tumours, letting it decide among all non-inflamed samples lowered
  macro-F1 against the planted phenotypes in 30 of 30 cohorts (mean -0.34). Letting it decide only within a
  tercile's standard error of the lower boundary lowered macro-F1 in 19 of 30 (18 of 30 with the TGF-beta response
  alone). The earlier rule (immune axis at the median, stroma deciding) lost to the tercile rule on IMvigor210 too
  (macro-F1 0.50 against 0.64). Letting the mean of the three T-cell programmes decide within a tercile's standard
  error of a boundary raised macro-F1 on average (+0.016) but lowered it in 6 of 30 cohorts (worst -0.17), so it
  does not decide either. The call is never worse than the tercile rule because it is that rule; the rest is
  evidence.

Absolute (``reference="absolute"``, the default below ``MIN_COHORT`` samples): with annotated cells, CD8 T cells
among immune cells decide (>= ``min_cd8_fraction`` inflamed, < a quarter of it desert, excluded in between); without
them (bulk, or cells without a cell-type column), each sample is judged alone, so its call does not change when a
sample is added. Its genes are ranked within the sample and two programmes are set against random gene sets of the
same size drawn from the marker genes of the sample's other cell types (``_marker_null``: the null's mean and SD are
exact for sampling without replacement):

- ``t_cell_enrichment``: the T-cell identity genes (CD3D/E/G, CD2, CD8A/B, the lineage marker table's T-cell core).
  Below 0, i.e. below the mean of random marker sets of the sample (T cells rarer than a typical other cell type of
  the sample): desert.
- ``ifng_enrichment``: the Ayers 2017 IFN-gamma programme. With T cells not below that mean, from ``ENRICHED``
  (above 95% of the random marker sets, one-sided) inflamed (T cells with the IFN-gamma response of T cells in contact
  with the tumour, Ayers 2017; Chen & Mellman 2017), else excluded (T cells without that response). On targeted
  panels with fewer than 3 of its 6 genes the T-cell-inflamed GEP (Cristescu 2018) stands in (``params["marker_null"]
  ["ifng_programme"]`` says so).

On ``simulate()`` cohorts of 3 to 8 samples (300 cells each, 10 seeds per size, with and without a stromal barrier;
``benchmarks/bench_sample_level.py``, ``small_cohorts``) this rule reached mean macro-F1 0.987 against the planted
phenotypes where terciles of the same few samples reached 0.884 (phenotypes cycled, so terciles get the proportions
right by construction; below terciles in 4 of 120 cohorts, above in 53), and 0.881 against 0.669 with phenotypes
drawn at random per sample (samples right 0.961 against 0.715; below in 3 of 120, above in 95). Its misses are
boundary cases (inflamed with a weak IFN-gamma response called excluded, excluded with few T cells called desert);
planted inflamed and desert were never swapped. The earlier rule (the CD8 T-effector programme's rank score against
random genes of the whole matrix) reached 0.18-0.20 there: in the simulated panel T-cell genes sit below the median
gene even in inflamed tumours, in a whole transcriptome near the top, so random genes of the matrix are no platform-free
scale. On cohorts of 12 to 48 the rule beat the terciles in 22 of 30 but was below them in 3 (worst -0.085), so from
``MIN_COHORT`` samples the terciles stay. On Racle 2017 (four melanoma lymph-node metastases, bulk) it calls all four
inflamed; LAU125, 0.4% CD8 T cells by FACS and 18% B cells, has by far the lowest T-cell genes but its IFN-gamma
programme (STAT1, HLA-DRA) reaches 1.77, so it is called inflamed at confidence 0.10. ``immune_enrichment`` (the CD8
T-effector programme against the same null) and ``stromal_enrichment`` are reported beside the call.

Confidence is ``2 * Phi(m) - 1`` for ``m`` the distance to the nearest boundary that would change the call, in units
of its uncertainty (cohort) or of the random-set SD (absolute); excluded is an inference from expression and its
confidence is capped at 0.5.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._core.sample.cohort import MIN_COHORT_SIZE, robust_sd, robust_z
from .._utils import TmtInputError, TmtSmallCohortWarning, logger, missing_key_error
from ..pp._check import inspect
from ._sample_features import bulk_samples, samples_of

IMMUNE_PROGRAMMES = ("CD8_T_effector", "IFNG_6", "Tcell_inflamed_GEP")
STROMA_PROGRAMMES = ("Pan_F_TBRS", "MFP_CAF")
EFFECTOR_PROGRAMME = "CD8_T_effector"  # the one read alone where each sample is judged alone
MIN_COHORT = 9  # cohort terciles from 9 samples (3 per tercile); fewer samples are judged one by one
ENRICHED = 1.645  # above 95% of the random marker sets (one-sided), normal approximation
IFNG_PROGRAMME = "IFNG_6"
GEP_PROGRAMME = "Tcell_inflamed_GEP"  # stands in for IFNG_6 on panels holding fewer than 3 of its genes
EXCLUDED_CAP = 0.5
IMMUNE_LINEAGES = ("CD8 T", "CD4 T", "NK", "B", "Plasma", "Monocyte/Macrophage", "Neutrophil", "DC", "Mast")
CAVEAT = "exclusion inferred from expression, not seen: dissociated or bulk data carry no positions"


def _programmes() -> list:
    """The registry's programmes as scored here: up genes only (ssGSEA takes no weights, and the GEP's one down gene,
    CD276, would clip its score at 0 wherever CD276 outranks the rest, as in one of Racle's four samples)."""
    from dataclasses import replace

    from ..sig import get

    return [replace(s, genes_down=(), weights={}) if s.genes_down else s
            for s in (get(n) for n in (*IMMUNE_PROGRAMMES, *STROMA_PROGRAMMES))]


def _pseudobulk(adata: AnnData, samples: pd.Series, layer) -> AnnData:
    """Summed counts (or mean log values) per sample, as an AnnData of samples x genes.

    In-memory matrices go through ``sc.get.aggregate``; dask-backed and backed matrices, which it does not take,
    are summed chunk by chunk with the same result.
    """
    import scanpy as sc

    from .._matrix import get_matrix, is_dask, iter_rows

    report = inspect(adata, layer, full_scan=False)
    func = "mean" if report.state in ("lognorm", "protein") else "sum"  # log values are averaged, counts summed
    X = get_matrix(adata, layer)
    if isinstance(X, np.ndarray) or (sp.issparse(X) and not is_dask(X)):
        view = AnnData(X=X, obs=pd.DataFrame({"_sample": samples.values}, index=adata.obs_names), var=adata.var[[]])
        agg = sc.get.aggregate(view, by="_sample", func=func)
        out, names = agg.layers[func], agg.obs_names.astype(str)
        out = out.toarray() if sp.issparse(out) else np.asarray(out)
    else:
        codes, uniques = pd.factorize(samples.values, sort=True)
        n = len(codes)
        member = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(len(uniques), n))
        out = np.zeros((len(uniques), adata.n_vars))
        for start, stop, block in iter_rows(X):
            part = member[:, start:stop] @ block
            out += part.toarray() if sp.issparse(part) else np.asarray(part)
        if func == "mean":
            out /= np.bincount(codes, minlength=len(uniques))[:, None]
        names = pd.Index(uniques).astype(str)
    return AnnData(out.astype(np.float64), obs=pd.DataFrame(index=names), var=adata.var[[]].copy())


def _confidence(margin) -> np.ndarray:
    """``2 * Phi(margin) - 1``: 0 on a boundary, 0.68 one unit of uncertainty away, 0.95 at 1.96."""
    from scipy.stats import norm

    return 2.0 * norm.cdf(np.clip(np.asarray(margin, dtype=float), 0, None)) - 1.0


def _enrichment(bulk: AnnData) -> tuple[pd.DataFrame, dict]:
    """Per sample, T-cell genes, the IFN-gamma, T-cell-inflamed GEP and CD8 T-effector programmes and the stromal
    programmes (mean of the two) as z against random sets of marker genes of the sample's other cell types
    (``_marker_null``). Where the panel holds fewer than 3 of the IFN-gamma programme's 6 genes (targeted panels), the
    GEP (Cristescu 2018: T-cell and IFN-gamma-induced genes) stands in for it, and ``used`` says so."""
    from ..sig import get
    from ._marker_null import marker_null_z, t_cell_genes

    report = inspect(bulk, None, full_scan=False)
    programmes = {"t_cell_enrichment": t_cell_genes(), "ifng_enrichment": get(IFNG_PROGRAMME).genes_up,
                  "gep_enrichment": get(GEP_PROGRAMME).genes_up, "immune_enrichment": get(EFFECTOR_PROGRAMME).genes_up,
                  **{name: get(name).genes_up for name in STROMA_PROGRAMMES}}
    z, used = marker_null_z(bulk, programmes, report.species)
    used["ifng_programme"] = IFNG_PROGRAMME
    if z["ifng_enrichment"].isna().all() and z["gep_enrichment"].notna().any():
        z["ifng_enrichment"] = z["gep_enrichment"]
        used["ifng_programme"] = (f"{GEP_PROGRAMME} ({IFNG_PROGRAMME}: {used['ifng_enrichment_genes_found']} of "
                                  f"{len(programmes['ifng_enrichment'])} genes found)")
    z["stromal_enrichment"] = z[list(STROMA_PROGRAMMES)].mean(axis=1)
    return z.drop(columns=list(STROMA_PROGRAMMES)), used


def _cells(adata, samples, cell_type_key, effector_labels, f: pd.DataFrame) -> None:
    """CD8 T cells among all cells and among immune cells, and Tex among CD8 T cells, per sample (into ``f``)."""
    ct_key = cell_type_key or (_keys.LINEAGE if _keys.LINEAGE in adata.obs else None)
    if samples is None or ct_key is None or ct_key not in adata.obs:
        return
    lab = adata.obs[ct_key].astype(str)
    effectors = [effector_labels] if isinstance(effector_labels, str) else list(effector_labels or ("CD8 T",))
    missing = [e for e in effectors if e not in set(lab)]
    if missing and effector_labels is not None:  # the default may simply have no cells in these data
        raise missing_key_error(missing[0], f"the labels of obs[{ct_key!r}] (effector_labels)", sorted(set(lab)))
    cd8 = lab.isin(effectors)
    # immune cells: tmetoolkit's immune lineages in this column, the effectors, and cells annotate called immune
    immune = lab.isin(IMMUNE_LINEAGES) | cd8
    if ct_key != _keys.LINEAGE and _keys.LINEAGE in adata.obs:
        immune |= adata.obs[_keys.LINEAGE].astype(str).isin(IMMUNE_LINEAGES)
    f["cd8_fraction_all"] = cd8.groupby(samples, observed=True).mean()
    if (immune & ~cd8).any():
        f["cd8_fraction_immune"] = cd8[immune].groupby(samples[immune], observed=True).mean()
    else:
        logger.warning("no immune cells other than the effectors are recognisable in obs[%r]: CD8 T cells among "
                       "immune cells not computed (run tmt.tl.annotate to recognise immune cells)", ct_key)
    if _keys.STATE in adata.obs:
        st = adata.obs[_keys.STATE].astype(str)
        f["tex_fraction_cd8"] = (st[cd8] == "CD8 Tex").groupby(samples[cd8], observed=True).mean()


TERCILE_SE = float(np.sqrt(2 / 9) / 0.3636)  # SE of a 1/3 quantile: sqrt(p(1-p)/n) / density there, in SDs x sqrt(n)


def _terciles(x: pd.Series) -> tuple[np.ndarray, float, float]:
    """Top third inflamed, middle excluded, bottom desert (pandas' linear-interpolation quantiles)."""
    t1, t2 = (float(q) for q in x.quantile([1 / 3, 2 / 3]))
    return np.where(x >= t2, "inflamed", np.where(x >= t1, "excluded", "desert")), t1, t2


def _cohort_calls(f: pd.DataFrame, have_imm: list[str], have_str: list[str]) -> dict:
    """Cohort terciles of the CD8 T-effector programme decide; the other T-cell programmes and the stromal axis
    set the confidence and are reported beside the call, never overturning it."""
    z = f[have_imm + have_str].apply(robust_z)
    lead_name = EFFECTOR_PROGRAMME if EFFECTOR_PROGRAMME in have_imm else None
    raw = f[lead_name].astype(float) if lead_name else z[have_imm].mean(axis=1)
    label, t1, t2 = _terciles(raw)  # on the score itself: the same cut a user makes on the same column
    v = raw.dropna()
    centre = float(v.median())
    scale = robust_sd(v)
    lead = (raw - centre) / scale
    zt1, zt2 = (t1 - centre) / scale, (t2 - centre) / scale
    both = z[have_imm].mean(axis=1)
    stro = z[have_str].mean(axis=1) if have_str else pd.Series(np.nan, index=f.index)
    n, k = len(f), len(have_imm)
    se_prog = z[have_imm].std(axis=1, ddof=1).fillna(0) / np.sqrt(k) if k > 1 else pd.Series(0.0, index=f.index)
    se_tercile = TERCILE_SE / np.sqrt(n)  # the axis is a robust z: its SD is 1
    unc = np.sqrt(se_prog**2 + se_tercile**2)
    margin = np.minimum((lead - zt1).abs(), (lead - zt2).abs()) / unc.where(unc > 0, 1e-9)
    agree = sum((_terciles(f[c].astype(float))[0] == label).astype(int) for c in have_imm)
    return {"immune_axis": lead, "t_cell_programmes": both, "stromal_axis": stro, "immune_axis_uncertainty": unc,
            "programmes_agreeing": pd.Series(agree, index=f.index), "phenotype": label,
            "margin": np.asarray(margin, dtype=float), "decided_by": "CD8 T-effector (cohort terciles)",
            "thresholds": {"immune_tercile_low": zt1, "immune_tercile_high": zt2,
                           "immune_tercile_standard_error": float(se_tercile)}}


def _absolute_expression_calls(f: pd.DataFrame) -> dict:
    """Each sample alone: T-cell genes and the IFN-gamma programme against marker genes of its other cell types."""
    zt = f["t_cell_enrichment"].astype(float).to_numpy()
    zi = f["ifng_enrichment"].astype(float).to_numpy()
    label = np.where(zt < 0, "desert", np.where(zi >= ENRICHED, "inflamed", "excluded"))
    # distance, in null SDs, to the nearest change of call: desert leaves when T cells reach the null's mean,
    # inflamed when either T cells fall below it or the IFN-gamma response below ENRICHED
    margin = np.where(label == "desert", -zt, np.where(label == "inflamed", np.minimum(zt, zi - ENRICHED),
                                                       np.minimum(zt, ENRICHED - zi)))
    return {"phenotype": label, "margin": margin,
            "decided_by": "T-cell genes and IFN-gamma programme against marker genes of the sample's other cell types",
            "thresholds": {"t_cell_enrichment_desert_below": 0.0, "ifng_enrichment_inflamed_from": ENRICHED}}


def _absolute_cell_calls(f: pd.DataFrame, min_cd8_fraction: float) -> dict:
    fr = f["cd8_fraction_immune"].fillna(0)
    lo = min_cd8_fraction / 4
    label = np.where(fr >= min_cd8_fraction, "inflamed", np.where(fr < lo, "desert", "excluded"))
    log_fr = np.log(np.maximum(fr, 1e-9))
    margin = np.where(label == "inflamed", log_fr - np.log(min_cd8_fraction),
                      np.where(label == "desert", np.log(lo) - log_fr,
                               np.minimum(log_fr - np.log(lo), np.log(min_cd8_fraction) - log_fr)))
    return {"phenotype": label, "margin": margin, "decided_by": "CD8 T cells among immune cells",
            "thresholds": {"min_cd8_fraction": min_cd8_fraction}}


def expression_phenotype(
    adata: AnnData,
    *,
    sample_key: str | None,
    cell_type_key: str | None,
    layer: str | None,
    reference: str | None,
    min_cd8_fraction: float,
    effector_labels=None,
) -> tuple[pd.DataFrame, dict]:
    """One row per sample (``phenotype``, ``confidence``, ``reference``, ``decided_by``, the features) and the
    parameters used (``reference``, thresholds)."""
    from .._matrix import get_matrix, iter_rows, row_sums
    from ._score import score

    if sample_key is None:
        bulk = AnnData(get_matrix(adata, layer), obs=pd.DataFrame(index=bulk_samples(adata).to_numpy()),
                       var=adata.var[[]])  # observations are samples (bulk or pseudobulk)
        samples = None
    else:
        samples = samples_of(adata, sample_key)
        bulk = _pseudobulk(adata, samples, layer)
    X = get_matrix(bulk, None)
    sums = [row_sums(abs(b) if sp.issparse(b) else np.abs(b)) for _, _, b in iter_rows(X)]
    no_expression = np.concatenate(sums) == 0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no expression.*")  # reported in the table's reason instead
        score(bulk, _programmes(), method="ssgsea")
    f = bulk.obsm[_keys.SCORES].copy()
    have_imm = [c for c in IMMUNE_PROGRAMMES if c in f.columns]
    have_str = [c for c in STROMA_PROGRAMMES if c in f.columns]
    if not have_imm:
        msg = "none of the immune programmes could be scored (too few signature genes); check gene symbols."
        raise TmtInputError(msg)
    enrich, null_used = _enrichment(bulk)
    for col in enrich:
        f[col] = enrich[col]
    _cells(adata, samples, cell_type_key, effector_labels, f)

    reason = pd.Series("", index=f.index, dtype=object)
    reason[f[have_imm].isna().any(axis=1).to_numpy()] = "T-cell programmes could not be scored"
    reason[no_expression] = "no expression (all values zero)"
    ok = (reason == "").to_numpy()
    n_ok = int(ok.sum())
    chosen = reference is None
    if chosen:
        reference = "cohort" if n_ok >= MIN_COHORT else "absolute"
        why = (f"{n_ok} samples with expression, " + (f"cohort terciles from {MIN_COHORT}" if reference == "cohort"
               else f"fewer than {MIN_COHORT} for cohort terciles: absolute thresholds"))
        logger.info(why)
    else:
        why = f"reference={reference!r} given ({n_ok} samples with expression)"
    if reference == "cohort" and n_ok < MIN_COHORT_SIZE:
        msg = (f"a cohort-relative call needs at least {MIN_COHORT_SIZE} samples with expression, found {n_ok}; use "
               "reference='absolute' (or leave reference unset: absolute below "
               f"{MIN_COHORT} samples).")
        raise TmtInputError(msg)
    use_cells = reference == "absolute" and "cd8_fraction_immune" in f.columns
    if reference == "absolute" and not use_cells:
        unknown = f[["t_cell_enrichment", "ifng_enrichment"]].isna().any(axis=1).to_numpy() & ok
        reason[unknown] = ("T-cell genes or the IFN-gamma programme could not be set against marker genes of the "
                           f"sample's other cell types (found: {null_used})")
        ok &= ~unknown
    if reference == "absolute" and chosen:
        from .._utils import warn

        warn(f"{why}; each sample is judged alone by "
             + ("CD8 T cells among its immune cells" if use_cells else
                "its T-cell genes and IFN-gamma programme against marker genes of its other cell types")
             + " (see params). Pass reference='absolute' to confirm and silence this.", category=TmtSmallCohortWarning,
             stacklevel=5)
    sub = f.loc[ok]
    if reference == "cohort":
        res = _cohort_calls(sub, have_imm, have_str)
        for col in ("immune_axis", "t_cell_programmes", "stromal_axis", "immune_axis_uncertainty",
                    "programmes_agreeing"):
            f[col] = res[col].reindex(f.index)
    else:
        res = _absolute_cell_calls(sub, min_cd8_fraction) if use_cells else _absolute_expression_calls(sub)
        if n_ok >= MIN_COHORT_SIZE:  # the cohort axes are still shown beside an absolute call
            axes = _cohort_calls(sub, have_imm, have_str)
            f["immune_axis"], f["stromal_axis"] = axes["immune_axis"], axes["stromal_axis"]
        else:
            f["immune_axis"] = f["stromal_axis"] = np.nan
    f["phenotype"] = "not assessable"
    f.loc[ok, "phenotype"] = np.asarray(res["phenotype"], dtype=object)
    f["confidence"] = np.nan
    conf = _confidence(res["margin"])
    conf = np.where(np.asarray(res["phenotype"]) == "excluded", np.minimum(conf, EXCLUDED_CAP), conf)
    f.loc[ok, "confidence"] = conf
    f["reference"] = reference
    f["decided_by"] = ""
    f.loc[ok, "decided_by"] = res["decided_by"]
    f["basis"] = "expression"
    f["reason"] = reason
    f["caveat"] = CAVEAT
    if (~ok).any():
        from .._utils import warn

        warn("not assessable: " + "; ".join(f"{k} ({v})" for k, v in reason[~ok].items()))
    logger.info("immune phenotype from expression for %d samples (%s reference)", len(f), reference)
    params = {"reference": reference, "reference_reason": why, "n_samples_assessable": n_ok, "min_cohort": MIN_COHORT,
              "programmes_immune": have_imm, "programmes_stroma": have_str,
              "decided_by": "cell composition" if use_cells else "expression", **res["thresholds"]}
    if reference == "absolute" and not use_cells:
        params["marker_null"] = null_used
    return f, params

"""Immune phenotype from expression alone (dissociated single-cell or bulk): exclusion is inferred, never seen.

The rule and its thresholds, on tables of programme scores per sample; the runner
(``tmetoolkit.tl._phenotype_expression``) builds the pseudobulk, scores the programmes and reads the cell types.

Bulk samples and the pseudobulk of single-cell samples (counts summed, log values averaged) take one path: the same
programmes scored the same way, so the same tumours get comparable calls from either.

Per sample, the T-cell programmes (Mariathasan 2018 CD8 T-effector, Ayers 2017 IFN-gamma 6-gene and the Cristescu
2018 T-cell-inflamed GEP) are scored by single-sample GSEA (gseapy, the usual choice for bulk cohorts) and so is a
stromal programme (pan-fibroblast TGF-beta response, Mariathasan 2018, and the MFP CAF programme, Bagaev 2021).

Cohort-relative (``reference="cohort"``, the default from ``MIN_COHORT`` samples): the CD8 T-effector programme
is cut into cohort terciles, top inflamed, middle excluded, bottom desert: the obvious rule a user would write, and
the published reading of it (in IMvigor210 desert tumours had low T-effector expression, excluded ones intermediate,
inflamed ones high; Mariathasan 2018). It is the one of the three programmes made of T-cell and IFN-gamma-induced
genes only. Nothing in the expression overturns that call (one fact about the cells does: with annotated cells, a
sample whose immune cells hold no CD8 T cell is a desert); what else the expression says is reported beside it and
enters the confidence:

- ``immune_axis`` (the lead as a robust z across samples: median, MAD) and ``t_cell_programmes`` (mean robust z of
  the three); ``programmes_agreeing``: how many of the three programmes, each cut into its own terciles, give the
  same call; ``immune_axis_uncertainty`` combines the disagreement of the three (their standard error) with the
  standard error of a tercile of the cohort (``sqrt(p(1 - p) / n) / density`` at p = 1/3, normal density).
- ``stromal_axis`` (TGF-beta response of fibroblasts and the CAF programme). It does not decide excluded against
  desert. On 30 simulated cohorts of 12 to 48 samples (``benchmarks/bench_sample_level.py``), with or without a
  fibrotic rim planted around the excluded tumours, letting it decide among all non-inflamed samples lowered macro-F1
  against the planted phenotypes in 24 of 30 cohorts (mean -0.22). Letting it decide only within a tercile's standard
  error of the lower boundary lowered macro-F1 in 22 of 30 (20 of 30 with the TGF-beta response alone). The earlier
  rule (immune axis at the median, stroma deciding) lost to the tercile rule on IMvigor210 too (macro-F1 0.50 against
  0.64). Letting the mean of the three T-cell programmes decide within a tercile's standard error of a boundary
  lowered macro-F1 in 21 of 30 cohorts (mean -0.059, worst -0.17), so it does not decide either. The call is never
  worse than the tercile rule because it is that rule; the rest is evidence.

Absolute (``reference="absolute"``, the default below ``MIN_COHORT`` samples): with annotated cells, CD8 T cells
among immune cells decide (>= ``min_cd8_fraction`` inflamed, < a quarter of it desert, excluded in between); without
them (bulk, or cells without a cell-type column), each sample is judged alone, so its call does not change when a
sample is added. Its genes are ranked within the sample and two programmes are set against random gene sets of the
same size drawn from the marker genes of the sample's other cell types (``tmetoolkit.tl._marker_null``: the null's
mean and SD are exact for sampling without replacement):

- ``ifng_enrichment``: the Ayers 2017 IFN-gamma programme. From ``ENRICHED`` (above 95% of the random marker sets,
  one-sided) inflamed: the IFN-gamma response of T cells in contact with the tumour (Ayers 2017; Chen & Mellman
  2017). IFN-gamma is made by T and NK cells, so a sample showing its response holds T cells whatever its six T-cell
  identity genes say, and is no desert (a paucity of T cells; Hegde 2016, Chen & Mellman 2017).
  On targeted panels with fewer than 3 of its 6 genes the T-cell-inflamed GEP (Cristescu 2018) stands in
  (``params["marker_null"]["ifng_programme"]`` says so).
- ``t_cell_enrichment``: the T-cell identity genes (CD3D/E/G, CD2, CD8A/B, the lineage marker table's T-cell core).
  Without that IFN-gamma response, below 0, i.e. below the mean of random marker sets of the sample (T cells rarer
  than a typical other cell type of the sample): desert; from 0 excluded (T cells without the response).

On ``simulate()`` cohorts of 3 to 8 samples (300 cells each, 50 seeds per size, with and without a stromal barrier;
``benchmarks/bench_sample_level.py``, ``small_cohorts``) this rule reached mean macro-F1 0.950 against the planted
phenotypes where terciles of the same few samples reached 0.878 (phenotypes cycled, so terciles get the proportions
right by construction), and 0.815 against 0.596 with phenotypes drawn at random per sample (samples right 0.943
against 0.655); its mean is below the terciles' in 3 of the 24 design x barrier x size cells (by at most 0.028). Per
cohort it is below them in 69 of 600 (cycled) and 47 of 600 (random), above in 254 and 485. Terciles call every
sample right in 333 and 68 of these cohorts (terciles of 3, 4, 6 or 7 cycled samples whenever the programme orders
them), and there only a rule right on every sample is never worse: the same rule with both cuts fitted to the planted
phenotypes (an oracle: T-cell genes -0.15, IFN-gamma 1.55) is still below terciles in 55 and 53, so no choice of
these two cuts makes a sample-alone rule never worse. Its misses are boundary cases: planted inflamed with a weak
IFN-gamma response called excluded (90 of 999 distinct inflamed tumours), excluded called inflamed (24 of 1,814) or
desert (18); planted inflamed tumours are never called desert, and 10 of 824 desert tumours, whose IFN-gamma programme
passes the null's 95th percentile by chance, are called inflamed (before the IFN-gamma response ruled out desert, 9
inflamed tumours with T-cell genes just below the null's mean and the IFN-gamma programme up to 2.7 were called
desert). The earlier rule (the CD8 T-effector programme's rank score against random genes of the whole matrix)
reached 0.18-0.20 there: in the simulated panel T-cell genes sit below the median gene even in inflamed tumours, in a
whole transcriptome near the top, so random genes of the matrix are no platform-free scale. On cohorts of 12 to 48
the rule beat the terciles in 17 of 30 but was below them in 10 (worst -0.18), so from ``MIN_COHORT`` samples the
terciles stay. On Racle 2017 (four melanoma lymph-node metastases, bulk) it calls all four inflamed; LAU125, 0.4% CD8
T cells by FACS and 18% B cells, has by far the lowest T-cell genes (0.88) and its IFN-gamma programme reaches 1.77
on two genes near the top of its transcriptome (STAT1 at the 97th percentile, HLA-DRA at the 98th), while IFNG (0.5
TPM) and CXCL9 (1.6 TPM) sit with random marker genes (70th and 75th): without either of the two the programme is at
1.15-1.18, below ``ENRICHED``. It is called inflamed at confidence 0.10, the lowest of the four; by FACS it is not
inflamed, and no rule here is fitted to it.
``immune_enrichment`` (the CD8 T-effector programme against the same null) and ``stromal_enrichment`` are reported
beside the call.

Confidence is ``2 * Phi(m) - 1`` for ``m`` the distance to the nearest boundary that would change the call, in units
of its uncertainty (cohort) or of the random-set SD (absolute). A call counted from cells (CD8 T cells among immune
cells, and a cohort sample without any) is ``2 P - 1`` for ``P`` the posterior probability, given the counts, that
the tumour's CD8 T share lies on the called side (:func:`share_interval`): inflamed on 1 CD8 T cell of 5 immune cells
gets 0.60, on 20 of 100 0.997 (the log distance to the cut used before gave both 0.51). Excluded is an inference from
expression and its confidence is capped at 0.5. A sample of cells has its confidence scaled by ``min(1, n_cells /
min_cells)`` as well: a few cells say little of the tumour they were taken from, whatever their counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..._utils import TmtInputError, TmtSmallCohortWarning, logger, warn
from ..spatial.rules import Line
from .cohort import MIN_COHORT_SIZE, robust_sd, robust_z

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
DESERT_SHARE = 0.25  # absolute, with cells: desert below a quarter of min_cd8_fraction


@dataclass(frozen=True)
class ExpressionCall:
    """One row per sample (``phenotype``, ``confidence``, ``reference``, ``decided_by``, the features) and the
    parameters the call was made with (``reference``, thresholds)."""

    table: pd.DataFrame
    params: dict


def cell_fractions(labels: pd.Series, samples: pd.Series, effectors: list[str], lineage: pd.Series | None,
                   state: pd.Series | None) -> pd.DataFrame:
    """CD8 T cells among all cells and among immune cells, and Tex among CD8 T cells, per sample.

    Immune cells are tmetoolkit's immune lineages in ``labels``, the ``effectors``, and the cells ``lineage``
    (annotate's column, when ``labels`` is another) calls immune.
    """
    out = pd.DataFrame(index=pd.Index(pd.unique(samples)))
    cd8 = labels.isin(effectors)
    immune = labels.isin(IMMUNE_LINEAGES) | cd8
    if lineage is not None:
        immune |= lineage.isin(IMMUNE_LINEAGES)
    out["cd8_fraction_all"] = cd8.groupby(samples, observed=True).mean()
    if (immune & ~cd8).any():
        out["cd8_fraction_immune"] = cd8[immune].groupby(samples[immune], observed=True).mean()
        out["immune_cells"] = immune.groupby(samples, observed=True).sum().astype(int)
        out["cd8_cells"] = cd8.groupby(samples, observed=True).sum().astype(int)
    else:
        logger.warning("no immune cells other than the effectors are recognisable in the cell types: CD8 T cells "
                       "among immune cells not computed (run tmt.tl.annotate to recognise immune cells)")
    if state is not None:
        out["tex_fraction_cd8"] = (state[cd8] == "CD8 Tex").groupby(samples[cd8], observed=True).mean()
    return out


def _confidence(margin) -> np.ndarray:
    """``2 * Phi(margin) - 1``: 0 on a boundary, 0.68 one unit of uncertainty away, 0.95 at 1.96."""
    from scipy.stats import norm

    return 2.0 * norm.cdf(np.clip(np.asarray(margin, dtype=float), 0, None)) - 1.0


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
    # an IFN-gamma response comes from T (and NK) cells: a sample showing one is not desert, whatever its T-cell genes
    label = np.where(zi >= ENRICHED, "inflamed", np.where(zt < 0, "desert", "excluded"))
    # distance, in null SDs, to the nearest change of call: inflamed leaves when the IFN-gamma response falls below
    # ENRICHED; desert when T cells reach the null's mean or the IFN-gamma response ENRICHED; excluded either way
    margin = np.where(label == "inflamed", zi - ENRICHED, np.where(label == "desert", np.minimum(-zt, ENRICHED - zi),
                                                                   np.minimum(zt, ENRICHED - zi)))
    return {"phenotype": label, "margin": margin,
            "decided_by": "T-cell genes and IFN-gamma programme against marker genes of the sample's other cell types",
            "thresholds": {"t_cell_enrichment_desert_below": 0.0, "ifng_enrichment_inflamed_from": ENRICHED}}


def _share_posterior(k, n):
    """The binomial posterior of the share behind ``k`` of ``n`` cells with Jeffreys' prior, Beta(k + 1/2,
    n - k + 1/2) (Brown, Cai & DasGupta 2001, doi:10.1214/ss/1009213286)."""
    from scipy.stats import beta

    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    return beta(k + 0.5, n - k + 0.5)


def share_interval(k, n, lo: float, hi: float) -> np.ndarray:
    """Probability that the share behind ``k`` of ``n`` cells lies in ``[lo, hi)`` (:func:`_share_posterior`)."""
    post = _share_posterior(k, n)
    return post.cdf(hi) - post.cdf(lo)


def share_bounds(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The Jeffreys interval of the share behind ``k`` of ``n`` cells (0 and 1 at the ends, as Brown et al. set)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    tail = (1 - level) / 2
    post = _share_posterior(k, n)
    lo, hi = post.ppf(tail), post.ppf(1 - tail)
    return np.where(k == 0, 0.0, lo), np.where(k == n, 1.0, hi)


def _side_margin(k, n, lo: float, hi: float) -> np.ndarray:
    """The margin whose :func:`_confidence` is ``2 P - 1`` for ``P`` = :func:`share_interval`: 0 where the share
    is as likely outside the call's interval as inside it, 0.95 where 97.5% of its posterior lies inside."""
    from scipy.stats import norm

    return norm.ppf(np.clip(share_interval(k, n, lo, hi), 1e-12, 1 - 1e-12))


def _absolute_cell_calls(f: pd.DataFrame, min_cd8_fraction: float) -> dict:
    """The CD8 T share among immune cells decides; the confidence is the posterior probability that the share of
    the tumour the cells were drawn from lies on the called side, so a call on 1 CD8 T cell of 5 immune cells is
    weak and the same share of 500 is not."""
    fr = f["cd8_fraction_immune"].fillna(0)
    lo = min_cd8_fraction * DESERT_SHARE
    label = np.where(fr >= min_cd8_fraction, "inflamed", np.where(fr < lo, "desert", "excluded"))
    bounds = {"inflamed": (min_cd8_fraction, 1.0 + 1e-9), "excluded": (lo, min_cd8_fraction), "desert": (0.0, lo)}
    lower = np.array([bounds[x][0] for x in label])
    upper = np.array([bounds[x][1] for x in label])
    margin = _side_margin(f["cd8_cells"].to_numpy(), f["immune_cells"].to_numpy(), lower, upper)
    return {"phenotype": label, "margin": margin, "decided_by": "CD8 T cells among immune cells",
            "thresholds": {"min_cd8_fraction": min_cd8_fraction}}


def call_samples(f: pd.DataFrame, *, no_expression: np.ndarray, have_imm: list[str], have_str: list[str],
                 reference: str | None, min_cd8_fraction: float, null_used: dict | None = None,
                 n_cells: pd.Series | None = None, min_cells: int = 0) -> ExpressionCall:
    """Call every sample of ``f`` (programme scores, ``immune_enrichment``, ``stromal_enrichment`` and, with
    annotated cells, the :func:`cell_fractions`); ``reference=None`` picks cohort from ``MIN_COHORT`` samples with
    expression, absolute below; ``null_used`` says what the random marker sets were drawn from. A sample of cells
    (``n_cells`` per sample) has its confidence scaled by ``min(1, n_cells / min_cells)``: its pseudobulk and CD8 T
    fractions rest on that many cells."""
    f = f.copy()
    reason = pd.Series("", index=f.index, dtype=object)
    reason[f[have_imm].isna().any(axis=1).to_numpy()] = "T-cell programmes could not be scored"
    if n_cells is not None:
        f["n_cells"] = n_cells.reindex(f.index).fillna(0).astype(int)
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
        # stacklevel: the user's call, above immune_phenotype, its expression runner and this core
        warn(f"{why}; each sample is judged alone by "
             + ("CD8 T cells among its immune cells" if use_cells else
                "its T-cell genes and IFN-gamma programme against marker genes of its other cell types")
             + " (see params). Pass reference='absolute' (command line: --reference absolute) to confirm and silence "
             "this.", category=TmtSmallCohortWarning,
             stacklevel=6)
    sub = f.loc[ok]
    if reference == "cohort":
        res = _cohort_calls(sub, have_imm, have_str)
        for col in ("immune_axis", "t_cell_programmes", "stromal_axis", "immune_axis_uncertainty",
                    "programmes_agreeing"):
            f[col] = res[col].reindex(f.index)
        if "cd8_fraction_immune" in sub.columns:  # terciles place every sample; one without CD8 T cells is a desert
            none = sub["cd8_fraction_immune"].to_numpy(dtype=float) == 0
            res["phenotype"] = np.where(none, "desert", res["phenotype"])
            desert = _side_margin(0, sub["immune_cells"].to_numpy(), 0.0, min_cd8_fraction * DESERT_SHARE)
            res["margin"] = np.where(none, desert, res["margin"])
            res["decided_by"] = np.where(none, "no CD8 T cells among its immune cells", res["decided_by"])
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
    if n_cells is not None and min_cells > 0:
        conf = conf * np.minimum(1.0, f.loc[ok, "n_cells"].to_numpy() / min_cells)
    f.loc[ok, "confidence"] = conf
    f["reference"] = reference
    f["decided_by"] = ""
    f.loc[ok, "decided_by"] = res["decided_by"]
    f["basis"] = "expression"
    f["reason"] = reason
    f["caveat"] = CAVEAT
    if (~ok).any():
        warn("not assessable: " + "; ".join(f"{k} ({v})" for k, v in reason[~ok].items()))
    logger.info("immune phenotype from expression for %d samples (%s reference)", len(f), reference)
    params = {"reference": reference, "reference_reason": why, "n_samples_assessable": n_ok, "min_cohort": MIN_COHORT,
              "programmes_immune": have_imm, "programmes_stroma": have_str,
              "decided_by": "cell composition" if use_cells else "expression", **res["thresholds"]}
    if reference == "absolute" and not use_cells:
        params["marker_null"] = null_used
    return ExpressionCall(f, params)


def decision_lines(params: dict, mode: str) -> list[Line]:
    """The thresholds of a stored expression call in the plane of its plot: the cohort terciles of the immune axis
    (``mode="cohort"``, y), T-cell genes (x) and the IFN-gamma programme (y) against marker genes of the sample
    (``"enrichment"``), or the CD8 T fractions among immune cells (``"cells"``, y); each labelled for the legend."""
    if mode == "cohort":
        terciles = {"immune_tercile_low": "desert below: lower tercile", "immune_tercile_high":
                    "inflamed above: upper tercile"}
        return [Line("y", float(params[k]), "--", f"{text} ({float(params[k]):.2g})")
                for k, text in terciles.items() if k in params]
    if mode == "enrichment":
        desert = float(params.get("t_cell_enrichment_desert_below", 0.0))
        inflamed = float(params.get("ifng_enrichment_inflamed_from", ENRICHED))
        return [Line("x", desert, "--", f"desert below T-cell z {desert:.2g}"),
                Line("y", inflamed, ":", f"inflamed from IFN-gamma z {inflamed:.2g}")]
    t = float(params["min_cd8_fraction"])
    return [Line("y", t, "--", f"inflamed from CD8 fraction {t:.2g}"),
            Line("y", t * DESERT_SHARE, ":", f"desert below CD8 fraction {t * DESERT_SHARE:.2g}")]

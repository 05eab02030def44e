"""The review's resistance mechanisms (Essa et al. 2026, Table 1), per sample or region, where the transcriptome sees
them: values, cohort-relative flags and the status of every mechanism. Tables in, a :class:`ResistanceProfile` out;
the runner is ``tmetoolkit.tl._resistance``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from ..._utils import natural_key, warn
from ...sig._registry import package_file
from .cohort import MIN_COHORT_SIZE, MIN_SPREAD, robust_z
from .features import mean_score
from .suppression import BULK_COMPONENTS, MIN_DENOMINATOR, Cells, bulk_components, cell_components

# mechanism -> (what is measured, optional sample-metadata column)
MEASURES = {
    "Low tumor mutational burden (TMB)": ("tumour mutational burden (mutations/Mb) from sample metadata", "tmb"),
    "B2M/HLA mutations": ("APM/MHC-I programme in malignant minus non-malignant cells of the sample", None),
    "IFN-gamma pathway defects (JAK1/2)": (("IFN-gamma response of malignant cells of inflamed tumours (spatial "
                                            "phenotype, IFNG+ T/NK cells inside) against those of excluded and "
                                            "desert tumours (AUC)"), None),
    "MAPK pathway activation": ("MAPK activity score (MPAS) in malignant cells", None),
    "PI3K/AKT/mTOR pathway activation": ("PI3K-AKT-mTOR programme in malignant cells", None),
    "WNT/beta-catenin pathway activation": ("beta-catenin target programme in malignant cells", None),
    "Glycolysis/lactate production": ("glycolysis programme in malignant cells", None),
    "Hypoxia": ("hypoxia programme in all cells", None),
    "DNA/histone modifications": ("hypothesis: chromatin repressors high in malignant cells with low APM", None),
    "Myeloid-derived suppressor cells (MDSCs)": ("MDSC-like cells among myeloid cells", None),
    "Regulatory T cells (Tregs)": ("Tregs among CD4 T cells", None),
    "M2-like tumor-associated macrophages (TAMs)": ("M2-like minus M1-like TAM balance", None),
    "Cancer-associated fibroblasts (CAFs)": ("myCAFs among fibroblasts", None),
    "Upregulation of LAG-3, TIM-3 and TIGIT": ("CD8 T cells with two or more co-inhibitory receptors", None),
    "Gut dysbiosis": ("microbiome status from sample metadata", "dysbiosis"),
    "HLA genotype (low heterozygosity)": ("HLA class I heterozygosity (0-1) from sample metadata",
                                          "hla_heterozygosity"),
}
YES_NO = {"yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0, "y": 1.0, "n": 0.0}


def metadata_values(meta: pd.Series, groups, column: str) -> pd.Series:
    """One number per sample from a metadata column: booleans and yes/no as 1/0, the first cell's value (a sample
    whose cells disagree is warned about); values that are not numbers are warned about and left out."""
    text = meta.astype(object).where(meta.notna())
    as_words = text.map(lambda x: YES_NO.get(x.strip().lower(), x) if isinstance(x, str) else x)
    values = pd.to_numeric(as_words.map(lambda x: float(x) if isinstance(x, (bool, np.bool_)) else x),
                           errors="coerce").astype(float)
    unread = text.notna() & values.isna()
    if unread.any():
        shown = ", ".join(map(repr, text[unread].unique()[:3]))
        warn(f"obs[{column!r}] holds values that are not numbers or yes/no ({shown}): their samples are not assessed "
             "for this mechanism")
    by_sample = values.groupby(np.asarray(groups), observed=True)
    varies = by_sample.nunique() > 1
    if varies.any():
        warn(f"obs[{column!r}] differs between cells of one sample ({', '.join(map(str, varies[varies].index[:3]))}): "
             "the first cell's value is used; it is a per-sample measurement")
    return by_sample.first()


NEEDED = ["APM", "MHC_I", "HALLMARK_INTERFERON_GAMMA_RESPONSE", "IFNG_6", "MPAS", "HALLMARK_PI3K_AKT_MTOR_SIGNALING",
          "HALLMARK_WNT_BETA_CATENIN_SIGNALING", "WNT_beta_catenin_core", "HALLMARK_GLYCOLYSIS", "Glycolysis_core",
          "HALLMARK_HYPOXIA", "Hypoxia_Buffa", "Epigenetic_regulators"]
# per-sample abundance rows: the immunosuppression component behind each, for cells and for bulk samples
ABUNDANCE = {
    "Myeloid-derived suppressor cells (MDSCs)": ("mdsc_fraction_myeloid", "mdsc_programme"),
    "Regulatory T cells (Tregs)": ("treg_fraction_cd4", "treg_programme"),
    "M2-like tumor-associated macrophages (TAMs)": ("m2_m1_balance", "m2_m1_difference"),
    "Cancer-associated fibroblasts (CAFs)": ("mycaf_fraction_caf", "mycaf_programme"),
    "Upregulation of LAG-3, TIM-3 and TIGIT": ("checkpoint_coexpression", "checkpoint_receptors"),
}
# measures on malignant cells told apart from the other cells of the sample: bulk samples have no such cells
CONTRASTS = ("B2M/HLA mutations", "IFN-gamma pathway defects (JAK1/2)")
APM_LOSS = -0.5  # malignant minus non-malignant APM score (log-expression units) below which APM loss is flagged
IFNG_RESPONSE = ("HALLMARK_INTERFERON_GAMMA_RESPONSE", "IFNG_6")
# an inflamed tumour whose malignant cells outscore those of the excluded and desert tumours with probability below
# this is flagged; on 12 simulated cohorts responding tumours scored 0.70-0.87, unresponsive ones 0.29-0.66
IFNG_RESPONSE_AUC = 0.7
TMB_LOW = 10.0  # mutations/Mb below which a tumour's mutational burden is flagged as low
HLA_FULL = 1.0  # HLA class I heterozygosity: below full heterozygosity is flagged
# mechanisms flagged by a fixed threshold on their value (the others: robust z across the cohort above COHORT_Z)
FIXED_RULES = {
    "Low tumor mutational burden (TMB)": f"below {TMB_LOW:g}",
    "B2M/HLA mutations": f"below {APM_LOSS:g}",
    "IFN-gamma pathway defects (JAK1/2)": f"AUC below {IFNG_RESPONSE_AUC:g} in an inflamed tumour",
    "Gut dysbiosis": "when reported (1)",
    "HLA genotype (low heterozygosity)": f"below {HLA_FULL:g}",
}
INSIDE = "inside the tumour"
COHORT_Z = 1.0  # cohort-relative flag: robust z above this


@dataclass(frozen=True)
class ResistanceProfile:
    """``long``: one row per group (sample or region) and mechanism; ``table``: groups x mechanism ids, 1 flagged,
    0 not flagged, NaN not assessable."""

    long: pd.DataFrame
    table: pd.DataFrame


def mechanisms() -> pd.DataFrame:
    """The resistance-mechanism table (Essa et al. 2026, Table 1) shipped with tmetoolkit.

    One row per mechanism: ``id`` (a short key without ``/``, used as the column name of the stored flag tables,
    since HDF5 and zarr keys cannot hold slashes), ``group``, ``mechanism``, ``category``, ``resistance_type``,
    ``evidence_level``, ``strategies_examples``, ``cycle_steps`` and ``measurable_from_transcriptome``.

    Returns
    -------
    The table, one row per mechanism (a fresh copy on each call).
    """
    return pd.read_csv(package_file("data", "resistance_mechanisms.tsv"), sep="\t")


def profile(groups: pd.Series, scores: pd.DataFrame, *, cells: Cells | None, ifng: pd.Series,
            border_distance: np.ndarray | None = None, metadata: dict[str, pd.Series] | None = None,
            unit: str = "samples", too_small=frozenset(), min_cells: int = 0,
            phenotype: pd.Series | None = None) -> ResistanceProfile:
    """The long table (group x mechanism) and the flag table (groups x mechanisms) for samples or regions.

    ``groups``: the sample (or region) of every observation; ``scores``: observations x signatures; ``cells``: the
    annotated cells (None: bulk, each observation a sample); ``ifng``: IFNG detection per cell (all NaN where not
    measured); ``border_distance``: signed distance to the tumour border per cell (``tmt.tl.compartments``), if any;
    ``metadata``: the per-cell sample-metadata columns of ``MEASURES`` present (``tmb``, ...); ``too_small``: groups
    of fewer than ``min_cells`` cells, not assessed; ``phenotype``: the spatial immune phenotype per group.
    """
    bulk = cells is None
    metadata = metadata or {}
    every = pd.Series(True, index=groups.index)
    names = sorted(groups.dropna().unique(), key=natural_key)
    if bulk:
        malignant = every  # tumour programmes of the whole sample
        sup = bulk_components(scores).reindex(names)
    else:
        lin = cells.lineage
        malignant = lin == "Malignant/Epithelial"
        other = (~malignant) & (lin != "unassigned")
        sup = cell_components(cells, groups).reindex(names)

    k = 1 if bulk else MIN_DENOMINATOR  # a programme "in malignant cells" of a region with one such cell is noise
    small = pd.Series([n in too_small for n in names], index=names)

    def diff(sigs):
        if bulk:
            return pd.Series(np.nan, index=names)
        return mean_score(scores, sigs, malignant, groups, k) - mean_score(scores, sigs, other, groups, k)

    def in_tumour(sigs):
        return mean_score(scores, sigs, malignant, groups, k)

    phenotype = (phenotype if phenotype is not None else pd.Series(dtype=object)).reindex(names)
    if bulk:
        exposure, ifng_where, ifng_auc = pd.Series(np.nan, index=names), "", pd.Series(np.nan, index=names)
    else:
        exposure, ifng_where = _ifng_exposure(groups, lin, malignant, ifng, border_distance)
        exposure = exposure.reindex(names).where(~small)
        ifng_auc = _ifng_response_auc(scores, groups, malignant, phenotype.isin(["excluded", "desert"]) & ~small,
                                      k).reindex(names)
    values = {
        "B2M/HLA mutations": diff(["APM", "MHC_I"]),
        "IFN-gamma pathway defects (JAK1/2)": ifng_auc,
        "MAPK pathway activation": in_tumour(["MPAS"]),
        "PI3K/AKT/mTOR pathway activation": in_tumour(["HALLMARK_PI3K_AKT_MTOR_SIGNALING"]),
        "WNT/beta-catenin pathway activation": in_tumour(["HALLMARK_WNT_BETA_CATENIN_SIGNALING",
                                                          "WNT_beta_catenin_core"]),
        "Glycolysis/lactate production": in_tumour(["HALLMARK_GLYCOLYSIS", "Glycolysis_core"]),
        "Hypoxia": mean_score(scores, ["HALLMARK_HYPOXIA", "Hypoxia_Buffa"], every, groups),
        "DNA/histone modifications": in_tumour(["Epigenetic_regulators"]),
        **{mech: sup[cols[1] if bulk else cols[0]] for mech, cols in ABUNDANCE.items()},
    }
    protein = not bulk and cells.protein
    cohort = int((~small).sum()) >= MIN_COHORT_SIZE
    rows = []
    table = pd.DataFrame(index=names, dtype=float)
    for r in mechanisms().itertuples(index=False):
        measure, meta_col = MEASURES.get(r.mechanism, ("", None))
        if bulk and r.mechanism in ABUNDANCE:
            measure = BULK_COMPONENTS[ABUNDANCE[r.mechanism][1]][0] + " (bulk)"
        elif bulk and r.mechanism not in CONTRASTS:
            for part in ("in malignant cells", "in all cells"):
                measure = measure.replace(part, "in the whole sample (bulk)")
        v = values.get(r.mechanism)
        v = v.reindex(names) if v is not None else pd.Series(np.nan, index=names)
        v = v.where(~small)
        z = robust_z(v, MIN_SPREAD) if cohort else pd.Series(np.nan, index=names)
        flag = pd.Series(np.nan, index=names)
        status = pd.Series("measured", index=names)
        if meta_col is not None:
            meta = metadata.get(meta_col)
            if meta is None:
                status[:] = f"needs external data: add obs['{meta_col}']"
            else:
                v = metadata_values(meta, groups, meta_col).reindex(names)
                status[:] = np.where(v.notna(), "from sample metadata",
                                     f"needs external data: no readable obs['{meta_col}'] value for this sample")
                if meta_col == "tmb":
                    flag = (v < TMB_LOW).astype(float).where(v.notna())
                elif meta_col == "dysbiosis":
                    flag = v.astype(float)
                else:
                    flag = (v < HLA_FULL).astype(float).where(v.notna())
        elif r.mechanism == "B2M/HLA mutations":
            flag = (v < APM_LOSS).astype(float).where(v.notna())
        elif r.mechanism == "IFN-gamma pathway defects (JAK1/2)":
            # T cells reach the tumour (spatially inflamed) and make IFNG there, yet its malignant cells respond no
            # more than those of the excluded and desert tumours, whose T cells stay away
            exposed = (phenotype == "inflamed") & (exposure > 0)
            flag = (v < IFNG_RESPONSE_AUC).astype(float).where(exposed & v.notna())
            status[:] = [_ifng_status(e, auc, ph, ifng_where)
                         for e, auc, ph in zip(exposure, v, phenotype, strict=True)]
        elif r.mechanism == "DNA/histone modifications":
            apm = values["B2M/HLA mutations"].reindex(names)
            flag = ((z > COHORT_Z) & (apm < 0)).astype(float).where(z.notna() & apm.notna())
            status[:] = "hypothesis"
        elif cohort:
            flag = (z > COHORT_Z).astype(float).where(z.notna())
        else:
            status[:] = f"measured (a flag needs at least three {unit})"
        status[v.isna() & status.str.startswith(("measured", "hypothesis"))] = (
            "not assessable on a protein panel: needs expression" if protein and r.mechanism not in ABUNDANCE
            else "not assessable: cells or genes missing")
        if meta_col is None:
            status[small] = f"not assessable: fewer than {min_cells} cells"
        if bulk and r.mechanism in CONTRASTS:
            status[:] = "not assessable in bulk data: needs the malignant cells told apart from the others"
        table[r.id] = flag
        for s in names:
            rows.append({
                "sample": s, "id": r.id, "group": r.group, "mechanism": r.mechanism, "cycle_steps": r.cycle_steps,
                "category": r.category, "resistance_type": r.resistance_type, "evidence_level": r.evidence_level,
                "strategies": r.strategies_examples, "measure": measure, "value": v[s], "z": z[s],
                "flagged": flag[s], "status": status[s],
            })
    long = pd.DataFrame(rows)
    long["flagged"] = long["flagged"].astype(float)
    return ResistanceProfile(long, table)


def _ifng_exposure(groups: pd.Series, lin: pd.Series, malignant: pd.Series, ifng: pd.Series,
                   border_distance: np.ndarray | None) -> tuple[pd.Series, str]:
    """Per group, IFNG+ T/NK cells per 100 malignant cells, and where they were counted.

    Where :func:`tmetoolkit.tl.compartments` placed the cells (``border_distance``), both are counted
    inside the tumour region: malignant cells meet the IFN-gamma of T cells among them, not of T cells held in the
    stroma. ``ifng`` is each cell's IFNG detection (1/0; all NaN when the gene is not measured, and then the result
    is all NaN and ``""``). NaN where fewer than ``MIN_DENOMINATOR`` malignant cells are counted.
    """
    tnk, mal = lin.isin(["CD8 T", "CD4 T", "NK"]), malignant.copy()
    where = "in the sample"
    if border_distance is not None:
        inside = np.asarray(border_distance, dtype=float) < 0
        tnk, mal = tnk & inside, mal & inside
        where = INSIDE
    if ifng.isna().all():
        return pd.Series(np.nan, index=pd.Index(groups.dropna().unique())), ""
    n_ifng = (ifng.astype(bool) & tnk).groupby(groups, observed=True).sum()
    n_mal = mal.groupby(groups, observed=True).sum()
    return (100 * n_ifng / n_mal.where(n_mal >= MIN_DENOMINATOR)).astype(float), where


def _ifng_response_auc(scores: pd.DataFrame, groups: pd.Series, malignant: pd.Series, baseline: pd.Series,
                       min_cells: int) -> pd.Series:
    """Per group, the probability that one of its malignant cells has a higher IFN-gamma response than a malignant
    cell of the ``baseline`` groups (Mann-Whitney AUC; the group itself left out of the baseline)."""
    S = scores
    cols = [c for c in IFNG_RESPONSE if S is not None and c in S.columns]
    out = pd.Series(np.nan, index=baseline.index)
    low = baseline.index[baseline.to_numpy(dtype=bool)]
    if not cols or not len(low):
        return out
    response = S.loc[malignant.to_numpy(), cols].mean(axis=1)
    g = groups[malignant]
    for name in baseline.index:
        x, base = response[g == name], response[g.isin(low) & (g != name)]
        if len(x) >= min_cells and len(base) >= min_cells:
            out[name] = mannwhitneyu(x, base).statistic / (len(x) * len(base))
    return out


def _ifng_status(exposure: float, auc: float, phenotype, where: str) -> str:
    if not where:
        return "not assessable: IFNG not measured"
    if not isinstance(phenotype, str) or phenotype == "not assessable":
        if where != INSIDE:
            return ("not assessable: needs positions (whether T cells reach the malignant cells cannot be seen in "
                    "dissociated cells)")
        return "not assessable: needs the spatial immune phenotype (run tmt.tl.immune_phenotype first)"
    if not np.isfinite(exposure):
        return f"not assessable: fewer than {MIN_DENOMINATOR} malignant cells {where}"
    seen = f"{phenotype}; {exposure:.1f} IFNG+ T/NK cells per 100 malignant cells {where}"
    if not np.isfinite(auc):
        return f"not assessable: no excluded or desert tumour to compare with, or too few malignant cells ({seen})"
    if phenotype != "inflamed":
        return f"measured ({seen}: T cells do not reach the malignant cells, no flag)"
    if not exposure > 0:
        return f"measured ({seen}: no IFNG+ T/NK cell among the malignant cells, no flag)"
    return f"measured ({seen})"

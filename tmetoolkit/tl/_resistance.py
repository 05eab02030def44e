"""``tmt.tl.resistance_profile``: the review's resistance mechanisms, per sample, where the transcriptome sees them."""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.sample.cohort import MIN_COHORT_SIZE, robust_z
from .._utils import TmtInputError, TmtWarning, logger
from ._checkpoints import detect, is_protein
from ._sample_features import MIN_SPREAD, bulk_samples, mean_score, regions_of, samples_of
from ._score import score_once
from ._suppression import BULK_COMPONENTS, BULK_NEEDED, MIN_DENOMINATOR, _bulk_components, _cell_components
from ._suppression import NEEDED as SUPPRESSION_NEEDED

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
INSIDE = "inside the tumour"
COHORT_Z = 1.0  # cohort-relative flag: robust z above this


def mechanisms() -> pd.DataFrame:
    """The resistance-mechanism table (Essa et al. 2026, Table 1) shipped with tmetoolkit.

    One row per mechanism: ``id`` (a short key without ``/``, used as the column name of the stored flag tables,
    since HDF5 and zarr keys cannot hold slashes), ``group``, ``mechanism``, ``category``, ``resistance_type``,
    ``evidence_level``, ``strategies_examples``, ``cycle_steps`` and ``measurable_from_transcriptome``.

    Returns
    -------
    The table, one row per mechanism (a fresh copy on each call).
    """
    packaged = resources.files("tmetoolkit") / "_data" / "resistance_mechanisms.tsv"
    in_repo = Path(__file__).resolve().parents[2] / "data" / "resistance_mechanisms.tsv"
    path = Path(str(packaged)) if packaged.is_file() else in_repo
    return pd.read_csv(path, sep="\t")


def _metadata(adata: AnnData, samples: pd.Series, column: str) -> pd.Series | None:
    if column not in adata.obs:
        return None
    return adata.obs[column].groupby(samples, observed=True).first()


def resistance_profile(adata: AnnData, *, sample_key: str | None = None, region_key: str | None = None,
                       min_cells: int = 50, layer: str | None = None, bulk: bool = False,
                       copy: bool = False) -> AnnData | None:
    """Resistance mechanisms of the cancer-immunity cycle, per sample, from expression and optional metadata.

    One row per sample and mechanism of ``tmt.tl.mechanisms()`` (the review's Table 1: group, cycle step,
    category, evidence level, strategies). Where the transcriptome can see a mechanism it gets a value and a
    flag: antigen-presentation loss as malignant minus non-malignant APM expression of the same sample (flagged
    below ``-0.5``); IFN-gamma unresponsiveness where T cells reach the tumour: in tumours called inflamed by
    the spatial :func:`tmetoolkit.tl.immune_phenotype` with IFNG+ T/NK cells inside the tumour region, the AUC of
    their malignant cells' IFN-gamma response (Hallmark and Ayers sets) against the malignant cells of the excluded
    and desert tumours, flagged below 0.7 (without positions and that phenotype it is not assessable, since T
    cells counted in a dissociated sample may never have met the malignant cells); MAPK, PI3K, WNT, glycolysis
    and hypoxia programmes in malignant cells, MDSC/Treg/TAM/CAF abundance and checkpoint co-expression (the
    components of :func:`tmetoolkit.tl.immunosuppression`) flagged when cohort-high (robust z > 1, at least three
    samples; the spread taken as at least 0.1, in score units or of a fraction, so that noise in a cohort whose
    programmes barely differ is not flagged). Mechanisms that need DNA, microbiome or HLA data are
    ``needs external data`` unless the sample metadata carry them in ``obs["tmb"]``, ``obs["dysbiosis"]``
    (bool) or ``obs["hla_heterozygosity"]`` (0-1). With ``region_key`` the same profile is made for each tissue
    region, with cohort-relative flags taken across all regions.

    Bulk or pseudobulk data (``bulk=True``, observations are samples) need no annotation: tumour programmes are
    measured on the whole sample, abundance rows use the whole-sample programmes of
    :func:`tmetoolkit.tl.immunosuppression` with ``bulk=True``, and the two rows that need malignant cells told
    apart from the others (antigen presentation, IFN-gamma response) are not assessable.

    Parameters
    ----------
    adata
        Annotated with :func:`tmetoolkit.tl.annotate`; receptor counts of :func:`tmetoolkit.tl.checkpoints` are
        used when present.
    sample_key
        ``obs`` column of samples (default ``"sample"`` if present).
    region_key
        Optional ``obs`` column of tissue regions within samples; regions are named ``"<sample>:<region>"`` as in
        :func:`tmetoolkit.tl.immune_phenotype` and :func:`tmetoolkit.tl.immunosuppression`. Cells without a
        region (NaN) count for their sample only.
    min_cells
        With ``region_key``: regions with fewer cells are not assessable.
    layer
        Layer for scoring the programmes.
    bulk
        Observations are samples (bulk RNA-seq or pseudobulk).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets ``uns["tmt_resistance_profile"]``: ``params``;
    ``long`` (one row per sample and mechanism: id, group, mechanism, cycle_steps, category, evidence_level,
    strategies, measure, value, z, flagged, status); ``table`` (samples x mechanism ids, 1 flagged, 0 not
    flagged, NaN not assessable) for :func:`tmetoolkit.get.sample_table` and plots; with ``region_key``,
    ``regions_long`` and ``regions`` (the same per region; ``regions_long`` has ``region`` and ``sample``).
    """
    adata = adata.copy() if copy else adata
    if bulk and (sample_key is not None or region_key is not None):
        msg = ("bulk=True: every observation is a sample, so sample_key= and region_key= do not apply; leave them "
               "out.")
        raise TmtInputError(msg)
    if not bulk and _keys.LINEAGE not in adata.obs:
        msg = ("obs['tmt_lineage'] is missing: run tmt.tl.annotate(adata) first; for bulk or pseudobulk data "
               "(observations are samples) pass bulk=True.")
        raise KeyError(msg)
    if not bulk and _keys.STATE not in adata.obs:
        msg = "obs['tmt_state'] is missing: run tmt.tl.annotate(adata) first."
        raise KeyError(msg)
    if int(min_cells) != min_cells or min_cells < 1:
        msg = f"min_cells must be a positive integer, got {min_cells!r}."
        raise TmtInputError(msg)
    if bulk:
        samples = bulk_samples(adata)
    else:
        samples = samples_of(adata, sample_key)
    if region_key is not None:
        region_of, regions = regions_of(adata, samples, region_key)
    if bulk or not is_protein(adata):  # a protein panel has no programmes to score
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TmtWarning)
            score_once(adata, sorted({*NEEDED, *(BULK_NEEDED if bulk else SUPPRESSION_NEEDED)}), layer=layer)
    # IFNG detected once, for the samples and the regions: all NaN where the gene is not measured
    ifng = pd.Series(np.nan, index=adata.obs_names) if bulk else detect(adata, layer, {"IFNG": "IFNG"}, 1)["IFNG"]
    long, table = _profile(adata, samples, ifng=ifng, bulk=bulk, phenotype=_spatial_phenotype(adata))
    params = {"sample_key": "" if bulk else (sample_key or ("sample" if "sample" in adata.obs else "")),
              "layer": layer or "X", "bulk": bulk, "apm_loss_threshold": APM_LOSS, "cohort_z_threshold": COHORT_Z,
              "cohort_flags": len(table) >= MIN_COHORT_SIZE}
    result = {"params": params, "long": long, "table": table}
    if region_key is not None:
        too_small = set(regions.index[regions["n_cells"] < min_cells])
        r_long, r_table = _profile(adata, region_of, ifng=ifng, bulk=False, unit="regions", too_small=too_small,
                                   min_cells=min_cells, phenotype=_spatial_phenotype(adata, region_key))
        r_long = r_long.rename(columns={"sample": "region"})
        r_long.insert(1, "sample", regions.loc[r_long["region"], "sample"].to_numpy())
        params.update(region_key=region_key, min_cells=min_cells)
        result.update(regions_long=r_long, regions=r_table)
    adata.uns[_keys.RESISTANCE_PROFILE] = result
    logger.info("resistance profile: %d samples x %d mechanisms%s", len(table), table.shape[1],
                f", {len(result['regions'])} regions" if region_key is not None else "")
    return adata if copy else None


def _profile(adata: AnnData, groups: pd.Series, *, ifng: pd.Series, bulk: bool, unit: str = "samples",
             too_small=frozenset(), min_cells: int = 0,
             phenotype: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long table (group x mechanism) and the flag table (groups x mechanisms) for samples or regions."""
    every = pd.Series(True, index=adata.obs_names)
    names = sorted(groups.dropna().unique())
    if bulk:
        malignant = every  # tumour programmes of the whole sample
        sup = _bulk_components(adata).reindex(names)
    else:
        lin = adata.obs[_keys.LINEAGE].astype(str)
        malignant = lin == "Malignant/Epithelial"
        other = (~malignant) & (lin != "unassigned")
        sup = _cell_components(adata, lin, adata.obs[_keys.STATE].astype(str), groups).reindex(names)

    k = 1 if bulk else MIN_DENOMINATOR  # a programme "in malignant cells" of a region with one such cell is noise
    small = pd.Series([n in too_small for n in names], index=names)

    def diff(sigs):
        if bulk:
            return pd.Series(np.nan, index=names)
        return mean_score(adata, sigs, malignant, groups, k) - mean_score(adata, sigs, other, groups, k)

    def in_tumour(sigs):
        return mean_score(adata, sigs, malignant, groups, k)

    phenotype = (phenotype if phenotype is not None else pd.Series(dtype=object)).reindex(names)
    if bulk:
        exposure, ifng_where, ifng_auc = pd.Series(np.nan, index=names), "", pd.Series(np.nan, index=names)
    else:
        exposure, ifng_where = _ifng_exposure(adata, groups, lin, malignant, ifng)
        exposure = exposure.reindex(names).where(~small)
        ifng_auc = _ifng_response_auc(adata, groups, malignant, phenotype.isin(["excluded", "desert"]) & ~small,
                                      k).reindex(names)
    values = {
        "B2M/HLA mutations": diff(["APM", "MHC_I"]),
        "IFN-gamma pathway defects (JAK1/2)": ifng_auc,
        "MAPK pathway activation": in_tumour(["MPAS"]),
        "PI3K/AKT/mTOR pathway activation": in_tumour(["HALLMARK_PI3K_AKT_MTOR_SIGNALING"]),
        "WNT/beta-catenin pathway activation": in_tumour(["HALLMARK_WNT_BETA_CATENIN_SIGNALING",
                                                          "WNT_beta_catenin_core"]),
        "Glycolysis/lactate production": in_tumour(["HALLMARK_GLYCOLYSIS", "Glycolysis_core"]),
        "Hypoxia": mean_score(adata, ["HALLMARK_HYPOXIA", "Hypoxia_Buffa"], every, groups),
        "DNA/histone modifications": in_tumour(["Epigenetic_regulators"]),
        **{mech: sup[cols[1] if bulk else cols[0]] for mech, cols in ABUNDANCE.items()},
    }
    protein = not bulk and is_protein(adata)
    cohort = int((~small).sum()) >= MIN_COHORT_SIZE
    rows = []
    table = pd.DataFrame(index=names, dtype=float)
    for r in mechanisms().itertuples(index=False):
        measure, meta_col = MEASURES.get(r.mechanism, ("", None))
        if bulk and r.mechanism in ABUNDANCE:
            measure = BULK_COMPONENTS[ABUNDANCE[r.mechanism][1]][0] + " (bulk)"
        elif bulk and r.mechanism not in CONTRASTS:
            for cells in ("in malignant cells", "in all cells"):
                measure = measure.replace(cells, "in the whole sample (bulk)")
        v = values.get(r.mechanism)
        v = v.reindex(names) if v is not None else pd.Series(np.nan, index=names)
        v = v.where(~small)
        z = robust_z(v, MIN_SPREAD) if cohort else pd.Series(np.nan, index=names)
        flag = pd.Series(np.nan, index=names)
        status = pd.Series("measured", index=names)
        if meta_col is not None:
            meta = _metadata(adata, groups, meta_col)
            if meta is None:
                status[:] = f"needs external data: add obs['{meta_col}']"
            else:
                v = pd.to_numeric(meta.reindex(names), errors="coerce")
                status[:] = "from sample metadata"
                if meta_col == "tmb":
                    flag = (v < 10).astype(float).where(v.notna())
                elif meta_col == "dysbiosis":
                    flag = v.astype(float)
                else:
                    flag = (v < 1.0).astype(float).where(v.notna())
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
    return long, table


def _ifng_exposure(adata: AnnData, groups: pd.Series, lin: pd.Series, malignant: pd.Series,
                   ifng: pd.Series) -> tuple[pd.Series, str]:
    """Per group, IFNG+ T/NK cells per 100 malignant cells, and where they were counted.

    Where :func:`tmetoolkit.tl.compartments` placed the cells (``obs["tmt_border_distance"]``), both are counted
    inside the tumour region: malignant cells meet the IFN-gamma of T cells among them, not of T cells held in the
    stroma. ``ifng`` is each cell's IFNG detection (1/0; all NaN when the gene is not measured, and then the result
    is all NaN and ``""``). NaN where fewer than ``MIN_DENOMINATOR`` malignant cells are counted.
    """
    tnk, mal = lin.isin(["CD8 T", "CD4 T", "NK"]), malignant.copy()
    where = "in the sample"
    if _keys.BORDER_DISTANCE in adata.obs:
        inside = adata.obs[_keys.BORDER_DISTANCE].to_numpy(dtype=float) < 0
        tnk, mal = tnk & inside, mal & inside
        where = INSIDE
    if ifng.isna().all():
        return pd.Series(np.nan, index=pd.Index(groups.dropna().unique())), ""
    n_ifng = (ifng.astype(bool) & tnk).groupby(groups, observed=True).sum()
    n_mal = mal.groupby(groups, observed=True).sum()
    return (100 * n_ifng / n_mal.where(n_mal >= MIN_DENOMINATOR)).astype(float), where


def _ifng_response_auc(adata: AnnData, groups: pd.Series, malignant: pd.Series, baseline: pd.Series,
                       min_cells: int) -> pd.Series:
    """Per group, the probability that one of its malignant cells has a higher IFN-gamma response than a malignant
    cell of the ``baseline`` groups (Mann-Whitney AUC; the group itself left out of the baseline)."""
    from scipy.stats import mannwhitneyu

    S = adata.obsm.get(_keys.SCORES)
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


def _spatial_phenotype(adata: AnnData, region_key: str | None = None) -> pd.Series:
    """The spatial immune phenotype per sample, or per region when it was called with the same ``region_key``."""
    ph = adata.uns.get(_keys.IMMUNE_PHENOTYPE)
    if not isinstance(ph, dict) or (region_key is not None and ph.get("params", {}).get("region_key") != region_key):
        return pd.Series(dtype=object)
    tab = ph.get("regions" if region_key is not None else "table")
    if not isinstance(tab, pd.DataFrame) or "basis" not in tab:
        return pd.Series(dtype=object)
    return tab["phenotype"].astype(str).where(tab["basis"].astype(str).str.startswith("spatial"))


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

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

import tmetoolkit as tmt
from tmetoolkit._core.sample.suppression import COMPONENTS

from .conftest import shared_file


@pytest.fixture(scope="module")
def cohort():
    a = tmt.datasets.simulate(n_samples=12, n_cells=1500, seed=31)
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    tmt.tl.immunosuppression(a)
    return a


# component -> planted abundance it must follow across samples, and the least Spearman correlation
PLANTED = [
    ("treg_fraction_cd4", "treg_fraction", 0.6),
    ("m2_m1_balance", "m2_fraction", 0.7),
    ("mycaf_fraction_caf", "mycaf_fraction", 0.8),
]


@pytest.mark.parametrize(("component", "planted", "min_rho"), PLANTED)
def test_components_follow_planted_abundance(cohort, component, planted, min_rho):
    t = cohort.uns["tmt_immunosuppression"]["table"]
    p = cohort.uns["tmt_simulation"]["samples"].set_index("sample")
    assert spearmanr(t[component], p.loc[t.index, planted])[0] >= min_rho


def test_mdsc_fraction_follows_planted_abundance():
    """MDSC-like cells are a population apart from the sample's monocytes or neutrophils (annotate), which a
    sample must hold enough cells to show: at 6,000 cells a sample (about 260 monocytes/macrophages) the MDSC-like
    fraction ranks the planted share at rho 0.87 (seed 31; 0.89 for seed 11). At 3,000 the monocytes of several
    samples form one population by BIC or Ashman's D though a fifth to a third of them are planted M-MDSC-like:
    rho 0.50, 0.55, 0.80, 0.84, 0.88 and 0.90 for seeds 31, 11, 5, 3, 7 and 13 (0.67, 0.93, 0.83, 0.96, 0.96 and
    0.85 before the simulator held the genes of cell types it does not plant, KRT5 among them, silent)."""
    a = tmt.datasets.simulate(n_samples=12, n_cells=6000, seed=31)
    tmt.tl.annotate(a)
    tmt.tl.immunosuppression(a)
    t = a.uns["tmt_immunosuppression"]["table"]
    p = a.uns["tmt_simulation"]["samples"].set_index("sample")
    assert spearmanr(t["mdsc_fraction_myeloid"], p.loc[t.index, "mdsc_fraction"])[0] >= 0.7
    a.obs["region"] = a.obs["sample"].astype(str)  # the same tumours as regions of one slide
    a.obs["sample"] = "slide"
    tmt.tl.immunosuppression(a, region_key="region")
    r = a.uns["tmt_immunosuppression"]["regions"]
    assert spearmanr(r["mdsc_fraction_myeloid"], p.loc[r["region"], "mdsc_fraction"])[0] >= 0.6


def test_composite_follows_the_planted_suppressive_cells(cohort):
    """The composite ranks samples by their planted Treg, MDSC-like, M2-like and myCAF shares (mean rank). Components
    that barely vary across the cohort (hypoxia, glycolysis: no pathway planted) must not add their noise. Other
    components follow what these shares do not hold: the checkpoint ligands and IDO1 that IFN-gamma raises in
    inflamed samples. With twelve samples the correlation varies from cohort to cohort: 0.70 here, 0.34-0.80
    (mean 0.62) for seeds 1-6 (0.33-0.86, mean 0.61, when the simulator planted IFN-gamma on IFNG_6's genes)."""
    t = cohort.uns["tmt_immunosuppression"]["table"]
    p = cohort.uns["tmt_simulation"]["samples"].set_index("sample")
    planted = p[["treg_fraction", "mdsc_fraction", "m2_fraction", "mycaf_fraction"]].rank().mean(axis=1)
    assert spearmanr(t["composite"], planted.loc[t.index])[0] >= 0.6


def test_table_composite_and_cells(cohort):
    t = cohort.uns["tmt_immunosuppression"]["table"]
    assert set(COMPONENTS) <= set(t.columns)
    # a desert sample may hold fewer CD8 T cells or Tregs than a fraction rests on (MIN_DENOMINATOR): one component
    # is then missing, never the composite
    assert t["composite"].notna().all() and (t["n_components"] >= len(COMPONENTS) - 1).all()
    assert (t["n_components"] == len(COMPONENTS)).mean() >= 0.5
    s = cohort.obs["tmt_suppression_score"]
    lin = cohort.obs["tmt_lineage"].astype(str)
    assert s[lin == "Fibroblast"].notna().all() and s[lin == "Malignant/Epithelial"].isna().all()
    row = tmt.get.sample_table(cohort).loc["S01"]
    assert "immunosuppression:composite" in row.index


def test_missing_components_are_missing_not_zero(sim_small):
    drop = {"FOXP3", "CTLA4", "IL10", "TNFRSF18", "CCR8", "IKZF4", "IKZF2"}
    a = sim_small[:, [g for g in sim_small.var_names if g not in drop]].copy()
    with pytest.warns(tmt.TmtWarning):
        tmt.tl.annotate(a)
    with pytest.warns(tmt.TmtWarning, match="checkpoint_coexpression"):
        tmt.tl.immunosuppression(a)  # checkpoints not run either
    t = a.uns["tmt_immunosuppression"]["table"]
    assert t["treg_fraction_cd4"].isna().all() and t["checkpoint_coexpression"].isna().all()
    assert t["missing_components"].str.contains("treg_fraction_cd4").all()
    assert np.isfinite(t["mycaf_fraction_caf"]).all()


def test_mdsc_fraction_is_missing_where_too_few_cells_to_tell():
    """A sample whose monocytes and neutrophils were too few for annotate to tell MDSC-like cells apart has no
    MDSC-like fraction (NaN, and the resistance row not assessable), not a measured 0%; a sample whose monocytes
    were enough and formed one population keeps its 0."""
    a = tmt.datasets.simulate(n_samples=3, n_cells=400, seed=7)
    tmt.tl.annotate(a)
    tmt.tl.immunosuppression(a)
    tmt.tl.resistance_profile(a)
    splits = a.uns["tmt_annotate"]["splits"]
    mdsc = splits[splits["state"].str.contains("MDSC")]
    untold = mdsc.groupby("sample")["too_few"].all()
    assert untold.any() and not untold.all()  # the data hold both kinds of sample
    t = a.uns["tmt_immunosuppression"]["table"]
    assert t.loc[untold.index[untold], "mdsc_fraction_myeloid"].isna().all()
    assert t.loc[untold.index[~untold], "mdsc_fraction_myeloid"].notna().all()
    long = a.uns["tmt_resistance_profile"]["long"]
    rows = long[(long["id"] == "mdsc") & long["sample"].isin(untold.index[untold])]
    assert rows["flagged"].isna().all() and rows["status"].str.startswith("not assessable").all()


def test_needs_annotation(sim_small):
    with pytest.raises(KeyError, match="annotate"):
        tmt.tl.immunosuppression(sim_small)


@pytest.fixture(scope="module")
def pseudobulk(cohort):
    """The cohort summed per sample: twelve observations, each a sample, with no annotation."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    agg = sc.get.aggregate(cohort, by="sample", func="sum")
    bulk = ad.AnnData(agg.layers["sum"], obs=pd.DataFrame(index=agg.obs_names.astype(str)), var=cohort.var[[]])
    bulk.obs["response"] = cohort.obs.groupby("sample", observed=True)["response"].first().reindex(
        bulk.obs_names).astype(str)
    return bulk


@pytest.mark.parametrize(("component", "states", "min_rho"), [
    ("treg_programme", ["Treg"], 0.6),
    pytest.param("mdsc_programme", ["M-MDSC-like", "PMN-MDSC-like"], 0.55, marks=pytest.mark.xfail(
        strict=True, reason="measured rho 0.40 (0.31 before simulate() planted its resistance mechanisms from "
        "their own sources); not reachable on this cohort: the planted MDSC-like share of all cells spans only "
        "1.1-3.9% (10 of 12 samples within 2.9-3.9%, where sampling noise orders them). "
        "Per cell, HLA class II low decides M-MDSC-like; a pseudobulk's class II counts every antigen-presenting "
        "cell, so bulk cannot use it")),
    ("mycaf_programme", ["myCAF"], 0.7),
    ("checkpoint_receptors", ["CD8 Tex"], 0.8),
])
def test_bulk_components_follow_planted_abundance(cohort, pseudobulk, component, states, min_rho):
    """Bulk samples have no cells to count: each component is a whole-sample programme, and it still follows the
    planted share of the suppressive cells among all cells (measured rho: Treg 0.92, myCAF 0.90, co-inhibitory
    receptors 0.87)."""
    bulk = pseudobulk.copy()
    tmt.tl.immunosuppression(bulk, bulk=True)
    t = bulk.uns["tmt_immunosuppression"]["table"]
    st, s = cohort.obs["true_state"].astype(str), cohort.obs["sample"].astype(str)
    share = st.isin(states).groupby(s).mean().reindex(t.index)
    assert spearmanr(t[component], share)[0] >= min_rho
    assert bulk.uns["tmt_immunosuppression"]["params"]["bulk"]
    assert "tmt_suppression_score" not in bulk.obs


def test_bulk_needs_the_flag_and_no_sample_key(pseudobulk):
    bulk = pseudobulk.copy()
    with pytest.raises(KeyError, match="bulk=True"):
        tmt.tl.immunosuppression(bulk)
    with pytest.raises(ValueError, match="sample_key"):
        tmt.tl.immunosuppression(bulk, bulk=True, sample_key="response")


def test_bulk_on_single_cells_is_warned_about(sim_small, pseudobulk):
    """bulk=True on 4,500 cells made a 4,500-row 'cohort' in silence; pseudobulk samples are not warned about."""
    with pytest.warns(tmt.TmtWarning, match="as in single cells"):
        tmt.tl.immunosuppression(sim_small.copy(), bulk=True)
    with pytest.warns(tmt.TmtWarning, match="as in single cells"):
        tmt.tl.resistance_profile(sim_small.copy(), bulk=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tmt.TmtWarning)
        tmt.tl.immunosuppression(pseudobulk.copy(), bulk=True)


def test_bulk_sample_table_and_comparison_are_per_observation(pseudobulk):
    bulk = pseudobulk.copy()
    tmt.tl.immunosuppression(bulk, bulk=True)
    tmt.tl.resistance_profile(bulk, bulk=True)
    tab = tmt.get.sample_table(bulk)
    assert set(tab.index) == set(bulk.obs_names)
    assert "n_cells" not in tab and "immunosuppression:treg_programme" in tab  # observations are samples
    tmt.tl.compare_groups(bulk, sample_key=None, group_key="response")
    res = bulk.uns["tmt_compare_groups"]["table"]
    assert {"n_R", "n_NR"} <= set(res.columns) and (res["n_R"] + res["n_NR"]).max() == bulk.n_obs
    single = pseudobulk.copy()
    tmt.tl.score(single, ["T_cell"])  # no bulk tool ran: per-sample results are not per observation
    with pytest.raises(ValueError, match="bulk"):
        tmt.tl.compare_groups(single, sample_key=None, group_key="response")


@pytest.fixture(scope="module")
def one_slide(cohort):
    """The 12 simulated tumours as regions of one slide: each region's truth is its tumour's planted abundance."""
    a = cohort.copy()
    a.obs["region"] = a.obs["sample"].astype(str)
    a.obs["sample"] = "slide"
    tmt.tl.immunosuppression(a, region_key="region")
    return a


@pytest.mark.parametrize(("component", "planted", "min_rho"), PLANTED)
def test_region_components_follow_planted_abundance(one_slide, component, planted, min_rho):
    r = one_slide.uns["tmt_immunosuppression"]["regions"]
    p = one_slide.uns["tmt_simulation"]["samples"].set_index("sample")
    assert (r["sample"] == "slide").all() and r.index.str.startswith("slide:").all()
    assert spearmanr(r[component], p.loc[r["region"], planted])[0] >= min_rho


def test_regions_reproduce_the_samples_they_cover(cohort, one_slide):
    """Regions equal to the samples give the samples' components; the composite is taken across regions."""
    r = one_slide.uns["tmt_immunosuppression"]["regions"].set_index("region")
    t = cohort.uns["tmt_immunosuppression"]["table"]
    np.testing.assert_allclose(r.loc[t.index, list(COMPONENTS)].to_numpy(float), t[list(COMPONENTS)].to_numpy(float))
    np.testing.assert_allclose(r.loc[t.index, "composite"], t["composite"])
    assert (r["n_cells"] == cohort.obs["sample"].value_counts().reindex(r.index)).all()
    assert one_slide.uns["tmt_immunosuppression"]["params"]["region_key"] == "region"


def test_small_regions_and_small_denominators_are_missing(cohort):
    a = cohort[cohort.obs["sample"].isin(["S01", "S02"])].copy()
    lin = a.obs["tmt_lineage"].astype(str)
    cd4 = np.flatnonzero((lin == "CD4 T").to_numpy() & (a.obs["sample"] == "S01").to_numpy())
    a.obs["region"] = "rest"
    a.obs.iloc[cd4[:3], a.obs.columns.get_loc("region")] = "three CD4 T cells"
    tmt.tl.immunosuppression(a, region_key="region", min_cells=2)
    r = a.uns["tmt_immunosuppression"]["regions"]
    few = r.loc["S01:three CD4 T cells"]
    assert few["n_cells"] == 3 and np.isnan(few["treg_fraction_cd4"])
    assert "treg_fraction_cd4" in few["missing_components"]
    tmt.tl.immunosuppression(a, region_key="region")  # min_cells=50
    r = a.uns["tmt_immunosuppression"]["regions"]
    assert r.loc["S01:three CD4 T cells", "reason"] == "fewer than 50 cells"
    assert r.loc["S01:three CD4 T cells", "n_components"] == 0 and r.loc["S01:rest", "n_components"] > 0


def test_region_key_errors(cohort):
    with pytest.raises(KeyError, match="'sample'"):
        tmt.tl.immunosuppression(cohort.copy(), region_key="sampel")
    with pytest.raises(ValueError, match="min_cells"):
        tmt.tl.immunosuppression(cohort.copy(), region_key="sample", min_cells=0)


def test_bulk_takes_no_region_key(pseudobulk):
    with pytest.raises(ValueError, match="region_key"):
        tmt.tl.immunosuppression(pseudobulk.copy(), bulk=True, region_key="response")


def test_bulk_components_are_the_same_from_tpm_and_from_log2_tpm(pseudobulk):
    X = pseudobulk.X.toarray() if hasattr(pseudobulk.X, "toarray") else np.asarray(pseudobulk.X)
    tpm = X / X.sum(axis=1, keepdims=True) * 1e6
    tables = []
    for values in (tpm, np.log2(tpm + 1)):
        b = pseudobulk.copy()
        b.X = values
        tmt.tl.immunosuppression(b, bulk=True)
        tables.append(b.uns["tmt_immunosuppression"]["table"].select_dtypes("number"))
    pd.testing.assert_frame_equal(tables[0], tables[1], atol=1e-6)


def test_cells_of_several_samples_read_as_one_are_warned_about():
    """Without sample_key (and without obs['sample']) the per-sample tools read all cells as one sample: on
    Zilionis' seven patients they name the column that may hold the samples."""
    z = shared_file("zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad")
    tmt.tl.annotate(z, sample_key="Patient")
    for tool in (tmt.tl.immunosuppression, tmt.tl.resistance_profile):
        with pytest.warns(tmt.TmtWarning, match=r"reads all cells as one sample; adata.obs holds 'Patient' \(7 v"):
            tool(z)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tool(z, sample_key="Patient")
        assert not any("as one sample" in str(w.message) for w in caught)



def test_bulk_tables_list_samples_in_natural_order(cohort):
    """Bulk samples stored as P1, P10, P11, P12, P2, ... (a file's string order) are listed P1, P2, ..., P10, as the
    phenotype table and the report's summaries list them."""
    import anndata as ad
    import scipy.sparse as sp

    samples = cohort.obs["sample"].astype(str)
    names = sorted(samples.unique())
    X = np.vstack([np.asarray(cohort.X[(samples == s).to_numpy()].sum(axis=0)).ravel() for s in names])
    ids = [f"P{i + 1}" for i in range(len(names))]
    bulk = ad.AnnData(sp.csr_matrix(X), obs=pd.DataFrame(index=ids), var=cohort.var[[]].copy())
    bulk = bulk[sorted(ids)].copy()  # the string order: P1, P10, P11, P12, P2, ...
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.immunosuppression(bulk, bulk=True)
        tmt.tl.resistance_profile(bulk, bulk=True)
    assert list(bulk.uns["tmt_immunosuppression"]["table"].index) == ids
    assert list(bulk.uns["tmt_resistance_profile"]["table"].index) == ids

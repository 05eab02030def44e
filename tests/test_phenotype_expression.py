import anndata as ad
import pytest
from scipy.stats import spearmanr

import tmetoolkit as tmt

from .conftest import real_data


@pytest.fixture(scope="module")
def dissociated():
    """Twelve simulated samples without coordinates, as from dissociated scRNA-seq."""
    a = tmt.datasets.simulate(n_samples=12, n_cells=1200, seed=21)
    del a.obsm["spatial"]
    tmt.tl.annotate(a)
    return a


def test_inflamed_and_desert_are_separated(dissociated):
    truth = dissociated.uns["tmt_simulation"]["samples"].set_index("sample")["phenotype"]
    for reference in ("cohort", "absolute"):
        tmt.tl.immune_phenotype(dissociated, sample_key="sample", reference=reference)
        t = dissociated.uns["tmt_immune_phenotype"]["table"]
        call = t["phenotype"].astype(str)
        pairs = truth.isin(["inflamed", "desert"])
        # inflamed samples are called inflamed, desert samples never are
        assert (call[truth == "inflamed"] == "inflamed").mean() >= 0.9, reference
        assert (call[truth == "desert"] != "inflamed").all(), reference
        assert ((call == "inflamed") == (truth == "inflamed"))[pairs].mean() >= 0.9
        assert (t["basis"] == "expression").all() and t["caveat"].str.contains("inferred").all()
        assert (t.loc[call == "excluded", "confidence"] <= 0.5).all()


def test_table_and_obs(dissociated):
    tmt.tl.immune_phenotype(dissociated, sample_key="sample")
    t = dissociated.uns["tmt_immune_phenotype"]["table"]
    for col in ("immune_axis", "stromal_axis", "CD8_T_effector", "Pan_F_TBRS", "cd8_fraction_immune",
                "tex_fraction_cd8"):
        assert col in t.columns
    assert dissociated.obs["tmt_immune_phenotype"].notna().all()
    row = tmt.get.sample_table(dissociated).loc["S01"]
    assert row["immune_phenotype:phenotype"] == t.loc["S01", "phenotype"]


def test_one_sample_needs_absolute(dissociated):
    one = dissociated[dissociated.obs["sample"] == "S01"].copy()
    with pytest.raises(ValueError, match="absolute"):
        tmt.tl.immune_phenotype(one, sample_key="sample")
    tmt.tl.immune_phenotype(one, sample_key="sample", reference="absolute")
    assert one.uns["tmt_immune_phenotype"]["table"].loc["S01", "phenotype"] == "inflamed"


def test_bulk_samples():
    """Racle 2017 bulk: T-cell score orders samples as FACS T cells; a call per sample with a caveat."""
    r = real_data("racle")
    tmt.tl.score(r, ["T_cell", "CD8_T"])
    facs_t = r.obs["facs_CD4_Tcells"] + r.obs["facs_CD8_Tcells"]
    assert spearmanr(r.obsm["tmt_scores"]["T_cell"], facs_t)[0] == pytest.approx(1.0)
    tmt.tl.immune_phenotype(r)  # no sample_key: each observation is a sample
    t = r.uns["tmt_immune_phenotype"]["table"]
    assert len(t) == 4 and t.loc["LAU125", "phenotype"] != "inflamed"  # 0.4% T cells by FACS
    with pytest.raises(ValueError, match="annotated single cells"):
        tmt.tl.immune_phenotype(r, reference="absolute")


@pytest.mark.parametrize("tool", ["immune_phenotype", "immunosuppression", "resistance_profile", "compare_groups"])
def test_bulk_samples_need_unique_names(sim_small, tool):
    """In bulk or pseudobulk data the observations are the samples: repeated names are refused, not merged."""
    import scanpy as sc

    bulk = sc.get.aggregate(sim_small, by="sample", func="sum")
    bulk = ad.AnnData(bulk.layers["sum"], obs=bulk.obs, var=bulk.var)
    bulk.obs_names = ["P1", "P1", "P2"]
    bulk.obs["group"] = ["a", "a", "b"]
    calls = {"immune_phenotype": lambda: tmt.tl.immune_phenotype(bulk),
             "immunosuppression": lambda: tmt.tl.immunosuppression(bulk, bulk=True),
             "resistance_profile": lambda: tmt.tl.resistance_profile(bulk, bulk=True),
             "compare_groups": lambda: tmt.tl.compare_groups(bulk, sample_key=None, group_key="group")}
    with pytest.raises(ValueError, match=r"must be unique; repeated: \['P1'\]"):
        calls[tool]()


def test_bad_keys(dissociated):
    with pytest.raises(KeyError, match="sample"):
        tmt.tl.immune_phenotype(dissociated, sample_key="smaple")
    with pytest.raises(ValueError, match="reference"):
        tmt.tl.immune_phenotype(dissociated, sample_key="sample", reference="relative")


def test_bulk_with_too_few_signature_genes():
    r = real_data("racle")
    keep = [g for g in r.var_names if g not in {"CD8A", "GZMA", "GZMB", "IFNG", "CXCL9", "CXCL10", "PRF1", "TBX21",
                                                  "STAT1", "IDO1", "HLA-DRA", "CD8B"}]
    few = r[:, keep[:2000]].copy()
    with pytest.raises(ValueError, match="minimum genes|immune programmes"):
        tmt.tl.immune_phenotype(few)


def test_user_labels_and_effector_labels_are_used(sim_small):
    """With the user's own cell types, the effector labels count as CD8 T cells (they used to be ignored, so
    every sample was called desert with absolute thresholds); a typo is an error naming the labels present."""
    a = sim_small.copy()
    del a.obsm["spatial"]
    a.obs["ct"] = a.obs["true_lineage"].astype(str).replace({"CD8 T": "CD8+ T cell"})
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="ct", effector_labels=["CD8+ T cell"],
                            reference="absolute")
    tab = a.uns["tmt_immune_phenotype"]["table"]
    planted = a.obs.groupby("sample", observed=True)["true_phenotype"].first().astype(str)
    assert tab.loc[planted == "inflamed", "cd8_fraction_immune"].min() > 0.1
    assert (tab["phenotype"].astype(str)[planted == "desert"] == "desert").all()
    assert (tab["phenotype"].astype(str)[planted == "inflamed"] == "inflamed").all()
    with pytest.raises(KeyError, match="CD8\\+ T cell"):
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="ct", effector_labels=["CD8 T cells"])


def test_one_effector_label_may_be_a_string(sim_small):
    a = sim_small.copy()
    del a.obsm["spatial"]
    a.obs["ct"] = a.obs["true_lineage"].astype(str).replace({"CD8 T": "CD8+ T cell"})
    b = a.copy()
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="ct", effector_labels="CD8+ T cell")
    tmt.tl.immune_phenotype(b, sample_key="sample", cell_type_key="ct", effector_labels=["CD8+ T cell"])
    assert a.uns["tmt_immune_phenotype"]["table"].equals(b.uns["tmt_immune_phenotype"]["table"])
    assert a.uns["tmt_immune_phenotype"]["table"]["cd8_fraction_all"].max() > 0

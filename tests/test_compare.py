import anndata as ad
import pandas as pd
import pytest

import tmetoolkit as tmt


@pytest.fixture(scope="module")
def cohort():
    a = tmt.datasets.simulate(n_samples=12, n_cells=800, seed=5)
    tmt.tl.annotate(a)
    tmt.tl.immune_phenotype(a, sample_key="sample")
    return a


def test_planted_difference_is_found(cohort, tmp_path):
    a = cohort[cohort.obs["true_phenotype"].isin(["inflamed", "desert"])].copy()
    tmt.tl.compare_groups(a, sample_key="sample", group_key="true_phenotype", groups=("inflamed", "desert"))
    t = a.uns["tmt_compare_groups"]["table"].set_index("feature")
    row = t.loc["frac_lineage:CD8 T"]
    assert row["pvalue"] < 0.05 and row["cliffs_delta"] == 1.0 and row["median_difference"] > 0
    assert (t["fdr"] >= t["pvalue"]).all()
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    ax = tmt.pl.compare_groups(a)
    assert isinstance(ax, Axes) and len(ax.collections) == 1
    assert len(ax.collections[0].get_offsets()) == len(t)  # one point per compared feature
    from .test_pl import _compare

    _compare(ax.figure, "compare_groups", tmp_path)
    plt.close(ax.figure)


def test_samples_not_cells_are_the_unit(cohort):
    """Ten copies of every cell change no p-value: significance comes from samples."""
    tmt.tl.compare_groups(cohort, sample_key="sample", group_key="response")
    before = cohort.uns["tmt_compare_groups"]["table"].set_index("feature")["pvalue"]
    big = ad.concat([cohort] * 10, index_unique="-", uns_merge="first")
    big.obsm["tmt_scores"] = pd.concat([cohort.obsm["tmt_scores"]] * 10).set_axis(big.obs_names)
    tmt.tl.compare_groups(big, sample_key="sample", group_key="response")
    after = big.uns["tmt_compare_groups"]["table"].set_index("feature")["pvalue"]
    common = before.index.intersection(after.index)
    assert len(common) > 50
    pd.testing.assert_series_equal(before[common], after[common])


def test_bad_groups(cohort):
    a = cohort.copy()
    a.obs["one"] = "x"
    with pytest.raises(ValueError, match="only one group"):
        tmt.tl.compare_groups(a, sample_key="sample", group_key="one")
    with pytest.raises(KeyError, match="response"):
        tmt.tl.compare_groups(a, sample_key="sample", group_key="responder")
    a.obs["cellwise"] = ["a", "b"] * (a.n_obs // 2)
    with pytest.raises(ValueError, match="one value per sample"):
        tmt.tl.compare_groups(a, sample_key="sample", group_key="cellwise")
    with pytest.raises(KeyError, match="nope"):
        tmt.tl.compare_groups(a, sample_key="sample", group_key="response", groups=("R", "nope"))


def test_boolean_groups(cohort):
    """A boolean group column: groups=(True, False) names the groups as the column holds them."""
    a = cohort.copy()
    a.obs["responder"] = a.obs["response"].astype(str) == "R"
    tmt.tl.compare_groups(a, sample_key="sample", group_key="responder", groups=(True, False))
    res = a.uns["tmt_compare_groups"]["table"]
    assert {"n_True", "n_False"} <= set(res.columns)
    tmt.tl.compare_groups(a, sample_key="sample", group_key="response", groups=("R", "NR"))
    ref = a.uns["tmt_compare_groups"]["table"].set_index("feature")["pvalue"]
    pd.testing.assert_series_equal(res.set_index("feature")["pvalue"], ref)


def test_region_table_joins_every_per_region_result():
    """One row per region of an obs column: composition from the cells, then phenotype, immunosuppression and
    resistance flags of that region; the spatial phenotype's tiles without a region_key."""
    import numpy as np

    a = tmt.datasets.simulate(n_samples=2, n_cells=1200, seed=2)
    tmt.tl.annotate(a)
    with pytest.raises(KeyError, match="region_key"):
        tmt.get.region_table(a)
    tmt.tl.immune_phenotype(a, sample_key="sample")
    tiles = tmt.get.region_table(a)
    assert tiles.index.str.contains(":tile_").all() and "immune_phenotype:phenotype" in tiles
    for tool in (tmt.tl.immune_phenotype, tmt.tl.immunosuppression, tmt.tl.resistance_profile):
        tool(a, sample_key="sample", region_key="true_compartment")
    t = tmt.get.region_table(a)
    assert len(t) == 6 and t.loc["S02:tumor", "sample"] == "S02" and t.loc["S02:tumor", "region"] == "tumor"
    cells = a.obs[(a.obs["sample"] == "S02") & (a.obs["true_compartment"] == "tumor")]
    assert t.loc["S02:tumor", "n_cells"] == len(cells)
    frac = (cells["tmt_lineage"] == "Malignant/Epithelial").mean()
    assert np.isclose(t.loc["S02:tumor", "frac_lineage:Malignant/Epithelial"], frac)
    for col in ("immune_phenotype:phenotype", "immunosuppression:composite", "resistance_profile:b2m_hla_mutations"):
        assert col in t.columns
    assert t["immune_phenotype:phenotype"].notna().all()


def test_cells_without_a_region_count_for_their_sample_only():
    """Annotated regions rarely cover a whole section: cells without a region are left out of the region tables
    (no region named "nan") and still count for their sample."""
    import numpy as np

    a = tmt.datasets.simulate(n_samples=3, n_cells=1200, seed=2)
    tmt.tl.annotate(a)
    a.obs["area"] = a.obs["true_compartment"].astype(object)
    unannotated = a.obsm["spatial"][:, 1] < np.quantile(a.obsm["spatial"][:, 1], 0.2)
    a.obs.loc[unannotated, "area"] = None
    tools = (tmt.tl.immune_phenotype, tmt.tl.immunosuppression, tmt.tl.resistance_profile)
    whole = a.copy()
    for tool in tools:
        tool(whole, sample_key="sample")
        tool(a, sample_key="sample", region_key="area")
    t = tmt.get.region_table(a)
    assert not t.index.str.endswith(":nan").any() and len(t) == 9
    assert t["n_cells"].sum() == (~unannotated).sum()
    for key in ("tmt_immune_phenotype", "tmt_immunosuppression", "tmt_resistance_profile"):
        assert not a.uns[key]["regions"].index.str.endswith(":nan").any()
        pd.testing.assert_frame_equal(a.uns[key]["table"], whole.uns[key]["table"])


def test_regions_compare_each_region_across_samples():
    """Inflamed and excluded tumours differ most in the tumour region and not in the stroma. With regions=True the
    comparison sees that, still with one value per sample."""
    a = tmt.datasets.simulate(n_samples=12, n_cells=1000, seed=31)
    tmt.tl.annotate(a)
    tmt.tl.immune_phenotype(a, sample_key="sample")
    with pytest.raises(ValueError, match="region_key"):  # tiles are not shared across samples
        tmt.tl.compare_groups(a, sample_key="sample", group_key="true_phenotype", groups=("inflamed", "excluded"),
                              regions=True)
    tmt.tl.immune_phenotype(a, sample_key="sample", region_key="true_compartment")
    tmt.tl.compare_groups(a, sample_key="sample", group_key="true_phenotype", groups=("inflamed", "excluded"),
                          regions=True)
    t = a.uns["tmt_compare_groups"]["table"].set_index("feature")
    assert (t[["n_inflamed", "n_excluded"]] <= 4).all().all()  # samples, not cells or regions
    assert t.loc["tumor|frac_lineage:CD8 T", "cliffs_delta"] == 1.0
    assert t.loc["tumor|frac_lineage:CD8 T", "pvalue"] < 0.05
    assert t.loc["stroma|frac_lineage:CD8 T", "pvalue"] > 0.1


@pytest.mark.parametrize("tool", ["checkpoints", "immune_phenotype", "expression_phenotype", "immunosuppression",
                                  "resistance_profile", "compare_groups", "compartments"])
def test_cells_without_a_sample_are_refused(sim_small, tool):
    """A missing sample label would otherwise become a sample named "nan"; every per-sample tool says so."""
    tmt.tl.annotate(sim_small)
    sim_small.obs["patient"] = sim_small.obs["sample"].astype(object)
    sim_small.obs.loc[sim_small.obs_names[:10], "patient"] = None
    calls = {
        "expression_phenotype": lambda a: tmt.tl.immune_phenotype(a, sample_key="patient", basis="expression"),
        "compare_groups": lambda a: tmt.tl.compare_groups(a, sample_key="patient", group_key="response"),
    }
    call = calls.get(tool, lambda a: getattr(tmt.tl, tool)(a, sample_key="patient"))
    with pytest.raises(ValueError, match=r"10 cells have no value in adata.obs\['patient'\]"):
        call(sim_small)


def test_samples_without_a_group_are_left_out(cohort):
    """Patients whose response is unknown (NaN) are left out with a warning, not compared as a group "nan"."""
    a = cohort.copy()
    a.obs["response"] = a.obs["response"].astype(object)
    first = a.obs["sample"].cat.categories[0]
    a.obs.loc[a.obs["sample"] == first, "response"] = None
    n = a.obs.groupby("sample", observed=True)["response"].first().value_counts()
    expected = f"1 sample\\(s\\) without a value in obs\\['response'\\] left out: {first}"
    with pytest.warns(tmt.TmtWarning, match=expected):
        tmt.tl.compare_groups(a, sample_key="sample", group_key="response")
    t = a.uns["tmt_compare_groups"]["table"]
    assert t["n_NR"].max() == n["NR"] and t["n_R"].max() == n["R"]


def test_repeated_obs_names_give_the_same_results():
    """Samples concatenated without unique cell names (obs_names repeat per sample): every tool and table gives
    what it gives with unique names."""
    import numpy as np

    ref = tmt.datasets.simulate(n_samples=3, n_cells=800, seed=4)
    dup = ref.copy()
    dup.obs_names = [f"cell{i % 800}" for i in range(dup.n_obs)]
    for a in (ref, dup):
        tmt.tl.annotate(a)
        tmt.tl.checkpoints(a)
        for tool in (tmt.tl.immune_phenotype, tmt.tl.immunosuppression, tmt.tl.resistance_profile):
            tool(a, sample_key="sample", region_key="true_compartment")
    for key in ("tmt_lineage", "tmt_state", "tmt_checkpoint_pattern", "tmt_compartment", "tmt_suppression_score"):
        assert (dup.obs[key].astype(str).to_numpy() == ref.obs[key].astype(str).to_numpy()).all(), key
    for key in ("tmt_checkpoints", "tmt_immune_phenotype", "tmt_immunosuppression", "tmt_resistance_profile"):
        pd.testing.assert_frame_equal(dup.uns[key]["table"], ref.uns[key]["table"])
    pd.testing.assert_frame_equal(tmt.get.sample_table(dup), tmt.get.sample_table(ref))
    pd.testing.assert_frame_equal(tmt.get.region_table(dup), tmt.get.region_table(ref))
    pd.testing.assert_frame_equal(tmt.get.markers(dup), tmt.get.markers(ref))
    assert np.isfinite(dup.obs["tmt_confidence"]).all()


def test_sample_table_names_tables_of_another_sample_key():
    """A tool run per another column would drop out of the table (and the report) in silence."""
    a = tmt.datasets.simulate(n_samples=3, n_cells=600, seed=7)
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    a.obs["patient"] = "P" + a.obs["sample"].astype(str)
    tmt.tl.immunosuppression(a, sample_key="patient")
    with pytest.warns(tmt.TmtWarning, match=r"tmt_immunosuppression \(per 'patient'\)"):
        table = tmt.get.sample_table(a, sample_key="sample")
    assert not table.columns.str.startswith("immunosuppression:").any()
    assert table.columns.str.startswith("checkpoints:").any()


def test_tables_list_numbered_samples_in_numeric_order(cohort):
    """Patient ids from an integer column ("2", "10") are strings in the tables; "10" must not come before "2"."""
    a = cohort.copy()
    number = {s: i * 5 if i % 2 else i for i, s in enumerate(a.obs["sample"].cat.categories, start=1)}
    a.obs["patient"] = a.obs["sample"].map(number).astype(int)
    a.obs["region"] = a.obs["patient"].map(lambda p: f"core{p % 3 * 5}")
    tmt.tl.checkpoints(a, sample_key="patient")
    tmt.tl.immune_phenotype(a, sample_key="patient")
    tmt.tl.immunosuppression(a, sample_key="patient", region_key="region")
    tmt.tl.resistance_profile(a, sample_key="patient")
    expected = [str(p) for p in sorted(number.values())]
    for key in ("tmt_checkpoints", "tmt_immune_phenotype", "tmt_immunosuppression", "tmt_resistance_profile"):
        assert a.uns[key]["table"].index.tolist() == expected, key
    assert tmt.get.sample_table(a, sample_key="patient").index.tolist() == expected
    regions = a.uns["tmt_immunosuppression"]["regions"].index.tolist()
    assert regions == sorted(regions, key=lambda r: (int(r.split(":")[0]), int(r.split("core")[1])))


def test_counts_of_cells_and_measures_are_not_compared(cohort):
    """Zilionis 2019 by patient and tissue: 'immune_phenotype:n_cells' came out at p = 0.045 (the downsample kept
    more tumour than blood cells) and 'immunosuppression:n_components' led the mouse volcano plot. Counts of
    captured cells or of measurable components say how a sample was sampled, not its biology; n_cells was already
    left out, its namesakes of the tools were not."""
    a = cohort.copy()
    tmt.tl.checkpoints(a)
    tmt.tl.immunosuppression(a)
    tmt.tl.compare_groups(a, sample_key="sample", group_key="response")
    features = set(a.uns["tmt_compare_groups"]["table"]["feature"])
    counts = {"checkpoints:n_cd8", "immunosuppression:n_components", "immune_phenotype:n_cells",
              "immune_phenotype:n_effector", "immune_phenotype:n_tumor_cells"}
    assert counts <= set(tmt.get.sample_table(a).columns)
    assert not features & counts
    assert {"checkpoints:cd8_frac_ge1_receptors", "immune_phenotype:effector_per_mm2"} <= features

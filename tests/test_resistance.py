import numpy as np
import pytest

import tmetoolkit as tmt


@pytest.fixture(scope="module")
def profiled():
    a = tmt.datasets.simulate(n_samples=6, n_cells=1500, seed=41)
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    a.obs["tmb"] = a.obs["sample"].map({"S01": 25.0, "S02": 3.0, "S03": 8.0, "S04": 12.0, "S05": 1.0, "S06": 40.0})
    tmt.tl.resistance_profile(a)
    return a


def test_every_mechanism_has_a_value_or_a_reason(profiled):
    long = profiled.uns["tmt_resistance_profile"]["long"]
    mech = tmt.tl.mechanisms()
    assert set(long["mechanism"]) == set(mech["mechanism"])
    assert len(long) == len(mech) * 6
    for row in long.itertuples():
        assert np.isfinite(row.value) or row.status.startswith(("needs external data", "not assessable")), row
    for col in ("cycle_steps", "category", "evidence_level", "strategies"):
        assert long[col].astype(str).str.len().gt(0).all()


def test_planted_antigen_presentation_loss_is_flagged(profiled):
    planted = profiled.uns["tmt_simulation"]["samples"].set_index("sample")["apm_loss"]
    table = profiled.uns["tmt_resistance_profile"]["table"]
    flagged = table["b2m_hla_mutations"].astype(bool)
    assert planted.any() and (~planted).any()
    assert (flagged == planted.loc[flagged.index]).all()


def test_programmes_that_barely_differ_are_not_flagged(profiled):
    """No pathway is planted in the simulated tumours: their programme rows differ by noise and stay unflagged. The
    planted abundances (MDSC-like, Treg, M2-like, myCAF) spread widely, and cohort-high samples are flagged."""
    from tmetoolkit._core.sample.resistance import ABUNDANCE

    long = profiled.uns["tmt_resistance_profile"]["long"]
    programmes = ["MAPK pathway activation", "PI3K/AKT/mTOR pathway activation",
                  "WNT/beta-catenin pathway activation", "Glycolysis/lactate production", "Hypoxia"]
    rows = long[long["mechanism"].isin(programmes)]
    assert rows["value"].notna().all() and not (rows["flagged"] == 1).any()
    assert (long.loc[long["mechanism"].isin(list(ABUNDANCE)), "flagged"] == 1).any()


def test_metadata_is_used_when_given(profiled):
    long = profiled.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    tmb = "Low tumor mutational burden (TMB)"
    assert long.loc[("S02", tmb), "status"] == "from sample metadata"
    assert long.loc[("S02", tmb), "flagged"] == 1.0 and long.loc[("S01", tmb), "flagged"] == 0.0
    assert long.loc[("S01", "Gut dysbiosis"), "status"].startswith("needs external data")


def test_metadata_as_users_write_it(profiled, tmp_path):
    """Dysbiosis as booleans or yes/no, a value that is no number, a column named in capitals: every one is read or
    named, and the result writes to h5ad (booleans among the values made the write fail)."""
    a = profiled.copy()
    a.obs["dysbiosis"] = a.obs["sample"].map({"S01": True, "S02": False, "S03": True, "S04": False, "S05": False,
                                              "S06": True}).astype(bool)
    a.obs["hla_heterozygosity"] = a.obs["sample"].map({"S01": "yes", "S02": "0.4", "S03": "unknown", "S04": "0.9",
                                                       "S05": "0.8", "S06": "1"})
    del a.obs["tmb"]
    a.obs["TMB"] = 5.0
    with pytest.warns(tmt.TmtWarning) as caught:
        tmt.tl.resistance_profile(a)
    text = " ".join(str(w.message) for w in caught)
    assert "'unknown'" in text and "obs['TMB'] is not read" in text
    long = a.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    dys = "Gut dysbiosis"
    assert long.loc[("S01", dys), "flagged"] == 1.0 and long.loc[("S02", dys), "flagged"] == 0.0
    hla = "HLA genotype (low heterozygosity)"
    assert long.loc[("S02", hla), "flagged"] == 1.0 and long.loc[("S06", hla), "flagged"] == 0.0
    assert long.loc[("S03", hla), "status"].startswith("needs external data")
    a.write_h5ad(tmp_path / "profiled.h5ad")


def test_one_sample_reports_values_without_cohort_flags(profiled):
    one = profiled[profiled.obs["sample"] == "S03"].copy()
    tmt.tl.resistance_profile(one)
    long = one.uns["tmt_resistance_profile"]["long"].set_index("mechanism")
    assert long.loc["B2M/HLA mutations", "flagged"] == 1.0  # within-sample comparison needs no cohort
    assert "three samples" in long.loc["Hypoxia", "status"]


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_ifng_unresponsiveness_is_flagged_where_t_cells_reach_the_tumour(seed):
    """Malignant cells of two inflamed tumours ignore IFN-gamma (as after JAK1/2 loss). With positions, exactly
    those two are flagged: the responding inflamed tumour is not, and excluded and desert tumours, whose T cells do
    not reach the malignant cells, are the baseline. Without positions it is not assessable."""
    a = tmt.datasets.simulate(n_samples=6, n_cells=1500, seed=seed, apm_loss=[False] * 6,
                              phenotypes=["inflamed", "inflamed", "excluded", "desert", "inflamed", "excluded"],
                              ifng_unresponsive=[False, True, False, False, True, False])
    tmt.tl.annotate(a)
    dissociated = a.copy()
    ifn = "IFN-gamma pathway defects (JAK1/2)"
    tmt.tl.immune_phenotype(a, sample_key="sample")
    called = a.uns["tmt_immune_phenotype"]["table"]["phenotype"].sort_index().astype(str).to_numpy()
    # every planted phenotype called as planted, or not assessable (a tumour too small to place 5 CD8 T cells in)
    planted = np.array(["inflamed", "inflamed", "excluded", "desert", "inflamed", "excluded"])
    assert ((called == planted) | (called == "not assessable") & (planted != "inflamed")).all(), called
    tmt.tl.resistance_profile(a, sample_key="sample")
    long = a.uns["tmt_resistance_profile"]["long"]
    rows = long[long["mechanism"] == ifn].set_index("sample").sort_index()
    flagged = rows["flagged"].to_numpy()
    # the simulation's T cells detect IFNG rarely (a few per 100 malignant cells): an unresponsive tumour where none
    # is found among the malignant cells is left unflagged and says so; the responder is never flagged
    assert flagged[0] == 0.0 and np.isnan(flagged[[2, 3, 5]]).all()
    for i in (1, 4):
        assert flagged[i] == 1.0 or (np.isnan(flagged[i]) and "no IFNG+" in rows["status"].iloc[i]), rows.iloc[i]
    assert np.nansum(flagged[[1, 4]]) >= 1
    tmt.tl.resistance_profile(dissociated, sample_key="sample")
    long = dissociated.uns["tmt_resistance_profile"]["long"]
    rows = long[long["mechanism"] == ifn].set_index("sample").sort_index()
    assert rows["flagged"].isna().all()
    assert rows["status"].str.startswith("not assessable: needs positions").all()


def test_ifng_row_needs_an_excluded_or_desert_baseline():
    """Two inflamed tumours and no other: nothing to compare their response with, so not assessable, not 0."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=1500, seed=3, phenotypes=["inflamed", "inflamed"],
                              apm_loss=[False, False])
    tmt.tl.annotate(a)
    tmt.tl.immune_phenotype(a, sample_key="sample")
    tmt.tl.resistance_profile(a, sample_key="sample")
    long = a.uns["tmt_resistance_profile"]["long"]
    rows = long[long["mechanism"] == "IFN-gamma pathway defects (JAK1/2)"]
    assert rows["flagged"].isna().all() and rows["value"].isna().all()
    assert rows["status"].str.startswith("not assessable: no excluded or desert tumour").all()


def test_needs_annotation(sim_small):
    with pytest.raises(KeyError, match="annotate"):
        tmt.tl.resistance_profile(sim_small)


def test_layer_is_used_for_every_measure(profiled):
    """With z-scored values in X and the counts in a layer, the profile equals the one computed on the counts."""
    import scanpy as sc

    scaled = profiled.copy()
    for key in ("tmt_immunosuppression", "tmt_resistance_profile"):
        scaled.uns.pop(key, None)
    scaled.layers["counts"] = scaled.X.copy()
    sc.pp.normalize_total(scaled)
    sc.pp.log1p(scaled)
    sc.pp.scale(scaled, max_value=10)
    tmt.tl.resistance_profile(scaled, layer="counts")
    ours = scaled.uns["tmt_resistance_profile"]["long"]
    ref = profiled.uns["tmt_resistance_profile"]["long"]
    assert ours["flagged"].equals(ref["flagged"])
    assert ours["status"].equals(ref["status"])  # IFNG found in the layer: the IFN-gamma row then asks for positions
    assert ref["status"].str.startswith("not assessable: needs positions").any()
    np.testing.assert_allclose(ours["value"], ref["value"], equal_nan=True)


def test_mouse_symbols_give_the_same_profile(profiled):
    """Mouse data (Ifng, Stat1, ...): IFNG in T/NK cells is found through the ortholog table, as for human."""
    import pandas as pd

    h2m = tmt.sig.to_mouse(list(profiled.var_names))
    one_to_one = pd.Series({g: h2m[g][0] for g in profiled.var_names if g in h2m and len(h2m[g]) == 1})
    one_to_one = one_to_one[~one_to_one.duplicated(keep=False)]
    mouse = profiled.copy()
    mouse.var_names = [one_to_one.get(g, g) for g in profiled.var_names]
    assert "Ifng" in mouse.var_names
    for key in ("tmt_immunosuppression", "tmt_resistance_profile"):
        mouse.uns.pop(key, None)
    del mouse.obsm["tmt_scores"]
    tmt.tl.resistance_profile(mouse)
    ours = mouse.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    ref = profiled.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    ifn = "IFN-gamma pathway defects (JAK1/2)"
    # IFNG is found (the status asks for positions, not for IFNG); the response programme itself loses the genes
    # without a one-to-one mouse ortholog, so its value may differ
    assert ours.xs(ifn, level="mechanism")["status"].equals(ref.xs(ifn, level="mechanism")["status"])


def test_bulk_profile_measures_what_bulk_can_see(profiled):
    """Bulk samples (the cohort summed per sample): every row is present; the two malignant-against-other
    contrasts are not assessable, tumour programmes and abundances are measured and flagged cohort-relatively."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    agg = sc.get.aggregate(profiled, by="sample", func="sum")
    bulk = ad.AnnData(agg.layers["sum"], obs=pd.DataFrame(index=agg.obs_names.astype(str)), var=profiled.var[[]])
    with pytest.raises(KeyError, match="bulk=True"):
        tmt.tl.resistance_profile(bulk)
    tmt.tl.resistance_profile(bulk, bulk=True)
    long = bulk.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    assert len(long) == len(tmt.tl.mechanisms()) * bulk.n_obs
    for mech in ("B2M/HLA mutations", "IFN-gamma pathway defects (JAK1/2)"):
        assert long.xs(mech, level="mechanism")["status"].str.startswith("not assessable in bulk").all()
    for mech in ("MAPK pathway activation", "Hypoxia", "Regulatory T cells (Tregs)",
                 "Cancer-associated fibroblasts (CAFs)"):
        rows = long.xs(mech, level="mechanism")
        assert np.isfinite(rows["value"]).all() and rows["flagged"].notna().all(), mech
        assert "bulk" in rows["measure"].iloc[0]


def test_profile_per_region(profiled):
    """The six tumours as regions of one slide: antigen-presentation loss is flagged in the planted regions, and the
    values are the samples' values; a region below min_cells is not assessable."""
    a = profiled.copy()
    a.obs["region"] = a.obs["sample"].astype(str)
    a.obs["sample"] = "slide"
    tmt.tl.resistance_profile(a, region_key="region")
    res = a.uns["tmt_resistance_profile"]
    assert list(res["table"].index) == ["slide"] and res["params"]["region_key"] == "region"
    planted = a.uns["tmt_simulation"]["samples"].set_index("sample")["apm_loss"]
    flags = res["regions"]["b2m_hla_mutations"].rename(lambda r: r.split(":", 1)[1]).astype(bool)
    assert (flags == planted.loc[flags.index]).all()
    ours = res["regions_long"].assign(sample=lambda d: d["region"].str.split(":").str[1]).set_index(
        ["sample", "mechanism"])["value"]
    ref = profiled.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])["value"]
    measured = [m for m in ref.index.get_level_values(1).unique() if m != "Low tumor mutational burden (TMB)"]
    np.testing.assert_allclose(ours.loc[(slice(None), measured)].sort_index(),
                               ref.loc[(slice(None), measured)].sort_index(), equal_nan=True)
    small = a[a.obs["region"] != "S01"].copy()
    small.obs.loc[small.obs_names[:10], "region"] = "ten cells"
    tmt.tl.resistance_profile(small, region_key="region")
    rows = small.uns["tmt_resistance_profile"]["regions_long"].set_index(["region", "mechanism"])
    assert rows.loc[("slide:ten cells", "Hypoxia"), "status"] == "not assessable: fewer than 50 cells"
    assert np.isnan(rows.loc[("slide:ten cells", "Hypoxia"), "value"])
    flags = small.uns["tmt_resistance_profile"]["regions"].loc["slide:ten cells"]
    assert flags.drop("low_tmb").isna().all()  # the TMB flag is the sample's metadata


def test_abundance_rows_follow_the_profile_samples_not_an_earlier_run(profiled):
    """immunosuppression stored for other groups (here per response) must not leave the profile's rows empty."""
    a = profiled.copy()
    tmt.tl.immunosuppression(a, sample_key="response")
    tmt.tl.resistance_profile(a)
    long = a.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    ref = profiled.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    tregs = "Regulatory T cells (Tregs)"
    assert np.isfinite(long.xs(tregs, level="mechanism")["value"]).all()
    np.testing.assert_allclose(long["value"], ref["value"], equal_nan=True)

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import tmetoolkit as tmt

from .conftest import real_data

GRID = list(itertools.product([0.5, 1.0, 2.0], ["nests", "solid", "scattered"]))


@pytest.fixture(scope="module")
def grid_results():
    rows = []
    for i, (noise, shape) in enumerate(GRID):
        a = tmt.datasets.simulate(n_samples=6, n_cells=2000, noise=noise, tumor_shape=shape, seed=100 + i)
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
        truth = a.uns["tmt_simulation"]["samples"].set_index("sample")["phenotype"]
        t = a.uns["tmt_immune_phenotype"]["table"]
        r = a.uns["tmt_immune_phenotype"]["regions"]
        r = r[r["phenotype"] != "not assessable"]
        rows.append({
            "noise": noise, "shape": shape,
            "samples_ok": int((t["phenotype"].astype(str) == truth.loc[t.index]).sum()), "samples": len(t),
            "regions_ok": int((r["phenotype"].astype(str) == r.index.str.split(":").str[0].map(truth)).sum()),
            "regions": len(r),
        })
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("noise", "shape"), GRID)
def test_each_setting_calls_its_samples(grid_results, noise, shape):
    row = grid_results.set_index(["noise", "shape"]).loc[(noise, shape)]
    assert row["samples_ok"] >= row["samples"] - 1


def test_grid_accuracy(grid_results):
    assert grid_results["samples_ok"].sum() / grid_results["samples"].sum() >= 0.95
    assert grid_results["regions_ok"].sum() / grid_results["regions"].sum() >= 0.9


def test_compartments_follow_the_planted_border(sim_small):
    tmt.tl.compartments(sim_small, sample_key="sample", cell_type_key="true_lineage")
    o = sim_small.obs
    assert np.corrcoef(o["true_border_distance"], o["tmt_border_distance"])[0, 1] > 0.95
    agree = (o["true_compartment"].astype(str) == o["tmt_compartment"].astype(str)).mean()
    assert agree > 0.8
    inside = o["tmt_border_distance"] < 0
    assert (inside == (o["true_border_distance"] < 0)).mean() > 0.9
    tab = sim_small.uns["tmt_compartments"]["table"]
    assert (tab["status"] == "ok").all() and (tab["margin_width_um"] > 0).all()


def test_phenoptr_tumour_stroma_agreement():
    """inForm's Tumor/Stroma categories; the call agrees with the one those categories give (CD8+ cells in the
    tumour at 2.3x chance: 22% of them against 9.6% of the non-tumour cells)."""
    a = real_data("phenoptr")
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="phenotype", tumor_labels=["CK+"],
                            effector_labels=["CD8+"])
    t = a.uns["tmt_immune_phenotype"]["table"].iloc[0]
    assert t["phenotype"] == "inflamed" and 1.5 < t["parenchyma_share_vs_null"] < 4  # measured 2.5
    inside = (a.obs["tmt_border_distance"] < 0) | (a.obs["tmt_compartment"] == "tumor")
    agree = (inside == (a.obs["tissue_category"].astype(str) == "Tumor")).mean()
    assert agree >= 0.9, agree  # measured 0.911


def test_features_and_storage(sim_small, tmp_path):
    tmt.tl.immune_phenotype(sim_small, sample_key="sample", cell_type_key="true_lineage")
    t = sim_small.uns["tmt_immune_phenotype"]["table"]
    for col in ("phenotype", "confidence", "basis", "rho_tumor", "rho_stroma", "infiltration_ratio",
                "effector_per_100_cells_tumor", "normalised_mixing_score", "effector_tumor_contact_fraction"):
        assert col in t.columns
    assert (t["basis"] == "spatial").all()
    inflamed = t.index[t["phenotype"] == "inflamed"]
    excluded = t.index[t["phenotype"] == "excluded"]
    contact = t["effector_tumor_contact_fraction"]
    assert contact[inflamed].min() > contact[excluded].max()
    categories = sim_small.obs["tmt_immune_phenotype"].cat.categories.tolist()
    assert categories == ["inflamed", "excluded", "desert", "not assessable"]
    assert sim_small.uns["tmt_immune_phenotype_colors"][0] == "#d62728"
    sim_small.write_h5ad(tmp_path / "a.h5ad")
    back = sc.read_h5ad(tmp_path / "a.h5ad")
    round_tripped = back.uns["tmt_immune_phenotype"]["table"]["phenotype"].astype(str)
    assert round_tripped.tolist() == t["phenotype"].astype(str).tolist()


def test_pixel_size_scales_coordinates(sim_small):
    a = sim_small.copy()
    a.obsm["spatial"] = a.obsm["spatial"] / 0.5  # pixels of 0.5 um
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage", pixel_size=0.5)
    tmt.tl.immune_phenotype(sim_small, sample_key="sample", cell_type_key="true_lineage")
    pd.testing.assert_series_equal(a.uns["tmt_immune_phenotype"]["table"]["phenotype"],
                                   sim_small.uns["tmt_immune_phenotype"]["table"]["phenotype"])


def test_coordinates_in_pixels_are_noticed(sim_small):
    """CosMx-like pixels (0.12 um each): the cells' spacing gives it away and the warning names pixel_size=; with
    it the densities are those of the micrometre coordinates, without it they are not."""
    a = sim_small.copy()
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    um = a.uns["tmt_immune_phenotype"]["table"]["rho_tumor"]
    um_all = a.uns["tmt_immune_phenotype"]["table"]["effector_per_mm2"]
    px = sim_small.copy()
    px.obsm["spatial"] = px.obsm["spatial"] / 0.12
    with pytest.warns(tmt.TmtWarning, match="pixel_size="):
        tmt.tl.immune_phenotype(px, sample_key="sample", cell_type_key="true_lineage")
    wrong = px.uns["tmt_immune_phenotype"]["table"]
    assert (wrong["effector_per_mm2"] < 0.5 * um_all).all()  # densities off
    # so no desert call rests on them: where the densities would decide, the sample is not assessable and says why
    right = a.uns["tmt_immune_phenotype"]["table"]["phenotype"].astype(str)
    called = wrong["phenotype"].astype(str)
    assert (right == "desert").sum() == 1 and not (called == "desert").any()
    assert wrong.loc[right == "desert", "reason"].str.contains("pass pixel_size=").all()
    assert ((called == right) | (called == "not assessable")).all()
    assert (wrong["rho_tumor"][um > 0] < 0.5 * um[um > 0]).all()  # (none in the excluded tumour either way)
    with pytest.raises(ValueError, match="tmt.tl.compartments"):  # two scales on one set of coordinates
        tmt.tl.immune_phenotype(px, sample_key="sample", cell_type_key="true_lineage", pixel_size=0.12)
    px = sim_small.copy()  # fresh: no earlier results to overwrite (which warns too)
    px.obsm["spatial"] = px.obsm["spatial"] / 0.12
    with warnings.catch_warnings():
        warnings.simplefilter("error", tmt.TmtWarning)
        tmt.tl.compartments(px, sample_key="sample", cell_type_key="true_lineage", pixel_size=0.12)
        tmt.tl.immune_phenotype(px, sample_key="sample", cell_type_key="true_lineage")  # the scale is reused
    assert px.uns["tmt_immune_phenotype"]["params"]["pixel_size"] == 0.12
    pd.testing.assert_series_equal(px.uns["tmt_immune_phenotype"]["table"]["rho_tumor"], um, rtol=1e-6)


def test_cohort_reference_needs_samples(sim_small):
    one = sim_small[sim_small.obs["sample"] == "S01"].copy()
    with pytest.raises(ValueError, match="absolute"):
        tmt.tl.immune_phenotype(one, sample_key="sample", cell_type_key="true_lineage", reference="cohort")
    tmt.tl.immune_phenotype(one, sample_key="sample", cell_type_key="true_lineage")  # one sample, absolute: fine
    assert one.uns["tmt_immune_phenotype"]["table"].loc["S01", "phenotype"] == "inflamed"


def test_bad_inputs(sim_small):
    no_xy = sim_small.copy()
    del no_xy.obsm["spatial"]
    with pytest.raises(KeyError, match=r"obsm\['spatial'\]"):
        tmt.tl.compartments(no_xy, sample_key="sample", cell_type_key="true_lineage")
    tmt.tl.immune_phenotype(no_xy, sample_key="sample", cell_type_key="true_lineage")  # falls back to expression
    assert (no_xy.uns["tmt_immune_phenotype"]["table"]["basis"] == "expression").all()
    nan = sim_small.copy()
    nan.obsm["spatial"][3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tmt.tl.compartments(nan, sample_key="sample", cell_type_key="true_lineage")
    with pytest.raises(ValueError, match="Malignant/Epithelial"):
        tmt.tl.compartments(sim_small, sample_key="sample", cell_type_key="true_lineage", tumor_labels=["Tumour"])
    with pytest.raises(KeyError, match="annotate"):
        tmt.tl.compartments(sim_small, sample_key="sample")


def test_effector_labels_must_name_cells_of_the_column(sim_small):
    """A column of the user's own without effector_labels would make every sample a desert with full confidence."""
    a = sim_small.copy()
    a.obs["phenotype"] = a.obs["true_lineage"].astype(str).replace({"CD8 T": "CD8+", "Malignant/Epithelial": "CK+"})
    with pytest.raises(tmt.TmtInputError, match="effector_labels="):
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="phenotype", tumor_labels=["CK+"])
    with pytest.raises(tmt.TmtInputError, match="empty"):
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="phenotype", tumor_labels=["CK+"],
                                effector_labels=[])
    with pytest.warns(tmt.TmtWarning, match="CD8-"):  # a typo beside a right label is named
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="phenotype", tumor_labels=["CK+"],
                                effector_labels=["CD8+", "CD8-"])
    assert (a.uns["tmt_immune_phenotype"]["table"]["phenotype"] != "desert").sum() == 2


@pytest.mark.parametrize("bad", [np.nan, "half", -0.5, 0])
def test_pixel_size_must_be_a_positive_number(sim_small, bad):
    with pytest.raises(tmt.TmtInputError, match="pixel_size"):
        tmt.tl.compartments(sim_small, sample_key="sample", cell_type_key="true_lineage", pixel_size=bad)
    with pytest.raises(tmt.TmtInputError, match="pixel_size"):
        tmt.tl.immune_phenotype(sim_small, sample_key="sample", cell_type_key="true_lineage", pixel_size=bad)


def test_compartments_of_other_samples_are_not_reused(sim_small):
    a = sim_small.copy()
    a.obs["batch"] = "one"
    tmt.tl.compartments(a, sample_key="batch", cell_type_key="true_lineage")
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    assert a.uns["tmt_compartments"]["params"]["sample_key"] == "sample"
    assert list(a.uns["tmt_immune_phenotype"]["table"]["phenotype"]) == ["inflamed", "excluded", "desert"]


def test_coarse_or_coinciding_coordinates(sim_small):
    """Coordinates rounded to a 10-unit grid put most cells on a shared position; a sample on a single position has
    no tissue to measure."""
    a = sim_small.copy()
    a.obsm["spatial"] = np.round(a.obsm["spatial"] / 10) * 10
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    assert list(a.uns["tmt_immune_phenotype"]["table"]["phenotype"]) == ["inflamed", "excluded", "desert"]
    b = sim_small.copy()
    b.obsm["spatial"][(b.obs["sample"] == "S01").to_numpy()] = 5.0
    with pytest.warns(tmt.TmtWarning, match="S01"):
        tmt.tl.immune_phenotype(b, sample_key="sample", cell_type_key="true_lineage")
    t = b.uns["tmt_immune_phenotype"]["table"]
    assert t.loc["S01", "phenotype"] == "not assessable" and "positions" in t.loc["S01", "reason"]
    c = sim_small.copy()
    c.obsm["spatial"] = c.obsm["spatial"][:, :1]
    with pytest.raises(tmt.TmtInputError, match="two columns"):
        tmt.tl.compartments(c, sample_key="sample", cell_type_key="true_lineage")


def test_coordinates_outside_obsm_spatial_are_named(sim_small):
    a = sim_small.copy()
    a.obs["x_centroid"], a.obs["y_centroid"] = a.obsm["spatial"][:, 0], a.obsm["spatial"][:, 1]
    del a.obsm["spatial"]
    with pytest.raises(KeyError, match=r"adata.obs\[\['x_centroid', 'y_centroid'\]\]"):
        tmt.tl.compartments(a, sample_key="sample", cell_type_key="true_lineage")
    with pytest.warns(tmt.TmtWarning, match="x_centroid"):
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    assert (a.uns["tmt_immune_phenotype"]["table"]["basis"] == "expression").all()


def test_the_edge_of_the_field_is_not_a_tumour_border():
    """In fields that tumour fills, the tumour density smoothed over the frame used to fall as at a border: 15-18% of
    the planted tumour cells were margin, 79-93% of them along the frame; averaged over tissue only, 2-4%."""
    f = tmt.datasets.simulate_fields(stroma_fractions=[0.0, 0.05], phenotypes=["inflamed"], n_per_setting=2, seed=3)
    tmt.tl.compartments(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=["Malignant/Epithelial"])
    planted = f.obs["true_compartment"].astype(str) == "tumor"
    margin = f.obs["tmt_compartment"].astype(str) == "margin"
    assert (margin[planted].groupby(f.obs["sample"][planted], observed=True).mean() < 0.06).all()


def test_sample_without_tumour_or_without_cd8(sim_small):
    a = sim_small.copy()
    lin = a.obs["true_lineage"].astype(str)
    drop_tumour = (a.obs["sample"] == "S02") & (lin == "Malignant/Epithelial")
    drop_cd8 = (a.obs["sample"] == "S01") & (lin == "CD8 T")
    a = a[~(drop_tumour | drop_cd8)].copy()
    with pytest.warns(tmt.TmtWarning, match="S02"):
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    t = a.uns["tmt_immune_phenotype"]["table"]
    assert t.loc["S02", "phenotype"] == "not assessable" and "tumour" in t.loc["S02", "reason"]
    assert t.loc["S01", "phenotype"] == "desert"


def test_panel_that_cannot_show_cd8_t_cells_is_not_assessable(sim_small):
    """A sample without CD8 T cells is a desert, but a panel on which no cell can be called CD8 T (no CD8 genes nor
    their stand-ins, or no CD8 channel) says nothing about them: not assessable, with the reason, rather than desert
    everywhere. Called from stand-ins alone, CD8 T cells are undercounted, and the phenotype warns."""
    stand_ins = sim_small[:, [g for g in sim_small.var_names if g not in ("CD8A", "CD8B")]].copy()
    tmt.tl.annotate(stand_ins)  # KLRK1 stands in: some CD8 T cells are found, and the phenotype says they are few
    called = stand_ins.obs["tmt_lineage"] == "CD8 T"
    assert called.sum() > 0 and (stand_ins.obs.loc[called, "true_lineage"] == "CD8 T").all()
    with pytest.warns(tmt.TmtWarning, match=r"CD8 T cells were called from stand-in genes \(KLRK1\)"):
        tmt.tl.immune_phenotype(stand_ins, sample_key="sample")
    no_cd8 = {"CD8A", "CD8B", "KLRK1", "RUNX3", "EOMES", "CTSW", "GZMA", "PRF1"}
    a = sim_small[:, [g for g in sim_small.var_names if g not in no_cd8]].copy()
    tmt.tl.annotate(a)
    assert (a.obs["tmt_lineage"] == "CD8 T").sum() == 0
    with pytest.warns(tmt.TmtWarning, match="cannot be recognised"):
        tmt.tl.immune_phenotype(a, sample_key="sample")
    t = a.uns["tmt_immune_phenotype"]["table"]
    assert (t["phenotype"] == "not assessable").all() and t["reason"].str.contains("CD8A").all()
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")  # the user's labels still work
    assert (a.uns["tmt_immune_phenotype"]["table"]["phenotype"] != "not assessable").all()

    v = real_data("phenoptr")
    v = v[:, [c for c in v.var_names if not c.startswith("CD8")]].copy()
    tmt.tl.annotate(v)
    with pytest.warns(tmt.TmtWarning, match="no channel for CD8"):
        tmt.tl.immune_phenotype(v)
    assert (v.uns["tmt_immune_phenotype"]["table"]["phenotype"] == "not assessable").all()


def test_panel_that_cannot_show_tumour_cells_says_what_to_pass():
    """A CyCIF panel without a tumour channel (phenoptr without CK, as the scimap lymphoma image): immune_phenotype
    and compartments stopped at "none of the tumor_labels ['Malignant/Epithelial'] occurs", without the reason or
    what to pass instead."""
    v = real_data("phenoptr")
    v = v[:, [c for c in v.var_names if not c.startswith("CK")]].copy()
    tmt.tl.annotate(v)
    for tool in (tmt.tl.immune_phenotype, tmt.tl.compartments):
        with pytest.raises(tmt.TmtInputError, match=r"no channel for tumor; pass cell_type_key= and tumor_labels="):
            tool(v, sample_key="sample")
    with pytest.raises(tmt.TmtInputError, match=r"occurs in the cell-type column; labels present"):
        tmt.tl.compartments(v, sample_key="sample", tumor_labels=["Tumour"])  # the user's own labels: no hint


def test_phenotype_that_redraws_the_users_compartments_says_so():
    """CODEX: compartments from the authors' 'tumor cells', then immune_phenotype with annotate's lineages redrew the
    tumour from those, and only said it was overwriting tmt_compartment, not that the user's tumour was replaced."""
    a = tmt.datasets.simulate(n_samples=1, n_cells=800, seed=3)
    a.obs["authors"] = a.obs["true_lineage"].astype(str)
    tmt.tl.compartments(a, sample_key="sample", cell_type_key="authors")
    with pytest.warns(tmt.TmtWarning, match=r"found the tumour from 'authors' labels \['Malignant/Epithelial'\]; "
                                            r"immune_phenotype redraws them from 'true_lineage'"):
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    with warnings.catch_warnings(record=True) as caught:  # the same tumour: the compartments are used, nothing said
        warnings.simplefilter("always")
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    assert not [w for w in caught if "redraws" in str(w.message)]


def test_several_images_per_sample():
    """Two fields of one patient share coordinates; with image_key each is processed alone and densities pool."""
    a = tmt.datasets.simulate(n_samples=4, n_cells=1500, phenotypes=["inflamed", "inflamed", "desert", "desert"],
                              seed=31)
    single = a.copy()
    tmt.tl.immune_phenotype(single, sample_key="sample", cell_type_key="true_lineage")
    per_field = single.uns["tmt_immune_phenotype"]["table"]
    a.obs["field"] = a.obs["sample"].astype(str)
    a.obs["patient"] = a.obs["sample"].map({"S01": "P1", "S02": "P1", "S03": "P2", "S04": "P2"}).astype(str)
    tmt.tl.immune_phenotype(a, sample_key="patient", image_key="field", cell_type_key="true_lineage")
    t = a.uns["tmt_immune_phenotype"]["table"]
    assert list(t["phenotype"].astype(str)) == ["inflamed", "desert"]
    assert (t["n_images"] == 2).all()
    assert set(a.uns["tmt_compartments"]["table"].index) == {"P1/S01", "P1/S02", "P2/S03", "P2/S04"}
    # the compartments of each field are exactly those found when the field is its own sample
    assert (a.obs["tmt_compartment"] == single.obs["tmt_compartment"]).all()
    f1, f2 = per_field.loc["S01"], per_field.loc["S02"]
    pooled = (f1["rho_tumor"] * f1["area_tumor_mm2"] + f2["rho_tumor"] * f2["area_tumor_mm2"]) / (
        f1["area_tumor_mm2"] + f2["area_tumor_mm2"])
    assert t.loc["P1", "rho_tumor"] == pytest.approx(pooled)
    assert t.loc["P1", "n_cells"] == f1["n_cells"] + f2["n_cells"]
    regions = a.uns["tmt_immune_phenotype"]["regions"].index
    assert regions.str.startswith("P1/S01:tile_").any() and regions.str.startswith("P1/S02:tile_").any()
    with pytest.raises(KeyError, match="field"):
        tmt.tl.immune_phenotype(a, sample_key="patient", image_key="fild", cell_type_key="true_lineage")


def test_tumour_from_a_programme_when_labels_cannot_find_it():
    """Chen 2024 MERFISH: no keratins on the panel, so annotate finds no tumour cells; its MAPK programme (MPAS)
    marks them. The region it gives matches the one from the authors' Epithelial label."""
    c = real_data("chen")
    w = c.copy()
    tmt.tl.compartments(c, sample_key=None, tumor_signature="MPAS")
    assert c.obs["tmt_tumor_cell"].dtype == bool
    assert c.uns["tmt_compartments"]["params"]["tumor_signature"] == "MPAS"
    tmt.tl.compartments(w, sample_key=None, cell_type_key="type_lvl2", tumor_labels="Epithelial")
    inside, inside_labels = c.obs["tmt_border_distance"] < 0, w.obs["tmt_border_distance"] < 0
    # measured 0.875; MPAS also marks 454 non-epithelial cells, which widen the region it gives (precision below)
    assert (inside == inside_labels).mean() >= 0.85
    ep = c.obs["type_lvl1"] == "Epithelial"
    assert inside[ep].mean() >= 0.8 and ep[inside].mean() >= 0.5  # measured 0.88 / 0.55
    tmt.tl.annotate(c)
    tmt.tl.immune_phenotype(c, sample_key=None, tumor_signature="MPAS")
    t = c.uns["tmt_immune_phenotype"]["table"]
    assert t["n_tumor_cells"].iloc[0] > 500
    # annotate finds about 20 CD8 T cells on this panel, too few in the tumour to place: not assessable, saying why
    assert t["phenotype"].iloc[0] in {"inflamed", "excluded", "desert"} or "fewer than 5" in t["reason"].iloc[0]


def test_tumour_from_a_programme_on_simulated_cells(sim_small):
    """tumor_signature: cells high in the epithelial programme give the same tumour region as the true labels.
    On the simulation (planted from atlas genes, not the registry's Epithelial set, with spill-over from touching
    cells) 0.92 of cells get their true tumour status (stroma beside tumour picks up its keratins) and 0.96 the
    true side of the border."""
    by_labels = sim_small.copy()
    tmt.tl.compartments(by_labels, sample_key="sample", cell_type_key="true_lineage")
    tmt.tl.compartments(sim_small, sample_key="sample", tumor_signature="Epithelial")
    is_t = sim_small.obs["tmt_tumor_cell"]
    truth = sim_small.obs["true_lineage"] == "Malignant/Epithelial"
    assert (is_t == truth).mean() >= 0.9
    inside = sim_small.obs["tmt_border_distance"] < 0
    assert (inside == (by_labels.obs["tmt_border_distance"] < 0)).mean() >= 0.95
    no_keratin = sim_small[:, [g for g in sim_small.var_names if g not in tmt.sig.get("Epithelial").genes_up]].copy()
    with pytest.raises(ValueError, match="malignant programme"):
        tmt.tl.compartments(no_keratin, sample_key="sample", tumor_signature="Epithelial")


def test_layer_reaches_every_expression_read(sim_small):
    """z-scored X with the counts in a layer: the tumour programme (cells) and the CD8 T programme (spots) are
    scored on the layer, giving the same calls as counts in X; without layer= the error names the real cause."""
    import scanpy as sc

    def scaled(a):
        a.layers["counts"] = a.X.copy()
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)
        sc.pp.scale(a)
        return a

    ref = sim_small.copy()
    tmt.tl.immune_phenotype(ref, sample_key="sample", tumor_signature="Epithelial", cell_type_key="true_lineage")
    z = scaled(sim_small.copy())
    with pytest.raises(ValueError, match="scaled"):
        tmt.tl.immune_phenotype(z, sample_key="sample", tumor_signature="Epithelial", cell_type_key="true_lineage")
    tmt.tl.immune_phenotype(z, sample_key="sample", tumor_signature="Epithelial", cell_type_key="true_lineage",
                            layer="counts")
    assert z.obs["tmt_tumor_cell"].equals(ref.obs["tmt_tumor_cell"])
    pd.testing.assert_frame_equal(z.uns["tmt_immune_phenotype"]["table"], ref.uns["tmt_immune_phenotype"]["table"])
    spots = tmt.datasets.to_spots(sim_small)
    zs = scaled(spots.copy())
    tmt.tl.immune_phenotype(spots, sample_key="sample")
    tmt.tl.immune_phenotype(zs, sample_key="sample", layer="counts")
    pd.testing.assert_frame_equal(zs.uns["tmt_immune_phenotype"]["table"],
                                  spots.uns["tmt_immune_phenotype"]["table"])


# realistic fields: tumour filling most of the field, septa, pockets, CD8 T 10-2,000/mm2 (tmt.datasets.simulate_fields)
FIELD_KW = {"n_per_setting": 2, "field_size": 500.0, "seed": 11}
TUMOUR = ["Malignant/Epithelial"]


@pytest.fixture(scope="module")
def fields_called():
    f = tmt.datasets.simulate_fields(**FIELD_KW)
    tmt.tl.compartments(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR)
    tmt.tl.immune_phenotype(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR)
    return f


def test_realistic_fields_are_called_as_planted(fields_called):
    """At every stroma share from 0 to 60%, fields are called as planted; an excluded field with 5% stroma (thin
    septa) is flagged as unable to show exclusion, never called excluded."""
    f = fields_called
    t = f.uns["tmt_immune_phenotype"]["table"]
    truth = f.uns["tmt_simulation"]["samples"].set_index("sample").loc[t.index]
    called = t["phenotype"].astype(str)
    low = truth["stroma_fraction"] < 0.1
    ok = (called == truth["phenotype"]) | (low & (truth["phenotype"] == "excluded") & (called == "not assessable"))
    per_fraction = ok.groupby(truth["stroma_fraction"]).mean()
    assert (per_fraction >= 0.95).all(), per_fraction
    assert not (low & (called == "excluded")).any()
    flagged = t.loc[low & (truth["phenotype"] == "excluded")]
    assert (~flagged["exclusion_assessable"]).all() and flagged["reason"].str.contains("stroma").all()
    inside = (f.obs["tmt_border_distance"] < 0) | (f.obs["tmt_compartment"] == "tumor")
    assert (inside == (f.obs["true_compartment"] == "tumor")).mean() >= 0.95  # pockets count as parenchyma


def test_areas_add_up_to_the_tissue(fields_called):
    """Each grid square of tissue belongs to one cell: tumour and stroma areas add up to the field, once."""
    c = fields_called.uns["tmt_compartments"]["table"]
    np.testing.assert_allclose(c["area_tumor_mm2"] + c["area_stroma_mm2"], c["area_mm2"])
    side = FIELD_KW["field_size"] / 1000
    assert c["area_mm2"].between(0.97 * side**2, 1.03 * side**2).all()
    t = fields_called.uns["tmt_immune_phenotype"]["table"]
    r = fields_called.uns["tmt_immune_phenotype"]["regions"]
    np.testing.assert_allclose(r.groupby(r.index.str.split(":").str[0])["area_mm2"].sum().loc[t.index], t["area_mm2"])


def test_micrometres_or_pixels_give_the_same_result(fields_called):
    """Schürch's CODEX pixels (0.37744 um): densities, areas and calls equal those of micrometre coordinates, and
    immune_phenotype takes the scale from the compartments it builds on."""
    px = tmt.datasets.simulate_fields(**FIELD_KW, pixel_size=0.37744)
    tmt.tl.compartments(px, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR, pixel_size=0.37744)
    tmt.tl.immune_phenotype(px, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR)
    um_t, px_t = (a.uns["tmt_immune_phenotype"]["table"] for a in (fields_called, px))
    assert px.uns["tmt_immune_phenotype"]["params"]["pixel_size"] == 0.37744
    assert (um_t["phenotype"] == px_t["phenotype"]).all()
    for col in ("effector_per_mm2", "rho_tumor", "rho_stroma", "area_mm2", "area_tumor_mm2", "infiltration_vs_null",
                "contact_share_vs_null", "mixing_score_vs_null"):
        np.testing.assert_allclose(px_t[col], um_t[col], rtol=1e-6, err_msg=col)
    pd.testing.assert_frame_equal(px.uns["tmt_compartments"]["table"], fields_called.uns["tmt_compartments"]["table"],
                                  rtol=1e-6)
    np.testing.assert_allclose(px.obs["tmt_border_distance"], fields_called.obs["tmt_border_distance"], rtol=1e-6,
                               atol=1e-6)


def test_cd8_placed_at_random_among_non_tumour_cells_is_not_exclusion():
    """The issue's null: CD8 T labels shuffled among the non-tumour cells of tumour-filled fields. The measures sit
    near 1 (as mixed as chance) and the fields are inflamed, not excluded."""
    f = tmt.datasets.simulate_fields(stroma_fractions=[0.05, 0.15, 0.3], phenotypes=["inflamed"], n_per_setting=2,
                                     field_size=500.0, seed=5)
    rng = np.random.default_rng(0)
    lab = f.obs["cell_type"].astype(str).to_numpy().copy()
    for s in f.obs["sample"].cat.categories:
        m = (f.obs["sample"] == s).to_numpy() & (lab != "Malignant/Epithelial")
        idx = np.flatnonzero(m)
        lab[idx] = rng.permutation(lab[idx])
    f.obs["shuffled"] = lab
    tmt.tl.immune_phenotype(f, sample_key="sample", cell_type_key="shuffled", tumor_labels=TUMOUR)
    t = f.uns["tmt_immune_phenotype"]["table"]
    assert (t["phenotype"] == "inflamed").all()
    for m in ("infiltration_vs_null", "contact_share_vs_null", "mixing_score_vs_null"):
        assert 0.8 <= t[m].median() <= 1.25, t[m]
    assert t["infiltration_vs_null"].between(0.5, 2.0).all() and t["contact_share_vs_null"].between(0.5, 2.0).all()


def test_xenium_pathologist_regions():
    """Xenium breast IDC: pathologist's Invasive Tumor vs Stroma regions against the compartments from annotate's
    malignant cells. Measured 0.837 (0.836 from the spill-over rule until later lineage rules, 0.835 before the
    bilinear grid, 0.828 while myoepithelial cells were called pericytes): the pathologist draws the tumour bed at
    low power (its intratumoural stroma strands and a rim inside, two tumour-cell nests of 78 and 158 tumour cells
    left in the stroma), the compartments draw parenchyma at cell scale, as inForm does (phenoptr, 0.911). The nests
    are the gap: the same rule reaches 0.889 when the tumour cells inside "Stroma" are not counted as tumour cells
    (an oracle), yet by size and width they are nests like those inForm calls Tumor on phenoptr, and unlike the
    Invasive Tumor nests they have no myoepithelial rim (bench_spatial.py --myoepithelium). Of 641 settings of six
    rule families none reached 0.85 here with a margin over 0.90 on phenoptr, even chosen with the labels (two
    reached 0.857 and 0.860 with phenoptr at 0.901; benchmarks/bench_spatial.py --ceiling, measured before the
    bilinear grid)."""
    x = real_data("xenium")
    tmt.tl.annotate(x)
    keep = x.obs["region"].isin(["Invasive Tumor", "Stroma"])
    truth = x.obs["region"][keep] == "Invasive Tumor"
    tumour = x.obs["tmt_lineage"] == "Malignant/Epithelial"
    x.obs["oracle_type"] = np.where(tumour & (x.obs["region"] != "Stroma"), "tumour", "other")
    agree = {}
    for key, labels in (("tmt_lineage", None), ("oracle_type", ["tumour"])):
        tmt.tl.compartments(x, sample_key=None, cell_type_key=key, tumor_labels=labels)
        inside = (x.obs["tmt_border_distance"] < 0) | (x.obs["tmt_compartment"] == "tumor")
        agree[key] = (inside[keep] == truth).mean()
    assert agree["tmt_lineage"] >= 0.8, agree  # measured 0.837
    assert agree["oracle_type"] >= 0.85, agree  # measured 0.889


def test_stroma_floor_is_where_planted_exclusion_stops_showing():
    """The null model behind min_stroma_fraction: excluded fields (CD8 T cells in the stroma only) called without
    the floor look inflamed when their stroma measures under a tenth (septa a cell or two wide), and are excluded
    when it measures above; with the floor the thin ones are flagged, never excluded."""
    f = tmt.datasets.simulate_fields(stroma_fractions=[0.03, 0.15], phenotypes=["excluded"], n_per_setting=4,
                                     field_size=500.0, seed=3)
    tmt.tl.compartments(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR)
    planted = f.uns["tmt_simulation"]["samples"].set_index("sample")["stroma_fraction"]
    tmt.tl.immune_phenotype(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR,
                            min_stroma_fraction=0.0)
    t = f.uns["tmt_immune_phenotype"]["table"]
    thin, broad = (t.loc[planted.index[planted == s]] for s in (0.03, 0.15))
    assert (thin["stroma_area_fraction"] < 0.1).all() and (broad["stroma_area_fraction"] >= 0.1).all()
    assert (thin["phenotype"] == "inflamed").mean() >= 0.75 and thin["infiltration_vs_null"].median() > 0.5
    assert (broad["phenotype"] == "excluded").all()
    tmt.tl.immune_phenotype(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR)
    t = f.uns["tmt_immune_phenotype"]["table"]
    assert (t.loc[thin.index, "phenotype"] == "not assessable").all()
    assert (t.loc[broad.index, "phenotype"] == "excluded").all()


def test_regions_without_sample_key_keep_their_samples():
    """``region_key`` with the default sample column: each region row belongs to its sample (the phenotype once
    recorded no sample key, so the region table lost every region's sample and counts)."""
    a = tmt.datasets.simulate(n_samples=3, n_cells=400, seed=0)
    tmt.tl.annotate(a)
    a.obs["half"] = np.where(a.obsm["spatial"][:, 0] < np.median(a.obsm["spatial"][:, 0]), "left", "right")
    tmt.tl.immune_phenotype(a, region_key="half")
    assert a.uns["tmt_immune_phenotype"]["params"]["sample_key"] == "sample"
    regions = tmt.get.region_table(a)
    assert len(regions) == 6 and regions["n_cells"].notna().all()
    assert regions.groupby("sample")["n_cells"].sum().to_dict() == a.obs["sample"].value_counts().to_dict()


def test_fields_of_one_sample_overlapping_in_their_coordinates_are_warned_about(sim_small):
    """Two fields of view of one sample, each in its own coordinates and given without image_key, were read as one
    tissue: their cells counted as neighbours of each other."""
    a = sim_small[sim_small.obs["sample"] == "S01"].copy()
    xy = a.obsm["spatial"].copy()
    right = xy[:, 0] > np.median(xy[:, 0])
    a.obs["fov"] = np.where(right, "fov2", "fov1")
    kw = {"sample_key": "sample", "cell_type_key": "true_lineage"}
    tiles = a.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tmt.TmtWarning)
        tmt.tl.compartments(tiles, **kw)  # halves of one image: no warning
    xy[right, 0] -= xy[right, 0].min() - xy[~right, 0].min()
    a.obsm["spatial"] = xy
    with pytest.warns(tmt.TmtWarning, match=r"several adata.obs\['fov'\] values whose coordinates overlap"):
        tmt.tl.compartments(a.copy(), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tmt.TmtWarning)
        tmt.tl.compartments(a, image_key="fov", **kw)


def test_compartments_from_labels_drop_an_earlier_programme_call(sim_small):
    """tmt_tumor_cell is the programme's call: compartments drawn from labels afterwards do not leave it beside
    compartments it did not make."""
    tmt.tl.compartments(sim_small, sample_key="sample", tumor_signature="Epithelial")
    assert "tmt_tumor_cell" in sim_small.obs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tmt.TmtWarning)
        tmt.tl.compartments(sim_small, sample_key="sample", cell_type_key="true_lineage")
    assert "tmt_tumor_cell" not in sim_small.obs
    assert sim_small.uns["tmt_compartments"]["params"]["tumor_signature"] == ""


def test_not_assessable_reasons_read_without_nested_brackets(sim_small):
    """Warnings and summaries list units as 'S01:rim (reason)': a reason with brackets of its own read '(too few
    cells (20 < 50))'."""
    a = sim_small
    s01 = np.flatnonzero((a.obs["sample"].astype(str) == "S01").to_numpy())
    a.obs["region"] = "core"
    a.obs.iloc[s01[:20], a.obs.columns.get_loc("region")] = "rim"
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage", region_key="region")
    r = a.uns["tmt_immune_phenotype"]["regions"]
    assert r.loc["S01:rim", "phenotype"] == "not assessable"
    assert r.loc["S01:rim", "reason"] == "too few cells: 20, fewer than 50"
    assert not [x for x in r["reason"].astype(str) if "(" in x]


def _field(xy: np.ndarray, seed: int = 0):
    """A field of cells at ``xy``, half of them tumour, for the units check alone."""
    from anndata import AnnData

    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(len(xy)) < 0.5, "Malignant/Epithelial", "CD8 T")
    obs = pd.DataFrame({"cell_type": labels, "sample": "S1"}, index=[f"c{i}" for i in range(len(xy))])
    a = AnnData(np.ones((len(xy), 2), dtype=np.float32), obs=obs)
    a.obsm["spatial"] = np.asarray(xy, dtype=float)
    return a


def test_tiny_fields_do_not_judge_the_unit_and_pixel_fields_still_warn(sim_small):
    """Ten cells scattered over a 300 um field lie ~50 um apart in micrometres, which warned that the coordinates
    may be pixels: so few cells cannot show that their spacing is the cells' own (MIN_SPACING_CELLS). A packed field
    of 40 cells and a whole sample in pixels still warn; so does a small image beside a large one in pixels."""
    from tmetoolkit._core.spatial.compartments import MIN_SPACING_CELLS
    from tmetoolkit._utils import TmtScaleWarning

    def scale_warned(a, **kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tmt.tl.compartments(a, sample_key="sample", cell_type_key="cell_type", **kw)
        return any(issubclass(w.category, TmtScaleWarning) for w in caught)

    rng = np.random.default_rng(0)
    for seed in range(5):
        tiny = _field(np.random.default_rng(seed).uniform(0, 300, (10, 2)), seed)
        assert tiny.uns.get("tmt_compartments") is None
        assert not scale_warned(tiny)
        assert tiny.uns["tmt_compartments"]["table"]["median_nn_distance_um"].iloc[0] > 30  # as pixels would be
    one = sim_small[sim_small.obs["sample"] == sim_small.obs["sample"].iloc[0]]
    xy = np.asarray(one.obsm["spatial"], dtype=float)
    packed = xy[np.argsort(np.linalg.norm(xy - xy.mean(axis=0), axis=1))[:40]]  # 40 neighbouring cells of tissue
    assert 40 >= MIN_SPACING_CELLS
    assert not scale_warned(_field(packed))
    assert scale_warned(_field(packed / 0.12))  # CosMx pixels
    whole = _field(np.vstack([xy / 0.2125, rng.uniform(0, 300, (10, 2))]))  # a sample in Xenium image pixels
    whole.obs["sample"] = ["S1"] * len(xy) + ["S2"] * 10
    assert scale_warned(whole)


def test_labels_given_as_numbers_arrays_or_pandas_objects(sim_small):
    """A cell-type column of integer codes with integer labels, a single label, a numpy array, a pandas Index or
    Series of labels: the labels are read as the column is (as strings), never refused as absent while present
    nor failing with a bare TypeError/ValueError."""
    a = sim_small.copy()
    codes = {c: i for i, c in enumerate(sorted(a.obs["true_lineage"].astype(str).unique()))}
    a.obs["code"] = a.obs["true_lineage"].astype(str).map(codes).astype(int)
    tum, cd8 = codes["Malignant/Epithelial"], codes["CD8 T"]
    ref = sim_small.copy()
    tmt.tl.immune_phenotype(ref, sample_key="sample", cell_type_key="true_lineage")
    for tumor_labels, effector_labels in (([tum], [cd8]), (tum, cd8), (np.int64(tum), np.array([cd8])),
                                          (pd.Index([tum, 99]), pd.Series([cd8]))):
        b = a.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tmt.TmtWarning)  # 99 occurs nowhere: warned, as a typo would be
            tmt.tl.compartments(b, sample_key="sample", cell_type_key="code", tumor_labels=tumor_labels)
            tmt.tl.immune_phenotype(b, sample_key="sample", cell_type_key="code", tumor_labels=tumor_labels,
                                    effector_labels=effector_labels)
        assert (b.obs["tmt_compartment"] == ref.obs["tmt_compartment"]).all()
        pd.testing.assert_series_equal(b.uns["tmt_immune_phenotype"]["table"]["phenotype"],
                                       ref.uns["tmt_immune_phenotype"]["table"]["phenotype"])
    arr = sim_small.copy()  # several labels in an array: its truth value is ambiguous
    tmt.tl.compartments(arr, sample_key="sample", cell_type_key="true_lineage",
                        tumor_labels=np.array(["Malignant/Epithelial", "Epithelial"]))
    assert (arr.obs["tmt_compartment"] == ref.obs["tmt_compartment"]).all()


@pytest.mark.parametrize("offset", [(1e6, 1e6), (1234567.89, 7654321.01)])
def test_a_slide_in_a_global_frame_gives_the_same_result(offset):
    """Coordinates of a slide placed in a global frame (+1e6 um, as MERSCOPE, CosMx and Xenium export whole
    slides): compartments, border distances, areas and densities must not depend on where the image lies.
    Before, float rounding of the large coordinates moved the cells at the grid's edge into the next square
    (22 um of border distance and 3e-4 of the densities on this field)."""
    f = tmt.datasets.simulate_fields(stroma_fractions=(0.3,), phenotypes=("excluded",), n_per_setting=1, seed=3)
    runs = []
    for shift in ((0.0, 0.0), offset):
        a = f.copy()
        a.obsm["spatial"] = np.asarray(a.obsm["spatial"], dtype=float) + np.asarray(shift)
        tmt.tl.compartments(a, sample_key="sample", cell_type_key="cell_type")
        tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="cell_type", region_key="true_compartment")
        runs.append(a)
    a, b = runs
    assert (a.obs["tmt_compartment"] == b.obs["tmt_compartment"]).all()
    np.testing.assert_allclose(a.obs["tmt_border_distance"], b.obs["tmt_border_distance"], rtol=0, atol=1e-6)
    for key in ("table", "regions"):
        ta, tb = a.uns["tmt_immune_phenotype"][key], b.uns["tmt_immune_phenotype"][key]
        assert (ta["phenotype"] == tb["phenotype"]).all()
        num = ta.select_dtypes("number").columns
        np.testing.assert_allclose(ta[num].to_numpy(float), tb[num].to_numpy(float), rtol=1e-9, atol=0)


@pytest.mark.parametrize(("tool", "name", "bad"), [
    ("compartments", "margin_width", -5), ("compartments", "margin_width", np.nan),
    ("compartments", "margin_width", "wide"), ("compartments", "margin_cells", -1),
    ("compartments", "min_cluster_size", -3), ("compartments", "min_cluster_size", 2.5),
    ("immune_phenotype", "tile_size", 0), ("immune_phenotype", "tile_size", np.nan),
    ("immune_phenotype", "tile_size", -100), ("immune_phenotype", "contact_cells", 0),
    ("immune_phenotype", "min_effectors", 0), ("immune_phenotype", "min_density", -1),
    ("immune_phenotype", "null_ratio", 0), ("immune_phenotype", "min_stroma_fraction", 1.5),
    ("immune_phenotype", "cohort_quantile", 2), ("immune_phenotype", "min_cells", -1),
])
def test_numeric_parameters_out_of_range_are_refused(sim_small, tool, name, bad):
    """margin_width=NaN made every cell stroma, a negative one or margin_cells dropped the margin, tile_size=0 or
    NaN made nonsense tiles, contact_cells=0 an all-excluded rule, all silently; a string raised a bare
    numpy TypeError. Each is refused, naming the parameter and its unit."""
    with pytest.raises(tmt.TmtInputError, match=name):
        getattr(tmt.tl, tool)(sim_small, sample_key="sample", cell_type_key="true_lineage", **{name: bad})


def test_numeric_parameters_given_as_strings_of_numbers_are_read(sim_small):
    a, b = sim_small.copy(), sim_small.copy()
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage", tile_size=250)
    tmt.tl.immune_phenotype(b, sample_key="sample", cell_type_key="true_lineage", tile_size="250")
    pd.testing.assert_frame_equal(a.uns["tmt_immune_phenotype"]["regions"], b.uns["tmt_immune_phenotype"]["regions"])


def test_cells_without_an_image_are_refused_not_pooled_into_an_image_of_their_own(sim_small):
    """image_key with missing values: the cells without one formed an image "<sample>/nan" gathered from every
    field (298 cells of two fields sharing coordinates, measured as one image and added to the sample) without a
    word. They are refused, as cells without a sample are, with the line that leaves them out."""
    a = sim_small.copy()
    a.obs["patient"] = "P1"
    a.obs["fov"] = a.obs["sample"].astype(object)
    a.obs.iloc[::50, a.obs.columns.get_loc("fov")] = np.nan
    for tool in (tmt.tl.compartments, tmt.tl.immune_phenotype):
        with pytest.raises(tmt.TmtInputError, match=r"90 cells have no value in adata.obs\['fov'\].*notna"):
            tool(a, sample_key="patient", image_key="fov", cell_type_key="true_lineage")


def test_a_label_cannot_be_both_effector_and_tumour(sim_small):
    """tumor_labels holding the effector label made the CD8 T cells tumour cells: the excluded sample was called a
    desert with full confidence and no reason. Refused, naming the shared label."""
    with pytest.raises(tmt.TmtInputError, match=r"\['CD8 T'\].*both"):
        tmt.tl.immune_phenotype(sim_small, sample_key="sample", cell_type_key="true_lineage",
                                tumor_labels=["Malignant/Epithelial", "CD8 T"])


def test_coordinates_in_any_container_are_read_or_refused_alike_by_tools_and_plots(sim_small):
    """obsm['spatial'] as a sparse matrix, or a DataFrame carrying a text column (a field name beside x and y),
    raised numpy's bare ValueError in compartments, immune_phenotype and pl.spatial; pl.spatial raised IndexError
    on one column and, for coordinates left in obs, said only that obsm['spatial'] was empty. Tools and plot now
    read coordinates the same way: sparse is read, the others refused with the line that fixes them."""
    import matplotlib.pyplot as plt
    import scipy.sparse as sp

    ref = sim_small.copy()
    tmt.tl.compartments(ref, sample_key="sample", cell_type_key="true_lineage")
    a = sim_small.copy()
    a.obsm["spatial"] = sp.csr_matrix(np.asarray(a.obsm["spatial"]))
    tmt.tl.compartments(a, sample_key="sample", cell_type_key="true_lineage")
    assert (a.obs["tmt_compartment"] == ref.obs["tmt_compartment"]).all()
    plt.close(tmt.pl.spatial(a, color="true_lineage"))
    xy = np.asarray(sim_small.obsm["spatial"])
    b = sim_small.copy()
    b.obsm["spatial"] = pd.DataFrame({"fov": "A", "x": xy[:, 0], "y": xy[:, 1]}, index=b.obs_names)
    for call in (lambda: tmt.tl.compartments(b, sample_key="sample", cell_type_key="true_lineage"),
                 lambda: tmt.pl.spatial(b, color="true_lineage")):
        with pytest.raises(tmt.TmtInputError, match=r"'fov'.*\[\['x', 'y'\]\]"):
            call()
    c = sim_small.copy()
    c.obsm["spatial"] = xy[:, :1]
    with pytest.raises(tmt.TmtInputError, match="two columns"):
        tmt.pl.spatial(c, color="true_lineage")
    d = sim_small.copy()
    d.obs["x"], d.obs["y"] = xy[:, 0], xy[:, 1]
    del d.obsm["spatial"]
    with pytest.raises(KeyError, match=r"adata.obs\[\['x', 'y'\]\]"):
        tmt.pl.spatial(d, color="true_lineage")


def test_compartments_barely_move_when_the_image_is_turned():
    """A slide turned or mirrored is the same tissue: the cells' side of the border should not depend on where the
    analysis grid falls. Counted into whole grid squares, scimap's CyCIF image turned by 30 degrees put 3.0% of its
    cells on the other side (0.9696 agreement); each cell shared among its four nearest grid points, 1.1% at most."""
    a = real_data("scimap")
    tumour = sorted(c for c in a.obs["phenotype"].astype(str).unique() if c.startswith("Tumor"))
    a.obs["sample"] = "s"
    base = a.copy()
    tmt.tl.compartments(base, sample_key="sample", cell_type_key="phenotype", tumor_labels=tumour)
    t = np.deg2rad(30)
    for xy in (a.obsm["spatial"] @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]),
               a.obsm["spatial"] * np.array([-1.0, 1.0])):
        turned = a.copy()
        turned.obsm["spatial"] = xy
        tmt.tl.compartments(turned, sample_key="sample", cell_type_key="phenotype", tumor_labels=tumour)
        inside = turned.obs["tmt_border_distance"] < 0
        same = (inside == (base.obs["tmt_border_distance"] < 0)).mean()
        assert same >= 0.985, same

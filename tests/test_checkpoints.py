import numpy as np
import pandas as pd
import pytest

import tmetoolkit as tmt


@pytest.fixture(scope="module")
def annotated():
    a = tmt.datasets.simulate(n_samples=3, n_cells=2000, seed=5)
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    return a


def test_exhausted_cells_carry_more_receptors(annotated):
    o = annotated.obs
    n = o["tmt_checkpoint_n"]
    tex = (o["true_state"] == "CD8 Tex") & (o["tmt_lineage"] == "CD8 T")
    naive = (o["true_state"] == "CD8 naive/memory") & (o["tmt_lineage"] == "CD8 T")
    assert n[tex].mean() > n[naive].mean() + 1
    assert n[o["tmt_lineage"] == "Fibroblast"].isna().all()
    pat = o.loc[tex, "tmt_checkpoint_pattern"].astype(str)
    assert pat.str.contains("TIM-3").mean() > 0.5


def test_sample_table(annotated):
    tab = annotated.uns["tmt_checkpoints"]["table"]
    assert list(tab.index) == ["S01", "S02", "S03"]
    assert {"cd8_frac_PD-1", "cd8_frac_ge2_receptors", "cd8_frac_ge3_receptors", "malignant_frac_PD-L1",
            "myeloid_frac_PD-L1"} <= set(tab.columns)
    assert (tab["cd8_frac_ge2_receptors"] >= tab["cd8_frac_ge3_receptors"]).all()
    # the inflamed sample (more exhausted CD8 T cells planted) has more co-expression
    samples = annotated.uns["tmt_simulation"]["samples"].set_index("sample")
    assert samples.loc["S01", "phenotype"] == "inflamed"
    assert tab.loc["S01", "cd8_frac_ge2_receptors"] > tab.loc["S03", "cd8_frac_ge2_receptors"] or np.isnan(
        tab.loc["S03", "cd8_frac_ge2_receptors"])


def test_needs_annotation_and_reports_missing_receptors(sim_small):
    with pytest.raises(KeyError, match="annotate"):
        tmt.tl.checkpoints(sim_small)
    a = sim_small[:, [g for g in sim_small.var_names if g != "LAG3"]].copy()
    tmt.tl.annotate(a)
    with pytest.warns(tmt.TmtWarning, match="LAG-3"):
        tmt.tl.checkpoints(a)
    assert a.obsm["tmt_checkpoints"]["LAG-3"].isna().all()
    assert a.uns["tmt_checkpoints"]["table"]["cd8_frac_LAG-3"].isna().all()
    a.raw = sim_small  # the whole panel in raw, as after selecting variable genes: the warning says where LAG3 is
    with pytest.warns(tmt.TmtWarning, match=r"adata.raw holds LAG3"):
        tmt.tl.checkpoints(a)


def test_no_receptor_measured_is_unknown_not_zero(annotated):
    """A panel without any receptor gene has no receptor counts: NaN, never 0 receptors per cell."""
    receptors = {"PDCD1", "HAVCR2", "LAG3", "TIGIT", "CTLA4"}
    a = annotated[:, [g for g in annotated.var_names if g not in receptors]].copy()
    with pytest.warns(tmt.TmtWarning, match="not measured"):
        tmt.tl.checkpoints(a)
    assert a.obs["tmt_checkpoint_n"].isna().all() and a.obs["tmt_checkpoint_pattern"].isna().all()
    tab = a.uns["tmt_checkpoints"]["table"]
    assert tab.filter(like="_receptors").isna().all().all() and tab["n_cd8"].gt(0).all()
    tmt.tl.immunosuppression(a)
    assert a.uns["tmt_immunosuppression"]["table"]["checkpoint_coexpression"].isna().all()


@pytest.mark.parametrize("min_counts", [0, -1, float("nan")])
def test_a_detection_threshold_of_no_counts_is_refused(annotated, min_counts):
    """min_counts=-1 (or 0) was accepted without a word and read as 1, since a gene without counts is never
    detected: a threshold of no counts is a mistake to name, not to follow silently."""
    with pytest.raises(tmt.TmtInputError, match="min_counts must be a number above 0"):
        tmt.tl.checkpoints(annotated.copy(), min_counts=min_counts)

@pytest.fixture(scope="module")
def thinned(annotated):
    """Receptor counts thinned to a quarter, checkpoints without and with neighbour smoothing."""
    import scanpy as sc

    rng = np.random.default_rng(0)
    thin = annotated.copy()
    X = thin.X.tocsc(copy=True)
    for g in ("PDCD1", "HAVCR2", "LAG3", "TIGIT", "CTLA4"):
        j = thin.var_names.get_loc(g)
        col = X[:, j].toarray().ravel().astype(int)
        X[:, j] = rng.binomial(col, 0.25).astype(X.dtype)[:, None]
    thin.X = X.tocsr()
    q = thin.copy()
    sc.pp.normalize_total(q)
    sc.pp.log1p(q)
    sc.pp.pca(q, n_comps=30, random_state=0)
    sc.pp.neighbors(q, n_neighbors=15, random_state=0)
    thin.obsp["connectivities"] = q.obsp["connectivities"]
    o = annotated.obs
    cd8 = o["tmt_lineage"] == "CD8 T"
    tex, naive = cd8 & (o["true_state"] == "CD8 Tex"), cd8 & (o["true_state"] == "CD8 naive/memory")
    tmt.tl.checkpoints(thin)
    raw = thin.obs["tmt_checkpoint_n"].copy()
    tmt.tl.checkpoints(thin, smooth=True)
    return {"thin": thin, "full": o["tmt_checkpoint_n"], "raw": raw, "smooth": thin.obs["tmt_checkpoint_n"],
            "tex": tex, "naive": naive}


def test_smoothing_adds_only_what_neighbours_show(thinned):
    """Thinned receptor counts lose co-expression; smoothing adds receptors most neighbours show, never removes
    one, and does not make naive cells look exhausted."""
    full, raw, smooth, tex, naive = (thinned[k] for k in ("full", "raw", "smooth", "tex", "naive"))
    assert thinned["thin"].uns["tmt_checkpoints"]["params"]["smooth"]
    assert raw[tex].mean() < full[tex].mean() - 1  # dropout removed more than one receptor per exhausted cell
    assert smooth[naive].mean() <= full[naive].mean() and (smooth[naive] >= 2).mean() < 0.1
    tnk = raw.notna()
    assert (smooth[tnk] >= raw[tnk]).all()  # smoothing only adds receptors that most neighbours show


@pytest.mark.xfail(strict=True, reason="on simulate()'s non-circular programmes smoothing over a whole-transcriptome "
                   "neighbour graph adds almost nothing to exhausted CD8 T cells (thinned 2.39, smoothed 2.40 at the "
                   "first calibration; 2.92 -> 3.80 when the simulator planted the registry's sets): fewer than half "
                   "of a CD8 Tex cell's 15 neighbours share its receptors")
def test_smoothing_recovers_receptors_lost_to_dropout(thinned):
    raw, smooth, tex = thinned["raw"], thinned["smooth"], thinned["tex"]
    assert smooth[tex].mean() > raw[tex].mean() + 0.5


def test_protein_panel_receptors_and_ligands_from_gates(sim_small):
    """A synthetic multiplex-IF panel with PD-1 and TIM-3 planted on exhausted CD8 T cells and PD-L1 on
    macrophages: receptors and ligands come from the marker gates, and the protein-based immunosuppression and
    resistance rows are measured where the panel can see them and missing, never 0, where it cannot."""
    import anndata as ad

    o = sim_small.obs
    lin, state = o["true_lineage"].astype(str), o["true_state"].astype(str)
    tex = state == "CD8 Tex"
    positive = {
        "CD8": lin == "CD8 T", "CD3": lin.isin(["CD8 T", "CD4 T"]), "CD4": lin == "CD4 T",
        "FOXP3": state == "Treg", "CD68": lin == "Monocyte/Macrophage", "PanCK": lin == "Malignant/Epithelial",
        "PD-1 (Opal 650)": tex, "TIM-3": tex, "PD-L1 (Opal 520)": lin == "Monocyte/Macrophage",
    }
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.lognormal(np.where(p, 1.5, -1.5), 0.5) for p in positive.values()])
    panel = ad.AnnData(X.astype(np.float32), obs=o[["sample"]].copy())
    panel.var_names = list(positive)
    tmt.tl.annotate(panel)
    with pytest.warns(tmt.TmtWarning, match="LAG-3, TIGIT, CTLA-4"):
        tmt.tl.checkpoints(panel)
    det = panel.obsm["tmt_checkpoints"]
    assert det["PD-1"][tex].mean() > 0.95 and det["PD-1"][~tex].mean() < 0.05
    assert det[["LAG-3", "TIGIT", "CTLA-4", "Galectin-9"]].isna().all().all()
    called_cd8 = panel.obs["tmt_lineage"] == "CD8 T"
    tab = panel.uns["tmt_checkpoints"]["table"]
    truth = tex[called_cd8].groupby(o.loc[called_cd8, "sample"], observed=True).mean()
    np.testing.assert_allclose(tab["cd8_frac_ge2_receptors"], truth.reindex(tab.index), atol=0.05)
    assert (tab["myeloid_frac_PD-L1"] > 0.9).all() and (tab["malignant_frac_PD-L1"] < 0.1).all()
    assert tab["cd8_frac_ge3_receptors"].isna().all()  # two receptors on the panel: three cannot be seen

    tmt.tl.immunosuppression(panel)
    sup = panel.uns["tmt_immunosuppression"]["table"]
    np.testing.assert_allclose(sup["checkpoint_coexpression"], tab["cd8_frac_ge2_receptors"].reindex(sup.index))
    planted_treg = (state == "Treg")[lin == "CD4 T"].groupby(o.loc[lin == "CD4 T", "sample"], observed=True).mean()
    np.testing.assert_allclose(sup["treg_fraction_cd4"], planted_treg.reindex(sup.index), atol=0.1)
    assert sup["checkpoint_ligands"].between(0, 1).all()
    for col in ("mdsc_fraction_myeloid", "mycaf_fraction_caf", "m2_m1_balance", "hypoxia"):  # no marker for them
        assert sup[col].isna().all(), col
    tmt.tl.resistance_profile(panel)
    long = panel.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    for mech in ("Hypoxia", "DNA/histone modifications"):  # a hypothesis without its programme is not shown as one
        assert long.loc[("S01", mech), "status"] == "not assessable on a protein panel: needs expression"
    assert np.isfinite(long.loc[("S01", "Regulatory T cells (Tregs)"), "value"])


def test_expressed_is_read_on_the_data_scale(annotated):
    """log2(x + 0.001) of the normalised counts (negative values where a gene has no counts), the same shifted by a
    constant, and log1p of them call the same receptors as the raw counts; before, every value above zero counted,
    so in log2 data with negatives a gene with no counts but a shift counted as expressed, or one with a few counts
    did not. z-scores are refused with the fix named."""
    import scipy.sparse as sp

    a = annotated.copy()
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    norm = X / X.sum(axis=1, keepdims=True) * 1e4
    expected = a.obsm["tmt_checkpoints"].copy()
    assert np.nansum(expected.to_numpy()) > 100
    layers = {"log2": np.log2(norm + 0.001), "shifted": np.log2(norm + 0.001) + 12.0, "log1p": np.log1p(norm),
              "log1p_sparse": sp.csr_matrix(np.log1p(norm))}
    for name, values in layers.items():
        a.layers[name] = values
    assert layers["log2"].min() < 0 and tmt.pp.check_input(a, layer="log2").state == "lognorm"
    for name in layers:
        tmt.tl.checkpoints(a, layer=name)
        got = a.obsm["tmt_checkpoints"]
        pd.testing.assert_frame_equal(got, expected, obj=name)
    a.layers["z"] = (layers["log1p"] - layers["log1p"].mean(0)) / np.maximum(layers["log1p"].std(0), 1e-9)
    with pytest.raises(ValueError, match="z-scored|centred per gene.*layer="):
        tmt.tl.checkpoints(a, layer="z")


def test_protein_checkpoint_on_a_channel_with_one_population():
    """Schürch's CODEX spot: PD-1 shows one population (Ashman's D 0.54), so it is gated at that population's
    upper tail, not at the crossing of two overlapping Gaussians. Schürch's own PD-1+ gate counts 19% of its CD8
    T cells; at the crossing 71% of those we call CD8 T were PD-1+ (precision 0.26 against Schürch's gate), at
    the tail 20% (precision 0.48)."""
    from .conftest import shared_file

    a = shared_file("schurch2020_crc_codex/schurch2020_crc_codex_spot9A_2434cells.h5ad")
    tmt.tl.annotate(a)
    gates = pd.DataFrame(a.uns["tmt_annotate"]["gates"]).set_index("marker")
    assert gates.loc["PD1", "source"] == "tail" and gates.loc["CD8", "source"] == "mixture"
    import matplotlib.pyplot as plt

    fig = tmt.pl.gates(a, markers=["PD1", "CD8"])
    assert "one population" in fig.axes[0].get_title() and "one population" not in fig.axes[1].get_title()
    plt.close(fig)
    tmt.tl.checkpoints(a)
    cd8 = (a.obs["ClusterName"] == "CD8+ T cells") & (a.obs["tmt_lineage"] == "CD8 T")
    pd1 = a.obsm["tmt_checkpoints"]["PD-1"][cd8] == 1
    theirs = a.obs["func_CD8+PD-1+"][cd8].astype(int) == 1
    assert abs(pd1.mean() - theirs.mean()) < 0.1, (pd1.mean(), theirs.mean())
    assert theirs[pd1].mean() >= 0.4 and pd1[theirs].mean() >= 0.45, (theirs[pd1].mean(), pd1[theirs].mean())


def test_batch_corrected_values_are_refused(sim_small):
    """After ComBat every gene of a cell holds a value of its own, so 'above the cell's floor' would detect every
    receptor in every cell; log2(x + eps) values, negative too, keep their floor and are read."""
    import scanpy as sc

    from .conftest import batch_corrected

    tmt.tl.annotate(sim_small)
    floored = sim_small.copy()
    sc.pp.normalize_total(floored)
    floored.X = np.log2(floored.X.toarray() + 0.01) if hasattr(floored.X, "toarray") else np.log2(floored.X + 0.01)
    tmt.tl.checkpoints(floored)
    assert floored.obsm["tmt_checkpoints"]["PD-1"].mean() < 0.5
    with pytest.raises(tmt.TmtInputError, match="ComBat"):
        tmt.tl.checkpoints(batch_corrected(sim_small))


def test_unsorted_sparse_indices_are_left_as_they_are(sim_small):
    """A CSR matrix whose column indices are not sorted within rows (as some readers leave them; Zilionis' file):
    scipy sorts them in place when it reads a row minimum of a view on them, so the tools read copies and X keeps
    its arrays."""
    import scanpy as sc
    import scipy.sparse as sp

    sc.pp.normalize_total(sim_small, target_sum=1e4)
    sc.pp.log1p(sim_small)  # log values: each cell's floor is read, by a row minimum that sorts indices in place
    X = sp.csr_matrix(sim_small.X, dtype=np.float32)
    for i in range(X.shape[0]):  # reverse each row's entries: same matrix, unsorted indices
        a, b = X.indptr[i], X.indptr[i + 1]
        X.indices[a:b], X.data[a:b] = X.indices[a:b][::-1].copy(), X.data[a:b][::-1].copy()
    X.has_sorted_indices = False
    sim_small.X = X
    indices, data = X.indices.copy(), X.data.copy()
    tmt.tl.annotate(sim_small)
    tmt.tl.checkpoints(sim_small)
    assert np.array_equal(sim_small.X.indices, indices) and np.array_equal(sim_small.X.data, data)


def test_protein_panel_is_told_how_to_name_a_receptor_channel():
    """phenoptr with its PD-1 channel named by its fluorophore: checkpoints said "receptor genes not measured", words
    for RNA, without how to point annotate at the channel; the mapping it names now makes PD-1 measured."""
    from .conftest import real_data

    v = real_data("phenoptr")
    channel = "PD1 (Opal 650)"
    v.var_names = ["Opal 650" if c == channel else c for c in v.var_names]
    tmt.tl.annotate(v)
    with pytest.warns(tmt.TmtWarning, match=r"receptor channels not measured.*PD-1.*markers=\{'PD1': '<channel>'\}"):
        tmt.tl.checkpoints(v)
    tmt.tl.annotate(v, markers={"PD1": "Opal 650"})
    with pytest.warns(tmt.TmtWarning, match="not measured") as caught:
        tmt.tl.checkpoints(v)
    assert not any("PD-1," in str(w.message) or "PD-1;" in str(w.message) for w in caught)
    assert v.uns["tmt_checkpoints"]["table"]["cd8_frac_PD-1"].notna().all()


def test_checkpoints_of_several_samples_read_as_one_are_warned_about(sim_small):
    """After annotate(sample_key="Patient"), checkpoints(adata) (as the tutorials call it) made one table row 'all'
    without a word; it warns as the other per-sample tools do and names the key annotate ran with."""
    import warnings

    a = sim_small.copy()
    a.obs["Patient"] = a.obs.pop("sample")
    del a.obsm["spatial"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(a, sample_key="Patient")
    with pytest.warns(tmt.TmtWarning, match=r"checkpoints reads all cells as one sample; adata.obs holds .*'Patient' "
                                            r"\(3 values\).*tmt.tl.annotate ran with sample_key='Patient'"):
        tmt.tl.checkpoints(a)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tmt.tl.checkpoints(a, sample_key="Patient")
    assert not any("as one sample" in str(w.message) for w in caught)
    assert list(a.uns["tmt_checkpoints"]["table"].index) == ["S01", "S02", "S03"]

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData
from sklearn.metrics import roc_auc_score

import tmetoolkit as tmt
from tmetoolkit._utils import TmtCoverageWarning, TmtInputError, TmtMatrixError
from tmetoolkit.sig._genes import match_genes

from .conftest import real_data

PLANTED = [  # (signature, planted true state or lineage)
    ("Treg_core", "Treg"), ("CD8_Tex", "CD8 Tex"), ("TAM_M2_like", "TAM M2-like"), ("TAM_M1_like", "TAM M1-like"),
    ("myCAF", "myCAF"), ("iCAF", "iCAF"), ("PMN_MDSC_like", "PMN-MDSC-like"), ("M_MDSC_like", "M-MDSC-like"),
]


def _snapshot(adata):
    X = adata.X
    return (X.data.tobytes(), X.indices.tobytes(), X.indptr.tobytes()) if sp.issparse(X) else X.tobytes()


@pytest.mark.parametrize("name", ["puram", "chen"])
def test_mean_ctrl_equals_scanpy_score_genes(name):
    """Same genes and same random_state give the same control genes and the same score as sc.tl.score_genes."""
    a = real_data(name)
    b = a.copy()
    if name == "chen":  # raw counts: tmetoolkit normalises internally, scanpy needs it done first
        sc.pp.normalize_total(b)
        sc.pp.log1p(b)
    tmt.tl.score(a, "all", method="mean_ctrl")
    scores = a.obsm["tmt_scores"]
    n = 0
    for s in tmt.sig.collection("all"):
        if s.name not in scores or s.genes_down or s.weights:
            continue
        genes = [a.var_names[p[0]] for p in match_genes(s.genes_up, a.var_names, "human").values()]
        sc.tl.score_genes(b, genes, score_name="ref", random_state=0)
        r = np.corrcoef(b.obs["ref"], scores[s.name])[0, 1]
        assert r >= 0.99, (s.name, r)
        np.testing.assert_allclose(scores[s.name], b.obs["ref"], atol=1e-4)
        n += 1
    assert n > 90


@pytest.mark.parametrize("method", ["mean_ctrl", "rank", "aucell"])
def test_planted_states_score_highest(sim_small, method):
    tmt.tl.score(sim_small, [p[0] for p in PLANTED], method=method)
    S = sim_small.obsm["tmt_scores"]
    for sig, state in PLANTED:
        truth = (sim_small.obs["true_state"] == state).to_numpy()
        # AUCell reads each cell's top 5% of genes, where a small set's genes are often absent: lowest over seeds
        # 7-10 0.65 (PMN_MDSC_like, whose activation genes neutrophils share; the other methods 0.85 and above)
        assert roc_auc_score(truth, S[sig]) > (0.6 if method == "aucell" else 0.8), (sig, method)


def test_storage_and_provenance(sim_small):
    before = _snapshot(sim_small)
    sim_small.layers["counts"] = sim_small.X.copy()
    tmt.tl.score(sim_small, "tam")
    tmt.tl.score(sim_small, ["NK", {"mine": ["CD3E", "CD2"]}], method="rank")
    assert _snapshot(sim_small) == before
    S = sim_small.obsm["tmt_scores"]
    assert isinstance(S, pd.DataFrame) and S.index.equals(sim_small.obs_names)
    assert {"TAM_M2_like", "NK", "mine"} <= set(S.columns)  # later calls add columns
    meta = sim_small.uns["tmt_scores"]
    assert meta["params"]["method"] == "rank" and meta["params"]["input_state"] == "counts"
    tab = meta["signatures"].set_index("signature")
    assert tab.loc["TAM_M2_like", "method"] == "mean_ctrl" and tab.loc["NK", "method"] == "rank"
    assert "CD163" in tab.loc["TAM_M2_like", "genes_used"]
    assert tab.loc["TAM_M2_like", "version"] == 1


def test_round_trip_h5ad(sim_small, tmp_path):
    tmt.tl.score(sim_small, "caf")
    sim_small.write_h5ad(tmp_path / "a.h5ad")
    back = sc.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(back.obsm["tmt_scores"], sim_small.obsm["tmt_scores"])
    pd.testing.assert_frame_equal(back.uns["tmt_scores"]["signatures"], sim_small.uns["tmt_scores"]["signatures"])


@pytest.mark.parametrize("method", ["mean_ctrl", "rank", "aucell"])
def test_dense_csr_csc_chunks_agree(sim_small, method):
    a = sim_small[:600].copy()
    tmt.tl.score(a, "treg", method=method)
    ref = a.obsm["tmt_scores"].to_numpy()
    for X, chunk in ((a.X.toarray(), 10_000), (sp.csc_matrix(a.X), 10_000), (a.X, 97)):
        b = AnnData(X, obs=a.obs[[]], var=a.var[[]])
        tmt.tl.score(b, "treg", method=method, chunk_size=chunk)
        np.testing.assert_allclose(b.obsm["tmt_scores"].to_numpy(), ref, atol=1e-10)


def test_counts_are_normalised_internally(sim_small):
    """Scoring raw counts equals scoring the log-normalised layer; ranks do not depend on normalisation."""
    ln = sim_small.copy()
    sc.pp.normalize_total(ln)
    sc.pp.log1p(ln)
    for method in ("mean_ctrl", "rank"):
        tmt.tl.score(sim_small, "tcell", method=method)
        tmt.tl.score(ln, "tcell", method=method)
        np.testing.assert_allclose(sim_small.obsm["tmt_scores"], ln.obsm["tmt_scores"], atol=1e-5)


def test_mouse_symbols_are_translated(sim_small):
    h = sim_small.copy()
    h2m = tmt.sig.to_mouse(list(h.var_names))
    one_to_one = pd.Series({g: h2m[g][0] for g in h.var_names if g in h2m and len(h2m[g]) == 1})
    one_to_one = one_to_one[~one_to_one.duplicated(keep=False)]
    keep = [*one_to_one.index, *[g for g in h.var_names if g.startswith("SIMGENE")][:300]]
    h = h[:, keep].copy()
    m = h.copy()
    m.var_names = [one_to_one.get(g, g) for g in h.var_names]
    assert tmt.pp.check_input(m).species == "mouse"
    tmt.tl.score(h, ["CD8_T", "Treg_core", "TAM_M2_like"], method="rank")
    tmt.tl.score(m, ["CD8_T", "Treg_core", "TAM_M2_like"], method="rank")
    for c in ("CD8_T", "Treg_core", "TAM_M2_like"):
        assert np.corrcoef(h.obsm["tmt_scores"][c], m.obsm["tmt_scores"][c])[0, 1] > 0.99


def test_weights_and_down_genes_count():
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(300, 400)).astype(float)
    genes = [f"G{i}" for i in range(400)]
    X[:100, 0] += 20  # G0 high in the first 100 cells
    X[100:200, 1] += 20  # G1 high in the next 100 cells
    a = AnnData(X, var=pd.DataFrame(index=genes))
    tmt.tl.score(a, {"up_down": ["G0", "G1-"]}, method="rank")
    s = a.obsm["tmt_scores"]["up_down"].to_numpy()
    assert s[:100].mean() > s[200:].mean() > s[100:200].mean()
    sig = tmt.sig.Signature("w", ("G0", "G1"), weights={"G0": 9.0, "G1": 1.0})
    tmt.tl.score(a, sig)
    w = a.obsm["tmt_scores"]["w"].to_numpy()
    assert w[:100].mean() > 2 * w[100:200].mean()


def test_bad_input_errors(sim_small):
    scaled = sim_small.copy()
    sc.pp.normalize_total(scaled)
    sc.pp.log1p(scaled)
    scaled.X = scaled.X.toarray()
    sc.pp.scale(scaled)
    with pytest.raises(TmtMatrixError, match="scaled"):  # another layer may hold the values: a typed error
        tmt.tl.score(scaled, "tam")
    ens = sim_small.copy()
    ens.var_names = [f"ENSG{i:011d}" for i in range(ens.n_vars)]
    with pytest.raises(ValueError, match="Ensembl") as err:
        tmt.tl.score(ens, "tam")
    assert not isinstance(err.value, TmtMatrixError)
    lower = sim_small.copy()
    lower.var_names = lower.var_names.str.lower()
    with pytest.raises(ValueError, match=r"str\.upper\(\)"):
        tmt.tl.score(lower, "tam")
    empty = sim_small.copy()
    empty.X = None
    with pytest.raises(TmtMatrixError, match="layer="):
        tmt.tl.score(empty, "tam")
    nan = sim_small[:50].copy()
    nan.X = nan.X.toarray()
    nan.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tmt.tl.score(nan, "tam")
    with pytest.raises(ValueError, match="method"):
        tmt.tl.score(sim_small, "tam", method="ucell")
    with pytest.raises(KeyError, match="TAM_M2_like"):
        tmt.tl.score(sim_small, "TAM_M2")


def test_too_few_genes_are_dropped_and_listed(sim_small):
    treg_genes = {"FOXP3", "CTLA4", "IL10", "TNFRSF18", "CCR8"}
    small = sim_small[:, [g for g in sim_small.var_names if g not in treg_genes]].copy()
    with pytest.warns(TmtCoverageWarning, match="Treg_core"):  # a TmtWarning of its own class
        tmt.tl.score(small, ["Treg_core", "NK"])
    assert "Treg_core" not in small.obsm["tmt_scores"]
    tab = small.uns["tmt_scores"]["signatures"].set_index("signature")
    assert not tab.loc["Treg_core", "scored"] and "FOXP3" in tab.loc["Treg_core", "genes_missing"]
    with pytest.raises(ValueError, match="none of the"):
        tmt.tl.score(small[:, :5].copy(), ["Treg_core"])


def test_a_gene_subset_that_cannot_score_the_signatures_asked_for_says_so(sim_small):
    """A file of selected genes holding one of T_cell's four genes: the error said to check that var_names hold
    symbols of the right species (they did). It names what was found and that adata.raw holds all genes."""
    a = sim_small[:300].copy()
    a.raw = a
    a = a[:, [g for g in a.var_names if g not in {"CD3E", "CD3G", "CD2"}]].copy()
    with pytest.warns(TmtCoverageWarning), pytest.raises(TmtInputError, match=r"T_cell \(1/4, needs 2\)") as err:
        tmt.tl.score(a, ["T_cell"])
    assert "right species" not in str(err.value) and "use_raw=True" in str(err.value)
    tmt.tl.score(a, ["T_cell"], use_raw=True)
    assert "T_cell" in a.obsm["tmt_scores"]


def test_empty_cells_get_nan_not_a_crash(sim_small):
    a = sim_small[:200].copy()
    X = a.X.tolil()
    X[5] = 0
    a.X = X.tocsr()
    with pytest.warns(tmt.TmtWarning, match="no expression"):
        tmt.tl.score(a, "treg", method="mean_ctrl")
    S = a.obsm["tmt_scores"]
    assert S.iloc[5].isna().all() and S.drop(index=a.obs_names[5]).notna().all().all()


def test_copy_and_determinism(sim_small):
    out = tmt.tl.score(sim_small, "caf", copy=True, seed=3)
    assert "tmt_scores" not in sim_small.obsm and out is not None
    again = tmt.tl.score(sim_small, "caf", copy=True, seed=3)
    pd.testing.assert_frame_equal(out.obsm["tmt_scores"], again.obsm["tmt_scores"])


def test_user_key_is_not_overwritten(sim_small):
    sim_small.obsm["mine"] = np.zeros((sim_small.n_obs, 2))
    with pytest.raises(ValueError, match="not made by tmetoolkit"):
        tmt.tl.score(sim_small, "treg", key_added="mine")


def test_ssgsea_orders_cells_and_is_chunk_independent(sim_small):
    a = sim_small[:600].copy()
    tmt.tl.score(a, ["CD8_T", "TAM_M2_like"], method="ssgsea")
    S = a.obsm["tmt_scores"]
    lin = a.obs["true_lineage"].astype(str)
    assert S.loc[lin == "CD8 T", "CD8_T"].mean() > S.loc[lin != "CD8 T", "CD8_T"].quantile(0.9)
    mac = lin == "Monocyte/Macrophage"
    assert S.loc[mac, "TAM_M2_like"].mean() > S.loc[~mac, "TAM_M2_like"].mean()
    b = a.copy()
    tmt.tl.score(b, ["CD8_T", "TAM_M2_like"], method="ssgsea", chunk_size=128)
    np.testing.assert_allclose(b.obsm["tmt_scores"].to_numpy(), S.to_numpy())


@pytest.mark.parametrize(("ctrl_size", "n_bins"), [(100, 10), (20, 40)])
def test_control_parameters_match_scanpy(sim_small, ctrl_size, n_bins):
    """ctrl_size and n_bins mean what they mean in sc.tl.score_genes."""
    sc.pp.normalize_total(sim_small)
    sc.pp.log1p(sim_small)
    genes = [*tmt.sig.get("CD8_T").genes_up, *tmt.sig.get("T_cell").genes_up]
    tmt.tl.score(sim_small, {"t": genes}, ctrl_size=ctrl_size, n_bins=n_bins)
    sc.tl.score_genes(sim_small, genes, ctrl_size=ctrl_size, n_bins=n_bins, score_name="ref", random_state=0)
    np.testing.assert_allclose(sim_small.obsm["tmt_scores"]["t"], sim_small.obs["ref"], atol=1e-5)


def test_control_probes_are_not_control_genes(sim_small):
    """Imaging panels carry negative-control and blank features (Xenium NegControlProbe_/BLANK_, CosMx NegPrb,
    MERSCOPE Blank-). They are not genes, so they are left out of mean_ctrl's control pool: the calls are those of
    the same panel without them, whether or not the user filtered them (on Xenium's breast panel, 161 of 541
    features, keeping them had changed 12% of the lineage calls)."""
    import anndata as ad

    from tmetoolkit.sig._genes import control_probes

    panel = sim_small[:, :400].copy()  # a targeted panel: few background genes, as on imaging platforms
    names = [f"NegControlProbe_{i:05d}" for i in range(40)] + [f"BLANK_{i:04d}" for i in range(60)] + \
        [f"NegPrb{i}" for i in range(20)] + [f"Blank-{i}" for i in range(20)]
    assert not control_probes(["BLK", "NEGR1", "CD8A", "SYSTEMIC"]).any()

    def with_probes(rate):
        counts = np.random.default_rng(0).poisson(rate, size=(panel.n_obs, len(names))).astype(np.float32)
        probes = ad.AnnData(sp.csr_matrix(counts), obs=panel.obs[[]], var=pd.DataFrame(index=names))
        return ad.concat([panel, probes], axis=1, merge="first")

    silent, counted = with_probes(0.0), with_probes(0.004)  # 0.3% of the counts, as on Xenium
    assert control_probes(counted.var_names).sum() == len(names)
    for a in (panel, silent, counted):
        tmt.tl.annotate(a)
    assert silent.uns["tmt_scores"]["params"]["control_probes_left_out"] == len(names)
    # probes without counts change nothing at all; with counts, only the library sizes move (0.3%)
    pd.testing.assert_frame_equal(panel.obsm["tmt_scores"], silent.obsm["tmt_scores"])
    assert (panel.obs["tmt_lineage"] == silent.obs["tmt_lineage"]).all()
    assert (panel.obs["tmt_lineage"] == counted.obs["tmt_lineage"]).mean() >= 0.95  # 0.84 among control genes
    for method in ("rank", "aucell"):  # ranked among the genes only
        tmt.tl.score(panel, "lineage", method=method, key_added="r")
        tmt.tl.score(silent, "lineage", method=method, key_added="r")
        pd.testing.assert_frame_equal(panel.obsm["r"], silent.obsm["r"])


def test_highly_variable_subset_points_to_raw(sim_small):
    """The usual scanpy object keeps all genes in .raw and a few highly variable ones in X: scores would miss the
    signature genes outside X, so score (and annotate) say where they are."""
    a = sim_small.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.raw = a
    sc.pp.highly_variable_genes(a, n_top_genes=300)
    hvg = a[:, a.var["highly_variable"]].copy()
    with pytest.warns(tmt.TmtWarning, match=r"adata.raw.to_adata\(\)"):
        tmt.tl.score(hvg, "lineage")
    with pytest.warns(tmt.TmtWarning, match="signature genes are in raw only"):
        tmt.tl.annotate(hvg)
    full = hvg.raw.to_adata()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tmt.TmtWarning)
        tmt.tl.score(full, ["T_cell", "CD8_T"])  # all genes in X: nothing to say


def test_genes_in_raw_only_are_counted_once(sim_small):
    """X without 5 signature genes (and the simulator's background genes) that adata.raw holds: the warning
    counted a gene once per signature holding it (CD8A, PTPRC ... are in dozens), hundreds of 'signature genes'
    for 5; it counts genes."""
    import re

    a = sim_small.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.raw = a
    gone = ["CD8A", "PTPRC", "CD3E", "FOXP3", "CD68"]
    keep = [g for g in a.var_names if g not in gone and not g.startswith("SIMGENE")]
    with pytest.warns(tmt.TmtWarning, match="signature genes are in raw only") as rec:
        tmt.pp.check_input(a[:, keep].copy())
    found = [re.search(r"(\d+) signature genes are in raw only", str(w.message)) for w in rec]
    counts = [int(m.group(1)) for m in found if m]
    assert counts == [len(gone)], counts


def test_tools_reuse_scores_of_the_run(sim_small, monkeypatch):
    """The pipeline scores every signature of the run once; annotate, immunosuppression and the resistance
    profile then find their columns scored and pass over the matrix no more for them. annotate reads the rows of
    the cells it called fibroblasts once more, for myCAF and iCAF scored among them."""
    from tmetoolkit._pipeline import run_signatures
    from tmetoolkit.tl import _score

    passes = []
    original = _score.score_matrix
    monkeypatch.setattr(_score, "score_matrix",
                        lambda X, plan, **kw: passes.append((X.shape[0], len(plan))) or original(X, plan, **kw))
    tmt.tl.score(sim_small, run_signatures(annotate=True))
    first = sim_small.obsm["tmt_scores"].copy()
    tmt.tl.annotate(sim_small)
    tmt.tl.immunosuppression(sim_small, sample_key="sample")
    tmt.tl.resistance_profile(sim_small, sample_key="sample")
    fibroblasts = int((sim_small.obs["tmt_lineage"] == "Fibroblast").sum())
    assert passes == [(sim_small.n_obs, first.shape[1]), (fibroblasts, 2)]
    pd.testing.assert_frame_equal(sim_small.obsm["tmt_scores"][first.columns], first)


def test_score_once_scores_what_differs(sim_small):
    """A signature is taken from obsm only when it was scored on the same genes with the same method, layer and
    settings: the same call gives the same numbers as scoring afresh, and any difference scores again."""
    from tmetoolkit.tl._score import score_once

    sim_small.layers["counts"] = sim_small.X.copy()
    tmt.tl.score(sim_small, ["Treg_core", "NK"], method="rank")
    rank = sim_small.obsm["tmt_scores"]["NK"].copy()
    score_once(sim_small, ["NK"], method="rank")  # same: kept
    assert sim_small.obsm["tmt_scores"]["NK"].equals(rank)
    score_once(sim_small, ["NK"])  # another method: scored, as score() would
    fresh = sim_small.copy()
    tmt.tl.score(fresh, ["NK"])
    np.testing.assert_allclose(sim_small.obsm["tmt_scores"]["NK"], fresh.obsm["tmt_scores"]["NK"])
    tab = sim_small.uns["tmt_scores"]["signatures"].set_index("signature")
    assert tab.loc["NK", "method"] == "mean_ctrl" and tab.loc["Treg_core", "method"] == "rank"
    score_once(sim_small, ["NK"], seed=3)  # other control genes
    assert tab.loc["NK", "settings"] != sim_small.uns["tmt_scores"]["signatures"].set_index("signature").loc[
        "NK", "settings"]
    score_once(sim_small, ["NK"], seed=3, layer="counts")
    assert sim_small.uns["tmt_scores"]["signatures"].set_index("signature").loc["NK", "layer"] == "counts"
    fewer = sim_small[:, [g for g in sim_small.var_names if g != "NKG7"]].copy()
    before = fewer.obsm["tmt_scores"]["NK"].copy()
    score_once(fewer, ["NK"], seed=3, layer="counts")  # one gene fewer: scored again
    assert not fewer.obsm["tmt_scores"]["NK"].equals(before)
    # a gene subset that keeps every NK gene: its control genes came from the other panel, so it is scored again,
    # with the numbers a fresh object gives
    kept = set(tmt.sig.get("NK").genes)
    panel = fewer[:, [g for i, g in enumerate(fewer.var_names) if g in kept or i % 2]].copy()
    score_once(panel, ["NK"], seed=3, layer="counts")
    clean = panel.copy()
    del clean.obsm["tmt_scores"], clean.uns["tmt_scores"]
    tmt.tl.score(clean, ["NK"], seed=3, layer="counts")
    np.testing.assert_allclose(panel.obsm["tmt_scores"]["NK"], clean.obsm["tmt_scores"]["NK"])
    # scored directly on genes that no longer hold a requested signature: its earlier column goes
    no_nk = fewer[:, ~fewer.var_names.isin(tmt.sig.get("NK").genes)].copy()
    with pytest.warns(tmt.TmtWarning):
        tmt.tl.score(no_nk, ["NK", "Treg_core"], seed=3, layer="counts")
    assert "NK" not in no_nk.obsm["tmt_scores"] and "Treg_core" in no_nk.obsm["tmt_scores"]
    assert not no_nk.uns["tmt_scores"]["signatures"].set_index("signature").loc["NK", "scored"]


def test_down_genes_alone_do_not_make_a_signature_scorable(sim_small):
    """A signature whose up genes are all missing is not scored, though its down genes reach ``min_genes``: they
    alone would be scored as its programme (Monocyte's C1QA and C1QB, which it lacks, called Puram's macrophages
    monocytes on a file of variable genes)."""
    sig = tmt.sig.Signature("lacks_c1q", genes_up=("FCN1", "VCAN"), genes_down=("C1QA", "C1QB"), min_genes=2)
    panel = sim_small[:, [g for g in sim_small.var_names if g not in ("FCN1", "VCAN")]].copy()
    with pytest.warns(TmtCoverageWarning, match=r"lacks_c1q \(2/4, needs 2 with an up gene\)"):
        tmt.tl.score(panel, [sig, "Macrophage"])
    assert "lacks_c1q" not in panel.obsm["tmt_scores"]
    tmt.tl.score(sim_small, [sig])  # with an up gene it is scored
    assert "lacks_c1q" in sim_small.obsm["tmt_scores"]
    only_down = tmt.sig.Signature("only_down", genes_up=(), genes_down=("C1QA", "C1QB"))
    with pytest.warns(TmtCoverageWarning, match=r"only_down \(2/2, needs 1 with an up gene\)"):
        tmt.tl.score(sim_small, [only_down, "Macrophage"])
    assert "only_down" not in sim_small.obsm["tmt_scores"]


def test_scores_of_log_values_do_not_depend_on_the_base(sim_small):
    """log2(CP10k + 1) gave mean_ctrl scores 1.44 times those of ln(CP10k + 1) (log10: 0.43 times), and with them
    every threshold in score units (bulk immunosuppression components, resistance flags, the tumour-spot gap)."""
    X = sim_small.X.toarray()
    cp = X / X.sum(axis=1, keepdims=True) * 1e4
    scores = {}
    for base, values in (("e", np.log1p(cp)), ("2", np.log2(cp + 1)), ("10", np.log10(cp + 1))):
        a = sim_small.copy()
        a.X = sp.csr_matrix(values.astype(np.float32))
        tmt.tl.score(a, ["CD8_T", "Treg_core", "IFNG_6"])
        assert a.uns["tmt_scores"]["params"]["log_base"] == base
        scores[base] = a.obsm["tmt_scores"].to_numpy()
    np.testing.assert_allclose(scores["2"], scores["e"], atol=1e-5)
    np.testing.assert_allclose(scores["10"], scores["e"], atol=1e-5)


def test_empty_signatures_and_a_missing_gmt_file_are_typed_errors(sim_small, tmp_path):
    from tmetoolkit import TmtInputError

    with pytest.raises(TmtInputError, match="signatures is empty"):
        tmt.tl.score(sim_small, [])
    with pytest.raises(TmtInputError, match="does not exist.*signature or collection"):
        tmt.tl.score(sim_small, str(tmp_path / "mine.gmt"))
    assert "tmt_scores" not in sim_small.obsm


@pytest.mark.parametrize("change", ["times_two", "in_place", "normalised_again"])
def test_score_once_notices_values_changed_in_place(sim_small, change, monkeypatch):
    """Scores are reused only for the values they were made from: after ``X * 2``, ``X[:] = ...`` or another
    normalisation of the same cells and genes, the tools score again and get what a fresh computation gives (they
    reused the stale scores: the cache keyed on genes, method, layer and settings only)."""
    from tmetoolkit.tl._score import score_once

    sc.pp.normalize_total(sim_small)
    sc.pp.log1p(sim_small)
    names = ["NK", "Treg_core", "TAM_M2_like"]
    score_once(sim_small, names)
    stale = sim_small.obsm["tmt_scores"][names].copy()
    if change == "times_two":
        sim_small.X = sim_small.X * 2
    elif change == "in_place":
        sim_small.X.data[:] = np.sqrt(sim_small.X.data)
    else:
        sc.pp.normalize_total(sim_small, target_sum=1e6)
    score_once(sim_small, names)
    fresh = sim_small.copy()
    del fresh.obsm["tmt_scores"], fresh.uns["tmt_scores"]
    tmt.tl.score(fresh, names)
    assert not np.allclose(stale.to_numpy(), fresh.obsm["tmt_scores"][names].to_numpy())
    np.testing.assert_allclose(sim_small.obsm["tmt_scores"][names], fresh.obsm["tmt_scores"][names])
    calls = []  # unchanged values since: kept, not scored again
    monkeypatch.setattr("tmetoolkit.tl._score.score", lambda *a, **k: calls.append(1))
    score_once(sim_small, names)
    assert not calls


def test_a_subset_of_scored_cells_keeps_their_scores_and_stale_ones_go(sim_small, monkeypatch, tmp_path):
    """The check reads the recorded cells the data still hold: a subset of the cells is the same values (its
    scores are reused, as a slide's call must not depend on rescoring it alone), a change of values is not, and
    the scores of signatures not asked for again go with it rather than stay beside new ones."""
    from tmetoolkit.tl._score import score_once

    tmt.tl.score(sim_small, ["NK", "Treg_core"])
    subset = sim_small[sim_small.obs["sample"] == "S02"].copy()
    calls = []
    with monkeypatch.context() as m:
        m.setattr("tmetoolkit.tl._score.score", lambda *a, **k: calls.append(1))
        score_once(subset, ["NK", "Treg_core"])
        for store in ("h5ad", "zarr"):  # the record read back from a file (a zarr store gives StringDType names)
            path = tmp_path / f"s.{store}"
            getattr(subset, f"write_{store}")(path)
            score_once(getattr(ad, f"read_{store}")(path), ["NK", "Treg_core"])
    assert not calls
    subset.X = subset.X * 3
    score_once(subset, ["NK"])
    assert list(subset.obsm["tmt_scores"].columns) == ["NK"]
    assert list(subset.uns["tmt_scores"]["signatures"]["signature"]) == ["NK"]

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.cluster import KMeans

import tmetoolkit as tmt
from tmetoolkit._keys import STATES

from .conftest import batch_corrected, real_data, real_data_path, shared_file


@pytest.fixture(scope="module")
def annotated():
    a = tmt.datasets.simulate(n_samples=3, n_cells=3000, seed=3)
    b = a.copy()
    sc.pp.normalize_total(b)
    sc.pp.log1p(b)
    sc.pp.pca(b, n_comps=30)
    a.obs["cluster"] = KMeans(40, n_init=2, random_state=0).fit_predict(b.obsm["X_pca"]).astype(str)
    per_cell = a.copy()
    tmt.tl.annotate(per_cell)
    tmt.tl.annotate(a, groupby="cluster")
    return per_cell, a


def test_lineages_with_clusters(annotated):
    _, a = annotated
    acc = (a.obs["tmt_lineage"].astype(str) == a.obs["true_lineage"].astype(str)).mean()
    assert acc >= 0.9, acc


def test_lineages_per_cell(annotated):
    per_cell, _ = annotated
    o = per_cell.obs
    assert (o["tmt_lineage"].astype(str) == o["true_lineage"].astype(str)).mean() >= 0.95  # measured 0.982
    assert (o["tmt_lineage"] == "unassigned").mean() < 0.05


# State accuracy within each true lineage that annotate reaches on simulate()'s programmes, which come from atlases
# the registry does not cite (so these figures are not the registry reading back its own lists). Thresholds sit
# below the measured figures and well above the majority state of each lineage (about 0.35 CD8 T, 0.45 CD4 T,
# 0.37 Monocyte/Macrophage, 0.78 Neutrophil, 0.5 Fibroblast). Monocyte/Macrophage is low because annotate calls
# the planted HLA-DR-low, monocyte-like M-MDSC-like cells Monocyte (recall 0.0, see
# test_m_mdsc_like_cells_are_told_from_monocytes).
STATE_ACCURACY_SEED3 = {"CD8 T": 0.9, "CD4 T": 0.9, "Monocyte/Macrophage": 0.65, "Neutrophil": 0.9,
                        "Fibroblast": 0.93}  # measured 0.969, 0.948, 0.775, 0.996, 0.976
STATE_ACCURACY_SEEDS = {"CD8 T": 0.85, "CD4 T": 0.9, "Monocyte/Macrophage": 0.62, "Neutrophil": 0.88,
                        "Fibroblast": 0.93}  # measured means 0.905, 0.975, 0.701, 0.946, 0.978


def test_states_within_lineage(annotated):
    """Every cell of the five populations counts: an abstention is an error here."""
    per_cell, _ = annotated
    o = per_cell.obs
    for lin in STATES:
        true = o["true_lineage"] == lin
        acc = (o.loc[true, "tmt_state"].astype(str) == o.loc[true, "true_state"].astype(str)).mean()
        assert acc >= STATE_ACCURACY_SEED3[lin], (lin, acc)


def test_clusters_lend_lineages_not_states(annotated):
    """With 40 k-means clusters as ``groupby``, the cells called the same lineage as without clusters keep their
    state: a cluster holds a lineage, not a state. When the cluster's mean scores decided states, 0.956 kept it
    and seed 3's monocyte/macrophage states fell from 0.983 to 0.650 (its CD8 T states, seed 0: 0.973 -> 0.789)."""
    per_cell, clustered = annotated
    same = (per_cell.obs["tmt_lineage"].astype(str) == clustered.obs["tmt_lineage"].astype(str)) \
        & (clustered.obs["tmt_lineage"] != "unassigned")
    assert same.mean() > 0.95
    kept = per_cell.obs["tmt_state"].astype(str)[same] == clustered.obs["tmt_state"].astype(str)[same]
    assert kept.mean() >= 0.99, kept.mean()  # measured 1.0


def test_states_hold_over_seeds():
    """Three more seeds: the mean state accuracy of each population (per seed: CD8 0.78/0.98/0.96, CD4
    0.97/0.97/0.99, Mono/Mac 0.59/0.74/0.78, Neu 0.98/0.99/0.86, Fib 0.98/0.96/0.99 for seeds 0/5/7)."""
    acc = {lin: [] for lin in STATES}
    for seed in (0, 5, 7):
        a = tmt.datasets.simulate(n_samples=3, n_cells=3000, seed=seed)
        tmt.tl.annotate(a)
        for lin in STATES:
            m = a.obs["true_lineage"] == lin
            acc[lin].append((a.obs.loc[m, "tmt_state"].astype(str) == a.obs.loc[m, "true_state"].astype(str)).mean())
    means = {lin: float(np.mean(v)) for lin, v in acc.items()}
    assert all(means[lin] >= STATE_ACCURACY_SEEDS[lin] for lin in STATES), means


def test_neighbour_averaging_is_what_lifts_the_calls(sim_small):
    own = tmt.tl.annotate(sim_small, n_neighbors=1, copy=True).obs
    avg = tmt.tl.annotate(sim_small, copy=True).obs
    truth = sim_small.obs["true_state"].astype(str)
    assert (avg["tmt_state"].astype(str) == truth).mean() > (own["tmt_state"].astype(str) == truth).mean() + 0.05
    assert (avg["tmt_lineage"] == "unassigned").mean() < (own["tmt_lineage"] == "unassigned").mean()
    with pytest.raises(ValueError, match="n_neighbors"):
        tmt.tl.annotate(sim_small, n_neighbors=0)


def test_approximate_neighbours_agree_with_exact(monkeypatch):
    """Beyond ``EXACT_LIMIT`` cells the neighbours are searched within k-means partitions; on clustered data the
    search finds the exact ones."""
    from tmetoolkit._core.annotation import embedding

    rng = np.random.default_rng(0)
    pcs = ((rng.normal(size=(10, 8)) * 3)[rng.integers(0, 10, 3000)] + rng.normal(size=(3000, 8))).astype(np.float32)

    def neighbours():
        W = embedding.neighbour_weights(pcs, 15)
        return np.vstack([np.sort(W.indices[W.indptr[i]:W.indptr[i + 1]]) for i in range(W.shape[0])])

    exact = neighbours()
    monkeypatch.setattr(embedding, "EXACT_LIMIT", 0)
    approx = neighbours()
    assert approx.shape == exact.shape == (3000, 15)
    overlap = np.mean([len(set(a) & set(e)) / 15 for a, e in zip(approx, exact, strict=True)])
    assert overlap >= 0.9, overlap
    assert (approx == np.arange(3000)[:, None]).any(axis=1).all()  # every cell is among its own neighbours


def test_approximate_neighbours_cross_partition_borders():
    """Cells spread evenly (no clusters to hide a border in): each partition's border cells still find their exact
    neighbours, since every cell is listed in the partitions of its four nearest centres."""
    from sklearn.neighbors import NearestNeighbors

    from tmetoolkit._core.annotation import embedding

    pcs = np.random.default_rng(1).uniform(size=(4000, 3)).astype(np.float32)
    approx = embedding.approximate_neighbours(pcs, 10)
    exact = NearestNeighbors(n_neighbors=10).fit(pcs).kneighbors(pcs, return_distance=False)
    overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert overlap >= 0.95, overlap
    assert (approx[:, 0] == np.arange(4000)).all()


def test_marker_ranks_match_a_per_cell_ranking():
    """Within-cell ranks against scipy's rankdata cell by cell: ties share their mean rank, zeros and values at a
    row's floor (log values with negatives) are not expressed, a column asked for twice is read twice."""
    from scipy.stats import rankdata

    from tmetoolkit._core.annotation import ranks

    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.uniform(0.1, 3, size=(40, 1)), size=(40, 300)).astype(float)
    cols = np.array([0, 5, 5, 17, 299, 120])
    for X, max_rank in ((counts, 50.0), (np.log1p(counts) - 3.0, 1500.0)):
        want = np.zeros((40, cols.size))
        for i, row in enumerate(X):
            expressed = row > row.min() if row.min() < 0 else row > 0
            rank = rankdata(-row[expressed])  # 1 for the highest value
            for t, c in enumerate(cols):
                if expressed[c]:
                    r = rank[np.flatnonzero(expressed).tolist().index(c)]
                    want[i, t] = np.clip(1 - (r - 1) / max_rank, 0, 1)
        for block in (X, sp.csr_matrix(np.where(X > 0, X, 0))) if X.min() >= 0 else (X,):
            np.testing.assert_allclose(ranks.within_cell_ranks(block, cols, max_rank), want, atol=1e-6)
    csr = sp.csr_matrix(counts)
    before = csr.copy()
    ranks.within_cell_ranks(csr, cols)
    assert (csr != before).nnz == 0  # the input is left as it was


def test_dense_columns_read_what_scipy_reads():
    from tmetoolkit._core.annotation import embedding

    M = sp.random(50, 40, density=0.3, format="csr", random_state=0, dtype=np.float32)
    cols = np.array([1, 2, 7, 39])
    np.testing.assert_array_equal(embedding.dense_columns(M, cols), M[:, cols].toarray())
    np.testing.assert_array_equal(embedding.take_columns(M, cols).toarray(), M[:, cols].toarray())


def test_blocked_reads_equal_the_whole_matrix_ones():
    """annotate reads log values of few columns block by block, and nearest centres a block of cells at a time,
    so as not to hold a log-normalised copy of the whole matrix (2.3 GB at 200,000 cells) or all cell x centre
    distances (8 GB at 1,000,000 cells): the values are those of the whole matrix, bit for bit."""
    from tmetoolkit._core.annotation import embedding, identity

    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(0.6, (300, 80)).astype(np.float32))
    cols = np.array([0, 3, 17, 40, 79])
    whole = identity._lognorm(counts, "counts").toarray()
    np.testing.assert_array_equal(identity._lognorm_dense(counts, "counts", identity.NOT_ENCODED, cols), whole[:, cols])
    rows = np.array([2, 5, 299])
    np.testing.assert_array_equal(identity._lognorm(counts, "counts", rows=rows).toarray(), whole[rows])
    X = rng.normal(size=(1000, 6)).astype(np.float32)
    centres = rng.normal(size=(40, 6)).astype(np.float32)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # as approximate_neighbours calls it: BLAS threads would split sums differently
        near_all, home_all = embedding.nearest_centres(X, centres, 4)  # one block
    d = ((X[:, None, :] - centres[None]) ** 2).sum(axis=2)
    assert (home_all == np.argmin(d, axis=1)).mean() > 0.99  # float32 ties aside
    with pytest.MonkeyPatch.context() as m, threadpool_limits(1):
        m.setattr(embedding, "MAX_BLOCK", 40 * 7)  # blocks of 7 cells
        near, home = embedding.nearest_centres(X, centres, 4)
    np.testing.assert_array_equal(near, near_all)
    np.testing.assert_array_equal(home, home_all)


def test_confidence_means_something(annotated):
    """The confidence is the classifier's probability: calls made with more of it are right more often. Simulated
    cells are all called right, so the real MERFISH window (two thirds of its calls right) shows it; measured
    accuracy 0.68, 0.67, 0.90 by tertile of confidence (0.67, 0.67, 0.90 with ``spillover=0``): the most confident
    third is clearly better than the rest, between whose two thirds the difference is noise."""
    per_cell, _ = annotated
    o = per_cell.obs
    assert (o.loc[o["tmt_lineage"] == "unassigned", "tmt_confidence"] < 0.5).all()  # below 0.5, or no marker claim
    c = real_data("chen")
    tmt.tl.annotate(c)
    allowed = {"Lymphocyte": {"CD4 T", "CD8 T", "B", "NK"}, "Myeloid": {"Monocyte/Macrophage", "DC"},
               "Epithelial": {"Malignant/Epithelial"}, "Fibroblast": {"Fibroblast"},
               "Vascular": {"Endothelial", "Pericyte"}, "Plasma": {"Plasma"}, "Mast": {"Mast"}}
    pairs = zip(c.obs["tmt_lineage"].astype(str), c.obs["type_lvl1"].astype(str), strict=True)
    ok = pd.Series([lab in allowed[t] for lab, t in pairs], index=c.obs_names)
    assigned = c.obs["tmt_lineage"] != "unassigned"
    bins = pd.qcut(c.obs.loc[assigned, "tmt_confidence"], 3, labels=["low", "mid", "high"])
    acc = ok[assigned].groupby(bins, observed=True).mean()
    assert acc["high"] - max(acc["low"], acc["mid"]) > 0.1, acc


def test_outputs_vocabulary_and_round_trip(annotated, tmp_path):
    per_cell, _ = annotated
    o = per_cell.obs
    vocab = set(tmt._keys.LINEAGES)
    assert set(o["tmt_lineage"].cat.categories) <= vocab
    allowed = vocab | {s for v in STATES.values() for s in v}
    assert set(o["tmt_state"].cat.categories) <= allowed
    assert o["tmt_confidence"].between(0, 1).all()
    assert set(o["tmt_tam_polarization"].dropna()) <= {"M1-like", "M2-like", "M1/M2 mixed", "neither"}
    assert o.loc[o["tmt_lineage"] != "Monocyte/Macrophage", "tmt_tam_subset"].isna().all()
    assert len(per_cell.uns["tmt_lineage_colors"]) == len(o["tmt_lineage"].cat.categories)
    per_cell.write_h5ad(tmp_path / "a.h5ad")
    back = sc.read_h5ad(tmp_path / "a.h5ad")
    assert back.obs["tmt_state"].equals(o["tmt_state"])
    assert isinstance(back.uns["tmt_annotate"]["rules"], pd.DataFrame)


def test_missing_state_genes_are_not_assessable(sim_small):
    drop = {"FOXP3", "CTLA4", "IL10", "TNFRSF18", "CCR8", "IKZF4", "IKZF2"}
    a = sim_small[:, [g for g in sim_small.var_names if g not in drop]].copy()
    with pytest.warns(tmt.TmtWarning, match="Treg"):
        tmt.tl.annotate(a)
    rules = a.uns["tmt_annotate"]["rules"].set_index("label")
    assert not rules.loc["Treg", "assessable"] and "missing" in rules.loc["Treg", "reason"]
    assert "Treg" not in set(a.obs["tmt_state"])


def test_a_lineage_the_panel_cannot_read_is_named_with_what_becomes_of_its_cells(sim_small):
    """A panel without the neutrophil genes (a breast Xenium panel has none) cannot tell neutrophils: the warning
    says so and that their cells are called another lineage or unassigned, which is what happens to them."""
    from tmetoolkit._core.annotation.markers import lineage_markers

    neutrophil = next(lab for lab in lineage_markers().labels if lab.label == "Neutrophil")
    drop = {*neutrophil.genes, *(g for grp in neutrophil.reserve for g in grp)}
    a = sim_small[:, ~sim_small.var_names.isin(drop)].copy()
    with pytest.warns(tmt.TmtWarning, match="cells of Neutrophil are called another lineage the panel can read, or "
                                            "unassigned"):
        tmt.tl.annotate(a)
    rules = a.uns["tmt_annotate"]["rules"].set_index(["level", "label"])
    assert not rules.loc[("lineage", "Neutrophil"), "assessable"]
    planted = a.obs["true_lineage"] == "Neutrophil"
    assert planted.sum() > 50 and not a.obs.loc[planted, "tmt_lineage"].eq("Neutrophil").any()


def test_no_t_cells_skips_exhaustion(sim_small, caplog):
    a = sim_small[~sim_small.obs["true_lineage"].isin(["CD8 T", "CD4 T", "NK"])].copy()
    drop = {"CD3D", "CD3E", "CD3G", "CD2", "CD8A", "CD8B"}
    a = a[:, [g for g in a.var_names if g not in drop]].copy()
    with caplog.at_level(logging.INFO, logger="tmetoolkit"):
        tmt.tl.annotate(a)
    assert "CD8 Tex" not in set(a.obs["tmt_state"])
    assert any("exhaustion" in r.message for r in caplog.records)


def test_single_cell_type_and_bad_groupby(sim_small):
    fib = sim_small[sim_small.obs["true_lineage"] == "Fibroblast"].copy()
    tmt.tl.annotate(fib)  # control-matched scores lose contrast in a pure population: fewer calls, not wrong ones
    assigned = fib.obs["tmt_lineage"][fib.obs["tmt_lineage"] != "unassigned"].astype(str)
    assert (assigned == "Fibroblast").mean() >= 0.6  # measured 0.68; see the issue note on pure populations
    with pytest.raises(KeyError, match="sample"):
        tmt.tl.annotate(sim_small, groupby="smaple")
    # cells without a sample are refused before any work, as by every per-sample tool (they made a sample "nan")
    no_sample = sim_small.copy()
    no_sample.obs["sample"] = no_sample.obs["sample"].astype(object)
    no_sample.obs.iloc[:5, no_sample.obs.columns.get_loc("sample")] = None
    with pytest.raises(tmt.TmtInputError, match="5 cells have no value"):
        tmt.tl.annotate(no_sample)


def test_cells_without_a_cluster_keep_their_own_call(sim_small):
    """Cells whose groupby value is missing are not pooled into a cluster "nan": they keep their per-cell call,
    while the others follow their clusters. The population splits (Tpex from naive/memory, MDSC-like states) are
    made among all cells of a sample called either state, which the clusters change: there a loose cell may move
    (3 of seed 7's 300, Tpex cells whose sample's Tpex population fell under 10 cells)."""
    from tmetoolkit._core.annotation import rules

    per_cell = sim_small.copy()
    tmt.tl.annotate(per_cell)
    sim_small.obs["cluster"] = sim_small.obs["true_lineage"].astype(object)
    loose = np.random.default_rng(0).choice(sim_small.n_obs, 300, replace=False)
    sim_small.obs.iloc[loose, sim_small.obs.columns.get_loc("cluster")] = None
    tmt.tl.annotate(sim_small, groupby="cluster")
    assert (sim_small.obs["tmt_lineage"].iloc[loose].to_numpy() == per_cell.obs["tmt_lineage"].iloc[loose]).all()
    split = {st for state, sibling, _, _ in rules.POPULATION_SPLITS.values() for st in (state, sibling)}
    own, clustered_run = per_cell.obs["tmt_state"].iloc[loose], sim_small.obs["tmt_state"].iloc[loose]
    moved = own.to_numpy() != clustered_run.to_numpy()
    assert own[moved].isin(split).all() and clustered_run[moved].isin(split).all() and moved.sum() <= 6
    # states are scored against the other cells of their lineage, which the clusters changed a little
    np.testing.assert_allclose(sim_small.obs["tmt_confidence"].iloc[loose], per_cell.obs["tmt_confidence"].iloc[loose],
                               atol=0.01)
    clustered = np.setdiff1d(np.arange(sim_small.n_obs), loose)
    truth = sim_small.obs["true_lineage"].astype(str).iloc[clustered]
    assert (sim_small.obs["tmt_lineage"].astype(str).iloc[clustered] == truth).mean() >= 0.98


def _agreement(pred: pd.Series, truth: pd.Series, file_labels, our_labels) -> tuple[float, float]:
    t, p = truth.isin(file_labels), pred.isin(our_labels)
    return (t & p).sum() / t.sum(), (t & p).sum() / max(p.sum(), 1)


def test_protein_panel_phenoptr():
    """inForm phenotypes of the Vectra field: recall of every class; precision where 'other' does not blur it."""
    a = real_data("phenoptr")
    before = a.copy()
    tmt.tl.annotate(a)
    assert np.array_equal(a.X, before.X)
    gates = a.uns["tmt_annotate"]["gates"].set_index("marker")
    assert {"tumor", "CD8", "FOXP3", "CD68", "PD1"} <= set(gates.index)  # recognised from "CD8 (Opal 540)" etc.
    st, ph = a.obs["tmt_state"].astype(str), a.obs["phenotype"].astype(str)
    mac = ["Monocyte/Macrophage", "TAM M1-like", "TAM M2-like"]
    r_cd8, _ = _agreement(st, ph, ["CD8+"], ["CD8 T", "CD8 Tex", "CD8 Tpex"])
    r_treg, p_treg = _agreement(st, ph, ["FoxP3+"], ["Treg"])
    r_mac, _ = _agreement(st, ph, ["CD68+"], mac)
    r_tum, p_tum = _agreement(st, ph, ["CK+"], ["Malignant/Epithelial"])
    # measured: recall 0.95 / 0.92 / 0.95 / 0.91, precision Treg 0.84, tumour 0.97 (CD8 and CD68 precision stay
    # low: inForm puts many dim CD8+ and CD68+ cells in "other"). FOXP3 is gated on arcsinh(x / median) since its
    # log fit is one skewed population (D 1.75 < 2): Treg recall 0.86 -> 0.92, precision 0.88 -> 0.84
    assert min(r_cd8, r_treg, r_mac, r_tum) >= 0.88
    assert p_treg >= 0.82 and p_tum >= 0.95
    assert a.uns["tmt_annotate"]["params"]["spillover"] > 0
    # without spill-over compensation, cells beside bright CD8 T cells pass as CD8 T cells
    b = before.copy()
    tmt.tl.annotate(b, spillover=0)
    _, p_cd8 = _agreement(st, ph, ["CD8+"], ["CD8 T", "CD8 Tex", "CD8 Tpex"])
    _, p_cd8_raw = _agreement(b.obs["tmt_state"].astype(str), ph, ["CD8+"], ["CD8 T", "CD8 Tex", "CD8 Tpex"])
    assert p_cd8 >= p_cd8_raw + 0.1  # measured 0.52 vs 0.36
    rules = a.uns["tmt_annotate"]["rules"].set_index("label")
    assert not rules.loc["B", "assessable"] and "no channel" in rules.loc["B", "reason"]
    # why cells are unassigned: mostly inForm's "other" cells, which no marker of the panel marks (measured: 2,148
    # of the 2,311 unassigned cells; 2,260 whose gates support no lineage)
    from tmetoolkit._core.annotation.protein import NO_GATE

    why = a.uns["tmt_annotate"]["unassigned"].set_index("reason")
    out = st == "unassigned"
    assert why["n_cells"].sum() == out.sum()
    assert why.at[NO_GATE, "n_cells"] >= max(0.9 * out.sum(), (out & (ph == "other")).sum())


def test_protein_panel_read_from_sparse_backed_and_dask_matrices(tmp_path):
    """A panel stored sparse was refused with numpy's 'setting an array element with a sequence' when backed or
    in dask chunks."""
    import dask.array as da
    import matplotlib.pyplot as plt

    a = real_data("phenoptr")
    a.X = sp.csr_matrix(a.X)
    a.write_h5ad(tmp_path / "panel.h5ad")
    tmt.tl.annotate(a)
    backed = ad.read_h5ad(tmp_path / "panel.h5ad", backed="r")
    chunked = a.copy()
    chunked.X = da.from_array(a.X, chunks=(997, -1), asarray=False)
    for b in (backed, chunked):
        tmt.tl.annotate(b)
        assert (b.obs["tmt_state"] == a.obs["tmt_state"]).all()
        fig = tmt.pl.gates(b)
        plt.close(fig)


def test_protein_spillover_from_touching_cells_is_removed(sim_small):
    """Planted lateral spill-over: every cell picks up 20% of its brightest touching neighbour's signal."""
    from sklearn.neighbors import NearestNeighbors

    o = sim_small.obs
    rng = np.random.default_rng(1)
    positive = {"CD8": o["true_lineage"] == "CD8 T", "CD3": o["true_lineage"].isin(["CD8 T", "CD4 T"]),
                "CD68": o["true_lineage"] == "Monocyte/Macrophage",
                "PanCK": o["true_lineage"] == "Malignant/Epithelial"}
    true = np.column_stack([rng.lognormal(np.where(p, 1.5, -1.5), 0.5) for p in positive.values()])
    xy = sim_small.obsm["spatial"]
    seen = true.copy()
    for s in o["sample"].unique():  # the samples share one coordinate system: cells touch only within a sample
        rows = np.flatnonzero(o["sample"] == s)
        dist, idx = NearestNeighbors(n_neighbors=4).fit(xy[rows]).kneighbors(xy[rows])
        touching = (dist[:, 1:] <= 1.5 * np.median(dist[:, 1]))[:, :, None]
        seen[rows] += 0.2 * (true[rows][idx[:, 1:]] * touching).max(axis=1)
    panel = ad.AnnData(seen.astype(np.float32), obs=o[["sample"]].copy(), obsm={"spatial": xy})
    panel.var_names = list(positive)
    is_cd8 = o["true_lineage"].to_numpy() == "CD8 T"

    def cd8_precision_recall(**kw):
        b = panel.copy()
        tmt.tl.annotate(b, **kw)
        called = (b.obs["tmt_lineage"] == "CD8 T").to_numpy()
        return is_cd8[called].mean(), called[is_cd8].mean()

    p_raw, _ = cd8_precision_recall(spillover=0)
    p_comp, r_comp = cd8_precision_recall()  # obs["sample"]: each sample its own image
    assert (p_comp, r_comp) == cd8_precision_recall(sample_key="sample")
    assert p_comp >= 0.9 and r_comp >= 0.9, (p_comp, r_comp)  # measured 0.98 / 0.996
    assert p_comp > p_raw + 0.1, (p_comp, p_raw)  # measured 0.67 without compensation
    # a gate given for one channel leaves the others fitted and compensated; one number for all turns it off
    assert cd8_precision_recall(gates={"CD68": 1.0})[0] >= 0.9
    assert cd8_precision_recall(gates=1.0)[0] < p_comp - 0.1
    with pytest.raises(KeyError, match="nope"):
        tmt.tl.annotate(panel, image_key="nope")
    with pytest.raises(ValueError, match="spillover"):
        tmt.tl.annotate(panel, spillover=1.5)


def test_protein_channels_with_a_spike_of_zeros_are_gated_above_it():
    """Schürch's CODEX spot: background subtraction leaves most cells at exactly 0 in CD20, CD138, CD15, CD31 and
    cytokeratin. Gated with their zeros, those channels put the gate just above 0 and read every dim cell as far
    above it (CD8 T cells were called plasma or endothelial cells). Gated on the non-zero values, lineage accuracy
    against the authors' clusters is 0.44 (0.31 before); with the gated seeds training a classifier on all 58
    channels, 0.59 (the score-and-argmax baseline: 0.57; a classifier trained on the authors' labels: 0.83)."""
    a = shared_file("schurch2020_crc_codex/schurch2020_crc_codex_spot9A_2434cells.h5ad")
    tmt.tl.annotate(a)
    gates = a.uns["tmt_annotate"]["gates"].set_index("channel")
    for ch in ("CD20", "CD138", "CD31", "Cytokeratin"):
        assert gates.at[ch, "gate"] > np.quantile(a[:, ch].X[a[:, ch].X > 0], 0.01), ch
    m = {"CD4+ T cells CD45RO+": {"CD4 T"}, "Tregs": {"CD4 T"}, "CD8+ T cells": {"CD8 T"},
         "CD68+CD163+ macrophages": {"Monocyte/Macrophage"}, "CD68+ macrophages": {"Monocyte/Macrophage"},
         "vasculature": {"Endothelial"}, "lymphatics": {"Endothelial"}, "smooth muscle": {"Fibroblast", "Pericyte"},
         "stroma": {"Fibroblast"}, "tumor cells": {"Malignant/Epithelial"}, "granulocytes": {"Neutrophil"},
         "plasma cells": {"Plasma"}}
    cl = a.obs["ClusterName"].astype(str)
    keep = cl.isin(list(m)).to_numpy()
    assert _accuracy(a.obs["tmt_lineage"][keep], [m[c] for c in cl[keep]]) >= 0.56  # measured 0.59


def test_protein_schurch_codex_labels_need_their_own_markers_not_a_single_gate_veto():
    """Schürch's CODEX spot, recall per author class. Three rules cost these cells before:
    CD45 read after spill-over removal (which erases the dim CD45 of myeloid cells beside bright lymphocytes)
    vetoed macrophages; one CD4 gate, above which 41% of CD8 T cells sit, vetoed CD8 T cells; and plasma cells,
    which lose CD45, needed it. Measured recall CD8 T 0.28 (0.08 before), CD4 T 0.43 (0.30), Treg 0.51 (0.34),
    macrophage 0.155 (0.07), plasma 0.17 (0.0); CD8 T precision 0.96 (0.94). CD15 contradicts NK (CD56 on CD15+
    granulocytes called them NK): granulocyte recall 0.06 (0.013), precision 0.60 on 15 calls (0.67 on 3)."""
    a = shared_file("schurch2020_crc_codex/schurch2020_crc_codex_spot9A_2434cells.h5ad")
    tmt.tl.annotate(a)
    st, cl = a.obs["tmt_state"].astype(str), a.obs["ClusterName"].astype(str)
    lin = a.obs["tmt_lineage"].astype(str)
    r_cd8, p_cd8 = _agreement(st, cl, ["CD8+ T cells"], ["CD8 T", "CD8 Tex", "CD8 Tpex"])
    r_cd4, _ = _agreement(lin, cl, ["CD4+ T cells CD45RO+", "Tregs"], ["CD4 T"])
    r_treg, _ = _agreement(st, cl, ["Tregs"], ["Treg"])
    r_mac, _ = _agreement(lin, cl, ["CD68+CD163+ macrophages", "CD68+ macrophages", "CD11b+CD68+ macrophages"],
                          ["Monocyte/Macrophage"])
    r_pla, _ = _agreement(lin, cl, ["plasma cells"], ["Plasma"])
    # with the classifier trained on the gated seeds (all 58 channels): CD8 T 0.72 / 0.95, CD4 T 0.69, Treg 0.97,
    # macrophage 0.44, granulocyte 0.08 / 0.75; CD38 beside CD138: plasma 0.31 (0.17 with CD138 alone). Treg 0.74
    # and macrophage 0.28 while a classifier call needed CD45 above its gate (dim on macrophages); macrophage 0.40
    # while keratin, CD56 and CD20, whose gates cut one population, competed for the seeds
    assert r_cd8 >= 0.65 and p_cd8 >= 0.9
    assert r_cd4 >= 0.55 and r_treg >= 0.85 and r_mac >= 0.42 and r_pla >= 0.25
    r_gra, p_gra = _agreement(lin, cl, ["granulocytes"], ["Neutrophil"])
    assert r_gra >= 0.06 and p_gra >= 0.6
    assert "Plasma" in set(lin)  # CD138 with no keratin or CD3 suffices
    # exhausted CD8 T cells: the panel lacks TCF-1, so Tpex is not assessable (34 CD8 T cells were Tpex on PD-1
    # alone); PD-1 and LAG-3 show one population each (Ashman's D 0.54 and 0.35) and are gated at its upper tail
    # (at the crossing of two overlapping Gaussians 71% of the CD8 T calls were PD-1+ and 88 would be Tex)
    rules = a.uns["tmt_annotate"]["rules"].set_index("label")
    assert not rules.loc["CD8 Tpex", "assessable"] and "TCF1" in rules.loc["CD8 Tpex", "reason"]
    assert rules.loc["CD8 Tex", "assessable"] and not st.eq("CD8 Tpex").any()
    assert st.eq("CD8 Tex").sum() <= 0.15 * lin.eq("CD8 T").sum()  # measured 10 of 148


def _schurch():
    return shared_file("schurch2020_crc_codex/schurch2020_crc_codex_spot9A_2434cells.h5ad")


def test_protein_clusters_lend_lineages_to_the_classifier_calls():
    """With clusters as ``groupby`` (30 k-means clusters of the arcsinh intensities, as a user would make), the
    classifier still calls the cells and only clusters sure of a lineage lend it. When clusters replaced the
    classifier and every cluster, mixed or not, imposed the lineage of its mean evidence, Schürch's CD8 T recall
    was 0.06 (one cluster of 80 CD8 and 20 CD4 T cells was left unassigned); now as without clusters."""
    a = _schurch()
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    a.obs["km"] = KMeans(30, n_init=2, random_state=0).fit_predict(np.arcsinh(X / 5)).astype(str)
    tmt.tl.annotate(a, groupby="km")
    st, cl = a.obs["tmt_state"].astype(str), a.obs["ClusterName"].astype(str)
    r_cd8, p_cd8 = _agreement(st, cl, ["CD8+ T cells"], ["CD8 T"])
    r_cd4, p_cd4 = _agreement(a.obs["tmt_lineage"].astype(str), cl, ["CD4+ T cells CD45RO+", "Tregs"], ["CD4 T"])
    assert r_cd8 >= 0.65 and p_cd8 >= 0.9, (r_cd8, p_cd8)  # measured 0.72, 0.95
    assert r_cd4 >= 0.55 and p_cd4 >= 0.7, (r_cd4, p_cd4)  # measured 0.62, 0.78 (0.62, 0.67 before)


def test_protein_calls_do_not_depend_on_the_scale_of_the_values():
    """Schürch's CODEX intensities as shared, rescaled to 0-1 per channel, and arcsinh(x / 5)-transformed (as CyTOF
    and many imaging pipelines share them): the same calls (measured agreement 1.0, 1.0, 0.998)."""
    a = _schurch()
    X = np.asarray(a.X, dtype=np.float64)
    calls = {}
    for name, values in {"raw": X, "0-1": X / X.max(axis=0), "arcsinh": np.arcsinh(X / 5)}.items():
        b = a.copy()
        b.X = values.astype(np.float32)
        tmt.tl.annotate(b)
        calls[name] = b.obs["tmt_state"].astype(str).to_numpy()
        if name == "arcsinh":  # gates are reported in the units of the values given
            gate = b.uns["tmt_annotate"]["gates"].set_index("marker").at["CD8", "gate"]
            assert 0 < gate < values[:, list(a.var_names).index("CD8")].max()
    assert (calls["0-1"] == calls["raw"]).mean() >= 0.99
    assert (calls["arcsinh"] == calls["raw"]).mean() >= 0.97
    # a panel without its transform is not mistaken for one: the raw intensities are gated on their own scale
    from tmetoolkit._core.annotation.protein import looks_compressed

    assert not looks_compressed(X)
    assert looks_compressed(np.arcsinh(X / 5))


def test_protein_gates_leave_the_log_scale_only_for_one_skewed_population():
    """Schürch's FOXP3 on log(x + offset): two components split the negative cells (Ashman's D 0.17, 64% of cells
    "positive"); on arcsinh(x / median) the Tregs (1.4% of cells) stand apart. CD8, bimodal on the log scale
    (D 4.5), stays there."""
    a = _schurch()
    tmt.tl.annotate(a)
    gates = a.uns["tmt_annotate"]["gates"].set_index("channel")
    assert gates.at["FOXP3", "scale"] == "arcsinh" and gates.at["FOXP3", "separation"] >= 2
    assert gates.at["FOXP3", "fraction_positive"] < 0.1  # measured 0.04
    assert gates.at["CD8", "scale"] == "log"
    assert a.uns["tmt_annotate"]["params"]["lineage_method"] == "classifier"


def test_protein_lineages_with_too_few_seeds_keep_their_gated_calls(sim_small):
    """The planted panel's lineages have enough confident cells (seeds) and are learned; with a single given gate,
    or with seeds of only one lineage, the gates decide, and the run says so (``params["lineage_method"]``)."""
    from tmetoolkit._core.annotation.lineage import MIN_SEEDS

    panel = _planted_panel(sim_small)
    b = panel.copy()
    tmt.tl.annotate(b)
    res = b.uns["tmt_annotate"]
    assert res["params"]["lineage_method"] == "classifier"
    seeds = res["seeds"].set_index("lineage")
    assert seeds["learned"].sum() >= 2 and (seeds.loc[seeds["learned"], "n_seeds"] >= MIN_SEEDS).all()
    assert set(res["lineage_by_markers"]) == set(seeds.index[~seeds["learned"]])
    c = panel.copy()
    tmt.tl.annotate(c, gates=1.0)
    assert c.uns["tmt_annotate"]["params"]["lineage_method"] == "markers"
    # seeds of one lineage only: nothing to learn against, every cell keeps its gated call
    from tmetoolkit._core.annotation.protein import learn_lineages

    L = pd.DataFrame({"CD8 T": np.r_[np.full(50, 3.0), np.full(50, -2.0)], "NK": np.full(100, -2.0)})
    assert learn_lineages(L, np.zeros((100, 3))).probability is None


def _panel_with_truth(n: int = 3000, *, myeloid_cd45: float = 1.5, seed: int = 0):
    """A multiplex-IF panel with planted lineages (log-normal intensities, positive around e^1.5, negative around
    e^-1.5, log SD 0.5): tumour (PanCK), macrophages (CD68, CD11b, CD45 at log level ``myeloid_cd45``), CD8 T (CD8,
    CD3, CD45), CD4 T (CD3, CD45) and stroma (none). CD11b is a channel no rule reads."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(["tumour", "macrophage", "CD8 T", "CD4 T", "stroma"], n, p=[0.25, 0.25, 0.2, 0.1, 0.2])
    t_cell = np.isin(truth, ["CD8 T", "CD4 T"])
    mean = {"PanCK": truth == "tumour", "CD68": truth == "macrophage", "CD8": truth == "CD8 T", "CD3": t_cell,
            "CD11b": truth == "macrophage"}
    mean = {k: np.where(v, 1.5, -1.5) for k, v in mean.items()}
    mean["CD45"] = np.select([t_cell, truth == "macrophage"], [1.5, myeloid_cd45], -1.5)
    X = rng.lognormal(np.column_stack(list(mean.values())), 0.5)
    panel = ad.AnnData(X.astype(np.float32), obs=pd.DataFrame({"truth": truth}))
    panel.obs_names = [f"c{i}" for i in range(n)]
    panel.var_names = list(mean)
    return panel


def test_protein_classifier_calls_need_the_defining_marker_not_the_supporting_ones():
    """CD45 is dim on myeloid cells, below a gate set between negative cells and bright lymphocytes (Schürch's
    CODEX spot: 31% of the macrophages and 46% of the granulocytes under the CD45 gate as imaged). The supporting
    groups (CD45, CD3 for T cells) pick the cells the classifier learns from; its call, made on every channel
    with CD45 among them, then needs only the lineage's defining marker above its gate and no contradicting one.
    When it needed CD45 too, macrophages under the CD45 gate stayed unassigned. Planted: CD45 at log level -0.15 in
    macrophages (-1.5 in negative cells, 1.5 in T cells): the gate falls above most of them, 28 are seeds."""
    panel = _panel_with_truth(myeloid_cd45=-0.15)
    tmt.tl.annotate(panel)
    lin, truth = panel.obs["tmt_lineage"].astype(str).to_numpy(), panel.obs["truth"].to_numpy()
    called = lin == "Monocyte/Macrophage"
    mac = truth == "macrophage"
    assert called[mac].mean() >= 0.9  # measured 0.999; 0.26 when the call needed CD45
    assert mac[called].mean() >= 0.97
    assert not called[truth == "stroma"].any()  # no CD68, no macrophage call


def test_protein_one_population_gates_do_not_block_the_seeds_of_other_lineages():
    """A lineage whose defining gate cuts one skewed population is not learned (the cells above such a gate are no
    sample of it: Schürch's keratin, CD56 and CD20, Ashman's D 1.23, 1.03, 1.15); nor is its evidence a runner-up
    that keeps the cells of other lineages from being seeds. Planted: CD8 T cells and macrophages with evidence 3
    for their lineage, and a one-population B gate at evidence 2.8 in every cell."""
    from tmetoolkit._core.annotation.protein import learn_lineages

    rng = np.random.default_rng(0)
    truth = np.repeat(["CD8 T", "Monocyte/Macrophage"], 100)
    own = np.where(truth == "CD8 T", 3.0, -3.0)
    L = pd.DataFrame({"CD8 T": own + rng.normal(0, 0.3, 200), "Monocyte/Macrophage": -own + rng.normal(0, 0.3, 200),
                      "B": rng.normal(2.8, 0.3, 200)})
    features = np.column_stack([own, -own]) + rng.normal(0, 1.0, (200, 2))
    learned = learn_lineages(L, features, exclude=["B"])
    assert set(learned.learned) == {"CD8 T", "Monocyte/Macrophage"}  # 4 and 1 seeds with B as runner-up
    assert (learned.probability.idxmax(axis=1).to_numpy() == truth).mean() >= 0.95
    assert (learned.seeds[truth == "CD8 T"] == "CD8 T").all()


def test_protein_panel_scimap_with_given_gates():
    """CyCIF lymphoma: CD30 marks the tumour; scimap's rescaling puts every gate at 0.5."""
    a = real_data("scimap")
    tmt.tl.annotate(a, markers={"tumor": "CD30"}, gates=0.5)
    st, ph = a.obs["tmt_state"].astype(str), a.obs["phenotype"].astype(str)
    tumour = ["Tumor CD45- CD30+", "Tumor CD30+", "Tumor CD30+ KI67+"]
    r_tum, p_tum = _agreement(st, ph, tumour, ["Malignant/Epithelial"])
    r_cd8, p_cd8 = _agreement(st, ph, ["CD8 T cells", "PD1+ T cells"], ["CD8 T", "CD8 Tex", "CD8 Tpex"])
    r_treg, p_treg = _agreement(st, ph, ["Regulatory T cells", "Aberrant T cells CD45- CD3+ FOXP3+"], ["Treg"])
    assert r_tum >= 0.85 and p_tum >= 0.95  # measured 0.90 / 0.97
    assert p_cd8 >= 0.85 and p_treg >= 0.75  # measured 0.89 / 0.81
    # CD3 contradicts myeloid labels (lineage exclusion): T cells that are also above the gate of a myeloid
    # marker are called T cells (recall 0.33 / 0.35 without), not left unassigned; CD4 no longer vetoes CD8 T
    # cells (the stronger co-receptor wins): CD8 T recall 0.73 (0.53 with the veto)
    assert r_cd8 >= 0.68 and r_treg >= 0.55  # measured 0.73 / 0.62
    # with given gates and clusters as groupby, a mixed cluster keeps its cells' calls: when every cluster imposed
    # its mean call, CD8 T precision was 0.68 and Treg 0.72 (30 k-means clusters); measured 0.87 and 0.88
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    a.obs["km"] = KMeans(30, n_init=2, random_state=0).fit_predict(X).astype(str)
    tmt.tl.annotate(a, markers={"tumor": "CD30"}, gates=0.5, groupby="km")
    st = a.obs["tmt_state"].astype(str)
    r_cd8, p_cd8 = _agreement(st, ph, ["CD8 T cells", "PD1+ T cells"], ["CD8 T", "CD8 Tex", "CD8 Tpex"])
    r_treg, p_treg = _agreement(st, ph, ["Regulatory T cells", "Aberrant T cells CD45- CD3+ FOXP3+"], ["Treg"])
    assert r_cd8 >= 0.68 and p_cd8 >= 0.85 and r_treg >= 0.55 and p_treg >= 0.75, (r_cd8, p_cd8, r_treg, p_treg)


def test_batch_corrected_values_warn(sim_small):
    """ComBat gives each gene a cell does not express a value of its own, which within-cell ranks read as
    expression: annotate warns and names what to use instead (Zilionis 2019 after ComBat by patient: lineage
    accuracy 0.89 -> 0.75)."""
    with pytest.warns(tmt.TmtWarning, match=r"ComBat.*adata\.raw\.to_adata\(\)"):
        tmt.tl.annotate(batch_corrected(sim_small))


def test_protein_panel_bad_input():
    a = real_data("phenoptr")
    with pytest.raises(KeyError, match="unknown marker"):
        tmt.tl.annotate(a, markers={"keratin": "CK (Opal 690)"})
    with pytest.raises(KeyError, match="not in var_names"):
        tmt.tl.annotate(a, markers={"tumor": "CK"})
    b = a[:, ["DAPI"]].copy()
    with pytest.raises(ValueError, match="no lineage marker"):
        tmt.tl.annotate(b)
    # a gate keyed by a name that is neither a channel nor a recognised marker would be dropped in silence
    with pytest.raises(KeyError, match="CD8 \\(Opal 540\\)"):
        tmt.tl.annotate(a.copy(), gates={"CD8a": 2.0})
    by_marker, by_channel = a.copy(), a.copy()
    tmt.tl.annotate(by_marker, gates={"CD8": 5.0})
    tmt.tl.annotate(by_channel, gates={"CD8 (Opal 540)": 5.0})
    assert by_marker.uns["tmt_annotate"]["gates"].equals(by_channel.uns["tmt_annotate"]["gates"])


def test_protein_panel_of_whole_numbers_is_not_read_as_rna_counts():
    """16-bit images export integer intensities: a small panel named by antibody targets is a protein panel; a small
    panel named by gene symbols stays RNA counts."""
    a = real_data("phenoptr")
    X = np.clip(np.asarray(a.X.toarray() if sp.issparse(a.X) else a.X, dtype=np.float64), 0, None)
    whole = a.copy()
    whole.X = np.round(X / X.max(axis=0) * 65535).astype(np.uint16)
    assert tmt.pp.check_input(whole).state == "protein"
    scaled = a.copy()
    scaled.X = (X / X.max(axis=0) * 65535).astype(np.float32)
    tmt.tl.annotate(whole)
    tmt.tl.annotate(scaled)
    assert (whole.obs["tmt_lineage"] == scaled.obs["tmt_lineage"]).mean() >= 0.99
    genes = ad.AnnData(np.random.default_rng(0).poisson(1.0, (50, 40)).astype(np.float32))
    genes.var_names = ["CD3E", "CD3D", "CD2", "CD8A", "CD8B", "CD4", "FOXP3", "IL2RA", "PTPRC", "MS4A1", "CD79A",
                       "CD19", "JCHAIN", "MZB1", "CD68", "CD163", "C1QA", "CD14", "FCGR3A", "LYZ", "EPCAM", "KRT8",
                       "KRT18", "KRT19", "COL1A1", "COL1A2", "DCN", "LUM", "PDGFRA", "VWF", "PECAM1", "CDH5", "RGS5",
                       "ACTA2", "TPSAB1", "KIT", "NKG7", "GNLY", "PDCD1", "HAVCR2"]
    assert tmt.pp.check_input(genes).state == "counts"


def test_protein_panel_names_what_it_cannot_read():
    a = real_data("phenoptr")
    renamed = a.copy()
    renamed.var_names = [n.replace("CD8 (Opal 540)", "CD8_Cy5") for n in a.var_names]
    with pytest.warns(tmt.TmtWarning, match=r"CD8 T \(no channel for CD8\).*CD8_Cy5") as caught:
        tmt.tl.annotate(renamed)
    assert not any("DAPI" in str(w.message) for w in caught)  # a nuclear stain stands for no marker
    twice = ad.concat([a, a[:, ["CD8 (Opal 540)"]].copy()], axis=1, merge="first")
    twice.var_names = [*a.var_names, "CD8"]
    with pytest.warns(tmt.TmtWarning, match="all read as CD8"):
        tmt.tl.annotate(twice)


def test_a_channel_stands_for_one_marker():
    from tmetoolkit._core.annotation.protein import match_markers

    channels = ["CD8", "CD163", "CD206", "PanCK", "CD30"]
    assert match_markers(channels)["CD206"] == "CD206"
    # the user's word wins over the name: CD206's channel now counts as CD163 only
    mapped = match_markers(channels, {"CD163": "CD206"})
    assert mapped["CD163"] == "CD206" and "CD206" not in mapped
    assert match_markers(channels, {"tumor": "CD30"})["tumor"] == "CD30"
    with pytest.raises(ValueError, match="one marker only"):
        match_markers(channels, {"CD163": "CD206", "CD206": "CD206"})


def test_channels_are_recognised_across_panel_naming():
    """Channel names as published panels write them: a MIBI-TOF TNBC panel (Keren 2018) and an IMC breast panel
    (Jackson 2020), plus common variants. Keratins, the SMA/collagen and endothelial families are matched by
    pattern where no alias names them exactly; look-alikes (CD45RO, c-Kit, collagen IV, N-cadherin) are not."""
    from tmetoolkit._core.annotation.protein import match_markers

    mibi = ["Keratin6", "Keratin17", "Pan-Keratin", "CD45", "CD45RO", "CD3", "CD4", "CD8", "CD20", "CD68", "CD11c",
            "CD163", "CD31", "FoxP3", "HLA-DR", "Lag3", "MPO", "PD1", "PD-L1", "SMA", "Vimentin", "dsDNA"]
    got = match_markers(mibi)
    assert got["tumor"] == "Pan-Keratin" and got["CD45"] == "CD45" and got["LAG3"] == "Lag3"
    assert got["endothelial"] == "CD31" and got["stroma"] == "SMA" and got["PDL1"] == "PD-L1"
    imc = ["Cytokeratin 7", "Cytokeratin 8/18", "Pan Cytokeratin", "E/P-Cadherin", "CD3", "CD20", "CD68", "CD45",
           "Vimentin", "Fibronectin", "vWF/CD31", "Collagen I", "Histone H3"]
    got = match_markers(imc)
    assert got["tumor"] == "Pan Cytokeratin" and got["endothelial"] == "vWF/CD31" and got["stroma"] == "Collagen I"
    got = match_markers(["Keratin 8/18", "CD3e", "alpha-SMA", "CD8a", "CD279 (PD-1)", "Podoplanin", "DAPI"])
    assert got == {"tumor": "Keratin 8/18", "CD3": "CD3e", "CD8": "CD8a", "stroma": "alpha-SMA",
                   "PD1": "CD279 (PD-1)"}
    assert match_markers(["CK5", "CD45RO", "c-Kit", "Collagen IV", "N-Cadherin", "CD314", "CD319"]) == {
        "tumor": "CK5", "mast": "c-Kit"}


def test_tumor_signature_decides_malignant_cells_on_a_panel_without_epithelial_genes():
    """Chen's immune MERFISH panel holds KRT8 alone of the epithelial group (detected in a quarter of the tumour
    cells); the epithelial reserve lends it PERP (desmosomes of epithelia only), which finds most tumour cells,
    precisely. A programme that marks them (MAPK activity, MPAS) finds more."""
    c = real_data("chen")
    plain = c.copy()
    tmt.tl.annotate(plain)
    tmt.tl.annotate(c, tumor_signature="MPAS")
    epi = (c.obs["type_lvl1"] == "Epithelial").to_numpy()
    # measured: recall 0.61 and precision 0.98 with the stand-in (0.17 and 0.99 with KRT8 alone); 0.81 and 0.93
    # with MPAS
    found = plain.obs["tmt_lineage"] == "Malignant/Epithelial"
    assert 0.5 <= (plain.obs["tmt_lineage"][epi] == "Malignant/Epithelial").mean() < 0.75
    assert (plain.obs["type_lvl1"][found] == "Epithelial").mean() >= 0.95
    stand_ins = plain.uns["tmt_annotate"]["rules"].set_index("label").at["Malignant/Epithelial|epithelial",
                                                                        "stand_ins"]
    assert stand_ins == "PERP"
    lin = c.obs["tmt_lineage"]
    assert (lin[epi] == "Malignant/Epithelial").mean() >= 0.75
    assert (c.obs["type_lvl1"][lin == "Malignant/Epithelial"] == "Epithelial").mean() >= 0.85
    rules = c.uns["tmt_annotate"]["rules"].set_index("label")
    assert rules.at["Malignant/Epithelial|MPAS", "assessable"]
    genes = tmt.get.markers(c, key="tmt_lineage").query("label == 'Malignant/Epithelial'")
    assert "MPAS" in set(genes["signatures"])
    with pytest.raises(KeyError, match="MPAS"):
        tmt.tl.annotate(c, tumor_signature="MAPS")
    with pytest.raises(ValueError, match="protein panel"):
        tmt.tl.annotate(real_data("phenoptr"), tumor_signature="MPAS")


def test_markers_on_rna_are_refused(sim_small):
    with pytest.raises(ValueError, match="protein panels"):
        tmt.tl.annotate(sim_small, markers={"tumor": "EPCAM"})



@pytest.mark.parametrize("kwargs", [{"min_confidence": 2.0}, {"min_confidence": -0.1}, {"override_confidence": 1.5}])
def test_confidences_outside_zero_to_one_are_refused(sim_small, kwargs):
    """min_confidence=2.0 was accepted: 288 of 300 cells went unassigned and 12 (decisive transcripts) were still
    called. Probabilities and confidences lie in [0, 1]."""
    with pytest.raises(tmt.TmtInputError, match=f"{next(iter(kwargs))} must be a number in \\[0, 1\\]"):
        tmt.tl.annotate(sim_small.copy(), **kwargs)

def test_cells_without_reads_are_unassigned():
    """A cell with no counts has no identity of its own: its neighbours' evidence must not give it one (five empty
    cells added to Zilionis' 300 were CD4 T at confidence 0.51)."""
    z = shared_file("zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad")
    z.obs_names_make_unique()
    empty = z[:5].copy()
    empty.X = sp.csr_matrix(empty.shape, dtype=np.float32)
    empty.obs_names = [f"empty{i}" for i in range(5)]
    a = ad.concat([z, empty], merge="same")
    with pytest.warns(tmt.TmtWarning, match="no expression"):
        tmt.tl.annotate(a)
    calls = a.obs.loc[empty.obs_names]
    assert (calls["tmt_lineage"] == "unassigned").all() and (calls["tmt_confidence"] == 0).all()
    assert (a.obs["tmt_lineage"][: z.n_obs] != "unassigned").mean() > 0.9


def test_scaled_rna_is_refused_before_anything_is_read_from_it():
    """z-scored genes are non-zero everywhere: read first, they looked like bulk samples detecting every gene, and
    that warning came before the refusal that names layer=."""
    z = shared_file("zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad")
    sc.pp.normalize_total(z)
    sc.pp.log1p(z)
    z.layers["log"] = z.X.copy()
    sc.pp.scale(z)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", tmt.TmtWarning)
        with pytest.raises(tmt.TmtInputError, match="layer="):
            tmt.tl.annotate(z)
    assert not [w for w in caught if issubclass(w.category, tmt.TmtWarning)]
    tmt.tl.annotate(z, layer="log")
    assert (z.obs["tmt_lineage"] != "unassigned").mean() > 0.9


def test_repeated_gene_names_are_warned_about_once(sim_small):
    a = sim_small.copy()
    names = a.var_names.to_numpy().copy()
    names[list(names).index("CD8A") + 1] = "CD8A"
    a.var_names = names
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tmt.tl.annotate(a)
    repeated = [w for w in caught if "occur more than once" in str(w.message)]
    assert len(repeated) == 1 and "CD8A" in str(repeated[0].message)


PURAM_LINEAGES = {"B cell": "B", "CD4 T cell": "CD4 T", "reg. T cell": "CD4 T", "CD8 T cell": "CD8 T",
                  "Dendritic": "DC", "Endothelial": "Endothelial", "Fibroblast": "Fibroblast",
                  "Macrophage": "Monocyte/Macrophage", "Mast": "Mast"}


def test_puram_lineages():
    """Puram 2017 (Smart-seq2, log values of a 7,943-gene subset): mast cells by the longer mast list (the subset has
    none of the tryptase/KIT/CPA3 genes), Tregs within CD4 T cells."""
    a = real_data("puram")
    tmt.tl.annotate(a)
    truth = a.obs["celltypes"].astype(str).map(PURAM_LINEAGES)
    acc = ((a.obs["tmt_lineage"].astype(str) == truth) | ((truth == "B") & (a.obs["tmt_lineage"] == "Plasma"))).mean()
    assert acc >= 0.9, acc  # measured 0.939; supervised ceiling 0.972
    rules = a.uns["tmt_annotate"]["rules"].set_index("label")
    assert rules.loc["Mast", "assessable"] and "MAOB" in rules.loc["Mast", "genes"]
    mast_true, mast_called = truth == "Mast", a.obs["tmt_lineage"] == "Mast"
    assert mast_called[mast_true].mean() >= 0.8 and mast_true[mast_called].mean() >= 0.9
    treg = a.obs["celltypes"] == "reg. T cell"
    assert (a.obs.loc[treg, "tmt_state"] == "Treg").mean() >= 0.6


def test_puram_lineages_with_clusters():
    """With Leiden clusters as ``groupby`` (scanpy's usual workflow), pure clusters lend their lineage to unsure
    cells and mixed clusters change nothing: >= 0.9 of Puram's cells get their lineage, and Tregs are still
    told from conventional CD4 T cells cell by cell."""
    a = real_data("puram")
    b = a.copy()
    sc.pp.highly_variable_genes(b, n_top_genes=2000)
    sc.pp.pca(b, n_comps=20, mask_var="highly_variable", random_state=0)
    sc.pp.neighbors(b, random_state=0)
    sc.tl.leiden(b, flavor="igraph", n_iterations=2, random_state=0)
    a.obs["leiden"] = b.obs["leiden"]
    tmt.tl.annotate(a, groupby="leiden")
    truth = a.obs["celltypes"].astype(str).map(PURAM_LINEAGES)
    acc = ((a.obs["tmt_lineage"].astype(str) == truth) | ((truth == "B") & (a.obs["tmt_lineage"] == "Plasma"))).mean()
    assert acc >= 0.9, acc
    # the clusters do not decide states: with the cluster's mean Treg score deciding, a Leiden cluster of CD4 T
    # cells was called Treg (precision 0.53); per cell, 0.90 and recall 0.90
    treg, called = a.obs["celltypes"] == "reg. T cell", a.obs["tmt_state"] == "Treg"
    assert called[treg].mean() >= 0.8 and treg[called].mean() >= 0.8, (called[treg].mean(), treg[called].mean())


def test_chen_merfish_tregs_found_without_cd3():
    """On the MERFISH panel CD3 is rarely detected; Tregs are still T cells by their own markers (FOXP3, IL2RA,
    CTLA4, IKZF2). FOXP3 is decisive: a cell that carries it with the Treg group stays a T cell against the C1Q
    of an adjacent macrophage, and a CD4 T cell with FOXP3 and a second Treg gene is a Treg. Measured: precision
    0.57, recall 0.34 (0.61 and 0.25 without the decisive rules; a
    logistic regression on the authors' labels reaches F1 0.75 within CD4 T cells; the lineage step loses most of
    the rest to macrophages and unassigned cells)."""
    c = real_data("chen")
    tmt.tl.annotate(c)
    called, true = c.obs["tmt_state"] == "Treg", c.obs["type_lvl2"] == "Treg"
    precision, recall = true[called].mean(), called[true].mean()
    assert precision >= 0.5, precision
    assert recall >= 0.3, recall


def test_chen_merfish_transcripts_of_touching_cells_do_not_veto_a_call():
    """Segmentation gives a MERFISH cell some transcripts of the cell beside it (C1Q of a macrophage, collagen of a
    fibroblast). With ``spillover`` (default 0.15, as for protein panels) a marker a cell holds at most that fraction
    of its touching neighbour's count does not count against the cell's lineage. Measured: cells whose lineage
    matches the authors' type_lvl1 0.663 -> 0.670, unassigned 290 -> 279, 86 of the 212 Tregs found (81 without);
    before the classifier's share on lineages a cell's markers rule out was set aside, which rescues most of the
    vetoed cells either way, 0.648 -> 0.659 and 416 -> 386. ``spillover=0`` reads the counts as they are, and
    ``params`` records which was done."""
    c = real_data("chen")
    off = c.copy()
    tmt.tl.annotate(c)
    tmt.tl.annotate(off, spillover=0)
    assert c.uns["tmt_annotate"]["params"]["spillover"] == 0.15
    assert off.uns["tmt_annotate"]["params"]["spillover"] == 0.0
    allowed = {"Lymphocyte": {"CD4 T", "CD8 T", "B", "NK"}, "Myeloid": {"Monocyte/Macrophage", "DC"},
               "Epithelial": {"Malignant/Epithelial"}, "Fibroblast": {"Fibroblast"},
               "Vascular": {"Endothelial", "Pericyte"}, "Plasma": {"Plasma"}, "Mast": {"Mast"}}

    def right(a):
        pairs = zip(a.obs["tmt_lineage"].astype(str), a.obs["type_lvl1"].astype(str), strict=True)
        return np.mean([lab in allowed[t] for lab, t in pairs])

    assert right(c) >= right(off) + 0.005
    assert (c.obs["tmt_lineage"] == "unassigned").sum() <= (off.obs["tmt_lineage"] == "unassigned").sum() - 5
    treg = c.obs["type_lvl2"].astype(str) == "Treg"
    assert (treg & (c.obs["tmt_state"] == "Treg")).sum() >= (treg & (off.obs["tmt_state"] == "Treg")).sum() + 3
    # log values hold no transcript counts to compare with a neighbour's: read as they are
    logged = real_data("chen")
    sc.pp.normalize_total(logged, target_sum=1e4)
    sc.pp.log1p(logged)
    tmt.tl.annotate(logged)
    assert logged.uns["tmt_annotate"]["params"]["spillover"] == 0.0


def test_chen_merfish_macrophages_beside_stronger_macrophages_keep_their_markers():
    """A macrophage beside one that makes six times its C1Q is still a macrophage: transcripts a touching cell
    explains speak for a lineage, never against one. Chen's 383 macrophages annotated alone, coordinates kept
    (`validate_annotation.py --alone`): 0.783 called Monocyte/Macrophage with spill-over read as before and
    without; reading such markers as not expressed had lowered it to 0.705."""
    c = real_data("chen")
    mac = c[c.obs["type_lvl2"].astype(str).str.contains("Macrophage").to_numpy()].copy()
    off = mac.copy()
    tmt.tl.annotate(mac)
    tmt.tl.annotate(off, spillover=0)
    assert mac.uns["tmt_annotate"]["params"]["spillover"] == 0.15
    kept = (mac.obs["tmt_lineage"] == "Monocyte/Macrophage").mean()
    assert kept >= (off.obs["tmt_lineage"] == "Monocyte/Macrophage").mean() - 0.01, kept


def test_puram_tregs_by_foxp3_with_a_partner():
    """Puram's 20 Tregs among its 40 CD4 T cells: a CD4 T cell with FOXP3 and a second Treg gene (IL2RA, CTLA4,
    IKZF2) is a Treg. Measured precision 0.90, recall 0.90 (0.84 F1 by the state signatures alone)."""
    p = real_data("puram")
    tmt.tl.annotate(p)
    called, true = p.obs["tmt_state"] == "Treg", p.obs["celltypes"] == "reg. T cell"
    assert true[called].mean() >= 0.85 and called[true].mean() >= 0.85


def test_a_decisive_gene_seen_everywhere_decides_nothing():
    """Puram with FOXP3 (decisive for Tregs) given to 70% of cells, as a broad background would: more than a tenth
    of other lineages' seeds carry it, so it is switched off (params) and moves no cell; in the shared file it
    decides (no seed of another lineage carries it)."""
    from tmetoolkit._core.annotation import lineage as core
    from tmetoolkit._core.annotation.markers import lineage_markers

    p = real_data("puram")
    ref = p.copy()
    tmt.tl.annotate(ref)
    rng = np.random.default_rng(0)
    col = p.var_names.get_loc("FOXP3")
    X = np.asarray(p.X.toarray() if hasattr(p.X, "toarray") else p.X, dtype=np.float32).copy()
    X[:, col] = np.where(rng.random(p.n_obs) < 0.7, X.max(axis=1) * 0.5, 0.0)
    p.X = X
    tmt.tl.annotate(p)
    assert "FOXP3" in p.uns["tmt_annotate"]["params"]["not_decisive"].split(",")
    assert "FOXP3" not in ref.uns["tmt_annotate"]["params"]["not_decisive"].split(",")
    # the core: a gene in not_decisive makes no cell a carrier, however strong its evidence
    treg = next(lab for lab in lineage_markers().labels if lab.decisive_state == "Treg")
    own = pd.DataFrame({treg.label: np.ones(4)})
    R = np.ones((4, 2))
    gene_col = {"FOXP3": 0, "CTLA4": 1}
    assert core.carries_decisive(treg, own, R, gene_col, with_partner=True).all()
    assert not core.carries_decisive(treg, own, R, gene_col, not_decisive=["FOXP3"]).any()


def test_tumour_and_stromal_cells_are_not_dendritic_cells(annotated):
    """A stray LILRA4 or XCR1 transcript (decisive for pDCs and cDC1s) does not make an epithelial, fibroblast or
    endothelial cell a DC: the DC labels hold those lineages' genes against them, as the mast label does. Measured
    on simulate() (seed 3): 25 of 5,865 such cells called DC (178 without the negatives), 157 of its 162 DCs DC;
    Chen's MERFISH: 7 of 1,633 tumour and stromal cells (19)."""
    per_cell, _ = annotated
    truth = per_cell.obs["true_lineage"].astype(str)
    called = per_cell.obs["tmt_lineage"].astype(str)
    other = truth.isin(["Malignant/Epithelial", "Fibroblast", "Endothelial", "Pericyte"])
    assert (called[other] == "DC").mean() <= 0.01
    assert (called[truth == "DC"] == "DC").mean() >= 0.9

    c = real_data("chen")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(c)
    other = c.obs["type_lvl2"].isin(["Epithelial", "Fibroblast", "Vascular"])
    assert other.sum() >= 1600
    assert (c.obs["tmt_lineage"][other] == "DC").sum() <= 10


def test_reserve_genes_stand_in_for_a_lost_marker_group():
    """Puram without CD3D, CD3E, CD3G and CD2 (as in files of highly variable genes): the T-cell reserve (CD6,
    TRAT1, CD5, CD28, THEMIS...) stands in, in the T cells' own evidence and, since the panel lacks the group
    altogether, in the NK label's T-cell negative. Measured: 0.88 of the T cells called CD4 or CD8 T (0.73 with
    the stand-ins in the positive group only, 10 of the 60 then NK; 0.35 without the reserve); the rules table
    names the stand-ins. A file of 2,000 highly variable genes with the full matrix in .raw warns and names .raw."""
    p = real_data("puram")
    q = p[:, ~p.var_names.isin(["CD3D", "CD3E", "CD3G", "CD2"])].copy()
    tmt.tl.annotate(q)
    t = p.obs["celltypes"].astype(str).isin(["CD4 T cell", "CD8 T cell", "reg. T cell"]).to_numpy()
    assert q.obs["tmt_lineage"][t].isin(["CD4 T", "CD8 T"]).mean() >= 0.8
    rules = q.uns["tmt_annotate"]["rules"].set_index("label")
    assert "CD6" in rules.at["CD8 T", "stand_ins"].split(",") or "CD6" in rules.at["CD4 T", "stand_ins"].split(",")
    full = p.copy()
    sc.pp.highly_variable_genes(full, n_top_genes=2000, flavor="seurat")
    h = full[:, full.var["highly_variable"].to_numpy()].copy()
    h.raw = p
    with pytest.warns(UserWarning, match=r"adata\.raw"):
        tmt.tl.annotate(h)


def test_nk_cells_are_not_called_where_the_panel_reads_no_t_cell_gene():
    """NK cells are told from effector T cells by the absence of CD3. Puram without any T-cell gene or stand-in
    (2,000 variable genes of a data set of T cells keep none; NKG7 and GNLY stay): the NK label is not assessable,
    the rules table says why, and no T cell is called NK. With the genes there, the NK label is read."""
    from tmetoolkit._core.annotation.markers import lineage_markers

    p = real_data("puram")
    t_label = next(lab for lab in lineage_markers().labels if lab.label == "T")
    drop = {*t_label.genes, *(g for grp in t_label.reserve for g in grp)}
    q = p[:, ~p.var_names.isin(drop)].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(q)
    rules = q.uns["tmt_annotate"]["rules"].set_index(["level", "label"])
    assert not rules.loc[("lineage", "NK"), "assessable"]
    assert "CD3D" in rules.loc[("lineage", "NK"), "reason"]
    t = p.obs["celltypes"].astype(str).isin(["CD4 T cell", "CD8 T cell", "reg. T cell"]).to_numpy()
    assert t.sum() >= 50 and not q.obs["tmt_lineage"][t].eq("NK").any()
    full = p.copy()
    tmt.tl.annotate(full)
    assert full.uns["tmt_annotate"]["rules"].set_index(["level", "label"]).loc[("lineage", "NK"), "assessable"]


def test_a_panel_without_ptprc_reads_a_pan_leukocyte_gene_against_the_stromal_labels():
    """PTPRC is the immune group that the stromal and epithelial labels read against. On a panel without it a
    pan-leukocyte gene stands in (scGate's immune genes LAPTM5 and CD52, then CD53): Zilionis' whole transcriptome
    without PTPRC gives 14 of its 230 immune cells stromal evidence above 0 (26 with PTPRC, 71 with no stand-in),
    while 65 of its 66 stromal and epithelial cells keep theirs. The rules table names the gene read against them."""
    from tmetoolkit._core.annotation.identity import read_expression
    from tmetoolkit._core.annotation.lineage import label_evidence
    from tmetoolkit._core.annotation.markers import lineage_markers

    z = shared_file("zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad")
    major = z.obs["author_major_cell_type"].astype(str)
    stromal_cells = (major.str.contains("specific") | major.isin(["Fibroblasts", "Endothelial cells",
                                                                  "Smooth muscle cells", "Ciliated cells"])).to_numpy()
    immune_cells = ~stromal_cells & ~major.isin(["ND", "bMyeloid precursor-like", "bBasophils"]).to_numpy()
    table, state = lineage_markers(), tmt.pp.check_input(z).state
    stromal = [lab.label for lab in table.labels if ("PTPRC",) in lab.negative]
    assert {"Fibroblast", "Endothelial", "Pericyte|pericyte", "Malignant/Epithelial|epithelial"} <= set(stromal)

    def stromal_evidence(keep):
        cut = z[:, keep]
        expr = read_expression(sp.csr_matrix(cut.X), cut.var_names, species="human", state=state, table=table)
        return label_evidence(expr.ranks, expr.gene_col, table)[0][stromal].max(axis=1).to_numpy()

    with_ptprc = stromal_evidence(np.ones(z.n_vars, dtype=bool))
    without = stromal_evidence(np.asarray(z.var_names != "PTPRC"))
    assert (without[immune_cells] > 0).sum() <= (with_ptprc[immune_cells] > 0).sum() + 5
    assert (without[stromal_cells] > 0).mean() >= 0.95
    cut = z[:, np.asarray(z.var_names != "PTPRC")].copy()  # the rules table names the gene read against them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(cut)
    rules = cut.uns["tmt_annotate"]["rules"].set_index("label")
    assert (rules.loc[stromal, "negative_stand_ins"] == "LAPTM5").all()
    assert rules.at["B", "negative_stand_ins"] == ""


def test_cd8b_stands_in_for_t_cells_but_does_not_tell_nk_cells_apart():
    """CD8 beta, of the CD8 alpha-beta co-receptor of T cells (NK cells make CD8 alpha alone), stands in last for
    the T-cell genes: Puram without CD3D/E/G, CD2 and every other stand-in keeps CD8B, and its CD8 T cells are T
    cells again (18 of 20 CD8 T, 14 without it). A CD8B read cannot show that a CD4 T cell is not an NK cell, so
    the NK label stays not assessable there."""
    from tmetoolkit._core.annotation.markers import lineage_markers

    p = real_data("puram")
    t_label = next(lab for lab in lineage_markers().labels if lab.label == "T")
    drop = {*t_label.genes, *(g for grp in t_label.reserve for g in grp)} - {"CD8B"}
    q = p[:, ~p.var_names.isin(drop)].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(q)
    rules = q.uns["tmt_annotate"]["rules"].set_index(["level", "label"])
    assert "CD8B" in rules.loc[("lineage", "CD8 T"), "stand_ins"].split(",")
    assert not rules.loc[("lineage", "NK"), "assessable"]
    cd8 = (p.obs["celltypes"] == "CD8 T cell").to_numpy()
    assert cd8.sum() == 20 and (q.obs["tmt_lineage"][cd8] == "CD8 T").mean() >= 0.85
    assert not q.obs["tmt_lineage"].eq("NK").any()


def test_a_lineage_read_from_one_marker_gene_is_named(sim_small):
    """A panel that keeps one gene of a lineage's markers reads that gene as the lineage (Tirosh 2016's selected
    genes keep PDGFRA alone of the fibroblast genes, and its PDGFRA+ glioma cells were called fibroblasts): annotate
    names such a lineage, its cells and the gene; the rules table lists the genes read. On the whole panel it is
    quiet."""
    from tmetoolkit._core.annotation.markers import lineage_markers

    fib = next(lab for lab in lineage_markers().labels if lab.label == "Fibroblast")
    drop = {g for g in (*fib.genes, *(g for grp in fib.reserve for g in grp)) if g != "PDGFRA"}
    cut = sim_small[:, ~sim_small.var_names.isin(drop)].copy()
    with pytest.warns(tmt.TmtWarning, match=r"one marker gene on this panel: Fibroblast: \d+ cells on PDGFRA, one of "
                                           r"its 7 genes.*sc\.pl\.dotplot\(adata, \['PDGFRA'\]"):
        tmt.tl.annotate(cut)
    rules = cut.uns["tmt_annotate"]["rules"].set_index("label")
    assert rules.at["Fibroblast", "genes_read"] == "PDGFRA" and rules.at["Fibroblast", "stand_ins"] == ""
    assert rules.at["Fibroblast", "n_called"] >= 10
    from tmetoolkit._report import _cell_state_section  # the report names it among its caveats

    caveats = []
    _cell_state_section(cut, "sample", caveats)
    assert any(c.startswith("Read from one marker gene on this gene panel: Fibroblast (") for c in caveats), caveats

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*one marker gene.*")
        tmt.tl.annotate(sim_small)
    assert set(sim_small.uns["tmt_annotate"]["rules"].set_index("label").at["Fibroblast", "genes_read"].split(",")) \
        == set(fib.genes)


def test_cd4_stand_ins_split_t_cells_on_a_panel_without_cd4_and_cd40lg(pbmc68k):
    """Files of variable genes often drop CD4 and CD40LG. Without them IL7R and CD28 stand in for the CD4 group
    among T cells: on scanpy's PBMC sample without the two genes, 0.76 of the sorted T cells get the right
    co-receptor lineage (0.44 without the stand-ins, 0.74 with CD4 and CD40LG kept, 0.71 when the split's CD8
    label read them as negatives too)."""
    a = sc.datasets.pbmc68k_reduced()
    full = a.raw.to_adata()
    q = full[:, ~full.var_names.isin(["CD4", "CD40LG"])].copy()
    q.obs["bulk_labels"] = a.obs["bulk_labels"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tmt.TmtWarning)
        tmt.tl.annotate(q)
    lab = q.obs["bulk_labels"].astype(str)
    truth = lab.map(lambda x: "CD4 T" if x.startswith("CD4+") else "CD8 T" if x.startswith("CD8+") else None)
    t = truth.notna()
    assert (q.obs["tmt_lineage"].astype(str)[t] == truth[t]).mean() >= 0.74
    rules = q.uns["tmt_annotate"]["rules"].set_index("label")
    assert {"IL7R", "CD28"} <= set(rules.at["CD4 T", "stand_ins"].split(","))
    # the same genes cut from an annotated object: the scores of signatures that lost their genes (CD4_T) go
    # with them, and the calls are those of a fresh object
    cut = pbmc68k[:, ~pbmc68k.var_names.isin(["CD4", "CD40LG"])].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tmt.TmtWarning)
        tmt.tl.annotate(cut)
    assert "CD4_T" not in cut.obsm["tmt_scores"]
    assert (cut.obs["tmt_lineage"] == q.obs["tmt_lineage"]).all()


def test_t_cells_without_either_co_receptor_take_the_classifiers_call():
    """Among T cells, a cell that shows neither CD8 nor CD4 transcripts (common at droplet depth), or whose
    neighbours carry the other co-receptor's, takes the classifier's call. At the lineage level a cell whose pooled
    markers speak against the classifier's lineage (below -AGAINST) stays unassigned; one without markers does not."""
    from tmetoolkit._core.annotation import lineage as core

    rng = np.random.default_rng(0)
    n = 60
    E = pd.DataFrame({"CD8 T": np.r_[np.full(n, 0.6), np.zeros(n), np.zeros(n), np.zeros(n)],
                      "CD4 T": np.r_[np.zeros(n), np.full(n, 0.6), np.zeros(n), np.full(n, -0.3)]})
    # the silent cells and those with evidence against CD4 sit with the CD4 T cells in expression space
    features = np.r_[rng.normal(-3, 1, (n, 5)), rng.normal(3, 1, (n, 5)), rng.normal(3, 1, (n, 5)),
                     rng.normal(3, 1, (n, 5))]
    silent, against = np.arange(2 * n, 3 * n), np.arange(3 * n, 4 * n)
    split = core.call_lineages(E, features, min_confidence=0.0, require_evidence=False)
    assert (split.lineage[silent] == "CD4 T").all() and (split.lineage[against] == "CD4 T").all()
    lineage = core.call_lineages(E, features, min_confidence=0.0)
    assert (lineage.lineage[silent] == "CD4 T").all()
    assert (lineage.lineage[against] == core.UNASSIGNED).all()
    assert lineage.vetoed[against].all() and not lineage.vetoed[silent].any()


def test_one_learnable_label_takes_the_silent_cells():
    """Where one label alone has enough seeds (CD4 T cells among sorted CD4 T cells), it takes the cells without
    evidence; the other label's few seeds keep their call. Before, such a split fell back to the marker calls, where
    a cell with neither co-receptor read took the first label, CD8 T."""
    from tmetoolkit._core.annotation import lineage as core

    rng = np.random.default_rng(0)
    n, few = 60, core.MIN_SEEDS - 1
    E = pd.DataFrame({"CD8 T": np.r_[np.full(few, 0.6), np.zeros(n), np.zeros(n)],
                      "CD4 T": np.r_[np.zeros(few), np.full(n, 0.6), np.zeros(n)]})
    features = rng.normal(0, 1, (few + 2 * n, 5))
    res = core.call_lineages(E, features, min_confidence=0.0, require_evidence=False)
    assert res.method == "one lineage"
    assert (res.lineage[:few] == "CD8 T").all()
    assert (res.lineage[few:] == "CD4 T").all()


def test_sorted_cells_of_one_type_keep_their_lineage():
    """Cells of one type annotated alone, as after sorting: Puram's 20 conventional CD4 T cells (measured 18 CD4 T;
    before 9 CD4 T and 8 CD8 T: with too few seeds to learn, the split fell back to marker calls, in which a cell
    with neither co-receptor read took the first label, CD8 T) and Zilionis' 200 mouse lung neutrophils (measured
    0.92 Neutrophil, 4% unassigned; before, with no second lineage to learn, 0.62 and 30% unassigned)."""
    a = real_data("puram")
    cd4 = a[a.obs["celltypes"] == "CD4 T cell"].copy()
    tmt.tl.annotate(cd4)
    assert (cd4.obs["tmt_lineage"] == "CD4 T").mean() >= 0.8
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    neutrophils = z[z.obs["author_major_cell_type"] == "Neutrophils"].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(neutrophils)
    assert (neutrophils.obs["tmt_lineage"] == "Neutrophil").mean() >= 0.85
    assert neutrophils.uns["tmt_annotate"]["params"]["lineage_method"] == "one lineage"


def test_sorted_immune_cells_are_told_how_malignant_cells_are_called_without_seeds():
    """Puram's T cells annotated alone hold too few epithelial seeds to learn the malignant lineage: the warning says
    so, says that only cells whose own markers say so are called malignant (it once said none was, where some
    were), and names tumor_signature=. Its count agrees with the seeds annotate records."""
    a = real_data("puram")
    t = a[a.obs["celltypes"].astype(str).isin(["CD4 T cell", "CD8 T cell", "reg. T cell"])].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tmt.tl.annotate(t)
    said = [str(w.message) for w in caught if "malignant lineage" in str(w.message)]
    assert len(said) == 1 and "only cells whose own markers say so are called malignant" in said[0]
    assert "no cell is called malignant" not in said[0] and "tumor_signature=" in said[0]
    rules = t.uns["tmt_annotate"]["rules"]
    seeds = int(rules.loc[rules["label"].str.startswith("Malignant/Epithelial"), "n_seeds"].sum())
    assert said[0].startswith(f"only {seeds} cell")


def test_zilionis_mural_cells_are_not_fibroblasts():
    """Zilionis' lung-tumour smooth-muscle cells (6 of 285, inDrop) are RGS5+ KCNJ8+ mural cells that also carry
    DCN: the mural labels are held back only by the fibroblast genes mural cells lack (PDGFRA, LUM, FBLN1), and a
    lineage too rare for the classifier to learn keeps the cells its markers favour. Measured 5 of 6 Pericyte
    (0 of 6 before, all Fibroblast), no fibroblast called Pericyte."""
    z = shared_file("zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(z)
    major = z.obs["author_major_cell_type"].astype(str)
    called = z.obs["tmt_lineage"].astype(str)
    assert (called[major == "Smooth muscle cells"] == "Pericyte").sum() >= 4
    assert (called[major == "Fibroblasts"] == "Fibroblast").all()


def test_myoepithelial_cells_are_not_pericytes():
    """Xenium breast sample: myoepithelial cells around DCIS make ACTA2 and MYH11 like smooth-muscle cells and the
    basal keratins that mural cells lack. Measured: of the 264 KRT14+ MYH11+ cells, 120 were pericytes without the
    keratin negative, none now (223 epithelial); the RGS5+ pericytes of the stroma stay (81 before, 79 now)."""
    x = real_data("xenium")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(x)

    def detected(gene):
        return np.asarray((x[:, gene].X > 0).todense()).ravel()

    called = x.obs["tmt_lineage"].astype(str).to_numpy()
    myoepithelial = detected("KRT14") & detected("MYH11")
    mural = detected("RGS5") & (x.obs["region"] == "Stroma").to_numpy()
    assert myoepithelial.sum() >= 200
    assert (called[myoepithelial] == "Pericyte").mean() <= 0.05
    assert (called[myoepithelial] == "Malignant/Epithelial").mean() >= 0.75
    assert (called[mural] == "Pericyte").sum() >= 70


def test_marker_ranks_are_cut_at_a_quarter_of_a_small_panel():
    """On a panel of selected genes a cell's 1,500th gene is near the bottom of what it expresses: there a gene
    counts as expressed only in the cell's top quarter of the panel, so one stray transcript is not a marker."""
    from tmetoolkit._core.annotation import ranks

    assert ranks.max_rank_for(20_000) == ranks.MAX_RANK and ranks.max_rank_for(2_000) == 500
    cell = np.zeros((1, 2_000))
    cell[0, :900] = np.linspace(50, 2, 900)  # 900 genes expressed, the marker (column 899) lowest
    whole = ranks.within_cell_ranks(cell, np.array([0, 899]))
    panel = ranks.within_cell_ranks(cell, np.array([0, 899]), ranks.max_rank_for(2_000))
    assert whole[0, 1] > 0.4 and panel[0, 1] == 0.0  # 900th of 2,000: expressed by UCell's cut, not by the panel's
    assert whole[0, 0] == panel[0, 0] == 1.0


def test_puram_highly_variable_genes_keep_lineages():
    """Puram's 2,000 most variable genes (seurat flavour, as a user keeps them): lineage accuracy measured 0.928
    (0.778 with UCell's fixed 1,500 ranks, mast and fibroblast cells called DC through CCL22, which this Smart-seq2
    file detects in 80% of cells; 0.878 before the mast genes counted against the DC labels, when CCL22, the only
    mregDC gene on this panel, made 5 of the 20 mast cells DCs and left 4 unassigned)."""
    p = real_data("puram")
    full = p.copy()
    sc.pp.highly_variable_genes(full, n_top_genes=2000, flavor="seurat")
    h = full[:, full.var["highly_variable"].to_numpy()].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(h)
    truth = p.obs["celltypes"].astype(str).map({
        "B cell": "Plasma", "CD4 T cell": "CD4 T", "CD8 T cell": "CD8 T", "reg. T cell": "CD4 T", "Dendritic": "DC",
        "Endothelial": "Endothelial", "Fibroblast": "Fibroblast", "Macrophage": "Monocyte/Macrophage",
        "Mast": "Mast"})
    called = h.obs["tmt_lineage"].astype(str).replace({"B": "Plasma"})  # CHETAH's "B cell" holds plasma cells
    assert truth.notna().all()
    assert (called == truth).mean() >= 0.9
    assert (called[truth == "Mast"] == "Mast").mean() >= 0.9  # measured 1.0 (0.55 without the mast negative)
    # the monocyte state's own genes (VCAN, FCN1) are not on this panel, only the C1QA/C1QB it lacks: scored alone,
    # those called 16 of the 20 macrophages monocytes; now the published monocyte set decides (12 TAM M2-like, 2
    # M1-like, none Monocyte)
    state = h.obs["tmt_state"].astype(str)[truth == "Monocyte/Macrophage"]
    assert (state == "Monocyte").sum() <= 2 and state.isin(["TAM M1-like", "TAM M2-like"]).sum() >= 12


def test_tam_state_is_its_polarization(annotated):
    """TAM M1-like and M2-like compete as one against monocytes, and a TAM is named by ``tmt_tam_polarization``: the
    two columns never disagree, and a macrophage high in both programmes or in neither keeps the lineage's name.
    Decided as two states, their lead over each other was read in a noise unit the monocyte programme set, and most
    macrophages of the held-out Kim and Qian sets had no state while the polarization named them."""
    o = annotated[0].obs
    st, pol = o["tmt_state"].astype(str), o["tmt_tam_polarization"].astype(str)
    assert (st == "TAM M2-like").sum() > 50 and (st == "TAM M1-like").sum() > 50
    assert (pol[st == "TAM M1-like"] == "M1-like").all() and (pol[st == "TAM M2-like"] == "M2-like").all()
    unsure = (o["tmt_lineage"] == "Monocyte/Macrophage") & pol.isin(["M1/M2 mixed", "neither"])
    assert not st[unsure].isin(["TAM M1-like", "TAM M2-like"]).any()


def test_tam_states_without_the_m1_genes_stay_the_competitions():
    """A panel that cannot score the M1-like programme has no polarization: its TAM M2-like cells keep the state the
    competition gives them (117 of 119 planted; none while an unread polarization named every TAM the lineage), and
    the planted M1-like cells keep the lineage's name."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=1500, seed=3)
    b = a[:, ~a.var_names.isin(tmt.sig.get("TAM_M1_like").genes_up)].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(b)
    mm = (b.obs["tmt_lineage"] == "Monocyte/Macrophage").to_numpy()
    truth, st = b.obs["true_state"].astype(str)[mm], b.obs["tmt_state"].astype(str)[mm]
    assert b.obs["tmt_tam_polarization"][mm].isna().all()
    assert (st[truth == "TAM M2-like"] == "TAM M2-like").mean() >= 0.9
    assert not (st[truth == "TAM M1-like"] == "TAM M2-like").any()


def test_puram_macrophage_polarization_reads_the_noise_of_cells_without_the_programmes():
    """Puram's 20 macrophages (Smart-seq2) hold the M2-like programme well above the other cells (TAM_M2_like
    median 1.4 against -0.3 to 0 in T cells). Its noise unit, taken from the macrophages alone, fell back on the
    spread of their expression (too few below zero) and only 6 were M1-like or M2-like; taken from every cell, 13
    are (12 M2-like, 1 M1-like; 3 mixed)."""
    p = real_data("puram")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(p)
    mac = (p.obs["celltypes"] == "Macrophage").to_numpy()
    pol = p.obs["tmt_tam_polarization"].astype(str)[mac]
    assert (pol == "M2-like").sum() >= 10 and (pol == "M2-like").sum() > 3 * (pol == "M1-like").sum()
    assert (p.obs["tmt_state"].astype(str)[mac] == "TAM M2-like").sum() >= 10


def test_puram_on_a_targeted_panel_keeps_lineages_too_small_to_learn():
    """Puram's cells cut to the 197 genes they share with the Xenium breast panel: B cells (CHETAH's "B cell", which
    holds plasma cells; the cut keeps no plasma gene) have 8 seeds, too few for the classifier, and fibroblasts 5.
    Their other cells, whose pooled markers favour B or fibroblast weakly, kept the classifier's call though its
    lineage found no support in them: 9 B cells unassigned and 10 fibroblasts CD4 T. Now they keep their markers'
    call: 17 of 20 B cells B, 5 fibroblasts CD4 T."""
    p = real_data("puram")
    xenium = ad.read_h5ad(real_data_path("xenium"), backed="r")
    panel = xenium.var_names.copy()
    xenium.file.close()
    a = p[:, p.var_names.isin(panel)].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(a)
    called, truth = a.obs["tmt_lineage"].astype(str), p.obs["celltypes"].astype(str)
    assert (called[truth == "B cell"] == "B").sum() >= 15  # 8 before
    assert (called[truth == "Fibroblast"] == "CD4 T").sum() <= 6  # 10 before


def test_chen_merfish_tam_and_exhaustion_scores():
    """Chen 2024 MERFISH (raw counts, 479 genes): published TAM and T-cell programmes order the author labels."""
    from sklearn.metrics import roc_auc_score

    c = real_data("chen")
    tmt.tl.score(c, ["tam", "tcell", "treg"])
    S = c.obsm["tmt_scores"]
    t2 = c.obs["type_lvl2"].astype(str)
    mac = t2.isin(["SPP1+ Macrophage", "FOLR2+CD14+ Macrophage"])
    assert roc_auc_score(t2[mac] == "FOLR2+CD14+ Macrophage", S.loc[mac, "TAM_RTM"]) >= 0.85
    # exhaustion programmes compared within CD8 T cells, each standardised across them (different gene sets
    # have different raw scales): TCF7+ cells lean to Tpex, CXCL13+ cells to Tex
    cd8 = t2.isin(["CD8 T", "TCF7+ CD8 T", "CXCL13+ CD8 T"])
    Z = (S.loc[cd8, ["CD8_Tpex_core", "CD8_Tex"]] - S.loc[cd8, ["CD8_Tpex_core", "CD8_Tex"]].mean()) / S.loc[
        cd8, ["CD8_Tpex_core", "CD8_Tex"]].std()
    by = Z.groupby(t2[cd8]).mean()
    assert by.loc["TCF7+ CD8 T", "CD8_Tpex_core"] > by.loc["TCF7+ CD8 T", "CD8_Tex"]  # measured 0.34 vs -0.36
    assert by.loc["CXCL13+ CD8 T", "CD8_Tex"] > by.loc["CXCL13+ CD8 T", "CD8_Tpex_core"]  # measured 0.38 vs 0.06
    lymph = c.obs["type_lvl1"] == "Lymphocyte"
    assert roc_auc_score(t2[lymph] == "Treg", S.loc[lymph, "Treg_core"]) >= 0.75


def test_mouse_data_get_the_same_calls(sim_small):
    """Mouse symbols (Cd8a, Foxp3, ...) are annotated through the ortholog table, species detected or given."""
    h2m = tmt.sig.to_mouse(list(sim_small.var_names))
    one_to_one = pd.Series({g: h2m[g][0] for g in sim_small.var_names if g in h2m and len(h2m[g]) == 1})
    one_to_one = one_to_one[~one_to_one.duplicated(keep=False)]
    keep = [*one_to_one.index, *[g for g in sim_small.var_names if g.startswith("SIMGENE")]]
    human = sim_small[:, keep].copy()
    mouse = human.copy()
    mouse.var_names = [one_to_one.get(g, g) for g in human.var_names]
    assert "Cd8a" in mouse.var_names
    assert tmt.pp.check_input(mouse).species == "mouse"  # 4,000 upper-case simulator names do not fool detection
    tmt.tl.annotate(human)
    tmt.tl.annotate(mouse, species="mouse")
    assert mouse.uns["tmt_annotate"]["params"]["species"] == "mouse"
    truth = human.obs["true_state"].astype(str)
    acc_h = (human.obs["tmt_state"].astype(str) == truth).mean()
    acc_m = (mouse.obs["tmt_state"].astype(str) == truth).mean()
    assert acc_m >= 0.85 and abs(acc_m - acc_h) < 0.03, (acc_h, acc_m)
    assert (mouse.obs["tmt_state"].astype(str) == human.obs["tmt_state"].astype(str)).mean() >= 0.95


def _planted_panel(sim_small):
    """A synthetic multiplex-IF panel from the simulated truth: each lineage bright in its marker, dim elsewhere."""

    o = sim_small.obs
    rng = np.random.default_rng(0)
    positive = {
        "CD8 (Opal 540)": o["true_lineage"] == "CD8 T",
        "CD3": o["true_lineage"].isin(["CD8 T", "CD4 T"]),
        "FoxP3 (Opal 570)": o["true_state"] == "Treg",
        "CD68 (Opal 620)": o["true_lineage"] == "Monocyte/Macrophage",
        "PanCK": o["true_lineage"] == "Malignant/Epithelial",
        "DAPI": pd.Series(True, index=o.index),
    }
    X = np.column_stack([rng.lognormal(np.where(p, 1.5, -1.5), 0.5) for p in positive.values()])
    panel = ad.AnnData(X.astype(np.float32), obs=o[["sample", "true_lineage", "true_state"]].copy())
    panel.var_names = list(positive)
    return panel


def _assert_planted_calls(panel, o):
    st = panel.obs["tmt_state"].astype(str)
    for truth, ours in ((o["true_lineage"] == "CD8 T", st.isin(["CD8 T"])), (o["true_state"] == "Treg", st == "Treg"),
                        (o["true_lineage"] == "Monocyte/Macrophage", panel.obs["tmt_lineage"] == "Monocyte/Macrophage"),
                        (o["true_lineage"] == "Malignant/Epithelial", st == "Malignant/Epithelial")):
        assert (truth & ours).sum() / truth.sum() >= 0.95 and (truth & ours).sum() / ours.sum() >= 0.95


def test_protein_panel_with_planted_markers(sim_small, tmp_path):

    o = sim_small.obs
    panel = _planted_panel(sim_small)
    assert tmt.pp.check_input(panel).state == "protein"
    tmt.tl.annotate(panel)
    _assert_planted_calls(panel, o)
    gates = panel.uns["tmt_annotate"]["gates"].set_index("marker")
    assert {"CD8", "CD3", "FOXP3", "CD68", "tumor"} <= set(gates.index)
    assert gates["fraction_positive"].between(0, 1).all()
    with ad.settings.override(disallow_forward_slash_in_h5ad=True):  # label evidence columns hold no "/"
        panel.write_h5ad(tmp_path / "panel.h5ad")
    assert "Monocyte_Macrophage" in ad.read_h5ad(tmp_path / "panel.h5ad").obsm["tmt_marker_evidence"].columns


def test_protein_panel_transformed_and_z_scored(sim_small):
    """Panels are often shared arcsinh-transformed and z-scored per channel: negative values are then no sign of
    scaled RNA, the channels are gated on their own values, and the calls match those from the intensities."""
    o = sim_small.obs
    panel = _planted_panel(sim_small)
    X = np.arcsinh(np.asarray(panel.X, dtype=np.float64) / 0.2)
    panel.X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    report = tmt.pp.check_input(panel)
    assert report.state == "protein" and not report.problems
    tmt.tl.annotate(panel)
    _assert_planted_calls(panel, o)
    gates = panel.uns["tmt_annotate"]["gates"].set_index("marker")["gate"]
    assert (gates.abs() < 3).all()  # on the z scale, not back-transformed as if from logs
    fig = tmt.pl.gates(panel)
    assert fig.axes[0].get_xscale() == "linear"


def test_protein_panel_z_scored_phenoptr():
    """The Vectra field z-scored per channel: every class of inForm's is still found (recall as from intensities)."""
    a = real_data("phenoptr")
    X = np.asarray(a.X, dtype=np.float64)
    a.X = (X - X.mean(axis=0)) / X.std(axis=0)
    tmt.tl.annotate(a)
    assert a.uns["tmt_annotate"]["params"]["spillover"] == 0.0  # spill-over does not add on this scale
    st, ph = a.obs["tmt_state"].astype(str), a.obs["phenotype"].astype(str)
    for cls, ours in (("CD8+", ["CD8 T"]), ("FoxP3+", ["Treg"]), ("CK+", ["Malignant/Epithelial"]),
                      ("CD68+", ["Monocyte/Macrophage", "TAM M1-like", "TAM M2-like"])):
        assert st[ph == cls].isin(ours).mean() >= 0.85, cls  # measured 0.98 / 0.92 / 0.98 / 0.90


def test_z_scored_codex_keeps_its_zero_spike_negative():
    """Schürch's background-subtracted CODEX intensities hold a spike of zeros in most channels; arcsinh(x / 5) and
    z-scoring make it a spike at a negative value, which was gated as a population of its own: 61% of the cells
    were endothelial and the calls agreed with those from the intensities for 0.33 of cells (now 0.54)."""
    a = shared_file("schurch2020_crc_codex/schurch2020_crc_codex_spot9A_2434cells.h5ad")
    a.obs_names_make_unique()
    X = np.clip(np.asarray(a.X.toarray() if sp.issparse(a.X) else a.X, dtype=np.float64), 0, None)
    clean, z = a.copy(), a.copy()
    clean.X = X.astype(np.float32)
    Y = np.arcsinh(X / 5)
    z.X = ((Y - Y.mean(axis=0)) / Y.std(axis=0)).astype(np.float32)
    tmt.tl.annotate(clean)
    tmt.tl.annotate(z)
    assert (z.obs["tmt_lineage"].astype(str) == clean.obs["tmt_lineage"].astype(str)).mean() >= 0.5
    assert (z.obs["tmt_lineage"] == "Endothelial").mean() < 0.2


def test_states_are_not_decided_on_the_lineage_identity_genes():
    """MoMacDC decides every monocyte and macrophage, so its CSF1R and MSR1 cannot tell TAM M2-like cells from the
    other states; CD4 T cells have no such common set (CD4_T decides conventional cells, Treg_core Tregs); of the
    two fibroblast identity sets only the genes both list are left out, so ACTA2 and TAGLN decide myCAF."""
    from tmetoolkit._core.annotation import rules

    assert rules.lineage_identity_signatures("Monocyte/Macrophage") == {"MoMacDC"}
    assert rules.lineage_identity_signatures("CD4 T") == set()
    tables, derived = rules.specific_state_rules()
    genes = {s.name: set(s.genes_up) for s in derived}
    assert tables["Monocyte/Macrophage"]["TAM M2-like"] == ("TAM_M2_like_specific",)
    assert not {"CSF1R", "MSR1"} & genes["TAM_M2_like_specific"] and {"CD163", "MRC1"} <= genes["TAM_M2_like_specific"]
    assert {"FCN1", "VCAN"} <= genes["Monocyte_specific"]
    # two identity sets whose only common genes are collagens and DCN: the contractile genes stay with myCAF
    assert tables["Fibroblast"]["myCAF"] == ("myCAF",) and {"ACTA2", "TAGLN"} <= set(tmt.sig.get("myCAF").genes_up)
    assert tables["CD4 T"] == {"CD4 naive/memory": ("CD4_naive_memory",), "CD4 helper": ("CD4_helper",),
                               "Treg": ("Treg_core",)}


def test_killers_are_told_apart_without_the_programme_they_share():
    """Among cells called CD8 effector or Tex, the two are decided on sets without the cytotoxic programme (exhausted
    cells keep their granzymes) and without genes most lymphocytes express; a set the panel cannot score has no
    fallback to a published set holding the sibling's genes."""
    from tmetoolkit._core.annotation import rules

    tables, derived = rules.killer_rules()
    genes = {s.name: set(s.genes_up) for s in [*rules.specific_state_rules()[1], *derived]}
    assert set(tables["CD8 T"]) == {"CD8 effector", "CD8 Tex"}
    cytotoxic = set(tmt.sig.get("Cytotoxic_cells").genes_up)
    for names in tables["CD8 T"].values():
        for name in names:
            sig = genes.get(name) or set(tmt.sig.get(name).genes_up)
            assert not sig & cytotoxic and not sig & {"IL2RB", "IL2RG", "CD74", "NAMPT"}
    assert {"CX3CR1", "FGFBP2", "TBX21"} <= genes["CD8_effector" + rules.KILLER_SUFFIX]
    assert {"CXCL13", "HAVCR2", "TOX2"} <= genes["CD8_Tex" + rules.KILLER_SUFFIX]
    assert {s.name for s in derived} <= {s.name for s in rules.derived_signatures()}


def test_states_are_not_decided_on_translation_genes():
    """Every cell makes ribosomal proteins, EEF1A1, TPT1 and PABPC1: Zheng 2021's naive CD8 set lists four such
    genes, which decided CD8 naive/memory by themselves. The state sets leave them out (kinases named RPS6K... are
    not ribosomal proteins)."""
    from tmetoolkit._core.annotation import rules

    assert {"EEF1A1", "TPT1", "EEF1B2", "PABPC1"} <= set(tmt.sig.get("CD8_naive_memory").genes_up)
    tables, derived = rules.specific_state_rules()
    genes = {s.name: set(s.genes_up) for s in derived}
    naive = genes[tables["CD8 T"]["CD8 naive/memory"][0]]
    assert not any(rules.is_translation_gene(g) for g in naive) and {"LEF1", "BACH2", "NELL2"} <= naive
    assert [rules.is_translation_gene(g) for g in ("RPL13A", "RPS4X", "RPLP0", "RPSA", "RPS6KA1", "RPN1", "EEF2")] \
        == [True, True, True, True, False, False, True]


def test_zilionis_cd8_states_follow_their_own_genes():
    """Zilionis' tumour CD8 T cells (inDrop): with the translation genes deciding, 25 of 26 were called naive/memory
    although their naive genes (CCR7, SELL, LEF1, TCF7, IL7R) were detected less often than their effector genes,
    and cells with CXCL13, TIGIT and TNFRSF9 were among them (1 called Tex). Measured now: 10 Tex, 8 effector,
    4 naive/memory; each state's canonical genes are detected most in the cells called that state."""
    z = shared_file("zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(z)
    cd8 = (z.obs["tmt_lineage"] == "CD8 T").to_numpy()
    state = z.obs["tmt_state"].astype(str).to_numpy()
    genes = {"naive": ["CCR7", "SELL", "LEF1", "TCF7", "IL7R"],
             "Tex": ["HAVCR2", "LAG3", "TIGIT", "CXCL13", "ENTPD1", "LAYN"],
             "effector": ["GZMH", "FGFBP2", "CX3CR1", "GNLY", "NKG7"]}
    detected = {k: np.asarray((z[:, g].X > 0).mean(axis=1)).ravel() for k, g in genes.items()}
    per_state = pd.DataFrame(detected)[cd8]
    called = pd.Series(state[cd8], index=per_state.index)
    counts = called.value_counts()
    assert counts.get("CD8 Tex", 0) >= 5 and counts.get("CD8 naive/memory", 0) <= counts.sum() / 2
    means = per_state.groupby(called.to_numpy()).mean()
    for label, column in (("CD8 Tex", "Tex"), ("CD8 effector", "effector"), ("CD8 naive/memory", "naive")):
        assert means[column].idxmax() == label, (column, means.round(2).to_dict())


def test_mixed_lineage_evidence_is_reported(sim_small):
    """Planted spill-over between T/NK cells and fibroblasts (each gets the counts of a random cell of the other)
    makes T or NK + Fibroblast pairs of lineages that cells' own markers both support, where there were none."""
    import scipy.sparse as sp

    def pairs(adata):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tmt.tl.annotate(adata)
        assert not [w for w in caught if "two lineages" in str(w.message)]  # simulated cells: 4.5-5% mixed
        table = adata.uns["tmt_annotate"]["mixed_evidence"]
        return table.set_index(["lineage_a", "lineage_b"])["n_cells"]

    clean = pairs(sim_small.copy())
    rng = np.random.default_rng(0)
    lin = sim_small.obs["true_lineage"].astype(str).to_numpy()
    tnk, fib = np.flatnonzero(np.isin(lin, ["CD8 T", "CD4 T", "NK"])), np.flatnonzero(lin == "Fibroblast")
    X = sp.csr_matrix(sim_small.X, dtype=np.float64).toarray()
    spilled = X.copy()
    spilled[tnk] += X[rng.choice(fib, size=len(tnk))]
    spilled[fib] += X[rng.choice(tnk, size=len(fib))]
    sim_small.X = sp.csr_matrix(spilled)
    mixed = pairs(sim_small.copy())
    def tnk_fib(t):
        return sum(t.get(pair, 0) for pair in (("T", "Fibroblast"), ("NK", "Fibroblast")))

    assert {("T", "Fibroblast"), ("NK", "Fibroblast")} & set(mixed.index[:3])
    assert tnk_fib(mixed) >= 10 * max(tnk_fib(clean), 1)  # measured 45 vs 0


def test_mixed_lineage_warning_names_the_pairs(sim_small, monkeypatch):
    """Above ``MIXED_WARN`` of mixed cells annotate warns and names the most frequent pairs (real data: Chen test)."""
    from tmetoolkit.tl import _annotate

    monkeypatch.setattr(_annotate, "MIXED_WARN", 0.001)  # simulated cells: 0.13% mixed
    with pytest.warns(tmt._utils.TmtWarning, match=r"of cells carry strong evidence of two lineages \(\w"):
        tmt.tl.annotate(sim_small)
    assert _annotate.mixed_evidence_summary(sim_small.uns["tmt_annotate"]["mixed_evidence"])


def test_chen_merfish_mixed_lineage_evidence():
    """On the MERFISH window a sixth of the cells carry two lineages' marker evidence (macrophage transcripts in
    endothelial and stromal cells the most frequent pairs); on Smart-seq2 (Puram) there is no warning."""
    c = real_data("chen")
    tmt.tl.annotate(c)
    pairs = c.uns["tmt_annotate"]["mixed_evidence"]
    assert pairs["fraction"].sum() > 0.1  # measured 0.16
    assert "Monocyte/Macrophage" in set(pairs["lineage_a"].head(3)) | set(pairs["lineage_b"].head(3))
    p = real_data("puram")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tmt.tl.annotate(p)
    assert not [w for w in caught if "two lineages" in str(w.message)]


def test_sibling_states_are_decided_on_their_own_genes():
    """Sibling states are scored on their own genes: M-MDSC-like on ``M_MDSC_like_specific`` (without the S100A8/
    S100A9 it shares with the monocyte set)."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=7)
    tmt.tl.annotate(a)
    rules = a.uns["tmt_annotate"]["rules"].set_index("label")
    assert rules.loc["M-MDSC-like", "signatures"] == "M_MDSC_like_specific"
    assert "M_MDSC_like_specific" in a.obsm["tmt_scores"]


def test_m_mdsc_like_cells_are_told_from_monocytes():
    """simulate() plants M-MDSC-like cells as HLA-DR-low classical monocytes with the MS1 genes of Reyes 2020, genes
    no registry set holds; annotate finds them as Bronte 2016 defines them, monocytes whose HLA class II is low
    against the same sample's other monocytes (recall 0.94, precision 1.00 here; recall 0.96-0.97, precision
    0.97-1.00 on seeds 0, 3, 5; recall 0.00 when the state competition decided alone)."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=7)
    tmt.tl.annotate(a)
    mdsc, called = a.obs["true_state"] == "M-MDSC-like", a.obs["tmt_state"] == "M-MDSC-like"
    assert called[mdsc].mean() >= 0.9 and mdsc[called].mean() >= 0.9
    splits = a.uns["tmt_annotate"]["splits"]
    assert splits["applied"].all() and (splits["separation"] >= 2).all() and set(splits["sample"]) == {"S01", "S02"}


def test_monocytes_without_m_mdsc_like_cells_are_not_split():
    """The null: without M-MDSC-like cells the same sample's monocytes form one population and none is called
    M-MDSC-like (0 of 107; before the BIC condition a mixture at Ashman's D 2.4 called 14 of this sample's 55)."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=5)
    a = a[a.obs["true_state"] != "M-MDSC-like"].copy()
    tmt.tl.annotate(a)
    assert (a.obs["tmt_state"] == "M-MDSC-like").sum() <= 0.02 * (a.obs["true_state"] == "Monocyte").sum()
    splits = a.uns["tmt_annotate"]["splits"]
    splits = splits[splits["lineage"] == "Monocyte/Macrophage"]
    assert len(splits) == 2 and not splits["applied"].any() and splits["reason"].str.len().gt(0).all()


def test_neutrophils_of_healthy_lungs_are_not_pmn_mdsc_like():
    """A real negative control: Zilionis 2019's neutrophils of healthy mouse lungs (105, two mice). Their
    activation genes (IL1B, PTGS2, CYBB) are in the PMN-MDSC-like programme, so the signature competition against
    immature neutrophils called 104 of them PMN-MDSC-like; per mouse they form one population, and none is. The
    planted PMN-MDSC-like cells of simulate() still split off (bench_annotate: neutrophil states 0.966)."""
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    tmt.tl.annotate(z, sample_key="Animal")
    healthy = (z.obs["Tissue"] == "healthy") & (z.obs["tmt_lineage"] == "Neutrophil")
    assert healthy.sum() >= 100
    assert (z.obs.loc[healthy, "tmt_state"] == "PMN-MDSC-like").mean() <= 0.05
    splits = z.uns["tmt_annotate"]["splits"]
    assert set(splits.loc[splits["lineage"] == "Neutrophil", "sample"]) >= {"h_1", "h_2"}

    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=0)
    tmt.tl.annotate(a)
    ne = a.obs["true_state"].astype(str).isin(["Neutrophil", "PMN-MDSC-like"])
    assert (a.obs.loc[ne, "tmt_state"].astype(str) == a.obs.loc[ne, "true_state"].astype(str)).mean() >= 0.9


def _variable_genes_only(a, n: int = 2000):
    """``a`` cut to its ``n`` most variable genes (scanpy's ``seurat`` flavour on log-normalised counts)."""
    b = a.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    sc.pp.highly_variable_genes(b, n_top_genes=n, flavor="seurat")
    return a[:, b.var["highly_variable"].to_numpy()].copy()


def test_mouse_neutrophils_on_variable_genes_are_neutrophils():
    """Zilionis' mouse lungs cut to 2,000 highly variable genes keep CXCR1 and STEAP4 alone of the neutrophil genes,
    and CD14, which mouse neutrophils make: all 200 neutrophils were called monocytes. MMP8, the neutrophil
    collagenase, stands in for the missing genes: measured 112 of 200 neutrophils, and 6 NK cells called neutrophils,
    with the file's upper-case symbols read as human ones; read as mouse (session 29) 109, and 1 other cell."""
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    h = _variable_genes_only(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(h)
    called = h.obs["tmt_lineage"].astype(str)
    neutrophil = (h.obs["author_major_cell_type"] == "Neutrophils").to_numpy()
    rules = h.uns["tmt_annotate"]["rules"].query("level == 'lineage'").set_index("label")
    assert "MMP8" in rules.at["Neutrophil", "stand_ins"].split(",")
    assert (called[neutrophil] == "Neutrophil").sum() >= 90  # measured 112
    assert (called[~neutrophil] == "Neutrophil").sum() <= 0.1 * (called == "Neutrophil").sum()


def test_mouse_symbols_on_variable_genes_read_reciprocal_best_orthologs():
    """The same 2,000 variable genes in mouse symbols (Cd3e, not CD3E), read through the ortholog table: with every
    HCOP pair, 9 of the 200 neutrophils were neutrophils (lineage accuracy 0.450) where the upper-cased file, read
    by symbol identity, had 112. Weak partners of other families (SIGLEC6 of mast cells read mouse Cd33, SIRPG of
    T cells Sirpa, LILRA4 of pDCs the Pir genes) gave myeloid genes the roles of other lineages. With reciprocal
    best pairs: measured 109 neutrophils, accuracy 0.571."""
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    z.var_names = [g[:1] + g[1:].lower() for g in z.var_names]  # RIK/GM names keep a capital at most: read alike
    h = _variable_genes_only(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(h, sample_key="Animal")
    assert h.uns["tmt_annotate"]["params"]["species"] == "mouse"
    called, author = h.obs["tmt_lineage"].astype(str), h.obs["author_major_cell_type"].astype(str)
    ok = {"B cells": ["B"], "NK cells": ["NK"], "Neutrophils": ["Neutrophil"], "T cells": ["CD4 T", "CD8 T"]}
    assert np.mean([c in ok[a] for c, a in zip(called, author, strict=True)]) >= 0.55
    assert (called[author == "Neutrophils"] == "Neutrophil").sum() >= 90
    assert (called[author != "Neutrophils"] == "Neutrophil").sum() <= 10


def test_naive_cd8_t_cells_are_not_progenitor_exhausted():
    """Zilionis' mouse lung CD8 T cells: without the translation genes deciding, the signature competition called
    33 of 190 naive-like cells Tpex on SLAMF6 and BTLA, which naive T cells make too; PDCD1 was in none of them.
    Tpex are split off from naive/memory cells only where their programme forms a population apart: none here,
    while the planted Tpex cells of simulate() still split off."""
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    tmt.tl.annotate(z, sample_key="Animal")
    cd8 = z.obs["tmt_lineage"] == "CD8 T"
    assert cd8.sum() >= 150
    assert (z.obs.loc[cd8, "tmt_state"] == "CD8 Tpex").mean() <= 0.02
    splits = z.uns["tmt_annotate"]["splits"]
    assert (splits["state"] == "CD8 Tpex").any()

    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=0)
    tmt.tl.annotate(a)
    planted = (a.obs["true_state"] == "CD8 Tpex").to_numpy()
    assert (a.obs["tmt_state"][planted] == "CD8 Tpex").mean() >= 0.8  # measured 67 of 73 (64 before)
    splits = a.uns["tmt_annotate"]["splits"]
    assert splits.loc[splits["state"] == "CD8 Tpex", "applied"].all()


def test_a_split_needs_a_population_holding_the_programme():
    """Two Gaussians also fit a peak with a tail beside it. At 1,000 counts a cell the naive-like CD8 T cells of
    Zilionis' mouse lungs hold nearly no Tpex gene: their scores form a peak at -0.007 with a left tail, which two
    Gaussians split at D 2.03 (BIC gain 16), and 170 of 180 cells were called Tpex. A peak with a tail is one
    population, and two peaks neither of which holds the programme above the background of a control-subtracted
    score are no state either: no split."""
    from tmetoolkit._core.annotation import rules

    synthetic = np.random.default_rng(0)
    tail = np.concatenate([synthetic.normal(-0.007, 0.012, 160), synthetic.normal(-0.04, 0.02, 25)])
    for values in (tail, tail + 0.2):
        low, info = rules.split_two_populations(values, min_cells=10)
        assert low is None and "one peak" in info["reason"]
    below = np.concatenate([synthetic.normal(-0.007, 0.006, 160), synthetic.normal(-0.06, 0.008, 60)])
    low, info = rules.split_two_populations(below, min_cells=10)
    assert low is None and "holds the programme" in info["reason"]
    low, info = rules.split_two_populations(below + 0.2, min_cells=10)
    assert low is not None and info["applied"]

    rng = np.random.default_rng(0)
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    # 1,000 draws with replacement from each cell's counts, as validate_annotation.py's depth stress
    counts = z.X.toarray()
    thinned = np.zeros_like(counts)
    for i, row in enumerate(counts):
        thinned[i] = np.bincount(rng.choice(row.size, size=1000, p=row / row.sum()), minlength=row.size) \
            if row.sum() > 1000 else row
    z.X = sp.csr_matrix(thinned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tmt.TmtWarning)
        tmt.tl.annotate(z)
    cd8 = z.obs["tmt_lineage"] == "CD8 T"
    assert cd8.sum() >= 150
    # measured 0 of 194 (0.88 without the condition)
    assert (z.obs.loc[cd8, "tmt_state"] == "CD8 Tpex").mean() <= 0.05


def test_naive_cd8_t_cells_on_a_targeted_panel():
    """Progenitor-exhausted CD8 T cells share CCR7, SELL, TCF7 and IL7R with naive cells, but the two are told apart
    by the population split on the Tpex genes, so naive/memory cells are decided on those genes as well: a targeted
    panel (Xenium breast, 313 genes) has them and few others of the naive set. Measured: 68 of 397 CD8 T cells
    naive/memory, their naive genes detected in 0.30 of cells per gene against 0.16 in the cells called effector
    (3 naive/memory cells when the shared genes were left out)."""
    x = real_data("xenium")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(x)
    naive_genes = [g for g in ("CCR7", "SELL", "LEF1", "TCF7", "IL7R") if g in x.var_names]
    state = x.obs["tmt_state"].astype(str).to_numpy()
    cd8 = (x.obs["tmt_lineage"] == "CD8 T").to_numpy()

    def detected(cells):
        return float((x[cells, naive_genes].X > 0).mean())

    naive = cd8 & (state == "CD8 naive/memory")
    assert naive.sum() >= 0.1 * cd8.sum()
    assert detected(naive) > detected(cd8 & (state == "CD8 effector")) + 0.07


@pytest.fixture(scope="module")
def pbmc68k():
    """scanpy's bundled PBMC sample (Zheng 2017): 700 droplet cells, log values of 765 variable genes in ``.raw``,
    labels from the sorted populations each cell resembles most. No rule here was tuned on it."""
    a = sc.datasets.pbmc68k_reduced()
    b = a.raw.to_adata()
    b.obs["bulk_labels"] = a.obs["bulk_labels"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tmt.TmtWarning)
        tmt.tl.annotate(b)
    return b


def test_terminal_exhaustion_rests_on_the_exhaustion_receptors(pbmc68k):
    """CD8 Tex is decided on Zheng 2021's Tex programme with ProjecTILs' Tex gate (TIM-3, LAYN, LAG-3, CD39), so
    cytotoxic cells without the receptors are not called exhausted. Two real negative controls: blood CD8 T cells
    (none terminally exhausted) of scanpy's PBMC sample, none of 101 called Tex (the panel holds no Tex gene left
    among killers but TIGIT and LAG3; 2 when effector and Tex competed with the rest, 6 with the programme alone), and
    Chen's stem-like TCF7+ CD8 T cells called CD8 T, 3 of 16 (11 before)."""
    cd8 = pbmc68k.obs["tmt_lineage"] == "CD8 T"
    assert (pbmc68k.obs["tmt_state"][cd8] == "CD8 Tex").mean() <= 0.04
    c = real_data("chen")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tmt.TmtWarning)
        tmt.tl.annotate(c)
    stem = (c.obs["type_lvl2"] == "TCF7+ CD8 T") & (c.obs["tmt_lineage"] == "CD8 T")
    assert stem.sum() >= 10
    assert (c.obs["tmt_state"][stem] == "CD8 Tex").mean() <= 0.3


def test_scanpy_pbmc_sample_lineages(pbmc68k):
    """A panel of selected genes at droplet depth that no rule was tuned on: lineage accuracy 0.82 (score_genes +
    argmax on the same markers 0.53; a classifier trained on the labels 0.86; 0.77 before the CD4/CD8 split and
    the lineage veto were relaxed). Sorted CD19+ cells include
    plasmablasts: the 30 called Plasma hold MZB1, TNFRSF17 and FKBP11 without MS4A1."""
    lut = {"CD4+/CD25 T Reg": {"CD4 T"}, "CD4+/CD45RA+/CD25- Naive T": {"CD4 T"}, "CD4+/CD45RO+ Memory": {"CD4 T"},
           "CD8+ Cytotoxic T": {"CD8 T"}, "CD8+/CD45RA+ Naive Cytotoxic": {"CD8 T"},
           "CD14+ Monocyte": {"Monocyte/Macrophage"}, "CD19+ B": {"B", "Plasma"}, "CD56+ NK": {"NK"},
           "Dendritic": {"DC"}}
    lab, call = pbmc68k.obs["bulk_labels"].astype(str), pbmc68k.obs["tmt_lineage"].astype(str)
    keep = lab.isin(list(lut))
    ok = [c in lut[t] for t, c in zip(lab[keep], call[keep], strict=True)]
    assert np.mean(ok) >= 0.79
    plasma = call == "Plasma"
    X = pbmc68k[:, ["MZB1", "MS4A1"]].X
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    assert X[plasma.to_numpy(), 0].mean() > 3 * X[(call == "B").to_numpy(), 0].mean()
    assert X[plasma.to_numpy(), 1].mean() < 0.3 * X[(call == "B").to_numpy(), 1].mean()


def test_unassigned_cells_say_why(pbmc68k):
    """uns['tmt_annotate']['unassigned'] counts why cells are unassigned. Of scanpy's PBMC sample, the CD34+
    progenitors (a type the vocabulary does not name) are unassigned because their own markers speak against the
    lineage the classifier chose (measured: 12 of 13, all so); cells without a read are counted as such."""
    from tmetoolkit._core.annotation.lineage import MARKERS_AGAINST, NO_READ, NOT_CONFIDENT

    table = pbmc68k.uns["tmt_annotate"]["unassigned"].set_index("reason")
    out = pbmc68k.obs["tmt_lineage"] == "unassigned"
    assert table["n_cells"].sum() == out.sum()
    assert np.allclose(table["fraction"], table["n_cells"] / pbmc68k.n_obs)
    progenitors = (pbmc68k.obs["bulk_labels"] == "CD34+") & out
    assert progenitors.sum() >= 10
    assert table.at[MARKERS_AGAINST, "n_cells"] >= progenitors.sum()
    assert NO_READ not in table.index

    a = tmt.datasets.simulate(n_samples=1, n_cells=600, seed=0)
    X = a.X.tolil()
    X[:7] = 0  # seven cells without a read
    a.X = X.tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tmt.TmtWarning)
        tmt.tl.annotate(a)
    table = a.uns["tmt_annotate"]["unassigned"].set_index("reason")
    assert table.at[NO_READ, "n_cells"] == 7
    assert set(table.index) <= {NO_READ, MARKERS_AGAINST, NOT_CONFIDENT}
    assert table["n_cells"].sum() == (a.obs["tmt_lineage"] == "unassigned").sum()


def test_blood_monocytes_are_not_m_mdsc_like(pbmc68k):
    """Healthy blood monocytes, no MDSCs: they form one population by HLA class II, so none lacks it. Before, the
    state competition alone called 65 of the 121 CD14+ monocytes M-MDSC-like, cells holding more HLA-DRA than those
    it called Monocyte."""
    mono = (pbmc68k.obs["bulk_labels"] == "CD14+ Monocyte").to_numpy()
    assert (pbmc68k.obs["tmt_lineage"][mono] == "Monocyte/Macrophage").mean() >= 0.9
    # measured 0.72, the rest keeping no state: this file holds none of M-MDSC-like's own up genes, so its published
    # set, which shares S100A8/9 and CD14 with the monocytes', competes with them (0.81 while the own set was scored
    # by the HLA class II genes it lacks alone, the inverse of its meaning)
    assert (pbmc68k.obs["tmt_state"][mono] == "Monocyte").mean() >= 0.65
    assert (pbmc68k.obs["tmt_state"] == "M-MDSC-like").sum() == 0
    splits = pbmc68k.uns["tmt_annotate"]["splits"]
    splits = splits[splits["lineage"] == "Monocyte/Macrophage"]
    assert len(splits) and not splits["applied"].any() and splits["reason"].str.startswith("one population").all()
    assert (pbmc68k.obs["tmt_state"] == "CD8 Tpex").sum() == 0  # blood: no progenitor-exhausted population


def test_a_fallback_set_decides_where_the_rule_set_cannot_be_scored(sim_small):
    """A panel with FOXP3 and CTLA4 but not the rest of Treg_core (as Xenium's breast panel): the longer Treg set
    decides instead, and the rules table says so; where Treg_core can be scored nothing changes."""
    drop = set(tmt.sig.get("Treg_core").genes_up) - {"FOXP3", "CTLA4"}
    panel = sim_small[:, [g for g in sim_small.var_names if g not in drop]].copy()
    tmt.tl.annotate(panel)
    rules = panel.uns["tmt_annotate"]["rules"].set_index(["level", "label"])
    assert rules.loc[("CD4 T", "Treg"), "signatures"] == "Treg" and rules.loc[("CD4 T", "Treg"), "assessable"]
    called, true = panel.obs["tmt_state"] == "Treg", panel.obs["true_state"] == "Treg"
    # measured recall 0.98, precision 0.76 (1.00 and 1.00 when the simulator planted the registry's own sets);
    # Tregs are about a third of the CD4 T cells
    assert called[true].mean() >= 0.9 and true[called].mean() >= 0.65
    tmt.tl.annotate(sim_small)
    full = sim_small.uns["tmt_annotate"]["rules"].set_index(["level", "label"])
    assert full.loc[("CD4 T", "Treg"), "signatures"] == "Treg_core"


def test_protein_panel_with_repeated_obs_names():
    """Protein calls and their evidence do not depend on cell names being unique."""
    ref = real_data("phenoptr")
    dup = ref.copy()
    dup.obs_names = [f"c{i % 1000}" for i in range(dup.n_obs)]
    for a in (ref, dup):
        tmt.tl.annotate(a)
    assert (dup.obs["tmt_state"].to_numpy() == ref.obs["tmt_state"].to_numpy()).all()
    np.testing.assert_allclose(dup.obsm["tmt_marker_evidence"].to_numpy(), ref.obsm["tmt_marker_evidence"].to_numpy())


# --- lineage identity on real data (the marker table, within-cell ranks, seeds and the data set's own classifier) ---

def _accuracy(pred, allowed):
    return float(np.mean([p in a for p, a in zip(pred.astype(str), allowed, strict=True)]))


def test_real_rna_lineages_reach_the_supervised_ceiling():
    """Puram (Smart-seq2, log values of 7,943 genes) and Zilionis mouse (inDrop UMI counts, upper-cased mouse
    symbols): per-cell lineage accuracy within 0.05 of a logistic regression trained on the authors' labels
    (0.972 and 0.929, benchmarks/validate_annotation.py); measured 0.933 and 0.921. Puram's CHETAH "B cells" are
    plasma cells (IGLL5, XBP1, FKBP11 high; MS4A1 low), so Plasma counts for them."""
    p = real_data("puram")
    tmt.tl.annotate(p)
    m = {"B cell": {"B", "Plasma"}, "CD4 T cell": {"CD4 T"}, "CD8 T cell": {"CD8 T"}, "reg. T cell": {"CD4 T"},
         "Dendritic": {"DC"}, "Endothelial": {"Endothelial"}, "Fibroblast": {"Fibroblast"},
         "Macrophage": {"Monocyte/Macrophage"}, "Mast": {"Mast"}}
    allowed = [m[c] for c in p.obs["celltypes"].astype(str)]
    assert _accuracy(p.obs["tmt_lineage"], allowed) >= 0.9
    assert (p.obs["tmt_lineage"] == "unassigned").mean() <= 0.10
    assert p.uns["tmt_annotate"]["params"]["lineage_method"] == "classifier"

    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    tmt.tl.annotate(z)
    m = {"B cells": {"B"}, "NK cells": {"NK"}, "Neutrophils": {"Neutrophil"}, "T cells": {"CD4 T", "CD8 T"}}
    allowed = [m[c] for c in z.obs["author_major_cell_type"].astype(str)]
    assert _accuracy(z.obs["tmt_lineage"], allowed) >= 0.88
    # FOXP3-high T2 cells are Tregs: measured 7 of 15 (8 when the upper-case mouse symbols were read as human ones)
    t2 = z.obs["author_minor_subset"].astype(str) == "T2"
    assert (z.obs.loc[t2, "tmt_state"] == "Treg").sum() >= 7


def test_small_data_sets_keep_their_lineages():
    """A data set of 30 or 60 cells (a biopsy, one cluster re-annotated) is not pooled over five neighbours, which
    reach across its lineages: mean lineage accuracy over 3 draws each of 30 and 60 cells of Puram's and Zilionis'
    mouse cells was 0.54 and is 0.76 (benchmarks at 30-400 cells in the identity module)."""
    p = real_data("puram")
    m = {"B cell": {"B", "Plasma"}, "CD4 T cell": {"CD4 T"}, "CD8 T cell": {"CD8 T"}, "reg. T cell": {"CD4 T"},
         "Dendritic": {"DC"}, "Endothelial": {"Endothelial"}, "Fibroblast": {"Fibroblast"},
         "Macrophage": {"Monocyte/Macrophage"}, "Mast": {"Mast"}}
    p_allowed = np.array([m[c] for c in p.obs["celltypes"].astype(str)], dtype=object)
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    m = {"B cells": {"B"}, "NK cells": {"NK"}, "Neutrophils": {"Neutrophil"}, "T cells": {"CD4 T", "CD8 T"}}
    z_allowed = np.array([m[c] for c in z.obs["author_major_cell_type"].astype(str)], dtype=object)
    accuracy = []
    for data, allowed in ((p, p_allowed), (z, z_allowed)):
        for n in (30, 60):
            for seed in range(3):
                cells = np.sort(np.random.default_rng(seed).choice(data.n_obs, n, replace=False))
                b = data[cells].copy()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tmt.tl.annotate(b)
                accuracy.append(_accuracy(b.obs["tmt_lineage"], allowed[cells]))
    assert np.mean(accuracy) >= 0.68


def test_lineage_rows_name_their_markers_and_seeds():
    a = tmt.datasets.simulate(n_samples=1, n_cells=1500, seed=2)
    tmt.tl.annotate(a)
    rules = a.uns["tmt_annotate"]["rules"]
    lin = rules[rules["level"] == "lineage"].set_index("label")
    assert "CD8A" in lin.at["CD8 T", "genes"] and "CD4" in lin.at["CD8 T", "negative"]
    assert lin["n_seeds"].sum() > 0
    assert "RGS5" in lin.at["Pericyte|pericyte", "genes"] and "PDGFRA" in lin.at["Pericyte|pericyte", "negative"]
    table = tmt.get.markers(a, "tmt_lineage")
    assert {"CD8A", "CD3E"} & set(table.loc[table["label"] == "CD8 T", "gene"])


def test_one_lineage_and_too_few_cells_to_learn(sim_small):
    """A data set of one lineage cannot train a classifier across lineages: the one lineage takes every cell whose
    markers do not speak against it, and the result says so. A lineage with fewer confident cells than the
    classifier needs keeps its marker call, with a warning naming it."""
    a = sim_small
    b = a[a.obs["true_lineage"] == "B"].copy()
    tmt.tl.annotate(b)
    # measured 0.63 B, the rest mostly unassigned: in a one-lineage set the background of the B genes is the B level
    assert (b.obs["tmt_lineage"] == "B").mean() >= 0.6
    assert b.obs["tmt_lineage"].astype(str).isin(["B", "unassigned"]).mean() >= 0.9
    assert b.uns["tmt_annotate"]["params"]["lineage_method"] == "one lineage"
    # T cells alone: CD8 and CD4 T are told apart among themselves; effector CD8 T cells with an NK-like programme
    # are the one confusion (measured 0.76 CD8/CD4 T, 0.07 NK, the rest unassigned; 0.98 and 0.00 on simulate()'s
    # non-circular programmes)
    t = a[a.obs["true_lineage"].isin(["CD8 T", "CD4 T"])].copy()
    tmt.tl.annotate(t)
    called = t.obs["tmt_lineage"].astype(str)
    assert called.isin(["CD8 T", "CD4 T"]).mean() >= 0.7
    assert (called == "NK").mean() <= 0.1

    few = a.obs["true_lineage"].astype(str) == "B"
    # 14 B cells give a few seeds, fewer than the classifier needs (measured: 3 seeds, 10 of the 14 called B by their
    # markers; 16 give 11 seeds, and with 12 none is a seed, their neighbours' evidence outweighing their own)
    keep = ~few | (np.cumsum(few) <= 14)
    b = a[keep.to_numpy()].copy()
    with pytest.warns(UserWarning, match="too few confident cells to learn"):
        tmt.tl.annotate(b)
    assert "B" in b.uns["tmt_annotate"]["lineage_by_markers"]


def test_adding_a_state_is_one_row_of_the_label_table(sim_small, monkeypatch):
    """A new state needs one row in ``_keys.LABELS``: its category, order, colour and rule follow from it."""
    from tmetoolkit import _keys

    row = ("CD8 T", "CD8 ISG-high", "#123456", ("CD8_ISG",))
    rows = list(_keys.LABELS)
    rows.insert(rows.index(next(r for r in rows if r[1] == "CD8 Tex")) + 1, row)
    monkeypatch.setattr(_keys, "LABELS", rows)
    tmt.tl.annotate(sim_small)
    rules = sim_small.uns["tmt_annotate"]["rules"].set_index(["level", "label"])
    assert rules.loc[("CD8 T", "CD8 ISG-high"), "assessable"]
    assert _keys.states()["CD8 T"][-1] == "CD8 ISG-high"
    assert tmt.pl._palettes.state_colors()["CD8 ISG-high"] == "#123456"
    cats = list(sim_small.obs["tmt_state"].cat.categories)
    colours = dict(zip(cats, sim_small.uns["tmt_state_colors"], strict=True))
    if "CD8 ISG-high" in cats:
        assert colours["CD8 ISG-high"] == "#123456"
        assert cats.index("CD8 ISG-high") > cats.index("CD8 T")


def test_marker_table_is_consistent():
    """Every label cites known sources; decisive genes belong to the label's own groups; reserve genes are no
    other lineage's marker (a stand-in for T cells must not be a B-cell gene)."""
    from tmetoolkit._core.annotation.markers import lineage_markers

    table = lineage_markers()
    every = [*table.labels, *(lab for sub in table.splits.values() for lab in sub)]
    for lab in every:
        assert lab.sources and set(lab.sources) <= set(table.sources), lab.label
        assert set(lab.decisive) <= set(lab.genes), lab.label
        if lab.decisive_state is not None:
            assert lab.decisive_state in {s for states in STATES.values() for s in states}
        # a lineage's stand-ins may be genes of the lineages its cells are split into (CD8B: CD8 T among T cells)
        within = {o.lineage for o in table.splits.get(lab.lineage, ())} | {lab.lineage}
        others = {g for o in every if o.lineage not in within for grp in o.positive for g in grp}
        for grp in lab.reserve:
            assert not set(grp) & others, (lab.label, set(grp) & others)
    # stand-ins and complexes cite known sources
    import yaml

    from tmetoolkit._core.annotation.markers import _marker_file

    spec = yaml.safe_load(_marker_file().read_text())
    for entry in (*spec["reserve"].values(), *spec["complexes"].values()):
        assert entry["sources"] and set(entry["sources"]) <= set(table.sources), entry
    for cx in table.complexes:  # a complex marks one lineage (in its groups or its stand-ins)
        owners = {lab.lineage for lab in every for grp in (*lab.positive, *lab.reserve) if set(cx) & set(grp)}
        assert len(owners) == 1, (cx, owners)


def test_log_values_are_read_as_the_linear_profile_they_encode(sim_small):
    """The same cells logged to base e, 2 or 10 give the same lineage calls: scanpy's variable-gene selection reads
    its input as natural logs, and log2 values had it choose other genes (Zilionis' human cells: lineage accuracy
    0.754 at base 2, 0.821 at base e). A file of selected genes has no total per cell to recognise a base by."""
    from tmetoolkit._matrix import log_base

    X = sim_small.X.toarray()
    linear = X / X.sum(axis=1, keepdims=True) * 1e4
    calls = {}
    for name, base in (("e", np.e), ("2", 2.0), ("10", 10.0)):
        logged = np.log1p(linear) / np.log(base)
        assert log_base(sp.csr_matrix(logged[:500])) == base
        assert log_base(logged[:500, :2000]) is None  # selected genes
        b = sim_small.copy()
        b.X = sp.csr_matrix(logged.astype(np.float32))
        tmt.tl.annotate(b)
        assert b.uns["tmt_annotate"]["params"]["log_base"] == name
        calls[name] = b.obs["tmt_lineage"].astype(str)
    assert (calls["2"] == calls["e"]).mean() >= 0.999 and (calls["10"] == calls["e"]).mean() >= 0.999
    assert log_base(np.log1p(linear[:500]) - 1.0) is None  # values below zero: no log1p of a linear profile


def test_log_values_with_a_pseudocount_below_one_are_read_as_the_counts_they_encode(sim_small):
    """log2(x + 0.1) is log2(10 x + 1) shifted by log2(0.1), the value its zeros take: read from there, it gives
    the calls log2(x + 1) gives. Read as it was, Zilionis' human cells in log2(CPM + 0.1) had lineage accuracy
    0.782 against 0.884 in log2(CPM + 1) (Puram 0.961 against 0.939, Chen 0.620 against 0.632); now the same."""
    X = sim_small.X.toarray()
    cp10k = X / X.sum(axis=1, keepdims=True) * 1e4
    calls = {}
    for eps in (1.0, 0.1):
        b = sim_small.copy()
        b.X = np.log2(cp10k + eps).astype(np.float32)
        tmt.tl.annotate(b)
        assert b.uns["tmt_annotate"]["params"]["log_base"] == "2"
        calls[eps] = b.obs[["tmt_lineage", "tmt_state"]].astype(str)
    assert (calls[0.1] == calls[1.0]).all(axis=1).mean() >= 0.999


def test_splits_over_pooled_samples_say_how_to_make_them_within_each():
    """A population split is made within a sample: Zilionis' mouse lungs pooled split their neutrophils by tissue
    (their healthy lungs' neutrophils hold more of the PMN-MDSC-like programme than the tumours') and called 103 of
    the 105 neutrophils of the healthy lungs PMN-MDSC-like. Where a split is made over samples pooled as one,
    annotate names the columns that may hold the samples; within each animal the neutrophils form one population."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=1500, seed=0)
    a.obs = a.obs.rename(columns={"sample": "patient"})
    with pytest.warns(tmt.TmtWarning, match=r"one sample.*'patient' \(2 values\).*sample_key="):
        tmt.tl.annotate(a)
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    tmt.tl.annotate(z, sample_key="Animal", species="human")
    healthy = (z.obs["Tissue"] == "healthy") & (z.obs["author_major_cell_type"] == "Neutrophils")
    assert (z.obs.loc[healthy, "tmt_state"] == "PMN-MDSC-like").mean() <= 0.05
    assert z.uns["tmt_annotate"]["params"]["sample_key"] == "Animal"
    with warnings.catch_warnings(record=True) as caught:  # obs["sample"] is the default sample_key
        warnings.simplefilter("always")
        tmt.tl.annotate(tmt.datasets.simulate(n_samples=2, n_cells=1500, seed=0))
    assert not any("as one sample" in str(w.message) for w in caught)


def test_calls_do_not_depend_on_the_total_log_values_were_normalised_to(sim_small):
    """scanpy's normalize_total defaults to the median total, others use 1e4 or 1e6: the same cells gave other
    lineages than their counts (0.996 of cells the same at the median and at 1e6), and states (0.993 and
    0.987)."""
    tmt.tl.annotate(counts := sim_small.copy())
    X = sim_small.X.toarray()
    total = X.sum(axis=1, keepdims=True)
    for target in (float(np.median(total)), 1e6):
        b = sim_small.copy()
        b.X = sp.csr_matrix(np.log1p(X / total * target).astype(np.float32))
        tmt.tl.annotate(b)
        same = {key: (b.obs[key].astype(str) == counts.obs[key].astype(str)).mean() for key in ("tmt_lineage",
                                                                                                "tmt_state")}
        # measured 1.0 and 1.0 at the median, 1.0 and 0.996 at 1e6 (state scores read the values as given); since
        # session 41 one CD8 T cell of 4,500 at confidence 0.43-0.50 differs at the median: on counts alone (with
        # the simulated coordinates) a touching neighbour's transcripts are read as spill-over (ranks.spillover_reads),
        # and without that rule the two agree for every cell
        assert same["tmt_lineage"] >= 0.999 and same["tmt_state"] >= 0.99, (target, same)


def test_cells_are_not_taken_for_bulk_samples_whatever_their_scale():
    """annotate warns about bulk samples (> 10,000 genes detected each) on Racle's melanoma samples, not on
    Zilionis' 300 inDrop cells, whether as shared or as log2(CPM + 0.1), whose undetected genes sit at log2(0.1)
    rather than at zero (counted as non-zero, every one of the 20,388 genes was 'detected')."""
    import scipy.sparse as sp

    z = shared_file("zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad")
    X = z.X.toarray() if sp.issparse(z.X) else np.asarray(z.X)
    logged = z.copy()
    logged.X = np.log2(X / X.sum(axis=1, keepdims=True) * 1e6 + 0.1).astype(np.float32)
    for cells in (z, logged):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tmt.tl.annotate(cells)
        assert not any("as bulk samples do" in str(w.message) for w in caught)
    with pytest.warns(tmt.TmtWarning, match="as bulk samples do"):
        tmt.tl.annotate(real_data("racle"))


def test_apcaf_are_a_population_apart_among_the_fibroblasts():
    """Antigen-presenting CAFs are the fibroblasts that stand apart by their MHC class II (Elyada 2019). On Chen's
    MERFISH panel CD74 and HLA-DRA, all the apCAF set has there, are detected in most cells of every type (CD74 in
    71% of fibroblasts, 79% of epithelial cells) and the signature competition called 479 of 662 fibroblasts apCAF;
    they form one population, and none is. simulate() plants apCAF with genes beside MHC class II: they split
    off (recall 1.00, precision 0.99 here) and the other fibroblasts keep their myCAF and iCAF calls; without
    planted apCAF, no split (Ashman's D 1.98 and 1.60)."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=7)
    tmt.tl.annotate(a)
    fib = a.obs["true_lineage"] == "Fibroblast"
    true, called = a.obs["true_state"] == "apCAF", a.obs["tmt_state"] == "apCAF"
    assert called[true].mean() >= 0.9 and true[called].mean() >= 0.9
    others = fib & ~true
    assert (a.obs.loc[others, "tmt_state"].astype(str) == a.obs.loc[others, "true_state"].astype(str)).mean() >= 0.9

    none = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=7)
    none = none[none.obs["true_state"] != "apCAF"].copy()
    tmt.tl.annotate(none)
    assert (none.obs["tmt_state"] == "apCAF").sum() <= 0.02 * (none.obs["true_lineage"] == "Fibroblast").sum()

    c = real_data("chen")
    tmt.tl.annotate(c)
    fib = c.obs["tmt_lineage"] == "Fibroblast"
    assert fib.sum() >= 500
    assert (c.obs.loc[fib, "tmt_state"] == "apCAF").mean() <= 0.05
    splits = c.uns["tmt_annotate"]["splits"]
    assert not splits.loc[splits["lineage"] == "Fibroblast", "applied"].any()


def test_myCAF_and_iCAF_are_told_apart_among_the_fibroblasts():
    """Every fibroblast of a tumour makes the myCAF set's contractile genes (TPM1, TPM2, MYL9, TAGLN) far above the
    other cells, so against all cells nearly every fibroblast led on myCAF. The two states are scored among the
    fibroblasts: simulate()'s fibroblasts given those genes at the planted myCAF cells' upper quartile keep their
    planted iCAF and myCAF states (0.98 of 1,096; 0.84, with 150 iCAF cells left without a state, when scored
    against all cells), and the user's obsm["tmt_scores"] keep the scores against all cells."""
    a = tmt.datasets.simulate(n_samples=3, n_cells=1500, seed=7)
    X = a.X.toarray()
    fib = (a.obs["true_lineage"] == "Fibroblast").to_numpy()
    my = (a.obs["true_state"] == "myCAF").to_numpy()
    for g in ("TPM1", "TPM2", "MYL9", "TAGLN"):
        j = a.var_names.get_loc(g)
        X[fib, j] = np.maximum(X[fib, j], np.quantile(X[my, j], 0.75))
    a.X = sp.csr_matrix(X)
    tmt.tl.annotate(a, sample_key="sample")
    true, called = a.obs["true_state"].astype(str), a.obs["tmt_state"].astype(str)
    caf = true.isin(["myCAF", "iCAF"])
    assert caf.sum() > 1000 and (called[caf] == true[caf]).mean() >= 0.95
    scores = tmt.tl.score(a, ["myCAF"], copy=True).obsm["tmt_scores"]["myCAF"]
    np.testing.assert_allclose(a.obsm["tmt_scores"]["myCAF"], scores)


def test_fibroblasts_that_all_carry_mhc_class_ii_keep_their_caf_states():
    """apCAF is split off among all of a sample's fibroblasts and does not compete with myCAF and iCAF: where every
    fibroblast carries MHC class II (as on Chen's panel) and none stands apart, the cells the competition gave to
    apCAF were left without a state (here 727 of 878 planted iCAF; correct calls 0.46), now 1.00."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=7)
    a = a[a.obs["true_state"] != "apCAF"].copy()
    fib = (a.obs["true_lineage"] == "Fibroblast").to_numpy()
    presenting = a.obs["true_lineage"].isin(["Monocyte/Macrophage", "DC", "B"]).to_numpy()
    X = a.X.tolil()
    depth = np.asarray(a.X.sum(axis=1)).ravel()
    rng = np.random.default_rng(0)
    for gene in tmt.sig.get("apCAF").genes_up:  # the antigen-presenting cells' share of each cell's transcripts
        j = a.var_names.get_loc(gene)
        share = (a.X[:, j].toarray().ravel()[presenting] / depth[presenting]).mean()
        X[np.flatnonzero(fib), j] = rng.poisson(share * depth[fib]).reshape(-1, 1)
    a.X = X.tocsr()
    tmt.tl.annotate(a)
    obs = a.obs[fib]
    assert (obs["tmt_state"] == "apCAF").sum() == 0
    assert (obs["tmt_state"].astype(str) == obs["true_state"].astype(str)).mean() >= 0.95


def test_a_state_whose_rivals_cannot_be_scored_is_called_only_as_a_population_apart():
    """Without a rival the panel can score, a state's lead over background follows depth: Chen's MERFISH panel holds
    2 of the myCAF set's genes, and iCAF alone was called in 113 of its 662 fibroblasts (458 once apCAF stopped
    competing), cells with twice the transcripts of the rest; now none. Where its cells do stand apart, they keep
    it: simulate() without the myCAF genes but ACTA2 and TAGLN still calls its planted iCAF, and no myCAF iCAF."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=7)
    lost = [g for g in tmt.sig.get("myCAF").genes_up if g not in ("ACTA2", "TAGLN")]
    a = a[:, ~a.var_names.isin(lost)].copy()
    tmt.tl.annotate(a)
    state, true = a.obs["tmt_state"], a.obs["true_state"]
    assert (state[true == "iCAF"] == "iCAF").mean() >= 0.9
    assert (state[true == "myCAF"] == "iCAF").mean() <= 0.02
    rules_ = a.uns["tmt_annotate"]["rules"].set_index(["level", "label"])
    assert rules_.loc[("Fibroblast", "iCAF"), "assessable"]
    assert "myCAF" in rules_.loc[("Fibroblast", "iCAF"), "reason"]

    c = real_data("chen")
    tmt.tl.annotate(c)
    fib = c.obs["tmt_lineage"] == "Fibroblast"
    assert (c.obs.loc[fib, "tmt_state"] == "iCAF").mean() <= 0.05


def test_a_split_the_panel_cannot_make_is_not_reported_as_one_population():
    """Xenium's breast panel has no HLA class II gene of the apCAF or M-MDSC-like sets: the report's caveat used to
    say the fibroblasts (monocytes) formed one population."""
    from tmetoolkit.tl._annotate import split_summary

    a = real_data("xenium")
    tmt.tl.annotate(a)
    splits = a.uns["tmt_annotate"]["splits"]
    text = split_summary(splits[splits["state"] == "apCAF"])
    assert text == "apCAF cells were not split off: the panel lacks the genes to tell", text

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

import tmetoolkit as tmt

from .conftest import real_data, shared_file


def test_counts_lognorm_linear_scaled_are_told_apart(sim_small):
    assert tmt.pp.check_input(sim_small).state == "counts"
    ln = sim_small.copy()
    sc.pp.normalize_total(ln)
    lin = ln.copy()
    sc.pp.log1p(ln)
    assert tmt.pp.check_input(ln).state == "lognorm"
    lin.X = lin.X * 100  # CPM-like linear values
    assert tmt.pp.check_input(lin).state == "linear"
    # counts after ambient-RNA removal are not integers, yet each cell keeps its own depth: normalised as counts
    soup = sim_small.copy()
    kept = np.random.default_rng(0).uniform(0.6, 1.0, soup.n_obs)  # share of each cell's counts left
    soup.X = sp.diags(kept) @ soup.X.astype(np.float64)
    assert tmt.pp.check_input(soup).state == "counts"
    raw = sim_small.copy()
    for a in (soup, raw):
        tmt.tl.score(a, ["T_cell", "Epithelial"])
    for name in ("T_cell", "Epithelial"):  # 0.973 / 0.980 when they were taken as normalised values
        assert np.corrcoef(soup.obsm["tmt_scores"][name], raw.obsm["tmt_scores"][name])[0, 1] > 0.99
    sc.pp.scale(ln)
    rep = tmt.pp.check_input(ln)
    assert rep.state == "scaled" and any("scaled" in p for p in rep.problems)


def test_scaled_x_with_raw_says_how_to_use_raw(sim_small):
    """The usual scanpy workflow keeps log values in raw and z-scores in X: the error shows the way, and it works."""
    ln = sim_small.copy()
    sc.pp.normalize_total(ln)
    sc.pp.log1p(ln)
    ln.raw = ln
    sc.pp.scale(ln)
    with pytest.raises(ValueError, match=r"adata\.raw\[:, adata\.var_names\]\.X"):
        tmt.tl.score(ln, ["CD8_T"])
    ln.layers["log"] = ln.raw[:, ln.var_names].X
    tmt.tl.score(ln, ["CD8_T"], layer="log")
    assert ln.obsm["tmt_scores"]["CD8_T"].notna().all()


def test_real_data_states():
    assert tmt.pp.check_input(real_data("chen")).state == "counts"
    assert tmt.pp.check_input(real_data("puram")).state == "lognorm"
    assert tmt.pp.check_input(real_data("racle")).state == "linear"
    assert tmt.pp.check_input(real_data("phenoptr")).state == "protein"
    assert tmt.pp.check_input(real_data("scimap")).state == "protein"


def test_ensembl_and_mouse_are_detected(sim_small):
    ens = sim_small.copy()
    ens.var_names = [f"ENSG{i:011d}" for i in range(ens.n_vars)]
    rep = tmt.pp.check_input(ens)
    assert rep.gene_id == "ensembl" and any("Ensembl" in p for p in rep.problems)
    # as read from 10x with var_names="gene_ids": the message names the column that holds the symbols
    ens.var["feature_types"] = "Gene Expression"
    ens.var["gene_name"] = list(sim_small.var_names)
    (problem,) = [p for p in tmt.pp.check_input(ens).problems if "Ensembl" in p]
    assert "adata.var['gene_name']" in problem
    no_xy = ens.copy()
    del no_xy.obsm["spatial"]  # the expression phenotype scores a pseudobulk per sample: it names the column too
    for call in (lambda: tmt.tl.annotate(ens.copy()), lambda: tmt.tl.immune_phenotype(no_xy, sample_key="sample")):
        with pytest.raises(ValueError, match=r"adata.var\['gene_name'\]"):
            call()
    fixed = ens.copy()
    fixed.var_names = fixed.var["gene_name"].astype(str)
    assert tmt.pp.check_input(fixed).gene_id == "symbol"
    mouse = sim_small.copy()
    mouse.var_names = [g.capitalize() for g in mouse.var_names]
    assert tmt.pp.check_input(mouse).species == "mouse"
    # symbols in lower case match no signature: a problem, with the fix (every tool refuses them)
    lower = sim_small.copy()
    lower.var_names = lower.var_names.str.lower()
    (problem,) = tmt.pp.check_input(lower).problems
    assert "none of the" in problem and ".str.upper()" in problem
    # a combined (xenograft) reference prefixes each gene with its genome: named, with the fix
    pdx = sim_small.copy()
    pdx.var_names = ["GRCh38_" + g if i % 3 else "mm10___" + g.capitalize() for i, g in enumerate(pdx.var_names)]
    (problem,) = tmt.pp.check_input(pdx).problems
    assert "genome prefix ('GRCh38_', 'mm10___'" in problem and "removeprefix('GRCh38_')" in problem
    # CITE-seq read with every feature (gex_only=False): antibody counts beside the genes are refused, with the fix
    cite = sim_small.copy()
    cite.var["feature_types"] = ["Antibody Capture" if i < 12 else "Gene Expression" for i in range(cite.n_vars)]
    (problem,) = tmt.pp.check_input(cite).problems
    assert "Antibody Capture features (12)" in problem and "== 'Gene Expression'" in problem
    genes = cite[:, cite.var["feature_types"] == "Gene Expression"].copy()
    assert not tmt.pp.check_input(genes).problems
    fixed = pdx[:, pdx.var_names.str.startswith("GRCh38_")].copy()
    fixed.var_names = fixed.var_names.str.removeprefix("GRCh38_")
    assert not tmt.pp.check_input(fixed).problems


def test_an_unfiltered_droplet_matrix_is_warned_about():
    """Cell Ranger's raw matrix (every barcode, mostly empty droplets of a few ambient UMIs) is named as such; the
    cells of a filtered matrix and a shallow imaging panel are not."""
    import warnings

    rng = np.random.default_rng(0)
    raw = AnnData(sp.random(12_000, 6_000, density=0.0005, format="csr", random_state=rng, dtype=np.float32,
                            data_rvs=lambda n: np.ones(n)), var=pd.DataFrame(index=[f"G{i}" for i in range(6_000)]))
    with pytest.warns(tmt.TmtWarning, match="raw \\(unfiltered\\) droplet matrix, whose 12,000 barcodes"):
        tmt.pp.check_input(raw)
    cells = raw[:3_000].copy()
    cells.X = sp.random(3_000, 6_000, density=0.2, format="csr", random_state=rng, dtype=np.float32,
                        data_rvs=lambda n: np.ones(n))
    panel = raw[:, :400].copy()
    for a in (cells, panel):
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*unfiltered.*")
            tmt.pp.check_input(a)


def test_nan_and_empty_cells_are_reported():
    X = np.abs(np.random.default_rng(0).normal(size=(20, 150)))
    X[3] = 0
    a = AnnData(X, var=pd.DataFrame(index=[f"G{i}" for i in range(150)]))
    with pytest.warns(tmt.TmtWarning, match="no expression"):
        rep = tmt.pp.check_input(a)
    assert rep.n_empty_cells == 1
    a.X[0, 0] = np.nan
    with pytest.warns(tmt.TmtWarning):
        rep = tmt.pp.check_input(a)
    assert any("NaN" in p for p in rep.problems)


def test_coverage_table_and_nothing_written(sim_small):
    before = sim_small.copy()
    rep = tmt.pp.check_input(sim_small, signatures="tam")
    cov = rep.coverage
    assert set(cov["signature"]) == {s.name for s in tmt.sig.collection("tam")}
    assert (cov["n_found"] <= cov["n_genes"]).all()
    assert sim_small.obs.equals(before.obs) and not set(sim_small.uns) - set(before.uns)
    assert (sim_small.X != before.X).nnz == 0
    assert "state: counts" in repr(rep)
    with pytest.raises(KeyError, match="layers"):
        tmt.pp.check_input(sim_small, layer="lognorm")
    assert sp.issparse(sim_small.X)


def _log2_bulk(sim_small, offset=0.001):
    """Pseudobulk of the simulated samples as log2(CPM + offset): log values with negatives, as voom or microarrays."""
    agg = sc.get.aggregate(sim_small, by="sample", func="sum")
    X = np.asarray(agg.layers["sum"].toarray() if sp.issparse(agg.layers["sum"]) else agg.layers["sum"])
    cpm = X / X.sum(axis=1, keepdims=True) * 1e6
    return AnnData(np.log2(cpm + offset), obs=pd.DataFrame(index=agg.obs_names.astype(str)),
                   var=pd.DataFrame(index=sim_small.var_names))


def test_log_values_with_negatives_are_log_and_z_scores_are_not(sim_small):
    """log2(CPM + 0.001) has negative values yet is log expression; z-scores of the same values are refused, and
    the message says what was seen and how to fix it."""
    log2 = _log2_bulk(sim_small)
    assert log2.X.min() < 0  # log2 of CPM below 1
    rep = tmt.pp.check_input(log2)
    assert rep.state == "lognorm" and not rep.problems
    assert rep.detail.startswith("log values with negatives") and "seen: log values" in repr(rep)
    z = log2.copy()
    z.X = (z.X - z.X.mean(axis=0)) / np.where(z.X.std(axis=0) > 0, z.X.std(axis=0), 1)
    rep = tmt.pp.check_input(z)
    assert rep.state == "scaled" and rep.detail.startswith("z-scored")
    (problem,) = rep.problems
    assert "centred per gene" in problem and "100% of genes centred" in problem and "layer=" in problem
    with pytest.raises(ValueError, match="z-scored"):
        tmt.tl.score(z, ["CD8_T"])


def test_log_values_moved_per_batch_are_not_read_as_scaled():
    """Log values moved per batch towards the common gene means (removeBatchEffect, ComBat) keep those means, but a
    gene detected in few cells has its mean within 0.2 SD of zero anyway: 76% of the Zilionis mouse genes, which
    were refused as scaled. They are log values (whose correction annotate warns of); z-scores stay scaled."""
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    sc.pp.normalize_total(z)
    sc.pp.log1p(z)
    L = z.X.toarray()
    moved = L.copy()
    for animal in z.obs["Animal"].unique():
        cells = (z.obs["Animal"] == animal).to_numpy()
        moved[cells] += L.mean(axis=0) - L[cells].mean(axis=0)
    z.X = moved
    assert tmt.pp.check_input(z).state == "lognorm"
    z.X = (L - L.mean(axis=0)) / np.where(L.std(axis=0) > 0, L.std(axis=0), 1)
    assert tmt.pp.check_input(z).state == "scaled"


def test_pearson_residuals_are_scaled(sim_small):
    pr = sim_small.copy()
    sc.experimental.pp.normalize_pearson_residuals(pr)
    rep = tmt.pp.check_input(pr, signatures=["CD8_T"])
    assert rep.state == "scaled" and "centred" in rep.problems[0]


@pytest.mark.parametrize("method", ["rank", "aucell", "ssgsea"])
def test_log_values_score_the_same_after_any_shift(sim_small, method):
    """No flag needed: a constant added to log values (log2(x + 0.001) against log2(x + 0.001) + 12, or any
    other) changes no rank score. Before, the rank methods took the zeros of the shifted rows as their lowest
    values."""
    log2 = _log2_bulk(sim_small)
    sigs = ["CD8_T_effector", "IFNG_6", "Pan_F_TBRS"]
    tmt.tl.score(log2, sigs, method=method)
    for shift in (12.0, -4.0, float(-log2.X.min())):
        moved = log2.copy()
        moved.X = moved.X + shift
        tmt.tl.score(moved, sigs, method=method)
        np.testing.assert_allclose(moved.obsm["tmt_scores"], log2.obsm["tmt_scores"], atol=1e-9)


def test_log_values_score_the_same_whatever_their_pseudocount(sim_small):
    """log2(CPM + 0.001) is read as log2(CPM + 1): mean_ctrl differences of log values stretch the gap between a
    gene expressed and one not by log2(1 / eps), and on simulated cells log2(TPM + 0.001) had made the Treg
    activation component of immunosuppression 2.04 against 0.23 from the counts. A constant added to log values
    without a recognisable total (a panel of selected genes) still changes no score."""
    sigs = ["CD8_T_effector", "IFNG_6", "Pan_F_TBRS"]
    scores = {}
    for eps in (1.0, 0.1, 0.001):
        log2 = _log2_bulk(sim_small, offset=eps)
        tmt.tl.score(log2, sigs)
        scores[eps] = log2.obsm["tmt_scores"].to_numpy()
        assert log2.uns["tmt_scores"]["params"]["log_pseudocount"] == pytest.approx(eps)
    np.testing.assert_allclose(scores[0.1], scores[1.0], atol=1e-6)
    np.testing.assert_allclose(scores[0.001], scores[1.0], atol=1e-6)
    panel = _log2_bulk(sim_small)[:, :2000].copy()
    tmt.tl.score(panel, sigs)
    moved = panel.copy()
    moved.X = moved.X + 12.0
    tmt.tl.score(moved, sigs)
    np.testing.assert_allclose(moved.obsm["tmt_scores"], panel.obsm["tmt_scores"], atol=1e-9)


def test_implausible_values_are_refused_or_warned_with_their_number(sim_small):
    """Counts above 1e9 (corrupt values, overflow) are refused, above 1e7 warned, each with the number of entries;
    a cell cannot hold 1e7 copies of one transcript."""
    X = sim_small.X.tocsr().astype(np.float64)
    rng = np.random.default_rng(0)
    hit = rng.choice(X.nnz, size=X.nnz // 100, replace=False)
    corrupt = sim_small.copy()
    corrupt.X = X.copy()
    corrupt.X.data[hit] = 1e30
    rep = tmt.pp.check_input(corrupt)
    (problem,) = [p for p in rep.problems if "exceed" in p]
    assert f"{hit.size:,} entries exceed 1e+09" in problem
    with pytest.raises(tmt.TmtInputError, match="exceed"):
        tmt.tl.score(corrupt, ["CD8_T"])
    high = sim_small.copy()
    high.X = X.copy()
    high.X.data[hit[:25]] = 5e7
    with pytest.warns(tmt.TmtWarning, match=r"^25 entries \(.*\) exceed 1e\+07"):
        rep = tmt.pp.check_input(high)
    assert rep.n_implausible == 25 and not rep.problems
    # int32 counts that overflowed wrap round to negative values
    wrapped = sim_small.copy()
    wrapped.X = X.astype(np.int32)
    wrapped.X.data[hit[:5]] = -2_000_000_000
    assert any("integer overflow" in p for p in tmt.pp.check_input(wrapped).problems)
    # a few counts made negative (float): refused as counts, not read as log values (scanpy's variable-gene
    # selection then failed deep inside on exp() of counts)
    negative = sim_small.copy()
    negative.X = X.copy()
    negative.X.data[hit[:5]] = -1.0
    rep = tmt.pp.check_input(negative)
    assert rep.state == "counts" and any("some are negative" in p for p in rep.problems)
    with pytest.raises(tmt.TmtInputError, match="some are negative"):
        tmt.tl.annotate(negative)


def test_no_cells_no_expression_or_one_gene_are_refused(sim_small):
    zero = sim_small.copy()
    zero.X = sp.csr_matrix(zero.shape, dtype=np.float32)
    with pytest.warns(tmt.TmtWarning):
        assert any("every value of the matrix is zero" in p for p in tmt.pp.check_input(zero).problems)
    one = sim_small[:, ["CD8A"]].copy()
    with pytest.warns(tmt.TmtWarning, match="no expression"):  # most cells have no CD8A
        assert any("1 feature;" in p for p in tmt.pp.check_input(one).problems)
    none = sim_small[:0].copy()
    assert any("0 cells" in p for p in tmt.pp.check_input(none).problems)


def test_duplicated_var_names_are_flagged(sim_small):
    a = sim_small.copy()
    names = a.var_names.to_numpy().copy()
    names[[i for i, g in enumerate(names) if g != "CD8A"][:10]] = "CD8A"  # 11 copies of CD8A
    a.var_names = names
    with pytest.warns(tmt.TmtWarning, match=r"1 var_names occur more than once \(CD8A\)"):
        rep = tmt.pp.check_input(a)
    assert rep.duplicated_var_names == ["CD8A"]


def test_use_raw_reads_all_genes_of_a_highly_variable_subset(sim_small):
    from tmetoolkit.tl._score import score_once

    a = sim_small.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.raw = a
    sc.pp.highly_variable_genes(a, n_top_genes=300)
    hvg = a[:, a.var["highly_variable"]].copy()
    with pytest.warns(tmt.TmtWarning, match="use_raw=True"):
        rep = tmt.pp.check_input(hvg)
    raw_rep = tmt.pp.check_input(hvg, use_raw=True)
    assert raw_rep.n_vars == a.n_vars and raw_rep.coverage["n_found"].sum() > rep.coverage["n_found"].sum()
    before = hvg.X.copy()
    tmt.tl.score(hvg, ["T_cell", "CD8_T"], use_raw=True)
    full = hvg.raw.to_adata()
    tmt.tl.score(full, ["T_cell", "CD8_T"])
    pd.testing.assert_frame_equal(hvg.obsm["tmt_scores"], full.obsm["tmt_scores"])
    assert hvg.uns["tmt_scores"]["params"]["layer"] == "raw" and (hvg.X != before).nnz == 0
    # a tool reads X: it scores again what it needs, and says that it replaces the scores made on raw
    with pytest.warns(tmt.TmtWarning, match=r"2 signatures scored before on 'raw' are scored again on 'X'"):
        score_once(hvg, ["T_cell", "CD8_T"])
    with pytest.raises(tmt.TmtInputError, match="adata.raw is empty"):
        tmt.tl.score(sim_small, ["CD8_T"], use_raw=True)


def test_a_transposed_matrix_is_named_as_such(sim_small):
    """Genes x samples read the wrong way round was refused with advice about highly variable genes or species."""
    t = sim_small[:300].copy().T.copy()
    with pytest.raises(tmt.TmtInputError, match=r"looks transposed, genes x samples; use adata = adata.T"):
        tmt.tl.score(t, "all")
    with pytest.raises(tmt.TmtInputError, match=r"use adata = adata.T"):
        tmt.tl.immune_phenotype(t, basis="expression")
    with pytest.raises(tmt.TmtInputError) as right_way_round:
        tmt.tl.score(sim_small[:, -60:].copy(), "all")  # no signature genes, not transposed
    assert "transposed" not in str(right_way_round.value)


@pytest.fixture(scope="module")
def _annotated_run():
    """Two simulated samples through every tool that reads expression, in the order of a run."""
    import warnings

    a = tmt.datasets.simulate(n_samples=2, n_cells=400, seed=3)
    a.X = a.X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tool in _NAN_TOOLS.values():
            tool(a)
    return a


_NAN_TOOLS = {
    "annotate": lambda a: tmt.tl.annotate(a, sample_key="sample"),
    "checkpoints": lambda a: tmt.tl.checkpoints(a, sample_key="sample"),
    "immunosuppression": lambda a: tmt.tl.immunosuppression(a, sample_key="sample"),
    "resistance_profile": lambda a: tmt.tl.resistance_profile(a, sample_key="sample"),
    "compartments": lambda a: tmt.tl.compartments(a, sample_key="sample", tumor_signature="Epithelial"),
    "immune_phenotype": lambda a: tmt.tl.immune_phenotype(a, sample_key="sample", basis="expression"),
}


@pytest.mark.parametrize("tool", list(_NAN_TOOLS))
def test_nan_after_annotate_is_refused_by_every_tool_that_reads_expression(_annotated_run, tool):
    """Values that go bad after a run (a division gone wrong) are refused, not hidden by the scores stored before
    them: checkpoints, immunosuppression and resistance_profile accepted them, annotate failed with a KeyError."""
    import warnings

    from tmetoolkit._utils import TmtInputError

    a = _annotated_run.copy()
    a.X.data[::50] = np.nan
    before = {k: a.obs[k].copy() for k in a.obs.columns}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TmtInputError, match="NaN or infinite") as err:
            _NAN_TOOLS[tool](a)
    assert f"{int(np.isnan(a.X.data).sum()):,}" in str(err.value)  # how many, so the user can find them
    assert all(a.obs[k].equals(v) for k, v in before.items())
    a.X.data[np.isnan(a.X.data)] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TmtInputError, match="NaN or infinite"):
            _NAN_TOOLS[tool](a)


def _upper_mouse(human: AnnData) -> AnnData:
    """``human`` with every symbol that has a mouse ortholog renamed to it, upper-cased (Cd8b1 -> CD8B1), as some
    pipelines leave mouse files."""
    h2m = tmt.sig.to_mouse(list(human.var_names))
    mouse = human.copy()
    mouse.var_names = [h2m[g][0].upper() if g in h2m else g for g in human.var_names]
    mouse.var_names_make_unique()
    return mouse


def test_upper_case_mouse_symbols_are_read_as_mouse(sim_small):
    """Upper-cased mouse symbols read human by their case; the names only mouse has (H2-K1, CD8B1, GM..., ...RIK)
    against those only human has (HLA-A) tell them apart. Zilionis' mouse file (upper-case) was read as human."""
    from tmetoolkit._utils import TmtSpeciesWarning

    mouse = _upper_mouse(sim_small)
    assert {"CD8B1", "H2-AB1"} <= set(mouse.var_names) and not mouse.var_names.str.contains("[a-z]").any()
    rep = tmt.pp.check_input(mouse)
    assert rep.species == "mouse" and rep.species_basis == "species-only names" and "mouse" in rep.species_reason
    with pytest.warns(TmtSpeciesWarning):
        tmt.tl.score(mouse, ["T_cell", "NK"])
    params = mouse.uns["tmt_scores"]["params"]
    assert params["species"] == "mouse" and params["species_reason"] == rep.species_reason
    assert tmt.pp.check_input(sim_small).species == "human"  # the same genes under their human names
    z = shared_file("zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad")
    z.var_names = z.var_names.str.upper()
    z.var_names_make_unique()
    assert tmt.pp.check_input(z).species == "mouse"


@pytest.mark.parametrize("name", ["puram", "chen", "zilionis_hs"])
def test_human_files_stay_human(name):
    """The names only mouse has are few in human files (outdated human symbols that are current mouse ones), and
    far fewer than those only human has."""
    if name == "zilionis_hs":
        a = shared_file("zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad")
    else:
        a = real_data(name)
    rep = tmt.pp.check_input(a)
    assert rep.species == "human" and rep.species_basis == "letter case"


def test_signature_coverage_is_logged_for_genes_only_and_says_when_it_is_cut(sim_small, caplog):
    """A protein panel is read through its marker gates: that 134 signatures lacked their genes there said
    nothing. On genes, the line says of how many signatures, and that the names it lists are the first ones."""
    import logging
    import re

    rng = np.random.default_rng(0)
    panel = AnnData(rng.lognormal(3, 1, (300, 8)).astype(np.float32))
    panel.var_names = ["CD3", "CD8", "CD4", "FOXP3", "CD68", "PanCK", "CD45", "DAPI"]
    with caplog.at_level(logging.INFO, logger="tmetoolkit"):
        assert tmt.pp.check_input(panel).state == "protein"
    assert "lack their minimum genes" not in caplog.text
    caplog.clear()
    few = sim_small[:, :300].copy()  # most signatures lack their genes on 300 genes
    with caplog.at_level(logging.INFO, logger="tmetoolkit"):
        tmt.pp.check_input(few)
    line = next(r.getMessage() for r in caplog.records if "lack their minimum genes" in r.getMessage())
    assert re.match(r"\d+ of \d+ signatures lack their minimum genes here: .*, \.\.\.$", line), line


def test_a_pipeline_run_reads_the_matrix_for_nan_once(sim_small, monkeypatch):
    """Within a run (reuse_reports), a matrix the run scanned in full is not scanned for NaN again by every tool;
    outside a run, and for a matrix the run has not scanned, it is."""
    from tmetoolkit.pp import _check

    scans = []
    real = _check.count_non_finite
    monkeypatch.setattr(_check, "count_non_finite", lambda X, *a, **k: scans.append(1) or real(X, *a, **k))
    with _check.reuse_reports():
        _check.inspect(sim_small)  # the run's first, full scan
        n = len(scans)
        for _ in range(3):
            _check.refuse_non_finite(sim_small, None, "score")
        assert len(scans) == n
        other = sim_small.copy()
        other.X = other.X.copy()
        _check.refuse_non_finite(other, None, "score")
        assert len(scans) == n + 1
    _check.refuse_non_finite(sim_small, None, "score")
    assert len(scans) == n + 2


def test_a_sparse_matrix_storing_entries_twice_is_read_as_their_sum(sim_small):
    """A CSR matrix built from its arrays can store an entry more than once; scipy and scanpy read the sum. The
    stored halves were read as values of their own: counts looked non-integer and, on Chen's MERFISH cells, half of
    the cells changed lineage. X itself is left as given."""
    a = sim_small[sim_small.obs["sample"] == sim_small.obs["sample"].iloc[0]].copy()
    X = a.X.tocsr().astype(np.float32)
    X.sort_indices()
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    r, c = np.concatenate([rows, rows]), np.concatenate([X.indices, X.indices])
    order = np.lexsort((c, r))
    halves = sp.csr_matrix((np.concatenate([X.data / 2, X.data / 2])[order], c[order], np.r_[0, np.cumsum(
        np.bincount(r, minlength=X.shape[0]))]), shape=X.shape)
    assert not halves.has_canonical_format and (halves != X).nnz == 0
    twice = a.copy()
    twice.X = halves
    stored = halves.data.copy()
    shuffled = a.copy()  # the same, each row's entries in reverse order (unsorted indices)
    shuffled.X = halves.copy()
    for i in range(X.shape[0]):
        lo, hi = shuffled.X.indptr[i], shuffled.X.indptr[i + 1]
        shuffled.X.indices[lo:hi], shuffled.X.data[lo:hi] = halves.indices[lo:hi][::-1], halves.data[lo:hi][::-1]
    shuffled.X.has_sorted_indices = False
    for b in (twice, shuffled):
        assert tmt.pp.check_input(b).detail == tmt.pp.check_input(a).detail
    for b in (a, twice, shuffled):
        tmt.tl.annotate(b)
    assert (twice.obs["tmt_lineage"] == a.obs["tmt_lineage"]).all()
    assert (shuffled.obs["tmt_lineage"] == a.obs["tmt_lineage"]).all()
    assert twice.X.nnz == 2 * X.nnz and np.array_equal(twice.X.data, stored)


def test_scaled_highly_variable_genes_point_to_raw_not_to_a_layer_of_them(sim_small):
    """scanpy's workflow: log values in raw, X subset to highly variable genes and scaled. A layer of X's genes
    (the fix the error led with) loses the signature genes outside them (Zilionis 2019, 2,000 of 20,388 genes: 34
    signatures unscored, CD4 T helpers not assessable); the error leads to raw's genes and says why."""
    ln = sim_small.copy()
    sc.pp.normalize_total(ln)
    sc.pp.log1p(ln)
    ln.raw = ln
    hvg = ln[:, ln.var_names[::3]].copy()
    sc.pp.scale(hvg)
    with pytest.raises(ValueError, match=r"adata\.raw holds 6,047 genes and X only 2,016, so run the tools on r = "
                                         r"adata\.raw\.to_adata\(\)") as err:
        tmt.tl.score(hvg, ["CD8_T"])
    assert "misses the signature genes" in str(err.value)
    r = hvg.raw.to_adata()
    tmt.tl.score(r, ["CD8_T"])
    assert r.obsm["tmt_scores"]["CD8_T"].notna().all()

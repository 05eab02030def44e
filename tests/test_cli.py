import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tmetoolkit._cli import main

from .conftest import real_data_path


def test_demo_writes_outputs(tmp_path):
    assert main(["demo", "-o", str(tmp_path), "-q"]) == 0
    a = ad.read_h5ad(tmp_path / "demo.h5ad")
    assert "tmt_scores" in a.obsm
    tab = pd.read_csv(tmp_path / "sample_table.csv", index_col=0)
    assert len(tab) == 6 and "n_cells" in tab.columns
    markers = pd.read_csv(tmp_path / "markers.csv").query("label == 'Treg' and direction == 'up'")
    assert markers.iloc[0]["frac"] > markers.iloc[0]["frac_rest"] and "FOXP3" in set(markers["gene"])
    # the phenotype runs before the resistance profile, whose IFN-gamma row needs to know where T cells are
    long = a.uns["tmt_resistance_profile"]["long"]
    ifn = long.loc[long["mechanism"] == "IFN-gamma pathway defects (JAK1/2)", "status"]
    assert ifn.str.startswith("measured (inflamed;").any(), ifn.tolist()


def test_bad_input_gives_one_line_and_non_zero_exit(tmp_path):
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    for args, needle in (
        (["run", str(tmp_path / "missing.h5ad"), "-o", str(tmp_path / "o")], "does not exist"),
        (["run", str(bad), "-o", str(tmp_path / "o")], "could not read"),
    ):
        out = subprocess.run([sys.executable, "-m", "tmetoolkit._cli", *args], capture_output=True, text=True,
                             check=False)
        assert out.returncode != 0
        assert needle in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def _write_cellranger_h5(adata, path):
    """``adata``'s counts as Cell Ranger (v3+) writes a feature-barcode matrix: CSC features x barcodes."""
    import h5py
    import scipy.sparse as sp

    X = sp.csr_matrix(adata.X).astype(np.int32)
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(adata.obs_names, dtype="S")
        m["data"], m["indices"], m["indptr"] = X.data, X.indices, X.indptr
        m["shape"] = np.array([adata.n_vars, adata.n_obs], dtype=np.int32)
        feats = m.create_group("features")
        feats["id"] = np.array([f"ENSG{i:011d}" for i in range(adata.n_vars)], dtype="S")
        feats["name"] = np.array(adata.var_names, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * adata.n_vars, dtype="S")
        feats["genome"] = np.array(["GRCh38"] * adata.n_vars, dtype="S")
        feats["_all_tag_keys"] = np.array(["genome"], dtype="S")


def test_cli_reads_cell_ranger_h5_and_zarr(tmp_path):
    """Cell Ranger's matrix (.h5) and AnnData's .zarr folder are read as an .h5ad is: the same calls; an unknown
    suffix is refused in one line."""
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=300, seed=2)
    a.obs = a.obs[[]]
    a.obsm.clear()
    a.write_h5ad(tmp_path / "a.h5ad")
    a.write_zarr(tmp_path / "a.zarr")
    _write_cellranger_h5(a, tmp_path / "a.h5")
    calls = {}
    for name in ("a.h5ad", "a.zarr", "a.h5"):
        out = tmp_path / f"out_{name.replace('.', '_')}"
        assert main(["run", str(tmp_path / name), "-o", str(out), "-q"]) == 0
        calls[name] = ad.read_h5ad(next(out.glob("*.h5ad"))).obs["tmt_lineage"].astype(str).to_numpy()
    assert (calls["a.zarr"] == calls["a.h5ad"]).all() and (calls["a.h5"] == calls["a.h5ad"]).all()
    (tmp_path / "a.csv").write_text("x")
    out = subprocess.run([sys.executable, "-m", "tmetoolkit._cli", "run", str(tmp_path / "a.csv"), "-o",
                          str(tmp_path / "o")], capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "(.h5ad, or a .zarr folder)" in out.stderr and "Traceback" not in out.stderr


def test_wrong_key_names_nearest(tmp_path):
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=200)
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    out = subprocess.run(
        [sys.executable, "-m", "tmetoolkit._cli", "run", str(path), "-o", str(tmp_path / "o"),
         "--sample-key", "smaple"],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 2 and "'sample'" in out.stderr and "Traceback" not in out.stderr


def test_image_key_must_exist(tmp_path):
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=200, seed=0)
    a.write_h5ad(tmp_path / "a.h5ad")
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "out"), "--image-key", "feild", "-q"]) == 2


def test_help_lists_commands():
    for module in ("tmetoolkit", "tmetoolkit._cli"):  # python -m tmetoolkit, as scanpy users type it
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=False)
        assert out.returncode == 0 and "demo" in out.stdout and "run" in out.stdout, module


def test_run_on_chen_merfish_gives_a_complete_report(tmp_path):
    """`tmetoolkit run` on the Chen 2024 MERFISH window (raw counts), with the authors' cell types for space."""
    path = real_data_path("chen")
    code = main(["run", str(path), "-o", str(tmp_path), "--cell-type-key", "type_lvl2", "--tumor-labels", "Epithelial",
                 "--effector-labels", "CD8 T,TCF7+ CD8 T,CXCL13+ CD8 T", "-q"])
    assert code == 0
    html = (tmp_path / "report.html").read_text()
    for section in ("immune-phenotype", "checkpoint-receptors-and-ligands", "immunosuppression",
                    "resistance-mechanisms"):
        assert f"id='{section}'" in html
    a = ad.read_h5ad(next(tmp_path.glob("*.h5ad")))
    tab = a.uns["tmt_immune_phenotype"]["table"]
    assert tab["phenotype"].iloc[0] in {"inflamed", "excluded", "desert"}
    assert {"rho_tumor", "rho_stroma", "infiltration_ratio"} <= set(tab.columns)


def test_tumor_signature_finds_the_tumour_without_epithelial_calls(tmp_path, capsys, caplog):
    """Chen's panel holds KRT8 alone of the epithelial group (PERP stands in): part of the tumour is found, and
    --tumor-signature finds more of it."""
    path = real_data_path("chen")
    assert main(["run", str(path), "-o", str(tmp_path / "a")]) == 0
    plain = ad.read_h5ad(next((tmp_path / "a").glob("*.h5ad")))
    capsys.readouterr()
    assert main(["run", str(path), "-o", str(tmp_path / "b"), "--tumor-signature", "MPAS", "-q"]) == 0
    assert "tmetoolkit:" not in capsys.readouterr().err  # -q: no progress bar
    a = ad.read_h5ad(next((tmp_path / "b").glob("*.h5ad")))
    assert a.uns["tmt_immune_phenotype"]["table"]["basis"].iloc[0] == "spatial"
    assert a.obs["tmt_tumor_cell"].mean() > 0.2
    assert a.uns["tmt_annotate"]["params"]["tumor_signature"] == "MPAS"
    # measured: 553 with MPAS, 393 with the markers alone (110 before PERP stood in)
    n_tumour = (a.obs["tmt_lineage"] == "Malignant/Epithelial").sum()
    assert n_tumour > 450
    assert n_tumour > (plain.obs["tmt_lineage"] == "Malignant/Epithelial").sum() + 100


def test_run_on_a_protein_panel_annotates_from_markers(tmp_path):
    """`tmetoolkit run` on the Vectra field without given cell types: markers -> lineages -> spatial phenotype."""
    path = real_data_path("phenoptr")
    assert main(["run", str(path), "-o", str(tmp_path), "--region-key", "tissue_category", "-q"]) == 0
    a = ad.read_h5ad(next(tmp_path.glob("*.h5ad")))
    assert a.uns["tmt_annotate"]["params"]["input_state"] == "protein"
    tab = a.uns["tmt_immune_phenotype"]["table"]
    # by inForm's own tissue categories, 22% of the CD8+ cells lie in the tumour, where chance among the
    # non-tumour cells puts 9.6% (2.3x): CD8 T cells reach the tumour, so inflamed, as from inForm's phenotypes
    assert tab["phenotype"].iloc[0] == "inflamed"
    report = (tmp_path / "report.html").read_text()
    assert 'alt="protein marker gates"' in report and "input: protein" in report
    assert "Not assessable with this marker panel:" in report  # a protein panel is no gene panel
    assert "Markers behind the state calls" in report
    markers = pd.read_csv(tmp_path / "markers.csv")
    # the panel decides Tregs and tumour; its CD8 T cells and macrophages keep their lineage's name and markers
    assert set(markers["signatures"]) == {"FOXP3", "tumor", "CD8", "CD68"}
    # PD-1 and PD-L1 from their gates; per region of inForm's tissue categories, PD-L1 on tumour cells and
    # macrophages, and no MDSC fraction (the panel has no marker for it), not a fraction of 0
    cp = a.uns["tmt_checkpoints"]["table"].iloc[0]
    assert 0 < cp["cd8_frac_PD-1"] < 1 and 0 < cp["myeloid_frac_PD-L1"] < 1
    regions = pd.read_csv(tmp_path / "region_table.csv", index_col=0)
    assert list(regions["region"]) == ["Stroma", "Tumor"]
    assert regions["immunosuppression:checkpoint_ligands"].between(0, 1).all()
    assert regions["immunosuppression:mdsc_fraction_myeloid"].isna().all()
    # PD-1 is the panel's only receptor: co-expression of two cannot be seen
    assert pd.isna(cp["cd8_frac_ge2_receptors"]) and regions["immunosuppression:checkpoint_coexpression"].isna().all()


def test_bulk_run_treats_observations_as_samples(tmp_path):
    """`--bulk`: a pseudobulk cohort (one observation per sample) gets per-sample results, no per-cell calls."""
    import scanpy as sc

    import tmetoolkit as tmt

    cells = tmt.datasets.simulate(n_samples=6, n_cells=600, seed=4)
    agg = sc.get.aggregate(cells, by="sample", func="sum")
    bulk = ad.AnnData(agg.layers["sum"], obs=pd.DataFrame(index=agg.obs_names.astype(str)), var=cells.var[[]])
    bulk.obs["response"] = ["R", "NR", "R", "NR", "R", "NR"]
    bulk.write_h5ad(tmp_path / "bulk.h5ad")
    assert main(["run", str(tmp_path / "bulk.h5ad"), "-o", str(tmp_path / "out"), "--bulk", "--group-key",
                 "response", "-q"]) == 0
    out = ad.read_h5ad(tmp_path / "out" / "bulk.h5ad")
    assert "tmt_lineage" not in out.obs
    assert out.uns["tmt_immune_phenotype"]["table"]["basis"].eq("expression").all()
    assert out.uns["tmt_immunosuppression"]["params"]["bulk"] and "tmt_compare_groups" in out.uns
    table = pd.read_csv(tmp_path / "out" / "sample_table.csv", index_col=0)
    assert len(table) == 6 and table["immune_phenotype:phenotype"].notna().all()
    assert "n_cells" not in table.columns  # an observation that is a sample has no cells to count
    assert "samples: 6 (bulk" in (tmp_path / "out" / "report.html").read_text()
    assert main(["run", str(tmp_path / "bulk.h5ad"), "-o", str(tmp_path / "x"), "--bulk", "--sample-key",
                 "response", "-q"]) == 2


def test_bulk_looking_input_runs_the_bulk_analysis(tmp_path, caplog):
    """Four bulk RNA-seq samples given without --bulk: the per-cell steps do not apply, so the run is the --bulk run,
    and the log says so."""
    import logging

    path = real_data_path("racle")
    with caplog.at_level(logging.WARNING, logger="tmetoolkit"):
        assert main(["run", str(path), "-o", str(tmp_path), "-q"]) == 0
    assert "running the bulk analysis (as --bulk does)" in caplog.text
    out = ad.read_h5ad(tmp_path / f"{path.stem}.h5ad")
    assert "tmt_lineage" not in out.obs
    assert out.uns["tmt_immune_phenotype"]["params"]["bulk"] and out.uns["tmt_immunosuppression"]["params"]["bulk"]
    assert len(pd.read_csv(tmp_path / "sample_table.csv", index_col=0)) == out.n_obs == 4


def test_run_reads_depth_normalised_cells(tmp_path):
    """Cells normalised to 10,000 per cell and not logged, sparse, as many shared files hold them (the bulk check
    once summed a sparse block into a matrix that ``float`` refused: every such file of <= 1,000 cells failed)."""
    import scanpy as sc

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=2, n_cells=300, seed=0)
    sc.pp.normalize_total(a, target_sum=1e4)
    a.write_h5ad(tmp_path / "cp10k.h5ad")
    assert main(["run", str(tmp_path / "cp10k.h5ad"), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert (ad.read_h5ad(tmp_path / "out" / "cp10k.h5ad").obs["tmt_lineage"] != "unassigned").mean() > 0.9


def test_markers_option_maps_protein_channels(tmp_path):
    """A lymphoma CyCIF panel: the tumour marker is CD30, not keratin, which --markers says."""
    path = real_data_path("scimap")
    assert main(["run", str(path), "-o", str(tmp_path), "--markers", "tumor=CD30", "-q"]) == 0
    a = ad.read_h5ad(next(tmp_path.glob("*.h5ad")))
    gates = a.uns["tmt_annotate"]["gates"].set_index("marker")
    assert gates.loc["tumor", "channel"] == "CD30"
    truth = a.obs["phenotype"].astype(str).str.startswith("Tumor")
    called = a.obs["tmt_lineage"] == "Malignant/Epithelial"
    assert (called & truth).sum() / truth.sum() > 0.8
    assert main(["run", str(path), "-o", str(tmp_path), "--markers", "tumor", "-q"]) == 2


def test_run_passes_effector_labels_to_the_expression_phenotype(tmp_path):
    """Dissociated cells with the user's own labels: --effector-labels reaches the expression-based phenotype."""
    import tmetoolkit as tmt

    cells = tmt.datasets.simulate(n_samples=3, n_cells=400, seed=4)
    del cells.obsm["spatial"]
    cells.obs["ct"] = cells.obs["true_lineage"].astype(str).replace({"CD8 T": "CD8+ T cell"})
    cells.write_h5ad(tmp_path / "cells.h5ad")
    assert main(["run", str(tmp_path / "cells.h5ad"), "-o", str(tmp_path / "out"), "--cell-type-key", "ct",
                 "--effector-labels", "CD8+ T cell", "-q"]) == 0
    tab = ad.read_h5ad(tmp_path / "out" / "cells.h5ad").uns["tmt_immune_phenotype"]["table"]
    assert tab["cd8_fraction_all"].max() > 0.01


def test_region_key_gives_phenotype_and_immunosuppression_per_region(tmp_path):
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=2, n_cells=1200, seed=2)
    a.write_h5ad(tmp_path / "a.h5ad")
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "out"), "--region-key", "true_compartment",
                 "-q"]) == 0
    out = ad.read_h5ad(tmp_path / "out" / "a.h5ad")
    phen = out.uns["tmt_immune_phenotype"]["regions"]
    sup = out.uns["tmt_immunosuppression"]["regions"]
    assert set(sup.index) == set(phen.index) == {f"{s}:{c}" for s in ("S01", "S02") for c in ("tumor", "margin",
                                                                                               "stroma")}
    html = (tmp_path / "out" / "report.html").read_text()
    assert set(out.uns["tmt_resistance_profile"]["regions"].index) == set(sup.index)
    table = pd.read_csv(tmp_path / "out" / "region_table.csv", index_col=0)
    assert set(table.index) == set(sup.index) and "immunosuppression:composite" in table
    assert "Regions (true_compartment)" in html and html.count("Per region (true_compartment)") == 2
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "o2"), "--region-key", "zone", "-q"]) == 2


def test_layer_option_reads_counts_when_x_is_scaled(tmp_path, capsys):
    """The usual scanpy file: X scaled, counts in a layer. The run refuses X and names --layer; with it, the calls
    equal those made from the counts, and X is written back unchanged."""
    import anndata as ad
    import numpy as np
    import scanpy as sc

    import tmetoolkit as tmt

    counts = tmt.datasets.simulate(n_samples=3, n_cells=300, seed=2)
    scaled = counts.copy()
    scaled.layers["counts"] = scaled.X.copy()
    sc.pp.normalize_total(scaled)
    sc.pp.log1p(scaled)
    sc.pp.scale(scaled, max_value=10)
    x_before = np.asarray(scaled.X).copy()
    counts.write_h5ad(tmp_path / "counts.h5ad")
    scaled.write_h5ad(tmp_path / "scaled.h5ad")

    assert main(["run", str(tmp_path / "scaled.h5ad"), "-o", str(tmp_path / "refused"), "-q"]) == 2
    assert "--layer NAME (layers in this file: counts)" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "scaled.h5ad"), "-o", str(tmp_path / "s"), "--layer", "counts", "-q"]) == 0
    assert main(["run", str(tmp_path / "counts.h5ad"), "-o", str(tmp_path / "c"), "-q"]) == 0
    from_layer, from_x = ad.read_h5ad(tmp_path / "s" / "scaled.h5ad"), ad.read_h5ad(tmp_path / "c" / "counts.h5ad")
    assert (from_layer.obs["tmt_state"] == from_x.obs["tmt_state"]).all()
    np.testing.assert_array_equal(np.asarray(from_layer.X), x_before)
    assert main(["run", str(tmp_path / "scaled.h5ad"), "-o", str(tmp_path / "x"), "--layer", "cnts", "-q"]) == 2
    assert "'counts'" in capsys.readouterr().err


def test_run_without_sample_key_names_candidate_columns(tmp_path, caplog):
    import logging

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=2, n_cells=200, seed=0)
    a.obs = a.obs.rename(columns={"sample": "patient_id"})
    a.write_h5ad(tmp_path / "a.h5ad")
    with caplog.at_level(logging.WARNING, logger="tmetoolkit"):
        assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert "candidates: patient_id" in caplog.text


def test_spatial_columns_option_uses_coordinates_kept_in_obs(tmp_path, caplog):
    """Coordinates in obs columns (as scimap and many readers keep them): the run names them and, given
    --spatial-columns, makes the spatial phenotype with them."""
    import logging

    import anndata as ad

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=3, n_cells=300, seed=0)
    a.obs["X_centroid"], a.obs["Y_centroid"] = a.obsm["spatial"][:, 0], a.obsm["spatial"][:, 1]
    del a.obsm["spatial"]
    a.write_h5ad(tmp_path / "a.h5ad")
    with caplog.at_level(logging.WARNING, logger="tmetoolkit"):
        assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "plain"), "-q"]) == 0
    assert "--spatial-columns X_centroid,Y_centroid" in caplog.text
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "xy"), "-q",
                 "--spatial-columns", "X_centroid,Y_centroid"]) == 0
    out = ad.read_h5ad(tmp_path / "xy" / "a.h5ad")
    assert (out.uns["tmt_immune_phenotype"]["table"]["basis"] == "spatial").all()
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "bad"), "-q",
                 "--spatial-columns", "X_centroid"]) == 2


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_run_never_replaces_the_input_and_removes_an_earlier_runs_outputs(tmp_path, caplog):
    """`-o` the input's own folder: the input stays as it was, the results go beside it; a spatial run's region
    table does not stay beside a later dissociated run's outputs, and files tmetoolkit did not write stay."""
    import hashlib

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=300, seed=0)
    a.write_h5ad(tmp_path / "spatial.h5ad")
    assert main(["run", str(tmp_path / "spatial.h5ad"), "-o", str(tmp_path), "-q"]) == 0
    assert (tmp_path / "region_table.csv").is_file()  # tiles of the spatial phenotype
    del a.obsm["spatial"]
    base = tmp_path / "base.h5ad"
    a.write_h5ad(base)
    digest = hashlib.sha256(base.read_bytes()).hexdigest()
    (tmp_path / "notes.txt").write_text("mine")
    with caplog.at_level("WARNING", logger="tmetoolkit"):
        assert main(["run", str(base), "-o", str(tmp_path), "-q"]) == 0
    assert hashlib.sha256(base.read_bytes()).hexdigest() == digest
    assert "tmt_scores" in ad.read_h5ad(tmp_path / "base.tmt.h5ad").obsm
    assert not (tmp_path / "region_table.csv").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "spatial.h5ad").is_file()
    assert (tmp_path / "tmetoolkit_outputs.txt").read_text().split() == [
        "base.tmt.h5ad", "sample_table.csv", "report.html", "markers.csv", "tmetoolkit_outputs.txt"]
    assert not (tmp_path / "spatial.tmt.h5ad").exists()  # the earlier run's, as its region table
    # one sample without coordinates: the expression phenotype, the sample judged alone by absolute thresholds
    params = ad.read_h5ad(tmp_path / "base.tmt.h5ad").uns["tmt_immune_phenotype"]["params"]
    assert params["basis"] == "expression" and params["reference"] == "absolute"
    # cells without a sample column or coordinates: no phenotype, and the log and the report say why
    del a.obs["sample"]
    a.write_h5ad(base)
    with caplog.at_level("WARNING", logger="tmetoolkit"):
        assert main(["run", str(base), "-o", str(tmp_path), "-q"]) == 0
    assert "no immune phenotype: no sample key and no cell coordinates" in caplog.text
    assert "no cell coordinates" in (tmp_path / "report.html").read_text()


def test_an_unusable_output_folder_stops_the_run_before_the_analysis(tmp_path, capsys, monkeypatch):
    import errno
    import os
    import tempfile

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=200, seed=0)
    a.write_h5ad(tmp_path / "a.h5ad")
    (tmp_path / "file").write_text("x")
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "file" / "out")]) == 2
    assert "is a file, not a folder" in _one_line_error(capsys)
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "file")]) == 2
    assert "is a file" in _one_line_error(capsys)

    def never(*args, **kwargs):
        raise AssertionError("the analysis ran")

    monkeypatch.setattr(tmt.tl, "score", never)
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(ro)]) == 2
        assert "permission denied" in _one_line_error(capsys)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "new")]) == 2
    assert "the file system is read-only" in _one_line_error(capsys)


def test_unanalysable_input_exits_non_zero_with_one_line(tmp_path, capsys):
    import numpy as np
    import scipy.sparse as sp

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=200, seed=0)
    corrupt = a.copy()
    corrupt.X = corrupt.X.astype(np.float64)
    corrupt.X.data[::100] = 1e30
    zero = a.copy()
    zero.X = sp.csr_matrix(a.shape, dtype=np.float32)
    for name, data, needle in (("zero", zero, "every value of the matrix is zero"),
                               ("one", a[:, ["CD8A"]].copy(), "1 feature"),
                               ("empty", a[:0].copy(), "0 cells"),
                               ("corrupt", corrupt, f"{corrupt.X.data[::100].size:,} entries exceed 1e+09")):
        data.write_h5ad(tmp_path / f"{name}.h5ad")
        assert main(["run", str(tmp_path / f"{name}.h5ad"), "-o", str(tmp_path / name), "-q"]) == 2, name
        assert needle in _one_line_error(capsys), name


def test_internal_errors_show_as_bugs_with_a_traceback(tmp_path, capsys, monkeypatch):
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=200, seed=0)
    a.write_h5ad(tmp_path / "a.h5ad")

    def broken(*args, **kwargs):
        return {}["flagged"]

    monkeypatch.setattr(tmt.tl, "checkpoints", broken)
    assert main(["run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'flagged'" in err and "this is a bug in tmetoolkit" in err


def test_use_raw_option_reads_all_genes_and_keeps_x(tmp_path):
    import scanpy as sc

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=300, seed=0)
    del a.obsm["spatial"]
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.raw = a
    hvg = a[:, a.var_names[:300]].copy()  # a gene subset, as after highly variable gene selection
    hvg.write_h5ad(tmp_path / "hvg.h5ad")
    assert main(["run", str(tmp_path / "hvg.h5ad"), "-o", str(tmp_path / "out"), "--use-raw", "-q"]) == 0
    out = ad.read_h5ad(tmp_path / "out" / "hvg.h5ad")
    assert out.n_vars == 300 and out.raw.n_vars == a.n_vars
    assert out.uns["tmt_scores"]["params"]["layer"] == "X"  # the pipeline read raw's matrix as X
    assert out.obs["tmt_lineage"].notna().all() and out.obsm["tmt_scores"].shape[1] > 100


def test_use_raw_option_passes_the_reference(tmp_path):
    """--use-raw runs the pipeline on adata.raw: --reference still reaches the immune phenotype (cohort terciles on
    3 samples, where the default judges so few samples alone)."""
    import scanpy as sc

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=3, n_cells=300, seed=4)
    del a.obsm["spatial"]
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.raw = a
    a[:, a.var_names[:300]].copy().write_h5ad(tmp_path / "hvg.h5ad")
    assert main(["run", str(tmp_path / "hvg.h5ad"), "-o", str(tmp_path / "out"), "--use-raw", "--sample-key",
                 "sample", "--reference", "cohort", "-q"]) == 0
    out = ad.read_h5ad(tmp_path / "out" / "hvg.h5ad")
    assert set(out.uns["tmt_immune_phenotype"]["table"]["reference"]) == {"cohort"}


def test_group_key_without_samples_is_refused_before_the_run(tmp_path, capsys):
    """--group-key compares groups of samples: on cells without a sample column it was dropped without a word (no
    comparison, no note in the log or the report); it is refused at the start, naming --sample-key and the
    columns that look like samples."""
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=2, n_cells=300, n_background_genes=10, seed=1)
    a.obs = a.obs.rename(columns={"sample": "patient"})
    del a.obsm["spatial"]
    a.write_h5ad(tmp_path / "cells.h5ad")
    assert main(["run", str(tmp_path / "cells.h5ad"), "-o", str(tmp_path / "out"), "--group-key", "response",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert "--sample-key" in err and "patient" in err
    assert not (tmp_path / "out" / "report.html").exists()


def test_a_warning_is_printed_once(tmp_path, capsys):
    """Each tool that reads the matrix warns about repeated var_names: the command printed the same line once per
    tool (four times); it prints each warning once."""
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=2, n_cells=300, n_background_genes=10, seed=0)
    del a.obsm["spatial"]
    a.var_names = [*a.var_names[:-1], a.var_names[-2]]
    a.write_h5ad(tmp_path / "dup.h5ad")
    assert main(["run", str(tmp_path / "dup.h5ad"), "-o", str(tmp_path / "out"), "--sample-key", "sample"]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if "occur more than once" in x or "occurs more" in x]
    assert len(lines) == 1, lines


def test_a_group_column_of_more_than_two_groups_says_what_to_do_on_the_command_line(tmp_path):
    """The comparison is skipped when --group-key holds three groups; its reason told a command-line user to
    'pass groups=(a, b)', which only Python can: it now says what the command needs."""
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=3, n_cells=300, n_background_genes=10, seed=1)
    del a.obsm["spatial"]
    a.obs["arm"] = a.obs["sample"].astype(str)
    a.write_h5ad(tmp_path / "cells.h5ad")
    assert main(["run", str(tmp_path / "cells.h5ad"), "-o", str(tmp_path / "out"), "--sample-key", "sample",
                 "--group-key", "arm", "-q"]) == 0
    skipped = ad.read_h5ad(tmp_path / "out" / "cells.h5ad").uns["tmt_run"]["skipped"].set_index("tool")
    assert "--group-key" in skipped.loc["compare_groups", "reason"]


def test_batch_corrected_values_are_refused_before_the_run(tmp_path, capsys):
    """A file whose X holds ComBat-corrected log values (no common floor for undetected genes) is refused at the
    start, naming --layer and --use-raw, not after scoring and annotating."""
    import tmetoolkit as tmt

    from .conftest import batch_corrected

    batch_corrected(tmt.datasets.simulate(n_samples=3, n_cells=300, seed=2)).write_h5ad(tmp_path / "combat.h5ad")
    assert main(["run", str(tmp_path / "combat.h5ad"), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "ComBat" in err and "--use-raw" in err
    assert not (tmp_path / "out" / "report.html").exists()


def test_pixel_size_option_scales_pixel_coordinates(tmp_path, capsys):
    """Coordinates in pixels of 0.5 µm with --pixel-size 0.5 give the densities, margins and scale of the same
    tissue in micrometres; a pixel size that is no positive number stops the command."""
    import numpy as np

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=2, n_cells=600, n_background_genes=10, seed=3)
    a.write_h5ad(tmp_path / "um.h5ad")
    a.obsm["spatial"] = a.obsm["spatial"] / 0.5
    a.write_h5ad(tmp_path / "px.h5ad")
    for name, extra in (("um", []), ("px", ["--pixel-size", "0.5"])):
        assert main(["run", str(tmp_path / f"{name}.h5ad"), "-o", str(tmp_path / name), "-q", *extra]) == 0
    um, px = (ad.read_h5ad(tmp_path / name / f"{name}.h5ad") for name in ("um", "px"))
    assert px.uns["tmt_compartments"]["params"]["pixel_size"] == 0.5
    assert px.uns["tmt_immune_phenotype"]["params"]["pixel_size"] == 0.5
    density = [x.uns["tmt_immune_phenotype"]["table"]["effector_per_mm2"].to_numpy(dtype=float) for x in (um, px)]
    assert np.allclose(*density)
    assert (um.obs["tmt_compartment"] == px.obs["tmt_compartment"]).all()
    for bad in ("0", "-1", "x"):
        with pytest.raises(SystemExit) as exit_:
            main(["run", str(tmp_path / "px.h5ad"), "-o", str(tmp_path / "bad"), "--pixel-size", bad])
        assert exit_.value.code == 2
    assert "--pixel-size" in capsys.readouterr().err


def test_coordinates_in_pixels_name_the_command_line_option(tmp_path, capsys):
    """Cells 5 pixels to the micrometre, run without --pixel-size: the warning names the option a command-line
    user can pass, not only the Python argument pixel_size=."""
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=600, n_background_genes=10, seed=3)
    a.obsm["spatial"] = a.obsm["spatial"] * 5
    a.write_h5ad(tmp_path / "px.h5ad")
    assert main(["run", str(tmp_path / "px.h5ad"), "-o", str(tmp_path / "out")]) == 0
    warning = [x for x in capsys.readouterr().err.splitlines() if "coordinate units apart" in x]
    assert warning and all("--pixel-size" in x for x in warning), warning


def test_run_splits_cell_states_within_each_sample_and_passes_the_reference(tmp_path):
    """--sample-key reaches annotate (population splits such as the MDSC-like states are made within each sample,
    not over pooled ones), and --reference reaches the immune phenotype (cohort terciles on 3 samples, where the
    default judges each of so few samples alone)."""
    import tmetoolkit as tmt

    cells = tmt.datasets.simulate(n_samples=3, n_cells=300, seed=4)
    del cells.obsm["spatial"]
    cells.write_h5ad(tmp_path / "cells.h5ad")
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "cells.h5ad"), "-o", str(out), "--sample-key", "sample", "--reference",
                 "cohort", "-q"]) == 0
    result = ad.read_h5ad(out / "cells.h5ad")
    assert result.uns["tmt_annotate"]["params"]["sample_key"] == "sample"
    table = result.uns["tmt_immune_phenotype"]["table"]
    assert set(table["reference"]) == {"cohort"}
    assert main(["run", str(tmp_path / "cells.h5ad"), "-o", str(out), "--sample-key", "sample", "-q"]) == 0
    assert set(ad.read_h5ad(out / "cells.h5ad").uns["tmt_immune_phenotype"]["table"]["reference"]) == {"absolute"}


def test_log_lines_and_warnings_are_not_written_into_the_progress_bar(tmp_path):
    """Each step's log line and each warning starts on a cleared line, not after the bar's text (the command in a
    process of its own: in pytest's, its log handlers hold the log lines)."""
    import re

    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=2, n_cells=300, seed=0)
    del a.obsm["spatial"]
    a.write_h5ad(tmp_path / "a.h5ad")
    command = [sys.executable, "-m", "tmetoolkit", "run", str(tmp_path / "a.h5ad"), "-o", str(tmp_path / "out"),
               "--sample-key", "sample"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    segments = re.split(r"[\r\n]", done.stderr)
    assert any("scoring signatures" in s for s in segments) and any("%|" in s for s in segments)
    assert not [s for s in segments if "%|" in s and ("scoring signatures" in s or "warning:" in s)]

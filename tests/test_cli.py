import subprocess
import sys

import anndata as ad
import pandas as pd

from tmetoolkit._cli import main


def test_demo_writes_outputs(tmp_path):
    assert main(["demo", "-o", str(tmp_path), "-q"]) == 0
    a = ad.read_h5ad(tmp_path / "demo.h5ad")
    assert "tmt_scores" in a.obsm
    tab = pd.read_csv(tmp_path / "sample_table.csv", index_col=0)
    assert len(tab) == 6 and "n_cells" in tab.columns


def test_bad_input_gives_one_line_and_non_zero_exit(tmp_path):
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    for args, needle in (
        (["run", str(tmp_path / "missing.h5ad"), "-o", str(tmp_path / "o")], "does not exist"),
        (["run", str(bad), "-o", str(tmp_path / "o")], "could not read"),
    ):
        out = subprocess.run([sys.executable, "-m", "tmetoolkit._cli", *args], capture_output=True, text=True)
        assert out.returncode != 0
        assert needle in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_wrong_key_names_nearest(tmp_path):
    import tmetoolkit as tmt

    a = tmt.datasets.simulate(n_samples=1, n_cells=200)
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    out = subprocess.run(
        [sys.executable, "-m", "tmetoolkit._cli", "run", str(path), "-o", str(tmp_path / "o"), "--sample-key", "smaple"],
        capture_output=True, text=True,
    )
    assert out.returncode == 2 and "'sample'" in out.stderr and "Traceback" not in out.stderr


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "tmetoolkit._cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout and "run" in out.stdout

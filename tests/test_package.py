"""API conventions every public tool follows, results that survive writing, no global state changed at import."""

import inspect
import subprocess
import sys

import anndata as ad
import pandas as pd
import pytest

import tmetoolkit as tmt

TOOLS = [getattr(tmt.tl, n) for n in tmt.tl.__all__ if n != "mechanisms"]
PLOTS = [getattr(tmt.pl, n) for n in tmt.pl.__all__]


@pytest.mark.parametrize("fn", TOOLS + [tmt.pp.check_input], ids=lambda f: f.__name__)
def test_tools_take_adata_first_and_are_keyword_only(fn):
    params = list(inspect.signature(fn).parameters.values())
    assert params[0].name == "adata"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 2
    if "copy" in inspect.signature(fn).parameters:
        copy = inspect.signature(fn).parameters["copy"]
        assert copy.kind == copy.KEYWORD_ONLY and copy.default is False


@pytest.mark.parametrize("fn", PLOTS, ids=lambda f: f.__name__)
def test_plots_accept_ax(fn):
    assert "ax" in inspect.signature(fn).parameters
    assert "show" not in inspect.signature(fn).parameters


PUBLIC = [f"tmetoolkit.{mod}.{name}" for mod in ("pp", "tl", "pl", "get", "sig", "datasets")
          for name in getattr(tmt, mod).__all__ if callable(getattr(getattr(tmt, mod), name))] + ["tmetoolkit.report"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_docstrings_document_every_parameter_and_the_return(name):
    """numpydoc's checks that matter to a reader: a docstring with a one-line summary, every parameter documented
    and none that does not exist, and a Returns section for whatever returns a value (classes, dataclasses that
    list their fields as Attributes, need the docstring and summary)."""
    from numpydoc.validate import validate

    obj = getattr(getattr(tmt, name.split(".")[1]), name.split(".")[2]) if name.count(".") == 2 else tmt.report
    wanted = {"GL08", "SS01"} if inspect.isclass(obj) else {"GL08", "SS01", "PR01", "PR02", "PR10", "RT01"}
    errors = [f"{code}: {msg}" for code, msg in validate(name)["errors"] if code in wanted]
    assert not errors, errors


def test_import_changes_no_global_state():
    code = (
        "import logging, warnings, matplotlib, scanpy, anndata, numba, dask\n"
        "rc = dict(matplotlib.rcParams); f = list(warnings.filters); h = list(logging.getLogger().handlers)\n"
        "import tmetoolkit\n"
        "assert dict(matplotlib.rcParams) == rc and list(warnings.filters) == f\n"
        "assert list(logging.getLogger().handlers) == h\n"
        "assert any(isinstance(x, logging.NullHandler) for x in logging.getLogger('tmetoolkit').handlers)\n"
        "import sys\n"
        "assert 'tqdm.autonotebook' not in sys.modules  # it warns in notebooks without ipywidgets\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_every_result_writes_to_h5ad_and_zarr(tmp_path):
    # HDF5 and zarr keys cannot hold "/": mechanism names such as "B2M/HLA mutations" must not become keys
    a = tmt.datasets.simulate(n_samples=4, n_cells=800, seed=7)  # two responders, two non-responders
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    for tool in (tmt.tl.immune_phenotype, tmt.tl.immunosuppression, tmt.tl.resistance_profile):
        tool(a, sample_key="sample", region_key="true_compartment")
    tmt.tl.compare_groups(a, sample_key="sample", group_key="response")
    with ad.settings.override(disallow_forward_slash_in_h5ad=True):
        a.write_h5ad(tmp_path / "a.h5ad")
    with ad.settings.override(zarr_write_format=3):
        a.write_zarr(tmp_path / "a.zarr")
    for back in (ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_zarr(tmp_path / "a.zarr")):
        pd.testing.assert_frame_equal(tmt.get.sample_table(back), tmt.get.sample_table(a), check_dtype=False)
        pd.testing.assert_frame_equal(tmt.get.region_table(back), tmt.get.region_table(a), check_dtype=False)
        pd.testing.assert_frame_equal(back.uns["tmt_compare_groups"]["table"], a.uns["tmt_compare_groups"]["table"],
                                      check_dtype=False)


def test_local_real_data_loader(tmp_path, monkeypatch):
    """tmt.datasets.load finds the data folder given, named by TMETOOLKIT_DATA, or as shared/data above the working
    directory; a missing file or an unknown name gets an error that says what to do."""
    import numpy as np

    folder = tmp_path / "shared" / "data"
    (folder / "phenoptr_vectra_field").mkdir(parents=True)
    ad.AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad(folder / tmt.datasets._local.REAL_DATA["phenoptr"])
    monkeypatch.delenv("TMETOOLKIT_DATA", raising=False)
    (tmp_path / "repo" / "tutorials").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "tutorials")  # ../../shared/data, as from a checkout's tutorials
    assert tmt.datasets.data_dir() == folder.resolve()
    assert tmt.datasets.load("phenoptr").shape == (3, 2)
    monkeypatch.chdir(tmp_path.parent)
    assert tmt.datasets.load("phenoptr", path=folder).shape == (3, 2)
    monkeypatch.setenv("TMETOOLKIT_DATA", str(folder))
    assert tmt.datasets.load("phenoptr").shape == (3, 2)
    with pytest.raises(FileNotFoundError, match="chen2024_nsclc_merfish.*TMETOOLKIT_DATA"):
        tmt.datasets.load("chen2024")
    with pytest.raises(KeyError, match="Did you mean \\['chen2024'"):
        tmt.datasets.load("chen")


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    """The README's quickstart block runs as written (it writes report.html into the working directory)."""
    import re
    from pathlib import Path

    import matplotlib.pyplot as plt

    readme = Path(__file__).resolve().parents[1] / "README.md"
    block = re.search(r"## Quickstart\n\n```python\n(.*?)```", readme.read_text(), re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    written = {name: _watch(monkeypatch, name) for name in tmt.tl.__all__ if name != "mechanisms"}
    namespace: dict = {}
    exec(compile(block, str(readme), "exec"), namespace)  # noqa: S102 - running the README is the test
    plt.close("all")
    assert (tmp_path / "report.html").is_file() and "tmt_resistance_profile" in namespace["adata"].uns

    # the table of what each tool writes holds what the tools of the quickstart wrote, and only that
    table = _readme_writes(readme.read_text())
    assert set(table) == set(written), set(table) ^ set(written)
    ran = {name: keys for name, keys in written.items() if keys}
    assert {"score", "annotate", "checkpoints", "immune_phenotype", "immunosuppression"} <= set(ran), sorted(ran)
    for name, keys in ran.items():
        required, conditional, also = table[name]
        allowed = required | conditional | {k for tool in also for k in set().union(*table[tool][:2])}
        allowed |= {f'uns["{k[5:-2]}_colors"]' for k in allowed if k.startswith("obs[")}  # label colours
        allowed |= {'obsm["tmt_scores"]', 'uns["tmt_scores"]'}  # the scores a tool needs
        assert keys <= allowed, (name, sorted(keys - allowed))
        assert required <= keys, (name, sorted(required - keys))


def _watch(monkeypatch, name: str) -> set:
    """Wrap ``tmt.tl.<name>``: the set returned collects the ``tmt_`` keys each call adds or replaces."""
    func, keys = getattr(tmt.tl, name), set()

    def wrapper(adata, *args, **kwargs):
        obs = adata.obs.filter(regex="^tmt_").copy()
        obsm, uns = dict(adata.obsm.items()), dict(adata.uns)
        out = func(adata, *args, **kwargs)
        keys.update(f'obs["{c}"]' for c in adata.obs.columns
                    if c.startswith("tmt_") and (c not in obs or not adata.obs[c].equals(obs[c])))
        keys.update(f'obsm["{k}"]' for k, v in adata.obsm.items() if k.startswith("tmt_") and v is not obsm.get(k))
        keys.update(f'uns["{k}"]' for k, v in adata.uns.items() if k.startswith("tmt_") and v is not uns.get(k))
        return out

    monkeypatch.setattr(tmt.tl, name, wrapper)
    return keys


def _readme_writes(readme: str) -> dict[str, tuple[set, set, set]]:
    """Per tool of the README's table: the keys it always writes, the keys it writes in some cases (a part of the
    cell starting "with" or "on"), and the other tools whose keys it may write."""
    import re

    out = {}
    for name, cell in re.findall(r"^\| `tmt\.tl\.(\w+)\(.*?\)` \| (.*) \|$", readme, re.MULTILINE):
        required, conditional = set(), set()
        for part in cell.split(";"):
            keys = {f'{s}["{k}"]' for s, k in re.findall(r'(obsm|obs|uns)\["(tmt_\w+)"\]', part)}
            (conditional if part.strip().startswith(("with ", "on ")) else required).update(keys)
        out[name] = (required, conditional, set(re.findall(r"`tmt\.tl\.(\w+)`", cell)))
    return out


def test_installed_scanpy_stack_clusters_more_than_8192_cells():
    """What pyproject.toml resolves must run the clustering the README recommends as groupby: scanpy switches to
    pynndescent from 8,192 cells (pynndescent 0.7's sparse arrays broke it there), and Leiden needs igraph and
    leidenalg."""
    import warnings

    import numpy as np
    import scanpy as sc

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6, size=(4, 10))
    truth = np.repeat(np.arange(4), 2100)
    a = ad.AnnData(X=(centres[truth] + rng.normal(size=(truth.size, 10))).astype(np.float32))
    a.obsm["X_pca"] = a.X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sc.pp.neighbors(a, n_neighbors=10, use_rep="X_pca", random_state=0)
        sc.tl.leiden(a, resolution=0.1, random_state=0)
        sc.tl.leiden(a, key_added="leiden_igraph", flavor="igraph", n_iterations=2, resolution=0.1, random_state=0)
    assert a.n_obs > 8192 and a.obsp["connectivities"].shape == (a.n_obs, a.n_obs)
    for key in ("leiden", "leiden_igraph"):  # four well separated groups come out as four clusters
        assert pd.crosstab(a.obs[key], truth).gt(0).sum(axis=1).eq(1).all() and a.obs[key].nunique() == 4

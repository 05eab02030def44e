from __future__ import annotations

from pathlib import Path

import anndata as ad
import pytest

import tmetoolkit as tmt

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# short names used in the tests -> names of tmt.datasets.load
NAMES = {"puram": "puram2017", "chen": "chen2024", "xenium": "xenium_idc", "phenoptr": "phenoptr", "scimap": "scimap",
         "racle": "racle2017"}


def real_data_path(name: str) -> Path:
    """The file of a real data set in ../shared/data; the test is skipped when it is absent."""
    from tmetoolkit.datasets._local import REAL_DATA

    path = SHARED / REAL_DATA[NAMES[name]]
    if not path.is_file():
        pytest.skip(f"real data not available: {path}")
    return path


def shared_file(relative: str) -> ad.AnnData:
    """A file of ../shared/data that no loader names (the Zilionis and Schürch sets); the test is skipped when it
    is absent."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"real data not available: {path}")
    return ad.read_h5ad(path)


def batch_corrected(adata: ad.AnnData) -> ad.AnnData:
    """``adata`` (counts, ``obs["sample"]``) in place: log-normalised, those values kept in ``.raw``, then
    ComBat-corrected by sample in ``X``, as a scanpy user leaves a file after batch correction."""
    import warnings

    import scanpy as sc

    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    adata.raw = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.combat(adata, key="sample")
    return adata


def real_data(name: str) -> ad.AnnData:
    """Load a real data set from ../shared/data, or skip the test when it is absent."""
    real_data_path(name)
    return tmt.datasets.load(NAMES[name], path=SHARED)


@pytest.fixture(scope="session")
def _sim_small():
    return tmt.datasets.simulate(n_samples=3, n_cells=1500, seed=7)


@pytest.fixture
def sim_small(_sim_small):
    """Three simulated samples (inflamed, excluded, desert), 1,500 cells each; a fresh copy per test."""
    return _sim_small.copy()

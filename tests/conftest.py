from __future__ import annotations

from pathlib import Path

import anndata as ad
import pytest

import tmetoolkit as tmt

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILES = {
    "puram": "puram2017_hnscc_chetah/puram2017_hnscc_ref180.h5ad",
    "chen": "chen2024_nsclc_merfish/chen2024_nsclc_merfish_patient002_3177cells.h5ad",
    "xenium": "xenium_breast_idc_regions/xenium_idc_7353cells_regions.h5ad",
    "phenoptr": "phenoptr_vectra_field/phenoptr_sample_field.h5ad",
    "scimap": "scimap_lymphoma_cycif/scimap_example_data.h5ad",
    "racle": "racle2017_melanoma_bulk_facs/racle2017_melanoma_4samples.h5ad",
}


def real_data_path(name: str) -> Path:
    """The file of a real data set in ../shared/data; the test is skipped when it is absent."""
    path = SHARED / FILES[name]
    if not path.is_file():
        pytest.skip(f"real data not available: {path}")
    return path


def real_data(name: str) -> ad.AnnData:
    """Load a real data set from ../shared/data, or skip the test when it is absent."""
    return ad.read_h5ad(real_data_path(name))


@pytest.fixture(scope="session")
def _sim_small():
    return tmt.datasets.simulate(n_samples=3, n_cells=1500, seed=7)


@pytest.fixture
def sim_small(_sim_small):
    """Three simulated samples (inflamed, excluded, desert), 1,500 cells each; a fresh copy per test."""
    return _sim_small.copy()

"""Loaders for the small, author-labelled tumour data sets kept next to the repository (``../shared/data``).

The files are not shipped with the package (their licences differ); tests, benchmarks and tutorials read them from a
local folder and skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

from anndata import AnnData

from .._utils import missing_key_error

ENV_VAR = "TMETOOLKIT_DATA"

# name -> file inside the data folder; what each holds is in the folder's README and in each file's uns["source"]
REAL_DATA = {
    "puram2017": "puram2017_hnscc_chetah/puram2017_hnscc_ref180.h5ad",  # Smart-seq2 HNSCC, 9 author cell types
    "chen2024": "chen2024_nsclc_merfish/chen2024_nsclc_merfish_patient002_3177cells.h5ad",  # MERFISH NSCLC, states
    "xenium_idc": "xenium_breast_idc_regions/xenium_idc_7353cells_regions.h5ad",  # Xenium breast, pathology regions
    "phenoptr": "phenoptr_vectra_field/phenoptr_sample_field.h5ad",  # Vectra protein field, inForm phenotypes
    "scimap": "scimap_lymphoma_cycif/scimap_example_data.h5ad",  # CyCIF protein image, gating phenotypes
    "racle2017": "racle2017_melanoma_bulk_facs/racle2017_melanoma_4samples.h5ad",  # bulk TPM with FACS fractions
}


def data_dir(path: str | Path | None = None) -> Path | None:
    """The folder of the local real data sets, or ``None`` when there is none.

    ``path`` if given; else the folder named by the environment variable ``TMETOOLKIT_DATA``; else the first
    ``shared/data`` folder found in the working directory or one of its parents (``../shared/data`` from a
    checkout of the repository, ``../../shared/data`` from its ``tutorials`` folder).

    Parameters
    ----------
    path
        A folder to use instead of searching; returned only if it exists.

    Returns
    -------
    The folder, or ``None``.
    """
    if path is not None:
        return Path(path) if Path(path).is_dir() else None
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]) if Path(os.environ[ENV_VAR]).is_dir() else None
    here = Path.cwd().resolve()
    return next((d / "shared" / "data" for d in (here, *here.parents) if (d / "shared" / "data").is_dir()), None)


def load(name: str, *, path: str | Path | None = None) -> AnnData:
    """One of the local real data sets, read with :func:`anndata.read_h5ad`.

    Parameters
    ----------
    name
        ``"puram2017"``, ``"chen2024"``, ``"xenium_idc"``, ``"phenoptr"``, ``"scimap"`` or ``"racle2017"``.
    path
        The data folder (see :func:`data_dir` for where it is looked for otherwise).

    Returns
    -------
    The AnnData as stored; ``uns["source"]`` says where it comes from, what ``X`` holds and which columns are
    the authors' labels.
    """
    import anndata as ad

    if name not in REAL_DATA:
        raise missing_key_error(name, "the local real data sets", REAL_DATA)
    folder = data_dir(path)
    file = folder / REAL_DATA[name] if folder is not None else None
    if file is None or not file.is_file():
        where = str(folder) if folder is not None else f"path=, ${ENV_VAR} or a shared/data folder above {Path.cwd()}"
        msg = (f"{REAL_DATA[name]} not found (looked in {where}). These files are not part of the package: pass "
               f"path= naming the folder that holds them, or set {ENV_VAR}.")
        raise FileNotFoundError(msg)
    return ad.read_h5ad(file)

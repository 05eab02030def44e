"""Samples and regions of the cells, read from AnnData for the per-sample tools; the features themselves are computed
in :mod:`tmetoolkit._core.sample`."""

from __future__ import annotations

import re

import pandas as pd
from anndata import AnnData

from .._matrix import median_detected
from .._utils import TmtInputError, in_natural_order, missing_key_error, warn

# a bulk sample detects half or more of the genes (Racle's melanoma samples: 25,005 of 49,902), a droplet cell a
# few percent (Zilionis' inDrop cells 983 of 20,388, the mouse cells 791 of 24,248), a Smart-seq2 cell about a
# quarter (Puram: 2,079 of 7,943; simulate()'s cells 1,516 of 6,047): below this share observations look like cells
CELL_DETECTION = 0.4


# obs columns whose name says they may hold samples (scanpy and Seurat users' usual names)
_SAMPLE_LIKE = re.compile(r"sample|patient|donor|animal|mouse|individual|subject|library|batch|orig[._]ident|specimen",
                          re.IGNORECASE)


def sample_like_columns(obs: pd.DataFrame) -> dict[str, int]:
    """Columns of ``obs`` named like samples (patient, donor, library, batch, ...) with 2 or more values, each value
    held by at least 10 cells on average: name -> number of values."""
    found = {}
    for col in obs.columns:
        if _SAMPLE_LIKE.search(str(col)) and not pd.api.types.is_float_dtype(obs[col]):
            n = int(obs[col].nunique())
            if 2 <= n <= len(obs) / 10:
                found[str(col)] = n
    return found


def one_sample_hint(adata: AnnData, sample_key: str | None) -> str:
    """Where the cells are read as one sample (no ``sample_key``, no ``obs["sample"]``) while ``obs`` has columns
    named like samples: ``"adata.obs holds 'Patient' (7 values): if these are samples, pass sample_key=."``, else
    ``""``."""
    if default_sample_key(adata, sample_key) is not None:
        return ""
    columns = sample_like_columns(adata.obs)
    if not columns:
        return ""
    named = ", ".join(f"{c!r} ({n} values)" for c, n in list(columns.items())[:4])
    hint = f"adata.obs holds {named}: if these are samples, pass sample_key=."
    recorded = recorded_sample_keys(adata)
    if recorded:
        hint += " " + "; ".join(f"{', '.join(f'tmt.tl.{t}' for t in tools)} ran with sample_key={key!r}"
                                for key, tools in recorded.items()) + " (pass the same key to every tool)."
    return hint


def recorded_sample_keys(adata: AnnData) -> dict[str, list[str]]:
    """The sample columns earlier tools ran with (still in ``obs``): key -> the tools' names."""
    from .. import _keys

    found: dict[str, list[str]] = {}
    for name, value in adata.uns.items():
        params = value.get("params") if isinstance(value, dict) else None
        key = params.get("sample_key") if isinstance(params, dict) else None
        if name.startswith(_keys.PREFIX) and key and key in adata.obs:
            found.setdefault(str(key), []).append(name.removeprefix(_keys.PREFIX))
    return found


def warn_if_one_sample(adata: AnnData, sample_key: str | None, tool: str) -> None:
    """Warn that ``tool`` reads all cells as one sample where ``obs`` has columns named like samples."""
    hint = one_sample_hint(adata, sample_key)
    if hint:
        warn(f"{tool} reads all cells as one sample; {hint}", stacklevel=4)


def default_sample_key(adata: AnnData, sample_key: str | None) -> str | None:
    """``sample_key``, or ``"sample"`` when it is ``None`` and ``obs`` has that column (the key tools record)."""
    return "sample" if sample_key is None and "sample" in adata.obs else sample_key


def samples_of(adata: AnnData, sample_key: str | None) -> pd.Series:
    """Sample of every cell: ``obs[sample_key]``; by default ``obs["sample"]`` if present, else one sample.

    Cells without a sample would otherwise form a sample named "nan", so they are refused.
    """
    if sample_key is None:
        if "sample" not in adata.obs:
            return pd.Series("all", index=adata.obs_names)
        sample_key = "sample"
    elif sample_key not in adata.obs:
        raise missing_key_error(sample_key, "adata.obs", adata.obs.columns)
    column = adata.obs[sample_key]
    if column.isna().any():
        msg = (f"{int(column.isna().sum())} cells have no value in adata.obs[{sample_key!r}]. Give them a sample, "
               f"or leave them out: adata = adata[adata.obs[{sample_key!r}].notna()].copy().")
        raise TmtInputError(msg)
    return column.astype(str)


def warn_if_cells(adata: AnnData, layer: str | None, how: str) -> None:
    """Warn when observations read as bulk samples detect as few genes as single cells do."""
    detected = median_detected(adata, layer)
    if detected < CELL_DETECTION * adata.n_vars:
        warn(f"each observation {how}, but a median of {detected:,.0f} of {adata.n_vars:,} genes is detected per "
             "observation, as in single cells, not bulk samples: for cells, pass sample_key= naming the obs column "
             "of samples.", stacklevel=4)


def bulk_samples(adata: AnnData) -> pd.Series:
    """Observations as samples (bulk or pseudobulk): each one's name, which must be unique."""
    names = adata.obs_names.astype(str)
    if not names.is_unique:
        repeated = list(names[names.duplicated()].unique()[:5])
        msg = (f"bulk observations are samples, so their names must be unique; repeated: {repeated}. Name each "
               "sample, or call adata.obs_names_make_unique().")
        raise TmtInputError(msg)
    return pd.Series(names, index=adata.obs_names)


def regions_of(adata: AnnData, samples: pd.Series, region_key: str) -> tuple[pd.Series, pd.DataFrame]:
    """Region of every cell, named ``"<sample>:<region>"`` (NaN for cells without a region, which then count
    for their sample only), and per region its ``sample``, ``region`` and ``n_cells`` (in the natural order of
    their names, as the tables of the tools)."""
    if region_key not in adata.obs:
        raise missing_key_error(region_key, "adata.obs", adata.obs.columns)
    region = adata.obs[region_key]
    ids = (samples.astype(str) + ":" + region.astype(str)).where(region.notna())
    has = ids.notna().to_numpy()
    frame = pd.DataFrame({"sample": samples.astype(str).to_numpy()[has], "region": region.astype(str).to_numpy()[has]},
                         index=ids.to_numpy()[has])
    frame = in_natural_order(frame[~frame.index.duplicated()])
    frame["n_cells"] = ids.value_counts().reindex(frame.index).astype(int)
    return ids, frame

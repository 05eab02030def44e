"""Shared helpers for the spatial tools: coordinates in micrometres, label checks, sample iteration."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._utils import TmtInputError, TmtKeyError, TmtLabelError, missing_key_error


def coordinates(adata: AnnData, pixel_size: float | None) -> np.ndarray:
    """``obsm["spatial"]`` in micrometres, checked for presence and finiteness."""
    if "spatial" not in adata.obsm:
        msg = (
            "no cell coordinates: spatial tools need x/y in adata.obsm['spatial'] "
            "(e.g. adata.obsm['spatial'] = adata.obs[['x', 'y']].to_numpy())."
        )
        raise TmtKeyError(msg)
    xy = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        msg = (f"{int(bad.sum())} cells have NaN or infinite coordinates in adata.obsm['spatial']; "
               "drop or fix them first.")
        raise TmtInputError(msg)
    if pixel_size is not None:
        if pixel_size <= 0:
            msg = f"pixel_size must be positive (micrometres per coordinate unit), got {pixel_size}."
            raise TmtInputError(msg)
        xy = xy * pixel_size
    # to a picometre: pixels times pixel_size then equal the same micrometres exactly, so every grid and
    # neighbour search gives identical results in either unit
    return np.round(xy, 6)


def label_column(adata: AnnData, key: str) -> pd.Series:
    if key not in adata.obs:
        hint = (" (run tmt.tl.annotate first, or pass cell_type_key= naming your cell-type column)"
                if key.startswith(_keys.PREFIX) else "")
        err = missing_key_error(key, "adata.obs" + hint, adata.obs.columns)
        raise err
    return adata.obs[key].astype(str)


def check_labels(labels: pd.Series, wanted, what: str) -> list[str]:
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    present = set(labels.unique())
    if not present & set(wanted):
        msg = f"none of the {what} {wanted} occurs in the cell-type column; labels present: {sorted(present)}."
        raise TmtLabelError(msg, what)
    return wanted


def image_groups(adata: AnnData, samples: pd.Series, image_key: str | None) -> pd.Series:
    """Image of every cell as ``"sample"`` (one image per sample) or ``"sample/image"`` with ``image_key``."""
    if image_key is None:
        return samples
    if image_key not in adata.obs:
        raise missing_key_error(image_key, "adata.obs", adata.obs.columns)
    return samples + "/" + adata.obs[image_key].astype(str)

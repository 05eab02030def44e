"""Shared helpers for the spatial tools: coordinates in micrometres, label checks, sample iteration."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._utils import TmtInputError, TmtKeyError, TmtLabelError, missing_key_error, warn

# where other tools and file readers leave coordinates: obs column pairs (segmentation exports, MERSCOPE, CosMx,
# Xenium, HALO) and obsm keys
COORDINATE_PAIRS = (("x", "y"), ("X", "Y"), ("X_centroid", "Y_centroid"), ("x_centroid", "y_centroid"),
                    ("centroid_x", "centroid_y"), ("center_x", "center_y"), ("CenterX_global_px", "CenterY_global_px"),
                    ("X_position", "Y_position"), ("x_location", "y_location"), ("Cell X Position", "Cell Y Position"),
                    ("x_um", "y_um"), ("CellX", "CellY"))
_OBSM_XY = ("X_spatial", "spatial_coords", "xy", "coordinates")


def coordinate_columns(adata: AnnData) -> tuple[str, str] | None:
    """The first pair of numeric ``obs`` columns named like cell coordinates, or ``None``."""
    for pair in COORDINATE_PAIRS:
        if all(c in adata.obs and adata.obs[c].dtype.kind in "if" for c in pair):
            return pair
    return None


def coordinates_elsewhere(adata: AnnData) -> str:
    """How to move coordinates found outside ``obsm["spatial"]`` there (one line of code), or ``""``."""
    pair = coordinate_columns(adata)
    if pair:
        return f"adata.obsm['spatial'] = adata.obs[[{pair[0]!r}, {pair[1]!r}]].to_numpy()"
    for key in _OBSM_XY:
        if key in adata.obsm:
            return f"adata.obsm['spatial'] = adata.obsm[{key!r}][:, :2]"
    return ""


def checked_pixel_size(pixel_size) -> float | None:
    """``pixel_size`` as a positive finite float (micrometres per coordinate unit), or ``None``."""
    if pixel_size is None:
        return None
    try:
        value = float(pixel_size)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        msg = f"pixel_size must be a positive number of micrometres per coordinate unit, got {pixel_size!r}."
        raise TmtInputError(msg)
    return value


def spatial_array(adata: AnnData) -> np.ndarray:
    """``obsm["spatial"]`` as a float array of at least two columns, as the tools and plots read it: an array, a
    sparse matrix or a DataFrame of numbers; missing, text or a single column is refused with the way out."""
    if "spatial" not in adata.obsm:
        found = coordinates_elsewhere(adata)
        msg = ("no cell coordinates: spatial tools need x/y in adata.obsm['spatial'] ("
               + (f"found elsewhere: {found})." if found else
                  "e.g. adata.obsm['spatial'] = adata.obs[['x', 'y']].to_numpy())."))
        raise TmtKeyError(msg)
    value = adata.obsm["spatial"]
    if isinstance(value, pd.DataFrame):
        text = [str(c) for c in value.columns if not pd.api.types.is_numeric_dtype(value[c])]
        if text:
            xy_cols = [c for c in value.columns if c not in text][:2]
            msg = (f"adata.obsm['spatial'] holds non-numeric columns {text}; keep x and y only: "
                   f"adata.obsm['spatial'] = adata.obsm['spatial'][{xy_cols!r}].to_numpy().")
            raise TmtInputError(msg)
    try:
        xy = np.asarray(value.toarray() if hasattr(value, "toarray") else value, dtype=float)
    except (TypeError, ValueError) as e:
        msg = f"adata.obsm['spatial'] must hold numbers (x and y in two columns): {e}."
        raise TmtInputError(msg) from e
    if xy.ndim != 2 or xy.shape[1] < 2:
        msg = f"adata.obsm['spatial'] must hold x and y in two columns, got shape {xy.shape}."
        raise TmtInputError(msg)
    return xy


def coordinates(adata: AnnData, pixel_size: float | None) -> np.ndarray:
    """``obsm["spatial"]`` (:func:`spatial_array`) in micrometres, checked for finiteness."""
    xy = spatial_array(adata)[:, :2]
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        msg = (f"{int(bad.sum())} cells have NaN or infinite coordinates in adata.obsm['spatial']; "
               "drop or fix them first.")
        raise TmtInputError(msg)
    pixel_size = checked_pixel_size(pixel_size)
    if pixel_size is not None:
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


def as_labels(wanted) -> list[str] | None:
    """Labels as :func:`label_column` reads the column, as strings: one label (a string or a number) or any
    collection of them (list, tuple, set, numpy array, pandas Index or Series); ``None`` stays ``None``.

    Integer cell-type codes are then found under the labels 3 and "3" alike.
    """
    if wanted is None:
        return None
    if isinstance(wanted, (str, bytes)) or np.ndim(wanted) == 0:
        return [str(wanted)]
    return [str(w) for w in (wanted.tolist() if hasattr(wanted, "tolist") else wanted)]


def check_labels(labels: pd.Series, wanted, what: str, hint: str = "") -> list[str]:
    """``wanted`` as a list of strings (:func:`as_labels`), refused when empty or when none of it occurs in
    ``labels``; labels that do not occur (a typo beside a right one) are warned about."""
    wanted = as_labels(wanted)
    present = set(labels.unique())
    if not wanted:
        msg = f"{what} is empty: name at least one label of the cell-type column; labels present: {sorted(present)}."
        raise TmtLabelError(msg, what)
    if not present & set(wanted):
        msg = (f"none of the {what} {wanted} occurs in the cell-type column{hint}; labels present: "
               f"{sorted(present)}.")
        raise TmtLabelError(msg, what)
    absent = [w for w in wanted if w not in present]
    if absent:
        warn(f"{what}: {absent} occur nowhere in the cell-type column and count for nothing; labels present: "
             f"{sorted(present)}.")
    return wanted


# obs columns that name images or fields of view in the exports of imaging platforms and their readers
IMAGE_COLUMN = re.compile(r"image|img|fov|field|roi|core|spot|tma|slide|acquisition|file|library|section|scene",
                          re.IGNORECASE)
MAX_FIELDS = 500  # a column of more distinct values per data set names cells, not images
MIN_FIELD_CELLS = 20  # a field of fewer cells has no extent to compare
MAX_SHARED_EXTENT = 0.5  # tiles of one image barely overlap; fields sharing half their extent are separate images


def warn_overlapping_fields(adata: AnnData, samples: pd.Series) -> None:
    """Warn when a sample holds cells of several values of an image-like ``obs`` column whose extents overlap:
    separate images in their own coordinates, whose cells would be taken for neighbours (pass ``image_key``)."""
    xy = spatial_array(adata)[:, :2]
    for column in adata.obs.columns:
        values = adata.obs[column]
        if (str(column).startswith(_keys.PREFIX) or not IMAGE_COLUMN.search(str(column)) or values.dtype.kind == "f"
                or not 1 < values.nunique() <= MAX_FIELDS):
            continue
        hit = [s for s, idx in samples.groupby(samples, observed=True).indices.items()
               if _fields_overlap(xy[idx], values.to_numpy()[idx])]
        if hit:
            warn(f"{len(hit)} sample(s) ({', '.join(map(str, hit[:5]))}) hold cells of several adata.obs[{column!r}] "
                 "values whose coordinates overlap: if they are separate images, pass image_key="
                 f"{column!r}, or their cells are taken for neighbours of each other.", stacklevel=4)
            return


def _fields_overlap(xy: np.ndarray, fields: np.ndarray) -> bool:
    """Whether two fields' extents (2nd to 98th percentile of x and y) share more than ``MAX_SHARED_EXTENT`` of the
    smaller one."""
    boxes = []
    for f in pd.unique(fields):
        pts = xy[fields == f]
        if len(pts) >= MIN_FIELD_CELLS:
            lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
            boxes.append((lo, hi, float(np.prod(hi - lo))))
    for i, (lo1, hi1, a1) in enumerate(boxes):
        for lo2, hi2, a2 in boxes[i + 1:]:
            shared = float(np.prod(np.clip(np.minimum(hi1, hi2) - np.maximum(lo1, lo2), 0, None)))
            if min(a1, a2) > 0 and shared > MAX_SHARED_EXTENT * min(a1, a2):
                return True
    return False


def image_groups(adata: AnnData, samples: pd.Series, image_key: str | None) -> pd.Series:
    """Image of every cell as ``"sample"`` (one image per sample) or ``"sample/image"`` with ``image_key``."""
    if image_key is None:
        return samples
    if image_key not in adata.obs:
        raise missing_key_error(image_key, "adata.obs", adata.obs.columns)
    column = adata.obs[image_key]
    if column.isna().any():  # they would make an image "<sample>/nan" of cells gathered from every field
        msg = (f"{int(column.isna().sum())} cells have no value in adata.obs[{image_key!r}] (image_key). Give them "
               f"their image, or leave them out: adata = adata[adata.obs[{image_key!r}].notna()].copy().")
        raise TmtInputError(msg)
    return samples + "/" + column.astype(str)

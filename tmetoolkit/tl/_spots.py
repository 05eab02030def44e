"""Spot data (Visium): recognised by their array coordinates; the spot graph from squidpy's grid neighbours.

The computation on the graph lives in :mod:`tmetoolkit._core.spatial.spots`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from .._utils import TmtInputError, logger, warn

SPOT_COLUMNS = ("array_row", "array_col")


def is_spot_data(adata: AnnData) -> bool:
    """Visium-like data: array coordinates of a spot grid in ``obs`` (as written by scanpy and squidpy readers)."""
    return all(c in adata.obs for c in SPOT_COLUMNS)


HEX_NEIGHBOURS = 6
VISIUM_SPOT_DIAMETER_UM = 55.0  # 10x Genomics: 55-um spots, 100 um apart centre to centre
MAX_SLIDES = 500  # a column of more distinct values is not one of slides
MAX_SPOT_PITCH_UM = 300.0  # beyond every spot array (Visium 100 um, the original ST arrays 200 um): not micrometres


def spot_graph(xy: np.ndarray, images: pd.Series):
    """Hexagonal neighbour graph of the spots (squidpy grid neighbours), never joining two images; the spots of
    an image too small for a grid (at most six) have no neighbours."""
    import logging

    import scipy.sparse as sp
    import squidpy as sq

    sizes = images.map(images.value_counts())
    gridded = (sizes > HEX_NEIGHBOURS).to_numpy()
    graph = sp.csr_matrix((len(images), len(images)), dtype=np.int8)
    if not gridded.any():
        return graph
    view = AnnData(obs=pd.DataFrame({"image": pd.Categorical(images.to_numpy()[gridded])},
                                    index=images.index[gridded]))
    view.obsm["spatial"] = xy[gridded]
    quiet = logging.getLogger("spatialdata._logging")  # squidpy logs every graph it builds here
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        res = sq.gr.spatial_neighbors(view, coord_type="grid", n_neighs=HEX_NEIGHBOURS, library_key="image",
                                      copy=True)
    finally:
        quiet.setLevel(level)
    conn = res[0]
    idx = np.flatnonzero(gridded)
    sub = ((conn + conn.T) > 0).tocoo()
    return sp.csr_matrix((np.ones(sub.nnz, dtype=np.int8), (idx[sub.row], idx[sub.col])), shape=graph.shape)


def visium_pixel_size(adata: AnnData) -> float | None:
    """Micrometres per coordinate unit of spots read by scanpy or squidpy (``obsm["spatial"]`` in pixels of the
    full-resolution image): the 55-um spot diameter over ``uns["spatial"][library]["scalefactors"]
    ["spot_diameter_fullres"]``, the median over libraries; ``None`` without it."""
    libraries = adata.uns.get("spatial")
    if not isinstance(libraries, Mapping):
        return None
    diameters = [lib.get("scalefactors", {}).get("spot_diameter_fullres") for lib in libraries.values()
                 if isinstance(lib, Mapping)]
    diameters = [float(d) for d in diameters if d is not None and np.isfinite(float(d)) and float(d) > 0]
    return VISIUM_SPOT_DIAMETER_UM / float(np.median(diameters)) if diameters else None


def spot_pixel_size(adata: AnnData, pixel_size: float | None) -> float | None:
    """``pixel_size``, or the one the Visium scale factors in ``uns["spatial"]`` give (logged)."""
    if pixel_size is not None:
        return pixel_size
    found = visium_pixel_size(adata)
    if found is not None:
        logger.info("spots: coordinates in full-resolution pixels of %.4g um (uns['spatial'] scale factors)", found)
    return found


def spot_pitch(xy: np.ndarray, images: pd.Series) -> float:
    """The spots' spacing: the median over images of the median distance to the nearest spot of the same image
    (slides of one AnnData often share coordinates)."""
    from scipy.spatial import cKDTree

    per_image = [float(np.median(cKDTree(xy[idx]).query(xy[idx], k=2)[0][:, 1]))
                 for idx in images.groupby(images, observed=True).indices.values() if len(idx) > 1]
    return float(np.median(per_image)) if per_image else float("nan")


def check_spot_pitch(pitch: float, pixel_size: float | None) -> None:
    """Warn when spots lie further apart than any spot array's, i.e. the coordinates are not micrometres."""
    if pixel_size is None and np.isfinite(pitch) and pitch > MAX_SPOT_PITCH_UM:
        warn(f"neighbouring spots lie {pitch:.4g} coordinate units apart; spot arrays place them 100 um (Visium) or "
             "200 um apart. If obsm['spatial'] holds image pixels, pass pixel_size= (command line: --pixel-size; "
             f"micrometres per pixel, e.g. {VISIUM_SPOT_DIAMETER_UM:g} / spot_diameter_fullres from the Visium scale "
             "factors): margins and tiles depend on it.")


def check_one_array_per_image(adata: AnnData, images: pd.Series) -> None:
    """Refuse spots of several slides taken for one image: their array positions repeat, and the spot graph would
    join spots of different sections."""
    pos = pd.DataFrame({"image": images.to_numpy(), "row": adata.obs["array_row"].to_numpy(),
                        "col": adata.obs["array_col"].to_numpy()})
    repeated = pos.duplicated()
    if not repeated.any():
        return
    where = sorted(pos.loc[repeated, "image"].astype(str).unique())
    labels = [c for c in adata.obs.columns if c not in SPOT_COLUMNS and adata.obs[c].dtype.kind not in "fc"
              and 1 < adata.obs[c].nunique() <= MAX_SLIDES]
    split = [c for c in labels if not pos.assign(slide=adata.obs[c].astype(str).to_numpy()).duplicated().any()]
    hint = (f" They are told apart by {split[:3]}: pass sample_key= or image_key= naming it." if split else
            " Pass sample_key= or image_key= naming the column of slides.")
    msg = (f"{int(repeated.sum())} spots repeat the array position (array_row, array_col) of another spot of the same "
           f"image ({', '.join(where[:5])}): the AnnData holds several slides.{hint}")
    raise TmtInputError(msg)

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
SQUARE_NEIGHBOURS = 4
VISIUM_SPOT_DIAMETER_UM = 55.0  # 10x Genomics: 55-um spots, 100 um apart centre to centre
MAX_SLIDES = 500  # a column of more distinct values is not one of slides
MAX_SPOT_PITCH_UM = 300.0  # beyond every spot array (Visium 100 um, the original ST arrays 200 um): not micrometres


def spot_graph(xy: np.ndarray, images: pd.Series, n_neighs: int = HEX_NEIGHBOURS):
    """Neighbour graph of the spots (squidpy grid neighbours: 6 on Visium's hexagonal array, 4 on Visium HD's
    square bins), never joining two images; the spots of an image too small for a grid (at most ``n_neighs``)
    have no neighbours."""
    import logging

    import scipy.sparse as sp
    import squidpy as sq

    sizes = images.map(images.value_counts())
    gridded = (sizes > n_neighs).to_numpy()
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
        res = sq.gr.spatial_neighbors(view, coord_type="grid", n_neighs=n_neighs, library_key="image", copy=True)
    finally:
        quiet.setLevel(level)
    conn = res[0]
    idx = np.flatnonzero(gridded)
    sub = ((conn + conn.T) > 0).tocoo()
    return sp.csr_matrix((np.ones(sub.nnz, dtype=np.int8), (idx[sub.row], idx[sub.col])), shape=graph.shape)


def _scalefactors(adata: AnnData) -> list[Mapping]:
    libraries = adata.uns.get("spatial")
    if not isinstance(libraries, Mapping):
        return []
    return [lib["scalefactors"] for lib in libraries.values()
            if isinstance(lib, Mapping) and isinstance(lib.get("scalefactors"), Mapping)]


def _positive(values) -> list[float]:
    out = []
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(v) and v > 0:
            out.append(v)
    return out


def visium_pixel_size(adata: AnnData) -> float | None:
    """Micrometres per coordinate unit of spots read by scanpy or squidpy (``obsm["spatial"]`` in pixels of the
    full-resolution image), from ``uns["spatial"][library]["scalefactors"]``: ``microns_per_pixel`` where Space
    Ranger writes it (Visium HD), else the spot's diameter in micrometres (55, or a Visium HD bin's
    ``bin_size_um``) over ``spot_diameter_fullres``; the median over libraries, ``None`` without them."""
    factors = _scalefactors(adata)
    given = _positive(f.get("microns_per_pixel") for f in factors)
    if given:
        return float(np.median(given))
    sizes = []
    for f in factors:
        side = _positive([f.get("bin_size_um", VISIUM_SPOT_DIAMETER_UM)])
        pixels = _positive([f.get("spot_diameter_fullres")])
        if side and pixels:
            sizes.append(side[0] / pixels[0])
    return float(np.median(sizes)) if sizes else None


def hd_bin_size(adata: AnnData) -> float | None:
    """The square bins' side in micrometres when the spots are Visium HD bins (``bin_size_um`` in the scale
    factors), else ``None``."""
    sizes = _positive(f.get("bin_size_um") for f in _scalefactors(adata))
    return float(np.median(sizes)) if sizes else None


def check_hd_bins(adata: AnnData) -> int:
    """The grid's neighbours per spot (4 for Visium HD's square bins, 6 for Visium's hexagonal spots), warning
    when the bins are smaller than Visium's spots."""
    size = hd_bin_size(adata)
    if size is None:
        return HEX_NEIGHBOURS
    if size < 0.8 * VISIUM_SPOT_DIAMETER_UM:
        warn(f"these spots are Visium HD bins of {size:g} um. The spot rules (a tenth of CD8 T-positive spots, the "
             f"malignant programme's mixture) were made for Visium's {VISIUM_SPOT_DIAMETER_UM:g}-um spots, which "
             "hold several cells; bins of a cell's size give lower fractions. Pool the bins into squares of about "
             "50 um, or segment cells from them and run the cell path (cell types and coordinates in micrometres, "
             "without obs['array_row'] and obs['array_col']).")
    return SQUARE_NEIGHBOURS


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

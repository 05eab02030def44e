"""Tumour, margin and stroma of every cell from where the tumour cells are, image by image (micrometres)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..._utils import TmtScaleWarning, warn
from .geometry import MIN_POSITIONS, local_frame, n_positions, tumour_region

MARGIN_CELLS = 4.0  # half-width of the margin in median nearest-neighbour distances, about that many cell diameters
MIN_CLUSTER_SIZE = 10  # parenchyma holding fewer tumour cells is ignored
NN_DISTANCE_UM = (1.5, 30.0)  # plausible mean distance between neighbouring cells in tissue, micrometres
# The spacing tells the unit only where the cells lie packed, as tissue is, about a cell diameter apart; n cells
# scattered over a field lie as far apart as their number allows (median nearest-neighbour distance about
# 0.47 sqrt(area / n) at random), in any unit. Packed cells are told from a scatter by the Clark-Evans ratio R (mean
# nearest-neighbour distance over its value at random: 1 for a scatter, 1.2-1.5 on the five imaging sets of
# ../shared/data), whose standard error with n cells is 0.5227 / sqrt(n) (Clark & Evans 1954, Ecology 35:445).
# Telling R = 1.3 from 1 with 5% error either way needs (2 * 1.645 * 0.5227 / 0.3)^2 = 33 cells: an image with
# fewer cannot show that its spacing is the cells' own, so its spacing does not judge the unit.
MIN_SPACING_CELLS = 33


@dataclass(frozen=True)
class Compartments:
    """Per cell ``compartment`` (``tumor``, ``margin`` or ``stroma``) and signed ``distance`` to the border
    (micrometres, negative inside, NaN without a border); ``table``: one row per image."""

    compartment: np.ndarray
    distance: np.ndarray
    table: pd.DataFrame


def cell_compartments(xy_all: np.ndarray, images: pd.Series, is_tumour: np.ndarray, *,
                      margin_cells: float = MARGIN_CELLS, margin_width: float | None = None,
                      min_cluster_size: int = MIN_CLUSTER_SIZE) -> Compartments:
    """Compartments of every cell, each image (``images``: the image of every cell) on its own.

    The region is :func:`.geometry.tumour_region`; the margin is the band of ``margin_width`` micrometres (default
    ``margin_cells`` times the image's median nearest-neighbour distance) on each side of its border.
    """
    n = len(xy_all)
    comp = np.full(n, "stroma", dtype=object)
    dist = np.full(n, np.nan)
    rows = {}
    for s, idx in images.groupby(images, observed=True).indices.items():
        xy = local_frame(xy_all[idx])
        is_t = is_tumour[idx]
        row = {"n_cells": len(idx), "n_tumor_cells": int(is_t.sum())}
        if n_positions(xy) < MIN_POSITIONS:
            rows[s] = {**row, "status": "too few cells" if len(idx) < MIN_POSITIONS else "too few cell positions"}
            continue
        reg = tumour_region(xy, is_t, margin_width_nn=margin_cells, margin_width=margin_width,
                            min_cluster_size=min_cluster_size)
        width = float(margin_width) if margin_width is not None else margin_cells * reg.nn
        area_in = float(reg.area[reg.inside].sum())
        row.update(median_nn_distance_um=reg.nn, margin_width_um=width, area_mm2=float(reg.area.sum()),
                   area_tumor_mm2=area_in, area_stroma_mm2=float(reg.area.sum()) - area_in,
                   stroma_area_fraction=1 - area_in / max(float(reg.area.sum()), 1e-12),
                   pockets_filled=reg.n_pockets_filled, status=reg.status)
        if reg.status == "all tumour":
            comp[idx] = "tumor"
        elif reg.status == "ok":
            d = reg.distance
            comp[idx] = np.where(d < -width, "tumor", np.where(d <= width, "margin", "stroma"))
            dist[idx] = d
            border = is_t & (np.abs(d) <= reg.nn)
            row["border_tumor_fraction"] = float(border.sum() / max(is_t.sum(), 1))
        rows[s] = row
    return Compartments(comp, dist, pd.DataFrame.from_dict(rows, orient="index"))


def implausible_spacing(table: pd.DataFrame) -> float | None:
    """The cells' median spacing (median over images of ``median_nn_distance_um``, among those of at least
    ``MIN_SPACING_CELLS`` cells) when it lies outside ``NN_DISTANCE_UM``, i.e. the coordinates are not micrometres;
    else ``None`` (also when no image has cells enough to judge)."""
    if "median_nn_distance_um" not in table:
        return None
    spacing = table["median_nn_distance_um"][table["n_cells"] >= MIN_SPACING_CELLS].dropna()
    if spacing.empty:
        return None
    nn = float(spacing.median())
    lo, hi = NN_DISTANCE_UM
    return None if lo <= nn <= hi else nn


def check_scale(table: pd.DataFrame, pixel_size: float | None) -> None:
    """Warn when the cells' spacing says the coordinates are not micrometres: densities per mm2 and margins in
    micrometres would then be off by the square of the pixel size."""
    nn = None if pixel_size is not None else implausible_spacing(table)
    if nn is not None:
        lo, hi = NN_DISTANCE_UM
        warn(f"neighbouring cells lie {nn:.3g} coordinate units apart (median over images); in tissue that is "
             f"{lo:g}-{hi:g} micrometres. If obsm['spatial'] holds pixels or another unit, pass pixel_size= "
             "(command line: --pixel-size; micrometres per unit, e.g. 0.12 for CosMx global pixels, 0.2125 for "
             "Xenium image pixels): densities per mm2 and margin widths depend on it.", category=TmtScaleWarning)

"""The tumour region of one image, its tissue areas and neighbour counts (numpy in, small results out).

Everything here works in micrometres on one image at a time; :func:`tmetoolkit.tl.compartments` and
:func:`tmetoolkit.tl.immune_phenotype` are thin AnnData runners around it.

Scales are the tissue's own: ``nn`` is the median distance from a cell to its nearest neighbour (about one cell
diameter in packed tissue), and every length below is a multiple of it, so the same code serves CODEX pixels,
Xenium micrometres and simulated fields alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

GRID_PER_NN = 2.0  # grid squares per nearest-neighbour distance (a square is half a cell across)
SMOOTH_NN = 1.5  # Gaussian sigma of the tumour-fraction map, in nearest-neighbour distances
TISSUE_NN = 2.0  # gaps narrower than twice this many nearest-neighbour distances are tissue, not background
MIN_POSITIONS = 3  # an image with fewer distinct cell positions has no measurable tissue


@dataclass
class Region:
    """The tumour region of one image.

    ``inside`` and ``distance`` are per cell (distance to the border in micrometres, negative inside; NaN when the
    image has no border); ``area`` is each cell's share of the tissue area in mm^2 (grid squares of tissue go to
    their nearest cell, so the shares add up to the tissue area without double counts); ``status`` is ``"ok"``,
    ``"no tumour region"`` or ``"all tumour"``.
    """

    inside: np.ndarray
    distance: np.ndarray
    area: np.ndarray
    nn: float
    n_pockets_filled: int
    status: str


def local_frame(xy: np.ndarray) -> np.ndarray:
    """One image's coordinates (micrometres) from its own lower-left corner, to a picometre.

    The grid of :func:`tissue_grid` starts a whole number of squares below the lowest cell, so that cell lies on
    a square's edge; in a global frame (slides at 1e6 micrometres, as whole-slide exports give them) float
    rounding put it in one square or the next depending on where the slide lay, and moved border distances by up
    to 22 micrometres. From the image's own corner, the same cells give the same numbers wherever the image lies.
    """
    return np.round(xy - xy.min(axis=0), 6) if len(xy) else xy


def n_positions(xy: np.ndarray) -> int:
    """Distinct positions among the cells (coordinates rounded to a coarse grid put several cells on one)."""
    return len(np.unique(xy, axis=0))


def median_nn(xy: np.ndarray) -> float:
    """Median distance from a cell to its nearest neighbour at another position (micrometres); cells that share a
    position (coordinates rounded to a coarse grid) say nothing about the spacing. NaN with one position only."""
    xy = np.unique(xy, axis=0)
    if len(xy) < 2:
        return float("nan")
    d = cKDTree(xy).query(xy, k=2)[0][:, 1]
    return float(np.median(d))


def _grid(xy: np.ndarray, g: float, pad: int):
    origin = xy.min(axis=0) - pad * g
    shape = tuple(np.ceil((xy.max(axis=0) - origin) / g).astype(int) + pad + 1)
    ij = np.floor((xy - origin) / g).astype(np.int64)
    return origin, shape, ij


def _hist(ij: np.ndarray, shape, weights=None) -> np.ndarray:
    flat = np.ravel_multi_index((ij[:, 0], ij[:, 1]), shape)
    return np.bincount(flat, weights=weights, minlength=shape[0] * shape[1]).reshape(shape).astype(float)


def _grid_coords(xy: np.ndarray, origin: np.ndarray, g: float) -> np.ndarray:
    """Positions in units of grid squares, square centres at whole numbers (``ndimage.map_coordinates``' frame)."""
    return (xy - origin) / g - 0.5


def _splat(xy: np.ndarray, origin: np.ndarray, g: float, shape) -> np.ndarray:
    """Cell counts on the grid, each cell shared among the four nearest square centres by closeness (bilinear,
    "cloud in cell"), so that the density moves smoothly with a cell instead of jumping a square when the cell
    crosses a square's edge. Counted into whole squares, the same image mirrored or rotated (which moves every
    cell relative to the grid) changed the side of the border of up to 3.0% of its cells (scimap's CyCIF image
    turned by 30 degrees; 0.6-1.0% on average over eight images and four turns); shared, at most 1.1%."""
    u = _grid_coords(xy, origin, g)
    i0 = np.floor(u).astype(np.int64)
    f = u - i0
    out = np.zeros(shape[0] * shape[1])
    for di in (0, 1):
        for dj in (0, 1):
            w = np.abs(1 - di - f[:, 0]) * np.abs(1 - dj - f[:, 1])
            i = np.clip(i0[:, 0] + di, 0, shape[0] - 1)
            j = np.clip(i0[:, 1] + dj, 0, shape[1] - 1)
            out += np.bincount(i * shape[1] + j, weights=w, minlength=out.size)
    return out.reshape(shape)


def tissue_grid(xy: np.ndarray, nn: float | None = None):
    """Grid of half a cell over one image, its tissue mask and each cell's share of the tissue area (mm^2).

    The tissue is every point within ``TISSUE_NN`` nearest-neighbour distances of a cell, closed by the same
    radius (gaps between cells are tissue, the space around the section is not). Each tissue square goes to its
    nearest cell (a discrete Voronoi tessellation clipped to the tissue), so the shares of any partition of the
    cells add up to the tissue area: no square is counted twice.
    """
    nn = median_nn(xy) if nn is None else nn
    g = nn / GRID_PER_NN
    r_tissue = TISSUE_NN * nn
    pad = int(np.ceil(r_tissue / g)) + 2
    origin, shape, ij = _grid(xy, g, pad)
    occupied = _hist(ij, shape) > 0
    near = ndimage.distance_transform_edt(~occupied) * g <= r_tissue
    tissue = ndimage.distance_transform_edt(near) * g > r_tissue - g  # closing: dilation then erosion
    tissue |= occupied
    sq = np.argwhere(tissue)
    _, owner = cKDTree(xy).query(origin + (sq + 0.5) * g)
    area = np.bincount(owner, minlength=len(xy)) * (g / 1000.0) ** 2
    return origin, shape, ij, g, tissue, area


def tumour_region(xy: np.ndarray, is_tumour: np.ndarray, *, margin_width_nn: float = 4.0,
                  margin_width: float | None = None, min_cluster_size: int = 10, smooth_nn: float = SMOOTH_NN,
                  packing_fraction: float = 0.5, closing_nn: float = 0.0) -> Region:
    """Tumour region of one image, drawn as a pathologist would: where tumour cells make up the tissue.

    1. The tissue and each cell's area share come from :func:`tissue_grid`.
    2. On a grid of half a cell, the density of tumour cells (each shared among its four nearest grid points,
       :func:`_splat`) is smoothed with a Gaussian of ``SMOOTH_NN`` (1.5) cell spacings; a point is tumour
       parenchyma where it reaches half the median smoothed density at the tumour cells themselves, i.e. half the
       tumour's own packing (midway between a nest and a gap of the same width). The density is averaged over
       tissue only, so it does not fall at the edge of the field or the section: in fields that tumour fills,
       15-18% of its cells were margin, most of them along the frame (now 2-4%). Other cells play no part:
       immune cells infiltrating the tumour, or the effector cells being measured, cannot shrink it. Parenchyma
       holding fewer than ``min_cluster_size`` tumour cells is dropped.
    3. Pockets: an island of non-tumour tissue enclosed by parenchyma whose every point lies within the margin
       width of the parenchyma (a pocket that the margin would swallow anyway) is parenchyma, as a pathologist
       draws a tumour nest around its intra-epithelial immune pockets. Wider enclosed areas stay stroma.
    4. Each cell's signed distance to the border comes from Euclidean distance transforms of the grid (negative
       inside), interpolated at the cell; the border runs between parenchyma and non-tumour *tissue* only, so a
       tumour that reaches the edge of the image has no border there.

    ``smooth_nn``, ``packing_fraction`` and ``closing_nn`` (a morphological closing of the parenchyma by that many
    cell spacings before step 3, off by default) exist for ``benchmarks/bench_spatial.py --ceiling``, which varies
    them (with other rule families) to show that no setting, even chosen with the labels, matches inForm's tissue
    categories and a pathologist's low-power regions with a margin.
    """
    n = len(xy)
    nn = median_nn(xy)
    origin, shape, ij, g, tissue, area = tissue_grid(xy, nn)
    width = margin_width if margin_width is not None else margin_width_nn * nn
    sigma = smooth_nn * nn / g
    # normalised convolution: at the edge of the field the Gaussian's other half lies on no tissue
    cover = ndimage.gaussian_filter(tissue.astype(float), sigma)
    t = ndimage.gaussian_filter(_splat(xy[is_tumour], origin, g, shape), sigma) / np.maximum(cover, 1e-3)
    at_tumour = ndimage.map_coordinates(t, _grid_coords(xy[is_tumour], origin, g).T, order=1, mode="nearest")
    ref = np.median(at_tumour) if is_tumour.any() else np.inf
    inside = tissue & (t >= packing_fraction * ref)
    lab, n_lab = ndimage.label(inside)
    if n_lab:
        cell_lab = lab[ij[:, 0], ij[:, 1]]
        n_t = np.bincount(cell_lab[is_tumour], minlength=n_lab + 1)
        small = np.flatnonzero(n_t < min_cluster_size)
        inside &= ~np.isin(lab, small[small > 0])
    if closing_nn > 0 and inside.any():
        r = closing_nn * nn
        grown = ndimage.distance_transform_edt(~inside) * g <= r
        inside |= tissue & (ndimage.distance_transform_edt(grown) * g > r)
    # pockets: enclosed non-parenchyma within the margin width of the parenchyma
    holes, n_holes = ndimage.label(~inside)
    filled = 0
    if n_holes and inside.any():
        open_ids = np.unique(np.r_[holes[0], holes[-1], holes[:, 0], holes[:, -1]])
        depth = ndimage.distance_transform_edt(~inside) * g
        deepest = ndimage.maximum(depth, holes, index=np.arange(1, n_holes + 1))
        fill = np.flatnonzero(np.asarray(deepest) <= width) + 1
        fill = fill[~np.isin(fill, open_ids)]
        if fill.size:
            inside |= np.isin(holes, fill)
            filled = int(fill.size)
    stroma = tissue & ~inside
    dist = np.full(n, np.nan)
    if not inside.any():
        cell_in = np.zeros(n, bool)
        status = "no tumour region"
    elif not stroma.any():
        cell_in = np.ones(n, bool)
        status = "all tumour"
    else:
        d_in = ndimage.distance_transform_edt(~stroma) * g  # inside: distance to non-tumour tissue
        d_out = ndimage.distance_transform_edt(~inside) * g
        sd = np.where(inside, -(d_in - g / 2), d_out - g / 2)
        dist = ndimage.map_coordinates(sd, _grid_coords(xy, origin, g).T, order=1, mode="nearest")
        cell_in = dist < 0
        status = "ok"
    return Region(inside=cell_in, distance=dist, area=area, nn=nn, n_pockets_filled=filled, status=status)


def contact_counts(xy: np.ndarray, is_tumour: np.ndarray, is_effector: np.ndarray, radius: float) -> dict:
    """Per-cell neighbour counts within ``radius`` used by the effector measures (additive over any cell group).

    ``tum`` tumour neighbours, ``nontum`` non-tumour neighbours (excluding the cell itself) and ``eff`` effector
    neighbours (excluding itself), for every cell; only non-tumour cells are used downstream.
    """
    n = len(xy)
    out = {"tum": np.zeros(n), "nontum": np.zeros(n), "eff": np.zeros(n)}
    other = ~is_tumour
    if not other.any():
        return out
    q = xy[other]
    if is_tumour.any():
        out["tum"][other] = cKDTree(xy[is_tumour]).query_ball_point(q, radius, return_length=True)
    out["nontum"][other] = cKDTree(q).query_ball_point(q, radius, return_length=True) - 1
    if is_effector.any():
        eff_here = cKDTree(xy[is_effector]).query_ball_point(q, radius, return_length=True)
        out["eff"][other] = eff_here - is_effector[other]
    return out

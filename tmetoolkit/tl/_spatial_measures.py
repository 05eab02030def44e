"""Pure spatial cores (numpy in, small results out): tumour region, tissue areas and where effector cells sit.

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
from scipy.stats import poisson

GRID_PER_NN = 2.0  # grid squares per nearest-neighbour distance (a square is half a cell across)
SMOOTH_NN = 1.5  # Gaussian sigma of the tumour-fraction map, in nearest-neighbour distances
TISSUE_NN = 2.0  # gaps narrower than twice this many nearest-neighbour distances are tissue, not background
CONTACT_NN = 1.5  # two cells are in contact when their centres lie within 1.5 nearest-neighbour distances
MIN_EXPECTED = 5.0  # Cochran: a count is compared with its chance expectation when that is at least 5


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


def median_nn(xy: np.ndarray) -> float:
    """Median distance from a cell to its nearest neighbour (micrometres)."""
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
    2. On a grid of half a cell, the density of tumour cells is smoothed with a Gaussian of ``SMOOTH_NN`` (1.5)
       cell spacings; a point is tumour parenchyma where it reaches half the median smoothed density at the
       tumour cells themselves, i.e. half the tumour's own packing (midway between a nest and a gap of the same
       width). Other cells play no part: immune cells infiltrating the tumour, or the effector cells being
       measured, cannot shrink it. Parenchyma holding fewer than ``min_cluster_size`` tumour cells is dropped.
    3. Pockets: an island of non-tumour tissue enclosed by parenchyma whose every point lies within the margin
       width of the parenchyma (a pocket that the margin would swallow anyway) is parenchyma, as a pathologist
       draws a tumour nest around its intra-epithelial immune pockets. Wider enclosed areas stay stroma.
    4. Each cell's signed distance to the border comes from Euclidean distance transforms of the grid (negative
       inside), interpolated at the cell; the border runs between parenchyma and non-tumour *tissue* only, so a
       tumour that reaches the edge of the image has no border there.

    ``smooth_nn``, ``packing_fraction`` and ``closing_nn`` (a morphological closing of the parenchyma by that many
    cell spacings before step 3, off by default) exist for ``benchmarks/bench_spatial.py --ceiling``, which varies
    them to show that no setting matches both inForm's tissue categories and a pathologist's low-power regions.
    """
    n = len(xy)
    nn = median_nn(xy)
    origin, shape, ij, g, tissue, area = tissue_grid(xy, nn)
    width = margin_width if margin_width is not None else margin_width_nn * nn
    sigma = smooth_nn * nn / g
    t = ndimage.gaussian_filter(_hist(ij[is_tumour], shape), sigma)
    ref = np.median(t[ij[is_tumour, 0], ij[is_tumour, 1]]) if is_tumour.any() else np.inf
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
        coords = ((xy - origin) / g - 0.5).T
        dist = ndimage.map_coordinates(sd, coords, order=1, mode="nearest")
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


# ---------------------------------------------------------------------------------------------------------------
# where the effector cells sit: additive per-cell columns, features per group, the call

def cell_columns(inside: np.ndarray, core: np.ndarray, area: np.ndarray, is_tumour: np.ndarray, is_effector: np.ndarray,
                 counts: dict) -> dict[str, np.ndarray]:
    """Per-cell columns whose sums over any group of cells (image, sample, tile, region) give its features.

    ``cand`` are the cells an effector could be under the null model (the non-tumour cells: effector labels
    shuffled at random among them, tumour cells kept in place).
    """
    cand = ~is_tumour
    eff = is_effector & cand
    contact = counts["tum"] > 0
    f = np.asarray
    return {
        "n_cells": np.ones(len(area)), "n_tumor_cells": f(is_tumour, float), "n_effector": f(eff, float),
        "n_candidates": f(cand, float), "area": area, "area_in": area * inside,
        "eff_in": f(eff & inside, float), "cand_in": f(cand & inside, float), "area_core": area * core,
        "eff_core": f(eff & core, float), "cand_core": f(cand & core, float),
        "cells_in": f(inside, float),
        "eff_contact": f(eff & contact, float), "cand_contact": f(cand & contact, float),
        "et_pairs": counts["tum"] * eff, "ee_pairs2": counts["eff"] * eff,
        "cand_tum": counts["tum"] * cand, "cand_pairs2": counts["nontum"] * cand,
    }


def _ratio(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def effector_features(s) -> dict[str, np.ndarray]:
    """Features of groups from the summed :func:`cell_columns` (``s``: mapping of arrays, one value per group).

    Each measure is reported with its expectation under the null model (the same cells, effector labels shuffled
    at random among the non-tumour cells of the group) and as observed / expected, so 1 means "as mixed with the
    tumour as chance placement" and 0 "never in the tumour":

    ``parenchyma_share``
        Effector cells inside the tumour region (parenchyma, pockets included) among all effector cells.
    ``core_share``
        Effector cells in the tumour core, the parenchyma beyond the inner margin (Galon's "centre of the tumour"
        as against the invasive margin), among all effector cells. ``infiltration_vs_null`` is its ratio to the
        null wherever the null expects at least ``MIN_EXPECTED`` = 5 effector cells in the core (Cochran's rule
        for comparing a count with its expectation), else that of ``parenchyma_share`` (small nests are all
        margin) when it expects or holds at least 5 there, else NaN (a sliver of tumour or a handful of
        effector cells: the group is not assessable).
        ``infiltration_p_below_chance`` is the one-sided Poisson probability of so few effector cells
        there under the null; it lowers the confidence of excluded calls. The core, not the whole parenchyma,
        decides because effector cells held at the border line both sides of it: an excluded tumour still has them
        in its inner margin.
    ``contact_share``
        Effector cells with a tumour cell within the contact distance (``CONTACT_NN`` cell spacings).
    ``mixing_score``
        Keren et al. 2018 (Cell 174:1373): effector-tumour contacts / effector-effector contacts, same distance.
    """
    n, N = np.asarray(s["n_effector"], float), np.asarray(s["n_candidates"], float)
    area, area_in = np.asarray(s["area"], float), np.asarray(s["area_in"], float)
    area_out = area - area_in
    out = {"area_mm2": area, "area_tumor_mm2": area_in, "area_stroma_mm2": area_out,
           "stroma_area_fraction": _ratio(area_out, area)}
    out["effector_per_mm2"] = _ratio(n, area)
    out["rho_tumor"] = _ratio(s["eff_in"], area_in)
    out["rho_stroma"] = _ratio(n - s["eff_in"], area_out)
    tot = np.nan_to_num(out["rho_tumor"]) + np.nan_to_num(out["rho_stroma"])
    out["infiltration_ratio"] = np.where(np.isfinite(out["rho_tumor"]), _ratio(out["rho_tumor"], tot), np.nan)
    out["parenchyma_share"] = _ratio(s["eff_in"], n)
    out["parenchyma_share_null"] = _ratio(s["cand_in"], N)
    out["contact_share"] = _ratio(s["eff_contact"], n)
    out["contact_share_null"] = _ratio(s["cand_contact"], N)
    ee = np.asarray(s["ee_pairs2"], float) / 2
    out["mixing_score"] = np.where(ee > 0, _ratio(s["et_pairs"], ee), np.nan)
    e_et = _ratio(n, N) * s["cand_tum"]
    e_ee = _ratio(n * (n - 1), N * (N - 1)) * np.asarray(s["cand_pairs2"], float) / 2
    out["mixing_score_null"] = np.where(e_ee > 0, _ratio(e_et, e_ee), np.nan)
    out["core_share"] = _ratio(s["eff_core"], n)
    out["core_share_null"] = _ratio(s["cand_core"], N)
    for m in ("parenchyma_share", "core_share", "contact_share", "mixing_score"):
        out[f"{m}_vs_null"] = _ratio(out[m], out[f"{m}_null"])
    has_core = n * np.nan_to_num(out["core_share_null"]) >= MIN_EXPECTED
    has_par = np.maximum(n * np.nan_to_num(out["parenchyma_share_null"]), s["eff_in"]) >= MIN_EXPECTED
    out["infiltration_vs_null"] = np.where(has_core, out["core_share_vs_null"],
                                           np.where(has_par, out["parenchyma_share_vs_null"], np.nan))
    k = np.where(has_core, np.asarray(s["eff_core"], float), np.asarray(s["eff_in"], float))
    expected = n * np.where(has_core, out["core_share_null"], out["parenchyma_share_null"])
    out["infiltration_expected"] = expected
    out["infiltration_p_below_chance"] = np.where(expected > 0, poisson.cdf(k, np.where(expected > 0, expected, 1)),
                                                  np.nan)
    return out


MEASURES = ("infiltration_vs_null", "contact_share_vs_null", "mixing_score_vs_null")


def classify(f: dict, *, min_density: float, null_ratio: float = 0.5, min_effectors: int = 16,
             min_stroma_fraction: float = 0.1, min_compartment_fraction: float = 0.1):
    """Inflamed / excluded / desert from the features of :func:`effector_features` (arrays, one per group).

    - **desert**: the effector density stays below ``min_density`` (cells/mm^2) over the tissue and in each
      compartment that covers at least ``min_compartment_fraction`` of it (a sliver's density is noise).
    - otherwise the call follows ``infiltration_vs_null``, where the effector cells are relative to the null
      model: **inflamed** at ``null_ratio`` (0.5) or more, **excluded** below. 0.5 is the midpoint between
      complete exclusion (ratio 0: no effector cell in the tumour) and random placement among the non-tumour
      cells (ratio 1, the null model), so neither hypothesis is favoured. Contact share and mixing score vote
      with the same cut; they set the confidence (they are local to the border and so see effector cells that
      line the tumour edge as half-mixed, which is why they do not decide).
    - where the stroma covers less than ``min_stroma_fraction`` (a tenth) of the tissue, the field cannot show
      exclusion: its stroma is septa too thin to hold T cells apart from the tumour, so effector cells held in
      them still touch tumour cells and sit inside the drawn region. Such a field is called inflamed only when
      every measure says so; any excluded vote makes it ``not assessable`` (``exclusion_assessable`` False,
      with the reason), never excluded. The tenth is derived from a null model, not fitted to labels
      (``benchmarks/bench_spatial.py --floor 20``): on :func:`tmetoolkit.datasets.simulate_fields`, 20 excluded
      fields (CD8 T cells only in the stroma) per planted stroma share of 1-20%, called without the floor, are
      called excluded in 0% of the fields whose measured stroma share is below 0.02, 4% at 0.02-0.04, 27% at
      0.04-0.06, 64% at 0.06-0.08 and 82% at 0.08-0.10, then in 100% of every bin from 0.10 up (73 fields);
      inflamed fields are called inflamed at every share. Below a tenth, then, an excluded field cannot be told
      from an inflamed one at the 95% the issue asks of the calls.

    Returns ``(phenotype, confidence, n_agree, n_votes, exclusion_assessable)``. Confidence is the share of the
    measures that agree with the call times ``min(1, n_effector / min_effectors)``: a share estimated from
    ``min_effectors`` = 16 cells has a 95% binomial interval of at most +-0.25 (1.96 * sqrt(0.25 / 16)), half the
    distance between the 0.5 decision ratio and either hypothesis; fewer cells give a proportionally lower
    confidence. Excluded calls are further multiplied by ``1 - infiltration_p_below_chance``: few effector
    cells in a small tumour may be bad luck. Deserts get ``1 - exp(-2 |log(density / min_density)|)``, their
    distance from the threshold.
    """
    dens = np.nan_to_num(f["effector_per_mm2"])
    stroma_frac = np.nan_to_num(f["stroma_area_fraction"])
    for comp, frac in (("rho_tumor", 1 - stroma_frac), ("rho_stroma", stroma_frac)):
        dens = np.maximum(dens, np.where(frac >= min_compartment_fraction, np.nan_to_num(f[comp]), 0))
    votes = np.vstack([np.asarray(f[m], float) for m in MEASURES])
    n_votes = np.isfinite(votes).sum(axis=0)
    n_inf = (votes >= null_ratio).sum(axis=0)
    n_exc = (votes < null_ratio).sum(axis=0)
    desert = dens < min_density
    main = votes[0]
    inflamed = ~desert & (main >= null_ratio)
    exclusion_assessable = stroma_frac >= min_stroma_fraction
    label = np.where(desert, "desert", np.where(inflamed, "inflamed", "excluded"))
    no_votes = ~desert & ~np.isfinite(main)
    # too little stroma: an excluded vote by any measure cannot be told from effector cells in thin septa
    unsure = ~exclusion_assessable & ~desert & (n_exc > 0)
    label = np.where(no_votes | unsure, "not assessable", label)
    n_agree = np.where(label == "inflamed", n_inf, np.where(label == "excluded", n_exc, n_votes))
    n_eff = np.asarray(f["n_effector"], float)
    conf = _ratio(n_agree, n_votes) * np.minimum(1.0, n_eff / min_effectors)
    p_chance = np.nan_to_num(np.asarray(f["infiltration_p_below_chance"], float), nan=1.0)
    conf = np.where(label == "excluded", conf * (1 - p_chance), conf)
    eps = 1e-9
    conf = np.where(desert, 1 - np.exp(-2 * np.abs(np.log((dens + eps) / min_density))), conf)
    conf = np.where(label == "not assessable", np.nan, conf)
    return label, conf, n_agree, n_votes, exclusion_assessable

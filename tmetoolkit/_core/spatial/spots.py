"""Spot data (Visium): the tumour region on the spot graph, margins as rings, effector-positive spots.

A spot mixes several cells, so there are no cell types to count. The tumour region is the tumour spots in
connected groups of at least ``min_spots``, smoothed by a majority vote over each spot and its six neighbours.
Rings on the hexagonal spot graph give each spot its distance to the border: ring 1 on either side is the border
itself. Effector (CD8 T) spots are those whose effector score stands out of their own slide's background
(:func:`tmetoolkit._core.scoring.mixture.mixture_threshold`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from ..._utils import logger, warn
from ..scoring.mixture import mixture_threshold

# A spot holds the malignant programme when it carries it at least twice as high as the spots' background (log 2
# in mean_ctrl units, which are natural-log expression differences). Ambient RNA and spot swapping put every gene
# of the section into every spot (SpotClean: more than 30% of a Visium spot's UMIs come from elsewhere; Ni et al.,
# Nat Commun 13:2971 (2022)), so spots beside a tumour form a population of their own, slightly above the rest:
# on simulated sections without malignant cells (ambient 1%, spill-over 3%) it sits 0.19-0.23 above them, where a
# tumour sits 1.8-2.5 above the stroma.
MIN_PROGRAMME_GAP = float(np.log(2))


def _rings(graph, sources: np.ndarray) -> np.ndarray:
    """Graph distance (in rings) of every spot to the nearest source spot; inf when unreachable."""
    if not sources.any():
        return np.full(graph.shape[0], np.inf)
    return dijkstra(graph, directed=False, indices=np.flatnonzero(sources), unweighted=True, min_only=True)


def spot_region(graph, is_tumour: np.ndarray, *, min_spots: int) -> np.ndarray:
    """Tumour region: tumour spots in connected groups of >= ``min_spots``, then a majority vote with neighbours."""
    keep = np.zeros(len(is_tumour), dtype=bool)
    idx = np.flatnonzero(is_tumour)
    if idx.size:
        sub = graph[idx][:, idx]
        _, comp = connected_components(sub, directed=False)
        sizes = np.bincount(comp)
        keep[idx[sizes[comp] >= min_spots]] = True
    votes = graph @ keep.astype(float) + keep
    n = np.asarray(graph.sum(axis=1)).ravel() + 1
    return votes >= 0.5 * n


def spot_compartments(graph, xy: np.ndarray, images: pd.Series, is_tumour: np.ndarray, *, margin_rings: int,
                      min_spots: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(compartment, signed distance in micrometres, per-image table)`` for every spot of the spot ``graph``
    (symmetric adjacency, never joining two images)."""
    inside = spot_region(graph, is_tumour, min_spots=min_spots)
    ring_in = _rings(graph, ~inside)  # for inside spots: rings to the nearest outside spot
    ring_out = _rings(graph, inside)
    comp = np.full(len(xy), "stroma", dtype=object)
    dist = np.full(len(xy), np.nan)
    rows = {}
    for im, idx in images.groupby(images, observed=True).indices.items():
        pitch = float(np.median(cKDTree(xy[idx]).query(xy[idx], k=2)[0][:, 1])) if len(idx) > 1 else np.nan
        ins = inside[idx]
        row = {"n_spots": len(idx), "n_tumor_spots": int(is_tumour[idx].sum()), "spot_pitch_um": pitch,
               "margin_width_um": margin_rings * pitch}
        if not ins.any():
            row["status"] = "no tumour region"
        elif ins.all():
            row["status"] = "all tumour"
            comp[idx] = "tumor"
        else:
            r = np.where(ins, ring_in[idx], ring_out[idx])
            finite = np.isfinite(r)
            d = np.where(ins, -(r - 0.5), r - 0.5) * pitch
            comp[idx] = np.where(~finite, np.where(ins, "tumor", "stroma"),
                                 np.where(r <= margin_rings, "margin", np.where(ins, "tumor", "stroma")))
            dist[idx] = np.where(finite, d, np.nan)
            row["status"] = "ok"
        rows[im] = row
    return comp, dist, rows


# Effector spots are found image by image: depth, ambient RNA and spot swapping set each slide's background. Fitted
# on the spots of six simulated slides at once (to_spots, 5 seeds), the crossing landed in the tail of the
# negative spots of the desert slides (8.6% of their spots without a CD8 T cell passed it, against a desert cut of
# 10%): 20 of 30 slides called as planted (desert 4 of 10), and a slide's call changed with the other slides in the
# file; fitted per slide, 28 of 30 (desert 10 of 10), the same as each slide alone.
MIN_FIT_SPOTS = 10  # an image with fewer finite scores has no effector spots (it is too small to be assessed)


def effector_spots(scores: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Spots whose effector score is positive by :func:`mixture_threshold` fitted on their own image's spots, and
    the threshold of each image (NaN for an image of fewer than ``MIN_FIT_SPOTS`` scored spots)."""
    v = np.asarray(scores, dtype=float)
    images = np.asarray(images)
    if np.isfinite(v).sum() < 3:
        warn("no effector score could be computed for the spots; every spot counts as effector-negative.")
        return np.zeros(len(v), dtype=bool), {str(im): np.nan for im in pd.unique(images)}
    positive = np.zeros(len(v), dtype=bool)
    thresholds = {}
    for im in pd.unique(images):
        idx = np.flatnonzero(images == im)
        x = v[idx]
        thr = mixture_threshold(x) if np.isfinite(x).sum() >= MIN_FIT_SPOTS else np.nan
        positive[idx] = np.nan_to_num(x, nan=-np.inf) > thr if np.isfinite(thr) else False
        thresholds[str(im)] = float(thr)
        logger.info("effector spots of %s: score above %.3f (%d of %d spots)", im, thr, int(positive[idx].sum()),
                    idx.size)
    return positive, thresholds

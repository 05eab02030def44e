"""Where the effector cells sit, against a null model: additive per-cell columns and the features of any group.

The null model relabels the same number of effector cells at random among the non-tumour cells of the group
(tumour cells kept in place); every measure is reported with its expectation under it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import poisson

CONTACT_NN = 1.5  # two cells are in contact when their centres lie within 1.5 nearest-neighbour distances
MIN_EXPECTED = 5.0  # Cochran: a count is compared with its chance expectation when that is at least 5


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


def ratio(a, b):
    """a / b where b > 0, else NaN (elementwise)."""
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
           "stroma_area_fraction": ratio(area_out, area)}
    out["effector_per_mm2"] = ratio(n, area)
    out["rho_tumor"] = ratio(s["eff_in"], area_in)
    out["rho_stroma"] = ratio(n - s["eff_in"], area_out)
    tot = np.nan_to_num(out["rho_tumor"]) + np.nan_to_num(out["rho_stroma"])
    out["infiltration_ratio"] = np.where(np.isfinite(out["rho_tumor"]), ratio(out["rho_tumor"], tot), np.nan)
    out["parenchyma_share"] = ratio(s["eff_in"], n)
    out["parenchyma_share_null"] = ratio(s["cand_in"], N)
    out["contact_share"] = ratio(s["eff_contact"], n)
    out["contact_share_null"] = ratio(s["cand_contact"], N)
    ee = np.asarray(s["ee_pairs2"], float) / 2
    out["mixing_score"] = np.where(ee > 0, ratio(s["et_pairs"], ee), np.nan)
    e_et = ratio(n, N) * s["cand_tum"]
    e_ee = ratio(n * (n - 1), N * (N - 1)) * np.asarray(s["cand_pairs2"], float) / 2
    out["mixing_score_null"] = np.where(e_ee > 0, ratio(e_et, e_ee), np.nan)
    out["core_share"] = ratio(s["eff_core"], n)
    out["core_share_null"] = ratio(s["cand_core"], N)
    for m in ("parenchyma_share", "core_share", "contact_share", "mixing_score"):
        out[f"{m}_vs_null"] = ratio(out[m], out[f"{m}_null"])
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

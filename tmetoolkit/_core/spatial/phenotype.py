"""The immune phenotype of samples and regions from cells (or spots) with positions: the tables the rule reads.

Cells: per image, the tissue areas and neighbour counts give additive per-cell columns (:mod:`.measures`);
summed over a sample or a region they give its features, and :func:`.rules.call_cells` its call. Spots: the
fractions of effector-positive spots in the tumour core and outside the tumour region (:func:`spot_features`),
called by :func:`.rules.call_spots`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..._utils import TmtInputError
from ..sample.cohort import MIN_COHORT_SIZE
from .geometry import MIN_POSITIONS, contact_counts, local_frame, median_nn, n_positions, tissue_grid
from .measures import cell_columns, effector_features
from .rules import call_cells, call_spots

MIN_SPOTS_SAMPLE, MIN_SPOTS_REGION, MIN_TUMOR_SPOTS = 20, 10, 3


@dataclass(frozen=True)
class PhenotypeTables:
    """Called tables, one row per sample and per region, and what the call rested on."""

    samples: pd.DataFrame
    regions: pd.DataFrame
    min_density: float = np.nan  # cells: the density threshold used (the cohort quantile with reference="cohort")
    contact_distance_um: float = np.nan  # cells: median contact radius over images


@dataclass(frozen=True)
class CellInput:
    """Per cell: coordinates (micrometres), image, compartment, signed border distance, effector and tumour."""

    xy: np.ndarray
    images: pd.Series
    compartment: np.ndarray
    distance: np.ndarray
    is_effector: np.ndarray
    is_tumour: np.ndarray


def _cell_sums(cells: CellInput, contact_cells: float) -> tuple[pd.DataFrame, dict]:
    """Additive per-cell columns (areas and counts per image) and each image's contact radius."""
    n = len(cells.xy)
    comp, inside = cells.compartment, (cells.distance < 0) | (cells.compartment == "tumor")
    cols, radius = {}, {}
    for im, idx in cells.images.groupby(cells.images, observed=True).indices.items():
        xy = local_frame(cells.xy[idx])
        if n_positions(xy) < MIN_POSITIONS:
            area, nn = np.zeros(len(idx)), np.nan
        else:
            nn = median_nn(xy)
            area = tissue_grid(xy, nn)[-1]
        radius[im] = contact_cells * nn
        counts = (contact_counts(xy, cells.is_tumour[idx], cells.is_effector[idx], radius[im]) if np.isfinite(nn)
                  else {k: np.zeros(len(idx)) for k in ("tum", "nontum", "eff")})
        for k, v in cell_columns(inside[idx], comp[idx] == "tumor", area, cells.is_tumour[idx],
                                 cells.is_effector[idx], counts).items():
            cols.setdefault(k, np.zeros(n))[idx] = v
    cols = pd.DataFrame(cols, index=cells.images.index)
    cols["margin_area"] = cols["area"] * (comp == "margin")
    cols["eff_margin"] = cells.is_effector * (comp == "margin")
    return cols, radius


def cell_tables(cells: CellInput, samples: pd.Series, regions: pd.Series, *, status: dict, contact_cells: float,
                min_cells: int, min_tumor_cells: int, no_effectors: str = "", reference: str = "absolute",
                cohort_quantile: float = 0.25, **rule) -> PhenotypeTables:
    """Sample and region tables of cells, called by :func:`.rules.call_cells` with ``rule`` (``min_density``,
    ``null_ratio``, ``min_effectors``, ``min_stroma_fraction``).

    ``status`` is each image's compartment status; ``no_effectors`` a reason that makes every group not
    assessable (the effector cells cannot be recognised on this panel). With ``reference="cohort"``,
    ``min_density`` is the ``cohort_quantile`` of the assessable samples' effector densities.
    """
    cols, radius = _cell_sums(cells, contact_cells)
    images = cells.images

    def unassessable(row, ims) -> str:
        image_status = {status.get(im, "ok") for im in ims}
        if image_status == {"too few cell positions"}:
            return ("too few cell positions: the cells share fewer than three distinct coordinates, as when they "
                    "are rounded to a coarse grid")
        if image_status <= {"no tumour region", "too few cells", "too few cell positions"}:
            return f"{min(image_status)}: no group of at least the minimum number of tumour cells"
        if row["n_cells"] < min_cells:
            return f"too few cells: {int(row['n_cells'])}, fewer than {min_cells}"
        if row["n_tumor_cells"] < min_tumor_cells:
            return f"too few tumour cells: {int(row['n_tumor_cells'])}, fewer than {min_tumor_cells}"
        if not row["area_tumor_mm2"] > 0:
            return "no tumour region in this region"
        return ""

    def table_for(groups: pd.Series) -> pd.DataFrame:
        sums = cols.groupby(groups.to_numpy(), observed=True, sort=True).sum()
        sums = sums.loc[[g for g in pd.unique(groups.dropna()) if g in sums.index]]
        f = pd.DataFrame(effector_features(sums), index=sums.index)
        f.insert(0, "n_cells", sums["n_cells"].astype(int))
        f.insert(1, "n_effector", sums["n_effector"].astype(int))
        f.insert(2, "n_tumor_cells", sums["n_tumor_cells"].astype(int))
        f.insert(3, "n_images", images.groupby(groups.to_numpy(), observed=True).nunique().reindex(f.index))
        f["area_margin_mm2"] = sums["margin_area"]
        f["effector_per_mm2_margin"] = (sums["eff_margin"] / sums["margin_area"]).where(sums["margin_area"] > 0)
        f["effector_per_100_cells_tumor"] = (100 * sums["eff_in"] / sums["cells_in"]).where(sums["cells_in"] > 0)
        f["effector_tumor_contact_fraction"] = f["contact_share"]
        f["normalised_mixing_score"] = (0.5 * f["mixing_score"] * (f["n_effector"] - 1)
                                        / f["n_tumor_cells"].where(f["n_tumor_cells"] > 0))
        ims_of = images.groupby(groups.to_numpy(), observed=True).unique()
        f["reason"] = [no_effectors or unassessable(f.loc[g], ims_of[g]) for g in f.index]
        return f

    samp_tab, reg_tab = table_for(samples), table_for(regions)
    if reference == "cohort":
        rule["min_density"] = cohort_density(samp_tab, cohort_quantile)
    samp_tab, reg_tab = (call_cells(t, **rule) for t in (samp_tab, reg_tab))
    contact = float(np.nanmedian(list(radius.values()))) if radius else np.nan
    return PhenotypeTables(samp_tab, reg_tab, float(rule["min_density"]), contact)


def cohort_density(samp_tab: pd.DataFrame, quantile: float) -> float:
    """The ``quantile`` of the assessable samples' effector densities (a cohort-relative desert threshold)."""
    ok = samp_tab["reason"] == ""
    if ok.sum() < MIN_COHORT_SIZE:
        msg = (f"a cohort-relative call needs at least {MIN_COHORT_SIZE} assessable samples, found "
               f"{int(ok.sum())}; "
               "use reference='absolute' (min_density in cells/mm^2).")
        raise TmtInputError(msg)
    return float(np.nanquantile(samp_tab.loc[ok, "effector_per_mm2"], quantile))


def spot_features(comp, dist, eff, tum, score) -> dict:
    """Effector-spot fractions of one group of spots: per compartment, and in and outside the tumour region.

    Border spots mix tumour and stroma, so the tumour side is the core (beyond the border ring) where there is one.
    """
    inside = comp == "tumor"
    if not inside.any():
        inside = (comp == "margin") & (dist < 0)
    f = {"n_spots": len(comp), "n_effector_spots": int(eff.sum()), "n_tumor_spots": int(tum.sum())}
    for name, m in (("tumor", inside), ("margin", comp == "margin"), ("stroma", comp == "stroma")):
        f[f"effector_spot_fraction_{name}"] = float(eff[m].mean()) if m.any() else np.nan
        scored = score[m][np.isfinite(score[m])]  # spots without expression have no score
        f[f"effector_score_{name}"] = float(scored.mean()) if scored.size else np.nan
    f["rho_tumor"] = float(eff[inside].mean()) if inside.any() else np.nan
    f["rho_stroma"] = float(eff[~inside].mean()) if (~inside).any() else np.nan
    tot = np.nansum([f["rho_tumor"], f["rho_stroma"]])
    f["infiltration_ratio"] = f["rho_tumor"] / tot if tot > 0 and np.isfinite(f["rho_tumor"]) else np.nan
    return f


def spot_tables(comp: np.ndarray, dist: np.ndarray, eff: np.ndarray, tum: np.ndarray, score: np.ndarray, *,
                images: pd.Series, samples: pd.Series, regions: pd.Series, status: dict,
                min_spot_fraction: float, min_infiltration: float) -> PhenotypeTables:
    """Sample and region tables of spots (compartment, border distance, effector and tumour spots, effector
    score per spot), called by :func:`.rules.call_spots`."""

    def table_for(groups: pd.Series, min_spots: int) -> pd.DataFrame:
        rows = {}
        for g, idx in groups.groupby(groups, observed=True).indices.items():
            f = spot_features(comp[idx], dist[idx], eff[idx], tum[idx], score[idx])
            f["n_images"] = int(pd.unique(images.iloc[idx]).size)
            st = {status.get(im, "ok") for im in pd.unique(images.iloc[idx])}
            if len(idx) < min_spots:
                reason = f"too few spots ({len(idx)} < {min_spots})"
            elif st <= {"no tumour region"}:
                reason = "no tumour region: no group of tumour spots"
            elif f["n_tumor_spots"] < MIN_TUMOR_SPOTS:
                reason = f"too few tumour spots ({f['n_tumor_spots']} < {MIN_TUMOR_SPOTS})"
            elif not ((comp[idx] == "tumor") | (dist[idx] < 0)).any():
                reason = "no tumour region in this region"
            else:
                reason = ""
            f["reason"] = reason
            rows[g] = f
        return pd.DataFrame.from_dict(rows, orient="index")

    samp_tab, reg_tab = (call_spots(table_for(groups, n_min), min_spot_fraction=min_spot_fraction,
                                    min_infiltration=min_infiltration)
                         for groups, n_min in ((samples, MIN_SPOTS_SAMPLE), (regions, MIN_SPOTS_REGION)))
    return PhenotypeTables(samp_tab, reg_tab)


def tile_regions(xy: np.ndarray, images: pd.Series, tile_size: float, *, index: pd.Index) -> pd.Series:
    """Each cell's square tile of side ``tile_size`` (the units of ``xy``), named ``"<image>:tile_<i>_<j>"``:
    tiles never span two images, and each image's grid starts at its own lower-left corner, as in
    :func:`.geometry.local_frame`, so that the same image gives the same tiles wherever it lies (anchored at 0, on
    ``simulate(3, 3000, seed=2)`` moved by 37 micrometres, a tile's cells changed by up to 153 and its CD8 T
    density by 48/mm^2)."""
    corner = pd.DataFrame(xy, index=index).groupby(images.to_numpy(), observed=True).transform("min").to_numpy()
    tiles = np.floor(np.round(xy - corner, 6) / tile_size).astype(int)
    return images + ":tile_" + pd.Series(tiles[:, 0], index=index).astype(str) + "_" + pd.Series(
        tiles[:, 1], index=index).astype(str)

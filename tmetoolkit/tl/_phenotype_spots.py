"""Immune phenotype of spot data (Visium): the spatial rules on fractions of effector-positive spots.

Spots hold several cells, so densities per mm^2 are replaced by the fraction of spots in which the CD8 T-cell
programme stands out of its background, in the tumour core and outside the tumour region. Spots on the border ring
mix tumour and stroma and are left out of the tumour side unless a region has no core.
The labels follow the cell rules: desert when both fractions are below ``min_spot_fraction``, inflamed when the
tumour side reaches it and the infiltration ratio reaches ``min_infiltration``, excluded otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._utils import logger, warn
from ._spots import effector_spots

EFFECTOR_SIGNATURE = "CD8_T"
MIN_SPOTS_SAMPLE, MIN_SPOTS_REGION, MIN_TUMOR_SPOTS = 20, 10, 3


def _spot_features(comp, dist, eff, tum, score) -> dict:
    # border spots mix tumour and stroma, so the tumour side is the core (beyond the border ring) where there is one
    inside = comp == "tumor"
    if not inside.any():
        inside = (comp == "margin") & (dist < 0)
    f = {"n_spots": len(comp), "n_effector_spots": int(eff.sum()), "n_tumor_spots": int(tum.sum())}
    for name, m in (("tumor", inside), ("margin", comp == "margin"), ("stroma", comp == "stroma")):
        f[f"effector_spot_fraction_{name}"] = float(eff[m].mean()) if m.any() else np.nan
        f[f"effector_score_{name}"] = float(np.nanmean(score[m])) if m.any() else np.nan
    f["rho_tumor"] = float(eff[inside].mean()) if inside.any() else np.nan
    f["rho_stroma"] = float(eff[~inside].mean()) if (~inside).any() else np.nan
    tot = np.nansum([f["rho_tumor"], f["rho_stroma"]])
    f["infiltration_ratio"] = f["rho_tumor"] / tot if tot > 0 and np.isfinite(f["rho_tumor"]) else np.nan
    return f


def spot_phenotype(adata: AnnData, *, samples: pd.Series, images: pd.Series, regions: pd.Series, status: dict,
                   min_spot_fraction: float, min_infiltration: float, label_table, layer=None) -> tuple:
    """Sample and region tables for spot data (``label_table`` applies the cell rules)."""
    from ._score import score_once

    msg = f"the effector programme {EFFECTOR_SIGNATURE} (CD8A, CD8B) cannot be scored: its genes are missing."
    try:
        score_once(adata, [EFFECTOR_SIGNATURE], method="mean_ctrl", layer=layer)
    except ValueError as e:
        raise ValueError(f"the effector programme {EFFECTOR_SIGNATURE} cannot be scored: {e}") from e
    S = adata.obsm[_keys.SCORES]
    if EFFECTOR_SIGNATURE not in S:
        raise ValueError(msg)
    eff, thr = effector_spots(S[EFFECTOR_SIGNATURE])
    sc_ = S[EFFECTOR_SIGNATURE].to_numpy(dtype=float)
    comp = adata.obs[_keys.COMPARTMENT].astype(str).to_numpy()
    dist = adata.obs[_keys.BORDER_DISTANCE].to_numpy(dtype=float)
    tum = adata.obs[_keys.TUMOR_SPOT].to_numpy(dtype=bool) if _keys.TUMOR_SPOT in adata.obs else comp == "tumor"

    def table_for(groups: pd.Series, min_spots: int) -> pd.DataFrame:
        rows = {}
        for g, idx in groups.groupby(groups, observed=True).indices.items():
            f = _spot_features(comp[idx], dist[idx], eff[idx], tum[idx], sc_[idx])
            f["n_images"] = int(pd.unique(images.iloc[idx]).size)
            st = {status.get(im, "ok") for im in pd.unique(images.iloc[idx])}
            if st <= {"no tumour region"}:
                reason = "no tumour region: no group of tumour spots"
            elif len(idx) < min_spots:
                reason = f"too few spots ({len(idx)} < {min_spots})"
            elif f["n_tumor_spots"] < MIN_TUMOR_SPOTS:
                reason = f"too few tumour spots ({f['n_tumor_spots']} < {MIN_TUMOR_SPOTS})"
            elif not ((comp[idx] == "tumor") | (dist[idx] < 0)).any():
                reason = "no tumour region in this region"
            else:
                reason = ""
            f["reason"] = reason
            rows[g] = f
        return pd.DataFrame.from_dict(rows, orient="index")

    out = [label_table(table_for(groups, n_min), min_spot_fraction, min_infiltration, "spatial (spots)")
           for groups, n_min in ((samples, MIN_SPOTS_SAMPLE), (regions, MIN_SPOTS_REGION))]
    bad = out[0].loc[out[0]["phenotype"] == "not assessable", "reason"]
    if len(bad):
        warn("not assessable: " + "; ".join(f"{k} ({v})" for k, v in bad.items()))
    logger.info("spot phenotype: effector spots have %s score > %.3f", EFFECTOR_SIGNATURE, thr)
    return out[0], out[1], thr

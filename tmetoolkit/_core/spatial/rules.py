"""The inflamed / excluded / desert rule of ``tmt.tl.immune_phenotype`` and its thresholds, in one place.

Cells are called from where the effector cells sit against the null model (:func:`classify`), spots from the
fractions of effector-positive spots (:func:`classify_spots`); both go through :func:`call` into the stored table.
:func:`decision_lines` gives the lines the rule draws between the classes, which ``tmt.pl.immune_phenotype``
plots as they are (expression-basis lines come from :mod:`tmetoolkit._core.sample.phenotype`).
Three classes after Chen & Mellman 2017 and Hegde et al. 2016.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ... import _keys
from .measures import MIN_EXPECTED, ratio

MEASURES = ("infiltration_vs_null", "contact_share_vs_null", "mixing_score_vs_null")
# defaults of tmt.tl.immune_phenotype; each is justified where the rule uses it
MIN_DENSITY = 100.0  # effector cells / mm^2 of tissue: the low range of CD8 densities in tumour cores (Galon 2006)
NULL_RATIO = 0.5  # observed / expected share in the tumour: midway between exclusion (0) and chance (1)
MIN_EFFECTORS = 16  # a share from 16 cells has a 95% binomial interval of at most +-0.25
MIN_STROMA_FRACTION = 0.1  # below a tenth of stroma, exclusion cannot be seen (see classify)
MIN_COMPARTMENT_FRACTION = 0.1  # a compartment's density counts for the desert call from a tenth of the tissue
MIN_SPOT_FRACTION = 0.1  # spots: fraction of effector-positive spots below which a compartment is empty
MIN_INFILTRATION = 0.3  # spots: infiltration ratio from which a tumour with T cells is inflamed (signatures.md 10.1)


def classify(f: dict, *, min_density: float = MIN_DENSITY, null_ratio: float = NULL_RATIO,
             min_effectors: int = MIN_EFFECTORS, min_stroma_fraction: float = MIN_STROMA_FRACTION,
             min_compartment_fraction: float = MIN_COMPARTMENT_FRACTION):
    """Inflamed / excluded / desert from the features of :func:`.measures.effector_features` (arrays, one per
    group).

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
    distance from the threshold, and inflamed and excluded calls are no surer than that same distance allows: a
    sample just above ``min_density`` is as near to a desert call as one just below it is to theirs (scimap's
    CyCIF image, rotated by 30 degrees, moved from 95.7 to 103.5 effector cells/mm^2 of stroma and from desert at
    confidence 0.08 to inflamed at 1.00; now 0.07).
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
    conf = ratio(n_agree, n_votes) * np.minimum(1.0, n_eff / min_effectors)
    p_chance = np.nan_to_num(np.asarray(f["infiltration_p_below_chance"], float), nan=1.0)
    conf = np.where(label == "excluded", conf * (1 - p_chance), conf)
    eps = 1e-9
    from_density = 1 - np.exp(-2 * np.abs(np.log((dens + eps) / min_density)))
    conf = np.where(desert, from_density, np.minimum(conf, from_density))
    conf = np.where(label == "not assessable", np.nan, conf)
    return label, conf, n_agree, n_votes, exclusion_assessable


def classify_spots(f: pd.DataFrame, min_spot_fraction: float = MIN_SPOT_FRACTION,
                   min_infiltration: float = MIN_INFILTRATION) -> pd.DataFrame:
    """Spots: desert when the effector fractions in the tumour (``rho_tumor``) and outside it (``rho_stroma``)
    are both below ``min_spot_fraction``, inflamed when the tumour side reaches it and the infiltration ratio
    reaches ``min_infiltration``, excluded otherwise. The confidence is ``1 - exp(-2 m)`` for ``m`` the distance
    to the nearest threshold that would change the call (log density ratios, relative ratio margins)."""
    tau = min_spot_fraction
    rt, rs, fin = f["rho_tumor"].fillna(0), f["rho_stroma"].fillna(0), f["infiltration_ratio"].fillna(0)
    label = np.where((rt < tau) & (rs < tau), "desert", np.where((rt >= tau) & (fin >= min_infiltration), "inflamed",
                                                                   "excluded"))
    eps = 1e-9
    d_desert = np.log((np.maximum(rt, rs) + eps) / tau)
    d_inf = np.minimum(np.log((rt + eps) / tau), (fin - min_infiltration) / min_infiltration)
    d_exc = np.minimum(d_desert, np.maximum(-np.log((rt + eps) / tau), (min_infiltration - fin) / min_infiltration))
    margin = np.where(label == "desert", -d_desert, np.where(label == "inflamed", d_inf, d_exc))
    out = f.copy()
    out["phenotype"] = label
    out["confidence"] = 1.0 - np.exp(-2.0 * np.clip(margin, 0, None))
    return out


def call_cells(tab: pd.DataFrame, *, min_density: float = MIN_DENSITY, null_ratio: float = NULL_RATIO,
               min_effectors: int = MIN_EFFECTORS, min_stroma_fraction: float = MIN_STROMA_FRACTION) -> pd.DataFrame:
    """The table with the call of :func:`classify`; rows with a ``reason`` are ``not assessable``."""
    label, conf, n_agree, n_votes, can_exclude = classify(
        tab, min_density=min_density, null_ratio=null_ratio, min_effectors=min_effectors,
        min_stroma_fraction=min_stroma_fraction)
    tab = tab.copy()
    tab["phenotype"], tab["confidence"] = label, conf
    tab["measures_agreeing"], tab["measures_available"] = n_agree, n_votes
    tab["exclusion_assessable"] = can_exclude
    low = (tab["reason"] == "") & (label == "not assessable")
    no_main = ~np.isfinite(tab["infiltration_vs_null"].to_numpy(dtype=float))
    tab.loc[low & ~no_main, "reason"] = (
        f"too little stroma to show exclusion: stroma below {min_stroma_fraction:.0%} of the tissue")
    tab.loc[low & no_main, "reason"] = (
        f"fewer than {MIN_EXPECTED:g} effector cells in the tumour, observed or expected by chance: too little "
        "tumour or too few effector cells to tell where they sit")
    return _finish(tab, "spatial")


def call_spots(tab: pd.DataFrame, *, min_spot_fraction: float = MIN_SPOT_FRACTION,
               min_infiltration: float = MIN_INFILTRATION) -> pd.DataFrame:
    """The table with the call of :func:`classify_spots`; rows with a ``reason`` are ``not assessable``."""
    return _finish(classify_spots(tab, min_spot_fraction, min_infiltration), "spatial (spots)")


def _finish(tab: pd.DataFrame, basis: str) -> pd.DataFrame:
    na = tab["reason"] != ""
    tab.loc[na, "phenotype"] = "not assessable"
    tab.loc[na, "confidence"] = np.nan
    tab["basis"] = basis
    tab["phenotype"] = pd.Categorical(tab["phenotype"], categories=list(_keys.PHENOTYPES))
    return tab


@dataclass(frozen=True)
class Line:
    """A threshold of the rule in the plane of its plot: ``x = value``, ``y = value`` or, for ``"slope"``,
    ``y = value * x``; ``style`` is a matplotlib line style, ``label`` the legend entry (``None``: none)."""

    axis: str
    value: float
    style: str
    label: str | None = None


def decision_lines(params: dict) -> list[Line]:
    """The thresholds a stored call was made with (``uns["tmt_immune_phenotype"]["params"]``), as lines.

    Cells: x is ``infiltration_vs_null`` (cut at ``null_ratio``), y the effector density (desert below
    ``min_density_per_mm2``). Spots: x and y are the effector fractions outside and inside the tumour, cut at
    ``min_spot_fraction``, and the infiltration ratio ``min_infiltration`` is the line ``y = x f / (1 - f)``.
    """
    if "null_ratio" in params:
        tau, cut = float(params["min_density_per_mm2"]), float(params["null_ratio"])
        return [Line("x", cut, "--", f"null ratio {cut:g}"), Line("y", tau, ":", f"min density {tau:g}/mm²")]
    tau = float(params["min_spot_fraction"] if "min_spot_fraction" in params else params["min_density_per_mm2"])
    fin = float(params["min_infiltration"])
    return [Line("x", tau, "--"), Line("y", tau, "--"),
            Line("slope", fin / (1 - fin), ":", f"infiltration ratio {fin:g}")]

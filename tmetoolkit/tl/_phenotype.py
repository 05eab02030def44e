"""``tmt.tl.immune_phenotype``: inflamed, excluded or desert, per sample and per region of tissue.

Spatial basis (cells): where the effector (CD8 T) cells sit, each measure against a null model in which the same
cells are relabelled at random among the non-tumour cells of the field (``_spatial_measures``): their share in
the tumour core (else parenchyma), their share in contact with a tumour cell, and Keren's mixing score; desert
from their density (Chen & Mellman 2017; Hegde et al. 2016 for the three classes). Expression and spot bases live
in ``_phenotype_expression`` and ``_phenotype_spots``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.sample.cohort import MIN_COHORT_SIZE
from .._utils import TmtInputError, check_tmt_key, logger, warn
from ._compartments import DEFAULT_TUMOR_LABELS, compartments
from ._sample_features import regions_of
from ._spatial_measures import (
    CONTACT_NN,
    MEASURES,
    MIN_EXPECTED,
    cell_columns,
    classify,
    contact_counts,
    effector_features,
    median_nn,
    tissue_grid,
)
from ._spatial_utils import check_labels, coordinates, image_groups, label_column, sample_groups
from ._spots import is_spot_data

DEFAULT_EFFECTORS = ("CD8 T",)


def _classify(f: pd.DataFrame, tau: float, min_infiltration: float) -> pd.DataFrame:
    rt, rs, fin = f["rho_tumor"].fillna(0), f["rho_stroma"].fillna(0), f["infiltration_ratio"].fillna(0)
    label = np.where((rt < tau) & (rs < tau), "desert", np.where((rt >= tau) & (fin >= min_infiltration), "inflamed",
                                                                   "excluded"))
    eps = 1e-9
    # how far the call sits from the thresholds that would change it (log density ratios, relative ratio margins)
    d_desert = np.log((np.maximum(rt, rs) + eps) / tau)
    d_inf = np.minimum(np.log((rt + eps) / tau), (fin - min_infiltration) / min_infiltration)
    d_exc = np.minimum(d_desert, np.maximum(-np.log((rt + eps) / tau), (min_infiltration - fin) / min_infiltration))
    margin = np.where(label == "desert", -d_desert, np.where(label == "inflamed", d_inf, d_exc))
    out = f.copy()
    out["phenotype"] = label
    out["confidence"] = 1.0 - np.exp(-2.0 * np.clip(margin, 0, None))
    return out


def _effectors_unrecognisable(adata: AnnData, cell_type_key: str, effector_labels) -> str:
    """Why no effector cell can be found, when annotate could not assess any effector label; else ``""``.

    Without it, a panel that lacks CD8 (genes or a channel) would have no CD8 T cells and every tumour would look
    like a desert.
    """
    rules = adata.uns.get("tmt_annotate", {}).get("rules") if cell_type_key == _keys.LINEAGE else None
    if not isinstance(rules, pd.DataFrame) or "assessable" not in rules:
        return ""
    lineage = rules["label"].astype(str).str.split("|").str[0]
    rows = rules[(rules["level"] == "lineage") & lineage.isin(effector_labels)]
    if len(rows) == 0 or rows["assessable"].astype(bool).any():
        return ""
    return (f"{', '.join(effector_labels)} cannot be recognised on this panel ({rows['reason'].iloc[0]}); pass "
            "cell_type_key= and effector_labels= naming cells of your own")


def _labelled(tab: pd.DataFrame, tau: float, min_infiltration: float, basis: str) -> pd.DataFrame:
    """Labels and confidences by the rules; rows with a ``reason`` are ``not assessable``."""
    tab = _classify(tab, tau, min_infiltration)
    na = tab["reason"] != ""
    tab.loc[na, "phenotype"] = "not assessable"
    tab.loc[na, "confidence"] = np.nan
    tab["basis"] = basis
    tab["phenotype"] = pd.Categorical(tab["phenotype"], categories=list(_keys.PHENOTYPES))
    return tab


def immune_phenotype(
    adata: AnnData,
    *,
    sample_key: str | None = None,
    cell_type_key: str | None = None,
    effector_labels=None,
    tumor_labels=None,
    tumor_signature: str | None = None,
    region_key: str | None = None,
    image_key: str | None = None,
    basis: Literal["auto", "spatial", "expression"] = "auto",
    pixel_size: float | None = None,
    tile_size: float = 500.0,
    min_density: float = 100.0,
    min_spot_fraction: float = 0.1,
    min_infiltration: float = 0.3,
    reference: Literal["absolute", "cohort"] | None = None,
    cohort_quantile: float = 0.25,
    null_ratio: float = 0.5,
    contact_cells: float = CONTACT_NN,
    min_effectors: int = 16,
    min_stroma_fraction: float = 0.1,
    min_cells: int = 50,
    min_tumor_cells: int = 30,
    min_cd8_fraction: float = 0.1,
    layer: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Call each sample, and each region of tissue, immune inflamed, excluded or desert.

    Without coordinates (``basis="expression"``) the call comes from expression, bulk samples (no ``sample_key``:
    each observation is a sample; counts, TPM or log values, negatives allowed) and the pseudobulk of single-cell
    samples taking the same path: the CD8 T-effector programme (ssGSEA) cut into cohort terciles (top inflamed,
    middle excluded, bottom desert; never overturned, so never worse than that rule), the three T-cell programmes
    (CD8 T-effector, IFN-gamma, T-cell-inflamed GEP) and the stromal axis reported beside it, the programmes'
    disagreement lowering the confidence. From 9 samples the call is
    cohort-relative; with fewer, absolute: CD8 T cells among immune cells when cells are annotated, otherwise the
    sample's T-cell genes and IFN-gamma programme against marker genes of its other cell types, so a call does not
    change when a sample is added (the table's ``reference`` and ``decided_by`` say which).
    Dissociated and bulk data cannot show where T cells are, so an ``excluded`` call is an inference (its
    confidence is capped at 0.5 and the table says so in ``caveat``). See ``tmetoolkit.tl._phenotype_expression``
    for the rule and its sources.

    With coordinates (``basis="spatial"``, chosen by ``"auto"`` when ``obsm["spatial"]`` exists) the call follows
    where the effector (CD8 T) cells sit relative to the tumour region of :func:`tmetoolkit.tl.compartments` (run
    first when needed), per sample, image and region (the user's ``region_key`` or square tiles of
    ``tile_size`` micrometres). Each measure is compared with a null model, the same cells with the effector
    labels shuffled at random among the non-tumour cells of the group, and reported as observed / expected (1:
    as mixed with the tumour as chance; 0: never in it):

    - ``infiltration_vs_null``: their share in the tumour core (beyond the inner margin; in the parenchyma when
      the core is too small to expect 5 of them), which decides: inflamed at ``null_ratio`` (0.5, midway between
      exclusion, 0, and random placement, 1) or above, excluded below;
    - ``contact_share_vs_null``: their share with a tumour cell within ``contact_cells`` (1.5) median
      nearest-neighbour distances, i.e. touching at the tissue's own cell spacing;
    - ``mixing_score_vs_null``: Keren et al. 2018 (Cell 174:1373) effector-tumour over effector-effector contacts.

    Desert: the effector density stays below ``min_density`` over the tissue and in each compartment covering a
    tenth of it. A field whose stroma covers less than ``min_stroma_fraction`` of the tissue cannot show
    exclusion: it is called inflamed only when all three measures agree, else ``not assessable`` with
    ``exclusion_assessable`` False. The confidence is the share of measures agreeing with the call times
    ``min(1, n_effector / min_effectors)`` (excluded calls also times one minus the Poisson chance of so few cells
    in the tumour). Densities and areas are per mm^2 of tissue, each grid square of tissue going to its nearest
    cell so that compartments add up without double counts; the micrometre scale is ``pixel_size`` or the one the
    compartments were built with (two different scales are refused).

    Spot data (Visium: ``obs["array_row"]``/``obs["array_col"]``, no cell-type column) follow the same rules on
    fractions of effector-positive spots (CD8 T programme above the crossing of a two-component mixture) in the
    tumour core and outside the tumour region, with ``min_spot_fraction`` in place of ``min_density``; the tumour
    region and rings of margin come from :func:`tmetoolkit.tl.compartments` on the spot graph.

    Parameters
    ----------
    adata
        Cells with cell types (``cell_type_key``) and, for the spatial basis, coordinates.
    sample_key
        ``obs`` column of samples (default ``"sample"`` if present; otherwise one sample, or, for the expression
        basis, each observation is a sample, as in bulk data).
    cell_type_key
        ``obs`` column of cell types (default ``"tmt_lineage"``).
    effector_labels
        Effector cell labels (default ``"CD8 T"``).
    tumor_labels
        Tumour cell labels (default ``"Malignant/Epithelial"``).
    tumor_signature
        Instead of labels, a signature marking the malignant cells on this panel (see
        :func:`tmetoolkit.tl.compartments`); cells above its mixture threshold are the tumour.
    region_key
        ``obs`` column of regions (niches, annotated areas); default: tiles. Cells without a region (NaN) count
        for their sample only.
    image_key
        ``obs`` column of images when a sample has several (fields, cores, sections), each with its own
        coordinates. Compartments are found per image; a sample's densities pool its images' cells and areas.
    basis
        ``"spatial"``, ``"expression"`` or ``"auto"``.
    pixel_size
        Micrometres per coordinate unit (``None``: coordinates are micrometres).
    tile_size
        Side of the square tiles in micrometres when ``region_key`` is not given.
    min_density
        Effector density (cells/mm^2 of tissue) below which a sample or region is a desert. The default of
        100/mm^2 sits in the low range of CD8 densities reported in tumour cores (Galon 2006; Kather 2018).
    min_spot_fraction
        Spot data (Visium): fraction of effector-positive spots below which a compartment counts as empty.
    min_infiltration
        Spot data only: infiltration ratio from which a tumour with T cells counts as inflamed (0.3, signatures.md
        section 10.1).
    reference
        ``"absolute"`` or ``"cohort"``; default absolute for the spatial basis; for the expression basis cohort from
        9 samples with expression, absolute below. Spatial ``"cohort"`` replaces ``min_density`` by the
        ``cohort_quantile`` of the samples' densities.
    cohort_quantile
        Quantile used with ``reference="cohort"``.
    null_ratio
        Observed / expected share of effector cells in the tumour below which the call is excluded (0.5: the
        midpoint between complete exclusion, 0, and random placement among the non-tumour cells, 1).
    contact_cells
        Contact distance in median nearest-neighbour distances (1.5: the first shell of neighbours, the second
        lying at about two).
    min_effectors
        Effector cells below which an inflamed or excluded call loses confidence in proportion (16: a share from
        16 cells has a 95% binomial interval of at most +-0.25, half the distance from the cut to either
        hypothesis).
    min_stroma_fraction
        Share of the tissue on the stroma side of the border below which a field cannot show exclusion (0.1: on
        simulated fields with CD8 T cells planted in the stroma only, fewer than 95% are called excluded below a
        measured stroma share of 0.10 and all from it up; ``benchmarks/bench_spatial.py --floor 20``, derivation in
        ``tmetoolkit.tl._spatial_measures.classify``).
    min_cells, min_tumor_cells
        Samples or regions with fewer cells, or fewer tumour cells, are ``not assessable`` (with the reason).
    min_cd8_fraction
        Expression basis with ``reference="absolute"``: CD8 T cells among immune cells from which a sample is
        inflamed (a quarter of it separates excluded from desert).
    layer
        Layer to use instead of ``X`` wherever expression is read: the expression basis, ``tumor_signature`` and
        the CD8 T programme of spot data.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets:

    ``obs["tmt_immune_phenotype"]``
        The sample's label broadcast to its cells.
    ``obs["tmt_immune_phenotype_region"]``
        The label of the cell's region.
    ``uns["tmt_immune_phenotype"]``
        ``params`` (thresholds, ``pixel_size``, the contact distance in micrometres); ``table`` (one row per
        sample: ``phenotype``, ``confidence``, ``basis``, ``reason``, ``exclusion_assessable``, the three measures
        with their null expectations and ratios, densities ``effector_per_mm2``, ``rho_tumor``, ``rho_stroma``
        and areas in mm^2); ``regions`` (the same per region).
    ``uns["tmt_immune_phenotype_colors"]``
        Fixed colours: inflamed red, excluded orange, desert blue, not assessable grey.

    With the expression basis, ``table`` holds the ``reference`` used, what ``decided_by`` the call, the programme
    scores (ssGSEA), the ``immune_axis`` (robust z of the CD8 T-effector programme, whose cohort terciles decide),
    ``t_cell_programmes`` (mean robust z of the three), ``programmes_agreeing`` (how many of the three give the same
    call by their own terciles), the ``immune_axis_uncertainty``, the ``stromal_axis`` (reported, not deciding),
    ``t_cell_enrichment`` and ``ifng_enrichment`` (T-cell genes and the IFN-gamma programme as z against random sets
    of marker genes of the sample's other cell types; they decide absolute calls without cells),
    ``immune_enrichment`` and ``stromal_enrichment`` (the CD8 T-effector and stromal programmes against the same
    null), CD8 fractions when cells are annotated, and the ``caveat``; samples without expression are
    ``not assessable`` with the reason. ``params`` holds the tercile thresholds or the absolute ones (and
    ``marker_null``: genes found). Absolute calls chosen because the cohort is small emit a
    ``TmtSmallCohortWarning`` (a :class:`TmtWarning`) naming the rule. There are no regions.
    """
    adata = adata.copy() if copy else adata
    if basis == "auto":
        basis = "spatial" if "spatial" in adata.obsm else "expression"
    if reference not in (None, "absolute", "cohort"):
        msg = f"reference must be 'absolute' or 'cohort', got {reference!r}."
        raise TmtInputError(msg)
    if basis == "expression":
        if sample_key is None and "sample" in adata.obs and adata.obs["sample"].nunique() < adata.n_obs:
            sample_key = "sample"  # cells of several samples; without such a column each observation is a sample
        return _expression(adata, sample_key=sample_key, cell_type_key=cell_type_key, layer=layer,
                           reference=reference, min_cd8_fraction=min_cd8_fraction,
                           effector_labels=effector_labels, copy=copy)
    if basis != "spatial":
        msg = f"basis must be 'auto', 'spatial' or 'expression', got {basis!r}."
        raise TmtInputError(msg)
    reference = reference or "absolute"
    if region_key is not None and region_key not in adata.obs:
        from .._utils import missing_key_error

        raise missing_key_error(region_key, "adata.obs", adata.obs.columns)
    if is_spot_data(adata) and (cell_type_key or _keys.LINEAGE) not in adata.obs:
        return _spots(adata, sample_key=sample_key, image_key=image_key, region_key=region_key, pixel_size=pixel_size,
                      tile_size=tile_size, min_spot_fraction=min_spot_fraction, min_infiltration=min_infiltration,
                      reference=reference, layer=layer, copy=copy)
    cell_type_key = cell_type_key or _keys.LINEAGE
    labels = label_column(adata, cell_type_key)
    effector_labels = check_labels(labels, effector_labels or DEFAULT_EFFECTORS, "effector_labels") if (
        effector_labels is not None) else list(DEFAULT_EFFECTORS)
    if tumor_signature is None:
        tumor_labels = check_labels(labels, tumor_labels or DEFAULT_TUMOR_LABELS, "tumor_labels")
    else:
        tumor_labels = []
    pixel_size = _one_scale(adata, pixel_size, image_key, tumor_signature, cell_type_key)
    xy_all = coordinates(adata, pixel_size)
    samples = sample_groups(adata, sample_key)
    for key in ("tmt_immune_phenotype", "tmt_immune_phenotype_region"):
        check_tmt_key(adata.obs, key, "adata.obs")

    images = image_groups(adata, samples, image_key)
    params_c = adata.uns.get("tmt_compartments", {}).get("params", {})
    if ("tmt_compartment" not in adata.obs or params_c.get("image_key", "") != (image_key or "")
            or params_c.get("tumor_signature", "") != (tumor_signature or "")
            or (tumor_signature is None and params_c.get("cell_type_key") != cell_type_key)
            or (tumor_signature is None and set(params_c.get("tumor_labels", [])) != set(tumor_labels))):
        compartments(adata, sample_key=sample_key, cell_type_key=cell_type_key, tumor_labels=tumor_labels or None,
                     pixel_size=pixel_size, image_key=image_key, tumor_signature=tumor_signature, layer=layer)
    comp = adata.obs["tmt_compartment"].astype(str).to_numpy()
    dist = adata.obs["tmt_border_distance"].to_numpy(dtype=float)
    is_eff = labels.isin(effector_labels).to_numpy()
    is_tum = (adata.obs["tmt_tumor_cell"].to_numpy(dtype=bool) if tumor_signature is not None
              else labels.isin(tumor_labels).to_numpy())
    ctab = adata.uns["tmt_compartments"]["table"]
    status = ctab["status"].to_dict()
    inside = (dist < 0) | (comp == "tumor")

    cols, radius = {}, {}
    for im, idx in images.groupby(images, observed=True).indices.items():
        xy = xy_all[idx]
        if len(idx) < 3:
            area, nn = np.zeros(len(idx)), np.nan
        else:
            nn = median_nn(xy)
            area = tissue_grid(xy, nn)[-1]
        radius[im] = contact_cells * nn
        counts = (contact_counts(xy, is_tum[idx], is_eff[idx], radius[im]) if np.isfinite(nn)
                  else {k: np.zeros(len(idx)) for k in ("tum", "nontum", "eff")})
        for k, v in cell_columns(inside[idx], comp[idx] == "tumor", area, is_tum[idx], is_eff[idx], counts).items():
            cols.setdefault(k, np.zeros(adata.n_obs))[idx] = v
    cols = pd.DataFrame(cols, index=adata.obs_names)
    cols["margin_area"] = cols["area"] * (comp == "margin")
    cols["eff_margin"] = is_eff * (comp == "margin")

    regions = _regions(samples, images, xy_all, region_key, tile_size, adata)
    no_effectors = _effectors_unrecognisable(adata, cell_type_key, effector_labels)

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
        f["reason"] = [no_effectors or _unassessable(f.loc[g], ims_of[g]) for g in f.index]
        return f

    def _unassessable(row, ims) -> str:
        image_status = {status.get(im, "ok") for im in ims}
        if image_status <= {"no tumour region", "too few cells"}:
            return f"{min(image_status)}: no group of at least the minimum number of tumour cells"
        if row["n_cells"] < min_cells:
            return f"too few cells ({int(row['n_cells'])} < {min_cells})"
        if row["n_tumor_cells"] < min_tumor_cells:
            return f"too few tumour cells ({int(row['n_tumor_cells'])} < {min_tumor_cells})"
        if not row["area_tumor_mm2"] > 0:
            return "no tumour region in this region"
        return ""

    samp_tab = table_for(samples)
    reg_tab = table_for(regions)
    tau = min_density
    if reference == "cohort":
        ok = samp_tab["reason"] == ""
        if ok.sum() < MIN_COHORT_SIZE:
            msg = (f"a cohort-relative call needs at least {MIN_COHORT_SIZE} assessable samples, found "
                   f"{int(ok.sum())}; "
                   "use reference='absolute' (min_density in cells/mm^2).")
            raise TmtInputError(msg)
        tau = float(np.nanquantile(samp_tab.loc[ok, "effector_per_mm2"], cohort_quantile))
    rule = {"min_density": tau, "null_ratio": null_ratio, "min_effectors": min_effectors,
            "min_stroma_fraction": min_stroma_fraction}
    samp_tab, reg_tab = (_called(t, rule) for t in (samp_tab, reg_tab))
    no_eff = samp_tab["n_effector"] == 0
    if no_eff.any():
        logger.info("samples without effector cells are desert: %s", ", ".join(map(str, samp_tab.index[no_eff])))
    if (samp_tab["phenotype"] == "not assessable").any():
        bad = samp_tab.loc[samp_tab["phenotype"] == "not assessable", "reason"]
        warn("not assessable: " + "; ".join(f"{k} ({v})" for k, v in bad.items()))

    params = {"basis": "spatial", "sample_key": sample_key or "", "cell_type_key": cell_type_key,
              "effector_labels": list(effector_labels), "tumor_labels": list(tumor_labels),
              "tumor_signature": tumor_signature or "",
              "min_density_per_mm2": float(tau), "null_ratio": float(null_ratio),
              "min_effectors": int(min_effectors), "min_stroma_fraction": float(min_stroma_fraction),
              "measures": list(MEASURES), "reference": reference,
              "tile_size_um": tile_size, "region_key": region_key or "", "image_key": image_key or "",
              "contact_cells": float(contact_cells),
              "contact_distance_um": float(np.nanmedian(list(radius.values()))) if radius else np.nan,
              "pixel_size": pixel_size if pixel_size is not None else 1.0, "units": "micrometre"}
    _write(adata, samples, regions, samp_tab, reg_tab, params)
    return adata if copy else None


def _one_scale(adata, pixel_size, image_key, tumor_signature, cell_type_key) -> float | None:
    """The micrometre scale: the user's ``pixel_size`` or the one of the compartments this call builds on.

    Two different scales for the same coordinates are refused: densities and distances would mix units.
    """
    params_c = adata.uns.get("tmt_compartments", {}).get("params", {})
    if "tmt_compartment" not in adata.obs or "pixel_size" not in params_c or params_c.get("spots"):
        return pixel_size
    earlier = float(params_c["pixel_size"])
    if pixel_size is None:
        if earlier != 1.0:
            logger.info("using the compartments' pixel_size of %g micrometres", earlier)
        return earlier if earlier != 1.0 else None
    if not np.isclose(float(pixel_size), earlier, rtol=1e-9):
        msg = (f"pixel_size={pixel_size:g} differs from the pixel_size={earlier:g} (micrometres per coordinate "
               "unit) that tmt.tl.compartments used on these coordinates; pass the same scale to both, or rerun "
               "tmt.tl.compartments with the right one.")
        raise TmtInputError(msg)
    return pixel_size


def _called(tab: pd.DataFrame, rule: dict) -> pd.DataFrame:
    """The call of :func:`._spatial_measures.classify`; rows with a ``reason`` are ``not assessable``."""
    label, conf, n_agree, n_votes, can_exclude = classify(tab, **rule)
    tab = tab.copy()
    tab["phenotype"], tab["confidence"] = label, conf
    tab["measures_agreeing"], tab["measures_available"] = n_agree, n_votes
    tab["exclusion_assessable"] = can_exclude
    low = (tab["reason"] == "") & (label == "not assessable")
    no_main = ~np.isfinite(tab["infiltration_vs_null"].to_numpy(dtype=float))
    tab.loc[low & ~no_main, "reason"] = (
        "too little stroma to show exclusion (stroma < " + f"{rule['min_stroma_fraction']:.0%}" + " of the tissue; "
        "a field without stroma cannot show exclusion)")
    tab.loc[low & no_main, "reason"] = (
        f"fewer than {MIN_EXPECTED:g} effector cells in the tumour, observed or expected by chance (too little "
        "tumour or too few effector cells to tell where they sit)")
    na = tab["reason"] != ""
    tab.loc[na, "phenotype"] = "not assessable"
    tab.loc[na, "confidence"] = np.nan
    tab["basis"] = "spatial"
    tab["phenotype"] = pd.Categorical(tab["phenotype"], categories=list(_keys.PHENOTYPES))
    return tab


def _regions(samples, images, xy, region_key, tile_size, adata) -> pd.Series:
    if region_key is not None:  # named as in the other tools; cells without a region count for their sample only
        return regions_of(adata, samples, region_key)[0]
    tiles = np.floor(xy / tile_size).astype(int)  # tiles never span two images
    return images + ":tile_" + pd.Series(tiles[:, 0], index=samples.index).astype(str) + "_" + pd.Series(
        tiles[:, 1], index=samples.index).astype(str)


def _write(adata, samples, regions, samp_tab, reg_tab, params) -> None:
    cats = list(_keys.PHENOTYPES)
    adata.obs["tmt_immune_phenotype"] = pd.Categorical(samples.map(samp_tab["phenotype"].astype(str)), categories=cats)
    adata.obs["tmt_immune_phenotype_region"] = pd.Categorical(regions.map(reg_tab["phenotype"].astype(str)),
                                                             categories=cats)
    cols = ["phenotype", "confidence", "basis", "reason"]
    order = cols + [c for c in samp_tab.columns if c not in cols]
    adata.uns["tmt_immune_phenotype"] = {"params": params, "table": samp_tab[order], "regions": reg_tab[order]}
    adata.uns["tmt_immune_phenotype_colors"] = [_keys.PHENOTYPE_COLORS[c] for c in cats]


def _spots(adata, *, sample_key, image_key, region_key, pixel_size, tile_size, min_spot_fraction, min_infiltration,
           reference, layer, copy):
    """Spot data: compartments on the spot graph, effector spots from the CD8 T programme, the same rules."""
    from ._phenotype_spots import EFFECTOR_SIGNATURE, spot_phenotype

    if reference != "absolute":
        msg = "spot data use absolute thresholds (min_spot_fraction); reference='cohort' is for cells."
        raise TmtInputError(msg)
    for key in ("tmt_immune_phenotype", "tmt_immune_phenotype_region"):
        check_tmt_key(adata.obs, key, "adata.obs")
    xy = coordinates(adata, pixel_size)
    samples = sample_groups(adata, sample_key)
    images = image_groups(adata, samples, image_key)
    params_c = adata.uns.get("tmt_compartments", {}).get("params", {})
    if "tmt_compartment" not in adata.obs or not params_c.get("spots") or params_c.get("image_key", "") != (
            image_key or ""):
        compartments(adata, sample_key=sample_key, image_key=image_key, pixel_size=pixel_size, layer=layer)
    status = adata.uns["tmt_compartments"]["table"]["status"].to_dict()
    regions = _regions(samples, images, xy, region_key, tile_size, adata)
    samp_tab, reg_tab, thr = spot_phenotype(adata, samples=samples, images=images, regions=regions, status=status,
                                            min_spot_fraction=min_spot_fraction, min_infiltration=min_infiltration,
                                            label_table=_labelled, layer=layer)
    params = {"basis": "spatial (spots)", "sample_key": sample_key or "", "effector_signature": EFFECTOR_SIGNATURE,
              "effector_score_threshold": thr, "min_spot_fraction": min_spot_fraction,
              "min_infiltration": min_infiltration, "reference": reference, "tile_size_um": tile_size,
              "region_key": region_key or "", "image_key": image_key or "",
              "pixel_size": pixel_size if pixel_size is not None else 1.0}
    _write(adata, samples, regions, samp_tab, reg_tab, params)
    return adata if copy else None


def _expression(adata, *, sample_key, cell_type_key, layer, reference, min_cd8_fraction, effector_labels, copy):
    from ._phenotype_expression import expression_phenotype

    adata = adata.copy() if copy else adata
    check_tmt_key(adata.obs, "tmt_immune_phenotype", "adata.obs")
    tab, used = expression_phenotype(adata, sample_key=sample_key, cell_type_key=cell_type_key, layer=layer,
                                     reference=reference, min_cd8_fraction=min_cd8_fraction,
                                     effector_labels=effector_labels)
    cats = list(_keys.PHENOTYPES)
    tab["phenotype"] = pd.Categorical(tab["phenotype"], categories=cats)
    obs_samples = adata.obs[sample_key].astype(str) if sample_key else pd.Series(adata.obs_names, index=adata.obs_names)
    adata.obs["tmt_immune_phenotype"] = pd.Categorical(obs_samples.map(tab["phenotype"].astype(str)), categories=cats)
    cols = ["phenotype", "confidence", "basis", "reference", "reason", "caveat"]
    adata.uns["tmt_immune_phenotype"] = {
        "params": {"basis": "expression", "sample_key": sample_key or "", "cell_type_key": cell_type_key or "",
                   "min_cd8_fraction": min_cd8_fraction, "layer": layer or "X",
                   "effector_labels": list(effector_labels or DEFAULT_EFFECTORS),
                   "bulk": not sample_key, **used},
        "table": tab[cols + [c for c in tab.columns if c not in cols]],
    }
    adata.uns["tmt_immune_phenotype_colors"] = [_keys.PHENOTYPE_COLORS[c] for c in cats]
    return adata if copy else None

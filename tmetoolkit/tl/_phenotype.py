"""``tmt.tl.immune_phenotype``: inflamed, excluded or desert, per sample and per region of tissue.

A thin runner: it checks the arguments, builds the compartments when needed, reads cell types, positions and
scores from the AnnData, and writes the call. The computation lives in :mod:`tmetoolkit._core.spatial` (where the
effector cells sit against a null model, and the rule with its thresholds in ``rules``) and, without positions,
in :mod:`tmetoolkit._core.sample.phenotype` (run by ``_phenotype_expression``). Chen & Mellman 2017; Hegde et al.
2016 for the three classes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.spatial import rules
from .._core.spatial.compartments import implausible_spacing
from .._core.spatial.measures import CONTACT_NN
from .._core.spatial.phenotype import CellInput, PhenotypeTables, cell_tables, spot_tables, tile_regions
from .._core.spatial.spots import effector_spots
from .._matrix import looks_like_bulk
from .._utils import TmtInputError, check_tmt_key, checked_number, in_natural_order, logger, target, warn
from ._compartments import checked_tumor_labels, compartments
from ._sample_features import default_sample_key, regions_of, samples_of, warn_if_cells, warn_if_one_sample
from ._spatial_utils import (
    as_labels,
    check_labels,
    checked_pixel_size,
    coordinates,
    coordinates_elsewhere,
    image_groups,
    label_column,
)
from ._spots import is_spot_data, spot_pixel_size

DEFAULT_EFFECTORS = ("CD8 T",)
EFFECTOR_SIGNATURE = "CD8_T"  # spots: the programme that marks effector-positive spots


def _refuse_spatial_only(given: dict) -> None:
    """The expression basis reads none of the spatial parameters: one set away from its default is refused rather
    than silently ignored."""
    import inspect

    defaults = inspect.signature(immune_phenotype).parameters
    changed = [k for k, v in given.items() if v is not defaults[k].default]
    changed = [k for k in changed if not (isinstance(given[k], (int, float)) and given[k] == defaults[k].default)]
    if changed:
        msg = (f"{', '.join(changed)} appl{'ies' if len(changed) == 1 else 'y'} to cells or spots with positions "
               "(basis='spatial'); these data are called from expression (no obsm['spatial'], or basis="
               "'expression'). Leave them out, or add coordinates in adata.obsm['spatial'].")
        raise TmtInputError(msg)


def _effectors_unrecognisable(adata: AnnData, cell_type_key: str, effector_labels) -> str:
    """Why no effector cell can be found, when annotate could not assess any effector label; else ``""``.

    Without it, a panel that lacks CD8 (genes or a channel) would have no CD8 T cells and every tumour would look
    like a desert.
    """
    rules = adata.uns.get(_keys.ANNOTATE, {}).get("rules") if cell_type_key == _keys.LINEAGE else None
    if not isinstance(rules, pd.DataFrame) or "assessable" not in rules:
        return ""
    lineage = rules["label"].astype(str).str.split("|").str[0]
    rows = rules[(rules["level"] == "lineage") & lineage.isin(effector_labels)]
    if len(rows) == 0 or rows["assessable"].astype(bool).any():
        return ""
    return (f"{', '.join(effector_labels)} cannot be recognised on this panel ({rows['reason'].iloc[0]}); pass "
            "cell_type_key= and effector_labels= naming cells of your own")


def _warn_effectors_from_stand_ins(adata: AnnData, cell_type_key: str, effector_labels) -> None:
    """Warn when annotate called the effector lineage from stand-in genes (its own markers are not on the panel):
    fewer of its cells are found, so densities and calls rest on an undercount."""
    rules = adata.uns.get(_keys.ANNOTATE, {}).get("rules") if cell_type_key == _keys.LINEAGE else None
    if not isinstance(rules, pd.DataFrame) or "stand_ins" not in rules:
        return
    rows = rules[(rules["level"] == "lineage") & rules["label"].astype(str).isin(effector_labels)
                 & rules["stand_ins"].astype(str).str.len().gt(0)]
    for row in rows.itertuples():
        warn(f"{row.label} cells were called from stand-in genes ({row.stand_ins}): the panel lacks {row.genes}. "
             "Fewer of them are found (on simulated cells with KLRK1 alone, 66 of 229), so their densities and the "
             "calls that rest on them are low; pass cell_type_key= with labels of your own if you have them.",
             stacklevel=4)


def _warn_other_tumour(adata: AnnData, made: dict, cell_type_key: str, tumor_labels: list[str],
                       tumor_signature: str | None) -> None:
    """Warn when the compartments about to be redrawn found the tumour otherwise than this call will (other cell
    types or labels, or a signature): the user's earlier compartments are replaced, not used."""
    if _keys.COMPARTMENT not in adata.obs or not made or made.get("spots"):
        return

    def tumour(key, labels, signature):
        return f"tumor_signature={signature!r}" if signature else f"{key!r} labels {sorted(map(str, labels))}"

    before = tumour(made.get("cell_type_key"), made.get("tumor_labels", []), made.get("tumor_signature"))
    now = tumour(cell_type_key, tumor_labels, tumor_signature)
    if before != now:
        warn(f"the compartments in adata found the tumour from {before}; immune_phenotype redraws them from {now}. "
             "To call the phenotype on the earlier ones, pass the same cell_type_key= and tumor_labels= (or "
             "tumor_signature=), with effector_labels= of that column.", stacklevel=4)


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
    min_density: float = rules.MIN_DENSITY,
    min_spot_fraction: float = rules.MIN_SPOT_FRACTION,
    min_infiltration: float = rules.MIN_INFILTRATION,
    reference: Literal["absolute", "cohort"] | None = None,
    cohort_quantile: float = 0.25,
    null_ratio: float = rules.NULL_RATIO,
    contact_cells: float = CONTACT_NN,
    min_effectors: int = rules.MIN_EFFECTORS,
    min_stroma_fraction: float = rules.MIN_STROMA_FRACTION,
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
    middle excluded, bottom desert; overturned only where annotated cells show no CD8 T cell among a sample's
    immune cells, which makes it a desert), the three T-cell programmes (CD8 T-effector, IFN-gamma,
    T-cell-inflamed GEP) and the stromal axis reported beside it, the programmes' disagreement lowering the
    confidence. From 9 samples the call is
    cohort-relative; with fewer, absolute: CD8 T cells among immune cells when cells are annotated, otherwise the
    sample's T-cell genes and IFN-gamma programme against marker genes of its other cell types, so a call does not
    change when a sample is added (the table's ``reference`` and ``decided_by`` say which).
    Dissociated and bulk data cannot show where T cells are, so an ``excluded`` call is an inference (its
    confidence is capped at 0.5 and the table says so in ``caveat``). See ``tmetoolkit._core.sample.phenotype``
    for the rule and its sources.

    With coordinates (``basis="spatial"``, chosen by ``"auto"`` when ``obsm["spatial"]`` exists) the call follows
    where the effector (CD8 T) cells sit relative to the tumour region of :func:`tmetoolkit.tl.compartments` (run
    first when needed; compartments made from other tumour cells, other samples or images are redrawn, with a
    warning when the tumour cells differ), per sample, image and region (the user's ``region_key`` or square tiles
    of ``tile_size`` micrometres, laid from each image's cell of smallest x and y, the top left of
    :func:`tmetoolkit.pl.spatial`'s maps). Each measure is compared with a null
    model, the same cells with the effector labels shuffled at random among the non-tumour cells of the group, and
    reported as observed / expected (1: as mixed with the tumour as chance; 0: never in it):

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

    Spot data (Visium: ``obs["array_row"]``/``obs["array_col"]``, no ``cell_type_key`` given: annotate's lineages
    of spots are not read) follow the same rules on
    fractions of effector-positive spots (CD8 T programme above the crossing of a two-component mixture fitted on
    each image's spots, as slides differ in depth and ambient RNA) in the
    tumour core and outside the tumour region, with ``min_spot_fraction`` in place of ``min_density``; the tumour
    region and rings of margin come from :func:`tmetoolkit.tl.compartments` on the spot graph. The tables hold
    the ``effector_score_threshold`` of each sample or region (the median over its spots' images).

    Parameters
    ----------
    adata
        Cells with cell types (``cell_type_key``) and, for the spatial basis, coordinates.
    sample_key
        ``obs`` column of samples (default ``"sample"`` if present; otherwise one sample, warned where ``obs`` has
        columns named like samples, or, for the expression basis, each observation is a sample, as in bulk data).
    cell_type_key
        ``obs`` column of cell types (default ``"tmt_lineage"``).
    effector_labels
        Effector cell labels (default ``"CD8 T"``, which a ``cell_type_key`` column of your own must then hold;
        labels that occur nowhere in the column are warned about).
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
        ``"spatial"``, ``"expression"`` or ``"auto"``. The expression basis reads only ``sample_key``,
        ``cell_type_key``, ``effector_labels``, ``reference``, ``min_cd8_fraction`` and ``layer``; any other
        parameter set away from its default is refused with a :class:`~tmetoolkit.TmtInputError`.
    pixel_size
        Micrometres per coordinate unit (``None``: coordinates are micrometres; for Visium spots read by scanpy or
        squidpy, taken from the scale factors in ``uns["spatial"]``, as :func:`~tmetoolkit.tl.compartments` does).
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
        ``tmetoolkit._core.spatial.rules.classify``).
    min_cells, min_tumor_cells
        Samples or regions with fewer cells, or fewer tumour cells, are ``not assessable`` (with the reason). On
        the expression basis a sample of cells is called whatever its size, its confidence scaled by
        ``min(1, n_cells / min_cells)`` (its pseudobulk and CD8 T fractions rest on that many cells); a call from
        CD8 T cells among immune cells also takes the counts into its confidence (the posterior probability that
        the share lies on the called side).
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
        The label of the cell's region (with coordinates; the expression basis has no regions).
    ``uns["tmt_immune_phenotype"]``
        ``params`` (thresholds, ``pixel_size``, the contact distance in micrometres); ``table`` (one row per
        sample: ``phenotype``, ``confidence``, ``basis``, ``reason``, ``exclusion_assessable``, the three measures
        with their null expectations and ratios, densities ``effector_per_mm2``, ``rho_tumor``, ``rho_stroma``
        and areas in mm^2); ``regions`` (the same per region).
    ``uns["tmt_immune_phenotype_colors"]``, ``uns["tmt_immune_phenotype_region_colors"]``
        Fixed colours: inflamed red, excluded orange, desert blue, not assessable grey.
    ``obs["tmt_compartment"]``, ``obs["tmt_border_distance"]``
        With ``uns["tmt_compartments"]`` and ``uns["tmt_compartment_colors"]``, written by
        :func:`~tmetoolkit.tl.compartments` when the spatial basis runs it first (see there).

    With the expression basis, ``table`` holds the ``reference`` used, what ``decided_by`` the call, the programme
    scores (ssGSEA), the ``immune_axis`` (robust z of the CD8 T-effector programme, whose cohort terciles decide),
    ``t_cell_programmes`` (mean robust z of the three), ``programmes_agreeing`` (how many of the three give the same
    call by their own terciles), the ``immune_axis_uncertainty``, the ``stromal_axis`` (reported, not deciding),
    ``t_cell_enrichment`` and ``ifng_enrichment`` (T-cell genes and the IFN-gamma programme as z against random sets
    of marker genes of the sample's other cell types; they decide absolute calls without cells),
    ``immune_enrichment`` and ``stromal_enrichment`` (the CD8 T-effector and stromal programmes against the same
    null), CD8 fractions and the counts behind them (``cd8_cells``, ``immune_cells``) when cells are annotated,
    and the ``caveat``; samples without expression are
    ``not assessable`` with the reason. ``params`` holds the tercile thresholds or the absolute ones (and
    ``marker_null``: genes found). Absolute calls chosen because the cohort is small emit a
    ``TmtSmallCohortWarning`` (a :class:`TmtWarning`) naming the rule. There are no regions.
    """
    adata = target(adata, copy)
    effector_labels = as_labels(effector_labels)  # read as the cell-type column is, as strings
    if basis == "auto":
        basis = "spatial" if "spatial" in adata.obsm else "expression"
        move = coordinates_elsewhere(adata) if basis == "expression" else ""
        if move:
            warn("no adata.obsm['spatial']: the phenotype is called from expression. These cells have coordinates "
                 f"elsewhere; for the spatial phenotype, first run {move}")
    if reference not in (None, "absolute", "cohort"):
        msg = f"reference must be 'absolute' or 'cohort', got {reference!r}."
        raise TmtInputError(msg)
    if basis == "expression":
        _refuse_spatial_only({"tumor_labels": tumor_labels, "tumor_signature": tumor_signature,
                              "region_key": region_key, "image_key": image_key, "pixel_size": pixel_size,
                              "tile_size": tile_size, "min_density": min_density,
                              "min_spot_fraction": min_spot_fraction, "min_infiltration": min_infiltration,
                              "cohort_quantile": cohort_quantile, "null_ratio": null_ratio,
                              "contact_cells": contact_cells, "min_effectors": min_effectors,
                              "min_stroma_fraction": min_stroma_fraction, "min_tumor_cells": min_tumor_cells})
        if sample_key is None and "sample" in adata.obs and adata.obs["sample"].nunique() < adata.n_obs:
            sample_key = "sample"  # cells of several samples; without such a column each observation is a sample
        # bulk samples given to annotate (which warned) carry lineages too: each is a sample all the same
        if sample_key is None and _keys.LINEAGE in adata.obs and not looks_like_bulk(adata, layer):
            msg = ("these observations are annotated cells (obs['tmt_lineage']), but without sample_key each "
                   "observation would be called as a bulk sample: pass sample_key= naming the obs column of samples "
                   "(for a single sample, add one: adata.obs['sample'] = 'sample1').")
            raise TmtInputError(msg)
        if sample_key is None:
            warn_if_cells(adata, layer, "is called as a bulk sample (no sample_key)")
        return _expression(adata, sample_key=sample_key, cell_type_key=cell_type_key, layer=layer,
                           reference=reference, min_cd8_fraction=min_cd8_fraction,
                           effector_labels=effector_labels, min_cells=min_cells, copy=copy)
    if basis != "spatial":
        msg = f"basis must be 'auto', 'spatial' or 'expression', got {basis!r}."
        raise TmtInputError(msg)
    sample_key = default_sample_key(adata, sample_key)  # recorded in params, read by get and compare_groups
    reference = reference or "absolute"
    tile_size = checked_number(tile_size, "tile_size", "the side of the square tiles in micrometres", low_open=True)
    min_density = checked_number(min_density, "min_density", "effector cells per mm^2 of tissue", low_open=True)
    min_spot_fraction = checked_number(min_spot_fraction, "min_spot_fraction", "a fraction of spots", high=1,
                                       low_open=True)
    min_infiltration = checked_number(min_infiltration, "min_infiltration", "an infiltration ratio", high=1,
                                      low_open=True, high_open=True)
    cohort_quantile = checked_number(cohort_quantile, "cohort_quantile", "a quantile of the samples", high=1)
    null_ratio = checked_number(null_ratio, "null_ratio", "observed over expected share", low_open=True)
    contact_cells = checked_number(contact_cells, "contact_cells", "cell spacings", low_open=True)
    min_effectors = checked_number(min_effectors, "min_effectors", "effector cells", low=1, integer=True)
    min_stroma_fraction = checked_number(min_stroma_fraction, "min_stroma_fraction", "a share of the tissue", high=1)
    min_cells = checked_number(min_cells, "min_cells", "cells", integer=True)
    min_tumor_cells = checked_number(min_tumor_cells, "min_tumor_cells", "tumour cells", integer=True)
    if region_key is not None and region_key not in adata.obs:
        from .._utils import missing_key_error

        raise missing_key_error(region_key, "adata.obs", adata.obs.columns)
    if is_spot_data(adata) and cell_type_key is None:  # annotate's lineages of spots are their dominant cells' only
        return _spots(adata, sample_key=sample_key, image_key=image_key, region_key=region_key, pixel_size=pixel_size,
                      tile_size=tile_size, min_spot_fraction=min_spot_fraction, min_infiltration=min_infiltration,
                      reference=reference, layer=layer, copy=copy)
    cell_type_key = cell_type_key or _keys.LINEAGE
    labels = label_column(adata, cell_type_key)
    if effector_labels is not None:
        effector_labels = check_labels(labels, effector_labels, "effector_labels")
    elif cell_type_key == _keys.LINEAGE:  # annotate's own labels: a tumour without CD8 T cells is a desert
        effector_labels = list(DEFAULT_EFFECTORS)
    else:  # a column of the user's own: the default must name cells in it, or every sample would be a desert
        effector_labels = check_labels(labels, DEFAULT_EFFECTORS, "effector_labels",
                                       f" (the default; pass effector_labels= naming the CD8 T cells of "
                                       f"adata.obs[{cell_type_key!r}])")
    if tumor_signature is None:
        tumor_labels = checked_tumor_labels(adata, labels, tumor_labels, cell_type_key)
    else:
        tumor_labels = []
    shared = sorted(set(effector_labels) & set(tumor_labels))
    if shared:  # the effector cells would be tumour cells, never counted among the cells placed around it
        msg = (f"{shared} are in both effector_labels and tumor_labels: where effector cells sit is measured "
               "against the tumour cells, so a label cannot be both. Take it out of one of them.")
        raise TmtInputError(msg)
    pixel_size = _one_scale(adata, checked_pixel_size(pixel_size))
    xy_all = coordinates(adata, pixel_size)
    samples = samples_of(adata, sample_key)
    warn_if_one_sample(adata, sample_key, "immune_phenotype")
    check_tmt_key(adata.obs, (_keys.PHENOTYPE_SAMPLE, _keys.PHENOTYPE_REGION), "adata.obs")

    images = image_groups(adata, samples, image_key)
    params_c = adata.uns.get(_keys.COMPARTMENTS, {}).get("params", {})
    # compartments of other cells, samples or images are not reused
    if (_keys.COMPARTMENT not in adata.obs or params_c.get("image_key", "") != (image_key or "")
            or params_c.get("sample_key", "") != (sample_key or "") or params_c.get("n_obs", adata.n_obs) != adata.n_obs
            or params_c.get("tumor_signature", "") != (tumor_signature or "")
            or (tumor_signature is None and params_c.get("cell_type_key") != cell_type_key)
            or (tumor_signature is None and set(params_c.get("tumor_labels", [])) != set(tumor_labels))):
        _warn_other_tumour(adata, params_c, cell_type_key, tumor_labels, tumor_signature)
        compartments(adata, sample_key=sample_key, cell_type_key=cell_type_key, tumor_labels=tumor_labels or None,
                     pixel_size=pixel_size, image_key=image_key, tumor_signature=tumor_signature, layer=layer)
    is_tum = (adata.obs[_keys.TUMOR_CELL].to_numpy(dtype=bool) if tumor_signature is not None
              else labels.isin(tumor_labels).to_numpy())
    cells = CellInput(xy_all, images, adata.obs[_keys.COMPARTMENT].astype(str).to_numpy(),
                      adata.obs[_keys.BORDER_DISTANCE].to_numpy(dtype=float), labels.isin(effector_labels).to_numpy(),
                      is_tum)
    regions = _regions(samples, images, xy_all, region_key, tile_size, adata)
    _warn_effectors_from_stand_ins(adata, cell_type_key, effector_labels)
    res = cell_tables(cells, samples, regions, status=adata.uns[_keys.COMPARTMENTS]["table"]["status"].to_dict(),
                      contact_cells=contact_cells, min_cells=min_cells, min_tumor_cells=min_tumor_cells,
                      no_effectors=_effectors_unrecognisable(adata, cell_type_key, effector_labels),
                      reference=reference, cohort_quantile=cohort_quantile, min_density=min_density,
                      null_ratio=null_ratio, min_effectors=min_effectors, min_stroma_fraction=min_stroma_fraction)
    spacing = implausible_spacing(adata.uns[_keys.COMPARTMENTS]["table"]) if pixel_size is None else None
    if spacing is not None:
        _densities_unreadable(res, spacing)
    samp_tab = res.samples
    no_eff = samp_tab["n_effector"] == 0
    if no_eff.any():
        logger.info("samples without effector cells are desert: %s", ", ".join(map(str, samp_tab.index[no_eff])))
    if (samp_tab["phenotype"] == "not assessable").any():
        bad = samp_tab.loc[samp_tab["phenotype"] == "not assessable", "reason"]
        warn("not assessable: " + "; ".join(f"{k} ({v})" for k, v in bad.items()))

    params = {"basis": "spatial", "sample_key": sample_key or "", "cell_type_key": cell_type_key,
              "effector_labels": list(effector_labels), "tumor_labels": list(tumor_labels),
              "tumor_signature": tumor_signature or "",
              "min_density_per_mm2": res.min_density, "null_ratio": float(null_ratio),
              "min_effectors": int(min_effectors), "min_stroma_fraction": float(min_stroma_fraction),
              "measures": list(rules.MEASURES), "reference": reference,
              "tile_size_um": tile_size, "region_key": region_key or "", "image_key": image_key or "",
              "contact_cells": float(contact_cells),
              "contact_distance_um": res.contact_distance_um,
              "pixel_size": pixel_size if pixel_size is not None else 1.0, "units": "micrometre"}
    _write(adata, samples, regions, res, params)
    return adata if copy else None


def _densities_unreadable(res: PhenotypeTables, spacing: float) -> None:
    """Desert calls rest on effector cells per mm^2, which coordinates in an unknown unit do not give (cells
    ``spacing`` units apart, outside the micrometre range of tissue): they are not assessable, in place. The other
    measures are in units of the cells' own spacing and stand."""
    why = (f"a desert call rests on CD8 T cells per mm^2, but neighbouring cells lie {spacing:.3g} coordinate units "
           "apart, so the coordinates are not micrometres: pass pixel_size= (command line: --pixel-size; "
           "micrometres per unit)")
    for tab in (res.samples, res.regions):
        desert = (tab["phenotype"] == "desert").to_numpy()
        tab.loc[desert, "phenotype"] = "not assessable"
        tab.loc[desert, "confidence"] = np.nan
        tab.loc[desert, "reason"] = why


def _one_scale(adata, pixel_size, *, spots: bool = False) -> float | None:
    """The micrometre scale: the user's ``pixel_size`` or the one of the compartments this call builds on (of
    cells, or with ``spots`` of spots).

    Two different scales for the same coordinates are refused: densities and distances would mix units.
    """
    params_c = adata.uns.get(_keys.COMPARTMENTS, {}).get("params", {})
    if _keys.COMPARTMENT not in adata.obs or "pixel_size" not in params_c or bool(params_c.get("spots")) != spots:
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


def _regions(samples, images, xy, region_key, tile_size, adata) -> pd.Series:
    if region_key is not None:  # named as in the other tools; cells without a region count for their sample only
        return regions_of(adata, samples, region_key)[0]
    return tile_regions(xy, images, tile_size, index=samples.index)


def _write(adata, samples, regions, res: PhenotypeTables, params) -> None:
    samp_tab, reg_tab = res.samples, res.regions
    cats = list(_keys.PHENOTYPES)
    adata.obs[_keys.PHENOTYPE_SAMPLE] = pd.Categorical(samples.map(samp_tab["phenotype"].astype(str)), categories=cats)
    adata.obs[_keys.PHENOTYPE_REGION] = pd.Categorical(regions.map(reg_tab["phenotype"].astype(str)), categories=cats)
    cols = ["phenotype", "confidence", "basis", "reason"]
    order = cols + [c for c in samp_tab.columns if c not in cols]
    adata.uns[_keys.IMMUNE_PHENOTYPE] = {"params": params, "table": in_natural_order(samp_tab[order]),
                                       "regions": in_natural_order(reg_tab[order])}
    for key in (_keys.PHENOTYPE_SAMPLE, _keys.PHENOTYPE_REGION):
        adata.uns[_keys.colors(key)] = [_keys.PHENOTYPE_COLORS[c] for c in cats]


def _spots(adata, *, sample_key, image_key, region_key, pixel_size, tile_size, min_spot_fraction, min_infiltration,
           reference, layer, copy):
    """Spot data: compartments on the spot graph, effector spots from the CD8 T programme, the same rules."""
    if reference != "absolute":
        msg = "spot data use absolute thresholds (min_spot_fraction); reference='cohort' is for cells."
        raise TmtInputError(msg)
    check_tmt_key(adata.obs, (_keys.PHENOTYPE_SAMPLE, _keys.PHENOTYPE_REGION), "adata.obs")
    pixel_size = spot_pixel_size(adata, _one_scale(adata, checked_pixel_size(pixel_size), spots=True))
    xy = coordinates(adata, pixel_size)
    samples = samples_of(adata, sample_key)
    images = image_groups(adata, samples, image_key)
    params_c = adata.uns.get(_keys.COMPARTMENTS, {}).get("params", {})
    # compartments of other spots, slides or scales are not reused
    if (_keys.COMPARTMENT not in adata.obs or not params_c.get("spots")
            or params_c.get("image_key", "") != (image_key or "")
            or params_c.get("sample_key", "") != (sample_key or "")
            or params_c.get("n_obs", adata.n_obs) != adata.n_obs
            or not np.isclose(float(params_c.get("pixel_size", 1.0)), pixel_size or 1.0)):
        compartments(adata, sample_key=sample_key, image_key=image_key, pixel_size=pixel_size, layer=layer)
    regions = _regions(samples, images, xy, region_key, tile_size, adata)
    eff_score = _effector_score(adata, layer)
    eff, thr = effector_spots(eff_score, images.to_numpy())
    comp = adata.obs[_keys.COMPARTMENT].astype(str).to_numpy()
    tum = adata.obs[_keys.TUMOR_SPOT].to_numpy(dtype=bool) if _keys.TUMOR_SPOT in adata.obs else comp == "tumor"
    res = spot_tables(comp, adata.obs[_keys.BORDER_DISTANCE].to_numpy(dtype=float), eff, tum, eff_score,
                      images=images, samples=samples, regions=regions,
                      status=adata.uns[_keys.COMPARTMENTS]["table"]["status"].to_dict(),
                      min_spot_fraction=min_spot_fraction, min_infiltration=min_infiltration)
    spot_thr = images.map(thr)
    res.samples["effector_score_threshold"] = spot_thr.groupby(samples).median()
    res.regions["effector_score_threshold"] = spot_thr.groupby(regions).median()
    bad = res.samples.loc[res.samples["phenotype"] == "not assessable", "reason"]
    if len(bad):
        warn("not assessable: " + "; ".join(f"{k} ({v})" for k, v in bad.items()))
    params = {"basis": "spatial (spots)", "sample_key": sample_key or "", "effector_signature": EFFECTOR_SIGNATURE,
              "min_spot_fraction": min_spot_fraction,
              "min_infiltration": min_infiltration, "reference": reference, "tile_size_um": tile_size,
              "region_key": region_key or "", "image_key": image_key or "",
              "pixel_size": pixel_size if pixel_size is not None else 1.0}
    _write(adata, samples, regions, res, params)
    return adata if copy else None


def _effector_score(adata: AnnData, layer) -> np.ndarray:
    """The CD8 T programme of every spot (scored once into ``obsm["tmt_scores"]``)."""
    from ._score import score_once

    msg = f"the effector programme {EFFECTOR_SIGNATURE} (CD8A, CD8B) cannot be scored: its genes are missing."
    try:
        score_once(adata, [EFFECTOR_SIGNATURE], method="mean_ctrl", layer=layer)
    except TmtInputError as e:
        raise TmtInputError(f"the effector programme {EFFECTOR_SIGNATURE} cannot be scored: {e}") from e
    if EFFECTOR_SIGNATURE not in adata.obsm[_keys.SCORES]:
        raise TmtInputError(msg)
    return adata.obsm[_keys.SCORES][EFFECTOR_SIGNATURE].to_numpy(dtype=float)


def _expression(adata, *, sample_key, cell_type_key, layer, reference, min_cd8_fraction, effector_labels, min_cells,
                copy):
    from ._phenotype_expression import expression_phenotype

    check_tmt_key(adata.obs, _keys.PHENOTYPE_SAMPLE, "adata.obs")
    res = expression_phenotype(adata, sample_key=sample_key, cell_type_key=cell_type_key, layer=layer,
                               reference=reference, min_cd8_fraction=min_cd8_fraction, effector_labels=effector_labels,
                               min_cells=min_cells)
    tab, used = res.table, res.params
    cats = list(_keys.PHENOTYPES)
    tab["phenotype"] = pd.Categorical(tab["phenotype"], categories=cats)
    obs_samples = adata.obs[sample_key].astype(str) if sample_key else pd.Series(adata.obs_names, index=adata.obs_names)
    adata.obs[_keys.PHENOTYPE_SAMPLE] = pd.Categorical(obs_samples.map(tab["phenotype"].astype(str)), categories=cats)
    cols = ["phenotype", "confidence", "basis", "reference", "reason", "caveat"]
    adata.uns[_keys.IMMUNE_PHENOTYPE] = {
        "params": {"basis": "expression", "sample_key": sample_key or "", "cell_type_key": cell_type_key or "",
                   "min_cd8_fraction": min_cd8_fraction, "min_cells": min_cells, "layer": layer or "X",
                   "effector_labels": list(effector_labels or DEFAULT_EFFECTORS),
                   "bulk": not sample_key, **used},
        "table": in_natural_order(tab[cols + [c for c in tab.columns if c not in cols]]),
    }
    adata.uns[_keys.colors(_keys.PHENOTYPE_SAMPLE)] = [_keys.PHENOTYPE_COLORS[c] for c in cats]
    return adata if copy else None

"""``tmt.tl.resistance_profile``: the review's resistance mechanisms, per sample, where the transcriptome sees them.

The runner: scores the programmes once, reads cells, positions and sample metadata, and writes the keys; the profile
is computed in :mod:`tmetoolkit._core.sample.resistance`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.sample.cohort import MIN_COHORT_SIZE
from .._core.sample.resistance import APM_LOSS, COHORT_Z, MEASURES, NEEDED, mechanisms, profile
from .._core.sample.suppression import BULK_NEEDED
from .._core.sample.suppression import NEEDED as SUPPRESSION_NEEDED
from .._utils import TmtInputError, TmtKeyError, TmtWarning, in_natural_order, logger, target, warn
from ._checkpoints import detect, is_protein
from ._sample_features import bulk_samples, regions_of, samples_of, warn_if_cells, warn_if_one_sample
from ._score import score_once
from ._suppression import cells_of

__all__ = ["mechanisms", "resistance_profile"]


def resistance_profile(adata: AnnData, *, sample_key: str | None = None, region_key: str | None = None,
                       min_cells: int = 50, layer: str | None = None, bulk: bool = False,
                       copy: bool = False) -> AnnData | None:
    """Resistance mechanisms of the cancer-immunity cycle, per sample, from expression and optional metadata.

    One row per sample and mechanism of ``tmt.tl.mechanisms()`` (the review's Table 1: group, cycle step,
    category, evidence level, strategies). Where the transcriptome can see a mechanism it gets a value and a
    flag: antigen-presentation loss as malignant minus non-malignant APM expression of the same sample (flagged
    below ``-0.5``); IFN-gamma unresponsiveness where T cells reach the tumour: in tumours called inflamed by
    the spatial :func:`tmetoolkit.tl.immune_phenotype` with IFNG+ T/NK cells inside the tumour region, the AUC of
    their malignant cells' IFN-gamma response (Hallmark and Ayers sets) against the malignant cells of the excluded
    and desert tumours, flagged below 0.7 (without positions and that phenotype it is not assessable, since T
    cells counted in a dissociated sample may never have met the malignant cells); MAPK, PI3K, WNT, glycolysis
    and hypoxia programmes in malignant cells, MDSC/Treg/TAM/CAF abundance and checkpoint co-expression (the
    components of :func:`tmetoolkit.tl.immunosuppression`) flagged when cohort-high (robust z > 1, at least three
    samples; the spread taken as at least 0.1, in score units or of a fraction, so that noise in a cohort whose
    programmes barely differ is not flagged). Mechanisms that need DNA, microbiome or HLA data are
    ``needs external data`` unless the sample metadata carry them in ``obs["tmb"]``, ``obs["dysbiosis"]``
    (bool) or ``obs["hla_heterozygosity"]`` (0-1). With ``region_key`` the same profile is made for each tissue
    region, with cohort-relative flags taken across all regions.

    Bulk or pseudobulk data (``bulk=True``, observations are samples) need no annotation: tumour programmes are
    measured on the whole sample, abundance rows use the whole-sample programmes of
    :func:`tmetoolkit.tl.immunosuppression` with ``bulk=True``, and the two rows that need malignant cells told
    apart from the others (antigen presentation, IFN-gamma response) are not assessable.

    Parameters
    ----------
    adata
        Annotated with :func:`tmetoolkit.tl.annotate`; receptor counts of :func:`tmetoolkit.tl.checkpoints` are
        used when present.
    sample_key
        ``obs`` column of samples (default ``"sample"`` if present, else one sample, warned where ``obs`` has
        columns named like samples: patient, donor, library, batch, ...).
    region_key
        Optional ``obs`` column of tissue regions within samples; regions are named ``"<sample>:<region>"`` as in
        :func:`tmetoolkit.tl.immune_phenotype` and :func:`tmetoolkit.tl.immunosuppression`. Cells without a
        region (NaN) count for their sample only.
    min_cells
        With ``region_key``: regions with fewer cells are not assessable.
    layer
        Layer for scoring the programmes.
    bulk
        Observations are samples (bulk RNA-seq or pseudobulk).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets ``uns["tmt_resistance_profile"]``: ``params``;
    ``long`` (one row per sample and mechanism: id, group, mechanism, cycle_steps, category, evidence_level,
    strategies, measure, value, z, flagged, status); ``table`` (samples x mechanism ids, 1 flagged, 0 not
    flagged, NaN not assessable) for :func:`tmetoolkit.get.sample_table` and plots; with ``region_key``,
    ``regions_long`` and ``regions`` (the same per region; ``regions_long`` has ``region`` and ``sample``). The
    programmes it reads are scored once into ``obsm["tmt_scores"]`` / ``uns["tmt_scores"]``, as
    :func:`tmetoolkit.tl.score` writes them.
    """
    adata = target(adata, copy)
    if bulk and (sample_key is not None or region_key is not None):
        msg = ("bulk=True: every observation is a sample, so sample_key= and region_key= do not apply; leave them "
               "out.")
        raise TmtInputError(msg)
    if not bulk and _keys.LINEAGE not in adata.obs:
        msg = ("obs['tmt_lineage'] is missing: run tmt.tl.annotate(adata) first; for bulk or pseudobulk data "
               "(observations are samples) pass bulk=True.")
        raise TmtKeyError(msg)
    if not bulk and _keys.STATE not in adata.obs:
        msg = "obs['tmt_state'] is missing: run tmt.tl.annotate(adata) first."
        raise TmtKeyError(msg)
    if int(min_cells) != min_cells or min_cells < 1:
        msg = f"min_cells must be a positive integer, got {min_cells!r}."
        raise TmtInputError(msg)
    if bulk:
        samples = bulk_samples(adata)
        warn_if_cells(adata, layer, "is read as a bulk sample (bulk=True)")
    else:
        samples = samples_of(adata, sample_key)
        warn_if_one_sample(adata, sample_key, "resistance_profile")
    if region_key is not None:
        region_of, regions = regions_of(adata, samples, region_key)
    if bulk or not is_protein(adata):  # a protein panel has no programmes to score
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TmtWarning)
            score_once(adata, sorted({*NEEDED, *(BULK_NEEDED if bulk else SUPPRESSION_NEEDED)}), layer=layer)
    # IFNG detected once, for the samples and the regions: all NaN where the gene is not measured
    ifng = pd.Series(np.nan, index=adata.obs_names) if bulk else detect(adata, layer, {"IFNG": "IFNG"}, 1)["IFNG"]
    for _, column in MEASURES.values():
        alike = [c for c in adata.obs.columns if column and c != column and str(c).lower().replace(" ", "_") == column]
        if column and column not in adata.obs and alike:
            warn(f"obs[{alike[0]!r}] is not read: the resistance profile reads sample metadata from obs[{column!r}]; "
                 "rename the column to use it")
    inputs = {"cells": None if bulk else cells_of(adata), "ifng": ifng,
              "border_distance": (adata.obs[_keys.BORDER_DISTANCE].to_numpy(dtype=float)
                                  if _keys.BORDER_DISTANCE in adata.obs else None),
              "metadata": {c: adata.obs[c] for _, c in MEASURES.values() if c is not None and c in adata.obs}}
    scores = adata.obsm.get(_keys.SCORES, pd.DataFrame(index=adata.obs_names))
    per_sample = profile(samples, scores, **inputs, phenotype=_spatial_phenotype(adata))
    long, table = per_sample.long, per_sample.table
    params = {"sample_key": "" if bulk else (sample_key or ("sample" if "sample" in adata.obs else "")),
              "layer": layer or "X", "bulk": bulk, "apm_loss_threshold": APM_LOSS, "cohort_z_threshold": COHORT_Z,
              "cohort_flags": len(table) >= MIN_COHORT_SIZE}
    result = {"params": params, "long": long, "table": in_natural_order(table)}
    if region_key is not None:
        too_small = set(regions.index[regions["n_cells"] < min_cells])
        per_region = profile(region_of, scores, **inputs, unit="regions", too_small=too_small, min_cells=min_cells,
                             phenotype=_spatial_phenotype(adata, region_key))
        r_long, r_table = per_region.long, per_region.table
        r_long = r_long.rename(columns={"sample": "region"})
        r_long.insert(1, "sample", regions.loc[r_long["region"], "sample"].to_numpy())
        params.update(region_key=region_key, min_cells=min_cells)
        result.update(regions_long=r_long, regions=r_table)
    adata.uns[_keys.RESISTANCE_PROFILE] = result
    logger.info("resistance profile: %d samples x %d mechanisms%s", len(table), table.shape[1],
                f", {len(result['regions'])} regions" if region_key is not None else "")
    return adata if copy else None


def _spatial_phenotype(adata: AnnData, region_key: str | None = None) -> pd.Series:
    """The spatial immune phenotype per sample, or per region when it was called with the same ``region_key``."""
    ph = adata.uns.get(_keys.IMMUNE_PHENOTYPE)
    if not isinstance(ph, dict) or (region_key is not None and ph.get("params", {}).get("region_key") != region_key):
        return pd.Series(dtype=object)
    tab = ph.get("regions" if region_key is not None else "table")
    if not isinstance(tab, pd.DataFrame) or "basis" not in tab:
        return pd.Series(dtype=object)
    return tab["phenotype"].astype(str).where(tab["basis"].astype(str).str.startswith("spatial"))

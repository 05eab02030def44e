"""``tmt.tl.immunosuppression``: a per-sample composite whose components stay visible, and per-cell scores.

The runner: scores the programmes once, reads the cells and writes the keys; the components and the composite are
computed in :mod:`tmetoolkit._core.sample.suppression`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.sample.suppression import (
    BULK_NEEDED,
    COMPOSITE,
    NEEDED,
    Cells,
    Suppression,
    bulk_suppression,
    cell_suppression,
)
from .._utils import TmtInputError, TmtKeyError, TmtWarning, check_tmt_key, in_natural_order, target
from ._checkpoints import is_protein
from ._sample_features import bulk_samples, regions_of, samples_of, warn_if_cells, warn_if_one_sample
from ._score import score_once


def immunosuppression(
    adata: AnnData, *, sample_key: str | None = None, region_key: str | None = None, min_cells: int = 50,
    layer: str | None = None, bulk: bool = False, copy: bool = False
) -> AnnData | None:
    """Measure immunosuppression per cell and per sample, keeping every component visible.

    Per cell, a suppressive programme score where it means something: monocytes/macrophages (M2-like and
    MDSC mediators), neutrophils (PMN-MDSC-like), fibroblasts (myCAF and TGF-beta) and Tregs (activated Treg).
    Per sample, the components in ``COMPONENTS`` (Treg fraction and activation, MDSC-like fraction, M2/M1
    balance, myCAF fraction and TGF-beta, checkpoint receptor co-expression and ligands, IDO1/adenosine,
    hypoxia, glycolysis) and a composite: the mean of the components' robust z-scores across samples, each
    component's spread taken as at least 0.1 so that one barely varying across the cohort adds no noise. A
    component that cannot be measured (genes missing, fewer than five cells of the type it is measured in, MDSC-like
    cells that annotate had too few monocytes and neutrophils to tell apart) is NaN and listed, never zero. With
    ``region_key`` the same components and composite are computed for each region of tissue (pathologist
    annotations, niches), so that the suppressed regions of a sample stand out.

    On a protein panel called by :func:`tmetoolkit.tl.annotate` the components come from the cell calls and the
    marker gates (Treg fraction, M2/M1 balance, receptors on CD8 T cells and PD-L1/PD-L2 on tumour cells and
    macrophages after :func:`tmetoolkit.tl.checkpoints`); programme components are missing.

    Bulk or pseudobulk data (``bulk=True``, observations are samples) have no cells to count: each component is
    then a programme of the whole sample (``BULK_COMPONENTS``: Treg, activated-Treg, MDSC, M2-minus-M1, myCAF,
    TGF-beta, co-inhibitory receptor and ligand, IDO/adenosine, hypoxia and glycolysis programmes), compared
    across the cohort in the same way.

    Parameters
    ----------
    adata
        Annotated with :func:`tmetoolkit.tl.annotate` (``obs["tmt_lineage"]``, ``obs["tmt_state"]``), or bulk
        samples with ``bulk=True``.
    sample_key
        ``obs`` column of samples (default ``"sample"`` if present, else one sample, warned where ``obs`` has
        columns named like samples: patient, donor, library, batch, ...).
    region_key
        Optional ``obs`` column of tissue regions within samples (e.g. ``"region"`` with "Invasive Tumor",
        "Stroma", ...). Regions are named ``"<sample>:<region>"``, as in :func:`tmetoolkit.tl.immune_phenotype`
        with the same ``region_key``, so the two ``regions`` tables join on their index. Cells without a region
        (NaN) count for their sample only.
    min_cells
        With ``region_key``: regions with fewer cells get no components (their fractions would rest on a handful
        of cells).
    layer
        Layer for scoring the programmes.
    bulk
        Observations are samples (bulk RNA-seq or pseudobulk): whole-sample programmes, no annotation needed.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets:

    ``obs["tmt_suppression_score"]``
        Per-cell suppressive programme score (NaN for cells of other lineages, and for every cell of a protein
        panel, which has no programmes to score); not for bulk data.
    ``uns["tmt_immunosuppression"]``
        ``params``; ``table`` (samples x components, ``composite``, ``n_components``, ``missing_components``);
        ``components`` (what each component measures); with ``region_key``, ``regions`` (one row per region:
        ``sample``, ``region``, ``n_cells``, the components, a ``composite`` of robust z-scores across all
        regions, ``n_components``, ``missing_components`` and ``reason``).
    ``obsm["tmt_scores"]``, ``uns["tmt_scores"]``
        The suppressive programmes it reads, scored once as :func:`tmetoolkit.tl.score` writes them.
    """
    adata = target(adata, copy)
    if bulk:
        if sample_key is not None or region_key is not None:
            msg = ("bulk=True: every observation is a sample, so sample_key= and region_key= do not apply; leave "
                   "them out.")
            raise TmtInputError(msg)
        bulk_samples(adata)
        warn_if_cells(adata, layer, "is read as a bulk sample (bulk=True)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TmtWarning)
            score_once(adata, BULK_NEEDED, layer=layer)
        _write(adata, bulk_suppression(adata.obsm[_keys.SCORES]), sample_key=None, layer=layer, bulk=True)
        return adata if copy else None
    if _keys.LINEAGE not in adata.obs or _keys.STATE not in adata.obs:
        msg = ("obs['tmt_lineage'] and obs['tmt_state'] are missing: run tmt.tl.annotate(adata) first; for bulk or "
               "pseudobulk data (observations are samples) pass bulk=True.")
        raise TmtKeyError(msg)
    check_tmt_key(adata.obs, _keys.SUPPRESSION_SCORE, "adata.obs")
    if int(min_cells) != min_cells or min_cells < 1:
        msg = f"min_cells must be a positive integer, got {min_cells!r}."
        raise TmtInputError(msg)
    samples = samples_of(adata, sample_key)
    warn_if_one_sample(adata, sample_key, "immunosuppression")
    region_of, regions = regions_of(adata, samples, region_key) if region_key is not None else (None, None)
    # a protein panel has no programmes to score: its components come from cell calls and gates
    if not is_protein(adata):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TmtWarning)
            score_once(adata, NEEDED, layer=layer)
    result = cell_suppression(cells_of(adata), samples, region_of=region_of, regions=regions, min_cells=min_cells)
    adata.obs[_keys.SUPPRESSION_SCORE] = result.cell_score
    _write(adata, result, sample_key=sample_key, layer=layer, bulk=False, region_key=region_key, min_cells=min_cells)
    return adata if copy else None


def cells_of(adata: AnnData) -> Cells:
    """What the per-sample components read from annotated cells: scores, labels, checkpoint calls, annotate's rules."""
    rules = adata.uns.get(_keys.ANNOTATE, {}).get("rules")
    return Cells(
        scores=adata.obsm.get(_keys.SCORES, pd.DataFrame(index=adata.obs_names)),
        lineage=adata.obs[_keys.LINEAGE].astype(str),
        state=adata.obs[_keys.STATE].astype(str),
        n_receptors=adata.obs.get(_keys.CHECKPOINT_N, pd.Series(np.nan, index=adata.obs_names)).astype(float),
        detection=adata.obsm.get(_keys.CHECKPOINT_DETECTION),
        protein=is_protein(adata),
        rules=rules if isinstance(rules, pd.DataFrame) else None,
        untold=untold_splits(adata),
    )


def untold_splits(adata: AnnData) -> pd.Series:
    """Per cell, whether annotate's split of an MDSC-like state from its sibling cells (``uns["tmt_annotate"]
    ["splits"]``) was too few cells to tell in the cell's sample; False where no split applies."""
    annotated = adata.uns.get(_keys.ANNOTATE, {})
    splits = annotated.get("splits")
    untold = pd.Series(False, index=adata.obs_names)
    if not isinstance(splits, pd.DataFrame) or not len(splits):
        return untold
    key = annotated.get("params", {}).get("sample_key")  # the samples annotate split within, if still in obs
    samples = samples_of(adata, key if key in adata.obs else None).astype(str)
    few = splits[splits["state"].isin(["M-MDSC-like", "PMN-MDSC-like"]) & splits["too_few"].astype(bool)]
    lineage = adata.obs[_keys.LINEAGE].astype(str)
    for row in few.itertuples():
        untold |= (lineage == row.lineage) & (samples == str(row.sample))
    return untold


def _write(adata: AnnData, result: Suppression, *, sample_key, layer, bulk: bool, region_key: str | None = None,
           min_cells: int | None = None) -> None:
    """``uns["tmt_immunosuppression"]``."""
    params = {"sample_key": "" if bulk else (sample_key or ("sample" if "sample" in adata.obs else "")),
              "layer": layer or "X", "bulk": bulk, "composite": COMPOSITE}
    out = {"params": params, "table": in_natural_order(result.table), "components": result.components}
    if result.regions is not None:
        params.update(region_key=region_key, min_cells=min_cells)
        out["regions"] = in_natural_order(result.regions)
    adata.uns[_keys.IMMUNOSUPPRESSION] = out

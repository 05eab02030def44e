"""``tmt.tl.checkpoints``: which co-inhibitory receptors each T/NK cell expresses, and the ligands around them.

The runner: reads the matrix or the protein gates and writes the keys; the profile is computed in
:mod:`tmetoolkit._core.checkpoints`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.checkpoints import LIGANDS, RECEPTORS, detect_columns, profile, protein_detection
from .._core.checkpoints import smooth as smooth_detection
from .._matrix import get_matrix
from .._utils import (
    TmtInputError,
    TmtKeyError,
    TmtMatrixError,
    check_tmt_key,
    checked_number,
    in_natural_order,
    target,
    warn,
)
from ..pp._check import corrected_values_message, inspect, refuse_non_finite
from ..sig._genes import GeneIndex
from ._sample_features import samples_of, warn_if_one_sample


def detect(adata: AnnData, layer, genes: dict[str, str], min_counts: float) -> pd.DataFrame:
    """Cells x genes detection; NaN where a gene is absent.

    Raw counts: at least ``min_counts``. Any other scale (TPM, log1p, log2(x + eps) with negatives, shifted log
    values): above the cell's floor, the value its zero counts map to (``_matrix.row_floor``), so a constant
    added to every value, or a log of a different pseudocount, changes no call. Scaled (z-scored) data are
    refused: above zero there means above the gene's mean, not expressed; so are batch-corrected log values
    (``pp._check.corrected_values_message``), where no common floor is left, and NaN or infinite values.
    Protein intensities not gated by :func:`tmetoolkit.tl.annotate` count above zero.
    """
    refuse_non_finite(adata, layer, "tell expressed from not expressed here")
    report = inspect(adata, layer, full_scan=False)
    if report.state == "scaled":
        raise TmtInputError("cannot tell expressed from not expressed here: " + " ".join(report.problems))
    corrected = corrected_values_message(adata, layer) if report.state == "lognorm" else None
    if corrected:  # every gene sits above the row's floor: every receptor would be detected
        raise TmtMatrixError("cannot tell expressed from not expressed here: " + corrected)
    found = GeneIndex(adata.var_names, report.species).match(list(genes))
    cols = [found[g][0] for g in genes if g in found]
    out = pd.DataFrame(np.nan, index=adata.obs_names, columns=list(genes.values()))
    if not cols:
        return out
    det = detect_columns(get_matrix(adata, layer), cols, state=report.state, min_counts=min_counts)
    names = [genes[g] for g in genes if g in found]
    out[names] = det.astype(float)
    return out


def is_protein(adata: AnnData) -> bool:
    """Whether :func:`tmetoolkit.tl.annotate` called these cells from a protein panel."""
    params = adata.uns.get(_keys.ANNOTATE, {}).get("params", {})
    return isinstance(params, dict) and params.get("input_state") == "protein"


def checkpoints(
    adata: AnnData,
    *,
    sample_key: str | None = None,
    layer: str | None = None,
    min_counts: float = 1,
    smooth: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Co-inhibitory receptor profile of every T and NK cell, and checkpoint ligands on tumour and myeloid cells.

    A receptor (PD-1/PDCD1, TIM-3/HAVCR2, LAG-3, TIGIT, CTLA-4) counts as expressed when its transcript is
    detected (at least ``min_counts`` counts in raw data; in normalised or log data above the value the cell's zero
    counts map to, its minimum, so log2(x + 0.001) with negative values and shifted log values get the calls that
    log1p values get; z-scored and batch-corrected (ComBat) values are refused); on a protein panel annotated by
    :func:`tmetoolkit.tl.annotate`, when the cell is above the marker's gate (PD-1, TIM-3, LAG-3, TIGIT, CTLA-4,
    PD-L1 and PD-L2 channels; a channel that shows one population is gated at its upper tail, see
    :func:`tmetoolkit.pl.gates`). Single-cell data miss many transcripts, so counts of co-expressed
    receptors are lower bounds; with ``smooth=True`` a receptor also counts when at least half of the cell's
    neighbours in ``adata.obsp["connectivities"]`` (run :func:`scanpy.pp.neighbors`) detect it.

    Parameters
    ----------
    adata
        Annotated with :func:`tmetoolkit.tl.annotate` (uses ``obs["tmt_lineage"]``).
    sample_key
        ``obs`` column of samples for the per-sample table; default ``"sample"`` if present, else one sample.
    layer
        Layer to read instead of ``X``.
    min_counts
        Detection threshold for raw counts.
    smooth
        Recover dropouts from graph neighbours (majority of the neighbours).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets:

    ``obsm["tmt_checkpoints"]``
        Cells x receptors and ligands, 1 where detected, 0 where not, NaN where the gene is not measured.
    ``obs["tmt_checkpoint_n"]``
        Number of measured receptors expressed by each T/NK cell (NaN for other cells, and where no receptor
        gene is measured).
    ``obs["tmt_checkpoint_pattern"]``
        The receptors expressed, e.g. ``"PD-1+TIM-3+"``, or ``"none"``; empty for other cells.
    ``uns["tmt_checkpoints"]``
        ``params`` and ``table``: per sample, the fraction of CD8 T cells with each receptor, with >=1, >=2 and
        >=3 receptors (NaN where fewer receptors are measured), and the fraction of malignant and myeloid cells
        with each ligand.
    """
    min_counts = checked_number(min_counts, "min_counts", "counts a gene needs in a cell of raw counts", low_open=True)
    adata = target(adata, copy)
    if _keys.LINEAGE not in adata.obs:
        msg = "obs['tmt_lineage'] is missing: run tmt.tl.annotate(adata) first."
        raise TmtKeyError(msg)
    check_tmt_key(adata.obs, (_keys.CHECKPOINT_N, _keys.CHECKPOINT_PATTERN), "adata.obs")
    if is_protein(adata):
        det = protein_detection(adata.obsm.get(_keys.MARKER_EVIDENCE), adata.obs_names)
    else:
        det = detect(adata, layer, {**RECEPTORS, **LIGANDS}, min_counts)
    if smooth:
        if "connectivities" not in adata.obsp:
            msg = "smooth=True needs a neighbour graph in adata.obsp['connectivities']; run scanpy.pp.neighbors first."
            raise TmtKeyError(msg)
        det = smooth_detection(det, adata.obsp["connectivities"])
    warn_if_one_sample(adata, sample_key, "checkpoints")
    result = profile(det, adata.obs[_keys.LINEAGE], samples_of(adata, sample_key), protein=is_protein(adata))
    raw_genes = set(adata.raw.var_names.astype(str).str.upper()) if adata.raw is not None and layer is None else set()
    in_raw = [gene for gene, name in RECEPTORS.items() if name in result.missing and gene in raw_genes]
    if in_raw:
        warn(f"adata.raw holds {', '.join(in_raw)}, which X lacks (highly variable genes?): for their receptors, run "
             "the tools on r = adata.raw.to_adata() (tmetoolkit run --use-raw) and copy the tmt_ keys back.")
    adata.obsm[_keys.CHECKPOINT_DETECTION] = det
    adata.obs[_keys.CHECKPOINT_N] = result.n
    adata.obs[_keys.CHECKPOINT_PATTERN] = result.pattern
    adata.uns[_keys.CHECKPOINTS] = {
        "params": {"sample_key": sample_key or ("sample" if "sample" in adata.obs else ""), "layer": layer or "X",
                   "min_counts": min_counts, "smooth": smooth, "missing_receptors": ",".join(result.missing)},
        "table": in_natural_order(result.table),
    }
    return adata if copy else None

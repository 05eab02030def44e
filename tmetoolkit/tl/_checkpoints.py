"""``tmt.tl.checkpoints``: which co-inhibitory receptors each T/NK cell expresses, and the ligands around them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._matrix import above_floor, get_matrix, iter_rows, row_floor
from .._utils import TmtInputError, check_tmt_key, logger, warn
from ..pp._check import inspect
from ..sig._genes import GeneIndex
from ._sample_features import samples_of

RECEPTORS = {"PDCD1": "PD-1", "HAVCR2": "TIM-3", "LAG3": "LAG-3", "TIGIT": "TIGIT", "CTLA4": "CTLA-4"}
LIGANDS = {"CD274": "PD-L1", "PDCD1LG2": "PD-L2", "LGALS9": "Galectin-9", "PVR": "CD155", "NECTIN2": "CD112",
           "FGL1": "FGL1", "CEACAM1": "CEACAM1"}
# protein panels: receptor or ligand -> canonical marker of tmt.tl._annotate_protein.MARKER_ALIASES
PROTEIN_MARKERS = {"PD-1": "PD1", "TIM-3": "TIM3", "LAG-3": "LAG3", "TIGIT": "TIGIT", "CTLA-4": "CTLA4",
                   "PD-L1": "PDL1", "PD-L2": "PDL2"}
T_NK = ("CD8 T", "CD4 T", "NK")
LIGAND_CELLS = ("Malignant/Epithelial", "Monocyte/Macrophage")


def detect(adata: AnnData, layer, genes: dict[str, str], min_counts: float) -> pd.DataFrame:
    """Cells x genes detection; NaN where a gene is absent.

    Raw counts: at least ``min_counts``. Any other scale (TPM, log1p, log2(x + eps) with negatives, shifted log
    values): above the cell's floor, the value its zero counts map to (``_matrix.row_floor``), so a constant
    added to every value, or a log of a different pseudocount, changes no call. Scaled (z-scored) data are
    refused: above zero there means above the gene's mean, not expressed. Protein intensities not gated by
    :func:`tmetoolkit.tl.annotate` count above zero.
    """
    report = inspect(adata, layer, full_scan=False)
    if report.state == "scaled":
        raise TmtInputError("cannot tell expressed from not expressed here: " + " ".join(report.problems))
    found = GeneIndex(adata.var_names, report.species).match(list(genes))
    cols = [found[g][0] for g in genes if g in found]
    out = pd.DataFrame(np.nan, index=adata.obs_names, columns=list(genes.values()))
    if not cols:
        return out
    counts = report.state == "counts"
    X = get_matrix(adata, layer)
    det = np.zeros((adata.n_obs, len(cols)), dtype=bool)
    for start, stop, block in iter_rows(X):
        sub = block[:, cols]
        sub = sub.toarray() if sp.issparse(sub) else np.asarray(sub, dtype=np.float64)
        if counts:
            det[start:stop] = sub >= max(min_counts, np.finfo(float).tiny)
        elif report.state == "protein":  # channels not gated by annotate: above zero, as before
            det[start:stop] = sub > 0
        else:
            det[start:stop] = above_floor(sub, row_floor(block))
    names = [genes[g] for g in genes if g in found]
    out[names] = det.astype(float)
    return out


def is_protein(adata: AnnData) -> bool:
    """Whether :func:`tmetoolkit.tl.annotate` called these cells from a protein panel."""
    params = adata.uns.get(_keys.ANNOTATE, {}).get("params", {})
    return isinstance(params, dict) and params.get("input_state") == "protein"


def detect_protein(adata: AnnData) -> pd.DataFrame:
    """Cells x receptors and ligands from a protein panel: 1 above the marker's gate (``annotate``'s evidence
    ``obsm["tmt_scores"]["<marker>+"]``), 0 below, NaN where the panel has no such channel."""
    evidence = adata.obsm.get(_keys.SCORES)
    cols = list(RECEPTORS.values()) + list(LIGANDS.values())
    out = pd.DataFrame(np.nan, index=adata.obs_names, columns=cols)
    for name, marker in PROTEIN_MARKERS.items():
        if isinstance(evidence, pd.DataFrame) and f"{marker}+" in evidence.columns:
            out[name] = (evidence[f"{marker}+"].to_numpy(dtype=float) > 0).astype(float)
    return out


def _smooth(det: pd.DataFrame, conn) -> pd.DataFrame:
    """Detection recovered from graph neighbours: a gene counts as expressed when the cell itself or at least half
    of its neighbours (weighted by the graph) detect it."""
    W = sp.csr_matrix(conn, dtype=float)
    deg = np.asarray(W.sum(axis=1)).ravel()
    own = np.nan_to_num(det.to_numpy())
    nb = (W @ own) / np.where(deg > 0, deg, 1)[:, None]
    out = pd.DataFrame(((own > 0) | (nb >= 0.5)).astype(float), index=det.index, columns=det.columns)
    return out.where(det.notna())


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
    log1p values get; z-scored data are refused); on a protein panel
    annotated by :func:`tmetoolkit.tl.annotate`, when the cell is above the marker's gate (PD-1, TIM-3, LAG-3,
    TIGIT, CTLA-4, PD-L1 and PD-L2 channels). Single-cell data miss many transcripts, so counts of co-expressed
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
    adata = adata.copy() if copy else adata
    if _keys.LINEAGE not in adata.obs:
        msg = "obs['tmt_lineage'] is missing: run tmt.tl.annotate(adata) first."
        raise KeyError(msg)
    for key in (_keys.CHECKPOINT_N, _keys.CHECKPOINT_PATTERN):
        check_tmt_key(adata.obs, key, "adata.obs")
    det = detect_protein(adata) if is_protein(adata) else detect(adata, layer, {**RECEPTORS, **LIGANDS}, min_counts)
    if smooth:
        if "connectivities" not in adata.obsp:
            msg = "smooth=True needs a neighbour graph in adata.obsp['connectivities']; run scanpy.pp.neighbors first."
            raise KeyError(msg)
        det = _smooth(det, adata.obsp["connectivities"])
    rec = det[list(RECEPTORS.values())]
    missing = [c for c in rec.columns if rec[c].isna().all()]
    if missing:
        warn(f"receptor genes not measured, reported as missing (not as negative): {', '.join(missing)}")
    lineage = adata.obs[_keys.LINEAGE].astype(str)
    tnk = lineage.isin(T_NK).to_numpy()
    if not tnk.any():
        logger.info("no T or NK cells annotated: receptor profiles not computed")
    measured = [c for c in rec.columns if c not in missing]
    n = rec[measured].sum(axis=1).where(tnk & bool(measured))  # no receptor measured: unknown, not zero
    pattern = np.full(adata.n_obs, "", dtype=object)
    for c in measured:  # one vectorised pass per receptor, not a Python loop over cells
        pattern = pattern + np.where(rec[c].to_numpy() == 1, f"{c}+", "")
    pattern = pd.Series(np.where(pattern == "", "none", pattern), index=adata.obs_names)
    adata.obsm[_keys.CHECKPOINT_DETECTION] = det
    adata.obs[_keys.CHECKPOINT_N] = n.astype(float)
    adata.obs[_keys.CHECKPOINT_PATTERN] = pd.Categorical(pattern.where(tnk & bool(measured)))

    samples = samples_of(adata, sample_key)
    rows = {}
    lin_all = lineage.to_numpy()
    for s, idx in samples.groupby(samples, observed=True).indices.items():  # positions: obs_names may repeat
        lin = lin_all[idx]
        cd8 = idx[lin == "CD8 T"]
        row = {"n_cd8": len(cd8)}
        for c in rec.columns:
            row[f"cd8_frac_{c}"] = rec[c].iloc[cd8].mean() if len(cd8) and c in measured else np.nan
        for k in (1, 2, 3):
            # "k or more" cannot be seen with fewer than k receptors measured: missing, not 0
            row[f"cd8_frac_ge{k}_receptors"] = (n.iloc[cd8] >= k).mean() if len(cd8) and len(measured) >= k else np.nan
        for cell in LIGAND_CELLS:
            ids = idx[lin == cell]
            tag = "malignant" if cell.startswith("Malignant") else "myeloid"
            for c in LIGANDS.values():
                row[f"{tag}_frac_{c}"] = det[c].iloc[ids].mean() if len(ids) else np.nan
        rows[s] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    adata.uns[_keys.CHECKPOINTS] = {
        "params": {"sample_key": sample_key or ("sample" if "sample" in adata.obs else ""), "layer": layer or "X",
                   "min_counts": min_counts, "smooth": smooth, "missing_receptors": ",".join(missing)},
        "table": table,
    }
    return adata if copy else None

"""Co-inhibitory receptors and checkpoint ligands: detection per cell, receptor profiles of T/NK cells and fractions
per sample. Matrices and tables in, a :class:`CheckpointProfile` out; the runner is ``tmetoolkit.tl._checkpoints``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._matrix import above_floor, iter_rows, row_floor
from .._utils import logger, warn

RECEPTORS = {"PDCD1": "PD-1", "HAVCR2": "TIM-3", "LAG3": "LAG-3", "TIGIT": "TIGIT", "CTLA4": "CTLA-4"}
LIGANDS = {"CD274": "PD-L1", "PDCD1LG2": "PD-L2", "LGALS9": "Galectin-9", "PVR": "CD155", "NECTIN2": "CD112",
           "FGL1": "FGL1", "CEACAM1": "CEACAM1"}
# protein panels: receptor or ligand -> canonical marker of tmetoolkit._core.annotation.protein.MARKER_ALIASES
PROTEIN_MARKERS = {"PD-1": "PD1", "TIM-3": "TIM3", "LAG-3": "LAG3", "TIGIT": "TIGIT", "CTLA-4": "CTLA4",
                   "PD-L1": "PDL1", "PD-L2": "PDL2"}
T_NK = ("CD8 T", "CD4 T", "NK")
LIGAND_CELLS = ("Malignant/Epithelial", "Monocyte/Macrophage")


def detect_columns(X, cols: list[int], *, state: str, min_counts: float) -> np.ndarray:
    """Cells x ``cols`` of ``X`` (any matrix ``_matrix.iter_rows`` walks), True where detected.

    ``state`` is the input state of ``tmetoolkit.pp.check_input``: raw ``counts`` need at least ``min_counts``;
    ``protein`` intensities count above zero; any other scale counts above the cell's floor (``_matrix.row_floor``).
    """
    det = np.zeros((X.shape[0], len(cols)), dtype=bool)
    for start, stop, block in iter_rows(X):
        sub = block[:, cols]
        sub = sub.toarray() if sp.issparse(sub) else np.asarray(sub, dtype=np.float64)
        if state == "counts":
            det[start:stop] = sub >= max(min_counts, np.finfo(float).tiny)
        elif state == "protein":  # channels not gated by annotate: above zero, as before
            det[start:stop] = sub > 0
        else:
            det[start:stop] = above_floor(sub, row_floor(block))
    return det


def protein_detection(evidence: pd.DataFrame | None, index: pd.Index) -> pd.DataFrame:
    """Cells x receptors and ligands from a protein panel: 1 above the marker's gate (``annotate``'s evidence column
    ``"<marker>+"``), 0 below, NaN where the panel has no such channel."""
    cols = list(RECEPTORS.values()) + list(LIGANDS.values())
    out = pd.DataFrame(np.nan, index=index, columns=cols)
    for name, marker in PROTEIN_MARKERS.items():
        if isinstance(evidence, pd.DataFrame) and f"{marker}+" in evidence.columns:
            out[name] = (evidence[f"{marker}+"].to_numpy(dtype=float) > 0).astype(float)
    return out


def smooth(det: pd.DataFrame, conn) -> pd.DataFrame:
    """Detection recovered from graph neighbours: a gene counts as expressed when the cell itself or at least half
    of its neighbours (weighted by the graph ``conn``) detect it."""
    W = sp.csr_matrix(conn, dtype=float)
    deg = np.asarray(W.sum(axis=1)).ravel()
    own = np.nan_to_num(det.to_numpy())
    nb = (W @ own) / np.where(deg > 0, deg, 1)[:, None]
    out = pd.DataFrame(((own > 0) | (nb >= 0.5)).astype(float), index=det.index, columns=det.columns)
    return out.where(det.notna())


@dataclass(frozen=True)
class CheckpointProfile:
    """Per cell, ``n`` receptors expressed and their ``pattern`` (T/NK cells only); receptors ``missing`` from the
    data; ``table``: per sample, receptor fractions of CD8 T cells and ligand fractions of malignant and myeloid
    cells."""

    n: pd.Series
    pattern: pd.Categorical
    missing: list[str]
    table: pd.DataFrame


def profile(det: pd.DataFrame, lineage: pd.Series, samples: pd.Series, protein: bool = False) -> CheckpointProfile:
    """Receptor profiles and per-sample fractions from the detection table ``det`` (cells x receptors and ligands,
    1/0, NaN where not measured), the ``lineage`` and the sample of every cell; ``protein``: ``det`` comes from
    a protein panel's channels (the warning about missing receptors says how to name one)."""
    rec = det[list(RECEPTORS.values())]
    missing = [c for c in rec.columns if rec[c].isna().all()]
    if missing:
        how = (f"; a channel of one that annotate did not recognise is named with tmt.tl.annotate(markers="
               f"{{'{PROTEIN_MARKERS[missing[0]]}': '<channel>'}})" if protein else "")
        warn(f"receptor {'channels' if protein else 'genes'} not measured, reported as missing (not as negative): "
             f"{', '.join(missing)}{how}")
    lineage = lineage.astype(str)
    tnk = lineage.isin(T_NK).to_numpy()
    if not tnk.any():
        logger.info("no T or NK cells annotated: receptor profiles not computed")
    measured = [c for c in rec.columns if c not in missing]
    n = rec[measured].sum(axis=1).where(tnk & bool(measured))  # no receptor measured: unknown, not zero
    pattern = np.full(len(det), "", dtype=object)
    for c in measured:  # one vectorised pass per receptor, not a Python loop over cells
        pattern = pattern + np.where(rec[c].to_numpy() == 1, f"{c}+", "")
    pattern = pd.Series(np.where(pattern == "", "none", pattern), index=det.index)

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
    return CheckpointProfile(n.astype(float), pd.Categorical(pattern.where(tnk & bool(measured))), missing,
                             pd.DataFrame.from_dict(rows, orient="index"))

"""Each sample alone: a programme against the marker genes of the sample's other cell types.

A sample's genes are ranked within the sample (control probes left out; ties share their mean rank), so any
monotone transform of its values (counts, CPM, log2 with negative values, a shift) gives the same ranks. The null
for a programme of ``k`` genes is every set of ``k`` genes drawn from the lineage markers of the cell types other
than T and NK cells (``signatures/lineage_markers.yaml``: B, plasma, myeloid, DC, mast, fibroblast, pericyte, smooth
muscle, endothelial and epithelial identity genes) found in the same sample. These are genes of the same kind as the
programme's, cell-type-restricted transcripts whose level in a sample follows how many of their cells it holds,
whereas random genes of the whole matrix are a platform's mix of housekeeping and silent genes (a 500-gene panel,
a whole transcriptome and the simulated panel put T-cell genes of the same tumour at very different percentiles).

The programme's mean within-sample percentile is set against the mean of ``k`` genes drawn without replacement from
that pool, whose mean and SD are exact (finite-population sampling: SD ``s * sqrt((N - k) / (k (N - 1)))`` for a
pool of ``N`` genes with SD ``s``): ``z = 0`` is the mean of random marker sets of the sample, 1.645 is above 95%
of them (normal approximation). Nothing here depends on the other samples of the cohort.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from anndata import AnnData

# lineage-marker groups of the cell types other than T and NK cells (HLA class II is left out: every
# antigen-presenting cell and IFN-gamma-exposed tumour cells express it, and the IFN-gamma programme holds HLA-DRA)
POOL_GROUPS = ("b", "plasma", "macrophage", "monocyte", "neutrophil", "cdc1", "cdc2", "mregdc", "pdc", "mast",
               "fibroblast", "pericyte", "smooth_muscle", "endothelial", "epithelial", "squamous")
T_CELL_GROUPS = ("t_core", "cd8")  # CD3D/E/G, CD2, CD8A/B: T-cell identity genes of the same table
MIN_POOL = 20  # marker genes found in the data, below which the null is not drawn
MIN_PROGRAMME = 3


@lru_cache(maxsize=1)
def marker_groups() -> dict[str, tuple[str, ...]]:
    """The gene groups of the packaged lineage marker table."""
    import yaml

    from .._core.annotation.markers import _marker_file

    spec = yaml.safe_load(_marker_file().read_text())
    return {k: tuple(v) for k, v in spec["groups"].items()}


def t_cell_genes() -> tuple[str, ...]:
    groups = marker_groups()
    return tuple(g for k in T_CELL_GROUPS for g in groups[k])


def pool_genes() -> tuple[str, ...]:
    groups = marker_groups()
    return tuple(dict.fromkeys(g for k in POOL_GROUPS for g in groups[k]))


def _within_sample_percentiles(X, keep: np.ndarray) -> np.ndarray:
    """Rank of every kept gene within its sample, as a fraction of the kept genes (ties share their mean rank)."""
    from scipy.stats import rankdata

    from .._matrix import iter_rows

    out = []
    for _, _, block in iter_rows(X):
        dense = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        out.append(rankdata(dense[:, keep].astype(np.float64), axis=1) / keep.sum())
    return np.vstack(out)


def marker_null_z(bulk: AnnData, programmes: dict[str, tuple[str, ...]], species: str) -> tuple[pd.DataFrame, dict]:
    """Per sample and programme, its mean within-sample percentile as a z against random sets of the same size drawn
    from the marker genes of the other cell types in that sample.

    Returns the samples x programmes z (NaN where fewer than ``MIN_PROGRAMME`` programme genes or ``MIN_POOL`` pool
    genes are found) and what was used (genes found per programme, the pool's size).
    """
    from .._matrix import get_matrix
    from ..sig._genes import GeneIndex, control_probes

    keep = ~control_probes(bulk.var_names)
    position = np.full(bulk.n_vars, -1)
    position[keep] = np.arange(int(keep.sum()))
    index = GeneIndex(bulk.var_names, species)

    def columns(genes) -> np.ndarray:
        found = index.match(genes)
        cols = {c for g in genes for c in found.get(g, ()) if keep[c]}
        return np.array(sorted(position[c] for c in cols), dtype=np.int64)

    pct = _within_sample_percentiles(get_matrix(bulk, None), keep)
    out = pd.DataFrame(index=bulk.obs_names)
    used: dict = {"pool_genes_found": 0}
    for name, genes in programmes.items():
        prog = columns(genes)
        pool = np.setdiff1d(columns(pool_genes()), prog)
        used["pool_genes_found"] = max(used["pool_genes_found"], int(pool.size))
        used[f"{name}_genes_found"] = int(prog.size)
        k, n = prog.size, pool.size
        if k < MIN_PROGRAMME or n < MIN_POOL:
            out[name] = np.nan
            continue
        centre = pct[:, pool].mean(axis=1)
        sd = pct[:, pool].std(axis=1) * np.sqrt((n - k) / (k * (n - 1)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (pct[:, prog].mean(axis=1) - centre) / sd
    return out, used

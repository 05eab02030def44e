"""``tmt.datasets.to_spots``: cell-resolved data pooled into Visium-like spots, keeping the truth of the cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.spatial import cKDTree

from .. import _keys
from .._utils import TmtInputError, TmtKeyError, missing_key_error


def _hex_centres(lo: np.ndarray, hi: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres of a hexagonal grid covering the box, with Visium's array_row / array_col indices."""
    dy = spacing * np.sqrt(3) / 2
    rows = np.arange(int(np.ceil((hi[1] - lo[1]) / dy)) + 1)
    cols = np.arange(int(np.ceil((hi[0] - lo[0]) / spacing)) + 1)
    r, c = np.meshgrid(rows, cols, indexing="ij")
    r, c = r.ravel(), c.ravel()
    x = lo[0] + c * spacing + (r % 2) * spacing / 2
    y = lo[1] + r * dy
    return np.column_stack([x, y]), r, 2 * c + (r % 2)


def to_spots(
    adata: AnnData,
    *,
    sample_key: str = "sample",
    spacing: float = 100.0,
    spot_diameter: float = 55.0,
) -> AnnData:
    """Pool cells into Visium-like spots: a hexagonal grid of ``spot_diameter`` spots every ``spacing`` micrometres.

    Each spot sums the counts of the cells whose centre lies inside it (cells between spots are not captured, as
    on the slide); spots without cells are dropped. Useful to test spot-level tools against the cell-level truth of
    :func:`simulate`.

    Parameters
    ----------
    adata
        Cells with raw counts in ``X`` and coordinates (micrometres) in ``obsm["spatial"]``.
    sample_key
        ``obs`` column of samples; each gets its own grid.
    spacing, spot_diameter
        Centre-to-centre distance and spot diameter in micrometres (Visium: 100 and 55).

    Returns
    -------
    A new AnnData of spots: summed counts in ``X``; ``obsm["spatial"]`` (centres, micrometres);
    ``obs["sample"]``, ``obs["array_row"]``, ``obs["array_col"]``, ``obs["in_tissue"]``, ``obs["n_cells"]``; and,
    when the cells carry truth, ``obs["true_compartment"]`` (majority of the spot's cells), ``obs["true_phenotype"]``
    and ``obs["true_n_<lineage>"]`` (cells of each lineage). ``uns["tmt_simulation"]`` is carried over.
    """
    if "spatial" not in adata.obsm:
        msg = "to_spots needs cell coordinates in adata.obsm['spatial']."
        raise TmtKeyError(msg)
    if sample_key not in adata.obs:
        raise missing_key_error(sample_key, "adata.obs", adata.obs.columns)
    from ..pp._check import inspect

    state = inspect(adata, full_scan=False).state
    if state != "counts":
        msg = f"to_spots sums counts, but X looks {state}; pass an AnnData whose X holds raw counts."
        raise TmtInputError(msg)
    if not 0 < spot_diameter <= spacing:
        msg = f"need 0 < spot_diameter <= spacing, got {spot_diameter} and {spacing}."
        raise TmtInputError(msg)
    xy = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
    samples = adata.obs[sample_key].astype(str).to_numpy()
    spot_of = np.full(adata.n_obs, -1)
    centres, meta = [], []
    offset = 0
    for s in pd.unique(samples):
        idx = np.flatnonzero(samples == s)
        c, r, col = _hex_centres(xy[idx].min(axis=0), xy[idx].max(axis=0), spacing)
        d, nearest = cKDTree(c).query(xy[idx])
        inside = d <= spot_diameter / 2
        used, local = np.unique(nearest[inside], return_inverse=True)
        spot_of[idx[inside]] = offset + local
        offset += len(used)
        centres.append(c[used])
        meta.append(pd.DataFrame({"sample": s, "array_row": r[used], "array_col": col[used]}))
    obs = pd.concat(meta, ignore_index=True)
    caught = spot_of >= 0
    member = sp.csr_matrix((np.ones(caught.sum()), (spot_of[caught], np.flatnonzero(caught))),
                           shape=(len(obs), adata.n_obs))
    X = sp.csr_matrix(member @ sp.csr_matrix(adata.X))
    obs["in_tissue"] = 1
    obs["n_cells"] = np.asarray(member.sum(axis=1)).ravel().astype(int)
    if "true_lineage" in adata.obs:
        lin = adata.obs["true_lineage"].astype(str).to_numpy()
        for name in pd.unique(lin):
            key = "true_n_" + name.replace("/", "_").replace(" ", "_")
            obs[key] = np.asarray(member @ (lin == name).astype(float)).ravel().astype(int)
    if "true_compartment" in adata.obs:
        comp = pd.get_dummies(adata.obs["true_compartment"].astype(str)).astype(float)
        counts = member @ comp.to_numpy()
        obs["true_compartment"] = pd.Categorical(np.asarray(comp.columns)[counts.argmax(axis=1)])
    if "true_phenotype" in adata.obs:
        obs["true_phenotype"] = obs["sample"].map(
            adata.obs.groupby(sample_key, observed=True)["true_phenotype"].first().astype(str))
    obs["sample"] = pd.Categorical(obs["sample"])
    obs.index = [f"spot{i}" for i in range(len(obs))]
    out = AnnData(X.astype(np.float32), obs=obs, var=adata.var[[]].copy())
    out.obsm["spatial"] = np.vstack(centres)
    if _keys.SIMULATION in adata.uns:
        out.uns[_keys.SIMULATION] = adata.uns[_keys.SIMULATION]
    return out

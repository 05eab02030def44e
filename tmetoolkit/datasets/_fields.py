"""``tmt.datasets.simulate_fields``: imaging fields that look like real tumour tissue, with planted truth.

Unlike :func:`tmetoolkit.datasets.simulate` (round nests in stroma), these fields are what a multiplexed-imaging
cohort shows: tumour filling most of the field, stroma as septa that thicken into bands as its share grows,
immune pockets inside the tumour, and CD8 T cells over two decades of density. Only positions and cell types are
simulated (``X`` is empty), which is all the spatial tools read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy import ndimage

from .. import _keys
from .._utils import TmtInputError

_TUMOUR_MIX = {"Malignant/Epithelial": 0.88, "Monocyte/Macrophage": 0.05, "Fibroblast": 0.03, "CD4 T": 0.02,
               "Endothelial": 0.02}
_STROMA_MIX = {"Fibroblast": 0.45, "Endothelial": 0.12, "Monocyte/Macrophage": 0.18, "CD4 T": 0.15, "B": 0.10}
_POCKET_MIX = {"CD4 T": 0.4, "Monocyte/Macrophage": 0.4, "B": 0.2}
MAX_STROMA_CD8 = 0.6  # at most this share of the stroma's cells become CD8 T cells in an excluded field


def _lattice(rng, side: float, spacing: float) -> np.ndarray:
    """Jittered hexagonal packing: cells about ``spacing`` micrometres apart, as in a tissue section."""
    dy = spacing * np.sqrt(3) / 2
    ys = np.arange(0, side, dy)
    pts = [np.c_[np.arange((i % 2) * spacing / 2, side, spacing), np.full(len(np.arange((i % 2) * spacing / 2, side,
                                                                                      spacing)), y)]
           for i, y in enumerate(ys)]
    xy = np.vstack(pts)
    return xy + rng.uniform(-0.2, 0.2, size=xy.shape) * spacing


def _stroma_mask(rng, xy: np.ndarray, side: float, fraction: float, scale: float) -> np.ndarray:
    """Cells in stroma: a band around a level line of smooth random noise, as wide as ``fraction`` needs (thin
    septa at a few percent, broad bands at half the field)."""
    if fraction <= 0:
        return np.zeros(len(xy), bool)
    step = 5.0
    n = int(np.ceil(side / step)) + 1
    f = ndimage.gaussian_filter(rng.normal(size=(n, n)), scale / step)
    v = f[np.clip((xy[:, 0] / step).astype(int), 0, n - 1), np.clip((xy[:, 1] / step).astype(int), 0, n - 1)]
    dev = np.abs(v - np.median(v))
    return dev <= np.quantile(dev, fraction)


def _draw(rng, n: int, mix: dict) -> np.ndarray:
    names, p = zip(*mix.items(), strict=True)
    p = np.asarray(p) / sum(p)
    return rng.choice(np.asarray(names, dtype=object), size=n, p=p)


def simulate_fields(
    stroma_fractions: Sequence[float] = (0.0, 0.05, 0.15, 0.3, 0.45, 0.6),
    phenotypes: Sequence[str] = ("inflamed", "excluded", "desert"),
    *,
    n_per_setting: int = 4,
    field_size: float = 800.0,
    cell_spacing: float = 10.0,
    inflamed_density: tuple[float, float] = (200.0, 2000.0),
    desert_density: tuple[float, float] = (10.0, 50.0),
    pixel_size: float | None = None,
    seed: int = 0,
) -> AnnData:
    """Simulate realistic imaging fields with planted compartments and immune phenotypes.

    Every combination of stroma fraction and phenotype gets ``n_per_setting`` fields of ``field_size``
    micrometres (no excluded field without stroma: exclusion cannot be planted there). In each field tumour
    fills all but the stroma; stroma is a band around a level line of smooth noise (septa of one to three cells
    at 5%, broad bands at 60%); the tumour holds immune pockets of 10-20 micrometres radius (truth: parenchyma).
    CD8 T cells replace cells at a planted density, log-uniform over ``inflamed_density`` (cells/mm^2 of tissue)
    for inflamed and excluded fields and over ``desert_density`` for deserts:

    - inflamed: anywhere in the tissue, tumour parenchyma included (mixed with the tumour cells);
    - excluded: stroma cells only (at most 60% of them; the planted density is then lower);
    - desert: anywhere, at the low density.

    Parameters
    ----------
    stroma_fractions
        Shares of the field planted as stroma.
    phenotypes
        Phenotypes planted at every stroma fraction.
    n_per_setting
        Fields per stroma fraction and phenotype.
    field_size
        Side of a field in micrometres.
    cell_spacing
        Distance between neighbouring cells in micrometres.
    inflamed_density, desert_density
        Ranges of planted CD8 T-cell density (cells/mm^2 of tissue).
    pixel_size
        When given, coordinates are returned in pixels of this many micrometres (as an imaging platform writes
        them); ``None``: micrometres.
    seed
        Random seed.

    Returns
    -------
    AnnData (``X`` empty) with ``obsm["spatial"]`` and truth:

    ``obs["sample"]``, ``obs["cell_type"]``
        Field and cell type (tmetoolkit lineages).
    ``obs["true_compartment"]``
        ``tumor`` (parenchyma, pockets included) or ``stroma``.
    ``obs["true_phenotype"]``
        The field's planted phenotype.
    ``uns["tmt_simulation"]``
        ``params`` and ``samples``: per field the stroma fraction, phenotype, planted and realised CD8 density.

    Examples
    --------
    >>> import tmetoolkit as tmt
    >>> f = tmt.datasets.simulate_fields(stroma_fractions=[0.3], n_per_setting=1, field_size=300)
    >>> sorted(f.obs["true_phenotype"].unique())
    ['desert', 'excluded', 'inflamed']
    """
    bad = set(phenotypes) - {"inflamed", "excluded", "desert"}
    if bad or n_per_setting < 1 or field_size < 10 * cell_spacing or not all(0 <= s < 1 for s in stroma_fractions):
        msg = ("simulate_fields needs phenotypes from inflamed/excluded/desert, n_per_setting >= 1, field_size of "
               "at least 10 cell spacings and stroma fractions in [0, 1).")
        raise TmtInputError(msg)
    if pixel_size is not None and pixel_size <= 0:
        msg = f"pixel_size must be positive (micrometres per pixel), got {pixel_size}."
        raise TmtInputError(msg)
    rng = np.random.default_rng(seed)
    obs, xys, rows = [], [], []
    k = 0
    for s_frac in stroma_fractions:
        for ph in phenotypes:
            if ph == "excluded" and s_frac == 0:
                continue
            for _ in range(n_per_setting):
                k += 1
                name = f"F{k:03d}"
                xy = _lattice(rng, field_size, cell_spacing)
                n = len(xy)
                stroma = _stroma_mask(rng, xy, field_size, s_frac, scale=100.0)
                types = np.where(stroma, _draw(rng, n, _STROMA_MIX), _draw(rng, n, _TUMOUR_MIX))
                area = field_size**2 / 1e6
                tumour_area = (~stroma).mean() * area
                for _ in range(rng.poisson(20 * tumour_area)):  # ~20 pockets per mm^2 of tumour
                    c = xy[rng.choice(np.flatnonzero(~stroma))] if (~stroma).any() else None
                    if c is None:
                        break
                    r = rng.uniform(10, 20)
                    m = (np.hypot(*(xy - c).T) <= r) & ~stroma
                    types[m] = _draw(rng, int(m.sum()), _POCKET_MIX)
                lo, hi = desert_density if ph == "desert" else inflamed_density
                dens = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
                n_cd8 = round(dens * area)
                pool = np.flatnonzero(stroma) if ph == "excluded" else np.arange(n)
                if ph == "excluded":
                    n_cd8 = min(n_cd8, int(MAX_STROMA_CD8 * len(pool)))
                pick = rng.choice(pool, size=min(n_cd8, len(pool)), replace=False)
                types[pick] = "CD8 T"
                rows.append({"sample": name, "stroma_fraction": s_frac, "phenotype": ph, "planted_density": dens,
                             "cd8_per_mm2": len(pick) / area, "n_cells": n})
                obs.append(pd.DataFrame({"sample": name, "cell_type": types.astype(str),
                                         "true_compartment": np.where(stroma, "stroma", "tumor"),
                                         "true_phenotype": ph}))
                xys.append(xy)
    o = pd.concat(obs, ignore_index=True)
    o.index = [f"cell{i}" for i in range(len(o))]
    for col in ("sample", "cell_type", "true_compartment", "true_phenotype"):
        o[col] = pd.Categorical(o[col])
    adata = AnnData(X=sp.csr_matrix((len(o), 1), dtype=np.float32), obs=o, var=pd.DataFrame(index=["none"]))
    xy = np.vstack(xys)
    adata.obsm["spatial"] = xy / pixel_size if pixel_size is not None else xy
    adata.uns[_keys.SIMULATION] = {
        "params": {"field_size_um": field_size, "cell_spacing_um": cell_spacing, "seed": seed,
                   "pixel_size": pixel_size if pixel_size is not None else 1.0, "n_per_setting": n_per_setting},
        "samples": pd.DataFrame(rows),
    }
    return adata

"""Shared plotting helpers: axes handling, colours and a local style."""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
from anndata import AnnData

from .._utils import missing_key_error
from ._palettes import lineage_colors, phenotype_colors, state_colors

STYLE = {"axes.spines.top": False, "axes.spines.right": False, "font.size": 9, "axes.titlesize": 10}
RASTERIZE_ABOVE = 5_000


@contextmanager
def style():
    """tmetoolkit's plot style for the figures drawn inside; afterwards only the keys it set are restored.

    ``matplotlib.rc_context`` restores every rcParam, ``interactive`` included. When a tmetoolkit plot was the
    session's first figure in Jupyter, that stopped every later figure from showing (matplotlib#24351).
    """
    old = {key: mpl.rcParams[key] for key in STYLE}
    mpl.rcParams.update(STYLE)
    try:
        yield
    finally:
        mpl.rcParams.update(old)


def colors_for(adata: AnnData, key: str) -> dict[str, str]:
    """Colours of a categorical ``obs`` column: ``uns[key + "_colors"]`` if present, else tmetoolkit's palettes."""
    cats = list(adata.obs[key].astype("category").cat.categories)
    stored = adata.uns.get(f"{key}_colors")
    if stored is not None and len(stored) == len(cats):
        return dict(zip(cats, stored, strict=True))
    fixed = {**lineage_colors(), **state_colors(), **phenotype_colors()}
    cycle = mpl.colormaps["tab20"].colors
    return {c: fixed.get(c, mpl.colors.to_hex(cycle[i % len(cycle)])) for i, c in enumerate(cats)}


def require_obs(adata: AnnData, key: str, hint: str = "") -> pd.Series:
    if key not in adata.obs:
        raise missing_key_error(key, "adata.obs" + (f" ({hint})" if hint else ""), adata.obs.columns)
    return adata.obs[key]


def new_ax(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


_WORDS = {"cd4": "CD4", "cd8": "CD8", "caf": "CAF", "tgfb": "TGF-beta", "m2": "M2", "m1": "M1", "mdsc": "MDSC",
          "treg": "Treg", "ido": "IDO", "mycaf": "myCAF", "icaf": "iCAF", "tam": "TAM", "pd": "PD"}


def readable(name: str) -> str:
    """``"treg_fraction_cd4"`` as ``"Treg fraction CD4"``: words, not snake_case, on axes and in legends."""
    words = [_WORDS.get(w.lower(), w) for w in str(name).split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]

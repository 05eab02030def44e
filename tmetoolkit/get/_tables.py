"""Tidy per-cell and per-sample tables built from what the tools stored."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .. import _keys
from .._utils import missing_key_error
from ..tl._tables import region_table, sample_table

__all__ = ["region_table", "sample_table", "scores"]


def scores(adata: AnnData, *, key: str = _keys.SCORES, groupby: str | None = None) -> pd.DataFrame:
    """Signature scores as a DataFrame, per cell or averaged per ``groupby`` category.

    Parameters
    ----------
    adata
        Scored with :func:`tmetoolkit.tl.score`.
    key
        The ``obsm`` key the scores were written to.
    groupby
        An ``obs`` column; when given, returns the mean score per category (categories x signatures).

    Returns
    -------
    Cells x signatures (the stored scores), or categories x signatures (their means) with ``groupby``.
    """
    if key not in adata.obsm:
        raise missing_key_error(key, "adata.obsm (run tmt.tl.score first)", adata.obsm.keys())
    df = pd.DataFrame(adata.obsm[key], index=adata.obs_names)
    if groupby is None:
        return df
    if groupby not in adata.obs:
        raise missing_key_error(groupby, "adata.obs", adata.obs.columns)
    return df.groupby(adata.obs[groupby], observed=True).mean()

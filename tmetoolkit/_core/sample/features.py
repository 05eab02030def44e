"""Per-sample features of cells: fractions of labelled cells and mean programme scores, per sample or region."""

from __future__ import annotations

import numpy as np
import pandas as pd


def fraction(num: pd.Series, den: pd.Series, samples: pd.Series, min_den: int = 1) -> pd.Series:
    """Per sample, cells in ``num`` among cells in ``den`` (NaN where the sample has fewer than ``min_den``)."""
    d = den.groupby(samples, observed=True).sum()
    n = (num & den).groupby(samples, observed=True).sum()
    return (n / d.where(d >= max(min_den, 1))).astype(float)


def mean_score(scores: pd.DataFrame | None, signatures, mask: pd.Series, samples: pd.Series,
               min_cells: int = 1) -> pd.Series:
    """Per sample, the mean over ``mask`` cells of the first signature in ``signatures`` that ``scores`` (cells x
    signatures) holds (NaN if none, or where the sample has fewer than ``min_cells`` such cells)."""
    S = scores
    if S is None:
        return pd.Series(np.nan, index=pd.Index(samples.dropna().unique()))
    for s in signatures:
        if s in S.columns:
            groups = S.loc[mask.to_numpy(), s].groupby(samples[mask], observed=True)
            return groups.mean().where(groups.size() >= min_cells).reindex(samples.dropna().unique())
    return pd.Series(np.nan, index=pd.Index(samples.dropna().unique()))

"""Statistics across the samples of a cohort: the robust z-score, its smallest spread and the fewest samples a
cohort-relative call rests on."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import median_abs_deviation

# the fewest samples a cohort-relative call (a rank, a median and its spread across samples) is made from: with two,
# every sample sits at the median's distance on one side or the other, so no sample can stand out from the rest
MIN_COHORT_SIZE = 3

# the smallest spread of a per-sample feature (score units, about 10% more expression of a programme's genes, or 10
# points of a fraction) that robust z-scores divide by. Simulated tumours with no pathway planted, only per-gene batch
# effects, differ by up to 0.08 in their programmes; dividing such noise by its own spread flagged one or two of six
# samples per programme row, and gave noise components the weight of real ones in the immunosuppression composite.
MIN_SPREAD = 0.1


def robust_sd(values) -> float:
    """Spread of the finite ``values``: the median absolute deviation scaled to a normal standard deviation
    (1.4826 MAD, ``scipy.stats.median_abs_deviation(scale="normal")``); the standard deviation where the MAD is 0
    (more than half the values equal), 1 where that is 0 or undefined too."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return 1.0
    mad = float(median_abs_deviation(v, scale="normal"))
    if mad > 0:
        return mad
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return sd if sd > 0 else 1.0


def robust_z(x: pd.Series, min_spread: float = 0.0) -> pd.Series:
    """(x - median) / :func:`robust_sd` across samples, the spread taken as at least ``min_spread``; NaN stays
    NaN; NaN everywhere with fewer than two finite values."""
    v = x[np.isfinite(x.to_numpy(dtype=np.float64))]
    if len(v) < 2:
        return pd.Series(np.nan, index=x.index)
    return (x - v.median()) / max(robust_sd(v), min_spread)

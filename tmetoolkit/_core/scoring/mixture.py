"""Two-component Gaussian mixtures: where positive observations begin (marker gates, programme-positive spots)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_FIT = 50_000  # observations used to fit; the crossing barely moves beyond that


@dataclass(frozen=True)
class TwoComponents:
    """Fitted low (negative) and high (positive) components and the value where the high one takes over."""

    crossing: float
    low_mean: float
    low_sd: float
    high_mean: float
    high_sd: float
    bic_gain: float = float("nan")  # BIC of one Gaussian minus that of two: above 0, two fit better (Schwarz 1978)
    high_weight: float = float("nan")  # the share of observations in the high component

    @property
    def separation(self) -> float:
        """Ashman's D: above 2, two populations rather than one skewed one."""
        return float(np.sqrt(2) * abs(self.high_mean - self.low_mean) / np.hypot(self.low_sd, self.high_sd))

    @property
    def two_peaks(self) -> bool:
        """Whether the fitted density has two modes, i.e. dips between the two means.

        Ashman's D compares the distance of the means with the components' widths and does not look at their
        weights: a narrow majority component with a wide minority one beside it can pass D = 2 and still draw a
        single peak with a tail (a skewed population), not two populations.
        """
        from scipy.stats import norm

        w = 0.5 if not np.isfinite(self.high_weight) else self.high_weight
        x = np.linspace(self.low_mean, self.high_mean, 513)
        f = (1 - w) * norm.pdf(x, self.low_mean, self.low_sd) + w * norm.pdf(x, self.high_mean, self.high_sd)
        step = np.sign(np.diff(f))
        return bool(np.any((step[:-1] < 0) & (step[1:] > 0)))


def fit_two_components(values: np.ndarray, *, seed: int = 0) -> TwoComponents:
    """Fit two Gaussians to the finite ``values`` and find where the posterior of the high one reaches 0.5."""
    from sklearn.mixture import GaussianMixture

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 3:
        msg = f"a two-component mixture needs at least 3 finite values, got {v.size}."
        raise ValueError(msg)
    if v.size > MAX_FIT:
        v = np.random.default_rng(seed).choice(v, MAX_FIT, replace=False)
    gm = GaussianMixture(2, random_state=seed).fit(v[:, None])
    mu, sd = gm.means_.ravel(), np.sqrt(gm.covariances_.ravel())
    lo, hi = np.argsort(mu)
    grid = np.linspace(mu[lo], mu[hi], 512)
    post = gm.predict_proba(grid[:, None])[:, hi]
    one = GaussianMixture(1, random_state=seed).fit(v[:, None])
    return TwoComponents(float(grid[np.argmax(post >= 0.5)]), float(mu[lo]), float(sd[lo]), float(mu[hi]),
                         float(sd[hi]), float(one.bic(v[:, None]) - gm.bic(v[:, None])),
                         float(gm.weights_.ravel()[hi]))


def mixture_threshold(values: np.ndarray, *, seed: int = 0, min_separation: float = 2.0,
                      min_gap: float | None = None) -> float:
    """Value above which an observation carries the programme: where a two-component Gaussian mixture turns to
    the high component. When the components are not separated (Ashman's D below ``min_separation``: no positive
    population, e.g. a cohort without such spots), three SDs above the mean. With ``min_gap``, the high component
    must also lie ``min_gap`` above the low one (else there is no positive population either), and without a
    positive population an observation must lie ``min_gap`` above the median as well: a detection floor over the
    background, which then is nearly every observation."""
    fit = fit_two_components(values, seed=seed)
    if fit.separation >= min_separation and (min_gap is None or fit.high_mean - fit.low_mean >= min_gap):
        return fit.crossing
    v = values[np.isfinite(values)]
    outlier = float(v.mean() + 3 * v.std())
    return outlier if min_gap is None else max(outlier, float(np.median(v)) + min_gap)

"""Per-sample features compared between two groups of samples (never of cells): a two-sided Mann-Whitney U test
per feature, Cliff's delta, the difference of group medians and Benjamini-Hochberg FDR across features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, mannwhitneyu

TEST = "two-sided Mann-Whitney U on samples; Benjamini-Hochberg FDR"


@dataclass(frozen=True)
class SampleGroups:
    """The group of each sample, read from a per-cell column: ``group_of`` (sample -> group as text, for the samples
    with a value; a mixed sample's first), ``mixed`` (samples whose cells hold several values) and ``unknown``
    (samples without one)."""

    group_of: pd.Series
    mixed: pd.Index
    unknown: pd.Index


def sample_groups(values: pd.Series, samples: pd.Series) -> SampleGroups:
    """The group of each sample from ``values`` (one per cell) and the cells' ``samples``; missing values are no
    group, and groups are compared as text (``True`` and ``"True"`` are one group)."""
    per_sample = values.groupby(samples, observed=True).agg(lambda s: s.dropna().astype(str).unique().tolist())
    mixed = per_sample.index[per_sample.map(len) > 1]
    unknown = per_sample.index[per_sample.map(len) == 0]
    group_of = per_sample.drop(unknown).map(lambda v: v[0])
    return SampleGroups(group_of, mixed, unknown)


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """P(x > y) - P(x < y): an effect size for ranks, from -1 to 1."""
    diff = np.sign(x[:, None] - y[None, :])
    return float(diff.mean())


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_features` found: one row per compared feature (``feature``, ``n_<group>``,
    ``median_<group>``, ``median_difference``, ``cliffs_delta``, ``U``, ``pvalue``, ``fdr``), sorted by p-value;
    empty (columns ``feature``, ``pvalue``, ``fdr``) when no feature had ``min_samples`` values in each group."""

    table: pd.DataFrame

    @property
    def empty(self) -> bool:
        return "U" not in self.table.columns


COUNTS = ("immune_cells", "cd8_cells", "measures_available")  # counts not named n_...


def is_count(feature: str) -> bool:
    """Whether a per-sample column counts cells or measures (``n_cells``, ``checkpoints:n_cd8``,
    ``immune_phenotype:immune_cells``, ``immunosuppression:n_components``): how many cells were captured or how
    much could be measured, not the tumour's biology, so not compared (fractions and densities are)."""
    name = feature.rsplit("|", 1)[-1].rsplit(":", 1)[-1]
    return name.startswith("n_") or name in COUNTS


def _without_counts(numeric: pd.DataFrame) -> pd.DataFrame:
    return numeric.loc[:, [not is_count(str(c)) for c in numeric.columns]]


def compare_features(table: pd.DataFrame, group_of: pd.Series, groups: tuple[str, str], *,
                     min_samples: int) -> Comparison:
    """Every numeric column of ``table`` (samples x features; counts left out, see :func:`is_count`) compared
    between the samples of ``groups[0]`` and of ``groups[1]`` in ``group_of`` (sample -> group). A feature is
    tested where each group has at least ``min_samples`` values and the values are not all equal."""
    numeric = _without_counts(table.select_dtypes(include=[np.number]))
    a_idx, b_idx = group_of.index[group_of == groups[0]], group_of.index[group_of == groups[1]]
    rows = []
    for feature in numeric.columns:
        x = numeric.loc[a_idx, feature].dropna().to_numpy(float)
        y = numeric.loc[b_idx, feature].dropna().to_numpy(float)
        if len(x) < min_samples or len(y) < min_samples or np.unique(np.r_[x, y]).size < 2:
            continue
        res = mannwhitneyu(x, y, alternative="two-sided")
        rows.append({"feature": feature, f"n_{groups[0]}": len(x), f"n_{groups[1]}": len(y),
                     f"median_{groups[0]}": np.median(x), f"median_{groups[1]}": np.median(y),
                     "median_difference": np.median(x) - np.median(y), "cliffs_delta": cliffs_delta(x, y),
                     "U": float(res.statistic), "pvalue": float(res.pvalue)})
    out = pd.DataFrame(rows)
    if out.empty:
        return Comparison(pd.DataFrame(columns=["feature", "pvalue", "fdr"]))
    out["fdr"] = false_discovery_control(out["pvalue"].to_numpy(), method="bh")
    return Comparison(out.sort_values(["pvalue", "feature"]).reset_index(drop=True))


def region_features(table: pd.DataFrame) -> pd.DataFrame:
    """Samples x ``"<region>|<feature>"`` from a region table (one row per region, with ``sample`` and ``region``
    columns): its numeric columns (counts left out), one column per region name."""
    numeric = _without_counts(table.select_dtypes(include=[np.number]))
    wide = numeric.set_index([table["sample"], table["region"]]).unstack("region")
    wide.columns = [f"{region}|{feature}" for feature, region in wide.columns]
    return wide

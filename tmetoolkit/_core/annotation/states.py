"""State calls within a lineage: signature scores in units of background noise, the lead over the runner-up, and
the cluster consensus (arrays and tables in, labels and confidences out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .lineage import UNASSIGNED, by_lineage

# a cell is "mixed" when its own marker evidence for a second lineage reaches 0.5 (rank units) and half its first's
MIXED_EVIDENCE, MIXED_RATIO = 0.5, 0.5


def label_scores(S: pd.DataFrame, table: dict[str, tuple[str, ...]]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per label, the mean of its available signatures; labels with none are reported as not assessable."""
    cols, missing = {}, {}
    for label, sigs in table.items():
        have = [s for s in sigs if s in S.columns]
        if have:
            cols[label] = S[have].mean(axis=1)
        else:
            missing[label] = "signature genes missing: " + ", ".join(sigs)
    return pd.DataFrame(cols, index=S.index), missing


def noise_scale(values: np.ndarray) -> float:
    """Spread of a control-subtracted score in cells that do not express the programme.

    Such cells score around zero and expressing cells score above it, so the negative side belongs to the
    background whatever the composition. Its median (not its mean, so that cells pushed far below zero by a
    signature's down genes do not count) estimates the background's standard deviation.
    """
    v = values[np.isfinite(values)]
    neg = v[v < 0]
    if neg.size >= 20:
        return float(1.4826 * np.median(-neg))
    s = 1.4826 * np.median(np.abs(v - np.median(v))) if v.size else 0.0
    return float(s) if s > 0 else 1.0


def lineage_of(label) -> str:
    return str(label).split("|")[0]


def standardise(M: pd.DataFrame) -> pd.DataFrame:
    """Scores in units of one background noise level, then the best label per lineage.

    Control-subtracted scores share the log-expression scale, so labels are compared on raw scores, all divided by
    the typical background spread (the median over labels), which makes a lead read in noise units. (Dividing each
    label by its own spread instead, to hold back labels of few genes, lowered state accuracy on simulated data
    from 0.93-0.98 to 0.82-0.89 per population.)
    """
    if M.shape[1] == 0:
        return M
    own = np.array([noise_scale(M[c].to_numpy()) for c in M.columns])
    typical = float(np.median(own)) or 1.0
    Z = M / typical
    return Z.T.groupby([lineage_of(c) for c in Z.columns], sort=False).max().T


def decide(M: pd.DataFrame, sigma: float, *, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Argmax label, its score and a confidence from the gap to the runner-up (in units of background noise)."""
    arr = M.to_numpy(dtype=float)
    arr = np.where(np.isfinite(arr), arr, -np.inf)
    if arr.shape[1] == 0:
        n = arr.shape[0]
        return np.full(n, UNASSIGNED, dtype=object), np.full(n, np.nan), np.zeros(n)
    order = np.argsort(-arr, axis=1)
    best = arr[np.arange(len(arr)), order[:, 0]]
    second = arr[np.arange(len(arr)), order[:, 1]] if arr.shape[1] > 1 else np.full(len(arr), 0.0)
    second = np.where(np.isfinite(second), second, np.minimum(best, 0.0))
    gap = np.clip(best - np.maximum(second, 0.0 if arr.shape[1] == 1 else -np.inf), 0, None)
    conf = 1.0 - np.exp(-gap / sigma)
    conf = np.where(best > min_score * sigma, conf, 0.0)
    labels = np.asarray(M.columns, dtype=object)[order[:, 0]]
    return labels, best, conf


def lend_cluster_calls(cluster_label: pd.Series, cluster_conf: pd.Series, groups: pd.Series, labels, conf,
                       override: float) -> tuple[np.ndarray, np.ndarray]:
    """A cluster that is sure of its call (``cluster_conf`` at least ``override``) lends it, with that confidence,
    to its cells that are less sure of theirs; mixed clusters and cells without a cluster (NaN) keep their calls.
    ``cluster_label`` and ``cluster_conf`` are indexed by cluster."""
    cl = cluster_label.reindex(groups.to_numpy()).to_numpy()
    cc = cluster_conf.reindex(groups.to_numpy()).fillna(0.0).to_numpy(dtype=float)
    take = groups.notna().to_numpy() & (cc >= override) & (np.asarray(conf) < override)
    return np.where(take, cl, labels).astype(object), np.where(take, cc, conf).astype(float)


def cluster_probability_calls(P: pd.DataFrame, groups: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Per cluster, the class of highest mean probability and that mean."""
    mean = P.groupby(groups.to_numpy(), observed=True).mean()
    label = pd.Series(np.asarray(mean.columns, dtype=object)[np.argmax(mean.to_numpy(), axis=1)], index=mean.index)
    return label, pd.Series(mean.to_numpy().max(axis=1), index=mean.index)


def consensus(M: pd.DataFrame, groups: pd.Series, labels, conf, sigma, *, override: float, min_score: float):
    """Cluster calls from the clusters' mean scores (:func:`decide`), lent as :func:`lend_cluster_calls` does."""
    mean = M.groupby(groups.to_numpy(), observed=True).mean()
    g_labels, _, g_conf = decide(mean, sigma, min_score=min_score)
    return lend_cluster_calls(pd.Series(g_labels, index=mean.index), pd.Series(g_conf, index=mean.index), groups,
                              labels, conf, override)


def mixed_lineage_evidence(E: pd.DataFrame) -> pd.DataFrame:
    """Lineage pairs that cells' own marker evidence both supports: the second by at least ``MIXED_EVIDENCE`` and
    by ``MIXED_RATIO`` of the first.

    Columns ``lineage_a``, ``lineage_b`` (in table order), ``n_cells`` and ``fraction`` of all cells, most frequent
    pair first. Doublets and, in segmented spatial data, transcripts assigned to a neighbouring cell produce them.
    """
    Z = by_lineage(E)
    cols = ["lineage_a", "lineage_b", "n_cells", "fraction"]
    if Z.shape[1] < 2 or len(Z) == 0:
        return pd.DataFrame(columns=cols)
    arr = np.where(np.isfinite(Z.to_numpy(dtype=float)), Z.to_numpy(dtype=float), -np.inf)
    top2 = np.argsort(-arr, axis=1)[:, :2]
    first, second = arr[np.arange(len(arr)), top2[:, 0]], arr[np.arange(len(arr)), top2[:, 1]]
    hit = (second >= MIXED_EVIDENCE) & (second >= MIXED_RATIO * first)
    names = np.asarray(Z.columns, dtype=object)
    pair = np.sort(top2[hit], axis=1)
    pairs = pd.DataFrame({"lineage_a": names[pair[:, 0]], "lineage_b": names[pair[:, 1]]})
    table = pairs.value_counts().rename("n_cells").reset_index()
    table["fraction"] = table["n_cells"] / len(arr)
    return table[cols].reset_index(drop=True)

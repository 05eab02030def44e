"""Lineage calls: marker evidence pooled over expression neighbours, confident seeds, then a classifier.

The markers decide only the cells they call with confidence; a classifier trained on those cells, in the data
set's own expression space, calls every cell. It learns what the markers cannot say: the depth, platform and
panel of this data set and the many genes each lineage expresses beyond its markers (the scheme of Garnett,
Pliner 2019 doi:10.1038/s41592-019-0535-3, and of scGate's kNN-smoothed gating, Andreatta 2022
doi:10.1093/bioinformatics/btac141).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .markers import MarkerTable

UNASSIGNED = "unassigned"
# a seed's lineage must lead every other lineage by this much pooled evidence (in within-cell rank units: the
# share of a full marker group that is expressed), and its own evidence must reach MIN_EVIDENCE
SEED_MARGIN = 0.1
MIN_EVIDENCE = 0.2
# a group's background (ambient RNA, spill-over from neighbouring cells in segmented images) is its score in the
# 20% of cells that express it least; at most 0.3, so that a lineage making up most cells keeps its evidence
BACKGROUND_QUANTILE, MAX_BACKGROUND = 0.2, 0.3
NEGATIVE_BACKGROUND = False
LR_C, LR_WEIGHT = 1.0, "balanced"  # measured across the four labelled RNA sets: C=1 >= C=0.1 on each
# a lineage with fewer seeds than this is not learned by the classifier; its cells keep their marker call
MIN_SEEDS = 10
# seeds per label used to train (a random subset of larger sets; keeps 1,000,000 cells cheap)
MAX_TRAIN_PER_LABEL = 500
# pooled evidence speaks against the classifier's lineage below -AGAINST (half a seed's margin). Measured across
# the five labelled RNA sets against 0 when it was set (a8acd50; today's figures are in docs/validation.md):
# lineage accuracy Chen 0.534 -> 0.548, PBMC 0.782 -> 0.818, the rest within 0.002, while cells of types outside
# the vocabulary stay unassigned (PBMC CD34+ progenitors 12 of 13, 13 at 0 and 0 without the veto; Chen's ILCs and
# unnamed myeloid cells 24% unassigned, 30% at 0, 8% without the veto)
AGAINST = SEED_MARGIN / 2
# a decisive transcript decides nothing in a data set where more than this share of other lineages' seeds carry
# it (ambient RNA and spill-over reach a few percent of cells: 4.9% for FOXP3 on Chen's MERFISH; a broad background
# reaches most: 73% for LILRA4 in simulate()'s background before it planted ambient RNA by abundance)
MAX_DECISIVE_ELSEWHERE = 0.1


@dataclass
class LineageResult:
    """What :func:`call_lineages` decided, per cell and per label."""

    lineage: np.ndarray
    label: np.ndarray  # the finest marker label ("DC|cDC2"), or the lineage where the classifier decided alone
    confidence: np.ndarray
    evidence: pd.DataFrame  # pooled marker evidence per label
    # classifier probability per lineage, its share on lineages a cell's markers rule out set aside where under half
    # (_without_contradicted); empty when it did not run
    probability: pd.DataFrame
    seed: np.ndarray  # the seed label of each cell, "" for cells that were not seeds
    n_seeds: dict[str, int]
    by_markers: list[str] = field(default_factory=list)  # lineages called by their markers alone (too few seeds)
    not_assessable: dict[str, str] = field(default_factory=dict)
    method: str = "classifier"  # or "one lineage" (a single lineage learned) or "markers" (none)
    not_decisive: list[str] = field(default_factory=list)  # decisive genes this data set shows in other lineages
    # cells whose pooled markers speak against the lineage the classifier chose, left unassigned (empty when no
    # classifier ran)
    vetoed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def label_evidence(R: np.ndarray, gene_col: dict[str, int], table: MarkerTable,
                   explained: sp.spmatrix | None = None, *,
                   without_siblings: bool = False) -> tuple[pd.DataFrame, dict]:
    """Per label: the weakest positive group's score minus the strongest negative group's.

    A group's score is the mean rank score of its best-expressed half of markers; the subunits of one protein
    complex (``table.complexes``) are one marker, read as their mean.

    ``R`` holds within-cell rank scores of the marker genes, ``gene_col`` says which column holds which gene.
    ``explained`` (boolean, shaped like ``R``) marks reads a touching cell explains (:func:`.ranks.spillover_reads`):
    they do not speak against a label, though they still speak for one, so that a cell beside a stronger expresser
    of its own type keeps its markers. A label none of whose genes are on a positive group's list is not assessable
    (reason returned). ``without_siblings``: only the labels with sibling groups (``LabelMarkers.siblings``), each
    without them, the evidence the veto of :func:`call_lineages` reads as well.
    """
    explained = None if explained is None else sp.csc_matrix(explained)  # read a few columns at a time

    def group_mean(genes, background=True, reserve=(), against=False):
        names = [g for g in (*genes, *stand_ins_of(genes, reserve, gene_col)) if g in gene_col]
        if not names:
            return None
        M = marker_columns(R, names, gene_col, table.complexes, explained if against else None)
        # the mean of the group's best half: a marker that this platform rarely detects does not veto the rest
        k = (M.shape[1] + 1) // 2
        score = np.sort(M, axis=1)[:, -k:].mean(axis=1)
        if not score.size:
            return score
        # ambient RNA and segmentation spill-over give every cell some of the abundant lineages' transcripts
        if not background:
            return score
        return score - min(np.quantile(score, BACKGROUND_QUANTILE), MAX_BACKGROUND)

    cols, missing = {}, {}
    for lab in table.labels:
        if without_siblings and not lab.siblings:
            continue
        pos = [group_mean(g, reserve=r) for g, r in zip(lab.positive, lab.reserve or [()] * len(lab.positive),
                                                         strict=True)]
        if any(p is None for p in pos):
            absent = [",".join(g) for g, p in zip(lab.positive, pos, strict=True) if p is None]
            missing[lab.label] = "no marker gene on the panel: " + "; ".join(absent)
            continue
        spares = lab.negative_reserve or [()] * len(lab.negative)
        # a stand-in made by part of the look-alike lineage (CD8B) cannot show that a cell is not of it
        unread = [",".join(lab.negative[i]) for i in lab.told_from
                  if not any(g in gene_col and g not in table.subset_stand_ins
                             for g in (*lab.negative[i], *spares[i]))]
        if unread:
            missing[lab.label] = "cannot be told from the cells of its look-alike lineage: no gene of " + \
                "; ".join(unread) + " (nor a stand-in) on the panel"
            continue
        neg = []
        for i, (genes, spare) in enumerate(zip(lab.negative, spares, strict=True)):
            if without_siblings and i in lab.siblings:
                continue
            m = group_mean((*genes, *negative_stand_ins_of(genes, spare, gene_col)), NEGATIVE_BACKGROUND,
                           against=True)
            if m is not None:
                neg.append(m)
        ev = np.min(np.vstack(pos), axis=0)
        if neg:
            ev = ev - np.max(np.vstack(neg), axis=0)
        cols[lab.label] = ev
    return pd.DataFrame(cols), missing


def marker_columns(R: np.ndarray, names: list[str], gene_col: dict[str, int], complexes,
                   explained: sp.spmatrix | None = None) -> np.ndarray:
    """One column per marker of ``names``: a gene's rank scores, or the mean of a complex's subunits among
    ``names`` (a cell that makes one subunit makes the others, and spill-over from a neighbour carries all of them,
    so three C1Q genes are one piece of evidence, not three); the reads ``explained`` marks count as 0."""
    cols, done = [], set()
    for g in names:
        if g in done:
            continue
        unit = next(([x for x in cx if x in names] for cx in complexes if g in cx), [g])
        done.update(unit)
        at = [gene_col[x] for x in unit]
        block = R[:, at]
        if explained is not None:
            block = np.where(explained[:, at].toarray(), 0.0, block)
        cols.append(block.mean(axis=1))
    return np.column_stack(cols)


def stand_ins_of(genes, reserve, gene_col: dict[str, int]) -> list[str]:
    """The reserve genes read for one group: a panel that lacks most of it (the best half is read) borrows the
    group's reserve, in its order, up to that half."""
    n_have = sum(g in gene_col for g in genes)
    spare = [g for g in reserve if g in gene_col and g not in genes]
    return spare[:max(0, (len(genes) + 1) // 2 - n_have)]


def negative_stand_ins_of(genes, reserve, gene_col: dict[str, int]) -> list[str]:
    """The reserve genes read for a negative group: only where the panel lacks the whole group (T cells without CD3
    on the panel must still count against NK cells); where some of its genes are there, they alone speak."""
    return [] if any(g in gene_col for g in genes) else stand_ins_of(genes, reserve, gene_col)


def stand_ins(table: MarkerTable, gene_col: dict[str, int], *, negative: bool = False) -> dict[str, list[str]]:
    """Per label, the reserve genes :func:`label_evidence` reads on this panel in place of missing markers, or with
    ``negative`` in place of the negative groups the panel lacks (LAPTM5 for PTPRC against the stromal labels)."""
    out = {}
    for lab in table.every_label:
        groups, reserves = (lab.negative, lab.negative_reserve) if negative else (lab.positive, lab.reserve)
        read = negative_stand_ins_of if negative else stand_ins_of
        used = [g for genes, reserve in zip(groups, reserves or [()] * len(groups), strict=True)
                for g in read(genes, reserve, gene_col)]
        if used:
            out[lab.label] = list(dict.fromkeys(used))
    return out


def by_lineage(E: pd.DataFrame) -> pd.DataFrame:
    """Labels naming one lineage ("DC|cDC1", "DC|pDC") collapsed to the lineage by their maximum."""
    return E.T.groupby([c.split("|")[0] for c in E.columns], sort=False).max().T


def select_seeds(E: pd.DataFrame, *, margin: float = SEED_MARGIN, min_evidence: float = MIN_EVIDENCE) -> np.ndarray:
    """The label each cell is a confident seed of ("" otherwise): its best label reaches ``min_evidence`` and its
    lineage leads every other lineage by ``margin``."""
    L = by_lineage(E)
    arr = L.to_numpy()
    if arr.shape[1] == 0:
        return np.full(len(E), "", dtype=object)
    top2 = np.sort(arr, axis=1)[:, ::-1]
    lead = top2[:, 0] - (top2[:, 1] if arr.shape[1] > 1 else 0.0)
    best = np.asarray(E.columns, dtype=object)[np.argmax(E.to_numpy(), axis=1)]
    ok = (top2[:, 0] >= min_evidence) & (lead >= margin)
    return np.where(ok, best, "").astype(object)


def call_lineages(E_pooled: pd.DataFrame, features: np.ndarray | None, *, min_confidence: float = 0.5,
                  seed: int = 0, not_assessable: dict | None = None, require_evidence: bool = True,
                  seed_evidence: float = MIN_EVIDENCE, sibling_free: pd.DataFrame | None = None) -> LineageResult:
    """Seeds from pooled marker evidence, then a logistic regression on ``features`` trained on them.

    Labels with at least ``MIN_SEEDS`` seeds are learned (each lineage's probability is the sum of its labels');
    cells whose seed label is too rare to learn keep it, with a confidence from the marker lead. Where one lineage
    alone has enough seeds (a data set of sorted T cells, or of CD4 T cells among T cells), it takes every cell
    with probability 1, and the same rules keep the other lineages' seeds and the cells whose markers speak
    against it. Without ``features`` or without a learnable label, every cell gets its marker call. A cell's pooled
    evidence for the classifier's lineage must not speak against it (``require_evidence``: at least -``AGAINST``),
    so cells of types the marker table does not name stay unassigned. The genes of a sibling lineage the classifier
    tells it from (a macrophage's DC genes) do not veto a cell whose pooled evidence without them
    (``sibling_free``, from :func:`label_evidence` ``without_siblings``) is above 0: its own markers lead every
    other negative group. Where the cells are already known to belong to a parent lineage (CD8 or CD4 among T
    cells) the classifier decides alone: a T cell that shows neither co-receptor, common at droplet depth, or sits
    beside cells of the other one, takes its call. A seed's best label reaches ``seed_evidence``.
    """
    n = len(E_pooled)
    seeds = select_seeds(E_pooled, min_evidence=seed_evidence)
    labels, counts = np.unique(seeds[seeds != ""], return_counts=True)
    n_seeds = dict(zip(labels.tolist(), counts.tolist(), strict=True))
    learn = [lab for lab, c in n_seeds.items() if c >= MIN_SEEDS]
    lineage_of = {lab: lab.split("|")[0] for lab in E_pooled.columns}
    # a tie (no evidence either way: a T cell without a co-receptor read) goes to the lineage with more seeds
    seeded = pd.Series(n_seeds, dtype=float).groupby(lambda lab: lineage_of[lab]).sum()
    L = by_lineage(E_pooled)
    L = L[sorted(L.columns, key=lambda lin: -seeded.get(lin, 0.0))]
    marker_lineage = np.asarray(L.columns, dtype=object)[np.argmax(L.to_numpy(), axis=1)] if L.shape[1] else \
        np.full(n, UNASSIGNED, dtype=object)
    lead = _lead(L)
    marker_conf = 1.0 - np.exp(-np.clip(lead, 0, None) / SEED_MARGIN)
    if features is None or not learn:
        ok = (seeds != "")
        lineage = np.where(ok | (marker_conf >= min_confidence), marker_lineage, UNASSIGNED).astype(object)
        by_seeds = sorted(E_pooled.columns, key=lambda lab: -seeded.get(lineage_of[lab], 0.0))
        best = np.asarray(by_seeds, dtype=object)[np.argmax(E_pooled[by_seeds].to_numpy(), axis=1)] \
            if E_pooled.shape[1] else lineage
        return LineageResult(lineage, np.where(lineage == UNASSIGNED, UNASSIGNED, best), marker_conf, E_pooled,
                             pd.DataFrame(index=E_pooled.index), seeds, n_seeds,
                             sorted({lineage_of[lab] for lab in n_seeds}), dict(not_assessable or {}), "markers")
    P = _learned_probability(features, seeds, learn, E_pooled.index, seed)
    PL = P.T.groupby([lineage_of[c] for c in P.columns], sort=False).sum().T
    supported = _supported(L, E_pooled, PL.columns, sibling_free) if require_evidence else None
    if supported is not None:
        PL = _without_contradicted(PL, supported)
    lin_arr = PL.to_numpy()
    chosen = np.argmax(lin_arr, axis=1)
    lineage = np.asarray(PL.columns, dtype=object)[chosen]
    conf = lin_arr.max(axis=1)
    own = np.asarray([lineage_of[c] for c in P.columns], dtype=object)  # each label's best within its lineage
    label = np.asarray(P.columns, dtype=object)[np.argmax(np.where(own == lineage[:, None], P.to_numpy(), -1), axis=1)]
    # the pooled evidence of the lineage the classifier chose
    claim = L.reindex(columns=PL.columns).to_numpy()[np.arange(n), chosen]
    # a rare label's seeds keep their marker call: the classifier never saw that lineage. So do the cells whose
    # pooled markers favour a lineage it did not learn, ahead of every other lineage: at a seed's evidence
    # (MIN_EVIDENCE) short of its margin (six pericytes among 285 cells would otherwise all be fibroblasts), and
    # with less where the classifier's lineage finds no support in them (on Puram's cells cut to the 197 genes of
    # a Xenium panel, 9 of its 20 B cells, with 8 seeds, were unassigned and 10 of its 20 fibroblasts, with 5, were
    # CD4 T; now 0 and 5)
    best = np.asarray(E_pooled.columns, dtype=object)[np.argmax(E_pooled.to_numpy(), axis=1)]
    unlearned = ~np.isin(marker_lineage, [lineage_of[lab] for lab in learn])
    favoured = L.to_numpy().max(axis=1)
    near_seed = (seeds == "") & unlearned & (lead > 0) & ((favoured >= MIN_EVIDENCE) | ((favoured > 0) & (claim <= 0)))
    kept = np.where(np.isin(seeds, [lab for lab in n_seeds if lab not in learn]), seeds,
                    np.where(near_seed, best, "")).astype(object)
    rare = kept != ""
    lineage[rare] = [lineage_of[s] for s in kept[rare]]
    label[rare] = kept[rare]
    conf[rare] = marker_conf[rare]
    # no class claims a cell whose own (pooled) markers speak against the lineage the classifier chose
    claimed = (rare | supported[np.arange(n), chosen]) if supported is not None else np.ones(n, dtype=bool)
    conf = np.where(claimed, conf, 0.0)
    lineage = np.where((conf >= min_confidence) & claimed, lineage, UNASSIGNED).astype(object)
    label = np.where(lineage == UNASSIGNED, UNASSIGNED, label).astype(object)
    by_markers = sorted({lineage_of[lab] for lab in kept[rare]} - {lineage_of[lab] for lab in learn})
    method = "classifier" if PL.shape[1] > 1 else "one lineage"
    return LineageResult(lineage, label, conf, E_pooled, PL, seeds, n_seeds, by_markers,
                         dict(not_assessable or {}), method, vetoed=~claimed)


def _supported(L: pd.DataFrame, E_pooled: pd.DataFrame, lineages, sibling_free: pd.DataFrame | None) -> np.ndarray:
    """Cells x ``lineages``: the cell's pooled markers do not speak against the lineage (its evidence ``L``, the
    labels' ``E_pooled`` by lineage, at least -``AGAINST``, or above 0 without the genes of a sibling lineage,
    ``sibling_free``)."""
    ok = L.reindex(columns=lineages).to_numpy() >= -AGAINST
    if sibling_free is not None and sibling_free.shape[1]:
        E_free = E_pooled.copy()
        E_free[sibling_free.columns] = sibling_free.to_numpy()
        ok |= by_lineage(E_free).reindex(columns=lineages).to_numpy() > 0
    return ok


def _without_contradicted(PL: pd.DataFrame, supported: np.ndarray) -> pd.DataFrame:
    """The classifier's probabilities with the share it puts on lineages the cell's own markers speak against set
    aside, and the rest renormalised, where that share is under half: a CD8 T cell at the NK border with 0.45 on T,
    0.40 on NK and 0.15 on a lineage its markers rule out is a T cell at 0.53. Where half or more falls on such
    lineages, the cell is of a kind the markers do not recognise (a CD34+ progenitor) and keeps its probabilities,
    which the veto then leaves unassigned."""
    P = PL.to_numpy()
    M = P * supported
    kept = M.sum(axis=1, keepdims=True)
    out = np.where(kept > 0.5, M / np.where(kept > 0, kept, 1.0), P)
    return pd.DataFrame(out, index=PL.index, columns=PL.columns)


def _learned_probability(features, seeds: np.ndarray, learn: list[str], index, seed: int) -> pd.DataFrame:
    """Per cell, the probability of each learned label: a logistic regression on ``features`` trained on the seeds
    of ``learn``; one learned label takes every cell (probability 1)."""
    if len(learn) == 1:
        return pd.DataFrame(1.0, index=index, columns=learn)
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    train = np.concatenate([_subsample(np.flatnonzero(seeds == lab), MAX_TRAIN_PER_LABEL, rng) for lab in learn])
    Xf = np.asarray(features, dtype=np.float64)
    mu, sd = Xf[train].mean(axis=0), Xf[train].std(axis=0)
    Xf = (Xf - mu) / np.where(sd > 0, sd, 1.0)
    model = LogisticRegression(C=LR_C, max_iter=1000, class_weight=LR_WEIGHT)
    # a few thousand rows x 30 features: BLAS threads only add overhead (30x on a busy 2-core machine)
    with threadpool_limits(1):
        model.fit(Xf[train], seeds[train])
        return pd.DataFrame(model.predict_proba(Xf), columns=model.classes_, index=index)


def not_decisive_here(table: MarkerTable, R: np.ndarray, gene_col: dict[str, int], seeds: np.ndarray) -> list[str]:
    """Decisive genes that more than ``MAX_DECISIVE_ELSEWHERE`` of the seeds of other lineages express."""
    lineage_of_seed = np.array([s.split("|")[0] for s in seeds], dtype=object)
    off = []
    for lab in table.labels:
        other = (seeds != "") & (lineage_of_seed != lab.lineage)
        for g in lab.decisive:
            if g in gene_col and other.any() and (R[other, gene_col[g]] > 0).mean() > MAX_DECISIVE_ELSEWHERE:
                off.append(g)
    return off


def carries_decisive(lab, own: pd.DataFrame, R: np.ndarray, gene_col: dict[str, int], *,
                     with_partner: bool = False, not_decisive=()) -> np.ndarray:
    """Cells that express every decisive gene of ``lab`` with their own (not pooled) evidence for the label at
    ``MIN_EVIDENCE`` or more (and, ``with_partner``, a second gene of its positive groups); all False when the
    panel lacks a decisive gene or the data set shows it elsewhere (``not_decisive``)."""
    n = len(own)
    if not lab.decisive or lab.label not in own.columns or any(g not in gene_col or g in not_decisive
                                                               for g in lab.decisive):
        return np.zeros(n, dtype=bool)
    ok = np.all(np.column_stack([R[:, gene_col[g]] > 0 for g in lab.decisive]), axis=1)
    ok &= own[lab.label].to_numpy() >= MIN_EVIDENCE
    if with_partner:
        others = [gene_col[g] for g in lab.genes if g in gene_col and g not in lab.decisive]
        ok &= (R[:, others] > 0).any(axis=1) if others else False
    return ok


def apply_decisive(res: LineageResult, own: pd.DataFrame, R: np.ndarray, gene_col: dict[str, int],
                   table: MarkerTable) -> np.ndarray:
    """Give a label's lineage to the cells that carry its decisive transcripts (in place); returns those cells.

    The label's own evidence is net of the other lineages' genes (its negatives: for Tregs the macrophage and
    monocyte groups, where spill-over shows). Their confidence is read from that evidence as a seed's is from its
    lead.
    """
    changed = np.zeros(len(own), dtype=bool)
    res.not_decisive = not_decisive_here(table, R, gene_col, res.seed)
    for lab in table.labels:
        take = carries_decisive(lab, own, R, gene_col, not_decisive=res.not_decisive) & (res.lineage != lab.lineage)
        if not take.any():
            continue
        res.lineage[take] = lab.lineage
        res.label[take] = lab.label
        res.confidence[take] = 1.0 - np.exp(-own[lab.label].to_numpy()[take] / SEED_MARGIN)
        changed |= take
    return changed


def _lead(L: pd.DataFrame) -> np.ndarray:
    arr = L.to_numpy()
    if arr.shape[1] == 0:
        return np.zeros(len(L))
    top2 = np.sort(arr, axis=1)[:, ::-1]
    return top2[:, 0] - (top2[:, 1] if arr.shape[1] > 1 else 0.0)


def _subsample(idx: np.ndarray, k: int, rng) -> np.ndarray:
    return idx if idx.size <= k else np.sort(rng.choice(idx, k, replace=False))


def pool(E: pd.DataFrame, W: sp.csr_matrix) -> pd.DataFrame:
    """Each cell's evidence averaged over its expression neighbours (``W`` row-normalised)."""
    return pd.DataFrame(W @ E.to_numpy(dtype=np.float64), index=E.index, columns=E.columns)


NO_READ = "without a read among the genes"
MARKERS_AGAINST = "whose own markers speak against the lineage the classifier chose"
NOT_CONFIDENT = "that no lineage claims with the confidence asked for"


def unassigned_reasons(lineage: np.ndarray, causes: dict[str, np.ndarray]) -> pd.DataFrame:
    """Why cells are ``unassigned``: the first of ``causes`` (reason -> cells, in order; an empty mask holds none)
    that holds the cell, else ``NOT_CONFIDENT`` (no lineage claims it with the confidence asked for). For RNA the
    causes are no single read and pooled markers that speak against the classifier's lineage (``vetoed``,
    :func:`call_lineages`: types the vocabulary does not name, doublets, spill-over). Columns ``reason``,
    ``n_cells`` and ``fraction`` (of all cells), one row per reason that occurs."""
    cols = ["reason", "n_cells", "fraction"]
    lineage = np.asarray(lineage, dtype=object)
    out = lineage == UNASSIGNED
    if not out.any():
        return pd.DataFrame(columns=cols)
    masks = {why: m for why, m in causes.items() if np.asarray(m).size}
    why = np.select(list(masks.values()), list(masks), NOT_CONFIDENT)[out] if masks else \
        np.full(int(out.sum()), NOT_CONFIDENT, dtype=object)
    n = pd.Series(why).value_counts().reindex([*masks, NOT_CONFIDENT]).dropna().astype(int)
    return pd.DataFrame({"reason": n.index, "n_cells": n.to_numpy(), "fraction": n.to_numpy() / lineage.size})[cols]

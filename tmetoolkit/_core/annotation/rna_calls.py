"""Annotate's RNA calls after the lineage identity: states within each lineage, the decisive-state pass, TAM and CAF
subsets, TAM polarization and the rule table (scores, the identity result and the rules in; a :class:`RnaCalls`
out, whose ``messages`` the runner warns)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ... import _keys
from ..._utils import logger
from . import lineage as lineage_core
from . import rules
from .identity import Identity, cluster_consensus, neighbour_mean_w
from .lineage import UNASSIGNED
from .markers import MarkerTable
from .states import decide, label_scores, noise_scale, standardise

_AS_ONE = "as one"  # states of a lineage that compete as one (rules.KILLERS, TAM_PROGRAMMES)
MACROPHAGE = "Monocyte/Macrophage"
# TAM M1-like and M2-like compete as one against monocytes and M-MDSC-like cells, and a cell called a TAM is named by
# its polarization (tam_polarization): M1-like, M2-like, or the lineage's name where both programmes are high or
# neither is. Competing as two, their lead over each other was read in the noise unit of all four monocyte and
# macrophage states, which the monocyte and M-MDSC-like programmes set (their down genes, C1QA/B and HLA class II,
# put macrophages far below zero): in that unit the M1-like and M2-like scores of Kim's macrophages spread by a
# standard deviation of 0.07 and 0.08, so 761 of its 1,052 monocytes/macrophages and 544 of Qian's 558 (both
# held-out sets) had no state, while tmt_tam_polarization called most of them M1-like or M2-like. One rule now says
# both (254 and 237 without a state, 196 and 233 of them mixed or neither); Chen's TAM M1-like vs M2-like 0.380 ->
# 0.436 (baseline 0.431), every other task of benchmarks/validate_annotation.py unchanged; simulate()'s
# monocyte/macrophage states 0.982 -> 0.977 (0.5% of them left without a state). Of Kim's 507 TAM calls, none
# turns to the other polarization at 2,000 variable genes (287 lose their state) and 3 at 1,000 counts a cell
# (127 lose it).
# each TAM state and the programme its polarization reads (listed with its deciding signatures in the rules table)
TAM_PROGRAMMES = {"TAM M1-like": "TAM_M1_like", "TAM M2-like": "TAM_M2_like"}
TAM_BY_POLARIZATION = {state.removeprefix("TAM "): state for state in TAM_PROGRAMMES}  # "M1-like" -> "TAM M1-like"


@dataclass
class RnaCalls:
    """Per cell ``lineage``, ``state`` and ``confidence``; ``subsets``: per ``obs`` column (``rules.SUBSET_RULES``)
    the subset, ``None`` outside its lineage; ``polarization`` (``None`` outside monocytes/macrophages); ``rules``:
    the rule table; ``splits``: the population splits (MDSC-like states, CD8 Tpex, apCAF) per sample;
    ``messages``: what the runner warns."""

    lineage: np.ndarray
    state: np.ndarray
    confidence: np.ndarray
    subsets: dict[str, np.ndarray]
    polarization: np.ndarray
    rules: pd.DataFrame
    splits: pd.DataFrame
    messages: list[str]


def call_rna(S: pd.DataFrame, ident: Identity, marker_table: MarkerTable,
             state_rules: dict[str, dict[str, tuple[str, ...]]], *, groups: pd.Series | None, samples: np.ndarray,
             n_neighbors: int, state_min: float, lineage_min: float, override: float,
             tumor_signature: str | None,
             killer_rules: dict[str, dict[str, tuple[str, ...]]] | None = None,
             second_programmes: dict[str, str] | None = None) -> RnaCalls:
    """States, subsets, polarization and the rule table from signature scores ``S`` (cells x signatures, each
    cell's own) and the lineage identity ``ident``.

    ``state_rules``: per lineage, label -> signatures (:func:`.rules.resolve`d); ``groups``: clusters (NaN: none)
    that lend their lineage to unsure cells (:func:`.identity.cluster_consensus`); ``samples``: per cell, within
    which the population splits are made; ``killer_rules``: per lineage, the table deciding among the cells called
    one of its killer states (default :func:`.rules.killer_rules`); ``second_programmes``: state -> the signature of
    a second programme that shows it as well where the cell's own score is above zero (default
    :func:`.rules.second_programmes`).

    States and subsets are called cell by cell within their lineage, whatever ``groups`` says: clusters at the
    resolution users cluster at hold a lineage, not a state, and a cluster's mean scores gave its majority state to
    the rest (with Leiden clusters as ``groups``, Treg F1 on Puram 0.900 -> 0.691, Zilionis monocyte vs macrophage vs
    DC 0.769 -> 0.686; with 40 k-means clusters, ``simulate()`` seed 3's monocyte/macrophage states 0.983 -> 0.650).
    """
    n = len(S)
    own = S
    if n_neighbors > 1 and n > 2:
        S = pd.DataFrame(neighbour_mean_w(S.to_numpy(dtype=np.float64), ident.weights), index=S.index,
                         columns=S.columns)
    not_assessable: dict[tuple[str, str], str] = {("lineage", lab): why
                                                  for lab, why in ident.result.not_assessable.items()}
    alone: dict[tuple[str, str], str] = {}  # states called without a rival, and why

    def call(table, mask, level, as_one=(), apart=()):
        M, missing = label_scores(S.loc[mask], table)
        for lab, why in missing.items():
            not_assessable[(level, lab)] = why
        for lab, name in second_programmes.items():  # the better of the two, the second where the cell reads it
            if lab in M.columns:
                read = own.loc[mask, name].to_numpy() > 0
                M[lab] = np.fmax(M[lab].to_numpy(), np.where(read, S.loc[mask, name].to_numpy(), np.nan))
        M = M.drop(columns=[c for c in apart if c in M.columns])
        rivals = [lab for lab in table if lab not in apart]
        if M.shape[1] == 1 and len(rivals) > 1:  # its rivals cannot be scored (rules.ALONE)
            lone = M.columns[0]
            alone[(level, lone)] = rules.ALONE.format(state=lone, rivals=" and ".join(r for r in rivals if r != lone))
            return lone_state(M[lone].to_numpy(dtype=float), samples[mask], lone)
        # states that compete as one against the others (the killer states, rules.KILLERS: a Tex cell that keeps
        # its granzymes ties with the effector state, and the tie is no lead over naive/memory or Tpex; the TAM
        # states, TAM_PROGRAMMES)
        inner = [k for k in as_one if k in M.columns]
        first = None
        if len(inner) > 1:
            raw = np.nan_to_num(M[inner].to_numpy(dtype=float), nan=-np.inf)
            first = np.asarray(inner, dtype=object)[np.argmax(raw, axis=1)]
            M = M.rename(columns={k: f"{_AS_ONE}|{k}" for k in inner})
        # labels naming the same lineage compete as one: the runner-up is another label
        M = standardise(M)
        sigma = 1.0  # confidence 0.63 at a lead of one noise unit, 0.95 at three
        labels, _, conf = decide(M, sigma, min_score=0.0)
        if first is not None:  # the better of them, until which_killers or the polarization decides among them
            labels = np.where(labels == _AS_ONE, first, labels)
        return labels, conf

    def lone_state(values, in_sample, lone):
        # a lone state is called where its cells form a population apart within their sample, its confidence the
        # lead over the crossing of the two populations in noise units
        labels, lead = np.full(len(values), UNASSIGNED, dtype=object), np.zeros(len(values))
        for smp in pd.unique(in_sample):
            cells = np.flatnonzero(in_sample == smp)
            low, info = rules.split_two_populations(values[cells], min_cells=lineage_core.MIN_SEEDS)
            if low is not None:
                high = cells[~low & np.isfinite(values[cells])]
                labels[high] = lone
                lead[high] = values[high] - info["threshold"]
        return labels, 1.0 - np.exp(-lead / noise_scale(values))

    def which_killers(lin, table):
        # among the cells called one of the lineage's killer states, which killer, on sets without the programme
        # they share (rules.killer_rules); a cell whose lead there is too small keeps its call. Where a killer
        # state cannot be scored among killers (no fallback), they are the default (first) state.
        among = (lineage == lin) & np.isin(state, list(table))
        if not among.any():
            return
        M, missing = label_scores(S.loc[among], table)
        if missing:
            default = next(iter(table))
            for lab, why in missing.items():
                not_assessable[(lin, lab)] = f"{why} (among {' and '.join(table)} cells); they stay {default}"
            state[among] = default
            return
        st, _, st_conf = decide(standardise(M), 1.0, min_score=0.0)
        ok = st_conf >= state_min
        state[among] = np.where(ok, st, state[among])
        conf[among] = np.where(ok, np.minimum(conf[among], st_conf), conf[among])

    killer_rules = rules.killer_rules()[0] if killer_rules is None else killer_rules
    second_programmes = rules.second_programmes()[0] if second_programmes is None else second_programmes
    second_programmes = {lab: name for lab, name in second_programmes.items() if name in S.columns}  # scored
    lineage, lin_conf = ident.result.lineage.copy(), ident.result.confidence.copy()
    if groups is not None:
        lineage, lin_conf = cluster_consensus(ident.result, groups, override, lineage_min,
                                              parents=marker_table.splits)
    state = lineage.copy()
    conf = lin_conf.copy()
    for lin, table in state_rules.items():
        mask = lineage == lin
        if not mask.any():
            if lin == "CD8 T":
                logger.info("no CD8 T cells found: progenitor and terminal exhaustion were not assessed")
            continue
        as_one = tuple(killer_rules.get(lin, ())) or (tuple(TAM_PROGRAMMES) if lin == MACROPHAGE else ())
        st, st_conf = call(table, mask, lin, as_one=as_one, apart=rules.apart_from_lineage(lin))
        ok = (st_conf >= state_min) & (st != UNASSIGNED)
        state[mask] = np.where(ok, st, lin)
        conf[mask] = np.where(ok, np.minimum(lin_conf[mask], st_conf), lin_conf[mask])
        if lin in killer_rules:
            which_killers(lin, killer_rules[lin])
    # a panel that cannot score one of the two programmes has no polarization: its TAM calls stay the competition's
    polarization = tam_polarization(S, lineage)
    tam = (lineage == MACROPHAGE) & np.isin(state, list(TAM_PROGRAMMES)) & pd.notna(polarization)
    state[tam] = [TAM_BY_POLARIZATION.get(p, MACROPHAGE) for p in polarization[tam]]
    # mixed or neither: the finest call left is the lineage, and so is its confidence
    unnamed = tam & (state == MACROPHAGE)
    conf[unnamed] = lin_conf[unnamed]
    splits = rules.population_splits(S, lineage, state, samples, min_cells=lineage_core.MIN_SEEDS)

    # a cell carrying a decisive transcript with a partner (FOXP3 and a second Treg gene: stimulated conventional
    # human CD4 T cells can express FOXP3 alone, Tran, Ramsey & Shevach 2007 Blood 110:2983) is that state
    for lab in marker_table.labels:
        if lab.decisive_state is None:
            continue
        family = {lab.lineage, *(sub.label for sub in marker_table.splits.get(lab.lineage, ()))}
        carries = lineage_core.carries_decisive(lab, ident.evidence_own, ident.ranks, ident.gene_col,
                                                with_partner=True, not_decisive=ident.result.not_decisive)
        take = carries & np.isin(lineage, [f for f in family if lab.decisive_state in _keys.states().get(f, ())])
        state[take] = lab.decisive_state

    subsets = {}
    for col, (lin, table) in rules.SUBSET_RULES.items():
        mask = lineage == lin
        out = np.full(n, "", dtype=object)
        if mask.any():
            st, st_conf = call(table, mask, col)
            out[mask] = np.where(st_conf >= state_min, st, "undetermined")
        subsets[col] = np.where(mask, out, None)

    rule_tab = _rule_table(marker_table, ident, state_rules, not_assessable, killer_rules, alone, second_programmes)
    messages = _messages(rule_tab, ident, tumor_signature, marker_table.complexes)
    return RnaCalls(lineage=lineage, state=state, confidence=conf, subsets=subsets,
                    polarization=polarization, rules=rule_tab, splits=splits, messages=messages)


def tam_polarization(S: pd.DataFrame, lineage: np.ndarray) -> np.ndarray:
    """``M1-like``, ``M2-like``, ``M1/M2 mixed`` or ``neither`` per monocyte/macrophage (``None`` elsewhere): a
    programme is high above two noise units, and both are high and within two noise units of each other in a mixed
    cell (co-expression, Azizi 2018).

    The noise unit is :func:`.states.noise_scale` of both scores over every cell: the cells that make neither
    programme (most of them lymphocytes, stromal and tumour cells) hold its background. Read among the macrophages
    alone, which nearly all make the M2-like genes, it came from too few cells below zero and fell back on the
    spread of expression itself: 6 of the 17 cells of Puram's 20 macrophages called monocyte/macrophage were
    M1-like or M2-like (now 13: 12 M2-like, 1 M1-like; 3 mixed)."""
    mac = lineage == MACROPHAGE
    pol = np.full(len(lineage), None, dtype=object)
    both_programmes = list(TAM_PROGRAMMES.values())
    if mac.any() and set(both_programmes) <= set(S.columns):
        m1, m2 = S.loc[mac, both_programmes].to_numpy(dtype=float).T
        sig = noise_scale(S[both_programmes].to_numpy(dtype=float).ravel())
        hi1, hi2 = m1 > 2 * sig, m2 > 2 * sig
        both = hi1 & hi2 & (np.abs(m1 - m2) < 2 * sig)
        pol[mac] = np.select([both, hi1 & (m1 > m2), hi2 & (m2 >= m1)], ["M1/M2 mixed", "M1-like", "M2-like"],
                             "neither")
    return pol


def _rule_table(marker_table: MarkerTable, ident: Identity, state_rules, not_assessable,
                killer_rules, alone, second_programmes) -> pd.DataFrame:
    """Every label, what decides it and whether it could be assessed (``uns["tmt_annotate"]["rules"]``); a killer
    state's signatures include the sets deciding among killers (``<name>_among_killers``), a state with a second
    programme that programme's set (``<name>_second_programme``)."""
    called = pd.Series(ident.result.label).value_counts()
    spare = lineage_core.stand_ins(marker_table, ident.gene_col)
    against = lineage_core.stand_ins(marker_table, ident.gene_col, negative=True)
    for parent, sub in marker_table.splits.items():  # CD8 T and CD4 T rows carry what T cells were read by
        for lab in sub:
            spare[lab.label] = [*spare.get(parent, ()), *spare.get(lab.label, ())]
    rows = [{"level": "lineage", "label": lab.label, "signatures": f"markers:{lab.label}",
             "genes": ",".join(lab.genes), "genes_read": ",".join(g for g in lab.genes if g in ident.gene_col),
             "stand_ins": ",".join(spare.get(lab.label, ())),
             "negative": ",".join(dict.fromkeys(g for grp in lab.negative for g in grp)),
             "negative_stand_ins": ",".join(against.get(lab.label, ())),
             "n_seeds": int(ident.result.n_seeds.get(lab.label, 0)), "n_called": int(called.get(lab.label, 0)),
             "assessable": ("lineage", lab.label) not in not_assessable,
             "reason": not_assessable.get(("lineage", lab.label), "")}
            for lab in marker_table.every_label if lab.label not in marker_table.splits]
    for level, table in (*state_rules.items(), *((c, t) for c, (_, t) in rules.SUBSET_RULES.items())):
        killers = killer_rules.get(level, {})
        for label, sigs in table.items():
            why = not_assessable.get((level, label), "")
            # a killer state: those deciding among killers too; a TAM state: the programme of its polarization
            polarized = (TAM_PROGRAMMES[label],) if level == MACROPHAGE and label in TAM_PROGRAMMES else ()
            second = (second_programmes[label],) if label in second_programmes else ()
            sigs = dict.fromkeys([*sigs, *killers.get(label, ()), *polarized, *second])
            rows.append({"level": level, "label": label, "signatures": ",".join(sigs), "assessable": not why,
                         "reason": why or alone.get((level, label), "")})
    rule_tab = pd.DataFrame(rows).fillna({"genes": "", "genes_read": "", "stand_ins": "", "negative": "",
                                         "negative_stand_ins": "", "n_seeds": 0, "n_called": 0})
    rule_tab[["n_seeds", "n_called"]] = rule_tab[["n_seeds", "n_called"]].astype(int)
    return rule_tab


# a label whose table lists at least this many marker genes but whose panel reads one of them (a complex's subunits
# count as one) is named when it calls at least MIN_SEEDS cells: a selected-gene panel that keeps PDGFRA alone of the
# fibroblast genes calls oligodendrocyte precursors fibroblasts (Tirosh 2016, 132 of 142 glioma cells)
SINGLE_MARKER_OF = 3


def single_marker_labels(rule_tab: pd.DataFrame, complexes=()) -> pd.DataFrame:
    """The lineage labels of a rules table (``uns["tmt_annotate"]["rules"]``) that the panel read from one gene, a
    marker or a stand-in (a complex's subunits are one), though they list ``SINGLE_MARKER_OF`` or more, calling at
    least ``MIN_SEEDS`` cells: ``label``, ``gene``, ``n_genes`` listed, ``n_cells`` called and ``stand_in`` (the
    gene stands in for the listed ones rather than being one of them)."""
    unit = {g: cx[0] for cx in complexes for g in cx}
    rows = []
    lineages = rule_tab[(rule_tab["level"] == "lineage") & rule_tab["assessable"].astype(bool)]
    for r in lineages.itertuples():
        listed = [g for g in str(r.genes).split(",") if g]
        read = [g for g in (*str(r.genes_read).split(","), *str(r.stand_ins).split(",")) if g]
        if len(listed) >= SINGLE_MARKER_OF and len({unit.get(g, g) for g in read}) == 1 \
                and int(r.n_called) >= lineage_core.MIN_SEEDS:
            rows.append({"label": r.label, "gene": read[0], "n_genes": len(listed), "n_cells": int(r.n_called),
                         "stand_in": read[0] not in listed})
    return pd.DataFrame(rows, columns=["label", "gene", "n_genes", "n_cells", "stand_in"])


def _single_marker_messages(rule_tab: pd.DataFrame, complexes) -> list[str]:
    """A warning naming the labels of :func:`single_marker_labels`, their cells and genes."""
    single = single_marker_labels(rule_tab, complexes)
    if single.empty:
        return []
    named = []
    for r in single.itertuples():
        lineage, _, kind = str(r.label).partition("|")
        what = f"{lineage} ({kind})" if kind else lineage
        how = f"a stand-in for its {r.n_genes} genes" if r.stand_in else f"one of its {r.n_genes} genes"
        named.append(f"{what}: {r.n_cells} cells on {r.gene}, {how}")
    genes = list(dict.fromkeys(single["gene"]))
    return ["read from one marker gene on this panel: " + "; ".join(named) + ". Other cell types may make that gene "
            f"too: look at it across lineages, e.g. sc.pl.dotplot(adata, {genes!r}, groupby='tmt_lineage')"]


def _messages(rule_tab: pd.DataFrame, ident: Identity, tumor_signature: str | None, complexes=()) -> list[str]:
    """The labels that could not be assessed, labels read from one marker gene, and a malignant lineage too rare to
    learn."""
    messages = []
    # a lineage is not assessable when none of its labels is ("Malignant/Epithelial|melanocytic" alone is not news)
    lin_of = rule_tab["label"].astype(str).str.split("|").str[0]
    lineage_ok = rule_tab[rule_tab["level"] == "lineage"].groupby(lin_of)["assessable"].any()
    quiet = (rule_tab["level"] == "lineage") & lin_of.map(lineage_ok.to_dict()).eq(True)
    skipped = rule_tab.loc[~rule_tab["assessable"] & ~quiet & rule_tab["level"].isin(["lineage", *_keys.states()])]
    if len(skipped):
        malignant = rule_tab[(rule_tab["level"] == "lineage")
                             & rule_tab["label"].str.startswith("Malignant/Epithelial")]["assessable"]
        hint = ("; no cell can be called malignant on this panel: if a programme marks the malignant cells, pass "
                "tumor_signature= (e.g. 'MPAS')" if not malignant.any() else "")
        # the classifier learns only the lineages the panel can read; a lost lineage's cells are called one of them
        lost = [lin for lin, ok in lineage_ok.items() if not ok and not lin.startswith("Malignant/Epithelial")]
        fate = (f"; cells of {' or '.join(lost)} are called another lineage the panel can read, or unassigned"
                if lost else "")
        messages.append("not assessable (signature genes missing): "
                        + ", ".join(f"{r.label} ({r.level})" for r in skipped.itertuples()) + hint + fate)
    messages += _single_marker_messages(rule_tab, complexes)
    malignant_seeds = sum(n for lab, n in ident.result.n_seeds.items() if lab.startswith("Malignant/Epithelial"))
    malignant_measured = any(r.startswith("Malignant/Epithelial") for r in ident.evidence_own.columns)
    if malignant_measured and malignant_seeds < lineage_core.MIN_SEEDS and tumor_signature is None:
        cells = "cell shows" if malignant_seeds == 1 else "cells show"
        messages.append(f"only {malignant_seeds} {cells} the epithelial markers with confidence, too few to learn the "
                        "malignant lineage: only cells whose own markers say so are called malignant. Expected for "
                        "sorted immune cells; if malignant cells are among these and a programme marks them, pass "
                        "tumor_signature= (e.g. 'MPAS')")
    return messages

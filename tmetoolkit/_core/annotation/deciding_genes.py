"""The genes behind each call of ``tmt.tl.annotate``: which signatures' (or, on a protein panel, which markers')
genes decided each label, and how they differ between the label's cells and the cells it was chosen against.
``tmt.get.markers`` reads the stored calls and the matrix and calls these."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ... import _keys
from ..._matrix import above_floor
from ...sig import get
from ...sig._genes import GeneIndex
from . import protein as prot
from .markers import lineage_markers
from .rules import SUBSET_RULES, published_name

SUBSET_KEYS = (_keys.TAM_SUBSET, _keys.CAF_SUBSET)


def deciding_rules(rules: pd.DataFrame, key: str) -> dict[str, tuple[str | None, list[str]]]:
    """label -> (the lineage its cells are compared within, or ``None`` for all cells; deciding signatures)."""
    lineage_of = rules["label"].astype(str).str.split("|").str[0]
    lineage_rows = rules[rules["level"] == "lineage"]
    out: dict[str, tuple[str | None, list[str]]] = {}

    def add(label, parent, sigs):
        have = out.setdefault(label, (parent, []))[1]
        have += [s for s in str(sigs).split(",") if s and s not in have]

    if key == _keys.LINEAGE:
        for lab, sigs in zip(lineage_of[lineage_rows.index], lineage_rows["signatures"], strict=True):
            add(lab, None, sigs)
        return out
    if key in SUBSET_KEYS:
        for _, row in rules[rules["level"] == key].iterrows():
            add(str(row["label"]), SUBSET_RULES[key][0], row["signatures"])
        return out
    state_rows = rules[~rules["level"].isin(["lineage", *SUBSET_KEYS])]
    for _, row in state_rows.iterrows():
        add(str(row["label"]), str(row["level"]), row["signatures"])
    # a cell whose state is its lineage's name (B, Mast, DC, ... and cells of a lineage with states whose state was
    # not decided) is described by its lineage's markers against all cells
    for lab, sigs in zip(lineage_of[lineage_rows.index], lineage_rows["signatures"], strict=True):
        if lab not in out or out[lab][0] is None:
            add(lab, None, sigs)
    return out


def protein_deciding(gates: pd.DataFrame, var_names: pd.Index,
                     key: str) -> dict[str, tuple[str | None, list[tuple[int, str, str]]]]:
    """Protein panels: label -> (the lineage it is compared within, or ``None``; ``(channel column, marker, "up")``
    for each gated marker of its rule), from annotate's gate table (``marker``, ``channel``)."""
    gates = gates.set_index("marker")
    column = {m: var_names.get_loc(ch) for m, ch in gates["channel"].items()}

    def gated(rule):
        return [(column[m], m, "up") for group in rule for m in group if m in column]

    out: dict[str, tuple[str | None, list[tuple[int, str, str]]]] = {}
    for label, rule in prot.LINEAGE_RULES.items():
        lineage, _, sub = label.partition("|")
        if key == _keys.STATE and sub == "Treg":  # Tregs are the CD4 T cells whose FOXP3 rule wins
            out["Treg"] = ("CD4 T", gated(rule))
        else:  # with key tmt_state, the lineage's name is the state of its cells whose state was not decided
            have = out.setdefault(lineage, (None, []))[1]
            have += [g for g in gated(rule) if g not in have]
    if key == _keys.STATE:
        for lineage, table in prot.STATE_RULES.items():
            for label, rule in table.items():
                out[label] = (lineage, gated(rule))
    return {lab: v for lab, v in out.items() if v[1]}


MARKER_PREFIX = "markers:"


def signature_genes(signatures: pd.DataFrame, var_names, names: list[str],
                    species: str) -> list[tuple[int, str, str]]:
    """``(column of var_names, signature, "up"|"down")`` for each gene a signature was scored on, from the
    scoring's signature table (``signature``, ``genes_used``, ``scored``); ``markers:<label>`` names a lineage
    label of the marker table (its positive and negative genes)."""
    info = signatures.set_index("signature")
    index = GeneIndex(var_names, species)
    out = []
    todo = list(names)
    for name in todo:  # grows by the registry signature behind a user's malignant label
        if name.startswith(MARKER_PREFIX):  # a lineage label of the marker table: its positive and negative genes
            label = name.removeprefix(MARKER_PREFIX)
            lab = marker_label(label)
            if lab is None:  # a malignant programme given as tumor_signature=: a registry signature
                todo.append(label.split("|")[-1])
                continue
            negative = [g for grp in lab.negative for g in grp]
            for direction, genes in (("up", lab.genes), ("down", negative)):
                for pos in index.match(genes).values():
                    out += [(int(i), label, direction) for i in pos]
            continue
        if name not in info.index or not info.at[name, "genes_used"]:
            continue
        if "scored" in info.columns and not info.at[name, "scored"]:
            continue  # too few of its genes on the panel: it decided nothing
        down = set(get(published_name(name)).genes_down)
        used = str(info.at[name, "genes_used"]).split(",")
        for gene, pos in index.match(used).items():
            for i in pos:
                out.append((int(i), name, "down" if gene in down else "up"))
    return out


def marker_label(label: str):
    """The entry of the lineage marker table that decided ``label`` (``None`` for a user's malignant programme)."""
    return next((lab for lab in lineage_markers().every_label if lab.label == label), None)


def group_sums(chunks, cols: list[int], groupings: list[pd.Series]):
    """Per category of each grouping (missing values left out): cells, summed values and cells detecting each
    gene, accumulated over row ``chunks`` (``(start, stop, values, floor)``: cells ``start:stop`` x the columns
    ``cols``, and per cell the value its undetected genes hold)."""
    cats = [g.astype("category").cat.categories.astype(str) for g in groupings]
    codes = [g.astype("category").cat.codes.to_numpy() for g in groupings]
    sums = [np.zeros((len(c), len(cols))) for c in cats]
    detected = [np.zeros((len(c), len(cols))) for c in cats]
    for start, stop, V, floor in chunks:
        positive = above_floor(V.toarray() if sp.issparse(V) else V, floor).astype(np.float64)
        for k, code in enumerate(codes):
            c = code[start:stop]
            ok = c >= 0
            onehot = sp.csr_matrix((np.ones(ok.sum()), (c[ok], np.flatnonzero(ok))), shape=(len(cats[k]), stop - start))
            for total, M in ((sums[k], V), (detected[k], positive)):
                part = onehot @ M
                total += part.toarray() if sp.issparse(part) else np.asarray(part)
    return [(pd.Series(np.bincount(code[code >= 0], minlength=len(c)), index=c),
             pd.DataFrame(s_, index=c, columns=cols), pd.DataFrame(d_, index=c, columns=cols))
            for code, c, s_, d_ in zip(codes, cats, sums, detected, strict=True)]


def marker_table(labels: list[str], deciding: dict, per_label: dict, sums, var_names, *, protein: bool,
                 n_genes: int | None) -> pd.DataFrame:
    """The rows of :func:`tmetoolkit.get.markers` from :func:`group_sums` over the label's cells and over the
    lineages (``sums``): per label and deciding gene of ``per_label`` (``(column, signature, direction)``), mean
    and detection in the label's cells and in the rest of the cells it is compared with (its lineage in
    ``deciding``, or every cell with a lineage); on RNA, up genes not higher in the label's cells are left out."""
    (n_lab, s_lab, d_lab), (n_lin, s_lin, d_lin) = sums
    rows = []
    for lab in labels:
        parent = deciding[lab][0]
        if parent is None:  # every cell with a lineage
            n_p, s_p, d_p = n_lin.sum(), s_lin.sum(), d_lin.sum()
        else:
            n_p, s_p, d_p = n_lin[parent], s_lin.loc[parent], d_lin.loc[parent]
        n_in, n_rest = n_lab[lab], n_p - n_lab[lab]  # a label's cells lie within the cells it is compared with
        by_gene: dict[tuple[int, str], list[str]] = {}
        for col, sig, direction in per_label[lab]:
            by_gene.setdefault((col, direction), []).append(sig)
        for (col, direction), sigs in by_gene.items():
            rest = n_rest if n_rest else np.nan  # no cells to compare with: NaN, not 0
            mean = s_lab.at[lab, col] / n_in
            mean_rest = (s_p[col] - s_lab.at[lab, col]) / rest
            frac = d_lab.at[lab, col] / n_in
            frac_rest = (d_p[col] - d_lab.at[lab, col]) / rest
            rows.append({"label": lab, "compared_with": parent or "all cells", "gene": var_names[col],
                         "column": col, "signatures": ",".join(sigs), "direction": direction, "n_cells": int(n_in),
                         "n_rest": int(n_rest), "mean": mean, "mean_rest": mean_rest, "frac": frac,
                         "frac_rest": frac_rest, "delta": mean - mean_rest})
    table = pd.DataFrame(rows)
    if not protein:  # a deciding up gene that is not higher in the label's cells than in the rest marks nothing
        table = table[(table["direction"] == "down") | (table["delta"] > 0)]
    order = {lab: i for i, lab in enumerate(labels)}
    table = table.assign(_o=table["label"].map(order), _d=table["direction"].eq("down"))
    table = table.sort_values(["_o", "_d", "delta"], ascending=[True, True, False])
    if n_genes is not None:
        table = table[table["_d"] | (table.groupby("label").cumcount() < n_genes)]
    return table.drop(columns=["_o", "_d"]).reset_index(drop=True)

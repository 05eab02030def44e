"""The genes behind each ``tmt.tl.annotate`` call: how the deciding signatures' genes differ between a label's cells
and the cells the label was chosen against."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._matrix import above_floor, get_matrix, iter_rows, normalise_block, row_floor
from .._utils import TmtInputError
from ..tl._checkpoints import is_protein

SUBSET_KEYS = (_keys.TAM_SUBSET, _keys.CAF_SUBSET)
KEYS = (_keys.LINEAGE, _keys.STATE, *SUBSET_KEYS)


def _stored_annotation(adata: AnnData, key: str) -> tuple[pd.DataFrame, dict, bool]:
    if key not in KEYS:
        msg = f"key must be one of {KEYS} (a column written by tmt.tl.annotate), got {key!r}."
        raise TmtInputError(msg)
    stored = adata.uns.get(_keys.ANNOTATE)
    protein = is_protein(adata)
    if protein and key in SUBSET_KEYS:
        msg = f"{key} is called from expression programmes; a protein panel has no such column."
        raise TmtInputError(msg)
    if stored is None or key not in adata.obs:
        msg = f"adata.obs[{key!r}] or adata.uns['tmt_annotate'] is missing: run tmt.tl.annotate(adata) first."
        raise KeyError(msg)
    return stored["rules"], dict(stored["params"]), protein


def _deciding_rules(rules: pd.DataFrame, key: str) -> dict[str, tuple[str | None, list[str]]]:
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
        from .._core.annotation.rules import SUBSET_RULES

        for _, row in rules[rules["level"] == key].iterrows():
            add(str(row["label"]), SUBSET_RULES[key][0], row["signatures"])
        return out
    state_rows = rules[~rules["level"].isin(["lineage", *SUBSET_KEYS])]
    for _, row in state_rows.iterrows():
        add(str(row["label"]), str(row["level"]), row["signatures"])
    # lineages without states (B, Mast, DC, ...) keep their lineage label as the state
    for lab, sigs in zip(lineage_of[lineage_rows.index], lineage_rows["signatures"], strict=True):
        if lab not in _keys.states() and lab not in out:
            add(lab, None, sigs)
    return out


def _protein_markers(adata: AnnData, key: str) -> dict[str, tuple[str | None, list[tuple[int, str, str]]]]:
    """Protein panels: label -> (the lineage it is compared within, or ``None``; ``(channel column, marker, "up")``
    for each gated marker of its rule)."""
    from .._core.annotation import protein as prot

    gates = adata.uns[_keys.ANNOTATE]["gates"].set_index("marker")
    column = {m: adata.var_names.get_loc(ch) for m, ch in gates["channel"].items()}

    def gated(rule):
        return [(column[m], m, "up") for group in rule for m in group if m in column]

    out: dict[str, tuple[str | None, list[tuple[int, str, str]]]] = {}
    for label, rule in prot.LINEAGE_RULES.items():
        lineage, _, sub = label.partition("|")
        if key == _keys.STATE and sub == "Treg":  # Tregs are the CD4 T cells whose FOXP3 rule wins
            out["Treg"] = ("CD4 T", gated(rule))
        elif key == _keys.LINEAGE or lineage not in _keys.states():
            have = out.setdefault(lineage, (None, []))[1]
            have += [g for g in gated(rule) if g not in have]
    if key == _keys.STATE:
        for lineage, table in prot.STATE_RULES.items():
            for label, rule in table.items():
                out[label] = (lineage, gated(rule))
    return {lab: v for lab, v in out.items() if v[1]}


MARKER_PREFIX = "markers:"


def _signature_genes(adata: AnnData, names: list[str], species: str) -> list[tuple[int, str, str]]:
    """``(column of var_names, signature, "up"|"down")`` for each gene a signature was scored on."""
    from ..sig import get
    from ..sig._genes import GeneIndex
    from .._core.annotation.rules import SPECIFIC_SUFFIX

    info = adata.uns[_keys.SCORES]["signatures"].set_index("signature")
    index = GeneIndex(adata.var_names, species)
    out = []
    todo = list(names)
    for name in todo:  # grows by the registry signature behind a user's malignant label
        if name.startswith(MARKER_PREFIX):  # a lineage label of the marker table: its positive and negative genes
            label = name.removeprefix(MARKER_PREFIX)
            lab = _marker_label(label)
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
        down = set(get(name.removesuffix(SPECIFIC_SUFFIX)).genes_down)
        used = str(info.at[name, "genes_used"]).split(",")
        for gene, pos in index.match(used).items():
            for i in pos:
                out.append((int(i), name, "down" if gene in down else "up"))
    return out


def _marker_label(label: str):
    """The entry of the lineage marker table that decided ``label`` (``None`` for a user's malignant programme)."""
    from .._core.annotation.markers import lineage_markers

    table = lineage_markers()
    every = [*table.labels, *(lab for sub in table.splits.values() for lab in sub)]
    return next((lab for lab in every if lab.label == label), None)


def _lognormalised_chunks(adata: AnnData, cols: list[int]):
    """Row chunks of cells x the columns ``cols`` of var_names on the log-normalised scale that
    :func:`tmetoolkit.tl.annotate` scored on (raw counts normalised to the median library size it recorded,
    linear values log1p-transformed)."""
    params = adata.uns[_keys.ANNOTATE]["params"]
    layer = None if params.get("layer", "X") == "X" else params["layer"]
    state, target_sum = params["input_state"], params.get("target_sum")
    if target_sum is None and state == "counts":  # annotated before annotate recorded it
        from ..pp._check import inspect

        target_sum = inspect(adata, layer).target_sum
    for start, stop, block in iter_rows(get_matrix(adata, layer)):
        V = normalise_block(block, state, target_sum, cols)
        # a gene is detected above the value the cell's zero counts map to (log2(x + eps) has negatives)
        floor = row_floor(block) if state == "lognorm" else np.zeros(stop - start)
        yield start, stop, sp.csr_matrix(V), floor


def _evidence_chunks(adata: AnnData, cols: list[int]):
    """Protein panels: each channel's marker evidence (SDs above its gate, after spill-over removal)."""
    marker = adata.uns[_keys.ANNOTATE]["gates"].set_index("channel")["marker"]
    E = adata.obsm[_keys.SCORES][[f"{marker[adata.var_names[c]]}+" for c in cols]].to_numpy(dtype=np.float64)
    yield 0, adata.n_obs, E, np.zeros(adata.n_obs)


def _value_chunks(adata: AnnData, cols: list[int]):
    return _evidence_chunks(adata, cols) if is_protein(adata) else _lognormalised_chunks(adata, cols)


def marker_values(adata: AnnData, cols: list[int]) -> sp.csr_matrix | np.ndarray:
    """Cells x the columns ``cols`` of var_names as :func:`markers` measures them: log-normalised as
    :func:`tmetoolkit.tl.annotate` scored them, or a protein marker's evidence."""
    parts = [V for _, _, V, _ in _value_chunks(adata, cols)]
    return sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)


def _group_sums(adata: AnnData, cols: list[int], groupings: list[pd.Series]):
    """Per category of each grouping (missing values left out): cells, summed values and cells detecting each
    gene, accumulated over row chunks."""
    cats = [g.astype("category").cat.categories.astype(str) for g in groupings]
    codes = [g.astype("category").cat.codes.to_numpy() for g in groupings]
    sums = [np.zeros((len(c), len(cols))) for c in cats]
    detected = [np.zeros((len(c), len(cols))) for c in cats]
    for start, stop, V, floor in _value_chunks(adata, cols):
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


def markers(adata: AnnData, key: str = _keys.STATE, *, n_genes: int | None = None) -> pd.DataFrame:
    """The genes behind each call of :func:`tmetoolkit.tl.annotate`, per label.

    For every label in ``obs[key]``, the genes of the signatures that decided it (those the scoring used, after
    :func:`~tmetoolkit.tl.annotate` removed genes shared between sibling states), with their mean log-normalised
    expression and detection rate in the label's cells and in the cells it was chosen against: for lineages all
    other cells with a lineage, for states and subsets the other cells of the same lineage. Genes a label is
    decided against (down genes, such as HAVCR2 for progenitor-exhausted CD8 T cells) are listed with
    ``direction = "down"``. Use it to check a call the way one checks clusters with marker genes; plot it with
    :func:`tmetoolkit.pl.markers`.

    On a protein panel the rows are the gated markers of each label's rule (``signatures`` holds the marker,
    ``gene`` its channel); ``mean`` is the marker evidence, in SDs of the negative cells above the gate after
    spill-over removal, and ``frac`` the fraction of cells above the gate.

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.annotate` (raw counts are log-normalised here as for scoring).
    key
        ``"tmt_state"``, ``"tmt_lineage"``, ``"tmt_tam_subset"`` or ``"tmt_caf_subset"`` (RNA only).
    n_genes
        Keep the ``n_genes`` up genes with the largest difference per label (down genes are kept in full).

    Returns
    -------
    One row per label and gene: ``label``, ``compared_with`` (the lineage, or ``"all cells"``), ``gene``
    (its var name), ``column`` (its position in var_names), ``signatures``, ``direction``, ``n_cells``,
    ``n_rest``, ``mean``, ``mean_rest``, ``frac``, ``frac_rest`` and ``delta`` (``mean - mean_rest``); per label
    up genes first, by decreasing ``delta`` (on RNA, up genes that are not higher in the label's cells are left
    out). Nothing is written into ``adata``.
    """
    rules, params, protein = _stored_annotation(adata, key)
    if n_genes is not None and (int(n_genes) != n_genes or n_genes < 1):
        msg = f"n_genes must be a positive integer or None, got {n_genes!r}."
        raise TmtInputError(msg)
    if protein:
        deciding = _protein_markers(adata, key)
    else:
        deciding = _deciding_rules(rules, key)
    called = adata.obs[key].astype(str)
    present = adata.obs[key].cat.categories if isinstance(adata.obs[key].dtype, pd.CategoricalDtype) else deciding
    labels = [lab for lab in map(str, present) if lab in deciding and (called == lab).any()]
    if not labels:
        msg = f"no label in adata.obs[{key!r}] was decided by a rule (all cells unassigned?)."
        raise TmtInputError(msg)
    if protein:
        per_label = {lab: deciding[lab][1] for lab in labels}
    else:
        species = params.get("species") or "human"
        per_label = {lab: _signature_genes(adata, deciding[lab][1], species) for lab in labels}
    cols = list(dict.fromkeys(i for rows in per_label.values() for i, _, _ in rows))
    lineage = adata.obs[_keys.LINEAGE].astype(str)
    assigned = lineage.where(lineage != "unassigned")
    (n_lab, s_lab, d_lab), (n_lin, s_lin, d_lin) = _group_sums(adata, cols, [called, assigned])

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
            rows.append({"label": lab, "compared_with": parent or "all cells", "gene": adata.var_names[col],
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



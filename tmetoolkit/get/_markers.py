"""The genes behind each ``tmt.tl.annotate`` call: how the deciding signatures' genes differ between a label's cells
and the cells the label was chosen against."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._core.annotation.deciding_genes import (
    SUBSET_KEYS,
    deciding_rules,
    group_sums,
    marker_table,
    protein_deciding,
    signature_genes,
)
from .._matrix import get_matrix, iter_rows, normalise_block, row_floor
from .._utils import TmtInputError, TmtKeyError
from ..tl._checkpoints import is_protein

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
        raise TmtKeyError(msg)
    return stored["rules"], dict(stored["params"]), protein


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
    E = adata.obsm[_keys.MARKER_EVIDENCE][[f"{marker[adata.var_names[c]]}+" for c in cols]].to_numpy(dtype=np.float64)
    yield 0, adata.n_obs, E, np.zeros(adata.n_obs)


def _value_chunks(adata: AnnData, cols: list[int]):
    return _evidence_chunks(adata, cols) if is_protein(adata) else _lognormalised_chunks(adata, cols)


def marker_values(adata: AnnData, cols: list[int]) -> sp.csr_matrix | np.ndarray:
    """Cells x the columns ``cols`` of var_names as :func:`markers` measures them: log-normalised as
    :func:`tmetoolkit.tl.annotate` scored them, or a protein marker's evidence."""
    parts = [V for _, _, V, _ in _value_chunks(adata, cols)]
    return sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)


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
        deciding = protein_deciding(adata.uns[_keys.ANNOTATE]["gates"], adata.var_names, key)
    else:
        deciding = deciding_rules(rules, key)
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
        signatures = adata.uns[_keys.SCORES]["signatures"]
        per_label = {lab: signature_genes(signatures, adata.var_names, deciding[lab][1], species) for lab in labels}
    cols = list(dict.fromkeys(i for rows in per_label.values() for i, _, _ in rows))
    lineage = adata.obs[_keys.LINEAGE].astype(str)
    assigned = lineage.where(lineage != "unassigned")
    sums = group_sums(_value_chunks(adata, cols), cols, [called, assigned])
    return marker_table(labels, deciding, per_label, sums, adata.var_names, protein=protein, n_genes=n_genes)

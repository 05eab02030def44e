"""Runner of the expression basis of ``tmt.tl.immune_phenotype``: the pseudobulk of single-cell samples (or the
bulk samples themselves), the programmes scored on it, the cell types read; the rule and its thresholds are in
:mod:`tmetoolkit._core.sample.phenotype`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._core.sample.phenotype import (
    EFFECTOR_PROGRAMME,
    GEP_PROGRAMME,
    IFNG_PROGRAMME,
    IMMUNE_PROGRAMMES,
    STROMA_PROGRAMMES,
    ExpressionCall,
    call_samples,
    cell_fractions,
)
from .._utils import TmtEmptyCellsWarning, TmtInputError, missing_key_error
from ..pp._check import input_error, inspect, lower_case_hint, refuse_non_finite, transposed_hint
from ._sample_features import bulk_samples, samples_of


def _programmes() -> list:
    """The registry's programmes as scored here: up genes only (ssGSEA takes no weights, and the GEP's one down gene,
    CD276, would clip its score at 0 wherever CD276 outranks the rest, as in one of Racle's four samples)."""
    from dataclasses import replace

    from ..sig import get

    return [replace(s, genes_down=(), weights={}) if s.genes_down else s
            for s in (get(n) for n in (*IMMUNE_PROGRAMMES, *STROMA_PROGRAMMES))]


def _pseudobulk(adata: AnnData, samples: pd.Series, layer) -> AnnData:
    """Summed counts (or mean log values) per sample, as an AnnData of samples x genes.

    In-memory matrices go through ``sc.get.aggregate``; dask-backed and backed matrices, which it does not take,
    are summed chunk by chunk with the same result.
    """
    import scanpy as sc

    from .._matrix import get_matrix, is_dask, iter_rows

    report = inspect(adata, layer, full_scan=False)
    if report.state == "scaled":  # summed z-scores are not expression either; the cells' report says where it is
        raise input_error(report, "cannot call the immune phenotype from this input: " + " ".join(report.problems))
    func = "mean" if report.state in ("lognorm", "protein") else "sum"  # log values are averaged, counts summed
    X = get_matrix(adata, layer)
    if isinstance(X, np.ndarray) or (sp.issparse(X) and not is_dask(X)):
        view = AnnData(X=X, obs=pd.DataFrame({"_sample": samples.values}, index=adata.obs_names), var=adata.var[[]])
        agg = sc.get.aggregate(view, by="_sample", func=func)
        out, names = agg.layers[func], agg.obs_names.astype(str)
        out = out.toarray() if sp.issparse(out) else np.asarray(out)
    else:
        codes, uniques = pd.factorize(samples.values, sort=True)
        n = len(codes)
        member = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(len(uniques), n))
        out = np.zeros((len(uniques), adata.n_vars))
        for start, stop, block in iter_rows(X):
            part = member[:, start:stop] @ block
            out += part.toarray() if sp.issparse(part) else np.asarray(part)
        if func == "mean":
            out /= np.bincount(codes, minlength=len(uniques))[:, None]
        names = pd.Index(uniques).astype(str)
    # var keeps its columns: an input error on the pseudobulk (Ensembl IDs) can name the column holding symbols
    return AnnData(out.astype(np.float64), obs=pd.DataFrame(index=names), var=adata.var.copy())


def _require_immune_programmes(adata: AnnData, bulk: AnnData) -> None:
    """Refuse a panel that holds too few genes of every immune programme, saying which and where more genes are."""
    from ..pp._check import coverage

    report = inspect(bulk, None, full_scan=False)
    if report.gene_id != "symbol":
        return  # Ensembl IDs: scoring refuses them, naming the column that holds the symbols
    immune = [p for p in _programmes() if p.name in IMMUNE_PROGRAMMES]
    cov = coverage(bulk.var_names, immune, report.species)
    if cov["scorable"].any():
        return
    found = ", ".join(f"{r.signature} {r.n_found}/{r.n_genes} (needs {r.min_genes})" for r in cov.itertuples())
    msg = (f"the expression phenotype needs one of the immune programmes, and this panel of {bulk.n_vars:,} genes "
           f"holds too few of their genes: {found}.")
    hint = lower_case_hint(adata.var_names) + transposed_hint(adata.obs_names, adata.var_names)
    if adata.raw is not None and adata.raw.n_vars > adata.n_vars:
        msg += (f" adata.raw holds {adata.raw.n_vars:,} genes: run on r = adata.raw.to_adata(), which keeps obs, "
                "and copy the tmt_ keys back.")
    elif not hint:
        msg += " A panel of selected (highly variable) genes often lacks them: use the full gene matrix."
    raise TmtInputError(msg + hint)


def _enrichment(bulk: AnnData) -> tuple[pd.DataFrame, dict]:
    """Per sample, T-cell genes, the IFN-gamma, T-cell-inflamed GEP and CD8 T-effector programmes and the stromal
    programmes (mean of the two) as z against random sets of marker genes of the sample's other cell types
    (``_marker_null``). Where the panel holds fewer than 3 of the IFN-gamma programme's 6 genes (targeted panels), the
    GEP (Cristescu 2018: T-cell and IFN-gamma-induced genes) stands in for it, and ``used`` says so."""
    from ..sig import get
    from ._marker_null import marker_null_z, t_cell_genes

    report = inspect(bulk, None, full_scan=False)
    programmes = {"t_cell_enrichment": t_cell_genes(), "ifng_enrichment": get(IFNG_PROGRAMME).genes_up,
                  "gep_enrichment": get(GEP_PROGRAMME).genes_up, "immune_enrichment": get(EFFECTOR_PROGRAMME).genes_up,
                  **{name: get(name).genes_up for name in STROMA_PROGRAMMES}}
    z, used = marker_null_z(bulk, programmes, report.species)
    used["ifng_programme"] = IFNG_PROGRAMME
    if z["ifng_enrichment"].isna().all() and z["gep_enrichment"].notna().any():
        z["ifng_enrichment"] = z["gep_enrichment"]
        used["ifng_programme"] = (f"{GEP_PROGRAMME} ({IFNG_PROGRAMME}: {used['ifng_enrichment_genes_found']} of "
                                  f"{len(programmes['ifng_enrichment'])} genes found)")
    z["stromal_enrichment"] = z[list(STROMA_PROGRAMMES)].mean(axis=1)
    return z.drop(columns=list(STROMA_PROGRAMMES)), used


def _cells(adata, samples, cell_type_key, effector_labels, f: pd.DataFrame) -> None:
    """CD8 T cells among all cells and among immune cells, and Tex among CD8 T cells, per sample (into ``f``)."""
    ct_key = cell_type_key or (_keys.LINEAGE if _keys.LINEAGE in adata.obs else None)
    if samples is None or ct_key is None or ct_key not in adata.obs:
        return
    lab = adata.obs[ct_key].astype(str)
    effectors = [effector_labels] if isinstance(effector_labels, str) else list(effector_labels or ("CD8 T",))
    missing = [e for e in effectors if e not in set(lab)]
    if missing and effector_labels is not None:  # the default may simply have no cells in these data
        raise missing_key_error(missing[0], f"the labels of obs[{ct_key!r}] (effector_labels)", sorted(set(lab)))
    lineage = (adata.obs[_keys.LINEAGE].astype(str) if ct_key != _keys.LINEAGE and _keys.LINEAGE in adata.obs
               else None)
    state = adata.obs[_keys.STATE].astype(str) if _keys.STATE in adata.obs else None
    fr = cell_fractions(lab, samples, effectors, lineage, state)
    for col in fr.columns:
        f[col] = fr[col]


def expression_phenotype(
    adata: AnnData,
    *,
    sample_key: str | None,
    cell_type_key: str | None,
    layer: str | None,
    reference: str | None,
    min_cd8_fraction: float,
    effector_labels=None,
    min_cells: int = 0,
) -> ExpressionCall:
    """The call of every sample (bulk observations, or the pseudobulk of each ``sample_key`` group, whose
    confidence is scaled by its cells up to ``min_cells``)."""
    from .._matrix import get_matrix, iter_rows, row_sums
    from ._score import score_internal

    refuse_non_finite(adata, layer, "call the immune phenotype from this input")
    if cell_type_key is not None and cell_type_key not in adata.obs:  # not read silently as no cell types
        raise missing_key_error(cell_type_key, "adata.obs (cell_type_key)", adata.obs.columns)
    if sample_key is None:
        bulk = AnnData(get_matrix(adata, layer), obs=pd.DataFrame(index=bulk_samples(adata).to_numpy()),
                       var=adata.var.copy())  # observations are samples (bulk or pseudobulk)
        samples = None
    else:
        samples = samples_of(adata, sample_key)
        bulk = _pseudobulk(adata, samples, layer)
    _require_immune_programmes(adata, bulk)
    X = get_matrix(bulk, None)
    sums = [row_sums(abs(b) if sp.issparse(b) else np.abs(b)) for _, _, b in iter_rows(X)]
    no_expression = np.concatenate(sums) == 0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", TmtEmptyCellsWarning)  # reported in the table's reason instead
        score_internal(bulk, _programmes(), method="ssgsea")
    f = bulk.obsm[_keys.SCORES].copy()
    have_imm = [c for c in IMMUNE_PROGRAMMES if c in f.columns]  # at least one (_require_immune_programmes)
    have_str = [c for c in STROMA_PROGRAMMES if c in f.columns]
    enrich, null_used = _enrichment(bulk)
    for col in enrich:
        f[col] = enrich[col]
    _cells(adata, samples, cell_type_key, effector_labels, f)

    return call_samples(f, no_expression=no_expression, have_imm=have_imm, have_str=have_str, reference=reference,
                        min_cd8_fraction=min_cd8_fraction, null_used=null_used,
                        n_cells=None if samples is None else samples.value_counts(), min_cells=min_cells)

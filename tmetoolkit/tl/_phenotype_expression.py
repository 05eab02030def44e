"""Immune phenotype from expression alone (dissociated single-cell or bulk): exclusion is inferred, never seen.

Per sample, an immune axis (CD8 T effector, IFN-gamma and cytolytic programmes on pseudobulk or bulk expression,
scored by single-sample GSEA through gseapy as is usual for bulk cohorts, plus the CD8 T fraction among immune
cells when cells are annotated) and a stromal axis (pan-fibroblast TGF-beta
response and CAF programme; Mariathasan 2018; Bagaev 2021). Cohort-relative by default: each feature is
standardised across samples (median and MAD), and

- inflamed: immune axis >= 0 (T-cell rich, whatever the stroma; MFP's IE and IE/F);
- excluded: immune axis < 0 and stromal axis >= 0 (T-cell poor, fibrotic and TGF-beta high: MFP's F);
- desert: both below 0 (MFP's D).

With ``reference="absolute"`` (single-cell data with cell types), CD8 T cells among immune cells decide:
>= ``min_cd8_fraction`` inflamed, < ``min_cd8_fraction / 4`` desert, in between excluded (inferred).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._utils import logger, missing_key_error
from ..pp._check import inspect
from ._sample_features import bulk_samples, samples_of

IMMUNE_PROGRAMMES = ("CD8_T_effector", "IFNG_6", "Cytolytic_activity")
STROMA_PROGRAMMES = ("Pan_F_TBRS", "MFP_CAF")
IMMUNE_LINEAGES = ("CD8 T", "CD4 T", "NK", "B", "Plasma", "Monocyte/Macrophage", "Neutrophil", "DC", "Mast")
CAVEAT = "exclusion inferred from expression, not seen: dissociated or bulk data carry no positions"


def _pseudobulk(adata: AnnData, samples: pd.Series, layer) -> AnnData:
    """Summed counts (or mean log values) per sample, as an AnnData of samples x genes.

    In-memory matrices go through ``sc.get.aggregate``; dask-backed and backed matrices, which it does not take,
    are summed chunk by chunk with the same result.
    """
    import scanpy as sc

    from .._matrix import get_matrix, is_dask, iter_rows

    report = inspect(adata, layer, full_scan=False)
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
    return AnnData(out.astype(np.float64), obs=pd.DataFrame(index=names), var=adata.var[[]].copy())


def _robust_z(x: pd.Series) -> pd.Series:
    mad = 1.4826 * (x - x.median()).abs().median()
    sd = mad if mad > 0 else (x.std() if x.std() > 0 else 1.0)
    return (x - x.median()) / sd


def expression_phenotype(
    adata: AnnData,
    *,
    sample_key: str | None,
    cell_type_key: str | None,
    layer: str | None,
    reference: str,
    min_cd8_fraction: float,
    effector_labels=None,
) -> pd.DataFrame:
    from ._score import score

    if sample_key is None:
        bulk = adata.copy()  # observations are samples (bulk or pseudobulk)
        bulk.obs_names = bulk_samples(adata).to_numpy()
        samples = None
    else:
        samples = samples_of(adata, sample_key)
        bulk = _pseudobulk(adata, samples, layer)
        layer = None
    with np.errstate(all="ignore"):
        score(bulk, [*IMMUNE_PROGRAMMES, *STROMA_PROGRAMMES], layer=layer, method="ssgsea")
    S = bulk.obsm[_keys.SCORES]
    f = S.copy()
    ct_key = cell_type_key or (_keys.LINEAGE if _keys.LINEAGE in adata.obs else None)
    if samples is not None and ct_key is not None and ct_key in adata.obs:
        lab = adata.obs[ct_key].astype(str)
        effectors = [effector_labels] if isinstance(effector_labels, str) else list(effector_labels or ("CD8 T",))
        missing = [e for e in effectors if e not in set(lab)]
        if missing and effector_labels is not None:  # the default may simply have no cells in these data
            raise missing_key_error(missing[0], f"the labels of obs[{ct_key!r}] (effector_labels)", sorted(set(lab)))
        cd8 = lab.isin(effectors)
        # immune cells: tmetoolkit's immune lineages in this column, the effectors, and cells annotate called immune
        immune = lab.isin(IMMUNE_LINEAGES) | cd8
        if ct_key != _keys.LINEAGE and _keys.LINEAGE in adata.obs:
            immune |= adata.obs[_keys.LINEAGE].astype(str).isin(IMMUNE_LINEAGES)
        f["cd8_fraction_all"] = cd8.groupby(samples, observed=True).mean()
        if (immune & ~cd8).any():
            f["cd8_fraction_immune"] = cd8[immune].groupby(samples[immune], observed=True).mean()
        else:
            logger.warning("no immune cells other than the effectors are recognisable in obs[%r]: CD8 T cells among "
                           "immune cells not computed (run tmt.tl.annotate to recognise immune cells)", ct_key)
        if _keys.STATE in adata.obs:
            st = adata.obs[_keys.STATE].astype(str)
            f["tex_fraction_cd8"] = (st[cd8] == "CD8 Tex").groupby(samples[cd8], observed=True).mean()
    have_imm = [c for c in (*IMMUNE_PROGRAMMES, "cd8_fraction_immune") if c in f.columns]
    have_str = [c for c in STROMA_PROGRAMMES if c in f.columns]
    if reference == "cohort":
        if len(f) < 3:
            msg = (f"a cohort-relative call needs at least 3 samples, found {len(f)}; use reference='absolute' "
                   "(needs annotated cells: CD8 T fraction among immune cells).")
            raise ValueError(msg)
        if not have_imm:
            msg = "none of the immune programmes could be scored (too few signature genes); check gene symbols."
            raise ValueError(msg)
        z = f[have_imm + have_str].apply(_robust_z)
        f["immune_axis"] = z[have_imm].mean(axis=1)
        f["stromal_axis"] = z[have_str].mean(axis=1) if have_str else 0.0
        imm, stro = f["immune_axis"], f["stromal_axis"]
        label = np.where(imm >= 0, "inflamed", np.where(stro >= 0, "excluded", "desert"))
        margin = np.where(imm >= 0, imm, np.minimum(-imm, np.abs(stro)))
    else:
        if "cd8_fraction_immune" not in f.columns:
            msg = ("absolute thresholds need annotated single cells (CD8 T cells among immune cells): pass "
                   "sample_key= and run tmt.tl.annotate, or use reference='cohort' with at least 3 samples.")
            raise ValueError(msg)
        fr = f["cd8_fraction_immune"].fillna(0)
        lo = min_cd8_fraction / 4
        label = np.where(fr >= min_cd8_fraction, "inflamed", np.where(fr < lo, "desert", "excluded"))
        log_fr = np.log(np.maximum(fr, 1e-9))
        margin = np.where(label == "inflamed", log_fr - np.log(min_cd8_fraction),
                          np.where(label == "desert", np.log(lo) - log_fr,
                                   np.minimum(log_fr - np.log(lo), np.log(min_cd8_fraction) - log_fr)))
    f["phenotype"] = label
    f["confidence"] = 1.0 - np.exp(-2.0 * np.clip(margin, 0, None))
    # exclusion cannot be seen without positions: cap the confidence of an excluded call
    excluded = f["phenotype"] == "excluded"
    f.loc[excluded, "confidence"] = f.loc[excluded, "confidence"].clip(upper=0.5)
    f["basis"] = "expression"
    f["reason"] = ""
    f["caveat"] = CAVEAT
    logger.info("immune phenotype from expression for %d samples (%s reference)", len(f), reference)
    return f

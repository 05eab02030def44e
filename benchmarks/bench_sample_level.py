"""Sample-level calls without coordinates, against planted truth and FACS, printed with the baseline a user has.

1. ``simulate()`` cohort of 36 samples (12 inflamed, 12 excluded, 12 desert), coordinates removed: the expression
   basis of ``tmt.tl.immune_phenotype`` (cohort-relative and absolute), as a confusion table with confidences.
2. Racle 2017 bulk (when ``../shared/data`` is present): Spearman of CD8 T and T-cell scores with the FACS
   fractions, for every scoring method, next to the plain TPM of the marker genes (the baseline) and a
   reference-based deconvolution (NNLS on the Puram 2017 single-cell profiles).

Usage::

    python benchmarks/bench_sample_level.py
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

import tmetoolkit as tmt

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def local(name: str) -> ad.AnnData | None:
    """A real data set from ../shared/data beside the repository, or None when it is absent."""
    try:
        return tmt.datasets.load(name, path=SHARED)
    except FileNotFoundError:
        return None


def cohort() -> None:
    a = tmt.datasets.simulate(n_samples=36, n_cells=1000, seed=5)
    del a.obsm["spatial"]
    tmt.tl.annotate(a)
    truth = a.uns["tmt_simulation"]["samples"].set_index("sample")["phenotype"]
    for reference in ("cohort", "absolute"):
        tmt.tl.immune_phenotype(a, sample_key="sample", reference=reference)
        t = a.uns["tmt_immune_phenotype"]["table"]
        tab = pd.crosstab(truth.rename("planted"), t["phenotype"].rename("called"))
        pairs = truth.isin(["inflamed", "desert"])
        sep = ((t["phenotype"] == "inflamed") == (truth == "inflamed"))[pairs].mean()
        print(f"\nreference={reference}: inflamed vs desert separated in {sep:.0%} of {pairs.sum()} samples")
        print(tab.to_string())
        print("mean confidence by call:", t.groupby("phenotype", observed=True)["confidence"].mean().round(2).to_dict())


def reference_nnls(tpm: pd.DataFrame) -> pd.DataFrame | None:
    """Deconvolution with a real single-cell reference, to show what a reference-based method gets here.

    Mean TPM per cell type of the Puram 2017 head-and-neck cells (9 types, 20 cells each; log2(TPM/10+1) undone),
    the 50 most type-specific genes per type, and non-negative least squares per bulk sample, genes weighted by
    1/sqrt(mean). Melanoma cells have no profile; the fit leaves them out, as EPIC does with "other cells".
    """
    from scipy.optimize import nnls

    ref = local("puram2017")
    if ref is None:
        return None
    X = ref.X.toarray() if hasattr(ref.X, "toarray") else np.asarray(ref.X)
    profiles = pd.DataFrame((2 ** X - 1) * 10, columns=ref.var_names).groupby(ref.obs["celltypes"].to_numpy()).mean().T
    profiles = profiles.loc[profiles.index.intersection(tpm.columns)]
    logp = np.log1p(profiles)
    genes = sorted({g for t in profiles for g in (logp[t] - logp.drop(columns=t).max(axis=1)).nlargest(50).index})
    A, w = profiles.loc[genes].to_numpy(), 1 / np.sqrt(profiles.loc[genes].mean(axis=1).to_numpy() + 1)
    fits = {s: nnls(A * w[:, None], tpm.loc[s, genes].to_numpy() * w)[0] for s in tpm.index}
    return pd.DataFrame(fits, index=profiles.columns).T


def racle() -> None:
    r = local("racle2017")
    if r is None:
        print("\nRacle 2017 not available; skipped.")
        return
    facs = {"CD8_T": r.obs["facs_CD8_Tcells"], "T_cell": r.obs["facs_CD8_Tcells"] + r.obs["facs_CD4_Tcells"]}
    rows = []
    tpm = pd.DataFrame(r.X, index=r.obs_names, columns=r.var_names)
    rows.append(("TPM of CD8A+CD8B / CD3D+CD3E (baseline)", spearmanr(tpm[["CD8A", "CD8B"]].sum(1), facs["CD8_T"])[0],
                 spearmanr(tpm[["CD3D", "CD3E"]].sum(1), facs["T_cell"])[0]))
    for method in ("mean_ctrl", "rank", "aucell", "ssgsea"):
        b = r.copy()
        tmt.tl.score(b, ["CD8_T", "T_cell"], method=method)
        S = b.obsm["tmt_scores"]
        rows.append((f"tmt.tl.score {method}", spearmanr(S["CD8_T"], facs["CD8_T"])[0],
                     spearmanr(S["T_cell"], facs["T_cell"])[0]))
    nnls = reference_nnls(tpm)
    if nnls is not None:
        rows.append(("NNLS on Puram 2017 cell-type profiles (no tmt)", spearmanr(nnls["CD8 T cell"], facs["CD8_T"])[0],
                     spearmanr(nnls[["CD8 T cell", "CD4 T cell", "reg. T cell"]].sum(1), facs["T_cell"])[0]))
    print("\nRacle 2017, Spearman with FACS over 4 samples")
    table = pd.DataFrame(rows, columns=["score", "CD8 T vs FACS CD8", "T cell vs FACS CD4+CD8"])
    print(table.round(2).to_string(index=False))
    print("FACS CD8 fraction:", r.obs["facs_CD8_Tcells"].to_dict())
    print("CD8A TPM:", tpm["CD8A"].round(1).to_dict())


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    np.set_printoptions(precision=3)
    cohort()
    racle()

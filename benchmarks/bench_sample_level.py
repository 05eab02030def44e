"""Sample-level calls without coordinates, against planted truth and FACS, printed next to the baselines a user has.

1. ``simulate()`` cohorts of 12, 24 and 48 samples (a third each inflamed, excluded, desert), five seeds each,
   coordinates removed, with and without a fibrotic rim around the excluded tumours (``stromal_barrier=True``): the
   expression basis of ``tmt.tl.immune_phenotype`` against the obvious rule (the CD8 T-effector programme cut into
   cohort terciles) and against the alternatives measured before choosing the rule (the T-cell programmes deciding
   near a boundary, the earlier median/stroma rule, the stroma deciding near the lower tercile or among all
   non-inflamed samples); macro-F1 against the planted phenotypes, how often inflamed and desert are told apart,
   and the share of calls right by confidence. The same tumours as a bulk cohort (summed counts, log2(CPM + 0.001))
   get the same calls. Each sample judged alone (the absolute rule) is shown beside them. Cohorts of 3 to 8 samples
   get the absolute rule by default; over 50 seeds per size, phenotypes cycled or drawn at random, they are shown
   against terciles of the same few samples, with the cohorts where terciles call every sample right and the same
   rule with its cuts fitted to the planted phenotypes (the ceiling of a rule judging each sample alone).
   With the cells' own lineages (``cell_type_key="true_lineage"``) and samples thinned to 15 to 300 cells, the
   absolute rule's confidence (from the counts of CD8 T and immune cells) against whether the desert / not-desert
   call is right: the AUROC, and right calls per confidence bin (composition cannot see exclusion, so inflamed
   against excluded is not scored).
2. Racle 2017 bulk and the pseudobulk of Zilionis 2019 NSCLC tumour cells (when ``../shared/data`` is present):
   the calls next to the tercile rule, with FACS T-cell fractions (Racle) and the authors' T-cell share (Zilionis);
   the pseudobulk of the pathologist's regions of the Xenium breast section as a positive control. The other real
   sets have one sample (Chen, Schuerch), no samples (Puram) or no tumours (mouse lung): no cohort to call.
3. Racle 2017: Spearman of CD8 T and T-cell scores with the FACS fractions, for every scoring method, next to the
   plain TPM of the marker genes (the baseline) and a reference-based deconvolution (NNLS on the Puram 2017
   single-cell profiles).

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
from tmetoolkit._core.sample.phenotype import ENRICHED

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def local(name: str) -> ad.AnnData | None:
    """A real data set from ../shared/data beside the repository, or None when it is absent."""
    try:
        return tmt.datasets.load(name, path=SHARED)
    except FileNotFoundError:
        return None


TERCILE = ["desert", "excluded", "inflamed"]


def tercile_rule(x: pd.Series) -> pd.Series:
    """The obvious rule: a programme cut into cohort terciles, top inflamed, middle excluded, bottom desert."""
    t1, t2 = x.quantile([1 / 3, 2 / 3])
    return pd.Series(np.where(x >= t2, "inflamed", np.where(x >= t1, "excluded", "desert")), index=x.index)


def _z(x: pd.Series) -> pd.Series:
    mad = 1.4826 * (x - x.median()).abs().median()
    return (x - x.median()) / (mad or x.std() or 1.0)


def earlier_rule(t: pd.DataFrame) -> pd.Series:
    """The rule before: immune axis at or above the cohort median inflamed; below it the stromal axis decides."""
    imm = t[["CD8_T_effector", "IFNG_6", "Tcell_inflamed_GEP"]].apply(_z).mean(axis=1)
    stro = t[["Pan_F_TBRS", "MFP_CAF"]].apply(_z).mean(axis=1)
    return pd.Series(np.where(imm >= 0, "inflamed", np.where(stro >= 0, "excluded", "desert")), index=t.index)


def _grey(t: pd.DataFrame, p: dict, boundary: str) -> pd.Series:
    return (t["immune_axis"] - p[boundary]).abs() < p["immune_tercile_standard_error"]


def programmes_near_boundary(t: pd.DataFrame, p: dict) -> pd.Series:
    """The rule of the previous engineer: within a tercile's standard error of either boundary, terciles of the mean
    of the three T-cell programmes decide."""
    call = tercile_rule(t["CD8_T_effector"])
    grey = _grey(t, p, "immune_tercile_low") | _grey(t, p, "immune_tercile_high")
    call[grey] = tercile_rule(t["t_cell_programmes"])[grey]
    return call


def stroma_at_lower_tercile(t: pd.DataFrame, p: dict, column: str = "stromal_axis") -> pd.Series:
    """Terciles, and within a tercile's standard error of the lower boundary the stroma's top/bottom third decides."""
    call = tercile_rule(t["CD8_T_effector"])
    stro = _z(t[column]) if column != "stromal_axis" else t[column]
    s1, s2 = stro.quantile([1 / 3, 2 / 3])
    grey = _grey(t, p, "immune_tercile_low")
    call[grey & (stro >= s2)] = "excluded"
    call[grey & (stro < s1)] = "desert"
    return call


def stroma_among_non_inflamed(t: pd.DataFrame) -> pd.Series:
    """Top tercile inflamed; among the rest the stromal axis decides (upper half excluded, lower half desert)."""
    call = tercile_rule(t["CD8_T_effector"])
    rest = call != "inflamed"
    stro = t.loc[rest, "stromal_axis"]
    call[rest] = np.where(stro >= stro.median(), "excluded", "desert")
    return call


def macro_f1(truth: pd.Series, call: pd.Series) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, call.reindex(truth.index).astype(str), average="macro", labels=TERCILE))


def separation(truth: pd.Series, call: pd.Series) -> tuple[float, float]:
    """Among planted inflamed and desert samples: share not swapped (inflamed not called desert and desert not
    called inflamed), and the stricter share with inflamed called inflamed and desert not inflamed."""
    call = call.reindex(truth.index).astype(str)
    pair = truth.isin(["inflamed", "desert"])
    swapped = ((truth == "inflamed") & (call == "desert")) | ((truth == "desert") & (call == "inflamed"))
    strict = (call == "inflamed") == (truth == "inflamed")
    return float(1 - swapped[pair].mean()), float(strict[pair].mean())


def _cohort(n: int, seed: int, barrier: bool, n_cells: int) -> tuple[ad.AnnData, pd.Series]:
    a = tmt.datasets.simulate(n_samples=n, n_cells=n_cells, seed=seed, stromal_barrier=barrier)
    del a.obsm["spatial"]
    return a, a.uns["tmt_simulation"]["samples"].set_index("sample")["phenotype"]


ALTERNATIVES = ["programmes near boundary", "earlier rule", "stroma at lower tercile", "TBRS at lower tercile",
                "stroma among non-inflamed", "each sample alone"]


def cohorts(sizes=(12, 24, 48), seeds=range(100, 105), n_cells: int = 300) -> None:
    """Cohort-relative calls on simulated cohorts of several sizes and seeds, with and without a stromal barrier."""
    rows, calib = [], []
    for barrier in (False, True):
        for n in sizes:
            for seed in seeds:
                a, truth = _cohort(n, seed, barrier, n_cells)
                b = a.copy()
                tmt.tl.immune_phenotype(b, sample_key="sample", reference="absolute")  # each sample alone
                alone = b.uns["tmt_immune_phenotype"]["table"]["phenotype"].astype(str)
                tmt.tl.immune_phenotype(a, sample_key="sample")
                res = a.uns["tmt_immune_phenotype"]
                t, p = res["table"].reindex(truth.index), res["params"]
                call = t["phenotype"].astype(str)
                sep, strict = separation(truth, call)
                alt = {"programmes near boundary": programmes_near_boundary(t, p), "earlier rule": earlier_rule(t),
                       "stroma at lower tercile": stroma_at_lower_tercile(t, p),
                       "TBRS at lower tercile": stroma_at_lower_tercile(t, p, "Pan_F_TBRS"),
                       "stroma among non-inflamed": stroma_among_non_inflamed(t),
                       "each sample alone": alone}
                rows.append({"barrier": barrier, "n": n, "seed": seed, "reference": p["reference"],
                             "tmt": macro_f1(truth, call), "T-eff terciles": macro_f1(truth, tercile_rule(
                                 t["CD8_T_effector"])), **{k: macro_f1(truth, v) for k, v in alt.items()},
                             "not swapped": sep, "inflamed called inflamed": strict,
                             "confidence right": float(t.loc[call == truth, "confidence"].mean()),
                             "confidence wrong": float(t.loc[call != truth, "confidence"].mean())})
                calib.append(pd.DataFrame({"confidence": t["confidence"], "right": call == truth}))
                if seed == seeds[0] and n == sizes[-1]:
                    side = pd.DataFrame({"planted": truth, "tmt": call, "confidence": t["confidence"].round(2),
                                         "agreeing": t["programmes_agreeing"],
                                         "T-eff terciles": tercile_rule(t["CD8_T_effector"])})
                    print(f"\nsimulated cohort n={n} seed={seed}, stromal_barrier={barrier}: calls next to the "
                          "tercile rule")
                    print(pd.crosstab(side["planted"], side["tmt"]).to_string())
                    print("mean confidence by (planted == call):",
                          side.groupby(side["planted"] == side["tmt"])["confidence"].mean().round(2).to_dict())
                    if not barrier:
                        same_tumours(a, call)
    tab = pd.DataFrame(rows)
    print(f"\nmacro-F1 against the planted phenotypes, {n_cells} cells per sample, cohort-relative calls")
    print(tab.round(3).to_string(index=False))
    print("\nmean by barrier and size:")
    print(tab.groupby(["barrier", "n"]).mean(numeric_only=True).drop(columns="seed").round(3).to_string())
    for col in ["tmt", *ALTERNATIVES]:
        diff = tab[col] - tab["T-eff terciles"]
        print(f"{col:>26}: below the tercile rule in {(diff < -1e-9).sum():2d} of {len(tab)} cohorts, above in "
              f"{(diff > 1e-9).sum():2d}; mean difference {diff.mean():+.3f}, worst {diff.min():+.3f}")
    pooled = pd.concat(calib)
    bins = pd.cut(pooled["confidence"], [0, 0.25, 0.5, 0.75, 0.95, 1.0], include_lowest=True)
    print("\nshare of calls right by confidence, pooled over the cohorts (excluded capped at 0.5):")
    print(pooled.groupby(bins, observed=True)["right"].agg(["mean", "size"]).round(3).T.to_string())
    print(f"inflamed/desert not swapped: minimum {tab['not swapped'].min():.3f}, pooled "
          f"{tab['not swapped'].mean():.3f}; inflamed called inflamed and desert not: minimum "
          f"{tab['inflamed called inflamed'].min():.3f}")


def _accuracy(truth: pd.Series, call: pd.Series) -> float:
    return float((call.reindex(truth.index).astype(str) == truth).mean())


def _cuts_fitted_to_labels(samples: pd.DataFrame) -> tuple[float, float]:
    """The ceiling of any rule reading the two enrichments alone: the desert and inflamed cuts that make the fewest
    errors against the planted phenotypes, chosen on those very phenotypes (an oracle, never a rule)."""
    u = samples.drop_duplicates(subset=["t_cell_enrichment", "ifng_enrichment"])  # seeds repeat tumours
    zt, zi, truth = u["t_cell_enrichment"].to_numpy(), u["ifng_enrichment"].to_numpy(), u["truth"].to_numpy()
    grid = [(tc, ic) for tc in np.arange(-1.5, 1.01, 0.05) for ic in np.arange(0.0, 3.01, 0.05)]
    errors = [(_sample_alone(zt, zi, tc, ic) != truth).sum() for tc, ic in grid]
    return grid[int(np.argmin(errors))]


def _sample_alone(zt, zi, t_cut: float, ifng_cut: float) -> np.ndarray:
    return np.where(zi >= ifng_cut, "inflamed", np.where(zt < t_cut, "desert", "excluded"))


def small_cohorts(sizes=range(3, 9), seeds=range(100, 150), n_cells: int = 300) -> pd.DataFrame:
    """Below 9 samples each sample is judged alone (T-cell genes and the IFN-gamma programme against marker genes of
    its other cell types); against terciles of the same few samples. Two designs: phenotypes cycled (inflamed,
    excluded, desert, ...: terciles get the proportions right by construction) and drawn at random per sample (as a
    small real cohort comes). Macro-F1 is over the three labels, so a cohort lacking one scores at most 0.67 even when
    every call is right; the share of samples called right is shown beside it.

    "Never worse than terciles" per cohort asks the sample-alone rule to be right on every sample wherever terciles
    are (terciles of 3, 4, 6 and 7 cycled samples are right whenever the programme orders the samples right). Two
    ceilings show how far any rule reading each sample alone can go: the same rule with both cuts fitted to the
    planted phenotypes of all cohorts (an oracle), and a caller right on every sample. About 20 minutes."""
    rows, samples = [], []
    for design in ("cycled", "random"):
        for barrier in (False, True):
            for n in sizes:
                for seed in seeds:
                    ph = list(np.random.default_rng(1000 + seed).choice(TERCILE, n)) if design == "random" else None
                    a = tmt.datasets.simulate(n_samples=n, n_cells=n_cells, seed=seed, stromal_barrier=barrier,
                                              phenotypes=ph)
                    del a.obsm["spatial"]
                    truth = a.uns["tmt_simulation"]["samples"].set_index("sample")["phenotype"]
                    tmt.tl.immune_phenotype(a, sample_key="sample")  # no cells annotated: marker-gene null decides
                    t = a.uns["tmt_immune_phenotype"]["table"].reindex(truth.index)
                    samples.append(t[["phenotype", "t_cell_enrichment", "ifng_enrichment", "CD8_T_effector"]].assign(
                        truth=truth, design=design, barrier=barrier, n=n, seed=seed))
    tab = pd.concat(samples)
    tab["phenotype"] = tab["phenotype"].astype(str)
    t_cut, ifng_cut = _cuts_fitted_to_labels(tab)
    tab["oracle"] = _sample_alone(tab["t_cell_enrichment"], tab["ifng_enrichment"], t_cut, ifng_cut)
    for (design, barrier, n, seed), t in tab.groupby(["design", "barrier", "n", "seed"], sort=False):
        terc = tercile_rule(t["CD8_T_effector"])
        truth, call = t["truth"], t["phenotype"]
        rows.append({"design": design, "barrier": barrier, "n": n, "seed": seed,
                     "tmt absolute": macro_f1(truth, call), "T-eff terciles": macro_f1(truth, terc),
                     "oracle cuts": macro_f1(truth, t["oracle"]), "tmt right": _accuracy(truth, call),
                     "terciles right": _accuracy(truth, terc), "not swapped": separation(truth, call)[0]})
    res = pd.DataFrame(rows)
    below = lambda col: (res[col] - res["T-eff terciles"] < -1e-9)  # noqa: E731
    res["tmt worse"], res["oracle worse"] = below("tmt absolute"), below("oracle cuts")
    res["tmt better"] = res["tmt absolute"] - res["T-eff terciles"] > 1e-9
    res["terciles all right"] = res["terciles right"] == 1
    print(f"\nsmall cohorts, each sample judged alone against marker genes of its other cell types, {n_cells} cells "
          f"per sample, {len(seeds)} seeds per size: mean macro-F1, cohorts below / above terciles, cohorts where "
          "terciles call every sample right (where only an error-free rule is never worse); 'oracle': the same rule "
          f"with its cuts fitted to the planted phenotypes (T-cell genes {t_cut:.2f}, IFN-gamma {ifng_cut:.2f}; "
          f"the rule's are 0 and {ENRICHED})")
    agg = {"tmt absolute": "mean", "T-eff terciles": "mean", "oracle cuts": "mean", "tmt right": "mean",
           "terciles right": "mean", "tmt worse": "sum", "tmt better": "sum", "terciles all right": "sum",
           "oracle worse": "sum", "seed": "size"}
    print(res.groupby(["design", "barrier", "n"]).agg(agg).rename(columns={"seed": "cohorts"}).round(3).to_string())
    print(res.groupby("design").agg(agg).rename(columns={"seed": "cohorts"}).round(3).to_string())
    u = tab.drop_duplicates(subset=["t_cell_enrichment", "ifng_enrichment"])
    print(f"\n{len(u)} distinct simulated tumours (seeds and designs share some): planted (rows) against called")
    print(pd.crosstab(u["truth"], u["phenotype"]).to_string())
    worse = res[res["tmt worse"]].set_index(["design", "barrier", "n", "seed"]).index
    key = pd.MultiIndex.from_frame(tab[["design", "barrier", "n", "seed"]])
    miss = tab[key.isin(worse) & (tab["phenotype"] != tab["truth"])]
    print("\nin the cohorts below terciles, the samples called wrong (planted -> called):")
    print((miss["truth"] + " -> " + miss["phenotype"]).value_counts().to_string())
    print(f"inflamed/desert not swapped: minimum {res['not swapped'].min():.3f}, mean {res['not swapped'].mean():.3f}")
    return res


def same_tumours(a: ad.AnnData, call: pd.Series) -> None:
    """The dissociated cohort as bulk: summed counts and log2(CPM + 0.001); the calls should be the same."""
    import scanpy as sc

    agg = sc.get.aggregate(a, by="sample", func="sum")
    X = np.asarray(agg.layers["sum"].toarray() if hasattr(agg.layers["sum"], "toarray") else agg.layers["sum"])
    log2 = np.log2(X / X.sum(1, keepdims=True) * 1e6 + 1e-3)
    for name, values in (("summed counts", X), ("log2(CPM + 0.001)", log2)):
        b = ad.AnnData(values.astype(float), obs=pd.DataFrame(index=agg.obs_names.astype(str)),
                       var=pd.DataFrame(index=a.var_names))
        tmt.tl.immune_phenotype(b)
        other = b.uns["tmt_immune_phenotype"]["table"]["phenotype"].astype(str)
        print(f"bulk of the same tumours, {name}: same call in {(other.reindex(call.index) == call).mean():.0%} "
              f"of {len(call)} samples")


def real_cohorts() -> None:
    r = local("racle2017")
    if r is not None:
        tmt.tl.immune_phenotype(r)
        t = r.uns["tmt_immune_phenotype"]["table"]
        side = pd.DataFrame({"tmt": t["phenotype"].astype(str), "reference": t["reference"],
                             "confidence": t["confidence"].round(2), "T-cell genes": t["t_cell_enrichment"].round(2),
                             "IFN-gamma": t["ifng_enrichment"].round(2),
                             "T-eff terciles": tercile_rule(t["CD8_T_effector"]),
                             "FACS T cells": (r.obs["facs_CD4_Tcells"] + r.obs["facs_CD8_Tcells"]).round(3),
                             "FACS CD8 T": r.obs["facs_CD8_Tcells"].round(3)})
        print("\nRacle 2017 bulk (4 melanoma metastases): calls next to the tercile rule")
        print(side.to_string())
    path = SHARED / "zilionis2019_nsclc_indrop" / "zilionis2019_nsclc_scgate_300cells.h5ad"
    if path.is_file():
        z = ad.read_h5ad(path)
        z = z[z.obs["Tissue"] == "tumor"].copy()
        tmt.tl.immune_phenotype(z, sample_key="Patient")
        t = z.uns["tmt_immune_phenotype"]["table"]
        c = z.copy()
        tmt.tl.immune_phenotype(c, sample_key="Patient", reference="cohort")
        tc = c.uns["tmt_immune_phenotype"]["table"]
        major = z.obs["author_major_cell_type"].astype(str)
        share = (major == "tT cells").groupby(z.obs["Patient"].astype(str)).mean()  # not "tMast cells"
        side = pd.DataFrame({"tmt (absolute)": t["phenotype"].astype(str), "confidence": t["confidence"].round(2),
                             "T-cell genes": t["t_cell_enrichment"].round(2),
                             "IFN-gamma": t["ifng_enrichment"].round(2), "tmt (cohort)": tc["phenotype"].astype(str),
                             "conf. (cohort)": tc["confidence"].round(2),
                             "T-eff terciles": tercile_rule(t["CD8_T_effector"]), "T cells (authors)": share.round(2),
                             "cells": z.obs["Patient"].astype(str).value_counts()})
        print("\nZilionis 2019 NSCLC tumour cells, pseudobulk per patient (7 patients: absolute by default; cohort "
              "terciles on request): calls next to the tercile rule")
        print(side.to_string())
        print("Spearman with the authors' T-cell share: T-cell genes vs marker null "
              f"{spearmanr(t['t_cell_enrichment'], share.reindex(t.index))[0]:.2f}, CD8 T-effector "
              f"{spearmanr(t['CD8_T_effector'], share.reindex(t.index))[0]:.2f}")


def xenium_regions() -> None:
    """Pseudobulk of the pathologist's regions of one Xenium breast section: not tumours with phenotypes, a positive
    control (the "Immune cells" region should top the CD8 T-effector programme, the tumour regions sit low)."""
    x = local("xenium_idc")
    if x is None:
        return
    del x.obsm["spatial"]
    tmt.tl.immune_phenotype(x, sample_key="region")
    t = x.uns["tmt_immune_phenotype"]["table"]
    side = pd.DataFrame({"tmt (absolute)": t["phenotype"].astype(str), "confidence": t["confidence"].round(2),
                         "T-cell genes": t["t_cell_enrichment"].round(2), "IFN-gamma": t["ifng_enrichment"].round(2),
                         "immune axis": t["immune_axis"].round(2),
                         "stromal axis": t["stromal_axis"].round(2),
                         "cells": x.obs["region"].astype(str).value_counts()})
    print("\nXenium breast IDC, pseudobulk per pathologist region (6 regions: absolute), ordered by immune axis")
    print(side.sort_values("immune axis", ascending=False).to_string())


def single_samples() -> None:
    """Real sets that form one sample: the pseudobulk of all their cells, judged alone. Puram 2017 (180 cells, 20 of
    each of nine non-malignant types, seven of them immune, a third of those T cells) should not be desert; Chen 2024
    (one NSCLC MERFISH window with 61 + 57 + 6 CD8 T cells among 3,177) is shown for what it gets."""
    rows = []
    for name in ("puram2017", "chen2024"):
        a = local(name)
        if a is None:
            continue
        a.obs["one"] = name
        a.obsm.pop("spatial", None)
        tmt.tl.immune_phenotype(a, sample_key="one", reference="absolute")
        t = a.uns["tmt_immune_phenotype"]["table"]
        rows.append(t[["phenotype", "confidence", "t_cell_enrichment", "ifng_enrichment", "immune_enrichment"]])
    if rows:
        print("\nreal sets as one pseudobulk sample each (absolute):")
        print(pd.concat(rows).round(2).to_string())


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


def thinned_cohorts(seeds=range(100, 130), sizes=(15, 30, 60, 120, 300)) -> None:
    """The cell-composition call's confidence on samples of few and many cells."""
    from sklearn.metrics import roc_auc_score

    rows = []
    for seed in seeds:
        a = tmt.datasets.simulate(n_samples=6, n_cells=max(sizes), seed=seed)
        del a.obsm["spatial"]
        rng = np.random.default_rng(seed)
        keep = [rng.choice(idx, size=min(int(rng.choice(sizes)), len(idx)), replace=False)
                for idx in a.obs.groupby("sample", observed=True).indices.values()]
        b = a[np.sort(np.concatenate(keep))].copy()
        tmt.tl.immune_phenotype(b, sample_key="sample", cell_type_key="true_lineage", reference="absolute")
        t = b.uns["tmt_immune_phenotype"]["table"]
        truth = b.obs.groupby("sample", observed=True)["true_phenotype"].first().astype(str).reindex(t.index)
        rows.append(pd.DataFrame({"call": t["phenotype"].astype(str), "truth": truth,
                                  "confidence": t["confidence"].astype(float), "n_cells": t["n_cells"]}))
    d = pd.concat(rows)
    d["right"] = (d["call"] == "desert") == (d["truth"] == "desert")
    auc = roc_auc_score(d["right"], d["confidence"])
    print(f"\nThinned samples ({len(d)}), cells' own lineages, absolute rule: desert / not desert right "
          f"{d['right'].mean():.3f}; AUROC of the confidence for a right call {auc:.3f}")
    print(d.groupby(pd.cut(d["confidence"], [-0.01, 0.2, 0.5, 0.8, 1.0]), observed=True)["right"].agg(["mean", "size"])
          .round(3).to_string())
    print(pd.crosstab(d["truth"], d["call"]).to_string())


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    np.set_printoptions(precision=3)
    cohorts()
    small_cohorts()
    thinned_cohorts()
    real_cohorts()
    single_samples()
    xenium_regions()
    racle()

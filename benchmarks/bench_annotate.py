"""Cell-state calls of ``tmt.tl.annotate`` against what a user has today: the same signatures scored one by one
with ``sc.tl.score_genes`` and an argmax, on the same data, printed side by side.

Data: ``simulate()`` (lineages and the five state populations) and, when ``../shared/data`` is present, Puram 2017
(Smart-seq2 lineages), Chen 2024 (MERFISH lineages and Tregs) and two protein panels (phenoptr Vectra field,
scimap CyCIF image; there the baseline is the brightest gated class marker). Usage::

    python benchmarks/bench_annotate.py
    python benchmarks/bench_annotate.py --scale 100000   # time both on 100,000 simulated cells

With ``--scale`` annotate is timed in a fresh process for this tree and for ``--reference`` (default: the commit at
which issue 18 asked that annotate take at most twice its time then), on the same simulated file in one run, after
a warm-up on 600 cells that fills the on-disk caches of compiled kernels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

import tmetoolkit as tmt
from tmetoolkit._core.annotation import rules

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def local(name: str) -> ad.AnnData | None:
    """A real data set from ../shared/data beside the repository, or None when it is absent."""
    try:
        return tmt.datasets.load(name, path=SHARED)
    except FileNotFoundError:
        return None


def argmax_baseline(adata: ad.AnnData) -> tuple[pd.Series, pd.Series]:
    """score_genes on each rule signature, label = argmax (lineage, then state within the argmax lineage)."""
    b = adata.copy()
    if tmt.pp.check_input(b).state == "counts":
        sc.pp.normalize_total(b)
        sc.pp.log1p(b)
    scores = {}
    for name in rules.needed_signatures():
        genes = [g for g in tmt.sig.get(name).genes_up if g in b.var_names]
        if len(genes) >= 1:
            sc.tl.score_genes(b, genes, score_name="s", random_state=0)
            scores[name] = b.obs["s"].to_numpy()
    S = pd.DataFrame(scores, index=b.obs_names)

    def best(table):
        cols = {lab.split("|")[0] + "|" + lab: S[[s for s in sigs if s in S]].mean(axis=1)
                for lab, sigs in table.items() if any(s in S for s in sigs)}
        M = pd.DataFrame(cols)
        return M.idxmax(axis=1).str.split("|").str[0]

    lineage = best(rules.LINEAGE_RULES)
    tnk = lineage == "T/NK"
    lineage[tnk] = best(rules.TNK_RULES)[tnk]
    state = lineage.copy()
    for lin, table in rules.state_rules().items():
        m = lineage == lin
        if m.any():
            state[m] = best(table)[m]
    return lineage, state


def leiden_clusters(adata: ad.AnnData) -> np.ndarray:
    """scanpy's usual clustering: 20 principal components of 2,000 variable genes, 15 neighbours, Leiden at
    resolution 1 (igraph)."""
    q = adata.copy()
    sc.pp.highly_variable_genes(q, n_top_genes=2000)
    sc.pp.pca(q, n_comps=20, mask_var="highly_variable", random_state=0)
    sc.pp.neighbors(q, random_state=0)
    sc.tl.leiden(q, flavor="igraph", n_iterations=2, random_state=0)
    return q.obs["leiden"].to_numpy()


def accuracy(pred: pd.Series, truth: pd.Series) -> float:
    keep = truth.notna()
    return float((pred[keep].astype(str) == truth[keep].astype(str)).mean())


def precision(pred: pd.Series, truth: pd.Series, abstain: set) -> float:
    """Accuracy among the cells that received a call (abstentions left out)."""
    keep = truth.notna() & ~pred.astype(str).isin(abstain)
    return float((pred[keep].astype(str) == truth[keep].astype(str)).mean())


# per panel: data set (tmt.datasets.load), marker mapping, gates, and the four compared classes: the file's labels
# and ours
PROTEIN_SETS = {
    "phenoptr": ("phenoptr", {}, None,
                 {"CD8": (["CD8+"], ["CD8 T", "CD8 Tex", "CD8 Tpex"]), "FOXP3": (["FoxP3+"], ["Treg"]),
                  "CD68": (["CD68+"], ["Monocyte/Macrophage", "TAM M1-like", "TAM M2-like"]),
                  "tumor": (["CK+"], ["Malignant/Epithelial"])}),
    "scimap (gates 0.5)": ("scimap", {"tumor": "CD30"}, 0.5,
                           {"CD8": (["CD8 T cells", "PD1+ T cells"], ["CD8 T", "CD8 Tex", "CD8 Tpex"]),
                            "FOXP3": (["Regulatory T cells", "Aberrant T cells CD45- CD3+ FOXP3+"], ["Treg"]),
                            "CD68": (["M2 Macrophages", "M1 Macrophages", "CD68+ Macrophages"],
                                     ["Monocyte/Macrophage", "TAM M1-like", "TAM M2-like"]),
                            "tumor": (["Tumor CD45- CD30+", "Tumor CD30+", "Tumor CD30+ KI67+"],
                                      ["Malignant/Epithelial"])}),
}


def protein_rows() -> list[tuple]:
    """Protein panels: recall and precision against the files' phenotypes; the baseline is the brightest gated
    marker among the four class markers (what a one-gate-per-marker workflow gives)."""
    from tmetoolkit._core.annotation import protein as prot

    rows = []
    for name, (data, markers, gates, classes) in PROTEIN_SETS.items():
        a = local(data)
        if a is None:
            continue
        tmt.tl.annotate(a, markers=markers or None, gates=gates)
        st, ph = a.obs["tmt_state"].astype(str), a.obs["phenotype"].astype(str)
        names = list(map(str, a.var_names))
        ch = prot.match_markers(a.var_names, markers or None)
        X = np.asarray(a.X, dtype=float)
        Zb = pd.DataFrame({m: prot.gate(X[:, names.index(ch[m])], gates)[0] for m in classes}, index=a.obs_names)
        base = Zb.idxmax(axis=1).where(Zb.max(axis=1) > 0, "none")
        for marker, (file_labels, ours) in classes.items():
            t = ph.isin(file_labels)
            for what, pred in (("recall", st.isin(ours)), ("precision", st.isin(ours))):
                b = base == marker
                val_b = (t & b).sum() / (t.sum() if what == "recall" else max(b.sum(), 1))
                val = (t & pred).sum() / (t.sum() if what == "recall" else max(pred.sum(), 1))
                rows.append((name, f"{ours[0]} {what}", float(val_b), float(val), np.nan,
                             float(st[t].eq("unassigned").mean()) if what == "recall" else np.nan))
    return rows


def supervised_ceiling(adata: ad.AnnData, truth: pd.Series) -> None:
    """How well the authors' own labels can be learned from these cells' transcripts: logistic regression on
    log-normalised counts, 5-fold cross-validated. No per-cell method without the labels should expect more."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_curve
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    L = np.log1p(X / np.clip(X.sum(axis=1, keepdims=True), 1, None) * 100)
    y = truth.to_numpy()
    clf = LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced")
    p = cross_val_predict(clf, L, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    prec, rec, _ = precision_recall_curve(y, p)
    f1 = 2 * prec * rec / np.clip(prec + rec, 1e-9, None)
    i = int(np.argmax(f1))
    print(f"Chen 2024 Treg, supervised ceiling (logistic regression trained on the authors' labels, 5-fold CV): "
          f"best F1 {f1[i]:.2f} at precision {prec[i]:.2f}, recall {rec[i]:.2f}; "
          f"highest recall at precision >= 0.8: {rec[prec >= 0.8].max():.2f}")


def protein_supervised_ceiling() -> None:
    """How well each panel's own phenotypes can be learned from its intensities: gradient boosting on every
    channel, trained on the file's labels, 5-fold cross-validated. No call made without the labels should expect
    more agreement with them."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    for name, (data, _, _, classes) in PROTEIN_SETS.items():
        a = local(data)
        if a is None:
            continue
        y = a.obs["phenotype"].astype(str).to_numpy()
        pred = cross_val_predict(HistGradientBoostingClassifier(random_state=0), np.asarray(a.X, dtype=float), y,
                                 cv=StratifiedKFold(5, shuffle=True, random_state=0))
        parts = []
        for marker, (file_labels, _) in classes.items():
            t, q = np.isin(y, file_labels), np.isin(pred, file_labels)
            hit = (t & q).sum()
            parts.append(f"{marker} precision {hit / max(q.sum(), 1):.2f}, recall {hit / t.sum():.2f}")
        print(f"{name}, supervised ceiling (gradient boosting trained on the file's phenotypes, 5-fold CV): "
              + "; ".join(parts))


# annotate when issue 18 was filed: "annotate on 100,000 cells takes at most 2x its present time"
REFERENCE = "e8c4fde"
ROOT = Path(__file__).resolve().parents[1]
TIMER = """
import json, sys, time, warnings
import anndata as ad
import tmetoolkit as tmt
warnings.simplefilter("ignore")
a = ad.read_h5ad(sys.argv[1])
t0 = time.perf_counter()
tmt.tl.annotate(a)
seconds = time.perf_counter() - t0
truth, called = a.obs["true_state"].astype(str), a.obs["tmt_state"].astype(str)
within = {lin: float((called[a.obs["true_lineage"] == lin] == truth[a.obs["true_lineage"] == lin]).mean())
          for lin in sys.argv[2].split(",")}
print(json.dumps({"seconds": seconds, "accuracy": float((called == truth).mean()), "within": within,
                  "package": tmt.__file__}))
"""


def package_tree(reference: str, where: Path) -> Path:
    """A directory holding the package: ``reference`` itself when it is one, else the package as it was at that
    commit (``git archive`` of its code, signatures and data files) unpacked into ``where``."""
    if Path(reference, "tmetoolkit").is_dir():
        return Path(reference)
    import subprocess

    where.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", reference, "tmetoolkit", "signatures", "data"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def time_tree(tree: Path, h5ad: Path) -> dict:
    """Seconds and state accuracy of ``annotate`` on ``h5ad`` in a fresh process importing the package from ``tree``
    (each process pays what a user's fresh session pays, such as compilation that is not cached on disk)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(tree), "MPLBACKEND": "agg"}
    # run from the file's folder: with -c the working directory comes first on sys.path
    out = subprocess.run([sys.executable, "-c", TIMER, str(h5ad), ",".join(tmt._keys.STATES)], capture_output=True,
                         text=True, env=env, cwd=h5ad.parent, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"annotate failed in {tree}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def scale(n_cells: int, reference: str | None, baseline: bool = True, repeat: int = 1) -> None:
    """Time ``annotate`` on ``n_cells`` simulated cells in this tree and in ``reference`` (a commit or a package
    directory), one fresh process each, on the same file in one run; and, with ``baseline``, the score_genes +
    argmax baseline in this process."""
    import tempfile
    import time

    a = tmt.datasets.simulate(n_samples=max(1, n_cells // 5000), n_cells=min(n_cells, 5000), seed=11)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        h5ad = tmp / "sim.h5ad"
        a.write_h5ad(h5ad)
        small = tmp / "small.h5ad"
        tmt.datasets.simulate(n_samples=1, n_cells=600, seed=1).write_h5ad(small)
        trees = {"this tree": ROOT}
        if reference:
            trees = {f"reference {reference}": package_tree(reference, tmp / "reference"), **trees}
        for tree in trees.values():  # fills the on-disk caches of compiled kernels, as a user's first call does
            time_tree(tree, small)
        runs = {name: [] for name in trees}
        for _ in range(repeat):  # alternating, so that a change in the machine's load falls on both
            for name, tree in trees.items():
                runs[name].append(time_tree(tree, h5ad))
    for name, rs in runs.items():
        r = min(rs, key=lambda r: r["seconds"])
        seconds = " / ".join(f"{x['seconds']:.1f}" for x in rs)
        within = ", ".join(f"{k} {v:.3f}" for k, v in r["within"].items())
        print(f"{a.n_obs} cells, {name} ({Path(r['package']).parent.parent}): tmt.tl.annotate {seconds} s "
              f"(state accuracy {r['accuracy']:.3f}; within {within})")
    if reference:
        ref, new = (min(x["seconds"] for x in rs) for rs in runs.values())
        print(f"time ratio, this tree / reference {reference}: {new / ref:.2f} (fastest of {repeat} each)")
    if baseline:
        truth = a.obs["true_state"].astype(str)
        t0 = time.perf_counter()
        _, st_b = argmax_baseline(a)
        t_base = time.perf_counter() - t0
        t_tmt = min(x["seconds"] for x in runs["this tree"])
        print(f"score_genes + argmax {t_base:.1f} s (state accuracy {(st_b.astype(str) == truth).mean():.3f}); "
              f"annotate is {t_base / t_tmt:.1f}x faster")


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="annotate against score_genes + argmax")
    p.add_argument("--scale", type=int, default=0,
                   help="instead, time annotate on this many simulated cells, here and in --reference")
    p.add_argument("--reference", default=REFERENCE,
                   help=f"with --scale: a commit or a package directory to time beside this tree (default "
                        f"{REFERENCE}, annotate when issue 18 was filed); '' for none")
    p.add_argument("--repeat", type=int, default=1, help="with --scale: timed runs per tree (the fastest counts)")
    p.add_argument("--no-baseline", action="store_true", help="with --scale: leave out the score_genes baseline")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    if args.scale:
        scale(args.scale, args.reference or None, baseline=not args.no_baseline, repeat=args.repeat)
        return
    rows = []
    a = tmt.datasets.simulate(n_samples=3, n_cells=3000, seed=3)
    lin_b, st_b = argmax_baseline(a)
    tmt.tl.annotate(a)
    o = a.obs
    rows.append(("simulate", "lineage", accuracy(lin_b, o["true_lineage"]),
                 accuracy(o["tmt_lineage"], o["true_lineage"]),
                 precision(o["tmt_lineage"], o["true_lineage"], {"unassigned"}),
                 float((o["tmt_lineage"] == "unassigned").mean())))
    for lin, states in tmt._keys.STATES.items():
        m = o["true_lineage"] == lin
        abstain = {"unassigned"} | ({lin} if lin not in states else set())
        rows.append(("simulate", f"state within {lin}", accuracy(st_b[m], o.loc[m, "true_state"]),
                     accuracy(o.loc[m, "tmt_state"], o.loc[m, "true_state"]),
                     precision(o.loc[m, "tmt_state"], o.loc[m, "true_state"], abstain),
                     float(o.loc[m, "tmt_state"].astype(str).isin(abstain).mean())))
    p = local("puram2017")
    if p is not None:
        m = {"B cell": "B", "CD4 T cell": "CD4 T", "reg. T cell": "CD4 T", "CD8 T cell": "CD8 T", "Dendritic": "DC",
             "Endothelial": "Endothelial", "Fibroblast": "Fibroblast", "Macrophage": "Monocyte/Macrophage",
             "Mast": "Mast"}
        truth = p.obs["celltypes"].astype(str).map(m)
        lin_b, st_b = argmax_baseline(p)
        tmt.tl.annotate(p)
        rows.append(("Puram 2017", "lineage", accuracy(lin_b, truth), accuracy(p.obs["tmt_lineage"], truth),
                     precision(p.obs["tmt_lineage"], truth, {"unassigned"}),
                     float((p.obs["tmt_lineage"] == "unassigned").mean())))
        # the subset has none of the tryptase/KIT/CPA3 mast genes: its mast cells are called through Bindea's set
        clustered = p.copy()
        clustered.obs["leiden"] = leiden_clusters(p)
        tmt.tl.annotate(clustered, groupby="leiden")
        rows.append(("Puram 2017", f"lineage, groupby {clustered.obs['leiden'].nunique()} Leiden clusters", np.nan,
                     accuracy(clustered.obs["tmt_lineage"], truth),
                     precision(clustered.obs["tmt_lineage"], truth, {"unassigned"}),
                     float((clustered.obs["tmt_lineage"] == "unassigned").mean())))
        mast, called = truth == "Mast", p.obs["tmt_lineage"] == "Mast"
        rows.append(("Puram 2017", "Mast recall / precision", np.nan, float(called[mast].mean()),
                     float(mast[called].mean()), np.nan))
        tr = p.obs["celltypes"] == "reg. T cell"
        rows.append(("Puram 2017", "Treg recall", float((st_b[tr] == "Treg").mean()),
                     float((p.obs.loc[tr, "tmt_state"] == "Treg").mean()), np.nan, np.nan))
    c = local("chen2024")
    if c is not None:
        m = {"Fibroblast": "Fibroblast", "Mast": "Mast", "Myeloid": "Monocyte/Macrophage", "Plasma": "Plasma",
             "Vascular": "Endothelial"}
        truth = c.obs["type_lvl1"].astype(str).map(m)
        lin_b, st_b = argmax_baseline(c)
        tmt.tl.annotate(c)
        rows.append(("Chen 2024", "lineage (non-lymphoid, non-epithelial)", accuracy(lin_b, truth),
                     accuracy(c.obs["tmt_lineage"], truth), precision(c.obs["tmt_lineage"], truth, {"unassigned"}),
                     float((c.obs["tmt_lineage"] == "unassigned").mean())))
        t2 = c.obs["type_lvl2"].astype(str)
        from sklearn.metrics import roc_auc_score

        tmt.tl.score(c, ["TAM_RTM", "CD8_Tpex_core", "CD8_Tex"])
        S = c.obsm["tmt_scores"]
        mac = t2.isin(["SPP1+ Macrophage", "FOLR2+CD14+ Macrophage"])
        print(f"Chen 2024 FOLR2+ vs SPP1+ macrophages, RTM-TAM score AUROC "
              f"{roc_auc_score(t2[mac] == 'FOLR2+CD14+ Macrophage', S.loc[mac, 'TAM_RTM']):.3f}")
        cd8 = t2.isin(["CD8 T", "TCF7+ CD8 T", "CXCL13+ CD8 T"])
        sub = S.loc[cd8, ["CD8_Tpex_core", "CD8_Tex"]]
        print("Chen 2024 Tpex/Tex scores standardised within CD8 T cells, mean per author label:")
        print(((sub - sub.mean()) / sub.std()).groupby(t2[cd8]).mean().round(2).to_string())
        for name, pred in (("score_genes+argmax", st_b), ("tmetoolkit", c.obs["tmt_state"].astype(str))):
            called, true = pred == "Treg", t2 == "Treg"
            print(f"Chen 2024 Treg, {name}: precision {true[called].mean():.2f}, recall {called[true].mean():.2f}")
        supervised_ceiling(c, t2 == "Treg")
        # the panel has KRT8 alone of the epithelial sets: a programme that marks the malignant cells decides them
        with_mpas = local("chen2024")
        tmt.tl.annotate(with_mpas, tumor_signature="MPAS")
        epi = c.obs["type_lvl1"] == "Epithelial"
        for name, lin in (("annotate", c.obs["tmt_lineage"]), ("annotate(tumor_signature='MPAS')",
                                                              with_mpas.obs["tmt_lineage"])):
            called = lin == "Malignant/Epithelial"
            prec = epi[called].mean() if called.any() else float("nan")
            print(f"Chen 2024 epithelial cells, {name}: recall {called[epi].mean():.2f}, precision {prec:.2f}, "
                  f"called DC {(lin[epi] == 'DC').mean():.2f}")
    rows += protein_rows()
    protein_supervised_ceiling()
    tab = pd.DataFrame(rows, columns=["data", "what", "baseline", "tmt.tl.annotate",
                                      "tmt among called", "tmt abstained"])
    print(tab.round(3).to_string(index=False))


if __name__ == "__main__":
    main()

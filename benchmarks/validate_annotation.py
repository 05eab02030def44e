"""``tmt.tl.annotate`` on every author-labelled set in ``../shared/data``, beside two references on the same cells.

- **baseline**: what a user writes in a few lines: ``sc.tl.score_genes`` on each label's positive marker genes
  (the same markers annotate reads), label = argmax; for states, the same within the lineage that baseline called
  (no labels used);
- **ceiling**: a logistic regression trained on the authors' labels (5-fold cross-validation) on 50 principal
  components of the log-normalised variable genes: what the data allow with labels.

RNA sets are also run after the two stresses users bring every day: only 2,000 highly variable genes kept
(``hvg2000``), and counts down-sampled to 1,000 per cell (``depth1000``), and with scanpy's usual Leiden clusters
passed as ``groupby`` (``groupby=leiden``; the state tasks' ``ours_groupby_leiden``); the state tasks are scored on
the stressed variants too, beside the ceiling trained on the same stressed values. Protein panels are scored
by recall and precision against the files' classes (phenoptr's inForm phenotypes, scimap's gating, Schürch's CODEX
clusters).
Every RNA set also prints precision, recall, F1 and unassigned share per author lineage; ``outside_unassigned``
is the share of the cells of types the vocabulary does not name (``OUTSIDE``: Chen's ILCs, blood basophils, CD34+
progenitors) that annotate leaves unassigned, as it should. A state task is scored among the cells the authors
give its classes (Treg against conventional CD4 T cells); ``*_off_task`` is the share of a method's calls of those
classes that fall on other cells, which the score cannot see. Usage::

    python benchmarks/validate_annotation.py            # every set, every variant (a few minutes)
    python benchmarks/validate_annotation.py --quick    # no stresses
    python benchmarks/validate_annotation.py --lost-groups   # each marker group's core genes removed in turn
    python benchmarks/validate_annotation.py --panels   # the human sets cut to two real targeted panels
    python benchmarks/validate_annotation.py --formats  # the same cells as log values of other bases, or CPM
    python benchmarks/validate_annotation.py --alone    # each cell type annotated alone, as after sorting
    python benchmarks/validate_annotation.py --stability   # calls with a few cells left out; accuracy per confidence
    python benchmarks/validate_annotation.py --external # held-out sets read from PyPI wheels (external_sets.py)

``--external`` runs the same tables on six author-labelled sets that ship inside PyPI packages, found after the
rules of their day were set (``external_sets.py`` names the three rules they motivated since): Kim 2020 lung
adenocarcinoma with exhausted CD8 T cells, Tregs and myofibroblasts; Qian 2020 ovarian cancer; Wu 2020 T cells;
Tirosh 2016 oligodendroglioma, whose glial cells no lineage of the vocabulary names; Spectra's breast tumour immune
cells, log values of selected genes; Hao 2021 blood cells with Tregs and DCs.

No shared set labels exhausted or naive CD8 T cells, CAF or TAM subsets apart from Chen's TAMs, so two label-free
checks follow the states: ``state_kept``, the share of cells called the same lineage on the whole panel and on a
stressed variant that keep their state too; and, per lineage and called state, how often each state's canonical
genes (``CANONICAL``) are detected in its cells: a state whose own genes are not highest in its own cells
(``coherent`` False) is being called on something else. Many canonical genes also decide their state (naive/memory
is decided on CCR7, SELL, LEF1, TCF7 and IL7R among others), so the check catches a call made on other genes, not a
wrong signature.

``--lost-groups`` is the stress behind the marker file's stand-ins: a panel of selected genes (a file of variable
genes, a targeted panel) lacks some lineages' canonical markers, and which ones differs from file to file. Each
set is annotated once with a group's genes removed; the table gives lineage accuracy and the recall of the lineages
the group marks, before and after. ``--panels`` cuts the human sets to the genes of the two imaging panels in
``../shared/data`` (10x Xenium's breast panel, Chen's MERFISH immuno-oncology panel), as a targeted panel holds them:
lineage accuracy beside the baseline and the ceiling on the same genes, and what becomes of the cells of a lineage
the panel cannot assess. ``--formats`` gives each set's cells in the value formats files are shared in (log1p of
10,000 per cell, log2 and log10 of counts per million plus one, counts per million), recovered from the shared
values: a log of a linear profile is read as that profile, whatever the base; the state tasks are scored in each
format too.
"""

from __future__ import annotations

import argparse
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

import tmetoolkit as tmt
from tmetoolkit._core.annotation.markers import lineage_markers

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = {
    "puram": "puram2017_hnscc_chetah/puram2017_hnscc_ref180.h5ad",
    "chen": "chen2024_nsclc_merfish/chen2024_nsclc_merfish_patient002_3177cells.h5ad",
    "zilionis_hs": "zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad",
    "zilionis_mm": "zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad",
}
T = "CD4 T;CD8 T"  # T cells whose co-receptor the authors did not give
MM = "Monocyte/Macrophage"


@dataclass
class LabelledSet:
    name: str
    adata: ad.AnnData
    truth: pd.Series  # allowed lineages per cell, ";"-separated; NaN = not evaluated
    author: pd.Series  # the authors' own classes (the ceiling learns these)
    states: dict[str, tuple[pd.Series, str]]  # state task -> (binary or multiclass truth within a lineage, lineage)


def _puram(a):
    m = {"B cell": "B;Plasma", "CD4 T cell": "CD4 T", "CD8 T cell": "CD8 T", "reg. T cell": "CD4 T", "Dendritic": "DC",
         "Endothelial": "Endothelial", "Fibroblast": "Fibroblast", "Macrophage": MM, "Mast": "Mast"}
    ct = a.obs["celltypes"].astype(str)
    treg = pd.Series(np.where(ct == "reg. T cell", "Treg", np.where(ct == "CD4 T cell", "conv", None)),
                     index=a.obs_names)
    return ct.map(m), ct, {"Treg vs conventional CD4 (F1 Treg)": (treg, "CD4 T")}


def _chen(a):
    l2 = a.obs["type_lvl2"].astype(str)

    def lin(x):
        if x == "Epithelial":
            return "Malignant/Epithelial"
        if x in ("Fibroblast", "Plasma", "B", "Mast", "NK"):
            return x
        if x == "Vascular":
            return "Endothelial;Pericyte"
        if "CD8 T" in x:
            return "CD8 T"
        if "CD4 T" in x or x == "Treg":
            return "CD4 T"
        if "Macrophage" in x:
            return MM
        if "DC" in x:
            return "DC"
        return None  # ILC, NCAM1+S100B+ and MMP1+SOX4+ myeloid cells: no lineage in the vocabulary

    truth = l2.map(lin)
    cd4 = truth == "CD4 T"
    treg = pd.Series(np.where(l2 == "Treg", "Treg", np.where(cd4, "conv", None)), index=a.obs_names)
    myel = l2.str.contains("Macrophage") | l2.str.contains("DC")
    mmd = pd.Series(np.where(l2.str.contains("DC") & myel, "DC", np.where(l2 == "FCN1+LYZ+ Macrophage", "Monocyte",
                    np.where(myel, "Macrophage", None))), index=a.obs_names)
    # interferon-stimulated CXCL10+ macrophages against the subsets the authors describe by M2-associated genes
    # (FOLR2, MERTK, MARCO, SPP1, CCL18): the TAM M1-like and M2-like states within macrophages
    m2_like = ("FOLR2+CD14+ Macrophage", "MERTK+ Macrophage", "MARCO+ Macrophage", "SPP1+ Macrophage",
               "PLA2G7+ CCL18+ Macrophage")
    tam = pd.Series(np.where(l2 == "CXCL10+ Macrophage", "M1", np.where(l2.isin(m2_like), "M2", None)),
                    index=a.obs_names)
    return truth, l2, {"Treg vs conventional CD4 (F1 Treg)": (treg, "CD4 T"),
                       "monocyte vs macrophage vs DC (bal. acc.)": (mmd, "myeloid"),
                       "TAM M1-like vs M2-like (bal. acc.)": (tam, "myeloid")}


def _zilionis_hs(a):
    minor = a.obs["author_minor_subset"].astype(str)
    major = a.obs["author_major_cell_type"].astype(str)

    def lin(mj, mn):
        if "specific" in mj or mj == "Ciliated cells":
            return "Malignant/Epithelial"
        if mj in ("tB cells", "bB cells"):
            return "B"
        if mj in ("tNK cells", "bNK cells"):
            return "NK"
        if mj in ("tNeutrophils", "bNeutrophils"):
            return "Neutrophil"
        if mj == "tPlasma cells":
            return "Plasma"
        if mj == "tMast cells":
            return "Mast"
        if mj == "Fibroblasts":
            return "Fibroblast"
        if mj == "Endothelial cells":
            return "Endothelial"
        if mj == "Smooth muscle cells":
            return "Pericyte"
        if mj == "tpDC":
            return "DC"
        if mj in ("tT cells", "bT cells"):
            return "CD8 T" if "CD8" in mn else "CD4 T" if ("CD4" in mn or mn == "tT3") else T
        if mj in ("tMoMacDC", "bMonocytes"):
            if mn.startswith("tDC") or mn in ("tMonoDC", "bMonoDC"):
                return "DC" if mn.startswith("tDC") else None
            return MM
        return None

    truth = pd.Series([lin(x, y) for x, y in zip(major, minor, strict=True)], index=a.obs_names)
    t = major == "tT cells"
    treg = pd.Series(np.where(minor == "tT3", "Treg", np.where(t, "conv", None)), index=a.obs_names)
    myel = major.isin(["tMoMacDC", "bMonocytes", "tpDC"])
    mmd = pd.Series(np.where(myel & (minor.str.startswith("tDC") | (major == "tpDC")), "DC",
                    np.where(myel & minor.str.contains("Mono") & ~minor.str.contains("DC"), "Monocyte",
                    np.where(myel & minor.str.startswith("tMac"), "Macrophage", None))), index=a.obs_names)
    return truth, major + ":" + minor.where(major.isin(["tT cells", "bT cells", "tMoMacDC"]), ""), {
        "Treg vs conventional T (F1 Treg)": (treg, "T"),
        "monocyte vs macrophage vs DC (bal. acc.)": (mmd, "myeloid")}


def _zilionis_mm(a):
    major = a.obs["author_major_cell_type"].astype(str)
    minor = a.obs["author_minor_subset"].astype(str)
    m = {"B cells": "B", "NK cells": "NK", "Neutrophils": "Neutrophil", "T cells": T}
    truth = major.map(m)
    treg = pd.Series(np.where(minor == "T2", "Treg", np.where(major == "T cells", "conv", None)), index=a.obs_names)
    return truth, major, {"Treg vs conventional T (F1 Treg)": (treg, "T")}


def _pbmc68k(a):
    bulk = a.obs["bulk_labels"].astype(str)
    m = {"CD4+/CD25 T Reg": "CD4 T", "CD4+/CD45RA+/CD25- Naive T": "CD4 T", "CD4+/CD45RO+ Memory": "CD4 T",
         "CD8+ Cytotoxic T": "CD8 T", "CD8+/CD45RA+ Naive Cytotoxic": "CD8 T", "CD14+ Monocyte": MM,
         "CD19+ B": "B;Plasma", "CD56+ NK": "NK", "Dendritic": "DC"}  # CD34+ progenitors: no lineage in the vocabulary
    # sorted CD19+ cells include plasmablasts (30 of this file's 95 hold MZB1, TNFRSF17 and FKBP11 without MS4A1)
    return bulk.map(m), bulk, {}


LOADERS = {"puram": _puram, "chen": _chen, "zilionis_hs": _zilionis_hs, "zilionis_mm": _zilionis_mm}
# the authors' classes of cell types the vocabulary does not name: annotate should leave them unassigned
OUTSIDE = {"chen": ("ILC", "NCAM1+ S100B+ SEPP1+ Myeloid", "MMP1+SOX4+ Myeloid"),
           "zilionis_hs": ("bBasophils:", "bMyeloid precursor-like:"), "pbmc68k": ("CD34+",)}


# canonical genes of states no shared set labels (per called state, how often they are detected in its cells):
# naive CCR7/SELL/LEF1/TCF7/IL7R and Tpex PD-1+ TOX+ CXCR5+ (Miller 2019, doi:10.1038/s41590-019-0312-6); Tex
# TIM-3/LAG-3/TIGIT/CD39/LAYN/CXCL13 and effector granzyme H/FGFBP2/CX3CR1 (Zheng 2021, doi:10.1126/science.abe6474);
# myCAF and iCAF (Elyada 2019, doi:10.1158/2159-8290.CD-19-0094); monocyte and M1-/M2-like macrophage genes.
CANONICAL: dict[str, dict[str, tuple[str, ...]]] = {
    "CD8 T": {"CD8 naive/memory": ("CCR7", "SELL", "LEF1", "TCF7", "IL7R"), "CD8 Tpex": ("PDCD1", "TOX", "CXCR5"),
              "CD8 Tex": ("HAVCR2", "LAG3", "TIGIT", "ENTPD1", "LAYN", "CXCL13"),
              "CD8 effector": ("GZMH", "FGFBP2", "CX3CR1", "GNLY")},
    "Fibroblast": {"myCAF": ("ACTA2", "TAGLN", "MYL9", "POSTN"), "iCAF": ("CFD", "DPT", "C3", "CXCL12", "IL6")},
    MM: {"Monocyte": ("FCN1", "S100A8", "S100A9", "VCAN"), "TAM M1-like": ("CXCL9", "CXCL10", "IL1B", "CD80"),
         "TAM M2-like": ("CD163", "MRC1", "FOLR2", "SELENOP")},
}


def state_coherence(a: ad.AnnData, calls: pd.DataFrame, name: str) -> list[dict]:
    """Per lineage of ``CANONICAL`` and called state (at least 5 cells), the detection of each state's canonical
    genes (mean over the genes the panel has) and whether the state's own genes are the most detected."""
    rows = []
    upper = {g.upper(): g for g in a.var_names}
    for lineage, classes in CANONICAL.items():
        cells = (calls["tmt_lineage"] == lineage).to_numpy()
        genes = {st: [upper[g] for g in gs if g in upper] for st, gs in classes.items()}
        genes = {st: g for st, g in genes.items() if g}
        if cells.sum() < 5 or len(genes) < 2:
            continue
        for state, n in calls["tmt_state"][cells].value_counts().items():
            if state not in genes or n < 5:
                continue
            sub = a[(calls["tmt_state"] == state).to_numpy() & cells]
            det = {st: float((sub[:, g].X > 0).mean()) for st, g in genes.items()}
            rows.append({"set": name, "lineage": lineage, "state": state, "n": int(n),
                         **{f"genes of {st}": v for st, v in det.items()}, "coherent": max(det, key=det.get) == state})
    return rows


def state_kept(full: pd.DataFrame, stressed: pd.DataFrame) -> float:
    """Share of the cells with the same lineage on the whole panel and the stressed variant that keep their state."""
    same = (full["tmt_lineage"] == stressed["tmt_lineage"]) & (full["tmt_lineage"] != "unassigned") \
        & (full["tmt_state"] != full["tmt_lineage"])
    return float((full["tmt_state"][same] == stressed["tmt_state"][same]).mean()) if same.any() else np.nan


def pbmc68k() -> ad.AnnData:
    """scanpy's bundled 10x PBMC sample (Zheng 2017, doi:10.1038/ncomms14049): 700 droplet cells, the log values of
    765 variable genes in ``.raw`` (what the file's users read), labels from the sorted populations each cell
    correlates with best. Not a tumour, but a real panel of selected genes at droplet depth that no rule here was
    tuned on."""
    a = sc.datasets.pbmc68k_reduced()
    b = a.raw.to_adata()
    b.obs = a.obs[["bulk_labels"]].copy()
    return b


def read_shared(name: str, file: str) -> ad.AnnData | None:
    """A file of ../shared/data with unique cell names, or None (and a line saying so) when it is absent."""
    path = SHARED / file
    if not path.is_file():
        print(f"skipped {name}: {path} not found")
        return None
    a = ad.read_h5ad(path)
    a.obs_names_make_unique()
    return a


def load_external_sets() -> list[LabelledSet]:
    """The held-out sets read from PyPI wheels (``external_sets.py``), their types outside the vocabulary added to
    ``OUTSIDE``."""
    import external_sets

    out = []
    for name, (load, labels) in external_sets.SETS.items():
        a = load()
        if a is None:
            continue
        a.obs_names_make_unique()
        out.append(LabelledSet(name, a, *labels(a)))
    OUTSIDE.update(external_sets.OUTSIDE)
    return out


def load_sets() -> list[LabelledSet]:
    out = []
    for name, file in FILES.items():
        a = read_shared(name, file)
        if a is None:
            continue
        truth, author, states = LOADERS[name](a)
        out.append(LabelledSet(name, a, truth, author, states))
    a = pbmc68k()
    out.append(LabelledSet("pbmc68k", a, *_pbmc68k(a)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# the stresses

def lognorm(a: ad.AnnData) -> ad.AnnData:
    b = a.copy()
    if tmt.pp.check_input(b).state in ("counts", "linear"):
        if tmt.pp.check_input(b).state == "counts":
            sc.pp.normalize_total(b, target_sum=1e4)
        sc.pp.log1p(b)
    return b


def hvg_only(a: ad.AnnData, n: int = 2000) -> ad.AnnData:
    """Only the ``n`` most variable genes, as files shared after ``sc.pp.highly_variable_genes`` often hold."""
    b = lognorm(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(b, n_top_genes=min(n, b.n_vars - 1), flavor="seurat")
    return a[:, b.var["highly_variable"].to_numpy()].copy()


def linear_values(a: ad.AnnData) -> np.ndarray:
    """``X`` as a dense matrix on a linear scale: log values taken back (the shared files' are natural logs, or
    log2(TPM/10 + 1) for Puram's, told by values above 12)."""
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X, dtype=float)
    if tmt.pp.check_input(a).state == "lognorm":
        X = np.expm1(X * np.log(2)) if X.max() > 12 else np.expm1(X)
    return X


def downsample(a: ad.AnnData, depth: int = 1000, seed: int = 0) -> ad.AnnData:
    """Counts thinned to at most ``depth`` per cell (droplet depth). Log values are first brought back to a linear
    scale; each cell's expression profile is then sampled ``depth`` times."""
    rng = np.random.default_rng(seed)
    X = np.clip(linear_values(a), 0, None)
    out = np.zeros_like(X)
    for i, row in enumerate(X):
        tot = row.sum()
        if tot <= 0:
            continue
        if tot <= depth and np.allclose(row, np.round(row)):
            out[i] = row
        else:
            p = row.astype(np.float64) / float(tot)
            out[i] = np.bincount(rng.choice(p.size, size=depth, p=p / p.sum()), minlength=p.size)
    b = a.copy()
    b.X = sp.csr_matrix(out.astype(np.float32))
    return b


# ---------------------------------------------------------------------------------------------------------------
# the three callers

def with_leiden(a: ad.AnnData, seed: int = 0) -> ad.AnnData:
    """A copy of ``a`` with ``obs["leiden"]``: scanpy's usual clusters (log-normalised, 2,000 variable genes where
    the panel has more, 50 PCs, 15 neighbours, Leiden at resolution 1), as a user passes them to ``groupby``."""
    b = lognorm(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if b.n_vars > 2000:
            sc.pp.highly_variable_genes(b, n_top_genes=2000, flavor="seurat")
        sc.pp.pca(b, n_comps=min(50, b.n_obs - 1, b.n_vars - 1), random_state=seed,
                  mask_var="highly_variable" if "highly_variable" in b.var else None)
        sc.pp.neighbors(b, random_state=seed)
        sc.tl.leiden(b, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    out = a.copy()
    out.obs["leiden"] = b.obs["leiden"].to_numpy()
    return out


# the obs column of each labelled file that names its samples (patients, animals), passed as a user would
SAMPLE_KEYS = ("Patient", "Animal")
STRESSES = ("hvg2000", "depth1000")  # the two everyday stresses (module docstring)


def ours(a: ad.AnnData, **kwargs) -> pd.DataFrame:
    """annotate's calls, with the file's samples as ``sample_key`` where it names them."""
    b = a.copy()
    kwargs.setdefault("sample_key", next((k for k in SAMPLE_KEYS if k in b.obs), None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.annotate(b, **kwargs)
    return b.obs[["tmt_lineage", "tmt_state", "tmt_confidence"]].astype({"tmt_lineage": str, "tmt_state": str})


def baseline(a: ad.AnnData) -> pd.Series:
    b = lognorm(a)
    table = lineage_markers()
    scores = {}
    for lab in table.labels:
        genes = [g for g in lab.genes if g in b.var_names]
        if genes:
            sc.tl.score_genes(b, genes, score_name="s", random_state=0)
            scores[lab.label] = b.obs["s"].to_numpy()
    S = pd.DataFrame(scores, index=b.obs_names)
    return S.idxmax(axis=1).str.split("|").str[0]


def ceiling(a: ad.AnnData, author: pd.Series, seed: int = 0) -> pd.Series:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    keep = author.notna().to_numpy()
    y = author.to_numpy().astype(str)
    b = lognorm(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if b.n_vars > 2000:
            sc.pp.highly_variable_genes(b, n_top_genes=2000, flavor="seurat")
            b = b[:, b.var["highly_variable"]].copy()
        sc.pp.scale(b, max_value=10)
        sc.pp.pca(b, n_comps=min(50, b.n_obs - 1, b.n_vars - 1), random_state=seed)
    Z = b.obsm["X_pca"]
    pred = np.full(len(y), None, dtype=object)
    counts = pd.Series(y[keep]).value_counts()
    ok = keep & np.isin(y, counts[counts >= 5].index)
    idx = np.flatnonzero(ok)
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(idx, y[idx]):
        m = LogisticRegression(max_iter=2000, C=0.1).fit(Z[idx[tr]], y[idx[tr]])
        pred[idx[te]] = m.predict(Z[idx[te]])
    return pd.Series(pred, index=a.obs_names)


# ---------------------------------------------------------------------------------------------------------------
# measures

def lineage_accuracy(pred: pd.Series, truth: pd.Series) -> float:
    keep = truth.notna()
    ok = [p in str(t).split(";") for p, t in zip(pred[keep].astype(str), truth[keep], strict=True)]
    return float(np.mean(ok))


def ceiling_accuracy(pred: pd.Series, author: pd.Series, truth: pd.Series) -> float:
    """Predicted author class counts as right when it maps to an allowed lineage of the cell."""
    lut = pd.Series(truth.to_numpy(), index=author.to_numpy()).groupby(level=0).first()
    keep = truth.notna()
    mapped = pred.map(lambda c: lut.get(c) if c is not None else None)
    ok = [m is not None and isinstance(m, str) and bool(set(m.split(";")) & set(str(t).split(";")))
          for m, t in zip(mapped[keep], truth[keep], strict=True)]
    return float(np.mean(ok))


def f1(pred: pd.Series, truth: pd.Series, positive: str) -> float:
    keep = truth.notna()
    p, t = pred[keep].astype(str) == positive, truth[keep].astype(str) == positive
    tp = float((p & t).sum())
    return 2 * tp / max(float(p.sum() + t.sum()), 1.0)


def balanced_accuracy(pred: pd.Series, truth: pd.Series) -> float:
    keep = truth.notna()
    t, p = truth[keep].astype(str), pred[keep].astype(str)
    return float(np.mean([(p[t == c] == c).mean() for c in t.unique()]))


# the class an F1 task is scored on ("(F1 Tex)" in its name) and the states of ours that call it
POSITIVE_STATES = {"Treg": ("Treg",), "Tex": ("CD8 Tex",), "myCAF": ("myCAF",), "effector": ("CD8 effector",)}


def positive_class(task: str) -> str | None:
    """The class an F1 task is scored on, named in the task as ``(F1 <class>)``; ``None`` for the others."""
    m = re.search(r"\(F1 (\w+)\)", task)
    return m.group(1) if m else None


def negative_class(task: str) -> str:
    return "conv" if positive_class(task) == "Treg" else "other"


def task_score(pred: pd.Series, truth: pd.Series, task: str) -> float:
    """F1 of the positive class for the F1 tasks, balanced accuracy for the others."""
    pos = positive_class(task)
    return f1(pred, truth, pos) if pos else balanced_accuracy(pred, truth)


def state_prediction(calls: pd.DataFrame, task: str) -> pd.Series:
    lin, st = calls["tmt_lineage"], calls["tmt_state"]
    pos = positive_class(task)
    if pos:
        return pd.Series(np.where(st.isin(POSITIVE_STATES[pos]), pos, negative_class(task)), index=calls.index)
    if "TAM" in task:
        return pd.Series(np.where(st == "TAM M1-like", "M1", np.where(st == "TAM M2-like", "M2", "other")),
                         index=calls.index)
    return pd.Series(np.where(lin == "DC", "DC", np.where(st.isin(["Monocyte", "M-MDSC-like"]), "Monocyte",
                     np.where(lin == MM, "Macrophage", "other"))), index=calls.index)


def ceiling_state(a: ad.AnnData, truth: pd.Series, seed: int = 0) -> pd.Series:
    sub = truth.notna().to_numpy()
    pred = ceiling(a[sub].copy(), truth[sub])
    return pred.reindex(truth.index)


# the baseline's state sets for each F1 task (the positive class first) and the lineages it scores them within
T_LINEAGES = ("T", "CD4 T", "CD8 T")
BASELINE_SETS = {
    "Treg": ({"Treg": "Treg_core", "conv": "CD4_T"}, T_LINEAGES),
    "Tex": ({"Tex": "CD8_Tex", "naive/memory": "CD8_naive_memory", "effector": "CD8_effector"}, T_LINEAGES),
    "effector": ({"effector": "CD8_effector", "naive/memory": "CD8_naive_memory", "Tex": "CD8_Tex"}, T_LINEAGES),
    "myCAF": ({"myCAF": "myCAF", "iCAF": "iCAF"}, ("Fibroblast",)),
}


def baseline_state(a: ad.AnnData, truth: pd.Series, task: str) -> pd.Series:
    """What a user writes without labels: the lineage baseline (``score_genes`` argmax on the markers), then, within
    the cells it calls T (Treg, Tex and effector tasks), fibroblasts (myCAF) or monocyte/macrophage (myeloid and TAM
    tasks), ``score_genes`` of the registry state sets and argmax. Cells of other lineages get the negative class
    ("conv", "other")."""
    lineage = baseline(a).reindex(truth.index)
    b = lognorm(a)
    pos = positive_class(task)
    if pos in BASELINE_SETS:
        names, lineages = BASELINE_SETS[pos]
        sets = {k: tmt.sig.get(v).genes_up for k, v in names.items()}
        within = lineage.isin(lineages).to_numpy()
        out = pd.Series(negative_class(task), index=truth.index, dtype=object)
    elif "TAM" in task:
        sets = {"M1": tmt.sig.get("TAM_M1_like").genes_up, "M2": tmt.sig.get("TAM_M2_like").genes_up}
        within = (lineage == MM).to_numpy()
        out = pd.Series("other", index=truth.index, dtype=object)
    else:
        sets = {"Monocyte": tmt.sig.get("Monocyte").genes_up, "Macrophage": tmt.sig.get("Macrophage").genes_up}
        within = (lineage == MM).to_numpy()
        out = pd.Series(np.where(lineage == "DC", "DC", "other"), index=truth.index, dtype=object)
    if within.sum() < 2:
        return out
    b = b[within].copy()
    S = {}
    for k, genes in sets.items():
        g = [x for x in genes if x in b.var_names]
        if not g:  # the panel holds none of the set: the state cannot win
            S[k] = np.full(b.n_obs, -np.inf)
            continue
        sc.tl.score_genes(b, g, score_name="s", random_state=0, ctrl_size=min(50, b.n_vars // 4))
        S[k] = b.obs["s"].to_numpy()
    out[within] = pd.DataFrame(S, index=b.obs_names).idxmax(axis=1).to_numpy()
    return out.where(out == pos, negative_class(task)) if pos else out


# ---------------------------------------------------------------------------------------------------------------
# protein panels: recall and precision of the files' classes (the tests hold the figures measured when each rule
# was made; a change to the protein path must keep them)

PROTEIN = {
    "phenoptr": ("phenoptr_vectra_field/phenoptr_sample_field.h5ad", "phenotype", {}, {
        "CD8 T": (["CD8+"], ["CD8 T", "CD8 Tex", "CD8 Tpex"]), "Treg": (["FoxP3+"], ["Treg"]),
        "macrophage": (["CD68+"], ["Monocyte/Macrophage", "TAM M1-like", "TAM M2-like"]),
        "tumour": (["CK+"], ["Malignant/Epithelial"])}),
    "scimap": ("scimap_lymphoma_cycif/scimap_example_data.h5ad", "phenotype",
               {"markers": {"tumor": "CD30"}, "gates": 0.5}, {
        "tumour": (["Tumor CD45- CD30+", "Tumor CD30+", "Tumor CD30+ KI67+"], ["Malignant/Epithelial"]),
        "CD8 T": (["CD8 T cells", "PD1+ T cells"], ["CD8 T", "CD8 Tex", "CD8 Tpex"]),
        "Treg": (["Regulatory T cells", "Aberrant T cells CD45- CD3+ FOXP3+"], ["Treg"])}),
    "schurch": ("schurch2020_crc_codex/schurch2020_crc_codex_spot9A_2434cells.h5ad", "ClusterName", {}, {
        "CD8 T": (["CD8+ T cells"], ["CD8 T", "CD8 Tex", "CD8 Tpex"]),
        "CD4 T": (["CD4+ T cells CD45RO+", "Tregs"], ["CD4 T", "CD4 naive/memory", "CD4 helper", "Treg"]),
        "Treg": (["Tregs"], ["Treg"]),
        "macrophage": (["CD68+CD163+ macrophages", "CD68+ macrophages", "CD11b+CD68+ macrophages"],
                       ["Monocyte/Macrophage", "TAM M1-like", "TAM M2-like"]),
        "granulocyte": (["granulocytes"], ["Neutrophil", "PMN-MDSC-like"]),
        "plasma": (["plasma cells"], ["Plasma"]),
        "vessel": (["vasculature", "lymphatics"], ["Endothelial"]),
        "smooth muscle/stroma": (["smooth muscle", "stroma"], ["Fibroblast", "Pericyte", "myCAF", "iCAF", "apCAF"]),
        "tumour": (["tumor cells"], ["Malignant/Epithelial"])}),
}


def protein_baseline(a: ad.AnnData, markers: dict | None = None, cofactor: float = 5.0) -> tuple[pd.Series, pd.Series]:
    """What a user writes in a few lines: arcsinh(x / 5) per channel, z-score, and per cell the label whose defining
    channel (the first marker group of annotate's rule, same channels) is highest. Lineage and state as annotate
    writes them (``"CD4 T|Treg"`` -> lineage CD4 T, state Treg)."""
    from tmetoolkit._core.annotation import protein as prot

    channels = prot.match_markers(a.var_names, markers)
    X = np.arcsinh(np.asarray(a.X, dtype=np.float64) / cofactor)
    Z = pd.DataFrame((X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0), index=a.obs_names,
                     columns=list(map(str, a.var_names)))
    S = {lab: Z[[channels[m] for m in groups[0] if m in channels]].max(axis=1)
         for lab, groups in prot.LINEAGE_RULES.items() if any(m in channels for m in groups[0])}
    best = pd.DataFrame(S).idxmax(axis=1)
    lin = best.str.split("|").str[0]
    return lin, pd.Series(np.where(best == "CD4 T|Treg", "Treg", lin), index=a.obs_names)


def protein_ceiling(a: ad.AnnData, author: pd.Series, cofactor: float = 5.0, seed: int = 0) -> pd.Series:
    """Logistic regression on every channel (arcsinh(x / 5), scaled) trained on the file's own classes, 5-fold
    cross-validated: what the panel allows with labels. Classes with fewer than 5 cells are not predicted."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    X = np.arcsinh(np.asarray(a.X, dtype=np.float64) / cofactor)
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    y = author.astype(str).to_numpy()
    counts = pd.Series(y).value_counts()
    idx = np.flatnonzero(np.isin(y, counts[counts >= 5].index))
    pred = np.full(len(y), None, dtype=object)
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(idx, y[idx]):
        with threadpool_limits(1):  # multi-threaded BLAS on a small matrix is 100x slower on a shared machine
            m = LogisticRegression(max_iter=2000).fit(X[idx[tr]], y[idx[tr]])
        pred[idx[te]] = m.predict(X[idx[te]])
    return pd.Series(pred, index=a.obs_names)


def protein_rows() -> list[dict]:
    """Per class of the file: recall, precision and unassigned share of annotate's calls, beside the arcsinh + z +
    argmax baseline (``base_``) and the cross-validated logistic-regression ceiling (``ceil_``)."""
    rows = []
    for name, (file, col, kwargs, classes) in PROTEIN.items():
        a = read_shared(name, file)
        if a is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tmt.tl.annotate(a, **kwargs)
        st, truth = a.obs["tmt_state"].astype(str), a.obs[col].astype(str)
        lin = a.obs["tmt_lineage"].astype(str)
        b_lin, b_st = protein_baseline(a, kwargs.get("markers"))
        ceil = protein_ceiling(a, truth).astype(str)

        def rp(t, p):
            return float((t & p).sum() / max(t.sum(), 1)), float((t & p).sum() / max(p.sum(), 1))

        for cls, (file_labels, ours_labels) in classes.items():
            t = truth.isin(file_labels)
            r, p = rp(t, st.isin(ours_labels) | lin.isin(ours_labels))
            br, bp = rp(t, b_st.isin(ours_labels) | b_lin.isin(ours_labels))
            cr, cp = rp(t, ceil.isin(file_labels))
            rows.append({"set": name, "class": cls, "n": int(t.sum()), "recall": r, "precision": p,
                         "unassigned": float((lin[t] == "unassigned").mean()), "base_recall": br,
                         "base_precision": bp, "ceil_recall": cr, "ceil_precision": cp})
    return rows


def per_label(pred: pd.Series, truth: pd.Series) -> pd.DataFrame:
    """Precision, recall and F1 per author lineage (a cell whose truth allows two lineages counts for each)."""
    keep = truth.notna()
    pred, truth = pred[keep].astype(str), truth[keep].astype(str)
    labels = sorted({x for t in truth for x in t.split(";")})
    rows = []
    for lab in labels:
        t = truth.map(lambda x, lab=lab: lab in x.split(";"))
        p = pred == lab
        tp = float((t & p).sum())
        prec, rec = tp / max(float(p.sum()), 1.0), tp / max(float(t.sum()), 1.0)
        rows.append({"label": lab, "n": int(t.sum()), "precision": prec, "recall": rec,
                     "f1": 2 * prec * rec / max(prec + rec, 1e-12),
                     "unassigned": float((pred[t] == "unassigned").mean())})
    return pd.DataFrame(rows)


# the lineages each marker group identifies (for the recall column of --lost-groups)
GROUP_LINEAGES = {"t_core": ("CD4 T", "CD8 T"), "cd8": ("CD8 T",), "cd4": ("CD4 T",), "nk": ("NK",), "b": ("B",),
                  "plasma": ("Plasma",), "macrophage": (MM,), "monocyte": (MM,), "neutrophil": ("Neutrophil",),
                  "mast": ("Mast",), "fibroblast": ("Fibroblast",), "pericyte": ("Pericyte",),
                  "endothelial": ("Endothelial",), "epithelial": ("Malignant/Epithelial",),
                  "immune": ("CD4 T", "CD8 T", "T", "NK", "B", "Plasma", MM, "Neutrophil", "Mast", "DC")}


def _recall(call: pd.Series, truth: np.ndarray, cells: np.ndarray) -> float:
    return float(np.mean([c in t.split(";") for c, t in zip(call.to_numpy()[cells], truth[cells], strict=True)]))


def lost_group_rows(sets: list[LabelledSet]) -> list[dict]:
    """Per set and marker group: lineage accuracy and the group's lineages' recall, whole panel -> group removed."""
    import yaml

    from tmetoolkit._core.annotation.markers import _marker_file

    groups = yaml.safe_load(_marker_file().read_text())["groups"]
    rows = []
    for s in sets:
        full = ours(s.adata)["tmt_lineage"]
        truth = s.truth.astype(str).to_numpy()
        for group, lineages in GROUP_LINEAGES.items():
            genes = groups[group]
            own = np.array([any(lin in t.split(";") for lin in lineages) for t in truth])
            if own.sum() < 5 or not s.adata.var_names.isin(genes).any():
                continue
            lost = ours(s.adata[:, ~s.adata.var_names.isin(genes)].copy())["tmt_lineage"]
            rows.append({"set": s.name, "group removed": group, "n_genes": int(s.adata.var_names.isin(genes).sum()),
                         "accuracy": lineage_accuracy(full, s.truth), "accuracy_lost": lineage_accuracy(lost, s.truth),
                         "recall": _recall(full, truth, own), "recall_lost": _recall(lost, truth, own)})
    return rows


# the gene panels of the shared imaging-based sets: 10x Xenium's breast panel and Chen's MERFISH immuno-oncology one
PANELS = {"xenium breast": "xenium_breast_idc_regions/xenium_idc_7353cells_regions.h5ad", "chen merfish": FILES["chen"]}
# the human sets with more genes than a targeted panel: Zilionis' whole transcriptome and the 7,943 genes of the
# Puram file (the mouse file is left out: these are human panels)
PANEL_SETS = ("puram", "zilionis_hs")


def panel_rows(sets: list[LabelledSet]) -> list[dict]:
    """The human sets cut to the genes of a real targeted panel: lineage accuracy and unassigned share beside the
    baseline and the ceiling on the same genes, the lineages annotate reports not assessable there and what their
    cells are called (printed)."""
    rows = []
    for panel, file in PANELS.items():
        path = SHARED / file
        if not path.is_file():
            print(f"skipped panel {panel}: {path} not found")
            continue
        backed = ad.read_h5ad(path, backed="r")
        genes = set(backed.var_names)
        backed.file.close()
        for s in sets:
            if s.name not in PANEL_SETS:
                continue
            a = s.adata[:, s.adata.var_names.isin(genes)].copy()
            b = a.copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tmt.tl.annotate(b)
            rules = b.uns["tmt_annotate"]["rules"]
            lineage_rules = rules[rules["level"] == "lineage"]
            assessable = lineage_rules.groupby(lineage_rules["label"].str.split("|").str[0])["assessable"].any()
            lost = assessable.index[~assessable]
            keep = s.truth.notna()
            rows.append({"set": s.name, "panel": panel, "n_genes": a.n_vars,
                         "ours": lineage_accuracy(b.obs["tmt_lineage"].astype(str), s.truth),
                         "unassigned": float((b.obs["tmt_lineage"][keep] == "unassigned").mean()),
                         "baseline": lineage_accuracy(baseline(a), s.truth),
                         "ceiling": ceiling_accuracy(ceiling(a, s.author), s.author, s.truth),
                         "not assessable": ", ".join(sorted(set(lost) & set(s.truth.dropna().str.split(";").sum())))})
            called = b.obs["tmt_lineage"].astype(str)
            for lin in sorted(set(lost) & set(s.truth.dropna())):
                print(f"{s.name} on the {panel} panel: its {lin} cells are called "
                      + ", ".join(f"{k} {v}" for k, v in called[s.truth == lin].value_counts().items()))
    return rows


def linear_profile(a: ad.AnnData) -> np.ndarray:
    """Each cell's expression as shares of its total (:func:`linear_values`)."""
    X = linear_values(a).astype(np.float64)
    total = X.sum(axis=1, keepdims=True)
    return np.divide(X, total, out=np.zeros_like(X), where=total > 0)


FORMATS = {"ln(CP10k + 1)": lambda p: np.log1p(p * 1e4), "log2(CP10k + 1)": lambda p: np.log2(p * 1e4 + 1),
           "log2(CPM + 1)": lambda p: np.log2(p * 1e6 + 1), "log10(CPM + 1)": lambda p: np.log10(p * 1e6 + 1),
           "log2(CPM + 0.1)": lambda p: np.log2(p * 1e6 + 0.1), "CPM": lambda p: p * 1e6}


def format_rows(sets: list[LabelledSet]) -> tuple[list[dict], list[dict]]:
    """Lineage accuracy (one row per set) and the state tasks' scores (one row per set and task) of each set's
    cells in the forms expression files are shared in."""
    rows, state_rows = [], []
    for s in sets:
        profile = linear_profile(s.adata)
        calls = {"as shared": ours(s.adata)}
        for name, transform in FORMATS.items():
            b = s.adata.copy()
            b.X = sp.csr_matrix(transform(profile).astype(np.float32))
            calls[name] = ours(b)
        rows.append({"set": s.name, **{k: lineage_accuracy(c["tmt_lineage"], s.truth) for k, c in calls.items()}})
        for task, (truth, _) in s.states.items():
            state_rows.append({"set": s.name, "task": task, **{k: task_score(state_prediction(c, task), truth, task)
                                                               for k, c in calls.items()}})
    return rows, state_rows


# a type annotated alone needs this many cells of it; the T cells (CD4 and CD8 together) are taken alone as well
MIN_ALONE = 20


def alone_rows(sets: list[LabelledSet]) -> list[dict]:
    """Each author type with at least ``MIN_ALONE`` cells, and each set's T cells, annotated alone (as after
    sorting): the share called as the authors did (their cells among the whole file beside), the unassigned share and
    how the run decided (``lineage_method``)."""
    rows = []
    for s in sets:
        truth = s.truth.astype(str)
        whole = ours(s.adata)["tmt_lineage"].astype(str)
        kinds = [(t, [t]) for t, n in truth.value_counts().items() if n >= MIN_ALONE and t not in ("nan", "-")]
        kinds.append(("T cells", ["CD4 T", "CD8 T", "CD4 T;CD8 T"]))
        seen = []
        for name, labels in kinds:
            cells = truth.isin(labels).to_numpy()
            if cells.sum() < MIN_ALONE or any((cells == other).all() for other in seen):
                continue
            seen.append(cells)
            b = s.adata[cells].copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tmt.tl.annotate(b)
            alone = b.obs["tmt_lineage"].astype(str)
            rows.append({"set": s.name, "cells": name, "n": int(cells.sum()),
                         "within whole": lineage_accuracy(whole[cells], truth[cells]),
                         "alone": lineage_accuracy(alone, truth[cells]),
                         "unassigned": float((alone == "unassigned").mean()),
                         "method": b.uns["tmt_annotate"]["params"]["lineage_method"],
                         "calls alone": ", ".join(f"{k} {v}" for k, v in alone.value_counts().head(4).items())})
    return rows


# the few cells of every other type drawn beside a set's T cells (a sorted file with what the sort let through)
FEW_OTHERS = 8


def few_others_rows(sets: list[LabelledSet], seed: int = 0) -> list[dict]:
    """Each set's T cells with ``FEW_OTHERS`` random cells of every other author type, as shared and at 1,000 counts
    a cell: lineage accuracy of the T cells and of the others, and the share of the others called T cells."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in sets:
        truth = s.truth.astype(str)
        major = truth.isin(["CD4 T", "CD8 T", "CD4 T;CD8 T"]).to_numpy()
        keep = major.copy()
        for lab in sorted(set(truth[~major]) - {"nan", "-"}):
            cells = np.flatnonzero((truth == lab).to_numpy())
            keep[rng.choice(cells, min(FEW_OTHERS, cells.size), replace=False)] = True
        for variant, a in (("as shared", s.adata), ("depth1000", downsample(s.adata))):
            b = a[keep].copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tmt.tl.annotate(b)
            call, tr, t = b.obs["tmt_lineage"].astype(str), truth[keep], major[keep]
            rows.append({"set": s.name, "variant": variant, "T cells": int(t.sum()), "others": int((~t).sum()),
                         "T accuracy": lineage_accuracy(call[t], tr[t]),
                         "others accuracy": lineage_accuracy(call[~t], tr[~t]),
                         "others called T": float(call[~t].isin(["CD4 T", "CD8 T"]).mean()),
                         "method": b.uns["tmt_annotate"]["params"]["lineage_method"]})
    return rows


# how far a call can be trusted: tmt_confidence in these bins, and runs with this many random cells left out
CONFIDENCE_BINS = (0.0, 0.5, 0.8, 0.95, 1.0)
N_DROPPED, N_REPEATS = 5, 5


def stability_rows(sets: list[LabelledSet], seed: int = 100) -> tuple[list[dict], list[dict]]:
    """Per set, lineage accuracy when ``N_DROPPED`` random cells are left out (as when a user removes a few doublets
    and runs again), ``N_REPEATS`` times, beside the whole file's; and per bin of ``tmt_confidence`` (of the whole
    file's run), how many cells it holds, the share of its assigned cells called right (calibration) and the share
    of its cells whose lineage stays the same in the runs without those few cells."""
    rows, bin_rows = [], []
    edges = np.array(CONFIDENCE_BINS[:-1])
    for s in sets:
        whole = ours(s.adata)
        ref, conf = whole["tmt_lineage"].astype(str), whole["tmt_confidence"].to_numpy(dtype=float)
        which = np.searchsorted(edges, conf, side="right") - 1
        kept, accs = np.zeros(len(ref)), []
        counted = np.zeros(len(ref))
        for r in range(N_REPEATS):
            rng = np.random.default_rng(seed + r)
            keep = np.setdiff1d(np.arange(len(ref)), rng.choice(len(ref), N_DROPPED, replace=False))
            call = ours(s.adata[keep])["tmt_lineage"].astype(str)
            accs.append(lineage_accuracy(call, s.truth.iloc[keep]))
            kept[keep] += (call.to_numpy() == ref.to_numpy()[keep])
            counted[keep] += 1
        rows.append({"set": s.name, "n": len(ref), "whole": lineage_accuracy(ref, s.truth),
                     "without a few: mean": float(np.mean(accs)), "sd": float(np.std(accs, ddof=1)),
                     "min": float(np.min(accs)), "max": float(np.max(accs)),
                     "calls kept": float(kept.sum() / counted.sum())})
        truth = s.truth.astype(str)
        right = np.array([c in t.split(";") for c, t in zip(ref, truth, strict=True)])
        judged = s.truth.notna().to_numpy() & (ref != "unassigned").to_numpy()
        for b, lo in enumerate(edges):
            cells = which == b
            hi = CONFIDENCE_BINS[b + 1]
            bin_rows.append({"set": s.name, "confidence": f"{lo:.2f}-{hi:.2f}", "n": int(cells.sum()),
                             "share of cells": float(cells.mean()),
                             "right": float(right[cells & judged].mean()) if (cells & judged).any() else np.nan,
                             "kept without a few": float(kept[cells].sum() / counted[cells].sum())
                             if counted[cells].sum() else np.nan})
    return rows, bin_rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="no stressed variants")
    ap.add_argument("--lost-groups", action="store_true", help="only the lost-marker-group stress")
    ap.add_argument("--panels", action="store_true", help="only the targeted-panel stress")
    ap.add_argument("--formats", action="store_true", help="only the stress of value formats (log bases, CPM)")
    ap.add_argument("--alone", action="store_true", help="only the stress of cell types annotated alone (sorted)")
    ap.add_argument("--external", action="store_true",
                    help="the held-out sets read from PyPI wheels (external_sets.py) instead of ../shared/data's")
    ap.add_argument("--stability", action="store_true",
                    help="only how the calls hold with a few cells left out, and accuracy per confidence bin")
    args = ap.parse_args()
    sets = load_external_sets() if args.external else load_sets()
    pd.set_option("display.width", 200)
    if args.alone:
        print("Lineage accuracy of each type annotated alone, as after sorting, beside the same cells among all")
        print(pd.DataFrame(alone_rows(sets)).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(f"\nT cells with {FEW_OTHERS} cells of every other type (what a T-cell sort lets through)")
        print(pd.DataFrame(few_others_rows(sets)).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        return
    if args.stability:
        rows, bin_rows = stability_rows(sets)
        print(f"Lineage accuracy of the whole file and, {N_REPEATS} times, without {N_DROPPED} random cells; the share "
              "of calls kept")
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print("\nPer bin of tmt_confidence: share of the assigned cells called right, and of the cells whose lineage "
              f"stays when {N_DROPPED} others are left out")
        print(pd.DataFrame(bin_rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        return
    if args.lost_groups:
        print("Lineage accuracy and the group's lineages' recall, whole panel -> the group's genes removed")
        print(pd.DataFrame(lost_group_rows(sets)).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        return
    if args.panels:
        print("Lineage accuracy on the genes of a targeted panel (the set's lineages the panel cannot assess named)")
        print(pd.DataFrame(panel_rows(sets)).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        return
    if args.formats:
        rows, state_rows = format_rows(sets)
        print("Lineage accuracy of the same cells as shared and in other value formats (linear profile recovered)")
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print("\nThe state tasks of the same cells in each format")
        print(pd.DataFrame(state_rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        return
    rows, state_rows, coherence_rows = [], [], []
    for s in sets:
        variants = {"as shared": s.adata}
        if not args.quick and s.adata.n_vars > 2000:
            variants["hvg2000"] = hvg_only(s.adata)
        depth = np.median(np.asarray(s.adata.X.sum(axis=1)).ravel())
        if not args.quick and (tmt.pp.check_input(s.adata).state != "counts" or depth > 1000):
            variants["depth1000"] = downsample(s.adata)  # (Chen's MERFISH cells hold a median of 64 already)
        if s.name == "chen":  # an immune panel with KRT8 alone of the epithelial markers: the documented remedy
            variants["tumor_signature=MPAS"] = s.adata
        variants["groupby=leiden"] = with_leiden(s.adata)  # the clusters users pass (same cells and genes)
        calls_by: dict[str, pd.DataFrame] = {}
        references: dict[str, tuple[pd.Series, pd.Series]] = {}
        for vname, a in variants.items():
            calls = ours(a, tumor_signature="MPAS") if vname == "tumor_signature=MPAS" else \
                ours(a, groupby="leiden") if vname == "groupby=leiden" else ours(a)
            if vname in ("as shared", *STRESSES):  # the other variants hold the whole panel's matrix
                references[vname] = (baseline(a), ceiling(a, s.author))
            base, ceil = references.get(vname, references["as shared"])
            keep = s.truth.notna()
            outside = s.truth.isna() & s.author.astype(str).isin(OUTSIDE.get(s.name, ()))
            rows.append({"set": s.name, "variant": vname, "n": int(keep.sum()),
                         "ours": lineage_accuracy(calls["tmt_lineage"], s.truth),
                         "unassigned": float((calls["tmt_lineage"][keep] == "unassigned").mean()),
                         "n_outside": int(outside.sum()),
                         "outside_unassigned": float((calls["tmt_lineage"][outside] == "unassigned").mean())
                         if outside.any() else np.nan,
                         "baseline": lineage_accuracy(base, s.truth),
                         "ceiling": ceiling_accuracy(ceil, s.author, s.truth),
                         "state_kept": state_kept(calls_by["as shared"], calls)
                         if vname in STRESSES else np.nan})
            calls_by[vname] = calls
        a, calls = s.adata, calls_by["as shared"]
        coherence_rows += state_coherence(lognorm(a), calls, s.name)
        for task, (truth, _) in s.states.items():
            pred = state_prediction(calls, task)
            bpred = baseline_state(a, truth, task)
            cpred = ceiling_state(a, truth)
            gpred = state_prediction(calls_by["groupby=leiden"], task)
            m = {k: task_score(p, truth, task) for k, p in (("ours", pred), ("baseline", bpred), ("ceiling", cpred),
                                                            ("ours_groupby_leiden", gpred))}
            for vname in STRESSES:  # the same task on the stressed variant, beside the ceiling on the same genes
                if vname in calls_by:
                    m[f"ours_{vname}"] = task_score(state_prediction(calls_by[vname], task), truth, task)
                    m[f"ceiling_{vname}"] = task_score(ceiling_state(variants[vname], truth), truth, task)
            # the metric reads only the task's cells: calls of its classes on other cells are shown beside it
            neg = negative_class(task)
            for k, p in (("ours", pred), ("baseline", bpred)):
                called = (p.reindex(truth.index) != neg).to_numpy()
                m[f"{k}_off_task"] = float((called & truth.isna().to_numpy()).sum() / max(called.sum(), 1))
            state_rows.append({"set": s.name, "task": task, "n": int(truth.notna().sum()), **m})
        conf = pd.crosstab(s.truth.fillna("-"), calls["tmt_lineage"])
        print(f"\n{s.name}: author lineage (rows) x tmt_lineage (columns)\n{conf.to_string()}")
        print(f"\n{s.name}: per label\n"
              + per_label(calls["tmt_lineage"], s.truth).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("\nLineage accuracy per cell (unassigned counts as wrong)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("\nStates within their lineage")
    print(pd.DataFrame(state_rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("\nStates no set labels: detection of each state's canonical genes in the cells called each state")
    print(pd.DataFrame(coherence_rows).to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="-"))
    if not args.external:
        print("\nProtein panels: recall and precision of the files' classes")
        print(pd.DataFrame(protein_rows()).to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()

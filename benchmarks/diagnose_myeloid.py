"""Why ``tmt.tl.annotate`` loses the DCs and monocytes of Chen 2024's MERFISH sample (monocyte vs macrophage vs DC
task of ``validate_annotation.py``): the figures behind the paragraph on that task in ``docs/validation.md``.

Prints, for the authors' DC, monocyte (FCN1+LYZ+), macrophage, epithelial and other cells:

- how often each DC, monocyte and macrophage marker on the panel is detected (any count);
- how many cells carry DC evidence of a seed (``lineage.MIN_EVIDENCE``) and how many are DC seeds, from the cells'
  own evidence and from the evidence pooled over expression neighbours, with the DC labels' negative groups as they
  are, without the macrophage group, and without any;
- which author classes the DC cells' expression neighbours belong to.

Usage::

    python benchmarks/diagnose_myeloid.py
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from tmetoolkit._core.annotation import lineage as lc
from tmetoolkit._core.annotation.identity import read_expression, rna_identity
from tmetoolkit._core.annotation.markers import lineage_markers

CHEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "chen2024_nsclc_merfish" / \
    "chen2024_nsclc_merfish_patient002_3177cells.h5ad"
GENES = ("LAMP3", "CCR7", "CCL19", "CCL17", "CCL22", "FSCN1", "BIRC3", "CD1C", "CLEC9A", "XCR1", "FLT3", "FCN1", "LYZ",
         "CD14", "S100A8", "S100A9", "VCAN", "CSF1R", "C1QA", "C1QC", "CD163", "MRC1", "KRT8")
MONOCYTE = "FCN1+LYZ+ Macrophage"


def classes(l2: pd.Series) -> dict[str, np.ndarray]:
    """The authors' cells of each class the diagnosis reads (``type_lvl2``)."""
    dc = l2.str.contains("DC").to_numpy()
    mono = (l2 == MONOCYTE).to_numpy()
    mac = l2.str.contains("Macrophage").to_numpy() & ~mono
    epi = (l2 == "Epithelial").to_numpy()
    return {f"DC ({dc.sum()})": dc, f"monocyte ({mono.sum()})": mono, f"macrophage ({mac.sum()})": mac,
            f"epithelial ({epi.sum()})": epi, f"other ({(~(dc | mono | mac | epi)).sum()})": ~(dc | mono | mac | epi)}


def detection(a: ad.AnnData, cls: dict[str, np.ndarray]) -> pd.DataFrame:
    """Share of each class's cells with at least one count of each gene in ``GENES`` the panel holds."""
    genes = [g for g in GENES if g in a.var_names]
    X = a[:, genes].X
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    return pd.DataFrame({c: (X[m] > 0).mean(axis=0) for c, m in cls.items()}, index=genes)


def without_negatives(table, groups) -> object:
    """The marker table with the DC labels' negative groups in ``groups`` left out."""
    labs = tuple(dataclasses.replace(lab, negative=tuple(g for g in lab.negative if set(g) not in groups),
                                     negative_reserve=()) if lab.lineage == "DC" else lab for lab in table.labels)
    return dataclasses.replace(table, labels=labs)


def dc_evidence(ident, table, cls: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per class, the cells with DC evidence of a seed and the DC seeds, own and pooled, under three negatives."""
    mac = set(next(lab for lab in table.labels if lab.label.startswith("Monocyte/Macrophage|macrophage")).positive[0])
    every = {frozenset(grp) for lab in table.labels if lab.lineage == "DC" for grp in lab.negative}
    rows = []
    for name, drop in (("as is", []), ("no macrophage negative", [mac]), ("no negatives", list(every))):
        E, _ = lc.label_evidence(ident.ranks, ident.gene_col, without_negatives(table, drop))
        for read, ev in (("own", E), ("pooled", lc.pool(E, ident.weights))):
            dc = lc.by_lineage(ev)["DC"].to_numpy() >= lc.MIN_EVIDENCE
            seed = np.array([s.split("|")[0] == "DC" for s in lc.select_seeds(ev)])
            rows += [{"negatives": name, "evidence": read, "class": c, "DC evidence >= MIN_EVIDENCE": int(dc[m].sum()),
                      "DC seeds": int(seed[m].sum())} for c, m in cls.items()]
    return pd.DataFrame(rows).pivot_table(index=["negatives", "evidence"], columns="class",
                                          values=["DC evidence >= MIN_EVIDENCE", "DC seeds"], aggfunc="sum", sort=False)


def neighbours(ident, author: np.ndarray, cells: np.ndarray) -> pd.Series:
    """The author classes of ``cells``' expression neighbours (themselves left out), most frequent first."""
    W = ident.weights
    out = [author[j] for i in np.flatnonzero(cells) for j in W[i].indices if j != i]
    return pd.Series(out).value_counts()


def main() -> None:
    if not CHEN.is_file():
        print(f"skipped: {CHEN} not found")
        return
    a = ad.read_h5ad(CHEN)
    a.obs_names_make_unique()
    l2 = a.obs["type_lvl2"].astype(str)
    cls = classes(l2)
    table = lineage_markers()
    expr = read_expression(a.X, a.var_names, species="human", state="counts", table=table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # that DC, mast and NK cells are too few to learn: the table says so
        ident = rna_identity(expr, a.obs_names, variable=None, table=table, connectivities=None, n_neighbors=15,
                             seed=0, min_confidence=0.5)
    pd.set_option("display.width", 200)
    print("Detection (share of cells with a count)\n", detection(a, cls).round(2).to_string(), sep="")
    print("\nSeeds per label:", ident.result.n_seeds)
    print("\nDC evidence and DC seeds\n", dc_evidence(ident, table, cls).to_string(), sep="")
    dc = next(m for c, m in cls.items() if c.startswith("DC"))
    near = neighbours(ident, l2.to_numpy(), dc)
    share = near[near.index.str.contains("DC")].sum() / near.sum()
    print(f"\nExpression neighbours of the DC cells: {share:.0%} are DCs; the ten most frequent classes\n",
          near.head(10).to_string(), sep="")
    print("\nThe DC cells' lineage calls:", pd.Series(ident.result.lineage[dc]).value_counts().to_dict())


if __name__ == "__main__":
    main()

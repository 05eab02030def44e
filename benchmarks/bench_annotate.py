"""Cell-state calls of ``tmt.tl.annotate`` against what a user has today: the same signatures scored one by one
with ``sc.tl.score_genes`` and an argmax, on the same data, printed side by side.

Data: ``simulate()`` (lineages and the five state populations) and, when ``../shared/data`` is present, Puram 2017
(Smart-seq2 lineages) and Chen 2024 (MERFISH lineages and Tregs). Usage::

    python benchmarks/bench_annotate.py
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

import tmetoolkit as tmt
from tmetoolkit.tl import _annotate_rules as rules

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


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
    for lin, table in rules.STATE_RULES.items():
        m = lineage == lin
        if m.any():
            state[m] = best(table)[m]
    return lineage, state


def accuracy(pred: pd.Series, truth: pd.Series) -> float:
    keep = truth.notna()
    return float((pred[keep].astype(str) == truth[keep].astype(str)).mean())


def precision(pred: pd.Series, truth: pd.Series, abstain: set) -> float:
    """Accuracy among the cells that received a call (abstentions left out)."""
    keep = truth.notna() & ~pred.astype(str).isin(abstain)
    return float((pred[keep].astype(str) == truth[keep].astype(str)).mean())


def main() -> None:
    warnings.simplefilter("ignore")
    rows = []
    a = tmt.datasets.simulate(n_samples=3, n_cells=3000, seed=3)
    lin_b, st_b = argmax_baseline(a)
    tmt.tl.annotate(a)
    o = a.obs
    rows.append(("simulate", "lineage", accuracy(lin_b, o["true_lineage"]), accuracy(o["tmt_lineage"], o["true_lineage"]),
                 precision(o["tmt_lineage"], o["true_lineage"], {"unassigned"}),
                 float((o["tmt_lineage"] == "unassigned").mean())))
    for lin, states in tmt._keys.STATES.items():
        m = o["true_lineage"] == lin
        abstain = {"unassigned"} | ({lin} if lin not in states else set())
        rows.append(("simulate", f"state within {lin}", accuracy(st_b[m], o.loc[m, "true_state"]),
                     accuracy(o.loc[m, "tmt_state"], o.loc[m, "true_state"]),
                     precision(o.loc[m, "tmt_state"], o.loc[m, "true_state"], abstain),
                     float(o.loc[m, "tmt_state"].astype(str).isin(abstain).mean())))
    puram = SHARED / "puram2017_hnscc_chetah/puram2017_hnscc_ref180.h5ad"
    if puram.is_file():
        p = ad.read_h5ad(puram)
        m = {"B cell": "B", "CD4 T cell": "CD4 T", "reg. T cell": "CD4 T", "CD8 T cell": "CD8 T", "Dendritic": "DC",
             "Endothelial": "Endothelial", "Fibroblast": "Fibroblast", "Macrophage": "Monocyte/Macrophage", "Mast": "Mast"}
        truth = p.obs["celltypes"].astype(str).map(m)
        lin_b, st_b = argmax_baseline(p)
        tmt.tl.annotate(p)
        rows.append(("Puram 2017", "lineage", accuracy(lin_b, truth), accuracy(p.obs["tmt_lineage"], truth),
                     precision(p.obs["tmt_lineage"], truth, {"unassigned"}),
                     float((p.obs["tmt_lineage"] == "unassigned").mean())))
        tr = p.obs["celltypes"] == "reg. T cell"
        rows.append(("Puram 2017", "Treg recall", float((st_b[tr] == "Treg").mean()),
                     float((p.obs.loc[tr, "tmt_state"] == "Treg").mean()), np.nan, np.nan))
    chen = SHARED / "chen2024_nsclc_merfish/chen2024_nsclc_merfish_patient002_3177cells.h5ad"
    if chen.is_file():
        c = ad.read_h5ad(chen)
        m = {"Fibroblast": "Fibroblast", "Mast": "Mast", "Myeloid": "Monocyte/Macrophage", "Plasma": "Plasma",
             "Vascular": "Endothelial"}
        truth = c.obs["type_lvl1"].astype(str).map(m)
        lin_b, st_b = argmax_baseline(c)
        tmt.tl.annotate(c)
        rows.append(("Chen 2024", "lineage (non-lymphoid, non-epithelial)", accuracy(lin_b, truth),
                     accuracy(c.obs["tmt_lineage"], truth), precision(c.obs["tmt_lineage"], truth, {"unassigned"}),
                     float((c.obs["tmt_lineage"] == "unassigned").mean())))
        t2 = c.obs["type_lvl2"].astype(str)
        for name, pred in (("score_genes+argmax", st_b), ("tmetoolkit", c.obs["tmt_state"].astype(str))):
            called, true = pred == "Treg", t2 == "Treg"
            print(f"Chen 2024 Treg, {name}: precision {true[called].mean():.2f}, recall {called[true].mean():.2f}")
    tab = pd.DataFrame(rows, columns=["data", "what", "score_genes + argmax", "tmt.tl.annotate",
                                      "tmt among called", "tmt abstained"])
    print(tab.round(3).to_string(index=False))


if __name__ == "__main__":
    main()

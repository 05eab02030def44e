"""Accuracy, speed and memory of ``tmt.tl.compartments`` + ``tmt.tl.immune_phenotype``. Prints every figure.

1. Realistic simulated fields (``tmt.datasets.simulate_fields``: tumour filling most of the field, septa, immune
   pockets, stroma 0-60%, CD8 T 10-2,000/mm^2), in micrometres and in CODEX pixels: calls per stroma share,
   compartment agreement, and whether pixels give the same numbers.
2. Real images in ../shared/data (skipped when absent): phenoptr's inForm tissue categories and Xenium's
   pathologist regions as truth for the compartments; Chen MERFISH and Schürch CODEX for plausibility.
3. 1,000,000 cells in 50 samples (cell types given): time of compartments + immune_phenotype.

Usage::

    python benchmarks/bench_spatial.py              # all
    python benchmarks/bench_spatial.py --samples 10 # smaller timing cohort
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

import tmetoolkit as tmt

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TUMOUR = ["Malignant/Epithelial"]


def inside(a: AnnData) -> pd.Series:
    return (a.obs["tmt_border_distance"] < 0) | (a.obs["tmt_compartment"] == "tumor")


def realistic_fields(n_per_setting: int = 10) -> None:
    print("== realistic simulated fields (800 um, cells 10 um apart) ==")
    res = {}
    for unit, px in (("micrometres", None), ("pixels of 0.37744 um", 0.37744)):
        f = tmt.datasets.simulate_fields(n_per_setting=n_per_setting, pixel_size=px, seed=1)
        tmt.tl.compartments(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR, pixel_size=px)
        tmt.tl.immune_phenotype(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR)
        t = f.uns["tmt_immune_phenotype"]["table"]
        truth = f.uns["tmt_simulation"]["samples"].set_index("sample").loc[t.index]
        called = t["phenotype"].astype(str)
        low = truth["stroma_fraction"] < 0.1
        flagged = low & (truth["phenotype"] == "excluded") & (called == "not assessable")
        ok = (called == truth["phenotype"]) | flagged
        agree = (inside(f) == (f.obs["true_compartment"] == "tumor")).mean()
        print(f"-- coordinates in {unit}: {len(t)} fields, {f.n_obs} cells; compartments agree with the planted "
              f"parenchyma/stroma for {agree:.3f} of cells")
        print(pd.DataFrame({"fields": ok.groupby(truth["stroma_fraction"]).size(),
                            "called as planted (or flagged)": ok.groupby(truth["stroma_fraction"]).mean().round(3),
                            "low-stroma excluded called excluded": (low & (truth["phenotype"] == "excluded")
                                                                    & (called == "excluded")).groupby(
                                truth["stroma_fraction"]).sum()}).to_string())
        print(pd.crosstab(truth["phenotype"], called).to_string())
        res[unit] = t
    a, b = res.values()
    same = (a["phenotype"] == b["phenotype"]).all()
    dev = max(float(np.nanmax(np.abs(a[c] / b[c] - 1))) for c in ("effector_per_mm2", "area_mm2", "area_tumor_mm2",
                                                                    "infiltration_vs_null"))
    print(f"pixels vs micrometres: calls identical {same}; largest relative difference in densities, areas and "
          f"measures {dev:.1e}")


def real_images() -> None:
    print("\n== real images (../shared/data) ==")
    if not SHARED.is_dir():
        print("(skipped: ../shared/data absent)")
        return
    a = tmt.datasets.load("phenoptr", path=SHARED)
    tmt.tl.compartments(a, sample_key="sample", cell_type_key="phenotype", tumor_labels=["CK+"])
    truth = a.obs["tissue_category"].astype(str) == "Tumor"
    print(f"phenoptr inForm Tumor/Stroma: compartments agree for {(inside(a) == truth).mean():.3f} of "
          f"{a.n_obs} cells (target 0.90)")
    x = tmt.datasets.load("xenium_idc", path=SHARED)
    tmt.tl.annotate(x)
    tmt.tl.compartments(x, sample_key=None)
    keep = x.obs["region"].isin(["Invasive Tumor", "Stroma"])
    xa = (inside(x)[keep] == (x.obs["region"][keep] == "Invasive Tumor")).mean()
    print(f"Xenium pathologist Invasive Tumor vs Stroma: agree for {xa:.3f} of {int(keep.sum())} cells (target 0.85)")
    for name, kw, eff in (
        ("chen2024", {"cell_type_key": "type_lvl2", "tumor_labels": ["Epithelial"]}, None),
        ("schurch", {"cell_type_key": "ClusterName", "tumor_labels": ["tumor cells"], "pixel_size": 0.37744},
         ["CD8+ T cells"]),
    ):
        if name == "schurch":
            d = anndata.read_h5ad(SHARED / "schurch2020_crc_codex" / "schurch2020_crc_codex_spot9A_2434cells.h5ad")
        else:
            d = tmt.datasets.load(name, path=SHARED)
            eff = sorted(c for c in d.obs["type_lvl2"].astype(str).unique() if "CD8" in c)
        tmt.tl.compartments(d, sample_key=None, **kw)
        tmt.tl.immune_phenotype(d, effector_labels=eff, cell_type_key=kw["cell_type_key"],
                                tumor_labels=kw["tumor_labels"])
        c = d.uns["tmt_compartments"]["table"].iloc[0]
        t = d.uns["tmt_immune_phenotype"]["table"].iloc[0]
        print(f"{name}: median cell spacing {c['median_nn_distance_um']:.1f} um, tissue {c['area_mm2']:.3f} mm2, "
              f"stroma {c['stroma_area_fraction']:.2f}; {int(t['n_effector'])} CD8 T at "
              f"{t['effector_per_mm2']:.0f}/mm2; in tumour / chance {t['infiltration_vs_null']:.2f}, contact / "
              f"chance {t['contact_share_vs_null']:.2f}, mixing / chance {t['mixing_score_vs_null']:.2f} -> "
              f"{t['phenotype']} (confidence {t['confidence']:.2f}) {t['reason']}")


def cohort(n_samples: int, n_cells: int, seed: int = 0) -> AnnData:
    """Positions and cell types of ``n_samples`` simulated tumours (three templates, shifted and rotated)."""
    rng = np.random.default_rng(seed)
    templates = []
    for i, shape in enumerate(("nests", "solid", "scattered")):
        a = tmt.datasets.simulate(n_samples=3, n_cells=n_cells, tumor_shape=shape, n_background_genes=10, seed=seed + i)
        templates += [(a.obs[a.obs["sample"] == s], a.obsm["spatial"][(a.obs["sample"] == s).to_numpy()])
                      for s in a.obs["sample"].cat.categories]
    obs, xy = [], []
    for k in range(n_samples):
        o, c = templates[k % len(templates)]
        theta = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        xy.append(c @ rot.T)
        obs.append(pd.DataFrame({"sample": f"P{k:03d}", "cell_type": o["true_lineage"].astype(str).to_numpy(),
                                 "truth": o["true_phenotype"].astype(str).to_numpy()}))
    obs = pd.concat(obs, ignore_index=True)
    obs.index = obs.index.astype(str)
    adata = AnnData(X=sp.csr_matrix((len(obs), 1), dtype=np.float32), obs=obs)
    adata.obsm["spatial"] = np.vstack(xy)
    return adata


def timing(n_samples: int, n_cells: int) -> None:
    print(f"\n== speed: {n_samples} samples x {n_cells} cells ==")
    t0 = time.perf_counter()
    adata = cohort(n_samples, n_cells)
    print(f"cohort: {adata.n_obs} cells in {n_samples} samples (built in {time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    tmt.tl.compartments(adata, sample_key="sample", cell_type_key="cell_type")
    t_comp = time.perf_counter() - t0
    t0 = time.perf_counter()
    tmt.tl.immune_phenotype(adata, sample_key="sample", cell_type_key="cell_type")
    t_phen = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tab = adata.uns["tmt_immune_phenotype"]["table"]
    truth = adata.obs.groupby("sample", observed=True)["truth"].first()
    acc = (tab["phenotype"].astype(str) == truth.loc[tab.index]).mean()
    n_regions = len(adata.uns["tmt_immune_phenotype"]["regions"])
    print(f"compartments     {t_comp:7.1f} s")
    print(f"immune_phenotype {t_phen:7.1f} s  ({n_regions} regions)")
    print(f"total            {t_comp + t_phen:7.1f} s (target < 60 s); peak resident memory of the process "
          f"{peak_gb:.2f} GB (includes building the cohort)")
    print(f"samples called as planted: {acc:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--cells", type=int, default=20_000)
    p.add_argument("--fields", type=int, default=10, help="simulated fields per stroma share and phenotype")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    if args.fields:
        realistic_fields(args.fields)
    real_images()
    timing(args.samples, args.cells)


if __name__ == "__main__":
    main()

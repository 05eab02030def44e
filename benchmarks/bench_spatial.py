"""Speed and memory of ``tmt.tl.compartments`` + ``tmt.tl.immune_phenotype`` on a large cohort.

Builds 1,000,000 cells in 50 samples (20,000 cells each) from simulated tumours (positions and cell types only),
then times compartments and the spatial phenotype per sample and per 500-um tile, and reports peak memory and
accuracy against the planted phenotypes. Usage::

    python benchmarks/bench_spatial.py              # 50 samples x 20,000 cells
    python benchmarks/bench_spatial.py --samples 10
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

import tmetoolkit as tmt


def cohort(n_samples: int, n_cells: int, seed: int = 0) -> AnnData:
    """Positions and cell types of ``n_samples`` simulated tumours (three templates, shifted and rotated)."""
    rng = np.random.default_rng(seed)
    templates = []
    for i, shape in enumerate(("nests", "solid", "scattered")):
        a = tmt.datasets.simulate(n_samples=3, n_cells=n_cells, tumor_shape=shape, n_background_genes=50, seed=seed + i)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--cells", type=int, default=20_000)
    args = p.parse_args()
    t0 = time.perf_counter()
    adata = cohort(args.samples, args.cells)
    print(f"cohort: {adata.n_obs} cells in {args.samples} samples (built in {time.perf_counter() - t0:.0f} s)")
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
    print(f"total            {t_comp + t_phen:7.1f} s; peak resident memory of the process {peak_gb:.2f} GB "
          "(includes building the cohort)")
    print(f"samples called as planted: {acc:.3f}")


if __name__ == "__main__":
    main()

"""Speed and memory of ``tmt.get.markers`` against what a scanpy user does for the same table, in one run.

Simulated tumours (raw counts) are annotated once and written to disk. Each contender then runs in its own process
on the same file:

- ``tmt.get.markers(adata)``: per state, the deciding genes' mean log expression and detection in the state's cells
  and in the other cells of its lineage (counts normalised chunk by chunk, ``X`` untouched);
- scanpy: ``normalize_total`` + ``log1p`` on a copy, then ``sc.get.aggregate`` (mean, count_nonzero) of the same
  genes by state and by lineage, from which the same differences follow.

Prints wall time and peak resident memory of both and their ratios, and checks that the means agree. Usage::

    python benchmarks/bench_markers.py                   # 100,000 cells
    python benchmarks/bench_markers.py --cells 20000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def worker(name: str, path: str) -> dict:
    import warnings

    import anndata as ad
    from bench_score import PeakRSS

    warnings.simplefilter("ignore")
    adata = ad.read_h5ad(path)
    import tmetoolkit as tmt

    genes = sorted(set(tmt.get.markers(adata[:2000].copy())["gene"]))  # the same genes for both (warms numba too)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if name == "tmt":
            table = tmt.get.markers(adata)
            row = table[(table["label"] == "Treg") & (table["gene"] == "FOXP3")]
            check = float(row["mean"].iloc[0])
        else:
            import scanpy as sc

            b = adata.copy()
            target = float(np.median(np.asarray(b.X.sum(axis=1)).ravel()))
            sc.pp.normalize_total(b, target_sum=target)
            sc.pp.log1p(b)
            sub = b[:, [g for g in genes if g in b.var_names]]
            by_state = sc.get.aggregate(sub, by="tmt_state", func=["mean", "count_nonzero"])
            sc.get.aggregate(sub, by="tmt_lineage", func=["mean", "count_nonzero"])
            check = float(by_state[by_state.obs_names == "Treg", "FOXP3"].layers["mean"][0, 0])
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": (mem.peak - mem.base) / 2**20, "foxp3_treg_mean": check}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    import warnings

    import tmetoolkit as tmt

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "annotated.h5ad"
        n_samples = max(2, args.cells // 10_000)
        adata = tmt.datasets.simulate(n_samples=n_samples, n_cells=args.cells // n_samples, seed=0)
        tmt.tl.annotate(adata)
        adata.write_h5ad(path)
        print(f"{adata.n_obs} cells x {adata.n_vars} genes (raw counts), annotated")
        res = {}
        for name in ("tmt", "scanpy"):
            out = subprocess.run([sys.executable, __file__, "--worker", name, str(path)], capture_output=True,
                                 text=True, check=True, cwd=Path(__file__).parent)
            res[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:>7}: {res[name]['seconds']:.1f} s, peak +{res[name]['peak_mb']:.0f} MB")
    t, s = res["tmt"], res["scanpy"]
    print(f"time ratio scanpy/tmt {s['seconds'] / t['seconds']:.1f}x, "
          f"memory ratio {s['peak_mb'] / max(t['peak_mb'], 1):.1f}x; "
          f"Treg FOXP3 mean {t['foxp3_treg_mean']:.4f} (tmt) vs {s['foxp3_treg_mean']:.4f} (scanpy)")


if __name__ == "__main__":
    main()

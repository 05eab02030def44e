"""Speed and memory of ``tmt.tl.score`` against the peers on the same data, in one run.

One synthetic log-normalised matrix (default 100,000 cells x 20,000 genes, about 1,500 non-zeros per cell) and the
same 50 registry signatures are scored by:

- ``tmt.tl.score(method="mean_ctrl")`` vs a loop of ``sc.tl.score_genes`` (one call per signature);
- ``tmt.tl.score(method="rank")`` and ``method="aucell"`` vs decoupler's ``dc.mt.aucell``.

Each contender runs in its own process that loads the matrix from disk; peak resident memory is sampled during
the run. Usage::

    python benchmarks/bench_score.py                 # full size
    python benchmarks/bench_score.py --cells 20000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

N_SIGNATURES = 50


def make_matrix(path: Path, n_cells: int, n_genes: int, nnz_per_cell: int, seed: int = 0) -> None:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    import tmetoolkit as tmt

    rng = np.random.default_rng(seed)
    sig_genes = sorted({g for s in tmt.sig.collection("all") for g in s.genes})
    genes = (sig_genes + [f"BG{i:05d}" for i in range(n_genes)])[:n_genes]
    mean_gap = n_genes / nnz_per_cell
    indptr = [0]
    indices, data = [], []
    gene_level = rng.lognormal(0, 1, size=n_genes)
    for start in range(0, n_cells, 5000):
        m = min(5000, n_cells - start)
        gaps = rng.geometric(1 / mean_gap, size=(m, int(nnz_per_cell * 1.3))).astype(np.int64)
        cols = np.cumsum(gaps, axis=1) - 1
        for r in range(m):
            c = cols[r][cols[r] < n_genes]
            indices.append(c.astype(np.int32))
            indptr.append(indptr[-1] + c.size)
            data.append(np.log1p(rng.poisson(gene_level[c] + 0.5) + 1).astype(np.float32))
    X = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=(n_cells, n_genes))
    ad.AnnData(X=X, var=pd.DataFrame(index=genes)).write_h5ad(path)


def signatures():
    import tmetoolkit as tmt

    plain = [s for s in tmt.sig.collection("all") if not s.genes_down and not s.weights and len(s.genes_up) >= 5]
    return plain[:N_SIGNATURES]


class PeakRSS:
    """Samples this process's resident memory every 5 ms in a thread."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = self.base = self.proc.memory_info().rss
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()


def worker(name: str, path: str) -> dict:
    import warnings

    import anndata as ad

    warnings.simplefilter("ignore")
    adata = ad.read_h5ad(path)
    X = adata.X
    input_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    sigs = signatures()
    import tmetoolkit as tmt

    if name.startswith("tmt_"):  # compile the numba kernel outside the timed run
        for m in ("rank", "mean_ctrl"):
            tmt.tl.score(adata[:50].copy(), sigs[:2], method=m)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if name == "tmt_mean_ctrl":
            tmt.tl.score(adata, sigs, method="mean_ctrl")
        elif name == "tmt_rank":
            tmt.tl.score(adata, sigs, method="rank")
        elif name == "tmt_aucell":
            tmt.tl.score(adata, sigs, method="aucell")
        elif name == "scanpy_loop":
            import scanpy as sc

            for s in sigs:
                sc.tl.score_genes(adata, [g for g in s.genes_up if g in adata.var_names], score_name=s.name)
        elif name == "decoupler_aucell":
            import decoupler as dc

            net = tmt.sig.to_decoupler(sigs)
            dc.mt.aucell(adata, net, tmin=1)
        seconds = time.perf_counter() - t0
    return {"name": name, "seconds": seconds, "extra_peak_mb": (mem.peak - mem.base) / 2**20,
            "input_mb": input_bytes / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--nnz", type=int, default=1_500)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.path)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5ad"
        t0 = time.perf_counter()
        make_matrix(path, args.cells, args.genes, args.nnz)
        print(f"matrix: {args.cells} cells x {args.genes} genes, ~{args.nnz} non-zeros per cell "
              f"(built in {time.perf_counter() - t0:.0f} s); {N_SIGNATURES} signatures")
        res = {}
        for name in ("tmt_mean_ctrl", "scanpy_loop", "tmt_rank", "tmt_aucell", "decoupler_aucell"):
            out = subprocess.run([sys.executable, __file__, "--worker", name, "--path", str(path)],
                                 capture_output=True, text=True, check=False,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if out.returncode != 0:
                print(f"{name}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            res[name] = r
            print(f"{name:18s} {r['seconds']:8.2f} s   extra peak memory {r['extra_peak_mb']:8.0f} MB "
                  f"(input matrix {r['input_mb']:.0f} MB; peak/input {1 + r['extra_peak_mb'] / r['input_mb']:.2f}x)")
    print()

    def ratio(a, b):
        if a in res and b in res:
            print(f"{b} / {a}: {res[b]['seconds'] / res[a]['seconds']:.1f}x slower")

    ratio("tmt_mean_ctrl", "scanpy_loop")
    ratio("tmt_rank", "decoupler_aucell")
    ratio("tmt_aucell", "decoupler_aucell")


if __name__ == "__main__":
    main()

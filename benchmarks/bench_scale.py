"""Out-of-core scoring: 1,000,000 cells x 20,000 genes in zarr on disk, read lazily as a dask array.

Writes a synthetic log-normalised CSR matrix to zarr (in pieces), then, each in a fresh process:

- scores every packaged signature from the lazily read zarr (``anndata.experimental.read_elem_lazy``; chunks of
  ``--chunk`` cells), reporting wall time, cells per second and the process's peak resident memory;
- scores the same signatures on the first ``--memory-cells`` cells loaded in memory, for the in-memory throughput.

For the ratios against scanpy and decoupler at 200,000 cells in memory run
``python benchmarks/bench_score.py --cells 200000``. A ``distributed.Client`` that is active when scoring runs
computes the chunks on its cluster (see docs/guide.md, "Data larger than memory"). Usage::

    python benchmarks/bench_scale.py                      # 1M cells, ~300 non-zeros per cell
    python benchmarks/bench_scale.py --cells 200000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_zarr(path: Path, n_cells: int, n_genes: int, nnz: int, piece: int = 100_000, seed: int = 0) -> None:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    import zarr

    import tmetoolkit as tmt

    rng = np.random.default_rng(seed)
    sig_genes = sorted({g for s in tmt.sig.collection("all") for g in s.genes})
    genes = (sig_genes + [f"BG{i:05d}" for i in range(n_genes)])[:n_genes]
    level = rng.lognormal(0, 1, size=n_genes)
    p = level / level.sum()
    first = True
    for start in range(0, n_cells, piece):
        m = min(piece, n_cells - start)
        cols = rng.choice(n_genes, size=(m, nnz), p=p)
        rows = np.repeat(np.arange(m), nnz)
        X = sp.csr_matrix((np.log1p(rng.poisson(2.0, size=m * nnz) + 1).astype(np.float32), (rows, cols.ravel())),
                          shape=(m, n_genes))
        X.sum_duplicates()
        part = ad.AnnData(X=X, obs=pd.DataFrame(index=[f"c{start + i}" for i in range(m)]),
                          var=pd.DataFrame(index=genes))
        if first:
            part.write_zarr(path)
            first = False
        else:  # append rows to the CSR arrays on disk
            g = zarr.open(str(path), mode="a")
            for name, arr in (("data", X.data), ("indices", X.indices)):
                z = g["X"][name]
                z.append(arr)
            ip = g["X"]["indptr"]
            offset = ip[-1]
            ip.append((X.indptr[1:] + offset).astype(ip.dtype))
            shape = list(g["X"].attrs["shape"])
            shape[0] += m
            g["X"].attrs["shape"] = shape
            obs_index = g["obs"]["_index"]
            obs_index.append(np.array([f"c{start + i}" for i in range(m)], dtype=object))
        zarr.consolidate_metadata(str(path))  # reads use consolidated metadata: refresh it after every piece


def worker(path: str, mode: str, chunk: int, memory_cells: int) -> dict:
    import warnings

    import anndata as ad
    import pandas as pd
    import zarr
    from anndata.experimental import read_elem_lazy

    import tmetoolkit as tmt

    warnings.simplefilter("ignore")
    g = zarr.open(path, mode="r")
    var = ad.io.read_elem(g["var"])
    X = read_elem_lazy(g["X"], chunks=(chunk, -1))
    if mode == "memory":
        X = X[:memory_cells].compute()
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=[f"c{i}" for i in range(X.shape[0])]), var=var)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    tmt.tl.score(adata, "all", chunk_size=chunk)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"mode": mode, "cells": int(X.shape[0]), "seconds": seconds, "cells_per_s": X.shape[0] / seconds,
            "peak_gb": peak, "peak_before_scoring_gb": base,
            "n_signatures": int(adata.obsm["tmt_scores"].shape[1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=1_000_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--nnz", type=int, default=300)
    p.add_argument("--chunk", type=int, default=20_000)
    p.add_argument("--memory-cells", type=int, default=200_000)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.path, args.worker, args.chunk, args.memory_cells)))
        return
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        path = Path(tmp) / "scale.zarr"
        t0 = time.perf_counter()
        write_zarr(path, args.cells, args.genes, args.nnz)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30
        print(f"zarr: {args.cells} cells x {args.genes} genes, ~{args.nnz} non-zeros per cell, {size:.1f} GiB on disk "
              f"(written in {time.perf_counter() - t0:.0f} s)")
        for mode in ("lazy", "memory"):
            out = subprocess.run([sys.executable, __file__, "--worker", mode, "--path", str(path), "--chunk",
                                  str(args.chunk), "--memory-cells", str(args.memory_cells)],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"{mode}: failed\n{out.stderr[-3000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{mode:7s} {r['cells']:>9} cells, {r['n_signatures']} signatures: {r['seconds']:7.1f} s, "
                  f"{r['cells_per_s']:9.0f} cells/s, peak resident memory {r['peak_gb']:.2f} GB "
                  f"({r['peak_before_scoring_gb']:.2f} GB before scoring)")


if __name__ == "__main__":
    main()

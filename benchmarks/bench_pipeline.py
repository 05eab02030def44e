"""Passes over the expression matrix and wall time of ``tmetoolkit run`` on simulated cells, this tree against an
earlier commit.

Simulates ``--cells`` cells in ``--samples`` samples (``tmt.datasets.simulate``, with coordinates, so every step
runs: scores, annotation, checkpoints, spatial phenotype, immunosuppression, resistance profile, group
comparison), writes them to an ``.h5ad`` and runs ``tmetoolkit run FILE --sample-key sample --group-key response``
in a fresh process for each package tree: the working tree (or ``--after COMMIT``) and, with ``--before COMMIT``,
the package as it was at that commit (``git archive``), so the old and the new path are measured on the same file
in one run, and the per-sample tables they write are compared.

Counted in each run (by wrapping the matrix helpers wherever the package holds them):

- row passes: calls of ``_matrix.iter_rows``, each a walk over every row of the matrix, listed by the function that
  made it (input checks, scoring, ranks, detection ...);
- column sums: calls of ``_matrix.column_sums`` (one walk over the non-zeros without slicing rows);
- signature scorings: calls of ``tl.score`` and the signatures each pass of ``score_matrix`` scored.

Usage::

    python benchmarks/bench_pipeline.py --before 5acf506                  # 100,000 cells: the commit, this tree
    python benchmarks/bench_pipeline.py --before 5acf506 --after f61a1dd  # two commits
    python benchmarks/bench_pipeline.py --cells 20000 --before HEAD~1
    python benchmarks/bench_pipeline.py --before-tree /path/to/old/checkout  # an existing checkout as "before"

Measured with ``--before 5acf506 --after f61a1dd`` (100,000 cells, 6 samples, 6,000 genes; 2 cores shared with
running test suites, so wall times are noisy), as printed::

    before (5acf506): exit 0, wall 609.6 s; passes over the matrix: 19 (14 over rows, 0 column sums, 5 input scans);
        4 score() calls, 242 signature scorings; 12.5 s in input checks, 117.6 s in score()
    after (f61a1dd): exit 0, wall 416.8 s; passes over the matrix: 9 (8 over rows, 0 column sums, 1 input scans);
        1 score() calls, 150 signature scorings; 3.9 s in input checks, 52.8 s in score()
    sample_table.csv: same rows and columns True, same text True, largest difference of a number 0

(an earlier run without the timers: wall 480.2 s before, 492.2 s after, the same counts).

Measured with ``--before-tree`` a checkout of e8c4fde (2026-11-30, before one scoring pass per run) against the tree
whose tools are pure cores under thin runners (branch h22d; 100,000 cells, 6 samples, 6,047 genes; 2 cores shared
with other work), as printed::

    before (e8c4fde): exit 0, wall 176.4 s; passes over the matrix: 18 (13 over rows, 0 column sums, 5 input scans);
        4 score() calls, 242 signature scorings; 1.7 s in input checks, 51.4 s in score()
    this tree: exit 0, wall 159.4 s; passes over the matrix: 9 (8 over rows, 0 column sums, 1 input scans);
        1 score() calls, 151 signature scorings; 0.8 s in input checks, 9.4 s in score()
    after / before: wall 0.90 (176.4 s -> 159.4 s), passes over the matrix 0.50 (18 -> 9), signature scorings 0.62
        (242 -> 151)

The passes are those of f61a1dd (9, none of them a second scoring): annotate's within-cell ranks (now read in
``_core.annotation.identity``), checkpoint and IFNG detection, three for ``markers.csv``. One scoring more than at
f61a1dd (151): annotate's HLA-class-II split signature, scored in the run's one pass. The sample tables differ, as
annotate and the phenotype rules changed between the two trees.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("row_passes", "column_sums", "input_scans", "score_calls", "signatures_scored")


def _install_counters(counts: dict) -> None:
    """Wrap ``iter_rows``, ``column_sums``, ``score`` and ``score_matrix`` in every loaded tmetoolkit module."""
    import tmetoolkit  # noqa: F401 - loads every module that binds the helpers
    from tmetoolkit import _matrix
    from tmetoolkit.pp import _check
    from tmetoolkit.tl import _score

    def caller(depth: int = 2) -> str:
        f = sys._getframe(depth)
        return f"{f.f_globals.get('__name__', '?').removeprefix('tmetoolkit.')}.{f.f_code.co_name}"

    def tool() -> str:
        """The outermost ``tmetoolkit.tl`` function on the stack: the tool the pipeline called."""
        f, found = sys._getframe(2), "?"
        while f is not None:
            name = f.f_globals.get("__name__", "")
            if name.startswith(("tmetoolkit.tl.", "tmetoolkit.pp.")):
                found = f"{name.removeprefix('tmetoolkit.')}.{f.f_code.co_name}"
            f = f.f_back
        return found

    originals = {"iter_rows": _matrix.iter_rows, "column_sums": _matrix.column_sums, "inspect": _check.inspect,
                 "score": _score.score, "score_matrix": _score.score_matrix}
    scans = getattr(_check, "_inspect", None)  # the scan itself, where reports are reused within a run

    def inspect(*args, **kwargs):
        if scans is not None:
            return originals["inspect"](*args, **kwargs)
        if kwargs.get("full_scan", True):
            counts["input_scans"][f"{tool()} <- {caller()}"] += 1
        t0 = time.perf_counter()
        try:
            return originals["inspect"](*args, **kwargs)
        finally:
            counts["seconds"]["in input checks"] += time.perf_counter() - t0

    def _scan(*args, **kwargs):
        if kwargs.get("full_scan", True):
            counts["input_scans"][f"{tool()} <- {caller(3)}"] += 1
        t0 = time.perf_counter()
        try:
            return scans(*args, **kwargs)
        finally:
            counts["seconds"]["in input checks"] += time.perf_counter() - t0

    if scans is not None:
        _check._inspect = _scan

    def iter_rows(*args, **kwargs):
        counts["row_passes"][f"{tool()} <- {caller()}"] += 1
        return originals["iter_rows"](*args, **kwargs)

    def column_sums(*args, **kwargs):
        counts["column_sums"][f"{tool()} <- {caller()}"] += 1
        return originals["column_sums"](*args, **kwargs)

    def score(*args, **kwargs):
        counts["score_calls"][caller()] += 1
        t0 = time.perf_counter()
        try:
            return originals["score"](*args, **kwargs)
        finally:
            counts["seconds"]["in score()"] += time.perf_counter() - t0

    def score_matrix(X, plan, **kwargs):
        counts["signatures_scored"][tool()] += len(plan)
        return originals["score_matrix"](X, plan, **kwargs)

    wrappers = {"iter_rows": iter_rows, "column_sums": column_sums, "inspect": inspect, "score": score,
                "score_matrix": score_matrix}
    for name, module in list(sys.modules.items()):
        if name.startswith("tmetoolkit") and module is not None:
            for attr, original in originals.items():
                if getattr(module, attr, None) is original:
                    setattr(module, attr, wrappers[attr])


def child(h5ad: str, outdir: str) -> None:
    """One ``tmetoolkit run`` with counters; prints the counts and the wall time as JSON."""
    counts = {k: collections.Counter() for k in (*KINDS, "seconds")}
    _install_counters(counts)
    from tmetoolkit._cli import main

    t0 = time.perf_counter()
    code = main(["run", h5ad, "-o", outdir, "--sample-key", "sample", "--group-key", "response", "-q"])
    wall = time.perf_counter() - t0
    import tmetoolkit

    print(json.dumps({"exit": code, "wall_s": wall, "package": tmetoolkit.__file__,
                      **{k: dict(v) for k, v in counts.items()}}))


def run_tree(package_root: Path, h5ad: Path, outdir: Path) -> dict:
    """:func:`child` in a fresh process that imports tmetoolkit from ``package_root``."""
    code = (f"import sys; sys.path[:0] = [{str(package_root)!r}, {str(ROOT / 'benchmarks')!r}]; "
            f"import bench_pipeline; bench_pipeline.child({str(h5ad)!r}, {str(outdir)!r})")
    env = {**os.environ, "MPLBACKEND": "agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(package_root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    result = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    if result is None or result["exit"] != 0:
        raise RuntimeError(f"tmetoolkit run failed in {package_root}:\n{out.stderr[-3000:]}")
    return result


def _checkout(commit: str, where: Path) -> Path:
    """The package as it was at ``commit`` (its code, signatures and data files), in ``where``."""
    where.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "tmetoolkit", "signatures", "data"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def passes(r: dict) -> int:
    """Walks over the matrix in one run: over its rows, its column sums and full input scans."""
    return sum(sum(r[k].values()) for k in ("row_passes", "column_sums", "input_scans"))


def show(label: str, r: dict) -> None:
    n = {k: sum(r[k].values()) for k in KINDS}
    print(f"\n{label} ({r['package']}): exit {r['exit']}, wall {r['wall_s']:.1f} s; passes over the matrix: "
          f"{n['row_passes'] + n['column_sums'] + n['input_scans']} ({n['row_passes']} over rows, "
          f"{n['column_sums']} column sums, {n['input_scans']} input scans); {n['score_calls']} score() calls, "
          f"{n['signatures_scored']} signature scorings; "
          + ", ".join(f"{v:.1f} s {k}" for k, v in sorted(r["seconds"].items())))
    for what in KINDS:
        for where, n in sorted(r[what].items(), key=lambda kv: -kv[1]):
            print(f"  {what:<18} {n:>4}  {where}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--before", help="an earlier commit to measure beside the working tree")
    p.add_argument("--before-tree", type=Path,
                   help="instead of --before, a checkout of the earlier package (a directory holding tmetoolkit/)")
    p.add_argument("--after", help="a commit to measure instead of the working tree")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import pandas as pd

    import tmetoolkit as tmt

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        adata = tmt.datasets.simulate(n_samples=args.samples, n_cells=args.cells // args.samples, seed=args.seed)
        h5ad = tmp / "sim.h5ad"
        adata.write_h5ad(h5ad)
        print(f"simulated {adata.n_obs:,} cells x {adata.n_vars:,} genes in {time.perf_counter() - t0:.0f} s")
        trees = [(f"before ({c})" if i == 0 else f"after ({c})", _checkout(c, tmp / f"tree{i}"))
                 for i, c in enumerate((args.before, args.after)) if c]
        if args.before_tree:
            trees.insert(0, (f"before ({args.before_tree})", args.before_tree.resolve()))
        if not args.after:
            trees.append(("this tree", ROOT))
        tables, results = [], []
        for i, (label, root) in enumerate(trees):
            results.append(run_tree(root, h5ad, tmp / f"out{i}"))
            show(label, results[-1])
            tables.append(pd.read_csv(tmp / f"out{i}" / "sample_table.csv", index_col=0))
        if len(results) == 2:
            a, b = results
            scored = [sum(r["signatures_scored"].values()) for r in results]
            print(f"\nafter / before: wall {b['wall_s'] / a['wall_s']:.2f} ({a['wall_s']:.1f} s -> "
                  f"{b['wall_s']:.1f} s), passes over the matrix {passes(b) / max(passes(a), 1):.2f} "
                  f"({passes(a)} -> {passes(b)}), signature scorings {scored[1] / max(scored[0], 1):.2f} "
                  f"({scored[0]} -> {scored[1]})")
        if len(tables) == 2:
            a, b = tables
            same = set(a.columns) == set(b.columns) and a.index.equals(b.index)
            num = a.select_dtypes("number")
            diff = (num - b[num.columns].astype(float)).abs().max().max() if same else float("nan")
            words = a.columns.drop(num.columns)
            text = same and a[words].astype(str).equals(b[words].astype(str))
            print(f"\nsample_table.csv: same rows and columns {same}, same text {text}, largest difference of a "
                  f"number {diff:.3g}")


if __name__ == "__main__":
    main()

"""Stress every RNA-facing public caller with the inputs users bring, on the real labelled data.

For each real RNA set (Puram, Zilionis human and mouse, Chen MERFISH, pbmc68k_reduced through ``.raw``, Racle bulk)
the variants users bring are built (counts, scanpy log-normalised, highly variable genes with and without ``.raw``,
down-sampled, log values with negatives, ComBat-corrected, z-scored with ``.raw``, dense / CSR / CSC, Ensembl IDs,
mouse-case and lower-case symbols, odd sample columns, one cell type, five cells, empty cells, backed files) and
every caller is run in the order of a run (plots into Agg, the results written to .h5ad and read back, and for a few
variants the command line). Per caller x variant it records ``ok``, a typed ``TmtInputError`` (``E``) or any other
exception (``BUG``), and the warning classes raised; per variant it checks that the input is unchanged except
``tmt_`` keys, that a second run gives identical results (variants of ``DETERMINISM``), and how the results agree
with the as-shared run (lineage and state agreement per cell, Spearman rho of the per-sample immunosuppression
composite, share of equal phenotype calls).

    PYTHONPATH=. python benchmarks/stress_inputs.py [--quick] [--sets puram,zil_hs] [--variants shared,hvg]

Reads ``../shared/data`` (skips a set whose file is absent). ``--quick --sets zil_hs`` took 1 min 42 s; every set
and variant about 25 minutes as two processes (``--sets zil_hs,pbmc,racle`` and ``--sets puram,chen,zil_mm``) on
two shared cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from scipy.stats import spearmanr

import tmetoolkit as tmt
from tmetoolkit._utils import TmtInputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ZIL_HS = "zilionis2019_nsclc_indrop/zilionis2019_nsclc_scgate_300cells.h5ad"
ZIL_MM = "zilionis2019_mouse_lung_indrop/zilionis2019_mouse_lung_cluey_800cells.h5ad"
PREFIX = "tmt_"


# ---------------------------------------------------------------- data sets: (adata, sample_key, kind, label key)
def _puram():
    a = tmt.datasets.load("puram2017", path=SHARED)
    a.obs["sample"] = pd.Categorical([f"s{i % 4}" for i in range(a.n_obs)])  # no patient column: four pseudo-samples
    return a, "sample", "log", "celltypes"


def _zil_hs():
    a = ad.read_h5ad(SHARED / ZIL_HS)
    return a, "Patient", "depthnorm", "author_major_cell_type"


def _zil_mm():
    a = ad.read_h5ad(SHARED / ZIL_MM)
    return a, "Animal", "counts", "author_major_cell_type"


def _chen():
    a = tmt.datasets.load("chen2024", path=SHARED)
    xy = a.obsm["spatial"]
    # one patient, one window: four quadrants as samples
    q = (xy[:, 0] > np.median(xy[:, 0])).astype(int) * 2 + (xy[:, 1] > np.median(xy[:, 1])).astype(int)
    a.obs["sample"] = pd.Categorical([f"q{i}" for i in q])
    return a, "sample", "counts", "type_lvl1"


def _pbmc():
    p = sc.datasets.pbmc68k_reduced()
    a = p.raw.to_adata()
    a.obsm.clear()
    a.obsp.clear() if hasattr(a, "obsp") else None
    a.uns = {}
    a.obs = p.obs[["bulk_labels", "n_counts"]].copy()
    a.obs["sample"] = pd.Categorical([f"d{i % 4}" for i in range(a.n_obs)])
    return a, "sample", "log", "bulk_labels"


def _racle():
    a = tmt.datasets.load("racle2017", path=SHARED)
    return a, None, "bulk", None


def _with_response(load):
    """The set with an ``obs["response"]`` column constant within each sample (samples alternate R / NR)."""
    def wrapped():
        a, key, kind, label = load()
        units = a.obs[key].astype(str) if key else pd.Series(a.obs_names, index=a.obs_names)
        order = {u: i for i, u in enumerate(sorted(units.unique()))}
        a.obs["response"] = pd.Categorical(["R" if order[u] % 2 else "NR" for u in units])
        return a, key, kind, label
    return wrapped


SETS = {"puram": _puram, "zil_hs": _zil_hs, "zil_mm": _zil_mm, "chen": _chen, "pbmc": _pbmc, "racle": _racle}
SETS = {k: _with_response(v) for k, v in SETS.items()}


# ---------------------------------------------------------------- variants
def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def counts_of(a: ad.AnnData, kind: str):
    """Integer counts where they can be recovered, else None."""
    X = _dense(a.X).astype(np.float64)
    if kind == "counts":
        return X
    if kind == "depthnorm":
        # Zilionis: X = counts scaled per cell; a cell's smallest positive value is one count
        unit = np.array([row[row > 0].min() if (row > 0).any() else 1.0 for row in X])
        c = X / unit[:, None]
        r = np.round(c)
        if np.abs(c - r).max() < 0.05:
            return r
    if kind == "log" and "n_counts" in a.obs:
        c = np.expm1(X) / 1e4 * a.obs["n_counts"].to_numpy()[:, None]  # pbmc68k: log1p(CP10k) of 765 genes only
        r = np.round(c)
        if np.abs(c - r).max() < 0.05:
            return r
    return None


def log_values(a: ad.AnnData, kind: str) -> np.ndarray:
    X = _dense(a.X).astype(np.float64)
    if kind == "log":
        return X
    return np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1e-12) * 1e4)


def _with(a, X, **layers):
    b = ad.AnnData(X=X, obs=a.obs.copy(), var=a.var.copy(), obsm=dict(a.obsm), uns={k: v for k, v in a.uns.items()})
    for k, v in layers.items():
        b.layers[k] = v
    return b


def v_shared(a, ctx):
    return a.copy(), {}


def v_counts(a, ctx):
    c = counts_of(a, ctx["kind"])
    if c is None:
        return None
    return _with(a, sp.csr_matrix(c.astype(np.float32))), {}


def _lognormalised(a, counts: np.ndarray, *, keep_counts: bool = True) -> ad.AnnData:
    """scanpy's usual ``normalize_total`` + ``log1p`` of ``counts``, the counts kept in ``layers["counts"]``."""
    b = _with(a, sp.csr_matrix(counts.astype(np.float32)))
    if keep_counts:
        b.layers["counts"] = b.X.copy()
    sc.pp.normalize_total(b)
    sc.pp.log1p(b)
    return b


def v_lognorm(a, ctx):
    c = counts_of(a, ctx["kind"])
    if c is None:
        return None
    return _lognormalised(a, c), {}


def _hvg(a, ctx, raw: bool):
    if ctx["kind"] == "bulk" or a.n_vars <= 2000:
        return None
    L = log_values(a, ctx["kind"])
    b = _with(a, sp.csr_matrix(L.astype(np.float32)))
    if raw:
        b.raw = b.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(b, n_top_genes=2000, flavor="seurat")
    b = b[:, b.var["highly_variable"].to_numpy()].copy()
    return b, {}


def v_hvg(a, ctx):
    return _hvg(a, ctx, raw=False)


def v_hvg_raw(a, ctx):
    return _hvg(a, ctx, raw=True)


def v_downsample(a, ctx):
    c = counts_of(a, ctx["kind"])
    if c is None or np.median(c.sum(1)) <= 1000:
        return None
    b = _with(a, sp.csr_matrix(c.astype(np.float32)))
    sc.pp.downsample_counts(b, counts_per_cell=1000, random_state=0)
    return b, {}


def v_log2neg(a, ctx):
    X = _dense(a.X).astype(np.float64)
    if ctx["kind"] == "log":
        X = np.expm1(X) if ctx["name"] == "pbmc" else np.exp2(X) - 1
    cpm = X / np.maximum(X.sum(1, keepdims=True), 1e-12) * 1e6
    return _with(a, np.log2(cpm + 0.1).astype(np.float32)), {}


def v_combat(a, ctx):
    key = ctx["sample_key"]
    if key is None or ctx["kind"] == "log":
        return None
    c = counts_of(a, ctx["kind"])
    if c is None:
        c = _dense(a.X).astype(np.float64)
    b = _lognormalised(a, c, keep_counts=False)
    b.obs["sample"] = b.obs[key].astype(str).astype("category")
    b.raw = b.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.combat(b, key="sample")
    return b, {}


def v_zscored_raw(a, ctx):
    if ctx["kind"] == "bulk":
        return None
    L = log_values(a, ctx["kind"])
    b = _with(a, sp.csr_matrix(L.astype(np.float32)))
    b.raw = b.copy()
    sc.pp.scale(b, max_value=10)
    return b, {}


def v_dense64(a, ctx):
    return _with(a, _dense(a.X).astype(np.float64)), {}


def v_csr32(a, ctx):
    return _with(a, sp.csr_matrix(_dense(a.X).astype(np.float32))), {}


def v_csc32(a, ctx):
    return _with(a, sp.csc_matrix(_dense(a.X).astype(np.float32))), {}


def v_ensembl(a, ctx):
    b = a.copy()
    b.var["gene_symbols"] = b.var_names.to_numpy()
    b.var_names = [f"ENSG{i:011d}" for i in range(b.n_vars)]
    return b, {}


def v_mousecase(a, ctx):
    if ctx["name"] == "zil_mm":
        return None
    b = a.copy()
    b.var_names = [g[:1].upper() + g[1:].lower() for g in b.var_names]
    b.var_names_make_unique()
    return b, {}


def v_lower(a, ctx):
    b = a.copy()
    b.var_names = [g.lower() for g in b.var_names]
    b.var_names_make_unique()
    return b, {}


def v_sample_int(a, ctx):
    key = ctx["sample_key"]
    if key is None:
        return None
    b = a.copy()
    b.obs[key] = pd.factorize(b.obs[key].astype(str))[0].astype(int)
    return b, {}


def v_sample_nan(a, ctx):
    key = ctx["sample_key"]
    if key is None:
        return None
    b = a.copy()
    s = b.obs[key].astype(object).to_numpy()
    s[:3] = np.nan
    b.obs[key] = pd.Categorical(s)
    return b, {}


def v_one_sample(a, ctx):
    key = ctx["sample_key"]
    if key is None:
        return None
    b = a.copy()
    b.obs[key] = pd.Categorical(["only"] * b.n_obs)
    return b, {}


def v_one_type(a, ctx):
    lab = ctx["label_key"]
    if lab is None:
        return None
    labels = a.obs[lab].astype(str)
    t = [x for x in labels.value_counts().index if "T" in x.replace("cells", "").split()]
    top = t[0] if t else labels.value_counts().index[0]
    return a[(labels == top).to_numpy()].copy(), {"one_type": top}


def v_five(a, ctx):
    if ctx["kind"] == "bulk":
        return None
    rng = np.random.default_rng(0)
    return a[np.sort(rng.choice(a.n_obs, 5, replace=False))].copy(), {}


def v_zero_cells(a, ctx):
    if ctx["kind"] == "bulk":
        return None
    X = _dense(a.X).astype(np.float32)
    floor = X.min() if ctx["kind"] == "log" else 0.0
    X[:5] = floor
    return _with(a, sp.csr_matrix(X)), {}


def v_int64(a, ctx):
    c = counts_of(a, ctx["kind"])
    if c is None:
        return None
    return _with(a, c.astype(np.int64)), {}


def v_z_counts_layer(a, ctx):
    c = counts_of(a, ctx["kind"])
    if c is None:
        return None
    b = _lognormalised(a, c)
    sc.pp.scale(b, max_value=10)
    return b, {"layer": "counts"}


def v_sample_catint(a, ctx):
    key = ctx["sample_key"]
    if key is None:
        return None
    b = a.copy()
    b.obs[key] = pd.Categorical(pd.factorize(b.obs[key].astype(str))[0] + 1)  # integer categories
    return b, {}


def v_sample_unused(a, ctx):
    key = ctx["sample_key"]
    if key is None:
        return None
    b = a.copy()
    s = b.obs[key].astype(str)
    b.obs[key] = pd.Categorical(s, categories=sorted(set(s)) + ["never_seen"])
    return b, {}


def v_dup_obs(a, ctx):
    b = a.copy()
    names = b.obs_names.to_numpy().copy()
    names[1] = names[0]
    b.obs_names = names
    return b, {}


def v_groupby(a, ctx):
    lab = ctx["label_key"]
    if lab is None:
        return None
    b = a.copy()
    b.obs["cluster"] = b.obs[lab].astype(str).astype("category")  # the authors' labels as clusters
    return b, {"groupby": "cluster"}


def v_groupby_int_nan(a, ctx):
    lab = ctx["label_key"]
    if lab is None:
        return None
    b = a.copy()
    codes = pd.factorize(b.obs[lab].astype(str))[0].astype(float)
    codes[::7] = np.nan  # cells without a cluster
    b.obs["cluster"] = codes
    return b, {"groupby": "cluster"}


def v_sample_odd_names(a, ctx):
    key = ctx["sample_key"]
    if key is None:
        return None
    b = a.copy()
    odd = {u: f"pt {i}/biopsy #{i} – ünïcode{'x' * 60 if i == 0 else ''}"
           for i, u in enumerate(sorted(b.obs[key].astype(str).unique()))}
    b.obs[key] = pd.Categorical(b.obs[key].astype(str).map(odd))
    return b, {}


def v_dup_entries(a, ctx):
    """CSR storing every entry as two halves (built from its arrays by hand): the same matrix to scipy."""
    X = sp.csr_matrix(_dense(a.X).astype(np.float32))
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    r, c = np.concatenate([rows, rows]), np.concatenate([X.indices, X.indices])
    order = np.lexsort((c, r))
    indptr = np.r_[0, np.cumsum(np.bincount(r, minlength=X.shape[0]))]
    return _with(a, sp.csr_matrix((np.concatenate([X.data / 2, X.data / 2])[order], c[order], indptr),
                                  shape=X.shape)), {}


def v_backed(a, ctx):
    b = a.copy()
    if sp.issparse(b.X):
        b.X = sp.csr_matrix(b.X)
    path = Path(ctx["tmp"]) / f"backed_{ctx['name']}.h5ad"
    b.write_h5ad(path)
    return ad.read_h5ad(path, backed="r"), {}


VARIANTS = {
    "shared": v_shared, "counts": v_counts, "lognorm": v_lognorm, "hvg": v_hvg, "hvg+raw": v_hvg_raw,
    "down1k": v_downsample, "log2neg": v_log2neg, "combat": v_combat, "z+raw": v_zscored_raw, "dense64": v_dense64,
    "csr32": v_csr32, "csc32": v_csc32, "ensembl": v_ensembl, "mousecase": v_mousecase, "lower": v_lower,
    "s_int": v_sample_int, "s_nan": v_sample_nan, "1sample": v_one_sample, "1type": v_one_type, "5cells": v_five,
    "zeros": v_zero_cells, "backed": v_backed, "int64": v_int64, "z+counts": v_z_counts_layer,
    "groupby": v_groupby, "groupby_int_nan": v_groupby_int_nan, "s_odd": v_sample_odd_names,
    "dup_entries": v_dup_entries, "s_catint": v_sample_catint, "s_unused": v_sample_unused, "dup_obs": v_dup_obs,
}
CLI = {"shared": [], "s_int": [], "s_odd": [], "hvg+raw": ["--use-raw"], "z+counts": ["--layer", "counts"], "zeros": [],
       "5cells": []}  # also run through the command line
DETERMINISM = ["shared", "lognorm", "hvg+raw", "csc32", "5cells", "1type", "down1k"]  # run twice (the rest: once)
QUICK = ["shared", "lognorm", "hvg+raw", "log2neg", "z+raw", "csc32", "ensembl", "s_nan", "5cells", "zeros", "backed"]


# ---------------------------------------------------------------- callers
def callers(name: str, key: str | None, kind: str, outdir: Path, layer: str | None = None,
            groupby: str | None = None):
    bulk = kind == "bulk"
    sk = {} if bulk else {"sample_key": key}
    lay = {"layer": layer} if layer else {}
    species = {"species": "mouse"} if name == "zil_mm" else {}
    steps = [
        ("check_input", lambda a: tmt.pp.check_input(a, **lay)),
        ("score", lambda a: tmt.tl.score(a, "all", **lay)),
        ("score:rank", lambda a: tmt.tl.score(a, "lineage", method="rank", key_added="tmt_scores_rank", **lay)),
        ("score:aucell", lambda a: tmt.tl.score(a, "lineage", method="aucell", key_added="tmt_scores_aucell",
                                                   **lay)),
        ("annotate", lambda a: tmt.tl.annotate(a, **species, **lay, groupby=groupby)),
        ("checkpoints", lambda a: tmt.tl.checkpoints(a, **sk, **lay)),
        ("immunosup", lambda a: tmt.tl.immunosuppression(a, bulk=bulk, **sk, **lay)),
        ("phenotype", lambda a: tmt.tl.immune_phenotype(a, basis="expression", **sk, **lay)),
        ("resistance", lambda a: tmt.tl.resistance_profile(a, bulk=bulk, **sk, **lay)),
        ("sample_table", lambda a: tmt.get.sample_table(a, **sk)),
        ("compare", lambda a: tmt.tl.compare_groups(a, sample_key=key if not bulk else None, group_key="response")),
        ("report", lambda a: tmt.report(a, outdir / "report.html", **sk)),
    ]
    plots = [
        ("pl.composition", lambda a: tmt.pl.composition(a, **sk)),
        ("pl.checkpoints", lambda a: tmt.pl.checkpoints(a)),
        ("pl.immunosup", lambda a: tmt.pl.immunosuppression(a)),
        ("pl.phenotype", lambda a: tmt.pl.immune_phenotype(a)),
        ("pl.resistance", lambda a: tmt.pl.resistance_profile(a)),
        ("pl.scores", lambda a: tmt.pl.scores(a, ["T_cell", "CD8_T"], groupby="tmt_lineage")),
        ("pl.markers", lambda a: tmt.pl.markers(a)),
        ("pl.compare", lambda a: tmt.pl.compare_groups(a)),
    ]
    return steps + plots


SHORT = {"TmtWarning": "W", "TmtCoverageWarning": "Cov", "TmtEmptyCellsWarning": "Empty",
         "TmtRepeatedNamesWarning": "Dup", "TmtScaleWarning": "Scale", "TmtSpeciesWarning": "Sp",
         "TmtSmallCohortWarning": "Small"}


def run_step(fn, a):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            fn(a)
            status, msg = "ok", ""
        except TmtInputError as e:
            status, msg = "E", str(e).splitlines()[0][:160]
        except Exception as e:  # noqa: BLE001  anything else is a bug
            status, msg = "BUG", f"{type(e).__name__}: {str(e).splitlines()[0][:140] if str(e) else ''}"
            frames = [f for f in traceback.extract_tb(e.__traceback__) if "/tmetoolkit/" in f.filename]
            if frames:
                msg += f" @ {frames[-1].filename.split('/tmetoolkit/')[-1]}:{frames[-1].lineno}"
        finally:
            plt.close("all")
    wcls = sorted({x.category.__name__ for x in w if issubclass(x.category, tmt.TmtWarning)})
    other = sorted({x.category.__name__ for x in w if not issubclass(x.category, tmt.TmtWarning)
                    and x.category.__module__.startswith("tmetoolkit")})
    return status, msg, wcls + other


# ---------------------------------------------------------------- invariants
def snapshot(a: ad.AnnData) -> dict:
    def mat(X):
        if X is None:
            return None
        if hasattr(X, "to_memory"):  # a backed sparse dataset
            return X.to_memory()
        return X.copy() if hasattr(X, "copy") else np.array(X)

    X = a.X[:] if a.isbacked and not hasattr(a.X, "to_memory") else a.X
    return {
        "X": mat(X), "raw": None if a.raw is None else (mat(a.raw.X), list(a.raw.var_names)),
        "layers": {k: mat(v) for k, v in a.layers.items()},
        "obs": {c: a.obs[c].copy() for c in a.obs.columns if not c.startswith(PREFIX)},
        "var": {c: a.var[c].copy() for c in a.var.columns if not c.startswith(PREFIX)},
        "uns": sorted(k for k in a.uns if not k.startswith(PREFIX) and not k.endswith("_colors")),
        "obsm": sorted(k for k in a.obsm if not k.startswith(PREFIX)), "var_names": list(a.var_names),
        "obs_names": list(a.obs_names), "dtype": getattr(X, "dtype", None), "fmt": type(X).__name__,
    }


def _same(x, y) -> bool:
    if x is None or y is None:
        return x is y
    if sp.issparse(x) or sp.issparse(y):
        if not (sp.issparse(x) and sp.issparse(y)) or x.shape != y.shape or type(x) is not type(y):
            return False
        d = (x != y)
        return d.nnz == 0 if sp.issparse(d) else not np.any(d)
    x, y = np.asarray(x), np.asarray(y)
    return x.shape == y.shape and np.array_equal(x, y, equal_nan=True)


def changed(before: dict, after: dict) -> list[str]:
    out = []
    if not _same(before["X"], after["X"]) or before["dtype"] != after["dtype"] or before["fmt"] != after["fmt"]:
        out.append("X")
    if (before["raw"] is None) != (after["raw"] is None) or (
            before["raw"] is not None and (not _same(before["raw"][0], after["raw"][0])
                                           or before["raw"][1] != after["raw"][1])):
        out.append("raw")
    for k in set(before["layers"]) | set(after["layers"]):
        if k not in before["layers"] or k not in after["layers"] or not _same(before["layers"][k], after["layers"][k]):
            out.append(f"layers[{k}]")
    for part in ("obs", "var"):
        for c in set(before[part]) | set(after[part]):
            if c not in before[part] or c not in after[part] or not before[part][c].equals(after[part][c]):
                out.append(f"{part}[{c}]")
    for part in ("uns", "obsm", "var_names", "obs_names"):
        if before[part] != after[part]:
            out.append(part)
    return out


def results(a: ad.AnnData) -> dict:
    """Everything tmetoolkit wrote, as comparable objects."""
    out = {c: a.obs[c].astype(str).to_numpy() if a.obs[c].dtype.kind not in "fi" else a.obs[c].to_numpy()
           for c in a.obs.columns if c.startswith(PREFIX)}
    for k in a.obsm:
        if k.startswith(PREFIX):
            out[f"obsm:{k}"] = np.asarray(a.obsm[k], dtype=float) if not isinstance(a.obsm[k], pd.DataFrame) \
                else a.obsm[k].select_dtypes("number").to_numpy(float)
    for k in a.uns:
        if k.startswith(PREFIX) and isinstance(a.uns[k], dict):
            for t in ("table", "long", "regions"):
                tab = a.uns[k].get(t)
                if isinstance(tab, pd.DataFrame):
                    out[f"uns:{k}:{t}"] = tab
    return out


def _equal(x, y) -> bool:
    if isinstance(x, pd.DataFrame):
        if not isinstance(y, pd.DataFrame) or x.shape != y.shape:
            return False
        try:
            pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-9, atol=1e-12)
            return True
        except AssertionError:
            return False
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        return False
    if x.dtype.kind in "fc" and y.dtype.kind in "fc":
        return np.allclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True)
    return np.array_equal(x.astype(str), y.astype(str))


def differing(r1: dict, r2: dict) -> list[str]:
    return sorted(k for k in set(r1) | set(r2) if k not in r1 or k not in r2 or not _equal(r1[k], r2[k]))


# ---------------------------------------------------------------- one variant
def pipeline(a, steps):
    rec = {}
    for name, fn in steps:
        rec[name] = run_step(fn, a)
    return rec


def agreement(ref: ad.AnnData | None, a: ad.AnnData, key: str | None) -> dict:
    out = {}
    if ref is None:
        return out
    if not a.obs_names.is_unique:  # compare by position (the variant renamed cells, not reordered them)
        a = a.copy() if not a.isbacked else a.to_memory()
        a.obs_names = ref.obs_names if a.n_obs == ref.n_obs else [f"_{i}" for i in range(a.n_obs)]
    common = a.obs_names.intersection(ref.obs_names)
    if "tmt_lineage" in a.obs and "tmt_lineage" in ref.obs and len(common):
        out["lin"] = float((a.obs.loc[common, "tmt_lineage"].astype(str)
                            == ref.obs.loc[common, "tmt_lineage"].astype(str)).mean())
    if "tmt_state" in a.obs and "tmt_state" in ref.obs and len(common):
        out["state"] = float((a.obs.loc[common, "tmt_state"].astype(str)
                              == ref.obs.loc[common, "tmt_state"].astype(str)).mean())
    for k, col, tag in (("tmt_immunosuppression", "composite", "sup_rho"),):
        if k in a.uns and k in ref.uns:
            x, y = a.uns[k]["table"], ref.uns[k]["table"]
            x.index, y.index = x.index.astype(str), y.index.astype(str)
            idx = x.index.intersection(y.index)
            if col in x and col in y and len(idx) >= 3:
                out[tag] = float(spearmanr(x.loc[idx, col], y.loc[idx, col]).statistic)
    k = "tmt_immune_phenotype"
    if k in a.uns and k in ref.uns and "phenotype" in a.uns[k].get("table", pd.DataFrame()):
        x, y = a.uns[k]["table"], ref.uns[k]["table"]
        x.index, y.index = x.index.astype(str), y.index.astype(str)
        idx = x.index.intersection(y.index)
        if len(idx):
            out["pheno"] = float((x.loc[idx, "phenotype"].astype(str) == y.loc[idx, "phenotype"].astype(str)).mean())
    return out


def _round_trip(a: ad.AnnData, path: Path) -> None:
    """Every result survives write_h5ad / read_h5ad."""
    if a.isbacked:
        a = a.to_memory()
    a.write_h5ad(path)
    back = ad.read_h5ad(path)
    lost = differing(results(a), results(back))
    if lost:
        raise AssertionError(f"changed by write_h5ad/read_h5ad: {lost}")


def run_cli(a: ad.AnnData, outdir: Path, ctx: dict, flags: list[str]):
    """``python -m tmetoolkit run`` on the variant (before any tool ran: a fresh copy): exit 0 ok, 2 typed refusal,
    anything else a bug."""
    import subprocess

    fresh = VARIANTS[ctx["variant"]](ctx["base"], ctx)[0]
    path = outdir / "cli_in.h5ad"
    fresh.write_h5ad(path)
    cmd = [sys.executable, "-m", "tmetoolkit", "run", str(path), "-o", str(outdir / "cli"), "-q"] + flags
    if ctx["sample_key"]:
        cmd += ["--sample-key", ctx["sample_key"]]
    if ctx["kind"] == "bulk":
        cmd += ["--bulk"]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=900, check=False)
    err = (p.stderr.strip().splitlines() or [""])[-1][:160]
    status = {0: "ok", 2: "E"}.get(p.returncode, "BUG")
    return status, "" if status == "ok" else err, []


def run_variant(dname, vname, base, ctx, ref, check_det: bool):
    made = VARIANTS[vname](base, ctx)
    if made is None:
        return None
    a, extra = made
    outdir = Path(ctx["tmp"]) / f"{dname}_{vname}"
    outdir.mkdir(parents=True, exist_ok=True)
    steps = callers(dname, ctx["sample_key"], ctx["kind"], outdir, extra.get("layer"), extra.get("groupby"))
    t0 = time.time()
    before = snapshot(a)
    rec = pipeline(a, steps)
    mutated = changed(before, snapshot(a))
    rec["write_h5ad"] = run_step(lambda x: _round_trip(x, outdir / "out.h5ad"), a)
    if vname in CLI and not a.isbacked:
        rec["cli"] = run_cli(a, outdir, ctx, CLI[vname])
    nondet = []
    if check_det and not a.isbacked:
        made2 = VARIANTS[vname](base, ctx)
        a2 = made2[0]
        pipeline(a2, steps)
        nondet = differing(results(a), results(a2))
    return {"rec": rec, "mutated": mutated, "nondet": nondet, "agree": agreement(ref, a, ctx["sample_key"]),
            "secs": time.time() - t0, "adata": a}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a subset of variants, no determinism re-run")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--variants", default=None)
    p.add_argument("--no-determinism", action="store_true")
    p.add_argument("--verbose", action="store_true", help="print every message, not only bugs")
    args = p.parse_args(argv)
    sc.settings.verbosity = 0
    import logging

    logging.getLogger("tmetoolkit").setLevel(logging.ERROR)
    vnames = args.variants.split(",") if args.variants else (QUICK if args.quick else list(VARIANTS))
    defects, rows, messages = [], [], {}
    tmp = tempfile.mkdtemp(prefix="tmt_stress_")
    for dname in args.sets.split(","):
        try:
            base, key, kind, label = SETS[dname]()
        except (FileNotFoundError, OSError) as e:
            print(f"{dname}: skipped ({e})")
            continue
        ctx = {"name": dname, "sample_key": key, "kind": kind, "label_key": label, "tmp": tmp, "base": base}
        ref = None
        for vname in (["shared"] + [v for v in vnames if v != "shared"]):
            if vname not in vnames and vname != "shared":
                continue
            ctx["variant"] = vname
            res = run_variant(dname, vname, base, ctx, ref, check_det=not (args.quick or args.no_determinism)
                              and vname in DETERMINISM)
            if res is None:
                continue
            if vname == "shared":
                ref = res["adata"]
            row = {"set": dname, "variant": vname}
            for step, (status, msg, wcls) in res["rec"].items():
                ws = "+".join(SHORT.get(w, w) for w in wcls)
                row[step] = status + (f"[{ws}]" if ws else "")
                if status != "ok":
                    messages.setdefault((dname, vname), []).append(f"{step}: {status} {msg}")
                if status == "BUG":
                    defects.append(f"{dname}/{vname} {step}: {msg}")
            row["mutated"] = ",".join(res["mutated"]) or "-"
            row["nondet"] = ",".join(res["nondet"]) or "-"
            row["agree"] = " ".join(f"{k}={v:.2f}" for k, v in res["agree"].items()) if vname != "shared" else ""
            row["s"] = f"{res['secs']:.0f}"
            rows.append(row)
            if res["mutated"]:
                defects.append(f"{dname}/{vname}: input changed: {row['mutated']}")
            if res["nondet"]:
                defects.append(f"{dname}/{vname}: two runs differ: {row['nondet']}")
            print(f"  {dname}/{vname} {res['secs']:.0f}s", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows).fillna("")  # cli: run for the variants of CLI only
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 400,
                           "display.max_colwidth", 60):
        cols = [c for c in table.columns if c not in ("set", "variant")]
        print(table.set_index(["set", "variant"])[cols].to_string())
    print("\nStatus: ok | E = TmtInputError (typed refusal) | BUG = other exception; [..] TmtWarning classes "
          "(W=TmtWarning, Cov=coverage, Empty=empty cells, Dup=repeated names, Sp=species, Small=small cohort)")
    print("\nRefusals and errors (first line):")
    for (d, v), ms in messages.items():
        for m in ms:
            if args.verbose or " BUG " in m or m.split(": ", 1)[1].startswith("E"):
                print(f"  {d}/{v} {m}")
    print(f"\nDefects ({len(defects)}):")
    for d in defects:
        print("  " + d)
    return 1 if defects else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    os._exit(130)

"""Stress the spatial public callers with the messy inputs users bring. Prints one table and a list of defects.

Callers: ``tl.compartments`` -> ``tl.immune_phenotype`` -> ``get.sample_table`` -> ``pl.spatial`` ->
``pl.immune_phenotype`` (and ``report`` on the variants in ``REPORTED``), on the real imaging sets of
../shared/data (skipped when absent), on simulated fields (``simulate_fields``, ``simulate``) and on Visium-like
spots (``datasets.to_spots``). Each set is brought to micrometres in ``obsm["spatial"]`` with a string cell-type
column ``obs["ct"]`` (the base variant); every other variant is one messy form of the same cells.

Per caller x variant: ``ok``, a typed error (``TmtInputError`` and subclasses: expected for bad input), another
exception (a bug), and the tmetoolkit warnings raised. Checks:

(a) the input AnnData keeps ``X``, ``var``, ``layers``, ``raw``, its ``obs``/``obsm``/``uns`` entries unchanged;
    only ``tmt_`` keys are added;
(b) determinism: the base chain run twice gives identical tables;
(c) invariances: sample calls, per-cell compartments, densities, areas and ``infiltration_vs_null`` equal those of
    the base under micrometres vs pixels with ``pixel_size``, obsm as DataFrame or with a z column, label dtypes,
    translation by 1e6 um, rotation / flip (calls), cell order; a sample's compartments and call unchanged when
    other samples (overlapping in their coordinates) are added.

Differences in border distance up to 1e-5 um count as identical (coordinates are rounded to a picometre).
Rotation and float32 are checked for the calls only (the tissue grid is axis-aligned): their other differences
are listed, not counted as defects.

Usage: ``PYTHONPATH=. python benchmarks/stress_spatial.py [--quick] [--sets phenoptr chen ...] [--long]``
(about 4 minutes on 2 cores; the raw outcomes go to ``<tempdir>/tmt_stress_spatial.csv``).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import anndata
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp

import tmetoolkit as tmt
from tmetoolkit._utils import TmtInputError, TmtWarning

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PX = 0.2125  # Xenium image pixels: micrometres per pixel
NUMERIC = ("effector_per_mm2", "area_mm2", "area_tumor_mm2", "infiltration_vs_null", "rho_tumor", "rho_stroma",
           "infiltration_ratio", "n_tumor_spots")


# ------------------------------------------------------------------ data sets: cells in micrometres, obs["ct"]
def _base(a: anndata.AnnData, xy_um, ct, sample="S1", region=None) -> anndata.AnnData:
    b = anndata.AnnData(X=a.X if a.X is not None else sp.csr_matrix((a.n_obs, 0)), obs=pd.DataFrame(index=a.obs_names),
                        var=a.var.copy())
    b.obs["sample"] = sample
    b.obs["ct"] = np.asarray(ct, dtype=object).astype(str)
    if region is not None:
        b.obs["region"] = np.asarray(region, dtype=object).astype(str)
    b.obsm["spatial"] = np.asarray(xy_um, dtype=float)
    b.obs_names_make_unique()
    return b


def load_sets(quick: bool) -> dict:
    """name -> (AnnData base, tumour labels, effector labels)."""
    sets = {}
    if SHARED.is_dir():
        a = tmt.datasets.load("phenoptr", path=SHARED)
        sets["phenoptr"] = (_base(a, a.obsm["spatial"], a.obs["phenotype"], region=a.obs["tissue_category"]),
                            ["CK+"], ["CD8+"])
        a = tmt.datasets.load("chen2024", path=SHARED)
        eff = sorted(c for c in a.obs["type_lvl2"].astype(str).unique() if "CD8" in c)
        sets["chen"] = (_base(a, a.obsm["spatial"], a.obs["type_lvl2"], region=a.obs["hubID"]), ["Epithelial"], eff)
        a = anndata.read_h5ad(SHARED / "schurch2020_crc_codex" / "schurch2020_crc_codex_spot9A_2434cells.h5ad")
        sets["schurch"] = (_base(a, a.obsm["spatial"] * 0.37744, a.obs["ClusterName"],
                                 region=a.obs["neighborhood_name"]), ["tumor cells"], ["CD8+ T cells"])
        a = tmt.datasets.load("scimap", path=SHARED)  # CyCIF: x/y in pixels of unknown size, taken as given
        tum = sorted(c for c in a.obs["phenotype"].astype(str).unique() if c.startswith("Tumor"))
        sets["scimap"] = (_base(a, a.obsm["spatial"], a.obs["phenotype"]), tum, ["CD8 T cells"])
        if not quick:  # no cell types: annotate's lineages (about 10 s)
            a = tmt.datasets.load("xenium_idc", path=SHARED)
            tmt.tl.annotate(a)
            ct = a.obs["tmt_lineage"].astype(str)
            sets["xenium"] = (_base(a, a.obsm["spatial"], ct, region=a.obs["region"]), ["Malignant/Epithelial"],
                              ["CD8 T"])
    f = tmt.datasets.simulate_fields(stroma_fractions=(0.3,), phenotypes=("inflamed", "excluded"), n_per_setting=1,
                                     seed=3)
    for s in f.obs["sample"].unique():
        m = (f.obs["sample"] == s).to_numpy()
        g = f[m]
        sets[f"field:{g.obs['true_phenotype'].iloc[0]}"] = (
            _base(g, g.obsm["spatial"], g.obs["cell_type"], region=g.obs["true_compartment"]),
            ["Malignant/Epithelial"], ["CD8 T"])
    s = tmt.datasets.simulate(n_samples=1, n_cells=1500, phenotypes=["excluded"], seed=5)
    sets["simulate"] = (_base(s, s.obsm["spatial"], s.obs["true_lineage"]),
                        ["Malignant/Epithelial"], ["CD8 T"])
    return sets


# ------------------------------------------------------------------ variants: (adata, kw) -> (adata, kw, check)
def _xy(a):
    return np.asarray(a.obsm["spatial"], dtype=float)


def v_base(a, kw):
    return a, kw, "ref"


def v_px_ps(a, kw):
    a.obsm["spatial"] = _xy(a) / PX
    return a, {**kw, "pixel_size": PX}, "equal"


def v_px(a, kw):
    a.obsm["spatial"] = _xy(a) / PX
    return a, kw, "scale-warning"


def _obs_only(cols):
    def f(a, kw):
        xy = _xy(a)
        a.obs[cols[0]], a.obs[cols[1]] = xy[:, 0], xy[:, 1]
        del a.obsm["spatial"]
        return a, kw, "typed"
    return f


def v_df(a, kw):
    a.obsm["spatial"] = pd.DataFrame(_xy(a), index=a.obs_names, columns=["x", "y"])
    return a, kw, "equal"


def v_xyz(a, kw):
    a.obsm["spatial"] = np.c_[_xy(a), np.random.default_rng(0).uniform(0, 5, a.n_obs)]
    return a, kw, "equal"


def v_f32(a, kw):
    a.obsm["spatial"] = _xy(a).astype(np.float32)
    return a, kw, "calls"


def v_nan(a, kw):
    xy = _xy(a)
    xy[[3, 10, 50]] = np.nan
    a.obsm["spatial"] = xy
    return a, kw, "typed"


def v_dup(a, kw):
    xy = _xy(a)
    xy[1:40:4] = xy[0:39:4]  # 10 cells on their neighbour's position
    a.obsm["spatial"] = xy
    return a, kw, "ok"


def v_cat_unused(a, kw):
    a.obs["ct"] = pd.Categorical(a.obs["ct"], categories=sorted(a.obs["ct"].unique()) + ["unused A", "zzz"])
    return a, kw, "equal"


def v_cat_nan(a, kw):
    ct = a.obs["ct"].astype(object)
    ct.iloc[[5, 6, 7]] = np.nan
    a.obs["ct"] = pd.Categorical(ct)
    return a, kw, "ok"


def v_int(a, kw):
    codes = {c: i for i, c in enumerate(sorted(a.obs["ct"].unique()))}
    a.obs["ct"] = a.obs["ct"].map(codes).astype(int)
    return a, {**kw, "tumor_labels": [codes[t] for t in kw["tumor_labels"] if t in codes],
               "effector_labels": [codes[t] for t in kw["effector_labels"] if t in codes]}, "equal"


def v_rot90(a, kw):
    xy = _xy(a)
    a.obsm["spatial"] = np.c_[-xy[:, 1], xy[:, 0]]
    return a, kw, "calls"


def v_flip(a, kw):
    xy = _xy(a)
    a.obsm["spatial"] = np.c_[-xy[:, 0], xy[:, 1]]
    return a, kw, "calls"


def v_rot30(a, kw):
    xy, t = _xy(a), np.deg2rad(30)
    a.obsm["spatial"] = xy @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    return a, kw, "calls"


def v_offset(a, kw):
    a.obsm["spatial"] = _xy(a) + 1e6
    return a, kw, "equal"


def v_offset_odd(a, kw):
    a.obsm["spatial"] = _xy(a) + np.array([1234567.89, 7654321.01])
    return a, kw, "equal"


def v_order(a, kw):
    return a[np.random.default_rng(1).permutation(a.n_obs)].copy(), kw, "equal"


def v_region(a, kw):
    if "region" not in a.obs:
        xy = _xy(a)
        a.obs["region"] = np.where(xy[:, 0] < np.median(xy[:, 0]), "left", "right")
    return a, {**kw, "region_key": "region"}, "calls"


def v_sample_nan(a, kw):
    s = a.obs["sample"].astype(object)
    s.iloc[[0, 1]] = np.nan
    a.obs["sample"] = s
    return a, kw, "typed"


def v_sample_int(a, kw):
    a.obs["sample"] = 7
    return a, kw, "calls"


def v_no_sample_key(a, kw):
    del a.obs["sample"]
    return a, {**kw, "sample_key": None}, "calls"


def _add_sample(a, other, name):
    other = other.copy()
    other.obs["sample"] = name
    other.obs_names = [f"{name}_{i}" for i in range(other.n_obs)]
    out = anndata.concat([a, other], join="outer", merge="same")
    out.obs["ct"] = out.obs["ct"].astype(str)
    return out


def v_plus_overlap(a, kw):
    """A second sample: the same cells rotated about their centre, overlapping the first in coordinates."""
    b = a.copy()
    xy = _xy(b)
    c = xy.mean(axis=0)
    b.obsm["spatial"] = (xy - c)[:, ::-1] * [1, -1] + c
    return _add_sample(a, b, "S2"), kw, "S1"


def v_plus_no_tumour(a, kw):
    b = a[~a.obs["ct"].isin(kw["tumor_labels"])].copy()
    return _add_sample(a, b, "S2"), kw, "S1"


def v_plus_no_cd8(a, kw):
    b = a.copy()
    b.obs["ct"] = b.obs["ct"].where(~b.obs["ct"].isin(kw["effector_labels"]), "other")
    return _add_sample(a, b, "S2"), kw, "S1"


def v_plus_3cells(a, kw):
    return _add_sample(a, a[:3].copy(), "S2"), kw, "S1"


def v_plus_1cell(a, kw):
    return _add_sample(a, a[:1].copy(), "S2"), kw, "S1"


def v_sample_order(a, kw):
    """Two samples, the second listed first (cells and categories)."""
    b = a.copy()
    b.obsm["spatial"] = _xy(b) + 50.0
    m = _add_sample(a, b, "S0")
    m = m[np.r_[np.arange(a.n_obs, m.n_obs), np.arange(a.n_obs)]].copy()
    m.obs["sample"] = pd.Categorical(m.obs["sample"], categories=["S1", "S0"])
    return m, kw, "S1"


def v_int_samples(a, kw):
    b = a.copy()
    b.obsm["spatial"] = _xy(b) + 50.0
    m = _add_sample(a, b, "S2")
    m.obs["sample"] = m.obs["sample"].map({"S1": 1, "S2": 2}).astype(int)
    return m, kw, "1"


def v_dup_names(a, kw):
    """Two samples concatenated without unique cell names (anndata.concat without index_unique)."""
    b = a.copy()
    b.obsm["spatial"] = _xy(b) + 50.0
    b.obs["sample"] = "S2"
    out = anndata.concat([a, b], merge="same")
    out.obs["ct"] = out.obs["ct"].astype(str)
    return out, kw, "S1"


def v_all_tumour(a, kw):
    b = a[a.obs["ct"].isin(kw["tumor_labels"])].copy()
    return _add_sample(a, b, "S2"), kw, "S1"


def v_sample_cat_unused(a, kw):
    a.obs["sample"] = pd.Categorical(a.obs["sample"], categories=["S1", "S0", "unused"])
    return a, kw, "calls"


def v_region_messy(a, kw):
    xy = _xy(a)
    r = pd.Series(np.where(xy[:, 0] < np.median(xy[:, 0]), 1, 2), index=a.obs_names).astype(float)
    r.iloc[::7] = np.nan  # cells without a region
    a.obs["region"] = r
    return a, {**kw, "region_key": "region"}, "calls"


def v_collinear(a, kw):
    """A second sample whose cells lie on one line (a strip of a core)."""
    b = a[:200].copy()
    b.obsm["spatial"] = np.c_[np.arange(200) * 10.0, np.zeros(200)]
    return _add_sample(a, b, "S2"), kw, "S1"


def v_sparse(a, kw):
    a.obsm["spatial"] = sp.csr_matrix(_xy(a))
    return a, kw, "equal"


def v_df_text(a, kw):
    xy = _xy(a)
    a.obsm["spatial"] = pd.DataFrame({"fov": "A", "x": xy[:, 0], "y": xy[:, 1]}, index=a.obs_names)
    return a, kw, "typed"


def v_image_nan(a, kw):
    a.obs["fov"] = pd.Series("F1", index=a.obs_names, dtype=object).where(np.arange(a.n_obs) % 40 > 0)
    return a, {**kw, "image_key": "fov"}, "typed"


def v_shared_label(a, kw):
    return a, {**kw, "tumor_labels": kw["tumor_labels"] + kw["effector_labels"][:1]}, "typed-pheno"


VARIANTS = {
    "um": v_base, "px+pixel_size": v_px_ps, "px, no pixel_size": v_px, "obs x/y only": _obs_only(("x", "y")),
    "obs X_centroid only": _obs_only(("X_centroid", "Y_centroid")),
    "obs x_location only": _obs_only(("x_location", "y_location")), "obsm DataFrame": v_df, "obsm x,y,z": v_xyz,
    "float32": v_f32, "NaN xy (3 cells)": v_nan, "dup xy (10 cells)": v_dup, "ct categorical+unused": v_cat_unused,
    "ct categorical with NaN": v_cat_nan, "ct ints": v_int, "rotate 90": v_rot90, "flip x": v_flip,
    "rotate 30": v_rot30, "offset +1e6": v_offset, "offset odd": v_offset_odd, "cell order": v_order,
    "region_key": v_region, "sample NaN": v_sample_nan, "sample int": v_sample_int, "no sample_key": v_no_sample_key,
    "+overlapping sample": v_plus_overlap, "+sample w/o tumour": v_plus_no_tumour, "+sample w/o CD8": v_plus_no_cd8,
    "+3-cell sample": v_plus_3cells, "+1-cell sample": v_plus_1cell, "sample order": v_sample_order,
    "int samples": v_int_samples, "dup obs_names (2 samples)": v_dup_names, "+all-tumour sample": v_all_tumour,
    "sample cat unused": v_sample_cat_unused, "region float+NaN": v_region_messy, "+collinear sample": v_collinear,
    "view": "view", "copy=True": "copy", "pheno first, px+pixel_size": "pheno_first", "obsm sparse": v_sparse,
    "obsm DataFrame+text col": v_df_text, "image_key with NaN": v_image_nan, "effector label in tumor_labels":
    v_shared_label,
}
# the report runs on these (it draws every table and map: the messy ones most of all)
REPORTED = ("um", "ct ints", "+sample w/o tumour", "+3-cell sample", "+1-cell sample", "+collinear sample",
            "region float+NaN", "int samples", "dup obs_names (2 samples)")
QUICK = ("um", "px+pixel_size", "px, no pixel_size", "obsm DataFrame", "ct ints", "rotate 90", "offset +1e6",
         "+overlapping sample", "+3-cell sample")


# ------------------------------------------------------------------ running and checking
def _fingerprint(a) -> dict:
    """What a tool may not change: every non-tmt_ entry."""
    def h(x):
        if x is None:
            return None
        if sp.issparse(x):
            x = x.toarray()
        return hashlib.sha1(np.ascontiguousarray(np.asarray(x))).hexdigest()

    return {"X": h(a.X), "var": a.var.copy(), "layers": {k: h(v) for k, v in a.layers.items()},
            "raw": None if a.raw is None else h(a.raw.X),
            "obs": a.obs[[c for c in a.obs.columns if not str(c).startswith("tmt_")]].copy(),
            "obs_names": list(a.obs_names),
            "obsm": {k: (v.copy() if isinstance(v, pd.DataFrame) else ("sparse", h(v)) if sp.issparse(v)
                         else np.array(v, copy=True)) for k, v in a.obsm.items() if not k.startswith("tmt_")},
            "uns": sorted(k for k in a.uns if not k.startswith("tmt_"))}


def _changed(before, a) -> list[str]:
    after = _fingerprint(a)
    bad = []
    for k in ("X", "raw", "uns", "obs_names"):
        if before[k] != after[k]:
            bad.append(k)
    if before["layers"] != after["layers"]:
        bad.append("layers")
    if not before["var"].equals(after["var"]):
        bad.append("var")
    if not before["obs"].equals(after["obs"]) or list(before["obs"].columns) != list(after["obs"].columns):
        bad.append("obs")
    for k, v in before["obsm"].items():
        w = after["obsm"].get(k)
        if isinstance(v, (pd.DataFrame, tuple)):
            same = type(v) is type(w) and (v.equals(w) if isinstance(v, pd.DataFrame) else v == w)
        else:
            same = (w is not None and type(v) is type(w) and np.shape(v) == np.shape(w)
                    and np.array_equal(np.asarray(v), np.asarray(w), equal_nan=np.asarray(v).dtype.kind == "f")
                    and np.asarray(v).dtype == np.asarray(w).dtype)
        if not same:
            bad.append(f"obsm[{k}]")
    if set(after["obsm"]) - set(before["obsm"]):
        bad.append("obsm+")
    return bad


def _outcome(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            fn()
            status = "ok"
        except TmtInputError as e:
            status = f"typed {type(e).__name__}: {str(e).splitlines()[0][:110]}"
        except Exception as e:  # noqa: BLE001 - the point: any other exception is a bug
            tb = traceback.extract_tb(e.__traceback__)[-1]
            status = f"BUG {type(e).__name__}: {str(e)[:90]} @ {Path(tb.filename).name}:{tb.lineno}"
    tw = sorted({c.category.__name__ for c in w if issubclass(c.category, TmtWarning)})
    # anndata's own warning on writing into a view (as scanpy's tools give it) is not tmetoolkit's
    other = sorted({c.category.__name__ for c in w if not issubclass(c.category, TmtWarning)
                    and "tmetoolkit" in str(c.filename) and c.category is not anndata.ImplicitModificationWarning})
    return status, tw + [f"{o}(untyped)" for o in other], [str(c.message)[:160] for c in w
                                                          if issubclass(c.category, TmtWarning)]


def run_chain(a, kw, *, plots=True, report_dir=None, mode="") -> dict:
    """compartments -> immune_phenotype -> sample_table -> plots (-> report); ``mode``: "copy" (copy=True: the
    input must stay as it was, the copy is checked), "pheno_first" (immune_phenotype builds the compartments
    itself, given pixel_size), "view" (a view is passed)."""
    ckw = {k: kw[k] for k in ("sample_key", "tumor_labels", "pixel_size", "image_key") if k in kw}
    pkw = {k: kw[k] for k in ("sample_key", "tumor_labels", "effector_labels", "region_key", "image_key") if k in kw}
    out = {}
    before = _fingerprint(a)
    if mode == "copy":
        box = {}
        out["compartments"] = _outcome(lambda: box.update(a=tmt.tl.compartments(a, cell_type_key="ct", copy=True,
                                                                               **ckw)))
        untouched = _changed(before, a) + (["tmt_ keys added to the input"] if any(
            str(k).startswith("tmt_") for k in [*a.obs.columns, *a.uns]) else [])
        a = box.get("a", a)
        out["immune_phenotype"] = _outcome(lambda: box.update(b=tmt.tl.immune_phenotype(a, cell_type_key="ct",
                                                                                       copy=True, **pkw)))
        a = box.get("b", a)
    elif mode == "pheno_first":
        out["compartments"] = ("ok", [], [])
        out["immune_phenotype"] = _outcome(lambda: tmt.tl.immune_phenotype(a, cell_type_key="ct", **pkw,
                                                                           pixel_size=kw["pixel_size"]))
    else:
        with warnings.catch_warnings():  # anndata's view -> actual warning is the user's business
            warnings.simplefilter("ignore", anndata.ImplicitModificationWarning)
            out["compartments"] = _outcome(lambda: tmt.tl.compartments(a, cell_type_key="ct", **ckw))
        if mode == "view" and a.is_view:
            out["compartments"] = ("BUG view not written", [], [])
        out["immune_phenotype"] = _outcome(lambda: tmt.tl.immune_phenotype(a, cell_type_key="ct", **pkw))
    out["sample_table"] = _outcome(lambda: tmt.get.sample_table(a))
    if plots:
        out["pl.spatial"] = _outcome(lambda: plt.close(tmt.pl.spatial(a, color="ct", highlight=None)))
        out["pl.spatial dist"] = _outcome(lambda: plt.close(tmt.pl.spatial(a, color="tmt_border_distance")))
        a.obs["is_effector"] = a.obs["ct"].isin(kw["effector_labels"]).to_numpy() if "ct" in a.obs else False
        out["pl.spatial bool"] = _outcome(lambda: plt.close(tmt.pl.spatial(a, color="is_effector", highlight=None)))
        del a.obs["is_effector"]
        out["pl.immune_phenotype"] = _outcome(lambda: plt.close(tmt.pl.immune_phenotype(a).figure))
        out["pl.immune_phenotype regions"] = _outcome(
            lambda: plt.close(tmt.pl.immune_phenotype(a, regions=True).figure))
    if report_dir is not None:
        out["report"] = _outcome(lambda: tmt.report(a, Path(report_dir) / "report.html"))
        plt.close("all")
    out["_mutated"] = untouched if mode == "copy" else ([] if mode == "view" else _changed(before, a))
    out["_adata"] = a
    return out


def _result(a) -> dict:
    r = {}
    if "tmt_compartment" in a.obs:
        r["sample"] = (a.obs["sample"].astype(str) if "sample" in a.obs else pd.Series("all", index=a.obs_names))
        r["comp"] = a.obs["tmt_compartment"].astype(str)
        r["dist"] = a.obs["tmt_border_distance"].astype(float)
    if "tmt_immune_phenotype" in a.uns:
        r["table"] = a.uns["tmt_immune_phenotype"]["table"]
    if "tmt_compartments" in a.uns:
        r["ctable"] = a.uns["tmt_compartments"]["table"]
    return r


def compare(ref: dict, res: dict, sample_map: dict, exact: bool) -> tuple[str, bool]:
    """Agreement of ``res`` with ``ref``: per-cell compartments, sample calls, numeric features."""
    if "table" not in res or "table" not in ref:
        return "no result", False
    notes, ok = [], True
    mine = (res["sample"] == next(iter(sample_map.values()))).to_numpy()  # the reference's cells, names unique
    comp, dist = res["comp"][mine], res["dist"][mine]
    common = ref["comp"].index.intersection(comp.index)
    agree = float((ref["comp"][common] == comp[common]).mean())
    if agree < 1:
        notes.append(f"comp agree {agree:.4f}")
        ok = ok and not exact
    dd = np.nanmax(np.abs(ref["dist"][common].to_numpy() - dist[common].to_numpy())) \
        if np.isfinite(ref["dist"][common]).any() else 0.0
    if dd > 1e-5:  # coordinates are rounded to a picometre (1e-6 um): smaller differences are that rounding
        notes.append(f"|d dist| {dd:.2g} um")
        ok = ok and not exact
    for s_ref, s_res in sample_map.items():
        t0, t1 = ref["table"], res["table"]
        if s_res not in t1.index:
            notes.append(f"sample {s_res} missing")
            ok = False
            continue
        p0, p1 = str(t0.loc[s_ref, "phenotype"]), str(t1.loc[s_res, "phenotype"])
        if p0 != p1:
            notes.append(f"CALL {p0}->{p1}")
            ok = False
        rel, worst = 0.0, ""
        for c in (c for c in NUMERIC if c in t0.columns and c in t1.columns):
            x, y = float(t0.loc[s_ref, c]), float(t1.loc[s_res, c])
            r = np.inf if np.isnan(x) != np.isnan(y) else (abs(y / x - 1) if np.isfinite(x) and x != 0 else 0.0)
            if r > rel:
                rel, worst = r, f"{c} {x:.4g}->{y:.4g}"
        if rel > 1e-9:
            notes.append(f"max rel diff {rel:.2g} ({worst})")
            ok = ok and not (exact and rel > 1e-6)
    return "; ".join(notes) or "identical", ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few variants, no Xenium")
    ap.add_argument("--sets", nargs="*", help="only these sets")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--long", action="store_true", help="one line per set x variant")
    args = ap.parse_args()
    t_start = time.time()
    sets = load_sets(args.quick)
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets}
    variants = {k: VARIANTS[k] for k in QUICK} if args.quick else VARIANTS
    rows, defects, messages = [], [], {}
    report_root = Path(tempfile.gettempdir()) / "tmt_stress_reports"
    for name, (base, tum, eff) in sets.items():
        kw0 = {"sample_key": "sample", "tumor_labels": tum, "effector_labels": eff}
        ref = None
        for vname, fn in variants.items():
            mode = fn if isinstance(fn, str) else ""
            if mode == "view":  # a view of the cells, as adata[mask]
                big = _add_sample(base.copy(), base[:50].copy(), "S9")
                a, kw, check = big[big.obs["sample"] == "S1"], dict(kw0), "equal"
            elif mode == "pheno_first":
                a, kw, check = v_px_ps(base.copy(), dict(kw0))
            elif mode:
                a, kw, check = base.copy(), dict(kw0), "equal"
            else:
                a, kw, check = fn(base.copy(), dict(kw0))
            rdir = (report_root / name.replace(":", "_") / vname.replace(" ", "_").replace("/", "_")
                    if vname in REPORTED else None)
            if rdir is not None:
                rdir.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            out = run_chain(a, kw, plots=not args.no_plots, report_dir=rdir, mode=mode)
            res = _result(out["_adata"])
            note = ""
            if vname == "um":
                ref = res
                again = run_chain(base.copy(), dict(kw0), plots=False)
                r2 = _result(again["_adata"])
                same = (("table" in r2 and r2["table"].equals(ref["table"])) and r2["comp"].equals(ref["comp"])
                        and np.array_equal(r2["dist"].to_numpy(), ref["dist"].to_numpy(), equal_nan=True))
                note = "deterministic" if same else "NON-DETERMINISTIC"
                if not same:
                    defects.append((name, vname, "two runs differ"))
            elif check in ("equal", "calls") and ref is not None:
                note, ok = compare(ref, res, {"S1": str(a.obs["sample"].iloc[0]) if "sample" in a.obs else "all"},
                                   exact=check == "equal")
                if not ok:
                    defects.append((name, vname, f"invariance: {note}"))
            elif check in ("S1", "1") and ref is not None:
                note, ok = compare(ref, res, {"S1": check}, exact=True)
                if not ok:
                    defects.append((name, vname, f"invariance with another sample: {note}"))
            elif check == "scale-warning":
                warned = "TmtScaleWarning" in out["compartments"][1]
                note = "scale warned" if warned else "NO scale warning"
                if not warned:
                    defects.append((name, vname, "pixel coordinates without pixel_size not warned"))
            for caller, v in out.items():
                if caller.startswith("_"):
                    continue
                status, tw, msgs = v
                for m in msgs:  # the same message with other numbers or sample names counts once
                    key = re.sub(r"\d+(\.\d+)?", "#", re.sub(r"^not assessable: \S+ ", "not assessable: <sample> ", m))
                    messages.setdefault(key, set()).add(f"{name}/{vname}/{caller}")
                rows.append({"set": name, "variant": vname, "caller": caller, "status": status,
                             "warnings": ",".join(w.replace("Tmt", "").replace("Warning", "W") for w in tw)})
                if status.startswith("BUG"):
                    defects.append((name, vname, f"{caller}: {status}"))
                if any("untyped" in w for w in tw):
                    defects.append((name, vname, f"{caller}: untyped warning {tw}"))
                if ((check == "typed" and caller == "compartments" or check == "typed-pheno"
                     and caller == "immune_phenotype") and not status.startswith("typed")):
                    defects.append((name, vname, f"{caller}: expected a typed error, got {status}"))
            if out["_mutated"]:
                defects.append((name, vname, f"input changed outside tmt_ keys: {out['_mutated']}"))
            rows.append({"set": name, "variant": vname, "caller": "CHECK",
                         "status": (note or "-") + (f"; MUTATED {out['_mutated']}" if out["_mutated"] else ""),
                         "warnings": f"{time.time() - t0:.1f}s"})
            plt.close("all")
        print(f"[{name}: done at {time.time() - t_start:.0f} s]", flush=True)
    spots(rows, defects)
    pd.DataFrame(rows).to_csv(Path(tempfile.gettempdir()) / "tmt_stress_spatial.csv", index=False)
    print_table(pd.DataFrame(rows), long=args.long)
    print("\n== tmetoolkit warnings (first 160 characters, once each) ==")
    for m, where in messages.items():
        print(f"- {m}\n    [{len(where)}x: {', '.join(sorted(where)[:3])}]")
    print(f"\n== {len(defects)} defects ==")
    for d in dict.fromkeys(defects):
        print(" | ".join(d))
    print(f"total {time.time() - t_start:.0f} s")


SHORT = {"compartments": "comp", "immune_phenotype": "pheno", "sample_table": "table", "pl.spatial": "pl.sp",
         "pl.spatial dist": "pl.sp(d)", "pl.spatial bool": "pl.sp(b)",
         "pl.immune_phenotype": "pl.ph", "pl.immune_phenotype regions": "pl.ph(r)",
         "report": "report"}


def print_table(tab: pd.DataFrame, long: bool = False) -> None:
    """The outcome of every caller x variant (a code: ok, ok[warnings], T:<typed error>, BUG), one line per
    variant when all sets agree (else one per set); the invariance checks that are not "identical"; then the
    message of every typed error and bug, once each. ``long``: one line per set x variant."""
    def code(r):
        if r["status"] == "ok":
            return "ok" + (f"[{r['warnings']}]" if r["warnings"] else "")
        if r["status"].startswith("typed"):
            return "T:" + r["status"].split()[1].replace("Tmt", "").replace("Error", "")
        return "BUG"

    calls = tab[tab["caller"] != "CHECK"].copy()
    calls["code"] = calls.apply(code, axis=1)
    wide = calls.pivot_table(index=["set", "variant"], columns="caller", values="code", aggfunc="first", sort=False)
    wide = wide[[c for c in SHORT if c in wide.columns]].rename(columns=SHORT).fillna("-")
    checks = tab[tab["caller"] == "CHECK"].set_index(["set", "variant"])["status"].reindex(wide.index)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 120)
    pd.set_option("display.max_rows", None)
    if long:
        print(wide.assign(check=checks).to_string())
    else:
        cells = wide[wide.index.get_level_values("set") != "spots"]
        lines, odd = [], []
        for variant, g in cells.groupby(level="variant", sort=False):
            ch = checks.loc[g.index]
            n_id = int((ch == "identical").sum())
            summary = "; ".join(sorted(set(ch)))
            if ch.str.contains("comp agree|rel diff|dist|CALL|missing", regex=True).any() or n_id:
                summary = f"identical in {n_id}/{len(ch)}" + ("" if n_id == len(ch) else " (table below)")
            row = {"variant": variant}
            for c in g.columns:  # the code most sets share; the other sets are listed below the table
                common = g[c].value_counts().index[0]
                row[c] = common + ("*" if (g[c] != common).any() else "")
                odd += [(s_, variant, c, v) for (s_, _), v in g[c].items() if v != common]
            lines.append({**row, "check (vs um base)": summary})
        print(f"== cells: {cells.index.get_level_values('set').nunique()} sets "
              f"({', '.join(cells.index.get_level_values('set').unique())}) ==")
        print(pd.DataFrame(lines).to_string(index=False))
        grouped: dict = {}
        for a, b, c, d in odd:
            grouped.setdefault((a, c, d), []).append(b)
        print("* sets whose code differs from the one shown: " + "; ".join(
            f"{a} {c} {d} in {len(v)} variants" if len(v) > 4 else f"{a} {c} {d} in {', '.join(v)}"
            for (a, c, d), v in grouped.items()))
        print("\n== spots (to_spots of simulate, 2 slides) ==")
        sp_rows = wide[wide.index.get_level_values("set") == "spots"].droplevel("set")
        print(sp_rows.assign(check=checks.loc["spots"].to_numpy()).to_string())
        inv = checks[~checks.isin(["identical", "deterministic", "ref", "-", "scale warned"])]
        inv = inv[inv.index.get_level_values("set") != "spots"]
        print("\n== invariance checks that are not identical (per set) ==")
        print(inv.rename("difference from the um base").to_frame().to_string())
    print("\ncodes: W = TmtWarning, ScaleW = TmtScaleWarning; T:<x> = Tmt<x>Error (typed); '-' not run")
    msgs = calls[calls["status"] != "ok"]
    print("\n== typed errors and bugs (first line, once each) ==")
    for _, g in msgs.groupby(msgs["status"].str.replace(r"\d+(\.\d+)?", "#", regex=True), sort=False):
        status = g["status"].iloc[0]
        where = ", ".join(sorted({f"{a}/{b}" for a, b in zip(g["set"], g["variant"], strict=True)}))
        print(f"- {status}\n    [{g['caller'].iloc[0]}; {where[:160]}]")


# ------------------------------------------------------------------ spots
def spots(rows, defects) -> None:
    s = tmt.datasets.simulate(n_samples=2, n_cells=3000, phenotypes=["inflamed", "excluded"], seed=2)
    base = tmt.datasets.to_spots(s)
    ref = None
    spot_variants = {"um": lambda a: a, "obsm DataFrame": lambda a: _set(a, pd.DataFrame(_xy(a), index=a.obs_names)),
                     "float32": lambda a: _set(a, _xy(a).astype(np.float32)),
                     "offset +1e6": lambda a: _set(a, _xy(a) + 1e6),
                     "rotate 90": lambda a: _set(a, np.c_[-_xy(a)[:, 1], _xy(a)[:, 0]]),
                     "cell order": lambda a: a[np.random.default_rng(1).permutation(a.n_obs)].copy(),
                     "sample int": lambda a: _obs(a, "sample",
                                                  a.obs["sample"].astype("category").cat.codes.astype(int)),
                     "obsm x,y,z": lambda a: _set(a, np.c_[_xy(a), np.zeros(a.n_obs)]),
                     "px+pixel_size": lambda a: _set(a, _xy(a) / PX), "region_key": lambda a: a,
                     "NaN xy": lambda a: _set(a, np.where(np.arange(a.n_obs)[:, None] < 2, np.nan, _xy(a))),
                     "2 slides, no sample_key": lambda a: a}
    for vname, fn in spot_variants.items():
        a = fn(base.copy())
        kw = {"sample_key": None if vname == "2 slides, no sample_key" else "sample",
              **({"pixel_size": PX} if vname == "px+pixel_size" else {})}
        pkw = {"sample_key": kw["sample_key"], **({"region_key": "region"} if vname == "region_key" else {})}
        if vname == "region_key":
            a.obs["region"] = np.where(_xy(a)[:, 0] < np.median(_xy(a)[:, 0]), "left", "right")
        if vname == "2 slides, no sample_key":  # the slides' array positions repeat: refused, naming a column
            a.obs["slide"] = a.obs.pop("sample")
        before = _fingerprint(a)
        out = {"compartments": _outcome(lambda a=a, kw=kw: tmt.tl.compartments(a, **kw)),
               "immune_phenotype": _outcome(lambda a=a, pkw=pkw: tmt.tl.immune_phenotype(a, **pkw)),
               "sample_table": _outcome(lambda a=a: tmt.get.sample_table(a)),
               "pl.spatial": _outcome(lambda a=a: plt.close(tmt.pl.spatial(a, color="tmt_compartment"))),
               "pl.immune_phenotype": _outcome(lambda a=a: plt.close(tmt.pl.immune_phenotype(a).figure))}
        mutated = _changed(before, a)
        res = _result(a)
        if vname == "um":
            ref, note = res, "ref"
        elif vname in ("NaN xy", "2 slides, no sample_key"):
            note = "-"
        else:
            names = sorted(ref["table"].index)
            mapped = sorted(res["table"].index) if "table" in res else names
            note, ok = compare(ref, res, dict(zip(names, mapped, strict=False)),
                               exact=vname not in ("rotate 90", "float32"))
            if "tmt_immune_phenotype" in a.uns and vname == "px+pixel_size":
                ok = ok and a.uns["tmt_immune_phenotype"]["params"]["pixel_size"] == PX
            if not ok:
                defects.append(("spots", vname, f"invariance: {note}"))
        for caller, (status, tw, _m) in out.items():
            rows.append({"set": "spots", "variant": vname, "caller": caller, "status": status,
                         "warnings": ",".join(w.replace("Tmt", "").replace("Warning", "W") for w in tw)})
            if status.startswith("BUG"):
                defects.append(("spots", vname, f"{caller}: {status}"))
        if mutated:
            defects.append(("spots", vname, f"input changed outside tmt_ keys: {mutated}"))
        rows.append({"set": "spots", "variant": vname, "caller": "CHECK", "status": note, "warnings": ""})
        plt.close("all")


def _set(a, xy):
    a.obsm["spatial"] = xy
    return a


def _obs(a, key, values):
    a.obs[key] = values
    return a


if __name__ == "__main__":
    main()

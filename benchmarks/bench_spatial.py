"""Accuracy, speed and memory of ``tmt.tl.compartments`` + ``tmt.tl.immune_phenotype``. Prints every figure.

1. Realistic simulated fields (``tmt.datasets.simulate_fields``: tumour filling most of the field, septa, immune
   pockets, stroma 0-60%, CD8 T 10-2,000/mm^2), in micrometres and in CODEX pixels: calls per stroma share,
   compartment agreement, and whether pixels give the same numbers.
2. Real images in ../shared/data (skipped when absent): phenoptr's inForm tissue categories and Xenium's
   pathologist regions as truth for the compartments; Chen MERFISH and Schürch CODEX for plausibility.
3. 1,000,000 cells in 50 samples (cell types given): time of compartments + immune_phenotype.
4. ``--floor N``: the stroma floor of ``immune_phenotype`` derived from a null model: N planted excluded and N
   inflamed fields per planted stroma share from 1% to 20%, called without the floor; the share of excluded fields
   called excluded per bin of measured stroma share.
5. ``--ceiling``: why one rule cannot meet both compartment truths: agreement with phenoptr (inForm tissue
   categories) and with Xenium's pathologist regions over 641 settings of six families (region rule; region rule
   with opening and outward growth; neighbourhood majority; kernel-density ratio of tumour cells over all cells with
   closing and opening; alpha shapes; closing and rim scaled to each nest's own size), every setting chosen here
   *with* the labels, so the best is an upper bound, not a fit to adopt; the tumour-cell nests of both images and
   their truth; and an oracle that knows which tumour cells the pathologist left in the stroma.
6. ``--myoepithelium``: does the myoepithelial layer (kept by normal ducts, lobules and DCIS, lost by invasive
   carcinoma; Risom et al. 2022, Cell 185:299, doi:10.1016/j.cell.2021.12.023) set apart the Xenium nests the
   pathologist left in "Stroma"? Per nest of the drawn parenchyma: size, the pathologist's regions of its tumour
   cells, the share of its boundary tumour cells within two cell spacings of a myoepithelial-profile cell against
   the same share with that profile placed at random among all cells, ESR1/PGR/ERBB2/MKI67 means, and the
   agreement a rule "mostly rimmed nests are not invasive tumour" would reach.

Usage::

    python benchmarks/bench_spatial.py              # 1-3
    python benchmarks/bench_spatial.py --samples 10 # smaller timing cohort
    python benchmarks/bench_spatial.py --fields 0 --samples 0 --floor 20 --ceiling   # only 2, 4, 5
    python benchmarks/bench_spatial.py --fields 0 --samples 0 --myoepithelium        # only 2, 6
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy import ndimage
from scipy.spatial import cKDTree

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


def stroma_floor(n_per_setting: int) -> None:
    """Below which measured stroma share is a planted excluded field indistinguishable from an inflamed one?"""
    print("\n== stroma floor: planted excluded vs inflamed fields, called without the floor ==")
    fr = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.12, 0.15, 0.2)
    f = tmt.datasets.simulate_fields(stroma_fractions=fr, phenotypes=["inflamed", "excluded"],
                                     n_per_setting=n_per_setting, seed=7)
    tmt.tl.compartments(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR)
    tmt.tl.immune_phenotype(f, sample_key="sample", cell_type_key="cell_type", tumor_labels=TUMOUR,
                            min_stroma_fraction=0.0)
    t = f.uns["tmt_immune_phenotype"]["table"]
    truth = f.uns["tmt_simulation"]["samples"].set_index("sample").loc[t.index]
    d = pd.DataFrame({"planted": truth["stroma_fraction"], "phenotype": truth["phenotype"],
                      "measured": t["stroma_area_fraction"], "ratio": t["infiltration_vs_null"],
                      "as_planted": t["phenotype"].astype(str) == truth["phenotype"]})
    g = d.groupby(["planted", "phenotype"])
    print("per planted stroma share (median measured share, infiltration / chance, share called as planted):")
    print(pd.DataFrame({"measured": g["measured"].median(), "ratio_median": g["ratio"].median(),
                        "called_as_planted": g["as_planted"].mean()}).round(3).unstack().to_string())
    e = d[d["phenotype"] == "excluded"]
    edges = np.r_[np.arange(0, 0.16, 0.02), 1.0]
    by_bin = e.groupby(pd.cut(e["measured"], edges, right=False), observed=True)["as_planted"].agg(["size", "mean"])
    print("excluded fields per bin of measured stroma share:")
    print(by_bin.rename(columns={"size": "fields", "mean": "called excluded"}).round(3).to_string())
    ok = (by_bin["mean"] >= 0.95).to_numpy()
    first = len(ok) - int(np.argmin(ok[::-1])) if not ok.all() else 0
    floor = by_bin.index[first].left if first < len(ok) else np.nan
    inflamed_ok = d.loc[d["phenotype"] == "inflamed", "as_planted"].mean()
    print(f"derived floor: excluded fields are called excluded in >= 95% of every bin from a measured stroma share "
          f"of {floor:.2f} up (inflamed fields called inflamed: {inflamed_ok:.3f} of them at every share)")


def _sets() -> dict:
    """Positions, tumour cells, truth (tumour category) and scored cells of phenoptr and Xenium."""
    p = tmt.datasets.load("phenoptr", path=SHARED)
    x = tmt.datasets.load("xenium_idc", path=SHARED)
    tmt.tl.annotate(x)
    keep = x.obs["region"].isin(["Invasive Tumor", "Stroma"]).to_numpy()
    return {"phenoptr": (np.asarray(p.obsm["spatial"], float), (p.obs["phenotype"] == "CK+").to_numpy(),
                         (p.obs["tissue_category"].astype(str) == "Tumor").to_numpy(), np.ones(p.n_obs, bool)),
            "xenium": (np.asarray(x.obsm["spatial"], float),
                       (x.obs["tmt_lineage"] == "Malignant/Epithelial").to_numpy(),
                       (x.obs["region"] == "Invasive Tumor").to_numpy(), keep),
            "_xenium_region": x.obs["region"].astype(str).to_numpy()}


class _Grid:
    """The tissue grid of :func:`tmetoolkit._core.spatial.geometry.tissue_grid` (half a cell spacing a square) with
    the morphology the rule variants below use; every length in cell spacings (median nearest-neighbour distance)."""

    def __init__(self, xy: np.ndarray, is_t: np.ndarray):
        from tmetoolkit._core.spatial.geometry import median_nn, tissue_grid

        self.xy, self.is_t, self.nn = xy, is_t, median_nn(xy)
        _, self.shape, self.ij, self.g, self.tissue, _ = tissue_grid(xy, self.nn)
        self.per_nn = self.nn / self.g

    def count(self, m: np.ndarray) -> np.ndarray:
        flat = np.ravel_multi_index((self.ij[m, 0], self.ij[m, 1]), self.shape)
        return np.bincount(flat, minlength=self.shape[0] * self.shape[1]).reshape(self.shape).astype(float)

    def at(self, mask: np.ndarray) -> np.ndarray:
        return mask[self.ij[:, 0], self.ij[:, 1]]

    def smooth(self, m: np.ndarray, sigma_nn: float) -> np.ndarray:
        return ndimage.gaussian_filter(self.count(m), sigma_nn * self.per_nn)

    def drop_small(self, mask: np.ndarray, min_tumour: int = 10) -> np.ndarray:
        lab, n = ndimage.label(mask)
        small = np.flatnonzero(np.bincount(self.at(lab)[self.is_t], minlength=n + 1) < min_tumour)
        return mask & ~np.isin(lab, small[small > 0])

    def grow(self, mask: np.ndarray, r_nn: float) -> np.ndarray:
        return ndimage.distance_transform_edt(~mask) <= r_nn * self.per_nn if r_nn > 0 else mask

    def shrink(self, mask: np.ndarray, r_nn: float) -> np.ndarray:
        return ndimage.distance_transform_edt(mask) > r_nn * self.per_nn if r_nn > 0 else mask

    def close_open(self, mask: np.ndarray, close_nn: float, open_nn: float, grow_nn: float = 0.0) -> np.ndarray:
        mask = self.shrink(self.grow(mask, close_nn), close_nn) & self.tissue if close_nn else mask
        mask = self.grow(self.shrink(mask, open_nn), open_nn) if open_nn else mask
        return self.grow(mask, grow_nn) & self.tissue if grow_nn else mask

    def parenchyma(self, smooth_nn: float = 1.5, fraction: float = 0.5) -> np.ndarray:
        """The region rule's parenchyma: smoothed tumour-cell density >= ``fraction`` of its median at the tumour
        cells; parenchyma with fewer than 10 tumour cells dropped (no pocket filling)."""
        t = self.smooth(self.is_t, smooth_nn)
        return self.drop_small(self.tissue & (t >= fraction * np.median(self.at(t)[self.is_t])))


def _alpha_shape(xy: np.ndarray, is_t: np.ndarray, nn: float, alpha_nn: float, buffer_nn: float) -> np.ndarray:
    """Cells inside the alpha shape of the tumour cells (Delaunay triangles of circumradius <= alpha), pieces
    with fewer than 10 tumour cells dropped, grown by ``buffer_nn`` cell spacings."""
    import shapely
    from scipy.spatial import Delaunay

    p = xy[is_t]
    s = p[Delaunay(p).simplices]
    a, b, c = (np.linalg.norm(s[:, i] - s[:, j], axis=1) for i, j in ((1, 2), (0, 2), (0, 1)))
    d1, d2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
    area = np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / 2
    tri = s[a * b * c <= alpha_nn * nn * 4 * np.maximum(area, 1e-12)]
    u = shapely.union_all(shapely.polygons(tri))
    pieces = [g for g in getattr(u, "geoms", [u]) if shapely.contains_xy(g.buffer(1e-6), p[:, 0], p[:, 1]).sum() >= 10]
    u = shapely.union_all(pieces).buffer(buffer_nn * nn + 1e-6)
    return shapely.contains_xy(u, xy[:, 0], xy[:, 1])


def _nest_relative(gr: _Grid, close_frac: float, rim_frac: float) -> np.ndarray:
    """Parenchyma whose gaps are closed, and rim grown, at a scale proportional to each nest's own inscribed
    radius (a large tumour mass swallows wider septa than a small nest)."""

    m = gr.parenchyma()
    lab, n = ndimage.label(m)
    depth = ndimage.distance_transform_edt(m)
    radius = np.asarray(ndimage.maximum(depth, lab, np.arange(1, n + 1))) / gr.per_nn
    out = m.copy()
    for j, r in enumerate(radius, start=1):
        near = gr.grow(lab == j, max(close_frac, rim_frac) * r)
        if close_frac * r >= 0.5:
            out |= gr.close_open(m, close_frac * r, 0) & near
        if rim_frac * r >= 0.5:
            out |= gr.grow(lab == j, rim_frac * r) & gr.tissue
    return gr.at(out)


def ceiling() -> None:
    """Upper bound of compartment agreement on both truths, over rule settings chosen with the labels."""
    from tmetoolkit._core.spatial.geometry import tumour_region

    print("\n== ceiling: one rule against inForm tissue categories (phenoptr) and pathologist regions (Xenium) ==")
    if not SHARED.is_dir():
        print("(skipped: ../shared/data absent)")
        return
    sets = _sets()
    regions = sets.pop("_xenium_region")
    grids = {name: _Grid(xy, is_t) for name, (xy, is_t, _, _) in sets.items()}
    xy, is_t, truth, keep = sets["xenium"]
    reg = tumour_region(xy, is_t)
    out_it = keep & truth & ~reg.inside
    in_st = keep & ~truth & reg.inside
    d = reg.distance
    print(f"Xenium, current rule: {int((out_it | in_st).sum())} of {int(keep.sum())} cells disagree: "
          f"{int(out_it.sum())} Invasive Tumor cells outside the drawn region ({int((out_it & ~is_t).sum())} of them "
          f"not tumour cells; {int((out_it & (d <= 2 * reg.nn)).sum())} within 2 cell spacings of the border, "
          f"{int((out_it & (d > 2 * reg.nn)).sum())} farther: stroma strands and rim the pathologist drew inside), "
          f"{int(in_st.sum())} Stroma cells inside ({int((in_st & is_t).sum())} of them tumour cells, "
          "in nests the pathologist left in the stroma); DCIS "
          f"({int((regions == 'DCIS').sum())} cells) is not scored")
    print(f"tumour cells alone (a cell is inside when it is a tumour cell): phenoptr "
          f"{(sets['phenoptr'][1] == sets['phenoptr'][2]).mean():.3f}, Xenium {(is_t == truth)[keep].mean():.3f}")

    def score(rule: str, fn, **setting) -> dict:
        row = {"rule": rule, **setting}
        for name, (xy, is_t, truth, keep) in sets.items():
            row[name] = float((fn(name, xy, is_t) == truth)[keep].mean())
        return row

    rows = []
    for smooth, frac, close in itertools.product((0.75, 1.0, 1.5, 2.0, 3.0), (0.2, 0.3, 0.5), (0.0, 2.0, 4.0, 6.0)):
        rows.append(score("region", lambda n, xy, t, s=smooth, f=frac, c=close: tumour_region(
            xy, t, smooth_nn=s, packing_fraction=f, closing_nn=c).inside,
            smooth_nn=smooth, packing_fraction=frac, closing_nn=close))
    for smooth, frac, close, open_, grow in itertools.product((1.0, 1.5, 2.0), (0.2, 0.3, 0.5), (0, 2, 4, 6),
                                                             (2, 4, 6), (0, 1, 2)):
        rows.append(score("region+opening", lambda n, xy, t, s=smooth, f=frac, c=close, o=open_, g=grow: grids[n].at(
            grids[n].close_open(grids[n].parenchyma(s, f), c, o, g)),
            smooth_nn=smooth, packing_fraction=frac, closing_nn=close, opening_nn=open_, grow_nn=grow))
    for radius, share in itertools.product((5, 10, 15, 20, 30, 40, 60, 80, 100, 130, 160), (0.2, 0.3, 0.4, 0.5, 0.6)):
        def majority(n, xy, t, radius=radius, share=share):
            nb = cKDTree(xy).query_ball_point(xy, radius)
            return np.array([t[i].mean() for i in nb]) >= share
        rows.append(score("majority", majority, radius_um=radius, tumour_share=share))
    for bw, theta, close, open_ in itertools.product((1, 1.5, 2, 3, 4, 6), (0.3, 0.4, 0.5), (0, 2, 4), (0, 2, 4)):
        def kde(n, xy, t, bw=bw, theta=theta, close=close, open_=open_):
            gr = grids[n]
            m = gr.tissue & (gr.smooth(t, bw) >= theta * np.maximum(gr.smooth(np.ones_like(t), bw), 1e-12))
            return gr.at(gr.close_open(m, close, open_))
        rows.append(score("kde ratio", kde, bandwidth_nn=bw, tumour_share=theta, closing_nn=close, opening_nn=open_))
    for alpha, buf in itertools.product((1.5, 2, 3, 4, 6), (0, 0.5, 1, 2)):
        rows.append(score("alpha shape", lambda n, xy, t, a=alpha, b=buf: _alpha_shape(xy, t, grids[n].nn, a, b),
                          alpha_nn=alpha, buffer_nn=buf))
    for cf, rf in itertools.product((0.1, 0.2, 0.3, 0.4, 0.5), (0, 0.05, 0.1, 0.15)):
        rows.append(score("nest-relative", lambda n, xy, t, cf=cf, rf=rf: _nest_relative(grids[n], cf, rf),
                          close_frac=cf, rim_frac=rf))
    g = pd.DataFrame(rows)
    cur = g[(g["rule"] == "region") & (g["smooth_nn"] == 1.5) & (g["packing_fraction"] == 0.5)
            & (g["closing_nn"] == 0)].iloc[0]
    print(f"{len(g)} settings, every one scored on both sets; lengths in cell spacings (median nearest-neighbour "
          "distance: " + ", ".join(f"{k} {v.nn:.1f} um" for k, v in grids.items()) + ")")
    print("  region: Gaussian sigma 0.75-3, threshold 0.2-0.5 of the tumour's packing, closing 0-6")
    print("  region+opening: the same parenchyma closed 0-6, opened 2-6 (drops nests narrower than twice that), "
          "grown 0-2")
    print("  majority: share of tumour cells within 5-160 um >= 0.2-0.6")
    print("  kde ratio: Gaussian kernel density of tumour cells over all cells (bandwidth 1-6) >= 0.3-0.5, closed "
          "0-4, opened 0-4")
    print("  alpha shape: Delaunay triangles of tumour cells with circumradius <= 1.5-6, grown 0-2 (shapely)")
    print("  nest-relative: gaps closed within 0.1-0.5 of each nest's inscribed radius, rim grown 0-0.15 of it")
    print(f"current rule (sigma 1.5, half the packing, no closing): phenoptr {cur['phenoptr']:.3f}, "
          f"Xenium {cur['xenium']:.3f}")
    summary = []
    for rule, r in g.groupby("rule", sort=False):
        cols = [c for c in r.columns if c not in ("rule", "phenoptr", "xenium") and r[c].notna().all()]
        desc = lambda row, cols=cols: ", ".join(f"{c} {row[c]:g}" for c in cols)  # noqa: E731
        ok_p, ok_x = r[r["phenoptr"] >= 0.90], r[r["xenium"] >= 0.85]
        b1 = ok_p.sort_values("xenium").iloc[-1] if len(ok_p) else None
        b2 = ok_x.sort_values("phenoptr").iloc[-1] if len(ok_x) else None
        best = r.sort_values("xenium").iloc[-1]
        summary.append({"rule": rule, "settings": len(r), "meet both": int(((r["phenoptr"] >= 0.90)
                                                                            & (r["xenium"] >= 0.85)).sum()),
                        "best Xenium | phenoptr>=0.90": f"{b1['xenium']:.3f} / {b1['phenoptr']:.3f}" if b1 is not
                        None else "-",
                        "best phenoptr | Xenium>=0.85": f"{b2['phenoptr']:.3f} / {b2['xenium']:.3f}" if b2 is not
                        None else "-",
                        "best Xenium at all": f"{best['xenium']:.3f} / {best['phenoptr']:.3f}"})
        for label, row in (("best Xenium with phenoptr >= 0.90", b1), ("best phenoptr with Xenium >= 0.85", b2)):
            if row is not None:
                print(f"  {rule}, {label}: {desc(row)}")
    print("per rule (pairs are Xenium / phenoptr, or phenoptr / Xenium as the column says):")
    print(pd.DataFrame(summary).set_index("rule").to_string())
    nr = g[g["rule"] == "nest-relative"]
    print("nest-relative, every setting (phenoptr / Xenium; rows close_frac, columns rim_frac):")
    print(nr.assign(pair=nr["phenoptr"].map("{:.3f}".format) + " / " + nr["xenium"].map("{:.3f}".format))
          .pivot(index="close_frac", columns="rim_frac", values="pair").to_string())
    both = g[(g["phenoptr"] >= 0.90) & (g["xenium"] >= 0.85)]
    print(f"settings meeting both: {len(both)}" + ("" if both.empty else " (" + "; ".join(
        f"{r['rule']} phenoptr {r['phenoptr']:.3f} Xenium {r['xenium']:.3f}" for _, r in both.iterrows()) + ")"))

    print("\nnests: pieces of the drawn parenchyma (current rule) holding >= 40 tumour cells, with the share of their "
          "cells in the truth's tumour category")
    for name, gr in grids.items():
        m = gr.parenchyma()
        lab, n = ndimage.label(m)
        depth = ndimage.distance_transform_edt(m) / gr.per_nn
        cell_lab = gr.at(lab)
        _, _, truth, keep = sets[name]
        out = []
        for j in range(1, n + 1):
            c = (cell_lab == j) & keep
            n_t = int((c & gr.is_t).sum())
            if n_t >= 40:
                out.append(f"{n_t} ({float(depth[lab == j].max()):.0f}; {truth[c].mean():.2f})")
        print(f"  {name}: tumour cells (inscribed radius in cell spacings; share in the tumour category): "
              + ", ".join(sorted(out, key=lambda s: int(s.split()[0]))))
    t_or = is_t & (regions != "Stroma")
    print(f"oracle: the tumour cells the pathologist left in Stroma ({int((is_t & (regions == 'Stroma')).sum())}, "
          f"in two nests and a few scattered cells) not counted as tumour cells: current rule "
          f"agrees with the Xenium regions for {(tumour_region(xy, t_or).inside == truth)[keep].mean():.3f}")


BASAL_KERATINS = ("KRT5", "KRT14", "KRT17")  # basal cytokeratins of myoepithelial cells
CONTRACTILE = ("ACTA2", "MYH11", "CNN1", "MYLK", "OXTR")  # smooth-muscle proteins of myoepithelial cells


def myoepithelium() -> None:
    """Myoepithelial rim of every nest of the drawn parenchyma on the Xenium breast section.

    A myoepithelial-profile cell co-expresses a basal cytokeratin and a smooth-muscle protein, the two-marker panel
    pathologists use because either alone also marks stromal or luminal cells (Dewar et al. 2011, Arch Pathol Lab
    Med 135:422-429): at least one count of the basal keratins and two of the contractile genes the panel holds
    (strict profile: one count of smooth-muscle myosin heavy chain or oxytocin receptor instead, since
    smooth-muscle actin also marks myofibroblasts and vessels). A nest's boundary tumour cells are its tumour
    cells within two cell spacings inside its border; one is rimmed when a myoepithelial-profile cell (not
    itself) lies within two cell spacings.
    """
    from tmetoolkit._core.spatial.geometry import tumour_region

    print("\n== myoepithelial rim of the Xenium nests (a nest keeping its myoepithelial layer is not invasive) ==")
    if not SHARED.is_dir():
        print("(skipped: ../shared/data absent)")
        return
    x = tmt.datasets.load("xenium_idc", path=SHARED)
    tmt.tl.annotate(x)
    xy = np.asarray(x.obsm["spatial"], float)
    is_t = (x.obs["tmt_lineage"] == "Malignant/Epithelial").to_numpy()
    regions = x.obs["region"].astype(str).to_numpy()
    keep = np.isin(regions, ["Invasive Tumor", "Stroma"])
    truth = regions == "Invasive Tumor"

    def counts(genes):
        g = [g for g in genes if g in x.var_names]
        m = x[:, g].X
        return np.asarray(m.sum(axis=1)).ravel(), g

    ker, ker_g = counts(BASAL_KERATINS)
    con, con_g = counts(CONTRACTILE)
    myo = (ker >= 1) & (con >= 2)
    specific, spec_g = counts(("MYH11", "OXTR"))  # smooth-muscle myosin heavy chain, oxytocin receptor
    strict = (ker >= 1) & (specific >= 1)
    print(f"panel: basal keratins {ker_g} (missing {sorted(set(BASAL_KERATINS) - set(ker_g))}), contractile {con_g} "
          f"(missing {sorted(set(CONTRACTILE) - set(con_g))}); TP63 {'present' if 'TP63' in x.var_names else 'absent'}")
    print(f"myoepithelial-profile cells (>= 1 basal keratin and >= 2 contractile counts): {int(myo.sum())} of "
          f"{x.n_obs}; by region " + ", ".join(f"{k} {v}" for k, v in pd.Series(regions[myo]).value_counts().items()))
    print(f"strict profile (>= 1 basal keratin and >= 1 count of {spec_g}): "
          f"{int(strict.sum())} cells")
    gr = _Grid(xy, is_t)
    lab, _ = ndimage.label(gr.parenchyma())
    cell_lab = gr.at(lab)
    reg = tumour_region(xy, is_t)
    nn, d = reg.nn, reg.distance
    tree = cKDTree(xy)
    near = tree.query_ball_point(xy, 2 * nn)

    def rim(is_myo: np.ndarray, cells: np.ndarray) -> float:
        return float(np.mean([is_myo[near[i]].sum() - is_myo[i] > 0 for i in cells])) if len(cells) else np.nan

    rng = np.random.default_rng(0)
    nulls = [rng.permutation(myo) for _ in range(100)]
    genes = {gname: counts([gname])[0] for gname in ("ESR1", "PGR", "ERBB2", "MKI67")}
    rows = []
    for j in np.unique(cell_lab[cell_lab > 0]):
        nest = (cell_lab == j) & is_t
        if nest.sum() < 40:
            continue
        bnd = np.flatnonzero(nest & (d > -2 * nn) & (d < 0))
        null = [rim(m, bnd) for m in nulls]
        share = pd.Series(regions[nest]).value_counts(normalize=True)
        rows.append({"tumour cells": int(nest.sum()),
                     "regions": ", ".join(f"{k} {v:.2f}" for k, v in share.items() if v >= 0.05),
                     "boundary cells": len(bnd), "rimmed": rim(myo, bnd),
                     "null mean [95%]": f"{np.mean(null):.2f} [{np.quantile(null, 0.95):.2f}]",
                     "rimmed, strict": rim(strict, bnd),
                     **{gname: float(v[nest].mean()) for gname, v in genes.items()}})
    tab = pd.DataFrame(rows).sort_values("tumour cells")
    print("nests of the drawn parenchyma with >= 40 tumour cells (means are counts per cell over the nest's tumour "
          "cells; rimmed: share of boundary tumour cells with a myoepithelial-profile cell within 2 cell spacings):")
    print(tab.round(2).to_string(index=False))
    for r in ("Invasive Tumor", "Stroma", "DCIS"):
        m = is_t & (regions == r)
        print(f"  tumour cells in {r} ({int(m.sum())}): " + ", ".join(
            f"{gname} {v[m].mean():.2f}" for gname, v in genes.items()))
    bins = [-4, -2, -1, 0, 1, 2, 4]
    _, (ii, jj) = ndimage.distance_transform_edt(lab == 0, return_indices=True)
    nearest = lab[ii, jj][gr.ij[:, 0], gr.ij[:, 1]]
    prof = {}
    for j in np.unique(cell_lab[cell_lab > 0]):
        if ((cell_lab == j) & is_t).sum() >= 40:
            m = nearest == j
            key = f"{int(((cell_lab == j) & is_t).sum())} ({pd.Series(regions[(cell_lab == j) & is_t]).mode()[0]})"
            prof[key] = pd.Series(myo[m]).groupby(pd.cut(d[m] / nn, bins)).mean()
    print("share of myoepithelial-profile cells by signed distance to the nest's border (cell spacings, negative "
          "inside), per nest (tumour cells, main region):")
    print(pd.DataFrame(prof).round(2).to_string())
    base = float((reg.inside == truth)[keep].mean())
    out = []
    for cut in (0.5, 0.75):
        drop = np.zeros(len(xy), bool)
        for j in np.unique(cell_lab[cell_lab > 0]):
            nest = (cell_lab == j) & is_t
            bnd = np.flatnonzero(nest & (d > -2 * nn) & (d < 0))
            if nest.sum() >= 10 and rim(myo, bnd) >= cut:
                drop |= nest
        ruled = tumour_region(xy, is_t & ~drop).inside
        out.append(f"rimmed share >= {cut}: {int(drop.sum())} tumour cells set aside, Xenium "
                   f"{float((ruled == truth)[keep].mean()):.3f}")
    print(f"rule 'nests whose boundary is mostly rimmed are not invasive tumour': present rule {base:.3f}; "
          + "; ".join(out))


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
    p.add_argument("--floor", type=int, default=0, help="fields per setting for the stroma-floor null model (20)")
    p.add_argument("--ceiling", action="store_true", help="sweep compartment rules against both truths")
    p.add_argument("--myoepithelium", action="store_true", help="myoepithelial rim of the Xenium nests")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    if args.fields:
        realistic_fields(args.fields)
    real_images()
    if args.floor:
        stroma_floor(args.floor)
    if args.ceiling:
        ceiling()
    if args.myoepithelium:
        myoepithelium()
    if args.samples:
        timing(args.samples, args.cells)


if __name__ == "__main__":
    main()

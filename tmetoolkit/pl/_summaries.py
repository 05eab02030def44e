"""Per-sample summaries: phenotype features against thresholds, composition, checkpoint co-expression, scores."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.text import Text

from .. import _keys
from .._core.sample.phenotype import decision_lines as expression_lines
from .._core.spatial.rules import Line, decision_lines
from .._utils import TmtKeyError, missing_key_error
from ..tl._tables import resolve_sample_key
from ._palettes import COLORBLIND_SAFE, OTHER_COLOR, phenotype_colors
from ._utils import fits_new_figure, new_ax, readable, require_obs, style

MAX_LABELS = 20  # more names than this overlap into an unreadable cloud


def _region_names(index: pd.Index) -> pd.Index:
    """Region names ``"<sample>:<region>"``, without the sample when all regions are of one sample."""
    names = pd.Index(index.astype(str))
    if len({n.rsplit(":", 1)[0] for n in names}) == 1:
        return names.str.rsplit(":", n=1).str[-1]
    return names


def _stored(adata: AnnData, key: str, run: str) -> dict:
    if key not in adata.uns:
        msg = f"adata.uns[{key!r}] is missing: run {run} first."
        raise TmtKeyError(msg)
    return adata.uns[key]


@fits_new_figure
def immune_phenotype(adata: AnnData, *, regions: bool = False, annotate: bool = True, ax: Axes | None = None) -> Axes:
    """The quantities behind each immune-phenotype call, coloured by the call, with the rule's thresholds.

    Cells (spatial basis): where the CD8 T cells sit relative to chance, ``infiltration_vs_null`` (their share in
    the tumour core or parenchyma over its expectation when the same cells are relabelled at random), against
    their density in the tissue; the dashed lines are the ``null_ratio`` and ``min_density_per_mm2`` read from
    the result's params (dashed and dotted). Hollow markers are calls that rest on fewer than ``min_effectors`` CD8
    T cells; crosses are fields flagged for too little stroma to show exclusion. Values of zero are drawn at a floor.
    For spot data the axes are fractions of CD8 T-positive spots and the lines ``min_spot_fraction`` and the
    infiltration ratio ``min_infiltration``. For the expression
    basis the axes are the cohort's immune and stromal axes (``reference="cohort"``) or the CD8 T fraction among
    immune cells (``reference="absolute"``), again with the lines that decide the call.

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.immune_phenotype` (spatial basis).
    regions
        Plot regions (``region_key`` or tiles) instead of samples.
    annotate
        Write sample (or region) names next to their points, when there are at most 20; the table
        ``uns["tmt_immune_phenotype"]`` names them all.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    res = _stored(adata, _keys.IMMUNE_PHENOTYPE, "tmt.tl.immune_phenotype")
    if res["params"].get("basis") == "expression":
        return _expression_phenotype(res, annotate=annotate, ax=ax)
    tab = res["regions" if regions else "table"]
    p = res["params"]
    if "null_ratio" in p:
        return _cell_phenotype(tab, p, regions=regions, annotate=annotate, ax=ax)
    spots = "min_spot_fraction" in p
    lines = decision_lines(p)
    tau = next(line.value for line in lines if line.axis == "x")
    floor = tau / 20
    x = tab["rho_stroma"].fillna(0).clip(lower=floor)
    y = tab["rho_tumor"].fillna(0).clip(lower=floor)
    colors = phenotype_colors()
    with style():
        ax = new_ax(ax, (4.2, 3.8))
        for lab, sub in tab.groupby(tab["phenotype"].astype(str)):
            ax.scatter(x[sub.index], y[sub.index], c=colors[lab], label=lab, s=28 if not regions else 10,
                       edgecolors="white", linewidths=0.4)
        hi = max(float(np.nanmax([x.max(), y.max()])) * 2, tau * 10)
        if spots:
            hi = min(hi, 1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _draw_lines(ax, lines, np.geomspace(floor, hi, 50))
        ax.set_xlim(floor / 1.5, hi)
        ax.set_ylim(floor / 1.5, hi)
        if spots:
            ax.set_xlabel("fraction of CD8 T-positive spots, outside tumour")
            ax.set_ylabel("fraction CD8 T-positive, tumour core")
        else:
            ax.set_xlabel("CD8 T cells / mm² in margin and stroma")
            ax.set_ylabel("CD8 T cells / mm² in tumour")
        if annotate and len(tab) <= MAX_LABELS:
            names = _region_names(tab.index) if regions else tab.index.astype(str)
            lx, ly = pd.Series(np.log10(x).to_numpy(), index=names), pd.Series(np.log10(y).to_numpy(), index=names)
            tol = np.log10(hi / (floor / 1.5)) * 0.03
            _annotate_points(ax, _merge_close(lx, ly, tol), log=True)
        ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # off the points
        ax.set_title("Immune phenotype (spatial)")
    return ax


def _draw_lines(ax: Axes, lines: list[Line], xs: np.ndarray | None = None) -> None:
    """The rule's thresholds as the rule gives them (:func:`tmetoolkit._core.spatial.rules.decision_lines`)."""
    for line in lines:
        kw = {"ls": line.style, "lw": 0.8, "c": "grey", **({"label": line.label} if line.label else {})}
        if line.axis == "x":
            ax.axvline(line.value, **kw)
        elif line.axis == "y":
            ax.axhline(line.value, **kw)
        else:
            ax.plot(xs, xs * line.value, **kw)


def _cell_phenotype(tab: pd.DataFrame, p: dict, *, regions: bool, annotate: bool, ax: Axes | None) -> Axes:
    """Cells: infiltration relative to the null model against CD8 T-cell density, with the rule's lines."""
    lines = decision_lines(p)
    cut = next(line.value for line in lines if line.axis == "x")
    tau = next(line.value for line in lines if line.axis == "y")
    x_floor, y_floor = cut / 20, tau / 20
    x = tab["infiltration_vs_null"].astype(float).fillna(0).clip(lower=x_floor)
    y = tab["effector_per_mm2"].astype(float).fillna(0).clip(lower=y_floor)
    few = tab["n_effector"] < int(p.get("min_effectors", 0))
    flagged = ~tab["exclusion_assessable"].astype(bool) & (tab["phenotype"].astype(str) == "not assessable")
    colors = phenotype_colors()
    with style():
        ax = new_ax(ax, (4.2, 3.8))
        for lab, sub in tab.groupby(tab["phenotype"].astype(str), observed=True):
            i = sub.index
            ax.scatter(x[i], y[i], label=lab, s=28 if not regions else 10, linewidths=0.8,
                       facecolors=[("none" if f else colors[lab]) for f in few[i]],
                       edgecolors=[colors[lab] if f else "white" for f in few[i]],
                       marker="o")
        if flagged.any():
            ax.scatter(x[flagged], y[flagged], marker="x", c="black", s=18, linewidths=0.8,
                       label="too little stroma to show exclusion")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _draw_lines(ax, lines)
        hx = max(float(x.max()) * 2, cut * 10)
        hy = max(float(y.max()) * 2, tau * 10)
        ax.set_xlim(x_floor / 1.5, hx)
        ax.set_ylim(y_floor / 1.5, hy)
        ax.set_xlabel("CD8 T cells in tumour / expected at random (null ratio)")
        ax.set_ylabel("CD8 T cells / mm² of tissue")
        if annotate and len(tab) <= MAX_LABELS:
            names = _region_names(tab.index) if regions else tab.index.astype(str)
            lx, ly = pd.Series(np.log10(x).to_numpy(), index=names), pd.Series(np.log10(y).to_numpy(), index=names)
            tol = np.log10(hy / (y_floor / 1.5)) * 0.03
            _annotate_points(ax, _merge_close(lx, ly, tol), log=True)
        ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # off the points
        ax.set_title("Immune phenotype (spatial)")
    return ax


def _expression_phenotype(res: dict, *, annotate: bool, ax: Axes | None) -> Axes:
    """Samples on the axes that decided their expression-based call, with the decision lines."""
    tab, p = res["table"], res["params"]
    tab = tab[tab["phenotype"].astype(str) != "not assessable"]
    colors = phenotype_colors()
    mode = "cohort" if p.get("reference") == "cohort" else (
        "cells" if p.get("decided_by") == "cell composition" or "t_cell_enrichment" not in tab else "enrichment")
    with style():
        ax = new_ax(ax, (4.2, 3.8))
        if mode == "cohort":
            x, y = tab["stromal_axis"].astype(float), tab["immune_axis"].astype(float)
        elif mode == "enrichment":
            x, y = tab["t_cell_enrichment"].astype(float), tab["ifng_enrichment"].astype(float)
        else:
            y = tab["cd8_fraction_immune"].astype(float).fillna(0)
            x = pd.Series(np.arange(len(tab), dtype=float), index=tab.index)
        for lab, sub in tab.groupby(tab["phenotype"].astype(str), observed=True):
            ax.scatter(x[sub.index], y[sub.index], c=colors.get(lab, "grey"), label=lab, s=28, edgecolors="white",
                       linewidths=0.4)
        _draw_lines(ax, expression_lines(p, mode))
        if mode == "cohort":
            ax.set_xlabel("stromal axis: TGF-beta, CAF (robust z)")
            ax.set_ylabel("immune axis: CD8 T-effector (robust z; terciles)")
        elif mode == "enrichment":
            ax.set_xlabel("T-cell genes (z vs marker genes of the sample)")
            ax.set_ylabel("IFN-gamma programme (z vs marker genes of the sample)")
        else:
            ax.set_xticks(x.to_numpy(), tab.index.astype(str), rotation=90)
            ax.set_ylabel("CD8 T cells among immune cells")
        tol = 0.03 * max(float(np.ptp(x)) if len(x) else 0.0, float(np.ptp(y)) if len(y) else 0.0, 1e-9)
        if annotate and mode != "cells" and len(tab) <= MAX_LABELS:
            _annotate_points(ax, _merge_close(x, y, tol), log=False)
        ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # off the points
        ax.set_title("Immune phenotype (expression; exclusion inferred)")
    return ax


LABEL_HEIGHTS = (3, -10, 16, -23, 29, -36)  # points above (+) or below (-) a point where its label may sit


def _annotate_points(ax: Axes, groups: list[tuple[list, tuple[float, float]]], *, log: bool) -> None:
    """Write each group's names beside it: on the side of the point facing the middle of the axes (so labels of
    points near the right edge stay inside the figure), at the first of a few heights above and below the point
    where the label overlaps no label already written, else on the other side, joined to its point by a thin line
    when it had to move; where every place is taken, at the first."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    lo, hi = ax.get_xlim()
    middle = np.sqrt(lo * hi) if log else (lo + hi) / 2
    taken = []
    for names, (px, py) in sorted(groups, key=lambda g: g[1]):
        x, y = (10**px, 10**py) if log else (px, py)
        toward_middle = -1 if x > middle else 1
        label = None
        for dy in LABEL_HEIGHTS:
            for side in (toward_middle, -toward_middle):
                moved = dy != LABEL_HEIGHTS[0] or side != toward_middle  # a leader line says whose label it is
                text = ax.annotate(", ".join(map(str, names)), (x, y), fontsize=7, xytext=(3 * side, dy),
                                   textcoords="offset points", ha="left" if side > 0 else "right",
                                   va="center" if moved else "baseline",
                                   arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"} if moved else None)
                text.update_positions(renderer)
                box = Text.get_window_extent(text, renderer)  # the words, not the leader line
                inside = frame.x0 <= box.x0 and box.x1 <= frame.x1
                if inside and not any(box.overlaps(other) for other in taken):
                    label = text
                    break
                text.remove()
            if label is not None:
                break
        if label is None:
            label = ax.annotate(", ".join(map(str, names)), (x, y), fontsize=7, xytext=(3 * toward_middle, 3),
                                textcoords="offset points", ha="left" if toward_middle > 0 else "right")
        label.update_positions(renderer)
        taken.append(Text.get_window_extent(label, renderer))


def _merge_close(x: pd.Series, y: pd.Series, tol: float) -> list[tuple[list, tuple[float, float]]]:
    """Points closer than ``tol`` on both axes share one label ("S01, S04"), placed at the first of them."""
    groups: list[tuple[list, tuple[float, float]]] = []
    for name in x.index:
        for names, (gx, gy) in groups:
            if abs(x[name] - gx) < tol and abs(y[name] - gy) < tol:
                names.append(name)
                break
        else:
            groups.append(([name], (float(x[name]), float(y[name]))))
    return groups


@fits_new_figure
def composition(adata: AnnData, *, sample_key: str | None = None, key: str = _keys.LINEAGE,
                max_colors: int = len(COLORBLIND_SAFE), ax: Axes | None = None) -> Axes:
    """Stacked bars: the fraction of each label per sample.

    Labels get colours of a colour-blind-safe palette (Paul Tol's muted scheme with Okabe-Ito's orange, blue and
    black) in order of abundance; beyond ``max_colors`` distinguishable colours the least abundant labels are
    grouped as one grey "other" bar. Greys: malignant cells (dark), cells whose state could not be decided (they
    keep their lineage's name), unassigned cells (pale). Drawn for the cells of one lineage
    (``adata[adata.obs["tmt_lineage"] == "CD8 T"]``), the states are that lineage's composition.

    Parameters
    ----------
    adata
        Annotated data.
    sample_key
        ``obs`` column of samples, one bar each (default: the one the tools recorded, else ``"sample"`` if
        present, else all cells as one bar).
    key
        Categorical ``obs`` column to count (default lineages; ``"tmt_state"`` for states).
    max_colors
        Labels drawn in their own colour (at most 12).
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    labels = require_obs(adata, key, "run tmt.tl.annotate first").astype(str)
    sample_key = resolve_sample_key(adata, sample_key)
    samples = adata.obs[sample_key].astype(str) if sample_key else pd.Series("all", index=adata.obs_names)
    if key == _keys.STATE:  # a cell whose state could not be decided keeps its lineage's name
        undecided = {lin: f"{lin} (state undecided)" for lin, states in _keys.states().items() if lin not in states}
        labels = labels.replace(undecided)
    neutral = {"unassigned": "#F2F2F2", "Malignant/Epithelial": "#777777"}  # greys, outside the 12 colours
    neutral.update({lab: "#BBBBBB" for lab in labels.unique() if lab.endswith("(state undecided)")})
    max_colors = min(int(max_colors), len(COLORBLIND_SAFE))
    order = [c for c in labels.value_counts().index if c not in neutral]
    own, rest = order[:max_colors], order[max_colors:]
    other = f"other ({len(rest)} label{'s' if len(rest) != 1 else ''})"
    grouped = labels.where(labels.isin(own) | labels.isin(list(neutral)), other)
    frac = pd.crosstab(samples, grouped, normalize="index")
    cmap = dict(zip(own, COLORBLIND_SAFE, strict=False))
    cmap.update({other: OTHER_COLOR, **neutral})
    what = {_keys.LINEAGE: "Lineages", _keys.STATE: "Cell states"}.get(key, readable(key))
    with style():
        ax = new_ax(ax, (5.5, 0.35 * len(frac) + 1.2))
        left = np.zeros(len(frac))
        for c in [c for c in cmap if c in frac.columns]:
            ax.barh(frac.index, frac[c], left=left, color=cmap[c], label=c, height=0.8, edgecolor="white",
                    linewidth=0.3)
            left += frac[c].to_numpy()
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of cells")
        ax.invert_yaxis()
        ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.set_title(f"{what} per sample" + (f" ({len(rest)} least abundant grouped as other)" if rest else ""))
    return ax


@fits_new_figure
def checkpoints(adata: AnnData, *, ax: Axes | None = None) -> Axes:
    """Per sample, the fraction of CD8 T cells expressing at least 1, 2 and 3 co-inhibitory receptors.

    The number of CD8 T cells behind each bar is written above it: a fraction of a handful of cells says little.

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.checkpoints`.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    tab = _stored(adata, _keys.CHECKPOINTS, "tmt.tl.checkpoints")["table"]
    cols = ["cd8_frac_ge1_receptors", "cd8_frac_ge2_receptors", "cd8_frac_ge3_receptors"]
    shades = ["#fcbba1", "#fb6a4a", "#a50f15"]
    with style():
        ax = new_ax(ax, (0.5 * len(tab) + 2.5, 3.2))
        for c, col, lab in zip(cols, shades, ("≥1", "≥2", "≥3"), strict=True):
            ax.bar(tab.index.astype(str), tab[c].fillna(0), color=col, label=f"{lab} receptors", width=0.7)
        if "n_cd8" in tab:
            for x, (n, top) in enumerate(zip(tab["n_cd8"], tab[cols[0]].fillna(0), strict=True)):
                ax.text(x, top + 0.02, f"n={int(n)}" if np.isfinite(n) else "", ha="center", va="bottom",
                        fontsize=6, color="0.35", rotation=90 if len(tab) > 12 else 0)
        ax.set_ylabel("fraction of CD8 T cells")
        ax.set_ylim(0, 1.1)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.legend(frameon=False, fontsize=7)
        ax.set_title("PD-1 / TIM-3 / LAG-3 / TIGIT / CTLA-4 co-expression")
        ax.tick_params(axis="x", rotation=90)
    return ax


@fits_new_figure
def scores(adata: AnnData, signatures, *, groupby: str, standard_scale: bool = True, ax: Axes | None = None) -> Axes:
    """Mean signature score per group as a heatmap (groups x signatures), each group labelled with its number of
    cells (a mean over a handful of cells sets the scale as much as one over hundreds).

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.score`.
    signatures
        Signature names (columns of ``obsm["tmt_scores"]``).
    groupby
        Categorical ``obs`` column.
    standard_scale
        Scale each signature's group means to 0-1.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    if _keys.SCORES not in adata.obsm:
        msg = "adata.obsm['tmt_scores'] is missing: run tmt.tl.score first."
        raise TmtKeyError(msg)
    S = adata.obsm[_keys.SCORES]
    signatures = [signatures] if isinstance(signatures, str) else list(signatures)
    for s in signatures:
        if s not in S.columns:
            raise missing_key_error(s, "the scored signatures", S.columns)
    g = require_obs(adata, groupby)
    mean = S[signatures].groupby(g.values, observed=True).mean()
    if standard_scale:
        rng = (mean.max() - mean.min()).replace(0, 1)
        mean = (mean - mean.min()) / rng
    with style():
        ax = new_ax(ax, (0.35 * len(signatures) + 2.5, 0.3 * len(mean) + 1.5))
        im = ax.imshow(mean.to_numpy(), aspect="auto", cmap="Reds")
        ax.set_xticks(range(len(signatures)), signatures, rotation=90)
        n = g.value_counts()
        ax.set_yticks(range(len(mean)), [f"{name} (n={n[name]:,})" for name in mean.index])
        ax.figure.colorbar(im, ax=ax, fraction=0.04, label="scaled mean score" if standard_scale else "mean score")
    return ax


@fits_new_figure
def immunosuppression(adata: AnnData, *, regions: bool = False, ax: Axes | None = None) -> Axes:
    """Samples (or regions) x immunosuppression components as robust z-scores, with the composite; missing grey.

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.immunosuppression`.
    regions
        One row per region of tissue (after ``tmt.tl.immunosuppression(adata, region_key=...)``), z-scored across
        all regions, instead of one per sample.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    from .._core.sample.suppression import component_z

    res = _stored(adata, _keys.IMMUNOSUPPRESSION, "tmt.tl.immunosuppression")
    if regions and "regions" not in res:
        msg = "no regions stored: run tmt.tl.immunosuppression(adata, region_key=...) first."
        raise TmtKeyError(msg)
    tab = res["regions"] if regions else res["table"]
    z = component_z(tab, list(res["components"]["component"]))
    z["composite"] = tab["composite"]
    unit = "regions" if regions else "samples"
    with style():
        ax = new_ax(ax, (0.45 * z.shape[1] + 2.5, 0.3 * len(z) + 1.8))
        data = np.ma.masked_invalid(z.to_numpy())
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.8")  # missing must not look like a z-score of 0
        im = ax.imshow(data, aspect="auto", cmap=cmap, vmin=-2.5, vmax=2.5)
        ax.set_xticks(range(z.shape[1]), [readable(c) for c in z.columns], rotation=90)
        rows = z.index.astype(str)
        if regions:
            rows = [f"{name} (n={n:,})" for name, n in zip(_region_names(z.index), tab["n_cells"], strict=True)]
        ax.set_yticks(range(len(z)), rows)
        ax.axvline(z.shape[1] - 1.5, c="black", lw=1)
        ax.figure.colorbar(im, ax=ax, fraction=0.04, label=f"robust z across {unit}")
        ax.set_title("Immunosuppression components" + (" per region" if regions else ""))
    return ax


@fits_new_figure
def resistance_profile(adata: AnnData, *, regions: bool = False, ax: Axes | None = None) -> Axes:
    """Mechanisms (grouped as in the review) x samples: flagged, not flagged, rule not applicable, not assessable.

    A measured mechanism whose rule cannot apply is white: a cohort-relative rule with fewer than three samples
    (or regions), or the IFN-gamma pathway row of a tumour that is not inflamed (its T cells do not reach the
    malignant cells, so an absent response says nothing). The status column of ``uns["tmt_resistance_profile"]
    ["long"]`` gives the reason.

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.resistance_profile`.
    regions
        One column per region of tissue (after ``tmt.tl.resistance_profile(adata, region_key=...)``).
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    from matplotlib.patches import Patch

    res = _stored(adata, _keys.RESISTANCE_PROFILE, "tmt.tl.resistance_profile")
    if regions and "regions" not in res:
        msg = "no regions stored: run tmt.tl.resistance_profile(adata, region_key=...) first."
        raise TmtKeyError(msg)
    long = res["regions_long"] if regions else res["long"]
    unit = "region" if regions else "sample"
    order = long.drop_duplicates("mechanism")[["id", "group", "mechanism", "cycle_steps"]]
    table = res["regions" if regions else "table"][order["id"]].T.set_axis(order["mechanism"], axis=0)
    status = long.pivot(index="mechanism", columns=unit, values="status").reindex(index=table.index,
                                                                                   columns=table.columns)
    measured = status.apply(lambda c: c.str.startswith(("measured", "from sample metadata", "hypothesis")))
    # flagged and not flagged differ in hue and lightness (dark red, pale blue), for colour-blind readers too
    colours = {"flagged (✕)": (0.70, 0.09, 0.17), "not flagged": (0.82, 0.90, 0.96),
               "measured, rule not applicable": (1.0, 1.0, 1.0), "not assessable or needs data": (0.6, 0.6, 0.6)}
    with style():
        ax = new_ax(ax, (0.45 * table.shape[1] + 5.0, 0.3 * len(table) + 2.0))
        vals = table.to_numpy(dtype=float)
        rgb = np.empty((*table.shape, 3))
        rgb[:] = colours["not assessable or needs data"]
        rgb[np.isnan(vals) & measured.to_numpy(dtype=bool)] = colours["measured, rule not applicable"]
        rgb[vals == 0] = colours["not flagged"]
        rgb[vals == 1] = colours["flagged (✕)"]
        ax.imshow(rgb, aspect="auto")
        for i, j in zip(*np.nonzero(vals == 1), strict=True):  # a mark as well as a colour
            ax.text(j, i, "✕", ha="center", va="center", color="white", fontsize=7)
        labels = [f"{m}  [{c}]" for m, c in zip(order["mechanism"], order["cycle_steps"], strict=True)]
        ax.set_yticks(range(len(table)), labels, fontsize=7)
        ax.set_xticks(range(table.shape[1]), _region_names(table.columns) if regions else table.columns.astype(str),
                      rotation=90)
        groups = order["group"].to_numpy()
        for i in range(1, len(groups)):
            if groups[i] != groups[i - 1]:
                ax.axhline(i - 0.5, c="black", lw=0.8)
        ax.legend(handles=[Patch(facecolor=c, edgecolor="0.5", label=k) for k, c in colours.items()], frameon=False,
                  fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title("Resistance mechanisms" + (" per region" if regions else ""))
    return ax


@fits_new_figure
def compare_groups(adata: AnnData, *, n_labels: int = 10, ax: Axes | None = None) -> Axes:
    """Effect size (Cliff's delta) against significance for every per-sample feature compared between groups.

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.compare_groups`.
    n_labels
        Label this many of the most significant features.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    res = _stored(adata, _keys.COMPARE_GROUPS, "tmt.tl.compare_groups")
    t = res["table"]
    g = res["params"]["groups"]
    with style():
        ax = new_ax(ax, (5, 4))
        if len(t):
            y = -np.log10(t["pvalue"].astype(float))
            sig = t["fdr"] < 0.1
            ax.scatter(t["cliffs_delta"], y, c=np.where(sig, "#d62728", "#999999"), s=14, linewidths=0)
            top = t.head(n_labels)
            # few samples give many features the same point: one label per point, naming the first of them
            close = _merge_close(pd.Series(top["cliffs_delta"].to_numpy(float), index=top["feature"].astype(str)),
                                 pd.Series(y.head(n_labels).to_numpy(), index=top["feature"].astype(str)), 0.02)
            labels = [([f"{names[0]} (+{len(names) - 1} more)" if len(names) > 1 else names[0]], xy)
                      for names, xy in close]
            _annotate_points(ax, labels, log=False)
        ax.axvline(0, c="grey", lw=0.6)
        ax.set_xlim(-1.05, 1.05)
        ax.set_xlabel(f"Cliff's delta ({g[0]} vs {g[1]})")
        ax.set_ylabel("-log10 p (Mann-Whitney, samples)")
        ax.set_title("Per-sample features between groups (red: FDR < 0.1)")
    return ax

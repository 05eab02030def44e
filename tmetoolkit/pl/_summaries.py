"""Per-sample summaries: phenotype features against thresholds, composition, checkpoint co-expression, scores."""

from __future__ import annotations

from itertools import pairwise

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text
from matplotlib.ticker import NullFormatter

from .. import _keys
from .._core.checkpoints import RECEPTORS
from .._core.sample.cohort import MIN_SPREAD
from .._core.sample.phenotype import decision_lines as expression_lines
from .._core.sample.phenotype import share_bounds
from .._core.spatial.rules import Line, decision_lines
from .._utils import TmtKeyError, missing_key_error
from ..sig._registry import _load_all as packaged_signatures
from ..tl._tables import resolve_sample_key
from ._palettes import COLORBLIND_SAFE, lineage_colors, phenotype_colors, state_colors, subset_colors
from ._utils import colors_for, fits_new_figure, new_ax, readable, require_obs, style, wrap

MAX_LABELS = 20  # more names than this overlap into an unreadable cloud
KEY_WIDTH = 28  # characters per line of a name in the key of numbered points


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
    T cells (named in the legend); crosses are fields flagged for too little stroma to show exclusion; fields that
    could not be called are drawn beneath the others. Values below a floor (a twentieth of the threshold) are drawn
    at it; zeros and missing values (NaN) in a shaded strip below it, at the ticks "0" and "n/a".
    For spot data the axes are fractions of CD8 T-positive spots and the lines ``min_spot_fraction`` and the
    infiltration ratio ``min_infiltration``. For the expression
    basis the axes are the cohort's immune and stromal axes (``reference="cohort"``) or the CD8 T fraction among
    immune cells (``reference="absolute"``), again with the lines that decide the call.

    Parameters
    ----------
    adata
        After :func:`tmetoolkit.tl.immune_phenotype` (any basis).
    regions
        Plot regions (``region_key`` or tiles) instead of samples; the spatial bases only (the expression basis
        calls samples).
    annotate
        Write sample (or region) names next to their points, when there are at most 20 (names that fit nowhere
        inside the axes are replaced by numbers, named in the legend); the table ``uns["tmt_immune_phenotype"]``
        names them all.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    res = _stored(adata, _keys.IMMUNE_PHENOTYPE, "tmt.tl.immune_phenotype")
    if res["params"].get("basis") == "expression":
        if regions:
            msg = ("regions=True, but this immune phenotype was called from expression, one call per sample: "
                   "dissociated cells have no positions, so no tiles or regions; leave out regions=True.")
            raise TmtKeyError(msg)
        return _expression_phenotype(res, annotate=annotate, ax=ax)
    tab = res["regions" if regions else "table"]
    p = res["params"]
    if "null_ratio" in p:
        return _cell_phenotype(tab, p, regions=regions, annotate=annotate, ax=ax)
    spots = "min_spot_fraction" in p
    lines = decision_lines(p)
    tau = next(line.value for line in lines if line.axis == "x")
    floor = tau / 20
    x = _log_positions(tab["rho_stroma"], floor)
    y = _log_positions(tab["rho_tumor"], floor)
    colors = phenotype_colors()
    with style():
        ax = new_ax(ax, (4.2, 3.8))
        for lab, sub in tab.groupby(tab["phenotype"].astype(str)):
            ax.scatter(x[sub.index], y[sub.index], c=colors[lab], label=lab, s=28 if not regions else 10,
                       edgecolors="white", linewidths=0.4, zorder=_zorder(lab))
        hi = max(float(np.nanmax([x.max(), y.max()])) * 2, tau * 10)
        if spots:
            hi = min(hi, 1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _draw_lines(ax, lines, np.geomspace(floor, hi, 50))
        ax.set_xlim(floor / STRIP_END, hi)
        ax.set_ylim(floor / STRIP_END, hi)
        _edge_strip(ax, "x", floor)
        _edge_strip(ax, "y", floor)
        if spots:
            ax.set_xlabel("fraction of CD8 T-positive spots, outside tumour")
            ax.set_ylabel("fraction CD8 T-positive, tumour core")
        else:
            ax.set_xlabel("CD8 T cells / mm² in margin and stroma")
            ax.set_ylabel("CD8 T cells / mm² in tumour")
        key = []
        if annotate and len(tab) <= MAX_LABELS:
            names = _region_names(tab.index) if regions else tab.index.astype(str)
            lx, ly = pd.Series(np.log10(x).to_numpy(), index=names), pd.Series(np.log10(y).to_numpy(), index=names)
            tol = np.log10(hi / (floor / STRIP_END)) * 0.03
            key = _annotate_points(ax, _merge_close(lx, ly, tol), log=True)
        _legend(ax, key=key)
        ax.set_title(_phenotype_title(p, regions))
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
    x = _log_positions(tab["infiltration_vs_null"], x_floor)
    y = _log_positions(tab["effector_per_mm2"], y_floor)
    min_effectors = int(p.get("min_effectors", 0))
    few = tab["n_effector"] < min_effectors
    flagged = ~tab["exclusion_assessable"].astype(bool) & (tab["phenotype"].astype(str) == "not assessable")
    colors = phenotype_colors()
    with style():
        ax = new_ax(ax, (4.2, 3.8))
        size = 28 if not regions else 10
        for lab, sub in tab.groupby(tab["phenotype"].astype(str), observed=True):
            i = sub.index
            # the legend shows each call filled, also where all its samples are drawn hollow (few CD8 T cells)
            ax.scatter([], [], label=lab, s=size, linewidths=0.8, facecolors=colors[lab], edgecolors="white")
            ax.scatter(x[i], y[i], label=f"_{lab}", s=size, linewidths=0.8,
                       facecolors=[("none" if f else colors[lab]) for f in few[i]],
                       edgecolors=[colors[lab] if f else "white" for f in few[i]],
                       marker="o", zorder=_zorder(lab))
        if flagged.any():
            ax.scatter(x[flagged], y[flagged], marker="x", c="black", s=18, linewidths=0.8, zorder=2,
                       label="too little stroma to show exclusion")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _draw_lines(ax, lines)
        hx = max(float(x.max()) * 2, cut * 10)
        hy = max(float(y.max()) * 2, tau * 10)
        ax.set_xlim(x_floor / STRIP_END, hx)
        ax.set_ylim(y_floor / STRIP_END, hy)
        _edge_strip(ax, "x", x_floor)
        _edge_strip(ax, "y", y_floor)
        ax.set_xlabel("CD8 T cells in tumour / expected at random (null ratio)")
        ax.set_ylabel("CD8 T cells / mm² of tissue")
        key = []
        if annotate and len(tab) <= MAX_LABELS:
            names = _region_names(tab.index) if regions else tab.index.astype(str)
            lx, ly = pd.Series(np.log10(x).to_numpy(), index=names), pd.Series(np.log10(y).to_numpy(), index=names)
            tol = np.log10(hy / (y_floor / STRIP_END)) * 0.03
            key = _annotate_points(ax, _merge_close(lx, ly, tol), log=True)
        hollow = [Line2D([], [], ls="", marker="o", mfc="none", mec="0.4",
                         label=f"hollow: fewer than {min_effectors} CD8 T cells")] if few.any() else []
        _legend(ax, hollow, key)
        ax.set_title(_phenotype_title(p, regions))
    return ax


STRIP_END, ZERO_AT, MISSING_AT, STRIP_EDGE = 10.0, 2.2, 6.0, 1.45  # divisors of the floor of a log axis


def _log_positions(values: pd.Series, floor: float) -> pd.Series:
    """Where values sit on a log axis starting at ``floor``: values below it at the floor, zeros and missing
    values (NaN) in a strip below it, each at its own place (see :func:`_edge_strip`)."""
    v = values.astype(float)
    return v.clip(lower=floor).mask(v == 0, floor / ZERO_AT).mask(v.isna(), floor / MISSING_AT)


def _edge_strip(ax: Axes, which: str, floor: float) -> None:
    """The strip of a log axis below ``floor`` where zeros and missing values are drawn: shaded, with the ticks
    "0" and "n/a" in place of the log scale's."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    edge = floor / STRIP_EDGE
    major = [t for t in axis.get_majorticklocs() if edge <= t <= hi]
    minor = [t for t in axis.get_minorticklocs() if edge <= t <= hi]
    axis.set_ticks([floor / MISSING_AT, floor / ZERO_AT, *major], ["n/a", "0", *(f"{t:g}" for t in major)])
    axis.set_ticks(minor, minor=True)
    axis.set_minor_formatter(NullFormatter())
    span = ax.axvspan if which == "x" else ax.axhspan
    span(lo, edge, color="0.95", lw=0, zorder=0)


def _zorder(label: str) -> int:
    """Calls drawn on top of the fields that could not be called."""
    return 1 if label == "not assessable" else 3


def _phenotype_title(params: dict, regions: bool) -> str:
    if not regions:
        return "Immune phenotype per sample (spatial)"
    unit = "region" if params.get("region_key") else f"tile of {params.get('tile_size', 500):g} µm"
    return f"Immune phenotype per {unit} (spatial)"


def _legend(ax: Axes, extra: list | None = None, key: list[tuple[int, list]] | None = None) -> None:
    """The axes' labelled artists, ``extra`` handles and the names of numbered points, right of the axes."""
    handles, labels = ax.get_legend_handles_labels()
    handles += extra or []
    labels += [h.get_label() for h in extra or []]
    if key:
        handles.append(Line2D([], [], ls=""))
        labels.append("numbered points:")
    for number, names in key or []:
        handles.append(Line2D([], [], ls=""))
        labels.append(f"{number}  " + wrap(", ".join(map(str, names)), KEY_WIDTH).replace("\n", "\n     "))
    ax.legend(handles, labels, frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


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
            if {"cd8_cells", "immune_cells"} <= set(tab.columns):
                _share_intervals(ax, x, y, tab["cd8_cells"], tab["immune_cells"])
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


def _share_intervals(ax: Axes, x: pd.Series, y: pd.Series, k: pd.Series, n: pd.Series) -> None:
    """95% intervals of each sample's CD8 T share (Jeffreys, as the call's confidence), behind the points."""
    lo, hi = share_bounds(k.to_numpy(), n.to_numpy())
    x, y = x.to_numpy(), y.to_numpy()  # matplotlib reads a one-sample Series with float(), which pandas deprecates
    ax.errorbar(x, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="none", ecolor="0.6", elinewidth=0.8,
                capsize=2, zorder=1, label="95% interval (counts)")


LABEL_HEIGHTS = (3, -10, 16, -23, 29, -36)  # points above (+) or below (-) a point where its label may sit
LABEL_GAP = 2  # pixels kept clear between two labels


def _annotate_points(ax: Axes, groups: list[tuple[list, tuple[float, float]]], *, log: bool) -> list[tuple[int, list]]:
    """Write each group's names beside it: on the side of the point facing the middle of the axes, at the first of
    a few heights above and below the point where the label lies inside the axes and overlaps no label already
    written, else on the other side, joined to its point by a thin line when it had to move. A group whose names
    fit nowhere gets a number in their place; the returned key ``[(number, names)]`` names them (for a legend)."""
    renderer = ax.figure.canvas.get_renderer()
    lo, hi = ax.get_xlim()
    middle = np.sqrt(lo * hi) if log else (lo + hi) / 2
    taken, key = [], []
    for names, (px, py) in sorted(groups, key=lambda g: g[1]):
        xy = (10**px, 10**py) if log else (px, py)
        toward_middle = -1 if xy[0] > middle else 1
        label = _place_label(ax, ", ".join(map(str, names)), xy, toward_middle, taken, renderer)
        if label is None:
            key.append((len(key) + 1, names))
            number = str(len(key))
            label = _place_label(ax, number, xy, toward_middle, taken, renderer) or \
                _place_label(ax, number, xy, toward_middle, [], renderer) or \
                ax.annotate(number, xy, fontsize=7, ha="center", va="center")
        label.update_positions(renderer)
        taken.append(Text.get_window_extent(label, renderer))
    return key


def _place_label(ax: Axes, words: str, xy: tuple[float, float], toward_middle: int, taken: list, renderer):
    """The label at the first place beside ``xy`` inside the axes that overlaps none of ``taken``; else None."""
    frame = ax.get_window_extent(renderer)
    for dy in LABEL_HEIGHTS:
        for side in (toward_middle, -toward_middle):
            moved = dy != LABEL_HEIGHTS[0] or side != toward_middle  # a leader line says whose label it is
            text = ax.annotate(words, xy, fontsize=7, xytext=(3 * side, dy), textcoords="offset points",
                               ha="left" if side > 0 else "right", va="center" if moved else "baseline",
                               arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"} if moved else None)
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer)  # the words, not the leader line
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.padded(LABEL_GAP).overlaps(other) for other in taken):
                return text
            text.remove()
    return None


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


UNDECIDED = " (state undecided)"  # a cell whose state could not be decided keeps its lineage's name
OTHER_STYLE = {"color": "white", "hatch": "xxx", "hatchcolor": "0.55"}  # grouped labels: hatched, not another grey


@fits_new_figure
def composition(adata: AnnData, *, sample_key: str | None = None, key: str = _keys.LINEAGE,
                max_colors: int = len(COLORBLIND_SAFE), ax: Axes | None = None) -> Axes:
    """Stacked bars: the fraction of each label per sample, each sample named with its number of cells.

    A label keeps the colour it has in every other figure: ``uns[key + "_colors"]`` when stored, else
    tmetoolkit's fixed colour of the lineage or state. Labels without one get colours of a colour-blind-safe
    palette (Paul Tol's muted scheme with Okabe-Ito's orange, blue and black) in order of abundance; beyond
    ``max_colors`` of them the least abundant are grouped as one hatched "other" bar. Cells whose state could not
    be decided (they keep their lineage's name) are drawn striped, in a pale tint of their lineage's colour. Cells
    without a value of ``key`` (NaN) are not counted; the axis label says how many. Drawn for the cells of one
    lineage (``adata[adata.obs["tmt_lineage"] == "CD8 T"]``), the states are that lineage's composition.

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
        Labels without a fixed colour drawn in their own colour (at most 12).
    ax
        Axes to draw into.

    Returns
    -------
    The Axes drawn into (on a new figure when ``ax`` is ``None``).
    """
    column = require_obs(adata, key, "run tmt.tl.annotate first")
    sample_key = resolve_sample_key(adata, sample_key)
    samples = adata.obs[sample_key].astype(str) if sample_key else pd.Series("all", index=adata.obs_names)
    has_value = column.notna().to_numpy()
    labels = column[has_value].astype(str)
    if key == _keys.STATE:
        labels = labels.replace({lin: lin + UNDECIDED for lin, states in _keys.states().items() if lin not in states})
    styles, rest = _composition_styles(adata, key, labels, max_colors)
    other = f"other ({len(rest)} label{'s' if len(rest) != 1 else ''})"
    styles[other] = OTHER_STYLE
    # by position: obs_names that repeat (anndata allows them, with a warning) cannot align two Series
    frac = pd.crosstab(samples[has_value].to_numpy(), labels.where(~labels.isin(rest), other).to_numpy(),
                       normalize="index")
    what = {_keys.LINEAGE: "Lineages", _keys.STATE: "Cell states"}.get(key, readable(key))
    with style():
        ax = new_ax(ax, (5.5, 0.35 * len(frac) + 1.2))
        left = np.zeros(len(frac))
        for c in [c for c in styles if c in frac.columns]:
            ax.barh(frac.index, frac[c], left=left, label=c, height=0.8, edgecolor="white", linewidth=0.3,
                    **styles[c])
            left += frac[c].to_numpy()
        ax.set_xlim(0, 1)
        # a sample's cells beside its name, as the other figures do: a fraction of 3 cells is told from one of 300
        n_cells = pd.Series(samples[has_value].to_numpy()).value_counts().reindex(frac.index)
        ax.set_yticks(range(len(frac)), [f"{name} (n={n:,})" for name, n in n_cells.items()])
        n_missing = int((~has_value).sum())
        ax.set_xlabel("fraction of cells" if not n_missing else
                      f"fraction of cells with a value ({n_missing:,} cells without one not counted)")
        ax.invert_yaxis()
        # clear of the x axis's last tick label ("1.0"), half of which lies right of the axes
        ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.04, 0.5))
        ax.set_title(f"{what} per sample" + (f" ({len(rest)} least abundant grouped as other)" if rest else ""))
    return ax


def _fixed_colors(adata: AnnData, key: str) -> dict[str, str]:
    """The colours labels of ``key`` have in every figure (:func:`colors_for`): all stored in ``uns``, else those of
    tmetoolkit's fixed palettes (the others are coloured by abundance here)."""
    colours = colors_for(adata, key)
    stored = adata.uns.get(_keys.colors(key))
    if stored is None or len(stored) != len(colours):
        known = {**lineage_colors(), **state_colors(), **subset_colors()}
        colours = {c: v for c, v in colours.items() if c in known}
    return {str(c): to_hex(v) for c, v in colours.items()}


def _composition_styles(adata: AnnData, key: str, labels: pd.Series, max_colors: int) -> tuple[dict, list]:
    """Bar styles of the labels in display order (fixed colours in the column's order, then the others by
    abundance), and the labels left to be grouped as other."""
    fixed = _fixed_colors(adata, key)
    fixed.setdefault("undetermined", _keys.label_colors()["unassigned"])  # subsets' word for unassigned
    present = set(labels.unique())
    styles = {}
    for c in map(str, adata.obs[key].astype("category").cat.categories):
        if c + UNDECIDED in present and c in fixed:
            styles[c + UNDECIDED] = {"color": _tint(fixed[c]), "hatch": "////", "hatchcolor": fixed[c]}
        elif c in present and c in fixed:
            styles[c] = {"color": fixed[c]}
    free = [c for c in labels.value_counts().index if c not in styles]
    n = min(int(max_colors), len(COLORBLIND_SAFE))
    styles.update({c: {"color": colour} for c, colour in zip(free[:n], COLORBLIND_SAFE, strict=False)})
    return styles, free[n:]


def _tint(colour: str, share: float = 0.55) -> str:
    """``colour`` mixed with ``share`` of white."""
    rgb = np.asarray(to_rgb(colour))
    return to_hex(rgb + (1 - rgb) * share)


@fits_new_figure
def checkpoints(adata: AnnData, *, ax: Axes | None = None) -> Axes:
    """Per sample, the fraction of CD8 T cells expressing at least 1, 2 and 3 co-inhibitory receptors.

    The number of CD8 T cells behind each bar is written under the sample's name: a fraction of a handful of cells
    says little.
    The title names the receptors measured; counts the panel cannot reach (2 or 3 receptors on a protein panel
    with PD-1 alone) are left out rather than drawn as zero.

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
    measured = [r for r in RECEPTORS.values() if tab.get(f"cd8_frac_{r}", pd.Series(dtype=float)).notna().any()]
    with style():
        ax = new_ax(ax, (0.5 * len(tab) + 2.5, 3.2))
        for c, col, lab in zip(cols, shades, ("≥1", "≥2", "≥3"), strict=True):
            if c != cols[0] and (c not in tab or tab[c].isna().all()):  # not measurable with so few receptors
                continue
            ax.bar(tab.index.astype(str), tab[c].fillna(0), color=col, label=f"{lab} receptors", width=0.7)
        ax.set_ylabel("fraction of CD8 T cells")
        ax.set_ylim(0, 1.1)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.legend(frameon=False, fontsize=7)
        ax.set_title(_receptors_title(measured))
        # each sample's CD8 T cells under its name, at the size of the tick labels: written above the bars at 6 pt
        # they were unreadable in a report, and ran into each other and the bars of many samples
        names = tab.index.astype(str)
        n_cd8 = tab["n_cd8"] if "n_cd8" in tab else pd.Series(np.nan, index=tab.index)
        counts = [f"n={int(n):,}" if np.isfinite(n) else "" for n in n_cd8.astype(float)]
        ax.set_xticks(range(len(tab)), [f"{name}\n{c}".rstrip() for name, c in zip(names, counts, strict=True)])
        if _x_labels_overlap(ax):  # upright names would run into each other
            ax.set_xticks(range(len(tab)), [f"{name} ({c})" if c else name
                                            for name, c in zip(names, counts, strict=True)], rotation=90)
    return ax


TICK_GAP = 3  # points kept clear between two upright tick labels, else they read as one


def _x_labels_overlap(ax: Axes) -> bool:
    """Whether two neighbouring x tick labels of ``ax`` overlap where they are drawn."""
    ax.figure.draw_without_rendering()  # tick labels are placed at drawing
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    gap = renderer.points_to_pixels(TICK_GAP)
    return any(a.padded(gap).overlaps(b) for a, b in pairwise(boxes))


def _receptors_title(measured: list[str]) -> str:
    """"PD-1 / TIM-3 / ... co-expression" naming the receptors measured, and under it those that were not (their
    genes outside the panel or the highly variable genes)."""
    shown = measured or list(RECEPTORS.values())
    missing = [r for r in RECEPTORS.values() if r not in shown]
    title = " / ".join(shown) + (" co-expression" if len(shown) > 1 else " expression")
    return title + (f"\n({', '.join(missing)} not measured)" if missing else "")


SCALED_LABEL = "mean score, scaled 0-1 per signature\n(lowest to highest group)"


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
        Scale each signature's group means to 0-1 (minus the lowest group's, divided by the range across groups,
        as ``scanpy.pl.matrixplot(standard_scale="var")``), as the colour bar says; a signature equal in every
        group (to rounding) has no range: it is drawn at 0.5 and its name says so.
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
    unscored = [s for s in signatures if s not in S.columns]
    known = [s for s in unscored if s in packaged_signatures()]
    recorded = adata.uns.get(_keys.SCORES, {}).get("signatures")
    if isinstance(recorded, pd.DataFrame) and {"signature", "scorable"} <= set(recorded.columns):
        # scored before but lacking their genes here (a file of highly variable genes): scoring again cannot help
        lacking = recorded[recorded["signature"].isin(known) & ~recorded["scorable"].astype(bool)]
        if len(lacking):
            detail = "; ".join(f"{r.signature}: {r.n_found} of {r.n_genes}, needs {r.min_genes}"
                               for r in lacking.itertuples())
            msg = (f"{', '.join(map(repr, lacking['signature']))} could not be scored here, too few of the genes "
                   f"are in var_names ({detail}).")
            if adata.raw is not None and adata.raw.n_vars > adata.n_vars:
                msg += (f" adata.raw holds {adata.raw.n_vars:,} genes: tmt.tl.score(adata, "
                        f"{list(lacking['signature'])!r}, use_raw=True) scores them there.")
            else:
                msg += " Plot signatures whose genes the data hold, or score the full gene matrix."
            raise TmtKeyError(msg)
    if known:
        msg = (f"{', '.join(map(repr, known))} not scored on these data: run tmt.tl.score(adata, {known!r}) first "
               "(scores of the signatures already there are kept).")
        raise TmtKeyError(msg)
    if unscored:
        raise missing_key_error(unscored[0], "the scored signatures", S.columns)
    g = require_obs(adata, groupby)
    mean = S[signatures].groupby(g.values, observed=True).mean()
    flat = np.zeros(len(signatures), dtype=bool)
    if standard_scale:  # as scanpy's standard_scale="var": (mean - min) / (max - min) across the groups
        lo, hi = mean.min(), mean.max()
        # equal in every group: its means differ by rounding at most (1e-17 for a constant 0.1), which scaled to
        # 0-1 drew stripes of the palest and the darkest colour; drawn at the middle of the scale instead
        flat = np.isclose(hi, lo, rtol=1e-9, atol=1e-12)
        mean = (mean - lo) / (hi - lo).mask(flat, 1)
        mean.loc[:, flat] = 0.5
    with style():
        ax = new_ax(ax, (0.35 * len(signatures) + 2.5, 0.3 * len(mean) + 1.5))
        im = ax.imshow(mean.to_numpy(), aspect="auto", cmap="Reds")
        ax.set_xticks(range(len(signatures)), [f"{s} (equal in all groups)" if f else s
                                               for s, f in zip(signatures, flat, strict=True)], rotation=90)
        n = g.value_counts()
        ax.set_yticks(range(len(mean)), [f"{name} (n={n[name]:,})" for name in mean.index])
        ax.figure.colorbar(im, ax=ax, fraction=0.04, label=SCALED_LABEL if standard_scale else "mean score")
        ax.set_title(f"Signature scores per {readable(groupby).lower()}"
                     + (" (each signature scaled 0-1)" if standard_scale else ""))
    return ax


Z_LIMIT, MISSING_GREY = 2.5, "0.8"  # immunosuppression heatmap: colour range, components not measured


@fits_new_figure
def immunosuppression(adata: AnnData, *, regions: bool = False, ax: Axes | None = None) -> Axes:
    """Samples (or regions) x immunosuppression components as robust z-scores, with the composite; missing grey.

    Each component is drawn as the z-scores the composite averages: (value - median across samples or regions) /
    spread, the spread (1.4826 x median absolute deviation) taken as at least 0.1, as the colour bar says. A
    component that varies by less than that across the cohort (a few hundredths of a programme score: noise, in
    simulated tumours without the programme planted) therefore stays pale instead of being stretched to full
    colour; ``uns["tmt_immunosuppression"]["table"]`` holds the values. The colours end at z = ±2.5 (the colour
    bar's pointed ends): larger values take the end colours. A component measured in one sample (or region) only
    has no z: it is hatched, with its value written in the cell.

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
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad=MISSING_GREY)  # missing must not look like a z-score of 0
        im = ax.imshow(data, aspect="auto", cmap=cmap, vmin=-Z_LIMIT, vmax=Z_LIMIT)
        ax.set_xticks(range(z.shape[1]), [readable(c) for c in z.columns], rotation=90)
        rows = z.index.astype(str)
        if regions:
            rows = [f"{name} (n={n:,})" for name, n in zip(_region_names(z.index), tab["n_cells"], strict=True)]
        ax.set_yticks(range(len(z)), rows)
        ax.axvline(z.shape[1] - 1.5, c="black", lw=1)
        alone = _values_without_z(ax, tab[z.columns[:-1]], z)
        keys = [Patch(facecolor=MISSING_GREY, edgecolor="0.5", label="not measured")] if (
            data.mask & ~alone).any() else []
        if alone.any():
            keys.append(Patch(facecolor="white", edgecolor=MISSING_GREY, hatch="////",
                              label=f"measured in one {unit[:-1]} only: no z, value written"))
        if data.mask.all():  # one sample: no cell is coloured, and a colour bar would give a scale to nothing
            if keys:
                ax.legend(handles=keys, frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            # the spread's floor keeps a component barely varying across the cohort pale: the label says why
            bar = ax.figure.colorbar(im, ax=ax, fraction=0.04, extend="both",
                                     label=f"robust z across {unit}: (value − median) / spread,\n"
                                           f"spread at least {MIN_SPREAD:g} (beyond ±{Z_LIMIT:g}: end colours)")
            if keys:
                bar.ax.legend(handles=keys, frameon=False, fontsize=7, loc="lower left",
                              bbox_to_anchor=(_right_of_label(bar), 0.0))
        ax.set_title("Immunosuppression components" + (" per region" if regions else ""))
    return ax


def _values_without_z(ax: Axes, values: pd.DataFrame, z: pd.DataFrame) -> np.ndarray:
    """Hatch the cells whose component was measured but has no z (no other row to compare with) and write their
    values there; returns where they are (rows x columns of ``z``), composite column included as never."""
    alone = np.zeros(z.shape, dtype=bool)
    alone[:, : values.shape[1]] = values.notna().to_numpy() & z.iloc[:, : values.shape[1]].isna().to_numpy()
    for i, j in zip(*np.nonzero(alone), strict=True):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", edgecolor=MISSING_GREY, hatch="////",
                               linewidth=0))
        ax.text(j, i, f"{float(values.iat[i, j]):.2g}", ha="center", va="center", fontsize=7,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    return alone


def _right_of_label(bar) -> float:
    """Where the colour bar's label ends on the right, in the bar's axes fraction: a key placed from there sits
    beside the label, which runs past the bar's ends when the bar is shorter than its words."""
    bar.ax.figure.draw_without_rendering()  # the label is placed at drawing, beside the tick labels
    box = bar.ax.yaxis.label.get_window_extent()
    return float(bar.ax.transAxes.inverted().transform((box.x1, box.y0))[0]) + 0.3


CELL_WIDTH, CELL_HEIGHT = 0.45, 0.3  # inches of a cell of the resistance heatmap


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
        ax = new_ax(ax, (CELL_WIDTH * table.shape[1] + 5.0, CELL_HEIGHT * len(table) + 2.0))
        vals = table.to_numpy(dtype=float)
        inapplicable = np.isnan(vals) & measured.to_numpy(dtype=bool)
        cells = {"flagged (✕)": vals == 1, "not flagged": vals == 0, "measured, rule not applicable": inapplicable,
                 "not assessable or needs data": np.isnan(vals) & ~inapplicable}
        rgb = np.empty((*table.shape, 3))
        for name, where in cells.items():
            rgb[where] = colours[name]
        ax.imshow(rgb, aspect=CELL_HEIGHT / CELL_WIDTH)  # one sample is one column, not the figure's width
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
        # the classes the grid shows (a key for a colour no cell has only puzzles the reader)
        ax.legend(handles=[Patch(facecolor=c, edgecolor="0.5", label=k) for k, c in colours.items()
                           if cells[k].any()], frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title("Resistance mechanisms" + (" per region" if regions else ""))
    return ax


@fits_new_figure
def compare_groups(adata: AnnData, *, n_labels: int = 10, ax: Axes | None = None) -> Axes:
    """Effect size (Cliff's delta) against significance for every per-sample feature compared between groups.

    The most significant features are named beside their points; where a name fits nowhere without overlapping
    another, the point gets a number and the legend names it.

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
        ax.axvline(0, c="grey", lw=0.6)
        ax.set_xlim(-1.05, 1.05)  # before the labels: they are placed inside the final limits
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
            key = _annotate_points(ax, labels, log=False)
            if key:
                _legend(ax, key=key)
        ax.set_xlabel(f"Cliff's delta ({g[0]} vs {g[1]})")
        ax.set_ylabel("-log10 p (Mann-Whitney, samples)")
        ax.set_title("Per-sample features between groups (red: FDR < 0.1)")
    return ax

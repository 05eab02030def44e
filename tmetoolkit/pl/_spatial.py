"""Spatial maps: cells coloured by label, tumour border and margins drawn, effector cells highlighted."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory
from matplotlib.tri import TriAnalyzer, Triangulation

from .. import _keys
from .._utils import TmtInputError, checked_number, missing_key_error, natural_key, warn
from ..tl._spatial_utils import checked_pixel_size, image_groups, spatial_array
from ..tl._spots import is_spot_data, visium_pixel_size
from ..tl._tables import resolve_sample_key
from ._utils import (
    MISSING,
    MISSING_COLOR,
    RASTERIZE_ABOVE,
    colors_for,
    fits_new_figure,
    readable,
    require_obs,
    style,
    wrap,
    y_down,
)

VALUE_CMAP = plt.get_cmap("viridis").with_extremes(bad=MISSING_COLOR)  # cells without a value drawn grey, not hidden
CHARS_PER_INCH = 11  # of a panel title at the style's title size
DEFAULT_PANEL = 3.2  # inches: the panel_size the default marker sizes are set for
FLAT_TRIANGLE = 0.05  # inscribed over circumscribed radius below which a triangle on the hull is dropped


@fits_new_figure
def spatial(
    adata: AnnData,
    color: str = _keys.LINEAGE,
    *,
    sample_key: str | None = None,
    samples=None,
    highlight: str | None = "CD8 T",
    border: bool = True,
    ncols: int = 3,
    size: float | None = None,
    panel_size: float = 3.2,
    pixel_size: float | None = None,
    image_key: str | None = None,
    ax=None,
) -> Figure:
    """Cells at their positions, one panel per sample (per image where a sample has several), coloured by an
    ``obs`` column: labels (categorical) or values (numeric: one colour scale over all panels, with a colour bar).

    Where :func:`tmetoolkit.tl.compartments` ran, the tumour border (solid) and the outer and inner edges of
    the margin (dashed) are drawn and named in the legend; cells whose label is ``highlight`` (or one of its
    states) are drawn on top, larger. Every panel carries a scale bar in micrometres (coordinates are converted
    with ``pixel_size``, by default the one the spatial tools recorded). Panel titles carry the sample's immune
    phenotype when :func:`tmetoolkit.tl.immune_phenotype` ran; long sample names are wrapped to the panel's width.
    Cells without a value of a numeric ``color`` (NaN) are drawn light grey and named "no value" in the legend.
    The y axis points down, as in the image the coordinates were measured on (origin at the top left, as squidpy
    and ``scanpy.pl.spatial`` draw them), so that a map lies as its slide does in an image viewer.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]``.
    color
        ``obs`` column to colour by: categorical (``"tmt_lineage"``, ``"tmt_compartment"`` ...) or numeric
        (``"tmt_suppression_score"``, ``"tmt_border_distance"`` ...).
    sample_key
        ``obs`` column of samples, one panel each (default: the one :func:`tmetoolkit.tl.immune_phenotype` or
        :func:`tmetoolkit.tl.compartments` recorded, else the one the other tools recorded, else ``"sample"`` if
        present, else one panel).
    samples
        Subset and order of samples to draw (a list of names, or one name); default every sample, in the order of
        the tools' tables (``"S2"`` before ``"S10"``).
    highlight
        Label of a categorical ``color`` drawn on top (default CD8 T cells), with its states where it is a lineage
        (``color="tmt_state"``: every CD8 T state); ``None`` to switch off.
    border
        Draw the tumour border and margins.
    ncols
        Panels per row.
    size
        Marker size in points^2 (default from the number of cells per panel, scaled with the panel's area: 15,000 / n
        between 1 and 20 on a 3.2-inch panel).
    panel_size
        Inches per panel.
    pixel_size
        Micrometres per coordinate unit, for the scale bar (default: the ``pixel_size`` that
        :func:`tmetoolkit.tl.compartments` recorded, else for Visium spots read by scanpy or squidpy the one their
        scale factors give, else 1: coordinates taken as micrometres).
    image_key
        ``obs`` column of images within a sample, each with its own coordinates: one panel per image, titled
        ``"sample/image"`` (default: the one the spatial tools recorded with these samples, else none).
    ax
        An Axes to draw a single sample into; the legend goes right of it and the figure's layout is left alone.

    Returns
    -------
    The Figure.
    """
    xy = spatial_array(adata)[:, :2]  # read, and refused, as the tools read them
    writer = {_keys.LINEAGE: "annotate", _keys.STATE: "annotate", _keys.COMPARTMENT: "compartments",
              _keys.BORDER_DISTANCE: "compartments", _keys.TUMOR_CELL: "compartments",
              _keys.SUPPRESSION_SCORE: "immunosuppression"}.get(color)
    column = require_obs(adata, color, f"run tmt.tl.{writer} first" if writer else "")
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    labels = column.astype(float) if numeric else column.astype(object).where(column.notna(), MISSING).astype(str)
    # the labels are drawn as strings: a boolean column's False, a numeric category's 3
    cmap = None if numeric else {**{str(k): v for k, v in colors_for(adata, color).items()}, MISSING: MISSING_COLOR}
    user_ax = ax is not None
    if numeric:
        highlight = None
        finite = labels.to_numpy()[np.isfinite(labels.to_numpy())]
        vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        if not finite.size:  # a colour bar would give a scale to values that do not exist
            why = (" (a protein panel has no programmes to score)" if color == _keys.SUPPRESSION_SCORE else "")
            warn(f"no cell has a value of adata.obs[{color!r}]{why}: every cell is drawn as 'no value', without a "
                 "colour bar.")
    if sample_key is None:  # the panels are the samples that the spatial tools called, whatever others used
        for tool in (_keys.IMMUNE_PHENOTYPE, _keys.COMPARTMENTS):
            params = adata.uns.get(tool, {}).get("params", {})
            if params.get("sample_key") and params["sample_key"] in adata.obs:
                sample_key = params["sample_key"]
                break
    sample_key = resolve_sample_key(adata, sample_key)
    image_key = _recorded_image_key(adata, sample_key) if image_key is None else image_key
    if image_key is not None and image_key not in adata.obs:
        raise missing_key_error(image_key, "adata.obs", adata.obs.columns)
    groups = adata.obs[sample_key].astype(str) if sample_key else None
    # sample names are read as strings, as the tools store them (an integer column's 1 is "1")
    one = samples is not None and (isinstance(samples, str) or np.ndim(samples) == 0)  # one name, maybe a number
    names = ([str(s) for s in ([samples] if one else samples)] if samples is not None
             else (sorted(set(groups), key=natural_key) if groups is not None else ["all"]))
    if not names:
        msg = "samples is empty: name at least one sample, or leave samples=None to draw them all."
        raise TmtInputError(msg)
    ncols = checked_number(ncols, "ncols", "panels per row", low=1, integer=True)
    panels = _panels(adata, groups, names, sample_key, image_key)
    if ax is not None and len(panels) > 1:
        msg = ("ax= draws one sample: pass samples=[name]." if len(names) > 1 else
               f"ax= draws one image, and sample {names[0]!r} has {len(panels)} in adata.obs[{image_key!r}]: pass "
               f"a subset of one image, adata[adata.obs[{image_key!r}] == image].")
        raise TmtInputError(msg)
    pheno = _table_of(adata, _keys.IMMUNE_PHENOTYPE, sample_key)
    width = _table_of(adata, _keys.COMPARTMENTS, sample_key, image_key)
    recorded = adata.uns.get(_keys.COMPARTMENTS, {}).get("params", {}).get("pixel_size")
    visium = visium_pixel_size(adata) if is_spot_data(adata) else None  # as the spatial tools read spots
    um_per_unit = checked_pixel_size(pixel_size) or float(recorded or visium or 1.0)
    drew_border = drew_margin = False
    with style():
        if ax is None:
            nrow = int(np.ceil(len(panels) / ncols))
            fig, axes = plt.subplots(nrow, min(ncols, len(panels)), figsize=(panel_size * min(ncols, len(panels)),
                                                                              panel_size * nrow), squeeze=False)
            axes = axes.ravel()
        else:
            fig, axes = ax.figure, np.array([ax])
        # markers grow with the panel, so that a larger panel shows the same map larger, not sparser
        panel_inches = panel_size if not user_ax else float(min(ax.get_window_extent().transformed(
            fig.dpi_scale_trans.inverted()).size))
        for a, (name, sample, m) in zip(axes, panels, strict=False):
            pts, lab = xy[m], labels[m].to_numpy()
            s = size or _marker_size(m.sum(), panel_inches)
            raster = m.sum() > RASTERIZE_ABOVE
            base = ~np.isin(lab, _highlighted(highlight)) if highlight else np.ones(len(lab), bool)
            if numeric:
                mappable = a.scatter(pts[:, 0], pts[:, 1], c=lab, cmap=VALUE_CMAP, vmin=vmin, vmax=vmax, s=s,
                                     linewidths=0, rasterized=raster, plotnonfinite=True)
            else:
                a.scatter(pts[base, 0], pts[base, 1], c=[cmap[v] for v in lab[base]], s=s, linewidths=0,
                          rasterized=raster)
            if highlight and (~base).any():
                a.scatter(pts[~base, 0], pts[~base, 1], c=[cmap.get(v, "#d62728") for v in lab[~base]], s=3 * s,
                          linewidths=_outline(3 * s), edgecolors="white", rasterized=raster)
            if border and _keys.BORDER_DISTANCE in adata.obs:
                d = adata.obs[_keys.BORDER_DISTANCE].to_numpy()[m]
                ok = np.isfinite(d)
                tri = (_triangulation(pts[ok]) if ok.sum() > 3 and (d[ok] < 0).any() and (d[ok] > 0).any()
                       else None)
                if tri is not None:
                    w = float(width.loc[name, "margin_width_um"]) if width is not None and name in width.index else None
                    levels = [0.0] if not w else [-w, 0.0, w]
                    lines = a.tricontour(tri, d[ok], levels=levels, colors="black",
                                         linewidths=[0.6, 1.2, 0.6][-len(levels):] if w else [1.2],
                                         linestyles=["--", "-", "--"][-len(levels):] if w else ["-"])
                    # a contour pins the axes to the cells' extent (sticky edges): without the margin the outermost
                    # cells were cut in half by the panel's frame
                    lines.sticky_edges.x.clear()
                    lines.sticky_edges.y.clear()
                    drew_border, drew_margin = True, drew_margin or bool(w)
            _scale_bar(a, pts, um_per_unit)
            call = pheno.loc[sample, "phenotype"] if pheno is not None and sample in pheno.index else None
            _panel_title(a, name if groups is not None else name.removeprefix("all/"), call, panel_size)
            a.set_aspect("equal", anchor="N")  # panels of different shapes keep their titles in one line
            y_down(a)
            a.set_xticks([])
            a.set_yticks([])
            for spine in a.spines.values():  # the field's outline, all four sides
                spine.set(visible=True, linewidth=0.5, color="0.6")
        for a in axes[len(panels):]:
            a.set_visible(False)
        present = [] if numeric else list(dict.fromkeys(labels))
        handles = [Line2D([], [], marker="o", ls="", color=cmap[c], label=c) for c in cmap if c in present] \
            if cmap else []
        drawn_cells = np.logical_or.reduce([m for _, _, m in panels])
        if numeric and labels[drawn_cells].isna().any():
            handles.append(Line2D([], [], marker="o", ls="", color=MISSING_COLOR, label="no value"))
        if drew_border:
            handles.append(Line2D([], [], color="black", lw=1.2, ls="-", label="tumour border"))
        if drew_margin:
            handles.append(Line2D([], [], color="black", lw=0.6, ls="--", label="margin edges"))
        if numeric and finite.size:
            fig.colorbar(mappable, ax=list(axes[:len(panels)]), shrink=0.6, label=_value_label(color),
                         panchor=False)
        # placed against a panel, not the figure's edge, so that it stays in place when the canvas is fitted
        if numeric and handles:  # the colour bar holds the right side: the lines are named under the first panel
            drawn = axes[:len(panels)]
            per_row = min(ncols, len(drawn))
            below = drawn[(len(drawn) - 1) // per_row * per_row]
            # one column: two ran under the colour bar, across its label, when there is one panel
            below.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.02), frameon=False, ncol=1)
        elif not numeric and user_ax:  # beside the user's axes, in the user's figure, whose layout is the user's
            axes[0].legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                           title=readable(color), ncol=_legend_columns(len(present)))
        elif not numeric:  # beside the rightmost panel, half-way up the figure
            right = axes[min(ncols, len(panels)) - 1]
            beside = blended_transform_factory(right.transAxes, fig.transFigure)
            fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False,
                       title=readable(color), bbox_transform=beside, ncol=_legend_columns(len(present)))
        if not numeric and not user_ax:  # a colour bar spans the panels; tight_layout would squeeze them under it
            fig.tight_layout()
    return fig


def _marker_size(n_cells: int, panel_inches: float) -> float:
    """Default marker size (points^2) of a panel of ``n_cells`` cells: 15,000 / n_cells between 1 and 20 on a panel
    of the default 3.2 inches, in proportion to the panel's area on other sizes (the cells then cover the same share
    of the panel whatever its size)."""
    return max(1.0, min(20.0, 15000.0 / n_cells)) * (panel_inches / DEFAULT_PANEL) ** 2


def _outline(size: float) -> float:
    """Width in points of the white outline of highlighted markers of ``size`` (points^2): 0.4 up to the markers
    of a map of 750 cells, then in proportion to the marker's diameter, so that on a map of 50,000 cells the
    outline does not cover the marker's colour."""
    return 0.4 * min(1.0, float(np.sqrt(size / 60.0)))


def _table_of(adata: AnnData, tool: str, sample_key: str | None, image_key: str | None = None) -> pd.DataFrame | None:
    """A spatial tool's table, where its rows are these panels' samples (or images): a table made per another
    column names other groups, which may share the panels' names."""
    result = adata.uns.get(tool, {})
    params = result.get("params", {})
    if (params.get("sample_key") or None) != sample_key:
        return None
    if image_key is not None and (params.get("image_key") or None) != image_key:
        return None
    return result.get("table")


def _highlighted(highlight: str) -> list[str]:
    """The labels drawn on top for ``highlight``: the label, and where it is a lineage, its states (``"CD8 T"``
    highlights CD8 Tex and the other CD8 T states of ``tmt_state`` as well)."""
    return [highlight] + [state for lineage, state, *_ in _keys.LABELS if lineage == highlight and state]


def _recorded_image_key(adata: AnnData, sample_key: str | None) -> str | None:
    """The image column the spatial tools recorded with these samples, if it is still in ``obs``."""
    for tool in (_keys.IMMUNE_PHENOTYPE, _keys.COMPARTMENTS):
        params = adata.uns.get(tool, {}).get("params", {})
        image_key = params.get("image_key") or None
        if (params.get("sample_key") or None) == sample_key and image_key in adata.obs and image_key != sample_key:
            return image_key
    return None


def _panels(adata: AnnData, groups: pd.Series | None, names: list[str], sample_key: str | None,
            image_key: str | None) -> list[tuple[str, str, np.ndarray]]:
    """(name, sample, cells) of each panel: one per named sample, or per image of it (``"sample/image"``, as the
    compartments table names it) with ``image_key``: images have coordinates of their own and cannot share axes."""
    samples = groups if groups is not None else pd.Series("all", index=adata.obs_names)
    images = image_groups(adata, samples, image_key).to_numpy() if image_key else None
    panels = []
    for name in names:
        m = (samples == name).to_numpy()
        if not m.any():
            raise missing_key_error(name, f"the samples of {sample_key!r}", dict.fromkeys(groups))
        if images is None:
            panels.append((name, name, m))
            continue
        for image in sorted(set(images[m]), key=natural_key):
            panels.append((image, name, m & (images == image)))
    return panels


def _legend_columns(n_labels: int) -> int:
    """Columns of a legend of ``n_labels`` labels, as scanpy lays out its categorical legends: one up to 14."""
    return 1 if n_labels <= 14 else 2 if n_labels <= 30 else 3


def _triangulation(pts: np.ndarray) -> Triangulation | None:
    """The Delaunay triangulation the border is contoured on, or ``None`` where the cells span no area (all on
    one line, as in a strip of tissue): such a sample is drawn without its border lines."""
    try:
        tri = Triangulation(pts[:, 0], pts[:, 1])
    except (RuntimeError, ValueError):  # qhull: singular input (collinear or coinciding points)
        return None
    # the convex hull's flat slivers join cells far apart along the field's edge: a border interpolated across
    # them runs along the edge where no tumour cell is
    tri.set_mask(TriAnalyzer(tri).get_flat_tri_mask(min_circle_ratio=FLAT_TRIANGLE))
    return tri


def _panel_title(ax, name: str, call: str | None, panel_size: float) -> None:
    """The sample's name, wrapped to the panel's width (smaller when it takes more than two lines), over its call."""
    width = max(12, int(panel_size * CHARS_PER_INCH))
    lines = wrap(name, width)
    small = lines.count("\n") >= 2
    ax.set_title(lines + (f"\n{call}" if call is not None else ""), fontsize=7 if small else None)


def _value_label(key: str) -> str:
    """Words for the colour bar of a numeric column, with its unit and sign convention where tmetoolkit knows them."""
    if key == _keys.BORDER_DISTANCE:  # tl.compartments: signed, negative inside the tumour, in micrometres
        return "distance to tumour border (µm; negative: inside the tumour)"
    return readable(key)


def _scale_bar(ax, pts: np.ndarray, um_per_unit: float) -> None:
    """A bar of a round number of micrometres (1, 2 or 5 x 10^k, about a fifth of the panel) in the lower left (the
    largest y: the panel's y axis points down)."""
    span_um = float(np.ptp(pts[:, 0])) * um_per_unit if len(pts) else 0.0
    if span_um <= 0:
        return
    target = span_um / 5
    k = 10 ** np.floor(np.log10(target))
    # the round length nearest a fifth (a 499.6 µm field gets 100 µm, not the 50 µm below 99.9)
    length = min((m * k for m in (1, 2, 5, 10)), key=lambda x: abs(np.log(x / target)))
    x0, y0 = pts[:, 0].min(), pts[:, 1].max() + 0.08 * np.ptp(pts[:, 1])
    ax.plot([x0, x0 + length / um_per_unit], [y0, y0], color="black", lw=2, solid_capstyle="butt")
    ax.text(x0 + length / um_per_unit / 2, y0, f"{length:g} µm", ha="center", va="bottom", fontsize=6)

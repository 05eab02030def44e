"""Shared plotting helpers: axes handling, colours and a local style."""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._utils import missing_key_error
from ._palettes import lineage_colors, phenotype_colors, state_colors, subset_colors

STYLE = {"axes.spines.top": False, "axes.spines.right": False, "font.size": 9, "axes.titlesize": 10}
RASTERIZE_ABOVE = 5_000
MISSING, MISSING_COLOR = "NA", "#d9d9d9"  # cells without a label (NaN), as scanpy draws them


@contextmanager
def style():
    """tmetoolkit's plot style for the figures drawn inside; afterwards only the keys it set are restored.

    ``matplotlib.rc_context`` restores every rcParam, ``interactive`` included. When a tmetoolkit plot was the
    session's first figure in Jupyter, that stopped every later figure from showing (matplotlib#24351).
    """
    old = {key: mpl.rcParams[key] for key in STYLE}
    mpl.rcParams.update(STYLE)
    try:
        yield
    finally:
        mpl.rcParams.update(old)


def colors_for(adata: AnnData, key: str) -> dict[str, str]:
    """Colours of a categorical ``obs`` column: ``uns[key + "_colors"]`` if present, else tmetoolkit's palettes."""
    cats = list(adata.obs[key].astype("category").cat.categories)
    stored = adata.uns.get(f"{key}_colors")
    if stored is not None and len(stored) == len(cats):
        return dict(zip(cats, stored, strict=True))
    from scanpy.plotting import palettes

    fixed = {**lineage_colors(), **state_colors(), **phenotype_colors(), **subset_colors()}
    taken = {fixed[c].lower() for c in cats if c in fixed}
    # scanpy's palettes by size; a colour a fixed label of this column already has is not given to another label
    palette = palettes.default_20 if len(cats) <= 20 else palettes.default_28 if len(cats) <= 28 else \
        palettes.default_102
    free = [c for c in map(mpl.colors.to_hex, palette) if c.lower() not in taken] or list(palette)
    others = {c: free[i % len(free)] for i, c in enumerate(c for c in cats if c not in fixed)}
    return {c: fixed.get(c) or others[c] for c in cats}


def require_obs(adata: AnnData, key: str, hint: str = "") -> pd.Series:
    if key not in adata.obs:
        raise missing_key_error(key, "adata.obs" + (f" ({hint})" if hint else ""), adata.obs.columns)
    return adata.obs[key]


def y_down(ax) -> None:
    """Turn the y axis of ``ax`` downwards, as image rows run (origin at the top left, as squidpy and
    ``scanpy.pl.spatial`` draw tissue coordinates)."""
    bottom, top = sorted(ax.get_ylim())
    ax.set_ylim(top, bottom)


def new_ax(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


FIT_PAD, LOW_DPI = 0.1, 72  # inches of margin around the drawn content; the lowest resolution it is measured at


def fit_to_content(fig) -> None:
    """The canvas grown or trimmed to what is drawn on it, every axes keeping its size in inches.

    Tick labels, legends and colour bars outside the axes then fit whatever their length, in a plain
    ``fig.savefig`` as in Jupyter (whose inline backend crops to the content), and the data area stays the size the
    plot chose for its rows and columns. Figures with a layout engine (``constrained_layout`` set by the user) are
    left to it.
    """
    from matplotlib.layout_engine import PlaceHolderLayoutEngine  # what a one-off tight_layout() leaves
    from matplotlib.transforms import Bbox

    if not isinstance(fig.get_layout_engine(), type(None) | PlaceHolderLayoutEngine):
        return
    dpi, boxes = fig.dpi, []
    # text is wider at low resolution (glyphs are hinted to whole pixels): measured at the figure's dpi and at 72
    for at in dict.fromkeys((dpi, LOW_DPI)):
        fig.set_dpi(at)
        boxes.append(fig.get_tightbbox(fig.canvas.get_renderer()))  # inches
    fig.set_dpi(dpi)
    if any(b is None for b in boxes):
        return
    box = Bbox.union(boxes)
    if box.width <= 0 or box.height <= 0:
        return
    width, height = fig.get_size_inches()
    x0, y0 = box.x0 - FIT_PAD, box.y0 - FIT_PAD
    new_w, new_h = box.width + 2 * FIT_PAD, box.height + 2 * FIT_PAD
    for ax in fig.axes:
        pos = ax.get_position()
        ax.set_position([(pos.x0 * width - x0) / new_w, (pos.y0 * height - y0) / new_h,
                         pos.width * width / new_w, pos.height * height / new_h])
    fig.set_size_inches(new_w, new_h)


def fits_new_figure(plot):
    """Decorator of plotting functions that take ``ax=``: a figure the function made is fitted to its content
    (:func:`fit_to_content`); axes the user passed are left where the user put them."""

    @functools.wraps(plot)
    def wrapper(*args, ax=None, **kwargs):
        out = plot(*args, ax=ax, **kwargs)
        if ax is None:
            fit_to_content(getattr(out, "figure", out))
        return out

    return wrapper


_WORDS = {"cd4": "CD4", "cd8": "CD8", "caf": "CAF", "tgfb": "TGF-beta", "m2": "M2", "m1": "M1", "mdsc": "MDSC",
          "treg": "Treg", "ido": "IDO", "mycaf": "myCAF", "icaf": "iCAF", "tam": "TAM", "pd": "PD"}


def readable(name: str) -> str:
    """``"treg_fraction_cd4"`` as ``"Treg fraction CD4"``: words, not snake_case, on axes and in legends; without
    the ``tmt_`` prefix of tmetoolkit's keys (``"tmt_tam_subset"`` as ``"TAM subset"``)."""
    words = [_WORDS.get(w.lower(), w) for w in str(name).removeprefix(_keys.PREFIX).split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def wrap(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, broken after spaces, underscores, hyphens and dots
    (names such as ``"Patient_00_pre-treatment_biopsy"`` have no spaces); longer pieces are cut."""
    pieces = [p for p in re.split(r"(?<=[\s_.\-])", str(text)) if p]
    lines = [""]
    for piece in pieces:
        while len(piece) > width:
            if lines[-1]:
                lines.append("")
            lines[-1], piece = piece[:width], piece[width:]
            lines.append("")
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines if line)

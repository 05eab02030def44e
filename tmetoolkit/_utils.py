"""Small shared helpers: the logger, the typed warnings and errors, key handling and nearest-name hints.

Decisions travel by type, never by matching message text: a caller that treats one kind of warning or error
differently catches its class (or reads its fields).
"""

from __future__ import annotations

import difflib
import logging
import re
import warnings
from collections.abc import Iterable

import numpy as np

from . import _keys

logger = logging.getLogger("tmetoolkit")


class TmtWarning(UserWarning):
    """A data-quality or overwrite warning that users may filter."""


class TmtCoverageWarning(TmtWarning):
    """Signatures that have too few of their genes in the data, so they are not scored."""


class TmtEmptyCellsWarning(TmtWarning):
    """Observations without any expression: their scores are NaN."""


class TmtRepeatedNamesWarning(TmtWarning):
    """``var_names`` that occur more than once: which column holds the gene cannot be known."""


class TmtScaleWarning(TmtWarning):
    """Spatial coordinates whose cell spacing says they are not micrometres (pixels?): pass ``pixel_size=``."""


class TmtSpeciesWarning(TmtWarning):
    """The species was read from gene names that exist in one species only, the symbols' case being uninformative
    (upper-cased mouse symbols): pass ``species=`` where it is wrong."""


class TmtSmallCohortWarning(TmtWarning):
    """Too few samples for cohort-relative thresholds, so each sample was judged alone by absolute ones."""


class TmtInputError(ValueError):
    """The input cannot be analysed as given (wrong matrix, missing key, implausible values, unusable output
    folder); the message says what to do. The command line prints it as one line; any other exception is a bug."""


class TmtKeyError(KeyError, TmtInputError):
    """A key (``obs`` column, layer, signature ...) that is not in the data; the message names the closest ones."""

    def __str__(self) -> str:  # KeyError quotes its message
        return str(self.args[0]) if self.args else ""


class TmtMatrixError(TmtInputError):
    """The matrix read holds no expression values (``X`` empty, values scaled per gene): another layer or
    ``adata.raw`` may hold them, so callers can point to ``layer=`` / ``--layer`` / ``--use-raw``."""


class TmtLabelError(TmtInputError):
    """None of the labels asked for occurs in the cell-type column; ``argument`` names the parameter that gave
    them (e.g. ``"tumor_labels"``)."""

    def __init__(self, msg: str, argument: str):
        super().__init__(msg)
        self.argument = argument


def warn(msg: str, *, category: type[TmtWarning] = TmtWarning, stacklevel: int = 3) -> None:
    """Emit a :class:`TmtWarning` (or the subclass ``category``)."""
    warnings.warn(msg, category, stacklevel=stacklevel)


def progress_bar(iterable, **kwargs):
    """A tqdm progress bar: a notebook widget where ipywidgets is installed, else text (``tqdm.auto`` without
    ipywidgets warns in notebooks, on every import)."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm(iterable, **kwargs)


def nearest(name: str, options: Iterable[str], n: int = 5) -> list[str]:
    """Closest matches of ``name`` among ``options`` (case-insensitive), for error messages."""
    options = [str(o) for o in options]
    lower = {o.lower(): o for o in options}
    hits = difflib.get_close_matches(str(name).lower(), list(lower), n=n, cutoff=0.4)
    return [lower[h] for h in hits]


def natural_key(name) -> tuple:
    """Sort key that reads the runs of digits in a name as numbers: ``"S2"`` before ``"S10"``, ``"9"`` before
    ``"10"`` (sample ids from an integer column are strings by the time tables are built)."""
    parts = re.split(r"(\d+)", str(name))
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), str(name)


def in_natural_order(table):
    """``table`` (a DataFrame or Series) with its rows in the :func:`natural_key` order of its index."""
    order = sorted(range(len(table)), key=lambda i: natural_key(table.index[i]))
    return table.iloc[order]


def missing_key_error(key: str, where: str, options: Iterable[str]) -> TmtKeyError:
    """A :class:`TmtKeyError` (a ``KeyError``) that names the closest existing keys."""
    options = list(options)
    close = nearest(key, options)
    hint = f" Did you mean {close}?" if close else ""
    avail = ", ".join(map(repr, options[:20])) + (" ..." if len(options) > 20 else "")
    return TmtKeyError(f"{key!r} is not in {where}.{hint} Available: {avail or 'none'}.")


def target(adata, copy: bool):
    """The object a tool writes into: ``adata``, or its copy with ``copy=True``.

    A file opened with ``backed="r"`` can be written into (its ``obs``, ``obsm`` and ``uns`` live in memory), but a
    subset of it cannot: AnnData turns a view into an object of its own on the first write, which for a backed view
    raises once the work is done. Such input is refused before any work, with the two ways out.
    """
    if getattr(adata, "isbacked", False) and (adata.is_view or copy):
        what = "a subset (view) of a file opened with backed='r'" if adata.is_view else "a file opened with backed='r'"
        msg = (f"adata is {what}, which AnnData cannot copy in memory to hold the results. Load it with "
               "adata = adata.to_memory() (the subset's matrix must fit in memory), or write it to a file of its own "
               "with adata.copy(filename='subset.h5ad') and pass that.")
        raise TmtInputError(msg)
    return adata.copy() if copy else adata


def check_tmt_key(container, keys: str | Iterable[str], where: str) -> None:
    """Refuse to overwrite a user key; warn once when replacing keys of ours (an earlier call's results)."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    for key in keys:
        if key in container and not key.startswith(_keys.PREFIX):
            msg = (f"{where}[{key!r}] exists and was not made by tmetoolkit; choose another key "
                   "(tmetoolkit keys start with 'tmt_').")
            raise TmtInputError(msg)
    ours = [k for k in keys if k in container]
    if ours:
        warn(f"overwriting {where}[{', '.join(map(repr, ours))}] (keys starting with 'tmt_' are tmetoolkit's: an "
             "earlier call's results, or a column to rename if you made it)", category=TmtWarning)


def checked_number(value, name: str, what: str, *, low: float = 0.0, high: float = np.inf, low_open: bool = False,
                   high_open: bool = False, integer: bool = False) -> float | int:
    """``value`` as a float (an int with ``integer``) within ``low``-``high`` (each end included unless open);
    otherwise a :class:`TmtInputError` naming the parameter, its range and ``what`` it is. Numbers given as
    strings ("500") are read."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    inside = (np.isfinite(x) and (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
              and (not integer or x == int(x)))
    if not inside:
        bounds = (f"{'above' if low_open else 'at least'} {low:g}" if not np.isfinite(high) else
                  f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
        msg = f"{name} must be {'an integer' if integer else 'a number'} {bounds} ({what}), got {value!r}."
        raise TmtInputError(msg)
    return int(x) if integer else x

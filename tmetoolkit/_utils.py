"""Small shared helpers: the logger, the warning class, key handling and nearest-name hints."""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Iterable

logger = logging.getLogger("tmetoolkit")


class TmtWarning(UserWarning):
    """A data-quality or overwrite warning that users may filter."""


def warn(msg: str, *, stacklevel: int = 3) -> None:
    """Emit a :class:`TmtWarning`."""
    warnings.warn(msg, TmtWarning, stacklevel=stacklevel)


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
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.4)
    return [lower[h] for h in hits]


def missing_key_error(key: str, where: str, options: Iterable[str]) -> KeyError:
    """A KeyError that names the closest existing keys."""
    options = list(options)
    close = nearest(key, options)
    hint = f" Did you mean {close}?" if close else ""
    avail = ", ".join(map(repr, options[:20])) + (" ..." if len(options) > 20 else "")
    return KeyError(f"{key!r} is not in {where}.{hint} Available: {avail or 'none'}.")


def check_tmt_key(container, key: str, where: str) -> None:
    """Refuse to overwrite a user key; warn when replacing one of ours."""
    if key in container:
        if not key.startswith("tmt_"):
            msg = (f"{where}[{key!r}] exists and was not made by tmetoolkit; choose another key "
                   "(tmetoolkit keys start with 'tmt_').")
            raise ValueError(msg)
        logger.info("overwriting %s[%r]", where, key)

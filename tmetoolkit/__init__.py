"""tmetoolkit: the tumour microenvironment on top of scanpy.

Use it like scanpy::

    import tmetoolkit as tmt

    adata = tmt.datasets.simulate()
    tmt.pp.check_input(adata)
    tmt.tl.score(adata, "all")
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from . import datasets, get, pl, pp, sig, tl  # noqa: E402
from ._report import report  # noqa: E402
from ._utils import TmtWarning  # noqa: E402

__all__ = ["datasets", "get", "pl", "pp", "sig", "tl", "report", "TmtWarning", "__version__"]

logging.getLogger("tmetoolkit").addHandler(logging.NullHandler())

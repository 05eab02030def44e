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

from . import datasets, get, pl, pp, sig, tl
from ._report import report
from ._utils import TmtInputError, TmtWarning

__all__ = ["TmtInputError", "TmtWarning", "__version__", "datasets", "get", "pl", "pp", "report", "sig", "tl"]

logging.getLogger("tmetoolkit").addHandler(logging.NullHandler())

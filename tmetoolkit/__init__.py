"""tmetoolkit: the tumour microenvironment on top of scanpy.

Use it like scanpy::

    import tmetoolkit as tmt

    adata = tmt.datasets.simulate()
    tmt.pp.check_input(adata)
    tmt.tl.score(adata, "all")
"""

from __future__ import annotations

import logging

from . import datasets, get, pl, pp, sig, tl
from ._utils import TmtWarning

__version__ = "0.1.0"
__all__ = ["datasets", "get", "pl", "pp", "sig", "tl", "TmtWarning", "__version__"]

logging.getLogger("tmetoolkit").addHandler(logging.NullHandler())

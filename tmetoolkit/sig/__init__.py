"""The signature registry: published, cited gene sets that ship with tmetoolkit and work offline.

Examples
--------
>>> import tmetoolkit as tmt
>>> tmt.sig.get("TAM_M2_like").doi
'10.1016/j.immuni.2014.06.008'
"""

from ._genes import aliases, orthologs, to_mouse
from ._io import as_signatures, read_gmt, to_decoupler, write_gmt
from ._model import Signature
from ._registry import COLLECTIONS, collection, get, list, schema

__all__ = [
    "COLLECTIONS",
    "Signature",
    "aliases",
    "as_signatures",
    "collection",
    "get",
    "list",
    "orthologs",
    "read_gmt",
    "schema",
    "to_decoupler",
    "to_mouse",
    "write_gmt",
]

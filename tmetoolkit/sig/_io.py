"""Reading and writing signatures: GMT files, decoupler networks, and the flexible ``signatures=`` argument."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from .._utils import TmtInputError, missing_key_error
from ._model import Signature
from ._registry import COLLECTIONS, _load_all, collection


def read_gmt(path: str | os.PathLike) -> list[Signature]:
    """Read a GMT file (name, description, genes; tab-separated) into signatures.

    A gene ending in ``-`` is read as a down gene, as in scGate's model tables.

    Parameters
    ----------
    path
        The GMT file.

    Returns
    -------
    One :class:`Signature` per line, in collection ``"user"`` with the file named as its source.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"GMT file {str(path)!r} does not exist."
        raise FileNotFoundError(msg)
    sigs = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) < 3:
            msg = (f"{path.name}, line {ln}: a GMT line needs a name, a description and at least one gene, "
                   "tab-separated.")
            raise TmtInputError(msg)
        name, desc, genes = parts[0], parts[1], [g for g in parts[2:] if g]
        up = tuple(dict.fromkeys(g for g in genes if not g.endswith("-")))
        down = tuple(dict.fromkeys(g[:-1] for g in genes if g.endswith("-")))
        meta = {"collection": "user", "description": desc, "source": {"citation": f"user GMT: {path.name}", "doi": ""}}
        sigs.append(Signature(name=name, genes_up=up, genes_down=down, min_genes=1, metadata=meta))
    return sigs


def write_gmt(sigs, path: str | os.PathLike) -> None:
    """Write signatures to a GMT file, for tools that read gene sets (GSEA, gseapy, fgsea).

    The description field holds ``v<version>|<doi>``; down genes get a ``-`` suffix, which :func:`read_gmt` reads
    back.

    Parameters
    ----------
    sigs
        Anything ``signatures=`` accepts (see :func:`as_signatures`).
    path
        The file to write (overwritten).
    """
    lines = []
    for s in as_signatures(sigs):
        genes = [*s.genes_up, *(f"{g}-" for g in s.genes_down)]
        lines.append("\t".join([s.name, f"v{s.version}|{s.doi}", *genes]))
    Path(path).write_text("\n".join(lines) + "\n")


def to_decoupler(sigs="all") -> pd.DataFrame:
    """Signatures as a decoupler network, for ``decoupler.mt.*`` methods (``net=``).

    Parameters
    ----------
    sigs
        Anything ``signatures=`` accepts (see :func:`as_signatures`); default every packaged signature.

    Returns
    -------
    One row per signature and gene: ``source`` (signature), ``target`` (gene) and ``weight`` (the gene's weight,
    negative for down genes).
    """
    rows = []
    for s in as_signatures(sigs):
        rows += [(s.name, g, s.weight(g)) for g in s.genes_up]
        rows += [(s.name, g, -s.weight(g)) for g in s.genes_down]
    return pd.DataFrame(rows, columns=["source", "target", "weight"])


def _user_signature(name: str, genes) -> Signature:
    if isinstance(genes, Signature):
        return genes
    if isinstance(genes, str):
        genes = [genes]
    genes = [str(g) for g in genes]
    up = tuple(dict.fromkeys(g for g in genes if not g.endswith("-")))
    down = tuple(dict.fromkeys(g[:-1] for g in genes if g.endswith("-")))
    meta = {"collection": "user", "description": "user gene set", "source": {"citation": "user-supplied", "doi": ""}}
    return Signature(name=str(name), genes_up=up, genes_down=down, min_genes=1, metadata=meta)


def as_signatures(sigs) -> list[Signature]:
    """Turn any accepted ``signatures=`` value into a list of :class:`Signature`.

    Parameters
    ----------
    sigs
        A collection name or ``"all"``; a registry signature name; a GMT path; a :class:`Signature`; a mapping
        ``{name: genes}`` (a gene ending in ``-`` is a down gene); or a list mixing these.

    Returns
    -------
    The signatures, each name once (a later one of the same name replaces an earlier one).
    """
    if isinstance(sigs, Signature):
        return [sigs]
    if isinstance(sigs, Mapping):
        return [_user_signature(k, v) for k, v in sigs.items()]
    if isinstance(sigs, (str, os.PathLike)):
        key = str(sigs)
        if key == "all" or key in COLLECTIONS:
            return collection(key)
        registry = _load_all()
        if key in registry:
            return [registry[key]]
        if key.endswith((".gmt", ".GMT")) or Path(key).is_file():
            if not Path(key).is_file():
                msg = (f"GMT file {key!r} does not exist: pass the path of an existing GMT file, or the name of a "
                       "signature or collection (tmt.sig.list()).")
                raise TmtInputError(msg)
            return read_gmt(key)
        raise missing_key_error(key, "the signature registry or its collections", [*COLLECTIONS, "all", *registry])
    if isinstance(sigs, Iterable):
        out: dict[str, Signature] = {}
        for item in sigs:
            for s in as_signatures(item):
                out[s.name] = s
        return [*out.values()]
    msg = ("signatures must be a name, a collection, a GMT path, a Signature, a dict or a list of these; "
           f"got {type(sigs).__name__}.")
    raise TypeError(msg)

"""The packaged signature registry: one YAML file per signature, validated against ``schema.json``."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from .._utils import missing_key_error
from ._model import Signature

COLLECTIONS = ("lineage", "tam", "caf", "mdsc", "treg", "tcell", "phenotype", "suppression", "resistance")


def package_file(folder: str, name: str) -> Path:
    """A file shipped with the package: ``signatures/<name>`` or ``data/<name>`` of the source tree, installed as
    ``tmetoolkit/_signatures/...`` and ``tmetoolkit/_data/...``; the installed copy first, then the source tree
    (an editable install)."""
    packaged = resources.files("tmetoolkit") / f"_{folder}" / name
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / folder / name


def _signature_dir() -> Path:
    """Signatures inside the installed wheel, or the source tree in an editable install."""
    packaged = resources.files("tmetoolkit") / "_signatures"
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / "signatures"
    if source.is_dir():
        return source
    msg = "tmetoolkit's signature files are missing from this installation; reinstall the package."
    raise FileNotFoundError(msg)


@lru_cache(maxsize=1)
def schema() -> dict:
    """The JSON schema every signature file follows."""
    return json.loads((_signature_dir() / "schema.json").read_text())


@lru_cache(maxsize=1)
def _load_all() -> dict[str, Signature]:
    import jsonschema

    sch = schema()
    validator = jsonschema.validators.validator_for(sch)(sch)  # one validator: jsonschema.validate re-checks the schema
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: dict[str, Signature] = {}
    for path in sorted(_signature_dir().glob("*/*.yaml")):
        d = yaml.load(path.read_text(), Loader=loader)  # CSafeLoader or SafeLoader
        try:
            validator.validate(d)
        except jsonschema.ValidationError as e:
            msg = f"signature file {path.name} is invalid: {e.message}"
            raise ValueError(msg) from e
        if d["name"] in out:
            msg = f"signature name {d['name']!r} is defined twice"
            raise ValueError(msg)
        out[d["name"]] = Signature.from_dict(d)
    return out


def list(collection: str | None = None) -> pd.DataFrame:
    """Table of the packaged signatures.

    Parameters
    ----------
    collection
        Restrict to one collection (``lineage``, ``tam``, ``caf``, ``mdsc``, ``treg``, ``tcell``, ``phenotype``,
        ``suppression``, ``resistance``).

    Returns
    -------
    One row per signature with columns ``name``, ``collection``, ``population``, ``state``, ``n_genes``,
    ``species``, ``version``, ``citation``, ``doi``.
    """
    rows = []
    for s in _load_all().values():
        if collection is not None and s.collection != collection:
            continue
        rows.append(
            {
                "name": s.name,
                "collection": s.collection,
                "population": s.metadata.get("population") or "",
                "state": s.metadata.get("state") or "",
                "n_genes": len(s.genes),
                "species": s.species,
                "version": s.version,
                "citation": s.citation,
                "doi": s.doi,
            }
        )
    if collection is not None and not rows:
        raise missing_key_error(collection, "the signature collections", COLLECTIONS)
    return pd.DataFrame(rows)


def get(name: str) -> Signature:
    """One packaged signature by name, e.g. ``tmt.sig.get("TAM_M2_like")``.

    Parameters
    ----------
    name
        A name from :func:`list` (the error names the nearest ones).

    Returns
    -------
    The signature, with its up and down genes, weights and source (citation, DOI).
    """
    sigs = _load_all()
    if name not in sigs:
        raise missing_key_error(name, "the signature registry", sigs)
    return sigs[name]


def collection(name: str = "all") -> list[Signature]:
    """All signatures of a collection.

    Parameters
    ----------
    name
        ``lineage``, ``tam``, ``caf``, ``mdsc``, ``treg``, ``tcell``, ``phenotype``, ``suppression``,
        ``resistance`` or ``"all"``.

    Returns
    -------
    The collection's signatures, in name order.
    """
    sigs = _load_all()
    if name == "all":
        return [*sigs.values()]
    if name not in COLLECTIONS:
        raise missing_key_error(name, "the signature collections", (*COLLECTIONS, "all"))
    return [s for s in sigs.values() if s.collection == name]

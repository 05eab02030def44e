"""The :class:`Signature` record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._utils import TmtInputError


@dataclass(frozen=True)
class Signature:
    """A published gene signature with direction, optional weights and provenance.

    Attributes
    ----------
    name
        Unique identifier, used as the score column name.
    genes_up, genes_down
        Genes expected high (``up``) or low (``down``) in the population or state.
    weights
        Optional positive weight per gene (default 1); used by ``method="mean_ctrl"``.
    min_genes
        Below this many genes found in the data, the signature is not scored; nor is it without one of its up
        genes (its down genes alone would score their own level).
    metadata
        Everything else from the YAML file: version, collection, population, state, species, description,
        source (citation, DOI, PMID) and curation notes.
    """

    name: str
    genes_up: tuple[str, ...]
    genes_down: tuple[str, ...] = ()
    weights: dict[str, float] = field(default_factory=dict)
    min_genes: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            msg = (f"signature name {self.name!r} cannot be a score column: names must be non-empty strings "
                   "without '/' (HDF5 and zarr keys cannot hold slashes); rename it, e.g. "
                   f"{str(self.name).replace('/', '_') or 'my_signature'!r}.")
            raise TmtInputError(msg)

    @property
    def genes(self) -> tuple[str, ...]:
        """All genes, up first."""
        return self.genes_up + self.genes_down

    @property
    def version(self) -> int:
        return int(self.metadata.get("version", 1))

    @property
    def collection(self) -> str:
        return self.metadata.get("collection", "user")

    @property
    def species(self) -> str:
        return self.metadata.get("species", "human")

    @property
    def citation(self) -> str:
        return (self.metadata.get("source") or {}).get("citation", "")

    @property
    def doi(self) -> str:
        return (self.metadata.get("source") or {}).get("doi", "") or ""

    def weight(self, gene: str) -> float:
        return float(self.weights.get(gene, 1.0))

    def __repr__(self) -> str:
        down = f", {len(self.genes_down)} down" if self.genes_down else ""
        return f"Signature({self.name!r}, {len(self.genes_up)} up{down}, collection={self.collection!r})"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        meta = {k: v for k, v in d.items() if k not in {"name", "genes_up", "genes_down", "weights", "min_genes"}}
        return cls(
            name=str(d["name"]),
            genes_up=tuple(d["genes_up"]),
            genes_down=tuple(d.get("genes_down") or ()),
            weights={str(k): float(v) for k, v in (d.get("weights") or {}).items()},
            min_genes=int(d.get("min_genes", 1)),
            metadata=meta,
        )

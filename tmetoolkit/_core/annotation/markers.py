"""The lineage marker table (``signatures/lineage_markers.yaml``) and its resolution against a panel."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ...sig._registry import package_file


@dataclass(frozen=True)
class LabelMarkers:
    """One label's identity: every ``positive`` group must be expressed, no ``negative`` group may be.

    ``reserve`` holds, per positive group, cited genes of the same lineage that stand in for the group's genes a
    panel lacks (a file of 2,000 highly variable genes, a targeted panel), in the order they are read (genes of a
    subset of the lineage last: ``MarkerTable.subset_stand_ins``); on a panel with the whole group they are not
    read.
    """

    label: str
    positive: tuple[tuple[str, ...], ...]
    negative: tuple[tuple[str, ...], ...]
    sources: tuple[str, ...]
    reserve: tuple[tuple[str, ...], ...] = ()
    decisive: tuple[str, ...] = ()  # transcripts only this label's cells make (see the marker file)
    decisive_state: str | None = None  # the state such a cell is, within its lineage
    negative_reserve: tuple[tuple[str, ...], ...] = ()  # per negative group, its stand-ins (as ``reserve``)
    # positions in ``negative`` of the groups the label is told from: where the panel reads none of such a group's
    # genes nor its stand-ins, the label cannot be called (NK cells without any T-cell gene on the panel)
    told_from: tuple[int, ...] = ()
    # positions in ``negative`` of the groups that mark a sibling lineage the classifier tells this one from
    # (macrophages and DCs): they do not veto a cell whose own markers lead every other negative group
    siblings: tuple[int, ...] = ()

    @property
    def lineage(self) -> str:
        return self.label.split("|")[0]

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g for grp in self.positive for g in grp))


@dataclass(frozen=True)
class MarkerTable:
    labels: tuple[LabelMarkers, ...]
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    version: int = 1
    splits: dict[str, tuple[LabelMarkers, ...]] = field(default_factory=dict)  # parent label -> its lineages
    # subunits of one protein complex (C1QA/C1QB/C1QC): a group reads them as one marker, their mean rank
    complexes: tuple[tuple[str, ...], ...] = ()
    # stand-ins made by part of a lineage only (CD8B: CD8 T cells): read for the lineage, but they cannot show that
    # a cell is not of it, so they do not make a label told from that lineage assessable (``told_from``)
    subset_stand_ins: frozenset[str] = frozenset()

    @property
    def every_label(self) -> tuple[LabelMarkers, ...]:
        """The lineage labels and the labels of their splits (CD8 T and CD4 T among T cells)."""
        return (*self.labels, *(lab for sub in self.splits.values() for lab in sub))

    @property
    def genes(self) -> list[str]:
        """Every gene the table may read: its groups, then their stand-ins (negative groups' last)."""
        every = self.every_label
        groups = [grp for lab in every for grp in (*lab.positive, *lab.reserve, *lab.negative)]
        groups += [grp for lab in every for grp in lab.negative_reserve]
        return list(dict.fromkeys(g for grp in groups for g in grp))

    @property
    def reserve_genes(self) -> set[str]:
        """Genes read only in place of missing markers (not part of any group)."""
        every = self.every_label
        core = {g for lab in every for grp in (*lab.positive, *lab.negative) for g in grp}
        return {g for lab in every for grp in (*lab.reserve, *lab.negative_reserve) for g in grp} - core

    def split(self, parent: str) -> MarkerTable:
        """The table that divides ``parent``'s cells into lineages (empty when it is a lineage itself)."""
        return MarkerTable(self.splits.get(parent, ()), self.sources, self.version, complexes=self.complexes,
                           subset_stand_ins=self.subset_stand_ins)

    def with_label(self, label: str, genes: tuple[str, ...], source: str) -> MarkerTable:
        """A copy with one more label (e.g. a malignant programme given by the user), with the negatives of the
        table's other labels of its lineage."""
        lineage = label.split("|")[0]
        negative = next((lab.negative for lab in self.labels if lab.lineage == lineage), ())
        extra = LabelMarkers(label, (tuple(genes),), negative, (source,))
        return MarkerTable((*self.labels, extra), self.sources, self.version, self.splits, self.complexes,
                           self.subset_stand_ins)

    def table(self) -> pd.DataFrame:
        """One row per label: lineage, positive and negative genes (groups joined by ``;``), sources."""
        return pd.DataFrame([{
            "label": lab.label, "lineage": lab.lineage,
            "positive": "; ".join(",".join(g) for g in lab.positive),
            "negative": "; ".join(",".join(g) for g in lab.negative),
            "sources": "; ".join(self.sources.get(s, {}).get("doi", s) for s in lab.sources),
        } for lab in self.every_label])


def _marker_file() -> Path:
    return package_file("signatures", "lineage_markers.yaml")


@lru_cache(maxsize=1)
def lineage_markers() -> MarkerTable:
    """The packaged lineage marker table (read once)."""
    import yaml

    spec = yaml.safe_load(_marker_file().read_text())
    groups = {**spec["groups"], **spec.get("negative_groups", {})}
    reserve = spec.get("reserve", {})

    def spare(group):  # a group's stand-ins in the order they are read: the lineage's own, then a subset's
        entry = reserve.get(group, {})
        return (*entry.get("genes", ()), *entry.get("subset", ()))

    def one(name, entry, negative_stand_ins=True):
        return LabelMarkers(name, tuple(tuple(groups[g]) for g in entry["positive"]),
                            tuple(tuple(groups[g]) for g in entry.get("negative", ())), tuple(entry.get("sources", ())),
                            tuple(spare(g) for g in entry["positive"]),
                            tuple(entry.get("decisive", {}).get("genes", ())), entry.get("decisive", {}).get("state"),
                            tuple(spare(g) if negative_stand_ins else () for g in entry.get("negative", ())),
                            tuple(entry.get("negative", ()).index(g) for g in entry.get("told_from", ())),
                            tuple(entry.get("negative", ()).index(g) for g in entry.get("siblings", ())))

    labels = tuple(one(name, entry) for name, entry in spec["labels"].items())
    # in a split the two labels are each other's negative: a stand-in read there would count twice (IL7R and CD28,
    # for CD4 and against CD8, though naive CD8 T cells hold both)
    splits = {parent: tuple(one(name, entry, negative_stand_ins=False) for name, entry in table.items())
              for parent, table in spec.get("splits", {}).items()}
    complexes = tuple(tuple(entry["genes"]) for entry in spec.get("complexes", {}).values())
    subset = frozenset(g for entry in reserve.values() for g in entry.get("subset", ()))
    return MarkerTable(labels, spec.get("sources", {}), int(spec.get("version", 1)), splits, complexes, subset)

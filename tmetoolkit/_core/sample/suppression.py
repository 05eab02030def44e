"""Immunosuppression per cell and per sample (or region), from cell labels, programme scores and checkpoint calls;
each component stays visible beside the composite. Tables in, a :class:`Suppression` out; the runner is
``tmetoolkit.tl._suppression``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..._utils import logger, natural_key, warn
from ..checkpoints import RECEPTORS
from .cohort import MIN_SPREAD, robust_z
from .features import fraction, mean_score

COMPONENTS = {
    "treg_fraction_cd4": "Tregs among CD4 T cells",
    "treg_activation": "activated-Treg programme (TNFRSF9+, Zheng 2021) in Tregs",
    "mdsc_fraction_myeloid": "M- and PMN-MDSC-like cells among monocytes, macrophages and neutrophils",
    "m2_m1_balance": "(M2-like - M1-like) / (M2-like + M1-like) among TAMs",
    "mycaf_fraction_caf": "myCAFs among fibroblasts",
    "tgfb_caf": "pan-fibroblast TGF-beta response (Pan-F-TBRS) in fibroblasts",
    "checkpoint_coexpression": "CD8 T cells with two or more co-inhibitory receptors",
    "checkpoint_ligands": "checkpoint-ligand programme in malignant and myeloid cells",
    "ido_adenosine": "IDO1 / CD39 / CD73 / A2A-A2B axis",
    "hypoxia": "hypoxia programme (HALLMARK) in all cells",
    "glycolysis": "glycolysis programme in malignant cells",
}
# protein panels (tmt.tl.annotate from marker gates): what the gate-based components measure there
PROTEIN_COMPONENTS = {
    "checkpoint_coexpression": "CD8 T cells above the gates of two or more co-inhibitory receptors (protein)",
    "checkpoint_ligands": "malignant cells and macrophages above the PD-L1 or PD-L2 gate (protein)",
}
# the annotate labels a component counts; both must be callable for a fraction to mean something
COMPONENT_LABELS = {
    "treg_fraction_cd4": ("CD4 T|Treg", "CD4 T|conventional"),
    "treg_activation": ("CD4 T|Treg",),
    "mdsc_fraction_myeloid": ("M-MDSC-like", "PMN-MDSC-like"),
    "m2_m1_balance": ("TAM M1-like", "TAM M2-like"),
    "mycaf_fraction_caf": ("myCAF",),
}
MIN_DENOMINATOR = 5  # cells a fraction, balance or cell-type mean rests on at least
CELL_PROGRAMMES = {  # lineage -> signatures averaged into the per-cell suppressive score
    "Monocyte/Macrophage": ("TAM_M2_like", "MDSC_suppressive_mediators"),
    "Neutrophil": ("PMN_MDSC_like", "MDSC_suppressive_mediators"),
    "Fibroblast": ("myCAF", "Pan_F_TBRS", "CAF_TGFb_myCAF"),
    "CD4 T": ("Treg_activated",),
}
NEEDED = sorted({s for v in CELL_PROGRAMMES.values() for s in v} | {
    "TAM_M1_like", "Checkpoint_ligands", "IDO_adenosine_axis", "HALLMARK_HYPOXIA", "Hypoxia_Buffa",
    "HALLMARK_GLYCOLYSIS", "Glycolysis_core"})
# bulk or pseudobulk (observations are samples): no cells to count, so each component is a programme of the whole
# sample; component -> (what it measures, signatures added, signatures subtracted)
BULK_COMPONENTS = {
    "treg_programme": ("Treg programme (Treg_core)", ("Treg_core",), ()),
    "treg_activation": ("activated-Treg programme (Treg_activated)", ("Treg_activated",), ()),
    "mdsc_programme": ("M- and PMN-MDSC-like programmes", ("M_MDSC_like", "PMN_MDSC_like"), ()),
    "m2_m1_difference": ("TAM M2-like minus TAM M1-like programme", ("TAM_M2_like",), ("TAM_M1_like",)),
    "mycaf_programme": ("myCAF programme", ("myCAF",), ()),
    "tgfb": ("pan-fibroblast TGF-beta response (Pan-F-TBRS)", ("Pan_F_TBRS",), ()),
    "checkpoint_receptors": ("co-inhibitory receptor programme", ("Checkpoint_receptors",), ()),
    "checkpoint_ligands": ("checkpoint-ligand programme", ("Checkpoint_ligands",), ()),
    "ido_adenosine": (COMPONENTS["ido_adenosine"], ("IDO_adenosine_axis",), ()),
    "hypoxia": ("hypoxia programme (HALLMARK)", ("HALLMARK_HYPOXIA",), ()),
    "glycolysis": ("glycolysis programme (HALLMARK)", ("HALLMARK_GLYCOLYSIS",), ()),
}
BULK_NEEDED = sorted({s for _, plus, minus in BULK_COMPONENTS.values() for s in (*plus, *minus)})
COMPOSITE = ("mean of robust z-scores (median/MAD across samples, the spread at least "
             f"{MIN_SPREAD}) of the measured components")


@dataclass(frozen=True)
class Cells:
    """What the per-sample components read from annotated cells, each indexed by cell.

    ``scores``: cells x signatures; ``lineage`` and ``state``: the labels of ``tmt.tl.annotate``; ``n_receptors``:
    co-inhibitory receptors per cell (``tmt.tl.checkpoints``; NaN where not counted); ``detection``: the checkpoint
    detection table, or None; ``protein``: the cells were called from a protein panel; ``rules``: annotate's table of
    rules (``label``, ``level``, ``assessable``), or None; ``untold``: per cell, whether annotate's split of an
    MDSC-like state from the cell's monocytes or neutrophils was too few cells to tell in its sample, or None.
    """

    scores: pd.DataFrame
    lineage: pd.Series
    state: pd.Series
    n_receptors: pd.Series
    detection: pd.DataFrame | None = None
    protein: bool = False
    rules: pd.DataFrame | None = None
    untold: pd.Series | None = None


@dataclass(frozen=True)
class Suppression:
    """``table``: samples (or bulk observations) x components, ``composite``, ``n_components`` and
    ``missing_components``; ``components``: what each measures; ``cell_score``: the per-cell suppressive programme
    score (None for bulk); ``regions``: the same per region, or None."""

    table: pd.DataFrame
    components: pd.DataFrame
    cell_score: pd.Series | None = None
    regions: pd.DataFrame | None = None


def cell_score(cells: Cells) -> pd.Series:
    """Per cell, the mean of its lineage's ``CELL_PROGRAMMES`` (Tregs only among CD4 T cells); NaN elsewhere."""
    S, lin, st = cells.scores, cells.lineage, cells.state
    per_cell = pd.Series(np.nan, index=lin.index)
    for lineage, sigs in CELL_PROGRAMMES.items():
        have = [s for s in sigs if s in S.columns]
        mask = (lin == lineage) & ((st == "Treg") if lineage == "CD4 T" else True)
        if have and mask.any():
            per_cell[mask] = S.loc[mask, have].mean(axis=1)
    return per_cell.astype(float)


def cell_suppression(cells: Cells, samples: pd.Series, *, region_of: pd.Series | None = None,
                     regions: pd.DataFrame | None = None, min_cells: int = 50) -> Suppression:
    """Per-cell scores, and the components and composite of every sample (and of every region of ``region_of``,
    ``regions`` giving their ``sample``, ``region`` and ``n_cells``; regions with fewer than ``min_cells`` cells get
    no components)."""
    per_cell = cell_score(cells)
    tab = cell_components(cells, samples)
    if region_of is not None:
        regions = regions.join(cell_components(cells, region_of))
        regions.loc[regions["n_cells"] < min_cells, list(COMPONENTS)] = np.nan
        regions = summarise(regions, list(COMPONENTS))
        regions["reason"] = np.where(regions["n_cells"] < min_cells, f"fewer than {min_cells} cells", "")
    components = {**COMPONENTS, **PROTEIN_COMPONENTS} if cells.protein else COMPONENTS
    return _finish(tab, components, cell_score=per_cell, regions=regions)


def bulk_suppression(scores: pd.DataFrame) -> Suppression:
    """Components and composite of bulk samples (observations x signatures ``scores``)."""
    return _finish(bulk_components(scores), {name: v[0] for name, v in BULK_COMPONENTS.items()})


def cell_components(cells: Cells, groups: pd.Series) -> pd.DataFrame:
    """The components of ``COMPONENTS`` per group of cells (samples or regions), NaN where not measurable.

    A fraction, balance or mean over a cell type needs ``MIN_DENOMINATOR`` such cells: one Treg among one CD4 T
    cell is no Treg fraction of 100%.
    """
    k = MIN_DENOMINATOR
    S, lin, st = cells.scores, cells.lineage, cells.state
    myeloid = lin.isin(["Monocyte/Macrophage", "Neutrophil"])
    tam = st.isin(["TAM M1-like", "TAM M2-like"])
    n_m2 = (st == "TAM M2-like").groupby(groups, observed=True).sum()
    n_m1 = (st == "TAM M1-like").groupby(groups, observed=True).sum()
    malignant = lin == "Malignant/Epithelial"
    every = pd.Series(True, index=lin.index)
    tab = pd.DataFrame(index=pd.Index(sorted(groups.dropna().unique(), key=natural_key), name=None))
    tab["treg_fraction_cd4"] = fraction(st == "Treg", lin == "CD4 T", groups, k)
    tab["treg_activation"] = mean_score(S, ["Treg_activated"], st == "Treg", groups, k)
    tab["mdsc_fraction_myeloid"] = fraction(st.isin(["M-MDSC-like", "PMN-MDSC-like"]), myeloid, groups, k).where(
        _mdsc_told(cells, groups))
    tab["m2_m1_balance"] = ((n_m2 - n_m1) / (n_m2 + n_m1).replace(0, np.nan)).where(
        tam.groupby(groups, observed=True).sum() >= k)
    tab["mycaf_fraction_caf"] = fraction(st == "myCAF", lin == "Fibroblast", groups, k)
    tab["tgfb_caf"] = mean_score(S, ["Pan_F_TBRS"], lin == "Fibroblast", groups, k)
    # CD8 T cells with a receptor count (tmt.tl.checkpoints; NaN where no receptor gene is measured)
    n_receptors = cells.n_receptors.astype(float)
    tab["checkpoint_coexpression"] = fraction(n_receptors >= 2, (lin == "CD8 T") & n_receptors.notna(), groups, k)
    if _receptors_measured(cells.detection) < 2:  # "two or more" cannot be seen on a panel with one receptor
        tab["checkpoint_coexpression"] = np.nan
    ligand_cells = malignant | (lin == "Monocyte/Macrophage")
    if cells.protein:
        det = cells.detection if isinstance(cells.detection, pd.DataFrame) else pd.DataFrame(index=lin.index)
        ligands = det.reindex(columns=["PD-L1", "PD-L2"])
        measured = ligands.notna().any(axis=1)
        tab["checkpoint_ligands"] = fraction(ligands.fillna(0).sum(axis=1) > 0, ligand_cells & measured, groups, k)
    else:
        tab["checkpoint_ligands"] = mean_score(S, ["Checkpoint_ligands"], ligand_cells, groups, k)
    tab["ido_adenosine"] = mean_score(S, ["IDO_adenosine_axis"], every, groups)
    tab["hypoxia"] = mean_score(S, ["HALLMARK_HYPOXIA", "Hypoxia_Buffa"], every, groups)
    tab["glycolysis"] = mean_score(S, ["HALLMARK_GLYCOLYSIS", "Glycolysis_core"], malignant, groups, k)
    # a label that annotate could not assess, or has no rule for (MDSC-like states on a protein panel), would read as
    # a fraction of 0: report the component as missing instead
    rules = cells.rules
    if isinstance(rules, pd.DataFrame):
        ok = rules["assessable"].astype(bool)
        assessable = dict(zip(rules["label"], ok, strict=True))
        # RNA: Tregs are a state within CD4 T ("CD4 T" / "Treg"), conventional CD4 T cells the rest of the lineage
        assessable |= {f"{lv}|{lab}": a for lv, lab, a in zip(rules["level"], rules["label"], ok, strict=True)
                       if lv != "lineage"}
        if "CD4 T" in assessable and "CD4 T|conventional" not in assessable:
            assessable["CD4 T|conventional"] = assessable["CD4 T"]
        for col, labels in COMPONENT_LABELS.items():
            if not all(assessable.get(label, False) for label in labels):
                tab[col] = np.nan
    return tab


def _mdsc_told(cells: Cells, groups: pd.Series) -> pd.Series:
    """Per group, whether its MDSC-like share is known: some of its monocytes or neutrophils (the cells MDSC-like
    states are told apart from) were enough to tell in their sample, or it holds none (no cell could be MDSC-like).
    Where all were too few, a share of 0 would only say that no split was tried."""
    candidates = (cells.lineage == "Neutrophil") | cells.state.isin(["Monocyte", "M-MDSC-like"])
    untold = cells.untold if cells.untold is not None else pd.Series(False, index=cells.lineage.index)
    told = (candidates & ~untold.astype(bool)).groupby(groups, observed=True).any()
    return told | ~candidates.groupby(groups, observed=True).any()


def _receptors_measured(detection: pd.DataFrame | None) -> int:
    """How many co-inhibitory receptors the checkpoint ``detection`` table measured (0 without one)."""
    if not isinstance(detection, pd.DataFrame):
        return 0
    cols = [c for c in RECEPTORS.values() if c in detection.columns]
    return int(detection[cols].notna().any(axis=0).sum())


def bulk_components(scores: pd.DataFrame) -> pd.DataFrame:
    """Per observation (a sample), each component of ``BULK_COMPONENTS`` from the ``scores`` of ``BULK_NEEDED``."""
    S = scores
    tab = pd.DataFrame(index=pd.Index(S.index.astype(str)))
    for col, (_, plus, minus) in BULK_COMPONENTS.items():
        up = [s for s in plus if s in S.columns]
        down = [s for s in minus if s in S.columns]
        value = np.nan
        if up and len(down) == len(minus):
            value = S[up].mean(axis=1).to_numpy() - (S[down].mean(axis=1).to_numpy() if down else 0.0)
        tab[col] = value
    return tab


def component_z(tab: pd.DataFrame, components: list[str]) -> pd.DataFrame:
    """Each component as robust z-scores across the rows (samples or regions), its spread at least ``MIN_SPREAD``:
    what the composite averages and :func:`tmetoolkit.pl.immunosuppression` draws."""
    return tab[components].astype(float).apply(robust_z, min_spread=MIN_SPREAD)


def summarise(tab: pd.DataFrame, components: list[str]) -> pd.DataFrame:
    """Add the composite (mean robust z-score across rows), the number of measured components and the missing ones."""
    comp = tab[components].astype(float)
    z = component_z(tab, components)
    tab["composite"] = z.mean(axis=1, skipna=True) if len(tab) > 1 else np.nan
    tab["n_components"] = comp.notna().sum(axis=1)
    tab["missing_components"] = comp.isna().apply(lambda r: ", ".join(r.index[r]), axis=1)
    return tab


def _finish(tab: pd.DataFrame, components: dict[str, str], *, cell_score: pd.Series | None = None,
            regions: pd.DataFrame | None = None) -> Suppression:
    """Composite, counts of measured components and warnings."""
    tab = summarise(tab, list(components))
    if len(tab) < 2:
        logger.info("one sample: components reported, composite needs at least two samples")
    never = [c for c in components if tab[c].isna().all()]
    if never:
        warn("immunosuppression components not measurable in any sample (reported as missing): " + ", ".join(never))
    if regions is not None:
        logger.info("immunosuppression of %d regions in %d samples", len(regions), regions["sample"].nunique())
    return Suppression(tab, pd.DataFrame({"component": list(components), "measures": list(components.values())}),
                       cell_score, regions)

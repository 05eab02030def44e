"""``tmt.tl.immunosuppression``: a per-sample composite whose components stay visible, and per-cell scores."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.sample.cohort import robust_z
from .._utils import TmtInputError, TmtWarning, check_tmt_key, logger, warn
from ._checkpoints import RECEPTORS, is_protein
from ._sample_features import MIN_SPREAD, bulk_samples, fraction, mean_score, regions_of, samples_of
from ._score import score_once

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


def immunosuppression(
    adata: AnnData, *, sample_key: str | None = None, region_key: str | None = None, min_cells: int = 50,
    layer: str | None = None, bulk: bool = False, copy: bool = False
) -> AnnData | None:
    """Measure immunosuppression per cell and per sample, keeping every component visible.

    Per cell, a suppressive programme score where it means something: monocytes/macrophages (M2-like and
    MDSC mediators), neutrophils (PMN-MDSC-like), fibroblasts (myCAF and TGF-beta) and Tregs (activated Treg).
    Per sample, the components in ``COMPONENTS`` (Treg fraction and activation, MDSC-like fraction, M2/M1
    balance, myCAF fraction and TGF-beta, checkpoint receptor co-expression and ligands, IDO1/adenosine,
    hypoxia, glycolysis) and a composite: the mean of the components' robust z-scores across samples, each
    component's spread taken as at least 0.1 so that one barely varying across the cohort adds no noise. A
    component that cannot be measured (genes missing, fewer than five cells of the type it is measured in) is
    NaN and listed, never zero. With ``region_key`` the same components and composite are computed for each
    region of tissue (pathologist annotations, niches), so that the suppressed regions of a sample stand out.

    On a protein panel called by :func:`tmetoolkit.tl.annotate` the components come from the cell calls and the
    marker gates (Treg fraction, M2/M1 balance, receptors on CD8 T cells and PD-L1/PD-L2 on tumour cells and
    macrophages after :func:`tmetoolkit.tl.checkpoints`); programme components are missing.

    Bulk or pseudobulk data (``bulk=True``, observations are samples) have no cells to count: each component is
    then a programme of the whole sample (``BULK_COMPONENTS``: Treg, activated-Treg, MDSC, M2-minus-M1, myCAF,
    TGF-beta, co-inhibitory receptor and ligand, IDO/adenosine, hypoxia and glycolysis programmes), compared
    across the cohort in the same way.

    Parameters
    ----------
    adata
        Annotated with :func:`tmetoolkit.tl.annotate` (``obs["tmt_lineage"]``, ``obs["tmt_state"]``), or bulk
        samples with ``bulk=True``.
    sample_key
        ``obs`` column of samples (default ``"sample"`` if present, else one sample).
    region_key
        Optional ``obs`` column of tissue regions within samples (e.g. ``"region"`` with "Invasive Tumor",
        "Stroma", ...). Regions are named ``"<sample>:<region>"``, as in :func:`tmetoolkit.tl.immune_phenotype`
        with the same ``region_key``, so the two ``regions`` tables join on their index. Cells without a region
        (NaN) count for their sample only.
    min_cells
        With ``region_key``: regions with fewer cells get no components (their fractions would rest on a handful
        of cells).
    layer
        Layer for scoring the programmes.
    bulk
        Observations are samples (bulk RNA-seq or pseudobulk): whole-sample programmes, no annotation needed.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets:

    ``obs["tmt_suppression_score"]``
        Per-cell suppressive programme score (NaN for cells of other lineages); not for bulk data.
    ``uns["tmt_immunosuppression"]``
        ``params``; ``table`` (samples x components, ``composite``, ``n_components``, ``missing_components``);
        ``components`` (what each component measures); with ``region_key``, ``regions`` (one row per region:
        ``sample``, ``region``, ``n_cells``, the components, a ``composite`` of robust z-scores across all
        regions, ``n_components``, ``missing_components`` and ``reason``).
    """
    adata = adata.copy() if copy else adata
    if bulk:
        if sample_key is not None or region_key is not None:
            msg = ("bulk=True: every observation is a sample, so sample_key= and region_key= do not apply; leave "
                   "them out.")
            raise TmtInputError(msg)
        bulk_samples(adata)
        measures = {name: v[0] for name, v in BULK_COMPONENTS.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TmtWarning)
            score_once(adata, BULK_NEEDED, layer=layer)
        _finish(adata, _bulk_components(adata), measures, sample_key=None, layer=layer, bulk=True)
        return adata if copy else None
    if _keys.LINEAGE not in adata.obs or _keys.STATE not in adata.obs:
        msg = ("obs['tmt_lineage'] and obs['tmt_state'] are missing: run tmt.tl.annotate(adata) first; for bulk or "
               "pseudobulk data (observations are samples) pass bulk=True.")
        raise KeyError(msg)
    check_tmt_key(adata.obs, _keys.SUPPRESSION_SCORE, "adata.obs")
    if int(min_cells) != min_cells or min_cells < 1:
        msg = f"min_cells must be a positive integer, got {min_cells!r}."
        raise TmtInputError(msg)
    samples = samples_of(adata, sample_key)
    if region_key is not None:
        region_of, regions = regions_of(adata, samples, region_key)
    protein = is_protein(adata)
    if not protein:  # a protein panel has no programmes to score: its components come from cell calls and gates
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TmtWarning)
            score_once(adata, NEEDED, layer=layer)
    S = adata.obsm.get(_keys.SCORES, pd.DataFrame(index=adata.obs_names))
    lin = adata.obs[_keys.LINEAGE].astype(str)
    st = adata.obs[_keys.STATE].astype(str)

    per_cell = pd.Series(np.nan, index=adata.obs_names)
    for lineage, sigs in CELL_PROGRAMMES.items():
        have = [s for s in sigs if s in S.columns]
        mask = (lin == lineage) & ((st == "Treg") if lineage == "CD4 T" else True)
        if have and mask.any():
            per_cell[mask] = S.loc[mask, have].mean(axis=1)
    adata.obs[_keys.SUPPRESSION_SCORE] = per_cell.astype(float)

    tab = _cell_components(adata, lin, st, samples)
    if region_key is None:
        regions = None
    else:
        regions = regions.join(_cell_components(adata, lin, st, region_of))
        regions.loc[regions["n_cells"] < min_cells, list(COMPONENTS)] = np.nan
        regions = _summarise(regions, list(COMPONENTS))
        regions["reason"] = np.where(regions["n_cells"] < min_cells, f"fewer than {min_cells} cells", "")
    _finish(adata, tab, {**COMPONENTS, **PROTEIN_COMPONENTS} if protein else COMPONENTS, sample_key=sample_key,
            layer=layer, bulk=False, regions=regions, region_key=region_key, min_cells=min_cells)
    return adata if copy else None


def _cell_components(adata: AnnData, lin: pd.Series, st: pd.Series, groups: pd.Series) -> pd.DataFrame:
    """The components of ``COMPONENTS`` per group of cells (samples or regions), NaN where not measurable.

    A fraction, balance or mean over a cell type needs ``MIN_DENOMINATOR`` such cells: one Treg among one CD4 T
    cell is no Treg fraction of 100%.
    """
    k = MIN_DENOMINATOR
    myeloid = lin.isin(["Monocyte/Macrophage", "Neutrophil"])
    tam = st.isin(["TAM M1-like", "TAM M2-like"])
    n_m2 = (st == "TAM M2-like").groupby(groups, observed=True).sum()
    n_m1 = (st == "TAM M1-like").groupby(groups, observed=True).sum()
    malignant = lin == "Malignant/Epithelial"
    every = pd.Series(True, index=adata.obs_names)
    tab = pd.DataFrame(index=pd.Index(sorted(groups.dropna().unique()), name=None))
    tab["treg_fraction_cd4"] = fraction(st == "Treg", lin == "CD4 T", groups, k)
    tab["treg_activation"] = mean_score(adata, ["Treg_activated"], st == "Treg", groups, k)
    tab["mdsc_fraction_myeloid"] = fraction(st.isin(["M-MDSC-like", "PMN-MDSC-like"]), myeloid, groups, k)
    tab["m2_m1_balance"] = ((n_m2 - n_m1) / (n_m2 + n_m1).replace(0, np.nan)).where(
        tam.groupby(groups, observed=True).sum() >= k)
    tab["mycaf_fraction_caf"] = fraction(st == "myCAF", lin == "Fibroblast", groups, k)
    tab["tgfb_caf"] = mean_score(adata, ["Pan_F_TBRS"], lin == "Fibroblast", groups, k)
    # CD8 T cells with a receptor count (tmt.tl.checkpoints; NaN where no receptor gene is measured)
    n_receptors = adata.obs.get(_keys.CHECKPOINT_N, pd.Series(np.nan, index=adata.obs_names)).astype(float)
    tab["checkpoint_coexpression"] = fraction(n_receptors >= 2, (lin == "CD8 T") & n_receptors.notna(), groups, k)
    if _receptors_measured(adata) < 2:  # "two or more" cannot be seen on a panel with one receptor
        tab["checkpoint_coexpression"] = np.nan
    ligand_cells = malignant | (lin == "Monocyte/Macrophage")
    if is_protein(adata):
        ligands = adata.obsm.get(_keys.CHECKPOINT_DETECTION, pd.DataFrame(index=adata.obs_names)).reindex(
            columns=["PD-L1", "PD-L2"])
        measured = ligands.notna().any(axis=1)
        tab["checkpoint_ligands"] = fraction(ligands.fillna(0).sum(axis=1) > 0, ligand_cells & measured, groups, k)
    else:
        tab["checkpoint_ligands"] = mean_score(adata, ["Checkpoint_ligands"], ligand_cells, groups, k)
    tab["ido_adenosine"] = mean_score(adata, ["IDO_adenosine_axis"], every, groups)
    tab["hypoxia"] = mean_score(adata, ["HALLMARK_HYPOXIA", "Hypoxia_Buffa"], every, groups)
    tab["glycolysis"] = mean_score(adata, ["HALLMARK_GLYCOLYSIS", "Glycolysis_core"], malignant, groups, k)
    # a label that annotate could not assess, or has no rule for (MDSC-like states on a protein panel), would read as
    # a fraction of 0: report the component as missing instead
    rules = adata.uns.get(_keys.ANNOTATE, {}).get("rules")
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


def _receptors_measured(adata: AnnData) -> int:
    """How many co-inhibitory receptors :func:`tmetoolkit.tl.checkpoints` could measure (0 if it did not run)."""
    det = adata.obsm.get(_keys.CHECKPOINT_DETECTION)
    if not isinstance(det, pd.DataFrame):
        return 0
    cols = [c for c in RECEPTORS.values() if c in det.columns]
    return int(det[cols].notna().any(axis=0).sum())


def _bulk_components(adata: AnnData) -> pd.DataFrame:
    """Per observation (a sample), each component of ``BULK_COMPONENTS`` from the scores of ``BULK_NEEDED``."""
    S = adata.obsm[_keys.SCORES]
    tab = pd.DataFrame(index=pd.Index(adata.obs_names.astype(str)))
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


def _summarise(tab: pd.DataFrame, components: list[str]) -> pd.DataFrame:
    """Add the composite (mean robust z-score across rows), the number of measured components and the missing ones."""
    comp = tab[components].astype(float)
    z = component_z(tab, components)
    tab["composite"] = z.mean(axis=1, skipna=True) if len(tab) > 1 else np.nan
    tab["n_components"] = comp.notna().sum(axis=1)
    tab["missing_components"] = comp.isna().apply(lambda r: ", ".join(r.index[r]), axis=1)
    return tab


def _finish(adata: AnnData, tab: pd.DataFrame, components: dict[str, str], *, sample_key, layer, bulk: bool,
            regions: pd.DataFrame | None = None, region_key: str | None = None, min_cells: int | None = None) -> None:
    """Composite, counts of measured components, warnings, and ``uns["tmt_immunosuppression"]``."""
    tab = _summarise(tab, list(components))
    if len(tab) < 2:
        logger.info("one sample: components reported, composite needs at least two samples")
    never = [c for c in components if tab[c].isna().all()]
    if never:
        warn("immunosuppression components not measurable in any sample (reported as missing): " + ", ".join(never))
    params = {"sample_key": "" if bulk else (sample_key or ("sample" if "sample" in adata.obs else "")),
              "layer": layer or "X", "bulk": bulk,
              "composite": ("mean of robust z-scores (median/MAD across samples, the spread at least "
                            f"{MIN_SPREAD}) of the measured components")}
    result = {"params": params, "table": tab,
              "components": pd.DataFrame({"component": list(components), "measures": list(components.values())})}
    if regions is not None:
        params.update(region_key=region_key, min_cells=min_cells)
        result["regions"] = regions
        logger.info("immunosuppression of %d regions in %d samples", len(regions), regions["sample"].nunique())
    adata.uns[_keys.IMMUNOSUPPRESSION] = result

"""Which signatures decide which state: the signature rule tables behind ``tmt.tl.annotate``.

Lineages (RNA) are decided by the marker table ``signatures/lineage_markers.yaml``; the lineage signature tables
below are the published identity programmes each lineage is scored on (kept in ``obsm["tmt_scores"]``) and whose
genes a state's own set leaves out (:func:`specific_state_rules`). A state's evidence is the mean of its
signatures' scores; states (``_keys.LABELS``) are decided only among cells of their lineage. A state told from its
sibling by a programme it lacks is split off where that programme separates two populations (:func:`lacking_splits`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ... import _keys

if TYPE_CHECKING:
    from ...sig import Signature

LINEAGE_RULES: dict[str, tuple[str, ...]] = {
    "T/NK|T": ("T_cell",),
    "T/NK|NK": ("NK",),
    "T/NK|Treg": ("Treg_core",),
    "B": ("B_cell",),
    "Plasma": ("Plasma_cell",),
    "Monocyte/Macrophage|Macrophage": ("Macrophage", "MoMacDC"),
    "Monocyte/Macrophage|Monocyte": ("Monocyte", "MoMacDC"),
    "Neutrophil": ("Neutrophil",),
    "DC|cDC1": ("cDC1", "cDC1_Xue"),
    "DC|cDC2": ("cDC2", "cDC2_Xue"),
    "DC|mregDC": ("mregDC_Xue",),
    "Mast": ("Mast", "Mast_Danaher"),
    "Fibroblast": ("Fibroblast", "Fibroblast_MCPcounter"),
    "Pericyte|pericyte": ("Pericyte",),
    "Pericyte|smooth muscle": ("Smooth_muscle",),
    "Endothelial": ("Endothelial", "Endothelial_MFP"),
    "Malignant/Epithelial|epithelial": ("Epithelial",),
    "Malignant/Epithelial|squamous": ("Epithelial_squamous",),
}

# Tregs count as T cells by their own programme as well: on small spatial panels FOXP3 and CTLA4 are often
# detected where CD3 is not. Only robust programmes decide lineages: pDC is left out (its GZMB also marks cytotoxic
# T cells, and pDCs are rare in tumours); the 2-gene scGate neutrophil gate and the 7-gene mregDC gate (CCR7, BIRC3
# also mark T cells) are replaced by longer published sets; panCAF is left out because VIM marks immune cells too.

# T/NK cells are split by co-receptor and NK identity; Tregs count as CD4 T cells by their own programme, because
# CD40LG (half of the two-gene CD4 set) marks conventional CD4 T cells and is low in Tregs
TNK_RULES: dict[str, tuple[str, ...]] = {
    "CD8 T": ("CD8_T",),
    "CD4 T|conventional": ("CD4_T",),
    "CD4 T|Treg": ("Treg_core",),
    "NK": ("NK",),
}

def state_rules() -> dict[str, dict[str, tuple[str, ...]]]:
    """Lineage -> {state: deciding signatures}, from the label table in ``_keys.LABELS``."""
    return _keys.state_signatures()


# finer, optional columns: column -> lineage -> {label: signatures}
SUBSET_RULES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    _keys.TAM_SUBSET: ("Monocyte/Macrophage", {
        "IFN-TAM": ("TAM_IFN",),
        "Inflam-TAM": ("TAM_Inflam",),
        "LA-TAM": ("TAM_LA",),
        "Angio-TAM": ("TAM_Angio",),
        "Reg-TAM": ("TAM_Reg",),
        "RTM-TAM": ("TAM_RTM",),
        "Prolif-TAM": ("TAM_Prolif",),
    }),
    _keys.CAF_SUBSET: ("Fibroblast", {
        "ecm-myCAF": ("CAF_ecm_myCAF",),
        "TGFb-myCAF": ("CAF_TGFb_myCAF",),
        "wound-myCAF": ("CAF_wound_myCAF",),
        "detox-iCAF": ("CAF_detox_iCAF",),
        "IL-iCAF": ("CAF_IL_iCAF",),
        "IFNg-iCAF": ("CAF_IFNg_iCAF",),
    }),
}


# where a panel cannot score a rule's signature, a longer published set for the same population decides instead,
# provided the panel measures the population's defining gene: signature -> ((fallbacks), (genes it must use)).
# Spatial panels often carry FOXP3 and CTLA4 but not the rest of Treg_core (Xenium's breast panel: 7 Treg genes).
# The CHETAH subset of Puram 2017 carries none of the tryptase/KIT/CPA3 mast genes; Bindea's longer set still scores.
FALLBACKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Treg_core": (("Treg",), ("FOXP3",)),
    "Mast": (("Mast_Bindea",), ()),
}

SPECIFIC_SUFFIX = "_specific"
MIN_SPECIFIC_GENES = 2

# A state told from its sibling by a programme the sibling holds and it lacks: lineage -> (state, sibling, signature
# whose down genes are that programme). M-MDSC are CD14+ monocytes with HLA-DR low or negative (Bronte V et al. Nat
# Commun 7:12150 (2016), the minimal phenotype; Veglia, Sanseviero & Gabrilovich, Nat Rev Immunol 21:485 (2021)):
# their classical-monocyte genes are the monocytes' own, so no gene they hold tells them apart, but MHC class II,
# the down genes of M_MDSC_like, does (:func:`split_on_lacking_programme`).
LACKING_SPLITS: dict[str, tuple[str, str, str]] = {
    "Monocyte/Macrophage": ("M-MDSC-like", "Monocyte", "M_MDSC_like"),
}
LACKING_SUFFIX = "_lacks"


def lineage_identity_signatures(lineage: str) -> set[str]:
    """Signatures that every label of ``lineage`` in ``LINEAGE_RULES`` and ``TNK_RULES`` is decided by.

    ``MoMacDC`` decides both macrophages and monocytes; ``CD4_T`` decides conventional CD4 T cells but not Tregs,
    so it is not an identity of all CD4 T cells.
    """
    per_label = [set(sigs) for table in (LINEAGE_RULES, TNK_RULES) for label, sigs in table.items()
                 if label.split("|")[0] == lineage]
    return set.intersection(*per_label) if per_label else set()


def specific_state_rules() -> tuple[dict[str, dict[str, tuple[str, ...]]], list[Signature]]:
    """State tables decided on each state's own genes, and the derived signatures they need.

    Genes that several states of a lineage share cannot tell those states apart: S100A8 and S100A9 are in both the
    monocyte and the M-MDSC-like set, and CSF1R and MSR1, in the TAM M2-like set, are in the MoMacDC set that makes a
    cell a monocyte or macrophage in the first place. Within a lineage each state is therefore decided on the up
    genes that neither a sibling state's signature nor the lineage's identity (:func:`lineage_identity_signatures`)
    has (down genes kept), where at least ``MIN_SPECIFIC_GENES`` remain; otherwise on the published set. Where a
    lineage has several identity signatures, its identity genes are those they all list: ACTA2, in scGate's
    fibroblast set but not MCP-counter's, and TAGLN, in MCP-counter's but not scGate's, set myofibroblastic CAFs
    apart from the other fibroblasts (Öhlund 2017, doi:10.1084/jem.20162024); not every fibroblast holds them. The
    derived signatures are named ``<signature>_specific``.
    """
    from dataclasses import replace

    from ...sig import get

    tables: dict[str, dict[str, tuple[str, ...]]] = {}
    derived = {}
    for lineage, table in state_rules().items():
        tables[lineage] = {}
        identity = lineage_identity_signatures(lineage)
        for label, sigs in table.items():
            shared = {g for other, s2 in table.items() if other != label for n in s2 for g in get(n).genes_up}
            agreed = [set(get(n).genes_up) for n in identity - set(sigs)]
            shared |= set.intersection(*agreed) if agreed else set()
            names = []
            for name in sigs:
                sig = get(name)
                own = tuple(g for g in sig.genes_up if g not in shared)
                if MIN_SPECIFIC_GENES <= len(own) < len(sig.genes_up):
                    about = (f"{name} without the genes it shares with the other {lineage} states or with the "
                             f"signatures that identify {lineage} cells")
                    spec = replace(sig, name=name + SPECIFIC_SUFFIX, genes_up=own,
                                   weights={g: w for g, w in sig.weights.items() if g in own or g in sig.genes_down},
                                   min_genes=min(sig.min_genes, len(own)),
                                   metadata={**sig.metadata, "description": about})
                    derived[spec.name] = spec
                    name = spec.name
                names.append(name)
            tables[lineage][label] = tuple(names)
    return tables, list(derived.values())


def resolve(table: dict[str, tuple[str, ...]], used: dict[str, set[str]]) -> dict[str, tuple[str, ...]]:
    """The rule table with each signature that could not be scored replaced by what can decide in its place:
    a ``<name>_specific`` set by its published set, a set listed in ``FALLBACKS`` by its first fallback that was
    scored with the required genes. ``used`` maps each scored signature to the genes it used."""

    def one(name: str) -> str:
        if name in used:
            return name
        base = name.removesuffix(SPECIFIC_SUFFIX)
        if base in used:
            return base
        fallbacks, required = FALLBACKS.get(base, ((), ()))
        return next((f for f in fallbacks if f in used and set(required) <= used[f]), name)

    return {label: tuple(one(n) for n in sigs) for label, sigs in table.items()}


def needed_signatures() -> list[str]:
    names: list[str] = []
    for rules in (LINEAGE_RULES, TNK_RULES, *state_rules().values(), *(r for _, r in SUBSET_RULES.values())):
        for sigs in rules.values():
            names += sigs
    names += ["TAM_M1_like", "TAM_M2_like"]
    names += [f for n in list(names) for f in FALLBACKS.get(n, ((), ()))[0]]
    return list(dict.fromkeys(names))


def derived_signatures() -> list[Signature]:
    """Every signature annotate derives from the registry's (state-specific sets and the programmes a state lacks),
    scored with the registry's in one pass by annotate and by the pipeline alike."""
    return [*specific_state_rules()[1], *lacking_signatures()]


def lacking_signatures() -> list[Signature]:
    """The programme each state of ``LACKING_SPLITS`` lacks (its signature's down genes) as a signature of its own,
    named ``<signature>_lacks``."""
    from dataclasses import replace

    from ...sig import get

    out = []
    for state, sibling, name in LACKING_SPLITS.values():
        sig = get(name)
        about = f"the genes {state} cells hold low and {sibling} cells hold ({name}'s down genes)"
        out.append(replace(sig, name=name + LACKING_SUFFIX, genes_up=tuple(sig.genes_down), genes_down=(),
                           weights={}, min_genes=min(sig.min_genes, len(sig.genes_down)),
                           metadata={**sig.metadata, "description": about}))
    return out


def split_on_lacking_programme(values: np.ndarray, *, min_cells: int, seed: int = 0) -> tuple[np.ndarray | None, dict]:
    """Which of a state's and its sibling's cells lack the programme the sibling holds (``True`` = lacks it).

    Flow cytometry gates HLA-DR-low monocytes as the population below the HLA-DR+ monocytes; here the same cells'
    programme scores are fitted with two Gaussians, and cells below the crossing lack it. The split is made only
    when there are two populations: two Gaussians fit better than one by the Bayesian information criterion
    (Schwarz, Ann Stat 6:461 (1978)), they are separated (Ashman's D of at least 2, as for spots and protein
    gates), and each holds at least ``min_cells`` cells (as many as the lineage classifier needs to learn a label);
    otherwise ``None`` (the signature competition stands) and the reason. (Without the BIC condition, monocytes of
    a simulated sample without M-MDSC-like cells were split in 3 of 8 samples at D 2.3-2.9.)
    """
    from ..scoring.mixture import fit_two_components

    v = np.asarray(values, dtype=np.float64)
    info = {"n_cells": int(np.isfinite(v).sum()), "separation": np.nan, "threshold": np.nan, "n_low": 0,
            "applied": False, "reason": ""}
    if info["n_cells"] < 2 * min_cells:
        info["reason"] = f"too few cells to fit two populations ({info['n_cells']} < {2 * min_cells})"
        return None, info
    fit = fit_two_components(v, seed=seed)
    low = np.nan_to_num(v, nan=np.inf) < fit.crossing
    info.update(separation=fit.separation, threshold=fit.crossing, n_low=int(low.sum()))
    if not fit.bic_gain > 0:
        info["reason"] = "one population (one Gaussian fits as well as two by BIC)"
        return None, info
    if fit.separation < 2:
        info["reason"] = f"one population (Ashman's D {fit.separation:.2f} < 2)"
        return None, info
    if min(low.sum(), (~low).sum()) < min_cells:
        info["reason"] = f"a population of fewer than {min_cells} cells"
        return None, info
    info["applied"] = True
    return low, info


def lacking_splits(S: pd.DataFrame, lineage: np.ndarray, state: np.ndarray, samples: np.ndarray, *,
                   min_cells: int) -> pd.DataFrame:
    """Split each state of ``LACKING_SPLITS`` from its sibling (in place on ``state``), sample by sample,
    where the programme it lacks (column ``<signature>_lacks`` of the scores ``S``) separates two populations of at
    least ``min_cells`` cells among the cells called either (:func:`split_on_lacking_programme`); one row per split and
    sample, applied or not, and why. Where no such population stands apart (or the programme cannot be scored),
    the cells called either are the sibling. Within a sample, because patients differ in their HLA class II transcripts
    (alleles map unequally to the reference) and a batch shifts every gene of a sample."""
    rows = []
    for lin, (low_state, sibling, name) in LACKING_SPLITS.items():
        col = name + LACKING_SUFFIX
        for smp in pd.unique(samples):
            cells = (lineage == lin) & np.isin(state, [low_state, sibling]) & (samples == smp)
            if not cells.any():
                continue
            row = {"lineage": lin, "state": low_state, "sibling": sibling, "sample": smp, "signature": col}
            # a cell is said to lack the programme only where a population lacking it stands apart from the rest;
            # otherwise the signature competition alone would call classical blood monocytes, which hold less
            # HLA class II than intermediate monocytes but plenty, M-MDSC-like
            if col not in S.columns:
                state[cells] = sibling
                rows.append({**row, "n_cells": int(cells.sum()), "applied": False, "reason": "signature genes missing"})
                continue
            low, info = split_on_lacking_programme(S[col].to_numpy(dtype=float)[cells], min_cells=min_cells)
            state[np.flatnonzero(cells)] = sibling if low is None else np.where(low, low_state, sibling)
            rows.append({**row, **info})
    return pd.DataFrame(rows, columns=["lineage", "state", "sibling", "sample", "signature", "n_cells", "separation",
                                       "threshold", "n_low", "applied", "reason"])

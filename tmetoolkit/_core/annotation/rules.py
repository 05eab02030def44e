"""Which signatures decide which state: the signature rule tables behind ``tmt.tl.annotate``.

Lineages (RNA) are decided by the marker table ``signatures/lineage_markers.yaml``; the lineage signature tables
below are the published identity programmes each lineage is scored on (kept in ``obsm["tmt_scores"]``) and whose
genes a state's own set leaves out (:func:`specific_state_rules`). A state's evidence is the mean of its
signatures' scores; states (``_keys.LABELS``) are decided only among cells of their lineage. A state told from its
sibling by a programme it lacks or holds on top of the sibling's is split off where that programme separates two
populations within a sample (:func:`population_splits`).
"""

from __future__ import annotations

import re
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

# Genes of the translation machinery that every cell makes (ribosomal proteins, elongation factors, TPT1, PABPC1):
# their level follows a cell's size, growth and library quality, not its state, so no state is decided on them.
# Zheng 2021's naive CD8 set lists EEF1A1, TPT1, EEF1B2 and PABPC1, detected in 98%, 95%, 85% and 65% of all
# Zilionis 2019 human cells whatever their lineage; they decided CD8 naive/memory: 25 of Zilionis' 26 CD8 T cells
# were called naive/memory although the naive genes (CCR7, SELL, LEF1, TCF7, IL7R) were detected at 8% per gene
# in them, less than the effector and Tex genes (17%, 16%; validate_annotation.py's CANONICAL), and cells with
# CXCL13, TIGIT, CTLA4 and TNFRSF9 were among them. Now 10 Tex, 8 effector and 4 naive/memory.
TRANSLATION_GENES = frozenset({"EEF1A1", "EEF1B2", "EEF1D", "EEF1G", "EEF2", "TPT1", "PABPC1"})
_RIBOSOMAL = re.compile(r"^RP[LS](P?\d+[A-Z]?\d*|A)$")  # RPL13A, RPS4X, RPLP0, RPSA; not RPS6KA1 (a kinase)


def is_translation_gene(gene: str) -> bool:
    """A ribosomal protein gene or one of ``TRANSLATION_GENES``."""
    g = gene.upper()
    return g in TRANSLATION_GENES or _RIBOSOMAL.match(g) is not None


# MDSC-like states (and progenitor-exhausted CD8 T cells, below) are populations apart from the conventional cells
# of their lineage in the same sample (Veglia, Sanseviero & Gabrilovich, Nat Rev Immunol 21:485 (2021)):
# lineage -> (state, sibling, signature, side), the state being the cells on ``side`` of the signature's two
# populations (:func:`population_splits`).
# M-MDSC are CD14+ monocytes with HLA-DR low or negative (Bronte V et al. Nat Commun 7:12150 (2016), the minimal
# phenotype): their classical-monocyte genes are the monocytes' own, so no gene they hold tells them apart, but MHC
# class II, the down genes of M_MDSC_like, does: the split reads those genes (``<signature>_lacks``), low side.
# PMN-MDSC share the neutrophils' identity and their activation genes (IL1B, PTGS2, CYBB); the split reads the
# PMN-MDSC-like programme's own genes (``<signature>_specific`` where derived), high side. Without it, the signature
# competition against immature neutrophils called 104 of the 105 neutrophils of healthy mouse lungs PMN-MDSC-like
# (Zilionis 2019), which no split there finds.
# Progenitor-exhausted CD8 T cells keep the naive cells' TCF7, CCR7, SELL and IL7R (the Tpex set's own genes are
# PD-1, CXCR5, SLAMF6, XCL1, GNG4, CD200 and BTLA) but are antigen-experienced cells of the TOX-programmed exhausted
# lineage (Khan O et al. Nature 571:211 (2019), doi:10.1038/s41586-019-1325-x): a population apart from the naive
# cells of the same sample, split off on the Tpex set's own genes, high side. Without it, 33 of the 190 CD8 T cells
# of Zilionis' mouse lungs were called Tpex on SLAMF6 and BTLA, which naive T cells make too (PDCD1 in none of
# them); now none. simulate()'s planted Tpex still split off where a sample holds enough of them (67 of 73 in two
# samples of 3,000 cells, seed 0); bench_annotate's CD8 states 0.983 -> 0.981. Naive/memory cells, the sibling,
# are decided on the genes they share with Tpex as well (specific_state_rules).
# Antigen-presenting CAFs are a population apart among a tumour's fibroblasts, found as their own cluster by their
# MHC class II (Elyada E et al. Cancer Discov 9:1102 (2019), doi:10.1158/2159-8290.CD-19-0094; Kerdidani D et al.
# J Exp Med 219:e20210815 (2022), doi:10.1084/jem.20210815), and CD74 and HLA-DRA, all the apCAF set has on many
# panels, are among the most abundant transcripts of every antigen-presenting cell: on Chen's MERFISH panel CD74 is
# 5% of the fibroblasts' transcripts and detected in 71% of them (79% of epithelial cells). The competition called
# 479 of that sample's 662 fibroblasts apCAF; they form one population (Ashman's D 1.36), and now none is. Their
# sibling is the lineage itself: apCAF do not compete with myCAF and iCAF (apart_from_lineage), and outside such a
# population fibroblasts keep their CAF states. (While apCAF competed, the cells it won outside a population were
# left without a state: simulate()'s fibroblasts given the antigen-presenting cells' MHC class II, 0.46 called right,
# now 1.00.)
POPULATION_SPLITS: dict[str, tuple[str, str, str, str]] = {
    "Monocyte/Macrophage": ("M-MDSC-like", "Monocyte", "M_MDSC_like", "low"),
    "Neutrophil": ("PMN-MDSC-like", "Neutrophil", "PMN_MDSC_like", "high"),
    "CD8 T": ("CD8 Tpex", "CD8 naive/memory", "CD8_Tpex_core", "high"),
    "Fibroblast": ("apCAF", "Fibroblast", "apCAF", "high"),
}
LACKING_SUFFIX = "_lacks"
# Lineages whose competing states are scored among the lineage's own cells (as ``sc.tl.score_genes`` run on them
# alone would), not against every cell. myCAF and iCAF are the two ends of one axis within CAFs (Ohlund et al. J Exp
# Med 214:579 (2017), doi:10.1084/jem.20162024), and Elyada 2019 drew both sets from differences between CAF
# clusters; every fibroblast makes the myCAF set's contractile genes (TPM1, TPM2, MYL9, TAGLN) far above the other
# cells of a tumour, so against all cells most fibroblasts led on myCAF: Kim 2020's matrix fibroblasts among them.
# Its myofibroblasts vs matrix fibroblasts, F1 myCAF 0.531 -> 0.701 (baseline 0.615; 0.727 -> 0.756 at 2,000
# variable genes, 0.569 -> 0.788 at 1,000 counts); the cells called myCAF read the myCAF genes in 0.78 of them
# there (0.66 before) and in 0.80 in Qian 2020 (0.77); simulate()'s fibroblasts given the contractile genes keep
# their planted states (0.84 -> 0.98), as drawn 0.985 -> 0.983. The share of Qian's state calls kept at 1,000
# counts a cell fell 0.658 -> 0.622 (0.865 -> 0.857 at 2,000 genes; Kim's 0.797 -> 0.814 and 0.866 -> 0.864).
# Every other figure of validate_annotation.py (with --external) is unchanged. The same for every lineage lowered
# Kim's Treg, Tex and myeloid tasks (session 35): those sets are not contrasts within a lineage. apCAF, split off
# as a population apart, keeps its scores against all cells.
SCORED_WITHIN = ("Fibroblast",)
# fewer cells than this: the lineage's own gene means, which choose the control genes, are too few to bin genes by
MIN_CELLS_WITHIN = 20
# two Gaussians must beat one by a BIC difference of 10, "very strong" evidence (Kass & Raftery, J Am Stat Assoc
# 90:773 (1995), doi:10.1080/01621459.1995.10476572). At 0, one random half of the PBMC sample's blood monocytes
# (75 cells, one population when pooled) was split at a BIC gain of 5 and 50 of its cells called M-MDSC-like; the
# planted splits of simulate() gain 13-170.
MIN_BIC_GAIN = 10.0
GENES_MISSING = "signature genes missing"  # the reason of a split the panel cannot make


# A state whose rivals within its lineage the panel cannot score is called only where its cells form a population
# apart in their sample (split_two_populations, high side). Called wherever its score led the lineage's background,
# it followed depth on a shallow panel: Chen's MERFISH panel holds 2 of the myCAF set's 8 genes (3 needed), and iCAF
# alone was called in 458 of the 662 fibroblasts, with a median of 51 transcripts a cell against 28.5 in the rest,
# and with more of the myCAF genes ACTA2 and TAGLN than the rest; now none (one population). simulate()'s fibroblasts
# without the myCAF genes but ACTA2 and TAGLN: 873 of 878 planted iCAF still called, none of the 472 myCAF.
ALONE = "decided without {rivals}, which the panel cannot score: called only where its cells form a population apart"


def apart_from_lineage(lineage: str) -> tuple[str, ...]:
    """The state of ``POPULATION_SPLITS`` split off among all of ``lineage``'s cells (its sibling bears the
    lineage's name: apCAF among fibroblasts, PMN-MDSC-like among neutrophils), which the lineage's other states do
    not compete with: the split alone finds its cells."""
    state, sibling, _, _ = POPULATION_SPLITS.get(lineage, (None, None, None, None))
    return (state,) if sibling == lineage else ()


def split_column(signature: str, side: str, columns) -> str:
    """The score column a split reads: the signature's down genes for a state lacking a programme, else its own
    genes (``_specific``) where derived, else the published set."""
    if side == "low":
        return signature + LACKING_SUFFIX
    return next((c for c in (signature + SPECIFIC_SUFFIX, signature) if c in columns), signature)


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
    has, nor the translation machinery every cell makes (:func:`is_translation_gene`), down genes kept, where at
    least ``MIN_SPECIFIC_GENES`` remain; otherwise on the published set. Where a lineage has several identity
    signatures, its identity genes are those they all list: ACTA2, in scGate's fibroblast set but not
    MCP-counter's, and TAGLN, in MCP-counter's but not scGate's, set myofibroblastic CAFs apart from the other
    fibroblasts (Öhlund 2017, doi:10.1084/jem.20162024); not every fibroblast holds them. The sibling of a state
    split off on the high side (``POPULATION_SPLITS``) keeps the genes it shares with that state, since the split,
    not the competition, tells the two apart: naive/memory CD8 T cells are decided on CCR7, SELL, TCF7 and IL7R
    with the rest of their set (also Tpex genes). Without them a targeted panel, which holds those four and few
    other naive genes, showed no naive cells (Xenium breast: 3 of 397 CD8 T cells naive/memory, now 68, with the
    naive genes detected in 0.30 of them against 0.16 in the cells called effector; Chen's MERFISH 14 -> 35), and
    simulate()'s CD8 states were 0.953 -> 0.985 (seeds 0 and 1; 0.865 -> 0.983 once its naive programme also
    planted the Azimuth naive genes S100B, RGS10 and CRTAM). The derived signatures are named
    ``<signature>_specific``.
    """
    from dataclasses import replace

    from ...sig import get

    tables: dict[str, dict[str, tuple[str, ...]]] = {}
    derived = {}
    for lineage, table in state_rules().items():
        tables[lineage] = {}
        identity = lineage_identity_signatures(lineage)
        split_state, sibling, _, side = POPULATION_SPLITS.get(lineage, (None, None, None, None))
        for label, sigs in table.items():
            # a high-side split state is told from its sibling by the split, not by the competition
            apart = split_state if side == "high" and label == sibling else None
            shared = {g for other, s2 in table.items() if other not in (label, apart) for n in s2
                      for g in get(n).genes_up}
            agreed = [set(get(n).genes_up) for n in identity - set(sigs)]
            shared |= set.intersection(*agreed) if agreed else set()
            names = []
            for name in sigs:
                sig = get(name)
                own = tuple(g for g in sig.genes_up if g not in shared and not is_translation_gene(g))
                if MIN_SPECIFIC_GENES <= len(own) < len(sig.genes_up):
                    about = (f"{name} without the genes it shares with the other {lineage} states or with the "
                             f"signatures that identify {lineage} cells, and without translation genes")
                    spec = replace(sig, name=name + SPECIFIC_SUFFIX, genes_up=own,
                                   weights={g: w for g, w in sig.weights.items() if g in own or g in sig.genes_down},
                                   min_genes=min(sig.min_genes, len(own)),
                                   metadata={**sig.metadata, "description": about})
                    derived[spec.name] = spec
                    name = spec.name
                names.append(name)
            tables[lineage][label] = tuple(names)
    return tables, list(derived.values())


# Killers first, then which killers. CD8 T cells are called naive/memory, Tpex or a killer on the own-gene sets
# above, the killer states (effector, Tex) competing as one, so that a tie between them is no lead over the others;
# the cytotoxic genes tell killers from naive and Tpex cells there. Then, among the cells called a killer only,
# effector against Tex on sets without the programme both kill with (killer_rules); a cell with too small a lead
# there keeps the better killer state of the first step. Exhausted CD8 T cells of human tumours keep their
# granzymes and perforin (Li H et al. Cell 176:775 (2019), doi:10.1016/j.cell.2018.11.043; Sade-Feldman M et al.
# Cell 175:998 (2018), doi:10.1016/j.cell.2018.10.038): with one competition, the granule genes of the effector set
# (GZMH, GZMA, GNLY, NKG7, KLRD1) drew them to effector or left them unsure. Simulated tumours whose Tex carry the
# cytotoxic module (6 samples of 3,000 cells, 14 depth and panel variants): Tex F1 0.36-1.00 -> 0.91-1.00, effector
# F1 0.77-1.00 -> 0.88-1.00. Dropping the programme from every CD8 state's set in the one competition instead lost
# the 23 effector cells of blood (PBMC 68k) to naive/memory or Tex; here the blood effector cells stay effector
# (23 -> 29, Tex 2 -> 0), since the panel cannot score Tex without the genes below and no fallback is taken. Cost:
# simulate()'s Tex, which lack the granzymes (seeds 0 and 1, 8 variants each), Tex F1 0.950-0.998 -> 0.908-0.996,
# the largest loss at 1,000 counts a cell (seed 0: 0.960 -> 0.908, 20 of 300 effector cells called Tex).
# lineage -> (the killer states, the default first; the programme they share)
KILLERS: dict[str, tuple[tuple[str, ...], str]] = {
    "CD8 T": (("CD8 effector", "CD8 Tex"), "Cytotoxic_cells"),
}
KILLER_SUFFIX = "_among_killers"
# Genes of a killer state's set that other killers (and most blood lymphocytes) express as well, left out among
# killers. Detection in PBMC 68k (validate_annotation's pbmc68k; cells called CD8 effector / CD8 naive/memory / NK /
# B / monocyte): IL2RB, IL-2/IL-15 receptor beta (CD122), marks blood NK and effector-memory CD8 T cells (0.26 /
# 0.15 / 0.30 / 0.03 / 0.01); IL2RG, the common gamma chain of every lymphocyte (0.91 / 0.80 / 0.76 / 0.58 /
# 0.33); CD74, the MHC class II invariant chain of every antigen-presenting cell (0.91 / 0.81 / 0.83 / 1.00 / 1.00);
# NAMPT, nicotinamide phosphoribosyltransferase, an NAD salvage enzyme every cell makes (not on that panel).
NOT_OWN_AMONG_KILLERS: dict[str, frozenset[str]] = {
    "CD8_Tex": frozenset({"IL2RB", "IL2RG", "CD74", "NAMPT"}),
}


def killer_rules() -> tuple[dict[str, dict[str, tuple[str, ...]]], list[Signature]]:
    """Per lineage of ``KILLERS``, the rule table deciding among its killer states, and the derived signatures it
    needs: each state's own set (:func:`specific_state_rules`) without the shared killing programme and without the
    genes of ``NOT_OWN_AMONG_KILLERS``, named ``<signature>_among_killers`` where genes were left out (a set left
    with fewer than ``MIN_SPECIFIC_GENES`` genes is not used). These tables are not :func:`resolve`d: a set the
    panel cannot score has no fallback, since the published sets hold the genes of the sibling killer (GZMB in
    CD8_Tex and CD8_Tex_gate); a state left without a set is not assessable among killers, and the killers are
    the default state (:func:`.rna_calls.call_rna`)."""
    from dataclasses import replace

    from ...sig import get

    tables, derived_list = specific_state_rules()
    derived = {s.name: s for s in derived_list}
    out_tables: dict[str, dict[str, tuple[str, ...]]] = {}
    out = {}
    for lineage, (labels, programme) in KILLERS.items():
        table = tables.get(lineage, {})
        shared = set(get(programme).genes_up)
        out_tables[lineage] = {}
        for label in (lab for lab in labels if lab in table):
            names = []
            for name in table[label]:
                sig = derived.get(name) or get(name)
                base = name.removesuffix(SPECIFIC_SUFFIX)
                own = tuple(g for g in sig.genes_up
                            if g not in shared and g not in NOT_OWN_AMONG_KILLERS.get(base, ()))
                if len(own) == len(sig.genes_up):
                    names.append(name)
                elif len(own) >= MIN_SPECIFIC_GENES:
                    about = (f"{name} without the {programme} programme that {' and '.join(labels)} cells share"
                             + (" and without genes most lymphocytes express" if base in NOT_OWN_AMONG_KILLERS
                                else ""))
                    spec = replace(sig, name=base + KILLER_SUFFIX, genes_up=own,
                                   weights={g: w for g, w in sig.weights.items() if g in own or g in sig.genes_down},
                                   min_genes=min(sig.min_genes, len(own)),
                                   metadata={**sig.metadata, "description": about})
                    out[spec.name] = spec
                    names.append(spec.name)
            out_tables[lineage][label] = tuple(names)
    return out_tables, list(out.values())


# A state that a second programme shows as well, read in each cell itself. Conventional CD4 helper cells of tumours
# are Th1-like (Bagaev's CD4_helper: IFNG, TBX21, CD40LG) or follicular and peripheral helpers that make CXCL13 and
# IL-21 (Gu-Trantien C et al. JCI Insight 2:e91487 (2017), doi:10.1172/jci.insight.91487, in breast tumours; Rao DA
# et al. Nature 542:110 (2017), doi:10.1038/nature20810). Those make CTLA4, TNFRSF18 and TNFRSF4 as activated T cells
# do, Treg_core's genes, and without their own programme won the CD4 competition as Tregs: 47 of Spectra's 264
# conventional CD4 T cells called Treg, 55% of them reading CXCL13 against 2% of its Tregs. ProjecTILs' Tfh gate is
# that programme without TOX and TOX2, which Tregs read about as often as conventional CD4 T cells or more (share of
# Tregs / of conventional CD4 T cells reading TOX, TOX2: Puram 0.30 / 0.10, 0.30 / 0.05; Zilionis' mouse lungs
# 0.20 / 0.09, 0.07 / 0.01; Wu 2020 0.14 / 0.07, 0.21 / 0.01; Spectra 0.21 / 0.19 for TOX; Zilionis' human lungs the
# exception, TOX 0.00 / 0.12). A cell's evidence for the state is the better of the two programmes, the second taken
# only where the cell's own score is above zero: follicular helpers expand beside Tregs (Gu-Trantien 2017), and
# averaged over expression neighbours 4 of Wu's 14 Tregs, three of them without a read of the programme's genes,
# read as helpers.
# state -> (the second programme's signature, its genes left out)
SECOND_PROGRAMMES: dict[str, tuple[str, frozenset[str]]] = {
    "CD4 helper": ("CD4_Tfh", frozenset({"TOX", "TOX2"})),
}
SECOND_SUFFIX = "_second_programme"


def second_programmes() -> tuple[dict[str, str], list[Signature]]:
    """State -> the derived signature of its second programme (``SECOND_PROGRAMMES``), named
    ``<signature>_second_programme``, and those signatures."""
    from dataclasses import replace

    from ...sig import get

    names, out = {}, []
    for state, (name, left_out) in SECOND_PROGRAMMES.items():
        sig = get(name)
        genes = tuple(g for g in sig.genes_up if g not in left_out)
        without = f" without {' and '.join(sorted(left_out))}" if left_out else ""
        about = f"{name}{without}: the second programme of {state} cells"
        out.append(replace(sig, name=name + SECOND_SUFFIX, genes_up=genes,
                           weights={g: w for g, w in sig.weights.items() if g in genes or g in sig.genes_down},
                           min_genes=min(sig.min_genes, len(genes)), metadata={**sig.metadata, "description": about}))
        names[state] = out[-1].name
    return names, out


def published_name(name: str) -> str:
    """The registry signature a set annotate derives is made from (``CD8_Tex_specific``, ``CD8_Tex_among_killers``
    and ``M_MDSC_like_lacks`` -> ``CD8_Tex``, ``CD8_Tex``, ``M_MDSC_like``); a registry name is its own."""
    for suffix in (SPECIFIC_SUFFIX, KILLER_SUFFIX, LACKING_SUFFIX, SECOND_SUFFIX):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


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
    """Every signature annotate derives from the registry's (state-specific sets, the programmes a state lacks and
    second programmes), scored with the registry's in one pass by annotate and by the pipeline alike."""
    return [*specific_state_rules()[1], *killer_rules()[1], *lacking_signatures(), *second_programmes()[1]]


def lacking_signatures() -> list[Signature]:
    """The programme each low-side state of ``POPULATION_SPLITS`` lacks (its signature's down genes) as a signature
    of its own, named ``<signature>_lacks``."""
    from dataclasses import replace

    from ...sig import get

    out = []
    for state, sibling, name, side in POPULATION_SPLITS.values():
        if side != "low":
            continue
        sig = get(name)
        about = f"the genes {state} cells hold low and {sibling} cells hold ({name}'s down genes)"
        out.append(replace(sig, name=name + LACKING_SUFFIX, genes_up=tuple(sig.genes_down), genes_down=(),
                           weights={}, min_genes=min(sig.min_genes, len(sig.genes_down)),
                           metadata={**sig.metadata, "description": about}))
    return out


def split_two_populations(values: np.ndarray, *, min_cells: int, seed: int = 0) -> tuple[np.ndarray | None, dict]:
    """Which cells lie in the lower of two populations of a programme score (``True`` = lower), or ``None``.

    Flow cytometry gates HLA-DR-low monocytes as the population below the HLA-DR+ monocytes; here the same cells'
    programme scores are fitted with two Gaussians, and cells below the crossing are the lower population. The
    split is made only when there are two populations: two Gaussians fit better than one by at least
    ``MIN_BIC_GAIN`` of the Bayesian information criterion (Schwarz, Ann Stat 6:461 (1978)), they are separated
    (Ashman's D of at least 2, as for spots and protein gates), their mixture draws two peaks (D does not weigh
    the components: a narrow majority beside a wide minority passes it as one skewed population), each holds at
    least ``min_cells`` cells (as many as the lineage classifier needs to learn a label), and the higher one holds
    the programme (its mean above zero, the background of a control-subtracted score); otherwise ``None`` and the
    reason. (Without the BIC
    condition, monocytes of a simulated sample without M-MDSC-like cells were split in 3 of 8 samples at D 2.3-2.9.
    Without the last, the 180 naive-like CD8 T cells of Zilionis' mouse lungs at 1,000 counts a cell, nearly all
    without a Tpex gene, were split at D 2.03 into a left tail and a peak at -0.007, and the peak's 170 cells called
    Tpex; the planted splits of simulate() put the higher mean at 0.12-0.60. Without the two peaks, of eight random
    99% subsamples of Zilionis' mouse lungs pooled as one sample, 5 had their neutrophils split (about 140 of 190
    PMN-MDSC-like) and one also 130 of its 180 naive-like CD8 T cells called Tpex; now 2 split their neutrophils,
    whose healthy and tumour-bearing lungs do draw two peaks, and none the CD8 T cells. simulate()'s planted
    splits are unchanged.)
    """
    from ..scoring.mixture import fit_two_components

    v = np.asarray(values, dtype=np.float64)
    info = {"n_cells": int(np.isfinite(v).sum()), "separation": np.nan, "threshold": np.nan, "n_state": 0,
            "applied": False, "too_few": False, "reason": ""}
    if info["n_cells"] < 2 * min_cells:
        info.update(too_few=True, reason=f"too few cells to fit two populations ({info['n_cells']} < {2 * min_cells})")
        return None, info
    fit = fit_two_components(v, seed=seed)
    low = np.nan_to_num(v, nan=np.inf) < fit.crossing
    info.update(separation=fit.separation, threshold=fit.crossing)
    if not fit.bic_gain >= MIN_BIC_GAIN:
        info["reason"] = f"one population (two Gaussians gain {fit.bic_gain:.1f} < {MIN_BIC_GAIN:g} of BIC over one)"
        return None, info
    if fit.separation < 2:
        info["reason"] = f"one population (Ashman's D {fit.separation:.2f} < 2)"
        return None, info
    if not fit.two_peaks:
        info["reason"] = "one population (the two Gaussians draw one peak with a tail, not two peaks)"
        return None, info
    if min(low.sum(), (~low).sum()) < min_cells:
        info.update(too_few=True, reason=f"a population of fewer than {min_cells} cells")
        return None, info
    if fit.high_mean <= 0:
        info["reason"] = f"neither population holds the programme (the higher one's mean {fit.high_mean:.3f} <= 0)"
        return None, info
    info["applied"] = True
    return low, info


def population_splits(S: pd.DataFrame, lineage: np.ndarray, state: np.ndarray, samples: np.ndarray, *,
                      min_cells: int) -> pd.DataFrame:
    """Split each state of ``POPULATION_SPLITS`` from its sibling (in place on ``state``), sample by sample,
    where its programme separates two populations of at least ``min_cells`` cells among the cells called either
    (:func:`split_two_populations`); one row per split and sample, applied or not, and why. Where no such
    population stands apart (or the programme cannot be scored), the cells called either are the sibling. A state
    whose sibling is its lineage (apCAF; PMN-MDSC-like, whose sibling state bears the lineage's name) is split
    among all the lineage's cells, and the cells outside it keep their other states (the sibling's where they
    were the split state). Within
    a sample, because patients differ in their HLA class II transcripts (alleles map unequally to the reference)
    and a batch shifts every gene of a sample."""
    rows = []
    for lin, (split_state, sibling, name, side) in POPULATION_SPLITS.items():
        col = split_column(name, side, S.columns)
        for smp in pd.unique(samples):
            # a state apart from its whole lineage (sibling: the lineage) is split among all the lineage's cells
            called = np.isin(state, [split_state, sibling]) if sibling != lin else True
            cells = (lineage == lin) & called & (samples == smp)
            if not cells.any():
                continue
            row = {"lineage": lin, "state": split_state, "sibling": sibling, "sample": smp, "signature": col}
            idx = np.flatnonzero(cells)
            # outside a population apart, its cells are the sibling (where that is the lineage, the lineage's other
            # states stay): otherwise the signature competition alone would call classical blood monocytes, which
            # hold less HLA class II than intermediate monocytes but plenty, M-MDSC-like, and the neutrophils of
            # healthy lungs PMN-MDSC-like
            rest = np.where(state[idx] == split_state, sibling, state[idx]) if sibling == lin else sibling
            if col not in S.columns:
                state[idx] = rest
                rows.append({**row, "n_cells": int(cells.sum()), "applied": False, "too_few": False,
                             "reason": GENES_MISSING})
                continue
            values = S[col].to_numpy(dtype=float)[cells]
            low, info = split_two_populations(values, min_cells=min_cells)
            if low is None:
                state[idx] = rest
            else:
                is_state = low if side == "low" else ~low & np.isfinite(values)
                state[idx] = np.where(is_state, split_state, rest)
                info["n_state"] = int(is_state.sum())
            rows.append({**row, **info})
    return pd.DataFrame(rows, columns=["lineage", "state", "sibling", "sample", "signature", "n_cells", "separation",
                                       "threshold", "n_state", "applied", "too_few", "reason"])

"""Which signatures decide which label: the rule tables behind ``tmt.tl.annotate``.

A label's evidence is the mean of its signatures' scores. Several labels may name one lineage (``"DC|cDC1"``,
``"DC|pDC"``): the part before ``|`` is the lineage. States are decided only among cells of their lineage.
"""

from __future__ import annotations

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

# Tregs count as T cells by their own programme as well: on small spatial panels FOXP3 and CTLA4 are often detected
# where CD3 is not. Only robust programmes decide lineages: pDC is left out (its GZMB also marks cytotoxic T cells, and pDCs are
# rare in tumours); the 2-gene scGate neutrophil gate and the 7-gene mregDC gate (CCR7, BIRC3 also mark T
# cells) are replaced by longer published sets; panCAF is left out because VIM marks immune cells too.

# T/NK cells are split by co-receptor and NK identity; Tregs count as CD4 T cells by their own programme, because
# CD40LG (half of the two-gene CD4 set) marks conventional CD4 T cells and is low in Tregs
TNK_RULES: dict[str, tuple[str, ...]] = {
    "CD8 T": ("CD8_T",),
    "CD4 T|conventional": ("CD4_T",),
    "CD4 T|Treg": ("Treg_core",),
    "NK": ("NK",),
}

STATE_RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "CD8 T": {
        "CD8 naive/memory": ("CD8_naive_memory",),
        "CD8 effector": ("CD8_effector",),
        "CD8 Tpex": ("CD8_Tpex_core",),
        "CD8 Tex": ("CD8_Tex",),
    },
    "CD4 T": {
        "CD4 naive/memory": ("CD4_naive_memory",),
        "CD4 helper": ("CD4_helper",),
        "Treg": ("Treg_core",),
    },
    "Monocyte/Macrophage": {
        "Monocyte": ("Monocyte",),
        "TAM M1-like": ("TAM_M1_like",),
        "TAM M2-like": ("TAM_M2_like",),
        "M-MDSC-like": ("M_MDSC_like",),
    },
    "Neutrophil": {
        "Neutrophil": ("Neutrophil_immature",),
        "PMN-MDSC-like": ("PMN_MDSC_like",),
    },
    "Fibroblast": {
        "myCAF": ("myCAF",),
        "iCAF": ("iCAF",),
        "apCAF": ("apCAF",),
    },
}

# finer, optional columns: column -> lineage -> {label: signatures}
SUBSET_RULES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "tmt_tam_subset": ("Monocyte/Macrophage", {
        "IFN-TAM": ("TAM_IFN",),
        "Inflam-TAM": ("TAM_Inflam",),
        "LA-TAM": ("TAM_LA",),
        "Angio-TAM": ("TAM_Angio",),
        "Reg-TAM": ("TAM_Reg",),
        "RTM-TAM": ("TAM_RTM",),
        "Prolif-TAM": ("TAM_Prolif",),
    }),
    "tmt_caf_subset": ("Fibroblast", {
        "ecm-myCAF": ("CAF_ecm_myCAF",),
        "TGFb-myCAF": ("CAF_TGFb_myCAF",),
        "wound-myCAF": ("CAF_wound_myCAF",),
        "detox-iCAF": ("CAF_detox_iCAF",),
        "IL-iCAF": ("CAF_IL_iCAF",),
        "IFNg-iCAF": ("CAF_IFNg_iCAF",),
    }),
}


def needed_signatures() -> list[str]:
    names: list[str] = []
    for rules in (LINEAGE_RULES, TNK_RULES, *STATE_RULES.values(), *(r for _, r in SUBSET_RULES.values())):
        for sigs in rules.values():
            names += sigs
    names += ["TAM_M1_like", "TAM_M2_like"]
    return list(dict.fromkeys(names))

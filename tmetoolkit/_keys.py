"""Every key tmetoolkit writes into AnnData, in one place."""

SCORES = "tmt_scores"
LINEAGE = "tmt_lineage"
STATE = "tmt_state"
CONFIDENCE = "tmt_confidence"
INPUT = "tmt_input"
SIMULATION = "tmt_simulation"

LINEAGES = (
    "CD8 T", "CD4 T", "NK", "B", "Plasma", "Monocyte/Macrophage", "Neutrophil", "DC", "Mast",
    "Fibroblast", "Pericyte", "Endothelial", "Malignant/Epithelial", "unassigned",
)
STATES = {
    "CD8 T": ("CD8 naive/memory", "CD8 effector", "CD8 Tpex", "CD8 Tex"),
    "CD4 T": ("CD4 naive/memory", "CD4 helper", "Treg"),
    "Monocyte/Macrophage": ("Monocyte", "TAM M1-like", "TAM M2-like", "M-MDSC-like"),
    "Neutrophil": ("Neutrophil", "PMN-MDSC-like"),
    "Fibroblast": ("myCAF", "iCAF", "apCAF"),
}
PHENOTYPES = ("inflamed", "excluded", "desert", "not assessable")
PHENOTYPE_COLORS = {"inflamed": "#d62728", "excluded": "#ff7f0e", "desert": "#1f77b4", "not assessable": "#bdbdbd"}

"""Every key tmetoolkit writes into AnnData, in one place, and the table of labels ``annotate`` writes."""

PREFIX = "tmt_"  # every key the package writes starts with it; a key without it belongs to the user

# obsm
SCORES = "tmt_scores"  # cells x signatures (tl.score)
CHECKPOINT_DETECTION = "tmt_checkpoints"  # cells x checkpoint genes detected (tl.checkpoints)
MARKER_EVIDENCE = "tmt_marker_evidence"  # protein panels: cells x marker and label evidence (tl.annotate)

# obs: per-cell labels and values
LINEAGE = "tmt_lineage"
STATE = "tmt_state"
CONFIDENCE = "tmt_confidence"
TAM_SUBSET = "tmt_tam_subset"
CAF_SUBSET = "tmt_caf_subset"
TAM_POLARIZATION = "tmt_tam_polarization"
TUMOR_CELL = "tmt_tumor_cell"
TUMOR_SPOT = "tmt_tumor_spot"
COMPARTMENT = "tmt_compartment"
BORDER_DISTANCE = "tmt_border_distance"
PHENOTYPE_SAMPLE = "tmt_immune_phenotype"  # the sample's call on each of its cells (named as its uns entry)
PHENOTYPE_REGION = "tmt_immune_phenotype_region"  # the call of the cell's region
CHECKPOINT_N = "tmt_checkpoint_n"
CHECKPOINT_PATTERN = "tmt_checkpoint_pattern"
SUPPRESSION_SCORE = "tmt_suppression_score"

# uns: one entry per tool, {"params": ..., "table": ...}
ANNOTATE = "tmt_annotate"
COMPARTMENTS = "tmt_compartments"
IMMUNE_PHENOTYPE = "tmt_immune_phenotype"
CHECKPOINTS = "tmt_checkpoints"
IMMUNOSUPPRESSION = "tmt_immunosuppression"
RESISTANCE_PROFILE = "tmt_resistance_profile"
COMPARE_GROUPS = "tmt_compare_groups"
RUN = "tmt_run"  # the pipeline: steps skipped and why
SIMULATION = "tmt_simulation"  # datasets.simulate: the planted truth


def colors(key: str) -> str:
    """``uns`` key of the colours of categorical ``obs[key]`` (scanpy's convention)."""
    return f"{key}_colors"


# Every label tmt.tl.annotate writes, in display order: (lineage, state or None for the lineage itself, colour,
# signatures that decide the state within its lineage). Categories, their order, colours and the RNA state rules
# are derived from this table, so adding a state is one row here (a protein panel needs its gate in
# _core/annotation/protein.py as well).
LABELS: list[tuple[str, str | None, str, tuple[str, ...]]] = [
    ("CD8 T", None, "#d62728", ()),
    ("CD8 T", "CD8 naive/memory", "#fcbba1", ("CD8_naive_memory",)),
    ("CD8 T", "CD8 effector", "#fb6a4a", ("CD8_effector",)),
    ("CD8 T", "CD8 Tpex", "#cb181d", ("CD8_Tpex_core",)),
    # terminal exhaustion is Zheng 2021's Tex programme together with ProjecTILs' Tex gate (TIM-3, LAYN, LAG-3, CD39):
    # with the programme alone, exhausted cells, which keep their granzymes, tied with effector cells
    ("CD8 T", "CD8 Tex", "#67000d", ("CD8_Tex", "CD8_Tex_gate")),
    ("CD4 T", None, "#ff9896", ()),
    ("CD4 T", "CD4 naive/memory", "#fdd0a2", ("CD4_naive_memory",)),
    ("CD4 T", "CD4 helper", "#fd8d3c", ("CD4_helper",)),
    ("CD4 T", "Treg", "#a63603", ("Treg_core",)),
    ("NK", None, "#e377c2", ()),
    ("B", None, "#1f77b4", ()),
    ("Plasma", None, "#aec7e8", ()),
    ("Monocyte/Macrophage", None, "#2ca02c", ()),
    ("Monocyte/Macrophage", "Monocyte", "#c7e9c0", ("Monocyte",)),
    ("Monocyte/Macrophage", "TAM M1-like", "#74c476", ("TAM_M1_like",)),
    ("Monocyte/Macrophage", "TAM M2-like", "#238b45", ("TAM_M2_like",)),
    ("Monocyte/Macrophage", "M-MDSC-like", "#00441b", ("M_MDSC_like",)),
    ("Neutrophil", None, "#98df8a", ()),
    ("Neutrophil", "Neutrophil", "#d9f0a3", ("Neutrophil_immature",)),
    ("Neutrophil", "PMN-MDSC-like", "#78c679", ("PMN_MDSC_like",)),
    ("DC", None, "#17becf", ()),
    ("Mast", None, "#9edae5", ()),
    ("Fibroblast", None, "#d9c5a0", ()),
    ("Fibroblast", "myCAF", "#d8b365", ("myCAF",)),
    ("Fibroblast", "iCAF", "#8c510a", ("iCAF",)),
    ("Fibroblast", "apCAF", "#c7a97f", ("apCAF",)),
    ("Pericyte", None, "#bcbd22", ()),
    ("Endothelial", None, "#9467bd", ()),
    ("Malignant/Epithelial", None, "#7f7f7f", ()),
    ("unassigned", None, "#dddddd", ()),
]


def lineages() -> tuple[str, ...]:
    """Lineage labels in display order (``unassigned`` last)."""
    return tuple(dict.fromkeys(row[0] for row in LABELS))


def states() -> dict[str, tuple[str, ...]]:
    """Lineage -> its states, for lineages that have states."""
    out: dict[str, tuple[str, ...]] = {}
    for lin, state, _, _ in LABELS:
        if state is not None:
            out[lin] = (*out.get(lin, ()), state)
    return out


def label_colors() -> dict[str, str]:
    """Colour of every lineage and state label ("Neutrophil" the state shares its name with the lineage and is
    drawn in the state's colour in state plots: see :func:`state_label_colors`)."""
    return {lin: colour for lin, state, colour, _ in LABELS if state is None}


def state_label_colors() -> dict[str, str]:
    """Colours of ``obs["tmt_state"]`` categories: each state's own, lineages without a state their lineage's."""
    return {**label_colors(), **{state: colour for _, state, colour, _ in LABELS if state is not None}}


def state_signatures() -> dict[str, dict[str, tuple[str, ...]]]:
    """Lineage -> {state: the signatures that decide it among that lineage's cells}."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for lin, state, _, sigs in LABELS:
        if state is not None:
            out.setdefault(lin, {})[state] = sigs
    return out


# the table as it is at import, for reading; code that must see a row added later calls the functions
LINEAGES = lineages()
STATES = states()
PHENOTYPES = ("inflamed", "excluded", "desert", "not assessable")
PHENOTYPE_COLORS = {"inflamed": "#d62728", "excluded": "#ff7f0e", "desert": "#1f77b4", "not assessable": "#bdbdbd"}
COMPARTMENT_LABELS = ("tumor", "margin", "stroma")  # obs["tmt_compartment"], in this order
COMPARTMENT_COLORS = {"tumor": "#7f7f7f", "margin": "#ffbb78", "stroma": "#c5b0d5"}

"""``tmt.tl.annotate``: lineage, then state within lineage, with a confidence and an honest ``unassigned``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._core.annotation import protein as prot
from .._core.annotation import rules
from .._core.annotation.embedding import N_TOP_GENES
from .._core.annotation.identity import (
    Expression,
    read_expression,
    rna_identity,
)
from .._core.annotation.lineage import MARKERS_AGAINST, NO_READ, unassigned_reasons
from .._core.annotation.markers import lineage_markers
from .._core.annotation.rna_calls import call_rna
from .._core.annotation.states import mixed_lineage_evidence
from .._matrix import dense_matrix, get_matrix, looks_like_bulk
from .._utils import TmtInputError, TmtWarning, check_tmt_key, checked_number, logger, missing_key_error, target, warn
from ..pp._check import corrected_values_message, input_error, inspect, refuse_non_finite, warn_duplicated
from ._sample_features import one_sample_hint, samples_of
from ._score import score, score_once
from ._spots import is_spot_data

WRITTEN = (_keys.LINEAGE, _keys.STATE, _keys.CONFIDENCE, _keys.TAM_SUBSET, _keys.CAF_SUBSET, _keys.TAM_POLARIZATION)
MIXED_WARN = 0.2  # share of mixed cells above which annotate warns
# RNA lineages: the classifier's probability a call needs; states and protein labels: the confidence from the
# lead over the runner-up (0.3 = a lead of a third of a noise unit)
LINEAGE_MIN_PROBABILITY = 0.5
LEAD_MIN_CONFIDENCE = 0.3


def annotate(
    adata: AnnData,
    *,
    layer: str | None = None,
    groupby: str | None = None,
    species: str | None = None,
    n_neighbors: int = 15,
    markers: Mapping[str, str] | None = None,
    gates: Mapping[str, float] | float | None = None,
    spillover: float = 0.15,
    sample_key: str | None = None,
    image_key: str | None = None,
    tumor_signature: str | None = None,
    min_confidence: float | None = None,
    override_confidence: float = 0.8,
    copy: bool = False,
) -> AnnData | None:
    """Call lineages and, within each lineage, cell states of the tumour microenvironment.

    **Lineages (RNA).** Each lineage is defined by cited marker genes chosen to separate it from all others,
    positive and negative (``signatures/lineage_markers.yaml``: a DC is not CD3+ and not C1Q-high, a pericyte is
    RGS5/KCNJ8+ and PDGFRA/LUM-low, plasma cells are JCHAIN/MZB1+ and MS4A1-low). Markers are read as
    within-cell ranks (UCell), which do not depend on library size or normalisation (a gene counts as expressed
    among a cell's top 1,500 genes, or its top quarter of a smaller panel's genes). On whole-number counts (droplet
    UMIs), a marker counted at no more than the level ambient RNA explains (10% of the cell's UMIs in the data set's
    pooled proportions, SoupX's common contamination) counts as not expressed, so that the immunoglobulin RNA of a
    sample rich in plasma cells does not make its other cells plasma cells. In segmented spatial data (counts with
    ``obsm["spatial"]``), a marker a touching cell explains (``spillover``) does not count against a cell's
    lineage: the C1Q a T cell takes from the macrophage beside it does not veto its T-cell call. Each cell's marker
    evidence is pooled over its expression neighbours (``obsp["connectivities"]`` when present,
    else ``n_neighbors`` cells on the data set's principal components). The cells the markers call with a clear
    lead are seeds; a logistic regression trained on them, on the data set's own principal components, calls
    every cell. The confidence is its probability, with the share it puts on lineages the cell's own pooled markers
    speak against set aside where that share is under half; a cell is ``unassigned`` when no lineage reaches
    ``min_confidence`` or its own pooled markers speak against the lineage the classifier chose (silent markers do
    not, nor the genes of a sibling lineage the classifier tells it from, such as a macrophage's cDC2 genes, where
    the cell's own markers lead every other lineage's). T cells are divided into CD8 T and CD4 T among themselves
    the same way, where the classifier decides alone: a T cell without a co-receptor read still takes its call. A
    lineage with too few seeds to learn keeps its marker calls (with a warning); where one lineage alone has
    enough seeds (sorted T cells), it takes every cell whose markers do not speak against it, and the other
    lineages' seeds keep their calls. On a panel that has lost most of a marker group (a file of highly variable
    genes), cited reserve genes of the same lineage stand in for the missing ones. The subunits of one protein
    complex (the three C1Q chains, CD3D/E/G, CD79A/B) count as one marker, so that spill-over of a complex from a
    neighbouring cell counts once. A cell that carries a transcript no other cell makes (FOXP3) keeps that label's
    lineage against its neighbours' spill-over.

    **States** are decided within their lineage: CD8 naive/memory, effector, progenitor-exhausted (Tpex) and
    terminally exhausted (Tex); CD4 naive/memory, helper and Treg; monocyte, TAM M1-like, TAM M2-like and
    M-MDSC-like; neutrophil and PMN-MDSC-like; myCAF, iCAF and apCAF. Each is decided by control-matched signature
    scores (:func:`tmetoolkit.tl.score`, ``mean_ctrl``) on the genes that are a state's own (signatures
    ``<name>_specific`` without the genes of sibling states and of the lineage's identity), averaged over the same
    expression neighbours; the best-scoring state wins when its lead over the runner-up is clear, else the cell
    keeps its lineage name. CD4 helper cells are Th1-like or follicular and peripheral helpers, whose CXCL13 and
    IL-21 Tregs do not make but whose CTLA4 and TNFRSF18 they do: a cell's helper evidence is the better of the Th1
    programme and the follicular helpers' (``CD4_Tfh_second_programme``, ProjecTILs' Tfh gate without TOX and TOX2,
    which Tregs make too), the second only where the cell itself reads it, since such helpers gather beside Tregs.
    myCAF and iCAF, two ends of one axis within CAFs whose genes every fibroblast makes
    above other cells, are scored among the cells called fibroblasts (20 or more; ``obsm["tmt_scores"]`` keeps
    the scores against all cells). CD8 effector and Tex cells both kill, and exhausted cells of tumours keep their
    granzymes (Li 2019): the two compete as one against naive/memory and Tpex, then, among the cells called either,
    effector against Tex on their sets without the cytotoxic programme and without genes most lymphocytes express
    (IL2RB, IL2RG, CD74, NAMPT); a panel that cannot score Tex there leaves them effector. TAM M1-like and M2-like
    compete as one against monocytes and M-MDSC-like cells, and a cell called a TAM is named by its polarization
    (``obs["tmt_tam_polarization"]``): M1-like or M2-like where that programme alone is above two noise units (the
    background spread of both scores over all cells), or both are and it leads by two; where both are high and
    close (mixed) or neither is high, the cell keeps the lineage's name (a panel that cannot score both programmes
    has no polarization, and there the competition names the TAM). MDSC-like cells are a
    population apart from the conventional cells of their lineage in the same sample. M-MDSC-like cells are
    classical monocytes with HLA-DR low or negative (Bronte 2016): they hold the monocytes' own genes, so among the
    cells of a sample called monocyte or M-MDSC-like those whose HLA class II (the down genes of ``M_MDSC_like``) is
    low are M-MDSC-like; among its neutrophils, those high in the PMN-MDSC-like programme's own genes are
    PMN-MDSC-like. Each split is made where a two-Gaussian mixture finds two populations (a BIC gain of at least 10
    over one Gaussian, Ashman's D >= 2, two peaks rather than one with a tail, at least 10 cells each, the higher
    one's mean score above zero, the control genes' level); where the cells form one population, all are
    monocytes or neutrophils (blood monocytes hold less HLA class II than intermediate ones, but plenty; the
    neutrophils of a healthy lung make the activation genes PMN-MDSC share), and the MDSC programmes stay available
    as scores. Progenitor-exhausted CD8 T cells (Tpex) keep
    the naive cells' TCF7, CCR7 and SELL but belong to the exhausted lineage: among the cells called naive/memory or
    Tpex, those high in the Tpex programme's own genes (PD-1, CXCR5, ...) are Tpex where they form a population
    apart, so naive/memory cells are decided on the genes they share with Tpex as well. Antigen-presenting CAFs are
    a population apart among all of a sample's fibroblasts, split off on their MHC class II genes, which every
    antigen-presenting cell makes in abundance (Elyada 2019): apCAF does not compete with myCAF and iCAF, and
    where the fibroblasts form one population none is apCAF. A state whose rivals the panel cannot score (iCAF on a
    panel without the myCAF genes) is called only where its cells form a population apart in their sample: alone,
    its lead over background would follow each cell's depth. No state is decided on the
    translation machinery every cell makes (ribosomal proteins, EEF1A1, TPT1, PABPC1). A sample needs enough of
    these cells to show two populations: with a few dozen, a small MDSC-like population is often not told from a
    skewed single one. MDSC states are called "-like" because a transcriptome cannot prove suppression. TAM M1- and
    M2-like programmes are often co-expressed (Azizi 2018), so both scores are kept and
    ``obs["tmt_tam_polarization"]`` says when a macrophage is high in both.

    Parameters
    ----------
    adata
        Cells x genes: raw counts, normalised values (TPM, CPM) or log-normalised values (not batch-corrected
        ones, which hold no common level for the genes a cell does not express: annotate warns and names
        ``adata.raw`` or ``layer=``). Log values of a whole transcriptome (one total per cell once taken back) are
        read as the counts they encode, whether logged to base e, 2 or 10 and whatever total they were
        normalised to.
    layer
        Layer to use instead of ``X``.
    groupby
        Optional ``obs`` column of clusters (Leiden clusters, say). A cluster sure of a lineage (its cells' mean
        probability, or with ``gates=`` the confidence of its mean evidence, at least ``override_confidence``)
        lends it to its cells that are less sure; mixed clusters and cells without a cluster (NaN) keep their
        own calls. States are called cell by cell within their lineage: a cluster holds a lineage, and its
        majority state would be given to its Tregs or exhausted cells.
    species
        ``"human"`` or ``"mouse"``; by default read from ``var_names``: mouse when most known symbols are mouse
        symbols (``Cd8a``) or, for upper-case symbols (``CD8A``), when names only mouse has (``H2-K1``,
        ``GM12345``) outnumber those only human has (``HLA-A``); else human (see :func:`tmetoolkit.pp.check_input`).
        Mouse genes are read through the packaged human-mouse ortholog table.
    n_neighbors
        Cells whose evidence is pooled (the cell itself included), at most 2% of the cells and at least 5 where
        that is at most one cell in 36 (a data set of 60 cells is not pooled), when ``obsp["connectivities"]`` is
        absent; ``1`` decides on each cell's own evidence. RNA only.
    markers
        Protein panels only: canonical marker -> channel in ``var_names``, for channels not recognised by name
        (``CD8 (Opal 540)``, ``CD8A``, ``PanCK``, ``Pan-Keratin``, ``Keratin17``, ``vWF/CD31`` are). ``"tumor"`` is
        the malignant-cell marker, keratin by default; e.g. ``{"tumor": "CD30"}`` for Hodgkin lymphoma. See
        ``tmetoolkit._core.annotation.protein.MARKER_ALIASES`` and ``MARKER_PATTERNS``.
    gates
        Protein panels only: positivity thresholds in the data's units, one per channel (keyed by channel name or
        by recognised marker, ``{"CD8": 2.5}``; other keys are refused) or one for all (``0.5`` after
        ``scimap.pp.rescale``). By default each marker is gated by a two-component Gaussian
        mixture on its log intensity, or on arcsinh(x / median) where the log fit finds one skewed population
        (Ashman's D < 2) and arcsinh two (on its own values when the channel holds negative values, as after
        z-scoring; arcsinh- or log-transformed panels are gated on sinh of their values, so the calls match those
        from the intensities). With fitted gates and no ``groupby``, the cells the gates call with confidence train
        a logistic regression on every channel, which then calls each cell whose defining marker of that lineage
        is above its gate and not contradicted by a negative one (CD45 and CD3, dim on some lineages, choose the
        cells it learns from); lineages with fewer than 10 such cells, or whose defining channel shows no two
        populations, keep their gated calls, and the latter do not compete for the cells it learns from.
    spillover
        Protein panels with ``obsm["spatial"]`` and intensities (not transformed values with negatives), channels with
        fitted gates: lateral spill-over removed before gating.
        Each cell loses this fraction of its brightest touching neighbour's intensity, channel by channel, so a
        dim "positive" beside a bright cell no longer counts. Gates are fitted on the intensities as imaged.
        Removal applies to each label's defining and negative markers; its supporting markers (CD45, CD3 for T
        cells) are read as imaged, since removal erases genuine dim signal such as CD45 on myeloid cells.
        ``0`` turns it off; given ``gates`` apply to the intensities as they are.
        Segmented RNA (whole-number counts with ``obsm["spatial"]``, as MERFISH, Xenium, CosMx): segmentation
        gives a cell some of the transcripts of the cell beside it, so a marker a cell holds at most this fraction
        of the count of its touching neighbour with the most of it does not count against the cell's lineage (it
        still counts for one: a cell beside a stronger expresser of its own type keeps its markers). Not applied to
        spots, nor to normalised or log values; ``0`` reads every transcript as the cell's own.
    sample_key, image_key
        Protein panels and segmented RNA with coordinates: ``obs`` columns of samples (default ``obs["sample"]``
        when present) and of images within a sample. Each image has its own coordinates, so cells touch only
        within it. RNA: the samples within which MDSC-like, progenitor-exhausted and apCAF populations are split off
        (HLA class II for M-MDSC-like vs monocyte, the PMN-MDSC-like programme for PMN-MDSC-like vs neutrophil, the
        Tpex programme for CD8 Tpex vs naive/memory, MHC class II for apCAF among fibroblasts), default
        ``obs["sample"]`` when present: pass it when the data pool several samples or tissues, or a split may follow
        them instead.
    tumor_signature
        RNA only: a registry signature that marks the malignant cells on this panel, for panels without the
        epithelial genes the malignant lineage is otherwise decided by (e.g. ``"MPAS"``, MAPK activity, on a lung
        cancer MERFISH panel without keratins). It decides ``Malignant/Epithelial`` next to the epithelial sets;
        pass the same name to :func:`tmetoolkit.tl.immune_phenotype`. On protein panels map a channel instead:
        ``markers={"tumor": ...}``.
    min_confidence
        Below this confidence a call is not made. Default: a probability of 0.5 for RNA lineages, a confidence
        of 0.3 (a lead of a third of a noise unit) for states and protein labels.
    override_confidence
        With ``groupby``, the confidence a cluster needs to lend its lineage, and a cell to keep a lineage that
        differs from its cluster's.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Sets:

    ``obs["tmt_lineage"]``, ``obs["tmt_state"]``
        Categorical labels in tmetoolkit's vocabulary (``unassigned`` where the lineage is not confident).
    ``obs["tmt_confidence"]``
        Confidence of the finest call made (0-1). On the labelled RNA sets, lineage calls at 0.95 or above were
        right in 0.89-1.00 of cells and kept with five other cells left out in 0.985-1.00 of runs; between 0.5
        and 0.8, 0.72-0.93 were kept (``benchmarks/validate_annotation.py --stability``): filter on it where a
        call must hold.
    ``uns["tmt_lineage_colors"]``, ``uns["tmt_state_colors"]``
        Fixed colours of every label (scanpy's convention; the same in every tmetoolkit figure).
    ``obs["tmt_tam_subset"]``, ``obs["tmt_caf_subset"]``
        RNA: consensus TAM subsets (Ma 2022) and CAF-S1 clusters (Kieffer 2020) on macrophages and fibroblasts,
        the closest published subset by its whole set; the subset whose set holds the lineage's most abundant genes
        takes most cells (docs/validation.md), so compare the subsets' scores across samples, not the shares.
    ``obs["tmt_tam_polarization"]``
        RNA: ``M1-like``, ``M2-like``, ``M1/M2 mixed`` or ``neither`` for monocytes/macrophages (missing where the
        panel cannot score both programmes); a TAM's state (``TAM M1-like``, ``TAM M2-like``) is its polarization.
    ``obsm["tmt_scores"]``, ``uns["tmt_scores"]``
        RNA: each cell's own signature scores, as :func:`tmetoolkit.tl.score` writes them; labels are decided on
        their neighbour averages (``n_neighbors``).
    ``obsm["tmt_marker_evidence"]``
        For protein panels (in place of signature scores): each marker's evidence (``"CD8+"``: distance above the
        gate in SDs of the negative cells, after spill-over removal) and each label's evidence (``"/"`` in a label
        written ``"_"``, as ``"Monocyte_Macrophage"``); :func:`tmetoolkit.pl.gates` draws the gates.
    ``uns["tmt_annotate"]``
        ``params`` (with ``lineage_method``: ``classifier``, ``one lineage`` (one lineage had enough seeds) or
        ``markers`` (none had), the neighbour graph used, the
        ``sample_key`` given, ``log_base``: the base of log values read as the counts they encode, ``""`` for
        none, and for RNA ``spillover``: the fraction of a touching cell's count below which a marker did not
        count against a lineage, 0 where no cell was read so) and
        ``rules``: every label, what decides it (lineages: marker ``genes``, those the panel holds
        (``genes_read``), the reserve genes read in place of missing ones (``stand_ins``), ``negative`` genes
        and the reserve genes read against the label in place of a negative group the panel lacks
        (``negative_stand_ins``: LAPTM5 for PTPRC against the stromal labels),
        ``n_seeds`` and the cells called with the label, ``n_called``; a lineage read from one gene of three or
        more that calls 10 cells or more is warned about, and the report names it);
        states: signatures, on panels without most of Treg_core but with FOXP3 the longer Treg set), and whether it
        could be assessed (``reason``: why not, or for a state whose rivals the panel cannot score, that it was
        called only where its cells form a population apart); ``lineage_by_markers``: lineages with too few seeds
        to learn; ``mixed_evidence``:
        lineage pairs that cells' own markers both support (the second at least 0.5 and half the first), with the
        share of cells (above 20% in all annotate warns: in segmented spatial data, transcripts assigned to the
        wrong cell); ``splits``: per sample, whether monocytes were split into M-MDSC-like and monocyte by HLA class
        II, neutrophils into PMN-MDSC-like and neutrophil, naive/memory CD8 T cells into Tpex and naive/memory and
        fibroblasts into apCAF and the rest (cells, Ashman's D, threshold, cells given the split-off state, or why
        not, ``too_few`` when too few cells to tell); ``unassigned``: why cells are unassigned, with their number
        and share of all cells (RNA: no read among the genes, or their own pooled markers speak against the
        lineage the classifier chose, as for types the vocabulary does not name; protein: their gates support no
        lineage, or do not support the classifier's; otherwise no lineage reaches ``min_confidence``); for
        protein panels
        ``gates``: per marker its channel, gate, source, fraction of positive cells, gating ``scale`` and
        ``separation`` (Ashman's D), and ``seeds``: per lineage its confident cells and whether the classifier
        learned it (``params["lineage_method"]``: ``classifier`` or ``markers``).

    See Also
    --------
    tmetoolkit.get.markers : the genes behind each call, in the label's cells and in those it was chosen against.
    tmetoolkit.pl.markers : the same as a dot plot.

    Examples
    --------
    >>> import tmetoolkit as tmt
    >>> adata = tmt.datasets.simulate(n_samples=1, n_cells=800, seed=0)
    >>> tmt.tl.annotate(adata)
    >>> "Treg" in set(adata.obs["tmt_state"])
    True
    """
    if species not in (None, "human", "mouse"):
        msg = f"species must be 'human' or 'mouse', got {species!r}."
        raise TmtInputError(msg)
    if int(n_neighbors) != n_neighbors or n_neighbors < 1:
        msg = f"n_neighbors must be a positive integer (1 = no averaging), got {n_neighbors!r}."
        raise TmtInputError(msg)
    adata = target(adata, copy)
    for key in (groupby, sample_key, image_key):
        if key is not None and key not in adata.obs:
            raise missing_key_error(key, "adata.obs", adata.obs.columns)
    samples = samples_of(adata, sample_key)  # refuses cells without a sample before any work
    if not 0 <= spillover < 1:
        msg = f"spillover must be a fraction in [0, 1), got {spillover!r}."
        raise TmtInputError(msg)
    if min_confidence is not None:
        min_confidence = checked_number(min_confidence, "min_confidence", "a probability or a confidence", high=1)
    override_confidence = checked_number(override_confidence, "override_confidence", "a probability or a confidence",
                                         high=1)
    check_tmt_key(adata.obs, (_keys.LINEAGE, _keys.STATE, _keys.CONFIDENCE, *rules.SUBSET_RULES), "adata.obs")
    # state and species only; score() below scans the matrix itself
    report = inspect(adata, layer, full_scan=False, species=species)
    warn_duplicated(report)
    if is_spot_data(adata):
        warn("these are spots (obs array_row/array_col), each holding several cells: a spot's lineage is that of "
             "its dominant cells. The spatial tools read spots through programmes, not these labels; for cell "
             "types within spots, deconvolve them (e.g. cell2location, Tangram) with a single-cell reference.")
    if report.state == "protein":
        if tumor_signature is not None:
            msg = ("tumor_signature= applies to RNA; on a protein panel map the channel that marks the malignant "
                   "cells: markers={'tumor': '<channel>'}.")
            raise TmtInputError(msg)
        _annotate_protein(adata, layer, markers=markers, gates=gates, groupby=groupby, spillover=spillover,
                          sample_key=sample_key, image_key=image_key,
                          min_confidence=LEAD_MIN_CONFIDENCE if min_confidence is None else min_confidence,
                          override_confidence=override_confidence)
        return adata if copy else None
    if markers is not None or gates is not None:
        msg = ("markers= and gates= apply to protein panels; this matrix looks like RNA expression "
               f"(state: {report.state}). Leave them out.")
        raise TmtInputError(msg)
    if report.problems:  # scaled values, NaN: refused before any other reading of them
        raise input_error(report, "cannot annotate this input: " + " ".join(report.problems))
    if looks_like_bulk(adata, layer):
        warn("each observation detects a median of more than 10,000 genes, as bulk samples do, not cells: annotate "
             "calls single cells. For bulk samples use tl.score, tl.immune_phenotype and tl.immunosuppression / "
             "tl.resistance_profile with bulk=True (tmetoolkit run --bulk).")
    corrected = corrected_values_message(adata, layer) if report.state == "lognorm" else None
    if corrected:  # measured: Zilionis 2019 after ComBat by patient, lineage accuracy 0.89 -> 0.75
        warn("annotate reads which genes each cell expresses, and " + corrected)
    marker_table = lineage_markers()
    if tumor_signature is not None:
        from ..sig import get

        tsig = get(tumor_signature)  # a KeyError naming the nearest registry names
        marker_table = marker_table.with_label(f"Malignant/Epithelial|{tumor_signature}", tsig.genes_up,
                                               tumor_signature)

    from .._utils import TmtCoverageWarning, TmtRepeatedNamesWarning

    state_rules = rules.specific_state_rules()[0]
    specific = rules.derived_signatures()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TmtWarning)
        needed = [*rules.needed_signatures(), *([tumor_signature] if tumor_signature else [])]
        score_once(adata, [*needed, *specific], layer=layer, method="mean_ctrl", species=report.species)
    for w in caught:  # the rule table reports what could not be scored; anything else is passed on as it was
        if not issubclass(w.category, (TmtCoverageWarning, TmtRepeatedNamesWarning)):  # the latter: warned above
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    S = adata.obsm[_keys.SCORES]
    S = S[[c for c in [*needed, *(s.name for s in specific)] if c in S.columns]]
    # where a signature could not be scored, its published set or a listed fallback decides (rules.resolve)
    info = adata.uns[_keys.SCORES]["signatures"].set_index("signature")
    used = {name: set(str(info.at[name, "genes_used"]).split(",")) if name in info.index else set()
            for name in S.columns}
    state_rules = {lin: rules.resolve(table, used) for lin, table in state_rules.items()}
    segmented = spillover > 0 and report.state == "counts"  # spill-over is read from transcript counts
    xy, images = _segmented_cells(adata, samples, image_key) if segmented else (None, None)
    expr = read_expression(get_matrix(adata, layer), adata.var_names, species=report.species, state=report.state,
                           table=marker_table, seed=0, xy=xy, images=images, spillover=spillover)
    ident = rna_identity(expr, adata.obs_names, variable=_variable_genes(expr), table=marker_table,
                         connectivities=adata.obsp.get("connectivities"), n_neighbors=n_neighbors, seed=0,
                         min_confidence=LINEAGE_MIN_PROBABILITY if min_confidence is None else min_confidence)
    log_base, spilled, empty = expr.encoding[0], expr.spillover, expr.empty
    del expr  # its fit cells' log values (20,000 cells x every gene) served the principal components alone
    mixed = mixed_lineage_evidence(ident.evidence_own)
    S = _states_scored_within(adata, layer, report.species, S, ident.result.lineage, state_rules,
                              [*needed, *specific])
    groups = adata.obs[groupby].astype(str).where(adata.obs[groupby].notna()) if groupby is not None else None
    calls = call_rna(S, ident, marker_table, state_rules, groups=groups, samples=samples.to_numpy(dtype=object),
                     n_neighbors=n_neighbors,
                     state_min=LEAD_MIN_CONFIDENCE if min_confidence is None else min_confidence,
                     lineage_min=LINEAGE_MIN_PROBABILITY if min_confidence is None else min_confidence,
                     override=override_confidence, tumor_signature=tumor_signature)
    _write_calls(adata, calls.lineage, calls.state, calls.confidence)
    for col, values in calls.subsets.items():
        adata.obs[col] = pd.Categorical(values)
    adata.obs[_keys.TAM_POLARIZATION] = pd.Categorical(calls.polarization)
    for message in calls.messages:
        warn(message)
    pooled = pooled_split_message(adata, sample_key, calls.splits)
    if pooled:
        warn(pooled)
    adata.uns[_keys.ANNOTATE] = {
        "params": {"layer": layer or "X", "groupby": groupby or "", "species": report.species,
                   "sample_key": sample_key or "",
                   "n_neighbors": n_neighbors,
                   "min_confidence": "default" if min_confidence is None else min_confidence,
                   "override_confidence": override_confidence, "input_state": report.state,
                   "tumor_signature": tumor_signature or "",
                   "target_sum": adata.uns[_keys.SCORES]["params"]["target_sum"],
                   "lineage_method": ident.result.method, "marker_table_version": marker_table.version,
                   "not_decisive": ",".join(ident.result.not_decisive),
                   "neighbours": ident.graph,
                   "log_base": {np.e: "e", 2.0: "2", 10.0: "10"}.get(log_base, ""),
                   "spillover": spilled},
        "rules": calls.rules,
        "lineage_by_markers": list(ident.result.by_markers),
        "mixed_evidence": mixed,
        "splits": calls.splits,
        "unassigned": unassigned_reasons(calls.lineage, {NO_READ: empty, MARKERS_AGAINST: ident.result.vetoed}),
    }
    if unassigned := unassigned_summary(adata.uns[_keys.ANNOTATE]["unassigned"]):
        logger.info(unassigned)
    summary = mixed_evidence_summary(mixed)
    if summary:
        warn(f"{summary}. In segmented spatial data this usually means transcripts assigned to the wrong cell; such "
             "cells get the stronger lineage. Review the segmentation or call on clusters (groupby=); "
             "uns['tmt_annotate']['mixed_evidence'] lists the pairs.")
    _set_colors(adata)
    logger.info("added obs %s", ", ".join(WRITTEN))
    return adata if copy else None


def _variable_genes(expr: Expression) -> np.ndarray | None:
    """The ``N_TOP_GENES`` most variable genes (scanpy, seurat flavour) of the cells the principal axes are fitted
    on, as a mask over ``expr.fit_matrix``'s columns; ``None`` (all genes) on a smaller panel or for two cells."""
    if len(expr.ranks) <= 2 or expr.n_genes <= N_TOP_GENES:
        return None
    import warnings

    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hv = sc.pp.highly_variable_genes(AnnData(expr.fit_matrix), n_top_genes=N_TOP_GENES, flavor="seurat",
                                         inplace=False)
    return hv["highly_variable"].to_numpy()


def _states_scored_within(adata: AnnData, layer: str | None, species: str, S: pd.DataFrame, lineage: np.ndarray,
                          state_rules: dict, signatures: list) -> pd.DataFrame:
    """``S`` with the competing states of each lineage of ``rules.SCORED_WITHIN`` (myCAF and iCAF) scored again
    among the cells called that lineage, as ``mean_ctrl`` on those cells alone; the user's ``obsm["tmt_scores"]``
    keep the scores against all cells."""
    out = S
    for lin in rules.SCORED_WITHIN:
        cells = np.flatnonzero(lineage == lin)
        apart = rules.apart_from_lineage(lin)
        names = {sig for label, sigs in state_rules.get(lin, {}).items() if label not in apart for sig in sigs}
        names &= set(S.columns)  # those the run could score
        todo = [sig for sig in signatures if getattr(sig, "name", sig) in names]
        if cells.size < rules.MIN_CELLS_WITHIN or not todo:
            continue
        own = AnnData(get_matrix(adata, layer)[cells], var=pd.DataFrame(index=adata.var_names))
        with warnings.catch_warnings():  # the same genes as the scores of all cells, whose run warned already
            warnings.simplefilter("ignore", TmtWarning)
            score(own, todo, method="mean_ctrl", species=species)
        within = own.obsm[_keys.SCORES]
        out = out.copy() if out is S else out
        out.iloc[cells, out.columns.get_indexer(within.columns)] = within.to_numpy()
    return out


def _segmented_cells(adata: AnnData, samples: pd.Series, image_key: str | None):
    """Coordinates and images of segmented cells, between touching ones of which spill-over is read (transcripts or
    intensities), or ``(None, None)``: no finite ``obsm["spatial"]``, or spots (mixtures of cells, not segmented
    ones)."""
    from ._spatial_utils import image_groups, warn_overlapping_fields

    if "spatial" not in adata.obsm or is_spot_data(adata):
        return None, None
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    if not np.isfinite(xy).all():
        logger.info('obsm["spatial"] has NaN or infinite coordinates: transcripts of touching cells are read as '
                    "each cell's own")
        return None, None
    if image_key is None:
        warn_overlapping_fields(adata, samples)
    return xy, image_groups(adata, samples, image_key).to_numpy()


def _annotate_protein(adata, layer, *, markers, gates, groupby, spillover, sample_key, image_key, min_confidence,
                      override_confidence) -> None:
    """Protein-panel path of :func:`annotate`: read the panel, call it (:func:`.protein.call_protein`), write."""
    channels = prot.match_markers(adata.var_names, markers)
    defining = {m for groups in prot.LINEAGE_RULES.values() for m in groups[0]}
    if not defining & set(channels):
        msg = (f"no lineage marker recognised among the channels {list(adata.var_names)}; map them with "
               "markers={'CD8': ..., 'CD68': ..., 'tumor': ...}.")
        raise TmtInputError(msg)
    refuse_non_finite(adata, layer, "annotate this protein panel")
    X = dense_matrix(get_matrix(adata, layer))
    names = list(map(str, adata.var_names))
    if gates is not None and not isinstance(gates, (int, float)):
        gates = prot.channel_gates(gates, names, channels)
    # one number gates every channel; a mapping leaves the channels it does not name to fitted gates
    compensate = spillover > 0 and not isinstance(gates, (int, float)) and "spatial" in adata.obsm
    if compensate and (X < 0).any():  # spill-over adds intensities; transformed or z-scored values do not add
        logger.info("protein panel: intensities hold negative values (transformed or z-scored), so spill-over from "
                    "touching cells is not removed")
        compensate = False
    xy = images = None
    if compensate:
        if not np.isfinite(np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]).all():
            msg = 'obsm["spatial"] has NaN or infinite coordinates; fix them or pass spillover=0.'
            raise TmtInputError(msg)
        xy, images = _segmented_cells(adata, samples_of(adata, sample_key), image_key)
    groups = adata.obs[groupby].astype(str).where(adata.obs[groupby].notna()) if groupby is not None else None
    res = prot.call_protein(X, names, channels, adata.obs_names, gates=gates, spillover=spillover, xy=xy,
                            images=images, groups=groups, min_confidence=min_confidence,
                            override_confidence=override_confidence, min_probability=LINEAGE_MIN_PROBABILITY)
    learned = res.learned

    _write_calls(adata, res.lineage, res.state, res.confidence)
    # lineage names hold "/", which HDF5 and zarr keys cannot: "Monocyte/Macrophage" -> "Monocyte_Macrophage"
    adata.obsm[_keys.MARKER_EVIDENCE] = res.evidence.rename(columns=lambda c: str(c).replace("/", "_"))
    rule_tab = res.rules
    adata.uns[_keys.ANNOTATE] = {
        "params": {"layer": layer or "X", "groupby": groupby or "", "input_state": "protein",
                   "lineage_method": "classifier" if learned is not None and learned.probability is not None
                   else "markers",
                   "min_confidence": min_confidence, "override_confidence": override_confidence,
                   "gates": "given" if gates is not None else "mixture",
                   "spillover": spillover if compensate else 0.0, "sample_key": sample_key or "",
                   "image_key": image_key or ""},
        "rules": rule_tab,
        "gates": res.gates,
        "seeds": pd.DataFrame({"lineage": list(learned.n_seeds), "n_seeds": list(learned.n_seeds.values()),
                               "learned": [lab in learned.learned for lab in learned.n_seeds]})
        if learned is not None else pd.DataFrame(columns=["lineage", "n_seeds", "learned"]),
        "lineage_by_markers": sorted(set(learned.n_seeds) - set(learned.learned)) if learned is not None else [],
        "unassigned": res.unassigned,
    }
    if unassigned := unassigned_summary(res.unassigned):
        logger.info(unassigned)
    logger.info("protein panel: %d markers recognised (%s)", len(channels),
                ", ".join(f"{k}={v}" for k, v in channels.items()))
    skipped = rule_tab[~rule_tab["assessable"] & (rule_tab["level"] == "lineage")]
    if len(skipped):
        unread = [v for v in names if v not in channels.values() and not prot.is_stain(v)]
        warn("protein panel: not assessable: " + ", ".join(f"{r.label} ({r.reason})" for r in skipped.itertuples())
             + (f". Channels read as no marker: {', '.join(unread[:12])}{' ...' if len(unread) > 12 else ''}; map "
                "one that is a lineage marker with markers= (e.g. markers={'CD8': 'CD8_Cy5'})" if unread else ""))
    _set_colors(adata)


def mixed_evidence_summary(mixed: pd.DataFrame | None) -> str:
    """``"30% of cells carry strong evidence of two lineages (T + Fibroblast (5%), ...)"`` when the share of
    mixed cells exceeds ``MIXED_WARN``, else ``""``."""
    if mixed is None or not len(mixed) or mixed["fraction"].sum() <= MIXED_WARN:
        return ""
    top = ", ".join(f"{r.lineage_a} + {r.lineage_b} ({r.fraction:.0%})" for r in mixed.head(3).itertuples())
    return f"{mixed['fraction'].sum():.0%} of cells carry strong evidence of two lineages ({top})"


def unassigned_summary(table: pd.DataFrame | None) -> str:
    """``"3.3% of cells are unassigned (3.0% whose own markers speak against ..., 0.3% that no lineage claims
    ...)"`` from ``uns["tmt_annotate"]["unassigned"]``; ``""`` when no cell is."""
    if table is None or not len(table):
        return ""
    parts = ", ".join(f"{r.fraction:.1%} {r.reason}" for r in table.itertuples())
    return f"{table['fraction'].sum():.1%} of cells are unassigned ({parts})"


def pooled_split_message(adata: AnnData, sample_key: str | None, splits: pd.DataFrame) -> str:
    """What to do when populations were split off over all cells as one sample while ``obs`` has columns named like
    samples, else ``""``. A split is made within a sample: pooled, it separates samples or batches. The
    neutrophils of Zilionis' healthy mouse lungs hold more of the PMN-MDSC-like programme than those of its
    tumour-bearing lungs; pooled, two of eight random 99% subsamples split them by tissue (two peaks), about 140
    of 190 neutrophils PMN-MDSC-like, the healthy ones among them; within each animal (``sample_key="Animal"``)
    the neutrophils form one population and none is."""
    hint = one_sample_hint(adata, sample_key)
    if not hint or not len(splits) or not splits["applied"].any():
        return ""
    states = ", ".join(dict.fromkeys(splits.loc[splits["applied"].astype(bool), "state"]))
    return (f"{states} cells were split off over all cells as one sample, but a split is meant within a sample "
            f"(patients and batches shift a programme as a whole). {hint}")


def split_summary(splits: pd.DataFrame | None) -> str:
    """``"M-MDSC-like cells were split off in 3 of 12 samples; in the other 9 the monocytes formed one population
    (7) or were too few to tell (2)"`` per split-off state (MDSC-like, CD8 Tpex), so that a sample without them
    reads as what it is; of one sample, ``"M-MDSC-like cells were not split off: the monocytes formed one
    population"``."""
    if splits is None or not len(splits):
        return ""
    parts = []
    for (state, sibling), rows in splits.groupby(["state", "sibling"], sort=False):
        applied = rows["applied"].astype(bool)
        if applied.all():
            continue
        few = int(rows.loc[~applied, "too_few"].astype(bool).sum())
        missing = int((rows.loc[~applied, "reason"] == rules.GENES_MISSING).sum())
        cells = f"{sibling.lower()}s" if " " not in sibling else f"{sibling} cells"
        reasons = [(w, k) for w, k in ((f"the {cells} formed one population", int((~applied).sum()) - few - missing),
                                       (f"the {cells} were too few to tell", few),
                                       ("the panel lacks the genes to tell", missing)) if k]
        why = " or ".join(f"{w} ({k})" if len(reasons) > 1 else w for w, k in reasons)
        if len(rows) == 1:
            parts.append(f"{state} cells were not split off: {why}")
        elif not applied.any():
            parts.append(f"{state} cells were split off in none of {len(rows)} samples: {why}")
        else:
            parts.append(f"{state} cells were split off in {int(applied.sum())} of {len(rows)} samples; in the "
                         f"other {int((~applied).sum())} {why}")
    return "; ".join(parts)


def _write_calls(adata: AnnData, lineage: np.ndarray, state: np.ndarray, conf: np.ndarray) -> None:
    """Lineage and state as categoricals in vocabulary order (only the labels present), and the confidence."""
    present_lin, present_state = set(lineage), set(state)
    adata.obs[_keys.LINEAGE] = pd.Categorical(lineage, categories=[c for c in _keys.lineages() if c in present_lin])
    order = dict.fromkeys(s for lin in _keys.lineages() for s in (lin, *_keys.states().get(lin, ())))
    adata.obs[_keys.STATE] = pd.Categorical(state, categories=[c for c in order if c in present_state])
    adata.obs[_keys.CONFIDENCE] = conf.astype(float)


def _set_colors(adata: AnnData) -> None:
    lineage_colors, state_colors = _keys.label_colors(), _keys.state_label_colors()
    adata.uns[_keys.colors(_keys.LINEAGE)] = [lineage_colors[c] for c in adata.obs[_keys.LINEAGE].cat.categories]
    adata.uns[_keys.colors(_keys.STATE)] = [state_colors[c] for c in adata.obs[_keys.STATE].cat.categories]

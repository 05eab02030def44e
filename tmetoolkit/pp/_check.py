"""Input checks shared by every tool: what the matrix holds, which gene identifiers and species, and coverage."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._matrix import DEFAULT_CHUNK, get_matrix, iter_rows, row_block, row_sums
from .._utils import TmtEmptyCellsWarning, TmtInputError, TmtMatrixError, TmtRepeatedNamesWarning, logger, warn

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}")
_MOUSE_SYMBOL = re.compile(r"^[A-Z][a-z0-9]+[a-z0-9-]*$")
_HUMAN_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9-]*[A-Z0-9]$")
# Upper-cased mouse symbols (CD3E for Cd3e, as some pipelines leave them) are human symbols by their case. Names that
# exist in one species only still tell them apart: the mouse MHC (H2-K1, H2-AB1), predicted genes (GM12345) and
# RIKEN clones (1110008P14RIK), and the mouse symbols of the ortholog table with no human namesake (LY6C1, CD8B1);
# the human MHC (HLA-A, HLA-DRA) and the human symbols with no mouse namesake. Zilionis' mouse lungs hold 5,973
# mouse-only names against 22 human-only ones; Puram, Zilionis' human NSCLC and Racle's melanomas 18, 17 and 62
# against 339, 901 and 1,610 (outdated human symbols that are current mouse ones, as H3F3A).
_MOUSE_ONLY_NAME = re.compile(r"^(GM\d+|\d+[A-Z]\d+RIK|H2-[A-Z0-9-]+)$")
_HUMAN_ONLY_NAME = re.compile(r"^HLA-")
MIN_SPECIES_NAMES = 5  # species-only names needed to read upper-case symbols as mouse (a few can be outdated ones)
PROTEIN_MAX_FEATURES = 100
GENE_LIKE = 0.6  # share of names that are gene symbols, from which a small panel of whole numbers is RNA counts
MAX_LINEAR_CV = 0.1  # spread of per-cell totals (SD / mean) up to which non-integer values count as normalised
# a gene is centred when its mean lies within this many of its SDs of zero; z-scores, centred values and Pearson
# residuals have every gene centred by construction, log values (log-CPM, log2 intensities, log2(TPM + 0.001)) only
# the few whose level happens to sit at zero (1 of 872 genes in a urothelial log2 cohort, per-gene means -5 to 11)
CENTRED_SD = 0.2
# more genes centred than this: the values were centred per gene, not expression levels. Z-scores, centred log values
# and Pearson residuals have 0.986-1.000 of their genes centred (Puram, both Zilionis sets). Log values moved per
# batch towards the common gene means (the negatives of removeBatchEffect or ComBat) keep the global means, but a
# single-cell gene detected in fewer than 4% of the cells has its mean within 0.2 SD of zero anyway: 0.10, 0.59 and
# 0.76 of those sets' genes, which a cut at 0.5 refused as scaled instead of warning that they are corrected.
MAX_CENTRED_FRACTION = 0.9
# One gene's count in one cell: a mammalian cell holds about 1e5-1e6 mRNA molecules in all (Marinov 2014, doi:
# 10.1101/gr.161034.113), so a single entry above 1e7 is not a molecule count of one cell (warned); above 1e9 it
# exceeds the reads of a whole sequencing run, so no count matrix holds it (corrupt values or integer overflow: refused)
MIN_GENES_TRANSPOSED, GENE_LIKE_TRANSPOSED = 50, 0.2  # observations named like genes: a matrix read transposed
MAX_PLAUSIBLE_COUNT = 1e7
MAX_POSSIBLE_VALUE = 1e9
# Cell Ranger's raw (unfiltered) matrix lists every barcode with a read, mostly empty droplets holding a few ambient
# UMIs: a median barcode below this many counts, on a whole transcriptome and many barcodes, is warned about. Cells of
# droplet assays hold a median of 1,000 UMIs or more; imaging panels (hundreds of genes) hold fewer and are not
# concerned (Chen's MERFISH cells: a median of 64 counts on 479 genes).
UNFILTERED_MEDIAN_COUNTS, UNFILTERED_MIN_GENES, UNFILTERED_MIN_BARCODES = 20, 5000, 10_000
# A cell leaves most genes undetected, and on any log scale they share one value, the row's floor (0 for log1p,
# log2(eps) for log2(x + eps)): 95% of the entries of a Zilionis 2019 cell on log2(CPM + 0.1). Batch correction
# (ComBat) and regression give each such gene a value of its own, so hardly any entry sits at the floor (0.005% after
# ComBat by patient): below this share a matrix with negatives no longer says which genes a cell expresses.
MIN_FLOOR_SHARE = 0.01


@dataclass
class InputReport:
    """What :func:`tmetoolkit.pp.check_input` found.

    Attributes
    ----------
    state
        ``counts`` (non-negative integers, or non-integer values whose per-cell totals vary, as counts after
        ambient-RNA removal), ``lognorm`` (log-scale values, including log values with negatives such as voom
        log-CPM, microarray log2 intensities or log2(TPM + 0.001)), ``linear`` (normalised, not logged, e.g. TPM:
        one total per cell), ``scaled`` (centred per gene: z-scores, Pearson residuals), or ``protein``
        (intensities of a small marker panel, raw, transformed or z-scored).
    detail
        What the state was read from, in words (e.g. the per-gene means and SDs behind ``scaled`` or behind log
        values with negatives).
    gene_id
        ``symbol`` or ``ensembl``.
    species
        ``human`` or ``mouse`` (from Ensembl prefixes, the symbols' letter case, or, for upper-case symbols, the
        names that exist in one species only).
    species_basis, species_reason
        How the species was decided (``given``, ``ensembl``, ``letter case``, ``species-only names``) and, in
        words, from what.
    n_empty_cells
        Cells whose expression is all zero.
    n_implausible, n_impossible
        Entries above ``MAX_PLAUSIBLE_COUNT`` (more than a cell's mRNA: warned, for counts and linear values) and
        above ``MAX_POSSIBLE_VALUE`` (more than a sequencing run's reads: refused, whatever the state).
    duplicated_var_names
        ``var_names`` that occur more than once.
    problems
        Human-readable problems; a tool refuses input whose problems are fatal.
    coverage
        Per signature: genes in the signature, genes found, fraction found, and whether ``min_genes`` is reached.
    """

    state: str
    gene_id: str
    species: str
    n_obs: int
    n_vars: int
    n_empty_cells: int = 0
    detail: str = ""
    target_sum: float | None = None
    problems: list[str] = field(default_factory=list)
    coverage: pd.DataFrame | None = None
    empty_mask: np.ndarray | None = field(default=None, repr=False)
    n_implausible: int = 0
    n_impossible: int = 0
    duplicated_var_names: list[str] = field(default_factory=list)
    species_basis: str = ""
    species_reason: str = ""

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("coverage", "empty_mask")}

    def __repr__(self) -> str:
        lines = [
            f"InputReport: {self.n_obs} obs x {self.n_vars} vars",
            f"    state: {self.state}; gene ids: {self.gene_id}; species: {self.species}",
            *([f"    species from: {self.species_reason}"] if self.species_reason else []),
            *([f"    seen: {self.detail}"] if self.detail else []),
            f"    empty cells: {self.n_empty_cells}",
        ]
        if self.n_implausible:
            lines.append(f"    entries above {MAX_PLAUSIBLE_COUNT:.0e}: {self.n_implausible:,}")
        if self.duplicated_var_names:
            lines.append(f"    duplicated var_names: {len(self.duplicated_var_names)}")
        if self.coverage is not None:
            ok = int(self.coverage["scorable"].sum())
            lines.append(f"    signatures scorable: {ok} of {len(self.coverage)}")
        lines += [f"    problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _sample_rows(X, n: int = 2000):
    """A deterministic sample of rows spread over the matrix (contiguous blocks, cheap for backed data)."""
    n_obs = X.shape[0]
    if n_obs <= n:
        return row_block(X, 0, n_obs)
    starts = np.linspace(0, n_obs - 200, n // 200).astype(int)
    blocks = [row_block(X, s, s + 200) for s in starts]
    return sp.vstack(blocks).tocsr() if sp.issparse(blocks[0]) else np.vstack(blocks)


def _values(block) -> np.ndarray:
    return block.data if sp.issparse(block) else np.asarray(block).ravel()


@dataclass(frozen=True)
class SpeciesCall:
    """The species of a set of gene names, how it was decided (``basis``) and from what (``reason``)."""

    species: str
    basis: str
    reason: str


def detect_gene_id(var_names: pd.Index) -> tuple[str, str]:
    """``(gene_id, species)`` guessed from ``var_names``."""
    gene_id, call = detect_species(var_names)
    return gene_id, call.species


def detect_species(var_names: pd.Index) -> tuple[str, SpeciesCall]:
    """``(gene_id, SpeciesCall)`` read from ``var_names``: Ensembl prefixes, else known symbols in their letter
    case, else (upper-case symbols) the names that exist in one species only (:func:`_species_only_names`)."""
    names = pd.Index(var_names).astype(str)
    ens = names.str.match(_ENSEMBL)
    if ens.mean() > 0.5:
        mouse = names[ens].str.startswith("ENSMUSG").mean() > 0.5
        return "ensembl", SpeciesCall("mouse" if mouse else "human", "ensembl",
                                      f"Ensembl IDs {'ENSMUSG' if mouse else 'ENSG'}...")
    from ..sig._genes import orthologs

    # known symbols first (panels pad with control probes, simulators with made-up names); case only as a fallback
    tab = orthologs()
    human, mouse = int(names.isin(tab["human"]).sum()), int(names.isin(tab["mouse"]).sum())
    if human == mouse == 0:
        mouse = int(names.str.match(_MOUSE_SYMBOL).sum())
        human = int(names.str.match(_HUMAN_SYMBOL).sum())
        species = "mouse" if mouse > human else "human"
        return "symbol", SpeciesCall(species, "letter case", f"no known symbol; {mouse:,} names cased as mouse "
                                     f"symbols (Cd3e), {human:,} as human ones (CD3E)")
    if mouse > human:
        return "symbol", SpeciesCall("mouse", "letter case", f"{mouse:,} mouse symbols as cased (Cd3e) against "
                                     f"{human:,} human ones")
    return "symbol", _species_only_names(names, human)


def _species_only_names(names: pd.Index, n_human: int) -> SpeciesCall:
    """Human or mouse for symbols whose case reads human: mouse when the names that exist only as (upper-cased)
    mouse genes outnumber those that exist only as human genes, and are at least ``MIN_SPECIES_NAMES``."""
    from ..sig._genes import orthologs

    tab = orthologs()
    human_set, mouse_upper = set(tab["human"]), set(tab["mouse"].str.upper())
    mouse_only = names[names.str.match(_MOUSE_ONLY_NAME) | (names.isin(mouse_upper - human_set))]
    human_only = names[names.str.match(_HUMAN_ONLY_NAME) | (names.isin(human_set - mouse_upper))]
    seen = (f"{len(mouse_only):,} names exist only as mouse genes (e.g. {', '.join(mouse_only[:3]) or 'none'}) "
            f"against {len(human_only):,} only as human genes (e.g. {', '.join(human_only[:3]) or 'none'})")
    if len(mouse_only) >= MIN_SPECIES_NAMES and len(mouse_only) > len(human_only):
        return SpeciesCall("mouse", "species-only names", f"upper-case symbols, whose case cannot tell mouse from "
                           f"human, read as mouse: {seen}")
    return SpeciesCall("human", "letter case", f"{n_human:,} human symbols as cased; {seen}")


def _symbol_column(var: pd.DataFrame) -> str | None:
    """The ``var`` column that holds gene symbols (most known human or mouse symbols), or ``None``."""
    from ..sig._genes import orthologs

    tab = orthologs()
    known = set(tab["human"]) | set(tab["mouse"])
    best, hits = None, 0
    for col in var.columns:
        if var[col].dtype.kind not in "OUS" and not isinstance(var[col].dtype, pd.CategoricalDtype):
            continue
        n = int(var[col].astype(str).isin(known).sum())
        if n > hits:
            best, hits = str(col), n
    return best if hits >= max(10, 0.1 * len(var)) else None


def _gene_moments(sample) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene means and SDs over the sampled rows (sparse or dense)."""
    if sp.issparse(sample):
        mean = np.asarray(sample.mean(axis=0)).ravel()
        sq = np.asarray(sample.multiply(sample).mean(axis=0)).ravel()
        return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))
    X = np.asarray(sample, dtype=np.float64)
    return X.mean(axis=0), X.std(axis=0)


def _negative_state(sample) -> tuple[str, str]:
    """``scaled`` or ``lognorm`` for values with negatives, from the per-gene means and SDs together.

    Values centred per gene (z-scores, centred log values, Pearson residuals) have nearly every gene's mean at zero;
    log values with negatives have their genes spread over the log scale, a few of them near zero.
    """
    if sample.shape[0] < 2:
        return "lognorm", ("one observation with negative values: per-gene means and SDs cannot be told apart from "
                           "z-scores, taken as log values")
    mean, sd = _gene_moments(sample)
    varies = sd > 0
    if not varies.any():
        return "lognorm", "negative values that do not vary between observations: taken as log values"
    m, s = mean[varies], sd[varies]
    centred = float(np.mean(np.abs(m) <= CENTRED_SD * s))
    near_one = float(np.mean(np.abs(s - 1.0) <= 0.25))
    seen = (f"per-gene means {np.percentile(m, 1):.2g} to {np.percentile(m, 99):.2g} (1st-99th percentile), "
            f"{centred:.0%} of genes centred (|mean| <= {CENTRED_SD} SD), median SD {np.median(s):.2g}")
    if centred > MAX_CENTRED_FRACTION:
        kind = "z-scored (means near 0, SDs near 1)" if near_one > 0.5 else "centred per gene (means near 0)"
        return "scaled", f"{kind}: {seen}"
    return "lognorm", f"log values with negatives: {seen}"


def _gene_like(var_names) -> bool:
    """Most names are gene symbols (a targeted RNA panel), not antibody targets ("CD8", "PanCK", "FoxP3 (Opal 570)"):
    symbols are 95% of Chen's MERFISH panel and 67% of the Xenium panel, 0-30% of the phenoptr, scimap and Schürch
    protein panels."""
    from ..sig._genes import orthologs

    tab = orthologs()
    known = set(tab["human"]) | set(tab["mouse"].str.upper())
    names = pd.Index(var_names).astype(str).str.upper()
    return bool(len(names)) and float(names.isin(known).mean()) >= GENE_LIKE


def _detect_state(sample, n_vars: int, var_names=None) -> tuple[str, str]:
    """The input state of the sampled rows and, in words, what it was read from."""
    vals = _values(sample)
    vals = vals[vals != 0]
    if vals.size == 0:
        return "counts", "all values zero"
    integer = bool(np.all(np.abs(vals - np.round(vals)) < 1e-6))
    if vals.min() < 0:  # a marker panel may come arcsinh-transformed and z-scored per channel
        if n_vars <= PROTEIN_MAX_FEATURES:
            return "protein", f"{n_vars} features with negative values: marker intensities"
        if integer and vals.max() >= 50:  # no log scale reaches 50; integers that do are counts, wrongly negative
            return "counts", f"integers up to {vals.max():.3g} with {int((vals < 0).sum()):,} negative entries"
        return _negative_state(sample)
    if integer and n_vars <= PROTEIN_MAX_FEATURES and var_names is not None and not _gene_like(var_names):
        return "protein", f"{n_vars} features named as markers, not genes: marker intensities (whole numbers)"
    if integer:
        return "counts", "non-negative integers"
    if n_vars <= PROTEIN_MAX_FEATURES:
        return "protein", f"{n_vars} features: marker intensities"
    if vals.max() < 50:
        return "lognorm", f"non-negative values below 50 (maximum {vals.max():.3g}): log scale"
    # normalised linear values (CPM, TPM, normalize_total) share one total per cell; counts that are not integers
    # (after ambient-RNA removal, or expected counts) do not, and still need normalising to library size
    sums = np.asarray(sample.sum(axis=1)).ravel()
    sums = sums[sums > 0]
    cv = float(sums.std() / sums.mean()) if sums.size else 0.0
    if sums.size and cv <= MAX_LINEAR_CV:
        return "linear", f"non-integer values up to {vals.max():.3g} with one total per observation (CV {cv:.2g})"
    return "counts", f"non-integer values whose totals vary between observations (CV {cv:.2g}): counts"


def input_error(report: InputReport, msg: str) -> TmtInputError:
    """The error for input ``report`` refuses: a :class:`TmtMatrixError` when the values read are scaled, not
    expression (another layer or ``adata.raw`` may hold the values from before scaling)."""
    return TmtMatrixError(msg) if report.state == "scaled" else TmtInputError(msg)


# reports kept while a pipeline run is active (reuse_reports): the run never changes the matrix between its steps
_RUN_REPORTS: contextvars.ContextVar[list | None] = contextvars.ContextVar("run_reports", default=None)


@contextlib.contextmanager
def reuse_reports():
    """Within the block, :func:`inspect` reads each matrix once: a later call on the same matrix object (and the
    same genes, ``full_scan`` and ``species``) gets a copy of the first report. For a run of the pipeline."""
    token = _RUN_REPORTS.set([])
    try:
        yield
    finally:
        _RUN_REPORTS.reset(token)


def floor_share(X, n_rows: int = 500) -> float:
    """Median share, over the first ``n_rows`` rows of ``X``, of the entries at their row's minimum (the level of
    the genes a cell does not express); 1.0 for a matrix without negative values."""
    block = row_block(X, 0, min(n_rows, X.shape[0]))
    block = block.toarray() if sp.issparse(block) else np.asarray(block, dtype=np.float64)
    if not block.size or block.min() >= 0:
        return 1.0
    low = block.min(axis=1, keepdims=True)
    return float(np.median((block <= low + 1e-6 * np.maximum(1.0, np.abs(low))).mean(axis=1)))


def corrected_values_message(adata: AnnData, layer: str | None) -> str | None:
    """What to do when the log values hold negatives but no common level for undetected genes (``floor_share``
    below ``MIN_FLOOR_SHARE``: batch-corrected or regressed values), else ``None``."""
    share = floor_share(get_matrix(adata, layer))
    if share >= MIN_FLOOR_SHARE:
        return None
    where = "layer= naming a layer of counts or log-normalised values"
    if adata.raw is not None and layer is None:
        where = "adata.raw.to_adata() (if it holds the log-normalised values from before the correction), or " + where
    return (f"the values hold negatives and no common level for the genes a cell does not express ({share:.2%} of a "
            "cell's entries at its minimum, against most of them on any log scale), as after ComBat, regress_out or "
            f"another correction, which blurs which genes each cell expresses. Use uncorrected values: {where}.")


def inspect(adata: AnnData, layer: str | None = None, *, full_scan: bool = True, chunk_size: int = DEFAULT_CHUNK,
            species: str | None = None) -> InputReport:
    """Look at the matrix once and return an :class:`InputReport` (no coverage); ``species`` overrides detection."""
    X = get_matrix(adata, layer)
    kept = _RUN_REPORTS.get()
    if kept is not None:
        for matrix, var_names, args, report in kept:
            if matrix is X and var_names is adata.var_names and args == (layer, full_scan, species):
                return copy.deepcopy(report)
    report = _inspect(adata, X, layer, full_scan=full_scan, chunk_size=chunk_size, species=species)
    if kept is not None:
        kept.append((X, adata.var_names, (layer, full_scan, species), copy.deepcopy(report)))
    return report


def _inspect(adata: AnnData, X, layer: str | None, *, full_scan: bool, chunk_size: int,
             species: str | None) -> InputReport:
    gene_id, detected = detect_species(adata.var_names)
    call = detected if species is None else SpeciesCall(species, "given", f"species={species!r} given")
    species = call.species
    state, detail = _detect_state(_sample_rows(X), adata.n_vars, adata.var_names)
    problems: list[str] = []
    n_empty = 0
    libs = []
    empty_parts: list[np.ndarray] = []
    n_non_finite = 0
    big = np.zeros(2, dtype=np.int64)  # entries above MAX_PLAUSIBLE_COUNT and above MAX_POSSIBLE_VALUE
    negative = False
    if full_scan and sp.issparse(X) and not isinstance(X, np.ndarray) and hasattr(X, "data"):
        step = 10_000_000
        n_non_finite = count_non_finite(X)
        for i in range(0, X.data.size, step):
            big += _count_large(X.data[i : i + step])
        negative = bool(X.data.size > 0 and X.data.min() < 0)
        sums = row_sums(abs(X)) if negative else row_sums(X)
        empty_parts.append(sums == 0)
        n_empty = int((sums == 0).sum())
        if state == "counts":
            libs.append(sums)
    elif full_scan:
        for _, _, block in iter_rows(X, chunk_size):
            v = _values(block)
            n_non_finite += _n_non_finite(v)
            negative |= bool(v.size and np.nanmin(v) < 0)
            big += _count_large(v)
            s = row_sums(np.abs(block) if not sp.issparse(block) else abs(block))
            empty_parts.append(s == 0)
            n_empty += int((s == 0).sum())
            if state == "counts":
                libs.append(row_sums(block))
    if n_non_finite:
        problems.append(non_finite_problem(n_non_finite, layer))
    problems += _implausible_problems(X, state, adata.n_obs, adata.n_vars, n_empty, big, full_scan)
    if state == "counts" and negative:
        problems.append("the values are counts (integers) but some are negative, which no count is: integer "
                        "overflow or a subtraction gone wrong; fix or remove the negative entries.")
    if state == "scaled":
        hint = "pass layer= naming a layer of counts or log-normalised values"
        if adata.raw is not None and layer is None and adata.raw.n_vars > adata.n_vars:
            hint = scaled_subset_hint(adata.n_vars, adata.raw.n_vars)
        elif adata.raw is not None and layer is None:
            hint += (", e.g. from adata.raw: adata.layers['log'] = adata.raw[:, adata.var_names].X, then "
                     "layer='log' (or run on adata.raw.to_adata(), which keeps all of raw's genes)")
        problems.append(
            f"the values look scaled, centred per gene ({detail}), so they are not expression levels: scores need "
            f"counts, log values or TPM. Use the values from before scaling: {hint}."
        )
    if gene_id == "ensembl":
        column = _symbol_column(adata.var)
        problems.append(
            "var_names are Ensembl IDs; signatures use gene symbols. Set symbols as var_names: "
            f"adata.var_names = adata.var[{column or 'gene_symbols'!r}].astype(str), then "
            "adata.var_names_make_unique()" + ("." if column else " (name the var column that holds symbols).")
        )
    other = other_modalities(adata.var)
    if other:
        problems.append(
            f"var['feature_types'] mixes gene expression with {other}: they count in every cell's library and "
            "ranks. Keep the genes: adata = adata[:, adata.var['feature_types'] == 'Gene Expression'].copy() (an "
            "antibody panel alone is read as protein)."
        )
    target = None
    if libs:
        lib = np.concatenate(libs)
        lib = lib[lib > 0]
        target = float(np.median(lib)) if lib.size else 1.0
    return InputReport(
        state=state, gene_id=gene_id, species=species, n_obs=adata.n_obs, n_vars=adata.n_vars,
        n_empty_cells=n_empty, detail=detail, target_sum=target, problems=problems,
        empty_mask=np.concatenate(empty_parts) if empty_parts else None,
        n_implausible=int(big[0]) if state in ("counts", "linear") else 0, n_impossible=int(big[1]),
        duplicated_var_names=sorted(set(adata.var_names[adata.var_names.duplicated()].astype(str))),
        species_basis=call.basis, species_reason=call.reason,
    )


# Cell Ranger's feature types measured beside the genes (CITE-seq, multiome, CRISPR screens, cell hashing); the
# control probes of imaging panels (Xenium's "Negative Control Probe", ...) are left out of the scores by name
OTHER_MODALITIES = ("Antibody Capture", "Peaks", "CRISPR Guide Capture", "Multiplexing Capture")


def other_modalities(var: pd.DataFrame) -> str:
    """The features of ``var["feature_types"]`` of another modality than the genes beside them (``"Antibody
    Capture features (17)"``), or ``""``."""
    if "feature_types" not in var:
        return ""
    types = var["feature_types"].astype(str).value_counts()
    other = types[types.index.isin(OTHER_MODALITIES)]
    if other.empty or "Gene Expression" not in types.index:
        return ""
    return ", ".join(f"{k} features ({v:,})" for k, v in other.items())


def scaled_subset_hint(n_vars: int, n_raw: int) -> str:
    """The fix for z-scores in ``X`` on a gene subset (highly variable genes) of ``adata.raw``: the tools on raw's
    genes; a layer of ``X``'s genes only would leave the signature genes outside the subset unread."""
    return (f"adata.raw holds {n_raw:,} genes and X only {n_vars:,}, so run the tools on r = adata.raw.to_adata() "
            "(all genes, with obs and obsm: clusters and UMAP come along; tmt.tl.score also takes use_raw=True, the "
            "command line --use-raw). A layer of X's genes (adata.layers['log'] = adata.raw[:, adata.var_names].X, "
            "layer='log') misses the signature genes that are not among them")


def _n_non_finite(values: np.ndarray) -> int:
    """How many of ``values`` are NaN or infinite (none for an integer type)."""
    return int(values.size - np.isfinite(values).sum()) if values.dtype.kind in "fc" else 0


def count_non_finite(X, chunk_size: int = DEFAULT_CHUNK) -> int:
    """Stored entries of ``X`` (in memory, backed or dask) that are NaN or infinite, read in chunks."""
    if sp.issparse(X) and hasattr(X, "data"):
        step = 10_000_000
        return sum(_n_non_finite(X.data[i : i + step]) for i in range(0, X.data.size, step))
    return sum(_n_non_finite(_values(block)) for _, _, block in iter_rows(X, chunk_size))


def non_finite_problem(n: int, layer: str | None) -> str:
    """What to do about ``n`` NaN or infinite entries of ``X`` (or ``layer``)."""
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    return (f"{where} holds {n:,} NaN or infinite values (a division by zero, a log of zero?), which no expression "
            "level is; find where they came from and remove or impute them, or pass layer= naming a layer "
            "without them.")


def refuse_non_finite(adata: AnnData, layer: str | None, doing: str) -> None:
    """Raise :class:`TmtInputError` (``"cannot <doing>: ..."``) when ``X`` (or ``layer``) holds NaN or infinite
    values. Every tool that reads expression values calls it (or :func:`inspect` with a full scan) before reading
    them: values can go bad after an earlier tool ran, whose stored results would otherwise hide them. Within a
    pipeline run (:func:`reuse_reports`) a matrix the run has scanned in full is not read again."""
    X = get_matrix(adata, layer)
    kept = _RUN_REPORTS.get()
    if kept is not None and any(matrix is X and args[1] and not report.problems for matrix, _, args, report in kept):
        return
    n = count_non_finite(X)
    if n:
        raise TmtInputError(f"cannot {doing}: {non_finite_problem(n, layer)}")


def _count_large(values: np.ndarray) -> np.ndarray:
    """How many finite values exceed ``MAX_PLAUSIBLE_COUNT`` and ``MAX_POSSIBLE_VALUE``."""
    v = np.abs(values[np.isfinite(values)]) if values.dtype.kind == "f" else np.abs(values)
    return np.array([(v > MAX_PLAUSIBLE_COUNT).sum(), (v > MAX_POSSIBLE_VALUE).sum()], dtype=np.int64)


def _implausible_problems(X, state: str, n_obs: int, n_vars: int, n_empty: int, big: np.ndarray,
                          full_scan: bool) -> list[str]:
    """Input no tool can analyse: no cells, no expression at all, a single feature, impossible values."""
    problems = []
    if n_obs == 0:
        problems.append("the data hold no observations (0 cells); check the file or the subset that made it.")
        return problems
    if n_vars < 2:
        problems.append(f"the data hold {n_vars} feature{'s' if n_vars != 1 else ''}; cell types, states and "
                        "programmes need a panel of genes or markers (at least two; signatures need several).")
    if full_scan and n_empty == n_obs:
        problems.append("every value of the matrix is zero, so there is no expression to analyse; check that X (or "
                        "the layer) holds the data.")
    if big[1]:
        problems.append(f"{int(big[1]):,} entries exceed {MAX_POSSIBLE_VALUE:.0e} (corrupt values or integer "
                        "overflow); no expression matrix holds such values: fix or remove them.")
    elif state == "scaled" and X.dtype.kind == "i":
        problems.append("the matrix has an integer type and negative values: integer overflow? Counts are never "
                        "negative; store them as a wider integer type (int64) or float.")
    return problems


def coverage(var_names: pd.Index, sigs, species: str, *, return_matches: bool = False):
    """Per-signature gene coverage against ``var_names`` (and, optionally, the matched columns per signature).

    A signature is scorable when ``min_genes`` of its genes are found, one of its up genes among them: its down
    genes alone would score their own level as the programme's (on Puram's 2,000 most variable genes the monocyte
    state's own set kept none of its up genes, VCAN and FCN1, but both C1QA and C1QB, which monocytes lack, and
    called the macrophages monocytes).
    """
    from ..sig._genes import GeneIndex

    index = GeneIndex(var_names, species)
    rows, matches = [], {}
    for s in sigs:
        found = matches[s.name] = index.match(s.genes)
        missing = [g for g in s.genes if g not in found]
        up_found = any(g in found for g in s.genes_up)
        rows.append(
            {
                "signature": s.name,
                "version": s.version,
                "n_genes": len(s.genes),
                "n_found": len(found),
                "fraction_found": len(found) / max(len(s.genes), 1),
                "min_genes": s.min_genes,
                "scorable": len(found) >= s.min_genes and up_found,
                "genes_used": ",".join(g for g in s.genes if g in found),
                "genes_missing": ",".join(missing),
            }
        )
    table = pd.DataFrame(rows)
    return (table, matches) if return_matches else table


def check_input(adata: AnnData, layer: str | None = None, *, signatures="all", use_raw: bool = False) -> InputReport:
    """Report what the expression matrix holds before any tool uses it.

    Tells raw counts from log-normalised, linear (TPM/CPM), scaled and protein-intensity data; gene symbols from
    Ensembl IDs; human from mouse; counts empty cells and NaN/inf values; and measures how many genes of each
    signature are present. Refuses (in ``problems``) data without observations, without any expression, with a
    single feature, with entries above 1e9 (no count matrix holds them: corrupt values or integer overflow), or
    with genes beside another modality's features (``var["feature_types"]``: antibody capture, ATAC peaks, CRISPR
    guides, hashtags, as Cell Ranger's files hold them when read with every feature);
    warns, with the number of entries, about counts above 1e7 (more than a whole cell's mRNA), about duplicated
    ``var_names``, about a raw (unfiltered) droplet matrix of mostly empty barcodes, and when ``X`` holds a gene
    subset of ``adata.raw`` that leaves signature genes out. Nothing is written into ``adata``.

    Negative values alone do not make data scaled: log values with negatives (voom log-CPM, microarray log2
    intensities, log2(TPM + 0.001)) are ``lognorm``. Values count as ``scaled`` when they were centred per gene:
    more than half of the genes have a mean within 0.2 of their SD of zero (z-scores and Pearson residuals have
    all of them there; log values only the few whose level happens to sit at zero). ``detail`` says what was seen.

    Parameters
    ----------
    adata
        Annotated data matrix (cells or samples x genes or markers).
    layer
        Layer to check instead of ``adata.X``.
    signatures
        Signatures whose coverage to report (anything :func:`tmetoolkit.tl.score` accepts).
    use_raw
        Check ``adata.raw`` (all genes, e.g. when ``X`` holds highly variable genes only) instead of ``X``.

    Returns
    -------
    An :class:`InputReport`; its ``problems`` list what every tool would refuse.

    Examples
    --------
    >>> import tmetoolkit as tmt
    >>> adata = tmt.datasets.simulate(n_samples=2, n_cells=300, seed=0)
    >>> tmt.pp.check_input(adata).state
    'counts'
    """
    from .._matrix import raw_adata
    from ..sig import as_signatures

    if use_raw:
        if layer is not None:
            msg = "use_raw=True reads adata.raw; leave out layer= (or use_raw=False to read the layer)."
            raise TmtInputError(msg)
        adata = raw_adata(adata)
    report = inspect(adata, layer)
    sigs = as_signatures(signatures)
    report.coverage = coverage(adata.var_names, sigs, report.species)
    _warn_implausible(report)
    if not use_raw and layer is None:
        hint_raw(adata, sigs, report.coverage, report.species)
    if sigs and report.state != "protein" and report.gene_id == "symbol" and not report.coverage["scorable"].any():
        report.problems.append(no_signature_scorable(adata.var_names, len(sigs), report, adata.obs_names,
                                                     raw_n_vars=None if adata.raw is None else adata.raw.n_vars))
    low = report.coverage.loc[~report.coverage["scorable"], "signature"].tolist()
    if low and report.state != "protein":  # a protein panel is read through its marker gates, not signatures
        shown = ", ".join(low[:10]) + (", ..." if len(low) > 10 else "")
        logger.info("%d of %d signatures lack their minimum genes here: %s", len(low), len(sigs), shown)
    if report.n_empty_cells:
        warn(f"{report.n_empty_cells} cells have no expression at all; their scores will be NaN.",
             category=TmtEmptyCellsWarning)
    return report


def no_signature_scorable(var_names, n_signatures: int, report: InputReport, obs_names=None, *,
                          cov: pd.DataFrame | None = None, raw_n_vars: int | None = None) -> str:
    """Why no signature can be scored on ``var_names``, and the likely fix (symbols in the wrong letter case, genes
    as observations, or a file of selected genes that holds some of the signatures' genes, not enough)."""
    cov = report.coverage if cov is None else cov
    case = lower_case_hint(var_names) or genome_prefix_hint(var_names)
    if not case and cov is not None and len(cov) and int(cov["n_found"].sum()) > 0:
        shown = cov.sort_values("n_found", ascending=False, kind="stable").head(5)
        detail = ", ".join(f"{r.signature} ({r.n_found}/{r.n_genes}, needs {r.min_genes}"
                           + (")" if r.n_found < r.min_genes else " with an up gene)") for r in shown.itertuples())
        msg = (f"none of the {n_signatures} signatures has its minimum genes in var_names: {detail}"
               f"{', ...' if len(cov) > len(shown) else ''}. A file of selected (highly variable) genes lacks them: "
               "score the full gene matrix")
        if raw_n_vars is not None and raw_n_vars > len(var_names):
            msg += f" (adata.raw holds {raw_n_vars:,} genes: use_raw=True)"
        return msg + "." + transposed_hint(obs_names, var_names)
    msg = (f"none of the {n_signatures} signatures has its minimum genes in var_names (detected {report.gene_id}s, "
           f"{report.species}). Check that var_names hold gene symbols of the right species.")
    return msg + case + transposed_hint(obs_names, var_names)


def lower_case_hint(var_names) -> str:
    """A sentence naming the fix when ``var_names`` are gene symbols in lower case (``cd8a``), else ``""``."""
    from ..sig._genes import orthologs

    names = pd.Index(var_names).astype(str)
    if names.str.islower().mean() > 0.5 and names.str.upper().isin(orthologs()["human"]).mean() > 0.1:
        return (" They look lower-case (e.g. " + repr(names[0]) + "): use adata.var_names = "
                "adata.var_names.str.upper() for human genes, .str.capitalize() for mouse genes.")
    return ""


def genome_prefix_hint(var_names) -> str:
    """A sentence naming the fix when most ``var_names`` are gene symbols behind a genome prefix, as Cell Ranger
    names the genes of a combined reference (``GRCh38_CD3D`` and ``mm10___Cd3e`` in a xenograft), else ``""``."""
    from ..sig._genes import orthologs

    names = pd.Index(var_names).astype(str)
    parts = names.str.extract(r"^([A-Za-z][A-Za-z0-9.]*?_+)(.+)$")
    tab = orthologs()
    known = parts[1].str.upper().isin(set(tab["human"]) | set(tab["mouse"].str.upper()))
    if parts[0].notna().mean() <= 0.5 or known.mean() < 0.1:
        return ""
    prefixes = parts.loc[known, 0].value_counts()
    first = prefixes.index[0]
    return (f" They carry a genome prefix ({', '.join(map(repr, prefixes.index[:3]))}, as Cell Ranger names the genes "
            f"of a combined reference): keep one genome's genes and strip it, e.g. a = adata[:, adata.var_names."
            f"str.startswith({first!r})].copy(); a.var_names = a.var_names.str.removeprefix({first!r}).")


def transposed_hint(obs_names, var_names) -> str:
    """A sentence naming ``adata.T`` when the observations, not the features, are named like genes (a genes x
    samples table read the other way round; a fifth of a transcriptome's names are known symbols even with its
    non-coding genes, Racle's 0.34), else ``""``."""
    from ..sig._genes import orthologs

    if obs_names is None or len(obs_names) < MIN_GENES_TRANSPOSED:
        return ""
    symbols = orthologs()["human"]
    share = {k: pd.Index(v).astype(str).str.upper().isin(symbols).mean() for k, v in (("obs", obs_names),
                                                                                      ("var", var_names))}
    if share["obs"] < GENE_LIKE_TRANSPOSED or share["var"] >= share["obs"]:
        return ""
    return (f" The observations are named like genes ({', '.join(map(repr, list(obs_names[:3])))}, ...): the matrix "
            "looks transposed, genes x samples; use adata = adata.T.")


def _warn_implausible(report: InputReport) -> None:
    """Warnings, with counts, about values and names that are legal but unlikely to be what the user meant."""
    if report.n_implausible and not report.n_impossible:  # impossible values are a problem already
        warn(f"{report.n_implausible:,} entries ({report.n_implausible / max(report.n_obs * report.n_vars, 1):.2%}) "
             f"exceed {MAX_PLAUSIBLE_COUNT:.0e}, more than a whole cell's mRNA: corrupt values, or data that are not "
             "counts of single cells (with bulk samples: --bulk / bulk=True).")
    if (report.state == "counts" and report.target_sum is not None and report.target_sum < UNFILTERED_MEDIAN_COUNTS
            and report.n_vars >= UNFILTERED_MIN_GENES and report.n_obs >= UNFILTERED_MIN_BARCODES):
        warn(f"the median barcode holds {report.target_sum:g} counts on {report.n_vars:,} genes: this looks like a "
             f"raw (unfiltered) droplet matrix, whose {report.n_obs:,} barcodes are mostly empty droplets. Read the "
             "filtered matrix (filtered_feature_bc_matrix.h5), or keep the cells, e.g. sc.pp.filter_cells(adata, "
             "min_counts=500).")
    warn_duplicated(report)


def warn_duplicated(report: InputReport) -> None:
    """Warn about var_names that occur more than once: which column is the gene cannot be known."""
    dup = report.duplicated_var_names
    if dup:
        warn(f"{len(dup)} var_names occur more than once ({', '.join(dup[:5])}{' ...' if len(dup) > 5 else ''}): "
             "a signature gene with several columns is scored from their mean, and annotate reads one of them. If "
             "the copies are one gene, sum them; else adata.var_names_make_unique() names them apart.",
             category=TmtRepeatedNamesWarning)


def _genes_used(cov: pd.DataFrame) -> set[str]:
    """The genes a :func:`coverage` table found, over all its signatures."""
    return {g for used in cov["genes_used"] for g in str(used).split(",") if g}


def hint_raw(adata: AnnData, sigs, cov: pd.DataFrame, species: str) -> None:
    """Warn when ``X`` holds a gene subset (highly variable genes) of ``adata.raw`` that misses signature genes."""
    if adata.raw is None or adata.raw.n_vars < 1.5 * adata.n_vars:
        return
    raw_cov = coverage(adata.raw.var_names, sigs, species)
    gained = len(_genes_used(raw_cov) - _genes_used(cov))  # genes, each once, not once per signature holding it
    if gained > 0:
        warn(f"X holds {adata.n_vars:,} of the {adata.raw.n_vars:,} genes in adata.raw (highly variable genes?): "
             f"{gained} signature genes are in raw only, and the tools read X. To read raw: use_raw=True "
             "(tmt.pp.check_input, tmt.tl.score), --use-raw on the command line, or run the tools on "
             "r = adata.raw.to_adata() and copy the tmt_ keys back.")

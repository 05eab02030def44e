"""Lineage and state calls from protein panels (multiplex IF, IMC, MIBI, CyCIF): gate each marker, then decide.

Each marker is gated on its log intensity: a two-component Gaussian mixture separates negative from positive cells
(or the user gives the gate); where the log scale shows one skewed population, on arcsinh(x / median) instead
(:func:`gating_fit`). With coordinates, the signal a cell picks up from touching cells is removed first
(:func:`compensate_spillover`). A cell's evidence for a marker is its distance above the gate in standard
deviations of the negative population. A label needs every one of its marker groups (any marker of a group will
do; groups absent from the panel are skipped, except the first, defining one) and is contradicted by its negative
markers; the supporting groups (all but the first) are read from the intensities as imaged, the defining and
negative markers after spill-over removal (see :func:`marker_evidence`). The best-supported label wins; its
confidence grows with its lead over the runner-up, as for RNA. With fitted gates, the cells called with
confidence then train a classifier on every channel of the panel (:func:`learn_lineages`), as for RNA.
:func:`call_protein` runs the whole path on arrays; ``tmt.tl.annotate`` reads the panel and writes its calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..._utils import TmtInputError, TmtKeyError, logger, nearest, warn
from ..scoring.mixture import fit_two_components
from .lineage import MAX_TRAIN_PER_LABEL, MIN_SEEDS, UNASSIGNED, _subsample, by_lineage, unassigned_reasons
from .states import cluster_probability_calls, consensus, decide, lend_cluster_calls
from .touching import N_TOUCHING, touching_cells

# canonical marker -> channel names it goes by (compared after upper-casing and dropping non-alphanumerics and any
# "(Opal 540)"-style stain suffix). "tumor" is the malignant-cell marker: keratins/E-cadherin/EpCAM by default;
# map it to another channel for non-epithelial tumours (e.g. markers={"tumor": "CD30"} in Hodgkin lymphoma).
MARKER_ALIASES: dict[str, tuple[str, ...]] = {
    "tumor": ("PANCK", "CK", "PANCYTOKERATIN", "PANKERATIN", "CYTOKERATIN", "KRT", "KERATIN", "ECAD", "ECADHERIN",
              "CDH1", "EPCAM", "SOX10", "MELANA", "MART1", "S100"),
    "CD45": ("CD45", "PTPRC"),
    "CD3": ("CD3", "CD3D", "CD3E"),
    "CD8": ("CD8", "CD8A", "CD8ALPHA"),
    "CD4": ("CD4",),
    "FOXP3": ("FOXP3",),
    "CD56": ("CD56", "NCAM1"),
    "B": ("CD20", "MS4A1", "CD19", "CD79A", "PAX5"),
    "CD138": ("CD138", "SDC1"),
    "CD38": ("CD38",),
    "CD68": ("CD68",),
    "CD163": ("CD163",),
    "CD206": ("CD206", "MRC1"),
    "CD14": ("CD14",),
    "M1": ("NOS2", "INOS", "CD86"),
    "granulocyte": ("CD15", "CD66B", "MPO"),
    "CD11C": ("CD11C", "ITGAX"),
    "HLADR": ("HLADR",),
    "mast": ("TRYPTASE", "MASTCELLTRYPTASE", "TPSAB1", "CKIT", "CD117"),
    "stroma": ("SMA", "ASMA", "ALPHASMA", "ACTA2", "FAP", "PDGFRB", "COL1", "COL1A1"),
    "endothelial": ("CD31", "PECAM1", "CD34", "VWF", "VONWILLEBRANDFACTOR"),
    "PD1": ("PD1", "PDCD1", "CD279"),
    "TIM3": ("TIM3", "HAVCR2", "CD366"),
    "LAG3": ("LAG3", "CD223"),
    "TIGIT": ("TIGIT",),
    "CTLA4": ("CTLA4", "CD152"),
    "PDL1": ("PDL1", "CD274", "B7H1"),
    "PDL2": ("PDL2", "PDCD1LG2", "CD273"),
    "CD39": ("CD39", "ENTPD1"),
    "TCF1": ("TCF1", "TCF7"),
}
# where no alias names a channel exactly: patterns (whole normalised names, tried in order) for the families that
# panels name in many ways - single keratins ("Keratin17", "CK8/18", "Cytokeratin 7"), "E/P-Cadherin", "vWF/CD31"
MARKER_PATTERNS: dict[str, tuple[str, ...]] = {
    "tumor": (r"PAN(CYTO)?(KERATIN|CK)\w*", r"CKPAN|AE1AE3", r"(CYTO)?KERATIN\d+\w*", r"CK\d+", r"KRT\d+\w*",
              r"E?PCADHERIN"),
    "stroma": (r"COL(LAGEN)?(1|I)(A1)?", r"PDPN|PODOPLANIN"),
    "endothelial": (r"([A-Z0-9]*[A-Z])?CD31([A-Z][A-Z0-9]*)?|VWF\w*", r"LYVE1"),  # not CD314, CD319 ...
}

IMMUNE = ("CD45",)
# label -> marker groups (AND of groups, OR within a group); the first group defines the label
LINEAGE_RULES: dict[str, tuple[tuple[str, ...], ...]] = {
    "Malignant/Epithelial": (("tumor",),),
    "CD8 T": (("CD8",), ("CD3",), IMMUNE),
    "CD4 T|conventional": (("CD4",), ("CD3",), IMMUNE),
    "CD4 T|Treg": (("FOXP3",), ("CD3", "CD4"), IMMUNE),
    "NK": (("CD56",), IMMUNE),
    "B": (("B",), IMMUNE),
    # plasma cells lose CD45 (CD45-negative/dim is their normal phenotype): no IMMUNE. They are CD38-bright and
    # CD138+ (EuroFlow, Flores-Montero 2017 doi:10.1038/leu.2017.29); either will do: on Schürch's CODEX spot the
    # CD138 gate sits among the negatives (plasma recall 0.17 -> 0.29, precision 0.22 -> 0.28 with CD38; phenoptr
    # and scimap carry no CD38)
    "Plasma": (("CD138", "CD38"),),
    "Monocyte/Macrophage": (("CD68", "CD163", "CD206", "CD14"), IMMUNE),
    "Neutrophil": (("granulocyte",), IMMUNE),
    "DC": (("CD11C",), ("HLADR",), IMMUNE),
    "Mast": (("mast",),),
    "Fibroblast": (("stroma",),),
    "Endothelial": (("endothelial",),),
}
# lineage exclusion as in flow gating: CD3 marks T cells only, so it contradicts NK, B and myeloid labels. CD4 and
# CD8 do not contradict each other: both T labels are scored and the stronger co-receptor wins, with a confidence
# that falls with the gap (flow cytometry reads them on one CD4 x CD8 plot, not as a veto; a single gate on CD4,
# which monocytes and macrophages carry dimly, capped every CD8 T cell above it - on Schürch's CODEX spot 41% of
# CD8 T cells, whose recall was 0.09; 0.22 without the veto, and scimap CD8 T recall 0.53 -> 0.73)
NEGATIVE: dict[str, tuple[str, ...]] = {
    "NK": ("CD3", "granulocyte"),  # CD56 marks NK cells among lymphocytes, which lack CD15/CD66b/MPO
    "B": ("CD3",),
    "Monocyte/Macrophage": ("CD3",),
    "Neutrophil": ("CD3",),
    "DC": ("CD68", "CD163", "CD3"),
    # CD138 (syndecan-1) is on epithelia as well: a CD138+ cell is a plasma cell when it is not epithelial (as
    # pathologists read CD138 beside a keratin) and not a T cell - the exclusions that CD45 made before
    "Plasma": ("tumor", "CD3"),
}
STATE_RULES: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "Monocyte/Macrophage": {"TAM M2-like": (("CD163", "CD206"),), "TAM M1-like": (("M1",),)},
    "CD8 T": {"CD8 Tex": (("PD1",), ("TIM3", "LAG3", "CD39")), "CD8 Tpex": (("PD1",), ("TCF1",))},
}
# markers that define a lineage; the others (checkpoints, TCF-1, CD39, NOS2) describe cells within one
LINEAGE_MARKERS = frozenset(m for groups in LINEAGE_RULES.values() for group in groups for m in group)


# nuclear and background channels of imaging panels, which stand for no marker
_STAIN = re.compile(r"^(DAPI|HOECHST|DRAQ|SYTO|NUCLEAR|AUTOFLUOR|BLANK|EMPTY|BACKGROUND)|^AF\d*$", re.IGNORECASE)


def is_stain(name: str) -> bool:
    """A nuclear stain or background channel (DAPI, Hoechst, DRAQ5, autofluorescence, blank)."""
    return bool(_STAIN.match(re.sub(r"[^A-Za-z0-9]", "", str(name))))


def _norm(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", re.sub(r"\(.*?\)", "", str(name).upper()))


def match_markers(var_names, markers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Canonical marker -> channel in ``var_names``: recognised by name, completed or overridden by ``markers``.

    Names are compared after upper-casing, dropping non-alphanumerics and any "(Opal 540)"-style suffix: first
    against :data:`MARKER_ALIASES`, then, for keratins, collagen and endothelial markers, against
    :data:`MARKER_PATTERNS` (``"Pan-Keratin"``, ``"Keratin17"``, ``"CK8/18"``, ``"vWF/CD31"``).

    A channel stands for one marker: one the user maps is no longer matched by name to another marker, and
    mapping one channel to two markers is refused.
    """
    var_names = pd.Index(var_names).astype(str)
    markers = dict(markers or {})
    mapped = pd.Series(markers, dtype=object)
    twice = mapped[mapped.duplicated(keep=False)]
    if len(twice):
        msg = (f"markers= maps channel {twice.iloc[0]!r} to {', '.join(map(repr, twice.index))}; a channel can stand "
               "for one marker only: keep the mapping you mean.")
        raise TmtInputError(msg)
    found: dict[str, str] = {}
    same: dict[str, list[str]] = {}
    for v in var_names:
        same.setdefault(_norm(v), []).append(v)
    normed = {n: names[0] for n, names in same.items()}  # of channels read alike ("CD8", "CD8 (Opal 540)"), the first
    for canon, aliases in MARKER_ALIASES.items():
        for alias in aliases:
            if alias in normed:
                found[canon] = normed[alias]
                if len(same[alias]) > 1 and canon not in markers:
                    warn(f"channels {', '.join(map(repr, same[alias]))} all read as {canon}: {same[alias][0]!r} is "
                         f"used; choose with markers={{{canon!r}: ...}}")
                break
    taken = set(found.values())
    for canon, patterns in MARKER_PATTERNS.items():
        hits = (normed[n] for pattern in patterns for n in normed if re.fullmatch(pattern, n))
        channel = next((ch for ch in hits if ch not in taken), None) if canon not in found else None
        if channel is not None:
            found[canon] = channel
            taken.add(channel)
    found = {canon: ch for canon, ch in found.items() if ch not in markers.values()}
    for canon, channel in markers.items():
        if canon not in MARKER_ALIASES:
            msg = f"unknown marker {canon!r} in markers=; known: {', '.join(MARKER_ALIASES)}."
            raise TmtKeyError(msg)
        if channel not in var_names:
            msg = f"markers[{canon!r}] = {channel!r} is not in var_names; nearest: {nearest(channel, var_names)}."
            raise TmtKeyError(msg)
        found[canon] = channel
    return found


def channel_gates(gates: Mapping[str, float], names: list[str], channels: dict[str, str]) -> dict[str, float]:
    """``gates`` keyed by channel name; a key naming a recognised marker (``"CD8"`` for ``"CD8 (Opal 540)"``) is
    read as that marker's channel, and a key naming neither is refused (it would leave the channel to a fit)."""
    out = {}
    for key, value in gates.items():
        if key in names:
            out[key] = float(value)
        elif key in channels:
            out[channels[key]] = float(value)
        else:
            msg = (f"gates[{key!r}] names no channel; nearest: {nearest(key, names)}. Key gates by channel name or "
                   f"by a recognised marker ({', '.join(channels)}).")
            raise TmtKeyError(msg)
    return out


# a channel with at least this share of cells at its lowest value (exact zeros) is gated on the others (Schürch's CODEX
# spot, where 9 of 19 gated channels have such a spike: lineage accuracy 0.31 -> 0.44; phenoptr and scimap
# have no such channel and are unchanged)
ZERO_SPIKE, MIN_NONZERO = 0.2, 20
# Ashman's D below which two fitted components are one skewed population rather than two (Ashman, Bird & Zepf 1994,
# doi:10.1086/117061)
BIMODAL_D = 2.0
# A marker that defines no lineage (checkpoint receptors and ligands, TCF-1, CD39, NOS2) and shows one population is
# gated at that population's upper tail: its median plus this many robust SDs (the 99th percentile of a normal), as
# flow cytometry sets a gate at the 99th percentile of the negative control. The crossing of two overlapping
# Gaussians sits inside the population. Measured when the gate was set (01c283f; docs/validation.md has the figures
# on today's calls): on Schürch's CODEX spot PD-1 (Ashman's D 0.54) was "positive" in 68% of its CD8 T cells and
# 31% of all cells, where Schürch's own PD-1+ gates count 19% and 25% of its CD8 and CD4 T cells; at the tail (read
# as imaged, see marker_evidence) 22% and 27%, recall and precision against those gates 0.62 / 0.52 and 0.82 / 0.74
# (1.0 / 0.28 and 1.0 / 0.37 at the crossing). Lineage markers keep the crossing: the classifier trained on the
# gated seeds calls their cells (Schürch's CD8 T recall fell 0.72 -> 0.44 with every one-population channel gated
# at its tail).
TAIL_SDS = 2.326


@dataclass(frozen=True)
class GatingScale:
    """The scale one channel is gated on: ``"log"`` (log(x + offset)), ``"arcsinh"`` (arcsinh(x / cofactor)) or
    ``"as is"`` (a channel holding negative values, transformed already)."""

    kind: str
    parameter: float = 0.0

    def forward(self, v) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if self.kind == "log":
            return np.log(np.clip(v, 0, None) + self.parameter)
        if self.kind == "arcsinh":
            return np.arcsinh(np.clip(v, 0, None) / self.parameter)
        return v

    def inverse(self, t: float) -> float:
        if self.kind == "log":
            return float(np.exp(t) - self.parameter)
        if self.kind == "arcsinh":
            return float(np.sinh(t) * self.parameter)
        return float(t)


# on intensities a marker's brightest cells (99% quantile of the positive values) are many times its typical cell
# (median over channels 10.6 on Schürch's CODEX, 11.5 on phenoptr's Vectra field); an arcsinh or log transform
# compresses that to 1.5-2.9 on the same panels: below this ratio the panel holds transformed values
COMPRESSED_RATIO = 3.0
# arcsinh(x / c) and log(1 + x) of any 32-bit intensity (c >= 1) stay below this
COMPRESSED_MAX = 25.0


def looks_compressed(X: np.ndarray) -> bool:
    """Whether a panel without negative values holds log- or arcsinh-transformed values rather than intensities:
    none above ``COMPRESSED_MAX`` and the median over channels of the ratio of the 99% to the 50% quantile of
    their positive values below ``COMPRESSED_RATIO``. :func:`linearise` brings such values back to a linear
    scale."""
    if X.size == 0 or X.max() > COMPRESSED_MAX:
        return False
    ratios = []
    for j in range(X.shape[1]):
        pos = X[:, j][X[:, j] > 0]
        if pos.size >= MIN_NONZERO:
            ratios.append(np.quantile(pos, 0.99) / np.quantile(pos, 0.5))
    return bool(ratios) and float(np.median(ratios)) < COMPRESSED_RATIO


def linearise(X: np.ndarray) -> np.ndarray:
    """sinh of a transformed panel's values: the inverse of arcsinh(x / c) up to the factor ``c``, and near it for
    log(1 + x), so that the calls match those from the intensities (the gating scales follow a factor)."""
    return np.sinh(np.clip(X, None, 700.0))


def floor_spike(x: np.ndarray) -> bool:
    """At least ``ZERO_SPIKE`` of the cells share the channel's lowest value (zeros of a background-subtracted
    image, or what they became after arcsinh and z-scoring), with ``MIN_NONZERO`` cells above it."""
    low = x.min()
    return bool((x == low).mean() >= ZERO_SPIKE and (x > low).sum() >= MIN_NONZERO)


def gating_fit(x: np.ndarray, *, seed: int = 0, log_only: bool = False):
    """The scale a channel is gated on and the two-component mixture fitted there.

    Intensities are gated on log(x + offset), the offset the 1% quantile of the positive values. Background-
    subtracted images (CODEX) leave a long tail of dim values that the log scale spreads over decades, so that the
    two components can split the negative cells among themselves (Schürch's FOXP3: Ashman's D 0.17, 64% of cells
    "positive"). When the log fit shows no two populations (D < ``BIMODAL_D``) the channel is gated on
    arcsinh(x / c) instead, ``c`` its median positive value, if that separates two populations and better: the
    arcsinh scale is linear below ``c``, where most cells of a channel lie, and logarithmic above, the transform of
    cytometry with the cofactor taken from the data's own scale (Finak et al. 2010, doi:10.1186/1471-2105-11-546;
    Schürch's FOXP3: D 3.8, 4% positive). Both scales follow a rescaling of the channel (x / max), so the calls do
    too. Channels holding negative values are gated on their own values. A spike at the lowest value (exact zeros,
    or what arcsinh and z-scoring made of them: :func:`floor_spike`) is left out of the fit: those cells are
    negative.
    """
    x = np.asarray(x, dtype=np.float64)
    # background-subtracted images: the zeros would be one component (SD ~0), the gate would sit just above zero
    # and every dim cell would read as strongly positive; the zeros are negative, the rest is gated. Transformed and
    # z-scored values keep the spike at their minimum
    fit_on = x[x > x.min()] if x.size and floor_spike(x) else x
    if (x < 0).any():
        scale = GatingScale("as is")
        return scale, fit_two_components(fit_on, seed=seed)
    pos = x[x > 0]
    scale = GatingScale("log", float(np.quantile(pos, 0.01)) if pos.size else 1e-3)
    fit = fit_two_components(scale.forward(fit_on), seed=seed)
    if log_only or fit.separation >= BIMODAL_D or not pos.size:
        return scale, fit
    alt = GatingScale("arcsinh", float(np.median(pos)))
    alt_fit = fit_two_components(alt.forward(fit_on), seed=seed)
    if alt_fit.separation >= BIMODAL_D and alt_fit.separation > fit.separation:
        return alt, alt_fit
    return scale, fit


def gate(x: np.ndarray, threshold: float | None = None, *, score: np.ndarray | None = None,
         seed: int = 0) -> tuple[np.ndarray, float]:
    """Evidence of positivity (distance above the gate in negative-population SDs) and the gate in data units.

    The gate is fitted on ``x`` (see :func:`gating_fit`); the evidence is measured for ``score`` (default ``x``),
    e.g. the same channel after spill-over compensation. A given ``threshold`` is read on the log scale, as it
    always was.
    """
    z, thr, _, _ = gate_with_fit(x, threshold, score=score, seed=seed)
    return z, thr


def gate_with_fit(x, threshold=None, *, score=None, seed: int = 0, also=None, tail: bool = False):
    """:func:`gate`, plus the scale and the mixture behind it; with ``also``, the evidence of those values too
    (one fit for both). With ``tail``, a channel that shows one population is gated at its upper tail
    (``TAIL_SDS`` robust SDs above its median; evidence in those SDs)."""
    scale, fit = gating_fit(x, seed=seed, log_only=threshold is not None)
    cut = fit.crossing if threshold is None else float(scale.forward(threshold))
    sd = max(fit.low_sd, 1e-6)
    if tail and threshold is None and fit.separation < BIMODAL_D:
        v = np.asarray(x, dtype=np.float64)
        f = scale.forward(v[v > v.min()] if floor_spike(v) else v)  # a spike at the floor is negative, as for the fit
        mid = float(np.median(f))
        sd = max(1.4826 * float(np.median(np.abs(f - mid))), 1e-6)
        cut = mid + TAIL_SDS * sd

    def evidence(v):
        return (scale.forward(v) - cut) / sd

    z = evidence(x if score is None else score)
    return z, scale.inverse(cut), (scale, fit), (None if also is None else evidence(also))


def compensate_spillover(X: np.ndarray, xy: np.ndarray, fraction: float, images: np.ndarray,
                         *, n_neighbors: int = N_TOUCHING) -> np.ndarray:
    """Intensities with lateral spill-over from touching cells removed.

    In multiplex images a cell next to a bright cell picks up part of its membrane signal, so a CD8-negative
    cell beside a bright CD8 T cell can look dimly CD8-positive. Each cell is assumed to have received up to
    ``fraction`` of its brightest touching neighbour's intensity, channel by channel, and that amount is removed.
    A cell touches those of its ``n_neighbors`` nearest cells that lie within twice the median nearest-neighbour
    distance of its image.
    """
    out = X.copy()
    for rows, near, touching in touching_cells(xy, images, n_neighbors):
        brightest = np.zeros((len(rows), X.shape[1]))
        for j in range(near.shape[1]):  # one neighbour rank at a time: memory stays cells x channels
            brightest = np.maximum(brightest, np.where(touching[:, j, None], X[near[:, j]], 0.0))
        out[rows] = np.clip(X[rows] - fraction * brightest, 0, None)
    return out


def label_evidence(Z: pd.DataFrame, rules, negative=None, support: pd.DataFrame | None = None, *,
                   every_group: bool = False,
                   one_population: Mapping[str, float] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per label, the weakest of its marker groups (each group's best marker), capped by its negative markers.

    ``support`` (default ``Z``) is the evidence the supporting groups (all but the first, defining one) are read
    from: the intensities as imaged when ``Z`` holds spill-over-compensated ones (see :func:`marker_evidence`).
    A label is read without the supporting groups the panel lacks (a CD8 T cell without a CD45 channel), unless
    ``every_group``: states, told apart by their second group (PD-1+ CD8 T cells by TCF-1 or by TIM-3, LAG-3,
    CD39), are not assessable without it, nor where each marker of a group has a fitted gate that cuts one
    population (``one_population``: marker -> Ashman's D below ``BIMODAL_D``).
    """
    support = Z if support is None else support
    one_population = one_population or {}
    cols, missing = {}, {}
    for label, groups in rules.items():
        absent = [g for g in (groups if every_group else groups[:1]) if not any(m in Z for m in g)]
        if absent:
            missing[label] = "no channel for " + "; ".join(" / ".join(g) for g in absent)
            continue
        flat = [g for g in groups if every_group and all(m in one_population for m in g if m in Z)]
        if flat:
            missing[label] = "one population, no gate: " + "; ".join(
                f"{m} (Ashman's D {one_population[m]:.2f} < {BIMODAL_D:g})" for g in flat for m in g if m in Z)
            continue
        parts = [(Z if i == 0 else support)[[m for m in g if m in Z]].max(axis=1)
                 for i, g in enumerate(groups) if any(m in Z for m in g)]
        ev = np.minimum.reduce([p.to_numpy() for p in parts])
        for m in (negative or {}).get(label, ()):
            if m in Z:
                ev = np.minimum(ev, -Z[m].to_numpy())
        cols[label] = ev
    return pd.DataFrame(cols, index=Z.index), missing


def marker_evidence(X: np.ndarray, channels: dict[str, int], gates: Mapping[str, float] | float | None,
                    names: list[str], index,
                    compensated: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Gate every recognised marker; returns the evidence per canonical marker, the same evidence read from the
    intensities as imaged (``X``), and the gate table.

    Mixture gates are fitted on ``X`` (the populations as imaged) and applied to ``compensated`` intensities when
    given; given gates apply to ``X`` as it is.

    Spill-over removal takes off the most a cell can have received (a fixed share of its brightest neighbour), so
    it also erases genuine dim signal: CD45 on myeloid cells, granulocytes and plasma cells is dimmer than on
    lymphocytes (the basis of CD45/side-scatter gating) and vanishes beside a bright T cell. It is needed where a
    neighbour's signal would create a false call or a false contradiction - a label's defining markers and its
    negative markers - and is therefore not applied to the supporting markers (CD45, CD3 for T cells), whose
    spill-over cannot create a call on its own: the ``as imaged`` evidence is what :func:`label_evidence` reads
    for them. Nor is it applied to markers that define no lineage (checkpoints, TCF-1, CD39), dim as they are: on
    Schürch's spot, against Schürch's own PD-1+ gates, PD-1 read after removal had recall 0.41 and precision 0.45
    in CD8 T cells (0.54 and 0.69 in CD4 T cells), as imaged 0.62 and 0.52 (0.82 and 0.74), when this was decided
    (01c283f).
    """
    Z, Zraw, rows = {}, {}, []
    for canon, j in channels.items():
        name = names[j]
        given = gates if isinstance(gates, (int, float)) else (gates or {}).get(name)
        tail = canon not in LINEAGE_MARKERS
        comp = None if compensated is None or given is not None or tail else compensated[:, j]
        z, thr, (scale, fit), z_imaged = gate_with_fit(X[:, j], given, score=comp, tail=tail,
                                                      also=None if comp is None else X[:, j])
        Z[canon] = z
        Zraw[canon] = z if comp is None else z_imaged
        source = "given" if given is not None else "tail" if tail and fit.separation < BIMODAL_D else "mixture"
        rows.append({"marker": canon, "channel": name, "gate": thr, "source": source,
                     "fraction_positive": float(np.mean(z > 0)), "scale": scale.kind, "separation": fit.separation})
    return pd.DataFrame(Z, index=index), pd.DataFrame(Zraw, index=index), pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# the data finish the job: the cells the gates call with confidence train a classifier on every channel

# a seed's best lineage reaches this evidence and leads the runner-up by this much (SDs of the negative cells:
# a confidence of 1 - exp(-1) = 0.63 from its lead)
SEED_EVIDENCE, SEED_LEAD = 1.0, 1.0


@dataclass
class Learned:
    """What :func:`learn_lineages` decided: classifier probabilities per learned lineage (``None`` when fewer
    than two lineages had enough seeds), each cell's seed lineage (``""`` when none) and seeds per lineage."""

    probability: pd.DataFrame | None
    seeds: np.ndarray
    n_seeds: dict[str, int]
    learned: list[str]


def channel_features(X: np.ndarray) -> np.ndarray:
    """Every channel on one kind of scale for the classifier: arcsinh(x / c), ``c`` the channel's median positive
    value, so that a rescaled channel (x / max) gives the same features; channels holding negative values
    (transformed already) as they are."""
    out = np.empty(X.shape, dtype=np.float64)
    for j in range(X.shape[1]):
        x = np.asarray(X[:, j], dtype=np.float64)
        pos = x[x > 0]
        out[:, j] = x if (x < 0).any() else np.arcsinh(x / (float(np.median(pos)) if pos.size else 1.0))
    return out


def unimodal_lineages(gate_table: pd.DataFrame) -> list[str]:
    """Lineages none of whose defining channels shows two populations (Ashman's D below ``BIMODAL_D`` on its
    gating scale): their gate cuts one skewed population, so the cells above it are no sample of the lineage."""
    sep = gate_table.set_index("marker")["separation"]
    out = []
    for label, groups in LINEAGE_RULES.items():
        d = [sep[m] for m in groups[0] if m in sep.index]
        if d and max(d) < BIMODAL_D:
            out.append(label.split("|")[0])
    return sorted(set(out))


def seed_lineages(arr: np.ndarray, names: np.ndarray) -> np.ndarray:
    """Per cell (rows of ``arr``, lineages x ``names`` in columns) the lineage it is a seed of, ``""`` for none: its
    best lineage reaches ``SEED_EVIDENCE`` and leads the runner-up by ``SEED_LEAD``."""
    order = np.argsort(-arr, axis=1)
    best = arr[np.arange(len(arr)), order[:, 0]]
    second = arr[np.arange(len(arr)), order[:, 1]] if arr.shape[1] > 1 else np.zeros(len(arr))
    lead = best - np.maximum(second, 0.0)
    return np.where((best >= SEED_EVIDENCE) & (lead >= SEED_LEAD), names[order[:, 0]], "").astype(object)


def learn_lineages(L: pd.DataFrame, features: np.ndarray, *, seed: int = 0, exclude=()) -> Learned:
    """Seeds from the gates, then a logistic regression on every channel trained on them.

    A cell is a seed of its best lineage when that lineage's evidence reaches ``SEED_EVIDENCE`` and leads the
    runner-up by ``SEED_LEAD`` (:func:`seed_lineages`). Lineages with at least ``MIN_SEEDS`` seeds (as for RNA) are
    learned, on at most ``MAX_TRAIN_PER_LABEL`` seeds each, with balanced class weights; the classifier sees every
    channel of the panel, including those no rule reads, so it learns what this panel shows of each lineage beyond
    its gates (the scheme of Garnett, Pliner 2019 doi:10.1038/s41592-019-0535-3). The ``exclude`` lineages (their
    gates cut one population: :func:`unimodal_lineages`) are not learned, and as their evidence is no sign of their
    lineage, it is no runner-up either: the seeds of the others are chosen among the others.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    arr = np.where(np.isfinite(L.to_numpy(dtype=float)), L.to_numpy(dtype=float), -np.inf)
    if arr.shape[1] == 0:
        return Learned(None, np.full(len(L), "", dtype=object), {}, [])
    names = np.asarray(L.columns, dtype=object)
    seeds = seed_lineages(arr, names)  # every lineage, as reported
    ranked = ~np.isin(names, list(exclude))
    if ranked.any() and not ranked.all():
        learnable = seed_lineages(arr[:, ranked], names[ranked])
        seeds = np.where(learnable != "", learnable, np.where(np.isin(seeds, list(exclude)), seeds, "")).astype(object)
    labs, counts = np.unique(seeds[seeds != ""], return_counts=True)
    n_seeds = dict(zip(labs.tolist(), counts.tolist(), strict=True))
    learned = [lab for lab, c in n_seeds.items() if c >= MIN_SEEDS and lab not in exclude]
    if len(learned) < 2:
        return Learned(None, seeds, n_seeds, learned)
    rng = np.random.default_rng(seed)
    train = np.concatenate([_subsample(np.flatnonzero(seeds == lab), MAX_TRAIN_PER_LABEL, rng) for lab in learned])
    mu, sd = features[train].mean(axis=0), features[train].std(axis=0)
    F = (features - mu) / np.where(sd > 0, sd, 1.0)
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced")
    with threadpool_limits(1):  # a few thousand rows: BLAS threads only add overhead
        model.fit(F[train], seeds[train])
        P = pd.DataFrame(model.predict_proba(F), columns=model.classes_, index=L.index)
    return Learned(P, seeds, n_seeds, learned)


# ---------------------------------------------------------------------------------------------------------------
# the calls: label evidence from the gates, the classifier, then states within lineages


@dataclass
class ProteinCalls:
    """What :func:`call_protein` decided: per cell the lineage, the state and the confidence; the evidence per
    marker (``"CD8+"``) and per label, cells x columns (NaN where a state's lineage was not called); one row per
    rule (level, label, markers, assessable, reason); the gate table of :func:`marker_evidence`; what
    :func:`learn_lineages` learned (``None`` when no classifier was trained); and why cells are unassigned
    (:func:`.lineage.unassigned_reasons`)."""

    lineage: np.ndarray
    state: np.ndarray
    confidence: np.ndarray
    evidence: pd.DataFrame
    rules: pd.DataFrame
    gates: pd.DataFrame
    learned: Learned | None
    unassigned: pd.DataFrame


NO_GATE = "whose gates support no lineage"
GATES_AGAINST = "whose own gates do not support the lineage the classifier chose"


def call_protein(X: np.ndarray, names: list[str], channels: dict[str, str], index, *,
                 gates: Mapping[str, float] | float | None, spillover: float = 0.0, xy: np.ndarray | None = None,
                 images: np.ndarray | None = None, groups: pd.Series | None = None, min_confidence: float,
                 override_confidence: float, min_probability: float) -> ProteinCalls:
    """Lineage, state and confidence of each cell of a protein panel: gate markers, then decide as for RNA.

    ``X`` holds cells x channels (``names``), ``channels`` maps canonical markers to channel names
    (:func:`match_markers`), ``index`` names the cells. With ``xy`` (and ``images``, one label per cell) the
    spill-over ``spillover`` from touching cells is removed first (:func:`compensate_spillover`). Arcsinh- or
    log-transformed values (:func:`looks_compressed`) are gated on sinh(values), and the gate table is given in
    the units of the values as given. Labels compete on their evidence (:func:`label_evidence`). With fitted
    gates, the confidently called cells train a classifier on every channel (:func:`learn_lineages`), whose
    lineage a cell takes with probability at least ``min_probability`` where its own gates support it. A cluster
    of ``groups`` that is sure of a lineage (mean probability, or with given gates the confidence of its mean
    evidence, at least ``override_confidence``) lends it to its less sure cells; mixed clusters change nothing
    (:func:`.states.lend_cluster_calls`, as for RNA). Calls below
    ``min_confidence`` are ``"unassigned"``; a CD4 T cell whose FOXP3 rule wins is a Treg; states are decided
    among the cells of their lineage by ``STATE_RULES``.
    """
    linearised = not (X < 0).any() and looks_compressed(X)
    if linearised:  # arcsinh- or log-transformed values: gated and learned from sinh(values), ~ the intensities
        logger.info("protein panel: the values look arcsinh- or log-transformed (a channel's brightest cells are "
                    "few times its typical one); they are gated on sinh(values), the intensities up to a factor")
        X = linearise(X)
        if gates is not None:
            gates = linearise(np.float64(gates)) if isinstance(gates, (int, float)) else \
                {k: float(linearise(np.float64(v))) for k, v in gates.items()}
    compensated = None
    if xy is not None:
        compensated = compensate_spillover(X, xy, spillover, images)
    Z, Z_imaged, gate_table = marker_evidence(X, {c: names.index(ch) for c, ch in channels.items()}, gates, names,
                                              index, compensated)
    if linearised:  # gates in the units of the values as given
        gate_table["gate"] = np.arcsinh(gate_table["gate"].to_numpy(dtype=np.float64))

    # a state's gate must cut two populations; lineages still use such gates (unimodal_lineages keeps them from
    # training the classifier), given gates are the user's decision
    fitted = gate_table[(gate_table["source"] == "mixture") & (gate_table["separation"] < BIMODAL_D)]
    one_population = dict(zip(fitted["marker"], fitted["separation"].astype(float), strict=True))

    def call(rules, mask, negative=None, states=False):
        E, missing = label_evidence(Z.loc[mask], rules, negative, support=Z_imaged.loc[mask], every_group=states,
                                    one_population=one_population if states else None)
        L = by_lineage(E)
        labels, _, conf = decide(L, 1.0, min_score=0.0)
        return labels, conf, E, L, missing

    n = len(index)
    lineage, conf, E, L, missing = call(LINEAGE_RULES, np.ones(n, dtype=bool), NEGATIVE)
    no_gate = (L.to_numpy() <= 0).all(axis=1) if L.shape[1] else np.ones(n, dtype=bool)
    unsupported = np.zeros(n, dtype=bool)
    learned = None
    if gates is None:  # given gates are the user's decision: kept as made
        learned = learn_lineages(L, channel_features(X), exclude=unimodal_lineages(gate_table))
        if learned.probability is not None:
            lineage, conf, unsupported = learned_calls(defining_evidence(Z, Z_imaged), learned, lineage, conf,
                                                       min_confidence, min_probability)
            alone = sorted(set(learned.n_seeds) - set(learned.learned))
            if alone:
                logger.info("protein panel: %s called by their gates alone (fewer than %d confident cells, or no "
                            "channel of theirs shows two populations); see uns['tmt_annotate']['seeds']",
                            ", ".join(alone), MIN_SEEDS)
        else:
            logger.info("protein panel: fewer than two lineages have %d confident cells to learn from; every cell "
                        "keeps its gated call", MIN_SEEDS)
    if groups is not None:
        if learned is not None and learned.probability is not None:
            lineage, conf = lend_cluster_calls(*cluster_probability_calls(learned.probability, groups), groups,
                                               lineage, conf, override_confidence)
        else:
            lineage, conf = consensus(L, groups, lineage, conf, 1.0, override=override_confidence, min_score=0.0)
    lineage = np.where(conf >= min_confidence, lineage, UNASSIGNED).astype(object)
    state = lineage.copy()
    treg = (lineage == "CD4 T") & (E.get("CD4 T|Treg", pd.Series(-np.inf, index=E.index)).to_numpy()
                                   >= E.get("CD4 T|conventional", pd.Series(-np.inf, index=E.index)).to_numpy())
    state[treg] = "Treg"
    rows = [{"level": "lineage", "label": lab, "markers": " & ".join("/".join(g) for g in grp),
             "assessable": lab not in missing, "reason": missing.get(lab, "")}
            for lab, grp in LINEAGE_RULES.items()]
    evidence = [Z.add_suffix("+"), E]  # per marker ("CD8+"), then per label
    for lin, table in STATE_RULES.items():
        mask = lineage == lin
        st, st_conf, Es, _, miss = call(table, mask, states=True) if mask.any() else (None, None, None, None, {})
        for lab, grp in table.items():
            why = miss.get(lab, "") if mask.any() else f"no {lin} cells"
            rows.append({"level": lin, "label": lab, "markers": " & ".join("/".join(g) for g in grp),
                         "assessable": not why, "reason": why})
        if st is None or Es.shape[1] == 0:
            continue
        ok = st_conf >= min_confidence
        state[mask] = np.where(ok, st, lin)
        conf[mask] = np.where(ok, np.minimum(conf[mask], st_conf), conf[mask])
        full = pd.DataFrame(np.nan, index=index, columns=Es.columns)
        full.iloc[np.flatnonzero(mask)] = Es.to_numpy()  # by position: cell names may repeat
        evidence.append(full)
    unassigned = unassigned_reasons(lineage, {NO_GATE: no_gate, GATES_AGAINST: unsupported})
    return ProteinCalls(lineage, state, conf, pd.concat(evidence, axis=1), pd.DataFrame(rows), gate_table, learned,
                        unassigned)


def defining_evidence(Z: pd.DataFrame, Z_imaged: pd.DataFrame) -> pd.DataFrame:
    """Per lineage, the evidence of its defining markers (the first group of its rule) capped by its negative
    markers, without the supporting groups: what a call of the classifier must rest on (:func:`learned_calls`)."""
    E, _ = label_evidence(Z, {label: groups[:1] for label, groups in LINEAGE_RULES.items()}, NEGATIVE,
                          support=Z_imaged)
    return by_lineage(E)


def learned_calls(L: pd.DataFrame, learned: Learned, lineage, conf, min_confidence: float, min_probability: float):
    """Lineage, confidence and the cells whose own gates do not support the classifier's lineage (left
    unassigned), from the classifier :func:`learn_lineages` trained.

    A cell gets the lineage of highest probability, with that probability as confidence, when its own gates
    support it (``L``, the lineage's evidence from :func:`defining_evidence`, is positive: a defining marker above
    its gate and no negative marker) and the probability reaches ``min_probability``, as for RNA; a lineage with
    too few seeds to learn keeps the cells its gates call with confidence. The supporting groups (CD45; CD3 for T
    cells) chose the seeds, and the classifier reads their channels; CD45, dim on myeloid cells, granulocytes and
    plasma cells, is no veto on its own.
    """
    P = learned.probability
    arr = P.to_numpy()
    best = np.argmax(arr, axis=1)
    called = np.asarray(P.columns, dtype=object)[best]
    prob = arr[np.arange(len(arr)), best]
    claimed = L.reindex(columns=P.columns).to_numpy()[np.arange(len(arr)), best] > 0
    rare = ~np.isin(lineage, list(P.columns)) & (lineage != UNASSIGNED) & (conf >= min_confidence)
    new_conf = np.where(rare, conf, np.where(claimed, prob, 0.0))
    new_lineage = np.where(rare, lineage, np.where(claimed & (prob >= min_probability), called, UNASSIGNED))
    return new_lineage.astype(object), new_conf, ~rare & ~claimed

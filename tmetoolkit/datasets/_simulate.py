"""``tmt.datasets.simulate``: spatial tumours with known cell states, compartments and immune phenotypes.

The expression programmes planted in the cells are not the registry's: they are read from
``simulation_programmes.yaml``, gene lists from single-cell atlases and papers that no registry signature or lineage
marker cites, with graded levels, genes shared between related cell types, unnamed genes no marker list knows,
cell-to-cell variation in programme activity, ambient RNA and spill-over from the touching cell. The genes of cell
types it does not plant (``absent`` in the file: squamous keratinocytes, smooth muscle) stay at a programme gene's
low background in every cell. Agreement of a tool with the planted truth therefore says that it finds the biology,
not its own gene lists.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml
from anndata import AnnData
from scipy.spatial import cKDTree

from .. import _keys
from .._utils import TmtInputError

PROGRAMMES_FILE = "simulation_programmes.yaml"
# cell-type mixtures per compartment (fractions of cells); CD8 T depends on the phenotype
_BASE_MIX = {
    "tumor": {"Malignant/Epithelial": 0.82, "Monocyte/Macrophage": 0.06, "Fibroblast": 0.04, "Endothelial": 0.02,
              "CD4 T": 0.02, "Neutrophil": 0.01, "NK": 0.005, "DC": 0.005},
    "margin": {"Malignant/Epithelial": 0.05, "Fibroblast": 0.25, "Monocyte/Macrophage": 0.14, "Endothelial": 0.08,
               "Pericyte": 0.03, "CD4 T": 0.08, "B": 0.04, "Neutrophil": 0.03, "DC": 0.03, "NK": 0.02, "Mast": 0.02,
               "Plasma": 0.02},
    "stroma": {"Malignant/Epithelial": 0.01, "Fibroblast": 0.34, "Monocyte/Macrophage": 0.12, "Endothelial": 0.12,
               "Pericyte": 0.05, "CD4 T": 0.06, "B": 0.05, "Neutrophil": 0.03, "DC": 0.02, "NK": 0.02, "Mast": 0.03,
               "Plasma": 0.03},
}
# CD8 T fraction per compartment and phenotype
_CD8 = {
    "inflamed": {"tumor": 0.10, "margin": 0.10, "stroma": 0.07},
    "excluded": {"tumor": 0.004, "margin": 0.16, "stroma": 0.08},
    "desert": {"tumor": 0.002, "margin": 0.006, "stroma": 0.004},
}
# excluded tumours hold their CD8 T cells in the stroma, out of contact with the tumour cells (Salmon et al. 2012,
# J Clin Invest 122:899; Joyce & Fearon 2015, Science 348:74): after the draw, those within one mean cell spacing
# outside the border trade places with other non-tumour cells of the outer margin, as do three in four of those
# inside it (0.004 of the tumour cells planted, 0.001 kept)
_EXCLUDED_KEEP_INSIDE = 0.25
# ``stromal_barrier``: excluded tumours get a fibrotic rim, more fibroblasts at the margin and in the stroma, mostly
# myofibroblastic (TGF-beta-driven) CAFs; planted through the fibroblast and myCAF programmes, which share 11 genes
# (ACTA2, COL1A1, COL1A2, COL6A2, FAP, FBLN1, LUM, MMP2, PDGFRA, PDGFRB, TAGLN) with the 37 of the stromal
# programmes the expression phenotype reads
BARRIER_FIBROBLASTS = {"margin": 3.0, "stroma": 1.5}
BARRIER_MYCAF = (0.7, 0.9)
MARGIN_HALF_WIDTH = 30.0  # micrometres either side of the border count as margin in the truth
# a programme gene's background outside its cells, below an ordinary gene's: detected in about 2% of the other
# cells, as cell-type markers are in droplet data (5 gave FOXP3 and XCR1 in 10-19% of all cells)
SPECIFICITY = 30.0
FOLD_JITTER = 0.3  # sd of a planted gene's log fold change around its level
ACTIVITY_SD = 0.25  # cell-to-cell sd of a programme's log activity (a factor on all its genes in a cell)
N_UNNAMED = {"lineage": 6, "state": 4}  # genes outside every marker list (SIMGENE...) in each programme
AMBIENT = 0.01  # share of each cell's transcripts from its sample's ambient pool (lysed cells)
SPILL_BETA = (1.2, 38.8)  # share from the touching cell (segmentation), Beta distributed, mean 3%


def _panel_genes() -> list[str]:
    """The named genes of the simulated panel (``simulated_genes.txt``: the registry's genes when it was fixed)."""
    text = resources.files("tmetoolkit.datasets").joinpath("simulated_genes.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@functools.cache
def programme_table() -> dict:
    """The planted programmes (``simulation_programmes.yaml``): modules, lineages, states, levels and sources."""
    text = resources.files("tmetoolkit.datasets").joinpath(PROGRAMMES_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


@dataclass(frozen=True)
class _Programme:
    """Genes a programme raises (with their log fold changes) and lowers, in one cell type or state."""

    genes: tuple[str, ...]
    log_fold: np.ndarray
    low: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


def _plan(rng, table: dict, unnamed: list[str]) -> dict[str, _Programme]:
    """Draw every planted programme's fold changes: the gene's level, jittered per gene, times the module weight.

    Keys are ``lineage:<name>``, ``state:<name>`` and ``subtype:<lineage>:<name>``. A module's genes are drawn once,
    so related cell types share them at levels that differ only by the weight each gives the module.
    """
    levels = {k: np.log(v) for k, v in table["levels"].items()}

    def draw(genes: dict) -> dict[str, float]:
        names = list(genes)
        return dict(zip(names, [levels[genes[g]] for g in names] + rng.normal(0, FOLD_JITTER, len(names)),
                        strict=True))

    modules = {name: draw(m["genes"]) for name, m in table["modules"].items()}

    def build(spec: dict, n_unnamed: int) -> _Programme:
        lf: dict[str, float] = {}
        for name, weight in (spec.get("modules") or {}).items():
            for g, v in modules[name].items():
                lf[g] = max(lf.get(g, -np.inf), weight * v)
        for g, v in draw(spec.get("genes") or {}).items():
            lf[g] = max(lf.get(g, -np.inf), v)
        if n_unnamed:
            extra = rng.choice(unnamed, size=min(n_unnamed, len(unnamed)), replace=False)
            lf.update(zip(extra.tolist(), rng.uniform(levels["low"], levels["mid"], len(extra)), strict=True))
        mods = spec.get("modules") or {}
        srcs = sorted({*spec.get("sources", ()), *(s for m in mods for s in table["modules"][m]["sources"])})
        return _Programme(tuple(lf), np.array(list(lf.values())), tuple(spec.get("low") or ()), tuple(srcs))

    plan = {}
    for lin, spec in table["lineages"].items():
        plan[f"lineage:{lin}"] = build(spec, N_UNNAMED["lineage"])
        for sub, sub_spec in (spec.get("subtypes") or {}).items():
            plan[f"subtype:{lin}:{sub}"] = build({**sub_spec, "sources": spec["sources"]}, 0)
    for st, spec in table["states"].items():
        plan[f"state:{st}"] = build(spec, N_UNNAMED["state"])
    return plan


def _plant(offset, rng, cells: np.ndarray, prog: _Programme, col: dict[str, int]) -> None:
    """Raise a programme in some cells, each at its own activity (graded, as programmes are in real cells).

    ``offset`` holds log fold changes of the programme genes (columns ``col``) per cell.
    """
    if not cells.any():
        return
    act = rng.lognormal(0.0, ACTIVITY_SD, size=int(cells.sum()))
    rows = np.flatnonzero(cells)
    offset[np.ix_(rows, [col[g] for g in prog.genes])] += np.log(act)[:, None] + prog.log_fold[None, :]
    if prog.low:
        offset[np.ix_(rows, [col[g] for g in prog.low])] += np.log(0.1)


def _spill(mu: np.ndarray, xy: np.ndarray, rng) -> np.ndarray:
    """Expression proportions (in place) after ambient RNA and spill-over from the nearest cell (segmentation)."""
    mu /= mu.sum(axis=1, keepdims=True)
    n = len(mu)
    if n < 2:
        return mu
    share = rng.beta(*SPILL_BETA, size=n)
    neighbour = mu[cKDTree(xy).query(xy, k=2)[1][:, 1]]
    neighbour *= share[:, None]
    ambient = AMBIENT * mu.mean(axis=0)
    mu *= (1 - share - AMBIENT)[:, None]
    mu += neighbour
    mu += ambient
    return mu


def _border_distance(xy, centres, radii, wobble, phases):
    """Signed distance (negative inside) to the union of wobbly discs."""
    d = np.full(len(xy), np.inf)
    for c, r, a, ph in zip(centres, radii, wobble, phases, strict=True):
        v = xy - c
        theta = np.arctan2(v[:, 1], v[:, 0])
        rr = r * (1 + a[0] * np.sin(3 * theta + ph[0]) + a[1] * np.sin(5 * theta + ph[1]))
        d = np.minimum(d, np.hypot(v[:, 0], v[:, 1]) - rr)
    return d


def _layout(rng, n_cells, tumor_shape, density):
    side = np.sqrt(n_cells / density) * 1000.0  # micrometres
    xy = rng.uniform(0, side, size=(n_cells, 2))
    if tumor_shape == "solid":
        centres = np.array([[side * 0.5, side * 0.5]])
        radii = np.array([side * 0.33])
    elif tumor_shape == "nests":
        k = 4
        centres = rng.uniform(side * 0.22, side * 0.78, size=(k, 2))
        radii = rng.uniform(side * 0.15, side * 0.22, size=k)
    elif tumor_shape == "scattered":
        k = 9
        centres = rng.uniform(side * 0.1, side * 0.9, size=(k, 2))
        radii = rng.uniform(side * 0.08, side * 0.12, size=k)
    else:
        msg = f"tumor_shape must be 'nests', 'solid' or 'scattered', got {tumor_shape!r}."
        raise TmtInputError(msg)
    wobble = rng.uniform(0.0, 0.12, size=(len(centres), 2))
    phases = rng.uniform(0, 2 * np.pi, size=(len(centres), 2))
    return xy, _border_distance(xy, centres, radii, wobble, phases)


def _hold_back(rng, lineage, dist, density):
    """Excluded tumour: move CD8 T cells off the tumour edge (in place; lineage counts and the sample's own random
    stream are unchanged, so only where the CD8 T cells sit differs from the draw)."""
    gap = min(1000.0 / np.sqrt(density), MARGIN_HALF_WIDTH / 2)
    cd8 = lineage == "CD8 T"
    move = cd8 & (((dist >= 0) & (dist < gap)) | ((dist < 0) & (rng.random(len(dist)) >= _EXCLUDED_KEEP_INSIDE)))
    held = np.flatnonzero(~cd8 & (lineage != "Malignant/Epithelial") & (dist >= gap) & (dist <= MARGIN_HALF_WIDTH))
    src = np.flatnonzero(move)
    if src.size == 0 or held.size == 0:
        return
    dst = rng.choice(held, size=min(src.size, held.size), replace=False)
    src = src[: dst.size]
    lineage[src], lineage[dst] = lineage[dst], lineage[src].copy()


def _sample_params(rng, phenotype):
    return {
        "phenotype": phenotype,
        "treg_fraction": rng.uniform(0.1, 0.5),  # of CD4 T
        "mdsc_fraction": rng.uniform(0.05, 0.4),  # of monocyte/macrophage and of neutrophils
        "m2_fraction": rng.uniform(0.2, 0.8),  # of TAMs
        "mycaf_fraction": rng.uniform(0.2, 0.7),  # of fibroblasts
        "tex_fraction": rng.uniform(0.2, 0.5) if phenotype == "inflamed" else rng.uniform(0.05, 0.3),  # of CD8 T
        "apm_loss": False,
        "ifng_unresponsive": False,
    }


def _states(rng, lineage, p):
    """Draw a state for every cell of a lineage from the sample's planted fractions."""
    n = len(lineage)
    states = np.array(lineage, dtype=object)
    draw = rng.random(n)
    cd8 = lineage == "CD8 T"
    tex, tpex = p["tex_fraction"], 0.15
    effector = 0.55 * (1 - tex - tpex)
    states[cd8] = np.select(
        [draw[cd8] < tex, draw[cd8] < tex + tpex, draw[cd8] < tex + tpex + effector],
        ["CD8 Tex", "CD8 Tpex", "CD8 effector"], "CD8 naive/memory",
    )
    cd4 = lineage == "CD4 T"
    states[cd4] = np.select([draw[cd4] < p["treg_fraction"], draw[cd4] < p["treg_fraction"] + 0.4],
                            ["Treg", "CD4 helper"], "CD4 naive/memory")
    my = lineage == "Monocyte/Macrophage"
    mdsc = p["mdsc_fraction"]
    rest = 1 - mdsc - 0.15
    states[my] = np.select(
        [draw[my] < mdsc, draw[my] < mdsc + 0.15, draw[my] < mdsc + 0.15 + rest * p["m2_fraction"]],
        ["M-MDSC-like", "Monocyte", "TAM M2-like"], "TAM M1-like",
    )
    ne = lineage == "Neutrophil"
    states[ne] = np.where(draw[ne] < p["mdsc_fraction"], "PMN-MDSC-like", "Neutrophil")
    fb = lineage == "Fibroblast"
    states[fb] = np.select([draw[fb] < p["mycaf_fraction"], draw[fb] < p["mycaf_fraction"] + 0.12],
                           ["myCAF", "apCAF"], "iCAF")
    return states


def simulate(
    n_samples: int = 6,
    n_cells: int = 3000,
    *,
    phenotypes: Sequence[str] | None = None,
    tumor_shape: str = "nests",
    noise: float = 1.0,
    density: float = 4000.0,
    n_background_genes: int = 4000,
    apm_loss: Sequence[bool] | None = None,
    ifng_unresponsive: Sequence[bool] | None = None,
    stromal_barrier: bool = False,
    seed: int = 0,
) -> AnnData:
    """Simulate spatial tumour samples with known cell states, compartments and immune phenotypes.

    Each sample is a square of tissue with tumour nests (``tumor_shape``), a margin and stroma. Cells of all
    lineages and states of the tmetoolkit vocabulary are placed by compartment; CD8 T cells follow the sample's
    planted phenotype: ``inflamed`` (inside the nests), ``excluded`` (held in margin and stroma, none within one
    cell spacing of the tumour edge and a quarter of the few drawn inside kept there) or ``desert``
    (few anywhere). Each lineage and state expresses its programme from ``simulation_programmes.yaml``: genes that
    atlases independent of tmetoolkit's registry report for it, at graded levels, with modules shared by related
    types (T and NK cells the cytotoxic genes, antigen-presenting cells HLA class II, mural cells and myofibroblasts
    the contractile genes), a few unnamed genes, and an activity that varies from cell to cell. Counts are negative
    binomial with library-size variation, dropout, a per-sample batch effect, ambient RNA (1%) and spill-over from
    the touching cell (3% on average), as cell segmentation leaves it.

    Parameters
    ----------
    n_samples
        Number of samples (one image each).
    n_cells
        Cells per sample.
    phenotypes
        Planted phenotype per sample; default cycles inflamed, excluded, desert.
    tumor_shape
        ``"nests"`` (a few irregular nests), ``"solid"`` (one large mass) or ``"scattered"`` (many small nests).
    noise
        Scales dispersion, dropout and batch effect (1 is the default difficulty; 0.5 easier, 2 harder).
    density
        Cells per mm^2; sets the size of each image.
    n_background_genes
        Genes outside every signature (named ``SIMGENE…``) added to the panel.
    apm_loss
        Per sample, whether malignant cells lose MHC class I antigen presentation, as reported in resistant
        tumours: both B2M copies and one HLA class I haplotype (``mechanisms`` in ``simulation_programmes.yaml``).
        Default: the last sample of every three.
    ifng_unresponsive
        Per sample, whether malignant cells do not respond to IFN-gamma (as after JAK1/2 loss): in inflamed
        samples, where macrophages and malignant cells raise the STAT1/IRF1 targets of IFN-gamma (chemokines,
        IDO1, GBPs, CIITA, PD-L1), the malignant cells then keep them at baseline. Default: no sample.
    stromal_barrier
        Whether excluded tumours hold their T cells behind a fibrotic rim: three times the fibroblasts at the margin
        and 1.5 times in the stroma, 70-90% of them myCAF (TGF-beta-driven), as in the excluded tumours of
        Mariathasan 2018. Default off.
    seed
        Random seed; the same seed gives the same data.

    Returns
    -------
    AnnData with raw counts in ``X`` (CSR, float32), coordinates in micrometres in ``obsm["spatial"]``, and truth:

    ``obs["sample"]``, ``obs["batch"]``, ``obs["response"]``
        Sample, sequencing batch (pairs of samples), and a planted clinical response (responders are mostly
        inflamed).
    ``obs["true_lineage"]``, ``obs["true_state"]``
        Lineage and state in tmetoolkit's vocabulary.
    ``obs["true_compartment"]``, ``obs["true_border_distance"]``
        ``tumor`` / ``margin`` / ``stroma`` and the signed distance to the tumour border (negative inside).
    ``obs["true_phenotype"]``
        The sample's planted phenotype.
    ``uns["tmt_simulation"]``
        ``params``, ``samples`` (planted phenotype and state fractions per sample) and ``programs`` (planted genes
        per lineage, DC subtype and state, genes held low, and the keys of their sources in
        ``simulation_programmes.yaml``).

    Examples
    --------
    >>> import tmetoolkit as tmt
    >>> adata = tmt.datasets.simulate(n_samples=3, n_cells=500, seed=1)
    >>> adata.obs["true_phenotype"].cat.categories.tolist()
    ['desert', 'excluded', 'inflamed']
    """
    if n_samples < 1 or n_cells < 50 or n_background_genes < 10:
        msg = "simulate needs n_samples >= 1, n_cells >= 50 and n_background_genes >= 10."
        raise TmtInputError(msg)
    if noise <= 0:
        msg = f"noise must be positive, got {noise}."
        raise TmtInputError(msg)
    rng = np.random.default_rng(seed)
    response_draw = rng.random(n_samples)  # first, so that the expression model does not move the responses
    cycle = ("inflamed", "excluded", "desert")
    phenotypes = list(phenotypes) if phenotypes is not None else [cycle[i % 3] for i in range(n_samples)]
    if len(phenotypes) != n_samples or not set(phenotypes) <= set(cycle):
        msg = f"phenotypes needs {n_samples} values from {cycle}."
        raise TmtInputError(msg)
    apm = list(apm_loss) if apm_loss is not None else [i % 3 == 2 for i in range(n_samples)]
    unresponsive = list(ifng_unresponsive) if ifng_unresponsive is not None else [False] * n_samples
    if len(apm) != n_samples or len(unresponsive) != n_samples:
        msg = f"apm_loss and ifng_unresponsive need one value per sample ({n_samples})."
        raise TmtInputError(msg)

    sig_genes = _panel_genes()
    extra_named = ["PECAM1", "CDH5", "JCHAIN"]
    background = [f"SIMGENE{i:05d}" for i in range(n_background_genes)]
    genes = list(dict.fromkeys([*sig_genes, *extra_named, *background]))
    gidx = {g: i for i, g in enumerate(genes)}
    n_genes = len(genes)

    base = rng.lognormal(mean=np.log(0.3), sigma=1.3, size=n_genes)
    # MHC class I genes are among the highest of every nucleated cell
    apm_genes = ["B2M", "HLA-A", "HLA-B", "HLA-C", "TAP1", "TAP2"]
    base[[gidx[g] for g in apm_genes]] = rng.uniform(8, 20, size=len(apm_genes))

    table = programme_table()
    # keys are namespaced: "Neutrophil" is both a lineage and a state
    programs = _plan(rng, table, background)
    # programme genes are specific: low outside the cells that express them, as lineage markers are in tissue
    specific = sorted({gidx[g] for v in programs.values() for g in v.genes} - {gidx[g] for g in apm_genes})
    base[specific] = rng.lognormal(np.log(1.0), 0.5, size=len(specific)) / SPECIFICITY
    absent = sorted({gidx[g] for cell_type in table["absent"].values() for g in cell_type["genes"]} - set(specific))
    base[absent] = rng.lognormal(np.log(1.0), 0.5, size=len(absent)) / SPECIFICITY
    planted = sorted({g for v in programs.values() for g in (*v.genes, *v.low)})
    pcol = {g: j for j, g in enumerate(planted)}
    mechanisms = table["mechanisms"]
    apm_cols = [gidx[g] for g in mechanisms["apm_loss"]["factors"]]
    apm_factor = np.array(list(mechanisms["apm_loss"]["factors"].values()))
    ifn = mechanisms["ifn_gamma_response"]
    ifn_cols = [gidx[g] for g in ifn["genes"]]
    ifn_fold = np.array([ifn["fold"][level] for level in ifn["genes"].values()])
    lineages_all = list(table["lineages"])

    obs_parts, X_parts, xy_parts, sample_rows = [], [], [], []
    for s in range(n_samples):
        srng = np.random.default_rng([seed, s])
        p = _sample_params(srng, phenotypes[s])
        p["apm_loss"] = bool(apm[s])
        p["ifng_unresponsive"] = bool(unresponsive[s])
        barrier = stromal_barrier and p["phenotype"] == "excluded"
        p["stromal_barrier"] = bool(barrier)
        if barrier:  # no draw from srng, so the other samples stay as without the barrier
            lo, hi = BARRIER_MYCAF
            p["mycaf_fraction"] = lo + (hi - lo) * (p["mycaf_fraction"] - 0.2) / 0.5
        xy, dist = _layout(srng, n_cells, tumor_shape, density)
        comp = np.where(dist < -MARGIN_HALF_WIDTH, "tumor", np.where(dist <= MARGIN_HALF_WIDTH, "margin", "stroma"))
        lineage = np.empty(n_cells, dtype=object)
        for c in ("tumor", "margin", "stroma"):
            mix = dict(_BASE_MIX[c])
            mix["CD8 T"] = _CD8[p["phenotype"]][c]
            if p["phenotype"] == "desert":
                mix["CD4 T"] *= 0.25
            if barrier and c in BARRIER_FIBROBLASTS:
                mix["Fibroblast"] *= BARRIER_FIBROBLASTS[c]
            if c == "margin":
                inside = (comp == c) & (dist < 0)
                # tumour nests have a crisp epithelial edge: the inner half of the margin is mostly tumour
                mix_in = {k: 0.25 * v + 0.75 * _BASE_MIX["tumor"].get(k, 0) for k, v in mix.items()}
                mix_in["CD8 T"] = 0.25 * mix["CD8 T"] + 0.75 * _CD8[p["phenotype"]]["tumor"]
                if p["phenotype"] == "excluded":  # held outside the border: none beyond it but the tumour's few
                    mix_in["CD8 T"] = _CD8["excluded"]["tumor"]
                for sel, m in ((inside, mix_in), ((comp == c) & (dist >= 0), mix)):
                    names, probs = zip(*m.items(), strict=True)
                    probs = np.array(probs) / sum(probs)
                    lineage[sel] = srng.choice(names, size=sel.sum(), p=probs)
                continue
            sel = comp == c
            names, probs = zip(*mix.items(), strict=True)
            probs = np.array(probs) / sum(probs)
            lineage[sel] = srng.choice(names, size=sel.sum(), p=probs)
        if p["phenotype"] == "excluded":
            _hold_back(np.random.default_rng([seed, s, 1]), lineage, dist, density)
        state = _states(srng, lineage, p)

        offset = np.zeros((n_cells, len(planted)))
        for lin in lineages_all:
            cells = lineage == lin
            _plant(offset, srng, cells, programs[f"lineage:{lin}"], pcol)
            subtypes = table["lineages"][lin].get("subtypes") or {}
            if subtypes and cells.any():
                shares = np.array([v["share"] for v in subtypes.values()])
                pick = srng.choice(len(subtypes), size=int(cells.sum()), p=shares / shares.sum())
                for k, sub in enumerate(subtypes):
                    sub_cells = np.zeros(n_cells, dtype=bool)
                    sub_cells[np.flatnonzero(cells)[pick == k]] = True
                    _plant(offset, srng, sub_cells, programs[f"subtype:{lin}:{sub}"], pcol)
        for st in table["states"]:
            _plant(offset, srng, state == st, programs[f"state:{st}"], pcol)
        mu = np.empty((n_cells, n_genes))
        mu[:] = base
        mu[:, [gidx[g] for g in planted]] *= np.exp(offset)
        malignant = lineage == "Malignant/Epithelial"
        if p["apm_loss"]:
            mu[np.ix_(malignant, apm_cols)] *= apm_factor
        if p["phenotype"] == "inflamed":
            resp = (lineage == "Monocyte/Macrophage") | (malignant & (not p["ifng_unresponsive"]))
            mu[np.ix_(resp, ifn_cols)] *= ifn_fold

        batch = np.exp(srng.normal(0, 0.25 * noise, size=n_genes))
        mu *= batch
        mu = _spill(mu, xy, srng)
        lib = srng.lognormal(np.log(3000), 0.35, size=n_cells) * np.where(malignant, 1.4, 1.0)
        mu *= lib[:, None]
        theta = 6.0 / noise
        lam = srng.gamma(theta, mu / theta)
        counts = srng.poisson(lam).astype(np.float32)
        counts[srng.random(counts.shape) < min(0.1 * noise, 0.5)] = 0
        X_parts.append(sp.csr_matrix(counts))
        xy_parts.append(xy)
        obs_parts.append(pd.DataFrame({
            "sample": f"S{s + 1:02d}",
            "batch": f"B{s // 2 + 1}",
            "true_lineage": lineage.astype(str),
            "true_state": state.astype(str),
            "true_compartment": comp,
            "true_border_distance": dist,
            "true_phenotype": p["phenotype"],
        }))
        sample_rows.append({"sample": f"S{s + 1:02d}", **p})

    samples = pd.DataFrame(sample_rows)
    resp_p = samples["phenotype"].map({"inflamed": 0.8, "excluded": 0.3, "desert": 0.15}).to_numpy()
    samples["response"] = np.where(response_draw < resp_p, "R", "NR")
    obs = pd.concat(obs_parts, ignore_index=True)
    obs["response"] = obs["sample"].map(dict(zip(samples["sample"], samples["response"], strict=True)))
    obs.index = [f"cell{i}" for i in range(len(obs))]
    for col in ("sample", "batch", "true_lineage", "true_state", "true_compartment", "true_phenotype", "response"):
        obs[col] = pd.Categorical(obs[col])
    adata = AnnData(X=sp.vstack(X_parts).tocsr(), obs=obs, var=pd.DataFrame(index=genes))
    adata.obsm["spatial"] = np.vstack(xy_parts)
    prog_tab = pd.DataFrame([
        {"program": k, "genes": ",".join(v.genes), "genes_low": ",".join(v.low), "sources": ",".join(v.sources)}
        for k, v in programs.items()
    ])
    adata.uns[_keys.SIMULATION] = {
        "params": {"n_samples": n_samples, "n_cells": n_cells, "tumor_shape": tumor_shape, "noise": noise,
                   "density": density, "seed": seed, "margin_half_width_um": MARGIN_HALF_WIDTH,
                   "stromal_barrier": bool(stromal_barrier)},
        "samples": samples.astype({"apm_loss": bool, "ifng_unresponsive": bool, "stromal_barrier": bool}),
        "programs": prog_tab,
    }
    adata.uns["true_phenotype_colors"] = [_keys.PHENOTYPE_COLORS[c] for c in adata.obs["true_phenotype"].cat.categories]
    return adata

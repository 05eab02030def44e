"""The words of the report: the per-sample summary and the glossary of every column the report shows."""

from __future__ import annotations

import html
import re

import pandas as pd

from . import _keys
from ._core.sample.phenotype import ENRICHED
from ._core.sample.resistance import FIXED_RULES
from ._utils import natural_key
from .pl._utils import readable

# states whose abundance the summary reports as suppressive (the immunosuppression components' cell states)
SUPPRESSIVE_STATES = ("Treg", "TAM M2-like", "M-MDSC-like", "PMN-MDSC-like", "myCAF", "iCAF", "CD8 Tex")
MIN_STATE_FRACTION = 0.01  # a state under 1% of a sample's cells is not called dominant
MAX_SUMMARY_SAMPLES = 40

_EXACT = {
    "phenotype": "immune phenotype: inflamed (CD8 T cells inside the tumour), excluded (CD8 T cells held at the "
                 "margin or in stroma), desert (few CD8 T cells anywhere), or not assessable",
    "confidence": "confidence of the call, 0-1 (how far the features lie from the thresholds that decide it)",
    "basis": "what the phenotype was read from: spatial (cell positions) or expression (cohort-relative, exclusion "
             "inferred, not seen)",
    "reason": "why a sample or region could not be assessed",
    "n_cells": "number of cells",
    "n_effector": "number of effector (CD8 T) cells",
    "n_tumor_cells": "number of malignant cells",
    "n_images": "number of images or fields of view",
    "rho_tumor": "CD8 T cells per mm² inside the tumour",
    "rho_stroma": "CD8 T cells per mm² in the margin and stroma",
    "infiltration_ratio": "share of the CD8 T-cell density that lies inside the tumour: tumour / (tumour + stroma)",
    "immune_axis": "CD8 T-effector programme, robust z across samples (its cohort terciles decide)",
    "t_cell_programmes": "mean of the three T-cell programmes (CD8 T-effector, IFN-gamma, T cell-inflamed GEP), "
                         "each a robust z across samples (reported, not deciding)",
    "stromal_axis": "cohort-relative stromal axis (TGF-beta, CAF programmes; robust z across samples)",
    "cd8_fraction_immune": "CD8 T cells among immune cells",
    "immune_cells": "immune cells counted (the CD8 T share's denominator; the call's confidence rests on it)",
    "cd8_cells": "CD8 T cells counted",
    "decided_by": "the rule that decided the call",
    "reference": "what the expression call was judged against: the cohort (terciles across samples) or absolute "
                 "thresholds",
    "caveat": "what the call cannot show (exclusion from expression is inferred, not seen)",
    "cd8_fraction_all": "CD8 T cells among all cells",
    "tex_fraction_cd8": "terminally exhausted cells among CD8 T cells",
    "gep_enrichment": "T cell-inflamed GEP (Cristescu 2018) against random marker-gene sets of the sample's other "
                      "cell types (null SDs); stands in for the IFN-gamma programme on panels without it",
    "immune_enrichment": "CD8 T-effector programme against random marker-gene sets of the sample's other cell types "
                         "(null SDs; reported, not deciding)",
    "stromal_enrichment": "stromal programmes (pan-fibroblast TGF-beta response, CAFs) against random marker-gene "
                          "sets of the sample's other cell types (null SDs; reported, not deciding)",
    "CD8_T_effector": "CD8 T-effector programme, ssGSEA score of the sample (see Signatures used)",
    "IFNG_6": "IFN-gamma programme (Ayers 2017), ssGSEA score of the sample",
    "Tcell_inflamed_GEP": "T cell-inflamed gene expression profile (Cristescu 2018), ssGSEA score of the sample",
    "Pan_F_TBRS": "pan-fibroblast TGF-beta response (Mariathasan 2018), ssGSEA score of the sample",
    "MFP_CAF": "cancer-associated fibroblast programme (Bagaev 2021), ssGSEA score of the sample",
    "t_cell_enrichment": "T-cell identity genes against random marker-gene sets of the sample's other cell types "
                         "(null SDs; below 0 desert, unless the IFN-gamma programme is enriched)",
    "ifng_enrichment": "IFN-gamma programme (Ayers 2017) against random marker-gene sets of the sample's other cell "
                       f"types (null SDs; from {ENRICHED:g}, above 95% of the random sets, inflamed)",
    "programmes_agreeing": "how many of the three T-cell programmes, each cut into its own cohort terciles, give the "
                           "same call",
    "immune_axis_uncertainty": "standard error of the immune axis: disagreement of the three T-cell programmes and "
                               "the standard error of a cohort tercile",
    "mixing_score": "CD8 T-tumour cell contacts per CD8 T-CD8 T contact (Keren 2018)",
    "normalised_mixing_score": "mixing score relative to its expectation under random placement",
    "effector_tumor_contact_fraction": "share of CD8 T cells touching a malignant cell",
    "inflamed": "tiles called inflamed", "excluded": "tiles called excluded", "desert": "tiles called desert",
    "not assessable": "tiles that could not be called (too few cells, no tumour or no stroma)",
    "n_cd8": "number of CD8 T cells",
    "area_mm2": "tissue area in mm² (each grid square counted once, for the cell nearest to it)",
    "area_tumor_mm2": "area of the tumour region in mm²", "area_stroma_mm2": "area of the stroma in mm²",
    "area_margin_mm2": "area of the invasive margin in mm²",
    "stroma_area_fraction": "share of the tissue area that is stroma (below 10% a field cannot show exclusion)",
    "effector_per_mm2": "CD8 T cells per mm² of tissue",
    "effector_per_mm2_margin": "CD8 T cells per mm² of the invasive margin",
    "effector_per_100_cells_tumor": "CD8 T cells per 100 cells of the tumour region",
    "parenchyma_share": "share of CD8 T cells in the tumour parenchyma (tumour region and its enclosed pockets)",
    "parenchyma_share_null": "the same share expected when CD8 T cells are placed at random among non-tumour cells",
    "parenchyma_share_vs_null": "parenchyma share over its chance level (1 = as random, 0 = none inside)",
    "core_share": "share of CD8 T cells in the tumour core (beyond the margin)",
    "core_share_null": "core share expected at random placement",
    "core_share_vs_null": "core share over its chance level",
    "contact_share": "share of CD8 T cells within contact distance of a malignant cell",
    "contact_share_null": "contact share expected at random placement",
    "contact_share_vs_null": "contact share over its chance level",
    "mixing_score_null": "mixing score expected at random placement",
    "mixing_score_vs_null": "mixing score over its chance level (Keren 2018)",
    "infiltration_vs_null": "the measure the call rests on: CD8 T cells inside the tumour over their chance level "
                            "(inflamed at 0.5 or above)",
    "infiltration_expected": "CD8 T cells expected inside the tumour at random placement",
    "infiltration_p_below_chance": "Poisson probability of so few CD8 T cells inside the tumour by chance",
    "measures_agreeing": "how many of the spatial measures agree with the call",
    "measures_available": "how many spatial measures could be computed",
    "exclusion_assessable": "whether the field has enough stroma (10% of its area) to show exclusion",
    "sample": "sample", "region": "tissue region within a sample (sample:region)",
    "sample or image": "the sample, or the image within it, whose tiles are counted",
    "tiles": "number of square tiles given each call",
    "composite": "immunosuppression composite: mean of the component robust z-scores",
    "n_components": "number of immunosuppression components measured",
    "missing_components": "components that could not be measured",
    "mechanism": "resistance mechanism (review's Table 1)",
    "cycle_steps": "steps of the cancer-immunity cycle the mechanism acts on",
    "value": "the measured value behind the flag",
    "strategies": "classes of treatment strategy that target the mechanism",
    "feature": "per-sample feature compared between the groups",
    "median_difference": "difference of the group medians",
    "cliffs_delta": "Cliff's delta effect size, -1 to 1",
    "U": "Mann-Whitney U statistic",
    "pvalue": "two-sided Mann-Whitney p-value",
    "fdr": "Benjamini-Hochberg false discovery rate across features",
    "signature": "gene signature", "version": "version of the signature", "n_genes": "genes in the signature",
    "n_found": "signature genes found in the data", "scored": "whether the signature was scored",
    "method": "scoring method", "doi": "DOI of the publication that defined the signature",
    "mean_nn_distance_um": "mean distance to the nearest cell (µm)",
    "margin_width_um": "width of the invasive margin (µm)",
    "status": "status of the tumour-compartment assignment",
    "pockets_filled": "enclosed non-tumour pockets narrower than the margin, counted as tumour parenchyma",
    "border_tumor_fraction": "share of tumour-border cells among malignant cells",
}
_PATTERNS = (
    (r"^area_(\w+)_mm2$", "area of the {0} compartment (mm²)"),
    (r"^effector_per_mm2_(\w+)$", "CD8 T cells per mm² in the {0} compartment"),
    (r"^effector_per_100_cells_(\w+)$", "CD8 T cells per 100 cells in the {0} compartment"),
    (r"^cd8_frac_ge(\d)_receptors$", "share of CD8 T cells expressing at least {0} co-inhibitory receptors"),
    (r"^cd8_frac_(.+)$", "share of CD8 T cells expressing {0}"),
    (r"^malignant_frac_(.+)$", "share of malignant cells expressing {0}"),
    (r"^myeloid_frac_(.+)$", "share of myeloid cells expressing {0}"),
    (r"^frac_lineage:(.+)$", "share of the sample's cells called {0}"),
    (r"^frac_state:(.+)$", "share of the sample's cells in state {0}"),
    (r"^score:(.+)$", "mean score of signature {0} over the sample's cells (see Signatures used)"),
    (r"^n_(.+)$", "samples in group {0}"),
    (r"^median_(.+)$", "median in group {0}"),
)
UNDESCRIBED = "no description"


def describe(column: str, context: dict) -> str:
    """The glossary entry of a column name (``"tool:column"`` for the per-sample table)."""
    column = str(column)
    if column in context:
        return context[column]
    _, sep, rest = column.partition(":")
    if sep and not column.startswith(("frac_", "score:")):
        column = rest
        if column in context:
            return context[column]
    if column in _EXACT:
        return _EXACT[column]
    for pattern, text in _PATTERNS:
        m = re.match(pattern, column)
        if m:
            return text.format(*m.groups())
    return UNDESCRIBED


def glossary_context(adata) -> dict:
    """Descriptions the data carry themselves: immunosuppression components and resistance mechanisms."""
    out = {}
    sup = adata.uns.get(_keys.IMMUNOSUPPRESSION)
    if sup is not None:
        for row in sup["components"].itertuples():
            out[str(row.component)] = f"immunosuppression component: {row.measures}"
            out[readable(row.component)] = out[f"immunosuppression:{row.component}"] = out[str(row.component)]
    res = adata.uns.get(_keys.RESISTANCE_PROFILE)
    if res is not None:
        for row in res["long"].drop_duplicates("id").itertuples():
            out[f"resistance_profile:{row.id}"] = (f"resistance mechanism {row.mechanism}: 1 flagged, 0 not "
                                                   "flagged, empty not assessed")
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 else "<1%"


def sample_summaries(adata, s_key: str | None, skipped: pd.DataFrame | None) -> list[str]:
    """One paragraph per sample, in words: phenotype, dominant suppressive states, flagged mechanisms, each with its
    confidence; and the analyses that did not run."""
    ph = adata.uns.get(_keys.IMMUNE_PHENOTYPE, {}).get("table")
    res = adata.uns.get(_keys.RESISTANCE_PROFILE, {}).get("long")
    cohort_flags = adata.uns.get(_keys.RESISTANCE_PROFILE, {}).get("params", {}).get("cohort_flags", True)
    sup = adata.uns.get(_keys.IMMUNOSUPPRESSION, {}).get("table")
    if s_key is not None:
        samples = sorted(pd.unique(adata.obs[s_key].astype(str)), key=natural_key)
    else:  # bulk observations, or cells read as one sample ("all"): as the tools' tables name them
        samples = _table_samples(ph, sup, res)
    states = adata.obs.get(_keys.STATE)
    paras = []
    for sample in samples[:MAX_SUMMARY_SAMPLES]:
        parts = []
        if ph is not None and sample in ph.index.astype(str):
            row = ph.loc[ph.index.astype(str) == sample].iloc[0]
            conf = row.get("confidence")
            conf = f"confidence {float(conf):.2f}" if pd.notna(conf) else "no confidence"
            call = str(row["phenotype"])
            why = f": {row['reason']}" if str(row.get("reason", "") or "").strip() not in ("", "nan") else ""
            parts.append(f"Immune phenotype <b>{html.escape(call)}</b>{html.escape(why)} "
                         f"({html.escape(str(row.get('basis', '')))}; {conf}).")
        elif skipped is not None and "tool" in skipped and (skipped["tool"] == "immune_phenotype").any():
            parts.append("No immune phenotype (not run; the reason follows the summary).")
        if states is not None:
            cells = (adata.obs[s_key].astype(str) == sample) if s_key is not None else pd.Series(True,
                                                                                                   adata.obs_names)
            st = states[cells.to_numpy()].astype(str)
            frac = st.value_counts(normalize=True)
            top = [(s, f) for s, f in frac.items() if s in SUPPRESSIVE_STATES and f >= MIN_STATE_FRACTION][:2]
            if top:
                conf = adata.obs.get(_keys.CONFIDENCE)
                items = []
                for s, f in top:
                    c = "" if conf is None else (
                        f", mean call confidence {float(conf[cells.to_numpy()][(st == s).to_numpy()].mean()):.2f}")
                    items.append(f"{html.escape(s)} ({_pct(f)} of cells{c})")
                parts.append("Dominant suppressive states: " + "; ".join(items) + ".")
            else:
                parts.append("No suppressive state reaches 1% of cells.")
        if sup is not None and sample in sup.index.astype(str) and len(sup) > 1:
            comp = sup.loc[sup.index.astype(str) == sample, "composite"].iloc[0]
            if pd.notna(comp):
                parts.append(f"Immunosuppression composite {float(comp):+.2f} (robust z across samples).")
        if res is not None:
            mine = res[(res["sample"].astype(str) == sample)]
            flagged = mine[mine["flagged"] == 1]
            if len(flagged):
                items = [_flag_text(r) for r in flagged.itertuples()]
                parts.append("Flagged resistance mechanisms: " + "; ".join(items) + ".")
            elif len(mine):
                few = "" if cohort_flags else "; cohort-relative rules need at least three samples"
                parts.append(f"No resistance mechanism flagged in the sample as a whole "
                             f"({int(mine['flagged'].notna().sum())} of {len(mine)} assessable{few}).")
        if not parts:  # only scores, or nothing yet: say so rather than leave the sample's name alone
            parts.append("no per-sample result: the phenotype, cell states, immunosuppression and resistance "
                         "profile are written by tmt.tl.immune_phenotype, annotate, immunosuppression and "
                         "resistance_profile (or tmetoolkit run).")
        paras.append(f"<p class='sample'><b>{html.escape(sample)}</b>: " + " ".join(parts) + "</p>")
    if len(samples) > MAX_SUMMARY_SAMPLES:
        paras.append(f"<p class='meta'>The first {MAX_SUMMARY_SAMPLES} of {len(samples)} samples; the per-sample "
                     "table holds them all.</p>")
    return paras


def _table_samples(phenotype: pd.DataFrame | None, suppression: pd.DataFrame | None,
                   resistance: pd.DataFrame | None) -> list[str]:
    """The samples of the first table a tool made (the phenotype's, immunosuppression's, the resistance profile's
    long table), or ``["all"]``."""
    if phenotype is not None:
        return [str(s) for s in phenotype.index]
    if suppression is not None:
        return [str(s) for s in suppression.index]
    if resistance is not None:
        return [str(s) for s in pd.unique(resistance["sample"])]
    return ["all"]


def _flag_text(row) -> str:
    """``"Regulatory T cells (Tregs) (z +2.1 across samples; evidence clinical)"``; a mechanism flagged by a fixed
    threshold gives its value against it instead (its z says nothing about the flag):
    ``"B2M/HLA mutations (APM/MHC-I programme ... -0.72, flagged below -0.5; evidence clinical)"``."""
    rule = FIXED_RULES.get(str(row.mechanism))
    if rule is not None:
        value = f"{row.measure} {float(row.value):.2g}, flagged {rule}; " if pd.notna(row.value) else ""
    else:
        value = f"z {float(row.z):+.1f} across samples; " if pd.notna(row.z) else ""
    evidence = html.escape(str(row.evidence_level).lower())
    return f"{html.escape(str(row.mechanism))} ({html.escape(value)}evidence {evidence})"

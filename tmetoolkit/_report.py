"""``tmt.report``: one self-contained HTML file with every figure and table tmetoolkit computed."""

from __future__ import annotations

import base64
import contextvars
import html
import io
from datetime import date
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from . import __version__, _keys
from ._report_text import describe, glossary_context, sample_summaries
from ._utils import TmtInputError
from .tl._annotate import mixed_evidence_summary, split_summary, unassigned_summary
from .tl._checkpoints import is_protein
from .tl._tables import NOT_PER_SAMPLE, is_bulk, resolve_sample_key

_SHOWN: contextvars.ContextVar[dict] = contextvars.ContextVar("columns shown in the report")
COLLAPSE_ROWS, COLLAPSE_COLUMNS = 15, 12  # larger tables are folded (<details>) and offered as CSV

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{border-bottom:2px solid #d62728;padding-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f5f5f5}.caveat{background:#fff4e5;border-left:4px solid #ff7f0e;padding:.5em 1em}
img{max-width:100%}.meta{color:#666;font-size:12px}.scroll{overflow-x:auto}
details{margin:.4em 0}summary{cursor:pointer;color:#1f4e79}a.csv{font-size:12px;margin-left:.6em}
.summary p.sample{margin:.4em 0}dl.glossary dt{font-weight:600;font-family:monospace;font-size:12px}
dl.glossary dd{margin:0 0 .3em 1.5em;font-size:13px}.skipped{background:#eef3f8;border-left:4px solid #4a7ab5;
padding:.5em 1em}
"""


# 6-pt text (scale bars, crowded ticks) 12 px tall: at 90 dpi it was 7 px; the demo report grew 1.7x (1.9 -> 3.3 MB)
FIGURE_DPI = 144


def _fig_html(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/></figure>'


def _table_html(df, max_rows: int = 60, digits: int = 3, *, name: str = "table") -> str:
    """A table with its columns entered in the glossary; large ones folded and downloadable as CSV (the whole
    table, not only the rows shown). Columns without a single value (an empty ``reason``) are left out."""
    df = df.loc[:, [c for c in df.columns if not _empty(df[c])]]
    shown = _SHOWN.get(None)
    if shown is not None:
        for c in [*df.columns, *df.index.names, df.columns.name]:
            if c is not None:
                shown.setdefault(str(c), None)
    table = df.head(max_rows).to_html(float_format=lambda v: f"{v:.{digits}g}", na_rep="–", border=0)
    more = (f"<p class='meta'>The first {max_rows} of {len(df)} rows; the whole table is in the CSV, in "
            "adata.uns (and in tmt.get.sample_table / region_table).</p>" if len(df) > max_rows else "")
    csv = base64.b64encode(df.to_csv().encode()).decode()
    link = (f"<a class='csv' download='{html.escape(name)}.csv' href='data:text/csv;base64,{csv}'>"
            f"download {html.escape(name)}.csv</a>")
    body = f"<div class='scroll'>{table}</div>{more}"
    if len(df) > COLLAPSE_ROWS or df.shape[1] > COLLAPSE_COLUMNS:
        return (f"<details><summary>Table: {len(df):,} rows x {df.shape[1]:,} columns (click to show)</summary>"
                f"{body}</details>{link}")
    return body + link


def _empty(column: pd.Series) -> bool:
    values = column.dropna()
    return values.astype(str).str.strip().eq("").all() if len(values) else True


MAX_MAPS = 24  # spatial maps drawn in the report; beyond that, the phenotype calls take turns


def _mapped_samples(tab: pd.DataFrame) -> list:
    """Samples whose maps the report draws: all up to ``MAX_MAPS``, else the same number of each call in turn."""
    if len(tab) <= MAX_MAPS:
        return list(tab.index)
    by_call = [list(g.index) for _, g in tab.groupby(tab["phenotype"].astype(str), sort=False)]
    chosen: list = []
    while len(chosen) < MAX_MAPS and any(by_call):
        for names in by_call:
            if names and len(chosen) < MAX_MAPS:
                chosen.append(names.pop(0))
    return [s for s in tab.index if s in set(chosen)]


def _regions_html(adata) -> str:
    """Regions of the spatial phenotype: the user's regions one by one, tiles counted per phenotype and image."""
    from . import pl

    ph = adata.uns[_keys.IMMUNE_PHENOTYPE]
    regions, params = ph.get("regions"), ph["params"]
    if regions is None or not len(regions):
        return ""
    if params.get("region_key"):
        title = f"Regions ({html.escape(str(params['region_key']))})"
        table = regions[[c for c in ("phenotype", "confidence", "reason", "n_cells", "exclusion_assessable",
                                     "effector_per_mm2", "infiltration_vs_null", "rho_tumor", "rho_stroma")
                         if c in regions.columns]]
    else:
        title = f"Tiles of {float(params.get('tile_size_um', 0)):g} µm"
        owner = pd.Series(regions.index.str.rsplit(":", n=1).str[0], index=regions.index, name="sample or image")
        table = pd.crosstab(owner, regions["phenotype"].astype(str).rename("tiles"))
    fig = pl.immune_phenotype(adata, regions=True).figure
    return f"<h3>{title}</h3>" + _fig_html(fig, "regions against thresholds") + _table_html(table, name="regions")


def _evidence_caveat(adata) -> str:
    """What the calls rest on: marker gates of a protein panel, or transcripts."""
    if is_protein(adata):
        return ("Cell states are called from protein marker gates (e.g. CD163+ macrophages as M2-like, FOXP3+ "
                "CD4 T cells as Tregs): they cannot prove suppression.")
    return "Cell states and programmes are transcriptional: MDSC-like states cannot prove suppression."


def _overview(adata, s_key, bulk: bool) -> str:
    n_samples = adata.obs[s_key].nunique() if s_key else (adata.n_obs if bulk else 1)
    obs = "observation" if adata.n_obs == 1 else "observations"
    return (f"<p>{adata.n_obs:,} {obs} x {adata.n_vars:,} features; {_input_text(adata)}; "
            f"samples: {n_samples}{' (bulk: each observation is a sample)' if bulk and not s_key else ''}.</p>")


def _input_text(adata) -> str:
    """What the input was, as the run, scoring or annotate on a protein panel (which scores no programmes) recorded
    it; when none did, the cell types the results rest on."""
    inp = {**adata.uns.get(_keys.RUN, {}), **adata.uns.get(_keys.ANNOTATE, {}).get("params", {}),
           **adata.uns.get(_keys.SCORES, {}).get("params", {})}
    known = [f"{label}: {html.escape(str(inp[key]))}" for key, label in (("input_state", "input"),
                                                                          ("species", "species")) if key in inp]
    if known:
        return "; ".join(known)
    given = adata.uns.get(_keys.IMMUNE_PHENOTYPE, {}).get("params", {}).get("cell_type_key")
    if given and given != _keys.LINEAGE:
        return (f"cell types given in adata.obs[{html.escape(repr(str(given)))}] (expression not read: no "
                "signatures scored, no cells annotated)")
    return "expression not read (no signatures scored, no cells annotated)"


SPATIAL_FEATURES = ("exclusion_assessable", "effector_per_mm2", "infiltration_vs_null", "contact_share_vs_null",
                    "mixing_score_vs_null", "rho_tumor", "rho_stroma")
# the features each rule of the expression phenotype decides by (tmetoolkit._core.sample.phenotype): cohort terciles
# of the CD8 T-effector programme (a sample without CD8 T cells among its immune cells is a desert), CD8 T cells
# among immune cells, or a sample's T-cell genes and IFN-gamma programme against its other cell types' markers
EXPRESSION_FEATURES = {"cohort": ("immune_axis", "programmes_agreeing", "immune_axis_uncertainty",
                                  "cd8_fraction_immune"),
                       "cell composition": ("cd8_fraction_immune", "cd8_cells", "immune_cells"),
                       "expression": ("t_cell_enrichment", "ifng_enrichment")}


def _call_features(params: dict) -> tuple[str, ...]:
    """The columns of the phenotype table that decided the calls."""
    if params.get("basis") != "expression":
        return SPATIAL_FEATURES
    rule = "cohort" if params.get("reference") == "cohort" else params.get("decided_by", "expression")
    return EXPRESSION_FEATURES.get(rule, ())


def _phenotype_section(adata, s_key, caveats: list[str]) -> str | None:
    from . import pl

    ph = adata.uns.get(_keys.IMMUNE_PHENOTYPE)
    if ph is None:
        return None
    tab = ph["table"]
    features = [c for c in ["decided_by", *_call_features(ph["params"])] if c in tab.columns]
    body = _table_html(tab[["phenotype", "confidence", "basis", "reason", *features]], name="immune_phenotype")
    if ph["params"].get("basis") == "spatial" and "spatial" in adata.obsm:
        body += _fig_html(pl.immune_phenotype(adata).figure, "phenotype features against thresholds")
        map_key = ph["params"].get("sample_key") or None  # the samples the phenotype called, which the maps show
        map_key = map_key if map_key in adata.obs else s_key
        # a subset of analysed data keeps the tables of all its samples: only samples with cells have a map
        present = set(adata.obs[map_key].astype(str)) if map_key else {"all"}
        shown = [s for s in _mapped_samples(tab) if str(s) in present]
        params = ph["params"]  # the cell types the phenotype was made from: the user's, or tmetoolkit's lineages
        effectors = list(params.get("effector_labels", ["CD8 T"]))
        if shown:
            body += _fig_html(pl.spatial(adata, params.get("cell_type_key") or _keys.LINEAGE, sample_key=map_key,
                                         samples=shown, highlight=effectors[0] if len(effectors) == 1 else None),
                              "spatial maps")
        if len(shown) < len(tab):
            body += (f"<p class='meta'>Maps of {len(shown)} of {len(tab)} samples, taking each call in turn; "
                     "tmt.pl.spatial(adata, samples=[...]) draws any of them.</p>")
        return body + _regions_html(adata)
    if ph["params"].get("basis") == "expression":
        body += _fig_html(pl.immune_phenotype(adata).figure, "expression-based phenotype")
    caveats.append("Immune phenotype inferred from expression: exclusion was inferred, not seen.")
    return body


def _subset_caveat(adata) -> str | None:
    """A subset of analysed data keeps every tool's table of all the samples it was made on (and the figures and
    cohort z-scores drawn from them): the tools whose tables hold samples without cells here, or ``None``."""
    tools, gone = [], []
    for name, v in adata.uns.items():
        if not (name.startswith(_keys.PREFIX) and name not in NOT_PER_SAMPLE and isinstance(v, dict)
                and isinstance(v.get("table"), pd.DataFrame)):
            continue
        key = str(v.get("params", {}).get("sample_key") or "")  # the samples the tool called
        present = set(adata.obs[key].astype(str)) if key in adata.obs else {"all", *adata.obs_names.astype(str)}
        missing = [str(s) for s in v["table"].index if str(s) not in present]
        if missing:
            tools.append(name.removeprefix(_keys.PREFIX).replace("_", " "))
            gone += [s for s in missing if s not in gone]
    if not tools:
        return None
    which = (f"The {tools[0]} table holds" if len(tools) == 1
             else f"The {', '.join(tools[:-1])} and {tools[-1]} tables hold")
    return (f"{html.escape(which)} {len(gone)} sample(s) without cells in these data "
            f"({html.escape(', '.join(gone[:5]))}{' ...' if len(gone) > 5 else ''}): the tools ran on more cells "
            "than these, and their figures and cohort z-scores still include those samples; rerun them on this "
            "subset for results of its own.")


def _cell_state_section(adata, s_key, caveats: list[str]) -> str | None:
    from . import pl

    if _keys.LINEAGE not in adata.obs:
        return None
    body = _fig_html(pl.composition(adata, sample_key=s_key).figure, "lineage composition")
    states = _state_panels(adata, s_key)
    if states is not None:
        body += _fig_html(states, "cell states within each lineage")
    annotated = adata.uns.get(_keys.ANNOTATE, {})
    if "gates" in annotated:
        body += _fig_html(pl.gates(adata), "protein marker gates")
    if annotated:
        try:
            dots = _fig_html(pl.markers(adata, n_genes=2).figure, "genes or markers per state")
            body += f"<h3>{'Markers' if 'gates' in annotated else 'Genes'} behind the state calls</h3>" + dots
        except ValueError:  # no cell got a label that a signature rule decides
            pass
    rules = annotated.get("rules")
    if rules is not None and (~rules["assessable"].astype(bool)).any():
        # "Pericyte|pericyte": one of several labels deciding a lineage, shown as "Pericyte: pericyte"
        labels = ", ".join(dict.fromkeys(str(lab).replace("|", ": ")
                                         for lab in rules.loc[~rules["assessable"].astype(bool), "label"]))
        panel = "marker panel" if "gates" in annotated else "gene panel"
        caveats.append(f"Not assessable with this {panel}: {html.escape(labels)}.")
    if rules is not None and "genes_read" in rules:
        from ._core.annotation.markers import lineage_markers
        from ._core.annotation.rna_calls import single_marker_labels

        single = single_marker_labels(rules, lineage_markers().complexes)
        if len(single):
            named = ", ".join(f"{str(r.label).replace('|', ': ')} ({r.n_cells} cells on {r.gene}"
                              + (", a stand-in)" if r.stand_in else ")") for r in single.itertuples())
            caveats.append(f"Read from one marker gene on this gene panel: {html.escape(named)}. Other cell types "
                           "may make that gene too.")
    unassigned = unassigned_summary(annotated.get("unassigned"))
    if unassigned:
        caveats.append(f"{html.escape(unassigned)}. Cells of types the markers do not name (progenitors, glia, "
                       "doublets) are meant to stay unassigned; tmt_confidence ranks the calls that were made.")
    mixed = mixed_evidence_summary(annotated.get("mixed_evidence"))
    if mixed:
        caveats.append(f"{html.escape(mixed)}: in segmented spatial data, transcripts assigned to the wrong cell. "
                       "Their calls rest on the stronger lineage.")
    splits = split_summary(_present(adata, annotated.get("splits"), annotated.get("params", {}).get("sample_key")))
    if splits:
        caveats.append(f"{html.escape(splits)}. MDSC-like and progenitor-exhausted cells are called only where "
                       "they stand apart from the sample's other monocytes, neutrophils or naive CD8 T cells; their "
                       "programmes are scored regardless.")
    return body


def _state_panels(adata, s_key):
    """One composition panel per lineage with states (CD8 T, CD4 T, myeloid, neutrophils, fibroblasts): each
    panel has few colours, and a rare state such as CD8 Tex is not grouped away beside abundant cell types."""
    from . import pl

    lineages = [lin for lin in _keys.states() if (adata.obs[_keys.LINEAGE].astype(str) == lin).any()]
    if not lineages:
        return None
    n_rows = -(-len(lineages) // 2)
    n_samples = adata.obs[s_key].nunique() if s_key else 1
    fig, axes = plt.subplots(n_rows, 2, figsize=(13, n_rows * (0.3 * n_samples + 1.4)), squeeze=False)
    for ax, lin in zip(axes.ravel(), lineages, strict=False):
        cells = adata[(adata.obs[_keys.LINEAGE].astype(str) == lin).to_numpy()]
        pl.composition(cells, sample_key=s_key, key=_keys.STATE, ax=ax)
        ax.set_title(f"{lin}: states per sample", fontsize=10)
        ax.set_xlabel(f"fraction of {lin} cells")
    for ax in axes.ravel()[len(lineages):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _checkpoint_section(adata, s_key, caveats: list[str]) -> str | None:
    from . import pl

    if _keys.CHECKPOINTS not in adata.uns:
        return None
    return (_fig_html(pl.checkpoints(adata).figure, "checkpoint co-expression")
            + _table_html(adata.uns[_keys.CHECKPOINTS]["table"], name="checkpoints"))


def _suppression_section(adata, s_key, caveats: list[str]) -> str | None:
    from . import pl

    sup = adata.uns.get(_keys.IMMUNOSUPPRESSION)
    if sup is None:
        return None
    # z-scores across samples need two of them; one sample's values are in the table
    body = _fig_html(pl.immunosuppression(adata).figure, "immunosuppression components") if len(
        sup["table"]) > 1 else ""
    body += _table_html(sup["table"], name="immunosuppression")
    if "regions" in sup:
        body += (f"<h3>Per region ({html.escape(str(sup['params'].get('region_key', '')))})</h3>"
                 + _fig_html(pl.immunosuppression(adata, regions=True).figure, "immunosuppression per region")
                 + _table_html(sup["regions"], name="immunosuppression_regions"))
    return body


def _flagged_html(long: pd.DataFrame, unit: str, none: str) -> str:
    """The flagged mechanisms of each sample or region with their cycle steps and strategy classes, or ``none``."""
    flagged = long[long["flagged"] == 1].set_index(unit)[["mechanism", "cycle_steps", "value", "strategies"]]
    return _table_html(flagged, max_rows=200, name=f"flagged_per_{unit}") if len(flagged) else f"<p>{none}</p>"


def _resistance_section(adata, s_key, caveats: list[str]) -> str | None:
    from . import pl

    res = adata.uns.get(_keys.RESISTANCE_PROFILE)
    if res is None:
        return None
    few = "" if res["params"].get("cohort_flags") else " (cohort-relative flags need at least three samples)"
    body = (_fig_html(pl.resistance_profile(adata).figure, "resistance profile")
            + "<h3>Flagged mechanisms and strategy classes</h3>"
            + _flagged_html(res["long"], "sample", f"No mechanism is flagged in any sample{few}."))
    if "regions" in res:
        body += (f"<h3>Per region ({html.escape(str(res['params'].get('region_key', '')))})</h3>"
                 + _fig_html(pl.resistance_profile(adata, regions=True).figure, "resistance per region")
                 + _flagged_html(res["regions_long"], "region", "No mechanism is flagged in any region."))
    return body


def _comparison_section(adata, s_key, caveats: list[str]) -> str | None:
    from . import pl

    cmp = adata.uns.get(_keys.COMPARE_GROUPS)
    if cmp is None:
        return None
    g = [html.escape(str(x)) for x in cmp["params"]["groups"]]
    body = (f"<p>{g[0]} against {g[1]} ({html.escape(str(cmp['params']['group_key']))}); one value per sample, "
            "two-sided Mann-Whitney U, Benjamini-Hochberg FDR across features.</p>")
    body += _fig_html(pl.compare_groups(adata).figure, "group comparison")
    return body + _table_html(cmp["table"], max_rows=30, name="group_comparison")


def _signature_section(adata) -> str | None:
    from ._core.annotation.rules import published_name
    from .sig import get as get_sig
    from .sig import list as list_sigs

    sig = adata.uns.get(_keys.SCORES, {}).get("signatures")
    if sig is None:
        return None
    rows = sig[["signature", "version", "n_genes", "n_found", "scored", "method"]].copy()
    registry = set(list_sigs()["name"])
    # annotate's derived sets ("<name>_specific", ...) are published sets without some of their genes
    rows["doi"] = [get_sig(base).doi if (base := published_name(s)) in registry else "" for s in rows["signature"]]
    return _table_html(rows, max_rows=400, name="signatures")


def _present(adata, splits: pd.DataFrame | None, sample_key: str | None) -> pd.DataFrame | None:
    """The rows of annotate's ``splits`` of samples the data still hold (a subset keeps the table of all)."""
    key = sample_key or ("sample" if "sample" in adata.obs else None)
    if splits is None or key is None or key not in adata.obs:
        return splits
    return splits[splits["sample"].astype(str).isin(set(adata.obs[key].astype(str)))]


def _region_flags_summary(adata) -> str:
    """The mechanisms flagged per region, sample by sample, beside the per-sample paragraphs (a region can pass a
    threshold that its whole sample does not): ``""`` when no region was profiled."""
    res = adata.uns.get(_keys.RESISTANCE_PROFILE, {})
    long = res.get("regions_long")
    if long is None or not len(long):
        return ""
    key = html.escape(str(res.get("params", {}).get("region_key", "")))
    flagged = long[long["flagged"] == 1]
    if not len(flagged):
        return f"<p class='regions'>No resistance mechanism flagged in any region ({key}).</p>"
    items = []
    for sample, rows in flagged.groupby(flagged["sample"].astype(str), sort=False):
        regions = rows["region"].astype(str).str.removeprefix(f"{sample}:")
        per = [f"{html.escape(str(m))} in {html.escape(', '.join(dict.fromkeys(r)))}"
               for m, r in regions.groupby(rows["mechanism"].astype(str), sort=False)]
        items.append(f"<b>{html.escape(sample)}</b>: " + "; ".join(per))
    return (f"<p class='regions'>Flagged per region ({key}; see Resistance mechanisms): " + ". ".join(items)
            + ".</p>")


def _caveats_html(caveats: list[str]) -> str:
    """The caveats under their heading, or nothing when none applies."""
    if not caveats:
        return ""
    return "<h2 id='caveats'>Caveats</h2>" + "".join(f"<p class='caveat'>{c}</p>" for c in caveats)


SECTIONS = (("Immune phenotype", _phenotype_section), ("Cell states", _cell_state_section),
            ("Checkpoint receptors and ligands", _checkpoint_section), ("Immunosuppression", _suppression_section),
            ("Resistance mechanisms", _resistance_section), ("Group comparison", _comparison_section))


def report(adata, path, *, sample_key: str | None = None) -> Path:
    """Write a self-contained HTML report (figures embedded, readable offline) of what tmetoolkit computed.

    A summary comes first: one paragraph per sample in words (phenotype, dominant suppressive states, flagged
    resistance mechanisms, each with its confidence) and the analyses that could not run on the data, with the
    reason. Then sections for every result present: input and parameters, immune phenotype (maps and thresholds, per
    sample and per region), cell composition, checkpoint co-expression, immunosuppression, resistance profile, the
    group comparison, the per-sample table, the signatures used (version, citation, DOI, genes found) and the
    caveats that apply; a glossary explains every column shown. Tables larger than 15 rows or 12 columns are
    folded, and every table can be downloaded as CSV from the page.

    Parameters
    ----------
    adata
        Data analysed with tmetoolkit's tools.
    path
        Output ``.html`` file.
    sample_key
        ``obs`` column of samples (default: the one the tools recorded).

    Returns
    -------
    The path written.
    """
    from . import get

    path = _report_path(path)
    # figures are drawn into the file and closed; no backend switch or ioff(), which would stop later figures
    # from showing in Jupyter when the report makes the session's first figure (matplotlib#24351)
    s_key = resolve_sample_key(adata, sample_key)
    bulk = is_bulk(adata)
    caveats: list[str] = []
    shown: dict = {}
    token = _SHOWN.set(shown)
    try:
        sections = [("Overview", _overview(adata, s_key, bulk))]
        for title, build in SECTIONS:
            body = build(adata, s_key, caveats)
            if body is not None:
                sections.append((title, body))
        sections.append(("Per-sample table", "<p>One row per sample: every number of every tool.</p>"
                         + _table_html(get.sample_table(adata, s_key), max_rows=400, name="sample_table")))
        signatures = _signature_section(adata)
        if signatures is not None:
            sections.append(("Signatures used", signatures))
    finally:
        _SHOWN.reset(token)
    skipped = adata.uns.get(_keys.RUN, {}).get("skipped")
    notes = ""
    if isinstance(skipped, pd.DataFrame) and len(skipped):
        notes = "".join(f"<p class='skipped'>Not run: <b>{html.escape(str(r.step))}</b>: {html.escape(str(r.reason))}"
                        "</p>" for r in skipped.itertuples())
    if _keys.LINEAGE in adata.obs or bulk:
        caveats.append(_evidence_caveat(adata))
    subset = _subset_caveat(adata)
    if subset is not None:
        caveats.insert(0, subset)
    context = glossary_context(adata)
    if s_key is not None:
        context[str(s_key)] = f"sample (adata.obs[{s_key!r}])"
    entries = {c: f"<dt>{html.escape(c)}</dt><dd>{html.escape(describe(c, context))}</dd>"
               for c in sorted(shown, key=str.lower) if c != ""}
    prefixed = [c for c in entries if ":" in c]  # columns of the per-sample table, named tool:column
    glossary = ("".join(v for c, v in entries.items() if c not in prefixed)
                + (f"<details><summary>Columns of the per-sample table ({len(prefixed)})</summary>"
                   + "".join(entries[c] for c in prefixed) + "</details>" if prefixed else ""))
    summary = "".join(sample_summaries(adata, s_key, skipped if isinstance(skipped, pd.DataFrame) else None))
    summary += _region_flags_summary(adata)
    parts = [("<!DOCTYPE html><html><head><meta charset='utf-8'><title>tmetoolkit report</title>"
              f"<style>{CSS}</style></head><body><h1>Tumour microenvironment report</h1>"),
             f"<p class='meta'>tmetoolkit {__version__}, {date.today().isoformat()}</p>",
             f"<section id='summary' class='summary'><h2>Summary</h2>{summary}{notes}</section>",
             _caveats_html(caveats)]
    for title, body in sections:
        anchor = title.lower().replace(" ", "-")
        parts.append(f"<section id='{anchor}'><h2>{html.escape(title)}</h2>{body}</section>")
    parts.append("<section id='glossary'><h2>Glossary</h2><p>Every column of the tables above.</p>"
                 f"<dl class='glossary'>{glossary}</dl></section>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _report_path(path) -> Path:
    """``path`` as a Path, refused before any figure is drawn when no file can be written there (a folder, or a
    file standing where a folder of the path should be): Python's IsADirectoryError came after the whole report."""
    path = Path(path)
    if path.is_dir():
        msg = f"{str(path)!r} is a folder: give the report a file name, e.g. {str(path / 'report.html')!r}."
        raise TmtInputError(msg)
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        msg = f"cannot write {str(path)!r}: {str(blocked)!r} is a file, not a folder; choose another path."
        raise TmtInputError(msg)
    return path

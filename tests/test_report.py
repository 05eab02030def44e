import re
import shutil
import subprocess

import anndata as ad
import numpy as np
import pytest

import tmetoolkit as tmt
from tmetoolkit._cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "-o", str(out), "-q"]) == 0
    return out


def test_report_is_self_contained(demo):
    html = (demo / "report.html").read_text()
    for section in ("caveats", "immune-phenotype", "cell-states", "checkpoint-receptors-and-ligands",
                    "immunosuppression", "resistance-mechanisms", "group-comparison", "per-sample-table",
                    "signatures-used"):
        assert f"id='{section}'" in html, section
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 8
    assert "Genes behind the state calls" in html
    assert not re.search(r'(src|href)="https?://', html)  # nothing fetched from the network
    # tiles of the spatial phenotype, counted per sample: the demo's 6 samples are 1,000 um across (2 x 2 tiles)
    tiles = html[html.index("Tiles of 500 µm"):].split("</section>")[0]
    assert tiles.count("<th>S0") == 6 and "<th>inflamed</th>" in tiles


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package 'chromium') not installed")
def test_report_renders_in_headless_chromium(demo, tmp_path):
    """The rendered page: the summary first, a paragraph per sample in words with confidences; every column of
    every table in the glossary; large tables folded and downloadable as CSV; readable figures."""
    import base64
    import io

    import pandas as pd

    shot = tmp_path / "report.png"
    run = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*run, "--dump-dom", f"file://{demo / 'report.html'}"], capture_output=True, text=True,
                         check=False, timeout=120)
    assert dom.returncode == 0
    page = dom.stdout
    assert page.count("<section") >= 9 and page.count("<img") >= 7
    # the summary comes first: one paragraph per sample with the phenotype, suppressive states and mechanisms
    assert re.findall(r"<h2[^>]*>([^<]+)</h2>", page)[0] == "Summary"
    summary = page[page.index('id="summary"'):page.index('id="caveats"')]
    paragraphs = re.findall(r'<p class="sample">(.*?)</p>', summary, flags=re.DOTALL)
    assert len(paragraphs) == 6
    for p in paragraphs:
        assert re.search(r"Immune phenotype <b>(inflamed|excluded|desert)</b> \(spatial; confidence [01]\.\d\d\)", p)
        assert re.search(r"Dominant suppressive states: [^(]+\(\d+% of cells, mean call confidence [01]\.\d\d", p)
        assert "resistance mechanism" in p
    assert re.search(r"Flagged resistance mechanisms: .+\(z [+-]\d", summary)
    # every column header shown has a glossary entry, and every entry says something
    glossary = page[page.index('id="glossary"'):]
    terms = set(re.findall(r"<dt>(.*?)</dt>", glossary))
    headers = set()
    for head in re.findall(r"<thead>(.*?)</thead>", page, flags=re.DOTALL):
        headers |= {h for h in re.findall(r"<th[^>]*>(.*?)</th>", head, flags=re.DOTALL) if h.strip()}
    assert len(headers) > 250 and not headers - terms, sorted(headers - terms)[:10]
    assert "no description" not in glossary
    # wide tables are folded and the whole table is on the page as CSV
    assert page.count("<details>") >= 4
    links = dict(re.findall(r'download="([^"]+)" href="data:text/csv;base64,([^"]+)"', page))
    table = pd.read_csv(io.BytesIO(base64.b64decode(links["sample_table.csv"])), index_col=0)
    assert table.shape[0] == 6 and table.shape[1] > 250
    assert len(pd.read_csv(io.BytesIO(base64.b64decode(links["group_comparison.csv"])))) > 30  # more than shown
    subprocess.run([*run, "--window-size=1200,2000", f"--screenshot={shot}", f"file://{demo / 'report.html'}"],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 50_000  # a rendered page with figures, not a blank one


def test_report_on_partial_results(sim_small, tmp_path):
    tmt.tl.score(sim_small, "tam")
    path = tmt.report(sim_small, tmp_path / "r.html")
    html = path.read_text()
    assert "id='signatures-used'" in html and "id='immune-phenotype'" not in html


def test_a_report_path_that_cannot_be_a_file_is_refused_before_drawing(sim_small, tmp_path, monkeypatch):
    """tmt.report(adata, "results") with results a folder failed with Python's IsADirectoryError, after drawing
    every figure; a path through a file, with FileExistsError. Both say what to give instead, before any work."""
    from tmetoolkit import _report

    tmt.tl.score(sim_small, "tam")
    monkeypatch.setattr(_report, "_overview", lambda *a, **k: pytest.fail("drew before checking the path"))
    with pytest.raises(tmt.TmtInputError, match=r"is a folder: give the report a file name, e.g. .*report.html"):
        tmt.report(sim_small, tmp_path)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(tmt.TmtInputError, match=r"a_file' is a file, not a folder"):
        tmt.report(sim_small, tmp_path / "a_file" / "r.html")


def test_report_warns_about_mixed_lineage_evidence(tmp_path, monkeypatch):
    """A MERFISH window where a sixth of the cells carry two lineages' marker evidence gets a caveat naming the pairs
    once the share passes the warning level (lowered here from 20% to 10%), and one saying how many cells are
    unassigned and why."""
    from tmetoolkit.tl import _annotate

    from .conftest import real_data

    monkeypatch.setattr(_annotate, "MIXED_WARN", 0.1)
    c = real_data("chen")
    with pytest.warns(tmt._utils.TmtWarning, match="two lineages"):
        tmt.tl.annotate(c)
    html = tmt.report(c, tmp_path / "r.html").read_text()
    caveat = re.search(r"<p class='caveat'>(\d+)% of cells carry strong evidence of two lineages \(([^)]*)\)", html)
    assert caveat is not None and int(caveat.group(1)) >= 10
    assert "Monocyte/Macrophage + " in caveat.group(2)
    # and how many cells are unassigned, and why (annotate's uns table)
    unassigned = re.search(r"<p class='caveat'>([\d.]+)% of cells are unassigned \(([^)]*)\)", html)
    assert unassigned is not None
    assert abs(float(unassigned.group(1)) - 100 * (c.obs["tmt_lineage"] == "unassigned").mean()) < 0.06
    assert "speak against the lineage the classifier chose" in unassigned.group(2)
    missing = re.search(r"<p class='caveat'>Not assessable with this gene panel: ([^<]*)</p>", html)
    assert missing is None or "|" not in missing.group(1), missing  # "DC: cDC1", not the rule key "DC|cDC1"


def test_report_says_where_no_mdsc_like_population_was_split_off(sim_small, tmp_path):
    """A sample too small to show two populations has no MDSC-like cells called: the report says so rather than
    letting 0% read as their absence."""
    one = sim_small[sim_small.obs["sample"] == "S01"].copy()
    small = one[:300].copy()  # too few monocytes and neutrophils to fit two populations
    tmt.tl.annotate(small)
    splits = small.uns["tmt_annotate"]["splits"]
    assert not splits.loc[splits["state"].str.contains("MDSC"), "applied"].any()
    html = tmt.report(small, tmp_path / "r.html").read_text()
    caveat = re.search(r"<p class='caveat'>(M-MDSC-like cells were not split off: [^<]*)</p>", html)
    assert caveat is not None and "too few to tell" in caveat.group(1), caveat
    assert "of 1 samples" not in html and "(1)" not in caveat.group(1)
    # a subset keeps annotate's table of every sample; the caveat counts the samples it holds
    tmt.tl.annotate(three := sim_small.copy())
    assert len(three.uns["tmt_annotate"]["splits"]["sample"].unique()) == 3
    html = tmt.report(three[three.obs["sample"] == "S01"].copy(), tmp_path / "s.html").read_text()
    assert " of 3 samples" not in html


def test_report_says_when_nothing_is_flagged(sim_small, tmp_path):
    one = sim_small[sim_small.obs["sample"] == "S01"].copy()  # no planted antigen-presentation loss
    tmt.tl.annotate(one)
    tmt.tl.resistance_profile(one)
    assert not (one.uns["tmt_resistance_profile"]["long"]["flagged"] == 1).any()
    html = tmt.report(one, tmp_path / "r.html").read_text()
    assert "No mechanism is flagged in any sample (cohort-relative flags need at least three samples)." in html
    n = len(one.uns["tmt_resistance_profile"]["long"])
    assert ("No resistance mechanism flagged in the sample as a whole (" in html
            and f" of {n} assessable; cohort-relative rules need at least three samples)." in html)


def test_summary_of_one_sample_without_a_phenotype_keeps_its_resistance_profile(sim_small, tmp_path):
    """Cells without a sample column and without a phenotype (dissociated data, no sample key) are one sample,
    "all" in the tools' tables: the summary still says what the resistance profile found for it."""
    one = sim_small[sim_small.obs["sample"] == "S01"].copy()
    del one.obs["sample"], one.obsm["spatial"]
    tmt.tl.annotate(one)
    tmt.tl.resistance_profile(one)
    summary = tmt.report(one, tmp_path / "r.html").read_text().split("id='summary'")[1].split("</section>")[0]
    assert "No resistance mechanism flagged in the sample as a whole (" in summary, summary


def test_summary_gives_the_reason_a_phenotype_did_not_run_once(sim_small, tmp_path):
    """The reason the pipeline skipped the phenotype (often several sentences) stood in every sample's paragraph
    and again below them, ending in '..' where the reason ends with a full stop: it is given once."""
    import pandas as pd

    from tmetoolkit import _keys

    tmt.tl.annotate(sim_small)
    why = "none of the tumor_labels occurs; pass --tumor-signature NAME (tumor_signature= in Python)."
    sim_small.uns[_keys.RUN] = {"skipped": pd.DataFrame([("immune phenotype", "immune_phenotype", why)],
                                                        columns=["step", "tool", "reason"])}
    summary = tmt.report(sim_small, tmp_path / "r.html").read_text().split("id='summary'")[1].split("</section>")[0]
    assert summary.count("none of the tumor_labels occurs") == 1 and ".." not in summary, summary
    assert summary.count("No immune phenotype") == 3  # S01, S02, S03


def test_split_caveat_of_samples_none_of_which_was_split_reads_as_one_statement():
    """'M-MDSC-like cells were split off in 0 of 4 samples; in the other 4 ...' counted 8 samples in 4; where no
    sample was split the caveat says so once."""
    import pandas as pd

    from tmetoolkit.tl._annotate import split_summary

    rows = pd.DataFrame({"state": "M-MDSC-like", "sibling": "Monocyte", "sample": ["p1", "p2", "p3", "p4"],
                         "applied": False, "too_few": True, "reason": "too few cells to fit two populations"})
    assert split_summary(rows) == ("M-MDSC-like cells were split off in none of 4 samples: the monocytes were too "
                                   "few to tell")
    rows.loc[0, "applied"] = True
    assert split_summary(rows) == ("M-MDSC-like cells were split off in 1 of 4 samples; in the other 3 the monocytes "
                                   "were too few to tell")


def test_summary_of_data_without_per_sample_results_says_so(sim_small, tmp_path):
    """Scores alone give no per-sample result: the summary said 'S01:' and nothing more."""
    tmt.tl.score(sim_small, "tam")
    summary = tmt.report(sim_small, tmp_path / "r.html").read_text().split("id='summary'")[1].split("</section>")[0]
    assert "</b>: </p>" not in summary and summary.count("no per-sample result") == 3, summary


def test_report_lists_flagged_regions(sim_small, tmp_path):
    """Regions flagged by the resistance profile are listed with their strategy classes, one row each."""
    tmt.tl.annotate(sim_small)
    tmt.tl.resistance_profile(sim_small, region_key="true_compartment")
    r_long = sim_small.uns["tmt_resistance_profile"]["regions_long"]
    flagged = r_long[r_long["flagged"] == 1]
    assert len(flagged)
    html = tmt.report(sim_small, tmp_path / "r.html").read_text()
    section = html[html.index("id='resistance-mechanisms'"):].split("</section>")[0]
    for region in flagged["region"].unique():
        assert f"<th>{region}</th>" in section
    # the summary names them too: a region can pass a threshold that its whole sample does not
    summary = html[html.index("id='summary'"):].split("</section>")[0]
    regions = re.search(r"<p class='regions'>Flagged per region \(true_compartment; [^)]*\): (.*?)</p>", summary)
    assert regions is not None, summary
    for row in flagged.itertuples():
        assert f"<b>{row.sample}</b>" in regions.group(1) and row.mechanism in regions.group(1)
        assert row.region.removeprefix(f"{row.sample}:") in regions.group(1)


def test_report_says_what_is_known_of_an_input_it_did_not_read(tmp_path):
    """Only the spatial phenotype, from the user's cell types: no empty Caveats heading, and the overview names
    those cell types rather than an unknown input ("n/a")."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=800, n_background_genes=10, seed=2)
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    html = tmt.report(a, tmp_path / "r.html").read_text()
    text = re.sub(r"base64,[^\"]+", "", html)  # embedded figures and tables may hold any three characters
    assert "n/a" not in text and "id='caveats'" not in text
    assert "cell types given in adata.obs[&#x27;true_lineage&#x27;]" in html


def test_expression_phenotype_shows_the_features_that_decided(sim_small, tmp_path):
    """The expression phenotype's table shows the rule that decided each call and its features, not the cohort
    axes that did not decide it."""
    import scanpy as sc

    from tmetoolkit._report import _call_features

    def shown(adata):
        html = tmt.report(adata, tmp_path / "r.html").read_text()
        assert "<dd>no description</dd>" not in html  # every column of the expression call has a glossary entry
        section = html[html.index("id='immune-phenotype'"):].split("</section>")[0]
        return set(re.findall(r"<th>(\w+)</th>", section))

    tmt.tl.immune_phenotype(sim_small, sample_key="sample", cell_type_key="true_lineage", basis="expression")
    cells = shown(sim_small)  # three samples: each alone, by its CD8 T cells among immune cells
    assert {"decided_by", "cd8_fraction_immune"} <= cells and not cells & {"immune_axis", "stromal_axis"}
    agg = sc.get.aggregate(sim_small, by="sample", func="sum")
    bulk = sc.AnnData(agg.layers["sum"], obs=agg.obs[[]], var=sim_small.var[[]])
    tmt.tl.immune_phenotype(bulk, basis="expression")  # each bulk sample alone, by its T-cell and IFN-gamma genes
    genes = shown(bulk)
    assert {"decided_by", "t_cell_enrichment", "ifng_enrichment"} <= genes and "stromal_axis" not in genes
    cohort = _call_features({"basis": "expression", "reference": "cohort", "decided_by": "expression"})
    assert "immune_axis" in cohort and "stromal_axis" not in cohort


def test_cohort_expression_phenotype_columns_are_all_in_the_glossary(sim_small, tmp_path):
    """Judged against the cohort, the expression phenotype's table adds its T-cell programme axis: the per-sample
    table shows it, and the glossary describes it."""
    tmt.tl.immune_phenotype(sim_small, sample_key="sample", cell_type_key="true_lineage", basis="expression",
                            reference="cohort")
    html = tmt.report(sim_small, tmp_path / "r.html").read_text()
    assert "immune_phenotype:t_cell_programmes" in html and "<dd>no description</dd>" not in html


def test_report_figures_keep_small_text_readable():
    """6-pt text (scale bars, crowded ticks) is at least 11 pixels tall in the report's figures."""
    import base64
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from tmetoolkit._report import _fig_html

    fig = plt.figure(figsize=(2, 1))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()  # a 2 x 1 inch rectangle and nothing outside it
    ax.add_patch(plt.Rectangle((0, 0), 1, 1))
    data = re.search(r'base64,([^"]+)"', _fig_html(fig, "test")).group(1)
    width = Image.open(io.BytesIO(base64.b64decode(data))).size[0]
    pixels_per_inch = width / (2 + 2 * 0.1)  # bbox_inches="tight" pads 0.1 inch on each side
    assert pixels_per_inch * 6 / 72 >= 11


def test_large_cohorts_say_what_the_report_leaves_out(tmp_path):
    """A cohort of 30 samples: the report draws 24 maps, the calls taking turns, and says so; a table longer than
    its rows shown says where the rest is."""
    import pandas as pd

    from tmetoolkit._report import MAX_MAPS, _mapped_samples, _table_html

    # samples large enough for every call to be assessable (150 cells hold too few CD8 T cells to place)
    a = tmt.datasets.simulate(n_samples=30, n_cells=1500, n_background_genes=10, seed=1)
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    tab = a.uns["tmt_immune_phenotype"]["table"]
    shown = _mapped_samples(tab)
    assert len(shown) == MAX_MAPS and shown == [s for s in tab.index if s in shown]
    counts = tab.loc[shown, "phenotype"].value_counts()
    assert counts.max() - counts[counts > 0].min() <= 1  # each call in turn (10 samples of each planted)
    html = tmt.report(a, tmp_path / "r.html").read_text()
    assert f"Maps of {MAX_MAPS} of 30 samples" in html
    long = _table_html(pd.DataFrame({"x": range(70)}))
    assert "The first 60 of 70 rows" in long and "The first" not in _table_html(pd.DataFrame({"x": range(5)}))


def test_report_on_a_subset_of_analysed_samples(sim_small, tmp_path):
    """A subset keeps the tables of every sample: the maps show the samples that have cells here, and a caveat
    says that the others' results came from cells that are not in the data."""
    tmt.tl.immune_phenotype(sim_small, sample_key="sample", cell_type_key="true_lineage")
    one = sim_small[sim_small.obs["sample"] == "S01"].copy()
    html = tmt.report(one, tmp_path / "r.html").read_text()
    assert "id='immune-phenotype'" in html
    assert "holds 2 sample(s) without cells in these data (S02, S03)" in html


def test_report_on_a_subset_names_every_table_made_on_more_samples(sim_small, tmp_path):
    """Not only the spatial phenotype: immunosuppression and the resistance profile of a subset also keep their
    tables (and heatmaps, and cohort z-scores) of every analysed sample; a caveat names them."""
    tmt.tl.annotate(sim_small)
    tmt.tl.immunosuppression(sim_small)
    tmt.tl.resistance_profile(sim_small)
    one = sim_small[sim_small.obs["sample"] == "S01"].copy()
    html = tmt.report(one, tmp_path / "r.html").read_text()
    caveats = html[html.index("id='caveats'"):].split("</h2>", 1)[1].split("<h2")[0]
    caveat = next((c for c in caveats.split("</p>") if "without cells in these data (S02, S03)" in c), "")
    assert "immunosuppression" in caveat and "resistance profile" in caveat, caveats


def test_sample_table_of_a_subset_says_why_a_table_is_left_out(sim_small):
    """Subsetting analysed data to some samples leaves the tools' tables of all samples: the warning says so, and
    does not blame the sample column (the tools ran per the same one)."""
    tmt.tl.immune_phenotype(sim_small, sample_key="sample", cell_type_key="true_lineage")
    two = sim_small[sim_small.obs["sample"].isin(["S01", "S03"])].copy()
    with pytest.warns(tmt.TmtWarning, match="tmt_immune_phenotype, whose tables hold samples without cells") as rec:
        part = tmt.get.sample_table(two)
    assert not any("same sample_key" in str(w.message) for w in rec)
    assert list(part.index) == ["S01", "S03"]


def test_report_of_a_protein_panel_does_not_call_its_states_transcriptional(sim_small, tmp_path):
    """Cells called from marker gates are not transcriptional states: the caveat names what they rest on."""
    rng = np.random.default_rng(3)
    o = sim_small.obs
    bright = {"CD8": o["true_lineage"] == "CD8 T", "CD68": o["true_lineage"] == "Monocyte/Macrophage",
              "PanCK": o["true_lineage"] == "Malignant/Epithelial"}
    X = np.column_stack([rng.lognormal(np.where(b, 1.5, -1.5), 0.5) for b in bright.values()])
    panel = ad.AnnData(X.astype(np.float32), obs=o[["sample"]].copy(), obsm={"spatial": sim_small.obsm["spatial"]})
    panel.var_names = list(bright)
    tmt.tl.annotate(panel)
    text = tmt.report(panel, tmp_path / "r.html").read_text()
    assert "transcriptional" not in text
    assert "Cell states are called from protein marker gates" in text


def test_summary_gives_a_fixed_threshold_flag_its_value_not_its_z(tmp_path):
    """B2M/HLA loss is flagged by its value (below -0.5), whatever its rank: the summary quoted "z +0.0 across
    samples" for such a flag, as if an average sample had been flagged; a cohort-relative flag keeps its z."""
    import pandas as pd

    from tmetoolkit import _keys
    from tmetoolkit._report_text import sample_summaries

    a = ad.AnnData(obs=pd.DataFrame({"sample": ["p1", "p2"]}, index=["c1", "c2"]))
    long = pd.DataFrame({
        "sample": ["p1", "p2"], "mechanism": ["B2M/HLA mutations", "Regulatory T cells (Tregs)"],
        "measure": ["APM/MHC-I programme in malignant minus non-malignant cells", "Tregs among CD4 T cells"],
        "value": [-0.72, 0.64], "z": [0.0, 1.92], "flagged": [1.0, 1.0], "evidence_level": ["Clinical", "Clinical"]})
    a.uns[_keys.RESISTANCE_PROFILE] = {"long": long, "params": {}}
    p1, p2 = sample_summaries(a, "sample", None)
    assert "non-malignant cells -0.72, flagged below -0.5" in p1 and "z +0.0" not in p1
    assert "Regulatory T cells (Tregs) (z +1.9 across samples" in p2


def test_overview_counts_one_observation_in_the_singular():
    """A report of one observation (one bulk sample) says "1 observation", not "1 observations"."""
    from tmetoolkit import _report

    one = ad.AnnData(np.zeros((1, 3), dtype=np.float32))
    assert "1 observation x 3 features" in _report._overview(one, None, bulk=True)
    assert "2 observations x 3 features" in _report._overview(ad.AnnData(np.zeros((2, 3), dtype=np.float32)), None,
                                                               bulk=True)

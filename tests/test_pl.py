import itertools
import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.testing.compare import compare_images

import tmetoolkit as tmt
from tmetoolkit._keys import MARKER_EVIDENCE
from tmetoolkit._utils import TmtKeyError

IMAGES = Path(__file__).parent / "_images"


@pytest.fixture(scope="module")
def done():
    a = tmt.datasets.simulate(n_samples=3, n_cells=1500, seed=7)
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    tmt.tl.immune_phenotype(a, sample_key="sample")
    tmt.tl.immunosuppression(a)
    tmt.tl.resistance_profile(a)
    return a


def _compare(fig, name, tmp_path):
    """Image regression test: the figure at 40 dpi must match the stored one (tolerance 15, as scanpy)."""
    actual = tmp_path / f"{name}.png"
    fig.savefig(actual, dpi=40)
    expected = IMAGES / f"{name}.png"
    if not expected.exists():  # first run writes the reference; commit it
        expected.write_bytes(actual.read_bytes())
    assert compare_images(str(expected), str(actual), tol=15) is None


def test_spatial_map(done, tmp_path):
    fig = tmt.pl.spatial(done)
    assert isinstance(fig, Figure)
    titles = [a.get_title() for a in fig.axes if a.get_visible()]
    assert any("inflamed" in t for t in titles)
    _compare(fig, "spatial", tmp_path)
    plt.close(fig)
    fig, ax = plt.subplots()
    assert tmt.pl.spatial(done, samples=["S02"], ax=ax) is fig
    plt.close(fig)
    # a numeric column: one colour scale for all panels, shown by a colour bar
    fig = tmt.pl.spatial(done, color="tmt_suppression_score")
    (bar,) = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    assert bar.get_ylabel() == "Suppression score"
    points = [c for a in fig.axes if a is not bar for c in a.collections if isinstance(c, PathCollection)]
    assert len(points) == 3
    assert len({(c.norm.vmin, c.norm.vmax) for c in points}) == 1
    plt.close(fig)


def test_spatial_map_draws_cells_without_a_label(done):
    a = done.copy()
    a.obs["mine"] = a.obs["tmt_lineage"].astype(str).where(np.arange(a.n_obs) % 5 > 0)
    fig = tmt.pl.spatial(a, color="mine")
    assert "NA" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)


def test_label_colours_stay_distinct_beyond_twenty_labels():
    import anndata as ad

    from tmetoolkit.pl._palettes import lineage_colors
    from tmetoolkit.pl._utils import colors_for

    a = ad.AnnData(np.zeros((40, 1)))
    a.obs["types"] = pd.Categorical([f"type {i}" for i in range(25)] + ["CD4 T"] * 15)
    colours = colors_for(a, "types")
    assert len(set(colours.values())) == 26 and colours["CD4 T"] == lineage_colors()["CD4 T"]


@pytest.mark.parametrize(("span_um", "bar"), [(499.6, "100 µm"), (500.0, "100 µm"), (1000.0, "200 µm"),
                                              (640.0, "100 µm"), (80.0, "20 µm")])
def test_scale_bar_is_the_round_length_nearest_a_fifth_of_the_field(span_um, bar):
    """A MERFISH window of 499.6 µm got a 50 µm bar (a tenth): the round number just below 99.9 µm."""
    from tmetoolkit.pl._spatial import _scale_bar

    fig, ax = plt.subplots()
    _scale_bar(ax, np.array([[0.0, 0.0], [span_um, span_um]]), 1.0)
    assert [t.get_text() for t in ax.texts] == [bar]
    plt.close(fig)


def test_scale_bar_reads_the_pixel_size(done):
    """Coordinates in pixels before any spatial tool ran: the bar is in micrometres only with pixel_size."""
    bars = {}
    for pixel_size in (None, 0.25):
        fig = tmt.pl.spatial(done, samples=["S01"], pixel_size=pixel_size)
        bars[pixel_size] = [t.get_text() for t in fig.axes[0].texts if t.get_text().endswith("µm")]
        plt.close(fig)
    assert bars[None] == ["100 µm"] and bars[0.25] == ["20 µm"]
    with pytest.raises(tmt.TmtInputError, match="pixel_size"):
        tmt.pl.spatial(done, samples=["S01"], pixel_size=-1)


def test_phenotype_summary(done, tmp_path):
    ax = tmt.pl.immune_phenotype(done)
    assert isinstance(ax, Axes) and ax.get_xscale() == "log"
    _compare(ax.figure, "immune_phenotype", tmp_path)
    plt.close(ax.figure)
    ax = tmt.pl.immune_phenotype(done, regions=True)
    plt.close(ax.figure)


@pytest.mark.parametrize("reference", ["cohort", "absolute"])
def test_expression_phenotype_plot_shows_the_deciding_axes(sim_small, reference):
    a = sim_small.copy()
    del a.obsm["spatial"]
    tmt.tl.annotate(a)
    tmt.tl.immune_phenotype(a, sample_key="sample", reference=reference)
    ax = tmt.pl.immune_phenotype(a)
    assert ("immune axis" in ax.get_ylabel()) == (reference == "cohort")
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == a.uns["tmt_immune_phenotype"]["table"]["phenotype"].nunique()
    # the CD8 T share of each sample carries its 95% interval from the counts its confidence rests on
    assert ("95% interval (counts)" in ax.get_legend_handles_labels()[1]) == (reference == "absolute")
    plt.close(ax.figure)


def test_phenotype_labels_of_coinciding_samples_are_merged():
    import pandas as pd

    from tmetoolkit.pl._summaries import _merge_close

    x = pd.Series([2.50, 2.51, 1.0], index=["S01", "S04", "S02"])
    y = pd.Series([2.40, 2.41, 1.7], index=x.index)
    assert [names for names, _ in _merge_close(x, y, 0.05)] == [["S01", "S04"], ["S02"]]


@pytest.mark.parametrize("name", ["composition", "checkpoints", "scores", "immunosuppression", "resistance_profile"])
def test_other_plots(done, tmp_path, name):
    kwargs = {"scores": {"signatures": ["Treg_core", "CD8_Tex", "TAM_M2_like"], "groupby": "tmt_state"}}.get(name, {})
    ax = getattr(tmt.pl, name)(done, **kwargs)
    assert isinstance(ax, Axes)
    if name == "scores":  # groups carry their sizes: a mean over one cell is told from one over hundreds
        n = done.obs["tmt_state"].value_counts()
        assert {t.get_text() for t in ax.get_yticklabels()} == {f"{k} (n={v:,})" for k, v in n[n > 0].items()}
    _compare(ax.figure, name, tmp_path)
    plt.close(ax.figure)


def _inside(fig) -> bool:
    """Everything drawn lies on the canvas: a plain ``fig.savefig`` keeps every label and legend whole."""
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    width, height = fig.get_size_inches()
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height


def test_new_figures_hold_long_labels_and_given_axes_are_left_alone(done):
    a = done.copy()
    long = "a state named at length, as users name their own clusters"
    a.obs["groups"] = a.obs["tmt_state"].astype(str).replace({"Treg": long})
    ax = tmt.pl.scores(a, ["Treg_core", "CD8_Tex"], groupby="groups")
    assert any(long in t.get_text() for t in ax.get_yticklabels())
    assert ax.get_title() == "Signature scores per groups (each signature scaled 0-1)"
    assert _inside(ax.figure)
    plt.close(ax.figure)
    for fn in (tmt.pl.composition, tmt.pl.checkpoints, tmt.pl.immune_phenotype, tmt.pl.immunosuppression,
               tmt.pl.resistance_profile):
        ax = fn(done)
        assert _inside(ax.figure), fn.__name__
        plt.close(ax.figure)
    fig = tmt.pl.spatial(done)  # its legend sits right of the panels
    assert fig.legends and _inside(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(3, 2))
    tmt.pl.scores(a, ["Treg_core", "CD8_Tex"], groupby="groups", ax=ax)
    assert tuple(fig.get_size_inches()) == (3, 2)
    plt.close(fig)


def test_immunosuppression_per_region(done):
    """One row per region, labelled with its cells; a missing component is grey, not the white of z = 0."""
    a = done.copy()
    tmt.tl.immunosuppression(a)
    with pytest.raises(KeyError, match="region_key"):
        tmt.pl.immunosuppression(a, regions=True)
    tmt.tl.immunosuppression(a, region_key="tmt_compartment")
    ax = tmt.pl.immunosuppression(a, regions=True)
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert len(rows) == 9 and rows[0].startswith("S01:margin (n=")
    image = ax.get_images()[0]
    assert tuple(image.get_cmap().get_bad()[:3]) != (1.0, 1.0, 1.0)
    plt.close(ax.figure)


def test_region_labels_do_not_overlap_and_drop_a_lone_sample_name(done):
    """Regions of one sample are named without the sample; labels of nearby points do not overlap."""
    a = done[done.obs["sample"] == "S02"].copy()
    a.obs["area"] = np.where(a.obsm["spatial"][:, 0] < np.median(a.obsm["spatial"][:, 0]), "west", "east")
    tmt.tl.immune_phenotype(a, sample_key="sample", region_key="area")
    ax = tmt.pl.immune_phenotype(a, regions=True)
    texts = {t.get_text(): t for t in ax.texts}
    assert set(texts) <= {"west", "east", "west, east", "east, west"} and texts
    plt.close(ax.figure)

    from matplotlib.text import Text

    from tmetoolkit.pl._summaries import _annotate_points

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    long = [([f"sample_{i}_with_a_long_patient_identifier"], (0.1 + 0.01 * i, 0.5 + 0.01 * i)) for i in range(4)]
    _annotate_points(ax, [*long, (["far"], (0.2, 0.1))], log=False)
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the words, not the leader lines
    assert not any(b.overlaps(c) for i, b in enumerate(boxes) for c in boxes[i + 1:])
    moved = [t for t in ax.texts if t.arrow_patch is not None]  # a moved label is joined to its point
    assert len(moved) >= 3 and ax.texts[0].xyann == (3, 3)
    plt.close(fig)
    # a label of a point in the right half ends at the point, so it stays inside the axes
    fig, ax = plt.subplots()
    ax.set_xlim(-1, 1)
    ax.set_ylim(0, 3)
    _annotate_points(ax, [(["left"], (-0.9, 1.0)), (["right"], (0.95, 2.0))], log=False)
    sides = {t.get_text(): (t.get_horizontalalignment(), t.xyann[0]) for t in ax.texts}
    assert sides == {"left": ("left", 3), "right": ("right", -3)}
    plt.close(fig)


def test_embedding(done, tmp_path):
    import numpy as np

    a = done.copy()
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(a.n_obs, 2))  # stands in for sc.tl.umap
    with warnings.catch_warnings():
        warnings.simplefilter("error", PendingDeprecationWarning)  # scanpy's set_bad call warned on every plot
        ax = tmt.pl.embedding(a)
    assert isinstance(ax, Axes)
    _compare(ax.figure, "embedding", tmp_path)
    plt.close(ax.figure)
    with pytest.raises(KeyError, match="X_tsne"):
        tmt.pl.embedding(a, basis="tsne")


def test_ax_is_used(done):
    for fn in (tmt.pl.composition, tmt.pl.checkpoints, tmt.pl.immune_phenotype, tmt.pl.immunosuppression,
               tmt.pl.resistance_profile):
        fig, ax = plt.subplots()
        assert fn(done, ax=ax) is ax
        plt.close(fig)


def test_plot_errors(sim_small):
    with pytest.raises(KeyError, match="immune_phenotype"):
        tmt.pl.immune_phenotype(sim_small)
    with pytest.raises(KeyError, match="annotate"):
        tmt.pl.composition(sim_small)
    with pytest.raises(KeyError, match="tmt.tl.score"):
        tmt.pl.scores(sim_small, ["NK"], groupby="sample")


def test_scores_of_a_packaged_signature_not_yet_scored_say_how_to_score_it(done):
    """A packaged signature the data were not scored with is no misspelling: the error says to score it (and the
    name of neither a scored nor a packaged signature still gets the nearest names)."""
    a = done.copy()
    a.obsm["tmt_scores"] = a.obsm["tmt_scores"].drop(columns=["TAM_SPP1"], errors="ignore")
    with pytest.raises(KeyError, match=r"tmt.tl.score\(adata, \['TAM_SPP1'\]\)") as info:
        tmt.pl.scores(a, ["TAM_SPP1"], groupby="sample")
    assert "Did you mean" not in str(info.value)
    with pytest.raises(KeyError, match="Did you mean"):
        tmt.pl.scores(a, ["TAM_M2_lik"], groupby="sample")


def test_scores_of_a_signature_lacking_its_genes_say_so_and_where_they_are(sim_small):
    """A file of selected genes cannot score T_cell (1 of its 4 genes): the plot said to run tmt.tl.score(adata,
    ['T_cell']) first, which the user had done and which refuses again. It says which genes are lacking and, with
    all genes in adata.raw, how to score them there."""
    a = sim_small[:600].copy()
    a.raw = a
    a = a[:, [g for g in a.var_names if g not in {"CD3E", "CD3G", "CD2"}]].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.score(a, "all")
    assert "T_cell" not in a.obsm["tmt_scores"]
    with pytest.raises(TmtKeyError, match=r"'T_cell' could not be scored here.*T_cell: 1 of 4, needs 2") as err:
        tmt.pl.scores(a, ["T_cell"], groupby="sample")
    assert "use_raw=True" in str(err.value) and "first" not in str(err.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.score(a, ["T_cell"], use_raw=True)
    tmt.pl.scores(a, ["T_cell"], groupby="sample")
    plt.close("all")


def test_gates(done, tmp_path):
    """Protein gates: a synthetic panel with spill-over from touching cells into their neighbours."""
    import anndata as ad
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    o = done.obs
    rng = np.random.default_rng(3)
    bright = {"CD8": o["true_lineage"] == "CD8 T", "CD68": o["true_lineage"] == "Monocyte/Macrophage",
              "PanCK": o["true_lineage"] == "Malignant/Epithelial"}
    X = np.column_stack([rng.lognormal(np.where(b, 1.5, -1.5), 0.5) for b in bright.values()])
    xy = done.obsm["spatial"]
    for s in o["sample"].unique():
        rows = np.flatnonzero(o["sample"] == s)
        _, idx = NearestNeighbors(n_neighbors=2).fit(xy[rows]).kneighbors(xy[rows])
        X[rows] += 0.2 * X[rows][idx[:, 1]]
    panel = ad.AnnData(X.astype(np.float32), obs=o[["sample"]].copy(), obsm={"spatial": xy})
    panel.var_names = list(bright)
    with pytest.raises(KeyError, match="protein panel"):
        tmt.pl.gates(panel)
    tmt.tl.annotate(panel)
    fig = tmt.pl.gates(panel)
    assert [a.get_title().split(":")[0] for a in fig.axes if a.get_visible()] == ["tumour marker", "CD8", "CD68"]
    _compare(fig, "gates", tmp_path)
    plt.close(fig)
    _, ax = plt.subplots()
    assert tmt.pl.gates(panel, markers="CD8", ax=ax) is ax.figure
    plt.close("all")
    with pytest.raises(KeyError, match="gated markers"):
        tmt.pl.gates(panel, markers=["CD4"])
    with pytest.raises(ValueError, match="one marker"):
        tmt.pl.gates(panel, ax=ax)


def test_plots_and_report_leave_later_figures_showing_in_jupyter(tmp_path, monkeypatch):
    """In a fresh Jupyter kernel whose first figure is ours, later figures still show (matplotlib#24351: restoring
    every rcParam after our style, or switching the backend for the report, silenced them)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        "import tmetoolkit as tmt\na = tmt.datasets.simulate(n_samples=1, n_cells=300, seed=0)\ntmt.tl.annotate(a)",
        "if True:\n    tmt.pl.composition(a)",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2]);",
        f"tmt.report(a, {str(tmp_path / 'r.html')!r});",
        "plt.plot([1, 2]);",
    ]
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel must pick Jupyter's inline backend, as for users
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    shown = ["image/png" in "".join(str(o.get("data", {}).keys()) for o in c.outputs) for c in nb.cells]
    assert shown == [False, True, True, False, True]


def test_compare_groups_labels_tied_features_once():
    """With few samples many features share one point; they get one label naming the first and counting the rest."""
    import anndata as ad
    import pandas as pd

    a = ad.AnnData(np.zeros((2, 1)))
    a.uns["tmt_compare_groups"] = {
        "params": {"groups": ["R", "NR"]},
        "table": pd.DataFrame({"feature": ["f1", "f2", "f3", "f4"], "cliffs_delta": [1.0, 1.0, 1.0, -0.5],
                               "pvalue": [0.1, 0.1, 0.1, 0.4], "fdr": [1.0, 1.0, 1.0, 1.0]}),
    }
    ax = tmt.pl.compare_groups(a)
    assert sorted(t.get_text() for t in ax.texts) == ["f1 (+2 more)", "f4"]
    plt.close(ax.figure)


def test_phenotype_names_are_left_out_of_a_crowded_plot():
    """Past 20 samples the names would overlap into a cloud: the points stay, the names are left to the table."""
    a = tmt.datasets.simulate(n_samples=24, n_cells=250, seed=3)
    del a.obsm["spatial"]
    tmt.tl.annotate(a)
    tmt.tl.immune_phenotype(a, sample_key="sample")
    ax = tmt.pl.immune_phenotype(a)
    assert not ax.texts and sum(len(c.get_offsets()) for c in ax.collections) == 24
    plt.close(ax.figure)
    few = a[a.obs["sample"].isin([f"S{i:02d}" for i in range(1, 13)])].copy()
    tmt.tl.immune_phenotype(few, sample_key="sample")
    ax = tmt.pl.immune_phenotype(few)
    assert ax.texts
    plt.close(ax.figure)


def test_composition_uses_at_most_12_colour_blind_safe_colours(done):
    """28 state labels: 12 colours of the colour-blind-safe palette, the rest grouped in one grey bar."""
    from tmetoolkit.pl._palettes import COLORBLIND_SAFE

    a = done.copy()
    rng = np.random.default_rng(0)
    a.obs["many"] = [f"state {i}" for i in rng.integers(0, 28, a.n_obs)]
    ax = tmt.pl.composition(a, key="many")
    handles, labels = ax.get_legend_handles_labels()
    colours = [matplotlib.colors.to_hex(h.patches[0].get_facecolor()) for h in handles]
    assert len(labels) == 13 and labels[-1] == "other (16 labels)"
    assert {c.upper() for c in colours[:12]} == set(COLORBLIND_SAFE) and "grouped" in ax.get_title()
    plt.close(ax.figure)


def test_heatmap_labels_are_words_and_flags_stand_out(done):
    import colorsys

    ax = tmt.pl.immunosuppression(done)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "Treg fraction CD4" in labels and not any("_" in t for t in labels)
    plt.close(ax.figure)
    ax = tmt.pl.resistance_profile(done)
    legend = {t.get_text(): p.get_facecolor() for t, p in zip(ax.get_legend().get_texts(),
                                                              ax.get_legend().get_patches(), strict=True)}
    flagged = colorsys.rgb_to_hls(*legend["flagged (✕)"][:3])
    not_flagged = colorsys.rgb_to_hls(*legend["not flagged"][:3])
    hue = abs(flagged[0] - not_flagged[0]) * 360
    assert min(hue, 360 - hue) > 90  # not two shades of one red (they were 10 degrees apart)
    plt.close(ax.figure)



def test_resistance_legend_names_the_classes_the_grid_shows(done):
    """The key listed all four classes whatever the grid held ("measured, rule not applicable" beside a grid
    without a white cell, in the Xenium per-region profile of tutorial 02)."""
    one = done[done.obs["sample"] == done.obs["sample"].iloc[0]].copy()  # cohort-relative rules cannot apply
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.resistance_profile(one, sample_key="sample")
    ax = tmt.pl.resistance_profile(one)
    shown = {tuple(np.round(c, 3)) for c in np.asarray(ax.images[0].get_array()).reshape(-1, 3)}
    keys = {tuple(np.round(p.get_facecolor()[:3], 3)) for p in ax.get_legend().get_patches()}
    assert keys == shown
    plt.close(ax.figure)

def test_dot_plot_rows_of_few_cells_are_faded_and_counted(done):
    a = done.copy()
    treg = np.flatnonzero(a.obs["tmt_state"].astype(str) == "Treg")
    state = a.obs["tmt_state"].astype(str).to_numpy()
    state[treg[1:]] = "CD4 helper"  # one Treg left
    a.obs["tmt_state"] = pd.Categorical(state, categories=a.obs["tmt_state"].cat.categories)
    ax = tmt.pl.markers(a, n_genes=2)
    labels = {t.get_text(): t for t in ax.get_yticklabels()}
    assert "Treg (n=1)" in labels and matplotlib.colors.to_hex(labels["Treg (n=1)"].get_color()) == "#999999"
    helper = next(t for t in labels if t.startswith("CD4 helper (n="))
    assert matplotlib.colors.to_hex(labels[helper].get_color()) != "#999999"
    # faded rows are exactly the greyed labels (the Treg row, and any other state with too few cells)
    faded = [i for i, t in enumerate(labels.values()) if matplotlib.colors.to_hex(t.get_color()) == "#999999"]
    assert list(labels).index("Treg (n=1)") in faded
    dots = max(ax.collections, key=lambda c: len(c.get_offsets()))
    y = np.floor(np.asarray(dots.get_offsets())[:, 1]).astype(int)
    alpha = np.asarray(dots.get_facecolors())[:, 3]
    assert (alpha[np.isin(y, faded)] < 0.3).all() and (alpha[~np.isin(y, faded)] > 0.9).all()
    plt.close(ax.figure)


def _bar_styles(ax) -> dict[str, tuple[str, str | None]]:
    """Legend label -> (face colour, hatch) of its bars."""
    handles, labels = ax.get_legend_handles_labels()
    return {lab: (matplotlib.colors.to_hex(h.patches[0].get_facecolor()), h.patches[0].get_hatch())
            for h, lab in zip(handles, labels, strict=True)}


def test_composition_keeps_each_labels_colour_of_every_other_figure(done):
    from tmetoolkit.pl._palettes import state_colors

    a = done.copy()
    cats = list(a.obs["tmt_lineage"].cat.categories)
    stored = list(a.uns["tmt_lineage_colors"])
    stored[cats.index("CD8 T")] = "#123456"
    a.uns["tmt_lineage_colors"] = stored
    lineages = _bar_styles(tmt.pl.composition(a))
    assert lineages["CD8 T"][0] == "#123456"
    assert lineages["Malignant/Epithelial"][0] == stored[cats.index("Malignant/Epithelial")]
    plt.close("all")
    state = a.obs["tmt_state"].astype(str).to_numpy()
    state[:40:2], state[1:40:2] = "CD8 T", "Monocyte/Macrophage"  # states that could not be decided
    a.obs["tmt_state"] = pd.Categorical(state, categories=a.obs["tmt_state"].cat.categories)
    states = _bar_styles(tmt.pl.composition(a, key="tmt_state"))
    assert states["CD8 Tex"][0] == state_colors()["CD8 Tex"]
    undecided = [states["CD8 T (state undecided)"], states["Monocyte/Macrophage (state undecided)"]]
    assert undecided[0] != undecided[1] and all(hatch for _, hatch in undecided)
    plt.close("all")


def test_composition_leaves_missing_values_out_and_tells_grouped_from_unassigned(done):
    a = done.copy()
    a.obs["tmt_tam_subset"] = a.obs["tmt_state"].astype(str).where(a.obs["tmt_lineage"] == "Monocyte/Macrophage")
    ax = tmt.pl.composition(a, key="tmt_tam_subset")
    assert "nan" not in _bar_styles(ax) and "TAM subset" in ax.get_title() and "Tmt" not in ax.get_title()
    assert "not counted" in ax.get_xlabel()
    plt.close("all")
    a.obs["many"] = [f"state {i}" if i < 28 else "unassigned" for i in np.arange(a.n_obs) % 30]
    styles = _bar_styles(tmt.pl.composition(a, key="many"))
    assert styles["other (16 labels)"] != styles["unassigned"]
    plt.close("all")


def _phenotype_copy(done, rows: int | None = None, **params):
    """``done`` with its phenotype table repeated to ``rows`` samples of long names, and params changed."""
    a = done.copy()
    res = dict(a.uns["tmt_immune_phenotype"])
    res["params"] = {**res["params"], **params}
    tab = res["table"]
    if rows:
        tab = pd.concat([tab] * (rows // len(tab) + 1)).iloc[:rows].copy()
        tab.index = [f"Patient_{i:02d}_pre-treatment_biopsy_lung_metastasis" for i in range(rows)]
        tab["effector_per_mm2"] = tab["effector_per_mm2"].to_numpy() * (1 + 0.02 * np.arange(rows))
    res["table"] = tab
    a.uns["tmt_immune_phenotype"] = res
    return a


def test_phenotype_plot_tells_zero_from_missing_and_explains_its_markers(done):
    from tmetoolkit.pl._summaries import _log_positions

    x = _log_positions(pd.Series([0.0, np.nan, 5.0, 0.01]), 1.0)
    assert x[0] < 1 and x[1] < 1 and x[0] != x[1] and list(x[2:]) == [5.0, 1.0]
    ax = tmt.pl.immune_phenotype(_phenotype_copy(done, min_effectors=10**6))  # every call rests on too few cells
    assert {"0", "n/a"} <= {t.get_text() for t in ax.get_xticklabels()}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("hollow: fewer than") for t in legend)
    # each call's key is filled in its colour, though every point of it is hollow (the key was hollow too)
    calls = set(done.uns["tmt_immune_phenotype"]["table"]["phenotype"].astype(str))
    keys = dict(zip(legend, ax.get_legend().legend_handles, strict=True))
    assert calls <= set(keys) and all(keys[c].get_facecolor()[0][3] == 1 for c in calls)
    plt.close("all")
    a = _phenotype_copy(done)
    a.uns["tmt_immune_phenotype"]["table"]["phenotype"] = pd.Categorical(["not assessable", "inflamed", "desert"])
    ax = tmt.pl.immune_phenotype(a)
    z = {c.get_label().lstrip("_"): c.get_zorder() for c in ax.collections if len(c.get_offsets())}
    assert z["not assessable"] < min(z["inflamed"], z["desert"])
    plt.close("all")
    ax = tmt.pl.immune_phenotype(done, regions=True)
    assert "tile" in ax.get_title()
    plt.close("all")


def test_long_sample_names_stay_inside_the_phenotype_plot(done):
    ax = tmt.pl.immune_phenotype(_phenotype_copy(done, rows=16))
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert boxes and all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
                         for b in boxes)
    numbered = [t.get_text() for t in ax.texts if t.get_text().isdigit()]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(any(t.startswith(f"{n}  Patient_") for t in legend) for n in numbered)
    assert fig.get_size_inches()[0] < 9
    plt.close(fig)


def test_compare_groups_labels_do_not_overlap_in_either_direction():
    import anndata as ad

    n = 10
    a = ad.AnnData(np.zeros((2, 1)))
    a.uns["tmt_compare_groups"] = {
        "params": {"groups": ["R", "NR"]},
        "table": pd.DataFrame({"feature": [f"feature_with_a_long_name_{i}" for i in range(n)],
                               "cliffs_delta": 0.4 + 0.03 * np.arange(n), "pvalue": 0.01 * (1 + 0.05 * np.arange(n)),
                               "fdr": np.full(n, 0.05)}),
    }
    ax = tmt.pl.compare_groups(a)
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == n
    assert not any(b.overlaps(c) for i, b in enumerate(boxes) for c in boxes[i + 1:])
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    plt.close(ax.figure)


def test_dot_plot_figure_is_sized_from_its_genes_and_rows_and_holds_its_labels(done):
    ax = tmt.pl.markers(done, n_genes=2)
    fig = ax.figure
    n_genes, n_rows = len(ax.get_xticklabels()), len(ax.get_yticklabels())
    width, height = fig.get_size_inches()
    assert width < 0.35 * n_genes + 5 and height < 0.35 * n_rows + 4
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # the canvas is fitted to what is drawn: no empty third
    assert _inside(fig) and width - box.width < 0.5 and height - box.height < 0.5
    plt.close(fig)


def test_spatial_into_a_given_axes_keeps_its_legend_there_and_the_layout_alone(done):
    fig, ax = plt.subplots(figsize=(4, 4))
    before = ax.get_position(original=True).bounds
    tmt.pl.spatial(done, samples=["S03"], ax=ax)
    assert ax.get_position(original=True).bounds == before and not fig.legends
    assert "CD8 T" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_spatial_values_draw_cells_without_a_value_and_name_the_unit(done):
    a = done.copy()
    fig = tmt.pl.spatial(a, color="tmt_border_distance", samples=["S01"])
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "µm" in bar.get_ylabel() and "negative: inside the tumour" in bar.get_ylabel()
    plt.close(fig)
    a.obs.loc[a.obs_names[::3], "tmt_suppression_score"] = np.nan
    fig = tmt.pl.spatial(a, color="tmt_suppression_score", samples=["S01"])
    points = fig.axes[0].collections[0]
    assert points.get_cmap().get_bad()[3] > 0  # not transparent
    assert "no value" in [t.get_text() for lg in fig.axes[0].get_children() if isinstance(lg, matplotlib.legend.Legend)
                          for t in lg.get_texts()]
    plt.close(fig)


def _one_component_missing(done):
    """A copy of ``done`` whose immunosuppression table lacks one sample's Treg fraction."""
    a = done.copy()
    res = dict(a.uns["tmt_immunosuppression"])
    res["table"] = res["table"].copy()
    res["table"].iloc[0, res["table"].columns.get_loc("treg_fraction_cd4")] = np.nan
    a.uns["tmt_immunosuppression"] = res
    return a


def test_immunosuppression_heatmap_shows_its_colour_limits_and_missing_values(done):
    a = _one_component_missing(done)
    ax = tmt.pl.immunosuppression(a)
    (bar,) = [c for c in ax.figure.axes if c.get_label() == "<colorbar>"]
    assert ax.get_images()[0].colorbar.extend == "both"
    assert [t.get_text() for t in bar.get_legend().get_texts()] == ["not measured"]
    plt.close(ax.figure)


def test_expression_phenotype_lines_are_named_in_the_legend():
    from tmetoolkit._core.sample.phenotype import decision_lines

    params = {"immune_tercile_low": -0.4, "immune_tercile_high": 0.5, "min_cd8_fraction": 0.2}
    for mode in ("cohort", "enrichment", "cells"):
        lines = decision_lines(params, mode)
        assert lines and all(line.label for line in lines)


def test_spatial_reads_sample_names_as_the_tools_store_them(sim_small):
    """Samples from an integer column are asked for as numbers (samples=[1]) or one name as a string; the panels
    are the samples the spatial tools called, not those of a column another tool recorded earlier."""
    sim_small.obs["pid"] = sim_small.obs["sample"].cat.codes.astype(int) + 1
    sim_small.uns["tmt_annotate"] = {"params": {"sample_key": "sample"}}
    tmt.tl.immune_phenotype(sim_small, sample_key="pid", cell_type_key="true_lineage")
    fig = tmt.pl.spatial(sim_small, "true_lineage", samples=[1])
    assert fig.axes[0].get_title().splitlines() == ["1", sim_small.uns["tmt_immune_phenotype"]["table"].loc["1",
                                                                                                      "phenotype"]]
    fig = tmt.pl.spatial(sim_small, "true_lineage", samples="S02", sample_key="sample")
    assert fig.axes[0].get_title().splitlines()[0] == "S02"
    with pytest.raises(KeyError, match="'9' is not in the samples of 'pid'"):
        tmt.pl.spatial(sim_small, "true_lineage", samples=[9])
    plt.close("all")


def test_missing_key_errors_name_a_number_key():
    from tmetoolkit._utils import missing_key_error

    assert "Did you mean ['1']" in str(missing_key_error(1, "adata.obs", ["1", "sample"]))


def _boxes_overlap(fig, first, second) -> bool:
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    return first.get_window_extent(renderer).overlaps(second.get_window_extent(renderer))


def test_immunosuppression_missing_key_stays_clear_of_the_colour_bar_label(done):
    """The "not measured" key sits beside the colour bar's label, which runs past a short bar, not across it."""
    a = _one_component_missing(done)
    ax = tmt.pl.immunosuppression(a)
    (bar,) = [c for c in ax.figure.axes if c.get_label() == "<colorbar>"]
    legend = bar.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["not measured"]
    assert not _boxes_overlap(ax.figure, legend, bar.yaxis.label)
    assert _inside(ax.figure)
    plt.close(ax.figure)


def test_immunosuppression_heatmap_writes_values_that_have_no_z(done):
    """A component measured in one sample only has no z: its value is written, not greyed as "not measured" (the
    table beside the figure holds it). With one sample nothing is coloured, so no colour bar gives a scale to
    nothing; the hatching's legend stays."""
    a = done[done.obs["sample"] == "S01"].copy()
    tmt.tl.immunosuppression(a, sample_key="sample")
    tab = a.uns["tmt_immunosuppression"]["table"]
    components = list(a.uns["tmt_immunosuppression"]["components"]["component"])
    measured = [c for c in components if tab[c].notna().all()]
    assert measured
    ax = tmt.pl.immunosuppression(a)
    written = {t.get_text() for t in ax.texts}
    assert {f"{float(tab[c].iloc[0]):.2g}" for c in measured} <= written
    assert not [c for c in ax.figure.axes if c.get_label() == "<colorbar>"]
    keys = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "measured in one sample only: no z, value written" in keys
    plt.close(ax.figure)


def test_gates_count_cells_at_zero_instead_of_drawing_them_at_a_made_up_intensity(done):
    """CODEX tables hold exact zeros: a log axis cannot show them, so they are counted in the panel, and the bars
    hold the other cells only (drawn at a floor, the zeros towered over every channel's distribution)."""
    import anndata as ad

    o = done.obs
    rng = np.random.default_rng(3)
    bright = {"CD8": o["true_lineage"] == "CD8 T", "CD68": o["true_lineage"] == "Monocyte/Macrophage",
              "PanCK": o["true_lineage"] == "Malignant/Epithelial"}
    X = np.column_stack([rng.lognormal(np.where(b, 1.5, -1.5), 0.5) for b in bright.values()])
    zero = (~bright["PanCK"].to_numpy()) & (rng.random(len(o)) < 0.7)
    X[zero, 2] = 0.0
    panel = ad.AnnData(X.astype(np.float32), obs=o[["sample"]].copy(), obsm={"spatial": done.obsm["spatial"]})
    panel.var_names = list(bright)
    tmt.tl.annotate(panel)
    _, ax = plt.subplots()
    tmt.pl.gates(panel, markers="tumor", ax=ax)
    drawn = sum(p.get_height() for p in ax.patches if p.get_height() > 0 and p.get_width() > 0)
    assert drawn == len(o) - zero.sum()
    share = (panel.obsm[MARKER_EVIDENCE]["tumor+"] > 0).mean()
    # counted in the title: a note inside the panel covered the bars of channels whose cells sit at its left edge
    assert ax.get_title() == f"tumour marker: {share:.1%} positive\n{zero.sum():,} cells at 0, not drawn"
    assert not ax.texts
    plt.close(ax.figure)


def test_spatial_values_name_the_lines_clear_of_the_colour_bar_label(done):
    """One panel coloured by distance: the names of the border and margin lines, under the panel, stay clear of
    the colour bar's label (in two columns they ran across it)."""
    fig = tmt.pl.spatial(done, color="tmt_border_distance", samples=["S01"])
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    legend = fig.axes[0].get_legend()
    assert {t.get_text() for t in legend.get_texts()} == {"tumour border", "margin edges"}
    assert not _boxes_overlap(fig, legend, bar.yaxis.label)
    plt.close(fig)


def test_composition_legend_leaves_the_last_tick_label_whole(done):
    """The legend right of the bars starts after the "1.0" under the axes' right end, not across it."""
    a = done[done.obs["sample"] == "S01"].copy()
    ax = tmt.pl.composition(a)
    (last,) = [t for t in ax.get_xticklabels() if t.get_text() == "1.0"]
    assert not _boxes_overlap(ax.figure, ax.get_legend(), last)
    plt.close(ax.figure)


def test_embedding_title_is_words_not_the_key(done):
    """Titled "State", as every other figure names the column, not "tmt_state"; a title the user gives is kept."""
    a = done.copy()
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(a.n_obs, 2))
    ax = tmt.pl.embedding(a)
    assert ax.get_title() == "State"
    plt.close(ax.figure)
    ax = tmt.pl.embedding(a, title="my cells")
    assert ax.get_title() == "my cells"
    plt.close(ax.figure)


def test_composition_and_report_draw_cells_with_repeated_obs_names(done, tmp_path):
    """anndata allows repeated obs_names (with a warning); the composition bars (and the report drawing them)
    failed with pandas' "cannot reindex on an axis with duplicate labels" when two cells shared a name."""
    a = done.copy()
    widths = [p.get_width() for p in tmt.pl.composition(a).patches]
    plt.close("all")
    names = a.obs_names.to_numpy().copy()
    names[1::2] = names[::2][: len(names[1::2])]  # every name twice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a.obs_names = names
    assert [p.get_width() for p in tmt.pl.composition(a).patches] == pytest.approx(widths)
    plt.close("all")
    tmt.report(a, tmp_path / "report.html")
    assert (tmp_path / "report.html").stat().st_size > 0


def test_spatial_map_of_a_sample_whose_cells_lie_on_one_line(sim_small):
    """Cells of a strip (all on one line) get a tumour border from compartments; the map cannot contour it (a
    triangulation needs two dimensions) but must still draw the sample, and the other samples' borders."""
    a = sim_small.copy()
    strip = (a.obs["sample"] == "S01").to_numpy()
    xy = np.asarray(a.obsm["spatial"], dtype=float)
    xy[strip] = np.c_[np.arange(strip.sum()) * 10.0, np.zeros(strip.sum())]
    a.obsm["spatial"] = xy
    tmt.tl.compartments(a, sample_key="sample", cell_type_key="true_lineage")
    d = a.obs.loc[strip, "tmt_border_distance"]
    assert (d < 0).any() and (d > 0).any()  # a border to draw on the line
    fig = tmt.pl.spatial(a, color="true_lineage")
    assert "tumour border" in [t.get_text() for t in fig.legends[0].get_texts()]  # drawn for the other samples
    plt.close(fig)
    fig = tmt.pl.spatial(a, color="tmt_border_distance", samples=["S01"])
    plt.close(fig)


def test_spatial_border_does_not_run_along_the_edge_of_the_field():
    """Two tumour nests touch the field's left edge; the cells between them sit 3 um inside it. The convex hull's
    edge from one nest to the other made flat triangles, and the border contoured across them ran 80 um down the
    field's edge past cells 40 um from any tumour cell (seen on the MERFISH, Xenium and Vectra maps)."""
    import anndata as ad
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    grid = np.arange(0, 300, 10.0)
    xx, yy = np.meshgrid(grid, grid)
    xy = np.c_[xx.ravel(), yy.ravel()] + rng.uniform(-2, 2, (xx.size, 2))
    left = xy[:, 0] < 5
    xy[left, 0] = 3.0
    xy[left & np.isin(yy.ravel(), [50, 250]), 0] = 0.0  # a cell of each nest on the edge itself
    d = np.minimum(np.hypot(xy[:, 0], xy[:, 1] - 50), np.hypot(xy[:, 0], xy[:, 1] - 250)) - 60
    obs = pd.DataFrame({"sample": "s", "tmt_border_distance": d,
                        "label": pd.Categorical(np.where(d < 0, "tumour", "other"))}, index=map(str, range(len(d))))
    a = ad.AnnData(np.zeros((len(d), 1)), obs=obs, obsm={"spatial": xy})
    fig = tmt.pl.spatial(a, color="label", highlight=None)
    lines = [c for c in fig.axes[0].get_children() if isinstance(c, ContourSet)]
    assert len(lines) == 1
    points = []
    for path in lines[0].get_paths():
        for line in path.to_polygons(closed_only=False):
            for p, q in itertools.pairwise(line):
                points.append(p + np.linspace(0, 1, 20)[:, None] * (q - p))
    far = cKDTree(xy[d < 0]).query(np.concatenate(points))[0]
    assert far.max() < 20  # the border lies beside tumour cells everywhere (grid spacing 10)
    plt.close(fig)


def test_spatial_markers_grow_with_the_panel(sim_small):
    """panel_size=6 (tutorial 02's Xenium, Vectra and MERFISH maps) drew the markers of the 3.2-inch default: on a
    panel 3.5 times the area, 7,353 cells became specks of 2 points^2 whose colours could not be told apart."""

    def sizes(fig):
        dots = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
        return [float(np.median(c.get_sizes())) for c in dots]

    small = tmt.pl.spatial(sim_small, color="true_lineage", samples="S01", panel_size=3.2)
    large = tmt.pl.spatial(sim_small, color="true_lineage", samples="S01", panel_size=6.4)
    assert np.allclose(np.array(sizes(large)) / np.array(sizes(small)), 4.0)  # in proportion to the panel's area
    given = tmt.pl.spatial(sim_small, color="true_lineage", samples="S01", panel_size=6.4, size=5)
    assert sizes(given)[0] == 5  # a size given is kept
    plt.close("all")


def test_spatial_border_leaves_the_outermost_cells_inside_the_frame(sim_small):
    """The tumour border's contour pinned the axes to the cells' extent: the outermost cells (Visium spots of
    tutorial 05 most visibly) were cut in half by the panel's frame. The panel keeps its margin around them."""
    tmt.tl.compartments(sim_small, sample_key="sample", cell_type_key="true_lineage")
    fig = tmt.pl.spatial(sim_small, color="true_lineage", samples="S01")
    ax = fig.axes[0]
    assert any(isinstance(c, ContourSet) for c in ax.get_children())  # the border is drawn
    xy = np.asarray(sim_small.obsm["spatial"])[(sim_small.obs["sample"] == "S01").to_numpy()]
    (left, right), (bottom, top) = ax.get_xlim(), sorted(ax.get_ylim())
    pad = 0.02 * np.ptp(xy, axis=0)
    assert left < xy[:, 0].min() - pad[0] and right > xy[:, 0].max() + pad[0]
    assert bottom < xy[:, 1].min() - pad[1] and top > xy[:, 1].max() + pad[1]
    plt.close(fig)


def test_spatial_map_of_boolean_or_integer_labels_and_integer_sample_names(sim_small):
    """Boolean columns (tmt_tumor_cell, tmt_tumor_spot and the user's own flags) and categories that are numbers
    are drawn by their labels; an integer sample column's sample is named by its number; an empty selection and
    zero panels per row are refused with a typed error, not a KeyError, TypeError or ZeroDivisionError."""
    a = sim_small.copy()
    a.obs["sid"] = a.obs["sample"].cat.codes.astype(int) + 1
    a.obs["is_cd8"] = (a.obs["true_lineage"] == "CD8 T").to_numpy()
    a.obs["cluster"] = pd.Categorical(np.arange(a.n_obs) % 3)
    for color in ("is_cd8", "cluster"):
        fig = tmt.pl.spatial(a, color=color, sample_key="sid")
        assert {t.get_text() for t in fig.legends[0].get_texts()} >= ({"True", "False"} if color == "is_cd8"
                                                                      else {"0", "1", "2"})
        plt.close(fig)
    for one in (2, np.int64(2), [2]):
        fig = tmt.pl.spatial(a, color="true_lineage", sample_key="sid", samples=one)
        assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["2"]
        plt.close(fig)
    with pytest.raises(tmt.TmtInputError, match="samples"):
        tmt.pl.spatial(a, sample_key="sid", color="true_lineage", samples=[])
    with pytest.raises(tmt.TmtInputError, match="ncols"):
        tmt.pl.spatial(a, sample_key="sid", color="true_lineage", ncols=0)


def test_spatial_map_of_a_result_not_made_yet_names_the_tool_that_makes_it(sim_small):
    """pl.spatial(color="tmt_border_distance") before compartments listed the obs columns, not what to run."""
    with pytest.raises(tmt.TmtInputError, match=r"run tmt\.tl\.compartments first"):
        tmt.pl.spatial(sim_small.copy(), color="tmt_border_distance")


def test_spatial_panels_follow_the_order_of_the_tools_tables(sim_small):
    """Twelve fields of a grid, their cells stored in no order: the panels were drawn in the order the cells came
    (field_10 first), the phenotype table lists them as S2 before S10; a reader matched panels to rows by hand."""
    a = sim_small[sim_small.obs["sample"] == "S01"].copy()
    xy = np.asarray(a.obsm["spatial"])
    field = (np.digitize(xy[:, 0], np.quantile(xy[:, 0], [0.25, 0.5, 0.75])) * 3
             + np.digitize(xy[:, 1], np.quantile(xy[:, 1], [1 / 3, 2 / 3])))
    a.obs["field"] = [f"field_{i + 1}" for i in field]
    a = a[np.random.default_rng(0).permutation(a.n_obs)].copy()
    tmt.tl.compartments(a, sample_key="field", cell_type_key="true_lineage")
    fig = tmt.pl.spatial(a, color="true_lineage")
    titles = [ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles == list(a.uns["tmt_compartments"]["table"].index) == [f"field_{i}" for i in range(1, 13)]
    plt.close(fig)


def test_spatial_legend_of_many_labels_stays_within_the_panels_height(sim_small):
    """A Xenium section's 25 states listed in one column made the legend 5.3 inches tall beside 3.1-inch panels:
    the figure grew to hold it and the maps shrank to a strip in a report. Many labels take columns, as scanpy's."""
    a = sim_small.copy()
    a.obs["cluster"] = pd.Categorical([f"cluster {i % 25}" for i in range(a.n_obs)])
    fig = tmt.pl.spatial(a, color="cluster", border=False)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    panels = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]  # with their titles
    assert fig.legends[0].get_window_extent(renderer).height <= max(p.y1 for p in panels) - min(p.y0 for p in panels)
    plt.close(fig)


def test_spatial_draws_each_image_of_a_sample_in_its_own_panel(sim_small):
    """Two fields of one patient (image_key), each with coordinates of its own: both were drawn into one panel, on
    top of each other, with one tumour border contoured across the two fields and no margin lines."""
    a = sim_small[sim_small.obs["sample"].isin(["S01", "S02"])].copy()
    a.obs["field"], a.obs["patient"] = a.obs["sample"].astype(str), "P1"
    tmt.tl.immune_phenotype(a, sample_key="patient", image_key="field", cell_type_key="true_lineage")
    fig = tmt.pl.spatial(a, color="true_lineage")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().splitlines()[0] for ax in panels] == ["P1/S01", "P1/S02"]
    n_drawn = [sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)) for ax in panels]
    assert n_drawn == list(a.obs["field"].value_counts().sort_index())
    assert "margin edges" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)
    fig, ax = plt.subplots()
    with pytest.raises(tmt.TmtInputError, match="ax= draws one image"):
        tmt.pl.spatial(a, color="true_lineage", ax=ax)
    tmt.pl.spatial(a[a.obs["field"] == "S02"], color="true_lineage", ax=ax)
    assert ax.get_title().splitlines()[0] == "P1/S02"
    plt.close(fig)
    # cells without an image are refused as the tools refuse them, not gathered into a panel "P1/nan"
    b = a.copy()
    b.obs["field"] = b.obs["field"].astype(object)
    b.obs.iloc[:3, b.obs.columns.get_loc("field")] = np.nan
    with pytest.raises(tmt.TmtInputError, match="3 cells have no value"):
        tmt.pl.spatial(b, color="true_lineage", image_key="field")


def test_spatial_map_lies_as_the_image_it_was_measured_on(sim_small):
    """Image coordinates grow downwards (row 0 at the top, as squidpy and scanpy.pl.spatial draw them); the maps
    drew y upwards, so a Xenium or CODEX field was the mirror image of its slide in the viewer and the report."""
    fig = tmt.pl.spatial(sim_small, color="true_lineage", samples="S01")
    ax = fig.axes[0]
    assert ax.yaxis_inverted()
    xy = np.asarray(sim_small.obsm["spatial"])[(sim_small.obs["sample"] == "S01").to_numpy()]
    (bar,) = [line for line in ax.get_lines() if line.get_linewidth() == 2]
    assert bar.get_ydata()[0] > xy[:, 1].max()  # the scale bar at the bottom of the drawn panel
    plt.close(fig)


def test_spatial_highlights_every_state_of_the_highlighted_lineage(done):
    """color="tmt_state" on RNA: of the CD8 T cells only those left at lineage level ("CD8 T") were drawn on top,
    larger; CD8 effector, Tpex and Tex cells, most of them, were drawn small under the other cells."""
    fig = tmt.pl.spatial(done, color="tmt_state", samples="S01")
    (top,) = [c for c in fig.axes[0].collections if isinstance(c, PathCollection) and c.get_sizes().max() > 20]
    s01 = done.obs[done.obs["sample"] == "S01"]
    cd8 = s01["tmt_lineage"] == "CD8 T"
    assert (s01.loc[cd8, "tmt_state"] != "CD8 T").any()  # states called: the case that went wrong
    assert len(top.get_offsets()) == cd8.sum()
    assert len({tuple(c) for c in top.get_facecolors()}) == s01.loc[cd8, "tmt_state"].nunique()  # each its colour
    plt.close(fig)


def test_spatial_values_without_any_value_warn_and_draw_no_colour_bar(sim_small):
    """immunosuppression on a protein panel leaves tmt_suppression_score NaN in every cell: the map drew them all
    grey beside a colour bar from 0 to 1, a scale for values that do not exist, and said nothing."""
    a = sim_small.copy()
    a.obs["tmt_suppression_score"] = np.nan
    with pytest.warns(tmt.TmtWarning, match="no cell has a value of adata.obs\\['tmt_suppression_score'\\]"):
        fig = tmt.pl.spatial(a, color="tmt_suppression_score")
    assert not [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "no value" in [t.get_text() for legend in fig.legends + [ax.get_legend() for ax in fig.axes]
                          if legend is not None for t in legend.get_texts()]
    plt.close(fig)


def test_checkpoints_of_a_panel_with_one_receptor_draw_what_it_measures():
    """The phenoptr field measures PD-1 alone: the plot drew "≥2 receptors" and "≥3 receptors" as zero bars in its
    legend, under a title naming PD-1 / TIM-3 / LAG-3 / TIGIT / CTLA-4, as if no CD8 T cell co-expressed them."""
    from .conftest import real_data

    v = real_data("phenoptr")
    tmt.tl.annotate(v)
    with pytest.warns(tmt.TmtWarning, match="not measured"):
        tmt.tl.checkpoints(v)
    ax = tmt.pl.checkpoints(v)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["≥1 receptors"]
    assert ax.get_title() == "PD-1 expression\n(TIM-3, LAG-3, TIGIT, CTLA-4 not measured)"
    plt.close(ax.figure)


def test_spatial_titles_carry_calls_only_of_the_samples_drawn(sim_small):
    """Calls made per 'sample', map drawn per 'slide' whose names are the same words for other cells: each panel was
    titled with the call of the sample of its name, a call about other cells."""
    a = sim_small.copy()
    tmt.tl.immune_phenotype(a, sample_key="sample", cell_type_key="true_lineage")
    a.obs["slide"] = a.obs["sample"].map({"S01": "S02", "S02": "S03", "S03": "S01"}).astype(str)
    fig = tmt.pl.spatial(a, color="true_lineage", sample_key="slide")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["S01", "S02", "S03"]
    plt.close(fig)
    fig = tmt.pl.spatial(a, color="true_lineage")  # the samples called: their calls
    calls = a.uns["tmt_immune_phenotype"]["table"]["phenotype"]
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == [f"{s}\n{calls[s]}" for s in calls.index]
    plt.close(fig)


def test_spatial_highlight_outline_leaves_the_colour_visible_on_large_maps():
    """A Xenium section tiled to 51,000 cells: highlighted CD8 T cells are 3 points^2 (1.7 points across) and their
    0.4-point white outline covered most of the red, so clusters of CD8 T cells looked white, not red."""
    from anndata import AnnData

    rng = np.random.default_rng(0)
    n = 50_000
    a = AnnData(obs=pd.DataFrame({"cell": pd.Categorical(rng.choice(["CD8 T", "B"], n))},
                                 index=[f"c{i}" for i in range(n)]), obsm={"spatial": rng.uniform(0, 5000, (n, 2))})
    fig = tmt.pl.spatial(a, color="cell")
    (top,) = [c for c in fig.axes[0].collections if isinstance(c, PathCollection) and c.get_linewidths()[0] > 0]
    diameter = np.sqrt(top.get_sizes()[0])
    assert top.get_linewidths()[0] <= 0.06 * diameter  # as on a map of 500 cells: 0.4 points on a 7.7-point marker
    plt.close(fig)


def test_embedding_of_the_spatial_basis_lies_as_the_spatial_map(done):
    """pl.embedding(basis="spatial") drew the cells y up, the mirror image of pl.spatial's map of the same cells."""
    ax = tmt.pl.embedding(done, basis="spatial", color="tmt_lineage")
    assert ax.yaxis_inverted()
    plt.close(ax.figure)
    a = done.copy()
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(a.n_obs, 2))
    ax = tmt.pl.embedding(a)  # a UMAP keeps scanpy's orientation
    assert not ax.yaxis_inverted()
    plt.close(ax.figure)


def test_gates_count_a_single_cell_at_zero_in_the_singular(done):
    """The scimap CyCIF image has one cell at exactly 0 in most channels: every panel read "1 cells at 0"."""
    import anndata as ad

    o = done.obs
    rng = np.random.default_rng(3)
    bright = {"CD8": o["true_lineage"] == "CD8 T", "PanCK": o["true_lineage"] == "Malignant/Epithelial"}
    X = np.column_stack([rng.lognormal(np.where(b, 1.5, -1.5), 0.5) for b in bright.values()])
    X[0, 1] = 0.0
    panel = ad.AnnData(X.astype(np.float32), obs=o[["sample"]].copy(), obsm={"spatial": done.obsm["spatial"]})
    panel.var_names = list(bright)
    tmt.tl.annotate(panel)
    _, ax = plt.subplots()
    tmt.pl.gates(panel, markers="tumor", ax=ax)
    assert ax.get_title().endswith("\n1 cell at 0, not drawn")
    plt.close(ax.figure)


def test_spatial_panels_of_different_shapes_keep_their_titles_in_one_line(sim_small):
    """Fields of different shapes (a Visium slide wider than the others, quadrants of a MERFISH window) coloured by
    a value: each panel sat at its own height under the colour bar, and its title with it."""
    a = sim_small.copy()
    xy = np.asarray(a.obsm["spatial"], dtype=float).copy()
    wide = (a.obs["sample"] == "S03").to_numpy()
    xy[wide, 0] *= 1.6
    a.obsm["spatial"] = xy
    a.obs["value"] = np.random.default_rng(0).random(a.n_obs)
    for color in ("value", "true_lineage"):
        fig = tmt.pl.spatial(a, color=color)
        fig.draw_without_rendering()
        tops = {round(ax.title.get_window_extent().y1, 1) for ax in fig.axes if ax.get_visible() and ax.get_title()}
        assert len(tops) == 1, color
        plt.close(fig)


def test_spatial_scale_bar_label_stays_clear_of_the_cells(sim_small):
    """The Xenium section's '100 µm' sat 1 pixel under the centres of the lowest cells: the label ran into
    the markers (and, on the CODEX spot, into the border lines)."""
    fig = tmt.pl.spatial(sim_small, color="true_lineage")
    fig.draw_without_rendering()
    for ax in [ax for ax in fig.axes if ax.get_visible() and ax.texts]:
        (label,) = [t for t in ax.texts if t.get_text().endswith("µm")]
        box = label.get_window_extent()
        for points in (c for c in ax.collections if isinstance(c, PathCollection)):
            xy = ax.transData.transform(points.get_offsets())
            radius = np.sqrt(points.get_sizes().max()) / 2 * fig.dpi / 72
            under = (xy[:, 0] >= box.x0 - radius) & (xy[:, 0] <= box.x1 + radius)
            assert (xy[under, 1] - radius > box.y1).all()
    plt.close(fig)


def test_embedding_draws_numeric_columns_on_a_colour_scale(done):
    """tmt_confidence (a number per cell) on a colour bar, as scanpy draws it, not as one legend entry per value."""
    a = done.copy()
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(a.n_obs, 2))
    ax = tmt.pl.embedding(a, "tmt_confidence")
    assert ax.get_legend() is None
    assert any(other.get_label() == "<colorbar>" for other in ax.figure.axes)
    assert a.obs["tmt_confidence"].dtype == float  # the user's column is not changed
    plt.close(ax.figure)


def test_expression_phenotype_plot_of_one_sample_warns_nothing(sim_small):
    """One dissociated sample (Puram 2017): its CD8 T share and interval drawn without pandas' FutureWarning
    (matplotlib read the one-element Series with float())."""
    a = sim_small[sim_small.obs["sample"] == "S01"].copy()
    del a.obsm["spatial"]
    tmt.tl.annotate(a)
    tmt.tl.immune_phenotype(a, sample_key="sample", reference="absolute")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        ax = tmt.pl.immune_phenotype(a)
    assert "95% interval (counts)" in ax.get_legend_handles_labels()[1]
    plt.close(ax.figure)


def test_composition_names_each_sample_with_its_cells(done):
    """A bar of 2 cells looks like one of 300: each sample's label carries its number of cells (as the dot plot's
    and the score heatmap's rows do); cells without a value are not counted."""
    a = done.copy()
    a.obs.loc[a.obs_names[:10], "tmt_lineage"] = np.nan
    ax = tmt.pl.composition(a)
    counted = a.obs.loc[a.obs["tmt_lineage"].notna(), "sample"].value_counts()
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{s} (n={counted[s]:,})" for s in ("S01", "S02", "S03")]
    plt.close(ax.figure)


@pytest.mark.parametrize("kwargs", [{"show": False}, {"save": "umap.png"}])
def test_embedding_refuses_scanpys_show_and_save_as_the_other_plots_do(done, tmp_path, monkeypatch, kwargs):
    """Passed on to scanpy, show=False failed with 'multiple values for keyword argument' and save= wrote
    figures/umapumap.png into the working directory, then failed on the figure scanpy had closed."""
    monkeypatch.chdir(tmp_path)
    a = done.copy()
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(a.n_obs, 2))
    with pytest.raises(TypeError, match=r"ax\.figure\.savefig\(path\)"):
        tmt.pl.embedding(a, **kwargs)
    assert not list(tmp_path.iterdir())
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        tmt.pl.composition(a, **kwargs)
    plt.close("all")


def test_markers_of_a_single_label_show_its_expression_not_a_scale_of_one_row(done):
    """lineage= with one called state (Puram 2017 macrophages: TAM M2-like only): scaled per gene over one row
    every dot had the same colour on a -0.1 to 0.1 bar; a lone row now shows its mean log expression."""
    a = done.copy()
    undecided = {state: "Monocyte/Macrophage" for state in ("Monocyte", "TAM M1-like", "M-MDSC-like")}
    a.obs["tmt_state"] = a.obs["tmt_state"].replace(undecided)
    ax = tmt.pl.markers(a, lineage="Monocyte/Macrophage")
    assert [t.get_text().split(" (")[0] for t in ax.get_yticklabels()] == ["TAM M2-like"]
    (dots,) = [c for c in ax.collections if len(c.get_offsets()) > 1]
    assert len({tuple(np.round(f, 3)) for f in dots.get_facecolors()}) > 1
    assert any("(log)" in t.get_text() for other in ax.figure.axes for t in [other.title, other.xaxis.label])
    assert ax.figure.get_size_inches()[1] >= 2.6  # room for the size legend and the colour bar
    plt.close(ax.figure)


def test_embedding_says_what_to_do_with_scanpys_colour_lists_and_genes(done):
    """color=["tmt_lineage", "tmt_state"] failed with "unhashable type: 'list'", a gene with the obs columns listed."""
    a = done.copy()
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(a.n_obs, 2))
    with pytest.raises(TypeError, match=r"one obs column.*ax=axs\[0\]"):
        tmt.pl.embedding(a, ["tmt_lineage", "tmt_state"])
    with pytest.raises(KeyError, match=r"'CD8A' is a gene.*sc\.pl\.embedding\(adata, basis='umap', color='CD8A'\)"):
        tmt.pl.embedding(a, "CD8A")
    plt.close("all")


def test_expression_phenotype_refuses_regions_it_does_not_have(sim_small):
    """regions=True on the expression basis drew the samples under the regions' name; it says there are none, as
    immunosuppression and resistance_profile do."""
    a = sim_small.copy()
    del a.obsm["spatial"]
    tmt.tl.annotate(a)
    tmt.tl.immune_phenotype(a, sample_key="sample", reference="absolute")
    with pytest.raises(KeyError, match="called from expression.*leave out regions=True"):
        tmt.pl.immune_phenotype(a, regions=True)


@pytest.mark.parametrize("key", ["tmt_tam_subset", "tmt_caf_subset", "tmt_tam_polarization"])
def test_subsets_have_one_colour_in_every_plot(done, key):
    """Zilionis 2019: LA-TAM was #88ccee in the composition (colours by abundance) and #1f77b4 on the UMAP
    (scanpy's palette), 'undetermined' grey in one and green in the other. Subsets and polarization now have fixed
    colours, the same in both plots and in any subset of the cells."""
    a = done.copy()
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(a.n_obs, 2))

    def composition_colours(adata):
        ax = tmt.pl.composition(adata, key=key)
        handles, labels = ax.get_legend_handles_labels()
        plt.close(ax.figure)
        return {lab: matplotlib.colors.to_hex(h.patches[0].get_facecolor())
                for h, lab in zip(handles, labels, strict=True)}

    def embedding_colours(adata):
        ax = tmt.pl.embedding(adata, key)
        handles, labels = ax.get_legend_handles_labels()
        plt.close(ax.figure)
        return {lab: matplotlib.colors.to_hex(h.get_facecolor()[0])
                for h, lab in zip(handles, labels, strict=True) if lab != "NA"}

    whole = composition_colours(a)
    assert len(whole) >= 2 and whole == embedding_colours(a)
    grey = {"undetermined", "neither"} & set(whole)
    assert all(whole[g] == "#dddddd" for g in grey)
    labels = a.obs[key].dropna().astype(str)
    rare = labels.value_counts().index[-1]  # the least abundant label, made the most abundant
    keep = (a.obs[key].astype(str) == rare).to_numpy() | (np.arange(a.n_obs) % 7 == 0)
    part = composition_colours(a[keep].copy())
    assert all(whole[lab] == colour for lab, colour in part.items() if lab in whole)


def test_checkpoints_plot_names_only_the_receptors_measured(done):
    """Highly variable genes without HAVCR2, LAG3 and TIGIT (the Zilionis mouse lung): the title named all five
    receptors and the legend a ">=3 receptors" share that cannot be known; now the title says which are missing."""
    a = done[:, ~done.var_names.isin(["HAVCR2", "LAG3", "TIGIT"])].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmt.tl.checkpoints(a)
    ax = tmt.pl.checkpoints(a)
    assert ax.get_title() == "PD-1 / CTLA-4 co-expression\n(TIM-3, LAG-3, TIGIT not measured)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["≥1 receptors", "≥2 receptors"]
    plt.close(ax.figure)
    ax = tmt.pl.checkpoints(done)
    assert ax.get_title() == "PD-1 / TIM-3 / LAG-3 / TIGIT / CTLA-4 co-expression"
    assert len(ax.get_legend().get_texts()) == 3
    plt.close(ax.figure)


@pytest.mark.parametrize("n_samples", [3, 30])
def test_checkpoints_counts_are_readable_and_clear_of_the_bars_and_each_other(done, n_samples):
    """The CD8 T-cell count of each bar was written above it at 6 pt, unreadable in a report, and turned on its side
    above 12 samples. Each count now sits under its sample's name at the tick labels' size, beside no bar and no
    other count, for a few samples as for many with counts in the thousands."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import Rectangle

    a = done.copy()
    res = dict(a.uns["tmt_checkpoints"])
    rows = np.resize(np.arange(len(res["table"])), n_samples)
    tab = res["table"].iloc[rows].set_axis([f"Patient_{i:02d}" for i in range(n_samples)])
    tab["n_cd8"] = np.linspace(4, 12_345, n_samples).astype(int)
    tab["cd8_frac_ge1_receptors"] = np.linspace(0.2, 1.0, n_samples)  # bars up to the top
    res["table"] = tab
    a.uns["tmt_checkpoints"] = res
    ax = tmt.pl.checkpoints(a)
    fig = ax.figure
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    counts = [t for t in [*ax.texts, *ax.get_xticklabels()] if "n=" in t.get_text()]
    written = [int(n.replace(",", "")) for t in counts for n in re.findall(r"n=([\d,]+)", t.get_text())]
    assert sorted(written) == sorted(tab["n_cd8"])
    small = FontProperties(size="small").get_size_in_points()
    assert all(t.get_fontsize() >= small for t in counts)
    boxes = [t.get_window_extent(renderer) for t in counts]
    assert not any(b.overlaps(c) for b, c in itertools.combinations(boxes, 2))
    bars = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, Rectangle) and p.get_height() > 0]
    assert bars and not any(b.overlaps(p) for b in boxes for p in bars)
    assert _inside(fig)
    plt.close(fig)


def test_scores_scale_each_signature_across_groups_and_draw_a_constant_one_whole(done):
    """standard_scale scales each signature's group means to 0-1, as scanpy's standard_scale="var", and the colour
    bar says so (it read "scaled mean score"). A signature equal in every group differs by rounding only (1e-17 for
    a constant 0.1): scaled by that it was drawn as stripes of the palest and the darkest colour."""
    a = done.copy()
    a.obsm["tmt_scores"] = a.obsm["tmt_scores"].assign(constant=0.1)
    groups = a.obs["tmt_state"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = tmt.pl.scores(a, ["Treg_core", "CD8_Tex", "constant"], groupby="tmt_state")
    cells = np.ma.getdata(ax.get_images()[0].get_array()).astype(float)
    assert not np.ma.is_masked(ax.get_images()[0].get_array()) and np.isfinite(cells).all()
    mean = a.obsm["tmt_scores"][["Treg_core", "CD8_Tex"]].groupby(groups.values, observed=True).mean()
    np.testing.assert_allclose(cells[:, :2], ((mean - mean.min()) / (mean.max() - mean.min())).to_numpy())
    assert np.unique(cells[:, 2]).tolist() == [0.5]
    assert [t.get_text() for t in ax.get_xticklabels()][2] == "constant (equal in all groups)"
    label = ax.get_images()[0].colorbar.ax.get_ylabel()
    assert label == "mean score, scaled 0-1 per signature\n(lowest to highest group)"
    plt.close(ax.figure)
    ax = tmt.pl.scores(a, ["Treg_core", "constant"], groupby="tmt_state", standard_scale=False)
    assert ax.get_images()[0].colorbar.ax.get_ylabel() == "mean score"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Treg_core", "constant"]
    np.testing.assert_allclose(np.ma.getdata(ax.get_images()[0].get_array())[:, 1], 0.1)
    plt.close(ax.figure)


def test_immunosuppression_colour_bar_says_why_barely_varying_components_stay_pale(done):
    """Components are drawn as the z-scores the composite averages, their spread at least MIN_SPREAD: hypoxia,
    varying by hundredths across the simulated samples, stays near white. The colour bar said only "robust z", whose
    spread of 1 per component promises colour in every column; it now names the formula and the floor."""
    from tmetoolkit._core.sample.cohort import MIN_SPREAD, robust_sd

    tab = done.uns["tmt_immunosuppression"]["table"]
    ax = tmt.pl.immunosuppression(done)
    label = ax.get_images()[0].colorbar.ax.get_ylabel()
    assert label.startswith("robust z across samples: (value − median) / spread")
    assert f"spread at least {MIN_SPREAD:g}" in label
    assert robust_sd(tab["hypoxia"]) < MIN_SPREAD  # barely varying: its z is divided by the floor, not its spread
    column = [t.get_text() for t in ax.get_xticklabels()].index("Hypoxia")
    drawn = np.ma.getdata(ax.get_images()[0].get_array())[:, column]
    np.testing.assert_allclose(drawn, (tab["hypoxia"] - tab["hypoxia"].median()) / MIN_SPREAD)
    assert np.abs(drawn).max() < 0.5
    plt.close(ax.figure)

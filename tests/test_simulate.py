from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import tmetoolkit as tmt
from tmetoolkit._keys import STATES


def test_truth_is_complete_and_deterministic():
    a = tmt.datasets.simulate(n_samples=3, n_cells=600, seed=11)
    b = tmt.datasets.simulate(n_samples=3, n_cells=600, seed=11)
    assert (a.X != b.X).nnz == 0 and a.obs.equals(b.obs)
    c = tmt.datasets.simulate(n_samples=3, n_cells=600, seed=12)
    assert (a.X != c.X).nnz > 0
    assert a.obsm["spatial"].shape == (1800, 2)
    for col in ("sample", "true_lineage", "true_state", "true_compartment", "true_border_distance", "true_phenotype"):
        assert col in a.obs
    assert set(a.obs["true_compartment"]) == {"tumor", "margin", "stroma"}
    assert np.issubdtype(a.X.dtype, np.floating) and np.all(a.X.data == np.round(a.X.data))
    samples = a.uns["tmt_simulation"]["samples"]
    assert list(samples["phenotype"]) == ["inflamed", "excluded", "desert"]


def test_every_state_of_the_vocabulary_is_planted():
    a = tmt.datasets.simulate(n_samples=3, n_cells=3000, seed=0)
    present = set(a.obs["true_state"])
    for states in STATES.values():
        assert set(states) <= present


def test_phenotypes_place_cd8_t_cells_as_planted():
    a = tmt.datasets.simulate(n_samples=3, n_cells=3000, seed=2)
    obs = a.obs
    cd8 = obs["true_lineage"] == "CD8 T"
    frac = cd8.groupby([obs["true_phenotype"], obs["true_compartment"]], observed=True).mean().unstack()
    assert frac.loc["inflamed", "tumor"] > 5 * frac.loc["excluded", "tumor"]
    assert frac.loc["excluded", "margin"] > 5 * frac.loc["excluded", "tumor"]
    assert frac.loc["desert"].max() < 0.02
    # border distance is negative exactly inside the tumour compartment
    assert (obs.loc[obs["true_compartment"] == "tumor", "true_border_distance"] < 0).all()


def test_programmes_come_from_sources_the_registry_does_not_cite():
    """The planted programmes are read from atlases no registry signature or lineage marker cites, so agreement of
    annotate with the truth is not the registry reading back its own lists."""
    from tmetoolkit.datasets._simulate import programme_table

    table = programme_table()
    planted_dois = {s["doi"].lower() for s in table["sources"].values()}
    root = Path(tmt.__file__).resolve().parents[1] / "signatures"
    registry_text = "\n".join(p.read_text(encoding="utf-8").lower() for p in root.rglob("*.yaml"))
    assert registry_text.count("doi") > 100  # the registry was read
    assert not [d for d in planted_dois if d in registry_text]
    for section in ("lineages", "states", "absent", "mechanisms"):
        for name, spec in table[section].items():
            assert spec["sources"] and set(spec["sources"]) <= set(table["sources"]), name


def test_programmes_are_not_the_signatures_annotate_reads():
    """Every state's planted genes are mostly outside the genes annotate decides it on (its signatures without
    the genes its sibling states share, ``rules.specific_state_rules``; measured: at least 53% outside, CD8 Tex;
    the registry signatures keep genes the simulator does not plant)."""
    from tmetoolkit._core.annotation import rules

    a = tmt.datasets.simulate(n_samples=1, n_cells=300, seed=0)
    progs = a.uns["tmt_simulation"]["programs"].set_index("program")
    tables, derived = rules.specific_state_rules()
    by_name = {d.name: d for d in derived}
    n_missing = 0
    for states in tables.values():
        for state, sigs in states.items():
            planted = set(progs.at[f"state:{state}", "genes"].split(","))
            sig = {g for name in sigs for g in (by_name.get(name) or tmt.sig.get(name)).genes_up}
            assert len(planted - sig) / len(planted) > 0.5, state
            assert any(g.startswith("SIMGENE") for g in planted)
            n_missing += len(sig - planted)
    assert n_missing > 100


def test_related_types_share_genes_and_states_are_graded():
    """Shared modules: CD8 T and NK cells both hold the cytotoxic genes, macrophages and DCs HLA class II,
    fibroblasts and pericytes ACTA2; a state's genes vary from cell to cell (graded activity), and spill-over puts
    some epithelial transcripts into the immune cells inside the nests."""
    a = tmt.datasets.simulate(n_samples=2, n_cells=3000, seed=1)
    b = a.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    lin = b.obs["true_lineage"].astype(str)
    mean = pd.DataFrame(b[:, ["NKG7", "HLA-DRA", "ACTA2", "EPCAM"]].X.toarray(), index=b.obs_names).groupby(
        lin.to_numpy()).mean()
    mean.columns = ["NKG7", "HLA-DRA", "ACTA2", "EPCAM"]
    for gene, sharing, rest in (("NKG7", ["CD8 T", "NK"], "Endothelial"),
                                ("HLA-DRA", ["Monocyte/Macrophage", "DC"], "Malignant/Epithelial"),
                                ("ACTA2", ["Fibroblast", "Pericyte"], "Malignant/Epithelial")):
        # measured log1p means: HLA-DRA 0.90 macrophages, 2.93 DCs, 0.07 malignant cells
        assert (mean.loc[sharing, gene] > mean.loc[rest, gene] + 0.5).all(), (gene, mean[gene])
    t_cell = lin.isin(["CD4 T", "CD8 T"]).to_numpy()
    # EPCAM alone is too rare in ~100 T cells to tell: seeds 1-4 gave differences of -0.003 to 0.07
    epithelial = np.asarray(a[:, ["EPCAM", "KRT8", "KRT18", "KRT19"]].X.sum(axis=1)).ravel() > 0
    comp = b.obs["true_compartment"].to_numpy()
    # measured 0.37 of the T cells in the nests, 0.12 in the stroma (seeds 1-4: differences 0.14-0.25)
    assert epithelial[t_cell & (comp == "tumor")].mean() > epithelial[t_cell & (comp == "stroma")].mean() + 0.05
    tex = b[b.obs["true_state"] == "CD8 Tex", ["HAVCR2", "LAG3", "PDCD1"]].X.toarray().mean(axis=1)
    assert np.std(tex) > 0.3


def test_genes_of_cell_types_the_tissue_lacks_are_rare():
    """The genes of cell types the simulator does not plant (squamous keratinocytes, smooth muscle) are detected in
    few cells of any lineage, as in a tumour without those cells. At an ordinary gene's level KRT5 was detected in
    90% of seed 0's cells (CNN1 84%, KRT17 79%), and 621 of its 646 pericytes were called Malignant/Epithelial
    (squamous); now 635 are pericytes (measured detection 1-5%)."""
    from tmetoolkit.datasets._simulate import programme_table

    absent = [g for spec in programme_table()["absent"].values() for g in spec["genes"]]
    a = tmt.datasets.simulate(n_samples=2, n_cells=1500, seed=0)
    detected = np.asarray((a[:, absent].X > 0).mean(axis=0)).ravel()
    assert detected.max() < 0.1, dict(zip(absent, detected.round(3), strict=True))
    assert (a[:, ["EPCAM", "KRT8"]].X.toarray() > 0).mean() > 0.2  # the planted epithelium is there


def test_planted_knobs_move_composition():
    a = tmt.datasets.simulate(n_samples=6, n_cells=2000, seed=4)
    samples = a.uns["tmt_simulation"]["samples"].set_index("sample")
    obs = a.obs
    cd4 = obs[obs["true_lineage"] == "CD4 T"]
    treg = (cd4["true_state"] == "Treg").groupby(cd4["sample"], observed=True).mean()
    assert np.corrcoef(treg, samples.loc[treg.index, "treg_fraction"])[0, 1] > 0.7


@pytest.mark.parametrize("shape", ["nests", "solid", "scattered"])
def test_shapes(shape):
    a = tmt.datasets.simulate(n_samples=1, n_cells=1500, tumor_shape=shape, seed=1)
    assert (a.obs["true_compartment"] == "tumor").mean() > 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="tumor_shape"):
        tmt.datasets.simulate(n_samples=1, tumor_shape="star")
    with pytest.raises(ValueError, match="phenotypes"):
        tmt.datasets.simulate(n_samples=2, phenotypes=["hot", "cold"])
    with pytest.raises(ValueError, match="one value per sample"):
        tmt.datasets.simulate(n_samples=2, ifng_unresponsive=[True])
    assert isinstance(tmt.datasets.simulate(n_samples=1, n_cells=100).obs, pd.DataFrame)

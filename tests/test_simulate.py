import numpy as np
import pandas as pd
import pytest

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


def test_programmes_only_partly_overlap_the_signatures():
    a = tmt.datasets.simulate(n_samples=1, n_cells=300, seed=0)
    progs = a.uns["tmt_simulation"]["programs"].set_index("program")
    for prog, row in progs.iterrows():
        planted = set(row["genes"].split(","))
        for name in row["mimics"].split(","):
            sig = set(tmt.sig.get(name).genes_up)
            if len(sig) >= 6:
                # never the whole signature, and genes from outside the registry are planted too
                assert len(planted & sig) < len(sig), (prog, name)
        assert any(g.startswith("SIMGENE") for g in planted)


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

import numpy as np
import pytest

import tmetoolkit as tmt


@pytest.fixture(scope="module")
def profiled():
    a = tmt.datasets.simulate(n_samples=6, n_cells=1500, seed=41)
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    a.obs["tmb"] = a.obs["sample"].map({"S01": 25.0, "S02": 3.0, "S03": 8.0, "S04": 12.0, "S05": 1.0, "S06": 40.0})
    tmt.tl.resistance_profile(a)
    return a


def test_every_mechanism_has_a_value_or_a_reason(profiled):
    long = profiled.uns["tmt_resistance_profile"]["long"]
    mech = tmt.tl.mechanisms()
    assert set(long["mechanism"]) == set(mech["mechanism"])
    assert len(long) == len(mech) * 6
    for row in long.itertuples():
        assert np.isfinite(row.value) or row.status.startswith(("needs external data", "not assessable")), row
    for col in ("cycle_steps", "category", "evidence_level", "strategies"):
        assert long[col].astype(str).str.len().gt(0).all()


def test_planted_antigen_presentation_loss_is_flagged(profiled):
    planted = profiled.uns["tmt_simulation"]["samples"].set_index("sample")["apm_loss"]
    table = profiled.uns["tmt_resistance_profile"]["table"]
    flagged = table["B2M/HLA mutations"].astype(bool)
    assert planted.any() and (~planted).any()
    assert (flagged == planted.loc[flagged.index]).all()


def test_metadata_is_used_when_given(profiled):
    long = profiled.uns["tmt_resistance_profile"]["long"].set_index(["sample", "mechanism"])
    tmb = "Low tumor mutational burden (TMB)"
    assert long.loc[("S02", tmb), "status"] == "from sample metadata"
    assert long.loc[("S02", tmb), "flagged"] == 1.0 and long.loc[("S01", tmb), "flagged"] == 0.0
    assert long.loc[("S01", "Gut dysbiosis"), "status"].startswith("needs external data")


def test_one_sample_reports_values_without_cohort_flags(profiled):
    one = profiled[profiled.obs["sample"] == "S03"].copy()
    del one.uns["tmt_immunosuppression"]
    tmt.tl.resistance_profile(one)
    long = one.uns["tmt_resistance_profile"]["long"].set_index("mechanism")
    assert long.loc["B2M/HLA mutations", "flagged"] == 1.0  # within-sample comparison needs no cohort
    assert "three samples" in long.loc["Hypoxia", "status"]


def test_needs_annotation(sim_small):
    with pytest.raises(KeyError, match="annotate"):
        tmt.tl.resistance_profile(sim_small)

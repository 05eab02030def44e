import numpy as np
import pytest
from scipy.stats import spearmanr

import tmetoolkit as tmt
from tmetoolkit.tl._suppression import COMPONENTS


@pytest.fixture(scope="module")
def cohort():
    a = tmt.datasets.simulate(n_samples=12, n_cells=1500, seed=31)
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    tmt.tl.immunosuppression(a)
    return a


@pytest.mark.parametrize(("component", "planted", "min_rho"), [
    ("treg_fraction_cd4", "treg_fraction", 0.6),
    ("mdsc_fraction_myeloid", "mdsc_fraction", 0.4),
    ("m2_m1_balance", "m2_fraction", 0.7),
    ("mycaf_fraction_caf", "mycaf_fraction", 0.8),
])
def test_components_follow_planted_abundance(cohort, component, planted, min_rho):
    t = cohort.uns["tmt_immunosuppression"]["table"]
    p = cohort.uns["tmt_simulation"]["samples"].set_index("sample")
    assert spearmanr(t[component], p.loc[t.index, planted])[0] >= min_rho


def test_table_composite_and_cells(cohort):
    t = cohort.uns["tmt_immunosuppression"]["table"]
    assert set(COMPONENTS) <= set(t.columns)
    assert t["composite"].notna().all() and (t["n_components"] == len(COMPONENTS)).all()
    s = cohort.obs["tmt_suppression_score"]
    lin = cohort.obs["tmt_lineage"].astype(str)
    assert s[lin == "Fibroblast"].notna().all() and s[lin == "Malignant/Epithelial"].isna().all()
    row = tmt.get.sample_table(cohort).loc["S01"]
    assert "immunosuppression:composite" in row.index


def test_missing_components_are_missing_not_zero(sim_small):
    drop = {"FOXP3", "CTLA4", "IL10", "TNFRSF18", "CCR8", "IKZF4", "IKZF2"}
    a = sim_small[:, [g for g in sim_small.var_names if g not in drop]].copy()
    with pytest.warns(tmt.TmtWarning):
        tmt.tl.annotate(a)
    with pytest.warns(tmt.TmtWarning, match="checkpoint_coexpression"):
        tmt.tl.immunosuppression(a)  # checkpoints not run either
    t = a.uns["tmt_immunosuppression"]["table"]
    assert t["treg_fraction_cd4"].isna().all() and t["checkpoint_coexpression"].isna().all()
    assert t["missing_components"].str.contains("treg_fraction_cd4").all()
    assert np.isfinite(t["mycaf_fraction_caf"]).all()


def test_needs_annotation(sim_small):
    with pytest.raises(KeyError, match="annotate"):
        tmt.tl.immunosuppression(sim_small)

import numpy as np
import pytest

import tmetoolkit as tmt


@pytest.fixture(scope="module")
def annotated():
    a = tmt.datasets.simulate(n_samples=3, n_cells=2000, seed=5)
    tmt.tl.annotate(a)
    tmt.tl.checkpoints(a)
    return a


def test_exhausted_cells_carry_more_receptors(annotated):
    o = annotated.obs
    n = o["tmt_checkpoint_n"]
    tex = (o["true_state"] == "CD8 Tex") & (o["tmt_lineage"] == "CD8 T")
    naive = (o["true_state"] == "CD8 naive/memory") & (o["tmt_lineage"] == "CD8 T")
    assert n[tex].mean() > n[naive].mean() + 1
    assert n[o["tmt_lineage"] == "Fibroblast"].isna().all()
    pat = o.loc[tex, "tmt_checkpoint_pattern"].astype(str)
    assert pat.str.contains("TIM-3").mean() > 0.5


def test_sample_table(annotated):
    tab = annotated.uns["tmt_checkpoints"]["table"]
    assert list(tab.index) == ["S01", "S02", "S03"]
    assert {"cd8_frac_PD-1", "cd8_frac_ge2_receptors", "cd8_frac_ge3_receptors", "malignant_frac_PD-L1",
            "myeloid_frac_PD-L1"} <= set(tab.columns)
    assert (tab["cd8_frac_ge2_receptors"] >= tab["cd8_frac_ge3_receptors"]).all()
    # the inflamed sample (more exhausted CD8 T cells planted) has more co-expression
    samples = annotated.uns["tmt_simulation"]["samples"].set_index("sample")
    assert samples.loc["S01", "phenotype"] == "inflamed"
    assert tab.loc["S01", "cd8_frac_ge2_receptors"] > tab.loc["S03", "cd8_frac_ge2_receptors"] or np.isnan(
        tab.loc["S03", "cd8_frac_ge2_receptors"])


def test_needs_annotation_and_reports_missing_receptors(sim_small):
    with pytest.raises(KeyError, match="annotate"):
        tmt.tl.checkpoints(sim_small)
    a = sim_small[:, [g for g in sim_small.var_names if g != "LAG3"]].copy()
    tmt.tl.annotate(a)
    with pytest.warns(tmt.TmtWarning, match="LAG-3"):
        tmt.tl.checkpoints(a)
    assert a.obsm["tmt_checkpoints"]["LAG-3"].isna().all()
    assert a.uns["tmt_checkpoints"]["table"]["cd8_frac_LAG-3"].isna().all()

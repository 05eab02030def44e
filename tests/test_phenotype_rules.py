"""The inflamed / excluded / desert rule in one place: the lines the plot draws are the lines the rule cuts at.

Each case puts groups just either side of every line that :func:`decision_lines` returns for the stored
parameters and checks that the call changes there, so a threshold redrawn by hand (or moved in the rule alone)
fails here.
"""

import numpy as np
import pandas as pd
import pytest

from tmetoolkit._core.sample import phenotype as expression
from tmetoolkit._core.spatial import rules

EPS = 1e-6


def _cell_features(infiltration: float, density: float, n: int = 1) -> dict:
    """Features of groups with ample stroma and effector cells, at one point of the plot's plane."""
    ones = np.ones(n)
    return {"effector_per_mm2": density * ones, "stroma_area_fraction": 0.5 * ones, "rho_tumor": np.nan * ones,
            "rho_stroma": np.nan * ones, "infiltration_vs_null": infiltration * ones,
            "contact_share_vs_null": infiltration * ones, "mixing_score_vs_null": infiltration * ones,
            "n_effector": 100 * ones, "infiltration_p_below_chance": 0.0 * ones}


@pytest.mark.parametrize(("min_density", "null_ratio"), [(rules.MIN_DENSITY, rules.NULL_RATIO), (40.0, 0.7)])
def test_cell_lines_are_the_rule(min_density, null_ratio):
    params = {"min_density_per_mm2": min_density, "null_ratio": null_ratio}
    lines = {line.axis: line.value for line in rules.decision_lines(params)}
    x, y = lines["x"], lines["y"]
    assert (x, y) == (null_ratio, min_density)

    def call(infiltration, density):
        return rules.classify(_cell_features(infiltration, density), min_density=min_density,
                              null_ratio=null_ratio)[0][0]

    assert call(x, 2 * y) == "inflamed"
    assert call(x - EPS, 2 * y) == "excluded"
    assert call(2 * x, y) == "inflamed"
    assert call(2 * x, y - EPS) == "desert"


@pytest.mark.parametrize("infiltration", [2.0, 0.1])
def test_a_call_beside_the_desert_density_is_as_unsure_either_side(infiltration):
    """Every measure agreeing on 100 effector cells made an inflamed or excluded call sure (1.0) at 103.5 cells/mm2
    while a desert at 95.7 was not (0.08): scimap's image, turned by 30 degrees, moved from one to the other."""
    def conf(density):
        return rules.classify(_cell_features(infiltration, density))[1][0]

    near_above, near_below = conf(1.035 * rules.MIN_DENSITY), conf(rules.MIN_DENSITY / 1.035)
    assert near_above == pytest.approx(near_below) and near_above < 0.1
    assert conf(10 * rules.MIN_DENSITY) > 0.95  # far from it, the measures' agreement decides

@pytest.mark.parametrize(("tau", "fin"), [(rules.MIN_SPOT_FRACTION, rules.MIN_INFILTRATION), (0.2, 0.5)])
def test_spot_lines_are_the_rule(tau, fin):
    lines = rules.decision_lines({"min_spot_fraction": tau, "min_infiltration": fin})
    by_axis = {line.axis: line.value for line in lines}
    assert by_axis["x"] == by_axis["y"] == tau
    slope = by_axis["slope"]

    def call(rho_stroma, rho_tumor):
        f = pd.DataFrame({"rho_tumor": [rho_tumor], "rho_stroma": [rho_stroma],
                          "infiltration_ratio": [rho_tumor / (rho_tumor + rho_stroma)]})
        return rules.classify_spots(f, tau, fin)["phenotype"].iloc[0]

    s = 2 * tau / min(slope, 1.0)  # outside the tumour, far enough above the cut that the tumour side is too
    assert call(s, s * slope * (1 + EPS)) == "inflamed"  # just above the infiltration-ratio line
    assert call(s, s * slope * (1 - EPS)) == "excluded"  # just below it
    assert call(tau - EPS, tau - EPS) == "desert"
    assert call(tau - EPS, tau) != "desert"  # the tumour side reaches the cut


@pytest.mark.parametrize("min_cd8_fraction", [0.1, 0.3])
def test_expression_lines_are_the_rule(min_cd8_fraction):
    # CD8 T cells among immune cells: the two lines of the plot cut inflamed / excluded / desert
    hi, lo = (line.value for line in expression.decision_lines({"min_cd8_fraction": min_cd8_fraction}, "cells"))
    fr = pd.Series([hi, hi - EPS, lo, lo - EPS])
    counts = pd.DataFrame({"cd8_fraction_immune": fr, "cd8_cells": 10, "immune_cells": 100})
    label = expression._absolute_cell_calls(counts, min_cd8_fraction)["phenotype"]
    assert list(label) == ["inflamed", "excluded", "excluded", "desert"]
    # each sample alone: inflamed from the IFN-gamma line, whatever the T-cell genes (an IFN-gamma response is made by
    # T cells, so it rules out desert); below it desert left of the T-cell line, excluded right of it
    res = expression._absolute_expression_calls(pd.DataFrame({"t_cell_enrichment": [1.0], "ifng_enrichment": [1.0]}))
    x_line, y_line = expression.decision_lines(res["thresholds"], "enrichment")
    assert (x_line.axis, y_line.axis) == ("x", "y") and y_line.value == expression.ENRICHED
    x, y = x_line.value, y_line.value
    f = pd.DataFrame({"t_cell_enrichment": [x, x - EPS, x - EPS, x + 1, x], "ifng_enrichment": [y, y, y - EPS, y - EPS,
                                                                                                 y - EPS]})
    res = expression._absolute_expression_calls(f)
    assert list(res["phenotype"]) == ["inflamed", "inflamed", "desert", "excluded", "excluded"]
    # the confidence margin is the distance to the line that would change the call: 0 on each line
    assert np.allclose(res["margin"], [0, 0, EPS, EPS, 0], atol=1e-9)


def test_expression_basis_refuses_spatial_parameters():
    # without positions the call comes from expression, which reads none of these: say so instead of ignoring them
    import anndata as ad

    import tmetoolkit as tmt

    a = ad.AnnData(np.ones((4, 3)))
    for kwargs in ({"min_density": 50.0}, {"tile_size": 200.0, "null_ratio": 0.6}, {"tumor_labels": ["Tumour"]}):
        with pytest.raises(tmt.TmtInputError, match=", ".join(kwargs)):
            tmt.tl.immune_phenotype(a, **kwargs)
    with pytest.raises(tmt.TmtInputError, match="min_density"):
        tmt.tl.immune_phenotype(a, basis="expression", min_density=50.0)


def test_a_cell_composition_call_is_as_sure_as_its_counts():
    """The same CD8 T share among immune cells is a weak call on a handful of cells and a firm one on hundreds:
    the confidence is the posterior probability (Jeffreys) that the share lies on the called side."""
    f = pd.DataFrame({"cd8_fraction_immune": [0.2, 0.2, 0.0, 0.0, 0.05, 0.05],
                      "cd8_cells": [1, 40, 0, 0, 1, 20], "immune_cells": [5, 200, 3, 300, 20, 400]})
    res = expression._absolute_cell_calls(f, 0.1)
    assert list(res["phenotype"]) == ["inflamed", "inflamed", "desert", "desert", "excluded", "excluded"]
    conf = expression._confidence(res["margin"])
    assert conf[0] < 0.7 and conf[1] > 0.99  # 1 of 5 against 40 of 200
    assert conf[2] == 0 and conf[3] > 0.99  # none of 3 says nothing; none of 300 is a desert
    assert conf[4] < 0.3 and conf[5] > 0.9
    # the confidence is 2 P - 1 for P the posterior mass on the called side
    from scipy.stats import beta

    assert conf[1] == pytest.approx(2 * beta(40.5, 160.5).sf(0.1) - 1)
    lo, hi = expression.share_bounds([1, 40], [5, 200])
    assert lo[0] < 0.1 and hi[0] > 0.2 and 0.1 < lo[1] < 0.2 < hi[1]

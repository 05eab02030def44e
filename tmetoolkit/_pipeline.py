"""The whole-pipeline run behind the command line: check, score, annotate, checkpoints, phenotype, write outputs."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from anndata import AnnData

from . import _keys
from ._core.annotation import rules as annotate_rules
from ._utils import TmtInputError, TmtLabelError, TmtMatrixError, logger, progress_bar
from .pp._check import corrected_values_message, input_error, reuse_reports
from .tl._spatial_utils import coordinate_columns

MANIFEST = "tmetoolkit_outputs.txt"  # the files a run wrote; the next run into the folder removes those it does not


class Step(NamedTuple):
    """One step of the pipeline: its progress label, the ``tmt.tl`` tool it runs, and whether input it cannot
    analyse (a ``TmtInputError``) skips the step with the reason (``optional``) or stops the run."""

    label: str
    tool: str
    run: Callable[[], object]
    optional: bool = True


def _run_steps(steps: list[Step]) -> list[tuple[str, str, str]]:
    """Run ``steps`` in order; the optional ones that cannot run on these data are reported and skipped:
    ``(label, tool, reason)`` each."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    skipped = []
    with logging_redirect_tqdm():  # log lines above the bar, not written into it
        for step in _step_bar(steps):
            logger.info(step.label)
            try:
                step.run()
            except TmtInputError as e:
                if not step.optional:
                    raise
                hint = ""
                if isinstance(e, TmtLabelError) and e.argument == "tumor_labels":
                    hint = (" Without malignant-cell labels, a signature that marks the malignant cells on this "
                            "panel can find the tumour: --tumor-signature NAME (tumor_signature= in Python).")
                logger.warning("skipped %s: %s%s", step.label, e, hint)
                skipped.append((step.label, step.tool, f"{e}{hint}"))
    return skipped


def _step_bar(steps):
    """The pipeline's steps with a progress bar, hidden when only warnings and errors are wanted (the command's
    ``-q``)."""
    return progress_bar(steps, desc="tmetoolkit", unit="step", disable=not logger.isEnabledFor(logging.INFO))


def _read_once(run):
    """The matrix is checked once per run (``pp._check.reuse_reports``): the tools' own checks take that report."""

    @functools.wraps(run)
    def once(*args, **kwargs):
        with reuse_reports():
            return run(*args, **kwargs)

    return once


def run_signatures(*, annotate: bool, tumor_signature: str | None = None) -> list:
    """Every signature the run's tools score (the registry's, ``annotate``'s state-specific sets, the tumour
    programme), so that the first step scores them in one pass and each tool finds its columns scored
    (``tl._score.score_once``)."""
    from . import sig

    sigs = list(sig.collection("all"))
    if annotate:
        sigs += annotate_rules.derived_signatures()
    names = {s.name for s in sigs}
    if tumor_signature and tumor_signature not in names:
        sigs.append(tumor_signature)
    return sigs


@_read_once
def run_pipeline(
    adata: AnnData,
    outdir: str | Path,
    *,
    sample_key: str | None = None,
    cell_type_key: str | None = None,
    tumor_labels=None,
    effector_labels=None,
    group_key: str | None = None,
    image_key: str | None = None,
    region_key: str | None = None,
    tumor_signature: str | None = None,
    markers: dict[str, str] | None = None,
    pixel_size: float | None = None,
    bulk: bool = False,
    reference: str | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    name: str = "tmetoolkit",
    input_path: str | Path | None = None,
    _h5ad: AnnData | None = None,
) -> dict:
    """Run every applicable step on ``adata``; write ``<name>.h5ad``, ``sample_table.csv``, ``report.html``,
    ``markers.csv`` (the genes or markers behind the state calls) and, where tissue regions were assessed
    (``region_key`` or the spatial phenotype's tiles), ``region_table.csv``.

    Steps for RNA: input check, all signature scores, cell states, checkpoint profiles, immunosuppression and the
    resistance profile; then the immune phenotype (spatial with coordinates, from expression otherwise) from
    ``cell_type_key`` (the user's cell types, with ``tumor_labels`` and ``effector_labels``) or from tmetoolkit's
    own lineages (protein panels: cell types from marker intensities, channels mapped by name or by ``markers``,
    then receptors, immunosuppression and resistance rows from the calls and the marker gates);
    ``tumor_signature`` marks the malignant cells where no label does (panels without epithelial markers);
    ``pixel_size`` (micrometres per coordinate unit) scales the coordinates of every spatial step. Spot
    data (Visium) get signature scores and the spot phenotype only. With ``bulk=True`` every observation is a
    sample (bulk RNA-seq or pseudobulk): scores, the cohort-relative expression phenotype, and immunosuppression
    and resistance profiles from whole-sample programmes. ``reference`` (``"absolute"`` or ``"cohort"``) is passed
    to the immune phenotype (default: its own choice by cohort size). ``region_key`` (tissue regions within
    samples) adds the phenotype, immunosuppression and resistance profile of every region. Cell states are split
    within each ``sample_key`` sample. ``layer`` names the layer of counts or
    log-normalised values to read when ``X`` holds something else (scaled values); ``X`` is never changed.
    ``use_raw=True`` runs every step on ``adata.raw`` (all genes, when ``X`` holds highly variable genes only) and
    writes the results into ``adata``.

    The output folder is checked (created, written to) before any step runs. The annotated data never replace
    ``input_path``: when ``<name>.h5ad`` would be that file, it is written as ``<name>.tmt.h5ad``. The files a run
    writes are listed in ``tmetoolkit_outputs.txt``; the next run into the folder removes the ones it does not
    write again (a ``region_table.csv`` of an earlier spatial run), and nothing else. Steps that cannot run on the
    data are logged, listed in ``uns["tmt_run"]["skipped"]`` and named in the report. Returns the paths written.
    """
    from . import pp, tl

    outdir = prepare_outdir(outdir)
    h5ad_name = _h5ad_name(outdir, name, input_path)
    if use_raw:
        if adata.raw is None:
            raise TmtInputError("--use-raw (use_raw=True), but the file has no adata.raw; leave it out to read X.")
        if layer is not None:
            raise TmtInputError("--use-raw reads adata.raw; --layer (layer=) reads a layer: give one of them.")
        work = adata.raw.to_adata()
        paths = run_pipeline(work, outdir, sample_key=sample_key, cell_type_key=cell_type_key,
                             tumor_labels=tumor_labels, effector_labels=effector_labels, group_key=group_key,
                             image_key=image_key, region_key=region_key, tumor_signature=tumor_signature,
                             markers=markers, pixel_size=pixel_size, bulk=bulk, reference=reference, name=name,
                             input_path=input_path, _h5ad=adata)
        return paths
    if bulk and (sample_key is not None or cell_type_key is not None or region_key is not None):
        msg = "bulk data: every observation is a sample, so sample_key, cell_type_key and region_key do not apply."
        raise TmtInputError(msg)
    if pixel_size is not None and (bulk or "spatial" not in adata.obsm):
        raise TmtInputError("pixel_size (--pixel-size) scales cell coordinates, but the data have none "
                            "(adata.obsm['spatial']); leave it out.")
    if sample_key is None and "sample" in adata.obs and not bulk:
        sample_key = "sample"
    if sample_key is None and not bulk:
        candidates = _sample_like_columns(adata)
        if group_key is not None:  # compare_groups tests samples, never cells
            raise TmtInputError(f"--group-key {group_key} (group_key=) compares groups of samples, but no sample "
                                "column was given: name it with --sample-key (sample_key=)"
                                + (f"; candidates: {', '.join(candidates)}." if candidates else "."))
        if candidates:
            logger.warning("no sample_key: all cells are treated as one sample. If the data hold several samples, "
                           "name their obs column (--sample-key / sample_key=); candidates: %s.",
                           ", ".join(candidates))
    if layer is not None and layer not in adata.layers:
        from ._utils import missing_key_error

        raise missing_key_error(layer, "adata.layers", adata.layers.keys())
    report = pp.check_input(adata, layer=layer)
    if report.problems:
        raise input_error(report, "; ".join(report.problems))
    out = {"h5ad_name": h5ad_name, "h5ad_data": _h5ad, "keep": input_path,
           "read_as": {"input_state": report.state, "species": report.species}}
    if bulk:
        return _run_bulk(adata, outdir, group_key=group_key, layer=layer, reference=reference, out=out)
    corrected = corrected_values_message(adata, layer) if report.state == "lognorm" else None
    if corrected:  # the checkpoint profiles would refuse them after scoring and annotating: refused here
        raise TmtMatrixError("cannot tell which genes each cell expresses: " + corrected)
    protein = report.state == "protein"
    if "spatial" not in adata.obsm and (pair := coordinate_columns(adata)):
        logger.warning("no adata.obsm['spatial'], so no spatial phenotype; obs columns %s look like cell coordinates: "
                       "use them with --spatial-columns %s (adata.obsm['spatial'] = adata.obs[[%r, %r]].to_numpy() "
                       "in Python).", " and ".join(pair), ",".join(pair), *pair)
    from .tl._spots import is_spot_data

    spots = is_spot_data(adata) and cell_type_key is None
    steps: list[Step] = []
    skipped: list[tuple[str, str, str]] = []
    every = run_signatures(annotate=not spots, tumor_signature=tumor_signature)
    if spots:  # spots mix cells: no per-cell states; scores, then the spot phenotype
        steps.append(Step("scoring signatures", "score", lambda: tl.score(adata, every, layer=layer), optional=False))
    elif not protein:
        steps.append(Step("scoring signatures", "score", lambda: tl.score(adata, every, layer=layer), optional=False))
        steps.append(Step("annotating cell states", "annotate", lambda: tl.annotate(
            adata, layer=layer, sample_key=sample_key, tumor_signature=tumor_signature), optional=False))
        steps.append(Step("checkpoint profiles", "checkpoints", lambda: tl.checkpoints(
            adata, sample_key=sample_key, layer=layer), optional=False))
    elif cell_type_key is None:
        steps.append(Step("annotating cells from protein markers", "annotate", lambda: tl.annotate(
            adata, layer=layer, sample_key=sample_key, image_key=image_key, markers=markers), optional=False))
        steps.append(Step("checkpoint profiles", "checkpoints", lambda: tl.checkpoints(
            adata, sample_key=sample_key, layer=layer), optional=False))
    labels = {"tumor_labels": tumor_labels, "effector_labels": effector_labels}
    # the phenotype comes before the resistance profile, whose IFN-gamma row asks whether T cells reach the tumour
    if "spatial" in adata.obsm:
        steps.append(Step("immune phenotype (spatial)", "immune_phenotype", lambda: tl.immune_phenotype(
            adata, sample_key=sample_key, cell_type_key=cell_type_key, image_key=image_key,
            region_key=region_key, tumor_signature=tumor_signature, pixel_size=pixel_size, layer=layer,
            reference=reference, **labels)))
    elif not protein and sample_key is not None:
        # in a cohort of fewer than three samples each sample is judged alone by absolute thresholds (tl says so)
        steps.append(Step("immune phenotype (expression)", "immune_phenotype", lambda: tl.immune_phenotype(
            adata, sample_key=sample_key, cell_type_key=cell_type_key, effector_labels=effector_labels,
            basis="expression", layer=layer, reference=reference)))
    elif not spots:
        why = ("a protein panel without cell coordinates (adata.obsm['spatial'])" if protein else
               "no sample key and no cell coordinates (adata.obsm['spatial']): the spatial phenotype needs "
               "coordinates, the expression phenotype a sample per cell (--sample-key)")
        skipped.append(("immune phenotype", "immune_phenotype", why))
        logger.warning("no immune phenotype: %s.", why)
    if not spots and (not protein or cell_type_key is None):
        steps.append(Step("immunosuppression", "immunosuppression", lambda: tl.immunosuppression(
            adata, sample_key=sample_key, region_key=region_key, layer=layer)))
        steps.append(Step("resistance profile", "resistance_profile", lambda: tl.resistance_profile(
            adata, sample_key=sample_key, region_key=region_key, layer=layer)))
    if group_key is not None and sample_key is not None:
        steps.append(Step("comparing groups", "compare_groups", lambda: tl.compare_groups(
            adata, sample_key=sample_key, group_key=group_key, regions=region_key is not None)))
    skipped += _run_steps(steps)
    _record_run(adata, skipped, out.pop("read_as"))
    return _write(adata, outdir, sample_key=sample_key, **out)


def _run_bulk(adata: AnnData, outdir: Path, *, group_key: str | None, layer: str | None, reference: str | None,
              out: dict) -> dict:
    """Observations are samples: scores, expression phenotype, whole-sample immunosuppression and resistance."""
    from . import tl

    steps = [Step("scoring signatures", "score", lambda: tl.score(adata, "all", layer=layer), optional=False),
             Step("immunosuppression", "immunosuppression", lambda: tl.immunosuppression(
                 adata, bulk=True, layer=layer)),
             Step("resistance profile", "resistance_profile", lambda: tl.resistance_profile(
                 adata, bulk=True, layer=layer))]
    skipped: list[tuple[str, str, str]] = []
    steps.append(Step("immune phenotype (expression)", "immune_phenotype", lambda: tl.immune_phenotype(
        adata, basis="expression", layer=layer, reference=reference)))
    if group_key is not None:
        steps.append(Step("comparing groups", "compare_groups", lambda: tl.compare_groups(
            adata, sample_key=None, group_key=group_key)))
    skipped += _run_steps(steps)
    _record_run(adata, skipped, out.pop("read_as"))
    return _write(adata, outdir, sample_key=None, **out)


def _sample_like_columns(adata: AnnData) -> list[str]:
    """``obs`` columns whose name says sample, patient, donor ... and that hold between 2 and 1,000 values."""
    import re

    pattern = re.compile(r"sample|patient|donor|orig\.ident|library|specimen|subject|case_?id|slide", re.IGNORECASE)
    return [str(c) for c in adata.obs.columns
            if pattern.search(str(c)) and 2 <= adata.obs[c].nunique() <= 1000 and not str(c).startswith(_keys.PREFIX)]


def prepare_outdir(outdir: str | Path) -> Path:
    """Create ``outdir`` and write a probe file into it, so an unusable folder stops the run before any step
    (a path under a file, a read-only folder or file system, a full disk)."""
    import errno
    import os
    import tempfile

    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise TmtInputError(f"output folder {str(outdir)!r} is a file; give a folder (-o OUTDIR).")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmetoolkit-probe-", dir=outdir)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        why = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a folder",
               errno.EEXIST: "a part of the path is a file, not a folder",
               errno.ENOSPC: "no space left on the device"}.get(e.errno, e.strerror or type(e).__name__)
        raise TmtInputError(f"cannot write into output folder {str(outdir)!r}: {why}. Choose another folder "
                            "(-o OUTDIR).") from e
    return outdir


def _h5ad_name(outdir: Path, name: str, input_path: str | Path | None) -> str:
    """``<name>.h5ad``, or ``<name>.tmt.h5ad`` when that would be the input file itself."""
    target = outdir / f"{name}.h5ad"
    if input_path is not None and target.exists() and Path(input_path).exists() and target.samefile(input_path):
        logger.warning("the output folder holds the input file %s: the annotated data are written beside it as "
                       "%s.tmt.h5ad; the input is not changed.", target.name, name)
        return f"{name}.tmt.h5ad"
    return target.name


def _record_run(adata: AnnData, skipped: list[tuple[str, str, str]], read_as: dict) -> None:
    """``uns["tmt_run"]``: what the input was read as (``input_state``, ``species``), the steps that could not run
    on these data, the tool each runs, and the reason (the report names them)."""
    import pandas as pd

    adata.uns[_keys.RUN] = {**read_as,
                            "skipped": pd.DataFrame(skipped, columns=["step", "tool", "reason"], dtype=str)}


def _copy_tmt_keys(source: AnnData, target: AnnData) -> None:
    """Every ``tmt_`` result of ``source`` (same observations) into ``target``."""
    for col in source.obs.columns:
        if str(col).startswith(_keys.PREFIX):
            target.obs[col] = source.obs[col].values
    for store in ("obsm", "obsp", "uns"):
        for key, value in getattr(source, store).items():
            if str(key).startswith(_keys.PREFIX):
                getattr(target, store)[key] = value


def _write(adata: AnnData, outdir: Path, *, sample_key: str | None, h5ad_name: str,
           h5ad_data: AnnData | None = None, keep: str | Path | None = None) -> dict:
    """Write the outputs; files an earlier run listed in the folder's manifest and this run does not write are
    removed. ``h5ad_data``: the data to write as ``.h5ad`` when the analysis ran on another object (``use_raw``)."""
    from . import get
    from ._report import report

    paths = {"h5ad": outdir / h5ad_name, "sample_table": outdir / "sample_table.csv",
             "report": outdir / "report.html"}
    if h5ad_data is not None:
        _copy_tmt_keys(adata, h5ad_data)
    (adata if h5ad_data is None else h5ad_data).write_h5ad(paths["h5ad"], compression="gzip")
    get.sample_table(adata, sample_key).to_csv(paths["sample_table"])
    if any(isinstance(v, dict) and "regions" in v for k, v in adata.uns.items() if k.startswith(_keys.PREFIX)):
        paths["region_table"] = outdir / "region_table.csv"
        get.region_table(adata).to_csv(paths["region_table"])
    if _keys.ANNOTATE in adata.uns:
        try:
            table = get.markers(adata)
        except ValueError:  # no cell got a label that a signature rule decides
            table = None
        if table is not None:
            paths["markers"] = outdir / "markers.csv"
            table.to_csv(paths["markers"], index=False)
    report(adata, paths["report"], sample_key=sample_key)
    _remove_stale(outdir, {p.name for p in paths.values()}, keep)
    paths["manifest"] = outdir / MANIFEST
    paths["manifest"].write_text("".join(f"{p.name}\n" for p in paths.values()), encoding="utf-8")
    return paths


def _remove_stale(outdir: Path, written: set[str], keep: str | Path | None) -> None:
    """Remove the files an earlier run listed in the manifest that this run did not write again (never ``keep``,
    the input file)."""
    manifest = outdir / MANIFEST
    if not manifest.is_file():
        return
    for line in manifest.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        path = outdir / name
        # only plain names, as this module writes them; never a path leading elsewhere
        if (not name or name in written or name == MANIFEST or Path(name).name != name or not path.is_file()
                or (keep is not None and Path(keep).exists() and path.samefile(keep))):
            continue
        path.unlink()
        logger.info("removed %s, written by an earlier run into this folder", name)

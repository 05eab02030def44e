"""The ``tmetoolkit`` command: ``tmetoolkit run INPUT.h5ad -o OUTDIR`` and ``tmetoolkit demo -o OUTDIR``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import _utils


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tmetoolkit",
        description="Tumour-microenvironment analysis of single-cell, spatial or bulk expression data.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="analyse an .h5ad file and write the annotated data, a sample table and a report")
    run.add_argument("input", help="input file with counts or log-normalised values: AnnData (.h5ad, or a .zarr "
                                   "folder) or Cell Ranger's feature-barcode matrix (.h5, its gene expression)")
    run.add_argument("-o", "--outdir", required=True,
                     help="output folder (created if missing); files of an earlier run there that this run does not "
                          "write again are removed (those listed in its tmetoolkit_outputs.txt), the input never")
    run.add_argument("--sample-key", default=None, help="obs column identifying samples (default: 'sample' if present)")
    run.add_argument("--cell-type-key", default=None,
                     help="obs column with given cell types (default: tmetoolkit's own calls)")
    run.add_argument("--tumor-labels", default=None,
                     help="comma-separated tumour-cell labels of --cell-type-key (default 'Malignant/Epithelial')")
    run.add_argument("--effector-labels", default=None,
                     help="comma-separated effector (CD8 T) labels of --cell-type-key (default 'CD8 T')")
    run.add_argument("--tumor-signature", default=None,
                     help="signature marking the malignant cells, for panels without epithelial markers "
                          "(e.g. MPAS; see tmt.sig.list()): annotate calls them Malignant/Epithelial and the "
                          "phenotype finds the tumour with it; replaces --tumor-labels")
    run.add_argument("--markers", default=None,
                     help="protein panels: canonical marker=channel pairs for channels not recognised by name, "
                          "comma-separated (e.g. tumor=CD30,CD8=CD8A)")
    run.add_argument("--image-key", default=None,
                     help="obs column of images when a sample has several fields or sections")
    run.add_argument("--region-key", default=None,
                     help="obs column of tissue regions (e.g. pathologist annotations): phenotype, "
                          "immunosuppression and resistance profile per region (default: square tiles for the "
                          "phenotype only)")
    run.add_argument("--group-key", default=None, help="obs column with sample groups to compare (e.g. response)")
    run.add_argument("--spatial-columns", default=None,
                     help="X,Y: obs columns of cell coordinates (micrometres, or see --pixel-size), when the file "
                          "has no obsm['spatial']; they are copied there")
    run.add_argument("--pixel-size", type=_micrometres, default=None, metavar="UM",
                     help="micrometres per coordinate unit, when cell coordinates are pixels (e.g. 0.377 for CODEX "
                          "at 20x): scales the tumour margin, contact distances, densities per mm², tiles and the "
                          "maps' scale bars (default: coordinates are micrometres)")
    run.add_argument("--layer", default=None,
                     help="layer of counts or log-normalised values to read when X holds something else (e.g. "
                          "scaled values); X is not changed")
    run.add_argument("--use-raw", action="store_true",
                     help="read adata.raw (all genes) instead of X, e.g. when X holds highly variable genes only; "
                          "the results are written into the data as given")
    run.add_argument("--reference", choices=("absolute", "cohort"), default=None,
                     help="immune phenotype: judge each sample alone by absolute thresholds, or against the cohort "
                          "(default: cohort from 9 samples, absolute below; the report says which was used)")
    run.add_argument("--bulk", action="store_true",
                     help="observations are samples (bulk RNA-seq or pseudobulk), not cells (default: so when at "
                          "most 1,000 observations detect a median of more than 10,000 genes each and no "
                          "--sample-key, --cell-type-key, --region-key or coordinates are given; the log says so)")
    demo = sub.add_parser("demo", help="run the whole pipeline on simulated tumours")
    demo.add_argument("-o", "--outdir", required=True, help="output folder (created if missing)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default 0)")
    for sp in (run, demo):
        sp.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    return p


def _micrometres(value: str) -> float:
    """``--pixel-size``: a positive, finite number of micrometres."""
    from .tl._spatial_utils import checked_pixel_size

    try:
        return checked_pixel_size(value)
    except _utils.TmtInputError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _fail(msg: str) -> int:
    print(f"tmetoolkit: error: {msg}", file=sys.stderr)
    return 2


def _bug() -> int:
    """An exception that is not an input problem: show it as the bug it is, with the traceback to report."""
    import traceback

    traceback.print_exc()
    from . import __version__

    print(f"tmetoolkit: internal error: this is a bug in tmetoolkit {__version__}, not a problem with your data. "
          "Please report it to the tmetoolkit developers (the issue tracker of the repository you installed it "
          "from) with the command you ran and the traceback above.", file=sys.stderr)
    return 1


def _split(value: str | None) -> list[str] | None:
    """A comma-separated option as a list of stripped labels."""
    return [x.strip() for x in value.split(",")] if value else None


def _pairs(value: str | None) -> dict[str, str] | None:
    """``"tumor=CD30,CD8=CD8A"`` as ``{"tumor": "CD30", "CD8": "CD8A"}``."""
    if not value:
        return None
    pairs = {}
    for item in _split(value):
        key, sep, channel = item.partition("=")
        if not sep or not key.strip() or not channel.strip():
            msg = f"--markers takes marker=channel pairs separated by commas, got {item!r}."
            raise _utils.TmtInputError(msg)
        pairs[key.strip()] = channel.strip()
    return pairs


def _detected_bulk(adata, args) -> bool:
    """Whether the observations are bulk samples though ``--bulk`` was not given: few observations, each detecting
    more genes than a cell does, and no option or coordinates that speak of cells. The run is then the ``--bulk``
    run, and the log says so."""
    from ._matrix import MAX_BULK_SAMPLES, looks_like_bulk, median_detected

    cells_named = args.sample_key or args.cell_type_key or args.region_key or "spatial" in adata.obsm
    if cells_named or adata.n_obs > MAX_BULK_SAMPLES or (args.use_raw and (adata.raw is None or args.layer)):
        return False
    if args.layer is not None and args.layer not in adata.layers:
        return False  # the pipeline names the missing layer
    source, layer = (adata.raw.to_adata(), None) if args.use_raw else (adata, args.layer)
    if not looks_like_bulk(source, layer):
        return False
    _utils.logger.warning("each observation detects a median of %s genes, as bulk samples do, not cells: running "
                          "the bulk analysis (as --bulk does), every observation a sample. To analyse them as cells, "
                          "name their sample column (--sample-key).", f"{median_detected(source, layer):,.0f}")
    return True


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    import warnings

    printed = set()  # several tools warn about the same input (repeated var_names): each line is printed once

    def one_line(message, category, *_args, **_kwargs):
        if issubclass(category, _utils.TmtWarning) and not args.quiet and str(message) not in printed:
            from tqdm import tqdm

            printed.add(str(message))
            tqdm.write(f"tmetoolkit: warning: {message}", file=sys.stderr)  # above a progress bar, not into it

    # the command's own output: data-quality warnings as single lines; the filters are restored on return, so
    # that main() called in a session (a notebook, the tests) leaves the session's warnings as they were
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.showwarning = one_line
        return _command(args)


def _read_h5(path: Path):
    """Cell Ranger's feature-barcode matrix: its gene expression, repeated symbols made unique (scanpy's reader
    leaves them)."""
    import scanpy as sc

    adata = sc.read_10x_h5(path)
    adata.var_names_make_unique()
    return adata


def _read_anndata(path: Path):
    import anndata as ad

    return ad.read_zarr(path) if path.suffix.lower() == ".zarr" else ad.read_h5ad(path)


# suffix -> (what the file is, its reader)
_READERS = {".h5ad": ("an .h5ad file", _read_anndata), ".zarr": ("an AnnData .zarr folder", _read_anndata),
            ".h5": ("a Cell Ranger feature-barcode matrix (.h5)", _read_h5)}


def _command(args) -> int:
    from . import datasets
    from ._pipeline import prepare_outdir, run_pipeline

    adata = None
    try:
        prepare_outdir(args.outdir)  # an unusable output folder stops the run before anything is read
        if args.command == "demo":
            adata = datasets.simulate(seed=args.seed)
            paths = run_pipeline(adata, args.outdir, sample_key="sample", group_key="response", name="demo")
        else:
            path = Path(args.input)
            if not path.exists():
                return _fail(f"input file {str(path)!r} does not exist.")
            if path.suffix.lower() not in _READERS:
                return _fail(f"cannot read {str(path)!r}: give an AnnData file (.h5ad, or a .zarr folder) or Cell "
                             "Ranger's feature-barcode matrix (.h5).")
            kind, read = _READERS[path.suffix.lower()]
            try:
                adata = read(path)
            except Exception as e:  # noqa: BLE001 - any reader failure means "not a readable file of that kind"
                return _fail(f"could not read {str(path)!r} as {kind} ({type(e).__name__}).")
            columns = _split(args.spatial_columns) or []
            if args.spatial_columns is not None and len(columns) != 2:
                return _fail(f"--spatial-columns takes two obs columns, X,Y; got {args.spatial_columns!r}.")
            for key in (args.sample_key, args.cell_type_key, args.group_key, args.image_key, args.region_key,
                        *columns):
                if key is not None and key not in adata.obs:
                    close = _utils.nearest(key, adata.obs.columns)
                    return _fail(f"obs column {key!r} not found" + (f"; did you mean {close}?" if close else "."))
            if columns:
                if "spatial" in adata.obsm:
                    return _fail("the file has obsm['spatial'] already; leave out --spatial-columns.")
                adata.obsm["spatial"] = adata.obs[columns].to_numpy(dtype=float)
            bulk = args.bulk or _detected_bulk(adata, args)
            paths = run_pipeline(adata, args.outdir, sample_key=args.sample_key, cell_type_key=args.cell_type_key,
                                 tumor_labels=_split(args.tumor_labels), effector_labels=_split(args.effector_labels),
                                 group_key=args.group_key, image_key=args.image_key, region_key=args.region_key,
                                 tumor_signature=args.tumor_signature, markers=_pairs(args.markers),
                                 pixel_size=args.pixel_size, bulk=bulk, reference=args.reference,
                                 layer=args.layer, use_raw=args.use_raw, name=path.stem, input_path=path)
    except _utils.TmtInputError as e:
        msg = str(e)  # TmtKeyError prints its message unquoted
        if adata is not None and isinstance(e, _utils.TmtMatrixError):
            layers = ", ".join(adata.layers.keys()) or "none"
            msg += f" From the command line: --layer NAME (layers in this file: {layers})."
            if adata.raw is not None:
                msg += " Or --use-raw to read adata.raw."
        return _fail(msg)
    except KeyboardInterrupt:
        return _fail("interrupted.")
    except Exception:  # noqa: BLE001 - everything that is not an input problem is a bug to report
        return _bug()
    for kind, p in paths.items():
        print(f"wrote {kind}: {p}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

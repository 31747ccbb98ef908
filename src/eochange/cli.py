"""The ``eochange`` command line.

Every user mistake (a bad file, a bad argument) ends in one line on stderr naming the
file or argument and what was expected, and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eochange import __version__
from eochange.errors import ConfigError, EOChangeError

if TYPE_CHECKING:
    from eochange.prepare import PrepareReport


def _rewrite(text: str | None) -> str | tuple[str, str] | None:
    if text is None or "=" not in text:
        return text
    pattern, replacement = text.split("=", 1)
    return pattern, replacement


def _cmd_synth(args: argparse.Namespace) -> int:
    from eochange.synth import make_dynamicearthnet

    summary = make_dynamicearthnet(
        args.out,
        aois=args.aois,
        size=args.size,
        start=args.start,
        days=args.days,
        seed=args.seed,
        progress=not args.quiet,
    )
    shares = ", ".join(f"{s:.1%}" for s in summary.class_shares)
    print(
        f"wrote {len(summary.cube_ids)} areas x {len(summary.months)} labelled months to "
        f"{summary.root} (class shares {shares}; {summary.change_fraction:.1%} of pixels "
        "change per month)"
    )
    return 0


def _cmd_synth_sen12ms(args: argparse.Namespace) -> int:
    from eochange.synth import make_sen12ms

    summary = make_sen12ms(
        args.out,
        scenes_per_season=args.scenes_per_season,
        patches_per_scene=args.patches_per_scene,
        size=args.size,
        seed=args.seed,
    )
    print(
        f"wrote {summary.patches} SEN12MS patches ({len(summary.scenes)} seasons x "
        f"{args.scenes_per_season} scenes) to {summary.root}: train {summary.train}, test "
        f"{summary.test}, val {summary.val} (inside train, as upstream); damaged patch "
        f"{summary.damaged}"
    )
    return 0


def _cmd_synth_dfc2020(args: argparse.Namespace) -> int:
    from eochange.synth import make_dfc2020

    summary = make_dfc2020(args.out, patches=args.patches, size=args.size, seed=args.seed)
    print(
        f"wrote {len(summary.validation)} validation and {len(summary.test)} test DFC2020 "
        f"patches to {summary.root}"
    )
    return 0


def _cmd_synth_s1s2(args: argparse.Namespace) -> int:
    from eochange.synth import make_s1s2

    summary = make_s1s2(
        args.out,
        size=args.size,
        days=args.days,
        start=args.start,
        seed=args.seed,
        layout=args.layout,
        event_density=args.event_density,
    )
    counts = ", ".join(
        f"{name} {count}" + (f" (+{summary.failed[name]} failed)" if summary.failed[name] else "")
        for name, count in summary.observations.items()
    )
    kinds = ", ".join(f"{e.kind} {e.date}" for e in summary.events)
    print(
        f"wrote S1/S2 observation folders ({summary.layout}) to {summary.root}: {counts}; "
        f"{len(summary.events)} planted events ({kinds}) in {summary.truth}"
    )
    return 0


def _add_synth_s1s2_parser(synth_kinds: Any) -> None:
    s12 = synth_kinds.add_parser(
        "s1s2",
        help="Sentinel-1/2 observation folders (EOPatch and/or GeoTIFF) with urban changes",
        description="Write synthetic S1 ascending, S1 descending and S2 L1C observation "
        "folders in eo-learn 1.3's EOPatch layout (S1_asc/, S1_dsc/, S2/ with eopatches/ and "
        "fail_eopatches/) and/or the GeoTIFF layout (geotiff/<stream>/<time>.tif + "
        "_mask.tif), with planted construction and demolition events in truth/.",
    )
    s12.add_argument("out", help="output folder")
    s12.add_argument("--size", type=int, default=128, help="area side in pixels (default: 128)")
    s12.add_argument("--days", type=int, default=400, help="number of days (default: 400)")
    s12.add_argument("--start", default="2017-01-01", help="first day (default: 2017-01-01)")
    s12.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s12.add_argument(
        "--layout",
        choices=("eopatch", "geotiff", "both"),
        default="eopatch",
        help="folder layout to write (default: eopatch)",
    )
    s12.add_argument(
        "--event-density",
        type=float,
        default=1.0,
        help="planted events relative to 3 constructions + 1 demolition per 128 x 128 px "
        "(0.25 to 8, default: 1)",
    )
    s12.set_defaults(func=_cmd_synth_s1s2)


def _add_synth_sen12ms_parsers(synth_kinds: Any) -> None:
    sen = synth_kinds.add_parser(
        "sen12ms",
        help="SEN12MS in its official layout, with the toolbox split and label files",
        description="Write a synthetic SEN12MS (S1/S2/LC patch triplets of four seasons), "
        "its splits/ (hold-out scenes, train/test/val lists) and labels/ (IGBP probability "
        "labels); summer scene 146 holds the damaged patch p202 (NaN in S1).",
    )
    sen.add_argument("out", help="output folder")
    sen.add_argument(
        "--scenes-per-season", type=int, default=3, help="scenes per season (default: 3)"
    )
    sen.add_argument(
        "--patches-per-scene", type=int, default=4, help="patches per scene (default: 4)"
    )
    sen.add_argument("--size", type=int, default=256, help="patch side in pixels (default: 256)")
    sen.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sen.set_defaults(func=_cmd_synth_sen12ms)

    dfc = synth_kinds.add_parser(
        "dfc2020",
        help="DFC2020 validation and test sets (S1/S2/LC + 10-class dfc labels)",
        description="Write a synthetic IEEE GRSS DFC2020 validation and test set in the "
        "layout the DFC2020 baseline reads (ROIs0000_validation, ROIs0000_test).",
    )
    dfc.add_argument("out", help="output folder")
    dfc.add_argument("--patches", type=int, default=8, help="patches per set (default: 8)")
    dfc.add_argument("--size", type=int, default=256, help="patch side in pixels (default: 256)")
    dfc.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    dfc.set_defaults(func=_cmd_synth_dfc2020)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from eochange.prepare import prepare_dynamicearthnet

    report = prepare_dynamicearthnet(
        args.root,
        args.out,
        scheduler=args.scheduler,
        workers=args.workers,
        path_rewrite=_rewrite(args.path_rewrite),
        chunk=args.chunk,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    return _prepare_summary(report)


def _prepare_summary(report: PrepareReport) -> int:
    print(
        f"{report.cube}: {len(report.written)} areas written, {len(report.skipped)} already "
        f"complete, {len(report.failed)} failed"
        + (f" ({report.megabytes_per_second:.0f} MB/s per task)" if report.written else "")
    )
    if report.failed:
        for area_id, message in sorted(report.failed.items()):
            print(f"  {area_id}: {message}", file=sys.stderr)
        raise EOChangeError(
            f"{len(report.failed)} area(s) failed; fix them and run the same command again "
            "(complete areas are kept)"
        )
    return 0


def _cmd_prepare_geotiffs(args: argparse.Namespace) -> int:
    from datetime import date

    from eochange.prepare.geotiffs import DEFAULT_DATE_PATTERN, parse_bands, prepare_geotiffs

    try:
        reference = date.fromisoformat(args.reference_date)
    except ValueError:
        raise ConfigError(
            f"--reference-date: expected YYYY-MM-DD, got {args.reference_date!r}"
        ) from None
    report = prepare_geotiffs(
        args.folder,
        args.out,
        bands=parse_bands(args.bands) if args.bands else None,
        band_names=[name.strip() for name in args.band_names.split(",")],
        date_pattern=args.date_pattern or DEFAULT_DATE_PATTERN,
        recursive=args.recursive,
        skip_undated=args.skip_undated,
        area_id=args.area_id,
        area_from_subfolders=args.area_from_subfolders,
        crs=args.crs,
        resolution=args.resolution,
        resampling=args.resampling,
        scale=args.scale,
        offset=args.offset,
        reference_date=reference,
        scheduler=args.scheduler,
        workers=args.workers,
        chunk=args.chunk,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    return _prepare_summary(report)


def _add_area_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address (tcp://host:8786), or local|threads|synchronous "
        "(default: local processes)",
    )
    parser.add_argument("--workers", type=int, default=None, help="local worker processes")
    parser.add_argument("--chunk", type=int, default=256, help="spatial chunk side (default: 256)")
    parser.add_argument("--overwrite", action="store_true", help="redo complete areas too")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_prepare_geotiffs_parser(prepare_kinds: Any) -> None:
    pgeo = prepare_kinds.add_parser(
        "geotiffs",
        help="a folder of dated GeoTIFFs (PlanetScope, Sentinel-2, ...) -> Zarr cube",
        description="Build a datacube from a folder of dated GeoTIFFs for 'eochange map': "
        "dates from the file names, one grid per area (other CRSs and resolutions "
        "resampled onto it), bands mapped to the model's order. See docs/datacube.md.",
    )
    pgeo.add_argument("folder", help="folder of GeoTIFFs (or of one subfolder per area)")
    pgeo.add_argument("--out", required=True, help="cube to write, e.g. CUBE.zarr")
    pgeo.add_argument(
        "--date-pattern",
        default=None,
        metavar="REGEX",
        help="regex with named groups year, month (and day) finding the date in a file "
        "name (default: YYYY-MM-DD, YYYYMMDD or YYYY_MM_DD anywhere in the name)",
    )
    pgeo.add_argument(
        "--skip-undated", action="store_true", help="leave out files without a date (warn)"
    )
    pgeo.add_argument("--recursive", action="store_true", help="also files in subfolders")
    pgeo.add_argument("--area-id", default=None, help="area name (default: the folder name)")
    pgeo.add_argument(
        "--area-from-subfolders",
        action="store_true",
        help="each immediate subfolder is one area (one Dask task each)",
    )
    pgeo.add_argument(
        "--bands",
        default=None,
        help="file band of each --band-names band: 1-based indexes (e.g. 3,2,1,4 for "
        "PlanetScope B,G,R,NIR files; the default) or band descriptions (B04,B03,B02,B08)",
    )
    pgeo.add_argument(
        "--band-names",
        default="R,G,B,NIR",
        help="band names stored in the cube, in the model's order (default: %(default)s)",
    )
    pgeo.add_argument(
        "--crs", default=None, help="target CRS, e.g. EPSG:32632 (needs --resolution)"
    )
    pgeo.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="target pixel size in CRS units; the grid covers all files "
        "(default: each area takes its first file's grid)",
    )
    pgeo.add_argument(
        "--resampling",
        default="bilinear",
        help="resampling of files on another grid (rasterio name; default: %(default)s)",
    )
    pgeo.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply values by this, e.g. 10000 for 0-1 reflectance (default: 1)",
    )
    pgeo.add_argument(
        "--offset",
        type=float,
        default=0.0,
        help="then add this, e.g. -1000 for Sentinel-2 L2A baseline >= 04.00 (default: 0)",
    )
    pgeo.add_argument(
        "--reference-date",
        default="2018-01-01",
        help="dates are stored as days since this day (default: %(default)s)",
    )
    _add_area_task_options(pgeo)
    pgeo.set_defaults(func=_cmd_prepare_geotiffs)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import warnings

    from eochange.evaluation.dynamicearthnet import evaluate, format_table, to_json, write_plots
    from eochange.io.atomic import atomic_path

    if args.change_map and not args.plots:
        raise ConfigError("--change-map needs --plots DIR")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN SC is reported in the table
        result = evaluate(args.ref, args.res, locate_change=bool(args.plots))
    print(format_table(result))
    cubes = len(result["per_cube"])
    print(f"{cubes} cube(s); scores accumulated over all cubes and month pairs")
    if result["ignored_predictions"]:
        print(f"ignored {len(result['ignored_predictions'])} prediction file(s) without reference")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(to_json(result))
        print(f"wrote {args.json}")
    if args.plots:
        written = write_plots(result, args.ref, args.res, args.plots, args.change_map)
        print(f"wrote {', '.join(path.name for path in written)} to {args.plots}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from eochange.report.html import write_report

    print(f"wrote {write_report(args.run_dir, args.out)}")
    return 0


def _cmd_map(args: argparse.Namespace) -> int:
    from pathlib import Path

    from eochange.inference.mapping import MapSettings, make_maps, map_command_summary

    settings = MapSettings(
        tile=args.tile,
        overlap=args.overlap,
        margin=args.margin,
        block=args.block,
        batch_size=args.batch_size,
        fast=args.fast,
        device=args.device,
        probabilities=args.probabilities,
        previews=not args.no_previews,
    )
    report = make_maps(
        args.checkpoint,
        args.input,
        args.out,
        months=args.months,
        areas=args.areas,
        scheduler=args.scheduler,
        settings=settings,
        progress=not args.quiet,
    )
    print(map_command_summary(report, Path(args.out)))
    return 1 if report.failed else 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    import warnings
    from dataclasses import fields

    from eochange.inference.monitor import MonitorSettings, monitor, monitor_summary

    # Every setting is an option of the same name, but previews (--no-previews).
    names = [f.name for f in fields(MonitorSettings) if f.name != "previews"]
    settings = MonitorSettings(previews=not args.no_previews,
                               **{name: getattr(args, name) for name in names})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        report = monitor(args.checkpoint, args.input, args.out, settings=settings,
                         periods=args.period, scheduler=args.scheduler, workers=args.workers,
                         progress=not args.quiet)  # fmt: skip
    for warning in caught:
        print(f"eochange: warning: {warning.message}", file=sys.stderr)
    print(monitor_summary(report))
    return 1 if report.failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from eochange.inference.export import export_onnx

    report = export_onnx(
        args.checkpoint,
        args.out,
        normalized_input=args.normalized_input,
        probabilities=args.probabilities,
        opset=args.opset,
        check=args.check,
    )
    print(report.summary())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from eochange.demo import run_demo

    if args.epochs < 1:
        raise ConfigError(f"--epochs: expected at least 1, got {args.epochs}")
    run_demo(args.out, scheduler=args.scheduler, quiet=args.quiet, epochs=args.epochs,
             sen12ms=args.sen12ms, ercnn=args.ercnn)  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``eochange`` with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="eochange",
        description="Deep learning on satellite image time series: land-cover and change "
        "segmentation (DynamicEarthNet, ERCNN-DRS, SEN12MS).",
    )
    parser.add_argument("--version", action="version", version=f"eochange {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="synthetic data -> datacube -> training -> SCS evaluation -> maps -> HTML report",
        description="Run the end-to-end demo on built-in synthetic data (a few minutes on "
        "a laptop CPU).",
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    demo.add_argument("--scheduler", default=None, help="Dask scheduler (default: local)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument(
        "--epochs", type=int, default=60, help="training epochs (default: %(default)s)"
    )
    demo.add_argument(
        "--sen12ms",
        action="store_true",
        help="also train and test a SEN12MS multi-label scene classifier (about a minute)",
    )
    demo.add_argument(
        "--ercnn",
        action="store_true",
        help="also run the ERCNN-DRS chain: S1/S2 observations, stacking, windows and "
        "synthetic labels, training (10 epochs), scores against the planted events, "
        "change-map series (about 5 minutes more on 2 cores)",
    )
    demo.set_defaults(func=_cmd_demo)

    synth = commands.add_parser("synth", help="write a realistic synthetic dataset")
    synth_kinds = synth.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    den = synth_kinds.add_parser(
        "dynamicearthnet",
        help="DynamicEarthNet in its official layout",
        description="Write a synthetic DynamicEarthNet dataset in the official layout.",
    )
    den.add_argument("out", help="output folder")
    den.add_argument("--aois", type=int, default=3, help="areas of interest (default: 3)")
    den.add_argument("--size", type=int, default=256, help="area side in pixels (default: 256)")
    den.add_argument("--start", default="2018-01-01", help="first day (default: 2018-01-01)")
    den.add_argument("--days", type=int, default=62, help="number of days (default: 62)")
    den.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    den.add_argument("--quiet", action="store_true", help="no progress bar")
    den.set_defaults(func=_cmd_synth)
    _add_synth_sen12ms_parsers(synth_kinds)
    _add_synth_s1s2_parser(synth_kinds)

    prepare = commands.add_parser("prepare", help="convert a source layout into a datacube")
    prepare_kinds = prepare.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    pden = prepare_kinds.add_parser(
        "dynamicearthnet",
        help="DynamicEarthNet official layout -> Zarr cube",
        description="Convert a DynamicEarthNet root into a Zarr v3 datacube, one Dask task "
        "per area; a re-run skips complete areas.",
    )
    pden.add_argument("root", help="dataset root (with dynnet_training_splits/)")
    pden.add_argument("--out", required=True, help="cube to write, e.g. CUBES.zarr")
    pden.add_argument(
        "--path-rewrite",
        default=None,
        help="rewrite split-file paths: a preset (mediatum, pangaea) or REGEX=REPLACEMENT",
    )
    _add_area_task_options(pden)
    pden.set_defaults(func=_cmd_prepare)
    _add_prepare_geotiffs_parser(prepare_kinds)
    evaluate = commands.add_parser("evaluate", help="score predictions against references")
    evaluate_kinds = evaluate.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    eden = evaluate_kinds.add_parser(
        "dynamicearthnet",
        help="SCS, BC, SC and mIoU as the official evaluator",
        description="Score monthly class maps <cube>_<YYYY-MM-DD>.png (or .tif) in --res "
        "against the same names in --ref (255 = ignore), as the official DynamicEarthNet "
        "evaluator does.",
    )
    eden.add_argument("--ref", required=True, help="folder of reference class maps")
    eden.add_argument("--res", required=True, help="folder of predicted class maps")
    eden.add_argument("--json", default=None, help="also write the scores as JSON here")
    eden.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write confusion.png, iou.png and change_map.png into DIR",
    )
    eden.add_argument(
        "--change-map",
        default=None,
        metavar="NAME",
        help="month of the change map, as a file name without suffix, e.g. "
        "1311_3077_13_2018-06-01 (compared with the month before; default: the pair with "
        "the most ground-truth change)",
    )
    eden.set_defaults(func=_cmd_evaluate)

    report = commands.add_parser(
        "report",
        help="self-contained HTML report of a training run",
        description="Write one HTML file (figures embedded) with the scores, a majority-class "
        "baseline, training curves, per-class IoU, confusion matrix, per-cube scores, sample "
        "predictions, change maps and the configuration of a training run folder.",
    )
    report.add_argument("run_dir", help="run folder (metrics.csv, evaluation/, config.yaml)")
    report.add_argument(
        "--out", default=None, metavar="FILE", help="HTML file (default: RUN_DIR/report.html)"
    )
    report.set_defaults(func=_cmd_report)
    _add_map_parser(commands)
    _add_monitor_parser(commands)
    _add_export_parser(commands)
    from eochange.preprocess.command import add_stack_parser, add_window_parser

    add_stack_parser(commands)
    add_window_parser(commands)
    for name, text in LIGHTNING_COMMANDS.items():
        # Parsed by LightningCLI (see eochange.training_cli); listed here for --help.
        commands.add_parser(name, help=f"{text}: eochange {name} --config FILE [--help]")
    return parser


def _add_map_parser(commands: Any) -> None:
    maps = commands.add_parser(
        "map",
        help="monthly land-cover and change maps of whole areas from a checkpoint",
        description="Write per area and month a class map (COG GeoTIFF with palette), "
        "optional probabilities, change maps between consecutive months, PNG previews and "
        "an animated time-lapse. Areas and blocks fan out through Dask; a re-run skips "
        "finished files.",
    )
    maps.add_argument("--checkpoint", required=True, help="checkpoint of `eochange fit`")
    maps.add_argument(
        "--input", required=True, help="an eochange cube or the official DynamicEarthNet root"
    )
    maps.add_argument("--out", required=True, help="output folder")
    maps.add_argument("--months", nargs="+", default=None, metavar="YYYY-MM", help="only these")
    maps.add_argument("--areas", nargs="+", default=None, metavar="ID", help="only these areas")
    maps.add_argument(
        "--scheduler", default=None, help="Dask scheduler address, or local|threads|synchronous"
    )
    maps.add_argument("--tile", type=int, default=256, help="tile side (default: %(default)s)")
    maps.add_argument("--overlap", type=int, default=64, help="tile overlap (%(default)s)")
    maps.add_argument(
        "--margin", type=int, default=16, help="zero-weight pixels at tile seams (%(default)s)"
    )
    maps.add_argument("--block", type=int, default=1024, help="block side per task (%(default)s)")
    maps.add_argument("--batch-size", type=int, default=None,
                      help="tiles per batch (default: 1 on CPU, 16 on GPU)")  # fmt: skip
    maps.add_argument(
        "--fast", action="store_true", help="channels-last + bfloat16 (CPU) / float16 (GPU)"
    )
    maps.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    maps.add_argument("--probabilities", action="store_true", help="also write probabilities")
    maps.add_argument("--no-previews", action="store_true", help="no PNG previews and GIFs")
    maps.add_argument("--quiet", action="store_true", help="no progress bar")
    maps.set_defaults(func=_cmd_map)


def _add_monitor_parser(commands: Any) -> None:
    monitor = commands.add_parser(
        "monitor",
        help="ERCNN-DRS change-probability maps of every window of a stacked series",
        description="Run an ERCNN-DRS change model (an eochange change checkpoint or Keras "
        ".hdf5 weights) on every inference window of every tile of a series from `eochange "
        "stack`, stitch the tile cores (deadzones cropped) and write one georeferenced "
        "GeoTIFF per window, windows.csv, the maximum over a period, PNG previews and a GIF. "
        "Blocks of tiles fan out through Dask; a re-run resumes.",
    )
    monitor.add_argument(
        "--checkpoint", required=True, help="change checkpoint (.ckpt) or Keras weights (.hdf5)"
    )
    monitor.add_argument("--input", required=True, help="a series of `eochange stack`")
    monitor.add_argument("--out", required=True, help="output folder")
    numbers = (
        ("--stride", int, None, "steps between windows (default: the era's inference one, 5)"),
        ("--delta-days", float, None, "window length (default: the checkpoint's)"),
        ("--min-steps", int, None, "fewest steps of a window (default: the checkpoint's)"),
        ("--max-steps", int, None, "most steps of a window, at most the checkpoint's (default)"),
        ("--block", int, 128, "side of the blocks of tiles per task, pixels (%(default)s)"),
        ("--batch-size", int, None, "(tile, window) pairs per forward pass (default: by tile)"),
        ("--workers", int, None, "local Dask workers (default: one per core; one on GPU)"),
        ("--threads", int, None, "torch threads per worker (default: 1; on GPU all cores)"),
    )
    for flag, kind, default, text in numbers:
        monitor.add_argument(flag, type=kind, default=default, help=text)
    monitor.add_argument("--period", nargs=2, action="append", metavar=("START", "END"),
                         help="maximum over the windows within these dates (YYYY-MM-DD, "
                         "repeatable; default: the whole series)")  # fmt: skip
    monitor.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    monitor.add_argument("--fast", action="store_true", help="bfloat16/float16 convolutions")
    monitor.add_argument("--keras-compat", action=argparse.BooleanOptionalAction,
                         help="upstream step rule (default: on for Keras weights)")  # fmt: skip
    monitor.add_argument("--no-previews", action="store_true", help="no PNG previews and GIF")
    monitor.add_argument("--scheduler", help="Dask scheduler address, or local|threads|synchronous")
    monitor.add_argument("--quiet", action="store_true", help="no progress bars")
    monitor.set_defaults(func=_cmd_monitor)


def _add_export_parser(commands: Any) -> None:
    export = commands.add_parser("export", help="export a checkpoint for serving")
    formats = export.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser(
        "onnx",
        help="one ONNX file: raw reflectance and dates in, logits and class map out",
        description="Export the model of a checkpoint to ONNX with dynamic batch, time, "
        "height and width, the checkpoint's normalisation inside and its metadata (bands, "
        "classes, palette, ...) in metadata_props; checked in ONNX Runtime against PyTorch "
        "before it is written (see docs/export.md).",
    )
    onnx.add_argument("--checkpoint", required=True, help="checkpoint of `eochange fit`")
    onnx.add_argument("--out", required=True, help="ONNX file to write, e.g. model.onnx")
    onnx.add_argument(
        "--normalized-input",
        action="store_true",
        help="no normalisation in the graph: feed (x - mean) / std",
    )
    onnx.add_argument(
        "--probabilities", action="store_true", help="add a softmax 'probabilities' output"
    )
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 18 (%(default)s)")
    onnx.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare ONNX Runtime with PyTorch (max abs diff <= 1e-4) before writing",
    )
    onnx.set_defaults(func=_cmd_export)


LIGHTNING_COMMANDS = {
    "fit": "train a model from a YAML config (LightningCLI)",
    "validate": "validate a checkpoint on the validation split",
    "test": "score a checkpoint on the test split",
    "predict": "write predicted class maps of a split",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``eochange``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    lightning = bool(argv) and argv[0] in LIGHTNING_COMMANDS
    args = None
    if not lightning:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
    try:
        if lightning:
            from eochange.training_cli import run

            return run(argv)
        return int(args.func(args) or 0)
    except EOChangeError as err:
        print(f"eochange: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eochange: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())

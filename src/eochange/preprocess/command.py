"""``eochange stack``: observation folders -> a Zarr series (and rsdtlib TFRecords)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from eochange.preprocess.eras import ERAS, get_era


def add_stack_parser(commands: Any) -> None:
    """Register ``eochange stack`` on the CLI's subcommands."""
    stack = commands.add_parser(
        "stack",
        help="stack SAR ascending/descending and optical observations into a series",
        description="Merge three observation streams (EOPatch folders as rsdtlib reads them, "
        "or one GeoTIFF + _mask.tif per observation) on one timeline: per-pixel forward "
        "fill from zeros, one step per delta-bin at its last observation; written block by "
        "block into a Zarr series through Dask, resumable. Era presets give every "
        "parameter; each can be overridden.",
    )
    stack.add_argument("--sar-ascending", help="SAR ascending stream folder")
    stack.add_argument("--sar-descending", help="SAR descending stream folder")
    stack.add_argument("--optical", help="optical stream folder")
    stack.add_argument("--from-tfrecords", default=None, metavar="DIR",
                       help="instead: import rsdtlib stage-2 TFRecords (one per tile)")  # fmt: skip
    stack.add_argument("--out", required=True, help="series to write, e.g. SERIES.zarr")
    stack.add_argument("--era", default="s1s2", choices=sorted(ERAS), help="preset (s1s2)")
    stack.add_argument("--start", default=None, help="first bin start (default: the era's)")
    stack.add_argument("--end", default=None, help="last time written (default: the era's)")
    stack.add_argument("--step-days", type=float, default=None,
                       help="bin length delta in days (default: the era's: 2 or 1 s)")  # fmt: skip
    stack.add_argument("--tile", type=int, default=None, help="tile side (default: 32)")
    stack.add_argument("--deadzone", type=int, default=None, help="tile overlap per side (0)")
    stack.add_argument(
        "--remainder",
        choices=("drop", "cover"),
        default="drop",
        help="edge remainder: dropped (rsdtlib) or covered by a flush tile",
    )
    stack.add_argument("--block", type=int, default=128, help="pixels per task side (128)")
    stack.add_argument("--keep-empty", action="store_true",
                       help="keep fully masked observations (they define steps)")  # fmt: skip
    stack.add_argument("--crop", action="store_true",
                       help="crop streams to the smallest grid instead of refusing")  # fmt: skip
    stack.add_argument("--tfrecords", default=None,
                       help="also write rsdtlib stage-2 TFRecords, one per tile, here")  # fmt: skip
    stack.add_argument("--scheduler", default=None, help="Dask scheduler (default: local)")
    stack.add_argument("--quiet", action="store_true", help="no progress bars")
    stack.set_defaults(func=run_stack)


def run_stack(args: argparse.Namespace) -> int:
    """Run ``eochange stack``."""
    from eochange.errors import ConfigError
    from eochange.preprocess.series import (
        SeriesSettings,
        export_stage2,
        import_stage2,
        write_series,
    )

    streams = (args.sar_ascending, args.sar_descending, args.optical)
    if args.from_tfrecords:
        if any(streams):
            raise ConfigError("--from-tfrecords replaces the three stream folders")
        report = import_stage2(args.from_tfrecords, args.out, args.deadzone or 0,
                               progress=not args.quiet)  # fmt: skip
        print(f"{report.path}: {report.steps} steps; tiles imported {report.blocks_written}, "
              f"already done {report.blocks_skipped}")  # fmt: skip
        return 0
    if not all(streams):
        raise ConfigError(
            "eochange stack: give --sar-ascending, --sar-descending and --optical "
            "(or --from-tfrecords)"
        )
    era = get_era(args.era)
    settings = SeriesSettings.for_era(
        era,
        start=args.start,
        end=args.end,
        step_seconds=timedelta(days=args.step_days) if args.step_days else None,
        tile=args.tile,
        deadzone=args.deadzone,
        remainder=args.remainder,
        block=args.block,
        drop_empty=not args.keep_empty,
        crop=args.crop,
    )
    report = write_series(args.sar_ascending, args.sar_descending, args.optical, args.out,
                          settings, scheduler=args.scheduler, progress=not args.quiet)  # fmt: skip
    print(f"{report.path}: {report.steps} steps; blocks written {report.blocks_written}, "
          f"already done {report.blocks_skipped}, failed {len(report.failed)}")  # fmt: skip
    for where, error in report.failed.items():
        print(f"  failed {where}: {error}")
    if report.failed:
        return 1
    if args.tfrecords:
        written = export_stage2(args.out, args.tfrecords, progress=not args.quiet)
        print(f"{args.tfrecords}: {written} stage-2 TFRecord files")
    return 0


def add_window_parser(commands: Any) -> None:
    """Register ``eochange window`` on the CLI's subcommands."""
    window = commands.add_parser(
        "window",
        help="windows (and synthetic labels) of every tile of a series, as TFRecords",
        description="Cut a series from `eochange stack` into windows of delta days (training "
        "triplets with ERCNN-DRS's synthetic labels, or inference windows) and write one "
        "rsdtlib stage-3 TFRecord file per tile, windows.csv and betas.npy; Dask over tiles, "
        "resumable. Era presets give every parameter; each can be overridden.",
    )
    window.add_argument("series", help="a series written by `eochange stack`")
    window.add_argument("--out", required=True, help="folder for the tile files")
    window.add_argument("--mode", choices=("training", "inference"), default="training")
    window.add_argument("--delta-days", type=float, default=None, help="window length")
    window.add_argument("--stride", type=int, default=None, help="steps between windows")
    window.add_argument("--min-steps", type=int, default=None, help="fewest steps (omega)")
    window.add_argument("--max-steps", type=int, default=None, help="most steps (Omega)")
    window.add_argument("--shift", type=float, default=None, help="ENDISI shift A (0.25)")
    window.add_argument("--beta-source", choices=("upstream", "previous"), default=None)
    window.add_argument("--no-quirks", action="store_true",
                        help="corrected omnibus initialisation and reset")  # fmt: skip
    window.add_argument("--tiles", default=None, help="all, upstream_train, upstream_val, "
                        "blocked_train, blocked_val or blocked_test")  # fmt: skip
    window.add_argument("--format", choices=("tfrecords", "zarr"), default=None,
                        help="rsdtlib stage-3 TFRecords per tile (default), or windows.zarr: "
                        "step ranges and labels only, features read from the series")  # fmt: skip
    window.add_argument("--compression", choices=("gzip", "none"), default=None,
                        help="GZIP tile files as rsdtlib's (default) or none")  # fmt: skip
    window.add_argument("--scheduler", default=None, help="Dask scheduler (default: local)")
    window.add_argument("--quiet", action="store_true", help="no progress bars")
    window.set_defaults(func=run_window)


def run_window(args: argparse.Namespace) -> int:
    """Run ``eochange window``."""
    from eochange.preprocess.labelling import WindowSettings, write_windows
    from eochange.preprocess.series import open_series

    era = open_series(args.series).era
    settings = WindowSettings.for_era(
        era,
        args.mode,
        delta_days=args.delta_days,
        stride=args.stride,
        min_steps=args.min_steps,
        max_steps=args.max_steps,
        shift=args.shift,
        beta_source=args.beta_source,
        quirks=False if args.no_quirks else None,
        tiles=args.tiles,
        compression=args.compression,
        format=args.format,
    )
    report = write_windows(args.series, args.out, settings, args.scheduler, not args.quiet)
    print(f"{args.out}: {report.windows} windows per tile; tiles written "
          f"{report.tiles_written}, already done {report.tiles_skipped}, failed "
          f"{len(report.failed)}")  # fmt: skip
    for where, error in report.failed.items():
        print(f"  failed {where}: {error}")
    return 1 if report.failed else 0

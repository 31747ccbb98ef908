"""Peak memory stays flat as the input grows: prepare (days), map (area), stack + window (area).

Each command runs at three input sizes, the largest at least 4x the smallest, in a fresh
wrapper process that reports the peak resident set of the command
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``; ``--scheduler synchronous``, so all the work
happens in that one process). Two bounds, both asserted:

- the peak at the largest size is at most ``RATIO`` (1.5) times the peak at the smallest;
- the peak grows by at most ``SHARE`` (25 %) of the growth of the command's working set:
  the decoded data a version that held the whole input at once would keep in memory
  (``input_mb``). This makes the check sensitive although the interpreter, torch and GDAL
  dominate the peak at these small sizes.

The fast set measures prepare and the window pipeline at small sizes; the full set also
map, and the window pipeline at 16x the area.
"""

from __future__ import annotations

import json

import pytest
from killing import cli_env, eochange, map_checkpoint, peak_rss_mb

pytestmark = pytest.mark.robustness

RATIO = 1.5
SHARE = 0.25
MB = 1024 * 1024


def _assert_flat(name: str, sizes: list, peaks: list[float], inputs: list[float]) -> None:
    growth, allowed = peaks[-1] - peaks[0], SHARE * (inputs[-1] - inputs[0])
    table = ", ".join(f"{s}: {p:.0f} MB (input {i:.0f} MB)"
                      for s, p, i in zip(sizes, peaks, inputs, strict=True))  # fmt: skip
    assert peaks[-1] <= RATIO * peaks[0], f"{name}: peak grew more than {RATIO}x: {table}"
    assert growth <= allowed, (
        f"{name}: peak grew by {growth:.0f} MB, more than {SHARE:.0%} of the {allowed / SHARE:.0f}"
        f" MB more input: {table}"
    )


def _record(record, name, what, unit, sizes, peaks, inputs) -> None:  # noqa: ANN001
    record(
        f"memory/{name}",
        group="Memory",
        what=what,
        result=f"flat: largest/smallest peak {peaks[-1] / peaks[0]:.2f}x while the input grows "
        f"{inputs[-1] / inputs[0]:.0f}x",
        **{f"{unit}": "/".join(str(s) for s in sizes)},
        peak_mb="/".join(f"{p:.0f}" for p in peaks),
        input_mb="/".join(f"{i:.0f}" for i in inputs),
        growth_mb=round(peaks[-1] - peaks[0], 1),
    )


def test_prepare_memory_is_flat_in_the_number_of_days(scale, record, tmp_path):
    from eochange.synth import make_dynamicearthnet

    side = 256 if scale.full else 128
    days = [62, 124, 248]
    peaks, inputs = [], []
    for n in days:
        root = tmp_path / f"den{n}"
        make_dynamicearthnet(root, aois=1, size=side, start="2018-01-01", days=n, seed=3)
        argv = eochange("prepare", "dynamicearthnet", root, "--out", tmp_path / f"c{n}.zarr",
                        "--scheduler", "synchronous", "--quiet")  # fmt: skip
        peaks.append(peak_rss_mb(argv, tmp_path / f"prepare{n}"))
        inputs.append(n * 4 * side * side * 2 / MB)  # every frame, decoded (uint16, 4 bands)
    _record(record, "prepare", f"`eochange prepare dynamicearthnet`, one {side}-px area",
            "days", days, peaks, inputs)  # fmt: skip
    _assert_flat("prepare", days, peaks, inputs)


def _series_mb(series) -> float:  # noqa: ANN001
    attrs = json.loads((series / "zarr.json").read_text())["attributes"]
    layout, steps = attrs["layout"], json.loads((series / "times" / "zarr.json").read_text())
    return steps["shape"][0] * len(attrs["channels"]) * layout["height"] * layout["width"] * 4 / MB


def test_window_pipeline_memory_is_flat_in_the_area(scale, record, tmp_path):
    from eochange.synth import make_s1s2

    # at least 2 x 2 tiles at the smallest size (fast: 16-px tiles; full: 32 px, 4x the area)
    sides = [128, 256, 512] if scale.full else [32, 64, 128]
    days, end, window = ((200, "2018-07-20", ("40", "8", "25")) if scale.full
                         else (100, "2018-04-10", ("20", "4", "12")))  # fmt: skip
    tile, block = (32, 64) if scale.full else (16, 16)
    stack_peaks, window_peaks, inputs = [], [], []
    for side in sides:
        obs = tmp_path / f"obs{side}"
        make_s1s2(obs, size=side, days=days, start="2018-01-01", seed=5, layout="eopatch")
        series = tmp_path / f"s{side}.zarr"
        stack = eochange("stack", "--sar-ascending", obs / "S1_asc", "--sar-descending",
                         obs / "S1_dsc", "--optical", obs / "S2", "--out", series, "--start",
                         "2018-01-01", "--end", end, "--tile", tile, "--block", block,
                         "--scheduler", "synchronous", "--quiet")  # fmt: skip
        stack_peaks.append(peak_rss_mb(stack, tmp_path / f"stack{side}"))
        windows = eochange("window", series, "--out", tmp_path / f"w{side}", "--mode",
                           "training", "--delta-days", window[0], "--min-steps", window[1],
                           "--max-steps", window[2], "--format", "zarr", "--scheduler",
                           "synchronous", "--quiet")  # fmt: skip
        window_peaks.append(peak_rss_mb(windows, tmp_path / f"window{side}"))
        inputs.append(_series_mb(series))  # the whole series, decoded (float32)
    what = f"S1/S2 area, {days} days"
    _record(record, "stack", f"`eochange stack`, {what}, blocks of {block} px", "side_px", sides,
            stack_peaks, inputs)  # fmt: skip
    _record(record, "window", f"`eochange window --format zarr` (training windows and labels), "
            f"{what}, {tile}-px tiles", "side_px", sides, window_peaks, inputs)  # fmt: skip
    _assert_flat("stack", sides, stack_peaks, inputs)
    _assert_flat("window", sides, window_peaks, inputs)


TINY = {"encoder_widths": [4, 4, 4, 8], "decoder_widths": [4, 4, 4, 8], "d_model": 16,
        "n_head": 2}  # fmt: skip


@pytest.mark.robustness_full
def test_map_memory_is_flat_in_the_area(record, tmp_path_factory):
    from eochange.prepare import prepare_dynamicearthnet
    from eochange.synth import make_dynamicearthnet

    tmp = tmp_path_factory.mktemp("map_memory")
    checkpoint = map_checkpoint(tmp / "tiny.ckpt", TINY)
    sides = [256, 512, 1024]
    peaks, inputs = [], []
    for side in sides:
        root = tmp / f"den{side}"
        make_dynamicearthnet(root, aois=1, size=side, start="2018-01-01", days=31, seed=3)
        cube = tmp / f"c{side}.zarr"
        assert not prepare_dynamicearthnet(root, cube, scheduler="synchronous").failed
        argv = eochange("map", "--checkpoint", checkpoint, "--input", cube, "--out",
                        tmp / f"maps{side}", "--tile", "128", "--overlap", "16", "--margin", "4",
                        "--block", "256", "--scheduler", "synchronous", "--quiet")  # fmt: skip
        peaks.append(peak_rss_mb(argv, tmp / f"map{side}", env=cli_env()))
        # the month's 6 weekly frames as float32 (4 bands) and the class probabilities (6)
        inputs.append((6 * 4 + 6) * side * side * 4 / MB)
    _record(record, "map", "`eochange map`, one area, one month, 128-px tiles, 256-px blocks, "
            "previews", "side_px", sides, peaks, inputs)  # fmt: skip
    _assert_flat("map", sides, peaks, inputs)

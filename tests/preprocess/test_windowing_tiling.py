"""Tiling, stepping, assembling and windowing of the ERCNN-DRS pipeline: known answers."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pytest

from eochange.errors import ConfigError, DataError
from eochange.preprocess.eras import ERS_LS5, S1S2
from eochange.preprocess.labelling import select_tile
from eochange.preprocess.stacking import assemble, plan_steps, posix_seconds
from eochange.preprocess.tiling import TileLayout, tile_starts
from eochange.preprocess.windowing import (
    StepRange,
    blocked_split,
    inference_windows,
    pad_windows,
    training_windows,
    upstream_training_tile,
    upstream_validation_tile,
    window_tensor,
)

DAY = 86400.0
T0 = datetime(2018, 1, 1)


def test_eras():
    assert S1S2.channels == 17 and ERS_LS5.channels == 9
    assert S1S2.max_steps == 92 and S1S2.min_steps == 35 and S1S2.window.days == 182
    assert ERS_LS5.max_steps == 110 and ERS_LS5.min_steps == 25 and ERS_LS5.window.days == 365
    assert S1S2.channel_names[:4] == ("asc_VV", "asc_VH", "dsc_VV", "dsc_VH")


def test_tile_counts_as_rsdtlib():
    assert tile_starts(100, 32, 0) == [0, 32, 64]  # remainder of 4 px dropped
    assert tile_starts(100, 32, 0, "cover") == [0, 32, 64, 68]
    assert tile_starts(96, 32, 0, "cover") == [0, 32, 64]  # nothing left over
    assert tile_starts(263, 93, 4) == [0, 85, 170]  # Mariupol: stride 85
    assert len(tile_starts(2000, 93, 4)) == (2000 - 8) // 85
    assert tile_starts(20, 32, 0) == []
    with pytest.raises(ConfigError):
        tile_starts(100, 8, 4)


LAYOUTS = [(263, 93, 4, "drop"), (128, 32, 0, "drop"), (300, 93, 4, "cover")]


@pytest.mark.parametrize(("size", "tile", "deadzone", "remainder"), LAYOUTS)
def test_cores_stitch_without_gaps_or_overlaps(size, tile, deadzone, remainder):
    layout = TileLayout(size, size, tile, deadzone, remainder)
    cover = np.zeros((size, size), int)
    for j, i in layout:
        (row, col, h, w), (rows, cols) = layout.core(j, i)
        assert rows.stop - rows.start == h and cols.stop - cols.start == w
        cover[row : row + h, col : col + w] += 1
    last = layout.rows[-1] + tile
    assert (cover[:last, :last] == 1).all()  # every covered pixel exactly once
    if remainder == "cover":
        assert (cover == 1).all()


def test_tile_georeference():
    layout = TileLayout(64, 64, 32, 0, crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 6e6))
    assert layout.tile_transform(1, 1) == (10, 0, 500320, 0, -10, 6e6 - 320)
    assert layout.tile_name(1, 0) == "1_0" and layout.shape == (2, 2)


def test_step_plan_by_hand():
    def days(*values):
        return [T0 + timedelta(days=v) for v in values]

    plan = plan_steps(
        {"sar_ascending": days(-1, 0.5, 3), "sar_descending": days(1, 4.5),
         "optical": days(0.2, 2.1, 5)},
        start=T0, end=T0 + timedelta(days=5), step=timedelta(days=2),
    )  # fmt: skip
    # bins of 2 days from day 0: {0.2, 0.5, 1}, {2.1, 3}, {4.5, 5}: the last time of each
    assert ((plan.times - posix_seconds(T0)) / DAY).tolist() == [1, 3, 5]
    assert plan.seen["sar_ascending"].tolist() == [2, 3, 3]  # day -1 assembled, not written
    assert plan.seen["sar_descending"].tolist() == [1, 1, 2]
    assert plan.seen["optical"].tolist() == [1, 2, 3]
    every = plan_steps({"sar_ascending": days(0, 0.5), "sar_descending": [],
                        "optical": days(0.25)}, T0, T0 + timedelta(days=1),
                       timedelta(seconds=1))  # fmt: skip
    assert len(every.times) == 3  # δ = 1 s (ERS/LS5) writes every observation time
    with pytest.raises(DataError, match="no observation"):
        plan_steps({"sar_ascending": days(9), "sar_descending": [], "optical": []},
                   T0, T0 + timedelta(days=1), timedelta(days=2))  # fmt: skip


@dataclass
class _Observation:
    data: np.ndarray
    mask: np.ndarray


@dataclass
class _Grid:
    height: int
    width: int


class _Stream:
    def __init__(self, frames, masks):
        self.frames, self.masks = frames, masks
        self.times = [T0 + timedelta(days=k) for k in range(len(frames))]
        self.grid, self.bands = _Grid(2, 2), 1

    def read(self, index, window=None):
        row, col, h, w = window or (0, 0, 2, 2)
        return _Observation(self.frames[index][:, row : row + h, col : col + w],
                            self.masks[index][row : row + h, col : col + w])  # fmt: skip


def test_forward_fill_from_zeros_by_hand():
    frames = [np.full((1, 2, 2), v, np.float32) for v in (5.0, 7.0, 9.0)]
    masks = [np.array([[1, 0], [0, 0]], bool), np.array([[1, 1], [0, 0]], bool),
             np.array([[0, 0], [0, 1]], bool)]  # fmt: skip
    stream = _Stream(frames, masks)
    empty = _Stream([], [])
    plan = plan_steps({"sar_ascending": stream.times, "sar_descending": [],
                       "optical": []}, T0, T0 + timedelta(days=3), timedelta(days=1))  # fmt: skip
    out = assemble({"sar_ascending": stream, "sar_descending": empty, "optical": empty}, plan)
    asc = out["sar_ascending"][:, 0]
    assert asc[0].tolist() == [[5, 0], [0, 0]]
    assert asc[1].tolist() == [[7, 7], [0, 0]]
    assert asc[2].tolist() == [[7, 7], [0, 9]]  # never observed stays 0
    assert out["optical"].shape == (3, 1, 2, 2) and not out["optical"].any()
    window = assemble({"sar_ascending": stream, "sar_descending": empty, "optical": empty},
                      plan, (1, 1, 1, 1))  # fmt: skip
    assert window["sar_ascending"][:, 0, 0, 0].tolist() == [0, 0, 9]


def test_windows_by_hand():
    times = np.arange(10) * DAY  # one step a day
    windows = inference_windows(times, 3, stride=1, min_steps=2, max_steps=5)
    assert [(w.start, w.end) for w in windows] == [(k, min(k + 3, 10)) for k in range(9)]
    assert len(inference_windows(times, 3, stride=5, min_steps=2, max_steps=5)) == 2
    capped = inference_windows(times, 3, stride=1, min_steps=2, max_steps=2)
    assert all(len(w) == 2 for w in capped)
    triplets = training_windows(times, 3, stride=1, min_steps=2, max_steps=5)
    assert [t.current.start for t in triplets] == [2, 3, 4, 5]
    first, last = triplets[0], triplets[-1]
    assert (first.previous, first.current, first.next) == (
        StepRange(0, 2), StepRange(2, 5), StepRange(5, 8))  # fmt: skip
    assert (last.previous, last.current, last.next) == (
        StepRange(2, 5), StepRange(5, 8), StepRange(8, 10))  # fmt: skip
    # a gap in time shortens windows: none reaches 3 steps around it
    gappy = np.r_[np.arange(5), np.arange(20, 25)] * DAY
    assert all(len(w) <= 3 for w in inference_windows(gappy, 3, 1, 1, 5))
    with pytest.raises(DataError, match="increasing"):
        inference_windows(np.array([0.0, 0.0]), 3, 1, 1, 5)


def test_window_tensor_channel_order_and_padding():
    n, h = 4, 2
    asc = np.full((n, 2, h, h), 1, np.float32)
    dsc = np.full((n, 2, h, h), 2, np.float32)
    opt = np.full((n, 13, h, h), 3, np.float32)
    x = window_tensor(asc, dsc, opt, StepRange(1, 3))
    assert x.shape == (2, 17, h, h) and x[0, :, 0, 0].tolist() == [1, 1, 2, 2] + [3] * 13
    batch, valid = pad_windows([x, x[:1]], max_steps=3)
    assert batch.shape == (2, 3, 17, h, h) and (batch[1, 1:] == -1).all()
    assert valid.tolist() == [[True, True, False], [True, False, False]]


def test_tile_selection():
    tiles = [(j, i) for j in range(8) for i in range(8)]
    train = {t for t in tiles if upstream_training_tile(*t)}
    val = {t for t in tiles if upstream_validation_tile(*t)}
    assert len(train) == 16 and len(val) == 8 and not train & val  # 25 % and 12.5 %
    assert all(i % 2 == 0 for _, i in train) and all(i % 2 == 1 for _, i in val)
    rest = {t for t in tiles if select_tile(*t, "upstream_rest")}
    assert rest == set(tiles) - train - val and len(rest) == 40  # the 62.5 % left unused
    assert train == {t for t in tiles if select_tile(*t, "upstream_train")}
    splits = {t: blocked_split(*t, block=4) for t in tiles}
    for (j, i), split in splits.items():  # whole blocks go to one split
        assert split == splits[(j // 4 * 4, i // 4 * 4)]


def test_nan_on_valid_pixels_is_an_error_naming_the_source():
    frames = [np.array([[[np.nan, 1.0], [1.0, 1.0]]], np.float32)]
    stream = _Stream(frames, [np.ones((2, 2), bool)])
    empty = _Stream([], [])
    plan = plan_steps({"sar_ascending": stream.times, "sar_descending": [], "optical": []},
                      T0, T0 + timedelta(days=1), timedelta(days=1))  # fmt: skip
    with pytest.raises(DataError, match="NaN or infinite"):
        assemble({"sar_ascending": stream, "sar_descending": empty, "optical": empty}, plan)
    stream.masks = [np.array([[0, 1], [1, 1]], bool)]  # masked out: fine
    out = assemble({"sar_ascending": stream, "sar_descending": empty, "optical": empty}, plan)
    assert out["sar_ascending"][0, 0, 0, 0] == 0

from datetime import date

import numpy as np
import pytest

from eochange.datasets import dynamicearthnet_layout as layout
from eochange.errors import ConfigError, DataError

LINE = (
    "/reprocess-cropped/UTM-24000/10N/27E-188N/1311_3077_13/PF-SR "
    "/labels/1311_3077_13_10N/Labels/Raster/10N-122W-40N-L3H-SR/"
    "10N-122W-40N-L3H-SR-2018_03_01.tif 2018-03\n"
)


def test_parse_split_line_strips_leading_slash_and_finds_cube_id():
    entry = layout.parse_split_line(LINE)
    assert entry.planet_dir == "reprocess-cropped/UTM-24000/10N/27E-188N/1311_3077_13/PF-SR"
    assert entry.label_path.startswith("labels/1311_3077_13_10N/")
    assert entry.month == "2018-03"
    assert entry.cube_id == "1311_3077_13"


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("mediatum", "planet.10N/planet/10N/27E-188N/1311_3077_13/PF-SR"),
        ("pangaea", "planet/10N/27E-188N/1311_3077_13/PF-SR"),
    ],
)
def test_path_rewrite_presets(preset, expected):
    entry = layout.parse_split_line(LINE, rewrite=layout.resolve_rewrite(preset))
    assert entry.planet_dir == expected
    assert entry.cube_id == "1311_3077_13"
    assert entry.label_path.startswith("labels/")  # labels are not rewritten by the presets


def test_custom_rewrite_and_unknown_preset():
    rewrite = layout.resolve_rewrite(("^reprocess-cropped/", "data/"))
    assert layout.parse_split_line(LINE, rewrite=rewrite).planet_dir.startswith("data/UTM-24000/")
    with pytest.raises(ConfigError, match="path_rewrite"):
        layout.resolve_rewrite("nope")


@pytest.mark.parametrize(
    "bad",
    ["a b", "a  b 2018-03", "a b c d", "/x /y 2018-13", "/x /y 18-03", "/x /y 2018-3"],
)
def test_bad_split_lines_raise_naming_the_source(bad):
    with pytest.raises(DataError, match="train.txt:4"):
        layout.parse_split_line(bad, "train.txt:4")


def test_read_split_errors(tmp_path):
    with pytest.raises(DataError, match="split file not found"):
        layout.read_split(tmp_path, "train")
    with pytest.raises(ConfigError, match="split"):
        layout.read_split(tmp_path, "training")
    folder = tmp_path / layout.SPLIT_FOLDER
    folder.mkdir()
    (folder / "val.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no lines"):
        layout.read_split(tmp_path, "val")
    (folder / "val.txt").write_text(LINE + "garbage line\n")
    with pytest.raises(DataError, match=r"val.txt:2"):
        layout.read_split(tmp_path, "val")


def test_sampling_days_and_dates():
    assert layout.sampling_days("single", "2018-03") == [date(2018, 3, 1)]
    weekly = layout.sampling_days("weekly", "2018-03")
    assert [d.day for d in weekly] == [1, 5, 10, 15, 20, 25]
    assert layout.sampling_days("daily", "2018-03") is None
    # dates are days since 2018-01-01 (upstream example: 2018-03-01 -> 59)
    assert layout.days_since_reference(date(2018, 3, 1)) == 59
    assert [layout.days_since_reference(d) for d in weekly] == [59, 63, 68, 73, 78, 83]
    assert layout.date_from_days(59) == date(2018, 3, 1)
    assert len(layout.month_days("2019-02")) == 28 and len(layout.month_days("2020-02")) == 29
    with pytest.raises(ConfigError, match="sampling"):
        layout.sampling_days("monthly", "2018-03")


def test_dated_images_top_folder_only_sorted_by_date(tmp_path):
    for name in ["2018-03-02.tif", "2018-03-01.tif", "2018-04-01.tif", "2018-03-03.tif.aux.xml"]:
        (tmp_path / name).touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "2018-03-05.tif").touch()
    march = layout.dated_images(tmp_path, "2018-03")
    assert [(d.day, p.name) for d, p in march] == [(1, "2018-03-01.tif"), (2, "2018-03-02.tif")]
    assert len(layout.dated_images(tmp_path)) == 3
    (tmp_path / "2018-03-01_copy.tif").touch()
    with pytest.raises(DataError, match="two images for 2018-03-01"):
        layout.dated_images(tmp_path, "2018-03")
    (tmp_path / "2018-03-01_copy.tif").unlink()
    (tmp_path / "notes.tif").touch()
    with pytest.raises(DataError, match="notes.tif: unexpected file"):
        layout.dated_images(tmp_path)
    with pytest.raises(DataError, match="image folder not found"):
        layout.dated_images(tmp_path / "missing")


def _onehot(*bands_per_pixel):
    onehot = np.zeros((7, 1, len(bands_per_pixel)), np.uint8)
    for x, bands in enumerate(bands_per_pixel):
        for b in bands:
            onehot[b, 0, x] = 255
    return onehot


def test_label_decoding_reproduces_upstream_quirks():
    onehot = _onehot((2,), (), (1, 4), (6,), (0, 6), (5,), (3,))
    # one band -> its class; no band -> 0; several -> highest; snow & ice -> -1
    assert layout.decode_label(onehot).tolist() == [[2, 0, 4, -1, -1, 5, 3]]
    assert layout.decode_label(onehot, "strict").tolist() == [[2, -1, -1, -1, -1, 5, 3]]
    bits = layout.onehot_to_bits(onehot)
    assert bits.tolist() == [[4, 0, 18, 64, 65, 32, 8]]
    assert layout.label_conflicts(bits) == {"no_band": 1, "several_bands": 2}
    assert layout.decode_label(onehot).dtype == np.int64


def test_label_decoding_rejects_bad_rasters():
    with pytest.raises(DataError, match="7 one-hot bands"):
        layout.onehot_to_bits(np.zeros((6, 2, 2), np.uint8), "lab.tif")
    bad = np.zeros((7, 2, 2), np.uint8)
    bad[0, 0, 0] = 1
    with pytest.raises(DataError, match=r"lab.tif: .* only 0 and 255, found \[1\]"):
        layout.onehot_to_bits(bad, "lab.tif")
    with pytest.raises(ConfigError, match="label_policy"):
        layout.decode_label_bits(np.zeros((1, 1), np.uint8), "fixed")

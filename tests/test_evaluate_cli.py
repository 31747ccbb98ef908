import json
import math

import numpy as np
import pytest
from PIL import Image

from eochange.cli import main
from eochange.evaluation.dynamicearthnet import evaluate
from eochange.metrics import ChangeSegmentationMetric


def _write(folder, cube, date, array):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(folder / f"{cube}_{date}.png")


def _evaluate(ref, res, *extra):
    return main(["evaluate", "dynamicearthnet", "--ref", str(ref), "--res", str(res), *extra])


@pytest.fixture()
def folders(tmp_path):
    rng = np.random.default_rng(0)
    ref, res = tmp_path / "ref", tmp_path / "res"
    series = {}
    for cube, months in (("1311_3077_13", 4), ("2235_3403_13", 3)):
        gt = rng.choice([0, 1, 2, 3, 4, 5, 255], size=(months, 16, 20)).astype(np.uint8)
        pred = rng.integers(0, 6, (months, 16, 20)).astype(np.uint8)
        for m in range(months):
            _write(ref, cube, f"2018-{m + 1:02d}-01", gt[m])
            _write(res, cube, f"2018-{m + 1:02d}-01", pred[m])
        series[cube] = (gt, pred)
    return ref, res, series


def test_cli_scores_pngs_like_the_streaming_metric(folders, tmp_path, capsys):
    ref, res, series = folders
    expected = ChangeSegmentationMetric()
    for cube, (gt, pred) in series.items():
        expected.update(gt, pred, cube)
    expected = expected.compute()
    out = tmp_path / "scores.json"
    assert _evaluate(ref, res, "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert f"SCS      {np.round(expected['scs'] * 100, 1):>6.1f}" in printed
    data = json.loads(out.read_text())
    assert sorted(data) == ["bc", "classes", "iou", "miou", "per_cube", "sc", "scs"]
    for key in ("scs", "bc", "sc", "miou"):
        assert data[key] == pytest.approx(expected[key])
    assert data["classes"][0] == "impervious surface" and len(data["iou"]) == 6
    assert sorted(data["per_cube"]) == sorted(series)


def test_no_change_gives_null_and_errors_name_files(tmp_path, capsys):
    ref, res = tmp_path / "ref", tmp_path / "res"
    same = np.full((8, 8), 2, np.uint8)
    for date in ("2018-01-01", "2018-02-01"):
        _write(ref, "c", date, same)
        _write(res, "c", date, same)
    out = tmp_path / "s.json"
    assert _evaluate(ref, res, "--json", str(out)) == 0
    data = json.loads(out.read_text())
    assert data["sc"] is None and data["scs"] is None and data["bc"] == 0.0
    _write(res, "c", "2018-02-01", np.full((8, 8), 6, np.uint8))
    assert _evaluate(ref, res) == 2
    assert "c_2018-02-01.png: predictions must be 0..5, found [6]" in capsys.readouterr().err
    _write(res, "c", "2018-02-01", np.zeros((4, 8), np.uint8))
    assert _evaluate(ref, res) == 2
    assert "shape (4, 8), reference (8, 8)" in capsys.readouterr().err
    (res / "c_2018-02-01.png").unlink()
    assert _evaluate(ref, res) == 2
    assert "have no prediction: c_2018-02-01.png" in capsys.readouterr().err
    (ref / "bad.png").write_bytes(b"x")
    assert _evaluate(ref, res) == 2
    assert "bad.png: expected a name <cube>_<YYYY-MM-DD>.png" in capsys.readouterr().err


def test_any_number_of_months_and_geotiffs(tmp_path):
    from affine import Affine

    from eochange.io.raster import write_raster

    ref, res = tmp_path / "ref", tmp_path / "res"
    gt = np.array([[[0, 1]], [[1, 1]], [[1, 2]]], np.uint8)
    for m in range(3):
        for folder in (ref, res):
            write_raster(
                folder / f"a_2019-0{m + 1}-01.tif",
                gt[m],
                crs="EPSG:32633",
                transform=Affine(3, 0, 0, 0, -3, 0),
            )
    result = evaluate(ref, res)
    assert result["scs"] == 1.0 and not math.isnan(result["miou"])

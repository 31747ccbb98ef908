"""The ERCNN-DRS part of the demo runs end to end (tiny area, one epoch)."""

import json

import rasterio

from eochange.demo_ercnn import run_ercnn_demo


def test_ercnn_demo_chain(tmp_path):
    lines = run_ercnn_demo(tmp_path, quiet=True, epochs=1, size=64, tiles=("all", "all", "all"),
                           days=150, scheduler="synchronous")  # fmt: skip
    text = "\n".join(lines)
    assert "| ERCNN-DRS predictions (last epoch) |" in text and "| synthetic labels" in text
    for stage in ("val", "test"):  # the last checkpoint is also scored on the test tiles
        scores = json.loads(
            (tmp_path / "ercnn" / "run" / "evaluation" / f"{stage}.json").read_text()
        )
        assert 0 <= scores["auc"] <= 1 and 0 <= scores["label_auc"] <= 1
    maps = sorted((tmp_path / "ercnn" / "maps" / "maps").glob("window_*.tif"))
    assert maps and (tmp_path / "ercnn" / "maps" / "series.gif").exists()
    with (
        rasterio.open(maps[0]) as src,
        rasterio.open(tmp_path / "ercnn" / "observations" / "truth" / "event_id.tif") as truth,
    ):
        assert src.crs == truth.crs and src.transform == truth.transform

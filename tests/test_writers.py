from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from eochange.datasets.dynamicearthnet_layout import PALETTE
from eochange.errors import ConfigError
from eochange.inference.writers import ClassMapWriter, class_map_name, write_class_map

TRANSFORM = (3.0, 0.0, 500000.0, 0.0, -3.0, 4000000.0)


def _classes(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 6, shape).astype(np.uint8)


def test_class_map_name():
    assert class_map_name("1311_3077_13", "2018-06", "png") == "1311_3077_13_2018-06-01.png"
    assert class_map_name("a", "2019-12", "tif") == "a_2019-12-01.tif"


def test_png_round_trip(tmp_path):
    classes = _classes((20, 30))
    path = write_class_map(tmp_path / "map.png", classes.astype(np.int64))
    assert path == tmp_path / "map.png"
    with Image.open(path) as image:
        assert image.mode == "L"
        assert np.array_equal(np.asarray(image), classes)
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]


def test_geotiff_keeps_georeference_and_palette(tmp_path):
    classes = _classes((256, 300), seed=1)
    palette = [list(rgb) for rgb in PALETTE]
    path = write_class_map(tmp_path / "map.tif", classes, "EPSG:32633", TRANSFORM, palette)
    with rasterio.open(path) as src:
        assert np.array_equal(src.read(1), classes) and src.dtypes == ("uint8",)
        assert src.crs == CRS.from_epsg(32633)
        assert src.transform == Affine(*TRANSFORM)
        colormap = src.colormap(1)
        assert [colormap[i] for i in range(6)] == [(*rgb, 255) for rgb in PALETTE]
        assert src.profile["tiled"] and src.block_shapes == [(256, 256)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]  # no temporary left


def test_prediction_writer(tmp_path):
    with pytest.raises(ConfigError, match="format"):
        ClassMapWriter(str(tmp_path), format="jpg")
    writer = ClassMapWriter(str(tmp_path / "out"), format="tif")
    maps = torch.from_numpy(np.stack([_classes((8, 8), seed=s) for s in (2, 3)]))
    prediction = {
        "prediction": maps,
        "cube_id": ["c1", "c2"],
        "month": ["2018-01", "2018-02"],
        "crs": ["EPSG:32633", "EPSG:32633"],
        "transform": [TRANSFORM, TRANSFORM],
    }
    module = SimpleNamespace(data_info={"palette": [[1, 2, 3]] * 6})
    writer.write_on_batch_end(None, module, prediction, None, None, 0)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["c1_2018-01-01.tif", "c2_2018-02-01.tif"]
    with rasterio.open(tmp_path / "out" / "c2_2018-02-01.tif") as src:
        assert np.array_equal(src.read(1), maps[1].numpy())
        assert src.colormap(1)[5] == (1, 2, 3, 255)

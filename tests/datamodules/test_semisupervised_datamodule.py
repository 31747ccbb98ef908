"""DynamicEarthNet for CAC: labelled single dates plus unlabelled crop pairs."""

import pytest
import torch

from eochange.datamodules import DynamicEarthNetSemiSupervisedDataModule
from eochange.datasets import DynamicEarthNetUnlabelled
from eochange.errors import ConfigError


def _module(root, **kwargs) -> DynamicEarthNetSemiSupervisedDataModule:
    options = {"crop_size": 32, "batch_size": 2, "unlabelled_batch_size": 3, "num_workers": 0,
               "iters_per_epoch": 5}  # fmt: skip
    return DynamicEarthNetSemiSupervisedDataModule(str(root), **{**options, **kwargs})


@pytest.mark.parametrize(
    ("density", "count", "days"),
    [
        ("monthly", 8, [0, 31]),
        ("weekly", 48, [0, 4, 9, 14, 19, 24, 31, 35, 40, 45, 50, 55]),
        ("daily", 236, list(range(59))),  # January 31 + February 28 days, 4 areas
    ],
)
def test_unlabelled_densities(den_train_root, density, count, days):
    dataset = DynamicEarthNetUnlabelled(den_train_root, "train", density, crop_size=32)
    assert len(dataset) == count  # 4 training areas, January and February
    assert sorted({dataset.describe(i)["date"] for i in range(len(dataset))}) == days
    cubes = {dataset.describe(i)["cube_id"] for i in range(len(dataset))}
    assert cubes == {entry.cube_id for entry in dataset.entries} and len(cubes) == 4


def test_training_batches(den_train_root):
    module = _module(den_train_root, unlabelled="weekly")
    module.setup("fit")
    loaders = module.train_dataloader()
    assert set(loaders) == {"labelled", "unlabelled"}
    assert len(loaders["labelled"]) == len(loaders["unlabelled"]) == 5  # iters_per_epoch
    labelled = list(loaders["labelled"])
    unlabelled = list(loaders["unlabelled"])
    assert len(labelled) == len(unlabelled) == 5
    for batch in labelled:
        assert batch["image"].shape == (2, 1, 4, 32, 32) and batch["mask"].shape == (2, 32, 32)
        assert batch["dates"].tolist() in ([[0], [0]], [[0], [31]], [[31], [0]], [[31], [31]])
    for batch in unlabelled:
        assert batch["crops"].shape == (3, 2, 4, 32, 32)
        assert batch["crops"].dtype == torch.float32
        assert batch["overlap"].shape == (3, 2, 4) and batch["flip"].shape == (3, 2)
        assert len(batch["cube_id"]) == len(batch["date"]) == 3
    # 10 labelled samples from 8: the first pass, then a second pass with new crops
    seen = [(c, m) for b in labelled for c, m in zip(b["cube_id"], b["month"], strict=True)]
    assert len(set(seen[:8])) == 8


def test_epochs_continue_the_stream(den_train_root):
    module = _module(den_train_root, unlabelled="monthly", iters_per_epoch=2)
    loaders = module.train_dataloader()
    first = [b["crops"] for b in loaders["unlabelled"]]
    loaders["unlabelled"].sampler.set_epoch(1)
    second = [b["crops"] for b in loaders["unlabelled"]]
    assert not any(torch.equal(a, b) for a in first for b in second)
    loaders["unlabelled"].sampler.set_epoch(0)
    again = [b["crops"] for b in loaders["unlabelled"]]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_supervised_only_and_evaluation(den_train_root):
    module = _module(den_train_root, unlabelled="none")
    module.setup("fit")
    assert "unlabelled" not in module.datasets
    assert set(module.train_dataloader()) == {"labelled"}
    batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (1, 1, 4, 64, 64)  # whole single-date images
    meta = module.metadata()
    assert meta["sampling"] == "single" and meta["unlabelled"] == "none"
    assert meta["bands"] == ["R", "G", "B", "NIR"]


def test_raw_and_cube_give_the_same_pairs_reading_one_window(den_root, den_cube, monkeypatch):
    raw = DynamicEarthNetUnlabelled(den_root, "train", "daily", crop_size=32, seed=5)
    cube = DynamicEarthNetUnlabelled(den_cube, "train", "daily", crop_size=32, seed=5)
    assert len(raw) == len(cube) == 59  # the one training area
    reads = []
    original = cube.source.read_images

    def record(entry, handles, window, dtype=None):
        reads.append((len(handles), window))
        return original(entry, handles, window, dtype)

    monkeypatch.setattr(cube.source, "read_images", record)
    picks = ((0, 0), (17, 3), (58, 1))
    for index, key in picks:
        a, b = raw[(index, key)], cube[(index, key)]
        assert torch.equal(a["crops"], b["crops"]) and torch.equal(a["overlap"], b["overlap"])
        assert a["date"] == b["date"] == index
    # one frame per sample, only the window its two crops need
    assert reads == [(1, cube.plan(index, key).window()) for index, key in picks]


def test_configuration_errors(den_train_root):
    bad = (
        ({"unlabelled": "hourly"}, "data.unlabelled"),
        ({"iters_per_epoch": 0}, "data.iters_per_epoch"),
        ({"unlabelled_batch_size": 0}, "data.unlabelled_batch_size"),
        ({"crop_size": 36}, "multiple of 8"),
        ({"iou_bound": (0.5, 0.2)}, "iou_bound"),
    )
    for kwargs, message in bad:
        with pytest.raises(ConfigError, match=message):
            _module(den_train_root, **kwargs)
    with pytest.raises(ConfigError, match="density"):
        DynamicEarthNetUnlabelled(den_train_root, density="none")

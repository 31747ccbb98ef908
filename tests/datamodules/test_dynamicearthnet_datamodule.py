import pytest
import torch

from eochange.datamodules import DynamicEarthNetDataModule
from eochange.errors import ConfigError


def _val_cubes(module: DynamicEarthNetDataModule) -> list[str]:
    cubes = sorted({entry.cube_id for entry in module.dataset("val").entries})
    assert len(cubes) == 2
    return cubes


def _module(root, **kwargs) -> DynamicEarthNetDataModule:
    options = {"sampling": "weekly", "crop_size": 32, "batch_size": 2, "num_workers": 0}
    return DynamicEarthNetDataModule(str(root), **{**options, **kwargs})


def test_training_batches(den_train_root):
    module = _module(den_train_root)
    module.setup("fit")
    loader = module.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 4  # 4 cubes x 2 months, batches of 2
    seen = []
    for batch in batches:
        assert batch["image"].shape == (2, 6, 4, 32, 32)
        assert batch["image"].dtype == torch.float32
        assert batch["dates"].shape == (2, 6) and batch["dates"].dtype == torch.int64
        assert batch["mask"].shape == (2, 32, 32) and batch["mask"].dtype == torch.int64
        assert batch["valid"].shape == (2, 6) and batch["valid"].all()
        seen += list(zip(batch["cube_id"], batch["month"], strict=True))
    assert len(set(seen)) == 8  # every training sample once


def test_training_drops_the_last_incomplete_batch(den_train_root):
    loader = _module(den_train_root, batch_size=3).train_dataloader()
    batches = list(loader)
    assert len(loader) == 2 and [len(b["cube_id"]) for b in batches] == [3, 3]


def test_validation_keeps_whole_images_cube_by_cube(den_train_root):
    module = _module(den_train_root)
    batches = list(module.val_dataloader())
    assert len(batches) == 4  # eval batch size 1
    order = [(b["cube_id"][0], b["month"][0]) for b in batches]
    months = ("2018-01", "2018-02")
    assert order == [(cube, month) for cube in _val_cubes(module) for month in months]
    for batch in batches:
        assert batch["image"].shape == (1, 6, 4, 64, 64)
        assert batch["mask"].shape == (1, 64, 64)


def test_daily_sampling_pads_the_shorter_month(den_train_root):
    module = _module(den_train_root, sampling="daily", eval_batch_size=2)
    batches = list(module.val_dataloader())
    assert [b["cube_id"] for b in batches] == [[cube, cube] for cube in _val_cubes(module)]
    for batch in batches:
        assert batch["month"] == ["2018-01", "2018-02"]
        assert batch["image"].shape == (2, 31, 4, 64, 64)
        assert batch["valid"].sum(dim=1).tolist() == [31, 28]  # January 31, February 28
        assert not batch["valid"][1, 28:].any()
        assert batch["dates"][1].tolist() == list(range(31, 59)) + [0, 0, 0]
        assert torch.count_nonzero(batch["image"][1, 28:]) == 0
        assert torch.count_nonzero(batch["image"][1, 27]) > 0


def _epoch_images(loader, epoch: int) -> list[torch.Tensor]:
    loader.sampler.set_epoch(epoch)
    return [batch["image"] for batch in loader]


def test_epoch_reaches_persistent_workers(den_train_root):
    serial = _module(den_train_root).train_dataloader()
    workers = _module(den_train_root, num_workers=2, persistent_workers=True)
    parallel = workers.train_dataloader()
    assert parallel.persistent_workers
    first = _epoch_images(parallel, 0)
    second = _epoch_images(parallel, 1)  # the same worker processes as epoch 0
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    for epoch, images in ((0, first), (1, second)):
        expected = _epoch_images(serial, epoch)
        assert len(images) == len(expected) == 4
        for got, want in zip(images, expected, strict=True):
            assert torch.equal(got, want)
    del parallel


def test_metadata(den_train_root):
    meta = _module(den_train_root, sampling="daily").metadata()
    assert meta["dataset"] == "dynamicearthnet"
    assert meta["bands"] == ["R", "G", "B", "NIR"]
    assert len(meta["classes"]) == 6 and meta["classes"][0] == "impervious surface"
    assert meta["short_names"] == ["imp", "agr", "for", "wet", "soil", "water"]
    assert meta["palette"][0] == [96, 96, 96] and len(meta["palette"]) == 6
    assert meta["sampling"] == "daily"
    assert meta["ignore_index"] == -1 and meta["reference_date"] == "2018-01-01"
    assert len(meta["mean"]) == len(meta["std"]) == 4


def test_configuration_errors(den_train_root, tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        DynamicEarthNetDataModule(None)
    with pytest.raises(ConfigError, match="does not exist"):
        DynamicEarthNetDataModule(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="neither"):
        DynamicEarthNetDataModule(str(tmp_path))
    bad = (
        ({"sampling": "monthly"}, "data.sampling"),
        ({"train_split": "training"}, "data.train_split"),
        ({"predict_split": "all"}, "data.predict_split"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"eval_batch_size": 0}, "data.eval_batch_size"),
    )
    for kwargs, message in bad:
        with pytest.raises(ConfigError, match=message):
            _module(den_train_root, **kwargs)


def test_cube_root(den_cube):
    module = _module(den_cube)
    batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (1, 6, 4, 64, 64)
    assert batch["month"] == ["2018-01"] and batch["valid"].all()
    assert module.dataset("val").entries[0].cube_id == batch["cube_id"][0]

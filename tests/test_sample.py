import pytest
import torch

from eochange.sample import IGNORE_INDEX, pad_collate


def _sample(t: int, value: float) -> dict:
    return {
        "image": torch.full((t, 2, 3, 3), value),
        "dates": torch.arange(1, t + 1, dtype=torch.int64),
        "mask": torch.full((3, 3), IGNORE_INDEX, dtype=torch.int64),
        "cube_id": f"c{t}",
    }


def test_pad_collate_pads_with_zeros_and_sets_valid():
    batch = pad_collate([_sample(28, 1.0), _sample(31, 2.0), _sample(30, 3.0)])
    assert batch["image"].shape == (3, 31, 2, 3, 3)
    assert batch["dates"].shape == (3, 31)
    assert batch["valid"].tolist()[0] == [True] * 28 + [False] * 3
    assert batch["valid"].sum(dim=1).tolist() == [28, 31, 30]
    # padded frames are exactly zero, real frames untouched
    assert torch.all(batch["image"][0, 28:] == 0)
    assert torch.all(batch["image"][0, :28] == 1.0)
    assert batch["dates"][0, 27].item() == 28 and batch["dates"][0, 28:].eq(0).all()
    assert batch["mask"].shape == (3, 3, 3)
    assert batch["cube_id"] == ["c28", "c31", "c30"]


def test_pad_collate_same_length_is_a_plain_stack():
    batch = pad_collate([_sample(6, 1.0), _sample(6, 2.0)])
    assert batch["image"].shape == (2, 6, 2, 3, 3)
    assert batch["valid"].all()
    assert batch["dates"].dtype == torch.int64


def test_pad_collate_custom_pad_value_and_errors():
    batch = pad_collate([_sample(2, 1.0), _sample(1, 1.0)], pad_value=-5.0)
    assert torch.all(batch["image"][1, 1] == -5.0)
    with pytest.raises(ValueError, match="empty"):
        pad_collate([])
    other = _sample(1, 1.0)
    del other["mask"]
    with pytest.raises(ValueError, match="keys"):
        pad_collate([_sample(1, 1.0), other])


def test_pad_collate_to_a_fixed_length():
    from eochange.errors import DataError

    batch = pad_collate([_sample(2, 1.0), _sample(3, 2.0)], pad_value=-1.0, length=5)
    assert batch["image"].shape == (2, 5, 2, 3, 3)
    assert batch["valid"].sum(dim=1).tolist() == [2, 3]
    assert torch.all(batch["image"][1, 3:] == -1.0) and torch.all(batch["image"][1, :3] == 2.0)
    with pytest.raises(DataError, match="4 frames is longer than the 3"):
        pad_collate([_sample(4, 1.0)], length=3)

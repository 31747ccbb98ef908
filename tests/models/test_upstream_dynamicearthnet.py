import collections

import numpy as np
import pytest
import torch
from keylisting import random_state_dict

from eochange.errors import ConfigError, DataError
from eochange.models import create, from_dynamicearthnet
from eochange.models.upstream import load_checkpoint


def _training_dict(state: dict) -> dict:
    """What upstream's wrapper saves: DataParallel keys and a numpy best_acc."""
    return {
        "last_epoch": 17,
        "best_acc": np.float64(0.357),
        "model_dict": collections.OrderedDict((f"module.{k}", v) for k, v in state.items()),
        "optimizer_dict": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
        "lr_scheduler_dict": None,
    }


@pytest.mark.parametrize("arch", ["utae", "uconvlstm", "unet3d", "unet"])
def test_official_layouts_load_strictly(arch, tmp_path):
    state = random_state_dict(arch, seed=3)
    path = tmp_path / f"{arch}.pth"
    torch.save(_training_dict(state), path)
    model = from_dynamicearthnet(arch, path)
    assert not model.training
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # the same from an already loaded object and from a bare state_dict
    again = from_dynamicearthnet(arch, torch.load(path, weights_only=False))
    assert torch.equal(again.state_dict()[next(iter(state))], next(iter(state.values())))
    from_dynamicearthnet(arch, state)


def test_round_trip_gives_the_same_predictions(tmp_path):
    torch.manual_seed(0)
    model = create("utae").eval()
    torch.save(model.state_dict(), tmp_path / "best_ckpt.pth")
    loaded = from_dynamicearthnet("utae", tmp_path / "best_ckpt.pth")
    x = torch.randn(1, 6, 4, 32, 32)
    dates = torch.tensor([[0, 4, 9, 14, 19, 24]])
    with torch.no_grad():
        assert torch.equal(model(x, dates), loaded(x, dates))


def test_wrong_architecture_and_bad_keys_are_named():
    with pytest.raises(DataError, match="'unet3d' model, not 'utae'"):
        from_dynamicearthnet("utae", random_state_dict("unet3d"))
    state = random_state_dict("unet")
    del state["out_conv.conv2.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["in_conv.conv.conv.0.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(DataError) as info:
        from_dynamicearthnet("unet", state)
    message = str(info.value)
    assert "1 missing: out_conv.conv2.weight" in message
    assert "1 unexpected: extra.weight" in message
    assert "in_conv.conv.conv.0.weight (64, 3, 3, 3) (expected (64, 4, 3, 3))" in message


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unsafe_or_bad_files_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_dict": {"w": torch.zeros(1)}, "x": Payload()}, path)
    with pytest.raises(DataError, match="refused to load"):
        load_checkpoint(path)
    with pytest.raises(DataError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pth"):
        load_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(DataError, match="not a state_dict"):
        load_checkpoint({"model_dict": {"a": 1}})
    with pytest.raises(ConfigError, match="arch"):
        from_dynamicearthnet("deeplab", {})

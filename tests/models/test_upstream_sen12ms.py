import collections

import numpy as np
import pytest
import torch

from eochange.errors import ConfigError, DataError
from eochange.models import create, from_dfc2020, from_sen12ms
from eochange.models.upstream.sen12ms import TOOLBOX_ARCHS, TOOLBOX_ENTRIES


def _toolbox_dict(model: torch.nn.Module, arch: str, best_prec) -> dict:
    """What the toolbox's main_train.py saves, from a DataParallel model."""
    state = collections.OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items())
    return {
        "epoch": 12,
        "arch": arch,
        "model_state_dict": state,
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
        "best_prec": best_prec,
    }


def _randomise_bn(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(5)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def test_toolbox_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create("resnet50", in_channels=3, num_classes=17).eval()
    _randomise_bn(model)
    path = tmp_path / "20210101_model_best.pth"
    torch.save(_toolbox_dict(model, "ResNet50", np.float64(0.6431)), path)
    loaded = from_sen12ms("ResNet50", path)  # bands and classes from the weights
    assert not loaded.training
    assert (loaded.in_channels, loaded.num_classes) == (3, 17)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # registry name, explicit sizes, an already loaded dict
    again = from_sen12ms("resnet50", torch.load(path, weights_only=False), 3, 17)
    assert torch.equal(again.FC.weight, model.FC.weight)


def test_densenet_bare_state_dict_and_torch_scalar(tmp_path):
    torch.manual_seed(0)
    model = create("densenet121", in_channels=10).eval()
    path = tmp_path / "densenet.pth"
    torch.save(_toolbox_dict(model, "DenseNet121", torch.tensor(0.5)), path)
    loaded = from_sen12ms("DenseNet121", path)
    assert loaded.in_channels == 10
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    bare = from_sen12ms("densenet121", model.state_dict())
    assert torch.equal(bare.classifier.weight, model.classifier.weight)


def test_legacy_serialisation_of_old_torch(tmp_path):
    # The toolbox pinned torch 1.4, whose torch.save wrote the pre-zip format.
    model = create("resnet18", in_channels=12).eval()
    path = tmp_path / "legacy.pth"
    checkpoint = _toolbox_dict(model, "ResNet18", np.float64(0.5))
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    loaded = from_sen12ms("ResNet18", path)
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)


def test_entry_table_matches_the_models():
    for toolbox, name in TOOLBOX_ARCHS.items():
        with torch.device("meta"):
            state = create(name).state_dict()
        key = "FC.weight" if name.startswith("resnet") else "classifier.weight"
        assert TOOLBOX_ENTRIES[key, len(state)] == toolbox


def test_wrong_architecture_and_sizes_are_named(tmp_path):
    torch.manual_seed(0)
    dense = create("densenet121", in_channels=3)
    path = tmp_path / "dense.pth"
    torch.save(_toolbox_dict(dense, "DenseNet121", np.float32(0.5)), path)
    with pytest.raises(DataError, match=r"dense\.pth: checkpoint is a toolbox 'DenseNet121'"):
        from_sen12ms("ResNet50", path)
    small = create("resnet18", in_channels=3).state_dict()
    with pytest.raises(DataError, match="toolbox 'ResNet18' model, not 'ResNet50'"):
        from_sen12ms("ResNet50", small)
    with pytest.raises(DataError) as info:
        from_sen12ms("ResNet18", small, in_channels=12)
    message = str(info.value)
    assert "'ResNet18' with in_channels=12" in message
    assert "encoder.0.weight (64, 3, 7, 7) (expected (64, 12, 7, 7))" in message
    assert "conv1.weight (64, 3, 7, 7)" in message
    broken = dict(small)
    del broken["FC.bias"]
    with pytest.raises(DataError, match="1 missing: FC.bias"):
        from_sen12ms("ResNet18", broken)
    with pytest.raises(ConfigError, match="VGG models are not supported"):
        from_sen12ms("VGG16", small)
    with pytest.raises(ConfigError, match="arch"):
        from_sen12ms("resnet42", small)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


class Plain:
    def __init__(self):
        self.value = 1


def test_unsafe_and_unreadable_files_are_refused(tmp_path, capsys):
    state = create("resnet18", in_channels=3).state_dict()
    for name, extra in (("evil.pth", Payload()), ("object.pth", Plain())):
        path = tmp_path / name
        torch.save({"arch": "ResNet18", "model_state_dict": state, "best_prec": extra}, path)
        with pytest.raises(DataError, match=rf"{name}: refused to load"):
            from_sen12ms("ResNet18", path)
    assert "must never run" not in capsys.readouterr().out
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"junk\.pth: not a readable PyTorch checkpoint"):
        from_sen12ms("ResNet18", tmp_path / "junk.pth")
    with pytest.raises(DataError, match="checkpoint file not found"):
        from_sen12ms("ResNet18", tmp_path / "missing.pth")


def test_dfc2020_deeplab_released_layout():
    torch.manual_seed(0)
    model = create("deeplabv3plus", in_channels=10, num_classes=9)
    state = model.state_dict()
    checkpoint = {"model_state_dict": state, "step": 5000, "optimizer_state_dict": {}}
    loaded = from_dfc2020(checkpoint)
    assert not loaded.training
    assert (loaded.in_channels, loaded.num_classes, loaded.output_stride) == (10, 9, 16)
    assert loaded.backbone.depth == 101
    assert len(loaded.state_dict()) == 680
    assert torch.equal(loaded.decoder.last_conv[8].weight, model.decoder.last_conv[8].weight)
    with pytest.raises(DataError, match="'deeplabv3plus' model, not 'unet_dfc2020'"):
        from_dfc2020(state, arch="unet_dfc2020")


def test_dfc2020_round_trips(tmp_path):
    torch.manual_seed(0)
    deeplab = create("deeplabv3plus", in_channels=4, num_classes=9, backbone="resnet50").eval()
    _randomise_bn(deeplab)
    loaded = from_dfc2020({"model_state_dict": deeplab.state_dict(), "step": 10}, arch="deeplab")
    assert loaded.backbone.depth == 50
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(deeplab(x), loaded(x))

    unet = create("unet_dfc2020", in_channels=12, num_classes=9).eval()
    _randomise_bn(unet)
    path = tmp_path / "checkpoint_step_1000.pth"
    torch.save({"model_state_dict": unet.state_dict(), "step": 1000}, path)
    loaded = from_dfc2020(path, arch="unet")
    x = torch.randn(1, 12, 32, 32)
    with torch.no_grad():
        assert torch.equal(unet(x), loaded(x))
    # other internal module names, same tensors in the same order: matched by position
    renamed = {
        k.replace(".block.", ".double.").replace(".conv.", ".seq."): v
        for k, v in unet.state_dict().items()
    }
    assert renamed.keys() != unet.state_dict().keys()
    again = from_dfc2020(renamed, arch="unet_dfc2020")
    with torch.no_grad():
        assert torch.equal(unet(x), again(x))
    with pytest.raises(DataError, match="'unet_dfc2020' model, not 'deeplabv3plus'"):
        from_dfc2020(path)
    with pytest.raises(DataError, match="in_channels=10.*inc"):
        from_dfc2020(path, arch="unet", in_channels=10)
    with pytest.raises(ConfigError, match="arch"):
        from_dfc2020(path, arch="fcn")

import copy
import math

import pytest
import torch
from torch import nn

from eochange.errors import ConfigError
from eochange.models import create
from eochange.models.init import initialise


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(32, 256, 3),
        nn.BatchNorm2d(256),
        nn.GroupNorm(4, 256),
        nn.Conv1d(256, 256, 1),
        nn.Linear(256, 128),
        nn.ConvTranspose2d(256, 64, 2),
    )


def _std(tensor: torch.Tensor) -> float:
    return float(tensor.detach().std())


def test_upstream_scheme():
    model = _model()
    assert initialise(model, "upstream") is model
    conv2d, bn, gn, conv1d, linear, deconv = model

    # Xavier-normal: std = sqrt(2 / (fan_in + fan_out)); PyTorch's default is about
    # 1 / sqrt(3 fan_in), 20% or more away for these shapes
    for layer, fans in ((conv2d, (32 + 256) * 9), (linear, 256 + 128), (deconv, (256 + 64) * 4)):
        assert _std(layer.weight) == pytest.approx(math.sqrt(2 / fans), rel=0.05)
        assert abs(float(layer.weight.detach().mean())) < 0.1 * math.sqrt(2 / fans)
    for layer in (conv2d, conv1d, linear, deconv):
        assert 0.8 < _std(layer.bias) < 1.2  # N(0, 1) biases (>= 64 values each)
    assert _std(conv1d.weight) == pytest.approx(1.0, rel=0.05)  # N(0, 1), not Xavier

    # BatchNorm scales from N(0, 1): both signs, not the default 1; shifts 0
    assert (bn.weight < 0).any() and (bn.weight > 0).any()
    assert 0.8 < _std(bn.weight) < 1.2
    assert torch.equal(bn.bias, torch.zeros(256))
    # GroupNorm keeps PyTorch's 1 / 0
    assert torch.equal(gn.weight, torch.ones(256)) and torch.equal(gn.bias, torch.zeros(256))


def test_default_scheme_changes_nothing():
    model = _model()
    before = copy.deepcopy(model.state_dict())
    assert initialise(model, "default") is model
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    initialise(model, "upstream")
    assert not torch.equal(before["0.weight"], model.state_dict()["0.weight"])


def test_unknown_scheme_raises():
    with pytest.raises(ConfigError, match="weight_init"):
        initialise(_model(), "kaiming")


def test_utae_master_query_keeps_its_own_init():
    torch.manual_seed(1)
    model = create("utae")
    attention = model.temporal_encoder.attention_heads
    query = attention.Q.detach().clone()
    key_weight = attention.fc1_k.weight.detach().clone()
    initialise(model, "upstream")
    assert torch.equal(attention.Q, query)
    d_k = attention.d_k
    assert attention.Q.numel() == 16 * d_k
    # 64 draws: the sample std lies within about 3 standard errors (0.07 each)
    assert abs(_std(attention.Q) - math.sqrt(2 / d_k)) < 0.2
    # the key projection is a Linear, re-drawn (Xavier) by the upstream scheme
    assert not torch.equal(attention.fc1_k.weight, key_weight)

import pytest
import torch

from eochange.models import create
from eochange.models.runtime import (
    FAST_LAYOUT_ATTR,
    autocast_dtype,
    optimise_for_inference,
    predict_logits,
)

FRAMES = {"unet": 1, "utae": 3, "uconvlstm": 3, "unet3d": 4}  # UNet3D needs T >= 4
MODELS = sorted(FRAMES)


def _inputs(name: str, batch: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    t = FRAMES[name]
    x = torch.randn(batch, t, 4, size, size, generator=generator)
    dates = torch.arange(t).mul(7).expand(batch, t)
    return x, dates


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create(name)


@pytest.mark.parametrize("name", MODELS)
def test_fp32_path_is_exactly_eval_forward_and_leaves_the_model_alone(name):
    model = _model(name).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, dates = _inputs(name)
    out = predict_logits(model, x, dates)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():  # BatchNorm running stats included
        assert torch.equal(value, before[key]), key
    with torch.no_grad():
        expected = model.eval()(x, dates)
    assert out.dtype == torch.float32 and not out.requires_grad
    assert torch.equal(out, expected)


@pytest.mark.parametrize("name", MODELS)
def test_fast_path_float32_logits_agree_with_fp32(name):
    # Random weights give near-ties between classes, a harder test than trained ones;
    # 64² x 2 samples keeps the share stable (fixed seeds: 99.2% to 99.8% here).
    model = _model(name).eval()
    x, dates = _inputs(name, size=64)
    reference = predict_logits(model, x, dates)
    fast = predict_logits(model, x, dates, fast=True)
    assert fast.dtype == torch.float32 and fast.shape == reference.shape == (2, 6, 64, 64)
    agreement = (fast.argmax(1) == reference.argmax(1)).float().mean().item()
    assert agreement >= 0.99, agreement
    assert not torch.equal(fast, reference)  # really ran in reduced precision
    # The fp32 path on the converted model is still the exact eval forward.
    with torch.no_grad():
        assert torch.equal(predict_logits(model, x, dates), model(x, dates))


def test_layout_conversion_happens_once_and_keeps_values():
    model = _model("unet3d")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert optimise_for_inference(model) is model and not model.training
    assert getattr(model, FAST_LAYOUT_ATTR)
    weight = model.en3[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last_3d)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    data_ptr = weight.data_ptr()
    x, _ = _inputs("unet3d", batch=1, size=16)
    predict_logits(model, x, fast=True)
    assert model.en3[0].weight.data_ptr() == data_ptr  # not converted again

    unet = optimise_for_inference(_model("unet"))
    assert unet.in_conv.conv.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert unet.up_blocks[0].up[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_autocast_dtype_per_device():
    assert autocast_dtype("cpu") == torch.bfloat16
    assert autocast_dtype("cuda") == torch.float16


def test_training_flag_restored_after_fast_path():
    model = _model("utae").train()
    x, dates = _inputs("utae", batch=1, size=16)
    predict_logits(model, x, dates, fast=True)
    assert model.training

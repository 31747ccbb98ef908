"""ERCNN-DRS: sizes, the Keras ConvLSTM, the step rules, masked BN and the input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eochange.errors import ConfigError, DataError
from eochange.models import create
from eochange.models.ercnn_drs import ERAS, ERCNNDRS, KerasConvLSTM, hard_sigmoid
from eochange.preprocess.eras import get_era


def _count(module: torch.nn.Module) -> int:
    # Keras' count: weights plus BN moving statistics (not num_batches_tracked).
    params = sum(p.numel() for p in module.parameters())
    stats = sum(
        b.numel() for k, b in module.named_buffers() if k.endswith(("running_mean", "running_var"))
    )
    return params + stats


def _model(**kwargs) -> ERCNNDRS:
    torch.manual_seed(0)
    kwargs.setdefault("recurrent_dropout", 0.0)
    return ERCNNDRS(**kwargs).eval()


def _frames(batch: int, steps: int, channels: int = 17, size: int = 6, seed: int = 0):
    # Positive values: channel 0 is never 0 and no pixel is all -1.
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, steps, channels, size, size, generator=generator) + 0.1


def _pad(x: torch.Tensor, steps: int) -> torch.Tensor:
    padding = torch.full((x.shape[0], steps - x.shape[1], *x.shape[2:]), -1.0)
    return torch.cat([x, padding], dim=1)


@pytest.mark.parametrize(
    ("era", "variant", "total"),
    [
        ("s1s2", "combined", 69_069),
        ("ers_ls5", "combined", 37_593),
        ("s1s2", "sar", 9_035),
        ("s1s2", "optical", 60_699),
    ],
)
def test_parameter_counts_match_keras(era: str, variant: str, total: int) -> None:
    assert _count(ERCNNDRS(era=era, variant=variant)) == total


@pytest.mark.parametrize(
    ("era", "layers"),
    [
        ("s1s2", [410, 7_240, 3_172, 6_214, 48_776, 2_632, 616, 9]),
        ("ers_ls5", [92, 1_168, 1_360, 3_700, 28_880, 1_768, 616, 9]),
    ],
)
def test_per_layer_counts_match_keras_summary(era: str, layers: list[int]) -> None:
    model = ERCNNDRS(era=era)
    names = ["conv_sar", "convlstm_sar", "conv_opt_1", "conv_opt_2", "convlstm_opt"]
    names += ["conv_concat_1", "conv_concat_2", "conv_sigmoid"]
    assert [_count(getattr(model, name)) for name in names] == layers


def test_registry_attributes_and_era_table() -> None:
    model = create("ercnn_drs", era="ers_ls5")
    assert isinstance(model, ERCNNDRS)
    assert (model.era, model.in_channels, model.sar_channels, model.optical_channels) == (
        "ers_ls5",
        9,
        2,
        7,
    )
    for name, widths in ERAS.items():  # the model's split agrees with the preprocessing eras
        era = get_era(name)
        assert widths.sar_channels == 2 * len(era.sar_bands)
        assert widths.sar_channels + widths.optical_channels == era.channels


def test_hard_sigmoid_is_the_keras2_one() -> None:
    x = torch.tensor([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0])
    expected = torch.tensor([0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0])
    torch.testing.assert_close(hard_sigmoid(x), expected)


def test_convlstm_gate_order_is_i_f_c_o() -> None:
    # Zero kernels: the gates are the biases. Per gate (i, f, c, o) = (1, -1, 0.5, 2):
    # hard_sigmoid -> i 0.7, f 0.3, o 0.9.
    lstm = KerasConvLSTM(2, 1)
    with torch.no_grad():
        lstm.input_conv.weight.zero_()
        lstm.recurrent_conv.weight.zero_()
        lstm.input_conv.bias.copy_(torch.tensor([1.0, -1.0, 0.5, 2.0]))
    x = torch.randn(1, 2, 2, 3, 3)
    c1 = 0.7 * torch.tanh(torch.tensor(0.5))
    c2 = 0.3 * c1 + c1
    one = lstm(x[:, :1], torch.ones(1, 1, dtype=torch.bool))
    two = lstm(x, torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(one, (0.9 * torch.tanh(c1)).expand(1, 1, 3, 3))
    torch.testing.assert_close(two, (0.9 * torch.tanh(c2)).expand(1, 1, 3, 3))


def test_convlstm_initialisation_is_the_keras_one() -> None:
    lstm = KerasConvLSTM(3, 4)
    expected_bias = torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 8)  # unit_forget_bias
    assert torch.equal(lstm.input_conv.bias, expected_bias)
    rows = lstm.recurrent_conv.weight.detach().reshape(16, -1)  # orthogonal (16 x 36)
    torch.testing.assert_close(rows @ rows.T, torch.eye(16), atol=1e-5, rtol=0)
    bound = (6 / (9 * 3 + 9 * 16)) ** 0.5  # Glorot-uniform
    assert lstm.input_conv.weight.abs().max() <= bound


def test_recurrent_dropout_one_mask_per_gate_for_the_whole_sequence() -> None:
    torch.manual_seed(0)
    lstm = KerasConvLSTM(2, 3, recurrent_dropout=0.4).train()
    x = torch.randn(2, 4, 2, 5, 5)
    steps = torch.ones(2, 4, dtype=torch.bool)
    torch.manual_seed(7)
    out = lstm(x, steps)
    torch.manual_seed(7)  # the same draw: four masks on h, scaled by 1 / 0.6
    masks = torch.bernoulli(torch.full((2, 12, 5, 5), 0.6)) / 0.6
    weight, bias = lstm.recurrent_conv.weight, lstm.input_conv.bias
    h = c = torch.zeros(2, 3, 5, 5)
    for t in range(4):
        z = F.conv2d(x[:, t], lstm.input_conv.weight, bias, padding=1)
        rec = [
            F.conv2d(h * masks[:, 3 * g : 3 * g + 3], weight[3 * g : 3 * g + 3], padding=1)
            for g in range(4)
        ]
        z_i, z_f, z_c, z_o = (z[:, 3 * g : 3 * g + 3] + rec[g] for g in range(4))
        c = hard_sigmoid(z_f) * c + hard_sigmoid(z_i) * torch.tanh(z_c)
        h = hard_sigmoid(z_o) * torch.tanh(c)
    torch.testing.assert_close(out, h)
    lstm.eval()  # inference: no dropout
    with torch.no_grad():
        plain = KerasConvLSTM(2, 3)
        plain.load_state_dict(lstm.state_dict())
        torch.testing.assert_close(lstm(x, steps), plain(x, steps))
        assert not torch.allclose(lstm(x, steps), out)


def test_output_shape_range_any_size_and_gradients() -> None:
    model = _model(recurrent_dropout=0.4).train()
    x = _frames(2, 3, size=7)
    out = model(x)
    assert out.shape == (2, 7, 7)
    assert bool(((out > 0) & (out < 1)).all())
    out.mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():
        assert model(_frames(1, 2, size=5)).shape == (1, 5, 5)


def test_step_mask_rules_on_hand_built_frames() -> None:
    x = _frames(1, 5, channels=3, size=4)
    x[0, 1, 0, 0, 0] = 0.0  # genuine frame, channel 0 at (0, 0) is 0
    x[0, 2, :, 0, 0] = -1.0  # genuine frame, pixel (0, 0) all -1
    x[0, 3] = -1.0  # padding
    x[0, 3, 1, 2, 2] = 0.5  # ... but one value is real: not padding
    x[0, 4] = -1.0  # padding
    correct = ERCNNDRS(era="s1s2").step_mask(x)
    keras = ERCNNDRS(era="s1s2", keras_compat=True).step_mask(x)
    assert correct.tolist() == [[True, True, True, True, False]]
    assert keras.tolist() == [[True, False, False, False, False]]


@pytest.mark.parametrize("keras_compat", [False, True])
def test_padding_behaves_like_truncation(keras_compat: bool) -> None:
    model = _model(keras_compat=keras_compat)
    x = _frames(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(_pad(x, 5)), model(x), rtol=0, atol=1e-6)


def test_zero_asc_vv_at_top_left_is_skipped_only_in_keras_compat() -> None:
    x = _frames(2, 4)
    x[1, 1, 0, 0, 0] = 0.0  # sample 1, step 1: a genuine frame with asc VV 0 at (0, 0)
    without = x[:, [0, 2, 3]]
    correct, keras = _model(), _model(keras_compat=True)
    with torch.no_grad():
        skipped = keras(without)
        torch.testing.assert_close(keras(x)[1], skipped[1], rtol=0, atol=1e-6)
        torch.testing.assert_close(keras(x)[0], correct(x)[0], rtol=0, atol=1e-6)  # per sample
        assert (correct(x)[1] - skipped[1]).abs().max() > 1e-4
        torch.testing.assert_close(correct(x)[1], correct(x[1:])[0], rtol=0, atol=1e-6)


def test_valid_argument_and_its_combination_with_keras_compat() -> None:
    x = _frames(1, 4)
    x[0, 1, 0, 0, 0] = 0.0
    valid = torch.tensor([[True, True, False, True]])
    correct, keras = _model(), _model(keras_compat=True)
    with torch.no_grad():
        # default: valid decides (step 1 kept although its asc VV is 0, step 2 skipped)
        torch.testing.assert_close(correct(x, valid), correct(x[:, [0, 1, 3]]), atol=1e-6, rtol=0)
        # keras_compat: the upstream rule AND valid (steps 1 and 2 skipped)
        torch.testing.assert_close(keras(x, valid), correct(x[:, [0, 3]]), atol=1e-6, rtol=0)
        # a valid that only marks the -1 padding changes nothing in keras_compat
        padded = _pad(x, 6)
        only_padding = torch.tensor([[True] * 4 + [False] * 2])
        torch.testing.assert_close(keras(padded, only_padding), keras(x), atol=1e-6, rtol=0)


def test_no_valid_step_gives_an_input_independent_output() -> None:
    model = _model(keras_compat=True)
    x, other = _frames(1, 3), _frames(1, 3, seed=1)
    x[:, :, 0, 0, 0] = 0.0
    other[:, :, 0, 0, 0] = 0.0
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(other))
        assert torch.equal(out, model(torch.full_like(x, -1.0)))
        # zero states through the fusion head
        state = torch.zeros(1, 36, 6, 6)
        head = model.conv_concat_2(model.conv_concat_1(state))
        torch.testing.assert_close(out, torch.sigmoid(model.conv_sigmoid(head)).squeeze(1))


def test_all_minus_one_pixels_are_zeroed_like_keras_masking() -> None:
    model = _model()
    x = _frames(1, 3)
    x[0, 1, :, 2, 3] = -1.0
    zeroed = x.clone()
    zeroed[0, 1, :, 2, 3] = 0.0
    partial = x.clone()
    partial[0, 1, 0, 2, 3] = 0.3  # not all -1: kept as is
    with torch.no_grad():
        assert torch.equal(model(x), model(zeroed))
        assert not torch.allclose(model(partial), model(zeroed))


def test_masked_bn_excludes_padding_from_batch_statistics() -> None:
    x = _frames(2, 3)
    padded = _pad(x, 5)
    stats = {}
    for masked_bn in (False, True):
        for name, inputs in (("plain", x), ("padded", padded)):
            model = _model(masked_bn=masked_bn).train()
            out = model(inputs)
            bn = model.conv_sar.bn
            stats[masked_bn, name] = (out.detach(), bn.running_mean.clone(), bn.running_var)
    for i in range(3):
        torch.testing.assert_close(stats[True, "padded"][i], stats[True, "plain"][i])
        torch.testing.assert_close(stats[False, "plain"][i], stats[True, "plain"][i])
    # upstream default: the (zeroed) padding frames enter the statistics
    assert not torch.allclose(stats[False, "padded"][1], stats[False, "plain"][1])
    assert not torch.allclose(stats[False, "padded"][0], stats[False, "plain"][0])


def test_bn_momentum_sets_how_fast_running_statistics_follow() -> None:
    x = _frames(2, 3)
    means = {}
    for momentum in (0.01, 0.1):
        model = _model(bn_momentum=momentum).train()
        model(x)
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert len(bns) == 5 and all(bn.momentum == momentum for bn in bns)
        means[momentum] = model.conv_sar.bn.running_mean.clone()
    # one step from 0: running mean = momentum x batch mean (the same batch for both)
    torch.testing.assert_close(means[0.1], 10 * means[0.01])
    assert ERCNNDRS().conv_sar.bn.momentum == 0.01  # Keras' 0.99, upstream
    with pytest.raises(ConfigError, match="bn_momentum"):
        ERCNNDRS(bn_momentum=0.0)


@pytest.mark.parametrize(("variant", "sliced"), [("sar", slice(0, 4)), ("optical", slice(4, 17))])
def test_single_branch_variants_take_the_full_layout_or_the_branch(variant, sliced) -> None:
    model = _model(variant=variant)
    x = _frames(1, 3)
    with torch.no_grad():
        assert torch.equal(model(x), model(x[:, :, sliced]))
    with pytest.raises(DataError, match=r"variant .* expects 17 or \d+ channels, got 9"):
        model(x[:, :, :9])


def test_optical_variant_keras_rule_reads_its_own_first_channel() -> None:
    # The upstream ablation model gets only the optical channels: its channel 0 is B01.
    model = _model(variant="optical", keras_compat=True)
    x = _frames(1, 3)
    x[0, 1, 0, 0, 0] = 0.0  # asc VV: irrelevant here
    x[0, 2, 4, 0, 0] = 0.0  # B01: step 2 skipped
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, :2]), atol=1e-6, rtol=0)


def test_autocast_keeps_the_recurrence_in_float32() -> None:
    model = _model()
    x = _frames(1, 3)
    with torch.no_grad():
        exact = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = torch.rand(1, 3, 10, 6, 6)
            hidden = model.convlstm_sar(features, torch.ones(1, 3, dtype=torch.bool))
            fast = model(x)
    assert hidden.dtype == torch.float32
    torch.testing.assert_close(fast.float(), exact, atol=3e-2, rtol=0)


def test_input_errors() -> None:
    model = _model()
    with pytest.raises(DataError, match=r"expects 17 channels, got 16"):
        model(torch.rand(1, 2, 16, 4, 4))
    with pytest.raises(DataError, match=r"\(B, T, C, H, W\)"):
        model(torch.rand(2, 17, 4, 4))
    with pytest.raises(DataError, match=r"valid: expected shape \(B, T\)"):
        model(torch.rand(1, 2, 17, 4, 4), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(DataError, match="bool"):
        model(torch.rand(1, 2, 17, 4, 4), torch.ones(1, 2))
    with pytest.raises(ConfigError, match="era"):
        ERCNNDRS(era="s2")
    with pytest.raises(ConfigError, match="variant"):
        ERCNNDRS(variant="both")
    with pytest.raises(ConfigError, match="recurrent_dropout"):
        ERCNNDRS(recurrent_dropout=1.0)


# --- encode_frames / decode_windows: the per-frame work once per series --------------------

WINDOWS = [(0, 12), (5, 17), (10, 25)]


def _series() -> tuple[torch.Tensor, torch.Tensor]:
    """Two series of 30 frames 17 x 16 x 16 with invalid steps inside the windows.

    Returns the frames and a per-frame ``valid`` that drops frame 11 of series 0.
    """
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 30, 17, 16, 16, generator=generator)
    x[:, 20, :, 3, 5] = -1.0  # an all -1 pixel: Keras masking
    x[0, 8] = -1.0  # an all -1 frame mid-window: skipped by both rules
    # channel 0 at (0, 0) is 0 (asc VV for the full layout, B01 for the optical variant):
    # skipped under the upstream rule only
    x[0, 14, [0, 4], 0, 0] = 0.0
    x[1, :12, [0, 4], 0, 0] = 0.0  # upstream rule: series 1's first window takes no step
    valid = torch.ones(2, 30, dtype=torch.bool)
    valid[0, 11] = False
    return x, valid


def _forward_windows(model, x, windows, valid=None) -> torch.Tensor:
    """``forward`` on each ``(b, start, end)`` window, padded with -1 to the longest."""
    longest = max(end - start for _, start, end in windows)
    batch = torch.cat([_pad(x[b : b + 1, start:end], longest) for b, start, end in windows])
    if valid is not None:
        valid = torch.stack([
            torch.cat([valid[b, start:end], torch.zeros(longest - end + start, dtype=torch.bool)])
            for b, start, end in windows
        ])  # fmt: skip
    with torch.no_grad():
        return model(batch, valid)


@pytest.mark.parametrize("keras_compat", [False, True])
@pytest.mark.parametrize("variant", ["combined", "sar", "optical"])
@pytest.mark.parametrize("with_valid", [False, True])
def test_decoded_windows_equal_forward_on_each_window(keras_compat, variant, with_valid) -> None:
    model = _model(keras_compat=keras_compat, variant=variant)
    x, valid = _series()
    valid = valid if with_valid else None
    windows = [(b, start, end) for b in (0, 1) for start, end in WINDOWS]
    expected = _forward_windows(model, x, windows, valid)
    with torch.no_grad():
        codes = model.encode_frames(x, valid)
        # one batch, batches of 4 (mixed series and lengths), one window at a time
        for batch_size in (None, 4, 1):
            decoded = model.decode_windows(codes, windows, batch_size)
            torch.testing.assert_close(decoded, expected, atol=1e-5, rtol=0)
    # the steps taken are forward's on the padded windows
    assert codes.steps.shape == (2, 30)
    # frame 8 is all -1: only a given valid (without the upstream rule) takes it
    assert codes.steps[0, 8] == (with_valid and not keras_compat)
    assert codes.steps[0, 14] != keras_compat
    assert codes.steps[1, :12].any() != keras_compat
    if with_valid:
        assert not codes.steps[0, 11]
    for name, filters in (("sar", 10), ("optical", 26)):
        gates = getattr(codes, name)
        if variant in ("combined", name):
            assert gates.shape == (2, 30, 4 * filters, 16, 16) and gates.dtype == torch.float32
        else:
            assert gates is None


def test_decoded_windows_of_a_single_series_and_the_variant_check() -> None:
    model = _model()
    x, _ = _series()
    with torch.no_grad():
        codes = model.encode_frames(x[1:, :12])  # one series, one window of all its frames
        torch.testing.assert_close(model.decode_windows(codes, [(0, 0, 12)]),
                                   model(x[1:, :12]), atol=1e-5, rtol=0)  # fmt: skip
        keras = _model(keras_compat=True)
        nothing = keras.encode_frames(x[1:, :12])  # the upstream rule takes none of these
        assert not nothing.steps.any() and not nothing.optical.any()
        expected = keras(x[1:, :12]).expand(2, -1, -1)  # the zero states through the head
        decoded = keras.decode_windows(nothing, [(0, 0, 12), (0, 3, 7)])
        torch.testing.assert_close(decoded, expected, atol=1e-6, rtol=0)
        with pytest.raises(DataError, match="codes of another variant"):
            _model(variant="sar").decode_windows(codes, [(0, 0, 12)])
        with pytest.raises(DataError, match=r"window \(0, 5, 13\)"):
            model.decode_windows(codes, [(0, 5, 13)])
        with pytest.raises(DataError, match=r"window \(1, 0, 4\)"):
            model.decode_windows(codes, [(1, 0, 4)])
        with pytest.raises(DataError, match=r"window \(0, 3, 3\)"):
            model.decode_windows(codes, [(0, 3, 3)])


def test_encode_and_decode_refuse_training_mode() -> None:
    model = _model()
    x = _frames(1, 3)
    with torch.no_grad():
        codes = model.encode_frames(x)
    model.train()
    with pytest.raises(RuntimeError, match="eval mode only"):
        model.encode_frames(x)
    with pytest.raises(RuntimeError, match="eval mode only"):
        model.decode_windows(codes, [(0, 0, 3)])


def test_encoding_under_autocast_keeps_float32_codes_and_recurrence() -> None:
    model = _model()
    x = _frames(1, 6, size=8)
    with torch.no_grad():
        exact = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            codes = model.encode_frames(x)
            fast = model.decode_windows(codes, [(0, 0, 6), (0, 2, 6)])
            forward_fast = torch.cat([model(x), model(x[:, 2:])])
    assert codes.sar.dtype == codes.optical.dtype == torch.float32
    torch.testing.assert_close(fast.float(), forward_fast.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(fast[0].float(), exact[0], atol=3e-2, rtol=0)

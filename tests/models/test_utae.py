import math

import pytest
import torch
from keylisting import random_state_dict, read_listing

from eochange.models.utae import UTAE, PositionalEncoder, aggregate_with_attention


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _series(b: int = 2, t: int = 4, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, 4, size, size, generator=g)
    dates = (torch.arange(t) * 7 + 3).expand(b, t).clone()
    return x, dates


def test_parameter_count_and_official_keys():
    model = UTAE()
    assert _trainable(model) == 1_079_718
    listing = read_listing("utae")
    state = model.state_dict()
    assert len(state) == 153
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: s for k, (s, _) in listing.items()}
    model.load_state_dict(random_state_dict("utae"), strict=True)


def test_output_shape_gradients_and_odd_sizes():
    model = UTAE()
    x, dates = _series()
    out = model(x, dates)
    assert out.shape == (2, 6, 32, 32)
    out.mean().backward()
    assert model.in_conv.conv.conv[0].weight.grad.abs().sum() > 0
    assert model.temporal_encoder.attention_heads.Q.grad.abs().sum() > 0
    odd, odd_dates = _series(1, 3, 36)
    odd = odd[..., :30]  # 36 x 30: neither side a multiple of 8
    assert UTAE(num_classes=3).eval()(odd, odd_dates).shape == (1, 3, 36, 30)


def test_positional_encoding_formula():
    encoder = PositionalEncoder(d=16, period=1000.0, repeat=16)
    pe = encoder(torch.tensor([[0.0, 59.0]]))
    assert pe.shape == (1, 2, 256)
    for i in (0, 1, 6, 15):
        denominator = 1000 ** (2 * (i // 2) / 16)
        expected = (math.sin if i % 2 == 0 else math.cos)(59.0 / denominator)
        assert pe[0, 1, i].item() == pytest.approx(expected, abs=1e-6)
        assert pe[0, 1, i + 16 * 5].item() == pytest.approx(expected, abs=1e-6)  # tiled per head
    assert pe[0, 0, 0].item() == 0.0 and pe[0, 0, 1].item() == 1.0


def test_attention_softmax_masks_padded_dates_with_minus_1000():
    model = UTAE().eval()
    heads = model.temporal_encoder.attention_heads
    v = torch.randn(3, 5, 256)
    mask = torch.tensor([[False] * 5, [False, False, False, True, True], [False] * 4 + [True]])
    _, attention = heads(v, mask)
    assert attention.shape == (16, 3, 5)
    torch.testing.assert_close(attention.sum(-1), torch.ones(16, 3))
    assert attention[:, 1, 3:].max() < 1e-30  # exp(-1000) underflows
    # scores are <Q_h, k_h> / sqrt(4)
    keys = heads.fc1_k(v[:1]).view(1, 5, 16, 4)
    scores = torch.einsum("hk,ntk->hnt", heads.Q[:1], keys[:, :, 0]) / 2.0
    torch.testing.assert_close(attention[:1, :1], torch.softmax(scores, dim=-1))


def test_group_attention_aggregation_by_hand():
    x = torch.arange(3 * 4 * 2 * 2, dtype=torch.float32).view(1, 3, 4, 2, 2)
    attention = torch.zeros(2, 1, 3, 2, 2)
    attention[0, :, 0] = 1.0  # head 0 picks date 0 for channels 0-1
    attention[1, :, 2] = 0.5  # head 1 takes half of date 2 for channels 2-3
    out = aggregate_with_attention(x, attention, None)
    torch.testing.assert_close(out[0, :2], x[0, 0, :2])
    torch.testing.assert_close(out[0, 2:], 0.5 * x[0, 2, 2:])
    pad = torch.tensor([[False, False, True]])
    assert aggregate_with_attention(x, attention, pad)[0, 2:].abs().sum() == 0


def test_padding_changes_output_only_through_the_input_groupnorm():
    x, dates = _series(1, 4)
    padded = torch.cat([x, torch.zeros(1, 2, 4, 32, 32)], dim=1)
    padded_dates = torch.cat([dates, torch.zeros(1, 2, dtype=dates.dtype)], dim=1)
    torch.manual_seed(1)
    upstream = UTAE().eval()
    torch.manual_seed(1)
    exact = UTAE(masked_in_norm=True).eval()
    with torch.no_grad():
        # the fix changes nothing without padding ...
        torch.testing.assert_close(exact(x, dates), upstream(x, dates))
        # ... and makes padded frames invisible; upstream's GroupNorm sees them (small change)
        torch.testing.assert_close(exact(padded, padded_dates), exact(x, dates), atol=1e-5, rtol=0)
        difference = (upstream(padded, padded_dates) - upstream(x, dates)).abs().max()
    assert 0 < difference < 0.1


def test_padded_frames_skip_the_encoder_and_dates_are_required():
    x, dates = _series(1, 3)
    x[:, 2] = 0  # a padded frame
    model = UTAE().eval()
    calls = []
    model.in_conv.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        model(x, dates)
    assert calls == [2]  # only the two real frames went through the encoder
    with pytest.raises(ValueError, match="dates"):
        model(x)
    assert UTAE(positions_if_missing=True).eval()(x).shape == (1, 6, 32, 32)
    with pytest.raises(ValueError, match=r"expected input \(B, T, 4, H, W\)"):
        model(torch.randn(1, 3, 5, 32, 32), dates)

import numpy as np
import pytest
import torch
from torch import nn

from eochange.inference.sliding import predict_block
from eochange.inference.tiling import TileGrid, blocks, taper, tile_origins


def test_tile_origins_known_answers():
    assert tile_origins(600, 256, 64) == [0, 192, 344]
    assert tile_origins(256, 256, 64) == [0]
    assert tile_origins(100, 256, 64) == [0]  # smaller than a tile: one padded tile
    assert tile_origins(512, 256, 0) == [0, 256]
    with pytest.raises(ValueError, match="overlap"):
        tile_origins(600, 256, 256)


def test_taper_by_hand():
    # overlap 6, margin 2: weights 0, 0, then 1/4, 2/4, 3/4, 4/4 from a shared side
    np.testing.assert_allclose(taper(10, 6, 2, True, False),
                               [0, 0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1])  # fmt: skip
    np.testing.assert_allclose(taper(10, 6, 2, False, True)[::-1],
                               [0, 0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1])  # fmt: skip
    assert (taper(10, 6, 2, False, False) == 1).all()


@pytest.mark.parametrize("shape", [(600, 600), (300, 700), (257, 256)])
def test_every_pixel_is_weighted_and_seams_are_zero_weight(shape):
    grid = TileGrid(*shape, tile=256, overlap=64, margin=16)
    total = np.zeros(shape)
    for window in grid.tiles():
        row, col, h, w = window
        weights = grid.weights(window)
        total[row : row + h, col : col + w] += weights
        # zero weight within the margin of every side shared with a neighbour
        if row > 0:
            assert (weights[:16] == 0).all()
        if col > 0:
            assert (weights[:, :16] == 0).all()
    assert total.min() > 0


def test_blocks_cover_the_area_once():
    cover = np.zeros((700, 1100), int)
    for row, col, h, w in blocks(700, 1100, 512):
        cover[row : row + h, col : col + w] += 1
    assert (cover == 1).all()


class Local(nn.Module):
    """Mean over time, then two 3x3 convolutions: receptive radius 2 pixels."""

    def __init__(self, k=3):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, k, 3, padding=1))  # fmt: skip

    def forward(self, x, dates=None):
        return self.net(x.mean(dim=1))


class Constant(nn.Module):
    def forward(self, x, dates=None):
        logits = torch.tensor([0.0, 1.0, 2.0])[None, :, None, None]
        return logits.expand(x.shape[0], 3, *x.shape[-2:]).clone()


def _frames(h, w, seed=0):
    return np.random.default_rng(seed).normal(size=(3, 4, h, w)).astype(np.float32)


def _predict(model, frames, grid, core, batch_size=3):
    def read(window):
        row, col, h, w = window
        return frames[:, :, row : row + h, col : col + w]

    return predict_block(model, read, np.arange(3), grid, core, 3, batch_size)


def test_constant_model_gives_a_constant_map_without_seams():
    frames = _frames(150, 170)
    grid = TileGrid(150, 170, 64, 24, 6)
    probs = _predict(Constant(), frames, grid, (0, 0, 150, 170))
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0).numpy()
    np.testing.assert_allclose(probs, np.broadcast_to(expected[:, None, None], probs.shape),
                               rtol=0, atol=1e-6)  # fmt: skip


def test_tiled_equals_untiled_when_the_margin_covers_the_receptive_field():
    frames = _frames(150, 170, seed=1)
    model = Local()
    untiled = torch.softmax(model(torch.from_numpy(frames)[None]), 1)[0].detach().numpy()
    grid = TileGrid(150, 170, 64, 24, 6)  # margin 6 >= radius 2
    tiled = _predict(model, frames, grid, (0, 0, 150, 170))
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)
    # without a margin, seams differ from the untiled prediction
    seamy = _predict(model, frames, TileGrid(150, 170, 64, 24, 0), (0, 0, 150, 170))
    assert np.abs(seamy - untiled).max() > 1e-3


def test_blocks_give_the_same_map_as_one_pass():
    frames = _frames(150, 170, seed=2)
    model, grid = Local(), TileGrid(150, 170, 64, 24, 6)
    whole = _predict(model, frames, grid, (0, 0, 150, 170))
    pieced = np.zeros_like(whole)
    for row, col, h, w in blocks(150, 170, 70):
        pieced[:, row : row + h, col : col + w] = _predict(model, frames, grid, (row, col, h, w))
    np.testing.assert_allclose(pieced, whole, atol=1e-6)


def test_area_smaller_than_a_tile_is_padded():
    frames = _frames(40, 50, seed=3)
    model = Local()
    probs = _predict(model, frames, TileGrid(40, 50, 64, 16, 4), (0, 0, 40, 50))
    untiled = torch.softmax(model(torch.from_numpy(frames)[None]), 1)[0].detach().numpy()
    assert probs.shape == (3, 40, 50)
    # away from the padded far edges the padding is invisible
    np.testing.assert_allclose(probs[:, :37, :47], untiled[:, :37, :47], atol=1e-5)

import numpy as np
import pytest
import torch
from torch import nn

from eochange.inference.sliding import CellMerger, accumulate, blended, cell_parts
from eochange.inference.tiling import TileGrid, plan_blocks, taper, tile_origins


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


@pytest.mark.parametrize(("shape", "block"), [((700, 1100), 512), ((150, 170), 70), ((40, 50), 8)])
def test_block_plan_evaluates_every_tile_once_and_cells_partition_the_area(shape, block):
    grid = TileGrid(*shape, tile=64 if block < 512 else 256, overlap=24 if block < 512 else 64,
                    margin=6 if block < 512 else 16)  # fmt: skip
    plan = plan_blocks(grid, block)
    tiles = [t for b in plan.blocks for t in b.tiles]
    assert sorted(tiles) == sorted(grid.tiles())  # each tile in exactly one block
    cover = np.zeros(shape, int)
    for cell in plan.cells:
        row, col, h, w = cell.window
        cover[row : row + h, col : col + w] += 1
        # the owners are exactly the blocks whose extents hold the cell
        holders = [b.index for b in plan.blocks if _inside(cell.window, b.extent)]
        assert list(cell.owners) == holders
        assert all(cell in plan.blocks[o].cells for o in cell.owners)
    assert (cover == 1).all()
    for b in plan.blocks:  # the extent is the union of the block's tiles
        row, col, h, w = b.extent
        assert (row, col) == b.tiles[0][:2]
        assert row + h == max(t[0] + t[2] for t in b.tiles)
        assert col + w == max(t[1] + t[3] for t in b.tiles)


def _inside(window, extent):
    (r, c, h, w), (er, ec, eh, ew) = window, extent
    return er <= r and r + h <= er + eh and ec <= c and c + w <= ec + ew


def test_block_plan_known_answers():
    # 4096 px, tile 256, step 192: 21 tiles per axis; 1024 px blocks hold 5 tiles, so the
    # tiles go into 5 runs of 5, 4, 4, 4, 4; shared strips are the 64 px overlap
    plan = plan_blocks(TileGrid(4096, 4096, 256, 64, 16), 1024)
    assert len(plan.blocks) == 25
    assert [len(b.tiles) for b in plan.blocks[:5]] == [25, 20, 20, 20, 20]
    assert [b.extent[3] for b in plan.blocks[:5]] == [1024, 832, 832, 832, 832]
    shared = [c for c in plan.cells if c.shared]
    assert {min(c.window[2], c.window[3]) for c in shared} == {64}
    assert max(len(c.owners) for c in plan.cells) == 4
    # a 1024 px area is one block with no shared cell
    single = plan_blocks(TileGrid(1024, 1024, 256, 64, 16), 1024)
    assert len(single.blocks) == 1 and not any(c.shared for c in single.cells)


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


def _reader(frames):
    def read(window):
        row, col, h, w = window
        return frames[:, :, row : row + h, col : col + w]

    return read


def _predict(model, frames, grid, batch_size=3):
    """One pass over every tile of the area."""
    total, weight = accumulate(model, _reader(frames), np.arange(3), grid, grid.tiles(),
                               (0, 0, grid.height, grid.width), 3, batch_size)  # fmt: skip
    return blended(total, weight)


def _predict_blocks(model, frames, grid, block, order):
    """Block by block in the given order, as the map driver assembles them."""
    plan, merger = plan_blocks(grid, block), CellMerger()
    out = np.full((3, grid.height, grid.width), np.nan, np.float32)
    for index in order(len(plan.blocks)):
        b = plan.blocks[index]
        total, weight = accumulate(model, _reader(frames), np.arange(3), grid, b.tiles,
                                   b.extent, 3, 2)  # fmt: skip
        for cell, sums, weights in cell_parts(total, weight, b):
            probs = (
                merger.add(cell, b.index, sums, weights) if cell.shared else blended(sums, weights)
            )
            if probs is not None:
                row, col, h, w = cell.window
                out[:, row : row + h, col : col + w] = probs
    assert not merger.parts  # every shared cell completed
    return out


def test_constant_model_gives_a_constant_map_without_seams():
    frames = _frames(150, 170)
    grid = TileGrid(150, 170, 64, 24, 6)
    probs = _predict(Constant(), frames, grid)
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0).numpy()
    np.testing.assert_allclose(probs, np.broadcast_to(expected[:, None, None], probs.shape),
                               rtol=0, atol=1e-6)  # fmt: skip


def test_tiled_equals_untiled_when_the_margin_covers_the_receptive_field():
    frames = _frames(150, 170, seed=1)
    model = Local()
    untiled = torch.softmax(model(torch.from_numpy(frames)[None]), 1)[0].detach().numpy()
    grid = TileGrid(150, 170, 64, 24, 6)  # margin 6 >= radius 2
    tiled = _predict(model, frames, grid)
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)
    # without a margin, seams differ from the untiled prediction
    seamy = _predict(model, frames, TileGrid(150, 170, 64, 24, 0))
    assert np.abs(seamy - untiled).max() > 1e-3


@pytest.mark.parametrize("block", [70, 110, 1000])
def test_blocks_give_the_same_map_as_one_pass_in_any_order(block):
    frames = _frames(150, 170, seed=2)
    model, grid = Local(), TileGrid(150, 170, 64, 24, 6)
    whole = _predict(model, frames, grid)
    forward = _predict_blocks(model, frames, grid, block, lambda n: range(n))
    backward = _predict_blocks(model, frames, grid, block, lambda n: reversed(range(n)))
    np.testing.assert_allclose(forward, whole, atol=1e-6)
    np.testing.assert_array_equal(forward, backward)  # order of arrival does not matter


def test_area_smaller_than_a_tile_is_padded():
    frames = _frames(40, 50, seed=3)
    model = Local()
    probs = _predict(model, frames, TileGrid(40, 50, 64, 16, 4))
    untiled = torch.softmax(model(torch.from_numpy(frames)[None]), 1)[0].detach().numpy()
    assert probs.shape == (3, 40, 50)
    # away from the padded far edges the padding is invisible
    np.testing.assert_allclose(probs[:, :37, :47], untiled[:, :37, :47], atol=1e-5)

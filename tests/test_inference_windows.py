"""The tile plan: full coverage, a grid independent of blocks, bounded reads; and the blend weights."""

import numpy as np
import pytest

from model.inference.blending import EDGE_WEIGHT, blend_weights
from model.inference.windows import TilePlan, Window, tile_origins


@pytest.mark.parametrize("size", [1, 31, 64, 65, 200, 257])
def test_tile_origins_cover_every_pixel_and_end_flush(size):
    origins = tile_origins(size, 64, 48)
    covered = np.zeros(max(size, 64), bool)
    for origin in origins:
        covered[origin:origin + 64] = True
    assert covered[:size].all()
    assert origins[0] == 0
    assert origins[-1] == max(0, size - 64)
    assert all(b - a <= 48 for a, b in zip(origins, origins[1:]))


@pytest.mark.parametrize("block_size", [48, 100, 1000])
def test_blocks_partition_the_raster_and_their_tiles_cover_them(block_size):
    plan = TilePlan(203, 157, 64, 16, block_size)
    seen = np.zeros((157, 203), int)
    for row in plan.block_rows():
        for block in row:
            seen[block.slices_in(plan.raster)] += 1
            covered = np.zeros((157, 203), bool)
            for tile in plan.tiles_for(block):
                assert tile.x in plan.x_origins and tile.y in plan.y_origins
                part = tile.intersection(plan.raster)
                covered[part.slices_in(plan.raster)] = True
            assert covered[block.slices_in(plan.raster)].all()
    assert (seen == 1).all()


def test_read_window_is_block_plus_at_most_one_tile_of_halo():
    plan = TilePlan(5000, 4000, 256, 64, 1024)
    for row in plan.block_rows():
        for block in row:
            window = plan.read_window(block)
            assert window.x >= block.x - 256 and window.x_end <= block.x_end + 256
            assert window.y >= block.y - 256 and window.y_end <= block.y_end + 256
            assert window.intersection(plan.raster) == window


def test_block_size_is_a_multiple_of_the_stride():
    assert TilePlan(5000, 5000, 256, 64, 2048).block_size == 1920
    assert TilePlan(5000, 5000, 256, 64, 10).block_size == 192


def test_window_intersection_and_slices():
    outer = Window(10, 20, 100, 50)
    inner = Window(0, 60, 30, 30).intersection(outer)
    assert inner == Window(10, 60, 20, 10)
    assert inner.slices_in(outer) == (slice(40, 50), slice(0, 20))
    assert Window(0, 0, 5, 5).intersection(Window(5, 0, 5, 5)) is None


def test_blend_weights_peak_in_the_centre_and_keep_edges_positive():
    weights = blend_weights(64)
    assert weights.shape == (64, 64)
    assert weights.min() == pytest.approx(weights[0, 0]) and weights[0, 0] > 0
    assert weights[0, 0] == pytest.approx(EDGE_WEIGHT ** 2, rel=0.05)
    assert weights[31, 31] == pytest.approx(weights.max()) and weights.max() <= 1.0
    np.testing.assert_allclose(weights, weights.T)

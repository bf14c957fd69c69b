"""The tile plan: full coverage, a grid independent of blocks, bounded reads; and the blend weights."""

import numpy as np
import pytest

from sarlulc.inference.blending import EDGE_WEIGHT, blend_weights
from sarlulc.rasters.windows import TilePlan, Window, tile_origins


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


@pytest.mark.parametrize("width, height, tile, overlap, block_size", [
    (203, 157, 64, 16, 48), (203, 157, 64, 16, 100), (203, 157, 64, 16, 1000), (5000, 3001, 256, 64, 1024),
    (2100, 700, 256, 64, 1920), (40, 30, 64, 16, 32)])
def test_every_tile_belongs_to_exactly_one_block_and_blocks_partition_the_raster(width, height, tile, overlap,
                                                                                  block_size):
    plan = TilePlan(width, height, tile, overlap, block_size)
    seen = np.zeros((height, width), int)
    tiles = []
    for row in plan.block_rows():
        for block in row:
            seen[block.slices_in(plan.raster)] += 1
            for t in plan.tiles_of(block):
                assert block.x <= t.x < block.x_end and block.y <= t.y < block.y_end
                tiles.append((t.x, t.y))
    assert (seen == 1).all()
    assert sorted(tiles) == sorted((x, y) for x in plan.x_origins for y in plan.y_origins)
    assert len(tiles) == plan.tile_count


@pytest.mark.parametrize("block_size", [32, 100, 1000])
def test_tiles_reach_only_the_blocks_they_name_and_those_cover_every_pixel(block_size):
    """A pixel gets the outputs of all the tiles over it: those of its own block, and those of the
    earlier blocks that name its block as reached."""
    plan = TilePlan(203, 157, 64, 16, block_size)
    blocks = [block for row in plan.block_rows() for block in row]
    contributions = np.zeros((157, 203), int)
    expected = np.zeros((157, 203), int)
    for x in plan.x_origins:
        for y in plan.y_origins:
            part = Window(x, y, 64, 64).intersection(plan.raster)
            expected[part.slices_in(plan.raster)] += 1
    for block in blocks:
        reached = plan.blocks_reached(block)
        assert all(later in blocks and (later.y, later.x) > (block.y, block.x) for later in reached)
        for t in plan.tiles_of(block):
            part = t.intersection(plan.raster)
            for target in [block] + reached:
                on_target = part.intersection(target)
                if on_target:
                    contributions[on_target.slices_in(plan.raster)] += 1
            assert part.intersection(plan.read_window(block)) == part  # each tile is read whole
    np.testing.assert_array_equal(contributions, expected)


def test_read_window_is_the_block_and_its_tiles():
    plan = TilePlan(5000, 4000, 256, 64, 1024)
    for row in plan.block_rows():
        for block in row:
            window = plan.read_window(block)
            assert (window.x, window.y) == (block.x, block.y)
            assert block.x_end <= window.x_end <= block.x_end + 256 and block.y_end <= window.y_end <= block.y_end + 256
            assert window.intersection(plan.raster) == window


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


@pytest.mark.parametrize("height, block_size", [(2048, 512), (2100, 1920), (700, 128), (157, 48), (200, 1024)])
def test_carried_rows_are_what_tiles_reach_past_each_block_row(height, block_size):
    plan = TilePlan(300, height, 256 if height > 300 else 64, 64 if height > 300 else 16, block_size)
    reach = 0
    for row in plan.block_rows():
        block = row[0]
        for tile in plan.tiles_of(block):
            if block.y_end < height:
                reach = max(reach, min(tile.y_end, height) - block.y_end)
    assert plan.carried_rows() == reach
    assert plan.carried_rows() <= plan.tile_size

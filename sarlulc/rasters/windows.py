"""The tile plan: a global tile grid over the raster, visited in bounded output blocks.

Tile origins depend only on the raster size, tile size and overlap, never on the block size or
the processing order, so a pixel's blended result is the same whichever block computes it, and
each tile runs once.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """A pixel rectangle: column ``x``, row ``y``, ``width`` x ``height``."""

    x: int
    y: int
    width: int
    height: int

    @property
    def x_end(self) -> int:
        return self.x + self.width

    @property
    def y_end(self) -> int:
        return self.y + self.height

    def intersection(self, other: "Window") -> "Window | None":
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.x_end, other.x_end), min(self.y_end, other.y_end)
        return Window(x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None

    def slices_in(self, outer: "Window") -> tuple[slice, slice]:
        """(rows, columns) slices of this window inside an array covering ``outer``."""
        return (slice(self.y - outer.y, self.y_end - outer.y), slice(self.x - outer.x, self.x_end - outer.x))


def tile_origins(size: int, tile_size: int, stride: int) -> list[int]:
    """Tile starts along one axis: every ``stride`` pixels, the last one flush with the far edge.

    An axis shorter than a tile gets one tile at 0 (the reader pads it to the tile size).
    """
    if size <= tile_size:
        return [0]
    origins = list(range(0, size - tile_size, stride))
    origins.append(size - tile_size)
    return origins


class TilePlan:
    """Which tiles each output block runs, and which pixels it must read.

    Every tile belongs to the one block holding its origin (top-left pixel), so each tile runs
    exactly once whatever the block size; its outputs that fall on later blocks (to the right and
    below) are carried to them (`blocks_reached`).
    """

    def __init__(self, width: int, height: int, tile_size: int, tile_overlap: int, block_size: int):
        self.width, self.height = width, height
        self.tile_size = tile_size
        self.stride = tile_size - tile_overlap
        self.block_size = block_size
        self.x_origins = tile_origins(width, tile_size, self.stride)
        self.y_origins = tile_origins(height, tile_size, self.stride)
        self.raster = Window(0, 0, width, height)

    @property
    def tile_count(self) -> int:
        return len(self.x_origins) * len(self.y_origins)

    def block_rows(self) -> list[list[Window]]:
        """Output blocks, row by row, tiling the raster without overlap."""
        size = self.block_size
        return [[Window(x, y, min(size, self.width - x), min(size, self.height - y))
                 for x in range(0, self.width, size)]
                for y in range(0, self.height, size)]

    def carried_rows(self) -> int:
        """The most rows that the tiles of one block row add to the next (what `blocks_reached`
        carries below, across the raster's width): the overlap, or up to a tile's height where
        the last row of tiles, flush with the raster's bottom, starts above a block boundary."""
        rows = 0
        for boundary in range(self.block_size, self.height, self.block_size):
            above = self.y_origins[:bisect.bisect_left(self.y_origins, boundary)]
            rows = max(rows, min(self.height, above[-1] + self.tile_size) - boundary)
        return rows

    def most_tiles_in_a_block(self) -> int:
        """The most tiles one block runs: a larger batch is never filled."""
        def most(origins: list[int], length: int) -> int:
            return max(len(_inside(origins, start, start + self.block_size))
                       for start in range(0, length, self.block_size))
        return most(self.x_origins, self.width) * most(self.y_origins, self.height)

    def tiles_of(self, block: Window) -> list[Window]:
        """The tiles whose origin lies in ``block``, row by row (a tile may extend past the raster
        when the raster is smaller than a tile)."""
        t = self.tile_size
        return [Window(x, y, t, t) for y in _inside(self.y_origins, block.y, block.y_end)
                for x in _inside(self.x_origins, block.x, block.x_end)]

    def read_window(self, block: Window) -> Window:
        """The block and its own tiles, clipped to the raster: all the block reads."""
        tiles = self.tiles_of(block)
        if not tiles:
            return block
        x_end = max(block.x_end, tiles[-1].x_end)
        y_end = max(block.y_end, tiles[-1].y_end)
        return Window(block.x, block.y, x_end - block.x, y_end - block.y).intersection(self.raster)

    def blocks_reached(self, block: Window) -> list[Window]:
        """The later blocks that the tiles of ``block`` reach into (right, below, or both)."""
        window = self.read_window(block)
        size = self.block_size
        return [Window(x, y, min(size, self.width - x), min(size, self.height - y))
                for y in range(block.y, window.y_end, size) for x in range(block.x, window.x_end, size)
                if (x, y) != (block.x, block.y)]


def _inside(origins: list[int], start: int, end: int) -> list[int]:
    """Origins o (sorted) with start <= o < end."""
    return origins[bisect.bisect_left(origins, start):bisect.bisect_left(origins, end)]

"""The tile plan: a global tile grid over the raster, visited in bounded output blocks.

Tile origins depend only on the raster size, tile size and overlap, never on the block size or
the processing order, so a pixel's blended result is the same whichever block computes it.
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
    """Which tiles cover which output block, and which pixels each block must read."""

    def __init__(self, width: int, height: int, tile_size: int, tile_overlap: int, block_size: int):
        self.width, self.height = width, height
        self.tile_size = tile_size
        self.stride = tile_size - tile_overlap
        # Blocks are whole multiples of the stride, so each block boundary cuts the fewest tiles.
        self.block_size = max(self.stride, block_size - block_size % self.stride)
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

    def tiles_for(self, block: Window) -> list[Window]:
        """Every tile touching ``block`` (a tile may extend past the raster when the raster is smaller)."""
        t = self.tile_size
        return [Window(x, y, t, t) for y in _touching(self.y_origins, block.y, block.y_end, t)
                for x in _touching(self.x_origins, block.x, block.x_end, t)]

    def read_window(self, block: Window) -> Window:
        """The block plus the halo its tiles need, clipped to the raster: all the block reads."""
        tiles = self.tiles_for(block)
        union = Window(tiles[0].x, tiles[0].y, tiles[-1].x_end - tiles[0].x, tiles[-1].y_end - tiles[0].y)
        return union.intersection(self.raster)


def _touching(origins: list[int], start: int, end: int, tile_size: int) -> list[int]:
    """Origins o (sorted) whose tile [o, o + tile_size) meets [start, end)."""
    first = bisect.bisect_right(origins, start - tile_size)
    last = bisect.bisect_left(origins, end)
    return origins[first:last]

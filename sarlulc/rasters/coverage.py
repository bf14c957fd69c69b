"""Where the input holds valid data, found once before streaming, so that empty blocks are never
read, warped or run.

One pass over the input band in cells of CELL x CELL pixels. Holes of sparse files are known to
GDAL without reading (GetDataCoverageStatus); every other cell is read once and marked when any of
its pixels is valid for the band's units (nodata, mask, NaN, DN 0 and power <= 0 are not). Reading
the raw band is cheap next to warping it onto the model grid and running the model, which a
mostly-empty raster (a coastal JAXA tile) would otherwise pay for everywhere.

Windows of the model grid (a warped view of the input) are mapped back to input pixels with
GDAL's transformer between the two grids, widened by the resampling kernel: the answer may be
"data" for a window without any, never "empty" for one with data.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from osgeo import gdal

from ..errors import CancelledError
from .reading import BackscatterReader
from ..sar.units import InputUnits
from .windows import Window

CELL = 64
"""Edge of a coverage cell in input pixels: 200,000 x 200,000 px need a 9.8 MB map."""
READ_CELLS = (8, 64)
"""Cells read at once (rows, columns): windows of 512 x 4096 px, a few MB whatever the raster."""
OUTLINE_STEP = 32
"""Pixels between the points of a model-grid window's outline mapped to the input grid."""


class DataCoverage:
    """Which CELL x CELL cells of the input band hold at least one valid pixel."""

    def __init__(self, input_reader: BackscatterReader, is_cancelled: Callable[[], bool] = lambda: False,
                 progress: Callable[[float], None] = lambda percent: None):
        reader = input_reader.band_reader
        self.width, self.height = reader.width, reader.height
        self.cells = np.zeros((math.ceil(self.height / CELL), math.ceil(self.width / CELL)), bool)
        # Holes of a sparse file read as the nodata value, or as 0: empty only when 0 is not valid data.
        holes_are_empty = reader.nodata is not None or input_reader.units is not InputUnits.DB
        rows, columns = READ_CELLS[0] * CELL, READ_CELLS[1] * CELL
        for y in range(0, self.height, rows):
            if is_cancelled():
                raise CancelledError()
            for x in range(0, self.width, columns):
                window = Window(x, y, min(columns, self.width - x), min(rows, self.height - y))
                if holes_are_empty and _is_hole(reader.band, window):
                    continue
                valid = input_reader.read_valid(window)
                self.cells[y // CELL:y // CELL + math.ceil(window.height / CELL),
                           x // CELL:x // CELL + math.ceil(window.width / CELL)] = _any_per_cell(valid)
            progress(100.0 * min(y + rows, self.height) / self.height)

    @property
    def share(self) -> float:
        """Share of the cells holding data."""
        return float(self.cells.mean())

    def has_data(self, window: Window) -> bool:
        """Whether any valid pixel may lie in ``window`` (input pixels; may reach past the raster)."""
        part = window.intersection(Window(0, 0, self.width, self.height))
        if part is None:
            return False
        return bool(self.cells[part.y // CELL:(part.y_end - 1) // CELL + 1,
                               part.x // CELL:(part.x_end - 1) // CELL + 1].any())


class ModelGridCoverage:
    """`DataCoverage` of the input asked with windows of a warped view of it (the model grid)."""

    def __init__(self, coverage: DataCoverage, source: gdal.Dataset, view: gdal.Dataset):
        self.coverage = coverage
        self.transformer = gdal.Transformer(source, view, [])
        # Input pixels per model pixel at the centre: the kernel of averaging (or of bilinear) reaches that far.
        x, y = view.RasterXSize / 2, view.RasterYSize / 2
        (centre, right, below), _ = self.transformer.TransformPoints(1, [(x, y), (x + 1, y), (x, y + 1)])
        ratio = max(math.dist(centre[:2], right[:2]), math.dist(centre[:2], below[:2]))
        self.margin = math.ceil(max(1.0, ratio)) + 2

    def has_data(self, window: Window) -> bool:
        points = _outline(window)
        mapped, ok = self.transformer.TransformPoints(1, points)  # model grid -> input pixels
        if not all(ok):
            return True  # cannot say: read it
        xs = [point[0] for point in mapped]
        ys = [point[1] for point in mapped]
        x0, y0 = math.floor(min(xs)) - self.margin, math.floor(min(ys)) - self.margin
        x1, y1 = math.ceil(max(xs)) + self.margin, math.ceil(max(ys)) + self.margin
        return self.coverage.has_data(Window(x0, y0, x1 - x0, y1 - y0))


def _is_hole(band: gdal.Band, window: Window) -> bool:
    """Whether GDAL knows without reading that ``window`` is a hole of a sparse file."""
    flags, _ = band.GetDataCoverageStatus(window.x, window.y, window.width, window.height)
    return flags == gdal.GDAL_DATA_COVERAGE_STATUS_EMPTY


def _any_per_cell(valid: np.ndarray) -> np.ndarray:
    """(rows / CELL, columns / CELL), rounded up: whether each cell of ``valid`` holds a True."""
    height, width = valid.shape
    padded = np.zeros((math.ceil(height / CELL) * CELL, math.ceil(width / CELL) * CELL), bool)
    padded[:height, :width] = valid
    return padded.reshape(padded.shape[0] // CELL, CELL, padded.shape[1] // CELL, CELL).any(axis=(1, 3))


def _outline(window: Window) -> list[tuple[float, float]]:
    """Points along the edges of ``window`` (pixel corners), at most OUTLINE_STEP apart."""
    xs = np.linspace(window.x, window.x_end, max(2, math.ceil(window.width / OUTLINE_STEP) + 1))
    ys = np.linspace(window.y, window.y_end, max(2, math.ceil(window.height / OUTLINE_STEP) + 1))
    return ([(x, window.y) for x in xs] + [(x, window.y_end) for x in xs]
            + [(window.x, y) for y in ys] + [(window.x_end, y) for y in ys])

"""The raster writer: `OutputRaster` writes one band as a hidden GeoTIFF and hands it, converted to the
target's format, to the output transaction (`transaction.PendingFiles`); `all_or_none` commits a run's rasters
together or none of them.

Output checks live in output_checks.py, room on disk in disk_space.py, the transaction in transaction.py.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from typing import Callable

import numpy as np
from osgeo import gdal

from .disk_space import write_error
from ..errors import OutputError
from .output_checks import OUTPUT_FORMATS, output_driver
from .resample import DEFAULT_CREATION_OPTIONS, warp_back_to_input_grid
from .transaction import GDAL_COMPANIONS, PendingFiles, hidden_path
from .windows import Window


def raster_bytes(path, pixels: int, data_type: int) -> int:
    """An upper bound of the disk space a raster output needs while it is written: its uncompressed
    size, twice for formats converted from a GeoTIFF when committed."""
    size = pixels * gdal.GetDataTypeSize(data_type) // 8
    converted = OUTPUT_FORMATS.get(pathlib.Path(path).suffix.lower(), ("GTiff",))[0] != "GTiff"
    return size * (2 if converted else 1)


def _creation_options(data_type: int) -> list[str]:
    options = list(DEFAULT_CREATION_OPTIONS)
    if data_type in (gdal.GDT_Float32, gdal.GDT_Float64):
        options.append("PREDICTOR=3")
    return options


class OutputRaster:
    """One single-band raster on the grid of ``like`` (the input, or the model grid when the input
    is read resampled), written as a hidden GeoTIFF; `finish` converts it to the target's format."""

    def __init__(self, final_path, like: gdal.Dataset, data_type: int, nodata: float, description: str):
        self._start(final_path, like.RasterXSize * like.RasterYSize, data_type)
        try:
            self.dataset = gdal.GetDriverByName("GTiff").Create(
                str(self.temp_path), like.RasterXSize, like.RasterYSize, 1, data_type,
                _creation_options(data_type))
        except RuntimeError as error:
            self.temp_path.unlink(missing_ok=True)
            raise write_error(self.final_path, error, self.size) from error
        self.dataset.SetGeoTransform(like.GetGeoTransform())
        self.dataset.SetSpatialRef(like.GetSpatialRef())
        self.band = self.dataset.GetRasterBand(1)
        self.band.SetNoDataValue(nodata)
        self.band.SetDescription(description)

    def _start(self, final_path, pixels: int, data_type: int) -> None:
        self.final_path = pathlib.Path(final_path)
        self.driver = output_driver(self.final_path, data_type)
        self.size = raster_bytes(self.final_path, pixels, data_type)
        self.temp_path = hidden_path(self.final_path, "partial").with_suffix(".partial.tif")
        self.dataset = self.band = None

    @classmethod
    def warped(cls, source_path, final_path, like: gdal.Dataset, resampling: str, progress=None,
               is_cancelled=None) -> "OutputRaster":
        """The finished single-band raster ``source_path`` warped onto ``like``'s exact grid (GDAL's
        warper, streamed; nodata and description kept), open for update under a hidden name.
        The legend, kept in a sidecar, must be set again."""
        output = cls.__new__(cls)
        source = gdal.Open(str(source_path))  # kept open: a band outliving its dataset crashes GDAL
        data_type = source.GetRasterBand(1).DataType
        source = None
        output._start(final_path, like.RasterXSize * like.RasterYSize, data_type)
        try:
            warp_back_to_input_grid(source_path, like, output.temp_path, resampling,
                                    creation_options=_creation_options(data_type), progress=progress,
                                    is_cancelled=is_cancelled)
            output.dataset = gdal.Open(str(output.temp_path), gdal.GA_Update)
        except OutputError as error:
            output.discard()
            raise write_error(output.final_path, error, output.size) from error
        except BaseException:
            output.discard()
            raise
        output.band = output.dataset.GetRasterBand(1)
        return output

    def set_legend(self, entries: list[tuple[int, str, str]]) -> None:
        """Store (value, name, "#rrggbb") as a colour table, category names and an attribute table,
        so QGIS, GDAL and other GIS tools show the legend."""
        table = gdal.ColorTable()
        names = [""] * (max(value for value, _, _ in entries) + 1)
        rat = gdal.RasterAttributeTable()
        rat.SetTableType(gdal.GRTT_THEMATIC)
        for column, usage, kind in (("Value", gdal.GFU_MinMax, gdal.GFT_Integer),
                                    ("Class", gdal.GFU_Name, gdal.GFT_String),
                                    ("Red", gdal.GFU_Red, gdal.GFT_Integer),
                                    ("Green", gdal.GFU_Green, gdal.GFT_Integer),
                                    ("Blue", gdal.GFU_Blue, gdal.GFT_Integer)):
            rat.CreateColumn(column, kind, usage)
        for row, (value, name, color) in enumerate(entries):
            rgb = tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
            table.SetColorEntry(value, rgb + (255,))
            names[value] = name
            rat.SetValueAsInt(row, 0, value)
            rat.SetValueAsString(row, 1, name)
            for column, channel in enumerate(rgb, start=2):
                rat.SetValueAsInt(row, column, channel)
        self.band.SetColorTable(table)
        self.band.SetCategoryNames(names)
        self.band.SetDefaultRAT(rat)

    def write(self, array: np.ndarray, window: Window) -> None:
        try:
            self.band.WriteArray(array, window.x, window.y)
        except RuntimeError as error:
            raise write_error(self.final_path, error, self.size) from error

    def read(self, window: Window) -> np.ndarray:
        return self.band.ReadAsArray(window.x, window.y, window.width, window.height)

    def fill(self, value: float, window: Window) -> None:
        """Write ``value`` over ``window`` (nodata over a part without input data)."""
        dtype = np.uint8 if self.band.DataType == gdal.GDT_Byte else np.float32
        self.write(np.full((window.height, window.width), value, dtype), window)

    def close(self) -> None:
        if self.dataset is not None:
            self.band = None
            dataset, self.dataset = self.dataset, None
            try:
                dataset.FlushCache()
            except RuntimeError as error:
                raise write_error(self.final_path, error, self.size) from error
            finally:
                dataset = None

    def finish(self, pending: PendingFiles) -> pathlib.Path:
        """Close, convert to the target's format, and hand the file to ``pending``; returns its hidden path."""
        self.close()
        hidden = pending.new(self.final_path)
        try:
            if self.driver == "GTiff":
                for suffix in ("",) + GDAL_COMPANIONS:
                    if os.path.lexists(str(self.temp_path) + suffix):
                        os.replace(str(self.temp_path) + suffix, str(hidden) + suffix)
            else:
                gdal.Translate(str(hidden), str(self.temp_path), format=self.driver)
        except (RuntimeError, OSError) as error:
            raise write_error(self.final_path, error, self.size) from error
        finally:
            self.discard()
        self.temp_path = hidden
        return hidden

    def discard(self) -> None:
        """Close and delete the hidden GeoTIFF and what GDAL wrote beside it."""
        try:
            self.close()
        except OutputError:
            pass
        finally:
            for suffix in ("",) + GDAL_COMPANIONS:
                pathlib.Path(str(self.temp_path) + suffix).unlink(missing_ok=True)


@contextlib.contextmanager
def discarded_on_error(outputs: list[OutputRaster]):
    """Around the writing of ``outputs`` (the list may grow inside the block): when anything raises, cancel
    included, close and delete every one of them, so no partial file is left."""
    try:
        yield outputs
    except BaseException:
        for output in outputs:
            output.discard()
        raise


def hand_over(outputs: list[OutputRaster], pending: PendingFiles,
              before_commit: Callable[[PendingFiles, list[pathlib.Path]], None] | None = None) -> None:
    """Finish every output into the transaction ``pending``, with the files ``before_commit(pending, finished
    rasters)`` adds (style files); they are committed when ``pending`` is."""
    with discarded_on_error(outputs):
        rasters = [output.finish(pending) for output in outputs]
        if before_commit is not None:
            before_commit(pending, rasters)


@contextlib.contextmanager
def all_or_none(outputs: list[OutputRaster],
                before_commit: Callable[[PendingFiles, list[pathlib.Path]], None] | None = None):
    """Commit every output (the list may grow inside the block) when the block succeeds, in one step
    with the files ``before_commit(pending, finished rasters)`` adds (style files); when anything
    raises, cancel included, remove every hidden file, so no partial file is left and no previous
    file is touched."""
    with discarded_on_error(outputs):
        yield outputs
    with PendingFiles() as pending:
        hand_over(outputs, pending, before_commit)

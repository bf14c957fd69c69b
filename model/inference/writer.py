"""GeoTIFF outputs written block by block under a temporary name, renamed into place on success."""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid

import numpy as np
from osgeo import gdal

from .errors import OutputError
from .resample import DEFAULT_CREATION_OPTIONS, warp_back_to_input_grid
from .windows import Window

gdal.UseExceptions()

_SIDECAR = ".aux.xml"  # GDAL keeps category names and the attribute table there for GeoTIFFs


def check_output_path(path, input_path, label: str = "output") -> pathlib.Path:
    """Refuse an output that would overwrite the input or that cannot be created; before any work."""
    if not path:
        raise OutputError(f"No {label} file was given. Choose where to save the {label} GeoTIFF.")
    path = pathlib.Path(path).expanduser().absolute()
    source = pathlib.Path(input_path).expanduser().absolute()
    if path == source or (path.exists() and source.exists() and os.path.samefile(path, source)):
        raise OutputError(f"The {label} file '{path}' is the input raster. Choose another file name, "
                          f"so the input is not overwritten.")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"The folder '{folder}' for the {label} file does not exist. Create it or choose another.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"The folder '{folder}' for the {label} file is not writable. "
                          f"Choose a folder you can write to.")
    if path.is_dir():
        raise OutputError(f"The {label} path '{path}' is a folder. Give a file name such as result.tif.")
    return path


def _creation_options(data_type: int) -> list[str]:
    options = list(DEFAULT_CREATION_OPTIONS)
    if data_type in (gdal.GDT_Float32, gdal.GDT_Float64):
        options.append("PREDICTOR=3")
    return options


class OutputRaster:
    """One single-band GeoTIFF on the grid of ``like`` (the input, or the model grid when the input
    is read resampled), written under a temporary name until committed."""

    def __init__(self, final_path: pathlib.Path, like: gdal.Dataset, data_type: int, nodata: float,
                 description: str):
        self._start(final_path)
        try:
            self.dataset = gdal.GetDriverByName("GTiff").Create(
                str(self.temp_path), like.RasterXSize, like.RasterYSize, 1, data_type,
                _creation_options(data_type))
        except RuntimeError as error:
            self.temp_path.unlink(missing_ok=True)
            raise OutputError(f"Could not create '{self.final_path}' ({error}). "
                              f"Check the free disk space and the folder permissions.") from error
        self.dataset.SetGeoTransform(like.GetGeoTransform())
        self.dataset.SetSpatialRef(like.GetSpatialRef())
        self.band = self.dataset.GetRasterBand(1)
        self.band.SetNoDataValue(nodata)
        self.band.SetDescription(description)

    def _start(self, final_path) -> None:
        self.final_path = pathlib.Path(final_path)
        # A hidden, unique name beside the final file, so the rename stays on one file system.
        self.temp_path = self.final_path.with_name(f".{self.final_path.stem}.{uuid.uuid4().hex[:8]}.partial.tif")
        self.dataset = self.band = None

    @classmethod
    def warped(cls, source_path, final_path, like: gdal.Dataset, resampling: str, progress=None,
               is_cancelled=None) -> "OutputRaster":
        """The finished single-band raster ``source_path`` warped onto ``like``'s exact grid (GDAL's
        warper, streamed; nodata and description kept), open for update under a temporary name.
        The legend, kept in a sidecar, must be set again."""
        output = cls.__new__(cls)
        output._start(final_path)
        try:
            source = gdal.Open(str(source_path))
            data_type = source.GetRasterBand(1).DataType
            source = None
            warp_back_to_input_grid(source_path, like, output.temp_path, resampling,
                                    creation_options=_creation_options(data_type), progress=progress,
                                    is_cancelled=is_cancelled)
            output.dataset = gdal.Open(str(output.temp_path), gdal.GA_Update)
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
        self.band.WriteArray(array, window.x, window.y)

    def read(self, window: Window) -> np.ndarray:
        return self.band.ReadAsArray(window.x, window.y, window.width, window.height)

    def close(self) -> None:
        if self.dataset is not None:
            self.band = None
            self.dataset.FlushCache()
            self.dataset = None

    def commit(self) -> None:
        """Close and move into place (with the legend sidecar, replacing any stale one)."""
        self.close()
        final_sidecar = pathlib.Path(str(self.final_path) + _SIDECAR)
        temp_sidecar = pathlib.Path(str(self.temp_path) + _SIDECAR)
        final_sidecar.unlink(missing_ok=True)
        os.replace(self.temp_path, self.final_path)
        if temp_sidecar.exists():
            os.replace(temp_sidecar, final_sidecar)

    def discard(self) -> None:
        """Close and delete everything this output wrote."""
        try:
            self.close()
        finally:
            for path in (self.temp_path, pathlib.Path(str(self.temp_path) + _SIDECAR)):
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def all_or_none(outputs: list[OutputRaster]):
    """Commit every output (the list may grow inside the block) when the block succeeds; discard
    them all when it raises, cancel included, so no partial file is left posing as a result."""
    try:
        yield outputs
        for output in outputs:
            output.commit()
    except BaseException:
        for output in outputs:
            output.discard()
        raise

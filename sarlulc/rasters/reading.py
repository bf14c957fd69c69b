"""Reading input windows from any GDAL dataset: opening a raster, one band's pixels and validity, and the
backscatter in dB a model run reads (units converted, speckle filtered)."""

from __future__ import annotations

import contextlib
import os
import pathlib

import numpy as np
from osgeo import gdal

from ..errors import InputRasterError
from ..sar.units import (ALOS2_CALIBRATION_FACTOR_DB, InputUnits, apply_scaling, band_scaling, check_backscatter_band,
                         sample_valid_values, to_db, valid_mask)
from ..sar.speckle import SpeckleFilter, filter_halo, speckle_filter_db
from .windows import Window


def open_raster(path, role: str = "input raster") -> gdal.Dataset:
    """Open ``path`` read-only (nothing is written beside it), or explain why it cannot be read
    (missing, a folder, not a raster, damaged). The first and last blocks are read at once, so a
    truncated file is refused before any work."""
    try:
        dataset = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as error:
        local = pathlib.Path(str(path))
        if local.is_dir():
            problem = "is a folder; choose the raster file itself"
        elif not local.exists() and not str(path).startswith("/vsi") and ":" not in str(path)[2:]:
            problem = "does not exist; check the path"
        else:
            problem = (f"could not be opened: it is not a raster GDAL can read ({error}). Choose a raster file such "
                       f"as a GeoTIFF; a damaged or truncated file must be copied or downloaded again")
        raise InputRasterError(f"The {role} '{path}' {problem}.") from error
    if dataset is None:
        raise InputRasterError(f"The {role} '{path}' could not be opened. Check the path and the format.")
    try:
        with reading(path, role):
            for x, y in ((0, 0), (dataset.RasterXSize - 1, dataset.RasterYSize - 1)):
                dataset.ReadRaster(x, y, 1, 1)
    except RuntimeError as error:  # not the file itself (GDAL names it): a file it refers to, e.g. a VRT's source
        raise InputRasterError(f"The {role} '{path}' cannot be read: a file it is made of fails ({error}). Check "
                               f"the files it refers to (a VRT's sources), or use the raster they come from.") from error
    return dataset


@contextlib.contextmanager
def reading(path, role: str = "input raster"):
    """Tell a GDAL error reading ``path`` (its name is in GDAL's message, also when it is read through
    a warped view), raised anywhere in the block, as what it is: a truncated or corrupt file."""
    try:
        yield
    except RuntimeError as error:
        if os.fspath(path) not in str(error):
            raise
        raise InputRasterError(
            f"The {role} '{path}' is truncated or corrupt: part of it cannot be read ({error}). Copy or "
            f"download the file again, or re-export it.") from error


def check_georeferenced(dataset: gdal.Dataset, source_name: str) -> None:
    """Refuse a raster that cannot be placed on a map: not geocoded (only GCPs or RPCs, as slant-range
    and L1.1 products), no geotransform, no CRS, or a local engineering CRS."""
    has_transform = dataset.GetGeoTransform(can_return_null=True) is not None
    if not has_transform:
        gcps = dataset.GetGCPCount()
        located_by = (f"{gcps} ground control points (GCPs)" if gcps else
                      "rational polynomial coefficients (RPCs)" if dataset.GetMetadata("RPC") else None)
        raise InputRasterError(
            f"The input raster '{source_name}' is not georeferenced: it has "
            + (f"only {located_by} and no geotransform, as SAR products in radar geometry (slant or ground "
               f"range) have. Terrain-correct it first (e.g. SNAP: Range Doppler Terrain Correction, or "
               f"gdalwarp with its GCPs/RPCs and a DEM) and run on the result."
               if located_by else
               "no geotransform (pixel positions on the ground). Georeference it first (QGIS: Raster > "
               "Georeferencer) or use the terrain-corrected product."))
    srs = dataset.GetSpatialRef()
    if srs is None:
        raise InputRasterError(
            f"The input raster '{source_name}' has no coordinate reference system, so the outputs could not "
            f"be placed on a map. Assign one first (QGIS: Raster > Projections > Assign Projection; "
            f"or gdal_edit.py -a_srs EPSG:XXXX).")
    if srs.IsLocal():
        raise InputRasterError(
            f"The input raster '{source_name}' has a local coordinate system ('{srs.GetName()}', LOCAL_CS), "
            f"not a map CRS, so its pixels cannot be placed on the ground or measured. Assign the CRS it was "
            f"really made in (QGIS: Raster > Projections > Assign Projection), or terrain-correct it.")


class BandReader:
    """Reads windows of one band with its validity mask (nodata, mask band, NaN) from a gdal.Dataset.

    Any dataset works, including a warped VRT, so resampling can be slotted in front of it.
    """

    def __init__(self, dataset: gdal.Dataset, band_index: int, source_name: str, require_crs: bool = True):
        count = dataset.RasterCount
        if not 1 <= band_index <= count:
            raise InputRasterError(
                f"Band {band_index} does not exist: '{source_name}' has {count} band{'s' if count != 1 else ''}. "
                f"Choose a band between 1 and {count}.")
        if require_crs:  # off for training data read in place on a nominal grid
            check_georeferenced(dataset, source_name)
        check_backscatter_band(dataset, band_index, source_name)
        self.dataset = dataset
        self.band_index = band_index
        self.band = dataset.GetRasterBand(band_index)
        self.width, self.height = dataset.RasterXSize, dataset.RasterYSize
        self.nodata = self.band.GetNoDataValue()
        self.scaling = band_scaling(self.band)
        self._mask_all_valid = bool(self.band.GetMaskFlags() & gdal.GMF_ALL_VALID)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(values float32, valid bool) for ``window``, the band's GDAL scale/offset applied;
        invalid = nodata, masked out, or not finite."""
        args = (window.x, window.y, window.width, window.height)
        values = self.band.ReadAsArray(*args)
        if not self._mask_all_valid:
            valid = self.band.GetMaskBand().ReadAsArray(*args) != 0
        else:
            valid = np.ones(values.shape, bool)
        values = apply_scaling(values, self.scaling).astype(np.float32, copy=False)
        valid &= np.isfinite(values)
        return values, valid


class BackscatterReader:
    """Windows of sigma0 dB: units converted, unit-specific invalid pixels (DN 0, power <= 0) masked,
    and optionally speckle filtered.

    The filter reads ``halo`` extra pixels around each window (clipped to the raster, whose outside
    counts as invalid, as for the whole raster), so a pixel's value does not depend on the window
    it is read in, hence not on the tiling or block size.
    """

    def __init__(self, band_reader: BandReader, units: InputUnits,
                 calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB,
                 speckle_filter: SpeckleFilter = SpeckleFilter.NONE, filter_size: int = 7,
                 sample: np.ndarray | None = None):
        self.band_reader = band_reader
        self.units = InputUnits(units)
        self.calibration_factor = calibration_factor
        self.speckle_filter = SpeckleFilter(speckle_filter)
        self.filter_size = filter_size
        self.halo = filter_halo(self.speckle_filter, filter_size)
        self.raster = Window(0, 0, band_reader.width, band_reader.height)
        self.offset_db = 0.0  # added to every dB value: the anchoring of a relative input (`anchor_relative`)
        self._sample = sample  # raw values of `sample_valid_values` over the band: read once, here or by the caller

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(sigma0 dB float32, valid bool) for ``window``; invalid pixels hold finite garbage."""
        halo = self.halo
        outer = Window(window.x - halo, window.y - halo, window.width + 2 * halo,
                       window.height + 2 * halo).intersection(self.raster)
        raw, valid = self.band_reader.read(outer)
        valid &= valid_mask(raw, None, self.units)
        db = to_db(raw, self.units, self.calibration_factor)
        del raw
        if self.offset_db:
            db += np.float32(self.offset_db)
        if halo:
            db = speckle_filter_db(db, valid, self.speckle_filter, self.filter_size)
        inner = window.slices_in(outer)
        return db[inner], valid[inner]

    def sample_db(self) -> np.ndarray:
        """sigma0 dB of a bounded sample of valid pixels spread over the whole raster (unfiltered)."""
        if self._sample is None:
            reader = self.band_reader
            self._sample = sample_valid_values(reader.dataset, reader.band_index, reader.nodata)
        raw = self._sample[valid_mask(self._sample, None, self.units)]
        return to_db(raw, self.units, self.calibration_factor) + np.float32(self.offset_db)

    def read_valid(self, window: Window) -> np.ndarray:
        """Only the validity of ``window`` (nodata, mask, DN 0 or power <= 0), without filtering."""
        raw, valid = self.band_reader.read(window)
        return valid & valid_mask(raw, None, self.units)

"""Reading input windows from any GDAL dataset, and turning raw pixels into model input."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from .errors import InputRasterError
from .metadata import NORM_SCENE, ModelContract
from .sar_input import (ALOS2_CALIBRATION_FACTOR_DB, InputUnits, SpeckleFilter, apply_scaling, band_scaling,
                        check_backscatter_band, filter_halo, sample_valid_values, speckle_filter_db, to_db,
                        valid_mask)
from .windows import Window

gdal.UseExceptions()


def open_raster(path) -> gdal.Dataset:
    """Open ``path`` read-only, or explain why it cannot be read (missing, a folder, not a raster)."""
    try:
        dataset = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as error:
        local = pathlib.Path(str(path))
        if local.is_dir():
            problem = "is a folder; choose the raster file itself"
        elif not local.exists() and not str(path).startswith("/vsi") and ":" not in str(path)[2:]:
            problem = "does not exist; check the path"
        else:
            problem = (f"is not a raster GDAL can read ({error}); choose a raster file such as a GeoTIFF, and "
                       f"check that it was copied or downloaded completely")
        raise InputRasterError(f"The input raster '{path}' {problem}.") from error
    if dataset is None:
        raise InputRasterError(f"The input raster '{path}' could not be opened. Check the path and the format.")
    return dataset


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
        if require_crs and dataset.GetSpatialRef() is None:
            raise InputRasterError(
                f"The input raster '{source_name}' has no coordinate reference system, so the outputs could not "
                f"be placed on a map. Assign one first (QGIS: Raster > Projections > Assign Projection; "
                f"or gdal_edit.py -a_srs EPSG:XXXX).")
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
                 speckle_filter: SpeckleFilter = SpeckleFilter.NONE, filter_size: int = 7):
        self.band_reader = band_reader
        self.units = InputUnits(units)
        self.calibration_factor = calibration_factor
        self.speckle_filter = SpeckleFilter(speckle_filter)
        self.filter_size = filter_size
        self.halo = filter_halo(self.speckle_filter, filter_size)
        self.raster = Window(0, 0, band_reader.width, band_reader.height)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(sigma0 dB float32, valid bool) for ``window``; invalid pixels hold finite garbage."""
        halo = self.halo
        outer = Window(window.x - halo, window.y - halo, window.width + 2 * halo,
                       window.height + 2 * halo).intersection(self.raster)
        raw, valid = self.band_reader.read(outer)
        valid &= valid_mask(raw, None, self.units)
        db = to_db(raw, self.units, self.calibration_factor)
        del raw
        if halo:
            db = speckle_filter_db(db, valid, self.speckle_filter, self.filter_size)
        inner = window.slices_in(outer)
        return db[inner], valid[inner]

    def sample_db(self) -> np.ndarray:
        """sigma0 dB of a bounded sample of valid pixels spread over the whole raster (unfiltered)."""
        reader = self.band_reader
        raw = sample_valid_values(reader.dataset, reader.band_index, reader.nodata)
        raw = raw[valid_mask(raw, None, self.units)]
        return to_db(raw, self.units, self.calibration_factor)

    def read_valid(self, window: Window) -> np.ndarray:
        """Only the validity of ``window`` (nodata, mask, DN 0 or power <= 0), without filtering."""
        raw, valid = self.band_reader.read(window)
        return valid & valid_mask(raw, None, self.units)


@dataclass(frozen=True)
class SceneStatistics:
    """The whole scene's median backscatter, for models normalised per scene (``norm_mode`` = scene):
    removing it makes the model blind to the absolute calibration (a wrong CF, an airborne or
    third-party product several dB off) while keeping contrasts in dB."""

    median: float
    pixels: int

    @classmethod
    def of(cls, values: np.ndarray) -> "SceneStatistics":
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise InputRasterError("No valid pixel to compute the scene statistics from; check the band and its "
                                   "nodata value.")
        return cls(float(np.median(values)), int(values.size))


def prepare_input(db: np.ndarray, valid: np.ndarray, contract: ModelContract,
                  scene: SceneStatistics | None = None) -> np.ndarray:
    """Model input from sigma0 dB (the contract's units): clip, standardise, then zero the invalid pixels.

    The one place input values are normalised; `BackscatterReader` converts other input units
    to dB just before this. Models with ``norm_mode`` = scene first have the scene's median removed
    (``scene``, computed once per raster, so the result does not depend on the tiling); the clip
    and standardisation then apply to those values.
    """
    low, high = contract.norm_clip
    x = np.asarray(db, dtype=np.float32)
    if contract.norm_mode == NORM_SCENE:
        if scene is None:
            raise ValueError("a scene-normalised model needs the scene statistics")
        x = x - np.float32(scene.median)
    # Invalid pixels are masked before normalising so nodata values (e.g. -9999, NaN) never leak in.
    x = np.where(valid, x, contract.norm_mean).astype(np.float32, copy=False)
    np.clip(x, low, high, out=x)
    x -= np.float32(contract.norm_mean)
    x /= np.float32(contract.norm_std)
    x[~valid] = 0.0
    return x

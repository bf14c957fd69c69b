"""Reading input windows from any GDAL dataset, and turning raw pixels into model input."""

from __future__ import annotations

import numpy as np
from osgeo import gdal

from .errors import InputRasterError
from .metadata import ModelContract
from .windows import Window

gdal.UseExceptions()


def open_raster(path) -> gdal.Dataset:
    """Open ``path`` read-only, or explain why it cannot be read."""
    try:
        dataset = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as error:
        raise InputRasterError(
            f"The input raster '{path}' could not be opened ({error}). "
            f"Check that the file exists and is a raster GDAL can read, such as a GeoTIFF.") from error
    if dataset is None:
        raise InputRasterError(f"The input raster '{path}' could not be opened. Check the path and the format.")
    return dataset


class BandReader:
    """Reads windows of one band with its validity mask (nodata, mask band, NaN) from a gdal.Dataset.

    Any dataset works, including a warped VRT, so resampling can be slotted in front of it.
    """

    def __init__(self, dataset: gdal.Dataset, band_index: int, source_name: str):
        count = dataset.RasterCount
        if not 1 <= band_index <= count:
            raise InputRasterError(
                f"Band {band_index} does not exist: '{source_name}' has {count} band{'s' if count != 1 else ''}. "
                f"Choose a band between 1 and {count}.")
        if dataset.GetSpatialRef() is None:
            raise InputRasterError(
                f"The input raster '{source_name}' has no coordinate reference system, so the outputs could not "
                f"be placed on a map. Assign one first (QGIS: Raster > Projections > Assign Projection; "
                f"or gdal_edit.py -a_srs EPSG:XXXX).")
        self.dataset = dataset
        self.band = dataset.GetRasterBand(band_index)
        self.width, self.height = dataset.RasterXSize, dataset.RasterYSize
        self.nodata = self.band.GetNoDataValue()
        self._mask_all_valid = bool(self.band.GetMaskFlags() & gdal.GMF_ALL_VALID)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(values float32, valid bool) for ``window``; invalid = nodata, masked out, or not finite."""
        args = (window.x, window.y, window.width, window.height)
        values = self.band.ReadAsArray(*args).astype(np.float32, copy=False)
        valid = np.isfinite(values)
        if not self._mask_all_valid:
            valid &= self.band.GetMaskBand().ReadAsArray(*args) != 0
        return values, valid


def prepare_input(raw: np.ndarray, valid_mask: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Model input from raw band values: clip, standardise, then zero the invalid pixels.

    The one place input values are transformed; converting other input units to the contract's
    must happen just before this.
    """
    low, high = contract.norm_clip
    # Invalid pixels are masked before normalising so nodata values (e.g. -9999, NaN) never leak in.
    x = np.where(valid_mask, raw, contract.norm_mean).astype(np.float32, copy=False)
    np.clip(x, low, high, out=x)
    x -= np.float32(contract.norm_mean)
    x /= np.float32(contract.norm_std)
    x[~valid_mask] = 0.0
    return x

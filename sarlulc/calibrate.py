"""ALOS-2/PALSAR-2 amplitude DN to calibrated sigma0, window by window.

sigma0 [dB] = 10*log10(DN^2) + CF, CF = -83.0 dB (JAXA's PALSAR-2 calibration factor);
linear sigma0 = 10^(sigma0_dB / 10). DN 0 and the band's nodata become -9999 in the output:
a float nodata that QGIS and most tools handle (NaN is awkward in QGIS) and that no sigma0
can take (dB values are > -100, linear ones >= 0).
"""

from __future__ import annotations

import os

import numpy as np
from osgeo import gdal

from .errors import CancelledError, InputRasterError
from .rasters.reading import open_raster, reading
from .sar.decibels import db_to_power
from .sar.units import (ALOS2_CALIBRATION_FACTOR_DB, InputUnits, band_scaling, check_backscatter_band,
                        check_calibration_factor, to_db, valid_mask)
from .rasters.windows import Window
from .rasters.disk_space import check_free_space
from .rasters.output_checks import check_outputs
from .rasters.writer import OutputRaster, all_or_none, raster_bytes


OUTPUT_NODATA = -9999.0
OUTPUT_UNITS = ("db", "linear")
_WINDOW = 1024  # pixels per side read and written at a time (4 output tiles)
_DN_TYPES = (gdal.GDT_UInt16, gdal.GDT_UInt32)
_INTEGER_TYPES = (gdal.GDT_Byte, gdal.GDT_Int16, gdal.GDT_Int32) + _DN_TYPES


def _open_dn_raster(input_path, band: int) -> gdal.Dataset:
    """The input, once its ``band`` is known to hold unsigned 16/32-bit DN without a GDAL scale."""
    dataset = open_raster(input_path)
    if not 1 <= band <= dataset.RasterCount:
        raise InputRasterError(f"Band {band} does not exist: '{input_path}' has {dataset.RasterCount} band(s).")
    check_backscatter_band(dataset, band, str(input_path))
    source = dataset.GetRasterBand(band)
    type_name = gdal.GetDataTypeName(source.DataType)
    if source.DataType not in _INTEGER_TYPES:
        raise InputRasterError(
            f"Band {band} holds {type_name} values, but ALOS-2 DN are integers "
            "(UInt16): the raster looks calibrated already; use it directly and set INPUT_UNITS to dB or "
            "linear power.")
    if source.DataType not in _DN_TYPES:
        kind = "8-bit" if source.DataType == gdal.GDT_Byte else "signed integer"
        raise InputRasterError(
            f"Band {band} holds {kind} values ({type_name}), but ALOS-2 DN are unsigned 16-bit amplitudes "
            f"(UInt16): this is not an ALOS-2 DN product (signed integers are often scaled dB; 8-bit values a "
            f"stretched picture). Calibrate only JAXA DN rasters.")
    scaling = band_scaling(source)
    if scaling is not None:
        scale, offset = scaling
        raise InputRasterError(
            f"Band {band} has a GDAL scale/offset (value = stored x {scale:g} + {offset:g}), so it holds scaled "
            f"physical values, not raw ALOS-2 DN. Use it directly with SAR LULC Segment or Water Detect.")
    return dataset


def calibrate_dn(input_path, output_path, band: int = 1, units: str = "db",
                 calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB, progress=None, is_cancelled=None) -> str:
    """Write sigma0 (dB or linear) of an ALOS-2 DN band as a float32 GeoTIFF on the same grid.

    The input is only read; the output is written under a hidden name in its folder and
    renamed into place on success, removed on error or cancel (the engine's OutputRaster).
    """
    if units not in OUTPUT_UNITS:
        raise ValueError(f"units must be one of {OUTPUT_UNITS}, not {units!r}")
    check_calibration_factor(calibration_factor)
    dataset = _open_dn_raster(input_path, band)
    source = dataset.GetRasterBand(band)
    output_path = check_outputs({"output": output_path}, {"input raster": input_path},
                                {"output": gdal.GDT_Float32})["output"]
    nodata = source.GetNoDataValue()
    width, height = dataset.RasterXSize, dataset.RasterYSize
    check_free_space([(output_path, raster_bytes(output_path, width * height, gdal.GDT_Float32))])
    output = OutputRaster(output_path, dataset, gdal.GDT_Float32, OUTPUT_NODATA,
                          "Sigma0_HH_db" if units == "db" else "Sigma0_HH")
    output.band.SetUnitType("dB" if units == "db" else "linear power")
    windows = [Window(x, y, min(_WINDOW, width - x), min(_WINDOW, height - y))
               for y in range(0, height, _WINDOW) for x in range(0, width, _WINDOW)]
    with all_or_none([output]):
        for done, window in enumerate(windows, start=1):
            if is_cancelled is not None and is_cancelled():
                raise CancelledError("Calibration cancelled; the partial output was removed.")
            with reading(input_path):
                dn = source.ReadAsArray(window.x, window.y, window.width, window.height)
            valid = valid_mask(dn, nodata, InputUnits.DN)
            sigma0 = to_db(dn, InputUnits.DN, calibration_factor)
            if units == "linear":
                sigma0 = db_to_power(sigma0)
            output.write(np.where(valid, sigma0, OUTPUT_NODATA).astype(np.float32), window)
            if progress is not None:
                progress(100.0 * done / len(windows))
    return os.fspath(output_path)

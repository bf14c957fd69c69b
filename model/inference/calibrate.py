"""ALOS-2/PALSAR-2 amplitude DN to calibrated sigma0, window by window.

sigma0 [dB] = 10*log10(DN^2) + CF, CF = -83.0 dB (JAXA's PALSAR-2 calibration factor);
linear sigma0 = 10^(sigma0_dB / 10). DN 0 and the band's nodata become -9999 in the output:
a float nodata that QGIS and most tools handle (NaN is awkward in QGIS) and that no sigma0
can take (dB values are > -100, linear ones >= 0).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from osgeo import gdal

from .errors import CancelledError, InputRasterError, OutputError
from .sar_input import ALOS2_CALIBRATION_FACTOR_DB, InputUnits, db_to_power, to_db, valid_mask

gdal.UseExceptions()

OUTPUT_NODATA = -9999.0
OUTPUT_UNITS = ("db", "linear")
CREATION_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE", "PREDICTOR=3",
                    "BIGTIFF=IF_SAFER"]
_WINDOW = 1024  # pixels per side read and written at a time (4 output tiles)


def _open_input(input_path, band: int) -> gdal.Dataset:
    try:
        dataset = gdal.Open(os.fspath(input_path))
    except RuntimeError as error:
        raise InputRasterError(f"Cannot open the input raster '{input_path}': {error}") from error
    if not 1 <= band <= dataset.RasterCount:
        raise InputRasterError(f"Band {band} does not exist: '{input_path}' has {dataset.RasterCount} band(s).")
    data_type = dataset.GetRasterBand(band).DataType
    if data_type not in (gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32):
        raise InputRasterError(
            f"Band {band} holds {gdal.GetDataTypeName(data_type)} values, but ALOS-2 DN are integers (UInt16): "
            "the raster looks calibrated already; use it directly and set INPUT_UNITS to dB or linear power.")
    return dataset


def _check_output(input_path, output_path) -> None:
    output = os.path.abspath(os.fspath(output_path))
    if os.path.exists(output) and os.path.samefile(output, os.fspath(input_path)):
        raise OutputError("The output path is the input raster; choose another output file.")
    folder = os.path.dirname(output)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise OutputError(f"Cannot write to the folder '{folder}': it does not exist or is read-only.")


def calibrate_dn(input_path, output_path, band: int = 1, units: str = "db",
                 calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB, progress=None, is_cancelled=None) -> str:
    """Write sigma0 (dB or linear) of an ALOS-2 DN band as a float32 GeoTIFF on the same grid.

    The input is only read; the output is written under a temporary name in its folder and
    renamed into place on success, removed on error or cancel.
    """
    if units not in OUTPUT_UNITS:
        raise ValueError(f"units must be one of {OUTPUT_UNITS}, not {units!r}")
    dataset = _open_input(input_path, band)
    _check_output(input_path, output_path)
    source = dataset.GetRasterBand(band)
    nodata = source.GetNoDataValue()
    width, height = dataset.RasterXSize, dataset.RasterYSize
    folder, name = os.path.split(os.path.abspath(os.fspath(output_path)))
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part.tif", dir=folder)
    os.close(handle)
    try:
        target = gdal.GetDriverByName("GTiff").Create(temporary, width, height, 1, gdal.GDT_Float32,
                                                      CREATION_OPTIONS)
        target.SetGeoTransform(dataset.GetGeoTransform())
        target.SetProjection(dataset.GetProjection())
        out_band = target.GetRasterBand(1)
        out_band.SetNoDataValue(OUTPUT_NODATA)
        out_band.SetDescription("Sigma0_HH_db" if units == "db" else "Sigma0_HH")
        out_band.SetUnitType("dB" if units == "db" else "linear power")
        windows = [(x, y) for y in range(0, height, _WINDOW) for x in range(0, width, _WINDOW)]
        for done, (x, y) in enumerate(windows):
            if is_cancelled is not None and is_cancelled():
                raise CancelledError("Calibration cancelled; the partial output was removed.")
            cols, rows = min(_WINDOW, width - x), min(_WINDOW, height - y)
            dn = source.ReadAsArray(x, y, cols, rows)
            valid = valid_mask(dn, nodata, InputUnits.DN)
            sigma0 = to_db(dn, InputUnits.DN, calibration_factor)
            if units == "linear":
                sigma0 = db_to_power(sigma0)
            out_band.WriteArray(np.where(valid, sigma0, OUTPUT_NODATA).astype(np.float32), x, y)
            if progress is not None:
                progress(100.0 * (done + 1) / len(windows))
        target.FlushCache()
        target = out_band = None
        os.replace(temporary, output_path)
    except BaseException as error:
        target = out_band = None
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, RuntimeError):
            raise OutputError(f"Cannot write '{output_path}': {error}") from error
        raise
    return os.fspath(output_path)

"""ALOS-2 DN calibration: the core function and the sarlulc:calibrate Processing algorithm."""

import hashlib

import numpy as np
import pytest
from osgeo import gdal

from sarlulc.calibrate import OUTPUT_NODATA, calibrate_dn
from sarlulc.errors import CancelledError, InputRasterError, OutputError
from sarlulc.sar.units import InputUnits, detect_band_units
from factories import write_sar_raster

gdal.UseExceptions()


def _dn_raster(path, width=1100, height=40, nodata=65535.0):
    """UInt16 DN cycling through hand-checked values, with a DN 0 fill block and the band's nodata."""
    dn = np.resize(np.array([1000, 5000, 1, 300, 20000], dtype=np.uint16), (height, width))
    dn[:10, :30] = 0
    dn[-5:, -7:] = 65535
    return write_sar_raster(path, width, height, epsg=4326, pixel_size=0.8e-4, origin=(139.0, 35.5),
                            nodata=nodata, dtype="uint16", values=dn), dn


# 10*log10(DN^2) - 83 by hand: 60-83, 73.9794-83, 0-83, 49.5424-83, 86.0206-83
HAND_DB = {1000: -23.0, 5000: -9.0206, 1: -83.0, 300: -33.4576, 20000: 3.0206}


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("units", ["db", "linear"])
def test_calibrated_values_grid_and_nodata(tmp_path, units):
    path, dn = _dn_raster(tmp_path / "dn.tif")
    before = _md5(path)
    out = calibrate_dn(path, tmp_path / "sigma0.tif", units=units)
    ds, source = gdal.Open(out), gdal.Open(path)
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Float32 and band.GetNoDataValue() == OUTPUT_NODATA
    assert ds.GetGeoTransform() == source.GetGeoTransform()
    assert ds.GetSpatialRef().IsSame(source.GetSpatialRef())
    assert (ds.RasterXSize, ds.RasterYSize) == (1100, 40)
    structure = ds.GetMetadata("IMAGE_STRUCTURE")
    assert structure["COMPRESSION"] == "DEFLATE" and structure["PREDICTOR"] == "3"
    assert band.GetBlockSize() == [256, 256]
    values = band.ReadAsArray()
    nodata = (dn == 0) | (dn == 65535)
    assert np.all(values[nodata] == OUTPUT_NODATA)
    for number, db in HAND_DB.items():
        expected = db if units == "db" else 10 ** (db / 10)
        np.testing.assert_allclose(values[dn == number], expected, rtol=2e-5 if units == "linear" else 0,
                                   atol=1e-4 if units == "db" else 0)
    assert _md5(path) == before  # the input is only read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dn.tif", "sigma0.tif"]  # no temporary left
    assert detect_band_units(ds, 1)[0] is (InputUnits.DB if units == "db" else InputUnits.LINEAR)


def test_calibration_factor_shifts_db(tmp_path):
    path, dn = _dn_raster(tmp_path / "dn.tif", width=20, height=20, nodata=None)
    values = gdal.Open(calibrate_dn(path, tmp_path / "s.tif", calibration_factor=-80.0)).ReadAsArray()
    np.testing.assert_allclose(values[dn == 1000], -20.0, atol=1e-4)
    assert np.all(values[dn == 0] == OUTPUT_NODATA)


def test_refusals_leave_no_output(tmp_path):
    path, _ = _dn_raster(tmp_path / "dn.tif", width=20, height=20)
    with pytest.raises(OutputError, match="output file .* is the input raster. Choose another file name"):
        calibrate_dn(path, path)
    with pytest.raises(OutputError, match="does not exist"):
        calibrate_dn(path, tmp_path / "missing" / "s.tif")
    with pytest.raises(InputRasterError, match="Band 2 does not exist"):
        calibrate_dn(path, tmp_path / "s.tif", band=2)
    db = write_sar_raster(tmp_path / "db.tif", 20, 20)
    with pytest.raises(InputRasterError, match="calibrated already.*INPUT_UNITS"):
        calibrate_dn(db, tmp_path / "s.tif")
    assert not (tmp_path / "s.tif").exists()


def test_cancel_removes_the_partial_output(tmp_path):
    path, _ = _dn_raster(tmp_path / "dn.tif")  # two windows wide
    calls = []
    with pytest.raises(CancelledError):
        calibrate_dn(path, tmp_path / "s.tif", progress=calls.append, is_cancelled=lambda: len(calls) >= 1)
    assert calls == [50.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dn.tif"]


def test_processing_algorithm_writes_linear_sigma0(tmp_path, sarlulc_provider):
    import processing
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById("sarlulc:calibrate")
    assert algorithm.displayName() == "Calibrate ALOS-2 DN to Backscatter"
    assert "10&middot;log10(DN&sup2;) + CF" in algorithm.shortHelpString()
    assert algorithm.parameterDefinition("CALIBRATION_FACTOR").defaultValue() == -83.0
    path, dn = _dn_raster(tmp_path / "dn.tif", width=30, height=20)
    result = processing.run("sarlulc:calibrate", {
        "INPUT": path, "BAND": 1, "OUTPUT_UNITS": 1, "OUTPUT": str(tmp_path / "linear.tif")})
    values = gdal.Open(result["OUTPUT"]).ReadAsArray()
    np.testing.assert_allclose(values[dn == 5000], 10 ** (-9.0206 / 10), rtol=2e-5)
    assert np.all(values[dn == 0] == OUTPUT_NODATA)


def test_processing_algorithm_reports_core_errors(tmp_path, sarlulc_provider):
    import processing
    from qgis.core import QgsProcessingException

    db = write_sar_raster(tmp_path / "db.tif", 20, 20)
    with pytest.raises(QgsProcessingException, match="calibrated already"):
        processing.run("sarlulc:calibrate", {"INPUT": db, "BAND": 1, "OUTPUT": str(tmp_path / "s.tif")})

"""Reading inputs on the model's 10 m grid and writing results back (sarlulc/rasters/resample.py)."""

import os
import time

import numpy as np
import pytest
from osgeo import gdal, osr

from sarlulc.errors import CancelledError
from sarlulc.rasters.resample import (decide_model_grid, model_grid, open_on_model_grid, utm_epsg,
                                      warp_back_to_input_grid)
from sarlulc.sar.decibels import db_to_power, power_to_db
from sarlulc.sar.units import InputUnits, to_db
from factories import sar_db_field, write_sar_raster

gdal.UseExceptions()

STEP_25M = 2.25e-4  # degrees: about 20.5 m E-W x 25 m N-S at 35° N
ORIGIN = (139.2, 35.6)


def _dn_from_db(db):
    return np.clip(np.round(np.sqrt(db_to_power(db) / 10 ** (-83.0 / 10))), 1, 65535)


def _geographic_dn(path, width=120, height=100, hole=(40, 30, 60, 45)):
    dn = _dn_from_db(sar_db_field(0, 0, width, height, seed=2))
    x0, y0, x1, y1 = hole
    dn[y0:y1, x0:x1] = 0
    return write_sar_raster(path, width, height, epsg=4326, pixel_size=STEP_25M, origin=ORIGIN, nodata=None,
                            dtype="uint16", values=dn), dn


def _to_utm54(lon, lat):
    wgs84, utm = osr.SpatialReference(), osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    utm.ImportFromEPSG(32654)
    for srs in (wgs84, utm):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return osr.CoordinateTransformation(wgs84, utm).TransformPoint(lon, lat)[:2]


def test_utm_zone_choice():
    assert utm_epsg(139.5, 35.0) == 32654
    assert utm_epsg(-70.6, -33.4) == 32719
    assert utm_epsg(179.9, 10.0) == 32660 and utm_epsg(-180.0, 10.0) == 32601
    assert utm_epsg(10.0, 85.0) == 32661 and utm_epsg(10.0, -85.0) == 32761


def test_resampling_is_skipped_only_for_projected_rasters_at_the_model_gsd(tmp_path):
    for pixel, expect_grid in ((10.0, False), (10.8, False), (9.2, False), (12.0, True), (25.0, True)):
        path = write_sar_raster(tmp_path / f"p{pixel}.tif", 20, 20, pixel_size=pixel)
        assert (decide_model_grid(gdal.Open(path), 10.0) is not None) is expect_grid, pixel
    # about 7.3 x 8.9 m in degrees: always resampled (degrees are not a metric grid)
    path = write_sar_raster(tmp_path / "deg.tif", 20, 20, epsg=4326, pixel_size=0.8e-4, origin=ORIGIN)
    assert decide_model_grid(gdal.Open(path), 10.0) is not None


def test_geographic_25m_input_opens_on_a_10m_utm_grid_covering_it(tmp_path):
    path, _ = _geographic_dn(tmp_path / "dn.tif")
    grid = decide_model_grid(gdal.Open(path), 10.0)
    srs = osr.SpatialReference(wkt=grid.srs_wkt)
    assert srs.GetAuthorityCode(None) == "32654"
    assert "20.39 x 24.96 m" in grid.reason and "EPSG:32654" in grid.reason  # the log line
    gt = grid.geotransform
    assert (gt[1], gt[2], gt[4], gt[5]) == (10.0, 0.0, 0.0, -10.0)
    assert gt[0] % 10 == 0 and gt[3] % 10 == 0
    corners = [_to_utm54(ORIGIN[0] + i * 120 * STEP_25M, ORIGIN[1] - j * 100 * STEP_25M)
               for i in (0, 1) for j in (0, 1)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    left, top = gt[0], gt[3]
    right, bottom = left + 10 * grid.width, top - 10 * grid.height
    assert left <= min(xs) and right >= max(xs) and bottom <= min(ys) and top >= max(ys)
    assert min(xs) - left < 10 and right - max(xs) < 10 and min(ys) - bottom < 10 and top - max(ys) < 10
    view = open_on_model_grid(path, 1, 10.0, InputUnits.DN, grid=grid)
    assert (view.RasterXSize, view.RasterYSize) == (grid.width, grid.height)
    assert view.GetGeoTransform() == pytest.approx(gt)


def test_view_is_lazy_reading_one_window_of_a_huge_scene(tmp_path):
    # 60000 x 60000 UInt16 (7 GB if read); only one 512 x 512 tile is written, the rest is sparse
    path = str(tmp_path / "huge.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 60000, 60000, 1, gdal.GDT_UInt16,
                                              ["TILED=YES", "SPARSE_OK=TRUE", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform((ORIGIN[0], 0.8e-4, 0, ORIGIN[1], 0, -0.8e-4))
    ds.SetProjection(osr.SRS_WKT_WGS84_LAT_LONG)
    ds.GetRasterBand(1).WriteArray(np.full((512, 512), 1000, np.uint16), 30000, 30000)
    ds = None
    files_before = sorted(os.listdir(tmp_path))
    started = time.perf_counter()
    view = open_on_model_grid(path, 1, 10.0, InputUnits.DN)
    assert view.GetDriver().ShortName == "VRT"
    x, y = _to_utm54(ORIGIN[0] + 30256 * 0.8e-4, ORIGIN[1] - 30256 * 0.8e-4)
    gt = view.GetGeoTransform()
    col, row = int((x - gt[0]) / gt[1]), int((y - gt[3]) / gt[5])
    window = view.ReadAsArray(col - 8, row - 8, 16, 16)
    assert time.perf_counter() - started < 10
    np.testing.assert_allclose(power_to_db(window), -23.0, atol=1e-3)
    assert sorted(os.listdir(tmp_path)) == files_before  # nothing written beside the input


def test_downsampling_averages_linear_power_not_db(tmp_path):
    dn = np.where(np.arange(40) % 2 == 0, 1000, 5000)[None, :] * np.ones((40, 1))  # 5 m columns
    path = write_sar_raster(tmp_path / "five.tif", 40, 40, pixel_size=5.0, nodata=None, dtype="uint16", values=dn)
    view = open_on_model_grid(path, 1, 10.0, InputUnits.DN, resampling="average")
    assert (view.RasterXSize, view.RasterYSize) == (20, 20)
    assert view.GetGeoTransform() == (500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0)
    expected_db = 10 * np.log10((10 ** -2.3 + 10 ** -0.90206) / 2)  # mean of the two powers, -11.75 dB
    np.testing.assert_allclose(power_to_db(view.ReadAsArray()), expected_db, atol=1e-3)
    assert abs(expected_db - (-23.0 - 9.0206) / 2) > 4  # what averaging dB would have given


def test_db_input_view_reproduces_its_values_and_nodata(tmp_path):
    db = np.random.default_rng(0).uniform(-30.0, 5.0, (30, 40)).astype(np.float32)
    path = write_sar_raster(tmp_path / "db.tif", 40, 30, values=db, nodata_box=(5, 5, 12, 10))
    ds = gdal.Open(path)
    view = open_on_model_grid(ds, 1, 10.0, InputUnits.DB, grid=model_grid(ds, 10.0))
    power = view.ReadAsArray()
    hole = np.zeros(db.shape, bool)
    hole[5:10, 5:12] = True
    assert np.all(power[hole] == 0) and np.all(power[~hole] > 0)
    np.testing.assert_allclose(power_to_db(power[~hole]), db[~hole], atol=1e-3)


def test_nodata_never_enters_averages(tmp_path):
    dn = np.full((100, 120), 1000.0)
    dn[30:45, 40:60] = 0
    path = write_sar_raster(tmp_path / "hole.tif", 120, 100, epsg=4326, pixel_size=STEP_25M, origin=ORIGIN,
                            nodata=None, dtype="uint16", values=dn)
    power = open_on_model_grid(path, 1, 10.0, InputUnits.DN).ReadAsArray()
    valid_db = power_to_db(power[power > 0])
    np.testing.assert_allclose(valid_db, -23.0, atol=1e-3)  # hole borders not pulled down by DN 0
    hole_area_m2 = 15 * 20 * 20.48 * 25.0
    assert abs((power == 0).sum() * 100 - hole_area_m2) < 0.5 * hole_area_m2 + (power.size - valid_db.size) * 100


def _classes(db):
    return np.where(db < -15.0, 1, 2).astype(np.uint8)


def test_classes_computed_on_the_model_grid_come_back_on_the_input_grid(tmp_path):
    path, dn = _geographic_dn(tmp_path / "dn.tif")
    source = gdal.Open(path)
    view = open_on_model_grid(source, 1, 10.0, InputUnits.DN)
    power = view.ReadAsArray()
    model_classes = np.where(power > 0, _classes(power_to_db(power)), 0).astype(np.uint8)
    model_path = str(tmp_path / "classes_10m.tif")
    out = gdal.GetDriverByName("GTiff").Create(model_path, view.RasterXSize, view.RasterYSize, 1, gdal.GDT_Byte)
    out.SetGeoTransform(view.GetGeoTransform())
    out.SetProjection(view.GetProjection())
    out.GetRasterBand(1).SetNoDataValue(0)
    out.GetRasterBand(1).WriteArray(model_classes)
    out = None
    back_path = warp_back_to_input_grid(model_path, source, tmp_path / "classes.tif", resampling="nearest")
    back = gdal.Open(back_path)
    assert (back.RasterXSize, back.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    assert back.GetGeoTransform() == source.GetGeoTransform()
    assert back.GetSpatialRef().IsSame(source.GetSpatialRef())
    band = back.GetRasterBand(1)
    assert band.GetNoDataValue() == 0 and band.DataType == gdal.GDT_Byte
    assert band.GetBlockSize() == [256, 256]
    result = band.ReadAsArray()
    direct = _classes(to_db(dn, InputUnits.DN))
    valid = dn > 0
    assert np.mean(result[valid] == direct[valid]) >= 0.95
    assert np.mean(result[~valid] == 0) >= 0.9  # the DN 0 hole stays nodata


def test_probabilities_come_back_bilinear_with_nodata_kept(tmp_path):
    path, _ = _geographic_dn(tmp_path / "dn.tif")
    source = gdal.Open(path)
    grid = model_grid(source, 10.0)
    yy, xx = np.mgrid[0:grid.height, 0:grid.width]
    probability = (xx / grid.width).astype(np.float32)
    probability[:20] = -1.0
    model_path = write_sar_raster(tmp_path / "p10.tif", grid.width, grid.height, values=probability, nodata=-1.0,
                                  pixel_size=10.0, origin=(grid.geotransform[0], grid.geotransform[3]))
    back = gdal.Open(warp_back_to_input_grid(model_path, source, tmp_path / "p.tif", resampling="bilinear"))
    values = back.GetRasterBand(1).ReadAsArray()
    assert back.GetRasterBand(1).GetNoDataValue() == -1.0
    valid = values != -1.0
    assert valid.mean() > 0.8 and np.all(values[valid] >= 0) and np.all(values[valid] <= 1)
    assert np.all(np.diff(values[-1]) > 0)  # a smooth west-east ramp stays monotonic
    assert np.all(values[0] == -1.0)  # the nodata band across the top is kept


def test_cancel_while_warping_back_removes_the_partial_file(tmp_path):
    path, _ = _geographic_dn(tmp_path / "dn.tif")
    grid = model_grid(gdal.Open(path), 10.0)
    model_path = write_sar_raster(tmp_path / "m.tif", grid.width, grid.height,
                                  origin=(grid.geotransform[0], grid.geotransform[3]))
    target = tmp_path / "back.tif"
    with pytest.raises(CancelledError):
        warp_back_to_input_grid(model_path, path, target, is_cancelled=lambda: True)
    assert not target.exists()

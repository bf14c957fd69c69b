"""Input units, DN calibration (sarlulc/sar/units.py, decibels.py), speckle filters (speckle.py) and
ground pixel size (resample.py)."""

import math

import numpy as np
import pytest
from osgeo import gdal, osr

from sarlulc.errors import InputRasterError, OptionError
from sarlulc.sar.decibels import db_to_power, power_to_db
from sarlulc.rasters.resample import ground_pixel_size_m
from sarlulc.sar.units import (RELATIVE_STRETCH_DB, InputUnits, check_backscatter_band, check_units_fit,
                               detect_band_units, detect_units, sample_valid_values, to_db, valid_mask)
from sarlulc.sar.speckle import SpeckleFilter, filter_halo, lee_filter, refined_lee_filter, speckle_filter_db
from factories import sar_db_field, web_mercator_point

gdal.UseExceptions()


def _mem_raster(array, epsg=4326, geotransform=(139.0, 0.8e-4, 0, 35.0, 0, -0.8e-4), nodata=None,
                description="", unit=""):
    gdal_type = {"uint16": gdal.GDT_UInt16, "float32": gdal.GDT_Float32, "uint8": gdal.GDT_Byte}[array.dtype.name]
    ds = gdal.GetDriverByName("MEM").Create("", array.shape[1], array.shape[0], 1, gdal_type)
    ds.SetGeoTransform(geotransform)
    if epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetSpatialRef(srs)
    band = ds.GetRasterBand(1)
    band.WriteArray(array)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    band.SetDescription(description)
    band.SetUnitType(unit)
    return ds


def _dn_scene(shape=(120, 160), seed=0):
    """ALOS-2-like amplitude DN: sigma0 of a dB field, single-look speckle, DN = sqrt(power / 10^(CF/10))."""
    power = db_to_power(sar_db_field(0, 0, shape[1], shape[0], seed)) * np.random.default_rng(seed).exponential(1, shape)
    return np.clip(np.round(np.sqrt(power / 10 ** (-83.0 / 10))), 1, 65535).astype(np.uint16)


# ------------------------------------------------------------------ calibration and units

def test_dn_to_db_matches_hand_computed_values():
    dn = np.array([[1000, 5000, 1, 65535]], dtype=np.uint16)
    # 10*log10(1000^2) - 83 = 60 - 83; 10*log10(25e6) = 73.9794; 10*log10(65535^2) = 96.32947
    expected = np.array([[-23.0, -9.020600, -83.0, 13.329466]])
    np.testing.assert_allclose(to_db(dn, InputUnits.DN), expected, atol=1e-4)
    np.testing.assert_allclose(to_db(dn, InputUnits.DN, calibration_factor=-80.0), expected + 3.0, atol=1e-4)


def test_linear_and_db_convert_both_ways():
    linear = np.array([1.0, 0.1, 0.01, 0.0031622777], dtype=np.float32)
    np.testing.assert_allclose(to_db(linear, InputUnits.LINEAR), [0.0, -10.0, -20.0, -25.0], atol=1e-5)
    np.testing.assert_allclose(db_to_power(np.array([0.0, -10.0, -20.0])), [1.0, 0.1, 0.01], rtol=1e-12)
    db = np.array([-31.5, -7.25, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(to_db(db, InputUnits.DB), db)
    np.testing.assert_allclose(power_to_db(db_to_power(db)), db, atol=1e-5)


def test_valid_mask_drops_dn_zero_nodata_and_non_positive_power():
    dn = np.array([0, 1, 700, 65535], dtype=np.uint16)
    assert valid_mask(dn, None, InputUnits.DN).tolist() == [False, True, True, True]
    assert valid_mask(dn, 65535, InputUnits.DN).tolist() == [False, True, True, False]
    linear = np.array([0.0, -0.1, 0.02, np.nan], dtype=np.float32)
    assert valid_mask(linear, None, InputUnits.LINEAR).tolist() == [False, False, True, False]
    db = np.array([0.0, -9999.0, -12.0, np.inf], dtype=np.float32)
    assert valid_mask(db, -9999.0, InputUnits.DB).tolist() == [True, False, True, False]


def test_detects_dn_linear_and_db_from_values():
    dn = _dn_scene()
    units, reason = detect_units(dn.dtype, dn.ravel())
    assert units is InputUnits.DN and "DN" in reason
    db = to_db(dn, InputUnits.DN)
    assert detect_units(np.float32, db.ravel())[0] is InputUnits.DB
    power = db_to_power(db).astype(np.float32)
    assert detect_units(np.float32, power.ravel())[0] is InputUnits.LINEAR
    # DN stored as float (some tools export that way) are still DN
    assert detect_units(np.float32, dn.astype(np.float32).ravel())[0] is InputUnits.DN


@pytest.mark.parametrize("dtype, values", [
    (np.float32, np.random.default_rng(1).uniform(20.0, 40.0, 5000)),     # neither dB, power nor DN
    (np.float32, np.random.default_rng(2).uniform(-3.0, 12.0, 5000)),     # mostly positive dB-like values
    (np.float32, np.random.default_rng(4).uniform(5.5, 900.5, 5000)),     # float amplitudes, not whole numbers
])
def test_ambiguous_values_are_refused_naming_input_units(dtype, values):
    with pytest.raises(InputRasterError, match="INPUT_UNITS to ALOS-2 DN, linear power, dB or relative brightness"):
        detect_units(dtype, values.astype(dtype))


def test_hints_settle_ambiguous_values():
    bright_db = np.random.default_rng(2).uniform(-3.0, 12.0, 5000).astype(np.float32)
    units, reason = detect_units(np.float32, bright_db, hints=["Sigma0_HH_db"])
    assert units is InputUnits.DB and "Sigma0_HH_db" in reason
    with pytest.raises(InputRasterError):
        detect_units(np.float32, bright_db, hints=["HH"])


def test_no_valid_value_is_refused():
    with pytest.raises(InputRasterError, match="no valid"):
        detect_units(np.uint16, np.zeros(100, np.uint16))


def test_sample_is_a_bounded_decimated_read_of_the_whole_raster_without_nodata():
    height, width = 300, 400
    values = np.arange(height * width, dtype=np.float32).reshape(height, width) + 1
    values[:, :50] = -9999.0
    ds = _mem_raster(values, nodata=-9999.0)
    sample = sample_valid_values(ds, 1, max_pixels=900)
    assert 0 < sample.size <= 900 and not np.any(sample == -9999.0)
    rows, cols = (sample - 1) // width, (sample - 1) % width
    # an even grid over everything: first and last rows and columns within one grid step of the edges
    assert rows.min() < 12 and rows.max() > height - 12 and cols.min() < 62 and cols.max() > width - 12
    assert len(np.unique(rows)) * len(np.unique(cols)) == sample.size  # a grid, each pixel once


def test_sample_finds_data_in_a_thin_strip_along_an_edge_and_honours_nodata_1():
    dn = np.ones((900, 900), np.uint16)  # nodata 1 everywhere ...
    dn[-30:] = 3000                        # ... but a 30-row strip along the south edge
    sample = sample_valid_values(_mem_raster(dn, nodata=1), 1, max_pixels=4096)
    assert sample.size > 0 and np.all(sample == 3000)


def test_sample_applies_the_band_scale_and_offset_and_honours_a_mask_band():
    stored = np.full((40, 50), 1500, np.int16)
    ds = gdal.GetDriverByName("MEM").Create("", 50, 40, 1, gdal.GDT_Int16)
    band = ds.GetRasterBand(1)
    band.WriteArray(stored)
    band.SetScale(-0.01)
    band.SetOffset(2.0)
    band.CreateMaskBand(0)
    mask = np.full((40, 50), 255, np.uint8)
    mask[:, :25] = 0
    band.GetMaskBand().WriteArray(mask)
    sample = sample_valid_values(ds, 1)
    assert sample.size == 40 * 25 and np.allclose(sample, -13.0)


def test_detect_band_units_reads_a_dn_band_and_a_labelled_db_band():
    dn = _dn_scene()
    dn[:20] = 0  # fill border of a JAXA tile
    units, _ = detect_band_units(_mem_raster(dn), 1)
    assert units is InputUnits.DN
    bright_db = np.random.default_rng(5).uniform(-3.0, 12.0, (50, 60)).astype(np.float32)
    units, reason = detect_band_units(_mem_raster(bright_db, unit="dB"), 1)
    assert units is InputUnits.DB and "dB" in reason


def test_a_band_labelled_db_is_db_when_its_values_can_be_and_refused_when_not():
    integer_db = np.random.default_rng(6).integers(-25, 0, 5000).astype(np.int16)
    units, reason = detect_units(np.int16, integer_db, hints=["Gamma0_HH", "dB"])
    assert units is InputUnits.DB and "the band says so ('Gamma0_HH dB')" in reason
    # Of a band's many metadata items, the log quotes the words that decided, not all of them.
    hints = ["HH"] + [f"PROCESSING_STEP_{i}=terrain flattening, orbit file applied" for i in range(20)] + ["unit=dB"]
    units, reason = detect_units(np.int16, integer_db, hints=hints)
    assert units is InputUnits.DB and "applied unit=dB'" in reason and "'…" in reason and len(reason) < 160
    dn = _dn_scene().ravel()
    with pytest.raises(InputRasterError, match="labelled dB .*cannot be dB.*INPUT_UNITS"):
        detect_units(np.uint16, dn, hints=["HH", "dB"])
    # a description that names DN and gives its formula in dB is not a dB label
    assert detect_units(np.uint16, dn, hints=["HH DN (sigma0 = 10*log10(DN^2) - 83 dB)"])[0] is InputUnits.DN


def test_8_bit_values_are_read_as_relative_brightness_never_as_alos2_dn():
    """An 8-bit band is a display stretch: relative brightness, said so, whatever its values."""
    for values in (np.random.default_rng(7).integers(40, 255, 5000), np.random.default_rng(3).integers(1, 30, 5000)):
        units, reason = detect_units(np.uint8, values.astype(np.uint8))
        assert units is InputUnits.RELATIVE and not units.calibrated
        assert "8-bit values" in reason and "display stretch" in reason and "only contrasts" in reason


def test_relative_brightness_follows_the_documented_stretch_and_refuses_values_beyond_8_bits():
    at_zero, per_step = RELATIVE_STRETCH_DB
    np.testing.assert_allclose(to_db(np.array([1.0, 142.0, 255.0]), InputUnits.RELATIVE),
                               [at_zero + per_step, at_zero + 142 * per_step, at_zero + 255 * per_step], rtol=1e-6)
    assert -11.0 < at_zero + 142 * per_step < -8.5  # the ETCI land median lands on calibrated land
    assert not valid_mask(np.array([0.0]), None, InputUnits.RELATIVE)[0]  # 0: the fill of a stretched picture
    with pytest.raises(InputRasterError, match="INPUT_UNITS is relative brightness .*outside 0..255"):
        check_units_fit(InputUnits.RELATIVE, np.random.default_rng(1).uniform(-25, -2, 5000))


@pytest.mark.parametrize("declared, values, named", [
    (InputUnits.DN, np.random.default_rng(8).uniform(-25, -2, 5000), "negative.*look like dB"),
    (InputUnits.DB, _dn_scene().ravel(), "outside -100..40.*look like ALOS-2 DN"),
    (InputUnits.LINEAR, np.random.default_rng(9).uniform(-25, -2, 5000), "negative.*look like dB"),
    (InputUnits.DN, np.random.default_rng(10).uniform(0.001, 0.3, 5000), "below 1.*look like linear power"),
])
def test_input_units_contradicting_the_values_are_refused_naming_both(declared, values, named):
    with pytest.raises(InputRasterError, match=f"INPUT_UNITS is {declared.value}, but .*{named}"):
        check_units_fit(declared, values)
    check_units_fit(detect_units(np.float64, values)[0], values)  # the right units pass


def _multi_band(count, gdal_type, colours=()):
    ds = gdal.GetDriverByName("MEM").Create("", 20, 10, count, gdal_type)
    for index, colour in enumerate(colours, start=1):
        ds.GetRasterBand(index).SetColorInterpretation(colour)
    return ds


def test_rgb_pictures_class_maps_and_complex_bands_are_not_backscatter():
    rgb = _multi_band(3, gdal.GDT_Byte, (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand))
    with pytest.raises(InputRasterError, match="looks like an RGB image.*not SAR backscatter"):
        check_backscatter_band(rgb, 2, "photo.tif")
    paletted = _multi_band(1, gdal.GDT_Byte)
    table = gdal.ColorTable()
    table.SetColorEntry(1, (0, 0, 255, 255))
    paletted.GetRasterBand(1).SetColorTable(table)
    with pytest.raises(InputRasterError, match="colour table: it looks like a class map"):
        check_backscatter_band(paletted, 1, "classes.tif")
    with pytest.raises(InputRasterError, match=r"complex values \(CFloat32\).*intensity \|z\|²"):
        check_backscatter_band(_multi_band(1, gdal.GDT_CFloat32), 1, "slc.tif")
    check_backscatter_band(_multi_band(3, gdal.GDT_UInt16), 1, "hh_hv_vv.tif")  # 16-bit bands pass


# ------------------------------------------------------------------ speckle filters

def _speckled(truth, looks, seed=0):
    return truth * np.random.default_rng(seed).gamma(looks, 1.0 / looks, truth.shape)


def test_lee_filters_reduce_speckle_on_a_homogeneous_area_and_keep_its_mean():
    truth = np.full((80, 80), 0.05)
    power = _speckled(truth, looks=1)
    inner = (slice(10, -10), slice(10, -10))
    for run in (lee_filter, refined_lee_filter):
        filtered = run(power, 7, looks=1)
        assert np.std(filtered[inner]) < 0.35 * np.std(power[inner])
        assert abs(np.mean(filtered[inner]) / 0.05 - 1) < 0.05


def test_refined_lee_keeps_a_step_edge_that_lee_blurs():
    truth = np.where(np.arange(64) < 32, 0.01, 0.5)[None, :] * np.ones((64, 1))
    power = _speckled(truth, looks=4, seed=1)
    near_edge = (slice(8, -8), slice(29, 35))  # three columns on each side of the step
    error = {run.__name__: np.mean(np.abs(run(power, 7, looks=4) - truth)[near_edge] / truth[near_edge])
             for run in (lee_filter, refined_lee_filter)}
    assert error["refined_lee_filter"] < 0.3
    assert error["refined_lee_filter"] < 0.25 * error["lee_filter"]


@pytest.mark.parametrize("name, size", [("Lee", 5), ("Lee", 7), ("refined Lee", 5), ("refined Lee", 7),
                                        ("refined Lee", 9), ("refined Lee", 11)])
def test_filtering_windows_with_the_halo_equals_filtering_the_whole_raster(name, size):
    rng = np.random.default_rng(size)
    truth = db_to_power(sar_db_field(0, 0, 90, 70, seed=3))
    power = _speckled(truth, looks=2, seed=size)
    valid = np.ones(power.shape, bool)
    valid[30:36, 40:52] = False
    valid[rng.random(power.shape) < 0.02] = False
    run = lee_filter if name == "Lee" else refined_lee_filter
    whole = run(power, size, valid=valid, looks=2)
    halo = filter_halo(name, size)
    assert halo == size // 2
    tiles = np.full(power.shape, np.nan)
    for y0 in range(0, 70, 25):
        for x0 in range(0, 90, 32):
            y1, x1 = min(y0 + 25, 70), min(x0 + 32, 90)
            ry0, rx0, ry1, rx1 = max(0, y0 - halo), max(0, x0 - halo), min(70, y1 + halo), min(90, x1 + halo)
            window = run(power[ry0:ry1, rx0:rx1], size, valid=valid[ry0:ry1, rx0:rx1], looks=2)
            tiles[y0:y1, x0:x1] = window[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0]
    np.testing.assert_array_equal(tiles, whole)


@pytest.mark.parametrize("run", [lee_filter, refined_lee_filter])
def test_nodata_pixels_neither_change_nor_influence_their_neighbours(run):
    power = _speckled(np.full((40, 40), 0.05), looks=1, seed=7)
    valid = np.ones(power.shape, bool)
    valid[15:25, 15:25] = False
    with_garbage, with_zeros = power.copy(), power.copy()
    with_garbage[~valid], with_zeros[~valid] = 1e6, 0.0
    a = run(with_garbage, 7, valid=valid)
    b = run(with_zeros, 7, valid=valid)
    np.testing.assert_array_equal(a[valid], b[valid])
    np.testing.assert_array_equal(a[~valid], with_garbage[~valid])
    assert np.all(a[valid] < 1.0)


def test_speckle_filter_db_filters_in_power_and_keeps_nodata():
    db = power_to_db(_speckled(np.full((40, 40), 0.05), looks=1, seed=8))
    valid = np.ones(db.shape, bool)
    valid[:5] = False
    db[:5] = -9999.0
    filtered = speckle_filter_db(db, valid, SpeckleFilter.LEE, 7)
    assert filtered.dtype == np.float32
    np.testing.assert_array_equal(filtered[:5], -9999.0)
    assert np.std(filtered[10:-5, 5:-5]) < 0.5 * np.std(db[10:-5, 5:-5])
    np.testing.assert_array_equal(speckle_filter_db(db, valid, "none"), db)


def test_filter_window_sizes_are_checked():
    assert filter_halo("none", 7) == 0
    with pytest.raises(OptionError, match="5, 7, 9, 11"):
        filter_halo("refined Lee", 8)
    with pytest.raises(OptionError, match="odd"):
        lee_filter(np.ones((10, 10)), 4)


# ------------------------------------------------------------------ ground pixel size

def _geodesic_step_m(lon, lat, d_lon, d_lat):
    """Ground distance of a small lon/lat step, through PROJ's azimuthal equidistant projection at the point."""
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    local = osr.SpatialReference()
    local.ImportFromProj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    local.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_local = osr.CoordinateTransformation(wgs84, local)
    x0, y0, _ = to_local.TransformPoint(lon - d_lon / 2, lat - d_lat / 2)
    x1, y1, _ = to_local.TransformPoint(lon + d_lon / 2, lat + d_lat / 2)
    return math.hypot(x1 - x0, y1 - y0)


def test_ground_pixel_size_of_a_geographic_raster_at_35_degrees():
    step = 0.8e-4
    height = 200
    top = 35.0 + step * height / 2  # centre latitude 35°
    ds = _mem_raster(np.ones((height, 300), np.float32), geotransform=(139.0, step, 0, top, 0, -step))
    dx, dy = ground_pixel_size_m(ds)
    centre_lon = 139.0 + step * 150
    assert dx == pytest.approx(_geodesic_step_m(centre_lon, 35.0, step, 0.0), rel=1e-4)
    assert dy == pytest.approx(_geodesic_step_m(centre_lon, 35.0, 0.0, step), rel=1e-4)
    assert dx == pytest.approx(7.30, abs=0.01) and dy == pytest.approx(8.88, abs=0.01)


def test_ground_pixel_size_of_projected_rasters_in_metres_and_feet():
    # UTM on its central meridian: scale 0.9996, so 25 grid metres are 25.01 m on the ground
    ds = _mem_raster(np.ones((10, 10), np.float32), epsg=32654, geotransform=(500000, 25.0, 0, 4e6, 0, -25.0))
    assert ground_pixel_size_m(ds) == pytest.approx((25.0 / 0.9996,) * 2, rel=1e-5)
    # NAD83 / California zone 5 (ftUS): 30 US survey feet, a conformal zone with scale within 1e-3 of 1
    ds = _mem_raster(np.ones((10, 10), np.float32), epsg=2229, geotransform=(6e6, 30.0, 0, 2e6, 0, -30.0))
    assert ground_pixel_size_m(ds) == pytest.approx((30 * 1200 / 3937,) * 2, rel=1e-3)


def test_ground_pixel_size_in_web_mercator_is_the_true_size_on_the_ground():
    """EPSG:3857 "metres" are 1/cos(latitude) ground metres: 10 of them are 5 m at 60 deg N."""
    x, y = web_mercator_point(10.0, 60.0)
    ds = _mem_raster(np.ones((100, 100), np.float32), epsg=3857, geotransform=(x - 500, 10.0, 0, y + 500, 0, -10.0))
    dx, dy = ground_pixel_size_m(ds)
    step_degrees = math.degrees(10.0 / 6378137.0)  # a 10 m step of the Web Mercator sphere's equator
    assert dx == pytest.approx(_geodesic_step_m(10.0, 60.0, step_degrees, 0.0), rel=1e-3)
    assert dx == pytest.approx(5.0, rel=5e-3) and dy == pytest.approx(5.0, rel=5e-3)


def test_ground_pixel_size_needs_a_crs():
    ds = _mem_raster(np.ones((10, 10), np.float32), epsg=None)
    with pytest.raises(InputRasterError, match="no coordinate reference system"):
        ground_pixel_size_m(ds)


def test_a_float_band_described_as_amplitude_is_refused_under_auto():
    """A Float32 amplitude band (Amplitude_HH) is not power: read as linear power it halves every dB contrast."""
    amplitude = np.sqrt(db_to_power(np.random.default_rng(5).uniform(-25, -2, 5000))).astype(np.float32)
    with pytest.raises(InputRasterError, match=r"described as amplitude \('Amplitude_HH'\).*Square it first.*"
                                               r"linear power"):
        detect_units(np.float32, amplitude, hints=["Amplitude_HH"])
    assert detect_units(np.float32, amplitude ** 2, hints=["Intensity_HH"])[0] is InputUnits.LINEAR
    assert detect_units(np.uint16, np.round(amplitude * 30000) + 1, hints=["Amplitude_HH"])[0] is InputUnits.DN

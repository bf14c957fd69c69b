"""Training (rasterio, sarlulc/training/rasters.py) and the engine (GDAL, sarlulc/inference) feed a model the same
input: for each raster, the normalised model input training makes of the whole raster is compared with
what the engine fed the model, read back through a model whose score is its input (the water
probability is sigmoid(model input)). Equal to float tolerance, never bit for bit: the two read through
different GDAL warpers and sum in different orders."""

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sarlulc.inference import engine
from sarlulc.inference.contract import NORM_FIXED, NORM_SCENE, NORM_SCENE_LAND
from sarlulc.inference.normalisation import prepare_input
from sarlulc.sar.units import InputUnits
from sarlulc.rasters.windows import Window
from sarlulc.training.input_statistics import normalisation_of
from sarlulc.training.rasters import ReadOptions, SarRaster
from factories import sar_db_field, write_alos2_mosaic_tile, write_echo_water_model, write_sar_raster

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TOLERANCE = 1e-4  # of the normalised input (units of the model's input std)
PROBABILITY_NODATA = -1.0
JAXA_PIXEL_DEG = 1.0 / 12000.0


def engine_model_input(raster, tmp_path, normalisation, units: InputUnits):
    """(model input, valid, geotransform) the engine fed an echo model on its model grid."""
    model = write_echo_water_model(tmp_path / "echo.onnx", tile_size=128, tile_overlap=32, **normalisation.to_dict())
    probability_path = str(tmp_path / "probability.tif")
    engine.detect_water(str(raster), str(tmp_path / "mask.tif"), model, probability_path,
                        engine.RunOptions(input_units=units, output_grid="model"), log=lambda line: None)
    dataset = gdal.Open(probability_path)
    probability = dataset.ReadAsArray().astype(np.float64)
    valid = probability != PROBABILITY_NODATA
    with np.errstate(divide="ignore", invalid="ignore"):
        model_input = np.log(probability / (1.0 - probability))
    return model_input, valid, dataset.GetGeoTransform()


def training_model_input(raster, mode: str, units: InputUnits, profile: str = "sarlulc"):
    """(model input, valid, geotransform, normalisation) as training makes them of the whole raster."""
    sar = SarRaster(raster, profile, ReadOptions(input_units=units))
    normalisation = normalisation_of(mode, [sar])
    db, valid = sar.read_db(Window(0, 0, sar.width, sar.height))
    geotransform = sar.grid.geotransform if sar.grid is not None else gdal.Open(str(raster)).GetGeoTransform()
    return prepare_input(db, valid, normalisation, sar.scene), valid, geotransform, normalisation


def assert_same_model_input(raster, tmp_path, mode=NORM_FIXED, units=InputUnits.AUTO, profile="sarlulc"):
    trained, trained_valid, trained_geotransform, normalisation = training_model_input(raster, mode, units, profile)
    fed, fed_valid, fed_geotransform = engine_model_input(raster, tmp_path, normalisation, units)
    assert trained.shape == fed.shape
    np.testing.assert_allclose(trained_geotransform, fed_geotransform, rtol=0, atol=1e-9)
    assert np.array_equal(trained_valid, fed_valid)
    assert trained_valid.mean() > 0.01
    np.testing.assert_allclose(trained[trained_valid], fed[fed_valid], rtol=0, atol=TOLERANCE)
    assert not trained[~trained_valid].any()


@pytest.mark.parametrize("mode", [NORM_FIXED, NORM_SCENE, NORM_SCENE_LAND])
def test_db_raster_on_the_model_grid(tmp_path, mode):
    raster = write_sar_raster(tmp_path / "db.tif", 300, 260, nodata_box=(0, 0, 60, 40))
    assert_same_model_input(raster, tmp_path, mode)


def test_linear_power_raster(tmp_path):
    power = 10.0 ** (sar_db_field(0, 0, 280, 240, seed=3) / 10.0)
    raster = write_sar_raster(tmp_path / "power.tif", 280, 240, values=power, nodata=0.0, nodata_box=(200, 0, 280, 50))
    assert_same_model_input(raster, tmp_path, NORM_SCENE_LAND)


@pytest.mark.parametrize("mode", [NORM_FIXED, NORM_SCENE])
def test_alos2_dn_tile_in_degrees_through_the_10_m_view(tmp_path, mode):
    """UInt16 amplitude DN, nodata 1, 25 m pixels in EPSG:4326: interpolated onto 10 m UTM in linear power."""
    raster = write_alos2_mosaic_tile(tmp_path / "alos2.tif", size=300, strip_rows=120)
    assert_same_model_input(raster, tmp_path, mode)


def test_db_raster_in_degrees_averaged_onto_the_10_m_view(tmp_path):
    """7.5 x 9.2 m pixels in EPSG:4326 (as JAXA ships them): averaged in power onto 10 m UTM."""
    raster = write_sar_raster(tmp_path / "degrees.tif", 360, 300, epsg=4326, pixel_size=JAXA_PIXEL_DEG,
                              origin=(140.0, 36.05), nodata_box=(0, 0, 90, 40))
    assert_same_model_input(raster, tmp_path, NORM_SCENE_LAND)


def test_finer_utm_raster_averaged_onto_the_10_m_view(tmp_path):
    raster = write_sar_raster(tmp_path / "fine.tif", 400, 350, pixel_size=4.0, nodata_box=(300, 300, 400, 350))
    assert_same_model_input(raster, tmp_path)


def test_relative_brightness_in_degrees_is_anchored_alike(tmp_path):
    """An 8-bit stretch read on the model grid: both anchor the scene's land level the same way."""
    stretched = np.clip((sar_db_field(0, 0, 360, 300, seed=5) + 24.0) / 0.101, 1, 254)
    raster = write_sar_raster(tmp_path / "relative.tif", 360, 300, epsg=4326, pixel_size=JAXA_PIXEL_DEG,
                              origin=(140.0, 36.05), values=stretched, dtype="uint8", nodata=0)
    assert_same_model_input(raster, tmp_path, NORM_FIXED, InputUnits.RELATIVE)


needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="the shared real data (../shared/data) is not here")


@needs_shared
def test_sf_airsar_l_band_db(tmp_path):
    """AIRSAR HH dB of San Francisco, 10 m UTM: read on its own grid by both."""
    assert_same_model_input(SHARED / "sf_airsar" / "sf_airsar_hh_hv_vv_db.tif", tmp_path, NORM_SCENE_LAND,
                            InputUnits.DB, "sf_airsar")


@needs_shared
@pytest.mark.parametrize("chip", ["Spain_6860600", "Bolivia_312675"])
def test_sen1floods11_chip_in_degrees(tmp_path, chip):
    """Sentinel-1 VV dB chips in EPSG:4326 with NaN nodata, through the 10 m UTM view."""
    assert_same_model_input(SHARED / "sen1floods11" / f"{chip}_S1Hand.tif", tmp_path, NORM_FIXED, InputUnits.DB,
                            "sen1floods11")


@needs_shared
def test_etci2021_relative_chips(tmp_path):
    """ETCI 2021 8-bit VV brightness. It has no CRS, which the engine needs: a crop is placed on a 10 m UTM
    grid, its saturated value 255 (invalid by the etci2021 profile, which the engine does not know) made
    its nodata 0, as a user would declare it."""
    crop = str(tmp_path / "etci_crop.tif")
    gdal.Translate(crop, str(SHARED / "etci2021" / "nebraska_20170213t002121_vv.tif"), srcWin=(1024, 2048, 768, 768),
                   outputSRS="EPSG:32614", outputBounds=(500000.0, 4007680.0, 507680.0, 4000000.0))
    dataset = gdal.Open(crop, gdal.GA_Update)
    raw = dataset.ReadAsArray()
    assert (raw == 255).any() and dataset.GetRasterBand(1).GetNoDataValue() == 0
    dataset.GetRasterBand(1).WriteArray(np.where(raw == 255, 0, raw))
    dataset = None
    assert_same_model_input(crop, tmp_path, NORM_SCENE_LAND, InputUnits.RELATIVE, "etci2021")

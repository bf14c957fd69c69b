"""Real SAR inputs through Processing, as users run the algorithms: ALOS-2 DN, EPSG:4326 pixels,
speckle filtering, the output grid, and enum values given as text or as option index."""

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from sarlulc.simulate import write_scene
from factories import expected_pixel_classes, write_sar_raster
from test_plugin_algorithms import RecordingFeedback, assert_same_grid, sidecar_palette
from test_plugin_headless import QGIS_PROCESS, plugin_zip, qgis_env, qgis_process  # noqa: F401 (fixtures)
from test_real_inputs import class_scene


def read(path):
    dataset = gdal.Open(str(path))
    return dataset, dataset.GetRasterBand(1).ReadAsArray()


@pytest.fixture(scope="module")
def dn_scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dn")
    scene = class_scene(64, seed=21)
    return scene, str(write_scene(scene, folder, "dn", units="dn")[0])


@pytest.mark.parametrize("algorithm", ["sarlulc:segment", "sarlulc:waterdetect"])
def test_both_algorithms_offer_the_input_parameters(sarlulc_provider, algorithm):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById(algorithm)
    units = alg.parameterDefinition("INPUT_UNITS")
    assert units.options() == ["auto", "ALOS-2 DN", "linear power", "dB", "relative brightness (uncalibrated)"] and units.defaultValue() == "auto"
    assert alg.parameterDefinition("SPECKLE_FILTER").options() == ["none", "Lee", "refined Lee"]
    assert alg.parameterDefinition("OUTPUT_GRID").options() == ["input raster grid", "model grid"]
    assert alg.parameterDefinition("CALIBRATION_FACTOR").defaultValue() == -83.0
    assert alg.parameterDefinition("FILTER_SIZE").defaultValue() == 7
    advanced = {p.name() for p in alg.parameterDefinitions() if p.flags() & p.FlagAdvanced}
    assert {"CALIBRATION_FACTOR", "FILTER_SIZE", "OUTPUT_GRID"} <= advanced
    assert not {"INPUT_UNITS", "SPECKLE_FILTER", "BAND"} & advanced
    band = alg.parameterDefinition("BAND")
    assert not band.flags() & band.FlagOptional and band.defaultValue() == 1  # no "[optional]" in the dialog
    assert "calibrated on the fly" in alg.shortHelpString() and "must be calibrated" not in alg.shortHelpString()


@pytest.mark.parametrize("units", ["ALOS-2 DN", 1, "1", "alos-2 dn", "auto"])
def test_segment_of_alos2_dn_with_units_as_text_or_index(sarlulc_provider, lulc_model, dn_scene, tmp_path, units):
    scene, sar = dn_scene
    feedback = RecordingFeedback()
    result = processing.run("sarlulc:segment", {"INPUT": sar, "MODEL": lulc_model, "INPUT_UNITS": units,
                                                "OUTPUT": str(tmp_path / "classes.tif")}, feedback=feedback)
    classes = read(result["OUTPUT"])[1]
    assert_same_grid(result["OUTPUT"], sar)
    nodata = scene.labels == 0
    np.testing.assert_array_equal(classes == 0, nodata)  # DN 0 (the simulator's margin) is nodata
    sigma0 = 20 * np.log10(np.maximum(read(sar)[1], 1).astype(np.float64)) - 83.0
    assert (classes[~nodata] == expected_pixel_classes(sigma0.astype(np.float32))[~nodata]).mean() > 0.999
    log = "\n".join(feedback.lines)
    assert "Input units: ALOS-2 DN" in log and "Using band 1 of 1" in log
    assert ("detected automatically" in log) == (units == "auto")


def test_water_detect_of_a_geographic_input_returns_on_its_grid(sarlulc_provider, water_model, tmp_path):
    scene = class_scene(32, seed=22, enlarge=3)
    sar = str(write_scene(scene, tmp_path, "geo", units="linear", crs="EPSG:4326")[0])
    feedback = RecordingFeedback()
    result = processing.run("sarlulc:waterdetect", {
        "INPUT": sar, "MODEL": water_model, "SPECKLE_FILTER": "Lee", "OUTPUT": str(tmp_path / "water.tif"),
        "OUTPUT_PROBABILITY": str(tmp_path / "probability.tif")}, feedback=feedback)
    assert_same_grid(result["OUTPUT"], sar)
    assert_same_grid(result["OUTPUT_PROBABILITY"], sar)
    mask, probability = read(result["OUTPUT"])[1], read(result["OUTPUT_PROBABILITY"])[1]
    np.testing.assert_array_equal(mask == 255, scene.labels == 0)
    np.testing.assert_array_equal(probability == -1, mask == 255)
    water, bright = scene.labels == 1, scene.labels >= 4  # -24 dB; -15 dB and brighter (threshold -18 dB)
    assert water.sum() > 500 and (mask[bright] == 0).mean() > 0.99
    assert (mask[water] == 1).mean() > 0.75  # the 7 x 7 Lee filter blurs the narrowest water
    assert sidecar_palette(result["OUTPUT"])[1][0] == "Water"
    log = "\n".join(feedback.lines)
    assert "Resampling: input 10.0 m in EPSG:4326 (WGS 84) → read on a 10 m grid in EPSG:32654" in log
    assert "Speckle filter: Lee, 7 x 7 px (on the model grid)" in log


def test_output_grid_by_index_keeps_the_model_grid(sarlulc_provider, lulc_model, tmp_path):
    scene = class_scene(48, seed=23)
    sar = str(write_scene(scene, tmp_path, "geo", units="db", crs="EPSG:4326")[0])
    result = processing.run("sarlulc:segment", {"INPUT": sar, "MODEL": lulc_model, "OUTPUT_GRID": 1,
                                                "OUTPUT": str(tmp_path / "classes.tif")})
    output = read(result["OUTPUT"])[0]
    assert output.GetSpatialRef().GetAuthorityCode(None) == "32654"
    assert output.GetGeoTransform()[1] == 10.0


def test_ambiguous_units_are_refused_naming_input_units(sarlulc_provider, lulc_model, tmp_path):
    values = np.linspace(2.0, 40.0, 40 * 30).reshape(30, 40)
    sar = write_sar_raster(tmp_path / "odd.tif", 40, 30, values=values)
    (tmp_path / "out").mkdir()
    with pytest.raises(QgsProcessingException, match="Cannot tell the units.*set INPUT_UNITS to ALOS-2 DN"):
        processing.run("sarlulc:segment", {"INPUT": sar, "MODEL": lulc_model,
                                           "OUTPUT": str(tmp_path / "out" / "classes.tif")})
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("name, value, message", [
    ("INPUT_UNITS", "amplitude", "Unknown input units 'amplitude'. Choose one of: auto, ALOS-2 DN, linear power, dB"),
    ("INPUT_UNITS", 5, "Unknown input units '5'. Choose one of: auto, ALOS-2 DN"),
    ("SPECKLE_FILTER", "median", "Unknown speckle filter 'median'. Choose one of: none, Lee, refined Lee"),
    ("OUTPUT_GRID", "utm", r"\(OUTPUT_GRID\): 'utm' is not one of its options: input raster grid, model grid"),
])
def test_unknown_enum_values_are_refused_naming_the_options(sarlulc_provider, lulc_model, sar_raster, tmp_path, name,
                                                            value, message):
    with pytest.raises(QgsProcessingException, match=message):
        processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": lulc_model, name: value,
                                           "OUTPUT": str(tmp_path / "classes.tif")})
    assert not (tmp_path / "classes.tif").exists()


@pytest.mark.skipif(not QGIS_PROCESS.is_file(), reason=f"{QGIS_PROCESS} is absent")
def test_qgis_process_takes_enum_indexes_and_texts(qgis_env, lulc_model, dn_scene, tmp_path):
    scene, sar = dn_scene
    output = tmp_path / "classes.tif"
    run = qgis_process(qgis_env, "run", "sarlulc:segment", "--", f"INPUT={sar}", f"MODEL={lulc_model}",
                       "INPUT_UNITS=1", "SPECKLE_FILTER=refined Lee", "OUTPUT_GRID=0", f"OUTPUT={output}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Input units: ALOS-2 DN (as set by INPUT_UNITS)" in run.stdout
    assert "Speckle filter: refined Lee, 7 x 7 px" in run.stdout
    np.testing.assert_array_equal(read(output)[1] == 0, scene.labels == 0)

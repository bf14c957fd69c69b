"""The right input: SAR LULC results and class rasters are refused as input, and the dialog proposes
the most recent layer that may be backscatter, not the result the last run just loaded."""

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sarlulc.inference.engine import RunOptions, detect_water, segment
from sarlulc.errors import InputRasterError

from factories import write_pixel_lulc_model, write_pixel_water_model, write_sar_raster

REFUSAL = "this is a SAR LULC result ({}), not backscatter: choose the SAR raster"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The four outputs of a Segment and a Water Detect run, and the scene they came from."""
    folder = tmp_path_factory.mktemp("results")
    scene = write_sar_raster(folder / "scene_hh_db.tif", 120, 90)
    lulc = write_pixel_lulc_model(folder / "lulc.onnx", tile_size=64, tile_overlap=16)
    water = write_pixel_water_model(folder / "water.onnx", tile_size=64, tile_overlap=16)
    segment(scene, folder / "classes.tif", lulc, confidence_path=folder / "confidence.tif")
    detect_water(scene, folder / "water.tif", water, probability_path=folder / "probability.tif")
    return folder, scene, lulc


@pytest.mark.parametrize("name, what", [
    ("classes.tif", "a land-cover class map"), ("confidence.tif", "a land-cover confidence raster"),
    ("water.tif", "a water mask"), ("probability.tif", "a water probability raster")])
@pytest.mark.parametrize("units", ["auto", "linear power"])
def test_a_result_given_as_input_is_refused_whatever_the_units(results, tmp_path, name, what, units):
    folder, _, lulc = results
    result = folder / name
    before = hashlib.sha256(result.read_bytes()).hexdigest()
    with pytest.raises(InputRasterError, match=re.escape(f"cannot be used as input: {REFUSAL.format(what)}.")):
        segment(str(result), tmp_path / "again.tif", lulc, options=RunOptions(input_units=units))
    assert list(tmp_path.iterdir()) == []
    assert hashlib.sha256(result.read_bytes()).hexdigest() == before


def test_a_class_raster_of_another_tool_is_refused(results, tmp_path):
    _, _, lulc = results
    path = tmp_path / "landcover_reference.tif"
    write_sar_raster(path, 60, 40, dtype="uint8", nodata=0, values=np.full((40, 60), 3))
    dataset = gdal.Open(str(path), gdal.GA_Update)
    table = gdal.ColorTable()
    table.SetColorEntry(3, (0, 128, 0, 255))
    dataset.GetRasterBand(1).SetColorTable(table)
    dataset = None
    with pytest.raises(InputRasterError, match="this is a class raster .*, not backscatter: choose the SAR raster"):
        segment(str(path), tmp_path / "out.tif", lulc)


def test_the_dialog_proposes_the_most_recent_backscatter_layer(sarlulc_provider, results, qgis_new_project):
    from qgis.core import QgsApplication, QgsRasterLayer

    folder, scene, _ = results
    older_scene = write_sar_raster(folder / "older_scene.tif", 50, 40)
    # Loaded as after a run: older scene, scene, then the results on top of it.
    for path in (older_scene, scene, folder / "probability.tif", folder / "classes.tif", folder / "confidence.tif"):
        qgis_new_project.addMapLayer(QgsRasterLayer(str(path), Path(path).stem, "gdal"))
    root = qgis_new_project.layerTreeRoot()
    assert [node.name() for node in root.findLayers()][0] == "confidence"

    for algorithm_id in ("sarlulc:segment", "sarlulc:waterdetect"):
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        default = qgis_new_project.mapLayer(algorithm.parameterDefinition("INPUT").defaultValue())
        assert default.source() == scene


def test_no_default_input_without_a_backscatter_layer_or_outside_the_desktop(sarlulc_provider, results,
                                                                           qgis_new_project, monkeypatch):
    from qgis.core import QgsApplication, QgsRasterLayer

    folder, scene, _ = results
    qgis_new_project.addMapLayer(QgsRasterLayer(str(folder / "classes.tif"), "classes", "gdal"))
    registry = QgsApplication.processingRegistry()
    assert registry.createAlgorithmById("sarlulc:segment").parameterDefinition("INPUT").defaultValue() is None

    qgis_new_project.addMapLayer(QgsRasterLayer(scene, "scene", "gdal"))
    monkeypatch.setattr("qgis.utils.iface", None)  # qgis_process, scripts: a missing INPUT stays an error
    assert registry.createAlgorithmById("sarlulc:segment").parameterDefinition("INPUT").defaultValue() is None

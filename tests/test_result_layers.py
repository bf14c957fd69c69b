"""Result layers as the desktop gets them: the algorithm runs on Processing's worker thread (as from
its dialog), the results load on the main thread, and they must stay whole after the worker thread
ends: a layer opened on that thread lost its CRS some 30 s after the run, and everything QGIS then
wrote from it (Vectorise's GeoPackage, a field package) had no CRS either.
"""

import sqlite3
import time

import numpy as np
import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
)
from qgis.PyQt.QtCore import QCoreApplication, QThreadPool

from factories import write_sar_raster

EPSG = 32654


def pump(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.02)


@pytest.fixture
def short_lived_threads():
    """Processing's worker threads end 30 s after their last task; here after 0.2 s."""
    pool = QThreadPool.globalInstance()
    before = pool.expiryTimeout()
    pool.setExpiryTimeout(200)
    yield
    pool.setExpiryTimeout(before)


@pytest.fixture
def project():
    QgsProject.instance().removeAllMapLayers()  # what earlier tests loaded
    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()


class RecordedFeedback(QgsProcessingFeedback):
    """What the dialog would show in red."""

    def __init__(self):
        super().__init__()
        self.errors = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 (QGIS API)
        self.errors.append(error)


def run_like_the_dialog(algorithm_id, parameters, outputs, project, red=None):
    """Run on the task manager's worker thread, load the results as the dialog does (each output a
    layer definition to load, "" for an output left empty, as a batch row gives it), and wait past
    the end of the worker thread; the loaded layers by name. No red text unless ``red`` collects it."""
    from processing.gui.Postprocessing import handleAlgorithmResults

    algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = RecordedFeedback()
    for name, path in outputs.items():
        parameters[name] = QgsProcessingOutputLayerDefinition(str(path), project)
        parameters[name].destinationName = algorithm.parameterDefinition(name).description()
    task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
    finished = {}

    def executed(ok, results):
        finished["ok"] = ok
        handleAlgorithmResults(algorithm, context, feedback, not ok, results)
    task.executed.connect(executed)
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 120
    while not finished and time.monotonic() < deadline:
        pump(0.05)
    assert finished.get("ok"), "the run failed or did not finish"
    pump(1.5)  # the worker thread is gone (expiry 0.2 s)
    if red is None:
        assert feedback.errors == []
    else:
        red.extend(feedback.errors)
    return {layer.name(): layer for layer in project.mapLayers().values()}


def geopackage_srs_ids(path):
    with sqlite3.connect(path) as db:
        return {table: srs for table, srs in db.execute("SELECT table_name, srs_id FROM gpkg_geometry_columns")}


def test_segment_results_keep_their_crs_after_the_worker_thread_ends(
        sarlulc_provider, lulc_model, tmp_path, short_lived_threads, project):
    scene = write_sar_raster(tmp_path / "scene.tif", 256, 256, epsg=EPSG)
    layers = run_like_the_dialog("sarlulc:segment", {"INPUT": scene, "MODEL": lulc_model},
                                 {"OUTPUT": tmp_path / "classes.tif", "OUTPUT_CONFIDENCE": tmp_path / "conf.tif"},
                                 project)
    assert set(layers) == {"scene - land cover", "scene - land-cover confidence"}
    for layer in layers.values():
        assert layer.crs().authid() == f"EPSG:{EPSG}"
        assert "UTM zone 54N" in layer.crs().toWkt()
        assert layer.dataProvider().crs().toWkt() == layer.crs().toWkt()
    assert layers["scene - land cover"].renderer().type() == "paletted"  # still styled from its sidecar

    # What the user does next with the result layer: QGIS's own tool and ours keep the CRS.
    import processing

    classes = layers["scene - land cover"]
    native = processing.run("native:pixelstopolygons", {"INPUT_RASTER": classes, "RASTER_BAND": 1,
                                                         "FIELD_NAME": "code", "OUTPUT": str(tmp_path / "n.gpkg")})
    assert set(geopackage_srs_ids(native["OUTPUT"].split("|")[0]).values()) == {EPSG}
    ours = processing.run("sarlulc:vectorise", {"INPUT": classes, "OUTPUT": str(tmp_path / "polygons.gpkg")})
    assert set(geopackage_srs_ids(ours["OUTPUT"].split("|")[0]).values()) == {EPSG}


def test_water_and_vectorise_results_keep_their_crs(sarlulc_provider, lulc_model, water_model, tmp_path,
                                                    short_lived_threads, project):
    scene = write_sar_raster(tmp_path / "scene.tif", 256, 256, epsg=EPSG)
    water = run_like_the_dialog("sarlulc:waterdetect", {"INPUT": scene, "MODEL": water_model},
                                {"OUTPUT": tmp_path / "water.tif"}, project)
    assert water["scene - water"].crs().authid() == f"EPSG:{EPSG}"
    assert water["scene - water"].crs().toWkt()
    import processing

    classes = processing.run("sarlulc:segment", {"INPUT": scene, "MODEL": lulc_model,
                                                 "OUTPUT": str(tmp_path / "classes.tif")})["OUTPUT"]
    layers = run_like_the_dialog("sarlulc:vectorise", {"INPUT": classes, "MIN_AREA": 500},
                                 {"OUTPUT": tmp_path / "p.gpkg", "OUTPUT_RASTER": tmp_path / "generalised.tif"},
                                 project)
    generalised = layers["classes - generalised classes"]
    assert generalised.crs().authid() == f"EPSG:{EPSG}" and generalised.crs().toWkt()
    assert set(geopackage_srs_ids(tmp_path / "p.gpkg").values()) == {EPSG}


def test_temporary_and_empty_outputs_load_without_red_errors(sarlulc_provider, lulc_model, tmp_path, project):
    """Default temporary outputs of the field-work algorithms, and an optional output left empty in a
    batch row: the results load, and nothing is reported as "not correctly generated"."""
    import processing

    scene = write_sar_raster(tmp_path / "scene.tif", 128, 128, epsg=EPSG)
    segmented = run_like_the_dialog("sarlulc:segment", {"INPUT": scene, "MODEL": lulc_model},
                                    {"OUTPUT": tmp_path / "classes.tif", "OUTPUT_CONFIDENCE": ""}, project)
    assert set(segmented) == {"scene - land cover"}
    classes = processing.run("sarlulc:segment", {"INPUT": scene, "MODEL": lulc_model,
                                                 "OUTPUT": str(tmp_path / "c.tif")})["OUTPUT"]
    areas = run_like_the_dialog("sarlulc:areastats", {"INPUT": classes}, {"OUTPUT": "TEMPORARY_OUTPUT"}, project)
    assert "Class areas" in areas and areas["Class areas"].featureCount() > 0
    polygons = run_like_the_dialog("sarlulc:vectorise", {"INPUT": classes, "MIN_AREA": 500},
                                   {"OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_RASTER": ""}, project)
    assert polygons["Class polygons"].renderer().type() == "categorizedSymbol"  # styled, without a red word
    assert "c - generalised classes" not in polygons


def test_the_example_model_runs_without_ogr_messages(sarlulc_provider, lulc_model, water_model, tmp_path, project):
    """The model runner looks each result up by path before the next step; a raster it does not hold
    it would try with OGR first ("Cannot open …" in the log)."""
    import processing

    messages = []

    def received(message, tag, level):
        messages.append((tag, message))
    QgsApplication.messageLog().messageReceived.connect(received)
    try:
        scene = write_sar_raster(tmp_path / "scene.tif", 128, 128, epsg=EPSG)
        results = processing.runAndLoadResults("sarlulc:Land cover and water from SAR", {
            "image": scene, "lulc_model": lulc_model, "water_model": water_model,
            "segment:classes": "TEMPORARY_OUTPUT", "waterdetect:water": "TEMPORARY_OUTPUT"})
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(received)
    assert [m for m in messages if m[0] == "OGR"] == []
    loaded = {layer.name(): layer for layer in project.mapLayers().values()}
    assert set(loaded) == {"scene - land cover", "scene - water"}, results
    assert all(layer.crs().authid() == f"EPSG:{EPSG}" for layer in loaded.values())


def test_a_rerun_to_a_loaded_output_shows_the_new_map_with_the_class_legend_open(
        sarlulc_provider, lulc_model, tmp_path, project):
    """Processing hands the earlier run's layer of the same file over again: it reads the file anew (not
    GDAL's handle on the replaced one); the class legend shows open, the hidden score raster's folded."""
    dry = write_sar_raster(tmp_path / "dry.tif", 128, 128, epsg=EPSG, values=np.full((128, 128), -8.0))
    wet = write_sar_raster(tmp_path / "wet.tif", 128, 128, epsg=EPSG, values=np.full((128, 128), -22.0))
    outputs = {"OUTPUT": tmp_path / "classes.tif", "OUTPUT_CONFIDENCE": tmp_path / "confidence.tif"}
    first = run_like_the_dialog("sarlulc:segment", {"INPUT": dry, "MODEL": lulc_model}, outputs,
                                project)["dry - land cover"]
    before = first.dataProvider().sample(first.extent().center(), 1)[0]
    layers = run_like_the_dialog("sarlulc:segment", {"INPUT": wet, "MODEL": lulc_model}, outputs, project)
    second = layers["wet - land cover"]
    assert second.dataProvider().sample(second.extent().center(), 1)[0] != before
    root = project.layerTreeRoot()
    assert root.findLayer(second.id()).isExpanded()
    assert not root.findLayer(layers["wet - land-cover confidence"].id()).isExpanded()


def test_a_field_package_loads_its_layers_styled_from_the_dialog(sarlulc_provider, segmented_scene, tmp_path,
                                                                 short_lived_threads, project):
    """Like the other algorithms, Field Package loads what it made: its layers, styled as in its own project,
    with their CRS past the worker thread; the class raster (what the polygons show) switched off."""
    package = tmp_path / "package.gpkg"
    layers = run_like_the_dialog("sarlulc:fieldpackage", {
        "CLASSES": segmented_scene["classes"], "WATER": segmented_scene["water"], "OUTPUT": str(package)}, {},
        project)
    assert set(layers) == {"Field checks", "Class polygons", "Classes", "Water", "Class statistics",
                           "Water statistics"}
    for name in ("Field checks", "Class polygons", "Classes", "Water"):
        assert layers[name].crs().authid() == f"EPSG:{EPSG}", name
        assert str(package) in layers[name].source()
    assert layers["Class polygons"].renderer().type() == "categorizedSymbol"
    classes = layers["Classes"].renderer()
    assert classes.type() == "paletted" and len(classes.classes()) <= 9  # the legend's classes, not codes 0-255
    root = project.layerTreeRoot()
    assert not root.findLayer(layers["Classes"].id()).itemVisibilityChecked()
    assert root.findLayer(layers["Water"].id()).itemVisibilityChecked()

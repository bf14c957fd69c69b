"""Both algorithms run through Processing as a user runs them: outputs, georeferencing, styles.

The factory models compute each pixel's result from that pixel alone, so the exact expected
map is known (tests.factories) whatever the tiling.
"""

import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsRasterLayer,
    QgsRasterSymbolLegendNode,
    QgsSingleBandPseudoColorRenderer,
)

from sarlulc.inference.contract import ModelContract
from factories import NORM_MEAN, NORM_STD, expected_pixel_classes, write_sar_raster


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps the log lines and progress values a user would see in the dialog."""

    def __init__(self):
        super().__init__()
        self.lines = []
        self.progress_values = []
        self.progressChanged.connect(self.progress_values.append)

    def pushInfo(self, info):  # noqa: N802 (QGIS API)
        self.lines.append(info)
        super().pushInfo(info)


def read_band(path):
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    return dataset, band.ReadAsArray(), band.GetNoDataValue(), gdal.GetDataTypeName(band.DataType)


def input_db_and_valid(path):
    _, db, nodata, _ = read_band(path)
    return db, db != nodata


def assert_same_grid(output_path, input_path):
    output, source = gdal.Open(str(output_path)), gdal.Open(str(input_path))
    assert (output.RasterXSize, output.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    assert output.GetGeoTransform() == pytest.approx(source.GetGeoTransform())
    assert output.GetSpatialRef().IsSame(source.GetSpatialRef())


def palette(layer):
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    return {c.value: (c.label, c.color.name()) for c in renderer.classes()}


def sidecar_palette(raster_path):
    """The palette entries the .qml beside the raster holds: what QGIS will show in the legend."""
    qml = Path(raster_path).with_suffix(".qml")
    assert qml.is_file()
    entries = ElementTree.parse(qml).getroot().iter("paletteEntry")
    return {int(e.get("value")): (e.get("label"), e.get("color")) for e in entries}


def contract_palette(model_path):
    return {c.code: (c.name, c.color) for c in ModelContract.from_onnx(model_path).classes}


def assert_score_style(raster_path):
    layer = QgsRasterLayer(str(raster_path), "score", "gdal")
    renderer = layer.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)


def run_segment(sar_raster, lulc_model, output, **extra):
    return processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": lulc_model, "OUTPUT": str(output),
                                              **extra})


def test_segment_writes_the_class_map_on_the_input_grid_with_the_model_legend(
        sarlulc_provider, lulc_model, sar_raster, tmp_path):
    output, confidence = tmp_path / "classes.tif", tmp_path / "confidence.tif"
    results = run_segment(sar_raster, lulc_model, output, OUTPUT_CONFIDENCE=str(confidence))

    assert results == {"OUTPUT": str(output), "OUTPUT_CONFIDENCE": str(confidence)}
    assert_same_grid(output, sar_raster)
    _, classes, nodata, data_type = read_band(output)
    db, valid = input_db_and_valid(sar_raster)
    assert (data_type, nodata) == ("Byte", 0)
    assert np.all(classes[~valid] == 0)
    np.testing.assert_array_equal(classes[valid], expected_pixel_classes(db[valid]))
    assert set(np.unique(classes[valid])) <= set(contract_palette(lulc_model))

    assert_same_grid(confidence, sar_raster)
    _, scores, score_nodata, score_type = read_band(confidence)
    assert (score_type, score_nodata) == ("Float32", -1.0)
    assert np.all(scores[~valid] == -1.0)
    assert np.all((scores[valid] > 0.0) & (scores[valid] <= 1.0))

    # Opening the file the way QGIS does picks up the .qml sidecar: names and colours of the model.
    layer = QgsRasterLayer(str(output), "classes", "gdal")
    assert palette(layer) == contract_palette(lulc_model)
    assert sidecar_palette(output) == contract_palette(lulc_model)
    assert_score_style(confidence)


def test_water_detect_writes_a_blue_water_mask_and_honours_the_threshold(
        sarlulc_provider, water_model, sar_raster, tmp_path):
    db, valid = input_db_and_valid(sar_raster)
    # The factory water model: probability = sigmoid(4 * (t - x)) on normalised dB, t from -18 dB.
    probability = 1.0 / (1.0 + np.exp(-4.0 * ((-18.0 - NORM_MEAN) / NORM_STD - (db - NORM_MEAN) / NORM_STD)))
    for threshold, name in ((None, "default"), (0.9, "strict")):
        output, probability_path = tmp_path / f"water_{name}.tif", tmp_path / f"water_{name}_p.tif"
        parameters = {"INPUT": sar_raster, "MODEL": water_model, "OUTPUT": str(output),
                      "OUTPUT_PROBABILITY": str(probability_path)}
        if threshold is not None:
            parameters["THRESHOLD"] = threshold
        processing.run("sarlulc:waterdetect", parameters)

        assert_same_grid(output, sar_raster)
        _, water, nodata, data_type = read_band(output)
        assert (data_type, nodata) == ("Byte", 255)
        assert np.all(water[~valid] == 255)
        expected = (probability[valid] >= (threshold or 0.5)).astype(np.uint8)
        np.testing.assert_array_equal(water[valid], expected)
        assert 0 < expected.sum() < expected.size  # the scene has both water and land
        _, scores, _, _ = read_band(probability_path)
        np.testing.assert_allclose(scores[valid], probability[valid], atol=1e-4)

        water_class = {1: ("Water", "#1f78b4")}
        assert palette(QgsRasterLayer(str(output), "water", "gdal")) == water_class
        assert sidecar_palette(output) == water_class
        assert_score_style(probability_path)
    _, default_water, _, _ = read_band(tmp_path / "water_default.tif")
    _, strict_water, _, _ = read_band(tmp_path / "water_strict.tif")
    assert (strict_water[valid] == 1).sum() < (default_water[valid] == 1).sum()


def test_tiling_options_reach_the_engine_and_leave_no_seams(sarlulc_provider, lulc_model, sar_raster, tmp_path):
    feedback = RecordingFeedback()
    run_segment(sar_raster, lulc_model, tmp_path / "default.tif")
    processing.run("sarlulc:segment", {
        "INPUT": sar_raster, "MODEL": lulc_model, "OUTPUT": str(tmp_path / "tiled.tif"), "DEVICE": "cpu",
        "TILE_SIZE": 32, "OVERLAP": 0, "BATCH_SIZE": 3, "THREADS": 1}, feedback=feedback)

    log = "\n".join(feedback.lines)
    assert "of 32 px with 0 px overlap, batches of 3" in log
    assert "ONNX Runtime threads: 1 (as set)" in log
    assert "CPUExecutionProvider" in log
    assert "test lulc model" in log
    assert "Precision" not in log  # auto on the CPU: fp32, nothing to decide
    assert feedback.progress_values and max(feedback.progress_values) == 100.0
    np.testing.assert_array_equal(read_band(tmp_path / "tiled.tif")[1], read_band(tmp_path / "default.tif")[1])


def test_precision_reaches_the_engine_and_fp16_keeps_the_classes(sarlulc_provider, lulc_model, sar_raster, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("SAR_LULC_CACHE", str(tmp_path / "cache"))
    feedback = RecordingFeedback()
    run_segment(sar_raster, lulc_model, tmp_path / "fp32.tif")
    processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": lulc_model, "OUTPUT": str(tmp_path / "fp16.tif"),
                                       "PRECISION": "fp16"}, feedback=feedback)
    assert "Precision: fp16 (fp16 gives the same class as fp32 on " in "\n".join(feedback.lines)
    fp32, fp16 = read_band(tmp_path / "fp32.tif")[1], read_band(tmp_path / "fp16.tif")[1]
    assert np.mean(fp32 == fp16) >= 0.99


def test_results_loaded_into_the_project_carry_the_legend(sarlulc_provider, lulc_model, water_model, sar_raster,
                                                          tmp_path, qgis_new_project):
    """The dialog's route: outputs loaded on completion get their style from the post-processor."""
    processing.runAndLoadResults("sarlulc:segment", {
        "INPUT": sar_raster, "MODEL": lulc_model, "OUTPUT": str(tmp_path / "classes.tif"),
        "OUTPUT_CONFIDENCE": str(tmp_path / "confidence.tif")})
    processing.runAndLoadResults("sarlulc:waterdetect", {
        "INPUT": sar_raster, "MODEL": water_model, "OUTPUT": str(tmp_path / "water.tif")})

    layers = {Path(layer.source()).name: layer for layer in qgis_new_project.mapLayers().values()}
    assert set(layers) == {"classes.tif", "confidence.tif", "water.tif"}
    assert palette(layers["classes.tif"]) == contract_palette(lulc_model)
    assert palette(layers["water.tif"]) == {1: ("Water", "#1f78b4")}
    assert isinstance(layers["confidence.tif"].renderer(), QgsSingleBandPseudoColorRenderer)
    legend_nodes = layers["classes.tif"].legend().createLayerTreeModelLegendNodes(
        qgis_new_project.layerTreeRoot().findLayer(layers["classes.tif"]))
    legend_labels = [node.data(0) for node in legend_nodes if isinstance(node, QgsRasterSymbolLegendNode)]
    assert legend_labels == [name for name, _ in contract_palette(lulc_model).values()]


@pytest.mark.parametrize("classes_name, score_name", [("a_classes.tif", "z_score.tif"), ("z_classes.tif", "a_score.tif")])
def test_the_class_map_loads_on_top_of_its_score_raster_which_is_unchecked(
        sarlulc_provider, lulc_model, sar_raster, tmp_path, qgis_new_project, classes_name, score_name):
    """Processing loads outputs sorted by path, each on top: whichever comes last, the class map stays
    visible above its confidence raster (which would hide it), and that raster starts unchecked."""
    processing.runAndLoadResults("sarlulc:segment", {
        "INPUT": sar_raster, "MODEL": lulc_model, "OUTPUT": str(tmp_path / classes_name),
        "OUTPUT_CONFIDENCE": str(tmp_path / score_name)})
    nodes = qgis_new_project.layerTreeRoot().findLayers()
    assert [Path(node.layer().source()).name for node in nodes] == [classes_name, score_name]
    assert nodes[0].itemVisibilityChecked() and not nodes[1].itemVisibilityChecked()


def test_temporary_results_are_named_after_the_input(sarlulc_provider, lulc_model, water_model, sar_raster,
                                                     qgis_new_project):
    """Repeated runs on different scenes can be told apart in the Layers panel."""
    for algorithm, model, extra in (("sarlulc:segment", lulc_model, "OUTPUT_CONFIDENCE"),
                                    ("sarlulc:waterdetect", water_model, "OUTPUT_PROBABILITY")):
        processing.runAndLoadResults(algorithm, {"INPUT": sar_raster, "MODEL": model,
                                                 "OUTPUT": "TEMPORARY_OUTPUT", extra: "TEMPORARY_OUTPUT"})
    nodes = qgis_new_project.layerTreeRoot().findLayers()
    assert [node.name() for node in nodes] == [
        "scene_hh_db - water", "scene_hh_db - water probability",
        "scene_hh_db - land cover", "scene_hh_db - land-cover confidence"]
    assert [node.itemVisibilityChecked() for node in nodes] == [True, False, True, False]


def test_batch_route_runs_each_row_with_a_fresh_context_and_styles_every_result(
        sarlulc_provider, water_model, tmp_path, qgis_new_project):
    """What the batch dialog does: one algorithm, one row after another, results loaded into the project."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("sarlulc:waterdetect")
    rows = []
    for i in range(2):
        scene = write_sar_raster(tmp_path / f"scene_{i}.tif", 70 + 20 * i, 50, seed=i)
        rows.append({"INPUT": scene, "MODEL": water_model,
                     "OUTPUT": QgsProcessingOutputLayerDefinition(str(tmp_path / f"water_{i}.tif"), qgis_new_project)})
    for row in rows:
        context = QgsProcessingContext()
        context.setProject(qgis_new_project)
        feedback = QgsProcessingFeedback()
        results, ok = algorithm.run(algorithm.preprocessParameters(row), context, feedback)
        assert ok
        assert handleAlgorithmResults(algorithm, context, feedback, False, row)

    loaded = sorted(qgis_new_project.mapLayers().values(), key=lambda layer: layer.source())
    assert [Path(layer.source()).name for layer in loaded] == ["water_0.tif", "water_1.tif"]
    for layer, row in zip(loaded, rows):
        assert palette(layer) == {1: ("Water", "#1f78b4")}
        assert_same_grid(layer.source(), row["INPUT"])


def test_background_task_route(sarlulc_provider, lulc_model, sar_raster, tmp_path):
    """The single-run dialog runs the algorithm in a QgsProcessingAlgRunnerTask on a worker thread."""
    from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask
    from qgis.PyQt.QtCore import QCoreApplication

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("sarlulc:segment")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    output = tmp_path / "classes.tif"
    task = QgsProcessingAlgRunnerTask(algorithm, {"INPUT": sar_raster, "MODEL": lulc_model, "OUTPUT": str(output)},
                                      context, feedback)
    outcome = {}
    task.executed.connect(lambda ok, results: outcome.update(ok=ok, results=results))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 30
    while not outcome and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert outcome == {"ok": True, "results": {"OUTPUT": str(output), "OUTPUT_CONFIDENCE": None}}
    assert palette(QgsRasterLayer(str(output), "classes", "gdal")) == contract_palette(lulc_model)


class CancelAfterFirstProgress(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.progressChanged.connect(lambda _progress: self.cancel())


def test_cancel_leaves_no_output_file(sarlulc_provider, lulc_model, tmp_path):
    scene = write_sar_raster(tmp_path / "scene.tif", 300, 260)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    feedback = CancelAfterFirstProgress()
    with pytest.raises(Exception, match="[Cc]ancel"):
        processing.run("sarlulc:segment", {
            "INPUT": scene, "MODEL": lulc_model, "OUTPUT": str(out_dir / "classes.tif"),
            "OUTPUT_CONFIDENCE": str(out_dir / "confidence.tif"), "TILE_SIZE": 64, "BATCH_SIZE": 1},
            feedback=feedback)
    assert feedback.isCanceled()
    assert list(out_dir.iterdir()) == []

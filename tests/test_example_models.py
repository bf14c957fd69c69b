"""The example models shipped in example_models/: listed in the toolbox, valid for the Model Designer, runnable.

A saved model goes stale when an algorithm gains a parameter: the Model Designer then reports that
parameter as "mandatory" and refuses to run the model. validate() is the Designer's own check.
"""

from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingModelAlgorithm

from factories import expected_pixel_classes
from test_plugin_algorithms import contract_palette, input_db_and_valid, read_band, sidecar_palette

REPO = Path(__file__).resolve().parent.parent
MODELS = sorted((REPO / "example_models").glob("*.model3"))
CHAIN = "sarlulc:Land cover and water from SAR"
ACCURACY = "sarlulc:Land cover and its accuracy against a reference"


def test_both_examples_are_shipped_and_listed_in_the_toolbox(sarlulc_provider):
    assert [path.name for path in MODELS] == ["land_cover_accuracy.model3", "land_cover_and_water.model3"]
    listed = {alg.id(): alg for alg in sarlulc_provider.algorithms() if alg.group() == "Example models"}
    assert set(listed) == {CHAIN, ACCURACY}
    for model in listed.values():  # what the toolbox holds, not a fresh copy: its steps are found
        assert model.validate() == (True, []) and model.canExecute() == (True, "")


def test_a_freshly_registered_provider_lists_runnable_models(qgis_processing):
    """Registered as the plugin does, the models' steps are looked up while the provider loads,
    before the registry holds it; the provider loads again once it does."""
    from sar_lulc.processing_provider.provider import SarLulcProvider

    registry = QgsApplication.processingRegistry()
    registry.removeProvider("sarlulc")
    provider = SarLulcProvider()
    try:
        assert registry.addProvider(provider)
        assert registry.algorithmById(CHAIN).validate() == (True, [])
    finally:
        registry.removeProvider("sarlulc")  # the sarlulc_provider fixture registers it again when needed


@pytest.mark.parametrize("path", MODELS, ids=lambda path: path.name)
def test_example_is_valid_in_the_model_designer(sarlulc_provider, path):
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(path))
    assert model.validate() == (True, [])
    for child in model.childAlgorithms().values():
        assert child.algorithm() is not None, child.algorithmId()
        algorithm = child.algorithm()
        # Every parameter of every step has a value: none would show as missing in the step dialog.
        required = {d.name() for d in algorithm.parameterDefinitions()
                    if not d.isDestination() and not d.flags() & d.FlagOptional}
        assert required <= set(child.parameterSources()), child.childId()


@pytest.mark.parametrize("path", MODELS, ids=lambda path: path.name)
def test_example_matches_the_algorithms_of_today(sarlulc_provider, path, tmp_path):
    """The shipped file is what tools/example_models.py writes now (run `make example-models`)."""
    from tools.example_models import EXAMPLES

    assert EXAMPLES[path.name](QgsApplication.processingRegistry()).toFile(str(tmp_path / path.name))
    shipped, today = QgsProcessingModelAlgorithm(), QgsProcessingModelAlgorithm()
    assert shipped.fromFile(str(path)) and today.fromFile(str(tmp_path / path.name))
    assert today.toVariant() == shipped.toVariant()


def test_parameter_check_of_the_registered_model(sarlulc_provider, sar_raster):
    model = QgsApplication.processingRegistry().createAlgorithmById(CHAIN)
    context = QgsProcessingContext()
    assert model.checkParameterValues({"image": sar_raster, "segment:classes": "TEMPORARY_OUTPUT",
                                       "waterdetect:water": "TEMPORARY_OUTPUT"}, context) == (True, "")
    ok, message = model.checkParameterValues({"segment:classes": "TEMPORARY_OUTPUT"}, context)
    assert not ok and "for image: no value specified" in message


def test_land_cover_and_water_runs_both_algorithms_on_one_scene(sarlulc_provider, lulc_model, water_model,
                                                                sar_raster, tmp_path):
    classes, water = tmp_path / "classes.tif", tmp_path / "water.tif"
    results = processing.run(CHAIN, {
        "image": sar_raster, "lulc_model": lulc_model, "water_model": water_model,
        "segment:classes": str(classes), "waterdetect:water": str(water)})

    assert results["segment:classes"] == str(classes) and results["waterdetect:water"] == str(water)
    db, valid = input_db_and_valid(sar_raster)
    np.testing.assert_array_equal(read_band(classes)[1][valid], expected_pixel_classes(db[valid]))
    assert set(np.unique(read_band(water)[1][valid])) == {0, 1}
    assert sidecar_palette(classes) == contract_palette(lulc_model)
    assert sidecar_palette(water) == {1: ("Water", "#1f78b4")}


def test_land_cover_accuracy_scores_the_map_against_the_reference(sarlulc_provider, lulc_model, sar_raster,
                                                                  tmp_path):
    """A reference that agrees with the map wherever the scene has data: overall accuracy and mIoU are 1."""
    db, valid = input_db_and_valid(sar_raster)
    reference = tmp_path / "reference.tif"
    gdal.Translate(str(reference), sar_raster, outputType=gdal.GDT_Byte, noData=0)
    dataset = gdal.Open(str(reference), gdal.GA_Update)
    dataset.GetRasterBand(1).WriteArray(np.where(valid, expected_pixel_classes(np.where(valid, db, -10.0)), 0))
    dataset = None

    results = processing.run(ACCURACY, {
        "image": sar_raster, "lulc_model": lulc_model, "labels": str(reference),
        "segment:classes": str(tmp_path / "classes.tif"), "evaluate:report": str(tmp_path / "report.html"),
        "evaluate:metrics": str(tmp_path / "metrics.csv")})

    summary = Path(results["evaluate:metrics"]).read_text(encoding="utf-8").splitlines()[1]
    assert f"pixels={int(valid.sum())};" in summary and "overall_accuracy=1" in summary and "miou=1" in summary
    assert "<svg" in Path(results["evaluate:report"]).read_text(encoding="utf-8")


def test_model_run_logs_no_ogr_warning_about_a_result(sarlulc_provider, lulc_model, water_model, sar_raster,
                                                      tmp_path):
    """Before each step the model runner looks up the earlier steps' results by path; unless the
    result is among the run's layers, it opens it as a vector first and OGR logs "Cannot open …"."""
    messages = []

    def record(message, tag, _level):
        messages.append((tag, message))

    log = QgsApplication.messageLog()
    log.messageReceived.connect(record)
    try:
        processing.run(CHAIN, {"image": sar_raster, "lulc_model": lulc_model, "water_model": water_model,
                               "segment:classes": str(tmp_path / "classes.tif"),
                               "waterdetect:water": str(tmp_path / "water.tif")})
    finally:
        log.messageReceived.disconnect(record)
    assert not [message for tag, message in messages if tag == "OGR"]
    assert any("Model processed OK" in message for _, message in messages)


@pytest.mark.parametrize("model_id, inputs", [(CHAIN, ["image", "lulc_model", "water_model"]),
                                              (ACCURACY, ["image", "labels", "lulc_model"])])
def test_inputs_come_in_the_order_a_user_fills_them(sarlulc_provider, model_id, inputs):
    """The SAR raster first, the optional model files last (QGIS 3.22 lists a model's inputs by name)."""
    model = QgsApplication.processingRegistry().algorithmById(model_id)
    assert [d.name() for d in model.parameterDefinitions() if not d.isDestination()] == inputs
    assert model.parameterDefinition("image").description() == "SAR raster (HH backscatter)"


def test_example_models_are_copied_to_the_users_models_never_over_an_edited_one(sarlulc_provider, tmp_path):
    from sar_lulc.processing_provider.example_models import copy_example_models

    folder, copied = copy_example_models(tmp_path / "models")
    assert folder == tmp_path / "models"
    assert sorted(path.name for path in copied) == [f"sar_lulc_{path.name}" for path in MODELS]
    for path in MODELS:
        assert (folder / f"sar_lulc_{path.name}").read_bytes() == path.read_bytes()
    edited = folder / f"sar_lulc_{MODELS[0].name}"
    edited.write_text(edited.read_text().replace("Land cover", "My land cover"))
    assert copy_example_models(folder)[1] == []
    assert "My land cover" in edited.read_text()


def test_the_dialog_proposes_the_sar_scene_not_the_result_on_top(sarlulc_provider, sar_raster, lulc_model, tmp_path,
                                                                qgis_iface):
    """As the algorithms' own dialogs do: the topmost raster that may be backscatter, not a SAR LULC result."""
    from qgis.core import QgsProject, QgsRasterLayer

    scene = QgsRasterLayer(sar_raster, "scene")
    QgsProject.instance().addMapLayer(scene)
    classes = processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": lulc_model,
                                                 "OUTPUT": str(tmp_path / "classes.tif")})["OUTPUT"]
    result = QgsRasterLayer(classes, "scene - land cover")
    QgsProject.instance().addMapLayer(result)  # on top, as a run leaves it
    try:
        for model_id in (CHAIN, ACCURACY):
            dialog_model = QgsApplication.processingRegistry().createAlgorithmById(model_id)
            assert dialog_model.parameterDefinition("image").defaultValue() == scene.id()
    finally:
        QgsProject.instance().removeMapLayers([scene.id(), result.id()])

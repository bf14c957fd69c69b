"""`make example-models`: write the example Processing models shipped in example_models/.

The models are built from the algorithms' current parameter definitions: every parameter a child
step does not take from a model input gets its default as a fixed value, so the saved model is
valid in the Model Designer (a parameter added later and missing from a saved model is reported
as "mandatory"). Run again after changing an algorithm's parameters; tests/test_example_models.py
fails until then.

    python tools/example_models.py [--output-dir example_models]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402 (QT_QPA_PLATFORM must be set first)
    QgsApplication,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QPointF  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GROUP = "Example models"
ONNX_FILTER = "ONNX models (*.onnx)"


def model_input(model, parameter, position):
    component = QgsProcessingModelParameter(parameter.name())
    component.setPosition(position)
    component.setDescription(parameter.description())
    model.addModelParameter(parameter, component)


def child_step(registry, algorithm_id, child_id, description, from_inputs, from_children, outputs, position):
    """A step running ``algorithm_id``: parameters named in ``from_inputs`` come from model inputs,
    those in ``from_children`` from other steps' outputs ((child id, output)), ``outputs`` maps a child
    output to (model output name, description), every other parameter with a default gets it."""
    algorithm = registry.algorithmById(algorithm_id)
    child = QgsProcessingModelChildAlgorithm(algorithm_id)
    child.setChildId(child_id)
    child.setDescription(description)
    child.setPosition(position)
    for definition in algorithm.parameterDefinitions():
        name = definition.name()
        if name in from_inputs:
            source = QgsProcessingModelChildParameterSource.fromModelParameter(from_inputs[name])
        elif name in from_children:
            source = QgsProcessingModelChildParameterSource.fromChildOutput(*from_children[name])
        elif definition.isDestination() or definition.defaultValue() is None:
            continue
        else:
            source = QgsProcessingModelChildParameterSource.fromStaticValue(definition.defaultValue())
        child.addParameterSources(name, [source])
    model_outputs = {}
    for offset, (child_output, (name, output_description)) in enumerate(outputs.items()):
        output = QgsProcessingModelOutput(name, output_description)
        output.setChildId(child_id)
        output.setChildOutputName(child_output)
        output.setPosition(position + QPointF(160, 60 + 40 * offset))
        model_outputs[name] = output
    child.setModelOutputs(model_outputs)
    return child


def lulc_model_parameter():
    return QgsProcessingParameterFile("lulc_model", "Land-cover model (empty: bundled)", optional=True,
                                      fileFilter=ONNX_FILTER)


def land_cover_and_water(registry) -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm("Land cover and water from SAR", GROUP)
    model_input(model, QgsProcessingParameterRasterLayer("image", "SAR raster (HH backscatter)"), QPointF(120, 60))
    model_input(model, lulc_model_parameter(), QPointF(380, 60))
    model_input(model, QgsProcessingParameterFile("water_model", "Water model (empty: bundled)", optional=True,
                                                  fileFilter=ONNX_FILTER), QPointF(640, 60))
    model.addChildAlgorithm(child_step(registry, "sarlulc:segment", "segment", "Land cover",
                                       {"INPUT": "image", "MODEL": "lulc_model"}, {},
                                       {"OUTPUT": ("classes", "Land cover")}, QPointF(250, 200)))
    model.addChildAlgorithm(child_step(registry, "sarlulc:waterdetect", "waterdetect", "Water",
                                       {"INPUT": "image", "MODEL": "water_model"}, {},
                                       {"OUTPUT": ("water", "Water mask")}, QPointF(550, 200)))
    model.setHelpContent({
        "ALG_DESC": "Runs SAR LULC Segment and Water Detect on one HH backscatter raster: a land-cover "
                    "map and a water mask on the raster's grid, each with its legend. Every other option "
                    "keeps its default; open the model in the Model Designer to change them.",
        "image": "A georeferenced HH backscatter raster (ALOS-2 DN, linear power or dB).",
        "lulc_model": "An .onnx land-cover model with the SAR LULC metadata; empty: the bundled model.",
        "water_model": "An .onnx water model with the SAR LULC metadata; empty: the bundled model."})
    return in_dialog_order(model, ["image", "lulc_model", "water_model"])


def land_cover_accuracy(registry) -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm("Land cover and its accuracy against a reference", GROUP)
    model_input(model, QgsProcessingParameterRasterLayer("image", "SAR raster (HH backscatter)"), QPointF(120, 60))
    model_input(model, QgsProcessingParameterRasterLayer("labels", "Reference class raster"), QPointF(380, 60))
    model_input(model, lulc_model_parameter(), QPointF(640, 60))
    model.addChildAlgorithm(child_step(registry, "sarlulc:segment", "segment", "Land cover",
                                       {"INPUT": "image", "MODEL": "lulc_model"}, {},
                                       {"OUTPUT": ("classes", "Land cover")}, QPointF(250, 200)))
    model.addChildAlgorithm(child_step(registry, "sarlulc:evaluate", "evaluate", "Accuracy",
                                       {"REFERENCE": "labels"}, {"PREDICTION": ("segment", "OUTPUT")},
                                       {"OUTPUT_HTML": ("report", "Accuracy report"),
                                        "OUTPUT_CSV": ("metrics", "Metrics table")}, QPointF(550, 320)))
    model.setHelpContent({
        "ALG_DESC": "Maps land cover with SAR LULC Segment and scores the map against a reference class "
                    "raster on the same grid (confusion matrix, per-class IoU, mIoU, overall accuracy) "
                    "with Evaluate Against Reference. Try it on demo/demo_scene_hh_db.tif with "
                    "demo/demo_scene_label.tif as reference.",
        "image": "A georeferenced HH backscatter raster (ALOS-2 DN, linear power or dB).",
        "lulc_model": "An .onnx land-cover model with the SAR LULC metadata; empty: the bundled model.",
        "labels": "A class raster with the 9-class legend's codes, on the SAR raster's grid."})
    return in_dialog_order(model, ["image", "labels", "lulc_model"])


EXAMPLES = {"land_cover_and_water.model3": land_cover_and_water,
            "land_cover_accuracy.model3": land_cover_accuracy}


def in_dialog_order(model: QgsProcessingModelAlgorithm, names: list[str]) -> QgsProcessingModelAlgorithm:
    """The inputs in the order a user fills them: the SAR raster, then what it is checked against, the
    optional model files last. QGIS 3.22 lists a model's inputs by name (so the names sort that way:
    image, labels, lulc_model, water_model); later versions keep the order set here."""
    assert names == sorted(names), names
    if hasattr(model, "setParameterOrder"):
        model.setParameterOrder(names)
    return model


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "example_models")
    args = parser.parse_args(argv)
    application = QgsApplication([], False)
    application.initQgis()
    # The plugin imported as QGIS imports it: the package sar_lulc.
    plugin_parent = Path(tempfile.mkdtemp(prefix="sarlulc-plugin-path-"))
    (plugin_parent / "sar_lulc").symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(plugin_parent))
    from sar_lulc.processing_provider.provider import SarLulcProvider

    registry = QgsApplication.processingRegistry()
    provider = SarLulcProvider()
    registry.addProvider(provider)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for file_name, build in EXAMPLES.items():
        model = build(registry)
        valid, issues = model.validate()
        if not valid:
            raise SystemExit(f"example-models: {file_name} is not valid: {'; '.join(issues)}")
        model.toFile(str(args.output_dir / file_name))
        print(f"example-models: {args.output_dir / file_name}")
    (plugin_parent / "sar_lulc").unlink()
    plugin_parent.rmdir()


if __name__ == "__main__":
    main(sys.argv[1:])

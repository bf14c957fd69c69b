"""sarlulc:evaluate: accuracy of a class map against a reference map (confusion matrix, IoU, F1)."""

import math

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtGui import QIcon

from ..model.evaluation import EvaluationError, check_report_paths, evaluate, write_reports
from ..model.inference.errors import InferenceError
from .base_algorithm import ICON_PATH, parameter_problem

# (label shown to users, task passed to model.evaluation)
TASKS = (("Land use / land cover (9 classes)", "lulc"), ("Water mask (water / not water)", "water"))


class EvaluateAlgorithm(QgsProcessingAlgorithm):
    """Scores a SAR LULC output (or any class raster) against ground truth, for users and modelers."""

    PREDICTION = "PREDICTION"
    REFERENCE = "REFERENCE"
    RASTER_ROLES = {PREDICTION: "prediction raster", REFERENCE: "reference raster"}  # as the engine names them
    TASK = "TASK"
    OUTPUT_CSV = "OUTPUT_CSV"
    OUTPUT_HTML = "OUTPUT_HTML"
    MIOU = "MIOU"
    OVERALL_ACCURACY = "OVERALL_ACCURACY"
    WATER_IOU = "WATER_IOU"
    WATER_F1 = "WATER_F1"
    WATER_PRECISION = "WATER_PRECISION"
    WATER_RECALL = "WATER_RECALL"
    PIXELS = "PIXELS"

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def name(self):
        return "evaluate"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Evaluate Against Reference"

    def group(self):
        return "Evaluation"

    def groupId(self):  # noqa: N802 (QGIS API)
        return "evaluation"

    def icon(self):
        return QIcon(str(ICON_PATH))

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>Compares a predicted class raster (e.g. the output of SAR LULC Segment or Water Detect) "
            "with a reference class raster and reports the confusion matrix, per-class IoU, precision, "
            "recall and F1, the mean IoU (mIoU) and the overall accuracy.</p>"
            "<p>Both rasters must be on the <b>same grid</b> (CRS, extent, pixel size); otherwise resample "
            "the prediction to the reference with Warp (nearest neighbour). Pixels that are nodata in "
            "either raster are left out. Band 1 of each raster is read.</p>"
            "<p><b>Task</b>: <i>Land use / land cover</i> uses the 9-class legend (codes 1-9; other codes "
            "found are reported as 'Code N'); <i>Water mask</i> treats code 1 as water and every other "
            "valid code as not water, so a water mask can be checked against a land-cover reference.</p>"
            "<p>Outputs: a CSV table (one row per reference class with its confusion-matrix row) and an "
            "HTML report with the confusion matrix as a heat map; mIoU, overall accuracy and water "
            "IoU/F1/precision/recall are also returned as numbers for use in models. IoU is empty for "
            "classes absent from both rasters, and mIoU averages the others. Both reports are written, or "
            "neither: a failed run leaves earlier reports as they were.</p>"
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.PREDICTION, "Predicted class raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, "Reference class raster"))
        self.addParameter(QgsProcessingParameterEnum(
            self.TASK, "Task", options=[label for label, _ in TASKS], defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_CSV, "Metrics table", "CSV files (*.csv)", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, "Report", "HTML files (*.html)", optional=True, createByDefault=True))
        for name, description in ((self.MIOU, "mIoU"), (self.OVERALL_ACCURACY, "Overall accuracy"),
                                  (self.WATER_IOU, "Water IoU"), (self.WATER_F1, "Water F1"),
                                  (self.WATER_PRECISION, "Water precision"), (self.WATER_RECALL, "Water recall"),
                                  (self.PIXELS, "Pixels compared")):
            self.addOutput(QgsProcessingOutputNumber(name, description))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        problem = parameter_problem(self, parameters, context)
        return (False, problem) if problem else super().checkParameterValues(parameters, context)

    def _file_source(self, parameters, name, context) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"The layer '{layer.name()}' ({name}) is not a raster file GDAL can read; save it as a GeoTIFF "
                "(Raster > Conversion > Translate) and run again on that file.")
        return layer.source()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        prediction = self._file_source(parameters, self.PREDICTION, context)
        reference = self._file_source(parameters, self.REFERENCE, context)
        label, task = TASKS[self.parameterAsEnum(parameters, self.TASK, context)]
        try:
            csv_path, html_path = check_report_paths(
                self.parameterAsFileOutput(parameters, self.OUTPUT_CSV, context),
                self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context), prediction, reference)
        except InferenceError as error:
            raise QgsProcessingException(str(error)) from error

        def report_progress(fraction):
            if feedback.isCanceled():
                raise QgsProcessingException("Evaluation cancelled; no report was written.")
            feedback.setProgress(100.0 * fraction)

        feedback.pushInfo(f"Comparing {prediction} with {reference} ({label}).")
        try:
            result = evaluate(prediction, reference, task, progress=report_progress)
        except (EvaluationError, InferenceError) as error:
            raise QgsProcessingException(str(error)) from error
        water = result.water
        outputs = {
            self.MIOU: result.miou,
            self.OVERALL_ACCURACY: result.overall_accuracy,
            self.WATER_IOU: water.iou if water else math.nan,
            self.WATER_F1: water.f1 if water else math.nan,
            self.WATER_PRECISION: water.precision if water else math.nan,
            self.WATER_RECALL: water.recall if water else math.nan,
            self.PIXELS: result.pixels,
        }
        feedback.pushInfo(f"{result.pixels} pixels compared: overall accuracy {result.overall_accuracy:.4f}, "
                          f"mIoU {result.miou:.4f}")
        for metrics in result.per_class:
            feedback.pushInfo(f"  {metrics.code} {metrics.name}: IoU {metrics.iou:.4f}, F1 {metrics.f1:.4f}")
        try:
            write_reports(result, csv_path, html_path, prediction, reference)
        except InferenceError as error:
            raise QgsProcessingException(str(error)) from error
        if csv_path:
            outputs[self.OUTPUT_CSV] = csv_path
        if html_path:
            outputs[self.OUTPUT_HTML] = html_path
        return outputs

"""sarlulc:evaluate: accuracy of a class map against a reference map or field observations (confusion matrix,
IoU, F1)."""

import math

from osgeo import gdal
from qgis.core import (
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)

from ...sarlulc.evaluation import EvaluationError, check_report_paths, evaluate, evaluate_points, write_reports
from ...sarlulc.fieldwork.legend import read_legend
from ...sarlulc.products import LULC_CLASSES, NOT_WATER, PROBABILITY_BAND, WATER_BAND, WATER_CLASSES
from ..algorithm import PluginAlgorithm
from ..checks import parameter_problem
from ..compat import GEOMETRY_POINT, LAYER_VECTOR, SOURCE_RASTER, SOURCE_VECTOR_POINT
from ..messages import engine_errors
from . import TOOLBOX_GROUP

# (label shown to users, task passed to sarlulc.evaluation)
TASK_CHOICES = (("Land use / land cover (9 classes)", "lulc"), ("Water mask (water / not water)", "water"))
# The observed-class field of a field package's "field_checks" layer: used when no field is given.
FIELD_CHECKS_FIELD = "class_observed"


def check_task_fits(prediction: str, task: str) -> None:
    """Refuse scoring a water mask (by its band description) as a land-cover map: its 0 / 1 codes would be read as
    nodata and Water, and the report would be meaningless."""
    dataset = gdal.Open(prediction)
    description = dataset.GetRasterBand(1).GetDescription() if dataset is not None else ""
    if task == "lulc" and description in (WATER_BAND, PROBABILITY_BAND):
        raise QgsProcessingException(
            f"The prediction '{prediction}' is a {description.lower()} (its band says so), not a land-cover map: set "
            f"TASK to '{TASK_CHOICES[1][0]}', or choose a land-cover class raster as prediction.")


def report_progress(feedback):
    """The evaluation's progress callback: reports to ``feedback`` and stops the run when the user cancels."""
    def progress(fraction):
        if feedback.isCanceled():
            raise QgsProcessingException("Evaluation cancelled; no report was written.")
        feedback.setProgress(100.0 * fraction)
    return progress


class EvaluateAlgorithm(PluginAlgorithm):
    """Scores a SAR LULC output (or any class raster) against ground truth, for users and modelers."""

    GROUP = TOOLBOX_GROUP
    PREDICTION = "PREDICTION"
    REFERENCE = "REFERENCE"
    RASTER_ROLES = {PREDICTION: "prediction raster", REFERENCE: "reference raster"}  # as the engine names them
    REFERENCE_FIELD = "REFERENCE_FIELD"
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

    def name(self):
        return "evaluate"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Evaluate Against Reference"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>Compares a predicted class raster (e.g. the output of SAR LULC Segment or Water Detect) "
            "with a reference class raster and reports the confusion matrix, per-class IoU, precision, "
            "recall and F1, the mean IoU (mIoU) and the overall accuracy.</p>"
            "<p>Both rasters must be on the <b>same grid</b> (CRS, extent, pixel size); otherwise resample "
            "the prediction to the reference with Warp (nearest neighbour). Pixels that are nodata in "
            "either raster are left out. Band 1 of each raster is read.</p>"
            "<p>The <b>reference</b> may also be a <b>point layer of field observations</b>, such as the "
            "<i>field_checks</i> layer of a Field Package filled in the field: each point is compared with the "
            "prediction's pixel under it (in any CRS). <b>Observed class field</b>: the field holding the observed "
            f"class, as a code or a class name (empty: '{FIELD_CHECKS_FIELD}'). Points without an observed class, "
            "outside the raster or on its nodata are left out and counted in the log; the metrics then count "
            "points, not pixels.</p>"
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
        self.addParameter(QgsProcessingParameterMapLayer(
            self.REFERENCE, "Reference: class raster or observed points",
            types=[SOURCE_RASTER, SOURCE_VECTOR_POINT]))
        self.addParameter(QgsProcessingParameterField(
            self.REFERENCE_FIELD, f"Observed class field of reference points (empty: {FIELD_CHECKS_FIELD})",
            parentLayerParameterName=self.REFERENCE, optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.TASK, "Task", options=[label for label, _ in TASK_CHOICES], defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_CSV, "Metrics table", "CSV files (*.csv)", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, "Report", "HTML files (*.html)", optional=True, createByDefault=True))
        for name, description in ((self.MIOU, "mIoU"), (self.OVERALL_ACCURACY, "Overall accuracy"),
                                  (self.WATER_IOU, "Water IoU"), (self.WATER_F1, "Water F1"),
                                  (self.WATER_PRECISION, "Water precision"), (self.WATER_RECALL, "Water recall"),
                                  (self.PIXELS, "Pixels (or points) compared")):
            self.addOutput(QgsProcessingOutputNumber(name, description))

    def explained_problem(self, parameters, context):
        return parameter_problem(self, parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        prediction = self.raster_file(parameters, self.PREDICTION, context)[1]
        reference_layer = self.parameterAsLayer(parameters, self.REFERENCE, context)
        if reference_layer is not None and reference_layer.type() == LAYER_VECTOR:
            return self.process_points(parameters, context, feedback, prediction, reference_layer)
        reference = self.raster_file(parameters, self.REFERENCE, context)[1]
        label, task = TASK_CHOICES[self.parameterAsEnum(parameters, self.TASK, context)]
        check_task_fits(prediction, task)
        with engine_errors():
            check_report_paths(self.parameterAsFileOutput(parameters, self.OUTPUT_CSV, context),
                               self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context), prediction, reference)

        feedback.pushInfo(f"Comparing {prediction} with {reference} ({label}).")
        try:
            with engine_errors():
                result = evaluate(prediction, reference, task, progress=report_progress(feedback))
        except EvaluationError as error:
            raise QgsProcessingException(str(error)) from error
        return self.outputs(result, parameters, context, feedback, prediction, reference)

    def outputs(self, result, parameters, context, feedback, prediction, reference) -> dict:
        """Log the metrics, write the CSV and HTML reports, and return the outputs."""
        csv_path = self.parameterAsFileOutput(parameters, self.OUTPUT_CSV, context)
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
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
        feedback.pushInfo(f"{result.pixels} {result.unit} compared: overall accuracy {result.overall_accuracy:.4f}, "
                          f"mIoU {result.miou:.4f}")
        for metrics in result.per_class:
            feedback.pushInfo(f"  {metrics.code} {metrics.name}: IoU {metrics.iou:.4f}, F1 {metrics.f1:.4f}")
        with engine_errors():
            write_reports(result, csv_path, html_path, prediction, reference)
        if csv_path:
            outputs[self.OUTPUT_CSV] = csv_path
        if html_path:
            outputs[self.OUTPUT_HTML] = html_path
        return outputs

    def process_points(self, parameters, context, feedback, prediction, points_layer) -> dict:
        """Field observations as reference: each point's observed class against the prediction's pixel under it."""
        label, task = TASK_CHOICES[self.parameterAsEnum(parameters, self.TASK, context)]
        check_task_fits(prediction, task)
        if points_layer.geometryType() != GEOMETRY_POINT:
            kind = QgsWkbTypes.geometryDisplayString(points_layer.geometryType()).lower()
            raise QgsProcessingException(
                f"The reference layer '{points_layer.name()}' holds {kind} geometries; a vector reference must be "
                f"observed points (one class each). For polygons, rasterise "
                f"them onto the prediction's grid first (Raster > Conversion > Rasterize) and use that raster, or use "
                f"their centroids (Vector geometry > Centroids).")
        field = self.parameterAsString(parameters, self.REFERENCE_FIELD, context) or FIELD_CHECKS_FIELD
        index = points_layer.fields().lookupField(field)
        if index < 0:
            raise QgsProcessingException(
                f"The point layer '{points_layer.name()}' has no field '{field}' with the observed class. Its fields "
                f"are: {', '.join(points_layer.fields().names()) or 'none'}. Choose the observed class field.")
        dataset = gdal.Open(prediction)
        codes = self.class_codes_by_name(dataset, task)
        transform = QgsCoordinateTransform(points_layer.crs(), self.parameterAsRasterLayer(
            parameters, self.PREDICTION, context).crs(), context.transformContext())
        points, unobserved = [], 0
        for feature in points_layer.getFeatures():
            value = feature.attribute(index)
            if value is None or str(value).strip() in ("", "NULL") or feature.geometry().isEmpty():
                unobserved += 1
                continue
            code = self.observed_code(value, codes, feature.id(), field)
            geometry = feature.geometry()
            for part in (geometry.asMultiPoint() if geometry.isMultipart() else [geometry.asPoint()]):
                point = transform.transform(part)
                points.append((point.x(), point.y(), code))

        feedback.pushInfo(f"Comparing {prediction} with the {len(points)} observed points of "
                          f"'{points_layer.name()}' (field {field}, {label}).")
        try:
            result, left_out = evaluate_points(prediction, points, task, progress=report_progress(feedback))
        except EvaluationError as error:
            raise QgsProcessingException(str(error)) from error
        if unobserved or left_out:
            feedback.reportError(f"Left out: {unobserved} point(s) without an observed class, {left_out} outside "
                                 "the prediction or on its nodata.", fatalError=False)
        return self.outputs(result, parameters, context, feedback, prediction, points_layer.source())

    @staticmethod
    def class_codes_by_name(dataset, task) -> dict[str, int]:
        """Class names (lower case) to codes: the prediction's own legend, else the task's."""
        legend = read_legend(dataset) if dataset is not None else None
        if legend is not None:
            entries = [(e.code, e.name) for e in legend.entries]
        else:
            task_legend = LULC_CLASSES if task == "lulc" else (NOT_WATER,) + WATER_CLASSES
            entries = [(code, name) for code, name, _ in task_legend]
        return {name.strip().lower(): code for code, name in entries}

    @staticmethod
    def observed_code(value, codes: dict[str, int], feature_id, field) -> int:
        """The class code of an observed value: a code (3, "3", 3.0) or a class name ("Paddy field")."""
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            if text.lower() in codes:
                return codes[text.lower()]
            raise QgsProcessingException(
                f"Point {feature_id} has the observed class '{text}' in '{field}', which is neither a class code nor "
                f"a class name of the legend ({', '.join(sorted(codes))}). Correct it and run again.") from None
        if not number.is_integer():
            raise QgsProcessingException(f"Point {feature_id} has the observed class {text} in '{field}': class "
                                         "codes are whole numbers.")
        return int(number)

"""What SAR LULC Segment and Water Detect share: parameters, the run, feedback and styling.

Subclasses name their task and add their own parameters and outputs; the inference itself
is the core in ``model/inference`` (no QGIS there), driven through its public API.
"""

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QIcon

from ..dependencies import PLUGIN_DIR, onnxruntime_problem
from ..model.inference.session import DEVICES  # imports onnxruntime only when a session starts
from . import styling

ICON_PATH = PLUGIN_DIR / "ui" / "icon.svg"

INPUT_HELP = (
    "<h3>Input</h3><p>A georeferenced single-polarisation L-band SAR raster: HH backscatter "
    "(sigma0) in <b>dB</b>, terrain-corrected, at about <b>10 m</b> pixel size, like ALOS-2 "
    "PALSAR-2 HH mosaics. Amplitude DN must be calibrated to dB first (PALSAR-2: "
    "10&middot;log10(DN&sup2;) - 83.0). The raster needs a CRS; its nodata pixels stay nodata "
    "in every output. The input is only read, never modified.</p>"
)
OPTIONS_HELP = (
    "<h3>Options</h3><p><b>Model</b>: leave empty for the bundled model, or choose an .onnx file "
    "that carries the SAR LULC metadata (model/inference/CONTRACT.md in the plugin folder). "
    "<b>Device</b>: auto uses CUDA when onnxruntime-gpu and an NVIDIA GPU are present, else the "
    "CPU; the log says which ran. <b>Tile size</b>, <b>overlap</b>, <b>batch size</b> (advanced): "
    "empty uses the model's defaults (tile size and batch size 0 too; overlap 0 means no "
    "overlap). Tiles overlap and are blended smoothly, so no seams appear at tile borders.</p>"
)
BUNDLED_MODEL_HELP = (
    "<p><b>Bundled model</b>: model/weights/{task}.onnx, a deep segmentation network (Swin "
    "encoder, UPerNet decoder) trained on <b>simulated ALOS-2-like scenes</b>, not on real "
    "PALSAR-2 acquisitions: treat its maps on real data as indicative. Its name is printed in "
    "the log.</p>"
)


class SarLulcAlgorithm(QgsProcessingAlgorithm):
    """Base of the SAR LULC algorithms (as QGIS's GdalAlgorithm is of the GDAL ones)."""

    INPUT = "INPUT"
    BAND = "BAND"
    MODEL = "MODEL"
    DEVICE = "DEVICE"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    BATCH_SIZE = "BATCH_SIZE"
    OUTPUT = "OUTPUT"

    # Set by subclasses: the model task ("lulc" or "water"), the name and description of the
    # main output, and the optional float32 score output ("OUTPUT_CONFIDENCE", ...).
    TASK = ""
    OUTPUT_DESCRIPTION = ""
    EXTRA_OUTPUT = ""
    EXTRA_OUTPUT_DESCRIPTION = ""

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def group(self):
        return "Segmentation"

    def groupId(self):  # noqa: N802 (QGIS API)
        return "segmentation"

    def icon(self):
        return QIcon(str(ICON_PATH))

    def helpUrl(self):  # noqa: N802 (QGIS API)
        return QUrl.fromLocalFile(str(PLUGIN_DIR / "README.md")).toString()

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "SAR backscatter raster (HH, dB)"))
        # Optional so that it may be left out (qgis_process, Python): QGIS 3.22 refuses a missing
        # band value despite its default; an empty band means that default, band 1.
        self.addParameter(QgsProcessingParameterBand(
            self.BAND, "Band", defaultValue=1, parentLayerParameterName=self.INPUT, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "ONNX model (empty: the bundled model)", optional=True,
            fileFilter="ONNX models (*.onnx)"))
        device = QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=list(DEVICES), defaultValue=DEVICES[0])
        device.setUsesStaticStrings(True)
        self.addParameter(device)
        for parameter in self.task_parameters():
            self.addParameter(parameter)
        for name, description in (
                (self.TILE_SIZE, "Tile size in pixels (empty: the model's default)"),
                (self.OVERLAP, "Tile overlap in pixels (empty: the model's default)"),
                (self.BATCH_SIZE, "Tiles per batch (empty: 4)")):
            parameter = QgsProcessingParameterNumber(
                name, description, QgsProcessingParameterNumber.Integer, optional=True, minValue=0)
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.OUTPUT_DESCRIPTION))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.EXTRA_OUTPUT, self.EXTRA_OUTPUT_DESCRIPTION, optional=True, createByDefault=False))

    def task_parameters(self) -> list:
        """Parameters only this algorithm has (shown after the common ones)."""
        return []

    def task_options(self, parameters, context) -> dict:
        """RunOptions fields only this algorithm sets."""
        return {}

    def run_model(self, engine, input_path, output_path, model_path, extra_path, options, **callbacks):
        """Call the engine function of this task; returns its RunReport."""
        raise NotImplementedError

    def style_outputs(self, report) -> None:
        """Write the .qml sidecars of the outputs in ``report`` (and style them on load)."""
        raise NotImplementedError

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        problem = onnxruntime_problem()
        if problem:
            raise QgsProcessingException(problem)
        from ..model.inference import engine
        from ..model.inference.errors import InferenceError

        options = engine.RunOptions(
            band=self.parameterAsInt(parameters, self.BAND, context),
            device=self.parameterAsEnumString(parameters, self.DEVICE, context) or DEVICES[0],
            tile_size=self.optional_number(parameters, self.TILE_SIZE, context, zero_is_default=True),
            tile_overlap=self.optional_number(parameters, self.OVERLAP, context),
            batch_size=self.optional_number(parameters, self.BATCH_SIZE, context, zero_is_default=True),
            **self.task_options(parameters, context))
        output_path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        extra_path = self.parameterAsOutputLayer(parameters, self.EXTRA_OUTPUT, context) or None
        try:
            report = self.run_model(
                engine, self.input_path(parameters, context), output_path,
                self.parameterAsFile(parameters, self.MODEL, context) or None, extra_path, options,
                progress=feedback.setProgress, is_cancelled=feedback.isCanceled, log=feedback.pushInfo)
        except InferenceError as error:
            raise QgsProcessingException(str(error)) from error
        self.style_outputs(report)
        # The paths as Processing knows them: it matches layers to load by these strings.
        for path in filter(None, (output_path, extra_path)):
            styling.style_when_loaded(context, path)
        return {self.OUTPUT: output_path, self.EXTRA_OUTPUT: extra_path}

    def input_path(self, parameters, context) -> str:
        """The GDAL source of the INPUT layer; layers GDAL cannot open by name are refused."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"The input layer '{layer.name()}' is not a raster file GDAL can read (its data provider "
                f"is '{layer.providerType()}'). Save it as a GeoTIFF (Raster > Conversion > Translate) "
                f"and run again on that file.")
        return layer.source()

    def optional_number(self, parameters, name, context, zero_is_default=False):
        """The value of an optional number parameter, or None when left empty (model default)."""
        value = parameters.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        number = self.parameterAsDouble(parameters, name, context)
        definition = self.parameterDefinition(name)
        if definition.dataType() == QgsProcessingParameterNumber.Integer:
            number = int(number)
        if zero_is_default and number == 0:
            return None
        return number


def help_text(summary: str, outputs: str, task: str) -> str:
    """The algorithm's help panel: what it does, its input, outputs, options and model."""
    return (f"<p>{summary}</p>{INPUT_HELP}<h3>Outputs</h3>{outputs}{OPTIONS_HELP}"
            f"{BUNDLED_MODEL_HELP.format(task=task)}")


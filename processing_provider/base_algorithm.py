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
from ..model.inference.sar_input import ALOS2_CALIBRATION_FACTOR_DB, InputUnits, SpeckleFilter
from ..model.inference.session import DEVICES  # imports onnxruntime only when a session starts
from . import styling

ICON_PATH = PLUGIN_DIR / "ui" / "icon.svg"
# (option shown to users, RunOptions.output_grid)
OUTPUT_GRIDS = (("input raster grid", "input"), ("model grid", "model"))

INPUT_HELP = (
    "<h3>Input</h3><p>A georeferenced single-polarisation L-band SAR raster of HH backscatter, "
    "terrain-corrected, like ALOS-2 PALSAR-2 mosaic tiles and L2.1 products or sigma0/gamma0 "
    "exported by SNAP. <b>Band</b>: the HH band of a multi-band raster (the log names the band "
    "used). The raster needs a CRS; it is only read, never modified.</p>"
    "<p><b>Input units</b>: <i>auto</i> tells ALOS-2 amplitude DN (integers), linear power and dB "
    "apart from the data type, the values and the band's description, and writes its decision "
    "and reason to the log; when it cannot tell, the run stops and asks you to set them. "
    "<i>ALOS-2 DN</i> is calibrated on the fly: sigma0 = 10&middot;log10(DN&sup2;) + CF, with "
    "the <b>calibration factor</b> CF = -83.0 dB of PALSAR-2 (advanced); DN 0 is nodata. "
    "<i>Linear power</i> &le; 0 is nodata.</p>"
    "<p><b>Pixel size and CRS</b>: the model works on a <b>10 m</b> grid. Inputs at another pixel "
    "size (3 to 50 m), in degrees (EPSG:4326) or rotated are read through a resampled view on a "
    "10 m grid (the raster's own CRS, or the UTM zone of its centre for degrees), averaging "
    "linear power when the input is finer and interpolating when it is coarser; no resampled "
    "copy is written. The results are brought back to the input's grid (nearest for classes, "
    "bilinear for probabilities), or kept on the 10 m grid with <b>Output grid</b> = model grid "
    "(advanced).</p>"
    "<p><b>Nodata</b>: the band's nodata pixels (and DN 0) are masked before anything else, so "
    "they never change their neighbours' results, and stay nodata in every output.</p>"
    "<p><b>Speckle filter</b> (optional): Lee or refined Lee over a <b>filter window</b> of 7 "
    "pixels by default (advanced; refined Lee: 5, 7, 9 or 11), applied in linear power before "
    "the model, with the context it needs so the result does not depend on the tiling (on the "
    "10 m grid when the input is resampled). The bundled models were trained on unfiltered "
    "scenes, so it is off by default.</p>"
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
    "<p><b>Bundled model</b>: model/weights/{task}.onnx, a small refined segmentation network "
    "(Swin encoder pretrained with SAR-W-MixMAE, UPerNet decoder with high-resolution injection "
    "and a progressive refine-up head, 3.5 M parameters) trained on <b>simulated ALOS-2-like "
    "scenes</b>, not on real PALSAR-2 acquisitions: treat its maps on real data as indicative. "
    "Its scores on held-out simulated scenes and its limits are in model/MODEL_CARD.md; its name "
    "is printed in the log.</p>"
)


class PluginAlgorithm(QgsProcessingAlgorithm):
    """What every SAR LULC algorithm shares: its icon and help, enum options given as text or index,
    and raster inputs read by GDAL from their file."""

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def icon(self):
        return QIcon(str(ICON_PATH))

    def helpUrl(self):  # noqa: N802 (QGIS API)
        return QUrl.fromLocalFile(str(PLUGIN_DIR / "README.md")).toString()

    @staticmethod
    def choice(name, description, options) -> QgsProcessingParameterEnum:
        """An enum whose value is the option's text (the first option by default); `checkParameterValues`
        also accepts an option's index, as most QGIS enums take."""
        parameter = QgsProcessingParameterEnum(name, description, options=options, defaultValue=options[0])
        parameter.setUsesStaticStrings(True)
        return parameter

    @staticmethod
    def advanced(parameter):
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        return parameter

    def with_option_texts(self, parameters) -> dict:
        """``parameters`` with enum values given as an option index (0, "2") or in another letter
        case ("db") replaced by the option's text, so both forms are accepted everywhere."""
        resolved = dict(parameters)
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            if not isinstance(definition, QgsProcessingParameterEnum) or value is None or isinstance(value, bool):
                continue
            options = definition.options()
            text = str(value).strip()
            if text.isdigit() and int(text) < len(options) and text not in options:
                resolved[definition.name()] = options[int(text)]
            else:
                resolved[definition.name()] = next((o for o in options if o.lower() == text.lower()), value)
        return resolved

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        parameters = self.with_option_texts(parameters)
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            # Values still not an option's text here are unknown texts or out-of-range indexes.
            if (isinstance(definition, QgsProcessingParameterEnum) and definition.usesStaticStrings()
                    and isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip()
                    and value not in definition.options()):
                return False, (f"{definition.description()}: '{value}' is not an option. Choose one of: "
                               f"{', '.join(definition.options())}.")
        return super().checkParameterValues(parameters, context)

    def raster_file(self, parameters, name, context):
        """(layer, GDAL source) of the raster parameter ``name``; layers GDAL cannot open by name are refused."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"The input layer '{layer.name()}' is not a raster file GDAL can read (its data provider "
                f"is '{layer.providerType()}'). Save it as a GeoTIFF (Raster > Conversion > Translate) "
                f"and run again on that file.")
        return layer, layer.source()


class SarLulcAlgorithm(PluginAlgorithm):
    """Base of the SAR LULC algorithms (as QGIS's GdalAlgorithm is of the GDAL ones)."""

    INPUT = "INPUT"
    BAND = "BAND"
    INPUT_UNITS = "INPUT_UNITS"
    CALIBRATION_FACTOR = "CALIBRATION_FACTOR"
    SPECKLE_FILTER = "SPECKLE_FILTER"
    FILTER_SIZE = "FILTER_SIZE"
    OUTPUT_GRID = "OUTPUT_GRID"
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

    def group(self):
        return "Segmentation"

    def groupId(self):  # noqa: N802 (QGIS API)
        return "segmentation"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.INPUT, "SAR backscatter raster (HH: dB, linear power or ALOS-2 DN)"))
        # Optional so that it may be left out (qgis_process, Python): QGIS 3.22 refuses a missing
        # band value despite its default; an empty band means that default, band 1.
        self.addParameter(QgsProcessingParameterBand(
            self.BAND, "Band", defaultValue=1, parentLayerParameterName=self.INPUT, optional=True))
        self.addParameter(self.choice(self.INPUT_UNITS, "Input units", [u.value for u in InputUnits]))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            self.CALIBRATION_FACTOR, "Calibration factor CF of ALOS-2 DN (dB)", QgsProcessingParameterNumber.Double,
            defaultValue=ALOS2_CALIBRATION_FACTOR_DB)))
        self.addParameter(self.choice(self.SPECKLE_FILTER, "Speckle filter", [f.value for f in SpeckleFilter]))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            self.FILTER_SIZE, "Speckle filter window in pixels (odd; refined Lee: 5, 7, 9 or 11)",
            QgsProcessingParameterNumber.Integer, defaultValue=7, minValue=3, maxValue=31)))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "ONNX model (empty: the bundled model)", optional=True,
            fileFilter="ONNX models (*.onnx)"))
        self.addParameter(self.choice(self.DEVICE, "Device", list(DEVICES)))
        for parameter in self.task_parameters():
            self.addParameter(parameter)
        for name, description in (
                (self.TILE_SIZE, "Tile size in pixels (empty: the model's default)"),
                (self.OVERLAP, "Tile overlap in pixels (empty: the model's default)"),
                (self.BATCH_SIZE, "Tiles per batch (empty: 4)")):
            self.addParameter(self.advanced(QgsProcessingParameterNumber(
                name, description, QgsProcessingParameterNumber.Integer, optional=True, minValue=0)))
        self.addParameter(self.advanced(self.choice(
            self.OUTPUT_GRID, "Output grid of resampled inputs", [label for label, _ in OUTPUT_GRIDS])))
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

        parameters = self.with_option_texts(parameters)
        output_grid = self.parameterAsEnumString(parameters, self.OUTPUT_GRID, context)
        options = engine.RunOptions(
            band=self.parameterAsInt(parameters, self.BAND, context),
            device=self.parameterAsEnumString(parameters, self.DEVICE, context) or DEVICES[0],
            input_units=self.parameterAsEnumString(parameters, self.INPUT_UNITS, context) or InputUnits.AUTO.value,
            calibration_factor=self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context),
            speckle_filter=(self.parameterAsEnumString(parameters, self.SPECKLE_FILTER, context)
                            or SpeckleFilter.NONE.value),
            filter_size=self.parameterAsInt(parameters, self.FILTER_SIZE, context),
            output_grid=dict(OUTPUT_GRIDS).get(output_grid, OUTPUT_GRIDS[0][1]),
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
        return self.raster_file(parameters, self.INPUT, context)[1]

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


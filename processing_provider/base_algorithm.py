"""What SAR LULC Segment and Water Detect share: parameters, the run, feedback and styling.

Subclasses name their task and add their own parameters and outputs; the inference itself
is the core in ``model/inference`` (no QGIS there), driven through its public API.
"""

import dataclasses
import math
import re
from pathlib import Path

from osgeo import gdal
from qgis.core import (
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QIcon

from ..dependencies import PLUGIN_DIR, onnxruntime_problem
from ..model.inference.errors import InferenceError, gdal_exceptions
from ..model.inference.reader import open_raster
from ..model.inference.sar_input import ALOS2_CALIBRATION_FACTOR_DB, InputUnits, SpeckleFilter, not_backscatter_reason
from ..model.inference.session import DEVICES, PRECISIONS, check_model_file  # imports onnxruntime only when a session starts
from ..model.inference.writer import check_distinct_files, format_list
from . import styling
from .compat import (NUMBER_DOUBLE, NUMBER_INTEGER, PARAMETER_ADVANCED, PARAMETER_OPTIONAL,
                     SOURCE_VECTOR_POLYGON)

ICON_PATH = PLUGIN_DIR / "ui" / "icon.svg"
# The tile edge the bundled models' graphs are fixed to (tests/test_plugin_provider.py checks it).
BUNDLED_TILE_SIZE = 256
# (option shown to users, RunOptions.output_grid)
OUTPUT_GRIDS = (("input raster grid", "input"), ("model grid", "model"))
# The task a many-tile run or a training maps (option shown to users, model contract task).
TASK_CHOICES = (("land cover", "lulc"), ("water", "water"))

INPUT_HELP = (
    "<h3>Input</h3><p>A georeferenced single-polarisation L-band SAR raster of HH backscatter, "
    "terrain-corrected, like ALOS-2 PALSAR-2 mosaic tiles and L2.1 products or sigma0/gamma0 "
    "exported by SNAP. <b>Band</b>: the HH band of a multi-band raster (the log names the band "
    "used). The raster needs a CRS; it is only read, never modified.</p>"
    "<p><b>Map only this extent</b> (optional; the dialog offers the map canvas's, a layer's or one "
    "drawn): only the raster's pixels within it are read and mapped, and the outputs cover that "
    "window. <b>Map only inside polygons</b> (optional; any CRS, <i>selected features only</i> "
    "honoured): the same for the polygons' bounding box, and pixels outside the polygons are nodata. "
    "Given both, the run maps their intersection. The model sees no context beyond the window, so "
    "classes within one tile of its edge may differ slightly from those of a run over the whole raster.</p>"
    "<p><b>Input units</b>: <i>auto</i> tells ALOS-2 amplitude DN (16-bit integers), linear power, "
    "dB and 8-bit stretches apart from the data type, a decimated read of the whole raster and the "
    "band's description, and writes its decision and reason to the log; when it cannot tell, the run "
    "stops and asks you to set them. Units the values contradict are refused, and so are RGB "
    "pictures, class maps and complex (SLC) bands. A band's GDAL scale/offset is applied. "
    "Calibrated units (DN, linear power, dB) are read by their <b>absolute level</b>: -18 dB of HH "
    "over a whole tile is water. <i>Relative brightness</i> (8-bit display stretches, chosen by auto "
    "for 8-bit bands) has no level: only its contrasts are used, its land level is anchored, and a "
    "scene of one surface (all water, all forest) cannot be recognised from it; use the calibrated "
    "product where you have it. "
    "<i>ALOS-2 DN</i> is calibrated on the fly: sigma0 = 10&middot;log10(DN&sup2;) + CF, with "
    "the <b>calibration factor</b> CF = -83.0 dB of PALSAR-2 (advanced); DN 0 is nodata. "
    "<i>Linear power</i> &le; 0 is nodata.</p>"
    "<p><b>Pixel size and CRS</b>: the model works on a <b>10 m</b> grid. Inputs at another pixel "
    "size on the ground (3 to 50 m), in degrees (EPSG:4326), in Web Mercator away from the equator "
    "or rotated are read through a resampled view on a 10 m grid (the raster's own CRS, or the UTM "
    "zone of its centre for degrees and strongly distorting projections), averaging "
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
    "CPU; the log says which ran. <b>Tile size</b>, <b>tile overlap</b> (pixels), <b>tiles per "
    "batch</b> (advanced): empty uses the model's defaults (tile size and tiles per batch 0 too; "
    "overlap 0 means no overlap). Tiles per batch by default: on the CPU as many (up to 4) as keep "
    "the run near 500 MB of memory, as the model runs no faster on more; on a GPU as many as half "
    "its free memory holds (up to 64), in half precision where the first batch shows that it gives "
    "the classes full precision gives (the log says which). "
    "<b>CPU threads</b> (advanced): empty uses one per physical core; fewer leave cores to QGIS. "
    "<b>Precision</b> (advanced): auto runs fp32 on the CPU (half precision is no faster there) and, on "
    "a GPU, fp16 when it gives the first batch's pixels the class fp32 gives on 99 % of them; fp32 or "
    "fp16 forces one (fp16 needs the onnx package). "
    f"Each tile runs once; parts of the raster without valid data are neither read nor run. "
    f"The bundled models take {BUNDLED_TILE_SIZE} px "
    f"tiles only (fixed in their graph): leave the tile size empty or set {BUNDLED_TILE_SIZE}. Tiles "
    "overlap and are blended smoothly, so no seams appear at tile borders. Sizes that "
    "would not fit in the memory available are refused, naming the largest that fit.</p>"
    "<p><b>Input check</b>: before the model runs, a sample of the input spread over the whole "
    "raster (in dB, after the unit conversion) is compared with the backscatter the model was "
    "trained on (its metadata, when it declares it) and with the range it reads; the log gives "
    "both, and a <b>warning</b> says when the input is far off (for example a median 10 dB below "
    "anything the model saw: a wrong calibration factor or wrong input units). The run goes on, "
    "but such a map should not be trusted.</p>"
)
OUTPUT_FILES_HELP = (
    f"<p>The file extension picks the format of an output: {format_list()} (PNG holds the class "
    "or water raster, not the float32 scores). All outputs of a run and their .qml styles are put "
    "in place together when it ends: a failed or cancelled run leaves none, and earlier files as "
    "they were. Nothing is written in the input's folder unless an output goes there.</p>"
)
BUNDLED_MODEL_HELP = (
    "<p><b>Bundled model</b>: model/weights/{task}.onnx, a small refined segmentation network "
    "(Swin encoder, UPerNet decoder with high-resolution injection and a progressive refine-up head, "
    "3.5 M parameters) trained on {trained_on}. It reads calibrated backscatter by its absolute level, "
    "trained to hold under the calibration error of calibrated products (+-1.5 dB); a product several "
    "dB off (some airborne and third-party data) gets a warning in the log and may be mapped wrong. "
    "Its scores on held-out real and simulated scenes and its limits are in model/MODEL_CARD.md; "
    "its name is printed in the log.</p>"
)
KEY_PARAMETERS_HELP = (
    "<i>SAR raster</i>, a georeferenced HH backscatter raster (calibrated dB, linear power or ALOS-2 DN; "
    "an 8-bit picture is read as relative brightness); <i>Input units</i>, auto unless the log's decision "
    "is wrong; <i>Map only this extent / inside polygons</i> to map part of the raster."
)
BUNDLED_LIMIT_HELP = {
    "lulc": "the bundled land-cover model learnt simulated ALOS-2-like scenes and one real airborne L-band "
            "scene, not real PALSAR-2: on real data its map is indicative; check it against field data "
            "(Evaluate Against Reference) or train a model for your area.",
    "water": "water the radar does not show darker than land (wind-roughened, flooded vegetation) is missed, "
             "and radar shadow may be taken for water; an 8-bit picture gives contrasts only, so a scene of "
             "one surface (all water, all land) cannot be recognised from it.",
}
BUNDLED_TRAINING_HELP = {
    "lulc": "<b>simulated ALOS-2-like scenes</b> and one real airborne L-band scene (San Francisco), not on "
            "real PALSAR-2 acquisitions: treat its maps on real data as indicative",
    "water": "real Sentinel-1 scenes (ETCI 2021, Sen1Floods11) and <b>simulated ALOS-2-like scenes</b>: on real "
             "calibrated chips it never saw it finds more water than METHOD=threshold, on 8-bit scenes as much; "
             "water the radar does not show darker than land is missed by both",
}


class BandWithDefault(QgsProcessingParameterBand):
    """A required band whose default stands in when no value is given (qgis_process, Python):
    QGIS 3.22's band parameter refuses a missing value despite its default. Required, so the dialog
    does not label it "[optional]"."""

    def clone(self):
        copy = BandWithDefault(self.name(), self.description(), self.defaultValue(), self.parentLayerParameterName())
        copy.setFlags(self.flags())
        return copy

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802 (QGIS API)
        return super().checkValueIsAcceptable(self.defaultValue() if value is None else value, context)


class PluginAlgorithm(QgsProcessingAlgorithm):
    """What every SAR LULC algorithm shares: its icon and help, enum options given as text or index,
    and raster inputs read by GDAL from their file."""

    # What QGIS calls on an algorithm and the core does inside: GDAL raises exceptions there, as the
    # core expects, and nowhere else in the QGIS process.
    GDAL_SCOPED_METHODS = ("checkParameterValues", "prepareAlgorithm", "processAlgorithm", "postProcessAlgorithm")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.GDAL_SCOPED_METHODS:
            if name in vars(cls):
                setattr(cls, name, gdal_exceptions()(vars(cls)[name]))

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def icon(self):
        return QIcon(str(ICON_PATH))

    def helpUrl(self):  # noqa: N802 (QGIS API)
        """The Help button's page: this algorithm's help rendered with its parameters (the README when the
        page cannot be written)."""
        from .help_page import help_page

        try:
            return QUrl.fromLocalFile(str(help_page(self))).toString()
        except OSError:
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
        parameter.setFlags(parameter.flags() | PARAMETER_ADVANCED)
        return parameter

    def with_option_texts(self, parameters) -> dict:
        """``parameters`` with enum values given as an option index (0, "2") or in another letter
        case ("db") replaced by the option's text, so both forms are accepted everywhere."""
        resolved = dict(parameters)
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            if not isinstance(definition, QgsProcessingParameterEnum) or not definition.usesStaticStrings() or \
                    value is None or isinstance(value, bool):
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
        # Before any work: no output may be one of the run's inputs or another of its outputs, and files are
        # named for the format written into them.
        try:
            check_distinct_files(*run_files(self, parameters, context)[::-1])
        except InferenceError as error:
            return False, str(error)
        problem = (file_extension_problem(self, parameters, context) or geopackage_problem(self, parameters)
                   or unacceptable_value_problem(self, parameters, context))
        if problem:
            return False, problem
        return super().checkParameterValues(parameters, context)

    def optional_output_layer(self, parameters, name, context) -> str | None:
        """The destination of an optional layer output, or None when left empty. A batch row gives an
        empty output as an empty output definition: asking Processing for its layer would queue a
        nameless layer to load, reported in red as "not correctly generated"."""
        value = parameters.get(name)
        if isinstance(value, QgsProcessingOutputLayerDefinition):
            value, _ = value.sink.valueAsString(context.expressionContext(), "")
        if value is None or value == "":
            return None
        return self.parameterAsOutputLayer(parameters, name, context) or None

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
    THREADS = "THREADS"
    PRECISION = "PRECISION"
    EXTENT = "EXTENT"
    MASK = "MASK"
    OUTPUT = "OUTPUT"

    # Set by subclasses: the model task ("lulc" or "water"), the name and description of the
    # main output, and the optional float32 score output ("OUTPUT_CONFIDENCE", ...).
    TASK = ""
    OUTPUT_DESCRIPTION = ""
    EXTRA_OUTPUT = ""
    EXTRA_OUTPUT_DESCRIPTION = ""
    # What the loaded result layers are called after the input layer's name ("scene - land cover").
    OUTPUT_LAYER_NAME = ""
    EXTRA_LAYER_NAME = ""

    def group(self):
        return "Segmentation"

    def groupId(self):  # noqa: N802 (QGIS API)
        return "segmentation"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        # Short labels (the dialog, the modeler's step dialog and the batch headers show them in
        # full); what each one means and its empty value are in the help panel.
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.INPUT, "SAR raster (HH backscatter)", defaultValue=latest_backscatter_layer_id()))
        self.addParameter(BandWithDefault(self.BAND, "Band", defaultValue=1, parentLayerParameterName=self.INPUT))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Map only this extent", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.MASK, "Map only inside polygons", [SOURCE_VECTOR_POLYGON], optional=True))
        for parameter in self.reading_parameters():
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model (empty: bundled)", optional=True, fileFilter="ONNX models (*.onnx)"))
        self.addParameter(self.choice(self.DEVICE, "Device", list(DEVICES)))
        for parameter in self.task_parameters():
            self.addParameter(parameter)
        for parameter in self.run_parameters("CPU threads"):
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.OUTPUT_DESCRIPTION))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.EXTRA_OUTPUT, self.EXTRA_OUTPUT_DESCRIPTION, optional=True, createByDefault=False))

    @classmethod
    def reading_parameters(cls) -> list:
        """How the input band is read (units, calibration factor, speckle filter), shared with the many-tile run."""
        return [cls.choice(cls.INPUT_UNITS, "Input units", [u.value for u in InputUnits]),
                cls.advanced(QgsProcessingParameterNumber(cls.CALIBRATION_FACTOR, "Calibration factor (dB)",
                                                          NUMBER_DOUBLE, defaultValue=ALOS2_CALIBRATION_FACTOR_DB)),
                cls.choice(cls.SPECKLE_FILTER, "Speckle filter", [f.value for f in SpeckleFilter]),
                cls.advanced(QgsProcessingParameterNumber(cls.FILTER_SIZE, "Filter window (px)", NUMBER_INTEGER,
                                                          defaultValue=7, minValue=3, maxValue=31))]

    @classmethod
    def run_parameters(cls, threads_description: str) -> list:
        """The advanced parameters of how the model runs (tiles, batch, threads, precision, output grid),
        shared with the many-tile run."""
        parameters = [cls.advanced(QgsProcessingParameterNumber(name, description, NUMBER_INTEGER, optional=True,
                                                                minValue=0))
                      for name, description in ((cls.TILE_SIZE, f"Tile size (px; bundled: {BUNDLED_TILE_SIZE})"),
                                                (cls.OVERLAP, "Tile overlap (px)"),
                                                (cls.BATCH_SIZE, "Tiles per batch"),
                                                (cls.THREADS, threads_description))]
        # Optional, so that models saved before it existed still validate (empty: auto).
        precision = cls.advanced(cls.choice(cls.PRECISION, "Precision", list(PRECISIONS)))
        precision.setFlags(precision.flags() | PARAMETER_OPTIONAL)
        return parameters + [precision, cls.advanced(cls.choice(cls.OUTPUT_GRID, "Output grid",
                                                                [label for label, _ in OUTPUT_GRIDS]))]

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """The engine's own checks and messages before QGIS's, which only say "Incorrect parameter value"."""
        parameters = self.with_option_texts(parameters)
        problem = parameter_problem(self, parameters, context, lambda: self.check_options(parameters, context))
        return (False, problem) if problem else super().checkParameterValues(parameters, context)

    def check_options(self, parameters, context) -> None:
        """The engine's checks of the model file and the run options; raises its InferenceError."""
        from ..model.inference import engine

        model = parameters.get(self.MODEL)
        if isinstance(model, str) and model.strip():
            check_model_file(model)
        engine.check_options(self.run_options(parameters, context))

    def run_options(self, parameters, context):
        """The engine's RunOptions from ``parameters`` (option texts resolved by `with_option_texts`)."""
        from ..model.inference import engine

        output_grid = self.parameterAsEnumString(parameters, self.OUTPUT_GRID, context)
        return engine.RunOptions(
            band=self.parameterAsInt(parameters, self.BAND, context),
            device=self.enum_text(parameters, self.DEVICE, context) or DEVICES[0],
            input_units=self.enum_text(parameters, self.INPUT_UNITS, context) or InputUnits.AUTO.value,
            calibration_factor=self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context),
            speckle_filter=self.enum_text(parameters, self.SPECKLE_FILTER, context) or SpeckleFilter.NONE.value,
            filter_size=self.parameterAsInt(parameters, self.FILTER_SIZE, context),
            output_grid=dict(OUTPUT_GRIDS).get(output_grid, OUTPUT_GRIDS[0][1]),
            tile_size=self.optional_number(parameters, self.TILE_SIZE, context, zero_is_default=True),
            tile_overlap=self.optional_number(parameters, self.OVERLAP, context),
            batch_size=self.optional_number(parameters, self.BATCH_SIZE, context, zero_is_default=True),
            threads=self.optional_number(parameters, self.THREADS, context, zero_is_default=True),
            precision=self.enum_text(parameters, self.PRECISION, context) or PRECISIONS[0],
            **self.task_options(parameters, context))

    def enum_text(self, parameters, name, context) -> str:
        """The option text of an enum parameter; a text or index that is no option is returned as
        given, so that the engine's check names it (QGIS would silently take the default)."""
        value = parameters.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and \
                not self.parameterDefinition(name).checkValueIsAcceptable(value):
            return str(value)
        return self.parameterAsEnumString(parameters, name, context)

    def task_parameters(self) -> list:
        """Parameters only this algorithm has (shown after the common ones)."""
        return []

    def task_options(self, parameters, context) -> dict:
        """RunOptions fields only this algorithm sets."""
        return {}

    def run_model(self, engine, input_path, output_path, model_path, extra_path, options, **callbacks):
        """Call the engine function of this task; returns its RunReport."""
        raise NotImplementedError

    def output_renderer(self, layer, contract, main: bool):
        """The renderer of the main output (``main``) or of the score output, from the model's contract."""
        raise NotImplementedError

    def write_style(self, raster_path, style_path, final_path, contract, main: bool) -> None:
        """The engine's style step: the .qml of a finished output, committed with it."""
        styling.write_style_sidecar(raster_path, style_path, final_path,
                                    lambda layer: self.output_renderer(layer, contract, main))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        problem = onnxruntime_problem()
        if problem:
            raise QgsProcessingException(problem)
        from ..model.inference import engine

        parameters = self.with_option_texts(parameters)
        options = dataclasses.replace(self.run_options(parameters, context),
                                      area=self.area_of_interest(parameters, context, feedback))
        output_path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        extra_path = self.optional_output_layer(parameters, self.EXTRA_OUTPUT, context)
        try:
            self.run_model(
                engine, self.input_path(parameters, context), output_path,
                self.parameterAsFile(parameters, self.MODEL, context) or None, extra_path, options,
                progress=feedback.setProgress, is_cancelled=feedback.isCanceled, log=feedback.pushInfo,
                warn=feedback.pushWarning, style=self.write_style)
        except InferenceError as error:
            raise QgsProcessingException(str(error)) from error
        # The paths as Processing knows them: it matches layers to load by these strings.
        input_name = self.parameterAsRasterLayer(parameters, self.INPUT, context).name()
        styling.hand_over_results(context, output_path, f"{input_name} - {self.OUTPUT_LAYER_NAME}",
                                  extra_path, f"{input_name} - {self.EXTRA_LAYER_NAME}")
        return {self.OUTPUT: output_path, self.EXTRA_OUTPUT: extra_path}

    def area_of_interest(self, parameters, context, feedback):
        """The engine's AreaOfInterest from EXTENT (taken into the input's CRS) and MASK (its polygons, or
        its selected ones, as a file OGR reads: a layer without one is written to a temporary GeoPackage);
        None when neither is given."""
        from ..model.inference.area import AreaOfInterest

        extent = polygons = None
        if parameters.get(self.EXTENT) not in (None, ""):
            crs = self.parameterAsRasterLayer(parameters, self.INPUT, context).crs()
            rectangle = self.parameterAsExtent(parameters, self.EXTENT, context, crs)
            if not rectangle.isNull():
                extent = (rectangle.xMinimum(), rectangle.yMinimum(), rectangle.xMaximum(), rectangle.yMaximum())
        if parameters.get(self.MASK) not in (None, ""):
            path, layer_name = self.parameterAsCompatibleSourceLayerPathAndLayerName(
                parameters, self.MASK, context, ["gpkg", "shp"], "gpkg", feedback)
            polygons = f"{path}|layername={layer_name}" if layer_name else path
        return AreaOfInterest(extent, polygons) if extent or polygons else None

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
        if definition.dataType() == NUMBER_INTEGER:
            number = int(number)
        if zero_is_default and number == 0:
            return None
        return number


def parameter_problem(algorithm: QgsProcessingAlgorithm, parameters: dict, context, engine_check=None) -> str | None:
    """What is wrong with ``parameters``, in words a user can act on, or None (QGIS's own checks
    follow): a raster input that is missing, a folder or not a raster GDAL can read (the engine's
    message); a number parameter given text; then ``engine_check()``, which
    raises the engine's InferenceError; then a value outside a parameter's options or range."""
    given = [(definition, parameters.get(definition.name())) for definition in algorithm.parameterDefinitions()]
    given = [(definition, value) for definition, value in given if value is not None and value != ""]
    for definition, value in given:
        label = f"{definition.description()} ({definition.name()})"
        if isinstance(definition, QgsProcessingParameterRasterLayer) and isinstance(value, str) and \
                QgsProcessingUtils.mapLayerFromString(value, context, False) is None:
            try:
                open_raster(value, getattr(algorithm, "RASTER_ROLES", {}).get(definition.name(), "input raster"))
            except InferenceError as error:
                return f"{label}: {error}"
        if isinstance(definition, QgsProcessingParameterNumber) and isinstance(value, str) and value.strip():
            try:
                float(value)
            except ValueError:
                return f"{label}: '{value}' is not a number."
    if engine_check is not None:
        try:
            engine_check()
        except InferenceError as error:
            return str(error)
    for definition, value in given:
        if isinstance(value, (str, int, float)) and not definition.checkValueIsAcceptable(value):
            label = f"{definition.description()} ({definition.name()})"
            if isinstance(definition, QgsProcessingParameterEnum):
                return f"{label}: '{value}' is not one of its options: {', '.join(definition.options())}."
            if isinstance(definition, QgsProcessingParameterNumber):
                return f"{label}: {value} is out of range; {_number_range(definition)}."
    return None


_OGR_DESTINATION = re.compile(r"^ogr:dbname='(?P<path>[^']*)'(?:\s+table=\"(?P<table>[^\"]*)\")?")


def destination_file(destination: str) -> tuple[Path | None, str | None]:
    """(file, layer name) a sink destination writes to: a plain path, or ``ogr:dbname='...' table="..."``;
    (None, None) for temporary, memory and database destinations."""
    match = _OGR_DESTINATION.match(destination or "")
    if match:
        return Path(match.group("path")), match.group("table")
    if not destination or destination == QgsProcessing.TEMPORARY_OUTPUT or \
            destination.startswith(("memory:", "postgres:", "spatialite:")) or "://" in destination:
        return None, None
    return Path(destination.split("|")[0]), None


def destination_of(value) -> tuple[Path | None, str | None]:
    """`destination_file` of a destination parameter's value (a path, or an output definition)."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.staticValue()
    return destination_file(value) if isinstance(value, str) else (None, None)


def _input_files(value, context) -> list[str]:
    """The files an input parameter value reads: a layer (by id, name or source), a feature source
    definition, a file path, or a list of them."""
    if isinstance(value, QgsProcessingFeatureSourceDefinition):
        value = value.source.staticValue()
    if isinstance(value, (list, tuple)):
        return [path for item in value for path in _input_files(item, context)]
    if isinstance(value, QgsMapLayer):
        return [value.source().split("|")[0]]
    if not isinstance(value, str) or not value.strip():
        return []
    layer = QgsProcessingUtils.mapLayerFromString(value, context, False)
    return [(layer.source() if layer is not None else value).split("|")[0]]


def file_extension_problem(algorithm: QgsProcessingAlgorithm, parameters: dict, context) -> str | None:
    """Why a file output's name does not fit the one format the algorithm writes into it (a PDF named .png, a
    zipped project named .qgs), or None."""
    for definition in algorithm.destinationParameterDefinitions():
        if not isinstance(definition, QgsProcessingParameterFileDestination):
            continue
        path, _ = destination_of(parameters.get(definition.name()))
        extensions = re.findall(r"\*\.(\w+)", definition.fileFilter())
        if path is None or not extensions or path.suffix.lower().lstrip(".") in extensions:
            continue
        wanted = " or ".join(f".{extension}" for extension in extensions)
        return (f"The output {definition.description()} ({definition.name()}) file '{path}' must end in {wanted}: "
                f"that is the format written into it ({definition.fileFilter()}). Change the file name.")
    return None


def geopackage_tables(path: Path) -> list[str]:
    """The user tables (raster and vector) of an existing GeoPackage; [] when it cannot be read."""
    try:
        dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR | gdal.OF_RASTER)
    except RuntimeError:
        return []
    if dataset is None:
        return []
    names = [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())]
    names += [value.split(":")[-1] for key, value in (dataset.GetMetadata("SUBDATASETS") or {}).items()
              if key.endswith("_NAME")]
    return [name for name in names if name != "layer_styles"]


def geopackage_problem(algorithm: QgsProcessingAlgorithm, parameters: dict) -> str | None:
    """Refuse writing a whole-file output over an existing GeoPackage that holds several tables (a project's
    data): the file would be replaced with all of them. A single table (an earlier result) may be replaced;
    a layer destination (ogr:dbname=... table=...) adds a table; outputs an algorithm rebuilds itself
    (``GEOPACKAGE_OUTPUTS_REBUILT``, e.g. the field package, which keeps its observations) are its own."""
    for definition in algorithm.destinationParameterDefinitions():
        path, table = destination_of(parameters.get(definition.name()))
        if (path is None or table or path.suffix.lower() != ".gpkg" or not path.is_file()
                or definition.name() in getattr(algorithm, "GEOPACKAGE_OUTPUTS_REBUILT", ())):
            continue
        tables = geopackage_tables(path)
        if len(tables) > 1:
            return (f"The output {definition.description()} ({definition.name()}) file '{path}' is a GeoPackage "
                    f"holding {len(tables)} tables ({', '.join(sorted(tables)[:5])}): writing there would replace the "
                    f"whole file and lose them. Choose another file"
                    + (f", or add a table to it: ogr:dbname='{path}' table=\"name\"."
                       if definition.type() in ("sink", "vectorDestination") else "."))
    return None


def run_files(algorithm: QgsProcessingAlgorithm, parameters: dict, context) -> tuple[dict, dict]:
    """({label: file} the run reads, {label: file} it writes), from every parameter of ``algorithm``:
    layers, feature sources and files in; every destination (rasters, vectors, files, folders) out.
    Labels name the parameter as the dialog shows it."""
    inputs, outputs = {}, {}
    for definition in algorithm.parameterDefinitions():
        value = parameters.get(definition.name())
        if value is None or value == "":
            continue
        label = f"{definition.description()} ({definition.name()})"
        if definition.isDestination():
            path, _ = destination_of(value)
            if path is not None:
                outputs[f"output {label}"] = str(path)
        else:
            for index, path in enumerate(_input_files(value, context)):
                inputs[f"input {label}" + (f" #{index + 1}" if index else "")] = path
    return inputs, outputs


def unacceptable_value_problem(algorithm: QgsProcessingAlgorithm, parameters: dict, context) -> str | None:
    """What QGIS would only call an "Incorrect parameter value", said so a user can fix it: a required value
    left empty, a number out of range, a layer or file that does not exist or does not open."""
    for definition in algorithm.parameterDefinitions():
        value = parameters.get(definition.name())
        if definition.isDestination() or definition.checkValueIsAcceptable(value, context):
            continue
        label = f"{definition.description()} ({definition.name()})"
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"{label} is required: give a value."
        if isinstance(definition, QgsProcessingParameterNumber):
            return f"{label}: {value} is out of range; {_number_range(definition)}."
        if isinstance(value, str):
            path = value.split("|")[0]
            if definition.type() in ("layer", "raster", "vector", "source", "file") and not Path(path).exists():
                return (f"{label}: '{value}' is neither a layer of the project nor a file that exists. Check the "
                        f"path, or choose a layer.")
            return f"{label}: '{value}' cannot be opened as a {definition.type()} input. Check that it is one."
    return None


def _number_range(definition: QgsProcessingParameterNumber) -> str:
    """The values a number parameter accepts, as a phrase ("use 3 to 31")."""
    integer = definition.dataType() == NUMBER_INTEGER

    def show(number):
        return str(int(number)) if integer or float(number).is_integer() else f"{number:g}"

    low, high = definition.minimum(), definition.maximum()
    bounded_low, bounded_high = math.isfinite(low) and low > -1e300, math.isfinite(high) and high < 1e300
    if bounded_low and bounded_high:
        return f"use {show(low)} to {show(high)}"
    if bounded_low:
        return f"use {show(low)} or more"
    if bounded_high:
        return f"use at most {show(high)}"
    return "use a finite number"


def latest_backscatter_layer_id() -> str | None:
    """The dialog's default input: the topmost raster of the project that may be backscatter (not a
    SAR LULC result, not a class raster), so the result a run just loaded is not proposed as input.

    None outside the QGIS desktop (qgis_process, scripts): no dialog shows there, and a missing
    INPUT must stay an error rather than silently take a layer of the project."""
    from qgis.utils import iface

    if iface is None:
        return None
    for node in QgsProject.instance().layerTreeRoot().findLayers():
        layer = node.layer()
        if isinstance(layer, QgsRasterLayer) and layer.providerType() == "gdal" and may_be_backscatter(layer.source()):
            return layer.id()
    return None


@gdal_exceptions()
def may_be_backscatter(source: str) -> bool:
    """Whether band 1 of the raster ``source`` may be SAR backscatter (GDAL reads its header only)."""
    try:
        dataset = gdal.OpenEx(source, gdal.OF_RASTER)
    except RuntimeError:
        return False
    return dataset is not None and not_backscatter_reason(dataset, 1) is None


def help_text(summary: str, result: str, outputs: str, task: str) -> str:
    """The algorithm's help panel: first what a user reads (what it does, the parameters that matter,
    what the result means, the bundled model's limit in one line), then the details: input, outputs,
    options and model."""
    return (f"<p>{summary}</p><p><b>Set</b>: {KEY_PARAMETERS_HELP}</p><p><b>Result</b>: {result}</p>"
            f"<p><b>Limit</b>: {BUNDLED_LIMIT_HELP[task]}</p><h3>Details</h3>{INPUT_HELP}<h3>Outputs</h3>{outputs}"
            f"{OUTPUT_FILES_HELP}{OPTIONS_HELP}"
            f"{BUNDLED_MODEL_HELP.format(task=task, trained_on=BUNDLED_TRAINING_HELP[task])}")


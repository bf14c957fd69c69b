"""What Segment and Water Detect share: one SAR scene in, a styled result raster and its optional score raster
out, through one engine function. The algorithm names its task, outputs, help, the engine function it calls
(`run_core`) and how its outputs are drawn (`output_renderer`)."""

import dataclasses

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ...dependencies import onnxruntime_problem
from ...sarlulc.rasters.area import AreaOfInterest
from ...sarlulc.inference.engine import check_options
from ...sarlulc.inference.session import check_model_file
from .. import styling
from ..checks import parameter_problem
from ..compat import SOURCE_VECTOR_POLYGON
from ..messages import engine_errors
from ..parameters import BandWithDefault, latest_backscatter_layer_id
from .model_options import ModelOptionsMixin


class OneSceneMixin(ModelOptionsMixin):
    """Parameters, checks and run of a one-scene model algorithm, for a PluginAlgorithm."""

    INPUT = "INPUT"
    EXTENT = "EXTENT"
    MASK = "MASK"
    OUTPUT = "OUTPUT"

    # Set by the algorithm: the model task ("lulc" or "water"), the name and description of the
    # main output, and the optional float32 score output ("OUTPUT_CONFIDENCE", ...).
    TASK = ""
    OUTPUT_DESCRIPTION = ""
    EXTRA_OUTPUT = ""
    EXTRA_OUTPUT_DESCRIPTION = ""
    # What the loaded result layers are called after the input layer's name ("scene - land cover").
    OUTPUT_LAYER_NAME = ""
    EXTRA_LAYER_NAME = ""

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
        self.addParameter(self.option_choice(self.DEVICE, "Device", "device"))
        for parameter in self.task_parameters():
            self.addParameter(parameter)
        for parameter in self.run_parameters("CPU threads"):
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.OUTPUT_DESCRIPTION))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.EXTRA_OUTPUT, self.EXTRA_OUTPUT_DESCRIPTION, optional=True, createByDefault=False))

    def task_parameters(self) -> list:
        """Parameters only this algorithm has (shown after the common ones)."""
        return []

    def explained_problem(self, parameters, context):
        """The engine's own checks and messages before QGIS's, which only say "Incorrect parameter value"."""
        return parameter_problem(self, parameters, context, lambda: self.check_options(parameters, context))

    def check_options(self, parameters, context) -> None:
        """The engine's checks of the model file and the run options; raises its InferenceError."""
        model = parameters.get(self.MODEL)
        if isinstance(model, str) and model.strip():
            check_model_file(model)
        check_options(self.run_options(parameters, context))

    def run_core(self, input_path, output_path, extra_path, **arguments):
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
        parameters = self.with_option_texts(parameters)
        options = dataclasses.replace(self.run_options(parameters, context),
                                      area=self.area_of_interest(parameters, context, feedback))
        output_path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        extra_path = self.optional_output_layer(parameters, self.EXTRA_OUTPUT, context)
        with engine_errors():
            self.run_core(
                self.raster_file(parameters, self.INPUT, context)[1], output_path, extra_path,
                model_path=self.parameterAsFile(parameters, self.MODEL, context) or None, options=options,
                progress=feedback.setProgress, is_cancelled=feedback.isCanceled, log=feedback.pushInfo,
                warn=feedback.pushWarning, style=self.write_style)
        # The paths as Processing knows them: it matches layers to load by these strings.
        input_name = self.parameterAsRasterLayer(parameters, self.INPUT, context).name()
        styling.hand_over_results(context, output_path, f"{input_name} - {self.OUTPUT_LAYER_NAME}",
                                  extra_path, f"{input_name} - {self.EXTRA_LAYER_NAME}")
        return {self.OUTPUT: output_path, self.EXTRA_OUTPUT: extra_path}

    def area_of_interest(self, parameters, context, feedback):
        """The engine's AreaOfInterest from EXTENT (taken into the input's CRS) and MASK (its polygons, or
        its selected ones, as a file OGR reads: a layer without one is written to a temporary GeoPackage);
        None when neither is given."""
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

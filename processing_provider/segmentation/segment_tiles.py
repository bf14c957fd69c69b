"""SAR LULC Segment Tiles (sarlulc:segmenttiles): land cover or water over many tiles in one resumable,
seam-free run, on this machine or on a Dask cluster."""

import multiprocessing
import sys
from pathlib import Path

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterVectorLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ...dependencies import onnxruntime_problem, qgis_python
from ...sarlulc.inference.engine import check_options
from ...sarlulc.errors import InferenceError
from .. import styling
from ..algorithm import PluginAlgorithm
from ..compat import FILE_FOLDER, NUMBER_INTEGER, SOURCE_RASTER, SOURCE_VECTOR_POLYGON
from ..help_texts import INPUT_HELP, OPTIONS_HELP
from ..messages import engine_errors
from ..parameters import TASK_CHOICES
from . import TOOLBOX_GROUP
from .model_options import ModelOptionsMixin
from .segment import SegmentAlgorithm
from .water_detect import WaterDetectAlgorithm

# By the core's task: the algorithm whose styles the outputs take, and the names of the loaded mosaics.
STYLED_LIKE = {"lulc": SegmentAlgorithm, "water": WaterDetectAlgorithm}
LAYER_NAMES = {"lulc": ("land cover", "land-cover confidence"), "water": ("water", "water probability")}


class SegmentTilesAlgorithm(ModelOptionsMixin, PluginAlgorithm):
    """Runs Segment or Water Detect over every tile of a folder or list into a folder of COGs and a VRT mosaic."""

    INPUT_FOLDER = "INPUT_FOLDER"
    INPUT_FILES = "INPUT_FILES"
    INPUT_INDEX = "INPUT_INDEX"
    GROUP = TOOLBOX_GROUP
    TASK = "TASK"
    SCORES = "SCORES"
    WORKERS = "WORKERS"
    SCHEDULER = "SCHEDULER"
    MOSAIC_COG = "MOSAIC_COG"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT = "OUTPUT"
    OUTPUT_SCORES = "OUTPUT_SCORES"
    MANIFEST = "MANIFEST"
    FAILED = "FAILED"

    def name(self):
        return "segmenttiles"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "SAR LULC Segment Tiles"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "Maps land cover (or water) over many tiles, such as a country of ALOS-2 mosaic tiles, in one run that "
            "can be resumed, without seams at the tile borders, on this machine or on a Dask cluster."
            "<h3>Tiles</h3><p>A <b>folder</b> of GeoTIFF tiles, or <b>tile files</b> (or one VRT of them). They "
            "must make one mosaic: one CRS, data type, units, band count, nodata and pixel grid, and must not "
            "overlap; otherwise the run is refused before any work, naming the files and the fix. A tile GDAL "
            "cannot read (a damaged file) is reported and left out; the others are run.</p>"
            "<h3>Outputs</h3><p>In the <b>output folder</b>: tiles/NAME.tif, one Cloud-Optimised GeoTIFF per tile "
            "(with <b>scores</b>: NAME_confidence.tif or NAME_probability.tif too); land_cover.vrt (or water.vrt), "
            "the mosaic of every finished tile, loaded with the model's legend and its .qml style; with <b>mosaic "
            "COG</b>, one COG of the whole mosaic once every tile is finished; manifest.json, the record of each "
            "finished tile.</p>"
            "<p><b>No seams</b>: each tile is read with margins of at least one model tile from its neighbours "
            "(through a VRT of all tiles), so tile borders are blended like any other overlap and the classes "
            "equal those of one run over the whole mosaic. Tiles read resampled (in degrees, or at another pixel "
            "size) may differ in a few pixels along their borders.</p>"
            "<p><b>Resume</b>: run again with the same output folder: tiles whose record still holds (same tiles "
            "and neighbours, model, options, files) are skipped; failed, cancelled and half-written ones are run. "
            "Cancel stops at once and keeps every finished tile.</p>"
            "<h3>Workers</h3><p><b>Workers</b> 1 runs the tiles here one after another. More start a local Dask "
            "cluster of that many processes, each with cores / workers CPU threads unless CPU threads is set "
            "(needs the dask and distributed packages). A <b>scheduler address</b> (tcp://host:8786) runs the "
            "tiles on the cluster of that scheduler instead (started with 'dask scheduler' and 'dask worker "
            "ADDRESS'; the tiles and the output folder must be at the same paths on every worker, and the workers "
            "need the plugin's Python packages). The README's \"Map many tiles\" section says more.</p>"
            + INPUT_HELP + OPTIONS_HELP)

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT_FOLDER, "Folder of tiles", behavior=FILE_FOLDER, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT_FILES, "Tile files (or a VRT of them)", SOURCE_RASTER, optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.INPUT_INDEX, "Tile index (gdaltindex)", [SOURCE_VECTOR_POLYGON], optional=True))
        self.addParameter(self.choice(self.TASK, "Map", [label for label, _ in TASK_CHOICES]))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model (empty: bundled)", optional=True, fileFilter="ONNX models (*.onnx)"))
        self.addParameter(QgsProcessingParameterNumber(
            self.BAND, "Band", NUMBER_INTEGER, defaultValue=1, minValue=1))
        for parameter in self.reading_parameters():
            self.addParameter(parameter)
        self.addParameter(self.option_choice(self.DEVICE, "Device", "device"))
        self.addParameter(self.advanced(self.option_choice(self.METHOD, "Water method", "method")))
        self.addParameter(self.advanced(self.water_threshold_parameter()))
        for parameter in self.run_parameters("CPU threads (per worker)"):
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterBoolean(
            self.SCORES, "Also write the confidence / water probability", defaultValue=False))
        self.addParameter(QgsProcessingParameterNumber(
            self.WORKERS, "Workers", NUMBER_INTEGER, defaultValue=1, minValue=1))
        self.addParameter(self.advanced(QgsProcessingParameterString(
            self.SCHEDULER, "Dask scheduler address (empty: this machine)", optional=True)))
        self.addParameter(QgsProcessingParameterBoolean(self.MOSAIC_COG, "Also write one mosaic COG",
                                                        defaultValue=False))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer(self.OUTPUT, "Mosaic (VRT)"))
        self.addOutput(QgsProcessingOutputRasterLayer(self.OUTPUT_SCORES, "Scores mosaic (VRT)"))
        self.addOutput(QgsProcessingOutputFile(self.MANIFEST, "Manifest"))
        self.addOutput(QgsProcessingOutputNumber(self.FAILED, "Tiles failed"))

    def task(self, parameters, context) -> str:
        return dict(TASK_CHOICES)[self.parameterAsEnumString(parameters, self.TASK, context) or TASK_CHOICES[0][0]]

    def task_options(self, parameters, context) -> dict:
        return self.water_options(parameters, context) if self.task(parameters, context) == "water" else {}

    def sources(self, parameters, context) -> list[str]:
        folder = self.parameterAsFile(parameters, self.INPUT_FOLDER, context)
        layers = self.parameterAsLayerList(parameters, self.INPUT_FILES, context)
        index = self.parameterAsVectorLayer(parameters, self.INPUT_INDEX, context)
        sources = ([folder] if folder else []) + [layer.source().split("|")[0] for layer in layers] + \
            ([index.source().split("|")[0]] if index is not None else [])
        if not sources:
            raise QgsProcessingException("Choose the tiles: a folder of GeoTIFF tiles, the tile files (or a VRT of "
                                         "them), or a tile index.")
        return sources

    def explained_problem(self, parameters, context):
        try:
            check_options(self.run_options(parameters, context))
        except InferenceError as error:
            return str(error)
        return None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        problem = onnxruntime_problem()
        if problem:
            raise QgsProcessingException(problem)
        from ...sarlulc.tiles.run import map_tiles

        parameters = self.with_option_texts(parameters)
        task = self.task(parameters, context)
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        workers = self.parameterAsInt(parameters, self.WORKERS, context)
        scheduler = self.parameterAsString(parameters, self.SCHEDULER, context).strip() or None
        if workers > 1 and not scheduler:
            _spawn_workers_with_python()

        styled_like = STYLED_LIKE[task]()  # its outputs' styles are those of Segment / Water Detect
        with engine_errors():
            report = map_tiles(
                self.sources(parameters, context), folder, task, self.parameterAsFile(parameters, self.MODEL, context)
                or None, self.run_options(parameters, context), scores=self.parameterAsBool(parameters, self.SCORES,
                                                                                            context),
                mosaic_cog=self.parameterAsBool(parameters, self.MOSAIC_COG, context), workers=workers,
                scheduler=scheduler, progress=feedback.setProgress, is_cancelled=feedback.isCanceled,
                log=feedback.pushInfo, warn=feedback.pushWarning, style=styled_like.write_style)
        feedback.pushInfo(report.summary())
        if report.mosaic is None:
            raise QgsProcessingException("No tile was finished, so there is no mosaic:\n" + report.summary())
        names = LAYER_NAMES[task]
        for path, name in ((report.mosaic, names[0]), (report.scores_mosaic, names[1])):
            if path:
                context.addLayerToLoadOnCompletion(path, QgsProcessingContext.LayerDetails(name, context.project()))
        styling.hand_over_results(context, report.mosaic, names[0], report.scores_mosaic, names[1])
        return {self.OUTPUT: report.mosaic, self.OUTPUT_SCORES: report.scores_mosaic, self.OUTPUT_FOLDER: folder,
                self.MANIFEST: report.manifest, self.FAILED: len(report.failed)}


def _spawn_workers_with_python() -> None:
    """Local Dask workers are new Python processes; inside QGIS ``sys.executable`` is QGIS itself, so
    point them at the Python QGIS embeds."""
    if "python" not in Path(sys.executable).name.lower():
        multiprocessing.set_executable(qgis_python())

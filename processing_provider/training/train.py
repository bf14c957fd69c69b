"""Train / fine-tune model (``sarlulc:train``): a model for the user's area from their SAR and labels.

The training itself is sarlulc/training/finetune.py (torch, no QGIS), the same as
``python -m sarlulc.training.finetune``; this file turns the parameters into its request and its
messages into feedback. torch is an optional dependency: without it the run is refused with
how to install it.
"""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ...dependencies import torch_problem
from ...sarlulc.sar.units import ALOS2_CALIBRATION_FACTOR_DB, InputUnits
from ...sarlulc.inference.session import DEVICES
from ..algorithm import PluginAlgorithm
from ..compat import NUMBER_DOUBLE, NUMBER_INTEGER, SOURCE_MAP_LAYER, SOURCE_RASTER
from ..parameters import TASK_CHOICES
from . import TOOLBOX_GROUP

STARTS = (("bundled model (fine-tune)", "bundled"), ("random weights (from scratch)", "scratch"))


class TrainAlgorithm(PluginAlgorithm):
    """Trains or fine-tunes a model on the user's SAR rasters and labels (sarlulc/training/finetune.py)."""

    GROUP = TOOLBOX_GROUP
    INPUTS = "INPUTS"
    REFERENCES = "REFERENCES"
    CLASS_FIELD = "CLASS_FIELD"
    REMAP = "REMAP"
    CLASSES = "CLASSES"
    BAND = "BAND"
    INPUT_UNITS = "INPUT_UNITS"
    CALIBRATION_FACTOR = "CALIBRATION_FACTOR"
    TASK = "TASK"
    START = "START"
    START_MODEL = "START_MODEL"
    EPOCHS = "EPOCHS"
    MINUTES = "MINUTES"
    VALIDATION_SHARE = "VALIDATION_SHARE"
    BLOCK_SIZE = "BLOCK_SIZE"
    CROPS_PER_EPOCH = "CROPS_PER_EPOCH"
    LEARNING_RATE = "LEARNING_RATE"
    SEED = "SEED"
    DEVICE = "DEVICE"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OUTPUT_REPORT = "OUTPUT_REPORT"

    def name(self):
        return "train"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Train / fine-tune model"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>Trains a model for your area from your SAR rasters and your labels: by default it fine-tunes the "
            "bundled model. The result is an .onnx model to choose as <b>Model</b> in Segment (or Water Detect), "
            "and an HTML report that compares it with the starting model.</p>"
            "<h3>Inputs</h3><p><b>SAR rasters</b>: read exactly as Segment reads them (<b>band</b>, <b>input "
            "units</b>, <b>calibration factor</b>). <b>Reference</b>: one for all rasters, or one per raster in "
            "the same order: a class raster on any grid or CRS (resampled by nearest neighbour), or a polygon or "
            "point layer (a point labels the pixel it falls in) whose <b>class field</b> holds class codes or "
            "class names. Codes are the legend's (1 Water, 2 Built-up, 3 Paddy field, 4 Cropland, 5 Grassland, "
            "6 Broadleaf forest, 7 Needleleaf forest, 8 Bare land, 9 Solar panel; 0 = no label); other codes "
            "need a <b>remap table</b> (CSV source_code,source_name,class_code, like those in the plugin's "
            "sarlulc/training/remap_tables, e.g. JAXA's HRLULC). Water task: 1 is water, 2-9 land.</p>"
            "<h3>Your own classes</h3><p>A <b>class table</b> (CSV code,name,color, one row per class, e.g. "
            "<code>3,Open water,#0022ff</code>; codes 1-254, each code and name once) makes a model of those "
            "classes instead of the legend's 9: the reference holds their codes (or, in a class field, their "
            "names in any letter case). Without a table, a class raster that names its classes (category names "
            "or an attribute table, as QGIS and GDAL write them) brings its names and colours. Fine-tuning keeps "
            "the bundled model's encoder and decoder and gives it a new classification head, one output per "
            "class (the log says so). The model's contract carries the classes, so Segment's result shows their "
            "names and colours. Refused before training: a duplicate code or name, a code outside 1-254, a "
            "colour not #rrggbb, a reference code or name missing from the table.</p>"
            "<h3>Training</h3><p>A <b>validation share</b> of the labelled pixels, in whole square blocks, is "
            "never trained on: every epoch is scored there and the best epoch is kept. The run stops after "
            "<b>epochs</b>, or with the epoch that reaches the <b>time budget</b>. The log names the device "
            "(auto takes a CUDA GPU when torch sees one) and how long each epoch takes. On a 2-core laptop CPU "
            "the defaults took 7 minutes for a 1024 x 600 px scene (README: Train a model for your area).</p>"
            "<p>Refused before training, saying why: a reference beside the rasters, fractional values, codes "
            "outside the legend, one class only, fewer than 1000 labelled pixels. Cancel leaves no file.</p>"
            "<p>Needs PyTorch: install it with Plugins ▸ SAR LULC ▸ Install dependencies… (CPU build by "
            "default). Segment and Water Detect do not need it.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUTS, "SAR rasters (HH backscatter)", SOURCE_RASTER))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.REFERENCES, "Reference: class raster or polygon/point layer (one, or one per raster)",
            SOURCE_MAP_LAYER))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_FIELD, "Class field (vector reference)", optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.REMAP, "Remap table (CSV)", optional=True, fileFilter="Code tables (*.csv)"))
        self.addParameter(QgsProcessingParameterFile(
            self.CLASSES, "Class table (CSV code,name,color; empty: the reference's or the legend's)", optional=True,
            fileFilter="Class tables (*.csv)"))
        self.addParameter(self.choice(self.TASK, "Task", [label for label, _ in TASK_CHOICES]))
        self.addParameter(self.choice(self.START, "Start from", [label for label, _ in STARTS]))
        self.addParameter(QgsProcessingParameterFile(
            self.START_MODEL, "Model to fine-tune (empty: bundled)", optional=True, fileFilter="ONNX models (*.onnx)"))
        self.addParameter(QgsProcessingParameterNumber(
            self.EPOCHS, "Epochs", NUMBER_INTEGER, defaultValue=6, minValue=1, maxValue=1000))
        self.addParameter(QgsProcessingParameterNumber(
            self.MINUTES, "Time budget (minutes, 0: none)", NUMBER_DOUBLE, defaultValue=0,
            minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.VALIDATION_SHARE, "Validation share (held-out blocks)", NUMBER_DOUBLE,
            defaultValue=0.2, minValue=0.05, maxValue=0.5))
        self.addParameter(self.choice(self.DEVICE, "Device", list(DEVICES)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            self.BAND, "Band", NUMBER_INTEGER, defaultValue=1, minValue=1)))
        self.addParameter(self.advanced(self.choice(self.INPUT_UNITS, "Input units", [u.value for u in InputUnits])))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            self.CALIBRATION_FACTOR, "Calibration factor (dB)", NUMBER_DOUBLE,
            defaultValue=ALOS2_CALIBRATION_FACTOR_DB)))
        for name, description, kind, default, minimum in (
                (self.BLOCK_SIZE, "Validation block edge (px)", NUMBER_INTEGER, 128, 32),
                (self.CROPS_PER_EPOCH, "Crops per epoch", NUMBER_INTEGER, 512, 8),
                (self.LEARNING_RATE, "Learning rate", NUMBER_DOUBLE, 2e-4, 1e-7),
                (self.SEED, "Random seed", NUMBER_INTEGER, 0, 0)):
            self.addParameter(self.advanced(QgsProcessingParameterNumber(
                name, description, kind, defaultValue=default, minValue=minimum)))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_MODEL, "Trained model", fileFilter="ONNX models (*.onnx)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_REPORT, "Training report", fileFilter="HTML files (*.html)", optional=True,
            createByDefault=True))

    def layer_sources(self, parameters, name, context) -> list[str]:
        """Files GDAL/OGR can read for the layers of ``name``; layers without one are refused."""
        sources = []
        for layer in self.parameterAsLayerList(parameters, name, context):
            provider = layer.providerType()
            if (isinstance(layer, QgsRasterLayer) and provider != "gdal") or \
                    (isinstance(layer, QgsVectorLayer) and provider != "ogr"):
                raise QgsProcessingException(
                    f"The layer '{layer.name()}' is not a file GDAL can read (data provider '{provider}'). Save it "
                    f"as a GeoTIFF or a GeoPackage and run again on that file.")
            sources.append(layer.source())
        if not sources:
            raise QgsProcessingException(f"{self.parameterDefinition(name).description()}: choose at least one layer.")
        return sources

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        problem = torch_problem()
        if problem:
            raise QgsProcessingException(problem)
        from ...sarlulc.training.finetune import TrainingCancelled, TrainingRefused, TrainRequest, train_for_area

        parameters = self.with_option_texts(parameters)
        start = self.parameterAsFile(parameters, self.START_MODEL, context) or \
            dict(STARTS)[self.parameterAsEnumString(parameters, self.START, context)]
        minutes = self.parameterAsDouble(parameters, self.MINUTES, context)
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context) or None
        request = TrainRequest(
            rasters=self.layer_sources(parameters, self.INPUTS, context),
            references=self.layer_sources(parameters, self.REFERENCES, context),
            out_model=self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context), report=report,
            task=dict(TASK_CHOICES)[self.parameterAsEnumString(parameters, self.TASK, context)],
            class_field=self.parameterAsString(parameters, self.CLASS_FIELD, context).strip() or None,
            remap=self.parameterAsFile(parameters, self.REMAP, context) or None,
            band=self.parameterAsInt(parameters, self.BAND, context),
            input_units=self.parameterAsEnumString(parameters, self.INPUT_UNITS, context) or InputUnits.AUTO.value,
            calibration_factor=self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context),
            start=start, epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            minutes=minutes if minutes > 0 else None,
            samples_per_epoch=self.parameterAsInt(parameters, self.CROPS_PER_EPOCH, context),
            lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            validation_share=self.parameterAsDouble(parameters, self.VALIDATION_SHARE, context),
            block_size=self.parameterAsInt(parameters, self.BLOCK_SIZE, context),
            device=self.parameterAsEnumString(parameters, self.DEVICE, context) or DEVICES[0],
            seed=self.parameterAsInt(parameters, self.SEED, context),
            classes=self.parameterAsFile(parameters, self.CLASSES, context) or None)
        try:
            result = train_for_area(request, log=feedback.pushInfo, progress=feedback.setProgress,
                                    is_cancelled=feedback.isCanceled)
        except TrainingRefused as error:
            raise QgsProcessingException(str(error)) from error
        except TrainingCancelled:
            raise QgsProcessingException("Training was cancelled; nothing was written.") from None
        return {self.OUTPUT_MODEL: result.model_path, self.OUTPUT_REPORT: result.report_path}

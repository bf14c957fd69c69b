"""The SAR LULC Processing provider (id ``sarlulc``): the algorithms and the example models."""

from qgis.core import QgsApplication, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..sarlulc.rasters.output_checks import OUTPUT_FORMATS
from .algorithm import ICON_PATH
from .evaluation.evaluate import EvaluateAlgorithm
from .example_models import example_models
from .fieldwork.area_statistics import AreaStatisticsAlgorithm
from .fieldwork.field_map import FieldMapAlgorithm
from .fieldwork.field_package import FieldPackageAlgorithm
from .fieldwork.vectorise import VectoriseAlgorithm
from .preprocessing.calibrate import CalibrateAlgorithm
from .segmentation.segment import SegmentAlgorithm
from .segmentation.segment_tiles import SegmentTilesAlgorithm
from .segmentation.water_detect import WaterDetectAlgorithm
from .training.import_weights import ImportWeightsAlgorithm
from .training.train import TrainAlgorithm

# The provider's algorithms, in the order of the toolbox and of the plugin's menu: add a new one here.
ALGORITHMS = (
    SegmentAlgorithm,
    WaterDetectAlgorithm,
    SegmentTilesAlgorithm,
    CalibrateAlgorithm,
    EvaluateAlgorithm,
    AreaStatisticsAlgorithm,
    VectoriseAlgorithm,
    FieldMapAlgorithm,
    FieldPackageAlgorithm,
    TrainAlgorithm,
    ImportWeightsAlgorithm,
)


class SarLulcProvider(QgsProcessingProvider):
    """Holds the SAR LULC algorithms; raster outputs in the formats the inference core writes."""

    def id(self):
        return "sarlulc"

    def name(self):
        return "SAR LULC"

    def longName(self):  # noqa: N802 (QGIS API)
        return "SAR LULC: land cover and water from L-band SAR"

    def icon(self):
        return QIcon(str(ICON_PATH))

    def load(self):
        QgsApplication.processingRegistry().providerAdded.connect(self.reload_once_registered)
        return super().load()

    def unload(self):
        QgsApplication.processingRegistry().providerAdded.disconnect(self.reload_once_registered)
        super().unload()

    def reload_once_registered(self, provider_id):
        """Load again once the registry holds this provider: the example models' steps are this
        provider's algorithms, which the registry cannot find while the provider is being loaded
        (QGIS's own Models provider reloads on providerAdded for the same reason)."""
        if provider_id == self.id():
            self.refreshAlgorithms()

    def loadAlgorithms(self):  # noqa: N802 (QGIS API)
        for algorithm_class in ALGORITHMS:
            self.addAlgorithm(algorithm_class())
        for model in example_models():
            self.addAlgorithm(model)

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (QGIS API)
        return [suffix.lstrip(".") for suffix in OUTPUT_FORMATS]

    def defaultRasterFileExtension(self):  # noqa: N802 (QGIS API)
        return "tif"

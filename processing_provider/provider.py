"""The SAR LULC Processing provider (id ``sarlulc``)."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .areastats_algorithm import AreaStatisticsAlgorithm
from .base_algorithm import ICON_PATH
from .calibrate_algorithm import CalibrateAlgorithm
from .evaluate_algorithm import EvaluateAlgorithm
from .fieldmap_algorithm import FieldMapAlgorithm
from .fieldpackage_algorithm import FieldPackageAlgorithm
from .segment_algorithm import SegmentAlgorithm
from .vectorise_algorithm import VectoriseAlgorithm
from .water_detect_algorithm import WaterDetectAlgorithm

# The provider's algorithms: add a new one here.
ALGORITHMS = (
    SegmentAlgorithm,
    WaterDetectAlgorithm,
    CalibrateAlgorithm,
    EvaluateAlgorithm,
    AreaStatisticsAlgorithm,
    VectoriseAlgorithm,
    FieldMapAlgorithm,
    FieldPackageAlgorithm,
)


class SarLulcProvider(QgsProcessingProvider):
    """Holds the SAR LULC algorithms; outputs are GeoTIFF only (what the inference core writes)."""

    def id(self):
        return "sarlulc"

    def name(self):
        return "SAR LULC"

    def longName(self):  # noqa: N802 (QGIS API)
        return "SAR LULC: land cover and water from L-band SAR"

    def icon(self):
        return QIcon(str(ICON_PATH))

    def loadAlgorithms(self):  # noqa: N802 (QGIS API)
        for algorithm_class in ALGORITHMS:
            self.addAlgorithm(algorithm_class())

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (QGIS API)
        return ["tif"]

    def defaultRasterFileExtension(self):  # noqa: N802 (QGIS API)
        return "tif"

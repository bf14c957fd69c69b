"""The SAR LULC Processing provider (id ``sarlulc``): the algorithms and the example models."""

from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..dependencies import PLUGIN_DIR
from .base_algorithm import ICON_PATH
from .calibrate_algorithm import CalibrateAlgorithm
from .evaluate_algorithm import EvaluateAlgorithm
from .segment_algorithm import SegmentAlgorithm
from .water_detect_algorithm import WaterDetectAlgorithm

# The provider's algorithms: add a new one here.
ALGORITHMS = (
    SegmentAlgorithm,
    WaterDetectAlgorithm,
    CalibrateAlgorithm,
    EvaluateAlgorithm,
)
# Example Processing models (written by tools/example_models.py), listed under "Example models".
MODELS_DIR = PLUGIN_DIR / "models"


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
        for path in sorted(MODELS_DIR.glob("*.model3")):
            model = QgsProcessingModelAlgorithm()
            if model.fromFile(str(path)):
                self.addAlgorithm(model)

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (QGIS API)
        return ["tif"]

    def defaultRasterFileExtension(self):  # noqa: N802 (QGIS API)
        return "tif"

"""sarlulc:calibrate: ALOS-2/PALSAR-2 amplitude DN to sigma0 backscatter (dB or linear power)."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..model.inference.calibrate import OUTPUT_NODATA, calibrate_dn
from ..model.inference.errors import InferenceError
from ..model.inference.sar_input import ALOS2_CALIBRATION_FACTOR_DB, check_calibration_factor
from .base_algorithm import PluginAlgorithm, parameter_problem
from .compat import NUMBER_DOUBLE, PARAMETER_ADVANCED

# (label shown to users, value passed to calibrate_dn)
OUTPUT_UNITS = (("dB", "db"), ("linear power", "linear"))


class CalibrateAlgorithm(PluginAlgorithm):
    """Calibrates ALOS-2 DN so rasters downloaded from JAXA can be inspected or fed to other tools."""

    INPUT = "INPUT"
    BAND = "BAND"
    OUTPUT_UNITS = "OUTPUT_UNITS"
    CALIBRATION_FACTOR = "CALIBRATION_FACTOR"
    OUTPUT = "OUTPUT"

    def name(self):
        return "calibrate"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Calibrate ALOS-2 DN to Backscatter"

    def group(self):
        return "Preprocessing"

    def groupId(self):  # noqa: N802 (QGIS API)
        return "preprocessing"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>Converts ALOS-2 PALSAR-2 amplitude digital numbers (UInt16 DN, as in JAXA's mosaic "
            "tiles and L2.1 products) to the normalised radar cross-section sigma0.</p>"
            "<p><b>sigma0 [dB] = 10&middot;log10(DN&sup2;) + CF</b>, with the calibration factor "
            "CF = -83.0 dB published by JAXA for PALSAR-2 (ALOS-2/PALSAR-2 calibration factor, JAXA "
            "EORC); linear power = 10<sup>sigma0/10</sup>. Change CF (advanced) only for products "
            "whose documentation gives another value.</p>"
            "<p>DN 0 (JAXA's fill value) and the band's nodata become nodata "
            f"({OUTPUT_NODATA:g}) in the output, a Float32 GeoTIFF on the input's grid and CRS. "
            "The input is only read.</p>"
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "ALOS-2 amplitude DN raster"))
        # Optional like the segmentation algorithms' BAND, so that it may be left out (empty: band 1).
        self.addParameter(QgsProcessingParameterBand(
            self.BAND, "Band (HH)", defaultValue=1, parentLayerParameterName=self.INPUT, optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.OUTPUT_UNITS, "Output units", options=[label for label, _ in OUTPUT_UNITS], defaultValue=0))
        factor = QgsProcessingParameterNumber(
            self.CALIBRATION_FACTOR, "Calibration factor CF (dB)", NUMBER_DOUBLE,
            defaultValue=ALOS2_CALIBRATION_FACTOR_DB)
        factor.setFlags(factor.flags() | PARAMETER_ADVANCED)
        self.addParameter(factor)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Backscatter (sigma0)"))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        def check_factor():
            check_calibration_factor(self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context))

        problem = parameter_problem(self, parameters, context, check_factor)
        return (False, problem) if problem else super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"The input layer '{layer.name()}' is not a raster file GDAL can read; save it as a "
                "GeoTIFF (Raster > Conversion > Translate) and run again on that file.")
        band = self.parameterAsInt(parameters, self.BAND, context)
        label, units = OUTPUT_UNITS[self.parameterAsEnum(parameters, self.OUTPUT_UNITS, context)]
        factor = self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context)
        output_path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        feedback.pushInfo(f"Band {band}: sigma0 = 10*log10(DN^2) + ({factor:g}) dB, written in {label}.")
        try:
            calibrate_dn(layer.source(), output_path, band=band, units=units, calibration_factor=factor,
                         progress=feedback.setProgress, is_cancelled=feedback.isCanceled)
        except InferenceError as error:
            raise QgsProcessingException(str(error)) from error
        return {self.OUTPUT: output_path}

"""sarlulc:calibrate: ALOS-2/PALSAR-2 amplitude DN to sigma0 backscatter (dB or linear power)."""

from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ...sarlulc.calibrate import OUTPUT_NODATA, calibrate_dn
from ...sarlulc.sar.units import ALOS2_CALIBRATION_FACTOR_DB, check_calibration_factor
from ..algorithm import PluginAlgorithm
from ..checks import parameter_problem
from ..compat import NUMBER_DOUBLE
from ..messages import engine_errors
from . import TOOLBOX_GROUP

# (label shown to users, value passed to calibrate_dn)
UNIT_CHOICES = (("dB", "db"), ("linear power", "linear"))


class CalibrateAlgorithm(PluginAlgorithm):
    """Calibrates ALOS-2 DN so rasters downloaded from JAXA can be inspected or fed to other tools."""

    GROUP = TOOLBOX_GROUP
    INPUT = "INPUT"
    BAND = "BAND"
    OUTPUT_UNITS = "OUTPUT_UNITS"
    CALIBRATION_FACTOR = "CALIBRATION_FACTOR"
    OUTPUT = "OUTPUT"

    def name(self):
        return "calibrate"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Calibrate ALOS-2 DN to Backscatter"

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
            self.OUTPUT_UNITS, "Output units", options=[label for label, _ in UNIT_CHOICES], defaultValue=0))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            self.CALIBRATION_FACTOR, "Calibration factor CF (dB)", NUMBER_DOUBLE,
            defaultValue=ALOS2_CALIBRATION_FACTOR_DB)))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Backscatter (sigma0)"))

    def explained_problem(self, parameters, context):
        def check_factor():
            check_calibration_factor(self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context))

        return parameter_problem(self, parameters, context, check_factor)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        _, source = self.raster_file(parameters, self.INPUT, context)
        band = self.parameterAsInt(parameters, self.BAND, context)
        label, units = UNIT_CHOICES[self.parameterAsEnum(parameters, self.OUTPUT_UNITS, context)]
        factor = self.parameterAsDouble(parameters, self.CALIBRATION_FACTOR, context)
        output_path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        feedback.pushInfo(f"Band {band}: sigma0 = 10*log10(DN^2) + ({factor:g}) dB, written in {label}.")
        with engine_errors():
            calibrate_dn(source, output_path, band=band, units=units, calibration_factor=factor,
                         progress=feedback.setProgress, is_cancelled=feedback.isCanceled)
        return {self.OUTPUT: output_path}

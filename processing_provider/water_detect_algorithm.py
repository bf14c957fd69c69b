"""Water Detect (sarlulc:waterdetect): a water mask from HH backscatter."""

from qgis.core import QgsProcessingParameterNumber

from . import styling
from .base_algorithm import SarLulcAlgorithm, help_text


class WaterDetectAlgorithm(SarLulcAlgorithm):
    """Runs the water model and thresholds its probability into a 1/0 mask (+ optional probability)."""

    THRESHOLD = "THRESHOLD"
    OUTPUT_PROBABILITY = "OUTPUT_PROBABILITY"
    TASK = "water"
    OUTPUT_DESCRIPTION = "Water mask"
    EXTRA_OUTPUT = OUTPUT_PROBABILITY
    EXTRA_OUTPUT_DESCRIPTION = "Water probability"
    OUTPUT_LAYER_NAME = "water"
    EXTRA_LAYER_NAME = "water probability"

    def name(self):
        return "waterdetect"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Water Detect"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return help_text(
            "Detects open water in a single-polarisation L-band SAR backscatter raster with a deep "
            "segmentation model run tile by tile; a pixel is water when the model's water probability "
            "reaches the threshold (empty: the model's default).",
            "<p><b>Water mask</b>: uint8, 1 = water, 0 = not water, 255 = nodata; loaded "
            "with water in blue over transparent. <b>Water probability</b> (optional): float32, "
            "0..1, -1 = nodata. Each output gets a .qml style file beside it.</p>",
            self.TASK)

    def task_parameters(self):
        return [QgsProcessingParameterNumber(
            self.THRESHOLD, "Water threshold (0..1)",
            QgsProcessingParameterNumber.Double, optional=True, minValue=0.0, maxValue=1.0)]

    def task_options(self, parameters, context):
        return {"water_threshold": self.optional_number(parameters, self.THRESHOLD, context)}

    def run_model(self, engine, input_path, output_path, model_path, extra_path, options, **callbacks):
        return engine.detect_water(input_path, output_path, model_path=model_path,
                                   probability_path=extra_path, options=options, **callbacks)

    def output_renderer(self, layer, contract, main):
        if main:
            return styling.water_renderer(layer, contract.classes[0])
        return styling.score_renderer(layer, styling.PROBABILITY_RAMP)

"""SAR LULC Segment (sarlulc:segment): a land-use/land-cover class map from HH backscatter."""

from ...sarlulc.products import LULC_CLASSES
from ...sarlulc.inference.engine import segment
from .. import styling
from ..algorithm import PluginAlgorithm
from ..help_texts import help_text
from . import TOOLBOX_GROUP
from .one_scene import OneSceneMixin

CLASS_LIST = ", ".join(f"{code} {name}" for code, name, _ in LULC_CLASSES)


class SegmentAlgorithm(OneSceneMixin, PluginAlgorithm):
    """Runs the LULC model over the raster and writes the class map (+ optional confidence)."""

    GROUP = TOOLBOX_GROUP
    OUTPUT_CONFIDENCE = "OUTPUT_CONFIDENCE"
    TASK = "lulc"
    OUTPUT_DESCRIPTION = "Land-cover classes"
    EXTRA_OUTPUT = OUTPUT_CONFIDENCE
    EXTRA_OUTPUT_DESCRIPTION = "Confidence"
    OUTPUT_LAYER_NAME = "land cover"
    EXTRA_LAYER_NAME = "land-cover confidence"

    def name(self):
        return "segment"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "SAR LULC Segment"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return help_text(
            "Maps land use / land cover from a single-polarisation L-band SAR backscatter raster "
            "with a deep segmentation model run tile by tile.",
            "one land-cover class per pixel, loaded with the class names and colours as its legend; "
            "optionally the confidence of each pixel's class (0..1).",
            "<p><b>Land-cover classes</b>: uint8, one class code per pixel, 0 = nodata; "
            f"loaded with the model's class names and colours as legend (bundled model: {CLASS_LIST}). "
            "<b>Confidence</b> (optional): float32, the winning class's softmax probability, "
            "0..1, -1 = nodata. Each output gets a .qml style file beside it.</p>",
            self.TASK)

    def run_core(self, input_path, output_path, extra_path, **arguments):
        return segment(input_path, output_path, confidence_path=extra_path, **arguments)

    def output_renderer(self, layer, contract, main):
        if main:
            return styling.class_renderer(layer, contract.classes)
        return styling.score_renderer(layer, styling.CONFIDENCE_RAMP)

"""Water Detect (sarlulc:waterdetect): a water mask from HH backscatter."""

from ...sarlulc.inference.engine import detect_water
from ...sarlulc.inference.threshold import ASHMAN_D_MIN, MIN_WATER_CONTRAST_DB, SAMPLE_TILE, WATER_CEILINGS
from .. import styling
from ..algorithm import PluginAlgorithm
from ..help_texts import help_text
from . import TOOLBOX_GROUP
from .one_scene import OneSceneMixin

METHOD_HELP = (
    "<h3>Method</h3><p><b>model</b> (default): the water model decides, pixel by pixel, from the "
    "texture and context it learnt. <b>threshold</b>: the classical baseline of operational SAR "
    "flood services, no model involved: pixels darker than one backscatter threshold are water. "
    "The threshold is found once for the whole raster, split-based: tiles of {tile} px spread over "
    "the raster are read (in dB, after the same unit conversion, resampling and speckle filter as "
    "the model's input), the tiles whose histogram shows water beside land (two populations with "
    "Ashman's D &gt; {ashman:g}, each at least 10 % of the tile, the darker at least {contrast:g} dB "
    "below the scene's median) are pooled, and the Kittler-Illingworth minimum-error threshold "
    "(Otsu when that has no minimum between the two) of their pixels is used. The log gives the "
    "threshold in dB and how it was found. A calibrated input also has its absolute level: a tile "
    "whose darker population lies below the <b>water ceiling</b> of its polarisation (HH {hh:g} dB, "
    "VV {vv:g} dB, HV/VH {cross:g} dB, from the band's description, else the file name) shows "
    "water too, so a scene mostly under water is split. When no tile shows water beside land, the "
    "whole scene's histogram is used if it holds a dark population, with a warning. When the "
    "backscatter forms a <b>single population</b>, a calibrated scene is all water if that "
    "population lies below the ceiling (an ocean tile, a flooded plain) and all land otherwise, the "
    "log says which; a relative (8-bit) scene gets no water and a warning that it cannot tell. "
    "Compare both methods on your data: the threshold confuses water with any smooth dark surface "
    "and misses wind-roughened water (on a dual-polarisation product, run it on the cross-polarised "
    "band, where such water stays dark); on single-look data a speckle filter helps it. "
    "The threshold method writes no probability: the water probability output and the "
    "probability threshold must stay empty (the run stops otherwise); the model only sets the "
    "10 m working grid and the legend, and the device, tile and batch options do not apply.</p>"
).format(tile=SAMPLE_TILE, ashman=ASHMAN_D_MIN, contrast=MIN_WATER_CONTRAST_DB, hh=WATER_CEILINGS["HH"].db,
         vv=WATER_CEILINGS["VV"].db, cross=WATER_CEILINGS["cross"].db)


class WaterDetectAlgorithm(OneSceneMixin, PluginAlgorithm):
    """Runs the water model and thresholds its probability into a 1/0 mask (+ optional probability),
    or thresholds the backscatter itself (METHOD threshold)."""

    GROUP = TOOLBOX_GROUP
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
            "reaches the threshold (empty: the model's default, for the bundled model 0.7 on calibrated "
            "input and 0.45 on relative 8-bit input). <b>Method</b> threshold runs the "
            "classical automatic-threshold baseline instead (below).",
            "a water mask (water in blue, the rest transparent); optionally the water probability (0..1).",
            "<p><b>Water mask</b>: uint8, 1 = water, 0 = not water, 255 = nodata; loaded "
            "with water in blue over transparent. <b>Water probability</b> (optional, METHOD model "
            "only): float32, 0..1, -1 = nodata. Each output gets a .qml style file beside it.</p>"
            + METHOD_HELP,
            self.TASK)

    def task_parameters(self):
        return [self.option_choice(self.METHOD, "Method", "method"), self.water_threshold_parameter()]

    def task_options(self, parameters, context):
        return self.water_options(parameters, context)

    def run_core(self, input_path, output_path, extra_path, **arguments):
        return detect_water(input_path, output_path, probability_path=extra_path, **arguments)

    def output_renderer(self, layer, contract, main):
        if main:
            return styling.water_renderer(layer, contract.classes[0])
        return styling.score_renderer(layer, styling.PROBABILITY_RAMP)

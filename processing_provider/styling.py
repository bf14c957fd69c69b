"""Styles of the outputs, built from the model contract and saved as .qml sidecars.

Each output raster gets a ``.qml`` file beside it: QGIS applies ``name.qml`` whenever it
opens ``name.tif``, so the legend travels with the file (also after a headless
``qgis_process`` run). The engine commits it with the raster (all or none) and refuses,
before any work, a sidecar another file would share or that the plugin did not write; the
plugin's sidecars record the raster they style (a custom property) so a later run may
replace them. When Processing loads a result into the project, a layer post-processor
applies the same sidecar explicitly.
"""

from pathlib import Path

from qgis.core import (
    QgsColorRampShader,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

from ..model.inference.writer import STYLE_MARKER, style_sidecar_path

# Value of a water pixel in the water raster (CONTRACT.md: 1 water, 0 not water, 255 nodata).
WATER_VALUE = 1

# Colour ramps of the 0..1 score rasters: confidence reads like viridis, probability like Blues.
CONFIDENCE_RAMP = ("#440154", (0.5, "#21918c"), "#fde725")
PROBABILITY_RAMP = ("#f7fbff", (0.5, "#6baed6"), "#08306b")

# Post-processors must outlive the algorithm run (QGIS keeps only a raw pointer): one per output path.
_LIVE_POST_PROCESSORS: dict[str, "ApplyStyleSidecar"] = {}


def class_renderer(layer: QgsRasterLayer, classes) -> QgsPalettedRasterRenderer:
    """One palette entry per model class (code, colour, name); other values stay transparent."""
    palette = [QgsPalettedRasterRenderer.Class(c.code, QColor(c.color), c.name) for c in classes]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette)


def water_renderer(layer: QgsRasterLayer, water_class) -> QgsPalettedRasterRenderer:
    """Water pixels in the model's water colour; not-water (0) and nodata (255) transparent."""
    palette = [QgsPalettedRasterRenderer.Class(WATER_VALUE, QColor(water_class.color), water_class.name)]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette)


def score_renderer(layer: QgsRasterLayer, ramp_colors) -> QgsSingleBandPseudoColorRenderer:
    """A continuous 0..1 pseudocolour ramp for confidence/probability rasters."""
    start, (middle_at, middle), end = ramp_colors
    ramp = QgsGradientColorRamp(QColor(start), QColor(end), False, [QgsGradientStop(middle_at, QColor(middle))])
    shader_function = QgsColorRampShader(0.0, 1.0, ramp, QgsColorRampShader.Interpolated)
    shader_function.classifyColorRamp(5)
    shader = QgsRasterShader(0.0, 1.0)
    shader.setRasterShaderFunction(shader_function)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    return renderer


def write_style_sidecar(raster_path, style_path, final_path, make_renderer) -> None:
    """Style the finished raster ``raster_path`` with ``make_renderer(layer)`` and save the style to
    ``style_path``, marked as the plugin's style of ``final_path`` (the raster's name once committed)."""
    layer = QgsRasterLayer(str(raster_path), Path(final_path).stem, "gdal")
    if not layer.isValid():
        raise QgsProcessingException(f"The output '{final_path}' was written but QGIS cannot open it to style it.")
    layer.setRenderer(make_renderer(layer))
    layer.setCustomProperty(STYLE_MARKER, Path(final_path).name)
    message, saved = layer.saveNamedStyle(str(style_path))
    if not saved:
        raise QgsProcessingException(f"Could not write the style file '{style_sidecar_path(final_path)}': {message}")


class ApplyStyleSidecar(QgsProcessingLayerPostProcessorInterface):
    """Applies an output's .qml sidecar when Processing loads the output into the project."""

    def __init__(self, qml_path: Path):
        super().__init__()
        self.qml_path = qml_path

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        message, loaded = layer.loadNamedStyle(str(self.qml_path))
        if not loaded:
            feedback.reportError(f"Could not apply the style '{self.qml_path}': {message}")
            return
        layer.triggerRepaint()
        layer.emitStyleChanged()


def style_when_loaded(context, raster_path) -> None:
    """If Processing will load ``raster_path`` into the project, style it from its sidecar then."""
    if not context.willLoadLayerOnCompletion(raster_path):
        return
    post_processor = ApplyStyleSidecar(style_sidecar_path(raster_path))
    _LIVE_POST_PROCESSORS[raster_path] = post_processor
    context.layerToLoadOnCompletionDetails(raster_path).setPostProcessor(post_processor)

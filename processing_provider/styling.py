"""Styles of the outputs, built from the model contract or the raster's legend.

Each output raster gets a ``.qml`` file beside it: QGIS applies ``name.qml`` whenever it
opens ``name.tif``, so the legend travels with the file (also after a headless
``qgis_process`` run). Vector outputs in a GeoPackage carry their style inside it, as the
layer's default style (the ``layer_styles`` table QGIS and QField read). When Processing
loads a result into the project, a layer post-processor applies the same style explicitly.
"""

from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsMapLayerStyle,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

# Value of a water pixel in the water raster (CONTRACT.md: 1 water, 0 not water, 255 nodata).
WATER_VALUE = 1

# Colour ramps of the 0..1 score rasters: confidence reads like viridis, probability like Blues.
CONFIDENCE_RAMP = ("#440154", (0.5, "#21918c"), "#fde725")
PROBABILITY_RAMP = ("#f7fbff", (0.5, "#6baed6"), "#08306b")

# Post-processors must outlive the algorithm run (QGIS keeps only a raw pointer): one per output path.
_LIVE_POST_PROCESSORS: dict[str, QgsProcessingLayerPostProcessorInterface] = {}


def sidecar_path(raster_path) -> Path:
    """The .qml QGIS looks for beside a raster: same name, .qml suffix."""
    return Path(raster_path).with_suffix(".qml")


def class_renderer(layer: QgsRasterLayer, classes) -> QgsPalettedRasterRenderer:
    """One palette entry per model class (code, colour, name); other values stay transparent."""
    palette = [QgsPalettedRasterRenderer.Class(c.code, QColor(c.color), c.name) for c in classes]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette)


def water_renderer(layer: QgsRasterLayer, water_class) -> QgsPalettedRasterRenderer:
    """Water pixels in the model's water colour; not-water (0) and nodata (255) transparent."""
    palette = [QgsPalettedRasterRenderer.Class(WATER_VALUE, QColor(water_class.color), water_class.name)]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette)


def polygon_class_renderer(classes, field: str = "code") -> QgsCategorizedSymbolRenderer:
    """Class polygons filled in their class colour (thin darker outline), labelled with the class name."""
    categories = []
    for c in classes:
        symbol = QgsFillSymbol.createSimple({
            "color": QColor(c.color).name(), "outline_color": QColor(c.color).darker(160).name(),
            "outline_width": "0.1", "outline_width_unit": "MM"})
        categories.append(QgsRendererCategory(c.code, symbol, c.name))
    return QgsCategorizedSymbolRenderer(field, categories)


def save_default_style(layer: QgsVectorLayer, description: str) -> str:
    """Make the layer's current style its default: inside a GeoPackage (layer_styles table, read by QGIS and
    QField), as a .qml sidecar beside other files; returns where it went ("" for a memory layer)."""
    if layer.providerType() == "memory":
        return ""
    if layer.providerType() == "ogr" and layer.storageType().upper() == "GPKG":
        error = layer.saveStyleToDatabase(layer.name(), description, True, "")
        if error:
            raise QgsProcessingException(f"Could not store the style in the GeoPackage '{layer.source()}': {error}")
        return "GeoPackage default style"
    qml = sidecar_path(layer.source().split("|")[0])
    message, saved = layer.saveNamedStyle(str(qml))
    if not saved:
        raise QgsProcessingException(f"Could not write the style file '{qml}': {message}")
    return str(qml)


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


def write_style_sidecar(raster_path, make_renderer) -> Path:
    """Style the raster with ``make_renderer(layer)`` and save that style as its .qml sidecar."""
    layer = QgsRasterLayer(str(raster_path), Path(raster_path).stem, "gdal")
    if not layer.isValid():
        raise QgsProcessingException(f"The output '{raster_path}' was written but QGIS cannot open it to style it.")
    layer.setRenderer(make_renderer(layer))
    qml = sidecar_path(raster_path)
    message, saved = layer.saveNamedStyle(str(qml))
    if not saved:
        raise QgsProcessingException(f"Could not write the style file '{qml}': {message}")
    return qml


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


class ApplyLayerStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies a style (e.g. the one stored as a GeoPackage layer's default) when Processing loads the output."""

    def __init__(self, style: QgsMapLayerStyle):
        super().__init__()
        self.style = style

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        if not self.style.writeToLayer(layer):
            feedback.reportError(f"Could not apply the style to '{layer.name()}'.")
            return
        layer.triggerRepaint()
        layer.emitStyleChanged()


def layer_style_when_loaded(context, destination: str, styled_layer) -> None:
    """If Processing will load ``destination``, give it ``styled_layer``'s style then."""
    if not context.willLoadLayerOnCompletion(destination):
        return
    style = QgsMapLayerStyle()
    style.readFromLayer(styled_layer)
    post_processor = ApplyLayerStyle(style)
    _LIVE_POST_PROCESSORS[destination] = post_processor
    context.layerToLoadOnCompletionDetails(destination).setPostProcessor(post_processor)


def style_when_loaded(context, raster_path) -> None:
    """If Processing will load ``raster_path`` into the project, style it from its sidecar then."""
    if not context.willLoadLayerOnCompletion(raster_path):
        return
    post_processor = ApplyStyleSidecar(sidecar_path(raster_path))
    _LIVE_POST_PROCESSORS[raster_path] = post_processor
    context.layerToLoadOnCompletionDetails(raster_path).setPostProcessor(post_processor)

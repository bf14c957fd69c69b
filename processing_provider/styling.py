"""Styles of the outputs, built from the model contract or the raster's legend.

Each output raster gets a ``.qml`` file beside it: QGIS applies ``name.qml`` whenever it
opens ``name.tif``, so the legend travels with the file (also after a headless
``qgis_process`` run). The engine commits it with the raster (all or none) and refuses,
before any work, a sidecar another file would share or that the plugin did not write; the
plugin's sidecars record the raster they style (a custom property) so a later run may
replace them. When Processing loads a result into the project, a layer post-processor applies
the same sidecar explicitly, names the layer after the input and puts the class map above its
confidence or probability raster. Vector outputs in a GeoPackage carry their style inside it, as the
layer's default style (the ``layer_styles`` table QGIS and QField read).
"""

from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsDataProvider,
    QgsFillSymbol,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsLayerTreeLayer,
    QgsMapLayerStyle,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from ..sarlulc.rasters.output_checks import STYLE_MARKER, style_sidecar_path
from .compat import SHADER_LINEAR

# Value of a water pixel in the water raster (CONTRACT.md: 1 water, 0 not water, 255 nodata).
WATER_VALUE = 1

# Colour ramps of the 0..1 score rasters: confidence reads like viridis, probability like Blues.
CONFIDENCE_RAMP = ("#440154", (0.5, "#21918c"), "#fde725")
PROBABILITY_RAMP = ("#f7fbff", (0.5, "#6baed6"), "#08306b")

# Post-processors must outlive the algorithm run (QGIS keeps only a raw pointer): one per output path.
_LIVE_POST_PROCESSORS: dict[str, QgsProcessingLayerPostProcessorInterface] = {}


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
    qml = style_sidecar_path(layer.source().split("|")[0])
    message, saved = layer.saveNamedStyle(str(qml))
    if not saved:
        raise style_not_written(qml, message)
    return str(qml)


def score_renderer(layer: QgsRasterLayer, ramp_colors) -> QgsSingleBandPseudoColorRenderer:
    """A continuous 0..1 pseudocolour ramp for confidence/probability rasters."""
    start, (middle_at, middle), end = ramp_colors
    ramp = QgsGradientColorRamp(QColor(start), QColor(end), False, [QgsGradientStop(middle_at, QColor(middle))])
    shader_function = QgsColorRampShader(0.0, 1.0, ramp, SHADER_LINEAR)
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
        raise style_not_written(style_sidecar_path(final_path), message)


def style_not_written(path, message: str) -> QgsProcessingException:
    return QgsProcessingException(f"Could not write the style file '{path}': {message}")


def reopen_on_this_thread(layer) -> None:
    """Open the layer's data again, here on the main thread where post-processors run. The layer
    was opened on Processing's worker thread (the run hands it over so Processing finds it by path),
    and what GDAL and PROJ made there dies with that thread: the layer's CRS would turn empty
    some 30 s after the run, and so would that of everything QGIS writes from it."""
    layer.setDataSource(layer.source(), layer.name(), layer.providerType(), QgsDataProvider.ProviderOptions())


class ApplyStyleSidecar(QgsProcessingLayerPostProcessorInterface):
    """Applies an output's .qml sidecar when Processing loads the output into the project; a score
    raster (confidence, probability) is unchecked and kept just below its class map, which it
    would otherwise hide (Processing loads outputs in no particular order, each on top)."""

    def __init__(self, qml_path: Path, run_layers: dict, role: str):
        super().__init__()
        self.qml_path = qml_path
        self.run_layers = run_layers  # role ("classes" or "score") -> id of the layer loaded, shared in a run
        self.role = role

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        reopen_on_this_thread(layer)
        message, loaded = layer.loadNamedStyle(str(self.qml_path))
        if not loaded:
            feedback.reportError(f"Could not apply the style '{self.qml_path}': {message}")
        layer.triggerRepaint()
        layer.emitStyleChanged()
        self.run_layers[self.role] = layer.id()
        root = (context.project() or QgsProject.instance()).layerTreeRoot()
        node = root.findLayer(layer.id())
        if node is not None:  # the class legend shown, the score raster hidden below it
            node.setExpanded(self.role == "classes")
            if self.role == "score":
                node.setItemVisibilityChecked(False)
        if {"classes", "score"} <= set(self.run_layers):
            place_below(root, self.run_layers["classes"], self.run_layers["score"])


class ApplyLayerStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies a style (e.g. the one stored as a GeoPackage layer's default) when Processing loads the output,
    switches the layer off unless ``visible``, and adds ``rasters`` ((source, name, style, visible) each)
    Processing cannot load itself."""

    def __init__(self, style: QgsMapLayerStyle, visible: bool = True, rasters=()):
        super().__init__()
        self.style = style
        self.visible = visible
        self.rasters = list(rasters)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        project = context.project() or QgsProject.instance()
        for source, name, style, visible in self.rasters:
            raster = QgsRasterLayer(source, name, "gdal")
            if not raster.isValid():
                feedback.reportError(f"Could not open '{source}' to load it.")
                continue
            style.writeToLayer(raster)
            project.addMapLayer(raster)
            project.layerTreeRoot().findLayer(raster.id()).setItemVisibilityChecked(visible)
        if self.style.writeToLayer(layer) is False:  # QGIS 3.22 returns nothing; later versions say if it failed
            feedback.reportError(f"Could not apply the style to '{layer.name()}'.")
            return
        layer.triggerRepaint()
        layer.emitStyleChanged()
        node = project.layerTreeRoot().findLayer(layer.id())
        if node is not None and not self.visible:
            node.setItemVisibilityChecked(False)


def layer_style_when_loaded(context, destination: str, styled_layer) -> None:
    """If Processing will load ``destination``, give it ``styled_layer``'s style then."""
    if not context.willLoadLayerOnCompletion(destination):
        return
    post_processor = ApplyLayerStyle(_style_of(styled_layer))
    _LIVE_POST_PROCESSORS[destination] = post_processor
    context.layerToLoadOnCompletionDetails(destination).setPostProcessor(post_processor)


def load_styled_when_done(context, layers, hidden=frozenset()) -> None:
    """Have the project load ``layers``' data when the run is over, each with its style, switched off when
    its id is in ``hidden``. The layers are made anew on the main thread: vector layers by
    Processing's loader; raster tables of a GeoPackage, which that loader cannot open by name in QGIS 3.22,
    by the first vector layer's post-processor. Nothing to do without a project (qgis_process)."""
    if context.project() is None:
        return
    vectors = [layer for layer in layers if not isinstance(layer, QgsRasterLayer)]
    rasters = [(layer.source(), layer.name(), _style_of(layer), layer.id() not in hidden)
               for layer in layers if isinstance(layer, QgsRasterLayer)]
    for index, layer in enumerate(vectors):
        details = QgsProcessingContext.LayerDetails(layer.name(), context.project(), layer.name())
        details.forceName = True
        details.layerTypeHint = QgsProcessingUtils.LayerHint.Vector
        post_processor = ApplyLayerStyle(_style_of(layer), layer.id() not in hidden, rasters if index == 0 else ())
        _LIVE_POST_PROCESSORS[layer.source()] = post_processor
        details.setPostProcessor(post_processor)
        context.addLayerToLoadOnCompletion(layer.source(), details)


def _style_of(layer) -> QgsMapLayerStyle:
    style = QgsMapLayerStyle()
    style.readFromLayer(layer)
    return style


def place_below(root, upper_id: str, lower_id: str) -> None:
    """Move the layer ``lower_id`` in the layer tree to just below ``upper_id`` (same group)."""
    upper, lower = root.findLayer(upper_id), root.findLayer(lower_id)
    if upper is None or lower is None:
        return
    group = upper.parent()
    position = next(index for index, child in enumerate(group.children())
                    if isinstance(child, QgsLayerTreeLayer) and child.layerId() == upper_id)
    # The copy goes in before the original leaves: a layer without a tree node leaves the project.
    group.insertChildNode(position + 1, lower.clone())
    lower.parent().removeChildNode(lower)


def hand_over_results(context, classes_path, classes_name: str, score_path=None, score_name: str = "") -> None:
    """Give Processing the finished outputs of a run.

    Each output joins the run's layers: Processing looks results up by path (the model runner
    before each step, the loader at the end), and a path it does not hold it opens trying OGR
    first, which logs "Cannot open …" for a raster. Outputs Processing will load into the project
    are named after the input ("scene - land cover", unless the user prefers file names for
    files), styled from their sidecars, and the class map is kept above its score raster."""
    run_layers = {}
    for path, name, role in ((classes_path, classes_name, "classes"), (score_path, score_name, "score")):
        if not path:
            continue
        layer = QgsRasterLayer(str(path), name, "gdal")
        if layer.isValid():
            context.temporaryLayerStore().addMapLayer(layer)
        if not context.willLoadLayerOnCompletion(path):
            continue
        details = context.layerToLoadOnCompletionDetails(path)
        details.name = name
        details.layerTypeHint = QgsProcessingUtils.LayerHint.Raster
        post_processor = ApplyStyleSidecar(style_sidecar_path(path), run_layers, role)
        _LIVE_POST_PROCESSORS[path] = post_processor
        details.setPostProcessor(post_processor)

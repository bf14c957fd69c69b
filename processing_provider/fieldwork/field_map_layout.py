"""The print layout of a field map: title, map with coordinate grid, legend, scale, north arrow, notes.

Built with QGIS's own layout items, so what is printed is what QGIS renders, and the layout can
be exported as PDF, GeoPDF and PNG, page by page for an atlas. Positions are in millimetres on
an ISO page; landscape pages put the legend panel on the right, portrait pages below the map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsLayerTree,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemMapGrid,
    QgsLayoutItemMapOverview,
    QgsLayoutItemPicture,
    QgsLayoutItemScaleBar,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsFillSymbol,
    QgsLegendRenderer,
    QgsLegendStyle,
    QgsMapLayerLegendUtils,
    QgsPrintLayout,
    QgsRectangle,
    QgsScaleBarSettings,
    QgsSimpleLegendNode,
    QgsTextFormat,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QFont

from ..compat import DISTANCE_KILOMETERS, DISTANCE_METERS, LAYOUT_MILLIMETERS

# Portrait width and height: ISO sizes in whole PDF points (1/72 inch; A4 is 595 x 842 pt, within 0.1 mm of
# 210 x 297 mm), so the page QGIS draws and the GeoPDF page GDAL composes are the same size and the
# georeference does not shift by a rounding point.
PAPER_SIZES_MM = {name: (width * 25.4 / 72, height * 25.4 / 72)
                  for name, (width, height) in {"A4": (595, 842), "A3": (842, 1191)}.items()}
ORIENTATIONS = ("landscape", "portrait")
GRIDS = ("latitude/longitude", "map CRS", "none")
MAIN_MAP_ID = "main map"
# Round map scales a field team can measure with a ruler: a fitted map takes the next one up.
STANDARD_SCALES = tuple(int(m * 10 ** k) for k in range(2, 8) for m in (1, 1.5, 2, 2.5, 3, 4, 5, 7.5))
NORTH_ARROW_SVG = "arrows/NorthArrow_02.svg"
MARGIN = 10.0
TITLE_HEIGHT = 14.0
FOOTER_HEIGHT = 14.0
GRID_LABEL_SPACE = 7.0  # room for the coordinate labels around the map frame
PANEL_WIDTH = 64.0  # legend panel beside a landscape map
PANEL_HEIGHT = 62.0  # legend panel below a portrait map
GAP = 5.0
FONT = "DejaVu Sans"
# Grid intervals in degrees that read well in degrees, minutes and seconds.
DEGREE_INTERVALS = tuple(s / 3600 for s in (1, 2, 5, 10, 15, 30)) + tuple(m / 60 for m in (1, 2, 5, 10, 15, 30)) + (
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0)


@dataclass
class MapSheet:
    """What goes on the page: title, paper, the map's extent and scale, the grid, and the notes."""

    title: str
    paper: str
    orientation: str
    crs: QgsCoordinateReferenceSystem
    extent: QgsRectangle
    scale: float | None  # None: the standard scale that fits the extent
    grid: str
    overview: bool
    notes: list[str]
    legend_titles: dict[str, str] = field(default_factory=dict)  # layer id -> its heading in the legend


def page_size_mm(paper: str, orientation: str) -> tuple[float, float]:
    width, height = PAPER_SIZES_MM[paper]
    return (height, width) if orientation == "landscape" else (width, height)


def fitting_scale(map_width_mm: float, map_height_mm: float, extent: QgsRectangle, metres_per_unit: float) -> float:
    """The smallest standard scale at which ``extent`` fits the map frame."""
    needed = max(extent.width() * metres_per_unit * 1000.0 / map_width_mm,
                 extent.height() * metres_per_unit * 1000.0 / map_height_mm)
    return next((s for s in STANDARD_SCALES if s >= needed * 1.02), needed * 1.02)


def nice_interval(span: float, candidates=None, lines: int = 4) -> float:
    """A grid interval giving about ``lines`` lines over ``span``: 1, 2 or 5 x 10^k, or the nearest candidate."""
    target = span / lines
    if candidates:
        return min(candidates, key=lambda c: abs(math.log(c / target)))
    power = 10 ** math.floor(math.log10(target))
    return min((m * power for m in (1, 2, 5, 10)), key=lambda c: abs(math.log(c / target)))


def _label(layout, text, x, y, width, height, size, bold=False, align=Qt.AlignmentFlag.AlignLeft) -> QgsLayoutItemLabel:
    label = QgsLayoutItemLabel(layout)
    label.setText(text)
    font = QFont(FONT)
    font.setPointSizeF(size)
    font.setBold(bold)
    label.setFont(font)
    label.setHAlign(align)
    label.attemptMove(QgsLayoutPoint(x, y, LAYOUT_MILLIMETERS))
    label.attemptResize(QgsLayoutSize(width, height, LAYOUT_MILLIMETERS))
    layout.addLayoutItem(label)
    return label


def _place(item, x, y, width, height) -> None:
    item.attemptMove(QgsLayoutPoint(x, y, LAYOUT_MILLIMETERS))
    item.attemptResize(QgsLayoutSize(width, height, LAYOUT_MILLIMETERS))


def north_arrow_path() -> str:
    """QGIS's own north arrow SVG, from its SVG search paths."""
    for folder in QgsApplication.svgPaths():
        candidate = Path(folder) / NORTH_ARROW_SVG
        if candidate.is_file():
            return str(candidate)
    return ""


def build_layout(project, sheet: MapSheet, result_layers, background_layers, atlas_layer=None) -> QgsPrintLayout:
    """A one-page layout (one page per atlas feature when ``atlas_layer`` is given)."""
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.setName(sheet.title)
    page_width, page_height = page_size_mm(sheet.paper, sheet.orientation)
    layout.pageCollection().page(0).setPageSize(QgsLayoutSize(page_width, page_height, LAYOUT_MILLIMETERS))
    layout.renderContext().setPredefinedScales([float(s) for s in STANDARD_SCALES])

    grid_space = GRID_LABEL_SPACE if sheet.grid != "none" else 0.0
    landscape = sheet.orientation == "landscape"
    map_x = MARGIN + grid_space
    map_y = MARGIN + TITLE_HEIGHT + grid_space
    map_right = page_width - MARGIN - grid_space - (PANEL_WIDTH + GAP if landscape else 0.0)
    map_bottom = page_height - MARGIN - FOOTER_HEIGHT - grid_space - (0.0 if landscape else PANEL_HEIGHT + GAP)
    map_width, map_height = map_right - map_x, map_bottom - map_y

    title = sheet.title
    if atlas_layer is not None:
        title += " - sheet [% @atlas_featurenumber %] of [% @atlas_totalfeatures %]"
    _label(layout, title, MARGIN, MARGIN, page_width - 2 * MARGIN, 10.0, 18, bold=True)

    main_map = QgsLayoutItemMap(layout)
    main_map.setId(MAIN_MAP_ID)
    layout.addLayoutItem(main_map)
    _place(main_map, map_x, map_y, map_width, map_height)
    main_map.setCrs(sheet.crs)
    main_map.setLayers(list(result_layers) + list(background_layers))
    main_map.setFrameEnabled(True)
    main_map.setBackgroundColor(QColor("#ffffff"))
    metres = QgsUnitTypes.fromUnitToUnitFactor(sheet.crs.mapUnits(), DISTANCE_METERS)
    if sheet.crs.isGeographic():  # degrees: metres of a degree of latitude, near enough for choosing a scale
        metres = 111320.0
    scale = sheet.scale or fitting_scale(map_width, map_height, sheet.extent, metres)
    main_map.setExtent(sheet.extent)  # gives the map an extent (and resizes it to the extent's shape)...
    _place(main_map, map_x, map_y, map_width, map_height)  # ...back to the frame
    main_map.zoomToExtent(sheet.extent)
    main_map.setScale(scale)  # about the extent's centre
    if atlas_layer is not None:
        layout.atlas().setCoverageLayer(atlas_layer)
        layout.atlas().setEnabled(True)
        main_map.setAtlasDriven(True)
        main_map.setAtlasScalingMode(QgsLayoutItemMap.AtlasScalingMode.Fixed if sheet.scale else QgsLayoutItemMap.AtlasScalingMode.Predefined)
        main_map.setAtlasMargin(0.05)
    if sheet.grid != "none":
        _add_grid(main_map, sheet, _largest_feature_extent(atlas_layer, sheet.crs, project) if atlas_layer else None)

    if landscape:
        panel_x, panel_y, panel_width = map_right + grid_space + GAP, map_y - grid_space, PANEL_WIDTH
        panel_bottom = map_bottom + grid_space
    else:
        panel_x, panel_y, panel_width = MARGIN, map_bottom + grid_space + GAP, page_width - 2 * MARGIN
        panel_bottom = panel_y + PANEL_HEIGHT
    _add_panel(layout, main_map, sheet, result_layers, background_layers, panel_x, panel_y, panel_width,
               panel_bottom, landscape, atlas_layer)
    _label(layout, "\n".join(sheet.notes), MARGIN, page_height - MARGIN - FOOTER_HEIGHT + 2.0,
           page_width - 2 * MARGIN, FOOTER_HEIGHT, 7)
    return layout


def _fit_legend(legend: QgsLayoutItemLegend, width: float, height: float) -> bool:
    """Lay the legend out in the panel (``width`` x ``height`` mm): more columns while the classes do not fit its
    height and the columns fit its width (beside a portrait sheet's overview, the room left of it), then smaller
    labels (8, 7, 6 pt) for a model of many classes. False if even that does not fit. The legend sizes itself
    only when drawn, so its size is measured here with the renderer it will use."""
    def size():
        return QgsLegendRenderer(legend.model(), legend.legendSettings()).minimumSize()

    legend.setSymbolWidth(5.0)
    for label_points, symbol_height in ((8, 3.5), (7, 3.0), (6, 2.5)):
        legend.setSymbolHeight(symbol_height)
        for style, points, bold in ((QgsLegendStyle.Style.Title, 11, True),
                                    (QgsLegendStyle.Style.Group, label_points + 1, True),
                                    (QgsLegendStyle.Style.Subgroup, label_points + 1, True),
                                    (QgsLegendStyle.Style.SymbolLabel, label_points, False)):
            font = QFont(FONT)
            font.setPointSizeF(points)
            font.setBold(bold)
            legend.rstyle(style).setFont(font)
        legend.setColumnCount(1)
        while size().height() > height and legend.columnCount() < 4:
            legend.setColumnCount(legend.columnCount() + 1)
            legend.setSplitLayer(True)
            if size().width() > width:
                legend.setColumnCount(legend.columnCount() - 1)
                break
        if size().height() <= height:
            return True
    return False


def _largest_feature_extent(layer, crs, project) -> QgsRectangle:
    """The largest bounding box of the layer's features in ``crs`` (what the biggest atlas page shows)."""
    transform = QgsCoordinateTransform(layer.crs(), crs, project)
    boxes = [transform.transformBoundingBox(f.geometry().boundingBox()) for f in layer.getFeatures()]
    return max(boxes, key=lambda box: box.width() * box.height())


def _add_grid(main_map: QgsLayoutItemMap, sheet: MapSheet, page_extent: QgsRectangle | None) -> None:
    """Grid lines with coordinate labels outside the frame: lat/lon (DMS) or the map CRS's coordinates, about
    four lines across the map (``page_extent``: an atlas page's typical extent, else the map's)."""
    grid = QgsLayoutItemMapGrid("coordinates", main_map)
    geographic = sheet.grid == "latitude/longitude"
    grid_crs = QgsCoordinateReferenceSystem("EPSG:4326") if geographic else sheet.crs
    extent = page_extent or main_map.extent()
    if grid_crs != sheet.crs:
        extent = QgsCoordinateTransform(sheet.crs, grid_crs, main_map.layout().project()).transformBoundingBox(extent)
    candidates = DEGREE_INTERVALS if grid_crs.isGeographic() else None
    interval = nice_interval(max(extent.width(), extent.height()), candidates)
    grid.setCrs(grid_crs)
    grid.setIntervalX(interval)
    grid.setIntervalY(interval)
    grid.setStyle(QgsLayoutItemMapGrid.GridStyle.Solid)
    grid.setGridLineColor(QColor(60, 60, 60, 110))
    grid.setGridLineWidth(0.15)
    grid.setAnnotationEnabled(True)
    grid.setAnnotationFormat(QgsLayoutItemMapGrid.AnnotationFormat.DegreeMinuteSecond if grid_crs.isGeographic()
                             else QgsLayoutItemMapGrid.AnnotationFormat.Decimal)
    grid.setAnnotationPrecision(0)
    text_format = QgsTextFormat()
    text_format.setFont(QFont(FONT))
    text_format.setSize(6.5)
    grid.setAnnotationTextFormat(text_format)
    for side, direction in ((QgsLayoutItemMapGrid.BorderSide.Left, QgsLayoutItemMapGrid.AnnotationDirection.Vertical),
                            (QgsLayoutItemMapGrid.BorderSide.Right, QgsLayoutItemMapGrid.AnnotationDirection.Vertical),
                            (QgsLayoutItemMapGrid.BorderSide.Top, QgsLayoutItemMapGrid.AnnotationDirection.Horizontal),
                            (QgsLayoutItemMapGrid.BorderSide.Bottom, QgsLayoutItemMapGrid.AnnotationDirection.Horizontal)):
        grid.setAnnotationPosition(QgsLayoutItemMapGrid.AnnotationPosition.OutsideMapFrame, side)
        grid.setAnnotationDirection(direction, side)
    grid.setFrameStyle(QgsLayoutItemMapGrid.FrameStyle.InteriorTicks)
    grid.setFrameWidth(1.5)
    main_map.grids().addGrid(grid)


def _add_panel(layout, main_map, sheet, result_layers, background_layers, x, y, width, bottom, landscape,
               atlas_layer) -> None:
    """North arrow and scale, scale bar, optional overview inset, and the legend of the result layers."""
    arrow = QgsLayoutItemPicture(layout)
    arrow.setPicturePath(north_arrow_path(), QgsLayoutItemPicture.Format.FormatSVG)
    arrow.setLinkedMap(main_map)
    arrow.setNorthMode(QgsLayoutItemPicture.NorthMode.TrueNorth)
    layout.addLayoutItem(arrow)
    _place(arrow, x, y, 12.0, 12.0)
    scale_text = (f"Scale 1:[% format_number(map_get(item_variables('{MAIN_MAP_ID}'), 'map_scale'), 0) %]")
    _label(layout, scale_text, x + 15.0, y + 1.0, 48.0, 6.0, 9, bold=True)

    bar = QgsLayoutItemScaleBar(layout)
    bar.setLinkedMap(main_map)
    bar.setStyle("Single Box")
    kilometres = (main_map.scale() or sheet.scale or 0) >= 20000
    bar.setUnits(DISTANCE_KILOMETERS if kilometres else DISTANCE_METERS)
    bar.setUnitLabel("km" if kilometres else "m")
    bar.setNumberOfSegmentsLeft(0)
    bar.setNumberOfSegments(4)
    if atlas_layer is None:  # the longest round segment (1, 2, 2.5 or 5 x 10^k) of at most 12 mm on paper
        ground = main_map.scale() * 12.0 / 1000.0 / (1000.0 if kilometres else 1.0)
        power = 10 ** math.floor(math.log10(ground))
        bar.setUnitsPerSegment(max(m * power for m in (1, 2, 2.5, 5) if m * power <= ground))
        bar.setSegmentSizeMode(QgsScaleBarSettings.SegmentSizeMode.SegmentSizeFixed)
    else:  # the scale changes from page to page: QGIS picks the segments that fit
        bar.setSegmentSizeMode(QgsScaleBarSettings.SegmentSizeMode.SegmentSizeFitWidth)
        bar.setMinimumBarWidth(30.0)
        bar.setMaximumBarWidth(min(48.0, width - 4.0))
    bar.setHeight(2.5)
    bar_format = QgsTextFormat()
    bar_format.setFont(QFont(FONT))
    bar_format.setSize(7)
    bar.setTextFormat(bar_format)
    layout.addLayoutItem(bar)
    bar.attemptMove(QgsLayoutPoint(x + 15.0, y + 7.5, LAYOUT_MILLIMETERS))
    bar.update()

    legend_x, legend_y, legend_width = x, y + 20.0, width
    if sheet.overview:
        overview_width = PANEL_WIDTH if landscape else 70.0
        overview_x = x if landscape else x + width - overview_width
        overview_y = y + 20.0 if landscape else y
        overview = QgsLayoutItemMap(layout)
        layout.addLayoutItem(overview)
        _place(overview, overview_x, overview_y, overview_width, 42.0)
        overview.setCrs(sheet.crs)
        overview.setLayers(list(background_layers) or list(result_layers))
        overview.setFrameEnabled(True)
        overview_extent = QgsRectangle(atlas_layer.extent() if atlas_layer is not None else sheet.extent)
        if atlas_layer is not None and atlas_layer.crs() != sheet.crs:
            overview_extent = QgsCoordinateTransform(atlas_layer.crs(), sheet.crs, layout.project()
                                                     ).transformBoundingBox(overview_extent)
        overview_extent.scale(3.0 if atlas_layer is None else 1.1)
        overview.setExtent(overview_extent)  # a map without an extent cannot zoom (its scale is NaN)...
        _place(overview, overview_x, overview_y, overview_width, 42.0)  # ...which setExtent resized
        overview.zoomToExtent(overview_extent)
        frame = QgsLayoutItemMapOverview("main map extent", overview)
        frame.setLinkedMap(main_map)
        frame.setFrameSymbol(QgsFillSymbol.createSimple({
            "color": "227,26,28,40", "outline_color": "#e31a1c", "outline_width": "0.5", "outline_width_unit": "MM"}))
        overview.overviews().addOverview(frame)
        if landscape:
            legend_y = overview_y + 46.0
        else:
            legend_width = width - overview_width - GAP

    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setAutoUpdateModel(False)
    root = QgsLayerTree()
    legend.model().setRootGroup(root)
    for layer in result_layers:
        node = root.addLayer(layer)
        if layer.id() in sheet.legend_titles:  # "Water mask" / "Land cover", not the layer's file name
            node.setCustomProperty("legend/title-label", sheet.legend_titles[layer.id()])
        # Only the classes: a raster's legend starts with a "Band 1: ..." line, which means nothing on paper.
        nodes = legend.model().layerLegendNodes(node)
        shown = [i for i, item in enumerate(nodes) if not isinstance(item, QgsSimpleLegendNode)]
        if len(shown) < len(nodes):
            QgsMapLayerLegendUtils.setLegendNodeOrder(node, shown)
            legend.model().refreshLayerLegend(node)
    legend.setLinkedMap(main_map)
    legend.setResizeToContents(True)
    layout.addLayoutItem(legend)
    legend.attemptMove(QgsLayoutPoint(legend_x, legend_y, LAYOUT_MILLIMETERS))
    layout.legend_fits = _fit_legend(legend, legend_width, bottom - legend_y)  # the algorithm warns if not
    legend.setFrameEnabled(False)
    legend.setBackgroundEnabled(False)
    layout.legend_tree = root  # the legend's model does not own its tree: it lives as long as the layout

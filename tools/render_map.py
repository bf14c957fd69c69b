"""Render a styled result raster with its legend to PNG through QGIS's own print layout.

The raster is drawn with the style QGIS gives it when opening it (its .qml sidecar), so the
PNG shows what a user sees in QGIS. Used by `make demo`:

    python tools/render_map.py OUT.png RASTER --title "Land cover" [--backdrop SCENE.tif]
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402 (QT_QPA_PLATFORM must be set first)
    QgsApplication,
    QgsContrastEnhancement,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemScaleBar,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsPrintLayout,
    QgsProject,
    QgsRasterLayer,
    QgsSingleBandGrayRenderer,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QFont

# Page (mm): map on the left, title above, legend on the right.
PAGE_MM = (297.0, 210.0)
MAP_RECT_MM = (8.0, 22.0, 200.0, 166.0)
LEGEND_GAP_MM = 6.0
BACKDROP_DB_RANGE = (-25.0, 0.0)


def open_raster(path: Path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name, "gdal")
    if not layer.isValid():
        raise SystemExit(f"render_map: cannot open {path}")
    return layer


def grey_backdrop(path: Path) -> QgsRasterLayer:
    """The SAR scene in grey, stretched over the usual HH dB range, under the result."""
    layer = open_raster(path, "HH backscatter (dB)")
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), 1)
    enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(1))
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    enhancement.setMinimumValue(BACKDROP_DB_RANGE[0])
    enhancement.setMaximumValue(BACKDROP_DB_RANGE[1])
    renderer.setContrastEnhancement(enhancement)
    layer.setRenderer(renderer)
    return layer


def render(png: Path, raster: Path, title: str, backdrop: Path | None, dpi: int) -> None:
    project = QgsProject.instance()
    result = open_raster(raster, title)
    layers = [result] + ([grey_backdrop(backdrop)] if backdrop else [])
    for layer in reversed(layers):
        project.addMapLayer(layer)
    project.setCrs(result.crs())

    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.pageCollection().page(0).setPageSize(QgsLayoutSize(*PAGE_MM, QgsUnitTypes.LayoutMillimeters))

    heading = QgsLayoutItemLabel(layout)
    heading.setText(f"{title} ({raster.name})")
    heading.setFont(QFont("DejaVu Sans", 18))
    heading.attemptMove(QgsLayoutPoint(8.0, 6.0, QgsUnitTypes.LayoutMillimeters))
    heading.attemptResize(QgsLayoutSize(280.0, 12.0, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(heading)

    map_item = QgsLayoutItemMap(layout)
    layout.addLayoutItem(map_item)
    x, y, box_width, box_height = MAP_RECT_MM
    extent = result.extent()
    # The largest frame of the raster's shape that fits the box, so the map is not distorted or cut.
    scale = min(box_width / extent.width(), box_height / extent.height())
    map_item.attemptMove(QgsLayoutPoint(x, y, QgsUnitTypes.LayoutMillimeters))
    map_item.attemptResize(QgsLayoutSize(extent.width() * scale, extent.height() * scale,
                                         QgsUnitTypes.LayoutMillimeters))
    map_item.setCrs(result.crs())
    map_item.setExtent(extent)  # after sizing: an unsized map cannot take an extent
    map_item.setLayers(layers)
    map_item.setFrameEnabled(True)

    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setLinkedMap(map_item)
    legend.attemptMove(QgsLayoutPoint(x + map_item.rect().width() + LEGEND_GAP_MM, y, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(legend)

    scale_bar = QgsLayoutItemScaleBar(layout)
    scale_bar.setLinkedMap(map_item)
    scale_bar.applyDefaultSize()
    scale_bar.attemptMove(QgsLayoutPoint(x, y + map_item.rect().height() + 2.0, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(scale_bar)

    # renderPageToImage rather than exportToImage: the latter then asks GDAL to georeference
    # the PNG in place, which the PNG driver refuses (a harmless but alarming ERROR 6).
    image = QgsLayoutExporter(layout).renderPageToImage(0, QSize(), dpi)
    if image.isNull() or not image.save(str(png), "PNG"):
        raise SystemExit(f"render_map: rendering or saving {png} failed")
    project.removeAllMapLayers()
    print(f"render_map: {png}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Render a styled raster with its legend to PNG.")
    parser.add_argument("png", type=Path)
    parser.add_argument("raster", type=Path)
    parser.add_argument("--title", required=True)
    parser.add_argument("--backdrop", type=Path, help="a SAR scene (dB) drawn in grey under the raster")
    parser.add_argument("--dpi", type=int, default=120)
    args = parser.parse_args(argv)
    app = QgsApplication([], False)
    app.initQgis()
    try:
        render(args.png, args.raster, args.title, args.backdrop, args.dpi)
    finally:
        app.exitQgis()


if __name__ == "__main__":
    main(sys.argv[1:])

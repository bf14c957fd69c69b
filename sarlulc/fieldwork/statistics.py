"""Class areas of a class raster: exact pixel counts and ground areas per class, optionally per zone.

The raster is read in strips of whole block rows (bounded memory on any raster size). Zones are
polygons in the raster's CRS; each zone is rasterised with GDAL strip by strip over its own
bounding window (a pixel belongs to a zone when its centre is inside), so overlapping zones each
get their full count. Also writes the HTML report with a bar chart in the class colours.
"""

from __future__ import annotations

import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from osgeo import gdal, ogr

from ..html_report import escape, page, row, svg_open, swatch
from ..errors import CancelledError, ClassRasterError, OutputError
from .areas import PixelAreas, pixel_areas
from .legend import HOW_TO_GET_A_LEGEND, ClassEntry, ClassLegend, numbered_legend, open_class_raster, read_legend


_STRIP_PIXELS = 1 << 22  # about 4 M pixels per strip: a few tens of MB at most
MAX_CLASSES = 1000  # more distinct codes than this: not a class raster


@dataclass(frozen=True)
class Zone:
    """One zone: its name (the zone field's value) and its polygons as WKB in the raster's CRS."""

    name: str
    geometries_wkb: tuple[bytes, ...]


@dataclass(frozen=True)
class ClassArea:
    entry: ClassEntry
    pixels: int
    area_m2: float

    @property
    def area_ha(self) -> float:
        return self.area_m2 / 1e4

    @property
    def area_km2(self) -> float:
        return self.area_m2 / 1e6


@dataclass(frozen=True)
class ZoneAreas:
    """Areas of every legend class in one zone (``zone`` None: the whole raster)."""

    zone: str | None
    classes: tuple[ClassArea, ...]

    @property
    def valid_pixels(self) -> int:
        return sum(c.pixels for c in self.classes)

    @property
    def area_m2(self) -> float:
        return sum(c.area_m2 for c in self.classes)

    def percent(self, item: ClassArea) -> float:
        """Share of the zone's valid area, in %."""
        total = self.area_m2
        return 100.0 * item.area_m2 / total if total else 0.0


@dataclass(frozen=True)
class AreaStatistics:
    raster: str
    legend: ClassLegend
    areas: PixelAreas
    total: ZoneAreas
    zones: tuple[ZoneAreas, ...]
    nodata_pixels: int
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def table_rows(self) -> list[dict]:
        """One row per zone (when zones were given) and class: what the statistics table holds."""
        rows = []
        for zone in self.zones or (self.total,):
            for item in zone.classes:
                row = {"zone": zone.zone} if self.zones else {}
                row.update(code=item.entry.code, class_name=item.entry.name, color=item.entry.color,
                           pixels=item.pixels, area_m2=item.area_m2, area_ha=item.area_ha, area_km2=item.area_km2,
                           percent=zone.percent(item))
                rows.append(row)
        return rows


class _Counter:
    """Pixel counts and areas per class code, accumulated strip by strip."""

    def __init__(self):
        self.pixels: dict[int, int] = {}
        self.area_m2: dict[int, float] = {}

    def add(self, values: np.ndarray, counted: np.ndarray, row_areas: np.ndarray, planar: bool) -> None:
        if not counted.any():
            return
        codes, index = _code_index(values[counted])
        if planar:
            per_code = np.bincount(index, minlength=len(codes))
            areas = per_code * row_areas[0]
        else:  # counts per (row, class), weighted by each row's pixel area
            rows = np.broadcast_to(np.arange(values.shape[0])[:, None], values.shape)[counted]
            per_row = np.bincount(rows * len(codes) + index, minlength=values.shape[0] * len(codes))
            per_row = per_row.reshape(values.shape[0], len(codes))
            per_code = per_row.sum(axis=0)
            areas = row_areas @ per_row
        for code, pixels, area in zip(codes.tolist(), per_code.tolist(), areas.tolist()):
            if pixels:
                self.pixels[code] = self.pixels.get(code, 0) + pixels
                self.area_m2[code] = self.area_m2.get(code, 0.0) + area
        if len(self.pixels) > MAX_CLASSES:
            raise ClassRasterError(f"The raster holds more than {MAX_CLASSES} different values: it does not look "
                                   "like a class raster (class codes), more like a measurement. Use a class raster "
                                   "such as the output of SAR LULC Segment or Water Detect.")

    def zone_areas(self, zone: str | None, legend: ClassLegend, planar_m2: float | None) -> ZoneAreas:
        codes = sorted(set(legend.codes) | set(self.pixels))
        items = []
        for code in codes:
            pixels = self.pixels.get(code, 0)
            # Planar grids: the exact product, not a float sum over strips.
            area = pixels * planar_m2 if planar_m2 is not None else self.area_m2.get(code, 0.0)
            items.append(ClassArea(legend.entry(code), pixels, area))
        return ZoneAreas(zone, tuple(items))


def _code_index(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct codes, index of each value in them), in linear time for 8/16-bit codes."""
    if codes.dtype.kind == "u" and codes.dtype.itemsize <= 2:
        present = np.flatnonzero(np.bincount(codes))
        lookup = np.zeros(int(present[-1]) + 1, np.int64)
        lookup[present] = np.arange(len(present))
        return present, lookup[codes]
    return np.unique(codes, return_inverse=True)


def _strip_rows(band: gdal.Band, width: int) -> int:
    block_rows = band.GetBlockSize()[1]
    return max(block_rows, (_STRIP_PIXELS // max(width, 1)) // block_rows * block_rows)


def class_areas(path, zones: Sequence[Zone] = (), legend: ClassLegend | None = None,
                progress: Callable[[float], None] | None = None, is_cancelled: Callable[[], bool] | None = None,
                ) -> AreaStatistics:
    """Pixels and area of each class over the whole raster, and per zone when ``zones`` are given.

    ``legend`` (e.g. the layer's style in QGIS) replaces the raster's own; a raster without either is
    counted with numbered classes and a warning. ``progress(percent)``; ``is_cancelled()`` stops the run."""
    progress = progress or (lambda percent: None)
    is_cancelled = is_cancelled or (lambda: False)
    dataset = open_class_raster(path)
    band = dataset.GetRasterBand(1)
    areas = pixel_areas(dataset)
    warnings = list(areas.warnings)
    width, height = dataset.RasterXSize, dataset.RasterYSize
    strip = _strip_rows(band, width)
    mask = band.GetMaskBand()
    zone_share = 50.0 if zones else 0.0

    total = _Counter()
    nodata_pixels = 0
    for y in range(0, height, strip):
        _check_cancel(is_cancelled)
        rows = min(strip, height - y)
        values = band.ReadAsArray(0, y, width, rows)
        valid = mask.ReadAsArray(0, y, width, rows) != 0
        nodata_pixels += int(valid.size - valid.sum())
        total.add(values, valid, areas.rows(y, rows), areas.planar_m2 is not None)
        progress((100.0 - zone_share) * (y + rows) / height)
    if not total.pixels:
        raise ClassRasterError(f"The class raster '{path}' has no valid pixel: every pixel is nodata. Check the "
                               "raster and its nodata value.")

    legend = legend or read_legend(dataset)
    if legend is None or not legend.entries:
        legend = numbered_legend(dataset, total.pixels)
        warnings.append(f"The raster has no legend, so its classes are numbered ('Class N') by code. "
                        f"{HOW_TO_GET_A_LEGEND}")
    unnamed = sorted(set(total.pixels) - set(legend.codes))
    if unnamed and not legend.numbered:
        warnings.append(f"Codes {', '.join(map(str, unnamed))} occur in the raster but not in its legend; they are "
                        "counted as 'Class N'. Check that the legend matches the raster.")

    zone_results = []
    for done, zone in enumerate(zones, start=1):
        counter = _count_zone(dataset, zone, areas, is_cancelled)
        if not counter.pixels:
            warnings.append(f"Zone '{zone.name}' covers no valid pixel of the raster (outside it, or nodata only).")
        zone_results.append(counter.zone_areas(zone.name, legend, areas.planar_m2))
        progress(100.0 - zone_share + zone_share * done / len(zones))
    progress(100.0)
    return AreaStatistics(raster=str(path), legend=legend, areas=areas,
                          total=total.zone_areas(None, legend, areas.planar_m2), zones=tuple(zone_results),
                          nodata_pixels=nodata_pixels, warnings=tuple(warnings))


def _check_cancel(is_cancelled) -> None:
    if is_cancelled():
        raise CancelledError("Cancelled by the user; no statistics were written.")


def _count_zone(dataset: gdal.Dataset, zone: Zone, areas: PixelAreas, is_cancelled) -> _Counter:
    """Counts of the valid pixels whose centre lies in ``zone``, over the zone's bounding window only."""
    counter = _Counter()
    layer_source = ogr.GetDriverByName("Memory").CreateDataSource("zone")
    layer = layer_source.CreateLayer("zone", dataset.GetSpatialRef(), ogr.wkbUnknown)
    envelopes = []
    for wkb in zone.geometries_wkb:
        geometry = ogr.CreateGeometryFromWkb(wkb)
        if geometry is None or geometry.IsEmpty():
            continue
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(geometry)
        layer.CreateFeature(feature)
        envelopes.append(geometry.GetEnvelope())
    window = _pixel_window(dataset, envelopes)
    if window is None:
        return counter
    x0, y0, x1, y1 = window
    band = dataset.GetRasterBand(1)
    mask = band.GetMaskBand()
    gt = dataset.GetGeoTransform()
    strip = _strip_rows(band, x1 - x0)
    memory = gdal.GetDriverByName("MEM")
    for y in range(y0, y1, strip):
        _check_cancel(is_cancelled)
        rows = min(strip, y1 - y)
        inside = memory.Create("", x1 - x0, rows, 1, gdal.GDT_Byte)
        inside.SetGeoTransform((gt[0] + x0 * gt[1] + y * gt[2], gt[1], gt[2],
                                gt[3] + x0 * gt[4] + y * gt[5], gt[4], gt[5]))
        gdal.RasterizeLayer(inside, [1], layer, burn_values=[1])
        counted = inside.GetRasterBand(1).ReadAsArray() != 0
        inside = None
        if not counted.any():
            continue
        counted &= mask.ReadAsArray(x0, y, x1 - x0, rows) != 0
        counter.add(band.ReadAsArray(x0, y, x1 - x0, rows), counted, areas.rows(y, rows),
                    areas.planar_m2 is not None)
    return counter


def _pixel_window(dataset: gdal.Dataset, envelopes) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel window covering the envelopes (minx, maxx, miny, maxy), clipped to the raster."""
    if not envelopes:
        return None
    inverse = gdal.InvGeoTransform(dataset.GetGeoTransform())
    columns, rows = [], []
    for min_x, max_x, min_y, max_y in envelopes:
        for x, y in ((min_x, min_y), (min_x, max_y), (max_x, min_y), (max_x, max_y)):
            column, row = gdal.ApplyGeoTransform(inverse, x, y)
            columns.append(column)
            rows.append(row)
    x0, x1 = max(0, math.floor(min(columns))), min(dataset.RasterXSize, math.ceil(max(columns)))
    y0, y1 = max(0, math.floor(min(rows))), min(dataset.RasterYSize, math.ceil(max(rows)))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


# ---------------------------------------------------------------- report

def _number(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def bar_chart_svg(zone: ZoneAreas, bar_width: int = 360) -> str:
    """Horizontal bars of each class's share of the area, in the class colours."""
    items = [item for item in zone.classes if item.pixels]
    label_width = 8 + 7 * max(len(item.entry.name) for item in items)
    row_height = 22
    width = label_width + bar_width + 190
    parts = [svg_open(width, row_height * len(items) + 8, "Class areas", font_size=12)]
    largest = max(zone.percent(item) for item in items) or 1.0
    for i, item in enumerate(items):
        y = 4 + i * row_height
        share = zone.percent(item)
        length = max(1.0, bar_width * share / largest)
        parts.append(f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">{escape(item.entry.name)}</text>'
                     f'<rect x="{label_width}" y="{y + 2}" width="{length:.1f}" height="{row_height - 6}" '
                     f'fill="{item.entry.color}" stroke="#555" stroke-width="0.5">'
                     f'<title>{escape(item.entry.name)}: {item.pixels:,} pixels</title></rect>'
                     f'<text x="{label_width + length + 6:.1f}" y="{y + 14}">{_number(item.area_ha)} ha '
                     f'({share:.1f} %)</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar_svg(zone: ZoneAreas, width: int = 360, height: int = 14) -> str:
    """One 100 % bar split by class: the composition of a zone at a glance."""
    parts = [svg_open(width, height, f"Composition of {zone.zone or ''}")]
    x = 0.0
    for item in zone.classes:
        share = zone.percent(item)
        if share <= 0:
            continue
        length = width * share / 100.0
        parts.append(f'<rect x="{x:.2f}" y="0" width="{length:.2f}" height="{height}" fill="{item.entry.color}">'
                     f'<title>{escape(item.entry.name)}: {share:.1f} %</title></rect>')
        x += length
    parts.append("</svg>")
    return "".join(parts)


def _class_table(zone: ZoneAreas) -> str:
    header = row(["Code", "Class", "Pixels", "Area (m²)", "Area (ha)", "Area (km²)", "%"], header=True)
    rows = "".join(row([f"{swatch(item.entry.color)}{item.entry.code}", escape(item.entry.name), f"{item.pixels:,}",
                        _number(item.area_m2, 0), _number(item.area_ha), _number(item.area_km2, 4),
                        f"{zone.percent(item):.2f}"]) for item in zone.classes)
    totals = row(["", "Total", f"{zone.valid_pixels:,}", _number(zone.area_m2, 0), _number(zone.area_m2 / 1e4),
                  _number(zone.area_m2 / 1e6, 4), "100.00"], header=True)
    return f"<table>{header}{rows}{totals}</table>"


def write_html(statistics: AreaStatistics, path, title: str = "Class area statistics") -> None:
    """A self-contained HTML report: summary, the class table with a bar chart, and the zones."""
    total = statistics.total
    warnings = "".join(f'<p class="warning">{escape(w)}</p>' for w in statistics.warnings)
    zones = ""
    if statistics.zones:
        zone_rows = []
        for zone in statistics.zones:
            largest = max(zone.classes, key=lambda c: c.area_m2)
            main_class = (f"{escape(largest.entry.name)} ({zone.percent(largest):.1f} %)"
                          if zone.valid_pixels else "")
            zone_rows.append(row([escape(zone.zone), f"{zone.valid_pixels:,}", _number(zone.area_m2 / 1e4),
                                  main_class, stacked_bar_svg(zone) if zone.valid_pixels else ""]))
        details = "".join(f"<h3>{escape(zone.zone)}</h3>{_class_table(zone)}" for zone in statistics.zones)
        header = row(["Zone", "Pixels", "Area (ha)", "Largest class", "Composition"], header=True)
        zones = (f"<h2>Zones ({len(statistics.zones)})</h2><p>A pixel belongs to a zone when its centre lies inside "
                 f"the zone's polygons.</p><table>{header}{''.join(zone_rows)}</table>{details}")
    body = f"""<h1>{escape(title)}</h1>
<p>Raster: <code>{escape(pathlib.Path(statistics.raster).name)}</code><br>
CRS: {escape(statistics.areas.crs_name)}; areas {escape(statistics.areas.method)}<br>
Valid pixels: {total.valid_pixels:,}; nodata pixels: {statistics.nodata_pixels:,}<br>
Valid area: {_number(total.area_m2 / 1e4)} ha ({_number(total.area_m2 / 1e6, 4)} km²)</p>
{warnings}
<h2>Classes</h2>
{bar_chart_svg(total)}
{_class_table(total)}
{zones}"""
    style = "\ntd:nth-child(2),td:first-child{text-align:left}\n.warning{color:#8a4b00;background:#fff4e0;padding:6px}"
    write_text_file(path, page(title, body, style))


def write_text_file(path, text: str) -> None:
    """Write ``text`` under a temporary name beside ``path``, then rename: never a half-written report."""
    path = pathlib.Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise OutputError(f"Could not write '{path}' ({error.strerror or error}). Check the free disk space and the "
                          "folder's permissions.") from error

"""What the run reads of the input: an area of interest, and the input's own alpha band.

The area is an extent (in the input's CRS), polygons (any OGR source, any CRS), or both. The run
reads the input through a VRT of the window they cover, so blocks outside are never read and the
outputs cover the window only; pixels of the window outside the polygons are masked (the VRT's mask
band: the input's own validity, cut by the rasterised polygons), so they are nodata in every output
and blocks holding none of them are skipped. An alpha band GDAL does not take as a mask (a Float32
one, as ``gdalwarp -dstalpha`` writes for Float32 data) masks the same way, so a warped scene's filled
frame is nodata, not classified. The VRT and the rasterised polygons live in GDAL's in-memory file
system for the run; nothing is written beside the input.
"""

from __future__ import annotations

import math
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from osgeo import gdal, ogr, osr

from ..errors import OptionError
from .resample import raster_corners, xml_escape, zeroing_source_xml

# Rasterised polygons: 255 inside (valid, as GDAL masks say), 0 outside.
INSIDE = 255


@dataclass(frozen=True)
class AreaOfInterest:
    """Where to map: ``extent`` (xmin, ymin, xmax, ymax in the input raster's CRS) and/or
    ``polygons``, an OGR source of polygons ("file" or "file|layername=name"), in any CRS."""

    extent: tuple[float, float, float, float] | None = None
    polygons: str | None = None

    def describe(self) -> str:
        parts = []
        if self.extent:
            parts.append("extent " + ", ".join(f"{value:.6g}" for value in self.extent))
        if self.polygons:
            parts.append(f"inside the polygons of '{self.polygons}'")
        return " and ".join(parts)


def parse_extent(text: str) -> tuple[float, float, float, float]:
    """``xmin,ymin,xmax,ymax`` (the command line's form) as numbers, or a message saying what is wrong."""
    try:
        values = tuple(float(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise OptionError(f"The extent '{text}' is not four numbers xmin,ymin,xmax,ymax in the input raster's CRS.")
    check_extent(values)
    return values


def check_extent(extent) -> None:
    xmin, ymin, xmax, ymax = extent
    if not all(math.isfinite(value) for value in extent) or xmin >= xmax or ymin >= ymax:
        raise OptionError(f"The extent {xmin:g}, {ymin:g}, {xmax:g}, {ymax:g} is empty or inverted: give "
                          f"xmin < xmax and ymin < ymax, in the input raster's CRS.")


@contextmanager
def input_view(dataset: gdal.Dataset, area: AreaOfInterest | None, band: int,
               source_name: str) -> Iterator[tuple[gdal.Dataset, str]]:
    """``(dataset, note)``: the input itself, or a VRT of it that GDAL reads masked as the run must: the
    window an area of interest covers, masked outside its polygons; and pixels an alpha band GDAL does not
    take as a mask (any but 8/16-bit, as ``gdalwarp -dstalpha`` writes for Float32) marks transparent.
    ``note`` is a line for the log. Refuses an area that misses the raster."""
    alpha = _unmasked_alpha_band(dataset, band)
    restricted = area is not None and (area.extent is not None or bool(area.polygons))
    if not restricted and alpha is None:
        yield dataset, ""
        return
    prefix = f"/vsimem/sarlulc-view-{uuid.uuid4().hex}"
    window = cut = None
    try:
        x, y, width, height = 0, 0, dataset.RasterXSize, dataset.RasterYSize
        notes = []
        if restricted:
            cut, (x, y, width, height) = _area_window(dataset, area, source_name)
            notes.append(f"Area of interest: {area.describe()}: a window of {width} x {height} px at column {x}, "
                         f"row {y} of the {dataset.RasterXSize} x {dataset.RasterYSize} px input"
                         + ("; pixels outside the polygons are nodata" if cut is not None else ""))
        window = gdal.Translate(f"{prefix}.vrt", dataset, format="VRT", srcWin=[x, y, width, height])
        cuts = []
        if cut is not None:
            mask_path = f"{prefix}-mask.tif"
            if _rasterise(cut, window, mask_path) == 0:
                raise OptionError(
                    f"The polygons of '{area.polygons}' cover no pixel centre of the input raster '{source_name}'. "
                    f"Choose polygons over the raster, larger than a pixel.")
            cuts.append((mask_path, 1, (0, 0, width, height), INSIDE))
        if alpha is not None:
            opaque = _alpha_opaque_value(dataset.GetRasterBand(alpha))
            cuts.append((dataset.GetDescription(), alpha, (x, y, width, height), opaque))
            notes.append(f"Alpha band {alpha}: its transparent pixels (alpha below {opaque:g}) are nodata")
        xml = window.GetMetadata("xml:VRT")[0]
        window = None  # closed before its file is replaced
        gdal.FileFromMemBuffer(f"{prefix}.vrt", with_mask_band(xml, dataset, band, (x, y, width, height), cuts))
        window = gdal.Open(f"{prefix}.vrt")
        yield window, "; ".join(notes)
    finally:
        window = cut = None
        for path in gdal.ReadDir("/vsimem/") or []:
            if ("/vsimem/" + path).startswith(prefix):
                gdal.Unlink("/vsimem/" + path)


def _area_window(dataset: gdal.Dataset, area: AreaOfInterest, source_name: str):
    """(the polygons in the raster's CRS or None, the pixel window the area covers)."""
    bounds = _raster_bounds(dataset)
    wanted = bounds
    if area.extent is not None:
        check_extent(area.extent)
        xmin, ymin, xmax, ymax = area.extent
        wanted = _intersection(wanted, (xmin, xmax, ymin, ymax))
    cut = None
    if area.polygons:
        cut = _polygons_in_raster_crs(area.polygons, dataset)
        wanted = _intersection(wanted, cut.GetLayer(0).GetExtent(force=1)) if wanted else None
    if not wanted:
        raise OptionError(
            f"The area of interest ({area.describe()}) does not overlap the input raster '{source_name}' "
            f"(extent {', '.join(f'{value:.6g}' for value in _as_xy(bounds))} in its CRS). Choose an extent or "
            f"polygons over the raster.")
    return cut, _pixel_window(dataset, wanted)


def _unmasked_alpha_band(dataset: gdal.Dataset, band: int) -> int | None:
    """The alpha band GDAL does not use as the band's mask (GDAL only does for 8- and 16-bit alpha), if any."""
    if not 1 <= band <= dataset.RasterCount or dataset.GetRasterBand(band).GetMaskFlags() & gdal.GMF_ALPHA:
        return None  # a band that does not exist is refused by the reader, with its message
    return next((index for index in range(1, dataset.RasterCount + 1) if index != band
                 and dataset.GetRasterBand(index).GetColorInterpretation() == gdal.GCI_AlphaBand), None)


def _alpha_opaque_value(alpha: gdal.Band) -> float:
    """The value of an opaque pixel: 255 (gdalwarp's), or the band's declared maximum."""
    declared = alpha.GetMetadataItem("NBITS", "IMAGE_STRUCTURE")
    return float(2 ** int(declared) - 1) if declared else 255.0


def _raster_bounds(dataset: gdal.Dataset) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax) of the raster's footprint, OGR's order (rotated grids: the corners' box)."""
    corners = raster_corners(dataset)
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return min(xs), max(xs), min(ys), max(ys)


def _intersection(bounds, other) -> tuple[float, float, float, float] | None:
    """Intersection of two (xmin, xmax, ymin, ymax) boxes (OGR's order), None when they do not overlap."""
    xmin, xmax, ymin, ymax = bounds
    oxmin, oxmax, oymin, oymax = other
    box = max(xmin, oxmin), min(xmax, oxmax), max(ymin, oymin), min(ymax, oymax)
    return box if box[0] < box[1] and box[2] < box[3] else None


def _as_xy(bounds) -> tuple[float, float, float, float]:
    xmin, xmax, ymin, ymax = bounds
    return xmin, ymin, xmax, ymax


def _pixel_window(dataset: gdal.Dataset, box) -> tuple[int, int, int, int]:
    """The smallest whole-pixel window holding ``box`` (xmin, xmax, ymin, ymax), within the raster."""
    inverse = gdal.InvGeoTransform(dataset.GetGeoTransform())
    xmin, xmax, ymin, ymax = box
    pixels = [gdal.ApplyGeoTransform(inverse, x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    left = max(0, math.floor(min(p[0] for p in pixels) + 1e-9))
    top = max(0, math.floor(min(p[1] for p in pixels) + 1e-9))
    right = min(dataset.RasterXSize, math.ceil(max(p[0] for p in pixels) - 1e-9))
    bottom = min(dataset.RasterYSize, math.ceil(max(p[1] for p in pixels) - 1e-9))
    return left, top, max(1, right - left), max(1, bottom - top)


def _polygons_in_raster_crs(source: str, dataset: gdal.Dataset) -> gdal.Dataset:
    """The polygons of ``source`` reprojected to the raster's CRS (in memory); refuses a
    source that cannot be read, holds no polygon, or has no CRS."""
    name, _, layer_name = source.partition("|layername=")
    try:
        vector = gdal.OpenEx(name, gdal.OF_VECTOR)
    except RuntimeError as error:
        raise OptionError(f"The mask layer '{source}' cannot be read as vector data ({error}).") from error
    layer = vector.GetLayerByName(layer_name) if layer_name else vector.GetLayer(0)
    if layer is None:
        raise OptionError(f"The mask layer '{source}' has no layer '{layer_name}'.")
    if ogr.GT_Flatten(layer.GetGeomType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon,
                                                    ogr.wkbMultiSurface, ogr.wkbUnknown):
        raise OptionError(f"The mask layer '{source}' holds {ogr.GeometryTypeToName(layer.GetGeomType()).lower()} "
                          f"geometries, not polygons: give a polygon layer (the area to map).")
    if layer.GetFeatureCount() == 0:
        raise OptionError(f"The mask layer '{source}' holds no polygon (no feature, or none selected).")
    if layer.GetSpatialRef() is None:
        raise OptionError(f"The mask layer '{source}' has no CRS: set its CRS, so it can be placed on the raster.")
    target = osr.SpatialReference(wkt=dataset.GetProjection())
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return gdal.VectorTranslate("", vector, format="Memory", layers=[layer.GetName()], dstSRS=target,
                                layerName="area", geometryType="PROMOTE_TO_MULTI")


def _rasterise(polygons: gdal.Dataset, window: gdal.Dataset, path: str) -> int:
    """Burn the polygons onto the window's grid (a tiled, compressed Byte raster: small whatever the
    window); the number of pixels inside."""
    mask = gdal.GetDriverByName("GTiff").Create(path, window.RasterXSize, window.RasterYSize, 1, gdal.GDT_Byte,
                                                ["TILED=YES", "COMPRESS=DEFLATE", "SPARSE_OK=YES"])
    mask.SetGeoTransform(window.GetGeoTransform())
    mask.SetProjection(window.GetProjection())
    gdal.Rasterize(mask, polygons, burnValues=[INSIDE], layers=["area"])
    inside = 0
    band = mask.GetRasterBand(1)
    rows = max(1, (1 << 22) // max(1, mask.RasterXSize))
    for y in range(0, mask.RasterYSize, rows):
        inside += int((band.ReadAsArray(0, y, mask.RasterXSize, min(rows, mask.RasterYSize - y)) == INSIDE).sum())
    mask = None
    return inside


def with_mask_band(xml: str, dataset: gdal.Dataset, band: int, window, cuts) -> bytes:
    """The window VRT's document with a mask band: the input band's own validity (nodata, mask), with 0 written
    wherever a cut ((file, band, window, value that keeps the pixel)) holds another value: outside the
    rasterised polygons, transparent in an alpha band."""
    def rect(x, y, width, height):
        return (f'<SrcRect xOff="{x}" yOff="{y}" xSize="{width}" ySize="{height}"/>'
                f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>')

    mask_xml = (f'<MaskBand><VRTRasterBand dataType="Byte">'
                f'<SimpleSource><SourceFilename relativeToVRT="0">{xml_escape(dataset.GetDescription())}'
                f"</SourceFilename><SourceBand>mask,{band}</SourceBand>{rect(*window)}</SimpleSource>"
                + "".join(zeroing_source_xml(path, source_band, keep, rect(*source_window))
                          for path, source_band, source_window, keep in cuts)
                + "</VRTRasterBand></MaskBand>")
    return xml.replace("</VRTDataset>", mask_xml + "</VRTDataset>").encode()

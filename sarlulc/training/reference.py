"""Reference labels of a user's area onto the grid training reads a SAR raster on.

A reference is a class raster on any grid and CRS (warped by nearest neighbour) or a polygon /
point vector layer with a class field (rasterised; a point labels the pixel it falls in). Class
values are the codes of the legend (sarlulc/products.py, or a model's own classes: a class table or a
raster's categories, sarlulc/training/class_table.py; 0 = no label), class names of that legend (vector
fields, any letter case), or any whole numbers mapped by a remap table (sarlulc/training/remap.py's CSV format).
Everything that would make training meaningless is refused here, before any training, with what
to do: a reference beside the raster, fractional values, codes outside the legend.
"""

from __future__ import annotations

import numpy as np
from osgeo import gdal, ogr, osr

from ..products import LULC_CLASSES
from ..inference.contract import ClassInfo
from .remap import CodeTable


NO_LABEL = 0
CODE_FIELD = "sarlulc_code"


class ReferenceError(ValueError):
    """A reference that cannot train a model; the message says why and what to do."""


class Grid:
    """The pixel grid a label is made for: CRS (WKT), geotransform and size."""

    def __init__(self, srs_wkt: str, geotransform, width: int, height: int):
        self.srs_wkt, self.geotransform, self.width, self.height = srs_wkt, tuple(geotransform), width, height

    def bounds(self) -> tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        xs, ys = (x0, x0 + dx * self.width), (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def dataset(self, data_type=gdal.GDT_Float64) -> gdal.Dataset:
        target = gdal.GetDriverByName("MEM").Create("", self.width, self.height, 1, data_type)
        target.SetGeoTransform(self.geotransform)
        if self.srs_wkt:
            target.SetProjection(self.srs_wkt)
        return target


def split_source(source: str) -> tuple[str, str | None]:
    """'file.gpkg|layername=checks' (QGIS's spelling) -> ('file.gpkg', 'checks')."""
    path, _, options = str(source).partition("|")
    layer = next((item.split("=", 1)[1] for item in options.split("|") if item.startswith("layername=")), None)
    return path, layer


def is_vector(source: str) -> bool:
    """Whether ``source`` names a vector layer (a GeoPackage may hold rasters and layers: a layer
    name, or layers and no raster band, make it a vector source)."""
    path, layer = split_source(source)
    if layer:
        return True
    try:
        dataset = gdal.OpenEx(path, gdal.OF_VECTOR | gdal.OF_RASTER)
    except RuntimeError:
        return False
    return dataset is not None and dataset.RasterCount == 0 and dataset.GetLayerCount() > 0


def _extent_in(srs_wkt_from: str, bounds, grid: Grid) -> tuple[float, float, float, float]:
    """``bounds`` (minx, miny, maxx, maxy) in ``srs_wkt_from`` transformed into the grid's CRS."""
    if not srs_wkt_from or not grid.srs_wkt:
        return bounds
    source, target = osr.SpatialReference(wkt=srs_wkt_from), osr.SpatialReference(wkt=grid.srs_wkt)
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(source, target)
    return transform.TransformBounds(*bounds, 21)


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _legend(classes: tuple[ClassInfo, ...] | None) -> tuple[list[tuple[int, str]], str]:
    """(code, name) of the classes a reference may hold, and what to call them in a message."""
    if classes:
        return [(c.code, c.name) for c in classes], "the training classes"
    return [(code, name) for code, name, _ in LULC_CLASSES], "the legend"


def _raster_values(source: str, grid: Grid) -> np.ndarray:
    """The class raster's band 1 on ``grid`` (nearest neighbour), NaN where it has no value."""
    dataset = gdal.Open(source)
    if dataset.RasterCount < 1:
        raise ReferenceError(f"The reference '{source}' has no band.")
    band = dataset.GetRasterBand(1)
    if dataset.GetSpatialRef() is None and grid.srs_wkt:
        raise ReferenceError(f"The reference raster '{source}' has no CRS; it cannot be placed on the SAR raster.")
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    xs, ys = (x0, x0 + dx * dataset.RasterXSize), (y0, y0 + dy * dataset.RasterYSize)
    footprint = _extent_in(dataset.GetProjection(), (min(xs), min(ys), max(xs), max(ys)), grid)
    if not _overlaps(footprint, grid.bounds()):
        raise ReferenceError(f"The reference '{source}' does not overlap the SAR raster: check that both cover "
                             f"the same area (and their CRS).")
    target = grid.dataset()
    band_nodata = band.GetNoDataValue()
    target.GetRasterBand(1).SetNoDataValue(np.nan)
    target.GetRasterBand(1).Fill(np.nan)
    gdal.Warp(target, dataset, resampleAlg="near", srcNodata=band_nodata, dstNodata=np.nan, multithread=False)
    return target.GetRasterBand(1).ReadAsArray()


def _vector_values(source: str, grid: Grid, class_field: str | None,
                   classes: tuple[ClassInfo, ...] | None = None) -> np.ndarray:
    """The vector layer's class field rasterised on ``grid`` (NaN outside its features); names of the
    legend's classes (``classes``, default the plugin's) are turned into their codes."""
    path, layer_name = split_source(source)
    datasource = gdal.OpenEx(path, gdal.OF_VECTOR)
    layer = datasource.GetLayerByName(layer_name) if layer_name else datasource.GetLayer(0)
    if layer is None:
        raise ReferenceError(f"The reference '{source}' has no layer '{layer_name}'.")
    definition = layer.GetLayerDefn()
    fields = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    if not class_field:
        raise ReferenceError(f"The reference '{source}' is a vector layer: name its class field "
                             f"(one of: {', '.join(fields) or 'none'}).")
    if class_field not in fields:
        raise ReferenceError(f"The reference '{source}' has no field '{class_field}'; its fields: "
                             f"{', '.join(fields) or 'none'}.")
    if layer.GetSpatialRef() is None and grid.srs_wkt:
        raise ReferenceError(f"The reference layer '{source}' has no CRS; it cannot be placed on the SAR raster.")
    minx, maxx, miny, maxy = layer.GetExtent()
    footprint = _extent_in(layer.GetSpatialRef().ExportToWkt() if layer.GetSpatialRef() else "",
                           (minx, miny, maxx + 1e-9, maxy + 1e-9), grid)
    if layer.GetFeatureCount() == 0 or not _overlaps(footprint, grid.bounds()):
        raise ReferenceError(f"The reference '{source}' does not overlap the SAR raster: check that both cover "
                             f"the same area (and their CRS).")
    legend, legend_name = _legend(classes)
    names = {name.lower(): code for code, name in legend}
    memory = ogr.GetDriverByName("Memory").CreateDataSource("")
    copy = memory.CreateLayer("reference", layer.GetSpatialRef(), ogr.wkbUnknown)
    copy.CreateField(ogr.FieldDefn(CODE_FIELD, ogr.OFTReal))
    unknown: set[str] = set()
    for feature in layer:
        value = feature.GetField(class_field)
        geometry = feature.GetGeometryRef()
        if value is None or geometry is None:
            continue
        if isinstance(value, str):
            text = value.strip()
            try:
                value = float(text)
            except ValueError:
                if text.lower() not in names:
                    unknown.add(text)
                    continue
                value = names[text.lower()]
        item = ogr.Feature(copy.GetLayerDefn())
        item.SetGeometry(geometry.Clone())
        item.SetField(CODE_FIELD, float(value))
        copy.CreateFeature(item)
    if unknown:
        raise ReferenceError(f"The field '{class_field}' of '{source}' holds {', '.join(sorted(unknown)[:10])}: "
                             f"neither a class code nor a class name of {legend_name} "
                             f"({', '.join(name for _, name in legend)}).")
    target = grid.dataset()
    target.GetRasterBand(1).Fill(np.nan)
    gdal.RasterizeLayer(target, [1], copy, options=[f"ATTRIBUTE={CODE_FIELD}"])
    return target.GetRasterBand(1).ReadAsArray()


def class_codes(values: np.ndarray, source: str, task: str, remap: CodeTable | None = None,
                classes: tuple[ClassInfo, ...] | None = None) -> np.ndarray:
    """uint8 class codes (0 = no label) of reference ``values`` (NaN = no value); refuses fractional
    values and codes outside the legend (``classes``, default the plugin's), naming them."""
    present = np.isfinite(values)
    whole = values[present]
    fractional = whole != np.round(whole)
    if fractional.any():
        raise ReferenceError(f"The reference '{source}' holds fractional values ({whole[fractional][0]:g}, ...): a "
                             f"reference holds whole class codes. Is it a backscatter or probability raster?")
    codes = np.zeros(values.shape, np.int64)
    codes[present] = whole.astype(np.int64)
    if remap is not None:
        try:
            mapped = remap.apply(codes[present], unlisted_nodata=False, source_name=source).astype(np.int64)
        except ValueError as error:
            raise ReferenceError(str(error)) from None
        codes[present] = mapped
    legend, legend_name = _legend(classes)
    outside = sorted(set(np.unique(codes).tolist()) - {code for code, _ in legend} - {NO_LABEL})
    if outside and classes:
        raise ReferenceError(
            f"The reference '{source}' holds class code(s) {', '.join(map(str, outside[:10]))}, absent from "
            f"{legend_name} (0 = no label, " + ", ".join(f"{code} {name}" for code, name in legend) + "). "
            "Add them to the class table, or give a remap table (CSV: source_code,source_name,class_code) that maps "
            "them onto its codes.")
    if outside:
        raise ReferenceError(
            f"The reference '{source}' holds class code(s) {', '.join(map(str, outside[:10]))}, outside the legend "
            f"(0 = no label, " + ", ".join(f"{code} {name}" for code, name in legend) + "). "
            "Give a remap table (CSV: source_code,source_name,class_code) that maps them"
            + (" (for the water task: water to 1, land to any of 2-9)." if task == "water" else "."))
    return codes.astype(np.uint8)


def reference_on_grid(source: str, grid: Grid, task: str, class_field: str | None = None,
                      remap: CodeTable | None = None, classes: tuple[ClassInfo, ...] | None = None) -> np.ndarray:
    """uint8 class codes of the reference ``source`` on ``grid`` (0 = no label), those of ``classes``
    (default: the plugin's legend)."""
    try:
        values = (_vector_values(source, grid, class_field, classes) if is_vector(source)
                  else _raster_values(source, grid))
    except RuntimeError as error:  # GDAL/OGR could not read it
        raise ReferenceError(f"The reference '{source}' cannot be read: {error}") from None
    return class_codes(values, source, task, remap, classes)

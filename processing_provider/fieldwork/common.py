"""What the "Field work" algorithms share: the class raster input and its legend, output checks done before
any work, and what they do to GeoPackage layers."""

from __future__ import annotations

import contextlib
from pathlib import Path

from osgeo import gdal, ogr
from qgis.core import QgsPalettedRasterRenderer, QgsProcessingException

from ...sarlulc.fieldwork.legend import ClassEntry, ClassLegend, open_class_raster, read_legend
from ...sarlulc.rasters.output_checks import check_outputs
from ..checks import destination_file, destination_of
from ..messages import engine_errors


class ClassRasterMixin:
    """A class raster input read with its legend, for a PluginAlgorithm (whose raster_file it uses)."""

    def class_raster(self, parameters, name, context, require_legend=True):
        """(layer, GDAL source, legend) of the class raster parameter ``name``. The legend comes from the raster
        (category names and colour table) or else from the layer's paletted style; without either, ``None``
        (or a refusal when ``require_legend``)."""
        layer, source = self.raster_file(parameters, name, context)
        with engine_errors():
            dataset = open_class_raster(source)
            legend = read_legend(dataset) or legend_of_style(layer, dataset)
        if legend is None and require_legend:
            raise QgsProcessingException(
                f"The raster '{layer.name()}' has no legend (no class names in the file, and the layer is not styled "
                "as Paletted/Unique values), so its classes cannot be named. Use a class raster written by SAR LULC "
                "Segment or Water Detect, or style the layer as Paletted/Unique values with a label per class "
                "(Layer Properties ▸ Symbology) and run again.")
        return layer, source, legend


def legend_of_style(layer, dataset: gdal.Dataset) -> ClassLegend | None:
    """The legend of a layer styled as Paletted/Unique values in QGIS (labels and colours), if it is."""
    renderer = layer.renderer()
    if not isinstance(renderer, QgsPalettedRasterRenderer) or not renderer.classes():
        return None
    entries = tuple(sorted((ClassEntry(int(c.value), c.label or f"Class {int(c.value)}", c.color.name())
                            for c in renderer.classes()), key=lambda e: e.code))
    nodata = dataset.GetRasterBand(1).GetNoDataValue()
    return ClassLegend(entries, int(nodata) if nodata is not None else None)


def ogr_source_parts(source: str) -> tuple[str, str]:
    """(file, layer name) of an OGR layer source "path|layername=name|..." (name "" when absent)."""
    path, _, options = source.partition("|")
    name = next((option[len("layername="):] for option in options.split("|") if option.startswith("layername=")), "")
    return path, name


def set_layer_metadata(source: str, items: dict) -> None:
    """Store ``items`` as metadata of a GeoPackage layer (GDAL's gpkg_metadata), e.g. the model that made it."""
    path, name = ogr_source_parts(source)
    dataset = ogr.Open(path, 1)
    layer = dataset.GetLayerByName(name) if name else dataset.GetLayer(0)
    if layer is not None:
        layer.SetMetadata(items)
    layer = dataset = None


def check_destination(destination, label: str, inputs=()) -> None:
    """Refuse, before any work, an output that would overwrite an input or whose folder is missing or not
    writable (the engine's check, with its messages). ``destination`` is a path or a destination
    parameter's value, read as given: asking Processing for a sink's output layer would add a second,
    never-made layer to load (a false "not correctly generated")."""
    path, _ = destination_of(destination)
    if path is None:
        return
    with engine_errors():
        files = [str(source).split("|")[0] for source in inputs if source]
        check_outputs({label: path}, {f"input '{Path(file).name}'" if len(files) > 1 else "input raster": file
                                      for file in files})


def remove_sink_output(destination: str) -> None:
    """Delete what a failed or cancelled run wrote to a sink destination: its layer in a shared GeoPackage,
    or the whole file it created."""
    path, table = destination_file(destination)
    if path is None or not path.exists():
        return
    if table:
        with contextlib.suppress(RuntimeError):
            source = ogr.Open(str(path), 1)
            if source is not None and source.GetLayerByName(table) is not None:
                source.DeleteLayer(table)
            source = None
        return
    with contextlib.suppress(RuntimeError, OSError):
        dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR)
        driver = dataset.GetDriver()
        dataset = None
        driver.Delete(str(path))  # with its companion files (.shx, .dbf, ...)

"""The legend a class raster carries: class codes, names and colours, read through GDAL.

The plugin's class rasters store it three ways (sarlulc/rasters/writer.py): a colour table,
category names and a raster attribute table (in the GeoTIFF and its .aux.xml). Any raster with
category names (or an attribute table with a name column) works, not only the plugin's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osgeo import gdal

from ..errors import ClassRasterError, InputRasterError
from ..inference.contract import PROVENANCE_KEYS


INTEGER_TYPES = (gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32)
NO_COLOUR = "#9e9e9e"  # classes named in the legend but missing from the colour table
# Colours of numbered classes of a raster without a legend (ColorBrewer Set3, then repeated).
NUMBERED_COLOURS = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5",
                    "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f")
HOW_TO_GET_A_LEGEND = ("Use a class raster written by SAR LULC Segment or Water Detect, or give the raster class "
                       "names (QGIS: style it as Paletted/Unique values with a label per class; GDAL: category "
                       "names or a raster attribute table with a name column).")


@dataclass(frozen=True)
class ClassEntry:
    code: int
    name: str
    color: str  # "#rrggbb"


@dataclass(frozen=True)
class ClassLegend:
    """The classes of a raster (sorted by code), its nodata code and what the plugin recorded about
    how it was made (model name, training data; empty for other rasters)."""

    entries: tuple[ClassEntry, ...]
    nodata: int | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    numbered: bool = False  # True: no legend in the raster, classes named after their codes

    def entry(self, code: int) -> ClassEntry:
        """The legend entry of ``code``; a code missing from the legend gets a numbered entry."""
        for entry in self.entries:
            if entry.code == code:
                return entry
        return numbered_entry(code)

    @property
    def codes(self) -> list[int]:
        return [entry.code for entry in self.entries]


def numbered_entry(code: int) -> ClassEntry:
    return ClassEntry(code, f"Class {code}", NUMBERED_COLOURS[code % len(NUMBERED_COLOURS)])


def open_class_raster(path) -> gdal.Dataset:
    """Open ``path`` read-only and check that band 1 can hold class codes (integers, not an RGB image)."""
    try:
        dataset = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as error:
        raise InputRasterError(f"The class raster '{path}' could not be opened ({error}). Check that the file "
                               "exists and is a raster GDAL can read, such as a GeoTIFF.") from error
    band = dataset.GetRasterBand(1)
    if band.DataType not in INTEGER_TYPES:
        raise ClassRasterError(
            f"'{path}' is not a class raster: its band 1 holds {gdal.GetDataTypeName(band.DataType)} values, but "
            "class rasters hold integer class codes (like the Byte output of SAR LULC Segment or Water Detect). "
            "A confidence, probability or backscatter raster cannot be counted or vectorised by class.")
    if dataset.RasterCount >= 3 and band.GetColorInterpretation() == gdal.GCI_RedBand:
        raise ClassRasterError(
            f"'{path}' is not a class raster: it is a {dataset.RasterCount}-band colour (RGB) image. "
            "Use a single-band raster of class codes, such as the output of SAR LULC Segment.")
    if dataset.GetSpatialRef() is None:
        raise InputRasterError(
            f"The class raster '{path}' has no coordinate reference system, so areas cannot be measured. "
            "Assign one first (Raster ▸ Projections ▸ Assign Projection).")
    return dataset


def read_legend(dataset: gdal.Dataset) -> ClassLegend | None:
    """The legend of band 1 (category names with the colour table, else the attribute table), or None
    when the raster names no class."""
    band = dataset.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    nodata = int(nodata) if nodata is not None and float(nodata).is_integer() else None
    named = _from_category_names(band) or _from_attribute_table(band)
    if not named:
        return None
    table = band.GetColorTable()
    entries = []
    for code, name, rat_color in named:
        if code == nodata:
            continue
        color = rat_color
        if table is not None and 0 <= code < table.GetCount():
            color = "#{:02x}{:02x}{:02x}".format(*table.GetColorEntry(code)[:3])
        entries.append(ClassEntry(code, name, color or NO_COLOUR))
    provenance = {key: value for key, value in (dataset.GetMetadata() or {}).items() if key in PROVENANCE_KEYS}
    return ClassLegend(tuple(sorted(entries, key=lambda e: e.code)), nodata, provenance)


def numbered_legend(dataset: gdal.Dataset, codes) -> ClassLegend:
    """A stand-in legend for a raster without one: each code found named 'Class N' (colour-table colours
    where the raster has a colour table)."""
    band = dataset.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    table = band.GetColorTable()
    entries = []
    for code in sorted(codes):
        entry = numbered_entry(code)
        if table is not None and 0 <= code < table.GetCount():
            entry = ClassEntry(code, entry.name, "#{:02x}{:02x}{:02x}".format(*table.GetColorEntry(code)[:3]))
        entries.append(entry)
    return ClassLegend(tuple(entries), int(nodata) if nodata is not None else None, numbered=True)


def _from_category_names(band: gdal.Band) -> list[tuple[int, str, str | None]]:
    names = band.GetCategoryNames() or []
    return [(code, name.strip(), None) for code, name in enumerate(names) if name and name.strip()]


def _from_attribute_table(band: gdal.Band) -> list[tuple[int, str, str | None]]:
    """(code, name, colour) rows of a thematic attribute table with value and name columns."""
    rat = band.GetDefaultRAT()
    if rat is None:
        return []
    usage = {rat.GetUsageOfCol(i): i for i in range(rat.GetColumnCount())}
    value_column = usage.get(gdal.GFU_MinMax, usage.get(gdal.GFU_Min))
    name_column = usage.get(gdal.GFU_Name)
    if value_column is None or name_column is None:
        return []
    rgb_columns = [usage.get(u) for u in (gdal.GFU_Red, gdal.GFU_Green, gdal.GFU_Blue)]
    rows = []
    for row in range(rat.GetRowCount()):
        name = rat.GetValueAsString(row, name_column).strip()
        if not name:
            continue
        color = None
        if None not in rgb_columns:
            color = "#{:02x}{:02x}{:02x}".format(*(rat.GetValueAsInt(row, c) for c in rgb_columns))
        rows.append((rat.GetValueAsInt(row, value_column), name, color))
    return rows

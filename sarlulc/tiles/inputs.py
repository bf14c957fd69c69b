"""The input tiles of a many-tile run: found (a folder, a list of files, a VRT of tiles), checked
together before any work, and placed on one pixel grid (the mosaic a VRT of them makes).

Tiles must share what a mosaic needs to be one raster: CRS, data type, band count, nodata, pixel
size and grid, north-up, and must not overlap. Every problem is listed at once, with the files it
concerns and how to fix it. A tile GDAL opens but cannot read (a damaged file) does not stop the
run: it is left out of the mosaic and reported as failed, and the other tiles are run.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

from osgeo import gdal

from ..errors import InputRasterError
from ..sar.units import InputUnits, detect_band_units, sample_valid_values
from ..rasters.windows import Window

TILE_SUFFIXES = (".tif", ".tiff")  # what a folder of tiles is searched for
UNITS_SAMPLE_PIXELS = 1024  # pixels read evenly over each tile to tell its units (a few block rows)
GRID_TOLERANCE = 1e-3  # pixels: how far a tile's corner may lie off the common pixel grid
MOST_NAMED = 6  # files named in a refusal before "and N more"
# A tile index (gdaltindex, QGIS's Tile Index): a vector file whose field names each tile's file.
TILE_INDEX_SUFFIXES = (".gpkg", ".shp", ".geojson", ".fgb")
TILE_INDEX_FIELD = "location"


class TilesError(InputRasterError):
    """The input tiles cannot be mapped together; ``str(error)`` says which files and how to fix it."""


@dataclass(frozen=True)
class Tile:
    """One input tile: its file, the name its outputs take, and its pixels in the mosaic."""

    path: str
    name: str
    window: Window


@dataclass
class TileSet:
    """The tiles that can be read, on one pixel grid; ``unreadable`` maps a file to its error."""

    tiles: list[Tile]
    unreadable: dict[str, str]
    geotransform: tuple[float, ...]  # of the mosaic: top-left corner of all tiles, the tiles' pixel size
    width: int
    height: int
    units: InputUnits  # detected (or as set) and the same for every tile

    def neighbours(self, window: Window) -> list[Tile]:
        """The tiles whose pixels ``window`` (in mosaic pixels) reaches."""
        return [tile for tile in self.tiles if tile.window.intersection(window) is not None]


def find_tiles(source) -> list[str]:
    """The tile files of ``source``: a folder (its GeoTIFFs), a VRT (the files it is made of), a tile index
    (its ``location`` field), a text file listing one path per line, or a list of paths (each of which may
    be such a folder, VRT or index)."""
    if isinstance(source, (list, tuple)):
        files = [path for item in source for path in find_tiles(item)]
        if not files:
            raise TilesError("No input tiles were given. Choose a folder of GeoTIFF tiles, the tile files, or a "
                             "VRT of them.")
        return list(dict.fromkeys(files))
    path = pathlib.Path(os.fspath(source))
    if path.is_dir():
        files = sorted(str(child.resolve()) for child in path.iterdir()
                       if child.suffix.lower() in TILE_SUFFIXES and child.is_file() and not child.name.startswith("."))
        if not files:
            raise TilesError(f"The folder '{path}' holds no GeoTIFF tile (*.tif, *.tiff). Choose the folder the tiles "
                             f"are in, or give the tile files (or a VRT of them) instead.")
        return files
    if not path.exists():
        raise TilesError(f"The input '{path}' does not exist. Check the path.")
    if path.suffix.lower() == ".vrt":
        return _vrt_sources(path)
    if path.suffix.lower() in TILE_INDEX_SUFFIXES:
        return _tile_index_sources(path)
    if path.suffix.lower() in (".txt", ".lst"):
        base = path.parent
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        files = [str((base / line).resolve()) if not os.path.isabs(line) else line for line in lines]
        if not files:
            raise TilesError(f"The list '{path}' names no tile file: write one path per line.")
        return files
    return [str(path.resolve())]


def _tile_index_sources(path: pathlib.Path) -> list[str]:
    """The files a tile index names (a vector layer with one footprint per tile, as `gdaltindex` writes):
    its ``location`` field, paths relative to the index's folder."""
    try:
        index = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    except RuntimeError as error:
        raise TilesError(f"The tile index '{path}' cannot be opened as vector data ({error}).") from error
    layer = index.GetLayer(0)
    if layer is None or layer.GetLayerDefn().GetFieldIndex(TILE_INDEX_FIELD) < 0:
        raise TilesError(f"The tile index '{path}' has no '{TILE_INDEX_FIELD}' field naming each tile's file: "
                         f"make it with gdaltindex (or QGIS's Raster ▸ Miscellaneous ▸ Tile Index), or give the "
                         f"tiles' folder.")
    files = []
    for feature in layer:
        location = feature.GetField(TILE_INDEX_FIELD)
        if location:
            files.append(location if os.path.isabs(location) or location.startswith("/vsi")
                         else str((path.parent / location).resolve()))
    if not files:
        raise TilesError(f"The tile index '{path}' names no tile file.")
    return list(dict.fromkeys(files))


def _vrt_sources(path: pathlib.Path) -> list[str]:
    try:
        dataset = gdal.Open(str(path))
    except RuntimeError as error:
        raise TilesError(f"The VRT '{path}' cannot be opened ({error}). Check it, or give the tile files.") from error
    files = [name for name in (dataset.GetFileList() or [])[1:] if name.lower().endswith(TILE_SUFFIXES)]
    if not files:
        raise TilesError(f"The VRT '{path}' refers to no GeoTIFF tile. Give the tile files or their folder instead.")
    return files


def check_tiles(files: list[str], band: int, units: InputUnits | str = InputUnits.AUTO) -> TileSet:
    """Open every tile and check that they make one mosaic; raises TilesError listing every problem."""
    units = InputUnits(units)
    described, unreadable, unopened = {}, {}, []
    for path in files:
        try:
            dataset = gdal.Open(path, gdal.GA_ReadOnly)
        except RuntimeError as error:
            unopened.append(f"'{path}' ({error})")
            continue
        described[path] = _describe(dataset, band)
        try:
            described[path]["units"] = _units(dataset, band, units)
        except RuntimeError as error:  # opens but its pixels cannot be read: a damaged file
            unreadable[path] = (f"The tile '{path}' cannot be read ({error}); it was left out of the mosaic. Copy or "
                                f"download it again, then run again: only it and its neighbours are redone.")
        except InputRasterError as error:
            described[path]["units"] = f"unknown ({error})"
        dataset = None
    problems = []
    if unopened:
        problems.append(f"{_names(unopened)} cannot be opened as rasters. Remove them from the input or replace them.")
    if described:
        problems += _differences(described, band)
        problems += _grid_problems(described)
    if problems:
        raise TilesError("The input tiles cannot be mapped as one mosaic:\n- " + "\n- ".join(problems))
    readable = [path for path in files if path in described and path not in unreadable]
    if not readable:
        raise TilesError("No input tile can be read:\n- " + "\n- ".join(unreadable.values()))
    return _place(readable, described, unreadable, units)


def _describe(dataset: gdal.Dataset, band: int) -> dict:
    srs = dataset.GetSpatialRef()
    described = {"bands": dataset.RasterCount, "size": (dataset.RasterXSize, dataset.RasterYSize),
                 "geotransform": dataset.GetGeoTransform(can_return_null=True),
                 "srs": srs.ExportToWkt() if srs is not None else None}
    if band <= dataset.RasterCount:
        raster_band = dataset.GetRasterBand(band)
        described["type"] = gdal.GetDataTypeName(raster_band.DataType)
        described["nodata"] = raster_band.GetNoDataValue()
    return described


def _units(dataset: gdal.Dataset, band: int, units: InputUnits) -> str:
    """The tile's units as detected from a small even sample (reading it also finds a damaged file)."""
    if band > dataset.RasterCount:
        return "no such band"
    sample = sample_valid_values(dataset, band, max_pixels=UNITS_SAMPLE_PIXELS)
    if units is not InputUnits.AUTO:
        return units.value
    return detect_band_units(dataset, band, sample=sample)[0].value


def _differences(described: dict[str, dict], band: int) -> list[str]:
    problems = []
    missing_band = [path for path, d in described.items() if d["bands"] < band]
    if missing_band:
        problems.append(f"{_names(missing_band)} have fewer than {band} band(s). Choose a band every tile has.")
    no_crs = [path for path, d in described.items() if not d["srs"] or not d["geotransform"]]
    if no_crs:
        problems.append(f"{_names(no_crs)} have no CRS or no georeferencing. Assign it (gdal_edit.py -a_srs) first.")
    for key, what, advice in (
            ("srs", "coordinate reference systems", "Reproject them to one CRS first (gdalwarp -t_srs)."),
            ("type", "data types", "Tiles of one product share one type; convert them to one (gdal_translate -ot)."),
            ("units", "units", "Tiles of one product share their units: calibrate or convert them alike, or set the "
                               "input units if the detection is wrong."),
            ("bands", "band counts", "Give tiles of one product."),
            ("nodata", "nodata values", "Set one nodata value on all of them (gdal_edit.py -a_nodata).")):
        groups = _groups(described, key)
        if len(groups) > 1:
            listed = "; ".join(f"{_label(key, value)}: {_names(paths)}" for value, paths in groups.items())
            problems.append(f"The tiles have different {what} ({listed}). {advice}")
    return problems


def _grid_problems(described: dict[str, dict]) -> list[str]:
    """Rotated tiles, different pixel sizes, corners off the common grid, and overlaps."""
    placed = {path: d["geotransform"] for path, d in described.items() if d["geotransform"]}
    if not placed:
        return []
    rotated = [path for path, gt in placed.items() if gt[2] or gt[4]]
    if rotated:
        return [f"{_names(rotated)} are rotated. Warp them north-up first (gdalwarp)."]
    sizes = _groups({path: {"size": (gt[1], gt[5])} for path, gt in placed.items()}, "size", 9)
    if len(sizes) > 1:
        listed = "; ".join(f"{dx:g} x {-dy:g}: {_names(paths)}" for (dx, dy), paths in sizes.items())
        return [f"The tiles have different pixel sizes ({listed}). Resample them to one (gdalwarp -tr)."]
    first = next(iter(placed.values()))
    off_grid = [path for path, gt in placed.items()
                if max(abs(_pixels(gt[0] - first[0], first[1]) - round(_pixels(gt[0] - first[0], first[1]))),
                       abs(_pixels(gt[3] - first[3], first[5]) - round(_pixels(gt[3] - first[3], first[5]))))
                > GRID_TOLERANCE]
    if off_grid:
        return [f"{_names(off_grid)} do not lie on the pixel grid of '{next(iter(placed))}' (their corners fall "
                f"between its pixels). Resample them onto one grid (gdalwarp -tap -tr)."]
    windows = {path: _window(gt, described[path]["size"], first) for path, gt in placed.items()}
    paths = sorted(windows, key=lambda p: (windows[p].y, windows[p].x))
    overlaps = [f"'{a}' and '{b}'" for i, a in enumerate(paths) for b in paths[i + 1:]
                if windows[a].intersection(windows[b]) is not None]
    if overlaps:
        shown = "; ".join(overlaps[:MOST_NAMED]) + (f"; and {len(overlaps) - MOST_NAMED} more pairs"
                                                     if len(overlaps) > MOST_NAMED else "")
        return [f"Tiles overlap ({shown}): the same ground would be mapped twice. Give each area once: remove "
                f"duplicates, or clip the tiles so that they only meet at their edges."]
    return []


def _place(paths: list[str], described: dict[str, dict], unreadable: dict[str, str], units: InputUnits) -> TileSet:
    """The tiles' windows in the mosaic spanning them all, and names for their outputs (file stems, made unique)."""
    first = described[paths[0]]["geotransform"]
    windows = {path: _window(described[path]["geotransform"], described[path]["size"], first) for path in paths}
    left, top = min(w.x for w in windows.values()), min(w.y for w in windows.values())
    width = max(w.x_end for w in windows.values()) - left
    height = max(w.y_end for w in windows.values()) - top
    names: dict[str, int] = {}
    tiles = []
    for path in paths:
        stem = pathlib.Path(path).stem
        names[stem] = names.get(stem, 0) + 1
        name = stem if names[stem] == 1 else f"{stem}_{names[stem]}"
        window = windows[path]
        tiles.append(Tile(path, name, Window(window.x - left, window.y - top, window.width, window.height)))
    detected = {described[path]["units"] for path in paths}
    geotransform = (first[0] + left * first[1], first[1], 0.0, first[3] + top * first[5], 0.0, first[5])
    known = {u.value for u in InputUnits}
    common = detected.pop() if len(detected) == 1 else None
    return TileSet(tiles, unreadable, geotransform, width, height, InputUnits(common) if common in known else units)


def _window(gt, size, reference) -> Window:
    return Window(round(_pixels(gt[0] - reference[0], reference[1])),
                  round(_pixels(gt[3] - reference[3], reference[5])), *size)


def _pixels(distance: float, pixel_size: float) -> float:
    return distance / pixel_size


def _groups(described: dict[str, dict], key: str, digits: int | None = None) -> dict:
    groups: dict = {}
    for path, d in described.items():
        if key not in d:
            continue
        value = d[key]
        if digits is not None:
            value = tuple(round(v, digits) for v in value)
        if key == "srs" and value:
            value = _crs_identity(value, groups)
        groups.setdefault(value, []).append(path)
    return groups


def _crs_identity(wkt: str, known: dict) -> str:
    """``wkt`` or the known CRS it is the same as (one CRS may be written several ways)."""
    from osgeo import osr

    srs = osr.SpatialReference(wkt=wkt)
    return next((other for other in known if other and srs.IsSame(osr.SpatialReference(wkt=other))), wkt)


def _label(key: str, value) -> str:
    if key == "srs":
        from osgeo import osr

        srs = osr.SpatialReference(wkt=value) if value else None
        code = srs.GetAuthorityCode(None) if srs else None
        return f"EPSG:{code}" if code else (srs.GetName() if srs else "none")
    return str(value)


def _names(items: list[str]) -> str:
    shown = ", ".join(item if item.startswith("'") else f"'{item}'" for item in items[:MOST_NAMED])
    return shown + (f" and {len(items) - MOST_NAMED} more" if len(items) > MOST_NAMED else "")

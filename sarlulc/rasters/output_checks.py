"""Output checks, before any work: `check_outputs` refuses an output that would overwrite an input or another
output, that cannot be created or replaced, whose format cannot hold the data, or whose .qml style file would
clash; `OUTPUT_FORMATS` are the formats outputs may take."""

from __future__ import annotations

import os
import pathlib
import stat
import xml.etree.ElementTree as ElementTree
from typing import Mapping

from osgeo import gdal

from ..errors import OutputError
from .transaction import HIDDEN_NAME_EXTRA, remove_stale_files


# Output formats by file extension: (GDAL driver, name shown to users). Only lossless formats
# whose GDAL driver keeps values, nodata and georeferencing (checked in the tests); the data
# type each can hold is read from the driver.
OUTPUT_FORMATS = {
    ".tif": ("GTiff", "GeoTIFF"),
    ".tiff": ("GTiff", "GeoTIFF"),
    ".img": ("HFA", "Erdas Imagine"),
    ".gpkg": ("GPKG", "GeoPackage"),
    ".png": ("PNG", "PNG"),
}
STYLE_SUFFIX = ".qml"
# Custom property the plugin stores in the .qml files it writes: the name of the raster styled.
STYLE_MARKER = "sarlulc/style_of"


def style_sidecar_path(path) -> pathlib.Path:
    """The .qml QGIS applies when it opens ``path``: the name without its last extension, plus .qml."""
    return pathlib.Path(path).with_suffix(STYLE_SUFFIX)


def format_list(data_type: int | None = None) -> str:
    """The extensions an output can take (those able to hold ``data_type``), for messages."""
    entries = [f"{suffix} ({name})" for suffix, (driver, name) in OUTPUT_FORMATS.items()
               if data_type is None or _holds(driver, data_type)]
    return ", ".join(entries[:-1]) + " or " + entries[-1]


def _holds(driver_name: str, data_type: int) -> bool:
    driver = gdal.GetDriverByName(driver_name)
    return driver is not None and gdal.GetDataTypeName(data_type) in (
        driver.GetMetadataItem(gdal.DMD_CREATIONDATATYPES) or "").split()


def check_outputs(outputs: Mapping[str, object], inputs: Mapping[str, object] | None = None,
                  raster_types: Mapping[str, int] | None = None, styled: bool = False) -> dict[str, pathlib.Path]:
    """Check every output of a run before any work, and sweep what killed runs left in their folders.

    ``outputs``: {label: path} of the files the run will write; ``inputs``: {label: path} of the
    files it reads (None entries are ignored); ``raster_types``: {label: GDAL data type} of the
    raster outputs, whose format is checked; ``styled``: the rasters get .qml style files.
    Returns the absolute output paths by label.
    """
    for label, path in outputs.items():
        if not path:
            raise OutputError(f"No {label} file was given. Choose where to save the {label}.")
    sources = {label: pathlib.Path(path).expanduser().absolute()
               for label, path in (inputs or {}).items() if path}
    check_distinct_files(outputs, inputs)
    checked: dict[str, pathlib.Path] = {}
    for label, path in outputs.items():
        path = pathlib.Path(path).expanduser().absolute()
        _check_writable(path, label)
        if raster_types and label in raster_types:
            output_driver(path, raster_types[label], label)
        checked[label] = path
    if styled:
        _check_style_sidecars(checked, sources)
    for folder in {path.parent for path in checked.values()}:
        remove_stale_files(folder)
    return checked


def check_distinct_files(outputs: Mapping[str, object], inputs: Mapping[str, object] | None = None) -> None:
    """Refuse an output that is one of the run's inputs, or another of its outputs (the same path, the
    same file through a link or under another name), before anything is written. ``outputs`` and
    ``inputs``: {label: path}; empty entries are ignored."""
    sources = {label: pathlib.Path(path).expanduser().absolute() for label, path in (inputs or {}).items() if path}
    checked: dict[str, pathlib.Path] = {}
    for label, path in outputs.items():
        if not path:
            continue
        path = pathlib.Path(path).expanduser().absolute()
        for source_label, source in sources.items():
            if _same_file(path, source):
                through = "" if path == source else f" '{source}' (the same file, through a link)"
                raise OutputError(f"The {label} file '{path}' is the {source_label}{through}. Choose another file "
                                  f"name, so the {source_label} is not overwritten.")
        for other_label, other in checked.items():
            if _same_file(path, other):
                raise OutputError(f"The {label} file must differ from the {other_label} file '{path}': "
                                  f"give them different file names.")
        checked[label] = path


def _same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Same path, same file through symbolic links, or the same file under another name (hard link,
    case-insensitive file system)."""
    if a == b or a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


NAME_MAX_BYTES = 255  # a file name's limit on the usual file systems (ext4, NTFS, APFS)


def _check_name_room(path: pathlib.Path, label: str) -> None:
    """Refuse a file name too long for the hidden names the run writes beside it (they would fail half way)."""
    room = NAME_MAX_BYTES - HIDDEN_NAME_EXTRA
    length = len(path.name.encode())
    if length > room:
        raise OutputError(f"The {label} file name is {length} bytes long: the run's temporary files beside it need "
                          f"{HIDDEN_NAME_EXTRA} more, over the {NAME_MAX_BYTES} a file name may have. Shorten the "
                          f"name to at most {room} bytes.")


def _check_writable(path: pathlib.Path, label: str) -> None:
    _check_name_room(path, label)
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"The folder '{folder}' for the {label} file does not exist. Create it or choose another.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"The folder '{folder}' for the {label} file is not writable. "
                          f"Choose a folder you can write to.")
    if path.is_dir():
        raise OutputError(f"The {label} path '{path}' is a folder. Give a file name such as "
                          f"result{path.suffix or '.tif'}.")
    _check_replaceable(path, f"The {label} file")


def _check_replaceable(path: pathlib.Path, what: str) -> None:
    """An existing file is replaced only if it is a regular file not marked read-only."""
    if not os.path.lexists(path):
        return
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
        raise OutputError(f"{what} '{path}' exists and is not a regular file, so it cannot be replaced. "
                          f"Choose another file name.")
    if not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise OutputError(f"{what} '{path}' already exists and is read-only, so it cannot be replaced. "
                          f"Make it writable or delete it, or choose another file name.")


def output_driver(path, data_type: int, label: str = "output") -> str:
    """The GDAL driver that writes ``path`` (chosen by its extension), if it can hold ``data_type``."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        problem = ("has no file extension, so its format is unknown" if not suffix else
                   f"ends in '{path.suffix}', a format SAR LULC does not write (lossy formats such as JPEG "
                   f"would change the values)")
        raise OutputError(f"The {label} file '{path}' {problem}. Use one of: {format_list(data_type)}.")
    driver, name = OUTPUT_FORMATS[suffix]
    if not _holds(driver, data_type):
        raise OutputError(f"The {label} file '{path}' is a {name}, which cannot hold {gdal.GetDataTypeName(data_type)} "
                          f"values. Use one of: {format_list(data_type)}.")
    return driver


def _check_style_sidecars(outputs: Mapping[str, pathlib.Path], inputs: Mapping[str, pathlib.Path]) -> None:
    """Each styled output needs a .qml of its own that no input or other raster uses and that is not
    a file the plugin did not write (QGIS names it after the raster, so `x.tif` and `x.tiff` share `x.qml`)."""
    owners: dict[pathlib.Path, str] = {}
    for label, path in outputs.items():
        sidecar = style_sidecar_path(path).resolve()
        if sidecar in owners:
            raise OutputError(f"The {owners[sidecar]} and the {label} would share the style file '{sidecar}' (QGIS "
                              f"names it after the file name without its extension). Give them different names.")
        owners[sidecar] = label
        for source_label, source in inputs.items():
            if style_sidecar_path(source).resolve() == sidecar:
                raise OutputError(f"The style file of the {label}, '{sidecar}', would also be applied by QGIS to the "
                                  f"{source_label} '{source}'. Choose another name or folder for the {label}.")
        if not os.path.lexists(sidecar):
            continue
        _check_replaceable(sidecar, "The style file")
        styled_name = _styled_file_name(sidecar)
        if styled_name is None:
            raise OutputError(f"The style file '{sidecar}' of the {label} already exists and was not written by "
                              f"SAR LULC: it would be lost. Move or rename it, or choose another name for the {label}.")
        styled = sidecar.parent / styled_name
        if styled_name != path.name and styled.exists():
            raise OutputError(f"The style file '{sidecar}' of the {label} is the style of '{styled}'. Choose "
                              f"another name for the {label}, so both keep their style.")


def _styled_file_name(qml: pathlib.Path) -> str | None:
    """The raster name recorded in a .qml the plugin wrote, or None for any other file."""
    try:
        root = ElementTree.parse(qml).getroot()
    except (ElementTree.ParseError, OSError):
        return None
    for element in root.iter():
        if STYLE_MARKER in (element.get("name"), element.get("key")):
            return element.get("value")
    return None

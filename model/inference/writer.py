"""Outputs: checked before any work, written under hidden names, moved into place all together.

Every algorithm goes through here: `check_outputs` refuses, before anything is computed, an
output that would overwrite an input or another output, that cannot be created or replaced,
whose format cannot hold the data, or whose .qml style file would clash; `PendingFiles`
writes each file under a hidden name beside its target and commits all of them in one step
that either completes or leaves the previous files as they were.

Hidden names carry the host and process id (``.lulc.tif.sarlulc-<host>-<pid>-<token>.partial.tif``),
so what a killed run left behind is recognised and removed by the next run in that folder.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import pathlib
import re
import shutil
import socket
import stat
import uuid
import xml.etree.ElementTree as ElementTree
from typing import Callable, Iterable, Mapping

import numpy as np
from osgeo import gdal

from .errors import OutputError
from .resample import DEFAULT_CREATION_OPTIONS, warp_back_to_input_grid
from .windows import Window


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
# Files GDAL keeps beside a raster; those of a replaced output are replaced with it.
_COMPANIONS = (".aux.xml", ".ovr", ".msk")
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_HIDDEN = re.compile(r"^\.(?P<final>.+)\.sarlulc-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}"
                     r"\.(?P<kind>partial|backup|scratch)(?P<rest>.*)$")
_MB = 1024 * 1024
_NEARLY_FULL = _MB  # free bytes under which a failed write is taken as a full disk


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
# What the run's hidden names add to an output's name: ".", ".sarlulc-<host>-<pid up to 7 digits>-<token>.partial",
# then room for an extension and a GDAL companion (.aux.xml).
_HIDDEN_NAME_EXTRA = len(f"..sarlulc-{_HOST}-{'9' * 7}-{'0' * 8}.partial") + len(".tiff.aux.xml")


def _check_name_room(path: pathlib.Path, label: str) -> None:
    """Refuse a file name too long for the hidden names the run writes beside it (they would fail half way)."""
    room = NAME_MAX_BYTES - _HIDDEN_NAME_EXTRA
    length = len(path.name.encode())
    if length > room:
        raise OutputError(f"The {label} file name is {length} bytes long: the run's temporary files beside it need "
                          f"{_HIDDEN_NAME_EXTRA} more, over the {NAME_MAX_BYTES} a file name may have. Shorten the "
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


def raster_bytes(path, pixels: int, data_type: int) -> int:
    """An upper bound of the disk space a raster output needs while it is written: its uncompressed
    size, twice for formats converted from a GeoTIFF when committed."""
    size = pixels * gdal.GetDataTypeSize(data_type) // 8
    converted = OUTPUT_FORMATS.get(pathlib.Path(path).suffix.lower(), ("GTiff",))[0] != "GTiff"
    return size * (2 if converted else 1)


def check_free_space(needs: Iterable[tuple[pathlib.Path, int]]) -> None:
    """Refuse a run whose outputs (path, bytes) would not fit on their disks, before any work."""
    by_device: dict[int, tuple[pathlib.Path, int]] = {}
    for path, size in needs:
        folder = pathlib.Path(path).parent
        device = folder.stat().st_dev
        known = by_device.get(device, (folder, 0))
        by_device[device] = (known[0], known[1] + size)
    for folder, size in by_device.values():
        free = shutil.disk_usage(folder).free
        if size > free:
            raise OutputError(f"No space left on '{folder}': about {_megabytes(size)} MB needed for the outputs "
                              f"(their uncompressed size), {free // _MB} MB free. Free some space or choose "
                              f"another folder.")


def _megabytes(size: int) -> int:
    return -(-size // _MB)


def write_error(path, error: Exception, needed: int | None = None) -> OutputError:
    """What to tell the user when writing ``path`` failed: a full disk (ENOSPC, or hardly any space left,
    as GDAL's own messages do not say), or the error itself."""
    folder = pathlib.Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if getattr(error, "errno", None) == errno.ENOSPC or (free is not None and free < _NEARLY_FULL):
        need = f": '{pathlib.Path(path).name}' needs up to {_megabytes(needed)} MB" if needed else ""
        return OutputError(f"No space left on '{folder}'{need}. Free some space or choose another folder; "
                           f"no output was written.")
    return OutputError(f"Could not write '{path}' ({error}). Check the folder's permissions and free space; "
                       f"no output was written.")


# ---------------------------------------------------------------- hidden files and the commit

def hidden_path(final, kind: str, token: str | None = None) -> pathlib.Path:
    """A hidden name beside ``final`` (same file system, so renames are atomic) that says which run made it."""
    final = pathlib.Path(final)
    token = token or uuid.uuid4().hex[:8]
    return final.with_name(f".{final.name}.sarlulc-{_HOST}-{os.getpid()}-{token}.{kind}")


def remove_stale_files(folder) -> None:
    """Remove what runs killed on this machine (SIGKILL, out of memory, power cut) left in ``folder``:
    partial files and scratch folders are deleted; a backup is put back if its file is missing (the
    kill came mid-commit, before the new file was in place), else deleted. Files of running processes,
    and of other machines sharing the folder, are left alone."""
    folder = pathlib.Path(folder)
    try:
        matches = [match for match in map(_HIDDEN.match, os.listdir(folder))
                   if match and match["host"] == _HOST and not _process_alive(int(match["pid"]))]
    except OSError:
        return
    # Decided for each file with its companions (x.tif.aux.xml goes back with x.tif), before any move.
    missing = {match["final"] for match in matches if not os.path.lexists(folder / match["final"])}
    for match in matches:
        path = folder / match.string
        with contextlib.suppress(OSError):
            if match["kind"] == "scratch":
                shutil.rmtree(path)
            elif match["kind"] == "backup" and match["final"] in missing:
                os.replace(path, folder / (match["final"] + match["rest"]))
            else:
                path.unlink()


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill would terminate the process there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.windll.kernel32.GetLastError() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PendingFiles:
    """The files of one run, written under hidden names and moved into place together.

    ``new(final)`` gives the hidden path to write ``final`` to (files GDAL adds beside it, such as
    ``.aux.xml``, follow it). On leaving the ``with`` block normally, every existing target (and its
    GDAL companion files) is moved aside, the new files are renamed in, and the old ones deleted;
    if any rename fails, the renamed files are removed and the old ones put back. On an exception,
    cancel included, every hidden file is removed and nothing else is touched.
    """

    def __init__(self):
        self._token = uuid.uuid4().hex[:8]
        self._entries: list[tuple[pathlib.Path, pathlib.Path]] = []  # (hidden prefix, final)

    def new(self, final) -> pathlib.Path:
        final = pathlib.Path(final)
        prefix = hidden_path(final, "partial", self._token)
        self._entries.append((prefix, final))
        return prefix.with_name(prefix.name + final.suffix)

    def __enter__(self) -> "PendingFiles":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self.discard()
            if isinstance(error, OSError):
                raise write_error(self._entries[0][1] if self._entries else "output", error) from error
            return
        self.commit()

    def _written(self) -> list[tuple[pathlib.Path, pathlib.Path]]:
        """(hidden file, target) for every file written under a registered name, companions included."""
        moves = []
        for prefix, final in self._entries:
            for hidden in sorted(prefix.parent.glob(glob.escape(prefix.name) + "*")):
                moves.append((hidden, final.with_name(final.stem + hidden.name[len(prefix.name):])))
        return moves

    def commit(self) -> None:
        moves = self._written()
        # Each existing target, with the file it belongs to (x.tif.ovr goes aside and back with x.tif).
        replaced = {final.with_name(final.name + suffix): final
                    for _, final in self._entries for suffix in ("",) + _COMPANIONS}
        replaced.update({target: target for _, target in moves if target not in replaced})
        backups: list[tuple[pathlib.Path, pathlib.Path]] = []
        renamed: list[pathlib.Path] = []
        current = None
        try:
            for current, owner in replaced.items():
                if os.path.lexists(current):
                    backup = hidden_path(owner, "backup", self._token)
                    backup = backup.with_name(backup.name + current.name[len(owner.name):])
                    os.replace(current, backup)
                    backups.append((current, backup))
            for hidden, current in moves:
                os.replace(hidden, current)
                renamed.append(current)
        except OSError as error:
            for target in renamed:
                with contextlib.suppress(OSError):
                    target.unlink()
            for target, backup in reversed(backups):
                with contextlib.suppress(OSError):
                    os.replace(backup, target)
            self.discard()
            raise OutputError(f"Could not put '{current}' in place ({error.strerror or error}); the previous "
                              f"files were left as they were. Check that no other program holds it open.") from error
        for _, backup in backups:
            with contextlib.suppress(OSError):
                backup.unlink()  # else removed by the next run's sweep

    def discard(self) -> None:
        for hidden, _ in self._written():
            with contextlib.suppress(OSError):
                hidden.unlink()


# ---------------------------------------------------------------- raster outputs

def _creation_options(data_type: int) -> list[str]:
    options = list(DEFAULT_CREATION_OPTIONS)
    if data_type in (gdal.GDT_Float32, gdal.GDT_Float64):
        options.append("PREDICTOR=3")
    return options


class OutputRaster:
    """One single-band raster on the grid of ``like`` (the input, or the model grid when the input
    is read resampled), written as a hidden GeoTIFF; `finish` converts it to the target's format."""

    def __init__(self, final_path, like: gdal.Dataset, data_type: int, nodata: float, description: str):
        self._start(final_path, like.RasterXSize * like.RasterYSize, data_type)
        try:
            self.dataset = gdal.GetDriverByName("GTiff").Create(
                str(self.temp_path), like.RasterXSize, like.RasterYSize, 1, data_type,
                _creation_options(data_type))
        except RuntimeError as error:
            self.temp_path.unlink(missing_ok=True)
            raise write_error(self.final_path, error, self.size) from error
        self.dataset.SetGeoTransform(like.GetGeoTransform())
        self.dataset.SetSpatialRef(like.GetSpatialRef())
        self.band = self.dataset.GetRasterBand(1)
        self.band.SetNoDataValue(nodata)
        self.band.SetDescription(description)

    def _start(self, final_path, pixels: int, data_type: int) -> None:
        self.final_path = pathlib.Path(final_path)
        self.driver = output_driver(self.final_path, data_type)
        self.size = raster_bytes(self.final_path, pixels, data_type)
        self.temp_path = hidden_path(self.final_path, "partial").with_suffix(".partial.tif")
        self.dataset = self.band = None

    @classmethod
    def warped(cls, source_path, final_path, like: gdal.Dataset, resampling: str, progress=None,
               is_cancelled=None) -> "OutputRaster":
        """The finished single-band raster ``source_path`` warped onto ``like``'s exact grid (GDAL's
        warper, streamed; nodata and description kept), open for update under a hidden name.
        The legend, kept in a sidecar, must be set again."""
        output = cls.__new__(cls)
        source = gdal.Open(str(source_path))  # kept open: a band outliving its dataset crashes GDAL
        data_type = source.GetRasterBand(1).DataType
        source = None
        output._start(final_path, like.RasterXSize * like.RasterYSize, data_type)
        try:
            warp_back_to_input_grid(source_path, like, output.temp_path, resampling,
                                    creation_options=_creation_options(data_type), progress=progress,
                                    is_cancelled=is_cancelled)
            output.dataset = gdal.Open(str(output.temp_path), gdal.GA_Update)
        except OutputError as error:
            output.discard()
            raise write_error(output.final_path, error, output.size) from error
        except BaseException:
            output.discard()
            raise
        output.band = output.dataset.GetRasterBand(1)
        return output

    def set_legend(self, entries: list[tuple[int, str, str]]) -> None:
        """Store (value, name, "#rrggbb") as a colour table, category names and an attribute table,
        so QGIS, GDAL and other GIS tools show the legend."""
        table = gdal.ColorTable()
        names = [""] * (max(value for value, _, _ in entries) + 1)
        rat = gdal.RasterAttributeTable()
        rat.SetTableType(gdal.GRTT_THEMATIC)
        for column, usage, kind in (("Value", gdal.GFU_MinMax, gdal.GFT_Integer),
                                    ("Class", gdal.GFU_Name, gdal.GFT_String),
                                    ("Red", gdal.GFU_Red, gdal.GFT_Integer),
                                    ("Green", gdal.GFU_Green, gdal.GFT_Integer),
                                    ("Blue", gdal.GFU_Blue, gdal.GFT_Integer)):
            rat.CreateColumn(column, kind, usage)
        for row, (value, name, color) in enumerate(entries):
            rgb = tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
            table.SetColorEntry(value, rgb + (255,))
            names[value] = name
            rat.SetValueAsInt(row, 0, value)
            rat.SetValueAsString(row, 1, name)
            for column, channel in enumerate(rgb, start=2):
                rat.SetValueAsInt(row, column, channel)
        self.band.SetColorTable(table)
        self.band.SetCategoryNames(names)
        self.band.SetDefaultRAT(rat)

    def write(self, array: np.ndarray, window: Window) -> None:
        try:
            self.band.WriteArray(array, window.x, window.y)
        except RuntimeError as error:
            raise write_error(self.final_path, error, self.size) from error

    def read(self, window: Window) -> np.ndarray:
        return self.band.ReadAsArray(window.x, window.y, window.width, window.height)

    def fill(self, value: float, window: Window) -> None:
        """Write ``value`` over ``window`` (nodata over a part without input data)."""
        dtype = np.uint8 if self.band.DataType == gdal.GDT_Byte else np.float32
        self.write(np.full((window.height, window.width), value, dtype), window)

    def close(self) -> None:
        if self.dataset is not None:
            self.band = None
            dataset, self.dataset = self.dataset, None
            try:
                dataset.FlushCache()
            except RuntimeError as error:
                raise write_error(self.final_path, error, self.size) from error
            finally:
                dataset = None

    def finish(self, pending: PendingFiles) -> pathlib.Path:
        """Close, convert to the target's format, and hand the file to ``pending``; returns its hidden path."""
        self.close()
        hidden = pending.new(self.final_path)
        try:
            if self.driver == "GTiff":
                for suffix in ("",) + _COMPANIONS:
                    if os.path.lexists(str(self.temp_path) + suffix):
                        os.replace(str(self.temp_path) + suffix, str(hidden) + suffix)
            else:
                gdal.Translate(str(hidden), str(self.temp_path), format=self.driver)
        except (RuntimeError, OSError) as error:
            raise write_error(self.final_path, error, self.size) from error
        finally:
            self.discard()
        self.temp_path = hidden
        return hidden

    def discard(self) -> None:
        """Close and delete the hidden GeoTIFF and what GDAL wrote beside it."""
        try:
            self.close()
        except OutputError:
            pass
        finally:
            for suffix in ("",) + _COMPANIONS:
                pathlib.Path(str(self.temp_path) + suffix).unlink(missing_ok=True)


@contextlib.contextmanager
def all_or_none(outputs: list[OutputRaster],
                before_commit: Callable[[PendingFiles, list[pathlib.Path]], None] | None = None):
    """Commit every output (the list may grow inside the block) when the block succeeds, in one step
    with the files ``before_commit(pending, finished rasters)`` adds (style files); when anything
    raises, cancel included, remove every hidden file, so no partial file is left and no previous
    file is touched."""
    pending = PendingFiles()
    try:
        yield outputs
        with pending:
            rasters = [output.finish(pending) for output in outputs]
            if before_commit is not None:
                before_commit(pending, rasters)
    except BaseException:
        for output in outputs:
            output.discard()
        raise

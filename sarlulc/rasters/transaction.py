"""The output transaction: a run's files written under hidden names beside their targets, and moved into
place together in one step that either completes or leaves the previous files as they were (`PendingFiles`).

Hidden names carry the host and process id (``.lulc.tif.sarlulc-<host>-<pid>-<token>.partial.tif``),
so what a killed run left behind is recognised and removed by the next run in that folder
(`remove_stale_files`); a run's scratch folders (``.sarlulc-…scratch``) go the same way.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pathlib
import re
import shutil
import socket
import uuid

from .disk_space import write_error
from ..errors import OutputError

# Files GDAL keeps beside a raster; those of a replaced output are replaced with it.
GDAL_COMPANIONS = (".aux.xml", ".ovr", ".msk")
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_HIDDEN = re.compile(r"^\.(?P<final>.+)\.sarlulc-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}"
                     r"\.(?P<kind>partial|backup|scratch)(?P<rest>.*)$")
# What the hidden names add to an output's name: ".", ".sarlulc-<host>-<pid up to 7 digits>-<token>.partial",
# then room for an extension and a GDAL companion (.aux.xml).
HIDDEN_NAME_EXTRA = len(f"..sarlulc-{_HOST}-{'9' * 7}-{'0' * 8}.partial") + len(".tiff.aux.xml")


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
    """The output transaction: the files of one run, written under hidden names and moved into place together.

    ``new(final)`` gives the hidden path to write ``final`` to (files GDAL adds beside it, such as
    ``.aux.xml``, follow it); ``scratch_folder(beside)`` a hidden folder for intermediate files. On
    leaving the ``with`` block normally, every existing target (and its GDAL companion files) is moved
    aside, the new files are renamed in, and the old ones deleted; if any rename fails, the renamed
    files are removed and the old ones put back. On an exception, cancel included, every hidden file
    is removed and nothing else is touched. Scratch folders are removed either way.
    """

    def __init__(self):
        self._token = uuid.uuid4().hex[:8]
        self._entries: list[tuple[pathlib.Path, pathlib.Path]] = []  # (hidden prefix, final)
        self._folders: list[pathlib.Path] = []

    def new(self, final, plain_name: bool = False) -> pathlib.Path:
        """The hidden path to write ``final`` to. ``plain_name``: ``final``'s own name, in a scratch folder
        beside it, for writers that read the format from all of a name after its first dot (QGIS's vector
        sinks: a GeoPackage written by child algorithms)."""
        final = pathlib.Path(final)
        if plain_name:
            prefix = self.scratch_folder(final) / final.stem
        else:
            prefix = hidden_path(final, "partial", self._token)
        self._entries.append((prefix, final))
        return prefix.with_name(prefix.name + final.suffix)

    def scratch_folder(self, beside) -> pathlib.Path:
        """A new hidden folder beside ``beside``, removed when the transaction ends, committed or not (or by
        the next run's sweep in that folder, if this one is killed)."""
        folder = hidden_path(beside, "scratch")
        folder.mkdir()
        self._folders.append(folder)
        return folder

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
                    for _, final in self._entries for suffix in ("",) + GDAL_COMPANIONS}
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
        self._remove_folders()

    def discard(self) -> None:
        for hidden, _ in self._written():
            with contextlib.suppress(OSError):
                hidden.unlink()
        self._remove_folders()

    def _remove_folders(self) -> None:
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
        self._folders.clear()

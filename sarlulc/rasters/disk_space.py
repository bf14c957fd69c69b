"""Room on disk: refusing outputs that would not fit (`check_free_space`), and telling a full disk from
other write failures (`write_error`)."""

from __future__ import annotations

import errno
import pathlib
import shutil
from typing import Iterable

from ..errors import OutputError

_MB = 1024 * 1024
_NEARLY_FULL = _MB  # free bytes under which a failed write is taken as a full disk


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

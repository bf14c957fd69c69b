"""The record of a many-tile run in its output folder (manifest.json): what each finished tile was made
from and what it wrote, so that a re-run skips exactly the tiles whose record still holds.

A tile's record holds when its inputs (the tile and the neighbours its margins were read from: path,
size, modification time), the task, the options that change results, the model (its SHA-256), and its
window are the same as now, and its output files are still there with the checksums written. The
manifest is rewritten whole (under another name, then renamed) after each tile, so a killed run
leaves the last complete one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
from enum import Enum

from ..inference.engine import RunOptions
from .job import TileResult, file_checksum

MANIFEST_NAME = "manifest.json"
VERSION = 1
# Options that change how fast a tile runs, not what it gives.
SPEED_ONLY_OPTIONS = ("threads", "batch_size", "block_size")


def result_options(options: RunOptions) -> dict:
    """The options that change a tile's result, as JSON values."""
    values = {key: value.value if isinstance(value, Enum) else value
              for key, value in dataclasses.asdict(options).items() if key not in SPEED_ONLY_OPTIONS}
    return values


def input_fingerprint(path: str) -> dict:
    stat = os.stat(path)
    return {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class Manifest:
    def __init__(self, folder: pathlib.Path):
        self.path = pathlib.Path(folder) / MANIFEST_NAME
        self.unreadable = ""  # why an existing manifest was not used (every tile is then run again)
        self.tiles: dict[str, dict] = {}
        if self.path.exists():
            try:
                content = json.loads(self.path.read_text())
                if content.get("version") == VERSION:
                    self.tiles = content["tiles"]
                else:
                    self.unreadable = f"it is of another version ({content.get('version')})"
            except (OSError, ValueError, KeyError, AttributeError) as error:
                self.unreadable = f"it cannot be read ({error})"

    def holds(self, name: str, key: dict, outputs: dict[str, pathlib.Path]) -> bool:
        """Whether tile ``name`` finished with this ``key`` and its files are still as written."""
        record = self.tiles.get(name)
        if record is None or record.get("key") != _as_json(key):
            return False
        if record.get("empty"):
            return True
        written = record.get("outputs", {})
        return set(written) == set(outputs) and all(
            path.is_file() and file_checksum(path) == written[role]["sha256"] for role, path in outputs.items())

    def record(self, name: str, key: dict, result: TileResult, outputs: dict[str, pathlib.Path]) -> None:
        self.tiles[name] = {
            "key": _as_json(key),
            "outputs": {role: {"file": path.relative_to(self.path.parent).as_posix(),
                               "sha256": result.checksums[role]} for role, path in outputs.items()
                        if role in result.checksums},
            "empty": result.empty, "margins": result.margins, "seconds": round(result.seconds, 2),
            "valid_pixels": result.valid_pixels, "warnings": result.warnings,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        self.save()

    def forget(self, name: str) -> None:
        if self.tiles.pop(name, None) is not None:
            self.save()

    def save(self) -> None:
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"version": VERSION, "tiles": self.tiles}, indent=1))
        os.replace(partial, self.path)


def _as_json(value):
    """``value`` as it reads back from JSON (tuples become lists), so that keys compare alike."""
    return json.loads(json.dumps(value))

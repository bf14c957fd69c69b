"""One tile of a many-tile run, as a worker runs it: the engine over the tile and margins read from its
neighbours (a window of the mosaic of all inputs), then the tile's own pixels cut out into
Cloud-Optimised GeoTIFFs, put in place together under their final names only once complete.

Jobs and results are plain picklable data, so the same function runs in this process or on a Dask worker.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable

from osgeo import gdal

from ..inference.engine import RunOptions, detect_water, segment
from ..errors import CancelledError, InferenceError, InputRasterError, gdal_exceptions
from ..rasters.windows import Window
from ..rasters.transaction import PendingFiles, hidden_path

CLASSES, SCORES = "classes", "scores"  # output roles: the class map / water mask, and its probability
COG_OPTIONS = ["COMPRESS=DEFLATE", "BLOCKSIZE=512", "BIGTIFF=IF_SAFER"]
NO_VALID_PIXEL = "has no valid pixel"  # the engine's refusal of an input without data (run_input.no_valid_pixel)


@dataclass
class TileJob:
    name: str
    task: str  # "lulc" or "water"
    mosaic: str  # the VRT of all input tiles
    window: Window  # the tile's own pixels in the mosaic
    read: Window  # the window with margins: what the engine runs on
    model_path: str
    options: RunOptions
    outputs: dict[str, str]  # role -> final COG path


@dataclass
class TileResult:
    name: str
    checksums: dict[str, str] = field(default_factory=dict)  # role -> sha256 of the finished COG
    error: str = ""  # why the tile failed (empty: it did not)
    cancelled: bool = False
    empty: bool = False  # no valid input pixel: nothing to map, no file written
    margins: bool = True  # read with its neighbours' pixels (False: they could not be read)
    seconds: float = 0.0
    valid_pixels: int = 0
    log: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.error and not self.cancelled


@gdal_exceptions()
def run_tile(job: TileJob, progress: Callable[[float], None] | None = None,
             is_cancelled: Callable[[], bool] | None = None) -> TileResult:
    """Run one tile; never raises: a failure is returned with its message, so the other tiles go on."""
    started = time.perf_counter()
    result = TileResult(job.name)
    try:
        try:
            result.valid_pixels = _classify(job, job.read, progress, is_cancelled, result)
        except (RuntimeError, InputRasterError) as error:  # some pixels unreadable: retry with the tile's own only
            if job.read == job.window or NO_VALID_PIXEL in str(error):
                raise
            result.log.clear()
            result.warnings.clear()
            result.valid_pixels = _classify(job, job.window, progress, is_cancelled, result)
            result.margins = False
            result.warnings.append(f"its neighbours' pixels could not be read ({error}); it was classified without "
                                   f"them, so its edges may not match theirs. It is redone once they can be read.")
        result.checksums = {role: file_checksum(path) for role, path in job.outputs.items()}
    except CancelledError as error:
        result.cancelled, result.error = True, str(error)
    except InferenceError as error:
        if NO_VALID_PIXEL in str(error):
            result.empty = True
        else:
            result.error = str(error)
    except RuntimeError as error:
        result.error = f"Its pixels cannot be read ({error}). The file may be damaged: copy or download it again."
    except Exception as error:  # noqa: BLE001 -- reported with the tile, so that the other tiles go on
        result.error = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - started
    return result


def _classify(job: TileJob, read: Window, progress, is_cancelled, result: TileResult) -> int:
    """The engine over ``read`` (a window of the mosaic) into a scratch folder, then the tile's own
    pixels into its COGs; returns the valid pixels of the window."""
    scratch = hidden_path(job.outputs[CLASSES], "scratch")
    scratch.mkdir()
    try:
        window_path = scratch / "input.vrt"
        gdal.Translate(str(window_path), job.mosaic, format="VRT",
                       srcWin=[read.x, read.y, read.width, read.height])
        paths = {role: scratch / f"{role}.tif" for role in job.outputs}
        run = segment if job.task == "lulc" else detect_water
        report = run(str(window_path), paths[CLASSES], job.model_path, paths.get(SCORES), job.options,
                     progress=progress, is_cancelled=is_cancelled, log=result.log.append,
                     warn=result.warnings.append)
        own = [job.window.x - read.x, job.window.y - read.y, job.window.width, job.window.height]
        with PendingFiles() as pending:
            for role, final in job.outputs.items():
                resampling = "NEAREST" if role == CLASSES else "AVERAGE"
                gdal.Translate(str(pending.new(final)), str(paths[role]), format="COG", srcWin=own,
                               creationOptions=COG_OPTIONS + [f"RESAMPLING={resampling}"]
                               + ([] if role == CLASSES else ["PREDICTOR=YES"]))
        return report.valid_pixels
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def file_checksum(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

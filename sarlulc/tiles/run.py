"""Map many tiles in one run: check them, read each with margins from its neighbours, run them here or
on Dask workers, keep a manifest so that a re-run only does what is left, then mosaic the results.

Seam-free: each tile is run on a window of the mosaic of all inputs (a VRT) that reaches at least one
model tile (plus the speckle filter's context) past its edges, its left and top edges on the model's
tile stride counted from the mosaic's corner. The model tiles that cover the tile's own pixels are then
exactly those one run over the whole mosaic places there, blended alike, so a tile border is blended
like any other overlap. Only the tile's own pixels are kept.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import Callable

from osgeo import gdal

from ..inference.engine import RunOptions, check_options, format_duration
from ..errors import CancelledError, ModelContractError, OptionError, OutputError, gdal_exceptions
from ..inference.contract import TASKS, ModelContract, bundled_model_path
from ..rasters.resample import decide_model_grid
from ..sar.units import InputUnits
from ..sar.speckle import filter_halo
from ..rasters.windows import Window
from ..rasters.output_checks import style_sidecar_path
from ..rasters.transaction import PendingFiles, remove_stale_files
from .inputs import TileSet, TilesError, check_tiles, find_tiles
from .job import CLASSES, SCORES, TileJob, TileResult, file_checksum, run_tile
from .manifest import Manifest, input_fingerprint, result_options

INPUTS_VRT = "inputs.vrt"  # the mosaic of all input tiles the tiles are read from
TILES_FOLDER = "tiles"  # the per-tile COGs
# Mosaic names (without suffix) and per-tile file suffixes, per task and output role.
MOSAIC_NAMES = {"lulc": {CLASSES: "land_cover", SCORES: "land_cover_confidence"},
                "water": {CLASSES: "water", SCORES: "water_probability"}}
TILE_SUFFIXES = {"lulc": {CLASSES: "", SCORES: "_confidence"}, "water": {CLASSES: "", SCORES: "_probability"}}
# Shares of the progress bar: planning before, mosaic after the tiles.
PLAN_SHARE, MOSAIC_SHARE, COG_SHARE = 2.0, 1.0, 10.0


@dataclass
class TilesReport:
    output_folder: str
    mosaic: str | None  # VRT of the finished tiles' classes (None: no tile finished)
    scores_mosaic: str | None
    mosaic_cog: str | None
    manifest: str
    tiles: int  # tiles given (readable or not)
    run: list[str] = field(default_factory=list)  # names of the tiles run now
    skipped: list[str] = field(default_factory=list)  # finished before, record still holds
    empty: list[str] = field(default_factory=list)  # no valid pixel: nothing to map
    failed: dict[str, str] = field(default_factory=dict)  # name or file -> message
    tile_seconds: list[float] = field(default_factory=list)  # of each tile run now
    plan_seconds: float = 0.0  # finding, checking, the inputs' VRT, the manifest
    mosaic_seconds: float = 0.0  # the output VRTs, styles and COG
    seconds: float = 0.0
    workers: int = 1

    def summary(self) -> str:
        lines = [f"Tiles: {len(self.run)} run, {len(self.skipped)} skipped (finished before), "
                 f"{len(self.failed)} failed, {len(self.empty)} without valid pixels, of {self.tiles}; "
                 f"{format_duration(self.seconds)} in all ({format_duration(self.plan_seconds)} planning, "
                 f"{format_duration(self.mosaic_seconds)} mosaic) on {self.workers} worker(s)"]
        if self.mosaic:
            lines.append(f"Mosaic: {self.mosaic}" + (f", {self.mosaic_cog}" if self.mosaic_cog else ""))
        if self.failed:
            lines.append(f"Failed ({len(self.failed)}):")
            lines += [f"  {name}: {message}" for name, message in self.failed.items()]
            lines.append("Fix what the messages say, then run the same command with the same output folder again: "
                         "finished tiles are skipped, only the failed ones (and their neighbours where a damaged file "
                         "kept them from reading it) are run.")
        return "\n".join(lines)


@gdal_exceptions()
def map_tiles(source, output_folder, task: str = "lulc", model_path=None, options: RunOptions | None = None,
              scores: bool = False, mosaic_cog: bool = False, workers: int = 1, scheduler: str | None = None,
              progress: Callable[[float], None] | None = None, is_cancelled: Callable[[], bool] | None = None,
              log: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None,
              style=None) -> TilesReport:
    """Map every tile of ``source`` (a folder, a VRT, a list file, or a list of files) into
    ``output_folder``: tiles/NAME.tif (COGs), a VRT mosaic of them (+ its .qml with ``style``, the
    engine's StyleWriter), manifest.json, and with ``mosaic_cog`` one COG of the whole mosaic.
    ``workers`` > 1 or a ``scheduler`` address runs the tiles on Dask; else here, one after another.
    Raises an InferenceError before any work for bad inputs or options; a tile that fails is reported
    in the returned report and the others go on; cancelling keeps the finished tiles."""
    started = time.perf_counter()
    options = options or RunOptions()
    log = log or (lambda message: None)
    warn = warn or (lambda message: log(f"Warning: {message}"))
    progress = progress or (lambda percent: None)
    is_cancelled = is_cancelled or (lambda: False)

    # Everything is checked before any work.
    if task not in TASKS:
        raise OptionError(f"Unknown task '{task}'. Choose one of: {', '.join(TASKS)}.")
    check_options(options)
    if workers < 1:
        raise OptionError(f"Worker count {workers} is invalid: use 1 or more.")
    model_path = pathlib.Path(model_path) if model_path else bundled_model_path(task)
    if not model_path.is_file():
        raise ModelContractError(f"The model '{model_path}' does not exist. Choose a model file, or leave it empty "
                                 f"for the bundled one.")
    contract = ModelContract.from_onnx(model_path, expected_task=task)
    tileset = check_tiles(find_tiles(source), options.band, options.input_units)
    folder = _output_folder(output_folder)
    log(f"Input: {len(tileset.tiles) + len(tileset.unreadable)} tile(s), a mosaic of {tileset.width} x "
        f"{tileset.height} px; units {tileset.units.value}")
    if tileset.units is not InputUnits.AUTO:
        options = dataclasses.replace(options, input_units=tileset.units)  # one decision for all tiles
    mosaic_path = str(folder / INPUTS_VRT)
    _write_inputs_vrt(mosaic_path, [tile.path for tile in tileset.tiles])
    _note_resampling(mosaic_path, contract, log)
    if workers > 1 and not scheduler and options.threads is None:  # local workers share the cores
        options = dataclasses.replace(options, threads=max(1, (os.cpu_count() or 1) // workers))
    progress(PLAN_SHARE / 2)

    tiles_folder = folder / TILES_FOLDER
    tiles_folder.mkdir(exist_ok=True)
    remove_stale_files(tiles_folder)
    manifest = Manifest(folder)
    if manifest.unreadable:
        warn(f"The manifest '{manifest.path}' was not used: {manifest.unreadable}. Every tile is run again.")
    model_key = {"task": task, "model": str(model_path), "model_sha256": file_checksum(model_path),
                 "options": result_options(options)}
    roles = [CLASSES] + ([SCORES] if scores else [])
    report = TilesReport(str(folder), None, None, None, str(manifest.path),
                         tiles=len(tileset.tiles) + len(tileset.unreadable), workers=workers)
    report.failed.update(tileset.unreadable)
    jobs, keys = [], {}
    stride = (options.tile_size or contract.tile_size) - (
        contract.tile_overlap if options.tile_overlap is None else options.tile_overlap)
    margin = (options.tile_size or contract.tile_size) + filter_halo(options.speckle_filter, options.filter_size)
    for tile in tileset.tiles:
        outputs = {role: tiles_folder / f"{tile.name}{TILE_SUFFIXES[task][role]}.tif" for role in roles}
        read = read_window(tile.window, margin, stride, tileset.width, tileset.height)
        keys[tile.name] = {**model_key, "window": dataclasses.astuple(tile.window),
                           "inputs": [input_fingerprint(neighbour.path) for neighbour in tileset.neighbours(read)]}
        if manifest.holds(tile.name, keys[tile.name], outputs):
            report.skipped.append(tile.name)
            continue
        manifest.forget(tile.name)
        jobs.append(TileJob(tile.name, task, mosaic_path, tile.window, read, str(model_path), options,
                            {role: str(path) for role, path in outputs.items()}))
    report.plan_seconds = time.perf_counter() - started
    if report.skipped:
        log(f"Resuming: {len(report.skipped)} tile(s) finished before are kept ({manifest.path}); "
            f"{len(jobs)} to run")
    progress(PLAN_SHARE)

    tracker = _Tracker(jobs, report, manifest, keys, roles, tiles_folder, task, progress, log, warn,
                       100.0 - PLAN_SHARE - (COG_SHARE if mosaic_cog else MOSAIC_SHARE))
    if jobs:
        if workers > 1 or scheduler:
            from .cluster import run_on_dask
            run_on_dask(jobs, tracker.finished, is_cancelled, workers, scheduler, log)
        else:
            for job in jobs:
                if is_cancelled():
                    break
                tracker.finished(run_tile(job, tracker.tile_progress, is_cancelled))
                if tracker.cancelled:
                    break
    if is_cancelled() or tracker.cancelled:
        done = len(report.run) + len(report.skipped)
        raise CancelledError(f"Cancelled by the user: {done} of {report.tiles} tile(s) are finished and kept in "
                             f"'{tiles_folder}' (recorded in {manifest.path.name}); run again with the same output "
                             f"folder to do the rest.")

    mosaic_started = time.perf_counter()
    _write_mosaics(report, manifest, tileset, task, roles, folder, contract, style, mosaic_cog,
                   lambda percent: progress(100.0 - COG_SHARE + COG_SHARE * percent / 100.0), is_cancelled, warn)
    report.mosaic_seconds = time.perf_counter() - mosaic_started
    report.seconds = time.perf_counter() - started
    progress(100.0)
    return report


def read_window(window: Window, margin: int, stride: int, width: int, height: int) -> Window:
    """``window`` grown by ``margin`` on each side, its left and top edges moved out to the tile stride
    (so the engine's tiles fall where one run over the whole mosaic puts them), clipped to the mosaic."""
    x0 = max(0, (window.x - margin) // stride * stride)
    y0 = max(0, (window.y - margin) // stride * stride)
    x1, y1 = min(width, window.x_end + margin), min(height, window.y_end + margin)
    return Window(x0, y0, x1 - x0, y1 - y0)


class _Tracker:
    """Takes each finished tile: records it, reports progress with the time left, and logs it."""

    def __init__(self, jobs, report: TilesReport, manifest: Manifest, keys, roles, tiles_folder, task, progress, log,
                 warn, share: float):
        self.jobs = {job.name: job for job in jobs}
        self.report, self.manifest, self.keys = report, manifest, keys
        self.progress, self.log, self.warn, self.share = progress, log, warn, share
        self.outputs = {job.name: {role: pathlib.Path(path) for role, path in job.outputs.items()} for job in jobs}
        self.started = time.perf_counter()
        self.done = 0
        self.cancelled = False
        self.warned: set[str] = set()
        self.shown_engine_log = False

    def tile_progress(self, percent: float) -> None:
        """Progress of the tile running here (one worker): a share of it."""
        self.progress(PLAN_SHARE + self.share * (self.done + percent / 100.0) / len(self.jobs))

    def finished(self, result: TileResult) -> None:
        if result.cancelled:
            self.cancelled = True
            return
        self.done += 1
        if not self.shown_engine_log and result.log:  # the engine's account of one tile: model, units, tiling
            self.log(f"Tile {result.name} (each tile's engine log is like this one):")
            for line in result.log:
                self.log(f"  {line}")
            self.shown_engine_log = True
        for warning in result.warnings:
            if warning not in self.warned:
                self.warned.add(warning)
                self.warn(f"tile {result.name}: {warning} (said once for all tiles)")
        left = (time.perf_counter() - self.started) / self.done * (len(self.jobs) - self.done)
        if result.error:
            self.report.failed[result.name] = result.error
            self.warn(f"tile {result.name} failed: {result.error}")
        else:
            self.manifest.record(result.name, self.keys[result.name], result, self.outputs[result.name])
            (self.report.empty if result.empty else self.report.run).append(result.name)
            self.report.tile_seconds.append(result.seconds)
        self.log(f"Tile {result.name}: " + ("failed" if result.error else "no valid pixel" if result.empty else
                                            f"{result.seconds:.1f} s") +
                 f"; {self.done} of {len(self.jobs)} done" + (f", about {format_duration(left)} left" if left else ""))
        self.progress(PLAN_SHARE + self.share * self.done / len(self.jobs))


def _output_folder(path) -> pathlib.Path:
    folder = pathlib.Path(os.fspath(path))
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"The output folder '{folder}' is a file. Choose a folder (it is made if missing).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"The output folder '{folder}' cannot be made ({error.strerror or error}). Choose a folder "
                          f"you can write to.") from error
    if not os.access(folder, os.W_OK):
        raise OutputError(f"The output folder '{folder}' is read-only. Choose a folder you can write to.")
    return folder.resolve()


def _write_inputs_vrt(path: str, files: list[str]) -> None:
    """A VRT of ``files`` (on one grid, checked), through the output transaction: put in place only whole."""
    with PendingFiles() as pending:
        partial = pending.new(path)
        left_out = _build_vrt(partial, files, path)
        if left_out:
            raise TilesError("These tiles could not be read into the mosaic of the inputs: "
                             + "; ".join(f"{name} ({reason})" for name, reason in left_out.items())
                             + ". Check that they are readable (copy or download them again), then run again.")
        partial.write_text(partial.read_text().replace(partial.name, pathlib.Path(path).name))


def _note_resampling(mosaic_path: str, contract: ModelContract, log) -> None:
    """Say when the tiles are read resampled (degrees, another pixel size): each tile's window then gets its
    own model grid, so along tile borders the classes may differ slightly from one run over the mosaic."""
    dataset = gdal.Open(mosaic_path)
    if decide_model_grid(dataset, contract.gsd_m) is not None:
        log(f"The tiles are read resampled to the model's {contract.gsd_m:g} m grid, tile by tile (with margins): "
            f"along tile borders a few pixels may differ from one run over the whole mosaic")


def _write_mosaics(report: TilesReport, manifest: Manifest, tileset: TileSet, task, roles, folder: pathlib.Path,
                   contract, style, mosaic_cog: bool, progress, is_cancelled, warn) -> None:
    """The VRT of each output over every finished tile (and its style), and the mosaic COG when asked
    and every tile finished; together, under hidden names until complete."""
    finished = [tile.name for tile in tileset.tiles if tile.name in manifest.tiles
                and not manifest.tiles[tile.name].get("empty")]
    if not finished:
        return
    with PendingFiles() as pending:
        mosaics = {role: (final, pending.new(final)) for role in roles
                   for final in [folder / f"{MOSAIC_NAMES[task][role]}.vrt"]}
        finished = _build_output_vrts(mosaics, finished, report, manifest, folder, warn)
        for role, (final, written_path) in mosaics.items():
            _copy_legend(str(folder / manifest.tiles[finished[0]]["outputs"][role]["file"]), written_path)
            if style is not None:
                style(written_path, pending.new(style_sidecar_path(final)), final, contract, role == CLASSES)
            setattr(report, "mosaic" if role == CLASSES else "scores_mosaic", str(final))
            if mosaic_cog and role == CLASSES:
                if report.failed:
                    warn(f"No mosaic COG: {len(report.failed)} tile(s) failed; it is written once every tile is "
                         f"finished (run again after fixing them).")
                    continue
                cog = folder / f"{MOSAIC_NAMES[task][role]}.tif"
                gdal.Translate(str(pending.new(cog)), str(written_path), format="COG",
                               creationOptions=["COMPRESS=DEFLATE", "BLOCKSIZE=512", "BIGTIFF=IF_SAFER",
                                                "RESAMPLING=NEAREST"],
                               callback=lambda complete, *_: 0 if is_cancelled() else (progress(100 * complete) or 1))
                if is_cancelled():
                    raise CancelledError("Cancelled by the user while writing the mosaic COG; every tile is finished "
                                         "and kept: run again to write it.")
                report.mosaic_cog = str(cog)


def _build_output_vrts(mosaics: dict[str, tuple[pathlib.Path, pathlib.Path]], finished: list[str],
                       report: TilesReport, manifest: Manifest, folder: pathlib.Path, warn) -> list[str]:
    """The VRT of each role (``mosaics``: role -> (final path, hidden path written)) over the ``finished``
    tiles; returns the tiles they hold. A tile whose file GDAL cannot read into the mosaic (gone, damaged)
    is reported failed and forgotten, so the next run redoes it, and the mosaic is built without it (a hole
    the summary names, never a silent one)."""
    while True:
        left_out: dict[str, str] = {}
        for role, (final, written) in mosaics.items():
            files = {str(folder / manifest.tiles[name]["outputs"][role]["file"]): name for name in finished}
            skipped = _build_vrt(written, list(files), final)
            for file, reason in skipped.items():
                left_out.setdefault(files[file], f"its result '{file}' could not be read into the mosaic ({reason})")
        if not left_out:
            return finished
        for name, message in left_out.items():
            report.failed[name] = message + "; it is run again next time."
            warn(f"tile {name} failed: {report.failed[name]}")
            manifest.forget(name)
            for done in (report.run, report.skipped):
                if name in done:
                    done.remove(name)
        finished = [name for name in finished if name not in left_out]
        if not finished:
            raise OutputError(f"No tile's result could be read into the mosaic ({'; '.join(left_out.values())}). "
                              f"Run again with the same output folder to redo them.")


def _build_vrt(path, files: list[str], shown) -> dict[str, str]:
    """Write ``gdal.BuildVRT(path, files)``; returns the files GDAL left out, each with its reason: GDAL skips
    a file it cannot open, or that does not match the others, with no more than a warning (``shown``: the
    name the user knows, for errors)."""
    messages: list[str] = []
    gdal.PushErrorHandler(lambda kind, number, message: messages.append(message))
    try:
        dataset = gdal.BuildVRT(str(path), files)
    finally:
        gdal.PopErrorHandler()
    if dataset is None:
        raise OutputError(f"Could not write the mosaic '{shown}' (GDAL: {'; '.join(messages) or 'no reason given'}).")
    included = {os.path.realpath(name) for name in dataset.GetFileList() or []}
    dataset = None  # closing writes it
    unexplained = "; ".join(messages) or "no reason given"
    return {name: next((message for message in messages if name in message), unexplained)
            for name in files if os.path.realpath(name) not in included}


def _copy_legend(tile_path: str, mosaic_path: pathlib.Path) -> None:
    """What BuildVRT leaves out: the class names, the band description and the model's provenance."""
    mosaic = gdal.Open(str(mosaic_path), gdal.GA_Update)
    tile = gdal.Open(tile_path)
    metadata = tile.GetMetadata()  # first: it loads the .aux.xml, where a GeoTIFF keeps its class names
    band, mosaic_band = tile.GetRasterBand(1), mosaic.GetRasterBand(1)
    if band.GetCategoryNames():
        mosaic_band.SetCategoryNames(band.GetCategoryNames())
    mosaic_band.SetDescription(band.GetDescription())
    mosaic.SetMetadata(metadata)

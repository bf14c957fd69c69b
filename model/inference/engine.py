"""The inference engine: validate everything, then stream the raster block by block through the model.

Parts: TilePlan (which tiles, which blocks), BackscatterReader + prepare_input (model input in dB,
speckle filtered on request), ModelSession (ONNX Runtime), BlockAccumulator (blending),
OutputRaster (GeoTIFF writing). Inputs at another pixel size than the model's, in degrees or
rotated are read through a warped view on the model's grid and the results warped back.
Memory is bounded by the block size, whatever the raster size.

Before a model runs, check_input_distribution warns when the input is unlike its training data.
Water detection may instead threshold the same dB input (METHOD threshold, threshold.py): one
threshold found for the whole raster, then applied block by block.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import shutil
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from osgeo import gdal, osr

from .blending import BlockAccumulator, blend_weights, to_probabilities
from .distribution import MARGIN_DB, check_input_distribution
from .coverage import DataCoverage, ModelGridCoverage
from .area import AreaOfInterest, input_view
from .errors import CancelledError, InputRasterError, ModelContractError, OptionError, gdal_exceptions
from .memory import (CPU_RUN_BUDGET, MEMORY_SHARE, available_memory_bytes, bounded_gdal_cache, gpu_batch_size,
                     gpu_free_memory_bytes, run_memory_bytes)
from .metadata import NORM_SCENE_LAND, SCENE_NORM_MODES, TILE_MULTIPLE, ModelContract, bundled_model_path
from .reader import BackscatterReader, BandReader, SceneStatistics, open_raster, prepare_input, reading
from .resample import ModelGrid, check_pixel_size, decide_model_grid, open_on_model_grid, resampling_to_model
from .sar_input import (ALOS2_CALIBRATION_FACTOR_DB, CLASSES_BAND, CONFIDENCE_BAND, PROBABILITY_BAND, WATER_BAND,
                        DB_RANGE, RELATIVE_LAND_DB, InputUnits, SpeckleFilter, check_calibration_factor, check_units_fit,
                        detect_band_units,
                        filter_halo, ground_pixel_size_m, sample_shape, sample_valid_values)
from .pipeline import BackgroundWriter, Prefetch
from .session import DEVICES, PRECISIONS, ModelSession
from .threshold import WaterCeiling, WaterThreshold, find_water_threshold, sample_tiles, water_ceiling
from .windows import TilePlan, Window
from .writer import (OutputRaster, PendingFiles, all_or_none, check_free_space, check_outputs, hidden_path,
                     raster_bytes, style_sidecar_path)

DEFAULT_BATCH_SIZE = 4
DEFAULT_BLOCK_SIZE = 512  # a multiple of the outputs' 256 px GeoTIFF blocks: whole blocks written
GPU_BLOCK_SIZE = 2048  # on a GPU: blocks of about a hundred tiles, so batches can be large
LULC_NODATA, WATER_NODATA, SCORE_NODATA = 0, 255, -1.0
OUTPUT_GRIDS = ("input", "model")  # where the results are written when the input is read resampled
WATER_METHODS = ("model", "threshold")  # how Water Detect decides: the water model, or a backscatter threshold
# style(raster_path, style_path, final_path, contract, main): writes the .qml of a finished output
# (``raster_path``, under its hidden name; ``final_path`` once committed) to ``style_path``.
StyleWriter = Callable[[pathlib.Path, pathlib.Path, pathlib.Path, ModelContract, bool], None]


@dataclass
class RunOptions:
    """User choices for one run; None means the model's default (batch size: 4)."""

    band: int = 1
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    tile_size: int | None = None
    tile_overlap: int | None = None
    batch_size: int | None = None
    water_threshold: float | None = None
    block_size: int | None = None  # output block edge in pixels, bounds memory (None: 512, 2048 on a GPU)
    input_units: InputUnits | str = InputUnits.AUTO  # "auto" | "ALOS-2 DN" | "linear power" | "dB"
    calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB  # dB, for ALOS-2 DN
    speckle_filter: SpeckleFilter | str = SpeckleFilter.NONE  # "none" | "Lee" | "refined Lee"
    filter_size: int = 7  # speckle filter window edge in pixels
    output_grid: str = "input"  # "input" | "model": grid of the results of a resampled input
    method: str = "model"  # water only: "model" | "threshold" (automatic split-based threshold in dB)
    threads: int | None = None  # ONNX Runtime's threads on the CPU (None: one per physical core)
    precision: str = "auto"  # "auto" (fp16 on a GPU where it agrees with fp32) | "fp32" | "fp16"
    area: AreaOfInterest | None = None  # map only this extent / inside these polygons (None: the whole raster)


@dataclass
class RunReport:
    output_path: str
    extra_output_path: str | None
    contract: ModelContract
    providers: list[str]
    tiles: int  # tiles run: each once; those without a valid pixel are not run
    seconds: float
    valid_pixels: int
    method: str = "model"
    water_threshold_db: float | None = None  # METHOD threshold: pixels darker than this are water (None: none)
    tiles_planned: int = 0  # tiles of the plan (run or, without valid pixels, skipped)
    batch_size: int = 0  # tiles per model call (chosen from the memory budget unless set)
    precision: str = ""  # the model's arithmetic, "fp32" or "fp16" (empty: no model ran)


def segment(input_path, output_path, model_path=None, confidence_path=None, options=None,
            progress=None, is_cancelled=None, log=None, style: StyleWriter | None = None, warn=None) -> RunReport:
    """LULC class raster (uint8 codes, nodata 0) and optional confidence (max probability, nodata -1);
    with ``style``, each gets a .qml style file committed with it. ``log`` gets the information
    lines, ``warn`` the warnings (default: ``log`` with "Warning: ")."""
    with gdal_exceptions(), reading(input_path), bounded_gdal_cache():
        return _run("lulc", input_path, output_path, model_path, confidence_path, options or RunOptions(),
                    progress, is_cancelled, log, style, warn)


def detect_water(input_path, output_path, model_path=None, probability_path=None, options=None,
                 progress=None, is_cancelled=None, log=None, style: StyleWriter | None = None,
                 warn=None) -> RunReport:
    """Water mask (uint8 1 water / 0 not, nodata 255) and optional water probability (nodata -1);
    with ``style``, each gets a .qml style file committed with it.

    With ``options.method`` = "threshold" no model runs: the mask thresholds the backscatter at a
    level found automatically for the whole raster, and there is no probability. The model given
    (or the bundled one) then only sets the working grid (its pixel size) and the legend."""
    with gdal_exceptions(), reading(input_path), bounded_gdal_cache():
        return _run("water", input_path, output_path, model_path, probability_path, options or RunOptions(),
                    progress, is_cancelled, log, style, warn)


@dataclass
class _Settings:
    tile_size: int
    tile_overlap: int
    batch_size: int
    water_threshold: float | None
    scene: SceneStatistics | None = None  # of the whole raster, for scene-normalised models
    familiar_db: tuple[float, float] | None = None  # dB the model learnt; confidence elsewhere: chance level


@dataclass
class _OutputSpec:
    """What one output raster is: its file, type, nodata, band description, legend, the model that made
    it, and how it is warped back to the input grid (nearest for classes, bilinear for scores)."""

    path: pathlib.Path
    data_type: int
    nodata: float
    description: str
    legend: list[tuple[int, str, str]] | None
    resampling: str
    provenance: dict[str, str]

    def create(self, path, like: gdal.Dataset) -> OutputRaster:
        output = OutputRaster(path, like, self.data_type, self.nodata, self.description)
        self.describe(output)
        return output

    def describe(self, output: OutputRaster) -> None:
        """Legend and provenance (GDAL metadata items naming the model, read back by the field maps)."""
        if self.legend:
            output.set_legend(self.legend)
        output.dataset.SetMetadata(self.provenance)


def _run(task, input_path, output_path, model_path, extra_path, options: RunOptions,
         progress: Callable[[float], None] | None, is_cancelled: Callable[[], bool] | None,
         log: Callable[[str], None] | None, style: StyleWriter | None,
         warn: Callable[[str], None] | None = None) -> RunReport:
    started = time.perf_counter()
    log = log or (lambda message: None)
    warn = warn or (lambda message: log(f"Warning: {message}"))
    progress = _TimeLeftLog(progress or (lambda percent: None), log)
    is_cancelled = is_cancelled or (lambda: False)
    check_options(options)
    speckle_filter = SpeckleFilter(options.speckle_filter)
    thresholding = _thresholding(task, options, extra_path)

    # Everything is checked before any output file exists. With an area of interest the run reads
    # (and its outputs cover) only the area's window of the input; an alpha band masks it.
    with input_view(open_raster(input_path), options.area, options.band, str(input_path)) as (dataset, note):
        if note:
            log(note)
        return _run_on(task, dataset, input_path, output_path, model_path, extra_path, options, speckle_filter,
                       thresholding, started, progress, is_cancelled, log, style, warn)


def _run_on(task, dataset: gdal.Dataset, input_path, output_path, model_path, extra_path, options: RunOptions,
            speckle_filter: SpeckleFilter, thresholding: bool, started: float, progress, is_cancelled, log,
            style: StyleWriter | None, warn) -> RunReport:
    """The run over ``dataset``: the input raster, or the window of it an area of interest covers."""
    band_reader = BandReader(dataset, options.band, str(input_path))
    units = _input_units(options, dataset, str(input_path), log, warn)
    model_path = _resolve_model_path(task, model_path)
    extra_label = "confidence" if task == "lulc" else "probability"
    outputs = check_outputs({"output": output_path, **({extra_label: extra_path} if extra_path else {})},
                            {"input raster": input_path, "model": model_path},
                            {"output": gdal.GDT_Byte, extra_label: gdal.GDT_Float32}, styled=style is not None)
    output_path, extra_path = outputs["output"], outputs.get(extra_label)
    if thresholding:
        session = None
        contract = ModelContract.from_onnx(model_path, expected_task=task)
        log(f"Method: automatic backscatter threshold, no model; the model '{contract.model_name}' only sets the "
            f"{contract.gsd_m:g} m working grid and the legend")
    else:
        session = ModelSession(model_path, options.device, options.threads, options.precision)
        contract = ModelContract.from_metadata(session.metadata, str(model_path), expected_task=task)
        settings = _settings(options, contract, session.fixed_tile_size, log, units.calibrated)
        log(f"Model: {contract.model_name}" + (f" (trained on {contract.trained_on})" if contract.trained_on else ""))
        log(f"Execution provider: {session.providers[0]}")
        log(f"ONNX Runtime threads: {session.threads}" + (
            " (one per physical core)" if options.threads is None else
            " (as set)" if session.threads == options.threads else
            f" (THREADS {options.threads} capped at the {session.threads} CPUs this process may use)"))
        if session.precision_note:
            log(session.precision_note)
    log(_band_line(dataset, options.band))
    input_reader = BackscatterReader(band_reader, units, options.calibration_factor)
    check_pixel_size(dataset, contract.gsd_m, str(input_path))
    grid = decide_model_grid(dataset, contract.gsd_m)
    source = _model_input_reader(band_reader, grid, units, speckle_filter, options, contract.gsd_m, log)
    if not units.calibrated:
        _anchor_relative(input_reader, source, log)
    if not thresholding:
        distribution = check_input_distribution(input_reader.sample_db(), contract, calibrated=units.calibrated)
        log(distribution.summary)
        for warning in distribution.warnings:
            warn(warning)
    if speckle_filter is not SpeckleFilter.NONE:
        log(f"Speckle filter: {speckle_filter.value}, {options.filter_size} x {options.filter_size} px"
            + (" (on the model grid)" if grid is not None else ""))
    if options.block_size is None:
        options = dataclasses.replace(options, block_size=_default_block_size(
            session, None if thresholding else settings, len(contract.classes) if task == "lulc" else 1,
            source.band_reader.width, log))
    warp_back = grid is not None and options.output_grid == "input"
    # The last 5 % are closing the outputs, when GDAL compresses the blocks it still caches.
    stream_share = 85.0 if warp_back else 95.0
    # Before any output exists: where the input holds data (the first 2 % of the progress bar).
    input_coverage = _data_coverage(input_reader, input_path, options.band,
                                    lambda percent: progress(percent * stream_share / 5000.0), is_cancelled)
    coverage = input_coverage if grid is None else \
        ModelGridCoverage(input_coverage, dataset, source.band_reader.dataset)
    if thresholding:
        # Found before any output file exists; up to the first tenth of the progress bar.
        water_threshold = _find_threshold(source, lambda percent: progress((2.0 + 0.08 * percent) * stream_share
                                                                           / 100.0), is_cancelled, log, warn,
                                          water_ceiling(dataset, options.band) if units.calibrated else None)
        all_blocks = _blocks(source.band_reader.width, source.band_reader.height, options.block_size)
        blocks = [block for block in all_blocks if coverage.has_data(block)]
    else:
        if contract.norm_mode in SCENE_NORM_MODES:
            settings.scene = _scene_statistics(source, input_path, options.band)
            level = "land median" if contract.norm_mode == NORM_SCENE_LAND else "median"
            log(f"Scene normalisation: {level} {settings.scene.level(contract.norm_mode):.2f} dB removed (from "
                f"{settings.scene.pixels} pixels sampled over the whole raster; scene median "
                f"{settings.scene.median:.2f} dB); the map does not depend on the absolute calibration")
        if task == "lulc" and extra_path:
            settings.familiar_db = _familiar_range(contract, log)
        plan = TilePlan(source.band_reader.width, source.band_reader.height, settings.tile_size,
                        settings.tile_overlap, options.block_size)
        settings.batch_size = _fit_in_memory(settings, len(contract.classes) if task == "lulc" else 1, plan,
                                             options, session.on_gpu, session.fixed_tile_size, log)
        all_blocks = [block for row in plan.block_rows() for block in row]
        blocks = [block for block in all_blocks if coverage.has_data(plan.read_window(block))]
        log(f"Tiles: {plan.tile_count} of {settings.tile_size} px with {settings.tile_overlap} px overlap, "
            f"batches of {settings.batch_size}, {len(all_blocks)} block(s) of up to {plan.block_size} px")
    if len(blocks) < len(all_blocks):
        log(f"Data coverage: {len(all_blocks) - len(blocks)} of {len(all_blocks)} block(s) hold no valid pixel and "
            f"are skipped (data in {input_coverage.share:.0%} of the input)")

    specs = _output_specs(task, contract, output_path, extra_path)
    check_free_space(_space_needed(specs, dataset, source.band_reader.dataset, warp_back))
    add_styles = _style_files(style, specs, contract)
    # Results on the model grid that still have to be warped back live in a hidden folder beside
    # the output, removed whatever happens (or by the next run, if this one is killed).
    scratch = hidden_path(output_path, "scratch") if warp_back else None
    try:
        if warp_back:
            scratch.mkdir()
        stream_paths = [scratch / f"{index}.tif" for index in range(len(specs))] if warp_back else \
            [spec.path for spec in specs]
        outputs = _create_outputs(specs, stream_paths, source.band_reader.dataset)
        with all_or_none(outputs, None if warp_back else add_styles):
            if thresholding:
                tiles_run = 0
                valid_pixels = _stream_threshold(
                    blocks, source, water_threshold.db, outputs[0],
                    lambda percent: progress((10.0 + 0.9 * percent) * stream_share / 100.0), is_cancelled)
            else:
                tiles_run, valid_pixels = _stream(
                    task, plan, blocks, source, session, contract, settings, outputs,
                    lambda percent: progress((2.0 + 0.98 * percent) * stream_share / 100.0), is_cancelled, log)
            if valid_pixels == 0:
                raise _no_valid_pixel(options.band, input_path, band_reader.nodata)
        if warp_back:
            valid_pixels = _warp_back(specs, outputs, dataset, input_reader, input_coverage, contract.gsd_m,
                                      options.block_size,
                                      lambda percent: progress(stream_share + percent / 10.0), is_cancelled,
                                      add_styles)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    progress(100.0)
    seconds = time.perf_counter() - started
    log(f"Done: {'thresholded' if thresholding else f'{tiles_run} tiles'} in {seconds:.1f} s, "
        f"{valid_pixels} valid pixels")
    return RunReport(output_path=str(output_path), extra_output_path=str(extra_path) if extra_path else None,
                     contract=contract, providers=list(session.providers) if session else [], tiles=tiles_run,
                     tiles_planned=0 if thresholding else plan.tile_count,
                     batch_size=0 if thresholding else settings.batch_size,
                     precision=session.precision if session else "",
                     seconds=seconds, valid_pixels=valid_pixels, method="threshold" if thresholding else "model",
                     water_threshold_db=water_threshold.db if thresholding else None)


def _thresholding(task, options: RunOptions, extra_path) -> bool:
    """Whether this run thresholds instead of running a model; refuses what the threshold cannot give
    (`check_options` refuses a probability threshold with it)."""
    if options.method != "threshold":
        return False
    if task != "water":
        raise OptionError("The threshold method detects water only; land-cover classes need METHOD=model.")
    if extra_path:
        raise OptionError("METHOD=threshold gives no water probability, only the mask: leave the water "
                          "probability output empty, or use METHOD=model.")
    return True


def _find_threshold(source: BackscatterReader, progress, is_cancelled, log, warn,
                    ceiling: WaterCeiling | None) -> WaterThreshold:
    """The water threshold of the whole raster, from tiles sampled over the model's input (logged);
    ``ceiling``: the absolute water level of a calibrated input (None: relative brightness)."""
    tiles = sample_tiles(source.read, source.band_reader.width, source.band_reader.height, progress, is_cancelled)
    threshold = find_water_threshold(tiles, ceiling)
    if threshold.db is None:
        log(f"Water threshold: none ({threshold.how})")
    else:
        log(f"Water threshold: {threshold.db:.2f} dB, pixels darker are water ({threshold.how})")
    if threshold.warning:
        warn(threshold.warning)
    return threshold


def _blocks(width: int, height: int, block_size: int) -> list[Window]:
    """The raster cut into blocks of up to ``block_size`` px, row by row."""
    return [Window(x, y, min(block_size, width - x), min(block_size, height - y))
            for y in range(0, height, block_size) for x in range(0, width, block_size)]


def _data_coverage(input_reader: BackscatterReader, input_path, band: int, progress, is_cancelled) -> DataCoverage:
    """Where the input holds valid data; refuses an input without any valid pixel (the decimated
    start-up sample cannot see everything)."""
    coverage = DataCoverage(input_reader, is_cancelled, progress)
    if not coverage.share:
        raise _no_valid_pixel(band, input_path, input_reader.band_reader.nodata)
    return coverage


def _no_valid_pixel(band: int, input_path, nodata) -> InputRasterError:
    """The refusal of a band without any valid pixel (found before the run, or only by it)."""
    return InputRasterError(f"Band {band} of '{input_path}' has no valid pixel: every pixel is nodata ({nodata}) or "
                            f"masked. Check the band, and the raster's nodata value.")


def _stream_threshold(blocks: list[Window], source: BackscatterReader, threshold_db: float | None,
                      output: OutputRaster, progress, is_cancelled) -> int:
    """Write the water mask of every block (darker than ``threshold_db``: water); returns the valid pixels."""
    valid_pixels = 0
    for done, block in enumerate(blocks, start=1):
        if is_cancelled():
            raise CancelledError()
        db, valid = source.read(block)
        water = db < threshold_db if threshold_db is not None else np.zeros(valid.shape, bool)
        output.write(np.where(valid, water, WATER_NODATA).astype(np.uint8), block)
        valid_pixels += int(valid.sum())
        progress(100.0 * done / len(blocks))
    return valid_pixels


def _familiar_range(contract: ModelContract, log) -> tuple[float, float] | None:
    """The dB range the model learnt (its training pixels' lowest and highest declared percentiles, widened by
    the input check's margin), for a model of absolute levels that declares it; None otherwise."""
    distribution = contract.input_distribution
    if contract.norm_mode in SCENE_NORM_MODES or distribution is None or len(distribution.pixel_db_percentiles) < 2:
        return None
    (low_p, low), (high_p, high) = distribution.pixel_db_percentiles[0], distribution.pixel_db_percentiles[-1]
    familiar = (low - MARGIN_DB, high + MARGIN_DB)
    log(f"Confidence: pixels outside {familiar[0]:.1f}..{familiar[1]:.1f} dB (the model's training pixels' "
        f"{low_p:g}th..{high_p:g}th percentiles, +-{MARGIN_DB:g} dB) get at most the chance level "
        f"1/{len(contract.classes)}: the model has not seen such backscatter")
    return familiar


def _anchor_relative(input_reader: BackscatterReader, source: BackscatterReader, log) -> None:
    """Put a relative input (a display stretch) on the calibrated scale the model knows: its land
    level (`SceneStatistics.land_median`) is moved to RELATIVE_LAND_DB. A scene of one surface cannot
    be told from its opposite this way; the log says so."""
    scene = SceneStatistics.of(input_reader.sample_db())
    offset = scene.relative_anchor
    input_reader.offset_db = source.offset_db = offset
    log(f"Relative brightness: only contrasts count, the scene's land level ({scene.land_median:.1f} dB on the "
        f"nominal stretch) is moved to {RELATIVE_LAND_DB:g} dB ({offset:+.1f} dB). A scene of one surface (all "
        f"water, all forest) cannot be recognised without calibration: use the calibrated product for it")


def _scene_statistics(source: BackscatterReader, input_path, band: int) -> SceneStatistics:
    sample = source.sample_db()
    if sample.size == 0:
        raise InputRasterError(
            f"Band {band} of '{input_path}' has no valid pixel: every pixel is nodata or masked. Check the band, "
            f"and the raster's nodata value.")
    return SceneStatistics.of(sample)


def check_options(options: RunOptions) -> None:
    """Every check of the run options that needs neither the model nor the raster, with the
    messages users see (QGIS runs it when it checks the parameters, before a run); the model's
    defaults and limits are checked again once the model is loaded."""
    if options.device not in DEVICES:
        raise OptionError(f"Unknown device '{options.device}'. Choose one of: {', '.join(DEVICES)}.")
    if options.precision not in PRECISIONS:
        raise OptionError(f"Unknown precision '{options.precision}'. Choose one of: {', '.join(PRECISIONS)}.")
    try:
        speckle_filter = SpeckleFilter(options.speckle_filter)
    except ValueError:
        raise OptionError(f"Unknown speckle filter '{options.speckle_filter}'. Choose one of: "
                          f"{', '.join(f.value for f in SpeckleFilter)}.") from None
    filter_halo(speckle_filter, options.filter_size)  # refuses a window size the filter does not support
    if options.output_grid not in OUTPUT_GRIDS:
        raise OptionError(f"Unknown output grid '{options.output_grid}'. Choose one of: {', '.join(OUTPUT_GRIDS)}.")
    if options.method not in WATER_METHODS:
        raise OptionError(f"Unknown method '{options.method}'. Choose one of: {', '.join(WATER_METHODS)}.")
    if options.method == "threshold" and options.water_threshold is not None:
        raise OptionError(f"The water probability threshold ({options.water_threshold:g}) applies to the model; "
                          f"METHOD=threshold finds its own threshold in dB. Leave THRESHOLD empty.")
    try:
        InputUnits(options.input_units)
    except ValueError:
        raise OptionError(f"Unknown input units '{options.input_units}'. Choose one of: "
                          f"{', '.join(u.value for u in InputUnits)}.") from None
    check_calibration_factor(options.calibration_factor)
    if options.tile_size is not None:
        _check_tile_size(options.tile_size)
    if options.tile_overlap is not None:
        _check_overlap(options.tile_overlap, options.tile_size)
    if options.batch_size is not None:
        _check_batch_size(options.batch_size)
    if options.water_threshold is not None:
        _check_threshold(options.water_threshold)
    if options.threads is not None and options.threads < 1:
        raise OptionError(f"Thread count {options.threads} is invalid: use 1 or more, or leave it empty for one "
                          f"thread per physical core.")
    if options.block_size is not None and options.block_size < TILE_MULTIPLE:
        raise OptionError(f"Block size {options.block_size} is invalid: use at least {TILE_MULTIPLE} px.")


def _check_tile_size(tile: int, model_default: int | None = None) -> None:
    if tile < TILE_MULTIPLE or tile % TILE_MULTIPLE:
        default = f"; the model's default is {model_default}" if model_default else ""
        raise OptionError(f"Tile size {tile} is invalid: it must be a positive multiple of {TILE_MULTIPLE} "
                          f"(the model downsamples by {TILE_MULTIPLE}){default}.")


def _check_overlap(overlap: int, tile: int | None) -> None:
    if overlap < 0 or (tile is not None and 2 * overlap >= tile):
        if tile is None:
            raise OptionError(f"Overlap {overlap} is invalid: it must be at least 0 and less than half the "
                              f"tile size.")
        raise OptionError(f"Overlap {overlap} is invalid for {tile} px tiles: it must be at least 0 and less "
                          f"than half the tile size (below {(tile + 1) // 2}).")


def _check_batch_size(batch: int) -> None:
    if batch < 1:
        raise OptionError(f"Batch size {batch} is invalid: use 1 or more.")


def _check_threshold(threshold: float, model_default: float | None = None) -> None:
    if not 0.0 < threshold < 1.0:
        default = f" (the model's default is {model_default})" if model_default is not None else ""
        raise OptionError(f"Water threshold {threshold} is invalid: choose a probability between 0 and 1"
                          f"{default}.")


def _input_units(options: RunOptions, dataset: gdal.Dataset, source_name: str, log, warn) -> InputUnits:
    """The units of the input band: the user's choice, checked against the values, or detected
    from them (decision logged). Both from one decimated read of the whole raster, which also
    refuses a raster without valid data at once, however large."""
    units = InputUnits(options.input_units)
    sample = sample_valid_values(dataset, options.band)
    _check_sample_has_data(sample, units, dataset, options.band, source_name)
    if units is not InputUnits.AUTO:
        check_units_fit(units, sample)
        log(f"Input units: {units.value} (as set by INPUT_UNITS)" + _conversion_note(units, options))
    else:
        units, reason = detect_band_units(dataset, options.band, sample=sample)
        log(f"Input units: {units.value}, detected automatically from {reason}; if that is wrong, set INPUT_UNITS"
            + _conversion_note(units, options))
    if units is InputUnits.DB:
        _warn_non_physical(sample, warn)
    return units


def _warn_non_physical(sample: np.ndarray, warn) -> None:
    """Say how much of a dB band holds values no backscatter has (+-1e30, an undeclared -9999 fill): they
    are nodata (`valid_mask`), and a fill value should be declared."""
    outside = (sample < DB_RANGE[0]) | (sample > DB_RANGE[1])
    if outside.any():
        examples = ", ".join(f"{value:g}" for value in np.unique(sample[outside])[:3])
        warn(f"{outside.mean():.1%} of the pixels sampled over the raster hold values no backscatter in dB has "
             f"(outside {DB_RANGE[0]:g}..{DB_RANGE[1]:g} dB, e.g. {examples}): they are treated as nodata. If they "
             f"are a fill value, declare it as the band's nodata (gdal_edit.py -a_nodata VALUE, or the layer's "
             f"Transparency properties).")


def _check_sample_has_data(sample: np.ndarray, units: InputUnits, dataset: gdal.Dataset, band: int,
                           source_name: str) -> None:
    """Refuse a band whose decimated whole-raster sample holds no valid pixel (0 is DN and linear
    power fill, and cannot tell units apart; negative values are left to `check_units_fit`)."""
    usable = sample if units is InputUnits.DB else sample[sample != 0]
    if usable.size:
        return
    width, height = dataset.RasterXSize, dataset.RasterYSize
    columns, rows = sample_shape(width, height)
    nodata = dataset.GetRasterBand(band).GetNoDataValue()
    fill = f"nodata ({nodata:g})" if nodata is not None else "masked"
    fill += "" if units is InputUnits.DB else " or 0"
    if (columns, rows) == (width, height):
        where = f"every pixel is {fill}"
    else:
        where = (f"each of the {columns * rows} pixels read evenly over the whole raster (one every "
                 f"{width / columns:.0f} columns and {height / rows:.0f} rows) is {fill}")
    raise InputRasterError(
        f"Band {band} of '{source_name}' has no valid pixel: {where}. Check the band and the raster's nodata "
        f"value; if its data covers only a small part of a large raster, clip the raster to the data "
        f"(Raster ▸ Extraction ▸ Clip Raster by Extent) and run on that.")


def _conversion_note(units: InputUnits, options: RunOptions) -> str:
    if units is InputUnits.DN:
        return (f". Converted to sigma0 = 10*log10(DN^2) + ({options.calibration_factor:g}) dB; "
                f"DN 0 is nodata")
    if units is InputUnits.LINEAR:
        return ". Converted to dB = 10*log10(power); power <= 0 is nodata"
    return ""


def _band_line(dataset: gdal.Dataset, band: int) -> str:
    description = dataset.GetRasterBand(band).GetDescription()
    return f"Using band {band} of {dataset.RasterCount}" + (f" ({description})" if description else "")


def _model_input_reader(band_reader: BandReader, grid: ModelGrid | None, units: InputUnits,
                        speckle_filter: SpeckleFilter, options: RunOptions, gsd_m: float, log) -> BackscatterReader:
    """The reader of sigma0 dB the model runs on: the input band itself, or, when ``grid`` is set, a
    warped view of it on the model grid. The view holds linear power (nodata 0) whatever the input's
    units: pixels finer than the model's are averaged in power (multi-looking), coarser ones
    interpolated bilinearly."""
    if grid is None:
        return BackscatterReader(band_reader, units, options.calibration_factor, speckle_filter, options.filter_size)
    dataset = band_reader.dataset
    resampling = resampling_to_model(dataset, gsd_m)
    view = open_on_model_grid(dataset, options.band, gsd_m, units, resampling=resampling,
                              calibration_factor=options.calibration_factor, grid=grid)
    log(_resampling_line(dataset, grid, gsd_m, resampling, options.output_grid))
    return BackscatterReader(BandReader(view, 1, dataset.GetDescription()), InputUnits.LINEAR,
                             speckle_filter=speckle_filter, filter_size=options.filter_size)


def _crs_label(srs: osr.SpatialReference) -> str:
    code = srs.GetAuthorityCode(None)
    authority = srs.GetAuthorityName(None)
    return f"{authority}:{code} ({srs.GetName()})" if code and authority else srs.GetName()


def _resampling_line(dataset, grid: ModelGrid, gsd_m: float, resampling: str, output_grid: str) -> str:
    dx_m, dy_m = ground_pixel_size_m(dataset)
    gt = dataset.GetGeoTransform()
    rotated = " rotated," if gt[2] or gt[4] else ""
    size = f"{dx_m:.1f} m" if abs(dx_m - dy_m) < 0.05 else f"{dx_m:.1f} x {dy_m:.1f} m"
    where = ("result brought back to the input grid (nearest for classes, bilinear for probabilities)"
             if output_grid == "input" else "result kept on the model grid (OUTPUT_GRID)")
    return (f"Resampling: input {size}{rotated} in {_crs_label(dataset.GetSpatialRef())} → read on a "
            f"{gsd_m:g} m grid in {_crs_label(osr.SpatialReference(wkt=grid.srs_wkt))} ({grid.width} x "
            f"{grid.height} px, {resampling} of linear power); {where}")


def _resolve_model_path(task: str, model_path) -> pathlib.Path:
    if model_path:
        return pathlib.Path(model_path)
    bundled = bundled_model_path(task)
    if not bundled.is_file():
        raise ModelContractError(
            f"The bundled {task} model is missing ({bundled}). Reinstall the plugin, build it with "
            f"'make train-bundled', or choose a model file.")
    return bundled


def _settings(options: RunOptions, contract: ModelContract, fixed_tile_size: int | None, log,
              calibrated: bool = True) -> _Settings:
    """Merge options with the model's defaults and check them, with messages saying what to change.
    A relative input takes the model's threshold for relative inputs, where it declares one."""
    tile = options.tile_size or fixed_tile_size or contract.tile_size
    if fixed_tile_size and tile != fixed_tile_size:
        raise OptionError(f"This model only accepts tiles of {fixed_tile_size} px (fixed in its graph); "
                          f"set the tile size to {fixed_tile_size} or leave it empty.")
    _check_tile_size(tile, contract.tile_size)
    overlap = contract.tile_overlap if options.tile_overlap is None else options.tile_overlap
    if options.tile_overlap is None and 2 * overlap >= tile:
        # The model's default overlap, made for its default tile, cannot serve the smaller tiles of this run
        # (fixed in the graph, or chosen): a quarter of the tile, as the bundled models' 64 px of 256.
        log(f"Tile overlap {tile // 4} px: the model's default ({overlap} px) is too large for {tile} px tiles")
        overlap = tile // 4
    _check_overlap(overlap, tile)
    batch = DEFAULT_BATCH_SIZE if options.batch_size is None else options.batch_size
    _check_batch_size(batch)
    threshold = None
    if contract.task == "water":
        threshold = contract.water_threshold if options.water_threshold is None else options.water_threshold
        if options.water_threshold is None and not calibrated and contract.water_threshold_relative is not None:
            threshold = contract.water_threshold_relative
            log(f"Water probability threshold {threshold:g}: the model's default for relative brightness "
                f"({contract.water_threshold:g} for calibrated inputs)")
        _check_threshold(threshold, contract.water_threshold)
    return _Settings(tile, overlap, batch, threshold)


def _default_block_size(session: ModelSession | None, settings: _Settings | None, channels: int, width: int,
                        log) -> int:
    """DEFAULT_BLOCK_SIZE; on a GPU, GPU_BLOCK_SIZE (blocks that give large batches) where half the
    run's share of the memory available holds such blocks (the rest is left to the batch)."""
    if session is None or not session.on_gpu:
        return DEFAULT_BLOCK_SIZE
    available = available_memory_bytes()
    need = run_memory_bytes(settings.tile_size, 1, channels, settings.tile_overlap, GPU_BLOCK_SIZE, width,
                            model_on_host=False)
    if available is not None and need > MEMORY_SHARE * available / 2:
        log(f"Blocks of {DEFAULT_BLOCK_SIZE} px: blocks of {GPU_BLOCK_SIZE} px, which give the GPU larger batches, "
            f"would need {need / 2**30:.1f} GiB of the {available / 2**30:.1f} GiB of memory available")
        return DEFAULT_BLOCK_SIZE
    return GPU_BLOCK_SIZE


def _fit_in_memory(settings: _Settings, channels: int, plan: TilePlan, options: RunOptions, on_gpu: bool,
                   fixed_tile_size: int | None, log) -> int:
    """The batch size to run with on the raster of ``plan``: the one asked for when the run fits
    in the memory available; by default, on the CPU the largest up to DEFAULT_BATCH_SIZE that also
    keeps the run within CPU_RUN_BUDGET, on a GPU what its free memory holds (`gpu_batch_size`),
    either lowered (and logged) when the memory available is what limits it; or an OptionError
    naming the largest tile and batch sizes that fit."""
    tile, overlap, batch = settings.tile_size, settings.tile_overlap, settings.batch_size
    available = available_memory_bytes()
    budget = MEMORY_SHARE * available if available is not None else float("inf")
    width, carried_rows = plan.width, plan.carried_rows()

    def need(tile_size, batch_size):
        carried = carried_rows if tile_size == tile else None  # other tile sizes: the worst case
        return run_memory_bytes(tile_size, batch_size, channels, overlap, options.block_size, width, carried,
                                model_on_host=not on_gpu)

    if options.batch_size is None and on_gpu:
        free = gpu_free_memory_bytes()
        batch = gpu_batch_size(tile, free, plan.most_tiles_in_a_block())
        log(f"Batch size {batch} on the GPU (" + (f"{free / 2**30:.1f} GiB free" if free is not None
                                                  else "free GPU memory unknown") + ")")
    elif options.batch_size is None:
        batch = next((b for b in range(batch, 1, -1) if need(tile, b) <= CPU_RUN_BUDGET), 1)
    if need(tile, batch) <= budget:
        return batch
    largest_batch = next((b for b in range(batch - 1, 0, -1) if need(tile, b) <= budget), 0)
    if options.batch_size is None and largest_batch:
        log(f"Batch size lowered from {batch} to {largest_batch} tiles to fit in the memory available "
            f"({available / 2**30:.1f} GiB)")
        return largest_batch
    fitting_tiles = [t for t in range(max(TILE_MULTIPLE, 2 * overlap + TILE_MULTIPLE), tile, TILE_MULTIPLE)
                     if 2 * overlap < t and need(t, batch) <= budget]
    advice = []
    if largest_batch:
        advice.append(f"a batch size of at most {largest_batch}")
    if fitting_tiles and not fixed_tile_size:
        advice.append(f"a tile size of at most {fitting_tiles[-1]} px with {batch} tile(s) per batch")
    if not advice:
        advice.append("smaller tiles, a smaller overlap, or a machine with more memory")
    raise OptionError(
        f"Tiles of {tile} px in batches of {batch} need about {need(tile, batch) / 2**30:.1f} GiB of memory, more "
        f"than the {budget / 2**30:.1f} GiB this run may use ({MEMORY_SHARE:.0%} of the "
        f"{available / 2**30:.1f} GiB available) on a raster {width} px wide. Use {' or '.join(advice)}"
        + (", or clip the raster into narrower parts." if width > 20 * options.block_size else "."))


def _output_specs(task, contract: ModelContract, output_path, extra_path) -> list[_OutputSpec]:
    if task == "lulc":
        main = _OutputSpec(output_path, gdal.GDT_Byte, LULC_NODATA, CLASSES_BAND,
                           [(c.code, c.name, c.color) for c in contract.classes], "nearest", contract.provenance())
        extra_description = CONFIDENCE_BAND
    else:
        water = contract.classes[0]
        main = _OutputSpec(output_path, gdal.GDT_Byte, WATER_NODATA, WATER_BAND,
                           [(0, "Not water", "#f0f0f0"), (1, water.name, water.color)], "nearest",
                           contract.provenance())
        extra_description = PROBABILITY_BAND
    specs = [main]
    if extra_path:
        specs.append(_OutputSpec(extra_path, gdal.GDT_Float32, SCORE_NODATA, extra_description, None, "bilinear",
                                 contract.provenance()))
    return specs


def _space_needed(specs: list[_OutputSpec], dataset: gdal.Dataset, model_input: gdal.Dataset,
                  warp_back: bool) -> list[tuple[pathlib.Path, int]]:
    """(path, bytes) the outputs need while written: on the grid the model read (``model_input``), or
    on the input's grid plus the model-grid copies beside the main output when they are warped back."""
    model_pixels = model_input.RasterXSize * model_input.RasterYSize
    final_pixels = dataset.RasterXSize * dataset.RasterYSize if warp_back else model_pixels
    needs = [(spec.path, raster_bytes(spec.path, final_pixels, spec.data_type)) for spec in specs]
    if warp_back:
        needs += [(specs[0].path, raster_bytes("model-grid.tif", model_pixels, spec.data_type)) for spec in specs]
    return needs


def _style_files(style: StyleWriter | None, specs: list[_OutputSpec], contract: ModelContract):
    """The commit step that writes each output's .qml beside it (None without ``style``)."""
    if style is None:
        return None

    def add_styles(pending: PendingFiles, rasters: list[pathlib.Path]) -> None:
        for index, (spec, raster) in enumerate(zip(specs, rasters)):
            style(raster, pending.new(style_sidecar_path(spec.path)), spec.path, contract, index == 0)
    return add_styles


def _create_outputs(specs: list[_OutputSpec], paths, like: gdal.Dataset) -> list[OutputRaster]:
    outputs = []
    try:
        for spec, path in zip(specs, paths):
            outputs.append(spec.create(path, like))
    except BaseException:
        for output in outputs:
            output.discard()
        raise
    return outputs


def _warp_back(specs: list[_OutputSpec], model_grid_outputs: list[OutputRaster], dataset: gdal.Dataset,
               input_reader: BackscatterReader, coverage: DataCoverage, gsd_m: float, block_size: int, progress,
               is_cancelled, add_styles) -> int:
    """Warp the model-grid results onto the input grid into the final files, then make every input
    nodata pixel nodata there (interpolation may have spread values into it); returns the valid
    pixels. Blocks without valid input are filled with nodata unread, and left as the warp wrote
    them (nodata) when no valid input lies within two model pixels either."""
    reach = 2 * math.ceil(gsd_m / min(ground_pixel_size_m(dataset))) + 2
    finals: list[OutputRaster] = []
    with all_or_none(finals, add_styles):
        for index, (spec, source) in enumerate(zip(specs, model_grid_outputs)):
            share = 80.0 / len(specs)
            final = OutputRaster.warped(source.final_path, spec.path, dataset, spec.resampling,
                                        lambda percent, start=index * share: progress(start + percent * share / 100),
                                        is_cancelled)
            finals.append(final)
            spec.describe(final)
        blocks = _blocks(dataset.RasterXSize, dataset.RasterYSize, block_size)
        valid_pixels = 0
        for done, block in enumerate(blocks, start=1):
            if is_cancelled():
                raise CancelledError()
            near = Window(block.x - reach, block.y - reach, block.width + 2 * reach, block.height + 2 * reach)
            if coverage.has_data(block):
                main = finals[0].read(block)
                valid = input_reader.read_valid(block) & (main != specs[0].nodata)
                finals[0].write(np.where(valid, main, specs[0].nodata).astype(main.dtype), block)
                for spec, final in zip(specs[1:], finals[1:]):
                    scores = final.read(block)
                    final.write(np.where(valid, scores, spec.nodata).astype(scores.dtype), block)
                valid_pixels += int(valid.sum())
            elif coverage.has_data(near):
                for spec, final in zip(specs, finals):
                    final.fill(spec.nodata, block)
            progress(80.0 + 20.0 * done / len(blocks))
    return valid_pixels


def _stream(task, plan: TilePlan, blocks: list[Window], reader: BackscatterReader, session: ModelSession,
            contract: ModelContract, settings: _Settings, outputs: list[OutputRaster], progress,
            is_cancelled, log) -> tuple[int, int]:
    """Run ``blocks`` (those that may hold data; the others are left to the outputs' nodata fill);
    returns (tiles run, valid pixels). Each tile runs once, in the block holding its origin: what
    it adds to later blocks is carried to them (`TilePlan.blocks_reached`), at most a band of
    `TilePlan.carried_rows` across the raster's width. A reader thread reads and normalises the
    next block while the model runs; a writer thread normalises the previous block's blended
    sums, classifies and writes it. The first batch settles the model's precision (`ModelSession.settle_precision`)."""
    channels = len(contract.classes) if task == "lulc" else 1
    weights = blend_weights(settings.tile_size)
    tiles_run = valid_pixels = 0
    work = _StreamProgress(plan, blocks, progress)
    carried: dict[Window, list[BlockAccumulator]] = {}

    def read(block: Window):
        window = plan.read_window(block)
        db, valid = reader.read(window)
        model_input = prepare_input(db, valid, contract, settings.scene) if valid.any() else None
        unfamiliar = None
        if settings.familiar_db is not None and model_input is not None:
            low, high = settings.familiar_db
            inner = db[block.slices_in(window)]
            unfamiliar = (inner < low) | (inner > high)
        return block, window, model_input, valid, unfamiliar

    with Prefetch(blocks, read) as prefetched, BackgroundWriter() as writer:
        for block, window, model_input, valid, unfamiliar in prefetched:
            if is_cancelled():
                raise CancelledError()
            parts = carried.pop(block, [])
            work.block_read(block)
            if model_input is None:  # no valid pixel after all: nodata, as if skipped
                work.block_written(block)
                continue
            accumulator = BlockAccumulator(block, channels, weights)
            for part in parts:
                accumulator.add_carried(part)
            del parts
            reached = []
            for later in plan.blocks_reached(block):
                reached.append(BlockAccumulator(later.intersection(window), channels, weights))
                carried.setdefault(later, []).append(reached[-1])
            tiles = [tile for tile in plan.tiles_of(block)
                     if valid[tile.intersection(window).slices_in(window)].any()]
            for start in range(0, len(tiles), settings.batch_size):
                if is_cancelled():
                    raise CancelledError()
                batch_tiles = tiles[start:start + settings.batch_size]
                batch = np.stack([_tile_input(model_input, window, tile) for tile in batch_tiles])
                if session.precision_pending:
                    scores, line = session.settle_precision(batch, functools.partial(_classes, task, contract,
                                                                                     settings.water_threshold))
                    log(line)
                else:
                    scores = session.run(batch)
                _check_scores(scores, batch.shape, channels, session.path)
                for tile, tile_probabilities in zip(batch_tiles, to_probabilities(scores, contract.output_activation)):
                    accumulator.add(tile, tile_probabilities)
                    for part in reached:
                        part.add(tile, tile_probabilities)
                tiles_run += len(batch_tiles)
                work.tiles_run(len(batch_tiles))
            block_valid = valid[block.slices_in(window)]
            valid_pixels += int(block_valid.sum())
            writer.submit(functools.partial(_write_block, task, accumulator, block_valid, block, contract, settings,
                                            outputs, unfamiliar))
            work.block_written(block)
    return tiles_run, valid_pixels


class _StreamProgress:
    """Progress of `_stream` by work done rather than by blocks: each block weighs the tiles it runs
    plus a share for reading and writing its pixels. Block sizes differ a lot (the last row and
    column are thin strips, empty blocks are skipped), so counting blocks would stall and jump."""

    IO_COST = 0.1  # reading + writing a pixel, relative to running the model on it

    def __init__(self, plan: TilePlan, blocks: list[Window], report: Callable[[float], None]):
        self.report = report
        self.weights: dict[Window, tuple[float, int]] = {}  # block: (half of its read+write share, tiles)
        for block in blocks:
            io = self.IO_COST * block.width * block.height / plan.tile_size ** 2
            self.weights[block] = (io / 2, len(plan.tiles_of(block)))
        self.total = max(sum(2 * half_io + tiles for half_io, tiles in self.weights.values()), 1e-9)
        self.done = self.block_start = 0.0
        self.block_tiles_left = 0

    def _advance(self, amount: float) -> None:
        self.done += amount
        self.report(100.0 * min(self.done / self.total, 1.0))

    def block_read(self, block: Window) -> None:
        self.block_start = self.done
        half_io, self.block_tiles_left = self.weights[block]
        self._advance(half_io)

    def tiles_run(self, count: int) -> None:
        counted = min(count, self.block_tiles_left)
        self.block_tiles_left -= counted
        self._advance(counted)

    def block_written(self, block: Window) -> None:
        half_io, tiles = self.weights[block]
        self._advance(self.block_start + 2 * half_io + tiles - self.done)


class _TimeLeftLog:
    """A progress callback that also logs, every ``every_s`` seconds of a long run, how long is left,
    from the pace since the first report (progress follows the work done, so the pace holds)."""

    def __init__(self, progress: Callable[[float], None], log: Callable[[str], None], every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.progress, self.log, self.every_s, self.clock = progress, log, every_s, clock
        self.start: tuple[float, float] | None = None
        self.last_log = 0.0

    def __call__(self, percent: float) -> None:
        self.progress(percent)
        now = self.clock()
        if self.start is None:
            self.start = (now, percent)
            self.last_log = now
            return
        started_at, started_percent = self.start
        if now - self.last_log >= self.every_s and started_percent < percent < 100.0:
            left = (now - started_at) * (100.0 - percent) / (percent - started_percent)
            self.log(f"Progress: {percent:.0f} %, about {format_duration(left)} left")
            self.last_log = now


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _tile_input(model_input: np.ndarray, read_window: Window, tile: Window) -> np.ndarray:
    """(1, T, T) model input of ``tile``; a raster smaller than a tile is mirrored out to the tile size."""
    part = tile.intersection(read_window)
    pixels = model_input[part.slices_in(read_window)]
    pad_rows, pad_cols = tile.height - part.height, tile.width - part.width
    if pad_rows or pad_cols:
        # Tiles only exceed the raster on its right/bottom, and only when it is smaller than a tile.
        mode = "reflect" if min(pixels.shape) > 1 else "edge"
        pixels = np.pad(pixels, ((0, pad_rows), (0, pad_cols)), mode=mode)
    return pixels[None]


def _check_scores(scores: np.ndarray, input_shape, channels: int, model_path: str) -> None:
    """Refuse scores of the wrong shape, and NaN or infinite scores (they would make a confident,
    meaningless map: NaN compares false everywhere)."""
    expected = (input_shape[0], channels) + tuple(input_shape[2:])
    if scores.shape != expected:
        raise ModelContractError(
            f"The model '{model_path}' returned scores of shape {scores.shape} for input {tuple(input_shape)}; "
            f"its metadata promises {expected} (N, classes, H, W). See model/inference/CONTRACT.md.")
    if np.isfinite(scores.min()) and np.isfinite(scores.max()):  # NaN propagates into both
        return
    raise ModelContractError(
        f"The model '{model_path}' returned NaN or infinite scores ({1 - np.isfinite(scores).mean():.0%} of the "
        f"values of a batch of {input_shape[0]} tile(s)), so its map would be meaningless. The model file is broken "
        f"(for example exported after training diverged): re-export it or choose another model.")


def _classes(task, contract: ModelContract, water_threshold: float | None, scores: np.ndarray) -> np.ndarray:
    """Class per pixel of a batch's raw scores (water: 1 at or above the probability threshold)."""
    if task == "lulc":
        return scores.argmax(axis=1)
    return to_probabilities(scores.copy(), contract.output_activation)[:, 0] >= water_threshold


def _write_block(task, accumulator: BlockAccumulator, valid, block, contract, settings, outputs,
                 unfamiliar=None) -> None:
    """Classes (or water mask) and the optional score raster of one block; invalid pixels get nodata.
    ``unfamiliar``: pixels whose backscatter lies outside what the model learnt, whose confidence is
    held at chance level (the model is guessing there, however sure its softmax looks)."""
    probabilities = accumulator.probabilities()
    if task == "lulc":
        codes = np.array([c.code for c in contract.classes], dtype=np.uint8)
        labels = np.where(valid, codes[probabilities.argmax(axis=0)], LULC_NODATA).astype(np.uint8)
        scores = probabilities.max(axis=0)
        if unfamiliar is not None:
            scores = np.where(unfamiliar, np.minimum(scores, np.float32(1.0 / len(codes))), scores)
    else:
        scores = probabilities[0]
        labels = np.where(valid, scores >= settings.water_threshold, WATER_NODATA).astype(np.uint8)
    outputs[0].write(labels, block)
    if len(outputs) > 1:
        outputs[1].write(np.where(valid, scores, SCORE_NODATA).astype(np.float32), block)

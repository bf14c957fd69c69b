"""The inference engine: validate everything, then stream the raster block by block through the model.

Parts: TilePlan (which tiles, which blocks), BackscatterReader + prepare_input (model input in dB,
speckle filtered on request), ModelSession (ONNX Runtime), BlockAccumulator (blending),
OutputRaster (GeoTIFF writing). Inputs at another pixel size than the model's, in degrees or
rotated are read through a warped view on the model's grid and the results warped back.
Memory is bounded by the block size, whatever the raster size.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from osgeo import gdal, osr

from .blending import BlockAccumulator, blend_weights, to_probabilities
from .errors import CancelledError, InputRasterError, ModelContractError, OptionError, OutputError
from .metadata import NORM_SCENE, TILE_MULTIPLE, ModelContract, bundled_model_path
from .reader import BackscatterReader, BandReader, SceneStatistics, open_raster, prepare_input
from .resample import ModelGrid, decide_model_grid, open_on_model_grid
from .sar_input import (ALOS2_CALIBRATION_FACTOR_DB, InputUnits, SpeckleFilter, detect_band_units, filter_halo,
                        ground_pixel_size_m, sample_valid_values)
from .session import DEVICES, ModelSession
from .windows import TilePlan, Window
from .writer import OutputRaster, all_or_none, check_output_path

DEFAULT_BATCH_SIZE = 4
DEFAULT_BLOCK_SIZE = 2048
LULC_NODATA, WATER_NODATA, SCORE_NODATA = 0, 255, -1.0
OUTPUT_GRIDS = ("input", "model")  # where the results are written when the input is read resampled


@dataclass
class RunOptions:
    """User choices for one run; None means the model's default (batch size: 4)."""

    band: int = 1
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    tile_size: int | None = None
    tile_overlap: int | None = None
    batch_size: int | None = None
    water_threshold: float | None = None
    block_size: int = DEFAULT_BLOCK_SIZE  # output block edge in pixels: bounds memory
    input_units: InputUnits | str = InputUnits.AUTO  # "auto" | "ALOS-2 DN" | "linear power" | "dB"
    calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB  # dB, for ALOS-2 DN
    speckle_filter: SpeckleFilter | str = SpeckleFilter.NONE  # "none" | "Lee" | "refined Lee"
    filter_size: int = 7  # speckle filter window edge in pixels
    output_grid: str = "input"  # "input" | "model": grid of the results of a resampled input


@dataclass
class RunReport:
    output_path: str
    extra_output_path: str | None
    contract: ModelContract
    providers: list[str]
    tiles: int
    seconds: float
    valid_pixels: int


def segment(input_path, output_path, model_path=None, confidence_path=None, options=None,
            progress=None, is_cancelled=None, log=None) -> RunReport:
    """LULC class raster (uint8 codes, nodata 0) and optional confidence (max probability, nodata -1)."""
    return _run("lulc", input_path, output_path, model_path, confidence_path, options or RunOptions(),
                progress, is_cancelled, log)


def detect_water(input_path, output_path, model_path=None, probability_path=None, options=None,
                 progress=None, is_cancelled=None, log=None) -> RunReport:
    """Water mask (uint8 1 water / 0 not, nodata 255) and optional water probability (nodata -1)."""
    return _run("water", input_path, output_path, model_path, probability_path, options or RunOptions(),
                progress, is_cancelled, log)


@dataclass
class _Settings:
    tile_size: int
    tile_overlap: int
    batch_size: int
    water_threshold: float | None
    scene: SceneStatistics | None = None  # of the whole raster, for scene-normalised models


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
         log: Callable[[str], None] | None) -> RunReport:
    started = time.perf_counter()
    log = log or (lambda message: None)
    progress = progress or (lambda percent: None)
    is_cancelled = is_cancelled or (lambda: False)
    if options.device not in DEVICES:
        raise OptionError(f"Unknown device '{options.device}'. Choose one of: {', '.join(DEVICES)}.")
    speckle_filter = _speckle_filter(options)
    if options.output_grid not in OUTPUT_GRIDS:
        raise OptionError(f"Unknown output grid '{options.output_grid}'. Choose one of: {', '.join(OUTPUT_GRIDS)}.")

    # Everything is checked before any output file exists.
    dataset = open_raster(input_path)
    band_reader = BandReader(dataset, options.band, str(input_path))
    units = _input_units(options, dataset, str(input_path), log)
    output_path = check_output_path(output_path, input_path)
    if extra_path:
        extra_label = "confidence" if task == "lulc" else "probability"
        extra_path = check_output_path(extra_path, input_path, extra_label)
        if extra_path == output_path:
            raise OutputError(f"The {extra_label} file must differ from the output file '{output_path}'.")
    model_path = _resolve_model_path(task, model_path)
    session = ModelSession(model_path, options.device)
    contract = ModelContract.from_metadata(session.metadata, str(model_path), expected_task=task)
    settings = _settings(options, contract, session.fixed_tile_size)

    log(f"Model: {contract.model_name}" + (f" (trained on {contract.trained_on})" if contract.trained_on else ""))
    log(f"Execution provider: {session.providers[0]}")
    log(_band_line(dataset, options.band))
    grid = decide_model_grid(dataset, contract.gsd_m)
    source = _model_input_reader(band_reader, grid, units, speckle_filter, options, contract.gsd_m, log)
    if speckle_filter is not SpeckleFilter.NONE:
        log(f"Speckle filter: {speckle_filter.value}, {options.filter_size} x {options.filter_size} px"
            + (" (on the model grid)" if grid is not None else ""))
    if contract.norm_mode == NORM_SCENE:
        settings.scene = _scene_statistics(source, input_path, options.band)
        log(f"Scene normalisation: median {settings.scene.median:.2f} dB removed (from {settings.scene.pixels} "
            f"pixels sampled over the whole raster); the map does not depend on the absolute calibration")
    plan = TilePlan(source.band_reader.width, source.band_reader.height, settings.tile_size, settings.tile_overlap,
                    options.block_size)
    block_rows = plan.block_rows()
    block_count = sum(len(row) for row in block_rows)
    log(f"Tiles: {plan.tile_count} of {settings.tile_size} px with {settings.tile_overlap} px overlap, "
        f"batches of {settings.batch_size}, {block_count} block(s) of up to {plan.block_size} px")

    specs = _output_specs(task, contract, output_path, extra_path)
    warp_back = grid is not None and options.output_grid == "input"
    # Results on the model grid that still have to be warped back live in a hidden folder beside
    # the output, removed whatever happens.
    scratch = (pathlib.Path(tempfile.mkdtemp(prefix=f".{output_path.stem}.", suffix=".model-grid",
                                             dir=output_path.parent)) if warp_back else None)
    try:
        stream_share = 90.0 if warp_back else 100.0
        stream_paths = [scratch / f"{index}.tif" for index in range(len(specs))] if warp_back else \
            [spec.path for spec in specs]
        outputs = _create_outputs(specs, stream_paths, source.band_reader.dataset)
        with all_or_none(outputs):
            tiles_run, valid_pixels = _stream(task, plan, block_rows, source, session, contract, settings, outputs,
                                              lambda percent: progress(percent * stream_share / 100.0),
                                              is_cancelled)
            if valid_pixels == 0:
                raise InputRasterError(
                    f"Band {options.band} of '{input_path}' has no valid pixel: every pixel is nodata "
                    f"({band_reader.nodata}) or masked. Check the band, and the raster's nodata value.")
        if warp_back:
            valid_pixels = _warp_back(specs, outputs, dataset,
                                      BackscatterReader(band_reader, units, options.calibration_factor),
                                      options.block_size, lambda percent: progress(stream_share + percent / 10.0),
                                      is_cancelled)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    progress(100.0)
    seconds = time.perf_counter() - started
    log(f"Done: {tiles_run} tiles in {seconds:.1f} s, {valid_pixels} valid pixels")
    return RunReport(output_path=str(output_path), extra_output_path=str(extra_path) if extra_path else None,
                     contract=contract, providers=list(session.providers), tiles=tiles_run, seconds=seconds,
                     valid_pixels=valid_pixels)


def _scene_statistics(source: BackscatterReader, input_path, band: int) -> SceneStatistics:
    sample = source.sample_db()
    if sample.size == 0:
        raise InputRasterError(
            f"Band {band} of '{input_path}' has no valid pixel: every pixel is nodata or masked. Check the band, "
            f"and the raster's nodata value.")
    return SceneStatistics.of(sample)


def _speckle_filter(options: RunOptions) -> SpeckleFilter:
    try:
        speckle_filter = SpeckleFilter(options.speckle_filter)
    except ValueError:
        raise OptionError(f"Unknown speckle filter '{options.speckle_filter}'. Choose one of: "
                          f"{', '.join(f.value for f in SpeckleFilter)}.") from None
    filter_halo(speckle_filter, options.filter_size)  # refuses a window size the filter does not support
    return speckle_filter


def _input_units(options: RunOptions, dataset: gdal.Dataset, source_name: str, log) -> InputUnits:
    """The units of the input band: the user's choice, or detected from a sample (decision logged)."""
    try:
        units = InputUnits(options.input_units)
    except ValueError:
        raise OptionError(f"Unknown input units '{options.input_units}'. Choose one of: "
                          f"{', '.join(u.value for u in InputUnits)}.") from None
    if units is not InputUnits.AUTO:
        log(f"Input units: {units.value} (as set by INPUT_UNITS)" + _conversion_note(units, options))
        return units
    sample = sample_valid_values(dataset, options.band)
    if not np.any(np.isfinite(sample) & (sample != 0)):
        raise InputRasterError(
            f"Band {options.band} of '{source_name}' has no valid pixel in the 9 windows sampled to detect its "
            f"units: every sampled pixel is nodata or 0. Check the band and the raster's nodata value; if only "
            f"parts of the raster hold data, set INPUT_UNITS to ALOS-2 DN, linear power or dB.")
    units, reason = detect_band_units(dataset, options.band)
    log(f"Input units: {units.value}, detected automatically from {reason}; if that is wrong, set INPUT_UNITS"
        + _conversion_note(units, options))
    return units


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
    resampling = "average" if min(ground_pixel_size_m(dataset)) < gsd_m else "bilinear"
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


def _settings(options: RunOptions, contract: ModelContract, fixed_tile_size: int | None) -> _Settings:
    """Merge options with the model's defaults and check them, with messages saying what to change."""
    tile = options.tile_size or fixed_tile_size or contract.tile_size
    if fixed_tile_size and tile != fixed_tile_size:
        raise OptionError(f"This model only accepts tiles of {fixed_tile_size} px (fixed in its graph); "
                          f"set the tile size to {fixed_tile_size} or leave it empty.")
    if tile < TILE_MULTIPLE or tile % TILE_MULTIPLE:
        raise OptionError(f"Tile size {tile} is invalid: it must be a positive multiple of {TILE_MULTIPLE} "
                          f"(the model downsamples by {TILE_MULTIPLE}); the model's default is {contract.tile_size}.")
    overlap = contract.tile_overlap if options.tile_overlap is None else options.tile_overlap
    if overlap < 0 or 2 * overlap >= tile:
        raise OptionError(f"Overlap {overlap} is invalid for {tile} px tiles: it must be at least 0 and less "
                          f"than half the tile size (below {(tile + 1) // 2}).")
    batch = DEFAULT_BATCH_SIZE if options.batch_size is None else options.batch_size
    if batch < 1:
        raise OptionError(f"Batch size {batch} is invalid: use 1 or more.")
    if options.block_size < TILE_MULTIPLE:
        raise OptionError(f"Block size {options.block_size} is invalid: use at least {TILE_MULTIPLE} px.")
    threshold = None
    if contract.task == "water":
        threshold = contract.water_threshold if options.water_threshold is None else options.water_threshold
        if not 0.0 < threshold < 1.0:
            raise OptionError(f"Water threshold {threshold} is invalid: choose a probability between 0 and 1 "
                              f"(the model's default is {contract.water_threshold}).")
    return _Settings(tile, overlap, batch, threshold)


def _output_specs(task, contract: ModelContract, output_path, extra_path) -> list[_OutputSpec]:
    if task == "lulc":
        main = _OutputSpec(output_path, gdal.GDT_Byte, LULC_NODATA, "LULC class",
                           [(c.code, c.name, c.color) for c in contract.classes], "nearest", contract.provenance())
        extra_description = "Confidence (max class probability)"
    else:
        water = contract.classes[0]
        main = _OutputSpec(output_path, gdal.GDT_Byte, WATER_NODATA, "Water mask",
                           [(0, "Not water", "#f0f0f0"), (1, water.name, water.color)], "nearest",
                           contract.provenance())
        extra_description = "Water probability"
    specs = [main]
    if extra_path:
        specs.append(_OutputSpec(extra_path, gdal.GDT_Float32, SCORE_NODATA, extra_description, None, "bilinear",
                                 contract.provenance()))
    return specs


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
               input_reader: BackscatterReader, block_size: int, progress, is_cancelled) -> int:
    """Warp the model-grid results onto the input grid into the final files, then make every input
    nodata pixel nodata there (interpolation may have spread values into it); returns the valid pixels."""
    finals: list[OutputRaster] = []
    with all_or_none(finals):
        for index, (spec, source) in enumerate(zip(specs, model_grid_outputs)):
            share = 80.0 / len(specs)
            final = OutputRaster.warped(source.final_path, spec.path, dataset, spec.resampling,
                                        lambda percent, start=index * share: progress(start + percent * share / 100),
                                        is_cancelled)
            finals.append(final)
            spec.describe(final)
        width, height = dataset.RasterXSize, dataset.RasterYSize
        blocks = [Window(x, y, min(block_size, width - x), min(block_size, height - y))
                  for y in range(0, height, block_size) for x in range(0, width, block_size)]
        valid_pixels = 0
        for done, block in enumerate(blocks, start=1):
            if is_cancelled():
                raise CancelledError("Cancelled by the user; no output was written.")
            main = finals[0].read(block)
            valid = input_reader.read_valid(block) & (main != specs[0].nodata)
            finals[0].write(np.where(valid, main, specs[0].nodata).astype(main.dtype), block)
            for spec, final in zip(specs[1:], finals[1:]):
                scores = final.read(block)
                final.write(np.where(valid, scores, spec.nodata).astype(scores.dtype), block)
            valid_pixels += int(valid.sum())
            progress(80.0 + 20.0 * done / len(blocks))
    return valid_pixels


def _stream(task, plan: TilePlan, block_rows, reader: BackscatterReader, session: ModelSession, contract: ModelContract,
            settings: _Settings, outputs: list[OutputRaster], progress, is_cancelled) -> tuple[int, int]:
    """Run every block; returns (tiles run, valid pixels). Only one block's data is held at a time,
    plus the outputs of tiles shared with the next block of the same row (so they are not run twice)."""
    channels = len(contract.classes) if task == "lulc" else 1
    weights = blend_weights(settings.tile_size)
    tiles_run = valid_pixels = blocks_done = 0
    block_count = sum(len(row) for row in block_rows)
    for row in block_rows:
        shared: dict[Window, np.ndarray] = {}
        for block in row:
            if is_cancelled():
                raise CancelledError("Cancelled by the user; no output was written.")
            read_window = plan.read_window(block)
            db, valid = reader.read(read_window)
            model_input = prepare_input(db, valid, contract, settings.scene)
            del db
            accumulator = BlockAccumulator(block, channels, weights)
            pending = []
            tiles = plan.tiles_for(block)
            next_shared: dict[Window, np.ndarray] = {}
            for tile in tiles:
                if tile in shared:
                    accumulator.add(tile, shared[tile])
                    if tile.x_end > block.x_end:
                        next_shared[tile] = shared[tile]
                    continue
                part = tile.intersection(read_window)
                if valid[part.slices_in(read_window)].any():
                    pending.append(tile)
            for start in range(0, len(pending), settings.batch_size):
                if is_cancelled():
                    raise CancelledError("Cancelled by the user; no output was written.")
                batch_tiles = pending[start:start + settings.batch_size]
                batch = np.stack([_tile_input(model_input, read_window, tile) for tile in batch_tiles])
                scores = session.run(batch)
                _check_scores(scores, batch.shape, channels, session.path)
                probabilities = to_probabilities(scores, contract.output_activation)
                for tile, tile_probabilities in zip(batch_tiles, probabilities):
                    accumulator.add(tile, tile_probabilities)
                    if tile.x_end > block.x_end:
                        next_shared[tile] = tile_probabilities.copy()  # not a view pinning the batch
                tiles_run += len(batch_tiles)
                progress(100.0 * (blocks_done + (start + len(batch_tiles)) / len(pending)) / block_count)
            shared = next_shared
            block_valid = valid[block.slices_in(read_window)]
            valid_pixels += int(block_valid.sum())
            _write_block(task, accumulator.probabilities(), block_valid, block, contract, settings, outputs)
            blocks_done += 1
            progress(100.0 * blocks_done / block_count)
    return tiles_run, valid_pixels


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
    expected = (input_shape[0], channels) + tuple(input_shape[2:])
    if scores.shape != expected:
        raise ModelContractError(
            f"The model '{model_path}' returned scores of shape {scores.shape} for input {tuple(input_shape)}; "
            f"its metadata promises {expected} (N, classes, H, W). See model/inference/CONTRACT.md.")


def _write_block(task, probabilities, valid, block, contract, settings, outputs) -> None:
    """Classes (or water mask) and the optional score raster of one block; invalid pixels get nodata."""
    if task == "lulc":
        codes = np.array([c.code for c in contract.classes], dtype=np.uint8)
        labels = np.where(valid, codes[probabilities.argmax(axis=0)], LULC_NODATA).astype(np.uint8)
        scores = probabilities.max(axis=0)
    else:
        scores = probabilities[0]
        labels = np.where(valid, scores >= settings.water_threshold, WATER_NODATA).astype(np.uint8)
    outputs[0].write(labels, block)
    if len(outputs) > 1:
        outputs[1].write(np.where(valid, scores, SCORE_NODATA).astype(np.float32), block)

"""The inference engine: validate everything, then stream the raster block by block through the model.

Parts: TilePlan (which tiles, which blocks), BandReader + prepare_input (model input),
ModelSession (ONNX Runtime), BlockAccumulator (blending), OutputRaster (GeoTIFF writing).
Memory is bounded by the block size, whatever the raster size.
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from osgeo import gdal

from .blending import BlockAccumulator, blend_weights, to_probabilities
from .errors import CancelledError, InputRasterError, ModelContractError, OptionError, OutputError
from .metadata import TILE_MULTIPLE, ModelContract, bundled_model_path
from .reader import BandReader, open_raster, prepare_input
from .session import DEVICES, ModelSession
from .windows import TilePlan, Window
from .writer import OutputRaster, check_output_path

DEFAULT_BATCH_SIZE = 4
DEFAULT_BLOCK_SIZE = 2048
LULC_NODATA, WATER_NODATA, SCORE_NODATA = 0, 255, -1.0


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


def _run(task, input_path, output_path, model_path, extra_path, options: RunOptions,
         progress: Callable[[float], None] | None, is_cancelled: Callable[[], bool] | None,
         log: Callable[[str], None] | None) -> RunReport:
    started = time.perf_counter()
    log = log or (lambda message: None)
    progress = progress or (lambda percent: None)
    is_cancelled = is_cancelled or (lambda: False)
    if options.device not in DEVICES:
        raise OptionError(f"Unknown device '{options.device}'. Choose one of: {', '.join(DEVICES)}.")

    # Everything is checked before any output file exists.
    dataset = open_raster(input_path)
    reader = BandReader(dataset, options.band, str(input_path))
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
    plan = TilePlan(reader.width, reader.height, settings.tile_size, settings.tile_overlap, options.block_size)
    block_rows = plan.block_rows()
    block_count = sum(len(row) for row in block_rows)
    log(f"Tiles: {plan.tile_count} of {settings.tile_size} px with {settings.tile_overlap} px overlap, "
        f"batches of {settings.batch_size}, {block_count} block(s) of up to {plan.block_size} px")

    outputs = _create_outputs(task, contract, dataset, output_path, extra_path)
    try:
        tiles_run, valid_pixels = _stream(task, plan, block_rows, reader, session, contract, settings, outputs,
                                          progress, is_cancelled)
        if valid_pixels == 0:
            raise InputRasterError(
                f"Band {options.band} of '{input_path}' has no valid pixel: every pixel is nodata "
                f"({reader.nodata}) or masked. Check the band, and the raster's nodata value.")
        for output in outputs:
            output.commit()
    except BaseException:
        for output in outputs:
            output.discard()
        raise
    progress(100.0)
    seconds = time.perf_counter() - started
    log(f"Done: {tiles_run} tiles in {seconds:.1f} s, {valid_pixels} valid pixels")
    return RunReport(output_path=str(output_path), extra_output_path=str(extra_path) if extra_path else None,
                     contract=contract, providers=list(session.providers), tiles=tiles_run, seconds=seconds,
                     valid_pixels=valid_pixels)


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


def _create_outputs(task, contract, dataset, output_path, extra_path) -> list[OutputRaster]:
    outputs = []
    try:
        if task == "lulc":
            main = OutputRaster(output_path, dataset, gdal.GDT_Byte, LULC_NODATA, "LULC class")
            main.set_legend([(c.code, c.name, c.color) for c in contract.classes])
            extra_description = "Confidence (max class probability)"
        else:
            water = contract.classes[0]
            main = OutputRaster(output_path, dataset, gdal.GDT_Byte, WATER_NODATA, "Water mask")
            main.set_legend([(0, "Not water", "#f0f0f0"), (1, water.name, water.color)])
            extra_description = "Water probability"
        outputs.append(main)
        if extra_path:
            outputs.append(OutputRaster(extra_path, dataset, gdal.GDT_Float32, SCORE_NODATA, extra_description))
    except BaseException:
        for output in outputs:
            output.discard()
        raise
    return outputs


def _stream(task, plan: TilePlan, block_rows, reader: BandReader, session: ModelSession, contract: ModelContract,
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
            raw, valid = reader.read(read_window)
            model_input = prepare_input(raw, valid, contract)
            del raw
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

"""The block loops that write the outputs: the model's (`stream_model`: tiles batched through the model,
blended, classified block by block) and the threshold method's (`stream_threshold`)."""

from __future__ import annotations

import functools

import numpy as np

from ..products import SCORE_NODATA, WATER_NODATA
from .blending import BlockAccumulator, blend_weights, to_probabilities
from ..errors import CancelledError, ModelContractError
from .pipeline import BackgroundWriter, Prefetch
from .progress import StreamProgress
from ..rasters.reading import BackscatterReader
from .normalisation import prepare_input
from ..rasters.windows import Window
from ..rasters.writer import OutputRaster


def blocks_of(width: int, height: int, block_size: int) -> list[Window]:
    """The raster cut into blocks of up to ``block_size`` px, row by row."""
    return [Window(x, y, min(block_size, width - x), min(block_size, height - y))
            for y in range(0, height, block_size) for x in range(0, width, block_size)]


def stream_model(run, outputs: list[OutputRaster], progress) -> tuple[int, int]:
    """Run ``run.blocks`` (those that may hold data; the others are left to the outputs' nodata fill)
    through ``run.session``; returns (tiles run, valid pixels). Each tile runs once, in the block holding
    its origin: what it adds to later blocks is carried to them (`TilePlan.blocks_reached`), at most a
    band of `TilePlan.carried_rows` across the raster's width. A reader thread reads and normalises the
    next block while the model runs; a writer thread normalises the previous block's blended sums,
    classifies and writes it. The first batch settles the model's precision
    (`ModelSession.settle_precision`). Long, as the loop it is: its steps share the carried sums."""
    task, contract, settings, plan, session = run.task, run.contract, run.settings, run.tile_plan, run.session
    channels = task.channels(contract)
    weights = blend_weights(settings.tile_size)
    tiles_run = valid_pixels = 0
    work = StreamProgress(plan, run.blocks, progress)
    carried: dict[Window, list[BlockAccumulator]] = {}
    read = functools.partial(_read_block, plan, run.source, contract, settings)

    with Prefetch(run.blocks, read) as prefetched, BackgroundWriter() as writer:
        for block, window, model_input, valid, unfamiliar in prefetched:
            if run.is_cancelled():
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
                if run.is_cancelled():
                    raise CancelledError()
                batch_tiles = tiles[start:start + settings.batch_size]
                batch = np.stack([tile_input(model_input, window, tile) for tile in batch_tiles])
                if session.precision_pending:
                    scores, line = session.settle_precision(batch, functools.partial(
                        task.classes, contract, settings.water_threshold))
                    run.log(line)
                else:
                    scores = session.run(batch)
                check_scores(scores, batch.shape, channels, session.path)
                for tile, tile_probabilities in zip(batch_tiles, to_probabilities(scores, contract.output_activation)):
                    accumulator.add(tile, tile_probabilities)
                    for part in reached:
                        part.add(tile, tile_probabilities)
                tiles_run += len(batch_tiles)
                work.tiles_run(len(batch_tiles))
            block_valid = valid[block.slices_in(window)]
            valid_pixels += int(block_valid.sum())
            writer.submit(functools.partial(_write_block, run, accumulator, block_valid, block, outputs, unfamiliar))
            work.block_written(block)
    return tiles_run, valid_pixels


def _read_block(plan, reader: BackscatterReader, contract, settings, block: Window):
    """What the model needs of ``block``: (block, read window, model input or None without a valid pixel,
    valid, pixels outside the dB range the model learnt or None)."""
    window = plan.read_window(block)
    db, valid = reader.read(window)
    model_input = prepare_input(db, valid, contract, settings.scene) if valid.any() else None
    unfamiliar = None
    if settings.familiar_db is not None and model_input is not None:
        low, high = settings.familiar_db
        inner = db[block.slices_in(window)]
        unfamiliar = (inner < low) | (inner > high)
    return block, window, model_input, valid, unfamiliar


def _write_block(run, accumulator: BlockAccumulator, valid, block, outputs, unfamiliar=None) -> None:
    """Classes (or water mask) and the optional score raster of one block; invalid pixels get nodata."""
    labels, scores = run.task.block_results(accumulator.probabilities(), valid, run.contract,
                                            run.settings.water_threshold, unfamiliar)
    outputs[0].write(labels, block)
    if len(outputs) > 1:
        outputs[1].write(np.where(valid, scores, SCORE_NODATA).astype(np.float32), block)


def stream_threshold(blocks: list[Window], source: BackscatterReader, threshold_db: float | None,
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


def tile_input(model_input: np.ndarray, read_window: Window, tile: Window) -> np.ndarray:
    """(1, T, T) model input of ``tile``; a raster smaller than a tile is mirrored out to the tile size."""
    part = tile.intersection(read_window)
    pixels = model_input[part.slices_in(read_window)]
    pad_rows, pad_cols = tile.height - part.height, tile.width - part.width
    if pad_rows or pad_cols:
        # Tiles only exceed the raster on its right/bottom, and only when it is smaller than a tile.
        mode = "reflect" if min(pixels.shape) > 1 else "edge"
        pixels = np.pad(pixels, ((0, pad_rows), (0, pad_cols)), mode=mode)
    return pixels[None]


def check_scores(scores: np.ndarray, input_shape, channels: int, model_path: str) -> None:
    """Refuse scores of the wrong shape, and NaN or infinite scores (they would make a confident,
    meaningless map: NaN compares false everywhere)."""
    expected = (input_shape[0], channels) + tuple(input_shape[2:])
    if scores.shape != expected:
        raise ModelContractError(
            f"The model '{model_path}' returned scores of shape {scores.shape} for input {tuple(input_shape)}; "
            f"its metadata promises {expected} (N, classes, H, W). See model/CONTRACT.md.")
    if np.isfinite(scores.min()) and np.isfinite(scores.max()):  # NaN propagates into both
        return
    raise ModelContractError(
        f"The model '{model_path}' returned NaN or infinite scores ({1 - np.isfinite(scores).mean():.0%} of the "
        f"values of a batch of {input_shape[0]} tile(s)), so its map would be meaningless. The model file is broken "
        f"(for example exported after training diverged): re-export it or choose another model.")

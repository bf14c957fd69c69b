"""The settings a run resolves from the user's request and the model: its defaults merged and checked
(`model_defaults`), then the block and batch sizes that fit in memory (`default_block_size`,
`fit_batch_size`); `Settings` holds the result, built once per run and frozen."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OptionError
from .memory import (CPU_RUN_BUDGET, MEMORY_SHARE, available_memory_bytes, gpu_batch_size, gpu_free_memory_bytes,
                     run_memory_bytes)
from .contract import TILE_MULTIPLE, ModelContract
from .options import RunOptions, check_batch_size, check_overlap, check_threshold, check_tile_size
from .normalisation import SceneStatistics
from ..rasters.windows import TilePlan

DEFAULT_BATCH_SIZE = 4
DEFAULT_BLOCK_SIZE = 512  # a multiple of the outputs' 256 px GeoTIFF blocks: whole blocks written
GPU_BLOCK_SIZE = 2048  # on a GPU: blocks of about a hundred tiles, so batches can be large


@dataclass(frozen=True)
class ModelDefaults:
    """The tiling a model run starts from: the options, or the model's defaults where they are empty."""

    tile_size: int
    tile_overlap: int
    batch_size: int  # asked for, or DEFAULT_BATCH_SIZE: `fit_batch_size` settles it
    water_threshold: float | None  # water models' probability threshold (None: land cover)


@dataclass(frozen=True)
class Settings:
    """What a run resolved, once: block size; for a model, the tiling, the batch that fits in memory, the
    scene's statistics (scene-normalised models) and the dB range it learnt (confidence held elsewhere);
    for the threshold method, the threshold in dB."""

    block_size: int
    tile_size: int = 0
    tile_overlap: int = 0
    batch_size: int = 0
    water_threshold: float | None = None  # water models: the probability at and above which a pixel is water
    water_threshold_db: float | None = None  # threshold method: pixels darker are water (None: no water)
    scene: SceneStatistics | None = None  # of the whole raster, for scene-normalised models
    familiar_db: tuple[float, float] | None = None  # dB the model learnt; confidence elsewhere: chance level


def model_defaults(options: RunOptions, contract: ModelContract, fixed_tile_size: int | None, log,
                   calibrated: bool = True) -> ModelDefaults:
    """Merge options with the model's defaults and check them, with messages saying what to change.
    A relative input takes the model's threshold for relative inputs, where it declares one."""
    tile = options.tile_size or fixed_tile_size or contract.tile_size
    if fixed_tile_size and tile != fixed_tile_size:
        raise OptionError(f"This model only accepts tiles of {fixed_tile_size} px (fixed in its graph); "
                          f"set the tile size to {fixed_tile_size} or leave it empty.")
    check_tile_size(tile, contract.tile_size)
    overlap = contract.tile_overlap if options.tile_overlap is None else options.tile_overlap
    if options.tile_overlap is None and 2 * overlap >= tile:
        # The model's default overlap, made for its default tile, cannot serve the smaller tiles of this run
        # (fixed in the graph, or chosen): a quarter of the tile, as the bundled models' 64 px of 256.
        log(f"Tile overlap {tile // 4} px: the model's default ({overlap} px) is too large for {tile} px tiles")
        overlap = tile // 4
    check_overlap(overlap, tile)
    batch = DEFAULT_BATCH_SIZE if options.batch_size is None else options.batch_size
    check_batch_size(batch)
    threshold = None
    if contract.task == "water":
        threshold = contract.water_threshold if options.water_threshold is None else options.water_threshold
        if options.water_threshold is None and not calibrated and contract.water_threshold_relative is not None:
            threshold = contract.water_threshold_relative
            log(f"Water probability threshold {threshold:g}: the model's default for relative brightness "
                f"({contract.water_threshold:g} for calibrated inputs)")
        check_threshold(threshold, contract.water_threshold)
    return ModelDefaults(tile, overlap, batch, threshold)


def default_block_size(defaults: ModelDefaults | None, on_gpu: bool, channels: int, width: int, log) -> int:
    """DEFAULT_BLOCK_SIZE; on a GPU, GPU_BLOCK_SIZE (blocks that give large batches) where half the
    run's share of the memory available holds such blocks (the rest is left to the batch)."""
    if defaults is None or not on_gpu:
        return DEFAULT_BLOCK_SIZE
    available = available_memory_bytes()
    need = run_memory_bytes(defaults.tile_size, 1, channels, defaults.tile_overlap, GPU_BLOCK_SIZE, width,
                            model_on_host=False)
    if available is not None and need > MEMORY_SHARE * available / 2:
        log(f"Blocks of {DEFAULT_BLOCK_SIZE} px: blocks of {GPU_BLOCK_SIZE} px, which give the GPU larger batches, "
            f"would need {need / 2**30:.1f} GiB of the {available / 2**30:.1f} GiB of memory available")
        return DEFAULT_BLOCK_SIZE
    return GPU_BLOCK_SIZE


def fit_batch_size(defaults: ModelDefaults, asked: int | None, channels: int, plan: TilePlan, on_gpu: bool,
                   fixed_tile_size: int | None, log) -> int:
    """The batch size to run with on the raster of ``plan``: the one ``asked`` for when the run fits
    in the memory available; by default, on the CPU the largest up to DEFAULT_BATCH_SIZE that also
    keeps the run within CPU_RUN_BUDGET, on a GPU what its free memory holds (`gpu_batch_size`),
    either lowered (and logged) when the memory available is what limits it; or an OptionError
    naming the largest tile and batch sizes that fit."""
    tile, overlap, batch = defaults.tile_size, defaults.tile_overlap, defaults.batch_size
    available = available_memory_bytes()
    budget = MEMORY_SHARE * available if available is not None else float("inf")
    width, carried_rows = plan.width, plan.carried_rows()

    def need(tile_size, batch_size):
        carried = carried_rows if tile_size == tile else None  # other tile sizes: the worst case
        return run_memory_bytes(tile_size, batch_size, channels, overlap, plan.block_size, width, carried,
                                model_on_host=not on_gpu)

    if asked is None and on_gpu:
        free = gpu_free_memory_bytes()
        batch = gpu_batch_size(tile, free, plan.most_tiles_in_a_block())
        log(f"Batch size {batch} on the GPU (" + (f"{free / 2**30:.1f} GiB free" if free is not None
                                                  else "free GPU memory unknown") + ")")
    elif asked is None:
        batch = next((b for b in range(batch, 1, -1) if need(tile, b) <= CPU_RUN_BUDGET), 1)
    if need(tile, batch) <= budget:
        return batch
    largest_batch = next((b for b in range(batch - 1, 0, -1) if need(tile, b) <= budget), 0)
    if asked is None and largest_batch:
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
        + (", or clip the raster into narrower parts." if width > 20 * plan.block_size else "."))

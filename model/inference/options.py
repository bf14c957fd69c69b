"""The user's request for one run (`RunOptions`) and every check of it that needs neither the model nor
the raster: QGIS runs `check_options` when it checks the parameters, the engine once before a run."""

from __future__ import annotations

from dataclasses import dataclass

from .area import AreaOfInterest
from .errors import OptionError
from .metadata import TILE_MULTIPLE
from .sar_input import ALOS2_CALIBRATION_FACTOR_DB, InputUnits, check_calibration_factor
from .speckle import SpeckleFilter, filter_halo
from .session import DEVICES, PRECISIONS

OUTPUT_GRIDS = ("input", "model")  # where the results are written when the input is read resampled
WATER_METHODS = ("model", "threshold")  # how Water Detect decides: the water model, or a backscatter threshold


@dataclass
class RunOptions:
    """User choices for one run; None means the model's default (batch size: 4). The engine reads
    them and never changes them: what it resolves lives in `settings.Settings`."""

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


def check_options(options: RunOptions) -> None:
    """Every check of the run options that needs neither the model nor the raster, with the
    messages users see (QGIS runs it when it checks the parameters, before a run); the model's
    defaults and limits are checked once the model is loaded (`settings.model_defaults`)."""
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
        check_tile_size(options.tile_size)
    if options.tile_overlap is not None:
        check_overlap(options.tile_overlap, options.tile_size)
    if options.batch_size is not None:
        check_batch_size(options.batch_size)
    if options.water_threshold is not None:
        check_threshold(options.water_threshold)
    if options.threads is not None and options.threads < 1:
        raise OptionError(f"Thread count {options.threads} is invalid: use 1 or more, or leave it empty for one "
                          f"thread per physical core.")
    if options.block_size is not None and options.block_size < TILE_MULTIPLE:
        raise OptionError(f"Block size {options.block_size} is invalid: use at least {TILE_MULTIPLE} px.")


def check_tile_size(tile: int, model_default: int | None = None) -> None:
    if tile < TILE_MULTIPLE or tile % TILE_MULTIPLE:
        default = f"; the model's default is {model_default}" if model_default else ""
        raise OptionError(f"Tile size {tile} is invalid: it must be a positive multiple of {TILE_MULTIPLE} "
                          f"(the model downsamples by {TILE_MULTIPLE}){default}.")


def check_overlap(overlap: int, tile: int | None) -> None:
    if overlap < 0 or (tile is not None and 2 * overlap >= tile):
        if tile is None:
            raise OptionError(f"Overlap {overlap} is invalid: it must be at least 0 and less than half the "
                              f"tile size.")
        raise OptionError(f"Overlap {overlap} is invalid for {tile} px tiles: it must be at least 0 and less "
                          f"than half the tile size (below {(tile + 1) // 2}).")


def check_batch_size(batch: int) -> None:
    if batch < 1:
        raise OptionError(f"Batch size {batch} is invalid: use 1 or more.")


def check_threshold(threshold: float, model_default: float | None = None) -> None:
    if not 0.0 < threshold < 1.0:
        default = f" (the model's default is {model_default})" if model_default is not None else ""
        raise OptionError(f"Water threshold {threshold} is invalid: choose a probability between 0 and 1"
                          f"{default}.")

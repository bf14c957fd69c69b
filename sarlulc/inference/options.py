"""The user's request for one run (`RunOptions`) and every check of it that needs neither the model nor
the raster: QGIS runs `check_options` when it checks the parameters, the engine once before a run."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping

from ..rasters.area import AreaOfInterest
from ..errors import OptionError
from .contract import TILE_MULTIPLE
from ..sar.units import ALOS2_CALIBRATION_FACTOR_DB, UNITS_FLAGS, InputUnits, check_calibration_factor
from .session import DEVICES, PRECISIONS
from ..sar.speckle import SpeckleFilter, filter_halo

OUTPUT_GRIDS = ("input", "model")  # where the results are written when the input is read resampled
WATER_METHODS = ("model", "threshold")  # how Water Detect decides: the water model, or a backscatter threshold
FILTER_FLAGS = {"none": SpeckleFilter.NONE, "lee": SpeckleFilter.LEE, "refined-lee": SpeckleFilter.REFINED_LEE}
"""The command-line spelling of each speckle filter."""


@dataclass(frozen=True)
class Option:
    """What a front end needs to offer one run option: its help; the values the engine accepts
    (``choices``) and the command line's words for them (``spellings``, word -> value); the smallest
    value (``minimum``); the only task it applies to (``task``, "water"); the command line's flag
    (``flag``, default --field-name)."""

    help: str
    choices: tuple | None = None
    spellings: Mapping[str, object] | None = None
    minimum: int | None = None
    task: str | None = None
    flag: str | None = None


def _option(default, help: str, **details):
    return field(default=default, metadata={"option": Option(help, **details)})


def run_option(name: str) -> Option:
    """The `Option` describing the RunOptions field ``name``."""
    return next(each.metadata["option"] for each in fields(RunOptions) if each.name == name)


def option_words(name: str) -> list[str]:
    """The values the option ``name`` accepts, as words (an enum's values), in the engine's order: what a
    front end offers."""
    return [getattr(choice, "value", choice) for choice in run_option(name).choices]


def option_default(name: str):
    """The default of the RunOptions field ``name`` (an enum's value): what a front end shows when left alone."""
    default = next(each.default for each in fields(RunOptions) if each.name == name)
    return getattr(default, "value", default)


@dataclass
class RunOptions:
    """User choices for one run; None means the model's default. The engine reads them and never
    changes them: what it resolves lives in `settings.Settings`. Each field's `Option` (help,
    choices, range, command-line flag) is where both front ends read how to offer it."""

    band: int = _option(1, "input band (default 1)", minimum=1)
    device: str = _option("auto", "execution device (default auto)", choices=DEVICES)
    tile_size: int | None = _option(None, "tile edge in pixels (default: the model's)")
    tile_overlap: int | None = _option(None, "tile overlap in pixels (default: the model's)", flag="--overlap")
    batch_size: int | None = _option(
        None, "tiles per model call (default: on the CPU up to 4, as many as keep a run near 500 MB; on a GPU as "
        "many as half its free memory holds, up to 64)", minimum=1)
    water_threshold: float | None = _option(None, "water probability threshold (default: the model's)",
                                            task="water", flag="--threshold")
    block_size: int | None = _option(
        None, "output block edge in pixels, bounds memory (default 512, 2048 on a GPU)", minimum=TILE_MULTIPLE)
    input_units: InputUnits | str = _option(
        InputUnits.AUTO, "units of the input band: ALOS-2 amplitude DN, linear power, dB or relative brightness "
        "(an 8-bit display stretch: contrasts only) (default auto: detected, the decision is printed)",
        choices=tuple(InputUnits), spellings=UNITS_FLAGS)
    calibration_factor: float = _option(  # dB, for ALOS-2 DN
        ALOS2_CALIBRATION_FACTOR_DB, f"ALOS-2 DN calibration factor in dB (default {ALOS2_CALIBRATION_FACTOR_DB:g})")
    speckle_filter: SpeckleFilter | str = _option(
        SpeckleFilter.NONE, "speckle filter applied before the model (default none)", choices=tuple(SpeckleFilter),
        spellings=FILTER_FLAGS)
    filter_size: int = _option(7, "speckle filter window in pixels (default 7)")  # edge in pixels
    output_grid: str = _option(
        "input", "grid of the results when the input is read resampled to the model's pixel size: the input's "
        "(default) or the model's", choices=OUTPUT_GRIDS)
    method: str = _option(
        "model", "model (default), or threshold: an automatic backscatter threshold found for the whole raster, "
        "no model (the model only sets the grid and the legend)", choices=WATER_METHODS, task="water")
    threads: int | None = _option(None, "ONNX Runtime CPU threads (default: one per physical core)", minimum=1)
    precision: str = _option(
        "auto", "model arithmetic: auto (default: fp16 on a GPU where it classifies the first batch as fp32 does "
        "on 99 %% of the pixels, else fp32), fp32 or fp16", choices=PRECISIONS)
    area: AreaOfInterest | None = _option(  # on the command line: --extent and --mask
        None, "map only this extent / inside these polygons (default: the whole raster)")


def check_options(options: RunOptions) -> None:
    """Every check of the run options that needs neither the model nor the raster, with the
    messages users see (QGIS runs it when it checks the parameters, before a run); the model's
    defaults and limits are checked once the model is loaded (`settings.model_defaults`)."""
    _check_choice(options, "device")
    _check_choice(options, "precision")
    _check_choice(options, "speckle_filter")
    filter_halo(SpeckleFilter(options.speckle_filter), options.filter_size)  # refuses a size the filter lacks
    _check_choice(options, "output_grid")
    _check_choice(options, "method")
    if options.method == "threshold" and options.water_threshold is not None:
        raise OptionError(f"The water probability threshold ({options.water_threshold:g}) applies to the model; "
                          f"METHOD=threshold finds its own threshold in dB. Leave THRESHOLD empty.")
    _check_choice(options, "input_units")
    check_calibration_factor(options.calibration_factor)
    if options.tile_size is not None:
        check_tile_size(options.tile_size)
    if options.tile_overlap is not None:
        check_overlap(options.tile_overlap, options.tile_size)
    if options.batch_size is not None:
        check_batch_size(options.batch_size)
    if options.water_threshold is not None:
        check_threshold(options.water_threshold)
    if options.threads is not None and options.threads < run_option("threads").minimum:
        raise OptionError(f"Thread count {options.threads} is invalid: use 1 or more, or leave it empty for one "
                          f"thread per physical core.")
    if options.block_size is not None and options.block_size < run_option("block_size").minimum:
        raise OptionError(f"Block size {options.block_size} is invalid: use at least {TILE_MULTIPLE} px.")


def _check_choice(options: RunOptions, name: str) -> None:
    """Refuse a value of the option ``name`` that is not one of its choices (an enum's: by its value)."""
    value, choices = getattr(options, name), run_option(name).choices
    if value in choices:
        return
    words = option_words(name)
    raise OptionError(f"Unknown {name.replace('_', ' ')} '{value}'. Choose one of: {', '.join(words)}.")


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
    if batch < run_option("batch_size").minimum:
        raise OptionError(f"Batch size {batch} is invalid: use 1 or more.")


def check_threshold(threshold: float, model_default: float | None = None) -> None:
    if not 0.0 < threshold < 1.0:
        default = f" (the model's default is {model_default})" if model_default is not None else ""
        raise OptionError(f"Water threshold {threshold} is invalid: choose a probability between 0 and 1"
                          f"{default}.")

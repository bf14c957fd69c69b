"""How a run decides: with the task's model (`MODEL`), or, for water, with a backscatter threshold found
for the whole raster (`THRESHOLD`: no model runs; the model only sets the working grid and the legend).
Each method loads what it needs, plans its blocks and streams them (`run.Run` calls them in its phases)."""

from __future__ import annotations

import pathlib

from ..errors import ModelContractError, OptionError
from .contract import NORM_SCENE_LAND, SCENE_NORM_MODES, ModelContract, bundled_model_path
from .run_input import familiar_range, scene_statistics
from .session import ModelSession
from .settings import ModelDefaults, Settings, default_block_size, fit_batch_size, model_defaults
from .streaming import blocks_of, stream_model, stream_threshold
from .threshold import find_water_threshold, sample_tiles, water_ceiling
from ..rasters.windows import TilePlan


def resolve_model_path(task_name: str, model_path) -> pathlib.Path:
    """The model file given, or the task's bundled model."""
    if model_path:
        return pathlib.Path(model_path)
    bundled = bundled_model_path(task_name)
    if not bundled.is_file():
        raise ModelContractError(
            f"The bundled {task_name} model is missing ({bundled}). Reinstall the plugin, build it with "
            f"'make train-bundled', or choose a model file.")
    return bundled


class ModelMethod:
    """The task's ONNX model, run tile by tile over the blocks."""

    name = "model"
    checks_distribution = True  # whether the input is compared with the model's training data

    def load(self, run) -> tuple[ModelContract, ModelSession, ModelDefaults]:
        """(contract, session, the model's defaults merged with the options), logged."""
        options, log = run.options, run.log
        session = ModelSession(run.model_path, options.device, options.threads, options.precision)
        contract = ModelContract.from_metadata(session.metadata, str(run.model_path), expected_task=run.task.name)
        defaults = model_defaults(options, contract, session.fixed_tile_size, log, run.units.calibrated)
        log(f"Model: {contract.model_name}" + (f" (trained on {contract.trained_on})" if contract.trained_on else ""))
        log(f"Execution provider: {session.providers[0]}")
        log(f"ONNX Runtime threads: {session.threads}" + (
            " (one per physical core)" if options.threads is None else
            " (as set)" if session.threads == options.threads else
            f" (THREADS {options.threads} capped at the {session.threads} CPUs this process may use)"))
        if session.precision_note:
            log(session.precision_note)
        return contract, session, defaults

    def block_size(self, run) -> int:
        return default_block_size(run.defaults, run.session.on_gpu, run.task.channels(run.contract),
                                  run.source.band_reader.width, run.log)

    def plan(self, run, block_size: int, progress) -> tuple[Settings, TilePlan, list]:
        """(settings, tile plan, every block): the scene's levels, the confidence range, the batch that fits."""
        contract, log, defaults, source = run.contract, run.log, run.defaults, run.source
        scene = familiar = None
        if contract.norm_mode in SCENE_NORM_MODES:
            scene = scene_statistics(source, run.input_path, run.options.band)
            level = "land median" if contract.norm_mode == NORM_SCENE_LAND else "median"
            log(f"Scene normalisation: {level} {scene.level(contract.norm_mode):.2f} dB removed (from "
                f"{scene.pixels} pixels sampled over the whole raster; scene median "
                f"{scene.median:.2f} dB); the map does not depend on the absolute calibration")
        if run.task.holds_confidence and run.extra_path:
            familiar = familiar_range(contract, log)
        plan = TilePlan(source.band_reader.width, source.band_reader.height, defaults.tile_size,
                        defaults.tile_overlap, block_size)
        batch = fit_batch_size(defaults, run.options.batch_size, run.task.channels(contract), plan,
                               run.session.on_gpu, run.session.fixed_tile_size, log)
        settings = Settings(block_size, defaults.tile_size, defaults.tile_overlap, batch, defaults.water_threshold,
                            scene=scene, familiar_db=familiar)
        return settings, plan, [block for row in plan.block_rows() for block in row]

    def runs(self, run, block) -> bool:
        """Whether ``block`` may hold data (else left to the outputs' nodata fill)."""
        return run.coverage.has_data(run.tile_plan.read_window(block))

    def plan_line(self, run, all_blocks) -> str:
        settings = run.settings
        return (f"Tiles: {run.tile_plan.tile_count} of {settings.tile_size} px with {settings.tile_overlap} px "
                f"overlap, batches of {settings.batch_size}, {len(all_blocks)} block(s) of up to "
                f"{run.tile_plan.block_size} px")

    def stream(self, run, outputs, progress) -> tuple[int, int]:
        return stream_model(run, outputs, lambda percent: progress(2.0 + 0.98 * percent))

    def done(self, tiles_run: int) -> str:
        return f"{tiles_run} tiles"


class ThresholdMethod:
    """Water darker than a threshold found for the whole raster, from tiles sampled over it (threshold.py)."""

    name = "threshold"
    checks_distribution = False

    def load(self, run) -> tuple[ModelContract, None, None]:
        contract = ModelContract.from_onnx(run.model_path, expected_task=run.task.name)
        run.log(f"Method: automatic backscatter threshold, no model; the model '{contract.model_name}' only sets "
                f"the {contract.gsd_m:g} m working grid and the legend")
        return contract, None, None

    def block_size(self, run) -> int:
        return default_block_size(None, False, 1, run.source.band_reader.width, run.log)

    def plan(self, run, block_size: int, progress) -> tuple[Settings, None, list]:
        """Found before any output file exists; up to the first tenth of the progress bar."""
        source, log = run.source, run.log
        ceiling = water_ceiling(run.polarisation) if run.units.calibrated else None
        tiles = sample_tiles(source.read, source.band_reader.width, source.band_reader.height,
                             lambda percent: progress(2.0 + 0.08 * percent), run.is_cancelled)
        threshold = find_water_threshold(tiles, ceiling)
        if threshold.db is None:
            log(f"Water threshold: none ({threshold.how})")
        else:
            log(f"Water threshold: {threshold.db:.2f} dB, pixels darker are water ({threshold.how})")
        if threshold.warning:
            run.warn(threshold.warning)
        settings = Settings(block_size, water_threshold_db=threshold.db)
        return settings, None, blocks_of(source.band_reader.width, source.band_reader.height, block_size)

    def runs(self, run, block) -> bool:
        return run.coverage.has_data(block)

    def plan_line(self, run, all_blocks) -> str | None:
        return None

    def stream(self, run, outputs, progress) -> tuple[int, int]:
        return 0, stream_threshold(run.blocks, run.source, run.settings.water_threshold_db, outputs[0],
                                   lambda percent: progress(10.0 + 0.9 * percent), run.is_cancelled)

    def done(self, tiles_run: int) -> str:
        return "thresholded"


MODEL, THRESHOLD = ModelMethod(), ThresholdMethod()


def method_for(task, options, extra_path):
    """The method of this run; refuses what the threshold cannot give (`check_options` refuses a
    probability threshold with it)."""
    if options.method != "threshold":
        return MODEL
    if task.name != "water":
        raise OptionError("The threshold method detects water only; land-cover classes need METHOD=model.")
    if extra_path:
        raise OptionError("METHOD=threshold gives no water probability, only the mask: leave the water "
                          "probability output empty, or use METHOD=model.")
    return THRESHOLD

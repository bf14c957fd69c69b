"""One run of the engine as named phases over one object (`Run`): prepare → plan → stream → warp back →
commit → report. Everything is read and checked in `prepare` and `plan`, before any output file exists;
the outputs are then written in one transaction (transaction.py), committed together or not at all.
The task (land cover / water, tasks.py) and the method (model / threshold, methods.py) carry what differs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from osgeo import gdal

from ..rasters.area import input_view
from ..rasters.coverage import ModelGridCoverage
from .distribution import check_input_distribution
from .contract import ModelContract
from .methods import method_for, resolve_model_path
from .options import RunOptions, check_options
from .output_specs import StyleWriter, create_outputs, space_needed, style_files
from .progress import TimeLeftLog
from ..rasters.reading import BackscatterReader, BandReader, open_raster
from ..rasters.resample import check_pixel_size, decide_model_grid
from .run_input import (anchor_relative, band_line, data_coverage, input_units, model_input_reader, no_valid_pixel,
                        warn_cross_polarised)
from ..sar.polarisation import band_polarisation
from ..sar.units import sample_valid_values
from ..sar.speckle import SpeckleFilter
from .tasks import Task
from .warp_back import warp_back
from ..rasters.disk_space import check_free_space
from ..rasters.output_checks import check_outputs
from ..rasters.transaction import PendingFiles
from ..rasters.writer import OutputRaster, discarded_on_error, hand_over


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


class Run:
    """The state of one run, filled phase by phase; ``options`` (the user's request) is only read, and
    what the run resolves from it is `settings` (frozen), set once in `plan`."""

    def __init__(self, task: Task, input_path, output_path, model_path, extra_path, options: RunOptions,
                 progress: Callable[[float], None] | None = None, is_cancelled: Callable[[], bool] | None = None,
                 log: Callable[[str], None] | None = None, style: StyleWriter | None = None,
                 warn: Callable[[str], None] | None = None):
        self.started = time.perf_counter()
        self.task, self.options, self.style = task, options, style
        self.input_path, self.output_path, self.model_path, self.extra_path = (input_path, output_path, model_path,
                                                                               extra_path)
        self.log = log or (lambda message: None)
        self.warn = warn or (lambda message: self.log(f"Warning: {message}"))
        self.progress = TimeLeftLog(progress or (lambda percent: None), self.log)
        self.is_cancelled = is_cancelled or (lambda: False)
        check_options(options)
        self.speckle_filter = SpeckleFilter(options.speckle_filter)
        self.method = method_for(task, options, extra_path)

    def execute(self) -> RunReport:
        # With an area of interest the run reads (and its outputs cover) only the area's window of the
        # input; an alpha band masks it.
        options = self.options
        with input_view(open_raster(self.input_path), options.area, options.band, str(self.input_path)) as (
                dataset, note):
            if note:
                self.log(note)
            self.prepare(dataset)
            self.plan()
            with PendingFiles() as transaction:  # commits on leaving the block; on an error, removes everything
                outputs = self.stream(transaction)
                if self.warps_back:
                    outputs = self.warp_back(outputs)
                self.commit(outputs, transaction)
            return self.report()

    # ---------------------------------------------------------------- prepare

    def prepare(self, dataset: gdal.Dataset) -> None:
        """Read and check what the run needs: the band (sampled once), its units, the outputs' paths, the
        model (or its contract), the grid the model reads on, and the input's fit to the model."""
        options, log = self.options, self.log
        self.dataset = dataset
        band_reader = BandReader(dataset, options.band, str(self.input_path))
        sample = sample_valid_values(dataset, options.band)
        self.units = input_units(options, dataset, str(self.input_path), sample, log, self.warn)
        self.model_path = resolve_model_path(self.task.name, self.model_path)
        self._check_outputs()
        self.contract, self.session, self.defaults = self.method.load(self)
        self.polarisation = band_polarisation(dataset, options.band)
        log(band_line(dataset, options.band, self.polarisation))
        self.input_reader = BackscatterReader(band_reader, self.units, options.calibration_factor, sample=sample)
        check_pixel_size(dataset, self.contract.gsd_m, str(self.input_path))
        self.grid = decide_model_grid(dataset, self.contract.gsd_m)
        self.source = model_input_reader(band_reader, self.grid, self.units, self.speckle_filter, options,
                                         self.contract.gsd_m, log, sample)
        if not self.units.calibrated:
            anchor_relative(self.input_reader, self.source, log)
        if self.method.checks_distribution:
            warn_cross_polarised(options.band, self.polarisation, self.warn)
            distribution = check_input_distribution(self.input_reader.sample_db(), self.contract,
                                                    calibrated=self.units.calibrated)
            log(distribution.summary)
            for warning in distribution.warnings:
                self.warn(warning)
        if self.speckle_filter is not SpeckleFilter.NONE:
            log(f"Speckle filter: {self.speckle_filter.value}, {options.filter_size} x {options.filter_size} px"
                + (" (on the model grid)" if self.grid is not None else ""))
        self.warps_back = self.grid is not None and options.output_grid == "input"
        # The last 5 % are closing the outputs, when GDAL compresses the blocks it still caches.
        self.stream_share = 85.0 if self.warps_back else 95.0

    def _check_outputs(self) -> None:
        label = self.task.extra_label
        outputs = check_outputs({"output": self.output_path, **({label: self.extra_path} if self.extra_path else {})},
                                {"input raster": self.input_path, "model": self.model_path},
                                {"output": gdal.GDT_Byte, label: gdal.GDT_Float32}, styled=self.style is not None)
        self.output_path, self.extra_path = outputs["output"], outputs.get(label)

    def _streaming_progress(self, percent: float) -> None:
        """``percent`` of the part of the progress bar before the warp back."""
        self.progress(percent * self.stream_share / 100.0)

    # ---------------------------------------------------------------- plan

    def plan(self) -> None:
        """Where the input holds data (the first 2 % of the progress bar), the settings, the blocks to run,
        and the room the outputs need; still before any output exists."""
        options = self.options
        block_size = options.block_size if options.block_size is not None else self.method.block_size(self)
        self.input_coverage = data_coverage(self.input_reader, self.input_path, options.band,
                                            lambda percent: self.progress(percent * self.stream_share / 5000.0),
                                            self.is_cancelled)
        self.coverage = self.input_coverage if self.grid is None else \
            ModelGridCoverage(self.input_coverage, self.dataset, self.source.band_reader.dataset)
        self.settings, self.tile_plan, all_blocks = self.method.plan(self, block_size, self._streaming_progress)
        self.blocks = [block for block in all_blocks if self.method.runs(self, block)]
        line = self.method.plan_line(self, all_blocks)
        if line:
            self.log(line)
        if len(self.blocks) < len(all_blocks):
            self.log(f"Data coverage: {len(all_blocks) - len(self.blocks)} of {len(all_blocks)} block(s) hold no "
                     f"valid pixel and are skipped (data in {self.input_coverage.share:.0%} of the input)")
        self.specs = self.task.output_specs(self.contract, self.output_path, self.extra_path)
        check_free_space(space_needed(self.specs, self.dataset, self.source.band_reader.dataset, self.warps_back))
        self.add_styles = style_files(self.style, self.specs, self.contract)

    # ---------------------------------------------------------------- stream, warp back, commit

    def stream(self, transaction: PendingFiles) -> list[OutputRaster]:
        """The outputs written on the grid the model reads (results to warp back: in a scratch folder of
        ``transaction``, removed when it ends); refuses a run that found no valid pixel."""
        if self.warps_back:
            scratch = transaction.scratch_folder(self.output_path)
            paths = [scratch / f"{index}.tif" for index in range(len(self.specs))]
        else:
            paths = [spec.path for spec in self.specs]
        outputs = create_outputs(self.specs, paths, self.source.band_reader.dataset)
        with discarded_on_error(outputs):
            self.tiles_run, self.valid_pixels = self.method.stream(self, outputs, self._streaming_progress)
            if self.valid_pixels == 0:
                raise no_valid_pixel(self.options.band, self.input_path, self.input_reader.band_reader.nodata)
            if self.warps_back:
                for output in outputs:
                    output.close()  # the warp reads them from their files
        return outputs

    def warp_back(self, model_grid_outputs: list[OutputRaster]) -> list[OutputRaster]:
        """The model-grid results onto the input grid: the outputs to commit."""
        finals, self.valid_pixels = warp_back(
            self.specs, model_grid_outputs, self.dataset, self.input_reader, self.input_coverage, self.contract.gsd_m,
            self.settings.block_size, lambda percent: self.progress(self.stream_share + percent / 10.0),
            self.is_cancelled)
        return finals

    def commit(self, outputs: list[OutputRaster], transaction: PendingFiles) -> None:
        """Hand the outputs, with their style files, to ``transaction``, which moves them into place together."""
        hand_over(outputs, transaction, self.add_styles)

    # ---------------------------------------------------------------- report

    def report(self) -> RunReport:
        self.progress(100.0)
        seconds = time.perf_counter() - self.started
        self.log(f"Done: {self.method.done(self.tiles_run)} in {seconds:.1f} s, {self.valid_pixels} valid pixels")
        session, settings = self.session, self.settings
        return RunReport(output_path=str(self.output_path),
                         extra_output_path=str(self.extra_path) if self.extra_path else None,
                         contract=self.contract, providers=list(session.providers) if session else [],
                         tiles=self.tiles_run, tiles_planned=self.tile_plan.tile_count if self.tile_plan else 0,
                         batch_size=settings.batch_size, precision=session.precision if session else "",
                         seconds=seconds, valid_pixels=self.valid_pixels, method=self.method.name,
                         water_threshold_db=settings.water_threshold_db)

"""Command line: python -m model.inference segment|water INPUT OUTPUT [options]."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys

from .area import AreaOfInterest, parse_extent
from .engine import OUTPUT_GRIDS, WATER_METHODS, RunOptions, detect_water, segment
from .errors import CancelledError, InferenceError, gdal_exceptions
from .sar_input import ALOS2_CALIBRATION_FACTOR_DB, UNITS_FLAGS
from .session import DEVICES, PRECISIONS
from .speckle import SpeckleFilter

# Short command-line spellings of the units and filters (the engine takes the values after them).
FILTER_FLAGS = {"none": SpeckleFilter.NONE, "lee": SpeckleFilter.LEE, "refined-lee": SpeckleFilter.REFINED_LEE}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.inference",
                                     description="Classify a SAR (HH backscatter) GeoTIFF with a SAR LULC ONNX model.")
    tasks = parser.add_subparsers(dest="task", required=True)
    for name, help_text, extra, extra_help in (
            ("segment", "land-use/land-cover class raster", "--confidence", "also write the max class probability"),
            ("water", "water mask", "--probability", "also write the water probability")):
        task = tasks.add_parser(name, help=help_text)
        task.add_argument("input", help="input SAR raster (GeoTIFF or any GDAL raster with a CRS)")
        task.add_argument("output", help="output GeoTIFF")
        add_run_arguments(task, name)
        task.add_argument(extra, dest="extra", metavar="PATH", help=extra_help)
        task.add_argument("--extent", metavar="XMIN,YMIN,XMAX,YMAX",
                          help="map only this extent, in the input raster's CRS (the outputs cover it)")
        task.add_argument("--mask", metavar="POLYGONS",
                          help="map only inside these polygons (any OGR source, any CRS; 'file.gpkg|layername=x' "
                               "picks a layer): the outputs cover their bounding box, nodata outside them")
    return parser


def add_run_arguments(task: argparse.ArgumentParser, name: str) -> None:
    """The run options of the task ``name`` ("segment" or "water"), shared with the many-tile command line."""
    task.add_argument("--model", help="ONNX model (default: the plugin's bundled model)")
    task.add_argument("--band", type=int, default=1, help="input band (default 1)")
    task.add_argument("--input-units", choices=UNITS_FLAGS, default="auto",
                      help="units of the input band: ALOS-2 amplitude DN, linear power, dB or relative "
                           "brightness (an 8-bit display stretch: contrasts only) "
                           "(default auto: detected, the decision is printed)")
    task.add_argument("--calibration-factor", type=float, default=ALOS2_CALIBRATION_FACTOR_DB,
                      help=f"ALOS-2 DN calibration factor in dB (default {ALOS2_CALIBRATION_FACTOR_DB:g})")
    task.add_argument("--speckle-filter", choices=FILTER_FLAGS, default="none",
                      help="speckle filter applied before the model (default none)")
    task.add_argument("--filter-size", type=int, default=7, help="speckle filter window in pixels (default 7)")
    task.add_argument("--output-grid", choices=OUTPUT_GRIDS, default="input",
                      help="grid of the results when the input is read resampled to the model's pixel size: "
                           "the input's (default) or the model's")
    task.add_argument("--device", choices=DEVICES, default="auto", help="execution device (default auto)")
    task.add_argument("--tile-size", type=int, help="tile edge in pixels (default: the model's)")
    task.add_argument("--overlap", type=int, help="tile overlap in pixels (default: the model's)")
    task.add_argument("--batch-size", type=int,
                      help="tiles per model call (default: on the CPU up to 4, as many as keep a run near "
                           "500 MB; on a GPU as many as half its free memory holds, up to 64)")
    task.add_argument("--precision", choices=PRECISIONS, default="auto",
                      help="model arithmetic: auto (default: fp16 on a GPU where it classifies the first batch "
                           "as fp32 does on 99 %% of the pixels, else fp32), fp32 or fp16")
    task.add_argument("--threads", type=int, help="ONNX Runtime CPU threads (default: one per physical core)")
    if name == "water":
        task.add_argument("--threshold", type=float, help="water probability threshold (default: the model's)")
        task.add_argument("--method", choices=WATER_METHODS, default="model",
                          help="model (default), or threshold: an automatic backscatter threshold found for the "
                               "whole raster, no model (the model only sets the grid and the legend)")


def run_options(args: argparse.Namespace) -> RunOptions:
    """The engine's RunOptions from the arguments of `add_run_arguments`."""
    return RunOptions(band=args.band, device=args.device, tile_size=args.tile_size, tile_overlap=args.overlap,
                      batch_size=args.batch_size, water_threshold=getattr(args, "threshold", None),
                      input_units=UNITS_FLAGS[args.input_units], calibration_factor=args.calibration_factor,
                      speckle_filter=FILTER_FLAGS[args.speckle_filter], filter_size=args.filter_size,
                      output_grid=args.output_grid, method=getattr(args, "method", "model"), threads=args.threads,
                      precision=args.precision)


class Console:
    """A command-line run on the terminal: progress every 10 %, log and warning lines on stderr, Ctrl-C as a
    cancel (the run stops and cleans up), and an error as its message and exit code (130 cancelled, 2 refused)."""

    def __init__(self):
        self.interrupted = False
        self._shown = -10.0
        signal.signal(signal.SIGINT, self._interrupt)

    def _interrupt(self, *_):
        self.interrupted = True

    def progress(self, percent: float) -> None:
        if percent >= self._shown + 10 or percent >= 100 > self._shown:
            self._shown = percent
            print(f"{percent:5.1f} %", file=sys.stderr, flush=True)

    def callbacks(self) -> dict:
        return {"progress": self.progress, "is_cancelled": lambda: self.interrupted,
                "log": lambda line: print(line, file=sys.stderr),
                "warn": lambda line: print(f"WARNING: {line}", file=sys.stderr)}

    @staticmethod
    def run(work):
        """(``work()``'s result, 0), or (None, the exit code) once its error is printed."""
        try:
            return work(), 0
        except CancelledError as error:
            print(f"error: {error}", file=sys.stderr)
            return None, 130
        except InferenceError as error:
            print(f"error: {error}", file=sys.stderr)
            return None, 2


@gdal_exceptions()
def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    area, code = console.run(lambda: AreaOfInterest(parse_extent(args.extent) if args.extent else None, args.mask)
                             if args.extent or args.mask else None)
    if code:
        return code
    options = dataclasses.replace(run_options(args), area=area)
    run = segment if args.task == "segment" else detect_water
    report, code = console.run(lambda: run(args.input, args.output, args.model, args.extra, options,
                                           **console.callbacks()))
    if code:
        return code
    print(report.output_path)
    if report.extra_output_path:
        print(report.extra_output_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

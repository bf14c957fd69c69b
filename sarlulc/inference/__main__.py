"""Command line: python -m sarlulc.inference segment|water INPUT OUTPUT [options]."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys

from ..rasters.area import AreaOfInterest, parse_extent
from .engine import RunOptions, detect_water, segment
from ..errors import CancelledError, InferenceError, gdal_exceptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sarlulc.inference",
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


# The order --help lists the run options in (RunOptions' own order is that of its saved forms, as tile manifests);
# an option missing here (block size, area: --extent and --mask) is not offered.
HELP_ORDER = ("band", "input_units", "calibration_factor", "speckle_filter", "filter_size", "output_grid", "device",
              "tile_size", "tile_overlap", "batch_size", "precision", "threads", "water_threshold", "method")


def add_run_arguments(task: argparse.ArgumentParser, name: str) -> None:
    """The run options of the task ``name`` ("segment" or "water"), shared with the many-tile command line:
    each RunOptions field offered on the command line, as its `Option` describes it."""
    task.add_argument("--model", help="ONNX model (default: the plugin's bundled model)")
    offered = [each for each in dataclasses.fields(RunOptions) if each.name in HELP_ORDER]
    for each in sorted(offered, key=lambda each: HELP_ORDER.index(each.name)):
        option = each.metadata["option"]
        if option.task not in (None, name):
            continue
        flag = option.flag or "--" + each.name.replace("_", "-")
        if option.spellings:
            default = next(word for word, value in option.spellings.items() if value == each.default)
            task.add_argument(flag, dest=each.name, choices=option.spellings, default=default, help=option.help)
        elif option.choices:
            task.add_argument(flag, dest=each.name, choices=option.choices, default=each.default, help=option.help)
        else:
            kind = float if "float" in str(each.type) else int
            task.add_argument(flag, dest=each.name, type=kind, default=each.default, help=option.help,
                              metavar=flag[2:].replace("-", "_").upper())


def run_options(args: argparse.Namespace) -> RunOptions:
    """The engine's RunOptions from the arguments of `add_run_arguments` (a task's other options: their defaults)."""
    values = {}
    for each in dataclasses.fields(RunOptions):
        if hasattr(args, each.name):
            spellings = each.metadata["option"].spellings
            value = getattr(args, each.name)
            values[each.name] = spellings[value] if spellings else value
    return RunOptions(**values)


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

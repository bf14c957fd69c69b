"""Command line: python -m sarlulc.tiles segment|water INPUT... --output-folder FOLDER [options].

The run options are those of ``python -m sarlulc.inference`` (same spellings, same meaning).
Exit codes: 0 every tile finished, 1 some tile failed (the others are kept), 2 refused before any
work, 130 cancelled (Ctrl-C; finished tiles are kept).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..inference.__main__ import Console, add_run_arguments, run_options
from .run import map_tiles


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sarlulc.tiles",
        description="Map many SAR tiles (a country of ALOS-2 mosaic tiles) in one resumable, seam-free run: one "
                    "Cloud-Optimised GeoTIFF per tile, a VRT mosaic of them, and a manifest; on this machine or on "
                    "Dask workers.")
    tasks = parser.add_subparsers(dest="task", required=True)
    for name, help_text, scores_help in (
            ("segment", "land-use/land-cover classes", "also write the max class probability of each tile"),
            ("water", "water mask", "also write the water probability of each tile")):
        task = tasks.add_parser(name, help=help_text)
        task.add_argument("inputs", nargs="+",
                          help="the tiles: a folder of GeoTIFFs, tile files, a VRT of tiles, or a text file listing "
                               "one tile path per line")
        task.add_argument("--output-folder", "-o", required=True,
                          help="where the tiles' COGs, the mosaic VRT and manifest.json go (made if missing); run "
                               "again with the same folder to resume")
        add_run_arguments(task, name)
        task.add_argument("--scores", action="store_true", help=scores_help)
        task.add_argument("--mosaic-cog", action="store_true",
                          help="also write one COG of the whole mosaic (once every tile is finished)")
        task.add_argument("--workers", type=int, default=1,
                          help="local Dask worker processes (default 1: no Dask, tiles run here one after another); "
                               "each gets cores / workers ONNX Runtime threads unless --threads is set")
        task.add_argument("--scheduler", metavar="ADDRESS",
                          help="run on the Dask cluster of this scheduler (tcp://host:8786) instead of local workers; "
                               "inputs and output folder must be at the same paths on every worker")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    console = Console()  # Ctrl-C stops, finished tiles are kept
    report, code = console.run(lambda: map_tiles(
        args.inputs, args.output_folder, "lulc" if args.task == "segment" else "water", args.model,
        run_options(args), scores=args.scores, mosaic_cog=args.mosaic_cog, workers=args.workers,
        scheduler=args.scheduler, **console.callbacks()))
    if code:
        return code
    print(report.summary(), file=sys.stderr)
    if report.failed:
        command = shlex.join(["python", "-m", "sarlulc.tiles"] + list(argv if argv is not None else sys.argv[1:]))
        print(f"To run the failed tiles again (finished ones are skipped): {command}", file=sys.stderr)
        return 1
    if report.mosaic:
        print(report.mosaic)
    return 0


if __name__ == "__main__":
    sys.exit(main())

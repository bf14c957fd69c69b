"""Figures of the many-tile run (sarlulc/tiles): figures and ratios, not pass/fail.

    make bench-tiles                                   # 4096 px scene as a 4 x 4 grid, bundled LULC model
    make bench-tiles ARGS="--size 2048 --workers 2"

One scene is cut into a grid of tiles and mapped (a) in one run over the whole scene (segment(), all
cores), (b) as tiles on 1 worker of 1 thread (no Dask), (c) on 1 worker with all cores, (d) on a Dask
LocalCluster of N workers of 1 thread each. For each: wall time, per-tile time, throughput in Mpx/s of
map made, and the agreement of its mosaic with (a). Then the scaling of (d) over (b), for the whole run
and per tile (a long run's rate, without Dask's start and the last tile's wait), against the most this
machine allows: the model alone, in one process and in N side by side. Then the serial share of a run
(planning: finding and checking tiles, the inputs' VRT, the manifest; the mosaic VRT; Dask's start), and
an estimate for Japan (131 tiles of 12000 x 12000 px) on this machine from the measured rate per pixel the
engine runs (each tile's window with its margins) and the measured serial costs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

from sarlulc.inference.engine import RunOptions, segment  # noqa: E402
from sarlulc.inference.contract import ModelContract, bundled_model_path  # noqa: E402
from sarlulc.tiles.run import map_tiles, read_window  # noqa: E402

JAPAN_TILES, JAPAN_TILE_PX = 131, 12000


def make_tiles(folder: pathlib.Path, size: int, grid: int) -> tuple[str, pathlib.Path]:
    from tests.factories import write_sar_raster

    scene = write_sar_raster(folder / "scene.tif", size, size, nodata_box=(0, 0, size // 16, size // 16))
    tiles = folder / "tiles"
    tiles.mkdir()
    step = size // grid
    for row in range(grid):
        for column in range(grid):
            gdal.Translate(str(tiles / f"t{row}{column}.tif"), scene, srcWin=[column * step, row * step, step, step],
                           creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
    return scene, tiles


def window_pixels(size: int, grid: int, margin: int, stride: int) -> int:
    """Pixels the engine runs over for the tiles of a grid (each tile's window with its margins)."""
    from sarlulc.rasters.windows import Window

    step = size // grid
    return sum(read_window(Window(c * step, r * step, step, step), margin, stride, size, size).width
               * read_window(Window(c * step, r * step, step, step), margin, stride, size, size).height
               for r in range(grid) for c in range(grid))


def model_loop_seconds(model: str, tile_size: int, batches: int) -> float:
    """Seconds one process takes to run ``batches`` batches of four tiles through the model on one
    ONNX Runtime thread: the engine's work with nothing around it."""
    from sarlulc.inference.session import CPU, load_session

    session = load_session(model, [CPU], threads=1)
    name = session.get_inputs()[0].name
    tiles = np.random.default_rng(0).normal(size=(4, 1, tile_size, tile_size)).astype(np.float32)
    session.run(None, {name: tiles})
    started = time.perf_counter()
    for _ in range(batches):
        session.run(None, {name: tiles})
    return time.perf_counter() - started


def machine_ceiling(model: str, tile_size: int, processes: int, batches: int = 24) -> float:
    """How much faster ``processes`` processes of one thread run the model than one: the most any
    number of workers can gain on this machine (shared caches and memory bandwidth take the rest)."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        alone = pool.apply(model_loop_seconds, (model, tile_size, batches))
        side_by_side = pool.starmap(model_loop_seconds, [(model, tile_size, batches)] * processes)
    return processes * alone / max(side_by_side)


def agreement(path: str, reference: np.ndarray) -> float:
    classes = gdal.Open(path).ReadAsArray()
    valid = reference > 0
    return float((classes[valid] == reference[valid]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="scene edge in px (default 4096)")
    parser.add_argument("--grid", type=int, default=4, help="tiles per side (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers of (d) (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    model = bundled_model_path("lulc")
    contract = ModelContract.from_onnx(model, expected_task="lulc")
    cores = os.cpu_count() or 1
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench_tiles_"))
    try:
        scene, tiles = make_tiles(folder, args.size, args.grid)
        tile_px = (args.size // args.grid) ** 2
        total_px = args.size ** 2
        print(f"Scene {args.size} x {args.size} px as {args.grid} x {args.grid} tiles of {args.size // args.grid} px; "
              f"bundled LULC model ({contract.tile_size} px tiles, {contract.tile_overlap} px overlap); {cores} cores")

        started = time.perf_counter()
        segment(scene, folder / "whole.tif", model)
        whole_s = time.perf_counter() - started
        reference = gdal.Open(str(folder / "whole.tif")).ReadAsArray()
        print(f"(a) one run over the whole scene: {whole_s:.1f} s, {total_px / whole_s / 1e6:.2f} Mpx/s")

        runs = {}
        for label, workers, threads in (("(b) tiles, 1 worker x 1 thread", 1, 1),
                                        (f"(c) tiles, 1 worker x {cores} threads", 1, None),
                                        (f"(d) tiles, Dask {args.workers} workers x 1 thread", args.workers, 1)):
            started = time.perf_counter()
            report = map_tiles(tiles, folder / f"out_{workers}_{threads}", model_path=model,
                               options=RunOptions(threads=threads), workers=workers)
            seconds = time.perf_counter() - started
            runs[label] = (report, seconds)
            per_tile = np.array(report.tile_seconds)
            print(f"{label}: {seconds:.1f} s, {total_px / seconds / 1e6:.2f} Mpx/s of map; per tile "
                  f"{per_tile.mean():.1f} s (min {per_tile.min():.1f}, max {per_tile.max():.1f}); agreement with (a) "
                  f"{agreement(report.mosaic, reference):.4%}; planning {report.plan_seconds:.2f} s, mosaic "
                  f"{report.mosaic_seconds:.2f} s")
        (one, one_s), (_, all_s), (many, many_s) = runs.values()
        busy_one = one_s - one.plan_seconds - one.mosaic_seconds
        busy_many = many_s - many.plan_seconds - many.mosaic_seconds
        print(f"Scaling: {args.workers} workers x 1 thread run the tiles {busy_one / busy_many:.2f}x as fast as 1 "
              f"worker x 1 thread ({busy_one:.1f} s -> {busy_many:.1f} s, Dask's start included; whole run "
              f"{one_s / many_s:.2f}x)")
        per_tile = np.mean(one.tile_seconds) / np.mean(many.tile_seconds) * args.workers
        ceiling = machine_ceiling(str(model), contract.tile_size, args.workers)
        print(f"Per tile (a long run's rate): {per_tile:.2f}x; the model alone in {args.workers} processes side by "
              f"side runs {ceiling:.2f}x as fast as in one (this machine's ceiling)")
        serial = many.plan_seconds + many.mosaic_seconds
        print(f"Serial share of (d): planning {many.plan_seconds:.2f} s + mosaic {many.mosaic_seconds:.2f} s = "
              f"{serial / many_s:.1%} of {many_s:.1f} s; Dask start and scheduling about "
              f"{busy_many - sum(many.tile_seconds) / args.workers:.1f} s")

        stride = contract.tile_size - contract.tile_overlap
        margin = contract.tile_size
        run_px = window_pixels(args.size, args.grid, margin, stride)
        print(f"The engine ran over {run_px / 1e6:.1f} Mpx for {total_px / 1e6:.1f} Mpx of map "
              f"({run_px / total_px:.2f}x: margins of small tiles)")
        japan_window = (JAPAN_TILE_PX + 2 * margin + stride // 2) ** 2  # an inner tile, average stride alignment
        japan_px = JAPAN_TILES * JAPAN_TILE_PX ** 2
        plan_per_tile = many.plan_seconds / args.grid ** 2 * (JAPAN_TILE_PX ** 2 / tile_px) ** 0.5
        print(f"Japan, {JAPAN_TILES} tiles of {JAPAN_TILE_PX} px ({japan_px / 1e9:.1f} Gpx; the engine runs "
              f"{japan_window / JAPAN_TILE_PX ** 2:.2f}x that with margins), on this machine:")
        for label, (report, seconds) in runs.items():
            busy = seconds - report.plan_seconds - report.mosaic_seconds
            rate = run_px / busy  # engine px/s, all workers together
            hours = (JAPAN_TILES * japan_window / rate + JAPAN_TILES * plan_per_tile) / 3600
            print(f"  {label[4:]}: {hours:.1f} h ({rate / 1e6:.2f} Mpx/s of windows)")
        print(f"  (planning per tile scaled from {many.plan_seconds / args.grid ** 2:.2f} s by the tile edge: "
              f"{plan_per_tile:.1f} s; one run without tiles: {japan_px / (total_px / whole_s) / 3600:.1f} h, "
              f"with seams and no resume)")
        print("GPU: unmeasured here (no GPU machine); run `make bench ARGS=\"--device cuda\"` on one.")
    finally:
        if args.keep:
            print(f"Kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

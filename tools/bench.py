"""Throughput and memory of the inference core (figures and ratios, not pass/fail).

    make bench                                 # CPU, bundled LULC model, 1024..12000 px
    make bench ARGS="--sizes 1024,4096 --profile"
    make bench ARGS="--device cuda"            # the same comparison on a GPU (fp16 where it agrees)
    make bench ARGS="--device cuda --precision fp32"

(a) model only: the session run on every tile of the first raster, nothing else, with the batch
    size and threads the engine chose; (b) end to end: segment() on the same raster at its
    default settings (read, normalise, run, blend, write); both in Mpx/s and their ratio.
Then, per raster size, each run in a fresh process: time, Mpx/s, time per pixel relative to the
first size, tiles run against the plan's, and peak RSS. Then a mostly-empty JAXA-like mosaic
tile (EPSG:4326, UInt16 DN, nodata 1, strips; data in its southern twentieth) against the same
tile full of data. ``--profile`` prints the top cost centres of (b) (cProfile, all threads'
Python frames; time inside ONNX Runtime and GDAL is charged to the calls that wait for them).

Peak RSS includes GDAL's block cache, which the engine bounds during a run (memory.GDAL_CACHE_BYTES);
the children run with GDAL's default cache unless ``--gdal-cache-mb`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from sarlulc.inference.engine import RunOptions, segment  # noqa: E402
from sarlulc.inference.contract import ModelContract, bundled_model_path  # noqa: E402
from sarlulc.rasters.reading import BandReader, open_raster  # noqa: E402
from sarlulc.inference.normalisation import SceneStatistics, prepare_input  # noqa: E402
from sarlulc.inference.session import DEVICES, PRECISIONS, ModelSession  # noqa: E402
from sarlulc.rasters.windows import TilePlan  # noqa: E402
from sarlulc.errors import gdal_exceptions  # noqa: E402


def bench_model(folder: pathlib.Path, conv_layers: int) -> pathlib.Path:
    bundled = bundled_model_path("lulc")
    if bundled.is_file():
        return bundled
    from tests.factories import write_context_lulc_model

    return pathlib.Path(write_context_lulc_model(folder / "bench_lulc.onnx", tile_size=256, tile_overlap=64,
                                                 conv_layers=conv_layers, conv_channels=32))


def raster(folder: pathlib.Path, size: int) -> str:
    from tests.factories import write_sar_raster

    path = folder / f"sar_{size}.tif"
    if not path.exists():
        write_sar_raster(path, size, size, nodata_box=(0, 0, size // 8, size // 8))
    return str(path)


def mosaic_tile(folder: pathlib.Path, size: int, data_share: float) -> str:
    """A JAXA-like 25 m mosaic tile (see tests.factories.write_alos2_mosaic_tile) of ``size`` px
    whose southern ``data_share`` holds data, the rest nodata (DN 1)."""
    from tests.factories import write_alos2_mosaic_tile

    path = folder / f"mosaic_{size}_{round(100 * data_share)}.tif"
    if not path.exists():
        write_alos2_mosaic_tile(path, size=size, strip_rows=max(1, round(size * data_share)), ocean_fraction=0.2)
    return str(path)


def model_only(raster_path: str, model_path, batch_size: int, device: str,
               precision: str) -> tuple[float, int, float]:
    """Seconds spent in session.run alone over the plan's tiles holding data (read and normalised
    beforehand), tile count, and the seconds the session took to load (paid once end to end).
    The precision is settled on the first batch, as the engine does."""
    began = time.perf_counter()
    session = ModelSession(model_path, device, precision=precision)
    load_seconds = time.perf_counter() - began
    contract = ModelContract.from_metadata(session.metadata, str(model_path))
    dataset = open_raster(raster_path)
    reader = BandReader(dataset, 1, raster_path)
    plan = TilePlan(reader.width, reader.height, contract.tile_size, contract.tile_overlap, reader.width)
    raw, valid = reader.read(plan.raster)
    model_input = prepare_input(raw, valid, contract, SceneStatistics.of(raw[valid]))
    t = contract.tile_size
    tiles = [model_input[y:y + t, x:x + t][None] for y in plan.y_origins for x in plan.x_origins
             if valid[y:y + t, x:x + t].any()]
    warm_up = np.stack(tiles[:batch_size])  # as the engine's first batch would be
    if session.precision_pending:  # runs it in both precisions, warming up the one kept
        session.settle_precision(warm_up, lambda scores: scores.argmax(axis=1))
    else:
        session.run(warm_up)
    seconds = 0.0
    for start in range(0, len(tiles), batch_size):
        batch = np.stack(tiles[start:start + batch_size])
        began = time.perf_counter()
        session.run(batch)
        seconds += time.perf_counter() - began
    return seconds, len(tiles), load_seconds


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which (unlike ru_maxrss) does not carry
    the parent's peak over fork and exec."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except OSError:
        scale = 1024 * 1024 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def child(raster_path: str, model_path: str, output: str, batch_size: int | None, device: str, precision: str,
          profile: bool) -> None:
    """One end-to-end run; prints JSON with its time and peak RSS (run in a fresh process)."""
    baseline_mb = peak_rss_mb()
    options = RunOptions(batch_size=batch_size, device=device, precision=precision)
    if profile:
        import cProfile
        import pstats
        import threading

        profiler = cProfile.Profile()
        threading.setprofile(lambda *args: None)  # the reader and writer threads' frames are not profiled
        report = profiler.runcall(segment, raster_path, output, model_path, options=options)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    else:
        report = segment(raster_path, output, model_path, options=options)
    print(json.dumps({"seconds": report.seconds, "tiles": report.tiles, "tiles_planned": report.tiles_planned,
                      "batch_size": report.batch_size, "providers": report.providers, "baseline_mb": baseline_mb,
                      "precision": report.precision,
                      "peak_rss_mb": peak_rss_mb(), "valid_pixels": report.valid_pixels}))


def run_child(raster_path, model_path, output, args, profile=False) -> dict:
    command = [sys.executable, __file__, "--child", raster_path, str(model_path), str(output), "--device", args.device,
               "--precision", args.precision]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    if profile:
        command.append("--profile")
    cache = {"GDAL_CACHEMAX": str(args.gdal_cache_mb)} if args.gdal_cache_mb else {}
    # On a GPU, how busy it was during the run: nvidia-smi sampled every 200 ms.
    sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                "-lms", "200"], stdout=subprocess.PIPE, text=True) \
        if args.device == "cuda" and shutil.which("nvidia-smi") else None
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, **cache})
    finally:
        if sampler is not None:
            sampler.terminate()
    if profile:
        print(result.stderr)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if sampler is not None:
        busy = [float(line) for line in sampler.communicate()[0].split() if line.replace(".", "").isdigit()]
        measured["gpu_busy_percent"] = sum(busy) / len(busy) if busy else None
    return measured


@gdal_exceptions()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024,2048,4096,12000", help="square raster edges, comma-separated")
    parser.add_argument("--batch-size", type=int, help="tiles per model call (default: the engine's choice)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="the model's arithmetic (default auto: fp16 on a GPU where it agrees with fp32)")
    parser.add_argument("--conv-layers", type=int, default=4, help="depth of the stand-in model (no bundled one)")
    parser.add_argument("--gdal-cache-mb", type=int, help="GDAL_CACHEMAX of the end-to-end runs (default: GDAL's)")
    parser.add_argument("--mosaic-size", type=int, default=1800, help="edge of the JAXA-like tile (0: skip)")
    parser.add_argument("--profile", action="store_true", help="cost centres of the end-to-end run")
    parser.add_argument("--out", default=str(REPO / "bench_output"))
    parser.add_argument("--child", nargs=3, metavar=("RASTER", "MODEL", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.batch_size, args.device, args.precision, args.profile)
        return
    folder = pathlib.Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = bench_model(folder, args.conv_layers)
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"model: {model_path}, GDAL_CACHEMAX={args.gdal_cache_mb or 'default'} (MB)")

    measured = sizes[0] if len(sizes) == 1 else sizes[1]  # model only vs end to end on this size
    first = raster(folder, measured)
    end_to_end = run_child(first, model_path, folder / f"lulc_{measured}.tif", args)
    model_seconds, tiles, load_seconds = model_only(first, model_path, end_to_end["batch_size"], args.device,
                                                    end_to_end["precision"])
    megapixels = measured ** 2 / 1e6
    model_rate, e2e_rate = megapixels / model_seconds, megapixels / end_to_end["seconds"]
    print(f"{measured}^2 px, batch {end_to_end['batch_size']}, {end_to_end['precision']}, "
          f"{', '.join(end_to_end['providers'])}")
    print(f"  (a) model only : {model_rate:7.3f} Mpx/s ({model_seconds:.1f} s, {tiles} tiles holding data)")
    print(f"  (b) end to end : {e2e_rate:7.3f} Mpx/s ({end_to_end['seconds']:.1f} s, {end_to_end['tiles']} tiles run "
          f"of the plan's {end_to_end['tiles_planned']})")
    print(f"  ratio (b)/(a)  : {e2e_rate / model_rate:.2f}  (b includes loading the model once: {load_seconds:.1f} s)")
    if end_to_end.get("gpu_busy_percent") is not None:
        print(f"  GPU busy during (b): {end_to_end['gpu_busy_percent']:.0f} % (nvidia-smi, every 200 ms)")

    if args.profile:
        print("cost centres of (b), in a separate run (cProfile slows it down):")
        run_child(first, model_path, folder / f"lulc_{measured}_profiled.tif", args, profile=True)

    print("end to end per raster size, each in a fresh process (time per tile run: the tile grid fits some "
          "sizes better than others):")
    results = {measured: end_to_end}
    for size in sizes:
        result = results.get(size) or run_child(raster(folder, size), model_path, folder / f"lulc_{size}.tif", args)
        results[size] = result
        reference = results[sizes[0]]
        per_pixel = (result["seconds"] / size ** 2) / (reference["seconds"] / sizes[0] ** 2)
        per_tile = (result["seconds"] / result["tiles"]) / (reference["seconds"] / reference["tiles"])
        print(f"  {size:>6}^2 px: {size * size / 1e6 / result['seconds']:6.3f} Mpx/s, {result['seconds']:7.1f} s, "
              f"time/px x{per_pixel:.2f} and time/tile x{per_tile:.2f} of {sizes[0]}^2, "
              f"tiles {result['tiles']}/{result['tiles_planned']}, "
              f"batch {result['batch_size']}, peak RSS {result['peak_rss_mb']:.0f} MB "
              f"(after imports {result['baseline_mb']:.0f} MB)")
        if size > measured:
            # Model only on every tile of a large raster would hold it all in memory: its time is
            # estimated from (a)'s time per tile.
            estimate = result["tiles"] * model_seconds / tiles
            print(f"          ratio (b)/(a) {estimate / result['seconds']:.2f}, with (a) estimated from its time per "
                  f"tile on {measured}^2")

    if args.mosaic_size:
        print(f"JAXA-like mosaic tile, {args.mosaic_size}^2 px in EPSG:4326 (read on the 10 m model grid):")
        full = run_child(mosaic_tile(folder, args.mosaic_size, 1.0), model_path, folder / "mosaic_full.tif", args)
        empty = run_child(mosaic_tile(folder, args.mosaic_size, 0.05), model_path, folder / "mosaic_5.tif", args)
        for name, result in (("all data", full), ("95 % nodata", empty)):
            print(f"  {name:>11}: {result['seconds']:6.1f} s, tiles {result['tiles']}/{result['tiles_planned']}, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB")
        print(f"  cost of the 95 % empty tile: {empty['seconds'] / full['seconds']:.1%} of the full one")


if __name__ == "__main__":
    main()

"""Throughput and memory of the inference core (figures, not pass/fail).

(a) model only: the session run on every tile of the first raster, nothing else;
(b) end to end: segment() on the same raster (read, normalise, run, blend, write);
both in Mpx/s of raster and their ratio; then peak RSS of segment() per raster size, each in a
fresh subprocess. Uses the bundled LULC model when present, else a factory model with a
stack of 3x3 convolutions standing in for the network's cost.

    make bench ARGS="--sizes 1024,4096"

Peak RSS includes GDAL's block cache, which fills up to GDAL_CACHEMAX on big rasters (GDAL's
default is 5 % of RAM; QGIS sets its own). The child runs get `--gdal-cache-mb` (default 256) so
that the figures show the engine's bounded footprint plus a known cache.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from model.inference.engine import RunOptions, segment  # noqa: E402
from model.inference.metadata import ModelContract, bundled_model_path  # noqa: E402
from model.inference.reader import BandReader, SceneStatistics, open_raster, prepare_input  # noqa: E402
from model.inference.session import ModelSession  # noqa: E402
from model.inference.windows import TilePlan  # noqa: E402


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


def model_only(raster_path: str, model_path, batch_size: int, device: str) -> tuple[float, int, float]:
    """Seconds spent in session.run alone over the plan's tiles (read and normalised beforehand),
    tile count, and the seconds the session took to load (a fixed cost end to end runs pay once)."""
    began = time.perf_counter()
    session = ModelSession(model_path, device)
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
    session.run(np.stack(tiles[:batch_size]))  # warm-up, as the engine's first batch would be
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


def child(raster_path: str, model_path: str, output: str, batch_size: int, device: str) -> None:
    """One end-to-end run; prints JSON with its time and peak RSS (run in a fresh process)."""
    baseline_mb = peak_rss_mb()
    report = segment(raster_path, output, model_path, options=RunOptions(batch_size=batch_size, device=device))
    print(json.dumps({"seconds": report.seconds, "tiles": report.tiles, "providers": report.providers,
                      "baseline_mb": baseline_mb, "peak_rss_mb": peak_rss_mb()}))


def run_child(raster_path, model_path, output, batch_size, device, gdal_cache_mb) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", raster_path, str(model_path), str(output),
                             "--batch-size", str(batch_size), "--device", device],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "GDAL_CACHEMAX": str(gdal_cache_mb)})
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2048,12000", help="square raster edges, comma-separated")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--conv-layers", type=int, default=4, help="depth of the stand-in model (no bundled one)")
    parser.add_argument("--gdal-cache-mb", type=int, default=256, help="GDAL_CACHEMAX of the end-to-end runs")
    parser.add_argument("--out", default=str(REPO / "bench_output"))
    parser.add_argument("--child", nargs=3, metavar=("RASTER", "MODEL", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.batch_size, args.device)
        return
    folder = pathlib.Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = bench_model(folder, args.conv_layers)
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"model: {model_path}")

    first = raster(folder, sizes[0])
    megapixels = sizes[0] ** 2 / 1e6
    model_seconds, tiles, load_seconds = model_only(first, model_path, args.batch_size, args.device)
    end_to_end = run_child(first, model_path, folder / f"lulc_{sizes[0]}.tif", args.batch_size, args.device,
                           args.gdal_cache_mb)
    model_rate, e2e_rate = megapixels / model_seconds, megapixels / end_to_end["seconds"]
    print(f"{sizes[0]}^2 px, {tiles} tiles, batch {args.batch_size}, {', '.join(end_to_end['providers'])}")
    print(f"  (a) model only : {model_rate:7.3f} Mpx/s ({model_seconds:.1f} s)")
    print(f"  (b) end to end : {e2e_rate:7.3f} Mpx/s ({end_to_end['seconds']:.1f} s, {end_to_end['tiles']} tiles run)")
    print(f"  ratio (b)/(a)  : {e2e_rate / model_rate:.2f}  (b includes loading the model once: {load_seconds:.1f} s)")
    print(f"peak RSS of segment() in a fresh process (GDAL_CACHEMAX={args.gdal_cache_mb} MB):")
    for size in sizes:
        result = end_to_end if size == sizes[0] else run_child(raster(folder, size), model_path,
                                                               folder / f"lulc_{size}.tif", args.batch_size,
                                                               args.device, args.gdal_cache_mb)
        print(f"  {size:>6}^2 px: peak {result['peak_rss_mb']:7.0f} MB (after imports {result['baseline_mb']:.0f} MB), "
              f"{size * size / 1e6 / result['seconds']:.3f} Mpx/s, {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()

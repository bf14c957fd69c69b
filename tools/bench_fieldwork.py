"""Time and peak memory of the field work algorithms on big class rasters (figures, not pass/fail).

Each size gets a class raster with the plugin's legend, made by the test factory's pixel rule on a
speckled synthetic scene: speckle everywhere, so the sieve starts from millions of one-pixel regions
(a worst case; a segmentation model's maps are smoother). Class Area Statistics and Vectorise Classes
(default minimum mapping unit, then with medium smoothing) then run through Processing, each in a
fresh process, and report seconds and peak RSS.

    make bench-fieldwork ARGS="--sizes 2048,12000"

GDAL_CACHEMAX is set for the runs (--gdal-cache-mb, default 256), as in tools/bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RUNS = (("areastats", {}), ("vectorise", {}), ("vectorise", {"SMOOTHING": "medium"}))


def class_raster(folder: pathlib.Path, size: int) -> str:
    """A size x size class raster (UTM, 10 m, nodata in one corner) with the 9-class legend, written in strips."""
    import numpy as np
    from osgeo import gdal, osr

    from sarlulc.products import LULC_CLASSES
    from sarlulc.rasters.writer import OutputRaster, all_or_none
    from tests.factories import expected_pixel_classes, sar_db_field

    path = folder / f"classes_{size}.tif"
    if path.exists():
        return str(path)
    like = gdal.GetDriverByName("MEM").Create("", size, size, 1, gdal.GDT_Byte)
    like.SetGeoTransform((500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32654)
    like.SetSpatialRef(srs)
    output = OutputRaster(path, like, gdal.GDT_Byte, 0, "classes")
    rows = max(1, (1 << 22) // size)
    with all_or_none([output]):
        for y in range(0, size, rows):
            count = min(rows, size - y)
            codes = expected_pixel_classes(sar_db_field(0, y, size, count))
            if y < size // 8:
                codes[:, :size // 8] = 0
            output.band.WriteArray(codes.astype(np.uint8), 0, y)
        output.set_legend([tuple(entry) for entry in LULC_CLASSES])
    return str(path)


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def child(algorithm: str, raster: str, output_folder: str, extra: str) -> None:
    """One algorithm run through Processing in this (fresh) process; prints JSON with time and memory."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    application = QgsApplication([], False)
    application.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    plugin_parent = pathlib.Path(output_folder) / "plugin"
    plugin_parent.mkdir(exist_ok=True)
    if not (plugin_parent / "sar_lulc").exists():
        (plugin_parent / "sar_lulc").symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(plugin_parent))
    import processing
    from sar_lulc.processing_provider.provider import SarLulcProvider

    provider = SarLulcProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    baseline = peak_rss_mb()
    stem = pathlib.Path(raster).stem
    parameters = {"INPUT": raster, **json.loads(extra)}
    if algorithm == "areastats":
        parameters.update(OUTPUT=f"{output_folder}/{stem}_areas.csv", OUTPUT_HTML=f"{output_folder}/{stem}.html")
    else:
        parameters.update(OUTPUT=f"{output_folder}/{stem}_polygons_{int(time.time())}.gpkg")
    began = time.perf_counter()
    result = processing.run(f"sarlulc:{algorithm}", parameters)
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "baseline_mb": baseline, "peak_rss_mb": peak_rss_mb(),
                      "polygons": result.get("POLYGONS")}))
    application.exitQgis()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2048,12000", help="square raster edges, comma-separated")
    parser.add_argument("--gdal-cache-mb", type=int, default=256)
    parser.add_argument("--out", default=str(REPO / "bench_output" / "fieldwork"))
    parser.add_argument("--child", nargs=4, metavar=("ALGORITHM", "RASTER", "FOLDER", "EXTRA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    folder = pathlib.Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"field work on speckled class rasters, GDAL_CACHEMAX={args.gdal_cache_mb} MB, each run in a fresh process")
    for size in (int(s) for s in args.sizes.split(",")):
        raster = class_raster(folder, size)
        for algorithm, extra in RUNS:
            run = subprocess.run(
                [sys.executable, __file__, "--child", algorithm, raster, str(folder), json.dumps(extra)],
                capture_output=True, text=True, env={**os.environ, "GDAL_CACHEMAX": str(args.gdal_cache_mb)})
            if run.returncode:
                print(run.stdout[-2000:], run.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"bench: {algorithm} failed on {raster}")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            label = algorithm + (" + smoothing 5x5" if extra else "")
            polygons = f", {result['polygons']:,} polygons" if result["polygons"] is not None else ""
            rate = size * size / 1e6 / result["seconds"]
            print(f"  {size:>6}^2 px {label:<26} {result['seconds']:7.1f} s, {rate:6.2f} "
                  f"Mpx/s, peak RSS {result['peak_rss_mb']:6.0f} MB (QGIS loaded: {result['baseline_mb']:.0f} MB)"
                  f"{polygons}")


if __name__ == "__main__":
    main()

"""Regenerate the plugin's demo scene: python -m sarlulc.simulate.demo [--out demo]

A 512 x 512 simulated scene (seed 2062: a coastal plain with the sea to the east, rivers, towns,
paddies and wooded hills, all 9 classes) placed near Sendai, float32 dB, 4 looks, nodata margin,
variability off (the fixed world the demo has always shown, so it regenerates unchanged).
"""

import argparse
import pathlib

from .geotiff import write_scene
from .scene import simulate_scene

DEMO_SEED = 2062
DEMO_SIZE = 512
DEMO_TOP_LEFT_LON_LAT = (140.88, 38.30)
SAR_NAME, LABEL_NAME = "demo_scene_hh_db.tif", "demo_scene_label.tif"


def write_demo(out_dir) -> tuple[pathlib.Path, pathlib.Path]:
    scene = simulate_scene(DEMO_SIZE, DEMO_SEED, looks=4.0, nodata_margin=True, variability="none")
    sar, label = write_scene(scene, out_dir, "demo_scene", units="db", crs="EPSG:32654",
                             lon_lat=DEMO_TOP_LEFT_LON_LAT)
    return sar.replace(sar.with_name(SAR_NAME)), label.replace(label.with_name(LABEL_NAME))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m sarlulc.simulate.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo", help="output folder (default: demo)")
    for path in write_demo(parser.parse_args().out):
        print(path)

"""Make a set of scenes into a folder with a manifest (the CLI's work, usable from Python)."""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from ..products import LULC_CLASSES
from .geotiff import write_scene
from .scene import simulate_scene

MANIFEST = "manifest.json"


def scene_location(seed: int, index: int) -> tuple[float, float]:
    """Top-left corner (lon, lat) of scene `index` of set `seed`: somewhere in Japan's UTM zone 54N."""
    rng = np.random.default_rng([seed, index, 54])
    return round(float(rng.uniform(139.0, 143.0)), 4), round(float(rng.uniform(35.0, 43.0)), 4)


def generate_set(out_dir, count: int, size: int, seed: int, units: str = "db", crs: str = "EPSG:32654",
                 looks: float | None = None, nodata_margin: bool = True, holes: bool = False,
                 variability: str = "realistic", log=print) -> dict:
    """Simulate `count` scenes of `size`² pixels; scene i uses seed (seed, i), so sets made with
    different `seed` values never share a scene (use one seed for training, others for testing).
    `variability` "realistic" draws each scene's acquisition and environment; "none" fixes them."""
    out_dir = pathlib.Path(out_dir)
    scenes = []
    started = time.perf_counter()
    for index in range(count):
        scene = simulate_scene(size, (seed, index), looks=looks, nodata_margin=nodata_margin, holes=holes,
                               variability=variability)
        name = f"sim_s{seed}_{index:04d}"
        lon_lat = scene_location(seed, index)
        sar_path, label_path = write_scene(scene, out_dir, name, units=units, crs=crs, lon_lat=lon_lat)
        counts = np.bincount(scene.labels[scene.valid], minlength=256)
        valid = max(int(counts.sum()), 1)
        scenes.append({"name": name, "seed": [seed, index], "sar": sar_path.name, "label": label_path.name,
                       "top_left_lon_lat": list(lon_lat),
                       "class_fractions": {n: round(counts[c] / valid, 5) for c, n, _ in LULC_CLASSES},
                       "looks": round(float(scene.looks), 3),
                       "variation": scene.variation.as_dict() if scene.variation else None})
        log(f"{name}: {sar_path.name} + {label_path.name}")
    manifest = {"generator": "sarlulc.simulate", "simulated": True, "seed": seed, "count": count, "size": size,
                "units": units, "crs": crs, "pixel_m": 10.0, "looks": looks, "variability": variability,
                "nodata_margin": nodata_margin,
                "holes": holes, "scenes": scenes}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    log(f"{count} scenes in {time.perf_counter() - started:.1f} s -> {out_dir / MANIFEST}")
    return manifest

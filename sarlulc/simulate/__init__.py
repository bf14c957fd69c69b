"""ALOS-2-like scene simulator: 9-class label maps with realistic layout and their L-band HH
backscatter, written as georeferenced GeoTIFF pairs (see README.md for the numbers and sources).

    python -m sarlulc.simulate --out data/sim/train --count 40 --size 512 --seed 1 --units db
"""

from .geotiff import db_to_dn, metres_per_degree, sar_band, write_scene
from .scene import HH_L_BAND, Backscatter, Scene, simulate_scene
from .generate import generate_set, scene_location
from .variation import VARIABILITY, SceneVariation, draw_variation

__all__ = ["Backscatter", "HH_L_BAND", "Scene", "SceneVariation", "VARIABILITY", "db_to_dn", "draw_variation",
           "generate_set", "metres_per_degree", "sar_band", "scene_location", "simulate_scene", "write_scene"]

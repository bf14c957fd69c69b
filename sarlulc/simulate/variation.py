"""Per-scene acquisition and environment parameters: what differs from one real scene to the next.

A model trained on one fixed world learns that world's absolute levels; real inputs come with other
calibrations, looks, resolutions, incidence angles, winds and seasons. `draw_variation` draws one
`SceneVariation` per scene (README.md, "Realistic variability", gives every range and its source).
The draws come from their own random stream (a child of the scene seed), so the layout stream is
the same whether variability is on or off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

VARIABILITY = ("realistic", "none")
REFERENCE_INCIDENCE_DEG = 35.0  # the class level ranges hold at this incidence (mid-swath PALSAR-2 stripmap)
_VARIATION_STREAM = 1  # spawn key of the variation draws under the scene seed


@dataclass(frozen=True)
class SceneVariation:
    """One scene's draw. Levels in dB; `class_shift_db` / `spread_scale` are keyed by class code
    (and "road" for asphalt): the scene's class mean moves by the shift, its region spread scales."""

    calibration_offset_db: float  # global gain error of the product (added to every pixel)
    looks: float  # equivalent number of looks of the product at its own resolution
    resolution_m: float  # effective resolution; the output grid stays 10 m
    texture_order: float | None  # K-distribution order of natural surfaces; None = no texture
    urban_texture_order: float  # Gamma texture order of built-up areas (point scatterers)
    noise_floor_db: float  # noise-equivalent sigma0 (thermal noise, additive in power)
    incidence_near_deg: float  # incidence at the near-range edge of the scene
    incidence_span_deg: float  # near-to-far increase across the scene
    look_east: bool  # radar looks towards +x (ascending, right-looking) or -x
    relief_m: float  # terrain relief (steep scenes show layover and shadow)
    coast_side: int | None  # sea along edge 0 top, 1 bottom, 2 left, 3 right; None = inland
    sea_fraction: float  # share of the scene behind the shoreline (coastal scenes)
    lake_fraction: float  # share of the land under lakes and reservoirs
    wind_db: float  # brightening of open water by wind roughening (0 = calm)
    flooded_fraction: float  # share of the vegetation near water that stands in water
    flooded_forest_gain_db: float  # double-bounce gain of flooded forest over dry forest
    flooded_herbaceous_gain_db: float  # the same for flooded paddy, cropland and grassland
    class_shift_db: dict = dataclasses.field(default_factory=dict)
    spread_scale: dict = dataclasses.field(default_factory=dict)

    def incidence_deg(self, width: int) -> np.ndarray:
        """Incidence per column (float32, degrees), increasing from near to far range."""
        ramp = np.linspace(0.0, self.incidence_span_deg, width, dtype=np.float32)
        return self.incidence_near_deg + (ramp if self.look_east else ramp[::-1])

    def as_dict(self) -> dict:
        """JSON-friendly summary (for the manifest)."""
        values = dataclasses.asdict(self)
        for key in ("class_shift_db", "spread_scale"):
            values[key] = {str(k): round(float(v), 3) for k, v in values[key].items()}
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in values.items()}


CALIBRATION_ERROR_DB = 1.5
"""Largest calibration offset of a simulated product: the calibrated products the models read by their
absolute level (ALOS-2: CF -83.0 dB, std about 0.4 dB; Sentinel-1 about 0.5 dB) stay within it."""


def variation_rng(seed) -> np.random.Generator:
    """The variation's own stream under `seed` (the layout uses np.random.default_rng(seed))."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_VARIATION_STREAM,)))


def draw_variation(seed, class_models: dict) -> SceneVariation:
    """Draw one scene's parameters. `class_models` maps class keys to `Backscatter` models, whose
    `scene_shift_db` bounds the class's shift."""
    rng = variation_rng(seed)
    coastal = rng.random() < 0.4
    windy = rng.random() < 0.5
    flooded = rng.random() < 0.35
    lakes = rng.random() < 0.3
    heavy_texture = rng.random() < 0.85
    incidence_span = rng.uniform(0.0, 8.0)
    return SceneVariation(
        calibration_offset_db=rng.uniform(-CALIBRATION_ERROR_DB, CALIBRATION_ERROR_DB),
        looks=math.exp(rng.uniform(0.0, math.log(16.0))),
        resolution_m=rng.uniform(5.0, 30.0),
        texture_order=math.exp(rng.uniform(math.log(1.5), math.log(30.0))) if heavy_texture else None,
        urban_texture_order=rng.uniform(0.8, 3.0),
        noise_floor_db=rng.uniform(-30.0, -23.0),
        incidence_near_deg=rng.uniform(26.0, 46.0 - incidence_span),
        incidence_span_deg=incidence_span,
        look_east=bool(rng.random() < 0.5),
        relief_m=math.exp(rng.uniform(math.log(100.0), math.log(1200.0))),
        coast_side=int(rng.integers(4)) if coastal else None,
        sea_fraction=rng.uniform(0.05, 0.9) if coastal else 0.0,
        lake_fraction=rng.uniform(0.02, 0.25) if lakes else 0.0,
        wind_db=rng.uniform(3.0, 12.0) if windy else rng.uniform(0.0, 1.5),
        flooded_fraction=rng.uniform(0.1, 0.6) if flooded else 0.0,
        flooded_forest_gain_db=rng.uniform(3.0, 10.0),
        flooded_herbaceous_gain_db=rng.uniform(1.0, 6.0),
        class_shift_db={key: rng.uniform(-1.0, 1.0) * model.scene_shift_db for key, model in class_models.items()},
        spread_scale={key: rng.uniform(0.5, 1.8) for key in class_models},
    )

"""One ALOS-2-like scene: a 9-class label map with realistic layout and its HH backscatter.

Layout: a terrain field decides where forest (hills) and paddy (flat low ground) go; rivers
carve valleys and meander to the sea where a scene has a coast; roads attract built-up areas;
small rare objects (solar-panel fields, bare patches, ponds) are sprinkled on land. Backscatter:
per-class sigma0 ranges of L-band HH (sarlulc/simulate/README.md gives the sources), per-region
means, a slope (local incidence) term, Gamma texture for built-up areas and multiplicative
Gamma speckle with a configurable number of looks. With realistic variability (the default) each
scene also draws its acquisition and environment (variation.py) and is observed through radar.py:
calibration offset, looks, resolution, K texture, noise floor, incidence gradient, wind, lakes and
sea extent, flooded vegetation, layover and shadow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..products import LULC_CLASSES
from ..sar.decibels import db_to_power, power_to_db
from .fields import draw_thick_line, gaussian_blur, sinuous_path, spectral_fields, warped_cells
from .radar import PIXEL_M, layover_and_shadow, observe, smear_along_range
from .variation import REFERENCE_INCIDENCE_DEG, VARIABILITY, SceneVariation, draw_variation

_CODE = {name: code for code, name, _ in LULC_CLASSES}
WATER, BUILT_UP, PADDY = _CODE["Water"], _CODE["Built-up"], _CODE["Paddy field"]
CROPLAND, GRASSLAND, BARE, SOLAR = _CODE["Cropland"], _CODE["Grassland"], _CODE["Bare land"], _CODE["Solar panel"]
BROADLEAF, NEEDLELEAF = _CODE["Broadleaf forest"], _CODE["Needleleaf forest"]
NODATA_LABEL = 0

INCIDENCE_DEG = REFERENCE_INCIDENCE_DEG  # mid-swath incidence of PALSAR-2 stripmap (about 30-44 deg)


@dataclass(frozen=True)
class Backscatter:
    """HH sigma0 model of one class: the scene's class mean is drawn from `mean_db`; regions
    (parcels, stands, blocks of about `region_px` pixels) deviate by N(0, `region_sd_db`);
    `texture_shape` (Gamma, mean 1) adds the heavy-tailed point scatterers of built-up areas.
    With realistic variability the scene mean moves by up to ±`scene_shift_db` more (season,
    soil moisture, biomass, street orientation) and changes by `incidence_db_per_deg` per degree
    of incidence away from 35°."""

    mean_db: tuple[float, float]
    region_sd_db: float
    region_px: float
    texture_shape: float | None = None
    scene_shift_db: float = 0.0
    incidence_db_per_deg: float = 0.0


HH_L_BAND = {
    WATER: Backscatter((-26.0, -20.0), 0.5, 48, scene_shift_db=2.0, incidence_db_per_deg=-0.4),
    BUILT_UP: Backscatter((-8.0, 2.0), 2.5, 12, texture_shape=1.5, scene_shift_db=3.0, incidence_db_per_deg=-0.15),
    PADDY: Backscatter((-15.0, -10.0), 2.5, 8, scene_shift_db=3.0, incidence_db_per_deg=-0.2),
    CROPLAND: Backscatter((-14.0, -10.0), 2.0, 10, scene_shift_db=3.0, incidence_db_per_deg=-0.25),
    GRASSLAND: Backscatter((-15.0, -11.0), 1.5, 16, scene_shift_db=2.5, incidence_db_per_deg=-0.25),
    BROADLEAF: Backscatter((-8.0, -6.0), 0.6, 24, scene_shift_db=1.5, incidence_db_per_deg=-0.08),
    NEEDLELEAF: Backscatter((-8.5, -6.5), 0.6, 24, scene_shift_db=1.5, incidence_db_per_deg=-0.08),
    BARE: Backscatter((-18.0, -12.0), 2.0, 16, scene_shift_db=3.0, incidence_db_per_deg=-0.3),
    SOLAR: Backscatter((-14.0, -6.0), 5.0, 40, scene_shift_db=3.0, incidence_db_per_deg=-0.2),
}
# Roads are labelled Built-up but smooth asphalt scatters away from the sensor: dark, like bare soil.
ROAD = "road"
ROAD_SURFACE = Backscatter((-20.0, -14.0), 1.5, 20, scene_shift_db=2.0, incidence_db_per_deg=-0.3)
SURFACES = {**HH_L_BAND, ROAD: ROAD_SURFACE}
FLOODABLE_FOREST = (BROADLEAF, NEEDLELEAF)
FLOODABLE_HERBACEOUS = (PADDY, CROPLAND, GRASSLAND)
DEFAULT_LOOKS = 4.0
LAYOVER_GAIN_DB = 3.0  # two ground points in one slant-range cell: about twice the power
SHADOW_DB = -60.0  # no echo: only the noise floor is left
SEA_WIND_MAX_DB = 6.0  # wind-roughened sea is up to this much brighter than calm water


@dataclass
class Scene:
    """A simulated scene. `labels`: uint8 class codes, 0 = nodata. `sigma0_db`: observed (speckled)
    HH backscatter, float32 dB, NaN where there is no data. `reflectivity_db`: the same without
    speckle (texture, noise floor and calibration offset included). `layers`: boolean masks of the
    drawn structures (sea, river, road; with variability also lake, flooded vegetation, layover,
    shadow). `variation`: the scene's drawn parameters, None when variability is off."""

    labels: np.ndarray
    sigma0_db: np.ndarray
    reflectivity_db: np.ndarray
    elevation_m: np.ndarray
    layers: dict[str, np.ndarray]
    looks: float
    seed: object
    variation: SceneVariation | None = None

    @property
    def valid(self) -> np.ndarray:
        return self.labels != NODATA_LABEL


def simulate_scene(size: int | tuple[int, int], seed, looks: float | None = None, nodata_margin: bool = True,
                   holes: bool = False, variability: str | SceneVariation = "realistic") -> Scene:
    """Simulate one scene of `size` pixels (10 m) from `seed` (an int or a sequence of ints, e.g.
    (set_seed, scene_index)). `variability`: "realistic" draws the scene's calibration offset,
    looks, resolution, texture, incidence, wind, water fraction, flooding and class levels
    (variation.py); "none" is the fixed world of the demo scene; a `SceneVariation` fixes them.
    `looks` (equivalent number of looks) overrides the drawn value; "none" uses 4."""
    if isinstance(variability, str) and variability not in VARIABILITY:
        raise ValueError(f"unknown variability {variability!r}: use one of {', '.join(VARIABILITY)}")
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if min(shape) < 32:
        raise ValueError(f"scene size {shape} is too small: use at least 32 x 32 pixels")
    if looks is not None and looks <= 0:
        raise ValueError(f"looks must be positive (got {looks}); 1 = single-look, ALOS-2 L1.5 is about 2-4")
    variation = variability if isinstance(variability, SceneVariation) else (
        draw_variation(seed, SURFACES) if variability == "realistic" else None)
    if variation is None:
        looks = DEFAULT_LOOKS if looks is None else looks
    elif looks is None:
        looks = variation.looks
    else:
        variation = dataclasses.replace(variation, looks=looks)
    rng = np.random.default_rng(seed)
    labels, elevation_m, layers = _label_map(rng, shape, variation)
    valid = _valid_mask(rng, shape, nodata_margin, holes)
    labels[~valid] = NODATA_LABEL
    if variation is None:
        level_db, texture = _levels(rng, labels, elevation_m, layers, layers["road"] & valid)
        reflectivity_db = power_to_db(db_to_power(level_db) * texture)
        speckle = rng.gamma(looks, 1.0 / looks, shape)
        sigma0_db = power_to_db(db_to_power(reflectivity_db) * speckle)
    else:
        layers.update(zip(("layover", "shadow"), layover_and_shadow(elevation_m, variation)))
        level_db, texture = _levels(rng, labels, elevation_m, layers, layers["road"] & valid, variation)
        reflectivity_db, sigma0_db = observe(rng, level_db, texture, variation)
    reflectivity_db[~valid] = np.nan
    sigma0_db[~valid] = np.nan
    return Scene(labels, sigma0_db, reflectivity_db, elevation_m, layers, looks, seed, variation)


def _quantile_mask(score: np.ndarray, where: np.ndarray, fraction: float) -> np.ndarray:
    """The `fraction` of `where` pixels with the highest score (smooth score -> smooth regions)."""
    if not where.any() or fraction <= 0:
        return np.zeros_like(where)
    threshold = np.quantile(score[where], 1.0 - min(fraction, 1.0))
    return where & (score >= threshold)


def _label_map(rng: np.random.Generator, shape, variation: SceneVariation | None):
    h, w = shape
    npix = h * w
    (hills, relief, crinkle_a, crinkle_b, urban_noise, paddy_noise, crop_noise, stand_noise,
     bare_noise, pond_noise, coast_noise, beach_noise) = spectral_fields(
        rng, shape, (150, 40, 5, 5, 50, 35, 30, 30, 6, 4, 60, 10))
    terrain = 0.65 * hills + 0.28 * relief + 0.07 * crinkle_a
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # Coast: sea along one edge in about 30 % of scenes (variability: 40 %, sea up to 90 % of the
    # scene, as in coastal mosaic tiles); the land behind it is a low plain.
    sea = np.zeros(shape, bool)
    if variation is None:
        coast_side = int(rng.integers(4)) if rng.random() < 0.3 else None
    else:
        coast_side = variation.coast_side
    if coast_side is not None:
        along = [yy, h - 1 - yy, xx, w - 1 - xx][coast_side]
        extent = h if coast_side < 2 else w
        coast_distance = along + 0.06 * extent * coast_noise + 1.5 * crinkle_b
        shore = (rng.uniform(0.05, 0.25) if variation is None else variation.sea_fraction) * extent
        sea = coast_distance < shore
        terrain += 2.0 * np.clip(coast_distance / extent, 0, 1) - 1.0
    land = ~sea

    # Rivers meander across the scene (towards the sea where there is one) and carve valleys.
    river = np.zeros(shape, bool)
    for _ in range(1 + rng.poisson(npix / 1024 ** 2)):
        heading = _heading_to_sea(coast_side) if coast_side is not None else rng.uniform(0, 2 * math.pi)
        start = _entry_point(rng, shape, heading)
        path = sinuous_path(rng, start, heading, 2 * (h + w), rng.uniform(0.5, 0.9), rng.uniform(15, 35))
        draw_thick_line(river, path, rng.uniform(3, 7))
        for _ in range(rng.integers(0, 2)):
            branch = path[rng.integers(len(path) // 8, len(path) // 3)]
            side = rng.choice([-1, 1]) * rng.uniform(0.6, 1.3)
            tributary = sinuous_path(rng, branch, heading + math.pi + side, (h + w) // 4, 0.5, 25)
            draw_thick_line(river, tributary, rng.uniform(2, 3.5))
    valley = gaussian_blur(river.astype(np.float32), 40)
    terrain -= 1.5 * valley / max(valley.max(), 1e-6)
    relief_m = rng.uniform(150, 900) if variation is None else variation.relief_m
    elevation_m = (terrain - terrain.min()) * (relief_m / max(np.ptp(terrain), 1e-6))
    slope = np.hypot(*np.gradient(elevation_m, PIXEL_M))

    labels = np.zeros(shape, np.uint8)
    labels[sea] = WATER
    lake = np.zeros(shape, bool)
    if variation is not None and variation.lake_fraction > 0:
        # Lakes and reservoirs fill low ground (dammed valleys, lagoons).
        lake = _quantile_mask(-terrain + 0.5 * spectral_fields(rng, shape, (30,))[0], land, variation.lake_fraction)
        labels[lake] = WATER
        land = land & ~lake
    forest_score = terrain + 0.15 * slope / (slope.std() + 1e-6) + 0.05 * crinkle_b
    forest = _quantile_mask(forest_score, land, rng.uniform(0.6, 0.82))
    needleleaf = _quantile_mask(stand_noise + 0.5 * terrain + 0.2 * crinkle_a, forest, rng.uniform(0.3, 0.55))
    labels[forest] = BROADLEAF
    labels[needleleaf] = NEEDLELEAF

    # Roads: a few long, gently curving lines across the scene plus local roads in the lowland;
    # built-up areas grow around them.
    road = np.zeros(shape, bool)
    for _ in range(1 + rng.poisson(3 * npix / 1024 ** 2)):
        heading = rng.uniform(0, 2 * math.pi)
        path = sinuous_path(rng, _entry_point(rng, shape, heading), heading, 2 * (h + w), 0.25, 80)
        draw_thick_line(road, path, rng.choice([2.0, 2.0, 3.0]))
    lowland = land & ~forest
    lowland_pixels = np.flatnonzero(lowland)
    for _ in range(rng.poisson(8 * npix / 1024 ** 2) if lowland_pixels.size else 0):
        start = divmod(int(rng.choice(lowland_pixels)), w)
        path = sinuous_path(rng, start, rng.uniform(0, 2 * math.pi), (h + w) // 6, 0.3, 40)
        draw_thick_line(road, path, rng.choice([1.0, 2.0]))

    near_roads = gaussian_blur(road.astype(np.float32), 20)
    urban_score = near_roads / max(near_roads.max(), 1e-6) + 0.35 * urban_noise + 0.15 * crinkle_a
    if coast_side is not None:
        urban_score -= 0.3 * terrain
    built_up = _quantile_mask(urban_score, lowland, rng.uniform(0.12, 0.35))
    rest = lowland & ~built_up
    paddy = _quantile_mask(-terrain - 0.3 * slope / (slope.std() + 1e-6) + 0.3 * paddy_noise + 0.1 * crinkle_b,
                           rest, rng.uniform(0.35, 0.6))
    rest &= ~paddy
    cropland = _quantile_mask(crop_noise + 0.3 * terrain + 0.1 * crinkle_a, rest, rng.uniform(0.45, 0.7))
    labels[built_up] = BUILT_UP
    labels[paddy] = PADDY
    labels[cropland] = CROPLAND
    labels[rest & ~cropland] = GRASSLAND

    # Rare objects: bare patches (quarries, building sites, beaches), ponds, solar-panel fields.
    labels[_quantile_mask(bare_noise, land, rng.uniform(0.003, 0.01))] = BARE
    if coast_side is not None:
        labels[land & (coast_distance < shore + rng.uniform(2, 5)) & (beach_noise > 0)] = BARE
    labels[_quantile_mask(pond_noise, lowland, rng.uniform(0.002, 0.006))] = WATER
    _place_solar_fields(rng, labels, land & ~river)
    labels[river] = WATER
    labels[road & land] = BUILT_UP  # roads cross rivers on bridges
    layers = {"sea": sea, "river": river & ~road, "road": road & land}
    if variation is not None:
        elevation_m[sea] = elevation_m[sea].min() if sea.any() else 0.0  # the sea surface is flat
        layers["lake"] = lake
        layers["flooded_vegetation"] = _flooded_vegetation(rng, labels, terrain, variation.flooded_fraction)
    return labels, elevation_m.astype(np.float32), layers


def _flooded_vegetation(rng: np.random.Generator, labels, terrain, fraction: float) -> np.ndarray:
    """Forest, paddy, cropland and grassland standing in water: the lowest vegetation near open
    water (swamp forest, riparian floodplain, flooded paddies). Their label stays the land class."""
    vegetation = np.isin(labels, FLOODABLE_FOREST + FLOODABLE_HERBACEOUS)
    if fraction <= 0 or not vegetation.any():
        return np.zeros(labels.shape, bool)
    near_water = gaussian_blur((labels == WATER).astype(np.float32), 25)
    near_water /= max(float(near_water.max()), 1e-6)
    candidates = vegetation & (near_water > 0.05)
    score = near_water - 0.5 * terrain / (terrain.std() + 1e-6) + 0.3 * spectral_fields(rng, labels.shape, (8,))[0]
    return _quantile_mask(score, candidates, fraction)


def _heading_to_sea(coast_side: int) -> float:
    """Heading (radians, 0 = +x, pi/2 = +y) pointing towards the coast edge (0 top, 1 bottom, 2 left, 3 right)."""
    return [-math.pi / 2, math.pi / 2, math.pi, 0.0][coast_side]


def _entry_point(rng: np.random.Generator, shape, heading: float) -> tuple[float, float]:
    """A point on the edge a line with `heading` enters the scene through."""
    h, w = shape
    dy, dx = math.sin(heading), math.cos(heading)
    if abs(dx) > abs(dy):
        return rng.uniform(0.1, 0.9) * h, (0.0 if dx > 0 else w - 1.0)
    return (0.0 if dy > 0 else h - 1.0), rng.uniform(0.1, 0.9) * w


def _place_solar_fields(rng: np.random.Generator, labels: np.ndarray, allowed: np.ndarray) -> None:
    """Solar farms: a few rotated rectangular arrays (8-30 px, i.e. 80-300 m) on land."""
    h, w = labels.shape
    candidates = np.flatnonzero(allowed)
    if candidates.size == 0:
        return
    for _ in range(1 + rng.poisson(3 * h * w / 512 ** 2)):
        cy, cx = divmod(int(rng.choice(candidates)), w)
        half_len, half_wid = rng.uniform(4, 15), rng.uniform(3, 9)
        angle = rng.uniform(0, math.pi)
        r = int(math.ceil(math.hypot(half_len, half_wid)))
        y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, h), max(cx - r, 0), min(cx + r + 1, w)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
        v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
        inside = (np.abs(u) <= half_len) & (np.abs(v) <= half_wid) & allowed[y0:y1, x0:x1]
        labels[y0:y1, x0:x1][inside] = SOLAR


def _valid_mask(rng: np.random.Generator, shape, nodata_margin: bool, holes: bool) -> np.ndarray:
    """Where the scene has data: a slanted swath edge on one side, optional small holes."""
    h, w = shape
    valid = np.ones(shape, bool)
    yy, xx = np.mgrid[0:h, 0:w]
    if nodata_margin:
        margin = rng.uniform(0.02, 0.08) * w + rng.uniform(-0.05, 0.05) * yy
        valid &= (xx >= margin) if rng.random() < 0.5 else (w - 1 - xx >= margin)
    if holes:
        blobs = spectral_fields(rng, shape, (3,))[0]
        valid &= blobs < np.quantile(blobs, 0.995)
    return valid


def _levels(rng: np.random.Generator, labels, elevation_m, layers, road,
            variation: SceneVariation | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Speckle-free HH sigma0 (dB) and its multiplicative texture (mean 1): class means, region
    offsets, slope, water wind, and with `variation` the scene's class shifts and spreads,
    incidence gradient, flooded vegetation, layover and shadow, K texture."""
    w = labels.shape[1]
    warp = 6.0 * spectral_fields(rng, labels.shape, (12, 12))
    db = np.zeros(labels.shape, np.float32)
    texture = np.ones(labels.shape, np.float64)
    if variation is not None:
        incidence_deg = variation.incidence_deg(w)[None, :]
        incidence_offset = np.broadcast_to(incidence_deg - REFERENCE_INCIDENCE_DEG, labels.shape)
    for key, model in SURFACES.items():
        where = road if key == ROAD else (labels == key) & ~road
        if not where.any():
            continue
        regions = warped_cells(rng, labels.shape, model.region_px * rng.uniform(0.7, 1.4), warp)
        if variation is None:
            db[where] = rng.uniform(*model.mean_db) + model.region_sd_db * regions[where]
            if model.texture_shape:
                texture[where] = rng.gamma(model.texture_shape, 1.0 / model.texture_shape, int(where.sum()))
            continue
        mean = rng.uniform(*model.mean_db) + variation.class_shift_db[key]
        db[where] = (mean + model.region_sd_db * variation.spread_scale[key] * regions[where]
                     + model.incidence_db_per_deg * incidence_offset[where])
        # built-up keeps its own (heavier) point-scatterer texture; natural surfaces get the K texture
        order = variation.urban_texture_order if model.texture_shape else variation.texture_order
        if order:
            texture[where] = rng.gamma(order, 1.0 / order, int(where.sum()))
    # Local incidence angle: slopes facing the sensor are brighter (Ulander 1996).
    if variation is None:  # looking towards +x at 35 deg
        incidence = math.radians(INCIDENCE_DEG)
        local = np.clip(incidence - np.arctan(np.gradient(elevation_m, PIXEL_M, axis=1)),
                        math.radians(10), math.radians(80))
        terrain_db = 10.0 * np.log10(math.sin(incidence) / np.sin(local))
    else:
        incidence = np.radians(incidence_deg)
        facing = np.gradient(elevation_m, PIXEL_M, axis=1) * (1.0 if variation.look_east else -1.0)
        local = np.clip(incidence - np.arctan(facing), math.radians(10), math.radians(80))
        terrain_db = 10.0 * np.log10(np.sin(incidence) / np.sin(local))
    land = labels != WATER
    db[land] += terrain_db[land]
    if variation is None:
        sea = layers["sea"]
        wind = spectral_fields(rng, labels.shape, (150,))[0]
        db[sea] += SEA_WIND_MAX_DB * rng.uniform(0.2, 1.0) * np.clip(0.5 + 0.3 * wind[sea], 0, 1)
    else:
        _add_water_wind(rng, db, labels, layers, variation.wind_db)
        flooded = layers["flooded_vegetation"]
        db[flooded & np.isin(labels, FLOODABLE_FOREST)] += variation.flooded_forest_gain_db
        db[flooded & np.isin(labels, FLOODABLE_HERBACEOUS)] += variation.flooded_herbaceous_gain_db
        db[layers["layover"]] += LAYOVER_GAIN_DB
        db = smear_along_range(db, layers["layover"])
        db[layers["shadow"]] = SHADOW_DB
    db += np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)  # residual antenna pattern
    return db, texture


def _add_water_wind(rng: np.random.Generator, db, labels, layers, wind_db: float) -> None:
    """Wind roughens open water (sea, lakes: long fetch) into a brighter surface with gusts and
    streaks; sheltered rivers and ponds get a third of it."""
    gusts, cells = spectral_fields(rng, labels.shape, (150, 12))
    roughness = np.clip(0.8 + 0.25 * gusts + 0.2 * cells, 0, 1.3)
    water = labels == WATER
    open_water = water & (layers["sea"] | layers["lake"])
    db[open_water] += wind_db * roughness[open_water]
    sheltered = water & ~open_water
    db[sheltered] += wind_db / 3 * roughness[sheltered]

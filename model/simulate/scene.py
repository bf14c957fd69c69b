"""One ALOS-2-like scene: a 9-class label map with realistic layout and its HH backscatter.

Layout: a terrain field decides where forest (hills) and paddy (flat low ground) go; rivers
carve valleys and meander to the sea where a scene has a coast; roads attract built-up areas;
small rare objects (solar-panel fields, bare patches, ponds) are sprinkled on land. Backscatter:
per-class sigma0 ranges of L-band HH (model/simulate/README.md gives the sources), per-region
means, a slope (local incidence) term, Gamma texture for built-up areas and multiplicative
Gamma speckle with a configurable number of looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..classes import LULC_CLASSES
from ..inference.sar_input import db_to_power, power_to_db
from .fields import draw_thick_line, gaussian_blur, sinuous_path, spectral_fields, warped_cells

_CODE = {name: code for code, name, _ in LULC_CLASSES}
WATER, BUILT_UP, PADDY = _CODE["Water"], _CODE["Built-up"], _CODE["Paddy field"]
CROPLAND, GRASSLAND, BARE, SOLAR = _CODE["Cropland"], _CODE["Grassland"], _CODE["Bare land"], _CODE["Solar panel"]
BROADLEAF, NEEDLELEAF = _CODE["Broadleaf forest"], _CODE["Needleleaf forest"]
NODATA_LABEL = 0

PIXEL_M = 10.0
INCIDENCE_DEG = 35.0  # mid-swath incidence of PALSAR-2 stripmap (about 30-44 deg)


@dataclass(frozen=True)
class Backscatter:
    """HH sigma0 model of one class: the scene's class mean is drawn from `mean_db`; regions
    (parcels, stands, blocks of about `region_px` pixels) deviate by N(0, `region_sd_db`);
    `texture_shape` (Gamma, mean 1) adds the heavy-tailed point scatterers of built-up areas."""

    mean_db: tuple[float, float]
    region_sd_db: float
    region_px: float
    texture_shape: float | None = None


HH_L_BAND = {
    WATER: Backscatter((-26.0, -20.0), 0.5, 48),
    BUILT_UP: Backscatter((-4.0, 2.0), 2.5, 12, texture_shape=1.5),
    PADDY: Backscatter((-15.0, -10.0), 2.5, 8),
    CROPLAND: Backscatter((-14.0, -10.0), 2.0, 10),
    GRASSLAND: Backscatter((-15.0, -11.0), 1.5, 16),
    BROADLEAF: Backscatter((-8.0, -6.0), 0.6, 24),
    NEEDLELEAF: Backscatter((-8.5, -6.5), 0.6, 24),
    BARE: Backscatter((-18.0, -12.0), 2.0, 16),
    SOLAR: Backscatter((-14.0, -6.0), 5.0, 40),
}
# Roads are labelled Built-up but smooth asphalt scatters away from the sensor: dark, like bare soil.
ROAD_SURFACE = Backscatter((-20.0, -14.0), 1.5, 20)
SEA_WIND_MAX_DB = 6.0  # wind-roughened sea is up to this much brighter than calm water


@dataclass
class Scene:
    """A simulated scene. `labels`: uint8 class codes, 0 = nodata. `sigma0_db`: observed (speckled)
    HH backscatter, float32 dB, NaN where there is no data. `reflectivity_db`: the same without
    speckle. `layers`: boolean masks of the drawn structures (sea, river, road)."""

    labels: np.ndarray
    sigma0_db: np.ndarray
    reflectivity_db: np.ndarray
    elevation_m: np.ndarray
    layers: dict[str, np.ndarray]
    looks: float
    seed: object

    @property
    def valid(self) -> np.ndarray:
        return self.labels != NODATA_LABEL


def simulate_scene(size: int | tuple[int, int], seed, looks: float = 4.0, nodata_margin: bool = True,
                   holes: bool = False) -> Scene:
    """Simulate one scene of `size` pixels (10 m) from `seed` (an int or a sequence of ints, e.g.
    (set_seed, scene_index)); `looks` is the speckle's equivalent number of looks."""
    if looks <= 0:
        raise ValueError(f"looks must be positive (got {looks}); 1 = single-look, ALOS-2 L1.5 is about 2-4")
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if min(shape) < 32:
        raise ValueError(f"scene size {shape} is too small: use at least 32 x 32 pixels")
    rng = np.random.default_rng(seed)
    labels, elevation_m, layers = _label_map(rng, shape)
    valid = _valid_mask(rng, shape, nodata_margin, holes)
    labels[~valid] = NODATA_LABEL
    reflectivity_db = _reflectivity(rng, labels, elevation_m, layers["sea"], layers["road"] & valid)
    speckle = rng.gamma(looks, 1.0 / looks, shape)
    sigma0_db = power_to_db(db_to_power(reflectivity_db) * speckle)
    reflectivity_db[~valid] = np.nan
    sigma0_db[~valid] = np.nan
    return Scene(labels, sigma0_db, reflectivity_db, elevation_m, layers, looks, seed)


def _quantile_mask(score: np.ndarray, where: np.ndarray, fraction: float) -> np.ndarray:
    """The `fraction` of `where` pixels with the highest score (smooth score -> smooth regions)."""
    if not where.any() or fraction <= 0:
        return np.zeros_like(where)
    threshold = np.quantile(score[where], 1.0 - min(fraction, 1.0))
    return where & (score >= threshold)


def _label_map(rng: np.random.Generator, shape):
    h, w = shape
    npix = h * w
    (hills, relief, crinkle_a, crinkle_b, urban_noise, paddy_noise, crop_noise, stand_noise,
     bare_noise, pond_noise, coast_noise, beach_noise) = spectral_fields(
        rng, shape, (150, 40, 5, 5, 50, 35, 30, 30, 6, 4, 60, 10))
    terrain = 0.65 * hills + 0.28 * relief + 0.07 * crinkle_a
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # Coast: sea along one edge in about 30 % of scenes; the land behind it is a low plain.
    sea = np.zeros(shape, bool)
    coast_side = int(rng.integers(4)) if rng.random() < 0.3 else None
    if coast_side is not None:
        along = [yy, h - 1 - yy, xx, w - 1 - xx][coast_side]
        extent = h if coast_side < 2 else w
        coast_distance = along + 0.06 * extent * coast_noise + 1.5 * crinkle_b
        shore = rng.uniform(0.05, 0.25) * extent
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
    elevation_m = (terrain - terrain.min()) * (rng.uniform(150, 900) / max(np.ptp(terrain), 1e-6))
    slope = np.hypot(*np.gradient(elevation_m, PIXEL_M))

    labels = np.zeros(shape, np.uint8)
    labels[sea] = WATER
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
    return labels, elevation_m.astype(np.float32), {"sea": sea, "river": river & ~road, "road": road & land}


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


def _reflectivity(rng: np.random.Generator, labels, elevation_m, sea, road) -> np.ndarray:
    """Speckle-free HH sigma0 (dB): class means, region offsets, slope, sea wind, built-up texture."""
    w = labels.shape[1]
    warp = 6.0 * spectral_fields(rng, labels.shape, (12, 12))
    db = np.zeros(labels.shape, np.float32)
    texture = np.ones(labels.shape, np.float64)
    surfaces = [((labels == code) & ~road, model) for code, model in HH_L_BAND.items()] + [(road, ROAD_SURFACE)]
    for where, model in surfaces:
        if not where.any():
            continue
        regions = warped_cells(rng, labels.shape, model.region_px * rng.uniform(0.7, 1.4), warp)
        db[where] = rng.uniform(*model.mean_db) + model.region_sd_db * regions[where]
        if model.texture_shape:
            texture[where] = rng.gamma(model.texture_shape, 1.0 / model.texture_shape, int(where.sum()))
    # Local incidence angle: slopes facing the sensor (looking towards +x) are brighter (Ulander 1996).
    incidence = math.radians(INCIDENCE_DEG)
    local = np.clip(incidence - np.arctan(np.gradient(elevation_m, PIXEL_M, axis=1)), math.radians(10), math.radians(80))
    terrain_db = 10.0 * np.log10(math.sin(incidence) / np.sin(local))
    land = labels != WATER
    db[land] += terrain_db[land]
    wind = spectral_fields(rng, labels.shape, (150,))[0]
    db[sea] += SEA_WIND_MAX_DB * rng.uniform(0.2, 1.0) * np.clip(0.5 + 0.3 * wind[sea], 0, 1)
    db += np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)  # residual antenna pattern
    return power_to_db(db_to_power(db) * texture)

"""Radar geometry and the observation of a simulated scene (used with realistic variability).

`layover_and_shadow` finds where steep terrain folds or hides the ground along range and
`smear_along_range` spreads a layover cell along its run, as terrain-corrected products show it;
`observe` turns the speckle-free level into a product: thermal noise, K-distributed texture times
Gamma speckle, the product's resolution resampled onto the 10 m grid, and the calibration offset.
"""

from __future__ import annotations

import math

import numpy as np

from ..sar.decibels import db_to_power, power_to_db
from .fields import gaussian_blur, upsample
from .variation import SceneVariation

PIXEL_M = 10.0
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def layover_and_shadow(elevation_m: np.ndarray, variation: SceneVariation) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (layover, shadow) masks: streaks along range (x) behind and in front of steep slopes.
    Layover: ground points that share a slant range with another point (slant range not increasing
    along the look direction). Shadow: ground below the grazing ray from an earlier summit."""
    w = elevation_m.shape[1]
    theta = math.radians(float(variation.incidence_deg(w).mean()))
    z = elevation_m.astype(np.float64)
    if not variation.look_east:
        z = z[:, ::-1]
    x = np.arange(w, dtype=np.float64)[None, :] * PIXEL_M
    slant = x * math.sin(theta) - z * math.cos(theta)
    layover = (slant < np.maximum.accumulate(slant, axis=1)) | (
        slant > np.minimum.accumulate(slant[:, ::-1], axis=1)[:, ::-1])
    ray = z + x / math.tan(theta)
    shadow = ray < np.maximum.accumulate(ray, axis=1)
    if not variation.look_east:
        layover, shadow = layover[:, ::-1], shadow[:, ::-1]
    return np.ascontiguousarray(layover), np.ascontiguousarray(shadow & ~layover)


def smear_along_range(db: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each run of `mask` pixels along a row (range) gets the run's mean power: terrain correction
    maps one slant-range cell onto the whole layover run, which shows as streaks along range."""
    flat = mask.ravel()
    starts = flat & ~np.concatenate(([False], flat[:-1]))
    starts.reshape(mask.shape)[:, 0] = flat.reshape(mask.shape)[:, 0]  # a run never continues onto the next row
    run = np.cumsum(starts)[flat] - 1
    power = db_to_power(db.ravel()[flat])
    mean = np.bincount(run, power) / np.bincount(run)
    out = db.copy()
    out.ravel()[flat] = power_to_db(mean[run])
    return out


def observe(rng: np.random.Generator, level_db: np.ndarray, texture: np.ndarray,
            variation: SceneVariation) -> tuple[np.ndarray, np.ndarray]:
    """(reflectivity_db, sigma0_db) of the product: reflectivity is the texture- and speckle-free
    level plus noise at the product's resolution; sigma0 adds K texture (Gamma texture x Gamma
    speckle, Jakeman & Pusey 1976) with `looks` looks per resolution cell. A product finer than
    10 m averages (10 / r)² cells per pixel (more looks); a coarser one is blurred and its speckle
    is correlated over r / 10 pixels (bilinear resampling of the coarse grid)."""
    shape = level_db.shape
    noise = db_to_power(variation.noise_floor_db)
    level = db_to_power(level_db)
    mean_power = level + noise
    textured_power = level * texture + noise
    factor = variation.resolution_m / PIXEL_M
    looks = variation.looks
    if factor > 1.0:
        sigma = factor * _FWHM_TO_SIGMA
        weight = gaussian_blur(np.ones(shape, np.float32), sigma)
        mean_power = gaussian_blur(mean_power.astype(np.float32), sigma) / weight
        textured_power = gaussian_blur(textured_power.astype(np.float32), sigma) / weight
        coarse_shape = (int(math.ceil((shape[0] - 1) / factor)) + 2, int(math.ceil((shape[1] - 1) / factor)) + 2)
        speckle = upsample(rng.gamma(looks, 1.0 / looks, coarse_shape), factor, shape, 0.0)
    else:
        cell_looks = looks / factor ** 2
        speckle = rng.gamma(cell_looks, 1.0 / cell_looks, shape)
    offset = np.float32(variation.calibration_offset_db)
    return power_to_db(mean_power) + offset, power_to_db(textured_power * speckle) + offset

"""Lee and refined Lee speckle filters of sigma0, which give the same result whether run on the whole raster
or window by window with `filter_halo` pixels of context. numpy only."""

from __future__ import annotations

from enum import Enum

import numpy as np

from ..errors import OptionError
from .decibels import db_to_power, power_to_db

DEFAULT_LOOKS = 1.0
"""Equivalent number of looks assumed by the speckle filters: single-look speckle (the
strongest smoothing of homogeneous areas). Pass the product's ENL to smooth less."""


class SpeckleFilter(str, Enum):
    NONE = "none"
    LEE = "Lee"
    REFINED_LEE = "refined Lee"


def filter_halo(filter_name: SpeckleFilter | str, size: int) -> int:
    """Context pixels a window needs on each side so that filtering it and cropping the halo
    equals filtering the whole raster (pixels beyond the raster edge count as invalid)."""
    filter_name = SpeckleFilter(filter_name)
    if filter_name is SpeckleFilter.NONE:
        return 0
    _check_size(filter_name, size)
    return size // 2


def _check_size(filter_name: SpeckleFilter, size: int) -> None:
    allowed = (5, 7, 9, 11) if filter_name is SpeckleFilter.REFINED_LEE else range(3, 32, 2)
    if size not in allowed:
        choices = ", ".join(map(str, allowed)) if filter_name is SpeckleFilter.REFINED_LEE else "an odd number 3..31"
        raise OptionError(f"Speckle filter window {size} is not supported for {filter_name.value}; use {choices}.")


def _padded_layers(power: np.ndarray, valid: np.ndarray, pad: int):
    """Zero-padded count, sum and sum of squares layers (invalid pixels contribute nothing)."""
    count = np.pad(valid.astype(np.float64), pad)
    value = np.pad(np.where(valid, power, 0.0).astype(np.float64), pad)
    return count, value, value * value


def _box_sum(layer: np.ndarray, radius: int) -> np.ndarray:
    """Sum over a (2r+1)^2 box at every pixel of the interior (layer shrinks by r on each side).

    Adds shifted slices in a fixed order, so a pixel's sum is bit-identical whatever window it is
    computed in (a prefix-sum implementation would not be)."""
    height, width = layer.shape
    rows = sum(layer[:, dx:width - 2 * radius + dx] for dx in range(2 * radius + 1))
    return sum(rows[dy:height - 2 * radius + dy, :] for dy in range(2 * radius + 1))


def _lee_weighting(pixel, mean, variance, looks: float) -> np.ndarray:
    """Lee (1980) MMSE estimate for multiplicative noise with variance 1/looks."""
    noise_var = 1.0 / looks
    signal_var = (variance - mean * mean * noise_var) / (1.0 + noise_var)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(variance > 0, np.clip(signal_var / variance, 0.0, 1.0), 0.0)
    return mean + weight * (pixel - mean)


def _prepare(power, size, valid, looks, filter_name):
    _check_size(filter_name, size)
    if looks <= 0:
        raise OptionError(f"Equivalent number of looks must be positive, not {looks}.")
    power = np.asarray(power, dtype=np.float64)
    valid = np.isfinite(power) if valid is None else (np.asarray(valid, bool) & np.isfinite(power))
    return power, valid


def lee_filter(power: np.ndarray, size: int = 7, valid: np.ndarray | None = None,
               looks: float = DEFAULT_LOOKS) -> np.ndarray:
    """Lee (1981) local-statistics filter of linear power over a size x size window.

    Local mean/variance use the window's valid pixels only; invalid pixels come back unchanged.
    """
    power, valid = _prepare(power, size, valid, looks, SpeckleFilter.LEE)
    radius = size // 2
    count, total, squares = (_box_sum(layer, radius) for layer in _padded_layers(power, valid, radius))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        variance = np.maximum(squares / count - mean * mean, 0.0)
    return np.where(valid, _lee_weighting(power, mean, variance, looks), power)


def _directional_masks(radius: int) -> list[tuple[int, int, int]]:
    """The 8 edge-aligned half windows as (dy, first dx, last dx) row segments.

    Order: left, right, top, bottom halves, then the 4 triangles (diagonal included) on either
    side of the two diagonals. Every mask contains the centre pixel."""
    offsets = range(-radius, radius + 1)
    masks = [
        [(dy, -radius, 0) for dy in offsets],
        [(dy, 0, radius) for dy in offsets],
        [(dy, -radius, radius) for dy in offsets if dy <= 0],
        [(dy, -radius, radius) for dy in offsets if dy >= 0],
        [(dy, dy, radius) for dy in offsets],     # upper right of the main diagonal (dx >= dy)
        [(dy, -radius, dy) for dy in offsets],    # lower left (dx <= dy)
        [(dy, -radius, -dy) for dy in offsets],   # upper left of the anti-diagonal (dx + dy <= 0)
        [(dy, -dy, radius) for dy in offsets],    # lower right (dx + dy >= 0)
    ]
    return masks


def _segment_sums(layer: np.ndarray, radius: int, height: int, width: int, masks, choice: np.ndarray) -> np.ndarray:
    """Sum of `layer` over each pixel's chosen directional mask (fixed summation order)."""
    # prefix[k] / suffix[k]: horizontal sums over dx in [-r, k-r] / [k-r, r] at every padded row
    span = 2 * radius + 1
    shifted = [layer[:, dx:dx + width] for dx in range(span)]
    prefix, suffix = [shifted[0]], [shifted[-1]]
    for k in range(1, span):
        prefix.append(prefix[-1] + shifted[k])
        suffix.append(suffix[-1] + shifted[span - 1 - k])
    suffix.reverse()
    result = np.zeros((height, width))
    for index, segments in enumerate(masks):
        where = choice == index
        if not where.any():
            continue
        total = np.zeros((height, width))
        for dy, first, last in segments:
            rows = slice(radius + dy, radius + dy + height)
            part = prefix[last + radius] if first == -radius else suffix[first + radius]
            total = total + part[rows]
        result[where] = total[where]
    return result


def refined_lee_filter(power: np.ndarray, size: int = 7, valid: np.ndarray | None = None,
                       looks: float = DEFAULT_LOOKS) -> np.ndarray:
    """Lee's refined filter (Lee 1981): Lee weighting over an edge-aligned half window.

    The window is split into 3 x 3 overlapping sub-windows (3 px, stride 2 for the classic 7 x 7;
    as in ESA SNAP, 3/1 for 5, 5/2 for 9, 5/3 for 11); the largest of four gradients of their
    means picks the edge direction and the side more like the centre picks one of 8 half
    windows (diagonal ones triangular), whose valid pixels give the local statistics.
    Simplification: the edge-aligned window is always used (no homogeneity test switching to
    the full window), as in Lee's paper; invalid sub-windows take the centre's mean.
    """
    power, valid = _prepare(power, size, valid, looks, SpeckleFilter.REFINED_LEE)
    radius = size // 2
    sub = 3 if size <= 7 else 5
    stride = (size - sub) // 2
    height, width = power.shape
    count, total, squares = _padded_layers(power, valid, radius + sub // 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sub_mean = _box_sum(total, sub // 2) / _box_sum(count, sub // 2)  # padded by `radius`

    def grid(i, j):
        return sub_mean[radius + i * stride:radius + i * stride + height,
                        radius + j * stride:radius + j * stride + width]

    centre = grid(0, 0)
    a, b, c, d, f, g, h, i = (np.where(np.isfinite(m), m, centre) for m in
                              (grid(-1, -1), grid(-1, 0), grid(-1, 1), grid(0, -1),
                               grid(0, 1), grid(1, -1), grid(1, 0), grid(1, 1)))
    gradients = np.stack([np.abs((a + d + g) - (c + f + i)),    # left | right
                          np.abs((a + b + c) - (g + h + i)),    # top | bottom
                          np.abs((b + c + f) - (d + g + h)),    # upper right | lower left
                          np.abs((d + a + b) - (h + i + f))])   # upper left | lower right
    direction = gradients.argmax(axis=0)
    # of the two sides, take the one whose outer sub-window mean is closer to the centre's;
    # mask index = 2 * direction + (0 for the first side, 1 for the second), see _directional_masks
    sides = [(d, f), (b, h), (c, g), (a, i)]
    first_side = np.select([direction == k for k in range(4)],
                           [np.abs(centre - p) <= np.abs(centre - q) for p, q in sides])
    choice = 2 * direction + np.where(first_side, 0, 1)

    masks = _directional_masks(radius)
    trim = sub // 2
    layers = [layer[trim:-trim, trim:-trim] if trim else layer for layer in (count, total, squares)]
    n, s, q = (_segment_sums(layer, radius, height, width, masks, choice) for layer in layers)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s / n
        variance = np.maximum(q / n - mean * mean, 0.0)
    return np.where(valid, _lee_weighting(power, mean, variance, looks), power)


def speckle_filter_db(db: np.ndarray, valid: np.ndarray, filter_name: SpeckleFilter | str, size: int = 7,
                      looks: float = DEFAULT_LOOKS) -> np.ndarray:
    """Filter a dB window in linear power (where speckle is multiplicative) and return dB (float32)."""
    filter_name = SpeckleFilter(filter_name)
    if filter_name is SpeckleFilter.NONE:
        return np.asarray(db, dtype=np.float32)
    run = lee_filter if filter_name is SpeckleFilter.LEE else refined_lee_filter
    filtered = run(db_to_power(db), size, valid=valid, looks=looks)
    return np.where(valid, power_to_db(filtered), db).astype(np.float32)

"""What a SAR input raster holds and how to turn it into sigma0 dB on the ground.

Input units (ALOS-2 DN, linear power, dB) and their conversion to dB, the validity mask,
Lee and refined Lee speckle filters that give the same result whether run on the whole
raster or window by window with `filter_halo` pixels of context, and the ground size of a
pixel in metres (also for rasters in degrees). numpy + GDAL only.
"""

from __future__ import annotations

import math
import re
from enum import Enum

import numpy as np
from osgeo import gdal

from .errors import InputRasterError, OptionError

ALOS2_CALIBRATION_FACTOR_DB = -83.0
"""PALSAR-2 CF: sigma0 [dB] = 10*log10(DN^2) + CF (JAXA, PALSAR-2 calibration factor)."""

DEFAULT_LOOKS = 1.0
"""Equivalent number of looks assumed by the speckle filters: single-look speckle (the
strongest smoothing of homogeneous areas). Pass the product's ENL to smooth less."""

_TINY_POWER = 1e-10  # -100 dB: floor for log10 of non-positive linear power


class InputUnits(str, Enum):
    """What the pixel values of the input band are; the values are the labels users pick."""

    AUTO = "auto"
    DN = "ALOS-2 DN"
    LINEAR = "linear power"
    DB = "dB"


class SpeckleFilter(str, Enum):
    NONE = "none"
    LEE = "Lee"
    REFINED_LEE = "refined Lee"


_UNITS_ADVICE = "set INPUT_UNITS to ALOS-2 DN, linear power or dB"

# The band descriptions the engine gives its outputs: how a SAR LULC result is recognised when it
# is offered as input (a 0..1 confidence raster would otherwise pass for linear power).
CLASSES_BAND, CONFIDENCE_BAND = "LULC class", "Confidence (max class probability)"
WATER_BAND, PROBABILITY_BAND = "Water mask", "Water probability"
RESULT_BAND_DESCRIPTIONS = {
    CLASSES_BAND: "a land-cover class map",
    CONFIDENCE_BAND: "a land-cover confidence raster",
    WATER_BAND: "a water mask",
    PROBABILITY_BAND: "a water probability raster",
}


def sample_valid_values(dataset: gdal.Dataset, band: int, nodata: float | None = None,
                        max_pixels: int = 65536) -> np.ndarray:
    """Valid pixel values from a 3 x 3 grid of windows spread over the raster (never the whole raster).

    Excludes `nodata` (the band's nodata when None) and non-finite values.
    """
    raster_band = dataset.GetRasterBand(band)
    if nodata is None:
        nodata = raster_band.GetNoDataValue()
    width, height = dataset.RasterXSize, dataset.RasterYSize
    per_axis = 3
    edge = max(1, int(math.sqrt(max_pixels / per_axis**2)))
    win_w, win_h = min(edge, width), min(edge, height)
    chunks = []
    for row in range(per_axis):
        for col in range(per_axis):
            x0 = round((width - win_w) * (col + 0.5) / per_axis)
            y0 = round((height - win_h) * (row + 0.5) / per_axis)
            values = raster_band.ReadAsArray(x0, y0, win_w, win_h).ravel()
            keep = np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
            if nodata is not None:
                keep &= values != nodata
            chunks.append(values[keep])
    return np.concatenate(chunks)


def not_backscatter_reason(dataset: gdal.Dataset, band: int) -> str | None:
    """Why band ``band`` cannot be SAR backscatter, or None when it may be: a SAR LULC result (by its
    band description) or a class raster (a colour table or class names)."""
    raster_band = dataset.GetRasterBand(band)
    result = RESULT_BAND_DESCRIPTIONS.get(raster_band.GetDescription())
    if result:
        return f"this is a SAR LULC result ({result}), not backscatter: choose the SAR raster"
    if raster_band.GetColorTable() is not None or raster_band.GetCategoryNames():
        return "this is a class raster (it has a colour table or class names), not backscatter: choose the SAR raster"
    return None


def band_hints(dataset: gdal.Dataset, band: int) -> list[str]:
    """Texts that may name the units: band description, unit type, band and dataset metadata."""
    raster_band = dataset.GetRasterBand(band)
    hints = [raster_band.GetDescription(), raster_band.GetUnitType()]
    for owner in (raster_band, dataset):
        hints += [f"{key}={value}" for key, value in (owner.GetMetadata() or {}).items()]
    return [hint for hint in hints if hint]


_DB_HINT = re.compile(r"(^|[^a-z])db([^a-z]|$)|decibel", re.IGNORECASE)
_LINEAR_HINT = re.compile(r"linear|intensity|power", re.IGNORECASE)


def detect_units(dtype, sample: np.ndarray, hints=()) -> tuple[InputUnits, str]:
    """Guess the units from the data type and a sample of valid values; hints settle ambiguous cases.

    Exact zeros are left out of the statistics: they are nodata fill in DN and linear
    products and a measure-zero value in dB. Returns (units, reason for the log); raises
    InputRasterError naming INPUT_UNITS when the values fit no unit or several.
    """
    dtype = np.dtype(dtype)
    values = np.asarray(sample, dtype=np.float64)
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        raise InputRasterError("The input band has no valid (non-zero, non-nodata) pixel in the sampled "
                               "windows; check the band number and its nodata value.")
    median = float(np.median(values))
    negative = float(np.mean(values < 0))
    in_db_range = float(np.mean((values >= -50) & (values <= 15)))
    whole = bool(np.all(values == np.round(values)))
    stats = f"median {median:.4g}, {negative:.0%} negative, range {values.min():.4g}..{values.max():.4g}"
    hint_text = " ".join(str(hint) for hint in hints)

    if negative == 0 and whole and median >= 50 and values.max() <= 65535:
        kind = "integer" if dtype.kind in "iu" else "whole-number float"
        return InputUnits.DN, f"{kind} values in the ALOS-2 amplitude DN range ({stats})"
    if dtype.kind == "f":
        if in_db_range >= 0.95 and negative >= 0.5:
            return InputUnits.DB, f"float values mostly negative within -50..15 ({stats})"
        if negative <= 0.001 and 1e-4 <= median <= 1:
            return InputUnits.LINEAR, f"non-negative float values with median in 1e-4..1 ({stats})"
        if _DB_HINT.search(hint_text) and np.all((values >= -100) & (values <= 40)):
            return InputUnits.DB, f"band labelled dB ('{hint_text}') and values within -100..40 ({stats})"
        if _LINEAR_HINT.search(hint_text) and negative <= 0.001:
            return InputUnits.LINEAR, f"band labelled linear ('{hint_text}') and non-negative values ({stats})"
    raise InputRasterError(f"Cannot tell the units of the input band ({dtype.name}, {stats}); "
                           f"{_UNITS_ADVICE}.")


def detect_band_units(dataset: gdal.Dataset, band: int, max_pixels: int = 65536) -> tuple[InputUnits, str]:
    """`detect_units` on a sample of the band, with its description and metadata as hints."""
    raster_band = dataset.GetRasterBand(band)
    sample = sample_valid_values(dataset, band, max_pixels=max_pixels)
    dtype = gdal.GetDataTypeName(raster_band.DataType)
    numpy_dtype = np.dtype({"Byte": "uint8", "Int8": "int8"}.get(dtype, dtype.lower()))
    return detect_units(numpy_dtype, sample, band_hints(dataset, band))


def valid_mask(raw: np.ndarray, nodata: float | None, units: InputUnits) -> np.ndarray:
    """Pixels that carry a measurement: finite, not nodata, DN > 0 (DN 0 is ALOS-2 fill), linear power > 0."""
    mask = np.isfinite(raw) if raw.dtype.kind == "f" else np.ones(raw.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        mask &= raw != nodata
    if units in (InputUnits.DN, InputUnits.LINEAR):
        mask &= raw > 0
    return mask


def power_to_db(power: np.ndarray) -> np.ndarray:
    return (10.0 * np.log10(np.maximum(power, _TINY_POWER))).astype(np.float32)


def db_to_power(db: np.ndarray) -> np.ndarray:
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0)


def to_db(raw: np.ndarray, units: InputUnits, calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB) -> np.ndarray:
    """Backscatter in dB (float32); invalid pixels give finite garbage, mask them with `valid_mask`."""
    units = InputUnits(units)
    if units is InputUnits.DN:
        amplitude = np.asarray(raw, dtype=np.float64)
        return (10.0 * np.log10(np.maximum(amplitude * amplitude, _TINY_POWER)) + calibration_factor).astype(np.float32)
    if units is InputUnits.LINEAR:
        return power_to_db(np.asarray(raw, dtype=np.float64))
    if units is InputUnits.DB:
        return np.asarray(raw, dtype=np.float32)
    raise ValueError("to_db needs resolved units; run detect_units for INPUT_UNITS=auto")


# ---------------------------------------------------------------- speckle filters

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


# ---------------------------------------------------------------- ground pixel size

def ground_pixel_size_m(dataset: gdal.Dataset) -> tuple[float, float]:
    """Pixel size on the ground in metres (x, y): CRS linear units for projected rasters,
    ellipsoidal arc lengths at the raster's centre latitude for geographic ones."""
    srs = dataset.GetSpatialRef()
    if srs is None:
        raise InputRasterError("The input raster has no coordinate reference system; assign one "
                               "(Raster ▸ Projections ▸ Assign Projection) and run again.")
    gt = dataset.GetGeoTransform()
    step_x, step_y = math.hypot(gt[1], gt[4]), math.hypot(gt[2], gt[5])
    if srs.IsProjected() or srs.IsLocal():
        metres = srs.GetLinearUnits()
        return step_x * metres, step_y * metres
    if not srs.IsGeographic():
        raise InputRasterError("The input raster's CRS is neither projected nor geographic; "
                               "reproject it to a projected CRS first.")
    # GDAL rasters in a geographic CRS have x = longitude, y = latitude (traditional GIS order)
    radians = srs.GetAngularUnits()
    centre_y = gt[3] + gt[4] * dataset.RasterXSize / 2 + gt[5] * dataset.RasterYSize / 2
    latitude = centre_y * radians
    semi_major = srs.GetSemiMajor()
    flattening = 1.0 / srs.GetInvFlattening() if srs.GetInvFlattening() else 0.0
    e2 = flattening * (2 - flattening)
    w = math.sqrt(1 - e2 * math.sin(latitude) ** 2)
    prime_vertical = semi_major / w                    # N: east-west radius of curvature
    meridional = semi_major * (1 - e2) / w**3          # M: north-south radius of curvature
    return prime_vertical * math.cos(latitude) * step_x * radians, meridional * step_y * radians

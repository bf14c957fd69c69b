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
from osgeo import gdal, osr

from .errors import InputRasterError, OptionError

ALOS2_CALIBRATION_FACTOR_DB = -83.0
"""PALSAR-2 CF: sigma0 [dB] = 10*log10(DN^2) + CF (JAXA, PALSAR-2 calibration factor)."""

DEFAULT_LOOKS = 1.0
"""Equivalent number of looks assumed by the speckle filters: single-look speckle (the
strongest smoothing of homogeneous areas). Pass the product's ENL to smooth less."""

_TINY_POWER = 1e-10  # -100 dB: floor for log10 of non-positive linear power


CALIBRATION_FACTOR_RANGE_DB = (-120.0, -40.0)
"""Calibration factors of amplitude DN products (PALSAR-2 and PALSAR mosaics -83 dB, JERS-1 -84.66 dB): a
value outside it (a lost minus sign, a factor in linear units) would write sigma0 tens of dB off."""


def check_calibration_factor(calibration_factor: float) -> None:
    """Refuse a calibration factor that would turn every DN into NaN or infinity, or far from any product's."""
    if not math.isfinite(calibration_factor):
        raise OptionError(f"Calibration factor {calibration_factor} is invalid: give a finite value in dB "
                          f"(PALSAR-2: {ALOS2_CALIBRATION_FACTOR_DB}).")
    low, high = CALIBRATION_FACTOR_RANGE_DB
    if not low <= calibration_factor <= high:
        raise OptionError(f"Calibration factor {calibration_factor:g} dB is outside {low:g}..{high:g} dB, where the "
                          f"factors of amplitude DN products lie (PALSAR-2: {ALOS2_CALIBRATION_FACTOR_DB:g} dB; check "
                          f"the sign): it would put sigma0 {abs(calibration_factor - ALOS2_CALIBRATION_FACTOR_DB):.0f} "
                          f"dB off. Use the factor of your product's documentation.")


class InputUnits(str, Enum):
    """What the pixel values of the input band are; the values are the labels users pick."""

    AUTO = "auto"
    DN = "ALOS-2 DN"
    LINEAR = "linear power"
    DB = "dB"
    RELATIVE = "relative brightness (uncalibrated)"

    @property
    def calibrated(self) -> bool:
        """Whether values of these units carry the absolute backscatter level (not a display stretch)."""
        return self is not InputUnits.RELATIVE


UNITS_FLAGS = {"auto": InputUnits.AUTO, "dn": InputUnits.DN, "linear": InputUnits.LINEAR, "db": InputUnits.DB,
               "relative": InputUnits.RELATIVE}
"""The command-line spelling of each INPUT_UNITS (inference and training CLIs)."""

RELATIVE_STRETCH_DB = (-24.0, 0.101)
"""(dB at value 0, dB per step) of relative brightness: 8-bit display stretches of backscatter are
read as dB = -24.0 + 0.101 * value. The fit of the ETCI 2021 8-bit Sentinel-1 VV chips to the
calibrated Sen1Floods11 chips: the ETCI training scenes' dark water population (mean 49) and land
median (142) put on Sen1Floods11's water (-19.1 dB) and land (-9.7 dB) medians (model/README.md)."""

RELATIVE_LAND_DB = -9.7
"""The land level a relative input's scene is anchored to (its land median is moved here): the
median of land in the calibrated Sen1Floods11 chips, within the -12..-6 dB of land scenes in
L-band HH (model/simulate/README.md)."""


class SpeckleFilter(str, Enum):
    NONE = "none"
    LEE = "Lee"
    REFINED_LEE = "refined Lee"


_UNITS_ADVICE = "set INPUT_UNITS to ALOS-2 DN, linear power, dB or relative brightness"
DB_RANGE = (-100.0, 40.0)
"""Values sigma0/gamma0 in dB can take (natural targets -40..+20 dB); outside it, a band is not dB."""


def band_scaling(raster_band: gdal.Band) -> tuple[float, float] | None:
    """The band's GDAL (scale, offset), value = stored * scale + offset; None when it has none."""
    scale, offset = raster_band.GetScale(), raster_band.GetOffset()
    scale = 1.0 if scale in (None, 0) else scale
    offset = offset or 0.0
    return None if (scale, offset) == (1.0, 0.0) else (scale, offset)


def apply_scaling(values: np.ndarray, scaling: tuple[float, float] | None) -> np.ndarray:
    """Stored values to what they mean (GDAL scale/offset), as QGIS shows them; float64 when scaled."""
    if scaling is None:
        return values
    scale, offset = scaling
    return values.astype(np.float64) * scale + offset


def check_backscatter_band(dataset: gdal.Dataset, band: int, source_name: str) -> None:
    """Refuse bands that cannot be backscatter whatever INPUT_UNITS says: complex values, SAR LULC
    results and class rasters (`not_backscatter_reason`), colour channels of an 8-bit picture."""
    raster_band = dataset.GetRasterBand(band)
    type_name = gdal.GetDataTypeName(raster_band.DataType)
    if gdal.DataTypeIsComplex(raster_band.DataType):
        raise InputRasterError(
            f"Band {band} of '{source_name}' holds complex values ({type_name}), as in a single-look complex "
            f"(SLC) product; the model needs backscatter intensity. Compute the intensity |z|² first "
            f"(e.g. with SNAP, or gdal_translate with a VRT pixel function 'intensity'), terrain-correct it, "
            f"and run on that raster.")
    colours = {dataset.GetRasterBand(i).GetColorInterpretation() for i in range(1, dataset.RasterCount + 1)}
    if raster_band.DataType == gdal.GDT_Byte and {gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand} <= colours:
        raise InputRasterError(
            f"'{source_name}' looks like an RGB image (8-bit red, green and blue bands), not SAR backscatter. "
            f"Run on the SAR product itself: one band of HH backscatter as ALOS-2 DN, linear power or dB.")
    reason = not_backscatter_reason(dataset, band)
    if reason:
        raise InputRasterError(f"Band {band} of '{source_name}' cannot be used as input: {reason}. Run on the SAR "
                               f"product: HH backscatter as ALOS-2 DN, linear power or dB.")


def sample_shape(width: int, height: int, max_pixels: int = 65536) -> tuple[int, int]:
    """(columns, rows) of an evenly decimated grid over a raster with at most ``max_pixels`` cells."""
    factor = max(1.0, math.sqrt(width * height / max(1, max_pixels)))
    columns = max(1, min(width, int(width / factor)))
    rows = max(1, min(height, max_pixels // columns))
    return columns, rows

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
    """Valid raw values of a decimated read of the WHOLE raster: at most ``max_pixels`` pixels on an
    even grid (nearest neighbour; GDAL reads from overviews when the file has them), so a scene
    whose data covers only a strip or a corner is sampled where its data is.

    Raw: as the band stores them with its GDAL scale/offset applied (float64 then), not converted
    to dB. Excludes `nodata` (the band's nodata when None), pixels of a mask or alpha band, and
    non-finite values. Memory stays bounded on any raster size, and the read touches at most one
    row of blocks per sampled row (one row per strip for strip-organised files).
    """
    raster_band = dataset.GetRasterBand(band)
    if nodata is None:
        nodata = raster_band.GetNoDataValue()
    width, height = dataset.RasterXSize, dataset.RasterYSize
    flags, _ = raster_band.GetDataCoverageStatus(0, 0, width, height)
    if flags == gdal.GDAL_DATA_COVERAGE_STATUS_EMPTY:  # a sparse file with no block written: nothing to read
        return np.empty(0, np.float64)
    columns, rows = sample_shape(width, height, max_pixels)
    read = dict(buf_xsize=columns, buf_ysize=rows, resample_alg=gdal.GRIORA_NearestNeighbour)
    values = raster_band.ReadAsArray(0, 0, width, height, **read).ravel()
    keep = np.isfinite(values) if values.dtype.kind in "fc" else np.ones(values.shape, bool)
    if nodata is not None and not math.isnan(nodata):
        keep &= values != nodata
    if not raster_band.GetMaskFlags() & (gdal.GMF_ALL_VALID | gdal.GMF_NODATA):
        keep &= raster_band.GetMaskBand().ReadAsArray(0, 0, width, height, **read).ravel() != 0
    return apply_scaling(values[keep], band_scaling(raster_band))


def not_backscatter_reason(dataset: gdal.Dataset, band: int) -> str | None:
    """Why band ``band`` cannot be SAR backscatter, or None when it may be: a SAR LULC result (by its
    band description) or a class raster (a colour table or class names)."""
    raster_band = dataset.GetRasterBand(band)
    result = RESULT_BAND_DESCRIPTIONS.get(raster_band.GetDescription())
    if result:
        return f"this is a SAR LULC result ({result}), not backscatter: choose the SAR raster"
    if raster_band.GetColorInterpretation() == gdal.GCI_PaletteIndex or raster_band.GetColorTable() is not None:
        return ("this is a class raster (it has a colour table: it looks like a class map or a paletted picture), "
                "not backscatter: choose the SAR raster")
    if raster_band.GetCategoryNames():
        return "this is a class raster (it has class names), not backscatter: choose the SAR raster"
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
_DN_HINT = re.compile(r"(^|[^a-z])dn([^a-z]|$)|digital number|amplitude", re.IGNORECASE)
_AMPLITUDE_HINT = re.compile(r"amplitude", re.IGNORECASE)


def _statistics(values: np.ndarray) -> str:
    return (f"median {np.median(values):.4g}, {np.mean(values < 0):.0%} negative, "
            f"range {values.min():.4g}..{values.max():.4g}")


FILL_MAGNITUDE = 1e6
"""No unit's values reach it (DN <= 65535, power about <= 1e3, dB within DB_RANGE): larger magnitudes
(+-1e30, -3.4e38) are fill, left out when the units are told."""


def _usable(sample) -> np.ndarray:
    values = np.asarray(sample, dtype=np.float64)
    return values[np.isfinite(values) & (values != 0) & (np.abs(values) < FILL_MAGNITUDE)]


def _fill_hint(sample) -> str:
    """A sentence about a value that fills much of the sample (an undeclared nodata such as -9999), or ""."""
    values = np.asarray(sample, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return ""
    found, counts = np.unique(values, return_counts=True)
    share = counts.max() / values.size
    if share < 0.05:
        return ""
    return (f" {share:.0%} of the pixels are exactly {found[counts.argmax()]:g}: if that is a fill value, declare it "
            f"as the band's nodata (gdal_edit.py -a_nodata VALUE) and run again.")


def detect_units(dtype, sample: np.ndarray, hints=()) -> tuple[InputUnits, str]:
    """Guess the units from the data type and a sample of valid values; hints settle ambiguous cases.

    Exact zeros are left out of the statistics: they are nodata fill in DN and linear
    products and a measure-zero value in dB. A band labelled dB (description, unit) is dB when
    its values can be dB, and refused when they cannot. 8-bit bands are never taken for ALOS-2
    DN (UInt16 amplitudes). Returns (units, reason for the log); raises InputRasterError naming
    INPUT_UNITS when the values fit no unit or several.
    """
    dtype = np.dtype(dtype)
    values = _usable(sample)
    if values.size == 0:
        raise InputRasterError("The input band has no valid (non-zero, non-nodata) pixel in the sample read "
                               "over the whole raster; check the band number and its nodata value.")
    median = float(np.median(values))
    negative = float(np.mean(values < 0))
    in_db_range = float(np.mean((values >= -50) & (values <= 15)))
    whole = bool(np.all(values == np.round(values)))
    stats = _statistics(values)
    hint_text = " ".join(str(hint) for hint in hints)
    # labelled dB: a hint names dB and no other unit ("DN, sigma0 = 10*log10(DN^2) - 83 dB" does not count)
    labelled_db = bool(_DB_HINT.search(hint_text)) and not (_LINEAR_HINT.search(hint_text)
                                                            or _DN_HINT.search(hint_text))

    if labelled_db:
        if np.mean((values >= DB_RANGE[0]) & (values <= DB_RANGE[1])) >= 0.95:
            return InputUnits.DB, f"dB: the band says so ({_hint_excerpt(hint_text, _DB_HINT)}) and its values " \
                                  f"fit ({stats})"
        raise InputRasterError(f"The band is labelled dB ({_hint_excerpt(hint_text, _DB_HINT)}), but its values ({dtype.name}, {stats}) "
                               f"cannot be dB (backscatter in dB lies within -100..40). Check the band; if you "
                               f"know its units, {_UNITS_ADVICE}.")
    if dtype.itemsize == 1 and dtype.kind in "iu":
        return InputUnits.RELATIVE, (f"8-bit values ({dtype.name}, {stats}): a display stretch, not calibrated "
                                     f"backscatter, so only contrasts are used; with the calibrated product the "
                                     f"absolute level would be used too")
    if negative == 0 and whole and median >= 50 and values.max() <= 65535:
        kind = "integer" if dtype.kind in "iu" else "whole-number float"
        return InputUnits.DN, f"{kind} values in the ALOS-2 amplitude DN range ({stats})"
    if dtype.kind == "f":
        if _AMPLITUDE_HINT.search(hint_text) and not _LINEAR_HINT.search(hint_text) and negative <= 0.001:
            raise InputRasterError(
                f"The band is described as amplitude ('{hint_text}') and holds non-negative float values ({stats}): "
                f"amplitude is the square root of power, so reading it as linear power would halve every contrast "
                f"in dB. Square it first (Raster Calculator: \"band\" * \"band\") and set INPUT_UNITS to linear "
                f"power; ALOS-2 amplitude DN (16-bit integers) are read as they are.")
        if in_db_range >= 0.95 and negative >= 0.5:
            return InputUnits.DB, f"float values mostly negative within -50..15 ({stats})"
        if negative <= 0.001 and 1e-4 <= median <= 1:
            return InputUnits.LINEAR, f"non-negative float values with median in 1e-4..1 ({stats})"
        if _LINEAR_HINT.search(hint_text) and negative <= 0.001:
            return InputUnits.LINEAR, f"linear power: the band says so ({_hint_excerpt(hint_text, _LINEAR_HINT)}) " \
                                      f"and its values are non-negative ({stats})"
    raise InputRasterError(f"Cannot tell the units of the input band ({dtype.name}, {stats}); "
                           f"{_UNITS_ADVICE}.{_fill_hint(sample)}")


def _hint_excerpt(hint_text: str, pattern: re.Pattern, context: int = 24) -> str:
    """The words around what ``pattern`` found in the band's description and metadata, quoted: the log
    says which label decided, not every metadata item of the band."""
    found = pattern.search(hint_text)
    start, end = max(0, found.start() - context), min(len(hint_text), found.end() + context)
    return "'" + ("…" if start else "") + hint_text[start:end].strip() + ("…" if end < len(hint_text) else "") + "'"


def check_units_fit(units: InputUnits, sample: np.ndarray) -> None:
    """Refuse an INPUT_UNITS the band's values cannot have (DN declared on dB, dB on DN, ...),
    naming both what was declared and what the values look like."""
    units = InputUnits(units)
    values = _usable(sample)
    if units is InputUnits.AUTO or values.size == 0:
        return
    median = float(np.median(values))
    negative = float(np.mean(values < 0))
    if units is InputUnits.DN and (negative > 0.01 or median < 1):
        problem = "negative" if negative > 0.01 else "below 1 (sigma0 below -83 dB)"
    elif units is InputUnits.LINEAR and (negative > 0.01 or median > 1000):
        problem = "negative" if negative > 0.01 else "far above 1 (a median above +30 dB)"
    elif units is InputUnits.DB and not DB_RANGE[0] <= median <= DB_RANGE[1]:
        problem = "outside -100..40, where no backscatter in dB lies"
    elif units is InputUnits.RELATIVE and (values.min() < 0 or values.max() > 255):
        problem = "outside 0..255, the range of an 8-bit display stretch"
    else:
        return
    try:
        looks_like = f"; they look like {detect_units(np.float64, values)[0].value}"
    except InputRasterError:
        looks_like = ""
    raise InputRasterError(
        f"INPUT_UNITS is {units.value}, but the band's values are {problem} ({_statistics(values)}), which "
        f"{units.value} cannot be{looks_like}. Set INPUT_UNITS to the band's real units, or to auto.")


def detect_band_units(dataset: gdal.Dataset, band: int, max_pixels: int = 65536,
                      sample: np.ndarray | None = None) -> tuple[InputUnits, str]:
    """`detect_units` on a sample of the band (`sample_valid_values`, unless given), with its
    description and metadata as hints; a band with a GDAL scale/offset counts as float."""
    raster_band = dataset.GetRasterBand(band)
    if sample is None:
        sample = sample_valid_values(dataset, band, max_pixels=max_pixels)
    dtype = gdal.GetDataTypeName(raster_band.DataType)
    numpy_dtype = np.dtype({"Byte": "uint8", "Int8": "int8"}.get(dtype, dtype.lower()))
    if band_scaling(raster_band) is not None:
        numpy_dtype = np.dtype(np.float64)
    return detect_units(numpy_dtype, sample, band_hints(dataset, band))


def valid_mask(raw: np.ndarray, nodata: float | None, units: InputUnits) -> np.ndarray:
    """Pixels that carry a measurement: finite, not nodata, DN > 0 (DN 0 is ALOS-2 fill), linear power > 0,
    relative brightness > 0 (0 is the fill of stretched pictures), dB within DB_RANGE."""
    mask = np.isfinite(raw) if raw.dtype.kind == "f" else np.ones(raw.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        mask &= raw != nodata
    if units in (InputUnits.DN, InputUnits.LINEAR, InputUnits.RELATIVE):
        mask &= raw > 0
    if units is InputUnits.DB:  # +-1e30 and undeclared fills are no backscatter
        mask &= (raw >= DB_RANGE[0]) & (raw <= DB_RANGE[1])
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
    if units is InputUnits.RELATIVE:  # nominal dB; the engine then anchors the scene's land level
        at_zero, per_step = RELATIVE_STRETCH_DB
        return (at_zero + per_step * np.asarray(raw, dtype=np.float64)).astype(np.float32)
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
    """Pixel size on the ground in metres (x, y) at the raster's centre.

    One pixel step along each axis is taken to the CRS's geographic coordinates and measured on
    its ellipsoid, so the size is right for degrees and for projections whose scale is far from
    1 (Web Mercator: a "10 m" pixel is 5 m on the ground at 60° N); LOCAL_CS rasters: their
    linear units.
    """
    srs = dataset.GetSpatialRef()
    if srs is None:
        raise InputRasterError("The input raster has no coordinate reference system; assign one "
                               "(Raster ▸ Projections ▸ Assign Projection) and run again.")
    gt = dataset.GetGeoTransform()
    step_x, step_y = math.hypot(gt[1], gt[4]), math.hypot(gt[2], gt[5])
    if srs.IsLocal():
        metres = srs.GetLinearUnits()
        return step_x * metres, step_y * metres
    if not (srs.IsProjected() or srs.IsGeographic()):
        raise InputRasterError("The input raster's CRS is neither projected nor geographic; "
                               "reproject it to a projected CRS first.")
    # centre pixel and one column / one row further, in the CRS's geographic coordinates
    column, row = dataset.RasterXSize / 2, dataset.RasterYSize / 2
    points = [(gt[0] + gt[1] * c + gt[2] * r, gt[3] + gt[4] * c + gt[5] * r)
              for c, r in ((column, row), (column + 1, row), (column, row + 1))]
    srs, geographic = srs.Clone(), srs.CloneGeogCS()
    for each in (srs, geographic):
        each.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)  # x = easting / longitude
    try:
        to_geographic = osr.CoordinateTransformation(srs, geographic)
        (lon, lat, _), *steps = to_geographic.TransformPoints(points)
    except RuntimeError:
        lon = lat = math.inf
    if not math.isfinite(lon + lat) or not all(math.isfinite(x + y) for x, y, _ in steps):
        if srs.IsGeographic():
            raise InputRasterError("The centre of the input raster lies outside the valid range of its "
                                   "geographic CRS; check its georeferencing.")
        metres = srs.GetLinearUnits()  # centre outside the projection's domain: its nominal units
        return step_x * metres, step_y * metres
    radians = geographic.GetAngularUnits()
    semi_major = geographic.GetSemiMajor()
    flattening = 1.0 / geographic.GetInvFlattening() if geographic.GetInvFlattening() else 0.0
    e2 = flattening * (2 - flattening)
    latitude = lat * radians
    w = math.sqrt(1 - e2 * math.sin(latitude) ** 2)
    east_per_radian = semi_major / w * math.cos(latitude)   # N cos(phi): east-west radius of the parallel
    north_per_radian = semi_major * (1 - e2) / w**3          # M: north-south radius of curvature
    sizes = []
    for x, y, _ in steps:
        east = ((x - lon) * radians + math.pi) % (2 * math.pi) - math.pi  # across the antimeridian too
        sizes.append(math.hypot(east_per_radian * east, north_per_radian * (y - lat) * radians))
    return sizes[0], sizes[1]

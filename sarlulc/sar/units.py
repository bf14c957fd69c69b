"""What a SAR input raster holds and how to turn it into sigma0 dB: input units (ALOS-2 DN, linear power,
dB, relative brightness), their detection and checks, calibration, the conversion to dB and the validity
mask. Speckle filters are in speckle.py, the ground size of a pixel in resample.py, the band names of the
results (refused as input) in sarlulc/products.py. numpy + GDAL only.
"""

from __future__ import annotations

import math
import re
from enum import Enum

import numpy as np
from osgeo import gdal

from ..products import RESULT_BAND_DESCRIPTIONS
from .decibels import TINY_POWER, power_to_db
from ..errors import InputRasterError, OptionError

ALOS2_CALIBRATION_FACTOR_DB = -83.0
"""PALSAR-2 CF: sigma0 [dB] = 10*log10(DN^2) + CF (JAXA, PALSAR-2 calibration factor)."""


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
L-band HH (sarlulc/simulate/README.md)."""


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


def to_db(raw: np.ndarray, units: InputUnits, calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB) -> np.ndarray:
    """Backscatter in dB (float32); invalid pixels give finite garbage, mask them with `valid_mask`."""
    units = InputUnits(units)
    if units is InputUnits.DN:
        amplitude = np.asarray(raw, dtype=np.float64)
        return (10.0 * np.log10(np.maximum(amplitude * amplitude, TINY_POWER)) + calibration_factor).astype(np.float32)
    if units is InputUnits.LINEAR:
        return power_to_db(np.asarray(raw, dtype=np.float64))
    if units is InputUnits.DB:
        return np.asarray(raw, dtype=np.float32)
    if units is InputUnits.RELATIVE:  # nominal dB; the engine then anchors the scene's land level
        at_zero, per_step = RELATIVE_STRETCH_DB
        return (at_zero + per_step * np.asarray(raw, dtype=np.float64)).astype(np.float32)
    raise ValueError("to_db needs resolved units; run detect_units for INPUT_UNITS=auto")

"""The run's input: its units (checked or detected, from one decimated sample of the whole band), the
reader the model runs on (the band, or a warped view of it on the model grid), where it holds data,
and what is measured of it before the run (relative anchoring, scene levels, the dB range a model learnt)."""

from __future__ import annotations

import numpy as np
from osgeo import gdal, osr

from ..rasters.coverage import DataCoverage
from .distribution import MARGIN_DB, percentile_label
from ..errors import InputRasterError
from .contract import SCENE_NORM_MODES, ModelContract
from .options import RunOptions
from ..rasters.reading import BackscatterReader, BandReader
from .normalisation import SceneStatistics
from ..rasters.resample import ModelGrid, ground_pixel_size_m, open_on_model_grid, resampling_to_model
from ..sar.units import DB_RANGE, RELATIVE_LAND_DB, InputUnits, check_units_fit, detect_band_units, sample_shape
from ..sar.polarisation import BandPolarisation
from ..sar.speckle import SpeckleFilter


def input_units(options: RunOptions, dataset: gdal.Dataset, source_name: str, sample: np.ndarray, log,
                warn) -> InputUnits:
    """The units of the input band: the user's choice, checked against the values, or detected
    from them (decision logged). Both from ``sample``, the one decimated read of the whole band
    (`sample_valid_values`), which also refuses a raster without valid data at once, however large."""
    units = InputUnits(options.input_units)
    _check_sample_has_data(sample, units, dataset, options.band, source_name)
    if units is not InputUnits.AUTO:
        check_units_fit(units, sample)
        log(f"Input units: {units.value} (as set by INPUT_UNITS)" + _conversion_note(units, options))
    else:
        units, reason = detect_band_units(dataset, options.band, sample=sample)
        log(f"Input units: {units.value}, detected automatically from {reason}; if that is wrong, set INPUT_UNITS"
            + _conversion_note(units, options))
    if units is InputUnits.DB:
        _warn_non_physical(sample, warn)
    return units


def _warn_non_physical(sample: np.ndarray, warn) -> None:
    """Say how much of a dB band holds values no backscatter has (+-1e30, an undeclared -9999 fill): they
    are nodata (`valid_mask`), and a fill value should be declared."""
    outside = (sample < DB_RANGE[0]) | (sample > DB_RANGE[1])
    if outside.any():
        examples = ", ".join(f"{value:g}" for value in np.unique(sample[outside])[:3])
        warn(f"{outside.mean():.1%} of the pixels sampled over the raster hold values no backscatter in dB has "
             f"(outside {DB_RANGE[0]:g}..{DB_RANGE[1]:g} dB, e.g. {examples}): they are treated as nodata. If they "
             f"are a fill value, declare it as the band's nodata (gdal_edit.py -a_nodata VALUE, or the layer's "
             f"Transparency properties).")


def _check_sample_has_data(sample: np.ndarray, units: InputUnits, dataset: gdal.Dataset, band: int,
                           source_name: str) -> None:
    """Refuse a band whose decimated whole-raster sample holds no valid pixel (0 is DN and linear
    power fill, and cannot tell units apart; negative values are left to `check_units_fit`)."""
    usable = sample if units is InputUnits.DB else sample[sample != 0]
    if usable.size:
        return
    width, height = dataset.RasterXSize, dataset.RasterYSize
    columns, rows = sample_shape(width, height)
    nodata = dataset.GetRasterBand(band).GetNoDataValue()
    fill = f"nodata ({nodata:g})" if nodata is not None else "masked"
    fill += "" if units is InputUnits.DB else " or 0"
    if (columns, rows) == (width, height):
        where = f"every pixel is {fill}"
    else:
        where = (f"each of the {columns * rows} pixels read evenly over the whole raster (one every "
                 f"{width / columns:.0f} columns and {height / rows:.0f} rows) is {fill}")
    raise InputRasterError(
        f"Band {band} of '{source_name}' has no valid pixel: {where}. Check the band and the raster's nodata "
        f"value; if its data covers only a small part of a large raster, clip the raster to the data "
        f"(Raster ▸ Extraction ▸ Clip Raster by Extent) and run on that.")


def _conversion_note(units: InputUnits, options: RunOptions) -> str:
    if units is InputUnits.DN:
        return (f". Converted to sigma0 = 10*log10(DN^2) + ({options.calibration_factor:g}) dB; "
                f"DN 0 is nodata")
    if units is InputUnits.LINEAR:
        return ". Converted to dB = 10*log10(power); power <= 0 is nodata"
    return ""


def band_line(dataset: gdal.Dataset, band: int, polarisation: BandPolarisation) -> str:
    description = dataset.GetRasterBand(band).GetDescription()
    if not description and polarisation.name:
        description = f"{polarisation.name}, named by {polarisation.source}"
    return f"Using band {band} of {dataset.RasterCount}" + (f" ({description})" if description else "")


def warn_cross_polarised(band: int, polarisation: BandPolarisation, warn) -> None:
    """Warn when a model (made for co-polarised HH or VV) is given a band the raster names HV or VH."""
    if polarisation.cross:
        warn(f"Band {band} holds cross-polarised backscatter ({polarisation.name}, named by {polarisation.source}); "
             f"the model was made for co-polarised backscatter (HH or VV): cross-polarised land lies 6-10 dB "
             f"darker and is mapped as water or dark land. Run the model on the HH band (for a JAXA mosaic tile, "
             f"the file with _HH_ in its name); for a water mask from this band, use Method threshold, which has "
             f"a water level for cross-polarised bands.")


def model_input_reader(band_reader: BandReader, grid: ModelGrid | None, units: InputUnits,
                       speckle_filter: SpeckleFilter, options: RunOptions, gsd_m: float, log,
                       sample: np.ndarray | None = None) -> BackscatterReader:
    """The reader of sigma0 dB the model runs on: the input band itself, or, when ``grid`` is set, a
    warped view of it on the model grid. The view holds linear power (nodata 0) whatever the input's
    units: pixels finer than the model's are averaged in power (multi-looking), coarser ones
    interpolated bilinearly. ``sample``: the band's raw sample, when already read."""
    if grid is None:
        return BackscatterReader(band_reader, units, options.calibration_factor, speckle_filter, options.filter_size,
                                 sample)
    dataset = band_reader.dataset
    resampling = resampling_to_model(dataset, gsd_m)
    view = open_on_model_grid(dataset, options.band, gsd_m, units, resampling=resampling,
                              calibration_factor=options.calibration_factor, grid=grid)
    log(_resampling_line(dataset, grid, gsd_m, resampling, options.output_grid))
    return BackscatterReader(BandReader(view, 1, dataset.GetDescription()), InputUnits.LINEAR,
                             speckle_filter=speckle_filter, filter_size=options.filter_size)


def _crs_label(srs: osr.SpatialReference) -> str:
    code = srs.GetAuthorityCode(None)
    authority = srs.GetAuthorityName(None)
    return f"{authority}:{code} ({srs.GetName()})" if code and authority else srs.GetName()


def _resampling_line(dataset, grid: ModelGrid, gsd_m: float, resampling: str, output_grid: str) -> str:
    dx_m, dy_m = ground_pixel_size_m(dataset)
    gt = dataset.GetGeoTransform()
    rotated = " rotated," if gt[2] or gt[4] else ""
    size = f"{dx_m:.1f} m" if abs(dx_m - dy_m) < 0.05 else f"{dx_m:.1f} x {dy_m:.1f} m"
    where = ("result brought back to the input grid (nearest for classes, bilinear for probabilities)"
             if output_grid == "input" else "result kept on the model grid (OUTPUT_GRID)")
    return (f"Resampling: input {size}{rotated} in {_crs_label(dataset.GetSpatialRef())} → read on a "
            f"{gsd_m:g} m grid in {_crs_label(osr.SpatialReference(wkt=grid.srs_wkt))} ({grid.width} x "
            f"{grid.height} px, {resampling} of linear power); {where}")


def data_coverage(input_reader: BackscatterReader, input_path, band: int, progress, is_cancelled) -> DataCoverage:
    """Where the input holds valid data; refuses an input without any valid pixel (the decimated
    start-up sample cannot see everything)."""
    coverage = DataCoverage(input_reader, is_cancelled, progress)
    if not coverage.share:
        raise no_valid_pixel(band, input_path, input_reader.band_reader.nodata)
    return coverage


def no_valid_pixel(band: int, input_path, nodata) -> InputRasterError:
    """The refusal of a band without any valid pixel (found before the run, or only by it)."""
    return InputRasterError(f"Band {band} of '{input_path}' has no valid pixel: every pixel is nodata ({nodata}) or "
                            f"masked. Check the band, and the raster's nodata value.")


def familiar_range(contract: ModelContract, log) -> tuple[float, float] | None:
    """The dB range the model learnt (its training pixels' lowest and highest declared percentiles, widened by
    the input check's margin), for a model of absolute levels that declares it; None otherwise."""
    distribution = contract.input_distribution
    if contract.norm_mode in SCENE_NORM_MODES or distribution is None or len(distribution.pixel_db_percentiles) < 2:
        return None
    (low_p, low), (high_p, high) = distribution.pixel_db_percentiles[0], distribution.pixel_db_percentiles[-1]
    familiar = (low - MARGIN_DB, high + MARGIN_DB)
    log(f"Confidence: pixels outside {familiar[0]:.1f}..{familiar[1]:.1f} dB (the model's training pixels' "
        f"{percentile_label(low_p)}..{percentile_label(high_p)} percentiles, +-{MARGIN_DB:g} dB) get at most the "
        f"chance level 1/{len(contract.classes)}: the model has not seen such backscatter")
    return familiar


def anchor_relative(input_reader: BackscatterReader, source: BackscatterReader, log) -> None:
    """Put a relative input (a display stretch) on the calibrated scale the model knows: its land
    level (`SceneStatistics.land_median`) is moved to RELATIVE_LAND_DB. A scene of one surface cannot
    be told from its opposite this way; the log says so."""
    scene = SceneStatistics.of(input_reader.sample_db())
    offset = scene.relative_anchor
    input_reader.offset_db = source.offset_db = offset
    log(f"Relative brightness: only contrasts count, the scene's land level ({scene.land_median:.1f} dB on the "
        f"nominal stretch) is moved to {RELATIVE_LAND_DB:g} dB ({offset:+.1f} dB). A scene of one surface (all "
        f"water, all forest) cannot be recognised without calibration: use the calibrated product for it")


def scene_statistics(source: BackscatterReader, input_path, band: int) -> SceneStatistics:
    sample = source.sample_db()
    if sample.size == 0:
        raise InputRasterError(
            f"Band {band} of '{input_path}' has no valid pixel: every pixel is nodata or masked. Check the band, "
            f"and the raster's nodata value.")
    return SceneStatistics.of(sample)

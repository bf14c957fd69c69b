"""From a class raster to map polygons: optional majority smoothing, a minimum mapping unit, polygons.

Everything stays on the raster's pixel grid, so the polygons tile the valid pixels exactly (no gap,
no overlap, valid by construction): smoothing is a majority filter of the raster, not a geometry
simplification, and the minimum mapping unit is GDAL's sieve filter run with doubling thresholds
(a speckled region grows into a large one instead of staying small because all its neighbours are
small). GDAL polygonises the result (4-connected, like the sieve), streaming the raster line by line.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from osgeo import gdal, ogr

from ..errors import CancelledError, OptionError, OutputError
from ..rasters.output_checks import check_outputs
from ..rasters.writer import OutputRaster, all_or_none
from .legend import ClassLegend, open_class_raster


MAJORITY_SIZES = (0, 3, 5, 7)  # window edge of the majority filter in pixels; 0: no smoothing
CODE_FIELD = "code"
_STRIP_PIXELS = 1 << 21  # pixels per strip of the majority filter (a few arrays of this size in memory)


@dataclass(frozen=True)
class GeneraliseReport:
    output_path: str
    min_pixels: int
    majority_size: int
    sieve_passes: int


def _gdal_callback(progress, is_cancelled, start: float, share: float):
    """A GDAL progress callback reporting start..start+share % and stopping GDAL on cancel."""
    def callback(complete, _message, _data):
        progress(start + share * complete)
        return 0 if is_cancelled() else 1
    return callback


def sieve_thresholds(min_pixels: int) -> list[int]:
    """2, 4, 8, ... below ``min_pixels``, then ``min_pixels``: small regions merge step by step."""
    thresholds, threshold = [], 2
    while threshold < min_pixels:
        thresholds.append(threshold)
        threshold *= 2
    return thresholds + [min_pixels] if min_pixels >= 2 else []


def generalise(input_path, output_path, min_pixels: int, majority_size: int = 0, legend: ClassLegend | None = None,
               progress: Callable[[float], None] | None = None, is_cancelled: Callable[[], bool] | None = None,
               ) -> GeneraliseReport:
    """Write the class raster smoothed (majority filter of ``majority_size`` px) and sieved so that no
    4-connected region is smaller than ``min_pixels`` (except regions enclosed by nodata), as a GeoTIFF
    on the same grid with the legend. Nodata pixels stay nodata and valid pixels stay valid."""
    progress = progress or (lambda percent: None)
    is_cancelled = is_cancelled or (lambda: False)
    if majority_size not in MAJORITY_SIZES:
        raise OptionError(f"Smoothing window {majority_size} is not supported: use one of "
                          f"{', '.join(map(str, MAJORITY_SIZES))} (0: no smoothing).")
    if min_pixels < 1:
        raise OptionError(f"The minimum mapping unit must be at least 1 pixel, not {min_pixels}.")
    dataset = open_class_raster(input_path)
    output_path = check_outputs({"generalised raster": output_path}, {"input raster": input_path},
                                {"generalised raster": gdal.GDT_Byte})["generalised raster"]
    band = dataset.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    output = OutputRaster(output_path, dataset, band.DataType, nodata if nodata is not None else 0,
                          "Generalised classes")
    if nodata is None:
        output.band.DeleteNoDataValue()
    thresholds = sieve_thresholds(min_pixels)
    copy_share = 30.0 if majority_size else 10.0
    with all_or_none([output]):
        if legend is not None and all(e.code >= 0 for e in legend.entries) and legend.entries:
            output.set_legend([(e.code, e.name, e.color) for e in legend.entries])
        output.dataset.SetMetadata(dataset.GetMetadata() or {})
        _copy_smoothed(band, output.band, majority_size, lambda f: progress(copy_share * f), is_cancelled)
        share = (100.0 - copy_share) / max(len(thresholds), 1)
        for index, threshold in enumerate(thresholds):
            callback = _gdal_callback(progress, is_cancelled, copy_share + index * share, share / 100.0)
            try:
                gdal.SieveFilter(output.band, output.band.GetMaskBand(), output.band, threshold, 4,
                                 callback=callback)
            except RuntimeError as error:
                if is_cancelled():
                    raise CancelledError() from error
                raise OutputError(f"Sieving failed while writing '{output_path}': {error}") from error
    progress(100.0)
    return GeneraliseReport(str(output_path), min_pixels, majority_size, len(thresholds))


def _copy_smoothed(source: gdal.Band, target: gdal.Band, size: int, progress, is_cancelled) -> None:
    """Copy ``source`` into ``target`` strip by strip, through the majority filter when ``size`` > 0."""
    width, height = source.XSize, source.YSize
    halo = size // 2
    rows_per_strip = max(1, _STRIP_PIXELS // max(width, 1))
    mask = source.GetMaskBand()
    for y in range(0, height, rows_per_strip):
        if is_cancelled():
            raise CancelledError()
        rows = min(rows_per_strip, height - y)
        top, bottom = max(0, y - halo), min(height, y + rows + halo)
        values = source.ReadAsArray(0, top, width, bottom - top)
        if size:
            valid = mask.ReadAsArray(0, top, width, bottom - top) != 0
            values = majority(values, valid, size)
        target.WriteArray(values[y - top:y - top + rows], 0, y)
        progress((y + rows) / height)


def majority(values: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Each valid pixel takes the most frequent class among the valid pixels of its ``size`` x ``size``
    window (its own class on ties); invalid pixels are left as they are and count for no class."""
    halo = size // 2
    result = values.copy()
    own = values[valid]
    best_count = np.zeros(values.shape, np.int32)
    own_count = np.zeros(values.shape, np.int32)
    for code in np.unique(own):
        count = _box_sum(valid & (values == code), halo)
        mine = valid & (values == code)
        own_count[mine] = count[mine]
        better = valid & (count > best_count)
        best_count[better] = count[better]
        result[better] = code
    keep = valid & (own_count >= best_count)  # ties keep the pixel's own class
    result[keep] = values[keep]
    return result


def _box_sum(flags: np.ndarray, halo: int) -> np.ndarray:
    """Number of True pixels in the (2·halo+1)² window around each pixel (windows clipped at the edges)."""
    k = 2 * halo + 1
    padded = np.pad(flags.astype(np.int32), halo)
    cumulative = np.pad(padded.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32), ((1, 0), (1, 0)))
    return (cumulative[k:, k:] - cumulative[:-k, k:] - cumulative[k:, :-k] + cumulative[:-k, :-k])


def polygonise(raster_path, vector_path, layer_name: str = "classes",
               progress: Callable[[float], None] | None = None, is_cancelled: Callable[[], bool] | None = None) -> int:
    """Polygons of the 4-connected regions of valid pixels of ``raster_path`` (field ``code``) written to a
    new GeoPackage ``vector_path`` in one transaction; returns the number of polygons."""
    progress = progress or (lambda percent: None)
    is_cancelled = is_cancelled or (lambda: False)
    dataset = open_class_raster(raster_path)
    band = dataset.GetRasterBand(1)
    vector_path = pathlib.Path(vector_path)
    try:
        source = ogr.GetDriverByName("GPKG").CreateDataSource(str(vector_path))
        layer = source.CreateLayer(layer_name, dataset.GetSpatialRef(), ogr.wkbPolygon)
        layer.CreateField(ogr.FieldDefn(CODE_FIELD, ogr.OFTInteger))
    except RuntimeError as error:
        raise OutputError(f"Could not create the polygon file '{vector_path}' ({error}). Check the free disk "
                          "space and the folder's permissions.") from error
    try:
        layer.StartTransaction()
        gdal.Polygonize(band, band.GetMaskBand(), layer, 0, [],
                        callback=_gdal_callback(progress, is_cancelled, 0.0, 100.0))
        layer.CommitTransaction()
        count = layer.GetFeatureCount()
    except RuntimeError as error:
        layer = source = None
        vector_path.unlink(missing_ok=True)
        if is_cancelled():
            raise CancelledError() from error
        raise OutputError(f"Polygonising '{raster_path}' failed: {error}") from error
    layer = source = None
    return count

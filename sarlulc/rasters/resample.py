"""Reading an input on the model's metric grid and writing results back on the input's grid.

The model sees sigma0 at its native GSD (10 m). Inputs at another pixel size, or in degrees,
are read through a warped VRT (GDAL resamples each window on request: nothing is copied),
and results computed on that grid are warped back onto the input's exact grid.

Downsampling speckled SAR is done by averaging linear power (multi-looking), not dB or
amplitude: the mean of dB values is biased low (by up to 2.5 dB for single-look speckle)
and bilinear interpolation of a finer grid drops most input pixels, keeping their speckle.
The view therefore converts the band to linear power (a VRT with a DN^2 scaling or a dB→power
lookup table) before the warper averages it; the view holds linear power with nodata 0.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, osr

from ..errors import CancelledError, InputRasterError, OutputError
from ..sar.units import ALOS2_CALIBRATION_FACTOR_DB, DB_RANGE, RELATIVE_STRETCH_DB, InputUnits, band_scaling


RESAMPLING_TO_MODEL = ("average", "bilinear")
RESAMPLING_TO_INPUT = ("nearest", "bilinear")
DEFAULT_CREATION_OPTIONS = ("TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER")

MAX_SCALE_ERROR = 0.01
"""Largest scale error of a projected CRS at the raster's centre for the model grid to stay in it."""
_DB_LUT_STEP = 0.1          # dB; linear interpolation of 10^(x/10) between knots: < 0.0003 dB error
_DB_LUT_RANGE = (-80.0, 40.0)


@dataclass(frozen=True)
class ModelGrid:
    """A north-up grid at the model's GSD in a metric CRS; `reason` is a line for the log."""

    srs_wkt: str
    geotransform: tuple[float, ...]
    width: int
    height: int
    reason: str


def _open(dataset_or_path) -> gdal.Dataset:
    if isinstance(dataset_or_path, gdal.Dataset):
        return dataset_or_path
    try:
        return gdal.Open(os.fspath(dataset_or_path))
    except RuntimeError as error:
        raise InputRasterError(f"Cannot open the input raster '{dataset_or_path}': {error}") from error


def utm_epsg(longitude: float, latitude: float) -> int:
    """WGS 84 UTM zone of a point (UPS beyond 84°N / 80°S; the Norway/Svalbard zone exceptions are ignored)."""
    if latitude > 84:
        return 32661
    if latitude < -80:
        return 32761
    zone = int((longitude + 180) // 6) % 60 + 1
    return (32600 if latitude >= 0 else 32700) + zone


def _gis_order(srs: osr.SpatialReference) -> osr.SpatialReference:
    """A copy whose x axis is easting / longitude, as in GDAL geotransforms."""
    srs = srs.Clone()
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _centre_lon_lat(dataset: gdal.Dataset) -> tuple[float, float]:
    gt = dataset.GetGeoTransform()
    x = gt[0] + gt[1] * dataset.RasterXSize / 2 + gt[2] * dataset.RasterYSize / 2
    y = gt[3] + gt[4] * dataset.RasterXSize / 2 + gt[5] * dataset.RasterYSize / 2
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    transform = osr.CoordinateTransformation(_gis_order(dataset.GetSpatialRef()), _gis_order(wgs84))
    longitude, latitude, _ = transform.TransformPoint(x, y)
    return longitude, latitude


def _footprint_bounds(dataset: gdal.Dataset, target: osr.SpatialReference, per_edge: int = 33):
    """(left, bottom, right, top) in `target` of points spread along the raster's four edges."""
    gt = dataset.GetGeoTransform()
    width, height = dataset.RasterXSize, dataset.RasterYSize
    steps = np.linspace(0.0, 1.0, per_edge)
    pixels = np.concatenate([np.stack([steps * width, np.zeros_like(steps)], 1),
                             np.stack([steps * width, np.full_like(steps, height)], 1),
                             np.stack([np.zeros_like(steps), steps * height], 1),
                             np.stack([np.full_like(steps, width), steps * height], 1)])
    xs = gt[0] + pixels[:, 0] * gt[1] + pixels[:, 1] * gt[2]
    ys = gt[3] + pixels[:, 0] * gt[4] + pixels[:, 1] * gt[5]
    transform = osr.CoordinateTransformation(_gis_order(dataset.GetSpatialRef()), _gis_order(target))
    points = np.array(transform.TransformPoints(np.stack([xs, ys], 1).tolist()))
    return points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()


def model_grid(dataset: gdal.Dataset, gsd_m: float) -> ModelGrid:
    """The grid at `gsd_m` covering the raster: its own CRS when projected, else the UTM zone of its centre."""
    srs = dataset.GetSpatialRef()
    if srs is None:
        raise InputRasterError("The input raster has no coordinate reference system; assign one "
                               "(Raster ▸ Projections ▸ Assign Projection) and run again.")
    dx_m, dy_m = ground_pixel_size_m(dataset)
    gt = dataset.GetGeoTransform()
    if srs.IsProjected():
        nominal = np.array([math.hypot(gt[1], gt[4]), math.hypot(gt[2], gt[5])]) * srs.GetLinearUnits()
        scale = nominal / np.array([dx_m, dy_m])  # CRS metres per ground metre at the centre
    if srs.IsProjected() and np.all(np.abs(scale - 1) <= MAX_SCALE_ERROR):
        target = srs.Clone()
        step = gsd_m / srs.GetLinearUnits()
        crs_name = target.GetName()
    else:
        # Degrees, or a projection whose metres are not ground metres here (Web Mercator away from
        # the equator): a grid that is really gsd_m on the ground, in the UTM zone of the centre.
        epsg = utm_epsg(*_centre_lon_lat(dataset))
        target = osr.SpatialReference()
        target.ImportFromEPSG(epsg)
        step = gsd_m
        crs_name = f"EPSG:{epsg} ({target.GetName()})"
        if srs.IsProjected():
            crs_name += f", as {srs.GetName()} has a scale of {max(scale, key=lambda k: abs(k - 1)):.3f} here"
    left, bottom, right, top = _footprint_bounds(dataset, target)
    left, bottom = math.floor(left / step + 1e-9) * step, math.floor(bottom / step + 1e-9) * step
    right, top = math.ceil(right / step - 1e-9) * step, math.ceil(top / step - 1e-9) * step
    reason = (f"input pixels are {dx_m:.2f} x {dy_m:.2f} m on the ground; reading them resampled to the model's "
              f"{gsd_m:g} m grid in {crs_name}")
    return ModelGrid(target.ExportToWkt(), (left, step, 0.0, top, 0.0, -step), round((right - left) / step),
                     round((top - bottom) / step), reason)


PIXEL_SIZE_RANGE_M = (1.0, 100.0)
"""Ground pixel sizes the plugin reads (resampled to the model's 10 m): finer is a photo or a wrong CRS,
coarser would be blown up a hundredfold into pixels the model cannot tell anything from."""
MIN_MODEL_GRID_PX = 16  # a raster narrower than this on the model grid gives the model no context


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


def raster_corners(dataset: gdal.Dataset) -> list[tuple[float, float]]:
    """The raster's four corners in its CRS (a rotated grid's too)."""
    gt = dataset.GetGeoTransform()
    return [tuple(gdal.ApplyGeoTransform(gt, column, row)) for column in (0, dataset.RasterXSize)
            for row in (0, dataset.RasterYSize)]


def check_pixel_size(dataset: gdal.Dataset, gsd_m: float, source_name: str) -> None:
    """Refuse a raster whose pixels on the ground lie outside PIXEL_SIZE_RANGE_M, or which covers fewer
    than MIN_MODEL_GRID_PX model pixels across, before any grid is made from it."""
    low, high = PIXEL_SIZE_RANGE_M
    gt = dataset.GetGeoTransform()
    srs = dataset.GetSpatialRef()
    if srs is not None and srs.IsGeographic():
        if any(abs(x) > 540 or abs(y) > 90.5 for x, y in raster_corners(dataset)):
            raise InputRasterError(
                f"The input raster '{source_name}' is tagged with a geographic CRS ({srs.GetName()}), but its "
                f"coordinates ({gt[0]:g}, {gt[3]:g}) are not degrees: they look like metres of a projected CRS. "
                f"Assign the CRS it was really made in (QGIS: Raster > Projections > Assign Projection).")
    sizes = ground_pixel_size_m(dataset)
    if srs is not None and srs.IsProjected() and max(abs(gt[1]), abs(gt[5])) < 0.01 and \
            abs(gt[0]) <= 180 and abs(gt[3]) <= 90:
        raise InputRasterError(
            f"The input raster '{source_name}' is tagged with a projected CRS ({srs.GetName()}, in metres), but its "
            f"coordinates ({gt[0]:g}, {gt[3]:g}, pixels of {abs(gt[1]):.3g}) look like degrees. Assign the CRS it "
            f"was really made in, e.g. EPSG:4326 (QGIS: Raster > Projections > Assign Projection).")
    if not all(low <= size <= high for size in sizes):
        raise InputRasterError(
            f"The input raster '{source_name}' has pixels of {sizes[0]:.3g} x {sizes[1]:.3g} m on the ground, outside "
            f"the {low:g}-{high:g} m the plugin reads (the model maps {gsd_m:g} m pixels). Check its CRS and pixel "
            f"size; for a SAR product at another resolution, resample it first (gdalwarp -tr {gsd_m:g} {gsd_m:g}).")
    across = [count * size / gsd_m for count, size in zip((dataset.RasterXSize, dataset.RasterYSize), sizes)]
    if min(across) < MIN_MODEL_GRID_PX:
        raise InputRasterError(
            f"The input raster '{source_name}' covers only {across[0]:.0f} x {across[1]:.0f} model pixels of "
            f"{gsd_m:g} m: too small for the model to see any context (at least {MIN_MODEL_GRID_PX} x "
            f"{MIN_MODEL_GRID_PX}, {MIN_MODEL_GRID_PX * gsd_m:g} m across). Run on a larger area.")


def decide_model_grid(dataset: gdal.Dataset, gsd_m: float, tolerance: float = 0.1) -> ModelGrid | None:
    """None when the raster is already north-up, projected and within ±tolerance of the model GSD."""
    srs = dataset.GetSpatialRef()
    gt = dataset.GetGeoTransform()
    if srs is not None and srs.IsProjected() and gt[2] == 0 and gt[4] == 0:
        dx_m, dy_m = ground_pixel_size_m(dataset)
        if all(abs(size - gsd_m) <= tolerance * gsd_m for size in (dx_m, dy_m)):
            return None
    return model_grid(dataset, gsd_m)


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def zeroing_source_xml(path: str, band, keep: float, rects: str = "") -> str:
    """A VRT source writing 0 wherever band ``band`` of ``path`` is not ``keep`` (transparent there): how a
    mask (0: nodata) or an alpha band cuts the pixels a VRT band holds."""
    return (f'<ComplexSource><SourceFilename relativeToVRT="0">{xml_escape(path)}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand>{rects}<NODATA>{keep!r}</NODATA>"
            f"<ScaleOffset>0</ScaleOffset><ScaleRatio>0</ScaleRatio></ComplexSource>")


def resampling_to_model(dataset: gdal.Dataset, gsd_m: float) -> str:
    """How the view onto the model grid resamples: `average` (multi-looking) for pixels finer
    than the model's, `bilinear` for coarser ones."""
    return "average" if min(ground_pixel_size_m(dataset)) < gsd_m else "bilinear"


def power_view(dataset: gdal.Dataset, band: int, units: InputUnits,
               calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB) -> gdal.Dataset:
    """A one-band VRT of the band as linear power (float32, nodata 0), computed on read."""
    return gdal.Open(power_view_xml(dataset, band, units, calibration_factor))


def power_view_xml(dataset: gdal.Dataset, band: int, units: InputUnits,
                   calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB) -> str:
    """The VRT document of :func:`power_view` (any GDAL-based reader, e.g. rasterio, opens it)."""
    units = InputUnits(units)
    if units is InputUnits.AUTO:
        raise ValueError("power_view needs resolved units; run detect_units for INPUT_UNITS=auto")
    source = dataset.GetRasterBand(band)
    nodata = source.GetNoDataValue()
    # value = stored * scale + offset (the band's GDAL scaling), then converted to power
    scale, offset = band_scaling(source) or (1.0, 0.0)
    linear = "" if (scale, offset) == (1.0, 0.0) else \
        f"<ScaleOffset>{offset!r}</ScaleOffset><ScaleRatio>{scale!r}</ScaleRatio>"
    if units is InputUnits.DN:
        nodata = 0 if nodata is None else nodata          # DN 0 maps to power 0 = nodata anyway
        top = 65535.0
        # power = CF * (value / top)^2 * top^2, (value / top) = (stored - low) / (high - low)
        low, high = -offset / scale, (top - offset) / scale
        scaling = (f"<Exponent>2</Exponent><SrcMin>{low!r}</SrcMin><SrcMax>{high!r}</SrcMax><DstMin>0</DstMin>"
                   f"<DstMax>{top * top * 10 ** (calibration_factor / 10)!r}</DstMax>")
    elif units is InputUnits.DB:
        knots = np.arange(_DB_LUT_RANGE[0], _DB_LUT_RANGE[1] + _DB_LUT_STEP / 2, _DB_LUT_STEP)
        # values no backscatter in dB has (outside DB_RANGE, e.g. +-1e30) become power 0: nodata, as valid_mask says
        low, high = DB_RANGE
        scaling = (linear + f"<LUT>-3e38:0,{low - 1e-3}:0,{low}:{10 ** (low / 10):.9g},"
                   + ",".join(f"{k:.4f}:{10 ** (k / 10):.9g}" for k in knots) + f",{high + 1e-3}:0,3e38:0</LUT>")
    elif units is InputUnits.RELATIVE:  # every 8-bit step through the nominal stretch; 0 (fill) -> power 0
        at_zero, per_step = RELATIVE_STRETCH_DB
        scaling = linear + "<LUT>0:0," + ",".join(
            f"{step}:{10 ** ((at_zero + per_step * step) / 10):.9g}" for step in range(1, 256)) + "</LUT>"
    else:
        scaling = linear
    nodata_xml = "" if nodata is None else f"<NODATA>{nodata!r}</NODATA>"
    # An explicit mask (an area of interest's cut, a .msk file): power 0, nodata, where it is 0.
    cut = "" if source.GetMaskFlags() != gdal.GMF_PER_DATASET else \
        zeroing_source_xml(dataset.GetDescription(), f"mask,{band}", keep=255)
    gt = ",".join(repr(v) for v in dataset.GetGeoTransform())
    xml = (f'<VRTDataset rasterXSize="{dataset.RasterXSize}" rasterYSize="{dataset.RasterYSize}">'
           f"<SRS>{xml_escape(dataset.GetProjection())}</SRS><GeoTransform>{gt}</GeoTransform>"
           f'<VRTRasterBand dataType="Float32" band="1"><NoDataValue>0</NoDataValue><ComplexSource>'
           f'<SourceFilename relativeToVRT="0">{xml_escape(dataset.GetDescription())}</SourceFilename>'
           f"<SourceBand>{band}</SourceBand>{nodata_xml}{scaling}</ComplexSource>{cut}</VRTRasterBand></VRTDataset>")
    return xml


def open_on_model_grid(dataset_or_path, band: int, gsd_m: float, units: InputUnits,
                       resampling: str = "average", calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB,
                       grid: ModelGrid | None = None) -> gdal.Dataset:
    """Warped VRT of the band as linear power on the model grid (float32, nodata 0), resampled window by window.

    `average` (default) multi-looks when reducing resolution; `bilinear` suits upsampling
    coarser inputs. Nodata and out-of-footprint pixels are 0 and never enter averages.
    """
    if resampling not in RESAMPLING_TO_MODEL:
        raise ValueError(f"resampling must be one of {RESAMPLING_TO_MODEL}, not {resampling!r}")
    dataset = _open(dataset_or_path)
    grid = grid or model_grid(dataset, gsd_m)
    gt = grid.geotransform
    bounds = (gt[0], gt[3] + gt[5] * grid.height, gt[0] + gt[1] * grid.width, gt[3])
    view = power_view(dataset, band, units, calibration_factor)
    warped = gdal.Warp("", view, format="VRT", dstSRS=grid.srs_wkt, outputBounds=bounds, width=grid.width,
                       height=grid.height, resampleAlg=resampling, srcNodata=0, dstNodata=0,
                       outputType=gdal.GDT_Float32)
    return warped


def warp_back_to_input_grid(model_grid_path, input_dataset, output_path, resampling: str = "nearest",
                            creation_options=DEFAULT_CREATION_OPTIONS, warp_memory_mb: int = 256,
                            progress=None, is_cancelled=None) -> str:
    """Write a model-grid raster onto the input's exact grid (size, geotransform, CRS), nodata kept.

    Streams with GDAL's warper in chunks of at most `warp_memory_mb`; `nearest` for class
    rasters, `bilinear` for probabilities. A cancel removes the partial file.
    """
    if resampling not in RESAMPLING_TO_INPUT:
        raise ValueError(f"resampling must be one of {RESAMPLING_TO_INPUT}, not {resampling!r}")
    source = _open(model_grid_path)
    target_grid = _open(input_dataset)
    source_band = source.GetRasterBand(1)
    nodata = source_band.GetNoDataValue()
    try:
        target = gdal.GetDriverByName("GTiff").Create(
            os.fspath(output_path), target_grid.RasterXSize, target_grid.RasterYSize, source.RasterCount,
            source_band.DataType, list(creation_options))
    except RuntimeError as error:
        raise OutputError(f"Cannot create '{output_path}': {error}. Choose a writable folder.") from error
    target.SetGeoTransform(target_grid.GetGeoTransform())
    target.SetProjection(target_grid.GetProjection())
    for index in range(1, source.RasterCount + 1):
        band = target.GetRasterBand(index)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.SetDescription(source.GetRasterBand(index).GetDescription())

    def callback(complete, _message, _data):
        if progress is not None:
            progress(100.0 * complete)
        return 0 if is_cancelled is not None and is_cancelled() else 1

    try:
        gdal.Warp(target, source, resampleAlg=resampling, warpMemoryLimit=warp_memory_mb * 1024 * 1024,
                  warpOptions=["INIT_DEST=NO_DATA"] if nodata is not None else [], callback=callback,
                  srcNodata=nodata, dstNodata=nodata)
        target.FlushCache()
        target = None
    except RuntimeError as error:
        target = None
        gdal.Unlink(os.fspath(output_path))
        if is_cancelled is not None and is_cancelled():
            raise CancelledError("Cancelled while writing the result on the input grid; the partial file was removed.") from error
        raise OutputError(f"Cannot write '{output_path}': {error}") from error
    return os.fspath(output_path)

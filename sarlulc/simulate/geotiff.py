"""Write a simulated scene as a georeferenced GeoTIFF pair `<name>_sar.tif` + `<name>_label.tif`.

The SAR band comes in the three unit systems the plugin accepts (dB, linear power, ALOS-2 DN);
the grid is 10 m in UTM zone 54N (EPSG:32654) or, for the geographic variant, EPSG:4326 with
degree pixels sized for 10 m at the scene's latitude (same pixels, different georeferencing).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
from osgeo import gdal, osr

from ..products import LULC_CLASSES
from ..sar.decibels import db_to_power
from ..sar.units import ALOS2_CALIBRATION_FACTOR_DB
from .scene import NODATA_LABEL, PIXEL_M, Scene


UNITS = ("db", "linear", "dn")
NODATA = {"db": -9999.0, "linear": 0.0, "dn": 0}
CRS_CHOICES = ("EPSG:32654", "EPSG:4326")
_WGS84_A, _WGS84_E2 = 6378137.0, 0.00669437999014
_DN_MAX = 65535


def db_to_dn(sigma0_db: np.ndarray) -> np.ndarray:
    """ALOS-2 DN (uint16) from sigma0 dB: DN = sqrt(10^((sigma0 - CF)/10)), CF = -83 dB; clipped to
    1..65535 because DN 0 marks nodata in ALOS-2 products."""
    dn = np.sqrt(db_to_power(np.asarray(sigma0_db, np.float64) - ALOS2_CALIBRATION_FACTOR_DB))
    return np.clip(np.rint(dn), 1, _DN_MAX).astype(np.uint16)


def sar_band(scene: Scene, units: str) -> tuple[np.ndarray, float]:
    """The observed backscatter in `units` ('db', 'linear', 'dn') with its nodata value filled in."""
    if units not in UNITS:
        raise ValueError(f"unknown units {units!r}: use one of {', '.join(UNITS)}")
    valid = scene.valid
    if units == "db":
        values = scene.sigma0_db.astype(np.float32)
    elif units == "linear":
        values = db_to_power(np.where(valid, scene.sigma0_db, 0)).astype(np.float32)
    else:
        values = db_to_dn(np.where(valid, scene.sigma0_db, 0))
    values[~valid] = NODATA[units]
    return values, NODATA[units]


def metres_per_degree(latitude_deg: float) -> tuple[float, float]:
    """(east-west, north-south) metres per degree on the WGS84 ellipsoid at `latitude_deg`."""
    phi = math.radians(latitude_deg)
    w = 1.0 - _WGS84_E2 * math.sin(phi) ** 2
    prime_vertical = _WGS84_A / math.sqrt(w)
    meridional = _WGS84_A * (1.0 - _WGS84_E2) / w ** 1.5
    return prime_vertical * math.cos(phi) * math.pi / 180.0, meridional * math.pi / 180.0


def scene_geotransform(crs: str, lon_deg: float, lat_deg: float) -> tuple[tuple[float, ...], str]:
    """Geotransform (10 m pixels) and WKT for a scene whose top-left corner is at (lon, lat)."""
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if crs == "EPSG:4326":
        east_m, north_m = metres_per_degree(lat_deg)
        return (lon_deg, PIXEL_M / east_m, 0.0, lat_deg, 0.0, -PIXEL_M / north_m), srs.ExportToWkt()
    if crs != "EPSG:32654":
        raise ValueError(f"unsupported CRS {crs!r}: use one of {', '.join(CRS_CHOICES)}")
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    x, y, _ = osr.CoordinateTransformation(wgs84, srs).TransformPoint(lon_deg, lat_deg)
    x, y = round(x / PIXEL_M) * PIXEL_M, round(y / PIXEL_M) * PIXEL_M  # snap to the 10 m grid
    return (x, PIXEL_M, 0.0, y, 0.0, -PIXEL_M), srs.ExportToWkt()


def write_scene(scene: Scene, out_dir, name: str, units: str = "db", crs: str = "EPSG:32654",
                lon_lat: tuple[float, float] = (141.0, 38.0)) -> tuple[pathlib.Path, pathlib.Path]:
    """Write `<name>_sar.tif` (band in `units`) and `<name>_label.tif` (uint8 codes, nodata 0, colour
    table of the legend) on the same grid; `lon_lat` is the top-left corner."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    geotransform, wkt = scene_geotransform(crs, *lon_lat)
    sar, nodata = sar_band(scene, units)
    sar_path, label_path = out_dir / f"{name}_sar.tif", out_dir / f"{name}_label.tif"
    description = {"db": "HH sigma0 [dB]", "linear": "HH sigma0 [linear power]",
                   "dn": "HH ALOS-2 DN (sigma0 = 10*log10(DN^2) - 83 dB)"}[units]
    _write(sar_path, sar, nodata, geotransform, wkt, description, predictor=3 if sar.dtype.kind == "f" else 2,
           metadata={"SIMULATED": "yes", "UNITS": units, "LOOKS": str(scene.looks), "SEED": str(scene.seed)})
    _write(label_path, scene.labels, NODATA_LABEL, geotransform, wkt, "LULC class code", predictor=2,
           metadata={"SIMULATED": "yes", "SEED": str(scene.seed)})
    return sar_path, label_path


def legend_color_table() -> gdal.ColorTable:
    """The legend's colours on their codes; 0 (nodata) transparent."""
    table = gdal.ColorTable()
    table.SetColorEntry(NODATA_LABEL, (0, 0, 0, 0))
    for code, _, colour in LULC_CLASSES:
        table.SetColorEntry(code, tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)) + (255,))
    return table


def _write(path, array, nodata, geotransform, wkt, description, predictor, metadata) -> None:
    height, width = array.shape
    gdal_type = {np.dtype("float32"): gdal.GDT_Float32, np.dtype("uint16"): gdal.GDT_UInt16,
                 np.dtype("uint8"): gdal.GDT_Byte}[array.dtype]
    options = ["COMPRESS=DEFLATE", f"PREDICTOR={predictor}", "TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"]
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 1, gdal_type, options)
    dataset.SetGeoTransform(geotransform)
    dataset.SetProjection(wkt)
    dataset.SetMetadata(metadata)
    band = dataset.GetRasterBand(1)
    band.SetNoDataValue(nodata)
    band.SetDescription(description)
    if array.dtype == np.uint8:
        band.SetColorTable(legend_color_table())
        band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.WriteArray(array)
    dataset.FlushCache()
    dataset = None

"""The ground area of a raster's pixels, row by row.

Projected CRS: the planar pixel area in square metres (|det| of the geotransform times the CRS unit
squared), exact for the grid and what QGIS measures in that CRS; a warning says when the CRS
distorts areas by more than 1 % at the raster's centre (Web Mercator, a UTM zone far away).
Geographic CRS: each pixel is a cell between two parallels and two meridians, whose area on the
CRS's ellipsoid has a closed form (authalic latitude integral), so rows are exact, not approximated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, osr

from ..errors import InputRasterError


DISTORTION_WARNING = 0.01  # warn when planar areas differ from ground areas by more than this share


@dataclass(frozen=True)
class PixelAreas:
    """Pixel areas in m² of one raster grid: ``rows(y, count)`` gives one value per row."""

    method: str  # how areas are measured, for logs and reports
    crs_name: str
    planar_m2: float | None = None  # the constant pixel area of a projected grid
    # Geographic grids: latitude of row 0's top edge and row step (degrees), b² Δλ / 2, eccentricity.
    top_latitude: float = 0.0
    latitude_step: float = 0.0
    cell_scale: float = 0.0
    eccentricity: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def rows(self, y: int, count: int) -> np.ndarray:
        """Area (m²) of a pixel in each of the rows y .. y + count - 1."""
        if self.planar_m2 is not None:
            return np.full(count, self.planar_m2)
        edges = np.clip(self.top_latitude + self.latitude_step * np.arange(y, y + count + 1, dtype=np.float64),
                        -90.0, 90.0)
        return np.abs(np.diff(_authalic_integral(np.radians(edges), self.eccentricity))) * self.cell_scale

    def nominal_m2(self, height: int) -> float:
        """The pixel area at the raster's middle row (for thresholds given in m²)."""
        return float(self.rows(height // 2, 1)[0])


def _authalic_integral(latitude: np.ndarray, e: float) -> np.ndarray:
    """q(φ) with area between φ1 and φ2 = (b² Δλ / 2) |q(φ2) - q(φ1)| on an ellipsoid of eccentricity e."""
    sin = np.sin(latitude)
    if e == 0.0:
        return 2.0 * sin
    return sin / (1.0 - e * e * sin * sin) + np.log((1.0 + e * sin) / (1.0 - e * sin)) / (2.0 * e)


def crs_name(srs: osr.SpatialReference) -> str:
    authority, code = srs.GetAuthorityName(None), srs.GetAuthorityCode(None)
    return f"{authority}:{code} ({srs.GetName()})" if authority and code else srs.GetName()


def pixel_areas(dataset: gdal.Dataset) -> PixelAreas:
    """How to measure the pixels of ``dataset`` (which must have a CRS)."""
    srs = dataset.GetSpatialRef()
    gt = dataset.GetGeoTransform()
    name = crs_name(srs)
    if srs.IsGeographic():
        if gt[2] or gt[4]:
            raise InputRasterError(
                "The class raster is in a geographic CRS with a rotated grid, whose cells are not bounded by "
                "parallels and meridians. Warp it north-up (Raster ▸ Projections ▸ Warp) and run again.")
        semi_major = srs.GetSemiMajor()
        inverse_flattening = srs.GetInvFlattening()
        flattening = 1.0 / inverse_flattening if inverse_flattening else 0.0
        e = math.sqrt(flattening * (2.0 - flattening))
        b = semi_major * (1.0 - flattening)
        degrees = math.degrees(srs.GetAngularUnits())  # size of the CRS's angular unit in degrees
        longitude_step = math.radians(abs(gt[1]) * degrees)
        ellipsoid = srs.GetAttrValue("SPHEROID") or "its ellipsoid"
        return PixelAreas(method=f"on the ellipsoid ({ellipsoid}), row by row", crs_name=name,
                          top_latitude=gt[3] * degrees, latitude_step=gt[5] * degrees,
                          cell_scale=b * b * longitude_step / 2.0, eccentricity=e)
    if not srs.IsProjected():
        raise InputRasterError(f"The class raster's CRS ({name}) is neither projected nor geographic, so its areas "
                               "cannot be measured. Reproject it (Raster ▸ Projections ▸ Warp) and run again.")
    unit = srs.GetLinearUnits()
    planar = abs(gt[1] * gt[5] - gt[2] * gt[4]) * unit * unit
    warnings = []
    ratio = _planar_to_ground_ratio(dataset, srs)
    if ratio is not None and abs(ratio - 1.0) > DISTORTION_WARNING:
        direction = "larger" if ratio > 1 else "smaller"
        warnings.append(
            f"Areas are measured in the raster's CRS {name}, which at the raster's centre makes them "
            f"{abs(ratio - 1) * 100:.1f} % {direction} than on the ground. For true areas, reproject the class "
            "raster to a UTM zone or an equal-area CRS (Raster ▸ Projections ▸ Warp, nearest neighbour).")
    return PixelAreas(method=f"planar, in {name}", crs_name=name, planar_m2=planar, warnings=tuple(warnings))


def _planar_to_ground_ratio(dataset: gdal.Dataset, srs: osr.SpatialReference) -> float | None:
    """Planar area / ground area of a small square at the raster's centre (from the local Jacobian of
    the inverse projection and the ellipsoid's radii of curvature); None if it cannot be computed."""
    geographic = srs.CloneGeogCS()
    geographic.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    projected = srs.Clone()
    projected.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gt = dataset.GetGeoTransform()
    cx = gt[0] + gt[1] * dataset.RasterXSize / 2 + gt[2] * dataset.RasterYSize / 2
    cy = gt[3] + gt[4] * dataset.RasterXSize / 2 + gt[5] * dataset.RasterYSize / 2
    d = max(abs(gt[1]), abs(gt[5]))
    try:
        transform = osr.CoordinateTransformation(projected, geographic)
        (lon0, lat0, _), (lon_x, lat_x, _), (lon_y, lat_y, _) = (
            transform.TransformPoint(x, y) for x, y in ((cx, cy), (cx + d, cy), (cx, cy + d)))
    except RuntimeError:
        return None
    radians = geographic.GetAngularUnits()
    det = abs((lon_x - lon0) * (lat_y - lat0) - (lon_y - lon0) * (lat_x - lat0)) * radians * radians
    flattening = 1.0 / geographic.GetInvFlattening() if geographic.GetInvFlattening() else 0.0
    e2 = flattening * (2.0 - flattening)
    latitude = lat0 * radians
    w = math.sqrt(1.0 - e2 * math.sin(latitude) ** 2)
    a = geographic.GetSemiMajor()
    ground = (a / w) * math.cos(latitude) * (a * (1.0 - e2) / w**3) * det
    planar = d * d * srs.GetLinearUnits() ** 2
    return planar / ground if ground > 0 else None

"""Class Area Statistics (sarlulc:areastats) through processing.run: counts, areas, zones, report, refusals."""

import json

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDistanceArea,
    QgsFeature,
    QgsGeometry,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)

from sarlulc.products import LULC_CLASSES
from factories import write_class_raster
from test_plugin_bad_input import unwritable_folder  # noqa: F401 (fixture)


class WarningFeedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.warnings = []

    def reportError(self, error, fatalError=False):  # noqa: N802,N803 (QGIS API)
        self.warnings.append(error)
        super().reportError(error, fatalError)


def table(path):
    layer = QgsVectorLayer(str(path), "table", "ogr")
    assert layer.isValid()
    return [feature.attributes() and dict(zip(layer.fields().names(), feature.attributes()))
            for feature in layer.getFeatures()]


def codes_of(path):
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    return band.ReadAsArray(), band.GetNoDataValue()


def test_statistics_add_up_to_the_valid_pixels_with_the_legend_of_the_segment_output(
        segmented_scene, sarlulc_provider, tmp_path):
    classes = segmented_scene["classes"]
    result = processing.run("sarlulc:areastats", {
        "INPUT": classes, "OUTPUT": str(tmp_path / "areas.gpkg"), "OUTPUT_HTML": str(tmp_path / "areas.html")})

    codes, nodata = codes_of(classes)
    valid = codes != nodata
    rows = table(result["OUTPUT"])
    assert [row["code"] for row in rows] == [code for code, _, _ in LULC_CLASSES]  # every legend class, in order
    assert {row["code"]: (row["class_name"], row["color"]) for row in rows} == {
        code: (name, color) for code, name, color in LULC_CLASSES}
    expected = np.bincount(codes[valid], minlength=10)
    assert {row["code"]: row["pixels"] for row in rows} == {code: int(expected[code]) for code in range(1, 10)}
    assert sum(row["pixels"] for row in rows) == int(valid.sum()) == result["VALID_PIXELS"]
    assert result["NODATA_PIXELS"] == int((~valid).sum()) == 30 * 25
    for row in rows:  # 10 m pixels in UTM: exactly 100 m² each
        assert row["area_m2"] == row["pixels"] * 100.0
        assert row["area_ha"] == pytest.approx(row["area_m2"] / 1e4)
        assert row["area_km2"] == pytest.approx(row["area_m2"] / 1e6)
    assert sum(row["percent"] for row in rows) == pytest.approx(100.0)
    assert result["VALID_AREA_HA"] == pytest.approx(valid.sum() * 100.0 / 1e4)
    assert json.loads(result["AREAS_HA"]) == pytest.approx({row["class_name"]: row["area_ha"] for row in rows})

    report = (tmp_path / "areas.html").read_text()
    assert "<svg" in report
    for row in rows:
        assert row["class_name"] in report
        if row["pixels"]:
            assert f'fill="{row["color"]}"' in report  # a bar in the class colour


def test_areas_of_a_geographic_raster_are_ellipsoidal(sarlulc_provider, tmp_path):
    """1° x 1° at 59-60° N in 0.01° pixels: each class fills a band of rows; QGIS's ellipsoidal area of
    that band (WGS 84) is the reference."""
    codes = np.repeat(np.array([1, 3, 6, 7, 2], np.uint8), 20)[:, None].repeat(100, axis=1)
    codes[:10, :10] = 0  # nodata corner
    raster = write_class_raster(tmp_path / "geographic.tif", codes, epsg=4326,
                                geotransform=(10.0, 0.01, 0.0, 60.0, 0.0, -0.01))
    result = processing.run("sarlulc:areastats", {"INPUT": raster, "OUTPUT": str(tmp_path / "areas.csv"),
                                                  "OUTPUT_HTML": None})
    measure = QgsDistanceArea()
    measure.setSourceCrs(QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance().transformContext())
    measure.setEllipsoid("EPSG:7030")

    def ellipsoidal_m2(x0, y0, x1, y1):
        return measure.measureArea(QgsGeometry.fromRect(QgsRectangle(x0, y0, x1, y1)))

    rows = {int(row["code"]): row for row in table(tmp_path / "areas.csv")}
    for band, code in enumerate((1, 3, 6, 7, 2)):
        top = 60.0 - 0.2 * band
        expected = ellipsoidal_m2(10.0, top - 0.2, 11.0, top)
        if band == 0:
            expected -= ellipsoidal_m2(10.0, 59.9, 10.1, 60.0)
        assert float(rows[code]["area_m2"]) == pytest.approx(expected, rel=1e-3)
        assert int(rows[code]["pixels"]) == int((codes == code).sum())
    total = ellipsoidal_m2(10.0, 59.0, 11.0, 60.0) - ellipsoidal_m2(10.0, 59.9, 10.1, 60.0)
    assert result["VALID_AREA_HA"] * 1e4 == pytest.approx(total, rel=1e-3)
    assert 6.2e9 < total < 6.3e9  # sanity: about 55.8 km x 111.4 km


def zone_layer(crs, zones):
    """A memory polygon layer with a 'name' field: zones = [(name, QgsRectangle), ...]."""
    layer = QgsVectorLayer(f"Polygon?crs={crs}&field=name:string&field=other:integer", "zones", "memory")
    features = []
    for name, rectangle in zones:
        feature = QgsFeature(layer.fields())
        feature.setAttributes([name, 1])
        feature.setGeometry(QgsGeometry.fromRect(rectangle))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def test_per_zone_counts_are_the_pixels_whose_centre_is_inside(segmented_scene, sarlulc_provider, tmp_path):
    classes = segmented_scene["classes"]
    codes, nodata = codes_of(classes)
    # Pixel (row r, column c) has its centre at x = 500005 + 10 c, y = 3999995 - 10 r.
    west = QgsRectangle(500000, 3998000, 501000, 4000000)       # columns 0-99, all rows
    overlapping = QgsRectangle(500800, 3999000, 501600, 3999600)  # columns 80-159, rows 40-99
    split_a = QgsRectangle(501800, 3998500, 502000, 3999000)    # one zone made of two features
    split_b = QgsRectangle(502000, 3998500, 502200, 3999000)
    outside = QgsRectangle(600000, 3000000, 600100, 3000100)
    zones = zone_layer("EPSG:32654", [("west", west), ("centre", overlapping), ("east", split_a),
                                      ("east", split_b), ("sea", outside)])
    feedback = WarningFeedback()
    processing.run("sarlulc:areastats", {"INPUT": classes, "ZONES": zones, "ZONE_FIELD": "name",
                                         "OUTPUT": str(tmp_path / "zones.gpkg"),
                                         "OUTPUT_HTML": str(tmp_path / "z.html")}, feedback=feedback)

    def expected(rows, columns):
        window = codes[rows, columns]
        return np.bincount(window[window != nodata], minlength=10)[1:].tolist()

    got = {}
    for row in table(tmp_path / "zones.gpkg"):
        got.setdefault(row["zone"], [0] * 9)[row["code"] - 1] = row["pixels"]
    assert got == {"west": expected(slice(0, 200), slice(0, 100)),
                   "centre": expected(slice(40, 100), slice(80, 160)),
                   "east": expected(slice(100, 150), slice(180, 220)),
                   "sea": [0] * 9}
    assert any("Zone 'sea' covers no valid pixel" in warning for warning in feedback.warnings)
    report = (tmp_path / "z.html").read_text()
    assert "Zones (4)" in report and "centre" in report


def test_zones_in_another_crs_are_reprojected(segmented_scene, sarlulc_provider, tmp_path):
    """A zone drawn in EPSG:4326 around the whole scene counts every valid pixel."""
    codes, nodata = codes_of(segmented_scene["classes"])
    zones = zone_layer("EPSG:4326", [("aoi", QgsRectangle(140.9, 36.0, 141.1, 36.2))])
    result = processing.run("sarlulc:areastats", {"INPUT": segmented_scene["classes"], "ZONES": zones,
                                                  "OUTPUT": str(tmp_path / "aoi.csv"), "OUTPUT_HTML": None})
    rows = table(tmp_path / "aoi.csv")
    assert {row["zone"] for row in rows} == {"1"}  # no zone field: the feature id
    assert sum(int(row["pixels"]) for row in rows) == int((codes != nodata).sum()) == result["VALID_PIXELS"]


def test_a_raster_without_legend_gets_numbered_classes_and_a_warning(sarlulc_provider, tmp_path):
    codes = np.array([[1, 1, 4], [4, 4, 0]], np.uint8)
    raster = write_class_raster(tmp_path / "bare.tif", codes, legend=None)
    feedback = WarningFeedback()
    processing.run("sarlulc:areastats", {"INPUT": raster, "OUTPUT": str(tmp_path / "bare.csv"),
                                         "OUTPUT_HTML": None}, feedback=feedback)
    rows = table(tmp_path / "bare.csv")
    assert [(row["class_name"], int(row["pixels"])) for row in rows] == [("Class 1", 2), ("Class 4", 3)]
    assert any("has no legend" in warning for warning in feedback.warnings)


def test_bad_inputs_are_refused_with_clear_messages(segmented_scene, sarlulc_provider, tmp_path,
                                                    unwritable_folder):
    classes = segmented_scene["classes"]
    confidence = write_class_raster(tmp_path / "confidence.tif", np.full((4, 4), 0.5), dtype="float32", legend=None)
    zones = zone_layer("EPSG:32654", [("a", QgsRectangle(500000, 3999000, 501000, 4000000))])
    cases = [
        ({"INPUT": confidence}, "is not a class raster: its band 1 holds Float32 values"),
        ({"INPUT": segmented_scene["sar"]}, "is not a class raster"),
        ({"INPUT": classes, "ZONES": zones, "ZONE_FIELD": "municipality"},
         "The zone field 'municipality' is not a field of the zone layer .*Its fields are: name, other"),
        ({"INPUT": classes, "ZONE_FIELD": "name"}, "no zone layer"),
        ({"INPUT": classes, "OUTPUT_HTML": classes}, "is the input Class raster \\(INPUT\\)"),
        ({"INPUT": classes, "OUTPUT": str(tmp_path / "missing" / "a.csv")}, "does not exist"),
        ({"INPUT": classes, "OUTPUT": str(unwritable_folder / "a.csv")}, "is not writable"),
    ]
    for extra, message in cases:
        parameters = {"OUTPUT": str(tmp_path / "out.csv"), "OUTPUT_HTML": None, **extra}
        with pytest.raises(QgsProcessingException, match=message):
            processing.run("sarlulc:areastats", parameters)
    assert not (tmp_path / "out.csv").exists()


def test_cancel_writes_no_table_or_report(segmented_scene, sarlulc_provider, tmp_path):
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Cancelled by the user; no statistics were written"):
        processing.run("sarlulc:areastats", {"INPUT": segmented_scene["classes"], "OUTPUT": str(tmp_path / "a.csv"),
                                             "OUTPUT_HTML": str(tmp_path / "a.html")}, feedback=feedback)
    assert list(tmp_path.iterdir()) == []

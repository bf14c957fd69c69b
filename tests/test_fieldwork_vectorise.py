"""Vectorise Classes (sarlulc:vectorise) through processing.run: valid polygons that tile the valid pixels,
the minimum mapping unit, smoothing, fields, the embedded style and refusals."""

from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal, ogr
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsVectorLayer,
)
from scipy import ndimage

from sarlulc.products import LULC_CLASSES
from factories import write_class_raster
from test_plugin_bad_input import unwritable_folder  # noqa: F401 (fixture)

LEGEND = {code: (name, color) for code, name, color in LULC_CLASSES}


def read_codes(path):
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    return band.ReadAsArray(), band.GetNoDataValue()


def rasterise_back(polygons_path, like_path):
    """The polygons' codes burnt onto the class raster's grid (pixel centres), 0 where no polygon lies."""
    like = gdal.Open(str(like_path))
    target = gdal.GetDriverByName("MEM").Create("", like.RasterXSize, like.RasterYSize, 1, gdal.GDT_Int32)
    target.SetGeoTransform(like.GetGeoTransform())
    target.SetSpatialRef(like.GetSpatialRef())
    source = ogr.Open(str(polygons_path))
    gdal.RasterizeLayer(target, [1], source.GetLayer(0), options=["ATTRIBUTE=code"])
    return target.GetRasterBand(1).ReadAsArray()


def polygon_layer(path):
    layer = QgsVectorLayer(str(path), "polygons", "ogr")
    assert layer.isValid()
    return layer


def components(codes, valid):
    """Number of 4-connected regions of equal code among the valid pixels."""
    return sum(ndimage.label((codes == code) & valid)[1] for code in np.unique(codes[valid]))


def test_polygons_are_valid_and_tile_the_sieved_raster(segmented_scene, sarlulc_provider, tmp_path):
    polygons, sieved = tmp_path / "classes.gpkg", tmp_path / "sieved.tif"
    result = processing.run("sarlulc:vectorise", {"INPUT": segmented_scene["classes"], "OUTPUT": str(polygons),
                                                  "OUTPUT_RASTER": str(sieved)})
    assert result["MIN_AREA_PIXELS"] == 50  # 0.5 ha of 10 m pixels, the default
    codes, nodata = read_codes(sieved)
    original, _ = read_codes(segmented_scene["classes"])
    valid = codes != nodata
    assert np.array_equal(valid, original != nodata)  # sieving never adds or removes valid pixels
    assert (codes[valid] != original[valid]).any()  # ...but it did merge small regions

    layer = polygon_layer(polygons)
    features = list(layer.getFeatures())
    assert len(features) == result["POLYGONS"] == components(codes, valid) > 5
    assert all(f.geometry().isGeosValid() for f in features)
    burnt = rasterise_back(polygons, sieved)
    agreement = (burnt[valid] == codes[valid]).mean()
    assert agreement >= 0.99
    assert np.all(burnt[~valid] == 0)  # no polygon over nodata
    # No overlap: the polygons' areas add up to the valid area exactly (10 m pixels).
    assert sum(f["area_ha"] for f in features) == pytest.approx(valid.sum() * 100 / 1e4)
    for feature in features:
        assert (feature["class_name"], feature["code"]) == (LEGEND[feature["code"]][0], feature["code"])
        assert feature["area_ha"] == pytest.approx(feature.geometry().area() / 1e4)
        assert feature["perimeter_m"] == pytest.approx(feature.geometry().length())
        assert feature["perimeter_m"] % 10 == pytest.approx(0, abs=1e-6)  # along pixel edges
        touches_nodata = feature.geometry().boundingBox().xMinimum() <= 500300 and \
            feature.geometry().boundingBox().yMaximum() >= 4000000 - 250
        assert feature["area_ha"] >= 0.5 or touches_nodata  # the minimum mapping unit


def test_the_class_style_is_the_layers_default_style_in_the_geopackage(segmented_scene, sarlulc_provider, tmp_path):
    polygons = tmp_path / "styled.gpkg"
    processing.run("sarlulc:vectorise", {"INPUT": segmented_scene["classes"], "OUTPUT": str(polygons)})
    source = ogr.Open(str(polygons))
    styles = source.ExecuteSQL("SELECT f_table_name, useAsDefault FROM layer_styles")
    assert [(row.GetField(0), row.GetField(1)) for row in styles] == [("styled", 1)]
    source.ReleaseResultSet(styles)
    # Which model made the classes travels with the polygons (GeoPackage layer metadata), for the field map.
    assert source.GetLayerByName("styled").GetMetadata()["SARLULC_MODEL"] == "test lulc model"
    source = None
    # Opened as any QGIS user (or QField) opens it: styled, with the class names as labels.
    layer = polygon_layer(polygons)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "code"
    assert {int(c.value()): (c.label(), c.symbol().color().name()) for c in renderer.categories()} == LEGEND


def test_results_loaded_by_processing_are_styled(segmented_scene, sarlulc_provider, tmp_path, qgis_new_project):
    processing.runAndLoadResults("sarlulc:vectorise", {"INPUT": segmented_scene["water"],
                                                       "OUTPUT": str(tmp_path / "water.gpkg")})
    [layer] = qgis_new_project.mapLayers().values()
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert [c.label() for c in renderer.categories()] == ["Not water", "Water"]


def test_minimum_mapping_unit_and_smoothing(segmented_scene, sarlulc_provider, tmp_path):
    classes = segmented_scene["classes"]
    codes, nodata = read_codes(classes)
    valid = codes != nodata
    counts = {}
    for name, extra in (("raw", {"MIN_AREA": 0}), ("px20", {"MIN_AREA": 20, "MIN_AREA_UNIT": "pixels"}),
                        ("smooth", {"MIN_AREA": 20, "MIN_AREA_UNIT": 1, "SMOOTHING": "strong"})):
        sieved = tmp_path / f"{name}.tif"
        result = processing.run("sarlulc:vectorise", {"INPUT": classes, "OUTPUT": str(tmp_path / f"{name}.gpkg"),
                                                      "OUTPUT_RASTER": str(sieved), **extra})
        counts[name] = result["POLYGONS"]
        generalised, _ = read_codes(sieved)
        perimeter = sum(f["perimeter_m"] for f in polygon_layer(tmp_path / f"{name}.gpkg").getFeatures())
        counts[name + " perimeter"] = perimeter
        if name == "raw":  # no sieve, no smoothing: one polygon per 4-connected region of the input
            assert np.array_equal(generalised, codes)
            assert result["POLYGONS"] == components(codes, valid)
    assert counts["raw"] > counts["px20"] > counts["smooth"]
    assert counts["raw perimeter"] > counts["px20 perimeter"] > counts["smooth perimeter"]


def test_areas_of_a_geographic_raster_agree_with_the_statistics(sarlulc_provider, tmp_path):
    codes = np.repeat(np.array([1, 5, 6], np.uint8), 30)[:, None].repeat(60, axis=1)
    raster = write_class_raster(tmp_path / "geographic.tif", codes, epsg=4326,
                                geotransform=(10.0, 0.001, 0.0, 45.0, 0.0, -0.001))
    processing.run("sarlulc:vectorise", {"INPUT": raster, "OUTPUT": str(tmp_path / "geo.gpkg"), "MIN_AREA": 0})
    statistics = processing.run("sarlulc:areastats", {"INPUT": raster, "OUTPUT": str(tmp_path / "geo.csv"),
                                                      "OUTPUT_HTML": None})
    polygons = {f["code"]: f["area_ha"] for f in polygon_layer(tmp_path / "geo.gpkg").getFeatures()}
    table = {int(f["code"]): float(f["area_ha"]) for f in polygon_layer(tmp_path / "geo.csv").getFeatures()}
    assert polygons.keys() == {1, 5, 6}
    for code, area in polygons.items():
        assert area == pytest.approx(table[code], rel=1e-3)
    assert sum(polygons.values()) == pytest.approx(statistics["VALID_AREA_HA"], rel=1e-3)


def test_bad_inputs_are_refused_and_leave_nothing(segmented_scene, sarlulc_provider, tmp_path, unwritable_folder):
    no_legend = write_class_raster(tmp_path / "bare.tif", np.ones((5, 5)), legend=None)
    confidence = write_class_raster(tmp_path / "scores.tif", np.full((5, 5), 0.3), dtype="float32", legend=None)
    output = tmp_path / "out" / "polygons.gpkg"
    output.parent.mkdir()
    for extra, message in (
            ({"INPUT": no_legend}, "has no legend .*Paletted/Unique values"),
            ({"INPUT": confidence}, "is not a class raster: its band 1 holds Float32 values"),
            ({"INPUT": segmented_scene["classes"], "OUTPUT": str(unwritable_folder / "p.gpkg")}, "is not writable"),
            ({"INPUT": segmented_scene["classes"], "SMOOTHING": "extreme"}, "Smoothing: 'extreme' is not an option"),
            ({"INPUT": segmented_scene["classes"], "MIN_AREA_UNIT": "acres"}, "'acres' is not an option"),
            ({"INPUT": segmented_scene["classes"], "MIN_AREA": -5},
             r"Minimum mapping unit \(MIN_AREA\): -5 is out of range; use 0 or more"),
            ({"INPUT": str(tmp_path / "gone.tif")}, r"\(INPUT\): '.*gone.tif' is neither a layer of the project nor a file"),
            ({"INPUT": segmented_scene["classes"], "MIN_AREA": 1e12},
             r"minimum mapping unit \(1e\+10 pixels\) is larger than the whole raster \(240 x 200")):
        with pytest.raises(QgsProcessingException, match=message):
            processing.run("sarlulc:vectorise", {"OUTPUT": str(output), **extra})
    assert list(output.parent.iterdir()) == []


class CancelWhileWriting(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.progressChanged.connect(lambda progress: progress > 50 and self.cancel())


def test_cancel_leaves_no_output(segmented_scene, sarlulc_provider, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    feedback = CancelWhileWriting()
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run("sarlulc:vectorise", {"INPUT": segmented_scene["classes"], "MIN_AREA": 0,
                                             "OUTPUT": str(output / "p.gpkg"), "OUTPUT_RASTER": str(output / "g.tif")},
                       feedback=feedback)
    assert feedback.isCanceled()
    assert [path.name for path in output.iterdir()] == []
    assert not any(Path(segmented_scene["classes"]).parent.glob("*.partial*"))


def test_a_raster_styled_in_qgis_lends_its_legend(sarlulc_provider, tmp_path, qgis_new_project):
    """No class names in the file, but the layer is styled as Paletted/Unique values in the project."""
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer
    from qgis.PyQt.QtGui import QColor

    codes = np.repeat(np.array([[3, 3, 7, 7, 7]], np.uint8), 12, axis=0).repeat(4, axis=1)
    raster = write_class_raster(tmp_path / "reclassified.tif", codes, legend=None)
    layer = QgsRasterLayer(raster, "reclassified", "gdal")
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, [
        QgsPalettedRasterRenderer.Class(3, QColor("#ffcc00"), "Rice"),
        QgsPalettedRasterRenderer.Class(7, QColor("#006600"), "Cedar")]))
    qgis_new_project.addMapLayer(layer)
    processing.run("sarlulc:vectorise", {"INPUT": layer, "MIN_AREA": 0, "OUTPUT": str(tmp_path / "styled.gpkg")})
    polygons = polygon_layer(tmp_path / "styled.gpkg")
    assert sorted(f["class_name"] for f in polygons.getFeatures()) == ["Cedar", "Rice"]
    assert {c.label(): c.symbol().color().name() for c in polygons.renderer().categories()} == {
        "Rice": "#ffcc00", "Cedar": "#006600"}

"""sarlulc:evaluate ("Evaluate Against Reference") through processing.run."""

import numpy as np
import pytest
import processing
from qgis.core import QgsApplication, QgsProcessingException

from sarlulc.evaluation import evaluate
from factories import write_sar_raster

@pytest.fixture
def algorithm_id(sarlulc_provider):
    return "sarlulc:evaluate"


def labels_raster(path, values, nodata=0, **grid):
    values = np.asarray(values)
    return write_sar_raster(path, values.shape[1], values.shape[0], values=values, nodata=nodata, dtype="uint8", **grid)


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(2)
    reference = rng.integers(0, 10, (60, 80))
    prediction = np.where(rng.random(reference.shape) < 0.8, reference, rng.integers(1, 10, reference.shape))
    return labels_raster(tmp_path / "pred.tif", prediction), labels_raster(tmp_path / "ref.tif", reference)


def test_algorithm_metadata(algorithm_id):
    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    assert algorithm.displayName() == "Evaluate Against Reference"
    assert [p.name() for p in algorithm.parameterDefinitions()] == [
        "PREDICTION", "REFERENCE", "REFERENCE_FIELD", "TASK", "OUTPUT_CSV", "OUTPUT_HTML"]
    outputs = {o.name() for o in algorithm.outputDefinitions()}
    assert {"MIOU", "OVERALL_ACCURACY", "WATER_IOU", "WATER_F1", "WATER_PRECISION", "WATER_RECALL"} <= outputs
    assert "Warp" in algorithm.shortHelpString()


def test_run_returns_the_metrics_and_writes_the_reports(algorithm_id, pair, tmp_path):
    import processing

    prediction, reference = pair
    result = processing.run(algorithm_id, {
        "PREDICTION": prediction, "REFERENCE": reference, "TASK": 0,
        "OUTPUT_CSV": str(tmp_path / "metrics.csv"), "OUTPUT_HTML": str(tmp_path / "report.html")})
    expected = evaluate(prediction, reference, "lulc")
    assert result["MIOU"] == pytest.approx(expected.miou) and 0.5 < result["MIOU"] < 1
    assert result["OVERALL_ACCURACY"] == pytest.approx(expected.overall_accuracy)
    assert result["WATER_IOU"] == pytest.approx(expected.water.iou)
    assert result["PIXELS"] == expected.pixels
    assert "Needleleaf forest" in (tmp_path / "metrics.csv").read_text()
    assert "<svg" in (tmp_path / "report.html").read_text()


def test_water_task(algorithm_id, tmp_path):
    import processing

    water_mask = labels_raster(tmp_path / "water.tif", [[1, 1, 0, 0]], nodata=255)
    reference = labels_raster(tmp_path / "ref.tif", [[1, 6, 6, 1]])
    result = processing.run(algorithm_id, {"PREDICTION": water_mask, "REFERENCE": reference, "TASK": 1,
                                           "OUTPUT_CSV": None, "OUTPUT_HTML": None})
    assert (result["WATER_PRECISION"], result["WATER_RECALL"], result["OVERALL_ACCURACY"]) == (0.5, 0.5, 0.5)
    assert result["WATER_IOU"] == pytest.approx(1 / 3) and result["WATER_F1"] == pytest.approx(0.5)


def test_mismatched_grids_raise_a_processing_exception_with_the_fix(algorithm_id, pair, tmp_path):
    import processing

    _, reference = pair
    shifted = labels_raster(tmp_path / "other_crs.tif", np.ones((60, 80)), epsg=32653)
    with pytest.raises(QgsProcessingException) as error:
        processing.run(algorithm_id, {"PREDICTION": shifted, "REFERENCE": reference,
                                      "OUTPUT_CSV": str(tmp_path / "m.csv"), "OUTPUT_HTML": str(tmp_path / "m.html")})
    assert "EPSG:32653" in str(error.value) and "Warp" in str(error.value)
    assert not (tmp_path / "m.csv").exists() and not (tmp_path / "m.html").exists()


def test_cancel_writes_no_report(algorithm_id, pair, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeedback

    prediction, reference = pair
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run(algorithm_id, {"PREDICTION": prediction, "REFERENCE": reference,
                                      "OUTPUT_CSV": str(tmp_path / "m.csv"), "OUTPUT_HTML": str(tmp_path / "m.html")},
                       feedback=feedback)
    assert not (tmp_path / "m.csv").exists() and not (tmp_path / "m.html").exists()


def _observations(path, wkts, codes):
    """A GeoPackage layer of observations in UTM 54N: one geometry (WKT) and class code each."""
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32654)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    kind = ogr.CreateGeometryFromWkt(wkts[0]).GetGeometryType()
    layer = source.CreateLayer("observations", srs, kind)
    layer.CreateField(ogr.FieldDefn("class_observed", ogr.OFTInteger))
    for wkt, code in zip(wkts, codes):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class_observed", code)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    source = None
    return str(path)


def test_a_water_mask_scored_as_land_cover_is_refused(algorithm_id, segmented_scene, tmp_path):
    with pytest.raises(QgsProcessingException, match=r"is a water mask \(its band says so\), not a land-cover map: "
                                                     r"set TASK to 'Water mask"):
        processing.run(algorithm_id, {"PREDICTION": segmented_scene["water"], "REFERENCE": segmented_scene["water"],
                                      "OUTPUT_HTML": str(tmp_path / "r.html")})
    assert not list(tmp_path.iterdir())


def test_polygon_observations_are_refused_and_multipoints_are_read_part_by_part(algorithm_id, segmented_scene,
                                                                                tmp_path):
    polygons = _observations(tmp_path / "polygons.gpkg", ["POLYGON ((500500 3999500, 500600 3999500, 500600 "
                                                          "3999400, 500500 3999500))"], [6])
    with pytest.raises(QgsProcessingException, match=r"holds polygon geometries; a vector reference must be observed "
                                                     r"points.*Rasterize"):
        processing.run(algorithm_id, {"PREDICTION": segmented_scene["classes"], "REFERENCE": polygons})
    multipoints = _observations(tmp_path / "multi.gpkg", ["MULTIPOINT ((500500 3999500), (500700 3999300))",
                                                          "MULTIPOINT ((500900 3999100))"], [6, 1])
    result = processing.run(algorithm_id, {"PREDICTION": segmented_scene["classes"], "REFERENCE": multipoints})
    assert result["PIXELS"] == 3

"""Field Package (sarlulc:fieldpackage) through processing.run, and field checks back into sarlulc:evaluate."""

import shutil

import numpy as np
import processing
import pytest
from osgeo import gdal, ogr
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsVectorLayer,
    QgsVectorLayerUtils,
)

from sarlulc.products import LULC_CLASSES
from factories import write_class_raster
from test_plugin_bad_input import unwritable_folder  # noqa: F401 (fixture)

LEGEND = {code: (name, color) for code, name, color in LULC_CLASSES}


def band_of(path):
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    table = band.GetColorTable()
    colours = {i: "#{:02x}{:02x}{:02x}".format(*table.GetColorEntry(i)[:3]) for i in range(table.GetCount())}
    return band.ReadAsArray(), band.GetNoDataValue(), colours


@pytest.fixture(scope="module")
def package(segmented_scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("package")
    result = processing.run("sarlulc:fieldpackage", {
        "CLASSES": segmented_scene["classes"], "WATER": segmented_scene["water"],
        "OUTPUT": str(folder / "survey.gpkg"), "OUTPUT_PROJECT": str(folder / "survey.qgz")})
    return folder, result


def test_the_package_holds_the_rasters_polygons_statistics_and_field_checks(segmented_scene, package):
    folder, result = package
    gpkg = folder / "survey.gpkg"
    assert result["OUTPUT"] == str(gpkg) and sorted(p.name for p in folder.iterdir()) == ["survey.gpkg", "survey.qgz"]
    source = ogr.Open(str(gpkg))
    assert {source.GetLayer(i).GetName() for i in range(source.GetLayerCount())} >= {
        "class_polygons", "class_statistics", "water_statistics", "field_checks"}
    source = None
    for table, original in (("classes", segmented_scene["classes"]), ("water", segmented_scene["water"])):
        packed, packed_nodata, packed_colours = band_of(f"GPKG:{gpkg}:{table}")
        codes, nodata, colours = band_of(original)
        np.testing.assert_array_equal(packed, codes)  # exact class codes, not a rendered picture
        assert packed_nodata == nodata
        assert {c: packed_colours[c] for c in np.unique(codes)} == {c: colours[c] for c in np.unique(codes)}
        assert gdal.Open(f"GPKG:{gpkg}:{table}").GetGeoTransform() == gdal.Open(original).GetGeoTransform()

    polygons = QgsVectorLayer(f"{gpkg}|layername=class_polygons", "polygons", "ogr")
    renderer = polygons.renderer()  # the default style stored in the package
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert {int(c.value()): (c.label(), c.symbol().color().name()) for c in renderer.categories()} == LEGEND
    assert polygons.featureCount() == result["POLYGONS"] > 0

    codes, nodata, _ = band_of(segmented_scene["classes"])
    statistics = QgsVectorLayer(f"{gpkg}|layername=class_statistics", "statistics", "ogr")
    assert sum(f["pixels"] for f in statistics.getFeatures()) == int((codes != nodata).sum())
    water = QgsVectorLayer(f"{gpkg}|layername=water_statistics", "water", "ogr")
    assert [f["class_name"] for f in water.getFeatures()] == ["Not water", "Water"]


def test_field_checks_is_an_editable_form_for_ground_truth(package, tmp_path):
    folder, _ = package
    gpkg = tmp_path / "copy.gpkg"
    shutil.copy(folder / "survey.gpkg", gpkg)  # edits go to a copy: the package fixture stays empty
    checks = QgsVectorLayer(f"{gpkg}|layername=field_checks", "checks", "ogr")
    assert checks.isValid() and checks.featureCount() == 0 and checks.geometryType() == 0  # points
    assert checks.crs().authid() == "EPSG:32654"
    fields = checks.fields()
    assert [f.name() for f in fields][1:] == ["class_observed", "photo", "note", "timestamp"]
    value_map = checks.editorWidgetSetup(fields.indexOf("class_observed"))
    assert value_map.type() == "ValueMap"
    assert {name: code for entry in value_map.config()["map"] for name, code in entry.items()} == {
        name: code for code, (name, _) in LEGEND.items()}
    assert checks.editorWidgetSetup(fields.indexOf("photo")).type() == "ExternalResource"
    assert isinstance(checks.renderer(), QgsCategorizedSymbolRenderer)

    # What a field app does: a new point through the form, its defaults filled in, saved.
    assert checks.startEditing()
    feature = QgsVectorLayerUtils.createFeature(checks, QgsGeometry.fromPointXY(QgsPointXY(500505, 3999505)),
                                                {fields.indexOf("class_observed"): 6})
    assert feature["timestamp"]  # the observation time, from the default value now()
    assert checks.addFeature(feature) and checks.commitChanges()
    reopened = QgsVectorLayer(f"{gpkg}|layername=field_checks", "checks", "ogr")
    assert [f["class_observed"] for f in reopened.getFeatures()] == [6]


def test_the_project_opens_every_layer_styled_from_another_folder(package, tmp_path):
    folder, _ = package
    moved = tmp_path / "tablet"
    shutil.copytree(folder, moved)  # relative paths: the package travels as a folder
    project = QgsProject()
    assert project.read(str(moved / "survey.qgz"))
    layers = {layer.name(): layer for layer in project.mapLayers().values()}
    assert set(layers) == {"Field checks", "Class polygons", "Water", "Classes", "Class statistics",
                           "Water statistics"}
    assert all(layer.isValid() and str(moved) in layer.source() for layer in layers.values())
    classes = layers["Classes"].renderer()
    assert isinstance(classes, QgsPalettedRasterRenderer)
    assert {c.value: (c.label, c.color.name()) for c in classes.classes()} == LEGEND
    assert [c.label for c in layers["Water"].renderer().classes()] == ["Water"]  # not-water left transparent
    assert isinstance(layers["Class polygons"].renderer(), QgsCategorizedSymbolRenderer)
    tree = project.layerTreeRoot()
    assert [node.name() for node in tree.findLayers()][:2] == ["Field checks", "Class polygons"]
    assert not tree.findLayer(layers["Classes"].id()).itemVisibilityChecked()


def field_points(crs, observations):
    """A memory point layer 'observed' with (x, y, value) rows."""
    layer = QgsVectorLayer(f"Point?crs={crs}&field=observed:string", "observations", "memory")
    features = []
    for x, y, value in observations:
        feature = QgsFeature(layer.fields())
        feature.setAttributes([value])
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def add_field_checks(gpkg, observations) -> None:
    """Points (x, y, observed class code or None) added to the package's field checks, as a field app does.
    The layer lives only here: a layer that outlives QGIS (kept by a test's traceback) crashes its exit."""
    checks = QgsVectorLayer(f"{gpkg}|layername=field_checks", "checks", "ogr")
    assert checks.startEditing()
    for x, y, code in observations:
        values = {checks.fields().indexOf("class_observed"): code} if code is not None else {}
        assert checks.addFeature(QgsVectorLayerUtils.createFeature(checks, QgsGeometry.fromPointXY(QgsPointXY(x, y)),
                                                                   values))
    assert checks.commitChanges()


def test_field_checks_score_the_map_with_evaluate(segmented_scene, package, tmp_path):
    folder, _ = package
    gpkg = tmp_path / "returned.gpkg"
    shutil.copy(folder / "survey.gpkg", gpkg)
    codes, nodata, _ = band_of(segmented_scene["classes"])
    rng = np.random.default_rng(5)
    rows, columns = rng.integers(30, 200, 40), rng.integers(40, 240, 40)
    truth = codes[rows, columns]
    observed = np.where(np.arange(40) % 4 == 0, (truth % 9) + 1, truth)  # a quarter observed differently
    observations = [(500005 + 10 * column, 3999995 - 10 * row, int(code))
                    for row, column, code in zip(rows, columns, observed)]
    add_field_checks(gpkg, observations + [(500105, 3999505, None), (400000, 3000000, 3)])  # unobserved, outside

    result = processing.run("sarlulc:evaluate", {
        "PREDICTION": segmented_scene["classes"], "REFERENCE": f"{gpkg}|layername=field_checks",
        "OUTPUT_CSV": str(tmp_path / "m.csv"), "OUTPUT_HTML": str(tmp_path / "m.html")})
    assert result["PIXELS"] == 40  # the unobserved point and the one outside the map are left out
    assert result["OVERALL_ACCURACY"] == pytest.approx((observed == truth).mean())
    assert "Points compared" in (tmp_path / "m.html").read_text()
    assert "# points=40" in (tmp_path / "m.csv").read_text()

    # Another CRS and class names instead of codes: the same score.
    named = field_points("EPSG:32654", [(500005 + 10 * c, 3999995 - 10 * r, LEGEND[int(v)][0])
                                        for r, c, v in zip(rows, columns, observed)])
    again = processing.run("sarlulc:evaluate", {"PREDICTION": segmented_scene["classes"], "REFERENCE": named,
                                                "REFERENCE_FIELD": "observed", "OUTPUT_CSV": None, "OUTPUT_HTML": None})
    assert again["OVERALL_ACCURACY"] == pytest.approx(result["OVERALL_ACCURACY"])
    with pytest.raises(QgsProcessingException, match="'Forrest' in 'observed', which is neither a class code nor"):
        processing.run("sarlulc:evaluate", {"PREDICTION": segmented_scene["classes"],
                                            "REFERENCE": field_points("EPSG:32654", [(500105, 3999505, "Forrest")]),
                                            "REFERENCE_FIELD": "observed", "OUTPUT_CSV": None, "OUTPUT_HTML": None})
    with pytest.raises(QgsProcessingException, match="has no field 'class_observed'.*Its fields are: observed"):
        processing.run("sarlulc:evaluate", {"PREDICTION": segmented_scene["classes"], "REFERENCE": named,
                                            "OUTPUT_CSV": None, "OUTPUT_HTML": None})


def test_bad_inputs_leave_no_package(segmented_scene, sarlulc_provider, tmp_path, unwritable_folder):
    out = tmp_path / "out"
    out.mkdir()
    no_legend = write_class_raster(tmp_path / "bare.tif", np.ones((6, 6)), legend=None)
    scores = write_class_raster(tmp_path / "scores.tif", np.full((6, 6), 0.4), dtype="float32", legend=None)
    for extra, message in (
            ({"CLASSES": no_legend}, "has no legend"),
            ({"CLASSES": scores}, "is not a class raster"),
            ({"WATER": scores}, "is not a class raster"),
            ({"OUTPUT": str(unwritable_folder / "p.gpkg")}, "is not writable"),
            ({"OUTPUT_PROJECT": str(tmp_path / "nowhere" / "p.qgz")}, "does not exist")):
        with pytest.raises(QgsProcessingException, match=message):
            processing.run("sarlulc:fieldpackage", {"CLASSES": segmented_scene["classes"],
                                                    "OUTPUT": str(out / "p.gpkg"), **extra})
    assert list(out.iterdir()) == []

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda progress: progress > 30 and feedback.cancel())
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run("sarlulc:fieldpackage", {"CLASSES": segmented_scene["classes"], "MIN_AREA": 0,
                                                "OUTPUT": str(out / "p.gpkg")}, feedback=feedback)
    assert list(out.iterdir()) == []  # neither the package nor its hidden work folder


def _observe(gpkg, codes, x0=500600.0, y0=3999400.0):
    """Add field observations (class codes, a note each) to the package's field_checks layer, as QField would."""
    source = ogr.Open(str(gpkg), 1)
    layer = source.GetLayerByName("field_checks")
    for index, code in enumerate(codes):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class_observed", int(code))
        feature.SetField("note", f"plot {index}")
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({x0 + 50 * index} {y0})"))
        layer.CreateFeature(feature)
    source = None


def _observations(gpkg):
    source = ogr.Open(str(gpkg))
    layer = source.GetLayerByName("field_checks")
    found = sorted((f.GetField("class_observed"), f.GetField("note"), f.GetGeometryRef().ExportToWkt()) for f in layer)
    source = None
    return found


def test_a_rerun_into_the_package_keeps_the_field_observations(segmented_scene, tmp_path):
    gpkg = tmp_path / "survey.gpkg"
    parameters = {"CLASSES": segmented_scene["classes"], "OUTPUT": str(gpkg)}
    processing.run("sarlulc:fieldpackage", parameters)
    _observe(gpkg, [6, 1, 2])
    observed = _observations(gpkg)
    feedback = QgsProcessingFeedback()
    lines = []
    feedback.pushInfo = lines.append
    processing.run("sarlulc:fieldpackage", {**parameters, "WATER": segmented_scene["water"]}, feedback=feedback)
    assert _observations(gpkg) == observed and len(observed) == 3
    assert any("Kept the 3 field observation(s)" in line for line in lines)
    source = ogr.Open(str(gpkg))
    assert source.GetLayerByName("water_statistics") is not None  # the package itself was rebuilt
    source = None


def test_a_geopackage_holding_other_layers_is_not_replaced(segmented_scene, tmp_path):
    gpkg = tmp_path / "project_data.gpkg"
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(gpkg))
    source.CreateLayer("roads", None, ogr.wkbLineString)
    source = None
    before = gpkg.read_bytes()
    with pytest.raises(QgsProcessingException, match=r"already holds layers that are not part of a field package "
                                                     r"\(roads\).*Choose another file name"):
        processing.run("sarlulc:fieldpackage", {"CLASSES": segmented_scene["classes"], "OUTPUT": str(gpkg)})
    assert gpkg.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["project_data.gpkg"]


def test_swapped_or_mismatched_rasters_are_refused_before_any_file(segmented_scene, tmp_path):
    gpkg = tmp_path / "survey.gpkg"
    with pytest.raises(QgsProcessingException, match=r"is a water mask and the water mask .* a land-cover map: the "
                                                     r"two look swapped"):
        processing.run("sarlulc:fieldpackage", {"CLASSES": segmented_scene["water"],
                                                "WATER": segmented_scene["classes"], "OUTPUT": str(gpkg)})
    elsewhere = tmp_path / "elsewhere.tif"
    gdal.Translate(str(elsewhere), segmented_scene["water"], outputBounds=[600000, 3000000, 602400, 2998000])
    with pytest.raises(QgsProcessingException, match=r"does not overlap the class raster"):
        processing.run("sarlulc:fieldpackage", {"CLASSES": segmented_scene["classes"], "WATER": str(elsewhere),
                                                "OUTPUT": str(gpkg)})
    other_crs = tmp_path / "other_crs.tif"
    gdal.Warp(str(other_crs), segmented_scene["water"], dstSRS="EPSG:4326")
    with pytest.raises(QgsProcessingException, match=r"is in EPSG:4326, the class raster in EPSG:32654"):
        processing.run("sarlulc:fieldpackage", {"CLASSES": segmented_scene["classes"], "WATER": str(other_crs),
                                                "OUTPUT": str(gpkg)})
    assert not gpkg.exists()


def test_a_project_that_cannot_be_written_fails_clearly_and_keeps_the_package(segmented_scene, tmp_path, monkeypatch):
    from sar_lulc.processing_provider.fieldwork import field_package

    class FullDisk(QgsProject):
        def write(self, path=None):
            return False

        def error(self):
            return "No space left on device"

    monkeypatch.setattr(field_package, "QgsProject", FullDisk)
    gpkg, project = tmp_path / "survey.gpkg", tmp_path / "survey.qgz"
    with pytest.raises(QgsProcessingException, match=r"could not be written: No space left on device\. The field "
                                                     r"package itself is complete"):
        processing.run("sarlulc:fieldpackage", {"CLASSES": segmented_scene["classes"], "OUTPUT": str(gpkg),
                                                "OUTPUT_PROJECT": str(project)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["survey.gpkg"]
    source = ogr.Open(str(gpkg))
    assert source.GetLayerByName("field_checks") is not None
    source = None

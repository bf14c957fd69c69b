"""Field Map (sarlulc:fieldmap) through processing.run: the PDF's page, text, georeference and pixels.

The PDF is read back with poppler (pdfinfo, pdftotext, pdftoppm) as a user's viewer reads it.
"""

import re
import shutil
import subprocess
import unicodedata

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import (QgsFeature, QgsGeometry, QgsProcessingException, QgsProcessingFeedback, QgsRectangle,
                       QgsVectorLayer)
from qgis.PyQt.QtGui import QColor, QImage

from sarlulc.products import LULC_CLASSES
from factories import write_class_raster
from test_fieldwork_areastats import WarningFeedback
from test_plugin_bad_input import unwritable_folder  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils is missing (tools/bootstrap.sh "
                                                                      "installs it: apt-get install poppler-utils)")


def pdf_info(path) -> dict:
    output = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True).stdout
    return dict(line.split(":", 1) for line in output.splitlines() if ":" in line)


def page_size_mm(path) -> tuple[float, float, str]:
    """(width, height, paper name) of the first page as pdfinfo reports it (pages are whole points: within
    0.2 mm of the ISO size)."""
    match = re.match(r"\s*([\d.]+) x ([\d.]+) pts(?: \((\w+)\))?", pdf_info(path)["Page size"])
    return float(match.group(1)) * 25.4 / 72, float(match.group(2)) * 25.4 / 72, match.group(3)


def pdf_text(path) -> str:
    """The PDF's text as a viewer's search sees it (typographic ligatures such as 'ﬁ' read as 'fi')."""
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout
    return unicodedata.normalize("NFKC", text)


def first_page_png(path, folder) -> QImage:
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", str(path),
                    str(folder / "page")], check=True)
    image = QImage(str(folder / "page.png"))
    assert not image.isNull()
    return image


def colour_share(image: QImage, color: str, tolerance: int = 12) -> float:
    """Share of the image's pixels within ``tolerance`` of ``color`` in every channel."""
    image = image.convertToFormat(QImage.Format_RGB888)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
    pixels = data.reshape(height, image.bytesPerLine())[:, :width * 3].reshape(height, width, 3).astype(int)
    target = QColor(color)
    close = np.all(np.abs(pixels - [target.red(), target.green(), target.blue()]) <= tolerance, axis=-1)
    return close.mean()


def test_a3_portrait_map_at_a_fixed_scale(segmented_scene, sarlulc_provider, tmp_path):
    pdf, png = tmp_path / "map.pdf", tmp_path / "map.png"
    result = processing.run("sarlulc:fieldmap", {
        "LAYERS": [segmented_scene["water"], segmented_scene["classes"]], "BACKGROUND": segmented_scene["sar"],
        "TITLE": "Flood check Kanto", "PAPER": "A3", "ORIENTATION": "portrait", "SCALE": 10000,
        "GRID": "latitude/longitude", "OVERVIEW": True, "SOURCE": "ALOS-2 PALSAR-2 HH, test scene",
        "OUTPUT": str(pdf), "OUTPUT_PNG": str(png)})
    assert result["PAGES"] == 1 and result["GEOREFERENCED"] is True

    width, height, name = page_size_mm(pdf)
    assert (width, height) == pytest.approx((297, 420), abs=0.2) and name == "A3"
    text = pdf_text(pdf)
    assert "Flood check Kanto" in text
    for _, class_name, _ in LULC_CLASSES:  # the legend of the class raster, every class
        assert class_name in text
    assert "Scale 1:10,000" in text
    assert "Source: ALOS-2 PALSAR-2 HH, test scene" in text
    assert "test lulc model, trained on nothing (test factory)" in text  # from the raster's metadata
    assert "EPSG:32654" in text
    # Each result's heading says what it is (both have a "Water" class), not its file name.
    assert "Land cover" in text and "Water mask" in text and "classes" not in text.split()
    assert re.search(r"36°\d+′\d+(″|′′)N", text) and re.search(r"141°\d+′\d+(″|′′)E", text)  # grid

    # GeoPDF: a reader gets the map's CRS and georeference from the PDF.
    georeferenced = gdal.Open(str(pdf))
    assert "UTM zone 54N" in georeferenced.GetSpatialRef().GetName()
    x0, dx, _, y0, _, dy = georeferenced.GetGeoTransform()
    assert dx == pytest.approx(10000 * 0.0254 / 72, rel=1e-3)  # one PDF point (GDAL reads at 72 dpi) at 1:10,000
    page_x, page_y = georeferenced.RasterXSize, georeferenced.RasterYSize
    assert x0 < 500000 + 1200 < x0 + dx * page_x and y0 + dy * page_y < 4000000 - 1000 < y0

    image = first_page_png(pdf, tmp_path)  # what a reader shows: the page, the classes in their colours
    assert image.height() > image.width()
    assert colour_share(image, "#0b4d1e") > 0.02  # needleleaf forest, the scene's commonest class
    assert colour_share(image, "#1f78b4") > 0.005  # the water mask's blue, drawn above the classes
    exported = QImage(str(png))
    assert (exported.width(), exported.height()) == pytest.approx((1754, 2480), abs=2)  # A3 at 150 dpi


def test_a4_landscape_fitted_map_of_styled_polygons(segmented_scene, sarlulc_provider, tmp_path):
    polygons = tmp_path / "classes.gpkg"
    processing.run("sarlulc:vectorise", {"INPUT": segmented_scene["classes"], "OUTPUT": str(polygons)})
    pdf = tmp_path / "polygons.pdf"
    processing.run("sarlulc:fieldmap", {"LAYERS": [str(polygons)], "TITLE": "Land cover polygons",
                                        "GRID": "map CRS", "OUTPUT": str(pdf)})
    width, height, name = page_size_mm(pdf)
    assert (width, height) == pytest.approx((297, 210), abs=0.2) and name == "A4"
    text = pdf_text(pdf)
    assert "Land cover polygons" in text
    layer = QgsVectorLayer(str(polygons), "polygons", "ogr")
    for category in layer.renderer().categories():  # the GeoPackage's default style reached the legend
        assert category.label() in text
    assert "Model: test lulc model" in text  # recorded in the GeoPackage layer by Vectorise Classes
    scale = int(re.search(r"Scale 1:([\d,]+)", text).group(1).replace(",", ""))
    assert scale in (10000, 15000, 20000, 25000)  # the standard scale that fits 2.4 x 2 km on A4
    assert re.search(r"\b3999\d00\b", text)  # map CRS grid labels (northings)


def grid_layer(rectangles):
    layer = QgsVectorLayer("Polygon?crs=EPSG:32654&field=sheet:integer", "grid", "memory")
    features = []
    for index, rectangle in enumerate(rectangles, start=1):
        feature = QgsFeature(layer.fields())
        feature.setAttributes([index])
        feature.setGeometry(QgsGeometry.fromRect(rectangle))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def test_atlas_has_one_page_per_cell_and_a_geopdf_per_sheet(segmented_scene, sarlulc_provider, tmp_path):
    cells = grid_layer([QgsRectangle(500000, 3999000, 501200, 4000000), QgsRectangle(501200, 3998000, 502400, 3999000)])
    pdf = tmp_path / "atlas.pdf"
    result = processing.run("sarlulc:fieldmap", {"LAYERS": [segmented_scene["classes"]], "TITLE": "Survey",
                                                 "ATLAS": cells, "OUTPUT": str(pdf),
                                                 "OUTPUT_PNG": str(tmp_path / "atlas.png")})
    assert result["PAGES"] == 2 and pdf_info(pdf)["Pages"].strip() == "2"
    text = pdf_text(pdf)
    assert "Survey - sheet 1 of 2" in text and "Survey - sheet 2 of 2" in text
    for page in (1, 2):
        sheet = gdal.Open(str(tmp_path / f"atlas_sheet_{page}.pdf"))
        assert sheet.GetSpatialRef() is not None  # each sheet is a GeoPDF
    assert (tmp_path / "atlas.png").is_file() and (tmp_path / "atlas_2.png").is_file()
    # Each sheet is centred on its cell: the sheets' georeferences differ by the cells' offset.
    first, second = (gdal.Open(str(tmp_path / f"atlas_sheet_{page}.pdf")).GetGeoTransform() for page in (1, 2))
    assert second[0] - first[0] == pytest.approx(1200, abs=60) and first[3] - second[3] == pytest.approx(1000, abs=60)


def test_a_cancel_after_the_pdf_leaves_the_earlier_map_as_it_was(segmented_scene, sarlulc_provider, tmp_path):
    # An earlier map of the same name; this run is cancelled once its PDF and GeoPDF sheets are written,
    # while the PNG pages are: none of its files may replace the earlier ones, none may be left behind.
    cells = grid_layer([QgsRectangle(500000, 3999000, 501200, 4000000), QgsRectangle(501200, 3998000, 502400, 3999000)])
    earlier = {name: f"earlier {name}".encode() for name in ("atlas.pdf", "atlas_sheet_1.pdf", "atlas.png")}
    for name, content in earlier.items():
        (tmp_path / name).write_bytes(content)
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda progress: progress >= 80 and feedback.cancel())
    with pytest.raises(QgsProcessingException, match="Cancelled by the user; no map was written"):
        processing.run("sarlulc:fieldmap", {"LAYERS": [segmented_scene["classes"]], "ATLAS": cells,
                                            "OUTPUT": str(tmp_path / "atlas.pdf"),
                                            "OUTPUT_PNG": str(tmp_path / "atlas.png")}, feedback=feedback)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == earlier


def test_bad_inputs_are_refused_before_anything_is_written(segmented_scene, sarlulc_provider, tmp_path,
                                                           unwritable_folder):
    classes = segmented_scene["classes"]
    output = tmp_path / "out"
    output.mkdir()
    for extra, message in (
            ({"PAPER": "Letter"}, "Paper size: 'Letter' is not an option. Choose one of: A4, A3"),
            ({"ORIENTATION": "sideways"}, "'sideways' is not an option. Choose one of: landscape, portrait"),
            ({"GRID": "UTM"}, "Choose one of: latitude/longitude, map CRS, none"),
            ({"OUTPUT": str(unwritable_folder / "map.pdf")}, "is not writable"),
            ({"OUTPUT": str(tmp_path / "missing" / "map.pdf")}, "does not exist"),
            ({"OUTPUT_PNG": classes}, "is the input Result layers"),
            ({"TITLE": ""}, r"Title \(TITLE\) is required: give a value"),
            ({"BACKGROUND": str(tmp_path / "gone.tif")}, r"Background layer \(BACKGROUND\): '.*gone.tif' is neither a "
                                                         "layer of the project nor a file that exists"),
            ({"SCALE": 1e9}, r"\(SCALE\): 1000000000.0 is out of range; use 0 to 100000000")):
        with pytest.raises(QgsProcessingException, match=message):
            processing.run("sarlulc:fieldmap", {"LAYERS": [classes], "OUTPUT": str(output / "map.pdf"), **extra})
    assert list(output.iterdir()) == []


def test_modeler_chain_segment_vectorise_field_map(sarlulc_provider, lulc_model, sar_raster, tmp_path):
    """The README's modeler chain, as saved by the graphical modeler: SAR scene → classes → polygons → map."""
    from pathlib import Path

    from qgis.core import QgsProcessingContext, QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(Path(__file__).parent / "data" / "field_map_chain.model3"))
    assert {child.algorithmId() for child in model.childAlgorithms().values()} == {
        "sarlulc:segment", "sarlulc:vectorise", "sarlulc:fieldmap"}
    assert model.validate()[0]
    parameters = {"sar": sar_raster, "lulc_model": lulc_model, "title": "Chained field map",
                  "segment:classes": str(tmp_path / "classes.tif"), "vectorise:polygons": str(tmp_path / "p.gpkg"),
                  "fieldmap:map": str(tmp_path / "map.pdf")}
    assert model.checkParameterValues(parameters, QgsProcessingContext())[0]
    results = processing.run(model, parameters)
    assert results["fieldmap:map"] == str(tmp_path / "map.pdf")
    text = pdf_text(tmp_path / "map.pdf")
    assert "Chained field map" in text and "Model: test lulc model" in text
    polygons = QgsVectorLayer(str(tmp_path / "p.gpkg"), "polygons", "ogr")
    for category in polygons.renderer().categories():
        assert category.label() in text


def test_an_atlas_of_points_is_refused_with_what_to_do(segmented_scene, sarlulc_provider, tmp_path):
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32654)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "points.gpkg"))
    layer = source.CreateLayer("points", srs, ogr.wkbPoint)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt("POINT (500500 3999500)"))
    layer.CreateFeature(feature)
    source = None
    with pytest.raises(QgsProcessingException, match=r"holds point geometries; an atlas needs polygons.*Buffer"):
        processing.run("sarlulc:fieldmap", {"LAYERS": [segmented_scene["classes"]], "ATLAS": str(tmp_path / "points.gpkg"),
                                            "OUTPUT": str(tmp_path / "map.pdf")})
    assert not (tmp_path / "map.pdf").exists()


def test_a_class_raster_without_its_style_gets_its_own_legend_of_the_classes_present(segmented_scene,
                                                                                     sarlulc_provider, tmp_path):
    """A class map clipped with GDAL keeps its colour table and class names but not its .qml: the legend lists
    the classes it holds, by name, not 256 numbered colour-table rows running off the page."""
    from osgeo import gdal

    clipped = tmp_path / "clipped.tif"
    gdal.Translate(str(clipped), segmented_scene["classes"], srcWin=[40, 40, 120, 100])
    present = set(np.unique(gdal.Open(str(clipped)).ReadAsArray())) - {0}
    processing.run("sarlulc:fieldmap", {"LAYERS": [str(clipped)], "OUTPUT": str(tmp_path / "map.pdf")})
    text = pdf_text(tmp_path / "map.pdf")
    names = {code: name for code, name, _ in LULC_CLASSES}
    assert all(names[code] in text for code in present)
    assert not [name for code, name in names.items() if code not in present and name in text]
    assert not re.search(r"^\s*(1[0-9]{2}|2[0-5][0-9])\s*$", text, re.MULTILINE)  # no numbered palette rows


def words_in_box(path) -> list[tuple[str, float, float, float, float]]:
    """(word, x min, y min, x max, y max) in points of the PDF's first page, as pdftotext -bbox reads them."""
    html = subprocess.run(["pdftotext", "-bbox", "-f", "1", "-l", "1", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout
    return [(word, float(x0), float(y0), float(x1), float(y1)) for x0, y0, x1, y1, word in
            re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', html)]


def test_a_legend_of_many_classes_stays_beside_the_overview_and_says_when_it_cannot_fit(sarlulc_provider, tmp_path):
    """A custom model of 24 classes: the legend's columns never run under the overview inset; where the panel
    cannot hold them (A4 portrait beside the overview) the log says so and what to choose; on A3 they fit."""
    from sar_lulc.processing_provider.fieldwork.field_map_layout import MARGIN

    legend = [(code, f"Class {code} of a custom model", f"#{code * 10:02x}{255 - code * 10:02x}80")
              for code in range(1, 25)]
    codes = np.repeat(np.arange(1, 25, dtype=np.uint8), 10)[None].repeat(200, 0)  # 10 px stripes, every class
    classes = write_class_raster(tmp_path / "codes.tif", codes, legend=legend)
    for paper, page_width_mm, fits in (("A4", 210.0, False), ("A3", 297.0, True)):
        feedback = WarningFeedback()
        pdf = tmp_path / f"{paper}.pdf"
        processing.run("sarlulc:fieldmap", {"LAYERS": [classes], "TITLE": "Custom classes", "PAPER": paper,
                                            "ORIENTATION": "portrait", "OVERVIEW": True, "OUTPUT": str(pdf)},
                       feedback=feedback)
        overview_left_pt = (page_width_mm - MARGIN - 70.0) * 72 / 25.4
        labels = [box for box in words_in_box(pdf) if box[0] == "custom"]
        assert len(labels) == 24 or not fits  # every class in the legend (on A4 the last run off the page)
        assert max(x1 for _, _, _, x1, _ in labels) < overview_left_pt
        warned = any("The legend does not fit its panel on an A4 portrait sheet beside the overview" in message
                     and "choose A3, landscape or no overview" in message for message in feedback.warnings)
        assert warned != fits, feedback.warnings


def test_a_long_training_note_is_cut_so_the_footer_fits_the_page():
    from sar_lulc.processing_provider.fieldwork.field_map import TRAINED_ON_CHARACTERS, shortened

    note = "real Sentinel-1 scenes: ETCI 2021 Bangladesh and Nebraska (8-bit VV), Sen1Floods11 chips " * 3
    short = shortened(note, TRAINED_ON_CHARACTERS)
    assert len(short) <= TRAINED_ON_CHARACTERS + 2 and short.endswith(" …") and note.startswith(short[:-2])
    assert shortened("simulated scenes", TRAINED_ON_CHARACTERS) == "simulated scenes"

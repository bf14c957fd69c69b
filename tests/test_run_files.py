"""One check of every run's files, before any work, for every algorithm: an output that is one of the
run's inputs, or another of its outputs, is refused with a message naming both; the input's bytes (and
its .aux.xml) stay as they were and no output file appears."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import QgsProcessingException

from factories import write_sar_raster


def digest(folder: Path) -> dict:
    """sha256 of every file in ``folder`` by name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def _points(path: Path, codes) -> str:
    """A GeoPackage of field observations (points with a class code) in UTM 54N."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32654)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("observations", srs, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
    for index, code in enumerate(codes):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("code", int(code))
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({500500 + 100 * index} {3999500})"))
        layer.CreateFeature(feature)
    source = None
    return str(path)


@pytest.fixture
def workspace(tmp_path, segmented_scene):
    """A folder holding a copy of the scene, its class and water rasters (with a .aux.xml each) and a
    GeoPackage of field observations."""
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("sar", "classes", "water"):
        shutil.copy(segmented_scene[name], folder / f"{name}.tif")
        (folder / f"{name}.tif.aux.xml").write_text("<PAMDataset></PAMDataset>")
    _points(folder / "points.gpkg", [1, 2, 6])
    return folder


CASES = [
    # (case, algorithm, parameters with {folder} for the workspace, expected message)
    ("vectorise: raster output is the input", "sarlulc:vectorise",
     {"INPUT": "{w}/classes.tif", "OUTPUT": "{w}/polygons.gpkg", "OUTPUT_RASTER": "{w}/classes.tif"},
     r"output .*OUTPUT_RASTER.* is the input .*INPUT.*not overwritten"),
    ("vectorise: raster output is the polygon output", "sarlulc:vectorise",
     {"INPUT": "{w}/classes.tif", "OUTPUT": "{w}/out.gpkg", "OUTPUT_RASTER": "{w}/out.gpkg"},
     r"must differ from the output .*OUTPUT"),
    ("areastats: table written over the zones", "sarlulc:areastats",
     {"INPUT": "{w}/classes.tif", "ZONES": "{w}/points.gpkg", "OUTPUT": "{w}/points.gpkg"},
     r"is the input .*ZONES"),
    ("areastats: report written over the zones", "sarlulc:areastats",
     {"INPUT": "{w}/classes.tif", "ZONES": "{w}/points.gpkg", "OUTPUT_HTML": "{w}/points.gpkg"},
     r"is the input .*ZONES"),
    ("fieldmap: PNG written over the background scene", "sarlulc:fieldmap",
     {"LAYERS": ["{w}/classes.tif"], "BACKGROUND": "{w}/sar.tif", "OUTPUT": "{w}/map.pdf",
      "OUTPUT_PNG": "{w}/sar.tif"},
     r"is the input .*BACKGROUND"),
    ("fieldmap: PNG and PDF on one path", "sarlulc:fieldmap",
     {"LAYERS": ["{w}/classes.tif"], "OUTPUT": "{w}/map.pdf", "OUTPUT_PNG": "{w}/map.pdf"},
     r"must differ from the output"),
    ("evaluate: report written over the field observations", "sarlulc:evaluate",
     {"PREDICTION": "{w}/classes.tif", "REFERENCE": "{w}/points.gpkg", "REFERENCE_FIELD": "code",
      "OUTPUT_HTML": "{w}/points.gpkg"},
     r"is the input .*REFERENCE"),
    ("evaluate: table written over the prediction", "sarlulc:evaluate",
     {"PREDICTION": "{w}/classes.tif", "REFERENCE": "{w}/points.gpkg", "REFERENCE_FIELD": "code",
      "OUTPUT_CSV": "{w}/classes.tif"},
     r"is the input .*PREDICTION"),
    ("fieldpackage: project and package on one path", "sarlulc:fieldpackage",
     {"CLASSES": "{w}/classes.tif", "OUTPUT": "{w}/package.gpkg", "OUTPUT_PROJECT": "{w}/package.gpkg"},
     r"must differ from the output"),
    ("fieldpackage: package written over the water mask", "sarlulc:fieldpackage",
     {"CLASSES": "{w}/classes.tif", "WATER": "{w}/water.tif", "OUTPUT": "{w}/water.tif"},
     r"is the input .*WATER"),
    ("calibrate: output is the input", "sarlulc:calibrate",
     {"INPUT": "{w}/sar.tif", "OUTPUT": "{w}/sar.tif"}, r"is the input"),
    ("segment: confidence output is the input", "sarlulc:segment",
     {"INPUT": "{w}/sar.tif", "OUTPUT": "{w}/lulc.tif", "OUTPUT_CONFIDENCE": "{w}/sar.tif"}, r"is the input"),
    ("waterdetect: probability and mask on one path", "sarlulc:waterdetect",
     {"INPUT": "{w}/sar.tif", "OUTPUT": "{w}/wet.tif", "OUTPUT_PROBABILITY": "{w}/wet.tif"},
     r"must differ from the output"),
]


def _resolved(value, folder: Path):
    if isinstance(value, list):
        return [_resolved(item, folder) for item in value]
    return value.replace("{w}", str(folder)) if isinstance(value, str) else value


@pytest.mark.parametrize("case, algorithm, parameters, message", CASES, ids=[row[0] for row in CASES])
def test_an_output_on_an_input_or_on_another_output_is_refused_before_any_work(
        sarlulc_provider, workspace, lulc_model, water_model, case, algorithm, parameters, message):
    parameters = {key: _resolved(value, workspace) for key, value in parameters.items()}
    if algorithm in ("sarlulc:segment", "sarlulc:waterdetect"):
        parameters["MODEL"] = lulc_model if algorithm == "sarlulc:segment" else water_model
    before = digest(workspace)
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(algorithm, parameters)
    assert digest(workspace) == before  # inputs byte for byte, their .aux.xml, and no new file


def test_the_same_file_through_a_link_counts_as_the_input(sarlulc_provider, workspace, tmp_path):
    link = tmp_path / "link.tif"
    link.symlink_to(workspace / "classes.tif")
    before = digest(workspace)
    with pytest.raises(QgsProcessingException, match="through a link"):
        processing.run("sarlulc:vectorise", {"INPUT": str(workspace / "classes.tif"),
                                              "OUTPUT": str(workspace / "p.gpkg"), "OUTPUT_RASTER": str(link)})
    assert digest(workspace) == before


def test_distinct_files_still_run(sarlulc_provider, workspace):
    result = processing.run("sarlulc:calibrate", {"INPUT": write_sar_raster(
        workspace / "dn.tif", 60, 40, dtype="uint16", nodata=0, values=np.full((40, 60), 3000)),
        "OUTPUT": str(workspace / "sigma0.tif")})
    assert gdal.Open(result["OUTPUT"]).ReadAsArray().mean() == pytest.approx(10 * np.log10(3000 ** 2) - 83, abs=0.01)


@pytest.mark.parametrize("algorithm, parameters, message", [
    ("sarlulc:fieldmap", {"LAYERS": ["{w}/classes.tif"], "OUTPUT": "{w}/map.png"},
     r"Map .*\(OUTPUT\) file '.*map\.png' must end in \.pdf"),
    ("sarlulc:fieldpackage", {"CLASSES": "{w}/classes.tif", "OUTPUT": "{w}/p.gpkg", "OUTPUT_PROJECT": "{w}/p.qgs"},
     r"\(OUTPUT_PROJECT\) file '.*p\.qgs' must end in \.qgz"),
    ("sarlulc:evaluate", {"PREDICTION": "{w}/classes.tif", "REFERENCE": "{w}/classes.tif",
                          "OUTPUT_CSV": "{w}/metrics.txt"}, r"\(OUTPUT_CSV\) file '.*metrics\.txt' must end in \.csv"),
], ids=["PDF named .png", "zipped project named .qgs", "CSV named .txt"])
def test_a_file_named_for_another_format_is_refused(sarlulc_provider, workspace, algorithm, parameters, message):
    parameters = {key: _resolved(value, workspace) for key, value in parameters.items()}
    before = digest(workspace)
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(algorithm, parameters)
    assert digest(workspace) == before


def _geopackage_with(path: Path, names) -> str:
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    for name in names:
        source.CreateLayer(name, None, ogr.wkbLineString)
    source = None
    return str(path)


@pytest.mark.parametrize("algorithm, parameters, message", [
    ("sarlulc:vectorise", {"INPUT": "{w}/classes.tif", "OUTPUT": "{w}/project.gpkg"},
     r"is a GeoPackage holding 2 tables \(rivers, roads\): writing there would replace the whole file.*"
     r"ogr:dbname='.*project\.gpkg' table=\"name\""),
    ("sarlulc:segment", {"INPUT": "{w}/sar.tif", "OUTPUT": "{w}/project.gpkg"},
     r"is a GeoPackage holding 2 tables .*Choose another file\."),
], ids=["vectorise", "segment"])
def test_a_geopackage_of_several_tables_is_not_replaced_whole(sarlulc_provider, workspace, lulc_model, algorithm,
                                                              parameters, message):
    _geopackage_with(workspace / "project.gpkg", ["roads", "rivers"])
    parameters = {key: _resolved(value, workspace) for key, value in parameters.items()}
    if algorithm == "sarlulc:segment":
        parameters["MODEL"] = lulc_model
    before = digest(workspace)
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(algorithm, parameters)
    assert digest(workspace) == before


def test_a_layer_destination_adds_a_table_to_a_project_geopackage(sarlulc_provider, workspace):
    gpkg = _geopackage_with(workspace / "project.gpkg", ["roads", "rivers"])
    processing.run("sarlulc:vectorise", {"INPUT": str(workspace / "classes.tif"),
                                          "OUTPUT": f"ogr:dbname='{gpkg}' table=\"classes\" (geom)"})
    source = ogr.Open(gpkg)
    names = {source.GetLayer(i).GetName() for i in range(source.GetLayerCount())}
    source = None
    assert {"roads", "rivers", "classes"} <= names

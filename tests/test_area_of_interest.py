"""Mapping part of a raster: an extent (the visible map, typed coordinates) and/or polygons. The work is
bounded to the area's window (blocks outside never read) and the outputs are clipped to it; pixels of
the window outside the polygons are nodata."""

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import QgsProcessingException

from sarlulc.rasters.area import AreaOfInterest, parse_extent
from sarlulc.inference.engine import RunOptions, detect_water, segment
from sarlulc.errors import OptionError
from factories import write_sar_raster

EPSG = 32654
ORIGIN = (500000.0, 4000000.0)


def write_polygons(path, rings, epsg=4326, geometry=ogr.wkbPolygon, layer_name="area"):
    """Polygons given in UTM 54N metres, stored in ``epsg`` (the raster's CRS or another)."""
    utm, target = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(EPSG)
    target.ImportFromEPSG(epsg)
    for srs in (utm, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(utm, target)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer(layer_name, target, geometry)
    for points in rings:
        if geometry == ogr.wkbPolygon:
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for x, y in points + points[:1]:
                ring.AddPoint_2D(x, y)
            shape = ogr.Geometry(ogr.wkbPolygon)
            shape.AddGeometry(ring)
        else:
            shape = ogr.Geometry(ogr.wkbPoint)
            shape.AddPoint_2D(*points[0])
        shape.Transform(transform)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(shape)
        layer.CreateFeature(feature)
    source = None
    return str(path)


def square(x0, y0, size):
    """A square in metres from the raster's top-left corner (x right, y down)."""
    left, top = ORIGIN[0] + x0, ORIGIN[1] - y0
    return [(left, top), (left + size, top), (left + size, top - size), (left, top - size)]


@pytest.fixture
def scene(tmp_path):
    return write_sar_raster(tmp_path / "scene.tif", 320, 240, epsg=EPSG, origin=ORIGIN)


def read(path):
    dataset = gdal.Open(str(path))
    return dataset, dataset.ReadAsArray()


def test_an_extent_maps_its_window_only_with_the_classes_of_a_whole_run(scene, lulc_model, tmp_path):
    whole = tmp_path / "whole.tif"
    segment(scene, whole, lulc_model)
    extent = (ORIGIN[0] + 505.0, ORIGIN[1] - 1_795.0, ORIGIN[0] + 1_995.0, ORIGIN[1] - 405.0)
    lines = []
    part = tmp_path / "part.tif"
    report = segment(scene, part, lulc_model, options=RunOptions(area=AreaOfInterest(extent=extent)), log=lines.append)
    dataset, classes = read(part)
    # Whole pixels holding the extent: columns 50..199, rows 40..179.
    assert (dataset.RasterXSize, dataset.RasterYSize) == (150, 140)
    assert dataset.GetGeoTransform() == (ORIGIN[0] + 500.0, 10.0, 0.0, ORIGIN[1] - 400.0, 0.0, -10.0)
    assert dataset.GetSpatialRef().GetAuthorityCode(None) == str(EPSG)
    np.testing.assert_array_equal(classes, read(whole)[1][40:180, 50:200])  # a per-pixel model: same classes
    assert report.valid_pixels == 150 * 140
    assert any("window of 150 x 140 px at column 50, row 40" in line for line in lines)


def test_polygons_in_another_crs_clip_the_outputs_and_mask_outside_them(scene, lulc_model, tmp_path):
    # Two squares of 400 m (40 x 40 px), stored in degrees; the window is their bounding box.
    polygons = write_polygons(tmp_path / "aoi.gpkg", [square(200, 300, 400), square(1000, 1400, 400)])
    classes_path, confidence_path = tmp_path / "c.tif", tmp_path / "conf.tif"
    report = segment(scene, classes_path, lulc_model, confidence_path=confidence_path,
                     options=RunOptions(area=AreaOfInterest(polygons=polygons)))
    dataset, classes = read(classes_path)
    assert abs(dataset.RasterXSize - 120) <= 1 and abs(dataset.RasterYSize - 150) <= 1
    inside = classes != 0
    # Each square is 1600 pixels, give or take the reprojected edges.
    assert abs(int(inside.sum()) - 3200) < 120 and report.valid_pixels == int(inside.sum())
    assert not inside[:40, 80:].any() and not inside[110:, :40].any()  # between the squares: nodata
    confidence = read(confidence_path)[1]
    np.testing.assert_array_equal(confidence == -1, ~inside)


def test_polygons_on_a_coarser_input_read_on_the_model_grid_and_the_threshold_method(lulc_model, water_model,
                                                                                 tmp_path):
    scene = write_sar_raster(tmp_path / "s20.tif", 160, 120, epsg=EPSG, origin=ORIGIN, pixel_size=20.0)
    polygons = write_polygons(tmp_path / "aoi.gpkg", [square(400, 400, 1000)], epsg=EPSG)
    for method in ("model", "threshold"):
        out = tmp_path / f"{method}.tif"
        detect_water(scene, out, water_model, options=RunOptions(
            method=method, area=AreaOfInterest(polygons=polygons)))
        dataset, water = read(out)
        assert (dataset.RasterXSize, dataset.RasterYSize) == (50, 50)  # the input's 20 m grid, clipped
        assert dataset.GetGeoTransform()[1] == 20.0
        assert (water != 255).sum() == 2500


@pytest.mark.parametrize("area, message", [
    (AreaOfInterest(extent=(0.0, 0.0, 10.0, 10.0)), "does not overlap the input raster"),
    (AreaOfInterest(extent=(ORIGIN[0] + 10, ORIGIN[1] - 10, ORIGIN[0], ORIGIN[1])), "empty or inverted"),
])
def test_an_area_off_the_raster_is_refused_before_any_output(scene, lulc_model, tmp_path, area, message):
    with pytest.raises(OptionError, match=message):
        segment(scene, tmp_path / "c.tif", lulc_model, options=RunOptions(area=area))
    assert list(tmp_path.iterdir()) == [tmp_path / "scene.tif"]


def test_bad_polygon_layers_are_refused(scene, lulc_model, tmp_path):
    far = write_polygons(tmp_path / "far.gpkg", [[(0, 0), (10, 0), (10, 10)]], epsg=EPSG)
    points = write_polygons(tmp_path / "points.gpkg", [[(ORIGIN[0] + 50, ORIGIN[1] - 50)]], geometry=ogr.wkbPoint)
    empty = write_polygons(tmp_path / "empty.gpkg", [])
    for polygons, message in ((far, "does not overlap"), (points, "point geometries, not polygons"),
                              (empty, "holds no polygon")):
        with pytest.raises(OptionError, match=message):
            segment(scene, tmp_path / "c.tif", lulc_model, options=RunOptions(area=AreaOfInterest(polygons=polygons)))
    assert not (tmp_path / "c.tif").exists()


def test_the_command_line_form_of_an_extent():
    assert parse_extent("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(OptionError, match="four numbers"):
        parse_extent("1,2,3")


def test_the_algorithms_take_an_extent_in_another_crs_and_a_selection_of_polygons(sarlulc_provider, scene,
                                                                                    lulc_model, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeatureSourceDefinition, QgsProject, QgsVectorLayer

    # The extent as the dialog gives the map canvas's: in the project's CRS (degrees here).
    polygons = write_polygons(tmp_path / "aoi.gpkg", [square(200, 300, 400), square(1000, 1400, 400)])
    layer = QgsVectorLayer(polygons, "aoi", "ogr")
    QgsProject.instance().addMapLayer(layer)
    try:
        layer.selectByIds([1])  # the first square only
        result = processing.run("sarlulc:segment", {
            "INPUT": scene, "MODEL": lulc_model, "OUTPUT": str(tmp_path / "sel.tif"),
            "MASK": QgsProcessingFeatureSourceDefinition(layer.id(), True)})
        dataset, classes = read(result["OUTPUT"])
        assert abs(dataset.RasterXSize - 40) <= 1 and abs(int((classes != 0).sum()) - 1600) < 60
        bounds = layer.extent()
        extent = f"{bounds.xMinimum()},{bounds.xMaximum()},{bounds.yMinimum()},{bounds.yMaximum()} [EPSG:4326]"
        result = processing.run("sarlulc:waterdetect", {"INPUT": scene, "EXTENT": extent,
                                                        "OUTPUT": str(tmp_path / "w.tif"), "METHOD": "threshold"})
        dataset, _ = read(result["OUTPUT"])
        assert abs(dataset.RasterXSize - 120) <= 2 and abs(dataset.RasterYSize - 150) <= 2
        with pytest.raises(QgsProcessingException, match="does not overlap the input raster"):
            processing.run("sarlulc:segment", {"INPUT": scene, "MODEL": lulc_model, "OUTPUT": str(tmp_path / "x.tif"),
                                               "EXTENT": "10,11,10,11 [EPSG:4326]"})
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_the_command_line_maps_an_extent_or_polygons(scene, lulc_model, tmp_path, capsys):
    from sarlulc.inference.__main__ import main

    out = tmp_path / "c.tif"
    extent = f"{ORIGIN[0] + 500},{ORIGIN[1] - 1800},{ORIGIN[0] + 2000},{ORIGIN[1] - 400}"
    assert main(["segment", scene, str(out), "--model", lulc_model, "--extent", extent]) == 0
    assert (gdal.Open(str(out)).RasterXSize, gdal.Open(str(out)).RasterYSize) == (150, 140)
    polygons = write_polygons(tmp_path / "aoi.gpkg", [square(200, 300, 400)], layer_name="fields")
    assert main(["water", scene, str(tmp_path / "w.tif"), "--method", "threshold",
                 "--mask", f"{polygons}|layername=fields"]) == 0
    assert abs(gdal.Open(str(tmp_path / "w.tif")).RasterXSize - 40) <= 1
    assert main(["segment", scene, str(tmp_path / "x.tif"), "--model", lulc_model, "--extent", "1,2,3"]) == 2
    assert "four numbers" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists()


def test_a_float32_alpha_band_masks_the_frame_of_a_warped_scene(lulc_model, water_model, tmp_path):
    """gdalwarp -dstalpha on Float32 data writes a Float32 alpha band, which GDAL does not take as a mask:
    its transparent frame (values 0, 0 dB) was classified."""
    source = write_sar_raster(tmp_path / "source.tif", 200, 200, epsg=EPSG, origin=ORIGIN, nodata=None)
    warped = tmp_path / "warped.tif"
    gdal.Warp(str(warped), source, dstSRS="EPSG:32653", dstAlpha=True)
    alpha = read(warped)[1][1]
    assert 0.05 < (alpha == 0).mean() < 0.3
    lines = []
    report = segment(str(warped), tmp_path / "c.tif", lulc_model, log=lines.append)
    classes = read(tmp_path / "c.tif")[1]
    np.testing.assert_array_equal(classes == 0, alpha == 0)
    assert report.valid_pixels == int((alpha != 0).sum())
    assert any("Alpha band 2: its transparent pixels" in line for line in lines)
    detect_water(str(warped), tmp_path / "w.tif", water_model, options=RunOptions(method="threshold"))
    np.testing.assert_array_equal(read(tmp_path / "w.tif")[1] == 255, alpha == 0)

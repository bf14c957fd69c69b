"""The plugin is a good citizen in someone else's QGIS: GDAL raises Python exceptions only while one of
its algorithms runs (the core relies on them), and is left as it was found: other plugins in the same
QGIS process keep GDAL's default behaviour."""

import subprocess
import sys
import textwrap

import pytest
from osgeo import gdal, ogr
from qgis.core import QgsProcessingException

from factories import write_sar_raster


@pytest.fixture
def gdal_defaults():
    """GDAL as QGIS leaves it for plugins: no exceptions (the tests' factories turned them on)."""
    found = gdal.GetUseExceptions(), ogr.GetUseExceptions()
    if found[1]:
        ogr.DontUseExceptions()
    if found[0]:
        gdal.DontUseExceptions()
    yield
    if found[0]:
        gdal.UseExceptions()
    if found[1]:
        ogr.UseExceptions()


def test_importing_the_plugin_leaves_gdal_as_it_was(plugin_parent):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(plugin_parent)!r})
        from osgeo import gdal, ogr
        import sar_lulc.processing_provider.provider, sar_lulc.sarlulc.fieldwork.statistics, sar_lulc.sarlulc.evaluation
        import sar_lulc.sarlulc.inference.engine, sar_lulc.sarlulc.calibrate, sar_lulc.sarlulc.fieldwork.generalise
        print(gdal.GetUseExceptions(), ogr.GetUseExceptions())
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "0"]


def test_runs_and_refusals_leave_gdal_as_they_found_it(sarlulc_provider, lulc_model, tmp_path, gdal_defaults):
    import processing

    scene = write_sar_raster(tmp_path / "scene.tif", 96, 96)
    classes = processing.run("sarlulc:segment", {"INPUT": scene, "MODEL": lulc_model,
                                                 "OUTPUT": str(tmp_path / "classes.tif")})["OUTPUT"]
    assert (gdal.GetUseExceptions(), ogr.GetUseExceptions()) == (0, 0)
    polygons = processing.run("sarlulc:vectorise", {"INPUT": classes, "OUTPUT": str(tmp_path / "p.gpkg")})
    assert polygons["POLYGONS"] > 0
    areas = processing.run("sarlulc:areastats", {"INPUT": classes, "OUTPUT": str(tmp_path / "a.gpkg")})
    assert areas["VALID_PIXELS"] > 0
    assert (gdal.GetUseExceptions(), ogr.GetUseExceptions()) == (0, 0)
    # The core's refusals still reach the user as messages, not as GDAL's silent None.
    (tmp_path / "broken.tif").write_bytes(b"not a raster")
    with pytest.raises(QgsProcessingException, match="broken.tif"):
        processing.run("sarlulc:segment", {"INPUT": str(tmp_path / "broken.tif"), "MODEL": lulc_model,
                                           "OUTPUT": str(tmp_path / "c2.tif")})
    assert (gdal.GetUseExceptions(), ogr.GetUseExceptions()) == (0, 0)
    assert gdal.Open(str(tmp_path / "missing.tif")) is None  # GDAL's default: None, no exception

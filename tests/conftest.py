"""Shared fixtures of the plugin tests: the plugin imported as ``sar_lulc``, its provider registered.

QGIS installs the plugin folder under the name ``sar_lulc``; the tests import it the same way
(through a symlink in a temporary folder), so the plugin's relative imports are exercised.
"""

import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN_NAME = "sar_lulc"
_PLUGIN_PARENT = Path(tempfile.mkdtemp(prefix="sarlulc-plugin-path-"))
(_PLUGIN_PARENT / PLUGIN_NAME).symlink_to(REPO, target_is_directory=True)
sys.path.insert(0, str(_PLUGIN_PARENT))
# Optimised model graphs are cached per machine (sarlulc/inference/session.py): the tests keep
# theirs out of the user's cache, in a folder removed at the end.
os.environ["SAR_LULC_CACHE"] = str(_PLUGIN_PARENT / "onnx-cache")
_provider = None


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_PLUGIN_PARENT, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def release_failed_test_before_qgis_exits(qgis_app):
    """Drop the last failed test's traceback before pytest-qgis calls exitQgis.

    pytest keeps it in sys.last_traceback for post-mortem debugging; its frames hold GDAL and
    QGIS objects, which would otherwise be freed at interpreter exit, after exitQgis destroyed
    GDAL's driver manager: a segmentation fault after the test report. Depending on qgis_app
    makes this teardown run before QGIS's.
    """
    yield
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)
    gc.collect()


def _registered_provider():
    from qgis.core import QgsApplication

    from sar_lulc.processing_provider.provider import SarLulcProvider

    global _provider
    registry = QgsApplication.processingRegistry()
    if registry.providerById("sarlulc") is None:
        _provider = SarLulcProvider()  # the registry does not keep the Python object alive
        assert registry.addProvider(_provider)
    return registry.providerById("sarlulc")


@pytest.fixture(scope="session")
def plugin_parent():
    """The folder from which the plugin imports as ``sar_lulc``: what a subprocess puts on its sys.path."""
    return _PLUGIN_PARENT


@pytest.fixture
def sarlulc_provider(qgis_processing):
    """The SAR LULC provider in the initialised Processing registry (registered once, on first use)."""
    return _registered_provider()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def lulc_model(model_dir):
    """A small LULC model (pixel rule, 64 px tiles) with the project's 9-class legend."""
    from factories import write_pixel_lulc_model

    return write_pixel_lulc_model(model_dir / "lulc.onnx", tile_size=64, tile_overlap=16)


@pytest.fixture(scope="session")
def water_model(model_dir):
    """A small water model: pixels darker than -18 dB are water."""
    from factories import write_pixel_water_model

    return write_pixel_water_model(model_dir / "water.onnx", tile_size=64, tile_overlap=16)


@pytest.fixture
def sar_raster(tmp_path):
    """A 150 x 110 px HH dB scene in UTM 54N (not a multiple of the tile size), nodata in one corner."""
    from factories import write_sar_raster

    return write_sar_raster(tmp_path / "scene_hh_db.tif", 150, 110, nodata_box=(0, 0, 20, 15))


@pytest.fixture(scope="session")
def segmented_scene(qgis_processing, tmp_path_factory, lulc_model, water_model):
    """Real plugin outputs to do field work on: a 240 x 200 px scene (UTM 54N, 10 m, nodata in one corner)
    run through sarlulc:segment and sarlulc:waterdetect. Returns a dict of paths: sar, classes, water."""
    import processing

    from factories import write_sar_raster

    _registered_provider()
    folder = tmp_path_factory.mktemp("segmented_scene")
    sar = write_sar_raster(folder / "scene_hh_db.tif", 240, 200, nodata_box=(0, 0, 30, 25))
    classes, water = folder / "classes.tif", folder / "water.tif"
    processing.run("sarlulc:segment", {"INPUT": sar, "MODEL": lulc_model, "OUTPUT": str(classes)})
    processing.run("sarlulc:waterdetect", {"INPUT": sar, "MODEL": water_model, "OUTPUT": str(water)})
    return {"sar": sar, "classes": str(classes), "water": str(water)}

"""The plugin ZIP installed into a fresh QGIS profile and run headless through qgis_process.

This is the route of `make package` + "Install from ZIP" and of `qgis_process run` users: a
real QGIS process loads the plugin from the profile, with onnxruntime in the profile's
python/dependencies/sar_lulc/pythonX.Y/ folder, where the dependency dialog installs it.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from factories import expected_pixel_classes

REPO = Path(__file__).resolve().parent.parent
QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")

pytestmark = pytest.mark.skipif(not QGIS_PROCESS.is_file(),
                                reason=f"{QGIS_PROCESS} is absent (Debian's qgis package provides it)")


@pytest.fixture
def plugin_zip(tmp_path):
    output = tmp_path / "sar_lulc.zip"
    subprocess.run([sys.executable, str(REPO / "tools" / "package.py"), "--output", str(output),
                    "--allow-missing-models"], check=True, capture_output=True)
    return output


def test_zip_holds_only_the_plugin_under_one_top_folder(plugin_zip):
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert all(name.startswith("sar_lulc/") for name in names)
    for required in ("metadata.txt", "__init__.py", "plugin.py", "dependencies.py", "requirements-runtime.txt",
                     "processing_provider/provider.py", "ui/icon.svg", "sarlulc/inference/engine.py",
                     "sarlulc/fieldwork/statistics.py",
                     "model/CONTRACT.md", "sarlulc/products.py", "model/MODEL_CARD.md", "LICENSE",
                     "demo/demo_scene_hh_db.tif", "demo/demo_scene_label.tif", "example_models/land_cover_and_water.model3",
                     "example_models/land_cover_accuracy.model3", "sarlulc/training/finetune.py",
                     "sarlulc/training/remap_tables/jaxa-hrlulc-v23.12.csv"):
        assert f"sar_lulc/{required}" in names
    for excluded in ("tests/", "tools/", ".venv/", "ext-libs/", ".git/", "__pycache__", "sarlulc/simulate/"):
        assert not any(excluded in name for name in names), excluded


def test_zip_holds_every_module_the_algorithms_import(plugin_zip):
    """Also those imported inside a function (only when an algorithm runs): a module missing from the ZIP
    fails only then, in the user's QGIS."""
    import ast

    names = set(zipfile.ZipFile(plugin_zip).namelist())
    imported = set()
    for source in list((REPO / "processing_provider").rglob("*.py")) + [REPO / "plugin.py"]:
        package = source.parent.relative_to(REPO).parts
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level:
                module = ".".join(package[:len(package) + 1 - node.level] + (node.module,))
                if module.split(".")[0] == "sarlulc":
                    imported.add(module)
    assert "sarlulc.inference.engine" in imported
    for module in sorted(imported):
        path = "sar_lulc/" + module.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, module


@pytest.fixture
def qgis_env(tmp_path, plugin_zip):
    """A fresh QGIS profile with the ZIP installed and enabled, and onnxruntime in the profile's
    dependencies folder, where the dependency dialog installs it."""
    import onnxruntime

    config = tmp_path / "qgis-config"
    profile = config / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    dependencies = profile / "python" / "dependencies" / "sar_lulc" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    dependencies.mkdir(parents=True)
    (dependencies / "onnxruntime").symlink_to(Path(onnxruntime.__file__).parent)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    subprocess.run([str(QGIS_PROCESS), "plugins", "enable", "sar_lulc"], env=env, check=True, capture_output=True)
    return env


def qgis_process(env, *arguments):
    return subprocess.run([str(QGIS_PROCESS), *arguments], env=env, capture_output=True, text=True, timeout=300)


def test_qgis_process_runs_segment_from_the_installed_zip(qgis_env, lulc_model, sar_raster, tmp_path):
    output = tmp_path / "classes.tif"
    run = qgis_process(qgis_env, "--json", "run", "sarlulc:segment", "--",
                       f"INPUT={sar_raster}", f"MODEL={lulc_model}", f"OUTPUT={output}", "DEVICE=cpu")
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(run.stdout[run.stdout.index("{"):])["results"]
    assert results["OUTPUT"] == str(output)
    source = gdal.Open(sar_raster)
    db, nodata = source.GetRasterBand(1).ReadAsArray(), source.GetRasterBand(1).GetNoDataValue()
    valid = db != nodata
    classes = gdal.Open(str(output)).ReadAsArray()
    np.testing.assert_array_equal(classes[valid], expected_pixel_classes(db[valid]))
    assert "paletteEntry" in output.with_suffix(".qml").read_text()


def test_qgis_process_reports_a_bad_band_and_fails(qgis_env, lulc_model, sar_raster, tmp_path):
    run = qgis_process(qgis_env, "run", "sarlulc:segment", "--", f"INPUT={sar_raster}", f"MODEL={lulc_model}",
                       "BAND=3", f"OUTPUT={tmp_path / 'classes.tif'}")
    assert run.returncode != 0
    assert "Band 3 does not exist" in run.stdout + run.stderr
    assert not (tmp_path / "classes.tif").exists()

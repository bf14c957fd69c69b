"""The plugin in the real QGIS desktop, as a GIS analyst meets it: installed from the ZIP into a fresh
profile, under a virtual display (Xvfb).

One QGIS session (tests/gui_session.py) walks through the steps and records what it finds; the
tests below check each step. Screenshots of every step are kept in the session's folder under
pytest's temporary directory (gui-session*/), to look at when a test fails.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factories import write_pixel_lulc_model, write_pixel_water_model, write_sar_raster

REPO = Path(__file__).resolve().parent.parent
QGIS = Path("/usr/bin/qgis")
XVFB_RUN = shutil.which("xvfb-run")
WATCHDOG_S = 360
GUI_CLASSES = [(1, "Water", "#1f4e9c"), (2, "Built-up", "#e31a1c"), (5, "Grassland", "#b2df8a")]

pytestmark = [
    pytest.mark.skipif(not QGIS.is_file(), reason=f"the QGIS desktop ({QGIS}) is not installed"),
    pytest.mark.skipif(XVFB_RUN is None, reason="no display server can be started: Xvfb is not installed "
                                                "(apt-get install xvfb; tools/bootstrap.sh installs it)"),
]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Run the QGIS session once; its results.json, with the session folder."""
    import onnxruntime

    folder = tmp_path_factory.mktemp("gui-session")
    plugin_zip = folder / "sar_lulc.zip"
    # The bundled models stay out (the session runs small factory models): 30 MB less to pack and unpack.
    subprocess.run([sys.executable, str(REPO / "tools" / "package.py"), "--output", str(plugin_zip),
                    "--allow-missing-models"], check=True, capture_output=True)
    data = folder / "data"
    data.mkdir()
    config = {
        "out": str(folder / "out"),
        "zip": str(plugin_zip),
        "scene": str(data / "scene_hh_db.tif"),
        "demo_scene": str(REPO / "demo" / "demo_scene_hh_db.tif"),
        # Three classes: blending nine would make the 2048 px run three times longer.
        "lulc_model": write_pixel_lulc_model(data / "lulc.onnx", tile_size=256, tile_overlap=64,
                                             classes=GUI_CLASSES),
        "water_model": write_pixel_water_model(data / "water.onnx", tile_size=256, tile_overlap=64),
        "onnxruntime_package": str(Path(onnxruntime.__file__).parent),
        "watchdog_s": WATCHDOG_S,
    }
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "VIRTUAL_ENV", "QT_QPA_PLATFORM", "QGIS_CUSTOM_CONFIG_PATH")}
    environment.update(SARLULC_GUI_CONFIG=json.dumps(config), QT_QPA_PLATFORM="xcb")
    command = [XVFB_RUN, "-a", "-s", "-screen 0 1600x1000x24", str(QGIS), "--nologo", "--noversioncheck",
               "--profiles-path", str(folder / "profiles"), "--code", str(REPO / "tests" / "gui_session.py")]
    qgis = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # While QGIS starts: 2048 px with 256 px tiles and 64 px overlap, the bundled models' tiling,
    # where counting blocks made the bar sit at 0-25 % for most of the run.
    write_sar_raster(config["scene"], 2048, 2048)
    Path(config["scene"] + ".ready").touch()
    try:
        output, _ = qgis.communicate(timeout=WATCHDOG_S + 60)
    except subprocess.TimeoutExpired:
        qgis.kill()
        output, _ = qgis.communicate()
    results_file = folder / "out" / "results.json"
    if not results_file.is_file():
        pytest.fail(f"QGIS wrote no results (exit {qgis.returncode}): {output[-3000:]}")
    results = json.loads(results_file.read_text())
    results["folder"] = folder
    return results


def step(session, name):
    assert name in session["steps"], session["errors"]
    return session["steps"][name]


def test_session_completed_every_step(session):
    assert session.get("finished") and not session["errors"], session["errors"]
    for shot in ("01_dependency_prompt", "04_plugins_menu", "05_segment_dialog", "06_results", "07_second_dialog",
                 "10_model_designer", "12_areastats", "13_vectorise", "14_area_of_interest", "15_copied_models"):
        assert (session["folder"] / "out" / f"{shot}.png").stat().st_size > 10_000, shot


def test_installed_from_the_zip_into_the_fresh_profile(session):
    install = step(session, "install")
    assert install["active"]
    assert install["plugin_dir"].startswith(str(session["folder"] / "profiles"))


def test_missing_dependencies_prompt_with_an_install_button_that_uses_qgis_python(session):
    prompt, dialog = step(session, "prompt"), step(session, "dialog")
    assert prompt["text"] == "ONNX Runtime, which the SAR LULC algorithms need, is not installed."
    assert prompt["button"] == "Install"
    # QGIS's Python, not the first python3 on PATH that QGIS reports as sys.executable.
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert Path(dialog["python"]).resolve() == Path(f"/usr/bin/python{version}").resolve(), session["sys_executable"]
    assert f"QGIS's Python: {dialog['python']}" in dialog["python_label"]
    assert dialog["target"] == str(session["folder"] / "profiles" / "profiles" / "default" / "python" / "dependencies"
                                   / "sar_lulc" / f"python{version}")
    assert "onnxruntime" in dialog["log"] and "works in QGIS's Python" in dialog["log"], dialog["log"]
    assert dialog["status_after"].startswith("onnxruntime ") and "runs on: CPU" in dialog["status_after"]
    assert "ExecutionProvider" not in dialog["status_after"]
    # In the dialog the status does not send the user to the menu that opened it.
    assert dialog["status_before"].startswith("Missing:") and "menu" not in dialog["status_before"]
    assert prompt["after_install"] is None  # the prompt went away


def test_the_menu_sits_under_plugins_with_a_readable_title(session):
    menu = step(session, "menu")
    assert "SAR LULC" not in menu["top_level"]
    assert "SAR LULC" in menu["plugins_menu"]
    assert menu["entry_width"] > menu["title_width"]
    assert menu["submenu_visible"]
    assert menu["submenu"] == ["SAR LULC Segment…", "Water Detect…", "SAR LULC Segment Tiles…",
                               "Calibrate ALOS-2 DN to Backscatter…", "Evaluate Against Reference…",
                               "Class Area Statistics…", "Vectorise Classes…", "Field Map…", "Field Package…",
                               "Train / fine-tune model…", "Import published weights…",
                               "Copy example models to my models…", "Install dependencies…"]


def test_the_dialog_proposes_the_scene_fits_and_shows_steady_progress(session):
    dialog = step(session, "segment_dialog")
    assert dialog["input"] == dialog["scene_id"]
    assert not dialog["horizontal_scroll"], dialog["size"]
    assert dialog["finished"]["ok"], dialog.get("log")
    values = [value for _, value in dialog["progress"]]
    assert values == sorted(values) and values[-1] == 100.0
    assert len(values) >= 30  # 143 tiles in batches of 4, blocks read and written
    assert max(b - a for a, b in zip(values, values[1:])) <= 5.0  # a batch of 4 tiles is 2.5 %
    bar = [value for _, value in dialog["bar"]]
    # What the user sees follows; the bar is sampled by a timer, so its last sample may precede the
    # final 100 % (the outputs and their styles are committed between 95 and 100 %).
    assert bar == sorted(bar) and bar[-1] >= 90


def test_results_load_named_after_the_scene_with_the_class_map_on_top(session):
    layers = step(session, "segment_dialog")["layers"]
    assert layers == [["scene_hh_db - land cover", True], ["scene_hh_db - land-cover confidence", False],
                      ["scene_hh_db", True]]


def test_after_a_run_the_dialog_still_proposes_the_scene_not_the_result(session):
    second = step(session, "second_dialog")
    assert second["active"] == "scene_hh_db - land cover"
    assert second["input"] == step(session, "segment_dialog")["scene_id"]


def test_batch_headers_and_the_modeler_step_dialog_are_short(session):
    found = step(session, "batch_and_step")
    assert "SAR raster (HH backscatter)" in found["batch_headers"]
    assert max(len(header) for header in found["batch_headers"]) <= 32
    assert found["step_labels"] and max(found["step_labels"].values()) <= found["step_viewport"], found


def test_the_example_model_validates_and_runs_without_ogr_warnings(session):
    model = step(session, "example_model")
    assert (model["valid"], model["issues"]) == (True, [])
    assert model["outputs"] == ["segment:classes", "waterdetect:water"]
    assert model["ogr_messages"] == []
    assert model["layers"][:2] == ["demo_scene_hh_db - water", "demo_scene_hh_db - land cover"] or \
        model["layers"][:2] == ["demo_scene_hh_db - land cover", "demo_scene_hh_db - water"]


def test_results_keep_their_crs_after_the_worker_thread_ends(session):
    found = step(session, "result_crs")
    for name in ("scene_hh_db - land cover", "scene_hh_db - land-cover confidence"):
        assert found["layers"][name]["authid"] == "EPSG:32654" and found["layers"][name]["wkt"] > 400, found
    assert found["polygons_srs"] and 0 not in found["polygons_srs"]


def test_field_work_dialogs_load_their_temporary_results_without_red_errors(session):
    for name, layer in (("areastats_dialog", "Class areas"), ("vectorise_dialog", "Class polygons")):
        found = step(session, name)
        assert found["finished"]["ok"], found["log"]
        assert layer in found["new_layers"], found
        assert "not correctly generated" not in found["log"] and "Could not apply" not in found["log"], found["log"]


def test_water_detect_maps_only_the_extent_given(session):
    found = step(session, "area_of_interest")
    assert found["finished"]["ok"], found["log"]
    width, height = found["extent"]
    scene_width, scene_height = found["scene_extent"]
    assert abs(width - scene_width / 4) <= 20 and abs(height - scene_height / 4) <= 20, found
    assert "Area of interest" in found["log"]


def test_example_models_are_copied_into_the_users_models(session):
    found = step(session, "copy_example_models")
    assert found["models"] == ["Land cover and its accuracy against a reference", "Land cover and water from SAR"]
    assert "Example models in" in found["message"] and "Edit Model" in found["message"]


def test_installing_and_using_the_plugin_logs_no_warning_but_the_dependency_prompt(session):
    """QGIS's log over the whole session: the ZIP installs, every step runs, and the only warning is the
    prompt to install ONNX Runtime (level 3 is QGIS's 'success', the copied example models)."""
    warnings = [m for m in session["log_warnings"] if m[1] != 3 and "ONNX Runtime" not in m[2]]
    assert warnings == []

"""What tests/test_gui.py has the real QGIS desktop do, as a user would, step by step.

QGIS runs this file with ``qgis --code`` (under Xvfb) in a fresh profile. It installs the plugin
from the ZIP with QGIS's own "Install from ZIP" code, then walks through the dependency prompt,
the menu, the Segment dialog, a run, the example model, and records what it finds in
``results.json`` with a screenshot of each step in the output folder. Every step is guarded: an
error is recorded and the session goes on, and a watchdog quits QGIS if a step hangs.

The configuration (paths) comes as JSON in the environment variable SARLULC_GUI_CONFIG.
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt.QtCore import QThreadPool, QTimer
from qgis.PyQt.QtWidgets import QApplication, QLabel, QProgressBar, QPushButton, QScrollArea, QTextEdit
from qgis.utils import iface

CONFIG = json.loads(os.environ["SARLULC_GUI_CONFIG"])
OUT = Path(CONFIG["out"])
RESULTS = {"steps": {}, "errors": {}, "sys_executable": sys.executable}
LOG_MESSAGES = []
QgsApplication.messageLog().messageReceived.connect(
    lambda message, tag, level: LOG_MESSAGES.append([tag, int(level), message]))


def screenshot(name):
    """The whole virtual screen, popups and dialogs included."""
    QApplication.processEvents()
    QApplication.primaryScreen().grabWindow(0).save(str(OUT / f"{name}.png"))


def save_results():
    (OUT / "results.json").write_text(json.dumps(RESULTS, indent=1, default=str))


def guarded(step):
    """Run ``step``; on an error, record it, close a dialog it left open, and go on with the next step
    (a step run inside a modal dialog goes on when its caller's dialog closes)."""
    def run(*args):
        try:
            step(*args)
        except Exception:  # noqa: BLE001 (every error is recorded for the test to report)
            RESULTS["errors"][step.__name__] = traceback.format_exc()
            save_results()
            modal = QApplication.activeModalWidget()
            if modal is not None:
                modal.reject()
            else:
                next_step()
    run.__name__ = step.__name__
    return run


def wait_for(condition, then, timeout_s, poll_ms=100, on_poll=None):
    """Call ``then(True)`` once ``condition()`` holds, or ``then(False)`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s

    def poll():
        if on_poll:
            on_poll()
        if condition():
            then(True)
        elif time.monotonic() > deadline:
            then(False)
        else:
            QTimer.singleShot(poll_ms, poll)
    QTimer.singleShot(poll_ms, poll)


def plugin_module(name):
    return sys.modules[f"sar_lulc.{name}"]


# ---------------------------------------------------------------------------------------- steps

@guarded
def install_from_zip():
    import pyplugin_installer

    pyplugin_installer.instance().installFromZipFile(CONFIG["zip"])
    from qgis.utils import active_plugins

    RESULTS["steps"]["install"] = {"active": "sar_lulc" in active_plugins,
                                   "plugin_dir": str(Path(sys.modules["sar_lulc"].__file__).parent)}
    QTimer.singleShot(500, dependency_prompt)


@guarded
def dependency_prompt():
    """Dependencies missing in the fresh profile: a message bar with an Install button."""
    item = iface.messageBar().currentItem()
    button = item.findChild(QPushButton, "sarLulcInstallDependencies") if item is not None else None
    RESULTS["steps"]["prompt"] = {"text": item.text() if item is not None else None,
                                  "button": button.text() if button is not None else None}
    screenshot("01_dependency_prompt")
    save_results()
    QTimer.singleShot(500, dependency_dialog)  # runs inside the dialog's event loop
    button.click()  # opens the dialog (modal) and returns once it is closed
    item = iface.messageBar().currentItem()
    RESULTS["steps"]["prompt"]["after_install"] = item.text() if item is not None else None
    next_step()


@guarded
def dependency_dialog():
    """The dialog names QGIS's own Python; the installation is checked by importing in it."""
    dialog = QApplication.activeModalWidget()
    dependencies = plugin_module("dependencies")
    found = {"python": dialog.python, "python_label": dialog.python_label.text(),
             "status_before": dialog.status.text(), "target": str(dialog.target)}
    RESULTS["steps"]["dialog"] = found
    screenshot("02_dependency_dialog")
    # pip would download onnxruntime here; offline, the test's own build for this Python stands in
    # for it. The import check and the in-process import that follow are the dialog's own.
    dialog.target.mkdir(parents=True, exist_ok=True)
    (dialog.target / "onnxruntime").symlink_to(CONFIG["onnxruntime_package"], target_is_directory=True)
    dialog.steps = dependencies.install_steps(dialog.target, dialog.python)[1:]
    dialog.run_next_step()

    def finished(_ok):
        found["log"] = dialog.log.toPlainText()
        found["status_after"] = dialog.status.text()
        screenshot("03_dependency_installed")
        dialog.accept()
    wait_for(lambda: "Installed into" in dialog.log.toPlainText() or "failed" in dialog.log.toPlainText(),
             finished, timeout_s=60)


@guarded
def menu():
    """Plugins ▸ SAR LULC, readable, with every entry."""
    menu_bar = iface.mainWindow().menuBar()
    plugins_menu = iface.pluginMenu()
    entry = next(a for a in plugins_menu.actions() if a.text() == "SAR LULC")
    plugins_menu.popup(menu_bar.mapToGlobal(menu_bar.actionGeometry(plugins_menu.menuAction()).bottomLeft()))
    QApplication.processEvents()
    plugins_menu.setActiveAction(entry)
    submenu = entry.menu()
    submenu.popup(plugins_menu.mapToGlobal(plugins_menu.actionGeometry(entry).topRight()))
    QApplication.processEvents()
    screenshot("04_plugins_menu")
    RESULTS["steps"]["menu"] = {
        "top_level": [a.text() for a in menu_bar.actions()],
        "plugins_menu": [a.text() for a in plugins_menu.actions() if not a.isSeparator()],
        "entry_width": plugins_menu.actionGeometry(entry).width(),
        "title_width": plugins_menu.fontMetrics().horizontalAdvance(entry.text()),
        "submenu": [a.text() for a in submenu.actions() if not a.isSeparator()],
        "submenu_visible": submenu.isVisible()}
    submenu.hide()
    plugins_menu.hide()
    next_step()


def horizontal_scroll(widget):
    return any(area.horizontalScrollBar().isVisible() for area in widget.findChildren(QScrollArea))


def input_value(dialog):
    value = dialog.createProcessingParameters().get("INPUT")
    return value.id() if hasattr(value, "id") else value


@guarded
def segment_dialog():
    """The scene is loaded; the dialog opens on it, fits its default size, runs with a progress bar."""
    import processing

    ready = Path(CONFIG["scene"] + ".ready")  # the test writes the scene while QGIS starts
    if not ready.is_file():
        wait_for(ready.is_file, lambda ok: segment_dialog() if ok else RESULTS["errors"].update(
            segment_dialog="the test did not write the scene") or next_step(), timeout_s=120)
        return
    scene = iface.addRasterLayer(CONFIG["scene"], Path(CONFIG["scene"]).stem)
    dialog = processing.createAlgorithmDialog("sarlulc:segment")
    dialog.show()
    QApplication.processEvents()
    found = {"scene_id": scene.id(), "input": input_value(dialog), "size": [dialog.width(), dialog.height()],
             "horizontal_scroll": horizontal_scroll(dialog)}
    RESULTS["steps"]["segment_dialog"] = found
    screenshot("05_segment_dialog")
    dialog.setParameters({"MODEL": CONFIG["lulc_model"], "OUTPUT_CONFIDENCE": "TEMPORARY_OUTPUT"})
    reported, shown, started = [], [], time.monotonic()
    progress_bar = dialog.findChild(QProgressBar)

    def sample():
        if not done:  # once finished, the dialog resets its bar
            shown.append([round(time.monotonic() - started, 2), progress_bar.value()])

    done = {}
    dialog.algorithmFinished.connect(lambda ok, results: done.update(ok=ok, results=results))
    dialog.runButton().click()
    # What the algorithm reports to the dialog's bar (the bar itself, sampled, may skip values
    # whenever the interface thread is busy).
    dialog.feedback.progressChanged.connect(
        lambda percent: reported.append([round(time.monotonic() - started, 2), round(percent, 1)]))

    def finished(_ok):
        found.update(finished=done, progress=reported, bar=shown, seconds=round(time.monotonic() - started, 1))
        try:
            found["log"] = dialog.findChild(QTextEdit, "txtLog").toPlainText()
        except (AttributeError, RuntimeError):  # the dialog closed itself after the run
            pass
        root = QgsProject.instance().layerTreeRoot()
        found["layers"] = [[node.name(), node.itemVisibilityChecked()] for node in root.findLayers()]
        screenshot("06_results")
        try:
            dialog.close()
        except RuntimeError:
            pass
        next_step()
    wait_for(lambda: bool(done) and len(QgsProject.instance().mapLayers()) >= 3, finished, timeout_s=150,
             poll_ms=50, on_poll=sample)


@guarded
def second_dialog():
    """After a run the active layer is the result: the dialog still proposes the scene."""
    import processing

    root = QgsProject.instance().layerTreeRoot()
    result = root.findLayers()[0].layer()
    iface.setActiveLayer(result)
    dialog = processing.createAlgorithmDialog("sarlulc:waterdetect")
    dialog.show()
    QApplication.processEvents()
    RESULTS["steps"]["second_dialog"] = {"active": result.name(), "input": input_value(dialog)}
    screenshot("07_second_dialog")
    dialog.close()
    next_step()


@guarded
def batch_and_modeler_step():
    """The batch dialog's headers and the modeler's step dialog: short labels, no sideways scrolling."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.modeler.ModelerParametersDialog import ModelerParametersDialog
    from qgis.core import QgsProcessingModelAlgorithm
    from qgis.PyQt.QtWidgets import QTableWidget

    registry = QgsApplication.processingRegistry()
    batch = BatchAlgorithmDialog(registry.createAlgorithmById("sarlulc:segment"), iface.mainWindow())
    batch.show()
    QApplication.processEvents()
    table = batch.findChild(QTableWidget)
    headers = [table.horizontalHeaderItem(column).text() for column in range(table.columnCount())]
    screenshot("08_batch_dialog")
    batch.close()
    algorithm = registry.createAlgorithmById("sarlulc:segment")
    step = ModelerParametersDialog(algorithm, QgsProcessingModelAlgorithm())
    step.show()
    QApplication.processEvents()
    # QGIS opens this dialog small in a fresh profile (its widgets scroll whatever the labels); the
    # labels, on their own rows, must fit its width.
    descriptions = {d.description() for d in algorithm.parameterDefinitions()}
    viewport = max(area.viewport().width() for area in step.findChildren(QScrollArea))
    labels = {label.text(): label.sizeHint().width() for label in step.findChildren(QLabel)
              if label.text() in descriptions}
    RESULTS["steps"]["batch_and_step"] = {"batch_headers": headers, "step_labels": labels,
                                          "step_viewport": viewport, "step_size": [step.width(), step.height()]}
    screenshot("09_modeler_step_dialog")
    step.close()
    next_step()


@guarded
def example_model():
    """The shipped example validates and runs, styled, without OGR warnings."""
    import processing
    from processing.modeler.ModelerDialog import ModelerDialog

    model = QgsApplication.processingRegistry().algorithmById("sarlulc:Land cover and water from SAR")
    valid, issues = model.validate()
    designer = ModelerDialog.create(model.create())
    designer.show()
    QApplication.processEvents()
    screenshot("10_model_designer")
    designer.setDirty(False)
    designer.close()
    first_message = len(LOG_MESSAGES)
    results = processing.runAndLoadResults(model.id(), {
        "image": CONFIG["demo_scene"], "lulc_model": CONFIG["lulc_model"], "water_model": CONFIG["water_model"],
        "segment:classes": "TEMPORARY_OUTPUT", "waterdetect:water": "TEMPORARY_OUTPUT"})
    RESULTS["steps"]["example_model"] = {
        "valid": valid, "issues": issues, "outputs": sorted(k for k in results if ":" in k),
        "ogr_messages": [m for m in LOG_MESSAGES[first_message:] if m[0] == "OGR"],
        "layers": [node.name() for node in QgsProject.instance().layerTreeRoot().findLayers()]}
    iface.zoomToActiveLayer()
    QTimer.singleShot(1500, lambda: (screenshot("11_model_results"), next_step()))


def run_dialog(algorithm_id, parameters, step_name, shot, then):
    """Open ``algorithm_id``'s dialog, set ``parameters``, run it as a user does; ``then(found)`` once the
    run is over with what the dialog's log shows (red text included) and the project's layers."""
    import processing

    dialog = processing.createAlgorithmDialog(algorithm_id)
    dialog.show()
    dialog.setParameters(parameters)
    done = {}
    dialog.algorithmFinished.connect(lambda ok, results: done.update(ok=ok, results=results))
    dialog.runButton().click()
    before = set(QgsProject.instance().mapLayers())

    def finished(_ok):
        found = {"finished": done}
        try:
            found["log"] = dialog.findChild(QTextEdit, "txtLog").toPlainText()
        except (AttributeError, RuntimeError):
            found["log"] = ""
        found["new_layers"] = {layer.name(): layer.id() for layer_id, layer in QgsProject.instance().mapLayers().items()
                               if layer_id not in before}
        RESULTS["steps"][step_name] = found
        screenshot(shot)
        try:
            dialog.close()
        except RuntimeError:
            pass
        then(found)
    wait_for(lambda: bool(done), lambda ok: QTimer.singleShot(1000, lambda: finished(ok)), timeout_s=120)


@guarded
def result_crs():
    """Past the end of the worker thread that ran Segment (threads expire after 1 s here, 30 s in QGIS),
    each loaded result keeps its CRS, and so does what is written from it."""
    import sqlite3

    import processing

    found = {}
    for layer in QgsProject.instance().mapLayers().values():
        found[layer.name()] = {"authid": layer.crs().authid(), "wkt": len(layer.crs().toWkt())}
    classes = next(layer for layer in QgsProject.instance().mapLayers().values()
                   if layer.name() == "scene_hh_db - land cover")
    polygons = str(OUT / "polygons.gpkg")
    processing.run("native:pixelstopolygons", {"INPUT_RASTER": classes, "RASTER_BAND": 1, "FIELD_NAME": "code",
                                               "OUTPUT": polygons})
    with sqlite3.connect(polygons) as db:
        srs = [row[0] for row in db.execute("SELECT srs_id FROM gpkg_geometry_columns")]
    RESULTS["steps"]["result_crs"] = {"layers": found, "polygons_srs": srs}
    next_step()


@guarded
def field_work_dialogs():
    """Class Area Statistics and Vectorise from their dialogs with their default temporary outputs:
    the results load, and the log shows no red "not correctly generated"."""
    classes = next(layer for layer in QgsProject.instance().mapLayers().values()
                   if layer.name() == "scene_hh_db - land cover")
    run_dialog("sarlulc:areastats", {"INPUT": classes.id()}, "areastats_dialog", "12_areastats",
               lambda _found: run_dialog("sarlulc:vectorise", {"INPUT": classes.id(), "MIN_AREA": 20000},
                                         "vectorise_dialog", "13_vectorise", lambda _found: next_step()))


@guarded
def area_of_interest():
    """Water Detect on the part of the scene in view: the mask covers that extent only."""
    scene = next(layer for layer in QgsProject.instance().mapLayers().values() if layer.name() == "scene_hh_db")
    full = scene.extent()
    part = f"{full.xMinimum()},{full.xMinimum() + full.width() / 4},{full.yMinimum()}," \
           f"{full.yMinimum() + full.height() / 4} [{scene.crs().authid()}]"

    def record(found):
        layer = QgsProject.instance().mapLayer(next(iter(found["new_layers"].values()), ""))
        found["extent"] = [layer.extent().width(), layer.extent().height()] if layer is not None else None
        found["scene_extent"] = [full.width(), full.height()]
        next_step()
    run_dialog("sarlulc:waterdetect", {"INPUT": scene.id(), "METHOD": "threshold", "EXTENT": part},
               "area_of_interest", "14_area_of_interest", record)


@guarded
def copy_example_models():
    """Plugins ▸ SAR LULC ▸ Copy example models to my models: the toolbox's Models list them, editable."""
    entry = next(a for a in iface.pluginMenu().actions() if a.text() == "SAR LULC")
    action = next(a for a in entry.menu().actions() if a.text() == "Copy example models to my models…")
    action.trigger()
    QApplication.processEvents()
    item = iface.messageBar().currentItem()
    models = QgsApplication.processingRegistry().providerById("model")
    RESULTS["steps"]["copy_example_models"] = {
        "message": item.text() if item is not None else None,
        "models": sorted(alg.displayName() for alg in models.algorithms() if alg.group() == "Example models")}
    screenshot("15_copied_models")
    next_step()


STEPS = [menu, segment_dialog, second_dialog, result_crs, field_work_dialogs, area_of_interest,
         batch_and_modeler_step, example_model, copy_example_models]


def next_step():
    save_results()
    if STEPS:
        QTimer.singleShot(200, STEPS.pop(0))
    else:
        finish()


def finish():
    RESULTS["finished"] = True
    RESULTS["log_warnings"] = [m for m in LOG_MESSAGES if m[1] >= int(Qgis.Warning)]
    save_results()
    # Everything is recorded: leave without QGIS's shutdown, which takes long and may abort under Xvfb.
    os._exit(0)


def watchdog():
    RESULTS["errors"]["watchdog"] = f"QGIS quit after {CONFIG['watchdog_s']} s; pending steps: " + \
        ", ".join(step.__name__ for step in STEPS)
    finish()


OUT.mkdir(parents=True, exist_ok=True)
# Processing's worker threads end 30 s after their last task; here after 1 s, so that the steps after a
# run see what a user sees once the thread is gone (a layer made on it lost its CRS then).
QThreadPool.globalInstance().setExpiryTimeout(1000)
QTimer.singleShot(int(CONFIG["watchdog_s"] * 1000), watchdog)
QTimer.singleShot(500, install_from_zip)

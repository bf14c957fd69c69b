"""The plugin as QGIS sees it: provider and algorithms registered, parameters, menu, load/unload."""

from pathlib import Path

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtWidgets import QPushButton

COMMON = {"INPUT", "BAND", "INPUT_UNITS", "CALIBRATION_FACTOR", "SPECKLE_FILTER", "FILTER_SIZE", "MODEL", "DEVICE",
          "EXTENT", "MASK", "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "THREADS", "PRECISION", "OUTPUT_GRID", "OUTPUT"}  # inputs: test_real_inputs_plugin
ADVANCED = {"TILE_SIZE", "OVERLAP", "BATCH_SIZE", "THREADS"}


def algorithm(algorithm_id):
    return QgsApplication.processingRegistry().algorithmById(algorithm_id)


def test_provider_registered_with_its_algorithms_segment_and_water_in_one_group(sarlulc_provider):
    provider = QgsApplication.processingRegistry().providerById("sarlulc")
    assert provider is sarlulc_provider
    assert provider.name() == "SAR LULC"
    assert not provider.icon().isNull()
    names = {alg.id(): alg.displayName() for alg in provider.algorithms() if alg.group() != "Example models"}
    assert names == {"sarlulc:segment": "SAR LULC Segment", "sarlulc:waterdetect": "Water Detect",
                     "sarlulc:calibrate": "Calibrate ALOS-2 DN to Backscatter",
                     "sarlulc:evaluate": "Evaluate Against Reference", "sarlulc:areastats": "Class Area Statistics",
                     "sarlulc:vectorise": "Vectorise Classes", "sarlulc:fieldmap": "Field Map",
                     "sarlulc:fieldpackage": "Field Package", "sarlulc:segmenttiles": "SAR LULC Segment Tiles",
                     "sarlulc:train": "Train / fine-tune model", "sarlulc:importweights": "Import published weights"}
    assert algorithm("sarlulc:segment").groupId() == algorithm("sarlulc:waterdetect").groupId()
    assert {algorithm(f"sarlulc:{name}").group() for name in ("areastats", "vectorise", "fieldmap", "fieldpackage")
            } == {"Field work"}
    # GeoTIFF first (the default), then the other lossless formats the engine writes.
    assert provider.supportedOutputRasterLayerExtensions() == ["tif", "tiff", "img", "gpkg", "png"]


@pytest.mark.parametrize("algorithm_id, own_parameters", [
    ("sarlulc:segment", {"OUTPUT_CONFIDENCE"}),
    ("sarlulc:waterdetect", {"METHOD", "THRESHOLD", "OUTPUT_PROBABILITY"}),
])
def test_parameters(sarlulc_provider, algorithm_id, own_parameters):
    alg = algorithm(algorithm_id)
    parameters = {p.name(): p for p in alg.parameterDefinitions()}
    assert set(parameters) == COMMON | own_parameters
    assert isinstance(parameters["INPUT"], QgsProcessingParameterRasterLayer)
    assert isinstance(parameters["BAND"], QgsProcessingParameterBand)
    assert parameters["BAND"].defaultValue() == 1
    assert parameters["BAND"].parentLayerParameterName() == "INPUT"
    assert isinstance(parameters["MODEL"], QgsProcessingParameterFile)
    assert parameters["MODEL"].flags() & QgsProcessingParameterDefinition.FlagOptional
    assert "*.onnx" in parameters["MODEL"].fileFilter()
    assert isinstance(parameters["DEVICE"], QgsProcessingParameterEnum)
    assert parameters["DEVICE"].options() == ["auto", "cpu", "cuda"]
    assert parameters["DEVICE"].defaultValue() == "auto"
    assert parameters["PRECISION"].options() == ["auto", "fp32", "fp16"]
    assert parameters["PRECISION"].defaultValue() == "auto"
    assert parameters["PRECISION"].flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert parameters["PRECISION"].flags() & QgsProcessingParameterDefinition.FlagOptional  # older models validate
    for name in ADVANCED:
        assert isinstance(parameters[name], QgsProcessingParameterNumber)
        assert parameters[name].flags() & QgsProcessingParameterDefinition.FlagAdvanced
        assert parameters[name].flags() & QgsProcessingParameterDefinition.FlagOptional
        assert parameters[name].defaultValue() is None
    assert isinstance(parameters["OUTPUT"], QgsProcessingParameterRasterDestination)
    for name in own_parameters - {"METHOD", "THRESHOLD"}:
        assert isinstance(parameters[name], QgsProcessingParameterRasterDestination)
        assert parameters[name].flags() & QgsProcessingParameterDefinition.FlagOptional
        assert not parameters[name].createByDefault()
    assert {o.name() for o in alg.outputDefinitions()} == {"OUTPUT"} | (own_parameters - {"METHOD", "THRESHOLD"})


def test_threshold_is_an_optional_probability(sarlulc_provider):
    threshold = algorithm("sarlulc:waterdetect").parameterDefinition("THRESHOLD")
    assert threshold.dataType() == QgsProcessingParameterNumber.Double
    assert (threshold.minimum(), threshold.maximum()) == (0.0, 1.0)
    assert threshold.flags() & QgsProcessingParameterDefinition.FlagOptional


def test_method_chooses_the_model_or_the_threshold_baseline(sarlulc_provider):
    water = algorithm("sarlulc:waterdetect")
    method = water.parameterDefinition("METHOD")
    assert isinstance(method, QgsProcessingParameterEnum)
    assert method.options() == ["model", "threshold"] and method.defaultValue() == "model"
    assert method.usesStaticStrings()
    help_text = water.shortHelpString()
    for fact in ("Kittler-Illingworth", "Ashman", "water ceiling", "HH -17 dB", "cannot tell", "writes no probability"):
        assert fact in help_text


@pytest.mark.parametrize("algorithm_id", ["sarlulc:segment", "sarlulc:waterdetect"])
def test_help_tells_the_user_what_to_feed_and_what_comes_out(sarlulc_provider, algorithm_id):
    help_text = algorithm(algorithm_id).shortHelpString()
    for fact in ("HH", "dB", "10 m", "nodata", "simulated ALOS-2-like scenes", ".qml", "CONTRACT.md"):
        assert fact in help_text
    page = Path(QUrl(algorithm(algorithm_id).helpUrl()).toLocalFile())
    assert page.suffix == ".html" and page.is_file()


def test_the_help_button_opens_a_rendered_page_of_every_algorithm(sarlulc_provider):
    for alg in sarlulc_provider.algorithms():
        if alg.group() == "Example models":
            continue
        page = Path(QUrl(alg.helpUrl()).toLocalFile())
        text = page.read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>") and f"<h1>{alg.displayName()}</h1>" in text
        assert alg.shortHelpString() in text
        for definition in alg.parameterDefinitions():
            assert f"<code>{definition.name()}</code>" in text
        assert "README.md" in text and "MODEL_CARD.md" in text


@pytest.mark.parametrize("algorithm_id, limit", [("sarlulc:segment", "simulated ALOS-2-like scenes"),
                                                 ("sarlulc:waterdetect", "darker than land")])
def test_help_says_what_matters_first(sarlulc_provider, algorithm_id, limit):
    """What to set, what comes out and the model's limit come before the details, in the first lines."""
    help_text = algorithm(algorithm_id).shortHelpString()
    short, details = help_text.split("<h3>Details</h3>")
    assert len(short) < 1500 < len(details)
    for fact in ("<b>Set</b>", "Input units", "Map only this extent", "<b>Result</b>", "<b>Limit</b>", limit):
        assert fact in short


def test_plugin_load_puts_its_entries_under_plugins_and_unload_removes_them(qgis_iface, qgis_processing,
                                                                          monkeypatch):
    import sar_lulc

    plugins_menu = {}  # what QGIS's Plugins menu would hold: submenu title -> actions
    monkeypatch.setattr(qgis_iface, "addPluginToMenu",
                        lambda title, action: plugins_menu.setdefault(title, []).append(action), raising=False)
    monkeypatch.setattr(qgis_iface, "removePluginMenu",
                        lambda title, action: plugins_menu[title].remove(action), raising=False)
    monkeypatch.setattr("sar_lulc.dependencies.installation_problem", lambda: None)
    opened = []
    # The plugin calls qgis.processing's (the Processing plugin puts its functions there when it loads).
    monkeypatch.setattr("qgis.processing.execAlgorithmDialog", lambda alg_id, params: opened.append(alg_id))
    registry = QgsApplication.processingRegistry()
    registry.removeProvider("sarlulc")  # registered by other tests; the plugin registers its own

    plugin = sar_lulc.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert registry.providerById("sarlulc") is plugin.provider
        assert list(plugins_menu) == ["SAR LULC"]
        actions = plugins_menu["SAR LULC"]
        # Every algorithm of the provider, in its order, then the two tools.
        algorithms = [alg for alg in plugin.provider.algorithms() if alg.group() != "Example models"]
        assert [a.text() for a in actions if not a.isSeparator()] == [
            "SAR LULC Segment…", "Water Detect…", "SAR LULC Segment Tiles…", "Calibrate ALOS-2 DN to Backscatter…",
            "Evaluate Against Reference…", "Class Area Statistics…", "Vectorise Classes…", "Field Map…",
            "Field Package…", "Train / fine-tune model…", "Import published weights…",
            "Copy example models to my models…", "Install dependencies…"]
        assert actions[-3].isSeparator() and len(actions) == len(algorithms) + 3
        for action in actions[:len(algorithms)]:
            action.trigger()
        assert sorted(opened) == sorted(alg.id() for alg in algorithms)
        assert opened[:2] == ["sarlulc:segment", "sarlulc:waterdetect"]
        assert qgis_iface.messageBar().currentItem() is None  # dependencies fine: no prompt
    finally:
        plugin.unload()
    assert registry.providerById("sarlulc") is None
    assert plugins_menu == {"SAR LULC": []}


def test_start_up_prompts_to_install_missing_dependencies(qgis_iface, qgis_processing, monkeypatch):
    import sar_lulc

    problem = "ONNX Runtime, which the SAR LULC algorithms need, is not installed."
    monkeypatch.setattr("sar_lulc.dependencies.installation_problem", lambda: problem)
    monkeypatch.setattr(qgis_iface, "addPluginToMenu", lambda title, action: None, raising=False)
    monkeypatch.setattr(qgis_iface, "removePluginMenu", lambda title, action: None, raising=False)
    opened = []
    monkeypatch.setattr("sar_lulc.plugin.SarLulcPlugin.open_dependency_dialog",
                        lambda self, _checked=False: opened.append("dialog"))
    QgsApplication.processingRegistry().removeProvider("sarlulc")
    plugin = sar_lulc.classFactory(qgis_iface)
    plugin.initGui()
    try:
        item = qgis_iface.messageBar().currentItem()
        assert item is not None and item.text() == problem and item.level() == Qgis.Warning
        install = item.findChild(QPushButton, "sarLulcInstallDependencies")
        assert install.text() == "Install"
        install.click()
        assert opened == ["dialog"]
    finally:
        plugin.unload()
    assert qgis_iface.messageBar().currentItem() is None


def test_dependency_dialog_shows_the_status_qgis_python_and_target(qgis_iface):
    from sar_lulc.dependencies import dependencies_dir, install_steps, qgis_python
    from sar_lulc.ui.dependency_dialog import DependencyDialog

    dialog = DependencyDialog(qgis_iface.mainWindow())
    import onnxruntime

    assert onnxruntime.__version__ in dialog.status.text()
    assert dialog.python == qgis_python()
    assert f"QGIS's Python: {qgis_python()}" in dialog.python_label.text()
    assert str(dependencies_dir()) in dialog.python_label.text()
    assert dialog.install_button.isEnabled()
    steps = install_steps(dialog.target, dialog.python, gpu=True)
    assert len(steps) == 2
    (_, pip), (_, check) = steps
    assert pip[:5] == [qgis_python(), "-m", "pip", "install", "--upgrade"]
    assert "--no-deps" in pip and str(dependencies_dir()) in pip
    assert any(part.startswith("onnxruntime-gpu") for part in pip)
    assert check[0] == qgis_python() and "import onnxruntime" in check[2]
    dialog.deleteLater()


@pytest.mark.parametrize("algorithm_id", ["sarlulc:segment", "sarlulc:waterdetect"])
def test_labels_are_short_and_the_tile_size_label_names_what_the_bundled_model_takes(sarlulc_provider,
                                                                                     algorithm_id):
    """Long labels made the default-size dialog scroll sideways, hiding the "…" buttons."""
    from sar_lulc.sarlulc.inference.contract import bundled_model_path
    from sar_lulc.sarlulc.inference.session import ModelSession

    alg = algorithm(algorithm_id)
    labels = {p.name(): p.description() for p in alg.parameterDefinitions()}
    assert max(map(len, labels.values())) <= 32, labels
    task = "lulc" if algorithm_id == "sarlulc:segment" else "water"
    if not bundled_model_path(task).is_file():
        pytest.skip("the bundled model is not built (make train-bundled)")
    fixed = ModelSession(bundled_model_path(task), "cpu").fixed_tile_size
    assert labels["TILE_SIZE"] == f"Tile size (px; bundled: {fixed})"


def test_the_dialog_shows_labels_and_numbers_as_a_user_reads_them(sarlulc_provider, qgis_iface):
    """No "Zones (optional) [optional]", the minimum mapping unit as "5000" not "5000.000000", and an empty
    water threshold that says what it stands for."""
    from qgis.core import QgsProcessingContext
    from qgis.gui import QgsGui, QgsProcessingGui, QgsProcessingParameterWidgetContext

    assert algorithm("sarlulc:areastats").parameterDefinition("ZONES").description() == "Zones"
    assert algorithm("sarlulc:waterdetect").parameterDefinition("THRESHOLD").description() == \
        "Water threshold (empty: model's)"
    for algorithm_id in ("sarlulc:vectorise", "sarlulc:fieldpackage"):
        wrapper = QgsGui.processingGuiRegistry().createParameterWidgetWrapper(
            algorithm(algorithm_id).parameterDefinition("MIN_AREA"), QgsProcessingGui.Standard)
        wrapper.setWidgetContext(QgsProcessingParameterWidgetContext())
        spin_box = wrapper.createWrappedWidget(QgsProcessingContext())
        assert spin_box.decimals() == 0 and spin_box.text().replace(",", "") == "5000"

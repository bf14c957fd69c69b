"""The plugin as QGIS sees it: provider and algorithms registered, parameters, menu, load/unload."""

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtWidgets import QMenu

COMMON = {"INPUT", "BAND", "INPUT_UNITS", "CALIBRATION_FACTOR", "SPECKLE_FILTER", "FILTER_SIZE", "MODEL", "DEVICE",
          "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "OUTPUT_GRID", "OUTPUT"}  # the input ones: test_real_inputs_plugin
ADVANCED = {"TILE_SIZE", "OVERLAP", "BATCH_SIZE"}


def algorithm(algorithm_id):
    return QgsApplication.processingRegistry().algorithmById(algorithm_id)


def test_provider_registered_with_its_algorithms_segment_and_water_in_one_group(sarlulc_provider):
    provider = QgsApplication.processingRegistry().providerById("sarlulc")
    assert provider is sarlulc_provider
    assert provider.name() == "SAR LULC"
    assert not provider.icon().isNull()
    names = {alg.id(): alg.displayName() for alg in provider.algorithms()}
    assert names == {"sarlulc:segment": "SAR LULC Segment", "sarlulc:waterdetect": "Water Detect",
                     "sarlulc:calibrate": "Calibrate ALOS-2 DN to Backscatter",
                     "sarlulc:evaluate": "Evaluate Against Reference", "sarlulc:areastats": "Class Area Statistics",
                     "sarlulc:vectorise": "Vectorise Classes", "sarlulc:fieldmap": "Field Map",
                     "sarlulc:fieldpackage": "Field Package"}
    assert algorithm("sarlulc:segment").groupId() == algorithm("sarlulc:waterdetect").groupId()
    assert {algorithm(f"sarlulc:{name}").group() for name in ("areastats", "vectorise", "fieldmap", "fieldpackage")
            } == {"Field work"}
    assert provider.supportedOutputRasterLayerExtensions() == ["tif"]


@pytest.mark.parametrize("algorithm_id, own_parameters", [
    ("sarlulc:segment", {"OUTPUT_CONFIDENCE"}),
    ("sarlulc:waterdetect", {"THRESHOLD", "OUTPUT_PROBABILITY"}),
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
    for name in ADVANCED:
        assert isinstance(parameters[name], QgsProcessingParameterNumber)
        assert parameters[name].flags() & QgsProcessingParameterDefinition.FlagAdvanced
        assert parameters[name].flags() & QgsProcessingParameterDefinition.FlagOptional
        assert parameters[name].defaultValue() is None
    assert isinstance(parameters["OUTPUT"], QgsProcessingParameterRasterDestination)
    for name in own_parameters - {"THRESHOLD"}:
        assert isinstance(parameters[name], QgsProcessingParameterRasterDestination)
        assert parameters[name].flags() & QgsProcessingParameterDefinition.FlagOptional
        assert not parameters[name].createByDefault()
    assert {o.name() for o in alg.outputDefinitions()} == {"OUTPUT"} | (own_parameters - {"THRESHOLD"})


def test_threshold_is_an_optional_probability(sarlulc_provider):
    threshold = algorithm("sarlulc:waterdetect").parameterDefinition("THRESHOLD")
    assert threshold.dataType() == QgsProcessingParameterNumber.Double
    assert (threshold.minimum(), threshold.maximum()) == (0.0, 1.0)
    assert threshold.flags() & QgsProcessingParameterDefinition.FlagOptional


@pytest.mark.parametrize("algorithm_id", ["sarlulc:segment", "sarlulc:waterdetect"])
def test_help_tells_the_user_what_to_feed_and_what_comes_out(sarlulc_provider, algorithm_id):
    help_text = algorithm(algorithm_id).shortHelpString()
    for fact in ("HH", "dB", "10 m", "nodata", "simulated ALOS-2-like scenes", ".qml", "CONTRACT.md"):
        assert fact in help_text
    assert algorithm(algorithm_id).helpUrl().endswith("README.md")


def plugin_menu(main_window):
    titles = {action.text(): action.menu() for action in main_window.menuBar().actions()}
    return titles.get("SAR LULC")


def test_plugin_load_adds_menu_and_provider_and_unload_removes_them(qgis_iface, qgis_processing, monkeypatch):
    import sar_lulc

    # QGIS puts plugin menus before its Help menu; the test interface has none, so add one.
    help_menu = QMenu("Help", qgis_iface.mainWindow())
    qgis_iface.mainWindow().menuBar().addMenu(help_menu)
    monkeypatch.setattr(qgis_iface, "firstRightStandardMenu", lambda: help_menu, raising=False)
    opened = []
    monkeypatch.setattr("processing.execAlgorithmDialog", lambda alg_id, params: opened.append(alg_id))
    registry = QgsApplication.processingRegistry()
    registry.removeProvider("sarlulc")  # registered by other tests; the plugin registers its own

    plugin = sar_lulc.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert registry.providerById("sarlulc") is plugin.provider
        menu = plugin_menu(qgis_iface.mainWindow())
        assert menu is not None
        actions = [a for a in menu.actions() if not a.isSeparator()]
        assert [a.text() for a in actions] == ["SAR LULC Segment…", "Water Detect…",
                                                "Calibrate ALOS-2 DN to Backscatter…",
                                                "Evaluate Against Reference…", "Class Area Statistics…",
                                                "Vectorise Classes…", "Field Map…", "Field Package…",
                                                "Install dependencies…"]
        menu_titles = [a.text() for a in qgis_iface.mainWindow().menuBar().actions()]
        assert menu_titles.index("SAR LULC") == menu_titles.index("Help") - 1
        for action in actions[:8]:
            action.trigger()
        assert opened == ["sarlulc:segment", "sarlulc:waterdetect", "sarlulc:calibrate", "sarlulc:evaluate",
                          "sarlulc:areastats", "sarlulc:vectorise", "sarlulc:fieldmap", "sarlulc:fieldpackage"]
    finally:
        plugin.unload()
        qgis_iface.mainWindow().menuBar().removeAction(help_menu.menuAction())
    assert registry.providerById("sarlulc") is None
    assert plugin_menu(qgis_iface.mainWindow()) is None


def test_dependency_dialog_shows_the_onnxruntime_status(qgis_iface):
    from sar_lulc.dependencies import EXT_LIBS, pip_install_command
    from sar_lulc.ui.dependency_dialog import DependencyDialog

    dialog = DependencyDialog(qgis_iface.mainWindow())
    import onnxruntime

    assert onnxruntime.__version__ in dialog.status.text()
    command = pip_install_command(gpu=True)
    assert command[1:5] == ["-m", "pip", "install", "--upgrade"]
    assert "--no-deps" in command and str(EXT_LIBS) in command
    assert any(part.startswith("onnxruntime-gpu") for part in command)
    assert not any(part.startswith("onnxruntime") and "gpu" not in part for part in command[5:])
    dialog.deleteLater()

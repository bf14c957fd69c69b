"""The plugin object QGIS drives: registers the Processing provider and the SAR LULC menu."""

from functools import partial

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QMenu

from .processing_provider.base_algorithm import ICON_PATH
from .processing_provider.provider import SarLulcProvider

MENU_TITLE = "SAR LULC"
# Menu entries that open an algorithm's dialog: (algorithm id, entry text).
ALGORITHM_ENTRIES = (
    ("sarlulc:segment", "SAR LULC Segment…"),
    ("sarlulc:waterdetect", "Water Detect…"),
    ("sarlulc:calibrate", "Calibrate ALOS-2 DN to Backscatter…"),
    ("sarlulc:evaluate", "Evaluate Against Reference…"),
    ("sarlulc:areastats", "Class Area Statistics…"),
    ("sarlulc:vectorise", "Vectorise Classes…"),
    ("sarlulc:fieldmap", "Field Map…"),
    ("sarlulc:fieldpackage", "Field Package…"),
)
INSTALL_DEPENDENCIES = "Install dependencies…"


class SarLulcPlugin:
    """QGIS calls initProcessing (qgis_process) or initGui (desktop), and unload."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.menu = None

    def initProcessing(self):  # noqa: N802 (QGIS API)
        if self.provider is None:
            self.provider = SarLulcProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API)
        self.initProcessing()
        main_window = self.iface.mainWindow()
        self.menu = QMenu(MENU_TITLE, main_window)
        self.menu.setIcon(QIcon(str(ICON_PATH)))
        for algorithm_id, text in ALGORITHM_ENTRIES:
            action = self.menu.addAction(QIcon(str(ICON_PATH)), text)
            action.triggered.connect(partial(self.open_algorithm_dialog, algorithm_id))
        self.menu.addSeparator()
        self.menu.addAction(INSTALL_DEPENDENCIES).triggered.connect(self.open_dependency_dialog)
        # Before Help, where QGIS puts plugin menus of their own.
        main_window.menuBar().insertMenu(self.iface.firstRightStandardMenu().menuAction(), self.menu)

    def unload(self):
        if self.menu is not None:
            self.iface.mainWindow().menuBar().removeAction(self.menu.menuAction())
            self.menu.deleteLater()
            self.menu = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def open_algorithm_dialog(self, algorithm_id, _checked=False):
        """Open the Processing dialog of ``algorithm_id`` (same as double-clicking it in the toolbox)."""
        import processing

        processing.execAlgorithmDialog(algorithm_id, {})

    def open_dependency_dialog(self, _checked=False):
        """Show the dialog that installs onnxruntime into the plugin's ext-libs/ folder."""
        from .ui.dependency_dialog import DependencyDialog

        DependencyDialog(self.iface.mainWindow()).exec_()

"""The plugin object QGIS drives: registers the Processing provider, the menu entries under
Plugins ▸ SAR LULC, and checks at start-up that onnxruntime is installed for QGIS's Python."""

from functools import partial

from qgis.core import Qgis, QgsApplication
from qgis.PyQt import sip
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QPushButton

from . import dependencies
from .processing_provider.algorithm import ICON_PATH
from .processing_provider.example_models import copy_example_models
from .processing_provider.provider import ALGORITHMS, SarLulcProvider

# The submenu of QGIS's Plugins menu (QGIS keeps plugin submenus there in alphabetical order).
MENU_TITLE = "SAR LULC"
INSTALL_DEPENDENCIES = "Install dependencies…"
COPY_EXAMPLE_MODELS = "Copy example models to my models…"


class SarLulcPlugin:
    """QGIS calls initProcessing (qgis_process) or initGui (desktop), and unload."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []
        self.dependency_message = None

    def initProcessing(self):  # noqa: N802 (QGIS API)
        if self.provider is None:
            self.provider = SarLulcProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API)
        self.initProcessing()
        main_window = self.iface.mainWindow()
        # One entry per algorithm of the provider, in its order (the toolbox lists the same).
        for algorithm_class in ALGORITHMS:
            algorithm = algorithm_class()
            action = QAction(QIcon(str(ICON_PATH)), f"{algorithm.displayName()}…", main_window)
            action.triggered.connect(partial(self.open_algorithm_dialog, f"{self.provider.id()}:{algorithm.name()}"))
            self.actions.append(action)
        separator = QAction(main_window)
        separator.setSeparator(True)
        copy_models = QAction(COPY_EXAMPLE_MODELS, main_window)
        copy_models.triggered.connect(self.copy_example_models)
        install = QAction(INSTALL_DEPENDENCIES, main_window)
        install.triggered.connect(self.open_dependency_dialog)
        self.actions += [separator, copy_models, install]
        for action in self.actions:
            self.iface.addPluginToMenu(MENU_TITLE, action)
        self.check_dependencies()

    def unload(self):
        self.clear_dependency_message()
        for action in self.actions:
            self.iface.removePluginMenu(MENU_TITLE, action)
            action.deleteLater()
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def check_dependencies(self):
        """A message bar with an Install button when onnxruntime is missing or built for another Python."""
        problem = dependencies.installation_problem()
        if problem is None:
            return
        message_bar = self.iface.messageBar()
        self.dependency_message = message_bar.createMessage("SAR LULC", problem)
        button = QPushButton("Install")
        button.setObjectName("sarLulcInstallDependencies")
        button.clicked.connect(self.open_dependency_dialog)
        self.dependency_message.layout().addWidget(button)
        message_bar.pushWidget(self.dependency_message, Qgis.MessageLevel.Warning)

    def clear_dependency_message(self):
        # The user may have closed it already, which deletes it.
        if self.dependency_message is not None and not sip.isdeleted(self.dependency_message):
            self.iface.messageBar().popWidget(self.dependency_message)
        self.dependency_message = None

    def open_algorithm_dialog(self, algorithm_id, _checked=False):
        """Open the Processing dialog of ``algorithm_id`` (same as double-clicking it in the toolbox)."""
        from qgis import processing

        processing.execAlgorithmDialog(algorithm_id, {})

    def open_dependency_dialog(self, _checked=False):
        """Show the dialog that installs onnxruntime into the profile's dependencies folder."""
        from .ui.dependency_dialog import DependencyDialog

        dialog = DependencyDialog(self.iface.mainWindow())
        dialog.installed.connect(lambda _message: self.clear_dependency_message())
        dialog.exec()

    def copy_example_models(self, _checked=False):
        """Put the example models in the user's models folder, where the toolbox lists them under
        Models and offers Edit Model (the plugin's own copies are read-only examples)."""
        try:
            folder, copied = copy_example_models()
        except OSError as error:
            self.iface.messageBar().pushMessage(
                "SAR LULC", f"Could not copy the example models: {error}", Qgis.MessageLevel.Critical)
            return
        kept = "" if copied else " (already there: nothing replaced)"
        self.iface.messageBar().pushMessage(
            "SAR LULC", f"Example models in {folder}{kept}: Processing Toolbox ▸ Models ▸ Example models; "
                        "right-click one ▸ Edit Model…", Qgis.MessageLevel.Success)

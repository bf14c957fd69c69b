"""The "Install dependencies" dialog: pip-installs onnxruntime into the plugin's ext-libs/.

It runs the same command as ``make deploy`` (dependencies.pip_install_command) with the
Python QGIS runs, in a QProcess so QGIS stays responsive, and shows pip's output.
"""

import sys

from qgis.PyQt.QtCore import QProcess
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from ..dependencies import EXT_LIBS, GPU_PACKAGE, onnxruntime_problem, pip_install_command

GPU_NOTE = (f"GPU build ({GPU_PACKAGE}): needs an NVIDIA GPU with its driver, CUDA 12 and cuDNN 9 "
            "libraries on the system; otherwise keep the CPU build.")


class DependencyDialog(QDialog):
    """Shows whether onnxruntime is usable and installs it on request."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("SAR LULC: install dependencies")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.gpu = QCheckBox(f"Install the GPU build ({GPU_PACKAGE}) instead of the CPU build")
        self.gpu.setToolTip(GPU_NOTE)
        self.install_button = QPushButton("Install")
        self.install_button.clicked.connect(self.install)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.status, self.gpu, QLabel(GPU_NOTE), self.install_button, self.log, buttons):
            layout.addWidget(widget)
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.MergedChannels)
        self.process.readyReadStandardOutput.connect(self.show_output)
        self.process.finished.connect(self.report)
        self.process.errorOccurred.connect(self.report_start_failure)
        self.resize(640, 420)
        self.show_status()

    def show_status(self):
        problem = onnxruntime_problem()
        if problem:
            self.status.setText(f"Missing: {problem}")
        else:
            import onnxruntime

            self.status.setText(f"onnxruntime {onnxruntime.__version__} is installed "
                                f"(devices: {', '.join(onnxruntime.get_available_providers())}).")

    def install(self):
        command = pip_install_command(gpu=self.gpu.isChecked())
        self.log.appendPlainText("$ " + " ".join(command))
        self.install_button.setEnabled(False)
        self.process.start(command[0], command[1:])

    def show_output(self):
        self.log.appendPlainText(bytes(self.process.readAllStandardOutput()).decode(errors="replace").rstrip())

    def report_start_failure(self, error):
        if error == QProcess.FailedToStart:
            self.log.appendPlainText(f"Could not start Python: {self.process.errorString()}")
            self.install_button.setEnabled(True)

    def report(self, exit_code, _exit_status):
        self.install_button.setEnabled(True)
        if exit_code != 0:
            self.log.appendPlainText(f"pip failed (exit code {exit_code}); see its output above.")
        elif "onnxruntime" in sys.modules:
            self.log.appendPlainText(f"Installed into {EXT_LIBS}. Restart QGIS to use the new version.")
        else:
            self.log.appendPlainText(f"Installed into {EXT_LIBS}.")
        self.show_status()

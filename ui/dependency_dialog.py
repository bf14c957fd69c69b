"""The "Install dependencies" dialog: pip-installs onnxruntime into the profile's dependencies folder.

It runs the same steps as ``make deploy`` (dependencies.install_steps: pip with QGIS's own Python,
then an import check in that Python) in a QProcess so QGIS stays responsive, shows their output,
and reports success only once onnxruntime also imports here, in QGIS's running Python.
"""

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, pyqtSignal
from qgis.PyQt.QtGui import QTextCursor
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from .. import dependencies

GPU_NOTE = (f"GPU build ({dependencies.GPU_PACKAGE}): needs an NVIDIA GPU with its driver, CUDA 12 and cuDNN 9 "
            "libraries on the system; otherwise keep the CPU build.")


class DependencyDialog(QDialog):
    """Shows whether onnxruntime is usable, with which Python and where, and installs it on request."""

    installed = pyqtSignal(str)  # emitted with the success message once onnxruntime imports in QGIS

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("SAR LULC: install dependencies")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.python_label = QLabel()
        self.python_label.setWordWrap(True)
        self.gpu = QCheckBox(f"Install the GPU build ({dependencies.GPU_PACKAGE}) instead of the CPU build")
        self.gpu.setToolTip(GPU_NOTE)
        self.torch = QCheckBox(f"Also install PyTorch, to train models (Train / fine-tune model; "
                               f"{dependencies.TORCH_DOWNLOAD})")
        self.install_button = QPushButton("Install")
        self.install_button.clicked.connect(self.install)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.status, self.python_label, self.gpu, QLabel(GPU_NOTE), self.torch, self.install_button,
                       self.log,
                       buttons):
            layout.addWidget(widget)
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self.show_output)
        self.process.finished.connect(self.step_finished)
        self.process.errorOccurred.connect(self.report_start_failure)
        environment = QProcessEnvironment()
        for key, value in dependencies.pip_environment().items():
            environment.insert(key, value)
        self.process.setProcessEnvironment(environment)
        self.steps = []
        self.target = dependencies.dependencies_dir()
        self.python = None
        self.resize(680, 440)
        self.find_python()
        self.show_status()

    def find_python(self):
        """Find QGIS's interpreter up front: the user sees which Python pip will run with."""
        try:
            self.python = dependencies.qgis_python()
        except dependencies.DependencyError as error:
            self.python_label.setText(str(error))
            self.install_button.setEnabled(False)
            return
        self.python_label.setText(f"QGIS's Python: {self.python}\nInstalls into: {self.target}")

    def show_status(self):
        problem = dependencies.onnxruntime_problem(advice=False)
        if problem:
            self.status.setText(f"Missing: {problem} Click Install.")
        else:
            import onnxruntime

            devices = dependencies.device_names(onnxruntime.get_available_providers())
            self.status.setText(f"onnxruntime {onnxruntime.__version__} is installed "
                                f"(runs on: {', '.join(devices)}).")

    def install(self):
        self.install_button.setEnabled(False)
        self.steps = dependencies.install_steps(self.target, self.python, gpu=self.gpu.isChecked(),
                                                torch=self.torch.isChecked())
        self.run_next_step()

    def run_next_step(self):
        label, command = self.steps[0]
        self.log.appendPlainText(f"[{label}] $ " + " ".join(command))
        self.process.start(command[0], command[1:])

    def show_output(self):
        """pip's output as it comes (chunks may end mid-line)."""
        self.log.moveCursor(QTextCursor.MoveOperation.End)
        self.log.insertPlainText(bytes(self.process.readAllStandardOutput()).decode(errors="replace"))
        self.log.moveCursor(QTextCursor.MoveOperation.End)

    def report_start_failure(self, error):
        if error == QProcess.ProcessError.FailedToStart:
            self.log.appendPlainText(f"Could not start {self.python}: {self.process.errorString()}")
            self.install_button.setEnabled(True)

    def step_finished(self, exit_code, _exit_status):
        label, _command = self.steps.pop(0)
        if exit_code != 0:
            self.log.appendPlainText(f"{label} failed (exit code {exit_code}); see its output above. Nothing else "
                                     f"was changed.")
            self.install_button.setEnabled(True)
            return
        if self.steps:
            self.run_next_step()
            return
        try:
            message = dependencies.import_in_qgis(self.target)
        except dependencies.DependencyError as error:
            self.log.appendPlainText(str(error))
            self.install_button.setEnabled(True)
            return
        self.log.appendPlainText(f"Installed into {self.target}. {message}")
        self.install_button.setEnabled(True)
        self.show_status()
        self.installed.emit(message)

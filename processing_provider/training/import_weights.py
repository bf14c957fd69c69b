"""Import published weights (``sarlulc:importweights``): the SAR-W-SimMIM authors' segmentation
checkpoint turned into the plugin's ONNX model with its contract.

The import itself is sarlulc/training/published.py (torch, no QGIS), the same as
``python -m sarlulc.training.published``; this file turns the parameters into its call and its messages
into feedback. Like training it needs the optional PyTorch extra.
"""

from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ...dependencies import torch_problem
from ..algorithm import PluginAlgorithm
from ..compat import NUMBER_DOUBLE
from . import TOOLBOX_GROUP

# sarlulc/training/published.py's, repeated so that the dialog and its checks need no torch (a test compares them).
DEFAULT_GSD_M = 10.0
CHECKPOINT_SUFFIXES = (".pth", ".pt")


class ImportWeightsAlgorithm(PluginAlgorithm):
    GROUP = TOOLBOX_GROUP
    CHECKPOINT = "CHECKPOINT"
    CLASSES = "CLASSES"
    GSD = "GSD"
    OUTPUT_MODEL = "OUTPUT_MODEL"

    def name(self):
        return "importweights"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Import published weights"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>Turns the SAR-W-SimMIM authors' published segmentation weights (Swin-B + UPerNet trained on "
            "real ALOS-2 HH over Japan, 9 classes, 256 px tiles) into an .onnx model to choose as <b>Model</b> "
            "in Segment. Download their checkpoint (.pth) first: their README (github gsvrg/SAR-W-SimMIM) "
            "links the Hugging Face repository gsvrg/ALOS-2_FM.</p>"
            "<h3>Inputs</h3><p><b>Checkpoint</b>: their segmentation checkpoint (.pth or .pt), read without "
            "running code from it. <b>Class table</b> (optional): a CSV code,name,color, one row per output "
            "channel in the network's order; without it the classes are named after their channel "
            "(\"Class 1 (output 0)\" ...), since their class names are not published with their code. "
            "<b>Pixel size</b>: the ground sampling distance of their tiles (10 m, the JAXA land-cover map's "
            "grid, unless the authors say otherwise).</p>"
            "<h3>What it checks</h3><p>The network is our re-implementation of theirs (sarlulc/training/published.py), "
            "tested against outputs of their own code; the exported model must give the torch network's "
            "outputs through ONNX Runtime. Refused before any work, saying why: a file that is not a .pth or .pt "
            "checkpoint, or cannot be read as one, a pretraining (encoder-only) checkpoint, tensors that do not "
            "match the network, a class table with another number of rows than outputs or a bad row. The model "
            "is written whole or not at all (cancel included). Their input normalisation (HH dB, mean -10.4327, "
            "std 5.8041) is in the contract; their class order and input preparation cannot be checked "
            "without their data (README: Run the authors' published ALOS-2 weights).</p>"
            "<p>Needs PyTorch: install it with Plugins ▸ SAR LULC ▸ Install dependencies… (CPU build by "
            "default). The imported model runs in Segment without it. A Swin-B import takes about a minute "
            "and 3 GB of memory on a 2-core CPU.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterFile(
            self.CHECKPOINT, "Checkpoint (.pth)",
            fileFilter=f"PyTorch checkpoints ({' '.join('*' + suffix for suffix in CHECKPOINT_SUFFIXES)})"))
        self.addParameter(QgsProcessingParameterFile(
            self.CLASSES, "Class table (CSV code,name,color; empty: channel names)", optional=True,
            fileFilter="Class tables (*.csv)"))
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD, "Pixel size of their tiles (m)", NUMBER_DOUBLE, defaultValue=DEFAULT_GSD_M, minValue=0.1))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_MODEL, "Imported model", fileFilter="ONNX models (*.onnx)"))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """A file of another kind is named as such (QGIS would only say it cannot be opened)."""
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if checkpoint and Path(checkpoint).suffix.lower() not in CHECKPOINT_SUFFIXES:
            return False, f"'{checkpoint}' is not a PyTorch checkpoint file (.pth or .pt)."
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        problem = torch_problem("Importing published weights")
        if problem:
            raise QgsProcessingException(problem)
        from ...sarlulc.training.published import CheckpointRefused, ExportMismatch, ImportCancelled, import_checkpoint

        out = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
        try:
            import_checkpoint(self.parameterAsFile(parameters, self.CHECKPOINT, context), out,
                              self.parameterAsFile(parameters, self.CLASSES, context) or None,
                              self.parameterAsDouble(parameters, self.GSD, context), log=feedback.pushInfo,
                              progress=feedback.setProgress, is_cancelled=feedback.isCanceled)
        except CheckpointRefused as error:
            raise QgsProcessingException(str(error)) from None
        except ExportMismatch as error:
            raise QgsProcessingException(f"{error}; nothing was written.") from None
        except ImportCancelled:
            raise QgsProcessingException("The import was cancelled; nothing was written.") from None
        return {self.OUTPUT_MODEL: out}

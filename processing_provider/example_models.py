"""The example models shipped in the plugin's example_models/ folder, and their copies in the user's models
folder, where Processing lists them under Models and the user may edit them."""

import shutil
from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingModelAlgorithm

from ..dependencies import PLUGIN_DIR
from .parameters import latest_backscatter_layer_id

# Written by tools/example_models.py; listed by the provider under "Example models".
MODELS_DIR = PLUGIN_DIR / "example_models"
# The example models' SAR raster input (tools/example_models.py names it).
SAR_INPUT = "image"


class ExampleModel(QgsProcessingModelAlgorithm):
    """An example model whose dialog proposes, as the algorithms' own do, the project's topmost raster that
    may be backscatter, not the result a run just loaded on top (a model file can only hold a fixed default)."""

    def createInstance(self):  # noqa: N802 (QGIS API)
        copy = ExampleModel()
        copy.loadVariant(self.toVariant())
        sar = copy.parameterDefinition(SAR_INPUT)
        if sar is not None:
            sar.setDefaultValue(latest_backscatter_layer_id())
        return copy


def example_models() -> list[ExampleModel]:
    """The shipped example models, as the provider lists them."""
    models = []
    for path in example_model_files():
        model = ExampleModel()
        if model.fromFile(str(path)):
            models.append(model)
    return models


def example_model_files() -> list[Path]:
    return sorted(MODELS_DIR.glob("*.model3"))


def user_models_folder() -> Path:
    """Processing's first models folder (its setting; by default <profile>/processing/models)."""
    try:
        from processing.modeler.ModelerUtils import ModelerUtils

        return Path(ModelerUtils.modelsFolders()[0])
    except (ImportError, IndexError):
        return Path(QgsApplication.qgisSettingsDirPath()) / "processing" / "models"


def copy_example_models(folder: Path | None = None) -> tuple[Path, list[Path]]:
    """Copy the example models into ``folder`` (the user's models folder), never replacing a file the
    user may have edited, and have the Models provider list them; (folder, the files copied)."""
    folder = folder or user_models_folder()
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for source in example_model_files():
        target = folder / f"sar_lulc_{source.name}"
        if not target.exists():
            shutil.copyfile(source, target)
            copied.append(target)
    models = QgsApplication.processingRegistry().providerById("model")
    if models is not None:
        models.refreshAlgorithms()
    return folder, copied

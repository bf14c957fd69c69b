"""sarlulc:importweights in Processing: the authors' published SAR-W-SimMIM checkpoint format (the small
random-weights fixture of tests/test_net_published.py) to a contract ONNX model Segment runs, every
refusal before any work, cancel, and the message when torch is missing."""

import sys
from pathlib import Path

import processing
import pytest
import torch
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

from sarlulc.inference.contract import ModelContract
from sarlulc.training import published
from test_net_published import FIXTURE

CLASSES = "code,name,color\n" + "".join(f"{10 + i},Class {chr(65 + i)},#10203{i}\n" for i in range(9))


class Recorder(QgsProcessingFeedback):
    def __init__(self, cancel_at: float | None = None):
        super().__init__()
        self.progress, self.lines, self.cancel_at = [], [], cancel_at

    def setProgress(self, value):  # noqa: N802 (QGIS API)
        self.progress.append(value)
        if self.cancel_at is not None and value >= self.cancel_at:
            self.cancel()
        super().setProgress(value)

    def pushInfo(self, info):  # noqa: N802 (QGIS API)
        self.lines.append(info)
        super().pushInfo(info)


def test_import_is_registered_beside_train_with_its_parameters(sarlulc_provider):
    alg = QgsApplication.processingRegistry().algorithmById("sarlulc:importweights")
    assert alg.displayName() == "Import published weights"
    train = QgsApplication.processingRegistry().algorithmById("sarlulc:train")
    assert (alg.group(), alg.groupId()) == (train.group(), train.groupId())
    assert [p.name() for p in alg.parameterDefinitions()] == ["CHECKPOINT", "CLASSES", "GSD", "OUTPUT_MODEL"]
    assert alg.parameterDefinition("GSD").defaultValue() == published.DEFAULT_GSD_M
    from sar_lulc.processing_provider.training import import_weights
    assert import_weights.CHECKPOINT_SUFFIXES == published.CHECKPOINT_SUFFIXES
    assert [o.name() for o in alg.outputDefinitions()] == ["OUTPUT_MODEL"]
    assert alg.shortHelpString().startswith("<p>Turns the SAR-W-SimMIM authors' published segmentation weights")


def test_a_checkpoint_becomes_a_model_segment_runs_with_the_tables_classes(sarlulc_provider, sar_raster, tmp_path):
    table = tmp_path / "classes.csv"
    table.write_text(CLASSES, encoding="utf-8")
    feedback = Recorder()
    result = processing.run("sarlulc:importweights", {"CHECKPOINT": str(FIXTURE), "CLASSES": str(table), "GSD": 12.5,
                                                      "OUTPUT_MODEL": str(tmp_path / "theirs.onnx")}, feedback=feedback)
    assert result["OUTPUT_MODEL"] == str(tmp_path / "theirs.onnx")
    contract = ModelContract.from_onnx(result["OUTPUT_MODEL"], expected_task="lulc")
    assert [(c.code, c.name) for c in contract.classes] == [(10 + i, f"Class {chr(65 + i)}") for i in range(9)]
    assert contract.gsd_m == 12.5 and contract.tile_size == 128 and contract.norm_mean == -10.4327
    assert feedback.progress[-1] == 100 and feedback.progress == sorted(feedback.progress)
    assert any(line.startswith("network: Swin embed 16") for line in feedback.lines)
    assert not any("placeholders" in line for line in feedback.lines)
    processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": result["OUTPUT_MODEL"], "DEVICE": "cpu",
                                       "OUTPUT": str(tmp_path / "classes.tif")})
    codes = set(gdal.Open(str(tmp_path / "classes.tif")).ReadAsArray().ravel().tolist())
    assert codes <= {0} | set(range(10, 19)) and codes - {0}


def _checkpoint(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        torch.save(content, path)
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("not a checkpoint file", "is not a PyTorch checkpoint file (.pth or .pt)"),
    ("unreadable", "is not a PyTorch checkpoint holding only tensors"),
    ("no state dict", "holds no state_dict"),
    ("encoder only", "a pretraining checkpoint has no decoder"),
    ("another network", "1 missing: decoder.decoder.fuse_all.0.weight"),
    ("seven classes", "lists 7 classes but the checkpoint's network has 9 output channels"),
    ("bad table", "class code 300 (C2) is outside 1..254"),
])
def test_bad_input_is_refused_before_any_work(sarlulc_provider, tmp_path, case, message):
    state = torch.load(FIXTURE, weights_only=True)["model"]
    table = None
    if case == "not a checkpoint file":
        checkpoint = _checkpoint(tmp_path, "weights.onnx", "not a checkpoint")
    elif case == "unreadable":
        checkpoint = _checkpoint(tmp_path, "notes.pth", "not a checkpoint")
    elif case == "no state dict":
        checkpoint = _checkpoint(tmp_path, "list.pth", [1, 2, 3])
    elif case == "encoder only":
        checkpoint = _checkpoint(tmp_path, "pretrained.pth", {k: v for k, v in state.items() if k.startswith("encoder.")})
    elif case == "another network":
        checkpoint = _checkpoint(tmp_path, "other.pth", {k: v for k, v in state.items()
                                                         if k != "decoder.decoder.fuse_all.0.weight"})
    else:
        checkpoint = str(FIXTURE)
        table = tmp_path / "classes.csv"
        rows = range(1, 8) if case == "seven classes" else (1, 300, 3, 4, 5, 6, 7, 8, 9)
        table.write_text("code,name,color\n" + "".join(f"{c},C{i},#000000\n" for i, c in enumerate(rows, 1)))
    parameters = {"CHECKPOINT": checkpoint, "OUTPUT_MODEL": str(tmp_path / "out" / "theirs.onnx")}
    if table:
        parameters["CLASSES"] = str(table)
    with pytest.raises(QgsProcessingException, match=message.replace("(", r"\(").replace(")", r"\)")):
        processing.run("sarlulc:importweights", parameters)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cancel_leaves_no_file(sarlulc_provider, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QgsProcessingException, match="cancelled; nothing was written"):
        processing.run("sarlulc:importweights", {"CHECKPOINT": str(FIXTURE), "OUTPUT_MODEL": str(out / "theirs.onnx")},
                       feedback=Recorder(cancel_at=25))
    assert list(out.iterdir()) == []


def test_without_torch_the_import_says_how_to_get_it(sarlulc_provider, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when it is absent
    with pytest.raises(QgsProcessingException,
                       match=r"Importing published weights needs PyTorch.*Install dependencies….*CPU build"):
        processing.run("sarlulc:importweights", {"CHECKPOINT": str(FIXTURE),
                                                 "OUTPUT_MODEL": str(tmp_path / "theirs.onnx")})
    assert not Path(tmp_path / "theirs.onnx").exists()

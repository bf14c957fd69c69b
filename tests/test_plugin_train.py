"""sarlulc:train in Processing: its parameters, a run on a real L-band crop whose model Segment then
reads, a refusal before training, and the message when torch is missing."""

import json
import sys
from pathlib import Path

import processing
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException

from sarlulc.inference.contract import ModelContract

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sf_airsar"
needs_sf = pytest.mark.skipif(not (SHARED / "sf_airsar_label.tif").exists(),
                              reason="the shared real data (../shared/data) is not here")
REMAP = Path(__file__).resolve().parents[1] / "sarlulc" / "training" / "remap_tables" / "polsf-sf-airsar.csv"


@pytest.fixture
def sf_crop(tmp_path):
    sar, label = tmp_path / "sf_sar.tif", tmp_path / "sf_label.tif"
    gdal.Translate(str(sar), str(SHARED / "sf_airsar_hh_hv_vv_db.tif"), srcWin=[500, 200, 256, 192])
    gdal.Translate(str(label), str(SHARED / "sf_airsar_label.tif"), srcWin=[500, 200, 256, 192])
    return str(sar), str(label)


def test_train_is_registered_with_its_parameters(sarlulc_provider):
    alg = QgsApplication.processingRegistry().algorithmById("sarlulc:train")
    assert alg.displayName() == "Train / fine-tune model"
    names = {p.name() for p in alg.parameterDefinitions()}
    assert {"INPUTS", "REFERENCES", "CLASS_FIELD", "REMAP", "TASK", "START", "EPOCHS", "MINUTES", "VALIDATION_SHARE",
            "DEVICE", "OUTPUT_MODEL", "OUTPUT_REPORT"} <= names
    assert alg.shortHelpString().startswith("<p>Trains a model for your area")


@needs_sf
def test_a_run_writes_a_model_segment_reads_and_its_report(sarlulc_provider, sf_crop, tmp_path):
    sar, label = sf_crop
    result = processing.run("sarlulc:train", {
        "INPUTS": [sar], "REFERENCES": [label], "REMAP": str(REMAP), "START": "random weights (from scratch)",
        "EPOCHS": 1, "CROPS_PER_EPOCH": 8, "BLOCK_SIZE": 64, "DEVICE": "cpu",
        "OUTPUT_MODEL": str(tmp_path / "area.onnx"), "OUTPUT_REPORT": str(tmp_path / "area.html")})
    assert result["OUTPUT_MODEL"] == str(tmp_path / "area.onnx")
    contract = ModelContract.from_onnx(result["OUTPUT_MODEL"], expected_task="lulc")
    assert json.loads(contract.training)["remap"] == str(REMAP)
    assert "<svg" in (tmp_path / "area.html").read_text()
    processing.run("sarlulc:segment", {"INPUT": sar, "MODEL": result["OUTPUT_MODEL"], "DEVICE": "cpu",
                                       "OUTPUT": str(tmp_path / "classes.tif")})
    assert gdal.Open(str(tmp_path / "classes.tif")).RasterXSize == 256


@needs_sf
def test_a_reference_of_one_class_is_refused_before_training(sarlulc_provider, sf_crop, tmp_path):
    sar, label = sf_crop
    water = tmp_path / "water.tif"
    gdal.Translate(str(water), label, scaleParams=[[0, 255, 1, 1]], noData=None)
    with pytest.raises(QgsProcessingException, match="one class only"):
        processing.run("sarlulc:train", {"INPUTS": [sar], "REFERENCES": [str(water)],
                                         "OUTPUT_MODEL": str(tmp_path / "area.onnx")})
    assert not (tmp_path / "area.onnx").exists()


def test_without_torch_the_run_says_how_to_get_it(sarlulc_provider, sar_raster, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when it is absent
    with pytest.raises(QgsProcessingException, match=r"Training needs PyTorch.*Install dependencies….*CPU build"):
        processing.run("sarlulc:train", {"INPUTS": [sar_raster], "REFERENCES": [sar_raster],
                                         "OUTPUT_MODEL": str(tmp_path / "area.onnx")})
    assert not (tmp_path / "area.onnx").exists()

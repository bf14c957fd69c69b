"""ONNX export: the plugin's contract is accepted, ORT agrees with torch, batch is dynamic."""

import json

import numpy as np
import onnxruntime
import pytest
import torch

from sarlulc.products import LULC_CLASSES, WATER_CLASSES
from sarlulc.errors import ModelContractError
from sarlulc.inference.contract import ModelContract
from sarlulc.training import export
from sarlulc.networks.segmentor import Segmentor
from net_support import mini_config

NORM = {"norm_clip": [-30.0, 0.0], "norm_mean": -11.5, "norm_std": 5.5}


def _checkpoint(path, task="lulc", channels=None):
    torch.manual_seed(0)
    config = mini_config(num_classes=channels or (1 if task == "water" else 9))
    model = Segmentor(config).eval()
    torch.save({"model": model.state_dict(), "net_config": config.to_dict(), "task": task,
                "normalisation": NORM, "epoch": 3}, path)
    return path


def test_lulc_export_carries_the_contract_and_matches_torch(tmp_path, capsys):
    out = tmp_path / "lulc.onnx"
    assert export.main(["--checkpoint", str(_checkpoint(tmp_path / "best.pt")), "--out", str(out),
                        "--tile-size", "64", "--tile-overlap", "16", "--trained-on", "simulated scenes"]) == 0
    printed = capsys.readouterr().out
    difference = float(printed.rsplit("=", 1)[1])
    assert difference < 1e-4
    contract = ModelContract.from_onnx(out, expected_task="lulc")
    assert [(c.code, c.name, c.color) for c in contract.classes] == [(c, n, col.lower()) for c, n, col in LULC_CLASSES]
    assert (contract.norm_clip, contract.norm_mean, contract.norm_std) == ((-30.0, 0.0), -11.5, 5.5)
    assert (contract.tile_size, contract.tile_overlap, contract.gsd_m) == (64, 16, 10.0)
    assert contract.output_activation == "softmax" and contract.input_units == "db"
    assert contract.trained_on == "simulated scenes" and "epoch 3" in contract.model_name

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert shape[1:] == [1, 64, 64] and not isinstance(shape[0], int)  # fixed tile, dynamic batch
    x = np.random.default_rng(1).standard_normal((3, 1, 64, 64)).astype(np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (3, 9, 64, 64)
    with pytest.raises(ModelContractError, match="water"):
        ModelContract.from_onnx(out, expected_task="water")


def test_water_export_declares_one_class_and_its_threshold(tmp_path):
    out = tmp_path / "water.onnx"
    export.main(["--checkpoint", str(_checkpoint(tmp_path / "w.pt", "water")), "--out", str(out),
                 "--tile-size", "64", "--tile-overlap", "16", "--water-threshold", "0.4"])
    contract = ModelContract.from_onnx(out, expected_task="water")
    assert [(c.code, c.name) for c in contract.classes] == [(c, n) for c, n, _ in WATER_CLASSES]
    assert contract.water_threshold == 0.4 and contract.output_activation == "sigmoid"
    assert contract.input_distribution is None
    assert json.loads(export.contract_for("water", export.Normalisation(), 64, 16, 10.0, 0.4, "m", "")
                      .to_metadata()["classes"])[0]["code"] == 1


def test_training_distribution_is_written_when_given(tmp_path):
    out = tmp_path / "water.onnx"
    export.main(["--checkpoint", str(_checkpoint(tmp_path / "w.pt", "water")), "--out", str(out), "--tile-size", "64",
                 "--tile-overlap", "16", "--input-distribution",
                 '{"scene_median_db": [-14, -6], "pixel_db_percentiles": {"1": -26, "50": -10, "99": 1.5}}'])
    distribution = ModelContract.from_onnx(out).input_distribution
    assert distribution.scene_median_db == (-14.0, -6.0)
    assert distribution.pixel_db_percentiles == ((1.0, -26.0), (50.0, -10.0), (99.0, 1.5))
    with pytest.raises(SystemExit, match="--input-distribution: 'scene_median_db'"):
        export.main(["--checkpoint", str(_checkpoint(tmp_path / "w.pt", "water")), "--out", str(tmp_path / "x.onnx"),
                     "--input-distribution", '{"pixel_db_percentiles": {"50": -10}}'])
    assert not (tmp_path / "x.onnx").exists()


def test_bad_options_and_mismatched_checkpoints_are_refused_before_writing(tmp_path):
    out = tmp_path / "x.onnx"
    with pytest.raises(SystemExit, match="tile_size"):
        export.main(["--checkpoint", str(_checkpoint(tmp_path / "a.pt")), "--out", str(out), "--tile-size", "100"])
    with pytest.raises(SystemExit, match="needs 9"):
        export.main(["--checkpoint", str(_checkpoint(tmp_path / "b.pt", "lulc", channels=4)), "--out", str(out)])
    torch.save({"encoder": {}}, tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match="not a checkpoint of sarlulc.training.train"):
        export.main(["--checkpoint", str(tmp_path / "encoder.pt"), "--out", str(out)])
    assert not out.exists()

"""The authors' published SAR-W-SimMIM network, rebuilt by sarlulc/training/published.py, is theirs.

How the fixtures were made (their code is not in this repository, and must not be): outside the
repository, the network was built from the authors' public code, models/swin_upernet_segmentation_ver2.py
and models/models_seg_upnet.py of github gsvrg/SAR-W-SimMIM with the Swin Transformer of
github microsoft/SimMIM (models/swin_transformer.py, which theirs imports; the three timm helpers it
uses replaced by equivalents), exactly as their build_segmentation_model calls it (patch 4, 1 input
channel, APE on, patch norm on, qkv bias, MLP ratio 4).

- ``published_sarwsimmim_tiny.pt``: the same classes at a small size (embed 16, depths 2,2,2,1,
  heads 1,2,2,4, window 8, 128 px input, so the last stage's window shrinks to its 4 x 4 map as
  in theirs; decoder 32 channels: their FPNHEAD and ProgressiveUpsampleHead built with
  out_channels 32 and in_channels_list [32, 64, 128, 128], numbers their SwinUPerNet hard-codes for
  Swin-B). Every parameter set from a fixed seed (normal, rounded to float16 to store it small),
  all buffers kept as their model saves them. ``model``: their state_dict, their key names;
  ``input``: a fixed random (1, 1, 128, 128) tile; ``output``: their model's logits on it,
  computed in float64 (so the comparison shows the architecture, not float32 rounding).
- ``published_sarwsimmim_swin_b_keys.json``: every state_dict key and shape of their network in
  the published Swin-B configuration (embed 128, depths 2,2,18,2, heads 4,8,16,32, window 8,
  256 px, 9 classes).

Outside the repository the same comparison on the full Swin-B network (their initialisation,
float32, two 256 px tiles) gave a largest difference of 2.5e-6 for logits up to 1.6.
"""

import json
import pathlib

import numpy as np
import onnxruntime
import pytest
import torch

from sarlulc.inference import engine
from sarlulc.inference.contract import ModelContract
from sarlulc.training import published
from factories import write_sar_raster

DATA = pathlib.Path(__file__).parent / "data"
FIXTURE = DATA / "published_sarwsimmim_tiny.pt"


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def test_our_network_gives_their_outputs_for_their_weights(fixture):
    config = published.config_of(fixture["model"])
    assert config == published.PublishedConfig(img_size=128, embed_dim=16, depths=(2, 2, 2, 1), num_heads=(1, 2, 2, 4),
                                               window_size=8, decoder_channels=32, num_classes=9)
    model = published.load_published(fixture["model"], config).double()
    with torch.no_grad():
        ours = model(fixture["input"].double())
    theirs = fixture["output"].double()
    assert ours.shape == theirs.shape == (1, 9, 128, 128)
    assert float((ours - theirs).abs().max()) <= 1e-4
    assert float(theirs.abs().max()) > 1.0  # not a trivial output


def test_the_published_swin_b_has_exactly_our_tensors_under_their_names():
    theirs = json.loads((DATA / "published_sarwsimmim_swin_b_keys.json").read_text())
    with torch.device("meta"):
        ours = published.PublishedSegmentor(published.PublishedConfig()).state_dict()
    mapped = {published.their_name(k): list(v.shape) for k, v in ours.items()}
    loaded = {k: v for k, v in theirs.items()
              if k not in published.UNUSED_KEYS and not k.endswith(published.DERIVED_SUFFIXES)}
    assert mapped == loaded
    zeros = {k: torch.zeros(v) for k, v in theirs.items() if not k.endswith(published.DERIVED_SUFFIXES)}
    assert published.config_of(zeros) == published.PublishedConfig()


def test_cli_exports_a_contract_model_that_segments(tmp_path, fixture, capsys):
    out = tmp_path / "sarwsimmim.onnx"
    assert published.main([str(FIXTURE), "-o", str(out)]) == 0
    assert "placeholders" in capsys.readouterr().out
    contract = ModelContract.from_onnx(out, expected_task="lulc")
    assert [c.name for c in contract.classes] == [f"Class {i + 1} (output {i})" for i in range(9)]
    assert (contract.norm_mean, contract.norm_std, contract.input_units) == (-10.4327, 5.8041, "db")
    assert contract.norm_clip[0] <= -60 and contract.norm_clip[1] >= 30  # their code does not clip
    assert contract.tile_size == 128 and contract.task == "lulc" and "published" in contract.trained_on

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: fixture["input"].numpy()})[0]
    # float32 through ONNX Runtime against their float64 logits (up to ~20 with these random weights).
    assert np.abs(onnx_out - fixture["output"].numpy()).max() <= 2e-3

    sar = write_sar_raster(tmp_path / "hh.tif", 200, 150)
    run = engine.segment(sar, str(tmp_path / "map.tif"), model_path=str(out),
                         options=engine.RunOptions(device="cpu"))
    from osgeo import gdal
    classes = gdal.Open(run.output_path).ReadAsArray()
    assert classes.shape == (150, 200) and set(np.unique(classes)) <= set(range(1, 10))


def test_class_table_names_the_outputs(tmp_path):
    table = tmp_path / "classes.csv"
    table.write_text("code,name,color\n" + "".join(f"{10 + i},Name {i},#10203{i}\n" for i in range(9)))
    out = tmp_path / "named.onnx"
    assert published.main([str(FIXTURE), "-o", str(out), "--classes", str(table)]) == 0
    contract = ModelContract.from_onnx(out, expected_task="lulc")
    assert [(c.code, c.name, c.color) for c in contract.classes] == [(10 + i, f"Name {i}", f"#10203{i}") for i in range(9)]


def _refusal(capsys, argv) -> str:
    assert published.main(argv) == 2
    return capsys.readouterr().err


def test_refusals_say_what_is_wrong_and_write_nothing(tmp_path, capsys, fixture):
    out = tmp_path / "x.onnx"
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("not a checkpoint")
    assert "not a PyTorch checkpoint" in _refusal(capsys, [str(not_a_checkpoint), "-o", str(out)])

    state = dict(fixture["model"])
    del state["decoder.decoder.fuse_all.0.weight"]
    state["decoder.aux_head.weight"] = torch.zeros(3)
    broken = tmp_path / "broken.pth"
    torch.save({"model": state}, broken)
    message = _refusal(capsys, [str(broken), "-o", str(out)])
    assert "1 missing: decoder.decoder.fuse_all.0.weight" in message
    assert "1 unexpected: decoder.aux_head.weight" in message

    encoder_only = {k: v for k, v in fixture["model"].items() if k.startswith("encoder.")}
    torch.save({"model": encoder_only}, broken)
    assert "pretraining checkpoint has no decoder" in _refusal(capsys, [str(broken), "-o", str(out)])

    table = tmp_path / "seven.csv"
    table.write_text("code,name,color\n" + "".join(f"{i},C{i},#000000\n" for i in range(1, 8)))
    message = _refusal(capsys, [str(FIXTURE), "-o", str(out), "--classes", str(table)])
    assert "lists 7 classes" in message and "9 output channels" in message
    assert not out.exists() and not list(tmp_path.glob("*.onnx*"))


def test_reads_a_checkpoint_as_their_training_saves_it(tmp_path, fixture, monkeypatch):
    """Their save_checkpoint stores the yacs config object beside the weights; it is read without yacs."""
    import sys
    import types

    class CfgNode(dict):
        pass
    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    module = types.ModuleType("yacs.config")
    module.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", types.ModuleType("yacs"))
    monkeypatch.setitem(sys.modules, "yacs.config", module)
    path = tmp_path / "ckpt_epoch_42.pth"
    torch.save({"model": fixture["model"], "optimizer": {"state": {}}, "max_accuracy": 0.49, "epoch": 42,
                "config": CfgNode(MODEL=CfgNode(TYPE="swin"))}, path)
    monkeypatch.delitem(sys.modules, "yacs.config")
    monkeypatch.delitem(sys.modules, "yacs")
    assert set(published.read_state_dict(path)) == set(fixture["model"])

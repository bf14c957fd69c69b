"""Training a model for an area (sarlulc/training/finetune.py): the bundled ONNX models rebuilt in torch,
a few training steps on a real L-band crop, the output as a contract Segment runs, vector
references, every refusal before training, and cancel leaving no file."""

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from osgeo import gdal, ogr, osr

from sarlulc.inference import engine
from sarlulc.inference.contract import ModelContract, bundled_model_path
from sarlulc.training import finetune
from sarlulc.training.area_labels import validation_blocks
from sarlulc.training.finetune import TrainingCancelled, TrainingRefused, TrainRequest, train_for_area
from sarlulc.training.onnx_weights import segmentor_from_onnx, train_keeping_batch_norm
from tests import net_support  # noqa: F401 (one torch thread on the shared test machine)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sf_airsar"
SF_SAR, SF_LABEL = SHARED / "sf_airsar_hh_hv_vv_db.tif", SHARED / "sf_airsar_label.tif"
CROP = [500, 200, 256, 192]  # water, urban and parks of San Francisco (PolSF codes 3, 4, 5)
needs_sf = pytest.mark.skipif(not SF_SAR.exists(), reason="the shared real data (../shared/data) is not here")
QUICK = dict(epochs=2, samples_per_epoch=16, batch_size=4, crop_size=64, block_size=64, threads=1, device="cpu")


@pytest.fixture(scope="module")
def sf_crop(tmp_path_factory):
    """(SAR crop with its 3 bands, PolSF label crop) of the real AIRSAR San Francisco scene."""
    folder = tmp_path_factory.mktemp("sf")
    sar, label = folder / "sf_sar.tif", folder / "sf_label.tif"
    gdal.Translate(str(sar), str(SF_SAR), srcWin=CROP)
    gdal.Translate(str(label), str(SF_LABEL), srcWin=CROP)
    return sar, label


def request(sf_crop, out: Path, **changes) -> TrainRequest:
    sar, label = sf_crop
    fields = dict(rasters=[str(sar)], references=[str(label)], out_model=str(out / "area.onnx"),
                  report=str(out / "area.html"), remap="polsf-sf-airsar", **QUICK)
    fields.update(changes)
    return TrainRequest(**fields)


@pytest.mark.parametrize("task", ["lulc", "water"])
def test_bundled_onnx_rebuilt_in_torch_gives_the_same_logits(task):
    model, contract = segmentor_from_onnx(bundled_model_path(task))
    x = np.random.default_rng(1).standard_normal((2, 1, 256, 256)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(bundled_model_path(task)), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert contract.task == task
    assert np.abs(got - expected).max() < 1e-4
    # fine-tuning's mode: the batch norms keep the statistics the export folded in
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_var.clone() for m in norms]
    train_keeping_batch_norm(model)
    model(torch.from_numpy(x)).sum().backward()
    assert model.training and not any(m.training for m in norms)
    assert all(torch.equal(m.running_var, var) for m, var in zip(norms, before))


def test_validation_blocks_are_whole_blocks_holding_the_share():
    codes = [np.ones((256, 256), np.uint8), np.zeros((64, 64), np.uint8)]
    held = validation_blocks(codes, 0.25, 64, seed=3)
    assert held[0].sum() == 64 * 64 * 4 and not held[1].any()
    blocks = held[0].reshape(4, 64, 4, 64).transpose(0, 2, 1, 3).reshape(16, -1)
    assert set(blocks.mean(axis=1).tolist()) <= {0.0, 1.0}  # a block is held out whole or not at all
    with pytest.raises(TrainingRefused, match="at least two"):
        validation_blocks([np.ones((64, 64), np.uint8)], 0.2, 64, seed=0)


@needs_sf
def test_training_moves_the_map_towards_the_labels_and_writes_a_contract_segment_runs(sf_crop, tmp_path):
    logged = []
    result = train_for_area(request(sf_crop, tmp_path, start="scratch", lr=2e-3, epochs=3, samples_per_epoch=24),
                            log=logged.append)
    # scored on validation blocks never trained on, for the random start and the kept epoch
    assert result.trained_scores["overall_accuracy"] > result.start_scores["overall_accuracy"] + 0.1
    assert any(line.startswith("device: cpu") for line in logged)
    assert any("s on cpu" in line for line in logged)  # each epoch's time
    contract = ModelContract.from_onnx(tmp_path / "area.onnx", expected_task="lulc")
    training = json.loads(contract.training)
    assert training["inputs"][0]["reference"].endswith("sf_label.tif") and training["epochs_run"] == 3
    assert training["validation"]["trained_model"]["overall_accuracy"] == result.trained_scores["overall_accuracy"]
    assert contract.input_distribution is not None and [c.code for c in contract.classes] == list(range(1, 10))
    report = (tmp_path / "area.html").read_text()
    assert report.count("<svg") >= 4 and "Confusion matrix" in report and "starting model" in report
    sar = sf_crop[0]
    run = engine.segment(str(sar), str(tmp_path / "map.tif"), model_path=str(tmp_path / "area.onnx"),
                         options=engine.RunOptions(device="cpu"))
    classes = gdal.Open(run.output_path)
    assert classes.GetGeoTransform() == gdal.Open(str(sar)).GetGeoTransform()
    assert set(np.unique(classes.ReadAsArray()).tolist()) <= set(range(0, 10))


def write_polygons(path: Path, sar: Path, label: Path) -> str:
    """A GeoPackage of one square polygon per PolSF class found in the crop, class field by name."""
    dataset = gdal.Open(str(sar))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    codes = gdal.Open(str(label)).ReadAsArray()
    names = {3: "Water", 4: "built-up", 5: "Broadleaf forest"}
    srs = osr.SpatialReference(wkt=dataset.GetProjection())
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("checks", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("landcover", ogr.OFTString))
    for code, name in names.items():
        for row, column in zip(*np.nonzero(codes[8:-40:24, 8:-40:24] == code)):
            row, column = 8 + 24 * row, 8 + 24 * column
            if not (codes[row:row + 32, column:column + 32] == code).all():
                continue
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for px, py in ((column, row), (column + 32, row), (column + 32, row + 32), (column, row + 32),
                           (column, row)):
                ring.AddPoint_2D(x0 + px * dx, y0 + py * dy)
            polygon = ogr.Geometry(ogr.wkbPolygon)
            polygon.AddGeometry(ring)
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("landcover", name)
            feature.SetGeometry(polygon)
            layer.CreateFeature(feature)
    source = None
    return f"{path}|layername=checks"


@needs_sf
def test_polygon_reference_fine_tunes_the_bundled_model(sf_crop, tmp_path):
    polygons = write_polygons(tmp_path / "checks.gpkg", *sf_crop)
    result = train_for_area(request(sf_crop, tmp_path, references=[polygons], class_field="landcover", remap=None,
                                    epochs=1, block_size=32), log=lambda line: None)
    contract = ModelContract.from_onnx(result.model_path, expected_task="lulc")
    assert "fine-tuned from SAR LULC Swin lulc" in contract.trained_on
    assert set(result.start_scores["iou"]) >= {"Water", "Built-up"}


def write_raster(path: Path, like: Path, values: np.ndarray, data_type=gdal.GDT_Byte, shift_m: float = 0.0) -> str:
    source = gdal.Open(str(like))
    x0, dx, rx, y0, ry, dy = source.GetGeoTransform()
    target = gdal.GetDriverByName("GTiff").Create(str(path), values.shape[1], values.shape[0], 1, data_type)
    target.SetGeoTransform((x0 + shift_m, dx, rx, y0, ry, dy))
    target.SetProjection(source.GetProjection())
    target.GetRasterBand(1).WriteArray(values)
    target = None
    return str(path)


@needs_sf
@pytest.mark.parametrize("case, message", [
    ("beside", "does not overlap the SAR raster"),
    ("one class", "one class only"),
    ("outside legend", "outside the legend"),
    ("fractional", "fractional values"),
    ("few pixels", "at least 1000 are needed"),
    ("no field", "name its class field"),
])
def test_bad_references_are_refused_before_training(sf_crop, tmp_path, monkeypatch, case, message):
    sar, label = sf_crop
    codes = gdal.Open(str(label)).ReadAsArray()
    reference = {
        "beside": lambda: write_raster(tmp_path / "r.tif", label, codes, shift_m=50_000.0),
        "one class": lambda: write_raster(tmp_path / "r.tif", label, np.where(codes > 0, 1, 0).astype(np.uint8)),
        "outside legend": lambda: write_raster(tmp_path / "r.tif", label, np.where(codes == 3, 12, codes)),
        "fractional": lambda: write_raster(tmp_path / "r.tif", label, codes * 0.5, gdal.GDT_Float32),
        "few pixels": lambda: write_raster(tmp_path / "r.tif", label,
                                           np.pad(np.array([[1] * 20, [2] * 20], np.uint8), ((0, 190), (0, 236)))),
        "no field": lambda: write_polygons(tmp_path / "checks.gpkg", sar, label),
    }[case]()
    monkeypatch.setattr(finetune, "SegmentationCrops", None)  # training would fail on it: refusals come first
    with pytest.raises(TrainingRefused, match=message):
        train_for_area(request(sf_crop, tmp_path / "out", references=[reference], remap=None), log=lambda line: None)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_settings_are_refused_before_reading(tmp_path):
    base = dict(rasters=["a.tif", "b.tif"], references=["r.tif"], out_model=str(tmp_path / "m.onnx"))
    for changes, message in (({"references": ["r1.tif", "r2.tif", "r3.tif"]}, "one per raster"),
                             ({"out_model": str(tmp_path / "m.tif")}, "must end in .onnx"),
                             ({"validation_share": 0.0}, "between 0 and 1"),
                             ({"input_units": "volts"}, "Input units"),
                             ({"crop_size": 100}, "multiple of 32")):
        with pytest.raises(TrainingRefused, match=message):
            finetune.check_request(TrainRequest(**{**base, **changes}))


@needs_sf
def test_cancel_leaves_no_file(sf_crop, tmp_path):
    polls = []

    def cancel_during_training():
        polls.append(1)
        return len(polls) > 4  # after data preparation, within the first epoch
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TrainingCancelled):
        train_for_area(request(sf_crop, out, start="scratch"), log=lambda line: None,
                       is_cancelled=cancel_during_training)
    assert len(polls) == 5
    assert list(out.iterdir()) == []


@needs_sf
def test_cli_refuses_with_a_message_and_exit_code(sf_crop, tmp_path, capsys):
    sar, label = sf_crop
    shifted = write_raster(tmp_path / "r.tif", label, gdal.Open(str(label)).ReadAsArray() + 10)
    code = finetune.main(["--sar", str(sar), "--reference", shifted, "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert "outside the legend" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()

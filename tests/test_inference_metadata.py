"""The model contract: round trip, and refusals that name the offending key."""

import json

import pytest

from sarlulc.products import LULC_CLASSES, WATER_CLASSES
from sarlulc.errors import ModelContractError
from sarlulc.inference.contract import ClassInfo, InputDistribution, ModelContract, bundled_model_path

from factories import write_pixel_lulc_model, write_pixel_water_model


def lulc_metadata(**changes):
    metadata = {
        "sarlulc_contract": "1", "task": "lulc",
        "classes": json.dumps([{"code": c, "name": n, "color": k} for c, n, k in LULC_CLASSES]),
        "output_activation": "softmax", "input_units": "db", "norm_clip": "[-35.0, 5.0]",
        "norm_mean": "-12.0", "norm_std": "6.0", "gsd_m": "10", "tile_size": "256", "tile_overlap": "64",
    }
    metadata.update(changes)
    return {key: value for key, value in metadata.items() if value is not None}


def test_contract_example_of_contract_md_is_accepted():
    contract = ModelContract.from_metadata(lulc_metadata(model_name="SAR LULC Swin-T refined"), "m.onnx")
    assert contract.task == "lulc" and contract.tile_size == 256 and contract.tile_overlap == 64
    assert contract.classes[0] == ClassInfo(1, "Water", "#1f4e9c")
    assert [c.code for c in contract.classes] == list(range(1, 10))
    assert contract.norm_clip == (-35.0, 5.0) and contract.water_threshold is None
    assert contract.model_name == "SAR LULC Swin-T refined"


def test_to_metadata_round_trips():
    contract = ModelContract.from_metadata(lulc_metadata(trained_on="simulated scenes"), "m.onnx")
    assert ModelContract.from_metadata(contract.to_metadata(), "m.onnx") == contract


def test_from_onnx_reads_factory_models(tmp_path):
    lulc = ModelContract.from_onnx(write_pixel_lulc_model(tmp_path / "l.onnx", tile_size=128, tile_overlap=32))
    assert (lulc.task, lulc.tile_size, lulc.tile_overlap) == ("lulc", 128, 32)
    water = ModelContract.from_onnx(write_pixel_water_model(tmp_path / "w.onnx", threshold=0.35), "water")
    assert water.water_threshold == 0.35 and water.classes == (ClassInfo(*WATER_CLASSES[0]),)
    with pytest.raises(ModelContractError, match="is a water model, but this algorithm needs a lulc model"):
        ModelContract.from_onnx(tmp_path / "w.onnx", expected_task="lulc")


def test_model_name_defaults_to_the_file_name():
    assert ModelContract.from_metadata(lulc_metadata(), "/models/my_model.onnx").model_name == "my_model"


@pytest.mark.parametrize("changes, message", [
    (dict(task=None), "lacks the metadata key 'task'"),
    (dict(sarlulc_contract="2"), "'sarlulc_contract'.*version 1"),
    (dict(task="roads"), "'task'.*lulc, water"),
    (dict(output_activation="sigmoid"), "'output_activation'.*softmax"),
    (dict(input_units="amplitude"), "'input_units'"),
    (dict(classes="[{\"code\": 1}]"), "'classes'.*needs an integer code, a name"),
    (dict(classes="not json"), "'classes'.*not valid JSON"),
    (dict(classes=json.dumps([{"code": 1, "name": "A", "color": "#000000"}] * 2)), "'classes'.*unique"),
    (dict(classes=json.dumps([{"code": 0, "name": "A", "color": "#000000"},
                              {"code": 2, "name": "B", "color": "#000000"}])), "'classes'.*outside 1..254"),
    (dict(norm_clip="[5, -35]"), "'norm_clip'.*low < high"),
    (dict(norm_std="0"), "'norm_std'.*positive"),
    (dict(norm_mean="abc"), "'norm_mean'.*not a number"),
    (dict(tile_size="100"), "'tile_size'.*multiple of 32"),
    (dict(tile_overlap="128"), "'tile_overlap'.*less than half"),
])
def test_invalid_metadata_names_the_key_and_points_to_the_contract(changes, message):
    with pytest.raises(ModelContractError, match=message) as raised:
        ModelContract.from_metadata(lulc_metadata(**changes), "m.onnx")
    assert "CONTRACT.md" in str(raised.value)


def test_water_models_need_a_threshold_and_one_class():
    water_class = json.dumps([{"code": 1, "name": "Water", "color": "#1f78b4"}])
    water = dict(task="water", output_activation="sigmoid", classes=water_class)
    with pytest.raises(ModelContractError, match="lacks the metadata key 'water_threshold'"):
        ModelContract.from_metadata(lulc_metadata(**water), "w.onnx")
    with pytest.raises(ModelContractError, match="'water_threshold'.*between 0 and 1"):
        ModelContract.from_metadata(lulc_metadata(water_threshold="1.5", **water), "w.onnx")
    with pytest.raises(ModelContractError, match="exactly one class"):
        ModelContract.from_metadata(lulc_metadata(**dict(water, classes=lulc_metadata()["classes"]),
                                                  water_threshold="0.5"), "w.onnx")


def test_bundled_model_paths():
    assert bundled_model_path("lulc").parts[-3:] == ("model", "weights", "lulc.onnx")
    assert bundled_model_path("water").name == "water.onnx"
    with pytest.raises(ValueError):
        bundled_model_path("roads")


def test_input_distribution_is_optional_and_round_trips():
    assert ModelContract.from_metadata(lulc_metadata(), "m.onnx").input_distribution is None
    text = '{"scene_median_db": [-14, -6.5], "pixel_db_percentiles": {"99": 1.5, "1": -26, "50": -10}}'
    contract = ModelContract.from_metadata(lulc_metadata(input_distribution=text), "m.onnx")
    assert contract.input_distribution == InputDistribution((-14.0, -6.5), ((1.0, -26.0), (50.0, -10.0), (99.0, 1.5)))
    assert ModelContract.from_metadata(contract.to_metadata(), "m.onnx") == contract


@pytest.mark.parametrize("value, message", [
    ("[-14, -6]", r"expected \{\"scene_median_db\""),
    ('{"pixel_db_percentiles": {"50": -10}}', "'scene_median_db' must be \\[low, high\\]"),
    ('{"scene_median_db": [-6, -14], "pixel_db_percentiles": {"50": -10}}', "low <= high"),
    ('{"scene_median_db": [-14, -6], "pixel_db_percentiles": {}}', "non-empty object"),
    ('{"scene_median_db": [-14, -6], "pixel_db_percentiles": {"p99": 1}}', "entry 'p99'"),
    ('{"scene_median_db": [-14, -6], "pixel_db_percentiles": {"1": -5, "99": -20}}', "must not decrease"),
])
def test_invalid_input_distribution_names_the_key(value, message):
    with pytest.raises(ModelContractError, match=f"'input_distribution'.*{message}") as raised:
        ModelContract.from_metadata(lulc_metadata(input_distribution=value), "m.onnx")
    assert "CONTRACT.md" in str(raised.value)

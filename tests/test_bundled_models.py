"""The shipped models on the demo scene: a calibration error of +-4 dB must not change the map.

Real products are often off by several dB (another calibration factor, airborne sensors,
third-party processing). The bundled models are normalised per scene (CONTRACT.md, norm_mode),
so a shifted copy of the same scene must give (nearly) the same classes.
"""

import numpy as np
import pytest

from model.inference import engine
from model.inference.metadata import NORM_SCENE, ModelContract, bundled_model_path
from model.inference.reader import open_raster
from tests.factories import write_sar_raster

DEMO = "demo/demo_scene_hh_db.tif"


def _demo_db():
    dataset = open_raster(DEMO)
    band = dataset.GetRasterBand(1)
    return band.ReadAsArray().astype(np.float64), band.GetNoDataValue()


@pytest.mark.parametrize("task", ["lulc", "water"])
def test_bundled_model_is_scene_normalised(task):
    contract = ModelContract.from_onnx(bundled_model_path(task), expected_task=task)
    assert contract.norm_mode == NORM_SCENE
    assert "ETCI" in contract.trained_on or task == "lulc"


@pytest.mark.parametrize("task", ["lulc", "water"])
@pytest.mark.parametrize("shift_db", [-4.0, 4.0])
def test_bundled_model_agrees_with_itself_under_a_calibration_shift(tmp_path, task, shift_db):
    db, nodata = _demo_db()
    run = engine.segment if task == "lulc" else engine.detect_water
    reference = tmp_path / "reference.tif"
    run(DEMO, str(reference))
    shifted = write_sar_raster(tmp_path / "shifted.tif", db.shape[1], db.shape[0], values=np.where(
        db == nodata, nodata, db + shift_db), nodata=nodata)
    result = tmp_path / "shifted_out.tif"
    run(shifted, str(result))
    a = open_raster(reference).GetRasterBand(1).ReadAsArray()
    b = open_raster(result).GetRasterBand(1).ReadAsArray()
    nodata_code = engine.LULC_NODATA if task == "lulc" else engine.WATER_NODATA
    valid = a != nodata_code
    assert valid.mean() > 0.9 and np.array_equal(valid, b != nodata_code)
    assert np.mean(a[valid] == b[valid]) >= 0.9

"""tools/choose_water_threshold.py: the water model's default threshold from its training scenes,
scored only where training learnt (ETCI chips whose labelled water the SAR shows)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
from osgeo import gdal

from tests.factories import write_pixel_water_model

REPO = pathlib.Path(__file__).resolve().parent.parent


def _etci_like_pair(folder: pathlib.Path) -> pathlib.Path:
    """A 512 px ETCI-like scene (8-bit brightness, no CRS) of four 256 px chips. Top left: a dark
    lake labelled water. Top right: bright fields labelled flood water, which the SAR does not show
    (training leaves this chip's labels out). Bottom: dry fields."""
    rng = np.random.default_rng(3)
    brightness = rng.integers(140, 170, (512, 512)).astype(np.uint8)  # about -11..-8 dB on the nominal stretch
    labels = np.zeros((512, 512), np.uint8)
    brightness[40:140, 40:140] = rng.integers(20, 40, (100, 100))  # about -23 dB
    labels[40:140, 40:140] = 1
    labels[40:140, 300:400] = 1
    for name, array in (("scene_vv.tif", brightness), ("scene_label.tif", labels)):
        dataset = gdal.GetDriverByName("GTiff").Create(str(folder / name), 512, 512, 1, gdal.GDT_Byte)
        dataset.GetRasterBand(1).WriteArray(array)
        dataset = None
    listing = folder / "train.txt"
    listing.write_text("scene_vv.tif scene_label.tif profile=etci2021\n")
    return listing


def test_the_threshold_is_scored_on_the_chips_training_learnt_from(tmp_path):
    listing = _etci_like_pair(tmp_path)
    # Water 6 dB below the scene's land level: the lake, not the bright "flood" fields.
    model = write_pixel_water_model(tmp_path / "water.onnx", norm_mode="scene-land", norm_clip=(-25.0, 20.0),
                                    norm_mean=0.0, water_below_db=-18.0)
    run = subprocess.run([sys.executable, str(REPO / "tools" / "choose_water_threshold.py"), "--model", model,
                          "--data", str(listing), "--out", str(tmp_path / "threshold.json")],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    figures = json.loads((tmp_path / "threshold.json").read_text())
    ious = figures["water_iou"]
    assert list(ious) == ["0.2", "0.25", "0.3", "0.35", "0.4", "0.45", "0.5", "0.55", "0.6", "0.65", "0.7", "0.75",
                          "0.8", "0.85", "0.9", "0.95"]
    # Counting the screened chip's 10,000 labelled pixels would cap the IoU at one half.
    assert min(ious.values()) > 0.95
    assert run.stdout.strip().splitlines()[-1] == str(figures["best"])
    assert ious[str(figures["best"])] == max(ious.values())
    assert "scene_vv.tif: 196608 pixels scored" in run.stderr  # three chips of 256 x 256

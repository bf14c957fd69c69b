"""tools/choose_water_threshold.py: the water model's default threshold from its training scenes,
scored only where training learnt (ETCI chips whose labelled water the SAR shows)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
from osgeo import gdal

from factories import write_class_raster, write_pixel_water_model, write_sar_raster

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


def _calibrated_pair(folder: pathlib.Path) -> pathlib.Path:
    """A simulated-format scene in dB: a lake whose water is spread over -24..-18.5 dB (the toy model
    gives it p 0.58..0.98 as it is, 0.34..0.95 when the scene is 1.5 dB brighter) in land at -12 dB."""
    rng = np.random.default_rng(5)
    db = rng.normal(-12.0, 0.5, (128, 128))
    labels = np.full((128, 128), 2, np.uint8)  # built-up: land
    db[32:96, 32:96] = rng.uniform(-24.0, -18.5, (64, 64))
    labels[32:96, 32:96] = 1
    folder.mkdir()
    write_sar_raster(folder / "lake_sar.tif", 128, 128, values=db)
    write_class_raster(folder / "lake_label.tif", labels)
    return folder


def _choose(model, data, out, *extra):
    return subprocess.run([sys.executable, str(REPO / "tools" / "choose_water_threshold.py"), "--model", model,
                           "--data", *data, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_the_threshold_can_be_chosen_to_hold_under_a_calibration_error(tmp_path):
    scenes = _calibrated_pair(tmp_path / "scenes")
    model = write_pixel_water_model(tmp_path / "water.onnx", water_below_db=-18.0)
    plain = _choose(model, [str(scenes)], tmp_path / "plain.json")
    robust = _choose(model, [str(scenes)], tmp_path / "robust.json", "--shifts", "-1.5", "0", "1.5")
    assert plain.returncode == 0 and robust.returncode == 0, plain.stderr + robust.stderr
    plain_figures, figures = (json.loads((tmp_path / name).read_text()) for name in ("plain.json", "robust.json"))
    # As it is, every threshold up to 0.55 finds the whole lake: the tie goes to 0.5.
    assert plain_figures["best"] == 0.5 and plain_figures["water_iou"]["0.5"] == 1.0
    # 1.5 dB brighter, 0.5 loses the lake's brightest water; only 0.2..0.3 keep all of it at every shift.
    per_shift = figures["per_set"][str(scenes)]
    assert per_shift["1.5"]["0.5"] < 0.9 and per_shift["0"]["0.5"] == 1.0
    assert figures["best"] == 0.3 and figures["water_iou"]["0.3"] == 1.0
    assert figures["water_iou"]["0.5"] == min(per_shift[shift]["0.5"] for shift in ("-1.5", "0", "1.5"))
    assert robust.stdout.strip().splitlines()[-1] == "0.3"
    assert "lake_sar.tif (+1.5 dB): 16384 pixels scored" in robust.stderr


def test_a_calibration_error_is_refused_on_relative_brightness(tmp_path):
    listing = _etci_like_pair(tmp_path)
    model = write_pixel_water_model(tmp_path / "water.onnx")
    run = _choose(model, [str(listing)], tmp_path / "threshold.json", "--shifts", "0", "1.5")
    assert run.returncode == 2
    assert "scene_vv.tif: relative brightness" in run.stderr and "--shifts only with calibrated sets" in run.stderr
    assert not (tmp_path / "threshold.json").exists()

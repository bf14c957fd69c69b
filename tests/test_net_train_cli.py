"""Training data and the pretrain/train CLIs end to end on tiny GeoTIFF pairs (1 epoch, CPU)."""

import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from osgeo import gdal

from sarlulc.training import plumbing, pretrain, train
from sarlulc.networks.configs import named_config
from sarlulc.training.mixmae import MixMAE
from sarlulc.rasters.windows import Window
from sarlulc.sar.units import RELATIVE_LAND_DB, RELATIVE_STRETCH_DB
from sarlulc.training.datasets import SegmentationCrops, SegmentationTiles
from sarlulc.training.input_statistics import Normalisation, normalisation_for
from sarlulc.training.rasters import SarRaster
from sarlulc.training.sampling import label_histogram, label_targets, task_histogram
from sarlulc.training.sources import find_pairs
from sarlulc.training.losses import IGNORE_INDEX
from sarlulc.networks.segmentor import Segmentor
from net_support import mini_config, write_pair

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--epochs", "1", "--samples-per-epoch", "4", "--batch-size", "2", "--crop-size", "64",
        "--workers", "0", "--threads", "1"]


@pytest.fixture
def scenes(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    write_pair(folder, "a", 96, seed=1)
    write_pair(folder, "b", 80, seed=2)
    return folder


def test_pairs_from_folders_and_list_files(scenes, tmp_path):
    pairs = find_pairs([scenes])
    assert [(s.sar.name, s.label.name, s.profile) for s in pairs] == [
        ("a_sar.tif", "a_label.tif", "sarlulc"), ("b_sar.tif", "b_label.tif", "sarlulc")]
    listing = tmp_path / "train.txt"
    listing.write_text("# one scene\nscenes/b_sar.tif\n")
    assert find_pairs([listing]) == [pairs[1]]
    (scenes / "b_label.tif").unlink()
    with pytest.raises(FileNotFoundError, match="b_label.tif"):
        find_pairs([scenes])


def test_crops_use_the_contract_normalisation_and_ignore_nodata(scenes):
    norm = Normalisation((-20.0, 0.0), -10.0, 4.0)
    pairs = find_pairs([scenes])
    tiles = SegmentationTiles(pairs[:1], norm, 64, "lulc")
    assert len(tiles) == 4  # 96 px: tiles at 0 and 32 on each axis
    image, target = tiles[0]
    db = gdal.Open(str(pairs[0][0])).ReadAsArray(0, 0, 64, 64)
    codes = gdal.Open(str(pairs[0][1])).ReadAsArray(0, 0, 64, 64)
    nodata = db == -9999.0
    expected = np.where(nodata, 0.0, (np.clip(db, -20.0, 0.0) + 10.0) / 4.0)
    assert np.allclose(image[0].numpy(), expected, atol=1e-6)
    assert (target.numpy()[nodata] == IGNORE_INDEX).all()
    assert np.array_equal(target.numpy()[~nodata], codes[~nodata].astype(np.int64) - 1)
    crops = SegmentationCrops(pairs, norm, 64, 3, "lulc", seed=5)
    first = crops[1]
    assert first[0].shape == (1, 64, 64) and first[1].shape == (64, 64)
    assert torch.equal(crops[1][0], first[0])  # same (seed, epoch, index), same crop
    crops.set_epoch(1)
    assert not torch.equal(crops[1][0], first[0])


def test_water_targets_and_label_histogram(scenes):
    codes = np.array([[0, 1, 4], [6, 1, 9]], np.uint8)
    valid = np.array([[True, True, True], [True, True, False]])
    assert label_targets(codes, valid, "water").tolist() == [[IGNORE_INDEX, 1, 0], [0, 1, IGNORE_INDEX]]
    counts = label_histogram(find_pairs([scenes])[:1], "lulc")
    assert counts.sum() == 96 * 96 and counts[0] == 100  # the 10 x 10 nodata corner
    assert set(np.flatnonzero(counts[1:]) + 1) <= {1, 4, 6}


def test_train_cli_writes_checkpoints_metrics_and_resumes(scenes, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--train", str(scenes), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "val mIoU" in printed and "per-class IoU: Water" in printed and "Solar panel" in printed
    for name in ("best.pt", "last.pt", "metrics.json"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "lulc" and len(metrics["epochs"]) == 1
    assert set(metrics["epochs"][0]["val_iou"]) == set(metrics["classes"]) and len(metrics["classes"]) == 9
    last = torch.load(out / "last.pt")
    assert last["epoch"] == 1 and {"optimizer", "scheduler", "scaler", "normalisation"} <= set(last)

    resumed = FAST.copy()
    resumed[1] = "2"
    train.main(["--train", str(scenes), "--out", str(out), *resumed, "--resume", str(out / "last.pt")])
    assert "resuming" in capsys.readouterr().out
    assert [e["epoch"] for e in json.loads((out / "metrics.json").read_text())["epochs"]] == [1, 2]


def test_weight_average_ramps_up_and_follows_the_trained_weights():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = plumbing.WeightAverage(model, decay=0.99)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked.fill_(5)
    average.update(model)
    # first step: decay ramps from 2/11, so the average moves most of the way to the new weights
    assert torch.allclose(average.model[0].weight, start + 9 / 11)
    assert int(average.model[1].num_batches_tracked) == 5
    assert not any(p.requires_grad for p in average.model.parameters())
    for _ in range(2000):
        average.update(model)
    assert torch.allclose(average.model[0].weight, model[0].weight, atol=1e-6)


@pytest.mark.parametrize("option_again", [True, False], ids=["option given again", "option not given again"])
def test_train_cli_validates_and_saves_the_weight_average_and_resumes_it(scenes, tmp_path, capsys, option_again):
    out = tmp_path / "run"
    assert train.main(["--train", str(scenes), "--out", str(out), *FAST, "--ema-decay", "0.9"]) == 0
    assert "moving average of the weights (decay 0.9" in capsys.readouterr().out
    last = torch.load(out / "last.pt")
    assert last["average_steps"] == 2
    differs = [k for k, v in last["model"].items() if v.is_floating_point()
               and not torch.equal(v, last["trained_model"][k])]
    assert differs, "the saved weights are the average, not the last step's"
    resumed = FAST.copy()
    resumed[1] = "2"
    option = ["--ema-decay", "0.9"] if option_again else []
    train.main(["--train", str(scenes), "--out", str(out), *resumed, *option, "--resume", str(out / "last.pt")])
    assert ("continuing it" in capsys.readouterr().out) != option_again
    last = torch.load(out / "last.pt")
    assert last["average_steps"] == 4 and last["args"]["ema_decay"] == 0.9


@pytest.mark.parametrize("decay", ["1", "-0.1"])
def test_a_weight_average_decay_outside_0_1_is_refused(scenes, tmp_path, capsys, decay):
    with pytest.raises(SystemExit):
        train.main(["--train", str(scenes), "--out", str(tmp_path / "run"), *FAST, "--ema-decay", decay])
    assert "--ema-decay must be in [0, 1)" in capsys.readouterr().err


def test_pretrained_encoder_feeds_an_ablation_run(scenes, tmp_path, capsys):
    pre = tmp_path / "pre"
    assert pretrain.main(["--data", str(scenes), "--out", str(pre), *FAST]) == 0
    assert "SAR-W reconstruction loss" in capsys.readouterr().out
    encoder = torch.load(pre / "encoder.pt")
    assert {"encoder", "encoder_config", "normalisation"} <= set(encoder)
    assert encoder["encoder_config"]["drop_path"] == 0.0  # no stochastic depth while pretraining, by default
    metrics = json.loads((pre / "metrics.json").read_text())
    assert metrics["sarw_domain"] == "power" and 0.0 < metrics["sarw_weights"]["median"] <= 1.0
    assert torch.load(pre / "last.pt")["no_decay"] == ["bias_table", "mask_token"]
    mixmae = MixMAE(named_config("tiny-cpu").encoder)
    decayed, not_decayed = plumbing.adamw(mixmae, 1e-3, 0.05, ("bias_table", "mask_token")).param_groups
    assert any(p is mixmae.mask_token for p in not_decayed["params"]) and not_decayed["weight_decay"] == 0.0
    assert not any(p is mixmae.mask_token for p in decayed["params"])
    out = tmp_path / "ablation"
    train.main(["--train", str(scenes), "--out", str(out), "--task", "water", "--alpha", "0",
                "--no-hr-injection", "--no-refine-up", "--pretrained-encoder", str(pre / "encoder.pt"), *FAST])
    printed = capsys.readouterr().out
    assert "encoder initialised" in printed and "water IoU" in printed
    checkpoint = torch.load(out / "best.pt")
    assert checkpoint["net_config"]["hr_injection"] is False and checkpoint["net_config"]["refine_up"] is False
    assert checkpoint["normalisation"] == encoder["normalisation"]  # the pretraining's input statistics
    assert checkpoint["class_weights"] == [1.0, 1.0]

    model = Segmentor(named_config("tiny-cpu"))
    train.load_pretrained_encoder(model, pre / "encoder.pt")
    for name, tensor in encoder["encoder"].items():
        assert torch.equal(model.encoder.state_dict()[name], tensor)
    with pytest.raises(ValueError, match="embed_dim"):
        train.load_pretrained_encoder(Segmentor(mini_config()), pre / "encoder.pt")


def _torchrun(module: str, *args) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 -m module args`` on CPU (gloo), one thread per process."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", module,
         "--device", "cpu", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_process_ddp_pretraining_and_fine_tuning_run_on_cpu_with_gloo(scenes, tmp_path):
    """Every parameter must get a gradient on every rank, or DDP stops at the second step."""
    pre = tmp_path / "pre"
    two_steps = [*FAST[:2], "--samples-per-epoch", "8", *FAST[4:]]  # 2 steps per rank
    result = _torchrun("sarlulc.training.pretrain", "--data", str(scenes), "--out", str(pre), *two_steps)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SAR-W reconstruction loss" in result.stdout and (pre / "encoder.pt").is_file()
    out = tmp_path / "ddp"
    result = _torchrun("sarlulc.training.train", "--train", str(scenes), "--out", str(out),
                       "--pretrained-encoder", str(pre / "encoder.pt"), *two_steps)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val mIoU" in result.stdout and (out / "best.pt").is_file()


def _etci_like(tmp_path):
    """An ETCI-2021-like pair: uint8 stretched brightness without CRS (0 no chip, 255 saturated chip),
    labels 0 not water / 1 flood / 2 permanent water / 255 nodata."""
    rng = np.random.default_rng(3)
    brightness = rng.integers(110, 200, (64, 64)).astype(np.uint8)
    brightness[:, :16] = rng.integers(5, 60, (64, 16))  # dark water on the left
    brightness[:8, 32:] = 255
    brightness[56:, :] = 0
    labels = np.zeros((64, 64), np.uint8)
    labels[:, :12], labels[:, 12:16] = 1, 2
    labels[56:, :] = 255
    paths = []
    for name, array in (("etci_vv.tif", brightness), ("etci_label.tif", labels)):
        dataset = gdal.GetDriverByName("GTiff").Create(str(tmp_path / name), 64, 64, 1, gdal.GDT_Byte)
        dataset.GetRasterBand(1).WriteArray(array)
        if name.endswith("vv.tif"):
            dataset.GetRasterBand(1).SetNoDataValue(0)
        dataset = None
        paths.append(tmp_path / name)
    listing = tmp_path / "etci.txt"
    listing.write_text(f"{paths[0].name} {paths[1].name} profile=etci2021\n")
    return listing, brightness, labels


def test_etci_profile_reads_uncalibrated_water_labels_in_place(tmp_path):
    listing, brightness, labels = _etci_like(tmp_path)
    (scene,) = find_pairs([listing])
    assert scene.profile == "etci2021"
    counts = label_histogram([scene], "water")
    assert counts[1] == int(np.isin(labels, [1, 2]).sum())  # flood and permanent water are both water
    assert task_histogram(counts, "water").tolist() == [int((labels == 0).sum()), int(np.isin(labels, [1, 2]).sum())]
    with pytest.raises(ValueError, match="water task only"):
        label_histogram([scene], "lulc")
    sar = SarRaster(scene.sar, scene.profile)
    db, valid = sar.read_db(Window(0, 0, 64, 64))
    # read as the plugin reads any 8-bit input: the fitted stretch, its land level moved to RELATIVE_LAND_DB
    at_zero, per_step = RELATIVE_STRETCH_DB
    np.testing.assert_allclose(db[20, 20], at_zero + per_step * brightness[20, 20] + sar.offset_db, rtol=1e-5)
    assert sar.scene.land_median == pytest.approx(RELATIVE_LAND_DB, abs=0.01)
    normalisation = normalisation_for("scene", [scene])
    assert normalisation.norm_mode == "scene" and normalisation.norm_clip == (-25.0, 20.0)
    tiles = SegmentationTiles([scene], normalisation, 64, "water")
    image, target = tiles[0]
    assert (target[:8, 32:] == IGNORE_INDEX).all()  # saturated chip: no information
    assert (target[56:] == IGNORE_INDEX).all() and (image[0, 56:] == 0).all()  # no chip: nodata
    assert (target[:8, :12] == 1).all() and (target[10:50, 20:30] == 0).all()
    assert image[0, 10:50, :12].mean() < -1 < 0 < image[0, 10:50, 20:].mean()  # water below the scene median


def _etci_chips(tmp_path, size=512):
    """An ETCI-like scene of four 256 px chips: top left, dark water labelled water (kept); top right,
    bright fields labelled flood water (the SAR shows none: screened out); bottom left, dry; bottom right,
    one 32 px pond in dry land (1 % of the scene)."""
    rng = np.random.default_rng(4)
    brightness = rng.integers(130, 180, (size, size)).astype(np.uint8)
    labels = np.zeros((size, size), np.uint8)
    brightness[40:140, 40:140] = rng.integers(10, 50, (100, 100))
    labels[40:140, 40:140] = 1
    labels[300:, 300:] = 0
    labels[40:140, 300:400] = 1  # labelled flood, as bright as the fields around it
    brightness[400:432, 400:432] = rng.integers(10, 50, (32, 32))
    labels[400:432, 400:432] = 2
    names = []
    for name, array in (("chips_vv.tif", brightness), ("chips_label.tif", labels)):
        dataset = gdal.GetDriverByName("GTiff").Create(str(tmp_path / name), size, size, 1, gdal.GDT_Byte)
        dataset.GetRasterBand(1).WriteArray(array)
        dataset = None
        names.append(name)
    listing = tmp_path / "chips.txt"
    listing.write_text(f"{names[0]} {names[1]} profile=etci2021\n")
    return find_pairs([listing])[0]


def test_training_leaves_out_water_labels_the_sar_does_not_show_and_validation_keeps_them(tmp_path):
    scene = _etci_chips(tmp_path)
    normalisation = normalisation_for("scene", [scene])
    crops = SegmentationCrops([scene], normalisation, 128, 1, "water")
    assert crops.kept_chips[0].tolist() == [[True, False], [True, True]]
    _, kept = crops.read(0, 20, 20)
    assert (kept[20:120, 20:120] == 1).all() and (kept[:20, :20] == 0).all()  # water and land of a kept chip
    _, screened = crops.read(0, 280, 20)
    assert (screened == IGNORE_INDEX).all()
    _, straddling = crops.read(0, 200, 20)  # columns 200..255 in the kept chip, 256.. in the screened one
    assert (straddling[:, :56] != IGNORE_INDEX).all() and (straddling[:, 56:] == IGNORE_INDEX).all()
    tiles = SegmentationTiles([scene], normalisation, 256, "water")
    scored = {(x, y): target for (_, x, y, _, _), (_, target) in zip(tiles.tiles, tiles)}
    assert (scored[(256, 0)][40:140, 44:144] == 1).all()  # held-out scores count every label


def test_balanced_crops_show_a_rare_class_as_often_as_a_common_one(tmp_path):
    scene = _etci_chips(tmp_path)
    normalisation = normalisation_for("scene", [scene])

    def water_share(balanced_share):
        crops = SegmentationCrops([scene], normalisation, 64, 120, "water", seed=2, balanced_share=balanced_share)
        return np.mean([(crops[i][1] == 1).any().item() for i in range(len(crops))])

    uniform, balanced = water_share(0.0), water_share(1.0)
    assert uniform < 0.2 and 0.4 < balanced < 0.65  # half of the balanced crops hold water
    crops = SegmentationCrops([scene], normalisation, 64, 1, "water", balanced_share=1.0)
    water_cells = crops.cells[0][1]
    columns = 512 // 32
    assert {divmod(int(cell), columns) for cell in water_cells} == {(r, c) for r in range(1, 5) for c in range(1, 5)} | \
        {(r, c) for r in range(12, 14) for c in range(12, 14)}  # the screened chip's labels are not a target


def test_profile_shares_set_how_many_crops_each_kind_of_data_gives(scenes, tmp_path):
    pairs = find_pairs([scenes]) + [_etci_chips(tmp_path)]
    normalisation = normalisation_for("scene", pairs)

    def real_share(shares):
        crops = SegmentationCrops(pairs, normalisation, 64, 1, "water", shares=shares)
        rng = np.random.default_rng(0)
        return np.mean([crops._uniform_origin(rng)[0] == 2 for _ in range(2000)])

    assert real_share(None) == pytest.approx(0.5, abs=0.04)
    assert real_share({"etci2021": 0.75}) == pytest.approx(0.75, abs=0.04)
    assert real_share({"sarlulc": 0.9, "etci2021": 0.1}) == pytest.approx(0.1, abs=0.03)


@pytest.mark.parametrize("shares, message", [
    (["sentinel=0.5"], "--profile-share: profile share for sentinel: no training source has that profile "
                       "\\(present: sarlulc\\)"),
    (["sarlulc=0.5"], "--profile-share: profile shares {'sarlulc': 0.5} leave 0.5 for no other profile"),
    (["sarlulc"], "--profile-share takes PROFILE=SHARE, e.g. etci2021=0.75; got sarlulc"),
])
def test_profile_shares_that_do_not_add_up_are_refused_before_training(scenes, tmp_path, capsys, shares, message):
    argv = ["--train", str(scenes), "--val", str(scenes), "--out", str(tmp_path / "out"), *FAST]
    for share in shares:
        argv += ["--profile-share", share]
    with pytest.raises(SystemExit) as stopped:
        train.main(argv)
    text = str(stopped.value) + capsys.readouterr().err
    assert re.search(message, text), text
    assert not (tmp_path / "out" / "best.pt").exists()


def test_scene_normalisation_ignores_calibration_and_jitter_moves_the_level(scenes):
    from sarlulc.inference.normalisation import SceneStatistics, prepare_input
    from sarlulc.training.sampling import CalibrationJitter

    pairs = find_pairs([scenes])
    normalisation = normalisation_for("scene", pairs)
    sar = SarRaster(pairs[0].sar)
    db, valid = sar.read_db(Window(0, 0, 96, 96))
    shifted = db - 7.5
    a = prepare_input(db, valid, normalisation, SceneStatistics.of(db[valid]))
    b = prepare_input(shifted, valid, normalisation, SceneStatistics.of(shifted[valid]))
    np.testing.assert_allclose(a, b, atol=1e-4)
    rng = np.random.default_rng(0)
    moved = [float(np.median(CalibrationJitter(level_db=4.0).apply(db, sar.scene, rng)[valid])) for _ in range(50)]
    assert 6.0 < np.ptp(moved) <= 8.0  # offsets spread over +-4 dB
    assert abs(np.mean(moved) - np.median(db[valid])) < 1.0
    assert CalibrationJitter().apply(db, sar.scene, rng) is db


def test_scene_normalised_model_records_its_training_distribution(scenes, tmp_path):
    out = tmp_path / "scene"
    assert train.main(["--train", str(scenes), "--val", str(scenes), "--out", str(out), "--task", "water", "--norm-mode", "scene",
                       "--level-jitter", "3", *FAST]) == 0
    checkpoint = torch.load(out / "best.pt")
    assert checkpoint["normalisation"]["norm_mode"] == "scene"
    low, high = checkpoint["input_distribution"]["scene_median_db"]
    medians = [SarRaster(s.sar).scene.median for s in find_pairs([scenes])]
    assert low == pytest.approx(min(medians) - 3, abs=0.01) and high == pytest.approx(max(medians) + 3, abs=0.01)

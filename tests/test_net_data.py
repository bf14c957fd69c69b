"""The training data layer reads what the plugin's engine feeds the model: model grid, units, labels."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from osgeo import gdal, osr

from sarlulc.rasters.resample import decide_model_grid
from sarlulc.inference.contract import NORM_FIXED
from sarlulc.sar.units import InputUnits
from sarlulc.rasters.windows import Window
from sarlulc.training import train
from sarlulc.training.datasets import SegmentationTiles
from sarlulc.training.input_statistics import Normalisation
from sarlulc.training.rasters import LabelRaster, ReadOptions, SarRaster, label_offset, open_rasters, read_options
from sarlulc.training.sources import Scene, find_images, find_pairs
from sarlulc.training.losses import IGNORE_INDEX
from factories import write_pixel_lulc_model
from net_support import codes_from_db, write_pair

FAST = ["--epochs", "1", "--samples-per-epoch", "4", "--batch-size", "2", "--crop-size", "64",
        "--workers", "0", "--threads", "1"]
JAXA_PIXEL_DEG = 1.0 / 12000.0  # the JAXA ALOS-2 and HRLULC tiles' pixel
REPO = pathlib.Path(__file__).resolve().parents[1]


def _write(path, array, geotransform=None, epsg=None, nodata=None, data_type=gdal.GDT_Float32) -> str:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[1], array.shape[0], 1, data_type)
    if geotransform is not None:
        dataset.SetGeoTransform(geotransform)
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        dataset.SetSpatialRef(srs)
    if nodata is not None:
        dataset.GetRasterBand(1).SetNoDataValue(nodata)
    dataset.GetRasterBand(1).WriteArray(array)
    dataset = None
    return str(path)


@pytest.fixture
def degree_pair(tmp_path):
    """A 600 x 600 px pair in EPSG:4326 at 1/12000 degree near 36 N (7.5 x 9.2 m pixels), as JAXA ships them."""
    rng = np.random.default_rng(0)
    db = (-12.0 + 5.0 * rng.standard_normal((600, 600))).astype(np.float32)
    db[:40, :90] = -9999.0
    geotransform = (140.0, JAXA_PIXEL_DEG, 0.0, 36.05, 0.0, -JAXA_PIXEL_DEG)
    sar = _write(tmp_path / "n36e140_sar.tif", db, geotransform, 4326, -9999.0)
    blocks = np.kron(rng.integers(1, 10, (20, 20)), np.ones((30, 30), int)).astype(np.uint8)
    label = _write(tmp_path / "n36e140_label.tif", blocks, geotransform, 4326, 0, gdal.GDT_Byte)
    return sar, label


def test_training_reads_a_degree_tile_on_the_engines_model_grid(degree_pair):
    """The model input itself is compared with the engine's in test_net_input_equivalence; here the grid
    and the labels on it."""
    sar_path, label_path = degree_pair
    grid = decide_model_grid(gdal.Open(sar_path), 10.0)
    sar = SarRaster(sar_path)
    assert sar.grid == grid and (sar.width, sar.height) == (grid.width, grid.height)
    assert osr.SpatialReference(wkt=grid.srs_wkt).GetAuthorityCode(None) == "32654"  # UTM 54N, 10 m pixels
    whole = Window(0, 0, sar.width, sar.height)
    _, valid = sar.read_db(whole)
    assert valid[100:-100, 100:-100].all() and 0.8 < valid.mean() < 0.99  # nodata corner, margins

    label = LabelRaster(label_path, "sarlulc", sar)
    nearest = gdal.Warp("", label_path, format="MEM", dstSRS=grid.srs_wkt, width=grid.width, height=grid.height,
                        outputBounds=(grid.geotransform[0], grid.geotransform[3] + grid.geotransform[5] * grid.height,
                                      grid.geotransform[0] + grid.geotransform[1] * grid.width, grid.geotransform[3]),
                        resampleAlg="near").ReadAsArray()
    codes = label.read(whole)
    assert np.mean(codes == nearest) > 0.999 and set(np.unique(codes)) <= set(range(10))


def test_rasters_are_measured_in_several_processes_with_the_same_result(tmp_path, degree_pair):
    write_pair(tmp_path, "a", 64, seed=1)
    scenes = [Scene(pathlib.Path(degree_pair[0]), None), Scene(tmp_path / "a_sar.tif", None)]
    here, parallel = open_rasters(scenes, ReadOptions(), 1), open_rasters(scenes, ReadOptions(), 2)
    assert list(here) == [str(scene.sar) for scene in scenes] == list(parallel)
    for path, sar in here.items():
        assert parallel[path].facts() == sar.facts() and parallel[path].grid == sar.grid
        assert np.array_equal(parallel[path].sample_db(), sar.sample_db())
    assert here[degree_pair[0]].grid is not None and here[str(tmp_path / "a_sar.tif")].grid is None


FORK_AFTER_A_MODEL_RAN = """
import gc, sys, time
import numpy as np, onnxruntime
from sarlulc.training import rasters
from sarlulc.training.sources import Scene

options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 2
session = onnxruntime.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
session.run(None, {"sar": np.zeros((1, 1, 64, 64), np.float32)})
time.sleep(1.0)  # its worker threads stop spinning and wait
cycle = [session]
cycle.append(cycle)
del session, cycle
gc.disable()  # the garbage stays until someone collects it: here, each forked process
measure = rasters._measure


def collecting_measure(job):
    gc.collect()
    return measure(job)


rasters._measure = collecting_measure
rasters.open_rasters([Scene(sys.argv[2], None), Scene(sys.argv[3], None)], rasters.ReadOptions(), processes=2)
print("measured")
"""


def test_measuring_in_processes_after_a_model_ran_does_not_hang(tmp_path, degree_pair):
    """A model session left in a reference cycle (as a finished run may leave one) is freed before the
    processes fork: freed in one of them, its destructor would wait forever for threads it has not."""
    model = write_pixel_lulc_model(tmp_path / "model.onnx")
    second = _write(tmp_path / "b_sar.tif", np.full((50, 60), -8.0, np.float32),
                    (500000.0, 10.0, 0, 4000000.0, 0, -10.0), 32654)
    command = [sys.executable, "-c", FORK_AFTER_A_MODEL_RAN, model, degree_pair[0], second]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        output, errors = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("measuring rasters in forked processes hung on a model session's destructor")
    assert process.returncode == 0 and "measured" in output, errors


def test_labels_must_share_the_sar_pixel_grid(tmp_path):
    db = np.full((40, 40), -10.0, np.float32)
    sar = _write(tmp_path / "s_sar.tif", db, (500000.0, 10.0, 0, 4000000.0, 0, -10.0), 32654)
    other_crs = _write(tmp_path / "crs.tif", np.ones((40, 40), np.uint8), (140.0, 1e-4, 0, 36.0, 0, -1e-4), 4326,
                       data_type=gdal.GDT_Byte)
    with pytest.raises(ValueError, match="another coordinate reference system"):
        label_offset(sar, other_crs)
    shifted = _write(tmp_path / "shift.tif", np.ones((40, 40), np.uint8), (500005.0, 10.0, 0, 4000000.0, 0, -10.0),
                     32654, data_type=gdal.GDT_Byte)
    with pytest.raises(ValueError, match="fraction of a pixel"):
        label_offset(sar, shifted)
    coarser = _write(tmp_path / "coarse.tif", np.ones((20, 20), np.uint8), (500000.0, 20.0, 0, 4000000.0, 0, -20.0),
                     32654, data_type=gdal.GDT_Byte)
    with pytest.raises(ValueError, match="pixel size"):
        label_offset(sar, coarser)
    # a larger label on the same lattice, starting 5 columns and 3 rows earlier: read at that offset
    codes = (np.arange(50 * 50).reshape(50, 50) % 9 + 1).astype(np.uint8)
    larger = _write(tmp_path / "larger.tif", codes, (499950.0, 10.0, 0, 4000030.0, 0, -10.0), 32654,
                    data_type=gdal.GDT_Byte)
    assert label_offset(sar, larger) == (5, 3)
    read = LabelRaster(larger, "sarlulc", SarRaster(sar)).read(Window(0, 0, 40, 40))
    assert np.array_equal(read, codes[3:43, 5:45])
    # a smaller one: the rest is nodata
    smaller = _write(tmp_path / "smaller.tif", codes[:20, :20], (500000.0, 10.0, 0, 4000000.0, 0, -10.0), 32654,
                     data_type=gdal.GDT_Byte)
    read = LabelRaster(smaller, "sarlulc", SarRaster(sar)).read(Window(10, 10, 20, 20))
    assert np.array_equal(read[:10, :10], codes[10:20, 10:20]) and not read[10:, :].any() and not read[:, 10:].any()


def test_single_rasters_folders_and_list_files_are_sources(tmp_path):
    write_pair(tmp_path, "a", 64, seed=1)
    sar = tmp_path / "a_sar.tif"
    assert [(s.sar, s.label) for s in find_pairs([sar])] == [(sar, tmp_path / "a_label.tif")]
    assert [s.sar for s in find_images([sar])] == [sar]
    odd = tmp_path / "scene.tif"
    odd.write_bytes(sar.read_bytes())
    with pytest.raises(ValueError, match="list it as 'SAR_PATH LABEL_PATH'"):
        find_pairs([odd])
    binary = tmp_path / "notes.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="neither a raster GDAL can read nor a text list file"):
        find_images([binary])


def test_input_units_and_calibration_factor_options(tmp_path):
    dn = np.full((32, 32), 1000, np.uint16)
    dn[0, 0] = 0
    path = _write(tmp_path / "dn_sar.tif", dn, (500000.0, 10.0, 0, 4000000.0, 0, -10.0), 32654,
                  data_type=gdal.GDT_UInt16)
    args = train.parse_args(["--train", "x", "--out", "y", "--input-units", "dn", "--calibration-factor", "-80"])
    options = read_options(args)
    assert options == ReadOptions(InputUnits.DN, -80.0, 10.0)
    sar = SarRaster(path, options=options)
    db, valid = sar.read_db(Window(0, 0, 32, 32))
    assert not valid[0, 0] and valid[1:].all()  # DN 0 is nodata
    np.testing.assert_allclose(db[valid], 10 * np.log10(1000.0 ** 2) - 80.0, atol=1e-4)
    assert SarRaster(path, options=ReadOptions(InputUnits.LINEAR)).units is InputUnits.LINEAR  # the user's word wins


def test_a_tile_that_is_99_percent_nodata_trains(tmp_path):
    """Units and statistics come from a decimated read of the whole raster, which finds the corner
    that holds data; crops mostly of nodata are redrawn or ignored, not fatal."""
    folder = tmp_path / "sparse"
    folder.mkdir()
    db = np.full((300, 300), -9999.0, np.float32)
    db[:30, :30] = np.random.default_rng(4).uniform(-25.0, -2.0, (30, 30))
    sar = _write(folder / "sparse_sar.tif", db, (500000.0, 10.0, 0, 4000000.0, 0, -10.0), 32654, -9999.0)
    _write(folder / "sparse_label.tif", np.where(db > -9999.0, codes_from_db(db), 0).astype(np.uint8),
           (500000.0, 10.0, 0, 4000000.0, 0, -10.0), 32654, 0, gdal.GDT_Byte)
    assert SarRaster(sar).units is InputUnits.DB
    out = tmp_path / "run"
    assert train.main(["--train", str(folder), "--out", str(out), *FAST]) == 0
    assert (out / "best.pt").is_file()


def test_validation_scores_each_labelled_pixel_once_and_skips_empty_tiles(tmp_path):
    for name, size, seed in (("a", 96, 1), ("b", 80, 2)):
        write_pair(tmp_path, name, size, seed)
    # b: everything but a 10 px border strip unlabelled, so tiles without labels exist
    label = gdal.Open(str(tmp_path / "b_label.tif"), gdal.GA_Update)
    codes = label.ReadAsArray()
    codes[:, 10:] = 0
    label.GetRasterBand(1).WriteArray(codes)
    label = None
    pairs = find_pairs([tmp_path])
    tiles = SegmentationTiles(pairs, Normalisation(), 64, "lulc")
    assert len(tiles) == 4 + 2  # a: 2 x 2 tiles; b: only the left column of its 2 x 2 holds labels
    scored = sum(int((tiles[i][1] != IGNORE_INDEX).sum()) for i in range(len(tiles)))
    expected = 0
    for scene in pairs:
        sar, labels = gdal.Open(str(scene.sar)).ReadAsArray(), gdal.Open(str(scene.label)).ReadAsArray()
        expected += int(((labels != 0) & (sar != -9999.0)).sum())
    assert scored == expected
    subset = SegmentationTiles(pairs, Normalisation(), 64, "lulc", tiles=tiles.tiles, max_tiles=3, seed=7)
    again = SegmentationTiles(pairs, Normalisation(), 64, "lulc", tiles=tiles.tiles, max_tiles=3, seed=7)
    assert subset.tiles == again.tiles and set(subset.tiles) < set(tiles.tiles) and len(subset) == 3


def test_validation_labels_are_checked_before_the_first_epoch(tmp_path):
    train_folder, val_folder = tmp_path / "train", tmp_path / "val"
    train_folder.mkdir()
    val_folder.mkdir()
    write_pair(train_folder, "a", 64, seed=1)
    _, label = write_pair(val_folder, "v", 64, seed=2)
    dataset = gdal.Open(label, gdal.GA_Update)
    codes = dataset.ReadAsArray()
    codes[5:7, 5:7] = 12  # a JAXA code never remapped
    dataset.GetRasterBand(1).WriteArray(codes)
    dataset = None
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"v_label\.tif' holds class code\(s\) 12.*sarlulc\.training\.remap"):
        train.main(["--train", str(train_folder), "--val", str(val_folder), "--out", str(out), *FAST])
    assert not (out / "last.pt").exists()


def test_statistics_are_cached_and_validation_can_be_sparse(tmp_path, capsys):
    write_pair(tmp_path, "a", 96, seed=1)
    out = tmp_path / "run"
    two_epochs = ["--epochs", "2", *FAST[2:], "--val-every", "2", "--val-max-tiles", "2"]
    assert train.main(["--train", str(tmp_path), "--out", str(out), *two_epochs]) == 0
    printed = capsys.readouterr().out
    assert "validation: 2 tiles of 64 px (random subset of 4), every 2 epochs" in printed
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert "val_miou" not in epochs[0] and "val_miou" in epochs[1]
    statistics = json.loads((out / train.STATISTICS_FILE).read_text())["value"]
    assert statistics["facts"][str(tmp_path / "a_sar.tif")]["units"] == "dB"
    assert statistics["normalisation"]["norm_mode"] == NORM_FIXED and len(statistics["val_tiles"]) == 4

    rerun = tmp_path / "rerun"
    rerun.mkdir()
    (rerun / train.STATISTICS_FILE).write_bytes((out / train.STATISTICS_FILE).read_bytes())
    assert train.main(["--train", str(tmp_path), "--out", str(rerun), *FAST]) == 0
    assert "data statistics read from" in capsys.readouterr().out
    checkpoint = torch.load(rerun / "best.pt")
    assert Normalisation.from_dict(checkpoint["normalisation"]) == Normalisation.from_dict(statistics["normalisation"])
    assert checkpoint["gsd_m"] == 10.0
    label = gdal.Open(str(tmp_path / "a_label.tif"), gdal.GA_Update)  # a changed file: computed again
    label.GetRasterBand(1).WriteArray(np.ones((96, 96), np.uint8))
    label = None
    assert train.main(["--train", str(tmp_path), "--out", str(rerun), *FAST]) == 0
    assert "data statistics read from" not in capsys.readouterr().out
    assert json.loads((rerun / train.STATISTICS_FILE).read_text())["value"]["class_counts"][0] == 96 * 96

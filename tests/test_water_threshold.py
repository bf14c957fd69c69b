"""Water Detect's classical baseline (METHOD threshold) and the warning for inputs unlike the
model's training data, through the engine, Processing, qgis_process and the evaluation tool."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsRasterLayer

from sarlulc.products import WATER_CLASSES
from sarlulc.inference import engine
from sarlulc.errors import CancelledError, OptionError
from sarlulc.inference.contract import ModelContract, bundled_model_path
from sarlulc.inference.threshold import fit_two_gaussians, kittler_illingworth_threshold, otsu_threshold, sample_grid
from factories import (DEMO_LIKE_DISTRIBUTION, water_land_scene, write_alos2_mosaic_tile, write_changed_backscatter,
                       write_pixel_water_model, write_sar_raster)
from test_plugin_algorithms import RecordingFeedback, assert_same_grid, palette, sidecar_palette
from test_plugin_headless import QGIS_PROCESS, plugin_zip, qgis_env, qgis_process  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "demo_scene_hh_db.tif"
NODATA_BOX = (0, 0, 40, 30)
WATER_LEGEND = {WATER_CLASSES[0][0]: (WATER_CLASSES[0][1], WATER_CLASSES[0][2])}


class WarningFeedback(RecordingFeedback):
    """Also keeps the warnings (shown in orange in the dialog, 'WARNING' in qgis_process)."""

    def __init__(self):
        super().__init__()
        self.warnings = []

    def pushWarning(self, warning):  # noqa: N802 (QGIS API)
        self.warnings.append(warning)
        super().pushWarning(warning)


def bimodal_scene(path, offset_db=0.0, **scene_options):
    """A river-and-lake scene (water -22 dB, land -8 dB, 4 looks) with nodata in one corner."""
    db, water = water_land_scene(400, 300, seed=1, **scene_options)
    return write_sar_raster(path, 400, 300, values=db + offset_db, nodata_box=NODATA_BOX), water


def read_mask(path):
    """(band 1 values, its nodata value)."""
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    return band.ReadAsArray(), band.GetNoDataValue()


def valid_of(path):
    values, nodata = read_mask(path)
    return values != nodata


def iou(predicted, truth):
    return (predicted & truth).sum() / (predicted | truth).sum()


def run_threshold(sar, output, model, **options):
    lines, warnings = [], []
    report = engine.detect_water(sar, output, model_path=model,
                                 options=engine.RunOptions(method="threshold", **options),
                                 log=lines.append, warn=warnings.append)
    return report, "\n".join(lines), warnings


# ---------------------------------------------------------------- the threshold itself

def test_otsu_kittler_illingworth_and_the_two_gaussian_fit_find_the_two_populations():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-22.0, 2.0, 30000), rng.normal(-8.0, 3.0, 70000)])
    fit = fit_two_gaussians(values, 256)
    assert fit.dark_mean == pytest.approx(-22.0, abs=0.3) and fit.bright_mean == pytest.approx(-8.0, abs=0.3)
    assert fit.dark_share == pytest.approx(0.3, abs=0.02) and fit.ashman_d > 4
    assert fit.is_bimodal(0.1)
    # The Bayes boundary of these two Gaussians is near -16.4 dB; both thresholds fall between the modes.
    assert -17.5 < kittler_illingworth_threshold(values, fit.dark_mean, fit.bright_mean) < -15.5
    assert -18.0 < otsu_threshold(values) < -12.0
    one_population = fit_two_gaussians(rng.normal(-8.0, 3.0, 50000), 256)
    assert not one_population.is_bimodal(0.01)


def test_sample_tiles_are_bounded_and_reach_every_edge_of_any_raster():
    huge = sample_grid(200_000, 150_000)
    assert len(huge) <= 1024
    assert (huge[0].x, huge[0].y) == (0, 0)
    assert (huge[-1].x_end, huge[-1].y_end) == (200_000, 150_000)
    small = sample_grid(150, 110)
    assert len(small) == 4 and all(w.x_end <= 150 and w.y_end <= 110 for w in small)
    assert {w.x for w in small} == {0, 150 - small[0].width} and {w.y for w in small} == {0, 110 - small[0].height}
    assert sample_grid(20, 500)[0].width == 20  # a strip narrower than a tile


# ---------------------------------------------------------------- the engine

def test_threshold_method_maps_a_bimodal_scene_with_a_threshold_between_the_modes(water_model, tmp_path):
    sar, water = bimodal_scene(tmp_path / "scene.tif")
    output = tmp_path / "water.tif"
    report, log, warnings = run_threshold(sar, output, water_model)

    assert report.method == "threshold" and report.providers == [] and report.extra_output_path is None
    assert -19.0 < report.water_threshold_db < -11.0  # water near -22.6 dB, land near -8.6 dB (4-look speckle)
    assert f"Water threshold: {report.water_threshold_db:.2f} dB" in log and "Kittler-Illingworth" in log
    assert "only sets the 10 m working grid" in log and warnings == []
    assert_same_grid(output, sar)
    mask, nodata = read_mask(output)
    valid = valid_of(sar)
    assert nodata == 255 and np.all(mask[~valid] == 255)
    assert set(np.unique(mask[valid])) == {0, 1}
    assert iou(mask[valid] == 1, water[valid]) >= 0.95
    dataset = gdal.Open(str(output))
    band = dataset.GetRasterBand(1)
    rat = band.GetDefaultRAT()
    assert {rat.GetValueAsInt(row, 0): rat.GetValueAsString(row, 1) for row in range(rat.GetRowCount())} == {
        0: "Not water", 1: "Water"}
    assert band.GetColorTable().GetColorEntry(1)[:3] == (0x1f, 0x78, 0xb4)


def test_threshold_moves_with_the_calibration(water_model, tmp_path):
    """An unknown gain in dB shifts the threshold with the data: the same water is found."""
    reference, _, _ = run_threshold(bimodal_scene(tmp_path / "scene.tif")[0], tmp_path / "w.tif", water_model)
    for offset in (-10.0, 5.0):
        sar, _ = bimodal_scene(tmp_path / f"scene{offset:+g}.tif", offset)
        report, _, _ = run_threshold(sar, tmp_path / f"w{offset:+g}.tif", water_model)
        assert report.water_threshold_db == pytest.approx(reference.water_threshold_db + offset, abs=0.5)
        agreement = np.mean(read_mask(tmp_path / f"w{offset:+g}.tif")[0] == read_mask(tmp_path / "w.tif")[0])
        assert agreement > 0.995


def test_a_calibrated_scene_of_one_land_population_marks_no_water_and_says_why(water_model, tmp_path):
    sar, _ = bimodal_scene(tmp_path / "land.tif", water=False)
    report, log, warnings = run_threshold(sar, tmp_path / "water.tif", water_model)

    assert report.water_threshold_db is None
    assert "Water threshold: none" in log and "at the level of land" in log and "water ceiling -17 dB" in log
    assert warnings == []
    mask, _ = read_mask(tmp_path / "water.tif")
    valid = valid_of(sar)
    assert np.all(mask[valid] == 0) and np.all(mask[~valid] == 255)


def test_a_relative_scene_of_one_population_marks_no_water_and_warns_it_cannot_tell(water_model, tmp_path):
    db, _ = water_land_scene(400, 300, seed=1, water=False)
    stretched = np.clip(np.round((db + 24.0) / 0.101), 1, 255)
    sar = write_sar_raster(tmp_path / "land8.tif", 400, 300, dtype="uint8", nodata=0, values=stretched)
    report, log, warnings = run_threshold(sar, tmp_path / "water.tif", water_model)
    assert report.water_threshold_db is None and "Water threshold: none" in log
    assert len(warnings) == 1 and "No water/land contrast found" in warnings[0]
    assert "no absolute level" in warnings[0] and "no pixel is marked water" in warnings[0]


def test_bright_targets_beside_land_are_not_taken_for_water(water_model, tmp_path):
    """Towns (double bounce, +2 dB) in a land scene give bimodal tiles whose darker side is land."""
    db, _ = water_land_scene(400, 300, seed=2, water=False)
    y, x = np.mgrid[0:300, 0:400]
    town = ((x // 50) % 3 == 0) & ((y // 40) % 2 == 0)
    db = np.where(town, db + 10.0, db)
    sar = write_sar_raster(tmp_path / "towns.tif", 400, 300, values=db)
    report, _, warnings = run_threshold(sar, tmp_path / "water.tif", water_model)
    mask, _ = read_mask(tmp_path / "water.tif")
    assert np.mean(mask == 1) < 0.01
    assert report.water_threshold_db is None and warnings == []


def test_threshold_on_a_finer_grid_is_found_on_the_model_grid_and_mapped_back(water_model, tmp_path):
    db, water = water_land_scene(400, 300, seed=3, looks=1)
    sar = write_sar_raster(tmp_path / "fine.tif", 400, 300, pixel_size=5.0, values=db, nodata_box=NODATA_BOX)
    report, log, _ = run_threshold(sar, tmp_path / "water.tif", water_model, speckle_filter="Lee")
    assert "Resampling: input 5.0 m" in log and "Speckle filter: Lee" in log
    assert_same_grid(tmp_path / "water.tif", sar)
    mask, _ = read_mask(tmp_path / "water.tif")
    valid = valid_of(sar)
    assert np.all(mask[~valid] == 255)
    assert iou(mask[valid] == 1, water[valid]) >= 0.9  # edges are 10 m pixels mapped back onto 5 m


@pytest.mark.parametrize("options, probability, message", [
    (dict(method="threshold"), True, "METHOD=threshold gives no water probability"),
    (dict(method="threshold", water_threshold=0.3), False, "Leave THRESHOLD empty"),
    (dict(method="otsu"), False, "Unknown method 'otsu'. Choose one of: model, threshold"),
])
def test_what_the_threshold_cannot_give_is_refused_before_any_output(water_model, sar_raster, tmp_path, options,
                                                                      probability, message):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OptionError, match=message):
        engine.detect_water(sar_raster, out / "water.tif", model_path=water_model,
                            probability_path=out / "p.tif" if probability else None,
                            options=engine.RunOptions(**options))
    assert list(out.iterdir()) == []


def test_segment_refuses_the_threshold_method(lulc_model, sar_raster, tmp_path):
    with pytest.raises(OptionError, match="detects water only"):
        engine.segment(sar_raster, tmp_path / "c.tif", model_path=lulc_model,
                       options=engine.RunOptions(method="threshold"))


def test_cancelling_the_threshold_run_leaves_no_output(water_model, tmp_path):
    sar, _ = bimodal_scene(tmp_path / "scene.tif")
    out = tmp_path / "out"
    out.mkdir()
    progress = []
    with pytest.raises(CancelledError):
        engine.detect_water(sar, out / "water.tif", model_path=water_model,
                            options=engine.RunOptions(method="threshold", block_size=64),
                            progress=progress.append, is_cancelled=lambda: len(progress) > 20)
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------- input unlike the training data

@pytest.fixture(scope="module")
def demo_like_water_model(tmp_path_factory):
    """A water model whose metadata says it was trained on scenes like the demo scene."""
    return write_pixel_water_model(tmp_path_factory.mktemp("ood") / "water.onnx",
                                   input_distribution=DEMO_LIKE_DISTRIBUTION)


def shifted_demo(path, offset_db):
    return write_changed_backscatter(DEMO, path, lambda db, _: db + offset_db)


def contrasty_demo(path):
    """The demo scene with twice its contrast around its median."""
    return write_changed_backscatter(DEMO, path, lambda db, median: median + 2.0 * (db - median))


def detect(sar, output, model, **options):
    lines, warnings = [], []
    engine.detect_water(sar, output, model_path=model, options=engine.RunOptions(**options),
                        log=lines.append, warn=warnings.append)
    return "\n".join(lines), warnings


# The demo scene's median is -10.0 dB, its 1st percentile -23.5 dB; the input check reads a sample.
MEDIAN_WARNING = re.compile(r"median HH (-\d+\.\d) dB is (\d+\.\d) dB below anything the model was trained on "
                            r"\(-13\.\.-7 dB\): check the calibration / INPUT_UNITS")
PERCENTILE_WARNING = re.compile(r"its 1st percentile (-\d+\.\d) dB is (\d+\.\d) dB below the training pixels' "
                                r"\(-24 dB\)")


def assert_median_warning(text, offset_db):
    found = MEDIAN_WARNING.search(text)
    assert found, text
    median, gap = float(found[1]), float(found[2])
    assert median == pytest.approx(-10.0 + offset_db, abs=0.5) and gap == pytest.approx(-13.0 - median, abs=0.05)


def test_the_demo_scene_matches_a_model_trained_on_its_like(demo_like_water_model, tmp_path):
    log, warnings = detect(str(DEMO), tmp_path / "water.tif", demo_like_water_model)
    assert warnings == []
    summary = re.search(r"Input backscatter \(sample of \d+ valid pixels over the whole raster\): median "
                        r"(-\d+\.\d) dB, 1\.\.99 % (-\d+\.\d)\.\.(-?\d+\.\d) dB; "
                        r"the model was trained on scene medians -13\.\.-7 dB", log)
    assert summary, log
    assert float(summary[1]) == pytest.approx(-10.0, abs=0.5) and float(summary[2]) == pytest.approx(-23.5, abs=1.5)


def test_an_input_10_db_too_dark_is_flagged_and_still_mapped(demo_like_water_model, tmp_path):
    sar = shifted_demo(tmp_path / "dark.tif", -10.0)
    log, warnings = detect(sar, tmp_path / "water.tif", demo_like_water_model)
    assert len(warnings) == 2
    assert_median_warning(warnings[0], -10.0)
    low = PERCENTILE_WARNING.search(warnings[1])
    assert low and float(low[1]) == pytest.approx(-33.5, abs=1.5) and float(low[2]) == pytest.approx(
        -24.0 - float(low[1]), abs=0.05)
    assert (tmp_path / "water.tif").is_file()


def test_without_a_training_distribution_only_the_models_input_range_is_checked(water_model, tmp_path):
    log, warnings = detect(str(DEMO), tmp_path / "demo.tif", water_model)
    assert warnings == [] and "declares no training distribution" in log
    amplitude = np.full((60, 80), 3000.0)  # ALOS-2 DN: sigma0 -13.9 dB with CF -83, +19.5 dB with a wrong CF
    sar = write_sar_raster(tmp_path / "dn.tif", 80, 60, dtype="uint16", nodata=0, values=amplitude)
    _, warnings = detect(sar, tmp_path / "dn_water.tif", water_model, input_units="ALOS-2 DN", calibration_factor=-50)
    assert warnings == ["100% of the input's pixels lie outside -35..5 dB, the range the model reads (norm_clip): "
                        "it sees them clipped. Check the calibration / INPUT_UNITS (and CALIBRATION_FACTOR for "
                        "ALOS-2 DN); the map may be wrong."]


def test_a_scene_normalised_model_is_checked_on_the_spread_only(tmp_path):
    """Such a model removes the scene median itself: a calibration offset is no reason to warn,
    a contrast twice the training's is."""
    model = write_pixel_water_model(tmp_path / "scene.onnx", norm_mode="scene", norm_clip=(-25.0, 20.0),
                                    input_distribution=DEMO_LIKE_DISTRIBUTION)
    log, warnings = detect(shifted_demo(tmp_path / "dark.tif", -10.0), tmp_path / "w.tif", model)
    assert warnings == [] and "the model removes the scene median" in log
    _, warnings = detect(contrasty_demo(tmp_path / "contrasty.tif"), tmp_path / "w2.tif", model)
    assert any(re.search(r"its 1st percentile -2\d\.\d dB from its median is 1\d\.\d dB below the training "
                         r"pixels' \(-14 dB from theirs\)", w) for w in warnings), warnings
    assert not any("median HH" in w for w in warnings)


def test_the_threshold_method_does_not_judge_the_calibration(demo_like_water_model, tmp_path):
    """The threshold moves with the data, so a shifted input is no reason to warn."""
    _, _, warnings = run_threshold(shifted_demo(tmp_path / "dark.tif", -10.0), tmp_path / "w.tif",
                                   demo_like_water_model)
    assert warnings == []


# ---------------------------------------------------------------- Processing and qgis_process

def test_processing_runs_the_threshold_method_with_styled_output(sarlulc_provider, water_model, tmp_path):
    sar, water = bimodal_scene(tmp_path / "scene.tif")
    output = tmp_path / "water.tif"
    feedback = WarningFeedback()
    results = processing.run("sarlulc:waterdetect", {"INPUT": sar, "MODEL": water_model, "METHOD": "threshold",
                                                     "OUTPUT": str(output)}, feedback=feedback)
    assert results == {"OUTPUT": str(output), "OUTPUT_PROBABILITY": None}
    assert_same_grid(output, sar)
    mask, nodata = read_mask(output)
    valid = valid_of(sar)
    assert nodata == 255 and np.all(mask[~valid] == 255)
    assert iou(mask[valid] == 1, water[valid]) >= 0.95
    assert palette(QgsRasterLayer(str(output), "water", "gdal")) == WATER_LEGEND
    assert sidecar_palette(output) == WATER_LEGEND
    assert any(line.startswith("Water threshold: ") and " dB, pixels darker are water" in line
               for line in feedback.lines)
    assert feedback.warnings == [] and max(feedback.progress_values) == 100.0


def test_processing_refuses_a_probability_from_the_threshold_method(sarlulc_provider, water_model, sar_raster,
                                                                    tmp_path):
    with pytest.raises(QgsProcessingException, match="METHOD=threshold gives no water probability"):
        processing.run("sarlulc:waterdetect", {"INPUT": sar_raster, "MODEL": water_model, "METHOD": 1,
                                               "OUTPUT": str(tmp_path / "w.tif"),
                                               "OUTPUT_PROBABILITY": str(tmp_path / "p.tif")})
    assert not (tmp_path / "w.tif").exists() and not (tmp_path / "p.tif").exists()


def test_processing_shows_the_out_of_range_warning(sarlulc_provider, demo_like_water_model, tmp_path):
    feedback = WarningFeedback()
    processing.run("sarlulc:waterdetect", {"INPUT": shifted_demo(tmp_path / "dark.tif", -10.0),
                                           "MODEL": demo_like_water_model, "OUTPUT": str(tmp_path / "w.tif")},
                   feedback=feedback)
    assert any("below anything the model was trained on" in warning for warning in feedback.warnings)


@pytest.mark.skipif(not QGIS_PROCESS.is_file(), reason=f"{QGIS_PROCESS} is absent")
def test_qgis_process_prints_the_out_of_range_warning(qgis_env, demo_like_water_model, tmp_path):
    sar = shifted_demo(tmp_path / "dark.tif", -10.0)
    run = qgis_process(qgis_env, "run", "sarlulc:waterdetect", "--", f"INPUT={sar}",
                       f"MODEL={demo_like_water_model}", f"OUTPUT={tmp_path / 'w.tif'}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING:" in run.stdout
    assert_median_warning(run.stdout, -10.0)


# ---------------------------------------------------------------- the evaluation tool

def test_evaluate_set_scores_the_threshold_baseline(water_model, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sar, water = bimodal_scene(data / "scene_sar.tif")
    label = np.where(water, 1, 4).astype(np.uint8)  # water / cropland
    write_sar_raster(data / "scene_label.tif", 400, 300, dtype="uint8", nodata=0, values=label)
    run = subprocess.run([sys.executable, str(REPO / "tools" / "evaluate_set.py"), "--method", "threshold",
                          "--task", "water", "--model", water_model, "--data", str(data), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert summary["method"] == "threshold" and summary["scenes"] == 1
    assert summary["water"]["iou"] >= 0.95
    assert "scene_sar.tif: water threshold -1" in run.stderr
    refused = subprocess.run([sys.executable, str(REPO / "tools" / "evaluate_set.py"), "--method", "threshold",
                              "--task", "lulc", "--data", str(data), "--out", str(tmp_path / "r2")],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert refused.returncode == 2 and "scores water detection only" in refused.stderr


@pytest.mark.parametrize("task", ["water", "lulc"])
def test_the_bundled_models_read_the_absolute_level_and_flag_inputs_unlike_their_training(task, tmp_path):
    """They read calibrated backscatter by its level (norm_mode fixed): the demo scene as it is gives no
    warning; 10 dB too dark (a wrong calibration factor) is flagged with the numbers, and so is a contrast
    twice the training's."""
    contract = ModelContract.from_onnx(bundled_model_path(task), expected_task=task)
    assert contract.norm_mode == "fixed" and contract.input_distribution is not None
    run = engine.detect_water if task == "water" else engine.segment
    for name, sar, flagged in (("demo", str(DEMO), False), ("dark", shifted_demo(tmp_path / "dark.tif", -10.0), True),
                               ("contrasty", contrasty_demo(tmp_path / "contrasty.tif"), True)):
        lines, warnings = [], []
        run(sar, tmp_path / f"{name}_{task}.tif", log=lines.append, warn=warnings.append)
        assert "the model was trained on scene medians" in "\n".join(lines)
        assert any("than the model's training data" in w or "unlike the model's training data" in w
                   for w in warnings) == flagged, "\n".join(lines + warnings)
        if name == "dark":  # the numbers: the input's median and how far below the training's it lies
            assert any(re.search(r"Input darker than the model's training data: its 1st percentile -\d+\.\d dB is "
                                 r"\d+\.\d dB below the training pixels'", w) for w in warnings), warnings


# ---------------------------------------------------------------- polarisation

@pytest.mark.parametrize("polarisation, water", [("HV", False), ("HH", True)])
def test_a_mosaic_tile_names_its_polarisation_in_its_file_name_and_sets_the_water_level(
        water_model, tmp_path, polarisation, water):
    """JAXA mosaic tiles come as one file per polarisation, the polarisation only in the file name. One
    population at -20 dB is grassland in HV (cross-polarised water lies below -25 dB) and water in HH."""
    sar = write_alos2_mosaic_tile(tmp_path / f"N35E135_21_sl_{polarisation}_F02DAR.tif", size=200, strip_rows=80,
                                  ocean_fraction=1.0, ocean_db=-20.0)
    _, log, _ = run_threshold(sar, tmp_path / "water.tif", water_model)

    assert f"Using band 1 of 1 ({polarisation}, named by the file name)" in log
    ceiling = "water ceiling -23 dB" if polarisation == "HV" else "water ceiling -17 dB"
    assert ceiling in log and ("the scene is water" in log) is water
    mask, _ = read_mask(tmp_path / "water.tif")
    share = np.mean(mask[mask != 255] == 1)
    assert share > 0.95 if water else share < 0.01


@pytest.mark.parametrize("description, warned", [("VH", True), ("HV", True), ("VV", False), ("HH", False), ("", False)])
def test_the_model_on_a_cross_polarised_band_warns_and_says_what_to_run_instead(
        water_model, tmp_path, description, warned):
    sar = write_sar_raster(tmp_path / "dual.tif", 96, 96, bands=2)
    dataset = gdal.Open(sar, gdal.GA_Update)
    dataset.GetRasterBand(2).SetDescription(description)
    dataset = None
    warnings = []
    engine.detect_water(sar, tmp_path / "water.tif", model_path=water_model, options=engine.RunOptions(band=2),
                        log=lambda line: None, warn=warnings.append)

    cross = [warning for warning in warnings if "cross-polarised" in warning]
    assert len(cross) == int(warned)
    if warned:
        assert cross[0].startswith(
            f"Band 2 holds cross-polarised backscatter ({description}, named by its description)")
        assert "Run the model on the HH band" in cross[0] and "Method threshold" in cross[0]

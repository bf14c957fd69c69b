"""sarlulc.evaluation: confusion matrix, IoU/F1, nodata handling, grid checks, CSV/HTML reports, CLI."""

import csv
import math

import numpy as np
import pytest
from osgeo import gdal

from sarlulc import evaluation
from sarlulc.products import LULC_CLASSES
from sarlulc.evaluation import EvaluationError, GridMismatchError, evaluate, main, write_csv, write_html
from factories import write_sar_raster

# Hand-computed example (codes 1..3):      reference   prediction
REFERENCE = np.array([[1, 1, 2], [2, 3, 3]])  # 1 1 2        1 2 2
PREDICTION = np.array([[1, 2, 2], [2, 3, 1]])  # 2 3 3        2 3 1


def write_classes(path, values, nodata=0, dtype="uint8", **grid):
    values = np.asarray(values)
    return write_sar_raster(path, values.shape[1], values.shape[0], values=values, nodata=nodata, dtype=dtype, **grid)


def test_confusion_matrix_and_metrics_match_a_hand_computed_example(tmp_path):
    result = evaluate(write_classes(tmp_path / "p.tif", PREDICTION), write_classes(tmp_path / "r.tif", REFERENCE))
    assert [c[0] for c in result.classes] == [code for code, _, _ in LULC_CLASSES]
    # rows = reference, columns = prediction: ref 1 -> {1: 1, 2: 1}; ref 2 -> {2: 2}; ref 3 -> {1: 1, 3: 1}
    np.testing.assert_array_equal(result.matrix[:3, :3], [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert result.matrix[3:].sum() == 0 and result.matrix[:, 3:].sum() == 0
    assert result.pixels == 6 and result.overall_accuracy == pytest.approx(4 / 6)
    water, built_up, paddy = result.per_class[:3]
    assert (water.name, water.iou, water.precision, water.recall) == ("Water", pytest.approx(1 / 3), 0.5, 0.5)
    assert built_up.iou == pytest.approx(2 / 3) and built_up.f1 == pytest.approx(0.8)
    assert paddy.iou == pytest.approx(0.5) and paddy.precision == 1.0
    assert all(math.isnan(m.iou) for m in result.per_class[3:]), "absent classes have no IoU"
    assert result.miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert result.water.iou == pytest.approx(1 / 3)


def test_perfect_prediction_scores_one(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 10, (40, 50))
    result = evaluate(write_classes(tmp_path / "p.tif", labels), write_classes(tmp_path / "r.tif", labels))
    assert result.miou == 1.0 and result.overall_accuracy == 1.0
    assert all(m.iou == 1.0 and m.f1 == 1.0 for m in result.per_class)


def test_nodata_of_either_raster_is_excluded(tmp_path):
    reference = np.array([[0, 1, 2], [2, 2, 1]])  # 0 = nodata of the label raster
    prediction = np.array([[9, 1, 255], [2, 2, 2]])  # 255 = nodata of the prediction
    result = evaluate(write_classes(tmp_path / "p.tif", prediction, nodata=255),
                      write_classes(tmp_path / "r.tif", reference, nodata=0))
    assert result.pixels == 4
    assert 9 not in [m.code for m in result.per_class if m.predicted_pixels]
    assert result.overall_accuracy == pytest.approx(3 / 4)


def test_float_rasters_with_nan_nodata(tmp_path):
    prediction = np.array([[1.0, np.nan], [2.0, 2.0]])
    result = evaluate(write_classes(tmp_path / "p.tif", prediction, nodata=None, dtype="float32"),
                      write_classes(tmp_path / "r.tif", [[1, 1], [2, 1]]))
    assert result.pixels == 3 and result.overall_accuracy == pytest.approx(2 / 3)


def test_non_integer_prediction_is_refused_with_advice(tmp_path):
    probabilities = np.full((4, 4), 0.37)
    with pytest.raises(EvaluationError, match="non-integer.*class raster"):
        evaluate(write_classes(tmp_path / "p.tif", probabilities, nodata=None, dtype="float32"),
                 write_classes(tmp_path / "r.tif", np.ones((4, 4))))


def test_water_task_binarises_a_land_cover_reference(tmp_path):
    water_mask = np.array([[1, 1, 0], [0, 255, 1]])  # Water Detect output: 1 water, 0 land, 255 nodata
    land_cover = np.array([[1, 3, 6], [1, 1, 0]])  # water, paddy, forest / water, water, nodata
    result = evaluate(write_classes(tmp_path / "p.tif", water_mask, nodata=255),
                      write_classes(tmp_path / "r.tif", land_cover, nodata=0), task="water")
    assert [name for _, name, _ in result.classes] == ["Not water", "Water"]
    np.testing.assert_array_equal(result.matrix, [[1, 1], [1, 1]])  # 4 valid pixels
    assert (result.water.iou, result.water.precision, result.water.recall) == (pytest.approx(1 / 3), 0.5, 0.5)


def test_codes_outside_the_legend_are_reported_not_dropped(tmp_path):
    result = evaluate(write_classes(tmp_path / "p.tif", [[12, 1]]), write_classes(tmp_path / "r.tif", [[1, 1]]))
    extra = [m for m in result.per_class if m.code == 12]
    assert extra and extra[0].name == "Code 12" and extra[0].predicted_pixels == 1


def test_a_prediction_with_its_own_classes_is_scored_under_their_names(tmp_path):
    """A model trained with its own classes (sarlulc:train with a class table) writes their names and colours;
    the scores name those classes, not the 9-class legend's for the same codes."""
    reference = write_classes(tmp_path / "r.tif", REFERENCE)
    prediction = str(tmp_path / "p.tif")
    dataset = gdal.GetDriverByName("GTiff").CreateCopy(prediction, gdal.Open(reference))
    band = dataset.GetRasterBand(1)
    band.WriteArray(PREDICTION.astype(np.uint8))
    table = gdal.ColorTable()
    for code, colour in ((1, (216, 179, 101)), (2, (154, 205, 50)), (3, (31, 78, 156))):
        table.SetColorEntry(code, colour + (255,))
    band.SetColorTable(table)
    band.SetCategoryNames(["", "Bare soil", "Hills", "Water"])
    band = dataset = None
    result = evaluate(prediction, reference)
    assert result.classes == ((1, "Bare soil", "#d8b365"), (2, "Hills", "#9acd32"), (3, "Water", "#1f4e9c"))
    assert [m.name for m in result.per_class] == ["Bare soil", "Hills", "Water"]
    assert result.overall_accuracy == pytest.approx(4 / 6) and result.miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_streaming_windows_give_the_whole_raster_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 10, (700, 300))
    prediction = np.where(rng.random(reference.shape) < 0.7, reference, rng.integers(0, 10, reference.shape))
    monkeypatch.setattr(evaluation, "_WINDOW_PIXELS", 1)  # one block row (256 lines) per window
    windows = []
    result = evaluate(write_classes(tmp_path / "p.tif", prediction), write_classes(tmp_path / "r.tif", reference),
                      progress=windows.append)
    assert len(windows) == 3 and windows[-1] == 1.0
    valid = (reference > 0) & (prediction > 0)
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (reference[valid], prediction[valid]), 1)
    np.testing.assert_array_equal(result.matrix, expected[1:, 1:])


@pytest.mark.parametrize("other_grid, message", [
    (dict(), r"40 x 30 pixels but the reference is 50 x 30.*Warp"),
    (dict(epsg=32653), r"EPSG:32653 but the reference is in EPSG:32654.*Warp"),
    (dict(origin=(500100.0, 4000000.0)), r"different extent or pixel size.*Warp"),
    (dict(pixel_size=20.0), r"different extent or pixel size.*Warp"),
    (dict(epsg=None), r"prediction raster has no CRS.*Assign Projection"),
])
def test_rasters_on_different_grids_are_refused_with_a_fix(tmp_path, other_grid, message):
    width = 40 if not other_grid else 50
    prediction = write_classes(tmp_path / "p.tif", np.ones((30, width)), **other_grid)
    reference = write_classes(tmp_path / "r.tif", np.ones((30, 50)))
    with pytest.raises(GridMismatchError, match=message):
        evaluate(prediction, reference)


def test_csv_and_html_reports(tmp_path):
    result = evaluate(write_classes(tmp_path / "p.tif", PREDICTION), write_classes(tmp_path / "r.tif", REFERENCE))
    write_csv(result, tmp_path / "m.csv", "p.tif", "r.tif")
    write_html(result, tmp_path / "m.html", "p.tif", "r.tif")
    lines = (tmp_path / "m.csv").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("#") and "miou=0.5000" in line for line in lines)
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert [r["name"] for r in rows] == [name for _, name, _ in LULC_CLASSES]
    assert rows[1]["iou"] == "0.6667" and rows[1]["predicted_2"] == "2" and rows[2]["predicted_1"] == "1"
    assert rows[5]["iou"] == "", "no IoU for a class absent from both rasters"
    page = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 1 and "Broadleaf forest" in page and "0.5000" in page and "Water IoU" in page
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_cli_writes_reports_and_explains_errors(tmp_path, capsys):
    prediction = write_classes(tmp_path / "p.tif", PREDICTION)
    reference = write_classes(tmp_path / "r.tif", REFERENCE)
    assert main([prediction, reference, "--out-csv", str(tmp_path / "m.csv"),
                 "--out-html", str(tmp_path / "m.html")]) == 0
    assert (tmp_path / "m.csv").exists() and (tmp_path / "m.html").exists()
    assert "mIoU 0.5000" in capsys.readouterr().out
    bigger = write_classes(tmp_path / "big.tif", np.ones((5, 5)))
    assert main([bigger, reference]) == 2
    assert "Warp" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.tif"), reference]) == 2
    assert "The prediction raster" in (error := capsys.readouterr().err) and "does not exist" in error


def test_simulated_pair_against_itself(tmp_path):
    """The simulator's label raster (nodata margin, colour table) is a valid reference."""
    from sarlulc.simulate import simulate_scene, write_scene

    _, label = write_scene(simulate_scene(64, 3), tmp_path, "s")
    result = evaluate(label, label)
    assert result.miou == 1.0
    assert result.pixels == int((gdal.Open(str(label)).ReadAsArray() > 0).sum())

"""The command line: outputs, progress, and exit code 2 with the message on errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from factories import expected_pixel_classes, write_pixel_lulc_model, write_pixel_water_model, write_sar_raster

REPO = Path(__file__).resolve().parent.parent


def cli(*args):
    return subprocess.run([sys.executable, "-m", "sarlulc.inference", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_segment_writes_classes_and_confidence(tmp_path):
    model = write_pixel_lulc_model(tmp_path / "m.onnx")
    sar = write_sar_raster(tmp_path / "sar.tif", 120, 90)
    result = cli("segment", sar, tmp_path / "out.tif", "--model", model, "--confidence", tmp_path / "conf.tif",
                 "--tile-size", 32, "--overlap", 8, "--batch-size", 2, "--threads", 1, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "batches of 2" in result.stderr and "ONNX Runtime threads: 1 (as set)" in result.stderr
    assert result.stdout.split() == [str(tmp_path / "out.tif"), str(tmp_path / "conf.tif")]
    assert "CPUExecutionProvider" in result.stderr and "100.0 %" in result.stderr
    dataset = gdal.Open(str(tmp_path / "out.tif"))
    source = gdal.Open(sar)
    np.testing.assert_array_equal(dataset.ReadAsArray(), expected_pixel_classes(source.ReadAsArray()))


def test_water_threshold_option(tmp_path):
    model = write_pixel_water_model(tmp_path / "w.onnx")
    sar = write_sar_raster(tmp_path / "sar.tif", 80, 60)
    result = cli("water", sar, tmp_path / "w.tif", "--model", model, "--threshold", "0.9",
                 "--probability", tmp_path / "p.tif")
    assert result.returncode == 0, result.stderr
    mask, probability = gdal.Open(str(tmp_path / "w.tif")), gdal.Open(str(tmp_path / "p.tif"))
    np.testing.assert_array_equal(mask.ReadAsArray(), probability.ReadAsArray() >= 0.9)


def test_errors_exit_2_with_the_message_and_no_output(tmp_path):
    model = write_pixel_lulc_model(tmp_path / "m.onnx")
    sar = write_sar_raster(tmp_path / "sar.tif", 50, 40)
    result = cli("segment", sar, tmp_path / "out.tif", "--model", model, "--band", 2)
    assert result.returncode == 2
    assert "error: Band 2 does not exist" in result.stderr and "has 1 band" in result.stderr
    result = cli("water", sar, tmp_path / "out.tif", "--model", model)
    assert result.returncode == 2 and "is a lulc model, but this algorithm needs a water model" in result.stderr
    assert not (tmp_path / "out.tif").exists()


def test_water_threshold_method_and_input_warnings(tmp_path):
    model = write_pixel_water_model(tmp_path / "w.onnx")
    sar = write_sar_raster(tmp_path / "sar.tif", 120, 90)
    result = cli("water", sar, tmp_path / "out.tif", "--model", model, "--method", "threshold")
    assert result.returncode == 0, result.stderr
    assert "Method: automatic backscatter threshold" in result.stderr and "Water threshold: " in result.stderr
    refused = cli("water", sar, tmp_path / "out2.tif", "--model", model, "--method", "threshold",
                  "--probability", tmp_path / "p.tif")
    assert refused.returncode == 2 and "METHOD=threshold gives no water probability" in refused.stderr
    assert not (tmp_path / "out2.tif").exists()
    dn = write_sar_raster(tmp_path / "dn.tif", 60, 40, dtype="uint16", nodata=0, values=np.full((40, 60), 3000))
    result = cli("water", dn, tmp_path / "out3.tif", "--model", model, "--input-units", "dn",
                 "--calibration-factor", -50)  # +19.5 dB: a wrong calibration factor
    assert result.returncode == 0, result.stderr
    assert "WARNING: 100% of the input's pixels lie outside -35..5 dB" in result.stderr


def test_the_command_line_offers_each_run_option_as_its_field_describes_it(capsys):
    """Options are defined once (RunOptions' fields): the parser's defaults are the engine's, and its words map
    to the engine's values."""
    from sarlulc.inference.__main__ import _parser, run_options
    from sarlulc.inference.engine import RunOptions
    from sarlulc.inference.options import run_option
    from sarlulc.sar.speckle import SpeckleFilter

    parser = _parser()
    for task in ("segment", "water"):
        assert run_options(parser.parse_args([task, "in.tif", "out.tif"])) == RunOptions()
    asked = run_options(parser.parse_args(["water", "in.tif", "out.tif", "--speckle-filter", "refined-lee",
                                           "--overlap", "16", "--threshold", "0.3", "--input-units", "dn"]))
    assert (asked.speckle_filter, asked.tile_overlap, asked.water_threshold) == (SpeckleFilter.REFINED_LEE, 16, 0.3)
    assert asked.input_units.value == "ALOS-2 DN"
    with pytest.raises(SystemExit):
        parser.parse_args(["segment", "--help"])
    segment_help = " ".join(capsys.readouterr().out.split())
    assert run_option("device").help in segment_help and "--overlap TILE_OVERLAP" not in segment_help
    assert "--overlap OVERLAP" in segment_help and "--threshold" not in segment_help  # water only

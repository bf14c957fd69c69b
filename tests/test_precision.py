"""The model's arithmetic: fp32 on the CPU by default, fp16 on request or, on a GPU, where the
first batch shows it classifies as fp32 does; and the GPU's batch from its free memory.

The GPU cases run on the CPU with ONNX Runtime's CPU provider standing in for CUDA: what is
checked is the engine's choices (precision kept or refused, batch size, block size), not speed."""

import sys

import numpy as np
import pytest
from osgeo import gdal

from sarlulc.inference import engine, session as session_module, settings
from sarlulc.inference.engine import RunOptions, segment
from sarlulc.errors import InferenceError, OptionError
from sarlulc.inference.memory import GPU_MAX_BATCH, MODEL_BYTES_PER_PIXEL, gpu_batch_size
from sarlulc.inference.session import HALF_PRECISION_AGREEMENT, ModelSession
from sarlulc.rasters.windows import TilePlan

from factories import write_context_lulc_model, write_sar_raster


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_context_lulc_model(tmp_path_factory.mktemp("model") / "context.onnx", tile_size=64,
                                    tile_overlap=16, kernel=9, conv_layers=2, conv_channels=8)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SAR_LULC_CACHE", str(folder))
    return folder


@pytest.fixture
def cpu_as_gpu(monkeypatch):
    """The CPU provider counts as the GPU's: the engine takes its GPU decisions on this machine."""
    monkeypatch.setattr(session_module, "CUDA", session_module.CPU)


def classes(path):
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray()


def segment_logged(sar, output, model, options):
    lines = []
    report = segment(sar, output, model, options=options, log=lines.append)
    return report, lines


def test_on_the_cpu_auto_runs_fp32_and_makes_no_half_precision_graph(model, tmp_path, cache):
    sar = write_sar_raster(tmp_path / "sar.tif", 200, 150)
    report, lines = segment_logged(sar, tmp_path / "lulc.tif", model, RunOptions())
    assert report.precision == "fp32"
    assert not [line for line in lines if line.startswith("Precision")]
    assert not list(cache.glob("*.fp16.onnx"))


def test_fp16_on_request_classifies_as_fp32_does_and_logs_how_closely(model, tmp_path, cache):
    sar = write_sar_raster(tmp_path / "sar.tif", 200, 150, nodata_box=(0, 0, 40, 30))
    segment(sar, tmp_path / "fp32.tif", model, options=RunOptions(precision="fp32"))
    report, lines = segment_logged(sar, tmp_path / "fp16.tif", model, RunOptions(precision="fp16"))
    assert report.precision == "fp16"
    [line] = [line for line in lines if line.startswith("Precision")]
    assert line.startswith("Precision: fp16 (fp16 gives the same class as fp32 on ")
    full, half = classes(tmp_path / "fp32.tif"), classes(tmp_path / "fp16.tif")
    assert len(np.unique(full)) > 3
    assert np.mean(full == half) >= HALF_PRECISION_AGREEMENT
    np.testing.assert_array_equal(half == 0, full == 0)  # nodata stays where it is
    assert len(list(cache.glob("context-*.fp16.onnx"))) == 1  # converted once, cached for the next run


@pytest.mark.filterwarnings("ignore:Duplicate provider")
def test_on_a_gpu_auto_keeps_fp16_only_where_it_classifies_as_fp32(model, cache, cpu_as_gpu):
    batch = np.random.default_rng(0).normal(size=(2, 1, 64, 64)).astype(np.float32)
    fp32_scores = ModelSession(model, "cpu", precision="fp32").run(batch)

    agreeing = ModelSession(model, "cpu")
    assert agreeing.on_gpu and agreeing.precision_pending
    scores, line = agreeing.settle_precision(batch, lambda s: s.argmax(axis=1))
    assert agreeing.precision == "fp16" and not agreeing.precision_pending
    assert "fp16 is used from 99%" in line
    np.testing.assert_array_equal(scores, fp32_scores)  # the deciding batch keeps its fp32 result

    # Judged on the raw scores themselves, fp16 never matches fp32: it is refused.
    refusing = ModelSession(model, "cpu")
    scores, line = refusing.settle_precision(batch, lambda s: s)
    assert refusing.precision == "fp32" and line.startswith("Precision: fp32")
    np.testing.assert_array_equal(scores, fp32_scores)
    np.testing.assert_array_equal(refusing.run(batch), fp32_scores)


@pytest.mark.filterwarnings("ignore:Duplicate provider")
def test_on_a_gpu_the_batch_comes_from_its_free_memory_over_larger_blocks(model, tmp_path, cache, cpu_as_gpu,
                                                                           monkeypatch):
    sar = write_sar_raster(tmp_path / "sar.tif", 700, 120)
    reference = segment(sar, tmp_path / "cpu.tif", model, options=RunOptions(precision="fp32", block_size=512))
    plan = TilePlan(700, 120, 64, 16, engine.GPU_BLOCK_SIZE)
    assert plan.most_tiles_in_a_block() == plan.tile_count < GPU_MAX_BATCH  # one block holds every tile

    monkeypatch.setattr(settings, "available_memory_bytes", lambda: 64 * 2**30)
    monkeypatch.setattr(settings, "gpu_free_memory_bytes", lambda: 8 * 2**30)
    report, lines = segment_logged(sar, tmp_path / "gpu.tif", model, RunOptions(precision="fp32"))
    assert report.batch_size == plan.tile_count and report.tiles == reference.tiles
    assert f"Batch size {plan.tile_count} on the GPU (8.0 GiB free)" in lines
    assert any(f"{plan.tile_count} of 64 px" in line and "1 block(s) of up to 2048 px" in line for line in lines)
    np.testing.assert_array_equal(classes(tmp_path / "gpu.tif"), classes(tmp_path / "cpu.tif"))

    monkeypatch.setattr(settings, "available_memory_bytes", lambda: 2**30)  # 2048 px blocks need 0.7 GiB
    report, lines = segment_logged(sar, tmp_path / "small_blocks.tif", model, RunOptions(precision="fp32"))
    assert any(line.startswith("Blocks of 512 px: blocks of 2048 px, which give the GPU larger batches, would need "
                               "0.7 GiB of the 1.0 GiB of memory available") for line in lines)
    small = TilePlan(700, 120, 64, 16, 512)
    assert report.batch_size == small.most_tiles_in_a_block() < plan.tile_count
    np.testing.assert_array_equal(classes(tmp_path / "small_blocks.tif"), classes(tmp_path / "cpu.tif"))
    monkeypatch.setattr(settings, "available_memory_bytes", lambda: 64 * 2**30)

    tight = 3 * 64 * 64 * MODEL_BYTES_PER_PIXEL  # half of it holds one tile and a half
    monkeypatch.setattr(settings, "gpu_free_memory_bytes", lambda: tight)
    report, _ = segment_logged(sar, tmp_path / "tight.tif", model, RunOptions(precision="fp32"))
    assert report.batch_size == 1
    np.testing.assert_array_equal(classes(tmp_path / "tight.tif"), classes(tmp_path / "cpu.tif"))


def test_gpu_batch_without_a_memory_reading_is_four_and_never_beyond_what_a_block_gives():
    assert gpu_batch_size(256, None, 100) == 4
    assert gpu_batch_size(256, None, 3) == 3
    assert gpu_batch_size(256, 80 * 2**30, 1000) == GPU_MAX_BATCH
    assert gpu_batch_size(256, 80 * 2**30, 9) == 9


def test_an_unknown_precision_is_refused_before_any_file_exists(model, tmp_path):
    sar = write_sar_raster(tmp_path / "sar.tif", 100, 100)
    with pytest.raises(OptionError, match="Unknown precision 'half'. Choose one of: auto, fp32, fp16"):
        segment(sar, tmp_path / "lulc.tif", model, options=RunOptions(precision="half"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sar.tif"]


@pytest.mark.filterwarnings("ignore:Duplicate provider")
def test_without_the_onnx_package_a_gpu_run_stays_fp32_and_says_why(model, tmp_path, cache, cpu_as_gpu,
                                                                    monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails as where it is not installed
    sar = write_sar_raster(tmp_path / "sar.tif", 150, 120)
    report, lines = segment_logged(sar, tmp_path / "lulc.tif", model, RunOptions())
    assert report.precision == "fp32"
    [line] = [line for line in lines if line.startswith("Precision")]
    assert line.startswith("Precision: fp32 (Half precision needs the 'onnx' package (")
    assert line.endswith("); install it beside onnxruntime (pip install onnx), or run in fp32.)")
    with pytest.raises(InferenceError, match="Half precision needs the 'onnx' package"):
        segment(sar, tmp_path / "forced.tif", model, options=RunOptions(precision="fp16"))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("forced")]

"""Streaming: each tile runs once whatever the blocks, empty parts are neither read nor run, and
the reader and writer threads hand their errors to the run."""

import numpy as np
import pytest
from osgeo import gdal, osr

from sarlulc.inference import settings, streaming
from sarlulc.rasters.coverage import CELL, READ_CELLS
from sarlulc.inference.engine import RunOptions, detect_water, segment
from sarlulc.errors import InputRasterError, OptionError, OutputError
from sarlulc.inference.memory import GDAL_CACHE_BYTES
from sarlulc.rasters.reading import BandReader
from sarlulc.inference.session import ModelSession, cached_graph_path
from sarlulc.rasters.writer import OutputRaster, write_error
from sarlulc.rasters.windows import TilePlan

from factories import (expected_pixel_classes, record_band_reads, write_alos2_mosaic_tile,
                        write_context_lulc_model, write_pixel_lulc_model, write_pixel_water_model, write_sar_raster)

NODATA = -9999.0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "lulc": write_pixel_lulc_model(folder / "lulc.onnx", tile_size=64, tile_overlap=16),
        "context": write_context_lulc_model(folder / "context.onnx", tile_size=64, tile_overlap=24, kernel=15),
        "water": write_pixel_water_model(folder / "water.onnx", tile_size=64, tile_overlap=16),
    }


def read(path):
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray()


def tiles_fed(monkeypatch):
    """Records the origin of every tile handed to the model."""
    fed = []
    original = streaming.tile_input

    def recording(model_input, read_window, tile):
        fed.append((tile.x, tile.y))
        return original(model_input, read_window, tile)

    monkeypatch.setattr(streaming, "tile_input", recording)
    return fed


@pytest.mark.parametrize("block_size", [32, 48, 100, 256, 4096])
def test_each_tile_runs_exactly_once_whatever_the_block_size(models, tmp_path, monkeypatch, block_size):
    sar = write_sar_raster(tmp_path / "sar.tif", 331, 203)
    fed = tiles_fed(monkeypatch)
    report = segment(sar, tmp_path / "lulc.tif", models["context"], options=RunOptions(block_size=block_size))
    plan = TilePlan(331, 203, 64, 24, block_size)
    assert sorted(fed) == sorted((x, y) for x in plan.x_origins for y in plan.y_origins)
    assert report.tiles == report.tiles_planned == plan.tile_count == len(fed)


def test_results_are_identical_whatever_the_block_batch_and_thread_count(models, tmp_path):
    sar = write_sar_raster(tmp_path / "sar.tif", 331, 203, nodata_box=(100, 40, 180, 90))
    runs = {}
    for block, batch, threads in [(4096, 1, 1), (32, 4, 2), (100, 3, 1), (256, 8, 2)]:
        name = f"{block}_{batch}_{threads}"
        segment(sar, tmp_path / f"{name}.tif", models["context"], tmp_path / f"{name}_c.tif",
                RunOptions(block_size=block, batch_size=batch, threads=threads))
        runs[name] = read(tmp_path / f"{name}.tif"), read(tmp_path / f"{name}_c.tif")
    reference_classes, reference_confidence = runs.pop("4096_1_1")
    assert len(np.unique(reference_classes)) > 3
    for classes, confidence in runs.values():
        np.testing.assert_array_equal(classes, reference_classes)
        np.testing.assert_allclose(confidence, reference_confidence, atol=1e-5)


def test_empty_blocks_are_neither_read_nor_run(models, tmp_path, monkeypatch):
    """Data in one corner of a large nodata raster: only the blocks around it are read and run."""
    values = np.full((700, 900), NODATA, np.float32)
    values[600:680, 20:130] = -8.0
    values[620:640, 50:60] = -25.0
    sar = write_sar_raster(tmp_path / "sparse.tif", 900, 700, values=values)
    windows, fed = record_band_reads(monkeypatch), tiles_fed(monkeypatch)
    messages = []
    report = segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(block_size=128),
                     log=messages.append)
    scan_rows, scan_columns = (cells * CELL for cells in READ_CELLS)
    stream = [w for w in windows if (w.x % scan_columns, w.y % scan_rows) != (0, 0) or w.width < 900]
    # The blocks whose pixels or tiles meet the data: 2 block rows x 2 block columns at most.
    assert 0 < len(stream) <= 4
    assert all(w.y + w.height > 600 and w.x < 130 for w in stream)
    assert report.tiles == 9 == len(fed) < report.tiles_planned  # 3 x 3 tiles of 64 px every 48 px meet the data
    assert any("block(s) hold no valid pixel and are skipped" in m for m in messages)
    classes = read(tmp_path / "lulc.tif")
    valid = values != NODATA
    np.testing.assert_array_equal(classes[valid], expected_pixel_classes(values[valid]))
    assert (classes[~valid] == 0).all()


def test_holes_of_a_sparse_file_are_not_even_read(models, tmp_path, monkeypatch):
    path = tmp_path / "sparse.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 1024, 1280, 1, gdal.GDT_Float32,
                                                   ["TILED=YES", "SPARSE_OK=TRUE"])
    dataset.SetGeoTransform((500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32654)
    dataset.SetSpatialRef(srs)
    dataset.GetRasterBand(1).SetNoDataValue(NODATA)
    dataset.GetRasterBand(1).WriteArray(np.full((256, 256), -9.0, np.float32), 256, 768)
    dataset = None
    windows = record_band_reads(monkeypatch)
    report = segment(str(path), tmp_path / "lulc.tif", models["lulc"], options=RunOptions(block_size=256))
    scan_rows = READ_CELLS[0] * CELL
    assert scan_rows == 512
    assert all(w.y_end > 768 - 64 for w in windows)  # rows 0-511 (a hole) never read
    classes = read(tmp_path / "lulc.tif")
    assert (classes[768:1024, 256:512] == expected_pixel_classes(np.float32(-9.0))).all()
    assert (classes[:768] == 0).all() and (classes[1024:] == 0).all()
    assert report.valid_pixels == 256 * 256


def test_mostly_empty_alos2_tile_read_resampled_skips_its_empty_blocks(models, tmp_path, monkeypatch):
    """A coastal JAXA mosaic tile (EPSG:4326, 90 % nodata) runs only the blocks of the model grid
    near its data, and gives the same map as one block covering everything."""
    tile = write_alos2_mosaic_tile(tmp_path / "N35E135.tif", size=450, strip_rows=40)
    fed = tiles_fed(monkeypatch)
    messages = []
    skipping = segment(tile, tmp_path / "small_blocks.tif", models["lulc"], options=RunOptions(block_size=128),
                       log=messages.append)
    tiles_small_blocks = len(fed)
    whole = segment(tile, tmp_path / "one_block.tif", models["lulc"], options=RunOptions(block_size=8192))
    np.testing.assert_array_equal(read(tmp_path / "small_blocks.tif"), read(tmp_path / "one_block.tif"))
    assert skipping.valid_pixels == whole.valid_pixels > 0
    assert tiles_small_blocks == skipping.tiles <= whole.tiles < whole.tiles_planned
    skipped = next(m for m in messages if "hold no valid pixel and are skipped" in m)
    skipped_blocks, all_blocks = (int(word) for word in skipped.split()[2:5:2])
    assert skipped_blocks >= 0.7 * all_blocks


def test_threshold_method_skips_empty_blocks_too(models, tmp_path, monkeypatch):
    values = np.full((600, 700), NODATA, np.float32)
    values[:100, :150] = np.where(np.arange(150) < 70, -24.0, -7.0)
    sar = write_sar_raster(tmp_path / "sparse.tif", 700, 600, values=values)
    messages = []
    detect_water(sar, tmp_path / "water.tif", models["water"], options=RunOptions(method="threshold", block_size=128),
                 log=messages.append)
    mask = read(tmp_path / "water.tif")
    assert (mask[100:] == 255).all() and (mask[:, 150:] == 255).all()
    assert mask[:100, :60].all() and not mask[:100, 80:150].any()
    assert any("hold no valid pixel and are skipped" in m for m in messages)


def test_an_error_in_the_reader_thread_reaches_the_run_as_a_message(models, tmp_path, monkeypatch):
    sar = write_sar_raster(tmp_path / "sar.tif", 300, 300)
    original = BandReader.read
    calls = []

    def failing_read(self, window):
        calls.append(window)
        if len(calls) == 4:  # after the coverage scan, in the reader thread
            raise RuntimeError(f"TIFFReadEncodedTile() failed reading '{sar}'")
        return original(self, window)

    monkeypatch.setattr(BandReader, "read", failing_read)
    with pytest.raises(InputRasterError, match="truncated or corrupt"):
        segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(block_size=64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sar.tif"]


def test_an_error_in_the_writer_thread_fails_the_run_and_leaves_nothing(models, tmp_path, monkeypatch):
    sar = write_sar_raster(tmp_path / "sar.tif", 300, 300)
    original = OutputRaster.write
    calls = []

    def failing_write(self, array, window):
        calls.append(window)
        if len(calls) == 3:
            raise write_error(self.final_path, RuntimeError("No space left on device"), self.size)
        return original(self, array, window)

    monkeypatch.setattr(OutputRaster, "write", failing_write)
    with pytest.raises(OutputError, match="space"):
        segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(block_size=64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sar.tif"]


def test_the_model_runs_with_the_thread_count_asked_and_logs_it(models, tmp_path, monkeypatch):
    sar = write_sar_raster(tmp_path / "sar.tif", 90, 70)
    messages = []
    segment(sar, tmp_path / "a.tif", models["lulc"], options=RunOptions(threads=1), log=messages.append)
    assert any(m.startswith("ONNX Runtime threads: 1") for m in messages)
    messages.clear()
    segment(sar, tmp_path / "b.tif", models["lulc"], log=messages.append)
    assert any(m.startswith("ONNX Runtime threads:") and "physical core" in m for m in messages)
    session = ModelSession(models["lulc"], "cpu", threads=1)
    assert session.threads == 1


def test_gdal_block_cache_is_bounded_during_a_run_and_restored_after(models, tmp_path):
    sar = write_sar_raster(tmp_path / "sar.tif", 200, 150)
    before = gdal.GetCacheMax()
    gdal.SetCacheMax(512 * 2**20)
    try:
        during = []
        segment(sar, tmp_path / "lulc.tif", models["lulc"], progress=lambda percent: during.append(gdal.GetCacheMax()))
        assert during and max(during) == GDAL_CACHE_BYTES
        assert gdal.GetCacheMax() == 512 * 2**20
    finally:
        gdal.SetCacheMax(before)


def test_the_optimised_graph_is_cached_per_machine_and_a_damaged_entry_is_replaced(models, tmp_path, monkeypatch):
    monkeypatch.setenv("SAR_LULC_CACHE", str(tmp_path / "cache"))
    sar = write_sar_raster(tmp_path / "sar.tif", 150, 120)
    cached = cached_graph_path(models["context"])
    assert cached.parent == tmp_path / "cache" and not cached.exists()
    first = segment(sar, tmp_path / "first.tif", models["context"], tmp_path / "first_c.tif")
    assert cached.is_file() and [p.name for p in cached.parent.iterdir()] == [cached.name]
    second = segment(sar, tmp_path / "second.tif", models["context"], tmp_path / "second_c.tif")
    assert second.contract == first.contract  # the metadata survive in the optimised graph
    cached.write_bytes(b"damaged")
    third = segment(sar, tmp_path / "third.tif", models["context"], tmp_path / "third_c.tif")
    assert cached.stat().st_size > 1000
    for name in ("second", "third"):
        np.testing.assert_array_equal(read(tmp_path / f"{name}.tif"), read(tmp_path / "first.tif"))
        np.testing.assert_allclose(read(tmp_path / f"{name}_c.tif"), read(tmp_path / "first_c.tif"), atol=1e-5)
    assert third.tiles == first.tiles
    monkeypatch.setenv("SAR_LULC_CACHE", "off")
    assert cached_graph_path(models["context"]) is None


def test_a_raster_too_wide_for_the_memory_is_refused_advising_to_clip_it(models, tmp_path, monkeypatch):
    sar = write_sar_raster(tmp_path / "wide.tif", 3000, 40)
    monkeypatch.setattr(settings, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(OptionError, match=r"raster 3000 px wide.*clip the raster into narrower parts"):
        segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(block_size=64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.tif"]

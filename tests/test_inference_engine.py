"""End-to-end runs of the inference engine on small rasters with the factory models."""

import os

import numpy as np
import pytest
from osgeo import gdal

from sarlulc.products import LULC_CLASSES
from sarlulc.inference import engine, methods, settings
from sarlulc.inference.engine import RunOptions, detect_water, segment
from sarlulc.errors import (CancelledError, InferenceError, InputRasterError, ModelContractError, OptionError,
                            OutputError)
from sarlulc.rasters.coverage import CELL, READ_CELLS
from sarlulc.inference.memory import MEMORY_SHARE, run_memory_bytes

from factories import (expected_pixel_classes, record_band_reads, write_context_lulc_model, write_foreign_onnx,
                        write_nan_lulc_model, write_pixel_lulc_model, write_pixel_water_model, write_sar_raster)

NODATA = -9999.0
CODES = [code for code, _, _ in LULC_CLASSES]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "lulc": write_pixel_lulc_model(folder / "lulc.onnx", tile_size=64, tile_overlap=16),
        "water": write_pixel_water_model(folder / "water.onnx", tile_size=64, tile_overlap=16, threshold=0.5),
        "context": write_context_lulc_model(folder / "context.onnx", tile_size=64, tile_overlap=24, kernel=15),
    }


@pytest.fixture
def sar(tmp_path):
    """203 x 157 px (not tile multiples), with a nodata box touching valid pixels."""
    return write_sar_raster(tmp_path / "sar.tif", 203, 157, nodata_box=(40, 30, 70, 55))


def read(path):
    dataset = gdal.Open(str(path))
    return dataset, dataset.GetRasterBand(1).ReadAsArray()


def source_db(path, band=1):
    dataset = gdal.Open(str(path))  # kept alive while its band is read
    return dataset.GetRasterBand(band).ReadAsArray()


def files_in(folder):
    return sorted(os.listdir(folder))


def test_lulc_output_is_on_the_input_grid_with_legend(models, sar, tmp_path):
    report = segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(device="cpu"))
    source = gdal.Open(sar)
    out, classes = read(report.output_path)
    assert (out.RasterXSize, out.RasterYSize) == (203, 157)
    assert out.GetGeoTransform() == source.GetGeoTransform()
    assert out.GetSpatialRef().IsSame(source.GetSpatialRef())
    band = out.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 0
    assert band.GetBlockSize() == [256, 256]
    assert out.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    assert band.GetDescription() == "LULC class"
    table = band.GetColorTable()
    names = band.GetCategoryNames()
    rat = band.GetDefaultRAT()
    for row, (code, name, color) in enumerate(LULC_CLASSES):
        assert names[code] == name
        assert table.GetColorEntry(code)[:3] == tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
        assert (rat.GetValueAsInt(row, 0), rat.GetValueAsString(row, 1)) == (code, name)
    assert set(np.unique(classes)) <= set(CODES) | {0}
    assert report.providers == ["CPUExecutionProvider"] and report.tiles > 0
    assert report.valid_pixels == 203 * 157 - 30 * 25


def test_pixel_model_classes_are_exact_and_nodata_stays_local(models, sar, tmp_path):
    segment(sar, tmp_path / "lulc.tif", models["lulc"], tmp_path / "conf.tif")
    db = source_db(sar)
    nodata = db == NODATA
    expected = np.where(nodata, 0, expected_pixel_classes(db))
    _, classes = read(tmp_path / "lulc.tif")
    np.testing.assert_array_equal(classes, expected)  # includes the pixels right next to the nodata box
    _, confidence = read(tmp_path / "conf.tif")
    assert (confidence[nodata] == -1).all()
    assert confidence[~nodata].min() >= 1 / len(CODES) and confidence[~nodata].max() <= 1.0


def test_nan_pixels_are_nodata(models, tmp_path):
    values = np.full((70, 90), -10.0, np.float32)
    values[10:20, 5:50] = np.nan
    sar = write_sar_raster(tmp_path / "nan.tif", 90, 70, nodata=None, values=values)
    segment(sar, tmp_path / "lulc.tif", models["lulc"], tmp_path / "conf.tif")
    _, classes = read(tmp_path / "lulc.tif")
    _, confidence = read(tmp_path / "conf.tif")
    assert (classes[10:20, 5:50] == 0).all() and (confidence[10:20, 5:50] == -1).all()
    assert (classes[np.isfinite(values)] == expected_pixel_classes(np.float32(-10.0))).all()


@pytest.mark.parametrize("model", ["lulc", "context"])
def test_results_do_not_depend_on_batch_or_block_size(models, sar, tmp_path, model):
    runs = {}
    for batch, block in [(1, 2048), (3, 2048), (8, 2048), (4, 64), (4, 100)]:
        name = f"b{batch}_{block}"
        segment(sar, tmp_path / f"{name}.tif", models[model], tmp_path / f"{name}_conf.tif",
                RunOptions(batch_size=batch, block_size=block))
        runs[name] = (read(tmp_path / f"{name}.tif")[1], read(tmp_path / f"{name}_conf.tif")[1])
    reference_classes, reference_confidence = runs.pop("b1_2048")
    for classes, confidence in runs.values():
        np.testing.assert_array_equal(classes, reference_classes)
        np.testing.assert_allclose(confidence, reference_confidence, atol=1e-5)


def test_pixel_model_tiled_equals_one_big_tile(models, sar, tmp_path):
    segment(sar, tmp_path / "small.tif", models["lulc"], tmp_path / "small_conf.tif",
            RunOptions(tile_size=32, tile_overlap=8))
    segment(sar, tmp_path / "big.tif", models["lulc"], tmp_path / "big_conf.tif",
            RunOptions(tile_size=224, tile_overlap=0))
    np.testing.assert_array_equal(read(tmp_path / "small.tif")[1], read(tmp_path / "big.tif")[1])
    np.testing.assert_allclose(read(tmp_path / "small_conf.tif")[1], read(tmp_path / "big_conf.tif")[1], atol=1e-5)


def test_blending_removes_most_seams_of_a_context_model(models, tmp_path):
    sar = write_sar_raster(tmp_path / "sar.tif", 200, 180, seed=3)

    def confidence(tile, overlap):
        segment(sar, tmp_path / f"c{tile}_{overlap}.tif", models["context"], tmp_path / f"p{tile}_{overlap}.tif",
                RunOptions(tile_size=tile, tile_overlap=overlap))
        return read(tmp_path / f"c{tile}_{overlap}.tif")[1], read(tmp_path / f"p{tile}_{overlap}.tif")[1]

    untiled = confidence(224, 0)
    naive = confidence(64, 0)
    blended = confidence(64, 24)
    inner = (slice(10, -10), slice(10, -10))  # the untiled run pads the raster border itself

    def class_errors(run):
        return (run[0][inner] != untiled[0][inner]).mean()

    def confidence_error(run):
        return np.abs(run[1][inner] - untiled[1][inner]).mean()

    assert class_errors(naive) > 0  # the test would prove nothing if naive tiling had no seams
    assert class_errors(blended) < 0.5 * class_errors(naive)
    assert confidence_error(blended) < 0.5 * confidence_error(naive)


@pytest.mark.parametrize("width, height", [(16, 16), (16, 40), (64, 64), (65, 33)])
def test_rasters_smaller_than_or_near_one_tile(models, tmp_path, width, height):
    sar = write_sar_raster(tmp_path / "small.tif", width, height)
    report = segment(sar, tmp_path / "lulc.tif", models["lulc"])
    out, classes = read(report.output_path)
    assert classes.shape == (height, width)
    np.testing.assert_array_equal(classes, expected_pixel_classes(source_db(sar)))


@pytest.mark.parametrize("width, height, pixel, message", [
    (1, 40, 10.0, r"covers only 1 x 40 model pixels of 10 m: too small .*at least 16 x 16"),
    (20, 13, 10.0, r"covers only 20 x 13 model pixels"),
    (100, 100, 0.05, r"pixels of 0.05 x 0.05 m on the ground, outside the 1-100 m"),
    (100, 100, 1000.0, r"pixels of 1e\+03 x 1e\+03 m on the ground, outside the 1-100 m.*gdalwarp -tr 10 10"),
])
def test_rasters_too_small_or_with_pixels_far_from_the_models_are_refused(models, tmp_path, width, height, pixel,
                                                                          message):
    """A strip of a few pixels gave 64 % water where the scene has 2 %; 1 km pixels were blown up 10,000-fold."""
    sar = write_sar_raster(tmp_path / "odd.tif", width, height, pixel_size=pixel)
    with pytest.raises(InputRasterError, match=message):
        segment(sar, tmp_path / "lulc.tif", models["lulc"])
    assert not (tmp_path / "lulc.tif").exists()


def test_utm_coordinates_tagged_as_degrees_are_refused(models, tmp_path):
    sar = write_sar_raster(tmp_path / "wrong_crs.tif", 100, 100, epsg=4326, pixel_size=10.0)
    with pytest.raises(InputRasterError, match=r"tagged with a geographic CRS .*coordinates \(500000, 4e\+06\) are "
                                               r"not degrees.*Assign Projection"):
        segment(sar, tmp_path / "lulc.tif", models["lulc"])


def test_degree_coordinates_tagged_as_utm_are_refused(models, tmp_path):
    """A JAXA-like degree grid (1/4500 degree pixels) whose CRS says UTM: the CRS is wrong, not the nodata."""
    sar = write_sar_raster(tmp_path / "wrong_crs.tif", 300, 200, epsg=32654, origin=(139.5, 35.7),
                           pixel_size=1 / 4500)
    with pytest.raises(InputRasterError, match=r"tagged with a projected CRS .*coordinates \(139.5, 35.7, pixels of "
                                               r"0.000222\) look like degrees.*EPSG:4326.*Assign Projection"):
        segment(sar, tmp_path / "lulc.tif", models["lulc"])
    assert not (tmp_path / "lulc.tif").exists()


def test_engine_never_reads_more_than_a_block_and_its_tiles(models, tmp_path, monkeypatch):
    sar = write_sar_raster(tmp_path / "wide.tif", 700, 150)
    windows = record_band_reads(monkeypatch)
    segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(block_size=96))
    # The data-coverage scan reads whole cells in windows of a few MB; the stream, a block and its tiles.
    scan_rows, scan_columns = (cells * CELL for cells in READ_CELLS)
    scan = [w for w in windows if w.x % scan_columns == 0 and w.y % scan_rows == 0 and
            (w.width, w.height) == (min(scan_columns, 700 - w.x), min(scan_rows, 150 - w.y))]
    stream = [w for w in windows if w not in scan]
    assert len(scan) == 1 and len(stream) > 1
    assert all(w.width <= 96 + 64 and w.height <= 96 + 64 for w in stream)
    _, classes = read(tmp_path / "lulc.tif")
    np.testing.assert_array_equal(classes, expected_pixel_classes(source_db(sar)))


def test_water_mask_threshold_and_probability(models, sar, tmp_path):
    db = source_db(sar)
    nodata = db == NODATA
    masks = {}
    for threshold in (None, 0.2, 0.8):
        name = f"w{threshold}"
        report = detect_water(sar, tmp_path / f"{name}.tif", models["water"], tmp_path / f"{name}_p.tif",
                              RunOptions(water_threshold=threshold))
        out, mask = read(report.output_path)
        _, probability = read(report.extra_output_path)
        assert out.GetRasterBand(1).GetNoDataValue() == 255
        assert out.GetRasterBand(1).GetCategoryNames()[:2] == ["Not water", "Water"]
        assert (mask[nodata] == 255).all() and (probability[nodata] == -1).all()
        assert set(np.unique(mask[~nodata])) == {0, 1}
        assert 0 <= probability[~nodata].min() and probability[~nodata].max() <= 1
        np.testing.assert_array_equal(mask[~nodata], probability[~nodata] >= (threshold or 0.5))
        masks[threshold] = mask[~nodata]
    assert masks[0.2].sum() > masks[None].sum() > masks[0.8].sum()
    # The factory water model calls pixels darker than -18 dB water.
    assert (masks[None] == (db[~nodata] < -18.0)).mean() > 0.99


def test_model_default_threshold_is_used(tmp_path, sar):
    model = write_pixel_water_model(tmp_path / "strict.onnx", threshold=0.9)
    detect_water(sar, tmp_path / "w.tif", model, tmp_path / "p.tif")
    mask, probability = read(tmp_path / "w.tif")[1], read(tmp_path / "p.tif")[1]
    valid = mask != 255
    np.testing.assert_array_equal(mask[valid], probability[valid] >= 0.9)


def test_all_nodata_input_is_refused_up_front_without_output(models, tmp_path):
    sar = write_sar_raster(tmp_path / "empty.tif", 90, 70, values=np.full((70, 90), NODATA))
    before = files_in(tmp_path)
    with pytest.raises(InputRasterError, match="no valid pixel"):
        segment(sar, tmp_path / "lulc.tif", models["lulc"], tmp_path / "conf.tif")
    assert files_in(tmp_path) == before


@pytest.mark.parametrize("cancel_after", [1, 3])
def test_cancel_removes_every_partial_file(models, tmp_path, cancel_after):
    sar = write_sar_raster(tmp_path / "sar.tif", 300, 200)
    before = files_in(tmp_path)
    calls = []

    def is_cancelled():
        calls.append(1)
        return len(calls) >= cancel_after

    with pytest.raises(CancelledError, match="Cancelled"):
        segment(sar, tmp_path / "lulc.tif", models["lulc"], tmp_path / "conf.tif",
                RunOptions(block_size=64, batch_size=1), is_cancelled=is_cancelled)
    assert files_in(tmp_path) == before


def test_progress_rises_to_100_and_log_names_the_provider(models, sar, tmp_path):
    percents, messages = [], []
    segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(block_size=64),
            progress=percents.append, log=messages.append)
    assert len(percents) > 3 and percents == sorted(percents) and percents[-1] == 100
    assert any("CPUExecutionProvider" in m for m in messages)
    assert any("test lulc model" in m for m in messages)


def test_output_replaces_an_existing_file_and_its_stale_sidecar(models, sar, tmp_path):
    output = tmp_path / "lulc.tif"
    output.write_bytes(b"old")
    (tmp_path / "lulc.tif.aux.xml").write_text("<PAMDataset><Metadata><MDI key='stale'>1</MDI></Metadata></PAMDataset>")
    segment(sar, output, models["lulc"])
    out, _ = read(output)
    assert "stale" not in out.GetMetadata()
    assert out.GetRasterBand(1).GetCategoryNames()[1] == "Water"
    assert not [name for name in files_in(tmp_path) if name.startswith(".")]


# --- up-front validation: each error says what is wrong and how to fix it, and writes nothing ---

def no_crs_raster(tmp_path):
    return write_sar_raster(tmp_path / "nocrs.tif", 50, 40, epsg=None)


def unreadable_raster(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("not a raster")
    return str(path)


def corrupt_model(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage")
    return str(path)


def model_without(tmp_path, key):
    import onnx

    model = onnx.load(write_pixel_lulc_model(tmp_path / "m.onnx"))
    kept = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / f"no_{key}.onnx"))
    return str(tmp_path / f"no_{key}.onnx")


def fixed_size_model(tmp_path):
    return write_pixel_lulc_model(tmp_path / "fixed.onnx", tile_size=64, fixed_size=True)


CASES = {
    "band out of range": (lambda t, s, m: dict(input_path=s, options=RunOptions(band=3)),
                          InputRasterError, r"Band 3 does not exist: .* has 1 band\. Choose a band between 1 and 1"),
    "no CRS": (lambda t, s, m: dict(input_path=no_crs_raster(t)), InputRasterError,
               "no coordinate reference system.*Assign"),
    "unreadable raster": (lambda t, s, m: dict(input_path=unreadable_raster(t)), InputRasterError,
                          "is not a raster GDAL can read.*such as a GeoTIFF"),
    "missing raster": (lambda t, s, m: dict(input_path=str(t / "nowhere.tif")), InputRasterError,
                       "nowhere.tif. does not exist"),
    "foreign model": (lambda t, s, m: dict(model_path=write_foreign_onnx(t / "foreign.onnx")), ModelContractError,
                      "not a SAR LULC model.*'sarlulc_contract'.*CONTRACT.md"),
    "missing metadata key": (lambda t, s, m: dict(model_path=model_without(t, "norm_std")), ModelContractError,
                             "lacks the metadata key 'norm_std'.*CONTRACT.md"),
    "corrupt model": (lambda t, s, m: dict(model_path=corrupt_model(t)), ModelContractError,
                      "could not be loaded as an ONNX model"),
    "missing model": (lambda t, s, m: dict(model_path=str(t / "none.onnx")), ModelContractError, "does not exist"),
    "wrong task": (lambda t, s, m: dict(model_path=m["water"]), ModelContractError,
                   "is a water model, but this algorithm needs a lulc model"),
    "output is input": (lambda t, s, m: dict(output_path=s), OutputError, "is the input raster"),
    "confidence is input": (lambda t, s, m: dict(confidence_path=s), OutputError, "confidence file .* is the input"),
    "confidence is output": (lambda t, s, m: dict(confidence_path=str(t / "out.tif")), OutputError,
                            "confidence file must differ from the output file"),
    "output folder missing": (lambda t, s, m: dict(output_path=str(t / "nowhere" / "out.tif")), OutputError,
                              "does not exist. Create it"),
    "tile not a multiple of 32": (lambda t, s, m: dict(options=RunOptions(tile_size=100)), OptionError,
                                  "Tile size 100 is invalid: it must be a positive multiple of 32"),
    "overlap too large": (lambda t, s, m: dict(options=RunOptions(tile_size=64, tile_overlap=32)), OptionError,
                          "Overlap 32 is invalid for 64 px tiles.*less than half"),
    "fixed graph size": (lambda t, s, m: dict(model_path=fixed_size_model(t), options=RunOptions(tile_size=128)),
                         OptionError, "only accepts tiles of 64 px"),
    "batch size": (lambda t, s, m: dict(options=RunOptions(batch_size=0)), OptionError, "Batch size 0 is invalid"),
    "unknown device": (lambda t, s, m: dict(options=RunOptions(device="tpu")), OptionError, "Unknown device 'tpu'"),
    "calibration factor nan": (lambda t, s, m: dict(options=RunOptions(calibration_factor=float("nan"))),
                               OptionError, "Calibration factor nan is invalid: give a finite value in dB"),
    "model returns NaN": (lambda t, s, m: dict(model_path=write_nan_lulc_model(t / "nan.onnx")), ModelContractError,
                          "returned NaN or infinite scores .*re-export it or choose another model"),
}


@pytest.mark.parametrize("case", CASES)
def test_invalid_runs_are_refused_up_front_with_a_helpful_message(models, sar, tmp_path, case):
    make_arguments, error, message = CASES[case]
    arguments = dict(input_path=sar, output_path=str(tmp_path / "out.tif"), model_path=models["lulc"],
                     confidence_path=str(tmp_path / "conf.tif"))
    arguments.update(make_arguments(tmp_path, sar, models))
    before = files_in(tmp_path)
    with pytest.raises(error, match=message):
        segment(**arguments)
    assert files_in(tmp_path) == before


def test_unwritable_output_folder(models, sar, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: make the permission check see what a user would
        monkeypatch.setattr(os, "access", lambda path, mode: os.path.realpath(path) != str(locked.resolve()))
    with pytest.raises(OutputError, match="folder .*locked' for the output file is not writable"):
        segment(sar, locked / "out.tif", models["lulc"])
    assert os.listdir(locked) == []


def test_cuda_request_without_cuda_explains_what_to_install(models, sar, tmp_path, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(InferenceError, match="onnxruntime-gpu"):
        segment(sar, tmp_path / "out.tif", models["lulc"], options=RunOptions(device="cuda"))
    assert files_in(tmp_path) == ["sar.tif"]


def test_missing_bundled_model_says_so(sar, tmp_path, monkeypatch):
    monkeypatch.setattr(methods, "bundled_model_path", lambda task: tmp_path / "weights" / f"{task}.onnx")
    with pytest.raises(ModelContractError, match="bundled water model is missing"):
        detect_water(sar, tmp_path / "out.tif")


def test_float64_and_integer_inputs_are_read(models, tmp_path):
    db = np.round(np.linspace(-24, -2, 60 * 50)).reshape(50, 60)
    # Integer dB is not auto-detected (integers are taken for DN), so it is declared.
    for dtype, units in (("float64", "auto"), ("int16", "dB")):
        sar = write_sar_raster(tmp_path / f"{dtype}.tif", 60, 50, dtype=dtype, nodata=-999, values=db)
        segment(sar, tmp_path / f"{dtype}_out.tif", models["lulc"], options=RunOptions(input_units=units))
        np.testing.assert_array_equal(read(tmp_path / f"{dtype}_out.tif")[1], expected_pixel_classes(db))


def test_second_band_is_used_when_asked(models, tmp_path):
    sar = write_sar_raster(tmp_path / "two.tif", 80, 60, bands=2, seed=5)
    segment(sar, tmp_path / "b2.tif", models["lulc"], options=RunOptions(band=2))
    np.testing.assert_array_equal(read(tmp_path / "b2.tif")[1], expected_pixel_classes(source_db(sar, band=2)))


def test_geographic_crs_is_copied(models, tmp_path):
    sar = write_sar_raster(tmp_path / "geo.tif", 64, 48, epsg=4326, pixel_size=0.0001, origin=(140.0, 36.0))
    out, _ = read(segment(sar, tmp_path / "out.tif", models["lulc"]).output_path)
    assert out.GetSpatialRef().GetAuthorityCode(None) == "4326"
    assert out.GetGeoTransform() == pytest.approx((140.0, 0.0001, 0.0, 36.0, 0.0, -0.0001))


def huge_sparse_raster(path, size=100_000, data_box=None):
    """A size x size float32 GeoTIFF, sparse (unwritten blocks: nodata), data only in ``data_box``;
    tiled when empty, one row per strip otherwise (so the sampled rows are cheap to read)."""
    from osgeo import osr

    layout = ["TILED=YES"] if data_box is None else ["BLOCKYSIZE=1"]
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 1, gdal.GDT_Float32,
                                                   layout + ["SPARSE_OK=TRUE", "COMPRESS=DEFLATE", "BIGTIFF=YES"])
    dataset.SetGeoTransform((500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32654)
    dataset.SetSpatialRef(srs)
    band = dataset.GetRasterBand(1)
    band.SetNoDataValue(NODATA)
    if data_box is not None:
        x, y, width, height = data_box
        band.WriteArray(np.full((height, width), -12.0, np.float32), x, y)
    dataset = None
    return str(path)


@pytest.mark.parametrize("data_box", [None, (50_001, 50_001, 20, 20)])
def test_a_huge_raster_without_data_in_its_whole_raster_sample_is_refused_at_once(models, tmp_path, data_box):
    """10^10 pixels: a block-by-block scan would take an hour; the decimated read answers at once
    (an empty sparse file without reading a pixel)."""
    sar = huge_sparse_raster(tmp_path / "huge.tif", data_box=data_box)
    before = files_in(tmp_path)
    for units in ("auto", "dB"):
        with pytest.raises(InputRasterError, match="has no valid pixel: (every pixel|each of the 65[0-9]+ pixels read "
                                                   "evenly over the whole raster).*Clip Raster by Extent"):
            segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(input_units=units))
    assert files_in(tmp_path) == before


def test_tile_and_batch_sizes_are_bounded_by_the_memory_available(models, sar, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "available_memory_bytes", lambda: 2 * 2**30)
    with pytest.raises(OptionError, match=r"Tiles of 4096 px in batches of 4 need about \d+\.\d GiB of memory, more "
                                          r"than the 1\.5 GiB this run may use .*tile size of at most (\d+) px"
                       ) as refused:
        segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(tile_size=4096, batch_size=4))
    assert files_in(tmp_path) == ["sar.tif"]
    # what the message proposes runs
    largest_tile = int(str(refused.value).split("tile size of at most ")[1].split(" px")[0])
    assert 32 <= largest_tile < 4096
    segment(sar, tmp_path / "lulc.tif", models["lulc"], options=RunOptions(tile_size=largest_tile, batch_size=4))
    db = source_db(sar)
    np.testing.assert_array_equal(read(tmp_path / "lulc.tif")[1],
                                  np.where(db == NODATA, 0, expected_pixel_classes(db)))


def test_the_default_batch_size_on_the_cpu_is_the_largest_within_the_run_budget(models, sar, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "CPU_RUN_BUDGET", run_memory_bytes(64, 3, len(CODES), 16, engine.DEFAULT_BLOCK_SIZE,
                                                                     203))
    messages = []
    segment(sar, tmp_path / "lulc.tif", models["lulc"], log=messages.append)
    assert any("batches of 3" in m for m in messages)
    messages.clear()
    segment(sar, tmp_path / "asked.tif", models["lulc"], options=RunOptions(batch_size=4), log=messages.append)
    assert any("batches of 4" in m for m in messages)  # what the user asks for, when memory allows
    np.testing.assert_array_equal(read(tmp_path / "lulc.tif")[1], read(tmp_path / "asked.tif")[1])


def test_the_default_batch_size_shrinks_to_fit_in_memory_and_says_so(models, sar, tmp_path, monkeypatch):
    fits_two = run_memory_bytes(64, 2, len(CODES), 16, engine.DEFAULT_BLOCK_SIZE, 203) / MEMORY_SHARE
    monkeypatch.setattr(settings, "available_memory_bytes", lambda: int(fits_two) + 1)
    messages = []
    segment(sar, tmp_path / "lulc.tif", models["lulc"], log=messages.append)
    assert any("Batch size lowered from 4 to 2 tiles to fit in the memory available" in m for m in messages)
    assert any("batches of 2" in m for m in messages)
    with pytest.raises(OptionError, match="batch size of at most 2"):
        segment(sar, tmp_path / "again.tif", models["lulc"], options=RunOptions(batch_size=3))


def test_more_threads_than_cpus_are_capped_and_said(tmp_path, sar_raster, lulc_model):
    """THREADS=1000 on a small machine would make ONNX Runtime's threads wait on each other for minutes."""
    from sarlulc.inference.session import usable_cpus

    lines = []
    report = engine.segment(sar_raster, str(tmp_path / "lulc.tif"), model_path=lulc_model,
                            options=RunOptions(threads=1000), log=lines.append)
    assert report.valid_pixels > 0
    assert f"ONNX Runtime threads: {usable_cpus()} (THREADS 1000 capped at the {usable_cpus()} CPUs" in "\n".join(lines)


def test_confidence_is_held_at_chance_where_the_backscatter_is_unlike_the_training(tmp_path):
    """Must-have of issue 19: OUTPUT_CONFIDENCE honest. Pixels 12 dB brighter than anything the model learnt get
    at most 1/9; the others keep the model's confidence."""
    from factories import DEMO_LIKE_DISTRIBUTION

    model = write_pixel_lulc_model(tmp_path / "lulc.onnx", tile_size=64, tile_overlap=16,
                                   input_distribution=DEMO_LIKE_DISTRIBUTION)  # training pixels 1..99 %: -24..3 dB
    values = np.full((80, 120), -10.0, np.float32)
    values[:, 80:] = 15.0
    sar = write_sar_raster(tmp_path / "bright.tif", 120, 80, values=values)
    lines = []
    segment(sar, tmp_path / "lulc.tif", model, confidence_path=tmp_path / "confidence.tif", log=lines.append)
    confidence = gdal.Open(str(tmp_path / "confidence.tif")).ReadAsArray()
    assert np.all(confidence[:, 84:] <= 1 / 9 + 1e-6)
    assert np.all(confidence[:, :76] > 0.5)
    assert "Confidence: pixels outside -27.0..6.0 dB" in "\n".join(lines)


def test_a_graph_fixed_smaller_than_the_contract_tile_gets_an_overlap_that_fits(tmp_path):
    """A custom model whose graph takes 128 px tiles while its contract declares 256 px with 64 px overlap: the
    user set neither, so the run takes a fitting overlap and says so (was: "Overlap 64 is invalid for 128 px")."""
    model = write_pixel_lulc_model(tmp_path / "fixed128.onnx", tile_size=256, tile_overlap=64, fixed_size=128)
    scene = write_sar_raster(tmp_path / "s.tif", 300, 200)
    lines = []
    report = segment(scene, tmp_path / "c.tif", model, log=lines.append)
    assert report.valid_pixels == 300 * 200
    assert "Tile overlap 32 px: the model's default (64 px) is too large for 128 px tiles" in lines
    with pytest.raises(OptionError, match="Overlap 64 is invalid for 128 px tiles"):  # set by the user: refused
        segment(scene, tmp_path / "d.tif", model, options=RunOptions(tile_overlap=64))

"""Bad input VALUES through Processing, as a user meets them: rasters that are not SAR backscatter
(RGB pictures, 8-bit stretches, complex SLC, class maps), units that contradict the data, scaled
or empty rasters, broken models, and parameters out of range.

Each row runs ``processing.run`` and asserts a QgsProcessingException whose message says what is
wrong and what to do, that the output folder stays empty (no output, no hidden partial file, no
style sidecar) and that the input's bytes are unchanged. The README's "What happens with bad
input" table lists the same refusals.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal, osr
from qgis.core import QgsProcessingException

from factories import write_nan_lulc_model, write_sar_raster

gdal.UseExceptions()


def _georeferenced(path, width, height, bands, gdal_type, options=()):
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, gdal_type, list(options))
    dataset.SetGeoTransform((500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32654)
    dataset.SetSpatialRef(srs)
    return dataset


def rgb_picture(folder):
    """A screenshot-like RGB GeoTIFF (3 x Byte, PHOTOMETRIC=RGB): dark blue sea, green land."""
    dataset = _georeferenced(folder / "map_screenshot.tif", 60, 40, 3, gdal.GDT_Byte, ["PHOTOMETRIC=RGB"])
    for band, value in zip((1, 2, 3), (30, 120, 160)):
        dataset.GetRasterBand(band).WriteArray(np.full((40, 60), value, np.uint8))
    dataset = None
    return folder / "map_screenshot.tif"


def stretched_byte(folder):
    """One 8-bit band of display brightness (what an 8-bit export of a SAR scene looks like)."""
    values = np.random.default_rng(1).integers(20, 255, (40, 60))
    return write_sar_raster(folder / "quicklook.tif", 60, 40, dtype="uint8", nodata=0, values=values)


def dn(folder, name="dn.tif", description=None, nodata=0.0, values=None, scale=None):
    """ALOS-2-like UInt16 DN (land about -10 dB, water about -25 dB)."""
    if values is None:
        values = np.where(np.arange(60)[None, :] < 20, 800, 4500) + np.zeros((40, 1))
    path = write_sar_raster(folder / name, 60, 40, dtype="uint16", nodata=nodata, values=values)
    if description or scale:
        dataset = gdal.Open(path, gdal.GA_Update)
        if description:
            dataset.GetRasterBand(1).SetDescription(description)
        if scale:
            dataset.GetRasterBand(1).SetScale(scale)
        dataset = None
    return path


def db(folder):
    return write_sar_raster(folder / "sigma0_db.tif", 60, 40)


def signed_db_times_100(folder):
    values = np.round(np.linspace(-2400, -200, 60 * 40)).reshape(40, 60)
    return write_sar_raster(folder / "db_x100.tif", 60, 40, dtype="int16", nodata=-32768, values=values)


def complex_slc(folder, gdal_type=gdal.GDT_CFloat32):
    dataset = _georeferenced(folder / "slc.tif", 60, 40, 1, gdal_type)
    z = (np.random.default_rng(2).normal(size=(40, 60)) + 1j * np.random.default_rng(3).normal(size=(40, 60)))
    dataset.GetRasterBand(1).WriteArray((z * 100).astype(np.complex64))
    dataset = None
    return folder / "slc.tif"


def class_map(folder):
    """A paletted class raster, as the plugin's own LULC output would be if fed back by mistake."""
    dataset = _georeferenced(folder / "lulc.tif", 60, 40, 1, gdal.GDT_Byte)
    band = dataset.GetRasterBand(1)
    band.WriteArray(np.random.default_rng(4).integers(1, 10, (40, 60)).astype(np.uint8))
    table = gdal.ColorTable()
    for code in range(1, 10):
        table.SetColorEntry(code, (25 * code, 100, 255 - 25 * code, 255))
    band.SetColorTable(table)
    dataset = None
    return folder / "lulc.tif"


def empty_mosaic_tile(folder):
    """An ocean-only ALOS-2 mosaic tile: every pixel is the declared nodata 1."""
    return dn(folder, "N35E140_sl_HH.tif", nodata=1, values=np.ones((40, 60)))


def huge_empty(folder):
    """100,000 x 100,000 px (10^10 pixels), sparse: no block written, all nodata."""
    dataset = _georeferenced(folder / "huge.tif", 100_000, 100_000, 1, gdal.GDT_Float32,
                             ["TILED=YES", "SPARSE_OK=TRUE", "BIGTIFF=YES"])
    dataset.GetRasterBand(1).SetNoDataValue(-9999.0)
    dataset = None
    return folder / "huge.tif"


def text_file(folder):
    (folder / "scene.tif").write_text("<html>404 Not Found</html>")  # a failed download saved as .tif
    return folder / "scene.tif"


def a_folder(folder):
    (folder / "SAFE").mkdir()
    return folder / "SAFE"


SEGMENT, WATER, CALIBRATE, EVALUATE = "sarlulc:segment", "sarlulc:waterdetect", "sarlulc:calibrate", "sarlulc:evaluate"

# (case, algorithm, input maker, extra parameters, what the message must say); "{lulc}", "{water}",
# "{nan_model}" and "{models}" in parameters are replaced by the model files and their folder.
CASES = [
    ("RGB picture, units auto", SEGMENT, rgb_picture, {}, "looks like an RGB image.*not SAR backscatter"),
    ("RGB picture, units set to DN", WATER, rgb_picture, {"INPUT_UNITS": "ALOS-2 DN"}, "looks like an RGB image"),
    ("8-bit stretched band, units set to dB", SEGMENT, stretched_byte, {"INPUT_UNITS": "dB"},
     "INPUT_UNITS is dB, but .*outside -100..40"),
    ("DN band labelled dB", SEGMENT, lambda f: dn(f, description="HH dB"), {},
     "labelled dB .*cannot be dB .*set INPUT_UNITS"),
    ("DN declared on a dB raster", SEGMENT, db, {"INPUT_UNITS": "ALOS-2 DN"},
     "INPUT_UNITS is ALOS-2 DN, but .*negative.*look like dB"),
    ("dB declared on UInt16 DN", WATER, dn, {"INPUT_UNITS": "dB"},
     "INPUT_UNITS is dB, but .*outside -100..40.*look like ALOS-2 DN"),
    ("linear power declared on dB", SEGMENT, db, {"INPUT_UNITS": "linear power"},
     "INPUT_UNITS is linear power, but .*negative"),
    ("dB x 100 in Int16 without its scale", SEGMENT, signed_db_times_100, {"INPUT_UNITS": "dB"},
     "INPUT_UNITS is dB, but .*outside -100..40"),
    ("complex SLC, units auto", SEGMENT, complex_slc, {}, r"complex values \(CFloat32\).*intensity \|z\|²"),
    ("complex SLC, units set to dB", WATER, complex_slc, {"INPUT_UNITS": "dB"}, r"complex values.*intensity"),
    ("complex CInt16", SEGMENT, lambda f: complex_slc(f, gdal.GDT_CInt16), {"INPUT_UNITS": "linear power"},
     r"complex values \(CInt16\)"),
    ("class map with a colour table", SEGMENT, class_map, {}, "colour table: it looks like a class map"),
    ("empty mosaic tile (nodata 1)", SEGMENT, empty_mosaic_tile, {},
     r"has no valid pixel: every pixel is nodata \(1\) or 0"),
    ("10^10-pixel raster without data", WATER, huge_empty, {"INPUT_UNITS": "dB"},
     "has no valid pixel.*Clip Raster by Extent"),
    ("model returning NaN", SEGMENT, db, {"MODEL": "{nan_model}"}, "returned NaN or infinite scores"),
    ("calibration factor NaN", SEGMENT, dn, {"CALIBRATION_FACTOR": float("nan")},
     "Calibration factor nan is invalid: give a finite value in dB"),
    ("calibration factor infinite", CALIBRATE, dn, {"CALIBRATION_FACTOR": "inf"}, "Calibration factor inf is invalid"),
    ("calibration factor without its minus sign", CALIBRATE, dn, {"CALIBRATION_FACTOR": 83},
     r"Calibration factor 83 dB is outside -120..-40 dB.*PALSAR-2: -83 dB; check the sign.*166 dB off"),
    ("calibration factor 1e300", SEGMENT, dn, {"CALIBRATION_FACTOR": 1e300}, r"Calibration factor 1e\+300 dB is outside"),
    ("calibrate an RGB picture", CALIBRATE, rgb_picture, {}, "looks like an RGB image"),
    ("calibrate signed integers", CALIBRATE, signed_db_times_100, {},
     r"signed integer values \(Int16\).*ALOS-2 DN are unsigned 16-bit"),
    ("calibrate an 8-bit band", CALIBRATE, stretched_byte, {}, r"8-bit values \(Byte\)"),
    ("calibrate a scaled band", CALIBRATE, lambda f: dn(f, scale=0.01), {},
     "GDAL scale/offset .*not raw ALOS-2 DN"),
    ("tile size beyond memory", SEGMENT, db, {"TILE_SIZE": 16384},
     r"Tiles of 16384 px in batches of \d+ need about [\d.]+ GiB of memory.*Use .*at most"),
    ("batch size beyond memory", WATER, db, {"BATCH_SIZE": 100000},
     r"in batches of 100000 need about [\d.]+ GiB.*batch size of at most \d+"),
    ("negative overlap", SEGMENT, db, {"OVERLAP": -5}, "Overlap -5 is invalid: it must be at least 0"),
    ("overlap of half a tile", WATER, db, {"TILE_SIZE": 64, "OVERLAP": 32},
     r"Overlap 32 is invalid for 64 px tiles.*below 32"),
    ("overlap as text", SEGMENT, db, {"OVERLAP": "sixteen"}, r"\(OVERLAP\): 'sixteen' is not a number"),
    ("tile size not a multiple of 32", SEGMENT, db, {"TILE_SIZE": 100}, "Tile size 100 is invalid.*multiple of 32"),
    ("water threshold above 1", WATER, db, {"THRESHOLD": 1.5}, "Water threshold 1.5 is invalid.*between 0 and 1"),
    ("unknown input units", SEGMENT, db, {"INPUT_UNITS": "amplitude"},
     "Unknown input units 'amplitude'. Choose one of: auto, ALOS-2 DN, linear power, dB"),
    ("speckle window out of range", SEGMENT, db, {"FILTER_SIZE": 40},
     r"\(FILTER_SIZE\): 40 is out of range; use 3 to 31"),
    ("model given as a folder", WATER, db, {"MODEL": "{models}"}, "is a folder; choose the .onnx model file itself"),
    ("input is not a raster", SEGMENT, text_file, {}, r"\(INPUT\): The input raster .* is not a raster GDAL can read"),
    ("input is a folder", WATER, a_folder, {}, r"\(INPUT\): The input raster .* is a folder"),
    ("calibrate input is not a raster", CALIBRATE, text_file, {}, "is not a raster GDAL can read"),
    ("evaluate prediction is not a raster", EVALUATE, text_file, {},
     r"\(PREDICTION\): .*is not a raster GDAL can read"),
]


def digest(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names and bytes)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    hasher = hashlib.sha256()
    for file in files:
        hasher.update(str(file.relative_to(path.parent)).encode() + file.read_bytes())
    return hasher.hexdigest()


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    return write_nan_lulc_model(tmp_path_factory.mktemp("broken") / "nan.onnx")


@pytest.mark.parametrize("case, algorithm, make_input, extra, message", CASES, ids=[row[0] for row in CASES])
def test_bad_input_value_is_refused_clearly_leaving_nothing_behind(sarlulc_provider, lulc_model, water_model,
                                                                   nan_model, model_dir, tmp_path, case, algorithm,
                                                                   make_input, extra, message):
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    raster = Path(make_input(inputs))
    models = {"{lulc}": lulc_model, "{water}": water_model, "{nan_model}": nan_model, "{models}": str(model_dir)}
    extra = {key: models.get(value, value) if isinstance(value, str) else value for key, value in extra.items()}
    if algorithm == EVALUATE:
        reference = write_sar_raster(tmp_path / "reference.tif", 60, 40, dtype="uint8", nodata=255,
                                     values=np.ones((40, 60)))
        parameters = {"PREDICTION": str(raster), "REFERENCE": reference,
                      "OUTPUT_CSV": str(out / "metrics.csv"), "OUTPUT_HTML": str(out / "report.html")}
    else:
        parameters = {"INPUT": str(raster), "OUTPUT": str(out / "result.tif")}
        if algorithm != CALIBRATE:
            parameters["MODEL"] = lulc_model if algorithm == SEGMENT else water_model
    parameters.update(extra)
    before = digest(raster)

    with pytest.raises(QgsProcessingException, match=message) as refused:
        processing.run(algorithm, parameters)

    assert "Traceback" not in str(refused.value)
    assert os.listdir(out) == [], f"{case}: left {os.listdir(out)}"
    assert digest(raster) == before, f"{case}: the input changed"


def test_rows_cover_every_algorithm_and_are_many():
    assert len(CASES) >= 20
    assert {row[1] for row in CASES} == {SEGMENT, WATER, CALIBRATE, EVALUATE}
    assert len({row[0] for row in CASES}) == len(CASES)


def test_calibrate_takes_band_1_by_default_like_segment(sarlulc_provider, tmp_path):
    raster = dn(tmp_path)
    result = processing.run(CALIBRATE, {"INPUT": raster, "OUTPUT": str(tmp_path / "sigma0.tif")})
    sigma0 = gdal.Open(result["OUTPUT"]).ReadAsArray()
    np.testing.assert_allclose(sigma0[0, :20], 20 * np.log10(800) - 83.0, atol=1e-4)


def test_non_physical_db_values_are_nodata_and_counted(tmp_path, lulc_model):
    """+-1e30 in a dB raster (a tool's fill) is no backscatter: nodata in the map, and the log says how much."""
    from sarlulc.inference import engine

    values = np.full((40, 60), -9.0, np.float32)
    values[:10, :20] = 1e30
    values[30:, 40:] = -1e30
    sar = write_sar_raster(tmp_path / "filled.tif", 60, 40, values=values)
    warnings = []
    engine.segment(sar, str(tmp_path / "lulc.tif"), model_path=lulc_model, warn=warnings.append)
    classes = gdal.Open(str(tmp_path / "lulc.tif")).ReadAsArray()
    assert (classes[:10, :20] == 0).all() and (classes[30:, 40:] == 0).all() and (classes[15:25, 25:35] > 0).all()
    (warning,) = [w for w in warnings if "no backscatter in dB has" in w]
    assert "16.7% of the pixels" in warning and "1e+30" in warning and "declare it as the band's nodata" in warning


def test_an_undeclared_fill_value_is_named_when_the_units_cannot_be_told(tmp_path, lulc_model):
    from sarlulc.inference import engine
    from sarlulc.errors import InputRasterError

    values = np.full((40, 60), -9999.0, np.float32)
    values[:, 35:] = np.random.default_rng(0).uniform(0.5, 3.0, (40, 25))  # dB-like? power-like? neither
    sar = write_sar_raster(tmp_path / "undeclared.tif", 60, 40, values=values, nodata=None)
    with pytest.raises(InputRasterError, match=r"58% of the pixels are exactly -9999: if that is a fill value, "
                                               r"declare it as the band's nodata"):
        engine.segment(sar, str(tmp_path / "lulc.tif"), model_path=lulc_model)


def test_a_vrt_whose_source_is_missing_is_refused_naming_it(tmp_path, lulc_model):
    from sarlulc.inference import engine
    from sarlulc.errors import InputRasterError

    source = write_sar_raster(tmp_path / "part.tif", 60, 40)
    gdal.BuildVRT(str(tmp_path / "mosaic.vrt"), [source]).FlushCache()
    Path(source).unlink()
    before = (tmp_path / "mosaic.vrt").read_bytes()
    with pytest.raises(InputRasterError, match=r"mosaic\.vrt' cannot be read: a file it is made of fails "
                                               r"\(.*part\.tif: No such file or directory\)\. Check the files it refers to"):
        engine.segment(str(tmp_path / "mosaic.vrt"), str(tmp_path / "lulc.tif"), model_path=lulc_model)
    assert (tmp_path / "mosaic.vrt").read_bytes() == before and not (tmp_path / "lulc.tif").exists()

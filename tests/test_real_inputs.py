"""Real SAR inputs through the engine: units (ALOS-2 DN, linear power, dB), pixel sizes and CRSs
other than the model's 10 m grid, nodata, speckle filtering and multi-band rasters.

Scenes come from the simulator (`sarlulc.simulate`) with backscatter set to the factory pixel
model's class centres, so the model recovers the simulated classes and any difference comes
from the input handling under test.
"""

import dataclasses

import numpy as np
import pytest
from osgeo import gdal

from sarlulc.products import LULC_CLASSES
from sarlulc.inference.__main__ import main as cli_main
from sarlulc.inference.engine import RunOptions, detect_water, segment
from sarlulc.errors import CancelledError, InputRasterError, OptionError
from sarlulc.rasters.reading import BackscatterReader, BandReader, open_raster
from sarlulc.rasters.resample import decide_model_grid
from sarlulc.sar.decibels import power_to_db
from sarlulc.sar.units import InputUnits, detect_band_units, sample_valid_values
from sarlulc.rasters.windows import Window
from sarlulc.simulate import metres_per_degree, simulate_scene, write_scene

from factories import (expected_pixel_classes, lulc_centres_db, write_alos2_mosaic_tile, write_context_lulc_model,
                        web_mercator_point, write_pixel_lulc_model, write_pixel_water_model, write_sar_raster)

LOOKS = 50.0  # multi-looked: class centres are 2.9 dB apart, the speckle about 0.6 dB


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {"pixel": write_pixel_lulc_model(folder / "pixel.onnx", tile_size=64, tile_overlap=16),
            "context": write_context_lulc_model(folder / "context.onnx", tile_size=64, tile_overlap=24, kernel=9),
            "water": write_pixel_water_model(folder / "water.onnx", tile_size=64, tile_overlap=16)}


def class_scene(size, seed, enlarge=1):
    """A simulated layout (parcels enlarged ``enlarge`` times) whose backscatter is each class's
    pixel-model centre with multi-look speckle; nodata margins as the simulator makes them."""
    scene = simulate_scene(size, seed, looks=LOOKS)
    block = np.ones((enlarge, enlarge), np.uint8)
    labels = np.kron(scene.labels, block)
    rng = np.random.default_rng(seed)
    speckle_db = power_to_db(rng.gamma(LOOKS, 1.0 / LOOKS, labels.shape))
    sigma0 = lulc_centres_db(len(LULC_CLASSES))[np.maximum(labels, 1) - 1] + speckle_db
    sigma0[labels == 0] = np.nan
    return dataclasses.replace(scene, labels=labels, sigma0_db=sigma0, layers={},
                               reflectivity_db=np.kron(scene.reflectivity_db, block),
                               elevation_m=np.kron(scene.elevation_m, block))


def read(path):
    dataset = gdal.Open(str(path))
    return dataset, dataset.GetRasterBand(1).ReadAsArray()


def warp_like(path, like, resampling):
    """``path`` resampled onto the exact grid of the dataset ``like`` (in memory)."""
    gt = like.GetGeoTransform()
    bounds = (gt[0], gt[3] + gt[5] * like.RasterYSize, gt[0] + gt[1] * like.RasterXSize, gt[3])
    return gdal.Warp("", str(path), format="MEM", dstSRS=like.GetProjection(), outputBounds=bounds,
                     width=like.RasterXSize, height=like.RasterYSize, resampleAlg=resampling).ReadAsArray()


def geographic_copy(source_path, path, pixel_m):
    """``source_path`` (linear power, nodata 0) averaged onto an EPSG:4326 grid of about ``pixel_m``."""
    east_m, north_m = metres_per_degree(38.0)
    gdal.Warp(str(path), str(source_path), dstSRS="EPSG:4326", xRes=pixel_m / east_m, yRes=pixel_m / north_m,
              resampleAlg="average", srcNodata=0, dstNodata=0, creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
    return str(path)


def test_same_scene_as_dn_linear_power_and_db_gives_the_same_classes(models, tmp_path):
    scene = class_scene(160, seed=11)
    results = {}
    for units in ("db", "linear", "dn"):
        sar, _ = write_scene(scene, tmp_path, units, units=units)
        messages = []
        segment(sar, tmp_path / f"{units}_classes.tif", models["pixel"], log=messages.append)
        results[units] = read(tmp_path / f"{units}_classes.tif")[1]
        detected = {"db": "dB", "linear": "linear power", "dn": "ALOS-2 DN"}[units]
        assert any(m.startswith(f"Input units: {detected}, detected automatically from") for m in messages)
        assert any(m.startswith("Using band 1 of 1 (HH ") for m in messages)
        assert not any(m.startswith("Resampling") for m in messages)  # 10 m UTM: read as it is
    # DN is rounded to integers: pixels within ~0.003 dB of a class boundary may flip.
    assert (results["dn"] == results["db"]).mean() >= 0.999
    np.testing.assert_array_equal(results["linear"] == results["db"], True)
    nodata = scene.labels == 0
    assert nodata.any()  # the simulator's nodata margin: DN 0, linear 0, dB -9999
    for classes in results.values():
        np.testing.assert_array_equal(classes == 0, nodata)
    assert (results["dn"][~nodata] == scene.labels[~nodata]).mean() > 0.95  # the classes are the scene's


def test_dn_zero_is_nodata_even_without_a_nodata_value(models, tmp_path):
    dn = np.full((60, 70), 3000, np.uint16)
    dn[20:30, 10:50] = 0
    sar = write_sar_raster(tmp_path / "dn.tif", 70, 60, dtype="uint16", nodata=None, values=dn)
    report = segment(sar, tmp_path / "classes.tif", models["pixel"], tmp_path / "confidence.tif")
    classes, confidence = read(report.output_path)[1], read(report.extra_output_path)[1]
    np.testing.assert_array_equal(classes == 0, dn == 0)
    np.testing.assert_array_equal(confidence == -1, dn == 0)
    sigma0 = 20 * np.log10(3000.0) - 83.0  # -13.46 dB
    np.testing.assert_array_equal(classes[dn > 0], expected_pixel_classes(np.float32(sigma0)))


def test_25_m_geographic_input_gives_the_10_m_result_on_its_own_grid(models, tmp_path):
    scene = class_scene(80, seed=5, enlarge=6)  # 480 x 480 px at 10 m, parcels large against 25 m
    sar_10m, _ = write_scene(scene, tmp_path, "utm10", units="linear")
    segment(sar_10m, tmp_path / "classes_10m.tif", models["pixel"])
    sar_25m = geographic_copy(sar_10m, tmp_path / "geo25.tif", 25.0)
    messages = []
    report = segment(sar_25m, tmp_path / "classes_25m.tif", models["pixel"], tmp_path / "confidence_25m.tif",
                     log=messages.append)

    source, (output, classes) = gdal.Open(sar_25m), read(report.output_path)
    assert (output.RasterXSize, output.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    assert output.GetGeoTransform() == pytest.approx(source.GetGeoTransform(), rel=1e-12)
    assert output.GetSpatialRef().GetAuthorityCode(None) == "4326"
    assert output.GetRasterBand(1).GetCategoryNames()[1:] == [name for _, name, _ in LULC_CLASSES]
    reference = warp_like(tmp_path / "classes_10m.tif", output, "mode")  # the 10 m run, downsampled
    compared = (classes != 0) & (reference != 0)
    assert compared.sum() > 0.9 * (classes != 0).sum()
    assert (classes[compared] == reference[compared]).mean() >= 0.95
    confidence = read(report.extra_output_path)[1]
    np.testing.assert_array_equal(confidence == -1, classes == 0)
    assert confidence[classes != 0].min() > 0
    resampling = [m for m in messages if m.startswith("Resampling")]
    assert len(resampling) == 1
    assert "input 25.0 m in EPSG:4326" in resampling[0]
    assert "read on a 10 m grid in EPSG:32654 (WGS 84 / UTM zone 54N)" in resampling[0]
    assert "result brought back to the input grid" in resampling[0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no model-grid leftovers


@pytest.mark.parametrize("cancel_after", [1, 5, 30])  # while streaming (first and later blocks), warping back
def test_cancel_of_a_resampled_run_leaves_nothing(models, tmp_path, cancel_after):
    scene = class_scene(96, seed=12)
    (tmp_path / "in").mkdir()
    sar, _ = write_scene(scene, tmp_path / "in", "geo", units="dn", crs="EPSG:4326")
    calls = []

    def is_cancelled():
        calls.append(1)
        return len(calls) >= cancel_after

    with pytest.raises(CancelledError, match="Cancelled"):
        segment(sar, tmp_path / "classes.tif", models["pixel"], tmp_path / "confidence.tif",
                RunOptions(block_size=48), is_cancelled=is_cancelled)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_output_grid_model_keeps_the_result_on_the_10_m_utm_grid(models, tmp_path):
    scene = class_scene(64, seed=2)
    sar, _ = write_scene(scene, tmp_path, "geo", units="db", crs="EPSG:4326")
    messages = []
    report = detect_water(sar, tmp_path / "water.tif", models["water"], tmp_path / "probability.tif",
                          RunOptions(output_grid="model"), log=messages.append)
    for path in (report.output_path, report.extra_output_path):
        output = gdal.Open(path)
        assert output.GetSpatialRef().GetAuthorityCode(None) == "32654"
        gt = output.GetGeoTransform()
        assert (gt[1], gt[2], gt[4], gt[5]) == (10.0, 0.0, 0.0, -10.0)
        assert gt[0] % 10 == 0 and gt[3] % 10 == 0
        assert 60 <= output.RasterXSize <= 70 and 60 <= output.RasterYSize <= 70
    mask = read(report.output_path)[1]
    assert {0, 1, 255} >= set(np.unique(mask)) and (mask == 1).any() and (mask == 0).any()
    assert any("result kept on the model grid" in m for m in messages)


@pytest.mark.parametrize("case", ["10 m", "10 m + refined Lee", "25 m EPSG:4326"])
def test_nodata_never_influences_neighbours_and_stays_nodata(models, tmp_path, case):
    """The same hole filled with two different nodata values gives the same result everywhere
    (a context model, a speckle filter or resampling would spread the values if they leaked)."""
    db = class_scene(48, seed=7, enlarge=3).sigma0_db[:120, :130]
    db = np.where(np.isnan(db), -12.0, db)
    hole = np.zeros(db.shape, bool)
    hole[50:75, 40:80] = True
    options = RunOptions(speckle_filter="refined Lee" if "Lee" in case else "none", filter_size=7)
    results = []
    for fill in (-9999.0, 30.0):
        sar = write_sar_raster(tmp_path / f"hole_{fill}.tif", 130, 120, nodata=fill, values=np.where(hole, fill, db))
        if case == "25 m EPSG:4326":
            linear = write_sar_raster(tmp_path / f"linear_{fill}.tif", 130, 120, nodata=0,
                                      values=np.where(hole, 0.0, 10 ** (db / 10)))
            sar = geographic_copy(linear, tmp_path / f"geo_{fill}.tif", 25.0)
        report = segment(sar, tmp_path / f"out_{fill}.tif", models["context"], tmp_path / f"conf_{fill}.tif",
                         options)
        results.append((read(report.output_path)[1], read(report.extra_output_path)[1]))
    (classes_a, confidence_a), (classes_b, confidence_b) = results
    np.testing.assert_array_equal(classes_a, classes_b)
    np.testing.assert_array_equal(confidence_a, confidence_b)
    if case != "25 m EPSG:4326":
        np.testing.assert_array_equal(classes_a == 0, hole)
    else:  # exactly the 25 m input's nodata pixels (the hole, about 10 x 16 px, and the footprint's edges)
        input_nodata = read(sar)[1] == 0
        np.testing.assert_array_equal(classes_a == 0, input_nodata)
        assert input_nodata[15:35, 12:38].sum() > 0.8 * (25 * 40) * (10 / 25) ** 2
    np.testing.assert_array_equal(confidence_a == -1, classes_a == 0)


def test_pixel_model_neighbours_of_a_hole_keep_their_classes(models, tmp_path):
    db = class_scene(64, seed=3).sigma0_db
    db = np.where(np.isnan(db), -12.0, db)
    holed = db.copy()
    holed[20:40, 25:45] = -9999.0
    full = segment(write_sar_raster(tmp_path / "full.tif", 64, 64, values=db), tmp_path / "full_out.tif",
                   models["pixel"], options=RunOptions(speckle_filter="Lee"))
    with_hole = segment(write_sar_raster(tmp_path / "holed.tif", 64, 64, values=holed), tmp_path / "holed_out.tif",
                        models["pixel"], options=RunOptions(speckle_filter="Lee"))
    full_classes, holed_classes = read(full.output_path)[1], read(with_hole.output_path)[1]
    hole = holed == -9999.0
    np.testing.assert_array_equal(holed_classes == 0, hole)
    ring = np.zeros_like(hole)
    ring[17:43, 22:48] = True  # pixels within the Lee window's reach of the hole
    ring &= ~hole
    # Lee statistics near the hole use fewer pixels, so a few classes there may differ; far away none.
    assert (holed_classes[ring] == full_classes[ring]).mean() > 0.8
    np.testing.assert_array_equal(holed_classes[~ring & ~hole], full_classes[~ring & ~hole])


@pytest.mark.parametrize("speckle_filter", ["Lee", "refined Lee"])
def test_speckle_filter_does_not_depend_on_the_tiling(models, tmp_path, speckle_filter):
    sar = write_sar_raster(tmp_path / "sar.tif", 150, 130, nodata_box=(60, 40, 90, 70), seed=4)
    # The filtered input of any window is bit-identical to the same pixels filtered whole.
    reader = BackscatterReader(BandReader(open_raster(sar), 1, sar), InputUnits.DB,
                               speckle_filter=speckle_filter, filter_size=7)
    whole, whole_valid = reader.read(Window(0, 0, 150, 130))
    for window in (Window(0, 0, 50, 40), Window(55, 35, 41, 47), Window(100, 90, 50, 40)):
        part, part_valid = reader.read(window)
        np.testing.assert_array_equal(part[part_valid], whole[window.slices_in(reader.raster)][part_valid])
        np.testing.assert_array_equal(part_valid, whole_valid[window.slices_in(reader.raster)])
    runs = []
    for block, tile, overlap in ((2048, 64, 16), (48, 64, 16), (96, 64, 16), (64, 32, 0)):
        options = RunOptions(speckle_filter=speckle_filter, filter_size=7, block_size=block, tile_size=tile,
                             tile_overlap=overlap)
        report = segment(sar, tmp_path / f"{block}_{tile}.tif", models["pixel"], tmp_path / f"c{block}_{tile}.tif",
                         options)
        runs.append((read(report.output_path)[1], read(report.extra_output_path)[1]))
    for classes, confidence in runs[1:]:
        np.testing.assert_array_equal(classes, runs[0][0])
        # blending sums tile outputs in another order: float rounding only, as without a filter
        np.testing.assert_allclose(confidence, runs[0][1], atol=1e-6)
    unfiltered = read(segment(sar, tmp_path / "none.tif", models["pixel"]).output_path)[1]
    assert (unfiltered != runs[0][0]).mean() > 0.02  # the filter changed the input the model saw


def test_filter_options_are_checked_before_any_output(models, tmp_path):
    sar = write_sar_raster(tmp_path / "sar.tif", 40, 30)
    with pytest.raises(OptionError, match="not supported for refined Lee; use 5, 7, 9, 11"):
        segment(sar, tmp_path / "out.tif", models["pixel"], options=RunOptions(speckle_filter="refined Lee",
                                                                                filter_size=13))
    with pytest.raises(OptionError, match="Unknown speckle filter 'median'"):
        segment(sar, tmp_path / "out.tif", models["pixel"], options=RunOptions(speckle_filter="median"))
    with pytest.raises(OptionError, match="Unknown input units 'amplitude'. Choose one of: auto, ALOS-2 DN"):
        segment(sar, tmp_path / "out.tif", models["pixel"], options=RunOptions(input_units="amplitude"))
    with pytest.raises(OptionError, match="Unknown output grid"):
        segment(sar, tmp_path / "out.tif", models["pixel"], options=RunOptions(output_grid="utm"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sar.tif"]


def test_ambiguous_units_are_refused_naming_input_units(models, tmp_path):
    values = np.linspace(2.0, 40.0, 40 * 30).reshape(30, 40)  # positive floats, median ~21: no unit fits
    sar = write_sar_raster(tmp_path / "odd.tif", 40, 30, values=values)
    with pytest.raises(InputRasterError,
                       match="Cannot tell the units.*set INPUT_UNITS to ALOS-2 DN, linear power, dB or relative brightness"):
        segment(sar, tmp_path / "out.tif", models["pixel"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.tif"]
    # Declared, the same raster runs: as linear power it is 3..16 dB, the brightest class.
    segment(sar, tmp_path / "out.tif", models["pixel"], options=RunOptions(input_units="linear power"))
    np.testing.assert_array_equal(read(tmp_path / "out.tif")[1],
                                  expected_pixel_classes(10 * np.log10(values).astype(np.float32)))


def test_the_chosen_band_of_a_multi_band_raster_is_used_and_logged(models, tmp_path):
    sar = write_sar_raster(tmp_path / "hh_hv.tif", 50, 40, bands=2, seed=8)
    dataset = gdal.Open(sar, gdal.GA_Update)
    for band, name in ((1, "HV"), (2, "HH")):
        dataset.GetRasterBand(band).SetDescription(name)
    dataset = None
    messages = []
    segment(sar, tmp_path / "out.tif", models["pixel"], options=RunOptions(band=2), log=messages.append)
    assert "Using band 2 of 2 (HH)" in messages
    dataset = gdal.Open(sar)  # kept alive while its band is read
    hh = dataset.GetRasterBand(2).ReadAsArray()
    np.testing.assert_array_equal(read(tmp_path / "out.tif")[1], expected_pixel_classes(hh))


def test_command_line_flags_reach_the_engine(models, tmp_path, capsys):
    scene = class_scene(48, seed=9)
    sar, _ = write_scene(scene, tmp_path, "dn", units="dn", crs="EPSG:4326")
    code = cli_main(["segment", str(sar), str(tmp_path / "classes.tif"), "--model", models["pixel"],
                     "--input-units", "dn", "--calibration-factor", "-80", "--speckle-filter", "lee",
                     "--filter-size", "5", "--output-grid", "model"])
    assert code == 0
    log = capsys.readouterr().err
    assert "Input units: ALOS-2 DN (as set by INPUT_UNITS). Converted to sigma0 = 10*log10(DN^2) + (-80) dB" in log
    assert "Speckle filter: Lee, 5 x 5 px (on the model grid)" in log
    assert "result kept on the model grid" in log
    output = gdal.Open(str(tmp_path / "classes.tif"))
    assert output.GetSpatialRef().GetAuthorityCode(None) == "32654"
    assert cli_main(["segment", str(sar), str(tmp_path / "bad.tif"), "--model", models["pixel"],
                     "--speckle-filter", "refined-lee", "--filter-size", "3"]) == 2
    assert "use 5, 7, 9, 11" in capsys.readouterr().err


def test_coastal_alos2_mosaic_tile_with_nodata_1_is_detected_as_dn_and_mapped(models, tmp_path):
    """A JAXA 25 m mosaic tile as downloaded: data in a thin strip along one edge, nodata 1, rows
    as strips. A decimated read of the whole raster finds the strip; windows in its middle did not."""
    tile = write_alos2_mosaic_tile(tmp_path / "N35E135_sl_HH.tif")
    before = open(tile, "rb").read()
    dataset = gdal.Open(tile)
    sample = sample_valid_values(dataset, 1)
    assert 0 < sample.size <= 65536 and sample.min() > 1  # only the strip, never nodata 1
    assert detect_band_units(dataset, 1)[0] is InputUnits.DN

    messages = []
    report = detect_water(tile, tmp_path / "water.tif", models["water"], log=messages.append)
    assert any("Input units: ALOS-2 DN, detected automatically" in m for m in messages), messages
    _, water = read(report.output_path)
    dn = dataset.GetRasterBand(1).ReadAsArray()
    assert np.all(water[dn == 1] == 255), "nodata 1 stays nodata, also inside the strip"
    strip = dn > 1
    assert np.mean(water[strip] != 255) > 0.95
    ocean = strip & (np.arange(dn.shape[1]) < 0.4 * dn.shape[1] - 3)
    land = strip & (np.arange(dn.shape[1]) > 0.4 * dn.shape[1] + 3)
    assert np.mean(water[ocean] == 1) > 0.95 and np.mean(water[land] == 0) > 0.95
    assert open(tile, "rb").read() == before


def test_int16_db_times_100_with_a_gdal_scale_reads_as_db(models, tmp_path):
    db = np.round(np.linspace(-24, -2, 60 * 50).reshape(50, 60), 2)
    reference = write_sar_raster(tmp_path / "float.tif", 60, 50, values=db)
    scaled = write_sar_raster(tmp_path / "scaled.tif", 60, 50, dtype="int16", nodata=-32768, values=db * 100)
    dataset = gdal.Open(scaled, gdal.GA_Update)
    dataset.GetRasterBand(1).SetScale(0.01)
    dataset = None
    messages = []
    segment(scaled, tmp_path / "scaled_classes.tif", models["pixel"], log=messages.append)
    assert any("Input units: dB, detected automatically" in m for m in messages), messages
    segment(reference, tmp_path / "float_classes.tif", models["pixel"])
    np.testing.assert_array_equal(read(tmp_path / "scaled_classes.tif")[1], read(tmp_path / "float_classes.tif")[1])
    np.testing.assert_array_equal(read(tmp_path / "scaled_classes.tif")[1], expected_pixel_classes(db))


def test_web_mercator_far_from_the_equator_runs_on_a_true_10_m_grid(models, tmp_path):
    """10 EPSG:3857 "metres" are 5 m on the ground at 60 deg N: the model grid is UTM at 10 m,
    half as many pixels per axis, not the input's 10 CRS units."""
    from osgeo import osr

    x, y = web_mercator_point(10.0, 60.0)
    sar = write_sar_raster(tmp_path / "mercator.tif", 200, 160, epsg=3857, pixel_size=10.0, origin=(x, y))
    grid = decide_model_grid(gdal.Open(sar), 10.0)
    assert grid is not None and osr.SpatialReference(wkt=grid.srs_wkt).GetAuthorityCode(None) == "32632"
    assert grid.geotransform[1] == 10.0
    assert abs(grid.width - 100) <= 3 and abs(grid.height - 80) <= 3
    messages = []
    report = segment(sar, tmp_path / "classes.tif", models["pixel"], log=messages.append)
    assert any("input 5.0 m" in m and "EPSG:32632" in m for m in messages), messages
    out, classes = read(report.output_path)
    assert out.GetGeoTransform() == gdal.Open(sar).GetGeoTransform()
    assert np.mean(classes > 0) > 0.95

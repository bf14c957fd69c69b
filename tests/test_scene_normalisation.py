"""Scene-normalised models (norm_mode = scene): the map does not depend on the input's calibration.

A model whose metadata says norm_mode=scene sees each pixel relative to the whole raster's median,
computed once before tiling; a calibration offset (wrong CF, airborne product several dB off) of
the same scene must give the same map.
"""

import re

import numpy as np
import pytest

from sarlulc.inference import engine
from sarlulc.rasters.reading import open_raster
from factories import write_pixel_water_model, write_sar_raster


@pytest.fixture(scope="module")
def scene_water_model(tmp_path_factory):
    """Water where a pixel is more than 6 dB below the scene median: the factory's water rule
    (x_norm < (-18 + 12) / 6) with norm_mean 0 dB relative to the median."""
    return write_pixel_water_model(tmp_path_factory.mktemp("scene") / "scene_water.onnx", norm_mode="scene",
                                   norm_clip=(-25.0, 20.0), norm_mean=0.0, water_below_db=-18.0)


def _scene_db(width=300, height=220, seed=4):
    """Land around -9 dB with speckle-like noise, a lake at -22 dB, nodata in a corner."""
    rng = np.random.default_rng(seed)
    db = -9.0 + 2.0 * rng.standard_normal((height, width))
    db[60:160, 40:140] = -22.0 + 1.5 * rng.standard_normal((100, 100))
    db[:20, :30] = -9999.0
    return db


def _mask(path):
    dataset = open_raster(path)
    return dataset.GetRasterBand(1).ReadAsArray()


def _run(tmp_path, name, values, model, dtype="float32", nodata=-9999.0, units="auto"):
    sar = write_sar_raster(tmp_path / f"{name}.tif", values.shape[1], values.shape[0], values=values,
                           dtype=dtype, nodata=nodata)
    lines = []
    engine.detect_water(sar, str(tmp_path / f"{name}_water.tif"), model_path=model,
                        options=engine.RunOptions(input_units=units), log=lines.append)
    return _mask(tmp_path / f"{name}_water.tif"), lines


def test_calibration_offset_gives_the_same_map(tmp_path, scene_water_model):
    db = _scene_db()
    reference, lines = _run(tmp_path, "true", db, scene_water_model)
    (stats,) = [line for line in lines if line.startswith("Scene normalisation: median ")]
    assert -11.0 < float(stats.split()[3]) < -9.0  # land with a lake: the median is land's, a little lower
    assert reference[100, 90] == 1 and reference[200, 250] == 0 and reference[5, 5] == 255
    assert 0.15 < np.mean(reference == 1) < 0.2  # the lake (100 x 100 of 300 x 220), little speckle
    for offset in (-10.0, -4.0, 4.0):
        shifted = np.where(db > -9000, db + offset, db)
        mask, _ = _run(tmp_path, f"shift{offset:+g}", shifted, scene_water_model)
        assert np.mean(mask == reference) > 0.999, offset


def _coastal_db(width=300, height=220, seed=5):
    """A coastal tile that is mostly sea: sea at -24 dB over 80 % of it (the left), land at -9 dB."""
    rng = np.random.default_rng(seed)
    db = -24.0 + 1.5 * rng.standard_normal((height, width))
    db[:, 240:] = -9.0 + 2.0 * rng.standard_normal((height, 60))
    return db


def test_scene_statistics_find_the_land_of_a_scene_mostly_of_water():
    from sarlulc.inference.contract import NORM_SCENE, NORM_SCENE_LAND
    from sarlulc.inference.normalisation import SceneStatistics
    coastal = SceneStatistics.of(_coastal_db().ravel())
    assert coastal.median == pytest.approx(-24.0, abs=0.5)  # the sea's level
    assert coastal.land_median == pytest.approx(-9.0, abs=0.5) == coastal.level(NORM_SCENE_LAND)
    assert coastal.level(NORM_SCENE) == coastal.median
    inland = SceneStatistics.of(_scene_db()[_scene_db() > -9000])  # land with a lake of 15 %
    assert inland.land_median == pytest.approx(-9.0, abs=0.5) and inland.median < inland.land_median
    dry = SceneStatistics.of(-9.0 + 2.0 * np.random.default_rng(1).standard_normal(50_000))  # one population
    assert dry.median <= dry.land_median < dry.median + 2.5


def test_a_land_normalised_model_finds_the_sea_of_a_coastal_tile_that_the_median_hides(tmp_path):
    rule = dict(norm_clip=(-25.0, 20.0), norm_mean=0.0, water_below_db=-18.0)  # water 6 dB below the level
    land_model = write_pixel_water_model(tmp_path / "land.onnx", norm_mode="scene-land", **rule)
    median_model = write_pixel_water_model(tmp_path / "median.onnx", norm_mode="scene", **rule)
    db = _coastal_db()
    sea = np.zeros(db.shape, bool)
    sea[:, :240] = True
    by_median, _ = _run(tmp_path, "median", db, median_model)
    assert np.mean(by_median[sea] == 1) < 0.01  # relative to its own level the sea looks like land
    reference, lines = _run(tmp_path, "land", db, land_model)
    (stats,) = [line for line in lines if line.startswith("Scene normalisation: land median ")]
    removed, median = (float(value) for value in re.search(r"land median (\S+) dB removed .* scene median (\S+) dB",
                                                             stats).groups())
    assert -10.0 < removed < -8.0 and -25.0 < median < -22.0
    assert np.mean(reference[sea] == 1) > 0.99 and np.mean(reference[~sea] == 0) > 0.99
    for offset in (-4.0, 4.0):
        mask, _ = _run(tmp_path, f"land{offset:+g}", db + offset, land_model)
        assert np.mean(mask == reference) > 0.999, offset


def test_a_relative_input_is_anchored_on_its_land_level_so_its_stretch_does_not_matter(tmp_path):
    """An 8-bit stretch (relative brightness) read by a model of absolute levels: the scene's land level
    is moved to RELATIVE_LAND_DB, so the same scene stretched 25 steps brighter gives the same map."""
    model = write_pixel_water_model(tmp_path / "fixed_water.onnx", water_below_db=-15.0)
    db = _scene_db()
    counts = np.where(db > -9000, np.clip(np.round((db + 24.0) / 0.101), 1, 200), 0)
    reference, lines = _run(tmp_path, "byte", counts, model, dtype="uint8", nodata=0)
    assert any(line.startswith("Input units: relative brightness (uncalibrated), detected automatically from "
                               "8-bit values") for line in lines)
    (anchored,) = [line for line in lines if line.startswith("Relative brightness: only contrasts count")]
    assert "moved to -9.7 dB" in anchored and "cannot be recognised without calibration" in anchored
    assert reference[100, 90] == 1 and reference[200, 250] == 0 and reference[5, 5] == 255
    brighter, lines = _run(tmp_path, "brighter", np.where(counts > 0, counts + 25, 0), model, dtype="uint8", nodata=0)
    assert np.mean(brighter == reference) > 0.999

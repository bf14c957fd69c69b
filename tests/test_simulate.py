"""The ALOS-2-like scene simulator: layout, backscatter physics, speckle, units, georeferencing, and
the realistic per-scene variability (calibration, looks, texture, water fraction, ...)."""

import dataclasses
import json
import math

import numpy as np
import pytest
from osgeo import gdal, osr
from scipy import ndimage

from sarlulc.products import LULC_CLASSES
from sarlulc.sar.units import InputUnits, to_db
from sarlulc.simulate import HH_L_BAND, draw_variation, metres_per_degree, simulate_scene, write_scene
from sarlulc.simulate.__main__ import main as simulate_cli
from sarlulc.simulate.demo import DEMO_SEED, DEMO_SIZE, write_demo
from sarlulc.simulate.geotiff import NODATA
from sarlulc.simulate.scene import SURFACES

CODE = {name: code for code, name, _ in LULC_CLASSES}
FOREST = (CODE["Broadleaf forest"], CODE["Needleleaf forest"])
RARE = (CODE["Bare land"], CODE["Solar panel"])


@pytest.fixture(scope="module")
def scenes():
    """A small held-out-like set of the fixed world (variability off): 8 scenes of 256²."""
    return [simulate_scene(256, (101, i), variability="none") for i in range(8)]


@pytest.fixture(scope="module")
def realistic_scenes():
    """Scenes with realistic variability (the default): 16 of 128²."""
    return [simulate_scene(128, (202, i)) for i in range(16)]


def mean_db(values) -> float:
    """Mean backscatter of pixels in dB, averaged in linear power."""
    return float(10 * np.log10(np.mean(10 ** (np.asarray(values, np.float64) / 10))))


def fixed(seed, **changes):
    """The realistic draw of `seed` with some parameters fixed (flat, calm, dry, 10 m, no offset unless changed)."""
    base = dict(relief_m=50.0, coast_side=None, lake_fraction=0.0, flooded_fraction=0.0, wind_db=0.0,
                resolution_m=10.0, calibration_offset_db=0.0, incidence_span_deg=0.0)
    return dataclasses.replace(draw_variation(seed, SURFACES), **{**base, **changes})


def class_fractions(scenes) -> np.ndarray:
    counts = sum(np.bincount(s.labels[s.valid], minlength=10) for s in scenes)
    return counts / counts.sum()


@pytest.mark.parametrize("variability", ["realistic", "none"])
def test_same_seed_same_scene_other_seed_other_scene(variability):
    a, b, c = (simulate_scene(128, seed, variability=variability) for seed in ((3, 0), (3, 0), (4, 0)))
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.sigma0_db, b.sigma0_db)
    assert a.variation == b.variation
    assert (a.labels != c.labels).mean() > 0.2
    if variability == "realistic":
        assert a.variation != c.variation
    else:
        assert a.variation is None and a.looks == 4.0


def test_labels_use_the_legend_codes_and_nodata_zero(scenes):
    for scene in scenes:
        assert scene.labels.dtype == np.uint8
        assert set(np.unique(scene.labels)) <= {0} | set(CODE.values())
        assert not scene.valid.all(), "default scenes have a nodata swath margin"
        assert np.isnan(scene.sigma0_db[~scene.valid]).all() and np.isfinite(scene.sigma0_db[scene.valid]).all()


def test_class_frequencies_are_long_tailed_like_japan(scenes):
    fractions = class_fractions(scenes)
    forest = fractions[list(FOREST)].sum()
    assert 0.5 < forest < 0.75
    assert all(fractions[c] < forest for c in CODE.values() if c not in FOREST)
    assert 0.01 < fractions[CODE["Water"]] < 0.15
    for code in RARE:
        assert 0 < fractions[code] < 0.02
        assert all((s.labels == code).any() for s in scenes), "rare classes appear in every scene"


def test_rivers_and_roads_are_thin_sinuous_lines(scenes):
    assert sum(s.layers["road"].sum() for s in scenes) > 2 * 256 * len(scenes), "roads in most scenes"
    for scene in scenes:
        river, road = scene.layers["river"], scene.layers["road"]
        assert (scene.labels[river & scene.valid] == CODE["Water"]).all()
        assert (scene.labels[road & scene.valid] == CODE["Built-up"]).all()
        assert river.sum() > 256, "at least one river crossing the scene"
        square = np.ones((3, 3), bool)
        assert not ndimage.binary_erosion(river, square, iterations=3).any(), "rivers are at most ~70 m wide"
        assert not ndimage.binary_erosion(road, square, iterations=2).any(), "roads are at most ~30 m wide"


def test_class_mean_backscatter_ordered_as_l_band_physics(scenes):
    """Mean sigma0 (linear power, in dB): calm water darkest, built-up (double bounce) brightest,
    forest (volume scattering) brighter than grass, paddy and bare soil."""
    means = {code: mean_db(np.concatenate([s.sigma0_db[s.labels == code] for s in scenes])) for code in CODE.values()}
    assert min(means, key=means.get) == CODE["Water"]
    assert max(means, key=means.get) == CODE["Built-up"]
    for forest in FOREST:
        for darker in ("Grassland", "Paddy field", "Bare land", "Cropland"):
            assert means[forest] > means[CODE[darker]] + 2
    lo, hi = HH_L_BAND[CODE["Water"]].mean_db
    assert lo - 1 < means[CODE["Water"]] < hi + HH_L_BAND[CODE["Water"]].region_sd_db + 6


@pytest.mark.parametrize("looks", [1.0, 4.0])
def test_speckle_is_gamma_with_the_configured_looks(looks):
    scene = simulate_scene(256, 7, looks=looks, variability="none")
    valid = scene.valid
    speckle = 10 ** ((scene.sigma0_db[valid] - scene.reflectivity_db[valid]) / 10)
    assert speckle.mean() == pytest.approx(1.0, abs=0.01)
    assert speckle.std() / speckle.mean() == pytest.approx(1 / math.sqrt(looks), rel=0.03)


def test_homogeneous_forest_window_has_the_speckle_contrast():
    """A window of one forest stand on flat ground: std/mean of linear power ~ 1/sqrt(L)."""
    scene = simulate_scene(256, 7, looks=4.0, variability="none")
    power = 10 ** (scene.sigma0_db / 10)
    flat = 10 ** (scene.reflectivity_db / 10)
    best = None
    for y in range(0, 240, 8):
        for x in range(0, 240, 8):
            window = (slice(y, y + 16), slice(x, x + 16))
            if scene.labels[window].min() in FOREST and scene.labels[window].max() == scene.labels[window].min():
                spread = np.nanstd(flat[window]) / np.nanmean(flat[window])
                if best is None or spread < best[0]:
                    best = (spread, window)
    assert best is not None and best[0] < 0.1
    window = power[best[1]]
    assert window.std() / window.mean() == pytest.approx(0.5, abs=0.1)


def test_units_round_trip_through_the_plugin_reader(tmp_path):
    scene = simulate_scene(128, 5, holes=True)
    valid = scene.valid
    for units, dtype in (("db", np.float32), ("linear", np.float32), ("dn", np.uint16)):
        sar_path, _ = write_scene(scene, tmp_path, f"s_{units}", units=units)
        dataset = gdal.Open(str(sar_path))
        band = dataset.GetRasterBand(1)
        raw = band.ReadAsArray()
        assert raw.dtype == dtype
        assert band.GetNoDataValue() == NODATA[units]
        assert (raw[~valid] == NODATA[units]).all() and (raw[valid] != NODATA[units]).all()
        reader_units = {"db": InputUnits.DB, "linear": InputUnits.LINEAR, "dn": InputUnits.DN}[units]
        db = to_db(raw, reader_units)[valid]
        tolerance = 0.05 if units == "dn" else 1e-4  # DN is rounded to integers
        bright = scene.sigma0_db[valid] > -40
        np.testing.assert_allclose(db[bright], scene.sigma0_db[valid][bright], atol=tolerance)


def test_dn_formula_matches_alos2_calibration():
    from sarlulc.simulate import db_to_dn

    # DN = sqrt(10^((sigma0 + 83) / 10)): -23 dB -> 10^3 = 1000; -83 dB -> 1; 0 dB -> 14125.4
    np.testing.assert_array_equal(db_to_dn(np.array([-23.0, -83.0, 0.0])), [1000, 1, 14125])


def test_utm_scene_is_georeferenced_at_10_m(tmp_path):
    scene = simulate_scene(64, 1)
    sar_path, label_path = write_scene(scene, tmp_path, "utm", lon_lat=(140.5, 37.0))
    for path in (sar_path, label_path):
        ds = gdal.Open(str(path))
        srs = osr.SpatialReference(wkt=ds.GetProjection())
        assert srs.GetAuthorityCode(None) == "32654"
        x0, dx, _, y0, _, dy = ds.GetGeoTransform()
        assert (dx, dy) == (10.0, -10.0) and x0 % 10 == 0 and y0 % 10 == 0
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat, _ = osr.CoordinateTransformation(srs, wgs84).TransformPoint(x0, y0)
    assert lon == pytest.approx(140.5, abs=1e-3) and lat == pytest.approx(37.0, abs=1e-3)


def test_geographic_scene_has_degree_pixels_of_10_m(tmp_path):
    scene = simulate_scene(64, 1)
    sar_path, label_path = write_scene(scene, tmp_path, "geo", crs="EPSG:4326", lon_lat=(141.2, 43.0))
    ds = gdal.Open(str(sar_path))
    assert osr.SpatialReference(wkt=ds.GetProjection()).GetAuthorityCode(None) == "4326"
    assert gdal.Open(str(label_path)).GetGeoTransform() == ds.GetGeoTransform()
    lon0, dlon, _, lat0, _, dlat = ds.GetGeoTransform()
    # Independent check: the scene's top and left edges measured in UTM 54N are 64 x 10 m long.
    wgs84, utm = osr.SpatialReference(), osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    utm.ImportFromEPSG(32654)
    for srs in (wgs84, utm):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_utm = osr.CoordinateTransformation(wgs84, utm)
    corner, east, south = (np.array(to_utm.TransformPoint(lon, lat)[:2])
                           for lon, lat in ((lon0, lat0), (lon0 + 64 * dlon, lat0), (lon0, lat0 + 64 * dlat)))
    assert np.linalg.norm(east - corner) == pytest.approx(640, rel=2e-3)
    assert np.linalg.norm(south - corner) == pytest.approx(640, rel=2e-3)
    assert metres_per_degree(0.0)[0] == pytest.approx(111319.5, abs=1)  # equator: 2*pi*a/360


def test_label_raster_carries_the_legend_colours(tmp_path):
    _, label_path = write_scene(simulate_scene(64, 2), tmp_path, "c")
    dataset = gdal.Open(str(label_path))
    band = dataset.GetRasterBand(1)
    assert band.GetNoDataValue() == 0 and band.DataType == gdal.GDT_Byte
    table = band.GetColorTable()
    for code, _, colour in LULC_CLASSES:
        assert table.GetColorEntry(code)[:3] == tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    assert table.GetColorEntry(0)[3] == 0


def test_cli_writes_pairs_and_manifest_and_seeds_give_disjoint_sets(tmp_path):
    assert simulate_cli(["--out", str(tmp_path / "train"), "--count", "2", "--size", "64", "--seed", "1"]) == 0
    assert simulate_cli(["--out", str(tmp_path / "test"), "--count", "2", "--size", "64", "--seed", "2",
                         "--units", "dn", "--crs", "EPSG:4326"]) == 0
    train = json.loads((tmp_path / "train" / "manifest.json").read_text())
    test = json.loads((tmp_path / "test" / "manifest.json").read_text())
    assert [s["seed"] for s in train["scenes"]] == [[1, 0], [1, 1]] and test["units"] == "dn"
    labels = {}
    for folder, manifest in (("train", train), ("test", test)):
        for entry in manifest["scenes"]:
            sar = gdal.Open(str(tmp_path / folder / entry["sar"]))
            label = gdal.Open(str(tmp_path / folder / entry["label"])).ReadAsArray()
            assert (sar.RasterXSize, sar.RasterYSize) == label.shape == (64, 64)
            assert sum(entry["class_fractions"].values()) == pytest.approx(1, abs=1e-3)
            labels[folder, entry["name"]] = label
    train_labels = [v for (f, _), v in labels.items() if f == "train"]
    test_labels = [v for (f, _), v in labels.items() if f == "test"]
    assert all(not np.array_equal(a, b) for a in train_labels for b in test_labels)


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        simulate_cli(["--out", "unused", "--size", "8"])
    assert "too small" in capsys.readouterr().err


def test_shipped_demo_scene_is_the_simulator_output(tmp_path):
    from pathlib import Path

    demo = Path(__file__).resolve().parent.parent / "demo"
    shipped_sar, shipped_label = demo / "demo_scene_hh_db.tif", demo / "demo_scene_label.tif"
    assert shipped_sar.stat().st_size + shipped_label.stat().st_size < 1.5e6
    sar = gdal.Open(str(shipped_sar))
    assert (sar.RasterXSize, sar.RasterYSize) == (DEMO_SIZE, DEMO_SIZE)
    assert sar.GetRasterBand(1).DataType == gdal.GDT_Float32
    assert sar.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    assert osr.SpatialReference(wkt=sar.GetProjection()).GetAuthorityCode(None) == "32654"
    assert sar.GetGeoTransform()[1] == 10.0
    values = sar.ReadAsArray()
    assert (values == -9999).any(), "the demo has a nodata margin"
    regenerated_sar, regenerated_label = write_demo(tmp_path)
    regenerated = gdal.Open(str(regenerated_sar)).ReadAsArray()
    # Same nodata pixels; backscatter equal to far below anything visible (0.001 dB): float32 math
    # differs in its last bits between CPUs (AVX2 / AVX-512 code paths), never by more.
    np.testing.assert_array_equal(regenerated == -9999, values == -9999)
    np.testing.assert_allclose(regenerated, values, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(gdal.Open(str(regenerated_label)).ReadAsArray(),
                                  gdal.Open(str(shipped_label)).ReadAsArray())
    assert DEMO_SEED == int(sar.GetMetadataItem("SEED"))


def test_realistic_variability_spans_the_ranges():
    """Over many scenes the draws cover the documented ranges: calibration up to ±1.5 dB, 1-16
    looks, 5-30 m resolution, calm and windy water, flooded and dry scenes, heavy and no texture."""
    draws = [draw_variation((11, i), SURFACES) for i in range(200)]
    offsets = [d.calibration_offset_db for d in draws]
    assert min(offsets) < -1.3 and max(offsets) > 1.3 and max(map(abs, offsets)) <= 1.5
    looks = [d.looks for d in draws]
    assert min(looks) < 1.5 and max(looks) > 12 and 1 <= min(looks) and max(looks) <= 16
    resolutions = [d.resolution_m for d in draws]
    assert min(resolutions) < 7 and max(resolutions) > 27
    orders = [d.texture_order for d in draws]
    assert None in orders and min(o for o in orders if o) < 2
    assert min(d.wind_db for d in draws) < 1 and max(d.wind_db for d in draws) > 9
    assert any(d.flooded_fraction == 0 for d in draws) and any(d.flooded_fraction > 0.3 for d in draws)
    shifts = [d.class_shift_db[CODE["Cropland"]] for d in draws]
    assert min(shifts) < -2 and max(shifts) > 2


def test_water_fraction_spans_inland_to_mostly_sea(realistic_scenes):
    """Coastal mosaic tiles are mostly ocean: some scenes are up to ~90 % water, others almost dry."""
    water = [(s.labels[s.valid] == CODE["Water"]).mean() for s in realistic_scenes]
    assert min(water) < 0.05 and max(water) > 0.6
    coastal = [s for s in realistic_scenes if s.variation.coast_side is not None]
    assert 0 < len(coastal) < len(realistic_scenes)


def test_realistic_scenes_differ_in_level_and_calibration(realistic_scenes):
    """The same class sits at different levels in different scenes (calibration offset and
    per-scene class shift), so absolute dB alone cannot name it."""
    forest = [mean_db(s.sigma0_db[np.isin(s.labels, FOREST)]) for s in realistic_scenes
              if np.isin(s.labels, FOREST).sum() > 500]
    assert max(forest) - min(forest) > 6
    looks = {round(s.looks, 3) for s in realistic_scenes}
    assert len(looks) == len(realistic_scenes)


def test_realistic_class_order_stays_physical_on_average(realistic_scenes):
    """Averaged over scenes (calibration offset removed; pixels away from class edges, which coarse
    resolutions blur): calm water darkest, built-up brightest, forest above grass, paddy and bare
    soil."""
    per_class = {code: [] for code in CODE.values()}
    calm = []
    for scene in realistic_scenes:
        db = scene.sigma0_db - scene.variation.calibration_offset_db
        for code in CODE.values():
            interior = ndimage.binary_erosion(scene.labels == code, iterations=2)
            where = interior & ~scene.layers["flooded_vegetation"]
            if code == CODE["Water"]:
                where &= scene.layers["sea"] | scene.layers["lake"]
                if where.sum() > 200 and scene.variation.wind_db < 1.5:
                    calm.append(mean_db(db[where]))
                continue
            if where.sum() > 50:
                per_class[code].append(mean_db(db[where]))
    means = {code: np.mean(v) for code, v in per_class.items() if v}
    assert calm and np.mean(calm) < min(means.values()) - 3
    assert max(means, key=means.get) == CODE["Built-up"]
    darker = [CODE[name] for name in ("Grassland", "Paddy field", "Bare land", "Cropland") if CODE[name] in means]
    assert len(darker) >= 3
    for forest in FOREST:
        assert all(means[forest] > means[code] + 1 for code in darker)


def test_wind_roughened_water_is_brighter_and_textured():
    """The same coastal scene with calm and with wind-roughened sea: the windy sea is several dB
    brighter and varies in gusts (block means spread), the calm sea stays dark and even."""
    sea = {}
    for wind_db in (0.0, 10.0):
        scene = simulate_scene(256, 41, variability=fixed(41, coast_side=3, sea_fraction=0.6, wind_db=wind_db,
                                                          looks=8.0, texture_order=None))
        water = scene.layers["sea"] & scene.valid
        assert water.mean() > 0.4
        blocks = [mean_db(scene.reflectivity_db[y:y + 16, 200:216][water[y:y + 16, 200:216]]) for y in range(0, 256, 16)]
        sea[wind_db] = mean_db(scene.sigma0_db[water]), np.std(blocks)
    assert sea[10.0][0] > sea[0.0][0] + 5
    assert sea[0.0][0] < -18
    assert sea[10.0][1] > 2 * sea[0.0][1]


def test_k_texture_has_heavier_tails_than_gamma_speckle():
    """K-distributed clutter (Gamma texture x Gamma speckle): the intensity over its local level
    has the K moments and a kurtosis well above that of L-look Gamma speckle."""
    looks, order = 4.0, 2.0
    ratios = {}
    for texture_order in (None, order):
        scene = simulate_scene(256, 31, variability=fixed(31, looks=looks, texture_order=texture_order))
        forest = np.isin(scene.labels, FOREST)
        ratios[texture_order] = 10 ** ((scene.sigma0_db[forest] - scene.reflectivity_db[forest]) / 10)

    def kurtosis(x):
        return float(np.mean((x - x.mean()) ** 4) / x.var() ** 2)

    gamma_kurtosis = 3 + 6 / looks
    assert kurtosis(ratios[None]) == pytest.approx(gamma_kurtosis, rel=0.15)
    assert kurtosis(ratios[order]) > 2 * gamma_kurtosis
    second_moment = np.mean(ratios[order] ** 2) / np.mean(ratios[order]) ** 2
    assert second_moment == pytest.approx((1 + 1 / looks) * (1 + 1 / order), rel=0.05)


def test_cli_variability_option(tmp_path):
    """Default scenes draw their variation (recorded in the manifest); --variability none gives
    the fixed world, identical to simulate_scene(..., variability="none")."""
    assert simulate_cli(["--out", str(tmp_path / "r"), "--count", "2", "--size", "64", "--seed", "5"]) == 0
    assert simulate_cli(["--out", str(tmp_path / "n"), "--count", "1", "--size", "64", "--seed", "5",
                         "--variability", "none"]) == 0
    realistic = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert realistic["variability"] == "realistic"
    offsets = [entry["variation"]["calibration_offset_db"] for entry in realistic["scenes"]]
    assert offsets[0] != offsets[1] and all(abs(o) <= 1.5 for o in offsets)
    none = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert none["scenes"][0]["variation"] is None and none["scenes"][0]["looks"] == 4.0
    written = gdal.Open(str(tmp_path / "n" / none["scenes"][0]["sar"])).ReadAsArray()
    expected = simulate_scene(64, (5, 0), variability="none").sigma0_db
    np.testing.assert_allclose(written[np.isfinite(expected)], expected[np.isfinite(expected)], atol=1e-5)
    with pytest.raises(SystemExit):
        simulate_cli(["--out", str(tmp_path / "x"), "--variability", "wild"])


def test_flooded_vegetation_is_bright_but_keeps_its_land_label():
    """Forest standing in water shows double bounce (several dB above dry forest); its label stays
    forest (LULC), and it is not open water for the water task."""
    scene = simulate_scene(256, 53, variability=fixed(53, lake_fraction=0.1, flooded_fraction=0.5,
                                                      flooded_forest_gain_db=6.0, texture_order=None))
    flooded = scene.layers["flooded_vegetation"] & scene.valid
    forest = np.isin(scene.labels, FOREST) & scene.valid
    assert (flooded & forest).sum() > 200
    assert np.isin(scene.labels[flooded], FOREST + (CODE["Paddy field"], CODE["Cropland"], CODE["Grassland"])).all()
    water = scene.labels == CODE["Water"]
    assert not (flooded & water).any()
    wet, dry = mean_db(scene.sigma0_db[flooded & forest]), mean_db(scene.sigma0_db[forest & ~flooded])
    assert wet > dry + 4
    assert wet > mean_db(scene.sigma0_db[water]) + 15
    near_water = ndimage.binary_dilation(water, iterations=60)
    assert near_water[flooded].all(), "flooded vegetation lies next to rivers, lakes or the sea"


def test_resolution_changes_blur_and_speckle_correlation():
    """A 30 m product resampled to 10 m has speckle correlated between neighbours; a 5 m product
    averaged to 10 m has 4x the looks per pixel (speckle contrast halved)."""
    looks = 2.0
    ratios = {}
    for resolution in (5.0, 10.0, 30.0):
        scene = simulate_scene(256, 61, variability=fixed(61, looks=looks, texture_order=None, resolution_m=resolution))
        ratio = 10 ** ((scene.sigma0_db - scene.reflectivity_db) / 10)
        ratio[~scene.valid | (scene.labels == CODE["Built-up"])] = np.nan  # built-up keeps its own texture
        ratios[resolution] = ratio

    def neighbour_correlation(ratio):
        a, b = ratio[:, :-1].ravel(), ratio[:, 1:].ravel()
        keep = np.isfinite(a) & np.isfinite(b)
        return np.corrcoef(a[keep], b[keep])[0, 1]

    def contrast(ratio):
        return np.nanstd(ratio) / np.nanmean(ratio)

    assert abs(neighbour_correlation(ratios[10.0])) < 0.05
    assert neighbour_correlation(ratios[30.0]) > 0.5
    assert contrast(ratios[10.0]) == pytest.approx(1 / math.sqrt(looks), rel=0.05)
    assert contrast(ratios[5.0]) == pytest.approx(1 / math.sqrt(4 * looks), rel=0.05)


def test_incidence_gradient_darkens_far_range():
    """The same scene seen flat at 30 deg and across 30-38 deg: far range is darker by each class's
    dB/degree slope (fields and grass about -0.25 dB/deg, forest barely); the look direction sets
    which side is far."""
    for look_east in (True, False):
        flat = simulate_scene(128, 71, variability=fixed(71, incidence_near_deg=30.0, look_east=look_east))
        ramp = fixed(71, incidence_near_deg=30.0, incidence_span_deg=8.0, look_east=look_east)
        tilted = simulate_scene(128, 71, variability=ramp)
        np.testing.assert_array_equal(flat.labels, tilted.labels)
        far = slice(118, 128) if look_east else slice(0, 10)
        near = slice(0, 10) if look_east else slice(118, 128)
        change = tilted.reflectivity_db - flat.reflectivity_db
        for code in (CODE["Grassland"], CODE["Cropland"], CODE["Broadleaf forest"]):
            mask = flat.labels == code
            slope = HH_L_BAND[code].incidence_db_per_deg
            if mask[:, far].sum() > 20:
                assert np.median(change[:, far][mask[:, far]]) == pytest.approx(slope * 8 * 123 / 127, abs=0.3)
            if mask[:, near].sum() > 20:
                assert np.median(change[:, near][mask[:, near]]) == pytest.approx(slope * 8 * 4 / 127, abs=0.3)
        assert (ramp.incidence_deg(128)[0] < ramp.incidence_deg(128)[-1]) == look_east
    assert HH_L_BAND[CODE["Grassland"]].incidence_db_per_deg < 3 * HH_L_BAND[CODE["Broadleaf forest"]].incidence_db_per_deg


def test_steep_terrain_gives_layover_and_shadow_streaks_along_range():
    """In steep terrain, layover is bright and smeared along range (one slant cell spread along its
    run: streaks along x, not y) and shadow falls to the noise floor; gentle terrain has neither."""
    steep = simulate_scene(256, 83, variability=fixed(83, relief_m=1500.0, incidence_near_deg=40.0,
                                                      texture_order=None, looks=16.0))
    gentle = simulate_scene(256, 83, variability=fixed(83, relief_m=150.0))
    assert not gentle.layers["layover"].any() and not gentle.layers["shadow"].any()
    layover, shadow = steep.layers["layover"] & steep.valid, steep.layers["shadow"] & steep.valid
    assert layover.mean() > 0.01 and shadow.mean() > 0.002
    inside = layover[:-1, :-1] & layover[:-1, 1:] & layover[1:, :-1]  # pixel, its range and azimuth neighbours
    db = steep.reflectivity_db
    along_x = np.abs(db[:-1, 1:] - db[:-1, :-1])[inside]
    along_y = np.abs(db[1:, :-1] - db[:-1, :-1])[inside]
    assert np.median(along_x) < 0.2 * np.median(along_y), "layover streaks run along range"
    land = (steep.labels != CODE["Water"]) & steep.valid
    assert mean_db(steep.reflectivity_db[layover & land]) > mean_db(steep.reflectivity_db[land & ~layover & ~shadow])
    floor = steep.variation.noise_floor_db + steep.variation.calibration_offset_db
    assert np.median(steep.reflectivity_db[shadow]) == pytest.approx(floor, abs=1.0)

"""Many tiles in one run (sarlulc/tiles): seam-free against one run over the mosaic, resumable, a damaged
tile reported while the others finish, cancel, Dask workers, and bad inputs refused before any work.

The scene is cut into a 4 x 4 grid of 100 px tiles; the context model (a 9 px neighbourhood, 64 px
tiles) shows a seam wherever a tile is classified without its neighbours' pixels.
"""

import hashlib
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from osgeo import gdal

from sarlulc.inference.engine import RunOptions, segment
from sarlulc.errors import CancelledError
from sarlulc.tiles import run as tiles_run
from sarlulc.tiles.__main__ import main as tiles_cli
from sarlulc.tiles.inputs import TilesError
from sarlulc.tiles.run import map_tiles
from factories import write_context_lulc_model, write_sar_raster

GRID, TILE = 4, 100


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The whole scene, its 4 x 4 tiles, the context model, and the classes of one run over the scene."""
    folder = tmp_path_factory.mktemp("tiles_scene")
    whole = write_sar_raster(folder / "scene.tif", GRID * TILE, GRID * TILE, nodata_box=(0, 0, 30, 20))
    model = write_context_lulc_model(folder / "context.onnx", tile_size=64, tile_overlap=16, kernel=9)
    tiles = folder / "tiles"
    tiles.mkdir()
    for row in range(GRID):
        for column in range(GRID):
            gdal.Translate(str(tiles / f"t{row}{column}.tif"), whole, srcWin=[column * TILE, row * TILE, TILE, TILE],
                           creationOptions=["TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=32", "COMPRESS=DEFLATE"])
    segment(whole, folder / "whole_classes.tif", model)
    return {"folder": folder, "whole": whole, "tiles": tiles, "model": model,
            "classes": gdal.Open(str(folder / "whole_classes.tif")).ReadAsArray()}


@pytest.fixture
def tile_copies(scene, tmp_path):
    """A fresh copy of the tiles, for tests that change them."""
    copies = tmp_path / "tiles"
    shutil.copytree(scene["tiles"], copies)
    return copies


def read(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def digests(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(pathlib.Path(folder).iterdir())}


def test_a_grid_of_tiles_gives_the_classes_of_one_run_over_the_mosaic(scene, tmp_path):
    inputs = digests(scene["tiles"])
    report = map_tiles(scene["tiles"], tmp_path / "out", model_path=scene["model"], scores=True)
    assert sorted(report.run) == sorted(f"t{r}{c}" for r in range(GRID) for c in range(GRID))
    assert not report.failed and not report.skipped
    mosaic = gdal.Open(report.mosaic)
    whole = gdal.Open(scene["whole"])
    assert mosaic.GetGeoTransform() == whole.GetGeoTransform()
    assert mosaic.GetSpatialRef().IsSame(whole.GetSpatialRef())
    classes = mosaic.ReadAsArray()
    assert (classes != scene["classes"]).mean() <= 0.001  # the target; in fact none differ
    assert np.array_equal(classes, scene["classes"])
    assert (classes[:20, :30] == 0).all()  # nodata stays nodata
    band = mosaic.GetRasterBand(1)
    assert band.GetCategoryNames()[1] == "Water" and band.GetColorTable() is not None
    tile = gdal.Open(str(tmp_path / "out" / "tiles" / "t12.tif"))
    assert tile.GetMetadata("IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert (tile.RasterXSize, tile.RasterYSize) == (TILE, TILE)
    scores = read(report.scores_mosaic)
    assert scores.shape == classes.shape and ((scores > 0) == (classes > 0)).all()
    assert digests(scene["tiles"]) == inputs  # the inputs are only read
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["tiles"]) == GRID * GRID
    assert len(manifest["tiles"]["t11"]["key"]["inputs"]) == 9  # the tile and its 8 neighbours


def test_without_margins_tile_borders_show_seams(scene, tmp_path, monkeypatch):
    """The control of the test above: read alone, tiles disagree with one run along their borders."""
    monkeypatch.setattr(tiles_run, "read_window", lambda window, *_: window)
    report = map_tiles(scene["tiles"], tmp_path / "out", model_path=scene["model"])
    assert (read(report.mosaic) != scene["classes"]).mean() > 0.001


def test_a_tile_index_names_the_tiles(scene, tmp_path):
    """A tile index as gdaltindex (or QGIS's Tile Index) writes it: a footprint per tile, its file in
    ``location``, here relative to the index's folder; half the tiles listed, half mapped."""
    from sarlulc.tiles.inputs import find_tiles

    listed = sorted(scene["tiles"].glob("t0*.tif")) + sorted(scene["tiles"].glob("t1*.tif"))
    index = scene["tiles"].parent / "index.gpkg"
    if not index.exists():
        gdal.TileIndex(str(index), [str(path.relative_to(index.parent)) for path in listed]) \
            if hasattr(gdal, "TileIndex") else os.system(
                f"cd {index.parent} && gdaltindex -f GPKG index.gpkg " + " ".join(
                    str(path.relative_to(index.parent)) for path in listed) + " > /dev/null")
    assert find_tiles(index) == [str(path.resolve()) for path in listed]
    report = map_tiles(index, tmp_path / "out", model_path=scene["model"])
    assert sorted(report.run) == sorted(path.stem for path in listed)
    # Seam-free: the classes of one run over the mosaic of what is listed.
    strip = tmp_path / "strip.tif"
    gdal.Translate(str(strip), scene["whole"], srcWin=[0, 0, GRID * TILE, 2 * TILE])
    segment(str(strip), tmp_path / "strip_classes.tif", scene["model"])
    assert np.array_equal(read(report.mosaic), read(tmp_path / "strip_classes.tif"))
    (tmp_path / "bare.gpkg").write_bytes(b"")
    with pytest.raises(TilesError, match="cannot be opened as vector data"):
        find_tiles(tmp_path / "bare.gpkg")


def test_two_local_dask_workers_give_the_same_mosaic(scene, tmp_path):
    pytest.importorskip("distributed")
    logs = []
    report = map_tiles(scene["tiles"], tmp_path / "out", model_path=scene["model"], workers=2, log=logs.append,
                       warn=logs.append)
    assert len(report.run) == GRID * GRID and not report.failed, f"{report.summary()}; log: {logs}"
    assert any(line.startswith("Dask: 2 worker(s)") for line in logs)
    mosaic = read(report.mosaic)
    differing = {f"t{row}{column}": int((mosaic != scene["classes"])[row * TILE:(row + 1) * TILE,
                                                                      column * TILE:(column + 1) * TILE].sum())
                 for row in range(GRID) for column in range(GRID)}
    assert not any(differing.values()), (f"pixels differing per tile: {differing}; manifest: "
                                         f"{(tmp_path / 'out' / 'manifest.json').read_text()}; log: {logs}")


def worker_environment(name: str) -> str | None:
    return os.environ.get(name)


def test_local_workers_keep_the_default_memory_allocator(monkeypatch):
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_, which slows the engine's large numpy blocks by about
    9 %; the plugin's local workers run without it (their other settings stay Dask's, checked here with
    no OMP_NUM_THREADS of the caller's, which the workers would inherit)."""
    pytest.importorskip("distributed")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    from distributed import Client

    from sarlulc.tiles.cluster import start_local_cluster

    with start_local_cluster(2) as cluster, Client(cluster) as client:
        trim = client.run(worker_environment, "MALLOC_TRIM_THRESHOLD_")
        threads = client.run(worker_environment, "OMP_NUM_THREADS")
    assert len(trim) == 2 and set(trim.values()) == {None}
    assert set(threads.values()) == {"1"}


def test_cancel_keeps_finished_tiles_and_a_rerun_does_only_the_rest(scene, tmp_path, monkeypatch):
    out = tmp_path / "out"
    finished = []
    with pytest.raises(CancelledError, match="5 of 16 tile"):
        map_tiles(scene["tiles"], out, model_path=scene["model"], is_cancelled=lambda: len(finished) >= 5,
                  log=lambda line: finished.append(line) if line.startswith("Tile t") and " s; " in line else None)
    kept = sorted(p.name for p in (out / "tiles").iterdir())
    assert len([name for name in kept if name.endswith(".tif")]) == 5
    assert not [name for name in kept if name.startswith(".")]  # nothing half-written left
    assert not (out / "land_cover.vrt").exists()
    done_before = set(json.loads((out / "manifest.json").read_text())["tiles"])
    # What a kill leaves: a tile's COG put in place but not recorded, and a partial file of a dead process.
    gdal.Translate(str(out / "tiles" / "t33.tif"), scene["whole"], format="COG", srcWin=[0, 0, 10, 10])
    from sarlulc.rasters.transaction import _HOST
    dead_partial = out / "tiles" / f".t32.tif.sarlulc-{_HOST}-999999-0123abcd.partial.tif"
    dead_partial.write_bytes(b"half")
    ran = []
    real_run_tile = tiles_run.run_tile
    monkeypatch.setattr(tiles_run, "run_tile", lambda job, *args: ran.append(job.name) or real_run_tile(job, *args))
    report = map_tiles(scene["tiles"], out, model_path=scene["model"])
    assert set(report.skipped) == done_before and not set(ran) & done_before
    assert len(ran) == GRID * GRID - 5 and "t33" in ran
    assert not dead_partial.exists()
    assert np.array_equal(read(report.mosaic), scene["classes"])  # as an uninterrupted run's
    ran.clear()
    again = map_tiles(scene["tiles"], out, model_path=scene["model"])
    assert not ran and len(again.skipped) == GRID * GRID
    # A changed option changes the results: every tile is run again.
    map_tiles(scene["tiles"], out, model_path=scene["model"], options=RunOptions(tile_overlap=8))
    assert len(ran) == GRID * GRID


def test_a_damaged_tile_is_reported_and_the_others_finish(scene, tile_copies, tmp_path):
    damaged = tile_copies / "t12.tif"
    original = damaged.read_bytes()
    data = bytearray(original)
    for index in range(len(data) // 3, 2 * len(data) // 3):
        data[index] = (data[index] * 7 + 13) % 256
    damaged.write_bytes(bytes(data))
    report = map_tiles(tile_copies, tmp_path / "out", model_path=scene["model"])
    assert list(report.failed) == [str(damaged.resolve())]
    assert "cannot be read" in report.failed[str(damaged.resolve())]
    assert len(report.run) == GRID * GRID - 1
    assert "run the same command with the same output folder again" in report.summary()
    classes = read(report.mosaic)
    assert (classes[TILE:2 * TILE, 2 * TILE:3 * TILE] == 0).all()  # its place is nodata
    # Repaired, only it and the tiles whose margins reach it are run again (its 8 neighbours, and a few
    # more to the right and below: margins reach a model tile plus the stride alignment).
    damaged.write_bytes(original)
    os.utime(damaged)
    again = map_tiles(tile_copies, tmp_path / "out", model_path=scene["model"])
    assert set(again.run) >= {f"t{r}{c}" for r in (0, 1, 2) for c in (1, 2, 3)}
    assert {"t00", "t10", "t20", "t30"}.isdisjoint(again.run) and len(again.skipped) == GRID * GRID - len(again.run)
    assert np.array_equal(read(again.mosaic), scene["classes"])


def test_a_result_gdal_cannot_read_into_the_mosaic_is_reported_and_redone(scene, tmp_path, monkeypatch):
    """GDAL's BuildVRT skips a file it cannot open with only a warning: the mosaic would have a silent hole.
    A tile's result damaged after it was written is reported failed, forgotten, and run again next time."""
    real_run_tile = tiles_run.run_tile

    def damage_t03(job, *args):
        result = real_run_tile(job, *args)
        if job.name == "t03":
            pathlib.Path(job.outputs["classes"]).write_bytes(b"not a GeoTIFF any more")
        return result

    monkeypatch.setattr(tiles_run, "run_tile", damage_t03)
    warnings = []
    report = map_tiles(scene["tiles"], tmp_path / "out", model_path=scene["model"], warn=warnings.append)
    assert list(report.failed) == ["t03"] and "t03" not in report.run
    assert "could not be read into the mosaic" in report.failed["t03"] and "t03.tif" in report.failed["t03"]
    assert any("t03" in warning for warning in warnings) and "t03:" in report.summary()
    classes = read(report.mosaic)
    assert (classes[:TILE, 3 * TILE:] == 0).all()  # its place is nodata, and the summary says why
    assert np.array_equal(classes[TILE:], scene["classes"][TILE:])
    assert "t03" not in json.loads((tmp_path / "out" / "manifest.json").read_text())["tiles"]
    monkeypatch.setattr(tiles_run, "run_tile", real_run_tile)
    again = map_tiles(scene["tiles"], tmp_path / "out", model_path=scene["model"])
    assert again.run == ["t03"] and not again.failed
    assert np.array_equal(read(again.mosaic), scene["classes"])


def test_the_mosaic_cog_is_written_on_request(scene, tmp_path):
    report = map_tiles(scene["tiles"], tmp_path / "out", model_path=scene["model"], mosaic_cog=True)
    cog = gdal.Open(report.mosaic_cog)
    assert cog.GetMetadata("IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert np.array_equal(cog.ReadAsArray(), scene["classes"])


def _tile(folder, name, column, row, **kwargs):
    return write_sar_raster(folder / name, TILE, TILE, origin=(500000.0 + column * TILE * 10, 4000000.0 - row * TILE * 10),
                            **kwargs)


@pytest.mark.parametrize("case, expected", [
    ("crs", "different coordinate reference systems"),
    ("dtype", "different data types"),
    ("units", "different units"),
    ("overlap", "Tiles overlap"),
    ("grid", "do not lie on the pixel grid"),
])
def test_tiles_that_make_no_mosaic_are_refused_before_any_work(scene, tmp_path, case, expected):
    folder = tmp_path / "in"
    folder.mkdir()
    _tile(folder, "a.tif", 0, 0)
    if case == "crs":
        _tile(folder, "b.tif", 1, 0, epsg=32653)
    elif case == "dtype":
        _tile(folder, "b.tif", 1, 0, dtype="int16")
    elif case == "units":
        values = 10 ** (write_and_read_db(tmp_path) / 10)  # linear power, float32 like the dB tile
        _tile(folder, "b.tif", 1, 0, values=values)
    elif case == "overlap":
        write_sar_raster(folder / "b.tif", TILE, TILE, origin=(500000.0 + 900, 4000000.0))
    else:
        write_sar_raster(folder / "b.tif", TILE, TILE, origin=(500000.0 + 1005, 4000000.0))
    before = digests(folder)
    with pytest.raises(TilesError, match=expected) as error:
        map_tiles(folder, tmp_path / "out", model_path=scene["model"])
    assert "b.tif" in str(error.value)
    assert not (tmp_path / "out").exists()  # refused before any work
    assert digests(folder) == before


def write_and_read_db(tmp_path) -> np.ndarray:
    return read(write_sar_raster(tmp_path / "db.tif", TILE, TILE, nodata=None))


def test_an_empty_folder_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TilesError, match="holds no GeoTIFF tile .* Choose the folder the tiles are in"):
        map_tiles(tmp_path / "empty", tmp_path / "out")


def test_the_command_line_maps_tiles_and_refuses_bad_input(scene, tmp_path, capsys):
    assert tiles_cli(["segment", str(scene["tiles"]), "-o", str(tmp_path / "out"), "--model", scene["model"],
                      "--overlap", "16"]) == 0
    assert np.array_equal(read(tmp_path / "out" / "land_cover.vrt"), scene["classes"])
    (tmp_path / "empty").mkdir()
    assert tiles_cli(["water", str(tmp_path / "empty"), "-o", str(tmp_path / "out2")]) == 2
    assert "holds no GeoTIFF tile" in capsys.readouterr().err


def test_the_processing_algorithm_maps_a_folder_and_loads_the_styled_mosaic(sarlulc_provider, scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = processing.run("sarlulc:segmenttiles", {
        "INPUT_FOLDER": str(scene["tiles"]), "MODEL": scene["model"], "SCORES": True,
        "OUTPUT_FOLDER": str(tmp_path / "out")}, context=context, feedback=QgsProcessingFeedback())
    assert result["FAILED"] == 0
    assert result["OUTPUT"] == str(tmp_path / "out" / "land_cover.vrt")
    assert np.array_equal(read(result["OUTPUT"]), scene["classes"])
    assert (tmp_path / "out" / "land_cover.qml").is_file() and (tmp_path / "out" / "land_cover_confidence.qml").is_file()
    assert "Water" in (tmp_path / "out" / "land_cover.qml").read_text()
    assert context.willLoadLayerOnCompletion(result["OUTPUT"])
    # The same tiles named by a tile index.
    index = tmp_path / "index.gpkg"
    os.system(f"gdaltindex -f GPKG {index} {' '.join(str(path) for path in sorted(scene['tiles'].glob('*.tif')))}"
              " > /dev/null")
    result = processing.run("sarlulc:segmenttiles", {"INPUT_INDEX": str(index), "MODEL": scene["model"],
                                                     "OUTPUT_FOLDER": str(tmp_path / "from_index")})
    assert result["FAILED"] == 0 and np.array_equal(read(result["OUTPUT"]), scene["classes"])


def test_the_processing_algorithm_refuses_missing_tiles_and_bad_options(sarlulc_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="Choose the tiles"):
        processing.run("sarlulc:segmenttiles", {"OUTPUT_FOLDER": str(tmp_path / "out")})
    algorithm = sarlulc_provider.algorithm("segmenttiles")
    from qgis.core import QgsProcessingContext

    ok, message = algorithm.checkParameterValues({"INPUT_FOLDER": str(tmp_path), "OVERLAP": 40, "TILE_SIZE": 64,
                                                  "OUTPUT_FOLDER": str(tmp_path / "out")}, QgsProcessingContext())
    assert not ok and "Overlap 40 is invalid" in message

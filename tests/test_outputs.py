"""The output side done right: formats other than GeoTIFF, .qml style files, replacing earlier
outputs, and what a killed run leaves behind (removed by the next run)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer

from sarlulc.inference.engine import RunOptions, segment
from sarlulc.errors import OutputError
from factories import expected_pixel_classes, write_sar_raster

REPO = Path(__file__).resolve().parent.parent


def hidden_files(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def classes_and_valid(sar_raster, output):
    source, result = gdal.Open(str(sar_raster)), gdal.Open(str(output))
    db = source.GetRasterBand(1).ReadAsArray()
    valid = db != source.GetRasterBand(1).GetNoDataValue()
    return result, result.GetRasterBand(1).ReadAsArray(), db, valid


def loaded_palette(path):
    """The legend QGIS shows when it opens ``path`` (it applies the .qml beside it)."""
    layer = QgsRasterLayer(str(path), "classes", "gdal")  # owns the renderer: kept alive while it is read
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    return {c.value: c.label for c in layer.renderer().classes()}


@pytest.mark.parametrize("suffix, driver", [(".png", "PNG"), (".gpkg", "GPKG"), (".img", "HFA"), (".tiff", "GTiff")])
def test_an_output_is_written_in_the_format_its_extension_names(sarlulc_provider, lulc_model, sar_raster, tmp_path,
                                                                suffix, driver):
    output = tmp_path / f"classes{suffix}"
    # PNG holds no float32: the confidence goes to a GeoTIFF then.
    confidence = tmp_path / ("confidence.tif" if suffix == ".png" else f"confidence{suffix}")
    processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": lulc_model, "OUTPUT": str(output),
                                       "OUTPUT_CONFIDENCE": str(confidence)})

    result, classes, db, valid = classes_and_valid(sar_raster, output)
    assert result.GetDriver().ShortName == driver
    source = gdal.Open(sar_raster)
    assert result.GetGeoTransform() == pytest.approx(source.GetGeoTransform())
    assert result.GetSpatialRef().IsSame(source.GetSpatialRef())
    assert result.GetRasterBand(1).GetNoDataValue() == 0
    np.testing.assert_array_equal(classes[valid], expected_pixel_classes(db[valid]))
    assert np.all(classes[~valid] == 0)
    scores = gdal.Open(str(confidence))
    assert gdal.GetDataTypeName(scores.GetRasterBand(1).DataType) == "Float32"
    assert np.all(scores.GetRasterBand(1).ReadAsArray()[valid] > 0)
    assert loaded_palette(output)[1] == "Water"
    assert hidden_files(tmp_path) == []


def test_a_rerun_replaces_its_outputs_their_styles_and_stale_companions(sarlulc_provider, lulc_model, water_model,
                                                                        sar_raster, tmp_path):
    output = tmp_path / "map.tif"
    processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": lulc_model, "OUTPUT": str(output)})
    assert loaded_palette(output)[1] == "Water"
    # Overviews built on the first result would show it again over the second one when zoomed out.
    (tmp_path / "map.tif.ovr").write_bytes(b"overviews of the first result")

    processing.run("sarlulc:waterdetect", {"INPUT": sar_raster, "MODEL": water_model, "OUTPUT": str(output)})

    assert loaded_palette(output) == {1: "Water"}  # the water legend replaced the 9 classes
    written = gdal.Open(str(output))
    assert written.GetRasterBand(1).GetNoDataValue() == 255
    written = None
    assert not (tmp_path / "map.tif.ovr").exists()
    assert hidden_files(tmp_path) == []


def test_the_engine_writes_nothing_beside_the_input(lulc_model, tmp_path):
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    inputs.mkdir()
    outputs.mkdir()
    sar = write_sar_raster(inputs / "scene.tif", 100, 80)
    segment(sar, outputs / "classes.tif", lulc_model, outputs / "confidence.tif")
    assert os.listdir(inputs) == ["scene.tif"]


def test_the_model_file_is_never_an_output(lulc_model, sar_raster, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(Path(lulc_model).read_bytes())
    with pytest.raises(OutputError, match="is the model. Choose another file name, so the model is not overwritten"):
        segment(sar_raster, model, str(model))
    assert model.read_bytes() == Path(lulc_model).read_bytes()


def run_in_child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)


def test_a_killed_run_leaves_hidden_files_that_the_next_run_removes(lulc_model, tmp_path):
    sar = write_sar_raster(tmp_path / "scene.tif", 700, 600)
    out = tmp_path / "out"
    out.mkdir()
    child = run_in_child(
        "from sarlulc.inference.engine import RunOptions, segment\n"
        f"segment({str(sar)!r}, {str(out / 'classes.tif')!r}, {lulc_model!r}, {str(out / 'confidence.tif')!r},"
        " RunOptions(block_size=64, batch_size=1))\n")
    deadline = time.monotonic() + 60
    while not hidden_files(out) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)  # as the out-of-memory killer or a power cut would
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    left = hidden_files(out)
    assert left and all(f"-{child.pid}-" in name for name in left)
    assert not (out / "classes.tif").exists()

    segment(sar, out / "classes.tif", lulc_model, options=RunOptions(block_size=512))

    assert hidden_files(out) == []
    assert sorted(os.listdir(out)) == ["classes.tif", "classes.tif.aux.xml"]


def test_the_next_run_restores_what_a_run_killed_mid_commit_had_moved_aside(lulc_model, sar_raster, tmp_path):
    """Backups of a dead run: put back when their file is missing (killed before the new file was in
    place), deleted when it is there; files of live runs and of other machines are left alone."""
    out = tmp_path / "out"
    out.mkdir()
    child = run_in_child(
        "from sarlulc.rasters.transaction import hidden_path\n"
        f"for final, kind in (('old.tif', 'backup'), ('new.tif', 'backup'), ('x.tif', 'partial')):\n"
        f"    print(hidden_path({str(out)!r} + '/' + final, kind).name)\n")
    old_backup, new_backup, dead_partial = child.communicate()[0].split()
    (out / old_backup).write_bytes(b"old map")
    (out / (old_backup + ".aux.xml")).write_text("<PAMDataset/>")
    (out / "new.tif").write_bytes(b"new map")
    (out / new_backup).write_bytes(b"map it replaced")
    (out / dead_partial).write_bytes(b"half a map")
    live_partial = dead_partial.replace(f"-{child.pid}-", f"-{os.getpid()}-")
    (out / live_partial).write_bytes(b"a map being written now")
    other_host = ".y.tif.sarlulc-000000-1-0123abcd.partial.tif"
    (out / other_host).write_bytes(b"written by another machine sharing the folder")

    segment(sar_raster, out / "classes.tif", lulc_model)

    assert (out / "old.tif").read_bytes() == b"old map" and (out / "old.tif.aux.xml").exists()
    assert (out / "new.tif").read_bytes() == b"new map"
    assert hidden_files(out) == sorted([live_partial, other_host])


def test_an_output_name_without_room_for_the_hidden_names_is_refused_before_any_file(tmp_path, sar_raster, lulc_model):
    """A valid 244-character name failed half way: the hidden .partial name beside it passed 255 bytes."""
    from sarlulc.inference import engine
    from sarlulc.errors import OutputError

    long_name = tmp_path / ("x" * 240 + ".tif")
    with pytest.raises(OutputError, match=r"file name is 244 bytes long: .*Shorten the name to at most \d+ bytes"):
        engine.segment(sar_raster, str(long_name), model_path=lulc_model)
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(sar_raster).name]
    fits = tmp_path / ("y" * 190 + ".tif")
    engine.segment(sar_raster, str(fits), model_path=lulc_model)
    assert fits.exists()


def test_one_transaction_commits_files_written_under_their_plain_name_and_removes_its_scratch_folders(tmp_path):
    """What a GeoPackage built by child algorithms needs: its own name, in a hidden folder, renamed into place."""
    from sarlulc.rasters.transaction import PendingFiles

    (tmp_path / "package.gpkg").write_bytes(b"earlier package")
    with PendingFiles() as transaction:
        scratch = transaction.scratch_folder(tmp_path / "map.tif")
        (scratch / "model-grid.tif").write_bytes(b"intermediate")
        package = transaction.new(tmp_path / "package.gpkg", plain_name=True)
        assert package.name == "package.gpkg" and package.parent.name.startswith(".package.gpkg.sarlulc-")
        package.write_bytes(b"new package")
        transaction.new(tmp_path / "map.tif").write_bytes(b"map")
        assert (tmp_path / "package.gpkg").read_bytes() == b"earlier package"
    assert (tmp_path / "package.gpkg").read_bytes() == b"new package"
    assert sorted(os.listdir(tmp_path)) == ["map.tif", "package.gpkg"]


def test_a_failed_transaction_leaves_the_earlier_files_and_no_scratch_folder(tmp_path):
    from sarlulc.rasters.transaction import PendingFiles

    (tmp_path / "package.gpkg").write_bytes(b"earlier package")
    with pytest.raises(OutputError, match="Could not write"):
        with PendingFiles() as transaction:
            (transaction.scratch_folder(tmp_path / "map.tif") / "part.tif").write_bytes(b"intermediate")
            transaction.new(tmp_path / "package.gpkg", plain_name=True).write_bytes(b"half a package")
            raise OSError("disk unplugged")
    assert sorted(os.listdir(tmp_path)) == ["package.gpkg"]
    assert (tmp_path / "package.gpkg").read_bytes() == b"earlier package"


def test_a_warped_back_run_leaves_no_scratch_folder_when_cancelled(lulc_model, tmp_path):
    """The results on the model grid live in the run's transaction, removed with it whatever happens."""
    from sarlulc.errors import CancelledError

    sar = write_sar_raster(tmp_path / "scene.tif", 300, 200, pixel_size=5.0)
    out = tmp_path / "out"
    out.mkdir()
    reports, lines = [], []
    with pytest.raises(CancelledError):
        segment(sar, out / "classes.tif", lulc_model, progress=reports.append, log=lines.append,
                is_cancelled=lambda: bool(reports) and reports[-1] > 90.0)  # in the warp back (85..95 %)
    assert any(line.startswith("Resampling: input 5.0 m") for line in lines)
    assert os.listdir(out) == []
    segment(sar, out / "classes.tif", lulc_model)
    assert sorted(os.listdir(out)) == ["classes.tif", "classes.tif.aux.xml"]

"""Bad inputs and faults on the output side, walked through processing.run as a user runs them.

Each row of CASES is refused with a QgsProcessingException whose message says what is wrong and
what to do; afterwards every file in the test folder (inputs, models, earlier outputs, their style
files) is byte for byte as it was, and no output and no hidden partial or backup file is left.
Rows marked "before" must be refused before anything is computed. The rows of the input side
(units, values, resources) are in test_bad_input_values.py.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal, osr
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from factories import write_sar_raster

gdal.UseExceptions()

PLUGIN = "sar_lulc"  # the package name QGIS (and conftest) import the plugin under
DiskUsage = namedtuple("DiskUsage", "total used free")


@dataclass
class World:
    """The files a case works with: inputs in ``folder``, outputs in ``out``."""

    folder: Path
    out: Path
    sar: str
    lulc_model: str
    water_model: str
    dn: str
    prediction: str
    reference: str
    monkeypatch: pytest.MonkeyPatch

    def segment(self, **parameters) -> dict:
        return {"INPUT": self.sar, "MODEL": self.lulc_model, "OUTPUT": str(self.out / "classes.tif"), **parameters}

    def water(self, **parameters) -> dict:
        return {"INPUT": self.sar, "MODEL": self.water_model, "OUTPUT": str(self.out / "water.tif"), **parameters}

    def calibrate(self, **parameters) -> dict:
        return {"INPUT": self.dn, "BAND": 1, "OUTPUT": str(self.out / "sigma0.tif"), **parameters}

    def evaluate(self, **parameters) -> dict:
        return {"PREDICTION": self.prediction, "REFERENCE": self.reference, "TASK": 0,
                "OUTPUT_CSV": str(self.out / "metrics.csv"), "OUTPUT_HTML": str(self.out / "report.html"),
                **parameters}


def class_raster(path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return write_sar_raster(path, 80, 60, values=rng.integers(0, 10, (60, 80)), nodata=0, dtype="uint8")


def truncated_copy(source, path) -> str:
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[:len(data) * 2 // 3])
    return str(path)


def corrupt_middle_tile(path) -> str:
    """A GeoTIFF whose header and first and last tiles are fine but a tile in the middle is garbage."""
    write_sar_raster(path, 600, 500)
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    offset = int(band.GetMetadataItem("BLOCK_OFFSET_1_1", "TIFF"))
    size = int(band.GetMetadataItem("BLOCK_SIZE_1_1", "TIFF"))
    band = dataset = None
    with open(path, "r+b") as stream:
        stream.seek(offset)
        stream.write(b"\xff" * size)
    return str(path)


def gcp_only_raster(path) -> str:
    """A raster in radar geometry: GCPs in EPSG:4326, no geotransform (like an L1.1 product)."""
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 100, 80, 1, gdal.GDT_Float32)
    dataset.GetRasterBand(1).Fill(-10.0)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    dataset.SetGCPs([gdal.GCP(140.0, 35.0, 0, 0, 0), gdal.GCP(140.1, 35.0, 0, 99, 0),
                     gdal.GCP(140.0, 34.9, 0, 0, 79)], srs)
    dataset = None
    return str(path)


def local_cs_raster(path) -> str:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 100, 80, 1, gdal.GDT_Float32)
    dataset.GetRasterBand(1).Fill(-10.0)
    dataset.SetGeoTransform((0.0, 10.0, 0.0, 0.0, 0.0, -10.0))
    dataset.SetProjection('LOCAL_CS["site grid",UNIT["metre",1]]')
    dataset = None
    return str(path)


def no_geotransform_raster(path) -> str:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 100, 80, 1, gdal.GDT_Float32)
    dataset.GetRasterBand(1).Fill(-10.0)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32654)
    dataset.SetSpatialRef(srs)
    dataset = None
    return str(path)


def earlier_outputs(world: World, *names) -> None:
    """Outputs of an earlier run that a failed run must leave as they were."""
    for name in names:
        (world.out / name).write_bytes(f"earlier {name}".encode())


def read_only(path: Path) -> None:
    path.write_bytes(b"keep me")
    path.chmod(0o444)


def no_free_space(world: World) -> None:
    world.monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9 - 4096, 4096))


def earlier_style(world: World, qml: str, raster: str) -> None:
    """The .qml SAR LULC wrote for ``raster`` in an earlier run."""
    (world.out / qml).write_text(f'<!DOCTYPE qgis><qgis><customproperties><Option type="Map"><Option type="QString" '
                                 f'name="sarlulc/style_of" value="{raster}"/></Option></customproperties></qgis>')


def fail_commit_of(world: World, name: str) -> None:
    """os.replace fails when the run moves its hidden ``name`` into place, after the files before it
    (as when the disk goes read-only, or another program holds that file open)."""
    real_replace = os.replace

    def replace(source, target):
        if ".partial" in Path(source).name and Path(target).name == name:
            raise PermissionError(13, "Permission denied", str(target))
        return real_replace(source, target)

    world.monkeypatch.setattr(os, "replace", replace)


def fail_second_style(world: World) -> None:
    styling = sys.modules[f"{PLUGIN}.processing_provider.styling"]
    real_write, calls = styling.write_style_sidecar, []

    def write_style_sidecar(raster_path, style_path, final_path, make_renderer):
        calls.append(final_path)
        if len(calls) == 2:
            raise QgsProcessingException(f"Could not write the style file for '{final_path}': disk quota exceeded")
        real_write(raster_path, style_path, final_path, make_renderer)

    world.monkeypatch.setattr(styling, "write_style_sidecar", write_style_sidecar)


def foreign_style(world: World, name: str) -> None:
    (world.out / name).write_text("<!DOCTYPE qgis><qgis><pipe/></qgis>")


def style_of_another_output(world: World, qml: str, raster: str) -> None:
    """A .qml SAR LULC wrote for another raster, which still exists."""
    (world.out / raster).write_bytes(b"another SAR LULC output")
    earlier_style(world, qml, raster)


def link(world: World, name: str, target, hard=False) -> str:
    path = world.out / name
    (os.link if hard else os.symlink)(target, path)
    return str(path)


# (algorithm, parameters(world), key words of the message (regex), refused "before" computing or "after")
CASES = {
    # 1. An output is never an input, whatever name leads to it.
    "segment output is the input": (
        "segment", lambda w: w.segment(OUTPUT=w.sar),
        r"output Land-cover classes \(OUTPUT\) file '.*' is the input SAR raster \(HH backscatter\) \(INPUT\)\. "
        r"Choose another file name", "before"),
    "segment output is a symlink to the input": (
        "segment", lambda w: w.segment(OUTPUT=link(w, "alias.tif", w.sar)),
        r"is the input SAR raster .*\(INPUT\) '.*scene_hh_db\.tif' \(the same file, through a link\)", "before"),
    "segment output is a hard link of the input": (
        "segment", lambda w: w.segment(OUTPUT=link(w, "hard.tif", w.sar, hard=True)),
        r"is the input SAR raster .*through a link", "before"),
    "segment output through a symlinked folder": (
        "segment", lambda w: w.segment(OUTPUT=str(Path(link(w, "inputs", w.folder)) / Path(w.sar).name)),
        r"is the input SAR raster .*through a link", "before"),
    "segment confidence is the input": (
        "segment", lambda w: w.segment(OUTPUT_CONFIDENCE=w.sar),
        r"Confidence \(OUTPUT_CONFIDENCE\) file '.*' is the input SAR raster", "before"),
    "segment output and confidence are one file": (
        "segment", lambda w: w.segment(OUTPUT_CONFIDENCE=str(w.out / "classes.tif")),
        r"Confidence \(OUTPUT_CONFIDENCE\) file must differ from the output Land-cover classes \(OUTPUT\) file", "before"),
    "water probability is the input": (
        "waterdetect", lambda w: w.water(OUTPUT_PROBABILITY=w.sar),
        r"\(OUTPUT_PROBABILITY\) file '.*' is the input SAR raster", "before"),
    "calibrate output is the input": (
        "calibrate", lambda w: w.calibrate(OUTPUT=w.dn),
        r"\(OUTPUT\) file '.*dn\.tif' is the input", "before"),
    "evaluate CSV is the reference": (
        "evaluate", lambda w: w.evaluate(OUTPUT_CSV=w.reference),
        r"\(OUTPUT_CSV\) file '.*reference\.tif' is the input Reference.*\(REFERENCE\)", "before"),
    "evaluate HTML is the prediction": (
        "evaluate", lambda w: w.evaluate(OUTPUT_HTML=w.prediction),
        r"\(OUTPUT_HTML\) file '.*prediction\.tif' is the input Predicted class raster \(PREDICTION\)", "before"),
    "evaluate CSV is a symlink to the prediction": (
        "evaluate", lambda w: w.evaluate(OUTPUT_CSV=link(w, "metrics.csv", w.prediction)),
        r"is the input Predicted class raster \(PREDICTION\) .*through a link", "before"),
    "evaluate CSV and HTML are one file": (
        "evaluate", lambda w: w.evaluate(OUTPUT_HTML=str(w.out / "metrics.csv")),
        r"\(OUTPUT_HTML\) file must differ from the output Metrics table \(OUTPUT_CSV\) file", "before"),

    # 3. All or nothing: a failed run leaves the earlier outputs as they were.
    "segment second output fails to commit": (
        "segment", lambda w: (earlier_outputs(w, "classes.tif", "classes.tif.aux.xml", "confidence.tif"),
                              earlier_style(w, "classes.qml", "classes.tif"), fail_commit_of(w, "confidence.tif"),
                              w.segment(OUTPUT_CONFIDENCE=str(w.out / "confidence.tif")))[-1],
        r"Could not put '.*confidence\.tif' in place \(Permission denied\); the previous files were left as they "
        r"were", "after"),
    "water style of the second output fails": (
        "waterdetect", lambda w: (earlier_outputs(w, "water.tif", "probability.tif"), fail_second_style(w),
                                  w.water(OUTPUT_PROBABILITY=str(w.out / "probability.tif")))[-1],
        r"Could not write the style file for '.*probability\.tif'", "after"),
    "segment existing confidence is read-only": (
        "segment", lambda w: (earlier_outputs(w, "classes.tif"), read_only(w.out / "confidence.tif"),
                              w.segment(OUTPUT_CONFIDENCE=str(w.out / "confidence.tif")))[-1],
        r"confidence file '.*confidence\.tif' already exists and is read-only, so it cannot be replaced", "before"),
    "evaluate second report fails to commit": (
        "evaluate", lambda w: (earlier_outputs(w, "metrics.csv", "report.html"), fail_commit_of(w, "report.html"),
                               w.evaluate())[-1],
        r"Could not put '.*report\.html' in place .*the previous files were left as they were", "after"),
    "evaluate existing HTML is read-only": (
        "evaluate", lambda w: (earlier_outputs(w, "metrics.csv"), read_only(w.out / "report.html"), w.evaluate())[-1],
        r"HTML report file '.*' already exists and is read-only", "before"),
    "calibrate existing output is read-only": (
        "calibrate", lambda w: (read_only(w.out / "sigma0.tif"), w.calibrate())[-1],
        r"already exists and is read-only, so it cannot be replaced", "before"),

    # 4. Messages, not tracebacks.
    "segment truncated GeoTIFF": (
        "segment", lambda w: w.segment(INPUT=truncated_copy(w.sar, w.folder / "truncated.tif")),
        r"input raster '.*truncated\.tif' is truncated or corrupt.*Copy or download the file again", "before"),
    "segment corrupt tile in the middle": (
        "segment", lambda w: w.segment(INPUT=corrupt_middle_tile(w.folder / "corrupt.tif")),
        r"input raster '.*corrupt\.tif' is truncated or corrupt: part of it cannot be read \(.*IReadBlock failed",
        "after"),
    "calibrate truncated GeoTIFF": (
        "calibrate", lambda w: w.calibrate(INPUT=truncated_copy(w.dn, w.folder / "dn_truncated.tif")),
        r"is truncated or corrupt", "before"),
    "evaluate truncated reference": (
        "evaluate", lambda w: w.evaluate(REFERENCE=truncated_copy(w.reference, w.folder / "ref_truncated.tif")),
        r"[Rr]eference .*raster.*'.*ref_truncated\.tif' is truncated or corrupt", "before"),
    "segment GCP-only raster": (
        "segment", lambda w: w.segment(INPUT=gcp_only_raster(w.folder / "slant.tif")),
        r"is not georeferenced: it has only 3 ground control points \(GCPs\).*Terrain-correct it first", "before"),
    "segment raster without geotransform": (
        "segment", lambda w: w.segment(INPUT=no_geotransform_raster(w.folder / "floating.tif")),
        r"is not georeferenced: it has no geotransform.*Georeference it first", "before"),
    "water LOCAL_CS raster": (
        "waterdetect", lambda w: w.water(INPUT=local_cs_raster(w.folder / "local.tif")),
        r"has a local coordinate system \('site grid', LOCAL_CS\), not a map CRS.*Assign the CRS", "before"),
    "segment disk full": (
        "segment", lambda w: (no_free_space(w), w.segment(OUTPUT_CONFIDENCE=str(w.out / "confidence.tif")))[-1],
        r"No space left on '.*out': about 1 MB needed for the outputs .*, 0 MB free\. Free some space", "before"),
    "calibrate disk full": (
        "calibrate", lambda w: (no_free_space(w), w.calibrate())[-1],
        r"No space left on '.*out': about \d+ MB needed", "before"),
    "segment output folder missing": (
        "segment", lambda w: w.segment(OUTPUT=str(w.out / "missing" / "classes.tif")),
        r"folder '.*missing' for the output file does not exist\. Create it or choose another", "before"),
    "segment output is a folder": (
        "segment", lambda w: ((w.out / "classes.tif").mkdir(), w.segment())[-1],
        r"output path '.*classes\.tif' is a folder", "before"),
    "evaluate output folder missing": (
        "evaluate", lambda w: w.evaluate(OUTPUT_HTML=str(w.out / "missing" / "report.html")),
        r"folder '.*missing' for the HTML report file does not exist", "before"),

    # 5. Formats and style files.
    "segment output in JPEG": (
        "segment", lambda w: w.segment(OUTPUT=str(w.out / "classes.jpg")),
        r"ends in '\.jpg', a format SAR LULC does not write.*Use one of: \.tif \(GeoTIFF\), .*\.png \(PNG\)", "before"),
    "segment output without extension": (
        "segment", lambda w: w.segment(OUTPUT=str(w.out / "classes")),
        r"has no file extension, so its format is unknown\. Use one of: \.tif", "before"),
    "segment output as VRT": (
        "segment", lambda w: w.segment(OUTPUT=str(w.out / "classes.vrt")),
        r"ends in '\.vrt', a format SAR LULC does not write", "before"),
    "segment confidence in PNG": (
        "segment", lambda w: w.segment(OUTPUT_CONFIDENCE=str(w.out / "confidence.png")),
        r"confidence file '.*confidence\.png' is a PNG, which cannot hold Float32 values\. Use one of: "
        r"\.tif \(GeoTIFF\), \.tiff \(GeoTIFF\), \.img \(Erdas Imagine\) or \.gpkg \(GeoPackage\)", "before"),
    "calibrate output in PNG": (
        "calibrate", lambda w: w.calibrate(OUTPUT=str(w.out / "sigma0.png")),
        r"is a PNG, which cannot hold Float32 values", "before"),
    "segment styles would collide (x.tif + x.tiff)": (
        "segment", lambda w: w.segment(OUTPUT=str(w.out / "x.tif"), OUTPUT_CONFIDENCE=str(w.out / "x.tiff")),
        r"output and the confidence would share the style file '.*x\.qml'", "before"),
    "segment style would restyle the input": (
        "segment", lambda w: w.segment(OUTPUT=str(w.folder / "scene_hh_db.tiff")),
        r"style file of the output, '.*scene_hh_db\.qml', would also be applied by QGIS to the input raster", "before"),
    "segment style of the user would be lost": (
        "segment", lambda w: (foreign_style(w, "classes.qml"), w.segment())[-1],
        r"style file '.*classes\.qml' of the output already exists and was not written by SAR LULC", "before"),
    "water style belongs to another output": (
        "waterdetect", lambda w: (style_of_another_output(w, "water.qml", "water.png"), w.water())[-1],
        r"style file '.*water\.qml' of the output is the style of '.*water\.png'", "before"),
}

# What may not run in a case refused before computing: the model loop, the calibration, the comparison.
COMPUTATION = {"segment": ("sarlulc.inference.methods", "stream_model"),
               "waterdetect": ("sarlulc.inference.methods", "stream_model"),
               "calibrate": ("sarlulc.calibrate", "to_db"),
               "evaluate": ("sarlulc.evaluation", "_accumulate")}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones and links included) with a digest of its bytes."""
    files = {}
    for root, folders, names in os.walk(folder):
        for name in names + [f for f in folders if os.path.islink(os.path.join(root, f))]:
            path = Path(root) / name
            content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            files[str(path.relative_to(folder))] = hashlib.sha256(content).hexdigest()
    return files


@pytest.fixture
def world(tmp_path, sar_raster, lulc_model, water_model, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    dn = write_sar_raster(tmp_path / "dn.tif", 90, 70, dtype="uint16", nodata=None,
                          values=np.random.default_rng(3).integers(1, 20000, (70, 90)))
    # Models are copied in, so that a case that wrongly overwrote one shows in the snapshot.
    models = [shutil.copy(model, tmp_path / Path(model).name) for model in (lulc_model, water_model)]
    return World(tmp_path, out, sar_raster, *models, dn, class_raster(tmp_path / "prediction.tif", 1),
                 class_raster(tmp_path / "reference.tif", 2), monkeypatch)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_and_leaves_every_file_as_it_was(sarlulc_provider, world, case):
    algorithm, make_parameters, message, when = CASES[case]
    parameters = make_parameters(world)
    if when == "before":
        module, name = COMPUTATION[algorithm]
        world.monkeypatch.setattr(importlib.import_module(f"{PLUGIN}.{module}"), name,
                                  lambda *args, **kwargs: pytest.fail(f"{case}: computed before refusing"))
    before = snapshot(world.folder)

    with pytest.raises(QgsProcessingException, match=message):
        processing.run(f"sarlulc:{algorithm}", parameters)

    after = snapshot(world.folder)
    # QGIS (not the plugin) may save band statistics beside an input when it loads it as a layer.
    loaded_by_qgis = {name for name in after.keys() - before.keys()
                      if name.endswith(".aux.xml") and name[:-len(".aux.xml")] in before}
    assert {k: v for k, v in after.items() if k not in loaded_by_qgis} == before


def test_the_table_covers_every_algorithm_and_both_moments():
    assert len(CASES) >= 25
    assert {algorithm for algorithm, *_ in CASES.values()} == set(COMPUTATION)
    assert {when for *_, when in CASES.values()} == {"before", "after"}


# ---------------------------------------------------------------- a full disk, for real

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB file system (tmpfs) as the output folder; root only, where mounting is allowed."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small file system needs root and a system that allows it")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)


class FillDiskOnProgress(QgsProcessingFeedback):
    """Another program fills the disk once the run has passed its free-space check."""

    def __init__(self, folder: Path):
        super().__init__()
        self.filler = folder / "filler"

    def setProgress(self, progress):  # noqa: N802 (QGIS API)
        if not self.filler.exists() and progress > 2.0:  # the first 2 %: finding where the data is
            with open(self.filler, "wb") as stream, pytest.raises(OSError):
                while True:
                    stream.write(b"\0" * 65536)
                    stream.flush()
        super().setProgress(progress)


# GDAL 3.6 retries the failed write when the dataset is closed and reports that failure from its
# destructor, where Python can only print it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_disk_filling_up_during_the_run_is_told_as_such(sarlulc_provider, lulc_model, sar_raster, small_disk):
    before = hashlib.sha256(Path(sar_raster).read_bytes()).hexdigest()
    with pytest.raises(QgsProcessingException, match=rf"No space left on '{small_disk}'.*Free some space or choose "
                                                      rf"another folder; no output was written"):
        processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": lulc_model,
                                           "OUTPUT": str(small_disk / "classes.tif"),
                                           "OUTPUT_CONFIDENCE": str(small_disk / "confidence.tif")},
                       feedback=FillDiskOnProgress(small_disk))
    assert sorted(os.listdir(small_disk)) == ["filler"]
    assert hashlib.sha256(Path(sar_raster).read_bytes()).hexdigest() == before

"""Every bad input gives a QgsProcessingException that says what is wrong and how to fix it,
writes no output and leaves the input file byte for byte as it was."""

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import processing
import pytest
from qgis.core import QgsProcessingException

from factories import write_foreign_onnx, write_sar_raster


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder this user cannot write to (root ignores file modes: then a read-only system folder)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        folder = Path("/proc/sys")
        if os.access(folder, os.W_OK):
            pytest.skip("no folder is read-only for this user here")
    yield folder
    (tmp_path / "read_only").chmod(0o755)


def bad_inputs(tmp_path, sar_raster, lulc_model, water_model, unwritable_folder):
    """(case, input raster, extra parameters, expected message fragment)."""
    no_crs = write_sar_raster(tmp_path / "no_crs.tif", 40, 30, epsg=None)
    all_nodata = write_sar_raster(tmp_path / "all_nodata.tif", 40, 30, values=np.full((30, 40), -9999.0))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model at all")
    foreign = write_foreign_onnx(tmp_path / "foreign.onnx")
    output = str(tmp_path / "out" / "classes.tif")
    return [
        ("band out of range", sar_raster, {"BAND": 2, "OUTPUT": output},
         "Band 2 does not exist: '.*' has 1 band. Choose a band between 1 and 1"),
        ("no CRS", no_crs, {"OUTPUT": output}, "has no coordinate reference system.*Assign Projection"),
        ("all nodata", all_nodata, {"OUTPUT": output}, "has no valid pixel"),
        ("unreadable ONNX", sar_raster, {"MODEL": str(garbage), "OUTPUT": output},
         "could not be (read|loaded) as an ONNX model.*Check that it is a complete .onnx file"),
        ("foreign ONNX", sar_raster, {"MODEL": foreign, "OUTPUT": output},
         "is not a SAR LULC model: its ONNX metadata has no 'sarlulc_contract' key"),
        ("model of the other task", sar_raster, {"MODEL": water_model, "OUTPUT": output},
         "is a water model, but this algorithm needs a lulc model"),
        ("output is the input", sar_raster, {"OUTPUT": sar_raster}, r"is the input SAR raster \(HH backscatter\) \(INPUT\)\. Choose another file name"),
        ("unwritable folder", sar_raster, {"OUTPUT": str(unwritable_folder / "classes.tif")}, "is not writable"),
        ("missing folder", sar_raster, {"OUTPUT": str(tmp_path / "nowhere" / "classes.tif")}, "does not exist"),
    ]


def test_each_bad_input_is_refused_with_a_clear_message(sarlulc_provider, lulc_model, water_model, sar_raster,
                                                        tmp_path, unwritable_folder):
    (tmp_path / "out").mkdir()
    cases = bad_inputs(tmp_path, sar_raster, lulc_model, water_model, unwritable_folder)
    for case, raster, extra, message in cases:
        before = digest(raster)
        parameters = {"INPUT": raster, "MODEL": lulc_model, **extra}
        with pytest.raises(QgsProcessingException, match=message):
            processing.run("sarlulc:segment", parameters)
        assert digest(raster) == before, case
        assert list((tmp_path / "out").iterdir()) == [], case


def test_water_detect_refuses_a_lulc_model(sarlulc_provider, lulc_model, sar_raster, tmp_path):
    before = digest(sar_raster)
    with pytest.raises(QgsProcessingException, match="is a lulc model, but this algorithm needs a water model"):
        processing.run("sarlulc:waterdetect", {"INPUT": sar_raster, "MODEL": lulc_model,
                                               "OUTPUT": str(tmp_path / "water.tif")})
    assert digest(sar_raster) == before
    assert not (tmp_path / "water.tif").exists()


def test_missing_onnxruntime_tells_how_to_install_it(sarlulc_provider, lulc_model, sar_raster, tmp_path,
                                                     monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` sees when it is absent
    with pytest.raises(QgsProcessingException, match=r"Install it in QGIS with the menu Plugins ▸ SAR LULC ▸ Install "
                                                     r"dependencies…; it goes into .*dependencies"
                                                     ) as error:
        processing.run("sarlulc:segment", {"INPUT": sar_raster, "MODEL": lulc_model,
                                           "OUTPUT": str(tmp_path / "classes.tif")})
    assert "make deploy" not in str(error.value)  # plugin users installed a ZIP, they have no Makefile
    assert not (tmp_path / "classes.tif").exists()

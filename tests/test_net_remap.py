"""The label remap tool: every JAXA HRLULC code to the 9 classes, streamed, georeferencing kept."""

import hashlib

import numpy as np
import pytest
from osgeo import gdal, osr

from sarlulc.products import LULC_CLASSES
from sarlulc.training import remap

JAXA_V2312 = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 6, 9: 7, 10: 8, 11: 6, 12: 9, 13: 5, 14: 2}


def _jaxa_tile(path, codes) -> str:
    """A JAXA-like label tile: EPSG:4326, 1/12000 degree pixels, uint8, 16 x 16 px blocks (several per row)."""
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), codes.shape[1], codes.shape[0], 1, gdal.GDT_Byte,
                                                   ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"])
    dataset.SetGeoTransform((139.0, 1 / 12000, 0.0, 36.0, 0.0, -1 / 12000))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    dataset.SetSpatialRef(srs)
    dataset.GetRasterBand(1).WriteArray(codes)
    dataset = None
    return str(path)


def test_every_jaxa_code_is_remapped_block_by_block(tmp_path, capsys):
    codes = np.resize(np.arange(15, dtype=np.uint8), (70, 90))  # every code 0..14, across many blocks
    source = tmp_path / "LC_N35E139.tif"
    _jaxa_tile(source, codes)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    assert remap.main(["--table", "jaxa-hrlulc-v23.12", "--out", str(tmp_path / "out"), str(source)]) == 0
    assert "14 (Greenhouse): " in capsys.readouterr().out
    result = gdal.Open(str(tmp_path / "out" / source.name))
    expected = np.vectorize(JAXA_V2312.get)(codes)
    assert np.array_equal(result.ReadAsArray(), expected)
    assert result.GetGeoTransform() == gdal.Open(str(source)).GetGeoTransform()
    assert result.GetSpatialRef().GetAuthorityCode(None) == "4326"
    band = result.GetRasterBand(1)
    assert band.GetNoDataValue() == 0 and band.DataType == gdal.GDT_Byte
    water = band.GetColorTable().GetColorEntry(1)
    assert "#%02x%02x%02x" % water[:3] == LULC_CLASSES[0][2].lower()
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before  # input untouched


def test_unlisted_codes_stop_the_run_naming_file_and_codes(tmp_path):
    codes = np.ones((40, 40), np.uint8)
    codes[30:, 30:] = 14  # not in version 21.11's twelve categories
    source = _jaxa_tile(tmp_path / "tile.tif", codes)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"tile\.tif' holds code\(s\) 14, which the table .*v21\.11"):
        remap.main(["--table", "jaxa-hrlulc-v21.11", "--out", str(out), source])
    assert list(out.iterdir()) == []  # no partial file
    assert remap.main(["--table", "jaxa-hrlulc-v21.11", "--unlisted", "nodata", "--out", str(out), source]) == 0
    assert (gdal.Open(str(out / "tile.tif")).ReadAsArray() == np.where(codes == 14, 0, 1)).all()


def test_an_edited_table_is_validated_and_used(tmp_path, capsys):
    table = tmp_path / "merge.csv"
    table.write_text("# wetland as water\nsource_code,source_name,class_code\n0,none,0\n1,a,1\n13,Wetland,1\n")
    source = _jaxa_tile(tmp_path / "t.tif", np.array([[0, 1, 13]] * 3, np.uint8))
    remap.main(["--table", str(table), "--out", str(tmp_path / "o"), source])
    assert gdal.Open(str(tmp_path / "o" / "t.tif")).ReadAsArray().tolist() == [[0, 1, 1]] * 3
    remap.main(["--table", "jaxa-hrlulc-v23.12", "--show"])
    assert "13 Wetland" in capsys.readouterr().out
    table.write_text("source_code,source_name,class_code\n1,a,10\n")
    with pytest.raises(SystemExit, match="class_code 10"):
        remap.main(["--table", str(table), "--show"])

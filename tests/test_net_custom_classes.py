"""A model with its own classes (sarlulc/training/class_table.py, finetune.py): a class table or a reference
raster's categories instead of the bundled 9, the bundled model fine-tuned with a new head, the
contract carrying the classes, and every refusal of a bad table or of a reference it does not fit."""

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from osgeo import gdal, osr

from sarlulc.inference import engine
from sarlulc.fieldwork.legend import numbered_entry, read_legend
from sarlulc.inference.contract import ClassInfo, ModelContract
from sarlulc.training import area_classes, finetune
from sarlulc.training.class_table import ClassTableError, raster_classes, read_class_table
from sarlulc.training.finetune import TrainingRefused, TrainRequest, train_for_area
from sarlulc.training.reference import Grid, ReferenceError, reference_on_grid
from tests import net_support  # noqa: F401 (one torch thread on the shared test machine)
from test_net_finetune import QUICK, needs_sf, sf_crop, write_polygons, write_raster  # noqa: F401 (fixture)

# The PolSF codes of the crop (3 water, 4 urban, 5 parks) as a model's own classes.
TABLE = "code,name,color\n3,Open water,#0022ff\n4,City,#ff2200\n5,Park,#22aa22\n"
CLASSES = (ClassInfo(3, "Open water", "#0022ff"), ClassInfo(4, "City", "#ff2200"), ClassInfo(5, "Park", "#22aa22"))


def write_table(path: Path, text: str = TABLE) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("code,name,color\n3,Water,#0022ff\n3,City,#ff2200\n", "class code 3 is listed twice"),
    ("code,name,color\n0,Water,#0022ff\n4,City,#ff2200\n", "class code 0 (Water) is outside 1..254"),
    ("code,name,color\n3,Water,#0022ff\n255,City,#ff2200\n", "class code 255 (City) is outside 1..254"),
    ("code,name,color\n3,Water,blue\n4,City,#ff2200\n", "the colour 'blue' of Water is not #rrggbb"),
    ("code,name,color\n3,Water,#0022ff\n4,water,#ff2200\n", "the class name 'water' is listed twice"),
    ("code,name,color\n3.5,Water,#0022ff\n", "line 2: the code must be a whole number, got '3.5'"),
    ("value,label\n3,Water\n", "needs a header line 'code,name,color'"),
    ("code,name,color\n3,,#0022ff\n", "class code 3 has no name"),
])
def test_bad_class_tables_are_refused_naming_the_file_and_the_problem(tmp_path, text, message):
    table = write_table(tmp_path / "classes.csv", text)
    with pytest.raises(ClassTableError, match=re.escape(message)) as refused:
        read_class_table(table)
    assert "classes.csv" in str(refused.value)


def test_a_class_table_in_the_published_import_format_is_read_in_order(tmp_path):
    assert read_class_table(write_table(tmp_path / "c.csv", "# habitats\n" + TABLE.replace("#22aa22", "#22AA22"))) \
        == CLASSES


def write_categories(path: Path, names: list[str], colours: dict[int, tuple[int, int, int]] | None = None) -> str:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 8, 8, 1, gdal.GDT_Byte)
    band = dataset.GetRasterBand(1)
    band.SetNoDataValue(255)
    if colours:
        table = gdal.ColorTable()
        for code, rgb in colours.items():
            table.SetColorEntry(code, rgb + (255,))
        band.SetColorTable(table)
    band.SetCategoryNames(names)
    dataset = None
    return str(path)


def test_a_class_raster_brings_its_category_names_and_colours(tmp_path):
    names = ["no label", "", "", "Open water", "City", "Park"]
    coloured = write_categories(tmp_path / "coloured.tif", names, {3: (0, 34, 255), 4: (255, 34, 0), 5: (34, 170, 34)})
    assert raster_classes(coloured) == CLASSES  # 0 is no label whatever it is called
    plain = write_categories(tmp_path / "plain.tif", names)
    assert [c.color for c in raster_classes(plain)] == [numbered_entry(code).color for code in (3, 4, 5)]
    assert raster_classes(write_raster(tmp_path / "codes.tif", Path(plain), np.full((8, 8), 3, np.uint8))) is None
    with pytest.raises(ClassTableError, match="class name 'city' is listed twice"):
        raster_classes(write_categories(tmp_path / "twice.tif", ["", "City", "city"]))


def test_vector_class_names_are_matched_to_the_table_in_any_case_and_other_names_refused(tmp_path):
    sar = write_raster(tmp_path / "sar.tif", _utm_like(tmp_path), np.zeros((192, 256), np.uint8))
    label = write_raster(tmp_path / "label.tif", Path(sar), np.repeat([[3] * 128 + [4] * 128], 192, axis=0)
                         .astype(np.uint8))
    polygons = write_polygons(tmp_path / "checks.gpkg", Path(sar), Path(label))  # names "Water" and "built-up"
    dataset = gdal.Open(sar)
    grid = Grid(dataset.GetProjection(), dataset.GetGeoTransform(), 256, 192)
    table = (ClassInfo(11, "water", "#0022ff"), ClassInfo(12, "Built-Up", "#ff2200"))
    codes = reference_on_grid(polygons, grid, "lulc", "landcover", classes=table)
    assert set(np.unique(codes).tolist()) == {0, 11, 12}
    with pytest.raises(ReferenceError, match=r"holds built-up: neither a class code nor a class name of the "
                                             r"training classes \(water\)"):
        reference_on_grid(polygons, grid, "lulc", "landcover", classes=table[:1])


def _utm_like(tmp_path) -> Path:
    """A georeferenced 256 x 192 raster in UTM (the crop's CRS and pixel size, no real data)."""
    path = tmp_path / "like.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 256, 192, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform((550000.0, 10.0, 0.0, 4186000.0, 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32610)
    dataset.SetProjection(srs.ExportToWkt())
    dataset = None
    return path


def request(sf_crop, out: Path, **changes) -> TrainRequest:  # noqa: F811 (the fixture)
    sar, label = sf_crop
    fields = dict(rasters=[str(sar)], references=[str(label)], out_model=str(out / "area.onnx"),
                  report=str(out / "area.html"), **QUICK)
    fields.update(changes)
    return TrainRequest(**fields)


@needs_sf
def test_a_three_class_table_fine_tunes_the_bundled_model_with_a_new_head(sf_crop, tmp_path):  # noqa: F811
    logged = []
    result = train_for_area(request(sf_crop, tmp_path, classes=write_table(tmp_path / "habitats.csv"), epochs=1),
                            log=logged.append)
    assert any("classes from the class table habitats.csv: 3 Open water, 4 City, 5 Park" in line for line in logged)
    assert any("encoder and decoder are kept, its classification head is replaced" in line for line in logged)
    contract = ModelContract.from_onnx(result.model_path, expected_task="lulc")
    assert contract.classes == CLASSES
    assert "fine-tuned from SAR LULC Swin lulc" in contract.trained_on
    assert json.loads(contract.training)["classes"].endswith("habitats.csv")
    output = onnx.load(result.model_path).graph.output[0].type.tensor_type.shape.dim
    assert output[1].dim_value == 3  # one channel per class
    assert set(result.trained_scores["iou"]) <= {"Open water", "City", "Park"}
    assert "Open water" in (tmp_path / "area.html").read_text()
    # the model is itself a starting model of these classes: fine-tuning it further keeps its head
    logged.clear()
    again = finetune._start_model(TrainRequest([], [], "", start=result.model_path), None, logged.append)
    assert again[3] == CLASSES and not any("head is replaced" in line for line in logged)
    run = engine.segment(str(sf_crop[0]), str(tmp_path / "map.tif"), model_path=result.model_path,
                         options=engine.RunOptions(device="cpu"))
    classes = gdal.Open(run.output_path)
    band = classes.GetRasterBand(1)
    assert set(np.unique(band.ReadAsArray()).tolist()) <= {0, 3, 4, 5}
    # the raster's own legend (category names, colour table, attribute table) names the custom classes
    assert [(e.code, e.name, e.color) for e in read_legend(classes).entries] == \
        [(c.code, c.name, c.color) for c in CLASSES]


@needs_sf
def test_the_reference_rasters_categories_name_the_classes_without_a_table(sf_crop, tmp_path):  # noqa: F811
    label = gdal.Translate(str(tmp_path / "named.tif"), str(sf_crop[1]))
    label.GetRasterBand(1).SetCategoryNames(["", "", "", "Open water", "City", "Park"])
    label = None
    logged = []
    classes = area_classes.given_classes(request(sf_crop, tmp_path, references=[str(tmp_path / "named.tif")]),
                                      logged.append)
    assert [(c.code, c.name) for c in classes] == [(c.code, c.name) for c in CLASSES]
    assert logged == ["classes from the class names of the reference raster(s): 3 Open water, 4 City, 5 Park"]
    # a remap table renumbers the codes: the categories no longer name them
    assert area_classes.given_classes(request(sf_crop, tmp_path, references=[str(tmp_path / "named.tif")],
                                           remap="polsf-sf-airsar"), logged.append) is None


@needs_sf
@pytest.mark.parametrize("case, message", [
    ("code absent", r"holds class code\(s\) 5, absent from the training classes \(0 = no label, 3 Open water, 4 City\)"),
    ("bad table", "class code 4 is listed twice"),
    ("one class", "1 class only; a land-cover model needs at least two"),
    ("water task", "a class table is for land cover"),
])
def test_a_table_the_reference_does_not_fit_is_refused_before_training(sf_crop, tmp_path, monkeypatch,  # noqa: F811
                                                                       case, message):
    text, task = {"code absent": (TABLE.replace("5,Park,#22aa22\n", ""), "lulc"),
                  "bad table": (TABLE.replace("5,Park", "4,Park"), "lulc"),
                  "one class": ("code,name,color\n3,Open water,#0022ff\n", "lulc"),
                  "water task": (TABLE, "water")}[case]
    monkeypatch.setattr(finetune, "SegmentationCrops", None)  # training would fail on it: refusals come first
    out = tmp_path / "out"
    with pytest.raises(TrainingRefused, match=message):
        train_for_area(request(sf_crop, out, classes=write_table(tmp_path / "c.csv", text), task=task),
                       log=lambda line: None)
    assert not out.exists() or not any(out.iterdir())


@needs_sf
def test_cli_takes_a_class_table(sf_crop, tmp_path, capsys):  # noqa: F811
    sar, label = sf_crop
    table = write_table(tmp_path / "c.csv", TABLE.replace("5,Park,#22aa22\n", ""))
    code = finetune.main(["--sar", str(sar), "--reference", str(label), "--classes", table,
                          "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert "absent from the training classes" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()

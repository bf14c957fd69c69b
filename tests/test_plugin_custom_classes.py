"""A model of the user's own classes end to end in Processing: sarlulc:train with a 3-class table on
a real L-band crop, then sarlulc:segment with that model; the class raster's legend (attribute table),
its .qml style and the layer QGIS opens show the table's names and colours."""

import processing
from osgeo import gdal
from qgis.core import QgsApplication, QgsPalettedRasterRenderer, QgsProcessingException, QgsRasterLayer

from sarlulc.inference.contract import ModelContract
from test_plugin_train import needs_sf, sf_crop  # noqa: F401 (fixture)

TABLE = "code,name,color\n3,Open water,#0022ff\n4,City,#ff2200\n5,Park,#22aa22\n"
EXPECTED = [(3, "Open water", "#0022ff"), (4, "City", "#ff2200"), (5, "Park", "#22aa22")]
QUICK = {"START": "random weights (from scratch)", "EPOCHS": 1, "CROPS_PER_EPOCH": 8, "BLOCK_SIZE": 64,
         "DEVICE": "cpu"}


def test_train_has_an_optional_class_table(sarlulc_provider):
    alg = QgsApplication.processingRegistry().algorithmById("sarlulc:train")
    classes = alg.parameterDefinition("CLASSES")
    from sar_lulc.processing_provider.compat import PARAMETER_OPTIONAL

    assert classes.type() == "file" and classes.flags() & PARAMETER_OPTIONAL
    assert "<h3>Your own classes</h3>" in alg.shortHelpString()


@needs_sf
def test_segment_with_a_model_of_three_classes_shows_their_names_and_colours(sarlulc_provider, sf_crop,  # noqa: F811
                                                                            tmp_path):
    sar, label = sf_crop
    table = tmp_path / "habitats.csv"
    table.write_text(TABLE, encoding="utf-8")
    model = processing.run("sarlulc:train", {**QUICK, "INPUTS": [sar], "REFERENCES": [label], "CLASSES": str(table),
                                             "OUTPUT_MODEL": str(tmp_path / "habitats.onnx")})["OUTPUT_MODEL"]
    contract = ModelContract.from_onnx(model, expected_task="lulc")
    assert [(c.code, c.name, c.color) for c in contract.classes] == EXPECTED

    output = tmp_path / "classes.tif"
    processing.run("sarlulc:segment", {"INPUT": sar, "MODEL": model, "DEVICE": "cpu", "OUTPUT": str(output)})
    dataset = gdal.Open(str(output))
    rat = dataset.GetRasterBand(1).GetDefaultRAT()
    assert [(rat.GetValueAsInt(row, 0), rat.GetValueAsString(row, 1)) for row in range(rat.GetRowCount())] == \
        [(code, name) for code, name, _ in EXPECTED]
    codes = set(dataset.GetRasterBand(1).ReadAsArray().ravel().tolist())
    assert codes <= {0, 3, 4, 5} and codes - {0}  # a map of the table's codes (one epoch: not a good one)
    dataset = None
    style = output.with_suffix(".qml").read_text(encoding="utf-8")
    for code, name, color in EXPECTED:
        assert f'label="{name}"' in style and color in style
    layer = QgsRasterLayer(str(output), "classes", "gdal")  # applies classes.qml, as QGIS does when opening it
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(int(c.value), c.label, c.color.name()) for c in renderer.classes()] == EXPECTED


@needs_sf
def test_a_reference_code_missing_from_the_table_is_refused_before_training(sarlulc_provider, sf_crop,  # noqa: F811
                                                                           tmp_path):
    sar, label = sf_crop
    table = tmp_path / "habitats.csv"
    table.write_text(TABLE.replace("5,Park,#22aa22\n", ""), encoding="utf-8")
    try:
        processing.run("sarlulc:train", {**QUICK, "INPUTS": [sar], "REFERENCES": [label], "CLASSES": str(table),
                                         "OUTPUT_MODEL": str(tmp_path / "habitats.onnx")})
    except QgsProcessingException as error:
        assert "holds class code(s) 5, absent from the training classes" in str(error)
    else:
        raise AssertionError("the run was not refused")
    assert not (tmp_path / "habitats.onnx").exists()

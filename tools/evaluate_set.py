"""Score an ONNX model on held-out SAR/label pairs (simulated or real), end to end.

Each SAR raster goes through the plugin's own inference engine (exactly what the Processing
algorithms run); the confusion matrices of all scenes are summed, then written as CSV, HTML
and a JSON summary. Used by `make train-bundled` and the ablation runs.

Pairs come from folders or list files (sarlulc/training/sources.py). A pair of another data profile
(e.g. `profile=etci2021`) is first written as an engine-ready pair in a temporary folder: a
nominal 10 m grid where the files have no georeferencing (ETCI chips carry none), labels mapped
to the plugin's codes, and pixels without information (e.g. saturated ETCI chips) left out of
the reference. The SAR values themselves are passed unchanged, in the profile's units.
`--shift-db` adds a calibration error to calibrated inputs, to measure robustness.
`--method threshold` scores Water Detect's automatic-threshold baseline instead of the model,
`--method otsu` a plain Otsu threshold of each scene's whole histogram (the textbook baseline),
so the model's gain over both can be reported. `--groups sf4` also scores land cover on the four
groups a reference without the full legend supports (San Francisco: water, built-up, vegetation,
bare).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np
from osgeo import gdal, osr

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sarlulc.products import WATER_BAND, WATER_NODATA  # noqa: E402
from sarlulc.evaluation import Evaluation, evaluate, write_reports  # noqa: E402
from sarlulc.inference import engine  # noqa: E402
from sarlulc.rasters.reading import BackscatterReader, BandReader, open_raster  # noqa: E402
from sarlulc.sar.units import InputUnits, detect_band_units, sample_valid_values, to_db  # noqa: E402
from sarlulc.inference.threshold import otsu_threshold  # noqa: E402
from sarlulc.rasters.writer import OutputRaster, all_or_none  # noqa: E402
from sarlulc.training.rasters import LabelRaster, ReadOptions, SarRaster  # noqa: E402
from sarlulc.training.sources import PROFILES, Scene, find_pairs  # noqa: E402
from sarlulc.rasters.windows import Window  # noqa: E402
from sarlulc.errors import gdal_exceptions  # noqa: E402

NOMINAL_GRID_EPSG, NOMINAL_ORIGIN, NOMINAL_PIXEL_M = 32633, (500000.0, 5000000.0), 10.0


def engine_ready(scene: Scene, folder: pathlib.Path, shift_db: float,
                 rows: int = 1024) -> tuple[str, str, InputUnits | str]:
    """(SAR path, label path, INPUT_UNITS) the engine and sarlulc.evaluation can read for ``scene``,
    written strip by strip."""
    profile = PROFILES[scene.profile]
    if scene.profile == "sarlulc" and not shift_db:
        return str(scene.sar), str(scene.label), InputUnits.AUTO
    sar = SarRaster(scene.sar, scene.profile, ReadOptions(model_grid=False))  # a copy on the raster's own grid
    label = LabelRaster(scene.label, scene.profile, sar)
    calibrated = bool(shift_db)
    units = InputUnits.DB if calibrated else (profile.units or sar.units)
    source = gdal.Open(str(scene.sar))
    sar_nodata = -9999.0 if calibrated else 0.0
    outputs = []
    for name, data_type, nodata in ((f"{scene.sar.stem}.tif", gdal.GDT_Float32, sar_nodata),
                                    (f"{scene.sar.stem}_label.tif", gdal.GDT_Byte, 0)):
        dataset = gdal.GetDriverByName("GTiff").Create(str(folder / name), sar.width, sar.height, 1, data_type,
                                                       ["TILED=YES", "COMPRESS=DEFLATE"])
        if source.GetSpatialRef() is not None:
            dataset.SetGeoTransform(source.GetGeoTransform())
            dataset.SetSpatialRef(source.GetSpatialRef())
        else:
            srs = osr.SpatialReference()
            srs.ImportFromEPSG(NOMINAL_GRID_EPSG)
            dataset.SetGeoTransform((NOMINAL_ORIGIN[0], NOMINAL_PIXEL_M, 0, NOMINAL_ORIGIN[1], 0, -NOMINAL_PIXEL_M))
            dataset.SetSpatialRef(srs)
        dataset.GetRasterBand(1).SetNoDataValue(nodata)
        if data_type == gdal.GDT_Float32:  # the polarisation it names sets the threshold method's water ceiling
            dataset.GetRasterBand(1).SetDescription(source.GetRasterBand(1).GetDescription())
        outputs.append(dataset)
    for y in range(0, sar.height, rows):
        strip = Window(0, y, sar.width, min(rows, sar.height - y))
        if calibrated:
            values, valid = sar.read_db(strip)
            values = np.where(valid, values + shift_db, np.float32(sar_nodata))
        else:
            values, valid = sar.read_raw(strip)
            values = np.where(valid, values, np.float32(sar_nodata))
        outputs[0].GetRasterBand(1).WriteArray(values, 0, y)
        outputs[1].GetRasterBand(1).WriteArray(np.where(valid, label.read(strip), 0).astype(np.uint8), 0, y)
    paths = [dataset.GetDescription() for dataset in outputs]
    outputs = None
    return paths[0], paths[1], units


# Four groups any land-cover reference can tell apart (code -> group); Solar panel counts as built-up.
GROUPS = {"sf4": {1: (1, "Water"), 2: (2, "Built-up"), 9: (2, "Built-up"), 8: (8, "Bare land"),
                  **{code: (5, "Vegetation") for code in (3, 4, 5, 6, 7)}}}


def grouped(result: Evaluation, groups: dict[int, tuple[int, str]]) -> Evaluation:
    """``result`` with its classes merged into ``groups`` (codes not listed stay as they are)."""
    merged = sorted({groups.get(code, (code, name)) + (color,) for code, name, color in result.classes},
                    key=lambda entry: entry[0])
    classes = tuple({code: (code, name, color) for code, name, color in merged}.values())
    index = {code: i for i, (code, _, _) in enumerate(classes)}
    target = [index[groups.get(code, (code,))[0]] for code, _, _ in result.classes]
    matrix = np.zeros((len(classes), len(classes)), np.int64)
    for i, row in enumerate(result.matrix):
        for j, count in enumerate(row):
            matrix[target[i], target[j]] += count
    return Evaluation(result.task, classes, matrix, result.unit)


def otsu_water(sar: str, units, output: pathlib.Path, rows: int = 1024) -> float | None:
    """Water mask of ``sar`` by one Otsu threshold of its whole histogram (a decimated sample), on its own
    grid (1 water, 0 not, 255 nodata); returns the threshold in dB."""
    dataset = open_raster(sar)
    units = InputUnits(units) if InputUnits(units) is not InputUnits.AUTO else detect_band_units(dataset, 1)[0]
    reader = BackscatterReader(BandReader(dataset, 1, sar, require_crs=False), units)
    raw = sample_valid_values(dataset, 1)
    threshold = otsu_threshold(to_db(raw[raw != 0] if units is not InputUnits.DB else raw, units))
    mask = OutputRaster(output, dataset, gdal.GDT_Byte, WATER_NODATA, WATER_BAND)
    with all_or_none([mask]):
        for y in range(0, dataset.RasterYSize, rows):
            strip = Window(0, y, dataset.RasterXSize, min(rows, dataset.RasterYSize - y))
            db, valid = reader.read(strip)
            water = db < threshold if threshold is not None else np.zeros(valid.shape, bool)
            mask.write(np.where(valid, water, WATER_NODATA).astype(np.uint8), strip)
    return threshold


def evaluate_set(model: pathlib.Path | None, task: str, folders: list[str], device: str = "cpu",
                 shift_db: float = 0.0, method: str = "model") -> Evaluation:
    """Run the model (the threshold method, or a plain Otsu threshold; model None: the bundled one) on
    every pair and return the summed confusion matrix."""
    run = engine.segment if task == "lulc" else engine.detect_water
    total: Evaluation | None = None
    pairs = find_pairs(folders)
    with tempfile.TemporaryDirectory() as tmp:
        for pair in pairs:
            sar, label, units = engine_ready(pair, pathlib.Path(tmp), shift_db)
            prediction = pathlib.Path(tmp) / f"{pathlib.Path(sar).stem}_pred.tif"
            if method == "otsu":
                threshold = otsu_water(sar, units, prediction)
                print(f"{pair.sar.name}: Otsu threshold {threshold}", file=sys.stderr)
            else:
                report = run(sar, str(prediction), model_path=str(model) if model else None,
                             options=engine.RunOptions(device=device, input_units=units, method=method))
            if method == "threshold":
                threshold = "none" if report.water_threshold_db is None else f"{report.water_threshold_db:.2f} dB"
                print(f"{pair.sar.name}: water threshold {threshold}", file=sys.stderr)
            scene = evaluate(prediction, label, task=task)
            if total is None:
                total = scene
            elif scene.classes != total.classes:
                raise SystemExit(f"{sar}: class list differs from the first scene's; cannot sum matrices")
            else:
                total = Evaluation(task, total.classes, total.matrix + scene.matrix)
            prediction.unlink()
    if total is None:
        raise SystemExit(f"no <name>_sar.tif / <name>_label.tif pairs found in {folders}")
    return total


def summary(result: Evaluation, model: pathlib.Path | None, scenes: int, shift_db: float = 0.0,
            method: str = "model") -> dict:
    water = result.water
    return {
        "model": str(model) if model else "bundled", "method": method, "task": result.task, "shift_db": shift_db,
        "scenes": scenes, "pixels": result.pixels,
        "miou": result.miou, "overall_accuracy": result.overall_accuracy,
        "per_class_iou": {m.name: m.iou for m in result.per_class},
        "water": None if water is None else {"iou": water.iou, "f1": water.f1,
                                             "precision": water.precision, "recall": water.recall,
                                             "share_labelled": water.reference_pixels / max(1, result.pixels),
                                             "share_mapped": water.predicted_pixels / max(1, result.pixels)},
    }


@gdal_exceptions()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=pathlib.Path,
                   help="ONNX model with the SAR LULC contract (default: the bundled model of the task)")
    p.add_argument("--task", choices=("lulc", "water"), required=True)
    p.add_argument("--method", choices=engine.WATER_METHODS + ("otsu",), default="model",
                   help="water task: score the model (default), Water Detect's threshold method, or a plain "
                        "Otsu threshold of each scene")
    p.add_argument("--groups", choices=sorted(GROUPS), help="land cover: also score these merged class groups")
    p.add_argument("--data", nargs="+", required=True, help="folders or list files of held-out pairs")
    p.add_argument("--out", required=True, type=pathlib.Path, help="folder for metrics.csv/.html/.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--shift-db", type=float, default=0.0, help="calibration error added to the input, dB")
    args = p.parse_args(argv)
    if args.method != "model" and args.task != "water":
        p.error(f"--method {args.method} scores water detection only: use --task water")
    result = evaluate_set(args.model, args.task, args.data, args.device, args.shift_db, args.method)
    args.out.mkdir(parents=True, exist_ok=True)
    name = ({"threshold": "automatic threshold", "otsu": "plain Otsu threshold"}.get(args.method)
            or (args.model.name if args.model else f"bundled {args.task} model"))
    write_reports(result, args.out / "metrics.csv", args.out / "metrics.html", name, "held-out reference")
    info = summary(result, args.model, len(find_pairs(args.data)), args.shift_db, args.method)
    if args.groups:
        groups = grouped(result, GROUPS[args.groups])
        write_reports(groups, args.out / "groups.csv", args.out / "groups.html", name, "held-out reference")
        info["groups"] = {"name": args.groups, "overall_accuracy": groups.overall_accuracy, "miou": groups.miou,
                          "per_group_iou": {m.name: m.iou for m in groups.per_class}}
    (args.out / "metrics.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

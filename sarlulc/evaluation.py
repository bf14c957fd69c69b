"""Accuracy of a class raster against a reference raster on the same grid.

Streams both rasters window by window (bounded memory, any raster size) into a confusion matrix
(rows: reference class, columns: predicted class) over the pixels that have data in both, then
derives per-class IoU/precision/recall/F1, mIoU and overall accuracy, and writes them as CSV and
as a self-contained HTML report with the confusion matrix drawn as an SVG heat map.
numpy + GDAL only (no QGIS, no torch), so the CLI, the training scripts and the Processing
algorithm share it.

    python -m sarlulc.evaluation PRED REF --out-csv metrics.csv --out-html report.html [--task lulc|water]

The reference may also be field observations: points with an observed class code
(:func:`evaluate_points`), such as the "field_checks" layer of a SAR LULC field package.
"""

from __future__ import annotations

import argparse
import csv
import math
import pathlib
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
from osgeo import gdal, osr

from .products import LULC_CLASSES, NOT_WATER, WATER_CLASSES
from .html_report import escape, key_value_rows, page, row, svg_open, swatch
from .errors import InferenceError, gdal_exceptions
from .fieldwork.legend import read_legend
from .inference.contract import TASKS
from .rasters.reading import open_raster, reading
from .rasters.output_checks import check_outputs
from .rasters.transaction import PendingFiles


WATER_CODE = WATER_CLASSES[0][0]
_UNKNOWN_COLOUR = "#999999"
_WINDOW_PIXELS = 1 << 22  # about 4 M pixels per window and raster: a few tens of MB at most
_FIX_GRID = ("Resample the prediction to the reference grid with Warp (Raster ▸ Projections ▸ Warp, or gdalwarp) "
             "using the reference's CRS, extent and pixel size and nearest-neighbour resampling.")


class EvaluationError(ValueError):
    """Inputs that cannot be compared; str(e) says what is wrong and how to fix it. Unreadable rasters
    and report paths that cannot be written raise the inference engine's errors (InferenceError)."""


class GridMismatchError(EvaluationError):
    """The two rasters are not on the same pixel grid."""


@dataclass(frozen=True)
class ClassMetrics:
    code: int
    name: str
    color: str
    reference_pixels: int
    predicted_pixels: int
    true_positives: int

    @property
    def iou(self) -> float:
        return _ratio(self.true_positives, self.reference_pixels + self.predicted_pixels - self.true_positives)

    @property
    def precision(self) -> float:
        return _ratio(self.true_positives, self.predicted_pixels)

    @property
    def recall(self) -> float:
        return _ratio(self.true_positives, self.reference_pixels)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.true_positives, self.reference_pixels + self.predicted_pixels)


@dataclass(frozen=True)
class Evaluation:
    """Confusion matrix `matrix[i, j]`: pixels (or points) of reference class `classes[i]` predicted as `classes[j]`."""

    task: str
    classes: tuple[tuple[int, str, str], ...]
    matrix: np.ndarray
    unit: str = "pixels"  # what was compared: "pixels" of two rasters, or observed "points"

    @property
    def pixels(self) -> int:
        return int(self.matrix.sum())

    @property
    def overall_accuracy(self) -> float:
        return _ratio(int(np.trace(self.matrix)), self.pixels)

    @property
    def per_class(self) -> list[ClassMetrics]:
        reference, predicted, hits = self.matrix.sum(axis=1), self.matrix.sum(axis=0), np.diag(self.matrix)
        return [ClassMetrics(code, name, color, int(reference[i]), int(predicted[i]), int(hits[i]))
                for i, (code, name, color) in enumerate(self.classes)]

    @property
    def miou(self) -> float:
        """Mean IoU over the classes present in the reference or the prediction (absent ones have no IoU)."""
        ious = [m.iou for m in self.per_class if not math.isnan(m.iou)]
        return float(np.mean(ious)) if ious else math.nan

    @property
    def water(self) -> ClassMetrics | None:
        """The water class (code 1 in both legends), or None when neither raster has water."""
        return next((m for m in self.per_class if m.code == WATER_CODE), None)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def evaluate(prediction_path, reference_path, task: str = "lulc",
             progress: Callable[[float], None] | None = None) -> Evaluation:
    """Compare two class rasters (band 1 each) on the same grid. lulc: the classes the prediction names
    (else the 9-class legend) plus any other code found; water: both rasters binarised (code 1 = water,
    other valid codes = not water). `progress(fraction)` is called after every window; raise from it to stop."""
    if task not in TASKS:
        raise EvaluationError(f"Unknown task {task!r}: use one of {', '.join(TASKS)}.")
    prediction = open_raster(prediction_path, "prediction raster")
    reference = open_raster(reference_path, "reference raster")
    check_same_grid(prediction, reference)
    pred_band, ref_band = prediction.GetRasterBand(1), reference.GetRasterBand(1)
    width, height = reference.RasterXSize, reference.RasterYSize
    block_rows = ref_band.GetBlockSize()[1]
    rows = max(block_rows, (_WINDOW_PIXELS // max(width, 1)) // block_rows * block_rows)
    counts: dict[tuple[int, int], int] = {}
    for y in range(0, height, rows):
        n = min(rows, height - y)
        with reading(reference_path, "reference raster"):
            ref, ref_valid = _read_codes(ref_band, 0, y, width, n, "reference")
        with reading(prediction_path, "prediction raster"):
            pred, pred_valid = _read_codes(pred_band, 0, y, width, n, "prediction")
        valid = ref_valid & pred_valid
        ref, pred = ref[valid], pred[valid]
        if task == "water":
            ref, pred = (ref == WATER_CODE).astype(np.int64), (pred == WATER_CODE).astype(np.int64)
        _accumulate(counts, ref, pred)
        if progress:
            progress((y + n) / height)
    if not counts:
        raise EvaluationError("No pixel has data in both the prediction and the reference (they do not overlap, "
                              "or one is entirely nodata): check that the rasters cover the same area.")
    return _evaluation(task, counts, "pixels", _named_classes(prediction, task))


def evaluate_points(prediction_path, points, task: str = "lulc",
                    progress: Callable[[float], None] | None = None) -> tuple[Evaluation, int]:
    """Compare a class raster with field observations: ``points`` are (x, y, observed code) in the raster's
    CRS. Returns the evaluation (unit "points") and how many points were left out because they fall outside
    the raster or on its nodata. `progress(fraction)` is called as points are read; raise from it to stop."""
    if task not in TASKS:
        raise EvaluationError(f"Unknown task {task!r}: use one of {', '.join(TASKS)}.")
    prediction = open_raster(prediction_path, "prediction raster")
    band = prediction.GetRasterBand(1)
    inverse = gdal.InvGeoTransform(prediction.GetGeoTransform())
    width, height = prediction.RasterXSize, prediction.RasterYSize
    points = list(points)
    observed, predicted = [], []
    left_out = 0
    for done, (x, y, code) in enumerate(points, start=1):
        column, row = (math.floor(v) for v in gdal.ApplyGeoTransform(inverse, x, y))
        if not (0 <= column < width and 0 <= row < height):
            left_out += 1
            continue
        value, valid = _read_codes(band, column, row, 1, 1, "prediction")
        if not valid[0, 0]:
            left_out += 1
            continue
        observed.append(int(code))
        predicted.append(int(value[0, 0]))
        if progress and done % 100 == 0:
            progress(done / len(points))
    if not observed:
        raise EvaluationError(f"None of the {len(points)} points lies on a valid pixel of the prediction: they are "
                              "outside it or on nodata. Check that the points and the raster cover the same area.")
    reference, prediction_codes = np.array(observed, np.int64), np.array(predicted, np.int64)
    if task == "water":
        reference = (reference == WATER_CODE).astype(np.int64)
        prediction_codes = (prediction_codes == WATER_CODE).astype(np.int64)
    counts: dict[tuple[int, int], int] = {}
    _accumulate(counts, reference, prediction_codes)
    if progress:
        progress(1.0)
    return _evaluation(task, counts, "points", _named_classes(prediction, task)), left_out


def _evaluation(task: str, counts: dict[tuple[int, int], int], unit: str,
                named: tuple[tuple[int, str, str], ...] | None = None) -> Evaluation:
    classes = _class_list(task, {code for pair in counts for code in pair}, named)
    index = {code: i for i, (code, _, _) in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), np.int64)
    for (ref_code, pred_code), count in counts.items():
        matrix[index[ref_code], index[pred_code]] += count
    return Evaluation(task, classes, matrix, unit)


def _describe_crs(wkt: str) -> str:
    srs = osr.SpatialReference(wkt=wkt)
    srs.AutoIdentifyEPSG()
    code = srs.GetAuthorityCode(None)
    return f"EPSG:{code}" if code else srs.GetName() or "an unnamed CRS"


def check_same_grid(prediction: gdal.Dataset, reference: gdal.Dataset) -> None:
    """Raise GridMismatchError unless both rasters have the same size, CRS and geotransform."""
    pred_size = (prediction.RasterXSize, prediction.RasterYSize)
    ref_size = (reference.RasterXSize, reference.RasterYSize)
    if pred_size != ref_size:
        raise GridMismatchError(f"The prediction is {pred_size[0]} x {pred_size[1]} pixels but the reference is "
                                f"{ref_size[0]} x {ref_size[1]}: they must share one pixel grid. {_FIX_GRID}")
    pred_wkt, ref_wkt = prediction.GetProjection(), reference.GetProjection()
    if bool(pred_wkt) != bool(ref_wkt):
        missing = "prediction" if not pred_wkt else "reference"
        raise GridMismatchError(f"The {missing} raster has no CRS while the other has one: assign the right CRS "
                                f"to it (Raster ▸ Projections ▸ Assign Projection), then compare again.")
    if pred_wkt and not osr.SpatialReference(wkt=pred_wkt).IsSame(osr.SpatialReference(wkt=ref_wkt)):
        raise GridMismatchError(f"The prediction is in {_describe_crs(pred_wkt)} but the reference is in "
                                f"{_describe_crs(ref_wkt)}. {_FIX_GRID}")
    pred_gt, ref_gt = prediction.GetGeoTransform(), reference.GetGeoTransform()
    pixel = max(abs(ref_gt[1]), abs(ref_gt[5]))
    if any(abs(a - b) > 0.01 * pixel for a, b in zip(pred_gt, ref_gt)):
        raise GridMismatchError("The prediction and the reference have the same size but a different extent or "
                                f"pixel size (geotransform {tuple(round(v, 6) for v in pred_gt)} vs "
                                f"{tuple(round(v, 6) for v in ref_gt)}). {_FIX_GRID}")


def _read_codes(band: gdal.Band, x: int, y: int, width: int, rows: int, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer class codes of a window and the mask of pixels with data (nodata, NaN excluded)."""
    values = band.ReadAsArray(x, y, width, rows)
    valid = np.ones(values.shape, bool)
    nodata = band.GetNoDataValue()
    if values.dtype.kind == "f":
        valid &= np.isfinite(values)
    if nodata is not None and not math.isnan(nodata):
        valid &= values != nodata
    if values.dtype.kind == "f":
        fractional = valid & (values != np.floor(values))
        if fractional.any():
            example = float(values[fractional][0])
            raise EvaluationError(f"The {role} raster holds non-integer values (e.g. {example:g}): it looks like a "
                                  "probability or backscatter raster. Use a class raster (the class output of "
                                  "SAR LULC Segment or Water Detect, or a label map).")
    return np.where(valid, values, 0).astype(np.int64), valid


def _accumulate(counts: dict[tuple[int, int], int], ref: np.ndarray, pred: np.ndarray) -> None:
    if ref.size == 0:
        return
    ref_codes, ref_index = np.unique(ref, return_inverse=True)
    pred_codes, pred_index = np.unique(pred, return_inverse=True)
    pairs = np.bincount(ref_index * len(pred_codes) + pred_index, minlength=len(ref_codes) * len(pred_codes))
    for flat in np.flatnonzero(pairs):
        key = (int(ref_codes[flat // len(pred_codes)]), int(pred_codes[flat % len(pred_codes)]))
        counts[key] = counts.get(key, 0) + int(pairs[flat])


def _named_classes(prediction: gdal.Dataset, task: str) -> tuple[tuple[int, str, str], ...] | None:
    """The classes a land-cover prediction names itself (a model trained with its own classes writes their
    names and colours), or None: the 9-class legend."""
    legend = read_legend(prediction) if task == "lulc" else None
    return tuple((entry.code, entry.name, entry.color) for entry in legend.entries) if legend else None


def _class_list(task: str, observed: set[int],
                named: tuple[tuple[int, str, str], ...] | None = None) -> tuple[tuple[int, str, str], ...]:
    """The prediction's own classes (``named``), else the task's legend, plus any other code found in the data
    (so nothing is dropped silently)."""
    legend = named or (LULC_CLASSES if task == "lulc" else (NOT_WATER,) + WATER_CLASSES)
    known = {code for code, _, _ in legend}
    extra = tuple((code, f"Code {code}", _UNKNOWN_COLOUR) for code in sorted(observed - known))
    return tuple(sorted(tuple(legend) + extra))


# ---------------------------------------------------------------- reports

def check_report_paths(csv_path, html_path, prediction_path, reference_path) -> tuple[str | None, str | None]:
    """Before comparing: refuse report paths that are an input raster or each other, or that cannot be
    written (the engine's shared output check); returns them absolute (None for a report not asked for)."""
    labels = {"CSV table": csv_path, "HTML report": html_path}
    checked = check_outputs({label: path for label, path in labels.items() if path},
                            {"prediction raster": prediction_path, "reference raster": reference_path})
    return tuple(str(checked[label]) if label in checked else None for label in labels)


def write_reports(evaluation: Evaluation, csv_path=None, html_path=None, prediction_name: str = "",
                  reference_name: str = "") -> None:
    """The CSV table and the HTML report, both or neither: written under hidden names, then renamed
    into place together."""
    with PendingFiles() as pending:
        if csv_path:
            write_csv(evaluation, pending.new(csv_path), prediction_name, reference_name)
        if html_path:
            write_html(evaluation, pending.new(html_path), prediction_name, reference_name)


def _fmt(value: float, digits: int = 4) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def write_csv(evaluation: Evaluation, path, prediction_name: str = "", reference_name: str = "") -> None:
    """Per-class table (one row per reference class, with its confusion-matrix row as predicted_<code>
    columns), preceded by '#' comment lines with the summary (pandas: read_csv(path, comment='#'))."""
    codes = [code for code, _, _ in evaluation.classes]
    with open(path, "w", newline="", encoding="utf-8") as stream:
        stream.write(f"# SAR LULC evaluation ({evaluation.task}); prediction: {prediction_name}; "
                     f"reference: {reference_name}\n")
        stream.write(f"# {evaluation.unit}={evaluation.pixels}; overall_accuracy={_fmt(evaluation.overall_accuracy)}; "
                     f"miou={_fmt(evaluation.miou)}\n")
        stream.write("# rows: reference class; predicted_<code>: pixels of that reference class predicted as <code>\n")
        writer = csv.writer(stream)
        writer.writerow(["code", "name", "reference_pixels", "predicted_pixels", "true_positives", "iou",
                         "precision", "recall", "f1"] + [f"predicted_{code}" for code in codes])
        for metrics, counts in zip(evaluation.per_class, evaluation.matrix):
            writer.writerow([metrics.code, metrics.name, metrics.reference_pixels, metrics.predicted_pixels,
                             metrics.true_positives, _fmt(metrics.iou), _fmt(metrics.precision),
                             _fmt(metrics.recall), _fmt(metrics.f1)] + [int(v) for v in counts])


def confusion_svg(evaluation: Evaluation, cell: int = 44) -> str:
    """The confusion matrix as an SVG heat map; colour = share of the reference class (row-normalised)."""
    names = [name for _, name, _ in evaluation.classes]
    n = len(names)
    label_space = 8 + 7 * max(len(name) for name in names)
    left, top = label_space + 16, label_space + 16
    size = (left + n * cell + label_space // 2, top + n * cell + 40)
    rows = evaluation.matrix.sum(axis=1, keepdims=True)
    shares = np.divide(evaluation.matrix, rows, out=np.zeros(evaluation.matrix.shape), where=rows > 0)
    parts = [svg_open(size[0], size[1], "Confusion matrix", font_size=11)]
    for i, (_, name, color) in enumerate(evaluation.classes):
        y = top + i * cell + cell / 2
        x = left + i * cell + cell / 2
        label = escape(name)
        parts.append(f'<rect x="{left - 12}" y="{y - 5}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left - 16}" y="{y + 4}" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{x - 5}" y="{top - 12}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{x + 4}" y="{top - 16}" transform="rotate(-60 {x + 4} {top - 16})">{label}</text>')
    for i in range(n):
        for j in range(n):
            share = shares[i, j]
            shade = int(round(255 * (1 - share)))
            fill = f"rgb({shade},{int(round(255 - 150 * share))},255)"
            text_color = "#ffffff" if share > 0.55 else "#000000"
            x, y = left + j * cell, top + i * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#ffffff">'
                         f'<title>reference {escape(names[i])}, predicted {escape(names[j])}: '
                         f'{int(evaluation.matrix[i, j])} pixels</title></rect>')
            if evaluation.matrix[i, j]:
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                             f'fill="{text_color}">{100 * share:.0f}%</text>')
    parts.append(f'<text x="{left}" y="{top + n * cell + 24}">rows: reference, columns: prediction; '
                 'cell: share of the reference class</text></svg>')
    return "".join(parts)


def write_html(evaluation: Evaluation, path, prediction_name: str = "", reference_name: str = "") -> None:
    """A self-contained HTML report: summary, per-class table and the confusion-matrix heat map."""
    summary = [(f"{evaluation.unit.capitalize()} compared", f"{evaluation.pixels:,}"),
               ("Overall accuracy", _fmt(evaluation.overall_accuracy)),
               ("mIoU", _fmt(evaluation.miou))]
    water = evaluation.water
    if water is not None:
        summary += [("Water IoU", _fmt(water.iou)), ("Water F1", _fmt(water.f1)),
                    ("Water precision", _fmt(water.precision)), ("Water recall", _fmt(water.recall))]
    header = row(["Code", "Class", "Reference pixels", "Predicted pixels", "IoU", "Precision", "Recall", "F1"],
                 header=True)
    rows = "".join(row([f"{swatch(m.color)}{m.code}", escape(m.name), f"{m.reference_pixels:,}",
                        f"{m.predicted_pixels:,}", _fmt(m.iou), _fmt(m.precision), _fmt(m.recall), _fmt(m.f1)])
                   for m in evaluation.per_class)
    body = f"""<h1>Evaluation against reference ({escape(evaluation.task)})</h1>
<p>Prediction: <code>{escape(prediction_name)}</code><br>Reference: <code>{escape(reference_name)}</code><br>
Pixels with nodata in either raster are excluded. IoU is empty for classes absent from both rasters;
mIoU averages the others.</p>
<table>{key_value_rows(summary)}</table>
<h2>Per class</h2>
<table>{header}{rows}</table>
<h2>Confusion matrix</h2>
{confusion_svg(evaluation)}"""
    document = page("SAR LULC evaluation", body, style="\ntd:nth-child(2){text-align:left}")
    pathlib.Path(path).write_text(document, encoding="utf-8")


@gdal_exceptions()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sarlulc.evaluation",
                                     description="Compare a class raster with a reference on the same grid.")
    parser.add_argument("prediction", help="predicted class raster (e.g. the output of SAR LULC Segment)")
    parser.add_argument("reference", help="reference class raster on the same grid")
    parser.add_argument("--task", choices=TASKS, default="lulc",
                        help="lulc: the classes the prediction names (a model's own), else the 9-class legend; "
                             "water: code 1 = water, any other valid code = not water")
    parser.add_argument("--out-csv", help="write the per-class table and confusion matrix here")
    parser.add_argument("--out-html", help="write an HTML report with the confusion-matrix heat map here")
    args = parser.parse_args(argv)
    try:
        csv_path, html_path = check_report_paths(args.out_csv, args.out_html, args.prediction, args.reference)
        result = evaluate(args.prediction, args.reference, args.task)
        write_reports(result, csv_path, html_path, args.prediction, args.reference)
    except (EvaluationError, InferenceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"pixels {result.pixels}  overall accuracy {_fmt(result.overall_accuracy)}  mIoU {_fmt(result.miou)}")
    for metrics in result.per_class:
        print(f"  {metrics.code:>3} {metrics.name:<20} IoU {_fmt(metrics.iou):>6}  F1 {_fmt(metrics.f1):>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

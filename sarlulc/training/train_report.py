"""The HTML report of a training run for an area: curves, and the validation blocks scored for the
starting model and the trained one (per-class IoU, confusion matrices). Self-contained: inline SVG."""

from __future__ import annotations

import math

from ..evaluation import Evaluation, confusion_svg
from ..html_report import escape, key_value_rows, page, row, svg_open, swatch

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def line_chart_svg(series: dict[str, list[tuple[float, float]]], title: str, x_label: str,
                   width: int = 520, height: int = 260) -> str:
    """Lines of (x, y) points with axes, ticks at the ends, and a legend."""
    points = [p for line in series.values() for p in line if p[1] is not None and math.isfinite(p[1])]
    if not points:
        return f"<p>{escape(title)}: no values.</p>"
    left, right, top, bottom = 56, 16, 28, 40
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or abs(y1) * 0.1 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def at(x, y):
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                top + (y1 - y) / (y1 - y0) * (height - top - bottom))
    parts = [svg_open(width, height, title, font_size=11),
             f'<text x="{left}" y="16" font-size="13">{escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#888"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>']
    for value in (y0 + pad, y1 - pad):
        _, y = at(x0, value)
        parts.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{value:.3g}</text>')
    for value in (x0, x1):
        x, _ = at(value, y0)
        parts.append(f'<text x="{x}" y="{height - bottom + 14}" text-anchor="middle">{value:g}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    for index, (name, line) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        kept = [at(x, y) for x, y in line if y is not None and math.isfinite(y)]
        if len(kept) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in kept) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in kept]
        parts.append(f'<rect x="{width - right - 150}" y="{top + 14 * index}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{width - right - 136}" y="{top + 9 + 14 * index}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def present(evaluation: Evaluation) -> Evaluation:
    """``evaluation`` with the classes absent from both reference and prediction left out."""
    matrix = evaluation.matrix
    keep = [i for i in range(len(evaluation.classes)) if matrix[i].sum() or matrix[:, i].sum()]
    return Evaluation(evaluation.task, tuple(evaluation.classes[i] for i in keep), matrix[keep][:, keep],
                      evaluation.unit)


def write_training_report(path, history: list[dict], start: Evaluation, trained: Evaluation, facts: dict) -> None:
    """``history``: per epoch {epoch, train_loss, val_score, seconds}; ``start`` / ``trained``: the
    validation blocks scored for the starting and the trained model; ``facts``: name -> text lines."""
    start, trained = present(start), present(trained)
    by_code = {m.code: m for m in start.per_class}
    rows = "".join(row([f"{swatch(m.color)}{escape(m.name)}", f"{m.reference_pixels:,}",
                        _fmt(by_code[m.code].iou) if m.code in by_code else "", _fmt(m.iou)])
                   for m in trained.per_class)
    summary = (f"<tr><th>Overall accuracy</th><td>{_fmt(start.overall_accuracy)}</td>"
               f"<td>{_fmt(trained.overall_accuracy)}</td></tr>"
               f"<tr><th>mIoU</th><td>{_fmt(start.miou)}</td><td>{_fmt(trained.miou)}</td></tr>")
    loss = line_chart_svg({"training loss": [(r["epoch"], r["train_loss"]) for r in history]},
                          "Training loss per epoch", "epoch")
    scores = line_chart_svg({"validation score": [(r["epoch"], r["val_score"]) for r in history]},
                            "Validation blocks: score per epoch (epoch 0: starting model)", "epoch")
    models = row(["", "starting model", "trained model"], header=True)
    classes = row(["Class", "Reference pixels", "IoU, starting model", "IoU, trained model"], header=True)
    body = f"""<h1>Training report</h1>
<table>{key_value_rows(facts.items())}</table>
<h2>Curves</h2>
<div class="pair">{loss}{scores}</div>
<h2>Validation blocks: starting model and trained model</h2>
<p>Pixels of the validation blocks, which training never learnt from; both models read them alike.</p>
<table>{models}{summary}</table>
<table>{classes}
{rows}</table>
<div class="pair"><div><h3>Starting model</h3>{confusion_svg(start)}</div>
<div><h3>Trained model</h3>{confusion_svg(trained)}</div></div>"""
    style = "\nth{text-align:left} td:first-child{text-align:left}\n.pair{display:flex;flex-wrap:wrap;gap:2em}"
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(page("SAR LULC training report", body, style))

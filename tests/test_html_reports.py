"""Every HTML report (evaluation, class areas, training) is one shell filled: the same head and styles,
every user-supplied name escaped, nothing fetched from elsewhere."""

import re

import numpy as np
import pytest

from sarlulc import html_report
from sarlulc.evaluation import Evaluation, write_html as write_evaluation_html
from sarlulc.fieldwork.areas import PixelAreas
from sarlulc.fieldwork.legend import ClassEntry, ClassLegend
from sarlulc.fieldwork.statistics import AreaStatistics, ClassArea, ZoneAreas, write_html as write_statistics_html
from sarlulc.training.train_report import write_training_report

HOSTILE = '<b>"x" & y</b>'  # in every name a user or a raster supplies
CLASSES = ((1, "Water", "#0000ff"), (2, f"Built {HOSTILE}", "#ff0000"), (3, "Forest", "#00ff00"))
MATRIX = np.array([[50, 3, 0], [2, 40, 5], [0, 4, 30]])


def test_the_shell_escapes_text_and_puts_the_report_style_last():
    document = html_report.page(HOSTILE, "<p>body</p>", style="\np{color:red}")
    assert document.startswith('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>&lt;b&gt;')
    assert document.endswith("<p>body</p>\n</body></html>\n")
    assert f"<style>{html_report.STYLE}\np{{color:red}}</style>" in document
    assert html_report.row(["a", "b"], header=True) == "<tr><th>a</th><th>b</th></tr>"
    assert html_report.key_value_rows([(HOSTILE, 1)]) == \
        "<tr><th>&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;</th><td>1</td></tr>"
    assert 'aria-label="&lt;b&gt;&quot;x&quot;' in html_report.svg_open(10, 20, HOSTILE)
    assert 'font-size="12"' in html_report.svg_open(10, 20, "chart", font_size=12)


def _evaluation_report(tmp_path):
    path = tmp_path / "evaluation.html"
    write_evaluation_html(Evaluation("lulc", CLASSES, MATRIX), path, f"{HOSTILE}.tif", "reference.tif")
    return path


def _statistics_report(tmp_path):
    entries = tuple(ClassEntry(code, name, colour) for code, name, colour in CLASSES)

    def zone(name, pixels):
        return ZoneAreas(name, tuple(ClassArea(entry, count, count * 100.0) for entry, count in zip(entries, pixels)))
    statistics = AreaStatistics(f"/data/{HOSTILE}.tif", ClassLegend(entries, 0),
                                PixelAreas("planar", f"UTM {HOSTILE}", 100.0), zone(None, (500, 300, 200)),
                                (zone(f"zone {HOSTILE}", (100, 50, 0)), zone("empty", (0, 0, 0))), 42, (HOSTILE,))
    path = tmp_path / "areas.html"
    write_statistics_html(statistics, path, title=f"Areas {HOSTILE}")
    return path


def _training_report(tmp_path):
    history = [{"epoch": 0, "train_loss": None, "val_score": 0.4, "seconds": 0},
               {"epoch": 1, "train_loss": 0.9, "val_score": 0.5, "seconds": 3}]
    path = tmp_path / "training.html"
    write_training_report(path, history, Evaluation("lulc", CLASSES, MATRIX + 5), Evaluation("lulc", CLASSES, MATRIX),
                          {"Model": HOSTILE})
    return path


@pytest.mark.parametrize("write", [_evaluation_report, _statistics_report, _training_report])
def test_each_report_fills_the_shell_and_escapes_every_name(tmp_path, write):
    document = write(tmp_path).read_text(encoding="utf-8")
    assert document.startswith('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>')
    assert f"<style>{html_report.STYLE}" in document and document.endswith("</body></html>\n")
    assert "<b>" not in document and "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;" in document
    assert "<script" not in document and not re.search(r"(src|href)=", document)
    assert "http" not in document.replace("http://www.w3.org/2000/svg", "")
    assert document.count("<table>") == document.count("</table>") and document.count("<svg") >= 1

"""A model's own classes: a class table (CSV ``code,name,color``) or a class raster's legend.

Training for an area (finetune.py) and the import of published weights (published.py) name the
classes a model outputs with these, in the order of its output channels. The contract's rules
hold here already, so a bad table is refused with its file and line before any work: codes whole
and in 1..254 (0 is no label, 255 nodata), each code and each name (any letter case, since vector
references name their classes) once, colours ``#rrggbb``.
"""

from __future__ import annotations

import csv
import io
import pathlib

from osgeo import gdal

from ..fieldwork.legend import NO_COLOUR, numbered_entry, read_legend
from ..inference.contract import COLOR_PATTERN, ClassInfo

FIRST_CODE, LAST_CODE = 1, 254


class ClassTableError(ValueError):
    """A class table or legend a model cannot carry; the message names the file and what is wrong."""


def check_classes(classes: tuple[ClassInfo, ...], source: str) -> tuple[ClassInfo, ...]:
    """``classes`` if they follow the contract's rules (codes 1..254, unique codes and names, colours
    #rrggbb); otherwise ClassTableError naming ``source``."""
    if not classes:
        raise ClassTableError(f"{source} lists no class.")
    codes, names = set(), set()
    for item in classes:
        if not FIRST_CODE <= item.code <= LAST_CODE:
            raise ClassTableError(f"{source}: class code {item.code} ({item.name}) is outside {FIRST_CODE}..{LAST_CODE} "
                                  f"(0 means no label, 255 nodata).")
        if not item.name:
            raise ClassTableError(f"{source}: class code {item.code} has no name.")
        if not COLOR_PATTERN.match(item.color):
            raise ClassTableError(f"{source}: the colour '{item.color}' of {item.name} is not #rrggbb "
                                  f"(e.g. #1f78b4).")
        if item.code in codes:
            raise ClassTableError(f"{source}: class code {item.code} is listed twice.")
        if item.name.lower() in names:
            raise ClassTableError(f"{source}: the class name '{item.name}' is listed twice (names are matched "
                                  f"in any letter case).")
        codes.add(item.code)
        names.add(item.name.lower())
    return classes


def read_class_table(path) -> tuple[ClassInfo, ...]:
    """A CSV ``code,name,color`` (header first; blank lines and lines starting with # skipped), one row
    per class in the order of the model's output channels."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ClassTableError(f"Cannot read the class table '{path}': {error}") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if not reader.fieldnames or not {"code", "name", "color"} <= {f.strip() for f in reader.fieldnames}:
        raise ClassTableError(f"The class table '{path}' needs a header line 'code,name,color'.")
    classes = []
    for number, row in enumerate(reader, 2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        try:
            code = int(row["code"])
        except ValueError:
            raise ClassTableError(f"The class table '{path}', line {number}: the code must be a whole number, "
                                  f"got '{row['code']}'.") from None
        classes.append(ClassInfo(code, row["name"], row["color"].lower()))
    return check_classes(tuple(classes), f"The class table '{path}'")


def raster_classes(path: str) -> tuple[ClassInfo, ...] | None:
    """The legend a class raster carries (category names or an attribute table, coloured by its colour
    table; sarlulc/fieldwork/legend.py reads it), code 0 (no label) and the nodata value left out; None
    when it names no class. Classes it gives no colour get one of the numbered classes' colours."""
    legend = read_legend(gdal.Open(path))
    if legend is None:
        return None
    classes = tuple(ClassInfo(e.code, e.name, numbered_entry(e.code).color if e.color == NO_COLOUR else e.color)
                    for e in legend.entries if e.code != 0)
    return check_classes(classes, f"The class names of '{path}'") if classes else None

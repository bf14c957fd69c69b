"""Remap land-cover label rasters (e.g. JAXA HRLULC tiles) to the 9 classes of sarlulc/products.py.

    python -m sarlulc.training.remap --table jaxa-hrlulc-v23.12 --out labels/ LC_N36E140.tif LC_N35E139.tif ...
    python -m sarlulc.training.remap --table my_merge.csv --out labels/ tiles/*.tif
    python -m sarlulc.training.remap --table jaxa-hrlulc-v23.12 --show

The merge is an editable CSV code table (``source_code,source_name,class_code``; see
sarlulc/training/remap_tables/). Rasters are streamed block by block (any size, bounded memory); each
output keeps its input's grid and georeferencing, as uint8 with nodata 0 and the class colours,
and is written under a temporary name then renamed, so a failed run leaves no partial file.
A source code the table does not list stops the run with the file and the codes named, unless
``--unlisted nodata``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import pathlib
import sys

import numpy as np
import rasterio
from rasterio.windows import Window

from ..products import LULC_CLASSES
from ..errors import gdal_exceptions

TABLES = pathlib.Path(__file__).with_name("remap_tables")
NODATA = 0
CREATION_OPTIONS = {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER"}


class CodeTable:
    """Source code -> class code (sarlulc/products.py, 0 = nodata), with the source names for messages."""

    def __init__(self, rows: dict[int, tuple[str, int]], origin: str):
        self.rows, self.origin = rows, origin
        self.lookup = np.full(max(rows) + 1, -1, dtype=np.int16)
        for code, (_, target) in rows.items():
            self.lookup[code] = target

    @classmethod
    def load(cls, name_or_path: str) -> "CodeTable":
        """A shipped table by name (file stem in remap_tables/) or a CSV file."""
        path = pathlib.Path(name_or_path)
        if not path.is_file():
            path = TABLES / f"{name_or_path}.csv"
        if not path.is_file():
            shipped = ", ".join(sorted(p.stem for p in TABLES.glob("*.csv")))
            raise SystemExit(f"No code table '{name_or_path}': give a CSV file or one of: {shipped}")
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        rows: dict[int, tuple[str, int]] = {}
        legend = {code for code, _, _ in LULC_CLASSES} | {NODATA}
        for number, row in enumerate(csv.DictReader(io.StringIO("\n".join(lines))), 2):
            try:
                source, target = int(row["source_code"]), int(row["class_code"])
            except (KeyError, TypeError, ValueError):
                raise SystemExit(f"{path}: expected columns source_code,source_name,class_code with whole numbers; "
                                 f"got {row}") from None
            if target not in legend:
                raise SystemExit(f"{path}: class_code {target} for source code {source} is not in sarlulc/products.py "
                                 f"(0 = nodata, 1..{len(LULC_CLASSES)}).")
            if source in rows or not 0 <= source <= 65535:
                raise SystemExit(f"{path}: source code {source} listed twice or outside 0..65535.")
            rows[source] = (row.get("source_name") or "", target)
        if not rows:
            raise SystemExit(f"{path}: the table lists no code.")
        return cls(rows, str(path))

    def describe(self) -> str:
        names = {code: name for code, name, _ in LULC_CLASSES} | {NODATA: "nodata"}
        return "\n".join(f"{code:>5} {name:<32} -> {target} {names[target]}"
                         for code, (name, target) in sorted(self.rows.items()))

    def apply(self, codes: np.ndarray, unlisted_nodata: bool, source_name: str) -> np.ndarray:
        """Class codes (uint8) of ``codes`` (an integer array); an unlisted code is nodata or stops
        with the codes named."""
        if codes.dtype.kind == "u" and codes.dtype.itemsize <= 2:  # label products: one table lookup
            table = np.full(1 << (8 * codes.dtype.itemsize), -1, dtype=np.int16)
            table[:min(len(table), len(self.lookup))] = self.lookup[:len(table)]
            mapped = table[codes]
        else:
            wide = codes.astype(np.int64, copy=False)
            inside = (wide >= 0) & (wide < len(self.lookup))
            mapped = np.where(inside, self.lookup[np.clip(wide, 0, len(self.lookup) - 1)], -1)
        unknown = mapped < 0
        if unknown.any():
            if not unlisted_nodata:
                found = ", ".join(str(code) for code in np.unique(codes[unknown])[:20])
                raise ValueError(f"'{source_name}' holds code(s) {found}, which the table {self.origin} does not "
                                 f"list. Check the product version (--table) or add them to a copy of the table; "
                                 f"--unlisted nodata makes them nodata.")
            mapped[unknown] = NODATA
        return mapped.astype(np.uint8)


def remap_raster(source: pathlib.Path, target: pathlib.Path, table: CodeTable, unlisted_nodata: bool = False) -> dict:
    """Write ``target`` from ``source`` block by block; returns pixel counts per source code found."""
    colours = {code: tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)) + (255,) for code, _, colour in LULC_CLASSES}
    partial = target.with_name(f".{target.name}.partial")
    counts: dict[int, int] = {}
    try:
        with rasterio.open(source) as reader:
            profile = {**reader.profile, **CREATION_OPTIONS, "driver": "GTiff", "dtype": "uint8", "count": 1,
                       "nodata": NODATA}
            with rasterio.open(partial, "w", **profile) as writer:
                for window in _blocks(reader):
                    codes = reader.read(1, window=window)
                    _count(codes, counts)
                    writer.write(table.apply(codes, unlisted_nodata, str(source)), 1, window=window)
                writer.write_colormap(1, {NODATA: (0, 0, 0, 0), **colours})
                writer.set_band_description(1, "LULC class (sarlulc/products.py)")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return counts


def _count(codes: np.ndarray, counts: dict[int, int]) -> None:
    """Add the pixel count of every value in ``codes`` to ``counts``."""
    if codes.dtype.kind == "u":
        found = np.bincount(codes.ravel())
        values = np.flatnonzero(found)
        found = found[values]
    else:
        values, found = np.unique(codes, return_counts=True)
    for value, count in zip(values.tolist(), found.tolist()):
        counts[value] = counts.get(value, 0) + count


def _blocks(reader):
    """Windows of whole rows of the input's blocks: bounded memory, each block read once."""
    block_height = reader.block_shapes[0][0]
    rows = max(block_height, (4 << 20) // max(1, reader.width) // block_height * block_height)
    for y in range(0, reader.height, rows):
        yield Window(0, y, reader.width, min(rows, reader.height - y))


@gdal_exceptions()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sarlulc.training.remap", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="*", type=pathlib.Path, help="label rasters to remap")
    p.add_argument("--table", required=True,
                   help="code table: a CSV file, or a shipped one: "
                        + ", ".join(sorted(path.stem for path in TABLES.glob("*.csv"))))
    p.add_argument("--out", type=pathlib.Path, help="output folder (files keep their names)")
    p.add_argument("--unlisted", choices=("error", "nodata"), default="error",
                   help="what a source code missing from the table does")
    p.add_argument("--show", action="store_true", help="print the table's merge and exit")
    args = p.parse_args(argv)
    table = CodeTable.load(args.table)
    if args.show:
        print(f"{table.origin}\n{table.describe()}")
        return 0
    if not args.inputs or args.out is None:
        p.error("give the label rasters and --out (or --show)")
    args.out.mkdir(parents=True, exist_ok=True)
    for source in args.inputs:
        target = args.out / source.name
        if target.resolve() == source.resolve():
            raise SystemExit(f"'{target}' would overwrite its input; choose another --out folder.")
        try:
            counts = remap_raster(source, target, table, args.unlisted == "nodata")
        except (ValueError, rasterio.errors.RasterioError) as error:
            raise SystemExit(f"error: {error}") from None
        found = ", ".join(f"{code} ({table.rows.get(code, ('unlisted', 0))[0] or '?'}): {count}"
                          for code, count in sorted(counts.items()))
        print(f"{source} -> {target}; source codes found (pixels): {found}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

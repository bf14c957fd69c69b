"""Choose a water model's default probability threshold on labelled validation (or training) scenes.

A model trained with focal + dice loss does not put its best water/land decision at p = 0.5, and
on real scenes (fewer, harder crops than the simulated ones) its probabilities sit lower than on
simulated ones. This runs the model through the plugin's engine on each pair (as
`tools/evaluate_set.py` does), keeps its water probability, and scores water IoU at every
candidate threshold over the pixels training learnt from: for a profile with per-chip screening
(ETCI 2021), the chips whose labelled water the SAR shows (`sarlulc.training.sampling.screen_water_chips`).
It prints the best threshold alone on the last line of stdout, for `sarlulc.training.export
--water-threshold`, and writes every figure to --out. Give it the real validation scenes that
also chose the epoch (tools/train_bundled.sh), never the test scenes.

A calibrated product's level is only known to about +-1.5 dB, and a brighter scene pushes the
water probability down: a threshold that is best on one scene as it is can lose much of the water
of the same scene 1.5 dB brighter. With `--shifts` (calibration errors added to calibrated inputs)
and several `--data` sets (each scored on its own), a candidate's score is its lowest water IoU over
every set and shift, and the best threshold is the one whose worst case is highest (ties: the one
nearest 0.5). One set as it is gives the plain best threshold of that set.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np
from osgeo import gdal

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sarlulc.inference import engine  # noqa: E402
from sarlulc.training.rasters import LabelRaster, ReadOptions, SarRaster  # noqa: E402
from sarlulc.training.sampling import chip_mask, screen_water_chips  # noqa: E402
from sarlulc.sar.units import InputUnits  # noqa: E402
from sarlulc.training.sources import PROFILES, find_pairs  # noqa: E402
from tools.evaluate_set import engine_ready  # noqa: E402
from sarlulc.errors import gdal_exceptions  # noqa: E402

CANDIDATES = tuple(round(t, 2) for t in np.arange(0.2, 0.951, 0.05))
WATER, NODATA = 1, 0  # codes of the engine-ready reference (sarlulc.training.sources: water, nodata)


def _read(path: str) -> np.ndarray:
    dataset = gdal.Open(path)
    return dataset.GetRasterBand(1).ReadAsArray()


def threshold_counts(model: pathlib.Path, listings: list[str], candidates=CANDIDATES,
                     shift_db: float = 0.0) -> np.ndarray:
    """(intersection, union) of water at each candidate threshold, summed over the pairs, each pair
    ``shift_db`` brighter (a calibration error)."""
    counts = np.zeros((len(candidates), 2), np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        for pair in find_pairs(listings):
            sar, label, units = engine_ready(pair, pathlib.Path(tmp), shift_db)
            probability = pathlib.Path(tmp) / "probability.tif"
            engine.detect_water(sar, str(pathlib.Path(tmp) / "water.tif"), model_path=str(model),
                                probability_path=str(probability), options=engine.RunOptions(input_units=units))
            reference, scores = _read(label), _read(str(probability))
            scored = (reference != NODATA) & (scores >= 0)
            raster = SarRaster(pair.sar, pair.profile, ReadOptions(model_grid=False))
            kept = screen_water_chips(raster, LabelRaster(pair.label, pair.profile, raster))
            if kept is not None:
                scored &= chip_mask(kept, raster.profile.label_chip, 0, 0, raster.width, raster.height)
            water = reference[scored] == WATER
            for row, threshold in enumerate(candidates):
                found = scores[scored] > threshold
                counts[row] += [np.count_nonzero(water & found), np.count_nonzero(water | found)]
            shifted = f" ({shift_db:+g} dB)" if shift_db else ""
            print(f"{pair.sar.name}{shifted}: {np.count_nonzero(scored)} pixels scored", file=sys.stderr)
    return counts


def robust_choice(ious: dict[str, dict[float, list[float]]], candidates=CANDIDATES) -> tuple[float, list[float]]:
    """(best threshold, score of every candidate): a candidate's score is its lowest IoU over the sets
    and shifts of ``ious`` (set -> shift -> IoU per candidate); ties go to the candidate nearest 0.5."""
    scores = np.min([row for shifts in ious.values() for row in shifts.values()], axis=0)
    best = max(range(len(candidates)), key=lambda i: (scores[i], -abs(candidates[i] - 0.5)))
    return candidates[best], [float(score) for score in scores]


@gdal_exceptions()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=pathlib.Path, help="the water model (ONNX)")
    p.add_argument("--data", nargs="+", required=True,
                   help="validation sets, each a folder or list file of pairs (pooled within a set)")
    p.add_argument("--shifts", nargs="+", type=float, default=[0.0],
                   help="calibration errors (dB) added to calibrated inputs; the choice is robust to all of them")
    p.add_argument("--out", required=True, type=pathlib.Path, help="JSON file for the IoU of every candidate")
    args = p.parse_args(argv)
    relative = [pair.sar.name for pair in find_pairs(args.data) if PROFILES[pair.profile].units is InputUnits.RELATIVE]
    if relative and any(args.shifts):
        p.error(f"{', '.join(relative)}: relative brightness, where a calibration error means nothing; "
                "give --shifts only with calibrated sets, and choose the relative threshold on its own.")
    ious = {}
    for listing in args.data:
        ious[listing] = {}
        for shift in args.shifts:
            counts = threshold_counts(args.model, [listing], shift_db=shift)
            ious[listing][shift] = [float(i / u) if u else 0.0 for i, u in counts]
    best, scores = robust_choice(ious)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    per_set = {listing: {f"{shift:g}": dict(zip(map(str, CANDIDATES), row)) for shift, row in shifts.items()}
               for listing, shifts in ious.items()}
    args.out.write_text(json.dumps({"model": str(args.model), "data": args.data, "shifts_db": args.shifts,
                                    "best": best, "water_iou": dict(zip(map(str, CANDIDATES), scores)),
                                    "per_set": per_set}, indent=2))
    print(" ".join(f"{t:g}: {iou:.3f}" for t, iou in zip(CANDIDATES, scores)), file=sys.stderr)
    print(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())

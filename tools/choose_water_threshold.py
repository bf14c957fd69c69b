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
from sarlulc.training.sources import find_pairs  # noqa: E402
from tools.evaluate_set import engine_ready  # noqa: E402
from sarlulc.errors import gdal_exceptions  # noqa: E402

CANDIDATES = tuple(round(t, 2) for t in np.arange(0.2, 0.951, 0.05))
WATER, NODATA = 1, 0  # codes of the engine-ready reference (sarlulc.training.sources: water, nodata)


def _read(path: str) -> np.ndarray:
    dataset = gdal.Open(path)
    return dataset.GetRasterBand(1).ReadAsArray()


def threshold_counts(model: pathlib.Path, listings: list[str], candidates=CANDIDATES) -> np.ndarray:
    """(intersection, union) of water at each candidate threshold, summed over the pairs."""
    counts = np.zeros((len(candidates), 2), np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        for pair in find_pairs(listings):
            sar, label, units = engine_ready(pair, pathlib.Path(tmp), 0.0)
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
            print(f"{pair.sar.name}: {np.count_nonzero(scored)} pixels scored", file=sys.stderr)
    return counts


@gdal_exceptions()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=pathlib.Path, help="the water model (ONNX)")
    p.add_argument("--data", nargs="+", required=True, help="folders or list files of training pairs")
    p.add_argument("--out", required=True, type=pathlib.Path, help="JSON file for the IoU of every candidate")
    args = p.parse_args(argv)
    counts = threshold_counts(args.model, args.data)
    ious = [float(i / u) if u else 0.0 for i, u in counts]
    best = CANDIDATES[int(np.argmax(ious))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model), "data": args.data, "best": best,
                                    "water_iou": dict(zip(map(str, CANDIDATES), ious))}, indent=2))
    print(" ".join(f"{t:g}: {iou:.3f}" for t, iou in zip(CANDIDATES, ious)), file=sys.stderr)
    print(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())

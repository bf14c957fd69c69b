"""Is the input like the data the model learnt from? A whole-raster sample of the input's sigma0
(dB, after the unit conversion) against the model's training distribution (CONTRACT.md,
``input_distribution``) and its input range (``norm_clip``), with warnings saying what is off.

A model fed backscatter far from anything it was trained on (a wrong calibration factor, units
read wrongly, an uncalibrated product) still returns a confident-looking map; these warnings
are how the user learns to distrust it. A scene-normalised model (``norm_mode`` scene) removes
the scene's median itself, so only the spread around the median is compared for it. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import NORM_SCENE_LAND, SCENE_NORM_MODES, ModelContract
from .normalisation import SceneStatistics

MARGIN_DB = 3.0  # how far outside the training range the input may lie before a warning
MAX_CLIPPED_SHARE = 0.05  # share of pixels outside norm_clip (seen clipped by the model)
_ADVICE = "check the calibration / INPUT_UNITS (and CALIBRATION_FACTOR for ALOS-2 DN); the map may be wrong"


@dataclass(frozen=True)
class DistributionCheck:
    summary: str  # one log line: the input's levels beside the model's
    warnings: list[str]


def percentile_label(percentile: float) -> str:
    """1st, 2nd, 3rd, 11th, 99th: a percentile as people write it."""
    number = f"{percentile:g}"
    suffix = "th" if number.endswith(("11", "12", "13")) else {"1": "st", "2": "nd", "3": "rd"}.get(number[-1], "th")
    return number + suffix


def check_input_distribution(sample_db: np.ndarray, contract: ModelContract, calibrated: bool = True) -> DistributionCheck:
    """Compare ``sample_db`` (valid pixels of the whole input, dB) with what ``contract`` declares;
    ``calibrated`` False (relative brightness, its level anchored by the engine): its level is not
    compared, only the spread around its median."""
    values = np.asarray(sample_db, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return DistributionCheck("Input backscatter not checked against the model's: no valid pixel in the sample", [])
    distribution = contract.input_distribution
    median = float(np.median(values))
    scene_normalised = contract.norm_mode in SCENE_NORM_MODES  # the model sees values - a level of the scene
    relative = scene_normalised or not calibrated  # the absolute level says nothing: compare the spread only
    low_clip, high_clip = contract.norm_clip
    seen = values - SceneStatistics.of(values).level(contract.norm_mode) if scene_normalised else values
    clipped = float(np.mean((seen < low_clip) | (seen > high_clip)))
    summary = (f"Input backscatter (sample of {values.size} valid pixels over the whole raster): median "
               f"{median:.1f} dB, 1..99 % {np.percentile(values, 1):.1f}..{np.percentile(values, 99):.1f} dB")
    warnings = []
    if distribution is None:
        summary += "; the model declares no training distribution (input_distribution), only its input range"
    elif relative:
        level = ("its land's median" if contract.norm_mode == NORM_SCENE_LAND else
                 "the scene median" if scene_normalised else "the land level of a relative input")
        summary += f"; the model removes {level}, so only the spread around the median is compared with its training"
        training_median = dict(distribution.pixel_db_percentiles).get(50.0)
        if training_median is not None:
            warnings += _percentile_warnings(values, distribution.pixel_db_percentiles, median, training_median)
    else:
        low, high = distribution.scene_median_db
        summary += f"; the model was trained on scene medians {low:g}..{high:g} dB"
        if median < low - MARGIN_DB or median > high + MARGIN_DB:
            side, gap = ("below", low - median) if median < low else ("above", median - high)
            warnings.append(f"Input unlike the model's training data: median HH {median:.1f} dB is {gap:.1f} dB "
                            f"{side} anything the model was trained on ({low:g}..{high:g} dB): {_ADVICE}.")
        warnings += _percentile_warnings(values, distribution.pixel_db_percentiles, 0.0, 0.0)
    if clipped > MAX_CLIPPED_SHARE:
        where = " from the scene level the model removes" if scene_normalised else ""
        warnings.append(f"{clipped:.0%} of the input's pixels lie outside {low_clip:g}..{high_clip:g} dB{where}, the "
                        f"range the model reads (norm_clip): it sees them clipped. {_ADVICE[0].upper()}{_ADVICE[1:]}.")
    return DistributionCheck(summary, warnings)


def _percentile_warnings(values: np.ndarray, percentiles, input_reference: float,
                         training_reference: float) -> list[str]:
    """Warnings when the input's lowest percentile (below 50) of the model's lies more than MARGIN_DB
    below the training pixels', or its highest (above 50) more than MARGIN_DB above, both taken
    relative to the references (0: absolute levels; the medians: the spread around them)."""
    relative = " from its median" if input_reference else ""
    training = " from theirs" if input_reference else ""
    warnings = []
    for (percentile, trained_db), darker in ((percentiles[0], True), (percentiles[-1], False)):
        if (percentile < 50.0) != darker or (percentile == 50.0):
            continue
        value = float(np.percentile(values, percentile)) - input_reference
        trained = trained_db - training_reference
        gap = trained - value if darker else value - trained
        if gap > MARGIN_DB:
            word, side = ("darker", "below") if darker else ("brighter", "above")
            warnings.append(
                f"Input {word} than the model's training data: its {percentile_label(percentile)} percentile "
                f"{value:.1f} dB{relative} is {gap:.1f} dB {side} the training pixels' ({trained:g} dB{training}): "
                f"{_ADVICE}.")
    return warnings

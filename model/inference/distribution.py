"""Is the input like the data the model learnt from? A whole-raster sample of the input's sigma0
(dB, after the unit conversion) against the model's training distribution (CONTRACT.md,
``input_distribution``) and its input range (``norm_clip``), with warnings saying what is off.

A model fed backscatter far from anything it was trained on (a wrong calibration factor, units
read wrongly, an uncalibrated product) still returns a confident-looking map; these warnings
are how the user learns to distrust it. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metadata import ModelContract

MARGIN_DB = 3.0  # how far outside the training range the input may lie before a warning
MAX_CLIPPED_SHARE = 0.05  # share of pixels outside norm_clip (seen clipped by the model)
_ADVICE = "check the calibration / INPUT_UNITS (and CALIBRATION_FACTOR for ALOS-2 DN); the map may be wrong"


@dataclass(frozen=True)
class DistributionCheck:
    summary: str  # one log line: the input's levels beside the model's
    warnings: list[str]


def _percentile_label(percentile: float) -> str:
    number = f"{percentile:g}"
    suffix = "th" if number.endswith(("11", "12", "13")) else {"1": "st", "2": "nd", "3": "rd"}.get(number[-1], "th")
    return number + suffix


def check_input_distribution(sample_db: np.ndarray, contract: ModelContract) -> DistributionCheck:
    """Compare ``sample_db`` (valid pixels of the whole input, dB) with what ``contract`` declares."""
    values = np.asarray(sample_db, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return DistributionCheck("Input backscatter not checked against the model's: no valid pixel in the sample", [])
    distribution = contract.input_distribution
    median = float(np.median(values))
    low_clip, high_clip = contract.norm_clip
    clipped = float(np.mean((values < low_clip) | (values > high_clip)))
    summary = (f"Input backscatter (sample of {values.size} valid pixels over the whole raster): median "
               f"{median:.1f} dB, 1..99 % {np.percentile(values, 1):.1f}..{np.percentile(values, 99):.1f} dB")
    warnings = []
    if distribution is None:
        summary += "; the model declares no training distribution (input_distribution), only its input range"
    else:
        low, high = distribution.scene_median_db
        summary += f"; the model was trained on scene medians {low:g}..{high:g} dB"
        if median < low - MARGIN_DB or median > high + MARGIN_DB:
            side, gap = ("below", low - median) if median < low else ("above", median - high)
            warnings.append(f"Input unlike the model's training data: median HH {median:.1f} dB is {gap:.1f} dB "
                            f"{side} anything the model was trained on ({low:g}..{high:g} dB): {_ADVICE}.")
        percentiles = distribution.pixel_db_percentiles
        lowest, highest = percentiles[0], percentiles[-1]
        if lowest[0] < 50.0:
            value = float(np.percentile(values, lowest[0]))
            if value < lowest[1] - MARGIN_DB:
                warnings.append(
                    f"Input darker than the model's training data: its {_percentile_label(lowest[0])} percentile "
                    f"{value:.1f} dB is {lowest[1] - value:.1f} dB below the training pixels' ({lowest[1]:g} dB): "
                    f"{_ADVICE}.")
        if highest[0] > 50.0:
            value = float(np.percentile(values, highest[0]))
            if value > highest[1] + MARGIN_DB:
                warnings.append(
                    f"Input brighter than the model's training data: its {_percentile_label(highest[0])} percentile "
                    f"{value:.1f} dB is {value - highest[1]:.1f} dB above the training pixels' ({highest[1]:g} dB): "
                    f"{_ADVICE}.")
    if clipped > MAX_CLIPPED_SHARE:
        warnings.append(f"{clipped:.0%} of the input's pixels lie outside {low_clip:g}..{high_clip:g} dB, the range "
                        f"the model reads (norm_clip): it sees them clipped. {_ADVICE[0].upper()}{_ADVICE[1:]}.")
    return DistributionCheck(summary, warnings)

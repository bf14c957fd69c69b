"""The model's input normalisation (the contract's norm_* keys) measured on the training rasters, and
the distribution of backscatter a model saw in training (for the plugin's out-of-distribution warning)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..inference.contract import NORM_FIXED, SCENE_NORM_MODES
from .rasters import ReadOptions, SarRaster, sar_rasters
from .sampling import CalibrationJitter
from .sources import Scene


SCENE_CLIP_DB = (-25.0, 20.0)  # dB relative to the scene level removed: calm water to strong double bounce


@dataclass(frozen=True)
class Normalisation:
    """The contract's input normalisation (attribute names as in ModelContract, for prepare_input)."""

    norm_clip: tuple[float, float] = (-35.0, 5.0)
    norm_mean: float = -12.0
    norm_std: float = 6.0
    norm_mode: str = NORM_FIXED

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Normalisation":
        return cls(tuple(data["norm_clip"]), float(data["norm_mean"]), float(data["norm_std"]),
                   data.get("norm_mode", NORM_FIXED))


def compute_normalisation(rasters: list[SarRaster], clip=(-35.0, 5.0), mode: str = NORM_FIXED) -> Normalisation:
    """Mean and std of the clipped dB values (relative to each scene's level in the scene modes),
    sampled over every raster."""
    samples = [r.sample_db() - (r.scene.level(mode) if mode in SCENE_NORM_MODES else 0.0) for r in rasters]
    values = np.clip(np.concatenate(samples), *clip)
    if values.size == 0:
        raise ValueError("No valid SAR pixel found in the training rasters; check their nodata values.")
    return Normalisation((float(clip[0]), float(clip[1])), float(values.mean()), float(max(values.std(), 1e-3)), mode)


def normalisation_for(mode: str, scenes: list[Scene], options: ReadOptions = ReadOptions()) -> Normalisation:
    """The input normalisation of a new model from its training rasters: fixed, or per scene."""
    return normalisation_of(mode, sar_rasters(scenes, options, None))


def normalisation_of(mode: str, rasters: list[SarRaster]) -> Normalisation:
    """:func:`normalisation_for` of rasters already open."""
    return compute_normalisation(rasters, SCENE_CLIP_DB if mode in SCENE_NORM_MODES else (-35.0, 5.0), mode)


def input_distribution(rasters: list[SarRaster], jitter: CalibrationJitter) -> dict:
    """What calibrated backscatter the model saw in training (ONNX key ``input_distribution``, used by
    the plugin's out-of-distribution warning): range of scene medians widened by the calibration
    jitter, and percentiles of the pooled dB sample. Relative rasters (8-bit stretches) are left out:
    their absolute level is anchored, not measured."""
    calibrated = [r for r in rasters if r.units.calibrated]
    if not calibrated:
        return {}
    medians = [r.scene.median for r in calibrated]
    widen = jitter.level_db
    pooled = np.concatenate([r.sample_db() for r in calibrated])
    percentiles = np.percentile(pooled, [1, 50, 99])
    return {"scene_median_db": [round(min(medians) - widen, 2), round(max(medians) + widen, 2)],
            "pixel_db_percentiles": {key: round(float(value), 2) for key, value in zip(("1", "50", "99"), percentiles)}}

"""The model's input normalisation: backscatter in dB to what the network reads, by the contract's norm_* keys
(absolute levels, or relative to the scene's level measured once per run)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputRasterError
from .contract import NORM_SCENE_LAND, SCENE_NORM_MODES, ModelContract
from ..sar.units import RELATIVE_LAND_DB
from .threshold import otsu_threshold


@dataclass(frozen=True)
class SceneStatistics:
    """Levels of the whole scene, for models normalised per scene: removing one makes the model
    blind to the absolute calibration (a wrong CF, an airborne or third-party product several dB
    off) while keeping contrasts in dB.

    ``median``: the median of all valid values (``norm_mode`` scene). It follows the scene's make-up:
    in a coastal tile that is mostly sea it is the sea's level, so the land looks 10-15 dB bright
    and the sea like land. ``land_median``: the median of the brighter of the two populations
    Otsu's split of the sample finds (``norm_mode`` scene-land): the land's level whether water
    covers 3 % or 90 % of the scene; in a scene without water it splits dark from bright land
    and lies a little (1-4 dB) above the median."""

    median: float
    land_median: float
    pixels: int

    @classmethod
    def of(cls, values: np.ndarray) -> "SceneStatistics":
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise InputRasterError("No valid pixel to compute the scene statistics from; check the band and its "
                                   "nodata value.")
        median = float(np.median(values))
        split = otsu_threshold(values)  # None for a constant sample; else pixels lie above it
        brighter = values[values > split] if split is not None else values
        return cls(median, float(np.median(brighter)), int(values.size))

    @property
    def relative_anchor(self) -> float:
        """The shift (dB) that puts a relative input's land level on RELATIVE_LAND_DB, the land of calibrated
        scenes: how the engine and training read 8-bit stretches alike."""
        return RELATIVE_LAND_DB - self.land_median

    def level(self, norm_mode: str) -> float:
        """The level a model of ``norm_mode`` has removed from every pixel (dB)."""
        return self.land_median if norm_mode == NORM_SCENE_LAND else self.median


def prepare_input(db: np.ndarray, valid: np.ndarray, contract: ModelContract,
                  scene: SceneStatistics | None = None) -> np.ndarray:
    """Model input from sigma0 dB (the contract's units): clip, standardise, then zero the invalid pixels.

    The one place input values are normalised; `BackscatterReader` converts other input units
    to dB just before this. Scene-normalised models first have a level of the scene removed
    (``scene``, computed once per raster, so the result does not depend on the tiling); the clip
    and standardisation then apply to those values.
    """
    low, high = contract.norm_clip
    x = np.asarray(db, dtype=np.float32)
    if contract.norm_mode in SCENE_NORM_MODES:
        if scene is None:
            raise ValueError("a scene-normalised model needs the scene statistics")
        x = x - np.float32(scene.level(contract.norm_mode))
    # Invalid pixels are masked before normalising so nodata values (e.g. -9999, NaN) never leak in.
    x = np.where(valid, x, contract.norm_mean).astype(np.float32, copy=False)
    np.clip(x, low, high, out=x)
    x -= np.float32(contract.norm_mean)
    x /= np.float32(contract.norm_std)
    x[~valid] = 0.0
    return x

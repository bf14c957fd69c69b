"""The two tasks the engine runs: land cover (`LAND_COVER`) and water (`WATER`). A task says what differs
between them: the model it expects, its optional score output, its output rasters, and how a block's
probabilities become classes (argmax, or water at or above the probability threshold)."""

from __future__ import annotations

import numpy as np
from osgeo import gdal

from .blending import to_probabilities
from .contract import ModelContract
from .output_specs import OutputSpec
from ..products import (CLASSES_BAND, CONFIDENCE_BAND, LULC_NODATA, NOT_WATER, PROBABILITY_BAND, SCORE_NODATA,
                        WATER_BAND, WATER_NODATA)


class Task:
    """What a task is made of; `LAND_COVER` and `WATER` are the two instances' classes."""

    name: str  # the contract's task: "lulc" | "water"
    extra_label: str  # the optional score output, as errors name it
    holds_confidence = False  # whether its score output is a confidence held at chance level where unfamiliar

    def channels(self, contract: ModelContract) -> int:
        """Score channels the model returns per pixel."""
        raise NotImplementedError

    def output_specs(self, contract: ModelContract, output_path, extra_path) -> list[OutputSpec]:
        """The class raster, then the score raster when ``extra_path`` is set."""
        main, extra_description = self._main_spec(contract, output_path)
        specs = [main]
        if extra_path:
            specs.append(OutputSpec(extra_path, gdal.GDT_Float32, SCORE_NODATA, extra_description, None, "bilinear",
                                    contract.provenance()))
        return specs

    def _main_spec(self, contract: ModelContract, output_path) -> tuple[OutputSpec, str]:
        raise NotImplementedError

    def classes(self, contract: ModelContract, water_threshold: float | None, scores: np.ndarray) -> np.ndarray:
        """Class per pixel of a batch's raw scores (to compare two precisions)."""
        raise NotImplementedError

    def block_results(self, probabilities: np.ndarray, valid: np.ndarray, contract: ModelContract,
                      water_threshold: float | None, unfamiliar: np.ndarray | None):
        """(labels uint8 with nodata where not ``valid``, scores) of one block's blended probabilities."""
        raise NotImplementedError


class _LandCover(Task):
    name, extra_label, holds_confidence = "lulc", "confidence", True

    def channels(self, contract):
        return len(contract.classes)

    def _main_spec(self, contract, output_path):
        return OutputSpec(output_path, gdal.GDT_Byte, LULC_NODATA, CLASSES_BAND,
                          [(c.code, c.name, c.color) for c in contract.classes], "nearest",
                          contract.provenance()), CONFIDENCE_BAND

    def classes(self, contract, water_threshold, scores):
        return scores.argmax(axis=1)

    def block_results(self, probabilities, valid, contract, water_threshold, unfamiliar):
        """``unfamiliar``: pixels whose backscatter lies outside what the model learnt, whose confidence is
        held at chance level (the model is guessing there, however sure its softmax looks)."""
        codes = np.array([c.code for c in contract.classes], dtype=np.uint8)
        labels = np.where(valid, codes[probabilities.argmax(axis=0)], LULC_NODATA).astype(np.uint8)
        scores = probabilities.max(axis=0)
        if unfamiliar is not None:
            scores = np.where(unfamiliar, np.minimum(scores, np.float32(1.0 / len(codes))), scores)
        return labels, scores


class _Water(Task):
    name, extra_label = "water", "probability"

    def channels(self, contract):
        return 1

    def _main_spec(self, contract, output_path):
        water = contract.classes[0]
        return OutputSpec(output_path, gdal.GDT_Byte, WATER_NODATA, WATER_BAND,
                          [NOT_WATER, (1, water.name, water.color)], "nearest",
                          contract.provenance()), PROBABILITY_BAND

    def classes(self, contract, water_threshold, scores):
        return to_probabilities(scores.copy(), contract.output_activation)[:, 0] >= water_threshold

    def block_results(self, probabilities, valid, contract, water_threshold, unfamiliar):
        scores = probabilities[0]
        return np.where(valid, scores >= water_threshold, WATER_NODATA).astype(np.uint8), scores


LAND_COVER, WATER = _LandCover(), _Water()

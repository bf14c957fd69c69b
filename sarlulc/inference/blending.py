"""Blending overlapping tile outputs into per-block probabilities."""

from __future__ import annotations

import numpy as np

from ..rasters.windows import Window

# Weight at the very edge of a tile: above zero so pixels seen by a single tile still count.
EDGE_WEIGHT = 0.05


def blend_weights(tile_size: int) -> np.ndarray:
    """Separable raised-cosine (Hann-like) weights: tile centres dominate, edges fade to EDGE_WEIGHT."""
    ramp = np.sin(np.pi * (np.arange(tile_size) + 0.5) / tile_size) ** 2
    axis = (EDGE_WEIGHT + (1.0 - EDGE_WEIGHT) * ramp).astype(np.float32)
    return np.outer(axis, axis)


def to_probabilities(scores: np.ndarray, activation: str) -> np.ndarray:
    """Raw model scores (N, C, H, W) to probabilities: softmax over C, or sigmoid (in place when
    the scores are float32: they are not used afterwards)."""
    scores = scores.astype(np.float32, copy=False)
    if activation == "sigmoid":
        np.negative(scores, out=scores)
        np.exp(scores, out=scores)
        scores += 1.0
        return np.reciprocal(scores, out=scores)
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


class BlockAccumulator:
    """Weighted sum of the tile probabilities that fall on one output block (or on the part of a
    later block that the tiles of the current one reach, carried to it: `add_carried`)."""

    def __init__(self, block: Window, channels: int, weights: np.ndarray):
        self.block = block
        self.weights = weights
        self.sum = np.zeros((channels, block.height, block.width), np.float32)
        self.weight_sum = np.zeros((block.height, block.width), np.float32)

    def add(self, tile: Window, probabilities: np.ndarray) -> None:
        """Add one tile's (C, T, T) probabilities, keeping only the part on the block."""
        overlap = tile.intersection(self.block)
        if overlap is None:
            return
        in_tile = overlap.slices_in(tile)
        in_block = overlap.slices_in(self.block)
        weights = self.weights[in_tile]
        self.sum[(slice(None),) + in_block] += probabilities[(slice(None),) + in_tile] * weights
        self.weight_sum[in_block] += weights

    def add_carried(self, part: "BlockAccumulator") -> None:
        """Add the sums of ``part``, an accumulator over a window inside this block."""
        in_block = part.block.slices_in(self.block)
        self.sum[(slice(None),) + in_block] += part.sum
        self.weight_sum[in_block] += part.weight_sum

    def probabilities(self) -> np.ndarray:
        """(C, h, w) blended probabilities, normalised in place (call once, after the last tile);
        0 where no tile was run (all-nodata areas)."""
        self.sum /= np.where(self.weight_sum > 0, self.weight_sum, np.float32(1.0))
        return self.sum

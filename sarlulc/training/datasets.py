"""The torch datasets training and pretraining iterate: random crops, validation tiles, unlabelled crops,
each item the normalised model input the plugin's :func:`sarlulc.rasters.reading.prepare_input` makes."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..inference.normalisation import prepare_input
from ..products import LULC_CLASSES
from ..rasters.windows import Window
from .losses import IGNORE_INDEX
from .input_statistics import Normalisation
from .rasters import LabelRaster, ReadOptions, sar_rasters
from .sampling import (FOCUS_CELL, CalibrationJitter, augment, chip_mask, class_cells, crop_weights, label_targets,
                       pick_raster, screen_water_chips, validation_tiles)
from .sources import NODATA_CODE, Scene


MIN_LABELLED_SHARE = 0.05  # a random crop with fewer labelled pixels is redrawn (a few times)


class _EpochSeeded(Dataset):
    """Random crops whose randomness depends only on (seed, epoch, index): reproducible, and
    different on every DDP rank and DataLoader worker without shared state."""

    def __init__(self, samples_per_epoch: int, seed: int):
        self.samples_per_epoch, self.seed, self.epoch = samples_per_epoch, seed, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return self.samples_per_epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])


def _read_padded(read, width: int, height: int, x: int, y: int, size: int, fill):
    """``read(window)`` of the part of (x, y, size, size) inside the raster, padded with ``fill``."""
    inside = Window(x, y, size, size).intersection(Window(0, 0, width, height))
    arrays = read(inside)
    out = []
    for array, value in zip(arrays, fill):
        padded = np.full((size, size), value, dtype=array.dtype)
        padded[inside.y - y:inside.y_end - y, inside.x - x:inside.x_end - x] = array
        out.append(padded)
    return out


class SegmentationCrops(_EpochSeeded):
    """Random ``crop_size`` crops of SAR/label pairs with flips, rot90 and calibration jitter, for fine-tuning.
    ``facts``: :meth:`SarRaster.facts` by SAR path, so the rasters need not be read again.
    ``balanced_share``: share of crops centred on a pixel of a class drawn uniformly among the classes
    present (rare classes, e.g. water in a dry scene, are seen as often as common ones); the others are
    uniform. ``screen``: leave out the water labels of chips :func:`screen_water_chips` rejects.
    ``shares``: crop share per data profile (`profile_shares`; default: equal). ``channels``: land-cover
    classes, codes 1..channels (a model's own classes, trained for an area; default the legend's)."""

    def __init__(self, pairs: list[Scene], normalisation: Normalisation, crop_size: int, samples_per_epoch: int,
                 task: str, seed: int = 0, jitter: CalibrationJitter = CalibrationJitter(),
                 options: ReadOptions = ReadOptions(), facts: dict | None = None, balanced_share: float = 0.0,
                 screen: bool = True, shares: dict[str, float] | None = None, channels: int = len(LULC_CLASSES)):
        super().__init__(samples_per_epoch, seed)
        self.sars = sar_rasters(pairs, options, facts)
        self.labels = [LabelRaster(scene.label, scene.profile, sar) for scene, sar in zip(pairs, self.sars)]
        self.weights = crop_weights(self.sars, shares)
        self.normalisation, self.crop_size, self.task, self.jitter = normalisation, crop_size, task, jitter
        self.kept_chips = [screen_water_chips(sar, label) if screen else None
                           for sar, label in zip(self.sars, self.labels)]
        self.balanced_share = balanced_share
        self.cells = [class_cells(label, task, kept, sar.profile.label_chip, channels=channels) if balanced_share
                      else None
                      for sar, label, kept in zip(self.sars, self.labels, self.kept_chips)]
        self.present = [c for c in range(len(self.cells[0])) if any(cells[c].size for cells in self.cells)] \
            if balanced_share and self.cells else []

    def read(self, index: int, x: int, y: int, rng: np.random.Generator | None = None):
        sar, label = self.sars[index], self.labels[index]
        db, valid = _read_padded(sar.read_db, sar.width, sar.height, x, y, self.crop_size, (0.0, False))
        if rng is not None:
            db = self.jitter.apply(db, sar.scene, rng)
        (codes,) = _read_padded(lambda w: (label.read(w),), sar.width, sar.height, x, y, self.crop_size, (NODATA_CODE,))
        target = label_targets(codes, valid, self.task)
        if self.kept_chips[index] is not None:
            target[~chip_mask(self.kept_chips[index], sar.profile.label_chip, x, y, *target.shape[::-1])] = IGNORE_INDEX
        return prepare_input(db, valid, self.normalisation, sar.scene), target

    def _uniform_origin(self, rng: np.random.Generator) -> tuple[int, int, int]:
        index = pick_raster(self.weights, rng)
        sar = self.sars[index]
        return (index, int(rng.integers(max(1, sar.width - self.crop_size + 1))),
                int(rng.integers(max(1, sar.height - self.crop_size + 1))))

    def _balanced_origin(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """A crop holding a random labelled pixel cell of a class drawn uniformly among those present."""
        channel = self.present[int(rng.integers(len(self.present)))]
        index = pick_raster(self.weights * [cells[channel].size > 0 for cells in self.cells], rng)
        sar = self.sars[index]
        cell_y, cell_x = divmod(int(rng.choice(self.cells[index][channel])), -(-sar.width // FOCUS_CELL))
        x = cell_x * FOCUS_CELL + int(rng.integers(FOCUS_CELL)) - int(rng.integers(self.crop_size))
        y = cell_y * FOCUS_CELL + int(rng.integers(FOCUS_CELL)) - int(rng.integers(self.crop_size))
        return (index, int(np.clip(x, 0, max(0, sar.width - self.crop_size))),
                int(np.clip(y, 0, max(0, sar.height - self.crop_size))))

    def __getitem__(self, i):
        rng = self.rng(i)
        balanced = bool(self.present) and rng.random() < self.balanced_share
        for _ in range(10):
            index, x, y = self._balanced_origin(rng) if balanced else self._uniform_origin(rng)
            image, target = self.read(index, x, y, rng)
            if np.mean(target != IGNORE_INDEX) >= MIN_LABELLED_SHARE:
                break
        image, target = augment([image, target], rng)
        return torch.from_numpy(image)[None], torch.from_numpy(target)


class SegmentationTiles(SegmentationCrops):
    """Validation: the tiles of :func:`validation_tiles` (or ``tiles``, as it returned them), every
    labelled pixel scored once; ``max_tiles`` keeps a random subset, the same for a given ``seed``."""

    def __init__(self, pairs: list[Scene], normalisation: Normalisation, tile_size: int, task: str,
                 options: ReadOptions = ReadOptions(), facts: dict | None = None, tiles: list | None = None,
                 max_tiles: int | None = None, seed: int = 0):
        super().__init__(pairs, normalisation, tile_size, 0, task, options=options, facts=facts, screen=False)
        self.tiles = [tuple(tile) for tile in tiles] if tiles is not None else validation_tiles(self.labels, tile_size)
        if max_tiles is not None and len(self.tiles) > max_tiles:
            keep = np.random.default_rng(seed).choice(len(self.tiles), max_tiles, replace=False)
            self.tiles = [self.tiles[i] for i in sorted(keep)]

    def __len__(self):
        return len(self.tiles)

    def __getitem__(self, i):
        index, x, y, skip_x, skip_y = self.tiles[i]
        image, target = self.read(index, x, y)
        target[:skip_y] = IGNORE_INDEX  # scored by the tile above / on the left
        target[:, :skip_x] = IGNORE_INDEX
        return torch.from_numpy(image)[None], torch.from_numpy(target)


class UnlabelledCrops(_EpochSeeded):
    """Random crops of unlabelled SAR for MixMAE: (normalised image, valid mask)."""

    def __init__(self, scenes: list[Scene], normalisation: Normalisation, crop_size: int, samples_per_epoch: int,
                 seed: int = 0, options: ReadOptions = ReadOptions(), facts: dict | None = None):
        super().__init__(samples_per_epoch, seed)
        self.sars = sar_rasters(scenes, options, facts)
        self.weights = crop_weights(self.sars)
        self.normalisation, self.crop_size = normalisation, crop_size

    def __getitem__(self, i):
        rng = self.rng(i)
        for _ in range(10):
            sar = self.sars[pick_raster(self.weights, rng)]
            x = int(rng.integers(max(1, sar.width - self.crop_size + 1)))
            y = int(rng.integers(max(1, sar.height - self.crop_size + 1)))
            db, valid = _read_padded(sar.read_db, sar.width, sar.height, x, y, self.crop_size, (0.0, False))
            if valid.mean() >= MIN_LABELLED_SHARE:
                break
        image = prepare_input(db, valid, self.normalisation, sar.scene)
        image, valid = augment([image, valid], rng)
        return torch.from_numpy(image)[None], torch.from_numpy(valid)[None]

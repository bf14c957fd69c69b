"""Training data: GeoTIFF SAR/label pairs read window by window with GDAL (nothing cached in RAM).

Naming: a scene is ``<name>_sar.tif`` (one band: sigma0 in dB, linear power or ALOS-2 DN, units
detected as the plugin does) next to ``<name>_label.tif`` (uint8 class codes of model/classes.py,
0 = nodata). Sources are folders (all ``*_sar.tif`` with their label) or list files (one SAR path
per line, optionally followed by its label path; relative paths are relative to the list file).

Model input is made by the plugin's own :func:`model.inference.reader.prepare_input` (clip,
standardise, nodata -> 0), so training and inference normalise identically.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
from osgeo import gdal
from torch.utils.data import Dataset

from ..classes import LULC_CLASSES, WATER_CLASSES
from ..inference.reader import BandReader, open_raster, prepare_input
from ..inference.sar_input import detect_band_units, sample_valid_values, to_db, valid_mask
from ..inference.windows import Window
from .losses import IGNORE_INDEX

gdal.UseExceptions()

SAR_SUFFIX = "_sar.tif"
LABEL_SUFFIX = "_label.tif"
NODATA_CODE = 0
WATER_CODE = WATER_CLASSES[0][0]
MIN_LABELLED_SHARE = 0.05  # a random crop with fewer labelled pixels is redrawn (a few times)


@dataclass(frozen=True)
class Normalisation:
    """The contract's input normalisation (attribute names as in ModelContract, for prepare_input)."""

    norm_clip: tuple[float, float] = (-35.0, 5.0)
    norm_mean: float = -12.0
    norm_std: float = 6.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Normalisation":
        return cls(tuple(data["norm_clip"]), float(data["norm_mean"]), float(data["norm_std"]))


def _list_file_entries(list_file: pathlib.Path) -> list[list[pathlib.Path]]:
    entries = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) > 2:
            raise ValueError(f"{list_file}:{number}: expected 'SAR_PATH [LABEL_PATH]', got {line!r}")
        entries.append([p if p.is_absolute() else list_file.parent / p for p in map(pathlib.Path, parts)])
    return entries


def find_pairs(sources) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """(sar, label) paths from folders and list files; every SAR file must have its label."""
    pairs = []
    for source in map(pathlib.Path, sources):
        if source.is_dir():
            entries = [[sar] for sar in sorted(source.glob(f"*{SAR_SUFFIX}"))]
        elif source.is_file():
            entries = _list_file_entries(source)
        else:
            raise FileNotFoundError(f"Training source '{source}' is neither a folder nor a list file.")
        if not entries:
            raise FileNotFoundError(f"No '*{SAR_SUFFIX}' file in '{source}'. Name scenes <name>{SAR_SUFFIX} "
                                    f"with labels <name>{LABEL_SUFFIX}.")
        for entry in entries:
            sar = entry[0]
            label = entry[1] if len(entry) == 2 else _label_path(sar)
            for path in (sar, label):
                if not path.is_file():
                    raise FileNotFoundError(f"Missing file '{path}' (listed or expected from '{source}'). "
                                            f"Each <name>{SAR_SUFFIX} needs a <name>{LABEL_SUFFIX}.")
            pairs.append((sar, label))
    return pairs


def _label_path(sar: pathlib.Path) -> pathlib.Path:
    if not sar.name.endswith(SAR_SUFFIX):
        raise ValueError(f"'{sar}' does not end in '{SAR_SUFFIX}'; give its label path on the same line.")
    return sar.with_name(sar.name[:-len(SAR_SUFFIX)] + LABEL_SUFFIX)


def find_images(sources) -> list[pathlib.Path]:
    """Unlabelled SAR GeoTIFFs for pretraining: folders (``*.tif`` except labels) or list files."""
    images = []
    for source in map(pathlib.Path, sources):
        if source.is_dir():
            found = [p for p in sorted(source.glob("*.tif")) if not p.name.endswith(LABEL_SUFFIX)]
        elif source.is_file():
            found = [entry[0] for entry in _list_file_entries(source)]
        else:
            raise FileNotFoundError(f"Pretraining source '{source}' is neither a folder nor a list file.")
        if not found:
            raise FileNotFoundError(f"No SAR GeoTIFF (*.tif) in '{source}'.")
        images += found
    return images


class SarRaster:
    """One SAR GeoTIFF: units detected once; windows read as (dB, valid). Re-opened per process."""

    def __init__(self, path):
        self.path = str(path)
        dataset = open_raster(self.path)
        self.width, self.height = dataset.RasterXSize, dataset.RasterYSize
        self.units, _ = detect_band_units(dataset, 1)
        self._reader, self._pid = None, None

    def _band_reader(self) -> BandReader:
        if self._pid != os.getpid():  # GDAL handles must not cross a DataLoader fork
            self._reader, self._pid = BandReader(open_raster(self.path), 1, self.path), os.getpid()
        return self._reader

    def read_db(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        reader = self._band_reader()
        raw, valid = reader.read(window)
        valid &= valid_mask(raw, reader.nodata, self.units)
        return to_db(raw, self.units), valid

    def sample_db(self) -> np.ndarray:
        dataset = open_raster(self.path)
        raw = sample_valid_values(dataset, 1)
        return to_db(raw[valid_mask(raw, None, self.units)], self.units)

    def __getstate__(self):
        return {**self.__dict__, "_reader": None, "_pid": None}


def compute_normalisation(rasters: list[SarRaster], clip=(-35.0, 5.0)) -> Normalisation:
    """Mean and std of the clipped dB values, sampled (3 x 3 windows) from every raster."""
    values = np.clip(np.concatenate([r.sample_db() for r in rasters]), *clip)
    if values.size == 0:
        raise ValueError("No valid SAR pixel found in the training rasters; check their nodata values.")
    return Normalisation((float(clip[0]), float(clip[1])), float(values.mean()), float(max(values.std(), 1e-3)))


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


def label_targets(codes: np.ndarray, sar_valid: np.ndarray, task: str) -> np.ndarray:
    """Class codes -> training targets: lulc channel index (code - 1); water 1/0; ignore = nodata."""
    ignore = (codes == NODATA_CODE) | ~sar_valid
    if task == "water":
        target = (codes == WATER_CODE).astype(np.int64)
    else:
        target = codes.astype(np.int64) - 1
    target[ignore] = IGNORE_INDEX
    return target


class LabelRaster:
    """One label GeoTIFF of class codes, read window by window; re-opened per process."""

    def __init__(self, path):
        self.path = str(path)
        dataset = open_raster(self.path)
        self.width, self.height = dataset.RasterXSize, dataset.RasterYSize
        self._dataset, self._pid = None, None

    def read(self, window: Window) -> np.ndarray:
        if self._pid != os.getpid():  # GDAL handles must not cross a DataLoader fork
            self._dataset, self._pid = open_raster(self.path), os.getpid()
        return self._dataset.GetRasterBand(1).ReadAsArray(window.x, window.y, window.width, window.height)

    def __getstate__(self):
        return {**self.__dict__, "_dataset": None, "_pid": None}


def label_histogram(label_paths, num_codes: int = len(LULC_CLASSES) + 1, rows_per_read: int = 1024) -> np.ndarray:
    """Pixel count per class code 0..num_codes-1 over whole label rasters (read in strips)."""
    counts = np.zeros(num_codes, dtype=np.int64)
    for path in label_paths:
        dataset = open_raster(path)  # keep a reference: a band outlives its dataset only as a crash
        band = dataset.GetRasterBand(1)
        for y in range(0, band.YSize, rows_per_read):
            strip = band.ReadAsArray(0, y, band.XSize, min(rows_per_read, band.YSize - y))
            found = np.bincount(strip.ravel(), minlength=num_codes)
            if found.size > num_codes:
                bad = int(np.flatnonzero(found[num_codes:])[0] + num_codes)
                raise ValueError(f"Label raster '{path}' holds class code {bad}, outside the legend 0..{num_codes - 1} "
                                 f"of model/classes.py (0 = nodata).")
            counts += found
    return counts


def task_histogram(counts: np.ndarray, task: str) -> np.ndarray:
    """Per-channel pixel counts: lulc codes 1..9; water (not water, water)."""
    if task == "water":
        return np.array([counts[1:].sum() - counts[WATER_CODE], counts[WATER_CODE]])
    return counts[1:]


def augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip / 90-degree rotation applied to every array (SAR has no 'up')."""
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = []
    for array in arrays:
        array = np.rot90(array, turns)
        out.append(np.ascontiguousarray(np.fliplr(array) if flip else array))
    return out


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


def _pick_raster(sizes: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(len(sizes), p=sizes / sizes.sum()))


class SegmentationCrops(_EpochSeeded):
    """Random ``crop_size`` crops of SAR/label pairs with flips and rot90, for fine-tuning."""

    def __init__(self, pairs, normalisation: Normalisation, crop_size: int, samples_per_epoch: int,
                 task: str, seed: int = 0):
        super().__init__(samples_per_epoch, seed)
        self.sars = [SarRaster(sar) for sar, _ in pairs]
        self.labels = [LabelRaster(label) for _, label in pairs]
        for sar, label in zip(self.sars, self.labels):
            if (sar.width, sar.height) != (label.width, label.height):
                raise ValueError(f"'{sar.path}' is {sar.width} x {sar.height} px but its label '{label.path}' is "
                                 f"{label.width} x {label.height}; a pair must share one pixel grid.")
        self.sizes = np.array([s.width * s.height for s in self.sars], dtype=np.float64)
        self.normalisation, self.crop_size, self.task = normalisation, crop_size, task

    def read(self, index: int, x: int, y: int):
        sar, label = self.sars[index], self.labels[index]
        db, valid = _read_padded(sar.read_db, sar.width, sar.height, x, y, self.crop_size, (0.0, False))
        (codes,) = _read_padded(lambda w: (label.read(w),), sar.width, sar.height, x, y, self.crop_size, (NODATA_CODE,))
        return prepare_input(db, valid, self.normalisation), label_targets(codes, valid, self.task)

    def __getitem__(self, i):
        rng = self.rng(i)
        for _ in range(10):
            index = _pick_raster(self.sizes, rng)
            sar = self.sars[index]
            x = int(rng.integers(max(1, sar.width - self.crop_size + 1)))
            y = int(rng.integers(max(1, sar.height - self.crop_size + 1)))
            image, target = self.read(index, x, y)
            if np.mean(target != IGNORE_INDEX) >= MIN_LABELLED_SHARE:
                break
        image, target = augment([image, target], rng)
        return torch.from_numpy(image)[None], torch.from_numpy(target)


class SegmentationTiles(SegmentationCrops):
    """Validation: every raster cut into a fixed grid of tiles (last row/column flush with the edge)."""

    def __init__(self, pairs, normalisation: Normalisation, tile_size: int, task: str):
        super().__init__(pairs, normalisation, tile_size, 0, task)
        self.tiles = [(index, x, y) for index, sar in enumerate(self.sars)
                      for y in _grid(sar.height, tile_size) for x in _grid(sar.width, tile_size)]

    def __len__(self):
        return len(self.tiles)

    def __getitem__(self, i):
        image, target = self.read(*self.tiles[i])
        return torch.from_numpy(image)[None], torch.from_numpy(target)


def _grid(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    return sorted(set(list(range(0, length - tile, tile)) + [length - tile]))


class UnlabelledCrops(_EpochSeeded):
    """Random crops of unlabelled SAR for MixMAE: (normalised image, valid mask)."""

    def __init__(self, paths, normalisation: Normalisation, crop_size: int, samples_per_epoch: int, seed: int = 0):
        super().__init__(samples_per_epoch, seed)
        self.sars = [SarRaster(path) for path in paths]
        self.sizes = np.array([s.width * s.height for s in self.sars], dtype=np.float64)
        self.normalisation, self.crop_size = normalisation, crop_size

    def __getitem__(self, i):
        rng = self.rng(i)
        for _ in range(10):
            sar = self.sars[_pick_raster(self.sizes, rng)]
            x = int(rng.integers(max(1, sar.width - self.crop_size + 1)))
            y = int(rng.integers(max(1, sar.height - self.crop_size + 1)))
            db, valid = _read_padded(sar.read_db, sar.width, sar.height, x, y, self.crop_size, (0.0, False))
            if valid.mean() >= MIN_LABELLED_SHARE:
                break
        image, valid = augment([prepare_input(db, valid, self.normalisation), valid], rng)
        return torch.from_numpy(image)[None], torch.from_numpy(valid)[None]

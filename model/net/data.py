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
from typing import NamedTuple

import numpy as np
import torch
from osgeo import gdal
from torch.utils.data import Dataset

from ..classes import LULC_CLASSES, WATER_CLASSES
from ..inference.metadata import NORM_FIXED, NORM_SCENE
from ..inference.reader import BandReader, SceneStatistics, open_raster, prepare_input
from ..inference.sar_input import InputUnits, detect_band_units, sample_valid_values, to_db, valid_mask
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
    norm_mode: str = NORM_FIXED

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Normalisation":
        return cls(tuple(data["norm_clip"]), float(data["norm_mean"]), float(data["norm_std"]),
                   data.get("norm_mode", NORM_FIXED))


SCENE_CLIP_DB = (-25.0, 20.0)  # dB relative to the scene median: calm water to strong double bounce


@dataclass(frozen=True)
class DataProfile:
    """How to read one published data set as SAR LULC training pairs, without converting the files.

    ``units``: the SAR band's units (None: detected); ``sar_invalid``: further SAR values that are not
    measurements; ``label_map``: raw label value -> class code (unlisted values are nodata);
    ``water_only``: the labels only say water / not water (NOT_WATER_CODE), usable by the water task only.
    """

    units: InputUnits | None = None
    sar_invalid: tuple[float, ...] = ()
    label_map: dict[int, int] | None = None
    water_only: bool = False
    db_stretch: tuple[float, float] | None = None  # assumed dB of raw values 0 and 255 (units dB)


NOT_WATER_CODE = 255  # "valid, not water, land-cover class unknown" in water-only labels
PROFILES = {
    "sarlulc": DataProfile(),
    # ETCI 2021 flood chips (../shared/data/etci2021): 8-bit stretched Sentinel-1 VV brightness, 0 = no chip,
    # 255 = saturated white chips (no information); labels 0 not water, 1 flood, 2 permanent water, 255 nodata.
    # The stretch is not published: the brightness is read as dB through a nominal linear stretch of
    # -25..0 dB (our assumption; water ~ -21, fields ~ -11 dB, as is typical of VV). Scene normalisation
    # makes the offset of that guess irrelevant, gain jitter covers part of the error in its slope.
    "etci2021": DataProfile(units=InputUnits.DB, sar_invalid=(255.0,),
                            label_map={0: NOT_WATER_CODE, 1: WATER_CLASSES[0][0], 2: WATER_CLASSES[0][0]},
                            water_only=True, db_stretch=(-25.0, 0.0)),
}


class Scene(NamedTuple):
    """One training raster: its SAR file, its label file (None for pretraining) and its data profile."""

    sar: pathlib.Path
    label: pathlib.Path | None
    profile: str = "sarlulc"


def _list_file_entries(list_file: pathlib.Path) -> list[tuple[list[pathlib.Path], str]]:
    """(paths, profile) per line of 'SAR_PATH [LABEL_PATH] [profile=NAME]'."""
    entries = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        options = dict(part.split("=", 1) for part in parts if "=" in part)
        paths = [part for part in parts if "=" not in part]
        if len(paths) > 2 or set(options) - {"profile"}:
            raise ValueError(f"{list_file}:{number}: expected 'SAR_PATH [LABEL_PATH] [profile=NAME]', got {line!r}")
        profile = options.get("profile", "sarlulc")
        if profile not in PROFILES:
            raise ValueError(f"{list_file}:{number}: unknown profile '{profile}'; known: {', '.join(PROFILES)}")
        entries.append(([p if p.is_absolute() else list_file.parent / p for p in map(pathlib.Path, paths)], profile))
    return entries


def find_pairs(sources) -> list[Scene]:
    """Labelled scenes from folders and list files; every SAR file must have its label."""
    pairs = []
    for source in map(pathlib.Path, sources):
        if source.is_dir():
            entries = [([sar], "sarlulc") for sar in sorted(source.glob(f"*{SAR_SUFFIX}"))]
        elif source.is_file():
            entries = _list_file_entries(source)
        else:
            raise FileNotFoundError(f"Training source '{source}' is neither a folder nor a list file.")
        if not entries:
            raise FileNotFoundError(f"No '*{SAR_SUFFIX}' file in '{source}'. Name scenes <name>{SAR_SUFFIX} "
                                    f"with labels <name>{LABEL_SUFFIX}.")
        for paths, profile in entries:
            sar = paths[0]
            label = paths[1] if len(paths) == 2 else _label_path(sar)
            for path in (sar, label):
                if not path.is_file():
                    raise FileNotFoundError(f"Missing file '{path}' (listed or expected from '{source}'). "
                                            f"Each <name>{SAR_SUFFIX} needs a <name>{LABEL_SUFFIX}.")
            pairs.append(Scene(sar, label, profile))
    return pairs


def _label_path(sar: pathlib.Path) -> pathlib.Path:
    if not sar.name.endswith(SAR_SUFFIX):
        raise ValueError(f"'{sar}' does not end in '{SAR_SUFFIX}'; give its label path on the same line.")
    return sar.with_name(sar.name[:-len(SAR_SUFFIX)] + LABEL_SUFFIX)


def find_images(sources) -> list[Scene]:
    """Unlabelled SAR GeoTIFFs for pretraining: folders (``*.tif`` except labels) or list files."""
    images = []
    for source in map(pathlib.Path, sources):
        if source.is_dir():
            found = [Scene(p, None) for p in sorted(source.glob("*.tif")) if not p.name.endswith(LABEL_SUFFIX)]
        elif source.is_file():
            found = [Scene(paths[0], None, profile) for paths, profile in _list_file_entries(source)]
        else:
            raise FileNotFoundError(f"Pretraining source '{source}' is neither a folder nor a list file.")
        if not found:
            raise FileNotFoundError(f"No SAR GeoTIFF (*.tif) in '{source}'.")
        images += found
    return images


class SarRaster:
    """One SAR raster: units (detected unless its profile says) and scene statistics computed once;
    windows read as (dB, valid). Rasters without a CRS are fine for training. Re-opened per process."""

    def __init__(self, path, profile: str = "sarlulc"):
        self.path = str(path)
        self.profile_name, self.profile = profile, PROFILES[profile]
        dataset = open_raster(self.path)
        self.width, self.height = dataset.RasterXSize, dataset.RasterYSize
        self.units = self.profile.units or detect_band_units(dataset, 1)[0]
        self._reader, self._pid = None, None
        self.scene = SceneStatistics.of(self.sample_db())

    def _band_reader(self) -> BandReader:
        if self._pid != os.getpid():  # GDAL handles must not cross a DataLoader fork
            self._reader, self._pid = (BandReader(open_raster(self.path), 1, self.path, require_crs=False),
                                       os.getpid())
        return self._reader

    def _valid(self, raw: np.ndarray, nodata) -> np.ndarray:
        valid = valid_mask(raw, nodata, self.units)
        for value in self.profile.sar_invalid:
            valid &= raw != value
        return valid

    def read_raw(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(values as stored, valid) of ``window``; valid also excludes the profile's invalid values."""
        reader = self._band_reader()
        raw, valid = reader.read(window)
        valid &= self._valid(raw, reader.nodata)
        return raw, valid

    def read_db(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        raw, valid = self.read_raw(window)
        return self._to_db(raw), valid

    def sample_db(self) -> np.ndarray:
        dataset = open_raster(self.path)
        raw = sample_valid_values(dataset, 1)
        return self._to_db(raw[self._valid(raw, None)])

    def _to_db(self, raw: np.ndarray) -> np.ndarray:
        if self.profile.db_stretch:
            low, high = self.profile.db_stretch
            return (low + raw.astype(np.float32) * np.float32((high - low) / 255.0)).astype(np.float32)
        return to_db(raw, self.units)

    def __getstate__(self):
        return {**self.__dict__, "_reader": None, "_pid": None}


def compute_normalisation(rasters: list[SarRaster], clip=(-35.0, 5.0), mode: str = NORM_FIXED) -> Normalisation:
    """Mean and std of the clipped dB values (relative to each scene's median in scene mode),
    sampled over every raster."""
    samples = [r.sample_db() - (r.scene.median if mode == NORM_SCENE else 0.0) for r in rasters]
    values = np.clip(np.concatenate(samples), *clip)
    if values.size == 0:
        raise ValueError("No valid SAR pixel found in the training rasters; check their nodata values.")
    return Normalisation((float(clip[0]), float(clip[1])), float(values.mean()), float(max(values.std(), 1e-3)), mode)


def normalisation_for(mode: str, scenes: list[Scene]) -> Normalisation:
    """The input normalisation of a new model from its training rasters: fixed, or per scene."""
    rasters = [SarRaster(scene.sar, scene.profile) for scene in scenes]
    return compute_normalisation(rasters, SCENE_CLIP_DB if mode == NORM_SCENE else (-35.0, 5.0), mode)


def input_distribution(rasters: list[SarRaster], jitter: "CalibrationJitter") -> dict:
    """What calibrated backscatter the model saw in training (ONNX key ``input_distribution``, used by
    the plugin's out-of-distribution warning): range of scene medians widened by the calibration
    jitter, and percentiles of the pooled dB sample. Rasters read through an assumed stretch
    (``db_stretch``) are left out: their absolute level is a guess."""
    calibrated = [r for r in rasters if not r.profile.db_stretch]
    if not calibrated:
        return {}
    medians = [r.scene.median for r in calibrated]
    widen = jitter.level_db
    pooled = np.concatenate([r.sample_db() for r in calibrated])
    percentiles = np.percentile(pooled, [1, 50, 99])
    return {"scene_median_db": [round(min(medians) - widen, 2), round(max(medians) + widen, 2)],
            "pixel_db_percentiles": {key: round(float(value), 2) for key, value in zip(("1", "50", "99"), percentiles)}}


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


def _lookup_table(label_map: dict[int, int] | None) -> np.ndarray | None:
    """uint8 lookup raw label value -> class code (unlisted values -> nodata), or None for identity."""
    if label_map is None:
        return None
    table = np.full(256, NODATA_CODE, dtype=np.uint8)
    for raw, code in label_map.items():
        table[raw] = code
    return table


class LabelRaster:
    """One label raster of class codes (raw values mapped by its profile), read window by window;
    re-opened per process."""

    def __init__(self, path, profile: str = "sarlulc"):
        self.path = str(path)
        dataset = open_raster(self.path)
        self.width, self.height = dataset.RasterXSize, dataset.RasterYSize
        self.lookup = _lookup_table(PROFILES[profile].label_map)
        self._dataset, self._pid = None, None

    def read(self, window: Window) -> np.ndarray:
        if self._pid != os.getpid():  # GDAL handles must not cross a DataLoader fork
            self._dataset, self._pid = open_raster(self.path), os.getpid()
        codes = self._dataset.GetRasterBand(1).ReadAsArray(window.x, window.y, window.width, window.height)
        return codes if self.lookup is None else self.lookup[codes]

    def __getstate__(self):
        return {**self.__dict__, "_dataset": None, "_pid": None}


def label_histogram(scenes: list[Scene], task: str, rows_per_read: int = 1024) -> np.ndarray:
    """Pixel count per class code 0..255 over whole label rasters (read in strips, mapped by each
    scene's profile); refuses codes outside the legend and water-only labels for the lulc task."""
    legend_end = len(LULC_CLASSES) + 1
    total = np.zeros(256, dtype=np.int64)
    for scene in scenes:
        if task != "water" and PROFILES[scene.profile].water_only:
            raise ValueError(f"'{scene.label}' (profile {scene.profile}) only says water / not water; it can train "
                             f"the water task only.")
        label = LabelRaster(scene.label, scene.profile)
        counts = np.zeros(256, dtype=np.int64)
        for y in range(0, label.height, rows_per_read):
            strip = label.read(Window(0, y, label.width, min(rows_per_read, label.height - y)))
            counts += np.bincount(strip.ravel(), minlength=256)[:256]
        allowed = np.zeros(256, bool)
        allowed[:legend_end] = True
        allowed[NOT_WATER_CODE] = PROFILES[scene.profile].water_only
        if counts[~allowed].any():
            bad = ", ".join(str(code) for code in np.flatnonzero(counts * ~allowed)[:10])
            raise ValueError(f"Label raster '{scene.label}' holds class code(s) {bad}, outside the legend "
                             f"0..{legend_end - 1} of model/classes.py (0 = nodata).")
        total += counts
    return total


def task_histogram(counts: np.ndarray, task: str) -> np.ndarray:
    """Per-channel pixel counts: lulc codes 1..9; water (not water, water)."""
    if task == "water":
        return np.array([counts[1:].sum() - counts[WATER_CODE], counts[WATER_CODE]])
    return counts[1:len(LULC_CLASSES) + 1]


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


def _pick_raster(weights: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def _pick_weights(sars: list[SarRaster]) -> np.ndarray:
    """Crop-drawing weights: each data profile (e.g. simulated scenes, ETCI) gets an equal share,
    and within a profile a raster gets a share proportional to its area."""
    area = np.array([s.width * s.height for s in sars], dtype=np.float64)
    profiles = [s.profile_name for s in sars]
    group_area = {profile: sum(a for a, p in zip(area, profiles) if p == profile) for profile in profiles}
    return np.array([a / group_area[p] for a, p in zip(area, profiles)]) / len(group_area)


class CalibrationJitter(NamedTuple):
    """Random per-crop calibration error, so the model does not learn one absolute level: an offset
    of up to ``level_db`` dB (uniform) and a contrast gain of up to exp(+-``gain``) around the scene
    median. 0 = off."""

    level_db: float = 0.0
    gain: float = 0.0

    def apply(self, db: np.ndarray, scene: SceneStatistics, rng: np.random.Generator) -> np.ndarray:
        if not (self.level_db or self.gain):
            return db
        offset = rng.uniform(-self.level_db, self.level_db)
        gain = np.exp(rng.uniform(-self.gain, self.gain))
        return ((db - scene.median) * gain + scene.median + offset).astype(np.float32)


class SegmentationCrops(_EpochSeeded):
    """Random ``crop_size`` crops of SAR/label pairs with flips, rot90 and calibration jitter, for fine-tuning."""

    def __init__(self, pairs: list[Scene], normalisation: Normalisation, crop_size: int, samples_per_epoch: int,
                 task: str, seed: int = 0, jitter: CalibrationJitter = CalibrationJitter()):
        super().__init__(samples_per_epoch, seed)
        self.sars = [SarRaster(scene.sar, scene.profile) for scene in pairs]
        self.labels = [LabelRaster(scene.label, scene.profile) for scene in pairs]
        for sar, label in zip(self.sars, self.labels):
            if (sar.width, sar.height) != (label.width, label.height):
                raise ValueError(f"'{sar.path}' is {sar.width} x {sar.height} px but its label '{label.path}' is "
                                 f"{label.width} x {label.height}; a pair must share one pixel grid.")
        self.weights = _pick_weights(self.sars)
        self.normalisation, self.crop_size, self.task, self.jitter = normalisation, crop_size, task, jitter

    def read(self, index: int, x: int, y: int, rng: np.random.Generator | None = None):
        sar, label = self.sars[index], self.labels[index]
        db, valid = _read_padded(sar.read_db, sar.width, sar.height, x, y, self.crop_size, (0.0, False))
        if rng is not None:
            db = self.jitter.apply(db, sar.scene, rng)
        (codes,) = _read_padded(lambda w: (label.read(w),), sar.width, sar.height, x, y, self.crop_size, (NODATA_CODE,))
        return prepare_input(db, valid, self.normalisation, sar.scene), label_targets(codes, valid, self.task)

    def __getitem__(self, i):
        rng = self.rng(i)
        for _ in range(10):
            index = _pick_raster(self.weights, rng)
            sar = self.sars[index]
            x = int(rng.integers(max(1, sar.width - self.crop_size + 1)))
            y = int(rng.integers(max(1, sar.height - self.crop_size + 1)))
            image, target = self.read(index, x, y, rng)
            if np.mean(target != IGNORE_INDEX) >= MIN_LABELLED_SHARE:
                break
        image, target = augment([image, target], rng)
        return torch.from_numpy(image)[None], torch.from_numpy(target)


class SegmentationTiles(SegmentationCrops):
    """Validation: every raster cut into a fixed grid of tiles (last row/column flush with the edge)."""

    def __init__(self, pairs: list[Scene], normalisation: Normalisation, tile_size: int, task: str):
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

    def __init__(self, scenes: list[Scene], normalisation: Normalisation, crop_size: int, samples_per_epoch: int,
                 seed: int = 0):
        super().__init__(samples_per_epoch, seed)
        self.sars = [SarRaster(scene.sar, scene.profile) for scene in scenes]
        self.weights = _pick_weights(self.sars)
        self.normalisation, self.crop_size = normalisation, crop_size

    def __getitem__(self, i):
        rng = self.rng(i)
        for _ in range(10):
            sar = self.sars[_pick_raster(self.weights, rng)]
            x = int(rng.integers(max(1, sar.width - self.crop_size + 1)))
            y = int(rng.integers(max(1, sar.height - self.crop_size + 1)))
            db, valid = _read_padded(sar.read_db, sar.width, sar.height, x, y, self.crop_size, (0.0, False))
            if valid.mean() >= MIN_LABELLED_SHARE:
                break
        image = prepare_input(db, valid, self.normalisation, sar.scene)
        image, valid = augment([image, valid], rng)
        return torch.from_numpy(image)[None], torch.from_numpy(valid)[None]

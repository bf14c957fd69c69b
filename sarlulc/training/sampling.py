"""What training draws and scores: crop weights per data profile, class-balanced crop centres, water
chips screened against their SAR, validation tiles, training targets and class counts, augmentation."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..products import LULC_CLASSES
from ..inference.normalisation import SceneStatistics
from ..rasters.windows import Window
from .losses import IGNORE_INDEX
from .rasters import LabelRaster, SarRaster
from .sources import NODATA_CODE, NOT_WATER_CODE, PROFILES, WATER_CODE, Scene


FOCUS_CELL = 32  # px: grid on which class-balanced crops find the pixels of a class

# A chip's water label is kept for training only if its water is this much darker than its land (median dB).
WATER_LABEL_CONTRAST_DB = 5.0

CHIP_MIN_PIXELS = 200  # fewer labelled water (land) pixels than this: the chip counts as dry (all water)


def label_targets(codes: np.ndarray, sar_valid: np.ndarray, task: str) -> np.ndarray:
    """Class codes -> training targets: lulc channel index (code - 1); water 1/0; ignore = nodata."""
    ignore = (codes == NODATA_CODE) | ~sar_valid
    if task == "water":
        target = (codes == WATER_CODE).astype(np.int64)
    else:
        target = codes.astype(np.int64) - 1
    target[ignore] = IGNORE_INDEX
    return target


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
                             f"0..{legend_end - 1} of sarlulc/products.py (0 = nodata). Remap the source classes "
                             f"first, e.g. JAXA HRLULC with 'python -m sarlulc.training.remap'.")
        total += counts
    return total


def task_histogram(counts: np.ndarray, task: str) -> np.ndarray:
    """Per-channel pixel counts: lulc codes 1..9; water (not water, water)."""
    if task == "water":
        return np.array([counts[1:].sum() - counts[WATER_CODE], counts[WATER_CODE]])
    return counts[1:len(LULC_CLASSES) + 1]


def pick_raster(weights: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def profile_shares(profiles: list[str], asked: dict[str, float] | None = None) -> dict[str, float]:
    """Share of the crops each data profile present gets: ``asked`` ones as given, the others an
    equal part of the rest (none asked: all equal). Raises ValueError saying what does not add up."""
    present = list(dict.fromkeys(profiles))
    asked = asked or {}
    unknown = sorted(set(asked) - set(present))
    if unknown:
        raise ValueError(f"profile share for {', '.join(unknown)}: no training source has that profile "
                         f"(present: {', '.join(present)})")
    if any(not 0 <= share <= 1 for share in asked.values()):
        raise ValueError("profile shares must lie between 0 and 1")
    others = [profile for profile in present if profile not in asked]
    rest = 1.0 - sum(asked.values())
    if rest < -1e-9 or (not others and abs(rest) > 1e-9) or (others and rest <= 0):
        raise ValueError(f"profile shares {asked} leave {rest:g} for {', '.join(others) or 'no other profile'}: "
                         f"they must add up to 1 when every profile is named, and stay below 1 otherwise")
    return {profile: asked.get(profile, rest / len(others) if others else 0.0) for profile in present}


def crop_weights(sars: list[SarRaster], shares: dict[str, float] | None = None) -> np.ndarray:
    """Crop-drawing weights: each data profile (e.g. simulated scenes, ETCI) gets its share
    (`profile_shares`), and within a profile a raster gets a share proportional to its area."""
    area = np.array([s.width * s.height for s in sars], dtype=np.float64)
    profiles = [s.profile_name for s in sars]
    shares = profile_shares(profiles, shares)
    group_area = {profile: sum(a for a, p in zip(area, profiles) if p == profile) for profile in profiles}
    return np.array([shares[p] * a / group_area[p] for a, p in zip(area, profiles)])


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


def screen_water_chips(sar: SarRaster, label: LabelRaster) -> np.ndarray | None:
    """Which chips (of the profile's ``label_chip`` px) training may learn water from, or None (no
    screening). Published chip data sets (ETCI 2021) label as water many chips where the SAR shows
    none (flooded fields under crops, labels from another date or sensor): learning from them
    teaches that bright can be water, and the model floods every field. A chip with water is kept
    when its water is ``WATER_LABEL_CONTRAST_DB`` darker than its land (median dB; a chip of water
    only: than the scene median); dry chips are kept. Reads the pair once, a row of chips at a time."""
    chip = sar.profile.label_chip
    if not chip:
        return None
    kept = np.ones((-(-sar.height // chip), -(-sar.width // chip)), dtype=bool)
    for row in range(kept.shape[0]):
        strip = Window(0, row * chip, sar.width, min(chip, sar.height - row * chip))
        db, valid = sar.read_db(strip)
        codes = label.read(strip)
        water, land = valid & (codes == WATER_CODE), valid & (codes != WATER_CODE) & (codes != NODATA_CODE)
        for column in range(kept.shape[1]):
            part = np.s_[:, column * chip:(column + 1) * chip]
            water_db, land_db = db[part][water[part]], db[part][land[part]]
            if water_db.size < CHIP_MIN_PIXELS:
                continue
            reference = np.median(land_db) if land_db.size >= CHIP_MIN_PIXELS else sar.scene.median
            kept[row, column] = np.median(water_db) <= reference - WATER_LABEL_CONTRAST_DB
    return kept


def class_cells(label: LabelRaster, task: str, kept_chips: np.ndarray | None, chip: int | None,
                rows_per_read: int = 1024, channels: int = len(LULC_CLASSES)) -> list[np.ndarray]:
    """Per training channel (``channels`` of land cover), the flat indices of the ``FOCUS_CELL`` px cells
    that hold a labelled pixel of it (outside screened-out chips): where class-balanced crops are centred."""
    columns = -(-label.width // FOCUS_CELL)
    found = [[] for _ in range(2 if task == "water" else channels)]
    for y in range(0, label.height, rows_per_read):
        strip = Window(0, y, label.width, min(rows_per_read, label.height - y))
        codes = label.read(strip)
        target = label_targets(codes, np.ones(codes.shape, bool), task)
        if kept_chips is not None:
            target[~chip_mask(kept_chips, chip, strip.x, strip.y, strip.width, strip.height)] = IGNORE_INDEX
        padded = np.full((-(-strip.height // FOCUS_CELL) * FOCUS_CELL, columns * FOCUS_CELL), IGNORE_INDEX, np.int64)
        padded[:strip.height, :strip.width] = target
        cells = padded.reshape(padded.shape[0] // FOCUS_CELL, FOCUS_CELL, columns, FOCUS_CELL).transpose(0, 2, 1, 3)
        cells = cells.reshape(cells.shape[0], columns, -1)
        for channel in range(len(found)):
            present = (cells == channel).any(axis=2)
            found[channel].append(np.flatnonzero(present) + (y // FOCUS_CELL) * columns)
    return [np.concatenate(parts) for parts in found]


def chip_mask(kept_chips: np.ndarray, chip: int, x: int, y: int, width: int, height: int) -> np.ndarray:
    """Per pixel of the window (x, y, width, height): is its chip kept? (pixels outside the grid: no)"""
    rows, columns = (y + np.arange(height)) // chip, (x + np.arange(width)) // chip
    inside_rows = (rows >= 0) & (rows < kept_chips.shape[0])
    inside_columns = (columns >= 0) & (columns < kept_chips.shape[1])
    mask = kept_chips[np.clip(rows, 0, kept_chips.shape[0] - 1)][:, np.clip(columns, 0, kept_chips.shape[1] - 1)]
    return mask & inside_rows[:, None] & inside_columns[None, :]


def _grid(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    return sorted(set(list(range(0, length - tile, tile)) + [length - tile]))


def _already_scored(starts: list[int], tile: int) -> list[int]:
    """Leading pixels of each tile that the previous one covers (the last tile is flush with the edge)."""
    return [0] + [max(0, previous + tile - start) for previous, start in zip(starts, starts[1:])]


def validation_tiles(labels: list[LabelRaster], tile_size: int) -> list[tuple[int, int, int, int, int]]:
    """(raster index, x, y, skip_x, skip_y) of the validation tiles, on each label's reading grid: a grid of
    tiles whose last row/column is flush with the edge, the first skip_y rows / skip_x columns of a tile
    left to the tile that scored them already, and tiles without a labelled pixel left out. Reads every
    label once, a strip of tiles at a time."""
    tiles = []
    for index, label in enumerate(labels):
        xs, ys = _grid(label.width, tile_size), _grid(label.height, tile_size)
        for y, skip_y in zip(ys, _already_scored(ys, tile_size)):
            strip = Window(0, y + skip_y, label.width, min(tile_size, label.height - y) - skip_y)
            labelled = label.read(strip) != NODATA_CODE
            tiles += [(index, x, y, skip_x, skip_y) for x, skip_x in zip(xs, _already_scored(xs, tile_size))
                      if labelled[:, x + skip_x:x + tile_size].any()]
    return tiles


def augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip / 90-degree rotation applied to every array (SAR has no 'up')."""
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = []
    for array in arrays:
        array = np.rot90(array, turns)
        out.append(np.ascontiguousarray(np.fliplr(array) if flip else array))
    return out

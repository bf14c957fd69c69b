"""The classical water baseline: one automatic backscatter threshold for the whole raster.

What operational SAR flood services run (split-based thresholding: Bovolo & Bruzzone 2007,
Martinis et al. 2009; the hierarchical variant of Chini et al. 2017): a global histogram is
rarely bimodal because water covers little of a scene, so the scene is split into tiles, the
tiles whose histogram holds water beside land are kept, and the threshold is computed on their
pooled pixels, where both populations are well represented.

Here a bounded grid of tiles spread over the whole raster is read once (in dB, after the same
unit conversion, resampling and speckle filter as the model's input). A tile shows water beside
land when a two-Gaussian fit of its histogram has Ashman's D > 2 (two populations separated by
more than their spread), each population holds at least 10 % of it, the darker population lies
at least 8 dB below the scene's median (calm open water is below about -20 dB in L-band HH,
land scenes' medians lie around -12..-6 dB: sarlulc/simulate/README.md) and the median is nearer
the brighter population (so bright buildings beside land do not count), and its darker
population is not separated from the darkest one found (so dark fields beside forest do not
count either). The pooled pixels of those tiles are thresholded with Kittler & Illingworth's
minimum-error method (1986), searched between the two fitted means, or with Otsu's (1979) when
that has no minimum in between. Only the contrasts matter, so the threshold moves with an
unknown calibration offset. When no tile qualifies, the whole-scene histogram is used if it
holds a dark population (mean <= -15 dB, 8 dB below the other), with a warning; otherwise no
pixel is water, with a warning.

A calibrated input also has an absolute level to go by (`WaterCeiling`): its tiles show water
beside land when their darker population lies below the water ceiling of its polarisation, not
only far below the scene's median, so a scene mostly under water is split too; and a scene of
one population is all water when that population lies below the ceiling (open ocean, a flooded
plain), all land otherwise. A relative input (a display stretch) has no level: one population
then gives no water, with a warning that it cannot tell. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import CancelledError, InputRasterError
from ..rasters.windows import Window
from ..sar.polarisation import BandPolarisation

SAMPLE_TILE = 64  # tile edge in pixels (640 m on the 10 m grid)
MAX_SAMPLE_TILES = 1024  # bounds the read: at most 4 Mpx whatever the raster size
MIN_TILE_PIXELS = 256  # valid pixels a tile needs for its histogram to count
MIN_SAMPLE_PIXELS = 1000
ASHMAN_D_MIN = 2.0  # two Gaussians are bimodal-separated when D > 2 (Ashman et al. 1994)
MIN_POPULATION_SHARE = 0.1  # each population's share of a tile (Chini et al. 2017)
MIN_WATER_CONTRAST_DB = 8.0  # calm open water (L-band HH <= -20 dB) below a land scene's median (-12..-6 dB)
MIN_SCENE_WATER_SHARE = 0.01  # the darker population's share for the whole-scene fallback
WATER_MAX_DB = -15.0  # the whole-scene fallback's darker population must be at least this dark
_TILE_BINS, _POOLED_BINS = 64, 512  # tiles: bins over the scene's range, pooled: over their own
_EM_ITERATIONS = 60  # EM steps at most (the fits only need to tell one population from two)


@dataclass(frozen=True)
class TwoGaussians:
    """A two-Gaussian fit of a histogram of dB values: the darker and the brighter population."""

    dark_share: float
    dark_mean: float
    dark_sd: float
    bright_mean: float
    bright_sd: float

    @property
    def ashman_d(self) -> float:
        return math.sqrt(2.0) * abs(self.bright_mean - self.dark_mean) / math.hypot(self.dark_sd, self.bright_sd)

    def is_bimodal(self, min_share: float) -> bool:
        return self.ashman_d > ASHMAN_D_MIN and min(self.dark_share, 1.0 - self.dark_share) >= min_share


ONE_POPULATION_WATER_SPAN_DB = 7.0  # a water-only scene: pixels up to its median + this are water
MIN_CALIBRATED_CONTRAST_DB = 8.0  # land above water in a tile of a calibrated input (VV: -19 vs -10 dB)


@dataclass(frozen=True)
class WaterCeiling:
    """The highest sigma0 (dB) open water has in a calibrated product of one polarisation: a scene
    whose backscatter forms one population below it is water."""

    db: float
    polarisation: str
    source: str


# Calm and wind-roughened open water against the darkest land, as operational flood services
# threshold it: Sentinel-1 VV -15..-18 dB and VH -20..-25 dB (Twele et al. 2016, Int. J. Remote
# Sens. 37(13); Bonafilia et al. 2020 Sen1Floods11: water -19 dB VV median, land -10 dB; our
# measurement of its hand-labelled chips: water p75 -16.3 dB, land p10 -13.4 dB); L-band HH water
# below -20 dB, land -15..0 dB (Shimada et al. 2014 PALSAR mosaics; Ohki et al. 2019 ALOS-2 flood
# mapping thresholds -17..-19 dB; the real AIRSAR San Francisco bay, wind-roughened: median -18.4 dB).
WATER_CEILINGS = {
    "HH": WaterCeiling(-17.0, "HH", "L-band HH: open water below -20 dB, land above -15 dB (PALSAR mosaics; "
                                    "ALOS-2 flood thresholds -17..-19 dB)"),
    "VV": WaterCeiling(-16.0, "VV", "C-band VV: open water about -19 dB, land above -13 dB (Sentinel-1 flood "
                                    "services' thresholds -15..-18 dB; Sen1Floods11 hand labels)"),
    "cross": WaterCeiling(-23.0, "HV/VH", "cross-polarised: open water below -25 dB, land above -20 dB (Sentinel-1 "
                                          "VH thresholds -20..-25 dB)"),
}


def water_ceiling(polarisation: BandPolarisation) -> WaterCeiling:
    """The water ceiling of a band of ``polarisation`` (the one the raster names for it: VV, HV/VH),
    else HH's, the plugin's input."""
    if polarisation.cross:
        return WATER_CEILINGS["cross"]
    return WATER_CEILINGS["VV" if polarisation.name == "VV" else "HH"]


@dataclass(frozen=True)
class WaterThreshold:
    """The threshold (pixels darker than ``db`` are water; None: no pixel is water), how it was
    found, and a warning for the log when the scene gave no clear answer."""

    db: float | None
    how: str
    warning: str | None = None


def _every_nth(values: np.ndarray, at_most: int = 1 << 20) -> np.ndarray:
    """An evenly strided subset of at most ``at_most`` values: enough for percentiles."""
    return values[::max(1, values.size // at_most)]


def _value_range(values: np.ndarray) -> tuple[float, float] | None:
    """The 0.1..99.9 % range of ``values`` (None when they are nearly constant)."""
    low, high = np.percentile(_every_nth(values), [0.1, 99.9])
    return (float(low), float(high)) if high - low > 1e-6 else None


def _histogram(values: np.ndarray, bins: int, value_range: tuple[float, float] | None = None):
    """(counts, bin centres, bin edges) over ``value_range`` (default: the values' 0.1..99.9 %),
    outliers counted in the end bins; None when the values are (nearly) constant."""
    value_range = value_range or _value_range(values)
    if value_range is None:
        return None
    counts, edges = np.histogram(np.clip(values, *value_range), bins=bins, range=value_range)
    return counts.astype(np.float64), (edges[:-1] + edges[1:]) / 2.0, edges


def _class_moments(counts: np.ndarray, centres: np.ndarray, bin_width):
    """Weights, means and variances of the classes below and above every split point (after bin k),
    along the last axis (one histogram per row)."""
    below = np.cumsum(counts, axis=-1)
    total = below[..., -1:]
    above = total - below
    first, second = np.cumsum(counts * centres, axis=-1), np.cumsum(counts * centres * centres, axis=-1)
    floor = np.asarray(bin_width, dtype=np.float64)[..., None] ** 2 / 12.0
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below, mean_above = first / below, (first[..., -1:] - first) / above
        var_below = second / below - mean_below**2 + floor
        var_above = (second[..., -1:] - second) / above - mean_above**2 + floor
    return below, above, mean_below, mean_above, var_below, var_above


def _otsu_split(counts: np.ndarray, centres: np.ndarray, bin_width) -> np.ndarray:
    """Index of Otsu's split (after that bin) of every histogram row."""
    below, above, mean_below, mean_above, _, _ = _class_moments(counts, centres, bin_width)
    between = np.where((below > 0) & (above > 0), below * above * (mean_below - mean_above) ** 2, -1.0)
    return np.argmax(between, axis=-1)


def otsu_threshold(values: np.ndarray, bins: int = _POOLED_BINS, low: float = -math.inf,
                   high: float = math.inf) -> float | None:
    """Otsu's threshold: the split with the largest between-class variance, within (low, high)
    when given (None if the values are constant or no split lies there)."""
    histogram = _histogram(values, bins)
    if histogram is None:
        return None
    counts, centres, edges = histogram
    below, above, mean_below, mean_above, _, _ = _class_moments(counts, centres, edges[1] - edges[0])
    split = edges[1:]
    allowed = (below > 0) & (above > 0) & (split > low) & (split < high)
    if not allowed.any():
        return None
    between = np.where(allowed, below * above * (mean_below - mean_above) ** 2, -1.0)
    return float(split[int(np.argmax(between))])


def kittler_illingworth_threshold(values: np.ndarray, low: float, high: float,
                                  bins: int = _POOLED_BINS) -> float | None:
    """Kittler & Illingworth's minimum-error threshold within (low, high); None when the
    criterion has no minimum strictly inside that range (it then favours a degenerate split)."""
    histogram = _histogram(values, bins)
    if histogram is None:
        return None
    counts, centres, edges = histogram
    below, above, _, _, var_below, var_above = _class_moments(counts, centres, edges[1] - edges[0])
    split = edges[1:]
    allowed = np.flatnonzero((split > low) & (split < high) & (below > 0) & (above > 0))
    if allowed.size < 3:
        return None
    total = below[-1]
    p_below, p_above = below[allowed] / total, above[allowed] / total
    criterion = (p_below * np.log(var_below[allowed]) + p_above * np.log(var_above[allowed])
                 - 2.0 * (p_below * np.log(p_below) + p_above * np.log(p_above)))
    best = int(np.argmin(criterion))
    if best in (0, allowed.size - 1):
        return None
    return float(split[allowed[best]])


def fit_two_gaussians(values: np.ndarray, bins: int = _POOLED_BINS) -> TwoGaussians | None:
    """Maximum-likelihood two-Gaussian mixture of the binned values (EM started from Otsu's split);
    None when the values are (nearly) constant."""
    value_range = _value_range(values)
    return None if value_range is None else fit_many_two_gaussians([values], value_range, bins)[0]


def fit_many_two_gaussians(samples: list[np.ndarray], value_range: tuple[float, float],
                           bins: int = _TILE_BINS) -> list[TwoGaussians | None]:
    """`fit_two_gaussians` of every sample, binned alike over ``value_range``, with the EM
    iterations run on all histograms at once (None for a sample of one value)."""
    fits: list[TwoGaussians | None] = [None] * len(samples)
    if not samples:
        return fits
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    bin_of = np.clip(((np.concatenate(samples) - edges[0]) / (edges[1] - edges[0])).astype(np.int64), 0, bins - 1)
    sample_of = np.repeat(np.arange(len(samples)), [values.size for values in samples])
    counts = np.bincount(sample_of * bins + bin_of, minlength=len(samples) * bins).reshape(len(samples), bins)
    counts = counts.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2.0
    floor = (edges[1] - edges[0]) ** 2 / 12.0
    total = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    dark = (np.arange(bins) <= _otsu_split(counts, centres, edges[1] - edges[0])[:, None]).astype(np.float64)

    def population(weights):
        weight = np.maximum((counts * weights).sum(axis=1, keepdims=True), 1e-12)
        mean = (counts * weights * centres).sum(axis=1, keepdims=True) / weight
        variance = (counts * weights * (centres - mean) ** 2).sum(axis=1, keepdims=True) / weight + floor
        return weight / total, mean, np.sqrt(variance)

    for _ in range(_EM_ITERATIONS):
        (share, mean_1, sd_1), (_, mean_2, sd_2) = population(dark), population(1.0 - dark)
        density_1 = share / sd_1 * np.exp(-0.5 * ((centres - mean_1) / sd_1) ** 2)
        density_2 = (1.0 - share) / sd_2 * np.exp(-0.5 * ((centres - mean_2) / sd_2) ** 2)
        updated = density_1 / np.maximum(density_1 + density_2, 1e-300)
        converged = np.abs(updated - dark).max() < 1e-4
        dark = updated
        if converged:
            break
    (share, mean_1, sd_1), (_, mean_2, sd_2) = population(dark), population(1.0 - dark)
    for row in range(len(samples)):
        p, m1, s1, m2, s2 = (float(a[row, 0]) for a in (share, mean_1, sd_1, mean_2, sd_2))
        if not 1e-6 < p < 1.0 - 1e-6 or np.count_nonzero(counts[row]) < 2:
            continue  # one value, or one population took everything: nothing to split
        fits[row] = TwoGaussians(p, m1, s1, m2, s2) if m1 <= m2 else TwoGaussians(1.0 - p, m2, s2, m1, s1)
    return fits


def sample_grid(width: int, height: int, tile: int = SAMPLE_TILE,
                max_tiles: int = MAX_SAMPLE_TILES) -> list[Window]:
    """Tiles spread evenly over the whole raster, in reading order: a partition of it when it
    is small, an even grid of at most ``max_tiles`` tiles when large (the first and last row
    and column at the raster's edges). Small rasters get smaller tiles, at least 2 x 2 of them."""
    tile = min(tile, max(32, min(width, height) // 2), width, height)
    per_axis = max(1, int(math.sqrt(max_tiles)))
    columns, rows = min(max(1, width // tile), per_axis), min(max(1, height // tile), per_axis)

    def starts(count, size):
        return [round(i * (size - tile) / (count - 1)) for i in range(count)] if count > 1 else [(size - tile) // 2]

    return [Window(x, y, tile, tile) for y in starts(rows, height) for x in starts(columns, width)]


def sample_tiles(read: Callable[[Window], tuple[np.ndarray, np.ndarray]], width: int, height: int,
                 progress: Callable[[float], None] | None = None,
                 is_cancelled: Callable[[], bool] | None = None) -> list[np.ndarray]:
    """The valid dB values of each tile of `sample_grid`, read through ``read(window) -> (db, valid)``."""
    tiles = []
    windows = sample_grid(width, height)
    for done, window in enumerate(windows, start=1):
        if is_cancelled and is_cancelled():
            raise CancelledError()
        db, valid = read(window)
        tiles.append(np.asarray(db[valid], dtype=np.float32))
        if progress:
            progress(100.0 * done / len(windows))
    return tiles


def _threshold_between(values: np.ndarray, water_db: float, land_db: float) -> tuple[float, str]:
    """The threshold of ``values`` between the water and the land mean, and the method's name."""
    threshold = kittler_illingworth_threshold(values, water_db, land_db)
    if threshold is not None:
        return threshold, "Kittler-Illingworth minimum error"
    threshold = otsu_threshold(values, low=water_db, high=land_db)
    if threshold is not None:
        return threshold, "Otsu (Kittler-Illingworth found no minimum between the two populations)"
    return (water_db + land_db) / 2.0, "the midpoint of the two populations (no histogram split between them)"


def _shows_water(fit: TwoGaussians, scene_median: float, ceiling: WaterCeiling | None) -> bool:
    """Whether a bimodal tile's darker population is water: the scene's dark exception (at least
    MIN_WATER_CONTRAST_DB below its median, and the median nearer the brighter population, so bright
    targets beside land do not count), or, for a calibrated input, below the water ceiling and well
    below its land, which also holds where water covers most of the scene."""
    if ceiling is not None and (fit.dark_mean <= ceiling.db
                                and fit.bright_mean - fit.dark_mean >= MIN_CALIBRATED_CONTRAST_DB):
        return True
    return (fit.dark_mean <= scene_median - MIN_WATER_CONTRAST_DB
            and fit.bright_mean - scene_median <= (scene_median - fit.dark_mean) / 2.0)


def _water_tiles(fits: list[TwoGaussians], scene_median: float, ceiling: WaterCeiling | None) -> list[int]:
    """Indices of the tiles that show water beside land: bimodal, their darker population water
    (`_shows_water`), and that darker population the same as the darkest one found (not separated
    from it by Ashman's D > 2), so dark land beside bright land does not count either."""
    candidates = [i for i, fit in enumerate(fits)
                  if fit.is_bimodal(MIN_POPULATION_SHARE) and _shows_water(fit, scene_median, ceiling)]
    if not candidates:
        return []
    darkest = fits[min(candidates, key=lambda i: fits[i].dark_mean)]
    return [i for i in candidates
            if math.sqrt(2.0) * (fits[i].dark_mean - darkest.dark_mean) / math.hypot(fits[i].dark_sd, darkest.dark_sd)
            <= ASHMAN_D_MIN]


def find_water_threshold(tiles: list[np.ndarray], ceiling: WaterCeiling | None = None) -> WaterThreshold:
    """The water threshold of a scene from the valid dB values of its sample tiles (see the module);
    ``ceiling``: the water ceiling of a calibrated input (None: relative brightness, no level)."""
    sampled = sum(t.size for t in tiles)
    if sampled < MIN_SAMPLE_PIXELS:
        raise InputRasterError(
            f"Only {sampled} valid pixels in the {len(tiles)} tiles sampled over the whole raster: too few to "
            f"find a water threshold. Check the band and its nodata value, or use METHOD=model.")
    everything = np.concatenate(tiles)
    scene_median = float(np.median(_every_nth(everything)))
    usable = [values for values in tiles if values.size >= MIN_TILE_PIXELS]
    value_range = _value_range(everything) or (scene_median - 1.0, scene_median + 1.0)
    fitted = [(values, fit) for values, fit in zip(usable, fit_many_two_gaussians(usable, value_range))
              if fit is not None]
    chosen = _water_tiles([fit for _, fit in fitted], scene_median, ceiling)
    if chosen:
        pooled = np.concatenate([fitted[i][0] for i in chosen])
        # The populations as the tiles' own fits see them, weighted by their pixels.
        water_weights = [fitted[i][1].dark_share * fitted[i][0].size for i in chosen]
        land_weights = [(1.0 - fitted[i][1].dark_share) * fitted[i][0].size for i in chosen]
        water_db = float(np.average([fitted[i][1].dark_mean for i in chosen], weights=water_weights))
        land_db = float(np.average([fitted[i][1].bright_mean for i in chosen], weights=land_weights))
        threshold, method = _threshold_between(pooled, water_db, land_db)
        return WaterThreshold(threshold, (
            f"{method} on the pooled pixels of the {len(chosen)} of {len(usable)} sampled tiles that show water "
            f"beside land (water about {water_db:.1f} dB, land about {land_db:.1f} dB; scene median "
            f"{scene_median:.1f} dB)"))
    fit = fit_two_gaussians(everything)
    dark_enough = fit is not None and (fit.dark_mean <= WATER_MAX_DB if ceiling is None else
                                       fit.dark_mean <= ceiling.db)
    if (dark_enough and fit.is_bimodal(MIN_SCENE_WATER_SHARE)
            and fit.bright_mean - fit.dark_mean >= MIN_WATER_CONTRAST_DB):
        threshold, method = _threshold_between(everything, fit.dark_mean, fit.bright_mean)
        return WaterThreshold(
            threshold, f"{method} on the whole-scene sample (darker population {fit.dark_mean:.1f} dB, "
                       f"{fit.dark_share:.0%}; brighter {fit.bright_mean:.1f} dB)",
            f"None of the {len(usable)} tiles sampled over the raster shows water beside land, so the threshold "
            f"comes from the whole scene's histogram, which is less reliable: check the water mask, or use "
            f"METHOD=model.")
    spread = "" if fit is None else f" (Ashman's D {fit.ashman_d:.1f} ≤ {ASHMAN_D_MIN:g})"
    if ceiling is not None:
        return _one_calibrated_population(everything, scene_median, ceiling, spread)
    return WaterThreshold(None, f"no threshold: the backscatter (median {scene_median:.1f} dB) forms one "
                                f"population{spread}", (
        f"No water/land contrast found: neither any of the {len(usable)} tiles sampled over the raster nor the "
        f"whole scene shows two backscatter populations, and a relative input (a display stretch) has no "
        f"absolute level to tell open water from land, so no pixel is marked water. This is right for a scene "
        f"without open water and wrong for one that is all water: run on the calibrated product to tell them "
        f"apart, or use METHOD=model."))


def _one_calibrated_population(everything: np.ndarray, scene_median: float, ceiling: WaterCeiling,
                               spread: str) -> WaterThreshold:
    """The answer for a calibrated scene of one backscatter population: all water when it lies below
    the water ceiling (pixels up to its median + ONE_POPULATION_WATER_SPAN_DB, so speckle does not
    make land of it), else no water."""
    level = f"median {scene_median:.1f} dB {ceiling.polarisation}"
    if scene_median <= ceiling.db:
        threshold = max(ceiling.db, scene_median + ONE_POPULATION_WATER_SPAN_DB)
        return WaterThreshold(threshold, (
            f"one backscatter population{spread} at the level of open water ({level}, below the water ceiling "
            f"{ceiling.db:g} dB; {ceiling.source}): the scene is water, pixels darker than {threshold:.1f} dB"))
    return WaterThreshold(None, (
        f"no threshold: one backscatter population{spread} at the level of land ({level}, above the water "
        f"ceiling {ceiling.db:g} dB; {ceiling.source}): no open water"))

"""Training data: SAR/label GeoTIFF pairs read window by window with rasterio (nothing cached in RAM).

Naming: a scene is ``<name>_sar.tif`` (one band: sigma0 in dB, linear power or ALOS-2 DN, units
detected as the plugin does, from a decimated read of the whole raster, unless given) next to ``<name>_label.tif``
(uint8 class codes of model/classes.py, 0 = nodata). Sources are folders (all ``*_sar.tif`` with
their label), single rasters, or list files (one SAR path per line, optionally followed by its
label path; relative paths are relative to the list file).

Training sees exactly what the plugin feeds the model: a raster that the engine would resample
(another pixel size, degrees, a rotated grid) is read through a warped view on the engine's own
model grid (:func:`model.inference.resample.decide_model_grid`; linear power averaged or
interpolated as the engine does, labels by nearest neighbour); model input is made by the
plugin's :func:`model.inference.reader.prepare_input`, so training and inference normalise
identically. Rasters without a CRS are read on their own grid.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import rasterio
import torch
from affine import Affine
from osgeo import gdal, osr
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window as RasterioWindow
from torch.utils.data import Dataset

from ..classes import LULC_CLASSES, WATER_CLASSES
from ..inference.metadata import NORM_FIXED, SCENE_NORM_MODES
from ..inference.reader import SceneStatistics, open_raster, prepare_input
from ..inference.resample import ModelGrid, decide_model_grid, open_on_model_grid, power_view_xml, resampling_to_model
from ..inference.errors import InputRasterError
from ..inference.sar_input import (ALOS2_CALIBRATION_FACTOR_DB, InputUnits, apply_scaling, band_scaling,
                                   detect_band_units, sample_valid_values, to_db, UNITS_FLAGS,
                                   valid_mask)
from ..inference.windows import Window
from .losses import IGNORE_INDEX


SAR_SUFFIX = "_sar.tif"
LABEL_SUFFIX = "_label.tif"
NODATA_CODE = 0
WATER_CODE = WATER_CLASSES[0][0]
MIN_LABELLED_SHARE = 0.05  # a random crop with fewer labelled pixels is redrawn (a few times)
FOCUS_CELL = 32  # px: grid on which class-balanced crops find the pixels of a class


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


SCENE_CLIP_DB = (-25.0, 20.0)  # dB relative to the scene level removed: calm water to strong double bounce


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
    # labels were published per chip of this many px: training screens them chip by chip (see screen_water_chips)
    label_chip: int | None = None


NOT_WATER_CODE = 255  # "valid, not water, land-cover class unknown" in water-only labels
PROFILES = {
    "sarlulc": DataProfile(),
    # ETCI 2021 flood chips (../shared/data/etci2021): 8-bit stretched Sentinel-1 VV brightness, 0 = no chip,
    # 255 = saturated white chips (no information); labels 0 not water, 1 flood, 2 permanent water, 255 nodata.
    # The stretch is not published: read as relative brightness, as the plugin reads any 8-bit input (the
    # fitted nominal stretch, then the scene's land level anchored; sar_input.RELATIVE_STRETCH_DB).
    "etci2021": DataProfile(units=InputUnits.RELATIVE, sar_invalid=(255.0,),
                            label_map={0: NOT_WATER_CODE, 1: WATER_CLASSES[0][0], 2: WATER_CLASSES[0][0]},
                            water_only=True, label_chip=256),
    # Sen1Floods11 hand-labelled chips (../shared/data/sen1floods11): calibrated Sentinel-1 sigma0 dB, band 1 VV,
    # NaN nodata, EPSG:4326; labels -1 nodata, 0 not water, 1 water.
    "sen1floods11": DataProfile(units=InputUnits.DB, label_map={0: NOT_WATER_CODE, 1: WATER_CLASSES[0][0]},
                                water_only=True),
    # AIRSAR L-band San Francisco (../shared/data/sf_airsar): band 1 HH dB as distributed; labels 1 bare soil
    # (beach), 2 mountain (scrub and grass of the Marin Headlands), 3 water, 4 urban, 5 vegetation (parks,
    # mostly trees). The labels do not name the vegetated classes: hills -> Grassland, parks -> Broadleaf
    # forest, scored as one vegetation group (tools/evaluate_set.py --groups).
    "sf_airsar": DataProfile(units=InputUnits.DB, label_map={1: 8, 2: 5, 3: 1, 4: 2, 5: 6}),
}
# A chip's water label is kept for training only if its water is this much darker than its land (median dB).
WATER_LABEL_CONTRAST_DB = 5.0
CHIP_MIN_PIXELS = 200  # fewer labelled water (land) pixels than this: the chip counts as dry (all water)


class Scene(NamedTuple):
    """One training raster: its SAR file, its label file (None for pretraining) and its data profile."""

    sar: pathlib.Path
    label: pathlib.Path | None
    profile: str = "sarlulc"


def _is_raster(path: pathlib.Path) -> bool:
    return gdal.IdentifyDriverEx(str(path), gdal.OF_RASTER) is not None


def _list_file_entries(list_file: pathlib.Path) -> list[tuple[list[pathlib.Path], str]]:
    """(paths, profile) per line of 'SAR_PATH [LABEL_PATH] [profile=NAME]'."""
    try:
        text = list_file.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"'{list_file}' is neither a raster GDAL can read nor a text list file "
                         f"('SAR_PATH [LABEL_PATH] [profile=NAME]' per line).") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
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


def _source_entries(source: pathlib.Path, folder_glob, kind: str) -> list[tuple[list[pathlib.Path], str]]:
    """(paths, profile) entries of a folder, a single raster or a list file."""
    if source.is_dir():
        return [([path], "sarlulc") for path in folder_glob(source)]
    if source.is_file():
        return [([source], "sarlulc")] if _is_raster(source) else _list_file_entries(source)
    raise FileNotFoundError(f"{kind} source '{source}' is neither a folder, a raster nor a list file.")


def find_pairs(sources) -> list[Scene]:
    """Labelled scenes from folders, ``<name>_sar.tif`` rasters and list files; every SAR file must have its label."""
    pairs = []
    for source in map(pathlib.Path, sources):
        entries = _source_entries(source, lambda folder: sorted(folder.glob(f"*{SAR_SUFFIX}")), "Training")
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
        raise ValueError(f"'{sar}' does not end in '{SAR_SUFFIX}', so its label cannot be found by name; list it "
                         f"as 'SAR_PATH LABEL_PATH' in a list file.")
    return sar.with_name(sar.name[:-len(SAR_SUFFIX)] + LABEL_SUFFIX)


def find_images(sources) -> list[Scene]:
    """Unlabelled SAR GeoTIFFs for pretraining: folders (``*.tif`` except labels), rasters or list files."""
    images = []
    for source in map(pathlib.Path, sources):
        entries = _source_entries(
            source, lambda folder: [p for p in sorted(folder.glob("*.tif")) if not p.name.endswith(LABEL_SUFFIX)],
            "Pretraining")
        if not entries:
            raise FileNotFoundError(f"No SAR GeoTIFF (*.tif) in '{source}'.")
        images += [Scene(paths[0], None, profile) for paths, profile in entries]
    return images


@dataclass(frozen=True)
class ReadOptions:
    """How training reads SAR rasters, as the plugin's INPUT_UNITS / calibration factor would, and
    the ground sampling distance of the model grid (the exported ``gsd_m``). ``model_grid`` False
    reads every raster on its own grid (only for tools that copy rasters, not for training)."""

    input_units: InputUnits = InputUnits.AUTO
    calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB
    gsd_m: float = 10.0
    model_grid: bool = True




def add_read_arguments(parser) -> None:
    """The options train and pretrain share for reading SAR rasters as the plugin does."""
    parser.add_argument("--input-units", choices=sorted(UNITS_FLAGS), default="auto",
                        help="units of the SAR rasters (as the plugin's INPUT_UNITS): auto = detected per raster "
                             "from a decimated read of the whole raster; a data profile's units take precedence")
    parser.add_argument("--calibration-factor", type=float, default=ALOS2_CALIBRATION_FACTOR_DB,
                        help="dB; sigma0 = 10*log10(DN^2) + factor for ALOS-2 DN rasters")
    parser.add_argument("--gsd", type=float, default=10.0,
                        help="model grid pixel size, m (the exported gsd_m): rasters at another pixel size, "
                             "in degrees or rotated are read resampled onto it, as the plugin reads them")


def read_options(args) -> ReadOptions:
    return ReadOptions(UNITS_FLAGS[args.input_units], args.calibration_factor, args.gsd)


def _open(path: str):
    """rasterio dataset of ``path``; rasters without georeferencing are fine for training (read on their own grid)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def _reader_valid(reader, raw: np.ndarray, **read_args) -> np.ndarray:
    """Where ``raw`` (read from ``reader`` with ``read_args``) is valid per the band's mask: its
    nodata value, or its mask band when it has one (alpha, internal mask)."""
    flags = reader.mask_flag_enums[0]
    if MaskFlags.all_valid in flags:
        return np.ones(raw.shape, bool)
    if MaskFlags.nodata in flags:
        return valid_mask(raw, reader.nodata, InputUnits.AUTO)  # units not known here: finite and not nodata
    return reader.read_masks(1, **read_args) != 0


class SarRaster:
    """One SAR raster as the model sees it: on the engine's model grid when the plugin would resample
    it (``grid``), else on its own; units (the profile's, the user's or detected) and scene statistics
    computed once (or taken from ``facts``, see :meth:`facts`); windows read as (dB, valid).
    Rasters without a CRS, and those read through a profile's assumed stretch, are read on their own
    grid. Re-opened per process."""

    def __init__(self, path, profile: str = "sarlulc", options: ReadOptions = ReadOptions(),
                 facts: dict | None = None, sample: np.ndarray | None = None):
        self.path = str(path)
        self.profile_name, self.profile = profile, PROFILES[profile]
        self.options = options
        dataset = open_raster(self.path)
        self.scaling = band_scaling(dataset.GetRasterBand(1))  # GDAL scale/offset, as the engine applies it
        self.units = self._units(dataset, facts)
        self.grid: ModelGrid | None = None
        if options.model_grid and dataset.GetSpatialRef() is not None:
            self.grid = decide_model_grid(dataset, options.gsd_m)
        if self.grid is None:
            self.width, self.height = dataset.RasterXSize, dataset.RasterYSize
            self.read_units = self.units
        else:
            self.width, self.height = self.grid.width, self.grid.height
            self.resampling = resampling_to_model(dataset, options.gsd_m)
            self.read_units = InputUnits.LINEAR  # the view holds linear power, nodata 0
        self._reader, self._pid, self._sample = None, None, sample  # sample: what sample_db() returns, if known
        # a relative input's land level is anchored as the engine anchors it (engine._anchor_relative)
        self.offset_db = facts.get("offset_db", 0.0) if facts else 0.0
        if facts:
            self.scene = SceneStatistics(**facts["scene"])
        else:
            self.scene = SceneStatistics.of(self.sample_db())
            if not self.units.calibrated:
                self.offset_db = self.scene.relative_anchor
                self._sample = self._sample + np.float32(self.offset_db)
                self.scene = SceneStatistics.of(self._sample)

    def facts(self) -> dict:
        """What the constructor learnt by reading pixels (JSON-able), to build it again without reading."""
        return {"units": self.units.value, "scene": asdict(self.scene), "offset_db": self.offset_db}

    def _units(self, dataset: gdal.Dataset, facts: dict | None) -> InputUnits:
        if self.profile.units is not None:
            return self.profile.units
        if InputUnits(self.options.input_units) is not InputUnits.AUTO:
            return InputUnits(self.options.input_units)
        if facts:
            return InputUnits(facts["units"])
        try:
            return detect_band_units(dataset, 1)[0]  # from a decimated read of the whole raster
        except InputRasterError as error:
            raise ValueError(f"'{self.path}': {error}") from None

    def _band(self):
        """The rasterio dataset windows are read from: the raster, or its warped view on the model grid."""
        if self._pid != os.getpid():  # GDAL handles must not cross a DataLoader fork
            if self.grid is None:
                self._reader = _open(self.path)
            else:
                view = rasterio.open(power_view_xml(open_raster(self.path), 1, self.units,
                                                    self.options.calibration_factor))
                self._reader = WarpedVRT(view, crs=CRS.from_wkt(self.grid.srs_wkt),
                                         transform=Affine.from_gdal(*self.grid.geotransform), width=self.grid.width,
                                         height=self.grid.height, resampling=Resampling[self.resampling],
                                         src_nodata=0, nodata=0, dtype="float32")
            self._pid = os.getpid()
        return self._reader

    def _valid(self, raw: np.ndarray) -> np.ndarray:
        """Finite values that are measurements in the units read and not one of the profile's invalid values."""
        valid = valid_mask(raw, None, self.read_units)
        for value in self.profile.sar_invalid:
            valid &= raw != value
        return valid

    def read_raw(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(values as read, valid) of ``window``: the stored values, or linear power on the model grid;
        valid also excludes the profile's invalid values."""
        reader = self._band()
        area = RasterioWindow(window.x, window.y, window.width, window.height)
        raw = reader.read(1, window=area)
        valid = _reader_valid(reader, raw, window=area)
        if self.grid is None:  # the view on the model grid applies it itself
            raw = apply_scaling(raw, self.scaling).astype(np.float32, copy=False)
        return raw, valid & self._valid(raw)

    def read_db(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        raw, valid = self.read_raw(window)
        return self._to_db(raw), valid

    def sample_db(self) -> np.ndarray:
        """dB of the sample the engine takes for scene statistics: a decimated read of the whole raster,
        or of its view on the model grid."""
        if self._sample is None:
            dataset = open_raster(self.path)
            if self.grid is not None:
                dataset = open_on_model_grid(dataset, 1, self.options.gsd_m, self.units, self.resampling,
                                             self.options.calibration_factor, self.grid)
            raw = sample_valid_values(dataset, 1)
            self._sample = self._to_db(raw[self._valid(raw)])
            if self._sample.size == 0:
                raise ValueError(f"'{self.path}' holds no valid pixel (every pixel is nodata); leave it out.")
        return self._sample

    def _to_db(self, raw: np.ndarray) -> np.ndarray:
        db = to_db(raw, self.read_units, self.options.calibration_factor)
        return db + np.float32(self.offset_db) if self.offset_db else db

    def __getstate__(self):
        return {**self.__dict__, "_reader": None, "_pid": None, "_sample": None}


def _measure(job: tuple[str, str, ReadOptions]) -> tuple[dict, np.ndarray]:
    sar = SarRaster(*job)
    return sar.facts(), sar.sample_db()


def open_rasters(scenes: list[Scene], options: ReadOptions, processes: int = 1) -> dict[str, SarRaster]:
    """:class:`SarRaster` of every distinct SAR path of ``scenes``, their pixels read in ``processes``
    processes at once (a 12000 px tile in degrees takes about 25 s of CPU: units, and the engine's
    sample of its model-grid view for the scene statistics)."""
    jobs = list({str(scene.sar): (str(scene.sar), scene.profile, options) for scene in scenes}.values())
    if processes > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=multiprocessing.get_context("fork")) as pool:
            measured = list(pool.map(_measure, jobs))
    else:
        measured = [_measure(job) for job in jobs]
    return {job[0]: SarRaster(*job, facts, sample) for job, (facts, sample) in zip(jobs, measured)}


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
    return normalisation_of(mode, _sars(scenes, options, None))


def normalisation_of(mode: str, rasters: list[SarRaster]) -> Normalisation:
    """:func:`normalisation_for` of rasters already open."""
    return compute_normalisation(rasters, SCENE_CLIP_DB if mode in SCENE_NORM_MODES else (-35.0, 5.0), mode)


def input_distribution(rasters: list[SarRaster], jitter: "CalibrationJitter") -> dict:
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


def _grid_of(dataset: gdal.Dataset) -> tuple[osr.SpatialReference | None, tuple[float, ...]]:
    return dataset.GetSpatialRef(), dataset.GetGeoTransform()


def label_offset(sar_path, label_path) -> tuple[int, int]:
    """Pixel offset (columns, rows) of the SAR raster's origin in the label raster; refuses a label that
    is not on the SAR's pixel grid (another CRS, pixel size, rotation, or a shift by a fraction of a
    pixel). The two may cover different areas: outside the label is nodata."""
    sar_srs, sar_gt = _grid_of(open_raster(sar_path))
    label_srs, label_gt = _grid_of(open_raster(label_path))
    fix = ("Put the label on the SAR raster's pixel grid first, e.g. gdalwarp -r near -t_srs <SAR CRS> "
           "-tr <SAR pixel size> -tap LABEL OUT.")
    if (sar_srs is None) != (label_srs is None) or (sar_srs is not None and not sar_srs.IsSame(label_srs)):
        names = [srs.GetName() if srs is not None else "none" for srs in (sar_srs, label_srs)]
        raise ValueError(f"The label '{label_path}' has another coordinate reference system ({names[1]}) than its "
                         f"SAR raster '{sar_path}' ({names[0]}). {fix}")
    pixel = max(abs(sar_gt[1]), abs(sar_gt[2]), abs(sar_gt[4]), abs(sar_gt[5]))
    if any(abs(a - b) > 1e-6 * pixel for a, b in zip(np.take(sar_gt, [1, 2, 4, 5]), np.take(label_gt, [1, 2, 4, 5]))):
        raise ValueError(f"The label '{label_path}' has another pixel size or rotation than its SAR raster "
                         f"'{sar_path}' (geotransforms {label_gt} vs {sar_gt}). {fix}")
    inverse = gdal.InvGeoTransform(label_gt)
    column, row = gdal.ApplyGeoTransform(inverse, sar_gt[0], sar_gt[3])
    if abs(column - round(column)) > 0.01 or abs(row - round(row)) > 0.01:
        raise ValueError(f"The label '{label_path}' is shifted by a fraction of a pixel against its SAR raster "
                         f"'{sar_path}' ({column - round(column):+.3f}, {row - round(row):+.3f} px). {fix}")
    return round(column), round(row)


class LabelRaster:
    """One label raster of class codes (raw values mapped by its profile), read window by window on the
    grid its SAR raster is read on (``sar``: its model grid by nearest neighbour, or its own grid at the
    label's offset), or on the label's own grid without ``sar``. Re-opened per process."""

    def __init__(self, path, profile: str = "sarlulc", sar: SarRaster | None = None):
        self.path = str(path)
        self.lookup = _lookup_table(PROFILES[profile].label_map)
        # raw value written where the label has no data: one the profile maps to nodata
        self.fill = 0 if self.lookup is None else int(np.flatnonzero(self.lookup == NODATA_CODE)[0])
        self.sar_grid = sar.grid if sar is not None else None
        self.offset = label_offset(sar.path, self.path) if sar is not None else (0, 0)
        with _open(self.path) as reader:
            self.label_width, self.label_height, self.nodata = reader.width, reader.height, reader.nodata
        self.width, self.height = (sar.width, sar.height) if sar is not None else (self.label_width, self.label_height)
        self._reader, self._pid = None, None

    def _band(self):
        if self._pid != os.getpid():  # GDAL handles must not cross a DataLoader fork
            self._reader = _open(self.path)
            if self.sar_grid is not None:
                grid = self.sar_grid
                self._reader = WarpedVRT(self._reader, crs=CRS.from_wkt(grid.srs_wkt),
                                         transform=Affine.from_gdal(*grid.geotransform), width=grid.width,
                                         height=grid.height, resampling=Resampling.nearest,
                                         src_nodata=self.nodata, nodata=self.fill)
            self._pid = os.getpid()
        return self._reader

    def read(self, window: Window) -> np.ndarray:
        reader = self._band()
        if self.sar_grid is not None:
            codes = reader.read(1, window=RasterioWindow(window.x, window.y, window.width, window.height))
        else:
            column, row = self.offset
            source = Window(window.x + column, window.y + row, window.width, window.height)
            inside = source.intersection(Window(0, 0, self.label_width, self.label_height))
            codes = np.full((window.height, window.width), self.fill, dtype=reader.dtypes[0])
            if inside is not None:
                codes[inside.slices_in(source)] = reader.read(
                    1, window=RasterioWindow(inside.x, inside.y, inside.width, inside.height))
        return codes if self.lookup is None else self.lookup[codes]

    def __getstate__(self):
        return {**self.__dict__, "_reader": None, "_pid": None}


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
                             f"0..{legend_end - 1} of model/classes.py (0 = nodata). Remap the source classes "
                             f"first, e.g. JAXA HRLULC with 'python -m model.net.remap'.")
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


def _pick_weights(sars: list[SarRaster], shares: dict[str, float] | None = None) -> np.ndarray:
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


def screen_water_chips(sar: SarRaster, label: "LabelRaster") -> np.ndarray | None:
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


def class_cells(label: "LabelRaster", task: str, kept_chips: np.ndarray | None, chip: int | None,
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


def _sars(scenes: list[Scene], options: ReadOptions, facts: dict | None) -> list[SarRaster]:
    facts = facts or {}
    return [SarRaster(scene.sar, scene.profile, options, facts.get(str(scene.sar))) for scene in scenes]


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
        self.sars = _sars(pairs, options, facts)
        self.labels = [LabelRaster(scene.label, scene.profile, sar) for scene, sar in zip(pairs, self.sars)]
        self.weights = _pick_weights(self.sars, shares)
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
        index = _pick_raster(self.weights, rng)
        sar = self.sars[index]
        return (index, int(rng.integers(max(1, sar.width - self.crop_size + 1))),
                int(rng.integers(max(1, sar.height - self.crop_size + 1))))

    def _balanced_origin(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """A crop holding a random labelled pixel cell of a class drawn uniformly among those present."""
        channel = self.present[int(rng.integers(len(self.present)))]
        index = _pick_raster(self.weights * [cells[channel].size > 0 for cells in self.cells], rng)
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


class UnlabelledCrops(_EpochSeeded):
    """Random crops of unlabelled SAR for MixMAE: (normalised image, valid mask)."""

    def __init__(self, scenes: list[Scene], normalisation: Normalisation, crop_size: int, samples_per_epoch: int,
                 seed: int = 0, options: ReadOptions = ReadOptions(), facts: dict | None = None):
        super().__init__(samples_per_epoch, seed)
        self.sars = _sars(scenes, options, facts)
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

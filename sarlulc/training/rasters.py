"""Training rasters read window by window with rasterio (nothing cached in RAM), as the engine reads them.

Training sees exactly what the plugin feeds the model: a raster that the engine would resample
(another pixel size, degrees, a rotated grid) is read through a warped view on the engine's own
model grid (:func:`sarlulc.rasters.resample.decide_model_grid`; linear power averaged or
interpolated as the engine does, labels by nearest neighbour); units, scaling and the scene
statistics come from the engine's own functions. Rasters without a CRS are read on their own grid.
Label rasters are remapped by their data profile (:mod:`.sources`) to class codes.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import rasterio
from affine import Affine
from osgeo import gdal, osr
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window as RasterioWindow

from ..errors import InputRasterError
from ..rasters.reading import open_raster
from ..inference.normalisation import SceneStatistics
from ..rasters.resample import ModelGrid, decide_model_grid, open_on_model_grid, power_view_xml, resampling_to_model
from ..sar.units import (ALOS2_CALIBRATION_FACTOR_DB, InputUnits, apply_scaling, band_scaling, detect_band_units,
                         sample_valid_values, to_db, UNITS_FLAGS, valid_mask)
from ..rasters.windows import Window
from .sources import NODATA_CODE, PROFILES, Scene


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
        # a relative input's land level is anchored as the engine anchors it (run_input.anchor_relative)
        self.offset_db = facts.get("offset_db", 0.0) if facts else 0.0
        if facts:
            self.scene = SceneStatistics(**facts["scene"])
        else:
            self.scene = SceneStatistics.of(self.sample_db())
            if not self.units.calibrated:
                self.offset_db = SceneStatistics.of(self._anchor_sample_db()).relative_anchor
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

    def _valid(self, raw: np.ndarray, units: InputUnits | None = None) -> np.ndarray:
        """Finite values that are measurements in ``units`` (default: the units read) and not one of the
        profile's invalid values."""
        valid = valid_mask(raw, None, units or self.read_units)
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

    def _anchor_sample_db(self) -> np.ndarray:
        """dB of the sample a relative input's land level is anchored on: a decimated read of the raster
        on its own grid, also when it is read on the model grid, as the engine anchors it."""
        if self.grid is None:
            return self.sample_db()
        raw = sample_valid_values(open_raster(self.path), 1)
        return to_db(raw[self._valid(raw, self.units)], self.units, self.options.calibration_factor)

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
        # Garbage left in reference cycles (an ONNX Runtime session, say) must be freed here: freed in a
        # forked process, its destructor would wait forever for threads only this process has.
        gc.collect()
        with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=multiprocessing.get_context("fork")) as pool:
            measured = list(pool.map(_measure, jobs))
    else:
        measured = [_measure(job) for job in jobs]
    return {job[0]: SarRaster(*job, facts, sample) for job, (facts, sample) in zip(jobs, measured)}


def sar_rasters(scenes: list[Scene], options: ReadOptions, facts: dict | None) -> list[SarRaster]:
    facts = facts or {}
    return [SarRaster(scene.sar, scene.profile, options, facts.get(str(scene.sar))) for scene in scenes]


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

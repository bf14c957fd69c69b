"""The labels of an area: each SAR raster read as Segment reads it, its reference put on that reading
grid, whole blocks of labelled pixels held out for validation, and the label rasters training and
validation read (written to a scratch folder)."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..inference.contract import ClassInfo
from .area_classes import LEGEND_CLASSES, channel_codes, same_classes
from .area_request import TrainingCancelled, TrainingRefused, TrainRequest
from .rasters import ReadOptions, SarRaster
from .reference import Grid, ReferenceError, reference_on_grid
from .remap import CodeTable
from .sources import Scene

MIN_LABELLED_PIXELS = 1000  # fewer labelled pixels than this cannot train (nor validate) anything


@dataclass
class AreaLabels:
    """Per SAR raster of a request: the raster, its reference codes on its reading grid, that grid."""

    sars: list[SarRaster]
    codes: list[np.ndarray]
    grids: list[Grid]


@dataclass
class HeldOut:
    """The area split into training and validation label rasters (same SAR rasters), with what the log
    and the model's provenance tell of them."""

    train_scenes: list[Scene]
    val_scenes: list[Scene]
    train_counts: np.ndarray  # labelled training pixels per channel
    val_pixels: int


def read_area(request: TrainRequest, options: ReadOptions, remap: CodeTable | None, folder: pathlib.Path, log,
              cancelled, classes: tuple[ClassInfo, ...]) -> AreaLabels:
    """Each raster of ``request`` and its reference (codes mapped by ``remap``) on the raster's reading
    grid, land-cover codes as channels 1..N of ``classes``; refuses what cannot be read."""
    lulc = request.task == "lulc"
    custom = lulc and not same_classes(classes, LEGEND_CLASSES)
    to_channels = channel_codes(classes)
    area = AreaLabels([], [], [])
    for index, raster in enumerate(request.rasters):
        source = _band_source(raster, request.band, folder, index)
        try:
            sar = SarRaster(source, "sarlulc", options)
        except ValueError as error:
            raise TrainingRefused(str(error)) from None
        grid = _grid_of(sar)
        reference = request.references[index if len(request.references) > 1 else 0]
        try:
            scene_codes = reference_on_grid(reference, grid, request.task, request.class_field, remap,
                                            classes if custom else None)
        except ReferenceError as error:
            raise TrainingRefused(str(error)) from None
        log(f"{pathlib.Path(raster).name} (band {request.band}, {sar.units.value}): "
            f"{np.count_nonzero(scene_codes):,} labelled pixels of {pathlib.Path(reference.split('|')[0]).name} "
            f"on its {grid.width} x {grid.height} px reading grid")
        area.sars.append(sar)
        area.codes.append(to_channels[scene_codes] if lulc else scene_codes)
        area.grids.append(grid)
        if cancelled():
            raise TrainingCancelled()
    return area


def hold_out(area: AreaLabels, request: TrainRequest, folder: pathlib.Path, log, legend) -> HeldOut:
    """Refuses labels that cannot train a model, then holds out the validation blocks and writes the
    training and validation label rasters into ``folder``. ``legend``: (code, name, colour) per channel."""
    codes = area.codes
    channels = len(legend)
    counts = sum(_channel_counts(scene, request.task, channels) for scene in codes)
    names = [name for _, name, _ in legend]
    if counts.sum() < MIN_LABELLED_PIXELS:
        raise TrainingRefused(f"The references label {int(counts.sum())} pixels of the SAR rasters; at least "
                              f"{MIN_LABELLED_PIXELS} are needed. Label more (polygons rather than points).")
    if np.count_nonzero(counts) < 2:
        only = names[int(np.argmax(counts))]
        raise TrainingRefused(f"The references hold one class only ({only}): a model learns to tell classes "
                              f"apart, so label at least two.")
    held = validation_blocks(codes, request.validation_share, request.block_size, request.seed)
    train_scenes, val_scenes = [], []
    for index, (sar, scene, mask, grid) in enumerate(zip(area.sars, codes, held, area.grids)):
        train_path, val_path = folder / f"train_{index}.tif", folder / f"val_{index}.tif"
        _write_label(train_path, np.where(mask, 0, scene).astype(np.uint8), grid)
        _write_label(val_path, np.where(mask, scene, 0).astype(np.uint8), grid)
        train_scenes.append(Scene(pathlib.Path(sar.path), train_path))
        val_scenes.append(Scene(pathlib.Path(sar.path), val_path))
    train_counts = sum(_channel_counts(np.where(m, 0, c), request.task, channels) for c, m in zip(codes, held))
    val_pixels = int(sum(np.count_nonzero(c[m]) for c, m in zip(codes, held)))
    log(f"validation: {int(sum(m.sum() for m in held)) // request.block_size ** 2} blocks of "
        f"{request.block_size} px, {val_pixels:,} labelled pixels ({val_pixels / counts.sum():.0%}); "
        f"training: {int(train_counts.sum()):,} labelled pixels")
    log("labelled training pixels per class: " + ", ".join(
        f"{name} {int(n):,}" for name, n in zip(names, train_counts) if n))
    return HeldOut(train_scenes, val_scenes, train_counts, val_pixels)


def remap_table(request: TrainRequest) -> CodeTable | None:
    if not request.remap:
        return None
    try:
        return CodeTable.load(request.remap)
    except SystemExit as problem:  # the remap CLI's loader says what is wrong in its exit message
        raise TrainingRefused(str(problem)) from None


def _band_source(path: str, band: int, folder: pathlib.Path, index: int) -> str:
    """The SAR raster itself (band 1) or a VRT of its band ``band``, which the readers take as band 1."""
    dataset = gdal.Open(path)
    if band > dataset.RasterCount:
        raise TrainingRefused(f"'{path}' has {dataset.RasterCount} band(s); band {band} does not exist.")
    if band == 1:
        return path
    target = folder / f"sar_{index}_band{band}.vrt"
    gdal.Translate(str(target), dataset, format="VRT", bandList=[band])
    return str(target)


def _grid_of(sar: SarRaster) -> Grid:
    if sar.grid is not None:
        return Grid(sar.grid.srs_wkt, sar.grid.geotransform, sar.grid.width, sar.grid.height)
    dataset = gdal.Open(sar.path)
    return Grid(dataset.GetProjection(), dataset.GetGeoTransform(), dataset.RasterXSize, dataset.RasterYSize)


def validation_blocks(codes: list[np.ndarray], share: float, block: int, seed: int) -> list[np.ndarray]:
    """Per scene, a boolean mask of the pixels held out: whole ``block`` px squares holding labels,
    drawn at random (seeded) until they hold ``share`` of the labelled pixels. At least one labelled
    block stays for training."""
    blocks = []  # (scene, row, column, labelled pixels)
    for index, scene in enumerate(codes):
        for y in range(0, scene.shape[0], block):
            for x in range(0, scene.shape[1], block):
                count = int(np.count_nonzero(scene[y:y + block, x:x + block]))
                if count:
                    blocks.append((index, y, x, count))
    if len(blocks) < 2:
        raise TrainingRefused(f"The labelled pixels lie in {len(blocks)} block(s) of {block} px: at least two are "
                              f"needed, one to train on and one to validate. Label a larger area or make the "
                              f"validation blocks smaller.")
    total = sum(b[3] for b in blocks)
    masks = [np.zeros(scene.shape, bool) for scene in codes]
    held = 0
    for position in np.random.default_rng(seed).permutation(len(blocks))[:len(blocks) - 1]:
        if held >= share * total:
            break
        index, y, x, count = blocks[position]
        masks[index][y:y + block, x:x + block] = True
        held += count
    return masks


def _write_label(path: pathlib.Path, codes: np.ndarray, grid: Grid) -> None:
    target = gdal.GetDriverByName("GTiff").Create(str(path), grid.width, grid.height, 1, gdal.GDT_Byte,
                                                  options=["COMPRESS=DEFLATE", "TILED=YES"])
    target.SetGeoTransform(grid.geotransform)
    if grid.srs_wkt:
        target.SetProjection(grid.srs_wkt)
    band = target.GetRasterBand(1)
    band.SetNoDataValue(0)
    band.WriteArray(codes)
    target = None


def _channel_counts(codes: np.ndarray, task: str, channels: int) -> np.ndarray:
    """Labelled pixels per training channel of label ``codes`` (land cover: 1..channels)."""
    counts = np.bincount(codes.ravel(), minlength=256)
    if task == "water":
        return np.array([counts[2:].sum(), counts[1]])
    return counts[1:channels + 1]

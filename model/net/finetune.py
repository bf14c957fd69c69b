"""Train a model for your area: SAR rasters + references -> an ONNX model with the plugin's contract
and an HTML report. The engine of ``sarlulc:train``; the same as a command line:

    python -m model.net.finetune --sar scene.tif --reference landcover.tif --out my_model.onnx
    python -m model.net.finetune --sar a.tif b.tif --reference checks.gpkg --class-field class \\
        --remap jaxa-hrlulc-v23.12 --minutes 20 --out my_model.onnx --report my_model.html
    python -m model.net.finetune --sar scene.tif --reference habitats.tif --classes habitats.csv --out habitats.onnx

The SAR rasters are read exactly as Segment reads them (band, units, calibration factor, the model
grid), references are put on that grid (model/net/reference.py). A share of the labelled pixels,
whole square blocks of them, is held out for validation: training never learns from their labels,
every epoch is scored on them, the best epoch is kept, and the report compares it with the
starting model on the same blocks. Fine-tuning starts from the bundled model (or any plugin ONNX
model) rebuilt in torch from its ONNX file (model/net/onnx_weights.py); ``--start scratch`` trains
the ``tiny-cpu`` network from random weights. Nothing is written until the end (model and report
together); a cancelled or failed run leaves no file.

The model's classes (land cover) are a class table's (``--classes``, CSV code,name,color), else the
category names and colours of the reference rasters, else the starting model's (the bundled 9). Other
classes than the starting model's keep its encoder and decoder and give it a new classification head,
one output channel per class; the exported contract carries their codes, names and colours.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import math
import pathlib
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from osgeo import gdal

from ..classes import LULC_CLASSES, WATER_CLASSES
from ..evaluation import Evaluation
from ..inference.metadata import NORM_FIXED, ClassInfo, InputDistribution, ModelContract, bundled_model_path
from ..inference.sar_input import ALOS2_CALIBRATION_FACTOR_DB, UNITS_FLAGS, InputUnits
from ..inference.writer import PendingFiles, check_distinct_files
from ..inference.errors import InferenceError, gdal_exceptions
from . import engine
from .class_table import ClassTableError, raster_classes, read_class_table
from .configs import named_config
from .data import (CalibrationJitter, LabelRaster, Normalisation, ReadOptions, SarRaster, Scene, SegmentationCrops,
                   SegmentationTiles, input_distribution, normalisation_of, validation_tiles)
from .export import contract_for, export_onnx, parity
from .losses import FocalDiceLoss, class_weights
from .onnx_weights import segmentor_from_onnx, train_keeping_batch_norm
from .reference import Grid, ReferenceError, is_vector, reference_on_grid, split_source
from .remap import CodeTable
from .segmentor import Segmentor
from .train import evaluate, iou_per_class


START_BUNDLED, START_SCRATCH = "bundled", "scratch"
MIN_LABELLED_PIXELS = 1000  # fewer labelled pixels than this cannot train (nor validate) anything
VALIDATION_TILE = 256
PARITY_TOLERANCE = 1e-3


class TrainingRefused(ValueError):
    """Input that cannot train a model; refused before any training, the message says what to do."""


class TrainingCancelled(Exception):
    """The user cancelled; nothing was written."""


@dataclass
class TrainRequest:
    """One training run. ``references``: one for all rasters, or one per raster (same order)."""

    rasters: list[str]
    references: list[str]
    out_model: str
    report: str | None = None
    task: str = "lulc"
    class_field: str | None = None
    remap: str | None = None  # a shipped table's name (model/net/remap_tables) or a CSV file
    band: int = 1
    input_units: str = "auto"  # a key of sar_input.UNITS_FLAGS or an InputUnits value
    calibration_factor: float = ALOS2_CALIBRATION_FACTOR_DB
    start: str = START_BUNDLED  # "bundled", "scratch" or a plugin .onnx model
    epochs: int = 6
    minutes: float | None = None  # time budget (training stops at the end of the epoch that reaches it)
    samples_per_epoch: int = 512
    batch_size: int = 8
    crop_size: int = 128
    lr: float = 2e-4
    validation_share: float = 0.2
    block_size: int = 128
    level_jitter: float = 1.5
    gain_jitter: float = 0.1
    balanced_share: float = 0.3
    alpha: float = 0.0  # class-weight tempering; 0 (unweighted) kept built-up best on San Francisco (README)
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    classes: str | None = None  # class table CSV (code,name,color): the model's own land-cover classes


@dataclass
class TrainResult:
    model_path: str
    report_path: str | None
    best_epoch: int
    start_scores: dict
    trained_scores: dict
    history: list = field(default_factory=list)


def _units(text: str) -> InputUnits:
    """Input units as the CLI spells them (``db``) or as Processing shows them (``dB``)."""
    units = UNITS_FLAGS.get(text.lower()) or next((u for u in InputUnits if u.value.lower() == text.lower()), None)
    if units is None:
        raise TrainingRefused(f"Input units '{text}': choose one of {', '.join(UNITS_FLAGS)}.")
    return units


def check_request(request: TrainRequest) -> None:
    """Refuse impossible settings before reading any pixel."""
    if not request.rasters:
        raise TrainingRefused("Give at least one SAR raster.")
    if len(request.references) not in (1, len(request.rasters)):
        raise TrainingRefused(f"Give one reference for all SAR rasters or one per raster: got {len(request.rasters)} "
                              f"rasters and {len(request.references)} references.")
    if request.task not in ("lulc", "water"):
        raise TrainingRefused(f"Task '{request.task}': choose lulc or water.")
    if pathlib.Path(request.out_model).suffix.lower() != ".onnx":
        raise TrainingRefused(f"The model file '{request.out_model}' must end in .onnx.")
    if request.report and pathlib.Path(request.report).suffix.lower() not in (".html", ".htm"):
        raise TrainingRefused(f"The report '{request.report}' must end in .html.")
    if not 0.0 < request.validation_share < 1.0:
        raise TrainingRefused(f"The validation share must lie between 0 and 1 (got {request.validation_share}).")
    if request.epochs < 1 or (request.minutes is not None and request.minutes <= 0):
        raise TrainingRefused("Give at least one epoch, and a positive time budget if any.")
    if request.crop_size % 32 or request.crop_size < 64:
        raise TrainingRefused(f"The crop size must be a multiple of 32, at least 64 (got {request.crop_size}).")
    if request.batch_size < 1 or request.samples_per_epoch < request.batch_size:
        raise TrainingRefused("The batch size must be at least 1 and the crops per epoch at least one batch.")
    if request.block_size < 32:
        raise TrainingRefused(f"Validation blocks must be at least 32 px (got {request.block_size}).")
    if request.band < 1:
        raise TrainingRefused(f"Band {request.band}: bands count from 1.")
    if request.classes and request.task == "water":
        raise TrainingRefused("The water task has one class, water: a class table is for land cover.")
    _units(request.input_units)
    inputs = {f"SAR raster {i + 1}": path for i, path in enumerate(request.rasters)}
    inputs.update({f"reference {i + 1}": path.split("|")[0] for i, path in enumerate(request.references)})
    inputs["class table"] = request.classes
    try:
        check_distinct_files({"model": request.out_model, "report": request.report}, inputs)
    except (ValueError, InferenceError) as error:
        raise TrainingRefused(str(error)) from None


def _remap_table(request: TrainRequest) -> CodeTable | None:
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


def _legend(task: str, classes: tuple[ClassInfo, ...]) -> tuple[tuple[int, str, str], ...]:
    """(code, name, colour) per training channel, for the scores and the report."""
    if task == "water":
        return ((0, "Not water", "#cccccc"), WATER_CLASSES[0])
    return tuple((c.code, c.name, c.color) for c in classes)


def _scores(confusion: np.ndarray, task: str, legend) -> dict:
    ious = iou_per_class(confusion)
    names = [name for _, name, _ in legend]
    evaluation = Evaluation(task, legend, confusion)
    present = np.isfinite(ious)
    return {"overall_accuracy": round(evaluation.overall_accuracy, 4),
            "miou": round(float(np.nanmean(ious)), 4) if present.any() else None,
            "iou": {name: round(float(v), 4) for name, v in zip(names, ious) if np.isfinite(v)},
            "pixels": int(confusion.sum())}


def _score_of(scores: dict, task: str) -> float:
    """What picks the best epoch: water IoU (water), mIoU over the classes present (land cover)."""
    value = scores["iou"].get(WATER_CLASSES[0][1]) if task == "water" else scores["miou"]
    return -1.0 if value is None else value


LEGEND_CLASSES = tuple(ClassInfo(code, name, color) for code, name, color in LULC_CLASSES)


def _same_classes(a: tuple[ClassInfo, ...], b: tuple[ClassInfo, ...]) -> bool:
    """Same codes and names in the same order: the same output channels (colours aside)."""
    return [(c.code, c.name.lower()) for c in a] == [(c.code, c.name.lower()) for c in b]


def _given_classes(request: TrainRequest, log) -> tuple[ClassInfo, ...] | None:
    """The land-cover classes the user gives: the class table's, else the category names (and colours)
    the reference rasters carry when no remap table renumbers them; None: the starting model's."""
    if request.task == "water":
        return None
    if request.classes:
        try:
            classes = read_class_table(request.classes)
        except ClassTableError as error:
            raise TrainingRefused(str(error)) from None
        source = f"the class table {pathlib.Path(request.classes).name}"
    elif request.remap:
        return None
    else:
        found: dict[int, ClassInfo] = {}
        for reference in dict.fromkeys(request.references):
            if is_vector(reference):
                continue
            try:
                categories = raster_classes(split_source(reference)[0]) or ()
            except ClassTableError as error:
                raise TrainingRefused(f"{error} Give a class table instead.") from None
            except RuntimeError:  # unreadable: reference_on_grid says so
                continue
            for item in categories:
                if item.code in found and found[item.code].name.lower() != item.name.lower():
                    raise TrainingRefused(f"The references name class {item.code} '{found[item.code].name}' and "
                                          f"'{item.name}': give a class table.")
                found.setdefault(item.code, item)
        if not found:
            return None
        classes = tuple(found[code] for code in sorted(found))
        source = "the class names of the reference raster(s)"
    if len(classes) < 2:
        raise TrainingRefused(f"{source[0].upper()}{source[1:]}: {len(classes)} class only; a land-cover model "
                              f"needs at least two.")
    log(f"classes from {source}: " + ", ".join(f"{c.code} {c.name}" for c in classes))
    return classes


def _with_classes(model: Segmentor, count: int) -> tuple[Segmentor, list[str]]:
    """The network with ``count`` output channels: every tensor of the same shape kept (encoder,
    decoder, the head's refinement), the others (the classifier) from random weights; returns the
    new network and the layers that start afresh."""
    fresh = Segmentor(dataclasses.replace(model.config, num_classes=count))
    kept, state = model.state_dict(), fresh.state_dict()
    renewed = [name for name, value in state.items() if name not in kept or kept[name].shape != value.shape]
    state.update({name: value for name, value in kept.items() if name in state and name not in renewed})
    fresh.load_state_dict(state)
    return fresh, sorted({name.rsplit(".", 1)[0] for name in renewed})


def _start_model(request: TrainRequest, classes: tuple[ClassInfo, ...] | None,
                 log) -> tuple[Segmentor, ModelContract | None, str, tuple[ClassInfo, ...]]:
    """(network, the starting model's contract or None from scratch, a name for the log and provenance,
    the model's classes: ``classes`` or, without them, the starting model's)."""
    if request.start == START_SCRATCH:
        legend = classes or LEGEND_CLASSES
        channels = 1 if request.task == "water" else len(legend)
        log("starting from random weights (tiny-cpu network)")
        return Segmentor(named_config("tiny-cpu", num_classes=channels)), None, "random weights (tiny-cpu)", legend
    path = bundled_model_path(request.task) if request.start == START_BUNDLED else pathlib.Path(request.start)
    try:
        model, contract = segmentor_from_onnx(path)
    except (ValueError, OSError, InferenceError) as error:
        raise TrainingRefused(f"The starting model cannot be fine-tuned: {error}") from None
    if contract.task != request.task:
        raise TrainingRefused(f"The starting model '{path}' is a {contract.task} model; the task is {request.task}.")
    log(f"starting from {contract.model_name} ({path.name}), rebuilt in torch from its ONNX file")
    legend = classes or contract.classes
    if request.task == "lulc" and not _same_classes(legend, contract.classes):
        model, renewed = _with_classes(model, len(legend))
        log(f"the {len(legend)} training classes are not the starting model's {len(contract.classes)}: its encoder "
            f"and decoder are kept, its classification head is replaced ({', '.join(renewed)} start from random "
            f"weights, one output channel per class)")
    return model, contract, f"{contract.model_name} ({path.name})", legend


@gdal_exceptions()
def train_for_area(request: TrainRequest, log=print, progress=None, is_cancelled=None) -> TrainResult:
    """Run ``request``; ``progress`` gets 0..100, ``is_cancelled()`` is polled between batches. Raises
    TrainingRefused (bad input, before training) or TrainingCancelled; writes nothing in either case."""
    check_request(request)
    cancelled = is_cancelled or (lambda: False)
    progress = progress or (lambda value: None)
    if request.threads:
        torch.set_num_threads(request.threads)
    torch.manual_seed(request.seed)
    try:
        runtime = engine.setup_runtime(request.device)
    except RuntimeError as error:
        raise TrainingRefused(str(error)) from None
    device_name = (torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda"
                   else f"CPU, {torch.get_num_threads()} threads")
    log(f"device: {runtime.device.type} ({device_name})")
    remap = _remap_table(request)
    model, start_contract, start_name, classes = _start_model(request, _given_classes(request, log), log)
    lulc = request.task == "lulc"
    # Reference codes -> label codes 1..N, one per output channel in the model's order (lulc).
    channel_codes = np.zeros(256, np.uint8)
    for channel, item in enumerate(classes):
        channel_codes[item.code] = channel + 1
    custom = lulc and not _same_classes(classes, LEGEND_CLASSES)
    legend = _legend(request.task, classes)
    options = ReadOptions(_units(request.input_units), request.calibration_factor,
                          start_contract.gsd_m if start_contract else 10.0)
    with tempfile.TemporaryDirectory(prefix="sarlulc-train-") as scratch:
        folder = pathlib.Path(scratch)
        sars, codes, grids = [], [], []
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
            sars.append(sar)
            codes.append(channel_codes[scene_codes] if lulc else scene_codes)
            grids.append(grid)
            if cancelled():
                raise TrainingCancelled()
        counts = sum(_channel_counts(scene, request.task, len(classes)) for scene in codes)
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
        for index, (sar, scene, mask, grid) in enumerate(zip(sars, codes, held, grids)):
            train_path, val_path = folder / f"train_{index}.tif", folder / f"val_{index}.tif"
            _write_label(train_path, np.where(mask, 0, scene).astype(np.uint8), grid)
            _write_label(val_path, np.where(mask, scene, 0).astype(np.uint8), grid)
            train_scenes.append(Scene(pathlib.Path(sar.path), train_path))
            val_scenes.append(Scene(pathlib.Path(sar.path), val_path))
        train_counts = sum(_channel_counts(np.where(m, 0, c), request.task, len(classes))
                           for c, m in zip(codes, held))
        val_pixels = int(sum(np.count_nonzero(c[m]) for c, m in zip(codes, held)))
        log(f"validation: {int(sum(m.sum() for m in held)) // request.block_size ** 2} blocks of "
            f"{request.block_size} px, {val_pixels:,} labelled pixels ({val_pixels / counts.sum():.0%}); "
            f"training: {int(train_counts.sum()):,} labelled pixels")
        log("labelled training pixels per class: " + ", ".join(
            f"{name} {int(n):,}" for name, n in zip(names, train_counts) if n))

        facts = {sar.path: sar.facts() for sar in sars}
        jitter = CalibrationJitter(request.level_jitter, request.gain_jitter)
        if start_contract is not None:
            normalisation = Normalisation(start_contract.norm_clip, start_contract.norm_mean, start_contract.norm_std,
                                          start_contract.norm_mode)
        else:
            normalisation = normalisation_of(NORM_FIXED, sars)
        weights = class_weights(train_counts, request.alpha)
        train_set = SegmentationCrops(train_scenes, normalisation, request.crop_size, request.samples_per_epoch,
                                      request.task, request.seed, jitter, options, facts, request.balanced_share,
                                      channels=len(classes))
        val_labels = [LabelRaster(scene.label, scene.profile, sar) for scene, sar in zip(val_scenes, train_set.sars)]
        val_set = SegmentationTiles(val_scenes, normalisation, VALIDATION_TILE, request.task, options, facts,
                                    validation_tiles(val_labels, VALIDATION_TILE))
        train_loader = engine.loader(train_set, request.batch_size, 0, runtime, shuffle=True, drop_last=True)
        val_loader = engine.loader(val_set, request.batch_size, 0, runtime, shuffle=False, drop_last=False)

        binary = request.task == "water"
        model.to(runtime.device)
        start_confusion = evaluate(model, val_loader, len(names), binary, runtime, "none")
        start_scores = _scores(start_confusion, request.task, legend)
        log(f"starting model on the validation blocks: overall accuracy {start_scores['overall_accuracy']:.3f}, "
            f"mIoU {start_scores['miou']}; " + ", ".join(f"{k} {v:.3f}" for k, v in start_scores["iou"].items()))
        criterion = FocalDiceLoss(binary, weights, 2.0, 1.0, 1.0).to(runtime.device)
        optimizer = engine.adamw(model, request.lr, 0.05)
        steps_per_epoch = len(train_loader)
        total_steps = request.epochs * steps_per_epoch
        warmup = max(1, steps_per_epoch // 2)
        started = time.time()
        budget = request.minutes * 60 if request.minutes else None

        def schedule(step: int) -> float:
            done = step / total_steps
            if budget:
                done = max(done, (time.time() - started) / budget)
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        history = [{"epoch": 0, "train_loss": None, "val_score": _score_of(start_scores, request.task),
                    "seconds": 0.0}]
        best_score, best_state, best_epoch, best_confusion = -math.inf, None, 0, None
        step = 0
        frozen_norms = start_contract is not None
        for epoch in range(request.epochs):
            epoch_start = time.time()
            train_set.set_epoch(epoch)
            if frozen_norms:
                train_keeping_batch_norm(model)
            else:
                model.train()
            losses = []
            for image, target in train_loader:
                if cancelled():
                    raise TrainingCancelled()
                image, target = image.to(runtime.device), target.to(runtime.device)
                loss = criterion(model(image), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                step += 1
                elapsed = time.time() - started
                fraction = step / total_steps if not budget else max(step / total_steps, elapsed / budget)
                progress(min(99.0, 100.0 * fraction))
                if budget and elapsed >= budget:
                    break
            confusion = evaluate(model, val_loader, len(names), binary, runtime, "none")
            scores = _scores(confusion, request.task, legend)
            score = _score_of(scores, request.task)
            seconds = time.time() - epoch_start
            history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_score": score,
                            "seconds": round(seconds, 1)})
            improved = score > best_score
            if improved:
                best_score, best_epoch, best_confusion = score, epoch + 1, confusion
                best_state = copy.deepcopy(model.state_dict())
            elapsed = time.time() - started
            left = ((request.epochs - epoch - 1) * elapsed / (epoch + 1)) if not budget else max(0.0, budget - elapsed)
            log(f"epoch {epoch + 1}/{request.epochs}: loss {np.mean(losses):.4f}, validation "
                f"{'water IoU' if binary else 'mIoU'} {score:.4f}{' (best)' if improved else ''}; "
                f"{seconds:.0f} s on {runtime.device.type}, about {left / 60:.1f} min left")
            if budget and elapsed >= budget:
                log(f"time budget of {request.minutes:g} min reached after epoch {epoch + 1}")
                break
        model.load_state_dict(best_state)
        model.eval()
        trained_scores = _scores(best_confusion, request.task, legend)
        if best_score < _score_of(start_scores, request.task):
            log(f"warning: the best epoch ({best_epoch}) scores {best_score:.4f} on the validation blocks, below the "
                f"starting model's {_score_of(start_scores, request.task):.4f}: more labels or epochs may help")
        log(f"kept epoch {best_epoch}: overall accuracy {trained_scores['overall_accuracy']:.3f} "
            f"(starting model {start_scores['overall_accuracy']:.3f}), "
            + ", ".join(f"{k} {v:.3f}" for k, v in trained_scores["iou"].items()))
        if cancelled():
            raise TrainingCancelled()
        model.cpu()
        training = {
            "inputs": [{"sar": raster, "band": request.band,
                        "reference": request.references[i if len(request.references) > 1 else 0]}
                       for i, raster in enumerate(request.rasters)],
            "class_field": request.class_field, "remap": request.remap, "classes": request.classes,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "start": start_name, "epochs_run": len(history) - 1, "best_epoch": best_epoch,
            "settings": {k: v for k, v in asdict(request).items()
                         if k in ("epochs", "minutes", "samples_per_epoch", "batch_size", "crop_size", "lr",
                                  "validation_share", "block_size", "seed", "input_units", "calibration_factor")},
            "validation": {"blocks_px": request.block_size, "pixels": val_pixels,
                           "start_model": start_scores, "trained_model": trained_scores}}
        trained_on = (f"fine-tuned from {start_name} on " if start_contract else "trained from random weights on ") + \
            ", ".join(pathlib.Path(r).name for r in request.rasters) + " with " + \
            ", ".join(sorted({pathlib.Path(r.split("|")[0]).name for r in request.references}))
        distribution = input_distribution(sars, jitter)
        contract = contract_for(
            request.task, normalisation, start_contract.tile_size if start_contract else VALIDATION_TILE,
            start_contract.tile_overlap if start_contract else VALIDATION_TILE // 4, options.gsd_m,
            start_contract.water_threshold if start_contract and start_contract.water_threshold else 0.5,
            f"{pathlib.Path(request.out_model).stem} ({request.task}, trained for an area, epoch {best_epoch})",
            trained_on, InputDistribution.from_json(json.dumps(distribution)) if distribution else None,
            start_contract.water_threshold_relative if start_contract else None, json.dumps(training))
        if lulc:
            contract = dataclasses.replace(contract, classes=classes)
        with PendingFiles() as pending:
            model_file = pending.new(request.out_model)
            export_onnx(model, contract, model_file)
            ModelContract.from_onnx(model_file, expected_task=request.task)
            difference = parity(model, model_file, contract.tile_size, batch=1)
            if not difference <= PARITY_TOLERANCE:
                raise RuntimeError(f"the exported model differs from the trained network by {difference:.2e}")
            if request.report:
                from .train_report import write_training_report
                facts_lines = {
                    "Model": request.out_model, "Task": request.task, "Started from": start_name,
                    "SAR rasters": ", ".join(request.rasters), "References": ", ".join(request.references),
                    "Device": f"{runtime.device.type} ({device_name})",
                    "Epochs run": f"{len(history) - 1} (kept: {best_epoch})",
                    "Validation": f"{val_pixels:,} labelled pixels in blocks of {request.block_size} px, "
                                  f"never trained on",
                    "Date": training["date"]}
                write_training_report(pending.new(request.report), history,
                                      Evaluation(request.task, legend, start_confusion),
                                      Evaluation(request.task, legend, best_confusion), facts_lines)
            if cancelled():
                raise TrainingCancelled()
    progress(100.0)
    log(f"wrote {request.out_model}" + (f" and {request.report}" if request.report else ""))
    return TrainResult(request.out_model, request.report, best_epoch, start_scores, trained_scores, history)


def parse_args(argv=None) -> TrainRequest:
    defaults = TrainRequest([], [], "")
    p = argparse.ArgumentParser(prog="python -m model.net.finetune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sar", nargs="+", required=True, help="SAR rasters (read as Segment reads them)")
    p.add_argument("--reference", nargs="+", required=True,
                   help="class raster(s) or vector layer(s) (file or 'file.gpkg|layername=NAME'): one for all SAR "
                        "rasters or one per raster")
    p.add_argument("--out", required=True, help="ONNX model to write")
    p.add_argument("--report", help="HTML report to write")
    p.add_argument("--task", choices=("lulc", "water"), default=defaults.task)
    p.add_argument("--class-field", help="class field of vector references (codes or class names)")
    p.add_argument("--remap", help="remap table of the reference codes: a shipped table's name or a CSV file")
    p.add_argument("--classes", help="class table (CSV code,name,color, one row per class): the model's own "
                                     "land-cover classes (default: the reference raster's category names, else "
                                     "the starting model's)")
    p.add_argument("--band", type=int, default=defaults.band)
    p.add_argument("--input-units", choices=sorted(UNITS_FLAGS), default=defaults.input_units)
    p.add_argument("--calibration-factor", type=float, default=defaults.calibration_factor)
    p.add_argument("--start", default=defaults.start,
                   help="bundled (fine-tune the plugin's model), scratch, or a plugin .onnx model to fine-tune")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--minutes", type=float, help="time budget; training ends with the epoch that reaches it")
    p.add_argument("--samples-per-epoch", type=int, default=defaults.samples_per_epoch)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--crop-size", type=int, default=defaults.crop_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--alpha", type=float, default=defaults.alpha,
                   help="class-weight tempering: 0 uniform, 1 inverse frequency")
    p.add_argument("--balanced-share", type=float, default=defaults.balanced_share,
                   help="share of crops centred on a pixel of a class drawn uniformly among the classes present")
    p.add_argument("--validation-share", type=float, default=defaults.validation_share,
                   help="share of the labelled pixels held out for validation, in whole blocks")
    p.add_argument("--block-size", type=int, default=defaults.block_size, help="validation block edge, px")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=defaults.device)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's choice)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    args = p.parse_args(argv)
    return TrainRequest(args.sar, args.reference, args.out, args.report, args.task, args.class_field, args.remap,
                        args.band, args.input_units, args.calibration_factor, args.start, args.epochs, args.minutes,
                        args.samples_per_epoch, args.batch_size, args.crop_size, args.lr, args.validation_share,
                        args.block_size, balanced_share=args.balanced_share, alpha=args.alpha, device=args.device,
                        threads=args.threads, seed=args.seed, classes=args.classes)


@gdal_exceptions()
def main(argv=None) -> int:
    request = parse_args(argv)
    try:
        train_for_area(request)
    except TrainingRefused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled: nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

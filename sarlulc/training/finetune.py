"""Train a model for your area: SAR rasters + references -> an ONNX model with the plugin's contract
and an HTML report. The engine of ``sarlulc:train``; the same as a command line:

    python -m sarlulc.training.finetune --sar scene.tif --reference landcover.tif --out my_model.onnx
    python -m sarlulc.training.finetune --sar a.tif b.tif --reference checks.gpkg --class-field class \\
        --remap jaxa-hrlulc-v23.12 --minutes 20 --out my_model.onnx --report my_model.html
    python -m sarlulc.training.finetune --sar scene.tif --reference habitats.tif --classes habitats.csv --out habitats.onnx

The SAR rasters are read exactly as Segment reads them (band, units, calibration factor, the model
grid), references are put on that grid (sarlulc/training/reference.py). A share of the labelled pixels,
whole square blocks of them, is held out for validation: training never learns from their labels,
every epoch is scored on them, the best epoch is kept, and the report compares it with the
starting model on the same blocks. Fine-tuning starts from the bundled model (or any plugin ONNX
model) rebuilt in torch from its ONNX file (sarlulc/training/onnx_weights.py); ``--start scratch`` trains
the ``tiny-cpu`` network from random weights. Nothing is written until the end (model and report
together); a cancelled or failed run leaves no file.

The model's classes (land cover) are a class table's (``--classes``, CSV code,name,color), else the
category names and colours of the reference rasters, else the starting model's (the bundled 9)
(sarlulc/training/area_classes.py); the exported contract carries their codes, names and colours.
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
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..products import WATER_CLASSES
from ..evaluation import Evaluation
from ..errors import InferenceError, gdal_exceptions
from ..inference.contract import NORM_FIXED, ClassInfo, InputDistribution, ModelContract, bundled_model_path
from ..sar.units import UNITS_FLAGS
from ..rasters.transaction import PendingFiles
from . import plumbing
from .area_classes import LEGEND_CLASSES, given_classes, same_classes, training_legend, with_classes
from .area_labels import AreaLabels, HeldOut, hold_out, read_area, remap_table
from .area_request import (START_BUNDLED, START_SCRATCH, TrainingCancelled, TrainingRefused, TrainRequest, TrainResult,
                           check_request, units_of)
from ..networks.configs import named_config
from .datasets import SegmentationCrops, SegmentationTiles
from .export import contract_for, export_onnx, parity
from .losses import FocalDiceLoss, class_weights
from .input_statistics import Normalisation, input_distribution, normalisation_of
from .onnx_weights import segmentor_from_onnx, train_keeping_batch_norm
from .rasters import LabelRaster, ReadOptions
from .sampling import CalibrationJitter, validation_tiles
from ..networks.segmentor import Segmentor
from .train import evaluate, iou_per_class

VALIDATION_TILE = 256
PARITY_TOLERANCE = 1e-3


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
    if request.task == "lulc" and not same_classes(legend, contract.classes):
        model, renewed = with_classes(model, len(legend))
        log(f"the {len(legend)} training classes are not the starting model's {len(contract.classes)}: its encoder "
            f"and decoder are kept, its classification head is replaced ({', '.join(renewed)} start from random "
            f"weights, one output channel per class)")
    return model, contract, f"{contract.model_name} ({path.name})", legend


@dataclass
class _Data:
    """What training and validation read: the normalisation and jitter the crops get, the loaders."""

    normalisation: Normalisation
    jitter: CalibrationJitter
    weights: torch.Tensor
    train_set: SegmentationCrops
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader


@dataclass
class _Fit:
    """The epochs run: scores of the starting model and of the best epoch, which the network now holds."""

    history: list
    start_confusion: np.ndarray
    start_scores: dict
    best_epoch: int
    best_confusion: np.ndarray
    trained_scores: dict


class _AreaRun:
    """The phases of :func:`train_for_area` over the state they share: start (device, starting model,
    how rasters are read), datasets, fit (the epochs; the best one kept), write (model and report
    together). Reading the area's labels is sarlulc/training/area_labels.py."""

    def __init__(self, request: TrainRequest, log, progress, cancelled):
        self.request, self.log, self.progress, self.cancelled = request, log, progress, cancelled

    def start(self):
        """Device, starting network and read options; returns the request's remap table."""
        request, log = self.request, self.log
        if request.threads:
            torch.set_num_threads(request.threads)
        torch.manual_seed(request.seed)
        try:
            self.runtime = plumbing.setup_runtime(request.device)
        except RuntimeError as error:
            raise TrainingRefused(str(error)) from None
        device = self.runtime.device
        self.device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else f"CPU, {torch.get_num_threads()} threads")
        log(f"device: {device.type} ({self.device_name})")
        remap = remap_table(request)
        self.model, self.start_contract, self.start_name, self.classes = _start_model(
            request, given_classes(request, log), log)
        self.legend = training_legend(request.task, self.classes)
        self.options = ReadOptions(units_of(request.input_units), request.calibration_factor,
                                   self.start_contract.gsd_m if self.start_contract else 10.0)
        return remap

    def datasets(self, area: AreaLabels, held: HeldOut) -> _Data:
        request, runtime = self.request, self.runtime
        facts = {sar.path: sar.facts() for sar in area.sars}
        jitter = CalibrationJitter(request.level_jitter, request.gain_jitter)
        start_contract = self.start_contract
        if start_contract is not None:
            normalisation = Normalisation(start_contract.norm_clip, start_contract.norm_mean, start_contract.norm_std,
                                          start_contract.norm_mode)
        else:
            normalisation = normalisation_of(NORM_FIXED, area.sars)
        weights = class_weights(held.train_counts, request.alpha)
        train_set = SegmentationCrops(held.train_scenes, normalisation, request.crop_size, request.samples_per_epoch,
                                      request.task, request.seed, jitter, self.options, facts, request.balanced_share,
                                      channels=len(self.classes))
        val_labels = [LabelRaster(scene.label, scene.profile, sar)
                      for scene, sar in zip(held.val_scenes, train_set.sars)]
        val_set = SegmentationTiles(held.val_scenes, normalisation, VALIDATION_TILE, request.task, self.options, facts,
                                    validation_tiles(val_labels, VALIDATION_TILE))
        train_loader = plumbing.loader(train_set, request.batch_size, 0, runtime, shuffle=True, drop_last=True)
        val_loader = plumbing.loader(val_set, request.batch_size, 0, runtime, shuffle=False, drop_last=False)
        return _Data(normalisation, jitter, weights, train_set, train_loader, val_loader)

    def fit(self, data: _Data) -> _Fit:
        """Scores the starting model, trains epoch by epoch (within the time budget) and keeps the best."""
        request, runtime, log, model = self.request, self.runtime, self.log, self.model
        names = [name for _, name, _ in self.legend]
        binary = request.task == "water"
        model.to(runtime.device)
        start_confusion = evaluate(model, data.val_loader, len(names), binary, runtime, "none")
        start_scores = _scores(start_confusion, request.task, self.legend)
        log(f"starting model on the validation blocks: overall accuracy {start_scores['overall_accuracy']:.3f}, "
            f"mIoU {start_scores['miou']}; " + ", ".join(f"{k} {v:.3f}" for k, v in start_scores["iou"].items()))
        criterion = FocalDiceLoss(binary, data.weights, 2.0, 1.0, 1.0).to(runtime.device)
        optimizer = plumbing.adamw(model, request.lr, 0.05)
        steps_per_epoch = len(data.train_loader)
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
        frozen_norms = self.start_contract is not None
        for epoch in range(request.epochs):
            epoch_start = time.time()
            data.train_set.set_epoch(epoch)
            if frozen_norms:
                train_keeping_batch_norm(model)
            else:
                model.train()
            losses = []
            for image, target in data.train_loader:
                if self.cancelled():
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
                self.progress(min(99.0, 100.0 * fraction))
                if budget and elapsed >= budget:
                    break
            confusion = evaluate(model, data.val_loader, len(names), binary, runtime, "none")
            scores = _scores(confusion, request.task, self.legend)
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
        trained_scores = _scores(best_confusion, request.task, self.legend)
        if best_score < _score_of(start_scores, request.task):
            log(f"warning: the best epoch ({best_epoch}) scores {best_score:.4f} on the validation blocks, below the "
                f"starting model's {_score_of(start_scores, request.task):.4f}: more labels or epochs may help")
        log(f"kept epoch {best_epoch}: overall accuracy {trained_scores['overall_accuracy']:.3f} "
            f"(starting model {start_scores['overall_accuracy']:.3f}), "
            + ", ".join(f"{k} {v:.3f}" for k, v in trained_scores["iou"].items()))
        return _Fit(history, start_confusion, start_scores, best_epoch, best_confusion, trained_scores)

    def write(self, area: AreaLabels, held: HeldOut, data: _Data, fit: _Fit) -> None:
        """The ONNX model with its contract and provenance, checked against the network, and the report:
        both or neither."""
        request, model, start_contract, start_name = self.request, self.model, self.start_contract, self.start_name
        history, best_epoch = fit.history, fit.best_epoch
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
            "validation": {"blocks_px": request.block_size, "pixels": held.val_pixels,
                           "start_model": fit.start_scores, "trained_model": fit.trained_scores}}
        trained_on = (f"fine-tuned from {start_name} on " if start_contract else "trained from random weights on ") + \
            ", ".join(pathlib.Path(r).name for r in request.rasters) + " with " + \
            ", ".join(sorted({pathlib.Path(r.split("|")[0]).name for r in request.references}))
        distribution = input_distribution(area.sars, data.jitter)
        contract = contract_for(
            request.task, data.normalisation, start_contract.tile_size if start_contract else VALIDATION_TILE,
            start_contract.tile_overlap if start_contract else VALIDATION_TILE // 4, self.options.gsd_m,
            start_contract.water_threshold if start_contract and start_contract.water_threshold else 0.5,
            f"{pathlib.Path(request.out_model).stem} ({request.task}, trained for an area, epoch {best_epoch})",
            trained_on, InputDistribution.from_json(json.dumps(distribution)) if distribution else None,
            start_contract.water_threshold_relative if start_contract else None, json.dumps(training))
        if request.task == "lulc":
            contract = dataclasses.replace(contract, classes=self.classes)
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
                    "Device": f"{self.runtime.device.type} ({self.device_name})",
                    "Epochs run": f"{len(history) - 1} (kept: {best_epoch})",
                    "Validation": f"{held.val_pixels:,} labelled pixels in blocks of {request.block_size} px, "
                                  f"never trained on",
                    "Date": training["date"]}
                write_training_report(pending.new(request.report), history,
                                      Evaluation(request.task, self.legend, fit.start_confusion),
                                      Evaluation(request.task, self.legend, fit.best_confusion),
                                      facts_lines)
            if self.cancelled():
                raise TrainingCancelled()


@gdal_exceptions()
def train_for_area(request: TrainRequest, log=print, progress=None, is_cancelled=None) -> TrainResult:
    """Run ``request``; ``progress`` gets 0..100, ``is_cancelled()`` is polled between batches. Raises
    TrainingRefused (bad input, before training) or TrainingCancelled; writes nothing in either case."""
    check_request(request)
    run = _AreaRun(request, log, progress or (lambda value: None), is_cancelled or (lambda: False))
    remap = run.start()
    with tempfile.TemporaryDirectory(prefix="sarlulc-train-") as scratch:
        folder = pathlib.Path(scratch)
        area = read_area(request, run.options, remap, folder, log, run.cancelled, run.classes)
        held = hold_out(area, request, folder, log, run.legend)
        data = run.datasets(area, held)
        fit = run.fit(data)
        if run.cancelled():
            raise TrainingCancelled()
        run.write(area, held, data, fit)
    run.progress(100.0)
    log(f"wrote {request.out_model}" + (f" and {request.report}" if request.report else ""))
    return TrainResult(request.out_model, request.report, fit.best_epoch, fit.start_scores, fit.trained_scores,
                       fit.history)


def parse_args(argv=None) -> TrainRequest:
    defaults = TrainRequest([], [], "")
    p = argparse.ArgumentParser(prog="python -m sarlulc.training.finetune", description=__doc__.split("\n\n")[0],
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

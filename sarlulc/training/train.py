"""Fine-tuning CLI: SAR/label GeoTIFF pairs -> best.pt / last.pt / metrics.json.

    python -m sarlulc.training.train --train DATA/train --val DATA/val --out runs/lulc [options]
    torchrun --nproc_per_node=4 -m sarlulc.training.train ... --device cuda --amp bf16

See model/README.md for the data naming, the options and the ablation switches.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from . import plumbing
from .area_classes import LEGEND_CLASSES, training_legend
from ..networks.configs import NAMED_CONFIGS, EncoderConfig, NetConfig, named_config
from ..inference.contract import NORM_FIXED, NORM_MODES
from .datasets import SegmentationCrops, SegmentationTiles
from .input_statistics import Normalisation, input_distribution, normalisation_of
from .rasters import LabelRaster, add_read_arguments, open_rasters, read_options
from .sampling import (CalibrationJitter, WATER_LABEL_CONTRAST_DB, label_histogram, profile_shares, task_histogram,
                       validation_tiles)
from .sources import find_pairs
from .losses import IGNORE_INDEX, FocalDiceLoss, class_weights
from ..networks.segmentor import Segmentor
from ..errors import gdal_exceptions


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sarlulc.training.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="folders of <name>_sar.tif/<name>_label.tif, or list files")
    p.add_argument("--val", nargs="+", help="validation folders/list files (default: hold out --val-fraction of the files)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of training files held out when --val is absent")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output folder for checkpoints and metrics.json")
    p.add_argument("--task", choices=("lulc", "water"), default="lulc")
    p.add_argument("--config", choices=sorted(NAMED_CONFIGS), default="tiny-cpu", help="network size")
    p.add_argument("--hr-injection", action=argparse.BooleanOptionalAction, default=None,
                   help="high-resolution feature injection (default: the config's, on)")
    p.add_argument("--refine-up", action=argparse.BooleanOptionalAction, default=None,
                   help="progressive refine-up head (default: the config's, on)")
    p.add_argument("--pretrained-encoder", type=pathlib.Path, help="encoder.pt written by sarlulc.training.pretrain")
    p.add_argument("--alpha", type=float, default=0.5, help="class-weight tempering: 0 uniform, 1 inverse frequency")
    p.add_argument("--gamma", type=float, default=2.0, help="focal loss focusing parameter")
    p.add_argument("--focal-weight", type=float, default=1.0)
    p.add_argument("--dice-weight", type=float, default=1.0)
    p.add_argument("--norm-mode", choices=NORM_MODES,
                   help="input normalisation: fixed (dB statistics of the training set), scene (each raster's "
                        "median removed first, robust to calibration offsets) or scene-land (the median of each "
                        "raster's brighter population, its land, removed first: also robust to scenes mostly of "
                        "water); default: the pretrained encoder's, else fixed")
    p.add_argument("--level-jitter", type=float, default=0.0,
                   help="random calibration offset per crop, up to this many dB (0 = off)")
    p.add_argument("--gain-jitter", type=float, default=0.0,
                   help="random contrast gain per crop, up to exp(+-this) around the scene median (0 = off)")
    p.add_argument("--balanced-share", type=float, default=0.0,
                   help="share of crops centred on a pixel of a class drawn uniformly among the classes present "
                        "(rare classes seen as often as common ones; 0 = uniform crops)")
    p.add_argument("--profile-share", action="append", default=[], metavar="PROFILE=SHARE",
                   help="share of the training crops drawn from the sources of one data profile (e.g. "
                        "etci2021=0.75); profiles not named split the rest equally (default: equal shares)")
    plumbing.add_schedule_arguments(p, epochs=50, samples_per_epoch=2000, batch_size=8, crop_size=256, lr=2e-4,
                                    warmup_epochs=1.0,
                                    crop_help="training crop and validation tile edge, px (multiple of 32)")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="validate and save an exponential moving average of the weights with this decay per step "
                        "(e.g. 0.998); 0 = the last step's weights (--resume continues a saved average)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and after the last)")
    p.add_argument("--val-max-tiles", type=int,
                   help="validate on at most this many tiles, a random subset fixed by --seed (default: all tiles "
                        "that hold labels)")
    add_read_arguments(p)
    plumbing.add_runtime_arguments(p)
    args = p.parse_args(argv)
    if args.val_every < 1 or (args.val_max_tiles is not None and args.val_max_tiles < 1):
        p.error("--val-every and --val-max-tiles must be >= 1")
    try:
        args.profile_share = {name: float(share) for name, share in
                              (item.split("=", 1) for item in args.profile_share)}
    except ValueError:
        p.error(f"--profile-share takes PROFILE=SHARE, e.g. etci2021=0.75; got {' '.join(args.profile_share)}")
    if not 0.0 <= args.ema_decay < 1.0:
        p.error(f"--ema-decay must be in [0, 1), got {args.ema_decay:g}")
    if args.crop_size % 32:
        p.error(f"--crop-size must be a multiple of 32, got {args.crop_size}")
    if args.batch_size < 1 or args.epochs < 1 or args.samples_per_epoch < args.batch_size:
        p.error("--batch-size and --epochs must be >= 1 and --samples-per-epoch >= --batch-size")
    return args


def split_pairs(args, runtime: plumbing.Runtime):
    pairs = find_pairs(args.train)
    if args.val:
        return pairs, find_pairs(args.val)
    if len(pairs) == 1:
        runtime.log("warning: one training scene and no --val: validating on the training scene itself")
        return pairs, pairs
    held = max(1, round(len(pairs) * args.val_fraction))
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    return [pairs[i] for i in order[held:]], [pairs[i] for i in order[:held]]


STATISTICS_FILE = "data_statistics.json"


def data_statistics(train_pairs, val_pairs, task: str, options, norm_mode: str | None, jitter: CalibrationJitter,
                    tile_size: int, processes: int = 1) -> dict:
    """What training learns by reading whole rasters, once (rank 0, cached; see plumbing.computed_once):
    every label raster checked against the legend (validation labels too, before any epoch), class
    pixel counts, each SAR raster's units and scene statistics, the input normalisation (``norm_mode``;
    None when it is given), the training input distribution and the validation tiles."""
    counts = task_histogram(label_histogram(train_pairs, task), task)
    label_histogram(val_pairs, task)
    sars = open_rasters(train_pairs + val_pairs, options, processes)
    train_sars = [sars[str(scene.sar)] for scene in train_pairs]
    val_labels = [LabelRaster(scene.label, scene.profile, sars[str(scene.sar)]) for scene in val_pairs]
    normalisation = normalisation_of(norm_mode, train_sars) if norm_mode else None
    return {"facts": {path: sar.facts() for path, sar in sars.items()}, "class_counts": counts.tolist(),
            "normalisation": normalisation.to_dict() if normalisation else None,
            "input_distribution": input_distribution(train_sars, jitter),
            "val_tiles": validation_tiles(val_labels, tile_size)}


def statistics_key(train_pairs, val_pairs, args, options, norm_mode: str | None) -> dict:
    """What :func:`data_statistics` depends on."""
    def scenes(pairs):
        return [[*plumbing.files_key([scene.sar, scene.label]), scene.profile] for scene in pairs]
    return {"version": 2, "task": args.task, "train": scenes(train_pairs), "val": scenes(val_pairs),
            "read": [options.input_units.value, options.calibration_factor, options.gsd_m], "norm_mode": norm_mode,
            "jitter": [args.level_jitter, args.gain_jitter], "tile_size": args.crop_size}


def load_pretrained_encoder(model: Segmentor, path: pathlib.Path) -> dict:
    """Load an encoder.pt from sarlulc.training.pretrain; returns its normalisation (or {})."""
    checkpoint = torch.load(path, map_location="cpu")
    if "encoder" not in checkpoint:
        raise ValueError(f"'{path}' is not an encoder checkpoint of sarlulc.training.pretrain (no 'encoder' key).")
    saved = EncoderConfig.from_dict(checkpoint["encoder_config"]).__dict__
    current = model.config.encoder.__dict__
    differing = [k for k in current if k != "drop_path" and saved.get(k) != current[k]]
    if differing:
        raise ValueError(f"The pretrained encoder '{path}' does not fit --config: {', '.join(differing)} differ "
                         f"({', '.join(f'{k}={saved.get(k)} vs {current[k]}' for k in differing)}).")
    model.encoder.load_state_dict(checkpoint["encoder"])
    return checkpoint.get("normalisation", {})


def evaluate(model, loader, num_channels: int, binary: bool, runtime, amp: str) -> np.ndarray:
    """Confusion matrix (true x predicted) over all valid validation pixels, summed over ranks."""
    size = 2 if binary else num_channels
    confusion = torch.zeros(size * size, dtype=torch.int64, device=runtime.device)
    model.eval()
    with torch.no_grad():
        for image, target in loader:
            image, target = image.to(runtime.device), target.to(runtime.device)
            with plumbing.autocast(runtime, amp):
                logits = model(image)
            predicted = (logits[:, 0] > 0).long() if binary else logits.argmax(1)
            valid = target != IGNORE_INDEX
            confusion += torch.bincount(target[valid] * size + predicted[valid], minlength=size * size)
    return plumbing.all_reduce_sum(confusion, runtime).view(size, size).cpu().numpy()


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for a class absent from both truth and prediction."""
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, np.nan)


@gdal_exceptions()
def main(argv=None) -> int:
    return plumbing.run_cli(parse_args(argv), run)


def run(args, runtime: plumbing.Runtime):
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    binary = args.task == "water"
    names = [name for _, name, _ in training_legend(args.task, LEGEND_CLASSES)]
    resume = torch.load(args.resume, map_location="cpu") if args.resume else None
    if resume is not None:
        config = NetConfig.from_dict(resume["net_config"])
        runtime.log(f"resuming from {args.resume} after epoch {resume['epoch']} (network config from the checkpoint)")
    else:
        overrides = {k: v for k, v in (("hr_injection", args.hr_injection), ("refine_up", args.refine_up)) if v is not None}
        config = named_config(args.config, num_classes=1 if binary else len(names), **overrides)
    model = Segmentor(config)
    norm_source = {}
    if args.pretrained_encoder and resume is None:
        norm_source = load_pretrained_encoder(model, args.pretrained_encoder)
        runtime.log(f"encoder initialised from {args.pretrained_encoder}")

    train_pairs, val_pairs = split_pairs(args, runtime)
    try:
        shares = profile_shares([scene.profile for scene in train_pairs], args.profile_share)
    except ValueError as error:
        raise SystemExit(f"--profile-share: {error}") from None
    options = read_options(args)
    normalisation = None
    if resume is not None:
        normalisation = Normalisation.from_dict(resume["normalisation"])
    elif args.norm_mean is not None or args.norm_std is not None:
        if args.norm_mean is None or args.norm_std is None or args.norm_std <= 0:
            raise SystemExit("Give both --norm-mean and --norm-std (std > 0), or neither.")
        normalisation = Normalisation(norm_mean=args.norm_mean, norm_std=args.norm_std)
    elif norm_source and args.norm_mode in (None, norm_source.get("norm_mode", NORM_FIXED)):
        normalisation = Normalisation.from_dict(norm_source)
    norm_mode = None if normalisation else (args.norm_mode or NORM_FIXED)
    jitter = CalibrationJitter(args.level_jitter, args.gain_jitter)
    statistics = plumbing.computed_once(
        lambda: data_statistics(train_pairs, val_pairs, args.task, options, norm_mode, jitter, args.crop_size,
                                args.workers),
        args.out / STATISTICS_FILE, statistics_key(train_pairs, val_pairs, args, options, norm_mode), runtime)
    normalisation = normalisation or Normalisation.from_dict(statistics["normalisation"])
    weights = class_weights(np.array(statistics["class_counts"]), args.alpha)
    runtime.log(f"{len(train_pairs)} training / {len(val_pairs)} validation scenes; input normalisation "
                f"{normalisation.norm_mode}: clip {normalisation.norm_clip} mean {normalisation.norm_mean:.3f} "
                f"std {normalisation.norm_std:.3f}")
    runtime.log("class weights (alpha=%g): " % args.alpha +
                ", ".join(f"{n} {w:.2f}" for n, w in zip(names, weights.tolist())))

    if len(shares) > 1:
        runtime.log("crops per data profile: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items()))
    facts = statistics["facts"]
    train_set = SegmentationCrops(train_pairs, normalisation, args.crop_size, args.samples_per_epoch, args.task,
                                  args.seed, jitter, options, facts, args.balanced_share, shares=shares)
    screened = [(scene.sar.name, kept) for scene, kept in zip(train_pairs, train_set.kept_chips) if kept is not None]
    for name, kept in screened:
        runtime.log(f"{name}: water labels of {np.count_nonzero(~kept)} of {kept.size} chips left out (water not "
                    f"{WATER_LABEL_CONTRAST_DB:g} dB darker than land)")
    resampled = sum(sar.grid is not None for sar in train_set.sars)
    if resampled:
        runtime.log(f"{resampled} of {len(train_set.sars)} training rasters are read resampled onto the "
                    f"{options.gsd_m:g} m model grid, as the plugin reads them")
    distribution = resume.get("input_distribution", {}) if resume else statistics["input_distribution"]
    val_set = SegmentationTiles(val_pairs, normalisation, args.crop_size, args.task, options, facts,
                                statistics["val_tiles"], args.val_max_tiles, args.seed)
    runtime.log(f"validation: {len(val_set)} tiles of {args.crop_size} px"
                + (f" (random subset of {len(statistics['val_tiles'])})"
                   if len(val_set) < len(statistics["val_tiles"]) else "")
                + (f", every {args.val_every} epochs" if args.val_every > 1 else ""))
    train_loader = plumbing.loader(train_set, args.batch_size, args.workers, runtime, shuffle=True, drop_last=True)
    val_loader = plumbing.loader(val_set, args.batch_size, args.workers, runtime, shuffle=False, drop_last=False)

    model.to(runtime.device)
    if runtime.distributed:
        if runtime.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    criterion = FocalDiceLoss(binary, weights, args.gamma, args.focal_weight, args.dice_weight).to(runtime.device)
    optimizer = plumbing.adamw(model, args.lr, args.weight_decay)
    steps_per_epoch = len(train_loader)
    scheduler = plumbing.warmup_cosine(optimizer, args.epochs * steps_per_epoch, round(args.warmup_epochs * steps_per_epoch))
    scaler = plumbing.grad_scaler(runtime, args.amp)
    start_epoch, best, history = 0, -1.0, []
    if resume is not None:
        plumbing.unwrap(model).load_state_dict(resume.get("trained_model", resume["model"]))
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        start_epoch, best, history = resume["epoch"], resume["best_score"], resume["history"]
        if "trained_model" in resume and not args.ema_decay:
            args.ema_decay = resume["args"]["ema_decay"]
            runtime.log("the checkpoint holds a moving average of the weights: continuing it")
    average = None
    if args.ema_decay:
        average = plumbing.WeightAverage(plumbing.unwrap(model), args.ema_decay,
                                         resume.get("average_steps", 0) if resume else 0)
        if resume is not None and "trained_model" in resume:
            average.model.load_state_dict(resume["model"])
        runtime.log(f"validating and saving a moving average of the weights (decay {args.ema_decay:g} per step)")
    validated = average.model if average else model

    for epoch in range(start_epoch, args.epochs):
        started = time.time()
        train_set.set_epoch(epoch)
        if runtime.distributed:
            train_loader.sampler.set_epoch(epoch)
        model.train()
        total, batches = torch.zeros(2, device=runtime.device), 0
        for image, target in train_loader:
            image, target = image.to(runtime.device, non_blocking=True), target.to(runtime.device, non_blocking=True)
            with plumbing.autocast(runtime, args.amp):
                logits = model(image)
            loss = criterion(logits, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if average:
                average.update(plumbing.unwrap(model))
            total += torch.stack([loss.detach().float(), torch.ones((), device=runtime.device)])
            batches += 1
        total = plumbing.all_reduce_sum(total, runtime)
        record = {"epoch": epoch + 1, "train_loss": float(total[0] / total[1]),
                  "lr": optimizer.param_groups[0]["lr"]}
        improved = False
        if (epoch + 1) % args.val_every == 0 or epoch + 1 == args.epochs:
            confusion = evaluate(validated, val_loader, len(names), binary, runtime, args.amp)
            ious = iou_per_class(confusion)
            miou = float(np.nanmean(ious)) if np.isfinite(ious).any() else 0.0
            score = float(ious[1]) if binary and np.isfinite(ious[1]) else miou
            record.update(val_miou=miou, val_iou={n: (None if np.isnan(v) else float(v)) for n, v in zip(names, ious)})
            improved = score > best
            best = max(best, score)
            runtime.log(f"epoch {epoch + 1}/{args.epochs}  loss {record['train_loss']:.4f}  val mIoU {miou:.4f}"
                        + (f"  water IoU {score:.4f}" if binary else "") + ("  (best)" if improved else ""))
            runtime.log("  per-class IoU: " + ", ".join(f"{n} {'-' if np.isnan(v) else f'{v:.3f}'}"
                                                        for n, v in zip(names, ious)))
        else:
            runtime.log(f"epoch {epoch + 1}/{args.epochs}  loss {record['train_loss']:.4f}  (not validated)")
        record["seconds"] = round(time.time() - started, 1)
        history.append(record)
        if runtime.is_main:
            state = {"model": plumbing.unwrap(validated).state_dict(), "net_config": config.to_dict(),
                     "task": args.task,
                     "normalisation": normalisation.to_dict(), "class_weights": weights.tolist(),
                     "input_distribution": distribution, "gsd_m": options.gsd_m,
                     "epoch": epoch + 1, "best_score": best, "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "history": history,
                     "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}}
            if average:
                state.update(trained_model=plumbing.unwrap(model).state_dict(), average_steps=average.steps)
            plumbing.save_atomic(state, args.out / "last.pt")
            if improved:
                plumbing.save_atomic(state, args.out / "best.pt")
            plumbing.write_json({"task": args.task, "classes": names, "best_score": best, "epochs": history},
                                args.out / "metrics.json")
    runtime.log(f"done: best {'water IoU' if binary else 'mIoU'} {best:.4f}; checkpoints in {args.out}")


if __name__ == "__main__":
    sys.exit(main())

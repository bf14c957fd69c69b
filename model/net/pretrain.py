"""SAR-W-MixMAE pretraining CLI: unlabelled SAR GeoTIFFs -> encoder.pt for model.net.train.

    python -m model.net.pretrain --data DATA/unlabelled --out runs/pretrain [options]
    torchrun --nproc_per_node=4 -m model.net.pretrain ... --device cuda --amp bf16

Writes encoder.pt (Swin weights + config + input normalisation, after every epoch), last.pt
(resumable) and metrics.json. Fine-tune with ``--pretrained-encoder runs/pretrain/encoder.pt``.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import torch
from torch.nn.parallel import DistributedDataParallel

from . import engine
from .configs import NAMED_CONFIGS, EncoderConfig, named_config
from ..inference.metadata import NORM_FIXED, NORM_MODES
from .data import (Normalisation, SarRaster, UnlabelledCrops, add_read_arguments, find_images, normalisation_of,
                   read_options)
from .mixmae import CELL, MixMAE


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.net.pretrain", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="folders of SAR GeoTIFFs (*.tif, labels skipped) or list files")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output folder")
    p.add_argument("--config", choices=sorted(NAMED_CONFIGS), default="tiny-cpu", help="encoder size")
    p.add_argument("--mask-ratio", type=float, default=0.5, help="share of 32 px cells each image gives up")
    p.add_argument("--sarw-k", type=float, default=1.0, help="SAR-W weight exp(-k * p_norm); 0 = plain MixMAE")
    p.add_argument("--decoder-dim", type=int, default=128)
    p.add_argument("--decoder-depth", type=int, default=2)
    p.add_argument("--norm-mode", choices=NORM_MODES, default=NORM_FIXED,
                   help="input normalisation: fixed (dB statistics of the data) or scene (each raster's median "
                        "removed first)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--samples-per-epoch", type=int, default=4000, help="random crops per epoch (all ranks together)")
    p.add_argument("--batch-size", type=int, default=16, help="per process; even (images are mixed in pairs)")
    p.add_argument("--crop-size", type=int, default=256, help="crop edge, px (multiple of 32)")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=5.0)
    add_read_arguments(p)
    engine.add_runtime_arguments(p)
    args = p.parse_args(argv)
    if args.crop_size % CELL:
        p.error(f"--crop-size must be a multiple of {CELL}, got {args.crop_size}")
    if args.batch_size < 2 or args.batch_size % 2:
        p.error(f"--batch-size must be even and >= 2 (MixMAE mixes images in pairs), got {args.batch_size}")
    if args.samples_per_epoch < args.batch_size:
        p.error("--samples-per-epoch must be at least --batch-size")
    return args


def encoder_state(model: MixMAE, config: EncoderConfig, normalisation: Normalisation, epoch: int) -> dict:
    """What fine-tuning loads: the Swin weights, their config and the input normalisation."""
    return {"encoder": model.encoder.state_dict(), "encoder_config": dataclasses.asdict(config),
            "normalisation": normalisation.to_dict(), "epoch": epoch}


STATISTICS_FILE = "data_statistics.json"


def data_statistics(scenes, options, norm_mode: str | None) -> dict:
    """Each raster's units and scene statistics, and the input normalisation (None when it is given),
    read once (rank 0, cached; see engine.computed_once)."""
    sars = [SarRaster(scene.sar, scene.profile, options) for scene in scenes]
    return {"facts": {sar.path: sar.facts() for sar in sars},
            "normalisation": normalisation_of(norm_mode, sars).to_dict() if norm_mode else None}


def main(argv=None) -> int:
    return engine.run_cli(parse_args(argv), run)


def run(args, runtime: engine.Runtime):
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    resume = torch.load(args.resume, map_location="cpu") if args.resume else None
    paths = find_images(args.data)
    options = read_options(args)
    normalisation = None
    if resume is not None:
        config = EncoderConfig.from_dict(resume["encoder_config"])
        normalisation = Normalisation.from_dict(resume["normalisation"])
    else:
        config = named_config(args.config).encoder
        if args.norm_mean is not None and args.norm_std is not None:
            normalisation = Normalisation(norm_mean=args.norm_mean, norm_std=args.norm_std)
    norm_mode = None if normalisation else args.norm_mode
    key = {"version": 1, "images": [[*engine.files_key([scene.sar]), scene.profile] for scene in paths],
           "read": [options.input_units.value, options.calibration_factor, options.gsd_m], "norm_mode": norm_mode}
    statistics = engine.computed_once(lambda: data_statistics(paths, options, norm_mode),
                                      args.out / STATISTICS_FILE, key, runtime)
    normalisation = normalisation or Normalisation.from_dict(statistics["normalisation"])
    runtime.log(f"{len(paths)} SAR rasters; input normalisation {normalisation.norm_mode}: clip "
                f"{normalisation.norm_clip} mean {normalisation.norm_mean:.3f} std {normalisation.norm_std:.3f}; "
                f"SAR-W k = {args.sarw_k}")
    # SAR-W weights use power from the de-normalised dB: relative to the scene median in scene mode, which
    # changes nothing, since the weights min-max normalise power within each crop.
    model = MixMAE(config, args.decoder_dim, args.decoder_depth, mask_ratio=args.mask_ratio, sarw_k=args.sarw_k,
                   norm_mean=normalisation.norm_mean, norm_std=normalisation.norm_std).to(runtime.device)
    dataset = UnlabelledCrops(paths, normalisation, args.crop_size, args.samples_per_epoch, args.seed, options,
                              statistics["facts"])
    data = engine.loader(dataset, args.batch_size, args.workers, runtime, shuffle=True, drop_last=True)
    if runtime.distributed:
        model = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    optimizer = engine.adamw(model, args.lr, args.weight_decay)
    scheduler = engine.warmup_cosine(optimizer, args.epochs * len(data), round(args.warmup_epochs * len(data)))
    scaler = engine.grad_scaler(runtime, args.amp)
    start_epoch, history = 0, []
    if resume is not None:
        engine.unwrap(model).load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        start_epoch, history = resume["epoch"], resume["history"]
        runtime.log(f"resuming from {args.resume} after epoch {start_epoch}")

    for epoch in range(start_epoch, args.epochs):
        started = time.time()
        dataset.set_epoch(epoch)
        if runtime.distributed:
            data.sampler.set_epoch(epoch)
        model.train()
        total = torch.zeros(2, device=runtime.device)
        for image, valid in data:
            image, valid = image.to(runtime.device, non_blocking=True), valid.to(runtime.device, non_blocking=True)
            with engine.autocast(runtime, args.amp):
                loss = model(image, valid)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += torch.stack([loss.detach().float(), torch.ones((), device=runtime.device)])
        total = engine.all_reduce_sum(total, runtime)
        record = {"epoch": epoch + 1, "loss": float(total[0] / total[1]), "lr": optimizer.param_groups[0]["lr"],
                  "seconds": round(time.time() - started, 1)}
        history.append(record)
        runtime.log(f"epoch {epoch + 1}/{args.epochs}  SAR-W reconstruction loss {record['loss']:.4f}")
        if runtime.is_main:
            unwrapped = engine.unwrap(model)
            engine.save_atomic(encoder_state(unwrapped, config, normalisation, epoch + 1), args.out / "encoder.pt")
            engine.save_atomic({"model": unwrapped.state_dict(), "encoder_config": dataclasses.asdict(config),
                                "normalisation": normalisation.to_dict(), "epoch": epoch + 1,
                                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "scaler": scaler.state_dict(), "history": history}, args.out / "last.pt")
            engine.write_json({"sarw_k": args.sarw_k, "mask_ratio": args.mask_ratio, "epochs": history},
                              args.out / "metrics.json")
    runtime.log(f"done: encoder weights in {args.out / 'encoder.pt'}")


if __name__ == "__main__":
    sys.exit(main())

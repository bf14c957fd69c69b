"""SAR-W-MixMAE pretraining CLI: unlabelled SAR GeoTIFFs -> encoder.pt for sarlulc.training.train.

    python -m sarlulc.training.pretrain --data DATA/unlabelled --out runs/pretrain [options]
    torchrun --nproc_per_node=4 -m sarlulc.training.pretrain ... --device cuda --amp bf16

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

from . import plumbing
from ..networks.configs import NAMED_CONFIGS, EncoderConfig, named_config
from ..inference.contract import NORM_FIXED, NORM_MODES
from .datasets import UnlabelledCrops
from .input_statistics import Normalisation, normalisation_of
from .rasters import add_read_arguments, open_rasters, read_options
from .sources import find_images
from .losses import SARW_DOMAINS
from .mixmae import CELL, MixMAE
from ..errors import gdal_exceptions


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sarlulc.training.pretrain", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="folders of SAR GeoTIFFs (*.tif, labels skipped) or list files")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output folder")
    p.add_argument("--config", choices=sorted(NAMED_CONFIGS), default="tiny-cpu", help="encoder size")
    p.add_argument("--mask-ratio", type=float, default=0.5, help="share of 32 px cells each image gives up")
    p.add_argument("--sarw-k", type=float, default=1.0, help="SAR-W weight exp(-k * p_norm); 0 = plain MixMAE")
    p.add_argument("--sarw-domain", choices=SARW_DOMAINS, default="power",
                   help="what p is: power = linear backscatter power of the de-normalised input (the paper's "
                        "formula); standardised = 10^(x/10) of the standardised input x (what the public "
                        "SAR-W-MixMAE code computes); see model/README.md for how strong each is")
    p.add_argument("--drop-path", type=float, default=0.0,
                   help="stochastic depth rate of the encoder while pretraining (the public SAR-W-MixMAE code "
                        "uses 0; fine-tuning uses the network config's)")
    p.add_argument("--decoder-dim", type=int, default=128)
    p.add_argument("--decoder-depth", type=int, default=2)
    p.add_argument("--decoder-heads", type=int, default=4, help="attention heads of the decoder layers")
    p.add_argument("--norm-mode", choices=NORM_MODES, default=NORM_FIXED,
                   help="input normalisation: fixed (dB statistics of the data), scene (each raster's median "
                        "removed first) or scene-land (the median of each raster's brighter population removed first)")
    plumbing.add_schedule_arguments(p, epochs=100, samples_per_epoch=4000, batch_size=16, crop_size=256, lr=3e-4,
                                    warmup_epochs=5.0, batch_help="per process; even (images are mixed in pairs)")
    add_read_arguments(p)
    plumbing.add_runtime_arguments(p)
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


def data_statistics(scenes, options, norm_mode: str | None, processes: int = 1) -> dict:
    """Each raster's units and scene statistics, and the input normalisation (None when it is given),
    read once (rank 0, cached; see plumbing.computed_once)."""
    sars = list(open_rasters(scenes, options, processes).values())
    return {"facts": {sar.path: sar.facts() for sar in sars},
            "normalisation": normalisation_of(norm_mode, sars).to_dict() if norm_mode else None}


def weight_summary(model: MixMAE, images: torch.Tensor, valid: torch.Tensor) -> dict:
    """How strong the SAR-W weighting is on these images: quantiles of the valid pixels' weights
    (all 1 would be plain MixMAE)."""
    with torch.no_grad():
        weights = model.sarw_weights(images, valid)[valid].float().cpu()
    if weights.numel() == 0:
        return {}
    sample = weights[torch.randperm(weights.numel(), generator=torch.Generator().manual_seed(0))[:100_000]]
    quantiles = torch.quantile(sample, torch.tensor([0.1, 0.5, 0.9]))
    return {"p10": float(quantiles[0]), "median": float(quantiles[1]), "p90": float(quantiles[2]),
            "mean": float(weights.mean())}


@gdal_exceptions()
def main(argv=None) -> int:
    return plumbing.run_cli(parse_args(argv), run)


def run(args, runtime: plumbing.Runtime):
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
        config = dataclasses.replace(named_config(args.config).encoder, drop_path=args.drop_path)
        if args.norm_mean is not None and args.norm_std is not None:
            normalisation = Normalisation(norm_mean=args.norm_mean, norm_std=args.norm_std)
    norm_mode = None if normalisation else args.norm_mode
    key = {"version": 2, "images": [[*plumbing.files_key([scene.sar]), scene.profile] for scene in paths],
           "read": [options.input_units.value, options.calibration_factor, options.gsd_m], "norm_mode": norm_mode}
    statistics = plumbing.computed_once(lambda: data_statistics(paths, options, norm_mode, args.workers),
                                      args.out / STATISTICS_FILE, key, runtime)
    normalisation = normalisation or Normalisation.from_dict(statistics["normalisation"])
    runtime.log(f"{len(paths)} SAR rasters; input normalisation {normalisation.norm_mode}: clip "
                f"{normalisation.norm_clip} mean {normalisation.norm_mean:.3f} std {normalisation.norm_std:.3f}; "
                f"SAR-W k = {args.sarw_k}")
    # SAR-W weights use power from the de-normalised dB: relative to the scene median in scene mode, which
    # changes nothing, since the weights min-max normalise power within each crop.
    decoder_heads = resume.get("decoder_heads", 4) if resume is not None else args.decoder_heads
    model = MixMAE(config, args.decoder_dim, args.decoder_depth, decoder_heads, mask_ratio=args.mask_ratio,
                   sarw_k=args.sarw_k, norm_mean=normalisation.norm_mean, norm_std=normalisation.norm_std,
                   sarw_domain=args.sarw_domain).to(runtime.device)
    dataset = UnlabelledCrops(paths, normalisation, args.crop_size, args.samples_per_epoch, args.seed, options,
                              statistics["facts"])
    resampled = sum(sar.grid is not None for sar in dataset.sars)
    if resampled:
        runtime.log(f"{resampled} of {len(dataset.sars)} rasters are read resampled onto the {options.gsd_m:g} m "
                    f"model grid, as the plugin reads them")
    data = plumbing.loader(dataset, args.batch_size, args.workers, runtime, shuffle=True, drop_last=True)
    if runtime.distributed:
        model = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    # MixMAE's mask token is, like its relative position tables, not weight-decayed (as MixMIM declares);
    # checkpoints from before this choice resume with the grouping they were saved with.
    no_decay = tuple(resume.get("no_decay", ["bias_table"])) if resume is not None else ("bias_table", "mask_token")
    optimizer = plumbing.adamw(model, args.lr, args.weight_decay, no_decay)
    scheduler = plumbing.warmup_cosine(optimizer, args.epochs * len(data), round(args.warmup_epochs * len(data)))
    scaler = plumbing.grad_scaler(runtime, args.amp)
    start_epoch, history, history_info = 0, [], {}
    if resume is not None:
        plumbing.unwrap(model).load_state_dict(resume["model"])
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
            if "sarw_weights" not in history_info:
                history_info["sarw_weights"] = weight_summary(plumbing.unwrap(model), image, valid)
                runtime.log(f"SAR-W weights ({args.sarw_domain}, k = {args.sarw_k}) of the first batch's valid pixels: "
                            + ", ".join(f"{key} {value:.3f}" for key, value in history_info["sarw_weights"].items()))
            with plumbing.autocast(runtime, args.amp):
                loss = model(image, valid)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += torch.stack([loss.detach().float(), torch.ones((), device=runtime.device)])
        total = plumbing.all_reduce_sum(total, runtime)
        record = {"epoch": epoch + 1, "loss": float(total[0] / total[1]), "lr": optimizer.param_groups[0]["lr"],
                  "seconds": round(time.time() - started, 1)}
        history.append(record)
        runtime.log(f"epoch {epoch + 1}/{args.epochs}  SAR-W reconstruction loss {record['loss']:.4f}")
        if runtime.is_main:
            unwrapped = plumbing.unwrap(model)
            plumbing.save_atomic(encoder_state(unwrapped, config, normalisation, epoch + 1), args.out / "encoder.pt")
            plumbing.save_atomic({"model": unwrapped.state_dict(), "encoder_config": dataclasses.asdict(config),
                                "normalisation": normalisation.to_dict(), "epoch": epoch + 1,
                                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "scaler": scaler.state_dict(), "history": history, "no_decay": list(no_decay),
                                "decoder_heads": decoder_heads}, args.out / "last.pt")
            plumbing.write_json({"sarw_k": args.sarw_k, "sarw_domain": args.sarw_domain, "mask_ratio": args.mask_ratio,
                               "drop_path": config.drop_path, **history_info, "epochs": history},
                              args.out / "metrics.json")
    runtime.log(f"done: encoder weights in {args.out / 'encoder.pt'}")


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput (figures, not pass/fail): images per second of one optimiser step.

For each network config: a fine-tuning step (Segmentor forward, focal + dice, backward, AdamW)
and a pretraining step (SAR-W-MixMAE forward, backward, AdamW) on random normalised crops,
timed over ``--iterations`` steps after one warm-up step. Data loading is left out: this is the
network's cost on the device.

    make bench-train                                   # CPU: tiny-cpu, and the paper config briefly
    make bench-train ARGS="--device cuda --amp bf16 --batch-size 16 --iterations 20"
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sarlulc.training import plumbing  # noqa: E402
from sarlulc.networks.configs import NAMED_CONFIGS, named_config  # noqa: E402
from sarlulc.training.losses import FocalDiceLoss  # noqa: E402
from sarlulc.training.mixmae import MixMAE  # noqa: E402
from sarlulc.networks.segmentor import Segmentor  # noqa: E402
from sarlulc.errors import gdal_exceptions  # noqa: E402


def step_rate(model: torch.nn.Module, loss_of, images: torch.Tensor, runtime: plumbing.Runtime, amp: str,
              iterations: int) -> float:
    """Images per second of full training steps (the first, warm-up step not timed)."""
    optimizer = plumbing.adamw(model, 1e-4, 0.05)
    scaler = plumbing.grad_scaler(runtime, amp)
    model.train()
    elapsed = 0.0
    for step in range(iterations + 1):
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with plumbing.autocast(runtime, amp):
            loss = loss_of(model, images)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            elapsed += time.perf_counter() - started
    return iterations * images.shape[0] / elapsed


@gdal_exceptions()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="tiny-cpu,paper", help="comma-separated: " + ", ".join(NAMED_CONFIGS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=sorted(plumbing.AMP_DTYPES) + ["auto"], default="none")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--paper-iterations", type=int, default=1, help="timed steps for the paper config on CPU")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runtime = plumbing.Runtime(torch.device(args.device))
    amp = plumbing.resolve_amp(args.amp, runtime)
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, 1, args.crop_size, args.crop_size, device=runtime.device)
    valid = torch.ones_like(images, dtype=torch.bool)
    target = (images[:, 0] > 0).long() * 4
    results = []
    device_name = torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else "CPU"
    print(f"device {device_name}, {torch.get_num_threads()} threads, amp {amp}, batch {args.batch_size}, "
          f"crops {args.crop_size} px")
    for name in args.configs.split(","):
        config = named_config(name)
        iterations = args.paper_iterations if name == "paper" and runtime.device.type == "cpu" else args.iterations
        criterion = FocalDiceLoss(False, torch.ones(config.num_classes)).to(runtime.device)
        segmentor = Segmentor(config).to(runtime.device)
        parameters = sum(parameter.numel() for parameter in segmentor.parameters())
        fine_tune = step_rate(segmentor, lambda model, x: criterion(model(x), target), images, runtime, amp, iterations)
        del segmentor
        mixmae = MixMAE(config.encoder).to(runtime.device)
        pretrain = step_rate(mixmae, lambda model, x: model(x, valid), images, runtime, amp, iterations)
        del mixmae
        results.append({"config": name, "parameters_m": round(parameters / 1e6, 1), "fine_tune_images_s": fine_tune,
                        "pretrain_images_s": pretrain, "iterations": iterations})
        print(f"{name:>9}: {parameters / 1e6:6.1f} M parameters; fine-tuning {fine_tune:8.3g} images/s, "
              f"pretraining {pretrain:8.3g} images/s ({iterations} timed steps)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "amp": amp, "batch_size": args.batch_size,
                                         "crop_size": args.crop_size, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

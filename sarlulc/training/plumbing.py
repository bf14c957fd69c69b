"""Training plumbing shared by pretraining and fine-tuning: device, DDP, AMP, schedule, checkpoints."""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import math
import os
import pathlib
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass
class Runtime:
    """Where this process trains: device, and its place in a torchrun job (rank 0 of 1 otherwise)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, *args):
        if self.is_main:
            print(*args, flush=True)


def setup_runtime(device_name: str = "auto") -> Runtime:
    """Pick the device; under torchrun (LOCAL_RANK set) join the process group: NCCL on CUDA, gloo on CPU."""
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu.")
    if "LOCAL_RANK" not in os.environ:
        return Runtime(torch.device(device_name))
    local_rank = int(os.environ["LOCAL_RANK"])
    if device_name.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    # Rank 0 may read every training raster (data statistics) before the first collective: the
    # default 10-30 minute timeout would end the other ranks' wait on a large data set.
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return Runtime(device, dist.get_rank(), dist.get_world_size(), distributed=True)


def shutdown(runtime: Runtime):
    if runtime.distributed:
        dist.destroy_process_group()


def add_schedule_arguments(parser, *, epochs: int, samples_per_epoch: int, batch_size: int, crop_size: int,
                           lr: float, warmup_epochs: float, batch_help: str = "per process",
                           crop_help: str = "crop edge, px (multiple of 32)") -> None:
    """The optimisation schedule train and pretrain share; each passes its own defaults."""
    parser.add_argument("--epochs", type=int, default=epochs, help="training length; the schedule spans all epochs")
    parser.add_argument("--samples-per-epoch", type=int, default=samples_per_epoch,
                        help="random crops per epoch (all ranks together)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    parser.add_argument("--crop-size", type=int, default=crop_size, help=crop_help)
    parser.add_argument("--lr", type=float, default=lr, help="AdamW peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-epochs", type=float, default=warmup_epochs, help="linear warmup length, epochs")


def add_runtime_arguments(parser) -> None:
    """The options train and pretrain share: input normalisation, resuming, hardware, seed."""
    parser.add_argument("--norm-mean", type=float, help="fix the input mean (dB) instead of computing it")
    parser.add_argument("--norm-std", type=float, help="fix the input std (dB) instead of computing it")
    parser.add_argument("--resume", type=pathlib.Path, help="last.pt to continue from")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES) + ["auto"], default="none",
                        help="mixed precision; auto: bf16 on GPUs that support it, else fp16 on GPUs, none on CPU")
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader worker processes (also the processes that read the rasters' statistics once "
                             "at start-up)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--seed", type=int, default=0)


def run_cli(args, run) -> int:
    """Entry point shared by the train and pretrain CLIs: threads, device (and DDP) set up, always torn down."""
    if args.threads:
        torch.set_num_threads(args.threads)
    runtime = setup_runtime(args.device)
    args.amp = resolve_amp(args.amp, runtime)
    try:
        run(args, runtime)
        if runtime.distributed:
            # Every rank done with its collectives before any tears the group down: a rank whose
            # gloo threads still wait on a peer that has already gone aborts the process.
            dist.barrier()
    finally:
        shutdown(runtime)
    return 0


def resolve_amp(amp: str, runtime: Runtime) -> str:
    """``--amp auto`` made concrete for this device: bf16 where the GPU supports it (no loss scaling
    needed), fp16 on older GPUs, none on CPU (CPU autocast rarely pays off for training)."""
    if amp != "auto":
        return amp
    if runtime.device.type != "cuda":
        return "none"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(runtime: Runtime, amp: str):
    """Mixed-precision context (bf16/fp16 autocast on CUDA, bf16 on CPU), or a no-op for 'none'."""
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    if runtime.device.type == "cpu" and dtype is torch.float16:
        raise ValueError("--amp fp16 needs a CUDA GPU; on CPU use --amp bf16 or none.")
    return torch.autocast(device_type=runtime.device.type, dtype=dtype)


def grad_scaler(runtime: Runtime, amp: str) -> torch.amp.GradScaler:
    """Loss scaling is needed for fp16 only; disabled (pass-through) otherwise."""
    return torch.amp.GradScaler(runtime.device.type, enabled=amp == "fp16")


class ShardSampler(torch.utils.data.Sampler):
    """Indices rank, rank + world_size, ...: every item on exactly one rank (DistributedSampler pads
    with repeats, which would score some validation pixels twice)."""

    def __init__(self, length: int, runtime: Runtime):
        self.indices = range(runtime.rank, length, runtime.world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def loader(dataset, batch_size: int, workers: int, runtime: Runtime, shuffle: bool, drop_last: bool) -> DataLoader:
    """DataLoader that shards across DDP ranks; ``set_epoch`` is the caller's job each epoch. Without
    ``shuffle`` (evaluation), each item is on exactly one rank."""
    sampler = None
    if runtime.distributed:
        sampler = (DistributedSampler(dataset, runtime.world_size, runtime.rank, shuffle=True, drop_last=drop_last)
                   if shuffle else ShardSampler(len(dataset), runtime))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, drop_last=drop_last, pin_memory=runtime.device.type == "cuda",
                      persistent_workers=False)


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the base learning rate, then cosine decay to 0, stepped per iteration."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw(model: torch.nn.Module, lr: float, weight_decay: float,
          no_decay_names: tuple[str, ...] = ("bias_table",)) -> torch.optim.AdamW:
    """AdamW without weight decay on norms, biases and parameters whose names end in ``no_decay_names``
    (default: the relative position bias tables)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or name.endswith(no_decay_names) else decay).append(parameter)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


class WeightAverage:
    """Exponential moving average of a model's weights (parameters and batch-norm statistics), the weights
    that are validated and saved: with small CPU batches the last step's weights swing from epoch to epoch.
    The decay ramps up from 0 over the first steps, so the average does not remember the random start."""

    def __init__(self, model: torch.nn.Module, decay: float, steps: int = 0):
        self.decay, self.steps = decay, steps
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        keep = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            for average, current in zip(self.model.state_dict().values(), model.state_dict().values()):
                if average.is_floating_point():
                    average.lerp_(current, 1.0 - keep)
                else:
                    average.copy_(current)


def all_reduce_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def save_atomic(state: dict, path: pathlib.Path):
    """torch.save through a temporary file, so an interrupted save never leaves a broken checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def write_json(data, path: pathlib.Path):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def files_key(paths) -> list:
    """What a result computed from files depends on: each path with its size and modification time."""
    return [[str(path), os.stat(path).st_size, os.stat(path).st_mtime_ns] for path in paths]


def computed_once(compute, cache: pathlib.Path, key, runtime: Runtime):
    """``compute()`` (a JSON-able result) run on rank 0 only and sent to every rank; kept in ``cache`` and
    reused while ``key`` (the files and settings it depends on) is unchanged. Rank 0's error stops every rank."""
    result, error = None, None
    if runtime.is_main:
        try:
            stored = json.loads(cache.read_text()) if cache.is_file() else {}
            if stored.get("key") == json.loads(json.dumps(key)):
                result = stored["value"]
                runtime.log(f"data statistics read from {cache} (delete it to recompute)")
            else:
                result = compute()
                write_json({"key": key, "value": result}, cache)
        except Exception as failure:
            if not runtime.distributed:
                raise
            error = failure
    if runtime.distributed:
        box = [(result, None if error is None else f"{type(error).__name__}: {error}")]
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        result, message = box[0]
        if message is not None:
            raise RuntimeError(f"rank 0 failed while reading the training data: {message}")
    return result

"""Run the authors' published SAR-W-SimMIM segmentation weights: their checkpoint -> the plugin's ONNX.

    python -m sarlulc.training.published CHECKPOINT -o sarwsimmim.onnx [--classes table.csv]

SAR-W-SimMIM (Imamoglu, Caglayan, Kouyama; github gsvrg/SAR-W-SimMIM) fine-tunes a Swin
encoder with a UPerNet-style decoder of its own on ALOS-2 HH tiles of 256 px and JAXA's
land-cover labels. That network differs from sarlulc/networks/segmentor.py in ways that change every
output: an absolute position embedding (so a fixed 256 px input), features taken after each
stage's patch merging and without a norm, a decoder of 1x1 convolutions with GroupNorm and GELU,
pyramid pooling by *max* pooling, bilinear resizing with aligned corners, and a head that
upsamples x2 twice with 3x3 convolutions. This module is our re-implementation of that
architecture (reusing the Swin blocks of swin.py), the mapping of their state_dict names onto
ours, and the export with the plugin's contract. tests/test_net_published.py checks it against
outputs of the authors' own code.

What their public code states and the contract carries: HH in dB normalised with mean -10.4327
and std 5.8041, no clipping (the contract's clip is set wide enough never to act on sigma0),
9 output classes. Their class names live in a helper package that is not published with the
code, so the default legend names the channels only ("Class 1 (output 0)" ...): give the real
names with ``--classes`` (a CSV ``code,name,color``, one row per output channel, in order).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import pathlib
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..products import LULC_CLASSES
from ..errors import InferenceError
from ..inference.contract import ClassInfo, ModelContract
from ..rasters.transaction import PendingFiles
from ..rasters.output_checks import check_distinct_files
from .class_table import ClassTableError, read_class_table
from .input_statistics import Normalisation
from .export import OPSET, contract_for, export_onnx, parity
from ..networks.swin import PatchMerging, SwinBlock

PATCH_SIZE = 4
GROUPS = 16  # GroupNorm groups of every decoder layer
# Their data code: (HH_dB - mean) / std, nothing else. The contract needs a clip: this one is wider
# than any sigma0 in dB, so it never changes a value the authors' model would have seen.
AUTHORS_NORMALISATION = Normalisation(norm_clip=(-80.0, 40.0), norm_mean=-10.4327, norm_std=5.8041)
DEFAULT_GSD_M = 10.0
TRAINED_ON = ("ALOS-2 PALSAR-2 HH over Japan with JAXA's high-resolution land-cover labels: the authors' "
              "published SAR-W-SimMIM segmentation weights (github gsvrg/SAR-W-SimMIM), imported unchanged")
# Their checkpoints also hold these; they are recomputed here from the configuration, or unused
# by their forward pass (the encoder's final norm, a pretraining mask token).
DERIVED_SUFFIXES = (".relative_position_index", ".attn_mask")
UNUSED_KEYS = ("encoder.norm.weight", "encoder.norm.bias", "encoder.mask_token")


class CheckpointRefused(ValueError):
    """The file is not a SAR-W-SimMIM segmentation checkpoint this module can run."""


@dataclass(frozen=True)
class PublishedConfig:
    """The architecture's sizes; the defaults are the published Swin-B model."""

    img_size: int = 256
    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    mlp_ratio: float = 4.0
    decoder_channels: int = 256
    pool_sizes: tuple[int, ...] = (1, 2, 3, 6)
    num_classes: int = 9

    @property
    def stage_resolutions(self) -> tuple[int, ...]:
        return tuple(self.img_size // PATCH_SIZE // 2 ** i for i in range(len(self.depths)))

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of the four maps the decoder gets: each stage's output after its patch merging."""
        last = len(self.depths) - 1
        return tuple(self.embed_dim * 2 ** (i + 1 if i < last else i) for i in range(len(self.depths)))


class PublishedEncoder(nn.Module):
    """(B, 1, S, S) -> four maps at S/8, S/16, S/32, S/32 (S = img_size, fixed by the position embedding)."""

    def __init__(self, config: PublishedConfig):
        super().__init__()
        grid = config.stage_resolutions[0]
        self.embed = nn.Conv2d(1, config.embed_dim, PATCH_SIZE, stride=PATCH_SIZE)
        self.embed_norm = nn.LayerNorm(config.embed_dim)
        self.position = nn.Parameter(torch.zeros(1, grid * grid, config.embed_dim))
        self.stages = nn.ModuleList()
        for i, (depth, heads, size) in enumerate(zip(config.depths, config.num_heads, config.stage_resolutions)):
            dim = config.embed_dim * 2 ** i
            # Their rule: a map no larger than the window is one window, never shifted.
            window = min(config.window_size, size)
            shift = 0 if size <= config.window_size else config.window_size // 2
            stage = nn.Module()
            stage.blocks = nn.ModuleList(
                SwinBlock(dim, heads, window, 0 if j % 2 == 0 else shift, config.mlp_ratio, 0.0) for j in range(depth))
            stage.merge = PatchMerging(dim) if i < len(config.depths) - 1 else None
            self.stages.append(stage)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens = self.embed_norm(self.embed(x).permute(0, 2, 3, 1))
        tokens = tokens + self.position.view(1, *tokens.shape[1:])
        features = []
        for stage in self.stages:
            for block in stage.blocks:
                tokens = block(tokens)
            if stage.merge is not None:
                tokens = stage.merge(tokens)
            features.append(tokens.permute(0, 3, 1, 2).contiguous())
        return features


def conv_gn_gelu(in_channels: int, out_channels: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
                         nn.GroupNorm(GROUPS, out_channels), nn.GELU())


def resize_aligned(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def adaptive_max_pool(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``F.adaptive_max_pool2d`` (same bins: floor(i*n/b) .. ceil((i+1)*n/b)) as slices, rows then
    columns; it exports to ONNX where the bins do not divide the map (6 bins over 8 x 8)."""
    def pool(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        parts = [t.narrow(dim, (i * n) // bins, math.ceil((i + 1) * n / bins) - (i * n) // bins).amax(dim, keepdim=True)
                 for i in range(bins)]
        return torch.cat(parts, dim)
    return pool(pool(x, 2), 3)


class PublishedDecoder(nn.Module):
    """Max-pooling pyramid on the deepest map, then top-down fusion x2 per level, then a 1x1 fusion
    of the four levels at the finest one (1/4 of the input)."""

    def __init__(self, config: PublishedConfig):
        super().__init__()
        channels, deepest = config.decoder_channels, config.feature_channels[-1]
        self.pool_sizes = config.pool_sizes
        self.ppm = nn.Module()
        self.ppm.branches = nn.ModuleList(conv_gn_gelu(deepest, channels) for _ in config.pool_sizes)
        self.ppm.bottleneck = conv_gn_gelu(deepest + len(config.pool_sizes) * channels, channels)
        self.top = nn.Conv2d(channels, channels, 1)
        # lateral[k] takes the encoder map features[-2 - k]; smooth[k] follows its sum.
        self.lateral = nn.ModuleList(conv_gn_gelu(c, channels) for c in config.feature_channels[-2::-1])
        self.smooth = nn.ModuleList(conv_gn_gelu(channels, channels) for _ in self.lateral)
        self.fuse = conv_gn_gelu(4 * channels, channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        deepest = features[-1]
        pooled = [resize_aligned(branch(adaptive_max_pool(deepest, bins)), deepest.shape[-2:])
                  for bins, branch in zip(self.pool_sizes, self.ppm.branches)]
        levels = [self.ppm.bottleneck(torch.cat([*pooled, deepest], dim=1))]
        for k, (lateral, smooth) in enumerate(zip(self.lateral, self.smooth)):
            previous = levels[-1]
            up = resize_aligned(previous, [2 * s for s in previous.shape[-2:]])
            if k == 0:
                up = self.top(up)
            side = lateral(features[-2 - k])
            levels.append(smooth(up + resize_aligned(side, [2 * s for s in side.shape[-2:]])))
        size = levels[-1].shape[-2:]
        return self.fuse(torch.cat([resize_aligned(level, size) for level in levels[:-1]] + [levels[-1]], dim=1))


class ProgressiveHead(nn.Module):
    """1/4 -> 1/1: (bilinear x2, 3x3 conv, GroupNorm, GELU) twice, then a 3x3 classifier."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.up = nn.ModuleList(conv_gn_gelu(channels, channels, 3) for _ in range(2))
        self.classifier = nn.Conv2d(channels, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for refine in self.up:
            x = refine(resize_aligned(x, [2 * s for s in x.shape[-2:]]))
        return self.classifier(x)


class PublishedSegmentor(nn.Module):
    """(N, 1, S, S) normalised HH -> (N, num_classes, S, S) logits."""

    def __init__(self, config: PublishedConfig = PublishedConfig()):
        super().__init__()
        self.config = config
        self.encoder = PublishedEncoder(config)
        self.decoder = PublishedDecoder(config)
        self.head = ProgressiveHead(config.decoder_channels, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


_HEAD_LAYER = {"0": "1", "1": "2"}  # our (conv, norm) inside their (upsample, conv, norm, act)


def their_name(ours: str) -> str:
    """Our state_dict key -> the key of the same tensor in the authors' checkpoint."""
    parts = ours.split(".")
    if ours == "encoder.position":
        return "encoder.absolute_pos_embed"
    if parts[:2] == ["encoder", "embed"]:
        return ".".join(["encoder.patch_embed.proj", *parts[2:]])
    if parts[:2] == ["encoder", "embed_norm"]:
        return ".".join(["encoder.patch_embed.norm", *parts[2:]])
    if parts[:2] == ["encoder", "stages"]:
        rest = ".".join(parts[3:])
        rest = (rest.replace("attn.bias_table", "attn.relative_position_bias_table")
                .replace("mlp.0.", "mlp.fc1.").replace("mlp.2.", "mlp.fc2.").replace("merge.", "downsample."))
        return f"encoder.layers.{parts[2]}.{rest}"
    if parts[:3] == ["decoder", "ppm", "branches"]:
        return f"decoder.decoder.PPMHead.psp_modules.ppm_modules.{parts[3]}.{int(parts[4]) + 1}.{parts[5]}"
    if parts[:3] == ["decoder", "ppm", "bottleneck"]:
        return "decoder.decoder.PPMHead.final." + ".".join(parts[3:])
    if parts[1] in ("lateral", "smooth"):
        suffix = "_" if parts[1] == "smooth" else ""
        return f"decoder.decoder.Conv_fuse{int(parts[2]) + 1}{suffix}." + ".".join(parts[3:])
    if parts[1] == "top":
        return "decoder.decoder.conv_x1." + parts[2]
    if parts[1] == "fuse":
        return "decoder.decoder.fuse_all." + ".".join(parts[2:])
    if parts[:2] == ["head", "up"]:
        return f"decoder.prog_head.up{int(parts[2]) + 1}.{_HEAD_LAYER[parts[3]]}.{parts[4]}"
    if parts[:2] == ["head", "classifier"]:
        return "decoder.prog_head.cls_seg." + parts[2]
    raise KeyError(ours)


class _SavedConfig:
    """Stands in for the yacs CfgNode their training script saves beside the weights: read back as a
    plain OrderedDict (the one mapping type torch's weights-only reader fills and builds), never used."""

    def __new__(cls, *args, **kwargs):
        return collections.OrderedDict()


def read_state_dict(path: pathlib.Path) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file, read without running code from it (weights_only)."""
    try:
        with torch.serialization.safe_globals([(_SavedConfig, "yacs.config.CfgNode")]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointRefused(f"'{path}' does not exist.") from None
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise CheckpointRefused(f"'{path}' is not a PyTorch checkpoint holding only tensors and plain values "
                                f"(torch.load with weights_only=True: {type(error).__name__}).") from None
    if isinstance(checkpoint, dict):
        for key in ("model", "state_dict"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not checkpoint or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.items()):
        raise CheckpointRefused(f"'{path}' holds no state_dict (a mapping of names to tensors, alone or under "
                                f"'model' or 'state_dict').")
    if all(k.startswith("module.") for k in checkpoint):  # saved from a DistributedDataParallel wrapper
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return checkpoint


def config_of(state: dict[str, torch.Tensor]) -> PublishedConfig:
    """The architecture sizes the checkpoint's tensors imply (Swin-B for the published weights)."""
    try:
        embed_dim = state["encoder.patch_embed.proj.weight"].shape[0]
        grid = math.isqrt(state["encoder.absolute_pos_embed"].shape[1])
        depths, heads = [], []
        for stage in range(4):
            depths.append(len({k.split(".")[4] for k in state if k.startswith(f"encoder.layers.{stage}.blocks.")}))
            heads.append(state[f"encoder.layers.{stage}.blocks.0.attn.relative_position_bias_table"].shape[1])
        rows = state["encoder.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
        classifier = state["decoder.prog_head.cls_seg.weight"]
        pools = len({k.split(".")[5] for k in state if k.startswith("decoder.decoder.PPMHead.psp_modules.ppm_modules.")})
    except KeyError as missing:
        raise CheckpointRefused(f"The checkpoint has no tensor {missing}: it is not a SAR-W-SimMIM Swin + UPerNet "
                                f"segmentation checkpoint (a pretraining checkpoint has no decoder).") from None
    if pools != len(PublishedConfig.pool_sizes):
        raise CheckpointRefused(f"The checkpoint's pyramid pooling has {pools} branches; the published network has "
                                f"{len(PublishedConfig.pool_sizes)} (bins {PublishedConfig.pool_sizes}).")
    return PublishedConfig(img_size=grid * PATCH_SIZE, embed_dim=embed_dim, depths=tuple(depths),
                           num_heads=tuple(heads), window_size=(math.isqrt(rows) + 1) // 2,
                           decoder_channels=classifier.shape[1], num_classes=classifier.shape[0])


def load_published(state: dict[str, torch.Tensor], config: PublishedConfig | None = None) -> PublishedSegmentor:
    """Our network with the authors' tensors; refuses with the missing, unexpected and mis-shaped names."""
    model = PublishedSegmentor(config or config_of(state))
    ours = model.state_dict()
    expected = {their_name(k): k for k in ours}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k not in UNUSED_KEYS and not k.endswith(DERIVED_SUFFIXES)]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(ours[expected[k]].shape)})"
              for k in expected if k in state and state[k].shape != ours[expected[k]].shape]
    if missing or unexpected or shapes:
        problems = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("with another shape", shapes)):
            if names:
                more = f" and {len(names) - 8} more" if len(names) > 8 else ""
                problems.append(f"{len(names)} {label}: {', '.join(names[:8])}{more}")
        raise CheckpointRefused("The checkpoint's tensors do not match the SAR-W-SimMIM network; " + "; ".join(problems))
    model.load_state_dict({ours_key: state[theirs].float() for theirs, ours_key in expected.items()})
    return model.eval()


def default_classes(count: int) -> tuple[ClassInfo, ...]:
    """Channel names only (their class names are not published with their code), the plugin's colours."""
    colours = [color for _, _, color in LULC_CLASSES]
    return tuple(ClassInfo(i + 1, f"Class {i + 1} (output {i})", colours[i % len(colours)]) for i in range(count))


def contract_of(classes: tuple[ClassInfo, ...], config: PublishedConfig, gsd_m: float, model_name: str) -> ModelContract:
    contract = contract_for("lulc", AUTHORS_NORMALISATION, config.img_size, config.img_size // 4, gsd_m,
                            0.5, model_name, TRAINED_ON)
    contract = dataclasses.replace(contract, classes=classes)
    # The contract's own checks (codes 1..254 and unique, colours, tile size): refuse before exporting.
    return ModelContract.from_metadata(contract.to_metadata(), "the imported model", "lulc")


class ImportCancelled(Exception):
    """The user cancelled; nothing was written."""


class ExportMismatch(RuntimeError):
    """ONNX Runtime and torch disagree on the exported model by more than the tolerance."""


CHECKPOINT_SUFFIXES = (".pth", ".pt")
DEFAULT_MODEL_NAME = "SAR-W-SimMIM Swin-B UPerNet (authors' weights)"
DEFAULT_TOLERANCE = 1e-3


def import_checkpoint(checkpoint, out, classes=None, gsd_m: float = DEFAULT_GSD_M,
                      model_name: str = DEFAULT_MODEL_NAME, tolerance: float = DEFAULT_TOLERANCE,
                      log=print, progress=None, is_cancelled=None) -> float:
    """Write the checkpoint's network as the plugin's ONNX model ``out`` (``classes``: a class table,
    one row per output channel; default: channel names only); returns the largest |ONNX Runtime -
    torch| logit difference. Raises CheckpointRefused before any work, ImportCancelled, or
    ExportMismatch; writes ``out`` whole or nothing."""
    checkpoint, out = pathlib.Path(checkpoint), pathlib.Path(out)
    progress = progress or (lambda value: None)
    cancelled = is_cancelled or (lambda: False)
    if checkpoint.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise CheckpointRefused(f"'{checkpoint}' is not a PyTorch checkpoint file (.pth or .pt).")
    if out.suffix.lower() != ".onnx":
        raise CheckpointRefused(f"The model file '{out}' must end in .onnx.")
    if not gsd_m > 0:
        raise CheckpointRefused(f"The ground sampling distance must be positive (got {gsd_m} m).")
    try:
        check_distinct_files({"model": out}, {"checkpoint": checkpoint, "class table": classes})
        state = read_state_dict(checkpoint)
        progress(10.0)
        config = config_of(state)
        names = read_class_table(classes) if classes else default_classes(config.num_classes)
        if len(names) != config.num_classes:
            raise CheckpointRefused(f"The class table '{classes}' lists {len(names)} classes but the "
                                    f"checkpoint's network has {config.num_classes} output channels.")
        contract = contract_of(names, config, gsd_m, model_name)
    except (ClassTableError, InferenceError) as error:
        raise CheckpointRefused(str(error)) from None
    model = load_published(state, config)
    progress(25.0)
    log(f"network: Swin embed {config.embed_dim}, depths {config.depths}, heads {config.num_heads}, window "
        f"{config.window_size}, {config.img_size} px tiles; decoder {config.decoder_channels} channels; "
        f"{config.num_classes} classes")
    if not classes:
        log("warning: the class names are placeholders (the authors' code does not publish them); "
            "give a class table to name them")
    if cancelled():
        raise ImportCancelled()
    with PendingFiles() as pending:
        target = pending.new(out)
        export_onnx(model, contract, target)
        progress(70.0)
        if cancelled():
            raise ImportCancelled()
        ModelContract.from_onnx(target, expected_task="lulc")
        difference = parity(model, target, config.img_size, batch=1)
        if not difference <= tolerance:
            raise ExportMismatch(f"ONNX Runtime and torch disagree by {difference:.2e} > the tolerance {tolerance}")
        if cancelled():
            raise ImportCancelled()
    progress(100.0)
    log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, lulc, tile {config.img_size}, opset {OPSET}); "
        f"max |onnxruntime - torch| = {difference:.2e}")
    return difference


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sarlulc.training.published", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=pathlib.Path, help="the authors' segmentation checkpoint (.pth)")
    p.add_argument("-o", "--out", required=True, type=pathlib.Path, help="ONNX file to write")
    p.add_argument("--classes", type=pathlib.Path,
                   help="CSV code,name,color, one row per output channel in order (default: channel names only)")
    p.add_argument("--gsd", type=float, default=DEFAULT_GSD_M,
                   help="ground sampling distance of the authors' tiles, m (not stated in their code)")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="shown in the log")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help="largest allowed |ONNX Runtime - torch| logit difference")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import_checkpoint(args.checkpoint, args.out, args.classes, args.gsd, args.model_name, args.tolerance)
    except CheckpointRefused as error:
        print(f"Cannot import: {error}", file=sys.stderr)
        return 2
    except ExportMismatch as error:
        print(f"Cannot import: {error}; nothing was written.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Named network configurations; every field is a switch the paper's ablation needs.

``tiny-cpu`` is what the plugin bundles (runs on a laptop CPU through ONNX Runtime);
``paper`` follows the size of arXiv 2601.15705 (Swin-B encoder as in MixMAE, UPerNet 512).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EncoderConfig:
    """Hierarchical Swin encoder: a 4x4 patch embedding, then 4 stages halving resolution."""

    in_channels: int = 1
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 8
    mlp_ratio: float = 4.0
    drop_path: float = 0.1

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2 ** i for i in range(len(self.depths)))

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderConfig":
        """Inverse of dataclasses.asdict (checkpoints store tuples as lists)."""
        return cls(**_tuples(data))


def _tuples(data: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


@dataclass(frozen=True)
class NetConfig:
    """Encoder + UPerNet decoder + the two architectural refinements of the paper."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder_channels: int = 512
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)
    # (i) high-resolution injection: a conv stem on the input at 1/1 and 1/2 resolution.
    hr_injection: bool = True
    hr_channels: int = 32
    # (ii) progressive refine-up head: refine at 1/4, up x2, refine, up x2, refine.
    refine_up: bool = True
    num_classes: int = 9

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetConfig":
        data = dict(data)
        encoder = data.pop("encoder")
        return cls(encoder=EncoderConfig.from_dict(encoder), **_tuples(data))


NAMED_CONFIGS: dict[str, NetConfig] = {
    # ~3.3 M parameters (13 MB ONNX): usable on a 2-core CPU at 256 x 256 tiles.
    "tiny-cpu": NetConfig(
        encoder=EncoderConfig(embed_dim=32, depths=(2, 2, 4, 2), num_heads=(1, 2, 4, 8),
                              window_size=8, drop_path=0.05),
        decoder_channels=64, hr_channels=16),
    # Swin-B (MixMAE's backbone) with UPerNet's usual 512 decoder channels.
    "paper": NetConfig(
        encoder=EncoderConfig(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
                              window_size=8, drop_path=0.3),
        decoder_channels=512, hr_channels=64),
}


def named_config(name: str, **overrides) -> NetConfig:
    """A named config with top-level fields replaced (e.g. ``hr_injection=False``)."""
    if name not in NAMED_CONFIGS:
        raise ValueError(f"Unknown network config '{name}'; choose one of: {', '.join(NAMED_CONFIGS)}")
    return dataclasses.replace(NAMED_CONFIGS[name], **overrides)

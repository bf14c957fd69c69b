"""The two architectural refinements of arXiv 2601.15705: HR injection and the refine-up head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .upernet import ConvBNReLU


class HighResolutionStem(nn.Module):
    """Light conv stem on the input: features at full and 1/2 resolution, plus a 1/4 projection.

    The Swin encoder starts at 1/4 (4x4 patches), so thin structures (rivers, roads, field
    boundaries) are lost before the decoder sees them; this stem keeps them. The 1/4 projection
    joins UPerNet's fusion; the 1/1 and 1/2 maps are skip inputs of the refine-up head.
    """

    def __init__(self, in_channels: int, channels: int, quarter_channels: int):
        super().__init__()
        self.to_full = nn.Sequential(ConvBNReLU(in_channels, channels), ConvBNReLU(channels, channels))
        self.to_half = nn.Sequential(ConvBNReLU(channels, 2 * channels, stride=2), ConvBNReLU(2 * channels, 2 * channels))
        self.to_quarter = ConvBNReLU(2 * channels, quarter_channels, stride=2)
        self.out_channels = (channels, 2 * channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        full = self.to_full(x)
        half = self.to_half(full)
        return full, half, self.to_quarter(half)


class RefineBlock(nn.Sequential):
    """Two 3x3 conv-BN-ReLU: the 'convolutional refinement' between upsampling steps."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class RefineUpHead(nn.Module):
    """Fused 1/4 map -> logits at full resolution by refine, x2, refine, x2, refine.

    Replaces the single bilinear x4 of plain UPerNet. When HR features are given (``skip_channels``)
    each upsampling step concatenates the stem's map of the same resolution before refining.
    """

    def __init__(self, channels: int, num_classes: int, skip_channels: tuple[int, int] | None):
        super().__init__()
        half_ch, full_ch = max(channels // 2, 16), max(channels // 4, 16)
        skip_full, skip_half = skip_channels or (0, 0)
        self.refine_quarter = RefineBlock(channels, channels)
        self.refine_half = RefineBlock(channels + skip_half, half_ch)
        self.refine_full = RefineBlock(half_ch + skip_full, full_ch)
        self.classifier = nn.Conv2d(full_ch, num_classes, 1)

    def forward(self, x: torch.Tensor, size, skips: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = self.refine_quarter(x)
        x = _up2(x, None if skips is None else skips[1].shape[-2:])
        x = self.refine_half(x if skips is None else torch.cat([x, skips[1]], dim=1))
        x = _up2(x, tuple(size))
        x = self.refine_full(x if skips is None else torch.cat([x, skips[0]], dim=1))
        return self.classifier(x)


def _up2(x: torch.Tensor, size=None) -> torch.Tensor:
    size = size if size is not None else (2 * x.shape[-2], 2 * x.shape[-1])
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)

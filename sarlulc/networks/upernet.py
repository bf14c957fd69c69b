"""UPerNet decoder (Xiao et al. 2018): pyramid pooling on the deepest map + FPN over the 4 scales."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def adaptive_avg_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two matrix products.

    Same bins as PyTorch (floor(i*n/s) .. ceil((i+1)*n/s)); unlike the ONNX export of adaptive
    pooling it works when ``size`` does not divide the map (e.g. 6 bins over an 8 x 8 map).
    """
    rows = _pooling_matrix(x.shape[-2], size, x)
    cols = _pooling_matrix(x.shape[-1], size, x)
    return rows @ x @ cols.transpose(0, 1)


def _pooling_matrix(n: int, size: int, like: torch.Tensor) -> torch.Tensor:
    matrix = torch.zeros(size, n, dtype=like.dtype, device=like.device)
    for i in range(size):
        start, end = (i * n) // size, math.ceil((i + 1) * n / size)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """PPM: pooled context at several bin counts, upsampled and fused with the map itself."""

    def __init__(self, in_channels: int, channels: int, scales: tuple[int, ...]):
        super().__init__()
        self.scales = scales
        self.branches = nn.ModuleList(ConvBNReLU(in_channels, channels, 1) for _ in scales)
        self.bottleneck = ConvBNReLU(in_channels + len(scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [resize(branch(adaptive_avg_pool(x, s)), x.shape[-2:]) for s, branch in zip(self.scales, self.branches)]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UPerNet(nn.Module):
    """Encoder maps (1/4 .. 1/32) -> one fused 1/4 map of ``channels``.

    ``extra_channels`` > 0 adds a fifth input at 1/4 resolution to the final fusion: that is where
    the high-resolution injection enters the multi-scale decoding.
    """

    def __init__(self, in_channels: tuple[int, ...], channels: int, pool_scales: tuple[int, ...],
                 extra_channels: int = 0):
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], channels, pool_scales)
        self.laterals = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = ConvBNReLU(len(in_channels) * channels + extra_channels, channels, 3)

    def forward(self, features: list[torch.Tensor], extra: torch.Tensor | None = None) -> torch.Tensor:
        levels = [lateral(f) for lateral, f in zip(self.laterals, features)] + [self.ppm(features[-1])]
        for i in range(len(levels) - 1, 0, -1):
            levels[i - 1] = levels[i - 1] + resize(levels[i], levels[i - 1].shape[-2:])
        outputs = [conv(level) for conv, level in zip(self.fpn_convs, levels[:-1])] + [levels[-1]]
        size = outputs[0].shape[-2:]
        fused = [outputs[0]] + [resize(o, size) for o in outputs[1:]]
        if extra is not None:
            fused.append(resize(extra, size) if extra.shape[-2:] != size else extra)
        return self.fuse(torch.cat(fused, dim=1))

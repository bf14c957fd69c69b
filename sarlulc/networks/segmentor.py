"""The full segmentation network built from a :class:`NetConfig`."""

from __future__ import annotations

import torch
from torch import nn

from .configs import NetConfig
from .refine import HighResolutionStem, RefineUpHead
from .swin import SwinEncoder
from .upernet import UPerNet, resize


class Segmentor(nn.Module):
    """(N, 1, H, W) normalised SAR -> (N, num_classes, H, W) logits, any H and W.

    Baseline (both switches off): Swin + UPerNet + 1x1 classifier at 1/4 + bilinear x4.
    ``hr_injection`` adds the high-resolution stem; ``refine_up`` replaces the x4 by the
    progressive head (fed with the stem's 1/2 and 1/1 maps when both are on).
    """

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.encoder = SwinEncoder(config.encoder)
        channels = config.decoder_channels
        self.hr_stem = (HighResolutionStem(config.encoder.in_channels, config.hr_channels, channels)
                        if config.hr_injection else None)
        self.decoder = UPerNet(self.encoder.out_channels, channels, config.pool_scales,
                                        channels if self.hr_stem is not None else 0)
        if config.refine_up:
            skips = self.hr_stem.out_channels if self.hr_stem is not None else None
            self.head = RefineUpHead(channels, config.num_classes, skips)
        else:
            self.head = nn.Conv2d(channels, config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        features = self.encoder(x)
        full = half = quarter = None
        if self.hr_stem is not None:
            full, half, quarter = self.hr_stem(x)
        fused = self.decoder(features, quarter)
        if self.config.refine_up:
            return self.head(fused, size, None if full is None else (full, half))
        return resize(self.head(fused), size)

"""Hierarchical Swin Transformer encoder for single-channel SAR (Liu et al. 2021), written for this project.

Window attention with a relative position bias, shifted windows with an attention mask, patch
merging, and padding so any input size works (padded tokens are never attended to). The encoder
can also run MixMAE's mixed input: ``group`` says which of two images each token belongs to and
attention is restricted to tokens of the same image (MixMAE's masked self-attention).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .configs import EncoderConfig

PATCH_SIZE = 4
MASKED = -100.0  # additive attention bias that removes a key (exp(-100) is 0 in float32)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window*window, C); H and W are multiples of ``window``."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


@functools.lru_cache(maxsize=64)
def attention_mask(hp: int, wp: int, h: int, w: int, window: int, shift: int, device) -> torch.Tensor:
    """Additive (nW, N, N) mask over the windows of a padded (hp, wp) grid whose valid part is (h, w).

    Two cases remove a key: after the cyclic shift, tokens from different image regions must not
    see each other; and padding tokens (added to reach a multiple of the window) are never keys.
    Cached per resolution and device (it depends on nothing else); callers must not modify it.
    """
    ids = torch.zeros(1, hp, wp, 1, device=device)
    if shift:
        bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        region = 0
        for rows in bounds:
            for cols in bounds:
                ids[:, rows, cols, :] = region
                region += 1
    pad = torch.zeros(1, hp, wp, 1, device=device)
    pad[:, h:, :, :] = 1
    pad[:, :, w:, :] = 1
    if shift:
        pad = torch.roll(pad, shifts=(-shift, -shift), dims=(1, 2))
    ids = window_partition(ids, window).squeeze(-1)
    pad = window_partition(pad, window).squeeze(-1)
    mask = (ids.unsqueeze(1) != ids.unsqueeze(2)) | (pad.unsqueeze(1) > 0)
    return mask.float() * MASKED


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("bias_index", relative[..., 0] * (2 * window - 1) + relative[..., 1], persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B*nW, N, C); mask: additive, (nW, N, N) or (B, nW, N, N), or None.

        softmax(q k^T / sqrt(d) + relative position bias + mask) v through PyTorch's fused
        scaled_dot_product_attention (memory-efficient kernels on GPUs; exported to ONNX as plain ops)."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.bias_index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)  # (1, h, N, N)
        if mask is not None:
            nw = mask.shape[-3]
            mask = mask if mask.dim() == 4 else mask.unsqueeze(0)  # (B or 1, nW, N, N)
            bias = (mask.unsqueeze(2) + bias.unsqueeze(0)).expand(bw // nw, nw, self.num_heads, n, n)
            bias = bias.reshape(bw, self.num_heads, n, n)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return self.proj(x.transpose(1, 2).reshape(bw, n, c))


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch per sample while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class SwinBlock(nn.Module):
    """(Shifted) window attention + MLP, both pre-norm residual."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, group: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, H, W, C); group: (B, H, W) image index of each token (MixMAE) or None."""
        b, h, w, c = x.shape
        win = self.window
        pad_h, pad_w = (-h) % win, (-w) % win
        # A map no larger than the window is one window: shifting it would only wrap it around.
        shift = self.shift if max(h, w) > win else 0
        y = F.pad(self.norm1(x), (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        mask = None
        if shift or pad_h or pad_w:
            mask = attention_mask(hp, wp, h, w, win, shift, x.device).to(y.dtype)
        if group is not None:
            g = F.pad(group.to(y.dtype), (0, pad_w, 0, pad_h))
            if shift:
                g = torch.roll(g, shifts=(-shift, -shift), dims=(1, 2))
            g = window_partition(g.unsqueeze(-1), win).squeeze(-1).view(b, -1, win * win)
            group_mask = (g.unsqueeze(-1) != g.unsqueeze(-2)).to(y.dtype) * MASKED
            mask = group_mask if mask is None else (group_mask + mask.unsqueeze(0)).clamp(min=MASKED)
        y = self.attn(window_partition(y, win), mask)
        y = window_reverse(y, win, hp, wp)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w, :])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token with 2C channels (odd sizes padded)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
                 drop_paths: list[float], downsample: bool):
        super().__init__()
        self.downsample = PatchMerging(dim // 2) if downsample else None
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_paths[i])
            for i in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, group: torch.Tensor | None) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if group is not None:
            group = _resize_group(group, x.shape[1:3])
        for block in self.blocks:
            x = block(x, group)
        return x


def _resize_group(group: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(group[:, None].float(), size=tuple(size), mode="nearest")[:, 0]


class SwinEncoder(nn.Module):
    """(B, 1, H, W) -> four (B, C_i, H/4/2^i, W/4/2^i) maps (ceil for sizes not multiples of 32)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.patch_embed = nn.Conv2d(config.in_channels, config.embed_dim, PATCH_SIZE, stride=PATCH_SIZE)
        self.embed_norm = nn.LayerNorm(config.embed_dim)
        rates = torch.linspace(0, config.drop_path, sum(config.depths)).tolist()
        self.stages = nn.ModuleList()
        start = 0
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
            self.stages.append(SwinStage(config.stage_channels[i], depth, heads, config.window_size,
                                         config.mlp_ratio, rates[start:start + depth], downsample=i > 0))
            start += depth
        self.apply(_init_weights)

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self.config.stage_channels

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding, (B, 1, H, W) -> (B, H/4, W/4, C) tokens."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % PATCH_SIZE, 0, (-h) % PATCH_SIZE))
        return self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))

    def forward_tokens(self, tokens: torch.Tensor, group: torch.Tensor | None = None,
                       last_only: bool = False) -> list[torch.Tensor]:
        """Run the stages on embedded tokens; ``group`` (B, h, w) restricts attention per image.

        ``last_only`` returns only the last stage's map and skips the other stages' output norms
        (MixMAE uses nothing else: computing them would leave parameters without gradient, which
        DistributedDataParallel refuses)."""
        features = []
        for index, stage in enumerate(self.stages):
            tokens = stage(tokens, group)
            if not last_only or index == len(self.stages) - 1:
                features.append(stage.norm(tokens).permute(0, 3, 1, 2).contiguous())
        return features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_tokens(self.embed(x))


def _init_weights(module: nn.Module):
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

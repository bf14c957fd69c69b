"""SAR-W-MixMAE: MixMAE pretraining of the Swin encoder with backscatter-power-weighted loss.

MixMAE (Liu et al. 2023): two images are cut into 32 x 32 cells (the encoder's last-stage
tokens); a random half of the cells comes from image A, the rest from image B. The encoder
sees this single mixed image, with attention restricted to tokens of the same source image.
A light transformer decoder "unmixes": for A it keeps A's visible tokens, replaces the rest by
a mask token and predicts the pixels of the cells A lost; likewise for B. SAR-W-MixMAE
(Caglayan et al. 2025) weighs the per-pixel squared error by exp(-k * p_norm), see
:func:`losses.sar_power_weights`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..networks.configs import EncoderConfig
from .losses import sar_power_weights, weighted_reconstruction_loss
from ..networks.swin import SwinEncoder

CELL = 32  # pixels per last-stage token: the mixing granularity


def sincos_position_embedding(h: int, w: int, dim: int, device) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding (h*w, dim); works for any crop size."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    out_y = ys.reshape(-1, 1) * omega
    out_x = xs.reshape(-1, 1) * omega
    embedding = torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)
    return nn.functional.pad(embedding, (0, dim - embedding.shape[1]))


class MixMAE(nn.Module):
    """Swin encoder + unmixing decoder; ``forward`` returns the SAR-W reconstruction loss."""

    def __init__(self, encoder_config: EncoderConfig, decoder_dim: int = 128, decoder_depth: int = 2,
                 decoder_heads: int = 4, mask_ratio: float = 0.5, sarw_k: float = 1.0,
                 norm_mean: float = -12.0, norm_std: float = 6.0, sarw_domain: str = "power"):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be between 0 and 1, got {mask_ratio}")
        self.encoder = SwinEncoder(encoder_config)
        # MixMAE reconstructs from the last stage only: the other stages' output norms get no
        # gradient, and DistributedDataParallel refuses parameters that get none. They stay at
        # their initial values (as they would anyway) and are trained when fine-tuning.
        for stage in self.encoder.stages[:-1]:
            stage.norm.requires_grad_(False)
        self.mask_ratio, self.sarw_k, self.sarw_domain = mask_ratio, sarw_k, sarw_domain
        self.norm_mean, self.norm_std = norm_mean, norm_std
        self.to_decoder = nn.Linear(encoder_config.stage_channels[-1], decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        layer = nn.TransformerEncoderLayer(decoder_dim, decoder_heads, 4 * decoder_dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerEncoder(layer, decoder_depth, enable_nested_tensor=False)
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.to_pixels = nn.Linear(decoder_dim, CELL * CELL * encoder_config.in_channels)

    def random_mix_mask(self, pairs: int, h: int, w: int, device) -> torch.Tensor:
        """(pairs, h, w) bool: True where the cell comes from image A (a (1 - mask_ratio) share)."""
        cells = h * w
        keep = max(1, min(cells - 1, round(cells * (1.0 - self.mask_ratio))))
        ranks = torch.rand(pairs, cells, device=device).argsort(dim=1).argsort(dim=1)
        return (ranks < keep).view(pairs, h, w)

    def forward(self, images: torch.Tensor, valid: torch.Tensor, mix_mask: torch.Tensor | None = None) -> torch.Tensor:
        """images, valid: (2P, 1, H, W), H and W multiples of 32; pairs are (i, i + P)."""
        n, _, height, width = images.shape
        if n % 2 or height % CELL or width % CELL:
            raise ValueError(f"MixMAE needs an even batch and crops that are multiples of {CELL} px, "
                             f"got batch {n} and {height} x {width}")
        pairs, h, w = n // 2, height // CELL, width // CELL
        image_a, image_b = images[:pairs], images[pairs:]
        if mix_mask is None:
            mix_mask = self.random_mix_mask(pairs, h, w, images.device)
        from_a = mix_mask[:, None].repeat_interleave(CELL, 2).repeat_interleave(CELL, 3)
        mixed = torch.where(from_a, image_a, image_b)
        tokens = self.encoder.embed(mixed)
        group = mix_mask.float().repeat_interleave(CELL // 4, 1).repeat_interleave(CELL // 4, 2)
        (latent,) = self.encoder.forward_tokens(tokens, group, last_only=True)  # (P, C, h, w)
        latent = self.to_decoder(latent.flatten(2).transpose(1, 2))  # (P, h*w, D)
        visible = torch.cat([mix_mask, ~mix_mask]).view(n, h * w, 1)
        decoder_in = torch.where(visible, latent.repeat(2, 1, 1), self.mask_token.to(latent.dtype))
        decoder_in = decoder_in + sincos_position_embedding(h, w, decoder_in.shape[-1], images.device).to(latent.dtype)
        cells = self.to_pixels(self.decoder_norm(self.decoder(decoder_in)))  # (2P, h*w, CELL*CELL)
        prediction = cells.view(n, h, w, 1, CELL, CELL).permute(0, 3, 1, 4, 2, 5).reshape(n, 1, height, width)
        hidden = ~torch.cat([from_a, ~from_a])  # the pixels each image lost to the other
        weights = self.sarw_weights(images, valid)
        return weighted_reconstruction_loss(prediction, images, weights, hidden & valid)

    def sarw_weights(self, images: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The SAR-W weight of every pixel of ``images`` (normalised input)."""
        return sar_power_weights(images, self.norm_mean, self.norm_std, self.sarw_k, valid, self.sarw_domain)


"""Focal + dice losses with alpha-tempered class weights, and the SAR-W reconstruction loss.

Targets are class indices (channel i = class code i+1); ``IGNORE_INDEX`` marks nodata pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -1


def class_weights(counts, alpha: float) -> torch.Tensor:
    """Inverse-frequency class weights tempered by ``alpha``: w_c = (1 / f_c) ** alpha.

    f_c is class c's share of the labelled pixels. The weights are scaled to mean 1 over the
    classes present, so alpha = 0 gives all ones (unweighted) and alpha = 1 full inverse
    frequency; rarer classes gain monotonically with alpha. Classes absent from the histogram
    get weight 1 (they have no pixels to weigh; 1 keeps them neutral in the dice average).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0 (0: unweighted, 1: inverse frequency), got {alpha}")
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.sum() <= 0:
        raise ValueError("The label histogram is empty: no labelled pixel in the training data.")
    present = counts > 0
    weights = torch.ones_like(counts)
    freq = counts[present] / counts.sum()
    raw = freq.pow(-alpha)
    weights[present] = raw / raw.mean()
    return weights.float()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
               gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss, -w_y (1 - p_y)^gamma log p_y, normalised like weighted CE.

    With gamma = 0 this is exactly ``F.cross_entropy(logits, target, weight, ignore_index)``.
    """
    valid = target != IGNORE_INDEX
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    modulation = (1.0 - log_p.exp()).clamp(min=0).pow(gamma) if gamma else 1.0
    w = weight.to(logits.device)[safe] if weight is not None else torch.ones_like(log_p)
    w = w * valid
    return -(w * modulation * log_p).sum() / w.sum().clamp(min=1e-12)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
              smooth: float = 1.0) -> torch.Tensor:
    """1 - weighted mean soft dice over the classes present in ``target``; in [0, 1]."""
    num_classes = logits.shape[1]
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    probs = F.softmax(logits.float(), dim=1) * valid
    onehot = F.one_hot(torch.where(valid[:, 0], target, torch.zeros_like(target)), num_classes)
    onehot = onehot.permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    cardinality = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth)
    present = onehot.sum(dims) > 0
    w = (weight.to(logits.device) if weight is not None else torch.ones(num_classes, device=logits.device)) * present
    if w.sum() == 0:
        return logits.sum() * 0.0
    return 1.0 - (w * dice).sum() / w.sum()


def binary_focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                      gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss on (N, 1, H, W) logits; ``weight`` = (w_negative, w_positive)."""
    logits = logits.float()[:, 0]
    valid = target != IGNORE_INDEX
    positive = (target == 1).float()
    bce = F.binary_cross_entropy_with_logits(logits, positive, reduction="none")
    p_true = torch.exp(-bce)
    modulation = (1.0 - p_true).pow(gamma) if gamma else 1.0
    w = weight.to(logits.device)[target.clamp(min=0)] if weight is not None else torch.ones_like(bce)
    w = w * valid
    return (w * modulation * bce).sum() / w.sum().clamp(min=1e-12)


def binary_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft dice of the positive class over valid pixels; in [0, 1]."""
    valid = (target != IGNORE_INDEX).float()
    probs = torch.sigmoid(logits.float()[:, 0]) * valid
    positive = (target == 1).float()
    intersection = (probs * positive).sum()
    return 1.0 - (2 * intersection + smooth) / (probs.sum() + positive.sum() + smooth)


class FocalDiceLoss(nn.Module):
    """focal_weight * focal + dice_weight * dice; multi-class (softmax) or binary (sigmoid)."""

    def __init__(self, binary: bool, weight: torch.Tensor | None = None, gamma: float = 2.0,
                 focal_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        self.binary = binary
        self.register_buffer("weight", weight if weight is not None else None)
        self.gamma, self.focal_weight, self.dice_weight = gamma, focal_weight, dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.binary:
            focal = binary_focal_loss(logits, target, self.weight, self.gamma)
            dice = binary_dice_loss(logits, target)
        else:
            focal = focal_loss(logits, target, self.weight, self.gamma)
            dice = dice_loss(logits, target, self.weight)
        return self.focal_weight * focal + self.dice_weight * dice


SARW_DOMAINS = ("power", "standardised")


def sar_power_weights(normalised_db: torch.Tensor, norm_mean: float, norm_std: float, k: float,
                      valid: torch.Tensor | None = None, domain: str = "power") -> torch.Tensor:
    """SAR-W weight per pixel, w = exp(-k * p_norm), for (N, 1, H, W) normalised dB images.

    ``domain`` "power" (the paper's formula): p is the linear backscatter power 10^(dB/10) of the
    de-normalised input; "standardised" (what the public SAR-W-MixMAE code computes): p = 10^(x/10)
    of the standardised input x itself. p_norm is p min-max normalised to [0, 1] within each image
    (over its valid pixels): dark, smooth (water-like) pixels get weight 1, the brightest exp(-k).
    k = 0 turns the weighting off (plain MixMAE). (The public code's exp(k * (1 - p_norm)) is
    e^k times this: a constant factor of the loss.)
    """
    if domain not in SARW_DOMAINS:
        raise ValueError(f"SAR-W domain must be one of {SARW_DOMAINS}, not {domain!r}")
    x = normalised_db.float()
    power = torch.pow(10.0, (x * norm_std + norm_mean if domain == "power" else x) / 10.0)
    if valid is None:
        valid = torch.ones_like(power, dtype=torch.bool)
    big = torch.finfo(power.dtype).max
    low = torch.where(valid, power, torch.full_like(power, big)).amin(dim=(1, 2, 3), keepdim=True)
    high = torch.where(valid, power, torch.full_like(power, -big)).amax(dim=(1, 2, 3), keepdim=True)
    p_norm = ((power - low) / (high - low).clamp(min=1e-12)).clamp(0, 1)
    return torch.exp(-k * p_norm)


def weighted_reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                                 loss_mask: torch.Tensor) -> torch.Tensor:
    """SAR-W MSE: mean over the pixels in ``loss_mask`` of weights * (prediction - target)^2."""
    loss_mask = loss_mask.float()
    return (weights * (prediction.float() - target.float()) ** 2 * loss_mask).sum() / loss_mask.sum().clamp(min=1)

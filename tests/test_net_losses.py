"""Losses: alpha-tempered class weights, focal/dice properties, SAR-W weighting, a training step."""

import math

import pytest
import torch
import torch.nn.functional as F

from sarlulc.training.losses import (IGNORE_INDEX, FocalDiceLoss, binary_dice_loss, binary_focal_loss, class_weights,
                                     dice_loss, focal_loss, sar_power_weights, weighted_reconstruction_loss)
from sarlulc.networks.segmentor import Segmentor
from net_support import mini_config

COUNTS = [5000, 3000, 1000, 100, 10]


def test_alpha_zero_is_unweighted():
    assert torch.equal(class_weights(COUNTS, 0.0), torch.ones(5))


def test_alpha_one_is_inverse_frequency_normalised_to_mean_one():
    weights = class_weights(COUNTS, 1.0)
    inverse = 1.0 / torch.tensor(COUNTS, dtype=torch.float64)
    assert torch.allclose(weights.double(), inverse / inverse.mean(), rtol=1e-6)
    assert weights.mean().item() == pytest.approx(1.0)


def test_weights_are_monotone_in_alpha():
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    rare = [class_weights(COUNTS, a)[-1].item() for a in alphas]
    common = [class_weights(COUNTS, a)[0].item() for a in alphas]
    assert rare == sorted(rare) and rare[0] < rare[-1]
    assert common == sorted(common, reverse=True) and common[0] > common[-1]
    # ratios between classes follow (f_i / f_j) ** alpha
    w = class_weights(COUNTS, 0.5)
    assert (w[-1] / w[0]).item() == pytest.approx(math.sqrt(5000 / 10), rel=1e-5)


def test_absent_class_gets_neutral_weight_and_bad_inputs_are_refused():
    weights = class_weights([100, 0, 10], 1.0)
    assert weights[1].item() == 1.0 and weights[2] > weights[0]
    with pytest.raises(ValueError, match="alpha"):
        class_weights(COUNTS, -1)
    with pytest.raises(ValueError, match="no labelled pixel"):
        class_weights([0, 0], 0.5)


def _batch(num_classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, 8, 8, generator=generator)
    target = torch.randint(0, num_classes, (2, 8, 8), generator=generator)
    target[0, :2] = IGNORE_INDEX
    return logits, target


def test_focal_with_gamma_zero_equals_weighted_cross_entropy():
    logits, target = _batch()
    weight = class_weights(COUNTS, 0.7)
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX)
    assert focal_loss(logits, target, weight, gamma=0.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert focal_loss(logits, target, None, gamma=0.0).item() == pytest.approx(
        F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX).item(), rel=1e-5)


def test_focal_down_weights_easy_pixels():
    logits, target = _batch()
    assert focal_loss(logits, target, gamma=2.0) < focal_loss(logits, target, gamma=0.0)


def test_ignored_pixels_do_not_count():
    logits, target = _batch()
    changed = logits.clone()
    changed[0, :, :2] = 100 * torch.randn(5, 2, 8)  # scores of ignored pixels only
    for loss in (focal_loss, dice_loss):
        assert loss(changed, target).item() == pytest.approx(loss(logits, target).item(), rel=1e-6)


def test_dice_is_in_unit_interval_and_zero_for_a_perfect_prediction():
    for seed in range(5):
        logits, target = _batch(seed=seed)
        value = dice_loss(logits, target, class_weights(COUNTS, 0.5)).item()
        assert 0.0 <= value <= 1.0
    logits, target = _batch()
    perfect = 50.0 * F.one_hot(target.clamp(min=0), 5).permute(0, 3, 1, 2).float()
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-4)
    assert 0.9 < dice_loss(-perfect, target).item() <= 1.0


def test_binary_losses():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 8, 8, generator=generator)
    target = torch.randint(0, 2, (2, 8, 8), generator=generator)
    target[1, 0] = IGNORE_INDEX
    valid = target != IGNORE_INDEX
    expected = F.binary_cross_entropy_with_logits(logits[:, 0][valid], target[valid].float())
    assert binary_focal_loss(logits, target, gamma=0.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0.0 <= binary_dice_loss(logits, target).item() <= 1.0
    perfect = torch.where(target == 1, 50.0, -50.0)[:, None].float()
    assert binary_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-3)


def test_sar_w_weights_match_a_hand_computed_example():
    # normalised values -1, 0, 1 with mean 0 dB and std 10 dB are -10, 0, +10 dB,
    # i.e. linear power 0.1, 1, 10; min-max over the image gives p_norm 0, 0.9/9.9, 1.
    image = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    weights = sar_power_weights(image, norm_mean=0.0, norm_std=10.0, k=2.0)
    expected = torch.tensor([1.0, math.exp(-2.0 * 0.9 / 9.9), math.exp(-2.0)])
    assert torch.allclose(weights.flatten(), expected, atol=1e-6)
    # loss: mean over the masked pixels of w * squared error; the unmasked pixel is left out
    prediction = torch.tensor([0.0, 2.0, 3.0]).view(1, 1, 1, 3)
    mask = torch.tensor([True, True, False]).view(1, 1, 1, 3)
    loss = weighted_reconstruction_loss(prediction, image, weights, mask)
    assert loss.item() == pytest.approx((1.0 * 1.0 + expected[1].item() * 4.0) / 2, rel=1e-6)
    assert torch.equal(sar_power_weights(image, 0.0, 10.0, k=0.0), torch.ones_like(image))


def test_sar_w_normalisation_ignores_invalid_pixels():
    image = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 4)
    valid = torch.tensor([True, True, True, False]).view(1, 1, 1, 4)
    weights = sar_power_weights(image, 0.0, 10.0, k=2.0, valid=valid)
    assert weights.flatten()[2].item() == pytest.approx(math.exp(-2.0))  # +10 dB is the brightest valid pixel


def test_sar_w_standardised_domain_is_the_public_codes_weighting():
    # the public SAR-W-MixMAE code takes 10^(x/10) of the standardised input x: -1, 0, 1 give
    # 0.794, 1, 1.259, whatever dB they stand for; min-max gives p_norm 0, 0.443, 1
    image = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    power = 10.0 ** (image.flatten() / 10.0)
    p_norm = (power - power.min()) / (power.max() - power.min())
    weights = sar_power_weights(image, norm_mean=-12.0, norm_std=6.0, k=1.0, domain="standardised")
    assert torch.allclose(weights.flatten(), torch.exp(-p_norm), atol=1e-6)
    assert weights.flatten()[1].item() == pytest.approx(math.exp(-0.4427), abs=1e-3)
    # in the power domain the same pixels (-18, -12, -6 dB) weigh more alike at the dark end
    assert sar_power_weights(image, -12.0, 6.0, k=1.0).flatten()[1] > weights.flatten()[1]
    with pytest.raises(ValueError, match="domain"):
        sar_power_weights(image, 0.0, 1.0, 1.0, domain="amplitude")


@pytest.mark.parametrize("binary", [False, True])
def test_one_training_step_reduces_the_loss(binary):
    torch.manual_seed(0)
    model = Segmentor(mini_config(num_classes=1 if binary else 9)).train()
    image = torch.randn(2, 1, 64, 64)
    target = (image[:, 0] < 0).long() if binary else ((image[:, 0] > 0).long() * 3)
    target[:, :4] = IGNORE_INDEX
    weights = class_weights([1, 1] if binary else [1] * 9, 0.5)
    criterion = FocalDiceLoss(binary, weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = criterion(model(image), target)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = criterion(model(image), target)
    assert after < before

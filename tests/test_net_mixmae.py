"""SAR-W-MixMAE pretraining: the mixing, the loss it optimises, and the encoder it hands over."""

import pytest
import torch

from sarlulc.training.mixmae import CELL, MixMAE
from sarlulc.networks.segmentor import Segmentor
from net_support import mini_config


def _model(**kwargs):
    return MixMAE(mini_config().encoder, decoder_dim=32, decoder_depth=1, **kwargs)


def test_mix_mask_gives_each_image_its_share_of_cells():
    mask = _model(mask_ratio=0.5).random_mix_mask(3, 4, 4, "cpu")
    assert mask.shape == (3, 4, 4)
    assert mask.sum(dim=(1, 2)).tolist() == [8, 8, 8]
    assert mask.flatten(1).float().std(0).sum() > 0  # pairs get different masks


def test_loss_only_scores_pixels_the_image_lost():
    torch.manual_seed(0)
    model = _model().eval()
    images = torch.randn(2, 1, 64, 64)
    valid = torch.ones_like(images, dtype=torch.bool)
    mask = torch.tensor([[[True, False], [False, True]]])
    base = model(images, valid, mask)
    # A keeps the top-left and bottom-right cells; marking its hidden top-right cell nodata changes the loss,
    # and with every pixel nodata nothing is left to score
    invalid = valid.clone()
    invalid[0, :, :CELL, CELL:] = False
    assert model(images, invalid, mask).item() != pytest.approx(base.item())
    all_invalid = torch.zeros_like(valid)
    assert model(images, all_invalid, mask).item() == 0.0


def test_pretraining_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = _model(sarw_k=1.0).train()
    images = torch.randn(4, 1, 64, 64)
    valid = torch.ones_like(images, dtype=torch.bool)
    mask = model.random_mix_mask(2, 2, 2, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        loss = model(images, valid, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bad_batches_are_refused_with_the_reason():
    model = _model()
    with pytest.raises(ValueError, match="even batch"):
        model(torch.zeros(3, 1, 64, 64), torch.ones(3, 1, 64, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(2, 1, 48, 64), torch.ones(2, 1, 48, 64, dtype=torch.bool))


def test_pretrained_encoder_weights_load_into_the_segmentor():
    pretrained = _model()
    segmentor = Segmentor(mini_config())
    segmentor.encoder.load_state_dict(pretrained.encoder.state_dict())
    for name, tensor in pretrained.encoder.state_dict().items():
        assert torch.equal(segmentor.encoder.state_dict()[name], tensor)


def test_every_trainable_parameter_gets_a_gradient_as_ddp_requires():
    """MixMAE reconstructs from the last stage: the other stages' output norms are frozen, not left
    without gradient (DistributedDataParallel stops at the second step otherwise)."""
    model = _model()
    images = torch.randn(2, 1, 64, 64)
    model(images, torch.ones_like(images, dtype=torch.bool)).backward()
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert {name for name, parameter in model.named_parameters() if parameter.grad is not None} == trainable
    assert {name for name, parameter in model.named_parameters() if not parameter.requires_grad} == {
        f"encoder.stages.{i}.norm.{kind}" for i in range(3) for kind in ("weight", "bias")}
    segmentor = Segmentor(mini_config())
    segmentor.encoder.load_state_dict(model.encoder.state_dict())  # fine-tuning trains them again
    assert all(parameter.requires_grad for parameter in segmentor.parameters())

"""The network: output shapes at any size, what each refinement switch changes, Swin masking."""

import pytest
import torch
import torch.nn.functional as F

from sarlulc.networks.configs import NAMED_CONFIGS, named_config
from sarlulc.networks.refine import HighResolutionStem, RefineUpHead
from sarlulc.networks.segmentor import Segmentor
from sarlulc.networks.swin import SwinEncoder, attention_mask
from sarlulc.networks.upernet import adaptive_avg_pool
from net_support import mini_config


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("height,width", [(64, 64), (96, 160), (100, 77), (33, 50)])
def test_logits_have_the_input_size_even_for_non_multiples_of_32(height, width):
    model = Segmentor(mini_config()).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, height, width))
    assert logits.shape == (2, 9, height, width)
    assert torch.isfinite(logits).all()


def test_tiny_cpu_config_is_small_and_keeps_shapes():
    model = Segmentor(named_config("tiny-cpu")).eval()
    assert n_params(model) * 4 / 2**20 < 40  # the bundled ONNX must stay under 40 MB
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 128, 128)).shape == (1, 9, 128, 128)


def test_named_configs_default_to_the_full_refined_model():
    for config in NAMED_CONFIGS.values():
        assert config.hr_injection and config.refine_up and config.num_classes == 9
    with pytest.raises(ValueError, match="tiny-cpu"):
        named_config("huge")


def test_water_model_has_one_output_channel():
    with torch.no_grad():
        assert Segmentor(mini_config(num_classes=1)).eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_hr_injection_switch_adds_the_stem_and_a_fifth_fusion_input():
    on, off = Segmentor(mini_config(hr_injection=True)), Segmentor(mini_config(hr_injection=False))
    assert isinstance(on.hr_stem, HighResolutionStem) and off.hr_stem is None
    channels = mini_config().decoder_channels
    assert on.decoder.fuse[0].in_channels == 5 * channels
    assert off.decoder.fuse[0].in_channels == 4 * channels
    # with the refine-up head, the stem's 1/2 and 1/1 maps also enter the head's refinement blocks
    assert on.head.refine_half[0][0].in_channels > off.head.refine_half[0][0].in_channels
    assert on.head.refine_full[0][0].in_channels > off.head.refine_full[0][0].in_channels
    assert n_params(on) > n_params(off)


def test_refine_up_switch_replaces_bilinear_x4_by_progressive_head():
    on, off = Segmentor(mini_config(refine_up=True)).eval(), Segmentor(mini_config(refine_up=False)).eval()
    assert isinstance(on.head, RefineUpHead)
    assert isinstance(off.head, torch.nn.Conv2d)
    seen = {}
    off.head.register_forward_hook(lambda m, i, o: seen.update(off=o.shape))
    on.head.classifier.register_forward_hook(lambda m, i, o: seen.update(on=o.shape))
    with torch.no_grad():
        on(torch.randn(1, 1, 64, 64))
        off(torch.randn(1, 1, 64, 64))
    assert seen["off"][-2:] == (16, 16)  # classified at 1/4, then one bilinear x4
    assert seen["on"][-2:] == (64, 64)  # classified after refining at full resolution
    assert n_params(on) > n_params(off)


def test_baseline_output_is_a_bilinear_upsampling_of_quarter_resolution_logits():
    model = Segmentor(mini_config(hr_injection=False, refine_up=False)).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        quarter = model.head(model.decoder(model.encoder(x)))
        expected = F.interpolate(quarter, size=(64, 64), mode="bilinear", align_corners=False)
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_hr_injection_lets_a_single_pixel_reach_full_resolution_detail():
    """With the stem and refine-up, a one-pixel change moves the logits most at (or next to) that pixel."""
    torch.manual_seed(0)
    model = Segmentor(mini_config()).eval()
    x = torch.randn(1, 1, 64, 64)
    y = x.clone()
    y[0, 0, 30, 41] += 5.0
    with torch.no_grad():
        change = (model(y) - model(x)).abs().sum(1)[0]
    row, col = divmod(change.argmax().item(), 64)
    assert abs(row - 30) <= 1 and abs(col - 41) <= 1


def test_adaptive_pool_matches_pytorch_when_bins_do_not_divide_the_map():
    x = torch.randn(2, 3, 8, 9)
    for bins in (1, 2, 3, 6):
        assert torch.allclose(adaptive_avg_pool(x, bins), F.adaptive_avg_pool2d(x, bins), atol=1e-6)


def test_shift_mask_separates_regions_and_hides_padding():
    mask = attention_mask(8, 8, 6, 8, window=4, shift=2, device="cpu")
    assert mask.shape == (4, 16, 16)
    # the last window (after the shift) mixes the wrapped rows/columns: some pairs are masked
    assert (mask[3] < 0).any() and (mask[0] == 0).all()
    no_shift = attention_mask(8, 8, 6, 8, window=4, shift=0, device="cpu")
    # rows 6 and 7 are padding: keys 8..15 of the bottom windows are masked for every query
    assert (no_shift[2][:, 8:] < 0).all() and (no_shift[2][:, :8] == 0).all()


def test_group_attention_keeps_two_mixed_images_apart():
    """MixMAE's masked attention: tokens of image A never see image B's content."""
    torch.manual_seed(0)
    encoder = SwinEncoder(mini_config().encoder).eval()
    group = torch.zeros(1, 16, 16)
    group[:, :8, :] = 1  # top half of the tokens belong to image A (8 x 8 token cells = 32 px)
    x = torch.randn(1, 1, 64, 64)
    y = x.clone()
    y[:, :, 32:, :] = torch.randn(1, 1, 32, 64)  # change only image B's pixels
    with torch.no_grad():
        fa = encoder.forward_tokens(encoder.embed(x), group)
        fb = encoder.forward_tokens(encoder.embed(y), group)
        plain = encoder.forward_tokens(encoder.embed(y))
    for level, (a, b) in enumerate(zip(fa, fb)):
        rows = a.shape[-2] // 2
        assert torch.allclose(a[..., :rows, :], b[..., :rows, :], atol=1e-5), level
    assert not torch.allclose(fa[0][..., :8, :], plain[0][..., :8, :], atol=1e-3)


def test_window_attention_matches_the_explicit_formula_with_masks():
    """scaled_dot_product_attention with the relative position bias and per-window / per-image masks
    equals softmax(q k^T / sqrt(d) + bias + mask) v written out."""
    from sarlulc.networks.swin import MASKED, WindowAttention, attention_mask

    assert attention_mask(8, 8, 7, 6, 4, 2, torch.device("cpu")) is attention_mask(8, 8, 7, 6, 4, 2, torch.device("cpu"))

    torch.manual_seed(0)
    attention = WindowAttention(dim=8, window=2, num_heads=2).eval()
    batch, windows, n = 3, 2, 4
    x = torch.randn(batch * windows, n, 8)
    masks = [None, (torch.rand(windows, n, n) > 0.7).float() * MASKED,
             (torch.rand(batch, windows, n, n) > 0.7).float() * MASKED]
    for mask in masks:
        q, k, v = attention.qkv(x).view(batch * windows, n, 3, 2, 4).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-2, -1)) * 4 ** -0.5
        logits = logits + attention.bias_table[attention.bias_index.view(-1)].view(n, n, 2).permute(2, 0, 1)
        if mask is not None:
            full = mask.unsqueeze(0).expand(batch, -1, -1, -1) if mask.dim() == 3 else mask
            logits = logits + full.reshape(batch * windows, 1, n, n)
        expected = attention.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(batch * windows, n, 8))
        with torch.no_grad():
            assert torch.allclose(attention(x, mask), expected, atol=1e-5)

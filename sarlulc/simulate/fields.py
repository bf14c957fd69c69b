"""Random fields and thin-line drawing for the scene simulator (numpy only, FFT based).

FFT synthesis makes smooth, naturally shaped fields cheaply (a 1024² field in tens of ms); fields
are synthesised on a grid 25 % larger than the scene and cropped so FFT periodicity (the left edge
continuing the right one) does not show.
"""

from __future__ import annotations

import numpy as np

_PAD = 1.25


def spectral_fields(rng: np.random.Generator, shape: tuple[int, int], scales_px) -> np.ndarray:
    """Zero-mean, unit-std smooth random fields, one per correlation length in `scales_px`
    (Gaussian spectrum); sums of several scales give natural, irregular boundaries. Broad fields
    are synthesised on a coarser grid (at least 4 samples per correlation length) and upsampled."""
    h, w = shape
    out = np.empty((len(scales_px), h, w), np.float32)
    for i, scale in enumerate(scales_px):
        step = max(1, int(scale // 4))
        coarse_shape = (h // step + 2, w // step + 2)
        ph, pw = int(coarse_shape[0] * _PAD) + 1, int(coarse_shape[1] * _PAD) + 1
        f2 = np.fft.fftfreq(ph)[:, None] ** 2 + np.fft.rfftfreq(pw)[None, :] ** 2
        amplitude = np.exp(-2.0 * (np.pi * scale / step) ** 2 * f2)
        coeffs = (rng.standard_normal(f2.shape) + 1j * rng.standard_normal(f2.shape)) * amplitude
        field = np.fft.irfft2(coeffs, s=(ph, pw))[:coarse_shape[0], :coarse_shape[1]]
        field = upsample(field, step, shape, 0.0) if step > 1 else field[:h, :w]
        field -= field.mean()
        out[i] = field / (field.std() + 1e-12)
    return out


def gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur by FFT (zero padded, so mass near the edges is not wrapped around); wide
    blurs run on block means (at least 4 blocks per sigma) and are upsampled."""
    h, w = image.shape
    step = max(1, int(sigma_px // 4))
    if step > 1:
        padded = np.zeros((-(-h // step) * step, -(-w // step) * step), np.float32)
        padded[:h, :w] = image
        blocks = padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step).mean(axis=(1, 3))
        return upsample(gaussian_blur(blocks, sigma_px / step), step, (h, w), (step - 1) / 2.0)
    pad = int(3 * sigma_px) + 1
    ph, pw = h + 2 * pad, w + 2 * pad
    padded = np.zeros((ph, pw), np.float32)
    padded[pad:pad + h, pad:pad + w] = image
    fy = np.fft.fftfreq(ph)[:, None]
    fx = np.fft.rfftfreq(pw)[None, :]
    transfer = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fy * fy + fx * fx)).astype(np.float32)
    return np.fft.irfft2(np.fft.rfft2(padded) * transfer, s=(ph, pw))[pad:pad + h, pad:pad + w].astype(np.float32)


def upsample(coarse: np.ndarray, step: float, shape: tuple[int, int], offset: float) -> np.ndarray:
    """Bilinear upsampling of a grid whose sample (i, j) lies at fine pixel (i*step + offset, j*step + offset)."""
    def axis(n, size):
        position = np.clip((np.arange(n) - offset) / step, 0, size - 1)
        lower = np.minimum(position.astype(np.int64), size - 2)  # callers give >= 2 samples per axis
        return lower, (position - lower).astype(np.float32)

    (y0, fy), (x0, fx) = axis(shape[0], coarse.shape[0]), axis(shape[1], coarse.shape[1])
    coarse = coarse.astype(np.float32)
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def sinuous_path(rng: np.random.Generator, start, heading: float, length_px: int, wiggle_rad: float,
                 wavelength_px: float) -> np.ndarray:
    """Centre-line points (N, 2) of a meandering line: the heading drifts around `heading` by a
    smoothed random signal of amplitude `wiggle_rad` and correlation length `wavelength_px`."""
    n = int(length_px)
    freq = np.fft.rfftfreq(2 * n)
    spectrum = (rng.standard_normal(freq.size) + 1j * rng.standard_normal(freq.size)) * np.exp(
        -2.0 * (np.pi * wavelength_px * freq) ** 2)
    drift = np.fft.irfft(spectrum, 2 * n)[:n]
    drift *= wiggle_rad / (drift.std() + 1e-12)
    theta = heading + drift
    steps = np.stack([np.sin(theta), np.cos(theta)], axis=1)
    return np.asarray(start, np.float64) + np.cumsum(steps, axis=0)


def draw_thick_line(mask: np.ndarray, points: np.ndarray, width_px: float) -> None:
    """Paint a line `width_px` pixels wide (a disk swept along `points`) into the boolean `mask`."""
    radius = max(width_px / 2.0, 0.5)
    r = int(np.ceil(radius)) + 1
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    offsets = np.stack([dy.ravel(), dx.ravel()], axis=1)
    base = np.floor(points).astype(np.int64)
    pixels = base[:, None, :] + offsets[None, :, :]
    distance2 = ((pixels + 0.5 - points[:, None, :]) ** 2).sum(axis=2)
    pixels = pixels[distance2 <= radius * radius]
    h, w = mask.shape
    keep = (pixels[:, 0] >= 0) & (pixels[:, 0] < h) & (pixels[:, 1] >= 0) & (pixels[:, 1] < w)
    mask[pixels[keep, 0], pixels[keep, 1]] = True


def warped_cells(rng: np.random.Generator, shape: tuple[int, int], cell_px: float, warp: np.ndarray) -> np.ndarray:
    """One standard-normal value per irregular cell (a grid of `cell_px` cells whose boundaries are
    displaced by the (2, H, W) `warp` field, in pixels): piecewise-constant per-region offsets."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy = np.floor((yy + warp[0]) / cell_px).astype(np.int64)
    cx = np.floor((xx + warp[1]) / cell_px).astype(np.int64)
    cy -= cy.min()
    cx -= cx.min()
    values = rng.standard_normal((cy.max() + 1, cx.max() + 1)).astype(np.float32)
    return values[cy, cx]

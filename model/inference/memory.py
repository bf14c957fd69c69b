"""How much memory a run's tile and batch sizes need, and how much the machine has.

Used to refuse tile and batch sizes that cannot fit before anything is computed, instead of a
run that swaps or is killed. Standard library only (QGIS's Python has no psutil).
"""

from __future__ import annotations

import os
import pathlib

MODEL_BYTES_PER_PIXEL = 1024
"""Working memory of a model per input pixel of a batch: the bundled Swin/UPerNet networks take
0.7 KB under ONNX Runtime on the CPU (measured), rounded up for other models."""
MEMORY_SHARE = 0.75
"""Share of the available memory a run may plan to use (the rest: QGIS, GDAL's cache, others)."""


def run_memory_bytes(tile_size: int, batch_size: int, channels: int, tile_overlap: int, block_size: int) -> int:
    """Peak memory of the engine's arrays and the model's working memory for these settings (an
    upper estimate): a batch (input, scores, probabilities, model), a block's read window with
    the tiles' halo, its blended sums and outputs, and the tiles shared with the next block."""
    pixels = tile_size * tile_size
    batch = batch_size * pixels * (4 + 3 * 4 * channels + MODEL_BYTES_PER_PIXEL)
    stride = tile_size - tile_overlap
    block = max(stride, block_size - block_size % stride)
    read = (block + 2 * tile_size) ** 2 * 24  # raw values, dB, validity, model input, temporaries
    blend = block * block * 4 * (2 * channels + 2)
    shared = (block // stride + 2) * channels * pixels * 4
    return batch + read + blend + shared


def available_memory_bytes() -> int | None:
    """Memory this process can still get: Linux MemAvailable (bounded by a cgroup v2 limit, as in
    containers), else what POSIX sysconf reports; None where neither exists (no bound is applied)."""
    available = None
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES") if "SC_AVPHYS_PAGES" in os.sysconf_names else \
                os.sysconf("SC_PHYS_PAGES")
            available = pages * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    try:
        cgroup = pathlib.Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, available)

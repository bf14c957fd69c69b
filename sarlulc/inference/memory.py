"""How much memory a run's tile and batch sizes need, and how much the machine has.

Used to refuse tile and batch sizes that cannot fit before anything is computed, instead of a
run that swaps or is killed. Standard library only (QGIS's Python has no psutil).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import threading

MODEL_BYTES_PER_PIXEL = 1280
"""Working memory of a model per input pixel of a batch: the bundled Swin/UPerNet networks take
1.2 KB under ONNX Runtime on the CPU (measured: +80 MB per 256 px tile), rounded up."""
MEMORY_SHARE = 0.75
"""Share of the available memory a run may plan to use (the rest: QGIS, GDAL's cache, others)."""
CPU_RUN_BUDGET = 320 * 2**20
"""What a run's arrays and the model's working memory may take by default on the CPU, so that a
run stays near 500 MB with Python, GDAL and ONNX Runtime loaded: the default batch size is the
largest that fits. The model runs as fast on one tile at a time as on four on the CPU."""


GPU_MEMORY_SHARE = 0.5
"""Share of a GPU's free memory the default batch may plan for (the rest: cuDNN's workspaces,
ONNX Runtime's arena growth, other programs on the GPU)."""
GPU_MAX_BATCH = 64
"""Largest default batch on a GPU: beyond it a GPU is already kept busy by the bundled models."""


def run_memory_bytes(tile_size: int, batch_size: int, channels: int, tile_overlap: int, block_size: int,
                     width: int = 0, carried_rows: int | None = None, model_on_host: bool = True) -> int:
    """Peak memory of the engine's arrays and the model's working memory for these settings on a
    raster ``width`` px wide (an upper estimate): a batch (input, scores, probabilities, model);
    two blocks' read windows (the one running, the one read ahead), each with its tiles; three
    blocks' blended sums (running, queued, being written); and what the tiles of a block row add
    to the next one, a band of ``carried_rows`` (`TilePlan.carried_rows`; default: a tile's
    height) across the raster. On a GPU (``model_on_host`` False) the model's working memory is
    the GPU's (`gpu_batch_size`)."""
    pixels = tile_size * tile_size
    batch = batch_size * pixels * (4 + 3 * 4 * channels + (MODEL_BYTES_PER_PIXEL if model_on_host else 0))
    read = 2 * (block_size + tile_size) ** 2 * 24  # raw values, dB, validity, model input, temporaries
    blend = 3 * block_size * block_size * 4 * (channels + 1) + block_size * block_size * 8  # + classes, scores
    rows = tile_size if carried_rows is None else carried_rows
    carried = (width + block_size) * rows * 4 * (channels + 1)
    return batch + read + blend + carried


GDAL_CACHE_BYTES = 16 * 2**20
"""GDAL's block cache during a run. Each block is read once and written whole, so a larger cache
(GDAL's default: 5 % of the RAM, 1.2 GB on a 24 GB machine) only fills up on big rasters: on a
4096 px raster, 64 MB made the run no faster than 16 MB and its peak memory 60 MB higher."""
_cache_lock = threading.Lock()
_cache_runs = [0, 0]  # runs under way, the cache size before the first of them


@contextlib.contextmanager
def bounded_gdal_cache(limit: int = GDAL_CACHE_BYTES):
    """GDAL's block cache at most ``limit`` bytes while runs are under way, then as it was (it is
    process-wide: QGIS's map rendering shares it, and may re-read a few blocks meanwhile)."""
    from osgeo import gdal

    with _cache_lock:
        if _cache_runs[0] == 0:
            _cache_runs[1] = gdal.GetCacheMax()
            gdal.SetCacheMax(min(limit, _cache_runs[1]))
        _cache_runs[0] += 1
    try:
        yield
    finally:
        with _cache_lock:
            _cache_runs[0] -= 1
            if _cache_runs[0] == 0:
                gdal.SetCacheMax(_cache_runs[1])


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


def gpu_free_memory_bytes() -> int | None:
    """Free memory of the GPU ONNX Runtime's CUDA provider runs on (device 0: the first of
    CUDA_VISIBLE_DEVICES), as nvidia-smi reports it; None where it cannot tell."""
    if shutil.which("nvidia-smi") is None:
        return None
    device = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    try:
        run = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits",
                              "-i", device], capture_output=True, text=True, timeout=20)
        return int(run.stdout.split()[0]) * 2**20 if run.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def gpu_batch_size(tile_size: int, free_bytes: int | None, most_useful: int) -> int:
    """Default batch on a GPU: as many tiles as GPU_MEMORY_SHARE of its free memory holds at the
    model's working memory per pixel (measured in fp32 on the CPU; fp16 needs less), at most
    ``most_useful`` (the most tiles a block gives at once) and GPU_MAX_BATCH; 4 when the free
    memory is unknown."""
    if free_bytes is None:
        return min(4, most_useful)
    fits = int(GPU_MEMORY_SHARE * free_bytes // (tile_size * tile_size * MODEL_BYTES_PER_PIXEL))
    return max(1, min(fits, most_useful, GPU_MAX_BATCH))

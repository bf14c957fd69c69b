"""How much memory a run's tile and batch sizes need, and how much the machine has.

Used to refuse tile and batch sizes that cannot fit before anything is computed, instead of a
run that swaps or is killed. Standard library only (QGIS's Python has no psutil).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
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


def run_memory_bytes(tile_size: int, batch_size: int, channels: int, tile_overlap: int, block_size: int,
                     width: int = 0, carried_rows: int | None = None) -> int:
    """Peak memory of the engine's arrays and the model's working memory for these settings on a
    raster ``width`` px wide (an upper estimate): a batch (input, scores, probabilities, model);
    two blocks' read windows (the one running, the one read ahead), each with its tiles; three
    blocks' blended sums (running, queued, being written); and what the tiles of a block row add
    to the next one, a band of ``carried_rows`` (`TilePlan.carried_rows`; default: a tile's
    height) across the raster."""
    pixels = tile_size * tile_size
    batch = batch_size * pixels * (4 + 3 * 4 * channels + MODEL_BYTES_PER_PIXEL)
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

"""Progress of a run: by the work done while streaming (`StreamProgress`), and, for long runs, a log
line saying how long is left (`TimeLeftLog`)."""

from __future__ import annotations

import time
from typing import Callable

from ..rasters.windows import TilePlan, Window


class StreamProgress:
    """Progress of `streaming.stream_model` by work done rather than by blocks: each block weighs the tiles it runs
    plus a share for reading and writing its pixels. Block sizes differ a lot (the last row and
    column are thin strips, empty blocks are skipped), so counting blocks would stall and jump."""

    IO_COST = 0.1  # reading + writing a pixel, relative to running the model on it

    def __init__(self, plan: TilePlan, blocks: list[Window], report: Callable[[float], None]):
        self.report = report
        self.weights: dict[Window, tuple[float, int]] = {}  # block: (half of its read+write share, tiles)
        for block in blocks:
            io = self.IO_COST * block.width * block.height / plan.tile_size ** 2
            self.weights[block] = (io / 2, len(plan.tiles_of(block)))
        self.total = max(sum(2 * half_io + tiles for half_io, tiles in self.weights.values()), 1e-9)
        self.done = self.block_start = 0.0
        self.block_tiles_left = 0

    def _advance(self, amount: float) -> None:
        self.done += amount
        self.report(100.0 * min(self.done / self.total, 1.0))

    def block_read(self, block: Window) -> None:
        self.block_start = self.done
        half_io, self.block_tiles_left = self.weights[block]
        self._advance(half_io)

    def tiles_run(self, count: int) -> None:
        counted = min(count, self.block_tiles_left)
        self.block_tiles_left -= counted
        self._advance(counted)

    def block_written(self, block: Window) -> None:
        half_io, tiles = self.weights[block]
        self._advance(self.block_start + 2 * half_io + tiles - self.done)


class TimeLeftLog:
    """A progress callback that also logs, every ``every_s`` seconds of a long run, how long is left,
    from the pace since the first report (progress follows the work done, so the pace holds)."""

    def __init__(self, progress: Callable[[float], None], log: Callable[[str], None], every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.progress, self.log, self.every_s, self.clock = progress, log, every_s, clock
        self.start: tuple[float, float] | None = None
        self.last_log = 0.0

    def __call__(self, percent: float) -> None:
        self.progress(percent)
        now = self.clock()
        if self.start is None:
            self.start = (now, percent)
            self.last_log = now
            return
        started_at, started_percent = self.start
        if now - self.last_log >= self.every_s and started_percent < percent < 100.0:
            left = (now - started_at) * (100.0 - percent) / (percent - started_percent)
            self.log(f"Progress: {percent:.0f} %, about {format_duration(left)} left")
            self.last_log = now


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"

"""Reading and writing beside the model: a reader thread prepares the next block while the model
runs on the current one, and a writer thread finishes and writes the previous one. GDAL and
numpy release the GIL while they work, so both take time the model leaves free, and the queues
between them hold one block each, which keeps memory bounded.

Each thread works on its own GDAL datasets (the reader on the input, the writer on the outputs),
as GDAL requires. An error in either thread is raised in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator

_END = object()


class Prefetch:
    """Iterates over ``produce(item)`` for each item, computed ``depth`` items ahead in a thread."""

    def __init__(self, items: Iterable, produce: Callable, depth: int = 1, name: str = "sarlulc-reader"):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(items, produce), name=name, daemon=True)
        self._thread.start()

    def _work(self, items, produce) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    return
                self._put((True, produce(item)))
            self._put((True, _END))
        except BaseException as error:  # handed to the consumer, raised there
            self._put((False, error))

    def _put(self, entry) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator:
        while True:
            ok, value = self._queue.get()
            if not ok:
                raise value
            if value is _END:
                return
            yield value

    def close(self) -> None:
        """Stop producing and wait for the thread (it finishes the item it is on)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BackgroundWriter:
    """Runs jobs in submission order in one thread, at most ``depth`` waiting. The first error is
    raised by the next `submit` or by leaving the ``with`` block; jobs after it are dropped."""

    def __init__(self, depth: int = 1, name: str = "sarlulc-writer"):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _END:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as error:
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self._queue.put(job)

    def finish(self) -> None:
        """Wait for every job; raise the first error."""
        self._queue.put(_END)
        self._thread.join()
        self._raise()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.finish()
        else:  # the caller's error wins; still wait, so no job touches an output being discarded
            self._queue.put(_END)
            self._thread.join()

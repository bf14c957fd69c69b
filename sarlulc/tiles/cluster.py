"""Tiles on Dask workers: a LocalCluster of worker processes on this machine, or the cluster of a
scheduler the user started (``dask scheduler`` / ``dask worker ADDRESS`` on other machines, or Dask's
launchers for SLURM or Kubernetes). One code path for both; Dask is imported only here, so a run on one
worker needs none of it.

Each worker runs one tile at a time (one Dask thread; ONNX Runtime's threads do the work). Cancelling
sets a Dask Event the running tiles poll, and drops the tiles not started.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

from ..errors import OptionError
from .job import TileJob, TileResult, run_tile

SCHEDULER_TIMEOUT_S = 20
CANCEL_POLL_S = 1.0  # how often a running tile asks the scheduler whether the run was cancelled
RESULT_POLL_S = 0.2
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_ set, which turns off glibc's adaptive mmap
# threshold: every large numpy block is then mapped and unmapped afresh, a tile runs about 9 % slower.
# Unset for the workers of a LocalCluster (README, "Workers", says how for workers the user starts).
KEEP_MALLOC_DEFAULTS = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
DASK_MISSING = ("Running tiles on more than one worker (or on a Dask scheduler) needs Dask: install it with "
                "pip install \"dask[distributed]\" into the Python QGIS or this command uses, or run on 1 worker.")


def run_on_dask(jobs: list[TileJob], finished: Callable[[TileResult], None], is_cancelled: Callable[[], bool],
                workers: int, scheduler: str | None, log: Callable[[str], None]) -> None:
    """Run ``jobs`` on Dask, giving each result to ``finished`` as it comes (in this process)."""
    try:
        from distributed import Client, Event
    except ImportError as error:
        raise OptionError(DASK_MISSING) from error
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as error:
            raise OptionError(f"Cannot reach the Dask scheduler at '{scheduler}' ({error}). Start one with "
                              f"'dask scheduler' and workers with 'dask worker {scheduler}', or leave the scheduler "
                              f"empty to run on this machine.") from error
    else:
        cluster = start_local_cluster(workers)
        client = Client(cluster)
    try:
        log(f"Dask: {len(client.scheduler_info().get('workers', {}))} worker(s), scheduler {client.scheduler.address}")
        cancel = f"sarlulc-cancel-{uuid.uuid4().hex}"
        event = Event(cancel, client=client)
        futures = {client.submit(run_tile_on_worker, job, cancel, key=f"sarlulc-{job.name}-{uuid.uuid4().hex[:8]}",
                                 pure=False): job for job in jobs}
        pending = set(futures)
        while pending:
            if is_cancelled():
                event.set()
                client.cancel(list(pending))
                return
            done = [future for future in pending if future.done()]
            for future in done:
                pending.discard(future)
                try:
                    result = future.result()
                except Exception as error:  # noqa: BLE001 -- the worker died or Dask lost the task
                    result = TileResult(futures[future].name, error=f"Its worker failed ({type(error).__name__}: "
                                                                     f"{error}).")
                finished(result)
            if not done:
                time.sleep(RESULT_POLL_S)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def start_local_cluster(workers: int):
    """A LocalCluster of ``workers`` processes of one Dask thread each, with glibc's default memory
    behaviour (see KEEP_MALLOC_DEFAULTS)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({KEEP_MALLOC_DEFAULTS: None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=0,
                            dashboard_address=None, silence_logs=logging.ERROR)


def run_tile_on_worker(job: TileJob, cancel_event: str) -> TileResult:
    """`run_tile` on a Dask worker, cancelled when the run's Event is set."""
    from distributed import Event

    event = Event(cancel_event)
    state = {"checked": 0.0, "set": False}

    def is_cancelled() -> bool:
        now = time.monotonic()
        if now - state["checked"] >= CANCEL_POLL_S:
            state["checked"], state["set"] = now, event.is_set()
        return state["set"]

    return run_tile(job, is_cancelled=is_cancelled)

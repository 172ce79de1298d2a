"""Worker processes for ``facemark detect --workers``: chunks of images over N processes, each
with its own landmarker, results back in input order.

This module imports nothing heavy at the top: a worker starts by unpickling a reference to
``_init`` here, so it can tie its life to the main process (Linux ``PR_SET_PDEATHSIG``) before it
spends a second importing OpenCV and onnxruntime and loading models.
"""
from __future__ import annotations

import os
import signal
import sys
from collections import deque
from typing import Callable

from .errors import FacemarkError

_STATE: dict = {}


class WorkersUnavailable(Exception):
    """This system cannot start worker processes (no semaphores, no /dev/shm, a frozen binary)."""


class WorkerDied(FacemarkError):
    """A worker process ended in the middle of the run (killed, out of memory): the run stops."""


def cpu_cores() -> int:
    """Cores this process may run on (a container's or taskset's share, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a main process that was killed (SIGKILL, a crash): it would go
    on writing outputs behind the back of the next run. Linux: the kernel kills it; elsewhere the
    pool's closed pipes end it after its current chunk."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _init(payload: bytes, parent: int) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    import pickle

    spec, job = pickle.loads(payload)  # only now: unpickling them imports the heavy modules
    from .landmarker import FaceLandmarker

    _STATE["fl"] = FaceLandmarker(**spec)
    _STATE["job"] = job


def _chunk(chunk: list) -> list:
    from .batch import _load, _process

    job, fl = _STATE["job"], _STATE["fl"]
    return _process(job, fl, _load(job, fl, chunk))


def run_workers(spec: dict, job, chunks: list, workers: int, report: Callable[[list, int], None]) -> None:
    """``chunks`` over ``workers`` processes (each with 1/workers of the cores); ``report(outcomes,
    n)`` in input order. A few chunks per worker are in flight at a time, so a run of millions
    of images holds no more than that in memory. Raises ``WorkersUnavailable`` if no process can
    be started, ``WorkerDied`` if one ends mid-run (what was reported is complete)."""
    import multiprocessing as mp
    import pickle
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    workers = min(workers, len(chunks), 4 * cpu_cores())  # no idle processes loading models
    spec = {**spec, "threads": max(1, cpu_cores() // workers)}
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"  # its leak notice after a SIGKILL of this process
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)  # passed on as -W to the tracker process the pool starts
    try:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),  # no fork of onnxruntime's threads
                                   initializer=_init, initargs=(pickle.dumps((spec, job)), os.getpid()))
    except (OSError, ImportError) as e:
        raise WorkersUnavailable(str(e) or type(e).__name__) from None
    pending: deque = deque()
    todo = iter(chunks)
    try:
        try:
            for chunk in todo:
                pending.append((chunk, pool.submit(_chunk, chunk)))
                if len(pending) >= 3 * workers:
                    break
        except (OSError, ImportError) as e:  # the first processes could not start
            raise WorkersUnavailable(str(e) or type(e).__name__) from None
        while pending:
            chunk, future = pending.popleft()
            try:
                outcomes = future.result()
            except BrokenProcessPool:
                first = chunk[0][1].path
                raise WorkerDied(f"a worker process ended unexpectedly (killed, or out of memory?) with images "
                                 f"from {first} on in hand; outputs written so far are complete: run the same "
                                 f"command again to continue (--workers 1 uses less memory)") from None
            report(outcomes, len(chunk))
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_chunk, nxt)))
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool) -> None:
    """Stop every worker now, even a stopped (SIGSTOP) or busy one: they ignore Ctrl-C, and what
    they have not reported is redone by the next run."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.kill()
        except (OSError, ValueError, AttributeError):
            pass
    for p in procs:
        try:
            p.join(timeout=5)
        except (OSError, ValueError, AssertionError):
            pass
    # With its processes gone the pool's manager thread ends; wait for it, so that no atexit hook
    # of concurrent.futures writes to the pipe it has closed (a traceback at exit otherwise).
    try:
        pool.shutdown(wait=True, cancel_futures=True)
    except Exception:  # noqa: BLE001 - a broken pool may complain on the way down; it is going anyway
        pass

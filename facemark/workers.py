"""Worker processes for ``facemark detect --workers``: chunks of images over this process and
N-1 more, each with its own landmarker, results back in input order.

This module imports nothing heavy at the top: a worker starts by unpickling a reference to
``_init`` here, so it can tie its life to the main process (Linux ``PR_SET_PDEATHSIG``) before it
spends a second importing OpenCV and onnxruntime and loading models.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, NamedTuple

from .errors import STOP_SIGNALS, FacemarkError, no_files_left

_STATE: dict = {}
_HERE = threading.local()  # run_workers' thread in this process: how it learns the run is ending


def stop_asked() -> bool:
    """True in ``run_workers``' thread of this process once the run is ending (Ctrl-C, an error, a
    dead worker): work there stops between images, so the end does not wait for a whole chunk."""
    asked = getattr(_HERE, "asked", None)
    return asked is not None and asked()


class WorkersUnavailable(Exception):
    """This system cannot start worker processes (no semaphores, no /dev/shm, a frozen binary).
    ``files``: where the cause was too many open files (ulimit -n), the run's end to raise if
    this process cannot go on alone either."""

    def __init__(self, message: str, files=None):
        super().__init__(message)
        self.files = files


class WorkerDied(FacemarkError):
    """A worker process ended in the middle of the run (killed, out of memory): the run stops."""


class WorkerNeverStarted(WorkerDied):
    """A worker process ended as it started: the caller's script, imported there, starts workers
    again (no ``if __name__ == "__main__":``)."""


def allowed_cores() -> int:
    """Cores this process may run on: its CPU affinity (taskset, cpusets)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_cores() -> int:
    """Cores this process may use: its CPU affinity (taskset, cpusets), and a container's CPU quota
    (``docker --cpus``, Kubernetes limits), not the host's count."""
    n = allowed_cores()
    quota = _cgroup_cpus()
    return max(1, min(n, quota) if quota else n)


def available_memory(root: str = "/") -> int | None:
    """Bytes this process can still take: the kernel's MemAvailable, and a container's memory
    limit (cgroup v2 ``memory.max``, v1 ``limit_in_bytes``) less what the container already uses,
    not counting the file cache the kernel gives back under pressure (``inactive_file``: a second
    run over images already read would otherwise look out of memory); None where neither can be
    read. Only this cgroup namespace's root is read: a limit set outside it is not seen."""
    found = []
    try:
        with open(os.path.join(root, "proc/meminfo")) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for folder, limit, usage, cache in (("sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
                                        ("sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
                                         "total_inactive_file")):
        try:
            with open(os.path.join(root, folder, limit)) as f:
                cap = f.read().strip()
            if cap == "max" or int(cap) >= 2**60:  # (v1 says "no limit" with a huge number)
                continue
            with open(os.path.join(root, folder, usage)) as f:
                used = int(f.read().strip())
            cached = _stat_value(os.path.join(root, folder, "memory.stat"), cache)
            found.append(max(0, min(int(cap), int(cap) - used + cached)))
            break
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def _stat_value(path: str, key: str) -> int:
    """``key``'s number in a cgroup ``memory.stat`` file; 0 where it cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_cpus() -> int | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, v1 ``cfs_quota_us``), rounded up; None if unlimited."""
    import math

    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


class _StartFailed(FacemarkError):
    """Raised in a worker whose models did not load, so the main process can say why."""


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a main process that was killed (SIGKILL, a crash): it would go
    on writing outputs behind the back of the next run, holding its models in memory. Linux: the
    kernel kills it at once; everywhere: a thread that waits on the parent's sentinel ends it."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    import multiprocessing
    from multiprocessing.connection import wait

    parent_process = multiprocessing.parent_process()
    if parent_process is not None and parent_process.sentinel is not None:
        def watch() -> None:
            wait([parent_process.sentinel])
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="facemark-parent-watch").start()


_HELD = STOP_SIGNALS


@contextmanager
def _held_while_starting():
    """Ctrl-C and SIGTERM held back (not lost) in this thread while it may start a worker: the
    new process inherits the mask, so a Ctrl-C to the terminal's process group cannot interrupt
    its interpreter half-started (a traceback of Python's own start-up on the user's screen); the
    worker then ignores them (``_init``). This process still gets them: at once where it has other
    threads (the kernel hands the signal to one of them), else when the hold ends. (multiprocessing's
    resource tracker starts its process the same way; start it first, ``run_workers``: when its
    start ends it unblocks these signals, this hold included.)"""
    if not hasattr(signal, "pthread_sigmask"):  # (Windows: no signal masks)
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _init(payload, parent: int, warm: tuple[str, ...] = ()) -> None:
    """``payload``: the pickled (spec, job, work), or the ``_Handover`` it will come through
    (``Workers``: started before it was known), after importing the ``warm`` modules meanwhile."""
    _die_with_parent(parent)
    # The main process decides when to stop (and kills workers then): a Ctrl-C to the terminal's
    # process group, or a SIGTERM to it, must not kill a worker first. (Held since the process
    # started, ``_held_while_starting``; ignoring them drops any that came meanwhile.)
    for sig in STOP_SIGNALS:  # (a closed terminal's SIGHUP reaches the whole process group too)
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
    from .quiet import one_line_warnings

    one_line_warnings()  # e.g. about an image, as the main process says it
    try:
        import importlib
        import pickle

        for name in warm:
            importlib.import_module(name)
        if not isinstance(payload, bytes):
            payload = payload.get()
        cwd, spec, job, work, label = pickle.loads(payload)  # only now: unpickling them imports the heavy modules
        if cwd is not None and cwd != _cwd():  # (started earlier: relative paths are the caller's now)
            os.chdir(cwd)
        import cv2

        # OpenCV's own threads (resizes, warps) get this worker's share of the cores, as
        # onnxruntime's do: N workers each with a pool as big as the machine oversubscribe it.
        cv2.setNumThreads(spec.get("threads") or 1)
        from .landmarker import FaceLandmarker

        _STATE["fl"] = fl = FaceLandmarker(**spec)
        _STATE["job"] = job
        _STATE["work"] = work
        if label is not None and fl.model_name != label:  # (outputs name their model: one run, one model)
            _STATE["failed"] = (f"its model file {spec['model']} changed after the run started: it is {fl.model_name} "
                                f"now, and the run's outputs are {label}'s")
    except Exception as e:  # noqa: BLE001 - reported by the main process as one line, not a child's traceback
        _STATE["failed"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # (removed under it: relative paths cannot work anyway)
        return None


def _nothing() -> None:
    return None


UNGUARDED_EXIT = 87  # a worker's exit status: the script it imported starts workers itself (no main guard)


def _not_in_a_starting_worker() -> None:
    """In a spawned worker importing the caller's script, a call that would start workers again:
    the worker ends with ``UNGUARDED_EXIT``, which the parent reads among its workers' statuses."""
    import multiprocessing as mp

    if getattr(mp.current_process(), "_inheriting", False):
        sys.exit(UNGUARDED_EXIT)


def _unguarded(pool) -> bool:
    """Whether a worker of ``pool`` ended with ``UNGUARDED_EXIT`` (the pool keeps its processes,
    ended ones included, until it is shut down)."""
    import time

    processes = list((getattr(pool, "_processes", None) or {}).values())
    deadline = time.monotonic() + 5.0  # (one that broke the pool may still be exiting; the pool ends the rest)
    while True:  # (polled: the pool's own thread may reap a process first, and then its status is set there)
        codes = [p.exitcode for p in processes]
        if UNGUARDED_EXIT in codes or None not in codes or time.monotonic() > deadline:
            return UNGUARDED_EXIT in codes
        time.sleep(0.02)


def _quiet_tracker() -> None:
    """multiprocessing's resource tracker started, and quiet about a SIGKILL of this process."""
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"  # its leak notice after a SIGKILL of this process
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)  # passed on as -W to the tracker process the pool starts
    if hasattr(signal, "pthread_sigmask"):
        from multiprocessing import resource_tracker

        # It ignores Ctrl-C and SIGTERM itself, not a closed terminal's SIGHUP (to the whole process
        # group: it died, was started again and printed KeyErrors). Blocked as it starts, it stays so.
        hup = [signal.SIGHUP] if hasattr(signal, "SIGHUP") else []
        before = signal.pthread_sigmask(signal.SIG_BLOCK, hup)
        try:
            resource_tracker.ensure_running()  # (see _held_while_starting)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


class _Handover:
    """The job, for processes started before it was known: a pipe written by a thread of this
    process (a big job must not block it until they read), each process reading one copy. Not a
    ``multiprocessing.Queue``: a job never read (the processes killed first) left its feeder
    thread waiting on the pipe for good, with the job and two file descriptors."""

    def __init__(self, ctx):
        self.lock = ctx.Lock()  # (one reader at a time: messages never interleave; first, as it fails without /dev/shm)
        self.reader, self.writer = ctx.Pipe(duplex=False)
        self.thread: threading.Thread | None = None

    def __getstate__(self) -> tuple:  # (a worker gets the reading end only)
        return self.reader, self.lock

    def __setstate__(self, state: tuple) -> None:
        self.reader, self.lock = state
        self.writer = self.thread = None

    def get(self) -> bytes:
        with self.lock:
            return self.reader.recv_bytes()

    def put(self, payload: bytes, copies: int) -> None:
        def write() -> None:
            try:
                for _ in range(copies):
                    self.writer.send_bytes(payload)
            except OSError:  # (the processes are gone: ``close``)
                pass

        self.thread = threading.Thread(target=write, daemon=True, name="facemark-handover")
        self.thread.start()

    def close(self) -> None:
        """After the processes are stopped: this end was the last one reading, so a write still
        waiting for them fails (EPIPE) and its thread ends; then the writing end closes."""
        self.reader.close()
        if self.thread is not None:
            self.thread.join(5)
        # (Never closed under a write. A process that outlived its kill, ``_stop``'s 5 s, still
        # holds a reading end: then the thread and this end stay until it goes. Rare; not worse.)
        if self.thread is None or not self.thread.is_alive():
            self.writer.close()


class Workers:
    """Worker processes started before their work is known. Each must start Python and import
    OpenCV and onnxruntime before it can work; started as soon as the inputs are listed, that
    overlaps this process's own start (its models, the check of what is done) instead of
    following it. ``run_workers(..., started=...)`` hands them their landmarker and job;
    ``close`` stops them, used or not (a rerun with nothing left to do). Raises ``OSError`` (or
    ``ImportError``) where processes cannot be started."""

    def __init__(self, processes: int, warm: tuple[str, ...] = ("facemark.batch",)):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        _not_in_a_starting_worker()
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"Workers(processes): a positive number of processes, not {processes!r}")
        ctx = mp.get_context("spawn")  # no fork of onnxruntime's threads
        self.processes = processes
        self.pool = None
        _quiet_tracker()  # (before the handover's lock starts it)
        self.handover = _Handover(ctx)
        try:
            self.pool = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init,
                                            initargs=(self.handover, os.getpid(), warm))
            with _held_while_starting():
                for _ in range(processes):  # (the pool starts a process in each submit, until it has all)
                    self.pool.submit(_nothing)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            _stop(self.pool)
            self.pool = None
        self.handover.close()


def _chunk(chunk: list) -> list:
    if "failed" in _STATE:
        raise _StartFailed(_STATE["failed"])
    return _STATE["work"](_STATE["job"], _STATE["fl"], chunk)


def threads_each(workers: int) -> int:
    """onnxruntime (and OpenCV) threads for each of ``workers``: the cores shared out."""
    return max(1, cpu_cores() // workers)


def run_workers(spec: dict, job, work: Callable, chunks: list, workers: int, report: Callable[[list, int], None],
                local=None, started: Workers | None = None, label: str | None = None) -> None:
    """``work(job, landmarker, chunk)`` for each of ``chunks`` over ``workers`` processes (each with
    its landmarker built from ``spec`` and 1/workers of the cores); ``report(outcomes, n)`` in
    input order. With ``local`` (a landmarker of this process, with ``threads_each(workers)``
    threads), this process is one of the workers: a thread here takes chunks beside
    ``workers - 1`` processes, so the models it has loaded already work while those processes
    start (a 2-core machine: one process to start, not two). A few chunks per worker are in
    flight at a time, so a run of millions of images holds no more than that in memory. Raises
    ``WorkersUnavailable`` if no process can be started, ``WorkerDied`` if one ends mid-run
    (what was reported is complete). ``started``: its processes are the ones (``workers`` is
    then theirs, with ``local``), and are stopped at the end. ``label``: the model name this run's
    outputs carry (``FaceLandmarker.model_name``); a process whose model file gives another (the
    file replaced as the run started) does not work."""
    import multiprocessing as mp
    import pickle
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    _not_in_a_starting_worker()
    if started is not None:
        workers = started.processes + (local is not None)
        processes = min(started.processes, len(chunks) - (local is not None))  # (the rest never get a job)
    else:
        workers = min(workers, len(chunks), 4 * cpu_cores())  # no idle processes loading models
        processes = workers - 1 if local is not None else workers
    spec = {**spec, "threads": threads_each(workers)}
    try:
        payload = pickle.dumps((_cwd(), spec, job, work, label))
    except (pickle.PicklingError, AttributeError, TypeError) as e:  # e.g. a detector object of the caller's
        if started is not None:
            started.close()
        raise WorkersUnavailable(f"the landmarker cannot be sent to another process: {e}") from None
    window = 3 * workers  # chunks taken but not yet reported
    lock = threading.Condition()
    slots: dict[int, Future] = {}  # chunk index -> its outcomes, whoever works on it
    todo = enumerate(chunks)
    state = {"taken": 0, "reported": 0, "stop": False}

    def take():
        """The next chunk (under ``lock``), or None: all taken, or the window is full."""
        if state["taken"] >= len(chunks) or state["taken"] - state["reported"] >= window:
            return None
        state["taken"] += 1
        return next(todo)

    def here() -> None:
        """This process's share: chunks taken as the thread gets free, so it and the processes
        finish together. A failure is handed to the main thread through the chunk's future."""
        _HERE.asked = lambda: state["stop"]
        try:
            take_chunks()
        finally:
            ended.set()

    def take_chunks() -> None:
        while True:
            with lock:
                while not state["stop"] and (nxt := take()) is None and state["taken"] < len(chunks):
                    lock.wait()
                if state["stop"] or nxt is None:
                    return
                i, chunk = nxt
                slots[i] = done = Future()
            try:
                done.set_result(work(job, local, chunk))
            except BaseException as e:  # noqa: BLE001 - raised in the main thread, by result()
                done.set_exception(e)
                return

    pool = None
    thread = None
    ended = threading.Event()  # (set by the thread as it ends: a join cut short by Ctrl-C can take it as ended)
    running: set = set()  # the processes' futures not yet done

    def feed() -> None:
        """Each process kept two chunks ahead (under ``lock``), within the window."""
        while len(running) < 2 * processes and (nxt := take()) is not None:
            with _held_while_starting():  # (the pool starts its processes in submit, until it has all)
                slots[nxt[0]] = f = pool.submit(_chunk, nxt[1])
            running.add(f)

    k = 0  # the next chunk to report
    if local is not None:  # this process's OpenCV gets its share of the cores too (_init), until the run ends
        import cv2

        opencv_threads = cv2.getNumThreads()
        cv2.setNumThreads(spec["threads"])
    try:
        try:
            if started is not None and processes > 0:
                pool = started.pool
                started.handover.put(payload, processes)
            elif processes:
                _quiet_tracker()
                pool = ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"),  # no fork of onnxruntime's threads
                                           initializer=_init, initargs=(payload, os.getpid()))
            if local is not None:  # (first: it takes the first chunk while the processes start)
                thread = threading.Thread(target=here, daemon=True, name="facemark-local-worker")
                thread.start()
            if pool is not None:
                with lock:
                    feed()
        except (OSError, ImportError, NotImplementedError) as e:  # no semaphores, no /dev/shm, no processes
            if _cwd() is None:  # (the end below stops what did start)
                raise WorkersUnavailable("the current folder no longer exists, and worker processes start in it") \
                    from None
            raise WorkersUnavailable(str(e) or type(e).__name__,
                                     no_files_left("files for worker processes", e) if isinstance(e, OSError) else None) from None
        while k < len(chunks):
            with lock:
                oldest = slots.get(k)
            if oldest is None and not running:  # (not taken yet: the thread is about to)
                with lock:
                    lock.wait(0.05)
                continue
            done, _ = wait(([oldest] if oldest is not None else []) + list(running), return_when=FIRST_COMPLETED)
            running.difference_update(done)
            while oldest is not None and oldest.done():
                try:
                    outcomes = oldest.result()
                except _StartFailed as e:
                    raise WorkerDied(f"a worker process could not load the models ({e}); nothing more was "
                                     f"done") from None
                report(outcomes, len(chunks[k]))
                with lock:
                    del slots[k]
                    k += 1
                    state["reported"] = k
                    lock.notify_all()
                    oldest = slots.get(k)
            if pool is not None:
                with lock:
                    feed()
    except BrokenProcessPool:  # from result() or from submit(), whichever sees it first
        unguarded = _unguarded(pool)
        _end(pool, thread, ended, lock, state, started)
        if unguarded:  # (the caller's script, not a lost run)
            raise WorkerNeverStarted("detect_files(workers=N) ran again in a worker process as it imported the "
                                     "script: put that call under `if __name__ == \"__main__\":`") from None
        first = getattr(chunks[k][0][1], "path", f"chunk {k}") if k < len(chunks) else "the next chunk"
        raise WorkerDied(f"a worker process ended unexpectedly (killed, or out of memory?) before the images from "
                         f"{first} on were all done") from None
    except BaseException:
        _end(pool, thread, ended, lock, state, started)
        raise
    finally:
        if local is not None:
            cv2.setNumThreads(opencv_threads)
    _end(pool, thread, ended, lock, state, started)


def _end(pool, thread, ended, lock, state: dict, started: Workers | None) -> None:
    """The processes stopped (their work is reported, or will be redone by the next run), and
    this process's thread ended once it is through its image (``stop_asked``). A Ctrl-C meanwhile
    (the second, from an impatient user) is held until all of that is done, then raised: leaving
    that thread running into the exit tears its models down under it (an abort, not exit 130).
    One more Ctrl-C ends the process at once (outputs are whole files, renamed into place)."""
    interrupts = 0

    def shielded(step: Callable[[], None]) -> None:
        nonlocal interrupts
        while True:
            try:
                return step()
            except KeyboardInterrupt:  # (each step can be run again)
                interrupts += 1
                if interrupts >= 2:
                    try:
                        os.write(2, b"interrupted: outputs written so far are complete\n")
                    except OSError:
                        pass
                    from .errors import stop_code

                    os._exit(stop_code())

    def ask() -> None:
        with lock:
            state["stop"] = True
            lock.notify_all()

    def through() -> None:  # (not join: one interrupted by Ctrl-C can leave is_alive() False, Python 3.11)
        while thread.is_alive() and not ended.wait(0.1):
            pass

    try:
        shielded(ask)
        if started is not None:
            shielded(started.close)
        elif pool is not None:
            shielded(lambda: _stop(pool))
    finally:
        if thread is not None and thread.ident is not None:  # (started: it may have failed to)
            shielded(through)
    if interrupts:
        raise KeyboardInterrupt


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


class WorkerRule(NamedTuple):
    most: int  # workers at most
    min_images: int  # images each, at least: a worker's start must pay off
    memory: int  # bytes each: auto starts no more than free memory holds


AUTO_WORKERS = {
    # Measured with scripts/batch_bench.py up to 16 cores (a lent 16-core Xeon: 16 workers 1.25x the
    # images/s of --workers 8); beyond it a count would be a guess, so more is --workers N. Start-up
    # ~1 s on a busy 2-core machine (imports, sessions), where a 640x480 image costs ~40 ms in one
    # process and gains ~7 ms with two workers. 361-425 MiB peak RSS measured (scripts/ray_bench.py).
    "cpu": WorkerRule(16, 64, 512 * 2**20),
    # CUDA workers start torch and CUDA: 32 images took 5.4 s with one, 11.2 s with 8 (1.1 s with one
    # CPU worker) on the lent H200 machine, where 8 beat one at 1536 and 3072 images and 16 were
    # slower than 8 at 3072; 192 images each is an estimate between those runs. Host memory for
    # torch with CUDA: 2 GiB is a guard, not a measurement (GPU memory is not checked).
    "cuda": WorkerRule(8, 192, 2 * 2**30),
}


def auto_workers(images: int, device: str = "cpu", detector: str = "retinaface") -> int:
    """``--workers auto``: one single-threaded process per core on CPU, which keeps the cores
    busier than one process whose onnxruntime threads wait for each other after every layer
    (``scripts/batch_bench.py``), but no more processes than the images can keep busy or memory
    can hold. On CUDA the detector still runs on the CPU (YuNet always; RetinaFace unless
    onnxruntime has CUDA), and one process was held back by it, so the cores get workers there
    too; with the detector on the GPU, or none (``detector="none"``: boxes given), one process."""
    kind = "cpu" if device == "cpu" else "cuda"
    if kind == "cuda":
        from .runtime import available_providers

        on_cpu = detector.startswith("yunet") or (detector == "retinaface" and
                                                  "CUDAExecutionProvider" not in available_providers())
        if not on_cpu:
            return 1
    rule = AUTO_WORKERS[kind]
    memory = available_memory()
    fits = memory // rule.memory if memory is not None else rule.most
    return max(1, min(cpu_cores(), rule.most, fits, images // rule.min_images))


TAIL_SHARE = 4  # a chunk is at most 1/TAIL_SHARE of a worker's share of the images left


def chunk_sizes(images: int, batch_images: int, workers: int) -> list[int]:
    """Images per chunk, in order: ``--batch`` (the model's batch), then smaller and smaller
    towards the end. A worker holds up to two chunks ahead, so when the others run out of work
    it may still have both to do: at equal sizes (10 images each for 300 images and 2 workers)
    one core could idle while the other did up to 20 images. Shrinking with what is left makes
    the last chunks an image or two."""
    if workers <= 1:
        return [min(batch_images, images - i) for i in range(0, images, batch_images)]
    sizes, left = [], images
    while left > 0:
        sizes.append(max(1, min(batch_images, math.ceil(left / (TAIL_SHARE * workers)))))
        left -= sizes[-1]
    return sizes

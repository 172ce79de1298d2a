"""``facemark`` and ``python -m facemark``. A Ctrl-C (or SIGTERM) while the CLI is still being
imported ends it with one line and exit 130 (143), not an import traceback; after that,
``cli.run`` handles signals."""
import os
import signal


def main() -> None:
    def early(signum, frame):
        try:
            os.write(2, b"interrupted\n")
        except OSError:
            pass
        os._exit(128 + int(signum))  # (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP: as errors.stop_code)

    # Only where Ctrl-C would interrupt: in a script's background job (`cmd &`) it is ignored, and stays so.
    stops = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]  # (errors.STOP_SIGNALS)
    catch = [s for s in stops if signal.getsignal(s) not in (signal.SIG_IGN, None)]
    before = {s: signal.signal(s, early) for s in catch}
    # NumPy's OpenBLAS allocates buffers per thread as it loads, and under a memory limit gave up
    # in its own words (ending the run) where facemark had room: its matrices here are small, so
    # one thread, unless the user says otherwise (the command's own process and its workers only).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .cli import run

    for s, handler in before.items():
        signal.signal(s, handler)
    code = 1
    try:
        run()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        raise
    except KeyboardInterrupt:
        from .errors import stop_code

        code = stop_code()
        raise
    finally:  # the work is done and reported: a late Ctrl-C must not turn it into a traceback
        for s in catch:
            signal.signal(s, signal.SIG_IGN)
        _end_if_stuck(code)


EXIT_GRACE_S = 60.0  # seconds an exit may take (Ray's shutdown takes a few) before it counts as stuck


def _end_if_stuck(code: int) -> None:
    """End the process with ``code`` if its exit has not ended it within ``EXIT_GRACE_S``: an exit
    hook that waits forever (a worker pool's, on a worker it can no longer see, seen once after a
    Ctrl-C) left a process at 100 % CPU that ignored the signals above; only SIGKILL stopped it.
    A thread of the low-level kind: ``threading.Thread.start`` waits for its thread to say it has
    started, and under ``ulimit -v`` one that died starting left the exit waiting forever."""
    import _thread
    import time

    def guard() -> None:
        time.sleep(EXIT_GRACE_S)
        try:
            os.write(2, b"facemark: the exit was stuck (in a library's clean-up); ended it\n")
        except OSError:
            pass
        os._exit(code)

    try:
        _thread.start_new_thread(guard, ())
    except (RuntimeError, MemoryError):  # no memory left for a thread (the run said so): exit without the guard
        pass


if __name__ == "__main__":
    main()

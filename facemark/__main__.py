"""``facemark`` and ``python -m facemark``. A Ctrl-C (or SIGTERM) while the CLI is still being
imported ends it with one line and exit 130, not an import traceback; after that, ``cli.run``
handles signals."""
import os
import signal


def main() -> None:
    def early(signum, frame):
        try:
            os.write(2, b"interrupted\n")
        except OSError:
            pass
        os._exit(130)

    # Only where Ctrl-C would interrupt: under nohup or `&` it is ignored, and stays so.
    catch = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) not in (signal.SIG_IGN, None)]
    before = {s: signal.signal(s, early) for s in catch}
    from .cli import run

    for s, handler in before.items():
        signal.signal(s, handler)
    try:
        run()
    finally:  # the work is done and reported: a late Ctrl-C must not turn it into a traceback,
        for s in catch:  # but a second one ends the process at once (an exit hook that waited
            signal.signal(s, _second_ends_it)  # forever, on a worker pool, could not be stopped)


_LATE: list = []


def _second_ends_it(signum, frame) -> None:
    _LATE.append(signum)
    if len(_LATE) > 1:
        os._exit(130)


if __name__ == "__main__":
    main()

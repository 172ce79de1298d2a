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

    before = signal.signal(signal.SIGINT, early), signal.signal(signal.SIGTERM, early)
    from .cli import run

    signal.signal(signal.SIGINT, before[0])
    signal.signal(signal.SIGTERM, before[1])
    run()


if __name__ == "__main__":
    main()

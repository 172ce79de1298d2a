"""facemark's own exceptions: what a caller (or the CLI) can catch to report bad input in one line."""
from __future__ import annotations

import errno

try:  # (imported now: with no file descriptors left, a later import fails too)
    import resource
except ImportError:  # (not on Windows)
    resource = None


class FacemarkError(Exception):
    """Anything facemark reports as a message rather than a bug."""


class UsageError(FacemarkError, ValueError):
    """An argument or option that cannot work (the CLI exits 2 with its message)."""


class StopRun(FacemarkError):
    """The run cannot go on, whatever the next input: it stops, and what it wrote is complete."""


class OutputError(StopRun):
    """Writing outputs cannot go on (disk full, read-only, I/O error)."""


def no_files_left(path, e: OSError) -> StopRun | None:
    """The process may open no more files (``ulimit -n``): every input after this one would
    fail the same way, so this is the run's end, not the image's failure."""
    if e.errno not in (errno.EMFILE, errno.ENFILE):
        return None
    limit = f"this process may open {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; " if resource else ""
    return StopRun(f"cannot open {path}: too many open files ({limit}raise the limit, e.g. ulimit -n)")

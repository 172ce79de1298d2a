"""facemark's own exceptions: what a caller (or the CLI) can catch to report bad input in one line."""
from __future__ import annotations


class FacemarkError(Exception):
    """Anything facemark reports as a message rather than a bug."""


class UsageError(FacemarkError, ValueError):
    """An argument or option that cannot work (the CLI exits 2 with its message)."""


class OutputError(FacemarkError):
    """Writing outputs cannot go on (disk full, read-only, I/O error): the run stops."""

"""Codec libraries (libpng, libtiff, FFmpeg, OpenCV's own logger) write warnings straight to file
descriptor 2. facemark silences that descriptor while they run, so stderr holds only its own lines;
whoever prints to stderr in facemark takes ``STDERR_LOCK``, so no line of ours is ever swallowed by
a silencing thread."""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

STDERR_LOCK = threading.RLock()


@contextmanager
def quiet_stderr():
    with STDERR_LOCK:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no descriptor 2 (closed, or an embedder): nothing to silence
            yield
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)

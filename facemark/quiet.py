"""Codec libraries (libpng, libtiff, FFmpeg, OpenCV's own logger) write warnings straight to file
descriptor 2. facemark silences that descriptor while they run, so stderr holds only its own lines;
whoever prints to stderr in facemark takes ``STDERR_LOCK``, so no line of ours is ever swallowed by
a silencing thread."""
from __future__ import annotations

import os
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import Callable

from .errors import FacemarkWarning

STDERR_LOCK = threading.RLock()


@contextmanager
def quiet_stderr(said: "list[bytes] | None" = None):
    """Descriptor 2 silenced while the block runs; with ``said``, what was written there is
    appended to it (a codec's words about the file it read), else it goes nowhere."""
    with STDERR_LOCK:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no descriptor 2 (closed, or an embedder): nothing to silence
            yield
            return
        sink = None
        try:
            if said is not None:
                import tempfile

                try:
                    sink = tempfile.TemporaryFile()
                except OSError:  # (no room for it: silenced all the same)
                    sink = None
            target = sink.fileno() if sink is not None else os.open(os.devnull, os.O_WRONLY)
            os.dup2(target, 2)
            if sink is None:
                os.close(target)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if sink is not None:
                sink.seek(0)
                said.append(sink.read(1 << 16))
                sink.close()


def one_line_warnings(show: "Callable[[str], None] | None" = None) -> None:
    """Python warnings as one ``warning: ...`` line (through ``show``, else on stderr under
    ``STDERR_LOCK``), for command-line use: not two lines naming facemark's file and source line,
    which say nothing to someone who ran a command."""
    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        detail = getattr(message, "detail", "")
        text = f"warning: {message}" + (f" (the first: {detail})" if detail else "")
        if show is not None:
            show(text)
            return
        with STDERR_LOCK:
            stream = file if file is not None else sys.stderr
            if stream is not None:
                _whole_line(stream, text)

    warnings.showwarning = showwarning
    # facemark's own warnings are notes about an input: said, never raised, even under -W error
    # (one odd image must not end a run of a million).
    warnings.filterwarnings("default", category=UserWarning, module=r"facemark(\.|$)")
    warnings.filterwarnings("default", category=FacemarkWarning)  # (warned at the caller's line: not facemark's)


def to_stderr(line: str) -> None:
    """The library's default ``log``: notes and failures on stderr, as the CLI prints them, so a
    caller's stdout (perhaps a JSON stream) holds only results."""
    with STDERR_LOCK:
        if sys.stderr is not None:
            _whole_line(sys.stderr, line)


def _whole_line(stream, text: str) -> None:
    """``text`` and its newline in one write: worker processes share stderr, and print's two writes
    (text, then newline; each goes straight out when unbuffered, as under PYTHONUNBUFFERED) let
    another process's line land between them, gluing two lines into one."""
    stream.write(text + "\n")
    stream.flush()

"""facemark's own exceptions (what a caller, or the CLI, can catch to report bad input in one
line) and its warning about results that may mislead."""
from __future__ import annotations

import errno
import os
import signal

try:  # (imported now: with no file descriptors left, a later import fails too)
    import resource
except ImportError:  # (not on Windows)
    resource = None


INSTALL_TORCH = ("on a machine without a GPU, install the CPU build first, as the README's Quickstart says "
                 "(PyPI's default torch for Linux is a multi-GB CUDA build); then pip install 'torch>=2.2' "
                 "'onnx>=1.15' (facemark's [torch] extra)")


class FacemarkError(Exception):
    """Anything facemark reports as a message rather than a bug."""


class FacemarkWarning(UserWarning):
    """A note about an input whose results may mislead (a face that looks turned, a box with no
    face around it, a damaged or odd image file): warned at the caller's line, so Python's filters
    decide how often. A note about a kind of result has a fixed text (Python shows a text once
    per line), ``detail`` saying which (a box); one about a file names the file in its text."""

    def __init__(self, text: str, detail: str = ""):
        super().__init__(text)
        self.detail = detail


class UsageError(FacemarkError, ValueError):
    """An argument or option that cannot work (the CLI exits 2 with its message)."""


class MissingInput(UsageError, FileNotFoundError):
    """Every input named is missing: a usage error to the command line, ``FileNotFoundError`` to
    the API (as for ``detect(path)``)."""


class DamagedInstall(FacemarkError):
    """A file that comes with facemark (its calibration, the shipped measurements) cannot be read."""

    def __init__(self, path: str, why: str):
        super().__init__(f"{path}, which comes with facemark, is damaged ({why}): reinstall facemark (in a "
                         f"checkout: git checkout {path})")


# Signals that stop a run politely (the item at hand finished, complete outputs kept): Ctrl-C, a kill,
# and a closed terminal or a dropped ssh session (SIGHUP; ``nohup`` ignores it, and it stays ignored).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


SEEN: list[int] = []  # the stop signals facemark's handlers took this run, in order (cleared as a run starts)


def stopped(signum: int) -> None:
    """What every stop handler does first: remember the signal (its exit status) and, after
    SIGHUP, let go of the gone terminal (``hung_up``)."""
    SEEN.append(signum)
    hung_up(signum)


def stop_code() -> int:
    """The exit status of a run a signal stopped: 128 + the first signal's number, as a shell
    reports a process that signal ended (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP); 130 where no
    handler of facemark's saw one (Python's own KeyboardInterrupt is a Ctrl-C)."""
    return 128 + int(SEEN[0]) if SEEN else 130


def hung_up(signum: int) -> None:
    """After SIGHUP: the terminal is gone, and a write to it fails (EIO), so the progress bar's
    last redraw or the closing line would end the run as an error. Standard output and error
    that are terminals point at /dev/null from here: what the run writes there is lost anyway."""
    if signum != getattr(signal, "SIGHUP", None):
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        try:
            if _a_terminal(fd):
                os.dup2(null, fd)
        except OSError:
            pass
    os.close(null)


def _a_terminal(fd: int) -> bool:
    """Whether ``fd`` is a terminal, one that hung up included (isatty says no to those: asking
    a hung-up terminal for its settings fails with EIO, not ENOTTY)."""
    try:
        import termios

        termios.tcgetattr(fd)
        return True
    except ImportError:
        return False
    except termios.error as e:
        return bool(e.args) and e.args[0] == errno.EIO


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


OUT_OF_MEMORY = ("bad_alloc", "Failed to allocate", "Cannot allocate memory", "pthread_create failed",
                 "can't start new thread", "can't allocate memory", "CUDA out of memory", "Insufficient memory")
# (onnxruntime's, Python's, torch's and OpenCV's words when memory or threads run out)


def memory_ran_out(e: BaseException) -> bool:
    """``out_of_memory`` for memory alone (in any library's words), not threads: a photo whose
    search ran out of memory fails alone, while threads that cannot start end the run."""
    return out_of_memory(e) and not any(m in str(e) for m in ("pthread_create failed", "can't start new thread"))


def out_of_memory(e: BaseException) -> bool:
    """Whether an error is the machine's (memory or threads ran out), not the model's or the input's.
    (Here, not beside the sessions: the CLI asks it while an interrupted import of onnxruntime
    leaves that library unimportable.)"""
    return isinstance(e, MemoryError) or any(m in str(e) for m in OUT_OF_MEMORY)

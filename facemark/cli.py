"""The ``facemark`` command line (Typer + Rich): argument parsing, validation and wiring only.

Each command's work lives in the module it belongs to (``batch.detect_files``, ``video.process_video``,
``evaluation.bench.run_bench``, ``evaluation.evaluate.run_eval``, ``training.*``), callable from Python
with the same behaviour. Bad input: one line on stderr, non-zero exit.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from contextlib import contextmanager
from typing import List, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import DEFAULT_MODEL, __version__
from .errors import stop_code
from .quiet import STDERR_LOCK
from .shards import DEFAULT_SHARD_SIZE

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Faces and their 98 landmarks (WFLW layout) in images and video.")
# Where output goes when the caller closed stdout or stderr (cron, daemons); opened only then.
_NULL = open(os.devnull, "w") if sys.stdout is None or sys.stderr is None else None
# Consoles follow sys.stdout/sys.stderr as they are at each print (tests swap them) unless closed.
# No emoji codes: a file named a:thumbs_up:.jpg is named as it is.
err = Console(**({"stderr": True} if sys.stderr is not None else {"file": _NULL}), highlight=False, soft_wrap=True,
              emoji=False)
out = Console(**({} if sys.stdout is not None else {"file": _NULL}), highlight=False, emoji=False,
              width=None if sys.stdout is not None and sys.stdout.isatty() else 160)  # tables stay readable in files


def _reader_gone() -> None:
    raise BrokenPipeError  # (rich would exit 1 here; run() ends with 0, as detect does for `| head`)


out.on_broken_pipe = _reader_gone


def _stderr_gone() -> None:
    """Nobody reads stderr any more (`2>&1 | head`): the run goes on without its lines (its outputs
    are files; rich exited 1 here, and a training run stopped between epochs, unsaid)."""
    err.quiet = True
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 2)  # (Python's own writes to stderr, warnings, go nowhere too)
        os.close(fd)
    except OSError:
        pass


err.on_broken_pipe = _stderr_gone

CACHE_HELP = "(default: $FACEMARK_CACHE, else $XDG_CACHE_HOME/facemark, else ~/.cache/facemark)"


def default_cache() -> Path:
    """Where pack/calibrate/train keep detector and teacher outputs. Worked out only by those
    commands: a container user without a home folder can still run every other one."""
    if os.environ.get("FACEMARK_CACHE", "").strip():
        return Path(os.environ["FACEMARK_CACHE"])
    if os.environ.get("XDG_CACHE_HOME", "").strip():
        return Path(os.environ["XDG_CACHE_HOME"]) / "facemark"
    try:
        return Path.home() / ".cache" / "facemark"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (an arbitrary container user)
        fail("no home folder to keep the cache in: give --cache DIR or set FACEMARK_CACHE")


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]}  # a file name's escapes and newlines, made visible
# A name's bytes that are not UTF-8 (Python holds them as lone surrogates) as \xNN, as shard rows name them.
_CONTROL.update({c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)})


def plain(text: str) -> str:
    """Text safe for one terminal line: control characters (ANSI escapes, newlines) and bytes of a
    name that are not UTF-8 shown as \\xNN."""
    return escape(str(text).translate(_CONTROL))


def _error_line(message: str) -> None:
    with STDERR_LOCK:
        err.print(f"[bold red]error:[/] {plain(message)}", soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and the exit code: never a traceback for bad input."""
    _error_line(message)
    raise typer.Exit(code)


def _write_failure(e: OSError, folder: Path) -> str:
    """Why writing failed, in words: torch's writer says "enforce fail at inline_container.cc" and
    the like where the disk filled up (passed on as EIO or ENOSPC with its text)."""
    import errno

    try:  # (free space decides only where the error names no cause of its own)
        full = e.errno == errno.ENOSPC or (e.errno in (None, errno.EIO) and shutil.disk_usage(folder).free < (64 << 20))
    except OSError:
        full = False
    if full:
        return "No space left on device"
    return e.strerror or (str(e).splitlines()[0] if str(e) else type(e).__name__)


def _ignore_signals() -> None:
    """Ctrl-C and SIGTERM ignored from here on: the command is finishing, and a second signal
    must not cut short what it is saying or writing."""
    import signal

    from .errors import STOP_SIGNALS

    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def say(line: str) -> None:
    """A library ``log`` line on stderr: its first word coloured, the rest printed as is."""
    head, _, rest = line.partition(" ")
    colour = {"error:": "red", "failed:": "red", "warning:": "yellow", "skipped:": "yellow"}.get(head)
    with STDERR_LOCK:  # never while a codec's noise is being silenced (facemark.quiet)
        err.print(f"[{colour}]{plain(head)}[/] {plain(rest)}" if colour else plain(line), soft_wrap=True)


@contextmanager
def usage_errors():
    """facemark's own usage errors (raised by the command bodies) become one line and exit 2."""
    from .errors import FacemarkError, UsageError

    try:
        yield
    except UsageError as e:
        fail(str(e))
    except FacemarkError as e:  # e.g. an output that could not be written after the work: exit 1
        if isinstance(e, ValueError):  # a bad image, box, model or video: the command sets its exit code
            raise
        fail(str(e), 1)


@contextmanager
def no_empty_folder(path: Path):
    """An output folder this command made is removed again if the command fails while it is
    still empty (a full disk, NaN losses, Ctrl-C before anything was saved)."""
    existed = os.path.lexists(path)
    try:
        yield
    except BaseException:
        if not existed:
            try:
                path.rmdir()  # (only ever an empty one)
            except OSError:
                pass
        raise


def output_file(value: Optional[str], option: str) -> Optional[Path]:
    """An output file option as typed: ``Path("results/")`` drops the slash, so ``--json results/``
    would quietly become a file named ``results``; a name ending in a separator is a folder."""
    if value is None:
        return None
    if not value.strip():
        fail(f"{option} is an empty string; name a file")
    if value.endswith(("/", os.sep)):
        fail(f"{option} {value} ends in '/', so it names a folder: give a file name")
    return Path(value)


def _bench_report(doc) -> bool:
    return isinstance(doc, dict) and {"machine", "rows"} <= doc.keys()


def _calibration(doc) -> bool:
    return isinstance(doc, dict) and {"templates", "mean98"} <= doc.keys()


def _pack(path: Path) -> bool:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {"target98", "val"} <= set(z.files)
    except Exception:  # noqa: BLE001 - whatever numpy says of a file that is no .npz archive
        return False


def check_output_file(path: Optional[Path], option: str, exts: tuple[str, ...] = (), inputs: List[str] = (),
                      own: "tuple[str, object] | None" = None) -> None:
    """``outputs.check_output_file``, its refusal one line and exit 2."""
    from . import outputs

    with usage_errors():
        outputs.check_output_file(path, option, exts, inputs, own)


def refuse_inside_data(path: Optional[Path], option: str, data: List[str]) -> None:
    from . import outputs

    with usage_errors():
        outputs.refuse_inside_data(path, option, data)


def check_cache_folder(cache: Path, option: str = "--cache") -> None:
    from . import outputs

    with usage_errors():
        outputs.check_cache_folder(cache, option)


def write_result(path: Path, text: str, option: str) -> None:
    from .imageio import atomic_write_bytes

    try:
        atomic_write_bytes(path, text.encode())
    except OSError as e:
        fail(f"cannot write {option} {path}: {e.strerror or e}", 1)


def _version(value: bool) -> None:
    if value:
        out.print(f"facemark {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version.")):
    from .errors import SEEN
    from .quiet import one_line_warnings

    one_line_warnings(say)
    if not _SIGNALLED:  # each command's exit status from its own signals (run() clears both; app() alone, this)
        SEEN.clear()


# --- inference side -----------------------------------------------------------------------------
def _workers(text: str) -> "int | str":
    if text.strip().lower() == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        fail(f"--workers must be a number or auto, not {text!r}")
    if n < 1:
        fail("--workers must be at least 1")
    return n


def _holds_anything(folder: Optional[Path]) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except (OSError, TypeError):  # (not there yet, or no --out)
        return False


def _check_landmarker_args(device: str, threshold: float, min_face: Optional[float]) -> None:
    from .landmarker import bad_option

    if bad := bad_option(device, threshold, min_face):
        fail(f"--{bad[0].replace('_', '-')} must be {bad[1]}")


def _landmarker(model: str, device: str, detector: str, boxes: Optional[Path], threshold: float,
                min_face: Optional[float], threads: Optional[int] = None, flip: bool = False, turned: bool = False):
    from .backends import ModelError
    from .boxes import read_boxes
    from .detector import RetinaFace
    from .landmarker import FaceLandmarker

    _check_landmarker_args(device, threshold, min_face)
    if min_face is not None and isinstance(detector, str) and detector.startswith("yunet:") and not boxes:
        from .landmarker import YUNET_MIN_FACE

        fail(f"--min-face {YUNET_MIN_FACE}")
    if min_face is not None and min_face < RetinaFace.LEAST_FACE and detector == "retinaface" and not boxes:
        say(f"note: --min-face {min_face:g} finds what --min-face {RetinaFace.LEAST_FACE} does: the detector looks at up "
            f"to twice the image's size, where faces of {RetinaFace.LEAST_FACE} px are the least it finds")
    with usage_errors():
        det = read_boxes(boxes) if boxes else detector
    try:
        fl = FaceLandmarker(model=model, device=device, detector=det, threshold=threshold, min_face=min_face,
                            threads=threads, flip=flip, turned=turned)
    except (ModelError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    getattr(fl.detector, "session", None)  # loaded now: no memory for it is the run's end, not each image's
    if device != "cpu" and detector == "retinaface" and not boxes:
        from .runtime import available_providers

        if "CUDAExecutionProvider" not in available_providers():  # (it was often the slower half: README, Big runs)
            say(f"note: the detector runs on the CPU, only the landmark model on {device}: this onnxruntime has no "
                f"CUDA (pip uninstall onnxruntime, then pip install onnxruntime-gpu, for both on the GPU)")
    return fl


@app.command()
def detect(
    inputs: Optional[List[str]] = typer.Argument(None, help="Image files, directories (recursive) or globs."),
    out_arg: Optional[str] = typer.Option(None, "--out", metavar="DIR", help="Write DIR/<path>.json per image (path below the inputs' common folder)."),
    files_from: List[str] = typer.Option([], "--files-from", metavar="FILE", help="Also the inputs FILE lists, one per line (or per NUL, as find -print0 writes), relative ones from the current folder; - reads standard input; repeat for more lists. For more than a command line holds."),
    annotate: bool = typer.Option(False, "--annotate", help="Also write an annotated image beside each JSON."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", metavar="NAME|PATH", help="direct | hybrid | hourglass | PATH.onnx/.pt"),
    device: str = typer.Option("cpu", "--device", help="cpu (onnxruntime) | cuda or cuda:N (torch)"),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface | yunet:PATH.onnx"),
    boxes: Optional[Path] = typer.Option(None, "--boxes", metavar="FILE|DIR", help="Boxes per image (JSON, or facemark's outputs: a file or an --out folder): no face search; a bare box's eyes, nose and mouth are found around it."),
    min_face: Optional[float] = typer.Option(None, "--min-face", metavar="PX", help="Smallest face to find, in pixels."),
    threshold: float = typer.Option(0.6, "--threshold", help="Detector score threshold."),
    batch_images: int = typer.Option(16, "--batch", help="Images whose faces share one model batch (at most: fewer where their decoded pixels pass 256 MB, and with workers near the end of a run)."),
    flip: bool = typer.Option(False, "--flip", help="Also run mirrored crops and average (slower, steadier)."),
    turned: bool = typer.Option(False, "--turned", help="Also find faces turned sideways or upside down (photos without EXIF orientation): each image is searched four ways, a quarter-turn apart (four times the detector's time)."),
    style: str = typer.Option("contours", "--draw", metavar="STYLE", help="With --annotate: contours (lines and points) | points | lines."),
    show_box: bool = typer.Option(True, "--box/--no-box", help="With --annotate: draw the face box."),
    show_score: bool = typer.Option(True, "--score/--no-score", help="With --annotate: label the box with its score."),
    fmt_arg: Optional[str] = typer.Option(None, "--format", help="With --out: json (a file per image; the default) | jsonl | parquet (shards of rows)."),
    shard_size: int = typer.Option(DEFAULT_SHARD_SIZE, "--shard-size", help="With --format jsonl/parquet: images per shard file."),
    redo: bool = typer.Option(False, "--redo", help="With --out: recompute images whose outputs already exist (default: skip them)."),
    workers: str = typer.Option("auto", "--workers", metavar="N|auto", help="Workers, each with its own models and a share of the cores: facemark and N-1 more processes; auto: one per core (at most 16, 64+ images each, as memory allows); on CUDA at most 8 (192+ images each: the detector is on the CPU), or 1 with onnxruntime-gpu."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS", help="Run on Ray: 'local' (also --ray alone), 'auto' (the cluster `ray start` runs on this machine) or a cluster address HOST:PORT (Parquet shards to --out)."),
):
    """Find faces and their 98 landmarks; JSON (schema facemark/v1) to stdout or --out DIR.

    Exit codes: 0 all good, 1 some inputs failed (each named on stderr; the rest are written), or the disk filled up or a worker process was killed (what was written is complete), 2 usage error (nothing written), 130 Ctrl-C (143 SIGTERM, 129 SIGHUP).
    """  # noqa: E501 - one line: the help keeps line breaks
    inputs = list(inputs or [])
    if any(not f.strip() for f in files_from):
        fail("--files-from is an empty string: give a file listing the inputs (- reads standard input)")
    if files_from.count("-") > 1:
        fail("--files-from - is given twice: standard input can be read once")
    from .inputs import beside_the_list, listed_inputs, our_drawings

    drawings: list[str] = []
    with usage_errors():
        for listing in files_from:  # (an empty list beside other inputs: a pipeline's "nothing new" is no error)
            entries = listed_inputs(listing)
            if hint := beside_the_list(listing, entries):
                say(hint)
            ours = our_drawings(entries)
            drawings += ours
            drop = set(ours)
            inputs += [e for e in entries if e not in drop] if drop else entries
    if drawings:  # (a cron job's `find OUT -name '*.jpg'` over photos drawn into OUT: drawings of drawings, each run)
        say(f"note: left out {len(drawings)} of facemark's own drawings the list(s) name, e.g. {drawings[0]} (name "
            f"one as an argument to process it)")
    if not inputs:
        fail(f"--files-from {files_from[-1] if files_from[-1] != '-' else 'standard input'} lists no inputs"
             if files_from else "no inputs: name image files, folders or globs, or a list of them with --files-from FILE")
    from .annotate import STYLES
    from .batch import plan_inputs
    from .workers import Workers, auto_workers, cpu_cores

    out_dir = _out_folder(out_arg)
    if style not in STYLES:
        fail(f"--draw must be one of {', '.join(STYLES)}, not {style!r}")
    fmt = "json" if fmt_arg is None else fmt_arg
    if fmt not in ("json", "jsonl", "parquet"):
        fail(f"--format must be json, jsonl or parquet, not {fmt!r}")
    if fmt != "json" and out_dir is None:
        fail(f"--format {fmt} writes shards: give --out DIR")
    n_workers = _workers(workers)
    if shard_size < 1:
        fail("--shard-size must be at least 1")
    if ray is not None:
        _ray_refusals(ray, n_workers, annotate=annotate, boxes=boxes is not None, detector=detector != "retinaface",
                      flip=flip, turned=turned, redo=redo, fmt=fmt, fmt_given=fmt_arg in ("json", "jsonl"))
        return _detect_on_ray(inputs, Path(out_arg) if out_arg else None, ray, model, device, threshold, min_face,
                              batch_images, shard_size)
    if turned and boxes is not None:
        fail("--turned searches each image four ways for faces, and --boxes gives the faces instead (their eyes, "
             "nose and mouth are looked for around each box, in its window's four turns where a face there looks turned): "
             "use one of them")
    if out_dir is None and sys.stdout is None:
        fail("standard output is closed: give --out DIR")
    if boxes is not None and out_dir is not None and os.path.isdir(boxes):  # (a boxes file is one of the inputs: never written)
        held, out_real = os.path.realpath(boxes), os.path.realpath(out_dir)
        if held == out_real or os.path.commonpath([held, out_real]) == out_real:  # (--redo, or another model, rewrote them)
            said = "is --out's folder: the run would replace" if held == out_real else \
                "is inside --out's folder: the run's outputs can replace"
            fail(f"--boxes {boxes} {said} the files the boxes are read from; give another --out")
    with usage_errors():
        plan = plan_inputs(inputs, out_dir, annotate, batch_images, log=say)
        if fmt == "parquet":
            from .shards import require_pyarrow

            require_pyarrow()  # says how to install it if it is missing
    resuming = not redo and _holds_anything(out_dir)
    if plan.unwritable is not None and not resuming:  # (nothing done there to find: said before models load)
        from .batch import cannot_write
        from .errors import OutputError

        e = cannot_write(out_dir, plan.unwritable)
        fail(str(e), 1 if isinstance(e, OutputError) else 2)
    auto = n_workers == "auto"
    if auto:  # decided here, from the images listed: the landmarker is made for its share of the cores
        n_workers = auto_workers(len(plan.images), device, detector if boxes is None else "none")
    n_workers = min(n_workers, len(plan.images), 4 * cpu_cores())  # (one image: one worker, with every core)
    started = None
    if n_workers > 1 and not resuming:  # (a resume may find nothing left to do)
        _check_landmarker_args(device, threshold, min_face)  # (before processes start for nothing)
        try:  # started now, so their start overlaps this process loading its models and checking what is done
            started = Workers(n_workers - 1)
        except (OSError, ImportError, NotImplementedError):
            pass  # (detect_files tries again, and says why it runs in one process)
    try:
        return _detect_files(plan, started or n_workers, out_dir, annotate, model, device, detector, boxes, min_face,
                             threshold, flip, style, show_box, show_score, fmt, shard_size, redo,
                             auto_left=auto and resuming, turned=turned)
    finally:
        if started is not None:
            started.close()


def _out_folder(out_arg: Optional[str]) -> Optional[Path]:
    """``detect --out``: a folder; the slips that would make one of a file's name are refused."""
    from .imageio import IMAGE_EXTS

    if out_arg is not None and not out_arg.strip():
        fail("--out is an empty string; name a folder (use . for this folder)")
    if out_arg == "-":  # (elsewhere '-' is standard output: here it would have been a folder named '-')
        fail("--out -: without --out the JSON goes to standard output; --out names a folder (./- for one named '-')")
    file_like = {".json", ".jsonl", ".parquet", ".csv", ".txt", ".npz", ".gif"} | IMAGE_EXTS
    if out_arg is not None and Path(out_arg).suffix.lower() in file_like \
            and not os.path.lexists(out_arg) and not out_arg.endswith(("/", os.sep)):
        # (video's --out is a file: an easy slip, which made a folder of that name; x.json/ asks for one)
        fail(f"--out {out_arg} looks like a file name, but --out is a folder: one output per image goes in it "
             f"(--format jsonl or parquet writes shards there; --annotate's drawings too); without --out the JSON "
             f"goes to standard output")
    return Path(out_arg) if out_arg is not None else None


def _ray_refusals(ray: str, n_workers, *, annotate: bool, boxes: bool, detector: bool, flip: bool, turned: bool,
                  redo: bool, fmt: str, fmt_given: bool) -> None:
    """What ``--ray`` cannot do, each said in one line (the flags: whether each option was given)."""
    if not ray.strip():
        fail("--ray is an empty string: give 'local' or a cluster address HOST:PORT")
    if ray not in ("local", "auto") and os.path.exists(ray):  # (`detect --ray photos/ --out o`)
        fail(f"--ray took {ray} as the Ray cluster's address, and it is a file or folder here: put --ray after "
             f"the inputs (--ray alone is --ray local), or give the address: --ray HOST:PORT")
    if n_workers != "auto":
        fail("--workers does not apply to --ray: Ray sizes its own pool of actors from the cluster's CPUs")
    unsupported = [name for name, given in (("--annotate", annotate), ("--boxes", boxes), ("--detector", detector),
                                            ("--flip", flip), ("--turned", turned), ("--redo", redo),
                                            (f"--format {fmt}", fmt_given))
                   if given]
    if unsupported:
        fail(f"--ray does not take {', '.join(unsupported)} (it writes Parquet rows with the default detector and "
             f"skips what OUT holds; run without --ray for those, or give a new --out to start over)")


def _detect_files(plan, workers, out_dir: Optional[Path], annotate: bool, model: str, device: str, detector: str,
                  boxes: Optional[Path], min_face: Optional[float], threshold: float, flip: bool, style: str,
                  show_box: bool, show_score: bool, fmt: str, shard_size: int, redo: bool,
                  auto_left: bool = False, turned: bool = False) -> None:
    """``auto_left``: a resumed ``--workers auto`` run, whose workers are counted from the images
    left to do, not those listed (100 left of 3072 would start 8 CUDA workers, each slow to start)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .batch import StopRun, detect_files, summary_line
    from .errors import UsageError
    from .workers import WorkerDied, threads_each

    n_workers = workers if isinstance(workers, int) else workers.processes + 1
    # (a resumed auto run counts its workers later, from what is left: every core until then; the
    # workers' share, where there are several, is then a copy of this landmarker's)
    fl = _landmarker(model, device, detector, boxes, threshold, min_face, flip=flip, turned=turned,
                     threads=threads_each(n_workers) if n_workers > 1 and not auto_left else None)
    idle = [("--redo needs --out", redo and out_dir is None),  # said after the checks above: a usage error stays one line
            ("--shard-size needs --format jsonl or parquet", shard_size != DEFAULT_SHARD_SIZE and fmt == "json"),
            ("--draw, --no-box and --no-score need --annotate",
             (style != "contours" or not show_box or not show_score) and not annotate)]
    searching = [name for name, given in (("--detector", detector != "retinaface"), ("--threshold", threshold != 0.6),
                                          ("--min-face", min_face is not None)) if given]
    if boxes is not None and searching:  # (a box's eyes, nose and mouth are looked for by RetinaFace, at its size)
        names = " and ".join([", ".join(searching[:-1]), searching[-1]] if len(searching) > 1 else searching)
        idle.append((f"{names} set{'s' if len(searching) == 1 else ''} how faces are searched for, and --boxes "
                     f"gives them", True))
    for message, ignored in idle:
        if ignored:
            say(f"note: {message}; ignored here")
    options = dict(boxes=boxes, log=say, style=style, show_box=show_box, show_score=show_score, fmt=fmt,
                   resume=not redo, workers="auto" if auto_left else workers, rows_per_shard=shard_size)
    from .imageio import missing_folders, remove_empty

    made = []  # every folder the outputs would make (--out, above it, and for inputs in sub-folders), deepest first:
    if out_dir is not None:  # removed again where still empty if the run stops early
        parents = {out_dir, *(out_dir / d for d in {os.path.dirname(n) for n in plan.names})}  # (text: a million names)
        made = sorted({q for p in parents for q in missing_folders(p)}, key=lambda q: len(q.parts), reverse=True)
    try:
        if len(plan.images) > 1 and err.is_terminal:  # a bar only where someone watches (no blank lines in logs)
            cols = [TextColumn("detect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            with Progress(*cols, console=err, transient=True, disable=not err.is_terminal) as bar:
                task = bar.add_task("detect", total=len(plan.images))
                summary = detect_files(plan, fl, progress=lambda n: bar.advance(task, n), **options)
        else:
            summary = detect_files(plan, fl, **options)
    except KeyboardInterrupt:
        _ignore_signals()
        remove_empty(made)
        goes_on = "" if out_dir is None else "; the same command continues" + (" the --redo" if redo else "")
        exit_interrupted(f"interrupted: outputs written so far are complete{goes_on}")
    except (StopRun, WorkerDied) as e:  # (OutputError is one: a full disk; or no more open files for workers)
        remove_empty(made)
        fail(str(e), 1)
    except UsageError as e:  # found while the run starts (an --out that cannot be made after all): nothing done
        remove_empty(made)
        fail(str(e))
    except BrokenPipeError as e:  # JSON piped into head and the like: the reader had enough
        sys.stdout = None
        raise typer.Exit(1 if getattr(e, "failures", 0) else 0) from None
    _ignore_signals()  # all done: a late Ctrl-C must not add "interrupted" to the summary
    say(summary_line(summary))
    if summary.failures:
        raise typer.Exit(1)


def _detect_on_ray(inputs, out_dir, address, model, device, threshold, min_face, batch_images, shard_size) -> None:
    """``detect --ray``: the same job as a Ray Data pipeline (facemark.cluster), Parquet out."""
    if out_dir is None:
        fail("--ray writes Parquet shards: give --out DIR")
    from .cluster import run_ray

    try:
        with usage_errors():  # a RayRunError (a FacemarkError) is one line and exit 1
            s = run_ray(inputs, str(out_dir), None if address == "local" else address, model=model, device=device,
                        threshold=threshold, min_face=min_face, batch_size=batch_images, rows_per_shard=shard_size,
                        log=say)  # which says the summary
    except KeyboardInterrupt:
        _ignore_signals()
        exit_interrupted("interrupted: the shards written are complete, the rows done so far among them; the same "
                         "command continues")
    if s["failed"]:
        raise typer.Exit(1)


@app.command()
def video(
    source: str = typer.Argument(..., help="Video file, folder or glob of frames, or a camera index."),
    out_arg: Optional[str] = typer.Option(None, "--out", metavar="VIDEO", help="Annotated video (.mp4 .m4v .avi .mov .mkv .webm)."),
    json_arg: Optional[str] = typer.Option(None, "--json", metavar="FILE", help="One JSON line per frame (.jsonl); - for stdout."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", metavar="NAME|PATH", help="direct | hybrid | hourglass | PATH"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda or cuda:N"),
    detect_every: int = typer.Option(10, "--detect-every", help="Run the detector every N frames (and when a face is lost)."),
    smooth: str = typer.Option("one-euro", "--smooth", help="one-euro (the head's pose, and the face's shape: its noise held down, blinks and speech let through) | pose (the pose only: the shape as the model reads it) | none"),
    max_faces: int = typer.Option(0, "--max-faces", metavar="K", help="Track at most K faces (the largest of new ones first; a "
                                  "tracked face keeps its place while in view); 0: all."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate for frame folders (default 30) or to override."),
    threshold: float = typer.Option(0.6, "--threshold", help="Detector score threshold."),
    min_face: Optional[float] = typer.Option(None, "--min-face", metavar="PX", help="Smallest face to find, in pixels (frames are "
                                             "searched shrunk to 640 px: smaller faces need it)."),
    min_cutoff: Optional[float] = typer.Option(None, "--min-cutoff", help="One Euro (head pose): cutoff in Hz when still (default 1)."),
    beta: Optional[float] = typer.Option(None, "--beta", help="One Euro (head pose): how fast the cutoff opens with speed (default 100)."),
    turned: bool = typer.Option(False, "--turned", help="Also find faces turned sideways or upside down (a recording without its rotation): every search looks four ways, a quarter-turn apart (four times the detector's time)."),
    style: str = typer.Option("contours", "--draw", metavar="STYLE", help="With --out: contours (lines and points) | points | lines."),
    show_box: bool = typer.Option(True, "--box/--no-box", help="With --out: draw each face's box."),
    show_ids: bool = typer.Option(True, "--ids/--no-ids", help="With --out: label each face with its track's id (the JSON's \"id\")."),
):
    """Tracked, smoothed landmarks on video: an annotated video and/or per-frame JSON lines.

    Exit codes: 0 done, 1 some frames did not decode or the file is cut
    short (the rest is written) or the outputs could not be completed (a
    full disk: nothing kept, or the JSON lines only if it filled while the
    video was being finished), 2 usage or unreadable input (nothing
    written), 130 interrupted (143 by SIGTERM, 129 by SIGHUP; what was done
    is written, playable, to NAME.partial.EXT).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .video import VideoError, VideoWriteError, process_video

    out_path, json_path = output_file(out_arg, "--out"), output_file(json_arg, "--json")
    if out_path is None and json_path is None:
        fail("give --out VIDEO and/or --json FILE.jsonl")
    if smooth == "none" and (min_cutoff is not None or beta is not None):
        say("note: --min-cutoff and --beta tune the smoothing, which --smooth none turns off: they do nothing here")
    from .annotate import STYLES

    if style not in STYLES:  # (before the note below: one line for one mistake)
        fail(f"--draw must be one of {', '.join(STYLES)}, not {style!r}")
    if out_path is None and (style != "contours" or not show_box or not show_ids):
        say("note: --draw, --no-box and --no-ids need --out (the annotated video); ignored here")
    fl = _landmarker(model, device, "retinaface", None, threshold, min_face, turned=turned)
    cols = [TextColumn("video"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]:.1f} fps"), TimeRemainingColumn()]
    s = None
    try:
        with Progress(*cols, console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("video", total=None, rate=0.0)
            try:
                with usage_errors():
                    s = process_video(source, fl, out_path, json_path, detect_every=detect_every, smooth=smooth,
                                      max_faces=max_faces, fps=fps, min_cutoff=min_cutoff, beta=beta, log=say,
                                      keep_ignoring=True, option_names=True, style=style, show_box=show_box,
                                      show_ids=show_ids, progress=lambda done, total, rate: bar.update(task, completed=done, total=total, rate=rate))
            except VideoError as e:
                bar.stop()
                fail(str(e), 1 if isinstance(e, VideoWriteError) else 2)
    except KeyboardInterrupt:  # before the first frame (nothing written), or a late second signal
        if s is None:
            exit_interrupted("interrupted before any frame was written")
        s.interrupted = True
    try:
        if s.audio_kept is False:
            what = "the audio track was" if s.had_audio else "audio, if any, was"
            err.print(f"note: {what} not kept (OpenCV writes video only; with ffmpeg on PATH it is copied)")
        if s.padded_to:
            (w, h), (fw, fh) = s.padded_to, s.frame_size or s.padded_to
            what = " and ".join(x for x, n in (("column", w - fw), ("row", h - fh)) if n)
            err.print(f"note: the video is {w}x{h}, its frames {fw}x{fh}: {s.padded_why}, so each frame's last {what} "
                      f"is repeated to fill it (the JSON points are in the frames' own pixels)")
        if s.resized:
            err.print(f"note: {s.resized} frame(s) of another size were fitted into the first frame's size (scaled, "
                      f"shape kept, black around) for tracking and drawing; their JSON points are in their own pixels")
        if s.rate_doubted is not None:
            err.print(f"note: the file states {s.rate_doubted:g} fps (a damaged header?) and its frames' times are no "
                      f"better: they are timed at {s.fps:g} fps (--fps sets the rate)")
        if s.most_shrunk >= 4:  # (a thumbnail first by name: every frame after it was searched at its size)
            err.print(f"[red]warning:[/] some frames were shrunk up to {s.most_shrunk:.0f}x to fit the first frame's size, "
                      f"so faces in them may be missed: the first frame (by name) sets the size; give frames of one size")
        if s.reader_gone and not s.interrupted:  # (as `detect | head`: no error; but no "0 frames, 1 track")
            err.print(f"facemark: stopped after {s.frames} frame(s): nothing reads the JSON lines any more")
        elif not s.interrupted:  # (an interrupted run's count is in its one line below)
            went = [f"video in {plain(out_path)}"] if out_path is not None else []
            went += [f"JSON lines in {plain(json_path)}"] if json_path is not None and str(json_path) != "-" else []
            err.print(f"facemark: {s.frames} frame{'' if s.frames == 1 else 's'} in {s.seconds:.1f} s ({s.frames / s.seconds:.1f} fps), {s.tracks} face "
                      f"track(s){'; ' + ', '.join(went) if went else ''}")
        if s.lines_stopped is not None:
            err.print(f"note: nothing read the JSON lines after frame {s.lines_stopped} (the pipe's reader left): they stop "
                      f"there, while the video has every frame")
        if any(s.left_out):
            dirs, clips = s.left_out
            what = " and ".join(x for x in (f"{dirs} subfolder(s)" if dirs else "", f"{clips} video file(s)" if clips else "") if x)
            err.print(f"note: {what} in {plain(source)} are not frames and were left out (a folder's frames are its "
                      f"own images, in name order{'; a video is given on its own' if clips else ''})")
        if s.turned_frames:
            err.print(f"note: faces looked turned sideways or upside down in {s.turned_frames} of the frames searched "
                      f"whole, and such faces' points are unreliable: --turned reads them (a recording whose rotation "
                      f"was lost?)")
        if s.unfound == "tiny":
            from .detector import RetinaFace

            err.print(f"note: no face was found in any frame: the frames are under {RetinaFace.LEAST_FACE} px on their short side, "
                      f"too small to hold a face facemark finds")
        elif s.unfound == "small" and min_face is None:
            err.print("note: no face was found in any frame, and the frames are small: faces under about 40 px may go "
                      "unseen at their own size; --min-face 20 looks at them twice as large")
        elif s.unfound == "any" and (not turned or min_face is None):
            hints = (["faces turned sideways or upside down (a recording whose rotation was lost) may be found only "
                      "with --turned"] if not turned else []) + \
                (["faces under about 40 px in the frames as searched (shrunk to 640 px on the long side when "
                  "larger) may be found only with --min-face 20 (the frames searched at twice their own size)"]
                 if min_face is None else [])
            err.print(f"note: no face was found in any frame: {'; '.join(hints)}")
        if s.searched_shrunk == -1:
            err.print("note: no face was found, and --min-face is larger than the frames' short side: faces smaller "
                      "than it go unseen; give the smallest face size you need, or leave it out")
        elif s.searched_shrunk:
            err.print(f"note: no face was found, and the frames were searched shrunk to {s.searched_shrunk} px on the long "
                      f"side, where faces under 1/16 of it go unseen; --min-face 40 finds faces down to 40 px "
                      f"(--min-face 20, the least, down to 20), more slowly")
    except KeyboardInterrupt:  # a late second signal: the outputs are already complete
        s.interrupted = True
    if s.interrupted and s.set_aside:  # (never under the names asked for: those are for whole runs' outputs)
        exit_interrupted(f"interrupted after {s.frames} frame(s): the frames processed so far are in "
                         f"{', '.join(plain(p) for p in s.set_aside)}")
    if s.interrupted:
        exit_interrupted(f"interrupted after {s.frames} frame(s)")
    if s.cut_short and not s.interrupted:  # (said whatever the count: a cut Matroska file's is an estimate)
        lost = f"about {s.decode_errors} frame(s) of it are not there; " if s.decode_errors else ""
        err.print(f"[red]warning:[/] {plain(source)} ends before the data it announces (a download or copy that "
                  f"stopped?): {lost}wrote the {s.frames} frame(s) it holds")
        raise typer.Exit(1)
    if s.decode_errors:
        held = " (the video shows the frame before each in its place, the first good one for any before it)" \
            if out_path is not None else ""
        which = f" ({', '.join(plain(n) for n in s.bad_files)}{', ...' if s.decode_errors > len(s.bad_files) else ''})" \
            if s.bad_files else ""
        err.print(f"[red]warning:[/] {s.decode_errors} frame(s) of {plain(source)}{which} did not decode; wrote the "
                  f"{s.frames} that did{held}")
        raise typer.Exit(1)


@app.command()
def bench(
    device: str = typer.Option("cpu", "--device", help="cpu (onnxruntime, torch) | cuda or cuda:N (torch fp32/bf16, graphs)"),
    models_arg: str = typer.Option("hourglass,direct,hybrid", "--models", "--model", metavar="NAMES", help="Comma-separated model names or paths."),
    batch: str = typer.Option("", "--batch", metavar="SIZES", help="Batch sizes, e.g. 1,32,256 (default 1,32 on CPU; 1,32,256 on CUDA)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for onnxruntime and torch."),
    data: List[str] = typer.Option([], "--data", metavar="KIND=PATH", help="KIND=PATH: also measure NME on its test split; repeat."),
    image: Optional[Path] = typer.Option(None, "--image", metavar="FILE", help="Photo fitted into the 640x480 timing frame (with a face: also times the whole pipeline)."),
    yunet: Optional[Path] = typer.Option(None, "--yunet", metavar="FILE", help="Also time YuNet from this ONNX file."),
    json_arg: Optional[str] = typer.Option(None, "--json", metavar="FILE", help="Write the full numbers here."),
    limit: Optional[int] = typer.Option(None, "--limit", help="With --data: N test faces at an even stride (each subset keeps about its share)."),
):
    """Speed (and with --data, accuracy) of the detector and every model/backend, as a table."""
    from rich.table import Table

    from .evaluation import bench as B
    from .evaluation.evaluate import check_limit
    from .results import json_numbers
    from .runtime import max_threads

    names = model_names([models_arg])
    if not names:
        fail("--models names no model")
    if threads is not None and not 1 <= threads <= max_threads():
        fail(f"--threads must be from 1 to {max_threads()} (four per core here), not {threads}")
    with usage_errors():  # (said before any output file is checked)
        check_limit(limit)
    if limit is not None and not data:
        say("note: --limit counts the faces of --data, which is not given: ignored here")
    json_path = output_file(json_arg, "--json")
    check_output_file(json_path, "--json", inputs=[str(p) for p in (image, yunet) if p is not None] + list(data),
                      own=("a facemark bench report", _bench_report))
    with usage_errors():
        batches = B.parse_batches(batch, device)
        rows, skipped, info = B.run_bench(device, names, batches, threads, data, image, yunet, limit, status=err.status)
    if json_path and any(r.stage == "landmarks" for r in rows):  # (first: a reader of the table that quits, `| head`,
        # ended the command before the report was written, with exit 0)
        write_result(json_path, json.dumps(json_numbers(B.as_json(rows, skipped, info)), indent=1) + "\n", "--json")
    table = Table(title=f"facemark bench on {info.get('gpu', info['cpu'])} ({info['cores']} cores)")
    cols = ["stage", "model", "backend", "prec", "b1 median ms", "b1 p90 ms"] + [f"faces/s b{b}" for b in batches if b > 1]
    gpu_mb = any(r.memory_mb is not None for r in rows)  # (CUDA rows' peak allocation; the CPU has none)
    cols += ["params", "GFLOPs"] + (["GPU MB"] if gpu_mb else []) + (["NME %"] if data else [])
    for c in cols:
        table.add_column(c, justify="left" if c in ("stage", "model", "backend", "prec") else "right")
    for r in rows:
        f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
        cells = [r.stage, r.model, r.backend, r.precision, f(r.latency_ms, ".2f"), f(r.p90_ms, ".2f")]
        cells += [f(r.throughput.get(b), ",.0f") for b in batches if b > 1]
        cells += [f(r.params / 1e6 if r.params else None, ".2f") + ("M" if r.params else ""),
                  f(r.flops / 1e9 if r.flops else None, ".3f")] + ([f(r.memory_mb, ".0f")] if gpu_mb else [])
        if data:
            cells.append(f(r.nme, ".2f"))
        table.add_row(*cells)
    out.print(table)
    if rows and rows[0].note:
        piped = "; pipeline rows time detect + crop + landmarks + mapping back per frame" \
            if any(r.stage == "pipeline" for r in rows) else ""
        out.print(f"detector timed on a {rows[0].note}; landmark rows time the model alone (batch of crops){piped}.")
    if data:
        faces = next((r.nme_faces for r in rows if r.nme_faces), None)
        on = f" on {faces} test faces of {', '.join(data)}" + (f" (--limit {limit})" if limit else "") + \
            " (any the detector missed left out, and said)" if faces else ""
        out.print(f"NME %: the full pipeline{on}, measured with the backend facemark runs each model on for this device "
                  "(onnxruntime fp32 on a CPU, torch for a .pt; torch bf16 on a GPU), shown on that backend's row only.")
    for s in skipped:
        say(s if s.startswith("note: ") else f"skipped: {s}")
    if not any(r.stage == "landmarks" for r in rows):
        fail("no landmark model could be timed (see the skipped lines above)")


@app.command("eval")
def eval_cmd(
    data: List[str] = typer.Option(..., "--data", metavar="KIND=PATH", help="KIND=PATH (300w, wflw, csv68); repeat. --split picks the faces."),
    model: List[str] = typer.Option([DEFAULT_MODEL], "--model", "--models", metavar="NAME|PATH", help="Model name or path; repeat (or comma-separate) to compare."),
    boxes: str = typer.Option("detector", "--boxes", metavar="detector|gt", help="detector (full pipeline) | gt (landmark model alone)"),
    device: str = typer.Option("cpu", "--device", help="cpu (onnxruntime) | cuda or cuda:N (torch)"),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface | yunet:PATH.onnx"),
    json_arg: Optional[str] = typer.Option(None, "--json", metavar="FILE", help="Write all numbers here, each face's NME too."),
    plot_arg: Optional[str] = typer.Option(None, "--plot", metavar="FILE", help="Draw the CED curves into this PNG."),
    split: str = typer.Option("test", "--split", metavar="test|train|all", help="test | train | all"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only N faces, at an even stride over the data (each subset keeps about its share: quick checks)."),
    flip: bool = typer.Option(False, "--flip", help="Flip test-time augmentation."),
):
    """NME, failure rate and AUC (at 8 % and 10 %) per subset, with detector misses."""
    from rich.progress import Progress
    from rich.table import Table

    from .errors import OutputError
    from .evaluation.evaluate import check_eval_outputs, check_limit, run_eval

    with usage_errors():
        check_limit(limit)
    json_path, plot = output_file(json_arg, "--json"), output_file(plot_arg, "--plot")
    with usage_errors():
        check_eval_outputs(json_path, plot, data)
    if boxes == "gt" and detector != "retinaface":
        say("note: --detector finds the faces that --boxes detector measures; --boxes gt crops from the labels: "
            "ignored here")
    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
        tasks = {}

        def progress(name, i, n):
            if name not in tasks:
                tasks[name] = bar.add_task(f"eval {name}", total=n)
            bar.update(tasks[name], completed=i)

        unwritten = None
        with usage_errors():
            models = model_names(model)
            if not models:
                fail("--model names no model")
            try:
                results, _ = run_eval(data, models, boxes, device, detector, split, limit, flip, json_path, plot,
                                      progress, say)
            except OutputError as e:  # (a full disk after minutes of work: the figures are shown, then the error)
                if not hasattr(e, "results"):
                    raise
                results, unwritten = e.results, e
    for r in results:
        table = Table(title=r.title)
        for col in ("subset", "faces", "missed", "NME %", "FR@8 %", "FR@10 %", "AUC@8", "AUC@10"):
            table.add_column(col, justify="right" if col != "subset" else "left")
        for sub, v in r.table().items():
            nme = f"{v['nme']:.3f}" if math.isfinite(v["nme"]) else "-"  # (every face missed: no mean, as the JSON's null)
            table.add_row(sub, str(v["faces"]), str(v["missed"]), nme, f"{v['fr8']:.2f}", f"{v['fr10']:.2f}",
                          f"{v['auc8']:.4f}", f"{v['auc10']:.4f}")
        out.print(table)
    out.print("NME: inter-ocular (outer eye corners), over faces found; FR/AUC count detector misses as failures."
              if boxes == "detector" else "NME: inter-ocular (outer eye corners); crops from the labels (no detector).")
    for r in results:
        whole = r.table()["all"]
        if whole and whole["faces"] and whole["missed"] == whole["faces"]:
            say(f"note: {r.model} found none of the {whole['faces']} labelled faces, so it has no NME (nan); "
                f"--boxes gt measures the landmark model alone")
    if split == "test" and results and len(results[0].errors) == 554 and \
            any(d.split("=", 1)[0].lower() in ("300w", "pts") for d in data):  # the footnote fits that data only
        out.print("300-W here: helen + lfpw test sets = the 554-face common subset. facemark's models were trained on "
                  "the 2,012 faces available here (the standard 300-W training set has 3,148).")
    if unwritten is not None:
        fail(str(unwritten), 1)


@app.command()
def models():
    """List the shipped models: size, speed and accuracy (from weights/eval.json, bench.json)."""
    from rich.table import Table

    from .backends import shipped_models

    table = Table(title="facemark models (weights/)")
    for col in ("name", "family", "input", "params", "GFLOPs", "ONNX MB", "NME % (300-W common)", "CPU ms/face"):
        table.add_column(col, justify="left" if col in ("name", "family") else "right")
    import warnings

    with warnings.catch_warnings(record=True) as said:  # (a damaged measurement file: said, and in the legend)
        warnings.simplefilter("always")
        rows = shipped_models()
    damaged = [str(w.message).split(" is damaged")[0] for w in said if " is damaged" in str(w.message)]
    for w in said:
        say(f"warning: {w.message}")
    for m in rows:
        if "error" in m:
            table.add_row(m["name"], "missing", "", "", "", "", "", m["error"])
            continue
        name = f"{m['name']} (default)" if m["name"] == DEFAULT_MODEL else m["name"]
        table.add_row(name, m["family"], f"{m['size']}px", f"{m['params'] / 1e6:.2f}M", f"{m['flops'] / 1e9:.2f}",
                      f"{m['onnx_mb']:.1f}", "-" if m["nme"] is None else f"{m['nme']:.2f}",
                      "-" if m["cpu_ms"] is None else f"{m['cpu_ms']:.1f}")
    out.print(table)
    machine = next((m["cpu_machine"] for m in rows if m.get("cpu_machine")), None)
    where = f", measured on {machine} (facemark bench times yours)" if machine else ""
    out.print(f"NME: full pipeline (detector + model) on the 554-face 300-W common subset; CPU: onnxruntime, "
              f"batch 1{where}.", soft_wrap=True)  # (one line, the terminal wraps it: no break inside words when piped)
    if damaged:
        out.print(f"-: {' and '.join(damaged)} cannot be read (damaged: reinstall facemark to restore {'them' if len(damaged) > 1 else 'it'}).",
                  soft_wrap=True)
    elif any("error" not in m and m["nme"] is None for m in rows):
        out.print("-: not measured for these very weights (retrained ones exported under a shipped name?); the "
                  "README's Accuracy says how to measure them.", soft_wrap=True)


# --- training side (needs torch: pip install ".[torch]") ----------------------------------------
@app.command()
def calibrate(
    data: List[str] = typer.Option(..., "--data", metavar="KIND=PATH", help="KIND=PATH with 68-point human labels (300w, csv68)."),
    teacher: Path = typer.Option(..., "--teacher", metavar="DIR", help="Directory with the PFLD-GhostOne ONNX files."),
    yunet: Optional[Path] = typer.Option(None, "--yunet", metavar="FILE", help="YuNet ONNX, to fit its keypoint template too."),
    out_arg: str = typer.Option(str(Path(__file__).parent / "calibration.json"), "--out", metavar="FILE", help="Where to write."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR", help=f"Cache for detector/teacher outputs {CACHE_HELP}."),
):
    """Fit the 98->68 map, the canonical crop and the alignment templates (calibration.json)."""
    from .training import calibrate as cal

    out_path = output_file(out_arg, "--out")
    check_output_file(out_path, "--out", (".json",), inputs=[*data, str(teacher)] + ([str(yunet)] if yunet else []),
                      own=("a facemark calibration", _calibration))
    refuse_inside_data(cache, "--cache", data)
    cache = cache or default_cache()
    check_cache_folder(cache)
    shipped = Path(__file__).parent / "calibration.json"
    replaces = out_path.exists() and os.path.realpath(out_path) == os.path.realpath(shipped)
    if os.path.realpath(out_path) == os.path.realpath(shipped) and installed_package():
        fail(f"--out {plain(out_path)} is the calibration of facemark as installed (not an editable install): "
             f"rewriting it would change an installed package behind pip's back; calibrate in a checkout of facemark "
             f"installed with pip install -e . (the README's Training), where the calibration it writes is the one read")
    try:
        shipped_faces = f"{json.loads(shipped.read_text())['faces']:,} faces"
    except (OSError, ValueError, KeyError, TypeError):
        shipped_faces = "thousands"
    with usage_errors():
        result = cal.run(data, teacher, yunet, out_path, cache, log=say)
    err.print(f"wrote {plain(out_path)} ({result['faces']} faces)")
    if result["faces"] < FEW_CALIBRATION_FACES:
        say(f"warning: a fit to {result['faces']} faces is noisy (the calibration facemark reads: {shipped_faces}); "
            f"landmarks cropped with it will be less accurate")
    if replaces:
        say(f"note: that replaced the calibration every facemark run here reads, which the shipped weights were "
            f"trained with; reinstalling facemark (or git checkout {shipped.name}) restores it")


FEW_CALIBRATION_FACES = 500  # under this a calibration is said to be noisy


def installed_package() -> bool:
    """Whether this facemark's files are an installed distribution's (pip's record of facemark
    lists this very calibration.json), not a checkout's (an editable install records none of them)."""
    from importlib import metadata

    try:
        files = metadata.distribution("facemark").files or []
    except metadata.PackageNotFoundError:
        return False
    here = os.path.realpath(Path(__file__).parent / "calibration.json")
    return any(f.name == "calibration.json" and os.path.realpath(f.locate()) == here for f in files)


@app.command()
def pack(
    data: List[str] = typer.Option(..., "--data", metavar="KIND=PATH", help="KIND=PATH (300w, wflw, csv68); repeat."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", metavar="DIR", help="PFLD-GhostOne directory (68-point data)."),
    out_arg: str = typer.Option(..., "--out", metavar="FILE", help="The pack file (.npz) to write."),
    res: int = typer.Option(192, "--res", help="Crop side in pixels (canonical square = res / 1.5)."),
    youtube_weight: float = typer.Option(0.5, "--csv68-weight", help="Loss weight of csv68 (noisier) faces."),
    quality: int = typer.Option(92, "--quality", help="JPEG quality of the stored crops."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR", help=f"Cache of detector/teacher outputs, reused by later packs {CACHE_HELP}."),
):
    """Build a compact training pack (pre-aligned JPEG crops + 98-point targets)."""
    from rich.progress import Progress

    from .training.pack import build_pack

    out_path = output_file(out_arg, "--out")
    check_output_file(out_path, "--out", (".npz",), inputs=data + ([str(teacher)] if teacher else []),
                      own=("a facemark pack", _pack))
    refuse_inside_data(cache, "--cache", data)
    cache = cache or default_cache()
    check_cache_folder(cache)
    if Path(os.path.realpath(cache)) in Path(os.path.realpath(out_path)).parents:
        fail(f"--out {out_path} is inside --cache {cache}: write the pack elsewhere")
    if not 32 <= res <= 1024:
        fail(f"--res must be between 32 and 1024 pixels, not {res}")
    if not (math.isfinite(youtube_weight) and youtube_weight >= 0):
        fail(f"--csv68-weight must be 0 or a positive number, not {youtube_weight}")
    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar, usage_errors():
        tasks = {}

        def progress(stage, i, n):
            if stage not in tasks:
                tasks[stage] = bar.add_task({"prepare": "detect + teach", "crop": "crop"}[stage], total=n)
            bar.update(tasks[stage], completed=i, total=n)

        pk = build_pack(data, teacher, cache, res, youtube_weight, quality, progress, log=say)
    try:
        pk.save(out_path)
    except OSError as e:
        fail(f"cannot write --out {out_path}: {e.strerror or e}", 1)
    err.print(f"wrote {plain(out_path)}: {len(pk)} faces ({int(pk.val.sum())} held out), "
              f"{out_path.stat().st_size / 1e6:.1f} MB")


def model_names(given: List[str]) -> List[str]:
    """``--model``/``--models`` as given, each a name, a path, or names separated by commas (a path
    that exists is taken whole, commas and all); empty names dropped, and a name given twice
    measured once (the same name twice was minutes of the same work)."""
    return list(dict.fromkeys(m.strip() for item in given for m in ([item] if os.path.exists(item) else item.split(","))
                              if m.strip()))


def _folder_option(value: str, holds: str, option: str = "--out") -> Path:
    """A folder option as typed: an empty one is refused (``Path("")`` is the current folder, where
    a run's files would have gone unasked)."""
    if not value.strip():
        fail(f"{option} is an empty string; name a folder (use . for this folder)")
    if value == "-":
        fail(f"{option} -: name a folder (./- for one named '-')")
    path = Path(value)
    if path.suffix.lower() in (".onnx", ".pt", ".pth", ".npz", ".json") and not path.is_dir() \
            and not value.endswith(("/", os.sep)):
        fail(f"{option} {value} looks like a file name, but {option} is a folder: {holds}")
    from .imageio import too_long_name

    if long := too_long_name(path):
        fail(f"{option} {long}")
    return path


def _need_torch(command: str) -> None:
    """Training and export run on PyTorch, which the inference install leaves out: one line, not
    an ImportError's traceback."""
    try:
        import torch  # noqa: F401
    except (ImportError, OSError) as e:  # (OSError: an install whose own libraries do not load)
        why = "" if isinstance(e, ModuleNotFoundError) else f" (it did not load: {e})"
        from .errors import INSTALL_TORCH

        fail(f"facemark {command} needs PyTorch{why}: {INSTALL_TORCH}")


@app.command()
def train(
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME", help="hourglass | direct | hybrid (default hourglass; --resume: the run's)."),
    data: List[str] = typer.Option([], "--data", metavar="KIND=PATH", help="KIND=PATH (300w, wflw, csv68); repeat."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", metavar="DIR", help="PFLD-GhostOne directory (68-point data)."),
    pack_path: Optional[Path] = typer.Option(None, "--pack", metavar="FILE", help="A pack from 'facemark pack' (skips --data)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda or cuda:N"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training faces (the cosine schedule's length; with --time-budget, a cap). Default 60; --resume keeps the run's."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Faces per optimiser step. Default 32; --resume keeps the run's."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 2e-3)."),
    arch: List[str] = typer.Option([], "--arch", metavar="KEY=VALUE", help="Model option KEY=VALUE, e.g. width=128, or pool=spatial and readout=8 (direct); repeat. With --init, only options that keep its weights fitting."),
    out_arg: str = typer.Option(..., "--out", metavar="DIR", help="Run directory (log, checkpoints, exported model)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop cleanly at the end of the first epoch that ends after this long (minutes)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", metavar="MINUTES", help="End the learning-rate schedule when this much training time (steps and held-out checks; not start-up or teacher labelling) is spent; --epochs is then a cap. For a lent GPU's fixed time; kept by --resume."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: all cores)."),
    res: int = typer.Option(192, "--res", help="Pack crop side when building from --data."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR", help=f"Cache of detector/teacher outputs when building from --data {CACHE_HELP}."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (CUDA)."),
    fuse_loss: bool = typer.Option(True, "--fuse-loss/--no-fuse-loss", help="Compile the heatmap loss (~30 s once)."),
    teacher_model: Optional[str] = typer.Option(None, "--teacher-model", metavar="NAME|PATH", help="Distil from this model (e.g. hourglass, or a .pt) on augmented crops."),
    distill: float = typer.Option(1.0, "--distill", help="Weight of the teacher's loss (human labels keep weight 1)."),
    teacher_views: int = typer.Option(8, "--teacher-views", help="Augmented views per face the teacher labels once (cached). 1: the crop as it is, its labels moved with each batch's augmentation."),
    teacher_cache: Optional[Path] = typer.Option(None, "--teacher-cache", metavar="FILE", help="Teacher label cache (default OUT/teacher.npz; share it between students)."),
    init: Optional[str] = typer.Option(None, "--init", metavar="NAME|PATH", help="Start from these weights (a model name or .pt): fine-tune, grown into --arch options that add parameters (direct: pool=spatial, readout=8)."),
    aug: List[str] = typer.Option([], "--aug", metavar="KEY=VALUE", help="Augmentation setting KEY=VALUE; repeat. Keys: rotate, p_wide_rotate, rotate_narrow, scale, shift, flip, colour, grey, blur, noise, occlude (defaults in facemark/training/augment.py)."),
):
    """Train a landmark model; exports the best checkpoint to OUT/model.onnx and OUT/model.pt."""
    out_dir = _folder_option(out_arg, "the run's files go in it (last.pt, best.pt, model.onnx, log.csv)")
    _need_torch("train")
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .training.train import (RUN_FILES, TrainingFailed, TrainOptions, check_options, load_pack, make_trainer, parse_arch,
                                 run_family)

    from contextlib import ExitStack

    with no_empty_folder(out_dir), ExitStack() as held:  # (a run that fails before its first file leaves no folder)
        check_cache_folder(out_dir, "--out")  # a run folder that cannot be written is said before any work
        for option, given in (("--out", out_dir), ("--cache", cache), ("--teacher-cache", teacher_cache)):
            refuse_inside_data(given, option, data)
        if data and pack_path is None:
            cache = cache or default_cache()
            check_cache_folder(cache)
        with usage_errors():
            stated = tuple(k for k, v in (("epochs", epochs), ("batch", batch)) if v is not None)
            model = model or (run_family(out_dir) if resume else None) or "hourglass"  # (a resume: the run's own)
            opts = TrainOptions(model, out_dir, epochs=60 if epochs is None else epochs, batch=32 if batch is None else batch,
                                stated=stated, lr=lr, device=device, model=parse_arch(arch),
                                resume=resume, max_minutes=max_minutes, time_budget=time_budget, threads=threads, compile=compile_model,
                                fuse_loss=fuse_loss, teacher_model=teacher_model, distill=distill, init=init,
                                teacher_views=teacher_views, teacher_cache=teacher_cache, augment=parse_arch(aug, "--aug"))
            check_options(opts)  # before a pack is loaded or built
            if compile_model and not str(device).startswith("cuda"):
                say("note: --compile is meant for CUDA; on the CPU compiling takes minutes and the steps may be slower")
            if pack_path is not None and res != 192:
                say("note: --res sets the crops of a pack built from --data; --pack's are made already: ignored here")
            if pack_path is not None and data:
                say("note: --pack is trained on as it is; --data (for a pack built on the fly) is ignored here")
            building = [o for o, given in (("--teacher", teacher), ("--cache", cache)) if given is not None]
            if pack_path is not None and building:  # (they build a pack from --data, as --res does)
                say(f"note: {' and '.join(building)} {'serve' if len(building) > 1 else 'serves'} a pack built from "
                    f"--data; --pack's are made already: ignored here")
            unused = [o for o, given in (("--teacher-views", teacher_views != 8), ("--distill", distill != 1.0),
                                         ("--teacher-cache", teacher_cache is not None)) if given]
            if unused and not teacher_model and not resume:  # (a resumed run keeps its own teacher, said below)
                say(f"note: {', '.join(unused)} {'tune' if len(unused) > 1 else 'tunes'} distillation, which "
                    f"--teacher-model turns on: ignored here")
            if resume and not (out_dir / "last.pt").is_file():
                say(f"note: nothing to resume in {out_dir} (no last.pt): starting from the beginning")
            pk = load_pack(pack_path, data, teacher, cache, res, log=say)
            trainer = make_trainer(pk, opts, log=say)
            held.callback(trainer.release)  # (the run folder's lock: in-process callers train into it again)
        err.print(f"{model}{' ' + str(trainer.model.config) if model != 'hybrid' else ''} on {device}: "
                  f"{len(trainer.train_idx)} training faces, {len(trainer.val_idx)} held out"
                  + (f", distilling {trainer.opts.teacher_model}" if trainer.opts.teacher_model and trainer.opts.distill > 0
                     else ""))
        cols = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn()]
        stopped = False
        there = {name for name in (*RUN_FILES, "log.json") if (out_dir / name).exists()}

        def drop_unsaved() -> None:
            """What this run wrote before its first last.pt (best.pt, logs): a folder holding them
            would refuse both a new run and --resume. Files that were there before are kept."""
            if not (out_dir / "last.pt").is_file():
                for name in (*RUN_FILES, "log.json"):
                    if name not in there:
                        (out_dir / name).unlink(missing_ok=True)

        with Progress(*cols, console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("train", total=1, epoch=0, loss=0.0)

            def progress(epoch, step, steps, loss):
                bar.update(task, completed=step, total=steps, epoch=epoch + 1, loss=loss)

            try:
                summary = trainer.fit(progress)
            except KeyboardInterrupt:
                stopped = True
            except TrainingFailed as e:
                bar.stop()
                drop_unsaved()
                fail(str(e), 1)
            except OSError as e:  # a full disk while saving: what was saved before is complete
                bar.stop()
                kept = f"the last saved epoch is in {out_dir / 'last.pt'}; free space and continue with --resume" \
                    if (out_dir / "last.pt").is_file() else "nothing was saved"
                drop_unsaved()
                fail(f"cannot write in {out_dir}: {_write_failure(e, out_dir)}; {kept}", 1)
            except BaseException:  # (out of memory, anything unforeseen: the same, then said as it is)
                drop_unsaved()
                raise
        if stopped and not (out_dir / "last.pt").is_file():
            drop_unsaved()
            exit_interrupted("interrupted before the first epoch finished: no epoch was saved")
        if stopped:
            exit_interrupted(f"interrupted: the last finished epoch is saved in {out_dir / 'last.pt'}; continue with --resume")
        try:
            onnx_path, pt_path = trainer.export_best()
        except KeyboardInterrupt:  # (the export's temporary files are gone; the run itself is whole)
            exit_interrupted(f"interrupted while exporting: the training is complete ({out_dir / 'best.pt'}); the same "
                             f"command with --resume exports it")
        except TrainingFailed as e:
            fail(str(e), 1)
        except OSError as e:
            fail(f"cannot export the best checkpoint in {out_dir}: {e.strerror or e}; the run is complete, so "
                 f"'facemark export {out_dir} --out DIR' can export it elsewhere", 1)
        best = summary["best_val_nme"]
        what = f"best val NME {best:.3f} %" if math.isfinite(best) else "no face held out, so the last epoch's weights"
        n = summary["epochs"]
        err.print(f"{what} after {n} epoch{'' if n == 1 else 's'} -> {plain(onnx_path)}, {plain(pt_path)}")


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="A run's best.pt / model.pt (or a run directory)."),
    out_arg: str = typer.Option(..., "--out", metavar="DIR", help="Directory for NAME.onnx and NAME.pt (weights/ ships them)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name (default: its family)."),
):
    """Export a checkpoint to ONNX (decode included, fp16 storage) and a half-precision torch state."""
    out_dir = _folder_option(out_arg, "it receives NAME.onnx and NAME.pt (--name sets NAME)")
    _need_torch("export")
    from .training.export import export_checkpoint

    with usage_errors(), no_empty_folder(out_dir):
        before = {p.name for p in out_dir.glob("*.*")} if out_dir.is_dir() else set()
        onnx_path, pt_path = export_checkpoint(checkpoint, out_dir, name)
    replaced = [p.name for p in (onnx_path, pt_path) if p.name in before]
    err.print(f"wrote {plain(onnx_path)} and {plain(pt_path)}"
              + (f" (replacing the {' and '.join(replaced)} there)" if replaced else ""))
    from .backends import SHIPPED, weights_dir, weights_label

    into_package = os.path.realpath(out_dir) == os.path.realpath(weights_dir())
    if into_package and onnx_path.stem in SHIPPED and (label := weights_label(onnx_path.stem, onnx_path)) != onnx_path.stem:
        # (the README's retraining, over the shipped ones: what results will say, and how to undo it)
        say(f"note: these are not the {onnx_path.stem} weights facemark ships: results of them say \"model\": "
            f"\"{label}\", so a resumed run redoes what the shipped ones wrote (git checkout weights/ in a clone, "
            f"or a reinstall, brings those back)")


try:  # Typer >= 0.2x vendors its own Click (a separately installed click is another class tree)
    from typer import _click as click
except ImportError:  # pragma: no cover - older Typer releases use the click package
    import click


def _in_an_import(e: BaseException) -> bool:
    """Whether an error came from within an import (its traceback passes through importlib): where
    a signal's KeyboardInterrupt can come out as another error. Elsewhere, an error after a signal
    is still a bug, and shown as one."""
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        tb = tb.tb_next
    return False


def _from_ctrl_c(e: BaseException) -> bool:
    """An error that a Ctrl-C caused, e.g. onnxruntime's ImportError when its import is interrupted."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


_SAID_INTERRUPTED: list[bool] = []
# Signals that reached this process's handler. A KeyboardInterrupt raised inside an import's
# error handling can come out as another error, with no trace of it (a TypeError from within
# ssl's "from _ssl import RAND_egd", seen): such an error from an import, after a signal, is the signal's.
_SIGNALLED: list[int] = []


def exit_interrupted(message: str) -> NoReturn:
    """Exit 130 (143 after SIGTERM, 129 after SIGHUP: ``errors.stop_code``) with a line saying what
    state the outputs are in."""
    try:
        err.print(message)
    except OSError:  # (a closed terminal, SIGHUP's: the outputs are in that state all the same)
        pass
    _SAID_INTERRUPTED.append(True)
    raise typer.Exit(stop_code())


def _ray_alone(args: list[str]) -> list[str]:
    """``detect --ray`` given no address is ``--ray local``: Click's options take a value or none,
    not either. An address is ``local``, ``auto`` or HOST:PORT; a file, folder or glob after it
    (``detect --ray photos/``) is an input, not one (a port alone, ``6379``, is a wrong address, said
    as such). A ``--ray`` that is another option's value (``--out --ray``) is left alone."""
    if not args or args[0] != "detect" or "--ray" not in args:
        return args
    takes_value = {o for p in typer.main.get_command(app).commands["detect"].params
                   if getattr(p, "param_type_name", "") == "option" and not getattr(p, "is_flag", False) for o in p.opts}
    out = []
    for i, a in enumerate(args):
        out.append(a)
        if a == "--":
            return out + args[i + 1:]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a == "--ray" and args[i - 1] not in takes_value and \
                (nxt is None or nxt.startswith("-") or (nxt not in ("local", "auto") and ":" not in nxt
                                                        and (os.path.exists(nxt) or any(c in nxt for c in "*?[")))):
            out.append("local")
    return out


def run(argv: Optional[List[str]] = None) -> None:
    """The ``facemark`` entry point. Typer does the parsing; usage errors come out as one line
    (not a box), and an argument that starts with ``-`` but names an existing file gets advice
    instead of Click's "No such option"."""
    args = _ray_alone(sys.argv[1:] if argv is None else list(argv))
    if not args:
        args = ["--help"]
    for a in args:
        if a == "--":
            break
        if a.startswith("-") and len(a) > 1 and os.path.lexists(a) and not _is_option(args, a):
            fail_now(f"{a} is a file name that looks like an option: write ./{a} or put -- before it")
    import signal

    def on_sigterm(signum, frame):  # a polite kill is Ctrl-C: finish the file at hand, leave nothing half-done
        from .errors import stopped

        stopped(signum)  # (its exit status; a closed terminal: its writes would fail)
        _SIGNALLED.append(signum)
        raise KeyboardInterrupt

    from .errors import SEEN

    _SAID_INTERRUPTED.clear()
    _SIGNALLED.clear()
    SEEN.clear()
    before_int = signal.getsignal(signal.SIGINT)  # (a command's end ignores both: the caller's come back after it)
    before = signal.signal(signal.SIGTERM, on_sigterm)
    if before_int is signal.default_int_handler:  # (remembered: see _SIGNALLED)
        signal.signal(signal.SIGINT, on_sigterm)
    hup = getattr(signal, "SIGHUP", None)  # a closed terminal or dropped ssh: as a kill (under nohup: ignored still)
    before_hup = signal.getsignal(hup) if hup is not None else None
    if before_hup is signal.SIG_DFL:
        signal.signal(hup, on_sigterm)
    try:
        _run_app(args)
    finally:
        if before_hup is not None:  # (a caller's own handler too: a command's end ignores it)
            signal.signal(hup, before_hup)
        signal.signal(signal.SIGTERM, before)
        if before_int is not None:
            signal.signal(signal.SIGINT, before_int)


def _stdout_gone() -> None:
    """Standard output cannot take more: what is buffered for it is dropped, so Python's flush at
    exit does not fail again (with a message of its own)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def _plain_help(command: click.Command) -> click.Command:
    """Help where a flag stands bare and an argument or value is named in capitals. Recent Typer
    prints Python types beside them (``--annotate <bool>``, ``{inputs}... <list[str]>``, ``--out
    <str>``), which reads as if a flag took a value and says nothing of what a value is: a value
    is named as its option is (``--format FORMAT``) unless given a name (``--out DIR``), a whole
    number ``N``, any number ``NUMBER``."""
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)
    for param in command.get_params(click.Context(command)):
        if param.param_type_name == "argument":
            param.metavar = param.metavar or param.name.upper()
            if hasattr(param, "_usage_display_name"):  # Typer >= 0.2x writes a required one as {INPUTS}
                bare = param.metavar + ("..." if param.nargs != 1 else "")
                param._usage_display_name = (lambda b=bare: b) if param.required else (lambda b=bare: f"[{b}]")
        elif not getattr(param, "is_flag", False):
            if param.metavar is None and "--help" not in param.opts:
                kind = param.bare_type() if callable(getattr(param, "bare_type", None)) else ""
                kind = kind[5:-1] if kind.startswith("list[") else kind
                long = max(param.opts, key=len).lstrip("-")
                param.metavar = "N" if kind == "int" else "NUMBER" if kind == "float" else long.upper()
            continue  # (its type column shows the metavar)
        elif param.metavar is None:
            param.metavar = ""
        if hasattr(param, "display_type_rich"):  # Typer >= 0.2x: the type column
            param.display_type_rich = lambda ctx: None
    return command


def _no_empty_paths(command: click.Command) -> click.Command:
    """An empty string given for a path is a usage error: Typer makes it ``Path("")``, which is the
    current folder (``--boxes ""`` read every output found below it)."""
    for sub in getattr(command, "commands", {}).values():
        _no_empty_paths(sub)
    click_path = getattr(click, "Path", None)  # (Typer before 0.2x: Click's own Path type; later: a type descriptor)
    for param in command.params:
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        if annotation is not Path and not (click_path and isinstance(getattr(param, "type", None), click_path)):
            continue

        def checked(ctx: click.Context, value: object, _inner=param.process_value, _param=param) -> object:
            given = value if isinstance(value, (tuple, list)) else (value,)
            if any(isinstance(v, str) and not v.strip() for v in given):
                name = _param.opts[0] if _param.param_type_name == "option" else _param.name.upper()
                raise click.exceptions.UsageError(f"{name} is an empty string: give a path", ctx)
            return _inner(ctx, value)

        param.process_value = checked
    return command


def _run_app(args: list[str]) -> None:
    from .errors import DamagedInstall

    try:
        command = _no_empty_paths(_plain_help(typer.main.get_command(app)))
        code = command(args=args, prog_name="facemark", standalone_mode=False)
    except click.exceptions.NoSuchOption as e:
        # Click reads -photo.jpg as the flags -p -h -o...: the hint names the whole argument
        whole = next((a for a in args if a.startswith(e.option_name) and "=" not in a), e.option_name)
        hint = f" (a file? write ./{whole} or put -- before it)" if not e.possibilities else ""
        if e.option_name == "-h":
            hint = " (use --help)"
        elif len(e.option_name) == 2 and e.ctx is not None:  # -o: facemark has no short options
            longs = sorted(next(o for o in p.opts if o.startswith(f"-{e.option_name}"))  # (one spelling each)
                           for p in e.ctx.command.params
                           if any(o.startswith(f"-{e.option_name}") for o in getattr(p, "opts", ())) and "--help" not in p.opts)
            said = f"facemark's options are long: {' or '.join(longs[:3])}?" if longs else ""
            hint = f" ({said})" if said and whole == e.option_name else \
                f" ({said} or a file? write ./{whole} or put -- before it)" if said and not e.possibilities else hint
        fail_now(e.format_message() + hint)
    except click.exceptions.UsageError as e:
        sub = e.ctx.info_name if e.ctx is not None and e.ctx.info_name != "facemark" else ""
        if not sub and args:  # an option's missing value is raised from the group's context
            group = typer.main.get_command(app)
            sub = args[0] if args[0] in group.list_commands(click.Context(group)) else ""
        fail_now(f"{e.format_message()} (see: facemark{' ' + sub if sub else ''} --help)")
    except click.exceptions.ClickException as e:
        fail_now(e.format_message())
    except KeyboardInterrupt:  # a second Ctrl-C / SIGTERM while a command was already winding down
        err.print("interrupted")
        raise SystemExit(stop_code()) from None
    except BrokenPipeError:  # output piped into head and the like: not an error of ours
        sys.stderr = open(os.devnull, "w")
        raise SystemExit(0) from None
    except MemoryError as e:
        _out_of_memory(str(e))
    except DamagedInstall as e:  # (raised wherever facemark's own files are first read)
        fail_now_code(str(e), 1)
    except OSError as e:  # standard output on a full disk (/dev/full) or the like, from a table or --help
        if e.filename is not None:  # (a file's error names the file: not standard output's)
            fail_now_code(f"{e.filename}: {e.strerror or e}", 1)
        _stdout_gone()
        fail_now_code(f"cannot write to standard output: {e.strerror or e}", 1)
    except Exception as e:  # noqa: BLE001 - Abort (Ctrl-C at a prompt) and its kin, by name
        if isinstance(e, ImportError) and "failed to map segment" in str(e):  # a library's, under ulimit -v
            _out_of_memory("")
        from .errors import out_of_memory

        if out_of_memory(e):  # onnxruntime's arena or a thread that could not start, mid-run
            _out_of_memory("a thread could not start (memory, or a limit on threads or processes)"
                           if "thread" in str(e) else "")
        if type(e).__name__ != "Abort" and not _from_ctrl_c(e) and not (_SIGNALLED and _in_an_import(e)):
            raise
        err.print("interrupted")
        raise SystemExit(stop_code()) from None
    if code == 130 and not _SAID_INTERRUPTED:  # Typer turns a Ctrl-C outside our handlers into a silent 130
        err.print("interrupted")
        code = stop_code()
    raise SystemExit(code if isinstance(code, int) else 0)


def _out_of_memory(detail: str) -> None:
    """Written plainly: there may be no memory left to format it richly."""
    try:
        os.write(2, f"error: out of memory{': ' + detail if detail else ''}\n".encode(errors="replace"))
    except OSError:
        pass
    raise SystemExit(1) from None


def fail_now(message: str) -> NoReturn:
    """``fail`` outside a command (while the arguments are parsed): Typer's Exit would not end it."""
    fail_now_code(message, 2)


def fail_now_code(message: str, code: int) -> NoReturn:
    _error_line(message)
    raise SystemExit(code)


def _is_option(args: list[str], a: str) -> bool:
    """Whether ``a`` is one of the chosen command's own options (then it is meant as one)."""
    cmd = typer.main.get_command(app)
    sub = cmd.commands.get(args[0]) if args and hasattr(cmd, "commands") else None
    params = list(getattr(sub, "params", [])) + list(cmd.params)
    names = {o for p in params for o in list(getattr(p, "opts", [])) + list(getattr(p, "secondary_opts", []))}
    return a.split("=", 1)[0] in names or a in ("--help", "-h")

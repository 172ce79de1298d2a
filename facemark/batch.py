"""``facemark detect`` over many files: read, detect, one model batch per group of images, write.

Callable from Python with the CLI's behaviour: ``detect_files(inputs, fl, out_dir=...)``. Every
bad input is one log line naming it and is skipped; outputs are written under a temporary name
and renamed, so an output that exists is complete; a full or read-only disk stops the run at
once (everything written so far stays valid) instead of failing every remaining image.
"""
from __future__ import annotations

import errno
import io
import json
import os
import signal
import stat
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .annotate import STYLES, draw
from .backends import ModelError
from .boxes import BoxError, GivenBoxes, check_inside, read_boxes
from .detector import RetinaFace, YuNet
from .errors import (SEEN, STOP_SIGNALS, OutputError, StopRun, UsageError, memory_ran_out, no_files_left,
                     out_of_memory, stopped)
from .icc import drawn_as, embedded, has_mark, profile_of, with_mark
from .imageio import (IMAGE_EXTS, ImageError, atomic_write, bgra_as_shown, broken_link, encode_image, read_image,
                      remove_stale_temps, too_long_name, within, write_whole)
from .inputs import (InputImage, LeftOut, collisions, expand, missing_roots, output_names, recorded_path,
                     refuse_when_each_failed, shown_name, utf8_name)
from .landmarker import FaceLandmarker
from .notes import SMALL_SIDE, looks_turned, may_miss_small
from .quiet import to_stderr
from .results import SCHEMA, document, dumps
from .shards import DEFAULT_SHARD_SIZE, NotRegular, open_regular
from .workers import (WorkerDied, WorkerNeverStarted, Workers, WorkersUnavailable, auto_workers, chunk_sizes,
                      run_workers, stop_asked, threads_each)

ANNOTATED_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
JPEG_EXTS = (".jpe", ".jfif")  # JPEG under names OpenCV's encoder does not take: drawn as .jpg


@dataclass
class BatchSummary:
    images: int = 0  # images the run was asked to process
    missing: int = 0  # arguments (or folders) that gave nothing
    failures: int = 0  # inputs that failed (missing ones included)
    faces: int = 0
    no_face: int = 0  # images processed with no face found
    shrunk_small: int = 0  # images searched shrunk that found no face, or only faces near the least it finds
    under_min_face: int = 0  # images with no face whose short side is under --min-face (none could be found)
    looks_turned: int = 0  # images with a face that looks turned a quarter-turn or more (without --turned)
    box_alone: int = 0  # images with a given box around which no face was found (cropped from the box alone)
    written: int = 0  # images whose outputs were written (or printed)
    skipped: int = 0  # images already done by an earlier run (resume), or by an interrupted --redo
    out_dir: Path | None = None
    redo_continued: bool = False  # skipped ones were done by an interrupted --redo this run continued
    redo_pending: bool = False  # an interrupted --redo's mark is in --out: --redo continues it


@dataclass
class Plan:
    """What a run will read and where it will write, checked before any model loads."""

    images: list[InputImage]
    missing: list[str]
    out_dir: Path | None
    annotate: bool
    batch_images: int
    names: list = field(default_factory=list)
    unwritable: OSError | None = None  # why --out (existing) cannot take a file: an error once something is to be written


def plan_inputs(inputs: list[str], out_dir: Path | None = None, annotate: bool = False, batch_images: int = 16,
                log: Callable[[str], None] = to_stderr) -> Plan:
    """Expand ``inputs`` (files, directories, globs) and check the request; each argument that
    gives nothing is one ``log`` line. Raises ``UsageError`` if nothing can run, or if two inputs
    would write the same output (before anything is written)."""
    if isinstance(inputs, (str, bytes, os.PathLike)) or not hasattr(inputs, "__iter__"):
        raise TypeError(f"inputs must be a list of files, folders or globs (wrap a single one in a list), "
                        f"not {type(inputs).__name__}")
    inputs = list(inputs)  # (a generator is read once)
    for a in inputs:
        if not isinstance(a, (str, os.PathLike)):
            raise TypeError(f"inputs must be paths (str or Path) of files, folders or globs, not {type(a).__name__}")
    if isinstance(batch_images, bool) or not isinstance(batch_images, int):
        raise TypeError(f"batch_images must be an integer, not {type(batch_images).__name__}")
    if any(not str(a).strip() for a in inputs):
        raise UsageError("an input is an empty string; name a file, folder or glob (use . for this folder)")
    if out_dir is not None and not str(out_dir).strip():
        raise UsageError("--out is an empty string; name a folder (use . for this folder)")
    if not inputs:
        raise UsageError("no inputs: name image files, folders or globs")
    if batch_images < 1:  # (before the inputs are listed: their notes are no use with the run refused)
        raise UsageError("--batch must be at least 1")
    left_out = LeftOut()
    images, problems = expand([str(a) for a in inputs], left_out)
    for line in left_out.notes():
        log(line)
    problems = list(dict.fromkeys(problems))  # (an input given twice is one problem: ``- -``)
    if not images:
        refuse_when_each_failed(problems, inputs, log)
    for m in problems:
        log(f"error: {m}")
    if not images:
        shown = ", ".join(str(a) for a in inputs[:3]) + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
        raise UsageError(f"no images to process in {shown} (images are found by their extension: "
                         f"{', '.join(e for e in ('.jpg', '.png', '.webp', '.tif', '.bmp') if e in IMAGE_EXTS)} and others)")
    if annotate and out_dir is None:
        raise UsageError("--annotate writes images: give --out DIR")
    names = output_names(images, missing_roots([str(a) for a in inputs]))  # (the same names once they appear)
    if out_dir is not None:
        out_dir = Path(out_dir)
        try:
            if out_dir.exists() and not out_dir.is_dir():
                raise UsageError(f"--out {out_dir} exists and is not a directory")
            if long := too_long_name(out_dir):
                raise UsageError(f"--out {long}")
        except OSError as e:  # a name too long, a folder that cannot be searched
            raise UsageError(f"--out {out_dir}: {e.strerror or e}") from None
        clash = collisions(names)
        if clash:
            a, b = clash[0]
            raise UsageError(f"{images[a].path} and {images[b].path} would both write {out_dir / names[a]}.json "
                             f"({len(clash)} such clash(es)); run them with different --out folders")
        _output_dirs_clash(images, names, annotate)
        try:
            _check_writable(out_dir)
        except OSError as e:  # (an existing --out may hold every output already: a rerun then has nothing to write)
            if not out_dir.is_dir():
                raise cannot_write(out_dir, e) from None
            return Plan(images, problems, out_dir, annotate, batch_images, names, unwritable=e)
    return Plan(images, problems, out_dir, annotate, batch_images, names)


def _output_dirs_clash(images: list[InputImage], names: list, annotate: bool) -> None:
    """An output file that would have to be a folder too (``x.jpg`` beside a folder ``x.jpg.json/``)."""
    folders = {p.as_posix() for n in names for p in n.parents}
    for im, n in zip(images, names):
        mine = [f"{n}.json"] + ([f"{n}.annotated{im.path.suffix}", f"{n}.annotated.png"] if annotate else [])
        hit = next((m for m in mine if m in folders), None)
        if hit:
            raise UsageError(f"{im.path}: its output {hit} is also a folder of other inputs' outputs; "
                             f"rename one of them or run them separately")


def _check_writable(out_dir: Path) -> None:
    """Prove a file can be created in ``--out`` (or, where it does not exist yet, in the folder
    that would hold it) before any image is read; the folder itself is made only once every
    option has been checked, so a usage error leaves nothing behind. Raises the ``OSError``."""
    from .outputs import check_can_create

    check_can_create(out_dir.absolute(), "--out", out_dir)  # (absolute: the working folder may have gone)


def cannot_write(out_dir: Path, e: OSError) -> Exception:
    """A full disk (or quota) is the disk's state, exit 1 (``OutputError``), as when it fills
    mid-run; a read-only or forbidden folder is a usage error (another --out), exit 2."""
    why = f"--out {out_dir} cannot be written: {e.strerror or e}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"{why}; nothing was written")
    return UsageError(why)


def _boxes_for(boxes: GivenBoxes, im: InputImage, name, source: Path | str | None, image) -> list:
    """The given boxes of one image, each checked against it (a box wholly outside the image is
    an error of that image, not landmarks in empty space)."""
    for key, real in ((str(im.path), True), (name.as_posix(), False)):  # (the output name is no path from here)
        k = boxes.entry(key, real, str(im.path))
        if k is not None:
            return check_inside(boxes.boxes_of(k), image.shape[1], image.shape[0], "box")
    raise ImageError(f"{im.path}: no entry in {source or 'the boxes'}{boxes.missing(str(im.path))}")


@dataclass
class Job:
    """What every chunk of a run needs besides the landmarker; picklable for worker processes."""

    out_dir: Path | None
    annotate: bool
    fmt: str  # json (one file per image) | jsonl | parquet (shards) | stdout
    boxes_source: str | None
    style: str = "contours"
    show_box: bool = True
    show_score: bool = True
    input_paths: frozenset = frozenset()


@dataclass
class Outcome:
    """One image's result, reported back to the main process in order."""

    k: int
    ok: bool
    message: str = ""
    faces: int = 0
    payload: object = None  # the JSON text (stdout) or the row (shards); None when written as a file
    shrunk_small: bool = False  # smaller faces may have gone unseen (see may_miss_small)
    under_min_face: bool = False  # no face, and the image is smaller than min_face: none could be found
    looks_turned: bool = False  # a face looks turned sideways or upside down (see looks_turned)
    box_alone: bool = False  # a given box had no face around it the detector could find (Face.found)
    small: bool = False  # no face in a small image searched at its own size (see _small_unfound)


def _stamp(path: Path, now: float | None = None) -> int | None:
    """When an input last changed, in ns (None: gone or unreadable): compared with its output's
    time on resume, and before and after a read (``_write``)."""
    try:
        link = os.lstat(path)
        st = os.stat(path) if stat.S_ISLNK(link.st_mode) else link  # (one call for a plain file)
    except OSError:
        return None
    # A link pointed elsewhere is a changed input too, whatever its new target's times (a
    # checkout rewrites only the links it changes).
    return _changed_ns(st, now) if st is link else max(_changed_ns(st, now), _changed_ns(link, now))


def _changed_ns(s: os.stat_result, now: float | None) -> int:
    """POSIX ctime is when the file last changed on this machine: a replacement (`cp -p`
    included) moves it on, an archive's or another clock's file times do not. Windows' creation
    time is no such time, so there the modification time counts unless it lies in the future."""
    if os.name == "posix":
        return s.st_ctime_ns
    born = getattr(s, "st_birthtime_ns", s.st_ctime_ns)  # (Python 3.12 on; st_ctime's meaning changes there)
    return s.st_mtime_ns if s.st_mtime <= (now or time.time()) else born


class _Stopped(Exception):
    """The run is ending (``stop_asked``): this chunk is left for the next run."""


def _input_at(stream, images: list[InputImage]) -> Path | None:
    """The input that ``stream`` writes into (``facemark detect a.jpg >> a.jpg``), if any: only a
    regular file can be one, so a pipe or a terminal costs no look at the inputs."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    for im in images:
        try:
            if os.path.samestat(st, os.stat(im.path)):
                return im.path
        except (OSError, ValueError):
            pass
    return None


def _load(chunk: list) -> tuple[list, list]:
    """Read and decode a chunk (in a thread, ahead of the model): (k, im, name, image or error, its
    change time before the read, ``_stamp``: its output is written only if that still holds); and
    the chunk's rest, left for the next batch once the decoded images hold ``BATCH_BYTES`` (as
    ``detect_batch`` holds them): 16 photos of 12000x9000 held 5.2 GB a batch, and the reader's
    next as much again."""
    out, held = [], 0
    for i, (k, im, name) in enumerate(chunk):
        if held >= FaceLandmarker.BATCH_BYTES:
            return out, chunk[i:]
        if stop_asked():
            raise _Stopped
        read_at = _stamp(im.path)
        try:
            out.append((k, im, name, read_image(im.path), read_at))
            held += out[-1][3].nbytes
        except (ImageError, StopRun) as e:
            out.append((k, im, name, e, read_at))
        except MemoryError:
            out.append((k, im, name, ImageError(f"{im.path}: out of memory reading it"), read_at))
    return out, []


def work_on_chunk(job: Job, fl: FaceLandmarker, chunk: list) -> list["Outcome"]:
    """A chunk read, detected and written (or returned), a batch at a time: what each worker does."""
    outcomes = []
    while chunk:
        loaded, chunk = _load(chunk)
        outcomes += _process(job, fl, loaded)
    return outcomes


def _annotated_path(job: Job, im: InputImage, name) -> Path:
    suffix = im.path.suffix.lower()
    ext = im.path.suffix if suffix in ANNOTATED_EXTS else ".jpg" if suffix in JPEG_EXTS else ".png"
    return job.out_dir / f"{name}.annotated{ext}"


def _write(job: Job, im: InputImage, name, image, fs, text: str | None, read_at: int | None) -> None:
    targets = ([job.out_dir / f"{name}.json"] if text is not None else [])
    if job.annotate:
        targets.append(_annotated_path(job, im, name))
    for target in targets:
        if len(os.fsencode(target.name)) > 255:  # the usual limit of a file name; checked before either is written
            raise ImageError(f"{im.path}: its output name {target.name[:40]}... would be too long for a file "
                             f"system ({len(os.fsencode(target.name))} bytes, 255 at most); rename the input")
        if os.path.realpath(target) in job.input_paths:
            raise ImageError(f"{im.path}: its output {target} is one of the inputs; not overwritten")
        if target.is_symlink() and not within(os.path.realpath(target), os.path.realpath(job.out_dir)):
            # (an empty file passes for a power cut's output: a link planted at the name to one
            # outside --out, a config file emptied, was written through and replaced)
            raise ImageError(f"{im.path}: its output {target} is a symbolic link out of --out (to "
                             f"{os.path.realpath(target)}); not written through")
    there = text is not None and targets[0].exists()
    doc = _document(targets[0]) if there else None
    if there and doc is None and not _written_by_facemark(targets[0]):  # e.g. a photo service's sidecar
        raise ImageError(f"{im.path}: its output {targets[0]} exists and is not a facemark result (another "
                         f"program's file?); not overwritten: give --out a folder of its own")
    other = _another_image(doc.get("image"), im) if doc is not None else None
    if other is not None:  # e.g. two folders' IMG_0001.jpg run into one --out, one command after the other
        raise ImageError(f"{im.path}: its output {targets[0]} holds the result of another image, {other}; not "
                         f"overwritten: give this folder its own --out")
    if job.annotate and _an_earlier_input(targets[-1]):  # (named as an input once: its own output says so)
        raise ImageError(f"{im.path}: its drawing's name {targets[-1]} is a photo an earlier run took as an input "
                         f"({targets[-1].name}.json records it); not overwritten: give --out a folder of its own")
    if job.annotate and (refused := _not_ours_to_redraw(targets[-1], job, doc is not None)):
        raise ImageError(f"{im.path}: its drawing's name {targets[-1]} {refused}; not overwritten")
    drawn = None
    if job.annotate:  # encoded before anything is written: an image that cannot be encoded leaves no half pair
        try:
            if targets[-1].suffix.lower() in (".png", ".webp") and im.path.suffix.lower() in (".png", ".webp", ".tif", ".tiff"):
                bgra = bgra_as_shown(im.path, image)  # a transparent PNG stays transparent where nothing is drawn
                image = image if bgra is None else bgra
            drawn = embedded(encode_image(targets[-1].suffix, draw(image, fs, style=job.style, box=job.show_box,
                                                                 score=job.show_score)), profile_of(im.path))
            drawn = with_mark(drawn, drawing_style(job.style, job.show_box, job.show_score))
        except ImageError as e:
            raise ImageError(f"{im.path}: cannot draw its annotated image: {e}") from None
        except (MemoryError, cv2.error) as e:  # (this image's copy for drawing: the next, smaller ones still fit)
            if not out_of_memory(e):
                raise
            raise ImageError(f"{im.path}: not enough memory to draw its annotated image ({image.shape[1]}x"
                             f"{image.shape[0]} pixels); its JSON was not written either") from None
    def checked(data: bytes):
        """Written, then renamed into place only if the image is still the one that was read: one
        replaced meanwhile (a folder still being filled) would otherwise get the old image's points
        under a newer date, which a resumed run takes as done. After the rename, a change dates the
        image after its output, and the next run does it again."""
        def write(tmp: str) -> None:
            Path(tmp).write_bytes(data)
            if read_at is not None and _stamp(im.path) != read_at:
                raise ImageError(f"{im.path}: the file changed while it was being processed; not written "
                                 f"(the next run does it)")
        return write

    current = targets[0]
    try:
        if text is not None:
            atomic_write(current, checked((text + "\n").encode()), root=job.out_dir)
        if drawn is not None:
            current = targets[-1]
            atomic_write(current, checked(drawn), root=job.out_dir)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):  # every later output fails the same
            raise OutputError(f"cannot write {current}: {e.strerror or e}") from None  # (the system's words, as for shards)
        raise no_files_left(current, e) or ImageError(f"{im.path}: cannot write {current}: {e.strerror or e}") from None


def _recorded(job: Job, im: InputImage) -> str:
    """The image path an output records: as typed on stdout; absolute in files and shard rows, so
    an output says which image it is of from any folder (two folders' ``IMG_0001.jpg`` run into one
    --out from different places are told apart, and a resume from elsewhere finds its rows)."""
    return str(im.path) if job.fmt == "stdout" else recorded_path(im.path)


def _process(job: Job, fl: FaceLandmarker, loaded: list) -> list[Outcome]:
    """Detect (or look up boxes), one model batch for all faces of the chunk, write or return."""
    from .shards import row

    given = fl.detector if isinstance(fl.detector, GivenBoxes) else None
    outcomes, ready, dets = [], [], []

    def failed(k: int, im: InputImage, msg: str) -> None:  # an error row too, for the shard formats
        recorded, typed = _recorded(job, im), str(im.path)  # (the row's error names the image as its path field does)
        error = msg  # ("x.jpg: damaged", "cannot read x.jpg: Permission denied": the name where it stands)
        for lead in ("", "cannot read "):
            if msg.startswith(lead + typed):
                error = lead + recorded + msg[len(lead + typed):]
                break
        outcomes.append(Outcome(k, False, msg, payload=row(recorded, None, None, fl.model_name, error=error)))

    for k, im, name, image, read_at in loaded:
        if stop_asked():
            raise _Stopped
        if job.fmt in ("jsonl", "parquet") and utf8_name(_recorded(job, im)) is None:  # (a shard's readers need UTF-8)
            shown = shown_name(_recorded(job, im))
            msg = (f"{shown}: its name is not valid UTF-8, which a shard row cannot hold (pandas and pyarrow refuse "
                   f"the whole shard); rename it, or use --format json")
            if os.path.lexists(shown):  # its row's path, \xNN written out, names another file: the row would hide that one's
                outcomes.append(Outcome(k, False, f"{msg} (no error row written: its escaped spelling {shown} names "
                                                  f"another file, whose result it would replace)"))
            else:
                failed(k, im, msg)
            continue
        try:
            if isinstance(image, Exception):
                raise image
            d = _boxes_for(given, im, name, job.boxes_source, image) if given is not None else fl.find_faces(image)
        except (ImageError, BoxError) as e:
            failed(k, im, str(e) if str(im.path) in str(e) else f"{im.path}: {e}")
            continue
        except StopRun as e:  # k = -1: the images read before it are still done, then the run stops
            outcomes.append(Outcome(-1, False, str(e)))
            break
        except Exception as e:  # noqa: BLE001 - memory is said in each library's words (OpenCV's cv2.error)
            if not memory_ran_out(e):
                raise
            failed(k, im, f"{im.path}: out of memory searching it")
            continue
        ready.append((k, im, name, image, read_at))
        dets.append(d)
    for (k, im, name, image, read_at), fs, found in zip(ready, fl.landmarks_for([r[3] for r in ready], dets), dets):
        doc = document(_recorded(job, im), image.shape[1], image.shape[0], fl.model_name, fs)
        try:
            text = dumps(doc)
        except ValueError:
            failed(k, im, f"{im.path}: the model gave non-finite coordinates; nothing written")
            continue
        try:
            if job.fmt == "json":
                _write(job, im, name, image, fs, text, read_at)
                payload = None
            elif job.fmt == "stdout":
                payload = text
            else:
                if job.annotate:
                    _write(job, im, name, image, fs, None, read_at)
                payload = row(_recorded(job, im), image.shape[1], image.shape[0], fl.model_name, fs)
        except ImageError as e:
            failed(k, im, str(e))
            continue
        except StopRun as e:  # k = -1: writing cannot go on; reported after the images written
            outcomes.append(Outcome(-1, False, str(e)))
            break
        outcomes.append(Outcome(k, True, faces=len(fs), payload=payload, shrunk_small=may_miss_small(fl, image, fs),
                                looks_turned=looks_turned(fl, found), under_min_face=not fs and _under_min_face(fl, image),
                                box_alone=not all(f.found for f in fs), small=not fs and _small_unfound(fl, image)))
    return sorted(outcomes, key=lambda o: (o.k < 0, o.k))


def _end_notes(s: BatchSummary, first: dict[str, int], no_face: dict[str, int], plan: Plan, fl: FaceLandmarker,
               boxes, log: Callable[[str], None]) -> None:
    """What the results cannot say themselves, each note once, naming its first image."""
    def path(note: str) -> str:
        return str(plan.images[first[note]].path)

    advised = bool(s.shrunk_small or s.looks_turned or no_face["small"])
    if s.shrunk_small:
        log(f"note: {s.shrunk_small} image(s) searched shrunk to {fl.detector.max_side} px on the long side found "
            f"no face, or faces near the smallest it finds (1/16 of the long side), e.g. {path('shrunk')}: smaller "
            f"ones there go unseen; --min-face 40 finds faces down to 40 px (--min-face 20, the least, down to 20), "
            f"more slowly")
    if s.under_min_face and fl.detector.min_face is None:  # (a few px: a thumbnail of a thumbnail, an icon)
        log(f"note: {s.under_min_face} image(s) under {RetinaFace.LEAST_FACE} px on their short side found no face, "
            f"e.g. {path('under')}: no face facemark finds ({RetinaFace.LEAST_FACE} px at the least) fits in them")
    elif s.under_min_face:
        log(f"note: {s.under_min_face} image(s) smaller than --min-face ({fl.detector.min_face:g} px) on their short "
            f"side found no face, e.g. {path('under')}: --min-face is the smallest face to find, and no face that "
            f"size fits in them; a smaller --min-face (or none) searches them")
    if s.box_alone:
        log(f"note: {s.box_alone} image(s) have given boxes with no face the detector could find around them, "
            f"e.g. {path('alone')}: such a box is cropped from the box alone (its score is the box's own, 1.0 "
            f"unless the boxes file gives one), and its points may be far off")
    if s.looks_turned:
        log(f"note: {s.looks_turned} image(s) hold faces that look turned sideways or upside down, e.g. "
            f"{path('turned')}: points of faces turned a quarter-turn or more are unreliable; --turned reads them "
            f"(four detector passes per image)")
    if no_face["small"]:
        log(f"note: {no_face['small']} small image(s) (under {SMALL_SIDE} px on the short side) with no face found, "
            f"e.g. {path('small')}: faces under about {RetinaFace.NET_MIN_FACE:g} px may go unseen at such an "
            f"image's own size; --min-face 20 looks at them twice as large")
    if no_face["unexplained"] and boxes is None and not isinstance(fl.detector, GivenBoxes) \
            and (hints := unfound_hints(fl)):
        log(f"note: {no_face['unexplained']} image(s) with no face found, e.g. {path('unexplained')}: {hints}")
        advised = True
    if advised and plan.out_dir is not None:  # (a rerun with the option skipped them all, said only "already done")
        log("note: rerun into the same --out with such an option and --redo: without it the images done here are "
            "skipped")


def unfound_hints(fl) -> str:
    """What may find the faces of images where none was found, of what the run did not use:
    RetinaFace misses 3-5 % of faces turned a quarter or half way (docs/DETECT.md), and faces
    under about its least size at the scale searched (``RetinaFace.NET_MIN_FACE``)."""
    hints = []
    if not getattr(fl, "turned", False):
        hints.append("a face turned sideways or upside down (a photo without its EXIF orientation) may be found only "
                     "with --turned (four detector passes per image)")
    det = fl.detector
    if isinstance(det, RetinaFace) and det.min_face is None:
        hints.append(f"a face under about {det.NET_MIN_FACE:g} px in the image as searched (shrunk to "
                     f"{det.max_side} px on its long side when larger) may be found only with --min-face 20 (the "
                     f"image searched at twice its own size, more slowly)")
    return "; ".join(hints)


def _small_unfound(fl: FaceLandmarker, image: np.ndarray) -> bool:
    """Whether a small image (a thumbnail, a face crop) was searched at its own size: faces under
    about NET_MIN_FACE px go unseen there (the example photo at 80 px: its face is found
    only with min_face=20, which looks at it twice as large)."""
    det = fl.detector
    return isinstance(det, RetinaFace) and det.min_face is None and min(image.shape[:2]) < SMALL_SIDE


def _under_min_face(fl: FaceLandmarker, image: np.ndarray) -> bool:
    """Whether the image is smaller than the detector's ``min_face`` (without one, than the least
    face it finds) on its short side: a face of that size cannot be in it (the search shrank it
    below what the detector sees; a 2x2 image was told --min-face 20 would look closer)."""
    det = fl.detector
    return isinstance(det, RetinaFace) and (det.min_face or det.LEAST_FACE) > min(image.shape[:2])


def _document(path: Path) -> dict | None:
    """The facemark document at ``path``, or None (not there, or some other file of that name)."""
    try:
        with open_regular(path) as f:
            doc = json.loads(f.read(1 << 24))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None


def _written_by_facemark(path: Path) -> bool:
    """Whether the file at ``path`` is one facemark wrote (its documents start with their schema,
    so one damaged since still reads as facemark's, and is replaced); gone or unreadable: yes
    (writing there will say what is wrong). An empty file (or one of NULs and blanks up to 1 MB)
    holds nothing to lose: a power cut can leave one where a rename had reached the disk before
    the data."""
    try:
        with open_regular(path) as f:
            head = f.read(64)
            if not head.strip(b" \t\r\n\x00"):  # nothing but blanks or NULs (a power cut's leftover, on XFS)?
                return not f.read(1 << 20).strip(b" \t\r\n\x00") and not f.read(1)
    except NotRegular:  # (a FIFO of that name: another program's)
        return False
    except OSError:
        return True
    return head.lstrip().startswith(b'{"schema": "facemark/')


def _named_otherwise(plan: Plan, out_dir: Path, most: int = 200) -> tuple[Path, int] | None:
    """(an output in ``out_dir``, the index of one of this run's images) where an earlier run wrote that image's
    result under another name (``detect a --out o``, then ``detect a b --out o``: the common folder
    moved up, so ``o/x.jpg.json`` became ``o/a/x.jpg.json``). Looks at ``most`` JSON files at most,
    in ``out_dir`` and the folders in it."""
    mine = {str(n) + ".json" for n in plan.names}
    images: dict[str, int] | None = None
    seen = 0
    folders = [out_dir]
    while folders and seen < most:
        folder = folders.pop(0)
        try:
            entries = list(os.scandir(folder))[:most]
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            if folder == out_dir and e.is_dir(follow_symlinks=False):
                folders.append(Path(e.path))
                continue
            if not e.name.endswith(".json") or os.path.relpath(e.path, out_dir).replace(os.sep, "/") in mine:
                continue
            seen += 1
            doc = _document(Path(e.path))
            if doc is None or not isinstance(doc.get("image"), str):
                continue
            if images is None:
                images = {os.path.abspath(im.path): k for k, im in enumerate(plan.images)}
            if doc["image"] in images:
                return Path(e.path), images[doc["image"]]
            if seen >= most:
                break
    return None


def _an_earlier_input(drawing: Path) -> bool:
    """Whether a file at a drawing's name was an input of an earlier run into this folder (named
    on the command line: a folder's search leaves such names out), which its own output beside it
    records: a photo, not a drawing to redraw."""
    if not drawing.exists():
        return False
    doc = _document(drawing.with_name(drawing.name + ".json"))
    recorded = doc.get("image") if doc is not None else None
    try:
        return isinstance(recorded, str) and os.path.samefile(recorded, drawing)
    except (OSError, ValueError):
        return False


def _not_ours_to_redraw(drawing: Path, job: Job, beside_a_result: bool) -> str | None:
    """Why no drawing may be written at ``drawing``, or None: nothing there, facemark's own
    drawing (tagged so: ``icc.with_mark``), or an empty file (a power cut's leftover). A JPEG or
    PNG there without the tag is someone's file, or a drawing of a version before the tag (which
    cannot be told apart: a user's own copy of the photo may lie beside its result too). WebP and
    BMP drawings carry no tag: beside shards (no result file per image) they are taken as
    facemark's, as before; beside JSON results, when that image's result is facemark's."""
    try:
        st = os.stat(drawing)
    except OSError:  # (nothing there, or a link that leads nowhere: the link is replaced, nothing lost)
        return None
    if stat.S_ISDIR(st.st_mode):
        return "is a folder"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_size == 0 or has_mark(drawing):
        return None
    if drawing.suffix.lower() in (".webp", ".bmp") and (job.fmt != "json" or beside_a_result):
        return None
    return ("holds a file that is not one of facemark's drawings (another program's or yours; facemark's "
            "drawings from before 2026-12-02 carry no tag either: delete those to draw them again)")


def _another_image(recorded, im: InputImage) -> str | None:
    """``recorded`` (an output's image) if it names another file that exists now, whose result
    must not be replaced; None for this image however spelled, and for a path that leads nowhere
    from here (its folder moved or deleted since: nothing is lost by replacing that result)."""
    if not isinstance(recorded, str) or _spelled_as(recorded, im):
        return None
    try:
        return recorded if os.path.exists(recorded) and not os.path.samefile(recorded, im.path) else None
    except (OSError, ValueError):
        return None


def _spelled_as(recorded: str, im: InputImage) -> bool:
    """``recorded`` is this image's path as typed or as outputs record it: no file system call,
    which is what a resume meets for every image."""
    return recorded == str(im.path) or recorded == recorded_path(im.path)


def _is_this_image(recorded, im: InputImage) -> bool:
    """Whether ``recorded`` (an output's image) is this very file, however spelled. A path that
    leads nowhere is not: a folder moved away and another with the same file names run into the
    same --out would take the first's results as its own (a moved folder is done again)."""
    if isinstance(recorded, str) and _spelled_as(recorded, im):
        return True
    try:
        return isinstance(recorded, str) and os.path.samefile(recorded, im.path)
    except (OSError, ValueError):
        return False


def _finished_by(path: Path, model: str, im: InputImage) -> bool:
    """Whether ``path`` is a facemark result of ``model`` for this very image (not some other file
    of that name, nor the output of another image that maps to the same name: two folders run into
    one --out, one command after the other, or the first moved away before the second). One
    edited outside facemark into a shape ``read`` skips (a face without its points) is done again."""
    from .shards import DOC_KEYS, _from_document, _row_problem

    doc = _document(path)
    if doc is None or doc.get("model") != model or not _is_this_image(doc.get("image"), im) or not DOC_KEYS <= set(doc):
        return False
    return _row_problem(_from_document(doc)) is None


def _changed_after(path: Path, written_ns: int, now: float) -> bool:
    """Whether an input may have changed after its output was made (``written_ns``); in doubt, yes."""
    stamp = _stamp(path, now)
    return stamp is None or stamp > written_ns


def drawing_style(style: str, box: bool, score: bool) -> str:
    """How a drawing is drawn, as its tag says it (``icc.with_mark``): a rerun that asks for
    another style draws again."""
    return f"{style}, {'box' if box else 'no box'}, {'score' if score else 'no score'}"


def done_already(plan: Plan, fmt: str, out_dir: Path | None, annotate: bool, model: str,
                 since_ns: int = 0, log: Callable[[str], None] | None = None, drawing: str | None = None) -> set[int]:
    """Images whose outputs are complete from an earlier run of the same command with the same
    model: files renamed into place, or error-free rows in a finished shard, written after the
    input last changed (and after ``since_ns``: an interrupted ``--redo``'s start). A half-written
    output never exists, so never counts; a failed image is tried again. A shard that cannot be
    read at all is said through ``log``: its images are done again, and ``read`` warns of it.
    ``drawing`` (``drawing_style``): a drawing whose tag says another style is not done."""
    if out_dir is None or not out_dir.is_dir():
        return set()

    now = time.time()

    def changed_since(im: InputImage, written_ns: int) -> bool:
        return written_ns <= since_ns or _changed_after(im.path, written_ns, now)

    job = Job(out_dir, annotate, fmt, None)

    def drawn(im: InputImage, name: Path, json_ns: int | None = None) -> bool:
        """A drawing of the image as it is now: made after it last changed (and after an
        interrupted --redo began), and after its JSON output (written first in the same run; a
        later run without --annotate may have redone the JSON, for a changed image or model)."""
        try:
            st = _annotated_path(job, im, name).stat()
        except OSError:
            return False
        if st.st_size == 0:  # (a power cut after the rename, before the data reached the disk: drawn again)
            return False
        if drawing is not None and drawn_as(_annotated_path(job, im, name)) not in (None, drawing):
            return False  # (drawn in another style: --draw, --no-box or --no-score changed since)
        made = st.st_mtime_ns
        if json_ns is not None:  # (the JSON counts only if the image has not changed since: nor then since this)
            return made > since_ns and made >= json_ns
        return made > since_ns and not _changed_after(im.path, made, now)

    if fmt == "json":
        done = set()
        for k, (im, name) in enumerate(zip(plan.images, plan.names)):
            out = out_dir / f"{name}.json"
            if _finished_by(out, model, im) and (not annotate or drawn(im, name, out.stat().st_mtime_ns)) \
                    and not changed_since(im, out.stat().st_mtime_ns):
                done.add(k)
        return done
    from .shards import ShardWriter

    writer = ShardWriter(out_dir, fmt)
    written = writer.done_paths(model)
    if writer.damaged and log is not None:
        shown = ", ".join(p.name for p in writer.damaged[:3]) + (f" and {len(writer.damaged) - 3} more"
                                                                  if len(writer.damaged) > 3 else "")
        log(f"note: {len(writer.damaged)} shard(s) in {out_dir} cannot be read ({shown}: cut short, or not "
            f"facemark's): whatever rows they held are done again; move them out of {out_dir} (read() warns of them)")
    when = {k: written.get(recorded_path(im.path)) for k, im in enumerate(plan.images)}
    # Rows of images spelled another way than now (through a link; as typed, by older versions)
    # are matched by the real file; only those rows pay for a realpath (a usual resume pays none).
    spelled = {recorded_path(im.path) for im in plan.images}
    others = [p for p in written if p not in spelled]
    if others and None in when.values():
        real: dict[str, float] = {}
        for p in others:
            r = os.path.realpath(p)
            real[r] = max(written[p], real.get(r, written[p]))
        when = {k: t if t is not None else real.get(os.path.realpath(plan.images[k].path)) for k, t in when.items()}
    return {k for k, t in when.items() if t is not None and not changed_since(plan.images[k], int(t * 1e9))
            and (not annotate or drawn(plan.images[k], plan.names[k]))}


@contextmanager
def _one_signal_waits():
    """A first Ctrl-C or SIGTERM waits for the end of the block, then acts as it would have (the
    handler in place before it runs); a second one acts at once. For writes that must not be cut
    in half, such as a JSON document into a pipe whose reader is slow."""
    if threading.current_thread() is not threading.main_thread():  # (signal handlers are the main thread's)
        yield
        return
    waiting: list[int] = []
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    held = [sig for sig, h in before.items() if h not in (signal.SIG_IGN, None)]

    def restore() -> None:
        for sig in held:
            signal.signal(sig, before[sig])

    def later(signum, frame):
        stopped(signum)  # (a closed terminal: the rest of the line is lost, not an error)
        if waiting:  # the second: the user insists, and it acts now as it would have (cutting the line)
            waiting.clear()
            restore()
            signal.raise_signal(signum)
            return
        waiting.append(signum)

    for sig in held:
        signal.signal(sig, later)
    try:
        yield
    finally:
        restore()
        for sig in waiting[:1]:
            signal.raise_signal(sig)  # (now handled as it would have been)


def _with_boxes(fl: FaceLandmarker, boxes: Path | str) -> FaceLandmarker:
    """``fl`` with the boxes of a file in place of its detector: the same models, not loaded again."""
    import copy

    given = read_boxes(boxes)
    fl = copy.copy(fl)
    fl.detector, fl.spec = given, {**fl.spec, "detector": given}
    return fl


REDO_MARK = ".facemark-redo"  # in --out while a --redo runs: what it has redone is not redone again


def run_settings(fl: FaceLandmarker, fmt: str, annotate: bool, style: str, show_box: bool, show_score: bool) -> dict:
    """What makes a run's outputs what they are: the weights, the detector and its settings, the
    format and the drawing. A --redo is continued only by a run with the same."""
    det = fl.spec.get("detector")
    det = (f"piped boxes {det.piped}" if det.piped else det.source) if isinstance(det, GivenBoxes) \
        else det if isinstance(det, str) else type(det).__name__
    import hashlib

    # (the weights by content: a shipped model keeps its name across upgrades of facemark, and a
    # --redo begun before one must not be continued after it)
    weights = hashlib.sha256(Path(fl.model.path).read_bytes()).hexdigest()[:16]
    return {"model": fl.model_name, "weights": weights, "format": fmt, "detector": det, "threshold": fl.spec.get("threshold"),
            "min_face": fl.spec.get("min_face"), "flip": bool(fl.spec.get("flip")), "refine": fl.spec.get("refine"),
            "annotate": bool(annotate), "draw": [style, bool(show_box), bool(show_score)] if annotate else None,
            **({"turned": True} if fl.spec.get("turned") else {})}  # (only when set: marks from before it still match)


def _redo_mark(out_dir: Path) -> dict:
    """The interrupted ``--redo``'s mark in ``out_dir`` ({} where there is none, or not ours)."""
    try:
        mark = json.loads((out_dir / REDO_MARK).read_text())
    except (OSError, ValueError):
        return {}
    return mark if isinstance(mark, dict) and isinstance(mark.get("started_ns"), int) else {}


def _redo_started(out_dir: Path, settings: dict, log: Callable[[str], None]) -> int | None:
    """A ``--redo`` that an earlier one with the same ``settings`` began and did not finish
    (Ctrl-C, a crash) is continued: outputs written since it started are kept, so the same
    command goes on, as a resumed run does. Returns that start (ns; None when starting afresh,
    which is recorded for a later run to continue)."""
    mark = out_dir / REDO_MARK
    fmt = settings["format"]
    before = _redo_mark(out_dir)
    if before and before.get("settings") == settings:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(before["started_ns"] / 1e9))
        log(f"note: continuing the --redo begun at {when} that did not finish: what it redid is kept")
        # Redone: a file stamped after the mark (by the file system's own clock, as outputs
        # are; one stamped in the same tick is redone again, which is harmless), or a shard
        # row of a run that started after it (dated as the mark is).
        try:
            return mark.stat().st_mtime_ns if fmt == "json" else before["started_ns"] - 1
        except OSError:  # (gone since: start afresh)
            pass
    elif before:
        log("note: an interrupted --redo with other settings (weights, detector, format or drawing) is not "
            "continued: this one redoes every image")
    from .imageio import atomic_write_bytes
    from .shards import CLOCK_SLACK

    started = time.time_ns() - int(CLOCK_SLACK * 1e9)  # (as shards' run names date their rows)
    try:
        atomic_write_bytes(mark, json.dumps({"settings": settings, "started_ns": started}).encode(), root=out_dir)
    except OSError as e:
        raise cannot_write(out_dir, e) from None
    return None


def detect_files(inputs: "list[str] | Plan", fl: FaceLandmarker, out_dir: Path | None = None, annotate: bool = False,
                 boxes: Path | str | None = None, batch_images: int = 16, log: Callable[[str], None] = to_stderr,
                 progress: Callable[[int], None] | None = None, stdout=None, style: str = "contours",
                 show_box: bool = True, show_score: bool = True, fmt: str = "json", resume: bool = True,
                 workers: "int | str | Workers" = 1, rows_per_shard: int = DEFAULT_SHARD_SIZE,
                 format: str | None = None) -> BatchSummary:  # noqa: A002 - the CLI's --format, by its name
    """Landmarks for every image in ``inputs`` (files, directories, globs, or a ``Plan``).

    ``format`` (or ``fmt``, its older name): ``json`` writes ``OUT/<path>.json`` per image (and ``.annotated.<ext>``); ``jsonl`` and
    ``parquet`` write shards of rows (``facemark.shards``); without ``out_dir`` one JSON document
    per line goes to ``stdout``. With ``resume`` (default) images whose outputs are already
    complete in ``out_dir`` are skipped, so an interrupted run continues where it stopped.
    ``boxes``: a boxes file, as ``--boxes`` reads it, whose faces are used instead of the landmarker's
    detector. ``workers`` > 1 runs that many workers: this process (a thread with ``fl``, or its copy
    with a share of the cores) and ``workers`` - 1 more processes, each with its own landmarker and
    reading its own images (``"auto"``: one per core when there are enough images; call it under
    ``if __name__ == "__main__":``); or the processes of a ``facemark.workers.Workers`` started
    earlier (closed at the end). In one process, reading and decoding run in a thread ahead of the model.
    Raises ``UsageError`` before anything runs if the request cannot work, ``OutputError`` if
    writing stops being possible mid-run, ``facemark.workers.WorkerDied`` if a worker is killed.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .shards import ShardWriter

    started = workers if isinstance(workers, Workers) else None
    SEEN.clear()  # (a signal an earlier run in this process took is not this run's exit status)
    try:
        stdout = stdout or sys.stdout
        log = log or (lambda line: None)  # log=None: quiet
        if not isinstance(fl, FaceLandmarker):
            raise TypeError(f"fl must be a FaceLandmarker (FaceLandmarker(model=...)), not {type(fl).__name__}")
        if isinstance(boxes, bytes):
            boxes = os.fsdecode(boxes)
        if boxes is not None and not isinstance(boxes, (str, os.PathLike)):
            raise TypeError(f"boxes must be the path of a boxes file, not {type(boxes).__name__} (for boxes in "
                            f"memory: FaceLandmarker(detector=GivenBoxes({{path: [[x1, y1, x2, y2], ...]}})))")
        if out_dir is None and isinstance(stdout, (io.BufferedIOBase, io.RawIOBase)):
            raise TypeError("stdout must be a text stream (io.StringIO, a file opened with 'w'), not a binary one")
        if format is not None:
            if fmt != "json" and fmt != format:
                raise TypeError(f"format={format!r} and fmt={fmt!r} disagree: give one (fmt is format's older name)")
            fmt = format
        if fmt not in ("json", "jsonl", "parquet"):
            raise UsageError(f"format must be json, jsonl or parquet, not {fmt!r}")  # (the CLI says --format itself)
        if style not in STYLES:
            raise UsageError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
        for name, v in (("show_box", show_box), ("show_score", show_score)):
            if not isinstance(v, (bool, np.bool_)):  # (as draw checks them: said before any work)
                raise TypeError(f"{name} must be True or False, not {v!r}")
        if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int) or rows_per_shard < 1:
            raise UsageError(f"rows_per_shard must be a positive integer, not {rows_per_shard!r}")
        if started is not None:
            if started.pool is None:
                raise ValueError("these Workers were closed (by the run they were given to): start new ones for each run")
            workers = started.processes + 1  # (they and this process)
        elif workers == "auto":
            workers = None  # decided below, once the images left to do are known
        elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise UsageError(f"workers must be a positive integer, 'auto' or Workers, not {workers!r}")
        if boxes is not None and getattr(fl, "turned", False):
            raise UsageError("boxes given, and a landmarker made with turned=True, which searches each image turned "
                             "four ways: given boxes are not searched for (a face turned in a box is read where it stands in the "
                             "box's window, turned four ways); use one of them")
        has = fl.detector.source if isinstance(fl.detector, GivenBoxes) else None
        if boxes is not None and has != os.path.realpath(boxes):  # (the CLI's landmarker has read them already)
            fl = _with_boxes(fl, boxes)
        plan = inputs if isinstance(inputs, Plan) else plan_inputs(inputs, out_dir, annotate, batch_images, log)
        out_dir = plan.out_dir
        if fmt != "json" and out_dir is None:
            raise UsageError(f"format={fmt!r} writes shards: give out_dir")
        if out_dir is None and (under := _input_at(stdout, plan.images)) is not None:
            raise UsageError(f"standard output goes to {under}, one of the inputs: the results would be written into "
                             f"it; send them to another file (or give --out)")
        existed = out_dir is not None and out_dir.is_dir()
        if out_dir is not None:
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                if nowhere := broken_link(out_dir):  # ("File exists", said of a link to nowhere)
                    raise UsageError(f"--out {out_dir} {nowhere}") from None
                raise UsageError(f"--out {out_dir} cannot be made: {e.strerror or e}") from None
        redo = None
        if plan.unwritable is not None and not resume:  # (a --redo writes its mark first, and then every image)
            raise cannot_write(out_dir, plan.unwritable)
        if not resume and out_dir is not None:
            redo = _redo_started(out_dir, run_settings(fl, fmt, plan.annotate, style, show_box, show_score), log)
        shards = ShardWriter(out_dir, fmt, rows_per_shard) if fmt != "json" else None
        s = BatchSummary(images=len(plan.images), missing=len(plan.missing), failures=len(plan.missing),
                         out_dir=out_dir)
        if out_dir is not None:  # what a killed run left half-written, before anything new is written
            for folder in {out_dir, *(out_dir / d for d in {os.path.dirname(n) for n in plan.names})}:  # (text: 10x faster)
                remove_stale_temps(folder)
        if resume or redo:
            skip = done_already(plan, fmt, out_dir, plan.annotate, fl.model_name, redo or 0, log,
                                drawing_style(style, show_box, show_score))
        else:
            skip = set()
        s.skipped, s.redo_continued = len(skip), bool(redo)
        pending = _redo_mark(out_dir) if resume and out_dir is not None else {}  # (the weights hashed only then)
        s.redo_pending = bool(pending) and pending.get("settings") == run_settings(fl, fmt, plan.annotate, style,
                                                                                    show_box, show_score)
        protected = [im.path for im in plan.images] + ([Path(boxes)] if boxes else [])  # never overwritten
        job = Job(out_dir, plan.annotate, fmt if out_dir is not None else "stdout", str(boxes) if boxes else None,
                  style, show_box, show_score, frozenset(os.path.realpath(p) for p in protected))
        todo = [(k, im, plan.names[k]) for k, im in enumerate(plan.images) if k not in skip]
        if plan.unwritable is not None and todo:  # (all done already: a rerun on a read-only or full disk says so)
            raise cannot_write(out_dir, plan.unwritable)
        if fmt == "json" and resume and out_dir is not None and todo and not skip and existed:
            if (found := _named_otherwise(plan, out_dir)) is not None:
                there, k = found
                log(f"note: {there} holds {plan.images[k].path}'s result from a run with other inputs (outputs are "
                    f"named by each image's path below the folder common to all the inputs): this run does it again "
                    f"as {out_dir / plan.names[k]}.json; to continue that run, give the same inputs")
        if workers is None:
            workers = auto_workers(len(todo), fl.spec.get("device", "cpu"), detector_kind(fl.detector))
        chunks, i = [], 0
        for n in chunk_sizes(len(todo), plan.batch_images, workers):
            chunks.append(todo[i:i + n])
            i += n
        if progress and skip:
            progress(len(skip))

        def shard_error(e: OSError) -> OutputError:
            return OutputError(f"cannot write a shard in {out_dir}: {e.strerror or e}; stopped. This run's complete "
                               f"shards hold {shards.written} row(s) and stay valid; the same command continues")

        first: dict[str, int] = {}  # each end note's first image, in input order (workers report chunks as they finish)
        no_face = {"small": 0, "unexplained": 0}  # images with no face: small ones (searched at their own size), and
        # those no other note explains

        def example(note: str, k: int) -> None:
            first[note] = min(first.get(note, k), k)

        def report(outcomes: list[Outcome], n: int) -> None:
            for o in outcomes:
                if o.k < 0:
                    more = " (other workers may have finished a few more)" if workers > 1 else ""
                    raise OutputError(f"{o.message}; stopped after {s.written} image(s){more}; every output written "
                                      f"is complete. Fix that and run the same command again (done images are skipped)")
                if o.ok:
                    s.written += 1
                    s.faces += o.faces
                    s.no_face += o.faces == 0
                    s.shrunk_small += o.shrunk_small
                    s.under_min_face += o.under_min_face
                    s.looks_turned += o.looks_turned
                    s.box_alone += o.box_alone
                    for note, hit in (("shrunk", o.shrunk_small), ("under", o.under_min_face),
                                      ("turned", o.looks_turned), ("alone", o.box_alone)):
                        if hit:
                            example(note, o.k)
                    kind = "small" if o.small and not o.under_min_face else "unexplained" if o.faces == 0 and not (
                        o.under_min_face or o.shrunk_small) else None
                    if kind:
                        no_face[kind] += 1
                        example(kind, o.k)
                else:
                    log(f"failed: {o.message}")
                    s.failures += 1
                if job.fmt == "stdout" and o.ok:
                    try:
                        with _one_signal_waits():  # a document is never cut off mid-line (a slow reader: a long wait)
                            write_whole(stdout, o.payload + "\n")
                    except BrokenPipeError as e:
                        e.failures = s.failures  # the reader has gone (| head): the caller stops quietly,
                        raise  # with exit 1 if an image had failed by then (each was named)
                    except OSError as e:
                        raise OutputError(f"cannot write to standard output: {e.strerror or e}") from None
                elif shards is not None and o.payload is not None:
                    try:
                        shards.add(o.payload)
                    except OSError as e:
                        raise shard_error(e) from None
            if progress:
                progress(n)

        def in_process(chunks: list) -> None:
            queue = list(chunks)
            with ThreadPoolExecutor(1) as reader:  # decode the next batch while the model runs this one
                ahead = reader.submit(_load, queue.pop(0)) if queue else None
                while ahead is not None:
                    loaded, rest = ahead.result()
                    if rest:  # (the chunk's images past BATCH_BYTES: the next batch)
                        queue.insert(0, rest)
                    ahead = reader.submit(_load, queue.pop(0)) if queue else None
                    report(_process(job, fl, loaded), len(loaded))

        try:
            if workers == 1 or len(chunks) < 2:
                in_process(chunks)
            else:
                workers = min(workers, len(chunks))
                local = fl if fl.spec.get("threads") == threads_each(workers) else FaceLandmarker(
                    **{**fl.spec, "threads": threads_each(workers)})  # (the CLI makes its landmarker so)
                try:
                    run_workers(fl.spec, job, work_on_chunk, chunks, workers, report, local=local, started=started,
                                label=fl.model_name)
                except WorkerNeverStarted:
                    raise  # (the caller's script, not a lost run: nothing to run again)
                except WorkerDied as e:
                    then = ("what was printed is complete; the rest was not" if job.fmt == "stdout" else
                            "outputs written so far are complete: run the same command again to continue")
                    raise WorkerDied(f"{e}; {then} (--workers 1 uses less memory)") from None
                except WorkersUnavailable as e:  # e.g. no /dev/shm in a sandbox: slower, not broken
                    log(f"note: no worker processes here ({e}); running in this one")
                    workers = 1  # (a failure now is this process's: no other workers' outputs to speak of)
                    try:
                        if fl.spec.get("threads") is not None:  # (made for a share of the cores: all of them now)
                            fl = FaceLandmarker(**{**fl.spec, "threads": None})
                        in_process([todo[i:i + plan.batch_images] for i in range(0, len(todo), plan.batch_images)])
                    except (ModelError, OSError) as again:  # (ulimit -n: its models would not open here either)
                        if e.files is None or not (isinstance(again, ModelError) or no_files_left("", again)):
                            raise
                        raise e.files from None
        except BaseException:  # Ctrl-C, a dead worker: the rows done so far are kept if they can be,
            if shards is not None:  # but a full disk now must not take the place of what stopped the run
                try:
                    shards.flush()
                except OSError:
                    pass
            raise
        if shards is not None:
            try:
                shards.flush()  # the rows done so far: a complete shard, found by the next run
            except OSError as e:
                raise shard_error(e) from None
        if not resume and out_dir is not None:  # the --redo is complete: the next one starts over
            try:
                (out_dir / REDO_MARK).unlink()
            except OSError:
                pass
        _end_notes(s, first, no_face, plan, fl, boxes, log)
        return s
    finally:
        if started is not None:  # (used or not: nothing left to do, or an error before the run)
            started.close()


def rows_for_bytes(fl: FaceLandmarker, items: list[tuple[str, bytes]]) -> list[dict]:
    """Result rows (``facemark.shards.row``) for encoded images held in memory, e.g. read from an
    object store: each bad one is a row with its ``error``, never an exception; the faces of all
    the good ones share model batches."""
    from .imageio import decode_image
    from .shards import row

    rows: list[dict | None] = [None] * len(items)
    loaded, dets, where = [], [], []
    for k, (path, data) in enumerate(items):
        try:
            image = decode_image(data, path)
            d = fl.find_faces(image)
        except (ImageError, BoxError) as e:
            rows[k] = row(path, None, None, fl.model_name, error=str(e))
            continue
        except Exception as e:  # noqa: BLE001 - as _process: memory in any library's words is this image's
            if not memory_ran_out(e):
                raise
            rows[k] = row(path, None, None, fl.model_name, error=f"{path}: out of memory")
            continue
        loaded.append(image)
        dets.append(d)
        where.append(k)
    for k, image, fs in zip(where, loaded, fl.landmarks_for(loaded, dets)):
        rows[k] = row(items[k][0], image.shape[1], image.shape[0], fl.model_name, fs)
    return rows


def detector_kind(detector) -> str:
    """What ``auto_workers`` needs to know of a landmarker's detector: where it runs."""
    return "retinaface" if isinstance(detector, RetinaFace) else "yunet" if isinstance(detector, YuNet) else "none"


def summary_line(s: BatchSummary) -> str:
    """One line for the end of a run: counts, and where the outputs went."""
    where = f"outputs in {s.out_dir}" if s.out_dir is not None else "JSON on stdout"
    parts = [f"{s.written} of {s.images} image(s) done", f"{s.faces} face(s)"]
    if s.skipped:  # a resumed run: what was there first, then what this run added (and found)
        again = ("redone by the interrupted --redo" if s.redo_continued else
                 f"done (skipped; --redo continues the interrupted one; to redo all, delete {REDO_MARK} in the "
                 f"output folder, then --redo)" if s.redo_pending else "done (skipped; --redo recomputes)")
        parts[0] = f"{s.skipped} of {s.images} image(s) already {again}, {s.written} more done"
        parts[1] = f"{s.faces} face(s) in those"
    if s.no_face:
        parts.append(f"{s.no_face} image(s) with no face")
    if s.failures - s.missing:
        parts.append(f"{s.failures - s.missing} failed (named above)")
    if s.missing:
        parts.append(f"{s.missing} input(s) gave no image (named above)")
    return "facemark: " + ", ".join(parts) + f"; {where}"

"""``facemark detect`` over many files: read, detect, one model batch per group of images, write.

Callable from Python with the CLI's behaviour: ``detect_files(inputs, fl, out_dir=...)``. Every
bad input is one log line naming it and is skipped; outputs are written under a temporary name
and renamed, so an output that exists is complete; a full or read-only disk stops the run at
once (everything written so far stays valid) instead of failing every remaining image.
"""
from __future__ import annotations

import errno
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .annotate import draw
from .detector import BoxError, GivenBoxes
from .errors import FacemarkError, UsageError
from .imageio import ImageError, atomic_write_bytes, read_image, write_image
from .inputs import InputImage, collisions, expand, output_names
from .landmarker import FaceLandmarker
from .results import document, dumps

ANNOTATED_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
FATAL_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}  # every later write would fail too


class OutputError(FacemarkError):
    """Writing outputs cannot go on (disk full, read-only, I/O error): the run stops."""


@dataclass
class BatchSummary:
    images: int = 0  # images the run was asked to process
    missing: int = 0  # arguments (or folders) that gave nothing
    failures: int = 0  # inputs that failed (missing ones included)
    faces: int = 0
    no_face: int = 0  # images processed with no face found
    written: int = 0  # images whose outputs were written (or printed)
    out_dir: Path | None = None


@dataclass
class Plan:
    """What a run will read and where it will write, checked before any model loads."""

    images: list[InputImage]
    missing: list[str]
    out_dir: Path | None
    annotate: bool
    batch_images: int
    names: list = field(default_factory=list)


def plan_inputs(inputs: list[str], out_dir: Path | None = None, annotate: bool = False, batch_images: int = 16,
                log: Callable[[str], None] = print) -> Plan:
    """Expand ``inputs`` (files, directories, globs) and check the request; each argument that
    gives nothing is one ``log`` line. Raises ``UsageError`` if nothing can run, or if two inputs
    would write the same output (before anything is written)."""
    images, problems = expand(inputs)
    for m in problems:
        log(f"error: {m}")
    if not images:
        raise UsageError("no images to process")
    if annotate and out_dir is None:
        raise UsageError("--annotate writes images: give --out DIR")
    if batch_images < 1:
        raise UsageError("--batch must be at least 1")
    names = output_names(images)
    if out_dir is not None:
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} exists and is not a directory")
        clash = collisions(names)
        if clash:
            a, b = clash[0]
            raise UsageError(f"{images[a].path} and {images[b].path} would both write {out_dir / names[a]}.json "
                             f"({len(clash)} such clash(es)); run them with different --out folders")
    return Plan(images, problems, out_dir, annotate, batch_images, names)


def _boxes_for(boxes: GivenBoxes, im: InputImage, name, source: Path | str | None, image) -> list:
    """The given boxes of one image, each checked against it (a box wholly outside the image is
    an error of that image, not landmarks in empty space)."""
    for key in (str(im.path), name.as_posix()):
        if boxes.has(key):
            dets = boxes.lookup(key)
            h, w = image.shape[:2]
            for j, d in enumerate(dets):
                x1, y1, x2, y2 = d.box
                if x2 <= -0.5 or y2 <= -0.5 or x1 >= w - 0.5 or y1 >= h - 0.5:
                    raise BoxError(f"box {j} {np.round(d.box, 1).tolist()} lies outside the {w}x{h} image")
            return dets
    raise ImageError(f"{im.path}: no entry in {source or 'the boxes'}")


def detect_files(inputs: "list[str] | Plan", fl: FaceLandmarker, out_dir: Path | None = None, annotate: bool = False,
                 boxes: Path | str | None = None, batch_images: int = 16, log: Callable[[str], None] = print,
                 progress: Callable[[int], None] | None = None, stdout=None, style: str = "contours",
                 show_box: bool = True, show_score: bool = True) -> BatchSummary:
    """Landmarks for every image in ``inputs`` (files, directories, globs, or a ``Plan``).

    Writes ``OUT/<path as given>.json`` (and ``.annotated.<ext>``) when ``out_dir`` is given, else
    one JSON document per line to ``stdout``. With ``boxes`` (the file given as ``--boxes``, whose
    boxes ``fl.detector`` holds) detection is skipped. Raises ``UsageError`` before anything runs
    if the request cannot work, ``OutputError`` if writing stops being possible mid-run.
    """
    stdout = stdout or sys.stdout
    plan = inputs if isinstance(inputs, Plan) else plan_inputs(inputs, out_dir, annotate, batch_images, log)
    images, names, out_dir, annotate = plan.images, plan.names, plan.out_dir, plan.annotate
    given = fl.detector if isinstance(fl.detector, GivenBoxes) else None
    s = BatchSummary(images=len(images), missing=len(plan.missing), failures=len(plan.missing), out_dir=out_dir)
    input_paths = {str(im.path.resolve()) for im in images}

    def failed(message: str) -> None:
        log(f"failed: {message}")
        s.failures += 1

    def write(im: InputImage, k: int, image, fs, text: str) -> None:
        base = out_dir / names[k]
        targets = [(base.with_name(base.name + ".json"), None)]
        if annotate:
            ext = im.path.suffix if im.path.suffix.lower() in ANNOTATED_EXTS else ".png"
            targets.append((base.with_name(base.name + ".annotated" + ext), ext))
        for target, _ in targets:
            if str(target.resolve()) in input_paths:
                raise ImageError(f"{im.path}: its output {target} is one of the inputs; not overwritten")
        try:
            atomic_write_bytes(targets[0][0], (text + "\n").encode())
            if annotate:
                write_image(targets[1][0], draw(image, fs, style=style, box=show_box, score=show_score))
        except OSError as e:
            if e.errno in FATAL_WRITE:
                raise OutputError(f"cannot write {e.filename or targets[0][0]}: {e.strerror}; stopped after "
                                  f"{s.written} image(s), whose outputs are complete. Free space and run the "
                                  f"same command again") from None
            raise ImageError(f"{im.path}: cannot write its output: {e.strerror or e}") from None

    def process(chunk: list[tuple[int, InputImage]]) -> None:
        loaded, dets = [], []
        for k, im in chunk:
            try:
                image = read_image(im.path)
                d = _boxes_for(given, im, names[k], boxes, image) if given is not None else fl.detector.detect(image)
            except (ImageError, BoxError) as e:
                failed(str(e) if str(im.path) in str(e) else f"{im.path}: {e}")
                continue
            except MemoryError:
                failed(f"{im.path}: out of memory reading or searching it")
                continue
            loaded.append((k, im, image))
            dets.append(d)
        faces = fl.landmarks_for([x[2] for x in loaded], dets)
        for (k, im, image), fs in zip(loaded, faces):
            doc = document(str(im.path), image.shape[1], image.shape[0], fl.model_name, fs)
            try:
                text = dumps(doc)
            except ValueError:
                failed(f"{im.path}: the model gave non-finite coordinates; nothing written")
                continue
            if out_dir is None:
                stdout.write(text + "\n")
            else:
                try:
                    write(im, k, image, fs, text)
                except ImageError as e:
                    failed(str(e))
                    continue
            s.written += 1
            s.faces += len(fs)
            s.no_face += not fs

    indexed = list(enumerate(images))
    for i in range(0, len(indexed), plan.batch_images):
        chunk = indexed[i:i + plan.batch_images]
        process(chunk)
        if progress:
            progress(len(chunk))
    return s


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
            d = fl.detector.detect(image)
        except (ImageError, BoxError) as e:
            rows[k] = row(path, None, None, fl.model_name, error=str(e))
            continue
        except MemoryError:
            rows[k] = row(path, None, None, fl.model_name, error=f"{path}: out of memory")
            continue
        loaded.append(image)
        dets.append(d)
        where.append(k)
    for k, image, fs in zip(where, loaded, fl.landmarks_for(loaded, dets)):
        rows[k] = row(items[k][0], image.shape[1], image.shape[0], fl.model_name, fs)
    return rows


def summary_line(s: BatchSummary) -> str:
    """One line for the end of a run: counts, and where the outputs went."""
    where = f"outputs in {s.out_dir}" if s.out_dir is not None else "JSON on stdout"
    parts = [f"{s.written} of {s.images} image(s) done", f"{s.faces} face(s)"]
    if s.no_face:
        parts.append(f"{s.no_face} image(s) with no face")
    if s.failures:
        parts.append(f"{s.failures} failed (named above)")
    return "facemark: " + ", ".join(parts) + f"; {where}"

"""``facemark detect`` over many files: read, detect, one model batch per group of images, write.

Callable from Python with the CLI's behaviour: ``detect_files(inputs, out_dir=..., ...)``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .draw import draw
from .errors import UsageError
from .imageio import ImageError, atomic_write_bytes, read_image, write_image
from .inputs import InputImage, expand, output_stems
from .landmarker import FaceLandmarker
from .results import document

ANNOTATED_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class BatchSummary:
    images: int = 0  # inputs that were images to process
    missing: int = 0  # arguments that matched nothing
    failures: int = 0  # inputs that failed (missing ones included)


@dataclass
class Plan:
    """What a run will read and where it will write, checked before any model loads."""

    images: list[InputImage]
    missing: list[str]
    out_dir: Path | None
    annotate: bool
    batch_images: int
    stems: list = field(default_factory=list)


def plan_inputs(inputs: list[str], out_dir: Path | None = None, annotate: bool = False, batch_images: int = 16,
                log: Callable[[str], None] = print) -> Plan:
    """Expand ``inputs`` (files, directories, globs) and check the request; each argument that
    matches nothing is one ``log`` line. Raises ``UsageError`` if nothing can run."""
    images, missing = expand(inputs)
    for m in missing:
        log(f"error: {m}: no such file, directory or matching image")
    if not images:
        raise UsageError("no images to process")
    if annotate and out_dir is None:
        raise UsageError("--annotate writes images: give --out DIR")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a directory")
    if batch_images < 1:
        raise UsageError("--batch must be at least 1")
    return Plan(images, missing, Path(out_dir) if out_dir is not None else None, annotate, batch_images, output_stems(images))


def detect_files(inputs: "list[str] | Plan", fl: FaceLandmarker, out_dir: Path | None = None, annotate: bool = False,
                 boxes: Path | None = None, batch_images: int = 16, log: Callable[[str], None] = print,
                 progress: Callable[[int], None] | None = None, stdout=None) -> BatchSummary:
    """Landmarks for every image in ``inputs`` (files, directories, globs, or a ``Plan``).

    Writes ``OUT/<relative path>/<stem>.json`` (and ``.annotated.<ext>``) when ``out_dir`` is
    given, else one JSON document per line to ``stdout``. Each bad input is one ``log`` line and is
    skipped; the rest still finish. Raises ``UsageError`` before anything runs if the request
    cannot work.
    """
    stdout = stdout or sys.stdout
    plan = inputs if isinstance(inputs, Plan) else plan_inputs(inputs, out_dir, annotate, batch_images, log)
    images, stems, out_dir, annotate = plan.images, plan.stems, plan.out_dir, plan.annotate
    summary = BatchSummary(images=len(images), missing=len(plan.missing), failures=len(plan.missing))
    input_paths = {im.path.resolve() for im in images}
    def process(chunk: list[tuple[int, InputImage]]) -> None:
        loaded, dets = [], []
        for k, im in chunk:
            try:
                image = read_image(im.path)
                if boxes:
                    d = fl.detector.lookup(str(im.path))
                    if not d and not (fl.detector.lookup(im.rel.as_posix())):
                        raise ImageError(f"{im.path}: no entry in {boxes}")
                    d = d or fl.detector.lookup(im.rel.as_posix())
                else:
                    d = fl.detector.detect(image)
            except ImageError as e:
                log(f"failed: {e}")
                summary.failures += 1
                continue
            loaded.append((k, im, image))
            dets.append(d)
        faces = fl.landmarks_for([x[2] for x in loaded], dets)
        for (k, im, image), fs in zip(loaded, faces):
            doc = document(str(im.path), image.shape[1], image.shape[0], fl.model_name, fs)
            text = json.dumps(doc)
            if out_dir is None:
                stdout.write(text + "\n")
                continue
            base = out_dir / stems[k]
            try:
                atomic_write_bytes(base.with_name(base.name + ".json"), (text + "\n").encode())
                if annotate:
                    ext = im.path.suffix.lower() if im.path.suffix.lower() in ANNOTATED_EXTS else ".png"
                    target = base.with_name(base.name + ".annotated" + ext)
                    if target.resolve() in input_paths:
                        raise OSError(f"refusing to overwrite input {target}")
                    write_image(target, draw(image, fs))
            except (OSError, ImageError) as e:
                log(f"failed: {im.path}: cannot write output: {e}")
                summary.failures += 1

    indexed = list(enumerate(images))
    for i in range(0, len(indexed), plan.batch_images):
        chunk = indexed[i:i + plan.batch_images]
        process(chunk)
        if progress:
            progress(len(chunk))
    return summary

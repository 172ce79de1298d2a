"""Readers for landmark datasets. All return ``Sample`` records with 0-based pixel coordinates.

* ``300w``: a directory tree of images with ``.pts`` files beside them (1-based coordinates).
* ``wflw``: the official WFLW release (``WFLW_annotations/.../list_98pt_rect_attr_*.txt`` and
  ``WFLW_images/``): 196 coordinates, a box, six attribute flags, the image path.
* ``csv68``: a CSV ``name,x0,y0,...,x67,y67``, with or without a header row (e.g. the YouTube frames).
"""
from __future__ import annotations

import csv
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..layouts import IOD68, IOD98
from ..quiet import to_stderr

PHOTO_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # tried in this order beside a .pts file
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


@dataclass
class Sample:
    image: Path
    landmarks: np.ndarray  # (68, 2) or (98, 2), 0-based pixel centres
    subset: str = ""  # e.g. "helen/testset" or a WFLW attribute name
    split: str = "train"  # "train" or "test"
    box: np.ndarray | None = None  # dataset-provided box, if any
    tags: tuple[str, ...] = field(default_factory=tuple)  # WFLW attribute subsets
    kind: str = "300w"  # the --data kind it came from (csv68 faces are the noisier labels)

    @property
    def key(self) -> str:
        return f"{self.subset}/{self.image.name}"


def read_pts(path: str | Path) -> np.ndarray:
    """Read an iBUG ``.pts`` file and return 0-based coordinates; ``ValueError`` naming the file
    if it is not 68 or 98 finite points."""
    from ..imageio import ImageError, check_regular_file

    try:
        check_regular_file(Path(path), "a label file")  # a FIFO would block for ever
    except ImageError as e:
        raise ValueError(str(e)) from None
    try:
        text = Path(path).read_text(errors="strict")
        if "{" not in text:
            raise ValueError("no '{' before the points")
        header, body = text.split("{", 1)
        values = np.asarray(body.split("}", 1)[0].split(), dtype=np.float64)
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .pts file ({e})") from None
    # (a header that disagrees: a file cut short, or points pasted from another file)
    said = re.search(r"^\s*n_points\s*:\s*(\S*)\s*$", header, re.MULTILINE)
    if said and not re.fullmatch(r"\d+(\.0*)?", said.group(1)):
        raise ValueError(f"{path}: its header's n_points is {said.group(1)!r}, not a number of points")
    if said and float(said.group(1)) != values.size / 2:
        raise ValueError(f"{path}: its header says n_points: {said.group(1)}, but it holds {values.size / 2:g} points")
    try:
        return face_points(values, (68, 98)) - 1.0
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def face_points(values, counts: tuple[int, ...]) -> np.ndarray:
    """Label coordinates as (N, 2); ``ValueError`` unless there are ``counts`` points, every one a
    finite number, spread out like a face (not all in one place, not beyond a million pixels)."""
    pts = np.asarray(values, dtype=np.float64)
    if pts.size % 2 or pts.size // 2 not in counts:
        raise ValueError(f"{pts.size / 2:g} points, not {' or '.join(map(str, counts))}")
    if not np.isfinite(pts).all():
        raise ValueError("a coordinate is not a finite number")
    pts = pts.reshape(-1, 2)
    if np.abs(pts).max() > 1e6 or np.ptp(pts, axis=0).min() < 1.0:
        raise ValueError("the points are not a face (out of range, or all in one place)")
    corners = IOD68 if len(pts) == 68 else IOD98  # the outer eye corners: NME's yardstick
    if np.linalg.norm(pts[corners[0]] - pts[corners[1]]) < 1.0:
        raise ValueError(f"its outer eye corners (points {corners[0] + 1} and {corners[1] + 1}) are less than a pixel "
                         f"apart: no error can be measured against them")
    return pts


def _skip(skipped: list[str] | None, where: str, e: Exception) -> None:
    """A bad label is said and left out where the caller collects them; otherwise it is an error."""
    if skipped is None:
        raise e
    skipped.append(f"{where}: {e}")


def outside_image(s: Sample, image: np.ndarray) -> str | None:
    """The ``skipped:`` line for a face whose labels lie outside its image (another image's, or
    shifted): no detector miss to count, no crop of nothing to score or train on. None if inside."""
    cx, cy = s.landmarks.mean(0)
    if 0 <= cx < image.shape[1] and 0 <= cy < image.shape[0]:
        return None
    return f"skipped: {s.image}: its labelled face lies outside the image ({image.shape[1]}x{image.shape[0]})"


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write 0-based points as a 1-based ``.pts`` file."""
    body = "\n".join(f"{x + 1:.6f} {y + 1:.6f}" for x, y in np.asarray(points))
    Path(path).write_text(f"version: 1\nn_points:  {len(points)}\n{{\n{body}\n}}\n")


def _image_beside(pts: Path) -> Path | None:
    for ext in PHOTO_EXTS + tuple(e.upper() for e in PHOTO_EXTS):
        p = pts.with_suffix(ext)
        if p.is_file():
            return p
    return None


def load_pts_dir(root: str | Path, skipped: list[str] | None = None) -> list[Sample]:
    """All ``.pts`` files under ``root`` with their images. A ``testset`` or ``test`` folder at or
    below ``root`` (``root`` itself included) makes the test split, and so does 300-W's ``ibug``
    folder (its 135 challenging test faces: a full 300-W trained on them, never measured on
    them); the subset is the folder relative to ``root``. A label file that cannot be read is
    added to ``skipped`` (with why), not the end of the run."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    real = Path(os.path.realpath(root))
    real_name = real.name  # (of '300w=.' too: Path('.').name is '')
    root_is_test = real_name.lower() in TEST_FOLDERS  # --data 300w=.../helen/testset
    # A set's own folder named with its parent's (helen/testset): two such roots given side by
    # side stay two subsets, not one "testset".
    root_label = f"{real.parent.name}/{real_name}" if real_name in SPLIT_FOLDERS and real.parent.name else real_name
    out, before = [], len(skipped) if skipped is not None else 0
    for pts in _label_files(root):
        img = _image_beside(pts)
        if img is None:
            if skipped is not None:
                skipped.append(f"{pts}: no image file beside it")
            continue
        rel = pts.parent.relative_to(root).as_posix()
        rel = "" if rel == "." else rel  # (the root itself: its own name below)
        if rel.split("/")[0] in SPLIT_FOLDERS:  # --data 300w=.../lfpw: lfpw/testset
            rel = f"{real_name}/{rel}"
        split = "test" if root_is_test or TEST_FOLDERS & {p.lower() for p in pts.parent.relative_to(root).parts} \
            or pts.parent.name.lower() == "ibug" else "train"  # (ibug: the folder holding its labels, not one above)
        try:
            out.append(Sample(img, read_pts(pts), subset=rel or root_label, split=split))
        except (OSError, ValueError) as e:
            if skipped is None:
                raise
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            skipped.append(why if str(pts) in why else f"{pts}: {why}")
    if not out:
        bad = skipped[before:] if skipped is not None else []
        raise ValueError(f"no usable .pts file under {root}: {len(bad)} skipped, e.g. {bad[0]}" if bad
                         else f"no .pts files with images under {root}")
    return out


def common_subset(samples: list[Sample]) -> list[Sample]:
    """The test faces outside a full 300-W's ``ibug`` folder: its common subset (HELEN's and
    LFPW's test sets, 554 faces), what facemark's accuracy figures are measured on."""
    return [s for s in samples if s.split == "test" and "ibug" not in s.subset.lower().split("/")]


SPLIT_FOLDERS = ("testset", "trainset", "test", "train")
TEST_FOLDERS = {"testset", "test"}


def _label_files(root: Path) -> list[Path]:
    """The ``.pts`` files below ``root`` (any case: ``.PTS`` too), linked folders followed (each
    real folder once: a link back up would loop), in name order."""
    found, seen = [], set()
    for folder, subs, names in os.walk(root, followlinks=True):
        subs.sort()  # (the first name to reach a linked folder names its subset: the same on every system)
        real = os.path.realpath(folder)
        if real in seen:
            subs[:] = []
            continue
        seen.add(real)
        found += [Path(folder) / n for n in names if n.lower().endswith(".pts")]
    return sorted(found)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_wflw(root: str | Path, skipped: list[str] | None = None) -> list[Sample]:
    """The WFLW release: both list files if present; attribute flags become tags."""
    root = Path(root)
    ann = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    images = root / "WFLW_images"
    out, lists = [], []
    before = len(skipped) if skipped is not None else 0
    for split in ("train", "test"):
        lst = ann / f"list_98pt_rect_attr_{split}.txt"
        if not lst.is_file():
            continue
        lists.append(lst)
        if not images.is_dir():  # one line, not one per face (thousands) when every image is missing
            raise FileNotFoundError(f"no folder {images}: WFLW's images go in WFLW_images/ beside WFLW_annotations/")
        for n, line in enumerate(lst.read_text(errors="replace").splitlines(), 1):
            parts = line.split(None, 206)  # (the image's name is the rest of the line: it may hold spaces)
            if not parts:
                continue
            if len(parts) < 207:
                _skip(skipped, f"{lst} line {n}", ValueError(f"{len(parts)} fields, not 207 (cut short?)"))
                continue
            try:
                pts = face_points(parts[:196], (98,))
                box = np.asarray(parts[196:200], np.float64)
                flags = [int(v) for v in parts[200:206]]
            except ValueError as e:
                _skip(skipped, f"{lst} line {n}", e)
                continue
            tags = tuple(a for a, f in zip(WFLW_ATTRIBUTES, flags) if f)
            name = parts[206].strip()
            if len(name.split()) > 1 and _number(name.split()[0]) and not (images / name).is_file():
                # (a field too many: the name took it, and names no file)
                _skip(skipped, f"{lst} line {n}", ValueError(f"{206 + len(name.split())} fields, not 207"))
                continue
            out.append(Sample(images / name, pts, subset="wflw", split=split, box=box, tags=tags, kind="wflw"))
    if not out and lists:  # (lists there, but empty or every line bad)
        bad = skipped[before:] if skipped is not None else []
        raise ValueError(f"no usable face in {', '.join(str(p) for p in lists)}: "
                         + (f"{len(bad)} line(s) skipped, e.g. {bad[0]}" if bad else "no face lines"))
    if not out:
        raise ValueError(f"no WFLW list files under {ann}")
    return out


def _a_face(row: list[str]) -> bool:
    """Whether a CSV's first line is a face rather than a header: a name, then 136 numbers that are
    not the column numbers 0..135 (the YouTube set's header is ``,0,1,...,135``)."""
    if len(row) < 137 or not row[0].strip():
        return False
    try:
        values = [float(v) for v in row[1:137]]
    except ValueError:
        return False
    return values != list(range(136))


def load_csv68(path: str | Path, images: str | Path | None = None, skipped: list[str] | None = None) -> list[Sample]:
    """A CSV of ``name,x0,y0,...``. Images are looked up in ``images``, beside the CSV, or in a
    folder beside it (the YouTube frames keep theirs in ``training/``)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder: csv68 wants the CSV file itself")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    dirs = [Path(images)] if images else [path.parent] + sorted(p for p in path.parent.iterdir() if p.is_dir())
    out, before = [], len(skipped) if skipped is not None else 0
    with path.open(newline="", errors="replace") as f:
        rows = csv.reader(f)
        first = next(rows, None)
        if first is not None and _a_face(first):  # no header row: the first line is a face
            rows = itertools.chain([first], rows)
            start = 1
        else:
            start = 2
        for n, row in enumerate(rows, start):
            if not any(v.strip() for v in row):
                continue
            if len(row) == 138 and not row[137].strip():
                row = row[:137]  # (a trailing comma)
            if len(row) != 137:  # (one more: a decimal comma splits a number, and every later point moves)
                _skip(skipped, f"{path} line {n}", ValueError(f"{len(row)} fields, not 137 (a name and 68 x, y pairs)"
                                                              + (" (cut short?)" if len(row) < 137 else "")))
                continue
            name = row[0]
            img = next((d / name for d in dirs if (d / name).is_file()), None)
            if img is None:
                _skip(skipped, f"{path} line {n}", ValueError(f"no image {name!r} beside the CSV or in a folder beside it"))
                continue
            try:
                pts = face_points(row[1:137], (68,))
            except ValueError as e:
                _skip(skipped, f"{path} line {n}", e)
                continue
            out.append(Sample(img, pts, subset=path.stem, split="train", kind="csv68"))
    if not out:
        bad = skipped[before:] if skipped is not None else []
        raise ValueError(f"no usable rows in {path}: {len(bad)} skipped, e.g. {bad[0]}" if bad
                         else f"no usable rows in {path}")
    return out


def load(spec: str, skipped: list[str] | None = None) -> list[Sample]:
    """Parse ``KIND=PATH`` (kinds: 300w, wflw, csv68)."""
    if "=" not in spec:
        raise ValueError(f"--data wants KIND=PATH (300w, wflw, csv68), got {spec!r}")
    kind, path = spec.split("=", 1)
    kind = kind.strip().lower()
    if not path.strip():
        raise ValueError(f"--data {spec}: no PATH after '='")
    if kind in ("300w", "pts"):
        return load_pts_dir(path, skipped)
    if kind == "wflw":
        return load_wflw(path, skipped)
    if kind == "csv68":
        return load_csv68(path, skipped=skipped)
    raise ValueError(f"unknown data kind {kind!r} (use 300w, wflw or csv68)")


def load_all(specs: list[str], log=None) -> list[Sample]:
    """Every ``KIND=PATH`` in turn; an unusable one raises ``UsageError`` naming it. A bad label
    file or line inside one is skipped, each said through ``log`` as a ``skipped:`` line."""
    from ..errors import UsageError

    samples, skipped = [], []
    for spec in specs:
        try:
            samples += load(spec, skipped)
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from None
    for line in skipped:
        (log or to_stderr)(f"skipped: {line}")
    seen, unique, moved = {}, [], 0
    for s in samples:  # --data d --data d/helen: each face once
        key = (os.path.realpath(s.image), s.landmarks.tobytes())
        if key not in seen:
            seen[key] = len(unique)
            unique.append(s)
        elif s.split == "test" and unique[seen[key]].split != "test":  # (in a train and a test list: a test
            unique[seen[key]] = s  # face, never trained on, as eval measures it)
            moved += 1
    if len(unique) < len(samples):
        (log or to_stderr)(f"note: {len(samples) - len(unique)} face(s) given twice by --data are counted once"
                           + (f" ({moved} in both a training and a test list: as test faces)" if moved else ""))
    return unique

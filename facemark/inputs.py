"""Turning command-line inputs (files, directories, globs) into images and output paths."""
from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .imageio import IMAGE_EXTS


@dataclass(frozen=True)
class InputImage:
    path: Path  # where to read it
    rel: PurePosixPath  # its place in the output tree (the input's own layout, mirrored)


def _safe_rel(p: Path) -> PurePosixPath:
    """A relative path as given (without '..' or an anchor), else the bare file name."""
    if not p.is_absolute() and ".." not in p.parts:
        return PurePosixPath(p.as_posix())
    return PurePosixPath(p.name)


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand(args: list[str]) -> tuple[list[InputImage], list[str]]:
    """Files as given; directories recursively (image extensions only); globs expanded as a
    shell would. Output paths mirror a file's path as given, or a path below a given directory.
    Returns the images (first occurrence wins) and the arguments that matched nothing."""
    found: list[InputImage] = []
    missing: list[str] = []
    seen: set[Path] = set()

    def add(path: Path, rel: PurePosixPath) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputImage(path, rel))

    for arg in args:
        p = Path(arg)
        if p.is_dir():
            # facemark's own annotated outputs are not inputs (a second run over the same folder).
            for f in sorted(x for x in p.rglob("*") if x.is_file() and x.suffix.lower() in IMAGE_EXTS
                            and not x.stem.endswith(".annotated")):
                add(f, PurePosixPath(f.relative_to(p).as_posix()))
        elif p.is_file():
            add(p, PurePosixPath(p.name) if p.is_absolute() else _safe_rel(p))
        elif _has_magic(arg):  # a quoted glob: the same as if the shell had expanded it
            hits = [h for h in sorted(Path(x) for x in glob.glob(arg, recursive=True)) if h.is_file()]
            if not hits:
                missing.append(arg)
            for h in hits:
                add(h, _safe_rel(h))
        else:
            missing.append(arg)
    return found, missing


def output_stems(images: list[InputImage]) -> list[PurePosixPath]:
    """``<relative dir>/<stem>`` for each image; where two would collide (``a.jpg`` and ``a.png``
    in one folder) both keep their extension (``a.jpg``, ``a.png``) instead."""
    stems = [im.rel.with_suffix("") for im in images]
    counts = Counter(stems)
    return [im.rel if counts[s] > 1 else s for im, s in zip(images, stems)]

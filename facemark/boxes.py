"""Boxes the user already has: a ``--boxes`` file (``GivenBoxes``), boxes and keypoints given to the
API, and the checks that make a bad one a clear error of that image (``BoxError``), not landmarks
in empty space."""
from __future__ import annotations

import numbers
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .detector import Detection
from .errors import FacemarkError
from .shards import json_or_lines

MAX_BOXES = 10_000  # given boxes per image: more than the largest crowd photo's faces


class BoxError(FacemarkError, ValueError):
    """A given box that cannot be used (not four finite numbers with x2 > x1 and y2 > y1)."""


def shown(b) -> str:
    """A box as a message shows it: plain rounded numbers, not NumPy 2's ``np.float64(177.78346252441406)``."""
    try:
        arr = np.asarray(b, np.float64)
    except (TypeError, ValueError, OverflowError):
        return repr(b)
    return repr(np.round(arr, 2).tolist()) if arr.ndim == 1 else repr(b)


def check_box(b, where: str = "box") -> np.ndarray:
    """``[x1, y1, x2, y2]`` or ``[x1, y1, x2, y2, score]`` as five floats, or ``BoxError`` saying why."""
    if isinstance(b, Detection):
        b = [*np.asarray(b.box).reshape(-1).tolist(), b.score]
    if isinstance(b, (str, bytes, dict)) or not hasattr(b, "__len__"):
        raise BoxError(f"{where} must be [x1, y1, x2, y2] (optionally a score), not {b!r}")
    items = list(b) if isinstance(b, (list, tuple)) else []
    if any(isinstance(v, (bool, np.bool_)) for v in items) or getattr(b, "dtype", None) == np.bool_:
        raise BoxError(f"{where} must hold numbers, not true/false: {b!r}")
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in items):
        raise BoxError(f"{where} must be [x1, y1, x2, y2] (optionally a score), not {b!r}")
    if len(items) == 5 and not isinstance(items[4], numbers.Real) and all(isinstance(v, numbers.Real) for v in items[:4]):
        raise BoxError(f"the score of {where} must be a number, not {items[4]!r}")
    if any(not isinstance(v, numbers.Real) for v in items) or getattr(getattr(b, "dtype", None), "kind", "f") not in "iuf":
        raise BoxError(f"{where} must hold numbers only, not {b!r}")  # "12" is a typo or a wrong file, not 12
    try:
        arr = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise BoxError(f"{where} must hold numbers only, not {b!r}") from None
    if arr.ndim != 1 or arr.size not in (4, 5):
        raise BoxError(f"{where} must be [x1, y1, x2, y2] (optionally a score), not {b!r}")
    if not np.all(np.isfinite(arr)) or np.abs(arr[:4]).max() > 1e7:
        raise BoxError(f"{where} has a non-finite or absurdly large number: {shown(b)}")
    if arr[2] <= arr[0] or arr[3] <= arr[1]:
        raise BoxError(f"{where} is empty or inverted (needs x2 > x1 and y2 > y1): {shown(b)}")
    if min(arr[2] - arr[0], arr[3] - arr[1]) < 1.0:
        raise BoxError(f"{where} is smaller than a pixel, no face: {shown(b)}")
    return np.append(arr, 1.0) if arr.size == 4 else arr


OWN_POINTS_REACH = 0.5  # box sides the centre of facemark's own five points may lie outside their box


def check_points(p, where: str = "points", box=None, reach: float = 0.0) -> np.ndarray:
    """Five (x, y) keypoints (eyes, nose, mouth corners) as a (5, 2) array, or ``BoxError`` saying
    why. Points that are not finite stand for none (the face is cropped from its box). With the
    face's ``box``, each point must lie within a box side of it, their centre inside it (a box
    that does not hold the face's middle is not its box, whatever the detector's convention) and
    their spread a tenth of its side or more: points in other units (0-1, or from the box's
    corner, as some detectors give them) would crop somewhere else entirely. ``reach``: how many
    box sides the centre may lie outside it. Points of facemark's own 98 take half a side: a face
    cut by the image's edge keeps the box of what is seen, while its points go on past the edge."""
    try:
        arr = np.asarray(p, np.float64)
    except (TypeError, ValueError, OverflowError):
        raise BoxError(f"{where} must be 5 (x, y) points (eyes, nose, mouth corners) of numbers, not {p!r}") from None
    if arr.shape != (5, 2):
        raise BoxError(f"{where} must be 5 (x, y) points (eyes, nose, mouth corners), not shape {arr.shape}")
    if np.abs(arr[np.isfinite(arr)]).max(initial=0.0) > 1e7:
        raise BoxError(f"{where} has an absurdly large number")
    if box is not None and np.isfinite(arr).all():
        x1, y1, x2, y2 = np.asarray(box, np.float64)[:4]
        side, centre = max(x2 - x1, y2 - y1), arr.mean(0)
        if (arr < [x1 - side, y1 - side]).any() or (arr > [x2 + side, y2 + side]).any() or not spread_out(arr, box) \
                or not (x1 - reach * side <= centre[0] <= x2 + reach * side
                        and y1 - reach * side <= centre[1] <= y2 + reach * side):
            raise BoxError(f"{where} do not lie on their box {np.round([x1, y1, x2, y2], 1).tolist()} (points in "
                           f"image pixels are needed, not 0-1 or from the box's corner)")
        if mirrored(arr, box):
            raise BoxError(f"{where} are in mirrored order (left and right swapped): give the eye on the image's "
                           f"left first, then the other eye, the nose, and the mouth corners left, right, as seen "
                           f"in the image")
    return arr


def mirrored(p: np.ndarray, box) -> bool:
    """Whether five points run the other way round: a detector that numbers eyes and mouth corners
    from the subject's side. No turn of the image makes a face's left and right change places, and
    a similarity fit of such points crops far from the face (points thousands of pixels off).
    Clearly the other way round only: a profile's eyes nearly meet, and their order is noise."""
    try:
        x1, y1, x2, y2 = np.asarray(box, np.float64)[:4]
        p = np.asarray(p, np.float64)
    except (TypeError, ValueError):
        return False  # (a bad box: check_box says so)
    side = max(x2 - x1, y2 - y1)
    eyes, mouth = p[1] - p[0], p[4] - p[3]
    down = (p[3] + p[4]) / 2 - (p[0] + p[1]) / 2
    turn = min(eyes[0] * down[1] - eyes[1] * down[0], mouth[0] * down[1] - mouth[1] * down[0])
    return bool(turn < -0.03 * side * side)


def check_inside(dets: list[Detection], width: int, height: int, name: str = "boxes") -> list[Detection]:
    """``dets``, or ``BoxError`` for one that does not overlap the image at all: landmarks there
    would be a model's guess in empty space (pixel centres are 0 .. w-1; a box may reach past
    the border). Facemark's own points whose middle lies outside their box (``OWN_POINTS_REACH``)
    must lie so toward an image edge the box nearly touches: a face cut by that edge."""
    for j, d in enumerate(dets):
        x1, y1, x2, y2 = np.asarray(d.box, np.float64)[:4]
        if x2 <= -0.5 or y2 <= -0.5 or x1 >= width - 0.5 or y1 >= height - 0.5:
            raise BoxError(f"{name}[{j}] {np.round([x1, y1, x2, y2], 1).tolist()} lies outside the {width}x{height} image")
        if max(x2 - x1, y2 - y1) > 10 * max(width, height):  # the face would be a speck in its own crop
            raise BoxError(f"{name}[{j}] {np.round([x1, y1, x2, y2], 1).tolist()} is over ten times the size of the "
                           f"{width}x{height} image: not a face's box")
        if d.template == "landmarks98" and d.kps is not None and np.isfinite(d.kps).all() \
                and not _cut_by_an_edge(np.asarray(d.kps, np.float64).mean(0), (x1, y1, x2, y2), width, height):
            raise BoxError(f"{name}[{j}]'s points do not lie on their box {np.round([x1, y1, x2, y2], 1).tolist()} "
                           f"(points in image pixels are needed, not 0-1 or from the box's corner)")
    return dets


def _cut_by_an_edge(centre: np.ndarray, box, width: int, height: int) -> bool:
    """Whether the middle of a face's points lies inside its box, or outside it only on a side where
    the box nearly touches the image's edge (within a quarter of its side)."""
    x1, y1, x2, y2 = box
    near = 0.25 * max(x2 - x1, y2 - y1)
    for c, lo, hi, size in ((centre[0], x1, x2, width), (centre[1], y1, y2, height)):
        if (c < lo and lo - -0.5 > near) or (c > hi and size - 0.5 - hi > near):
            return False
    return True


def _given_face(f):
    """One face of a facemark output as a given box: ``[x1, y1, x2, y2, score]``, and where it has
    its 98 finite points, their five (eyes, nose, mouth corners), so the crop follows the face's
    roll and eye line as the video tracker's does (a box alone crops rougher, so a run's own output
    fed back gave other points). Anything else is kept for ``check_box`` to judge."""
    if not (isinstance(f, dict) and isinstance(f.get("box"), list)):
        return f
    box = f["box"] + [f.get("score", 1.0)]
    try:
        pts = np.asarray(f.get("landmarks"), np.float64)
    except (TypeError, ValueError):
        return box
    if pts.shape != (98, 2) or not np.isfinite(pts).all():
        return box
    from .layouts import five_points

    five = five_points(pts)
    if not spread_out(five, box) or mirrored(five, box):  # a model's points collapsed together (an untrained
        return box  # one's), or in mirrored order: the box alone
    return {"box": box, "points": five.tolist()}


def spread_out(points: np.ndarray, box) -> bool:
    """Whether five points span a tenth of their box's side or more: fewer are no face's eyes,
    nose and mouth (0-1 units, or a model's points collapsed together)."""
    try:
        x1, y1, x2, y2 = np.asarray(box, np.float64)[:4]
    except (TypeError, ValueError):
        return True  # (a bad box: check_box says so)
    return bool(np.ptp(np.asarray(points, np.float64), 0).max() >= 0.1 * max(x2 - x1, y2 - y1))


def _detection(b, where: str) -> Detection:
    """One entry of a boxes file: a box (``[x1, y1, x2, y2(, score)]``), or a face of facemark's own
    output as ``_given_face`` made it (its box and its eyes, nose and mouth)."""
    if isinstance(b, dict) and "points" in b:
        arr = check_box(b["box"], where)
        return Detection(arr[:4].copy(), float(arr[4]), check_points(b["points"], f"{where}: its points", arr,
                                                                     OWN_POINTS_REACH), "landmarks98")
    arr = check_box(b, where)
    return Detection(arr[:4].copy(), float(arr[4]))


def face_as_detection(f: dict, where: str = "face") -> Detection:
    """A face of a facemark output (a dict of ``read``'s rows) as a detection: its box and score,
    and its five points where it has its 98; ``BoxError`` saying what is wrong otherwise."""
    return _detection(_given_face(f), where)


@dataclass
class GivenBoxes:
    """Boxes supplied by the user, keyed by image path (as given, or its file name). The file's
    shape is checked on reading; each image's boxes when that image is processed, so one bad
    entry fails that image alone."""

    boxes: dict[str, object]
    name: str = "boxes"
    source: str | None = None  # the file read (from_file): a run given the same file keeps these
    piped: str | None = None  # read from a program's pipe: its bytes' digest (the pipe's name changes each run)
    _real: dict | None = field(default=None, init=False, repr=False)  # real path -> entry, built when needed
    _files: dict = field(default_factory=dict, init=False, repr=False)  # entry -> the files it names here

    def __repr__(self) -> str:  # (the dataclass's printed every box: megabytes in a log line or a notebook)
        return f"GivenBoxes({len(self.boxes)} image(s), source={self.source!r})"

    @classmethod
    def from_file(cls, path: str | Path) -> "GivenBoxes":
        """Read ``{"img.jpg": [[x1,y1,x2,y2(,score)], ...]}``, facemark/v1 result documents (a list,
        or one per line as ``facemark detect`` prints them), a ``--format jsonl``/``parquet`` shard,
        or a folder of facemark outputs (what ``facemark.results.read`` reads). ``ValueError``
        ("bad boxes file PATH: why") for a file that is none of these."""
        if not Path(path).exists():
            raise FileNotFoundError(path)
        try:
            return cls._read(path)
        except (ValueError, KeyError, TypeError, RecursionError) as e:  # (JSON errors are ValueErrors)
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"bad boxes file {path}: {why}") from None

    @classmethod
    def _read(cls, path: str | Path) -> "GivenBoxes":
        from .imageio import ImageError, check_regular_file

        piped = None
        try:
            if _is_pipe(path):  # (--boxes <(jq ...) or /dev/stdin: read once, here)
                piped = _read_pipe(path)
            elif not Path(path).is_dir():
                check_regular_file(Path(path), "a boxes file")  # a FIFO would block; also the 1 GiB limit
        except ImageError as e:
            raise ValueError(str(e)) from None
        from .imageio import IMAGE_EXTS

        if piped is None and Path(path).suffix.lower() in IMAGE_EXTS and Path(path).is_file():
            raise ValueError("that is an image: give a JSON file of boxes per image ({\"img.jpg\": [[x1, y1, x2, y2], "
                             "...]}) or facemark's outputs")
        try:
            if piped is not None:
                data = json_or_lines(piped)
            elif Path(path).is_dir():  # an --out folder: its rows, newest first where an image is twice
                from .shards import iter_results

                data = list(iter_results(path))
                if not data:
                    raise ValueError(f"{path} holds no facemark output")
            elif Path(path).suffix == ".parquet":  # a --format parquet shard
                from .shards import read_shard

                data = read_shard(path)
            else:
                data = json_or_lines(Path(path).read_bytes())
        except RecursionError:
            raise ValueError("nested too deeply") from None
        one = isinstance(data, dict) and ("schema" in data or {"path", "faces"} <= data.keys())  # one document or row
        docs = data if isinstance(data, list) else [data] if one else None
        if docs is not None:
            out = {}
            for d in docs:  # facemark/v1 documents, or result rows of --format jsonl/parquet
                name = d.get("image", d.get("path")) if isinstance(d, dict) else None
                if isinstance(d, dict) and d.get("error") and isinstance(name, str):
                    continue  # a failed image has no boxes to give
                if not isinstance(d, dict):  # (a bare list of boxes: for which image?)
                    raise ValueError('a boxes file maps image names to their boxes: {"photo.jpg": [[x1, y1, x2, y2], '
                                     '...]} (or is facemark output); this one is a list of ' + type(d).__name__ + 's')
                if not isinstance(name, str) or not isinstance(d.get("faces"), list):
                    raise ValueError("a result document needs an image name and a faces list")
                out[name] = [_given_face(f) for f in d["faces"]]
            data = out
        if not isinstance(data, dict):
            raise ValueError("boxes file must map image names to lists of [x1, y1, x2, y2]")
        crowded = next(((k, len(v)) for k, v in data.items() if isinstance(v, list) and len(v) > MAX_BOXES), None)
        if crowded is not None:  # (millions of boxes for one image: hours at gigabytes, a file gone wrong)
            raise ValueError(f"{crowded[0]} has {crowded[1]:,} boxes, over the {MAX_BOXES:,} one image may have")
        import hashlib

        return cls({str(k): v for k, v in data.items()}, source=os.path.realpath(path),
                   piped=None if piped is None else hashlib.sha256(piped).hexdigest()[:16])

    def _base(self) -> str:
        """The folder a relative entry is also read from: the boxes file's (or --out folder's)."""
        if self.piped is not None:  # (no folder: a pipe's name is /proc/PID/fd/pipe:[N])
            return ""
        return self.source if self.source and os.path.isdir(self.source) else os.path.dirname(self.source or "")

    def entry(self, key: str, real: bool = True, image: str | None = None) -> str | None:
        """The entry for an image: its path as given; else its file name (or, for a ``key`` that is
        no path from here, such as a run's output name, ``key`` itself), unless that entry names
        another file that is there (``a.jpg``'s boxes are not ``other/a.jpg``'s); else, with
        ``real`` (a path that names the file from here), the same file spelled another way
        (absolute or relative, through a link: a run's own output fed back in; a relative one read
        from the working folder, then from the boxes file's). ``image``: the image's own path,
        for that check where ``key`` is not it."""
        exact = next((k for k in (key, Path(key).as_posix()) if k in self.boxes), None)
        if exact is not None and real:
            return exact
        name = exact if exact is not None else Path(key).name
        mine = image if image is not None else key if real else None
        if name in self.boxes and not (mine is not None and self._another_file(name, mine)):
            return name
        if not real:
            return None
        if self._real is None:  # built once, at the first image not found as spelled, and
            real_paths: dict = {}  # published whole: threads sharing a landmarker never see it half-built
            base = self._base()
            for k in self.boxes:
                real_paths.setdefault(os.path.realpath(k), k)
                if base and not os.path.isabs(k):  # (also as read from the boxes file's own folder)
                    real_paths.setdefault(os.path.realpath(os.path.join(base, k)), k)
            self._real = real_paths
        return self._real.get(os.path.realpath(key))

    def _another_file(self, entry: str, image: str) -> bool:
        """Whether ``entry``, read as a path (from the working folder, then from the boxes file's),
        names a file here that is not ``image``. By file identity, so a hard link or another
        spelling of the image (a case-blind file system) is the image; what an entry names is
        looked up once, so a run pays a stat per image only for entries that name files."""
        named = self._files.get(entry)
        if named is None:
            base = self._base()
            ids = set()
            for p in (entry, os.path.join(base, entry)) if base and not os.path.isabs(entry) else (entry,):
                try:
                    st = os.stat(p)
                except (OSError, ValueError):
                    continue
                if stat.S_ISREG(st.st_mode):
                    ids.add((st.st_dev, st.st_ino))
            self._files[entry] = named = frozenset(ids)
        if not named:
            return False
        try:
            st = os.stat(image)
        except (OSError, ValueError):
            return True
        return (st.st_dev, st.st_ino) not in named

    def missing(self, image: str) -> str:
        """Why ``image`` has no entry, for its message: an entry of its file name that names
        another file, or nothing to add."""
        name = Path(image).name
        if name in self.boxes:
            return f" (its entry {name!r} is another file of that name)"
        same = next((k for k in self.boxes if Path(k).name == name), None)  # (facemark's outputs: full paths)
        return f" (its entry {same} is another file of that name)" if same is not None else ""

    def has(self, key: str, real: bool = True, image: str | None = None) -> bool:
        return self.entry(key, real, image) is not None

    def lookup(self, key: str, real: bool = True, image: str | None = None) -> list[Detection]:
        """The boxes of one image (none if it has no entry); ``BoxError`` names a bad one."""
        k = self.entry(key, real, image)
        return [] if k is None else self.boxes_of(k)

    def boxes_of(self, k: str) -> list[Detection]:
        """The boxes of entry ``k``; ``BoxError`` names a bad one."""
        value = self.boxes[k]
        if not isinstance(value, list):
            raise BoxError(f"boxes for {k!r} must be a list of [x1, y1, x2, y2], not {value!r}")
        return [_detection(b, f"box {j} of {k!r}") for j, b in enumerate(value)]


def _is_pipe(path: str | os.PathLike) -> bool:
    """A pipe from a program (``<(jq ...)``, ``/dev/stdin`` after ``|``): it has a writer, or had
    one, so it ends. Not a named FIFO (``mkfifo``), which nobody may ever write to."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode) and os.path.basename(os.path.realpath(path)).startswith("pipe:[")
    except (OSError, ValueError):
        return False


def _read_pipe(path: str | os.PathLike) -> bytes:
    """A pipe's bytes, to their end, within the 1 GiB input limit."""
    from .imageio import MAX_BYTES, ImageError

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise ImageError(f"{path} holds over facemark's 1 GiB input limit")
    return data


def read_boxes(path: str | os.PathLike) -> GivenBoxes:
    """A ``--boxes`` file, or ``UsageError`` in one line saying what is wrong with it."""
    from .errors import UsageError

    try:
        return GivenBoxes.from_file(path)
    except FileNotFoundError:
        raise UsageError(f"boxes file not found: {path}") from None
    except ValueError as e:  # (says the file and why)
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"bad boxes file {path}: {e.strerror or e}") from None

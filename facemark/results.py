"""Result objects and the ``facemark/v1`` JSON document (``document``, ``validate``). The other
outputs' rows: ``facemark video``'s JSON lines are made by ``video.frame_record`` (checked by
``validate_frame`` here), shard rows by ``shards.row``; ``read`` loads them all."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

SCHEMA = "facemark/v1"


@dataclass
class Face:
    """One face: coordinates in the original image, 0-based pixels (pixel centres at integers)."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (98, 2) WFLW-98 order
    landmarks68: np.ndarray  # (68, 2) iBUG-68 order
    # False for a given box around which the detector saw no face: cropped from the box alone, its
    # points may be far off (not in the JSON; the command line names such images at the end).
    found: bool = field(default=True, repr=False)

    def __repr__(self) -> str:  # print(faces) shows what each face is, not 166 points
        box = ", ".join(f"{v:.1f}" for v in np.asarray(self.box, np.float64).reshape(-1))
        score = "None" if self.score is None else f"{float(self.score):.3f}"  # (a Face made by hand may have none)
        return f"Face(box=[{box}], score={score}, landmarks={len(self.landmarks)} points)"

    def __eq__(self, other) -> bool:  # the dataclass's own == would compare arrays element-wise and fail
        if not isinstance(other, Face):
            return NotImplemented
        same_score = self.score == other.score if self.score is None or other.score is None \
            else float(self.score) == float(other.score)  # (a Face made by hand may have no score, as its repr allows)
        return same_score and all(
            np.array_equal(a, b) for a, b in ((self.box, other.box), (self.landmarks, other.landmarks),
                                               (self.landmarks68, other.landmarks68)))

    __hash__ = None  # mutable arrays: not a dict key

    @classmethod
    def from_dict(cls, d: dict) -> "Face":
        """A face of a facemark output (``to_dict``'s, a document's or a shard row's) as a ``Face``."""
        try:
            face = cls(_numbers(d["box"], "box"), float(_numbers(d["score"], "score")),
                       _numbers(d["landmarks"], "landmarks"), _numbers(d["landmarks68"], "landmarks68"))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a face of a facemark output (box, score, landmarks, landmarks68): {e}") from None
        if face.box.shape != (4,) or face.landmarks.shape != (98, 2) or face.landmarks68.shape != (68, 2):
            raise ValueError("not a face of a facemark output: box (4), landmarks (98, 2) and landmarks68 (68, 2)")
        if face.box[2] < face.box[0] or face.box[3] < face.box[1]:  # (as ``validate`` says: drawn or cropped, it was a face turned inside out)
            raise ValueError("not a face of a facemark output: its box has x2 < x1 or y2 < y1")
        return face

    def to_dict(self, decimals: int | None = 2) -> dict:
        """JSON-ready: coordinates to ``decimals`` places (a hundredth of a pixel by default; None:
        as they are), the score to 4 places or more where ``decimals`` asks for more."""
        if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer))
                                     or decimals < 0):
            raise ValueError(f"decimals: a whole number of places, 0 or more (or None), not {decimals!r}")
        def r(a):
            a = np.asarray(a, np.float64)
            return (a if decimals is None else np.round(a, decimals)).tolist()

        score = float(self.score) if decimals is None else round(float(self.score), max(4, decimals))
        return {"box": r(self.box), "score": score, "landmarks": r(self.landmarks), "landmarks68": r(self.landmarks68)}


def _numbers(value, name: str) -> np.ndarray:
    """Finite numbers, as facemark writes them: text, true/false and NaN became numbers or passed
    (a NaN box failed later, in drawing or cropping)."""
    a = np.asarray(value)
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} holds {'true/false' if a.dtype.kind == 'b' else 'something other than numbers'}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds a value that is not finite")
    return a


def document(image: str, width: int, height: int, model: str, faces: list[Face]) -> dict:
    return {"schema": SCHEMA, "image": image, "width": int(width), "height": int(height), "model": model,
            "faces": [f.to_dict() for f in faces]}


def dumps(doc: dict) -> str:
    """Strict JSON (no NaN/Infinity, which are not JSON): ``ValueError`` if a number is not finite."""
    return json.dumps(doc, allow_nan=False)


def json_numbers(obj):
    """``obj`` with every NaN or infinite float as None: JSON has no NaN, and a strict reader
    (``json.loads(..., parse_constant=...)``, most other languages) refuses Python's bare ``NaN``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_numbers(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_numbers(v) for v in obj]
    return obj


def _points_errors(value, n: int, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) != n:
        return [f"{where} must be a list of {n} [x, y] pairs"]
    for p in value:
        if not (isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p)):
            return [f"{where} holds a bad point {p!r}"]
    return []


def _is_number(v) -> bool:
    """A JSON number facemark could have written: finite, and within a float's range (JSON
    allows integers of any length; ``math.isfinite`` raises on those past 1e308)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def validate(doc) -> list[str]:
    """Problems with a ``facemark/v1`` document (empty list: valid)."""
    if not isinstance(doc, dict):
        return ["document must be an object"]
    errors = []
    expected = {"schema": str, "image": str, "width": int, "height": int, "model": str, "faces": list}
    for key, typ in expected.items():
        if key not in doc:
            errors.append(f"missing {key!r}")
        elif not isinstance(doc[key], typ) or isinstance(doc[key], bool):
            errors.append(f"{key!r} must be {typ.__name__}")
    if errors:
        return errors
    if doc["schema"] != SCHEMA:
        errors.append(f"schema must be {SCHEMA!r}")
    if doc["width"] <= 0 or doc["height"] <= 0:
        errors.append("width and height must be positive")
    for i, f in enumerate(doc["faces"]):
        where = f"faces[{i}]"
        if not isinstance(f, dict) or set(f) != {"box", "score", "landmarks", "landmarks68"}:
            errors.append(f"{where} must have exactly box, score, landmarks, landmarks68")
            continue
        b = f["box"]
        if not (isinstance(b, list) and len(b) == 4 and all(_is_number(v) for v in b)):
            errors.append(f"{where}.box must be [x1, y1, x2, y2]")
        elif b[2] < b[0] or b[3] < b[1]:
            errors.append(f"{where}.box has x2 < x1 or y2 < y1")
        if not _is_number(f["score"]):
            errors.append(f"{where}.score must be a number")
        errors += _points_errors(f["landmarks"], 98, f"{where}.landmarks")
        errors += _points_errors(f["landmarks68"], 68, f"{where}.landmarks68")
    return errors


def validate_frame(rec) -> list[str]:
    """Problems with one ``facemark video --json`` line (empty list: valid)."""
    if not isinstance(rec, dict) or set(rec) - {"image", "cut"} != {"frame", "time", "faces"}:
        return ["a frame record has exactly frame, time, faces (and image, for a folder's frames; cut, at a cut)"]
    errors = [] if isinstance(rec.get("image", ""), str) else ["image must be the frame's file name"]
    if rec.get("cut", True) is not True:
        errors.append("cut is true where it is given (a frame that starts a new shot)")
    if not isinstance(rec["frame"], int) or isinstance(rec["frame"], bool) or rec["frame"] < 0:
        errors.append("frame must be a non-negative integer")
    if not _is_number(rec["time"]) or rec["time"] < 0:
        errors.append("time must be a non-negative number of seconds")
    if not isinstance(rec["faces"], list):
        return errors + ["faces must be a list"]
    for i, f in enumerate(rec["faces"]):
        if not isinstance(f, dict) or "id" not in f or not isinstance(f["id"], int):
            errors.append(f"faces[{i}] needs an integer id")
            continue
        doc = {"schema": SCHEMA, "image": "", "width": 1, "height": 1, "model": "",
               "faces": [{k: v for k, v in f.items() if k != "id"}]}
        errors += [e.replace("faces[0]", f"faces[{i}]") for e in validate(doc)]
    return errors


def read(path, on_error=None) -> list[dict]:
    """Every image's result from any facemark output: a JSON document, a folder of them, or
    ``--format jsonl`` / ``parquet`` shards. One row per image (see ``facemark.shards.row``); in a
    folder, files that are not facemark outputs go to ``on_error(message)`` and are skipped."""
    from .shards import read as read_rows

    return read_rows(path, on_error)

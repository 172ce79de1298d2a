"""What a result cannot say about itself: a face that looks turned, a big photo searched shrunk,
a given box with no face around it. The command line ends a run with a note naming an image; the
Python API warns (``FacemarkWarning``) at the caller's line."""
from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np

from . import align
from .boxes import GivenBoxes
from .detector import Detection, RetinaFace
from .errors import FacemarkWarning

if TYPE_CHECKING:
    from .landmarker import FaceLandmarker

LOOKS_TURNED_DEG = 65.0  # roll past which a note suggests --turned (scripts/rotation_check.py's "said turned %")


# An image (or video frame) under this on its short side, searched at its own size with no face
# found, may hold one too small to see there (``min_face=20`` looks at it twice as large).
SMALL_SIDE = int(4 * RetinaFace.NET_MIN_FACE)


def looks_turned(fl: "FaceLandmarker", found: list[Detection]) -> bool:
    """Whether a face was found turned so far (by the detector's points) that its landmarks are
    unreliable without ``turned``: sideways faces read at 14-18 % NME (the model card's rotation
    table), and nothing in the output said so."""
    if fl.turned or isinstance(fl.detector, GivenBoxes):  # (given boxes: their points set the crop; nothing searched)
        return False
    return any(d.kps is not None and not d.quarter_turns and abs(align.roll_degrees(d.kps)) > LOOKS_TURNED_DEG
               for d in found)  # (one found again in the turn it stands upright in is read upright: FaceLandmarker._upright)


def may_miss_small(fl: "FaceLandmarker", image: np.ndarray, faces: list) -> bool:
    """Whether a photo searched at under half its size may hold faces too small to be found there:
    none was found, or the smallest found is under 1.5 times the least size the search finds (a
    group photo's faces are of a size: some just over the limit, others just under it)."""
    det = fl.detector
    if not isinstance(det, RetinaFace) or det.min_face is not None:  # (a min_face of the user's sets the scale)
        return False
    scale = det.scale_for(*image.shape[:2])
    if scale > 0.5 or min(image.shape[:2]) < det.NET_MIN_FACE / 2:  # (too thin to hold a face min_face finds)
        return False
    sides = [max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces]
    return not sides or min(sides) < 1.5 * det.NET_MIN_FACE / scale


# The API's texts are fixed, so Python's filters show each once per line of the caller's code
# unless told otherwise (``warnings.simplefilter("always")``): a loop over a million photos gets
# one line, not a million. What varies goes in the warning's ``detail``.
BOX_ALONE = ("a given box had no face the detector could find around it: such a box is cropped from the box "
             "alone, and its points may be far off (the README's Faces given as boxes)")
TURNED = ("a face looks turned sideways or upside down (by the detector's eye line), and such faces' points are "
          "unreliable: FaceLandmarker(turned=True) searches each quarter-turn and reads them upright")
SHRUNK = ("an image searched shrunk to {side} px on the long side found no face, or only faces near the least size "
          "found there: smaller ones go unseen; FaceLandmarker(min_face=40) finds faces down to 40 px, more slowly")


def note(text: str, detail: str = "") -> None:
    """A ``FacemarkWarning`` at the caller's line (the command line prints it as one line, with its
    ``detail``)."""
    warnings.warn(FacemarkWarning(text, detail), stacklevel=callers_level())


def note_of_a_file(text: str) -> None:
    """A note naming one file (its damage, its odd values), at the caller's line, kept in no
    warnings registry: Python keeps one entry per distinct text it has shown from a line, so a
    service fed a million damaged uploads kept a million. Each file's note is shown each time
    (Python's filters still decide: "ignore", "error")."""
    frame, _ = _callers_frame()
    g = frame.f_globals
    warnings.warn_explicit(FacemarkWarning(text), FacemarkWarning, frame.f_code.co_filename, frame.f_lineno,
                           module=g.get("__name__"), registry=None, module_globals=g)


def callers_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside facemark (the caller's
    line, however many facemark frames, comprehensions included, lie between). From a thread
    that facemark's caller started (a ThreadPoolExecutor's map of ``detect``), that frame is the
    thread library's: Python 3.11 cannot skip it."""
    return _callers_frame()[1]  # (1: callers_level's caller's own line, as warnings.warn counts)


def _callers_frame():
    """The first frame outside facemark, above the function that asks, and how many frames up it
    is from there (a thread's stack ends in the threading library's frames: never all facemark's)."""
    frame, level = sys._getframe(2), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] == "facemark":
        frame, level = frame.f_back, level + 1
    return frame, level

"""facemark: faces and their 98 facial landmarks (WFLW layout) in images and video.

    >>> from facemark import FaceLandmarker, draw
    >>> fl = FaceLandmarker()                      # model="direct" | "hybrid" | "hourglass" | PATH
    >>> faces = fl.detect("photo.jpg")             # or a BGR/grey/BGRA numpy array
    >>> faces[0].box, faces[0].score               # x1, y1, x2, y2 in image pixels; detector score
    >>> faces[0].landmarks                         # (98, 2) WFLW order; .landmarks68: iBUG-68 order
    >>> fl.landmarks(image, boxes=[[x1, y1, x2, y2]])   # your own boxes instead of the detector
    >>> annotated = draw(image, faces)

Names: ``FaceLandmarker`` (``detect``, ``detect_batch``, ``landmarks``, ``landmarks_batch``),
``Face`` (one face's result), ``Detection`` (what a detector of your own returns: box, score and
optionally 5 keypoints), ``draw``, ``FacemarkWarning`` (what facemark warns with); ``facemark.results.read``
loads what the CLI wrote. Modules load on first use (``facemark.track.Tracker`` after ``import facemark``).
"""
from __future__ import annotations

import os as _os
import sys as _sys

if "torch" not in _sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(_os.environ):
    # PyTorch's CPU threads (GNU OpenMP) otherwise spin for milliseconds at each op's end waiting
    # for the others: with other programs busy on the cores, 4-16x fewer forward passes got done
    # (the slowest tenth 0.13-1.4 s against 10-14 ms idle). A short spin, then sleep, keeps the idle
    # speed, which sleeping at once (PASSIVE) did not always: scripts/torch_contention.py.
    # Read once, as torch loads its OpenMP: later is too late.
    _os.environ["GOMP_SPINCOUNT"] = "1000"

__version__ = "0.2.0"  # (pyproject.toml reads it)
DEFAULT_MODEL = "direct"  # the best accuracy per millisecond of a whole frame (README, Models)

__all__ = ["FaceLandmarker", "Face", "Detection", "draw", "FacemarkWarning", "DEFAULT_MODEL", "__version__"]


def __dir__():
    return sorted(__all__)


def __getattr__(name):
    # Lazy imports keep ``facemark --version`` and the CLI's startup fast.
    if name == "FaceLandmarker":
        from .landmarker import FaceLandmarker

        return FaceLandmarker
    if name == "Face":
        from .results import Face

        return Face
    if name == "draw":
        from .annotate import draw

        return draw
    if name == "Detection":
        from .detector import Detection

        return Detection
    if name == "FacemarkWarning":
        from .errors import FacemarkWarning

        return FacemarkWarning
    if name in _MODULES:  # (loaded on first use, as the names above)
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'facemark' has no attribute {name!r}")


# The inference modules the README names as ``facemark.track.Tracker``, ``facemark.results.read``:
# reached from ``import facemark`` alone. Not the torch ones (training, models, evaluation):
# ``hasattr(facemark, "models")`` must not import torch.
_MODULES = ("align", "annotate", "backends", "batch", "boxes", "cluster", "detector", "errors", "imageio",
            "inputs", "landmarker", "layouts", "results", "runtime", "shards", "track", "video")

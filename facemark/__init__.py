"""facemark: faces and their 98 facial landmarks (WFLW layout) in images and video."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["FaceLandmarker", "Face", "draw", "__version__"]


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
    raise AttributeError(name)

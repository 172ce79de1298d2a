"""Drawing faces on images: box and score, contours by part, and the 98 points, sized to the face.

(The module is ``annotate``, not ``draw``, so that ``from facemark import draw`` is the function.)
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .imageio import as_bgr, dim_uint16
from .layouts import WFLW98_PARTS
from .results import Face

STYLES = ("contours", "points", "lines")  # contours: lines and points; points only; lines only
_CLOSED = {"right_brow", "left_brow", "right_eye", "left_eye", "outer_lips", "inner_lips"}
_COLOURS = {"contour": (255, 200, 0), "right_brow": (0, 200, 255), "left_brow": (0, 200, 255),
            "nose_bridge": (0, 255, 128), "nose_base": (0, 255, 128), "right_eye": (255, 0, 255),
            "left_eye": (255, 0, 255), "outer_lips": (80, 80, 255), "inner_lips": (80, 80, 255), "pupils": (255, 255, 255)}


def sizes_for(side: float) -> tuple[int, float]:
    """Line width and point radius (px) for a face ``side`` pixels wide: visible on a 60-px face,
    not blotting a 1000-px one (98 points are ~10 px apart on a 300-px face)."""
    return max(1, int(round(side / 120))), max(1.0, side / 110)


def draw(image: np.ndarray, faces: list[Face], style: str = "contours", box: bool = True, score: bool = True,
         ids: list[int] | None = None, points: bool | None = None) -> np.ndarray:
    """An annotated uint8 copy of ``image`` (BGR, or BGRA for BGRA). ``faces``: ``Face`` objects, or
    saved ones (the dicts of ``read``'s rows). ``style``: contours (lines and points), points, or
    lines; ``box``/``score`` toggle the face box and its score label (``ids`` label video tracks)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    for name, v in (("box", box), ("score", score), ("points", points)):
        if not isinstance(v, (bool, np.bool_)) and not (name == "points" and v is None):  # ("no" was true)
            raise TypeError(f"{name} must be True or False, not {v!r}")
    if isinstance(image, (str, Path)):
        raise TypeError("image must be an array: draw on the image you detected in (cv2.imread(path), or "
                        "facemark.imageio.read_image(path) to read it as detect does)")
    if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3) \
            or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise TypeError("image must be a uint8 (or uint16) array: (H, W, 3) BGR, (H, W, 4) BGRA, (H, W) grey or "
                        "(H, W, 2) grey and alpha, as detect takes")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image has no pixels (shape {image.shape})")
    if said := dim_uint16(image):  # (drawn as nearly black, as detect reads it: told the same way)
        from .notes import note

        note(said)
    if isinstance(faces, Face):
        faces = [faces]  # one face on its own, as landmarks() takes one box
    if faces is None or isinstance(faces, (str, bytes)) or not hasattr(faces, "__iter__"):
        raise TypeError(f"faces must be a list of Face objects (as FaceLandmarker returns them), not {type(faces).__name__}")
    faces = [Face.from_dict(f) if isinstance(f, dict) else f for f in faces]  # (saved faces: a row of read()'s)
    if any(not isinstance(f, Face) for f in faces):
        raise TypeError("faces must be Face objects (as FaceLandmarker returns them) or saved faces (dicts of read()'s rows)")
    limit = 1e7  # pixels: OpenCV's fixed-point coordinates (1/16 px in int32) overflow near 1.3e8
    for j, f in enumerate(faces):
        pts, corners = np.asarray(f.landmarks, np.float64), np.asarray(f.box, np.float64)
        if pts.shape != (98, 2) or corners.shape != (4,):
            raise ValueError(f"faces[{j}] must have a (4,) box and (98, 2) landmarks, not {corners.shape} and {pts.shape}")
        if not (np.isfinite(pts).all() and np.isfinite(corners).all()) or max(np.abs(pts).max(), np.abs(corners).max()) > limit:
            raise ValueError(f"faces[{j}] has a non-finite coordinate, or one over ten million pixels away")
    if ids is not None and len(ids) != len(faces):
        raise ValueError(f"ids must give one id per face: {len(ids)} ids for {len(faces)} faces")
    if points is False:  # the older spelling: lines only
        style = "lines"
    if image.ndim == 3 and image.shape[2] == 2:  # grey and alpha: drawn as BGRA, its transparency kept
        image = image[..., [0, 0, 0, 1]]
    base = as_bgr(image[..., :3] if image.ndim == 3 and image.shape[2] == 4 else image)  # (BGRA: its own colours)
    out = base.copy()  # a colour copy: the drawing is in colour whatever came in
    _paint(out, faces, style, box, score, ids)
    if image.ndim == 3 and image.shape[2] == 4:  # BGRA stays BGRA: a PNG keeps its transparency
        coverage = np.zeros(image.shape[:2], np.uint8)  # how much of each pixel the drawing covers
        _paint(coverage, faces, style, box, score, ids, ink=255)
        alpha = image[:, :, 3] if image.dtype == np.uint8 else (image[:, :, 3] >> 8).astype(np.uint8)
        if not alpha.any() and image[..., :3].any():  # (all 0 over a picture: a capture's unset byte, shown
            alpha = np.full_like(alpha, 255)  # opaque, as detect takes it; over nothing, an overlay's empty canvas)
        out = _over(out, base, coverage, alpha)
    return out


def _over(drawn: np.ndarray, base: np.ndarray, coverage: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The drawing laid over a BGRA image, as BGRA. OpenCV blended each edge with the colour
    hidden under a transparent pixel (often black, so dark fringes); ``drawn = c·ink + (1-c)·base``
    gives back the ink, which is then laid over the image's own coverage ``a``:
    alpha ``c + a(1-c)``, colour ``(drawn - (1-c)(1-a)·base) / that alpha``."""
    c = coverage.astype(np.float32)[..., None] / 255
    a = alpha.astype(np.float32)[..., None] / 255
    a_out = c + a * (1 - c)
    colour = (drawn - (1 - c) * (1 - a) * base) / np.maximum(a_out, 1e-6)
    colour = np.where(a_out > 0, colour, base)
    return np.dstack([np.clip(np.round(colour), 0, 255).astype(np.uint8),
                      np.clip(np.round(a_out[..., 0] * 255), 0, 255).astype(np.uint8)])


def _paint(canvas: np.ndarray, faces: list[Face], style: str, box: bool, score: bool, ids: list[int] | None,
           ink: int | None = None) -> None:
    """Boxes, labels, contours and points onto ``canvas``, in their colours or all in ``ink``."""
    shift = 4  # sub-pixel drawing: coordinates in 1/16 px
    k = 1 << shift

    def px(p):
        # 0-based pixel centres -> OpenCV's fixed-point integer coordinates.
        return np.round(np.asarray(p, np.float64) * k).astype(np.int32)

    def col(c):
        return c if ink is None else ink

    for n, face in enumerate(faces):
        lm = np.asarray(face.landmarks)
        side = float(max(face.box[2] - face.box[0], face.box[3] - face.box[1], 1.0))
        t, r = sizes_for(side)
        if box:
            cv2.rectangle(canvas, tuple(px(face.box[:2])), tuple(px(face.box[2:])), col((0, 255, 0)), t, cv2.LINE_AA, shift)
        label = f"#{ids[n]}" if ids is not None else (f"{face.score:.2f}" if score and face.score is not None else "")
        if label and (box or ids is not None):
            scale = max(0.4, side / 400)
            (_, high), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, t)
            x, y = max(0, int(face.box[0])), int(face.box[1]) - 4
            if y - high < 0:  # no room above the box (a face at the top edge): inside it, under its top
                y = max(0, int(face.box[1])) + high + 4
            cv2.putText(canvas, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, col((0, 255, 0)), t, cv2.LINE_AA)
        for part, idx in WFLW98_PARTS.items():
            colour = col(_COLOURS[part])
            if part != "pupils" and style in ("contours", "lines"):
                cv2.polylines(canvas, [px(lm[idx])], part in _CLOSED, colour, t, cv2.LINE_AA, shift)
            if style in ("contours", "points"):
                for p in px(lm[idx]):
                    cv2.circle(canvas, tuple(p), int(round(r * k)), colour, -1, cv2.LINE_AA, shift)

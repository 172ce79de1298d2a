"""Similarity alignment between image and the model's square crop.

Conventions (used everywhere in facemark): coordinates are 0-based and a pixel's centre sits at
an integer coordinate, so pixel (0, 0) covers [-0.5, 0.5]^2. OpenCV's ``warpAffine`` uses the same
convention, which is why crops are made with it and points map back through the exact inverse.

The canonical frame is the unit square [0, 1]^2 of the crop (edge to edge, not centre to
centre). A crop of ``size`` pixels maps canonical ``u`` to pixel ``u * size - 0.5``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np


@lru_cache(maxsize=1)
def calibration() -> dict | None:
    """``facemark/calibration.json``, read once for the templates here and the 98->68 map
    (``labelmap.load``): None before ``facemark calibrate`` has written one; a damaged file is
    a ``DamagedInstall`` (one line, not an import's traceback)."""
    try:
        data = json.loads(resources.files("facemark").joinpath("calibration.json").read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        from .errors import DamagedInstall

        raise DamagedInstall("facemark/calibration.json", f"{type(e).__name__}: {e}"[:120]) from None
    return data if isinstance(data, dict) else {"templates": None}  # (not an object: said as damaged below)


def _load_templates() -> dict[str, np.ndarray]:
    data = calibration()
    if data is None:
        return {}
    try:
        templates = {k: np.asarray(v, np.float64) for k, v in data["templates"].items()}
        templates["mean98"] = np.asarray(data["mean98"], np.float64).reshape(98, 2)  # the canonical mean shape
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        from .errors import DamagedInstall

        raise DamagedInstall("facemark/calibration.json", f"{type(e).__name__}: {e}"[:120]) from None
    return templates


# Where each kind of 5-point set sits in the canonical frame on average (detector order: subject's
# right eye, left eye, nose tip, right mouth corner, left mouth corner), and RetinaFace's box as
# (centre x, centre y, side). Fitted on the 300-W training faces by ``facemark calibrate``.
TEMPLATES: dict[str, np.ndarray] = _load_templates()


class DegeneratePoints(ValueError):
    """Points all in one spot: no rotation or scale can be read from them."""


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Returns the 2x3 matrix M with dst ~= M[:, :2] @ src + M[:, 2].
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    # Closed form for 2-D similarity: [a -b; b a].
    var = (s**2).sum()
    if var <= 1e-12:
        raise DegeneratePoints("degenerate point set")
    a = (s * d).sum() / var
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / var
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def invert(m: np.ndarray) -> np.ndarray:
    """Exact inverse of a 2x3 affine matrix (closed form: it runs once per face, and a general
    3x3 inverse cost more than the rest of mapping the points back)."""
    (a, b, tx), (c, d, ty) = np.asarray(m, np.float64)
    det = a * d - b * c
    if det == 0:
        raise np.linalg.LinAlgError("Singular matrix")
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine ``outer(inner(x))``."""
    outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    out = outer[:, :2] @ inner
    out[:, 2] += outer[:, 2]
    return out


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine (or a stack of them, (..., 2, 3)) to points (..., N, 2)."""
    m = np.asarray(m)
    return points @ np.swapaxes(m[..., :, :2], -1, -2) + m[..., None, :, 2]


def quarter_turn_back(points: np.ndarray, turns: int, height: int, width: int) -> np.ndarray:
    """Points (N, 2) of ``np.rot90(image, turns)`` (quarter-turns counter-clockwise) in the
    coordinates of ``image`` itself (``height`` x ``width``; 0-based pixel centres)."""
    p = np.asarray(points, np.float64)
    x, y = p[:, 0], p[:, 1]
    turns %= 4
    if turns == 1:
        return np.stack([width - 1 - y, x], 1)
    if turns == 2:
        return np.stack([width - 1 - x, height - 1 - y], 1)
    if turns == 3:
        return np.stack([y, height - 1 - x], 1)
    return p.copy()


def roll_degrees(kps: np.ndarray) -> float:
    """How far a face is turned in the picture, from a detector's five points (eyes, nose, mouth
    corners): the angle between the eyes-to-mouth direction and straight down, -180 to 180 (0:
    upright). RetinaFace's points turn with most faces turned a quarter-turn, and with about a
    quarter of those turned a half-turn (scripts/rotation_check.py's "said turned %")."""
    p = np.asarray(kps, np.float64)
    down = (p[3] + p[4]) / 2 - (p[0] + p[1]) / 2
    return float((np.degrees(np.arctan2(down[1], down[0])) - 90 + 180) % 360 - 180)


def canonical_to_pixels(size: int) -> np.ndarray:
    """Affine from the canonical unit square to pixel coordinates of a ``size`` crop."""
    return np.array([[size, 0.0, -0.5], [0.0, size, -0.5]])


def from_points(points: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """Image->crop matrix that puts ``points`` where ``template`` (canonical) says they belong."""
    return compose(canonical_to_pixels(size), umeyama(points, template))


def from_box(box: np.ndarray, size: int, template: np.ndarray | None = None) -> np.ndarray:
    """Image->crop matrix from a face box alone: no roll correction, scale from the box side.

    ``template`` is (centre_x, centre_y, side) of a detector-style box in the canonical frame.
    """
    if template is None:
        template = TEMPLATES["box"]
    cx_t, cy_t, side_t = np.asarray(template, np.float64).reshape(3)
    x1, y1, x2, y2 = np.asarray(box, np.float64)[:4]
    side = max(x2 - x1, y2 - y1)
    if side <= 0:
        raise ValueError("empty box")
    s = side_t / side
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    m = np.array([[s, 0.0, cx_t - s * cx], [0.0, s, cy_t - s * cy]])
    return compose(canonical_to_pixels(size), m)


ANTIALIAS_BELOW = 0.35  # faces of ~300-W size (what the models trained on) stay untouched


def warp(image: np.ndarray, m: np.ndarray, size: int, out: np.ndarray | None = None, border=0) -> np.ndarray:
    """Crop ``size`` x ``size`` pixels through image->crop matrix ``m`` (bilinear; ``border``
    outside the image, black by default).

    A crop that shrinks the image more than ``ANTIALIAS_BELOW`` times first has its region
    area-averaged down to half the crop's scale (bilinear sampling alone would alias a big face
    into noise); the geometry stays exact, as the resize is folded into the matrix."""
    m = np.asarray(m, np.float64)
    s = scale_of(m)
    if s < ANTIALIAS_BELOW:
        image, m = _prefilter(image, m, size, s)
    return cv2.warpAffine(image, m, (size, size), dst=out, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def _prefilter(image: np.ndarray, m: np.ndarray, size: int, s: float) -> tuple[np.ndarray, np.ndarray]:
    corners = apply(invert(m), np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]]))
    h, w = image.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 2, 0, [w, h])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 3, 0, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image, m
    region = image[y0:y1, x0:x1]
    nw, nh = max(1, round((x1 - x0) * s * 2)), max(1, round((y1 - y0) * s * 2))
    small = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
    fx, fy = nw / (x1 - x0), nh / (y1 - y0)
    # small pixel u <-> image x:  u = (x - x0 + 0.5) * fx - 0.5
    to_image = np.array([[1 / fx, 0, x0 + 0.5 / fx - 0.5], [0, 1 / fy, y0 + 0.5 / fy - 0.5]])
    return small, compose(m, to_image)


def rescale(points, scale, offset=(0.0, 0.0)) -> np.ndarray:
    """Points (..., 2) of an image resized by 1/``scale`` (x and y) back to the original's pixels,
    then moved by ``offset``: pixel centres at integers on both sides, as ``cv2.resize`` maps them
    (so a plain multiply would be off by half a pixel times the scale)."""
    # (The points' own dtype until the multiply: a detector's float32 outputs round as they always did.)
    return (np.asarray(points) + 0.5) * np.asarray(scale, np.float64) - 0.5 + np.asarray(offset, np.float64)


def letterbox(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """``image`` scaled to fit ``width`` x ``height`` keeping its shape, centred on black. Returns
    the canvas, the ``rescale`` factors from the scaled picture back to the image, and where the
    picture starts on the canvas: a face is never stretched (a stretched face gets wrong points)."""
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    sw, sh = max(1, min(width, round(w * s))), max(1, min(height, round(h * s)))
    x0, y0 = (width - sw) // 2, (height - sh) // 2
    canvas = np.zeros((height, width) + image.shape[2:], image.dtype)
    inter = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    canvas[y0:y0 + sh, x0:x0 + sw] = cv2.resize(image, (sw, sh), interpolation=inter).reshape((sh, sw) + image.shape[2:])
    return canvas, (w / sw, h / sh), (x0, y0)


def scale_of(m: np.ndarray) -> float:
    """Uniform scale factor of a similarity matrix (crop pixels per image pixel)."""
    (a, b), (c, d) = np.asarray(m, np.float64)[:, :2]
    return float(np.sqrt(abs(a * d - b * c)))

"""Reading images as displayed (EXIF orientation applied) and writing outputs atomically."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pbm", ".pgm", ".ppm"}


class ImageError(ValueError):
    """An input that is not a readable image."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """BGR uint8 image as displayed: EXIF orientation applied; grey, alpha and 16-bit inputs
    converted. ``imdecode`` on the raw bytes also copes with non-ASCII paths."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror or e}") from None
    if data.size == 0:
        raise ImageError(f"{path} is empty")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{path} is not an image OpenCV can decode")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"{path} has no pixels")
    return image


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Accept grey (H, W), BGR (H, W, 3) or BGRA (H, W, 4) arrays, uint8 or uint16."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        if image.dtype.kind == "f" and image.size and float(np.nanmax(image)) <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise ImageError(f"unsupported image shape {image.shape}")


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual permissions (mkstemp makes it 0600) and rename
    it into place in one step."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    ext = Path(path).suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, image)
    if not ok:
        raise ImageError(f"cannot encode an image as {ext}")
    atomic_write_bytes(path, buf.tobytes())

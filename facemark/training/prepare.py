"""Per-face annotations that training needs and that are slow to compute, cached outside the repo:
the detector's box and 5 keypoints for the labelled face (so training crops are made the way
inference makes them) and the teacher's 98-point pseudo-labels.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageio import ImageError, atomic_write, read_image
from .datasets import Sample
from ..layouts import five_points


def read_sample_image(path: Path) -> np.ndarray | None:
    """The image as inference reads it, or None where it does not decode. ``cv2.imread`` would
    hand back a truncated JPEG with its missing part grey, and the faces there would train on it."""
    try:
        return read_image(path)
    except ImageError:
        return None


@dataclass
class Prepared:
    keys: list[str]
    det_box: np.ndarray  # (N, 4), NaN where the detector missed the face
    det_kps: np.ndarray  # (N, 5, 2), NaN where missed
    det_score: np.ndarray  # (N,), 0 where missed
    teacher: np.ndarray  # (N, 98, 2), NaN without a teacher

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.det_box[:, 0])


def match(detections, landmarks: np.ndarray):
    """The detection belonging to the labelled face: keypoints closest to the label's 5 points,
    within a third of the inter-ocular distance on average. None if no detection fits."""
    if not detections:
        return None
    g5 = five_points(landmarks)
    iod = float(np.linalg.norm(g5[0] - g5[1])) + 1e-6
    best = min((d for d in detections if d.kps is not None), key=lambda d: np.linalg.norm(d.kps - g5, axis=1).mean(), default=None)
    if best is None or np.linalg.norm(best.kps - g5, axis=1).mean() > iod / 3:
        return None
    return best


CACHE_VERSION = 4  # raised when the entries' meaning or the file's name changes; older files are then removed


def cache_name(teacher=None) -> str:
    """One cache per teacher (by its weights, not its file names); entries are keyed by image
    path, so any subset reuses it."""
    h = hashlib.sha1(b"retinaface-0.3")
    if teacher is not None:
        h.update(teacher.fingerprint().encode())
    return f"prepared-v{CACHE_VERSION}-{h.hexdigest()[:12]}.npz"


def _load_cache(path: Path) -> dict | None:
    """The cache's arrays, or None where the file is damaged (cut short, overwritten): a cache is
    rebuilt, never the end of the run."""
    try:
        with np.load(path, allow_pickle=False) as f:
            z = {k: f[k] for k in f.files}  # NpzFile decompresses on every access: read once
        n = len(z["keys"])
        if any(len(z[k]) != n for k in ("det_box", "det_kps", "det_score", "teacher")):
            return None
        kps = z["det_kps"][~np.isnan(z["det_kps"][:, 0, 0])]
        if not np.isfinite(kps).all() or (np.abs(kps) > 1e6).any():  # values no detector gives
            return None
        return z
    except Exception:  # noqa: BLE001 - zipfile, zlib and numpy raise many kinds for a damaged file; it is only a cache
        return None


def _key(s: Sample) -> str:
    """The image file as it is now (path, size, time) and its labels: a replaced image or a
    corrected label file is prepared again, never served from the cache."""
    path = Path(s.image).resolve()
    try:
        st = path.stat()
        stamp = f"{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        stamp = "?"
    labels = hashlib.sha1(np.ascontiguousarray(s.landmarks, np.float64).tobytes()).hexdigest()[:12]
    return f"{path}|{stamp}|{labels}"


def prepare(samples: list[Sample], detector, teacher=None, cache_dir: Path | None = None, progress=None) -> Prepared:
    """Run detector (and teacher) once per labelled face; faces already in the cache are reused."""
    n = len(samples)
    keys = [_key(s) for s in samples]
    det_box = np.full((n, 4), np.nan)
    det_kps = np.full((n, 5, 2), np.nan)
    det_score = np.zeros(n)
    tea = np.full((n, 98, 2), np.nan)
    done = np.zeros(n, bool)
    path = Path(cache_dir) / cache_name(teacher) if cache_dir is not None else None
    cached = {}
    z = _load_cache(path) if path is not None and path.is_file() else None
    if z is not None:
        cached = {k: j for j, k in enumerate(z["keys"].tolist())}
        for i, k in enumerate(keys):
            j = cached.get(k)
            if j is not None:
                det_box[i], det_kps[i], det_score[i], tea[i] = z["det_box"][j], z["det_kps"][j], z["det_score"][j], z["teacher"][j]
                done[i] = True
    todo = np.flatnonzero(~done)

    def save() -> None:  # what is done so far joins the cache (the rest is computed next time)
        old = _load_cache(path) if path.is_file() else None
        ok = np.flatnonzero(done)
        merged = {"keys": np.array(keys)[ok], "det_box": det_box[ok], "det_kps": det_kps[ok],
                  "det_score": det_score[ok], "teacher": tea[ok]}
        if old is not None:
            new_keys = {keys[i] for i in ok}
            keep = [j for j, k in enumerate(old["keys"].tolist()) if k not in new_keys]
            merged = {k: np.concatenate([old[k][keep], v]) for k, v in merged.items()}
        atomic_write(path, lambda tmp: np.savez_compressed(tmp, **merged), ".npz", tidy=True)
        for stale in path.parent.glob("prepared-v*-*.npz"):  # an older version's file is never read again
            if not stale.name.startswith(f"prepared-v{CACHE_VERSION}-"):
                stale.unlink(missing_ok=True)

    writable = path is not None

    def keep() -> None:
        """``save``, but a cache that cannot be written (a full disk) is only a cache: said once, the
        run goes on without it."""
        nonlocal writable
        if not writable:
            return
        try:
            save()
        except OSError as e:
            import warnings

            writable = False
            warnings.warn(f"the cache {path} cannot be written ({e.strerror or e}): this run goes on without it, "
                          f"and the next computes these faces again")

    last_save, computed = time.monotonic(), 0
    try:
        for c, i in enumerate(todo):
            s = samples[i]
            image = read_sample_image(s.image)
            if image is None:
                continue
            d = match(detector.detect(image), s.landmarks)
            if d is not None:
                det_box[i], det_kps[i], det_score[i] = d.box, d.kps, d.score
            if s.landmarks.shape[0] == 98:
                tea[i] = s.landmarks
            elif teacher is not None:
                tea[i] = teacher.predict(image, d.box if d is not None else emulated_box(s.landmarks))
            done[i], computed = True, computed + 1
            if path is not None and time.monotonic() - last_save > 120:  # an interrupted pack keeps its work
                keep()
                last_save = time.monotonic()
            if progress:
                progress(c + 1, len(todo))
    finally:  # also on Ctrl-C: the next run starts where this one stopped
        if computed:
            keep()
    return Prepared(keys, det_box, det_kps, det_score, tea)


def emulated_box(landmarks: np.ndarray) -> np.ndarray:
    """A detector-like box for a face the detector missed, from its labels: the landmark box
    grown upward to the forehead, as RetinaFace draws it (ratios measured on 300-W)."""
    x1, y1 = landmarks.min(0)
    x2, y2 = landmarks.max(0)
    w, h = x2 - x1, y2 - y1
    return np.array([x1 - 0.02 * w, y1 - 0.20 * h, x2 + 0.02 * w, y2 + 0.03 * h])

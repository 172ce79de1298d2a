"""The training pack: every training face pre-aligned the way inference aligns it, stored as JPEG
bytes with its 98-point target, so training (on CPU or on a GPU with the whole set resident)
needs no detector, teacher or image decoding of originals. One ``.npz``, no pickles.

A pack crop of ``res`` pixels shows the canonical unit square enlarged ``margin`` times about its
centre, so augmentation can rotate, scale and shift without running out of pixels.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import align, labelmap
from .datasets import Sample, outside_image
from ..layouts import five_points
from .prepare import Prepared, read_sample_image


@dataclass
class Pack:
    jpeg: np.ndarray  # uint8 blob of all JPEGs
    offsets: np.ndarray  # (N + 1,) int64 byte offsets into ``jpeg``
    target98: np.ndarray  # (N, 98, 2) float32, pack-canonical [0, 1] coordinates
    human68: np.ndarray  # (N, 68, 2) float32, same frame (the human labels; NaN if none)
    weight: np.ndarray  # (N,) float32 per-face loss weight
    val: np.ndarray  # (N,) bool: held out for validation
    source: np.ndarray  # (N,) str
    res: int
    margin: float

    def __len__(self) -> int:
        return len(self.target98)

    def image(self, i: int) -> np.ndarray:
        buf = self.jpeg[self.offsets[i]:self.offsets[i + 1]]
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)

    def images(self) -> np.ndarray:
        """All crops decoded: (N, res, res, 3) uint8; ``ValueError`` naming a crop that is not one."""
        out = np.empty((len(self), self.res, self.res, 3), np.uint8)
        for i in range(len(self)):
            crop = self.image(i)
            if crop is None or crop.shape != out.shape[1:]:
                raise ValueError(f"crop {i} of the pack is damaged (not a {self.res} px JPEG)")
            out[i] = crop
        return out

    def check(self) -> None:
        """``ValueError`` unless the arrays agree with each other and every target is a number:
        a damaged or hand-made pack is refused before training, not NaN losses later."""
        n = len(self)
        sizes = {"offsets": len(self.offsets) - 1, "human68": len(self.human68), "weight": len(self.weight),
                 "val": len(self.val), "source": len(self.source)}
        wrong = [k for k, v in sizes.items() if v != n]
        if wrong:
            raise ValueError(f"its arrays disagree in length ({', '.join(wrong)} vs {n} faces)")
        if self.target98.shape[1:] != (98, 2) or not 32 <= self.res <= 4096 or not self.margin > 0:
            raise ValueError("its targets, crop size or margin are not a pack's")
        if not (np.all(np.diff(self.offsets) >= 0) and self.offsets[0] == 0 and self.offsets[-1] <= len(self.jpeg)):
            raise ValueError("its crop offsets are damaged")
        if not (np.isfinite(self.target98).all() and np.isfinite(self.weight).all()):
            raise ValueError("a target or weight is not a finite number")
        if (self.weight < 0).any():
            raise ValueError("a weight is negative")
        if np.abs(self.target98).max(initial=0.0) > 10:  # ([0, 1] across the crop: 1e30 trained to a loss of 1e32)
            raise ValueError("a target lies far outside its crop (targets are 0 to 1 across it)")
        if not (self.weight[~self.val] > 0).any():
            raise ValueError("it has no training face with a weight above 0")

    def save(self, path: str | Path) -> None:
        from ..imageio import atomic_write

        atomic_write(path, lambda tmp: np.savez(tmp, jpeg=self.jpeg, offsets=self.offsets, target98=self.target98,
                                                human68=self.human68, weight=self.weight, val=self.val,
                                                source=self.source, res=self.res, margin=self.margin), ".npz",
                     tidy=True)

    @classmethod
    def load(cls, path: str | Path) -> "Pack":
        z = np.load(path, allow_pickle=False)
        return cls(z["jpeg"], z["offsets"], z["target98"], z["human68"], z["weight"], z["val"], z["source"],
                   int(z["res"]), float(z["margin"]))


def is_val(key: str, fraction: float) -> bool:
    """Deterministic hold-out by name, so resumed and repeated runs agree."""
    named = key.encode("utf-8", "surrogateescape")  # (a file name that is not UTF-8 too)
    return int(hashlib.sha1(named).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def pack_matrix(res: int, margin: float) -> np.ndarray:
    """Canonical unit square -> pack pixels."""
    return np.array([[res / margin, 0, res * (0.5 - 0.5 / margin) - 0.5], [0, res / margin, res * (0.5 - 0.5 / margin) - 0.5]])


def build(samples: list[Sample], prep: Prepared, weights: list[float], res: int = 192, margin: float = 1.5,
          quality: int = 92, val_fraction: float = 0.05, progress=None, log=None) -> Pack:
    """Crop every face as inference would (detector keypoints -> template), or, where the detector
    missed it, through the template's average detector keypoints placed by the labels."""
    m98 = labelmap.load()
    fusion = labelmap.fusion_matrix(m98)
    t_ret = align.TEMPLATES["retinaface"]
    t_lm = align.TEMPLATES["landmarks98"]
    to_pack = pack_matrix(res, margin)
    blobs, t98, h68, wts, val, src = [], [], [], [], [], []
    missed: list[Sample] = []  # packed faces the detector did not find: cropped from their labels
    for i, s in enumerate(samples):
        image = read_sample_image(s.image)
        if image is None:
            if log:
                log(f"skipped: {s.image}: no such file" if not Path(s.image).exists() else
                    f"skipped: {s.image}: not an image OpenCV can decode (damaged, truncated or not an image)")
            continue
        outside = outside_image(s, image)  # (eval's rule: a black crop beside its targets is no face to learn)
        if outside:
            if log:
                log(outside)
            continue
        if s.landmarks.shape[0] == 98:
            target, human = s.landmarks, labelmap.to68(s.landmarks, m98)
        else:
            teacher = prep.teacher[i]
            if np.isnan(teacher).any():
                if log:
                    log(f"skipped: {s.image}: the teacher gave no points for this face")
                continue
            target, human = labelmap.fuse(teacher, s.landmarks, m98, fusion), s.landmarks
        if not np.isfinite(target).all():
            if log:
                log(f"skipped: {s.image}: its targets are not finite numbers")
            continue
        m = None
        if prep.found[i]:
            try:
                m = align.compose(to_pack, align.umeyama(prep.det_kps[i], t_ret))
            except align.DegeneratePoints:  # (keypoints no detector gives: a damaged cache's; placed as a miss)
                m = None
        if m is None:  # where the detector would have put its keypoints, on average
            try:
                to_canon = align.umeyama(five_points(target), t_lm)
            except align.DegeneratePoints:
                if log:
                    log(f"skipped: {s.image}: its eyes, nose and mouth labels meet at one spot")
                continue
            m = align.compose(to_pack, align.umeyama(align.apply(align.invert(to_canon), t_ret), t_ret))
        crop = align.warp(image, m, res)
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        blobs.append(buf.reshape(-1))
        inv = align.invert(to_pack)
        t98.append(align.apply(inv, align.apply(m, target)))
        h68.append(align.apply(inv, align.apply(m, human)))
        wts.append(weights[i])
        val.append(s.kind != "csv68" and is_val(s.key, val_fraction))  # hold out clean labels only
        src.append(s.subset)
        if not prep.found[i]:
            missed.append(s)
        if progress:
            progress(i + 1, len(samples))
    if missed and log:  # (their labels may be wrong: shifted, or in the stored pixels of an EXIF-turned photo)
        log(f"note: {len(missed)} of {len(samples)} face(s) were not found by the detector at their labels, so they "
            f"are cropped from the labels alone (labels off the face, or not in the photo's displayed orientation, "
            f"would train on wrong crops): {', '.join(str(s.image) for s in missed[:3])}"
            f"{', ...' if len(missed) > 3 else ''}")
    if not blobs:
        from ..errors import UsageError

        raise UsageError("no face in --data could be read and cropped")
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    # Pack coordinates are canonical coordinates of the enlarged square: u_pack = (u - .5)/margin + .5
    t98a = (np.asarray(t98) - 0.5) / margin + 0.5
    h68a = (np.asarray(h68) - 0.5) / margin + 0.5
    return Pack(np.concatenate(blobs), offsets, t98a.astype(np.float32), h68a.astype(np.float32),
                np.asarray(wts, np.float32), np.asarray(val, bool), np.asarray(src), res, margin)


def build_pack(data: list[str], teacher: Path | None, cache: Path, res: int = 192, youtube_weight: float = 0.5,
               quality: int = 92, progress=None, log=None) -> Pack:
    """``facemark pack``: detector (and teacher, both cached) over every training face, then crop.

    ``progress(stage, done, total)`` with stage ``prepare`` or ``crop``."""
    from ..detector import RetinaFace
    from ..errors import UsageError
    from .datasets import load_all
    from .prepare import prepare
    from .teacher import Teacher

    if not 50 <= quality <= 100:
        raise UsageError("--quality must be between 50 and 100")
    every = load_all(data, log)
    samples = [s for s in every if s.split == "train"]
    if not samples:
        raise UsageError("no training faces in --data")
    if len(samples) < len(every) and log:  # (a testset/test folder, 300-W's ibug, or WFLW's test list: kept for eval)
        log(f"note: {len(every) - len(samples)} face(s) of --data's test split are left out of the pack "
            f"(facemark eval measures them)")
    needs_teacher = any(s.landmarks.shape[0] != 98 for s in samples)
    if needs_teacher and teacher is None:
        raise UsageError("68-point data needs --teacher DIR (the PFLD-GhostOne ONNX files) for the other 30 points")
    try:
        tea = Teacher.from_dir(teacher) if needs_teacher else None
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    tick = (lambda stage: (lambda i, n: progress(stage, i, n))) if progress else (lambda stage: None)
    prep = prepare(samples, RetinaFace(threshold=0.3), tea, cache, tick("prepare"))
    weights = [youtube_weight if s.kind == "csv68" else 1.0 for s in samples]
    crop_tick = tick("crop")
    return build(samples, prep, weights, res=res, quality=quality,
                 progress=(lambda i, n: crop_tick(i, n)) if progress else None, log=log)

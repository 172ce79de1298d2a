"""Calibration shipped in ``facemark/calibration.json``, fitted by ``facemark calibrate``:

* the sparse 98->68 map (``labelmap.fit``);
* the canonical frame: the mean 98-point shape (generalised Procrustes over the fused training
  targets) placed in the unit crop so that the training faces' points, aligned the way inference
  aligns them, fill the central 90 %;
* alignment templates: where each kind of 5-point set (RetinaFace's, YuNet's, the eye centres /
  nose / mouth corners of predicted landmarks) and RetinaFace's box sit in that frame on average.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import align, labelmap
from ..layouts import five_points


def procrustes_mean(shapes: np.ndarray, iters: int = 10) -> np.ndarray:
    """Generalised Procrustes mean of (F, P, 2) shapes: zero centroid, unit RMS radius."""
    mean = shapes[0] - shapes[0].mean(0)
    mean /= np.sqrt((mean**2).sum(1).mean())
    for _ in range(iters):
        aligned = np.stack([align.apply(align.umeyama(s, mean), s) for s in shapes])
        new = aligned.mean(0)
        new -= new.mean(0)
        new /= np.sqrt((new**2).sum(1).mean())
        if np.abs(new - mean).max() < 1e-7:
            break
        mean = new
    return mean


def calibrate(human68: np.ndarray, teacher98: np.ndarray, det_kps: np.ndarray, det_box: np.ndarray,
              yunet_kps: np.ndarray | None = None, fill: float = 0.9) -> dict:
    """All arrays are per training face; det/yunet entries may be NaN where a detector missed."""
    w = labelmap.fit(teacher98, human68)
    fused = labelmap.fuse(teacher98, human68, w)
    mean = procrustes_mean(fused)
    to_mean = [align.umeyama(f, mean) for f in fused]
    found = ~np.isnan(det_kps[:, 0, 0])
    t_ret = np.mean([align.apply(to_mean[i], det_kps[i]) for i in np.flatnonzero(found)], axis=0)
    # Points of every face as the detector alignment will place them: sets the crop's extent.
    pts = np.concatenate([align.apply(align.umeyama(det_kps[i], t_ret), fused[i]) for i in np.flatnonzero(found)])
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    side = float((hi - lo).max() / fill)
    centre = (lo + hi) / 2
    place = np.array([[1 / side, 0, 0.5 - centre[0] / side], [0, 1 / side, 0.5 - centre[1] / side]])

    def placed(p):
        return align.apply(place, p)

    templates = {
        "retinaface": placed(t_ret),
        "landmarks98": placed(np.mean([align.apply(to_mean[i], five_points(f)) for i, f in enumerate(fused)], axis=0)),
    }
    box_rows = []
    for i in np.flatnonzero(found):
        m = align.compose(place, align.umeyama(det_kps[i], t_ret))
        c = align.apply(m, ((det_box[i, :2] + det_box[i, 2:]) / 2)[None])[0]
        box_rows.append([c[0], c[1], align.scale_of(m) * max(det_box[i, 2] - det_box[i, 0], det_box[i, 3] - det_box[i, 1])])
    templates["box"] = np.mean(box_rows, axis=0)
    if yunet_kps is not None and (~np.isnan(yunet_kps[:, 0, 0])).any():
        ok = np.flatnonzero(~np.isnan(yunet_kps[:, 0, 0]))
        templates["yunet"] = placed(np.mean([align.apply(to_mean[i], yunet_kps[i]) for i in ok], axis=0))
    return {
        "templates": {k: np.round(v, 6).tolist() for k, v in templates.items()},
        "mean98": np.round(placed(mean), 6).tolist(),
        "labelmap": labelmap.rows(w),
        "faces": int(len(fused)),
        "detector_found": int(found.sum()),
    }


def write(cal: dict, path: str | Path, provenance: str) -> None:
    """Written only when every number is finite: a NaN here would break every later detect."""
    from ..imageio import atomic_write_bytes

    if not np.isfinite(np.asarray([v for k in ("templates", "mean98", "labelmap") for v in _numbers(cal[k])])).all():
        raise ValueError("the fit gave numbers that are not finite; nothing was written")
    cal = {"provenance": provenance, **cal}
    atomic_write_bytes(path, (json.dumps(cal, indent=1) + "\n").encode())


def _numbers(value) -> list[float]:
    """Every number in nested lists and dicts."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) else []


def from_data(specs: list[str], teacher_dir: str, yunet: str | None, cache_dir: Path, log=print) -> dict:
    """The ``facemark calibrate`` work: detect + teach every 68-point training face, then fit."""
    from . import datasets
    from ..detector import RetinaFace, YuNet
    from .prepare import match, prepare, read_sample_image
    from .teacher import Teacher

    from ..backends import ModelError
    from ..errors import UsageError

    samples = [s for s in datasets.load_all(specs, log) if s.split == "train" and s.landmarks.shape[0] == 68]
    samples = [s for s in samples if s.kind != "csv68"] or samples  # the cleaner labels, where there are any
    if not samples:
        raise UsageError("no training faces with 68-point labels in --data (test folders are not used)")
    try:  # both checked before the long detector and teacher pass
        tea = Teacher.from_dir(teacher_dir)
        det = YuNet(yunet, threshold=0.3).check() if yunet else None
    except (FileNotFoundError, ValueError, ModelError) as e:
        raise UsageError(str(e)) from None
    log(f"{len(samples)} training faces with human 68-point labels")
    prep = prepare(samples, RetinaFace(threshold=0.3), tea, cache_dir)
    usable = np.isfinite(prep.teacher).all(axis=(1, 2))
    for i in np.flatnonzero(~usable):  # an image that does not decode: left out of the fit, and said
        log(f"skipped: {samples[i].image}: not an image OpenCV can decode, or the teacher gave no points")
    if not usable.any():
        raise UsageError("no training face could be read")
    keep = np.flatnonzero(usable)
    samples = [samples[i] for i in keep]
    yk = None
    if det is not None:
        yk = np.full((len(samples), 5, 2), np.nan)
        for i, s in enumerate(samples):
            image = read_sample_image(s.image)
            d = None if image is None else match(det.detect(image), s.landmarks)
            if d is not None:
                yk[i] = d.kps
    human = np.stack([s.landmarks for s in samples])
    return calibrate(human, prep.teacher[keep], prep.det_kps[keep], prep.det_box[keep], yk)


def run(data: list[str], teacher: Path, yunet: Path | None, out_path: Path, cache_dir: Path, log=print) -> dict:
    """``facemark calibrate``: fit from ``data`` and write ``out_path`` with the command as provenance."""
    from ..errors import FacemarkError, UsageError

    if Path(teacher).is_file():
        raise UsageError(f"--teacher {teacher} is a file: give the folder that holds the PFLD_*.onnx models")
    if not Path(teacher).is_dir():
        raise UsageError(f"teacher directory not found: {teacher}")
    result = from_data(data, str(teacher), str(yunet) if yunet else None, cache_dir, log=log)
    prov = "facemark calibrate " + " ".join(f"--data {d}" for d in data) + f" --teacher {teacher}" + (f" --yunet {yunet}" if yunet else "")
    try:
        write(result, out_path, prov)
    except ValueError as e:
        raise FacemarkError(f"{e} (to {out_path})") from None
    except OSError as e:
        raise FacemarkError(f"cannot write {out_path}: {e.strerror or e}") from None
    return result

"""How each model's error grows on damaged faces: the clean-data NME hides where they part.

Each test face of 300-W is damaged one way (part of a face cut off by the border, mouth and chin or
one eye covered, overexposed, a JPEG at quality 5, turned 45°), detected once, and every model is
run on the same detection, so the table compares models, not detections. NME in % of the outer
eye corners on the 68 points; "> 8 %": faces above 8 % of that distance.

    python scripts/robustness.py --data 300w=../shared/data/300w --limit 80
"""
from __future__ import annotations

import argparse
import platform

import cv2
import numpy as np

from facemark import FaceLandmarker, labelmap
from facemark.evaluation import metrics
from facemark.imageio import read_image
from facemark.training.datasets import common_subset, load_all
from rotation_check import found, rotate  # (scripts/, beside this one)


def damaged(image: np.ndarray, pts: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The image damaged one way, and its labels moved with it (68 iBUG points)."""
    x1, y1 = pts.min(0)
    x2, y2 = pts.max(0)
    w = x2 - x1
    out = image.copy()
    if kind == "clean":
        return out, pts
    if kind == "border cut":  # the left 30 % of the face outside the frame
        cut = int(max(0, round(x1 + 0.3 * w)))
        return out[:, cut:].copy(), pts - [cut, 0]
    if kind == "top cut":  # the brows and eyes above the frame's top edge
        cut = int(max(0, round(pts[36:48, 1].max() + 0.05 * w)))
        return out[cut:].copy(), pts - [0, cut]
    if kind == "mouth covered":  # a filled box over the mouth and chin
        top = int(pts[48:68, 1].min() - 0.05 * w)
        cv2.rectangle(out, (int(x1), top), (int(x2), int(y2 + 0.05 * w)), (40, 90, 160), -1)
        return out, pts
    if kind == "eye covered":
        e = pts[36:42]
        pad = 0.08 * w
        cv2.rectangle(out, (int(e[:, 0].min() - pad), int(e[:, 1].min() - pad)),
                      (int(e[:, 0].max() + pad), int(e[:, 1].max() + pad)), (30, 30, 30), -1)
        return out, pts
    if kind == "overexposed":
        return cv2.convertScaleAbs(image, alpha=2.5, beta=60), pts
    if kind == "JPEG q5":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 5])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR), pts
    if kind == "turned 45°":
        return rotate(image, pts, 45)
    raise ValueError(kind)


KINDS = ["clean", "border cut", "top cut", "mouth covered", "eye covered", "overexposed", "JPEG q5", "turned 45°"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="KIND=PATH, e.g. 300w=../shared/data/300w")
    ap.add_argument("--models", default="direct,hybrid,hourglass")
    ap.add_argument("--limit", type=int, default=80, help="test faces, taken evenly over the test split")
    a = ap.parse_args()
    test = common_subset(load_all([a.data]))
    samples = test[:: max(1, len(test) // a.limit)][: a.limit]
    names = a.models.split(",")
    models = {n: FaceLandmarker(model=n) for n in names}
    detector = models[names[0]].detector
    m68 = labelmap.load()
    print(f"{len(samples)} 300-W test faces; one detection per damaged image, shared by the models; "
          f"{platform.processor() or platform.machine()}")
    print(f"{'damage':15s} {'found':>6s}  " + "  ".join(f"{n + ' NME %':>16s} {'> 8 %':>6s}" for n in names))
    for kind in KINDS:
        errs = {n: [] for n in names}
        hits = 0
        for s in samples:
            image, pts = damaged(read_image(s.image), s.landmarks, kind)
            det = found(detector.detect(image), pts)
            if det is None:
                continue
            hits += 1
            for n, fl in models.items():
                pred = fl.landmarks_for([image], [[det]])[0][0].landmarks
                errs[n].append(metrics.nme(labelmap.to68(pred, m68)[None], pts[None])[0])
        cells = []
        for n in names:
            e = np.array(errs[n])
            cells.append(f"{100 * e.mean():16.2f} {int((e > 0.08).sum()):6d}" if len(e) else f"{'-':>16s} {'-':>6s}")
        print(f"{kind:15s} {hits:6d}  " + "  ".join(cells))


if __name__ == "__main__":
    main()

"""How the whole pipeline copes with faces turned in the picture plane (a phone held sideways, a
photo scanned upside down): 300-W common-subset faces rotated by a fixed angle, detector and
model as shipped, NME against the rotated labels (inter-ocular, 68 points).

    python scripts/rotation_check.py --data 300w=../shared/data/300w [--model hourglass] [--limit 200]
    python scripts/rotation_check.py --data 300w=../shared/data/300w --turned   # FaceLandmarker(turned=True)

A face the detector does not find counts as missed, not in the NME; FR is the share of found
faces over 10 % NME. "said turned %": of the found faces, those whose detector points put them
turned past 65° and that were not found again upright (``FaceLandmarker._upright``): without
--turned, ``facemark detect`` then ends with a note naming --turned.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facemark import FaceLandmarker, align, labelmap  # noqa: E402
from facemark.notes import looks_turned  # noqa: E402
from facemark.evaluation import metrics  # noqa: E402
from facemark.imageio import read_image  # noqa: E402
from facemark.training.datasets import common_subset, load_all  # noqa: E402


def rotate(image: np.ndarray, pts: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned by ``angle`` degrees (counter-clockwise) on a canvas that holds all of it."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(round(h * sin + w * cos)), int(round(h * cos + w * sin))
    m[:, 2] += ((nw - 1) / 2 - (w - 1) / 2, (nh - 1) / 2 - (h - 1) / 2)
    out = cv2.warpAffine(image, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, pts @ m[:, :2].T + m[:, 2]


def found(detections, pts: np.ndarray):
    """The detection whose box overlaps the labelled face most (IoU > 0.3), whatever its keypoints
    say: an upside-down face is found, so its landmarks are measured, not counted as missed."""
    x1, y1 = pts.min(0)
    x2, y2 = pts.max(0)
    best, best_iou = None, 0.3
    for d in detections:
        b = d.box
        iw, ih = max(0.0, min(b[2], x2) - max(b[0], x1)), max(0.0, min(b[3], y2) - max(b[1], y1))
        inter = iw * ih
        iou = inter / ((b[2] - b[0]) * (b[3] - b[1]) + (x2 - x1) * (y2 - y1) - inter)
        if iou > best_iou:
            best, best_iou = d, iou
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="KIND=PATH, e.g. 300w=../shared/data/300w")
    ap.add_argument("--model", default="hourglass")
    ap.add_argument("--angles", default="0,30,60,90,180")
    ap.add_argument("--limit", type=int, default=200, help="first N test faces")
    ap.add_argument("--turned", action="store_true", help="search each image four ways (facemark detect --turned)")
    a = ap.parse_args()
    samples = common_subset(load_all([a.data]))[: a.limit]
    fl = FaceLandmarker(model=a.model, turned=a.turned)
    m68 = labelmap.load()
    print(f"{len(samples)} test faces, model {a.model}{', turned=True' if a.turned else ''}; "
          f"{platform.processor() or platform.machine()}, {len(samples)} images per angle")
    print("angle   found %   NME % (found)   FR@10 %   faces per image   lowest score of a found face   said turned %")
    for angle in [float(x) for x in a.angles.split(",")]:
        errs, missed, faces, lowest, said = [], 0, 0, 1.0, 0
        for s in samples:
            image, pts = rotate(read_image(s.image), s.landmarks, angle)
            detections = fl.find_faces(image)
            faces += len(detections)  # (300-W photos: one labelled face, sometimes other people; more: false boxes)
            det = found(detections, pts)
            if det is None:
                missed += 1
                continue
            lowest = min(lowest, det.score)
            said += looks_turned(fl, [det])
            pred = fl.landmarks_for([image], [[det]])[0][0].landmarks
            errs.append(metrics.nme(labelmap.to68(pred, m68)[None], pts[None])[0])
        e = np.array(errs)
        share = 100 * len(e) / len(samples)
        nme = 100 * e.mean() if len(e) else float("nan")
        fr = 100 * (e > 0.10).mean() if len(e) else float("nan")
        turned = 100 * said / len(e) if len(e) else float("nan")
        print(f"{angle:5.0f}   {share:7.1f}   {nme:13.2f}   {fr:7.1f}   {faces / len(samples):15.3f}   {lowest:28.3f}"
              f"   {turned:13.1f}")


if __name__ == "__main__":
    main()

"""What cropping a face again from its own points does, where they place the crop off the first.

For each 300-W test face: the crop from the detector's keypoints, the model's points on it, then
``FaceLandmarker.settle`` (crop again from the points while they place the crop more than
RECROP_SHIFT of its side off, at most RECROP_PASSES times). Twice: on the photos as they are, and
with each face pasted at a random place and width (80-640 px, log-uniform) into a 4000x3000 grey
canvas, which the detector searches at 0.16 of its size. Prints NME (% of the outer eye corner
distance, 68 points; over the faces the detector found) without and with settling, by the face's width at the detector's input, and
with the pipeline's rule (settled only when under SMALL_AT_INPUT px there). Usage:

    python scripts/recrop_check.py --data 300w=../shared/data/300w [--model direct] [--every 2]
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from facemark import FaceLandmarker, labelmap
from facemark.landmarker import RECROP_SHIFT, SMALL_AT_INPUT, crop_matrix
from facemark.training import datasets


def nme(points98: np.ndarray, truth: np.ndarray, fl: FaceLandmarker) -> float:
    return float(np.linalg.norm(labelmap.to68(points98, fl.map68) - truth, axis=1).mean()
                 / np.linalg.norm(truth[36] - truth[45]) * 100)


def pasted(image: np.ndarray, truth: np.ndarray, rng: np.random.Generator):
    """The face scaled to a random width and pasted into a 4000x3000 canvas (None: too big)."""
    width = float(np.exp(rng.uniform(np.log(80), np.log(640))))
    s = width / np.ptp(truth[:, 0])
    small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    if h > 2900 or w > 3900:
        return None
    canvas = np.full((3000, 4000, 3), 120, np.uint8)
    y, x = int(rng.integers(0, 3000 - h)), int(rng.integers(0, 4000 - w))
    canvas[y:y + h, x:x + w] = small
    return canvas, (truth + 0.5) * [w / image.shape[1], h / image.shape[0]] - 0.5 + [x, y]


def run(fl: FaceLandmarker, samples, canvas: bool) -> None:
    rng = np.random.default_rng(0)
    rows = []  # (width at the detector's input, NME first, NME settled, moved)
    for s in samples:
        image, truth = cv2.imread(str(s.image)), s.landmarks
        if canvas:
            got = pasted(image, truth, rng)
            if got is None:
                continue
            image, truth = got
        dets = fl.detector.detect(image)
        if not dets:
            continue
        centre = truth.mean(0)
        d = min(dets, key=lambda d: np.linalg.norm((d.box[:2] + d.box[2:4]) / 2 - centre))
        mat = crop_matrix(d, fl.model.size)
        first = fl.predict_crops([image], [mat])
        settled = fl.settle([image], [mat], first)
        rows.append((float(d.box[2] - d.box[0]) * d.seen_at, nme(first[0], truth, fl), nme(settled[0], truth, fl),
                     not np.array_equal(first, settled)))
    r = np.array(rows)
    where = "pasted into 4000x3000" if canvas else "photos as they are"
    rule = np.where(r[:, 0] < SMALL_AT_INPUT, r[:, 2], r[:, 1])
    print(f"{fl.model_name} on {where}: {len(r)} faces, NME {r[:, 1].mean():.3f} as read, {r[:, 2].mean():.3f} all "
          f"settled, {rule.mean():.3f} settled under {SMALL_AT_INPUT:g} px (the pipeline); worst face "
          f"{r[:, 1].max():.1f} / {r[:, 2].max():.1f} / {rule.max():.1f}")
    for lo, hi in ((0, 32), (32, 48), (48, 64), (64, 128), (128, 1e9)):
        k = (r[:, 0] >= lo) & (r[:, 0] < hi)
        if k.any():
            print(f"  {lo:3d}-{hi:<4g} px at the detector's input: {int(k.sum()):4d} faces, {int(r[k, 3].sum()):3d} "
                  f"read again, NME {r[k, 1].mean():.3f} -> {r[k, 2].mean():.3f}, worst {r[k, 1].max():.1f} -> {r[k, 2].max():.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", action="append", help="repeatable (default: direct, hybrid, hourglass)")
    ap.add_argument("--every", type=int, default=2, help="canvas runs take every Nth face")
    a = ap.parse_args()
    samples = datasets.common_subset(datasets.load(a.data))
    print(f"RECROP_SHIFT {RECROP_SHIFT}, SMALL_AT_INPUT {SMALL_AT_INPUT:g} px; {len(samples)} test faces")
    for model in a.model or ["direct", "hybrid", "hourglass"]:
        fl = FaceLandmarker(model=model)
        run(fl, samples, canvas=False)
        run(fl, samples[:: a.every], canvas=True)


if __name__ == "__main__":
    main()

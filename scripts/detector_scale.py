"""How small a face RetinaFace still finds at each input scale (and how long it takes).

Pastes each 300-W test face, shrunk to a given size, into a 640x480 frame and runs the detector
at several input scales. With ``--big``, the other end: each test photo scaled so its face is F px,
run at that size in one pass (as a ``--min-face`` search did) and through ``RetinaFace.detect``,
counting the annotated face found and the other boxes (some are real faces nobody annotated).
Usage:

    python scripts/detector_scale.py --data 300w=../shared/data/300w [--limit 200]
    python scripts/detector_scale.py --data 300w=../shared/data/300w --big 160,320,480,640 --limit 40
"""
from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from facemark.training import datasets
from facemark.detector import RetinaFace
from facemark.layouts import five_points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--sizes", default="24,32,40,56,80")
    ap.add_argument("--scales", default="1.0,0.75,0.5")
    ap.add_argument("--big", default=None, help="face sizes F (px) for the big-face count")
    a = ap.parse_args()
    samples = datasets.common_subset(datasets.load(a.data))[: a.limit]
    if a.big:
        return big_faces(samples, [int(v) for v in a.big.split(",")])
    sizes = [int(v) for v in a.sizes.split(",")]
    scales = [float(v) for v in a.scales.split(",")]
    rng = np.random.default_rng(0)
    print(f"{len(samples)} faces; face size = landmark box side; frame 640x480")
    print("scale  " + "  ".join(f"{s:>5d}px" for s in sizes) + "   ms/frame")
    for scale in scales:
        det = RetinaFace(threshold=0.6)
        det.scale_for = lambda h, w, _s=scale: _s  # noqa: E731 - fixed input scale for this sweep
        hits = {s: 0 for s in sizes}
        times = []
        for smp in samples:
            image = cv2.imread(str(smp.image))
            lm = smp.landmarks
            side = float((lm.max(0) - lm.min(0)).max())
            for size in sizes:
                k = size / side
                small = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
                frame = np.full((480, 640, 3), 110, np.uint8)
                h, w = min(480, small.shape[0]), min(640, small.shape[1])
                oy, ox = rng.integers(0, 480 - h + 1), rng.integers(0, 640 - w + 1)
                frame[oy : oy + h, ox : ox + w] = small[:h, :w]
                g5 = five_points(lm * k + [ox, oy])
                t = time.perf_counter()
                found = det.detect(frame)
                times.append(time.perf_counter() - t)
                iod = np.linalg.norm(g5[0] - g5[1])
                if any(np.linalg.norm(d.kps - g5, axis=1).mean() < iod / 2 for d in found):
                    hits[size] += 1
        row = "  ".join(f"{100 * hits[s] / len(samples):6.1f}%" for s in sizes)
        print(f"{scale:5.2f}  {row}   {statistics.median(times) * 1000:7.1f}")



def big_faces(samples, sizes: list[int]) -> None:
    det = RetinaFace(min_face=RetinaFace.NET_MIN_FACE)  # input scale 1: the photo as it is
    print("face px  photos  one pass: found  other boxes   detect(): found  other boxes   ms one pass  ms detect()")
    for size in sizes:
        n, found, other, times = 0, [0, 0], [0, 0], [[], []]
        for smp in samples:
            image = cv2.imread(str(smp.image))
            lm = smp.landmarks
            k = size / float((lm.max(0) - lm.min(0)).max())
            if image.shape[0] * image.shape[1] * k * k > RetinaFace.MAX_INPUT_PIXELS:
                continue  # (tiled: not one pass)
            image = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
            g5 = five_points(lm * k)
            iod = np.linalg.norm(g5[0] - g5[1])
            n += 1
            for j, search in enumerate((lambda im: det._detect_at(im, 1.0), det.detect)):
                t = time.perf_counter()
                dets = search(image)
                times[j].append(time.perf_counter() - t)
                hit = [np.linalg.norm(d.kps - g5, axis=1).mean() < iod / 2 for d in dets]
                found[j] += any(hit)
                other[j] += len(hit) - sum(hit)
        print(f"{size:7d}  {n:6d}  {found[0]:15d}  {other[0]:11d}   {found[1]:15d}  {other[1]:11d}   "
              f"{statistics.median(times[0]) * 1000:11.0f}  {statistics.median(times[1]) * 1000:11.0f}")


if __name__ == "__main__":
    main()

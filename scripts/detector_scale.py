"""How small a face RetinaFace still finds at each input scale (and how long it takes).

Pastes each 300-W test face, shrunk to a given size, into a 640x480 frame and runs the detector
at several input scales. Usage:

    python scripts/detector_scale.py --data 300w=../shared/data/300w [--limit 200]
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
    a = ap.parse_args()
    samples = [s for s in datasets.load(a.data) if s.split == "test"][: a.limit]
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


if __name__ == "__main__":
    main()

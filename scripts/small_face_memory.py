"""Peak memory and time of small-face search on a big photo (the "Limits" figures in docs/DETECT.md).

    python scripts/small_face_memory.py [--side 6000] [--min-face 20]

Pastes four copies of the example face (shrunk to 128 px) onto a grey SIDE x SIDE canvas and runs
the RetinaFace detector with ``min_face``: beyond 4096x4096 network pixels it tiles, so the peak
resident memory of this process stays bounded whatever the photo.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from facemark.detector import RetinaFace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=6000)
    ap.add_argument("--min-face", type=float, default=20)
    a = ap.parse_args()
    face = cv2.resize(cv2.imread(str(ROOT / "examples" / "astronaut.jpg")), (128, 128))
    big = np.full((a.side, a.side, 3), 128, np.uint8)
    spots = [(100, 100), (a.side // 2, a.side * 2 // 3), (a.side - 228, a.side - 228), (a.side // 3, a.side // 3)]
    for y, x in spots:
        big[y:y + 128, x:x + 128] = face
    t = time.perf_counter()
    dets = RetinaFace(min_face=a.min_face).detect(big)
    took = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{a.side}x{a.side} photo, min_face {a.min_face:g}: {len(dets)} of {len(spots)} faces found in {took:.1f} s; "
          f"peak resident memory of the process {peak:.0f} MB")


if __name__ == "__main__":
    main()

"""How often ``--max-faces 1`` keeps the followed face's id when a smaller face crosses in front of
it: the scene of tests/test_video.py's --max-faces test (a big face moving right 3 px a frame, a
smaller one moving left 5 px a frame across it), started at several offsets and run at several
``--detect-every``. The test holds one offset; this shows how much of the scene it stands for.

    python scripts/max_faces_check.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facemark import FaceLandmarker  # noqa: E402
from facemark.detector import RetinaFace  # noqa: E402
from facemark.track import Tracker  # noqa: E402


def faces() -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"))
    x1, y1, x2, y2 = RetinaFace().detect(image)[0].box.astype(int)
    pad = (x2 - x1) // 3
    crop = image[max(0, y1 - pad): y2 + pad, max(0, x1 - pad): x2 + pad]
    big = cv2.resize(crop, (200, 236), interpolation=cv2.INTER_AREA)
    small = np.ascontiguousarray(cv2.resize(crop, (110, 130), interpolation=cv2.INTER_AREA)[:, ::-1])
    return big, small


def keeps_id(fl: FaceLandmarker, big: np.ndarray, small: np.ndarray, detect_every: int, start: int) -> bool:
    """Whether id 0 stays on the big face (within 60 px of its centre) and is there before the crossing."""
    tr = Tracker(fl, detect_every=detect_every, max_faces=1)
    zero = []
    for i in range(100):
        frame = np.full((480, 640, 3), 100, np.uint8)
        xa, xb = 20 + start + 3 * i, 560 - 5 * i
        frame[120:356, xa:xa + 200] = big
        if -110 < xb < 640:
            frame[170:300, max(0, xb):min(640, xb + 110)] = small[:, max(0, -xb):min(110, 640 - xb)]
        zero += [(i, float(t.box[0] + t.box[2]) / 2 - (xa + 100)) for t in tr.step(frame, i / 25.0) if t.id == 0]
    return {i for i, _ in zero} >= set(range(45)) and all(abs(dx) < 60 for _, dx in zero)


def main() -> None:
    big, small = faces()
    fl = FaceLandmarker(model="direct")
    starts = (0, 4, 8, 12, 16)
    print("--detect-every | " + " | ".join(f"start +{s} px" for s in starts) + " | kept")
    print("|".join(["---"] * (len(starts) + 2)))
    total = 0
    for every in (10, 5, 3):
        kept = [keeps_id(fl, big, small, every, s) for s in starts]
        total += sum(kept)
        print(f"{every} | " + " | ".join("kept" if k else "handed over" for k in kept) + f" | {sum(kept)}/{len(kept)}")
    print(f"id kept in {total} of {3 * len(starts)} runs")


if __name__ == "__main__":
    main()

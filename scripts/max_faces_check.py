"""How often ``--max-faces 1`` keeps the followed face's id when a smaller face crosses in front of
it: the scene of tests/test_video.py's --max-faces test (a big face moving right 3 px a frame, a
smaller one moving left 5 px a frame across it), started at several offsets and run at several
``--detect-every``. The tests hold a few offsets; this shows how much of the scene they stand for.

    python scripts/max_faces_check.py
    python scripts/max_faces_check.py --starts 0,4,8   # fewer offsets
    python scripts/max_faces_check.py --speeds 2,8 --size 1.3   # other speeds, a larger face in front
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facemark import FaceLandmarker  # noqa: E402
from facemark.detector import RetinaFace  # noqa: E402
from facemark.track import Tracker  # noqa: E402


def faces(size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The followed face (200x236 px) and the one crossing in front (110x130 px times ``size``, mirrored)."""
    image = cv2.imread(str(Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"))
    x1, y1, x2, y2 = RetinaFace().detect(image)[0].box.astype(int)
    pad = (x2 - x1) // 3
    crop = image[max(0, y1 - pad): y2 + pad, max(0, x1 - pad): x2 + pad]
    big = cv2.resize(crop, (200, 236), interpolation=cv2.INTER_AREA)
    small = cv2.resize(crop, (round(110 * size), round(130 * size)), interpolation=cv2.INTER_AREA)
    return big, np.ascontiguousarray(small[:, ::-1])


def keeps_id(fl: FaceLandmarker, big: np.ndarray, small: np.ndarray, detect_every: int, start: int,
             speeds: tuple[int, int] = (3, 5)) -> bool:
    """Whether id 0 stays on the big face (within 60 px of its centre) and is there until 10 frames
    before the two faces' centres meet. ``speeds``: px a frame, the big face's (right) and the
    small one's (left)."""
    tr = Tracker(fl, detect_every=detect_every, max_faces=1)
    zero = []
    va, vb = speeds
    sh, sw = small.shape[:2]
    for i in range(min(100, (420 - start) // va)):  # (the big face stays whole in the frame)
        frame = np.full((480, 640, 3), 100, np.uint8)
        xa, xb = 20 + start + va * i, 560 - vb * i
        frame[120:356, xa:xa + 200] = big
        if -sw < xb < 640:
            frame[235 - sh // 2:235 - sh // 2 + sh, max(0, xb):min(640, xb + sw)] = small[:, max(0, -xb):min(sw, 640 - xb)]
        zero += [(i, float(t.box[0] + t.box[2]) / 2 - (xa + 100)) for t in tr.step(frame, i / 25.0) if t.id == 0]
    meet = (440 + sw // 2 - start) // (va + vb)
    return {i for i, _ in zero} >= set(range(meet - 10)) and all(abs(dx) < 60 for _, dx in zero)


def comes_back(fl: FaceLandmarker, big: np.ndarray, small: np.ndarray, detect_every: int, start: int,
               speeds: tuple[int, int] = (3, 5)) -> bool:
    """Whether id 0 is on the big face again (within 30 px of its centre) on the last frame, once
    the small face has passed it by a face width and a half."""
    tr = Tracker(fl, detect_every=detect_every, max_faces=1)
    va, vb = speeds
    sh, sw = small.shape[:2]
    last = []
    for i in range(min(100, (420 - start) // va)):
        frame = np.full((480, 640, 3), 100, np.uint8)
        xa, xb = 20 + start + va * i, 560 - vb * i
        frame[120:356, xa:xa + 200] = big
        if -sw < xb < 640:
            frame[235 - sh // 2:235 - sh // 2 + sh, max(0, xb):min(640, xb + sw)] = small[:, max(0, -xb):min(sw, 640 - xb)]
        last = [float(t.box[0] + t.box[2]) / 2 - (xa + 100) for t in tr.step(frame, i / 25.0) if t.id == 0]
    return (xa + 100) - (xb + sw / 2) > 150 and len(last) == 1 and abs(last[0]) < 30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", default=",".join(map(str, range(21))), help="the big face's start offsets (px), comma-separated")
    ap.add_argument("--speeds", default="3,5", help="px a frame: the big face's (right), the small one's (left)")
    ap.add_argument("--size", type=float, default=1.0, help="the small face's size, times 110x130 px")
    args = ap.parse_args()
    starts = tuple(int(v) for v in args.starts.split(","))
    speeds = tuple(int(v) for v in args.speeds.split(","))
    big, small = faces(args.size)
    fl = FaceLandmarker(model="direct")
    print("--detect-every | " + " | ".join(f"start +{s} px" for s in starts) + " | kept")
    print("|".join(["---"] * (len(starts) + 2)))
    total = back = 0
    for every in (10, 5, 3):
        kept = [keeps_id(fl, big, small, every, s, speeds) for s in starts]
        total += sum(kept)
        print(f"{every} | " + " | ".join("kept" if k else "handed over" for k in kept) + f" | {sum(kept)}/{len(kept)}")
        back += sum(comes_back(fl, big, small, every, s, speeds) for s in starts)
    print(f"id kept in {total} of {3 * len(starts)} runs")
    print(f"id 0 back on the followed face at the end in {back} of {3 * len(starts)} runs")


if __name__ == "__main__":
    main()

"""Landmark accuracy of the video tracker against human labels, beside a detection of each frame.

Each 300-W test face (an even spread of them) becomes a short clip: its photo moved across a
480x360 frame along a head-like path (it grows from 100 to 180 px, rolls up to 20° each way and
pans), every frame JPEG-compressed (quality 90) as a recording is, and the 68 human labels carried
along the same path. ``facemark video``'s tracker (default settings: a full detection every 10
frames, window checks between) runs over the clip; beside it, ``FaceLandmarker.detect`` on each
frame alone. NME is inter-ocular (outer eye corners), 68 points, in %.

The tracker should never do much worse than a fresh detection of the same frame; "frames over
detection + 5" counts the frames where it did.

    python scripts/video_accuracy.py --data 300w=../shared/data/300w [--model direct] [--limit 60]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facemark import FaceLandmarker, labelmap  # noqa: E402
from facemark.evaluation import metrics  # noqa: E402
from facemark.evaluation.bench import machine_info  # noqa: E402
from facemark.evaluation.evaluate import evenly  # noqa: E402
from facemark.imageio import read_image  # noqa: E402
from facemark.track import Tracker  # noqa: E402
from facemark.training.datasets import common_subset, load_all  # noqa: E402

FRAMES, WIDTH, HEIGHT, FPS = 45, 480, 360, 25.0


def clip(image: np.ndarray, pts: np.ndarray):
    """(frame, labels) along the path: the face's label box grows 100 -> 180 px, rolls ±20°, pans."""
    centre = (pts.min(0) + pts.max(0)) / 2
    side = float((pts.max(0) - pts.min(0)).max())
    for i in range(FRAMES):
        t = i / (FRAMES - 1)
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 20 * np.sin(2 * np.pi * t), (100 + 80 * t) / side)
        m[:, 2] += (150 + 180 * t - centre[0], 180 + 20 * np.sin(4 * np.pi * t) - centre[1])
        frame = cv2.warpAffine(image, m, (WIDTH, HEIGHT), borderValue=(60, 60, 60))
        frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
        yield frame, pts @ m[:, :2].T + m[:, 2]


def best_nme(faces68: list[np.ndarray], pts: np.ndarray) -> float | None:
    """The NME of the face nearest the labels (other faces in a photo are other people)."""
    errs = [float(metrics.nme(f[None], pts[None])[0]) for f in faces68]
    return min(errs) if errs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="KIND=PATH, e.g. 300w=../shared/data/300w")
    ap.add_argument("--model", default="direct")
    ap.add_argument("--limit", type=int, default=60, help="test faces, taken evenly over the test set")
    a = ap.parse_args()
    samples = evenly(common_subset(load_all([a.data])), a.limit)
    fl = FaceLandmarker(model=a.model)
    m68 = labelmap.load()
    tracked, detected, missed, worse, worst = [], [], [0, 0], 0, (0.0, "")
    for s in samples:
        tracker = Tracker(fl)
        for i, (frame, pts) in enumerate(clip(read_image(s.image), s.landmarks)):
            shown = tracker.step(frame, i / FPS)
            e_track = best_nme([tracker.landmarks68(tr) for tr in shown], pts)
            e_det = best_nme([labelmap.to68(f.landmarks, m68) for f in fl.detect(frame)], pts)
            for k, e, kept in ((0, e_track, tracked), (1, e_det, detected)):  # (each row over every frame it has a face on)
                if e is None:
                    missed[k] += 1
                else:
                    kept.append(e)
            if e_track is not None and e_det is not None:
                worse += e_track > e_det + 0.05
            if e_track is not None and e_track > worst[0]:
                worst = (e_track, f"{Path(s.image).name} frame {i}")
    t, d = 100 * np.array(tracked), 100 * np.array(detected)
    print(f"{len(samples)} clips of {FRAMES} frames ({WIDTH}x{HEIGHT}), model {a.model}; "
          f"{machine_info('cpu')['cpu']}, {len(os.sched_getaffinity(0))} cores")
    print("                    NME %   FR@10 %   frames over 15 %   worst frame %   frames with no face")
    print(f"tracked (video)   {t.mean():7.2f}   {(t > 10).mean() * 100:7.2f}   {(t > 15).sum():16d}   {t.max():13.1f}"
          f"   {missed[0]:19d}   (worst: {worst[1]})")
    print(f"detected alone    {d.mean():7.2f}   {(d > 10).mean() * 100:7.2f}   {(d > 15).sum():16d}   {d.max():13.1f}"
          f"   {missed[1]:19d}")
    print(f"frames where the tracked face is over 5 points worse than that frame's detection: {worse}")


if __name__ == "__main__":
    main()

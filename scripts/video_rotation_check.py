"""How ``facemark video`` follows faces turned in the picture plane, frame by frame, without --turned.

Each of the first ``--faces`` 300-W test photos is laid, turned by each of ``--angles`` and
scaled 0.7, on a blurred-noise 640x480 background; it moves 3 px a frame to the right and sways up
and down, for ``--frames`` frames, encoded as an MJPG clip (lossy, as real footage is). The labels
move with the pixels. The clip goes through ``facemark.video.process_video`` as shipped; each
frame's 68 points are compared with the moved labels (NME, outer eye corners).

Printed per angle over all faces: frames with no face, mean NME, the worst frame's NME, and
frames over 8 % (single wrong frames are what a viewer sees as a flash).

    python scripts/video_rotation_check.py --data 300w=../shared/data/300w [--faces 3] [--model direct] [--turned]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facemark import FaceLandmarker  # noqa: E402
from facemark.imageio import read_image  # noqa: E402
from facemark.training.datasets import common_subset, load_all  # noqa: E402
from facemark.video import process_video  # noqa: E402

W, H = 640, 480


def clip(path: Path, image: np.ndarray, pts: np.ndarray, angle: float, frames: int, seed: int) -> np.ndarray:
    """Write the clip; returns the labels of every frame (frames, 68, 2)."""
    rng = np.random.default_rng(seed)
    ground = cv2.GaussianBlur(rng.integers(60, 200, (H, W, 3), dtype=np.uint8), (31, 31), 0)
    h, w = image.shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (W, H))
    truth = []
    for i in range(frames):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 0.7)
        m[:, 2] += (220 + 3 * i - w / 2, 240 + 10 * np.sin(i / 5) - h / 2)
        frame = ground.copy()
        inside = cv2.warpAffine(np.full((h, w), 255, np.uint8), m, (W, H)) > 0
        frame[inside] = cv2.warpAffine(image, m, (W, H))[inside]
        out.write(frame)
        truth.append(pts @ m[:, :2].T + m[:, 2])
    out.release()
    return np.array(truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="KIND=PATH, e.g. 300w=../shared/data/300w")
    ap.add_argument("--faces", type=int, default=3, help="first N test photos")
    ap.add_argument("--angles", default="30,60,90,-90,120,135,180")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--model", default="direct")
    ap.add_argument("--turned", action="store_true", help="facemark video --turned")
    a = ap.parse_args()
    samples = common_subset(load_all([a.data]))[: a.faces]
    fl = FaceLandmarker(model=a.model, turned=a.turned)
    print(f"{len(samples)} faces x {a.frames} frames per angle, model {a.model}{', turned' if a.turned else ''}; "
          f"{platform.processor() or platform.machine()}")
    print("angle   no face   mean NME %   worst frame %   frames > 8 %")
    with tempfile.TemporaryDirectory() as tmp:
        for angle in [float(x) for x in a.angles.split(",")]:
            errs, missing = [], 0
            for k, s in enumerate(samples):
                path, lines = Path(tmp) / "clip.avi", Path(tmp) / "clip.jsonl"
                truth = clip(path, read_image(s.image), s.landmarks, angle, a.frames, k)
                with warnings.catch_warnings():  # (faces that looked turned: what this script measures)
                    warnings.simplefilter("ignore")
                    process_video(path, fl, json_path=lines, log=lambda *_: None)
                for i, line in enumerate(lines.read_text().splitlines()):
                    faces = json.loads(line)["faces"]
                    if not faces:
                        missing += 1
                        continue
                    g = truth[i]
                    near = min(faces, key=lambda f: np.abs(np.mean(f["landmarks68"], 0) - g.mean(0)).sum())
                    p = np.array(near["landmarks68"])
                    errs.append(100 * np.linalg.norm(p - g, axis=1).mean() / np.linalg.norm(g[36] - g[45]))
            e = np.array(errs) if errs else np.array([np.nan])
            print(f"{angle:5.0f}   {missing:7d}   {e.mean():10.2f}   {e.max():13.1f}   {int((e > 8).sum()):12d}")


if __name__ == "__main__":
    main()

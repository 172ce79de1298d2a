"""Where a model's 68 points lie on average against human labels: the mean signed error, so a
systematic offset shows (the NME of ``facemark eval`` averages distances and hides its direction).

Each face is cropped from its labels (``facemark eval --boxes gt``: the landmark model alone), and
its error is taken in the face's own frame (eye line level: x along it, + towards the image's
right for an upright face; y down) in % of the distance between the eye centres, and in pixels
(of that frame) by face size and subset, since an offset of labels' pixel convention is constant in pixels, not in face widths.

    python scripts/point_bias.py --data 300w=../shared/data/300w --model hybrid
    python scripts/point_bias.py --data 300w=../shared/data/300w --model hybrid --split train --stride 4

Training mirrors faces, so a horizontal offset in the labels' convention is averaged away in
training (a mirrored label's offset is the opposite one) while a vertical one is learned: an x
offset of about the same pixels on train and test faces, of every size, is the labels', not the
model's.
"""
from __future__ import annotations

import argparse
import platform
from collections import defaultdict

import numpy as np

from facemark import FaceLandmarker, align, labelmap
from facemark.imageio import read_image
from facemark.layouts import five_points
from facemark.training.datasets import common_subset, load_all

PARTS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
         "mouth": range(48, 68)}


def face_frame_error(pred68: np.ndarray, gt68: np.ndarray) -> tuple[np.ndarray, float]:
    """(68, 2) error in the face's frame in eye-distance units, and that distance in pixels."""
    left, right = gt68[36:42].mean(0), gt68[42:48].mean(0)
    v = right - left
    iod = float(np.linalg.norm(v))
    c, s = v / iod
    return (pred68 - gt68) @ np.array([[c, s], [-s, c]]).T / iod, iod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="300w=PATH (68-point labels)")
    ap.add_argument("--model", default="direct")
    ap.add_argument("--split", choices=("test", "train"), default="test", help="test: the common subset")
    ap.add_argument("--stride", type=int, default=1, help="every Nth face (quick runs)")
    a = ap.parse_args()
    every = load_all([a.data])
    faces = common_subset(every) if a.split == "test" else [s for s in every if s.split == "train"]
    faces = faces[::a.stride]
    fl = FaceLandmarker(model=a.model)
    errors, sizes, subsets = [], [], []
    for s in faces:
        image = read_image(s.image)
        m = align.from_points(five_points(s.landmarks), align.TEMPLATES["landmarks98"], fl.model.size)
        pred = labelmap.to68(fl.predict_crops([image], [m])[0], fl.map68)
        e, iod = face_frame_error(pred, s.landmarks)
        errors.append(e)
        sizes.append(iod)
        subsets.append(s.subset.split("/")[0])
    e = np.array(errors)
    bias = e.mean(0)
    print(f"{a.model} on {len(e)} {a.split} faces, crops from the labels ({platform.processor() or platform.machine()})")
    print(f"NME {100 * np.linalg.norm(e, axis=2).mean():.2f} %; with each point's mean offset taken away "
          f"{100 * np.linalg.norm(e - bias, axis=2).mean():.2f} %\n")
    print("| part | mean offset x (% eye distance) | mean offset y | NME |")
    print("|---|--:|--:|--:|")
    for name, r in PARTS.items():
        r = list(r)
        print(f"| {name} | {100 * bias[r, 0].mean():+.2f} | {100 * bias[r, 1].mean():+.2f} | "
              f"{100 * np.linalg.norm(e[:, r], axis=2).mean():.2f} |")
    print("\njaw points 1-17, mean offset y (% eye distance, + is down): "
          + " ".join(f"{100 * v:+.1f}" for v in bias[:17, 1]))
    px = e.mean(1) * np.array(sizes)[:, None]  # each face's mean offset in pixels
    order = np.argsort(sizes)
    print("\n| faces | eye distance (px) | mean offset x (px) | mean offset y (px) |")
    print("|---|--:|--:|--:|")
    for q in np.array_split(order, 4):
        print(f"| quarter by size | {sizes[q[0]]:.0f}-{sizes[q[-1]]:.0f} | {px[q, 0].mean():+.2f} | {px[q, 1].mean():+.2f} |")
    by = defaultdict(list)
    for k, sub in enumerate(subsets):
        by[sub].append(k)
    for sub, ks in sorted(by.items()):
        print(f"| {sub} ({len(ks)}) | | {px[ks, 0].mean():+.2f} | {px[ks, 1].mean():+.2f} |")


if __name__ == "__main__":
    main()

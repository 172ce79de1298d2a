"""Faces cut off by the frame's edge, with and without ``--turned``: 300-W common-subset faces
with a share of each face (of its labelled width or height) outside the image's left or top
edge, the picture then stored turned (``--turns``). Half a face can be found sideways in a turned
view, scored high, with every point squeezed onto the visible half: "over 20 %" counts such
readings.

    python scripts/cut_faces.py --data 300w=../shared/data/300w [--limit 554] [--cuts 0.3,0.5]
        [--edge left|top] [--turns 0,90,180,270] [--model direct]

NME in % of the outer eye corners on the 68 points, of the faces found (the detection overlapping
the labelled face, as scripts/rotation_check.py finds it).
"""
from __future__ import annotations

import argparse
import platform

import numpy as np

from facemark import FaceLandmarker, labelmap
from facemark.evaluation import metrics
from facemark.imageio import read_image
from facemark.training.datasets import common_subset, load_all
from rotation_check import found, rotate  # (scripts/, beside this one)


def cut_off(image: np.ndarray, pts: np.ndarray, share: float, edge: str) -> tuple[np.ndarray, np.ndarray]:
    """The image with ``share`` of the face (its labelled extent) outside the ``edge``, and the labels moved."""
    axis = 0 if edge == "left" else 1
    lo, hi = pts[:, axis].min(), pts[:, axis].max()
    at = int(max(0, round(lo + share * (hi - lo))))
    if edge == "left":
        return np.ascontiguousarray(image[:, at:]), pts - [at, 0]
    return np.ascontiguousarray(image[at:]), pts - [0, at]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="KIND=PATH, e.g. 300w=../shared/data/300w")
    ap.add_argument("--model", default="direct")
    ap.add_argument("--limit", type=int, default=554, help="first N test faces")
    ap.add_argument("--cuts", default="0.3,0.5", help="shares of each face put outside the frame")
    ap.add_argument("--edge", default="left", choices=["left", "top"])
    ap.add_argument("--turns", default="0", help="angles the cut picture is stored turned by (multiples of 90)")
    a = ap.parse_args()
    samples = common_subset(load_all([a.data]))[: a.limit]
    images = [read_image(s.image) for s in samples]
    m68 = labelmap.load()
    print(f"{len(samples)} test faces, model {a.model}, cut at the {a.edge} edge; "
          f"{platform.processor() or platform.machine()}")
    print("cut   turned by   --turned   found %   NME % (found)   over 20 %   highest score over 20 %")
    landmarkers = {turned: FaceLandmarker(model=a.model, turned=turned) for turned in (False, True)}
    for cut in [float(x) for x in a.cuts.split(",")]:
        for angle in [float(x) for x in a.turns.split(",")]:
            for turned, fl in landmarkers.items():
                errs, scores = [], []
                for s, image in zip(samples, images):
                    view, pts = rotate(*cut_off(image, s.landmarks, cut, a.edge), angle)
                    det = found(fl.find_faces(view), pts)
                    if det is None:
                        continue
                    pred = fl.landmarks_for([view], [[det]])[0][0].landmarks
                    errs.append(metrics.nme(labelmap.to68(pred, m68)[None], pts[None])[0])
                    scores.append(det.score)
                e, sc = np.array(errs), np.array(scores)
                bad = e > 0.20
                print(f"{cut:.1f}   {angle:9.0f}   {'yes' if turned else 'no':8}   {100 * len(e) / len(samples):7.1f}   "
                      f"{100 * e.mean() if len(e) else float('nan'):13.2f}   {int(bad.sum()):9d}   "
                      f"{sc[bad].max() if bad.any() else float('nan'):23.3f}")


if __name__ == "__main__":
    main()

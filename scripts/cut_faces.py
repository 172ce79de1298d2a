"""Faces cut off by the frame's edge, with and without ``--turned``: 300-W common-subset faces
with the left part of each face (a share of its labelled width) outside the image. Half a face
can be found sideways in a turned view, scored high, with every point squeezed onto the visible
half: "over 20 %" counts such readings. Also the widest box RetinaFace gives an uncut upright face
(``landmarker.TURNED_MAX_WIDTH`` is set above it).

    python scripts/cut_faces.py --data 300w=../shared/data/300w [--limit 554] [--cuts 0.3,0.5] [--model direct]

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
from facemark.training.datasets import load_all
from rotation_check import found  # (scripts/, beside this one)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="KIND=PATH, e.g. 300w=../shared/data/300w")
    ap.add_argument("--model", default="direct")
    ap.add_argument("--limit", type=int, default=554, help="first N test faces")
    ap.add_argument("--cuts", default="0.3,0.5", help="shares of each face's width put outside the frame")
    a = ap.parse_args()
    samples = [s for s in load_all([a.data]) if s.split == "test"][: a.limit]
    images = [read_image(s.image) for s in samples]
    m68 = labelmap.load()
    print(f"{len(samples)} test faces, model {a.model}; {platform.processor() or platform.machine()}")
    upright = FaceLandmarker(model=a.model)
    ratios = [(d.box[2] - d.box[0]) / (d.box[3] - d.box[1]) for im in images for d in upright._plain(im, False)
              if d.score >= 0.9]
    print(f"uncut faces: boxes scored 0.9 or more, width over height: median {np.median(ratios):.2f}, "
          f"widest {max(ratios):.2f} ({len(ratios)} boxes)")
    print("cut   --turned   found %   NME % (found)   over 20 %   highest score over 20 %")
    for cut in [float(x) for x in a.cuts.split(",")]:
        for turned in (False, True):
            fl = FaceLandmarker(model=a.model, turned=turned)
            errs, scores = [], []
            for s, image in zip(samples, images):
                x1, x2 = s.landmarks[:, 0].min(), s.landmarks[:, 0].max()
                left = int(max(0, round(x1 + cut * (x2 - x1))))
                view, pts = np.ascontiguousarray(image[:, left:]), s.landmarks - [left, 0]
                det = found(fl.find_faces(view), pts)
                if det is None:
                    continue
                pred = fl.landmarks_for([view], [[det]])[0][0].landmarks
                errs.append(metrics.nme(labelmap.to68(pred, m68)[None], pts[None])[0])
                scores.append(det.score)
            e, sc = np.array(errs), np.array(scores)
            bad = e > 0.20
            print(f"{cut:.1f}   {'yes' if turned else 'no':8}   {100 * len(e) / len(samples):7.1f}   "
                  f"{100 * e.mean() if len(e) else float('nan'):13.2f}   {int(bad.sum()):9d}   "
                  f"{sc[bad].max() if bad.any() else float('nan'):23.3f}")


if __name__ == "__main__":
    main()

"""How well faces given as bare boxes (``--boxes``, ``FaceLandmarker.landmarks``) are landmarked,
for boxes drawn the way different detectors draw them.

    python scripts/given_boxes.py --data 300w=../shared/data/300w --models direct,hybrid

Each labelled test face the detector finds gives five boxes: the detector's own; ``tight``, the
bounding box of the 68 labels (brows to chin, as dlib-style boxes are); ``loose`` (20 % of the
side added on every edge); ``shifted`` (10 % right, 5 % down); ``small`` (15 % taken off every
edge). For each, NME (inter-ocular, 68 points) and failures over 8 % of three ways to crop:

* ``box alone``: the crop from the box (what facemark did before it looked for keypoints);
* ``box + 2 passes``: that crop, then cropped twice again from its own points, each kept only if
  it stays on the box (what it does now when no face matches the box);
* ``facemark``: ``FaceLandmarker.landmarks_for``, which finds the face's keypoints in a window
  around the box; the column ``matched`` says how often it did.

The first row, ``keypoints``, is the full pipeline (the detector's box and its five keypoints).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facemark import align, labelmap  # noqa: E402
from facemark.detector import Detection  # noqa: E402
from facemark.evaluation import metrics  # noqa: E402
from facemark.evaluation.evaluate import match  # noqa: E402
from facemark.imageio import read_image  # noqa: E402
from facemark.landmarker import BOX_PASSES, FaceLandmarker, _near, _realign  # noqa: E402
from facemark.training.datasets import common_subset, load_all  # noqa: E402


def conventions(det: Detection, labels: np.ndarray) -> dict[str, np.ndarray]:
    b = np.asarray(det.box, np.float64)
    side = max(b[2] - b[0], b[3] - b[1])
    return {"detector's box": b,
            "tight": np.array([*labels.min(0), *labels.max(0)]),
            "loose": b + np.array([-0.2, -0.2, 0.2, 0.2]) * side,
            "shifted": b + np.array([0.1, 0.05, 0.1, 0.05]) * side,
            "small": b + np.array([0.15, 0.15, -0.15, -0.15]) * side}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True, help="KIND=PATH, as facemark eval takes it")
    ap.add_argument("--models", default="direct")
    ap.add_argument("--limit", type=int, default=0, help="only the first N test faces")
    a = ap.parse_args()
    samples = common_subset(load_all(a.data))
    samples = samples[:a.limit] if a.limit else samples
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"{len(samples)} test faces of {', '.join(a.data)}; {os.cpu_count()} cores ({cpu}); NME % (failures over 8 %)\n")
    print("| model | boxes | box alone | box + 2 passes | facemark | matched |")
    print("|---|---|--:|--:|--:|--:|")
    for name in a.models.split(","):
        fl = FaceLandmarker(model=name, threshold=0.3)
        size = fl.model.size
        err: dict[str, dict[str, list[float]]] = {}
        found: dict[str, list[bool]] = {}
        took: list[float] = []
        for s in samples:
            image = read_image(s.image)
            det = match(fl.detector.detect(image), s.landmarks)
            if det is None:
                continue

            def nme(pts: np.ndarray) -> float:
                return float(metrics.nme(labelmap.to68(pts, fl.map68)[None], s.landmarks[None])[0])

            err.setdefault("keypoints", {}).setdefault("facemark", []).append(nme(fl.landmarks_for([image], [[det]])[0][0].landmarks))
            for conv, box in conventions(det, s.landmarks).items():
                row = err.setdefault(conv, {})
                m = align.from_box(box, size)
                pts = fl.predict_crops([image], [m])[0]
                row.setdefault("box alone", []).append(nme(pts))
                first = m
                for _ in range(BOX_PASSES):
                    again = _realign(pts, m, size)
                    m = again if _near(again, first, size) else m
                    pts = fl.predict_crops([image], [m])[0]
                row.setdefault("box + 2 passes", []).append(nme(pts))
                t = time.perf_counter()
                got = fl._with_keypoints(image, Detection(box, 1.0))
                took.append(time.perf_counter() - t)
                found.setdefault(conv, []).append(got.kps is not None)
                row.setdefault("facemark", []).append(nme(fl.landmarks_for([image], [[Detection(box, 1.0)]])[0][0].landmarks))
        for conv, row in err.items():
            cells = []
            for col in ("box alone", "box + 2 passes", "facemark"):
                v = np.array(row[col]) if col in row else None
                cells.append("" if v is None else f"{100 * v.mean():.2f} ({100 * (v > 0.08).mean():.1f})")
            share = f"{100 * np.mean(found[conv]):.1f} %" if conv in found else ""
            print(f"| {name} | {conv} | {' | '.join(cells)} | {share} |")
        print(f"| {name} | (finding the keypoints of one box: median {1000 * np.median(took):.1f} ms) | | | | |")


if __name__ == "__main__":
    main()

"""What the window's second look (``facemark.landmarker.RELOOK_SEEN``) drops: faces the detector
saw at least 128 px big, scored under 0.999, whole in the image, that no turn of a window around
them shows again. Counts, with and without that rule, the labelled face found in each photo and
the other boxes (some are real faces nobody labelled: ``--show`` draws what was dropped, to look at).

    python scripts/relook_check.py --data 300w=../shared/data/300w                 # photos as they are
    python scripts/relook_check.py --data 300w=../shared/data/300w --upscale 2048 --min-face 40 --limit 600
    python scripts/relook_check.py --data csv68=../shared/data/youtube68/training_frames_keypoints.csv
    python scripts/relook_check.py --data 300w=../shared/data/300w --cover half   # real faces scored lower

``--upscale N`` scales each photo so its long side is N px (bilinear) before the search: the
searches for small faces on big photos where the detector saw smooth regions as faces.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from facemark import landmarker
from facemark.landmarker import FaceLandmarker
from facemark.layouts import five_points
from facemark.training import datasets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="KIND=PATH, as facemark eval takes it")
    ap.add_argument("--limit", type=int, default=0, help="this many photos, drawn at random (seed 0); 0: all")
    ap.add_argument("--upscale", type=int, default=0, help="scale each photo to this long side first")
    ap.add_argument("--min-face", type=float, default=None)
    ap.add_argument("--show", default=None, help="a PNG of the dropped boxes (each in a window twice its side)")
    ap.add_argument("--threshold", type=float, default=landmarker.RELOOK_THRESHOLD,
                    help="the score a face must have in its window to be seen there (the rule's RELOOK_THRESHOLD)")
    ap.add_argument("--cover", choices=("eyes", "half"), default=None,
                    help="paint over each labelled face first: a dark bar across the eyes, or its right half")
    a = ap.parse_args()
    samples = datasets.load(a.data)
    if a.limit:
        samples = [samples[i] for i in np.random.default_rng(0).permutation(len(samples))[: a.limit]]
    fl = FaceLandmarker(model="direct", threads=1, min_face=a.min_face)
    landmarker.RELOOK_THRESHOLD = a.threshold
    seen = landmarker.RELOOK_SEEN
    counts = {"without": [0, 0], "with": [0, 0]}
    dropped = []
    for s in samples:
        image = cv2.imread(str(s.image))
        points = s.landmarks
        if a.upscale:
            k = a.upscale / max(image.shape[:2])
            image = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
            points = points * k
        g5 = five_points(points)
        iod = float(np.linalg.norm(g5[0] - g5[1]))
        if a.cover:
            image = _covered(image, points, g5, iod, a.cover)
        found = {}
        for rule, value in (("without", float("inf")), ("with", seen)):
            landmarker.RELOOK_SEEN = value
            faces = fl.find_faces(image)
            labelled = [d.kps is not None and np.linalg.norm(d.kps - g5, axis=1).mean() < iod / 2 for d in faces]
            counts[rule][0] += any(labelled)
            counts[rule][1] += len(faces) - sum(labelled)
            found[rule] = faces
        landmarker.RELOOK_SEEN = seen
        kept = [d.box for d in found["with"]]
        dropped += [(image, d) for d in found["without"] if not any(np.allclose(d.box, b) for b in kept)]
    n = len(samples)
    print(f"{a.data}, {n} photos" + (f", upscaled to {a.upscale} px" if a.upscale else "")
          + (f", labelled faces covered ({a.cover})" if a.cover else "") + f", seen in the window at {a.threshold:g}"
          + (f", --min-face {a.min_face:g}" if a.min_face else "") + "; direct model's detector settings")
    print("| rule | labelled face found | other boxes |")
    print("|---|--:|--:|")
    for rule, (hit, other) in counts.items():
        print(f"| {rule} the second look | {hit} of {n} | {other} |")
    print(f"dropped: {len(dropped)} boxes, scores {', '.join(f'{d.score:.2f}' for _, d in dropped[:40])}"
          + (" ..." if len(dropped) > 40 else ""))
    if a.show and dropped:
        tiles = [_tile(im, d) for im, d in dropped[:64]]
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 8)
        cv2.imwrite(a.show, np.vstack([np.hstack(tiles[i:i + 8]) for i in range(0, len(tiles), 8)]))


def _covered(image: np.ndarray, points: np.ndarray, g5: np.ndarray, iod: float, how: str) -> np.ndarray:
    """The labelled face partly painted over: real faces the detector scores lower (a reviewer's edits)."""
    image = image.copy()
    (x1, y1), (x2, y2) = points.min(0), points.max(0)
    if how == "eyes":
        ey = (g5[0][1] + g5[1][1]) / 2
        image[max(0, int(ey - 0.3 * iod)):int(ey + 0.3 * iod), max(0, int(x1 - 0.1 * iod)):int(x2 + 0.1 * iod)] = 20
    else:
        cx = (x1 + x2) / 2
        image[max(0, int(y1 - iod)):int(y2 + 0.2 * iod), max(0, int(cx)):int(x2 + 0.2 * iod)] = (60, 90, 120)
    return image


def _tile(image: np.ndarray, d, size: int = 160) -> np.ndarray:
    x1, y1, x2, y2 = d.box
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    s = size / (2 * side)
    m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]])
    t = cv2.warpAffine(image, m, (size, size))
    q = size // 4
    cv2.rectangle(t, (q, q), (size - q, size - q), (0, 255, 0), 1)
    cv2.putText(t, f"{d.score:.2f}", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1)
    return t


if __name__ == "__main__":
    main()

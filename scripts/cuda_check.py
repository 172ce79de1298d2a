"""Do the CPU and ``--device cuda`` give the same points? Run on a machine with a GPU.

    python scripts/cuda_check.py [--device cuda:0]

For each shipped model, ``facemark detect examples/astronaut.jpg`` on the CPU and on the device
(the largest point difference in pixels), then ``facemark video`` with the hourglass on a
3-second synthetic clip (the photo moving across a grey 640x480 frame), both ways: the per-frame
largest difference, and each run's frames per second as the command reports it. Prints lines;
the clip and outputs go to a temporary folder, removed at the end.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def facemark(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facemark", *args], capture_output=True, text=True, cwd=ROOT)


def points(doc: dict) -> np.ndarray:
    return np.array([f["landmarks"] for f in doc["faces"]], float)


def make_clip(path: Path, frames: int = 90) -> None:
    face = cv2.resize(cv2.imread(str(ROOT / "examples" / "astronaut.jpg")), (300, 300))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for i in range(frames):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = 60 + int(2.5 * i), 80 + int(20 * np.sin(i / 8))
        frame[y:y + 300, x:x + 300] = face
        w.write(frame)
    w.release()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    dev = ap.parse_args().device
    for model in ("direct", "hourglass", "hybrid"):
        got = []
        for d in ("cpu", dev):
            r = facemark("detect", "examples/astronaut.jpg", "--model", model, "--device", d)
            if r.returncode:
                raise SystemExit(f"detect --model {model} --device {d} failed: {r.stderr.strip()}")
            got.append(points(json.loads(r.stdout)))
        same = got[0].shape == got[1].shape
        diff = f"{np.abs(got[0] - got[1]).max():.3f} px" if same and got[0].size else "faces differ"
        print(f"detect {model}: faces cpu {len(got[0])}, {dev} {len(got[1])}; largest difference {diff}")
    with tempfile.TemporaryDirectory(prefix="facemark-cuda-") as tmp:
        work = Path(tmp)
        make_clip(work / "clip.mp4")
        runs = []
        for k, d in enumerate(("cpu", dev)):
            r = facemark("video", str(work / "clip.mp4"), "--out", str(work / f"v{k}.mp4"), "--json",
                         str(work / f"v{k}.jsonl"), "--model", "hourglass", "--device", d)
            if r.returncode:
                raise SystemExit(f"video --device {d} failed: {r.stderr.strip()}")
            print(f"video --device {d}: {r.stderr.strip().splitlines()[-1]}")
            runs.append([json.loads(line) for line in open(work / f"v{k}.jsonl") if line.strip()])
    diffs = [np.abs(points(a) - points(b)).max() for a, b in zip(*runs) if len(a["faces"]) == len(b["faces"]) == 1]
    if not diffs:
        raise SystemExit("video: no frame with one face in both runs")
    print(f"video hourglass: {len(runs[0])} and {len(runs[1])} frames, one face in both on {len(diffs)}; largest "
          f"difference per frame: median {np.median(diffs):.3f} px, max {max(diffs):.3f} px")


if __name__ == "__main__":
    main()

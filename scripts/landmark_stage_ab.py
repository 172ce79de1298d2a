"""Time per face of the landmark stage, this checkout against another one, interleaved.

``scripts/latency_ab.py`` compares two graphs under this checkout's code; a user's time per face
is also the code around the graph (crop warp, session call, decode, map back). This runs
``FaceLandmarker(model=M).landmarks(photo, boxes=[detection])`` (one face, batch 1, the detector's
``Detection`` with its five points, as ``detect`` hands it on) in two processes, one importing each checkout with its own weights, and alternates
short bursts between them so the VM's drift hits both alike.

    git worktree add /tmp/facemark_old 0405583
    python scripts/landmark_stage_ab.py /tmp/facemark_old --model direct
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import sys, time
import cv2
from facemark import FaceLandmarker
fl = FaceLandmarker(model=sys.argv[1])
img = cv2.imread(sys.argv[2])
box = fl.detector.detect(img)[0]  # (a Detection with its 5 points: a bare box now costs a detector pass around it)
for _ in range(20):
    fl.landmarks(img, boxes=[box])  # warm-up
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    t = []
    for _ in range(n):
        s = time.perf_counter()
        fl.landmarks(img, boxes=[box])
        t.append(time.perf_counter() - s)
    print(" ".join(f"{x:.6f}" for x in t), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, help="the other checkout (a git worktree of an older commit)")
    ap.add_argument("--model", default="direct")
    ap.add_argument("--image", default=str(ROOT / "examples" / "astronaut.jpg"))
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--burst", type=int, default=20)
    a = ap.parse_args()
    trees = {"this checkout": ROOT, str(a.other): a.other.resolve()}
    procs = {}
    for name, tree in trees.items():
        env = {**os.environ, "PYTHONPATH": str(tree)}
        # Each checkout's own file, by path: older code finds shipped weights through
        # importlib.resources, which an editable install of one checkout maps to its own weights/.
        own = tree / "weights" / f"{a.model}.onnx"
        model = str(own) if own.is_file() else a.model
        procs[name] = subprocess.Popen([sys.executable, "-c", CHILD, model, a.image], cwd="/", env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if procs[name].stdout.readline().strip() != "ready":
            raise SystemExit(f"error: {name} did not start (see its message above)")
    times = {name: [] for name in procs}
    for r in range(a.rounds):
        order = list(procs) if r % 2 == 0 else list(procs)[::-1]
        for name in order:
            p = procs[name]
            p.stdin.write(f"{a.burst}\n")
            p.stdin.flush()
            times[name] += [float(x) for x in p.stdout.readline().split()]
    for p in procs.values():
        p.stdin.close()
        p.wait()
    med = {name: np.median(t) * 1000 for name, t in times.items()}
    for name, t in times.items():
        t = np.array(t) * 1000
        print(f"{name}: {med[name]:.3f} ms median per face (p10 {np.percentile(t, 10):.3f}, p90 {np.percentile(t, 90):.3f})")
    this, other = med["this checkout"], med[str(a.other)]
    print(f"this / other = {this / other:.3f}   ({a.rounds} rounds of {a.burst}, interleaved, model {a.model})")
    from facemark.evaluation.bench import machine_info

    print("machine:", ", ".join(f"{k} {v}" for k, v in machine_info("cpu").items()))


if __name__ == "__main__":
    main()

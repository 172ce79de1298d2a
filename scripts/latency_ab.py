"""Batch-1 latency of two landmark graphs, measured interleaved so the VM's drift hits both alike.

`facemark bench` times models one after another; on a shared VM whose speed moves 10-20 % within
minutes that cannot tell whether a retrained graph is slower. This alternates short bursts.

    git show 6bd2793:weights/direct.onnx > /tmp/direct_old.onnx
    python scripts/latency_ab.py /tmp/direct_old.onnx weights/direct.onnx
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from facemark.backends import OnnxModel
from facemark.evaluation.bench import machine_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="first .onnx landmark graph (or a shipped model name)")
    ap.add_argument("b", help="second one, same input size")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--burst", type=int, default=20, help="runs per model per round")
    args = ap.parse_args()
    try:
        models = [OnnxModel(args.a), OnnxModel(args.b)]
    except Exception as e:  # a missing or foreign file: one line
        raise SystemExit(f"error: {e}") from None
    if models[0].size != models[1].size:
        raise SystemExit(f"the graphs take different crop sizes ({models[0].size} vs {models[1].size})")
    crop = np.random.default_rng(0).integers(0, 255, (1, models[0].size, models[0].size, 3), dtype=np.uint8)
    for m in models:
        for _ in range(50):
            m(crop)
    times: list[list[float]] = [[], []]
    for r in range(args.rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)  # neither graph always runs second
        for m, t in ((models[i], times[i]) for i in order):
            start = time.perf_counter()
            for _ in range(args.burst):
                m(crop)
            t.append((time.perf_counter() - start) / args.burst * 1000)
    for name, t in zip((args.a, args.b), times):
        print(f"{name}: {np.median(t):.3f} ms median per crop (p10 {np.percentile(t, 10):.3f}, p90 {np.percentile(t, 90):.3f})")
    print(f"b / a = {np.median(times[1]) / np.median(times[0]):.3f}   ({args.rounds} rounds of {args.burst}, interleaved)")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine_info("cpu").items()))


if __name__ == "__main__":
    main()

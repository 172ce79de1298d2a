"""How PyTorch's CPU threads fare when other programs want the same cores, under each OpenMP wait
setting: why facemark sets ``GOMP_SPINCOUNT=1000`` (facemark/__init__.py) unless you chose one.

    python scripts/torch_contention.py [--seconds 5] [--repeat 2]

Each cell: a fresh process times the direct model's forward pass (batch 1, torch on the CPU, its
default threads) for ``--seconds`` while the load runs beside it: nothing; one busy loop per core;
or a second process training the same model (batch 32), with the same setting. Printed: passes
done, median and p90 ms. "torch's default" is libgomp's own spinning (what facemark had before).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SETTINGS = {"torch's default": {}, "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"}}

INFER = """
import statistics, sys, time
import numpy as np, torch
from facemark.backends import TorchModel
m = TorchModel("direct", device="cpu")
x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, m.size, m.size, 3), dtype=np.uint8))
for _ in range(10):
    m.run_tensor(x)
t, end = [], time.perf_counter() + float(sys.argv[1])
while time.perf_counter() < end:
    s = time.perf_counter(); m.run_tensor(x); t.append(time.perf_counter() - s)
t.sort()
print(len(t), statistics.median(t) * 1000, t[int(len(t) * 0.9)] * 1000)
"""

TRAIN = """
import sys, time, torch
from facemark.models.direct import DirectRegression
m = DirectRegression(); opt = torch.optim.SGD(m.parameters(), lr=1e-4); x = torch.randn(32, 3, 128, 128)
end = time.perf_counter() + float(sys.argv[1])
while time.perf_counter() < end:
    opt.zero_grad(); m(x).float().pow(2).mean().backward(); opt.step()
"""


def env_for(setting: dict) -> dict:
    """The setting alone (torch is imported before facemark in the children, so facemark's own
    default does not apply)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return env | setting


def cell(setting: dict, load: str, seconds: float) -> tuple[int, float, float]:
    env = env_for(setting)
    beside = []
    if load == "busy loops":
        beside = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    elif load == "a training process":
        beside = [subprocess.Popen([sys.executable, "-c", TRAIN, str(seconds + 30)], env=env)]
        time.sleep(3)  # (its model built, training)
    try:
        out = subprocess.run([sys.executable, "-c", INFER, str(seconds)], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
    finally:
        for p in beside:
            p.kill()
            p.wait()
    return int(out[0]), float(out[1]), float(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=2, help="rounds, settings interleaved (this VM drifts)")
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores; direct model, torch CPU, batch 1; {a.seconds:g} s a cell")
    print("| load | setting | round | passes | median ms | p90 ms |\n|---|---|--:|--:|--:|--:|")
    for load in ("nothing", "busy loops", "a training process"):
        for r in range(a.repeat):
            for name, setting in SETTINGS.items():
                n, med, p90 = cell(setting, load, a.seconds)
                print(f"| {load} | {name} | {r + 1} | {n} | {med:.1f} | {p90:.1f} |", flush=True)


if __name__ == "__main__":
    main()

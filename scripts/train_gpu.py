"""Distil the direct and hybrid students from the shipped hourglass on one CUDA GPU, in fixed time.

A lent GPU comes for minutes, so every run here gets the same time budget (``--time-budget``: the
learning-rate schedule ends when it is spent) and all of them share the GPU at once: these small
models cannot fill it one at a time. Each student is trained twice, fine-tuned from the shipped
weights and from scratch; the runs' held-out NME picks which one to ship. Build the pack (the
300-W + YouTube training faces; quality 75 keeps it small enough to carry) on a machine with the
data:

    facemark pack --data 300w=../shared/data/300w \\
        --data csv68=../shared/data/youtube68/training_frames_keypoints.csv \\
        --teacher ../shared/models/pfld_ghostone --quality 75 --out runs/pack192q75.npz

then, on the GPU machine, from the repository root:

    python scripts/train_gpu.py --pack runs/pack192q75.npz --minutes 5 --out /tmp/gpu --collect OUT

``--collect`` gathers each run's best checkpoint (NAME.pt), its log and a summary into one folder;
export the one to ship with ``facemark export NAME.pt --out weights --name direct``.
``--smoke`` runs the same plumbing on the CPU in about a minute (64 faces, tiny budget), to check
the script before spending GPU time.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# name -> training options of its own; every run also gets COMMON.
RUNS = {
    "direct_ft": ["--model", "direct", "--init", "direct", "--lr", "1e-3"],
    "direct_new": ["--model", "direct", "--arch", "pool=spatial", "--arch", "readout=8", "--lr", "3e-3"],
    "hybrid_ft": ["--model", "hybrid", "--init", "hybrid", "--lr", "1e-3"],
    "hybrid_new": ["--model", "hybrid", "--lr", "3e-3"],
}
COMMON = ["--teacher-model", "hourglass", "--teacher-views", "16", "--batch", "256", "--epochs", "100000",
          "--threads", "2"]


def small_pack(pack: Path, out: Path, n: int = 64) -> Path:
    """The first ``n`` faces of ``pack`` (a few held out), for --smoke."""
    from facemark.training.pack import Pack

    p = Pack.load(pack)
    keep = np.concatenate([np.flatnonzero(~p.val)[:n - 8], np.flatnonzero(p.val)[:8]])
    keep.sort()
    blobs = [p.jpeg[p.offsets[i]:p.offsets[i + 1]] for i in keep]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    Pack(np.concatenate(blobs), offsets, p.target98[keep], p.human68[keep], p.weight[keep], p.val[keep],
         p.source[keep], p.res, p.margin).save(out)
    return out


def collect(out: Path, dest: Path) -> None:
    """Best checkpoints as NAME.pt, every log line in logs.txt, each run's history in summary.json:
    few files, since a lent machine sends back only a handful."""
    dest.mkdir(parents=True, exist_ok=True)
    summary, lines = {}, []
    for name in RUNS:
        run = out / name
        if (run / "best.pt").is_file():
            shutil.copy(run / "best.pt", dest / f"{name}.pt")
        if (run / "log.json").is_file():
            summary[name] = json.loads((run / "log.json").read_text())
        if (out / f"{name}.log").is_file():
            lines.append(f"===== {name}\n" + (out / f"{name}.log").read_text())
    (dest / "summary.json").write_text(json.dumps(summary))
    (dest / "logs.txt").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", required=True, type=Path)
    ap.add_argument("--out", default=Path("runs/gpu"), type=Path)
    ap.add_argument("--minutes", type=float, default=5.0, help="training time of every run (they run at once)")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all)")
    ap.add_argument("--collect", type=Path, help="gather best checkpoints and logs here")
    ap.add_argument("--smoke", action="store_true", help="the plumbing on the CPU: 64 faces, about a minute and a half per run on 2 cores")
    a = ap.parse_args()
    only = {x for x in a.only.split(",") if x}
    a.out.mkdir(parents=True, exist_ok=True)
    pack, common = a.pack, list(COMMON)
    if a.smoke:
        pack = small_pack(a.pack, a.out / "smoke_pack.npz")
        common = [c if c != "16" else "2" for c in common]  # two teacher views
        device, minutes = "cpu", 0.05
    else:
        device, minutes = "cuda", a.minutes
    if only - set(RUNS):
        raise SystemExit(f"error: no run named {', '.join(sorted(only - set(RUNS)))}: use {', '.join(RUNS)}")
    procs, start, failed = {}, time.time(), []
    for name, extra in RUNS.items():
        if only and name not in only:
            continue
        cmd = [sys.executable, "-m", "facemark", "train", "--pack", str(pack), "--out", str(a.out / name),
               "--device", device, "--time-budget", str(minutes), *common, *extra]
        print("+", " ".join(cmd[2:]), flush=True)
        log = open(a.out / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    for name, (proc, log) in procs.items():
        rc = proc.wait()
        log.close()
        if rc:
            failed.append(name)
        hist = json.loads((a.out / name / "log.json").read_text()) if (a.out / name / "log.json").is_file() else []
        best = min((r["val_nme"] for r in hist if r["val_nme"] is not None), default=float("nan"))
        print(f"{name}: exit {rc}, {len(hist)} epochs, best held-out NME {best:.3f} %, "
              f"{hist[-1]['img_per_s'] if hist else 0:.0f} img/s at the end, {(time.time() - start) / 60:.1f} min",
              flush=True)
    if a.collect:
        collect(a.out, a.collect)
    if failed:  # (a lent machine's output is read later: say it in the exit status too)
        raise SystemExit(f"error: {', '.join(failed)} failed (see {a.out}/NAME.log)")


if __name__ == "__main__":
    main()

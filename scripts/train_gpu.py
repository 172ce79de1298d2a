"""Train all three model families on one CUDA GPU from a training pack, then export them.

Made for a lent H100 with a ten-minute budget: the whole pack lives on the GPU, augmentation
runs there, bf16 autocast and channels-last; the heatmap loss is compiled. Build the pack once
on a machine with the data (under 60 MB for the 300-W + YouTube training faces):

    facemark pack --data 300w=../shared/data/300w \\
        --data csv68=../shared/data/youtube68/training_frames_keypoints.csv \\
        --teacher ../shared/models/pfld_ghostone --res 192 --quality 85 --out pack.npz

then, on the GPU machine (weights land in OUT/weights; copy them into weights/):

    python scripts/train_gpu.py --pack pack.npz --out runs/gpu

``--smoke`` runs the same plumbing for one epoch with tiny models on the CPU (a check that the
script works before spending GPU time).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

# (family, epochs, batch, lr, extra args). Sized from H100 throughput measured with synthetic
# tensors (see issue 4): hourglass ~2,200 img/s at 128 px, the others 2-4x faster. An epoch
# draws ~3,100 of the pack's ~5,400 faces, so: hourglass 150 epochs ~ 3.6 min, hybrid ~ 1.5,
# direct ~ 1.3, plus start-up and the loss compile: under 10 minutes, not yet timed on a GPU.
PLAN = [
    ("hourglass", 150, 256, 3e-3, ["--arch", "width=128"]),
    ("hybrid", 150, 256, 3e-3, []),
    ("direct", 200, 256, 3e-3, []),
]
SMOKE = {"hourglass": ["--arch", "size=32", "--arch", "width=16", "--arch", "depth=2", "--no-fuse-loss"],
         "hybrid": ["--arch", "size=32", "--arch", "widths=[8,16,16]"],
         "direct": ["--arch", "size=32", "--arch", "width_mult=0.25"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", required=True, type=Path)
    ap.add_argument("--out", default=Path("runs/gpu"), type=Path)
    ap.add_argument("--only", default="", help="comma-separated families to train (default: all)")
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every epoch count")
    ap.add_argument("--smoke", action="store_true", help="one tiny epoch each on the CPU")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    only = {x for x in a.only.split(",") if x}
    timings = []
    for family, epochs, batch, lr, extra in PLAN:
        if only and family not in only:
            continue
        run_dir = a.out / family
        if a.smoke:
            cmd = ["--device", "cpu", "--epochs", "1", "--batch", "8", *SMOKE[family]]
        else:
            cmd = ["--device", "cuda", "--epochs", str(max(1, round(epochs * a.epochs_scale))), "--batch", str(batch),
                   "--lr", str(lr), *extra]
        cmd = [sys.executable, "-m", "facemark", "train", "--model", family, "--pack", str(a.pack), "--out", str(run_dir), *cmd]
        if a.resume:
            cmd.append("--resume")
        print("+", " ".join(cmd[2:]), flush=True)
        t = time.time()
        subprocess.run(cmd, check=True)
        timings.append((family, time.time() - t))
        subprocess.run([sys.executable, "-m", "facemark", "export", str(run_dir), "--out", str(a.out / "weights"),
                        "--name", family], check=True)
    for family, secs in timings:
        print(f"{family}: {secs / 60:.1f} min")


if __name__ == "__main__":
    main()

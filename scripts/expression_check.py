"""How much of a blink and of speech each ``facemark video --smooth`` setting keeps, and how much
jitter it leaves on a still face: the smoothing alone (``facemark.smooth.FaceSmoother``), run on
landmark sequences made from the mean face, so no model's error is mixed in.

    python scripts/expression_check.py                 # 30 fps, a 4-frame blink, speech at 2.5 Hz
    python scripts/expression_check.py --noise 0.5     # more jitter (% of the inter-ocular distance)

The face (inter-ocular distance 80 px) stays still. A blink closes both eyes over 4 frames (half,
shut, shut, half) every 25 frames; then the inner lips open and close at 2.5 Hz (talking). Each
frame's points get jitter as a model's do: the whole face shifted a little (``--noise-pose``) and
every point on its own (``--noise``). Printed per setting: the blink's depth as shown (% of the true
one, mean over blinks), how many frames the shown eye opening trails the true one (best match of
the two over the blinks), how many frames after a blink the shown eyes take to be back within a
tenth of its depth, the lip opening's swing as shown (% of the true one), and the still face's
frame-to-frame jitter (% of the inter-ocular distance).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facemark import align  # noqa: E402
from facemark.smooth import FaceSmoother  # noqa: E402

LIDS = [(61, 67), (62, 66), (63, 65), (69, 75), (70, 74), (71, 73)]  # (upper, lower) eyelid points, WFLW
LIPS = [(89, 95), (90, 94), (91, 93)]  # (upper, lower) inner lip points
BLINK = {0: 0.5, 1: 1.0, 2: 1.0, 3: 0.5}  # frames into a blink -> how shut


def face(iod: float = 80.0) -> np.ndarray:
    mean = align.TEMPLATES["mean98"].astype(np.float64)
    scale = iod / np.linalg.norm(mean[60] - mean[72])
    return (mean - mean.mean(0)) * scale + [320.0, 240.0]


def sequences(fps: float, noise: float, noise_pose: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(noisy points, true eye opening, true lip opening, iod) for 6 s of blinks, then 4 s of talking."""
    base = face()
    iod = float(np.linalg.norm(base[60] - base[72]))
    rng = np.random.default_rng(seed)
    n_blink, n_talk = int(6 * fps), int(4 * fps)
    frames, eyes, lips = [], [], []
    for i in range(n_blink + n_talk):
        p = base.copy()
        shut = BLINK.get((i - 20) % 25, 0.0) if 20 <= i < n_blink else 0.0
        for up, lo in LIDS:
            gap = p[lo, 1] - p[up, 1]
            p[up, 1] += shut * gap / 2
            p[lo, 1] -= shut * gap / 2
        open_ = 0.06 * iod * (1 + np.sin(2 * np.pi * 2.5 * (i - n_blink) / fps)) if i >= n_blink else 0.0
        for up, lo in LIPS:
            p[up, 1] -= open_ / 2
            p[lo, 1] += open_ / 2
        eyes.append(np.mean([p[lo, 1] - p[up, 1] for up, lo in LIDS]))
        lips.append(np.mean([p[lo, 1] - p[up, 1] for up, lo in LIPS]))
        shift = rng.normal(0, noise_pose / 100 * iod, 2)
        frames.append(p + shift + rng.normal(0, noise / 100 * iod, p.shape))
    return np.array(frames), np.array(eyes), np.array(lips), iod


def run(frames: np.ndarray, fps: float, iod: float, setting: str) -> np.ndarray:
    if setting == "none":
        return frames.copy()
    f = FaceSmoother(align.TEMPLATES["mean98"], smooth_shape=setting == "one-euro")
    return np.array([f(p, i / fps, iod) for i, p in enumerate(frames)])


def measure(out: np.ndarray, eyes: np.ndarray, lips: np.ndarray, iod: float, fps: float) -> dict:
    n_blink = int(6 * fps)
    shown_eyes = np.array([np.mean([p[lo, 1] - p[up, 1] for up, lo in LIDS]) for p in out])
    shown_lips = np.array([np.mean([p[lo, 1] - p[up, 1] for up, lo in LIPS]) for p in out])
    open_eye = float(np.median(eyes[:20]))
    depth = []
    for start in range(20, n_blink - 25, 25):
        depth.append((open_eye - shown_eyes[start:start + 20].min()) / (open_eye - eyes[start + 1]))
    blinks = slice(20, n_blink - 10)
    true, shown = eyes[blinks] - eyes[blinks].mean(), shown_eyes[blinks] - shown_eyes[blinks].mean()
    late = max(range(9), key=lambda k: float(np.dot(true[:len(true) - k], shown[k:])))
    reopen = []  # frames after a blink's end until the shown eyes are within a tenth of its depth
    for start in range(20, n_blink - 25, 25):
        k, shut = 0, eyes[start - 1] - eyes[start + 1]
        while start + 4 + k < start + 25 and abs(shown_eyes[start + 4 + k] - eyes[start + 4 + k]) > 0.1 * shut:
            k += 1
        reopen.append(k)
    talk = slice(n_blink + int(fps), None)  # (after a second of it: the filter has settled)
    swing = np.ptp(shown_lips[talk]) / np.ptp(lips[talk])
    still = out[2:20]  # (the first frames: the face still, nothing moving)
    jitter = np.linalg.norm(np.diff(still, axis=0), axis=2).mean() / iod
    return {"blink": 100 * float(np.mean(depth)), "late": late, "reopen": float(np.mean(reopen)), "speech": 100 * float(swing),
            "jitter": 100 * float(jitter)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--noise", type=float, default=0.2, help="jitter of each point, %% of the inter-ocular distance (std)")
    ap.add_argument("--noise-pose", type=float, default=0.2, help="jitter of the whole face's place, %% (std)")
    a = ap.parse_args()
    frames, eyes, lips, iod = sequences(a.fps, a.noise, a.noise_pose)
    print(f"{a.fps:g} fps, jitter {a.noise:g} % of the inter-ocular distance ({iod:.0f} px) per point and "
          f"{a.noise_pose:g} % of the face's place; a 4-frame blink every 25 frames, then speech at 2.5 Hz")
    print(f"{'--smooth':<12}{'blink shown %':>15}{'eyes late (frames)':>20}{'open again after (frames)':>27}"
          f"{'speech shown %':>16}{'still jitter %':>16}")
    for setting in ("one-euro", "pose", "none"):
        m = measure(run(frames, a.fps, iod, setting), eyes, lips, iod, a.fps)
        print(f"{setting:<12}{m['blink']:>15.0f}{m['late']:>20d}{m['reopen']:>27.1f}{m['speech']:>16.0f}{m['jitter']:>16.3f}")


if __name__ == "__main__":
    main()

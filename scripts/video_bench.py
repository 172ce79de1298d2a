"""Jitter, lag and throughput of ``facemark video`` on a synthetic clip with a known path.

The still photo (examples/astronaut.jpg) is moved along a smooth, known similarity path in a
640x480 frame: 2 s still, then rotation, scale and translation for the rest; every frame gets
sensor noise, and the clip is encoded as mp4 like a real recording. Each face point's "true"
path is the photo's points carried along that path, where the photo's points are the model's own
average belief (so model bias does not count as jitter).

* jitter: RMS of the residual from the true path after removing its slow part (a centred
  0.5 s moving average, which holds pose-dependent model bias and filter lag), in % of the
  inter-ocular distance (outer corners), on the still part and on the moving part;
* path RMS: the whole residual on the moving part (bias, lag and jitter together);
* lag: how many frames the output trails the path (least squares on the path's velocity);
* throughput: frames per second of the real ``facemark video IN --out OUT.mp4 --json OUT.jsonl``
  (decode, detect/track, landmarks, draw, encode), as the command reports it.

    python scripts/video_bench.py [--model hourglass] [--seconds 8] [--fps 30]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facemark import align
from facemark.landmarker import FaceLandmarker
from facemark.track import Tracker
from facemark.video import open_source

ROOT = Path(__file__).resolve().parents[1]


def path_at(t: float, still: float, shake: float = 0.0) -> np.ndarray:
    """Similarity (2x3) from photo to frame at time t: still, then a smooth head-like motion; with
    ``shake`` (px), a hand-held camera's shake on top (about 4 Hz, as the hand's tremor), still part too."""
    u = max(0.0, t - still)
    angle = 12.0 * np.sin(2 * np.pi * 0.35 * u)  # degrees
    scale = 0.62 * (1 + 0.12 * np.sin(2 * np.pi * 0.22 * u))
    tx = 320 + 70 * np.sin(2 * np.pi * 0.18 * u)
    ty = 240 + 25 * np.sin(2 * np.pi * 0.27 * u + 1.0)
    m = cv2.getRotationMatrix2D((256.0, 200.0), angle, scale)
    m[:, 2] += np.array([tx, ty]) - np.array([256.0, 200.0])
    m[:, 2] += shake * np.array([np.sin(2 * np.pi * 4.3 * t), 0.5 * np.sin(2 * np.pi * 3.1 * t + 0.7)])
    return m


def make_clip(path: Path, seconds: float, fps: float, still: float, noise: float, seed: int = 0,
              shake: float = 0.0) -> list[np.ndarray]:
    photo = cv2.imread(str(ROOT / "examples" / "astronaut.jpg"))
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    mats = []
    for i in range(int(seconds * fps)):
        m = path_at(i / fps, still, shake)
        frame = cv2.warpAffine(photo, m, (640, 480), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
        frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
        writer.write(frame)
        mats.append(m)
    writer.release()
    return mats


def track(clip: Path, model: str, smooth: bool, min_cutoff: float, beta: float, detect_every: int,
          shape: tuple[float, float] | None = None) -> np.ndarray:
    fl = FaceLandmarker(model=model)
    tr = Tracker(fl, detect_every=detect_every, smooth=smooth, min_cutoff=min_cutoff, beta=beta)
    if shape is not None:
        tr.shape_min_cutoff, tr.shape_beta = shape
    out = []
    for _, t, frame in open_source(str(clip)):
        tracks = tr.step(frame, t)
        out.append(tracks[0].smoothed.copy() if tracks else np.full((98, 2), np.nan))
    return np.stack(out)


def measure(pts: np.ndarray, mats: list[np.ndarray], fps: float, still: float) -> dict:
    inv = [align.invert(m) for m in mats]
    ok = ~np.isnan(pts[:, 0, 0])
    ref = np.mean([align.apply(inv[i], pts[i]) for i in np.flatnonzero(ok)], axis=0)  # belief on the photo
    true = np.stack([align.apply(m, ref) for m in mats])
    iod = np.linalg.norm(true[:, 60] - true[:, 72], axis=1)
    res = (pts - true) / iod[:, None, None] * 100
    win = max(3, int(round(fps / 2)) | 1)
    kernel = np.ones(win) / win
    slow = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, np.nan_to_num(res))
    fast = np.linalg.norm(res - slow, axis=2)
    half = win // 2
    n_still = int(still * fps)
    idx = np.arange(len(mats))
    still_sel = (idx >= half) & (idx < n_still - half) & ok
    move_sel = (idx >= n_still + half) & (idx < len(mats) - half) & ok
    vel = np.diff(true, axis=0, prepend=true[:1])
    lag = float(((true - pts)[move_sel] * vel[move_sel]).sum() / (vel[move_sel] ** 2).sum())
    rms = lambda e: float(np.sqrt(np.mean(e**2)))  # noqa: E731
    return {"still": rms(fast[still_sel]), "moving": rms(fast[move_sel]), "all": rms(fast[still_sel | move_sel]),
            "path": rms(np.linalg.norm(res[move_sel], axis=2)), "lag": lag, "found": int(ok.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="hourglass")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--still", type=float, default=2.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--noise", type=float, default=6.0, help="sensor noise, grey levels (std)")
    ap.add_argument("--detect-every", type=int, default=10)
    ap.add_argument("--min-cutoff", type=float, default=None)
    ap.add_argument("--beta", type=float, default=None)
    ap.add_argument("--shake", type=float, default=0.0, help="hand-held camera shake on top of the motion (px, about 4 Hz)")
    ap.add_argument("--sweep", action="store_true", help="also try a grid of One Euro settings")
    a = ap.parse_args()
    from facemark.track import Tracker as T

    mc = a.min_cutoff if a.min_cutoff is not None else T.min_cutoff
    be = a.beta if a.beta is not None else T.beta
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "clip.mp4"
        mats = make_clip(clip, a.seconds, a.fps, a.still, a.noise, shake=a.shake)
        print(f"clip: {len(mats)} frames 640x480 @ {a.fps:g} fps, {a.still:g} s still then moving; noise {a.noise:g}; "
              f"shake {a.shake:g} px; "
              f"model {a.model}; detect every {a.detect_every}")
        raw = measure(track(clip, a.model, False, mc, be, a.detect_every), mats, a.fps, a.still)
        settings = [(mc, be, None)]
        if a.sweep:
            settings += [(m, b, None) for m in (0.5, 1.0, 2.0, 4.0) for b in (3.0, 10.0, 30.0, 100.0, 300.0)]
            settings += [(m, b, (sm, sb)) for m, b in ((1.0, 10.0), (1.0, 30.0)) for sm, sb in ((0.2, 2.0), (0.3, 3.0), (0.5, 5.0))]
        head = f"{'filter':<40}{'jitter still %':>15}{'jitter moving %':>16}{'jitter all %':>13}{'path RMS %':>11}{'lag frames':>11}"
        print(head)
        print("one-euro settings: pose min_cutoff/beta, shape min_cutoff/beta (see facemark/smooth.py)")
        print(f"{'none (raw)':<40}{raw['still']:>15.3f}{raw['moving']:>16.3f}{raw['all']:>13.3f}{raw['path']:>11.3f}{raw['lag']:>11.2f}")
        for m, b, shape in settings:
            sm = measure(track(clip, a.model, True, m, b, a.detect_every, shape), mats, a.fps, a.still)
            tag = f"pose {m:g}/{b:g}" + (f" shape {shape[0]:g}/{shape[1]:g}" if shape else " shape default")
            tag += " (default)" if (m, b, shape) == (T.min_cutoff, T.beta, None) else ""
            print(f"{tag:<40}{sm['still']:>15.3f}{sm['moving']:>16.3f}{sm['all']:>13.3f}{sm['path']:>11.3f}{sm['lag']:>11.2f}")
        cmd = [sys.executable, "-m", "facemark", "video", str(clip), "--out", str(Path(d) / "out.mp4"),
               "--json", str(Path(d) / "out.jsonl"), "--model", a.model, "--detect-every", str(a.detect_every)]
        cmd += [x for opt, v in (("--min-cutoff", a.min_cutoff), ("--beta", a.beta)) if v is not None for x in (opt, f"{v:g}")]
        p = subprocess.run(cmd, capture_output=True, text=True)
        m = re.search(r"(\d+) frames in ([\d.]+) s \(([\d.]+) fps\)", p.stderr)
        print("end to end:", f"{m.group(3)} fps ({m.group(1)} frames in {m.group(2)} s)" if m else p.stderr.strip())
        print("command:", " ".join(["facemark"] + cmd[3:]))


if __name__ == "__main__":
    main()

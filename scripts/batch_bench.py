"""Images per second of ``facemark detect DIR --out OUT`` on a folder of 640x480 one-face photos,
start-up included (what a user waits for), for several ``--workers`` / ``--format`` settings,
with a check that every setting gives the same landmarks as the first.

    python scripts/batch_bench.py                       # 300 images, workers 1, 2 and auto, json
    python scripts/batch_bench.py --configs "1:json,auto:json,auto:jsonl,auto:parquet" --images 300
    python scripts/batch_bench.py --baseline-src /path/to/older/checkout   # the same run on older code
    python scripts/batch_bench.py --configs "1:json,1:json:cuda"             # a third field: --device
    python scripts/batch_bench.py --baseline-src OLD --startup 5            # start-up apart from the work

The photos are the example astronaut photo scaled to 220-440 px (its face 38-79 px wide as the
detector boxes it), placed at random on a textured 640x480 background: one face each,
deterministic (seeded). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_folder(folder: Path, n: int, seed: int = 0) -> None:
    face = cv2.imread(str(ROOT / "examples" / "astronaut.jpg"))
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(n):
        base = np.dstack([(xx * 0.2 + yy * 0.1 + i * 7) % 256, (xx * 0.05 + 60) % 256, (yy * 0.3) % 256]).astype(np.uint8)
        base = cv2.GaussianBlur(base, (0, 0), 3)
        side = int(rng.integers(220, 440))  # (the photo's side; its face is about a sixth of it)
        img = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        x, y = int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - min(side, 470)))
        h = min(side, 480 - y)
        base[y:y + h, x:x + side] = img[:h]
        cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), base, [cv2.IMWRITE_JPEG_QUALITY, 90])


def run(src: Path, out: Path, model: str, workers: str, fmt: str, pythonpath: str | None, device: str = "cpu") -> float:
    env = dict(os.environ)
    # Run from the images' folder, never from a checkout: ``python -m`` puts the working folder
    # first on sys.path, so from the repo root an "older checkout" would silently run this code.
    env["PYTHONPATH"] = pythonpath or str(ROOT)
    check = subprocess.run([sys.executable, "-c", "import facemark; print(facemark.__file__)"], capture_output=True,
                           text=True, env=env, cwd=src.parent).stdout.strip()
    want = Path(pythonpath or ROOT).resolve()
    if want not in Path(check).resolve().parents:
        raise SystemExit(f"would run facemark from {check}, not from {want}")
    cmd = [sys.executable, "-m", "facemark", "detect", str(src), "--out", str(out), "--model", own_weights(model, pythonpath)]
    if not pythonpath:  # older code knows none of these options
        cmd += ["--workers", str(workers), "--format", fmt] + (["--device", device] if device != "cpu" else [])
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=src.parent)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return wall


def auto_count(images: int, device: str) -> int:
    """How many workers ``--workers auto`` takes for this run (the rule in facemark.workers, asked in a
    process of its own with this machine's cores, memory and onnxruntime), for the table's label."""
    code = f"from facemark.workers import auto_workers; print(auto_workers({images}, {device!r}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip().isdigit() else -1


def own_weights(model: str, checkout: str | None) -> str:
    """A shipped model name run from another checkout, as a path to that checkout's own file:
    older code finds its weights through ``importlib.resources``, which an editable install of
    this checkout maps to this checkout's ``weights/`` (the older code then ran today's weights)."""
    own = Path(checkout) / "weights" / f"{model}.onnx" if checkout else None
    return str(own) if own is not None and own.is_file() else model


def landmarks(out: Path) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(ROOT))
    from facemark.results import read

    return {Path(r["path"]).name: np.array([f["landmarks"] for f in r["faces"]], np.float64).reshape(-1, 98, 2)
            for r in read(out)}


def floor(src: Path, model: str, n: int, total: int) -> None:
    """The least time the models alone can take per image on this machine: single-threaded
    detector and landmark model time per image (one thread per core is the most efficient use of
    the cores), divided by the cores; no setting of the pipeline can beat it without less model work."""
    sys.path.insert(0, str(ROOT))
    from facemark.landmarker import FaceLandmarker

    fl = FaceLandmarker(model=model, threads=1)
    images = [cv2.imread(str(p)) for p in sorted(src.glob("*.jpg"))[:n]]
    dets = [fl.detector.detect(im) for im in images]  # (once untimed: onnxruntime sizes its buffers on a
    fl.landmarks_for(images, dets)  # batch size's first run, which read the landmark model's time high)
    t = time.perf_counter()
    dets = [fl.detector.detect(im) for im in images]
    t1 = time.perf_counter()
    fl.landmarks_for(images, dets)
    t2 = time.perf_counter()
    det, lm = (t1 - t) / n * 1000, (t2 - t1) / n * 1000
    from facemark.workers import cpu_cores

    cores = cpu_cores()
    print(f"compute floor ({n} images, one thread): detector {det:.1f} ms + {model} {lm:.1f} ms per image = "
          f"{det + lm:.1f} ms; over {cores} cores at least {(det + lm) / cores:.1f} ms per image, "
          f"{(det + lm) / cores * total / 1000:.1f} s for {total} images plus start-up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--model", default="hourglass")
    ap.add_argument("--configs", default="1:json,2:json,auto:json", help="WORKERS:FORMAT[:DEVICE] (WORKERS a number or auto; DEVICE cpu by default), comma-separated")
    ap.add_argument("--baseline-src", help="also time an older checkout (its facemark package dir's parent)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting; the best and the median are reported")
    ap.add_argument("--work", type=Path, default=None, help="folder for the images and outputs (default: temp)")
    ap.add_argument("--floor", action="store_true", help="also print the models' single-threaded time per image (the compute floor)")
    ap.add_argument("--detector-batches", default="", help="also time the RetinaFace graph alone at these batch sizes, e.g. 1,4,8")
    ap.add_argument("--startup", type=int, default=0, help="also time each setting on one image this many times: "
                    "its start-up, and the per-image time of the folder's run beyond it")
    a = ap.parse_args()
    if a.detector_batches:
        sys.path.insert(0, str(ROOT))
        from facemark.detector import RetinaFace

        sess = RetinaFace().session
        for n in (int(b) for b in a.detector_batches.split(",")):
            x = np.random.default_rng(0).random((n, 3, 480, 640), dtype=np.float32)
            sess.run(None, {"input": x})
            t = time.perf_counter()
            for _ in range(5):
                sess.run(None, {"input": x})
            print(f"detector graph, batch {n}: {(time.perf_counter() - t) / 5 / n * 1000:.1f} ms per 640x480 image")
    work = a.work or Path(tempfile.mkdtemp(prefix="facemark-batch-"))
    src = work / "images"
    if not src.is_dir() or len(list(src.glob("*.jpg"))) != a.images:
        shutil.rmtree(src, ignore_errors=True)
        make_folder(src, a.images)
    if a.floor:
        floor(src, a.model, min(a.images, 64), a.images)
    settings = []
    for c in (c.strip() for c in a.configs.split(",") if c.strip()):
        workers, fmt, device = (c.split(":", 2) + [""])[:3]
        settings.append((None, workers, fmt, device or "cpu"))
    if a.baseline_src:  # (absolute: each run starts in the images' folder)
        settings.insert(0, (str(Path(a.baseline_src).resolve()), "1", "json", "cpu"))
    import compileall  # each checkout compiled first, as pip compiles an installed package: with
    # PYTHONDONTWRITEBYTECODE set (as on our VMs) every run compiled its sources again, which
    # costs a bigger checkout more start-up than a user with an installed package pays
    for tree in {ROOT, *(Path(p) for p, *_ in settings if p)}:
        compileall.compile_dir(str(tree / "facemark"), quiet=1)
    walls: list[list[float]] = [[] for _ in settings]
    starts: list[list[float]] = [[] for _ in settings]
    one = work / "one"
    if a.startup:
        shutil.rmtree(one, ignore_errors=True)
        one.mkdir()
        shutil.copy(sorted(src.glob("*.jpg"))[0], one)
    for _ in range(a.startup):
        for i, (pythonpath, workers, fmt, device) in enumerate(settings):
            out = work / "out-one"
            shutil.rmtree(out, ignore_errors=True)
            starts[i].append(run(one, out, a.model, workers, fmt, pythonpath, device))
    for _ in range(a.repeat):  # settings interleaved, so a drift of the machine hits all of them alike
        for i, (pythonpath, workers, fmt, device) in enumerate(settings):
            out = work / f"out-{workers}-{fmt}-{device.replace(':', '')}-{'base' if pythonpath else 'new'}"
            shutil.rmtree(out, ignore_errors=True)
            walls[i].append(run(src, out, a.model, workers, fmt, pythonpath, device))
    if not settings:
        return
    rows, ref = [], None
    for (pythonpath, workers, fmt, device), times in zip(settings, walls):
        got = landmarks(work / f"out-{workers}-{fmt}-{device.replace(':', '')}-{'base' if pythonpath else 'new'}")
        if ref is None:
            ref, diff = got, 0.0
        else:
            assert set(got) == set(ref), "different images done"
            diff = max((float(np.abs(got[k] - ref[k]).max()) if got[k].shape == ref[k].shape and got[k].size else
                        (0.0 if got[k].shape == ref[k].shape else float("inf"))) for k in ref)
        label = ("older checkout" if pythonpath else
                 f"--workers {workers}" + (f" ({auto_count(a.images, device)})" if workers == "auto" else "")
                 + f" --format {fmt}" + (f" --device {device}" if device != "cpu" else ""))
        paired = float(np.median([b / t for b, t in zip(walls[0], times)]))  # (round by round: the same drift)
        rows.append((label, min(times), float(np.median(times)), diff, sum(len(v) for v in got.values()), paired))
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"{a.images} images 640x480, one face each, model {a.model}; {os.cpu_count()} cores ({cpu}); "
          f"wall time of the whole command, start-up included, best and median of {a.repeat} (settings interleaved: "
          f"the machine's drift hits all alike)")
    print("| setting | best s | images/s | speed-up | median s | speed-up | speed-up, median of rounds | faces | "
          "max landmark diff vs first row (px) |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for label, best, median, diff, faces, paired in rows:
        print(f"| {label} | {best:.2f} | {a.images / best:.1f} | {rows[0][1] / best:.2f}x | {median:.2f} | "
              f"{rows[0][2] / median:.2f}x | {paired:.2f}x | {faces} | {diff:.4f} |")
    if a.startup:
        print(f"\nstart-up: each setting on one of these images, best of {a.startup}; beyond it, the best run's time "
              f"less that, per image")
        print("| setting | one image s | beyond start-up, ms per image |")
        print("|---|--:|--:|")
        for (label, best, *_), st in zip(rows, starts):
            print(f"| {label} | {min(st):.2f} | {(best - min(st)) / max(1, a.images - 1) * 1000:.1f} |")


if __name__ == "__main__":
    main()

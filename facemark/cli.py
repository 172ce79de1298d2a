"""The ``facemark`` command line (Typer + Rich). Bad input: one line on stderr, non-zero exit."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from . import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Faces and their 98 landmarks (WFLW layout) in images and video.")
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one message, one line (logs, grep)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)  # tables stay readable in files

DEFAULT_CACHE = Path(os.environ.get("FACEMARK_CACHE", Path.home() / ".cache" / "facemark"))


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and the exit code: never a traceback for bad input."""
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        out.print(f"facemark {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version.")):
    pass


# --- inference side -----------------------------------------------------------------------------
def _landmarker(model: str, device: str, detector: str, boxes: Optional[Path], threshold: float,
                min_face: Optional[float], threads: Optional[int] = None):
    from .backends import ModelError
    from .detector import GivenBoxes
    from .landmarker import FaceLandmarker

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        fail(f"--device must be cpu or cuda, not {device!r}")
    if not 0.0 < threshold < 1.0:
        fail("--threshold must be between 0 and 1")
    if min_face is not None and min_face <= 0:
        fail("--min-face must be positive")
    try:
        det = GivenBoxes.from_file(boxes) if boxes else detector
    except FileNotFoundError:
        fail(f"boxes file not found: {boxes}")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        fail(f"bad boxes file {boxes}: {e}")
    try:
        return FaceLandmarker(model=model, device=device, detector=det, threshold=threshold, min_face=min_face, threads=threads)
    except (ModelError, FileNotFoundError, ValueError) as e:
        fail(str(e))


@app.command()
def detect(
    inputs: List[str] = typer.Argument(..., help="Image files, directories (recursive) or globs."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write DIR/<relative path>/<stem>.json per image."),
    annotate: bool = typer.Option(False, "--annotate", help="Also write an annotated image beside each JSON."),
    model: str = typer.Option("hourglass", "--model", help="hourglass | direct | hybrid | PATH.onnx/.pt"),
    device: str = typer.Option("cpu", "--device", help="cpu (onnxruntime) | cuda (torch)"),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface | yunet:PATH.onnx"),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="JSON of boxes per image: skip detection."),
    min_face: Optional[float] = typer.Option(None, "--min-face", help="Smallest face to find, in pixels."),
    threshold: float = typer.Option(0.6, "--threshold", help="Detector score threshold."),
    batch_images: int = typer.Option(16, "--batch", help="Images whose faces share one model batch."),
    flip: bool = typer.Option(False, "--flip", help="Also run mirrored crops and average (slower, steadier)."),
):
    """Find faces and their 98 landmarks; JSON (schema facemark/v1) to stdout or --out DIR.

    Exit codes: 0 all good, 1 some inputs failed (each named on stderr), 2 usage error.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .draw import draw
    from .imageio import ImageError, atomic_write_bytes, read_image, write_image
    from .inputs import expand, output_stems
    from .results import document

    images, missing = expand(inputs)
    for m in missing:
        err.print(f"[red]error:[/] {m}: no such file, directory or matching image", soft_wrap=True)
    if not images:
        fail("no images to process", 2)
    if annotate and out_dir is None:
        fail("--annotate writes images: give --out DIR")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} exists and is not a directory")
    if batch_images < 1:
        fail("--batch must be at least 1")
    fl = _landmarker(model, device, detector, boxes, threshold, min_face)
    fl.flip = flip
    stems = output_stems(images)
    input_paths = {im.path.resolve() for im in images}
    failures = len(missing)

    def process(chunk):
        """Read + detect each image; one model batch for all their faces; write results."""
        nonlocal failures
        loaded, dets = [], []
        for k, im in chunk:
            try:
                image = read_image(im.path)
                if boxes:
                    d = fl.detector.lookup(str(im.path))
                    if not d and not (fl.detector.lookup(im.rel.as_posix())):
                        raise ImageError(f"{im.path}: no entry in {boxes}")
                    d = d or fl.detector.lookup(im.rel.as_posix())
                else:
                    d = fl.detector.detect(image)
            except ImageError as e:
                err.print(f"[red]failed:[/] {e}", soft_wrap=True)
                failures += 1
                continue
            loaded.append((k, im, image))
            dets.append(d)
        faces = fl.landmarks_for([x[2] for x in loaded], dets)
        for (k, im, image), fs in zip(loaded, faces):
            doc = document(str(im.path), image.shape[1], image.shape[0], fl.model_name, fs)
            text = json.dumps(doc)
            if out_dir is None:
                sys.stdout.write(text + "\n")
                continue
            base = out_dir / stems[k]
            try:
                atomic_write_bytes(base.with_name(base.name + ".json"), (text + "\n").encode())
                if annotate:
                    ext = im.path.suffix.lower() if im.path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp") else ".png"
                    target = base.with_name(base.name + ".annotated" + ext)
                    if target.resolve() in input_paths:
                        raise OSError(f"refusing to overwrite input {target}")
                    write_image(target, draw(image, fs))
            except (OSError, ImageError) as e:
                err.print(f"[red]failed:[/] {im.path}: cannot write output: {e}", soft_wrap=True)
                failures += 1

    indexed = list(enumerate(images))
    chunks = [indexed[i:i + batch_images] for i in range(0, len(indexed), batch_images)]
    try:
        if len(images) > 1:
            cols = [TextColumn("detect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            with Progress(*cols, console=err, transient=True) as bar:
                task = bar.add_task("detect", total=len(images))
                for chunk in chunks:
                    process(chunk)
                    bar.advance(task, len(chunk))
        else:
            for chunk in chunks:
                process(chunk)
    except KeyboardInterrupt:
        err.print("interrupted: outputs written so far are complete")
        raise typer.Exit(130) from None
    if failures:
        err.print(f"{failures} of {len(images) + len(missing)} inputs failed")
        raise typer.Exit(1)


@app.command()
def video(
    source: str = typer.Argument(..., help="Video file, folder or glob of frames, or a camera index."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Annotated video (.mp4 .avi .mov .mkv .webm)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="One JSON line per frame (.jsonl)."),
    model: str = typer.Option("hourglass", "--model", help="hourglass | direct | hybrid | PATH"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
    detect_every: int = typer.Option(10, "--detect-every", help="Run the detector every N frames (and when a face is lost)."),
    smooth: str = typer.Option("one-euro", "--smooth", help="one-euro | none"),
    max_faces: int = typer.Option(0, "--max-faces", help="Track at most K faces (largest first); 0: all."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate for frame folders (default 30) or to override."),
    threshold: float = typer.Option(0.6, "--threshold", help="Detector score threshold."),
    min_cutoff: Optional[float] = typer.Option(None, "--min-cutoff", help="One Euro (head pose): cutoff in Hz when still (default 1)."),
    beta: Optional[float] = typer.Option(None, "--beta", help="One Euro (head pose): how fast the cutoff opens with speed (default 30)."),
):
    """Tracked, smoothed landmarks on video: an annotated video and/or per-frame JSON lines.

    Exit codes: 0 done, 1 some frames did not decode (the rest is written), 2 usage or unreadable
    input (nothing written), 130 interrupted (what was done is written and playable).
    """
    import signal

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .draw import draw
    from .results import Face
    from .track import Tracker
    from .video import AtomicTextWriter, AtomicVideoWriter, VideoError, frame_record, mux_audio, open_source

    if out_path is None and json_path is None:
        fail("give --out VIDEO and/or --json FILE.jsonl")
    if smooth not in ("one-euro", "none"):
        fail("--smooth must be one-euro or none")
    if detect_every < 1:
        fail("--detect-every must be at least 1")
    if max_faces < 0:
        fail("--max-faces must be 0 (all) or more")
    if fps is not None and fps <= 0:
        fail("--fps must be positive")
    for p in (out_path, json_path):
        if p is not None and Path(source).exists() and p.resolve() == Path(source).resolve():
            fail(f"refusing to overwrite the input {source}")
    fl = _landmarker(model, device, "retinaface", None, threshold, None)
    try:
        src = open_source(source, fps)
    except VideoError as e:
        fail(str(e))
    writer = text = None
    try:
        if out_path is not None:
            writer = AtomicVideoWriter(out_path, src.fps, (src.width, src.height))
        if json_path is not None:
            text = AtomicTextWriter(json_path)
    except (VideoError, OSError) as e:
        if writer:
            writer.abort()
        src.close()
        fail(str(e))
    tuned = {k: v for k, v in (("min_cutoff", min_cutoff), ("beta", beta)) if v is not None}  # else smooth.py's
    tracker = Tracker(fl, detect_every=detect_every, max_faces=max_faces, smooth=smooth == "one-euro", **tuned)
    stop = {"asked": False}

    def on_sigint(signum, frame):  # finish the current frame, then stop
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    done = 0
    cols = [TextColumn("video"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]:.1f} fps"), TimeRemainingColumn()]
    import time

    start = time.perf_counter()
    try:
        with Progress(*cols, console=err, transient=True) as bar:
            task = bar.add_task("video", total=src.frames, rate=0.0)
            for i, t, frame in src:
                tracks = tracker.step(frame, t)
                if writer is not None:
                    faces = [Face(tr.box, tr.score, tr.smoothed, tracker.landmarks68(tr)) for tr in tracks]
                    writer.write(draw(frame, faces, ids=[tr.id for tr in tracks]))
                if text is not None:
                    text.write_line(frame_record(i, t, tracks, tracker))
                done += 1
                bar.update(task, advance=1, rate=done / max(1e-9, time.perf_counter() - start))
                if stop["asked"]:
                    break
    except Exception:
        for w in (writer, text):
            if w is not None:
                w.abort()
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        src.close()
    elapsed = time.perf_counter() - start
    if done == 0:
        for w in (writer, text):
            if w is not None:
                w.abort()
        fail(f"{source}: no frame could be decoded", 2)
    for w in (writer, text):
        if w is not None:
            w.commit()
    if out_path is not None and Path(source).is_file():
        if not mux_audio(out_path, source):
            err.print("note: audio, if any, was not kept (OpenCV writes video only; with ffmpeg on PATH it is copied)")
    err.print(f"{done} frames in {elapsed:.1f} s ({done / elapsed:.1f} fps), {tracker.next_id} face track(s)")
    if stop["asked"]:
        err.print("interrupted: the output holds the frames processed so far")
        raise typer.Exit(130)
    missing = (src.frames - done) if src.frames else 0
    if src.decode_errors or missing > 0:
        err.print(f"[red]warning:[/] {src.decode_errors + max(0, missing)} frame(s) of {source} did not decode; "
                  f"wrote the {done} that did")
        raise typer.Exit(1)


@app.command()
def bench(
    device: str = typer.Option("cpu", "--device", help="cpu (onnxruntime, torch) | cuda (torch fp32/bf16, graphs)"),
    models_arg: str = typer.Option("hourglass,direct,hybrid", "--models", help="Comma-separated model names or paths."),
    batch: str = typer.Option("", "--batch", help="Batch sizes, e.g. 1,32,256 (default 1,32 on CPU; 1,32,256 on CUDA)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for onnxruntime and torch."),
    data: Optional[str] = typer.Option(None, "--data", help="KIND=PATH: also measure NME on its test split."),
    image: Optional[Path] = typer.Option(None, "--image", help="Photo fitted into the 640x480 timing frame (with a face: also times the whole pipeline)."),
    yunet: Optional[Path] = typer.Option(None, "--yunet", help="Also time YuNet from this ONNX file."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full numbers here."),
    limit: Optional[int] = typer.Option(None, "--limit", help="With --data: only the first N faces."),
):
    """Speed (and with --data, accuracy) of the detector and every model/backend, as a table."""
    import numpy as np
    from rich.table import Table

    from . import bench as B
    from .detector import RetinaFace, YuNet
    from .imageio import ImageError, atomic_write_bytes, read_image

    if device not in ("cpu", "cuda"):
        fail("--device must be cpu or cuda")
    try:
        batches = sorted({int(b) for b in batch.split(",") if b.strip()}) or ([1, 32] if device == "cpu" else [1, 32, 256])
    except ValueError:
        fail(f"--batch wants comma-separated integers, got {batch!r}")
    if 1 not in batches or min(batches) < 1:
        fail("--batch must include 1 (latency) and only positive sizes")
    names = [m.strip() for m in models_arg.split(",") if m.strip()]
    if threads:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
    plans, skipped = B.backends_for(device)
    if not plans:
        fail(skipped[0])
    if image is not None:
        try:
            frame = B.fit_frame(read_image(image))
        except ImageError as e:
            fail(str(e))
    else:
        yy, xx = np.mgrid[0:480, 0:640]
        frame = np.dstack([(xx * 0.3 + yy * 0.2) % 256, (xx * 0.1) % 256, (yy * 0.4) % 256]).astype(np.uint8)
    rows = [B.bench_detector(frame, RetinaFace(), "retinaface")]
    if yunet is not None:
        if not yunet.is_file():
            fail(f"YuNet model not found: {yunet}")
        rows.append(B.bench_detector(frame, YuNet(str(yunet)), "yunet"))
    with err.status("timing landmark models..."):
        lm_rows, more_skipped = B.run_landmarks(names, device, batches, threads, log=lambda *_: None)
    rows += lm_rows
    skipped += more_skipped
    if device == "cpu" and image is not None:
        with err.status("timing the whole pipeline..."):
            for name in names:
                try:
                    rows.append(B.bench_pipeline(frame, name, threads))
                except ValueError as e:
                    skipped.append(f"pipeline {name}: {e}")
    if data:
        from .evaluate import evaluate
        from .landmarker import FaceLandmarker
        from .metrics import summary

        samples = [s for s in _load_samples([data]) if s.split == "test"][: limit or None]
        if not samples:
            fail(f"no test faces in {data}")
        for name in names:
            try:
                fl = FaceLandmarker(model=name, threshold=0.3)
            except ValueError as e:  # ModelError is a ValueError
                skipped.append(f"{name}: {e}")
                continue
            with err.status(f"NME of {name} on {len(samples)} faces..."):
                nme = summary(evaluate(fl, samples).errors)["nme"]
            for r in rows:
                if r.stage == "landmarks" and r.model == fl.model_name:
                    r.nme = nme
    info = B.machine_info(device)
    table = Table(title=f"facemark bench on {info.get('gpu', info['cpu'])} ({info['cores']} cores)")
    cols = ["stage", "model", "backend", "prec", "b1 median ms", "b1 p90 ms"] + [f"faces/s b{b}" for b in batches if b > 1]
    cols += ["params", "GFLOPs", "mem MB"] + (["NME %"] if data else [])
    for c in cols:
        table.add_column(c, justify="left" if c in ("stage", "model", "backend", "prec") else "right")
    for r in rows:
        f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
        cells = [r.stage, r.model, r.backend, r.precision, f(r.latency_ms, ".2f"), f(r.p90_ms, ".2f")]
        cells += [f(r.throughput.get(b), ",.0f") for b in batches if b > 1]
        cells += [f(r.params / 1e6 if r.params else None, ".2f") + ("M" if r.params else ""),
                  f(r.flops / 1e9 if r.flops else None, ".3f"), f(r.memory_mb, ".0f")]
        if data:
            cells.append(f(r.nme, ".2f"))
        table.add_row(*cells)
    out.print(table)
    if rows and rows[0].note:
        out.print(f"detector timed on a {rows[0].note}; landmark rows time the model alone (batch of crops); "
                  f"pipeline rows time detect + crop + landmarks + mapping back per frame.")
    for s in skipped:
        err.print(f"[yellow]skipped:[/] {s}", soft_wrap=True)
    if json_path:
        atomic_write_bytes(json_path, (json.dumps(B.as_json(rows, skipped, info), indent=1) + "\n").encode())


@app.command("eval")
def eval_cmd(
    data: List[str] = typer.Option(..., "--data", help="KIND=PATH (300w, wflw); its test split is used."),
    model: List[str] = typer.Option(["hourglass"], "--model", help="Model name or path; repeat to compare."),
    boxes: str = typer.Option("detector", "--boxes", help="detector (full pipeline) | gt (landmark model alone)"),
    device: str = typer.Option("cpu", "--device"),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface | yunet:PATH.onnx"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write all numbers here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the CED curves into this PNG."),
    split: str = typer.Option("test", "--split", help="test | train | all"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N faces (quick checks)."),
    flip: bool = typer.Option(False, "--flip", help="Flip test-time augmentation."),
):
    """NME, failure rate and AUC (at 8 % and 10 %) per subset, with detector misses."""
    from rich.progress import Progress
    from rich.table import Table

    from .evaluate import evaluate, plot_ced

    if boxes not in ("detector", "gt"):
        fail("--boxes must be detector or gt")
    samples = [s for s in _load_samples(data) if split == "all" or s.split == split]
    if limit:
        samples = samples[:limit]
    if not samples:
        fail(f"no {split} faces in --data")
    results = []
    for name in model:
        fl = _landmarker(name, device, detector, None, 0.3, None)
        fl.flip = flip
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"eval {name}", total=len(samples))
            results.append(evaluate(fl, samples, boxes, lambda i, n: bar.update(task, completed=i)))
    report = {}
    for r in results:
        rows = r.table()
        key = r.model if r.model not in report else f"{r.model}#{len(report) + 1}"
        report[key] = {"mode": r.mode, "subsets": rows}
        table = Table(title=f"{r.model}: {'full pipeline' if r.mode == 'detector' else 'ground-truth alignment'}")
        for col in ("subset", "faces", "missed", "NME %", "FR@8 %", "FR@10 %", "AUC@8", "AUC@10"):
            table.add_column(col, justify="right" if col != "subset" else "left")
        for sub, v in rows.items():
            table.add_row(sub, str(v["faces"]), str(v["missed"]), f"{v['nme']:.3f}", f"{v['fr8']:.2f}", f"{v['fr10']:.2f}",
                          f"{v['auc8']:.4f}", f"{v['auc10']:.4f}")
        out.print(table)
    out.print("NME: inter-ocular (outer eye corners), over faces found; FR/AUC count detector misses as failures.")
    if any(d.split("=", 1)[0].lower() in ("300w", "pts") for d in data):
        out.print("300-W here: helen + lfpw test sets = the 554-face common subset. facemark's models were trained on "
                  "the 2,012 faces available here (the standard 300-W training set has 3,148).")
    if json_path:
        from .imageio import atomic_write_bytes

        atomic_write_bytes(json_path, (json.dumps(report, indent=1) + "\n").encode())
    if plot:
        plot_ced(results, str(plot))


@app.command()
def models():
    """List the shipped models: size, speed and accuracy (from weights/eval.json, bench.json)."""
    from rich.table import Table

    from .backends import SHIPPED, ModelError, OnnxModel, weights_dir

    def read(name: str) -> dict:
        p = weights_dir() / name
        return json.loads(p.read_text()) if p.is_file() else {}

    evals, bench_rows = read("eval.json"), read("bench.json").get("rows", [])
    table = Table(title="facemark models (weights/)")
    for col in ("name", "family", "input", "params", "GFLOPs", "ONNX MB", "NME % (300-W common)", "CPU ms/face"):
        table.add_column(col, justify="left" if col in ("name", "family") else "right")
    for name in SHIPPED:
        try:
            m = OnnxModel(name)
        except ModelError as e:
            table.add_row(name, "missing", "", "", "", "", "", str(e))
            continue
        nme = evals.get(m.name, {}).get("subsets", {}).get("all", {}).get("nme")
        cpu = next((r["latency_ms"] for r in bench_rows if r["model"] == m.name and r["backend"] == "onnxruntime-cpu"), None)
        table.add_row(name, m.family, f"{m.size}px", f"{m.meta.get('params', 0) / 1e6:.2f}M", f"{m.meta.get('flops', 0) / 1e9:.2f}",
                      f"{m.path.stat().st_size / 1e6:.1f}", "-" if nme is None else f"{nme:.2f}", "-" if cpu is None else f"{cpu:.1f}")
    out.print(table)
    out.print("NME: full pipeline (detector + model) on the 554-face 300-W common subset; CPU: onnxruntime, batch 1.")


# --- training side ------------------------------------------------------------------------------
def _parse_arch(items: list[str]) -> dict:
    arch = {}
    for item in items:
        if "=" not in item:
            fail(f"--arch wants KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            arch[k] = json.loads(v)
        except json.JSONDecodeError:
            arch[k] = v
    return arch


def _load_samples(specs: list[str]):
    from . import datasets

    samples = []
    for spec in specs:
        try:
            samples += datasets.load(spec)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
    return samples


def build_pack(data: list[str], teacher: Optional[Path], cache: Path, res: int, youtube_weight: float, quality: int = 92):
    """Prepare (detector + teacher, cached) and crop every training face into a pack."""
    from rich.progress import Progress

    from . import pack as packmod
    from .detector import RetinaFace
    from .prepare import prepare
    from .teacher import Teacher

    samples = [s for s in _load_samples(data) if s.split == "train"]
    if not samples:
        fail("no training faces in --data")
    needs_teacher = any(s.landmarks.shape[0] != 98 for s in samples)
    if needs_teacher and teacher is None:
        fail("68-point data needs --teacher DIR (the PFLD-GhostOne ONNX files) for the other 30 points")
    tea = Teacher.from_dir(teacher) if needs_teacher else None
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("detect + teach", total=None)
        prep = prepare(samples, RetinaFace(threshold=0.3), tea, cache, lambda i, n: bar.update(task, completed=i, total=n))
        task2 = bar.add_task("crop", total=len(samples))
        weights = [youtube_weight if s.subset == "training_frames_keypoints" else 1.0 for s in samples]
        pk = packmod.build(samples, prep, weights, res=res, quality=quality, progress=lambda i, n: bar.update(task2, completed=i))
    return pk


@app.command()
def calibrate(
    data: List[str] = typer.Option(..., "--data", help="KIND=PATH with 68-point human labels (300w, csv68)."),
    teacher: Path = typer.Option(..., "--teacher", help="Directory with the PFLD-GhostOne ONNX files."),
    yunet: Optional[Path] = typer.Option(None, "--yunet", help="YuNet ONNX, to fit its keypoint template too."),
    out_path: Path = typer.Option(Path(__file__).parent / "calibration.json", "--out", help="Where to write."),
    cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="Cache for detector/teacher outputs."),
):
    """Fit the 98->68 map, the canonical crop and the alignment templates (calibration.json)."""
    from . import calibrate as cal

    if not teacher.is_dir():
        fail(f"teacher directory not found: {teacher}")
    result = cal.from_data(data, str(teacher), str(yunet) if yunet else None, cache, log=err.print)
    prov = "facemark calibrate " + " ".join(f"--data {d}" for d in data) + f" --teacher {teacher}" + (f" --yunet {yunet}" if yunet else "")
    cal.write(result, out_path, prov)
    err.print(f"wrote {out_path} ({result['faces']} faces)")


@app.command()
def pack(
    data: List[str] = typer.Option(..., "--data", help="KIND=PATH (300w, wflw, csv68); repeat."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="PFLD-GhostOne directory (68-point data)."),
    out_path: Path = typer.Option(..., "--out", help="The pack file (.npz) to write."),
    res: int = typer.Option(192, "--res", help="Crop side in pixels (canonical square = res / 1.5)."),
    youtube_weight: float = typer.Option(0.5, "--csv68-weight", help="Loss weight of csv68 (noisier) faces."),
    quality: int = typer.Option(92, "--quality", help="JPEG quality of the stored crops."),
    cache: Path = typer.Option(DEFAULT_CACHE, "--cache"),
):
    """Build a compact training pack (pre-aligned JPEG crops + 98-point targets)."""
    if not 50 <= quality <= 100:
        fail("--quality must be between 50 and 100")
    pk = build_pack(data, teacher, cache, res, youtube_weight, quality)
    pk.save(out_path)
    err.print(f"wrote {out_path}: {len(pk)} faces ({int(pk.val.sum())} held out), {out_path.stat().st_size / 1e6:.1f} MB")


@app.command()
def train(
    model: str = typer.Option("hourglass", "--model", help="hourglass | direct | hybrid"),
    data: List[str] = typer.Option([], "--data", help="KIND=PATH (300w, wflw, csv68); repeat."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="PFLD-GhostOne directory (68-point data)."),
    pack_path: Optional[Path] = typer.Option(None, "--pack", help="A pack from 'facemark pack' (skips --data)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
    epochs: int = typer.Option(60, "--epochs"),
    batch: int = typer.Option(32, "--batch"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    arch: List[str] = typer.Option([], "--arch", help="Model option KEY=VALUE, e.g. width=128; repeat."),
    out_dir: Path = typer.Option(..., "--out", help="Run directory (log, checkpoints, exported model)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop cleanly after this long."),
    threads: Optional[int] = typer.Option(None, "--threads"),
    res: int = typer.Option(192, "--res", help="Pack crop side when building from --data."),
    cache: Path = typer.Option(DEFAULT_CACHE, "--cache"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (CUDA)."),
    fuse_loss: bool = typer.Option(True, "--fuse-loss/--no-fuse-loss", help="Compile the heatmap loss (~30 s once)."),
    teacher_model: Optional[str] = typer.Option(None, "--teacher-model", help="Distil from this model (e.g. hourglass, or a .pt) on augmented crops."),
    distill: float = typer.Option(1.0, "--distill", help="Weight of the teacher's loss (human labels keep weight 1)."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from these weights (a model name or .pt): fine-tune."),
):
    """Train a landmark model; exports the best checkpoint to OUT/model.onnx and OUT/model.pt."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .models import FAMILIES
    from .pack import Pack
    from .train import Trainer, TrainOptions

    if model not in FAMILIES:
        fail(f"unknown model {model!r}: use one of {', '.join(FAMILIES)}")
    if pack_path is not None:
        if not pack_path.is_file():
            fail(f"pack not found: {pack_path}")
        pk = Pack.load(pack_path)
    elif data:
        pk = build_pack(data, teacher, cache, res, 0.5)
    else:
        fail("give --data KIND=PATH (and --teacher for 68-point data) or --pack FILE")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: CUDA is not available here (no GPU, or a CPU-only PyTorch)")
    opts = TrainOptions(model, out_dir, epochs=epochs, batch=batch, lr=lr, device=device, model=_parse_arch(arch),
                        resume=resume, max_minutes=max_minutes, threads=threads, compile=compile_model,
                        fuse_loss=fuse_loss, teacher_model=teacher_model, distill=distill, init=init)
    if distill < 0:
        fail("--distill must be 0 or more")
    try:
        trainer = Trainer(pk, opts, log=err.print)
    except (RuntimeError, ValueError) as e:
        fail(str(e))
    err.print(f"{model} {trainer.model.config if model != 'hybrid' else ''} on {device}: "
              f"{len(trainer.train_idx)} training faces, {len(trainer.val_idx)} held out")
    cols = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn()]
    interrupted = False
    with Progress(*cols, console=err, transient=True) as bar:
        task = bar.add_task("train", total=1, epoch=0, loss=0.0)

        def progress(epoch, step, steps, loss):
            bar.update(task, completed=step, total=steps, epoch=epoch + 1, loss=loss)

        try:
            summary = trainer.fit(progress)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        err.print(f"interrupted: the last finished epoch is saved in {out_dir / 'last.pt'}; continue with --resume")
        raise typer.Exit(130)
    onnx_path, pt_path = trainer.export_best()
    err.print(f"best val NME {summary['best_val_nme']:.3f} % after {summary['epochs']} epochs -> {onnx_path}, {pt_path}")


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="A run's best.pt / model.pt (or a run directory)."),
    out_dir: Path = typer.Option(Path("weights"), "--out", help="Directory for NAME.onnx and NAME.pt."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name (default: its family)."),
):
    """Export a checkpoint to ONNX (decode included, fp16 storage) and a half-precision torch state."""
    from .export import export_onnx, load_state, save_state

    if checkpoint.is_dir():
        checkpoint = checkpoint / "best.pt"
    if not checkpoint.is_file():
        fail(f"checkpoint not found: {checkpoint}")
    try:
        model, meta = load_state(checkpoint)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is a usage error
        fail(f"cannot load {checkpoint}: {e}")
    name = name or model.family
    meta = {**meta, "name": name, "family": model.family}
    export_onnx(model, out_dir / f"{name}.onnx", meta)
    save_state(model, out_dir / f"{name}.pt", meta)
    err.print(f"wrote {out_dir / (name + '.onnx')} and {out_dir / (name + '.pt')}")

"""``facemark bench``: detector and landmark-stage speed per model and backend, sizes, and
(optionally) accuracy, so one table shows the accuracy/speed trade-off on the user's machine.

Timings: warm-up first, then many runs; latency is the median and 90th percentile of single
calls at batch 1; throughput is faces per second at larger batches. CUDA timings synchronise the
device around each call and feed device tensors (no host copies), with CUDA graphs for small
batches.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..backends import ModelError, OnnxModel, TorchModel, missing_gpu, weights_label
from ..errors import INSTALL_TORCH, out_of_memory
from ..runtime import available_providers, device_index, is_device


@dataclass
class Row:
    stage: str  # "detector" or "landmarks"
    model: str
    backend: str
    precision: str
    latency_ms: float | None = None  # batch-1 median
    p90_ms: float | None = None
    throughput: dict[int, float] = field(default_factory=dict)  # batch -> faces/s
    params: int | None = None
    flops: int | None = None
    memory_mb: float | None = None  # peak GPU memory of a CUDA row (None on the CPU)
    nme: float | None = None
    missed: int | None = None  # of the --data faces the NME was measured on: the detector's misses (left out of it)
    nme_faces: int | None = None  # the --data faces measured (--limit takes fewer); the NME is over those found
    note: str = ""


def time_calls(fn: Callable[[], object], runs: int, warmup: int, sync: Callable[[], None] = lambda: None,
               budget_s: float = 3.0) -> list[float]:
    """Seconds per call; stops early once ``budget_s`` is spent (at least 5 runs)."""
    for _ in range(warmup):
        fn()
    sync()
    out = []
    start = time.perf_counter()
    for i in range(runs):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
        if i >= 4 and time.perf_counter() - start > budget_s:
            break
    return out


def latency(times: list[float]) -> tuple[float, float]:
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]


def bench_detector(frame: np.ndarray, detector, name: str, runs: int = 50) -> Row:
    times = time_calls(lambda: detector.detect(frame), runs, 5)
    med, p90 = latency(times)
    h, w = frame.shape[:2]
    on_gpu = any(p == "CUDAExecutionProvider" or isinstance(p, tuple) and p[0] == "CUDAExecutionProvider"
                 for p in getattr(detector, "providers", None) or ())
    backend = ("onnxruntime-cuda" if on_gpu else "onnxruntime-cpu") if name == "retinaface" else "opencv"
    return Row("detector", name, backend, "fp32", med, p90, {1: 1000.0 / med}, note=f"{w}x{h} frame")


def bench_pipeline(frame: np.ndarray, model: str, threads: int | None) -> Row:
    """The whole CPU path on one frame: detect, crop, landmarks, map back (what ``detect`` runs)."""
    from ..landmarker import FaceLandmarker

    fl = FaceLandmarker(model=model, threads=threads)
    n = len(fl.detect(frame))
    times = time_calls(lambda: fl.detect(frame), 40, 3)
    med, p90 = latency(times)
    h, w = frame.shape[:2]
    backend, precision = ran_on(fl.model)  # (a .pt file runs in torch)
    return Row("pipeline", fl.model_name, backend, precision, med, p90, {1: 1000.0 / med},
               note=f"{w}x{h} frame, {n} face(s)")


def fit_frame(image: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    """Letterbox an image into a width x height frame (grey border)."""
    import cv2

    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    frame = np.full((height, width, 3), 90, np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    frame[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return frame


def time_batches(row: Row, batches: list[int], one, said: list[str]) -> bool:
    """Each batch size's timings into ``row`` (``one(b)``: the seconds of its calls). A batch too
    big for the memory ends the row there, said in ``said``: the smaller batches' figures stay
    (a --batch 1,2048 that ran out of memory lost its batch-1 latency too). True if it did end so:
    the row's memory figure would then be the failed batch's, so it is left out."""
    for b in sorted(batches):
        try:
            times = one(b)
        except _run_failures() as e:
            if b == min(batches) or not out_of_memory(e):
                raise
            said.append(f"{row.backend} {row.precision}: batch {b} and larger not timed: out of memory")
            return True
        if b == 1:
            row.latency_ms, row.p90_ms = latency(times)
        row.throughput[b] = b / statistics.median(times)
    return False


def bench_onnx(name: str, batches: list[int], threads: int | None, providers: list[str], label: str,
               said: list[str] | None = None) -> Row:
    m = OnnxModel(name, threads=threads, providers=providers)
    rng = np.random.default_rng(0)
    row = Row("landmarks", weights_label(m.name, m.path, m.meta), label, "fp32", params=m.meta.get("params"),
              flops=m.meta.get("flops"))
    def one(b: int) -> list[float]:
        x = rng.integers(0, 255, (b, m.size, m.size, 3), dtype=np.uint8)
        return time_calls(lambda: m(x), 60 if b == 1 else 10, 3 if b == 1 else 1)

    time_batches(row, batches, one, said if said is not None else [])
    return row  # (no memory figure on the CPU: a process's growth across a row, memory reused, read 0 or 1 MB)


def torch_label(device: str, graphs: bool) -> str:
    """A torch row's backend, and the name its failure is said by."""
    return f"torch-{'cuda' if device.startswith('cuda') else 'cpu'}" + ("+graphs" if graphs else "")


def _run_failures() -> tuple[type, ...]:
    """What a backend can raise at run time on a machine it does not suit (torch's errors, CUDA
    out of memory, onnxruntime's own exceptions, which are no RuntimeError): a skipped line, not
    the end of the bench."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    own = [v for v in vars(ort_errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    return (RuntimeError, MemoryError, *own)


def bench_torch(name: str, batches: list[int], device: str, precision: str, graphs: bool,
                said: list[str] | None = None) -> Row:
    import torch

    m = TorchModel(name, device=device, precision=precision, cuda_graphs=graphs)
    rng = np.random.default_rng(0)
    cuda = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    row = Row("landmarks", weights_label(m.name, m.path, m.meta), torch_label(device, graphs), precision, params=m.meta.get("params"),
              flops=m.meta.get("flops"))
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    def one(b: int) -> list[float]:
        x = torch.from_numpy(rng.integers(0, 255, (b, m.size, m.size, 3), dtype=np.uint8)).to(m.device)
        return time_calls(lambda: m.run_tensor(x), 100 if b == 1 else 20, 10 if cuda else 2, sync)

    cut = time_batches(row, batches, one, said if said is not None else [])
    if cuda:  # (the GPU's peak allocation is the row's own; the CPU has no such figure)
        row.memory_mb = None if cut else torch.cuda.max_memory_allocated(device) / 1e6
        row.note = torch.cuda.get_device_name(device)
    return row


def ran_on(model) -> tuple[str, str]:
    """(backend, precision) of a loaded model, as bench rows name them."""
    if isinstance(model, OnnxModel):
        providers = model.session.get_providers()
        return ("onnxruntime-cuda" if "CUDAExecutionProvider" in providers else "onnxruntime-cpu"), "fp32"
    precision = {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(model.dtype), "fp32")
    return f"torch-{'cuda' if model.device.type == 'cuda' else 'cpu'}", precision


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def backends_for(device: str) -> tuple[list[tuple], list[str]]:
    """(kind, args...) of every backend to run, and why any requested one is skipped."""
    plans, skipped = [], []
    if device == "cpu":
        if _has_torch():
            plans.append(("torch", "cpu", "fp32", False))
        else:
            skipped.append(f"torch-cpu: PyTorch is not installed: {INSTALL_TORCH}")
        # onnxruntime last: its idle workers can slow a torch run that follows in the same process.
        plans.append(("onnx", ["CPUExecutionProvider"], "onnxruntime-cpu"))
        return plans, skipped
    if not _has_torch():
        return [], [f"torch-cuda: PyTorch is not installed: {INSTALL_TORCH}"]
    import torch

    if not torch.cuda.is_available():
        return [], ["CUDA is not available here (no GPU visible, or a CPU-only PyTorch build): "
                    "run 'facemark bench --device cpu' or use a machine with an NVIDIA GPU"]
    if missing_gpu(device):
        return [], [missing_gpu(device)]
    plans += [("torch", device, "fp32", False), ("torch", device, "bf16", False), ("torch", device, "bf16", True)]
    if "CUDAExecutionProvider" in available_providers():
        plans.append(("onnx", [("CUDAExecutionProvider", {"device_id": device_index(device)}), "CPUExecutionProvider"],
                      "onnxruntime-cuda"))
    else:
        skipped.append("onnxruntime-cuda: onnxruntime-gpu is not installed")
    return plans, skipped


def run_landmarks(models: list[str], device: str, batches: list[int], threads: int | None, log=print) -> tuple[list[Row], list[str]]:
    plans, skipped = backends_for(device)
    rows, failures = [], _run_failures()
    for name in models:
        failed = []  # a lone .onnx has no .pt for the torch backends: the others still time it
        for plan in plans:
            try:
                if plan[0] == "onnx":
                    rows.append(bench_onnx(name, batches, threads, plan[1], plan[2], failed))
                else:
                    _, dev, prec, graphs = plan
                    small = [b for b in batches if b <= 32] if graphs else batches
                    rows.append(bench_torch(name, small, dev, prec, graphs, failed))
            except ModelError as e:
                if str(e) not in failed:
                    failed.append(str(e))
                continue
            except failures as e:  # (a backend this machine cannot run, or out of memory: the rest still time)
                label = plan[2] if plan[0] == "onnx" else f"{torch_label(plan[1], plan[3])} {plan[2]}"
                why = "out of memory" if out_of_memory(e) else (str(e).strip().splitlines() or [type(e).__name__])[0]
                failed.append(f"{label} failed: {why}")
            else:
                log(f"{name}: {rows[-1].backend} {rows[-1].precision} done")
            gc.collect()  # free the last backend's session and threads (a failed one's too) before timing the next
        skipped += [f"{name}: {e}" for e in failed]
    return rows, skipped


def as_json(rows: list[Row], skipped: list[str], machine: dict) -> dict:
    return {"machine": machine, "rows": [asdict(r) for r in rows], "skipped": [s for s in skipped if not s.startswith("note: ")],
            "notes": [s.removeprefix("note: ") for s in skipped if s.startswith("note: ")]}


def machine_info(device: str) -> dict:
    import platform

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    try:
        import torch

        info["torch"] = torch.__version__
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(device)
    except ImportError:
        pass
    return info


def synthetic_frame() -> np.ndarray:
    """A 640x480 colour ramp: the timing frame when no photo is given (detector speed only)."""
    yy, xx = np.mgrid[0:480, 0:640]
    return np.dstack([(xx * 0.3 + yy * 0.2) % 256, (xx * 0.1) % 256, (yy * 0.4) % 256]).astype(np.uint8)


MAX_BATCH = 2048


def parse_batches(batch: str, device: str) -> list[int]:
    from ..errors import UsageError

    try:
        batches = sorted({int(b) for b in batch.split(",") if b.strip()}) or ([1, 32] if device == "cpu" else [1, 32, 256])
    except ValueError:
        raise UsageError(f"--batch wants comma-separated integers, got {batch!r}") from None
    return check_batches(batches)


def check_batches(batches) -> list[int]:
    """The batch sizes to time, sorted, or UsageError (the CLI's and the API's one check)."""
    import numbers

    from ..errors import UsageError

    if isinstance(batches, (str, bytes)):  # (read letter by letter, "1,32" was a list of characters)
        raise UsageError(f"--batch sizes must be whole numbers (a list, [1, 32]), not {batches!r}")
    batches = [batches] if isinstance(batches, numbers.Integral) else list(batches)  # (one size: as --batch 1)
    if not all(isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in batches):
        raise UsageError(f"--batch sizes must be whole numbers, not {batches!r}")
    if 1 not in batches or min(batches) < 1:
        raise UsageError("--batch must include 1 (latency) and only positive sizes")
    if max(batches) > MAX_BATCH:
        raise UsageError(f"--batch sizes go up to {MAX_BATCH} (a batch of crops and its activations must fit in memory)")
    return sorted(set(int(b) for b in batches))


def run_bench(device: str = "cpu", models: list[str] = ("hourglass", "direct", "hybrid"), batches: list[int] = (1, 32),
              threads: int | None = None, data: str | list[str] | None = None, image=None, yunet=None,
              limit: int | None = None,
              status=None) -> tuple[list[Row], list[str], dict]:
    """Everything ``facemark bench`` measures: (rows, skipped with reasons, machine info).

    ``status(text)`` is a context manager shown while a long step runs (the CLI's spinner)."""
    import contextlib
    from pathlib import Path

    from ..detector import YuNet
    from ..landmarker import make_detector
    from ..errors import UsageError
    from ..imageio import ImageError, read_image

    from .evaluate import check_limit, evenly

    status = status or (lambda text: contextlib.nullcontext())
    if not is_device(device):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, not {device!r}")
    batches = check_batches(batches)
    check_limit(limit)
    from ..backends import SHIPPED, load_model, resolve

    models = [models] if isinstance(models, (str, os.PathLike)) else list(models)  # (one model, as run_eval takes it)
    models = [os.fspath(m) if isinstance(m, os.PathLike) else m for m in models]

    names, seen = [], set()
    for name in models:  # a typo or a damaged file is said before minutes of timing, not as one 'skipped' line after them
        if name not in SHIPPED and name not in names:
            own = Path(name).suffix.lower() or ".onnx"
            try:
                resolve(name, own)
            except ModelError as e:
                raise UsageError(str(e)) from None
            for suffix in (".onnx", ".pt"):  # each file a backend will time, loaded once on the CPU (a second or so)
                try:
                    path = resolve(name, suffix)
                except ModelError:  # no such file beside it: those backends are skipped and said later
                    continue
                if suffix == ".pt" and not _has_torch():
                    continue
                try:
                    load_model(path)
                except ModelError as e:
                    raise UsageError(str(e)) from None
        try:  # the same model twice (by name, or its file by path) is timed once
            same = os.path.splitext(os.path.realpath(resolve(name, Path(name).suffix.lower() or ".onnx")))[0]
        except ModelError:
            same = name
        if name not in names and same not in seen:
            names.append(name)
            seen.add(same)
    if threads:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
    plans, skipped = backends_for(device)
    if not plans:
        raise UsageError(skipped[0])
    samples = []
    data = [data] if isinstance(data, str) else list(data or [])  # (--data may be repeated, as eval's)
    if data:  # read before any timing: a wrong --data is said at once, not minutes later
        from ..training.datasets import common_subset, load_all

        try:
            every = load_all(data, log=lambda m: skipped.append(m.removeprefix('skipped: ')))
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from None
        samples = evenly(common_subset(every), limit)
        if not samples:
            raise UsageError(f"no test faces in --data {' '.join(data)}" + (
                f": its {len(every)} face(s) are all training faces (bench measures the test split; eval "
                f"--split all measures them)" if every else ""))
    if image is not None:
        try:
            frame = fit_frame(read_image(image))
        except ImageError as e:
            raise UsageError(str(e)) from None
    else:
        frame = synthetic_frame()
    rows = [bench_detector(frame, make_detector("retinaface", device=device), "retinaface")]  # where detect runs it
    if yunet is not None:
        if not Path(yunet).is_file():
            raise UsageError(f"YuNet model not found: {yunet}")
        try:
            rows.append(bench_detector(frame, YuNet(str(yunet)).check(), "yunet"))
        except ModelError as e:
            raise UsageError(str(e)) from None
    with status("timing landmark models..."):
        lm_rows, more_skipped = run_landmarks(names, device, batches, threads, log=lambda *_: None)
    rows += lm_rows
    skipped += [m for m in more_skipped if m not in skipped]  # (backends_for's own lines were said above)
    if device == "cpu" and image is not None and not make_detector("retinaface", threads=threads).detect(frame):
        skipped.append("pipeline: no face found in the --image frame, so the pipeline is not timed")
    elif device == "cpu" and image is not None:
        with status("timing the whole pipeline..."):
            for name in names:
                try:
                    rows.append(bench_pipeline(frame, name, threads))
                except ValueError as e:
                    skipped.append(f"pipeline {name}: {e}")
    if data:
        from ..landmarker import FaceLandmarker
        from .evaluate import evaluate
        from .metrics import summary

        said_unread = False  # (each model reads the same images: their skipped lines once)
        # Measured once per model, with the backend facemark runs it on for this device (onnxruntime
        # fp32 on the CPU, or torch for a .pt; torch bf16 on a GPU), and shown on that backend's rows
        # only: the others' numerics differ.
        for name in names:
            try:
                fl = FaceLandmarker(model=name, device=device, threshold=0.3)
            except ValueError as e:  # ModelError is a ValueError
                skipped.append(f"{name}: {e}")
                continue
            unread = []
            with status(f"NME of {name} on {len(samples)} faces..."):
                measured = summary(evaluate(fl, samples, log=unread.append).errors)
            if not said_unread:
                skipped += [m.removeprefix("skipped: ") for m in unread]
                said_unread = True
            if measured["missed"]:
                skipped.append(f"note: NME of {fl.model_name}: the detector missed {measured['missed']} of {measured['faces']} "
                               f"face(s), left out of it (facemark eval counts them as failures)")
            for r in rows:
                if r.stage == "landmarks" and r.model == fl.model_name and (r.backend.split("+")[0], r.precision) == ran_on(fl.model):
                    r.nme, r.missed, r.nme_faces = measured["nme"], measured["missed"], measured["faces"]
    return rows, skipped, machine_info(device)

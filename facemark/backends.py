"""Landmark model runners. Both take uint8 BGR crops (N, S, S, 3) and return canonical points
(N, P, 2) in [0, 1]; the decode is inside the model, so they agree to float precision.

* ``OnnxModel``: onnxruntime (CPU by default; no torch needed).
* ``TorchModel``: torch, for CUDA (bf16 autocast, channels-last, optional CUDA graphs) or CPU.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from importlib import resources
from pathlib import Path

import numpy as np

from . import DEFAULT_MODEL
from .errors import INSTALL_TORCH, FacemarkError, out_of_memory
from .runtime import device_index, is_device, ort_session

SHIPPED = ("direct", "hybrid", "hourglass")  # (the default first)
# The weights this version of facemark ships, by the first 16 hex digits of their SHA-256
# (tests/test_shipped.py holds the files to it). Other weights exported under a shipped name (the
# README's Training writes them into weights/) are not the shipped model: their results carry
# their digest (``direct@1a2b3c4d``), so a resumed run redoes what the shipped ones wrote.
RELEASED = {"direct.onnx": "065ee051f8fd5f5a", "direct.pt": "ac9aec6cf4e1736f",
            "hybrid.onnx": "be928256da2baeeb", "hybrid.pt": "6d2f6667debbd158",
            "hourglass.onnx": "44e2aa815ea61b24", "hourglass.pt": "34aa2385e50c252a"}


class ModelError(FacemarkError, ValueError):
    """A model name or file that cannot be used."""


def weights_dir() -> Path:
    """The weights that came with this copy of the code: installed, the ``facemark/weights``
    package data; in a source checkout (tests run there), the repository's top-level ``weights/``.
    Looked for beside the code first: an editable install maps ``facemark.weights`` to its own
    checkout even when another checkout's code is imported (``PYTHONPATH``, to time older code),
    which then ran with the wrong weights."""
    code = Path(__file__).resolve().parent
    for d in (code / "weights", code.parent / "weights"):
        if (d / "MODEL_CARD.md").is_file() and (d / "__init__.py").is_file():
            return d
    try:
        return Path(str(resources.files("facemark.weights")))
    except ModuleNotFoundError:
        return code.parent / "weights"


def resolve(model: str, suffix: str) -> Path:
    """A shipped model name (``hourglass``) or a path to an .onnx / .pt file."""
    if not str(model).strip():  # (Path("") is the current folder)
        raise ModelError(f"the model is an empty string: use one of {', '.join(SHIPPED)} or a path to an .onnx/.pt file")
    p = Path(model)
    run = p if p.is_dir() else p.parent
    is_run = (run / "last.pt").is_file() and ((run / "log.csv").is_file() or (run / "best.pt").is_file())
    if is_run and (p == run or p.name == "last.pt"):  # (a training run's; its best.pt is a model, and so is
        # an export named last: no log.csv or best.pt beside it)
        exported = next((run / f"model{x}" for x in (suffix, ".onnx", ".pt") if (run / f"model{x}").is_file()),
                        run / "model.onnx")
        what = "a training run" if p == run else "a training state"
        raise ModelError(f"{model} is {what}, not a model: " + (f"give its exported model ({exported})" if exported.is_file()
                                                                 else f"facemark export {run} --out DIR makes one"))
    if p.suffix.lower() in (".onnx", ".pt"):
        if p.is_dir():
            raise ModelError(f"{model} is a directory, not a model file")
        if not p.is_file():
            raise ModelError(f"model file not found: {model}")
        if not os.access(p, os.R_OK):
            raise ModelError(f"{model} cannot be read (permission denied)")
        if p.suffix.lower() != suffix:  # the other backend's file sits beside it under the same name
            other = p.with_suffix(suffix)
            if not other.is_file():
                raise ModelError(f"{p.name} has no {suffix} file beside it (needed for this backend)")
            return other
        return p
    if model not in SHIPPED:
        if p.is_dir():
            raise ModelError(f"{model} is a folder: give a model file in it (.onnx or .pt), or one of {', '.join(SHIPPED)}")
        if p.is_file():  # (an image or a checkpoint of another tool: "unknown model" read as a name)
            raise ModelError(f"{model} is not a model file: give an .onnx or .pt file, or one of {', '.join(SHIPPED)}")
        raise ModelError(f"unknown model {model!r}: use one of {', '.join(SHIPPED)} or a path to an .onnx/.pt file")
    p = weights_dir() / f"{model}{suffix}"
    if not p.is_file():
        raise ModelError(f"shipped weights for {model!r} are missing ({p.name}); reinstall facemark")
    return p


def missing_gpu(device: str) -> str | None:
    """Why ``cuda:N`` cannot run on this machine (it has fewer GPUs), or None."""
    import torch

    index, n = device_index(device), torch.cuda.device_count()
    return None if index < n else f"--device {device}: this machine has {n} GPU{'s' if n != 1 else ''} (cuda:0 to cuda:{n - 1})"


def weights_digest(path: str | Path) -> str:
    """The first 16 hex digits of a weights file's SHA-256: what a measurement (an eval report's
    entry) records, so a figure is shown only beside the weights it was measured on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def weights_label(name: str, path: Path, meta: dict | None = None) -> str:
    """``name`` for the weights this version ships (``RELEASED``), asked for by name or by path;
    other weights get ``name@`` the first 8 hex digits of the file's SHA-256, also when exported
    under a shipped name into weights/ (see ``FaceLandmarker.model_name``); a .pt exported with an
    ONNX file (its ``meta``'s ``onnx_digest``) that file's, so one export is one label on the CPU
    and on a GPU. A name that is not UTF-8 text (an export's ``--name`` of odd bytes) has them as
    ``\\xNN``: it goes into every output, and Parquet's strings must be UTF-8."""
    from .inputs import shown_name

    name = shown_name(name)
    digest = weights_digest(path)
    if name in SHIPPED and RELEASED.get(f"{name}{Path(path).suffix.lower()}") == digest:
        return name
    paired = (meta or {}).get("onnx_digest") if Path(path).suffix.lower() == ".pt" else None
    return f"{name}@{(paired if isinstance(paired, str) and len(paired) >= 8 else digest)[:8]}"


class OnnxModel:
    def __init__(self, model: str | Path = DEFAULT_MODEL, threads: int | None = None, providers=None):
        path = resolve(str(model), ".onnx")
        self.path = path
        try:
            self.session = ort_session(str(path), providers, threads)
        except MemoryError:  # (not the file's fault)
            raise
        except Exception:  # noqa: BLE001 - onnxruntime raises its own types for any unreadable file
            raise ModelError(f"{path} is not a valid ONNX model (onnxruntime cannot load it)") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "facemark.size" not in meta:
            raise ModelError(f"{path} is not a facemark model (no facemark metadata)")
        try:
            self.family = meta["facemark.family"]
            self.size = int(meta["facemark.size"])
            self.config = json.loads(meta["facemark.config"])
            self.meta = json.loads(meta.get("facemark.meta", "{}"))
            points = int(self.config["num_points"])
            self.input = self.session.get_inputs()[0].name
            # One blank crop now, so a graph whose metadata lies fails here, not halfway through a run.
            out = self.session.run(None, {self.input: np.zeros((1, self.size, self.size, 3), np.uint8)})[0]
            if out.shape != (1, points, 2):
                raise ValueError(out.shape)
        except Exception as e:  # noqa: BLE001 - KeyError, ValueError, onnxruntime's own: all the same user error
            if out_of_memory(e):  # (the blank crop's run: not the file's fault)
                raise MemoryError(f"not enough memory to run {path}") from None
            raise ModelError(f"{path} has damaged facemark metadata (input size or point count)") from None
        self.name = self.meta.get("name", path.stem)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.config["num_points"], 2))
        return self.session.run(None, {self.input: crops})[0].astype(np.float64)


class TorchModel:
    def __init__(self, model: str | Path = DEFAULT_MODEL, device: str = "cuda", precision: str = "bf16",
                 cuda_graphs: bool = False):
        try:
            import torch
        except ImportError:
            raise ModelError(f"the torch backend needs PyTorch: {INSTALL_TORCH}") from None
        from .models import load_state
        from .models import Predictor

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError("CUDA is not available here (no GPU, or a CPU-only PyTorch build)")
        if device.startswith("cuda") and missing_gpu(device):
            raise ModelError(missing_gpu(device))
        path = resolve(str(model), ".pt")
        try:
            net, meta = load_state(path)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise ModelError(f"{path} is not a valid facemark torch model ({type(e).__name__})") from None
        self.path, self.meta, self.family, self.size, self.config = path, meta, net.family, net.size, net.config
        self.name = meta.get("name") or net.family  # (a run's best.pt has none: it was "best@...", no family)
        self.device = torch.device(device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
        if self.device.type == "cpu" and self.dtype == torch.float16:
            self.dtype = torch.float32
        self.predictor = Predictor(net).to(self.device).eval()
        if self.device.type == "cuda":
            self.predictor = self.predictor.to(memory_format=torch.channels_last)
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[int, tuple] = {}
        self._graph_lock = threading.Lock()
        self._torch = torch

    def _forward(self, x):
        torch = self._torch
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            return self.predictor(x).float()

    def _graphed(self, x):
        """Replay a captured CUDA graph for this batch size (launch overhead dominates small batches)."""
        torch = self._torch
        n = x.shape[0]
        # One replay at a time, each caller with its own copy of the output: threads sharing a
        # landmarker read each other's points from the one output buffer, as did a caller keeping
        # an earlier result past the next call.
        with self._graph_lock:
            if n not in self._graphs:  # captured on the model's GPU, whichever is current
                with torch.cuda.device(self.device):
                    self._graphs[n] = self._capture(x)
            g, static_in, static_out = self._graphs[n]
            static_in.copy_(x)
            g.replay()
            return static_out.clone()

    def _capture(self, x) -> tuple:
        torch = self._torch
        static_in = x.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up off the default stream, as graph capture requires
            for _ in range(3):
                self._forward(static_in)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static_out = self._forward(static_in)
        return g, static_in, static_out

    def run_tensor(self, x):
        """Device tensor in, device tensor out (no host copies): for benchmarks and batching."""
        return self._graphed(x) if self.cuda_graphs else self._forward(x)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        if len(crops) == 0:
            return np.zeros((0, self.config["num_points"], 2))
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device, non_blocking=True)
        return self.run_tensor(x).cpu().numpy().astype(np.float64)


def runs_on_onnxruntime(model: str | Path, device: str = "cpu") -> bool:
    """Which file of a model is run: the .onnx on a CPU, the .pt on a GPU or when a .pt is named."""
    return device == "cpu" and not str(model).lower().endswith(".pt")


def load_model(model: str | Path = DEFAULT_MODEL, device: str = "cpu", threads: int | None = None, **kw):
    """ONNX on CPU (the shipped default), torch on CUDA or when a .pt file is named."""
    if runs_on_onnxruntime(model, device):
        return OnnxModel(model, threads=threads)
    if not is_device(device):
        raise ModelError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    if device == "cpu":  # bf16 is a GPU speed-up; on a CPU it costs accuracy and (without bf16 units) time
        kw.setdefault("precision", "fp32")
    return TorchModel(model, device=device, **kw)


def _at(d, *keys):
    """The value under ``keys`` where each level is a dict, else None (a hand-edited JSON file)."""
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


COMMON_FACES = 554  # the 300-W common test subset: HELEN's 330 and LFPW's 224 test faces


def _standard_eval(entry) -> bool:
    """Whether an eval report's entry is the figure ``facemark models`` stands for: the full
    pipeline (RetinaFace, no flip, on the CPU) on all 554 common-subset faces. A report written with --limit,
    --boxes gt, --flip or other data (into weights/eval.json, say) is not shown as that."""
    if not isinstance(entry, dict) or entry.get("mode") != "detector":
        return False
    options = entry.get("options", {})  # (reports before options were kept: judged by the rest)
    if not isinstance(options, dict) or options.get("split", "test") != "test" or options.get("limit") is not None \
            or options.get("flip", False) or options.get("detector", "retinaface") != "retinaface" \
            or options.get("device", "cpu") != "cpu":  # (the shipped figure is onnxruntime's, on the CPU)
        return False
    subsets = entry.get("subsets") if isinstance(entry.get("subsets"), dict) else {}
    faces = {k: _at(subsets, k, "faces") for k in ("helen/testset", "lfpw/testset", "all")}
    return faces == {"helen/testset": 330, "lfpw/testset": 224, "all": COMMON_FACES}


def shipped_models() -> list[dict]:
    """One row per shipped model (``facemark models``): family, input size, parameters, GFLOPs,
    file size, and the NME / CPU time recorded in ``weights/eval.json`` and ``bench.json`` (with the
    machine that time was measured on): the NME where the report's entry names these very weights
    (by content), the time where its row's model has as many parameters."""
    import json

    def read(name: str) -> dict:
        """A shipped measurement file, or {} (its figures shown as missing) where it is damaged."""
        p = weights_dir() / name
        try:
            data = json.loads(p.read_text()) if p.is_file() else {}
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict):
            import warnings

            warnings.warn(f"weights/{name} is damaged: its figures are left out (reinstall facemark to restore it)")
            return {}
        return data

    evals, bench = read("eval.json"), read("bench.json")
    bench_rows = [r for r in bench.get("rows", []) if isinstance(r, dict)] if isinstance(bench.get("rows"), list) else []
    said = bench.get("machine") if isinstance(bench.get("machine"), dict) else {}
    machine = f"{said.get('cpu')}, {said.get('cores')} cores" if said.get("cpu") and said.get("cores") else None
    rows = []
    for name in SHIPPED:
        try:
            m = OnnxModel(name)
        except ModelError as e:
            rows.append({"name": name, "error": str(e)})
            continue
        entry = evals.get(m.name)
        # (an NME only beside the weights it measured: retrained weights exported under a shipped
        # name showed the shipped model's; a time only beside a model of the size it timed)
        same_weights = isinstance(entry, dict) and entry.get("weights") == weights_digest(m.path)
        nme = _at(evals, m.name, "subsets", "all", "nme") if same_weights and _standard_eval(entry) else None
        cpu = next((r.get("latency_ms") for r in bench_rows if r.get("model") == m.name
                    and r.get("backend") == "onnxruntime-cpu" and r.get("params") == m.meta.get("params")), None)
        nme = nme if isinstance(nme, (int, float)) else None
        cpu = cpu if isinstance(cpu, (int, float)) else None
        rows.append({"name": name, "family": m.family, "size": m.size, "params": m.meta.get("params", 0),
                     "flops": m.meta.get("flops", 0), "onnx_mb": m.path.stat().st_size / 1e6, "nme": nme, "cpu_ms": cpu,
                     "cpu_machine": machine})
    return rows

"""onnxruntime sessions with facemark's settings (one place, so the bench measures what ships)."""
from __future__ import annotations

import os
import re

# onnxruntime (1.29 on) reports usage to Microsoft from Linux too, and warns on stderr when it
# cannot keep its device id (HOME not writable). A landmark tool has no business calling out:
# off unless the user has set ORT_DISABLE_TELEMETRY themselves.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort  # noqa: E402

from .errors import out_of_memory  # noqa: E402

ort.set_default_logger_severity(3)  # (its warnings are not the user's: stderr carries facemark's lines)


def is_device(device: object) -> bool:
    """cpu, cuda or cuda:N: the devices every command and the API take."""
    return isinstance(device, str) and (device == "cpu" or re.fullmatch(r"cuda(:[0-9]+)?", device) is not None)


def available_providers() -> list[str]:
    return ort.get_available_providers()


def max_threads() -> int:
    """The most CPU threads an option may ask for: four per core. Far beyond that, thread creation
    fails inside onnxruntime, and it then crashes the process."""
    return 4 * (os.cpu_count() or 1)


def _quota_cores() -> int | None:
    """The cores a container's CPU quota leaves this process, where fewer than it may run on."""
    from .workers import allowed_cores, cpu_cores

    n = cpu_cores()
    return n if n < allowed_cores() else None


def device_index(device: str) -> int:
    """N of ``cuda:N`` (0 for ``cuda``)."""
    return int(device.partition(":")[2] or 0)


def providers_for(device: str) -> list:
    """onnxruntime providers for a facemark device: ``cpu`` is the CPU even where onnxruntime-gpu
    is installed; ``cuda:N`` is GPU N where it has CUDA, else the CPU."""
    if device == "cpu" or "CUDAExecutionProvider" not in available_providers():
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"device_id": device_index(device)}), "CPUExecutionProvider"]


def ort_session(model: bytes | str | os.PathLike, providers: tuple | list | None = None,
                threads: int | None = None) -> ort.InferenceSession:
    """An inference session: full graph optimisation; on the CPU unless ``providers`` say otherwise."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 4  # (fatal only: every error of its own reaches the user as facemark's one line)
    # No spin-waiting between runs: facemark alternates two sessions (detector, landmarks), and
    # one session's spinning workers starve the other's (measured: docs/PERFORMANCE.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    elif (quota := _quota_cores()) is not None:  # (onnxruntime counts the cores it may run on, not a
        opts.intra_op_num_threads = quota  # container's CPU quota: docker --cpus 2 on 64 cores gave 64 threads)
    if providers is None:
        providers = ["CPUExecutionProvider"]
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    from .inputs import utf8_name

    if isinstance(model, str) and utf8_name(model) is None:  # (onnxruntime takes a path as UTF-8 text: read here)
        with open(model, "rb") as f:
            model = f.read()
    try:
        # (no fallback: on a failure such as threads that cannot start, onnxruntime would print
        # "EP Error" lines to stdout, into JSON written there, and retry the same providers)
        session = ort.InferenceSession(model, sess_options=opts, providers=list(providers), enable_fallback=0)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
        if out_of_memory(e):
            shown = model if isinstance(model, str) else "the model"
            raise MemoryError(f"not enough memory to load {shown}") from None
        raise
    asked = [p[0] if isinstance(p, tuple) else p for p in providers]
    if "CUDAExecutionProvider" in asked and "CUDAExecutionProvider" not in session.get_providers():
        import warnings  # (its own warning about it is silenced above: said here, once per session)

        warnings.warn("onnxruntime could not start CUDA here (its CUDA and cuDNN libraries?); running on the CPU")
    return session

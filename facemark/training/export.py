"""Export a trained model to what ships in ``weights/``: an ONNX graph (CPU inference, decode
included, fp16-stored weights cast to fp32 once at load) and a torch state (CUDA, fine-tuning)."""
from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from ..imageio import atomic_write
from ..inputs import shown_name, utf8_name
from ..models import Predictor, load_state  # noqa: F401  (load_state: the reader beside these writers)


def count_flops(model: torch.nn.Module, size: int) -> int:
    """Multiply-adds x 2 of convolutions and linear layers for one face (hooks on a real forward)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += 2 * out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))  # (a model training on a GPU)
    model.train(was_training)
    for h in handles:
        h.remove()
    return int(total)


_FLOPS: dict[tuple, int] = {}  # (family, config, size) -> FLOPs: best.pt is saved at each better epoch


def describe(model: torch.nn.Module) -> dict:
    """Size facts stored with every exported model (so the ONNX-only install can report them)."""
    key = (model.family, repr(sorted(model.config.items())), model.size)
    if key not in _FLOPS:  # (a forward pass: as long as a training step of a small model)
        _FLOPS[key] = count_flops(model, model.size)
    return {"params": int(sum(p.numel() for p in model.parameters())), "flops": _FLOPS[key]}


def save_state(model: torch.nn.Module, path: str | Path, meta: dict | None = None, half: bool = True) -> None:
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    blob = {"family": model.family, "config": model.config, "state_dict": state, "meta": {**describe(model), **(meta or {})}}
    _atomic_torch_save(blob, Path(path))


def _atomic_torch_save(obj, path: Path) -> None:
    def save(tmp: Path) -> None:
        try:
            # (Not to a path: that names the archive's folder after the temporary file, so the same
            # weights saved twice differed, and so did the model@hash they are shown as. Into memory,
            # then one write: torch's many small writes to a file object took twice as long.)
            data = io.BytesIO()
            torch.save(obj, data)
            with open(tmp, "wb") as f:
                f.write(data.getbuffer())
        except RuntimeError as e:  # torch's zip writer reports a failed write (a full disk) this way,
            if "inline_container" not in str(e) and "iostream error" not in str(e):  # (or its stream's, at the end)
                raise
            import errno

            raise OSError(errno.ENOSPC if "iostream" in str(e) else errno.EIO,
                          f"{str(e).splitlines()[0][:120]} (disk full?)") from None

    atomic_write(path, save)


def export_pair(model: torch.nn.Module, onnx_path: Path, pt_path: Path, meta: dict) -> None:
    """``NAME.onnx`` and ``NAME.pt`` together: both are written under hidden names first, so a
    failure (a full disk) leaves neither, and never a new file beside an older other half. If the
    second rename fails (a folder of that name, a file another user owns in a sticky folder), the
    first is undone: the older .onnx comes back (kept by a hard link meanwhile; on a file system
    without them, a copy)."""
    from ..imageio import make_temp, remove_stale_temps

    remove_stale_temps(onnx_path.parent)  # what a killed export left
    tmps = []
    for p in (onnx_path, pt_path, onnx_path):  # named as facemark's temporaries are, so a later run removes them if killed
        fd, tmp = make_temp(p.parent, suffix=p.suffix)
        os.close(fd)
        tmps.append(Path(tmp))
    new_onnx, new_pt, old_onnx = tmps
    try:
        export_onnx(model, new_onnx, meta)
        from ..backends import weights_digest

        # The .pt names the ONNX file it was exported with: both are the same weights, and results
        # of either carry one label (``weights_label``), not one digest per file (CPU, GPU).
        save_state(model, new_pt, {**meta, "onnx_digest": weights_digest(new_onnx)})
        had = onnx_path.is_file()
        if had:
            old_onnx.unlink()
            try:
                os.link(onnx_path, old_onnx)
            except OSError:
                shutil.copy2(onnx_path, old_onnx)
        os.replace(new_onnx, onnx_path)
        try:
            os.replace(new_pt, pt_path)
        except OSError:
            if had:
                os.replace(old_onnx, onnx_path)
            else:
                onnx_path.unlink(missing_ok=True)
            raise
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)


def _fp16_initializers(model_proto) -> None:
    """Store large float initializers as fp16 behind a Cast node: half the file size; onnxruntime
    folds the Cast at session start, so inference still runs in fp32."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    new_nodes = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < 256:
            continue
        name = init.name
        half = numpy_helper.from_array(arr.astype(np.float16), name + "_fp16")
        init.CopyFrom(half)
        new_nodes.append(helper.make_node("Cast", [name + "_fp16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)


def export_onnx(model: torch.nn.Module, path: str | Path, meta: dict | None = None, fp16: bool = True) -> None:
    import onnx

    model = model.float().eval().cpu()
    pred = Predictor(model).eval()
    x = torch.zeros(2, model.size, model.size, 3, dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's notes on what it could not fold: not the user's concern
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(pred, (x,), buf, dynamo=False, opset_version=17, input_names=["crops"], output_names=["points"],
                          dynamic_axes={"crops": {0: "faces"}, "points": {0: "faces"}})
    proto = onnx.load_from_string(buf.getvalue())
    if fp16:
        _fp16_initializers(proto)
    meta = {**describe(model), **(meta or {})}
    props = {"facemark.family": model.family, "facemark.config": json.dumps(model.config),
             "facemark.size": str(model.size), "facemark.meta": json.dumps(meta)}
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))


def _facemark_onnx(path: Path) -> bool:
    """Whether an ONNX file carries facemark's metadata (one exported before, safe to replace)."""
    from ..runtime import ort_session

    try:
        return "facemark.size" in ort_session(str(path), threads=1).get_modelmeta().custom_metadata_map
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - onnxruntime raises its own types for a file that is no model
        return False


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """``facemark export``: a run's ``best.pt`` (or a run directory) -> ``OUT/NAME.onnx`` + ``NAME.pt``.
    ``out_dir`` has no default: a relative ``weights`` made a folder wherever Python ran; the
    package's own is ``facemark.backends.weights_dir()``."""
    from ..errors import FacemarkError, UsageError

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if checkpoint.is_dir():
        checkpoint = checkpoint / "best.pt"
    if not checkpoint.exists():
        raise UsageError(f"checkpoint not found: {checkpoint}")
    if not checkpoint.is_file():
        raise UsageError(f"{checkpoint} is not a regular file")
    if name is not None and not name.strip():
        raise UsageError("--name is empty: give the model a name (its files are NAME.onnx and NAME.pt)")
    if name is not None and (Path(name).name != name or name in (".", "..")):
        raise UsageError(f"--name {name!r} must be a plain file name (no folders)")
    if name is not None and utf8_name(name) is None:  # (it names the model in every output, Parquet's strings too)
        raise UsageError(f"--name {shown_name(name)} is not UTF-8 text: give a name in plain characters")
    if name is not None and len(os.fsencode(f"{name}.onnx")) > 255:
        raise UsageError(f"--name {name[:40]}...: too long for a file name ({len(os.fsencode(name))} bytes; "
                         f"NAME.onnx must fit in 255)")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a directory")
    if checkpoint.suffix.lower() == ".onnx":
        raise UsageError(f"{checkpoint} is an ONNX model, already exported: export takes a training run's best.pt "
                         f"(or the run folder); to use this file, pass it as --model")
    try:
        model, meta = load_state(checkpoint)
    except Exception:  # noqa: BLE001 - any unreadable checkpoint is a usage error
        hint = ("; last.pt is a training state: export best.pt, or the run folder" if checkpoint.name == "last.pt"
                else " (export takes a training run's best.pt, or the run folder)")
        raise UsageError(f"{checkpoint} is not a facemark checkpoint{hint}") from None
    name = name or model.family
    if name.endswith((".onnx", ".pt")):  # --name x.onnx means x, not x.onnx.onnx
        name = name.rsplit(".", 1)[0]
    from ..models import FAMILIES

    if name in FAMILIES and name != model.family:  # (every table would then call a direct model "hourglass")
        raise UsageError(f"--name {name}: this checkpoint is a {model.family} model; name it {model.family}, or "
                         f"something of its own")
    for target in (out_dir / f"{name}.onnx", out_dir / f"{name}.pt"):
        if target.resolve() == checkpoint.resolve():
            raise UsageError(f"refusing to overwrite the checkpoint {checkpoint}: give another --out or --name")
        if target.exists() and not target.resolve().is_file() or target.is_symlink() and not target.exists():
            raise UsageError(f"{target} is in the way (not a regular file): nothing was written")
    pt = out_dir / f"{name}.pt"
    if name in ("best", "last") and (out_dir / "last.pt").is_file():  # a run folder: its resumable state
        raise UsageError(f"refusing to overwrite {pt}: {out_dir} is a training run, and its {name}.pt is what "
                         f"--resume (and export) read; give another --name or --out")
    if pt.is_file():  # a model exported before is replaced; a file of anything else is not
        try:
            load_state(pt)
        except Exception:  # noqa: BLE001 - any file that is no facemark model
            raise UsageError(f"{pt} exists and is not a facemark model; not overwritten: give another --name or "
                             f"--out") from None
    onnx = out_dir / f"{name}.onnx"
    if onnx.is_file() and not _facemark_onnx(onnx):  # (the same rule for the pair's other file)
        raise UsageError(f"{onnx} exists and is not a facemark model; not overwritten: give another --name or --out")
    meta = {**meta, "name": name, "family": model.family}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out_dir} cannot be made: {e.strerror or e}") from None
    try:
        export_pair(model, out_dir / f"{name}.onnx", out_dir / f"{name}.pt", meta)
    except OSError as e:  # after the work, not a usage error: exit 1
        raise FacemarkError(f"cannot write {name}.onnx and {name}.pt in {out_dir}: {e.strerror or e}; "
                            f"nothing was written") from None
    return out_dir / f"{name}.onnx", out_dir / f"{name}.pt"

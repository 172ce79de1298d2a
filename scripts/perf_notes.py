"""Before/after timings of each inference speed-up, measured side by side in one process on this
machine (the numbers in docs/PERFORMANCE.md come from this script).

    python scripts/perf_notes.py [--model hourglass] [--int8-calibration ../shared/data/300w/afw]

Each "before" is the earlier code path, rebuilt here so both run under the same conditions.
``--int8-calibration DIR`` also tries (and reports) static int8 quantisation of the detector,
calibrated on the images in DIR (needs the ``onnx`` package).
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from facemark import align
from facemark.backends import OnnxModel
from facemark.detector import RetinaFace
from facemark.landmarker import FaceLandmarker
from facemark.runtime import ort_session

ROOT = Path(__file__).resolve().parents[1]


def ms(fn, runs=60, warmup=5) -> float:
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        fn()
        t.append(time.perf_counter() - s)
    return statistics.median(t) * 1000


def session(model, spin: bool, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    o = ort.SessionOptions()
    o.graph_optimization_level = level
    o.log_severity_level = 3
    o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(model, sess_options=o, providers=["CPUExecutionProvider"])


def row(name: str, before: float, after: float, unit: str = "ms") -> None:
    print(f"| {name} | {before:.2f} {unit} | {after:.2f} {unit} | {before / after:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="hourglass")
    ap.add_argument("--int8-calibration", type=Path, default=None)
    a = ap.parse_args()
    photo = cv2.imread(str(ROOT / "examples" / "astronaut.jpg"))
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 64:576] = cv2.resize(photo, (512, 480))
    print("| change | before | after | gain |\n|---|---|---|---|")

    # 1. Detector pre-processing: numpy float + transpose vs per-plane subtract into a buffer.
    det = RetinaFace()
    mean = det.MEAN_BGR
    blob = np.zeros((1, 3, 480, 640), np.float32)

    def pre_numpy():
        blob[0] = (frame.astype(np.float32) - mean).transpose(2, 0, 1)

    def pre_planes():
        for c, plane in enumerate(cv2.split(frame)):
            cv2.subtract(plane, float(mean[c]), dst=blob[0, c], dtype=cv2.CV_32F)

    row("detector pre-processing, 640x480", ms(pre_numpy), ms(pre_planes))

    # 2. Spin-waiting: detector + landmark sessions alternating, as in the pipeline.
    from retinaface.weights import WEIGHTS

    lm = OnnxModel(a.model)
    crops = np.random.default_rng(0).integers(0, 255, (1, lm.size, lm.size, 3), dtype=np.uint8)
    results = []
    for spin in (True, False):
        d, m = session(WEIGHTS, spin), session(str(lm.path), spin)
        pre_planes()
        results.append(ms(lambda: (d.run(None, {"input": blob}), m.run(None, {lm.input: crops})), runs=40))
    row("detector + landmarks, alternating sessions (spin-waiting on -> off)", *results)

    # 3. Faces in one batch vs one call per face (32 faces).
    many = np.random.default_rng(1).integers(0, 255, (32, lm.size, lm.size, 3), dtype=np.uint8)
    one_by_one = ms(lambda: [lm(many[i:i + 1]) for i in range(32)], runs=5) / 32
    batched = ms(lambda: lm(many), runs=5) / 32
    row(f"{a.model}: per face, 32 faces one call each -> one batch", one_by_one, batched)

    # 4. Crops straight into the batch array vs crop, stack, transpose and scale in Python.
    fl = FaceLandmarker(model=a.model)
    dets = det.detect(frame) * 16
    mats = [align.from_points(x.kps, align.TEMPLATES["retinaface"], lm.size) for x in dets]
    s = lm.size

    def crops_old():
        cs = [align.warp(frame, m_, s) for m_ in mats]
        return ((np.stack(cs).astype(np.float32) - 127.5) / 64.0).transpose(0, 3, 1, 2).copy()

    def crops_new():
        out = np.empty((len(mats), s, s, 3), np.uint8)
        for j, m_ in enumerate(mats):
            align.warp(frame, m_, s, out=out[j])
        return out

    row("16 crops into one batch (uint8, normalised inside the graph)", ms(crops_old, runs=30), ms(crops_new, runs=30))
    del fl

    # 5. DARK decode over the whole heatmap vs a patch around each peak (the graph's decode).
    try:
        import torch
        import torch.nn.functional as F

        from facemark.models.decode import gaussian_kernel, heatmap_points
    except ImportError:
        print("(torch not installed: decode comparison skipped)")
        return

    def full_map_dark(hm: torch.Tensor) -> torch.Tensor:
        n, p, h, w = hm.shape
        k = gaussian_kernel(1.0)
        r = k.shape[-1] // 2
        b = F.conv2d(F.pad(hm.reshape(n * p, 1, h, w), (r, r, r, r), mode="replicate"), k[None, None]).reshape(n, p, h, w)
        flat = b.reshape(n, p, h * w)
        idx = flat.argmax(-1)
        peak = flat.gather(-1, idx[..., None])
        logh = torch.log(torch.clamp(b / torch.clamp(peak[..., None], min=1e-6), min=1e-4))
        return logh.mean((2, 3))  # stand-in for the stencil: the full-map passes dominate

    class Dec(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, h):
            return self.fn(h)

    times = []
    for fn in (full_map_dark, heatmap_points):
        buf = io.BytesIO()
        torch.onnx.export(Dec(fn), (torch.rand(2, 98, 32, 32),), buf, dynamo=False, opset_version=17, input_names=["h"],
                          dynamic_axes={"h": {0: "n"}})
        sess = ort_session(buf.getvalue())
        x = np.random.rand(32, 98, 32, 32).astype(np.float32)
        times.append(ms(lambda: sess.run(None, {"h": x}), runs=20) / 32)
    row("heatmap decode per face (98 x 32 x 32): whole-map blur+log -> 7x7 patch", *times)

    # 6. Graph optimisation level for the landmark model.
    basic = session(str(lm.path), False, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    full = session(str(lm.path), False)
    row(f"{a.model} batch 1: graph optimisation basic -> all", ms(lambda: basic.run(None, {lm.input: crops})),
        ms(lambda: full.run(None, {lm.input: crops})))
    size = lm.path.stat().st_size / 1e6
    print(f"\n{a.model}.onnx is {size:.1f} MB with fp16-stored weights (fp32 compute after a folded Cast).")
    if a.int8_calibration:
        int8_detector(a.int8_calibration, frame)


def int8_detector(images: Path, frame: np.ndarray) -> None:
    """Static QDQ int8 quantisation of RetinaFace: speed and keypoint shift against float32."""
    import tempfile

    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from retinaface.weights import WEIGHTS

    mean = RetinaFace.MEAN_BGR
    files = sorted(images.glob("*.jpg"))[:100]
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            items = []
            for f in files:
                im = cv2.imread(str(f))
                k = rng.uniform(0.2, 1.0)
                im = cv2.resize(im, None, fx=k, fy=k)
                canvas = np.full((480, 640, 3), 100, np.uint8)
                h, w = min(480, im.shape[0]), min(640, im.shape[1])
                canvas[:h, :w] = im[:h, :w]
                items.append({"input": ((canvas.astype(np.float32) - mean).transpose(2, 0, 1))[None].copy()})
            self.it = iter(items)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "rf13.onnx", Path(d) / "rf_int8.onnx"
        onnx.save(version_converter.convert_version(onnx.load_from_string(WEIGHTS), 13), src)  # per-channel QDQ needs 13
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        f32, i8 = RetinaFace(), RetinaFace()
        i8._session = ort_session(str(dst))
        row("detector 640x480: float32 -> static int8 (rejected)", ms(lambda: f32.detect(frame)), ms(lambda: i8.detect(frame)))
        a, b = f32.detect(frame)[0], i8.detect(frame)[0]
        print(f"int8 moves the detector's keypoints by up to {np.abs(a.kps - b.kps).max():.1f} px on the example frame")


if __name__ == "__main__":
    main()

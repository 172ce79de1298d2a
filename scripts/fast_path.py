"""Where the time of the fast models goes, per face at batch 1, and what the CPU options buy.

Profiles the landmark stage of ``FaceLandmarker`` for the direct and hybrid models (crop warp,
onnxruntime run, mapping back to the image) and times variants of the session: intra-op threads,
fp16 weights computed in fp16, and static int8 (QDQ, calibrated on 300-W crops), with the accuracy
each variant costs (NME on 300-W common-subset faces cropped from their labels, the landmark model
alone). Prints a Markdown table for docs/PERFORMANCE.md.

    python scripts/fast_path.py --data 300w=../shared/data/300w [--models direct,hybrid] [--faces 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facemark import align, labelmap  # noqa: E402
from facemark.backends import OnnxModel  # noqa: E402
from facemark.evaluation import metrics  # noqa: E402
from facemark.evaluation.bench import latency, time_calls  # noqa: E402
from facemark.runtime import ort_session  # noqa: E402
from facemark.layouts import five_points  # noqa: E402
from facemark.training.datasets import common_subset, load_all  # noqa: E402


def ms(fn) -> float:
    """Median milliseconds of 300 calls after 20 warm-ups (bench's timer, the same as facemark bench)."""
    return latency(time_calls(fn, 300, 20, budget_s=30.0))[0]


def session(path: str, threads: int | None) -> ort.InferenceSession:
    return ort_session(path, ["CPUExecutionProvider"], threads)  # facemark's own session settings


def crops_for(samples, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Label-aligned crops (the model alone, no detector) and their image->crop matrices."""
    crops, mats = [], []
    for s in samples:
        image = cv2.imread(str(s.image))
        m = align.from_points(five_points(s.landmarks), align.TEMPLATES["landmarks98"], size)
        crops.append(align.warp(image, m, size))
        mats.append(m)
    return np.stack(crops), mats


def nme(run, crops, mats, samples, size: int) -> float:
    m68 = labelmap.load()
    errs = []
    for c, m, s in zip(crops, mats, samples):
        canon = run(c[None])[0].astype(np.float64)
        pts = align.apply(align.invert(m), canon * size - 0.5)
        errs.append(metrics.nme(labelmap.to68(pts, m68)[None], s.landmarks[None])[0])
    return float(np.mean(errs)) * 100


def int8_model(path: str, calib: np.ndarray, out: str) -> str:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"crops": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    pre = out + ".pre.onnx"
    quant_pre_process(path, pre, skip_symbolic_shape=True)
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def fp16_model(path: str, out: str) -> str:
    import onnx

    m = onnx.load(path)
    # facemark stores big weights as fp16 behind a Cast to fp32; computing in fp16 means dropping
    # those Casts and running every float op in fp16: onnxconverter-common does that properly.
    try:
        from onnxconverter_common import float16
    except ImportError:  # (not a facemark dependency)
        print("(fp16 compute: not measured; pip install onnxconverter-common for it)")
        return ""
    try:  # facemark's graphs already hold fp16 weights behind Casts: convert all the compute anyway
        m16 = float16.convert_float_to_float16(m, keep_io_types=True, check_fp16_ready=False)
        onnx.save(m16, out)
    except Exception as e:  # noqa: BLE001 - report, do not stop the other measurements
        print(f"(fp16 conversion failed: {type(e).__name__}: {str(e).splitlines()[0]})")
        return ""
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="300w=PATH: its test split (the common subset)")
    ap.add_argument("--models", default="direct,hybrid")
    ap.add_argument("--faces", type=int, default=200, help="test faces for the accuracy column")
    a = ap.parse_args()
    samples = common_subset(load_all([a.data]))[: a.faces]
    calib_samples = [s for s in load_all([a.data]) if s.split == "train"][:64]
    tmp = tempfile.mkdtemp(prefix="facemark-fast-")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"{os.cpu_count()} cores ({cpu}), onnxruntime {ort.__version__}; medians of 300 single-face calls; "
          f"NME on {len(samples)} 300-W common-subset faces cropped from their labels (model alone)\n")
    print("| model | stage / variant | ms per face | NME % |")
    print("|---|---|--:|--:|")
    for name in a.models.split(","):
        m = OnnxModel(name)
        size = m.size
        crops, mats = crops_for(samples, size)
        image = cv2.imread(str(samples[0].image))
        one = np.empty((1, size, size, 3), np.uint8)
        t_warp = ms(lambda: align.warp(image, mats[0], size, out=one[0]))
        inv = align.invert(mats[0])
        canon = m(crops[:1])[0]
        t_back = ms(lambda: align.apply(inv, canon * size - 0.5))
        print(f"| {name} | crop warp (warpAffine into the batch) | {t_warp:.3f} | |")
        print(f"| {name} | map back to the image | {t_back:.3f} | |")
        variants = [("fp32, default threads (shipped)", str(m.path), None)]
        variants.append(("fp32, 1 intra-op thread", str(m.path), 1))
        calib, _ = crops_for(calib_samples, size)
        q = int8_model(str(m.path), calib, os.path.join(tmp, f"{name}.int8.onnx"))
        variants.append(("static int8 (QDQ, per-channel), default threads", q, None))
        variants.append(("static int8, 1 thread", q, 1))
        h = fp16_model(str(m.path), os.path.join(tmp, f"{name}.fp16.onnx"))
        if h:
            variants.append(("fp16 compute", h, None))
        for label, path, threads in variants:
            try:
                sess = session(path, threads)
            except Exception as e:  # noqa: BLE001 - e.g. a kernel missing for fp16 on this CPU
                print(f"| {name} | session run: {label} | cannot run ({type(e).__name__}) | |")
                continue
            inp = sess.get_inputs()[0].name
            run = lambda x, sess=sess, inp=inp: sess.run(None, {inp: x})[0]  # noqa: E731
            t = ms(lambda: run(crops[:1]))
            print(f"| {name} | session run: {label} | {t:.3f} | {nme(run, crops, mats, samples, size):.3f} |")


if __name__ == "__main__":
    main()

"""Single process, no Ray: the same 100 images through rows_for_bytes, batches of 16, one onnxruntime thread for the landmark model."""
import argparse, glob, sys, time
from facemark.batch import rows_for_bytes
from facemark.landmarker import FaceLandmarker
ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("model", help="hourglass, direct, hybrid or a model file")
ap.add_argument("--images", default="/tmp/raybench/images100", help="the folder scripts/ray_bench.py MODEL 1 100 makes")
args = ap.parse_args()
model = args.model
files = sorted(glob.glob(f"{args.images}/*.jpg"))
if not files:
    sys.exit(f"no .jpg in {args.images}: run python scripts/ray_bench.py {model} 1 100 first, which makes them")
t0 = time.perf_counter()
fl = FaceLandmarker(model=model, threads=1)
t1 = time.perf_counter()
rows = []
for i in range(0, len(files), 16):
    rows += rows_for_bytes(fl, [(f, open(f, "rb").read()) for f in files[i:i + 16]])
t2 = time.perf_counter()
print(f"model={model} single process: load {t1-t0:.1f} s, {len(rows)} images in {t2-t1:.1f} s = {len(rows)/(t2-t1):.2f} images/s")

"""Single process, no Ray: the same 100 images through rows_for_bytes, batches of 16, one onnxruntime thread for the landmark model."""
import glob, sys, time
from facemark.batch import rows_for_bytes
from facemark.landmarker import FaceLandmarker
model = sys.argv[1]
t0 = time.perf_counter()
fl = FaceLandmarker(model=model, threads=1)
t1 = time.perf_counter()
files = sorted(glob.glob("/tmp/raybench/images100/*.jpg"))
rows = []
for i in range(0, len(files), 16):
    rows += rows_for_bytes(fl, [(f, open(f, "rb").read()) for f in files[i:i + 16]])
t2 = time.perf_counter()
print(f"model={model} single process: load {t1-t0:.1f} s, {len(rows)} images in {t2-t1:.1f} s = {len(rows)/(t2-t1):.2f} images/s")

"""Ray throughput and actor memory: python scripts/ray_bench.py MODEL ACTORS N (images in /tmp/raybench)."""

import argparse, glob, os, sys, threading, time, shutil
import cv2, ray
from facemark.cluster import run_ray

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("model", help="hourglass, direct, hybrid or a model file")
ap.add_argument("actors", type=int, help="Ray actors")
ap.add_argument("n", type=int, help="images (made once in /tmp/raybench/imagesN from examples/astronaut.jpg)")
args = ap.parse_args()
model, actors, n = args.model, args.actors, args.n
src = f"/tmp/raybench/images{n}"
if not os.path.isdir(src):
    os.makedirs(src)
    im = cv2.imread(str(__import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"))  # 512x512, one face
    for i in range(n):
        cv2.imwrite(f"{src}/{i:04d}.jpg", im[:, ::-1] if i % 2 else im)
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
ray.data.DataContext.get_current().enable_progress_bars = False
peak, idle, pss, stop = {}, {}, {}, False
def poll():
    while not stop:
        for st in glob.glob("/proc/[0-9]*/status"):
            try:
                pid = st.split("/")[2]
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
                kb = int([l for l in open(st) if l.startswith("VmHWM")][0].split()[1])
            except (OSError, IndexError):
                continue
            if "Landmarks" in cmd:
                peak[pid] = max(peak.get(pid, 0), kb)
                try:
                    pss[pid] = int([l for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Pss:")][0].split()[1])
                except (OSError, IndexError):
                    pass
            elif cmd.startswith("ray::IDLE"):
                idle[pid] = kb
        time.sleep(0.2)
t = threading.Thread(target=poll, daemon=True); t.start()
out = f"/tmp/raybench/out-{model}-{actors}"
shutil.rmtree(out, ignore_errors=True)
s = run_ray([src], out, model=model, actors=actors, batch_size=16, log=lambda m: None)
stop = True; t.join()
print(f"model={model} actors={actors} images={s['images']} faces={s['faces']} seconds={s['seconds']:.1f} "
      f"images/s={s['images']/s['seconds']:.2f} actor peak RSS MiB={[round(v/1024) for v in peak.values()]} "
      f"actor last PSS MiB={[round(v/1024) for v in pss.values()]} idle worker RSS MiB={[round(v/1024) for v in idle.values()]}")
ray.shutdown()

"""Big runs on one machine: resumable after a crash, sharded JSONL/Parquet outputs with one reader,
and worker processes that give the same results as one process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemark.results import read, validate
from tests.helpers import sigint_default

MODEL = ["--model", "direct"]


def fm(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facemark", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, face_image):
    """60 small one-face photos and one broken file, in two sub-folders."""
    root = tmp_path_factory.mktemp("scale")
    rng = np.random.default_rng(0)
    for i in range(60):
        side = int(rng.integers(90, 150))
        img = np.full((160, 200, 3), int(rng.integers(40, 200)), np.uint8)
        x, y = int(rng.integers(0, 200 - side)), int(rng.integers(0, 160 - side))
        img[y:y + side, x:x + side] = cv2.resize(face_image, (side, side), interpolation=cv2.INTER_AREA)
        sub = root / "in" / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"{i:03d}.jpg"), img)
    (root / "in" / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


def by_path(rows: list[dict]) -> dict[str, dict]:
    return {r["path"]: r for r in rows}


@pytest.fixture(scope="module")
def reference(folder):
    """An uninterrupted single-process run: the result every other run must match."""
    r = fm("detect", "in", "--out", "ref", "--batch", 4, "--workers", 1, *MODEL, cwd=folder)
    assert r.returncode == 1 and "broken.jpg" in r.stderr
    return folder / "ref"


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:  # the process has just gone
        return b""


def spawned_workers(pid: int) -> list[int]:
    """The worker processes (multiprocessing spawn children) of ``pid``, from /proc (Linux)."""
    kids = [int(x) for x in _read(f"/proc/{pid}/task/{pid}/children").split()]
    return [k for k in kids if b"spawn_main" in _read(f"/proc/{k}/cmdline")]


def maps(pid: int) -> bytes:
    return _read(f"/proc/{pid}/maps")


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(b")", 1)[-1].split()[0] != b"Z"


def kill_when(p: subprocess.Popen, ready, timeout: float = 120) -> None:
    t0 = time.time()
    while not ready():
        assert p.poll() is None, "the run ended before it could be killed"
        assert time.time() - t0 < timeout
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)  # a crash or a power cut: no cleanup at all
    p.wait()


def test_a_killed_run_resumes_with_the_same_command(folder, reference, fm_here):
    cmd = [sys.executable, "-m", "facemark", "detect", "in", "--out", "res", "--batch", "4", *MODEL]
    p = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(p, lambda: len(list((folder / "res").rglob("*.json"))) >= 12)
    before = {f: f.read_bytes() for f in (folder / "res").rglob("*.json")}
    assert 12 <= len(before) < 60
    r = fm_here("detect", "in", "--out", "res", "--batch", 4, *MODEL, cwd=folder)
    assert r.returncode == 1 and "broken.jpg" in r.stderr  # the bad file is tried again, and named
    done = int(r.stderr.split(" of 61 image(s) already done")[0].rsplit(" ", 1)[1])
    assert done == len(before)
    assert f"{60 - done} more done" in r.stderr
    assert all(f.read_bytes() == data for f, data in before.items())  # nothing redone, nothing touched
    ref = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*.json"))
    got = sorted(p.relative_to(folder / "res").as_posix() for p in (folder / "res").rglob("*.json"))
    assert got == ref and len(got) == 60
    for rel in ref:
        assert (folder / "res" / rel).read_bytes() == (reference / rel).read_bytes()
    # --redo recomputes everything
    r = fm_here("detect", "in", "--out", "res", "--batch", 4, "--redo", *MODEL, cwd=folder)
    assert "already done" not in r.stderr and "60 of 61 image(s) done" in r.stderr



def test_a_closed_terminal_stops_a_run_with_workers_as_ctrl_c_does(folder, reference, tmp_path, fm_here):
    """A closed terminal or a dropped ssh session sends SIGHUP to the whole process group, workers
    included: facemark died at once (exit -1, its temporary files left) and the workers with it.
    Now it is a polite stop: complete outputs kept, nothing hidden left, and the same command
    finishes the rest."""
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "facemark", "detect", "in", "--out", str(out), "--batch", "4", "--workers", "2", *MODEL]
    p = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=sigint_default)  # (its own process group, as a terminal's job)
    try:
        t0 = time.time()
        while len(list(out.rglob("*.json"))) < 8:
            assert p.poll() is None and time.time() - t0 < 120, "the run ended before the hangup"
            time.sleep(0.02)
        os.killpg(p.pid, signal.SIGHUP)
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 128 + signal.SIGHUP and "Traceback" not in stderr and "interrupted" in stderr, (p.returncode, stderr)
    assert not [q for q in out.rglob("*") if q.name.startswith(".")]
    r = fm_here("detect", "in", "--out", out, "--batch", 4, *MODEL, cwd=folder)
    assert "already done" in r.stderr, r.stderr
    ref = {q.relative_to(reference).as_posix(): q.read_bytes() for q in reference.rglob("*.json")}
    assert {q.relative_to(out).as_posix(): q.read_bytes() for q in out.rglob("*.json")} == ref

@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_killed_sharded_run_resumes_and_yields_each_image_once(folder, reference, fmt, fm_here):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = folder / f"shards-{fmt}"
    cmd = [sys.executable, "-m", "facemark", "detect", "in", "--out", str(out), "--format", fmt, "--shard-size", "8",
           "--batch", "4", *MODEL]
    p = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(p, lambda: len(list(out.glob(f"part-*.{fmt}"))) >= 2)
    r = fm_here(*cmd[3:], cwd=folder)
    assert r.returncode == 1, r.stderr
    rows = read(out)
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) == 61  # every image exactly once, the broken one as an error row
    errors = [row for row in rows if row["error"]]
    assert len(errors) == 1 and errors[0]["path"].endswith("broken.jpg")
    # (its error names the image as its path does, absolute, as --ray's rows do; not as typed: in/broken.jpg)
    assert errors[0]["error"].startswith(errors[0]["path"] + " "), errors[0]
    ref = by_path(read(reference))
    for row in rows:
        if row["error"]:
            continue
        want = ref[row["path"]]
        assert (row["width"], row["height"], row["model"]) == (want["width"], want["height"], want["model"])
        assert np.allclose([f["landmarks"] for f in row["faces"]], [f["landmarks"] for f in want["faces"]], atol=1e-6)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries: the rerun removed the killed run's


def test_auto_workers_one_per_core_when_there_is_enough_work(monkeypatch):
    from facemark import workers

    monkeypatch.setattr(workers, "cpu_cores", lambda: 4)
    monkeypatch.setattr(workers, "available_memory", lambda: 64 * 2**30)
    assert workers.auto_workers(1000) == 4
    assert workers.auto_workers(150) == 2  # 64+ images per worker, or its start-up costs more than it gives
    assert workers.auto_workers(63) == 1
    monkeypatch.setattr(workers, "cpu_cores", lambda: 64)
    assert workers.auto_workers(10**6) == workers.AUTO_WORKERS["cpu"].most == 16  # (measured up to 16 cores)


def test_chunks_shrink_towards_the_end_so_no_worker_waits_long_for_another():
    """A worker holds two chunks ahead: the last ones must be small, or one core idles at the end."""
    from facemark.workers import chunk_sizes

    for images, batch_images, workers in ((300, 16, 2), (10**5, 16, 4), (1000, 32, 16), (40, 16, 2), (5, 16, 2)):
        sizes = chunk_sizes(images, batch_images, workers)
        assert sum(sizes) == images and all(1 <= n <= batch_images for n in sizes)
        assert sizes == sorted(sizes, reverse=True)
        if images >= 4 * workers * batch_images:
            assert sizes[0] == batch_images  # (the model's batch while there is plenty left)
        # what the others may still hold when one runs out: two chunks each, a small share of a chunk
        assert sum(sizes[-2 * workers:]) <= max(2 * workers, batch_images // 2)
    assert chunk_sizes(300, 16, 1) == [16] * 18 + [12]  # one worker: nothing waits on it


def test_a_chunk_of_big_images_is_cut_where_their_pixels_pass_the_batch_budget(monkeypatch, tmp_path, face_image):
    """16 photos of 12000x9000 px decoded were 5.2 GB a chunk (and the reader's next chunk as much
    again): a chunk is cut into batches once its decoded images hold ``BATCH_BYTES``, in one
    process and in each worker's, and each batch is written before the next is read."""
    from facemark import workers
    from facemark.batch import Job, detect_files, work_on_chunk
    from facemark.inputs import InputImage
    from facemark.landmarker import FaceLandmarker

    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        cv2.imwrite(str(src / f"{i}.jpg"), face_image)
    fl = FaceLandmarker(model="direct")
    batches = []
    real = fl.landmarks_for
    monkeypatch.setattr(fl, "landmarks_for", lambda images, dets: batches.append(len(images)) or real(images, dets))
    assert detect_files([str(src)], fl, out_dir=tmp_path / "whole", log=None).written == 5
    assert batches == [5]
    monkeypatch.setattr(FaceLandmarker, "BATCH_BYTES", 2 * face_image.nbytes)  # two images a batch
    batches.clear()
    s = detect_files([str(src)], fl, out_dir=tmp_path / "cut", log=None)
    assert s.written == 5 and batches == [2, 2, 1]
    assert read(tmp_path / "cut") == read(tmp_path / "whole")
    job = Job(tmp_path / "w", False, "json", None, "contours", True, True, frozenset())
    chunk = [(k, InputImage(src / f"{k}.jpg", src), f"{k}.jpg") for k in range(5)]
    batches.clear()
    outcomes = work_on_chunk(job, fl, chunk)
    assert [o.k for o in outcomes] == list(range(5)) and all(o.ok for o in outcomes) and batches == [2, 2, 1]


def test_a_run_that_renames_earlier_outputs_says_so(tmp_path, face_image):
    """``detect a --out o`` then ``detect a b --out o``: the common folder moves up, ``o/x.jpg.json``
    becomes ``o/a/x.jpg.json``, and a's images were done again in silence. A rerun with the same
    inputs, or another folder's images into the same --out, says nothing."""
    from facemark.batch import detect_files
    from facemark.landmarker import FaceLandmarker

    for d, n in (("a", "x.jpg"), ("b", "y.jpg"), ("c", "z.jpg")):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / n), face_image)
    fl, out = FaceLandmarker(model="direct"), tmp_path / "o"
    said: list[str] = []
    detect_files([str(tmp_path / "a")], fl, out_dir=out, log=said.append)
    detect_files([str(tmp_path / "c")], fl, out_dir=out, log=said.append)  # (other images: not this note's case)
    detect_files([str(tmp_path / "a")], fl, out_dir=out, log=said.append)
    assert said == []
    s = detect_files([str(tmp_path / "a"), str(tmp_path / "b")], fl, out_dir=out, log=said.append)
    assert s.written == 2 and len(said) == 1, said
    assert said[0].startswith(f"note: {out / 'x.jpg.json'} holds {tmp_path / 'a' / 'x.jpg'}'s result from a run with "
                              f"other inputs") and f"again as {out / 'a' / 'x.jpg.json'}" in said[0]


def test_auto_workers_fit_in_memory(monkeypatch):
    """A container with 16 cores and 2 GiB free gets the workers that fit, not 16 that swap or get killed."""
    from facemark import workers

    monkeypatch.setattr(workers, "cpu_cores", lambda: 16)
    monkeypatch.setattr(workers, "available_memory", lambda: 3 * workers.AUTO_WORKERS["cpu"].memory + 1)
    assert workers.auto_workers(10**5) == 3
    monkeypatch.setattr(workers, "available_memory", lambda: 100 * 2**20)
    assert workers.auto_workers(10**5) == 1
    monkeypatch.setattr(workers, "available_memory", lambda: None)  # (unknown: the cores decide)
    assert workers.auto_workers(10**5) == 16


def test_auto_workers_on_cuda_share_the_cpu_detector(monkeypatch):
    """With the detector on the CPU (onnxruntime without CUDA), one CUDA process was held back by
    it: auto gives CUDA workers the cores too, once each has enough images to pay for its start;
    with onnxruntime's CUDA the GPU does both models, in one process."""
    from facemark import runtime, workers

    monkeypatch.setattr(workers, "cpu_cores", lambda: 16)
    monkeypatch.setattr(workers, "available_memory", lambda: 128 * 2**30)
    monkeypatch.setattr(runtime, "available_providers", lambda: ["CPUExecutionProvider"])
    assert workers.auto_workers(3072, device="cuda") == 8
    assert workers.auto_workers(3072, device="cuda:1") == 8
    assert workers.auto_workers(400, device="cuda") == 2
    assert workers.auto_workers(191, device="cuda") == 1
    monkeypatch.setattr(workers, "available_memory", lambda: 5 * 2**30)
    assert workers.auto_workers(3072, device="cuda") == 2
    monkeypatch.setattr(runtime, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert workers.auto_workers(3072, device="cuda") == 1
    assert workers.auto_workers(3072, device="cuda", detector="yunet:y.onnx") == 2  # (YuNet: OpenCV, on the CPU)
    monkeypatch.setattr(runtime, "available_providers", lambda: ["CPUExecutionProvider"])
    assert workers.auto_workers(3072, device="cuda", detector="none") == 1  # (boxes given: no detector to share)
    assert workers.auto_workers(3072) == 10  # (5 GiB: the CPU is the CPU wherever onnxruntime has CUDA)


def test_available_memory_reads_the_kernel_and_the_container(tmp_path):
    from facemark.workers import available_memory

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text("MemTotal:  32000000 kB\nMemFree:  1000 kB\nMemAvailable:  8000000 kB\n")
    assert available_memory(str(tmp_path)) == 8000000 * 1024
    cg = tmp_path / "sys" / "fs" / "cgroup"
    cg.mkdir(parents=True)
    (cg / "memory.max").write_text("max\n")
    assert available_memory(str(tmp_path)) == 8000000 * 1024  # no container limit
    (cg / "memory.max").write_text(f"{4 * 2**30}\n")
    (cg / "memory.current").write_text(f"{2**30}\n")
    assert available_memory(str(tmp_path)) == 3 * 2**30  # the container's limit, less what it uses
    (cg / "memory.current").write_text(f"{int(3.75 * 2**30)}\n")  # mostly file cache: images read before
    (cg / "memory.stat").write_text(f"anon 100\nfile {3 * 2**30}\nactive_file 5\ninactive_file {int(2.5 * 2**30)}\n")
    assert available_memory(str(tmp_path)) == int(2.75 * 2**30)  # (the cache the kernel gives back is no use)
    (cg / "memory.max").write_text(f"{64 * 2**30}\n")
    assert available_memory(str(tmp_path)) == 8000000 * 1024  # (the smaller of the machine's and the container's)
    (cg / "memory.stat").unlink()
    (cg / "memory.max").unlink()
    v1 = cg / "memory"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("0")
    assert available_memory(str(tmp_path)) == 8000000 * 1024
    (v1 / "memory.limit_in_bytes").write_text(str(2**30))
    (v1 / "memory.usage_in_bytes").write_text(str(2**29))
    assert available_memory(str(tmp_path)) == 2**29
    (v1 / "memory.stat").write_text(f"cache 9\ninactive_file 1\ntotal_inactive_file {2**28}\n")
    assert available_memory(str(tmp_path)) == 2**29 + 2**28
    (v1 / "memory.stat").write_text(f"total_inactive_file {2**31}\n")  # (counted apart from usage: never over the limit)
    assert available_memory(str(tmp_path)) == 2**30
    assert available_memory(str(tmp_path / "nowhere")) is None


def test_auto_workers_are_used_and_match_one_process(folder, reference, monkeypatch, tmp_path):
    from facemark import batch, workers
    from facemark.landmarker import FaceLandmarker

    used = []
    real = batch.run_workers
    monkeypatch.setattr(batch, "run_workers", lambda spec, job, work, chunks, n, report, **kw: (
        used.append(n), real(spec, job, work, chunks, n, report, **kw)))
    monkeypatch.setattr(workers, "cpu_cores", lambda: 2)
    monkeypatch.setattr(workers, "available_memory", lambda: None)  # (this machine's free memory does not decide)
    monkeypatch.setitem(workers.AUTO_WORKERS, "cpu", workers.AUTO_WORKERS["cpu"]._replace(min_images=16))  # 61 images: two
    monkeypatch.chdir(folder)  # the reference ran here on "in": the same paths in the JSON
    lines = []
    s = batch.detect_files(["in"], FaceLandmarker(model="direct"), out_dir=tmp_path / "auto", workers="auto",
                           log=lines.append)
    assert used == [2] and s.written == 60 and s.failures == 1
    assert sum("broken.jpg" in ln for ln in lines) == 1  # the bad file, named once by the worker that met it
    ref, got = by_path(read(reference)), by_path(read(tmp_path / "auto"))
    assert set(got) == set(ref) and len(got) == 60
    for path, want in ref.items():
        assert len(got[path]["faces"]) == len(want["faces"])
        assert np.allclose([f["landmarks"] for f in got[path]["faces"]], [f["landmarks"] for f in want["faces"]], atol=0.02)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_workers_die_with_a_killed_main_process(tmp_path, face_image):
    """Workers busy with slow images (large, small faces asked for) when the main process is
    killed must stop at once, not finish their images and write behind the next run's back."""
    (tmp_path / "big").mkdir()
    img = cv2.resize(face_image, (3000, 2000))
    for i in range(8):
        cv2.imwrite(str(tmp_path / "big" / f"{i}.jpg"), img)
    cmd = [sys.executable, "-m", "facemark", "detect", "big", "--out", "out", "--workers", "2", "--min-face", "20", *MODEL]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: list[int] = []
    since: list[float] = []

    def ready() -> bool:  # the worker process (--workers 2: it and this one) has loaded its models, and is into its images
        seen[:] = spawned_workers(p.pid)
        if len(seen) == 1 and not since and all(b"onnxruntime" in maps(w) for w in seen):
            since.append(time.time())
        return bool(since) and time.time() - since[0] > 0.5

    kill_when(p, ready)
    written = len(list((tmp_path / "out").rglob("*.json")))
    time.sleep(1.0)
    left = [pid for pid in seen if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []  # no worker outlived its main process
    assert len(list((tmp_path / "out").rglob("*.json"))) == written  # nothing written after the kill
    assert b"leaked semaphore" not in p.stderr.read()


def test_a_killed_run_left_unreaped_counts_as_dead(tmp_path):
    """A run killed along with its parent stays a zombie until init reaps it; its temp file is
    still a dead run's (kill(pid, 0) finds a zombie, so the next run kept the file)."""
    from facemark.imageio import remove_stale_temps

    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc here")
    child = subprocess.Popen([sys.executable, "-c", "from facemark.imageio import make_temp; print(make_temp('.')[1])"],
                             cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    left = tmp_path / Path(child.stdout.readline().strip()).name
    child.stdout.close()
    for _ in range(500):  # (exited, not yet waited for: a zombie)
        if Path(f"/proc/{child.pid}/stat").read_bytes().rsplit(b")", 1)[1][1:2] == b"Z":
            break
        time.sleep(0.01)
    try:
        assert left.exists()
        assert remove_stale_temps(tmp_path) == 1 and not left.exists()
    finally:
        child.wait()


def test_a_rerun_removes_only_the_temporaries_of_dead_processes(tmp_path, face_image):
    from facemark.imageio import make_temp, remove_stale_temps

    dead = subprocess.Popen([sys.executable, "-c", "from facemark.imageio import make_temp; print(make_temp('.')[1])"],
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    left = Path(tmp_path / Path(dead.communicate()[0].strip()).name)  # a killed run's half-written file
    assert left.exists()
    live = Path(make_temp(tmp_path)[1])  # this (live) process's file, still being written
    other = tmp_path / ".fm-zzzzzzzzzz-1-abc.tmp"  # another machine's, on a shared folder
    other.write_bytes(b"x")
    huge = tmp_path / (left.name.split("-")[0] + "-" + left.name.split("-")[1] + "-99999999999999999999-x.tmp")
    huge.write_bytes(b"x")  # not a pid: left alone, and no crash
    assert remove_stale_temps(tmp_path) == 1
    assert not left.exists() and live.exists() and other.exists() and huge.exists()
    # and a run does it on its own, in the folders it writes to
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.jpg"), face_image)
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / left.name
    stale.write_bytes(b"half")
    r = fm("detect", "in", "--out", "out", *MODEL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and (tmp_path / "out" / "a.jpg.json").exists()




@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_a_killed_worker_stops_the_run_with_one_line_and_a_rerun_finishes(folder, reference):
    """The out-of-memory killer takes a worker: the run must not hang, and must say what to do."""
    cmd = [sys.executable, "-m", "facemark", "detect", "in", "--out", "wk", "--workers", "2", "--batch", "1", *MODEL]
    p = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_default)
    t0 = time.time()
    while not (len(spawned_workers(p.pid)) == 1 and len(list((folder / "wk").rglob("*.json"))) >= 4):
        assert p.poll() is None and time.time() - t0 < 120
        time.sleep(0.02)
    victims = spawned_workers(p.pid)
    assert victims
    os.kill(victims[0], signal.SIGKILL)
    _, stderr = p.communicate(timeout=60)  # no hang
    assert p.returncode == 1, stderr
    assert "worker process ended unexpectedly" in stderr and "Traceback" not in stderr
    r = fm("detect", "in", "--out", "wk", "--workers", "2", "--batch", "1", *MODEL, cwd=folder)
    assert r.returncode == 1 and "60 of 61" not in r.stderr  # some were done before
    ref, got = by_path(read(reference)), by_path(read(folder / "wk"))
    assert set(got) == set(ref) and len(got) == 60
    for path, want in ref.items():
        assert np.allclose([f["landmarks"] for f in got[path]["faces"]], [f["landmarks"] for f in want["faces"]], atol=0.02)


def stacks_of(p: subprocess.Popen, workers: list[int]) -> str:
    """Why a run did not stop: its threads' stacks (faulthandler, on SIGABRT), its signal state
    and what its workers and other children were doing."""
    status = _read(f"/proc/{p.pid}/status").decode()
    kids = [int(x) for x in _read(f"/proc/{p.pid}/task/{p.pid}/children").split()]
    children = [f"{k} {_read(f'/proc/{k}/stat').decode().split(') ')[-1][:1]} "
                f"{_read(f'/proc/{k}/cmdline').decode().replace(chr(0), ' ')[:90]}" for k in kids + workers]
    signals = [line for line in status.splitlines() if line.startswith(("State", "Sig", "Shd"))]
    p.send_signal(signal.SIGABRT)
    try:
        _, stderr = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        _, stderr = p.communicate()
    return "\n".join(["the run did not stop within 30 s of Ctrl-C", *signals, "children:", *children, stderr])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_ctrl_c_stops_even_a_frozen_worker(folder):
    # -X faulthandler: if the run hangs, SIGABRT makes it print every thread's stack (see stacks_of)
    cmd = [sys.executable, "-X", "faulthandler", "-m", "facemark", "detect", "in", "--out", "frozen", "--workers", "2",
           "--batch", "1", *MODEL]
    p = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_default)
    t0 = time.time()
    while not (len(spawned_workers(p.pid)) == 1 and any((folder / "frozen").rglob("*.json"))):
        assert p.poll() is None and time.time() - t0 < 120
        time.sleep(0.02)
    frozen = spawned_workers(p.pid)
    os.kill(frozen[0], signal.SIGSTOP)
    p.send_signal(signal.SIGINT)
    try:
        try:
            _, stderr = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(stacks_of(p, frozen))
        assert p.returncode == 130 and stderr.strip().splitlines() == [
            "interrupted: outputs written so far are complete; the same command continues"]
        time.sleep(0.5)
        assert [pid for pid in frozen if alive(pid)] == []
    finally:  # a failed run must not leave a stopped worker behind
        for pid in frozen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_workers_still_starting_die_with_a_killed_main_process(folder):
    """Killed while its workers are still importing and loading models: none may live on."""
    cmd = [sys.executable, "-m", "facemark", "detect", "in", "--out", "early", "--workers", "2", *MODEL]
    p = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while len(spawned_workers(p.pid)) < 1:  # (--workers 2: this process and one more)
        assert p.poll() is None and time.time() - t0 < 60
        time.sleep(0.005)
    time.sleep(0.1)
    seen = spawned_workers(p.pid)
    p.kill()
    p.wait()
    time.sleep(1.0)
    assert [pid for pid in seen if alive(pid)] == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_a_ctrl_c_reaching_workers_while_they_start_is_ignored(folder, tmp_path):
    """A Ctrl-C to the terminal reaches the workers too. One that comes while a worker's Python is
    still starting (here: held in its start-up by a sitecustomize) must not kill it with a
    traceback of its half-started interpreter: the main process decides (it stops the run, or,
    as here, where only the workers got the signal, goes on)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys, time\n"
        "if '--multiprocessing-fork' in sys.argv:\n"
        "    time.sleep(3)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])}
    cmd = [sys.executable, "-m", "facemark", "detect", "in/b", "--out", str(tmp_path / "o"), "--workers", "2",
           "--batch", "3", *MODEL]
    p = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while len(spawned_workers(p.pid)) < 1:  # (--workers 2: this process and one more)
            assert p.poll() is None and time.time() - t0 < 60
            time.sleep(0.01)
        time.sleep(0.5)  # (well inside their three seconds of start-up)
        for pid in spawned_workers(p.pid):
            os.kill(pid, signal.SIGINT)
        err = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            p.kill()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert p.returncode == 0, err
    assert len(list((tmp_path / "o").glob("*.json"))) == 30


def test_workers_option_is_checked(folder, fm_here):
    for bad in ("0", "many", "-2"):
        r = fm_here("detect", "in", "--out", "never", "--workers", bad, *MODEL, cwd=folder)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--workers" in r.stderr
    assert not (folder / "never").exists()


def test_stdout_keeps_input_order_with_workers(folder, tmp_path):
    r = fm("detect", "in/b", "--workers", 2, "--batch", 3, *MODEL, cwd=folder)
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    names = sorted(p.name for p in (folder / "in" / "b").glob("*.jpg"))
    assert [Path(d["image"]).name for d in docs] == names
    assert all(validate(d) == [] for d in docs)
    (tmp_path / "stdout.json").write_text(r.stdout)  # `facemark detect A B > F`: read() takes it too
    assert [Path(row["path"]).name for row in read(tmp_path / "stdout.json")] == names


def test_read_loads_every_output_format(folder, reference):
    rows = read(reference)
    assert len(rows) == 60 and all(set(r) == {"path", "width", "height", "model", "error", "faces"} for r in rows)
    one = next(reference.rglob("*.json"))
    assert len(read(one)) == 1


def test_shard_formats_need_an_output_folder(folder, fm_here):
    r = fm_here("detect", "in", "--format", "jsonl", *MODEL, cwd=folder)
    assert r.returncode == 2 and "give --out DIR" in r.stderr
    r = fm_here("detect", "in", "--out", "x", "--format", "csv", *MODEL, cwd=folder)
    assert r.returncode == 2 and "--format must be" in r.stderr


def test_no_worker_processes_falls_back_to_one(folder, monkeypatch, reference, tmp_path):
    """Where processes cannot be started (sandboxes without /dev/shm), a run still finishes."""
    import concurrent.futures

    from facemark.batch import detect_files
    from facemark.landmarker import FaceLandmarker

    def no_pool(*a, **k):  # what the process pool's semaphores raise without /dev/shm
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    monkeypatch.chdir(folder)  # the reference ran here on "in": the same paths in the JSON
    lines: list[str] = []
    s = detect_files(["in"], FaceLandmarker(model="direct"), out_dir=tmp_path / "o", workers=2,
                     log=lines.append)
    assert s.written == 60 and s.failures == 1
    assert any("running in this one" in ln for ln in lines)
    for rel in (p.relative_to(reference) for p in reference.rglob("*.json")):
        assert (tmp_path / "o" / rel).read_bytes() == (reference / rel).read_bytes()


def test_a_worker_that_cannot_load_its_models_says_why():
    from facemark.batch import Job, work_on_chunk
    from facemark.workers import WorkerDied, run_workers

    chunks = [[(0, None, None)], [(1, None, None)]]  # never reached: the models fail first
    with pytest.raises(WorkerDied) as e:
        run_workers({"model": "/nonexistent/model.onnx"}, Job(None, False, "stdout", None), work_on_chunk, chunks, 2,
                    lambda outcomes, n: None)
    assert "could not load the models" in str(e.value) and "model file not found" in str(e.value)


def _opencv_threads(job, fl, chunk) -> list:
    import cv2

    return [cv2.getNumThreads()] * len(chunk)


def test_each_worker_gives_opencv_only_its_share_of_the_cores(monkeypatch):
    """A worker's OpenCV (resizes, warps) runs as many threads as its onnxruntime sessions, not one
    per core of the machine: N workers would otherwise each start a pool as big as the machine."""
    from facemark import workers
    from facemark.batch import Job

    monkeypatch.setattr(workers, "cpu_cores", lambda: 14)  # (read in this process only): 7 threads each
    seen = []
    workers.run_workers({"model": "direct"}, Job(None, False, "stdout", None), _opencv_threads,
                        [[(0, None, None)], [(1, None, None)]], 2, lambda outcomes, n: seen.extend(outcomes))
    assert seen == [7, 7]  # (OpenCV's own default is the machine's cores)


_WORKED_HERE: list[int] = []  # chunks this process has worked on (_who)


def _who(job, fl, chunk) -> list:
    """Which process took each image of the chunk; a worker process is slow (its start, then 0.3 s a chunk)."""
    if os.getpid() != job:
        time.sleep(0.3)
    else:
        _WORKED_HERE.append(chunk[0][0])
    return [(os.getpid(), k) for k, _, _ in chunk]


def _fails_here(job, fl, chunk) -> list:
    if os.getpid() == job:
        raise ValueError("a bug in the work")
    return [(os.getpid(), k) for k, _, _ in chunk]


def _landmarker_for(workers: int):
    from facemark.landmarker import FaceLandmarker
    from facemark.workers import threads_each

    return FaceLandmarker(model="direct", threads=threads_each(workers))


def test_this_process_works_beside_the_worker_processes():
    """--workers 2 on 2 cores: one process more, and this one, which has its models loaded already,
    takes chunks as it gets free; outcomes still come back in input order."""
    from facemark.workers import run_workers

    chunks = [[(k, None, None)] for k in range(12)]
    got: list = []
    run_workers({"model": "direct"}, os.getpid(), _who, chunks, 2, lambda outcomes, n: got.extend(outcomes),
                local=_landmarker_for(2))
    assert [k for _, k in got] == list(range(12))
    pids = {pid for pid, _ in got}
    assert os.getpid() in pids and len(pids) == 2  # this process and one worker process
    assert spawned_workers(os.getpid()) == []  # stopped at the end


def test_this_process_runs_only_a_few_chunks_ahead_of_a_slow_worker():
    """Outcomes are reported in input order, so what this process does ahead of a worker's slow
    chunk is held in memory: a worker stuck for a while (its start, a huge image) must not let
    this process run through a million images' rows meanwhile."""
    from facemark.workers import run_workers

    chunks = [[(k, None, None)] for k in range(60)]
    ahead: list[int] = []
    reported: list = []

    def report(outcomes, n):
        ahead.append(len([k for k in _WORKED_HERE if k > outcomes[0][1]]))  # done here, beyond this chunk
        reported.extend(outcomes)

    _WORKED_HERE.clear()
    run_workers({"model": "direct"}, os.getpid(), _who, chunks, 2, report, local=_landmarker_for(2))
    assert [k for _, k in reported] == list(range(60))
    assert max(ahead) <= 6  # the window: 3 chunks per worker taken and not yet reported
    assert len(_WORKED_HERE) > 30  # (and this process did most of the work: the worker is slow)


def test_a_failure_in_this_process_s_share_stops_the_run_and_the_workers():
    from facemark.workers import run_workers

    chunks = [[(k, None, None)] for k in range(8)]
    with pytest.raises(ValueError, match="a bug in the work"):
        run_workers({"model": "direct"}, os.getpid(), _fails_here, chunks, 2, lambda outcomes, n: None,
                    local=_landmarker_for(2))
    assert spawned_workers(os.getpid()) == []


def test_workers_started_early_run_the_job_or_stop_unused(folder, reference, tmp_path):
    """The CLI starts its worker processes as soon as it knows the images, before its own models
    load; detect_files takes them over, and stops them, used or not."""
    from facemark import batch
    from facemark.landmarker import FaceLandmarker
    from facemark.workers import Workers

    started = Workers(1)
    assert len(spawned_workers(os.getpid())) == 1
    cwd = os.getcwd()
    os.chdir(folder)  # the reference ran here on "in": the same paths in the JSON
    try:
        s = batch.detect_files(["in"], _landmarker_for(2), out_dir=tmp_path / "early", workers=started, log=None)
        assert s.written == 60 and s.failures == 1
        assert spawned_workers(os.getpid()) == []
        for rel in (p.relative_to(reference) for p in reference.rglob("*.json")):
            assert (tmp_path / "early" / rel).read_bytes() == (reference / rel).read_bytes()
        again = Workers(1)  # a rerun with nothing left to do: they are not needed
        s = batch.detect_files(["in"], FaceLandmarker(model="direct"), out_dir=tmp_path / "early", workers=again, log=None)
        assert s.skipped == 60 and s.written == 0
        assert spawned_workers(os.getpid()) == []
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_an_input_changed_after_its_output_is_done_again(folder, tmp_path, fmt, fm_here):
    """Resume skips what is complete, but not an image replaced since its output was written."""
    import os
    import shutil

    src = tmp_path / "in"
    shutil.copytree(folder / "in" / "b", src)
    r = fm_here("detect", src, "--out", tmp_path / "o", "--format", fmt, *MODEL, cwd=folder)
    assert r.returncode == 0, r.stderr
    n = len(list(src.glob("*.jpg")))
    changed = sorted(src.glob("*.jpg"))[0]  # replaced at once, well within a second of its output,
    stale = changed.stat().st_mtime  # and with its old modification time put back (as `cp -p` does)
    changed.write_bytes(changed.read_bytes())
    os.utime(changed, (stale, stale))
    r = fm_here("detect", src, "--out", tmp_path / "o", "--format", fmt, *MODEL, cwd=folder)
    assert r.returncode == 0, r.stderr
    assert f"{n - 1} of {n} image(s) already done" in r.stderr and "1 more done" in r.stderr, r.stderr


def test_a_future_modification_time_does_not_count_on_windows_either(tmp_path, monkeypatch):
    """Windows' rule (the modification time, unless it lies in the future) was undone by taking
    the later of it and the file's own (same) times: archived images were redone on every resume."""
    from facemark import batch

    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    ahead = time.time() + 3 * 3600
    os.utime(f, (ahead, ahead))
    with monkeypatch.context() as m:  # (undone before any assertion: pytest's report makes paths too)
        m.setattr(batch.os, "name", "nt")
        stamp = batch._stamp(f)
    assert stamp == os.stat(f).st_ctime_ns < int(ahead * 1e9)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_link_pointed_at_another_image_is_done_again(tmp_path, face_image, fmt, fm_here):
    """The check followed the link to its target's times: pointed at an older photo, the link's
    output (of the first photo) was kept as done."""
    (tmp_path / "src").mkdir()
    first, older = tmp_path / "src" / "first.jpg", tmp_path / "src" / "older.jpg"
    for path, x in ((first, 20), (older, 70)):  # the face at another place
        img = np.full((160, 240, 3), 120, np.uint8)
        img[20:140, x:x + 120] = cv2.resize(face_image, (120, 120), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(path), img)
    os.utime(older, (time.time() - 3600,) * 2)
    (tmp_path / "in").mkdir()
    link = tmp_path / "in" / "photo.jpg"
    link.symlink_to(first)
    assert fm_here("detect", "in", "--out", "o", "--format", fmt, *MODEL, cwd=tmp_path).returncode == 0
    before = read(tmp_path / "o")[0]
    link.unlink()
    link.symlink_to(older)
    r = fm_here("detect", "in", "--out", "o", "--format", fmt, *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "1 of 1 image(s) done" in r.stderr and "already done" not in r.stderr, r.stderr
    after = read(tmp_path / "o")
    assert len(after) == 1 and after[0]["faces"][0]["box"] != before["faces"][0]["box"]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_an_input_dated_in_the_future_is_not_redone_on_every_resume(folder, tmp_path, fmt, fm_here):
    """Files unpacked from an archive made in another time zone can carry times hours ahead; once
    done they are done, not redone on each rerun."""
    import os
    import shutil

    src = tmp_path / "in"
    shutil.copytree(folder / "in" / "b", src)
    ahead = time.time() + 3 * 3600
    for f in src.glob("*.jpg"):
        os.utime(f, (ahead, ahead))
    n = len(list(src.glob("*.jpg")))
    r = fm_here("detect", src, "--out", tmp_path / "o", "--format", fmt, *MODEL, cwd=folder)
    assert r.returncode == 0 and f"{n} of {n} image(s) done" in r.stderr, r.stderr
    r = fm_here("detect", src, "--out", tmp_path / "o", "--format", fmt, *MODEL, cwd=folder)
    assert r.returncode == 0 and f"{n} of {n} image(s) already done" in r.stderr and "0 more done" in r.stderr, r.stderr


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
def test_a_fifo_with_an_outputs_name_in_out_is_never_opened(folder, tmp_path, fmt):
    """A named pipe in --out where a result or shard is looked for blocked the resume for ever
    (nobody writes to it): it is not opened. One in a result's place is another program's file,
    not overwritten; a shard-named one is not facemark's shard."""
    import shutil

    src = tmp_path / "in"
    shutil.copytree(folder / "in" / "b", src)
    n = len(list(src.glob("*.jpg")))
    run = [sys.executable, "-m", "facemark", "detect", str(src), "--out", str(tmp_path / "o"), "--format", fmt, *MODEL]
    assert subprocess.run(run, capture_output=True, timeout=300).returncode == 0
    if fmt == "json":
        taken = sorted((tmp_path / "o").glob("*.json"))[0]
        taken.unlink()
        os.mkfifo(taken)
    else:
        os.mkfifo(tmp_path / "o" / f"part-20000101T000000.000000-zzzz-00000.{fmt}")
    r = subprocess.run(run, capture_output=True, text=True, timeout=120)  # (it waited for ever)
    if fmt == "json":
        assert r.returncode == 1 and f"{n - 1} of {n} image(s) already done" in r.stderr, r.stderr
        assert "is not a facemark result" in r.stderr and str(taken.name) in r.stderr, r.stderr
    else:
        assert r.returncode == 0 and f"{n} of {n} image(s) already done" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_name_that_is_not_utf8_does_not_hide_the_file_its_escaped_spelling_names(tmp_path, face_image, fmt, fm_here):
    """caf<E9>.jpg (Latin-1) cannot be a shard row's path, so its error row spelled it caf\\xe9.jpg:
    a real file of that very name lost its good result to the error (the newest row wins), and was
    done again on every rerun."""
    src = tmp_path / "in"
    src.mkdir()
    data = cv2.imencode(".jpg", face_image)[1].tobytes()
    (src / "caf\\xe9.jpg").write_bytes(data)  # (a backslash, an x, an e, a 9)
    with open(os.fsencode(src) + b"/caf\xe9.jpg", "wb") as f:
        f.write(data)
    for run in range(2):
        r = fm_here("detect", src, "--out", tmp_path / "o", "--format", fmt, *MODEL, cwd=tmp_path)
        assert r.returncode == 1 and "no error row" in r.stderr, r.stderr
        assert ("1 more done" in r.stderr or "1 of 2 image(s) done" in r.stderr) if run == 0 else "0 more done" in r.stderr, r.stderr
    rows = read(tmp_path / "o")
    assert len(rows) == 1 and rows[0]["path"].endswith("caf\\xe9.jpg") and rows[0]["error"] is None, rows
    assert len(rows[0]["faces"]) == 1


def test_read_skips_json_lines_that_are_not_facemark_rows(reference, tmp_path):
    import shutil

    shutil.copytree(reference, tmp_path / "out")
    (tmp_path / "out" / "other.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "out" / "arrays.jsonl").write_text("[1, 2]\n")
    said = []
    assert len(read(tmp_path / "out", on_error=said.append)) == 60
    assert len(said) == 2 and all("not a facemark output" in s for s in said)
    with pytest.raises(ValueError, match="other.jsonl"):
        read(tmp_path / "out" / "other.jsonl")


def test_read_says_what_it_cannot_use_at_the_callers_line(tmp_path, face_image, fm_here):
    """An empty file named to read() gave [] without a word (in a folder it is said); a foreign
    Parquet file was "its lines are not facemark rows", a newer schema's document "not a
    facemark/v1 document"; and read's warnings pointed at facemark's own lines, not the caller's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="empty.jsonl holds no rows") as said:
        assert read(tmp_path / "empty.jsonl") == []
    assert said[0].filename == __file__
    pq.write_table(pa.table({"name": ["a"], "score": [1.0]}), tmp_path / "theirs.parquet")
    with pytest.raises(ValueError, match="its rows are not facemark rows"):
        read(tmp_path / "theirs.parquet")
    (tmp_path / "v2.json").write_text(json.dumps({"schema": "facemark/v2", "image": "a.jpg"}))
    with pytest.raises(ValueError, match="a facemark/v2 document: this facemark reads facemark/v1"):
        read(tmp_path / "v2.json")
    _photos(tmp_path / "in", face_image, 2, 4)
    assert fm_here("detect", "in", "--out", "o", "--format", "jsonl", *MODEL, cwd=tmp_path).returncode == 0
    shard = next((tmp_path / "o").glob("part-*.jsonl"))
    shard.write_bytes(shard.read_bytes() + b'{"cut short\n')
    with pytest.warns(RuntimeWarning, match="1 damaged line") as said:
        assert len(read(tmp_path / "o")) == 2
    assert said[0].filename == __file__


def test_read_checks_the_fields_of_rows_and_documents(tmp_path):
    """Rows edited or damaged outside facemark are said and skipped, not handed to the caller to
    fail on later (a 'faces' that is text, a face with 5 points, a width that is a string)."""
    from facemark.results import Face, document
    from facemark.shards import row

    face = Face(np.array([1.0, 2, 30, 40]), 0.9, np.zeros((98, 2)), np.zeros((68, 2)))
    good = row("a.jpg", 100, 80, "direct", [face])
    bad = [dict(good, path="b.jpg", faces="none"), dict(good, path="c.jpg", width="100"),
           dict(good, path="d.jpg", faces=[dict(face.to_dict(), landmarks=[[0, 0]] * 5)]),
           dict(good, path="g.jpg", faces=[dict(face.to_dict(), score=float("nan"))]),  # (JSON lets NaN through;
           dict(good, path="h.jpg", faces=[dict(face.to_dict(), box=[1, 2, float("inf"), 4])])]  # validate does not)
    shard = tmp_path / "part-x.jsonl"
    shard.write_text("".join(json.dumps(r) + "\n" for r in [good, *bad, row("e.png", None, None, "direct", error="cannot read")]))
    with pytest.warns(RuntimeWarning, match="5 malformed row"):
        rows = read(shard)
    assert [r["path"] for r in rows] == ["a.jpg", "e.png"]
    doc = document("f.jpg", 100, 80, "direct", [face])
    doc["faces"][0]["box"] = [1, 2, 3]
    (tmp_path / "f.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="f.json: a damaged facemark output.*box"):
        read(tmp_path / "f.json")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "f.jpg.json").write_text(json.dumps(doc))
    (folder / "g.jpg.json").write_text(json.dumps(document("g.jpg", 100, 80, "direct", [face])))
    (folder / "h.jpg.json").write_text(json.dumps(dict(document("h.jpg", 100, 80, "direct", [face]), faces="none")))
    with pytest.warns(RuntimeWarning, match="damaged facemark output") as said:  # documents are not dropped silently
        assert [r["path"] for r in read(folder)] == ["g.jpg"]
    assert len(said) == 2
    (tmp_path / "all_bad.jsonl").write_text(json.dumps(bad[0]) + "\n")
    with pytest.raises(ValueError, match="damaged facemark output .no usable row"):
        read(tmp_path / "all_bad.jsonl")


def test_the_same_files_spelled_another_way_are_the_same_images(folder, tmp_path, fm_here):
    """An absolute path, a relative one or a link to the folder: resume skips what a shard already
    holds, and a shard fed back as --boxes finds each image's entry."""
    import shutil

    src = tmp_path / "in"
    shutil.copytree(folder / "in" / "b", src)
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    n = len(list(src.glob("*.jpg")))
    r = fm_here("detect", "in", "--out", "o", "--format", "jsonl", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and f"{n} of {n} image(s) done" in r.stderr, r.stderr
    for spelling in (src, "link"):
        r = fm_here("detect", spelling, "--out", "o", "--format", "jsonl", *MODEL, cwd=tmp_path)
        assert r.returncode == 0 and f"facemark: {n} of {n} image(s) already done" in r.stderr, (spelling, r.stderr)
    assert len(read(tmp_path / "o")) == n
    shard = next((tmp_path / "o").glob("part-*.jsonl"))
    r = fm_here("detect", src, "--boxes", shard, *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and f"{n} of {n} image(s) done" in r.stderr, r.stderr


def test_boxes_of_another_file_with_the_same_relative_name_are_not_taken(tmp_path, face_image, fm_here):
    """The real-file match is for the image's own path, never for its output name resolved
    against whatever folder the command runs in."""
    for d in ("cwd", "other"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "x.jpg"), face_image)
    (tmp_path / "cwd" / "boxes.json").write_text(json.dumps({str(tmp_path / "cwd" / "x.jpg"): [[10, 10, 100, 100]]}))
    r = fm_here("detect", tmp_path / "other" / "x.jpg", "--boxes", "boxes.json", *MODEL, cwd=tmp_path / "cwd")
    assert r.returncode == 1 and "no entry in boxes.json" in r.stderr, r.stderr
    r = fm_here("detect", "x.jpg", "--boxes", "boxes.json", *MODEL, cwd=tmp_path / "cwd")
    assert r.returncode == 0, r.stderr


def test_read_gives_one_row_per_file_however_runs_spelled_it(folder, tmp_path, fm_here):
    """Two runs into one folder, one with a relative and one with an absolute path: one row per
    image, the newest (a retried image's old error row does not survive its good one)."""
    import shutil

    src = tmp_path / "in"
    shutil.copytree(folder / "in" / "b", src)
    assert fm_here("detect", "in", "--out", "o", "--format", "jsonl", *MODEL, cwd=tmp_path).returncode == 0
    time.sleep(1.1)  # (shards are dated to the second)
    assert fm_here("detect", src, "--out", "o", "--format", "parquet", "--redo", *MODEL, cwd=tmp_path).returncode == 0
    old = os.getcwd()
    os.chdir(tmp_path)  # relative rows are read from the folder the runs ran in
    try:
        rows = read("o")
    finally:
        os.chdir(old)
    n = len(list(src.glob("*.jpg")))
    assert len(rows) == n and all(os.path.isabs(r["path"]) for r in rows), sorted(r["path"] for r in rows)[:4]


def test_ray_shards_are_dated_by_their_names_too(tmp_path):
    """A copy rewrites file times; shards of a later run still win by the run start in their name."""
    from facemark.shards import row

    old, new = tmp_path / "ray-20260101T000000-aaaa-00000.jsonl", tmp_path / "ray-20260102T000000-bbbb-00000.jsonl"
    old.write_text(json.dumps(row("/data/a.jpg", 10, 10, "hourglass", [])) + "\n")
    new.write_text(json.dumps(row("/data/a.jpg", 10, 10, "direct", [])) + "\n")
    os.utime(new, (1e9, 1e9))  # the newer run's file copied first: the older file time
    assert [r["model"] for r in read(tmp_path)] == ["direct"]


def _photos(folder: Path, face_image, n: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng, out = np.random.default_rng(seed), []
    for i in range(n):
        img = np.full((160, 200, 3), int(rng.integers(40, 200)), np.uint8)
        img[20:140, 40:160] = cv2.resize(face_image, (120, 120), interpolation=cv2.INTER_AREA)
        out.append(folder / f"{i:02d}.jpg")
        cv2.imwrite(str(out[-1]), img)
    return out


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_an_input_replaced_while_the_run_goes_on_is_done_again(tmp_path, face_image, monkeypatch, fmt):
    """An image replaced after it was read but before its output was written (a folder still being
    filled): the output was dated when written (a shard: when the last row went in, minutes later),
    so the resumed run took it as newer than the input and kept the old image's points. A per-image
    output is now not written (that image fails, named); a shard's rows count from the run's start."""
    from facemark import batch
    from facemark.landmarker import FaceLandmarker

    photos = _photos(tmp_path / "in", face_image, 3, 0)
    time.sleep(0.1)  # (past the file system clock's tick: photos made just before the run count as newer)
    real, fl = batch.read_image, FaceLandmarker(model="direct")

    def read_then_replaced(path):
        image = real(path)
        if Path(path).name == "01.jpg":
            time.sleep(0.3)  # (past the file system clock's tick)
            Path(path).write_bytes(Path(path).read_bytes())  # replaced (here by the same bytes)
        return image

    monkeypatch.setattr(batch, "read_image", read_then_replaced)
    said = []
    s = batch.detect_files([str(tmp_path / "in")], fl, out_dir=tmp_path / "o", fmt=fmt, log=said.append)
    if fmt == "json":
        assert s.written == 2 and len(said) == 1 and "01.jpg" in said[0] and "changed while" in said[0], said
    else:
        assert s.written == 3, said
    monkeypatch.setattr(batch, "read_image", real)
    s = batch.detect_files([str(tmp_path / "in")], fl, out_dir=tmp_path / "o", fmt=fmt)
    assert (s.skipped, s.written) == (2, 1), (s.skipped, s.written)
    assert len(read(tmp_path / "o")) == 3 and photos


def test_two_folders_run_into_one_out_never_take_each_others_outputs(tmp_path, face_image, fm_here):
    """A/x.jpg and B/x.jpg (different photos) map to the same OUT/x.jpg.json. The second command
    took A's output as B's (skipped it: "already done") and replaced A's y.jpg with B's."""
    a = _photos(tmp_path / "A", face_image, 2, 1)
    _photos(tmp_path / "B", face_image, 2, 2)
    assert fm_here("detect", "A", "--out", "AB", *MODEL, cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "AB").iterdir()}
    r = fm_here("detect", "B", "--out", "AB", *MODEL, cwd=tmp_path)
    assert r.returncode == 1 and "already done" not in r.stderr, r.stderr
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 2 and all("holds the result of another image" in ln and "its own --out" in ln
                                     for ln in failed), r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "AB").iterdir()} == before  # A's outputs untouched
    assert sorted(r["path"] for r in read(tmp_path / "AB")) == sorted(str(tmp_path / "A" / p.name) for p in a)
    # From another folder (B typed as ".", or absolute), too: an output records its image's absolute path.
    for cwd, typed, out in ((tmp_path / "B", ".", "../AB"), (tmp_path / "B", str(tmp_path / "B"), str(tmp_path / "AB"))):
        r = fm_here("detect", typed, "--out", out, *MODEL, cwd=cwd)
        assert r.returncode == 1 and "already done" not in r.stderr and "another image" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "AB").iterdir()} == before
    again = fm_here("detect", "A", "--out", "AB", *MODEL, cwd=tmp_path)  # A's own rerun: all done
    assert again.returncode == 0 and "2 of 2 image(s) already done" in again.stderr, again.stderr
    assert "0 more done, 0 face(s) in those" in again.stderr  # (the faces of this run, not of the skipped)


def test_outputs_of_a_folder_moved_away_are_not_taken_by_another_with_the_same_names(tmp_path, face_image, fm_here):
    """A's outputs record A's paths. Once A was moved away (archived), B's files of the same names
    were "already done" with A's landmarks. Those outputs describe no file here any more: B's
    images are done, and their outputs replace A's."""
    _photos(tmp_path / "A", face_image, 2, 1)
    _photos(tmp_path / "B", face_image, 2, 2)
    assert fm_here("detect", "A", "--out", "o", *MODEL, cwd=tmp_path).returncode == 0
    (tmp_path / "archive").mkdir()
    (tmp_path / "A").rename(tmp_path / "archive" / "A")
    r = fm_here("detect", "B", "--out", "o", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "2 of 2 image(s) done" in r.stderr, r.stderr
    rows = read(tmp_path / "o")
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in (tmp_path / "B").iterdir())
    direct = fm_here("detect", "B", "--out", "o_b", *MODEL, cwd=tmp_path)
    assert direct.returncode == 0
    assert {row["path"]: row["faces"] for row in rows} == {row["path"]: row["faces"] for row in read(tmp_path / "o_b")}


def test_another_programs_file_at_a_drawings_name_is_never_replaced(tmp_path, face_image, fm_here):
    """A photo of the user's at photo.jpg.annotated.jpg (left out as an input, by its name) was
    replaced by the drawing without a word, though a file at the JSON's name was refused; so was
    one put there once the image had its JSON result. facemark's drawings carry a tag and are
    replaced on --redo (beside shards too), and so are empty leftovers; a file without the tag is
    refused, whatever lies beside it, and so is a folder."""
    photos = _photos(tmp_path / "in", face_image, 3, 5)
    theirs = tmp_path / "in" / f"{photos[0].name}.annotated.jpg"
    mine = cv2.imencode(".jpg", np.full((40, 60, 3), 90, np.uint8))[1].tobytes()
    theirs.write_bytes(mine)
    r = fm_here("detect", "in", "--out", "in", "--annotate", *MODEL, cwd=tmp_path)
    assert r.returncode == 1 and "2 of 3 image(s) done" in r.stderr, r.stderr
    assert f"{theirs.relative_to(tmp_path)} holds a file that is not one of facemark's drawings" in r.stderr, r.stderr
    assert theirs.read_bytes() == mine and not (tmp_path / "in" / f"{photos[0].name}.json").exists()
    assert fm_here("detect", "in", "--out", "in", *MODEL, cwd=tmp_path).returncode == 0  # (its JSON result now)
    r = fm_here("detect", "in", "--out", "in", "--annotate", *MODEL, cwd=tmp_path)
    assert r.returncode == 1 and "not one of facemark's drawings" in r.stderr and theirs.read_bytes() == mine, r.stderr
    ours = tmp_path / "in" / f"{photos[1].name}.annotated.jpg"
    (tmp_path / "p").mkdir()
    cv2.imwrite(str(tmp_path / "p" / "x.png"), cv2.imread(str(photos[2])))
    assert fm_here("detect", "p", "--out", "o", "--annotate", "--format", "jsonl", *MODEL, cwd=tmp_path).returncode == 0
    (png,) = (tmp_path / "o").rglob("*.annotated.png")
    for drawing, args in ((ours, ("in", "--out", "in")), (png, ("p", "--out", "o", "--format", "jsonl"))):
        before = drawing.stat().st_mtime_ns
        r = fm_here("detect", *args, "--annotate", "--redo", *MODEL, cwd=tmp_path)
        assert drawing.stat().st_mtime_ns > before and f"{drawing.relative_to(tmp_path)} " not in r.stderr, r.stderr
        untagged = cv2.imencode(drawing.suffix, cv2.imread(str(drawing)))[1].tobytes()  # (as drawn before the tag)
        drawing.write_bytes(untagged)
        r = fm_here("detect", *args, "--annotate", "--redo", *MODEL, cwd=tmp_path)
        assert "delete those to draw them again" in r.stderr and drawing.read_bytes() == untagged, r.stderr
        drawing.write_bytes(b"")  # (a power cut's leftover: drawn again)
        r = fm_here("detect", *args, "--annotate", "--redo", *MODEL, cwd=tmp_path)
        assert f"{drawing.relative_to(tmp_path)} " not in r.stderr and drawing.stat().st_size > 0, r.stderr
    ours.unlink()
    ours.mkdir()
    r = fm_here("detect", "in", "--out", "in", "--annotate", "--redo", *MODEL, cwd=tmp_path)
    assert f"{ours.relative_to(tmp_path)} is a folder; not overwritten" in r.stderr and ours.is_dir(), r.stderr


def test_another_programs_file_at_an_output_name_is_never_replaced(tmp_path, face_image, fm_here):
    """A photo service's sidecar IMG.jpg.json beside IMG.jpg, run with --out on the same folder,
    was replaced by a facemark document without a word. A facemark document, even one damaged
    since, is still replaced."""
    photos = _photos(tmp_path / "in", face_image, 3, 5)
    sidecar = tmp_path / "in" / f"{photos[0].name}.json"
    sidecar.write_text('{"title": "holiday", "geoData": {}}\n')
    r = fm_here("detect", "in", "--out", "in", *MODEL, cwd=tmp_path)
    assert r.returncode == 1 and "2 of 3 image(s) done" in r.stderr, r.stderr
    assert f"{sidecar.relative_to(tmp_path)} exists and is not a facemark result" in r.stderr, r.stderr
    assert sidecar.read_text() == '{"title": "holiday", "geoData": {}}\n'
    ours = tmp_path / "in" / f"{photos[1].name}.json"
    ours.write_bytes(ours.read_bytes()[:40])  # cut short outside facemark: done again, replaced
    r = fm_here("detect", "in", "--out", "in", *MODEL, cwd=tmp_path)
    assert r.returncode == 1 and "1 more done" in r.stderr and json.loads(ours.read_text())["faces"], r.stderr
    for leftover in (b"", bytes(4096)):  # empty, or NULs (a power cut's leftovers): done again, not refused forever
        ours.write_bytes(leftover)
        r = fm_here("detect", "in", "--out", "in", *MODEL, cwd=tmp_path)
        assert r.returncode == 1 and "1 more done" in r.stderr and json.loads(ours.read_text())["faces"], r.stderr
    ours.write_bytes(b" " * 100 + b'{"title": "mine"}')  # blanks first, then someone's content: kept
    r = fm_here("detect", "in", "--out", "in", *MODEL, cwd=tmp_path)
    assert r.returncode == 1 and "is not a facemark result" in r.stderr and b"mine" in ours.read_bytes(), r.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_resume_from_another_folder_finds_what_was_done(tmp_path, face_image, fmt, fm_here):
    """Rows recorded the path as typed (relative), which from another folder named nothing: every
    image was done again, and ``read`` there gave each image twice."""
    _photos(tmp_path / "in", face_image, 3, 4)
    (tmp_path / "elsewhere").mkdir()
    assert fm_here("detect", "in", "--out", "o", "--format", fmt, *MODEL, cwd=tmp_path).returncode == 0
    r = fm_here("detect", tmp_path / "in", "--out", tmp_path / "o", "--format", fmt, *MODEL, cwd=tmp_path / "elsewhere")
    assert r.returncode == 0 and "3 of 3 image(s) already done" in r.stderr, r.stderr
    r = fm_here("detect", "../in", "--out", "../o", "--format", fmt, *MODEL, cwd=tmp_path / "elsewhere")
    assert r.returncode == 0 and "3 of 3 image(s) already done" in r.stderr, r.stderr
    rows = read(tmp_path / "o")
    assert len(rows) == 3 and all(os.path.isabs(row["path"]) for row in rows)


def test_the_recorded_path_is_the_file_a_dotdot_after_a_link_leads_to(tmp_path, face_image, fm_here):
    """abspath drops 'lnk/..' as text; through a link to real/sub it leads to real/, not here."""
    from facemark.inputs import recorded_path

    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "lnk").symlink_to(tmp_path / "real" / "sub")
    cv2.imwrite(str(tmp_path / "real" / "y.jpg"), face_image)
    cv2.imwrite(str(tmp_path / "y.jpg"), np.zeros((64, 64, 3), np.uint8))  # another image where the text points
    assert fm_here("detect", "lnk/../y.jpg", "--out", "o", *MODEL, cwd=tmp_path).returncode == 0
    doc = json.loads((tmp_path / "o" / "y.jpg.json").read_text())
    assert doc["image"] == str(tmp_path / "real" / "y.jpg") and len(doc["faces"]) == 1
    r = fm_here("detect", "lnk/../y.jpg", "--out", "o", *MODEL, cwd=tmp_path)  # the same command: done, not "another image"
    assert r.returncode == 0 and "1 of 1 image(s) already done" in r.stderr, r.stderr
    assert recorded_path("a/./b.jpg") == os.path.join(os.getcwd(), "a", "b.jpg")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_run_inside_a_folder_whose_name_is_not_utf8_writes_its_rows(tmp_path, face_image, fmt, fm_here):
    """Every row failed as 'not valid UTF-8' (the folder above, not the file), and parquet into such
    a folder ended in a traceback. Rows keep the path as typed there."""
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/odd\xff"))
    odd.mkdir()
    (odd / "a.jpg").write_bytes(cv2.imencode(".jpg", face_image)[1].tobytes())  # (cv2.imwrite: a segfault on such a name)
    r = fm_here("detect", "a.jpg", "--out", "o", "--format", fmt, *MODEL, cwd=odd)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = read(odd / "o")
    assert [row["path"] for row in rows] == ["a.jpg"] and len(rows[0]["faces"]) == 1
    r = fm_here("detect", "a.jpg", "--out", "o", "--format", fmt, *MODEL, cwd=odd)
    assert r.returncode == 0 and "1 of 1 image(s) already done" in r.stderr, r.stderr


def test_a_parquet_run_counts_a_ray_run_s_rows_as_done(tmp_path, face_image, fm_here):
    """Both write absolute paths in dated Parquet shards; ``ray-*`` rows were not read by a run
    without --ray, which did every image again."""
    _photos(tmp_path / "in", face_image, 2, 5)
    assert fm_here("detect", "in", "--out", "o", "--format", "parquet", *MODEL, cwd=tmp_path).returncode == 0
    for p in (tmp_path / "o").glob("part-*.parquet"):  # as a --ray run names its shards
        p.rename(p.with_name("ray-" + p.name[len("part-"):]))
    r = fm_here("detect", "in", "--out", "o", "--format", "parquet", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "2 of 2 image(s) already done" in r.stderr, r.stderr


def test_a_resume_names_a_shard_it_cannot_read(tmp_path, face_image, fm_here):
    """A shard cut short (a copy that stopped) was passed over without a word: its images were
    done again, and every later read() warned of the file."""
    pytest.importorskip("pyarrow")
    _photos(tmp_path / "in", face_image, 2, 3)
    assert fm_here("detect", "in", "--out", "o", "--format", "parquet", *MODEL, cwd=tmp_path).returncode == 0
    (shard,) = (tmp_path / "o").glob("part-*.parquet")
    shard.write_bytes(shard.read_bytes()[:200])
    r = fm_here("detect", "in", "--out", "o", "--format", "parquet", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "2 of 2 image(s) done" in r.stderr, r.stderr
    assert f"note: 1 shard(s) in o cannot be read ({shard.name}: cut short" in r.stderr, r.stderr


def test_an_annotated_run_after_a_plain_one_into_shards_draws_the_images(tmp_path, face_image, fm_here):
    _photos(tmp_path / "in", face_image, 2, 3)
    assert fm_here("detect", "in", "--out", "o", "--format", "jsonl", *MODEL, cwd=tmp_path).returncode == 0
    r = fm_here("detect", "in", "--out", "o", "--format", "jsonl", "--annotate", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "already done" not in r.stderr, r.stderr
    assert len(list((tmp_path / "o").glob("*.annotated.jpg"))) == 2


def test_a_shard_is_closed_when_its_first_row_is_old_not_only_when_full(tmp_path):
    """A crash (SIGKILL, a power cut) loses the rows not yet in a closed shard: with 10,000 rows a
    shard, hours of work. A shard is closed after max_seconds as well."""
    from facemark.shards import SHARD_SECONDS, ShardWriter, row

    assert 60 <= SHARD_SECONDS <= 900
    quick = ShardWriter(tmp_path / "quick", "jsonl", rows_per_shard=100, max_seconds=0.0)
    slow = ShardWriter(tmp_path / "slow", "jsonl", rows_per_shard=100)
    for i in range(3):
        quick.add(row(f"{i}.jpg", 10, 10, "direct"))
        slow.add(row(f"{i}.jpg", 10, 10, "direct"))
    assert len(quick.shards()) == 3 and len(slow.shards()) == 0
    slow.flush()
    assert len(slow.shards()) == 1 and len(read(tmp_path / "quick")) == 3


def test_a_cut_short_document_of_facemarks_own_is_said_when_read(tmp_path, face_image, fm_here):
    _photos(tmp_path / "in", face_image, 2, 4)
    assert fm_here("detect", "in", "--out", "o", *MODEL, cwd=tmp_path).returncode == 0
    doc = tmp_path / "o" / "00.jpg.json"
    doc.write_bytes(doc.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="00.jpg.json"):
        rows = read(tmp_path / "o")
    assert [r["path"] for r in rows] == [str(tmp_path / "in" / "01.jpg")]


def test_two_runs_of_one_process_within_a_second_keep_both_shards(tmp_path):
    """Shards were named by the run's start second and process id: a second run from the same
    Python process in the same second replaced the first run's shard."""
    from facemark.shards import ShardWriter, row

    for name in ("a.jpg", "b.jpg"):
        w = ShardWriter(tmp_path, "jsonl")
        w.add(row(name, 10, 10, "direct"))
        w.flush()
    assert sorted(r["path"] for r in read(tmp_path)) == ["a.jpg", "b.jpg"]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_an_interrupted_redo_continues_with_the_same_command(folder, tmp_path, fmt):
    """``--redo`` stopped part-way could only start over (with --redo) or keep the old outputs
    (without): the same command now goes on, keeping what it had redone; once complete, the
    next --redo starts over."""
    import shutil

    from facemark import FaceLandmarker
    from facemark.batch import detect_files

    src = tmp_path / "in"
    shutil.copytree(folder / "in" / "b", src)  # 30 photos
    out = tmp_path / "o"
    fl = FaceLandmarker(model="direct")
    said = []
    assert detect_files([str(src)], fl, out_dir=out, fmt=fmt, log=said.append).written == 30  # the earlier outputs
    done = []

    def stop_after_two_chunks(n):
        done.append(n)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the --redo, stopped after 2 chunks of 4
        detect_files([str(src)], fl, out_dir=out, fmt=fmt, resume=False, batch_images=4, log=said.append,
                     progress=stop_after_two_chunks)
    from facemark.batch import summary_line

    # A plain run meanwhile takes the old outputs as done, and says that --redo would continue (it
    # had said "--redo recomputes", while --redo went on with the interrupted one).
    aside = tmp_path / "aside"  # (on a copy: this run's own outputs would change what the --redo has left)
    shutil.copytree(out, aside)
    plain = detect_files([str(src)], fl, out_dir=aside, fmt=fmt, log=said.append)
    assert plain.skipped and "--redo continues the interrupted one" in summary_line(plain), summary_line(plain)
    s = detect_files([str(src)], fl, out_dir=out, fmt=fmt, resume=False, batch_images=4, log=said.append)
    assert (s.skipped, s.written) == (8, 22) and any("continuing the --redo" in x for x in said), said
    s = detect_files([str(src)], fl, out_dir=out, fmt=fmt, resume=False, log=said.append)
    assert (s.skipped, s.written) == (0, 30)  # the last one finished: a new --redo does them all
    done.clear()
    with pytest.raises(KeyboardInterrupt):  # stopped again; then a --redo with another setting does not continue it
        detect_files([str(src)], fl, out_dir=out, fmt=fmt, resume=False, batch_images=4, log=said.append,
                     progress=stop_after_two_chunks)
    other = FaceLandmarker(model="direct", threshold=0.8)
    shutil.copytree(out, tmp_path / "aside2")  # (a plain run of other settings: no word of continuing it)
    plain = detect_files([str(src)], other, out_dir=tmp_path / "aside2", fmt=fmt, log=said.append)
    assert "--redo continues" not in summary_line(plain), summary_line(plain)
    said.clear()
    s = detect_files([str(src)], other, out_dir=out, fmt=fmt, resume=False, log=said.append)
    assert (s.skipped, s.written) == (0, 30)
    assert any("an interrupted --redo with other settings" in x for x in said), said
    assert [r["path"] for r in read_rows(out)] == sorted(str(p) for p in src.glob("*.jpg"))


def test_ctrl_c_stays_ctrl_c_when_the_last_shard_cannot_be_written(folder, tmp_path, monkeypatch):
    """Flushing the rows done so far on the way out of an interrupted run: a full disk then
    replaced the Ctrl-C by an output error (exit 1, not 130, and the wrong line)."""
    import errno
    import shutil

    from facemark import FaceLandmarker
    from facemark.batch import detect_files
    from facemark.shards import ShardWriter

    src = tmp_path / "in"
    shutil.copytree(folder / "in" / "b", src)

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    def stop(n):
        raise KeyboardInterrupt

    monkeypatch.setattr(ShardWriter, "flush", full)
    with pytest.raises(KeyboardInterrupt):
        detect_files([str(src)], FaceLandmarker(model="direct"), out_dir=tmp_path / "o", fmt="jsonl", batch_images=4,
                     log=lambda m: None, progress=stop)


def read_rows(out):
    from facemark.results import read

    return sorted(read(out), key=lambda r: r["path"])


def test_a_continued_redo_redoes_an_image_whose_drawing_it_had_not_made(folder, tmp_path):
    """Stopped between an image's JSON and its drawing, a --redo left the old drawing beside the
    new JSON; continuing took the image as redone. The drawing must be the redo's too."""
    import os
    import shutil

    from facemark import FaceLandmarker
    from facemark.batch import REDO_MARK, detect_files

    src = tmp_path / "in"
    shutil.copytree(folder / "in" / "b", src)
    out = tmp_path / "o"
    fl = FaceLandmarker(model="direct")
    detect_files([str(src)], fl, out_dir=out, annotate=True, log=lambda m: None)
    done = []

    def stop_after_one_chunk(n):
        done.append(n)
        if len(done) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        detect_files([str(src)], fl, out_dir=out, annotate=True, resume=False, batch_images=4, log=lambda m: None,
                     progress=stop_after_one_chunk)
    mark = (out / REDO_MARK).stat().st_mtime_ns
    redone = sorted(p for p in out.glob("*.jpg.json") if p.stat().st_mtime_ns > mark)
    assert len(redone) == 4
    old = mark / 1e9 - 3600
    drawing = redone[0].with_name(redone[0].name[:-len(".json")] + ".annotated.jpg")
    os.utime(drawing, (old, old))  # as if the run had stopped before this image's drawing
    s = detect_files([str(src)], fl, out_dir=out, annotate=True, resume=False, batch_images=4, log=lambda m: None)
    assert (s.skipped, s.written) == (3, 27) and drawing.stat().st_mtime_ns > mark


def test_an_input_missing_at_first_does_not_move_the_others_outputs(folder, tmp_path, fm_here):
    """The common folder of the outputs' names was worked out from the inputs that existed: with
    one missing the names were shorter, and once it appeared the same command wrote every image
    again under other names (two copies of each)."""
    import shutil

    shutil.copytree(folder / "in" / "b", tmp_path / "imgs" / "b")
    r = fm_here("detect", "imgs/b", "later.jpg", "--out", "o", *MODEL, cwd=tmp_path)
    assert r.returncode == 1 and "later.jpg" in r.stderr, r.stderr
    first = sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.json"))
    assert len(first) == 30 and all(n.startswith("imgs/b/") for n in first), first[:3]
    shutil.copy(folder / "in" / "b" / "000.jpg", tmp_path / "later.jpg")
    r = fm_here("detect", "imgs/b", "later.jpg", "--out", "o", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "30 of 31 image(s) already done" in r.stderr, r.stderr
    now = sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.json"))
    assert now == sorted(first + ["later.jpg.json"])


def test_workers_started_from_a_script_s_import_say_what_to_do(monkeypatch):
    """A script calling detect_files(workers=2) at top level runs it again in each spawned worker
    as it imports the script; multiprocessing's own error there did not say why."""
    import multiprocessing as mp

    from facemark.workers import UNGUARDED_EXIT, run_workers

    monkeypatch.setattr(mp.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(SystemExit) as e:  # (the status the parent reads: see the test below)
        run_workers({}, None, None, [[1]], 2, lambda *a: None)
    assert e.value.code == UNGUARDED_EXIT


def test_a_real_script_without_the_main_guard_is_told_so_not_blamed_on_memory(folder, tmp_path):
    """Its workers die importing it; the caller was told 'killed, or out of memory?' (the hint about
    the guard only came when no image had been reported yet, and this process reports its own)."""
    script = tmp_path / "unguarded.py"
    script.write_text("from facemark import FaceLandmarker\nfrom facemark.batch import detect_files\n"
                      f"detect_files([{str(folder / 'in' / 'b')!r}], FaceLandmarker(model='direct'), "
                      f"out_dir={str(tmp_path / 'o')!r}, workers=2, log=None)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("facemark.workers.WorkerNeverStarted: detect_files(workers=N) ran again in a worker"), r.stderr
    assert "__name__" in last and "out of memory" not in last and "run the same command" not in last
    assert r.stderr.count("Traceback") == 1  # (the caller's own; the workers end quietly)


def test_a_guarded_script_whose_worker_is_killed_as_it_starts_is_not_told_of_the_guard(folder, tmp_path):
    """A worker killed while importing (out of memory, say) is not the missing guard: the run says
    it was killed, and that the same command continues."""
    script = tmp_path / "guarded.py"
    script.write_text("import os, signal\n"
                      "if __name__ == '__mp_main__':\n    os.kill(os.getpid(), signal.SIGKILL)\n"
                      "from facemark import FaceLandmarker\nfrom facemark.batch import detect_files\n"
                      "if __name__ == '__main__':\n"
                      f"    detect_files([{str(folder / 'in' / 'b')!r}], FaceLandmarker(model='direct'), "
                      f"out_dir={str(tmp_path / 'o')!r}, workers=2, log=None)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("facemark.workers.WorkerDied: a worker process ended unexpectedly (killed"), r.stderr
    assert "__name__" not in last and "run the same command again" in last


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_resume_reads_each_rows_outcome_without_its_faces_and_only_whole_rows(tmp_path, fmt):
    """A resume looked at every row in full (faces decoded): 50,000 rows took 8-13 s and 770 MB.
    It now reads each row's path, model and error only; rows that are not whole still do not
    count, as a full reading would skip them."""
    from facemark import shards

    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    face = {"box": [1.0, 2.0, 30.0, 40.0], "score": 0.9, "landmarks": [[1.0, 2.0]] * 98, "landmarks68": [[1.0, 2.0]] * 68}
    rows = [shards.row(f"/p/{i}, \"faces\": {{[x.jpg", 64, 48, "direct", [face] * (i % 3)) for i in range(6)]
    rows.append(shards.row("/p/bad.jpg", None, None, "direct", error="/p/bad.jpg: not an image"))
    w = shards.ShardWriter(tmp_path, fmt)
    for r in rows:
        w.add(r)
    shard = w.flush()
    got = shards._outcomes(shard)
    assert got == [(r["path"], r["model"], r["error"]) for r in rows]
    assert set(w.done_paths("direct")) == {r["path"] for r in rows[:6]} and not w.done_paths("hourglass")
    if fmt == "jsonl":  # damaged outside facemark: a line cut right after a face, one cut mid-number, one garbled
        lines = shard.read_bytes().splitlines(keepends=True)
        cut_after_face = lines[2][:lines[2].index(b"]]}") + 3]
        damaged = [lines[0], cut_after_face + b"\n", lines[4][:-40] + b"\n", b"garbage\n", lines[5], lines[1][:100]]
        shard.write_bytes(b"".join(damaged))
        assert [p for p, _, _ in shards._outcomes(shard)] == [rows[0]["path"], rows[5]["path"]]
        full = [r["path"] for r in shards._rows_of(shard, damaged=lambda message: None)]
        assert full == [rows[0]["path"], rows[5]["path"]]
        # Edited into another shape (a face of 10 points, a width that is text): read() skips such a
        # row, and a resume now does it again instead of counting it done.
        edited = json.loads(lines[2])
        edited["faces"][0]["landmarks"] = edited["faces"][0]["landmarks"][:10]
        wide = dict(json.loads(lines[3]), width="wide")
        shard.write_bytes(b"".join([lines[0], (json.dumps(edited) + "\n").encode(), (json.dumps(wide) + "\n").encode(),
                                    lines[5]]))
        assert [p for p, _, _ in shards._outcomes(shard)] == [rows[0]["path"], rows[5]["path"]]
        full = [r["path"] for r in shards._rows_of(shard, damaged=lambda message: None)]
        assert full == [rows[0]["path"], rows[5]["path"]]
        # One point edited (text, three numbers, emptied, out of range): read() skips the row (it had
        # kept it), and a resume does it again, as it does not count it done.
        for point in (["a", "b"], [1, 2, 3], [None, 1], None, "1e999x", [1.0, float("nan")], [10 ** 400, 1], [True, False]):
            edited = json.loads(lines[5])
            edited["faces"][0]["landmarks"][7] = point
            text = json.dumps(edited).replace('"1e999x"', "[1e999, 1]")
            shard.write_bytes(b"".join([lines[0], (text + "\n").encode()]))
            kept = [r["path"] for r in shards._rows_of(shard, damaged=lambda message: None)]
            assert kept == [rows[0]["path"]], point
            if point != [10 ** 400, 1]:  # (a resume's gap, said in BIG_RUNS: read() skips it, no traceback)
                assert [p for p, _, _ in shards._outcomes(shard)] == kept, point
        renamed = lines[5].replace(b'"score"', b'"scor"', 1)  # (a key renamed: quotes and commas as before)
        three_and_one = json.loads(lines[5])
        three_and_one["faces"][0]["landmarks"][7:9] = [[1.0, 2.0, 3.0], [4.0]]  # (the commas as before)
        for edit in (renamed, (json.dumps(three_and_one) + "\n").encode()):
            shard.write_bytes(b"".join([lines[0], edit]))
            kept = [r["path"] for r in shards._rows_of(shard, damaged=lambda m: None)]
            assert kept == [rows[0]["path"]] and [p for p, _, _ in shards._outcomes(shard)] == kept
    else:  # Parquet rewritten outside facemark: its own schema, or facemark's with a field emptied
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert shards._points_whole(pq.ParquetFile(shard).metadata)  # (facemark's own: points not decoded)

        def rewrite(table):
            shards.write_parquet(table, shard)
            kept = [r["path"] for r in shards._rows_of(shard, damaged=lambda message: None)]
            assert [p for p, _, _ in shards._outcomes(shard)] == kept  # resume and read() agree
            return kept

        edited = [dict(r, faces=[dict(f) for f in r["faces"]]) for r in rows]
        edited[2]["faces"][0]["landmarks"] = edited[2]["faces"][0]["landmarks"][:10]
        assert rewrite(pa.Table.from_pylist(edited)) == [r["path"] for i, r in enumerate(rows) if i != 2]
        for field, value, skipped in (("landmarks", None, 5), ("score", None, 5), ("box", [1.0, 2.0, float("nan"), 4.0], 5),
                                      ("landmarks68", [[1.0, None]] * 68, 5)):  # (a coordinate left empty too)
            edited = [dict(r, faces=[dict(f) for f in r["faces"]]) for r in rows]
            edited[5]["faces"][1][field] = value
            kept = rewrite(pa.Table.from_pylist(edited, schema=shards.arrow_schema()))
            assert kept == [r["path"] for i, r in enumerate(rows) if i != skipped], field
        edited = [dict(r) for r in rows]
        edited[4]["width"] = None
        assert rewrite(pa.Table.from_pylist(edited, schema=shards.arrow_schema())) == [
            r["path"] for i, r in enumerate(rows) if i != 4]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_model_run_again_after_another_is_not_taken_as_done(tmp_path, face_image, fmt, fm_here):
    """Models A, B, then A again into one shard folder: the third run said "already done" (A's
    old rows), while read() gives the newest rows, B's. The newest row decides, as for read."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    _photos(tmp_path / "in", face_image, 2, 6)
    for model, done in (("direct", 0), ("hybrid", 0), ("direct", 0), ("direct", 2)):
        r = fm_here("detect", "in", "--out", "o", "--format", fmt, "--model", model, cwd=tmp_path)
        assert r.returncode == 0 and (f"{done} of 2 image(s) already done" in r.stderr) == bool(done), r.stderr
        assert {row["model"] for row in read(tmp_path / "o")} == {model}


def test_a_file_where_an_output_folder_must_go_is_named(tmp_path, face_image, fm_here):
    """It said "cannot write o/sub/00.jpg.json: File exists", not which file was in the way."""
    _photos(tmp_path / "in" / "sub", face_image, 1, 7)
    _photos(tmp_path / "in", face_image, 1, 8)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "sub").write_text("a file of the user's\n")
    r = fm_here("detect", "in", "--out", "o", *MODEL, cwd=tmp_path)
    assert r.returncode == 1 and "1 of 2 image(s) done" in r.stderr, r.stderr
    assert f"{Path('o', 'sub')} is a file, not a folder" in r.stderr, r.stderr
    assert (tmp_path / "o" / "sub").read_text() == "a file of the user's\n"


def test_one_image_with_workers_starts_no_process_and_keeps_every_core(monkeypatch, tmp_path, face_image):
    """--workers 3 on one image: nothing to share, so no worker process is started for nothing,
    and the one landmarker keeps onnxruntime's own thread count (not a third of the cores)."""
    from typer.testing import CliRunner

    from facemark import batch, landmarker, workers  # noqa: F401 - batch first: it keeps the real Workers class
    from facemark.cli import app

    class NoWorkers:
        def __init__(self, *a, **k):
            raise AssertionError("a worker process was started for one image")

    made = []
    real = landmarker.FaceLandmarker.__init__

    def init(self, *a, **k):
        made.append(k.get("threads"))
        real(self, *a, **k)

    monkeypatch.setattr(workers, "Workers", NoWorkers)
    monkeypatch.setattr(landmarker.FaceLandmarker, "__init__", init)
    cv2.imwrite(str(tmp_path / "one.jpg"), face_image)
    r = CliRunner().invoke(app, ["detect", str(tmp_path / "one.jpg"), "--out", str(tmp_path / "o"), "--workers", "3",
                                 *MODEL])
    assert r.exit_code == 0, r.output
    assert made == [None] and (tmp_path / "o" / "one.jpg.json").exists()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_job_the_workers_never_read_leaves_no_thread_or_pipe_behind():
    """Workers killed (the out-of-memory killer) before they read a big job (over a pipe's 64 KiB):
    the run stops with WorkerDied, and a long-lived Python process keeps no thread waiting on the
    pipe for good, holding the job and two file descriptors (a multiprocessing.Queue's feeder did)."""
    import threading

    from facemark.workers import WorkerDied, Workers, run_workers

    Workers(1).close()  # (once first: what stays for the process's life, such as the resource tracker)
    fds, threads = _open_fds(), set(threading.enumerate())
    started = Workers(1)
    for k in spawned_workers(os.getpid()):
        os.kill(k, signal.SIGKILL)
    big = b"x" * 1_000_000  # (in the job: more than the pipe holds)
    with pytest.raises(WorkerDied):
        run_workers({"model": "direct"}, big, _fails_here, [[(0, None, None)]] * 4, 2, lambda outcomes, n: None,
                    started=started)
    time.sleep(0.2)
    assert [t.name for t in set(threading.enumerate()) - threads if t.is_alive()] == []
    assert _open_fds() == fds
    assert spawned_workers(os.getpid()) == []


def test_workers_handed_to_detect_files_are_stopped_even_when_it_refuses_the_run(tmp_path):
    """detect_files takes over the Workers it is given: an error before the run (here: nothing to
    process) must stop them too, or they wait for a job forever and Python hangs at exit."""
    from facemark.batch import detect_files
    from facemark.errors import UsageError
    from facemark.landmarker import FaceLandmarker
    from facemark.workers import Workers

    started = Workers(1)
    try:
        with pytest.raises(UsageError):
            detect_files([str(tmp_path / "nothing-here")], FaceLandmarker(model="direct"), workers=started, log=None)
        assert started.pool is None and spawned_workers(os.getpid()) == []
    finally:
        started.close()


def test_workers_are_no_more_than_the_images_and_the_cores(monkeypatch, tmp_path, face_image):
    from typer.testing import CliRunner

    from facemark import batch, workers  # noqa: F401 - batch first: it keeps the real Workers class
    from facemark.cli import app

    asked = []

    class Unstartable:  # (records what the CLI asks for, then runs in one process)
        def __init__(self, processes, *a, **k):
            asked.append(processes)
            raise OSError("no processes in this test")

    monkeypatch.setattr(workers, "Workers", Unstartable)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), face_image)
    r = CliRunner().invoke(app, ["detect", str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "40", *MODEL])
    assert r.exit_code == 0, r.output
    assert asked == [2]  # three images: facemark and two more processes, not 39


def _stops_between_images(job, fl, chunk) -> list:
    """In a worker process, 20 images in 1.3 s. In this process, the first chunk the same way, and
    any later chunk only ends when the run is ending (up to 60 s): a worker's chunk, reported in
    input order as soon as it is done, comes while this process is inside one of its own, however
    slowly the worker process starts on a loaded machine."""
    from facemark.workers import stop_asked

    here = os.getpid() == job
    deadline = time.monotonic() + 60
    for k, _, _ in chunk:
        while True:
            if stop_asked():
                _STOPPED_AT.append(k)
                raise RuntimeError("stopped")
            if not here or chunk[0][0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        time.sleep(0.065 if not here else 0.05)
    return [(os.getpid(), k) for k, _, _ in chunk]


_STOPPED_AT: list[int] = []


def test_this_process_stops_between_images_when_the_run_ends():
    """When the run ends early (here: writing the first outcomes fails), the chunk this process is
    on stops at its next image, rather than the end waiting for the whole chunk."""
    from facemark.workers import run_workers

    def report(outcomes, n):
        if any(pid != os.getpid() for pid, _ in outcomes):
            raise OSError("the disk is full")

    chunks = [[(k, None, None) for k in range(i, i + 20)] for i in range(0, 400, 20)]
    _STOPPED_AT.clear()
    with pytest.raises(OSError, match="disk is full"):
        run_workers({"model": "direct"}, os.getpid(), _stops_between_images, chunks, 2, report,
                    local=_landmarker_for(2))
    assert len(_STOPPED_AT) == 1  # it stopped inside its chunk, at the next image
    assert spawned_workers(os.getpid()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_a_second_ctrl_c_while_this_process_finishes_its_image_still_ends_cleanly(tmp_path, face_image):
    """Ctrl-C, then Ctrl-C again while facemark waits for the image its own thread is on: exit 130
    with the one line, not an abort from the models being torn down under that thread."""
    (tmp_path / "big").mkdir()
    img = cv2.resize(face_image, (3000, 2000))
    for i in range(6):
        cv2.imwrite(str(tmp_path / "big" / f"{i}.jpg"), img)
    cmd = [sys.executable, "-m", "facemark", "detect", "big", "--out", "out", "--workers", "2", "--min-face", "20",
           "--annotate", *MODEL]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_default)
    t0 = time.time()
    while not (spawned_workers(p.pid) and time.time() - t0 > 2.5):  # both busy with their first images
        assert p.poll() is None and time.time() - t0 < 120
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["interrupted: outputs written so far are complete; the same command continues"]


def test_a_worker_whose_model_file_was_replaced_as_the_run_started_does_not_work(tmp_path):
    """Outputs name their model (a file's by its hash): workers load the file after this process
    did, and one that finds other weights there must not write results under this run's name."""
    import shutil

    from facemark.backends import resolve
    from facemark.batch import Job, work_on_chunk
    from facemark.landmarker import FaceLandmarker
    from facemark.workers import WorkerDied, run_workers

    path = tmp_path / "model.onnx"
    shutil.copy(resolve("direct", ".onnx"), path)
    label = FaceLandmarker(model=str(path)).model_name
    shutil.copy(resolve("hybrid", ".onnx"), path)  # replaced before the workers load it
    chunks = [[(0, None, None)], [(1, None, None)]]
    with pytest.raises(WorkerDied, match="changed after the run started"):
        run_workers({"model": str(path)}, Job(None, False, "stdout", None), work_on_chunk, chunks, 2,
                    lambda outcomes, n: None, label=label)


def test_workers_are_asked_for_plainly_and_once(tmp_path, face_image):
    from facemark.batch import detect_files
    from facemark.landmarker import FaceLandmarker
    from facemark.workers import Workers

    for bad in (0, -1, "2", True, 1.5):
        with pytest.raises(ValueError, match="positive number of processes"):
            Workers(bad)
    cv2.imwrite(str(tmp_path / "a.jpg"), face_image)
    started = Workers(1)
    detect_files([str(tmp_path / "a.jpg")], FaceLandmarker(model="direct"), out_dir=tmp_path / "o", workers=started,
                 log=None)
    with pytest.raises(ValueError, match="closed"):  # (not multiprocessing's "Queue is closed")
        detect_files([str(tmp_path / "a.jpg")], FaceLandmarker(model="direct"), out_dir=tmp_path / "o2",
                     workers=started, log=None)


def test_absolute_paths_run_from_a_folder_that_was_deleted(tmp_path, face_image):
    """Nothing is relative to the current folder: a shell left in a deleted folder still runs it
    (once said: 'cannot write to standard output')."""
    (tmp_path / "in").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "in" / f"{i}.jpg"), face_image)
    gone = tmp_path / "gone"
    gone.mkdir()
    script = (f"cd {gone} && rmdir {gone} && exec {sys.executable} -m facemark detect {tmp_path / 'in'} "
              f"--out {tmp_path / 'o'} --workers 1 --model direct")
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "o").glob("*.json"))) == 3


def test_a_thread_that_cannot_start_here_is_an_error_not_a_hang(monkeypatch):
    """Under a limit on threads (a container's pids limit) this process's thread may not start:
    the run must say so, not wait forever for a thread that never ran."""
    import threading

    from facemark.workers import run_workers

    real = threading.Thread.start

    def start(self):
        if self.name == "facemark-local-worker":
            raise RuntimeError("can't start new thread")
        return real(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    raised: list = []

    def go():
        try:
            run_workers({"model": "direct"}, os.getpid(), _who, [[(k, None, None)] for k in range(4)], 2,
                        lambda outcomes, n: None, local=_landmarker_for(2))
        except RuntimeError as e:
            raised.append(str(e))

    t = threading.Thread(target=go, daemon=True)
    real(t)
    t.join(timeout=120)
    assert not t.is_alive() and raised == ["can't start new thread"]
    assert spawned_workers(os.getpid()) == []


def test_a_rerun_over_an_output_folder_starts_no_process_before_it_knows_what_is_left(monkeypatch, tmp_path,
                                                                                        face_image):
    """Worker processes are started early only for a new --out (or --redo): a rerun over a finished
    folder started one, and killed it unused."""
    from typer.testing import CliRunner

    from facemark import batch, workers  # noqa: F401 - batch first: it keeps the real Workers class
    from facemark.cli import app

    class NoWorkers:
        def __init__(self, *a, **k):
            raise AssertionError("a worker process was started for a folder with nothing left to do")

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), face_image)
    args = ["detect", str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "2", *MODEL]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    monkeypatch.setattr(workers, "Workers", NoWorkers)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "o").glob("*.json"))) == 3


def test_one_file_holding_an_image_twice_reads_as_one_row_as_a_folder_does(tmp_path):
    """Shards joined with cat after a --redo: read(file) gave both rows of an image, read(folder)
    one. The later line wins in a file, as the newer file does in a folder."""
    from facemark import shards

    face = {"box": [1.0, 2.0, 30.0, 40.0], "score": 0.9, "landmarks": [[1.0, 2.0]] * 98, "landmarks68": [[1.0, 2.0]] * 68}
    old = shards.row("/p/a.jpg", 64, 48, "direct", [])
    new = shards.row("/p/a.jpg", 64, 48, "direct", [face])
    other = shards.row("/p/b.jpg", 64, 48, "direct", [])
    (tmp_path / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (old, other, new)))
    got = read(tmp_path / "all.jsonl")
    assert [(r["path"], len(r["faces"])) for r in got] == [("/p/b.jpg", 0), ("/p/a.jpg", 1)]
    assert [(r["path"], len(r["faces"])) for r in read(tmp_path)] == [("/p/b.jpg", 0), ("/p/a.jpg", 1)]


def test_a_shard_named_with_a_date_that_is_no_date_is_read_by_its_file_time(tmp_path):
    """A part file renamed by hand to a date that cannot be (month 13): read, dated by its file
    time, where it had raised a bare ValueError from read() and from a resumed run."""
    from facemark.shards import row

    odd = tmp_path / "part-20261399T000000-1-abc-00000.jsonl"
    odd.write_text(json.dumps(row("/data/a.jpg", 10, 10, "direct", [])) + "\n")
    assert [r["path"] for r in read(tmp_path)] == ["/data/a.jpg"]


@pytest.mark.parametrize("odd", ["{}", "null", "[1, 2]", '{"path": "x"}', '{"schema": "facemark/v1"}'])
def test_one_line_that_is_no_row_is_skipped_alone(tmp_path, odd):
    """A line edited into something else hid the whole shard from read() (\"not a facemark
    output\"), while a resume counted its other rows as done: they were never seen again."""
    from facemark.shards import row

    shard = tmp_path / "part-20260101T000000-1-abc-00000.jsonl"
    lines = [json.dumps(row(f"/data/{i}.jpg", 10, 10, "direct", [])) for i in range(3)]
    shard.write_text("\n".join(lines[:2] + [odd] + lines[2:]) + "\n")
    said = []
    assert sorted(r["path"] for r in read(tmp_path, on_error=said.append)) == ["/data/0.jpg", "/data/1.jpg", "/data/2.jpg"]
    assert len(said) == 1 and "1 line(s) that are not facemark rows skipped, 3 kept" in said[0]


def test_an_emptied_shard_is_said_not_dropped_silently(tmp_path):
    (tmp_path / "part-20260101T000000-1-abc-00000.jsonl").write_bytes(b"")
    (tmp_path / "notes.jsonl").write_bytes(b"")  # (someone else's empty file: nothing to say of it)
    said = []
    assert read(tmp_path, on_error=said.append) == [] and len(said) == 1 and "empty facemark shard" in said[0]
    assert read(tmp_path / "notes.jsonl") == []


def test_an_error_row_of_a_file_that_cannot_be_opened_names_it_as_its_path_does(tmp_path, face_image, fm_here):
    """'cannot read in/x.jpg: Too many levels of symbolic links' named the file as typed, while its
    row's path (and a decode error's text) is absolute."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), face_image)
    os.symlink("y.jpg", src / "x.jpg")
    os.symlink("x.jpg", src / "y.jpg")
    r = fm_here("detect", "in", "--out", "o", "--format", "jsonl", *MODEL, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    errors = [row for row in read(tmp_path / "o") if row["error"]]
    assert len(errors) == 2 and all(os.path.isabs(row["path"]) for row in errors)
    assert all(row["error"] == f"cannot read {row['path']}: Too many levels of symbolic links" for row in errors), errors


@pytest.mark.parametrize("edit", ["cut", "no_points"])
def test_a_per_image_document_edited_into_a_shape_read_skips_is_done_again(tmp_path, face_image, edit, fm_here):
    """A document whose face lost its points (or a point) counted as done on resume, while read()
    skipped it: only --redo of everything brought the image back."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(src / name), face_image)
    assert fm_here("detect", "in", "--out", "o", *MODEL, cwd=tmp_path).returncode == 0
    doc_path = tmp_path / "o" / "a.jpg.json"
    doc = json.loads(doc_path.read_text())
    if edit == "cut":
        doc["faces"][0]["landmarks"] = doc["faces"][0]["landmarks"][:97]
    else:
        del doc["faces"][0]["landmarks"]
    doc_path.write_text(json.dumps(doc))
    r = fm_here("detect", "in", "--out", "o", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "1 of 2 image(s) already done" in " ".join(r.stderr.split()), r.stderr
    assert len(read(tmp_path / "o")) == 2


def test_an_emptied_drawing_is_drawn_again(tmp_path, face_image, fm_here):
    """A drawing left empty (a power cut between its rename and its data) counted as done."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), face_image)
    assert fm_here("detect", "in", "--out", "o", "--annotate", *MODEL, cwd=tmp_path).returncode == 0
    (drawing,) = (tmp_path / "o").glob("a.jpg.annotated.*")
    drawing.write_bytes(b"")
    r = fm_here("detect", "in", "--out", "o", "--annotate", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "already done" not in r.stderr, r.stderr
    assert cv2.imread(str(drawing)) is not None


def test_too_few_open_files_for_worker_processes_is_one_line(tmp_path, face_image):
    """Under a low ulimit -n, starting workers failed, the fallback then could not open its model
    either, and the run ended in a traceback blaming the model file ('not a valid ONNX model')."""
    import resource

    src = tmp_path / "in"
    src.mkdir()
    small = cv2.resize(face_image, (96, 96), interpolation=cv2.INTER_AREA)
    for i in range(140):
        cv2.imwrite(str(src / f"{i:03d}.jpg"), small)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    r = subprocess.run([sys.executable, "-m", "facemark", "detect", "in", "--out", "o", "--workers", "2", *MODEL],
                       cwd=tmp_path, capture_output=True, text=True,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (10, hard)))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "ulimit -n" in r.stderr, r.stderr



def test_workers_that_cannot_start_for_open_files_leave_the_run_to_this_process(tmp_path, face_image, monkeypatch):
    """Where only the worker processes found no file handles left, the run goes on here, as before
    (the first fix had stopped it); where this process cannot open its models either, the open-files
    line; any other error (a broken pipe) is not called one."""
    import errno

    import facemark.batch as B
    from facemark import FaceLandmarker
    from facemark.backends import ModelError
    from facemark.errors import StopRun, no_files_left
    from facemark.workers import WorkersUnavailable

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        cv2.imwrite(str(src / f"{i}.jpg"), face_image)
    files = no_files_left("files for worker processes", OSError(errno.EMFILE, "Too many open files"))

    def no_workers(*a, **k):
        raise WorkersUnavailable("Too many open files", files)

    monkeypatch.setattr(B, "run_workers", no_workers)
    fl = FaceLandmarker(model="direct")
    s = B.detect_files([str(src)], fl, out_dir=tmp_path / "o", workers=2, batch_images=1, log=lambda m: None)
    assert s.written == 4
    for raised, expected in ((ModelError("x.onnx is not a valid ONNX model"), StopRun), (BrokenPipeError(), BrokenPipeError)):
        def fails(*a, raised=raised, **k):
            raise raised

        monkeypatch.setattr(B, "_process", fails)  # (the fallback's work in this process)
        with pytest.raises(expected):
            B.detect_files([str(src)], fl, out_dir=tmp_path / "o2", workers=2, batch_images=1, log=lambda m: None,
                           resume=False)
    # A stop in that fallback is this one process's: no "other workers may have finished a few more".
    monkeypatch.setattr(B, "_process", lambda *a, **k: [B.Outcome(-1, False, "cannot open in/0.jpg")])
    with pytest.raises(StopRun) as stop:
        B.detect_files([str(src)], fl, out_dir=tmp_path / "o3", workers=2, batch_images=1, log=lambda m: None)
    assert "stopped after 0 image(s)" in str(stop.value) and "other workers" not in str(stop.value), stop.value


def test_a_resumed_auto_run_counts_its_workers_from_the_images_left(monkeypatch, tmp_path, face_image):
    """--workers auto was counted from every image listed, also on a rerun with few left (100 of 3072
    left on CUDA would start 8 workers, each slow to start): the images left to do decide."""
    from typer.testing import CliRunner

    from facemark import batch, workers
    from facemark.cli import app

    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), face_image)
    args = ["detect", str(tmp_path), "--out", str(tmp_path / "o"), *MODEL]
    assert CliRunner().invoke(app, args).exit_code == 0
    for i in range(5, 7):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), face_image)
    counted, threads = [], []
    real, process = workers.auto_workers, batch._process
    for module in (workers, batch):  # (the command line counts them from every image; batch, from those left)
        monkeypatch.setattr(module, "auto_workers", lambda images, *a, **k: (counted.append(images), real(images, *a, **k))[1])
    monkeypatch.setattr(batch, "_process", lambda job, fl, *a: (threads.append(fl.spec["threads"]), process(job, fl, *a))[1])
    monkeypatch.setitem(workers.AUTO_WORKERS, "cpu", workers.AUTO_WORKERS["cpu"]._replace(min_images=3))  # (7 listed: 2)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert counted == [7, 2]  # (all listed, then the two new photos: one worker)
    assert set(threads) == {None}  # (that one worker has every core, not the share of one of two)
    assert len(list((tmp_path / "o").glob("*.json"))) == 7


def test_a_damaged_ray_shard_warns_and_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    """A cut-short ``ray-*.parquet`` (a --ray run's shard) was dropped without a word (only
    ``part-*`` shards warned); and without pyarrow, Parquet results read as "not a facemark
    output", a folder of them as holding none, and ``read`` returned [] for a script to go on with."""
    pa = pytest.importorskip("pyarrow")
    from facemark import shards
    from facemark.boxes import GivenBoxes
    from facemark.errors import UsageError

    out = tmp_path / "o"
    out.mkdir()
    for k, name in enumerate(("ray-1-00000.parquet", "ray-2-00001.parquet")):
        rows = [shards.row(f"/x/{3 * k + i}.jpg", 64, 48, "direct") for i in range(3)]
        shards.write_parquet(pa.Table.from_pylist(rows, schema=shards.arrow_schema()), out / name)
    assert len(read(out)) == 6
    cut = out / "ray-2-00001.parquet"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match="ray-2-00001.parquet"):
        assert sorted(r["path"] for r in read(out)) == [f"/x/{i}.jpg" for i in range(3)]
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # (its import now fails, as where it is not installed)
    for path in (out, out / "ray-1-00000.parquet"):
        with pytest.raises(UsageError, match="reading Parquet results needs pyarrow: pip install pyarrow"):
            read(path)
    with pytest.raises(ValueError, match="bad boxes file .*needs pyarrow"):
        GivenBoxes.from_file(out)
    mix = tmp_path / "mix"  # (another program's .parquet beside facemark's JSON lines: passed over, as before)
    mix.mkdir()
    (mix / "part-1-00000.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (out / "ray-1-00000.parquet").rename(mix / "stats.parquet")
    assert [r["path"] for r in read(mix)] == [rows[0]["path"]]


def test_files_from_a_list_run_as_the_same_inputs_given_as_arguments(folder, reference, fm_here, monkeypatch, tmp_path):
    """A manifest of a million images does not fit on a command line: --files-from FILE lists them,
    one per line (CRLF and blank lines too) or per NUL (find -print0), - for standard input."""
    import io

    listed = sorted(str(p.relative_to(folder)) for p in (folder / "in").rglob("*.jpg"))
    chosen = listed[::5] + ["in/a/broken.jpg"]  # (from both folders: their common one is that of the reference run)
    (folder / "list.txt").write_bytes(("\r\n".join(chosen[:8]) + "\r\n\n").encode())
    r = fm_here("detect", *chosen[8:], "--files-from", "list.txt", "--out", "from-list", *MODEL, cwd=folder)
    assert r.returncode == 1 and "broken.jpg" in r.stderr  # (the broken file, listed: said and skipped as ever)
    got = by_path(read(folder / "from-list"))
    want = {path: row for path, row in by_path(read(reference)).items() if path in {str(folder / c) for c in chosen}}
    assert got.keys() == want.keys() and len(got) == len(set(chosen)) - 1
    ref_names = {p.relative_to(reference) for p in reference.rglob("*.json")}
    assert {p.relative_to(folder / "from-list") for p in (folder / "from-list").rglob("*.json")} <= ref_names  # (same names)
    for path, row in want.items():
        assert row["faces"] == got[path]["faces"], path
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\0".join(s.encode() for s in listed[:3]) + b"\0")))
    r = fm_here("detect", "--files-from", "-", "--format", "jsonl", "--out", tmp_path / "stdin", *MODEL, cwd=folder)
    assert r.returncode == 0 and len(read(tmp_path / "stdin")) == 3, r.stderr
    # Two lists, one with a UTF-8 byte-order mark and a line of a no-break space (blank), one that
    # ends in NUL padding (a crash): each entry once; an empty list beside them is no error.
    (folder / "bom.txt").write_bytes(b"\xef\xbb\xbf" + listed[3].encode() + b"\n\xc2\xa0\n")
    (folder / "padded.txt").write_bytes(listed[4].encode() + b"\n\0\0\0")
    (folder / "empty.txt").write_text("\n\n")
    r = fm_here("detect", "--files-from", "bom.txt", "--files-from", "padded.txt", "--files-from", "empty.txt",
                "--format", "jsonl", "--out", tmp_path / "two", *MODEL, cwd=folder)
    assert r.returncode == 0 and sorted(row["path"] for row in read(tmp_path / "two")) == \
        sorted(str(folder / p) for p in listed[3:5]), r.stderr
    # UTF-16 (PowerShell's >): its NULs made one-letter entries, "/" among them, and the run searched /.
    (folder / "utf16.txt").write_bytes("\r\n".join(listed[:2]).encode("utf-16"))
    (folder / "video.mp4").write_bytes(bytes(range(256)) * 64)
    for args, says in ((["--files-from", "nope.txt"], "error: --files-from nope.txt: No such file or directory"),
                       (["--files-from", "empty.txt"], "error: --files-from empty.txt lists no inputs"),
                       (["--files-from", listed[0]], f"error: --files-from {listed[0]} is an image: give a text file"),
                       (["--files-from", "utf16.txt"], "error: --files-from utf16.txt is UTF-16 or UTF-32 text"),
                       (["--files-from", "video.mp4"], "error: --files-from video.mp4 is not a text list of paths"),
                       (["--files-from", "-", "--files-from", "-"], "error: --files-from - is given twice"),
                       ([], "error: no inputs: name image files, folders or globs, or a list of them with --files-from")):
        r = fm_here("detect", *args, "--out", tmp_path / "never", cwd=folder)
        assert r.returncode == 2 and r.stderr.startswith(says) and r.stderr.count("\n") == 1, r.stderr
    (folder / "spaced.txt").write_text(listed[0] + " \n")  # (kept as written: a name may end in a space; shown quoted)
    r = fm_here("detect", "--files-from", "spaced.txt", "--out", tmp_path / "never", cwd=folder)
    assert r.returncode == 2 and r.stderr == f"error: '{listed[0]} ': no such file or directory\n", r.stderr
    # Entries written relative to the list's own folder: read from the current one, each was only
    # "no such file"; a note says why.
    (folder / "in" / "a" / "here.txt").write_text("001.jpg\n003.jpg\n")
    r = fm_here("detect", "--files-from", "in/a/here.txt", "--out", tmp_path / "never", cwd=folder)
    assert r.returncode == 2 and r.stderr.startswith(
        "note: --files-from in/a/here.txt: its entries are read from the current folder, as arguments are, and "
        "001.jpg is not here but beside the list: run from in/a, or list absolute paths"), r.stderr
    assert not (tmp_path / "never").exists()


def test_a_list_of_one_print0_entry_and_a_list_naming_facemarks_drawings(tmp_path, face_image, fm_here, monkeypatch):
    """find -print0 with one hit ends its only entry in a NUL: the list was read by lines, and a
    name with line breaks split at them. And a cron job's `find OUT -name '*.jpg' | facemark
    detect --files-from - --out OUT --annotate`, photos and outputs in one folder, processed last
    run's drawings as photos and drew them again (x.jpg.annotated.jpg.annotated.jpg, and on):
    a list's drawings tagged as facemark's are left out, with a note; a user's file of such a
    name, and a drawing named as an argument, are processed."""
    import io

    (tmp_path / "new\nline").mkdir()
    cv2.imwrite(str(tmp_path / "new\nline" / "a\nb.jpg"), face_image)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("new\nline/a\nb.jpg".encode() + b"\0")))
    r = fm_here("detect", "--files-from", "-", "--format", "jsonl", "--out", "one", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and [row["path"] for row in read(tmp_path / "one")] == [str(tmp_path / "new\nline" / "a\nb.jpg")]
    from facemark.inputs import listed_inputs

    (tmp_path / "stray.txt").write_bytes(b"a.jpg\nb.jpg\n\0")  # (a line list with a stray NUL at its end: by lines)
    assert listed_inputs(str(tmp_path / "stray.txt")) == ["a.jpg", "b.jpg"]
    cron = tmp_path / "cron"
    cron.mkdir()
    cv2.imwrite(str(cron / "img1.jpg"), face_image)
    cv2.imwrite(str(cron / "mine.annotated.jpg"), face_image)  # (a user's photo of that name: no tag)

    def listing() -> str:
        return "\n".join(sorted(str(p) for p in cron.glob("*.jpg"))) + "\n"

    (tmp_path / "l1.txt").write_text(listing())
    r = fm_here("detect", "--files-from", "l1.txt", "--out", cron, "--annotate", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "2 of 2 image(s) done" in r.stderr and "left out" not in r.stderr, r.stderr
    (tmp_path / "l2.txt").write_text(listing())
    r = fm_here("detect", "--files-from", "l2.txt", "--out", cron, "--annotate", *MODEL, cwd=tmp_path)
    assert r.returncode == 0 and "2 of 2 image(s) already done" in r.stderr, r.stderr
    assert f"note: left out 2 of facemark's own drawings the list(s) name, e.g. {cron / 'img1.jpg.annotated.jpg'}" \
        in r.stderr, r.stderr
    assert sorted(p.name for p in cron.iterdir()) == ["img1.jpg", "img1.jpg.annotated.jpg", "img1.jpg.json",
                                                      "mine.annotated.jpg", "mine.annotated.jpg.annotated.jpg",
                                                      "mine.annotated.jpg.json"]
    r = fm_here("detect", str(cron / "img1.jpg.annotated.jpg"), *MODEL, cwd=tmp_path)  # (named: processed)
    assert r.returncode == 0 and "1 of 1 image(s) done" in r.stderr, r.stderr


def test_ray_shards_close_on_time_and_keep_the_rows_done_when_the_run_stops(tmp_path):
    """``--ray`` wrote a shard only when it was full (10,000 rows by default): Ctrl-C or a Ray error
    before that kept nothing, and a killed run lost up to a shard's hours. Now a shard also closes
    once its first row is SHARD_SECONDS old, and a stopped run writes the rows done so far."""
    pa = pytest.importorskip("pyarrow")
    from facemark import cluster
    from facemark.shards import arrow_schema, row

    class Rows:  # (Ray Data's rows as write_shards takes them: whole batches of the size asked, or at the end
        def __init__(self, done: int, stop: BaseException | None = None):  # what is left; ``done`` rows, then a stop)
            self.done, self.stop, self.sizes = done, stop, []

        def iter_batches(self, batch_size: int, batch_format: str):
            left = self.done
            while left >= batch_size or (left and self.stop is None):
                n = min(batch_size, left)
                left -= n
                self.sizes.append(n)
                yield pa.Table.from_pylist([row(f"{left + i}.jpg", 8, 8, "direct") for i in range(n)],
                                           schema=arrow_schema())
            if self.stop is not None:
                raise self.stop

    def summary() -> dict:
        return {"images": 0, "failed": 0, "faces": 0, "no_face": 0, "shards": []}

    s, rows = summary(), Rows(600, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        cluster.write_shards(rows, tmp_path / "stopped", 10000, s, log=[].append)
    assert 300 <= s["images"] == sum(rows.sizes) == len(read(tmp_path / "stopped")) and len(s["shards"]) == 1
    s, rows = summary(), Rows(600)
    cluster.write_shards(rows, tmp_path / "timed", 10000, s, log=[].append, max_seconds=0.0)
    assert len(s["shards"]) == len(rows.sizes) > 1 and len(read(tmp_path / "timed")) == 600
    s, rows = summary(), Rows(1100)
    cluster.write_shards(rows, tmp_path / "full", 500, s, log=[].append)
    assert [len(read(p)) for p in s["shards"]] == [500, 500, 100]


def test_onnxruntime_threads_follow_a_container_cpu_quota(monkeypatch):
    """onnxruntime sizes its thread pool from the cores the process may run on, not a container's
    CPU quota: one process under `docker --cpus 1` on a many-core host started a thread per host
    core. Sessions made without a thread count take the quota where it is lower."""
    import os

    from facemark import runtime, workers
    from facemark.detector import RetinaFace

    allowed = len(os.sched_getaffinity(0))
    monkeypatch.setattr(workers, "_cgroup_cpus", lambda: 1)
    if allowed > 1:
        assert RetinaFace().session.get_session_options().intra_op_num_threads == 1
    assert RetinaFace(threads=2).session.get_session_options().intra_op_num_threads == 2  # (asked for: as asked)
    monkeypatch.setattr(workers, "_cgroup_cpus", lambda: None)
    assert runtime._quota_cores() is None
    assert RetinaFace().session.get_session_options().intra_op_num_threads == 0  # (onnxruntime's own count)

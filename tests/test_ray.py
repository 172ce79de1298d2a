"""``facemark.cluster.run_ray`` on a real local Ray (2 CPUs): the same rows as one process, bad
files as error rows, resume without duplicates, and a killed actor costing no image.
Skipped when Ray is not installed (pip install ".[ray]")."""
from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray  # (run in CI with the rest; -m ray selects them, -m "not ray" leaves them out)

from facemark import cluster  # noqa: E402
from facemark.batch import rows_for_bytes  # noqa: E402
from facemark.errors import UsageError  # noqa: E402
from facemark.shards import read  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
GOOD = 22  # + 2 bad files


@pytest.fixture(scope="module")
def _ray_at_the_end():
    yield
    ray.shutdown()


@pytest.fixture
def local_ray(_ray_at_the_end):
    """The module's shared Ray (2 CPUs), started by the first test that asks for it, and again
    after a test that needed none (each start costs seconds: such tests come last)."""
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # (not a cluster of `ray start`)
        ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """22 small face images (shifted, scaled and mirrored copies), a text file named .jpg and a
    truncated JPEG."""
    d = tmp_path_factory.mktemp("images")
    image = cv2.resize(cv2.imread(str(EXAMPLE)), (160, 160))
    for i in range(GOOD):
        s = 0.8 + 0.02 * i
        m = np.array([[s, 0, 80 - 80 * s + (i % 5) - 2], [0, s, 80 - 80 * s + (i % 3) - 1]])
        im = cv2.warpAffine(image, m, (160, 160), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(d / f"img{i:02d}.jpg"), im[:, ::-1] if i % 2 else im)
    (d / "notes.jpg").write_text("not an image\n")
    data = (d / "img00.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return d


@pytest.fixture(scope="module")
def expected(folder) -> dict[str, dict]:
    """The single-process rows for the same files, keyed by absolute path."""
    from facemark.landmarker import FaceLandmarker

    fl = FaceLandmarker(model="direct", threads=1)
    items = [(str(p.resolve()), p.read_bytes()) for p in sorted(folder.iterdir())]
    return {r["path"]: r for r in rows_for_bytes(fl, items)}


def check_rows(rows: list[dict], expected: dict[str, dict]) -> None:
    counts = Counter(r["path"] for r in rows)
    assert sorted(counts) == sorted(expected)
    assert max(counts.values()) == 1, [p for p, n in counts.items() if n > 1]
    for r in rows:
        e = expected[r["path"]]
        assert (r["error"] is None) == (e["error"] is None), (r["path"], r["error"], e["error"])
        assert (r["width"], r["height"], r["model"]) == (e["width"], e["height"], e["model"])
        assert len(r["faces"]) == len(e["faces"]), r["path"]
        for f, g in zip(r["faces"], e["faces"]):
            np.testing.assert_allclose(f["landmarks"], g["landmarks"], atol=1e-3)
            np.testing.assert_allclose(f["landmarks68"], g["landmarks68"], atol=1e-3)
            np.testing.assert_allclose(f["box"], g["box"], atol=1e-3)


def run(folder, out, **kw) -> dict:
    kw = {"model": "direct", "batch_size": 4, "rows_per_shard": 10, "log": lambda m: None, **kw}
    return cluster.run_ray([str(folder)], str(out), **kw)


def test_rows_match_single_process(local_ray, folder, expected, tmp_path):
    s = run(folder, tmp_path / "out")
    rows = read(tmp_path / "out")
    check_rows(rows, expected)
    assert sum(e["error"] is not None for e in expected.values()) == 2
    assert sum(len(e["faces"]) > 0 for e in expected.values()) >= GOOD - 2  # the test exercises landmarks
    assert (s["images"], s["failed"], s["skipped"]) == (GOOD + 2, 2, 0)
    assert s["faces"] == sum(len(r["faces"]) for r in rows)
    assert s["no_face"] == sum(r["error"] is None and not r["faces"] for r in rows)
    assert len(s["shards"]) == 3 and all(Path(p).is_file() for p in s["shards"])  # 24 rows, 10 a shard


def test_failures_are_named_and_other_weights_are_done_again(local_ray, folder, tmp_path):
    """Each failed image is named (as without --ray), a missing input fails the run, and a rerun
    with another --model does its images again (resume skipped them whatever the weights)."""
    said: list[str] = []
    out = tmp_path / "out"
    two = [str(folder / "img00.jpg"), str(folder / "notes.jpg")]
    s = cluster.run_ray([*two, str(folder / "nope.jpg")], str(out), model="direct", batch_size=4, log=said.append)
    assert s["failed"] == 2 and any(m.startswith("failed:") and "notes.jpg" in m for m in said), said
    s = cluster.run_ray(two[:1], str(out), model="hybrid", batch_size=4, log=said.append)
    assert (s["images"], s["skipped"]) == (1, 0)
    s = cluster.run_ray(two[:1], str(out), model="hybrid", batch_size=4, log=said.append)
    assert (s["images"], s["skipped"]) == (0, 1)


def test_resume_skips_done_images(local_ray, folder, expected, tmp_path):
    out = tmp_path / "out"
    first = sorted(folder.iterdir())[:9]
    s1 = cluster.run_ray([str(p) for p in first], str(out), model="direct", batch_size=4, log=lambda m: None)
    assert s1["images"] == 9
    (out / ".ray-crashed-00000.parquet.tmp").write_bytes(b"PAR1 half a shard")  # a crash's leftover
    s2 = run(folder, out)
    assert (s2["images"], s2["skipped"]) == (GOOD + 2 - 9, 9)
    assert not set(s1["shards"]) & set(s2["shards"])
    s3 = run(folder, out)  # only the two bad files are tried again (as on one machine)
    assert (s3["images"], s3["skipped"], len(s3["shards"])) == (2, GOOD, 1)
    check_rows(read(out), expected)


def test_killed_actor_loses_no_image(local_ray, folder, expected, tmp_path, monkeypatch):
    flag = tmp_path / "crashed"
    monkeypatch.setenv(cluster.CRASH_ENV, f"{flag}:img13.jpg")
    s = run(folder, tmp_path / "out")
    assert flag.exists(), "the actor was never killed: this test tested nothing"
    assert s["images"] == GOOD + 2
    check_rows(read(tmp_path / "out"), expected)


def test_files_ray_cannot_read_are_rows_with_their_error_not_a_failed_job(local_ray, tmp_path, face_image):
    """A FIFO named like an image blocked or ended the whole job, a name that is not UTF-8 ended it,
    and a link that leads nowhere was said but left no row: every bad file is a row with its error,
    as without --ray."""
    import cv2

    from facemark.results import read

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "good.jpg"), face_image)
    os.mkfifo(src / "pipe.jpg")
    os.symlink("gone.jpg", src / "dangling.jpg")
    with open(os.fsencode(src) + b"/caf\xe9.jpg", "wb") as f:  # a Latin-1 name: it ended the job, run after run
        f.write(cv2.imencode(".jpg", face_image)[1].tobytes())
    said = []
    s = cluster.run_ray([str(src)], str(tmp_path / "o"), model="direct", log=said.append)
    rows = {os.path.basename(r["path"]): r for r in read(tmp_path / "o")}
    assert sorted(rows) == ["caf\\xe9.jpg", "dangling.jpg", "good.jpg", "pipe.jpg"], rows.keys()
    assert rows["good.jpg"]["error"] is None and len(rows["good.jpg"]["faces"]) == 1
    assert "not a regular file" in rows["pipe.jpg"]["error"] and "broken symbolic link" in rows["dangling.jpg"]["error"]
    assert "not valid UTF-8" in rows["caf\\xe9.jpg"]["error"]
    assert s["failed"] == 3 and sum(line.startswith("failed:") for line in said) == 3, said


def test_a_file_ray_cannot_list_keeps_its_good_result_from_an_earlier_run(tmp_path, face_image):
    """A name with a line break, done by a run without --ray: a --ray run into the same folder
    wrote an error row for it before looking at what was done, and read() then gave the image
    that error instead of its faces (the newest row wins)."""
    import subprocess
    import sys

    import cv2

    from facemark.results import read

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "new\nline.jpg"), face_image)
    r = subprocess.run([sys.executable, "-m", "facemark", "detect", str(src), "--out", str(tmp_path / "o"),
                        "--format", "parquet", "--model", "direct"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    said = []
    s = cluster.run_ray([str(src)], str(tmp_path / "o"), model="direct", log=said.append)  # (all done: Ray never starts)
    rows = read(tmp_path / "o")
    assert len(rows) == 1 and rows[0]["error"] is None and len(rows[0]["faces"]) == 1, rows
    assert s["skipped"] == 1 and s["failed"] == 0 and not any(line.startswith("failed:") for line in said), said


def test_ray_s_own_worker_lines_are_not_forwarded_to_the_terminal(monkeypatch):
    """A killed actor's retries printed paragraphs of '(raylet) ... retries remaining' with colour
    codes on facemark's stderr, though the run then finished: Ray's workers' lines stay in its logs."""
    seen = []
    fake = type("FakeRay", (), {"init": staticmethod(lambda **kw: seen.append(kw))})
    monkeypatch.setattr(cluster, "_check_reachable", lambda address: None)
    cluster._connect(fake, None)
    cluster._connect(fake, "10.0.0.1:6379")
    assert [kw.get("log_to_driver") for kw in seen] == [False, False], seen


def test_an_os_error_inside_the_pipeline_is_one_line(local_ray, folder, tmp_path, monkeypatch):
    """(Ray Data's read_binary_files raised this for a file gone since the listing; facemark's own
    read tasks make that a row now, but an OSError from elsewhere in the pipeline is one line.)"""
    def vanished(*a, **k):
        raise FileNotFoundError(f"{folder / 'img00.jpg'}")

    monkeypatch.setattr(cluster, "dataset", vanished)
    with pytest.raises(cluster.RayRunError, match="img00.jpg.*run the same command again"):
        run(folder, tmp_path / "out")


def test_a_file_deleted_after_the_listing_is_a_row_with_its_error(local_ray, folder, expected, tmp_path, monkeypatch):
    """Files vanish mid-job in big datasets: Ray Data's own reader failed the whole job on one
    (no shard written, a hundred lines of Ray tracebacks). Now it is that file's row, and the
    rest finish."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(folder, src)
    listed = cluster.list_inputs

    def list_then_delete(*a, **k):
        got = listed(*a, **k)
        (src / "img03.jpg").unlink()
        return got

    monkeypatch.setattr(cluster, "list_inputs", list_then_delete)
    said = []
    s = run(src, tmp_path / "out", log=said.append)
    rows = {Path(r["path"]).name: r for r in read(tmp_path / "out")}
    assert len(rows) == GOOD + 2 and s["failed"] == 3, (s, sorted(rows))
    assert "no such file" in rows["img03.jpg"]["error"], rows["img03.jpg"]
    assert any(line.startswith("failed:") and "img03.jpg: no such file" in line for line in said), said
    want = {Path(p).name: r for p, r in expected.items()}
    for name, r in rows.items():
        if name != "img03.jpg":
            assert (r["error"] is None) == (want[name]["error"] is None) and len(r["faces"]) == len(want[name]["faces"])


def test_remote_keys_that_are_no_uri_are_read_and_a_missing_one_is_its_error(tmp_path, monkeypatch):
    """The read stage built each object's file system from its whole URI: a key with a space
    (``s3://bucket/IMG 0001.jpg``) is no URI pyarrow parses, and that error ended the job. The
    file system comes from the bucket; a stand-in for it here (a local folder, no network)."""
    import pyarrow as pa
    from pyarrow import fs as pafs

    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket" / "IMG 0001.jpg").write_bytes(b"jpeg bytes")
    stand_in, asked = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), []

    def file_system(uri):
        asked.append(uri)
        return stand_in

    monkeypatch.setattr(cluster, "_FILE_SYSTEMS", {})
    monkeypatch.setattr(cluster, "_file_system", file_system, raising=False)  # (the real one would call S3)
    got = cluster.read_files(pa.table({"path": ["s3://bucket/IMG 0001.jpg", "s3://bucket/gone?.jpg"]})).to_pylist()
    assert asked == ["s3://bucket"], asked  # (one file system for the bucket, made once)
    assert got[0] == {"path": "s3://bucket/IMG 0001.jpg", "bytes": b"jpeg bytes", "error": None}, got
    assert got[1]["bytes"] is None and got[1]["error"].startswith("s3://bucket/gone?.jpg: no such file"), got


def test_a_local_ray_that_cannot_start_is_one_line():
    """(``ulimit -n 12``: Ray's GCS never came up) a 64-line traceback through ray.init."""
    def init(**kw):
        raise RuntimeError("Timed out waiting for file /tmp/ray/session_x/gcs_server_port\nmore lines")

    stopped = []
    fake = type("FakeRay", (), {"init": staticmethod(init), "shutdown": staticmethod(lambda: stopped.append(1))})
    with pytest.raises(cluster.RayRunError, match="cannot start a local Ray here: RuntimeError: Timed out") as e:
        cluster._connect(fake, None)
    assert "\n" not in str(e.value) and stopped, "what did start is stopped"


def test_a_cluster_that_refuses_the_auth_token_says_so(monkeypatch):
    """Ray logs the reason (InvalidAuthToken) and raises a bare ConnectionError naming another
    cause; its log is silenced, so the line blamed the address or the Ray version (a helper, with
    the README's ``ray start --head`` and a token left by an earlier local run)."""
    def init(**kw):
        os.write(2, b"E core_worker: InvalidAuthToken: Authentication token is missing or incorrect\n")
        raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6379")

    monkeypatch.setattr(cluster, "_check_reachable", lambda address: None)
    fake = type("FakeRay", (), {"init": staticmethod(init), "__version__": "2.60.0"})
    with pytest.raises(UsageError, match="refused this machine's authentication token .* RAY_AUTH_MODE") as e:
        cluster._connect(fake, "192.0.2.2:6379")
    assert "\n" not in str(e.value)


def test_the_sigterm_handler_outlives_ray_s_shutdown():
    """``ray.shutdown`` puts SIGTERM's default back: a polite kill between the last shard and the
    summary ended the process with 143 and no line, not as Ctrl-C does."""
    def shutdown():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def polite(signum, frame):
        raise KeyboardInterrupt

    fake = type("FakeRay", (), {"shutdown": staticmethod(shutdown)})
    before = signal.signal(signal.SIGTERM, polite)
    try:
        cluster._shutdown(fake)
        assert signal.getsignal(signal.SIGTERM) is polite
    finally:
        signal.signal(signal.SIGTERM, before)


def test_image_that_always_kills_its_actor_stops_the_run(local_ray, folder, expected, tmp_path, monkeypatch):
    """Bounded retries: the run stops with a one-line error instead of looping, what it wrote is
    complete, and the same command (the crash gone) finishes the job with no image twice."""
    out = tmp_path / "out"
    monkeypatch.setenv(cluster.CRASH_ENV, ":img05.jpg")  # no flag file: every time
    monkeypatch.setattr(cluster, "TASK_RETRIES", 1)  # (each retry restarts an actor: seconds on 2 CPUs)

    def endless(signum, frame):
        raise AssertionError("still retrying after 150 s: max_task_retries is not applied")

    previous = signal.signal(signal.SIGALRM, endless)
    signal.alarm(150)
    try:
        with pytest.raises(cluster.RayRunError, match="run the same command again"):
            run(folder, out, rows_per_shard=4)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    before = read(out)
    assert "img05.jpg" not in {Path(r["path"]).name for r in before}
    monkeypatch.delenv(cluster.CRASH_ENV)
    # The rerun in a Ray of its own, as the CLI's is: after a failed run in a shared Ray, Ray
    # restarts the failed pool's actors while the error's traceback lives, and on 2 CPUs they
    # leave the next run's read tasks none.
    ray.shutdown()
    s = run(folder, out)
    assert s["skipped"] == len(before) and s["images"] == GOOD + 2 - len(before)
    check_rows(read(out), expected)


def test_missing_ray_is_a_usage_error(monkeypatch, folder, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"pip install \"ray\[data\]>=2\.60,<2\.64\" \"pyarrow>=14\" \(facemark's \[ray\] extra\)"):
        cluster.run_ray([str(folder)], str(tmp_path / "out"))


def test_remote_and_local_inputs_do_not_mix(folder, tmp_path):
    with pytest.raises(UsageError, match="one file system"):
        cluster.list_inputs([str(folder), "s3://bucket/images"])


def test_one_path_on_its_own_is_refused_and_path_objects_are_taken(folder, tmp_path):
    """A string was read letter by letter ('/' among them: the whole disk was listed), and a
    Path in the list raised an internal TypeError."""
    for one in (str(folder), folder):
        with pytest.raises(TypeError, match="wrap a single one in a list"):
            cluster.run_ray(one, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    paths, scheme = cluster.list_inputs([folder])
    assert scheme == "" and len(paths) == GOOD + 2


def test_file_uris_read_as_local(folder):
    paths, scheme = cluster.list_inputs([f"file://{folder.resolve()}"])
    assert scheme == "" and len(paths) == GOOD + 2 and all(os.path.isabs(p) for p in paths)


def test_bad_options_stop_before_ray_starts(folder, tmp_path):
    for kw in ({"model": "nonexistent"}, {"device": "tpu"}, {"threshold": 1.5}, {"min_face": 0},
               {"min_face": float("inf")}, {"threshold": float("nan")}):  # (each actor would refuse them)
        with pytest.raises(UsageError):
            cluster.run_ray([str(folder)], str(tmp_path / "out"), **kw)
    assert not (tmp_path / "out").exists()  # refused before anything was touched
    said = []
    with pytest.raises(UsageError, match="nonexistent: no such file"):  # one line, not that and "no images"
        cluster.run_ray([str(tmp_path / "nonexistent")], str(tmp_path / "out" / "deeper"), log=said.append)
    assert said == [] and not (tmp_path / "out").exists()


def test_ray_alone_is_a_private_local_ray(folder, tmp_path, fm_here, monkeypatch):
    """``--ray [ADDRESS]``: given alone (last, before another option, or before the inputs) it is
    ``--ray local``; it was "Option '--ray' requires an argument". (Refused here for --workers, which
    shows how --ray was read without starting Ray.)"""
    for args in (["detect", folder, "--out", tmp_path / "o", "--workers", 2, "--ray"],
                 ["detect", folder, "--ray", "--out", tmp_path / "o", "--workers", 2],
                 ["detect", "--ray", folder, "--out", tmp_path / "o", "--workers", 2]):
        r = fm_here(*args, cwd=tmp_path)
        assert r.returncode == 2 and "--workers does not apply to --ray" in r.stderr, (args, r.stderr)
    r = fm_here("detect", folder, "--out", tmp_path / "o", f"--ray={folder}", cwd=tmp_path)
    assert r.returncode == 2 and "put --ray after the inputs" in r.stderr, r.stderr
    from facemark.cli import _ray_alone

    (tmp_path / "local").mkdir()  # a folder named local here: --ray local still names the private Ray
    monkeypatch.chdir(tmp_path)
    for args in (["detect", "in", "--ray", "local", "--out", "o"], ["detect", "in", "--ray", "10.0.0.1:6379"]):
        assert _ray_alone(args) == args
    assert _ray_alone(["detect", "--ray", str(folder)]) == ["detect", "--ray", "local", str(folder)]
    # a glob after it is no address either; a word that is no file (a port alone) stays the address,
    # refused as such; a --ray that is another option's value is left alone
    assert _ray_alone(["detect", "--ray", "in/*.jpg"]) == ["detect", "--ray", "local", "in/*.jpg"]
    assert _ray_alone(["detect", "in", "--ray", "6379"]) == ["detect", "in", "--ray", "6379"]
    assert _ray_alone(["detect", "in", "--out", "--ray"]) == ["detect", "in", "--out", "--ray"]


def test_cli_ray_option_matches_the_single_process_run(folder, expected, tmp_path):
    """``facemark detect DIR --out OUT --ray local``: its own Ray, the same rows, bad files named."""
    import subprocess

    ray.shutdown()  # (the next test asking for the shared Ray starts it again)
    r = subprocess.run([sys.executable, "-m", "facemark", "detect", str(folder), "--out", str(tmp_path / "o"),
                        "--ray", "local", "--model", "direct", "--batch", "8"], capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 1, r.stderr  # two bad files: rows with an error
    assert "Traceback" not in r.stderr and f"{GOOD} of {GOOD + 2} image(s) done" in r.stderr and "2 failed" in r.stderr
    check_rows(read(tmp_path / "o"), expected)


def test_an_address_nobody_answers_on_is_one_line(tmp_path, face_image):
    """Ray itself retries a dead address for minutes, logging each try."""
    import socket
    import subprocess

    cv2.imwrite(str(tmp_path / "a.jpg"), face_image)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, want in ((f"127.0.0.1:{port}", "no Ray head answers"), ("6379", "give local, auto or HOST:PORT")):
        r = subprocess.run([sys.executable, "-m", "facemark", "detect", "a.jpg", "--out", "o", "--ray", address],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)  # (Ray would retry for minutes)
        assert r.returncode == 2 and want in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "o").exists()  # (it was made, and left empty)


def test_auto_with_a_stale_saved_address_is_one_line(tmp_path, face_image):
    """`--ray auto` where the cluster Ray saved (ray_current_cluster) is gone: it hung for minutes,
    silent, and SIGTERM gave exit 15 (a helper's find). Checked as HOST:PORT is."""
    import socket
    import subprocess

    cv2.imwrite(str(tmp_path / "a.jpg"), face_image)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "raytmp" / "ray").mkdir(parents=True)
    (tmp_path / "raytmp" / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(tmp_path / "raytmp")}
    r = subprocess.run([sys.executable, "-m", "facemark", "detect", "a.jpg", "--out", "o", "--ray", "auto"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and f"--ray auto: no Ray head answers at 127.0.0.1:{port}" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_bad_address_is_said_before_the_inputs_are_listed(tmp_path):
    """The address was checked only after listing the inputs and reading OUT's shards: minutes
    on a big folder before a typo was said."""
    with pytest.raises(UsageError, match="give local, auto or HOST:PORT"):
        cluster.run_ray([str(tmp_path / "not-there")], str(tmp_path / "o"), address="6379")
    assert not (tmp_path / "o").exists()
    with pytest.raises(UsageError) as e:  # "local", the CLI's word, is an address here too (it was refused)
        cluster.run_ray([str(tmp_path / "not-there")], str(tmp_path / "o"), address="local")
    assert "not-there" in str(e.value) and "HOST:PORT" not in str(e.value)


def test_a_polite_sigterm_stops_a_ray_run_as_ctrl_c_does():
    """Ray's core worker put its crash handler on SIGTERM: a scheduler's stop printed a native
    stack and killed the driver (status -15 or 134) instead of facemark's exit 130. The handler in
    place before Ray started is put back."""
    import subprocess

    script = ("import os, signal\n"
              "from facemark import cluster\n"
              "def polite(signum, frame): raise KeyboardInterrupt\n"
              "signal.signal(signal.SIGTERM, polite)\n"
              "import ray\n"
              "assert cluster._init(ray, None)  # (a private local Ray)\n"
              "try:\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    signal.pthread_sigmask(signal.SIG_BLOCK, [])  # (a bytecode boundary: the handler runs)\n"
              "except KeyboardInterrupt:\n"
              "    print('stopped politely')\n"
              "finally:\n"
              "    ray.shutdown()\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "stopped politely" in r.stdout and "SIGTERM received" not in r.stderr, r.stderr[-2000:]


def test_links_that_lead_nowhere_are_left_out_of_the_ray_listing(tmp_path, face_image):
    """Ray's file listing fails on a link loop and ends the job; it is said and counted instead,
    and a second name of a listed file is left out with a note, as in a single-process run."""
    import cv2

    cv2.imwrite(str(tmp_path / "good.jpg"), face_image)
    os.symlink("self.jpg", tmp_path / "self.jpg")
    os.symlink("good.jpg", tmp_path / "again.jpg")
    said, unreadable = [], []
    paths, _ = cluster.list_inputs([str(tmp_path)], said.append, unreadable)
    assert [os.path.basename(p) for p in paths] == ["again.jpg"]  # (found first: the name sorts first)
    assert unreadable == [str(tmp_path / "self.jpg")] and any("left out 1 name(s)" in s for s in said), said


def test_the_resume_label_is_that_of_the_file_the_actors_load(tiny_models):
    """GPU actors load the .pt beside an .onnx given by path: resume compares with that file's
    digest (it compared with the .onnx's, so a GPU run never skipped anything)."""
    from facemark.backends import OnnxModel, weights_label
    from facemark.models import load_state

    onnx = str(tiny_models["direct"])
    pt = Path(onnx).with_suffix(".pt")
    assert cluster.model_label(onnx, "cpu") == weights_label(OnnxModel(onnx).name, Path(onnx))
    assert cluster.model_label(onnx, "cuda") == weights_label(load_state(pt)[1]["name"], pt)
    assert cluster.model_label("direct", "cuda") == "direct"


def test_an_input_that_gave_no_image_is_counted_as_without_ray(folder, tmp_path):
    """``detect small nonexist --ray`` said '30 of 34 image(s) done ... 4 failed', counting the
    missing input as an image; without --ray: '30 of 33 ... 3 failed, 1 input(s) gave no image'."""
    said, unreadable, missing = [], [], []
    paths, _ = cluster.list_inputs([str(folder), str(tmp_path / "nonexist")], said.append, unreadable, None, set(), missing)
    assert len(paths) == GOOD + 2 and not unreadable and len(missing) == 1, (said, unreadable, missing)
    s = {"images": GOOD + 2, "failed": 2 + 1, "missing": 1, "faces": GOOD, "no_face": 0, "shards": ["x"], "seconds": 1.0}
    line = cluster.summary_line(s, 0, tmp_path)
    assert line.startswith(f"facemark: {GOOD} of {GOOD + 2} image(s) done, {GOOD} face(s), 2 failed (named above), "
                           "1 input(s) gave no image (named above);"), line


def test_missing_inputs_alone_are_one_line_each_and_file_not_found_as_without_ray(tmp_path):
    said = []
    with pytest.raises(FileNotFoundError, match="nope2.jpg: no such file"):
        cluster.run_ray([str(tmp_path / "nope1.jpg"), str(tmp_path / "nope2.jpg")], str(tmp_path / "out"), log=said.append)
    assert said == [f"error: {tmp_path / 'nope1.jpg'}: no such file or directory"], said
    assert not (tmp_path / "out").exists()

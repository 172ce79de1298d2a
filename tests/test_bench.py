"""facemark bench: a table and JSON with every stage and backend; a clear message for CUDA."""
import json

import pytest
import torch
from typer.testing import CliRunner

from facemark.cli import app

runner = CliRunner()


def test_bench_cpu_table_and_json(tiny_models, tmp_path):
    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "--models", f"{tiny_models['hourglass']},{tiny_models['direct']},{tiny_models['direct']}",
                            "--batch", "1,4", "--json", str(out)])  # a model named twice is timed once
    assert r.exit_code == 0, r.stderr
    assert "retinaface" in r.stdout and "onnxruntime-cpu" in r.stdout and "torch-cpu" in r.stdout
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert rows[0]["stage"] == "detector" and rows[0]["latency_ms"] > 0
    lm = [x for x in rows if x["stage"] == "landmarks"]
    assert len(lm) == 4 and {(x["model"].split("@")[0], x["backend"]) for x in lm} == {
        (m, b) for m in ("tiny-hourglass", "tiny-direct") for b in ("onnxruntime-cpu", "torch-cpu")}
    assert all(x["model"].count("@") == 1 for x in lm)  # files given by path: which weights, by digest
    for x in lm:
        assert x["latency_ms"] > 0 and x["p90_ms"] >= x["latency_ms"]
        assert set(x["throughput"]) == {"1", "4"} and x["throughput"]["4"] > 0
        assert x["params"] > 0 and x["flops"] > 0
        assert x["memory_mb"] is None  # (a process's growth across a row read 0 or 1 MB: no figure on the CPU)
    assert "mem MB" not in r.stdout and "GPU MB" not in r.stdout
    assert data["machine"]["cores"] >= 1


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_bench_cuda_explains_when_absent(device):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = runner.invoke(app, ["bench", "--device", device])
    assert r.exit_code == 2 and "CUDA is not available" in r.stderr and "Traceback" not in r.stderr


def test_bench_picks_the_gpu_it_is_asked_for(monkeypatch):
    """cuda:N runs every CUDA backend on GPU N; a GPU the machine lacks is said, not a traceback."""
    from facemark.evaluation import bench as B

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(B, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    plans, skipped = B.backends_for("cuda:1")
    assert not skipped and [p[1] for p in plans if p[0] == "torch"] == ["cuda:1"] * 3
    assert [p[1][0] for p in plans if p[0] == "onnx"] == [("CUDAExecutionProvider", {"device_id": 1})]
    plans, skipped = B.backends_for("cuda:2")
    assert not plans and skipped == ["--device cuda:2: this machine has 2 GPUs (cuda:0 to cuda:1)"]


@pytest.mark.parametrize("args", [["--batch", "4,8"], ["--batch", "one"], ["--device", "tpu"], ["--device", "cuda:x"]])
def test_bench_usage_errors(args):
    assert runner.invoke(app, ["bench", *args]).exit_code == 2


def test_bench_times_the_whole_pipeline_on_a_photo(tiny_models, tmp_path):
    from tests.conftest import EXAMPLE

    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "--models", str(tiny_models["direct"]), "--batch", "1", "--image", str(EXAMPLE),
                            "--json", str(out)])
    assert r.exit_code == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    pipe = [x for x in rows if x["stage"] == "pipeline"]
    assert len(pipe) == 1 and pipe[0]["note"] == "640x480 frame, 1 face(s)"
    assert rows[0]["stage"] == "detector" and rows[0]["latency_ms"] > 0 and pipe[0]["latency_ms"] > 0
    # (that the pipeline row includes a detection is in its note: the face was found on the frame;
    # comparing the two timings failed on a busy machine)
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "blank.jpg"), np.full((480, 640, 3), 128, np.uint8))  # no face: no pipeline figure
    r = runner.invoke(app, ["bench", "--models", str(tiny_models["direct"]), "--batch", "1", "--image",
                            str(tmp_path / "blank.jpg"), "--json", str(out)])
    assert r.exit_code == 0 and "no face found in the --image frame" in r.stderr, r.stderr
    assert not [x for x in json.loads(out.read_text())["rows"] if x["stage"] == "pipeline"]


@pytest.mark.parametrize("data", ["foo", "300w=/no/such/folder"])
def test_a_wrong_data_option_is_said_before_any_timing(data, monkeypatch):
    from facemark.errors import UsageError
    from facemark.evaluation import bench as B

    def too_late(*a, **k):
        raise AssertionError("timing started before --data was checked")

    monkeypatch.setattr(B, "bench_detector", too_late)
    with pytest.raises(UsageError):
        B.run_bench("cpu", ["direct"], [1], data=data)


def test_a_lone_onnx_file_is_timed_on_onnxruntime(tiny_models, tmp_path):
    """An .onnx without its .pt: the torch rows are skipped and said, the onnxruntime row is timed."""
    import shutil

    alone = tmp_path / "mine.onnx"
    shutil.copy(tiny_models["direct"], alone)
    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "--models", str(alone), "--batch", "1", "--json", str(out)])
    assert r.exit_code == 0, r.stderr
    rows = [x for x in json.loads(out.read_text())["rows"] if x["stage"] == "landmarks"]
    assert [x["backend"] for x in rows] == ["onnxruntime-cpu"]
    assert "no .pt file beside it" in r.stderr


@pytest.mark.parametrize("broken, kept, said", [
    ("bench_torch", "onnxruntime-cpu", "torch-cpu fp32 failed"),
    ("bench_onnx", "torch-cpu", "onnxruntime-cpu failed"),  # (onnxruntime's own exceptions are no RuntimeError)
])
def test_a_backend_that_breaks_is_said_and_the_others_are_timed(broken, kept, said, tiny_models, tmp_path, monkeypatch):
    """A backend failing on this machine (on the lent H200, CUDA graph capture of the hourglass)
    ended bench in a traceback, with no row of the others: now one line in the skipped list."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from facemark.evaluation import bench as B

    def fails(*a, **k):
        raise (RuntimeError if broken == "bench_torch" else Fail)("Cannot run this here\nmore words")

    monkeypatch.setattr(B, broken, fails)
    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "--models", tiny_models["direct"], "--batch", "1", "--json", str(out)])
    assert r.exit_code == 0, r.stderr
    data = json.loads(out.read_text())
    assert [x["backend"] for x in data["rows"] if x["stage"] == "landmarks"] == [kept]
    assert [s for s in data["skipped"] if "failed" in s] == [f"{tiny_models['direct']}: {said}: Cannot run this here"]
    assert "Traceback" not in r.stderr and said in r.stderr


@pytest.mark.parametrize("content", [b"not a model at all", b""])
def test_a_damaged_model_file_is_said_before_any_timing(content, tmp_path, monkeypatch):
    from facemark.errors import UsageError
    from facemark.evaluation import bench as B

    def too_late(*a, **k):
        raise AssertionError("timing started before the model file was checked")

    monkeypatch.setattr(B, "bench_detector", too_late)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(content)
    with pytest.raises(UsageError, match="not a valid ONNX model"):
        B.run_bench("cpu", ["direct", str(junk)], [1])


def test_the_detector_runs_on_the_device_asked_for(monkeypatch):
    """With onnxruntime-gpu, --device cpu keeps the detector on the CPU, and cuda:N puts it on GPU N
    (it used to take CUDA device 0 whatever the device)."""
    from facemark import runtime
    from facemark.landmarker import make_detector

    monkeypatch.setattr(runtime, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert make_detector("retinaface", device="cpu").providers == ("CPUExecutionProvider",)
    assert make_detector("retinaface", device="cuda:1").providers[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert make_detector("retinaface", device="cuda").providers[0] == ("CUDAExecutionProvider", {"device_id": 0})
    monkeypatch.setattr(runtime, "available_providers", lambda: ["CPUExecutionProvider"])
    assert make_detector("retinaface", device="cuda").providers == ("CPUExecutionProvider",)
    from facemark.evaluation import bench as B

    class Fake:  # bench labels the detector row by where the session runs
        providers = (("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider")

        def detect(self, image):
            return []

    assert B.bench_detector(B.synthetic_frame(), Fake(), "retinaface", runs=2).backend == "onnxruntime-cuda"
    Fake.providers = ("CPUExecutionProvider",)
    assert B.bench_detector(B.synthetic_frame(), Fake(), "retinaface", runs=2).backend == "onnxruntime-cpu"


def test_a_pt_file_is_timed_on_onnxruntime_where_torch_is_missing(tiny_models, monkeypatch):
    """The up-front check loads each file with the backend that will time it: without PyTorch a
    .pt named in --models still has its .onnx beside it timed (it was refused)."""
    import sys

    from facemark.evaluation import bench as B

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    monkeypatch.setattr(B, "bench_detector", lambda *a, **k: B.Row("detector", "retinaface", "x", "fp32", 1.0, 1.0))
    rows, skipped, _ = B.run_bench("cpu", [str(tiny_models["direct"].with_suffix(".pt"))], [1])
    assert [r.backend for r in rows if r.stage == "landmarks"] == ["onnxruntime-cpu"]
    torch_lines = [s for s in skipped if "PyTorch is not installed" in s]  # once, and naming the CPU build
    assert len(torch_lines) == 1 and "the CPU build" in torch_lines[0], skipped


@pytest.mark.parametrize("kwargs", [dict(batches=[0, -4]), dict(batches=[4]), dict(batches=[1, 2.5]), dict(batches="1,32"),
                                    dict(batches=True), dict(limit=0), dict(limit=-550), dict(limit=True)])
def test_the_api_checks_batches_and_limit_as_the_cli_does(kwargs):
    """run_bench(limit=-550) used to time all but 550 faces (a slice), batches=[0] a numpy error."""
    from facemark.errors import UsageError
    from facemark.evaluation.bench import run_bench
    from facemark.evaluation.evaluate import run_eval

    with pytest.raises(UsageError, match="--limit" if "limit" in kwargs else "--batch"):
        run_bench("cpu", ["direct"], **kwargs)
    if "limit" in kwargs:
        with pytest.raises(UsageError, match="--limit"):
            run_eval(["300w=/nowhere"], ["direct"], limit=kwargs["limit"])


def test_the_api_takes_one_model_and_one_batch_size_as_they_are(monkeypatch):
    """run_bench(models="direct") read the name letter by letter ("unknown model 'd'"), and
    batches=1 raised a bare TypeError; run_eval already took one model as a string."""
    from facemark.evaluation import bench as B

    monkeypatch.setattr(B, "bench_detector", lambda *a, **k: B.Row("detector", "retinaface", "x", "fp32", 1.0, 1.0))
    rows, _, _ = B.run_bench("cpu", "direct", 1)
    assert {r.model for r in rows if r.stage == "landmarks"} == {"direct"}
    assert {b for r in rows if r.stage == "landmarks" for b in r.throughput} == {1}


def test_the_pipeline_row_of_a_pt_model_names_torch(tiny_models, tmp_path):
    """A .pt model's pipeline runs in torch, but its row said onnxruntime-cpu."""
    from tests.conftest import EXAMPLE

    pt = tiny_models["direct"].with_suffix(".pt")
    assert pt.is_file()
    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "--models", str(pt), "--batch", "1", "--image", str(EXAMPLE), "--json", str(out)])
    assert r.exit_code == 0, r.stderr
    pipe = [x for x in json.loads(out.read_text())["rows"] if x["stage"] == "pipeline"]
    assert len(pipe) == 1 and pipe[0]["backend"] == "torch-cpu", pipe


def test_one_model_named_twice_is_timed_once(tmp_path):
    """`--models direct,weights/direct.onnx` timed the shipped model twice, in two identical rows."""
    from facemark.backends import resolve

    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "--models", f"direct,{resolve('direct', '.onnx')}", "--batch", "1",
                            "--json", str(out)])
    assert r.exit_code == 0, r.stderr
    rows = [x for x in json.loads(out.read_text())["rows"] if x["stage"] == "landmarks"]
    assert rows and all(x["model"] == "direct" for x in rows), rows
    assert len(rows) == len({x["backend"] for x in rows}), rows  # (one row per backend, none twice)


@pytest.mark.parametrize("how", ["/dev/stdout", "/proc/self/fd/1", "//dev/fd/1", "link", "the same file"])
def test_json_naming_a_redirected_stdout_is_refused_not_renamed_over(how, tmp_path):
    """``eval --json /dev/stdout > report.txt`` (or ``--json report.txt > report.txt``) renamed the
    report over report.txt: the table printed into it was lost. Refused before any work."""
    import os
    import subprocess
    import sys

    report = tmp_path / "report.txt"
    target = {"link": str(tmp_path / "to-stdout.json"), "the same file": str(report)}.get(how, how)
    if how == "link":
        os.symlink("/dev/stdout", target)
    report.write_text("printed before\n")
    with open(report, "a") as f:
        r = subprocess.run([sys.executable, "-m", "facemark", "bench", "--json", target], stdout=f,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    why = ("is the file standard output or error goes to: give another file name" if how == "the same file" else
           "is an open descriptor (standard output, say), not a file name: give a file name")
    assert r.stderr.strip() == f"error: --json {target} {why}"
    assert report.read_text() == "printed before\n"


def test_a_batch_too_big_for_the_memory_keeps_the_smaller_batches_figures():
    """--batch 1,32,2048 that ran out of memory at 2048 lost the whole row (its batch-1 latency
    too) and said torch's allocator message with its C++ location; now the row keeps what was
    timed and one line says which batches were not. Other errors, and the smallest batch's,
    are the backend's failure as before."""
    from facemark.evaluation import bench as B

    def one(b):
        if b >= 2048:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory")
        return [0.001 * b] * 5

    row, said = B.Row("landmarks", "m", "torch-cpu", "fp32"), []
    B.time_batches(row, [1, 2048, 32], one, said)
    assert row.latency_ms == pytest.approx(1.0) and set(row.throughput) == {1, 32}
    assert said == ["torch-cpu fp32: batch 2048 and larger not timed: out of memory"]
    with pytest.raises(RuntimeError):
        B.time_batches(B.Row("landmarks", "m", "torch-cpu", "fp32"), [2048, 4096], one, [])

    def broken(b):
        raise RuntimeError("an error of another kind")

    with pytest.raises(RuntimeError):
        B.time_batches(B.Row("landmarks", "m", "torch-cpu", "fp32"), [1, 2], lambda b: broken(b) if b > 1 else [1.0], [])


def test_the_nme_says_how_many_faces_it_was_measured_on(tiny_models, tmp_path, face_image):
    """With --limit the NME column looked like the full figure (no count, no data named, in the
    table or the JSON)."""
    from tests.helpers import synthetic_faces, write_300w

    write_300w(tmp_path / "set", synthetic_faces(face_image, 4), "lfpw/testset")
    out = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "--models", str(tiny_models["direct"]), "--batch", "1", "--limit", "3",
                            "--data", f"300w={tmp_path / 'set'}", "--json", str(out)])
    assert r.exit_code == 0, r.stderr
    assert f"on 3 test faces of 300w={tmp_path / 'set'} (--limit 3)" in " ".join(r.stdout.split()), r.stdout
    rows = [x for x in json.loads(out.read_text())["rows"] if x["nme"] is not None]
    assert rows and all(x["nme_faces"] == 3 for x in rows)


def test_a_model_named_twice_on_the_command_line_is_measured_once():
    """eval --models direct,hybrid,direct measured direct twice (minutes), reported as direct#2."""
    from facemark.cli import model_names

    assert model_names(["direct,hybrid,direct", " direct", "hourglass,"]) == ["direct", "hybrid", "hourglass"]


def test_a_report_is_written_though_the_tables_reader_left(tiny_models, tmp_path):
    """`facemark bench --json r.json | head -2`: the table's reader quit, which ended the command
    before the report was written, with exit 0 (a hostile user's find)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "r.json"
    r, w = os.pipe()
    os.close(r)  # (nobody reads the table)
    p = subprocess.run([sys.executable, "-m", "facemark", "bench", "--models", str(tiny_models["direct"]), "--batch", "1",
                        "--json", str(out)], stdout=w, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(w)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert json.loads(out.read_text())["rows"], out.read_text()[:200]

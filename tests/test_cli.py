"""CLI behaviour: stdout JSON, --out layout, exit codes, bad and empty inputs."""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facemark.cli import app
from facemark.results import validate

runner = CliRunner()


@pytest.fixture(scope="module")
def small_face(face_image):
    return cv2.resize(face_image, (256, 256), interpolation=cv2.INTER_AREA)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.startswith("facemark ")


def test_one_input_prints_one_valid_document(tiny_models, tmp_path, small_face):
    img = tmp_path / "face.jpg"
    cv2.imwrite(str(img), cv2.copyMakeBorder(small_face, 0, 44, 0, 0, cv2.BORDER_REPLICATE))  # 256 wide, 300 high
    r = run("detect", img, "--model", tiny_models["hourglass"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert validate(doc) == []
    assert doc["width"] == 256 and doc["height"] == 300 and re.fullmatch(r"tiny-hourglass@[0-9a-f]{8}", doc["model"])
    assert len(doc["faces"]) == 1


def test_several_inputs_without_out_print_json_lines(tiny_models, tmp_path, small_face):
    for n in ("a.jpg", "b.png"):
        cv2.imwrite(str(tmp_path / n), small_face)
    r = run("detect", tmp_path / "a.jpg", tmp_path / "b.png", "--model", tiny_models["direct"])
    assert r.exit_code == 0
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["image"].rsplit("/", 1)[-1] for d in docs] == ["a.jpg", "b.png"]


def test_out_mirrors_the_input_layout(tiny_models, tmp_path, small_face):
    src = tmp_path / "photos"
    for rel in ("x.jpg", "sub/x.jpg", "sub/deeper/y.png", "sub/y.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / rel), small_face)
    (src / "notes.txt").write_text("not an image")  # ignored inside directories
    out = tmp_path / "out"
    r = run("detect", src, "--out", out, "--model", tiny_models["direct"], "--annotate")
    assert r.exit_code == 0, r.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(["x.jpg.json", "x.jpg.annotated.jpg", "sub/x.jpg.json", "sub/x.jpg.annotated.jpg",
                              "sub/deeper/y.png.json", "sub/deeper/y.png.annotated.png",
                              "sub/y.jpg.json", "sub/y.jpg.annotated.jpg"])
    for j in out.rglob("*.json"):
        assert validate(json.loads(j.read_text())) == []
    # Resume: an image whose drawing is gone is done again, the others are skipped.
    (out / "sub" / "y.jpg.annotated.jpg").unlink()
    kept = (out / "x.jpg.json").stat().st_mtime_ns
    r = run("detect", src, "--out", out, "--model", tiny_models["direct"], "--annotate")
    assert r.exit_code == 0 and "3 of 4 image(s) already done" in r.stderr and "1 more done" in r.stderr, r.stderr
    assert (out / "sub" / "y.jpg.annotated.jpg").is_file() and (out / "x.jpg.json").stat().st_mtime_ns == kept


def test_equal_stems_in_one_folder_do_not_collide(tiny_models, tmp_path, small_face):
    cv2.imwrite(str(tmp_path / "a.jpg"), small_face)
    cv2.imwrite(str(tmp_path / "a.png"), small_face)
    out = tmp_path / "o"
    r = run("detect", tmp_path / "a.jpg", tmp_path / "a.png", "--out", out, "--model", tiny_models["direct"])
    assert r.exit_code == 0
    names = sorted(p.name for p in out.rglob("*.json"))
    assert names == ["a.jpg.json", "a.png.json"]


def test_inputs_are_never_overwritten(tiny_models, tmp_path, small_face):
    img = tmp_path / "p.jpg"
    cv2.imwrite(str(img), small_face)
    before = img.read_bytes()
    r = run("detect", img, "--out", tmp_path, "--annotate", "--model", tiny_models["direct"])
    assert r.exit_code == 0
    assert img.read_bytes() == before
    assert (tmp_path / "p.jpg.annotated.jpg").is_file()
    # A second run over the folder does not take the annotated output for a new input.
    r = run("detect", tmp_path, "--out", tmp_path / "again", "--model", tiny_models["direct"])
    assert r.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "again").rglob("*.json")) == ["p.jpg.json"]


def test_hundred_photos_one_unreadable(tiny_models, tmp_path, small_face):
    """The issue's acceptance case: 99 JSON (and annotated images), the bad file named, exit 1."""
    src = tmp_path / "batch"
    src.mkdir()
    tiny = cv2.resize(small_face, (128, 128))
    for i in range(99):
        cv2.imwrite(str(src / f"img_{i:03d}.jpg"), tiny)
    (src / "img_050_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    out = tmp_path / "out"
    r = run("detect", src, "--out", out, "--annotate", "--model", tiny_models["direct"])
    assert r.exit_code == 1
    assert "img_050_broken.jpg" in r.stderr and "Traceback" not in r.stderr
    assert len(list(out.glob("*.json"))) == 99
    assert len(list(out.glob("*.annotated.jpg"))) == 99
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_names_that_are_not_utf8_are_shown_as_the_outputs_record_them(tiny_models, tmp_path, small_face):
    """The failed line and the summary printed such a name's bytes as \\udcNN (Python's way of
    holding them); the outputs and the other lines say \\xNN."""
    src = os.fsdecode(os.fsencode(str(tmp_path)) + b"/in\xe9")
    os.mkdir(src)
    with open(os.path.join(src, "ok.jpg"), "wb") as f:  # (cv2.imwrite crashes on such a name)
        f.write(cv2.imencode(".jpg", small_face)[1].tobytes())
    with open(os.fsencode(src) + b"/bad\xfe.jpg", "wb") as f:
        f.write(b"not an image")
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/out\xff")
    r = run("detect", src, "--out", out, "--model", tiny_models["direct"])
    assert r.exit_code == 1, r.stderr
    assert "\\udc" not in r.stderr and "in\\xe9/bad\\xfe.jpg is not an image" in r.stderr, r.stderr
    assert r.stderr.rstrip().endswith("outputs in " + str(tmp_path) + "/out\\xff"), r.stderr


def test_empty_blank_and_faceless_images(tiny_models, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "blank.png"), np.zeros((120, 160, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "noise.png"), np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8))
    out = tmp_path / "o"
    r = run("detect", tmp_path / "empty.jpg", tmp_path / "blank.png", tmp_path / "noise.png", "--out", out,
            "--model", tiny_models["direct"])
    assert r.exit_code == 1
    assert "empty.jpg" in r.stderr and "is empty" in r.stderr
    for name in ("blank.png.json", "noise.png.json"):
        doc = json.loads((out / name).read_text())
        assert validate(doc) == [] and doc["faces"] == []


@pytest.mark.parametrize("args, message", [
    (["detect", "nope.jpg"], "nope.jpg: no such file"),
    (["detect", "examples/astronaut.jpg", "--annotate"], "--annotate"),
    (["detect", "examples/astronaut.jpg", "--device", "tpu"], "--device"),
    (["detect", "examples/astronaut.jpg", "--model", "resnet"], "unknown model"),
    (["detect", "examples/astronaut.jpg", "--model", "missing.onnx"], "not found"),
    (["detect", "examples/astronaut.jpg", "--threshold", "2"], "threshold"),
    (["detect", "examples/astronaut.jpg", "--boxes", "nope.json"], "boxes file not found"),
    (["detect", "examples/astronaut.jpg", "--detector", "yunet:missing.onnx"], "YuNet model not found"),
    (["detect", "examples/astronaut.jpg", "--detector", "yunet:"], "yunet: names no model file"),
])
def test_usage_errors_exit_2_with_one_line(args, message, monkeypatch):
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    r = run(*args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_given_boxes_skip_detection(tiny_models, tmp_path, small_face):
    img = tmp_path / "f.jpg"
    cv2.imwrite(str(img), small_face)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"f.jpg": [[60, 40, 190, 200], [5, 5, 50, 60, 0.5]]}))
    r = run("detect", img, "--boxes", boxes, "--model", tiny_models["hourglass"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [f["box"] for f in doc["faces"]] == [[60, 40, 190, 200], [5, 5, 50, 60]]
    assert doc["faces"][1]["score"] == 0.5
    boxes.write_text(json.dumps({"other.jpg": [[1, 2, 3, 4]]}))
    r = run("detect", img, "--boxes", boxes, "--model", tiny_models["hourglass"])
    assert r.exit_code == 1 and "no entry" in r.stderr
    boxes.write_text("[1, 2")
    assert run("detect", img, "--boxes", boxes).exit_code == 2


@pytest.mark.parametrize("images", [2, 1])
@pytest.mark.parametrize("kind", ["stdout", "jsonl", "parquet", "folder"])
def test_boxes_from_facemarks_own_outputs(tiny_models, tmp_path, small_face, kind, images):
    """What one run printed or wrote can give the boxes of the next: JSON lines as printed, a
    shard (one line of them included), or a whole --out folder of per-image JSON files."""
    if kind == "parquet":
        pytest.importorskip("pyarrow")
    src = tmp_path / "in"
    src.mkdir()
    for n in ("a.jpg", "b.jpg")[:images]:
        cv2.imwrite(str(src / n), small_face)
    model = ["--model", tiny_models["direct"]]
    if kind == "stdout":
        first = run("detect", src, *model)
        boxes = tmp_path / "printed.jsonl"
        boxes.write_text(first.stdout)
        want = {json.loads(line)["image"]: json.loads(line)["faces"] for line in first.stdout.splitlines()}
    elif kind == "folder":
        assert run("detect", src, "--out", tmp_path / "o", *model).exit_code == 0
        boxes = tmp_path / "o"
        want = {json.loads(p.read_text())["image"]: json.loads(p.read_text())["faces"] for p in boxes.glob("*.json")}
    else:
        assert run("detect", src, "--out", tmp_path / "sh", "--format", kind, *model).exit_code == 0
        (boxes,) = (tmp_path / "sh").glob(f"part-*.{kind}")
        from facemark.results import read

        want = {r["path"]: r["faces"] for r in read(boxes)}
    r = run("detect", src, "--boxes", boxes, *model)
    assert r.exit_code == 0, r.stderr
    got = {json.loads(line)["image"]: json.loads(line)["faces"] for line in r.stdout.splitlines()}
    assert set(got) == set(want) and len(got) == images
    for name, faces in got.items():
        assert [f["box"] for f in faces] == [f["box"] for f in want[name]]


def test_real_process_has_no_traceback_for_bad_input(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("garbage")
    p = subprocess.run([sys.executable, "-m", "facemark", "detect", str(bad), "--model", "resnet"], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1


def test_quoted_glob_works_like_shell_expansion(tiny_models, tmp_path, small_face, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for rel in ("shots/a/1.jpg", "shots/b/1.jpg", "shots/b/skip.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".jpg"):
            cv2.imwrite(rel, small_face)
        else:
            (tmp_path / rel).write_text("x")
    r = run("detect", "shots/*/*.jpg", "--out", "o", "--model", tiny_models["direct"])
    assert r.exit_code == 0, r.stderr
    assert sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.json")) == ["a/1.jpg.json", "b/1.jpg.json"]
    r = run("detect", "nothing/*.jpg", "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "nothing/*.jpg" in r.stderr


def test_folders_offer_gifs_where_opencv_reads_them(tiny_models, tmp_path, small_face):
    from facemark.imageio import IMAGE_EXTS

    src = tmp_path / "gifs"
    src.mkdir()
    try:
        ok, buf = cv2.imencode(".gif", small_face)
        ok = ok and cv2.imdecode(buf, cv2.IMREAD_COLOR) is not None
    except cv2.error:  # OpenCV before 4.11 has no GIF codec
        ok = False
    if not ok:
        assert ".gif" not in IMAGE_EXTS  # never offered where it cannot be read
        pytest.skip("this OpenCV reads no GIF")
    (src / "a.gif").write_bytes(buf.tobytes())
    cv2.imwrite(str(src / "b.jpg"), small_face)
    r = run("detect", src, "--model", tiny_models["direct"])
    assert r.exit_code == 0, r.stderr
    assert sorted(json.loads(line)["image"].rsplit("/", 1)[-1] for line in r.stdout.splitlines()) == ["a.gif", "b.jpg"]


def test_ctrl_c_in_training_says_where_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C mid-training: exit 130 and the --resume line (the trainer itself is a stand-in)."""
    from types import SimpleNamespace

    from facemark import cli
    from facemark.training import train

    class Interrupted:
        model = SimpleNamespace(config={})
        opts = SimpleNamespace(teacher_model=None, distill=1.0)
        train_idx, val_idx = [0], [0]

        def fit(self, progress):
            raise KeyboardInterrupt

        def release(self):  # (the run folder's lock)
            pass

    monkeypatch.setattr(train, "load_pack", lambda *a, **k: None)
    monkeypatch.setattr(train, "make_trainer", lambda *a, **k: Interrupted())
    args = ["train", "--model", "direct", "--pack", str(tmp_path / "p.npz"), "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as e:
        cli.run(args)
    assert e.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted before the first epoch finished: no epoch was saved"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"an epoch")
    with pytest.raises(SystemExit) as e:
        cli.run(args + ["--resume"])
    assert e.value.code == 130
    assert "continue with --resume" in capsys.readouterr().err


@pytest.mark.parametrize("extra, says", [(["--annotate"], "--annotate"), (["--boxes", "b.json"], "--boxes"),
                                         (["--flip", "--redo"], "--flip, --redo"), (["--format", "jsonl"], "jsonl"),
                                         (["--format", "json"], "--format json"),  # (it wrote Parquet all the same)
                                         (["--detector", "yunet:y.onnx"], "--detector")])
def test_ray_refuses_options_it_would_ignore(tmp_path, extra, says):
    """--ray runs its own pipeline (Parquet rows, default detector): options it cannot honour are
    a usage error before Ray starts, not silently dropped."""
    r = run("detect", "examples/astronaut.jpg", "--ray", "local", "--out", tmp_path / "o", *extra)
    assert r.exit_code == 2 and says in r.stderr and "--ray does not take" in r.stderr
    assert not (tmp_path / "o").exists()


def test_ray_refuses_an_empty_address(tmp_path):
    r = run("detect", "examples/astronaut.jpg", "--ray", " ", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--ray is an empty string" in r.stderr


@pytest.mark.parametrize("extra", [["--model", "nope"], ["--boxes", "missing.json"], ["--detector", "yunet:none.onnx"],
                                   ["--threshold", "7"]])
def test_a_usage_error_leaves_no_out_folder(tmp_path, extra):
    out = tmp_path / "new" / "deeper"
    r = run("detect", "examples/astronaut.jpg", "--out", out, *extra)
    assert r.exit_code == 2, r.stderr
    assert not (tmp_path / "new").exists()


def test_detect_files_makes_its_folder_only_once_the_options_hold(tmp_path, tiny_models):
    from facemark import FaceLandmarker
    from facemark.batch import detect_files
    from facemark.errors import UsageError

    fl = FaceLandmarker(model=str(tiny_models["direct"]))
    for bad in (dict(fmt="csv"), dict(workers=0)):
        with pytest.raises(UsageError):
            detect_files(["examples/astronaut.jpg"], fl, out_dir=tmp_path / "o", **bad)
        assert not (tmp_path / "o").exists()
    detect_files(["examples/astronaut.jpg"], fl, out_dir=tmp_path / "o", log=lambda *a: None)
    assert (tmp_path / "o" / "astronaut.jpg.json").is_file()


def test_left_out_drawings_are_said_and_a_lone_missing_file_is_one_line(tmp_path, tiny_models):
    import shutil

    (tmp_path / "in").mkdir()
    shutil.copy("examples/astronaut.jpg", tmp_path / "in" / "normal.jpg")
    shutil.copy("examples/astronaut.jpg", tmp_path / "in" / "party.annotated.jpg")  # a user's own name
    r = run("detect", tmp_path / "in", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "left out 1 file(s) named *.annotated.*" in r.stderr and "party.annotated.jpg" in r.stderr
    r = run("detect", tmp_path / "in" / "party.annotated.jpg", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "left out" not in r.stderr  # named: processed
    r = run("detect", tmp_path / "nope.jpg")
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.jpg'}: no such file or directory"]
    r = run("detect", "file:///tmp/x.jpg")  # (a local file spelled as a URI)
    assert r.exit_code == 2 and "give its local path (/tmp/x.jpg)" in r.stderr, r.stderr
    for uri in ("s3://bucket/photos", "gs://bucket/*.jpg"):  # (not "no such file": a URI needs --ray)
        r = run("detect", uri, "--out", tmp_path / "u")
        assert r.exit_code == 2 and r.stderr.strip().splitlines() == [f"error: {uri}: a URI; facemark reads those "
                                                                      f"only with --ray (local paths otherwise)"]


def test_a_relative_boxes_key_is_also_read_from_the_boxes_file_s_folder(tmp_path, tiny_models):
    """Saved beside its images (``imgs/a.jpg`` in ``sub/boxes.json``), an entry was found only
    from the folder the boxes file was made in."""
    import shutil

    (tmp_path / "sub" / "imgs").mkdir(parents=True)
    shutil.copy("examples/astronaut.jpg", tmp_path / "sub" / "imgs" / "a.jpg")
    (tmp_path / "sub" / "boxes.json").write_text(json.dumps({"imgs/a.jpg": [[177, 56, 273, 177]]}))
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        r = run("detect", "sub/imgs/a.jpg", "--boxes", "sub/boxes.json", "--model", tiny_models["direct"])
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["faces"][0]["box"] == [177, 56, 273, 177]


def test_a_drawing_older_than_its_json_or_its_image_is_drawn_again(tmp_path, tiny_models):
    """A run without --annotate redoes the JSON of a changed image (or for another model) and
    leaves the old drawing; the next --annotate run must not take that drawing as done."""
    import shutil
    import time

    (tmp_path / "in").mkdir()
    shutil.copy("examples/astronaut.jpg", tmp_path / "in" / "a.jpg")
    out, drawing = tmp_path / "o", tmp_path / "o" / "a.jpg.annotated.jpg"
    direct, hybrid = ("--model", tiny_models["direct"]), ("--model", tiny_models["hybrid"])
    assert run("detect", tmp_path / "in", "--out", out, "--annotate", *direct).exit_code == 0
    time.sleep(0.05)
    big = cv2.resize(cv2.imread("examples/astronaut.jpg"), (700, 600))
    cv2.imwrite(str(tmp_path / "in" / "a.jpg"), big)  # the image replaced
    assert run("detect", tmp_path / "in", "--out", out, *direct).exit_code == 0  # JSON redone, drawing left
    assert cv2.imread(str(drawing)).shape[:2] == (512, 512)
    r = run("detect", tmp_path / "in", "--out", out, "--annotate", *direct)
    assert r.exit_code == 0 and "already done" not in r.stderr, r.stderr
    assert cv2.imread(str(drawing)).shape[:2] == (600, 700)
    assert run("detect", tmp_path / "in", "--out", out, *hybrid).exit_code == 0  # another model's JSON
    r = run("detect", tmp_path / "in", "--out", out, "--annotate", *hybrid)
    assert r.exit_code == 0 and "already done" not in r.stderr, r.stderr
    r = run("detect", tmp_path / "in", "--out", out, "--annotate", *hybrid)  # now both are this run's
    assert r.exit_code == 0 and "1 of 1 image(s) already done" in r.stderr, r.stderr


def test_an_input_that_cannot_be_looked_at_is_its_own_failure(tmp_path, tiny_models):
    """A name too long (or a folder on its way that cannot be searched) fails that input only."""
    long = "x" * 300 + ".jpg"  # over NAME_MAX: stat raises ENAMETOOLONG, not "no such file"
    r = run("detect", "examples/astronaut.jpg", tmp_path / long, "--out", tmp_path / "o", "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert any(line.endswith(f"{long}: File name too long") for line in r.stderr.splitlines())
    assert [p.name for p in (tmp_path / "o").rglob("*.json")] == ["astronaut.jpg.json"]


def test_an_output_name_too_long_is_that_image_s_error_and_nothing_half_written(tmp_path, tiny_models):
    import shutil

    (tmp_path / "in").mkdir()
    long = tmp_path / "in" / ("x" * 240 + ".jpg")  # its .json fits in 255 bytes, its .annotated.jpg does not
    shutil.copy("examples/astronaut.jpg", long)
    shutil.copy("examples/astronaut.jpg", tmp_path / "in" / "short.jpg")
    r = run("detect", tmp_path / "in", "--out", tmp_path / "o", "--annotate", "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "too long" in r.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["short.jpg.annotated.jpg", "short.jpg.json"]


def test_options_that_do_nothing_here_are_said(tiny_models):
    r = run("detect", "examples/astronaut.jpg", "--redo", "--no-box", "--shard-size", 5, "--model", tiny_models["direct"])
    assert r.exit_code == 0
    for says in ("--redo needs --out", "--shard-size needs --format", "need --annotate"):
        assert says in r.stderr
    r = run("detect", "examples/astronaut.jpg", "--model", tiny_models["direct"])
    assert "note:" not in r.stderr
    r = run("detect", "nope.jpg", "--redo", "--no-box", "--model", tiny_models["direct"])  # the error alone
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == ["error: nope.jpg: no such file or directory"]


@pytest.mark.parametrize("command", ["detect", "video", "train", "eval", "bench"])
def test_help_shows_flags_bare(command):
    """A flag in --help must not look as if it took a value (Typer's ``--annotate <bool>``)."""
    r = subprocess.run([sys.executable, "-m", "facemark", command, "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}, timeout=60)
    assert r.returncode == 0 and "--help" in r.stdout
    assert "<bool>" not in r.stdout and "list[str]" not in r.stdout.split("Options")[0]
    assert not re.search(r"  <(str|int|float|path)> ", r.stdout)  # (a value is named: --out DIR, --batch N)
    if command in ("detect", "video"):
        out = next(line for line in r.stdout.splitlines() if line.strip("│ ").startswith("--out "))
        assert out.split("--out", 1)[1].split()[0] == ("DIR" if command == "detect" else "VIDEO")
    flag = next(line for line in r.stdout.splitlines() if "--help" in line)
    assert flag.split("--help", 1)[1].split()[0] == "Show"
    usage = next(line for line in r.stdout.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage  # Typer's own mark for a required argument


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_a_slow_reader_holds_stdout_leaves_whole_lines(tmp_path, face_image, sig):
    """Each document of 48 faces is longer than a pipe holds, so the run blocks mid-line until the
    reader (here: slow to start) reads on. A Ctrl-C or SIGTERM then must not cut the line: it is
    finished, then the run stops (130; 143 for SIGTERM), and every line on stdout parses."""
    import signal
    import time

    from tests.helpers import sigint_default

    mosaic = np.tile(cv2.resize(face_image, (128, 128), interpolation=cv2.INTER_AREA), (6, 8, 1))
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"m{i}.jpg"), mosaic)
    cmd = [sys.executable, "-m", "facemark", "detect", *sorted(str(p) for p in tmp_path.glob("m*.jpg")), "--workers", "1"]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_default)
    try:
        first = os.read(p.stdout.fileno(), 1)  # the first document is being written (and soon stuck: the pipe is full)
        assert first == b"{"
        time.sleep(1.0)
        p.send_signal(getattr(signal, sig))
        time.sleep(0.5)
        out, err = p.communicate(timeout=120)  # the reader reads on
    finally:
        if p.poll() is None:
            p.kill()
    lines = (first + out).decode().splitlines()
    assert p.returncode == 128 + getattr(signal, sig), err
    assert lines and all(len(json.loads(line)["faces"]) == 48 for line in lines), [line[-40:] for line in lines]


def test_whole_lines_go_through_streams_that_transform_their_text(tmp_path):
    """Only a plain text stream over a file is written past its own write() (os.write, for whole
    lines under signals): a gzip stream, a UTF-16 file (a byte-order mark per write otherwise) and
    an in-memory one get their text through write()."""
    import gzip
    import io

    from facemark.imageio import write_whole

    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        write_whole(f, '{"a": 1}\n')
        write_whole(f, '{"b": 2}\n')
    assert gzip.open(tmp_path / "a.jsonl.gz", "rt").read() == '{"a": 1}\n{"b": 2}\n'
    with open(tmp_path / "u.txt", "w", encoding="utf-16") as f:
        write_whole(f, "ab\n")
        write_whole(f, "cd\n")
    assert (tmp_path / "u.txt").read_text(encoding="utf-16") == "ab\ncd\n"
    s = io.StringIO()
    write_whole(s, "x\n")
    assert s.getvalue() == "x\n"
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("first ")  # (held in the stream's buffer: it must come out first)
        write_whole(f, "second\n")
    assert (tmp_path / "plain.txt").read_text() == "first second\n"


def test_a_signal_during_a_whole_line_waits_and_a_second_acts_as_it_would_have():
    import signal

    from facemark.batch import _one_signal_waits

    got = []
    sigint = signal.getsignal(signal.SIGINT)
    before = signal.signal(signal.SIGTERM, lambda s, f: got.append("handler"))
    try:
        with _one_signal_waits():
            os.kill(os.getpid(), signal.SIGTERM)
            got.append("line")  # the line is finished first
        assert got == ["line", "handler"]
        got.clear()
        with _one_signal_waits():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # the second: the caller's handler at once (it was a KeyboardInterrupt)
            got.append("line")
        assert got == ["handler", "line"]
    finally:
        signal.signal(signal.SIGTERM, before)
    assert signal.getsignal(signal.SIGINT) is sigint  # (put back as it was)


def test_a_reader_that_leaves_early_still_sees_exit_1_if_an_image_had_failed(tmp_path, face_image):
    """`facemark detect DIR | head`: the reader leaving is no error (exit 0), but an image that had
    failed by then (named on stderr) still makes it 1, as the exit codes say."""
    mosaic = np.tile(cv2.resize(face_image, (128, 128), interpolation=cv2.INTER_AREA), (4, 4, 1))
    (tmp_path / "a_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"m{i:02d}.jpg"), mosaic)
    for bad in (True, False):
        if not bad:
            (tmp_path / "a_broken.jpg").unlink()
        p = subprocess.Popen([sys.executable, "-m", "facemark", "detect", str(tmp_path), "--workers", "1"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout.read(10)
        p.stdout.close()  # the reader leaves
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == (1 if bad else 0), err
        assert ("a_broken.jpg" in err) == bad and "Traceback" not in err


@pytest.mark.parametrize("command", [["video", "{frames}", "--json"], ["video", "{frames}", "--out"],
                                     ["eval", "--data", "300w={frames}", "--json"],
                                     ["eval", "--data", "300w={frames}", "--plot"], ["bench", "--models", "direct", "--json"]])
def test_an_output_file_named_with_a_trailing_slash_is_refused(tmp_path, small_face, command):
    """``--json results/`` means a folder: Path() would drop the slash and write a file 'results'."""
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0001.jpg"), small_face)
    args = [a.format(frames=frames) for a in command]
    r = run(*args, f"{tmp_path / 'results'}/")
    assert r.exit_code == 2 and "ends in '/', so it names a folder" in r.stderr, r.stderr
    assert not (tmp_path / "results").exists()
    r = run(*args, "")
    assert r.exit_code == 2 and "is an empty string" in r.stderr, r.stderr


def test_a_command_run_in_process_gives_the_caller_its_signal_handlers_back(tmp_path):
    """cli.run ignores Ctrl-C and SIGTERM while a command finishes; a script that had called it
    was left with Ctrl-C ignored for good (SIGTERM was given back, SIGINT was not)."""
    from tests.conftest import EXAMPLE

    script = ("import signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "mine = lambda s, f: None\n"
              "signal.signal(signal.SIGTERM, mine)\n"
              "reload = lambda s, f: None\n"
              "signal.signal(signal.SIGHUP, reload)\n"  # (a daemon's "reload": it was left ignored)
              "from facemark import cli\n"
              "try:\n"
              f"    cli.run(['detect', {str(EXAMPLE)!r}, '--out', {str(tmp_path / 'o')!r}])\n"
              "except SystemExit as e:\n"
              "    print('exit', e.code)\n"
              "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGTERM) is mine,\n"
              "      signal.getsignal(signal.SIGHUP) is reload)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-3:] == ["True", "True", "True"], r.stdout + r.stderr
    assert (tmp_path / "o").is_dir()


def test_turned_reads_an_upside_down_photo_as_the_upright_one(tmp_path, face_image):
    """--turned: an upside-down photo's points are the upright photo's, turned with it; it goes
    with neither --boxes (no search) nor --ray (one clear line each, exit 2)."""
    up, down = tmp_path / "up.png", tmp_path / "down.png"
    cv2.imwrite(str(up), face_image)
    cv2.imwrite(str(down), np.ascontiguousarray(face_image[::-1, ::-1]))
    docs = {}
    for name, img, extra in (("up", up, []), ("down", down, ["--turned"])):
        r = run("detect", img, "--model", "direct", "--out", tmp_path / name, *extra)
        assert r.exit_code == 0, r.stderr
        docs[name] = json.loads((tmp_path / name / f"{img.name}.json").read_text())
    h, w = face_image.shape[:2]
    want = np.array([w - 1, h - 1]) - np.array(docs["up"]["faces"][0]["landmarks"])
    got = np.array(docs["down"]["faces"][0]["landmarks"])
    assert len(docs["down"]["faces"]) == 1 and np.linalg.norm(got - want, axis=1).mean() < 3.0
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"down.png": [[10, 10, 100, 100]]}))
    for extra in (["--boxes", boxes], ["--ray", "local"]):
        r = run("detect", down, "--out", tmp_path / "x", "--turned", *extra)
        assert r.exit_code == 2 and "--turned" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "x").exists()

"""facemark pack / train / export / eval end to end on tiny fixtures in the WFLW and 300-W layouts."""
import json
import os
import shutil
from pathlib import Path

import cv2

import torch

import numpy as np
import pytest
from typer.testing import CliRunner

from facemark.backends import OnnxModel
from facemark.cli import app
from tests.conftest import shared_path
from tests.helpers import synthetic_faces, write_300w, write_wflw

runner = CliRunner()
TINY = ["--arch", "size=32", "--arch", "width=16", "--arch", "depth=2", "--no-fuse-loss", "--batch", "4"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])



def by_name(report: dict, name: str) -> dict:
    """A model's entry: a file given by path is keyed NAME@DIGEST (see FaceLandmarker.model_name)."""
    return next(v for k, v in report.items() if k.split("@")[0] == name)


@pytest.fixture(scope="module")
def wflw_root(tmp_path_factory, face_image):
    root = tmp_path_factory.mktemp("wflw")
    faces = synthetic_faces(face_image, 14, seed=1)
    write_wflw(root, faces[:10], faces[10:])
    return root


def test_train_resume_export_eval_on_wflw_layout(wflw_root, tmp_path):
    run_dir = tmp_path / "run"
    cache = tmp_path / "cache"
    r = run("train", "--model", "hourglass", "--data", f"wflw={wflw_root}", "--epochs", 1, "--out", run_dir, "--cache", cache, *TINY)
    assert r.exit_code == 0, r.stderr
    log = json.loads((run_dir / "log.json").read_text())
    assert [row["epoch"] for row in log] == [1]
    assert {"loss", "val_nme", "lr", "img_per_s"} <= set(log[0])
    assert (run_dir / "last.pt").is_file() and (run_dir / "model.onnx").is_file()
    # --resume continues from the checkpoint instead of starting over, and removes what a killed
    # run left half-written (a checkpoint's temporary file, named for its dead process).
    import subprocess
    import sys

    from facemark.imageio import _host_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = run_dir / f".fm-{_host_tag()}-{int(dead.stdout)}-abcd.pt"
    stale.write_bytes(b"half a checkpoint")
    r = run("train", "--model", "hourglass", "--data", f"wflw={wflw_root}", "--epochs", 2, "--out", run_dir, "--cache", cache, "--resume", *TINY)
    assert r.exit_code == 0, r.stderr
    assert "resumed from" in r.stderr
    assert not stale.exists() and not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
    assert [row["epoch"] for row in json.loads((run_dir / "log.json").read_text())] == [1, 2]
    assert (run_dir / "log.csv").read_text().count("\n") == 3
    # A different architecture in the same run directory is refused, not silently mixed.
    r = run("train", "--model", "hourglass", "--data", f"wflw={wflw_root}", "--epochs", 3, "--out", run_dir, "--cache", cache,
            "--resume", "--arch", "size=32", "--arch", "width=8", "--arch", "depth=2", "--no-fuse-loss")
    assert r.exit_code == 2 and "different model" in r.stderr
    # Export to a weights folder under a name, then evaluate with it.
    r = run("export", run_dir, "--out", tmp_path / "w", "--name", "mini")
    assert r.exit_code == 0, r.stderr
    m = OnnxModel(tmp_path / "w" / "mini.onnx")
    assert m.name == "mini" and m.family == "hourglass" and m.size == 32
    out_json, plot = tmp_path / "eval.json", tmp_path / "ced.png"
    r = run("eval", "--data", f"wflw={wflw_root}", "--model", tmp_path / "w" / "mini.onnx", "--model", tmp_path / "w" / "mini.onnx",
            "--boxes", "gt", "--json", out_json, "--plot", plot)
    assert r.exit_code == 0, r.stderr
    rep = by_name(json.loads(out_json.read_text()), "mini")
    assert rep["mode"] == "gt"
    assert rep["subsets"]["all"]["faces"] == 4
    assert "wflw:pose" in rep["subsets"] and rep["subsets"]["wflw:pose"]["faces"] == 2
    for key in ("nme", "fr8", "fr10", "auc8", "auc10", "missed"):
        assert key in rep["subsets"]["all"]
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize("family", ["direct", "hybrid"])
def test_other_families_train_one_epoch(family, wflw_root, tmp_path):
    arch = ["--arch", "size=32"] + (["--arch", "width_mult=0.25"] if family == "direct" else ["--arch", "widths=[8,16,16]"])
    r = run("train", "--model", family, "--data", f"wflw={wflw_root}", "--epochs", 1, "--batch", 4, "--out", tmp_path / family,
            "--cache", tmp_path / "c", *arch)
    assert r.exit_code == 0, r.stderr
    assert OnnxModel(tmp_path / family / "model.onnx").family == family


def test_nothing_is_written_into_a_data_folder(tiny_models, wflw_root, tmp_path):
    """Reports, plots, packs, caches and training runs inside a --data folder were written there
    (only its existing files were protected): refused up front, whatever the command, and the
    folder is as it was."""
    before = sorted(p.relative_to(wflw_root) for p in wflw_root.rglob("*"))
    data = ["--data", f"wflw={wflw_root}"]
    for args in (["eval", *data, "--model", tiny_models["direct"], "--json", wflw_root / "r.json"],
                 ["eval", *data, "--model", tiny_models["direct"], "--plot", wflw_root / "sub" / "ced.png"],
                 ["bench", *data, "--models", tiny_models["direct"], "--batch", 1, "--json", wflw_root / "b.json"],
                 ["pack", *data, "--out", wflw_root / "p.npz"],
                 ["pack", *data, "--out", tmp_path / "p.npz", "--cache", wflw_root / "cache"],
                 ["train", "--model", "hourglass", *data, "--out", wflw_root, *TINY],
                 ["train", "--model", "hourglass", *data, "--out", tmp_path / "run", "--cache", wflw_root, *TINY]):
        r = run(*args)
        assert r.exit_code == 2 and "is inside the data folder of --data wflw=" in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.relative_to(wflw_root) for p in wflw_root.rglob("*")) == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "p.npz").exists()


def test_an_eval_report_not_named_json_is_replaced_by_the_next_run(tiny_models, wflw_root, tmp_path):
    """--json r.txt: the second run refused its own report ("not a facemark eval report")."""
    for _ in range(2):
        r = run("eval", "--data", f"wflw={wflw_root}", "--model", tiny_models["direct"], "--json", tmp_path / "r.txt",
                "--limit", 2)
        assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "r.txt").read_text())


def test_full_pipeline_eval_on_300w_layout(tiny_models, face_image, tmp_path):
    root = tmp_path / "300w"
    faces = synthetic_faces(face_image, 6, seed=2)
    write_300w(root, faces[:3], "lfpw/trainset")
    write_300w(root, faces[3:], "lfpw/testset")
    out_json = tmp_path / "e.json"
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--json", out_json)
    assert r.exit_code == 0, r.stderr
    rep = by_name(json.loads(out_json.read_text()), "tiny-direct")
    assert rep["mode"] == "detector"
    s = rep["subsets"]["lfpw/testset"]
    assert s["faces"] == 3 and s["missed"] == 0 and np.isfinite(s["nme"])
    # Each face's NME too (only the means had been kept): the outliers behind a mean can be found.
    assert sorted(f["image"] for f in rep["faces"]) == sorted(str(p) for p in (root / "lfpw/testset").glob("*.jpg"))
    assert {f["subset"] for f in rep["faces"]} == {"lfpw/testset"}
    assert np.isclose(np.mean([f["nme"] for f in rep["faces"]]), s["nme"])
    assert rep["options"] == {"data": [f"300w={root}"], "split": "test", "limit": None, "flip": False,
                              "detector": "retinaface", "device": "cpu"}  # (what the figures are of)
    import hashlib  # (and which weights: `facemark models` shows an NME only beside the very weights measured)

    assert rep["weights"] == hashlib.sha256(Path(tiny_models["direct"]).read_bytes()).hexdigest()[:16]
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--json", out_json, "--boxes", "gt")
    assert r.exit_code == 0 and by_name(json.loads(out_json.read_text()), "tiny-direct")["options"]["detector"] is None
    # --limit takes faces evenly over the data: every subset shows (the first N were all one
    # subset's), and --flip is said in the table's title, not only in the JSON's options.
    write_300w(root, synthetic_faces(face_image, 2, seed=5), "helen/testset")
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--json", out_json, "--limit", 2,
            "--flip")
    assert r.exit_code == 0, r.stderr
    rep = by_name(json.loads(out_json.read_text()), "tiny-direct")
    assert {f["subset"] for f in rep["faces"]} == {"helen/testset", "lfpw/testset"} and len(rep["faces"]) == 2
    assert ": full pipeline, --flip" in " ".join(r.stdout.split()), r.stdout
    shutil.rmtree(root / "helen")
    # Labels that place the face outside its image (shifted, or another image's): skipped, named,
    # not counted as the detector's miss.
    from facemark.training.datasets import read_pts, write_pts

    moved = sorted((root / "lfpw/testset").glob("*.pts"))[0]
    write_pts(moved, read_pts(moved) + 5000.0)
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--json", out_json)
    assert r.exit_code == 0 and f"skipped: {moved.with_suffix('.jpg')}: its labelled face lies outside the image" \
        in " ".join(r.stderr.split()), r.stderr
    rep = by_name(json.loads(out_json.read_text()), "tiny-direct")
    assert rep["subsets"]["lfpw/testset"]["faces"] == 2 and rep["subsets"]["lfpw/testset"]["missed"] == 0
    # bench's spelling works too: --models, comma-separated (each was 'No such option')
    both = f"{tiny_models['direct']},{tiny_models['hourglass']}"
    r = run("eval", "--data", f"300w={root}", "--models", both, "--boxes", "gt", "--json", out_json)
    assert r.exit_code == 0 and len(json.loads(out_json.read_text())) == 2, r.stderr
    r = run("bench", "--model", tiny_models["direct"], "--batch", 1, "--json", tmp_path / "b.json")
    assert r.exit_code == 0, r.stderr


def test_pack_needs_a_teacher_for_68_point_data(face_image, tmp_path):
    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 2), "afw")
    r = run("pack", "--data", f"300w={root}", "--out", tmp_path / "p.npz", "--cache", tmp_path / "c")
    assert r.exit_code == 2 and "--teacher" in r.stderr
    (tmp_path / "PFLD_x.onnx").write_bytes(b"")  # one of the teacher's files, given for its folder
    r = run("pack", "--data", f"300w={root}", "--out", tmp_path / "p.npz", "--cache", tmp_path / "c", "--teacher",
            tmp_path / "PFLD_x.onnx")
    assert r.exit_code == 2 and "is a file: give the folder that holds the PFLD_*.onnx models" in r.stderr, r.stderr


def test_pack_with_the_shared_teacher(face_image, tmp_path):
    teacher = shared_path("models", "pfld_ghostone")
    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 3), "afw")
    r = run("pack", "--data", f"300w={root}", "--teacher", teacher, "--out", tmp_path / "p.npz", "--cache", tmp_path / "c")
    assert r.exit_code == 0, r.stderr
    from facemark.training.pack import Pack

    pk = Pack.load(tmp_path / "p.npz")
    assert len(pk) == 3 and pk.target98.shape == (3, 98, 2) and np.isfinite(pk.target98).all()
    from facemark import labelmap

    # Human labels win: the fused targets reproduce them exactly through the 98->68 map.
    assert np.abs(labelmap.to68(pk.target98.astype(np.float64)) - pk.human68).max() < 1e-4


def test_distillation_fine_tunes_a_student_from_a_teacher(tiny_models, wflw_root, tmp_path):
    """--teacher-model adds the teacher's loss on cached views; --init starts from given weights."""
    run_dir = tmp_path / "distil"
    args = ["train", "--model", "direct", "--data", f"wflw={wflw_root}", "--batch", 4, "--out", run_dir, "--cache", tmp_path / "c",
            "--teacher-model", tiny_models["hourglass"], "--teacher-views", 3, "--init", tiny_models["direct.pt"]]
    r = run(*args, "--epochs", 1)
    assert r.exit_code == 0, r.stderr
    assert "teacher labels:" in r.stderr and (run_dir / "teacher.npz").is_file()
    z = np.load(run_dir / "teacher.npz")
    n = z["points"].shape[0]
    assert n % 3 == 0 and z["points"].shape[1:] == (98, 2) and np.isfinite(z["points"]).all()
    assert not z["flip"][::3].any() and np.allclose(z["a"][::3], np.eye(2))  # view 0 of each face: as cropped
    m = OnnxModel(run_dir / "model.onnx")
    assert m.family == "direct" and m.size == 32  # the --init architecture, not the 112-px default
    # Resuming reuses the cached teacher labels instead of recomputing them.
    r = run(*args, "--epochs", 2, "--resume")
    assert r.exit_code == 0, r.stderr
    assert "teacher labels from" in r.stderr
    # Resumed without --teacher-model, the run keeps distilling, and says so.
    plain = [a for a in args if a not in ("--teacher-model", tiny_models["hourglass"], "--teacher-views", 3)]
    r = run(*plain, "--epochs", 3, "--resume")
    assert r.exit_code == 0, r.stderr
    assert "goes on doing so" in r.stderr and "teacher labels from" in r.stderr, r.stderr
    assert f", distilling {tiny_models['hourglass']}" in r.stderr, r.stderr  # (the summary said no teacher)
    # Another teacher: the run's views (3), not the default 8 (the same teacher given again: the same).
    r = run(*plain, "--epochs", 4, "--resume", "--teacher-model", tiny_models["hourglass"])
    assert r.exit_code == 0 and "teacher labels from" in r.stderr and "labelling again" not in r.stderr, r.stderr
    r = run(*plain, "--epochs", 5, "--resume", "--teacher-model", tiny_models["hybrid"])
    assert r.exit_code == 0, r.stderr
    assert f"it now distils from {tiny_models['hybrid']} (3 view(s) per face" in r.stderr, r.stderr
    assert np.load(run_dir / "teacher.npz")["points"].shape[0] == n, r.stderr
    # A student of another family than --init is refused with one line.
    r = run("train", "--model", "hybrid", "--data", f"wflw={wflw_root}", "--epochs", 1, "--out", tmp_path / "x",
            "--cache", tmp_path / "c", "--init", tiny_models["direct.pt"])
    assert r.exit_code == 2 and "is a direct model" in r.stderr
    # --arch may grow the --init network where it only adds parameters (the direct model's learned
    # pooling), and is refused in one line where the weights cannot fit (another width).
    grown = tmp_path / "grown"
    r = run(*[a if a != run_dir else grown for a in args], "--epochs", 1, "--arch", "pool=spatial")
    assert r.exit_code == 0, r.stderr
    assert "new parameters pools.0.weight" in r.stderr
    from facemark.models import load_state

    assert load_state(grown / "model.pt")[0].config["pool"] == "spatial"
    r = run(*[a if a != run_dir else tmp_path / "w" for a in args], "--epochs", 1, "--arch", "width_mult=0.5")
    assert r.exit_code == 2 and "does not fit --arch" in r.stderr and "Traceback" not in r.stderr


def test_views_map_back_to_the_pack_frame():
    """``to_pack_frame`` undoes ``transform_points`` for rotated, scaled, shifted and flipped views."""
    from facemark.layouts import FLIP98
    from facemark.training.augment import AugmentConfig, sample_geometry, to_pack_frame, transform_points

    gen = torch.Generator().manual_seed(3)
    geo = sample_geometry(64, AugmentConfig(p_wide_rotate=1.0), "cpu", gen)
    assert geo[2].any() and not geo[2].all()
    pts = torch.rand(64, 98, 2, generator=gen)
    perm = torch.from_numpy(FLIP98).long()
    view = transform_points(pts, *geo, 1.5, perm)
    assert not torch.allclose(view, pts, atol=1e-2)
    assert torch.allclose(to_pack_frame(view, *geo, 1.5, perm), pts, atol=1e-5)


def test_one_teacher_view_follows_each_batch_s_augmentation(tiny_models, wflw_root, tmp_path):
    """--teacher-views 1 labels each face once, as cropped; its labels then move with freshly drawn
    geometry exactly as the human labels do (not the as-cropped view every epoch)."""
    from facemark.training.augment import identity_geometry, transform_points
    from facemark.training.train import TrainOptions, load_pack, make_trainer

    run_dir, cache = tmp_path / "one", tmp_path / "c"
    r = run("train", "--model", "direct", "--data", f"wflw={wflw_root}", "--batch", 4, "--out", run_dir, "--cache", cache,
            "--teacher-model", tiny_models["hourglass"], "--teacher-views", 1, "--init", tiny_models["direct.pt"], "--epochs", 1)
    assert r.exit_code == 0, r.stderr
    pack = load_pack(None, [f"wflw={wflw_root}"], None, cache, 192)
    tr = make_trainer(pack, TrainOptions("direct", tmp_path / "again", init=str(tiny_models["direct.pt"]),
                                         teacher_model=str(tiny_models["hourglass"]), teacher_views=1,
                                         teacher_cache=run_dir / "teacher.npz"), log=lambda *a: None)
    assert len(tr.teacher["points"]) == len(pack)  # one view per face, from the cache
    # Teacher labels that are the pack's own targets must come out as the human targets do.
    tr.teacher["points"] = transform_points(tr.targets, *identity_geometry(len(pack), "cpu"), pack.margin, None)
    idx = tr.train_idx[:4]
    geo, taught = tr._draw_views(idx, np.random.default_rng(0))
    assert not torch.allclose(geo[0], torch.eye(2).expand(4, 2, 2))  # augmented, not as cropped
    _, pts, _, _ = tr._batch(idx, train=True, geo=geo)
    assert torch.allclose(taught, pts, atol=1e-5)


@pytest.mark.parametrize("aug, says", [("foo=1", "not an augmentation setting"), ("flip=2", "a probability"),
                                       ("scale=abc", "give a number"), ("rotate=-5", "give a number"), ("scale", "KEY=VALUE"),
                                       ("scale=50", "at most 1 (the default is 0.12)"), ("rotate=1000", "at most 180")])
def test_bad_augmentation_settings_are_one_line(tmp_path, aug, says):
    r = run("train", "--model", "direct", "--pack", tmp_path / "none.npz", "--out", tmp_path / "r", "--aug", aug)
    assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


def test_a_resumed_run_keeps_its_augmentation_settings(wflw_root, tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    base = ["train", "--model", "hourglass", "--data", f"wflw={wflw_root}", "--out", run_dir, "--cache", cache, *TINY]
    r = run(*base, "--epochs", 1, "--aug", "scale=0.05")
    assert r.exit_code == 0, r.stderr
    r = run(*base, "--epochs", 2, "--resume")
    assert r.exit_code == 0 and "started with --aug scale=0.05, and goes on with it" in r.stderr, r.stderr


class _Clock:
    """A clock for the trainer that moves 50 ms at each reading, so how many steps a budget
    buys does not depend on how busy the machine is."""

    def __init__(self):
        self.now = 1e9

    def time(self) -> float:
        self.now += 0.05
        return self.now


def test_a_time_budget_ends_the_schedule_and_holds_across_resume(wflw_root, tmp_path, monkeypatch):
    from facemark.training import train

    monkeypatch.setattr(train, "time", _Clock())
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    base = ["train", "--model", "hourglass", "--data", f"wflw={wflw_root}", "--out", run_dir, "--cache", cache,
            "--epochs", 100000, "--lr", 1e-3, "--time-budget", 0.04, *TINY]
    r = run(*base)
    assert r.exit_code == 0, r.stderr
    assert "time budget of 0.04 min spent after" in r.stderr
    log = json.loads((run_dir / "log.json").read_text())
    assert 1 <= len(log) < 100000
    # The cosine ran over the budget's time, not over the 100000 epochs: the last steps' rate is
    # near zero (over the epochs it would still be the peak).
    assert log[-1]["lr"] < 0.2e-3, log[-1]
    r = run(*base, "--resume")
    assert r.exit_code == 0 and "was spent by the run being resumed" in r.stderr, r.stderr
    assert len(json.loads((run_dir / "log.json").read_text())) == len(log)
    # Resumed without the option, the run keeps its budget (else the rate would climb back up).
    r = run(*[a for a in base if a not in ("--time-budget", 0.04)], "--resume")
    assert r.exit_code == 0 and "started with --time-budget 0.04, and goes on with it" in r.stderr, r.stderr
    assert len(json.loads((run_dir / "log.json").read_text())) == len(log)


def test_the_schedule_ramps_up_then_follows_the_budget_or_the_steps():
    from facemark.training.train import Trainer, TrainOptions

    t = Trainer.__new__(Trainer)  # the schedule alone: no pack, no model
    t.opts, t.base_lr, t.train_idx = TrainOptions("direct", Path("x"), batch=10), 1.0, np.arange(100)  # 10 warm-up steps
    assert t._lr(0, 1000) == pytest.approx(0.1) and t._lr(9, 1000) == pytest.approx(1.0)
    assert t._lr(505, 1000) == pytest.approx(0.5, abs=0.01)  # half-way down the cosine
    assert t._lr(2, 1000, spent=0.99) < 1e-3  # a budget spent during warm-up ends the schedule there too
    assert t._lr(100, 1000, spent=0.5) == pytest.approx(0.5)  # the budget ahead of the steps leads


def test_augmentation_settings_reach_the_geometry():
    from facemark.training.augment import augment_config, sample_geometry

    cfg = augment_config({"p_wide_rotate": 0, "rotate_narrow": 0, "scale": 0, "shift": 0, "flip": 0})
    a, t, flip = sample_geometry(16, cfg, "cpu", torch.Generator().manual_seed(0))
    assert torch.allclose(a, torch.eye(2).expand(16, 2, 2)) and not t.any() and not flip.any()
    a, _, flip = sample_geometry(16, augment_config({}), "cpu", torch.Generator().manual_seed(0))
    assert not torch.allclose(a, torch.eye(2).expand(16, 2, 2)) and flip.any()


def test_flip_averaged_teacher_labels_are_mirror_consistent(tiny_models, face_image):
    """Flip-averaged points of mirrored crops are exactly the mirror of the crops' points (a wrong
    landmark permutation or x mirror breaks this)."""
    from facemark.landmarker import flip_averaged
    from facemark.layouts import FLIP98

    model = OnnxModel(tiny_models["hourglass"])
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (3, model.size, model.size, 3), dtype=np.uint8)
    plain = flip_averaged(model, crops)
    mirrored = flip_averaged(model, np.ascontiguousarray(crops[:, :, ::-1]))
    expect = plain[:, FLIP98].copy()
    expect[..., 0] = 1 - expect[..., 0]
    assert np.allclose(mirrored, expect, atol=1e-5)
    assert not np.allclose(plain, expect, atol=1e-3)  # the tiny teacher is not symmetric by chance


@pytest.mark.parametrize("option, says", [(["--arch", "foo=1"], "not an option of the direct model"),
                                          (["--arch", "width_mult=abc"], "--arch"), (["--arch", "pool=max"], "pool must be"),
                                          (["--arch", "size=0"], "16 to 1024"), (["--arch", "readout=-2"], "readout must be"),
                                          (["--arch", "width_mult=1e300"], "too large to be a number of channels"),
                                          (["--lr", "3.5e38"], "--lr must be at most 10")])
def test_bad_model_options_are_one_line(option, says, wflw_root, tmp_path):
    """(width_mult=1e300 was torch's error with 60 C++ stack frames in its line; --lr 3.5e38, which
    float32 cannot hold, a traceback.)"""
    r = run("train", "--model", "direct", "--data", f"wflw={wflw_root}", "--epochs", 1, "--out", tmp_path / "o",
            "--cache", tmp_path / "c", *option)
    assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and len(r.stderr) < 300, r.stderr


@pytest.mark.parametrize("family, arch", [("hourglass", "width=0"), ("direct", "width_mult=0")])
def test_a_zero_width_is_refused_before_torch_warns(family, arch, wflw_root, tmp_path):
    """torch's own warning about an empty layer would be the first line the user reads."""
    r = run("train", "--model", family, "--data", f"wflw={wflw_root}", "--epochs", 1, "--out", tmp_path / "o",
            "--cache", tmp_path / "c", "--arch", arch)
    assert r.exit_code == 2 and f"--arch {arch}: must be a positive number" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_runs_saved_before_a_new_model_option_still_resume(wflw_root, tmp_path):
    """A checkpoint whose config predates an option (the direct model's pool) resumes with its default."""
    args = ["train", "--model", "direct", "--data", f"wflw={wflw_root}", "--batch", 4, "--out", tmp_path / "r",
            "--cache", tmp_path / "c", "--arch", "size=32", "--arch", "width_mult=0.25"]
    assert run(*args, "--epochs", 1).exit_code == 0
    ck = torch.load(tmp_path / "r" / "last.pt", weights_only=False)
    del ck["config"]["pool"]
    torch.save(ck, tmp_path / "r" / "last.pt")
    r = run(*args, "--epochs", 2, "--resume")
    assert r.exit_code == 0, r.stderr
    assert "resumed from" in r.stderr


def test_a_bad_label_or_image_is_skipped_and_named(tiny_models, face_image, tmp_path):
    """One broken file in a dataset is a 'skipped:' line naming it; the other faces are measured."""
    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 5, seed=3), "lfpw/testset")
    files = sorted((root / "lfpw" / "testset").glob("*.pts"))
    files[0].write_text("not a pts file")
    files[1].write_text(files[1].read_text().replace("{\n", "{\nnan nan\n", 1).replace("\n}", "", 1).rsplit("\n", 1)[0] + "\n}\n")
    next(p for p in files[2].parent.iterdir() if p.stem == files[2].stem and p.suffix != ".pts").write_bytes(b"\xff\xd8 damaged")
    out_json = tmp_path / "e.json"
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--boxes", "gt", "--json", out_json)
    assert r.exit_code == 0, r.stderr
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 3 and all(any(f.stem in line for line in skipped) for f in files[:3]), r.stderr
    entry = by_name(json.loads(out_json.read_text()), "tiny-direct")
    assert entry["subsets"]["all"]["faces"] == 2
    # The report says what was left out, as bench's does: damaged data is no clean 2-face run.
    assert entry["skipped"] == [line.removeprefix("skipped: ") for line in skipped]
    assert "Traceback" not in r.stderr


def test_no_output_replaces_an_input(tiny_models, face_image, tmp_path):
    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 2, seed=4), "lfpw/testset")
    pts = sorted(root.rglob("*.pts"))[0]
    image = next(p for p in pts.parent.iterdir() if p.stem == pts.stem and p.suffix != ".pts")
    before = {p: p.read_bytes() for p in (pts, image)}
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--json", pts)
    assert r.exit_code == 2 and "one of the inputs" in r.stderr
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--json", root / "eval.json")
    assert r.exit_code == 2 and "inside the data folder" in r.stderr  # (no new file in it either)
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--plot", image)
    assert r.exit_code == 2 and "one of the inputs" in r.stderr
    r = run("bench", "--models", tiny_models["direct"], "--image", image, "--json", image)
    assert r.exit_code == 2 and "one of the inputs" in r.stderr
    r = run("pack", "--data", f"300w={root}", "--out", image)
    assert r.exit_code == 2 and ".npz" in r.stderr
    assert all(p.read_bytes() == data for p, data in before.items())
    r = run("eval", "--data", f"300w={root}", "--model", "nope", "--json", tmp_path / "new" / "deeper" / "e.json")
    assert r.exit_code == 2 and not (tmp_path / "new").exists()  # a usage error leaves no folder behind
    assert run("export", tmp_path).exit_code == 2  # --out is never a default (it was weights/, the shipped models)
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--json", "/dev/null")
    assert r.exit_code == 2 and "not a regular file" in r.stderr  # refused before the work, not after it


def test_a_run_is_not_replaced_and_a_damaged_pack_is_refused(wflw_root, tmp_path):
    args = ["--model", "direct", "--epochs", 1, "--batch", 4, "--arch", "size=32", "--arch", "width_mult=0.25"]
    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    assert run("train", "--pack", pack, "--out", tmp_path / "r", *args).exit_code == 0
    best = (tmp_path / "r" / "best.pt").read_bytes()
    # --resume picks up the saved weights, their average and the optimiser, not only the epoch count.
    import torch

    from facemark.training.pack import Pack
    from facemark.training.train import TrainOptions, make_trainer

    # A pack written again clears what a killed writer left beside it (its own temporary names).
    import subprocess
    import sys

    from facemark.imageio import _host_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".fm-{_host_tag()}-{int(dead.stdout)}-x.npz"
    stale.write_bytes(b"half a pack")
    Pack.load(pack).save(pack)
    assert not stale.exists()
    saved = torch.load(tmp_path / "r" / "last.pt", weights_only=False)
    opts = TrainOptions("direct", tmp_path / "r", epochs=2, batch=4, model={"size": 32, "width_mult": 0.25}, resume=True)
    trainer = make_trainer(Pack.load(pack), opts, log=lambda m: None)
    assert trainer.epoch == 1
    for have, want in ((trainer.model, saved["model"]), (trainer.ema, saved["ema"])):
        for k, v in want.items():
            assert torch.equal(have.state_dict()[k].cpu(), v.cpu()), k
    assert trainer.optim.state_dict()["state"].keys() == saved["optim"]["state"].keys() != set()
    trainer.release()
    # The same faces in another order (--data options swapped): refused, saying that order matters.
    pk = Pack.load(pack)
    order = np.arange(len(pk))[::-1]
    crops = [pk.jpeg[pk.offsets[i]:pk.offsets[i + 1]] for i in order]
    swapped = Pack(np.concatenate(crops), np.concatenate([[0], np.cumsum([len(c) for c in crops])]), pk.target98[order],
                   pk.human68[order], pk.weight[order], pk.val[order], pk.source[order], pk.res, pk.margin)
    from facemark.errors import UsageError

    with pytest.raises(UsageError, match="trained on the same faces in another order: give the --data options in the run's"):
        make_trainer(swapped, opts, log=lambda m: None)
    # The same faces at another crop size: said so (it had been 'in another order').
    bigger = tmp_path / "p96.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", bigger, "--cache", tmp_path / "c", "--res", 96).exit_code == 0
    with pytest.raises(UsageError, match="was trained on 64 px crops; this pack's are 96 px"):
        make_trainer(Pack.load(bigger), opts, log=lambda m: None)
    swapped.target98[0, 0, 0] += 0.1  # (and another pack is still another pack)
    with pytest.raises(UsageError, match=r"was trained on another pack \(\d+ faces"):
        make_trainer(swapped, opts, log=lambda m: None)
    r = run("train", "--pack", pack, "--out", tmp_path / "r", *args)
    assert r.exit_code == 2 and "--resume continues it" in r.stderr
    assert (tmp_path / "r" / "best.pt").read_bytes() == best
    z = dict(np.load(pack))
    for name, change, says in [("nan", lambda z: z["target98"].__setitem__((0, 0, 0), np.nan), "not a finite number"),
                               ("short", lambda z: z.__setitem__("weight", z["weight"][:-1]), "disagree in length"),
                               ("held", lambda z: z.__setitem__("val", np.ones_like(z["val"])), "no training face"),
                               ("huge", lambda z: z["target98"].__setitem__((0, 0, 0), 1e30), "far outside its crop"),
                               ("negative", lambda z: z["weight"].__setitem__(0, -1.0), "a weight is negative")]:
        bad = {k: v.copy() for k, v in z.items()}
        change(bad)
        np.savez(tmp_path / f"{name}.npz", **bad)
        r = run("train", "--pack", tmp_path / f"{name}.npz", "--out", tmp_path / name, *args)
        assert r.exit_code == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / name).exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    r = run("train", "--pack", pack, "--out", tmp_path / "j", "--init", tmp_path / "junk.pt", *args)
    assert r.exit_code == 2 and "not a facemark model file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("train", "--pack", pack, "--out", tmp_path / "j", "--init", tmp_path / "nope.pt", *args)
    assert r.exit_code == 2 and f"--init {tmp_path / 'nope.pt'}: model file not found" in r.stderr, r.stderr


def test_a_loss_that_is_no_longer_a_number_stops_training(wflw_root, tmp_path, monkeypatch):
    from facemark.training import train

    monkeypatch.setattr(train, "loss_for", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    r = run("train", "--model", "direct", "--data", f"wflw={wflw_root}", "--epochs", 2, "--batch", 4, "--out",
            tmp_path / "r", "--cache", tmp_path / "c", "--arch", "size=32", "--arch", "width_mult=0.25")
    assert r.exit_code == 1 and "the loss became nan" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()  # nothing was saved: not even an empty run folder is left



def test_a_run_that_fails_before_its_first_last_pt_leaves_no_best_pt(face_image, tmp_path, monkeypatch):
    """From --init weights, with faces held out, best.pt holds them before the first epoch: a run
    whose loss then became nan had left it, and the folder refused a new run ("holds a training
    run with no last.pt") and --resume alike."""
    root = tmp_path / "wflw"
    write_wflw(root, synthetic_faces(face_image, 40, seed=1), [])
    args = ["--model", "direct", "--data", f"wflw={root}", "--epochs", 2, "--batch", 4, "--out", tmp_path / "r",
            "--cache", tmp_path / "c", "--init", "direct"]
    from facemark.training import train

    monkeypatch.setattr(train, "loss_for", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    r = run("train", *args)
    assert r.exit_code == 1 and "the loss became nan" in r.stderr, r.stderr
    assert not (tmp_path / "r" / "best.pt").exists()
    monkeypatch.undo()
    assert run("train", *args, "--max-minutes", 0.0001).exit_code == 0


def test_an_interrupted_prepare_keeps_what_it_computed(wflw_root, tmp_path):
    """Ctrl-C in 'facemark pack' keeps the detector work done so far: the next run does the rest."""
    from facemark.detector import RetinaFace
    from facemark.training import datasets
    from facemark.training.prepare import prepare

    samples = [s for s in datasets.load_wflw(wflw_root) if s.split == "train"]
    real = RetinaFace(threshold=0.3)

    class Interrupted:
        calls = 0

        def detect(self, image):
            Interrupted.calls += 1
            if Interrupted.calls == 4:
                raise KeyboardInterrupt
            return real.detect(image)

    with pytest.raises(KeyboardInterrupt):
        prepare(samples, Interrupted(), None, tmp_path)

    class Counting:
        calls = 0

        def detect(self, image):
            Counting.calls += 1
            return real.detect(image)

    again = prepare(samples, Counting(), None, tmp_path)
    assert Counting.calls == len(samples) - 3 and again.found.sum() == len(samples)


def test_second_round_of_bad_input(tiny_models, face_image, wflw_root, tmp_path):
    """Found by a second hostile pass: calibrate's --out over an input, a pack written into its own
    cache, a FIFO label file (a hang), the same faces given twice, resuming on another pack, and a
    teacher cache that is really a pack."""
    import os

    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 3, seed=5), "lfpw/testset")
    pts = sorted(root.rglob("*.pts"))[0]
    before = pts.read_bytes()
    r = run("calibrate", "--data", f"300w={root}", "--teacher", tmp_path / "t", "--out", pts.with_suffix(".json"))
    assert r.exit_code == 2 and "inside the data folder" in r.stderr  # (refused before the missing teacher)
    pts.with_suffix(".json").write_text("{}")
    r = run("calibrate", "--data", f"300w={root}", "--teacher", tmp_path / "t", "--out", pts)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and pts.read_bytes() == before
    r = run("pack", "--data", f"wflw={wflw_root}", "--cache", tmp_path / "c", "--out", tmp_path / "c" / "p.npz")
    assert r.exit_code == 2 and "inside --cache" in r.stderr
    os.mkfifo(root / "lfpw" / "testset" / "fifo.pts")
    (root / "lfpw" / "testset" / "fifo.jpg").write_bytes(pts.with_suffix(".jpg").read_bytes())
    out_json = tmp_path / "e.json"
    r = run("eval", "--data", f"300w={root}", "--data", f"300w={root / 'lfpw'}", "--model", tiny_models["direct"],
            "--boxes", "gt", "--json", out_json)
    assert r.exit_code == 0, r.stderr
    assert "fifo.pts is not a regular file" in r.stderr and "counted once" in r.stderr
    assert by_name(json.loads(out_json.read_text()), "tiny-direct")["subsets"]["all"]["faces"] == 3
    args = ["--model", "direct", "--epochs", 1, "--batch", 4, "--arch", "size=32", "--arch", "width_mult=0.25"]
    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    assert run("train", "--pack", pack, "--out", tmp_path / "r", *args).exit_code == 0
    other = {k: v.copy() for k, v in np.load(pack).items()}
    other["target98"] += 0.001
    np.savez(tmp_path / "other.npz", **other)
    r = run("train", "--pack", tmp_path / "other.npz", "--out", tmp_path / "r", "--resume", *args)
    assert r.exit_code == 2 and "another pack" in r.stderr, r.stderr
    kept = pack.read_bytes()
    r = run("train", "--pack", pack, "--out", tmp_path / "r2", "--teacher-model", tiny_models["hourglass"],
            "--teacher-cache", pack, *args)
    assert r.exit_code == 2 and "not a teacher-label cache" in r.stderr and pack.read_bytes() == kept
    assert not (tmp_path / "r2").exists()  # a refused run leaves no empty folder


def test_pack_skips_a_truncated_jpeg_and_names_it(face_image, tmp_path):
    """cv2.imread hands back a truncated JPEG with its lost half grey; pack reads images as
    inference does, so such a face is a 'skipped:' line, not a training crop of grey."""
    from facemark.training.pack import Pack

    root = tmp_path / "wflw"
    write_wflw(root, synthetic_faces(face_image, 4, seed=5), [])
    victim = root / "WFLW_images" / "0--Synthetic" / "train_1.jpg"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    r = run("pack", "--data", f"wflw={root}", "--out", tmp_path / "p.npz", "--cache", tmp_path / "c")
    assert r.exit_code == 0, r.stderr
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "train_1.jpg" in skipped[0], r.stderr
    assert len(Pack.load(tmp_path / "p.npz")) == 3


def test_an_older_prepare_cache_is_removed_when_the_new_one_is_written(face_image, tmp_path):
    from facemark.training.prepare import CACHE_VERSION

    root, cache = tmp_path / "wflw", tmp_path / "c"
    write_wflw(root, synthetic_faces(face_image, 2, seed=6), [])
    cache.mkdir()
    old = cache / f"prepared-v{CACHE_VERSION - 1}-0123456789ab.npz"
    old.write_bytes(b"an older facemark's cache")
    other = cache / "notes.txt"
    other.write_text("not ours")
    r = run("pack", "--data", f"wflw={root}", "--out", tmp_path / "p.npz", "--cache", cache)
    assert r.exit_code == 0, r.stderr
    assert not old.exists() and other.exists()
    assert [p.name.startswith(f"prepared-v{CACHE_VERSION}-") for p in cache.glob("prepared-*")] == [True]


def test_calibrate_leaves_out_an_unreadable_image_and_never_writes_nan(face_image, tmp_path):
    """One training image that does not decode used to give NaN everywhere in the calibration,
    and that file then broke every later detect."""
    from facemark.training import calibrate

    teacher = shared_path("models", "pfld_ghostone")
    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 4, seed=7), "afw")
    (root / "afw" / "face_0.jpg").write_text("not an image")
    out = tmp_path / "cal.json"
    r = run("calibrate", "--data", f"300w={root}", "--teacher", teacher, "--out", out, "--cache", tmp_path / "c")
    assert r.exit_code == 0, r.stderr
    assert "skipped:" in r.stderr and "face_0.jpg" in r.stderr
    assert "warning: a fit to 3 faces is noisy" in r.stderr and "replaced the calibration" not in r.stderr
    cal = json.loads(out.read_text())
    assert cal["faces"] == 3 and np.isfinite(calibrate._numbers(cal["templates"]) + calibrate._numbers(cal["mean98"])).all()


def test_a_calibration_with_a_number_that_is_not_finite_is_never_written(tmp_path):
    from facemark.training import calibrate

    cal = json.loads((Path(calibrate.__file__).parents[1] / "calibration.json").read_text())
    cal.pop("provenance", None)
    for key in ("mean98", "templates", "labelmap"):
        broken = json.loads(json.dumps(cal))
        holder = broken[key]
        while isinstance(holder, (dict, list)):  # down to the first innermost list of numbers
            inner = next(iter(holder.values())) if isinstance(holder, dict) else holder[0]
            if not isinstance(inner, (dict, list)):
                break
            holder = inner
        holder[0] = float("nan")
        with pytest.raises(ValueError, match="not finite"):
            calibrate.write(broken, tmp_path / "bad.json", "test")
        assert not (tmp_path / "bad.json").exists(), key
    calibrate.write(cal, tmp_path / "good.json", "test")
    assert json.loads((tmp_path / "good.json").read_text())["mean98"] == cal["mean98"]


@pytest.mark.parametrize("needs_teacher", [False, True])
def test_calibrate_says_what_is_wrong_before_the_long_pass(face_image, tmp_path, needs_teacher):
    root = tmp_path / "300w"
    faces = synthetic_faces(face_image, 2, seed=8)
    write_300w(root, faces[:1], "lfpw/testset")
    write_300w(root, faces[1:], "afw")
    bad_teacher = tmp_path / "bad"
    bad_teacher.mkdir()
    (bad_teacher / "PFLD_x.onnx").write_bytes(b"junk")
    if needs_teacher:  # (a fresh clone has no ../shared: the other cases still run there)
        cases = [([f"300w={root / 'lfpw'}", shared_path("models", "pfld_ghostone")], "no training faces")]
    else:
        cases = [([f"300w={root}", tmp_path], "no PFLD_"), ([f"300w={root}", bad_teacher], "not a valid ONNX model")]
    for (data, t), says in cases:
        r = run("calibrate", "--data", data, "--teacher", t, "--out", tmp_path / "c.json", "--cache", tmp_path / "c")
        assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.stderr, (data, r.stderr)


def test_a_test_folder_given_as_the_data_root_is_still_the_test_split(face_image, tmp_path, monkeypatch):
    from facemark.training.datasets import load_pts_dir

    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 2, seed=9), "helen/testset")
    assert {s.split for s in load_pts_dir(root / "helen" / "testset")} == {"test"}
    assert {s.split for s in load_pts_dir(root)} == {"test"}
    # The subset says which set it is, whichever folder is the root (it was 'testset' from helen/).
    assert {s.subset for s in load_pts_dir(root)} == {"helen/testset"}
    assert {s.subset for s in load_pts_dir(root / "helen")} == {"helen/testset"}
    # (a set's own folder named with its parent's: two given side by side stay two subsets)
    assert {s.subset for s in load_pts_dir(root / "helen" / "testset")} == {"helen/testset"}
    monkeypatch.chdir(root / "helen" / "testset")
    assert {s.subset for s in load_pts_dir(".")} == {"helen/testset"}  # (not '', nor '.')


def test_bad_label_rows_are_named_not_dropped(face_image, tmp_path):
    """A CSV row cut short, or naming an image that is not there, is a 'skipped:' line; a folder
    whose every label file is bad says why, not 'no .pts files'."""
    from facemark import labelmap
    from facemark.training.datasets import load_csv68, load_pts_dir

    faces = synthetic_faces(face_image, 2, seed=10)
    rows = []
    for i, (img, pts) in enumerate(faces):
        cv2.imwrite(str(tmp_path / f"f{i}.jpg"), img)
        rows.append(",".join([f"f{i}.jpg", *(f"{v:.2f}" for v in labelmap.to68(pts).reshape(-1))]))
    cut, missing = rows[0].split(",")[:100], "gone.jpg," + rows[1].split(",", 1)[1]
    csv_path = tmp_path / "k.csv"
    csv_path.write_text("\n".join(["header", *rows, ",".join(cut), missing]) + "\n")
    skipped = []
    samples = load_csv68(csv_path, skipped=skipped)
    assert len(samples) == 2 and all(s.kind == "csv68" for s in samples)
    assert len(skipped) == 2 and "line 4" in skipped[0] and "gone.jpg" in skipped[1], skipped
    (tmp_path / "pts").mkdir()
    cv2.imwrite(str(tmp_path / "pts" / "a.jpg"), faces[0][0])
    (tmp_path / "pts" / "a.pts").write_text("version: 1\n")
    with pytest.raises(ValueError, match="1 skipped, e.g. .*a.pts"):
        load_pts_dir(tmp_path / "pts", skipped=[])


def test_csv68_faces_get_their_weight_whatever_the_file_is_called(face_image, tmp_path):
    from facemark import labelmap
    from facemark.training.pack import Pack

    teacher = shared_path("models", "pfld_ghostone")
    rows = []
    for i, (img, pts) in enumerate(synthetic_faces(face_image, 2, seed=11)):
        cv2.imwrite(str(tmp_path / f"f{i}.jpg"), img)
        rows.append(",".join([f"f{i}.jpg", *(f"{v:.2f}" for v in labelmap.to68(pts).reshape(-1))]))
    (tmp_path / "mine.csv").write_text("\n".join(["header", *rows]) + "\n")
    r = run("pack", "--data", f"csv68={tmp_path / 'mine.csv'}", "--teacher", teacher, "--out", tmp_path / "p.npz",
            "--cache", tmp_path / "c", "--csv68-weight", 0.25)
    assert r.exit_code == 0, r.stderr
    pk = Pack.load(tmp_path / "p.npz")
    assert pk.weight.tolist() == [0.25, 0.25] and not pk.val.any()


def test_the_prepare_cache_knows_its_teacher_s_weights_and_survives_damage(face_image, tmp_path):
    """Two teachers whose files have the same names but other weights get separate caches; a cache
    file cut short is rebuilt, not the end of the run."""
    from facemark.training.prepare import cache_name
    from facemark.training.teacher import Teacher

    a, b = tmp_path / "a", tmp_path / "b"
    for d, content in ((a, b"weights one"), (b, b"weights two")):
        d.mkdir()
        (d / "PFLD_x.onnx").write_bytes(content)
    assert cache_name(Teacher([a / "PFLD_x.onnx"])) != cache_name(Teacher([b / "PFLD_x.onnx"]))
    root, cache = tmp_path / "wflw", tmp_path / "c"
    write_wflw(root, synthetic_faces(face_image, 2, seed=12), [])
    cache.mkdir()
    (cache / cache_name(None)).write_bytes(b"PK\x03\x04 cut short")
    r = run("pack", "--data", f"wflw={root}", "--out", tmp_path / "p.npz", "--cache", cache)
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r.stderr
    assert np.load(cache / cache_name(None))["keys"].size == 2  # rebuilt


def test_export_writes_both_files_or_neither(tiny_models, tmp_path, monkeypatch):
    """A full disk while torch writes its file: one line and exit 1, and no new .onnx beside an
    older .pt (it was a traceback and half a pair)."""
    import shutil

    import facemark.training.export as E

    out = tmp_path / "w"
    out.mkdir()
    shutil.copy(tiny_models["direct"].with_suffix(".pt"), out / "direct.pt")
    before = (out / "direct.pt").read_bytes()

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 512")

    monkeypatch.setattr(E.torch, "save", full)
    r = run("export", tiny_models["direct"].with_suffix(".pt"), "--out", out, "--name", "direct")
    assert r.exit_code == 1 and "disk full?" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["direct.pt"] and (out / "direct.pt").read_bytes() == before


def test_export_replaces_an_earlier_export_but_no_other_onnx_file(tiny_models, tmp_path):
    """A file named NAME.onnx that is no facemark model was replaced (NAME.pt was refused)."""
    pt = tiny_models["direct"].with_suffix(".pt")
    out = tmp_path / "w"
    assert run("export", pt, "--out", out, "--name", "m").exit_code == 0
    assert run("export", pt, "--out", out, "--name", "m").exit_code == 0  # (its own earlier export: replaced)
    (out / "notes.onnx").write_text("my notes")
    r = run("export", pt, "--out", out, "--name", "notes")
    assert r.exit_code == 2 and "notes.onnx exists and is not a facemark model; not overwritten" in r.stderr, r.stderr
    assert (out / "notes.onnx").read_text() == "my notes" and not (out / "notes.pt").exists()
    r = run("export", pt, "--out", out, "--name", "hourglass")  # (another family's name: every table would misname it)
    assert r.exit_code == 2 and "this checkpoint is a direct model" in r.stderr and not (out / "hourglass.onnx").exists()


def test_weights_exported_over_a_shipped_name_are_not_taken_for_the_shipped_ones(tiny_models, tmp_path, monkeypatch):
    """The README's retraining exports over weights/direct.onnx; results of the new weights still
    said "model": "direct", so a resumed run counted the shipped model's outputs as done, and
    nothing told the two apart. Now weights other than those this version ships carry their digest,
    by name as by path (the Ray run's label too), and export says what it replaced."""
    import re

    from facemark import backends, cluster
    from facemark.landmarker import FaceLandmarker

    cv2.imwrite(str(tmp_path / "a.jpg"), cv2.imread("examples/astronaut.jpg"))
    r = run("detect", tmp_path / "a.jpg", "--out", tmp_path / "o", "--model", "direct")
    assert r.exit_code == 0 and json.loads((tmp_path / "o" / "a.jpg.json").read_text())["model"] == "direct"
    assert cluster.model_label("direct") == FaceLandmarker(model="direct").model_name == "direct"
    mine = tmp_path / "weights"
    mine.mkdir()
    for f in backends.weights_dir().iterdir():
        (mine / f.name).symlink_to(f)
    pt = tiny_models["direct"].with_suffix(".pt")
    for p in ("direct.onnx", "direct.pt"):
        (mine / p).unlink()
    monkeypatch.setattr(backends, "weights_dir", lambda: mine)  # (the package's weights/, for this test)
    r = run("export", pt, "--out", mine, "--name", "direct")
    assert r.exit_code == 0 and "replacing" not in r.stderr, r.stderr
    r = run("export", pt, "--out", mine, "--name", "direct")  # (what the README's step does to weights/)
    assert r.exit_code == 0 and "(replacing the direct.onnx and direct.pt there)" in r.stderr, r.stderr
    label = re.search(r'results of them say "model": "(direct@[0-9a-f]{8})"', r.stderr)
    assert label and "not the direct weights facemark ships" in r.stderr, r.stderr
    assert FaceLandmarker(model="direct").model_name == label[1] == cluster.model_label("direct")
    r = run("detect", tmp_path / "a.jpg", "--out", tmp_path / "o", "--model", "direct")
    assert r.exit_code == 0 and "already done" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "o" / "a.jpg.json").read_text())["model"] == label[1]
    r = run("export", pt, "--out", tmp_path / "elsewhere", "--name", "direct")  # (not into weights/: no note)
    assert r.exit_code == 0 and "replacing" not in r.stderr and "note" not in r.stderr, r.stderr


def test_one_export_is_one_model_on_the_cpu_and_on_a_gpu(tiny_models, tmp_path):
    """An export's .onnx (run on the CPU) and .pt (on a GPU, or named) are the same weights, but
    results and bench rows named them by two digests (mymodel@6a8384e1 and mymodel@d8a8bf40), and a
    resume on the other device redid every image. The .pt now carries its ONNX file's digest."""
    from facemark import cluster
    from facemark.landmarker import FaceLandmarker

    pt = tiny_models["direct"].with_suffix(".pt")
    assert run("export", pt, "--out", tmp_path / "w", "--name", "mine").exit_code == 0
    onnx_name = FaceLandmarker(model=str(tmp_path / "w" / "mine.onnx")).model_name
    pt_name = FaceLandmarker(model=str(tmp_path / "w" / "mine.pt")).model_name
    assert onnx_name == pt_name and onnx_name.startswith("mine@"), (onnx_name, pt_name)
    assert cluster.model_label(str(tmp_path / "w" / "mine.pt")) == pt_name
    from facemark.backends import weights_digest

    own = FaceLandmarker(model=str(pt)).model_name  # (a state saved without its ONNX: its own file's digest)
    assert own == f"tiny-direct@{weights_digest(pt)[:8]}", own


@pytest.mark.parametrize("older", [True, False])
def test_export_undoes_the_first_rename_when_the_second_fails(tiny_models, tmp_path, monkeypatch, older):
    """direct.pt cannot be replaced (here: another user's file in a sticky folder): the .onnx was
    replaced already, leaving a new .onnx beside the old .pt. The older .onnx comes back (or, with
    none before, none stays)."""
    import shutil

    import facemark.training.export as E
    from facemark.models import load_state

    out = tmp_path / "w"
    out.mkdir()
    if older:
        shutil.copy(tiny_models["direct"], out / "direct.onnx")
    before = (out / "direct.onnx").read_bytes() if older else None
    (out / "direct.pt").write_bytes(b"another user's file")
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == "direct.pt":
            raise PermissionError(1, "Operation not permitted", str(dst))
        return real(src, dst)

    monkeypatch.setattr(E.os, "replace", replace)
    net, meta = load_state(tiny_models["direct"].with_suffix(".pt"))
    with pytest.raises(PermissionError):
        E.export_pair(net, out / "direct.onnx", out / "direct.pt", meta)
    names = sorted(p.name for p in out.iterdir())
    assert names == (["direct.onnx", "direct.pt"] if older else ["direct.pt"])
    if older:
        assert (out / "direct.onnx").read_bytes() == before


def test_train_checks_res_and_the_run_folder_before_building_a_pack(wflw_root, tmp_path):
    r = run("train", "--model", "direct", "--data", f"wflw={wflw_root}", "--res", 5, "--out", tmp_path / "r",
            "--cache", tmp_path / "c")
    assert r.exit_code == 2 and "--res must be between" in r.stderr
    r = run("train", "--model", "direct", "--pack", tmp_path, "--out", tmp_path / "r")
    assert r.exit_code == 2 and "is a folder" in r.stderr
    # A run whose last.pt is gone: --resume would have started over and replaced its files.
    done = tmp_path / "done"
    done.mkdir()
    for f in ("best.pt", "model.onnx", "log.csv"):
        (done / f).write_bytes(b"a finished run's " + f.encode())
    for resume in ((), ("--resume",)):
        r = run("train", "--model", "direct", "--pack", tmp_path / "p.npz", "--out", done, *resume)
        assert r.exit_code == 2 and "Traceback" not in r.stderr, r.stderr
        assert "no last.pt to continue from" in r.stderr and "--resume continues" not in r.stderr, r.stderr
    assert sorted(p.name for p in done.iterdir()) == ["best.pt", "log.csv", "model.onnx"]
    assert (done / "best.pt").read_bytes() == b"a finished run's best.pt"
    # Points other than the packs' 98 cannot be trained: one line, before any data is loaded.
    for family in ("direct", "hourglass", "hybrid"):
        r = run("train", "--model", family, "--pack", tmp_path / "p.npz", "--out", tmp_path / "n", "--arch", "num_points=5")
        assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1].endswith("have 98 points"), r.stderr


def test_eval_and_bench_write_strict_json_and_say_when_nothing_was_measured(tiny_models, face_image, tmp_path):
    """NaN is not JSON: a subset with no face found gets null. Images that all fail to read are an
    error, not a table of nan and exit 0. bench's NME sits on the rows it was measured with."""
    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 2, seed=13), "lfpw/testset")
    for jpg in sorted(root.rglob("*.jpg")):
        cv2.imwrite(str(jpg), np.full((300, 300, 3), 128, np.uint8))  # no face to find
    strict = {"parse_constant": lambda c: pytest.fail(f"{c} in the JSON")}
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--json", tmp_path / "e.json")
    assert r.exit_code == 0, r.stderr
    rep = by_name(json.loads((tmp_path / "e.json").read_text(), **strict), "tiny-direct")
    assert rep["subsets"]["all"]["nme"] is None and rep["subsets"]["all"]["missed"] == 2
    assert [f["nme"] for f in rep["faces"]] == [None, None]  # (missed)
    assert "found none of the 2 labelled faces" in r.stderr, r.stderr
    assert "nan" not in r.stdout.lower() and " - " in r.stdout  # (the table's NME as the JSON's: none, not "nan")
    r = run("bench", "--models", tiny_models["direct"], "--batch", 1, "--data", f"300w={root}", "--json", tmp_path / "b.json")
    assert r.exit_code == 0, r.stderr
    rows = [x for x in json.loads((tmp_path / "b.json").read_text(), **strict)["rows"] if x["stage"] == "landmarks"]
    assert {x["backend"] for x in rows} == {"onnxruntime-cpu", "torch-cpu"} and all(x["nme"] is None for x in rows)
    for jpg in sorted(root.rglob("*.jpg")):
        jpg.write_text("not an image")
    r = run("eval", "--data", f"300w={root}", "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "no face in --data could be measured" in r.stderr, r.stderr
    r = run("eval", "--data", f"300w={root}", "--model", ",")  # (it blamed the images: "none could be read")
    assert r.exit_code == 2 and "--model names no model" in r.stderr, r.stderr


def test_bench_nme_is_shown_on_the_backend_that_measured_it(tiny_models, face_image, tmp_path):
    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 2, seed=14), "lfpw/testset")
    r = run("bench", "--models", "direct", "--batch", 1, "--data", f"300w={root}", "--json", tmp_path / "b.json")
    assert r.exit_code == 0, r.stderr  # (a shipped name: both backends' rows carry the same model name)
    rows = {x["backend"]: x for x in json.loads((tmp_path / "b.json").read_text())["rows"] if x["stage"] == "landmarks"}
    assert rows["onnxruntime-cpu"]["nme"] is not None and rows["torch-cpu"]["nme"] is None
    r = run("bench", "--models", tiny_models["direct"].with_suffix(".pt"), "--batch", 1, "--data", f"300w={root}",
            "--json", tmp_path / "b.json")  # a .pt runs on torch (fp32 on a CPU): its NME is that row's
    assert r.exit_code == 0, r.stderr
    rows = {x["backend"]: x for x in json.loads((tmp_path / "b.json").read_text())["rows"] if x["stage"] == "landmarks"}
    assert rows["torch-cpu"]["nme"] is not None and rows["onnxruntime-cpu"]["nme"] is None


def test_bench_takes_every_data_and_says_what_its_nme_leaves_out(face_image, tmp_path):
    """Only the last of two --data was measured, without a word; faces the detector missed were
    left out of the NME silently (no count), and an unreadable image vanished."""
    other = tmp_path / "other"
    write_300w(tmp_path / "300w", synthetic_faces(face_image, 2, seed=14), "lfpw/testset")
    write_300w(other, synthetic_faces(face_image, 3, seed=15), "helen/testset")
    cv2.imwrite(str(other / "helen/testset/face_1.jpg"), np.full((300, 300, 3), 128, np.uint8))  # no face
    (other / "helen/testset/face_2.jpg").write_text("not an image")
    r = run("bench", "--models", "direct", "--batch", 1, "--data", f"300w={tmp_path / '300w'}", "--data", f"300w={other}",
            "--json", tmp_path / "b.json")
    assert r.exit_code == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "note: NME of direct: the detector missed 1 of 4 face(s), left out of it" in said, said
    assert f"{other / 'helen/testset/face_2.jpg'}" in said, said
    row = next(x for x in json.loads((tmp_path / "b.json").read_text())["rows"]
               if x["stage"] == "landmarks" and x["backend"] == "onnxruntime-cpu")
    assert row["missed"] == 1 and row["nme"] is not None
    write_300w(tmp_path / "train", synthetic_faces(face_image, 1, seed=16), "afw")
    r = run("bench", "--models", "direct", "--batch", 1, "--data", f"300w={tmp_path / 'train'}")
    assert r.exit_code == 2 and "its 1 face(s) are all training faces" in r.stderr, r.stderr


def test_a_cache_that_fails_to_decompress_is_rebuilt(tmp_path, monkeypatch):
    import zlib

    from facemark.training import prepare

    path = tmp_path / "prepared.npz"
    np.savez_compressed(path, keys=np.array(["a"]), det_box=np.zeros((1, 4)), det_kps=np.zeros((1, 5, 2)),
                        det_score=np.zeros(1), teacher=np.zeros((1, 98, 2)))
    assert prepare._load_cache(path) is not None

    def damaged(*a, **k):
        raise zlib.error("Error -3 while decompressing data: invalid distance too far back")

    monkeypatch.setattr(prepare.np, "load", damaged)
    assert prepare._load_cache(path) is None


def test_a_model_given_three_times_is_reported_as_name_name2_name3(tiny_models, face_image, tmp_path):
    """The JSON keys count per name (it was the position in --model: direct, direct#2, hybrid, hybrid#4)."""
    from facemark.evaluation.evaluate import run_eval

    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 1, seed=3), "lfpw/testset")
    m = str(tiny_models["direct"])
    results, _ = run_eval([f"300w={root}"], [m, str(tiny_models["hourglass"]), m, m], boxes="gt",
                          json_path=tmp_path / "e.json")
    keys = list(json.loads((tmp_path / "e.json").read_text()))
    name = keys[0]
    assert keys == [name, keys[1], f"{name}#2", f"{name}#3"] and "#" not in keys[1]
    assert [r.model for r in results] == keys  # (the printed tables and the plot's labels)


def test_held_out_points_are_decoded_in_float32_as_shipped_models_do(wflw_root, tmp_path):
    """With mixed precision (CUDA's bf16; here the CPU's, forced) the network runs in bf16 but the
    points are read in float32, as ``Predictor`` and the ONNX export do: a bf16 decode moved them
    by up to 0.4 px, noise in the number that picks best.pt."""
    import math

    import torch

    import facemark.training.train as T
    from facemark.training.pack import Pack

    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    z = dict(np.load(pack))
    z["val"][:3] = 1
    np.savez(pack, **z)
    trainer = T.make_trainer(Pack.load(pack), T.TrainOptions("hybrid", tmp_path / "r", epochs=1, batch=4),
                             log=lambda m: None)
    trainer.amp = True
    seen, decode = [], trainer.ema.decode

    def watched(out):
        seen.append(torch.is_autocast_enabled("cpu"))
        return decode(out)

    trainer.ema.decode = watched
    assert math.isfinite(trainer.validate()) and seen and not any(seen)


def test_a_held_out_nme_that_is_not_a_number_never_becomes_the_best(wflw_root, tmp_path, monkeypatch):
    """NaN used to count as better (meant for 'nothing held out'): best.pt was overwritten by the
    model whose points were not numbers, and no later epoch could beat a NaN best."""
    import math

    import facemark.training.train as T
    from facemark.training.pack import Pack

    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    z = dict(np.load(pack))
    z["val"][:3] = 1  # three faces held out
    np.savez(pack, **z)
    opts = T.TrainOptions("direct", tmp_path / "r", epochs=3, batch=4, model={"size": 32, "width_mult": 0.25})
    trainer = T.make_trainer(Pack.load(pack), opts, log=lambda m: None)
    assert len(trainer.val_idx) > 0
    vals = iter([0.05, float("nan"), 0.04])
    monkeypatch.setattr(trainer, "validate", lambda model=None: next(vals))
    kept, real_save = [], T.save_state

    def save(model, path, meta=None, **kw):
        if Path(path).name == "best.pt":
            kept.append(meta["val_nme"])
        return real_save(model, path, meta=meta, **kw)

    monkeypatch.setattr(T, "save_state", save)
    trainer.fit()
    assert kept == [5.0, 4.0] and math.isclose(trainer.best, 0.04)
    nan = T.make_trainer(Pack.load(pack), T.TrainOptions("direct", tmp_path / "n", epochs=1, batch=4,
                                                          model={"size": 32, "width_mult": 0.25}), log=lambda m: None)
    monkeypatch.setattr(nan, "validate", lambda model=None: float("nan"))
    nan.fit()
    with pytest.raises(T.TrainingFailed, match="no epoch gave held-out points that are numbers"):
        nan.export_best()  # (not a missing file's OSError, whose advice would be to export best.pt elsewhere)


def test_a_wflw_list_with_no_usable_line_is_said_as_such(tmp_path):
    """It was 'no WFLW list files', naming a folder that holds them."""
    from facemark.training.datasets import load_wflw

    ann = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True)
    (tmp_path / "WFLW_images").mkdir()
    (ann / "list_98pt_rect_attr_test.txt").write_text("1 2 3\n")
    skipped: list[str] = []
    with pytest.raises(ValueError, match=r"no usable face in .*attr_test.txt: 1 line\(s\) skipped, e.g. .* line 1"):
        load_wflw(tmp_path, skipped)
    (ann / "list_98pt_rect_attr_test.txt").write_text("")
    with pytest.raises(ValueError, match="no face lines"):
        load_wflw(tmp_path, [])
    (ann / "list_98pt_rect_attr_test.txt").unlink()
    with pytest.raises(ValueError, match="no WFLW list files"):
        load_wflw(tmp_path, [])


def test_two_trains_into_one_run_folder_do_not_mix(wflw_root, tmp_path):
    """Two `facemark train` into one --out at once both ran to the end, writing one folder's
    last.pt, best.pt and logs in turn. The second is refused once the first holds the folder, and
    leaves it as it was (the folder is never empty, so never removed under the first)."""
    import os

    from facemark.errors import UsageError
    from facemark.training.train import TrainOptions, load_pack, make_trainer

    pack = load_pack(None, [f"wflw={wflw_root}"], None, tmp_path / "c", 192)
    opts = TrainOptions("direct", tmp_path / "run", epochs=1, batch=4, model={"size": 32, "width_mult": 0.25})
    first = make_trainer(pack, opts, log=lambda *a: None)
    try:
        with pytest.raises(UsageError, match="another facemark train is running in"):
            make_trainer(pack, replace_opts(opts, resume=True), log=lambda *a: None)
        assert (tmp_path / "run").is_dir()
    finally:
        first.release()
    make_trainer(pack, replace_opts(opts, resume=True), log=lambda *a: None)  # (free once the first has ended)


def replace_opts(opts, **changes):
    from dataclasses import replace

    return replace(opts, **changes)


def test_a_cache_with_keypoints_no_detector_gives_is_no_crash(face_image, tmp_path):
    """Detector keypoints in the cache that no detector gives (five at one spot, 1e30): pack died with
    a DegeneratePoints traceback. Points at one spot are placed as a missed face; huge values mean a
    damaged cache, rebuilt."""
    from facemark.training.pack import Pack

    root, cache = tmp_path / "wflw", tmp_path / "c"
    write_wflw(root, synthetic_faces(face_image, 2, seed=6), [])
    r = run("pack", "--data", f"wflw={root}", "--out", tmp_path / "p.npz", "--cache", cache)
    assert r.exit_code == 0, r.stderr
    (made,) = cache.glob("prepared-*.npz")
    for value in (100.0, 1e30):
        with np.load(made, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        assert not np.isnan(arrays["det_kps"][0]).any()  # (the face was found: its keypoints are used)
        arrays["det_kps"][0] = value
        np.savez_compressed(made, **arrays)
        r = run("pack", "--data", f"wflw={root}", "--out", tmp_path / f"p{value:g}.npz", "--cache", cache)
        assert r.exit_code == 0 and "Traceback" not in r.stderr, r.stderr
        assert len(Pack.load(tmp_path / f"p{value:g}.npz")) == 2


def test_a_cache_that_cannot_be_written_does_not_lose_the_pack(face_image, tmp_path, monkeypatch):
    """The detector/teacher cache on a full disk: pack stopped with 'cannot write to standard
    output' and wrote no pack, though every face was done and the cache is optional."""
    import errno

    from facemark.training import prepare
    from facemark.training.pack import Pack

    root = tmp_path / "wflw"
    write_wflw(root, synthetic_faces(face_image, 2, seed=6), [])
    real = prepare.atomic_write

    def full(path, *a, **k):
        if "prepared-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(prepare, "atomic_write", full)
    r = run("pack", "--data", f"wflw={root}", "--out", tmp_path / "p.npz", "--cache", tmp_path / "c")
    assert r.exit_code == 0, r.stderr
    assert "cannot be written (No space left on device): this run goes on without it" in r.stderr
    assert len(Pack.load(tmp_path / "p.npz")) == 2


def test_a_resume_with_other_settings_says_so(wflw_root, tmp_path):
    """--resume took a changed --lr or --batch, or --epochs already done, without a word."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    args = ["--model", "hourglass", "--data", f"wflw={wflw_root}", "--out", run_dir, "--cache", cache, *TINY]
    r = run("train", *args, "--epochs", 2, "--max-minutes", 0.0001)
    assert r.exit_code == 0 and (run_dir / "last.pt").is_file(), r.stderr
    r = run("train", *args, "--epochs", 2, "--resume", "--lr", 0.01)
    assert r.exit_code == 0, r.stderr
    assert "note: the run was started with --lr the default; it goes on with --lr 0.01" in r.stderr
    r = run("train", *args, "--epochs", 1, "--resume", "--lr", 0.01)
    assert "note: --epochs 1: the run has done 2 already, so none is trained" in r.stderr, r.stderr


def test_with_no_face_held_out_a_model_whose_points_are_not_numbers_is_not_kept(wflw_root, tmp_path):
    """With nothing held out, best.pt is the latest epoch: it was kept (and exported) even when the
    model's points had become NaN while the loss of the weights it averages stayed finite."""
    import torch

    import facemark.training.train as T
    from facemark.training.pack import Pack

    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    z = dict(np.load(pack))
    z["val"][:] = 0
    np.savez(pack, **z)
    said = []
    opts = T.TrainOptions("direct", tmp_path / "r", epochs=1, batch=4, model={"size": 32, "width_mult": 0.25})
    trainer = T.make_trainer(Pack.load(pack), opts, log=said.append)
    assert len(trainer.val_idx) == 0
    with torch.no_grad():
        for p in trainer.ema.parameters():
            p.fill_(float("nan"))
    trainer.fit()
    assert not (tmp_path / "r" / "best.pt").exists() and (tmp_path / "r" / "last.pt").exists()
    assert any("not numbers: not kept" in m for m in said)
    with pytest.raises(T.TrainingFailed, match="no epoch gave points that are numbers"):
        trainer.export_best()
    sane = T.make_trainer(Pack.load(pack), T.TrainOptions("direct", tmp_path / "s", epochs=1, batch=4,
                                                           model={"size": 32, "width_mult": 0.25}), log=said.append)
    sane.fit()
    assert (tmp_path / "s" / "best.pt").exists()


def test_a_teacher_cache_made_by_another_teacher_of_the_same_size_is_not_reused(tiny_models, wflw_root, tmp_path):
    """The cache was keyed by the teacher's name and file size: a retrained teacher of the same
    architecture (same name, same size) silently reused the old teacher's labels."""
    import onnx

    other = tmp_path / "other" / Path(tiny_models["hourglass"]).name
    other.parent.mkdir()
    m = onnx.load(str(tiny_models["hourglass"]))
    init = max(m.graph.initializer, key=lambda t: len(t.raw_data))
    raw = bytearray(init.raw_data)
    raw[0] ^= 0x55  # other weights, same name and size
    init.raw_data = bytes(raw)
    onnx.save(m, str(other))
    assert other.stat().st_size == Path(tiny_models["hourglass"]).stat().st_size
    cache = tmp_path / "labels.npz"
    base = ["train", "--model", "direct", "--data", f"wflw={wflw_root}", "--batch", 4, "--cache", tmp_path / "c",
            "--teacher-views", 1, "--init", tiny_models["direct.pt"], "--epochs", 1, "--teacher-cache", cache]
    r = run(*base, "--out", tmp_path / "a", "--teacher-model", tiny_models["hourglass"])
    assert r.exit_code == 0, r.stderr
    r = run(*base, "--out", tmp_path / "b", "--teacher-model", tiny_models["hourglass"])
    assert r.exit_code == 0 and "teacher labels from" in r.stderr and "labelling again" not in r.stderr
    r = run(*base, "--out", tmp_path / "c2", "--teacher-model", other)
    assert r.exit_code == 0, r.stderr
    assert "made by another teacher: labelling again" in r.stderr and "teacher labels from" not in r.stderr


def test_plot_replaces_an_earlier_plot_but_not_another_image(tiny_models, face_image, tmp_path):
    """--plot replaced whatever image had its name, a photo included."""
    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 2, seed=4), "lfpw/testset")
    args = ["eval", "--data", f"300w={root}", "--model", tiny_models["direct"], "--boxes", "gt", "--plot"]
    for name in ("ced.png", "ced.jpg"):
        for _ in range(2):  # written, then replaced by the rerun
            r = run(*args, tmp_path / name)
            assert r.exit_code == 0, r.stderr
    # Curves lying on the frame (a model at 0 % along its bottom, one reaching 1.0 along its top)
    # left it unrecognised: the same command run twice was refused.
    from facemark.evaluation.evaluate import EvalResult, is_ced_plot, plot_ced

    ends = [EvalResult(name, "gt", np.full(20, nme), ["a"] * 20, [()] * 20) for name, nme in (("good", 0.001), ("bad", 0.5))]
    for name in ("ends.png", "ends.jpg"):
        plot_ced(ends, str(tmp_path / name))
        assert is_ced_plot(tmp_path / name)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), face_image)
    wide = tmp_path / "wide.png"  # the plot's size, not its drawing
    cv2.imwrite(str(wide), cv2.resize(face_image, (720, 480)))
    for image in (photo, wide):
        before = image.read_bytes()
        r = run(*args, image)
        assert r.exit_code == 2 and "is not a CED plot of facemark's; not overwritten" in r.stderr, r.stderr
        assert image.read_bytes() == before


def test_a_file_name_that_is_not_utf8_is_held_out_or_not_like_any_other():
    """pack and train --data died with a traceback (UnicodeEncodeError) on such a name."""
    from facemark.training.pack import is_val

    name = "lfpw/trainset/caf\udce9.jpg"  # (os.fsdecode of b"caf\xe9.jpg")
    assert is_val(name, 0.5) in (True, False)
    assert [is_val(f"x/{i}.jpg", 0.05) for i in range(200)].count(True) in range(2, 25)  # (about 5 %)


def test_a_fine_tune_is_measured_against_its_init_weights_first(tiny_models, wflw_root, tmp_path, monkeypatch):
    """--init's weights were never measured: the best epoch of a fine-tune that only lost (held-out
    NME 5.24 % against 4.84 % for the weights it started from) was exported as 'best'."""
    import facemark.training.train as T
    from facemark.models import load_state
    from facemark.training.pack import Pack

    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    z = dict(np.load(pack))
    z["val"][:3] = 1
    np.savez(pack, **z)
    said = []
    opts = T.TrainOptions("direct", tmp_path / "r", epochs=2, batch=4, init=str(tiny_models["direct.pt"]))
    trainer = T.make_trainer(Pack.load(pack), opts, log=said.append)
    vals = iter([0.03, 0.05, 0.04])  # the --init weights, then two epochs that do not beat them
    monkeypatch.setattr(trainer, "validate", lambda model=None: next(vals))
    trainer.fit()
    assert trainer.best == 0.03 and load_state(tmp_path / "r" / "best.pt")[1]["epoch"] == 0
    assert any("epoch 0 (the --init weights): val NME 3.000 %" in m for m in said)
    assert any("no epoch beat the --init weights" in m for m in said)
    assert [r["epoch"] for r in trainer.history] == [1, 2]


def test_a_run_refused_by_the_lock_says_nothing_of_resuming_and_minutes_add_up(wflw_root, tmp_path):
    """A second train into a held folder printed 'resumed from ... at epoch 2' before refusing;
    and the log's minutes started again at 0 after --resume."""
    import facemark.training.train as T
    from facemark.errors import UsageError
    from facemark.training.pack import Pack

    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    pk = Pack.load(pack)
    arch = {"size": 32, "width_mult": 0.25}
    first = T.make_trainer(pk, T.TrainOptions("direct", tmp_path / "r", epochs=1, batch=4, model=arch), log=lambda m: None)
    first.fit()
    said = []
    with pytest.raises(UsageError, match="another facemark train is running"):
        T.make_trainer(pk, T.TrainOptions("direct", tmp_path / "r", epochs=2, batch=4, model=arch, resume=True),
                       log=said.append)
    assert not any("resumed from" in m for m in said), said
    first.release()
    again = T.make_trainer(pk, T.TrainOptions("direct", tmp_path / "r", epochs=2, batch=4, model=arch, resume=True),
                           log=lambda m: None)
    again.fit()
    again.release()
    minutes = [row["minutes"] for row in json.loads((tmp_path / "r" / "log.json").read_text())]
    assert minutes[1] == pytest.approx(again.seconds / 60) and minutes[1] > minutes[0]


def test_pack_names_faces_the_detector_did_not_find_at_their_labels(face_image, tmp_path):
    """Labels off the face (shifted, or in the stored pixels of an EXIF-turned photo) were packed
    from the labels alone without a word: wrong crops to train on."""
    faces = synthetic_faces(face_image, 4, seed=5)
    img, pts = faces[1]
    faces[1] = (img, pts + [0.0, 0.45 * img.shape[0]])  # the labels well below the face
    write_wflw(tmp_path / "w", faces, faces[:1])
    r = run("pack", "--data", f"wflw={tmp_path / 'w'}", "--out", tmp_path / "p.npz", "--cache", tmp_path / "c")
    assert r.exit_code == 0, r.stderr
    assert "note: 1 of 4 face(s) were not found by the detector at their labels" in r.stderr, r.stderr
    assert "train_1.jpg" in r.stderr
    assert "note: 1 face(s) of --data's test split are left out of the pack" in r.stderr  # (WFLW's test list)


def test_wflw_lines_with_a_spaced_name_or_a_field_too_many(face_image, tmp_path):
    """A name with a space was cut at it ('no such file: .../sub/with'), and a line with a field
    too many was read shifted, its name a number: the skipped line named no line."""
    from facemark.training.datasets import load_wflw

    faces = synthetic_faces(face_image, 3, seed=7)
    write_wflw(tmp_path, faces, faces[:1])
    lst = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    train = lst / "list_98pt_rect_attr_train.txt"
    lines = train.read_text().splitlines()
    spaced = tmp_path / "WFLW_images" / "0--Synthetic" / "with space.jpg"
    (tmp_path / "WFLW_images" / "0--Synthetic" / "train_0.jpg").rename(spaced)
    lines[0] = lines[0].replace("0--Synthetic/train_0.jpg", "0--Synthetic/with space.jpg")
    fields = lines[1].split(" ")
    lines[1] = " ".join(fields[:200] + ["7"] + fields[200:])  # one number too many before the name
    train.write_text("\n".join(lines) + "\n")
    skipped = []
    got = load_wflw(tmp_path, skipped)
    names = sorted(s.image.name for s in got if s.split == "train")
    assert names == ["train_2.jpg", "with space.jpg"], names
    assert len(skipped) == 1 and "line 2" in skipped[0] and "208 fields, not 207" in skipped[0], skipped


def test_options_a_run_does_not_use_are_said(wflw_root, tmp_path):
    """--teacher-views without --teacher-model, and --data beside --pack, were ignored without a word."""
    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    r = run("train", "--model", "direct", "--pack", pack, "--data", f"wflw={wflw_root}", "--epochs", 1, "--batch", 4,
            "--arch", "size=32", "--arch", "width_mult=0.25", "--teacher-views", 3, "--out", tmp_path / "r",
            "--teacher", tmp_path / "no-teacher", "--cache", tmp_path / "no-cache")
    assert r.exit_code == 0, r.stderr
    assert "note: --pack is trained on as it is; --data" in r.stderr
    assert "note: --teacher-views tunes distillation, which --teacher-model turns on: ignored here" in r.stderr
    assert ("note: --teacher and --cache serve a pack built from --data; --pack's are made already: ignored here"
            in " ".join(r.stderr.split())), r.stderr
    assert "enlarged" not in r.stderr  # (faces of 43 px for a 32 px input)
    # A model input larger than the pack's faces: trained on enlarged, blurred faces, without a word.
    r = run("train", "--model", "direct", "--pack", pack, "--epochs", 1, "--batch", 4, "--arch", "size=96",
            "--arch", "width_mult=0.25", "--out", tmp_path / "r2")
    assert r.exit_code == 0, r.stderr
    assert ("note: the pack holds each face at 43 px and the model takes 96 px: it trains on enlarged, blurred faces; "
            "a pack made with --res 144 or more keeps them sharp") in " ".join(r.stderr.split()), r.stderr


def _collapsed(points: np.ndarray) -> np.ndarray:
    """Labels whose eye centres, nose tip and mouth corners meet at one spot, while the outer eye
    corners stay apart (so the label reader takes them)."""
    p, c = points.copy(), points.mean(0)
    p[60:76], p[[54, 76, 82]] = c, c
    p[[60, 68]], p[[64, 72]] = c - [20, 0], c + [20, 0]
    return p


def test_pack_skips_labels_outside_their_image_or_collapsed_and_names_them(face_image, tmp_path):
    """eval skipped a face whose labels lie outside its image; pack cropped it (a black crop,
    trained on beside its targets). Collapsed labels ended pack in a traceback."""
    from facemark.training.pack import Pack

    root = tmp_path / "wflw"
    faces = synthetic_faces(face_image, 5, seed=6)
    faces[1] = (faces[1][0], faces[1][1] + 5000.0)
    faces[2] = (faces[2][0], _collapsed(faces[2][1]))
    write_wflw(root, faces, [])
    r = run("pack", "--data", f"wflw={root}", "--out", tmp_path / "p.npz", "--cache", tmp_path / "c")
    assert r.exit_code == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "train_1.jpg: its labelled face lies outside the image" in said, r.stderr
    assert "train_2.jpg: its eyes, nose and mouth labels meet at one spot" in said, r.stderr
    note = [line for line in r.stderr.split("note: ") if "not found by the detector" in line]
    assert not note or ("train_1" not in note[0] and "train_2" not in note[0]), r.stderr  # (skipped: not cropped)
    assert len(Pack.load(tmp_path / "p.npz")) == 3
    assert "Traceback" not in r.stderr


def test_eval_with_label_boxes_skips_collapsed_labels(face_image, tmp_path, tiny_models):
    root = tmp_path / "wflw"
    faces = synthetic_faces(face_image, 3, seed=7)
    faces[0] = (faces[0][0], _collapsed(faces[0][1]))
    write_wflw(root, faces[:1], faces)
    r = run("eval", "--data", f"wflw={root}", "--model", tiny_models["direct"], "--boxes", "gt")
    assert r.exit_code == 0 and "its eyes, nose and mouth labels meet at one spot" in " ".join(r.stderr.split()), r.stderr


def test_a_resume_keeps_the_run_s_epochs_and_batch_unless_given_again(wflw_root, tmp_path):
    """--resume without --epochs went on toward the default 60 (the cosine schedule redrawn, the
    rate back up), and without --batch at 32: the run's own are kept now, and said."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    args = ["--model", "hourglass", "--data", f"wflw={wflw_root}", "--out", run_dir, "--cache", cache, *TINY[:-2]]
    r = run("train", *args, "--epochs", 3, "--batch", 4, "--max-minutes", 0.0001)
    assert r.exit_code == 0 and [row["epoch"] for row in json.loads((run_dir / "log.json").read_text())] == [1], r.stderr
    r = run("train", *args, "--resume")
    assert r.exit_code == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "the run was started with --epochs 3, and goes on with it" in said, r.stderr
    assert "the run was started with --batch 4, and goes on with it" in said
    assert [row["epoch"] for row in json.loads((run_dir / "log.json").read_text())] == [1, 2, 3]
    assert json.loads((run_dir / "log.json").read_text())[-1]["lr"] < json.loads((run_dir / "log.json").read_text())[0]["lr"]


def test_train_from_data_names_the_images_it_skips(face_image, tmp_path):
    """train --data left out an image that does not decode without a word (pack said it)."""
    root = tmp_path / "wflw"
    write_wflw(root, synthetic_faces(face_image, 4, seed=8), [])
    victim = root / "WFLW_images" / "0--Synthetic" / "train_2.jpg"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    r = run("train", "--model", "hourglass", "--data", f"wflw={root}", "--out", tmp_path / "run", "--cache",
            tmp_path / "c", "--epochs", 1, *TINY)
    assert r.exit_code == 0, r.stderr
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "train_2.jpg" in skipped[0], r.stderr


def test_a_resume_without_arch_goes_on_with_the_run_s_model(wflw_root, tmp_path):
    """A run started with --arch (or --init) was refused on --resume without them ('holds a
    different model ...; use a new --out'): the run's own model is rebuilt from last.pt now."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    args = ["--model", "hourglass", "--data", f"wflw={wflw_root}", "--out", run_dir, "--cache", cache, "--no-fuse-loss",
            "--batch", 4]
    r = run("train", *args, "--arch", "size=32", "--arch", "width=16", "--arch", "depth=2", "--epochs", 2,
            "--max-minutes", 0.0001)
    assert r.exit_code == 0, r.stderr
    r = run("train", *args, "--resume")
    assert r.exit_code == 0 and "resumed from" in r.stderr, r.stderr
    assert [row["epoch"] for row in json.loads((run_dir / "log.json").read_text())] == [1, 2]
    r = run("train", *args, "--resume", "--epochs", 3, "--arch", "width=8")  # (another --arch: still refused)
    assert r.exit_code == 2 and "holds a different model" in r.stderr, r.stderr



def test_a_resume_without_model_goes_on_with_the_run_s_family(wflw_root, tmp_path):
    """--model defaulted to hourglass, so resuming a direct run without repeating --model was
    refused ('holds a different model ...; use a new --out': advice to give the run up)."""
    run_dir = tmp_path / "run"
    args = ["--data", f"wflw={wflw_root}", "--out", run_dir, "--cache", tmp_path / "cache", "--batch", 4]
    r = run("train", "--model", "direct", *args, "--epochs", 1)
    assert r.exit_code == 0, r.stderr
    r = run("train", *args, "--resume", "--epochs", 2)
    assert r.exit_code == 0 and "resumed from" in r.stderr, r.stderr
    assert r.stderr.startswith("direct ") or "\ndirect " in r.stderr, r.stderr  # (the summary line names the family)
    assert [row["epoch"] for row in json.loads((run_dir / "log.json").read_text())] == [1, 2]
    r = run("train", "--model", "hourglass", *args, "--resume", "--epochs", 3, "--no-fuse-loss")
    assert r.exit_code == 2 and "holds a direct run, not hourglass: resume it without --model" in r.stderr, r.stderr

def test_a_disk_that_fills_before_the_first_last_pt_leaves_a_folder_a_new_run_can_use(wflw_root, tmp_path, monkeypatch):
    """best.pt was written, then last.pt failed on a full disk: the run said 'nothing was saved'
    in torch's words ('enforce fail at inline_container.cc'), and the best.pt it left made both a
    new run and --resume refuse the folder."""
    import shutil as sh
    from collections import namedtuple

    from facemark.training import train

    def full(obj, f, *a, **k):  # (torch's writer on a full disk, at last.pt: best.pt is written before it)
        if isinstance(obj, dict) and "optim" in obj:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real_save(obj, f, *a, **k)

    real_save = torch.save
    monkeypatch.setattr(torch, "save", full)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 1 << 20))
    args = ["--model", "direct", "--data", f"wflw={wflw_root}", "--epochs", 1, "--batch", 4, "--out", tmp_path / "r",
            "--cache", tmp_path / "c", "--arch", "size=32", "--arch", "width_mult=0.25"]
    r = run("train", *args)
    assert r.exit_code == 1 and "No space left on device; nothing was saved" in " ".join(r.stderr.split()), r.stderr
    left = [p.name for p in (tmp_path / "r").iterdir()] if (tmp_path / "r").exists() else []
    assert not [name for name in left if name in (*train.RUN_FILES, "log.json")], left
    # A file of the user's that the run's names cover, there before the run, is kept.
    (tmp_path / "r").mkdir(exist_ok=True)
    (tmp_path / "r" / "log.json").write_text("mine")
    assert run("train", *args).exit_code == 1 and (tmp_path / "r" / "log.json").read_text() == "mine"
    (tmp_path / "r" / "log.json").unlink()
    monkeypatch.undo()
    assert run("train", *args).exit_code == 0


def test_compile_on_the_cpu_is_said_to_be_meant_for_cuda(tmp_path):
    r = run("train", "--model", "direct", "--pack", tmp_path / "p.npz", "--out", tmp_path / "r", "--compile")
    assert r.exit_code == 2 and "--compile is meant for CUDA" in r.stderr, r.stderr  # (then: no such pack)


def test_a_teacher_given_no_weight_is_not_run(tiny_models, wflw_root, tmp_path):
    """--teacher-model with --distill 0 labelled every view (minutes with a real teacher) for a
    loss of no weight, and said it was distilling."""
    run_dir = tmp_path / "r"
    r = run("train", "--model", "direct", "--data", f"wflw={wflw_root}", "--batch", 4, "--out", run_dir, "--cache",
            tmp_path / "c", "--teacher-model", tiny_models["hourglass"], "--distill", 0, "--init",
            tiny_models["direct.pt"], "--epochs", 1)
    assert r.exit_code == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "--distill 0 gives the teacher's loss no weight" in said and "distilling" not in said, r.stderr
    assert "teacher labels" not in said and not (run_dir / "teacher.npz").exists()


def test_a_write_failure_is_named_by_its_own_cause_before_free_space(tmp_path, monkeypatch):
    import errno
    import shutil as sh
    from collections import namedtuple

    from facemark.cli import _write_failure

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 1 << 20))
    assert _write_failure(PermissionError(errno.EACCES, "Permission denied"), tmp_path) == "Permission denied"
    assert _write_failure(OSError(errno.EIO, "[enforce fail at inline_container.cc:672]"), tmp_path) == \
        "No space left on device"


def test_a_run_that_runs_out_of_memory_before_its_first_last_pt_leaves_no_best_pt(face_image, tmp_path, monkeypatch):
    """Out of memory (or anything unforeseen) after --init's epoch-0 best.pt left it, and the
    folder then refused the rerun with a smaller --batch."""
    from facemark.training import train

    root = tmp_path / "wflw"
    write_wflw(root, synthetic_faces(face_image, 40, seed=1), [])

    def out_of_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(train, "loss_for", out_of_memory)
    run("train", "--model", "direct", "--data", f"wflw={root}", "--epochs", 2, "--batch", 4, "--out", tmp_path / "r",
        "--cache", tmp_path / "c", "--init", "direct")
    assert not (tmp_path / "r" / "best.pt").exists()


def test_eval_shows_its_figures_when_its_report_cannot_be_written(face_image, tmp_path, tiny_models, monkeypatch):
    """A full disk at --json or --plot came after minutes of work: the figures were lost with the
    error. They are shown now, then the one error line, exit 1."""
    import errno

    from facemark.evaluation import evaluate

    root = tmp_path / "wflw"
    write_wflw(root, [], synthetic_faces(face_image, 2, seed=9))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluate, "plot_ced", full)
    r = run("eval", "--data", f"wflw={root}", "--model", tiny_models["direct"], "--boxes", "gt", "--plot",
            tmp_path / "ced.png")
    assert r.exit_code == 1 and "cannot write" in r.stderr and "No space left on device" in r.stderr, r.stderr
    assert "NME %" in r.stdout and "ground-truth alignment" in r.stdout, r.stdout


def test_eval_report_names_a_non_utf8_file_in_text_strict_readers_take(wflw_root, tiny_models, tmp_path):
    """Data in a folder named with bytes that are not UTF-8 (Latin-1 'café'): Python holds such a
    name with a lone surrogate, which json.dumps wrote as \\udce9 in each face's image and in the
    options, and strict JSON readers refused the report. Written as \\xe9 instead."""
    import shutil

    from facemark.evaluation.evaluate import EvalResult

    name = os.fsdecode(b"/data/caf\xe9.jpg")
    r = EvalResult("m", "detector", np.array([0.05, np.inf]), ["common", "common"], images=[name, "/data/ok.jpg"])
    assert [f["image"] for f in r.faces()] == ["/data/caf\\xe9.jpg", "/data/ok.jpg"]
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9-wflw"))
    shutil.copytree(wflw_root, odd)
    out = tmp_path / "e.json"
    r = run("eval", "--data", f"wflw={odd}", "--model", tiny_models["direct"], "--boxes", "gt", "--json", out)
    assert r.exit_code == 0, r.stderr
    text = out.read_text(encoding="utf-8")
    assert "\\udc" not in text and "caf\\\\xe9-wflw" in text
    report = by_name(json.loads(text), "tiny-direct")
    assert report["options"]["data"] == [f"wflw={tmp_path}/caf\\xe9-wflw"]
    assert all("caf\\xe9-wflw" in f["image"] for f in report["faces"]) and report["faces"]


@pytest.mark.parametrize("family, arch, said", [
    ("hourglass", {"size": 112}, "cannot run on its 112px input .*a multiple of 32 runs"),  # (it built, then failed
    ("hourglass", {"depth": 6}, "cannot run on its 128px input .*a multiple of 256 runs"),  # in training's first step)
    ("hourglass", {"width": 3}, "width must be 4 or more"),
    ("hourglass", {"width": 1e6}, "width is a whole number"),
    ("hybrid", {"widths": 1}, "widths is a list of one or more numbers"),
    ("hybrid", {"widths": []}, "widths is a list of one or more numbers"),
])
def test_arch_values_that_build_but_cannot_run_are_refused_before_training(family, arch, said):
    """``train --model hourglass --arch size=112`` printed its summary, then a traceback from the
    first forward pass ("The size of tensor a (7) must match..."); the model is tried on one input now."""
    from facemark.training.train import build_model

    with pytest.raises(ValueError, match=said):
        build_model(family, arch)
    assert build_model("hourglass", {"size": 96, "width": 8}).training  # (a size its depth halves: built, to train)
    assert build_model("hourglass", {"size": 65, "width": 8, "depth": 1}).training  # (rounded up and back: runs)


def test_the_same_weights_saved_twice_are_the_same_bytes(tmp_path):
    """An exported .pt held its temporary file's name (``.fm-...-9gwkr3f1/data.pkl``), so every
    export of the same weights was another file, shown as another ``model@hash``, and a resumed
    ``detect --out`` redid every image."""
    from facemark.models import create
    from facemark.training.export import _atomic_torch_save

    state = {"model": create("direct", size=32, width_mult=0.25).state_dict(), "meta": {"family": "direct"}}
    _atomic_torch_save(state, tmp_path / "a.pt")
    _atomic_torch_save(state, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.load(tmp_path / "a.pt")["meta"] == {"family": "direct"}


def test_a_teacher_cache_that_cannot_be_written_is_said_before_labelling(tmp_path, tiny_models, monkeypatch):
    """A --teacher-cache in a read-only or missing place failed after minutes of labelling, naming
    a temporary file; its folder is checked with the other outputs now."""
    from facemark.errors import UsageError
    from facemark.training.train import TrainOptions, check_options

    (tmp_path / "a_file").write_text("x")
    opts = TrainOptions("direct", tmp_path / "run", teacher_model=str(tiny_models["hourglass"]),
                        teacher_cache=tmp_path / "a_file" / "t.npz")
    with pytest.raises(UsageError, match="--teacher-cache .*t.npz: .*a_file is not a folder"):
        check_options(opts)
    # One that is there (shared, perhaps read-only to this user) is only read: its folder is not tried.
    from facemark import outputs

    def no_write(*a, **k):
        raise AssertionError("an existing teacher cache's folder was tried for writing")

    (tmp_path / "shared").mkdir()
    np.savez(tmp_path / "shared" / "t.npz", key="x")
    monkeypatch.setattr(outputs, "check_output_file", no_write)
    check_options(TrainOptions("direct", tmp_path / "run", teacher_model=str(tiny_models["hourglass"]),
                               teacher_cache=tmp_path / "shared" / "t.npz"))


def test_a_ctrl_c_during_the_export_says_the_training_is_complete(wflw_root, tmp_path, monkeypatch):
    """Interrupted in the last step, the export: it said only "interrupted", with every epoch saved."""
    from facemark.training import train as training

    real = training.Trainer.export_best

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Trainer, "export_best", interrupted)
    args = ("train", "--model", "hourglass", "--data", f"wflw={wflw_root}", "--epochs", 1, "--out", tmp_path / "r",
            "--cache", tmp_path / "c", *TINY)
    r = run(*args)
    assert r.exit_code == 130 and not (tmp_path / "r" / "model.onnx").exists()
    assert (f"interrupted while exporting: the training is complete ({tmp_path / 'r' / 'best.pt'}); the same command "
            f"with --resume exports it") in " ".join(r.stderr.split()), r.stderr
    monkeypatch.setattr(training.Trainer, "export_best", real)
    r = run(*args, "--resume")
    assert r.exit_code == 0 and (tmp_path / "r" / "model.onnx").is_file(), r.stderr


def test_a_face_in_both_a_training_and_a_test_list_is_a_test_face(face_image, tmp_path):
    """Counted once, it was kept as listed first, a training face: trained on, then measured by eval."""
    from facemark.training.datasets import load_all

    faces = synthetic_faces(face_image, 3, seed=8)
    write_wflw(tmp_path, faces[:2], faces[2:])
    lists = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    test_line = (lists / "list_98pt_rect_attr_test.txt").read_text()
    with open(lists / "list_98pt_rect_attr_train.txt", "a") as f:
        f.write(test_line)
    said = []
    got = load_all([f"wflw={tmp_path}"], said.append)
    assert sorted((s.image.name, s.split) for s in got) == [("test_0.jpg", "test"), ("train_0.jpg", "train"),
                                                            ("train_1.jpg", "train")]
    assert said == ["note: 1 face(s) given twice by --data are counted once (1 in both a training and a test list: "
                    "as test faces)"]


def test_run_eval_without_a_log_still_says_what_the_data_skipped(tiny_models, face_image, tmp_path, capfd):
    """log=None from Python: the data loader's skipped lines go to stderr, as they always did."""
    from facemark.evaluation.evaluate import run_eval

    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 3, seed=21), "lfpw/testset")
    sorted((root / "lfpw" / "testset").glob("*.pts"))[0].write_text("not a pts file")
    capfd.readouterr()
    _, report = run_eval([f"300w={root}"], [str(tiny_models["direct"])], boxes="gt", log=None)
    err = capfd.readouterr().err
    assert err.startswith("skipped: ") and "face_0.pts" in err, err
    assert [len(entry["skipped"]) for entry in report.values()] == [1]


def test_run_eval_takes_a_path_and_names_what_is_missing(tiny_models, face_image, tmp_path):
    """A Path for one KIND=PATH raised "'PosixPath' object is not iterable"; no model blamed the data
    ("none of its images could be read"); None raised a bare NoneType error (a hostile user's finds)."""
    from pathlib import Path

    from facemark.errors import UsageError
    from facemark.evaluation.evaluate import run_eval

    root = tmp_path / "300w"
    write_300w(root, synthetic_faces(face_image, 2, seed=22), "lfpw/testset")
    results, _ = run_eval(Path(f"300w={root}"), str(tiny_models["direct"]), boxes="gt")
    assert len(results) == 1
    with pytest.raises(UsageError, match="models names no model"):
        run_eval(f"300w={root}", [])
    for data, models in ((None, "direct"), (f"300w={root}", None)):
        with pytest.raises(TypeError, match="run_eval needs data"):
            run_eval(data, models)


def test_training_goes_on_when_nobody_reads_its_lines(wflw_root, tmp_path):
    """`facemark train ... 2>&1 | head -2`: the reader left after two lines and the run stopped
    between epochs with exit 1, unsaid, no model written (a hostile user's find). It goes on."""
    import subprocess
    import sys

    pack = tmp_path / "p.npz"
    assert run("pack", "--data", f"wflw={wflw_root}", "--out", pack, "--cache", tmp_path / "c", "--res", 64).exit_code == 0
    r, w = os.pipe()
    os.close(r)  # (nobody reads)
    p = subprocess.run([sys.executable, "-m", "facemark", "train", "--pack", str(pack), "--out", str(tmp_path / "r"),
                        "--model", "direct", "--epochs", "2", "--batch", "4", "--arch", "size=32", "--arch",
                        "width_mult=0.25"], stdout=w, stderr=w, timeout=600)
    os.close(w)
    assert p.returncode == 0
    assert (tmp_path / "r" / "model.onnx").is_file() and (tmp_path / "r" / "best.pt").is_file()

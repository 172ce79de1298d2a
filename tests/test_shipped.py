"""The shipped weights on the example photo, and (with ../shared) their accuracy.

Skipped on a checkout without weights/; the accuracy check skips without ../shared."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from facemark.backends import SHIPPED, weights_dir
from facemark.cli import app
from facemark.results import validate
from tests.conftest import EXAMPLE, shared_path

runner = CliRunner()
present = [m for m in SHIPPED if (weights_dir() / f"{m}.onnx").is_file()]


def need(model):
    if model not in present:
        pytest.skip(f"weights/{model}.onnx is not shipped in this checkout")


@pytest.mark.parametrize("model", SHIPPED)
def test_points_sit_in_the_face(model):
    need(model)
    from facemark import FaceLandmarker

    faces = FaceLandmarker(model=model).detect(EXAMPLE)
    assert len(faces) == 1
    for f in faces:
        x1, y1, x2, y2 = f.box
        w, h = x2 - x1, y2 - y1
        lm = f.landmarks
        assert (lm[:, 0] > x1 - 0.2 * w).all() and (lm[:, 0] < x2 + 0.2 * w).all()
        assert (lm[:, 1] > y1 - 0.2 * h).all() and (lm[:, 1] < y2 + 0.2 * h).all()
        eyes = (lm[60:68].mean(0), lm[68:76].mean(0))
        mouth = lm[76:88].mean(0)
        assert eyes[0][1] < mouth[1] and eyes[1][1] < mouth[1]
        assert eyes[0][0] < eyes[1][0]  # the subject's right eye is on the image's left
        assert f.landmarks68[8, 1] > mouth[1]  # chin below the mouth


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_weights_are_complete(model):
    need(model)
    from facemark.backends import OnnxModel

    m = OnnxModel(model)
    assert m.name == model and m.meta["params"] > 0 and m.meta["flops"] > 0
    assert (weights_dir() / f"{model}.pt").is_file()
    assert m.path.stat().st_size < 8e6  # a few MB each keeps the package lean


def test_cli_quickstart_and_models_listing(tmp_path):
    from facemark import DEFAULT_MODEL

    need(DEFAULT_MODEL)
    r = runner.invoke(app, ["detect", str(EXAMPLE)])
    assert r.exit_code == 0 and validate(json.loads(r.stdout)) == []
    assert json.loads(r.stdout)["model"] == DEFAULT_MODEL
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "hourglass" in r.stdout and f"{DEFAULT_MODEL} (default)" in r.stdout
    machine = json.loads((weights_dir() / "bench.json").read_text())["machine"]  # (whose times they are, not yours)
    assert f"measured on {machine['cpu']}, {machine['cores']} cores" in " ".join(r.stdout.split())


def test_the_default_is_the_best_accuracy_per_millisecond():
    """The README's rule, from the shipped eval and bench JSON: 1 / (NME x whole-frame ms). New
    weights or timings that change the leader must change the default too."""
    from facemark import DEFAULT_MODEL
    from facemark.landmarker import FaceLandmarker

    evals = json.loads((weights_dir() / "eval.json").read_text())
    bench = json.loads((weights_dir() / "bench.json").read_text())
    frame_ms = {r["model"]: r["latency_ms"] for r in bench["rows"] if r["stage"] == "pipeline"}
    score = {m: 1 / (evals[m]["subsets"]["all"]["nme"] * frame_ms[m]) for m in SHIPPED}
    assert max(score, key=score.get) == DEFAULT_MODEL, score
    import inspect

    assert inspect.signature(FaceLandmarker).parameters["model"].default == DEFAULT_MODEL


def test_default_model_accuracy_on_300w_sample():
    from facemark import DEFAULT_MODEL

    need(DEFAULT_MODEL)
    data = shared_path("data", "300w")
    from facemark.training import datasets
    from facemark.evaluation.evaluate import evaluate
    from facemark.landmarker import FaceLandmarker

    test = [s for s in datasets.load(f"300w={data}") if s.split == "test"][::10]  # 56 faces
    errs = evaluate(FaceLandmarker(threshold=0.3), test).errors
    assert np.isfinite(errs).mean() > 0.95
    assert np.nanmean(np.where(np.isfinite(errs), errs, np.nan)) < 0.06  # a regression guard, not the benchmark


def test_a_checkout_on_pythonpath_loads_its_own_weights(tmp_path):
    """Timing older code means importing another checkout (PYTHONPATH) from an environment where
    this one is installed; its weights must be its own (an editable install's mapping once gave
    it these, so an 'older code' run used today's weights)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import facemark

    other = tmp_path / "other"
    shutil.copytree(Path(facemark.__file__).parent, other / "facemark", ignore=shutil.ignore_patterns("__pycache__"))
    (other / "weights").mkdir()
    for name in ("__init__.py", "MODEL_CARD.md"):
        (other / "weights" / name).write_text("")
    here = weights_dir()
    # As an editable install's finder does (a plain install has none, so this is made here): it
    # maps facemark.weights to this checkout's weights whichever facemark package is imported.
    code = (f"import importlib.abc, importlib.util, sys\n"
            f"class Editable(importlib.abc.MetaPathFinder):\n"
            f"    def find_spec(self, name, path=None, target=None):\n"
            f"        if name == 'facemark.weights':\n"
            f"            return importlib.util.spec_from_file_location(name, {str(here / '__init__.py')!r},\n"
            f"                                                          submodule_search_locations=[{str(here)!r}])\n"
            f"sys.meta_path.insert(0, Editable())\n"
            f"import facemark, facemark.backends as b; print(facemark.__file__); print(b.weights_dir())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                       env={**__import__("os").environ, "PYTHONPATH": str(other)}, timeout=120)
    assert r.returncode == 0, r.stderr
    imported, weights = r.stdout.split("\n")[:2]
    assert Path(imported).parent == other / "facemark"
    assert Path(weights) == other / "weights"


def test_the_released_digests_are_the_shipped_files():
    """backends.RELEASED names the weights this version ships: results of any other weights, also
    exported under a shipped name, carry their digest. Retrained weights shipped here must
    update it (this test fails until they do)."""
    from facemark.backends import RELEASED, weights_digest

    if not present:
        pytest.skip("no weights/*.onnx in this checkout")
    for m in present:
        for suffix in (".onnx", ".pt"):
            assert weights_digest(weights_dir() / f"{m}{suffix}") == RELEASED[f"{m}{suffix}"], (m, suffix)


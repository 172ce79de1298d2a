"""The package layout's promises: the inference path runs without torch, and ``--version`` loads
nothing heavy."""
import subprocess
import sys
from pathlib import Path

import facemark
import pytest

PKG = Path(facemark.__file__).parent
INFERENCE = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in ("__main__",))

BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked for this test")
sys.meta_path.insert(0, Block())
"""


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_inference_modules_import_and_run_without_torch():
    imports = "; ".join(f"import facemark.{m}" for m in INFERENCE)
    code = BLOCK_TORCH + f"""
{imports}
import numpy as np
from facemark import FaceLandmarker
fl = FaceLandmarker(model="direct")
faces = fl.detect(np.zeros((64, 64, 3), np.uint8))
assert faces == [], faces
assert "torch" not in sys.modules
print("ok", len({INFERENCE!r}))
"""
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")
    # The guard itself works: importing a training module does need torch.
    r = run_py(BLOCK_TORCH + "import facemark.training.train")
    assert r.returncode != 0 and "torch is blocked" in r.stderr


def test_inference_path_is_the_top_level():
    assert {"detector", "align", "landmarker", "backends", "results", "batch", "cli"} <= set(INFERENCE)
    for sub in ("training", "evaluation"):
        assert (PKG / sub / "__init__.py").is_file()
    assert not {"train", "losses", "augment", "pack", "evaluate", "bench"} & set(INFERENCE)


def test_the_modules_the_readme_names_are_reached_from_import_facemark():
    """``facemark.track.Tracker(fl)`` and ``facemark.results.validate`` as the README writes them
    raised AttributeError after a bare ``import facemark`` (a submodule is an attribute only once
    something imports it); ``facemark.FacemarkWarning`` was not there at all. A name that is no
    module is still an AttributeError, and importing facemark still loads nothing heavy."""
    r = run_py("import sys, facemark\n"
               "heavy = [m for m in ('numpy', 'cv2', 'onnxruntime') if m in sys.modules]\n"
               "print(facemark.track.Tracker.__name__, facemark.video.process_video.__name__, "
               "facemark.results.validate.__name__, facemark.boxes.GivenBoxes.__name__, "
               "facemark.FacemarkWarning.__name__, heavy)\n"
               "try:\n    facemark.nosuch\nexcept AttributeError as e:\n    print(e)\n"
               "print(hasattr(facemark, 'models'), hasattr(facemark, 'training.train'), 'torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["Tracker process_video validate GivenBoxes FacemarkWarning []",
                                     "module 'facemark' has no attribute 'nosuch'",
                                     "False False False"], r.stdout  # (probing a name imports no torch)


def test_version_loads_no_model_runtime():
    r = run_py("import sys; sys.argv = ['facemark', '--version']\n"
               "from facemark.cli import app\n"
               "try:\n    app()\nexcept SystemExit:\n    pass\n"
               "heavy = [m for m in ('torch', 'onnxruntime', 'cv2') if m in sys.modules]\n"
               "print('heavy:', heavy)")
    assert r.returncode == 0, r.stderr
    assert f"facemark {facemark.__version__}" in r.stdout
    assert "heavy: []" in r.stdout


def test_training_commands_without_torch_say_so_in_one_line(tmp_path):
    """The inference install has no PyTorch: ``train`` and ``export`` say how to add it (exit 2)
    instead of an ImportError's traceback, and make no folder."""
    absent = BLOCK_TORCH.replace('raise ImportError("torch is blocked for this test")',
                                 'raise ModuleNotFoundError("No module named torch", name=name)')
    for args in (["export", "run/best.pt", "--out", str(tmp_path / "exp")],
                 ["train", "--model", "direct", "--pack", "p.npz", "--out", str(tmp_path / "run")]):
        r = run_py(absent + f"sys.argv = ['facemark'] + {args!r}\nimport runpy\nrunpy.run_module('facemark', run_name='__main__')")
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and f"facemark {args[0]} needs PyTorch: on a machine without a GPU" in r.stderr and "pip install" in r.stderr, r.stderr
        assert "without a GPU, install the CPU build first" in r.stderr  # (PyPI's default torch is the CUDA build)
    assert list(tmp_path.iterdir()) == []


def test_torch_threads_spin_briefly_unless_the_user_chose():
    """facemark shortens the time PyTorch's OpenMP threads spin before they sleep (GOMP_SPINCOUNT):
    with torch's default, a forward pass on the CPU took up to 100 times longer while other
    programs kept the cores busy (scripts/torch_contention.py). A choice of the user's stands
    (either setting), and so does torch imported before facemark (its OpenMP has read the
    environment by then: setting it would only mislead)."""
    import os

    def spin(code: str, **env) -> str:
        clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | env
        r = subprocess.run([sys.executable, "-c", code + "\nimport os; print(os.environ.get('GOMP_SPINCOUNT'))"],
                           capture_output=True, text=True, timeout=120, env=clean)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert spin("import facemark") == "1000"
    assert spin("import facemark", GOMP_SPINCOUNT="300000") == "300000"
    assert spin("import facemark", OMP_WAIT_POLICY="ACTIVE") == "None"
    assert spin("import torch, facemark") == "None"


def test_the_installed_version_is_the_package_s():
    """pyproject.toml takes its version from facemark.__version__ (one place to change), so the
    version pip records is the one ``facemark --version`` prints."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("facemark")
    except PackageNotFoundError:
        pytest.skip("facemark is not installed (run from a checkout on PYTHONPATH)")
    assert installed == facemark.__version__

"""Shared fixtures. Tiny models are built and exported at test time (no shipped weights needed);
tests that need ../shared data skip cleanly when it is absent."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEMARK_SHARED", ROOT.parent / "shared"))
EXAMPLE = ROOT / "examples" / "astronaut.jpg"
# Subprocesses (``python -m facemark`` from a temporary folder) import this checkout, not a copy
# installed earlier with ``pip install .``: tests of edited code must run the edited code.
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
# Where PYTHONDONTWRITEBYTECODE is set (this project's machines set it), every subprocess compiled
# this checkout's modules again as it started: about 0.3 s a run, over hundreds of runs. Their
# bytecode is kept for the session in a temporary folder instead, never in the checkout.
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    import atexit
    import shutil
    import tempfile

    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="facemark-tests-pycache-")
    atexit.register(shutil.rmtree, os.environ["PYTHONPYCACHEPREFIX"], True)


@pytest.fixture(autouse=True)
def _signals_as_a_terminal_gives_them():
    """Each test starts with SIGINT and SIGTERM handled as in a terminal's Python, and the state
    before it comes back after it. A suite started in the background (``pytest ... &`` in a
    script, some CI runners) inherits SIGINT ignored, and an in-process CLI test that was interrupted
    leaves both ignored (the CLI does, to exit in peace); facemark keeps a signal ignored when it
    finds it so (as a background job asks), so the tests that send one in-process need this, as
    ``sigint_default`` does for children."""
    import signal

    import facemark.cli
    import facemark.errors

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    facemark.errors.SEEN.clear()  # (signals an earlier in-process test's handlers took: not this test's exit status)
    facemark.cli._SIGNALLED.clear()
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@pytest.fixture
def fm_here(capfd, monkeypatch):
    """``python -m facemark ...`` run in this process, for runs where no process of their own is
    the point (no signal, kill or closed stream; no note said once per process): the same entry
    point (``cli.run``), exit code and standard streams (captured at the descriptors), without a
    new interpreter and its imports for each. An exception that escapes, from the run or one of
    its threads, is a traceback: the test fails. (The streams are decoded with errors replaced:
    bytes that are not UTF-8 read as "?", not as a subprocess would print them.)"""
    import faulthandler
    import threading

    from facemark.cli import run

    def call(*args, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.setenv("COLUMNS", "200")
        capfd.readouterr()
        here, hook, raised = os.getcwd(), threading.excepthook, []
        os.chdir(cwd)  # (for the call only, as a subprocess's cwd)
        threading.excepthook = raised.append  # (a thread's traceback, which a subprocess would print)
        faulthandler.dump_traceback_later(300, exit=True)  # (the subprocess's timeout: a stuck run ends the suite, with its stacks)
        try:
            run([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        finally:
            faulthandler.cancel_dump_traceback_later()
            threading.excepthook = hook
            os.chdir(here)
        said = capfd.readouterr()
        assert not raised, f"a thread of the run raised {raised[0].exc_type.__name__}: {raised[0].exc_value}"
        return subprocess.CompletedProcess(args, code, said.out, said.err)

    return call


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the ../shared data), absent here")
    return p


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Each family at a tiny size, randomly initialised and exported (ONNX + torch state)."""
    import torch

    from facemark.training.export import export_onnx, save_state
    from facemark.models import create

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("models")
    configs = {
        "hourglass": dict(size=32, stacks=2, width=16, depth=2),
        "direct": dict(size=32, width_mult=0.25),
        "hybrid": dict(size=32, widths=[8, 16, 16], num_neighbors=3),
    }
    paths = {}
    for family, cfg in configs.items():
        m = create(family, **cfg).eval()
        meta = {"name": f"tiny-{family}", "params": sum(p.numel() for p in m.parameters())}
        export_onnx(m, out / f"{family}.onnx", meta)
        save_state(m, out / f"{family}.pt", meta)
        paths[family] = out / f"{family}.onnx"
        paths[family + ".pt"] = out / f"{family}.pt"
    return paths


@pytest.fixture(scope="session")
def face_image() -> np.ndarray:
    image = cv2.imread(str(EXAMPLE))
    assert image is not None, "examples/astronaut.jpg is part of the repository"
    return image

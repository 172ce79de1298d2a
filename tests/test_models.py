"""Model shapes, decode and the ONNX export agreeing with torch."""
import numpy as np
import pytest
import torch

from facemark.backends import OnnxModel, TorchModel
from facemark.models import Predictor, create


@pytest.mark.parametrize("family", ["hourglass", "direct", "hybrid"])
def test_forward_and_decode_shapes(family, tiny_models):
    onnx = OnnxModel(tiny_models[family])
    assert onnx.family == family and onnx.size == 32
    for n in (1, 3):
        crops = np.random.default_rng(n).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
        pts = onnx(crops)
        assert pts.shape == (n, 98, 2)
        assert np.isfinite(pts).all()
    assert onnx(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 98, 2)


@pytest.mark.parametrize("family", ["hourglass", "direct", "hybrid"])
def test_onnx_matches_torch(family, tiny_models):
    onnx = OnnxModel(tiny_models[family])
    tm = TorchModel(tiny_models[family + ".pt"], device="cpu", precision="fp32")
    crops = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    a, b = onnx(crops), tm(crops)
    # Same fp16-stored weights in both files. An untrained heatmap can hold near-ties, where a
    # rounding difference moves the argmax: so most points, not all, must agree to 1e-3.
    d = np.abs(a - b).max(-1)
    assert np.median(d) < 1e-4 and (d < 1e-3).mean() > 0.95


def test_batch_rows_are_independent(tiny_models):
    onnx = OnnxModel(tiny_models["hourglass"])
    crops = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    together = onnx(crops)
    alone = np.concatenate([onnx(crops[i : i + 1]) for i in range(5)])
    assert np.abs(together - alone).max() < 1e-5


def test_hourglass_intermediate_supervision_outputs():
    m = create("hourglass", size=32, stacks=3, width=16, depth=2)
    outs = m(torch.zeros(2, 3, 32, 32))
    assert len(outs) == 3 and all(o.shape == (2, 98, 8, 8) for o in outs)
    early, late = torch.full((1, 98, 8, 8), -5.0), torch.full((1, 98, 8, 8), -5.0)
    early[..., 1, 1], late[..., 6, 5] = 5.0, 5.0  # the stacks disagree: the points are the last stack's
    pts = m.decode([early, early, late])
    assert torch.allclose(pts, m.decode([late]))
    assert (pts[..., 0] > 0.6).all() and (pts[..., 1] > 0.7).all()  # (cell 5, 6 of 8, not 1, 1)


def test_unknown_family():
    with pytest.raises(ValueError):
        create("resnet")


def test_predictor_takes_uint8_nhwc():
    m = create("direct", size=32, width_mult=0.25).eval()
    out = Predictor(m)(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    assert out.shape == (2, 98, 2)
    # Fresh direct models start at the crop centre (bias 0.5), a sane untrained default.
    assert torch.allclose(out, torch.full_like(out, 0.5))


@pytest.mark.parametrize("family", ["hourglass", "direct", "hybrid"])
def test_forward_copies_nothing_from_the_cpu(family, monkeypatch):
    """The CUDA path captures each model's forward in a CUDA graph (``facemark bench --device cuda``),
    where a tensor made on the CPU and moved to the GPU is an error: the hourglass's decode made its
    blur kernel that way (found on the lent H200). Checked here without a GPU: the model runs on
    the "meta" device, and any copy between the CPU and it is recorded."""
    import contextlib

    from torch.utils._python_dispatch import TorchDispatchMode

    class Copies(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            given = {a.device.type for a in [*args, *(kwargs or {}).values()] if isinstance(a, torch.Tensor)}
            made = {o.device.type for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)}
            if given | made >= {"cpu", "meta"}:
                self.seen.append(str(func))
            return out

    autocast = torch.autocast  # (no autocast for "meta"; the CUDA path's own is not what is checked)
    monkeypatch.setattr(torch, "autocast", lambda dev, *a, **k: contextlib.nullcontext() if dev == "meta" else autocast(dev, *a, **k))
    net = create(family, size=64)
    predictor = Predictor(net).to("meta").eval()
    with torch.inference_mode(), Copies() as copies:
        out = predictor(torch.empty(2, 64, 64, 3, dtype=torch.uint8, device="meta"))
    assert out.shape == (2, 98, 2) and out.device.type == "meta"
    assert copies.seen == []


def test_cuda_request_without_cuda_is_a_clear_error(tiny_models):
    from facemark.backends import ModelError, load_model

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelError, match="CUDA is not available"):
        load_model(tiny_models["hourglass.pt"], device="cuda")


@pytest.mark.parametrize("family", ["direct", "hybrid", "hourglass"])
def test_bf16_autocast_keeps_heads_and_decode_in_float32(family, tiny_models):
    """The CUDA path runs bf16 autocast; CPU autocast exercises the same code here."""
    fp = TorchModel(tiny_models[family + ".pt"], device="cpu", precision="fp32")
    bf = TorchModel(tiny_models[family + ".pt"], device="cpu", precision="bf16")
    crops = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    out = bf(crops)
    assert out.dtype == np.float64 and np.isfinite(out).all()
    x = torch.from_numpy(crops)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        raw = bf.predictor.model(__import__("facemark.models", fromlist=["normalize"]).normalize(x))
    heads = raw if isinstance(raw, torch.Tensor) else raw[-1]
    assert heads.dtype == torch.float32  # the head ran in float32 under autocast
    if family == "direct":  # a smooth regressor: bf16 in the trunk moves points only a little
        assert np.abs(out - fp(crops)).max() < 0.02


def test_direct_spatial_pool_starts_as_the_mean_it_replaces(tmp_path):
    """pool=spatial grows from mean-pooled weights without changing a single output, then learns."""
    torch.manual_seed(0)
    mean = create("direct", size=32, width_mult=0.25).eval()
    torch.nn.init.normal_(mean.fc.weight, std=1.0)  # fresh heads are all-zero: make the pooling matter
    grown = create("direct", size=32, width_mult=0.25, pool="spatial").eval()
    missing, unexpected = grown.load_state_dict(mean.state_dict(), strict=False)
    assert sorted(missing) == ["pools.0.weight", "pools.1.weight", "pools.2.weight"] and not unexpected
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(mean(x), grown(x), atol=1e-6)
    with torch.no_grad():
        for pool in grown.pools:  # positions weighted unevenly: the output moves
            pool.weight.normal_(std=1.0)
    assert (mean(x) - grown(x)).abs().max() > 1e-3
    # It exports like any other model and onnxruntime agrees with torch.
    from facemark.training.export import export_onnx

    export_onnx(grown, tmp_path / "d.onnx", {"name": "d"})
    crops = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    ref = Predictor(grown)(torch.from_numpy(crops)).detach().numpy()
    assert np.abs(OnnxModel(tmp_path / "d.onnx")(crops) - ref).max() < 1e-3
    with pytest.raises(ValueError, match="pool"):
        create("direct", size=32, pool="max")


def test_direct_readout_grows_with_unchanged_outputs_then_reads_positions(tmp_path):
    """readout=K adds a per-position linear read beside the pooling: trained weights load with the
    new layers missing, outputs stay exactly the same, and the new layers do move them once trained."""
    torch.manual_seed(0)
    base = create("direct", size=32, width_mult=0.25, pool="spatial").eval()
    torch.nn.init.normal_(base.fc.weight, std=1.0)
    grown = create("direct", size=32, width_mult=0.25, pool="spatial", readout=4).eval()
    missing, unexpected = grown.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("readouts.") for k in missing)
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(base(x), grown(x), atol=1e-6)
    with torch.no_grad():
        for r in grown.readouts:
            r.fc.weight.normal_(std=1.0)
    assert (base(x) - grown(x)).abs().max() > 1e-3
    from facemark.training.export import export_onnx

    export_onnx(grown, tmp_path / "r.onnx", {"name": "r"})
    crops = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    ref = Predictor(grown)(torch.from_numpy(crops)).detach().numpy()
    assert np.abs(OnnxModel(tmp_path / "r.onnx")(crops) - ref).max() < 1e-3
    for bad in (-1, 1.5, "8", True):
        with pytest.raises(ValueError, match="readout"):
            create("direct", size=32, readout=bad)


def test_a_replayed_cuda_graph_hands_each_call_its_own_output(tiny_models):
    """A replay wrote every batch's points into one output tensor and returned it: a result kept
    past the next call (or a thread's, with threads sharing a landmarker) changed under its holder.
    The graph is stood in for (capturing one needs a GPU): its replay writes twice its input."""
    tm = TorchModel(tiny_models["direct.pt"], device="cpu", precision="fp32")
    static_in, static_out = torch.zeros(2, 3), torch.zeros(2, 3)

    class Graph:
        def replay(self):
            static_out.copy_(static_in * 2)

    tm._graphs[2] = (Graph(), static_in, static_out)
    first = tm._graphed(torch.ones(2, 3))
    second = tm._graphed(torch.full((2, 3), 5.0))
    assert torch.equal(first, torch.full((2, 3), 2.0)) and torch.equal(second, torch.full((2, 3), 10.0))


def test_weights_saved_without_a_name_are_labelled_by_their_family(tmp_path):
    """A training run's best.pt carries no name: its results said "best@<digest>", not the
    family the README promises for retrained weights (a hostile user's find)."""
    from facemark import FaceLandmarker
    from facemark.models import create
    from facemark.training.export import save_state

    save_state(create("direct", size=32, width_mult=0.25).eval(), tmp_path / "best.pt", meta={"epoch": 1})
    name = FaceLandmarker(model=str(tmp_path / "best.pt")).model_name
    assert name.startswith("direct@") and len(name) == len("direct@") + 8, name

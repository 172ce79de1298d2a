"""Landmark model families. Each file holds one architecture; ``create`` builds one by name."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .direct import DirectRegression
from .hourglass import StackedHourglass
from .hybrid import HybridPIP

FAMILIES = ("hourglass", "direct", "hybrid")
_CLASSES = {"hourglass": StackedHourglass, "direct": DirectRegression, "hybrid": HybridPIP}


def create(family: str, **config) -> nn.Module:
    if family not in _CLASSES:
        raise ValueError(f"unknown model family {family!r}; choose from {', '.join(FAMILIES)}")
    return _CLASSES[family](**config)


def options(family: str) -> dict:
    """The keyword options ``create`` takes for this family (what ``--arch`` may set), with their defaults."""
    import inspect

    return {k: p.default for k, p in inspect.signature(_CLASSES[family].__init__).parameters.items() if k != "self"}


def normalize(crops: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S, 3) BGR crops -> float (N, 3, S, S) model input."""
    return scale_pixels(crops.permute(0, 3, 1, 2).float())


def scale_pixels(x: torch.Tensor) -> torch.Tensor:
    """0..255 pixel values -> about zero mean, unit spread (training feeds NCHW floats here)."""
    return (x - 127.5) / 64.0


class Predictor(nn.Module):
    """Normalise + model + decode: uint8 BGR crops (N, S, S, 3) -> canonical points (N, P, 2).

    This is what gets exported to ONNX and what the CUDA path runs, so both agree exactly; the
    pipeline hands it ``warpAffine`` output as is, with no copies or transposes of its own.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        out = self.model(normalize(crops))
        with torch.autocast(crops.device.type, enabled=False):  # decode in float32 (heads are)
            return self.model.decode(out)


def load_state(path: str | Path, map_location="cpu") -> tuple[torch.nn.Module, dict]:
    import warnings

    with warnings.catch_warnings():  # torch's notes on old pickle protocols: our own error says what is wrong
        warnings.simplefilter("ignore", UserWarning)
        blob = torch.load(path, map_location=map_location, weights_only=True)
    model = create(blob["family"], **blob["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.eval(), blob.get("meta", {})

"""Stacked hourglass (Newell et al. 2016) for 98 heatmaps, sized for CPU inference.

Input ``size`` px, stem to stride 4, ``stacks`` hourglasses of ``depth`` levels at ``width``
channels, one heatmap head per stack (intermediate supervision), merged back into the trunk.
Points are read from the last stack's heatmaps with DARK sub-pixel decoding (``decode.py``).
"""
from __future__ import annotations

import torch
from torch import nn

from .decode import heatmap_points
from .blocks import Bottleneck, conv_bn, fp32


class Hourglass(nn.Module):
    def __init__(self, width: int, depth: int):
        super().__init__()
        self.up = Bottleneck(width, width)
        self.down = nn.Sequential(nn.MaxPool2d(2), Bottleneck(width, width))
        self.inner = Hourglass(width, depth - 1) if depth > 1 else Bottleneck(width, width)
        self.out = Bottleneck(width, width)

    def forward(self, x):
        low = self.out(self.inner(self.down(x)))
        return self.up(x) + nn.functional.interpolate(low, scale_factor=2.0, mode="nearest")


class StackedHourglass(nn.Module):
    family = "hourglass"

    def __init__(self, num_points: int = 98, size: int = 128, stacks: int = 2, width: int = 96, depth: int = 3):
        super().__init__()
        if width < 4:  # (the stem's first unit is width // 2 wide, and its middle half of that)
            raise ValueError(f"width must be 4 or more, not {width}")
        if depth < 1:
            raise ValueError(f"depth must be 1 or more, not {depth}")
        self.config = dict(num_points=num_points, size=size, stacks=stacks, width=width, depth=depth)
        self.size = size
        self.stem = nn.Sequential(
            conv_bn(3, 32, 3, 2),
            Bottleneck(32, width // 2),
            nn.MaxPool2d(2),
            Bottleneck(width // 2, width),
        )
        self.hourglasses = nn.ModuleList(Hourglass(width, depth) for _ in range(stacks))
        self.features = nn.ModuleList(nn.Sequential(Bottleneck(width, width), conv_bn(width, width, 1)) for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(width, num_points, 1) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(stacks - 1))
        self.merge_heads = nn.ModuleList(nn.Conv2d(num_points, width, 1) for _ in range(stacks - 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Heatmaps of every stack (logits), last stack last."""
        x = self.stem(x)
        outs = []
        for i, hg in enumerate(self.hourglasses):
            f = self.features[i](hg(x))
            h = fp32(self.heads[i], f)
            outs.append(h)
            if i < len(self.hourglasses) - 1:
                x = x + self.merge_features[i](f) + self.merge_heads[i](h.to(f.dtype))
        return outs

    def decode(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return heatmap_points(outputs[-1])

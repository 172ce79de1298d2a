"""Direct regression: a MobileNetV2-style trunk squeezed to one vector, 196 numbers out.

Features of the last three stages are pooled and concatenated (as PFLD does), so the regressor
sees both fine and coarse evidence. Outputs are canonical crop coordinates in [0, 1].
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import InvertedResidual, conv_bn, fp32

# (expand, channels, repeats, stride) as in MobileNetV2, trimmed for 112-px faces.
STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2)]


def _scaled(c: int, mult: float) -> int:
    return max(8, int(round(c * mult / 8)) * 8)


class DirectRegression(nn.Module):
    family = "direct"

    def __init__(self, num_points: int = 98, size: int = 112, width_mult: float = 1.0):
        super().__init__()
        self.config = dict(num_points=num_points, size=size, width_mult=width_mult)
        self.size = size
        self.num_points = num_points
        c = _scaled(32, width_mult)
        self.stem = conv_bn(3, c, 3, 2)
        blocks = []
        self.taps = []
        for t, ch, n, s in STAGES:
            out = _scaled(ch, width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
            self.taps.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.taps = self.taps[-3:]
        tap_ch = [_scaled(ch, width_mult) for _, ch, _, _ in STAGES[-3:]]
        self.last = conv_bn(c, 4 * c, 1)
        self.fc = nn.Linear(sum(tap_ch[:-1]) + 4 * c, num_points * 2)
        nn.init.zeros_(self.fc.weight)
        nn.init.constant_(self.fc.bias, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        pooled = []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in self.taps[:-1]:
                pooled.append(x.mean((2, 3)))
        pooled.append(self.last(x).mean((2, 3)))
        return fp32(self.fc, torch.cat(pooled, 1)).view(-1, self.num_points, 2)

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs

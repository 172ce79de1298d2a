"""Direct regression: a MobileNetV2-style trunk squeezed to one vector, 196 numbers out.

Features of the last three stages are pooled and concatenated (as PFLD does), so the regressor
sees both fine and coarse evidence. Outputs are canonical crop coordinates in [0, 1].

Pooling: ``pool="mean"`` averages each map (v0.1). A plain average throws away *where* a feature
fired, which is exactly what a landmark regressor needs, so ``pool="spatial"`` learns one weight per
channel and position instead (MobileFaceNet's global depthwise convolution). It costs about
18 k multiply-adds at 112 px, and starts as the plain average, so mean-pooled weights fine-tune into it.

Readout: pooling, even learned, still gives each channel one number, so the head can only weigh a
channel the same way for every landmark's position. ``readout=K`` adds, beside it, a linear read of
every position of each tapped map (through a 1x1 projection to K channels, so it stays small:
0.19 M parameters and 0.32 M multiply-adds for K=8). Its last layer starts at zero, so trained
weights grow into it with unchanged outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import InvertedResidual, conv_bn

# (expand, channels, repeats, stride) as in MobileNetV2, trimmed for 112-px faces.
STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2)]


def _scaled(c: int, mult: float) -> int:
    return max(8, int(round(c * mult / 8)) * 8)


class SpatialPool(nn.Module):
    """Per-channel weighted sum over positions; initialised to the plain average."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels, side, side), 1.0 / (side * side)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).sum((2, 3))


class FlatReadout(nn.Module):
    """The weights of a readout: a 1x1 projection to ``k`` channels, then one linear layer over
    every position (zero-initialised). The model applies them, with its head's in one product."""

    def __init__(self, channels: int, side: int, k: int, out: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, k, 1, bias=False)  # no BN: nothing to calibrate when grown
        self.fc = nn.Linear(k * side * side, out, bias=False)
        nn.init.zeros_(self.fc.weight)


def _mean_pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean((2, 3))


class DirectRegression(nn.Module):
    family = "direct"

    def __init__(self, num_points: int = 98, size: int = 112, width_mult: float = 1.0, pool: str = "mean",
                 readout: int = 0):
        super().__init__()
        if pool not in ("mean", "spatial"):
            raise ValueError(f"pool must be 'mean' or 'spatial', not {pool!r}")
        if isinstance(readout, bool) or not isinstance(readout, int) or not 0 <= readout <= 256:
            raise ValueError(f"readout must be a channel count 0-256 (0: none), not {readout!r}")
        self.config = dict(num_points=num_points, size=size, width_mult=width_mult, pool=pool, readout=readout)
        self.size = size
        self.num_points = num_points
        c = _scaled(32, width_mult)
        self.stem = conv_bn(3, c, 3, 2)
        side = (size + 1) // 2  # every stride-2 layer (k3, p1) maps n to ceil(n / 2)
        blocks, sides = [], []
        self.taps = []
        for t, ch, n, s in STAGES:
            out = _scaled(ch, width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
            side = (side + 1) // 2 if s == 2 else side
            self.taps.append(len(blocks) - 1)
            sides.append(side)
        self.blocks = nn.ModuleList(blocks)
        self.taps = self.taps[-3:]
        tap_ch = [_scaled(ch, width_mult) for _, ch, _, _ in STAGES[-3:]]
        self.last = conv_bn(c, 4 * c, 1)
        maps = list(zip(tap_ch[:-1] + [4 * c], sides[-3:]))  # (channels, side) of each tapped map
        if pool == "spatial":
            self.pools = nn.ModuleList([SpatialPool(ch, sd) for ch, sd in maps])
        else:
            self.pools = [_mean_pool] * 3
        self.readouts = nn.ModuleList([FlatReadout(ch, sd, readout, num_points * 2) for ch, sd in maps] if readout else [])
        self.fc = nn.Linear(sum(tap_ch[:-1]) + 4 * c, num_points * 2)
        nn.init.zeros_(self.fc.weight)
        nn.init.constant_(self.fc.bias, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        maps = []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in self.taps[:-1]:
                maps.append(x)
        maps.append(self.last(x))
        feats = [pool(m) for pool, m in zip(self.pools, maps)] + [r.reduce(m).flatten(1) for r, m in zip(self.readouts, maps)]
        # One matrix product for the pooled and the per-position features (the readouts' weights
        # joined to the head's once, at export): one GEMM where there would be four and three adds.
        weight = torch.cat([self.fc.weight] + [r.fc.weight for r in self.readouts], 1)
        with torch.autocast(x.device.type, enabled=False):
            out = F.linear(torch.cat(feats, 1).float(), weight.float(), self.fc.bias.float())
        return out.view(-1, self.num_points, 2)

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs

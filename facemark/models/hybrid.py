"""Hybrid heatmap + regression in the manner of PIPNet (Jin et al. 2021).

A ResNet-style trunk at stride 16 gives a coarse grid (8 x 8 cells at 128 px). Per landmark: a score map over the grid,
an (x, y) offset from the best cell's centre, and (x, y) offsets to its K nearest neighbours in
the mean shape. Decoding averages each point's own estimate with its neighbours' estimates of it,
which keeps the shape plausible where the score map is unsure.
"""
from __future__ import annotations

import torch
from torch import nn

from .decode import pip_points
from .blocks import BasicBlock, conv_bn, fp32


class HybridPIP(nn.Module):
    family = "hybrid"

    def __init__(self, num_points: int = 98, size: int = 128, widths: tuple[int, ...] = (48, 96, 192),
                 neighbors: list[list[int]] | None = None, num_neighbors: int = 10):
        super().__init__()
        if neighbors is None:  # placeholder until the mean shape is known; replaced before training
            neighbors = [[(i + k + 1) % num_points for k in range(num_neighbors)] for i in range(num_points)]
        self.config = dict(num_points=num_points, size=size, widths=list(widths), neighbors=neighbors,
                           num_neighbors=len(neighbors[0]))
        self.size = size
        self.num_points = num_points
        self.register_buffer("neighbors", torch.tensor(neighbors, dtype=torch.long), persistent=False)
        w = list(widths)
        self.stem = nn.Sequential(conv_bn(3, w[0], 3, 2), conv_bn(w[0], w[0], 3, 2))  # stride 4
        stages = []
        cin = w[0]
        for i, c in enumerate(w):
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(cin, c, stride), BasicBlock(c, c)]
            cin = c
        self.trunk = nn.Sequential(*stages)  # stride 4 * 2^(len(widths)-1)
        self.k = len(neighbors[0])
        self.head = nn.Conv2d(cin, num_points * (3 + 2 * self.k), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, P*(3+2K), g, g): score logits, x/y offsets, neighbour x/y offsets (grid units)."""
        return fp32(self.head, self.trunk(self.stem(x)))

    def split(self, out: torch.Tensor):
        p, k = self.num_points, self.k
        return out[:, :p], out[:, p:2 * p], out[:, 2 * p:3 * p], out[:, 3 * p:3 * p + p * k], out[:, 3 * p + p * k:]

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return pip_points(*self.split(out), self.neighbors)

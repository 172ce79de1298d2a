"""Batched augmentation in torch (runs where the pack lives: CPU here, GPU in the GPU script).

Geometry works in centred canonical coordinates ``c = 2u - 1`` (the model crop spans [-1, 1]),
which is also ``grid_sample``'s edge-to-edge convention (``align_corners=False``). A pack crop
spans ``[-margin, margin]`` of that frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.decode import gaussian_kernel


@dataclass
class AugmentConfig:
    rotate: float = 30.0  # degrees, the wide range (taken with probability p_wide_rotate)
    p_wide_rotate: float = 0.35
    rotate_narrow: float = 6.0  # degrees, std of the usual small roll
    scale: float = 0.12  # log-uniform +-
    shift: float = 0.06  # in c units (crop half-widths)
    flip: float = 0.5
    colour: float = 0.8
    grey: float = 0.1
    blur: float = 0.2
    noise: float = 0.2
    occlude: float = 0.3


PROBABILITIES = ("p_wide_rotate", "flip", "colour", "grey", "blur", "noise", "occlude")
# The most each geometric setting can mean: a half turn; a face scaled e^±1 (2.7x); a shift of a
# whole crop. Beyond them the face leaves its crop (scale=50 is e^50).
LIMITS = {"rotate": 180.0, "rotate_narrow": 90.0, "scale": 1.0, "shift": 1.0}


def augment_config(overrides: dict) -> AugmentConfig:
    """``--aug KEY=VALUE`` over the defaults: ValueError naming a key or value that cannot be."""
    known = AugmentConfig.__dataclass_fields__
    for k, v in overrides.items():
        if k not in known:
            raise ValueError(f"--aug {k}: not an augmentation setting (they are {', '.join(known)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
            raise ValueError(f"--aug {k}={v}: give a number, 0 or more")
        if k in PROBABILITIES and v > 1:
            raise ValueError(f"--aug {k}={v}: a probability, 0 to 1")
        if k in LIMITS and v > LIMITS[k]:
            raise ValueError(f"--aug {k}={v}: at most {LIMITS[k]:g} (the default is {getattr(AugmentConfig, k):g})")
    return AugmentConfig(**{k: float(v) for k, v in overrides.items()})


def sample_geometry(n: int, cfg: AugmentConfig, device, gen: torch.Generator | None = None):
    """Random similarity + flip. Returns (A (n,2,2), t (n,2), flip (n,) bool): b = F(A c + t)."""
    u = lambda *s: torch.rand(*s, device=device, generator=gen)  # noqa: E731
    wide = u(n) < cfg.p_wide_rotate
    ang = torch.where(wide, (u(n) * 2 - 1) * cfg.rotate,
                      torch.randn(n, device=device, generator=gen) * cfg.rotate_narrow) * math.pi / 180
    s = torch.exp((u(n) * 2 - 1) * cfg.scale)
    cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    t = (u(n, 2) * 2 - 1) * cfg.shift
    flip = u(n) < cfg.flip
    return a, t, flip


def identity_geometry(n: int, device):
    return torch.eye(2, device=device).expand(n, 2, 2).clone(), torch.zeros(n, 2, device=device), torch.zeros(n, dtype=torch.bool, device=device)


def warp(images: torch.Tensor, a: torch.Tensor, t: torch.Tensor, flip: torch.Tensor, margin: float, size: int) -> torch.Tensor:
    """uint8 pack crops (n, R, R, 3) -> float (n, 3, size, size) pixels 0..255 of the jittered crop."""
    n = images.shape[0]
    fmat = torch.ones(n, 2, device=a.device)
    fmat[:, 0] = torch.where(flip, -1.0, 1.0)
    # c = A^-1 (F b - t); pack-normalised coords are c / margin.
    a_inv = torch.linalg.inv(a)
    theta = torch.cat([a_inv * fmat[:, None, :], -(a_inv @ t[..., None])], -1) / margin
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    x = images.permute(0, 3, 1, 2).float()
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def transform_points(points_pack: torch.Tensor, a, t, flip, margin: float, flip_perm: torch.Tensor | None) -> torch.Tensor:
    """Pack-frame [0, 1] points (n, P, 2) -> output-crop [0, 1] points, reordered where flipped
    (``flip_perm`` may be None only when nothing is flipped)."""
    c = (points_pack * 2 - 1) * margin
    b = c @ a.transpose(1, 2) + t[:, None, :]
    if flip.any():
        b = torch.where(flip[:, None, None], b * torch.tensor([-1.0, 1.0], device=b.device), b)
        b = torch.where(flip[:, None, None], b[:, flip_perm], b)
    return (b + 1) / 2


def to_pack_frame(points: torch.Tensor, a, t, flip, margin: float, flip_perm: torch.Tensor | None) -> torch.Tensor:
    """``transform_points`` undone: output-crop [0, 1] points of a view -> pack-frame [0, 1]."""
    b = points * 2 - 1
    if flip.any():
        mirrored = (b * torch.tensor([-1.0, 1.0], device=b.device))[:, flip_perm]
        b = torch.where(flip[:, None, None], mirrored, b)
    c = (b - t[:, None, :]) @ torch.linalg.inv(a).transpose(1, 2)
    return (c / margin + 1) / 2


def photometric(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Colour, grey, blur, noise and occlusion on float pixels (n, 3, H, W) in 0..255."""
    n, _, h, w = x.shape
    dev = x.device
    u = lambda *s: torch.rand(*s, device=dev, generator=gen)  # noqa: E731
    on = (u(n) < cfg.colour).float()[:, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    contrast = 1 + (u(n, 1, 1, 1) * 2 - 1) * 0.35 * on
    bright = (u(n, 1, 1, 1) * 2 - 1) * 40 * on
    grey = x.mean(1, keepdim=True)
    sat = 1 + (u(n, 1, 1, 1) * 2 - 1) * 0.5 * on
    x = grey + (x - grey) * sat
    x = (x - mean) * contrast + mean + bright
    x = x * (1 + (u(n, 3, 1, 1) * 2 - 1) * 0.1 * on)  # per-channel gain (white balance)
    g = (u(n) < cfg.grey)[:, None, None, None]
    x = torch.where(g, x.mean(1, keepdim=True).expand_as(x), x)
    b = u(n) < cfg.blur
    if b.any():
        k = gaussian_kernel(0.5 + float(u(1)) * 1.0).to(x)
        r = k.shape[-1] // 2
        xb = F.conv2d(F.pad(x[b].reshape(-1, 1, h, w), (r, r, r, r), mode="replicate"), k[None, None]).reshape(-1, 3, h, w)
        x = x.clone()
        x[b] = xb
    nz = (u(n) < cfg.noise).float()[:, None, None, None]
    x = x + torch.randn(x.shape, device=dev, generator=gen) * u(n, 1, 1, 1) * 10 * nz
    occ = u(n) < cfg.occlude
    if occ.any():
        ys = torch.arange(h, device=dev)[None, :, None]
        xs = torch.arange(w, device=dev)[None, None, :]
        bw, bh = (0.1 + u(n) * 0.3) * w, (0.1 + u(n) * 0.3) * h
        x0, y0 = u(n) * (w - bw), u(n) * (h - bh)
        mask = (xs >= x0[:, None, None]) & (xs < (x0 + bw)[:, None, None]) & (ys >= y0[:, None, None]) & (ys < (y0 + bh)[:, None, None])
        mask = (mask & occ[:, None, None])[:, None]
        fill = u(n, 3, 1, 1) * 255
        x = torch.where(mask, fill.expand_as(x), x)
    return x.clamp(0, 255)

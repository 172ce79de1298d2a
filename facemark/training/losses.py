"""Training losses per model family. Points are output-crop canonical [0, 1] coordinates."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HEATMAP_SIGMA = 1.5  # in heatmap cells


def heatmap_axes(points: torch.Tensor, h: int, w: int, sigma: float = HEATMAP_SIGMA):
    """The two 1-D factors of the target Gaussians, centred exactly at sub-cell positions
    (unbiased; matches DARK decoding)."""
    px = points[..., 0] * w - 0.5
    py = points[..., 1] * h - 0.5
    xs = torch.arange(w, device=points.device, dtype=points.dtype)
    ys = torch.arange(h, device=points.device, dtype=points.dtype)
    gx = torch.exp(-((xs - px[..., None]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ys - py[..., None]) ** 2) / (2 * sigma**2))
    return gy, gx


def adaptive_wing(pred: torch.Tensor, target: torch.Tensor, alpha=2.1, omega=14.0, eps=1.0, theta=0.5) -> torch.Tensor:
    """Adaptive Wing loss (Wang et al. 2019), element-wise: steep near the foreground so peaks are
    placed precisely, tolerant on the background."""
    d = (pred - target).abs()
    a_y = alpha - target
    small = omega * torch.log1p((d / eps).clamp(min=1e-12) ** a_y)
    r = (theta / eps) ** a_y
    big_a = omega / (1 + r) * a_y * (theta / eps) ** (a_y - 1) / eps
    big_c = theta * big_a - omega * torch.log1p(r)
    return torch.where(d < theta, small, big_a * d - big_c)


def foreground_weight(gy: torch.Tensor, gx: torch.Tensor, w: float = 10.0) -> torch.Tensor:
    """The AWing weight map: w on the 3x3-dilated region where the target exceeds 0.2. The target
    is separable (gy x gx >= 0), so its 3x3 max is the product of two 1-D 3-wide maxes."""
    def dilate(g):
        return F.max_pool1d(g.reshape(-1, 1, g.shape[-1]), 3, 1, 1).reshape(g.shape)

    m = (dilate(gy)[..., :, None] * dilate(gx)[..., None, :]) > 0.2
    return 1 + (w - 1) * m.float()


def wing(pred: torch.Tensor, target: torch.Tensor, omega: float = 10.0, eps: float = 2.0) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) on pixel distances: log-shaped near zero, L1 beyond ``omega``."""
    d = (pred - target).abs()
    c = omega - omega * math.log1p(omega / eps)
    return torch.where(d < omega, omega * torch.log1p(d / eps), d - c)


def _stack_loss(out: torch.Tensor, target: torch.Tensor, fw: torch.Tensor) -> torch.Tensor:
    return (adaptive_wing(out.float(), target) * fw).mean((2, 3))


# Many element-wise passes over (N, P, H, W): fused into one loop where a compiler is at hand.
_stack_loss_fused = None


def _fused():
    global _stack_loss_fused
    if _stack_loss_fused is None:
        try:
            _stack_loss_fused = torch.compile(_stack_loss, dynamic=False)
        except Exception:  # noqa: BLE001 - no compiler: eager is correct, only slower
            _stack_loss_fused = _stack_loss
    return _stack_loss_fused


def hourglass_loss(outputs: list[torch.Tensor], points, point_w, sample_w, fuse: bool = True) -> torch.Tensor:
    h, w = outputs[-1].shape[-2:]
    gy, gx = heatmap_axes(points, h, w)
    target = gy[..., :, None] * gx[..., None, :]
    fw = foreground_weight(gy, gx)
    fn = _fused() if fuse else _stack_loss
    total = 0.0
    for out in outputs:  # intermediate supervision: every stack learns the same target
        total = total + (fn(out, target, fw) * point_w).mean(1)
    return (total * sample_w).sum() / sample_w.sum()


def direct_loss(out: torch.Tensor, points, point_w, sample_w, size: int) -> torch.Tensor:
    el = wing(out.float() * size, points * size).sum(-1)
    return ((el * point_w).mean(1) * sample_w).sum() / sample_w.sum()


def hybrid_loss(model, out: torch.Tensor, points, point_w, sample_w) -> torch.Tensor:
    scores, ox, oy, nbx, nby = model.split(out.float())
    n, p, g, _ = scores.shape
    k = model.k
    cell = (points * g).floor().clamp(0, g - 1)  # (n, p, 2)
    idx = (cell[..., 1] * g + cell[..., 0]).long()
    ce = F.cross_entropy(scores.reshape(n * p, g * g), idx.reshape(-1), reduction="none").reshape(n, p)

    def take(t, m):
        t = t.reshape(n, p, m, g * g)
        return t.gather(-1, idx[:, :, None, None].expand(n, p, m, 1))[..., 0]

    rel = points * g - (cell + 0.5)  # own offset target, grid units
    off = (take(ox, 1)[..., 0] - rel[..., 0]).abs() + (take(oy, 1)[..., 0] - rel[..., 1]).abs()
    nb_pts = points[:, model.neighbors]  # (n, p, k, 2)
    nb_rel = nb_pts * g - (cell[:, :, None] + 0.5)
    nb = (take(nbx, k) - nb_rel[..., 0]).abs().mean(-1) + (take(nby, k) - nb_rel[..., 1]).abs().mean(-1)
    per_point = ce + 5.0 * off + 2.5 * nb
    return ((per_point * point_w).mean(1) * sample_w).sum() / sample_w.sum()


def loss_for(model, outputs, points, point_w, sample_w, fuse: bool = False) -> torch.Tensor:
    if model.family == "hourglass":
        return hourglass_loss(outputs, points, point_w, sample_w, fuse=fuse)
    if model.family == "direct":
        return direct_loss(outputs, points, point_w, sample_w, model.size)
    if model.family == "hybrid":
        return hybrid_loss(model, outputs, points, point_w, sample_w)
    raise ValueError(model.family)

"""Decoding model outputs into canonical crop coordinates in [0, 1] (edge to edge).

A grid of ``g`` cells covers the unit square, so cell ``j``'s centre is ``(j + 0.5) / g`` whatever
the model's input size. Everything here is batched over faces and points and exports to ONNX.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Made where it is used: a copy from the CPU is not allowed inside a CUDA graph's capture."""
    r = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    return k[:, None] * k[None, :]


def heatmap_points(heatmaps: torch.Tensor, blur_sigma: float = 1.0) -> torch.Tensor:
    """Sub-pixel peaks of (N, P, H, W) heatmaps: argmax, then DARK (Zhang et al. 2020): a
    second-order Taylor step on the log of the blurred heatmap, exact for a Gaussian peak and
    unbiased where plain argmax is off by up to half a cell. Only a patch around each peak is
    blurred, which is all the 3x3 derivative stencil reads."""
    n, p, h, w = heatmaps.shape
    hm = heatmaps.float()
    flat = hm.reshape(n, p, h * w)
    idx = flat.argmax(-1)
    ix = idx % w
    iy = torch.div(idx, w, rounding_mode="floor")
    k = gaussian_kernel(blur_sigma, hm.device) if blur_sigma > 0 else torch.ones(1, 1, device=hm.device)
    r = k.shape[-1] // 2
    e = r + 1  # patch half-width: blur radius + the stencil's one cell
    side = 2 * e + 1
    # Stencil centre clamped one cell inside the map (the peak itself may sit on the border).
    cx = torch.clamp(ix, 1, w - 2)
    cy = torch.clamp(iy, 1, h - 2)
    padded = F.pad(hm, (e, e, e, e), mode="replicate").reshape(n, p, (h + 2 * e) * (w + 2 * e))
    off = torch.arange(side, device=hm.device)
    rows = (cy[..., None] + off) * (w + 2 * e)  # padded row of patch row j is cy + j
    pos = (rows[..., :, None] + cx[..., None, None] + off).reshape(n, p, side * side)
    patch = padded.gather(-1, pos).reshape(n * p, 1, side, side)
    patch = F.conv2d(patch, k[None, None]).reshape(n, p, 3, 3)  # blurred 3x3 around (cx, cy)
    peak = patch.amax((-2, -1), keepdim=True)
    logh = torch.log(torch.clamp(patch / torch.clamp(peak, min=1e-6), min=1e-4))
    c = logh[..., 1, 1]
    gx = 0.5 * (logh[..., 1, 2] - logh[..., 1, 0])
    gy = 0.5 * (logh[..., 2, 1] - logh[..., 0, 1])
    hxx = logh[..., 1, 2] - 2 * c + logh[..., 1, 0]
    hyy = logh[..., 2, 1] - 2 * c + logh[..., 0, 1]
    hxy = 0.25 * (logh[..., 2, 2] - logh[..., 0, 2] - logh[..., 2, 0] + logh[..., 0, 0])
    det = hxx * hyy - hxy * hxy
    ok = (det > 1e-6) & (hxx < 0) & (hyy < 0)
    safe = torch.where(ok, det, torch.ones_like(det))
    dx = torch.where(ok, -(hyy * gx - hxy * gy) / safe, torch.zeros_like(det))
    dy = torch.where(ok, -(hxx * gy - hxy * gx) / safe, torch.zeros_like(det))
    # At the border the stencil is not centred on the peak: keep the integer argmax there.
    x = torch.where(ix == cx, ix.float() + torch.clamp(dx, -1.0, 1.0), ix.float())
    y = torch.where(iy == cy, iy.float() + torch.clamp(dy, -1.0, 1.0), iy.float())
    return torch.stack([(x + 0.5) / w, (y + 0.5) / h], -1)


def neighbor_average_matrix(neighbors: torch.Tensor) -> torch.Tensor:
    """(P, P + P*K) matrix averaging each point's own estimate with its neighbours' estimates."""
    p, k = neighbors.shape
    dev = neighbors.device  # (a model's buffer: on the GPU when the model is)
    target = torch.cat([torch.arange(p, device=dev), neighbors.reshape(-1)])
    a = torch.zeros(p, p + p * k, device=dev)
    a[target, torch.arange(p + p * k, device=dev)] = 1.0
    return a / a.sum(1, keepdim=True)


def pip_points(scores, off_x, off_y, nb_x, nb_y, neighbors: torch.Tensor) -> torch.Tensor:
    """PIP decoding: best cell per point + its offset, averaged with neighbours' estimates."""
    n, p, g, _ = scores.shape
    k = neighbors.shape[1]
    idx = scores.reshape(n, p, g * g).argmax(-1)  # (N, P)
    cx = (idx % g).float()
    cy = torch.div(idx, g, rounding_mode="floor").float()

    def take(t: torch.Tensor, m: int) -> torch.Tensor:
        t = t.reshape(n, p, m, g * g)
        return t.gather(-1, idx[:, :, None, None].expand(n, p, m, 1))[..., 0]

    own_x = cx + 0.5 + take(off_x, 1)[..., 0]
    own_y = cy + 0.5 + take(off_y, 1)[..., 0]
    nbx = (cx[..., None] + 0.5 + take(nb_x, k)).reshape(n, p * k)
    nby = (cy[..., None] + 0.5 + take(nb_y, k)).reshape(n, p * k)
    avg = neighbor_average_matrix(neighbors).to(own_x)
    x = torch.cat([own_x, nbx], 1) @ avg.T
    y = torch.cat([own_y, nby], 1) @ avg.T
    return torch.stack([x, y], -1) / g

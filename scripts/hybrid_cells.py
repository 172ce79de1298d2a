"""Where the hybrid's error comes from, on the training pack's held-out faces.

Prints how often the score map picks a cell other than the point's own, the error of the points
read from such cells against the rest, and the held-out NME of a few decoding variants (own
estimate only, own estimate weighted against the neighbours' votes, the median vote). The model
card's hybrid notes come from this.

    python scripts/hybrid_cells.py --pack runs/pack192.npz [--model weights/hybrid.pt] [--views 6]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from facemark.models.decode import neighbor_average_matrix
from facemark.training.augment import identity_geometry, sample_geometry, transform_points, warp
from facemark.models import scale_pixels
from facemark.training.train import Trainer, TrainOptions, load_pack, nme68


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", type=Path, required=True, help="the training pack (facemark pack)")
    ap.add_argument("--model", default="hybrid", help="a hybrid model name or .pt")
    ap.add_argument("--views", type=int, default=6, help="views per face: as cropped, then jittered (no flips)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pack = load_pack(args.pack, [], None, None, 192)
    with tempfile.TemporaryDirectory() as out:  # the trainer wants a run folder; nothing is written to it
        tr = Trainer(pack, TrainOptions(family="hybrid", out=Path(out), init=args.model), log=lambda *a: None)
    m = tr.model.eval()
    gen = torch.Generator().manual_seed(1)
    i = torch.from_numpy(tr.val_idx)
    outs, h68, t98 = [], [], []
    for view in range(args.views):
        a, t, _ = identity_geometry(len(i), tr.dev) if view == 0 else sample_geometry(len(i), tr.aug, tr.dev, gen)
        geo = (a, t, torch.zeros(len(i), dtype=torch.bool))
        with torch.no_grad():
            outs.append(m(scale_pixels(warp(tr.images[i], *geo, pack.margin, m.size))))
        h68.append(transform_points(tr.human[i], *geo, pack.margin, None))
        t98.append(transform_points(tr.targets[i], *geo, pack.margin, None))
    out, h68, t98 = torch.cat(outs), torch.cat(h68), torch.cat(t98)
    scores, ox, oy, nbx, nby = m.split(out)
    n, p, g, _ = scores.shape
    k = m.k
    pick = scores.reshape(n, p, g * g).argmax(-1)
    cx, cy = (pick % g).float(), torch.div(pick, g, rounding_mode="floor").float()

    def take(t: torch.Tensor, c: int) -> torch.Tensor:
        return t.reshape(n, p, c, g * g).gather(-1, pick[:, :, None, None].expand(n, p, c, 1))[..., 0]

    own = torch.stack([cx + 0.5 + take(ox, 1)[..., 0], cy + 0.5 + take(oy, 1)[..., 0]], -1)
    votes_x = torch.cat([own[..., 0], (cx[..., None] + 0.5 + take(nbx, k)).reshape(n, p * k)], 1)
    votes_y = torch.cat([own[..., 1], (cy[..., None] + 0.5 + take(nby, k)).reshape(n, p * k)], 1)
    target_of = torch.cat([torch.arange(p), m.neighbors.reshape(-1)])

    own_cell = (t98 * g).floor().clamp(0, g - 1)
    wrong = pick != (own_cell[..., 1] * g + own_cell[..., 0]).long()
    err = (own / g - t98).norm(dim=-1) * g
    print(f"{len(i)} held-out faces x {args.views} views; grid {g}x{g}")
    print(f"points read from a neighbouring cell: {wrong.float().mean() * 100:.1f} %")
    print(f"own-estimate error, grid cells: own cell {err[~wrong].mean():.3f}, neighbouring cell {err[wrong].mean():.3f} "
          f"({err[wrong].sum() / err.sum() * 100:.0f} % of all own-estimate error)")

    def nme(points: torch.Tensor) -> float:
        return float(nme68(points / g, h68, tr.m68).mean()) * 100

    def weighted(w_own: float) -> torch.Tensor:
        w = torch.zeros(p, p + p * k)
        w[target_of, torch.arange(p + p * k)] = 1.0
        w[torch.arange(p), torch.arange(p)] = w_own
        w = w / w.sum(1, keepdim=True)
        return torch.stack([votes_x @ w.T, votes_y @ w.T], -1)

    avg = neighbor_average_matrix(m.neighbors)
    print(f"held-out NME %: shipped decoding (mean of own + votes) {nme(torch.stack([votes_x @ avg.T, votes_y @ avg.T], -1)):.3f}")
    print(f"  own estimate only {nme(own):.3f}")
    for w_own in (2, 3, 5):
        print(f"  own estimate weighted {w_own}x {nme(weighted(w_own)):.3f}")
    med = torch.stack([torch.stack([votes_x[:, target_of == j].median(1).values,
                                    votes_y[:, target_of == j].median(1).values], -1) for j in range(p)], 1)
    print(f"  median vote {nme(med):.3f}")


if __name__ == "__main__":
    main()

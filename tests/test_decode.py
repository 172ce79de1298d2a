import numpy as np
import torch

from facemark.models.decode import heatmap_points, neighbor_average_matrix, pip_points


def gaussians(centres: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.exp(-((xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2) / (2 * sigma**2))


def test_dark_decoding_is_subpixel_exact():
    torch.manual_seed(0)
    c = torch.rand(3, 7, 2) * 24 + 4
    hm = gaussians(c, 32, 32, 1.5)
    for blur in (0.0, 1.0):
        u = heatmap_points(hm, blur)
        assert u.shape == (3, 7, 2)
        err = (u * 32 - 0.5 - c).abs().max()
        assert err < 2e-3, (blur, err)
    argmax_err = (hm.flatten(2).argmax(-1) % 32 - c[..., 0]).abs().max()
    assert argmax_err > 0.2  # plain argmax is visibly worse, so the test can fail


def test_dark_keeps_border_peaks():
    hm = torch.zeros(1, 1, 16, 16)
    hm[0, 0, 0, 15] = 1.0
    u = heatmap_points(hm)
    assert torch.allclose(u * 16 - 0.5, torch.tensor([[[15.0, 0.0]]]))


def test_neighbor_average_matrix_rows_sum_to_one():
    nb = torch.tensor([[1, 2], [0, 2], [0, 1], [2, 1]])
    a = neighbor_average_matrix(nb)
    assert a.shape == (4, 4 + 8)
    assert torch.allclose(a.sum(1), torch.ones(4))
    assert a[3, 3] == 1.0  # point 3 is nobody's neighbour: only its own estimate


def test_pip_decoding_reproduces_points():
    g, p, k = 8, 4, 2
    rng = np.random.default_rng(0)
    pts = torch.tensor(rng.uniform(0.05, 0.95, (1, p, 2)), dtype=torch.float32)
    nb = torch.tensor([[1, 2], [0, 3], [3, 0], [2, 1]])
    cell = (pts * g).floor()
    scores = torch.full((1, p, g, g), -10.0)
    ox, oy = torch.zeros(1, p, g, g), torch.zeros(1, p, g, g)
    nbx, nby = torch.zeros(1, p * k, g, g), torch.zeros(1, p * k, g, g)
    for j in range(p):
        cx, cy = int(cell[0, j, 0]), int(cell[0, j, 1])
        scores[0, j, cy, cx] = 10.0
        ox[0, j, cy, cx] = pts[0, j, 0] * g - (cx + 0.5)
        oy[0, j, cy, cx] = pts[0, j, 1] * g - (cy + 0.5)
        for q in range(k):
            t = nb[j, q]
            nbx[0, j * k + q, cy, cx] = pts[0, t, 0] * g - (cx + 0.5)
            nby[0, j * k + q, cy, cx] = pts[0, t, 1] * g - (cy + 0.5)
    out = pip_points(scores, ox, oy, nbx, nby, nb)
    assert torch.allclose(out, pts, atol=1e-5)
    # Neighbours that disagree: every vote 0.3 cells right and 0.6 down of the point's own estimate.
    # Each point here gets two votes, so it is the mean of three: two thirds of the shift.
    out = pip_points(scores, ox, oy, nbx + 0.3 * (nbx != 0), nby + 0.6 * (nby != 0), nb)
    assert torch.allclose(out - pts, torch.tensor([0.2, 0.4]) / g, atol=1e-5)

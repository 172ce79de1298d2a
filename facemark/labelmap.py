"""Between WFLW-98 and iBUG-68: a fitted sparse 98->68 map and label fusion.

The plain index map (``layouts.INDEX_98_TO_68``) is close but not exact: iBUG eyelid points sit at
thirds of the lid, WFLW's at quarters; iBUG brows run along the middle of the brow, WFLW draws its
upper and lower edges. So each iBUG point is an affine combination (weights sum to 1) of a few
WFLW points of the same part, fitted by least squares of human 68-point labels on teacher 98-point
outputs over the 300-W training faces (``facemark calibrate``), shrunk towards the index map.

Fusion turns a 68-point human label plus a 98-point teacher label into one 98-point target that
reproduces the human label exactly through the map and moves the other points with their
neighbours (the smoothest correction of the teacher along each contour), so the human labels win
wherever they exist.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .layouts import INDEX_98_TO_68


def _candidates() -> list[list[int]]:
    c: list[list[int]] = []
    c += [[j for j in (2 * i - 1, 2 * i, 2 * i + 1) if 0 <= j <= 32] for i in range(17)]
    for upper, lower in ((range(33, 38), range(38, 42)), (range(42, 47), range(47, 51))):
        u = list(upper)
        c += [[u[j] for j in (t - 1, t, t + 1) if 0 <= j < 5] + list(lower) for t in range(5)]
    nose = [[51, 52], [51, 52, 53], [52, 53, 54], [53, 54, 57], [55, 56], [55, 56, 57], [56, 57, 58], [57, 58, 59], [58, 59]]
    c += nose
    c += [list(range(60, 68)) + [96]] * 6
    c += [list(range(68, 76)) + [97]] * 6
    for start, n in ((76, 12), (88, 8)):
        c += [[start + (t + d) % n for d in (-1, 0, 1)] for t in range(n)]
    return c


CANDIDATES: list[list[int]] = _candidates()

_LOOPS = [list(range(33, 42)), list(range(42, 51)), list(range(60, 68)), list(range(68, 76)),
          list(range(76, 88)), list(range(88, 96))]
_PATHS = [list(range(0, 33)), [51, 52, 53, 54, 57], list(range(55, 60))]
_EXTRA = [(96, j) for j in range(60, 68)] + [(97, j) for j in range(68, 76)] + [(76, 88), (82, 92), (79, 90), (85, 94)]


def edges() -> list[tuple[int, int]]:
    e = [(a, b) for path in _PATHS for a, b in zip(path, path[1:])]
    e += [(loop[i], loop[(i + 1) % len(loop)]) for loop in _LOOPS for i in range(len(loop))]
    return e + _EXTRA


def index_map() -> np.ndarray:
    m = np.zeros((68, 98))
    m[np.arange(68), INDEX_98_TO_68] = 1.0
    return m


def fit(teacher98: np.ndarray, human68: np.ndarray, shrink: float = 0.05) -> np.ndarray:
    """Fit the (68, 98) map. Inputs (F, 98, 2) and (F, 68, 2); each face is scaled by its
    inter-ocular distance so all faces weigh the same. ``shrink`` pulls towards the index map."""
    iod = np.linalg.norm(human68[:, 36] - human68[:, 45], axis=1)[:, None, None]
    t, h = teacher98 / iod, human68 / iod
    w0 = index_map()
    out = np.zeros((68, 98))
    for i, cand in enumerate(CANDIDATES):
        a = t[:, cand, :].transpose(0, 2, 1).reshape(-1, len(cand))  # (2F, c)
        r = (h[:, i, :] - np.einsum("j,fjd->fd", w0[i], t)).reshape(-1)  # residual of the prior
        n = len(cand)
        lam = shrink * len(r)
        # min |a v - r|^2 + lam |v|^2  s.t. sum(v) = 0   (so the weights still sum to 1)
        kkt = np.zeros((n + 1, n + 1))
        kkt[:n, :n] = a.T @ a + lam * np.eye(n)
        kkt[:n, n] = kkt[n, :n] = 1.0
        rhs = np.concatenate([a.T @ r, [0.0]])
        v = np.linalg.solve(kkt, rhs)[:n]
        out[i] = w0[i]
        out[i, cand] += v
    return out


@lru_cache(maxsize=1)
def load() -> np.ndarray:
    """The shipped fitted map (68, 98), or the index map if none has been fitted."""
    from .align import calibration

    data = calibration()
    if data is None:
        return index_map()
    m = np.zeros((68, 98))
    try:
        for i, row in enumerate(data["labelmap"]):
            for j, w in row:
                m[i, j] = w
    except (ValueError, KeyError, TypeError, IndexError) as e:
        from .errors import DamagedInstall

        raise DamagedInstall("facemark/calibration.json", f"its 98->68 map: {type(e).__name__}: {e}"[:120]) from None
    m.setflags(write=False)
    return m


def rows(m: np.ndarray) -> list:
    """The map as ``calibration.json`` keeps it: per iBUG point, its WFLW points and weights."""
    return [[[int(j), round(float(m[i, j]), 5)] for j in np.flatnonzero(np.abs(m[i]) > 1e-6)] for i in range(68)]


def to68(points98: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
    return (load() if m is None else m) @ np.asarray(points98)  # (68, 98) @ (..., 98, 2): batched too


def fusion_matrix(m: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """(98, 68) matrix A: the smoothest correction d of the teacher with ``m @ d = r`` is A r."""
    lap = np.zeros((98, 98))
    for a, b in edges():
        lap[a, a] += 1
        lap[b, b] += 1
        lap[a, b] -= 1
        lap[b, a] -= 1
    q_inv = np.linalg.inv(lap + eps * np.eye(98))
    return q_inv @ m.T @ np.linalg.inv(m @ q_inv @ m.T)


def fuse(teacher98: np.ndarray, human68: np.ndarray, m: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
    """98-point targets that map exactly onto the human 68 and follow the teacher elsewhere."""
    a = fusion_matrix(m) if a is None else a
    r = human68 - np.einsum("ij,...jd->...id", m, teacher98)
    return teacher98 + np.einsum("ij,...jd->...id", a, r)

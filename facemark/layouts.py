"""Landmark layouts: WFLW-98 and iBUG-68 part indices, mirror permutations, the 98->68 index map
(results go through the fitted map of ``labelmap``, which starts from it).

Index conventions follow the public WFLW and 300-W releases. "Right"/"left" are the subject's,
so the subject's right eye appears on the image's left.
"""
from __future__ import annotations

import numpy as np

# --- WFLW-98 ---------------------------------------------------------------------------------
WFLW98_PARTS: dict[str, list[int]] = {
    "contour": list(range(0, 33)),
    "right_brow": list(range(33, 42)),  # 33-37 upper edge (outer->inner), 38-41 lower (inner->outer)
    "left_brow": list(range(42, 51)),  # 42-46 upper edge (inner->outer), 47-50 lower (outer->inner)
    "nose_bridge": list(range(51, 55)),
    "nose_base": list(range(55, 60)),
    "right_eye": list(range(60, 68)),  # 60 outer corner, 61-63 upper lid, 64 inner, 65-67 lower
    "left_eye": list(range(68, 76)),  # 68 inner corner, 69-71 upper lid, 72 outer, 73-75 lower
    "outer_lips": list(range(76, 88)),
    "inner_lips": list(range(88, 96)),
    "pupils": [96, 97],
}

_WFLW98_PAIRS = (
    [(i, 32 - i) for i in range(16)]
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(55, 59), (56, 58)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]
    + [(88, 92), (89, 91), (93, 95)]
    + [(96, 97)]
)

# --- iBUG-68 (300-W) -------------------------------------------------------------------------
IBUG68_PARTS: dict[str, list[int]] = {
    "contour": list(range(0, 17)),
    "right_brow": list(range(17, 22)),
    "left_brow": list(range(22, 27)),
    "nose_bridge": list(range(27, 31)),
    "nose_base": list(range(31, 36)),
    "right_eye": list(range(36, 42)),  # 36 outer corner, 37-38 upper lid, 39 inner, 40-41 lower
    "left_eye": list(range(42, 48)),
    "outer_lips": list(range(48, 60)),
    "inner_lips": list(range(60, 68)),
}

_IBUG68_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)


def _perm_from_pairs(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


#: ``mirrored[FLIP] `` reorders points of a horizontally flipped face back into layout order.
FLIP98: np.ndarray = _perm_from_pairs(98, _WFLW98_PAIRS)
FLIP68: np.ndarray = _perm_from_pairs(68, _IBUG68_PAIRS)

#: Nearest WFLW point for each iBUG point. Close but not exact (eyelids: thirds vs quarters);
#: the fitted sparse map in ``facemark.labelmap`` replaces it where it matters.
INDEX_98_TO_68: np.ndarray = np.array(
    list(range(0, 33, 2))
    + [33, 34, 35, 36, 37]
    + [42, 43, 44, 45, 46]
    + list(range(51, 60))
    + [60, 61, 63, 64, 65, 67]
    + [68, 69, 71, 72, 73, 75]
    + list(range(76, 96))
)

# Inter-ocular normalisation: outer eye corners.
IOD68 = (36, 45)
IOD98 = (60, 72)


def flip_points(points: np.ndarray, width: float, perm: np.ndarray) -> np.ndarray:
    """Mirror points of an image of ``width`` pixels (0-based pixel centres) and restore order."""
    out = points[..., perm, :].copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners from 98 or 68 landmarks, in detector order.

    Detector order (RetinaFace, YuNet): subject's right eye (image left), left eye, nose tip,
    right mouth corner, left mouth corner.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    n = pts.shape[-2]
    if n == 98:
        reye, leye, nose, rmouth, lmouth = range(60, 68), range(68, 76), 54, 76, 82
    elif n == 68:
        reye, leye, nose, rmouth, lmouth = range(36, 42), range(42, 48), 30, 48, 54
    else:
        raise ValueError(f"expected 98 or 68 points, got {n}")
    return np.stack(
        [
            pts[..., list(reye), :].mean(-2),
            pts[..., list(leye), :].mean(-2),
            pts[..., nose, :],
            pts[..., rmouth, :],
            pts[..., lmouth, :],
        ],
        axis=-2,
    )

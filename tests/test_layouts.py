import numpy as np

from facemark import layouts as L


def test_flip_permutations_are_involutions():
    for perm in (L.FLIP98, L.FLIP68):
        assert sorted(perm.tolist()) == list(range(len(perm)))
        assert np.array_equal(perm[perm], np.arange(len(perm)))


def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    for n, perm in ((98, L.FLIP98), (68, L.FLIP68)):
        pts = rng.uniform(0, 200, (n, 2))
        once = L.flip_points(pts, 200, perm)
        assert not np.allclose(once, pts)
        assert np.allclose(L.flip_points(once, 200, perm), pts)


def test_flip_pairs_mirror_parts():
    # The subject's right eye outer corner mirrors onto the left eye outer corner, etc.
    assert L.FLIP98[60] == 72 and L.FLIP98[96] == 97 and L.FLIP98[0] == 32 and L.FLIP98[16] == 16
    assert L.FLIP68[36] == 45 and L.FLIP68[8] == 8 and L.FLIP68[48] == 54
    # Points on the symmetry axis map to themselves.
    for i in (51, 52, 53, 54, 57, 79, 85, 90, 94):
        assert L.FLIP98[i] == i


def test_parts_cover_every_point_once():
    for parts, n in ((L.WFLW98_PARTS, 98), (L.IBUG68_PARTS, 68)):
        idx = sorted(i for v in parts.values() for i in v)
        assert idx == list(range(n))


def test_index_map_respects_parts():
    assert len(L.INDEX_98_TO_68) == 68
    for name, idx68 in L.IBUG68_PARTS.items():
        allowed = set(L.WFLW98_PARTS[name])
        assert set(L.INDEX_98_TO_68[idx68].tolist()) <= allowed, name


def test_five_points_order_and_consistency():
    rng = np.random.default_rng(1)
    pts98 = rng.uniform(0, 100, (98, 2))
    f = L.five_points(pts98)
    assert f.shape == (5, 2)
    assert np.allclose(f[0], pts98[60:68].mean(0)) and np.allclose(f[2], pts98[54])
    assert np.allclose(f[1], pts98[68:76].mean(0)) and np.allclose(f[3], pts98[76]) and np.allclose(f[4], pts98[82])
    g = L.five_points(pts98[L.INDEX_98_TO_68])  # the 68-point layout names the same places
    assert np.allclose(g[2:], f[2:]) and np.allclose(g[0], pts98[[60, 61, 63, 64, 65, 67]].mean(0))
    assert L.five_points(np.stack([pts98, pts98])).shape == (2, 5, 2)

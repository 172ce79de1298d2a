import numpy as np

from facemark import labelmap as LM
from facemark.layouts import INDEX_98_TO_68


def random_faces(n, rng):
    base = rng.uniform(0, 1, (98, 2))
    faces = []
    for _ in range(n):
        a = rng.uniform(-0.5, 0.5)
        s = rng.uniform(50, 150)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
        faces.append((base + rng.normal(0, 0.03, base.shape)) @ r.T + rng.uniform(0, 300, 2))
    return np.stack(faces)


def test_fit_recovers_a_known_sparse_map():
    rng = np.random.default_rng(0)
    truth = LM.index_map()
    # Eyelids at thirds, not quarters: iBUG 37 = 2/3 WFLW 61 + 1/3 WFLW 62.
    truth[37] = 0
    truth[37, 61], truth[37, 62] = 2 / 3, 1 / 3
    teacher = random_faces(400, rng)
    human = np.einsum("ij,fjd->fid", truth, teacher)
    human[:, 36] = teacher[:, 60]  # keep an exact inter-ocular reference
    fitted = LM.fit(teacher, human, shrink=1e-4)
    assert np.allclose(fitted.sum(1), 1.0)
    assert abs(fitted[37, 61] - 2 / 3) < 0.02 and abs(fitted[37, 62] - 1 / 3) < 0.02
    assert np.abs(fitted - truth).max() < 0.05
    # Every weight sits on a candidate of the same part.
    for i, cand in enumerate(LM.CANDIDATES):
        assert set(np.flatnonzero(np.abs(fitted[i]) > 1e-9)) <= set(cand)


def test_fusion_reproduces_human_labels_and_follows_teacher():
    rng = np.random.default_rng(1)
    m = LM.load()
    teacher = random_faces(5, rng)
    human = np.einsum("ij,fjd->fid", m, teacher) + rng.normal(0, 1.0, (5, 68, 2))
    fused = LM.fuse(teacher, human, m)
    assert np.abs(np.einsum("ij,fjd->fid", m, fused) - human).max() < 1e-6  # human labels win
    # Where the teacher already agrees with the human labels, nothing moves.
    agree = np.einsum("ij,fjd->fid", m, teacher)
    assert np.abs(LM.fuse(teacher, agree, m) - teacher).max() < 1e-6
    # Corrections are smooth: teacher-only contour points move like their neighbours.
    d = fused - teacher
    odd = d[:, 1:32:2]
    even_avg = (d[:, 0:31:2] + d[:, 2:33:2]) / 2
    assert np.abs(odd - even_avg).mean() < np.abs(d[:, 0:33:2]).mean()


def test_shipped_map_rows_are_affine_and_sparse():
    m = LM.load()
    assert m.shape == (68, 98)
    assert np.allclose(m.sum(1), 1.0, atol=1e-3)
    assert (np.count_nonzero(m, axis=1) <= 10).all()


def test_the_shipped_map_gives_points_in_ibug_68_order():
    """The 68 points of the mean face sit where iBUG's order puts them: the jaw from the image's
    left to its right, the brows and eyes left before right, the nose bridge downwards, the mouth
    corners at 48 and 54. (Reversing the jaw in the map passed every other test.)"""
    from facemark import align

    mean98 = align.TEMPLATES["mean98"]
    p = LM.to68(mean98)
    iod = np.linalg.norm(mean98[60] - mean98[72])
    assert np.abs(p - mean98[INDEX_98_TO_68]).max() < 0.1 * iod  # each point near its namesake
    x, y = p[:, 0], p[:, 1]
    assert (np.diff(x[0:9]) > 0).all() and (np.diff(x[8:17]) > 0).all() and y[8] == y.max()  # jaw; chin lowest
    assert (np.diff(x[17:22]) > 0).all() and (np.diff(x[22:27]) > 0).all() and x[21] < x[22]  # brows
    assert (np.diff(y[27:31]) > 0).all() and (np.diff(x[31:36]) > 0).all()  # bridge down; nostrils left to right
    assert x[36] < x[39] < x[42] < x[45] and y[37] < y[41] and y[43] < y[47]  # eye corners; upper lids above lower
    assert x[48] < x[51] < x[54] and y[51] < y[57] and x[60] < x[64] and y[62] < y[66]  # mouth
    assert y[27] < y[36] and y[30] < y[51] and y[17:27].max() < y[36:48].min()  # top to bottom


def test_a_calibration_file_missing_its_parts_is_a_damaged_install(monkeypatch):
    """calibration.json is read once for the crop templates and the 98->68 map: a file that is
    JSON but lacks either part must say the install is damaged, not fall back to the plain index
    map (points in another layout, unsaid) or to no templates."""
    import pytest

    from facemark import align
    from facemark.errors import DamagedInstall

    whole = align.calibration()
    for data, read in (({}, align._load_templates), ({}, LM.load),
                       ({k: v for k, v in whole.items() if k != "labelmap"}, LM.load)):
        monkeypatch.setattr(align, "calibration", lambda d=data: d)
        LM.load.cache_clear()
        try:
            with pytest.raises(DamagedInstall):
                read()
        finally:
            LM.load.cache_clear()

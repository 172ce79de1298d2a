import numpy as np

from facemark import labelmap as LM


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

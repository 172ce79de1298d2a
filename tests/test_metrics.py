import numpy as np
import pytest

from facemark.evaluation import metrics


def test_nme_uses_outer_eye_corners():
    gt = np.zeros((1, 68, 2))
    gt[0, 36] = [0, 0]
    gt[0, 45] = [100, 0]
    pred = gt + [3.0, 4.0]  # every point 5 px off
    assert metrics.nme(pred, gt)[0] == pytest.approx(0.05)
    gt98 = np.zeros((1, 98, 2))
    gt98[0, 72] = [50, 0]
    assert metrics.nme(gt98 + [0, 1.0], gt98)[0] == pytest.approx(0.02)


def test_auc_and_failure_rate():
    perfect = np.zeros(10)
    assert metrics.auc(perfect, 0.1) == pytest.approx(1.0, abs=1e-3)
    assert metrics.failure_rate(perfect, 0.1) == 0.0
    half = np.array([0.05] * 5 + [0.2] * 5)
    assert metrics.failure_rate(half, 0.1) == 0.5
    assert metrics.auc(half, 0.1) == pytest.approx(0.25, abs=2e-3)  # half the faces, from 5 % on
    missed = np.array([0.01, np.inf])
    s = metrics.summary(missed)
    assert s["missed"] == 1 and s["nme"] == pytest.approx(1.0) and s["fr10"] == 50.0

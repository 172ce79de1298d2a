"""Landmark accuracy metrics (pure functions over arrays of per-face errors)."""
from __future__ import annotations

import numpy as np

from ..layouts import IOD68, IOD98


def nme(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-face mean point error over the inter-ocular (outer eye corner) distance.
    Works for (F, 68, 2) and (F, 98, 2); returns fractions (multiply by 100 for %)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    a, b = IOD68 if gt.shape[-2] == 68 else IOD98
    iod = np.linalg.norm(gt[..., a, :] - gt[..., b, :], axis=-1)
    return np.linalg.norm(pred - gt, axis=-1).mean(-1) / iod


def ced(errors: np.ndarray, limit: float, steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution on [0, limit]: fraction of faces with error <= x.
    Missing faces (NaN or inf errors) count as failures."""
    e = np.where(np.isfinite(errors), errors, np.inf)
    xs = np.linspace(0.0, limit, steps + 1)
    ys = (e[None, :] <= xs[:, None]).mean(1) if e.size else np.zeros_like(xs)
    return xs, ys


def auc(errors: np.ndarray, limit: float) -> float:
    """Area under the CED curve up to ``limit``, normalised to [0, 1] (trapezoid rule)."""
    xs, ys = ced(errors, limit)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)) / limit)


def failure_rate(errors: np.ndarray, limit: float) -> float:
    """Fraction of faces with error above ``limit`` (missing faces fail)."""
    e = np.where(np.isfinite(errors), errors, np.inf)
    return float((e > limit).mean()) if e.size else float("nan")


def summary(errors: np.ndarray) -> dict:
    """NME over found faces; FR and AUC at 8 % and 10 % with misses counted as failures."""
    found = np.isfinite(errors)
    return {
        "faces": int(errors.size),
        "missed": int((~found).sum()),
        "nme": float(errors[found].mean() * 100) if found.any() else float("nan"),
        "fr8": failure_rate(errors, 0.08) * 100,
        "fr10": failure_rate(errors, 0.10) * 100,
        "auc8": auc(errors, 0.08),
        "auc10": auc(errors, 0.10),
    }

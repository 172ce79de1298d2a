"""Smoothing of tracked landmarks: the One Euro filter (Casiez, Roussel, Vogel, CHI 2012) for the
head's pose, ``ShapeFilter`` for the face's shape, and ``FaceSmoother``, which splits a face into
the two.

One Euro is a low-pass filter whose cutoff rises with speed: a still face gets a low cutoff (no jitter), a
moving one a high cutoff (little lag). Time-aware: it uses the frames' timestamps, so dropped
frames or variable frame rates do not change its behaviour. The speed that opens the cutoff is
measured in units of the face's size (``scale``), so one setting suits faces of any size; the
positions themselves are filtered as given.
"""
from __future__ import annotations

import math

import numpy as np


def smoothing_factor(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
    """Exponential smoothing weight of a first-order low-pass filter with ``cutoff`` Hz."""
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


NOISE_STEP = 0.004  # share of ``scale`` a coordinate's mean step may take by noise alone, per frame
REWIND_SECONDS = 1.0  # times that go back further are a restart of the clock: the filter starts again

# Tuned defaults (scripts/video_bench.py --sweep, and --shake 8 for a hand-held camera): the pose
# filter light and speed-adaptive, the shape filter hard. Tracker and the CLI take them from here.
# Beta 30 lagged the --shake 8 clip (path error 3.25 % against 2.01 % unsmoothed); 300 followed it
# (0.47 %) but takes a wobble 2.4x the hourglass's on a still face for motion and smooths nothing
# (tests/test_video.py); 100 was between (0.84 %, and that wobble smoothed), and follows the shake
# since the cutoff also opens with steps that go on (``follow_turns``; the README's video table).
POSE_MIN_CUTOFF, POSE_BETA = 1.0, 100.0
# The shape's (``ShapeFilter``; scripts/expression_check.py): a still face's shape smoothed as the
# earlier One Euro shape filter (0.2 Hz, beta 2) smoothed it, where a four-frame blink now shows
# whole, with speech.
SHAPE_MIN_CUTOFF, SHAPE_BETA = 0.2, 20.0
# The shape the next frame's crop is placed by: smoothed hard (the One Euro shape filter of before),
# so points the model slid onto a face passing in front do not drag the crop after them
# (tests/test_video.py's --max-faces crossing); expressions hardly move a crop's fit.
CROP_SHAPE_MIN_CUTOFF, CROP_SHAPE_BETA = 0.2, 2.0
SHAPE_BAND = 0.01  # share of the eye distance a shape point may move in a frame and still be smoothed
NOISE_TIMES = 4.0  # ... or this many times the face's noise (a coordinate's spread), where that is more
NOISE_HZ = 0.5  # how fast the noise reading follows a face's (a second or two)
LASTING_HZ = 5.0  # the smoothing of moves that tells a lasting change from noise (a few frames)
LASTING = 0.003  # share of the eye distance a lasting change must pass to open the cutoff ...
LASTING_TIMES = 3.0  # ... or this many times the face's noise, where that is more


class _Clocked:
    """The frames' times as a filter reads them: the clock moves by the given times' steps, and by
    the usual step where a time repeats or goes a little back (decoders repeat some): once ahead,
    it stays ahead. A time further back than ``REWIND_SECONDS`` starts the filter again."""

    t: float | None = None
    step: float | None = None  # the last time step: stands in for one that does not move on
    seen: float | None = None  # the last time given (``t`` runs on by ``step`` past repeats)

    def _advance(self, given: float) -> tuple[float | None, float | None]:
        """(seconds since the last sample, the step before that); (None, None) where the filter
        starts (again): the first sample, or the clock went back."""
        t, seen = given, self.seen
        self.seen = given
        if self.t is not None and self.step is not None and seen - REWIND_SECONDS < given:
            t = self.t + (given - seen if given > seen else self.step)
        if self.t is None or t <= self.t:
            self.t, self.step = t, None
            return None, None
        last = self.step
        self.step, self.t = t - self.t, t
        return self.step, last


class OneEuro(_Clocked):
    """Filter arrays of a fixed shape. ``min_cutoff`` (Hz) sets the smoothing of a still signal,
    ``beta`` how fast the cutoff rises with speed (in units per second), ``d_cutoff`` (Hz) the
    smoothing of the speed estimate. With ``shared_speed`` all coordinates share one cutoff, set by
    their mean speed: a face's points move together, and one speed averaged over 196 numbers is
    far less noisy than each coordinate's own (which made the cutoff, and so the lag, flicker)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0, shared_speed: bool = True,
                 predict: bool = False, follow_turns: bool = False):
        if follow_turns and not shared_speed:
            raise ValueError("follow_turns reads one speed for all coordinates: it needs shared_speed")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.shared_speed = shared_speed
        # With ``follow_turns``, the speed that opens the cutoff is also read from the input's own
        # steps: at a turn (a head shaken, a hand-held camera) the smoothed velocity passes through
        # zero while the face moves fast, and the points trailed each turn. That speed is the
        # lesser of two readings, each blind to a still face's noise: the coordinates' mean step
        # beyond ``NOISE_STEP``, and how each step goes on from the one before (their product:
        # positive for motion, below zero on average for independent noise). The product alone
        # also followed a face the model's points jumped onto (docs/VIDEO.md has the measurements).
        self.follow_turns = follow_turns
        self.raw: np.ndarray | None = None  # the last input, and the step that led to it
        self.raw_step: np.ndarray | None = None
        self.going_on = 0.0  # smoothed product of successive steps, per second squared
        self.step_size = 0.0  # smoothed mean absolute step of a coordinate, per second
        self.predict = predict  # blend towards x + velocity * dt: no lag on steady motion
        self.predict_speed = 0.3  # (units/s) speed at which prediction is half on: off when still
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def reset(self) -> None:
        self.x = self.dx = self.t = self.step = self.seen = None
        self.raw = self.raw_step = None
        self.going_on = self.step_size = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds). ``scale`` is the size unit for the
        speed term (e.g. the face's inter-ocular distance in pixels)."""
        x = np.asarray(x, np.float64)
        dt, last_dt = self._advance(t)
        if self.x is None or dt is None:  # the first sample, or the clock started again
            self.x, self.dx = x.copy(), np.zeros_like(x)
            self.raw, self.raw_step, self.going_on, self.step_size = x.copy(), None, 0.0, 0.0
            return x.copy()
        dx = (x - self.x) / dt
        a_d = smoothing_factor(dt, self.d_cutoff)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        speed = np.abs(self.dx).mean() if self.shared_speed else np.abs(self.dx)
        if self.follow_turns:
            step = x - self.raw
            if self.raw_step is not None and last_dt:
                self.going_on = a_d * float((step * self.raw_step).mean()) / (dt * last_dt) + (1 - a_d) * self.going_on
            self.raw, self.raw_step = x.copy(), step
            self.step_size = a_d * float(np.abs(step).mean()) / dt + (1 - a_d) * self.step_size
            speed = max(speed, min(math.sqrt(max(self.going_on, 0.0)), self.step_size - NOISE_STEP * scale / dt))
        cutoff = self.min_cutoff + self.beta * speed / scale
        a = smoothing_factor(dt, cutoff)
        if self.predict:
            # Extrapolate only as far as the motion is real: a still face's velocity is noise.
            v = float(np.abs(self.dx).mean()) / scale
            prior = self.x + self.dx * dt * (v / (v + self.predict_speed))
        else:
            prior = self.x
        self.x = a * x + (1 - a) * prior
        return self.x.copy()


class ShapeFilter(_Clocked):
    """The face's shape (its points in its own frame, the pose taken out): a still face's noise
    held down hard, expressions let through. A low-pass filter cannot tell a blink from noise by
    speed alone: smoothed hard enough to calm a still face, a four-frame blink showed at a quarter
    of its depth and took two seconds to open again (``scripts/expression_check.py``; a helper's
    clip). So each frame, a point's move beyond ``band`` of the eye distance (or ``NOISE_TIMES``
    the face's noise, where that is more) is taken at once and only the part inside is smoothed;
    and a change that lasts (the moves, smoothed over a few frames, staying beyond ``LASTING`` of
    the eye distance or ``LASTING_TIMES`` the noise: an eye kept shut, a mouth kept open) opens the
    cutoff by ``beta`` times its speed, so no remainder trails behind. The noise is read from the
    face's own frames (the median step of all its points, which an eye or a mouth hardly shifts),
    so a noisier face, small or dark, is still smoothed. ``scale``: the eye distance, in the units
    of the points."""

    def __init__(self, min_cutoff: float = SHAPE_MIN_CUTOFF, beta: float = SHAPE_BETA, band: float = SHAPE_BAND):
        self.min_cutoff, self.beta, self.band = min_cutoff, beta, band
        self.x: np.ndarray | None = None
        self.lasting: np.ndarray | None = None  # each coordinate's moves, smoothed over a few frames
        self.raw: np.ndarray | None = None  # the last input
        self.noise = 0.0  # log of the face's noise (a coordinate's frame-to-frame spread), smoothed

    def reset(self) -> None:
        self.x = self.lasting = self.raw = self.t = self.step = self.seen = None
        self.noise = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, np.float64)
        dt, last_dt = self._advance(t)
        if self.x is None or dt is None:
            self.x, self.lasting, self.raw = x.copy(), np.zeros_like(x), x.copy()
            return x.copy()
        move = x - self.x
        # (the frame-to-frame steps of the input, not the moves: a lasting offset is no noise; for
        # noise of spread s a step's median size is 0.674 * sqrt(2) * s)
        noise = math.log(float(np.median(np.abs(x - self.raw))) / 0.954 + 1e-12 * scale)
        self.raw = x.copy()
        self.noise = noise if last_dt is None else self.noise + smoothing_factor(dt, NOISE_HZ) * (noise - self.noise)
        band = max(self.band * scale, NOISE_TIMES * math.exp(self.noise))
        inside = np.clip(move, -band, band)
        a_l = smoothing_factor(dt, LASTING_HZ)
        self.lasting = a_l * move + (1 - a_l) * self.lasting
        lasting = max(LASTING * scale, LASTING_TIMES * math.exp(self.noise))
        speed = np.maximum(np.abs(self.lasting) - lasting, 0.0) / dt
        a = smoothing_factor(dt, self.min_cutoff + self.beta * speed / scale)
        self.x = self.x + a * inside + (move - inside)
        return self.x.copy()


# Three canonical control points: their image positions pin down a similarity exactly.
_CONTROL = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.75]])


class FaceSmoother:
    """Smooth a face's landmarks as pose + shape, each with its own filter.

    Each frame's points are split into a similarity (the head's position, roll and size, fitted to
    all points, so it is precise) and the shape in the face's own frame. When the head moves the
    pose changes fast but the shape hardly does, so the shape can be smoothed hard without any lag
    on the motion, while the pose filter (One Euro) stays light and speed-adaptive. Expressions
    move the shape by more than noise does, and ``ShapeFilter`` lets such moves through (a blink
    of four frames shows nearly whole: ``scripts/expression_check.py``). ``smooth_shape=False``
    leaves the shape as the model gives it (``--smooth pose``). ``reference``: 98 points (WFLW).
    ``steady``: the last points with the shape smoothed hard, for placing the next frame's crop.
    """

    def __init__(self, reference: np.ndarray, min_cutoff: float = POSE_MIN_CUTOFF, beta: float = POSE_BETA,
                 shape_min_cutoff: float = SHAPE_MIN_CUTOFF, shape_beta: float = SHAPE_BETA, predict: bool = True,
                 smooth_shape: bool = True):
        self.reference = np.asarray(reference, np.float64)
        self.pose = OneEuro(min_cutoff, beta, predict=predict, follow_turns=True)
        self.shape = ShapeFilter(shape_min_cutoff, shape_beta) if smooth_shape else None
        self.crop_shape = OneEuro(CROP_SHAPE_MIN_CUTOFF, CROP_SHAPE_BETA, shared_speed=False) if smooth_shape else None
        self.steady: np.ndarray | None = None
        self.eyes = float(np.linalg.norm(self.reference[60] - self.reference[72]))  # (the shape's size unit)

    def __call__(self, landmarks: np.ndarray, t: float, scale: float) -> np.ndarray:
        from . import align

        try:
            to_canon = align.umeyama(landmarks, self.reference)
        except align.DegeneratePoints:  # all points on one spot: nothing to smooth, start afresh next time
            for f in (self.pose, self.shape, self.crop_shape):
                if f is not None:
                    f.reset()
            self.steady = np.asarray(landmarks, np.float64).copy()
            return self.steady.copy()
        to_image = align.invert(to_canon)
        control = self.pose(align.apply(to_image, _CONTROL), t, scale)
        shape = align.apply(to_canon, landmarks)
        pose = align.umeyama(_CONTROL, control)
        if self.shape is None:
            self.steady = align.apply(pose, shape)
            return self.steady.copy()
        self.steady = align.apply(pose, self.crop_shape(shape, t, 1.0))
        return align.apply(pose, self.shape(shape, t, self.eyes))

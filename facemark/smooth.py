"""One Euro filter (Casiez, Roussel, Vogel, CHI 2012), vectorised over any number of coordinates.

A low-pass filter whose cutoff rises with speed: a still face gets a low cutoff (no jitter), a
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


class OneEuro:
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
        # zero while the face moves fast, which closed the cutoff just then (the points trailed
        # each turn by several % of the eye distance, and a shaking clip came out worse than
        # unsmoothed). That speed is the lesser of two readings, each blind to a still face's
        # noise in its own way: the coordinates' mean step beyond ``NOISE_STEP`` (noise of any
        # kind smaller than that), and how each step goes on from the one before (their product:
        # positive for motion, turns included; below zero on average for noise independent from
        # frame to frame, however large, so a flickering or noisier face is smoothed as before).
        # The product alone also followed small shakes at high frame rates, whose steps are under
        # ``NOISE_STEP`` (the lesser reading does no better there than no smoothing), but it
        # followed a face the model's points jumped onto, a smaller one crossing in front, fast
        # enough that ``--max-faces 1`` gave it the followed id in more runs
        # (scripts/max_faces_check.py, with the tracker of 2b18a3c: 8 of 15 kept against 11).
        self.follow_turns = follow_turns
        self.raw: np.ndarray | None = None  # the last input, and the step that led to it
        self.raw_step: np.ndarray | None = None
        self.going_on = 0.0  # smoothed product of successive steps, per second squared
        self.step_size = 0.0  # smoothed mean absolute step of a coordinate, per second
        self.predict = predict  # blend towards x + velocity * dt: no lag on steady motion
        self.predict_speed = 0.3  # (units/s) speed at which prediction is half on: off when still
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None
        self.step: float | None = None  # the last time step: stands in for one that does not move on
        self.seen: float | None = None  # the last time given (``t`` runs on by ``step`` past repeats)

    def reset(self) -> None:
        self.x = self.dx = self.t = self.step = self.seen = None
        self.raw = self.raw_step = None
        self.going_on = self.step_size = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds). ``scale`` is the size unit for the
        speed term (e.g. the face's inter-ocular distance in pixels)."""
        x = np.asarray(x, np.float64)
        given, seen = t, self.seen
        self.seen = given
        if self.t is not None and self.step is not None and seen - REWIND_SECONDS < given:
            # The filter's clock moves by the given times' steps, and by the usual step where a time
            # repeats or goes a little back (decoders repeat some): once ahead, it stays ahead.
            t = self.t + (given - seen if given > seen else self.step)
        if self.x is None or self.t is None or t <= self.t:  # the first sample, or the clock started again
            self.x, self.dx, self.t, self.step = x.copy(), np.zeros_like(x), t, None
            self.raw, self.raw_step, self.going_on, self.step_size = x.copy(), None, 0.0, 0.0
            return x.copy()
        last_dt = self.step
        dt = self.step = t - self.t
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
        self.t = t
        return self.x.copy()


# Tuned defaults (scripts/video_bench.py --sweep, and --shake 8 for a hand-held camera): the pose
# filter light and speed-adaptive, the shape filter hard. Tracker and the CLI take them from here.
# Beta 30 lagged the --shake 8 clip (path error 3.25 % against 2.01 % unsmoothed); 300 followed it
# (0.47 %) but takes a wobble 2.4x the hourglass's on a still face for motion and smooths nothing
# (tests/test_video.py); 100 was between (0.84 %, and that wobble smoothed), and follows the shake
# since the cutoff also opens with steps that go on (``follow_turns``; the README's video table).
POSE_MIN_CUTOFF, POSE_BETA = 1.0, 100.0
SHAPE_MIN_CUTOFF, SHAPE_BETA = 0.2, 2.0

# Three canonical control points: their image positions pin down a similarity exactly.
_CONTROL = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.75]])


class FaceSmoother:
    """Smooth a face's landmarks as pose + shape, each with its own One Euro filter.

    Each frame's points are split into a similarity (the head's position, roll and size, fitted to
    all points, so it is precise) and the shape in the face's own frame. When the head moves the
    pose changes fast but the shape hardly does, so the shape can be smoothed hard without any lag
    on the motion, while the pose filter stays light and speed-adaptive. Expression changes move
    the shape, whose filter opens with their speed, but not by much: a blink of four frames shows
    about a quarter of its depth (``scripts/expression_check.py``). ``smooth_shape=False`` leaves
    the shape as the model gives it (blinks and speech kept whole; ``--smooth pose``).
    """

    def __init__(self, reference: np.ndarray, min_cutoff: float = POSE_MIN_CUTOFF, beta: float = POSE_BETA,
                 shape_min_cutoff: float = SHAPE_MIN_CUTOFF, shape_beta: float = SHAPE_BETA, predict: bool = True,
                 smooth_shape: bool = True):
        self.reference = np.asarray(reference, np.float64)
        self.pose = OneEuro(min_cutoff, beta, predict=predict, follow_turns=True)
        # Per-coordinate speed here: an expression moves some points (a mouth opening), which must
        # open their own cutoff without loosening the rest of the face.
        self.shape = OneEuro(shape_min_cutoff, shape_beta, shared_speed=False) if smooth_shape else None

    def __call__(self, landmarks: np.ndarray, t: float, scale: float) -> np.ndarray:
        from . import align

        try:
            to_canon = align.umeyama(landmarks, self.reference)
        except align.DegeneratePoints:  # all points on one spot: nothing to smooth, start afresh next time
            self.pose.reset()
            if self.shape is not None:
                self.shape.reset()
            return np.asarray(landmarks, np.float64).copy()
        to_image = align.invert(to_canon)
        control = self.pose(align.apply(to_image, _CONTROL), t, scale)
        shape = align.apply(to_canon, landmarks)
        if self.shape is not None:
            shape = self.shape(shape, t, 1.0)
        pose = align.umeyama(_CONTROL, control)
        return align.apply(pose, shape)

"""The One Euro filter and the pose + shape face smoother."""
import numpy as np
import pytest

from facemark import align
from facemark.smooth import FaceSmoother, OneEuro


def run(f, xs, fps=30.0, scale=1.0):
    return np.array([f(x, i / fps, scale) for i, x in enumerate(xs)])


def test_constant_signal_passes_unchanged():
    for predict in (False, True):
        out = run(OneEuro(1.0, 0.5, predict=predict), [np.array([3.0, -2.0])] * 50)
        assert np.allclose(out, [3.0, -2.0])


def test_step_settles_without_overshoot():
    xs = [np.array([0.0])] * 10 + [np.array([10.0])] * 60
    out = run(OneEuro(1.0, 0.5), xs)[:, 0]
    after = out[10:]
    assert np.all(np.diff(after) >= -1e-12)  # monotone
    assert after.max() <= 10.0 + 1e-9  # never overshoots
    assert after[0] < 10.0  # it does smooth (so the test can fail)
    assert abs(after[-1] - 10.0) < 0.05  # and gets there within two seconds


def test_noise_on_a_still_signal_is_reduced():
    rng = np.random.default_rng(0)
    xs = [np.array([5.0, 5.0]) + rng.normal(0, 0.2, 2) for _ in range(300)]
    out = run(OneEuro(1.0, 0.5), xs)
    assert np.std(out[30:], axis=0).max() < 0.5 * np.std(np.array(xs)[30:], axis=0).min()


def test_time_aware_with_dropped_frames():
    # A ramp of one unit per second, seen at 30 fps and at 15 fps: the lag in seconds is a
    # property of the filter, not of the frame rate (a frame-counting filter would lag twice as
    # long at 15 fps).
    f1, f2 = OneEuro(1.0, 0.0), OneEuro(1.0, 0.0)
    for i in range(90):
        t = i / 30.0
        lag30 = t - f1(np.array([t]), t)[0]
        if i % 2 == 0:
            lag15 = t - f2(np.array([t]), t)[0]
    assert lag30 > 0.05
    assert abs(lag30 - lag15) < 0.25 * lag30


def test_a_time_that_does_not_move_on_takes_the_usual_step():
    """Decoders repeat a timestamp now and then (the last frames of an AVI with B-frames): the
    filter started again there and passed the raw sample through, a one-frame jitter spike. A
    clock that goes back over a second is a restart, and the filter does start again."""
    rng = np.random.default_rng(0)
    samples = 10 + rng.normal(0, 1, (40, 1))
    steady, repeated = OneEuro(min_cutoff=1.0, beta=0.0), OneEuro(min_cutoff=1.0, beta=0.0)
    times = [i / 30 for i in range(40)]
    stuck = times[:20] + [times[19]] * 3 + times[23:]  # three frames repeat frame 19's time
    a = np.array([steady(x, t) for x, t in zip(samples, times)])
    b = np.array([repeated(x, t) for x, t in zip(samples, stuck)])
    assert np.allclose(a[:23], b[:23]) and np.abs(b[20:23] - 10).max() < 0.6 * np.abs(samples[20:23] - 10).max()
    frozen = OneEuro(min_cutoff=1.0, beta=0.0)  # a camera whose clock never moves: still smoothed, still moving
    c = np.array([frozen(x, 5.0 if i else 5.0 - 1 / 30) for i, x in enumerate(samples)])  # (40 frames: over 1 s)
    assert np.allclose(c, a)
    assert np.allclose(steady(np.array([3.0]), -5.0), 3.0)  # back by over a second: a new start
    ahead, plain = OneEuro(min_cutoff=1.0, beta=30.0), OneEuro(min_cutoff=1.0, beta=30.0)
    extra = [i / 30 for i in range(10)] + [9 / 30] * 3 + [9 / 30 + 0.1]  # three more frames at frame 9's time, a pause
    for t in extra[:-1]:
        ahead(np.zeros(1), t)
    for t in [i / 30 for i in range(10)]:
        plain(np.zeros(1), t)
    jump = np.array([10.0])  # after the pause the face has moved: the step is the pause, not zero
    assert np.allclose(ahead(jump, extra[-1]), plain(jump, extra[-1]), atol=0.5) and ahead.step == pytest.approx(0.1)


def test_face_smoother_follows_motion_and_calms_a_still_face():
    ref = np.random.default_rng(1).uniform(0.2, 0.8, (98, 2))
    rng = np.random.default_rng(2)
    sm = FaceSmoother(ref)
    # Still, noisy face: jitter drops by more than half.
    base = ref * 200 + 100
    noisy = [base + rng.normal(0, 0.8, base.shape) for _ in range(90)]
    out = np.array([sm(x, i / 30.0, 60.0) for i, x in enumerate(noisy)])
    raw_j = np.linalg.norm(np.array(noisy)[30:] - base, axis=2).mean()
    sm_j = np.linalg.norm(out[30:] - base, axis=2).mean()
    assert sm_j < 0.5 * raw_j
    # Then a steady rotation + translation: the output keeps up (lag well under one frame).
    moved = []
    for i in range(90, 180):
        a = np.deg2rad(0.5 * (i - 90))
        m = np.array([[np.cos(a), -np.sin(a), 2.0 * (i - 90)], [np.sin(a), np.cos(a), 0.0]])
        moved.append(align.apply(m, base))
    out = np.array([sm(x, (90 + k) / 30.0, 60.0) for k, x in enumerate(moved)])
    step = np.linalg.norm(np.diff(np.array(moved), axis=0), axis=2).mean()
    lag_px = np.linalg.norm(out[-20:] - np.array(moved)[-20:], axis=2).mean()
    assert lag_px < 0.5 * step


def blinking_face(frames: int = 60, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, list]:
    """The mean face (eye distance 80 px), its eyes shut over frames 20-23 (half, shut, shut,
    half), its head wobbling a little, and ``noise`` px on every point; and its eyelid pairs."""
    mean = align.TEMPLATES["mean98"].astype(np.float64)
    base = (mean - mean.mean(0)) * (80 / np.linalg.norm(mean[60] - mean[72])) + [320.0, 240.0]
    lids = [(61, 67), (62, 66), (63, 65), (69, 75), (70, 74), (71, 73)]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        p = base.copy()
        shut = {20: 0.5, 21: 1.0, 22: 1.0, 23: 0.5}.get(i, 0.0)
        for up, lo in lids:
            gap = p[lo, 1] - p[up, 1]
            p[up, 1] += shut * gap / 2
            p[lo, 1] -= shut * gap / 2
        out.append(p + [0.3 * np.sin(i), 0.0] + rng.normal(0, noise, p.shape))  # (the wobble: the pose filter's work)
    return np.array(out), lids


def test_a_blink_shows_whole_and_the_eyes_open_again_at_once():
    """The face's shape was smoothed by a One Euro filter, hard enough to calm a still face: a
    four-frame blink showed at a quarter of its depth, two frames late, and the eyes took half a
    second to be back within a tenth of it, two seconds to open fully (a helper's clip). Moves
    beyond a still face's noise now pass (``ShapeFilter``): the blink shows nearly whole, on time,
    while the still face's shape is smoothed as before. ``--smooth pose`` passes the shape as it is."""
    mean = align.TEMPLATES["mean98"].astype(np.float64)
    frames, lids = blinking_face(noise=0.16)  # (0.2 % of the eye distance: a model's noise on a still face)

    def opening(out):
        return np.array([np.mean([q[lo, 1] - q[up, 1] for up, lo in lids]) for q in out])

    true = opening(blinking_face()[0])
    default = run(FaceSmoother(mean), frames, scale=80.0)
    pose = run(FaceSmoother(mean, smooth_shape=False), frames, scale=80.0)
    for out, least in ((default, 0.9), (pose, 0.97)):
        shown = opening(out)
        assert 1 - shown[18:30].min() / shown[10] > least, 1 - shown[18:30].min() / shown[10]
        assert 20 <= int(np.argmin(shown[18:30])) + 18 <= 22  # (on time: shut on frames 21-22)
        assert np.abs(shown[27:] - true[27:]).max() < 0.1 * true[10]  # open again 3 frames after
    inner = lambda out: np.linalg.norm(np.diff(out[2:18] - out[2:18].mean(1, keepdims=True), axis=0), axis=2).mean()  # noqa: E731
    assert inner(default) < 0.35 * inner(frames), (inner(default), inner(frames))  # (the shape's noise, held down)
    assert inner(pose) > 0.7 * inner(frames)
    wobble = lambda out: np.std([q.mean(0)[0] for q in out[:18]])  # noqa: E731
    assert wobble(pose) < 0.7 * wobble(frames), (wobble(pose), wobble(frames))


@pytest.mark.parametrize("noise", [0.16, 0.8])
def test_a_noisier_face_s_shape_is_still_smoothed(noise):
    """Moves beyond a band pass unsmoothed; the band widens with the face's own noise (read from
    the median move of its points), so a face with five times a model's usual noise (small, dark)
    is not passed through as if every frame were an expression."""
    mean = align.TEMPLATES["mean98"].astype(np.float64)
    rng = np.random.default_rng(3)
    still = blinking_face(noise=0.0)[0][0]
    noisy = still + rng.normal(0, noise, (120, 98, 2))
    out = run(FaceSmoother(mean), noisy, scale=80.0)
    shape = lambda pts: pts - pts.mean(1, keepdims=True)  # noqa: E731
    err = lambda pts: np.linalg.norm(shape(pts[30:]) - shape(still[None]), axis=2).mean()  # noqa: E731
    assert err(out) < 0.5 * err(noisy), (err(out), err(noisy))


@pytest.mark.parametrize("hz, px", [(4.3, 8.0), (2.0, 25.0)])
def test_a_shaking_face_is_followed_through_its_turns(hz, px):
    """A face shaken side to side (a hand-held camera at 4 Hz, a head shaken "no" at 2 Hz) turns
    round many times a second. The smoothed velocity passes through zero at each turn while the
    face moves fast, which once closed the pose filter's cutoff just then: the points lagged each
    turn and came out further from the face than the noisy input (a helper's clip; the shaking clip
    of scripts/video_bench.py). Steps that go on keep the cutoff open: nearer than the input."""
    mean = align.TEMPLATES["mean98"].astype(np.float64)
    base = (mean - mean.mean(0)) * (80 / np.linalg.norm(mean[60] - mean[72])) + [320.0, 240.0]
    rng = np.random.default_rng(0)
    true = np.array([base + [px * np.sin(2 * np.pi * hz * i / 30.0), 0.0] for i in range(120)])
    noisy = true + rng.normal(0, 0.2, (len(true), 1, 2)) + rng.normal(0, 0.32, true.shape)  # (as the hourglass wobbles)
    out = run(FaceSmoother(mean), noisy, scale=80.0)
    err = lambda pts: np.linalg.norm(pts[30:] - true[30:], axis=2).mean()  # noqa: E731
    assert err(out) < err(noisy), (err(out), err(noisy))


@pytest.mark.parametrize("fps", [30.0, 60.0, 240.0])
def test_a_noisier_still_face_is_smoothed_as_much_at_any_frame_rate(fps):
    """A still face's noise stays out of the turn reading through the product of successive steps
    (below zero on average for noise), the steps' size being only a cap: a first version took
    steps over a fixed size for motion, so a face whose place wobbled 0.8 % of the eye distance a
    frame (a small or dark face, a noisier model) was smoothed far less, and less still at higher
    frame rates."""
    mean = align.TEMPLATES["mean98"].astype(np.float64)
    base = (mean - mean.mean(0)) * (80 / np.linalg.norm(mean[60] - mean[72])) + [320.0, 240.0]
    rng = np.random.default_rng(0)
    noisy = base + rng.normal(0, 0.64, (200, 1, 2)) + rng.normal(0, 0.64, (200, 98, 2))
    out = run(FaceSmoother(mean), noisy, fps=fps, scale=80.0)
    wobble = lambda pts: np.linalg.norm(np.diff(pts[20:].mean(1), axis=0), axis=1).mean()  # noqa: E731
    assert wobble(out) < 0.5 * wobble(noisy), (wobble(out), wobble(noisy))


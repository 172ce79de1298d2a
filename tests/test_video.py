"""facemark video: tracking ids, frame counts, JSONL schema, bad and interrupted input."""
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facemark import align
from facemark.cli import app
from facemark.detector import Detection, RetinaFace
from facemark.results import validate_frame
from facemark.track import Neighbour, Tracker
from facemark.video import MAX_FILL_SECONDS, Timeline, frame_rate, process_video
from tests.helpers import faststart, landmarker_with, patch_mkv, sigint_default, stuck_writing, write_avi

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


class MeanShapeModel:
    """Always 'sees' the mean face exactly where the tracking crop expects it (its five points
    pre-aligned to the template), so tracking a still face is an exact fixed point and these tests
    isolate the tracker's bookkeeping from any model's accuracy."""

    family, size, name = "mean", 64, "mean"
    config = {"num_points": 98}

    def __init__(self):
        from facemark.layouts import five_points

        mean = align.TEMPLATES["mean98"]
        self.u = align.apply(align.umeyama(five_points(mean), align.TEMPLATES["landmarks98"]), mean)

    def __call__(self, crops):
        return np.repeat(self.u[None], len(crops), 0)


@pytest.fixture(scope="module")
def small_face(face_image):
    d = RetinaFace().detect(face_image)[0]
    x1, y1, x2, y2 = d.box.astype(int)
    pad = (x2 - x1) // 3
    face = face_image[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad]
    return cv2.resize(face, (110, 130), interpolation=cv2.INTER_AREA)


def frame_with(faces_at, face, size=(480, 360)):
    frame = np.full((size[1], size[0], 3), 100, np.uint8)
    for x, y in faces_at:
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    return frame


def write_clip(path, frames, fps=25.0, fourcc="mp4v", size=None):
    h, w = frames[0].shape[:2] if frames else size[::-1]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames:
        wr.write(f)
    wr.release()


def test_ids_are_stable_and_faces_come_and_go(small_face):
    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    tr = Tracker(fl, detect_every=5)
    frames = []
    for i in range(60):
        both = i < 20 or i >= 40
        frame = frame_with([(30, 100)] + ([(300, 120)] if both else []), small_face)
        tracks = tr.step(frame, i / 25.0)
        frames.append({("left" if t.box[0] < 240 else "right"): t.id for t in tracks})
    left, right = frames[0]["left"], frames[0]["right"]
    assert {left, right} == {0, 1}
    assert all(f == {"left": left, "right": right} for f in frames[:20])
    assert all(f == {"left": left} for f in frames[20:40])  # gone from the first detection that misses it
    assert all(f == {"left": left, "right": 2} for f in frames[50:])  # back as a new face; the other kept its id
    assert all(len(tr_.smoothed) == 98 for tr_ in tr.tracks)


def test_a_face_the_detector_misses_for_a_few_frames_keeps_its_id(small_face):
    """A detection that misses a face hides it and checks again on each next frame; found again
    within ``max_unconfirmed`` frames it is the same face (same id), not a new one."""
    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    real = fl.detector

    class Blinking:  # misses every face on the detections of frames 10-12
        name = real.name

        def __init__(self):
            self.frame = 0

        def detect(self, image):
            return [] if 10 <= self.frame <= 12 else real.detect(image)

    det = fl.detector = Blinking()
    tr = Tracker(fl, detect_every=5)
    ids = []
    for i in range(25):
        det.frame = i
        ids.append([t.id for t in tr.step(frame_with([(30, 100)], small_face), i / 25.0)])
    assert ids[:10] == [[0]] * 10 and ids[10:13] == [[]] * 3 and ids[13:] == [[0]] * 12


def test_max_faces_gives_a_hidden_face_s_place_to_a_face_in_view(small_face):
    """With --max-faces 1, one face gives way to another elsewhere: the new face is reported once
    the old one has been missed twice in a row (the next frame), not after five misses; a face
    missed once while another is in view keeps its place and its id."""
    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    ids = {}
    for max_faces in (0, 1):
        tr = Tracker(fl, detect_every=10, max_faces=max_faces)
        ids[max_faces] = [[t.id for t in tr.step(frame_with([(30 if i < 8 else 330, 100)], small_face, size=(1280, 720)),
                                                 i / 25.0)] for i in range(20)]
    # The move is seen on its frame (the check around the old place finds nothing), not at the
    # next scheduled detection; with --max-faces 1 the old face gives way one frame later. (In a
    # big frame: in a small one the jump changes the picture as a cut does, and gives way at once.)
    assert ids[0][:8] == [[0]] * 8 and ids[0][8:] == [[1]] * 12, ids
    assert ids[1][:8] == [[0]] * 8 and ids[1][8] == [] and ids[1][9:] == [[1]] * 11, ids
    real = fl.detector

    class MissesTheLeftFaceOnce:
        name = real.name

        def __init__(self):
            self.frame = 0

        def detect(self, image):
            found = real.detect(image)
            return [d for d in found if d.box[0] > 200] if self.frame == 10 else found

    det = fl.detector = MissesTheLeftFaceOnce()
    tr = Tracker(fl, detect_every=10, max_faces=1)
    seen = []
    for i in range(25):
        det.frame = i
        seen.append([(t.id, t.box[0] < 200) for t in tr.step(frame_with([(30, 100), (330, 100)], small_face), i / 25.0)])
    assert seen[10] == [] and all(s == seen[0] for s in seen[:10] + seen[11:]) and len(seen[0]) == 1, seen


def test_max_faces_keeps_its_face_when_another_crosses_in_front_of_it(small_face):
    """--max-faces 1, and an untracked face passing in front of the one followed, hiding its lower
    half: a check that found only the face in front gave it the track, and the id jumped to it
    while the followed face was still in view. The face beside it now competes for what is found."""
    from facemark import FaceLandmarker

    fl = FaceLandmarker(model="direct")
    other = np.ascontiguousarray(small_face[:, ::-1])
    tr = Tracker(fl, detect_every=10, max_faces=1)
    tops = []
    for i in range(50):
        frame = frame_with([(40 + 6 * i, 100)], small_face)
        x = 500 - 8 * i  # (enters from the right; crosses the followed face around frame 33)
        if x < 480:
            frame[160:290, max(0, x):min(480, x + 110)] = other[:, max(0, -x):min(110, 480 - x)]
        tops += [(i, t.id, float(t.shown_box[1])) for t in tr.step(frame, i / 25.0)]
    assert {k for k, _, _ in tops} >= set(range(25)) | set(range(42, 50)), tops  # (hidden a frame or two at most)
    assert all(tid == 0 and top < 130 for _, tid, top in tops), [t for t in tops if t[1] or t[2] >= 130]



@pytest.mark.parametrize("detect_every, start", [(10, 0), (5, 0), (3, 0), (10, 4), (3, 4), (10, 16), (5, 8), (3, 16)])
def test_max_faces_never_gives_the_followed_id_to_a_smaller_face_that_hides_it(small_face, face_image, detect_every,
                                                                                start):
    """--max-faces 1, a small face passing in front of a bigger followed one and hiding it: the
    followed face's crop slid onto the face in front, the detector saw the two as one for a few
    frames, and the id went to the face in front (the followed face, back in view, was never
    followed again). The face in front may get a track of its own once the followed one is gone.
    Started 4 px further right, the crop's points slid onto the face in front while its window
    check agreed with them, which was taken as the followed face confirmed. Which starts held
    changed with OpenCV's version (5.1's warps differ from 5.0's by one grey level at a few pixels,
    and the small face was found a frame less, so it was forgotten while over the followed one);
    scripts/max_faces_check.py runs every start from 0 to 20 px. Hidden behind the face in front,
    the followed face keeps its place, and its id is on it again once that face has passed (it was
    dropped, and the face in front followed in its place for good)."""
    _crossing(face_image, small_face, detect_every, start, back=True)


@pytest.mark.parametrize("speeds, size", [((2, 8), 1.0), ((4, 3), 1.0), ((3, 5), 1.3)])
def test_max_faces_keeps_the_followed_id_through_crossings_at_other_speeds_and_sizes(small_face, face_image, speeds,
                                                                                     size):
    """The crossing above with the faces at other speeds (px a frame: followed, in front) and the
    face in front 1.3 times as large: its guessed motion lagged (one frame's, from boxes off-centre
    while it overlapped the followed face), and it was not found where it was expected."""
    for detect_every in (10, 3):
        _crossing(face_image, small_face, detect_every, 0, speeds, size)


def _crossing(face_image, small_face, detect_every: int, start: int, speeds=(3, 5), size: float = 1.0,
              back: bool = False) -> None:
    from facemark import FaceLandmarker

    d = RetinaFace().detect(face_image)[0]
    x1, y1, x2, y2 = d.box.astype(int)
    pad = (x2 - x1) // 3
    big = cv2.resize(face_image[max(0, y1 - pad): y2 + pad, max(0, x1 - pad): x2 + pad], (200, 236),
                     interpolation=cv2.INTER_AREA)
    other = np.ascontiguousarray(small_face[:, ::-1])
    if size != 1.0:
        other = cv2.resize(other, (round(other.shape[1] * size), round(other.shape[0] * size)), interpolation=cv2.INTER_AREA)
    oh, ow = other.shape[:2]
    va, vb = speeds
    tr = Tracker(FaceLandmarker(model="direct"), detect_every=detect_every, max_faces=1)
    zero = []
    frames = min(100, (420 - start) // va)  # (the followed face stays whole in the frame)
    for i in range(frames):
        frame = np.full((480, 640, 3), 100, np.uint8)
        xa, xb = 20 + start + va * i, 560 - vb * i  # (they cross around frames 50-60 at the first speeds)
        frame[120:356, xa:xa + 200] = big
        if -ow < xb < 640:
            frame[235 - oh // 2:235 - oh // 2 + oh, max(0, xb):min(640, xb + ow)] = other[:, max(0, -xb):min(ow, 640 - xb)]
        zero += [(i, float(t.box[0] + t.box[2]) / 2 - (xa + 100)) for t in tr.step(frame, i / 25.0) if t.id == 0]
    crossing = (540 - start - 100 + ow // 2) // (va + vb)  # (the centres meet)
    assert {i for i, _ in zero} >= set(range(crossing - 10)), zero
    assert all(abs(dx) < 60 for _, dx in zero), [z for z in zero if abs(z[1]) >= 60]  # (id 0 on the big face only)
    if back:  # (the last frame: the face in front has passed it by over 150 px)
        assert (xa + 100) - (xb + ow / 2) > 150 and zero[-1][0] == frames - 1 and abs(zero[-1][1]) < 30, zero[-5:]


@pytest.mark.parametrize("speed", [0, 3])
def test_max_faces_a_face_that_takes_the_free_place_keeps_one_id(small_face, face_image, speed):
    """--max-faces 1: the followed face leaves and the smaller face beside it, remembered as its
    neighbour, is followed in its place. Remembered still, the neighbour was expected where the
    new track's own detections were and took them: its id changed every few frames (a reviewer's
    scene, found in this change's first version)."""
    from facemark import FaceLandmarker

    d = RetinaFace().detect(face_image)[0]
    x1, y1, x2, y2 = d.box.astype(int)
    pad = (x2 - x1) // 3
    big = cv2.resize(face_image[max(0, y1 - pad): y2 + pad, max(0, x1 - pad): x2 + pad], (200, 236),
                     interpolation=cv2.INTER_AREA)
    other = cv2.resize(small_face, (110, 130), interpolation=cv2.INTER_AREA)
    tr = Tracker(FaceLandmarker(model="direct"), detect_every=3, max_faces=1)
    ids = []
    for i in range(50):
        frame = np.full((480, 640, 3), 100, np.uint8)
        xa = 20 - 12 * max(0, i - 5)  # (the followed face leaves to the left from frame 5)
        if xa > -200:
            frame[120:356, max(0, xa):xa + 200] = big[:, max(0, -xa):]
        xs = min(300 + speed * i, 520)
        frame[170:300, xs:xs + 110] = other
        ids.append([t.id for t in tr.step(frame, i / 25.0)])
    assert all(r == [0] for r in ids[:10]), ids
    assert all(r == [1] for r in ids[20:]), ids  # (one id, on every frame, once the place is free)


def test_max_faces_forgets_the_last_shots_neighbours_at_a_cut(small_face):
    """A face beside the followed one belongs to its shot: after a cut, a remembered neighbour
    of the last shot was still expected (and could take a new face's detections) for frames."""
    from facemark import FaceLandmarker

    tr = Tracker(FaceLandmarker(model="direct"), detect_every=10, max_faces=1)
    big = cv2.resize(small_face, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_AREA)
    for i in range(5):
        frame = frame_with([(40, 100)], big, size=(640, 360))
        x = 45 + big.shape[1]  # (beside it: within the followed face's window checks)
        frame[120:120 + small_face.shape[0], x:x + small_face.shape[1]] = small_face
        tr.step(frame, i / 25.0)
    assert len(tr.neighbours) == 1  # (the face beside the followed one)
    other = np.full((360, 640, 3), 30, np.uint8)  # another shot: a darker room, one face elsewhere
    other[60:60 + big.shape[0], 300:300 + big.shape[1]] = big
    tr.step(other, 5 / 25.0)
    assert tr.cut and tr.neighbours == []


@pytest.mark.parametrize("how", ["leaves", "covered"])
def test_max_faces_a_face_standing_beside_takes_the_place_of_one_that_left(small_face, face_image, how):
    """--max-faces 1: the followed face leaves (or a hand covers it) while a smaller face stands
    beside it. The place is held only for a face hidden behind one passing in front: a first
    version held it for any face near a neighbour, and nothing was reported for 13 frames (a
    reviewer's scene)."""
    from facemark import FaceLandmarker

    d = RetinaFace().detect(face_image)[0]
    x1, y1, x2, y2 = d.box.astype(int)
    pad = (x2 - x1) // 3
    crop = face_image[max(0, y1 - pad): y2 + pad, max(0, x1 - pad): x2 + pad]
    big = cv2.resize(crop, (200, 236), interpolation=cv2.INTER_AREA)
    small = cv2.resize(crop, (110, 130), interpolation=cv2.INTER_AREA)
    tr = Tracker(FaceLandmarker(model="direct"), detect_every=10, max_faces=1)
    shown = []
    for i in range(25):
        frame = np.full((540, 960, 3), 100, np.uint8)
        if how == "covered" or i < 10:
            frame[150:386, 100:300] = big
        if how == "covered" and i >= 10:
            frame[170:370, 120:285] = (120, 150, 200)  # (a flat patch of skin colour)
        frame[190:320, 248:358] = small  # (its face box about 10 px right of the followed one's)
        shown.append([t.id for t in tr.step(frame, i / 25.0)])
    assert all(r == [0] for r in shown[:10]), shown
    assert all(r == [1] for r in shown[12:]), shown  # (the face in view, from the second detection on)


def test_a_neighbour_seen_again_after_unseen_frames_moves_as_it_moved_since_it_was_seen():
    """A face beside the followed one, not found for two frames (crossing it), then found again:
    its motion is its move since it was last seen over the frames between, averaged with the
    motion before (it was the move from where it was guessed, and the next guess lagged)."""
    nb = Neighbour(np.array([300.0, 100, 360, 160]))
    nb.saw(np.array([295.0, 100, 355, 160]))  # 5 px left a frame
    assert np.allclose(nb.velocity, [-5, 0])
    for _ in range(2):  # unseen: moved on as it moved
        nb.unseen()
    assert np.allclose(nb.box, [285, 100, 345, 160]) and nb.age == 2
    nb.saw(np.array([277.0, 100, 337, 160]))  # 18 px in 3 frames: 6 a frame
    assert np.allclose(nb.velocity, [-5.5, 0]) and nb.age == 0


def test_a_cut_to_black_drops_the_face_at_once_and_scores_are_fresh(small_face):
    """Between detections the model would follow a face that is no longer there (it draws a face
    in any crop); a cut is noticed on its frame, and a detection that misses a face hides it."""
    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    tr = Tracker(fl, detect_every=10)
    reported = []
    for i in range(30):
        frame = frame_with([(30, 100)], small_face) if i < 12 else np.zeros((360, 480, 3), np.uint8)
        reported.append([(t.id, t.score) for t in tr.step(frame, i / 25.0)])
    assert all(len(r) == 1 for r in reported[:12]) and all(r == [] for r in reported[12:])
    assert tr.next_id == 1
    # The score is the latest confirming detection's (a tracked frame's check confirms too), not the first one's.
    tr2 = Tracker(fl, detect_every=3)
    tr2.step(frame_with([(30, 100)], small_face), 0.0)
    tr2.tracks[0].score = -1.0  # a stale value: the next check replaces it
    scores = [t.score for i in range(1, 4) for t in tr2.step(frame_with([(30, 100)], small_face), i / 25.0)]
    assert min(scores) > 0.5


@pytest.mark.parametrize("moves, same_id", [([0.6] * 10, True), ([0] * 4 + [0.9] + [0] * 5, True),
                                             ([-0.7, 0.7] * 5, True), ([0] * 4 + [4.0] + [0] * 5, False)])
@pytest.mark.parametrize("detect_every", [100, 3])
def test_a_fast_moving_face_is_followed_on_its_frame(small_face, moves, same_id, detect_every):
    """The model draws a face in any crop (this one never moves its points at all), so between
    detections only the window check can see that the face moved (moves in face widths per
    frame): the reported face is where the face is on every frame, not left behind until the
    next scheduled detection; within a face width a frame it keeps its id."""
    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    tr = Tracker(fl, detect_every=detect_every)  # (whole-frame detections among the moves keep the id too)
    x, first, side, ids = 60.0, None, None, set()
    for i, dx in enumerate([0] + moves):
        x += dx * (side or 0)
        tracks = tr.step(frame_with([(round(x), 100)], small_face, size=(640, 360)), i / 25.0)
        assert len(tracks) == 1, (i, tracks)
        ids.add(tracks[0].id)
        centre = tracks[0].smoothed.mean(0)  # the reported points
        first = first if first is not None else centre - (x, 100)
        side = side or tracks[0].box[2] - tracks[0].box[0]
        assert np.abs(centre - (x, 100) - first).max() < 0.2 * side, (i, centre, x)  # this model never corrects
    assert len(ids) == 1 or not same_id, ids


def errors_through_a_fast_move(fl, face) -> list[float]:
    """The reported points' error (inter-ocular, against a detection of each frame) on 8 frames of
    a face that jumps a third of its width on frame 5: a move the window check re-seeds from."""
    tr = Tracker(fl, detect_every=100)
    x, errs = 80, []
    for i in range(8):
        x += face.shape[1] // 3 if i == 5 else 0
        frame = frame_with([(x, 100)], face, size=(640, 360))
        tracks = tr.step(frame, i / 25.0)
        truth = fl.detect(frame)[0].landmarks
        assert len(tracks) == 1, i
        errs.append(float(np.linalg.norm(tracks[0].smoothed - truth, axis=1).mean() / np.linalg.norm(truth[60] - truth[72])))
    return errs


def test_a_fast_move_seen_by_a_rough_window_check_is_read_from_good_keypoints(small_face, monkeypatch):
    """A window check sees the face at ~48 px, where RetinaFace is sure of a face but can place its
    keypoints badly (a rolled face given a level eye line: 44 % NME on a 300-W clip): a track it
    re-seeds reads its points through keypoints looked for again with the face at a size the
    detector reads well, so the points on that frame are those a detection of the frame gives."""
    from facemark import FaceLandmarker

    fl = FaceLandmarker(model="direct")
    real = fl.find_faces

    def rough_in_windows(image, as_is=False, **kw):  # the window's keypoints turned 60° about their centre
        found = real(image, as_is, **kw)
        if not as_is:
            return found
        t = np.radians(60.0)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        return [Detection(d.box, d.score, (d.kps - d.kps.mean(0)) @ rot.T + d.kps.mean(0), d.template, d.seen_at,
                          d.quarter_turns) for d in found]

    monkeypatch.setattr(fl, "find_faces", rough_in_windows)
    errs = errors_through_a_fast_move(fl, small_face)
    assert max(errs) < 0.08, errs


def test_a_fast_move_of_a_sideways_face_found_in_a_turned_view_keeps_its_points(small_face):
    """With ``turned`` the window check finds a sideways face in a turned view; looking at it again
    upright (the re-seed's second look) placed its keypoints as if upright: 47 % NME on that frame."""
    from facemark import FaceLandmarker

    errs = errors_through_a_fast_move(FaceLandmarker(model="direct", turned=True),
                                      np.ascontiguousarray(np.rot90(small_face, 3)))
    assert max(errs) < 0.05, errs


def test_a_face_that_goes_is_not_reported_on_the_frame_it_went(small_face):
    """Only the face changes (no cut): the window check finds nothing there and the face is
    hidden on that very frame, not followed on empty background until the next detection."""
    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    tr = Tracker(fl, detect_every=100)
    seen = [len(tr.step(frame_with([(200, 100)] if i < 6 else [], small_face), i / 25.0)) for i in range(12)]
    assert seen == [1] * 6 + [0] * 6, seen


def test_video_keeps_size_fps_frame_count_and_writes_jsonl(tiny_models, tmp_path, small_face):
    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40 + 2 * i, 90)], small_face) for i in range(30)], fps=25)
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    r = run("video", clip, "--out", out, "--json", js, "--model", tiny_models["hourglass"], "--detect-every", 5)
    assert r.exit_code == 0, r.stderr
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (480, 360)
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 25) < 0.01
    lines = [json.loads(x) for x in js.read_text().splitlines()]
    assert [rec["frame"] for rec in lines] == list(range(30))
    assert all(validate_frame(rec) == [] for rec in lines)
    assert abs(lines[10]["time"] - 10 / 25) < 1e-3
    assert all(len(rec["faces"]) == 1 for rec in lines)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("failing", ["video", "lines"])
def test_a_disk_that_fills_up_mid_run_names_the_output_and_keeps_nothing(tiny_models, tmp_path, small_face,
                                                                           monkeypatch, failing):
    """The line said "cannot write the output": with --out and --json both given, not which one."""
    import errno

    from facemark import video

    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40 + 2 * i, 90)], small_face) for i in range(8)], fourcc="MJPG")
    cls, method = (video.AtomicVideoWriter, "put") if failing == "video" else (video.AtomicTextWriter, "write_line")
    real, calls = getattr(cls, method), {"n": 0}

    def filling(self, *a):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *a)

    monkeypatch.setattr(cls, method, filling)
    out, js = tmp_path / "out.avi", tmp_path / "out.jsonl"
    r = run("video", clip, "--out", out, "--json", js, "--model", tiny_models["direct"])
    assert r.exit_code == 1, r.stderr
    named = out if failing == "video" else js
    assert f"cannot write {named}: No space left on device; nothing was kept" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi"]  # no output, no temporary file


@pytest.mark.parametrize("lines", ["file", "stdout"])
def test_a_video_that_cannot_be_finished_is_named(tiny_models, tmp_path, small_face, monkeypatch, lines):
    """The disk filled as the video was closed: the line said "the video" or "the output", and
    "nothing was kept" of JSON lines that had gone to standard output."""
    import errno

    from facemark import video

    def full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(video.AtomicVideoWriter, "finish", full)
    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40 + 2 * i, 90)], small_face) for i in range(5)], fourcc="MJPG")
    out, js = tmp_path / "out.avi", tmp_path / "out.jsonl"
    r = run("video", clip, "--out", out, "--json", js if lines == "file" else "-", "--model", tiny_models["direct"])
    assert r.exit_code == 1, r.stderr
    assert f"cannot finish writing {out}: No space left on device; it was not kept" in r.stderr, r.stderr
    if lines == "file":
        assert f"the JSON lines are complete in {js}" in r.stderr and len(js.read_text().splitlines()) == 5
    else:
        assert "(the JSON lines went to standard output)" in r.stderr and len(r.stdout.splitlines()) == 5
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_odd_frame_size_keeps_its_last_column_and_row(tiny_models, tmp_path):
    """Encoders take even sizes and OpenCV's writer crops an odd one; the edge is repeated instead."""
    d = tmp_path / "frames"
    d.mkdir()
    frame = np.full((151, 201, 3), 100, np.uint8)
    frame[:, -1] = frame[-1, :] = 255  # what a crop would lose
    for i in range(3):
        cv2.imwrite(str(d / f"f{i}.png"), frame)
    r = run("video", d, "--out", tmp_path / "o.avi", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "the video is 202x152" in r.stderr, r.stderr
    ok, got = cv2.VideoCapture(str(tmp_path / "o.avi")).read()
    assert ok and got.shape == (152, 202, 3)
    assert (got[:140, 200:] > 240).all() and got[:140, 196].max() < 160 and (got[150:, :190] > 240).all()


def test_video_without_faces(tiny_models, tmp_path):
    clip = tmp_path / "empty.avi"
    wr = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(12):
        wr.write(np.full((120, 160, 3), 20 * i % 255, np.uint8))
    wr.release()
    js = tmp_path / "e.jsonl"
    r = run("video", clip, "--json", js, "--model", tiny_models["hourglass"])
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(x) for x in js.read_text().splitlines()]
    assert len(recs) == 12 and all(rec["faces"] == [] for rec in recs)


def test_truncated_video_keeps_what_decodes(tiny_models, tmp_path, small_face):
    clip = tmp_path / "cut.avi"
    wr = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 360))
    for i in range(40):
        wr.write(frame_with([(50 + i, 100)], small_face))
    wr.release()
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])  # cut mid-stream: the header still promises 40 frames
    out = tmp_path / "o.avi"
    r = run("video", clip, "--out", out, "--model", tiny_models["hourglass"])
    assert r.exit_code == 1, r.stderr
    assert "ends before the data it announces" in r.stderr and "Traceback" not in r.stderr  # (not "did not decode")
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert 5 < n < 40  # playable, holding the frames that decoded


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 100])
def test_unreadable_input_exits_2_and_leaves_nothing(tiny_models, tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    outdir = tmp_path / "outs"
    outdir.mkdir()
    r = run("video", bad, "--out", outdir / "o.mp4", "--json", outdir / "o.jsonl", "--model", tiny_models["hourglass"])
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert list(outdir.iterdir()) == []


def test_a_recording_without_frames_is_said_to_have_none(tiny_models, tmp_path, small_face):
    from facemark.containers import mp4_has_no_samples

    empty, real = tmp_path / "empty.mp4", tmp_path / "real.mp4"
    write_clip(empty, [], size=(64, 48))
    write_clip(real, [frame_with([(10, 10)], small_face)] * 3)
    r = run("video", empty, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "the video has no frames" in r.stderr, r.stderr
    assert not mp4_has_no_samples(real) and not (tmp_path / "o.jsonl").exists()
    head = empty.read_bytes()
    at = head.find(b"moov") - 4  # the same index, cut short: damaged, not empty
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(head[:at] + (500000).to_bytes(4, "big") + head[at + 4:])
    assert not mp4_has_no_samples(cut)
    # Matroska too (it was "not a video OpenCV can decode"); cut inside its header, it is cut short.
    for ext, fourcc in ((".mkv", "mp4v"), (".webm", "VP80")):
        empty = tmp_path / f"empty{ext}"
        write_clip(empty, [], fourcc=fourcc, size=(64, 48))
        r = run("video", empty, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
        assert r.exit_code == 2 and "the video has no frames" in r.stderr, r.stderr
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(empty.read_bytes()[:200])
        r = run("video", cut, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
        assert r.exit_code == 2 and "ends before the data it announces" in r.stderr, r.stderr


def test_usage_errors(tiny_models, tmp_path, small_face):
    clip = tmp_path / "c.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 2)
    r = run("video", clip)
    assert r.exit_code == 2 and "--out" in r.stderr and "--json" in r.stderr  # neither output
    r = run("video", clip, "--json", tmp_path / "a.jsonl", "--smooth", "kalman")
    assert r.exit_code == 2 and "--smooth" in r.stderr and "kalman" in r.stderr
    assert not (tmp_path / "a.jsonl").exists()
    r = run("video", tmp_path / "missing.mp4", "--json", tmp_path / "a.jsonl", "--model", tiny_models["hourglass"])
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_frame_folder_with_a_bad_frame(tiny_models, tmp_path, small_face):
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(8):
        cv2.imwrite(str(d / f"f{i:03d}.png"), frame_with([(60, 80)], small_face))
    (d / "f004.png").write_bytes(b"broken")
    js = tmp_path / "f.jsonl"
    r = run("video", d, "--json", js, "--fps", 12, "--model", tiny_models["hourglass"])
    assert r.exit_code == 1
    recs = [json.loads(x) for x in js.read_text().splitlines()]
    assert [rec["frame"] for rec in recs] == [0, 1, 2, 3, 5, 6, 7]
    assert abs(recs[-1]["time"] - 7 / 12) < 1e-3


def test_frames_named_with_numbers_play_in_number_order(tiny_models, tmp_path, small_face):
    """frame1 ... frame12 without leading zeros: text order played 1, 10, 11, 12, 2, ... (the face
    jumped back and forth)."""
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(1, 13):
        cv2.imwrite(str(d / f"frame{i}.png"), frame_with([(20 + 25 * i, 100)], small_face))
    js = tmp_path / "f.jsonl"
    r = run("video", d, "--json", js, "--model", tiny_models["direct"], "--detect-every", 1)
    assert r.exit_code == 0, r.stderr
    xs = [json.loads(x)["faces"][0]["box"][0] for x in js.read_text().splitlines()]
    assert len(xs) == 12 and all(b > a for a, b in zip(xs, xs[1:])), xs


def frames_in(p: subprocess.Popen, folder: Path, inputs: tuple, size: int = 100_000) -> None:
    """Wait until the run has written ``size`` bytes to a file in ``folder`` (a few frames of an
    MJPG output, under its temporary name): a signal then lands mid-run, however fast the machine."""
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline and not any(
            q not in inputs and q.is_file() and q.stat().st_size >= size for q in folder.iterdir()):
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be interrupted"


def test_ctrl_c_finishes_the_frame_and_closes_the_output(tiny_models, tmp_path, small_face):
    clip = tmp_path / "long.avi"
    wr = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (480, 360))
    frame = frame_with([(60, 80)], small_face)
    for _ in range(1000):
        wr.write(frame)
    wr.release()
    out = tmp_path / "o.avi"
    p = subprocess.Popen([sys.executable, "-m", "facemark", "video", str(clip), "--out", str(out),
                          "--model", str(tiny_models["hourglass"])], stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_default)
    frames_in(p, tmp_path, (clip,))
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    said = stderr.strip().splitlines()  # one line, with the count and where the frames went
    assert len(said) == 1 and re.fullmatch(r"interrupted after \d+ frame\(s\): the frames processed so far "
                                           r"are in .*o\.partial\.avi", said[0]), stderr
    assert not out.exists()  # (its name is for a whole run's video: a script or a rerun trusts it)
    cap = cv2.VideoCapture(str(tmp_path / "o.partial.avi"))
    assert cap.isOpened() and cap.read()[0]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_a_ctrl_c_ignored_from_the_start_stays_ignored_once_frames_run(tiny_models, tmp_path, small_face):
    """Started with SIGINT ignored (``nohup``, ``cmd &`` in a script), as ``detect`` keeps it: a
    Ctrl-C to the process group once frames are running must not stop the run."""
    clip = tmp_path / "clip.avi"
    wr = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    frame = frame_with([(60, 80)], small_face)[:240, :320]
    for _ in range(120):
        wr.write(frame)
    wr.release()
    js = tmp_path / "f.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "facemark", "video", str(clip), "--json", str(js), "--model",
                          str(tiny_models["direct"])], stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sigint)
    part = tmp_path / "f.partial.jsonl"
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline and not any(q != clip and q.stat().st_size
                                                                   for q in tmp_path.iterdir()):
        time.sleep(0.05)  # (until the first frame's line is written, under a temporary name)
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    assert "interrupted" not in stderr and not part.exists()
    assert len(js.read_text().splitlines()) == 120


def test_an_interrupted_rerun_keeps_the_earlier_complete_output(tiny_models, tmp_path, small_face):
    """Ctrl-C on a second run must not replace a finished result with a part of one: the part
    goes beside it (NAME.partial.EXT, or NAME.partial-2.EXT where that is taken: here by the
    input itself and by an earlier part, both of which were overwritten) and the message says where."""
    clip = tmp_path / "o.partial.avi"
    wr = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (480, 360))
    frame = frame_with([(60, 80)], small_face)
    for _ in range(1000):
        wr.write(frame)
    wr.release()
    clip_bytes = clip.read_bytes()
    out, lines = tmp_path / "o.avi", tmp_path / "o.jsonl"
    write_clip(out, [frame] * 2, fourcc="MJPG")  # (an earlier run's: a video, and facemark's lines)
    earlier_video = out.read_bytes()
    lines.write_text('{"frame": 0, "time": 0.0, "faces": []}\n')
    (tmp_path / "o.partial.jsonl").write_text("an earlier part\n")
    p = subprocess.Popen([sys.executable, "-m", "facemark", "video", str(clip), "--out", str(out), "--json", str(lines),
                          "--model", str(tiny_models["direct"])], stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_default)
    frames_in(p, tmp_path, (clip, out, lines, tmp_path / "o.partial.jsonl"))
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in stderr, stderr
    assert out.read_bytes() == earlier_video and lines.read_text() == '{"frame": 0, "time": 0.0, "faces": []}\n'
    assert clip.read_bytes() == clip_bytes and (tmp_path / "o.partial.jsonl").read_text() == "an earlier part\n"
    part, part_lines = tmp_path / "o.partial-2.avi", tmp_path / "o.partial-2.jsonl"
    assert "o.partial-2.avi" in stderr and "o.partial-2.jsonl" in stderr, stderr
    cap = cv2.VideoCapture(str(part))
    assert cap.isOpened() and cap.read()[0]
    assert len(part_lines.read_text().splitlines()) >= 1
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]


def test_a_damaged_first_frame_is_skipped_like_any_other(tiny_models, tmp_path, small_face):
    """The first frame used to be read once to learn the size: a video whose frame 0 is damaged
    was refused whole. It is skipped and counted, as a damaged frame 4 is."""
    clip = tmp_path / "badfirst.avi"
    write_clip(clip, [frame_with([(60, 80)], small_face)] * 10, fourcc="MJPG")
    data = bytearray(clip.read_bytes())
    sof = data.index(b"\xff\xc0", data.index(b"00dc"))  # the first frame's JPEG loses its frame header
    data[sof:sof + 2] = b"\xff\x01"
    clip.write_bytes(bytes(data))
    r = run("video", clip, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "1 frame(s)" in r.stderr and "did not decode" in r.stderr, r.stderr
    frames = [json.loads(line)["frame"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert frames == list(range(1, 10)), frames


def test_frames_that_do_not_decode_keep_their_place_in_the_video(tiny_models, tmp_path, small_face):
    """Frames 0 and 4 of 10 are damaged. The annotated video used to hold the 8 that decoded, so it
    ran short and its sound (when copied) drifted ahead of the picture: it keeps 10 frames, each lost
    one shown as the frame before it (the first good one for frame 0); the JSON has the 8 real ones."""
    clip = tmp_path / "holes.avi"
    write_clip(clip, [frame_with([(20 + 12 * i, 80)], small_face) for i in range(10)], fourcc="MJPG")
    data = bytearray(clip.read_bytes())
    at, heads = 0, []
    for _ in range(10):  # each frame's JPEG header, in file order
        at = data.index(b"\xff\xc0", data.index(b"00dc", at))
        heads.append(at)
    for k in (0, 4):
        data[heads[k]:heads[k] + 2] = b"\xff\x01"
    clip.write_bytes(bytes(data))
    r = run("video", clip, "--out", tmp_path / "o.avi", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "2 frame(s)" in r.stderr and "in its place" in r.stderr, r.stderr
    assert [json.loads(x)["frame"] for x in (tmp_path / "o.jsonl").read_text().splitlines()] == [1, 2, 3, 5, 6, 7, 8, 9]
    cap, got = cv2.VideoCapture(str(tmp_path / "o.avi")), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        got.append(frame.astype(np.float64))
    assert len(got) == 10
    same = lambda a, b: np.abs(got[a] - got[b]).mean()  # noqa: E731
    assert same(0, 1) < 1 and same(3, 4) < 1 and same(4, 5) > 1 and same(2, 3) > 1  # held frames; moving ones differ


def frames_of(path) -> list:
    cap, got = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return got
        got.append(frame.astype(np.float64))


def test_a_container_whose_frame_count_is_an_estimate_loses_no_frames(tiny_models, tmp_path, small_face):
    """OpenCV's frame count of a Matroska file is its duration times the rate: with an audio track
    twice as long as the picture (here: the duration says so) it promises twice the frames. All 20
    decoded: no warning, exit 0, and the video holds the 20."""
    clip = tmp_path / "c.mkv"
    write_clip(clip, [frame_with([(20 + 8 * i, 80)], small_face) for i in range(20)], fps=10, fourcc="MJPG")
    data = bytearray(clip.read_bytes())
    assert patch_mkv(data, duration_ms=4000.0) == 20
    clip.write_bytes(bytes(data))
    assert cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT) == 40  # what OpenCV promises
    r = run("video", clip, "--out", tmp_path / "o.mp4", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "did not decode" not in r.stderr, r.stderr
    assert len(frames_of(tmp_path / "o.mp4")) == 20


def test_a_variable_rate_video_keeps_its_timing(tiny_models, tmp_path, small_face):
    """Frames 0-9 every 100 ms, then a one-second pause, then 10-19 every 100 ms (a screen
    recording that idled): the 10 fps annotated video shows frame 9 through the pause (ten more
    places) so it lasts as long as the source; the JSON keeps the 20 real frames at their times."""
    clip = tmp_path / "vfr.mkv"
    write_clip(clip, [frame_with([(20 + 8 * i, 80)], small_face) for i in range(20)], fps=10, fourcc="MJPG")
    data = bytearray(clip.read_bytes())
    patch_mkv(data, duration_ms=3000.0, block_time=lambda k, ms: ms + (1000 if k >= 10 else 0))
    clip.write_bytes(bytes(data))
    r = run("video", clip, "--out", tmp_path / "o.avi", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0, r.stderr
    times = [json.loads(x)["time"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert times == pytest.approx([0.1 * i for i in range(10)] + [2.0 + 0.1 * i for i in range(10)], abs=1e-3)
    got = frames_of(tmp_path / "o.avi")
    assert len(got) == 30
    same = lambda a, b: np.abs(got[a] - got[b]).mean()  # noqa: E731
    assert all(same(9, k) < 1 for k in range(10, 20)) and same(19, 20) > 1 and same(8, 9) > 1


def test_an_avis_empty_dropped_frame_chunks_are_not_frames_that_did_not_decode(tiny_models, tmp_path, small_face):
    """FFmpeg writes a variable-rate video into an AVI with an empty chunk for each frame time of a
    pause; the header counts them as frames, none comes out of them. Those 5 were "did not decode",
    exit 1, for a file that is whole. A truly damaged frame is still counted."""
    frames = [frame_with([(20 + 8 * i, 80)], small_face) for i in range(20)]
    clip = tmp_path / "vfr.avi"
    write_avi(clip, frames[:5] + [None] * 3 + frames[5:12] + [None] * 2 + frames[12:], fps=10)
    r = run("video", clip, "--out", tmp_path / "o.mp4", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "did not decode" not in r.stderr, r.stderr
    times = [json.loads(x)["time"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert times == pytest.approx([0.1 * i for i in range(5)] + [0.8 + 0.1 * i for i in range(7)]
                                  + [1.7 + 0.1 * i for i in range(8)], abs=1e-3)
    got = frames_of(tmp_path / "o.mp4")
    assert len(got) == 25  # the pauses hold the frame before them
    same = lambda a, b: np.abs(got[a] - got[b]).mean()  # noqa: E731
    assert all(same(4, k) < 1 for k in (5, 6, 7)) and same(7, 8) > 1
    data = bytearray(clip.read_bytes())
    at = -1
    for _ in range(7):  # the 7th picture's JPEG header: frame 6, after the first pause
        at = data.index(b"\xff\xc0", at + 1)
    data[at:at + 2] = b"\xff\x01"
    clip.write_bytes(bytes(data))
    r = run("video", clip, "--out", tmp_path / "o2.mp4", "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "1 frame(s)" in r.stderr, r.stderr


def test_an_interrupted_run_still_counts_a_damaged_frame_beside_empty_chunks(tmp_path, small_face):
    """The empty chunks' count was taken off the frames that failed; a run stopped after frame 15
    (whose unread rest is not "missing") then hid the damaged frame 6. The progress total is the
    frames that can come, not the header's count."""
    frames = [frame_with([(20 + 8 * i, 80)], small_face) for i in range(20)]
    clip = tmp_path / "vfr.avi"
    write_avi(clip, frames[:5] + [None] * 3 + frames[5:12] + [None] * 2 + frames[12:], fps=10)
    data = bytearray(clip.read_bytes())
    at = -1
    for _ in range(7):
        at = data.index(b"\xff\xc0", at + 1)
    data[at:at + 2] = b"\xff\x01"  # picture 7 of the file (frame 6): does not decode
    clip.write_bytes(bytes(data))
    totals = []

    def stop_at_15(done, total, fps):
        totals.append(total)
        if done == 15:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: this frame is finished, then the run stops

    s = process_video(str(clip), landmarker_with(MeanShapeModel()), json_path=tmp_path / "o.jsonl",
                      progress=stop_at_15, log=lambda m: None)
    assert s.interrupted and s.frames == 15 and s.decode_errors == 1 and set(totals) == {20}



def test_a_header_stating_no_believable_rate_times_the_frames_at_the_video_s_rate(tiny_models, tmp_path, small_face):
    """An AVI whose header says 0.005 fps: the video was written at 30 fps, but the JSON lines said
    the frames were 200 s apart (the file's times come from that header), and the smoothing, run
    on those times, did nothing."""
    clip = tmp_path / "slow.avi"
    write_avi(clip, [frame_with([(40 + 2 * i, 90)], small_face) for i in range(12)], fps=5, scale=1000)
    r = run("video", clip, "--json", tmp_path / "o.jsonl", "--out", tmp_path / "o.avi", "--model", tiny_models["direct"])
    assert r.exit_code == 0, r.stderr
    assert "note: the file states 0.005 fps (a damaged header?)" in r.stderr and "timed at 30 fps" in r.stderr, r.stderr
    times = [json.loads(x)["time"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(times) == 12 and np.allclose(np.diff(times), 1 / 30, atol=1e-3), times
    cap = cv2.VideoCapture(str(tmp_path / "o.avi"))
    assert round(cap.get(cv2.CAP_PROP_FPS)) == 30 and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    # A header stating over 1000 fps (1,000,000: every JSON time was 0.0, the video written at 1000
    # fps, the smoothing all but still, no note): the same.
    write_avi(clip, [frame_with([(40 + 2 * i, 90)], small_face) for i in range(12)], fps=1_000_000)
    r = run("video", clip, "--json", tmp_path / "f.jsonl", "--out", tmp_path / "f.avi", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "note: the file states 1e+06 fps (a damaged header?)" in r.stderr, r.stderr
    times = [json.loads(x)["time"] for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert len(times) == 12 and np.allclose(np.diff(times), 1 / 30, atol=1e-3), times
    assert round(cv2.VideoCapture(str(tmp_path / "f.avi")).get(cv2.CAP_PROP_FPS)) == 30
    # A header stating no rate (0): OpenCV's FFmpeg said 25 and timed the frames so, without a word.
    write_avi(clip, [frame_with([(40 + 2 * i, 90)], small_face) for i in range(12)], fps=0)
    r = run("video", clip, "--json", tmp_path / "z.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "note: the file states 0 fps (a damaged header?)" in r.stderr, r.stderr
    times = [json.loads(x)["time"] for x in (tmp_path / "z.jsonl").read_text().splitlines()]
    assert len(times) == 12 and np.allclose(np.diff(times), 1 / 30, atol=1e-3), times
    # A believable rate keeps the file's own times, without a note.
    write_avi(clip, [frame_with([(40, 90)], small_face)] * 6, fps=25)
    r = run("video", clip, "--json", tmp_path / "p.jsonl", "--model", tiny_models["direct"])
    times = [json.loads(x)["time"] for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert r.exit_code == 0 and "damaged header" not in r.stderr and np.allclose(np.diff(times), 0.04, atol=1e-3)


def test_frames_too_narrow_for_the_avi_writer_are_widened_not_a_crash(tmp_path):
    """OpenCV's MJPEG writer corrupts its memory on frames under 8 px wide: the process aborted
    (status 134, nothing said, a temporary file left). Such frames are widened by repeating the
    last column, as odd sizes are."""
    frames = tmp_path / "f"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((4, 4, 3), 60 * i, np.uint8))
    r = subprocess.run([sys.executable, "-m", "facemark", "video", str(frames), "--out", str(tmp_path / "o.avi"),
                        "--model", "direct"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "the video is 16x4, its frames 4x4: OpenCV's AVI writer takes frames 8 px wide or more, " \
                                 "so each frame's last column is repeated" in r.stderr, (r.returncode, r.stderr)
    for i in range(4):  # (narrow and of odd height: both reasons)
        cv2.imwrite(str(frames / f"{i}.png"), np.full((5, 4, 3), 60 * i, np.uint8))
    r = subprocess.run([sys.executable, "-m", "facemark", "video", str(frames), "--out", str(tmp_path / "o5.avi"),
                        "--model", "direct"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "the video is 16x6, its frames 4x5: OpenCV's AVI writer takes frames 8 px wide or more " \
                                 "and encoders take even sizes, so each frame's last column and row is repeated" in r.stderr, r.stderr
    got = frames_of(tmp_path / "o.avi")
    assert len(got) == 4 and got[0].shape == (4, 16, 3) and not list(tmp_path.glob(".fm-*"))
    # VP8 writes no frame under 16 pixels: 2x2 frames to .webm failed as "cannot be read back (disk full?)"
    for i in range(4):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((2, 2, 3), 60 * i, np.uint8))
    if cv2.VideoWriter(str(tmp_path / "probe.webm"), cv2.VideoWriter_fourcc(*"VP80"), 25, (4, 4)).isOpened():
        r = subprocess.run([sys.executable, "-m", "facemark", "video", str(frames), "--out", str(tmp_path / "o.webm"),
                            "--model", "direct"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "the video is 4x4" in r.stderr, (r.returncode, r.stderr)
        assert len(frames_of(tmp_path / "o.webm")) == 4
    # One pixel wide or high: padded as odd sizes are (the run stopped at "a video needs at least 2x2", no JSON either).
    for i in range(4):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((1, 300, 3), 60 * i, np.uint8))
    r = subprocess.run([sys.executable, "-m", "facemark", "video", str(frames), "--out", str(tmp_path / "o.mp4"),
                        "--json", str(tmp_path / "o.jsonl"), "--model", "direct"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "the video is 300x2, its frames 300x1: encoders take even sizes, so each frame's " \
                                 "last row is repeated" in r.stderr, (r.returncode, r.stderr)
    assert [f.shape for f in frames_of(tmp_path / "o.mp4")] == [(2, 300, 3)] * 4
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 4



def test_a_min_face_larger_than_the_frames_is_said_when_nothing_is_found(tmp_path, small_face):
    """--min-face 100000 on 480x360 frames found nothing, silently ("0 face track(s)"); so did 400,
    more than the frames' height."""
    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 4)
    for big in (100000, 400):
        r = run("video", clip, "--json", tmp_path / "o.jsonl", "--min-face", big, "--model", "direct")
        assert r.exit_code == 0 and "0 face track(s)" in r.stderr, r.stderr
        assert "note: no face was found, and --min-face is larger than the frames' short side" in r.stderr, r.stderr
    r = run("video", clip, "--json", tmp_path / "p.jsonl", "--min-face", 40, "--model", "direct")
    assert r.exit_code == 0 and "1 face track(s)" in r.stderr and "larger than the frames" not in r.stderr, r.stderr


def test_smooth_pose_is_taken_and_a_wrong_setting_lists_all_three(tmp_path, small_face):
    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40 + i, 90)], small_face) for i in range(6)])
    r = run("video", clip, "--json", tmp_path / "o.jsonl", "--smooth", "pose", "--model", "direct")
    assert r.exit_code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 6, r.stderr
    r = run("video", clip, "--json", tmp_path / "p.jsonl", "--smooth", "shape", "--model", "direct")
    assert r.exit_code == 2 and "--smooth must be one-euro, pose or none, not 'shape'" in r.stderr, r.stderr

def test_video_takes_min_face_as_detect_does(tiny_models, tmp_path, monkeypatch):
    """Small faces in big frames (a 4K group shot) were never found: the frame is searched shrunk
    to 640 px, and video had no --min-face."""
    import facemark.video

    seen = {}

    def fake(source, fl, *a, **k):
        seen["min_face"] = fl.detector.min_face
        raise facemark.video.VideoError("stop here")

    monkeypatch.setattr(facemark.video, "process_video", fake)
    r = run("video", "x.mp4", "--json", tmp_path / "o.jsonl", "--min-face", 40, "--model", tiny_models["direct"])
    assert r.exit_code == 2 and seen == {"min_face": 40.0}, r.stderr


def test_an_animated_gif_is_a_video_and_a_codec_without_decoder_is_named(tiny_models, tmp_path, small_face):
    """An animated GIF was taken as one picture: 1 frame, exit 0. A video that opens but whose
    frames none decode (AV1, which this OpenCV cannot decode) was "damaged, or not a video"; the
    codec is named now."""
    if not hasattr(cv2, "imwriteanimation"):
        pytest.skip("this OpenCV writes no animations")
    anim = cv2.Animation()
    anim.frames = [frame_with([(20 + 8 * i, 80)], small_face) for i in range(6)]
    anim.durations = [100] * 6
    assert cv2.imwriteanimation(str(tmp_path / "a.gif"), anim)
    r = run("video", tmp_path / "a.gif", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0, r.stderr
    times = [json.loads(x)["time"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert times == pytest.approx([0.1 * i for i in range(6)], abs=0.02)
    clip = tmp_path / "c.avi"
    write_clip(clip, anim.frames, fourcc="MJPG")
    clip.write_bytes(clip.read_bytes().replace(b"\xff\xc0", b"\xff\x01"))  # opens, but no frame decodes (as AV1 here)
    r = run("video", clip, "--json", tmp_path / "c.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "none of its MJPG frames decodes" in r.stderr, r.stderr


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".avi"])
def test_a_file_cut_short_is_said_and_exits_1(tiny_models, tmp_path, small_face, ext):
    """A download that stopped part-way: an MP4 whose index comes first still opens, and its frame
    count (an edit list's, or Matroska's) is taken as an estimate, so most of the clip went missing
    with exit 0 and nothing said. The file's own sizes show it is cut. (A cut AVI was 'frames that
    did not decode', shown as the frame before each: its lost end is shown as nothing.)"""
    clip = tmp_path / f"c{ext}"
    write_clip(clip, [frame_with([(20 + 4 * i, 80)], small_face) for i in range(30)], fps=10,
               fourcc="mp4v" if ext == ".mp4" else "MJPG")
    data = faststart(clip.read_bytes()) if ext == ".mp4" else clip.read_bytes()  # (the index first: the cut opens)
    cut = data[:len(data) * 6 // 10]
    (tmp_path / f"whole{ext}").write_bytes(data)
    (tmp_path / f"cut{ext}").write_bytes(cut)
    (tmp_path / f"tagged{ext}").write_bytes(data + b"TAG" + b"title of the clip".ljust(125, b"\0"))  # a trailer
    wholes = [f"whole{ext}", f"tagged{ext}"]
    if ext == ".avi":  # (a RIFF size a pad byte or two over the file, as some writers leave it: every frame is there)
        padded = bytearray(data)
        padded[4:8] = (int.from_bytes(data[4:8], "little") + 2).to_bytes(4, "little")
        (tmp_path / "padded.avi").write_bytes(bytes(padded))
        wholes.append("padded.avi")
    for whole in wholes:  # (bytes after the last box are no media cut off)
        r = run("video", tmp_path / whole, "--json", tmp_path / "w.jsonl", "--model", tiny_models["direct"])
        assert r.exit_code == 0 and "warning" not in r.stderr, (whole, r.stderr)
    r = run("video", tmp_path / f"cut{ext}", "--json", tmp_path / "c.jsonl", "--model", tiny_models["direct"])
    n = len((tmp_path / "c.jsonl").read_text().splitlines())
    assert r.exit_code == 1 and "ends before the data it announces" in r.stderr and 5 < n < 30, (n, r.stderr)


def test_max_faces_gives_a_place_to_the_new_shots_face_at_a_cut(small_face):
    """With --max-faces 1 the last shot's face kept its place for a frame after a cut (a miss is
    taken as a blurred frame), so the cut frame showed no face at all."""
    from facemark import FaceLandmarker

    tr = Tracker(FaceLandmarker(model="direct"), detect_every=100, max_faces=1)
    for i in range(5):
        assert len(tr.step(frame_with([(40, 40)], small_face), i / 25)) == 1
    other = frame_with([(220, 150)], cv2.flip(small_face, 1))
    other[other == 100] = 200  # another shot: the face elsewhere, a new background
    assert [t.id for t in tr.step(other, 5 / 25)] == [1]


def test_the_timeline_fills_gaps_and_drops_a_frame_only_when_it_would_fall_behind():
    steady = Timeline(10.0)
    assert [steady.gap_before(i / 10) for i in range(5)] == [0] * 5
    lost = Timeline(10.0)
    assert [lost.gap_before(t) for t in (0.2, 0.3, 0.6, 0.7)] == [2, 0, 2, 0]  # (frames 0-1 and 4-5 lost)
    bursty = Timeline(10.0)
    assert [bursty.gap_before(t) for t in (0.0, 0.02, 0.04, 0.06, 0.5)] == [0, 0, 0, 0, 1]  # each its own place
    assert bursty.last == 5
    far = 2 * MAX_FILL_SECONDS
    assert places([0.0, 0.1, far, far + 0.1, far + 0.4]) == [0, 1, 2, 3, 6]  # a jump: counted on from there
    assert places([1e6, 1e6 + 0.2]) == [0, 2]  # a camera's clock: counted from its first frame
    # A rate slower than the frames for good (judged on a phone video's slow first seconds): each
    # frame got its own place, so 3 s at 30 fps played for 6 s at 15, ever further behind the sound.
    behind = Timeline(15.0)
    kept = [behind.gap_before(k / 30) for k in range(90)]
    assert None in kept[:12] and 45 <= sum(g is not None for g in kept) <= 48 and behind.last <= 45 + 2


def places(times, fps=10.0):
    """Where each frame lands, each placed knowing the next one's time (as the writer does)."""
    line, out = Timeline(fps), []
    for k, t in enumerate(times):
        line.gap_before(t, times[k + 1] if k + 1 < len(times) else None)
        out.append(line.last)
    return out


def test_the_timeline_passes_over_one_damaged_timestamp_and_follows_a_restart():
    assert places([0.0, 0.1, 0.2, 30.0, 0.4, 0.5]) == [0, 1, 2, 3, 4, 5]  # one time 30 s ahead: no 30 s of fill
    assert places([0.0, 0.1, 0.2, 0.0, 0.4, 0.5]) == [0, 1, 2, 3, 4, 5]  # one time back: no restart
    restart = [k / 10 for k in range(16)] + [0.0, 0.1, 0.3]  # joined recordings: times start again
    assert places(restart) == list(range(16)) + [16, 17, 19]  # counted on from there, its gaps filled
    assert places([0.0, 0.1, 2.0, 2.1]) == [0, 1, 20, 21]  # a real pause: its neighbours agree with it
    assert places([0.0, 0.1, 0.2, 30.0]) == [0, 1, 2, 3]  # the last frame 30 s out: a damaged time, not filled
    assert places([0.0, 0.1, 0.2, 0.8]) == [0, 1, 2, 8]  # (under a second: a pause, filled)


def test_the_first_frame_is_placed_by_its_number_not_its_time():
    """An AVI with B-frames dates its first frame two frames in: no two repeats at the start. A first
    frame that did not decode (the first good one is number 1) is still filled."""
    line = Timeline(10.0)
    assert [line.gap_before(t, None, i) for i, t in enumerate([0.2, 0.3, 0.4])] == [0, 0, 0]
    line = Timeline(10.0)
    assert [line.gap_before(t, None, i) for i, t in [(1, 0.1), (2, 0.2)]] == [1, 0]


def test_the_video_rate_follows_the_frames_where_the_container_states_another():
    rng = np.random.default_rng(0)
    browser = list(np.round(np.cumsum(rng.normal(33.33, 3, 48))))  # a WebM on a 1 ms clock: '1000 fps'
    assert frame_rate(1000.0, browser) == 30.0  # (measured near 29.97 and 30: the higher, which never drops a frame)
    screen = [1000 / 60 * k for k in range(40)] + [5000 + 1000 / 60 * k for k in range(8)]  # 60 fps with a pause
    assert frame_rate(30.17, screen) == 60.0  # (the container's average)
    assert frame_rate(30.1003, [1000 / 30 * k for k in range(48)]) == 30.0  # a last frame without length
    assert frame_rate(25.0, [40.0 * k for k in range(48)]) == 25.0
    # A phone's 30 fps that later drops to 15: the container's average (22.93) would make the picture
    # fall ever further behind; the first frames' 30 keeps it in step (the slow part is filled).
    assert frame_rate(22.93, [1000 / 30 * k for k in range(48)]) == 30.0
    assert frame_rate(30.0, [1000 / 29.2 * k for k in range(48)]) == 30.0  # (a clock's drift: the container's)
    assert frame_rate(30.0, [1000 / 33 * k for k in range(48)]) == 30.0  # (faster, but no standard rate: a burst)
    assert frame_rate(12.5, []) == 12.5 and frame_rate(0.0, []) == 30.0
    # A phone video whose first seconds were dark (15 fps), then 30: not the first frames' 15 (a 12 s
    # video played for 19 s) but the next standard rate over its stated average; slower first
    # frames win over a stated rate no camera records at only.
    assert frame_rate(27.49, [1000 / 15 * k for k in range(48)]) == 30.0
    assert frame_rate(20.0, [1000 / 30 * k for k in range(30)] + [1000 + 1000 / 15 * k for k in range(18)]) == 30.0
    # A 30 fps camera on a 60 Hz clock (steps of 17 and 50 ms), stated 0 or 1000: 30, not 20 (nor NaN,
    # where no step lay near the median)
    for steps in ([17, 50], [50, 17], [16, 50], [20, 46.7]):
        t = list(np.cumsum([0.0] + steps * 24))
        assert frame_rate(0.0, t) in (29.97, 30.0) and frame_rate(1000.0, t) in (29.97, 30.0), steps
    # Whole-millisecond times (WebM, Matroska): 60 fps steps 16 or 17 ms, and were read as 60.6 fps,
    # no standard rate, so a stated 30 stood and half the frames were dropped
    ms = lambda fps: [round(k * 1000 / fps) for k in range(1, 49)]  # noqa: E731
    assert frame_rate(30.0, ms(60)) == 60.0 and frame_rate(60.0, ms(120)) == 120.0 and frame_rate(1000.0, ms(30)) == 30.0
    # A stated rate that is no standard one, just under the frames' (29 over 30 fps): every frame ran late
    assert frame_rate(29.0, [1000 / 30 * k for k in range(1, 49)]) == 30.0 and frame_rate(24.5, ms(25)) == 25.0
    assert frame_rate(12.5, ms(12.5)) == 12.5 and frame_rate(23.976, ms(23.976)) == 23.976  # (as stated)


def test_one_damaged_timestamp_does_not_stretch_the_video(tiny_models, tmp_path, small_face):
    """Frame 20 of 40 says it is 30 s later than it is: the video used to get 30 s of it (340 frames)."""
    clip = tmp_path / "c.mkv"
    write_clip(clip, [frame_with([(20 + 4 * i, 80)], small_face) for i in range(40)], fps=10, fourcc="MJPG")
    data = bytearray(clip.read_bytes())
    patch_mkv(data, block_time=lambda k, ms: ms + (30000 if k == 20 else 0))
    clip.write_bytes(bytes(data))
    r = run("video", clip, "--out", tmp_path / "o.avi", "--model", tiny_models["direct"])
    assert r.exit_code == 0, r.stderr
    assert len(frames_of(tmp_path / "o.avi")) == 40


def test_one_picture_is_a_one_frame_video_like_a_folder_of_one(tiny_models, tmp_path, small_face):
    """A single photo went to OpenCV's video reader, which gave it 25 fps and no EXIF turn, where
    a folder holding the same photo gives 30 fps."""
    d = tmp_path / "frames"
    d.mkdir()
    cv2.imwrite(str(d / "shot.png"), frame_with([(60, 80)], small_face))
    fps = []
    for source, out in ((d / "shot.png", "one.avi"), (d, "folder.avi")):
        r = run("video", source, "--out", tmp_path / out, "--model", tiny_models["direct"])
        assert r.exit_code == 0, r.stderr
        fps.append(cv2.VideoCapture(str(tmp_path / out)).get(cv2.CAP_PROP_FPS))
    assert fps == [30.0, 30.0], fps


def test_a_damaged_stretch_mid_file_is_skipped_quietly(tiny_models, tmp_path, small_face):
    """Bytes overwritten in the middle of an MPEG-4 file: the frames after the damage still come
    out, and FFmpeg's per-packet complaints stay off stderr (only facemark's own lines)."""
    clip = tmp_path / "mid.mp4"
    write_clip(clip, [frame_with([(40 + i, 90)], small_face) for i in range(120)])
    data = bytearray(clip.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 20000] = bytes(20000)  # about a quarter of the file: reads fail from frame ~60 on
    clip.write_bytes(bytes(data))
    js = tmp_path / "mid.jsonl"
    p = subprocess.run([sys.executable, "-m", "facemark", "video", str(clip), "--json", str(js), "--detect-every", "30",
                        "--model", str(tiny_models["direct"])], capture_output=True, text=True, timeout=120)
    frames = [json.loads(x)["frame"] for x in js.read_text().splitlines()]
    assert frames[-1] > 100 and len(frames) > 90, (len(frames), p.stderr[-500:])  # carried on past the damage
    assert p.returncode in (0, 1) and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 3, p.stderr[-2000:]


def test_an_encoder_that_loses_frames_leaves_no_video_and_keeps_the_json(tiny_models, tmp_path, small_face, monkeypatch):
    """OpenCV's writer reports nothing when the disk fills: the file is checked before it is renamed
    into place, and not kept; the JSON lines beside it, whole, are (they were thrown away too)."""
    from facemark import video as video_mod

    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40 + i, 90)], small_face) for i in range(30)], fps=10, fourcc="MJPG")
    real_write = video_mod.AtomicVideoWriter.write

    def lossy(self, frame):  # what a full disk does: the frame is counted, the bytes never land
        if self.frames < 5:
            real_write(self, frame)
        else:
            self.frames += 1

    monkeypatch.setattr(video_mod.AtomicVideoWriter, "write", lossy)
    out, js = tmp_path / "o.avi", tmp_path / "o.jsonl"
    r = run("video", clip, "--out", out, "--json", js, "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "5 of 30 frames" in r.stderr and "JSON lines are complete" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi", "o.jsonl"]  # no video, no temporaries
    assert len(js.read_text().splitlines()) == 30
    r = run("video", clip, "--out", out, "--json", "-", "--model", tiny_models["direct"])  # (streamed: no file to name)
    assert r.exit_code == 1 and "None" not in r.stderr and not out.exists(), r.stderr


@pytest.mark.parametrize("ext", ["avi", "mkv"])
def test_a_video_cut_short_by_a_full_disk_is_not_kept(tiny_models, tmp_path, small_face, monkeypatch, ext):
    """A disk that fills mid-run leaves an AVI without its index (frame count 0) or a Matroska file
    with a garbage count: both were taken as "count unknown" and published, exit 0."""
    from facemark import video as video_mod

    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40 + i, 90)], small_face) for i in range(30)], fps=10, fourcc="MJPG")
    real_finish = video_mod.AtomicVideoWriter.finish

    def cut_short(self):
        self.writer.release()
        data = self.tmp.read_bytes()
        self.tmp.write_bytes(data[: len(data) // 3])  # where the disk filled: the rest never landed
        real_finish(self)

    monkeypatch.setattr(video_mod.AtomicVideoWriter, "finish", cut_short)
    r = run("video", clip, "--out", tmp_path / f"o.{ext}", "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "of 30 frames" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi"]
    # The JSON lines, whole on another disk, were thrown away with the video: they are kept.
    r = run("video", clip, "--out", tmp_path / f"o.{ext}", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "JSON lines are complete in" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi", "o.jsonl"]
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 30


def test_outputs_that_cannot_be_written_leave_no_folder_behind(tiny_models, tmp_path, small_face, monkeypatch):
    """"Nothing written" holds for the folders --out would have made: a folder as --json is refused
    before any is made, and a JSON file that cannot be opened after the video's folder was made
    takes that folder away again."""
    from facemark import video as video_mod

    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3, fourcc="MJPG")
    r = run("video", clip, "--out", tmp_path / "new" / "sub" / "o.mp4", "--json", tmp_path, "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "is a directory" in r.stderr and not (tmp_path / "new").exists(), r.stderr
    r = run("video", clip, "--out", "/dev/null", "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "not a regular file" in r.stderr, r.stderr

    def no_permission(self, path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video_mod.AtomicTextWriter, "__init__", no_permission)
    r = run("video", clip, "--out", tmp_path / "new" / "sub" / "o.mp4", "--json", tmp_path / "o.jsonl",
            "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "Permission denied" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi"]


def test_inputs_we_may_not_read_are_said_so_as_input_errors(tiny_models, tmp_path, small_face, monkeypatch):
    """A folder of frames we may not list gave exit 1 (an output error's code); a video we may not
    read was called "not a video OpenCV can decode". (Run as root here, so the refusals are made.)"""
    from pathlib import Path

    from facemark import video as video_mod

    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3, fourcc="MJPG")
    frames = tmp_path / "frames"
    frames.mkdir()

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video_mod, "open", denied, raising=False)
    r = run("video", clip, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "cannot read it: Permission denied" in r.stderr, r.stderr
    monkeypatch.setattr(Path, "iterdir", denied)
    r = run("video", frames, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 2 and "Permission denied" in r.stderr, r.stderr


def test_a_bad_photo_given_to_video_is_said_as_detect_says_it(tiny_models, tmp_path, small_face):
    """An empty or cut-short JPEG, or a phone's HEIC, given to `video` was "not an image OpenCV can
    decode, nor a video" (or "not a video"), where `detect` says what is wrong with it."""
    good = cv2.imencode(".jpg", frame_with([(40, 90)], small_face))[1].tobytes()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 3])
    (tmp_path / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(4000))
    for name, said in (("empty.jpg", "is empty"), ("cut.jpg", "is cut short"), ("phone.heic", "is a HEIF image")):
        r = run("video", tmp_path / name, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
        assert r.exit_code == 2 and said in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
    assert not (tmp_path / "o.jsonl").exists()


def test_smoothing_settings_with_smoothing_off_are_said_to_do_nothing(tiny_models, tmp_path, small_face):
    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 2, fourcc="MJPG")
    r = run("video", clip, "--json", tmp_path / "o.jsonl", "--smooth", "none", "--beta", 3, "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "do nothing here" in r.stderr, r.stderr
    r = run("video", clip, "--json", tmp_path / "o.jsonl", "--beta", 3, "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "do nothing" not in r.stderr, r.stderr


def test_an_interrupted_run_s_part_takes_the_first_free_name(tmp_path):
    from facemark.video import set_aside_name

    out = tmp_path / "o.mp4"
    (tmp_path / "o.partial.mp4").write_bytes(b"x")
    (tmp_path / "o.partial-2.mp4").write_bytes(b"x")
    (tmp_path / "o.partial-3.mp4").symlink_to(tmp_path / "gone")  # a link to nothing is taken too
    assert set_aside_name(out) == tmp_path / "o.partial-4.mp4"
    # One run's parts share one suffix, the first free for all: the video and its JSON lines pair up
    # by name (with only o.partial.mp4 taken, the lines went to o.partial.jsonl beside o.partial-2.mp4).
    from facemark.video import set_aside_names

    (tmp_path / "o.partial-5.jsonl").write_bytes(b"x")
    assert set_aside_names([out, tmp_path / "o.jsonl"]) == [tmp_path / "o.partial-4.mp4", tmp_path / "o.partial-4.jsonl"]
    (tmp_path / "o.partial-4.jsonl").write_bytes(b"x")
    assert set_aside_names([out, tmp_path / "o.jsonl"]) == [tmp_path / "o.partial-6.mp4", tmp_path / "o.partial-6.jsonl"]


def test_a_pipe_nobody_reads_is_one_line_not_a_hang(tiny_models, tmp_path, small_face):
    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 2, fourcc="MJPG")
    os.mkfifo(tmp_path / "lines")
    p = subprocess.run([sys.executable, "-m", "facemark", "video", str(clip), "--json", str(tmp_path / "lines"),
                        "--model", str(tiny_models["direct"])], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no process is reading" in p.stderr, p.stderr


def test_a_reader_that_leaves_before_the_first_line_is_no_decoding_error(tiny_models, tmp_path, small_face):
    """`facemark video clip --json - | true`: every frame decodes; the reader just went away."""
    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3, fourcc="MJPG")
    r, w = os.pipe()
    os.close(r)  # nobody will read: the first line's write finds the pipe broken
    p = subprocess.run([sys.executable, "-m", "facemark", "video", str(clip), "--json", "-",
                        "--model", str(tiny_models["direct"])], stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(w)
    assert p.returncode == 0 and "decoded" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    # (it said "0 frames in 0.0 s (0.0 fps), 1 face track(s)": the run stops where nobody reads)
    assert "stopped after 0 frame(s): nothing reads the JSON lines" in p.stderr and "track" not in p.stderr, p.stderr


def test_frame_names_with_other_digits_sort_without_a_crash():
    from pathlib import Path

    from facemark.video import frame_order

    names = ["f10.png", "f2.png", "x1\u00b22.png", "f1.png"]
    assert [p.name for p in sorted(map(Path, names), key=frame_order)] == ["f1.png", "f2.png", "f10.png", "x1\u00b22.png"]
    names = ["f1.5.jpg", "f2.jpg", "f1.jpg", "f1.25.jpg"]  # (".jpg" sorted after "." put f1.5 before f1)
    assert [p.name for p in sorted(map(Path, names), key=frame_order)] == ["f1.jpg", "f1.5.jpg", "f1.25.jpg", "f2.jpg"]


def test_json_lines_into_a_pipe_or_device_given_by_name(tiny_models, tmp_path, small_face):
    """--json >(wc -l), /dev/fd/N or /dev/null: lines are streamed into it (the temporary file and
    rename, made for regular files, failed with "No such file or directory")."""
    import threading

    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3, fourcc="MJPG")
    fifo = tmp_path / "lines"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    r = run("video", clip, "--json", fifo, "--model", tiny_models["direct"])
    reader.join(60)
    assert r.exit_code == 0, r.stderr
    assert [json.loads(x)["frame"] for x in got[0].splitlines()] == [0, 1, 2]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the pipe, not replaced by a file
    r = run("video", clip, "--json", "/dev/null", "--out", tmp_path / "o.mp4", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and (tmp_path / "o.mp4").is_file(), r.stderr


def test_video_api_takes_string_paths_and_refuses_an_empty_input(tiny_models, tmp_path, small_face):
    from facemark import FaceLandmarker
    from facemark.errors import UsageError
    from facemark.video import process_video

    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 5)
    fl = FaceLandmarker(model=str(tiny_models["direct"]))
    s = process_video(str(clip), fl, str(tmp_path / "o.mp4"), str(tmp_path / "o.jsonl"), log=lambda *a: None)
    assert s.frames == 5 and (tmp_path / "o.mp4").is_file()
    with pytest.raises(UsageError, match="empty"):
        process_video("", fl, json_path=str(tmp_path / "e.jsonl"))
    assert run("video", "", "--json", tmp_path / "e.jsonl").exit_code == 2


def test_frames_of_another_size_are_fitted_and_said(tiny_models, tmp_path, small_face):
    d = tmp_path / "frames"
    d.mkdir()
    frame = frame_with([(100, 80)], small_face)
    for i in range(4):  # frame 2 is the same picture at twice the size
        cv2.imwrite(str(d / f"f{i:03d}.png"), frame if i != 2 else cv2.resize(frame, None, fx=2, fy=2))
    r = run("video", d, "--json", tmp_path / "f.jsonl", "--model", tiny_models["direct"], "--smooth", "none")
    assert r.exit_code == 0 and "1 frame(s) of another size were fitted" in r.stderr, r.stderr
    lines = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    pts = [np.array(x["faces"][0]["landmarks"]) for x in lines]
    box = [np.array(x["faces"][0]["box"]) for x in lines]
    # In its own pixels, pixel centres at integers: x -> (x + 0.5) * 2 - 0.5.
    assert np.abs(pts[2] - (2 * pts[1] + 0.5)).max() < 0.3 and np.abs(box[2] - (2 * box[1] + 0.5)).max() < 1.0
    assert np.abs(pts[3] - pts[1]).max() < 1.0
    assert "shrunk" not in r.stderr  # (twice the size: its faces are still found)
    # A thumbnail first by name sets the size every later frame is shrunk to: said, not a silent "0 tracks".
    cv2.imwrite(str(d / "a_thumb.png"), cv2.resize(frame, (48, 36), interpolation=cv2.INTER_AREA))
    r = run("video", d, "--json", tmp_path / "g.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "warning: some frames were shrunk up to 20x to fit the first frame's size" in r.stderr, r.stderr


def test_a_link_loop_among_globbed_frames_is_skipped(tiny_models, tmp_path, small_face):
    import os

    d = tmp_path / "fr"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"f{i}.png"), frame_with([(10, 10)], small_face))
    os.symlink("f9.png", d / "f9.png")
    r = run("video", f"{d}/*.png", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 1 and "1 frame(s)" in r.stderr and "did not decode" in r.stderr, r.stderr  # (a traceback before)
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 3
    assert "1 frame(s) of " in r.stderr and " (f9.png) did not decode" in r.stderr, r.stderr  # (which one: named)


def test_the_frame_loop_counts_two_damaged_stretches_once_each():
    """Frames 10-14 and 90-94 of 100 do not decode: the other 90 come out, numbered as in the file."""
    from facemark.video import Source

    class FakeCapture:
        def __init__(self):
            self.pos = 0

        def read(self):
            self.pos += 1
            k = self.pos - 1
            if k >= 100 or 10 <= k < 15 or 90 <= k < 95:
                return False, None
            return True, np.full((4, 4, 3), k, np.uint8)

        def get(self, prop):
            return 0.0

        def release(self):
            pass

    src = Source("fake", 25.0, 4, 4, 100, _cap=FakeCapture())
    got = [(i, int(frame[0, 0, 0])) for i, t, frame in src]
    assert [i for i, _ in got] == [k for k in range(100) if not (10 <= k < 15 or 90 <= k < 95)]
    assert all(i == value for i, value in got) and src.decode_errors == 10


def test_an_output_name_too_long_is_one_line(tiny_models, tmp_path, small_face):
    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3)
    for option in ("--json", "--out"):
        r = run("video", clip, option, tmp_path / ("x" * 300 + ".mp4"), "--model", tiny_models["direct"])
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "too long" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_signals_that_land_while_the_outputs_close_are_not_a_traceback(tiny_models, tmp_path, small_face, monkeypatch):
    """Two Ctrl-Cs arriving just as the outputs start closing (a race a CI run hit): the run ends
    as interrupted with both outputs complete, not with the internal stop exception escaping."""
    import signal as S

    from facemark import FaceLandmarker
    from facemark.video import process_video

    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 6)
    real, fired = S.signal, []

    def signal_with_a_race(sig, handler):
        if handler is S.SIG_IGN and not fired:
            fired.append(sig)
            for _ in range(2):
                S.getsignal(sig)(sig, None)
        return real(sig, handler)

    monkeypatch.setattr(S, "signal", signal_with_a_race)
    fl = FaceLandmarker(model=str(tiny_models["direct"]))
    s = process_video(str(clip), fl, str(tmp_path / "o.mp4"), str(tmp_path / "o.jsonl"), log=lambda *a: None)
    monkeypatch.undo()
    # Every frame was done before the signals: the outputs are whole, under their own names, and
    # the run is no interrupted one (a script would look for the NAME.partial.EXT files of one).
    assert fired and not s.interrupted and s.frames == 6 and not s.set_aside
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 6 and (tmp_path / "o.mp4").is_file()


def test_json_lines_to_stdout_and_a_reader_that_goes_away(tiny_models, tmp_path, small_face):
    """--json - streams the frame lines into a pipe (no file named '-'); `| head` is not an error."""
    clip = tmp_path / "c.avi"
    write_clip(clip, [frame_with([(60, 80)], small_face)] * 30, fourcc="MJPG")
    cmd = [sys.executable, "-m", "facemark", "video", str(clip), "--json", "-", "--model", str(tiny_models["direct"])]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["frame"] for d in lines] == list(range(30)) and all(validate_frame(d) == [] for d in lines)
    assert not (tmp_path / "-").exists()
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith('{"frame":0')
    p.stdout.close()  # the reader leaves after one line
    assert p.wait(timeout=120) == 0
    assert "Traceback" not in p.stderr.read()


@pytest.mark.parametrize("target", ["-", "/dev/stdout"])
def test_json_lines_to_a_closed_stdout_is_one_line(tiny_models, tmp_path, small_face, target):
    clip = tmp_path / "c.avi"
    write_clip(clip, [frame_with([(60, 80)], small_face)] * 3, fourcc="MJPG")
    before = clip.read_bytes()
    cmd = [sys.executable, "-m", "facemark", "video", str(clip), "--json", target, "--model", str(tiny_models["direct"])]
    r = subprocess.run(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 2 and r.stderr.strip() == "error: standard output is closed: give --json FILE", r.stderr
    assert clip.read_bytes() == before


@pytest.mark.skipif(not os.path.exists("/dev/stdin"), reason="names standard input as /dev/stdin")
def test_a_video_piped_in_as_dev_stdin_is_said_to_be_a_pipe(tmp_path, small_face):
    """`cat v.mp4 | facemark video /dev/stdin` said "not a video file (empty or not a file)"."""
    clip = tmp_path / "c.avi"
    write_clip(clip, [frame_with([(60, 80)], small_face)] * 3, fourcc="MJPG")
    r = subprocess.run([sys.executable, "-m", "facemark", "video", "/dev/stdin", "--json", "o.jsonl"],
                       input=clip.read_bytes(), capture_output=True, timeout=120, cwd=tmp_path)  # (a pipe, as `cat |`)
    r.stderr = r.stderr.decode()
    assert r.returncode == 2 and r.stderr.startswith("error: /dev/stdin: a pipe: a video is read from a file"), r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "o.jsonl").exists()


def test_a_second_signal_stops_a_run_whose_pipe_is_not_read(tiny_models, tmp_path, small_face):
    """The reader of --json - stopped reading: the write waits for ever. The first Ctrl-C would
    finish the frame (it cannot); a second one must stop the run, not be swallowed."""
    clip = tmp_path / "c.avi"
    write_clip(clip, [frame_with([(60, 80)], small_face)] * 200, fourcc="MJPG")
    cmd = [sys.executable, "-m", "facemark", "video", str(clip), "--json", "-", "--model", str(tiny_models["direct"])]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_default)
    try:
        stuck_writing(p.pid, 5.0)  # started, and stuck on a full pipe
        assert p.poll() is None
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert p.poll() is None  # (the first waits for the frame)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 130
    finally:
        if p.poll() is None:
            p.kill()
        p.stdout.close()
        p.stderr.close()


def test_a_face_never_gets_two_tracks(small_face):
    """Two faces 1.25 widths apart; the detector misses the right one for two frames. Its track
    must not move onto the left face (each detection goes to one track), and a detector's false
    positive beside a face, seen on whole-frame detections only, must not multiply tracks."""
    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    real = fl.detector

    class MissesTheRightFace:
        name, frame = real.name, 0

        def detect(self, image):
            found = real.detect(image)
            if 5 <= self.frame <= 6:
                found = sorted(found, key=lambda d: d.box[0])[:1] if len(found) > 1 or image.shape[1] >= 400 else found
            return found

    det = fl.detector = MissesTheRightFace()
    tr = Tracker(fl, detect_every=10)
    for i in range(30):
        det.frame = i
        tracks = tr.step(frame_with([(100, 100), (180, 100)], small_face, size=(640, 360)), i / 25.0)
        xs = sorted(round(float(t.smoothed.mean(0)[0])) for t in tracks)
        assert len(xs) == len(set(xs)) and len(tr.tracks) <= 2, (i, [(t.id, t.box) for t in tr.tracks])
    assert sorted(t.id for t in tracks) == [0, 1], [t.id for t in tracks]

    class OneFalsePositive:
        name = real.name

        def detect(self, image):
            found = real.detect(image)
            if image.shape[1] == 640:  # whole frames only, a face width right of the face
                b = found[0].box + [80, 0, 80, 0]
                found.append(Detection(b, 0.7, None))
            return found

    fl.detector = OneFalsePositive()
    tr = Tracker(fl, detect_every=5)
    ids = set()
    for i in range(40):
        ids |= {t.id for t in tr.step(frame_with([(100, 100)], small_face, size=(640, 360)), i / 25.0)}
    assert len(ids) <= 2 and len(tr.tracks) <= 2, (ids, len(tr.tracks))


def test_a_detector_without_keypoints_tracks(small_face):
    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    real = fl.detector

    class BoxesOnly:
        name = real.name

        def detect(self, image):
            return [Detection(d.box, d.score) for d in real.detect(image)]

    fl.detector = BoxesOnly()
    tr = Tracker(fl, detect_every=10)
    assert [[t.id for t in tr.step(frame_with([(100, 100)], small_face), i / 25.0)] for i in range(5)] == [[0]] * 5


def test_the_reported_box_is_one_kind_on_every_frame(small_face):
    """The box in the frame lines is placed by the reported points on detection frames too, so a
    still face's box does not jump between the detector's box and the landmarks' box."""
    from facemark.track import box_from_landmarks
    from facemark.video import frame_record, tracked_faces

    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    tr = Tracker(fl, detect_every=4)
    boxes = []
    for i in range(10):
        tracks = tr.step(frame_with([(60, 100)], small_face), i / 25.0)
        rec = frame_record(i, i / 25.0, tracks, tracked_faces(tracks, tr))
        (face,) = rec["faces"]
        assert np.abs(np.array(face["box"]) - box_from_landmarks(np.array(face["landmarks"]))).max() < 0.05
        boxes.append(face["box"])
    assert np.ptp(np.array(boxes), axis=0).max() < 0.5, boxes


def test_a_face_the_window_check_cannot_see_is_still_followed(small_face):
    """A window check can miss a face that the whole-frame detection finds (a head tilted past
    ~35° at the check's 48 px): the crop's points are then kept if the detection agrees with them,
    not left where they were (frozen) until the face drifts off, and the check looks closer next time."""
    from facemark import FaceLandmarker

    fl = FaceLandmarker(model="direct")  # a model that sees where the face is (MeanShapeModel never moves)
    real = fl.detector

    class BlindWindows:  # finds faces in whole frames only
        name = real.name

        def detect(self, image):
            return real.detect(image)

        def detect_as_is(self, image):
            return [] if max(image.shape[:2]) < 400 else real.detect_as_is(image)

    fl.detector = BlindWindows()
    tr = Tracker(fl, detect_every=100, smooth=False)
    centres = []
    for i in range(20):
        (face,) = tr.step(frame_with([(60 + 3 * i, 100)], small_face, size=(640, 360)), i / 25.0)
        centres.append(face.smoothed.mean(0)[0])
    steps = np.diff(centres)[2:]  # (the first frames set the velocity)
    assert np.abs(steps - 3).max() < 1.0, np.round(np.diff(centres), 2)  # moving every frame, never frozen
    assert tr.tracks[0].check_px > tr.check_px


def test_a_cut_restarts_the_smoothing(small_face):
    """Another shot is no continuation of the last: the points after a cut are the new face's, from
    its own detection, not blended over several frames with the old one's shape."""
    from facemark import FaceLandmarker

    tr = Tracker(FaceLandmarker(model="direct"), detect_every=100)
    other = cv2.flip(small_face, 1)
    for i in range(12):
        tr.step(frame_with([(100, 100)], small_face), i / 25.0)
    frame = frame_with([(104, 100)], other)
    frame[frame == 100] = 200  # a new background: the whole picture changes at once
    (before,) = tr.tracks
    assert np.abs(before.smoothed - before.landmarks).max() > 1e-3  # smoothing was at work before the cut
    (face,) = tr.step(frame, 12 / 25.0)
    assert np.abs(face.smoothed - face.landmarks).max() < 1e-6
    assert not face.velocity.any()  # the next crop does not lead by the jump across the cut
    # Cropped as a new face is, from the detection: a crop from the last shot's points fitted another
    # person there badly (the cut frame's points were 4-5 times further off in a hostile test).
    (fresh,) = FaceLandmarker(model="direct").detect(frame)
    assert np.abs(face.landmarks - fresh.landmarks).max() < 1e-6


def test_a_face_back_from_behind_a_hand_is_not_dragged_by_what_hid_it(small_face):
    """While a face is hidden its points are the model's guess on the occluder; they went into the
    smoother, and the face came back 9-17 % of the eye distance off for a dozen frames."""
    from facemark import FaceLandmarker
    from facemark.track import inter_ocular

    tr = Tracker(FaceLandmarker(model="direct"), detect_every=100)
    frame = frame_with([(150, 100)], small_face)
    for i in range(10):
        (before,) = tr.step(frame, i / 25.0)
    still = before.smoothed.copy()  # the face never moves
    for k, rect in enumerate(((80, 260, 130, 290), (120, 200, 165, 245))):  # a hand over the face, over its middle
        hidden = frame.copy()
        hidden[rect[0]:rect[1], rect[2]:rect[3]] = (40, 40, 200)
        for i in range(10, 13):
            assert tr.step(hidden, (i + 10 * k) / 25.0) == []  # hidden: not reported
        (face,) = tr.step(frame, (13 + 10 * k) / 25.0)
        # (4.5 and 3.2 % before: the crop followed the guesses, and the smoother dragged)
        assert np.linalg.norm(face.smoothed - still, axis=1).mean() < 0.02 * inter_ocular(still)
        for i in range(14, 20):
            tr.step(frame, (i + 10 * k) / 25.0)


def test_a_flickering_light_is_no_cut_but_another_shot_and_black_are(small_face):
    """A 30 % lamp or exposure flicker changed every pixel by more than the cut level: every frame
    was a cut, so smoothing restarted each frame and the whole frame was searched each frame."""
    from facemark import FaceLandmarker

    tr = Tracker(FaceLandmarker(model="direct"), detect_every=100)
    frame = frame_with([(100, 100)], small_face)
    frame[:, :40] = 30  # a dark edge and a bright one: a picture with some spread
    frame[:, -40:] = 220
    dim = (frame * 0.7).astype(np.uint8)
    assert tr._cut(frame) is False  # (the first frame: nothing to compare)
    assert not any(tr._cut(f) for f in (dim, frame, dim, frame, dim))
    other = frame_with([(300, 150)], cv2.flip(small_face, 0))
    other[:, :200] = 230
    assert tr._cut(other)
    assert tr._cut(np.zeros_like(frame))
    rng = np.random.default_rng(0)  # a dim, grainy shot: the grain is no cut
    dark = np.full((360, 480, 3), 20, np.uint8)
    dark[:, 240:] = 32
    grain = [np.clip(dark + rng.normal(0, 12, dark.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    tr._cut(grain[0])
    assert not any(tr._cut(g) for g in grain[1:])


def test_a_pan_or_a_shaking_camera_is_no_cut_but_another_shot_still_is(small_face):
    """A hand-held camera over a detailed background moved the whole picture a few % a frame, and
    unaligned thumbnails differed as another shot's do: a 20 px-a-frame pan of 480 px frames was
    a cut on 43 of 45 frames (smoothing restarted each time, the whole frame searched each time).
    Another shot of the same kind of picture, or of the same background far along, is still one."""
    from facemark import FaceLandmarker

    def scene(seed, w=2400, h=400):
        rng = np.random.default_rng(seed)
        im = np.full((h, w, 3), 128, np.uint8)
        for _ in range(400):
            x, y, a, b = (int(v) for v in rng.integers(0, (w, h, 70, 70)))
            cv2.rectangle(im, (x, y), (x + 10 + a, y + 10 + b), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        return cv2.GaussianBlur(im, (0, 0), 2)

    tr = Tracker(FaceLandmarker(model="direct"), detect_every=100)
    wide = scene(1)
    pan = [wide[:360, x:x + 480] for x in range(0, 40 * 20, 20)]
    shake = [wide[int(20 + 12 * np.sin(i * 0.65)):, int(1000 + 25 * np.sin(i * 0.9)):][:300, :400] for i in range(40)]
    for clip in (pan, shake):
        tr._thumb = None
        assert sum(tr._cut(np.ascontiguousarray(f)) for f in clip) == 0
    tr._thumb = None
    tr._cut(np.ascontiguousarray(wide[:360, :480]))
    assert tr._cut(np.ascontiguousarray(scene(2)[:360, :480]))  # another shot of the same kind
    assert tr._cut(np.ascontiguousarray(wide[:360, 1500:1980]))  # the same place far along: a cut too
    for jump in (90, 200):  # (the same picture moved over an eighth of the frame at once: a jump cut)
        tr._thumb = None
        tr._cut(np.ascontiguousarray(wide[:360, :480]))
        assert tr._cut(np.ascontiguousarray(wide[:360, jump:jump + 480])), jump
    pan40 = [wide[:360, x:x + 480] for x in range(0, 30 * 40, 40)]  # (a fast pan, 40 px a frame: still one shot)
    tr._thumb = None
    assert sum(tr._cut(np.ascontiguousarray(f)) for f in pan40) == 0


def test_the_faces_of_a_frame_are_the_callers_to_change(small_face):
    """Without smoothing, tracked_faces handed out the track's own points: a caller who moved a
    face's points in place moved where the tracker followed it next."""
    from facemark import FaceLandmarker
    from facemark.video import tracked_faces

    frames = [frame_with([(100 + 2 * i, 100)], small_face) for i in range(6)]
    runs = []
    for meddle in (False, True):
        tr = Tracker(FaceLandmarker(model="direct"), smooth=False, detect_every=100)
        seen = []
        for i, f in enumerate(frames):
            faces = tracked_faces(tr.step(f, i / 30), tr)
            seen.append(faces[0].landmarks.copy())
            if meddle:
                faces[0].landmarks += 40
                faces[0].box += 40
        runs.append(np.array(seen))
    assert np.array_equal(runs[0], runs[1])


def test_fps_overrides_the_file_s_timestamps(tiny_models, tmp_path, small_face):
    clip = tmp_path / "fast.mp4"
    write_clip(clip, [frame_with([(40 + i, 90)], small_face) for i in range(6)], fps=240)
    r = run("video", clip, "--json", tmp_path / "o.jsonl", "--fps", 30, "--model", tiny_models["direct"])
    assert r.exit_code == 0, r.stderr
    times = [json.loads(x)["time"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert np.allclose(np.diff(times), 1 / 30, atol=1e-3), times


def test_a_second_signal_while_a_frame_is_written_keeps_both_outputs_in_step(tiny_models, tmp_path, small_face,
                                                                              monkeypatch):
    import os

    from facemark import video

    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 20)
    real, calls = video.AtomicVideoWriter.write, []

    def write(self, frame):  # two signals land while the fifth frame is being written (as frame 5 comes)
        real(self, frame)
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(video.AtomicVideoWriter, "write", write)
    r = run("video", clip, "--out", tmp_path / "o.mp4", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 143, r.stderr  # (128 + SIGTERM)
    cap = cv2.VideoCapture(str(tmp_path / "o.partial.mp4"))  # (an interrupted run's part)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == len((tmp_path / "o.partial.jsonl").read_text().splitlines()) == 6  # frame 5 finished in both, then the stop


def test_a_signal_after_every_frame_is_done_leaves_a_whole_run(tiny_models, tmp_path, small_face, monkeypatch):
    """A Ctrl-C while the sound is looked for (the outputs already whole, under their own names)
    ended the CLI with "interrupted before any frame was written", exit 130."""
    import os

    from facemark import video

    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 4)

    def ctrl_c_then_no_sound(path):
        os.kill(os.getpid(), signal.SIGINT)
        return False

    monkeypatch.setattr(video, "has_audio", ctrl_c_then_no_sound)
    r = run("video", clip, "--out", tmp_path / "o.mp4", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "interrupted" not in r.stderr, r.stderr
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 4 and len(frames_of(tmp_path / "o.mp4")) == 4


def test_a_json_only_run_removes_what_a_killed_run_left(tiny_models, tmp_path, small_face):
    """A run killed with SIGKILL leaves its hidden temporary; the next run into that folder removes
    it, whether or not it writes a video."""
    dead = subprocess.run([sys.executable, "-c", "from facemark.imageio import make_temp; print(make_temp('.')[1])"],
                          cwd=tmp_path, capture_output=True, text=True)
    left = tmp_path / dead.stdout.strip().split("/")[-1]
    assert left.exists()
    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3)
    assert run("video", clip, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"]).exit_code == 0
    assert not left.exists()


def test_the_video_api_names_a_bad_argument(tiny_models, tmp_path, small_face):
    """As its argument, a ValueError (it was the command's option: "--detect-every must be ...")."""
    from facemark import FaceLandmarker
    from facemark.errors import UsageError
    from facemark.video import process_video

    clip = tmp_path / "in.mp4"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3)
    fl = FaceLandmarker(model=str(tiny_models["direct"]))
    for kw, says in (({"max_faces": "2"}, "max_faces must"), ({"detect_every": 2.5}, "detect_every must"),
                     ({"detect_every": True}, "detect_every must"), ({"fps": "30"}, "fps must"),
                     ({"smooth": "x"}, "smooth must"), ({"json_path": None}, "give out_path .* and/or json_path"),
                     ({"out_path": tmp_path / "run--out.txt"}, r"out_path .*run--out\.txt: use one of"),
                     ({"json_path": tmp_path / "o.png"}, r"json_path .*o\.png: that names an image")):
        with pytest.raises(ValueError, match=says) as e:
            process_video(clip, fl, **{"json_path": tmp_path / "o.jsonl", **kw})
        assert isinstance(e.value, UsageError) and not re.search(r"(^| )--[a-z]", str(e.value)), str(e.value)
    s = process_video(str(clip).encode(), fl, json_path=tmp_path / "o.jsonl", log=lambda m: None)  # a bytes path works
    assert s.frames == 3


def test_a_face_passing_behind_another_does_not_take_its_id(small_face):
    """While one face covers another, the hidden face's crop slides onto the visible one (the
    model draws a face in any crop) and may sit even closer to the detection than the visible
    face's own track: the visible face keeps the detection, and its id (they flickered)."""
    from facemark.track import Track, box_from_landmarks

    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    frame = frame_with([(200, 100)], small_face)
    (det,) = fl.detector.detect(frame)

    class One:  # the detector sees the front face only
        name = fl.detector.name

        def detect(self, image):
            return [det]

    fl.detector = One()
    (face,) = fl.landmarks_for([frame], [[det]])[0]
    tr = Tracker(fl, detect_every=10)
    shift = np.array([3.0, 0.0])  # the visible face's own track, a few px off; the hidden one right on it
    front = Track(1, face.landmarks + shift, face.landmarks + shift, box_from_landmarks(face.landmarks + shift),
                  0.99, bias=np.zeros(2))
    behind = Track(0, face.landmarks, face.landmarks, det.box.copy(), 0.99, unconfirmed=1, bias=np.zeros(2))
    tr.tracks, tr.next_id = [behind, front], 2
    tr._detect(frame)
    assert front.unconfirmed == 0 and behind.unconfirmed == 2


def test_a_hidden_face_still_takes_its_own_detection_from_a_neighbour(small_face):
    """The handicap of hidden tracks is for near-ties: a hidden face whose detection comes back,
    while its neighbour's is missed, gets it back (the neighbour does not take it and its id over)."""
    from facemark.track import Track, box_from_landmarks

    fl = landmarker_with(MeanShapeModel(), batch_size=8)
    frame = frame_with([(200, 100)], small_face)
    (det,) = fl.detector.detect(frame)

    class One:
        name = fl.detector.name

        def detect(self, image):
            return [det]

    fl.detector = One()
    (face,) = fl.landmarks_for([frame], [[det]])[0]
    side = det.box[2] - det.box[0]
    tr = Tracker(fl, detect_every=10)
    beside = face.landmarks + [0.6 * side, 0]  # a neighbour 0.6 face widths away, its own face not detected
    neighbour = Track(1, beside, beside, box_from_landmarks(beside), 0.99, bias=np.zeros(2))
    hidden = Track(0, face.landmarks, face.landmarks, det.box.copy(), 0.99, unconfirmed=1, bias=np.zeros(2))
    tr.tracks, tr.next_id = [hidden, neighbour], 2
    tr._detect(frame)
    assert hidden.unconfirmed == 0 and neighbour.unconfirmed == 1


def test_a_closer_look_is_given_up_again(small_face):
    """A raised window-check scale (after a check missed a face) falls back after a while: checks
    that blur made miss would otherwise cost a whole-frame detection on every frame for good."""
    from facemark import FaceLandmarker
    from facemark.track import CHECK_HOLD

    fl = FaceLandmarker(model="direct")
    real, blind = fl.detector, {"on": True}

    class Blurred:  # the window checks of the first frames cannot see the face
        name = real.name

        def detect(self, image):
            return real.detect(image)

        def detect_as_is(self, image):
            return [] if blind["on"] and max(image.shape[:2]) < 400 else real.detect_as_is(image)

    fl.detector = Blurred()
    tr = Tracker(fl, detect_every=100)
    for i in range(4 * CHECK_HOLD):
        blind["on"] = i < 4
        tr.step(frame_with([(200, 100)], small_face, size=(640, 360)), i / 25.0)
        if i == 4:
            assert tr.tracks[0].check_px > tr.check_px
    assert tr.tracks[0].check_px == 0.0


class NoisyMeanShapeModel(MeanShapeModel):
    """The mean face with fresh noise on every point each frame (about 1 % of the crop), as a real
    model's frame-to-frame wobble on a still face."""

    def __init__(self, level: float = 0.01):
        super().__init__()
        self.rng, self.level = np.random.default_rng(0), level

    def __call__(self, crops):
        return np.repeat(self.u[None], len(crops), 0) + self.rng.normal(0, self.level, (len(crops), 98, 2))


@pytest.mark.parametrize("level, most", [(0.01, 0.5), (0.003, 0.2)])
def test_smoothing_steadies_a_still_face_and_stops_at_a_cut(small_face, level, most):
    """The reported points of a still face wobble less than the model's own (the One Euro filter is
    on by default); the raw points are what the model said. At 0.3 % of the crop (2.4 times the
    hourglass's wobble on scripts/video_bench.py's still face, 0.41 % of the eye distance) a pose filter whose cutoff opened
    too readily (beta 300) took that noise for motion and smoothed nothing."""
    wobble = {}
    for smooth in (True, False):
        tr = Tracker(landmarker_with(NoisyMeanShapeModel(level), batch_size=8), detect_every=5, smooth=smooth)
        shown, raw = [], []
        for i in range(40):
            (face,) = tr.step(frame_with([(150, 100)], small_face), i / 25.0)
            shown.append(face.smoothed.copy())
            raw.append(face.landmarks.copy())
        shown, raw = np.array(shown[10:]), np.array(raw[10:])
        wobble[smooth] = float(np.abs(np.diff(shown, axis=0)).mean())
        if smooth:
            assert np.abs(shown - raw).max() > 0.1 * level / 0.01  # not the raw points passed through
        else:
            assert np.array_equal(shown, raw)
    assert wobble[True] < most * wobble[False], wobble


def test_a_photo_named_like_a_video_is_not_said_to_lose_its_audio(tiny_models, tmp_path, small_face):
    """A still image has no audio track to lose: no note about audio for it (OpenCV reads it as a
    one-frame video)."""
    still = tmp_path / "still.mp4"
    still.write_bytes(cv2.imencode(".jpg", frame_with([(40, 90)], small_face))[1].tobytes())
    r = run("video", still, "--out", tmp_path / "o.mp4", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "audio" not in r.stderr, r.stderr
    assert (tmp_path / "o.mp4").is_file()
    assert "facemark: 1 frame in" in r.stderr, r.stderr  # (not "1 frames")
    # And a video named like a photo is read as the video it is ("none of the frames can be read").
    (tmp_path / "clip.jpg").write_bytes((tmp_path / "o.mp4").read_bytes())
    r = run("video", tmp_path / "clip.jpg", "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 1, r.stderr


def test_a_video_with_its_audio_copied_keeps_the_usual_permissions(tmp_path, monkeypatch):
    """ffmpeg writes into facemark's private temporary file; the result is published with the
    permissions every output gets (it came out readable by its owner only)."""
    import os
    import stat

    from facemark.video import mux_audio

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"  # stands in for ffmpeg: copies the video input to the output, as -c:v copy does
    fake.write_text('#!/bin/sh\nfor a; do last="$a"; done\ncat "$5" > "$last"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    video, source = tmp_path / "out.mp4", tmp_path / "in.mp4"
    video.write_bytes(b"video")
    source.write_bytes(b"source")
    umask = os.umask(0o022)
    try:
        assert mux_audio(video, str(source))
    finally:
        os.umask(umask)
    assert video.read_bytes() == b"video" and stat.S_IMODE(video.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "in.mp4", "out.mp4"]
    # The audio codec fits the container: WebM holds no AAC (ffmpeg would refuse, and the sound be lost).
    fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\nfor a; do last="$a"; done\ncat "$5" > "$last"\n')
    for name, codec in (("out.webm", "libopus"), ("out.mp4", "aac")):
        (tmp_path / name).write_bytes(b"video")
        assert mux_audio(tmp_path / name, str(source))
        assert f"-c:a {codec} " in (bin_dir / "args").read_text()


def test_a_video_whose_name_is_not_utf8_is_refused_in_one_line(tiny_models, tmp_path, small_face):
    """OpenCV's video reader crashes the whole process (a segfault, no message) on such a name."""
    import os

    write_clip(tmp_path / "c.avi", [frame_with([(40, 90)], small_face)] * 2, fourcc="MJPG")
    os.rename(tmp_path / "c.avi", os.fsdecode(os.fsencode(tmp_path) + b"/w\xff.avi"))
    r = subprocess.run([sys.executable, "-m", "facemark", "video", os.fsdecode(b"w\xff.avi"), "--json", "o.jsonl",
                        "--model", str(tiny_models["direct"])], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "not valid UTF-8" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_big_video_without_faces_names_min_face(tiny_models, tmp_path):
    """A 4K clip whose faces are under 1/16 of its width gave '0 face track(s)' and no word of why."""
    for name, size, noted in (("big.avi", (1400, 1000), True), ("small.avi", (640, 480), False)):
        write_clip(tmp_path / name, [np.full((size[1], size[0], 3), 120, np.uint8)] * 3, fourcc="MJPG")
        r = run("video", tmp_path / name, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
        assert r.exit_code == 0, r.stderr
        assert ("--min-face 40" in r.stderr) == noted, (name, r.stderr)
    r = run("video", tmp_path / "big.avi", "--json", tmp_path / "o.jsonl", "--min-face", 300, "--model",
            tiny_models["direct"])  # the user chose the scale
    assert r.exit_code == 0 and "--min-face 40" not in r.stderr, r.stderr


def test_a_frame_of_another_shape_keeps_its_shape_and_its_points(tmp_path, face_image):
    """A portrait frame in a landscape folder was stretched to the first frame's size: the face,
    squeezed, got points 7 % of the eye distance off on average (20 % at worst)."""
    from facemark import FaceLandmarker

    d = tmp_path / "frames"
    d.mkdir()
    for i, (w, h) in enumerate([(640, 480), (480, 640), (640, 480)]):
        m = cv2.getRotationMatrix2D((face_image.shape[1] / 2, face_image.shape[0] / 2), 0, 0.8 * w / 640)
        m[:, 2] += (w / 2 - face_image.shape[1] / 2, h / 2 - face_image.shape[0] / 2)
        cv2.imwrite(str(d / f"f{i}.png"), cv2.warpAffine(face_image, m, (w, h), borderValue=(128, 128, 128)))
    r = run("video", d, "--json", tmp_path / "f.jsonl", "--detect-every", 1, "--smooth", "none")
    assert r.exit_code == 0 and "1 frame(s) of another size were fitted" in r.stderr, r.stderr
    line = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()][1]
    own = FaceLandmarker().detect(cv2.imread(str(d / "f1.png")))[0]
    pts = np.array(line["faces"][0]["landmarks"])
    iod = np.linalg.norm(own.landmarks[60] - own.landmarks[72])
    assert np.linalg.norm(pts - own.landmarks, axis=1).mean() / iod < 0.02


def test_a_folder_of_videos_says_to_give_one_video(tmp_path, small_face):
    d = tmp_path / "clips"
    d.mkdir()
    write_clip(d / "a.mp4", [frame_with([(40, 90)], small_face)] * 3)
    write_clip(d / "b.mp4", [frame_with([(40, 90)], small_face)] * 3)
    r = run("video", d, "--json", tmp_path / "o.jsonl")
    assert r.exit_code == 2 and "no image frames found, but 2 video(s) (a.mp4, ...): give one video file" in r.stderr
    r = run("video", f"{d}/*.mp4", "--json", tmp_path / "o.jsonl")  # (a quoted pattern: the same)
    assert r.exit_code == 2 and "no image frames found, but 2 video(s) (a.mp4, ...): give one video file" in r.stderr
    r = run("video", f"{d}/a*.mp4", "--json", tmp_path / "o.jsonl", "--model", "direct")  # (one video: that one)
    assert r.exit_code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 3, r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("video", empty, "--json", tmp_path / "o.jsonl")
    assert r.exit_code == 2 and r.stderr.strip().endswith("no image frames found")


def test_a_frame_folder_leaves_out_mac_metadata_and_facemark_drawings(tiny_models, tmp_path, small_face):
    """A copied Mac folder's ``._f000.png`` counted as an undecodable frame (exit 1), and detect's
    drawings beside the frames were frames too."""
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"f{i:03d}.png"), frame_with([(40, 90)], small_face))
    (d / "._f000.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    cv2.imwrite(str(d / "f000.png.annotated.png"), frame_with([(40, 90)], small_face))
    r = run("video", d, "--json", tmp_path / "f.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "facemark: 3 frames in" in r.stderr, r.stderr
    assert r.stderr.strip().endswith(f"JSON lines in {tmp_path / 'f.jsonl'}")  # (the summary says where it went)
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == 3


def _noise_background(h=480, w=640):
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(30, 90, (h, w, 3)).astype(np.uint8), (0, 0), 3)


def test_a_face_hidden_for_a_few_frames_keeps_its_id_where_it_comes_back_nearby(face_image):
    """While a face is covered, its crop follows the model's guesses on the cover, a box that
    shrank frame by frame (47 -> 28 px); the face back 40 px (0.85 of its width) from where it
    was seen was measured against that box, and got a new id. It is sought where it was seen too."""
    from facemark import FaceLandmarker

    face = cv2.resize(face_image, (200, 200), interpolation=cv2.INTER_AREA)
    bg = _noise_background()
    tr = Tracker(FaceLandmarker(model="direct"), detect_every=10)
    ids = []
    for i in range(45):
        frame = bg.copy()
        if 30 <= i < 33:
            frame[140:340, 100:300] = 60  # covered
        else:
            x = 100 if i < 30 else 140
            frame[140:340, x:x + 200] = face
        ids.append([t.id for t in tr.step(frame, i / 30.0)])
    assert ids[:30] == [[0]] * 30 and ids[30:33] == [[]] * 3 and ids[33:] == [[0]] * 12, ids


def test_a_face_shaking_fast_keeps_its_id_on_whole_frame_detections_too(face_image):
    """On frames with a whole-frame detection a fast face was sought where it was (a box that
    lagged), not where its motion took it, as the window checks between them do: its id changed
    on the 40th frame only."""
    from facemark import FaceLandmarker

    face = cv2.resize(face_image, (200, 200), interpolation=cv2.INTER_AREA)
    bg = _noise_background()
    tr = Tracker(FaceLandmarker(model="direct"), detect_every=10)
    ids = set()
    for i in range(60):  # (60 px either way in 10 frames, turning 10 degrees and growing 15 % either way)
        m = cv2.getRotationMatrix2D((100, 100), 10 * np.sin(2 * np.pi * i / 8), 1 + 0.15 * np.sin(2 * np.pi * i / 13))
        m[:, 2] += (220 + 60 * np.sin(2 * np.pi * i / 10), 140 + 15 * np.cos(2 * np.pi * i / 7))
        inside = cv2.warpAffine(np.full((200, 200), 255, np.uint8), m, (640, 480)) > 0
        frame = np.where(inside[..., None], cv2.warpAffine(face, m, (640, 480)), bg)
        tracks = tr.step(frame, i / 30.0)
        assert len(tracks) == 1, i
        ids.add(tracks[0].id)
    assert ids == {0}, ids


def test_frame_times_never_go_back_when_the_first_ones_are_not_known(tmp_path):
    """OpenCV gives 0 ms for the first frames of some files (here a 5000 fps MKV); those had been
    timed i / fps at a guessed rate (0.033, 0.067) before the file's own times (0.001): the JSON's
    times went back. They wait for the next known time and are spread up to it."""
    from facemark.video import open_source

    write_clip(tmp_path / "fast.mkv", [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(20)], fps=5000)
    src = open_source(str(tmp_path / "fast.mkv"))
    got = [(i, t) for i, t, _ in src]
    assert [i for i, _ in got] == list(range(20))
    times = [t for _, t in got]
    assert times[0] == 0.0 and all(b >= a for a, b in zip(times, times[1:])), times
    assert times[-1] < 0.01, times  # (the file's own clock: 20 frames in 4 ms)


def test_a_container_stating_a_rate_below_what_writers_take_is_not_believed(tmp_path):
    """A damaged AVI header stating 0.001 fps failed as "no encoder for mp4v": the writer refuses
    such a rate. It is not believed, as a rate over 1000 is not."""
    from facemark.video import frame_rate

    assert frame_rate(0.001, []) == 30.0 and frame_rate(0.005, [0.0, 40.0, 80.0, 120.0, 160.0, 200.0]) == 25.0
    assert frame_rate(0.5, []) == 0.5


def test_a_matroska_file_says_whether_it_has_audio(tiny_models, tmp_path, small_face):
    """Only MP4/MOV and AVI headers were read, so every MKV or WebM got "audio, if any, was not
    kept", sound or not. Its Tracks element says (a SeekHead's pointer to it is not it)."""
    from facemark.containers import has_audio

    write_clip(tmp_path / "v.mkv", [frame_with([(40, 90)], small_face)] * 3)
    assert has_audio(Path(tmp_path / "v.mkv")) is False
    r = run("video", tmp_path / "v.mkv", "--out", tmp_path / "o.mp4", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and "audio" not in r.stderr, r.stderr
    data = (tmp_path / "v.mkv").read_bytes()
    tracks = [k for k in range(len(data)) if data.startswith(b"\x16\x54\xae\x6b", k) and data[k - 3:k] != b"\x53\xab\x84"]
    video_type = data.index(b"\x83\x81\x01", tracks[0])  # (its one track's TrackType: video, 1)
    (tmp_path / "a.mkv").write_bytes(data[:video_type] + b"\x83\x81\x02" + data[video_type + 3:])
    assert has_audio(Path(tmp_path / "a.mkv")) is True


def test_a_folder_s_frames_play_in_number_order_whatever_their_case_and_lines_name_them(tiny_models, tmp_path, small_face):
    """IMG_4.JPG played before img_1.png (upper case sorts first), a hidden .x_0.png was frame 0,
    and a line said only its place in the list: which file it was of had to be worked out again."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("img_1.png", "img_2.png", "IMG_4.JPG", "img_10.png", ".hidden_0.png"):
        cv2.imwrite(str(frames / name), frame_with([(40, 90)], small_face))
    r = run("video", frames, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(ln) for ln in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [Path(ln["image"]).name for ln in lines] == ["img_1.png", "img_2.png", "IMG_4.JPG", "img_10.png"]
    assert [ln["frame"] for ln in lines] == [0, 1, 2, 3] and all(validate_frame(ln) == [] for ln in lines)
    assert validate_frame({**lines[0], "image": 3}) == ["image must be the frame's file name"]
    assert "note:" not in r.stderr
    (frames / "more").mkdir()  # (frames in a subfolder, and a clip beside the frames: skipped without a word)
    cv2.imwrite(str(frames / "more" / "img_3.png"), frame_with([(40, 90)], small_face))
    write_clip(frames / "take2.avi", [frame_with([(40, 90)], small_face)] * 2, fourcc="MJPG")
    r = run("video", frames, "--json", tmp_path / "o.jsonl", "--model", tiny_models["direct"])
    assert r.exit_code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 4, r.stderr
    assert "note: 1 subfolder(s) and 1 video file(s) in" in r.stderr and "are not frames and were left out" in r.stderr


@pytest.mark.parametrize("step, apart", [(100, 200), (90, 200), (100, 180)])
def test_two_faces_side_by_side_in_a_shaking_camera_keep_their_own_ids(small_face, step, apart):
    """Both faces jump a face width one way, then back, every frame. Nearest pairs first let a
    track whose motion-led box had run onto its neighbour take the neighbour's face: the ids
    swapped every frame (18 ids in 40 frames). The pairing now has the least distance in all."""
    from facemark import FaceLandmarker

    face = cv2.resize(small_face, (160, 190), interpolation=cv2.INTER_AREA)  # (a face about 100 px wide)
    bg = _noise_background(400, 800)
    tr = Tracker(FaceLandmarker(model="direct"), detect_every=10)
    seen: dict[int, set] = {}
    for i in range(40):
        dx = (step // 2 if i % 2 else -step // 2) if i > 5 else 0
        frame = bg.copy()
        for x in (250 + dx, 250 + apart + dx):
            frame[105:295, x - 80:x + 80] = face
        for t in tr.step(frame, i / 30.0):
            centre = (t.box[0] + t.box[2]) / 2
            seen.setdefault(t.id, set()).add(int(centre > 250 + apart / 2 + dx))  # (which of the two it is on)
    assert len(seen) == 2 and all(len(v) == 1 for v in seen.values()), seen


def test_pairing_never_chains_far_pairs_through_a_face_that_went():
    """Pairing as many tracks as could be paired chained far pairs: a newcomer took a face's id
    and that face a departed one's; a hidden track took a visible face's. A track going without a
    face costs more than a near pair, less than two far ones; equal distances go to the older track."""
    from facemark import FaceLandmarker

    def det(cx, s=100):
        return Detection(np.array([cx - s / 2, 250.0, cx + s / 2, 350.0]), 0.9, None, None)

    def box(cx, s=100):
        return np.array([cx - s / 2, 250.0, cx + s / 2, 350.0])

    tr = Tracker(FaceLandmarker(model="direct"))
    centre = lambda got: [None if d is None else round((d.box[0] + d.box[2]) / 2) for d in got]  # noqa: E731
    # A at 500 keeps its face at 502; B's face (590) went, and a newcomer is at 415: no one's.
    assert centre(tr._assign([(box(500),), (box(590),)], [det(502), det(415)])) == [502, None]
    # B hidden (its crop slid onto A's face), an untracked face beside: A keeps its own.
    assert centre(tr._assign([(box(500),), (box(450),)], [det(500), det(585)], handicap=[0.0, 0.3])) == [500, None]
    # A motion-led guess on the neighbour (a shaking camera turning back): each keeps its own face.
    assert centre(tr._assign([(box(300),), (box(450),)], [det(310), det(460)], led=[box(420), box(570)])) == [310, 460]
    assert centre(tr._assign([(box(500),), (box(500),)], [det(550)])) == [550, None]  # (a tie: the older)


@pytest.mark.parametrize("smooth", [True, False])
def test_a_face_in_a_shaking_camera_is_followed_as_a_detection_on_each_frame_places_it(small_face, smooth):
    """A hand-held camera shakes the face about 4 times a second, further each frame than its last
    motion says: its crop (from the last frame) was off, and the pose filter lagged half a frame.
    The points now stay as close to the face as a detection on each frame puts them."""
    from facemark import FaceLandmarker

    fl = FaceLandmarker(model="direct")
    tr = Tracker(fl, detect_every=100, smooth=smooth)  # (the first frame's detection only)
    errors = []
    for i in range(45):
        t = i / 30.0
        x = int(round(180 + 12 * np.sin(2 * np.pi * 4.3 * t)))
        y = int(round(110 + 6 * np.sin(2 * np.pi * 3.1 * t + 0.7)))
        frame = frame_with([(x, y)], small_face)
        (track,) = tr.step(frame, t)
        truth = fl.detect(frame)[0].landmarks
        if i >= 5:  # (the filter's start)
            errors.append(np.linalg.norm(track.smoothed - truth, axis=1).mean() / np.linalg.norm(truth[60] - truth[72]))
    assert np.mean(errors) < 0.015 and np.max(errors) < 0.04, (np.mean(errors), np.max(errors))


@pytest.mark.parametrize("option, target, stream, outcome", [
    ("--json", "/dev/fd/1", "stdout", "streamed"),
    ("--json", "/proc/self/fd/1", "stdout", "streamed"),
    ("--json", "link", "stdout", "streamed"),
    ("--json", "fds/1", "stdout", "streamed"),
    ("--json", "/dev/stderr", "stderr", "refused"),
    ("--json", "the same file", "stdout", "refused"),
    ("--out", "link", "stdout", "refused"),
    ("--out", "the same file", "stdout", "refused"),
])
def test_descriptor_names_are_streamed_into_or_refused_never_renamed_over(option, target, stream, outcome, tiny_models,
                                                                          tmp_path, small_face):
    """`video --json /dev/fd/1 >> log.txt` renamed the lines over log.txt (its earlier contents gone,
    exit 0), as did /proc/self/fd/1, /dev/stderr into a file, or a link to /dev/stdout, for --out too.
    Standard output's names are streamed into, as /dev/stdout was; the others are refused."""
    clip = tmp_path / "c.avi"
    write_clip(clip, [frame_with([(60, 80)], small_face)] * 3, fourcc="MJPG")
    log = tmp_path / ("log.jsonl" if option == "--json" else "log.mp4")
    log.write_text("earlier\n")
    name = {"link": str(tmp_path / ("to-std.jsonl" if option == "--json" else "to-std.mp4")), "the same file": str(log)}
    given = name.get(target, target)
    if target == "link":
        os.symlink("/dev/stdout", given)
    if target == "fds/1":  # (a link to the descriptors' folder)
        os.symlink("/proc/self/fd", tmp_path / "fds")
        given = str(tmp_path / "fds" / "1")
    other = ["--json", str(tmp_path / "o.jsonl")] if option == "--out" else []
    cmd = [sys.executable, "-m", "facemark", "video", str(clip), option, given, *other, "--model", str(tiny_models["direct"])]
    with open(log, "a") as f:
        r = subprocess.run(cmd, cwd=tmp_path, stdout=f if stream == "stdout" else subprocess.PIPE,
                           stderr=f if stream == "stderr" else subprocess.PIPE, text=True, timeout=120)
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier"  # (the file the stream goes to is written into, never replaced)
    if outcome == "streamed":
        assert r.returncode == 0, r.stderr
        assert len(lines) == 4 and all(json.loads(ln)["frame"] == i for i, ln in enumerate(lines[1:]))
    else:
        said = r.stderr if stream == "stdout" else "\n".join(lines[1:])  # (the error line goes where stderr goes)
        assert r.returncode == 2 and (lines == ["earlier"] or stream == "stderr")
        assert said.strip().count("\n") == 0 and f"error: {option} {given} is " in said and "give a file name" in said
        assert not (tmp_path / "o.jsonl").exists()


def test_video_out_dash_and_a_working_folder_gone_are_said_as_such(tiny_models, tmp_path, small_face):
    """--out - was called "an open descriptor"; with the working folder deleted under it, a relative
    --json was said as "cannot write to standard output"."""
    clip = tmp_path / "c.avi"
    write_clip(clip, [frame_with([(60, 80)], small_face)] * 3, fourcc="MJPG")
    cmd = [sys.executable, "-m", "facemark", "video", str(clip), "--model", str(tiny_models["direct"])]
    r = subprocess.run(cmd + ["--out", "-"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == ("error: --out -: the video is written to a file, not standard "
                                                      "output; give a file name (--json - streams the JSON lines)")
    gone = tmp_path / "gone"
    gone.mkdir()
    r = subprocess.run(cmd + ["--json", "o.jsonl"], cwd=gone, capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: os.rmdir(gone))
    assert r.returncode != 0 and "o.jsonl" in r.stderr and "standard output" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_turned_tracks_an_upside_down_face_as_the_upright_one(tmp_path, small_face):
    """A clip filmed upside down (no rotation saved): --turned gives each frame the upright clip's
    points, turned with it. Without it they were far off on every frame; a detection now looks
    again at a face it scores low and reads it upright, so most frames are right, but the
    tracker's window checks do not look turned, and a frame may miss the face: --turned is still
    the way for a turned clip."""
    frames = [frame_with([(150 + 3 * i, 110)], small_face) for i in range(12)]
    clips = {"up": frames, "down": [np.ascontiguousarray(f[::-1, ::-1]) for f in frames]}
    got = {}
    for name, extra in (("up", []), ("down", ["--turned"]), ("down_plain", [])):
        clip = tmp_path / f"{name}.avi"
        write_clip(clip, clips[name.split("_")[0]], fourcc="MJPG")
        r = run("video", clip, "--json", tmp_path / f"{name}.jsonl", "--model", "direct", "--detect-every", 4, *extra)
        assert r.exit_code == 0, r.stderr
        lines = [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert len(lines) == 12 and all(len(rec["faces"]) <= 1 for rec in lines)
        got[name] = [np.array(rec["faces"][0]["landmarks"]) if rec["faces"] else None for rec in lines]
    h, w = frames[0].shape[:2]
    want = [np.array([w - 1, h - 1]) - p for p in got["up"]]
    assert all(p is not None and np.linalg.norm(p - q, axis=1).mean() < 2.0 for p, q in zip(got["down"], want))
    plain = [np.linalg.norm(p - q, axis=1).mean() if p is not None else np.inf for p, q in zip(got["down_plain"], want)]
    assert np.median(plain) < 2.0 and np.isfinite(plain).sum() >= 8, plain


def test_a_sideways_clip_ends_with_a_note_naming_turned(tmp_path, small_face, monkeypatch):
    """`detect` ends with a note naming --turned where a face looks turned; `video` said nothing, and
    its points on a sideways recording were unreliable. (Such a face is now mostly found upright
    at its detections, and said only where it is not: here, as if that look had found nothing.)"""
    from facemark.landmarker import FaceLandmarker

    monkeypatch.setattr(FaceLandmarker, "_upright", lambda self, image, d, *more: d)
    frames = [frame_with([(150 + 3 * i, 110)], small_face) for i in range(6)]
    for name, clip_frames, says in (("up", frames, False), ("side", [np.ascontiguousarray(np.rot90(f)) for f in frames], True)):
        clip = tmp_path / f"{name}.avi"
        write_clip(clip, clip_frames, fourcc="MJPG")
        r = run("video", clip, "--json", tmp_path / f"{name}.jsonl", "--model", "direct", "--detect-every", 2)
        assert r.exit_code == 0 and ("--turned reads them" in r.stderr) == says, (name, r.stderr)


def test_a_clip_with_no_face_found_ends_with_a_note_naming_turned(tmp_path, small_face):
    """A recording whose rotation was lost can hold faces the upright search never finds; the run
    said nothing of why it found none. --turned is not named with --turned (--min-face 20 alone
    then), nor is anything said when a frame had a face."""
    for name, frames in (("wall", [np.full((240, 320, 3), 100 + i, np.uint8) for i in range(4)]),
                         ("face", [frame_with([(150 + 3 * i, 110)], small_face) for i in range(4)]),
                         ("strip", [np.full((32, 320, 3), 100 + i, np.uint8) for i in range(4)]),  # (small frames: --min-face)
                         ("sliver", [np.full((16, 320, 3), 100 + i, np.uint8) for i in range(4)])):  # (no face fits)
        clip = tmp_path / f"{name}.avi"
        write_clip(clip, frames, fourcc="MJPG")
        for extra, says in (((), name == "wall"), (("--turned",), False)):
            r = run("video", clip, "--json", tmp_path / f"{name}.jsonl", "--model", "direct", *extra)
            assert r.exit_code == 0, r.stderr
            assert ("no face was found in any frame" in r.stderr and "--turned" in r.stderr) == says, (name, extra, r.stderr)
            assert ("--min-face 20 looks at them" in r.stderr) == (name == "strip"), (name, extra, r.stderr)
            assert ("faces under about 40 px in the frames as searched" in r.stderr) == (name == "wall"), r.stderr
            # (16 px frames were told --min-face 20 would look closer: no face it finds fits in them)
            assert ("the frames are under 20 px on their short side" in r.stderr) == (name == "sliver"), r.stderr


def test_the_video_is_drawn_as_asked(tmp_path, small_face):
    """`detect --annotate` took --draw, --no-box and --no-score; `video --out` drew contours, boxes
    and track ids, no way else. Now --draw, --box/--no-box and --ids/--no-ids (its label is the
    track's id, not a score) set it; without --out they are said to do nothing."""
    from facemark.errors import UsageError
    from facemark.landmarker import FaceLandmarker
    from facemark.video import process_video

    fl = FaceLandmarker(model="direct")
    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(150 + 3 * i, 110)], small_face) for i in range(4)], fourcc="MJPG")

    def inks(*extra):
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}.avi"
        r = run("video", clip, "--out", out, "--model", "direct", *extra)
        assert r.exit_code == 0 and "note" not in r.stderr, r.stderr
        cap = cv2.VideoCapture(str(out))
        ok, frame = cap.read()
        cap.release()
        assert ok
        b, g, r_ = (frame[..., c].astype(int) for c in range(3))
        green = int(((g > 200) & (r_ < 60) & (b < 60)).sum())  # the box and its label
        lines = int(((b > 200) & (g > 150) & (g < 240) & (r_ < 60)).sum())  # the jaw contour's light blue
        return green, lines

    full, no_box, bare, points = inks(), inks("--no-box"), inks("--no-box", "--no-ids"), inks("--draw", "points")
    assert full[0] > 2 * no_box[0] and no_box[0] > 5 * bare[0] + 5, (full, no_box, bare)  # the box, then the id label, gone
    assert bare[1] > 0.8 * full[1] and points[1] < 0.7 * full[1], (full, bare, points)  # points: no lines
    r = run("video", clip, "--json", tmp_path / "a.jsonl", "--no-box", "--model", "direct")
    assert r.exit_code == 0 and "--draw, --no-box and --no-ids need --out" in r.stderr, r.stderr
    r = run("video", clip, "--out", tmp_path / "b.avi", "--draw", "dots", "--model", "direct")
    assert r.exit_code == 2 and "--draw must be one of contours, points, lines, not 'dots'" in r.stderr, r.stderr
    assert not (tmp_path / "b.avi").exists()
    r = run("video", clip, "--json", tmp_path / "b.jsonl", "--draw", "dots", "--model", "direct")  # (the error alone)
    assert r.exit_code == 2 and r.stderr == "error: --draw must be one of contours, points, lines, not 'dots'\n", r.stderr
    s = process_video(os.fsencode(clip), fl, json_path=os.fsencode(tmp_path / "bytes.jsonl"))  # (bytes paths, as detect's)
    assert s.frames == 4 and (tmp_path / "bytes.jsonl").is_file()
    with pytest.raises(UsageError, match="style must be one of"):
        process_video(clip, fl, tmp_path / "c.avi", style="dots")
    with pytest.raises(TypeError, match="show_ids must be True or False, not 'no'"):
        process_video(clip, fl, tmp_path / "c.avi", show_ids="no")
    assert not (tmp_path / "c.avi").exists()


def test_an_existing_file_that_is_not_such_an_output_is_not_replaced(tmp_path, small_face):
    """bench and eval refuse to write over a file that is not theirs; video replaced a notes file
    given as --json, or a photo given as --out, silently. Its own outputs are still replaced."""
    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3, fourcc="MJPG")
    notes, photo = tmp_path / "notes.jsonl", tmp_path / "photo.mp4"
    notes.write_text("precious\n")
    photo.write_bytes(cv2.imencode(".jpg", small_face)[1].tobytes())
    for args, said in ((["--json", notes], "--json"), (["--out", photo], "--out")):
        r = run("video", clip, *args, "--model", "direct")
        assert r.exit_code == 2 and f"{said} " in r.stderr and "not overwritten" in r.stderr, r.stderr
    assert notes.read_text() == "precious\n" and photo.read_bytes()[:2] == b"\xff\xd8"
    # A frame line first, the user's notes after: only the first line was looked at, and it went.
    r = run("video", clip, "--json", tmp_path / "own.jsonl", "--model", "direct")
    assert r.exit_code == 0, r.stderr
    kept = (tmp_path / "own.jsonl").read_text() + "my notes on this clip\n"
    notes.write_text(kept)
    r = run("video", clip, "--json", notes, "--model", "direct")
    assert r.exit_code == 2 and "not overwritten" in r.stderr and notes.read_text() == kept, r.stderr
    r = run("video", clip, "--json", tmp_path / "own.jsonl", "--model", "direct")  # (its own: replaced)
    assert r.exit_code == 0, r.stderr
    from facemark import video as V

    def unreadable(path, video):
        raise PermissionError(13, "Permission denied")

    real, V._replaceable = V._replaceable, unreadable  # (root reads any file: its refusal, simulated)
    try:
        r = run("video", clip, "--json", notes, "--model", "direct")
    finally:
        V._replaceable = real
    assert r.exit_code == 2 and "cannot be read (Permission denied); not overwritten" in r.stderr, r.stderr
    for _ in range(2):  # (a rerun replaces its own)
        r = run("video", clip, "--json", tmp_path / "o.jsonl", "--out", tmp_path / "o.mp4", "--model", "direct")
        assert r.exit_code == 0, r.stderr


def test_a_cut_is_marked_in_its_json_line(tmp_path, small_face):
    """Ids go on across a cut where a face is found where one was (an interview's two cameras),
    and nothing in the JSON said where the shots changed, so per-person results could not be split
    by shot afterwards (a video user). The frame that starts a new shot says ``"cut": true``."""
    from facemark import FaceLandmarker

    other = cv2.flip(small_face, 1)
    frames = [frame_with([(100, 100)], small_face) for _ in range(8)]
    for _ in range(6):
        frame = frame_with([(104, 100)], other)
        frame[frame == 100] = 200  # a new background: the whole picture changes at once
        frames.append(frame)
    clip = tmp_path / "cut.avi"
    write_avi(clip, frames, fps=25)
    process_video(str(clip), FaceLandmarker(model="direct"), json_path=tmp_path / "o.jsonl", log=lambda m: None)
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(lines) == 14 and [r["frame"] for r in lines if r.get("cut")] == [8]
    assert all(validate_frame(r) == [] for r in lines) and "cut" not in lines[0]
    assert validate_frame({**lines[8], "cut": False}) == ["cut is true where it is given (a frame that starts a new shot)"]


def test_the_frame_loop_the_readme_shows_follows_one_face(face_image):
    """README, Python API, "Frames of your own": Tracker.step and tracked_faces, one id, 98 points."""
    from facemark import FaceLandmarker
    from facemark.track import Tracker
    from facemark.video import tracked_faces

    from facemark import draw

    tracker = Tracker(FaceLandmarker(model="direct"))
    seen = []
    for i in range(4):
        tracks = tracker.step(face_image, i / 30)
        faces = tracked_faces(tracks, tracker)
        assert len(tracks) == len(faces) == 1 and faces[0].landmarks.shape == (98, 2)
        seen.append(tracks[0].id)
    assert len(set(seen)) == 1 and tracker.turned_frames == 0
    labelled = draw(face_image, faces, ids=[tr.id for tr in tracks])
    assert labelled.shape == face_image.shape and (labelled != draw(face_image, faces)).any()  # (the #0 label)


def test_the_frame_loop_reads_frames_as_detect_does_and_checks_its_options(face_image):
    """Tracker.step took any array as it came: a grey frame was warped into a three-channel buffer
    (points read from memory never written: different on every run), a 16-bit one gave six faces,
    BGRA an IndexError; NaN times and detect_every=0 were taken too."""
    from facemark import FaceLandmarker
    from facemark.track import Tracker
    from facemark.video import tracked_faces

    fl = FaceLandmarker(model="direct")
    grey = cv2.cvtColor(face_image, cv2.COLOR_BGR2GRAY)
    runs = {}
    for name, frame in (("bgr", cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)), ("grey", grey), ("grey again", grey),
                        ("16-bit", cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR).astype(np.uint16) * 257),
                        ("bgra", cv2.cvtColor(grey, cv2.COLOR_GRAY2BGRA))):
        tracker = Tracker(fl)
        runs[name] = [f.landmarks for f in tracked_faces(tracker.step(frame, 0.0), tracker)]
    for name, faces in runs.items():
        assert len(faces) == 1 and np.abs(faces[0] - runs["bgr"][0]).max() < 1e-3, name
    with pytest.raises(TypeError, match="image must be"):
        Tracker(fl).step(face_image.astype(np.float32), 0.0)
    with pytest.raises(ValueError, match="t must be the frame's time in seconds"):
        Tracker(fl).step(face_image, float("nan"))
    for kw in ({"detect_every": 0}, {"max_faces": -1}, {"beta": float("nan")}, {"min_cutoff": 0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            Tracker(fl, **kw)
    with pytest.raises(TypeError, match="landmarker must be a FaceLandmarker"):
        Tracker(None)


def test_the_video_api_warns_of_faces_that_looked_turned(tiny_models, tmp_path, small_face, monkeypatch):
    """The command line ends with a note; process_video said nothing (only the summary's count)."""
    import warnings

    from facemark import FaceLandmarker, track
    from facemark.errors import FacemarkWarning
    from facemark.video import process_video

    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3, fourcc="MJPG")
    fl = FaceLandmarker(model=str(tiny_models["direct"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert process_video(clip, fl, json_path=tmp_path / "a.jsonl", log=lambda m: None).turned_frames == 0
    monkeypatch.setattr(track, "looks_turned", lambda fl, found: bool(found))  # (every face found looks turned)
    with pytest.warns(FacemarkWarning, match="turned sideways or upside down") as said:
        s = process_video(clip, fl, json_path=tmp_path / "b.jsonl", log=lambda m: None)
    assert s.turned_frames > 0 and said[0].filename == __file__ and str(s.turned_frames) in said[0].message.detail


def test_a_track_whose_crop_the_detection_disowns_is_not_frozen(face_image):
    """A detection that put this frame's crop off the face, but last frame's points on it, left
    the track at last frame's points: a sideways face moving 2 px a frame stood still for frames
    (a helper's clip, where a window check had lost it). It is re-seeded from the detection."""
    from facemark import FaceLandmarker
    from facemark.track import Tracker

    tracker = Tracker(FaceLandmarker(model="direct"), smooth=False)
    frame = cv2.copyMakeBorder(face_image, 0, 0, 0, 40, cv2.BORDER_REPLICATE)
    (tr,) = tracker.step(frame, 0.0)
    before = tr.landmarks.copy()
    shown = tracker._off_track

    def crop_disowned(track, det_box, box):  # (off from this frame's crop, on last frame's points)
        return track.pending is not None and box is track.pending[0] or shown(track, det_box, box)

    tracker._off_track = crop_disowned
    tr.pending = (tr.box + [3.0, 0, 3.0, 0], tr.landmarks + [3.0, 0], False)  # (this frame's crop, as followed)
    tracker._detect(np.ascontiguousarray(np.roll(frame, 3, axis=1)))
    moved = (tr.landmarks - before).mean(0)
    assert 1.5 < moved[0] < 4.5 and abs(moved[1]) < 1.5, moved


def test_a_detection_that_looks_turned_does_not_reseed_a_followed_face_it_agrees_with(face_image):
    """A face rolled past 90° is found with keypoints the crop cannot trust (not on its features,
    and no upright turn of it found): re-seeded from them, single frames of a helper's clips (a
    face rolled 135°) came out at 66-71 % NME. Where the detection still puts the face near the
    followed crop, the crop's points stand; a face width away, the crop has left the face and the
    detection re-seeds it. Both where a window check missed the face (a full detection decides)
    and where a window check found it."""
    from dataclasses import replace

    from facemark import FaceLandmarker
    from facemark.track import Tracker

    fl = FaceLandmarker(model="direct")
    real = fl.find_faces

    def turned_kps(image, as_is=False, **kw):  # (the same faces, keypoints upside down about their centre)
        return [replace(d, kps=2 * d.kps.mean(0) - d.kps) for d in real(image, as_is, **kw)]

    for shift, stands in ((3.0, True), (120.0, False)):
        tracker = Tracker(fl, smooth=False)
        (tr,) = tracker.step(face_image, 0.0)
        followed = (tr.box + [shift, 0, shift, 0], tr.landmarks + [shift, 0], True)  # (a missed window check's)
        fl.find_faces = turned_kps
        try:
            tracker._off_track = lambda track, det_box, box: True  # (the detection disowns the crop)
            tr.pending = followed
            tracker._detect(face_image)
        finally:
            fl.find_faces = real
        assert np.array_equal(tr.landmarks, followed[1]) is stands, shift
    # The window check's own decision: a turned face found near the followed crop confirms it.
    tracker = Tracker(fl, smooth=False, detect_every=100)
    (tr,) = tracker.step(face_image, 0.0)
    tracker._look_all = lambda image, tracks: turned_kps(image)
    tracker._off_track = lambda track, det_box, box: True
    reseeded = []
    tracker._reseed = lambda image, pairs: reseeded.extend(pairs)
    tracker.step(face_image, 1 / 30)
    assert not reseeded and tr.seen_box is not None




def test_json_lines_whose_reader_leaves_while_the_video_is_written_are_said_to_stop(tiny_models, tmp_path, small_face):
    """`facemark video clip --out o.mp4 --json - | head -3`: the video is finished, and the note
    says the lines stopped (the run ended with a count as if the lines were whole)."""
    clip = tmp_path / "in.avi"
    write_clip(clip, [frame_with([(40, 90)], small_face)] * 3, fourcc="MJPG")
    r, w = os.pipe()
    os.close(r)  # the reader left before the first line
    p = subprocess.run([sys.executable, "-m", "facemark", "video", str(clip), "--out", str(tmp_path / "o.mp4"),
                        "--json", "-", "--model", str(tiny_models["direct"])], stdout=w, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    os.close(w)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "nothing read the JSON lines after frame 0" in p.stderr and "3 frames" in p.stderr, p.stderr
    assert cv2.VideoCapture(str(tmp_path / "o.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 3


def test_a_face_its_window_does_not_show_is_still_followed_in_a_video(face_image):
    """Photos drop a face seen big that no turn of a window around it shows (a false face,
    ``FaceLandmarker._relook_tells``); in a video the tracker weighs each detection against the
    frames before, and a real face partly covered, dropped so, was gone from that frame."""
    from dataclasses import replace

    from facemark import FaceLandmarker
    from facemark.detector import RetinaFace

    class Covered(RetinaFace):  # scored under 0.999 in the frame, unseen in any window
        def detect(self, image):
            return [replace(d, score=0.95) for d in super().detect(image)]

        def detect_as_is(self, image, threshold=None):
            return []

    frame = cv2.resize(face_image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)  # (its face seen 150 px)
    fl = FaceLandmarker(model="direct", detector=Covered())
    assert fl.detect(frame) == []  # (a photo: dropped)
    tr = Tracker(fl, detect_every=1)
    assert all(len(tr.step(frame, i / 25.0)) == 1 for i in range(5))

"""FaceLandmarker mechanics: batching, mapping back through the exact inverse, input kinds."""
import warnings

import cv2
import numpy as np
import pytest

from facemark import align
from facemark.detector import Detection, RetinaFace
from facemark.errors import FacemarkWarning
from facemark.landmarker import FaceLandmarker, _seen_small
from tests.helpers import landmarker_with
from facemark.layouts import five_points


class FixedModel:
    """A stand-in model that always 'finds' the same canonical points: isolates the geometry."""

    family, size, name = "fixed", 48, "fixed"
    config = {"num_points": 98}

    def __init__(self):
        self.u = np.random.default_rng(0).uniform(0.2, 0.8, (98, 2))
        self.calls = []

    def __call__(self, crops):
        self.calls.append(len(crops))
        return np.repeat(self.u[None], len(crops), 0)


def test_points_follow_a_moved_face_exactly():
    fl = landmarker_with(FixedModel())
    kps = np.array([[100.0, 100], [140, 101], [121, 125], [104, 145], [137, 146]])
    image = np.zeros((300, 300, 3), np.uint8)
    a = np.deg2rad(25)
    move = np.array([[1.3 * np.cos(a), -1.3 * np.sin(a), 40.5], [1.3 * np.sin(a), 1.3 * np.cos(a), -12.25]])
    f0 = fl.landmarks_for([image], [[Detection(np.array([90, 80, 150, 160.0]), 0.9, kps)]])[0][0]
    f1 = fl.landmarks_for([image], [[Detection(np.array([0, 0, 1, 1.0]), 0.9, align.apply(move, kps))]])[0][0]
    assert np.abs(align.apply(move, f0.landmarks) - f1.landmarks).max() < 0.05
    assert f0.landmarks68.shape == (68, 2)


class DotModel:
    """Reads one bright dot: every point at the dot's centre in the crop (intensity-weighted, pixel
    centres at integers, so canonical u = (x + 0.5) / size): isolates the pixel conventions."""

    family, size, name = "dot", 64, "dot"
    config = {"num_points": 98}

    def __call__(self, crops):
        out = []
        for c in crops:
            w = c[..., 0].astype(np.float64)
            w = np.where(w > 20, w, 0)
            ys, xs = np.mgrid[: c.shape[0], : c.shape[1]]
            centre = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
            out.append(np.repeat(((centre + 0.5) / self.size)[None], 98, 0))
        return np.array(out)


@pytest.mark.parametrize("scale, angle", [(1.0, 0.0), (0.6, 20.0), (2.5, -35.0)])
def test_a_point_comes_back_where_it_is_in_the_image(scale, angle):
    """Absolute coordinates, not only relative ones: a dot at a known sub-pixel spot of the image is
    reported there, through any crop (half a crop pixel off would be 0.2-0.8 px here)."""
    fl = landmarker_with(DotModel())
    image = np.zeros((400, 400, 3), np.uint8)
    spot = np.array([181.3, 167.6])
    ys, xs = np.mgrid[:400, :400]
    image[..., 0] = np.round(255 * np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * (3.0 * scale) ** 2)))
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    kps = (np.array([[-16.0, -14], [16, -14], [0, 2], [-13, 16], [13, 16]]) * scale) @ rot.T + spot
    side = 60 * scale
    det = Detection(np.array([*(spot - side / 2), *(spot + side / 2)]), 0.9, kps)
    (face,) = fl.landmarks_for([image], [[det]])[0]
    assert np.abs(face.landmarks - spot).max() < 0.08, face.landmarks[0]


def test_faces_are_batched_across_images():
    model = FixedModel()
    fl = landmarker_with(model)
    image = np.zeros((200, 200, 3), np.uint8)
    kps = np.array([[80.0, 80], [120, 80], [100, 100], [85, 120], [115, 120]])
    dets = [[Detection(np.array([60, 50, 140, 150.0]), 0.9, kps)] * 3, [], [Detection(np.array([60, 50, 140, 150.0]), 0.8, kps)] * 2]
    out = fl.landmarks_for([image] * 3, dets)
    assert [len(o) for o in out] == [3, 0, 2]
    assert model.calls == [4, 1]  # five faces in batches of four
    assert out[2][1].score == pytest.approx(0.8)


def test_box_only_detections_use_the_box_template():
    fl = landmarker_with(FixedModel())
    image = np.zeros((200, 200, 3), np.uint8)
    f = fl.landmarks(image, [[50, 40, 150, 160]])[0]
    assert f.landmarks.shape == (98, 2) and f.score == 1.0
    # The points land inside the box's neighbourhood.
    assert (f.landmarks[:, 0] > 20).all() and (f.landmarks[:, 0] < 180).all()


def test_a_given_box_matches_the_same_face_in_another_convention_only():
    from facemark.detector import best_match

    given = np.array([100, 100, 200, 200.0])
    assert best_match([], given) is None
    assert best_match([np.array([300, 100, 400, 200.0])], given) is None  # a face beside it
    assert best_match([np.array([140, 140, 160, 160.0])], given) is None  # a speck inside it: another face
    assert best_match([np.array([0, 0, 600, 600.0])], given) is None  # a box far bigger than the face
    tight, loose = np.array([115, 125, 185, 200.0]), np.array([80, 70, 220, 215.0])
    assert best_match([tight], given) == 0 and best_match([loose], given) == 0
    assert best_match([np.array([300, 100, 400, 200.0]), tight, np.array([98, 102, 199, 203.0])], given) == 2  # the closest


def test_refine_keeps_the_crop_where_the_points_collapsed_to_one_spot(tiny_models, face_image):
    """The untrained direct model puts all points at one spot: no crop can be read from them, so
    refining keeps the detector's crop (and gives what no refining gives) instead of failing."""
    once = FaceLandmarker(model=str(tiny_models["direct"]), refine=0).detect(face_image)
    again = FaceLandmarker(model=str(tiny_models["direct"]), refine=1).detect(face_image)
    assert len(once) == 1 and np.ptp(once[0].landmarks, 0).max() < 1e-3  # (collapsed, as said)
    assert np.allclose(again[0].landmarks, once[0].landmarks, atol=1e-6)


def test_refine_runs_the_model_again_on_the_crop_its_points_give():
    from facemark.landmarker import track_matrix

    model = FixedModel()
    fl = landmarker_with(model)
    fl.refine = 1
    kps = np.array([[100.0, 100], [140, 101], [121, 125], [104, 145], [137, 146]])
    image = np.zeros((300, 300, 3), np.uint8)
    (face,) = fl.landmarks_for([image], [[Detection(np.array([90, 80, 150, 160.0]), 0.9, kps)]])[0]
    assert model.calls == [1, 1]  # the detector's crop, then the points' own
    first = landmarker_with(FixedModel()).landmarks_for([image], [[Detection(np.array([90, 80, 150, 160.0]), 0.9, kps)]])[0][0]
    again = align.apply(align.invert(track_matrix(first.landmarks, model.size)), model.u * model.size - 0.5)
    assert np.abs(face.landmarks - again).max() < 1e-9
    assert np.abs(face.landmarks - first.landmarks).max() > 0.5  # a different crop, so other points


def test_detector_finds_a_40px_face_in_vga(face_image):
    # Shrink the example face to ~40 px and place it in a 640x480 frame.
    det = RetinaFace()
    big = det.detect(face_image)[0]
    x1, y1, x2, y2 = big.box.astype(int)
    pad = (x2 - x1) // 3
    face = face_image[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad]
    s = 40.0 / (x2 - x1)
    small = cv2.resize(face, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[300 : 300 + small.shape[0], 400 : 400 + small.shape[1]] = small
    found = det.detect(frame)
    assert len(found) >= 1
    b = found[0].box
    assert 390 < b[0] < 460 and 290 < b[1] < 360 and 25 < b[2] - b[0] < 60


def test_detector_bounds_work_on_huge_photos():
    det = RetinaFace()
    assert det.scale_for(6000, 8000) * 8000 <= 640  # an 8000x6000 photo runs at 640 px
    assert det.scale_for(480, 640) == 1.0  # a VGA frame runs at full resolution
    det_small = RetinaFace(min_face=40)
    assert det_small.scale_for(6000, 8000) * 40 >= RetinaFace.NET_MIN_FACE  # asked-for faces stay findable


def _box_iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_big_faces_come_from_a_coarser_pass_than_small_ones():
    """A pass keeps faces of up to OWN_MAX network px; when it saw a bigger box, a coarser pass
    (that sees the biggest at half OWN_MAX, at most STEP times coarser) owns the big ones (the
    network fires on big smooth regions at fine scales)."""
    det = RetinaFace(min_face=40)
    image = np.zeros((2000, 2000, 3), np.uint8)
    small = Detection(np.array([100.0, 100, 200, 200]), 0.9, np.zeros((5, 2)))
    false_big = Detection(np.array([900.0, 900, 1400, 1400]), 0.8, np.zeros((5, 2)))
    true_big = Detection(np.array([300.0, 1200, 800, 1700]), 0.95, np.zeros((5, 2)))
    calls = []

    def fake(im, scale):
        calls.append(scale)
        if scale == 1.0:
            return [small, false_big]
        return [small, true_big]  # coarse: the small one again too

    det._detect_at = fake
    found = det.detect(image)
    assert calls == [1.0, pytest.approx(160 / 500)]  # the 500 px box is seen at 160 px there
    assert sorted(d.score for d in found) == [0.9, 0.95]  # the false big box is gone; the small face once
    calls.clear()
    det._detect_at = lambda im, scale: (calls.append(scale), [small])[1]
    assert det.detect(image) == [small] and calls == [1.0]  # no big box: one pass


def test_a_face_just_over_the_limit_is_found_again_by_the_coarser_pass():
    """Found on 90-degree-turned 300-W photos (15 of 200 lost): a sideways face measured at 355 px
    went to a pass 4x coarser, where at 89 px it was not found again. The coarser pass now sees it
    at half the limit."""
    det = RetinaFace()
    image = np.zeros((448, 448, 3), np.uint8)
    face = Detection(np.array([-3.0, 112, 352, 318]), 0.99, np.zeros((5, 2)))

    def fake(im, scale):  # the network finds this face only at 120 px and more
        return [face] if _side_at(face, scale) >= 120 else []

    det._detect_at = fake
    assert len(det.detect(image)) == 1


def _side_at(d, scale):
    return max(d.box[2] - d.box[0], d.box[3] - d.box[1]) * scale


def test_a_face_at_the_handover_size_and_a_small_face_beside_a_big_one_stay():
    """Found by a regression hunt: the fine pass measured a face at 322 px (a coarse pass's), the
    coarse pass at 310 (a fine pass's), and neither kept it; a small face 70 % inside a big
    face's box was taken for a part of it."""
    det = RetinaFace()
    image = np.zeros((480, 640, 3), np.uint8)
    kps = np.zeros((5, 2))
    fine = Detection(np.array([200.0, 40, 441, 362.6]), 0.99, kps)
    coarse = Detection(np.array([205.0, 45, 436, 355.4]), 0.98, kps)
    det._detect_at = lambda im, scale: [fine] if scale == 1.0 else [coarse]
    assert len(det.detect(image)) == 1
    small = Detection(np.array([456.2, 281.2, 510.5, 346.1]), 0.999, kps)
    big = Detection(np.array([164.6, -11.7, 494.9, 411.7]), 0.99, kps)
    det._detect_at = lambda im, scale: [small, big] if scale == 1.0 else [big]
    assert len(det.detect(image)) == 2


def test_an_upscaled_photo_searched_for_small_faces_finds_its_one_face(face_image):
    """A 6x upscaled photo searched at full size (--min-face 40) found its face and four big false
    ones before the coarse pass owned big faces."""
    ref = RetinaFace().detect(face_image)
    big = cv2.resize(face_image, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)
    found = RetinaFace(min_face=40).detect(big)
    assert len(ref) == 1 and len(found) == 1
    assert _box_iou(found[0].box, ref[0].box * 6) > 0.8


def test_tiles_of_a_huge_input_find_small_and_big_faces_once(face_image):
    """Past MAX_INPUT_PIXELS the search is tiled: small faces from overlapping tiles (one of them
    across a tile edge), big ones from the coarser pass; each face once."""
    det = RetinaFace(min_face=40)
    det.MAX_INPUT_PIXELS, det.TILE = 700 * 700, 512  # (the same code path as a 10,000 px photo, smaller)
    canvas = np.full((1400, 1400, 3), 110, np.uint8)
    face = face_image[40:200, 150:300]  # about 100 px face
    spots = [(60, 60), (440, 430), (900, 1100)]  # (x, y): the second straddles the first tile edge
    for x, y in spots:
        canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    huge = cv2.resize(face_image, None, fx=3.5, fy=3.5)  # a face of ~400 px: more than a tile owns
    canvas[800:1350, 0:500] = huge[150:700, 550:1050]
    found = det.detect(canvas)
    centres = np.array([[(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2] for d in found])
    for x, y in spots:
        near = np.linalg.norm(centres - [x + 75, y + 80], axis=1) < 60
        assert near.sum() == 1, (x, y, centres)
    assert sum(1 for d in found if d.box[3] - d.box[1] > 320) == 1  # (the big face, whole)
    assert len(found) == 4


def test_detector_keypoints_match_labels(face_image):
    d = RetinaFace().detect(face_image)[0]
    assert d.kps.shape == (5, 2)
    assert d.kps[0, 0] < d.kps[1, 0] and d.kps[2, 1] < d.kps[3, 1]
    assert (d.kps[:, 0] > d.box[0]).all() and (d.kps[:, 0] < d.box[2]).all()


def test_inputs_of_many_kinds_give_the_same_face(tiny_models, face_image, tmp_path):
    fl = FaceLandmarker(model=str(tiny_models["direct"]))
    ref = fl.detect(face_image)[0].box
    grey = cv2.cvtColor(face_image, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(face_image, cv2.COLOR_BGR2BGRA)
    deep = face_image.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    cv2.imwrite(str(tmp_path / "t.tiff"), face_image)
    cv2.imwrite(str(tmp_path / "w.webp"), face_image, [cv2.IMWRITE_WEBP_QUALITY, 101])
    cv2.imwrite(str(tmp_path / "b.bmp"), face_image)
    cv2.imwrite(str(tmp_path / "p.ppm"), face_image)
    cv2.imwrite(str(tmp_path / "q.pgm"), grey)
    files = ("g.png", "a.png", "d.png", "t.tiff", "w.webp", "b.bmp", "p.ppm", "q.pgm")
    for src in [grey, bgra, deep, *(tmp_path / n for n in files)]:
        faces = fl.detect(src)
        assert len(faces) == 1, src if not isinstance(src, np.ndarray) else src.shape
        assert np.abs(faces[0].box - ref).max() < 8


def test_a_uint16_image_holding_8_to_12_bit_values_is_warned_about(tiny_models, face_image):
    """uint16 spans 0..65535, so 8-bit values cast up read as nearly black and no face is found:
    the caller is told why instead of getting an empty list and no hint."""
    fl = FaceLandmarker(model=str(tiny_models["direct"]))
    with pytest.warns(FacemarkWarning, match=r"astype\(np.uint8\)") as said:  # (one category for the API's notes)
        fl.detect(face_image.astype(np.uint16))
    assert said[0].filename == __file__  # pointed at the caller's line, not facemark's
    bgra = cv2.cvtColor(face_image, cv2.COLOR_BGR2BGRA).astype(np.uint16)
    bgra[..., 3] = 65535  # an opaque alpha does not hide 8-bit colour values
    with pytest.warns(FacemarkWarning, match="no value is over 255") as said:
        fl.detect_batch([bgra])
    assert said[0].filename == __file__
    with pytest.warns(UserWarning, match=r"no value is over 1023.*10-bit values, pass \(image >> 2\)"):
        fl.detect(face_image.astype(np.uint16) << 2)  # a 10-bit camera's frame: said too (a file of it is read as such)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(fl.detect(face_image.astype(np.uint16) * 257)) == 1  # real 16-bit values: no warning


def test_exif_orientation_is_honoured(tiny_models, face_image, tmp_path):
    """Coordinates refer to the image as displayed: a JPEG stored sideways with EXIF orientation 6
    gives the same face as the upright image."""
    from tests.helpers import jpeg_with_orientation

    sideways = cv2.rotate(face_image, cv2.ROTATE_90_COUNTERCLOCKWISE)  # stored pixels
    path = tmp_path / "rot.jpg"
    path.write_bytes(jpeg_with_orientation(sideways, 6))  # display: rotate 90 CW -> upright
    fl = FaceLandmarker(model=str(tiny_models["direct"]))
    faces = fl.detect(path)
    ref = fl.detect(face_image)[0]
    assert len(faces) == 1
    assert np.abs(faces[0].box - ref.box).max() < 8


def test_five_points_drive_tracking_alignment():
    from facemark.landmarker import track_matrix

    mean = np.asarray(__import__("json").loads((__import__("pathlib").Path(align.__file__).parent / "calibration.json").read_text())["mean98"])
    pts = mean * 200 + 30  # a face of 200 px at offset 30
    m = track_matrix(pts, 128)
    back = align.apply(m, five_points(pts))
    assert np.abs(back / 128 - align.TEMPLATES["landmarks98"]).max() < 0.02


def test_flip_averaging_is_exact_for_a_mirror_symmetric_model():
    """A model that reports the mirror image of what it reported unflipped must give the same
    points with and without --flip (so flipping and un-flipping are exact inverses)."""
    from facemark.layouts import FLIP98

    class Symmetric(FixedModel):
        def __call__(self, crops):
            u = np.repeat(self.u[None], len(crops), 0)
            if getattr(self, "mirrored_next", False):
                u = u[:, FLIP98]
                u[..., 0] = 1 - u[..., 0]
            self.mirrored_next = not getattr(self, "mirrored_next", False)
            return u

    image = np.zeros((200, 200, 3), np.uint8)
    kps = np.array([[80.0, 80], [120, 80], [100, 100], [85, 120], [115, 120]])
    det = [[Detection(np.array([60, 50, 140, 150.0]), 0.9, kps)]]
    plain = landmarker_with(FixedModel()).landmarks_for([image], det)[0][0].landmarks
    fl = landmarker_with(Symmetric())
    fl.flip = True
    flipped = fl.landmarks_for([image], det)[0][0].landmarks
    assert np.abs(plain - flipped).max() < 1e-9


def test_one_landmarker_shared_by_threads_gives_what_it_gives_alone(face_image):
    """Threads may share a FaceLandmarker: the detector's input buffer was one per image size,
    so threads detecting same-sized images overwrote each other's input and got wrong faces."""
    from concurrent.futures import ThreadPoolExecutor

    fl = FaceLandmarker(model="direct", threads=1)
    h, w = face_image.shape[:2]
    images = []
    for k in range(8):  # one size, different faces: shifted, mirrored, shrunk onto a grey canvas
        canvas = np.full((h, w, 3), 40 + 20 * k, np.uint8)
        side = w - 40 * k
        small = cv2.resize(face_image[:, ::-1] if k % 2 else face_image, (side, side))
        canvas[20 * k:20 * k + side, 30 * k // 2:30 * k // 2 + side] = small
        images.append(canvas)
    alone = [fl.detect(im) for im in images]
    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(fl.detect, images * 3))
        for want, got in zip(alone * 3, together):
            assert len(got) == len(want)
            for a, b in zip(want, got):
                assert np.allclose(a.box, b.box) and np.allclose(a.landmarks, b.landmarks)


def test_the_detector_keeps_a_bounded_few_input_buffers_per_thread():
    """Photos of many sizes: the per-thread input buffers kept for reuse stay within
    ``KEPT_BYTES`` (four sizes near the 4096² limit were 0.8 GB a thread), the newest kept."""
    from facemark.detector import RetinaFace

    d = RetinaFace()
    for side in (4096, 4000, 3900, 3800, 640):
        assert d._blob(side, side).shape == (1, 3, side, side)
    kept = d._local.bufs
    assert sum(b.nbytes for b in kept.values()) <= RetinaFace.KEPT_BYTES and (640, 640) in kept
    assert len(kept) >= 2  # (not one at a time: small ones beside a big one are still reused)


class Counting:
    """A model that counts the crops it reads."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, crops):
        self.calls.append(len(crops))
        return self.model(crops)


@pytest.mark.parametrize("model", ["direct", "hybrid", "hourglass"])
def test_a_face_seen_small_and_off_its_crop_is_read_again_through_the_crop_its_points_give(model, face_image):
    """Rough detector keypoints (a face small at the detector's input) put the crop off the face;
    the model's points then place it better, and the face is read again there: the points come
    out as from a well-placed crop, where reading the first crop alone is several times further off.
    A face the detector saw large is read once, as its keypoints are good."""
    from dataclasses import replace

    from facemark.landmarker import SMALL_AT_INPUT, crop_matrix

    fl = FaceLandmarker(model=model)
    (d,) = fl.detector.detect(face_image)
    counted = Counting(fl.model)
    fl.model = counted
    good = fl.landmarks_for([face_image], [[d]])[0][0].landmarks
    assert counted.calls == [1]  # a well-placed crop is read once
    iod = np.linalg.norm(good[60] - good[72])
    side = d.box[2] - d.box[0]
    for shift in ([0.12, 0], [0, -0.12], [0.08, 0.08]):
        step = np.array(shift) * side
        off = Detection(d.box + np.tile(step, 2), d.score, d.kps + step, seen_at=d.seen_at)
        counted.calls.clear()
        assert np.array_equal(fl.landmarks_for([face_image], [[off]])[0][0].landmarks,
                              fl.predict_crops([face_image], [crop_matrix(off, fl.model.size)])[0])
        assert counted.calls == [1, 1]  # seen large: read once (the second call is the check's)
        counted.calls.clear()
        small = replace(off, seen_at=0.9 * SMALL_AT_INPUT / side)
        settled = fl.landmarks_for([face_image], [[small]])[0][0].landmarks
        assert len(counted.calls) >= 2
        first = fl.predict_crops([face_image], [crop_matrix(off, fl.model.size)])[0]
        error, before = (np.linalg.norm(p - good, axis=1).mean() / iod for p in (settled, first))
        assert error < 0.015 and before > 2 * error, (shift, error, before)


def test_a_detection_says_at_what_scale_the_detector_saw_it(face_image):
    """``seen_at`` (network px per image px) decides whether a face's keypoints are rough."""
    det = RetinaFace()
    (d,) = det.detect(face_image)
    assert d.seen_at == pytest.approx(1.0)  # a small photo runs at its own size
    canvas = np.full((3000, 4000, 3), 120, np.uint8)
    canvas[1000:1000 + face_image.shape[0], 1500:1500 + face_image.shape[1]] = face_image
    (big,) = det.detect(canvas)
    assert big.seen_at == pytest.approx(det.scale_for(3000, 4000), rel=0.01) and big.seen_at < 0.5


def test_detections_given_back_as_boxes_read_as_detect_reads_them(face_image):
    """fl.landmarks(image, fl.detector.detect(image)) dropped the scale the detector saw each face
    at, so a face small at its input was not read again as detect() reads it."""
    from dataclasses import replace

    fl = FaceLandmarker(model="direct")
    canvas = np.full((3000, 4000, 3), 120, np.uint8)
    canvas[1200:1200 + face_image.shape[0], 1700:1700 + face_image.shape[1]] = face_image  # (seen at 14 px)
    dets = fl.detector.detect(canvas)
    assert dets and dets[0].seen_at is not None and float(dets[0].box[2] - dets[0].box[0]) * dets[0].seen_at < 32
    found = fl.detect(canvas)[0].landmarks
    assert np.array_equal(fl.landmarks(canvas, dets)[0].landmarks, found)
    assert not np.array_equal(fl.landmarks(canvas, [replace(dets[0], seen_at=None)])[0].landmarks, found)


def _turned_view(image: np.ndarray, turns: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.rot90(image, turns)`` and ``points`` of ``image`` where they are in it."""
    h, w = image.shape[:2]
    p = points.astype(np.float64)
    for _ in range(turns % 4):  # one counter-clockwise quarter: (x, y) -> (y, w - 1 - x)
        p = np.stack([p[:, 1], w - 1 - p[:, 0]], 1)
        h, w = w, h
    return np.ascontiguousarray(np.rot90(image, turns)), p


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_turned_finds_a_sideways_or_upside_down_face_as_if_it_were_upright(face_image, turns):
    """A photo turned by quarter-turns (no EXIF to say so): ``turned=True`` gives the upright
    photo's points where they went. Upside down, the plain search gave points far off (the face
    found, but cropped as if upright); it now looks again at a face it scores low and reads it
    from its upright turn too (``FaceLandmarker._upright``; the model card's Limitations)."""
    upright = FaceLandmarker(model="direct").detect(face_image)[0]
    view, want = _turned_view(face_image, turns, upright.landmarks)
    side = float(np.ptp(upright.landmarks[:, 0]))  # (the face's width: errors as a share of it)
    plain = FaceLandmarker(model="direct").detect(view)
    turned = FaceLandmarker(model="direct", turned=True).detect(view)
    assert len(turned) == 1
    assert np.linalg.norm(turned[0].landmarks - want, axis=1).mean() < 0.03 * side
    if turns == 2:
        assert len(plain) == 1 and np.linalg.norm(plain[0].landmarks - want, axis=1).mean() < 0.03 * side


@pytest.mark.parametrize("turns", [1, 3])
def test_a_small_face_found_sideways_is_read_as_it_is_upright(face_image, turns):
    """A face the detector sees 30 px wide and 34 px tall (at its input) gets the small-face pass
    upright; found in a quarter-turned photo its box lies across, and the box's width (the face's
    height) had judged it big enough: its points differed from the upright photo's."""
    image = cv2.resize(face_image, (160, 160), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 100, np.uint8)
    canvas[100:260, 200:360] = image
    fl = FaceLandmarker(model="direct", turned=True)
    upright = fl.detect(canvas)
    assert len(upright) == 1 and _seen_small(fl.find_faces(canvas)[0])  # (the case this test is about)
    view, want = _turned_view(canvas, turns, upright[0].landmarks)
    sideways = fl.detect(view)
    assert len(sideways) == 1
    assert np.abs(sideways[0].landmarks - want).max() < 0.05


def test_turned_on_an_upright_photo_keeps_the_upright_face(face_image):
    plain = FaceLandmarker(model="direct").detect(face_image)
    turned = FaceLandmarker(model="direct", turned=True).detect(face_image)
    assert len(turned) == len(plain) == 1
    assert np.abs(turned[0].landmarks - plain[0].landmarks).max() < 1e-6


def test_turned_travels_with_the_landmarker_and_is_checked():
    import pickle

    from facemark.boxes import GivenBoxes

    fl = pickle.loads(pickle.dumps(FaceLandmarker(model="direct", turned=True)))
    assert fl.turned and fl.spec["turned"] is True  # (worker processes rebuild it from its spec)
    with pytest.raises(TypeError, match="turned"):
        FaceLandmarker(model="direct", turned="yes")
    with pytest.raises(ValueError, match="turned"):
        FaceLandmarker(model="direct", detector=GivenBoxes({"a.jpg": [[0, 0, 10, 10]]}), turned=True)


def test_turns_merge_to_one_detection_per_face_best_score_first():
    from facemark.detector import merge_turns

    def det(box, score, turn):
        return Detection(np.array(box, np.float64), score, quarter_turns=turn)

    face = det([100, 100, 200, 220], 0.99, 0)
    again = det([104, 96, 204, 214], 0.93, 1)  # the same face from another turn
    part = det([130, 150, 180, 210], 0.95, 3)  # a box on its nose and mouth, from another turn
    own_part = det([120, 140, 170, 200], 0.7, 0)  # one inside it from its own turn: the detector's call, kept
    beside = det([190, 100, 290, 220], 0.8, 2)  # another face, touching it
    kept = merge_turns([again, part, face, own_part, beside], iou=0.4)
    assert kept == [face, beside, own_part]
    tight, loose = det([120, 130, 180, 200], 0.999, 0), det([100, 100, 200, 230], 0.98, 1)  # one face, two turns
    assert merge_turns([loose, tight], iou=0.4) == [tight]
    loose0 = det([100, 100, 200, 230], 0.98, 0)
    assert merge_turns([loose0, tight], iou=0.4) == [tight, loose0]  # (one turn: the detector's call)


def test_a_turned_view_keeps_only_confident_faces_and_maps_them_back(face_image):
    """Every face from a turned view is mapped back into the image; with RetinaFace one scored
    under TURNED_MIN_SCORE there is dropped (upright, the usual threshold holds), while another
    detector's scores (another scale) are taken as they come."""
    from facemark.landmarker import TURNED_MIN_SCORE

    def views(image, sideways_score):  # one box in each view, at the same place of the view
        upright = image.shape[0] == face_image.shape[0] // 2
        return [Detection(np.array([10.0, 20, 50, 60]), 0.7 if upright else sideways_score,
                          np.array([[20.0, 30], [40, 30], [30, 40], [22, 50], [38, 50]]))]

    class Stub:
        def __init__(self, sideways_score):
            self.sideways_score = sideways_score

        def detect(self, image):
            return views(image, self.sideways_score)

    class StubRetinaFace(RetinaFace):
        def __init__(self, sideways_score):
            super().__init__()
            self.sideways_score = sideways_score

        def detect(self, image):
            return views(image, self.sideways_score)

    image = np.zeros((face_image.shape[0] // 2, face_image.shape[0], 3), np.uint8)  # wider than high
    h, w = image.shape[:2]
    low, high = TURNED_MIN_SCORE - 0.05, TURNED_MIN_SCORE + 0.05
    # (upright: kept at 0.7; half-turned at 0.7 and quarter turns under the bar: dropped with RetinaFace)
    for detector, n in ((StubRetinaFace(low), 1), (StubRetinaFace(high), 3), (Stub(low), 4)):
        found = FaceLandmarker(model="direct", detector=detector, turned=True).find_faces(image)
        assert len(found) == n and np.array_equal(found[-1].box, [10, 20, 50, 60] if n < 4 else found[-1].box)
        assert any(d.score == 0.7 and np.array_equal(d.box, [10, 20, 50, 60]) for d in found)
        for d in found:
            assert 0 <= d.box[0] < d.box[2] <= w and 0 <= d.box[1] < d.box[3] <= h
            assert np.all((d.kps >= d.box[:2]) & (d.kps <= d.box[2:]))  # (points moved with their box)


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_turned_with_a_detector_of_bare_boxes_finds_their_keypoints_where_the_face_is_upright(face_image, turns):
    """A caller's detector giving boxes only: the keypoints that set the crop are looked for in
    the turn the box came from, where the face is upright, not in the upside-down image."""
    class Boxes:
        def __init__(self):
            self.inner = RetinaFace()

        def detect(self, image):
            return [np.append(d.box, d.score) for d in self.inner.detect(image)]

    upright = FaceLandmarker(model="direct").detect(face_image)[0]
    view, want = _turned_view(face_image, turns, upright.landmarks)
    faces = FaceLandmarker(model="direct", detector=Boxes(), turned=True).detect(view)
    side = float(np.ptp(upright.landmarks[:, 0]))  # (keypoints found in the turned image: 2.4-4.3 px off here)
    assert len(faces) == 1 and np.linalg.norm(faces[0].landmarks - want, axis=1).mean() < 0.01 * side

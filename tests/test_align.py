"""Coordinate conventions: 0-based, pixel centres at integers, exact inverse mapping."""
import cv2
import numpy as np
import pytest

from facemark import align


def random_similarity(rng, angle=40.0):
    a = np.deg2rad(rng.uniform(-angle, angle))
    s = rng.uniform(0.6, 1.6)
    t = rng.uniform(-30, 30, 2)
    return np.array([[s * np.cos(a), -s * np.sin(a), t[0]], [s * np.sin(a), s * np.cos(a), t[1]]])


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    m = random_similarity(rng)
    assert np.allclose(align.umeyama(src, align.apply(m, src)), m, atol=1e-9)


def test_invert_and_compose():
    rng = np.random.default_rng(1)
    m = random_similarity(rng)
    p = rng.uniform(0, 50, (7, 2))
    assert np.allclose(align.apply(align.invert(m), align.apply(m, p)), p)
    assert np.allclose(align.apply(align.compose(m, align.invert(m)), p), p)


def test_warp_pixel_centre_convention():
    # A single lit pixel at (x, y) lands where the matrix says, with no half-pixel shift.
    img = np.zeros((40, 40), np.float32)
    img[13, 21] = 1.0
    m = np.array([[1.0, 0, 5.0], [0, 1.0, -3.0]])
    crop = align.warp(img, m, 40)
    y, x = np.unravel_index(np.argmax(crop), crop.shape)
    assert (x, y) == (26, 10)


def _gaussian_image(points, shape, sigma):
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.zeros(shape + (3,), np.float32)
    for c, (px, py) in enumerate(points):
        img[..., c] = np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2))
    return img


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_through_crop_within_005_px(seed):
    """A synthetic face moved by a known similarity: what is found in the crop maps back to the
    same image coordinates (within 0.05 px) as the known points moved by that similarity."""
    rng = np.random.default_rng(seed)
    base = np.array([[120.3, 140.7], [180.9, 138.2], [150.4, 200.6]])  # three "landmarks"
    move = random_similarity(rng)
    pts = align.apply(move, base)
    s = align.scale_of(move)
    # The crop is aligned from five keypoints made from the points (as a detector would give).
    kps = np.vstack([pts, pts[:2] + [0, 60 * s]])
    template = np.array([[0.3, 0.3], [0.7, 0.3], [0.5, 0.6], [0.35, 0.75], [0.65, 0.75]])
    # OpenCV resamples at 1/32-pixel steps of the crop: a crop at least as fine as the image keeps
    # that below 0.02 image pixels, so what remains measured here is the geometry.
    size = 320
    m = align.from_points(kps, template, size)
    assert align.scale_of(m) >= 1.0
    # Blobs wide in both image and crop pixels, so bilinear resampling does not bias their peaks.
    image = _gaussian_image(pts, (400, 400), sigma=max(5.0, 3.0 / align.scale_of(m)))
    crop = align.warp(image, m, size)
    # "Model": the intensity centroid of each channel (resampling preserves centroids, where a
    # peak-curvature read-out would measure bilinear kinks of the upsampled blob instead).
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    w = crop.transpose(2, 0, 1).astype(np.float64)
    found = np.stack([(w * xs).sum((1, 2)), (w * ys).sum((1, 2))], 1) / w.sum((1, 2))[:, None]
    back = align.apply(align.invert(m), found)
    assert np.abs(back - pts).max() < 0.05


def test_from_box_centres_the_box():
    m = align.from_box(np.array([100, 50, 200, 170]), 64, template=np.array([0.5, 0.5, 1.0]))
    c = align.apply(m, np.array([[150.0, 110.0]]))[0]
    assert np.allclose(c, [31.5, 31.5])  # the crop's centre in pixel-centre coordinates
    assert np.isclose(align.scale_of(m), 64 / 120)
    with pytest.raises(ValueError):
        align.from_box(np.array([10, 10, 10, 10]), 64, template=np.array([0.5, 0.5, 1.0]))


def test_shipped_templates_are_sane():
    t = align.TEMPLATES
    for key in ("retinaface", "landmarks98"):
        five = t[key]
        assert five.shape == (5, 2)
        assert five[0, 0] < five[1, 0]  # right eye (image left) left of left eye
        assert five[0, 1] < five[3, 1] and five[2, 1] < five[3, 1]  # eyes and nose above the mouth
        assert ((five > 0.1) & (five < 0.9)).all()
    assert t["box"].shape == (3,)


def test_big_faces_are_antialiased_with_exact_geometry():
    # A checkerboard of 2-px squares seen at 1/10 scale: bilinear sampling alone would alias it
    # into a pattern; area averaging gives flat grey.
    yy, xx = np.mgrid[0:1000, 0:1000]
    board = (((xx // 2 + yy // 2) % 2) * 255).astype(np.uint8)
    m = np.array([[0.1, 0, 0], [0, 0.1, 0]])
    crop = align.warp(board, m, 64)
    assert crop[5:-5, 5:-5].std() < 10 and abs(crop[5:-5, 5:-5].mean() - 127.5) < 10
    # And a blob still maps back exactly through the shrinking crop.
    rng = np.random.default_rng(7)
    pts = np.array([[612.3, 455.8]])
    ys, xs = np.mgrid[0:1000, 0:1000].astype(np.float64)
    img = np.exp(-((xs - pts[0, 0]) ** 2 + (ys - pts[0, 1]) ** 2) / (2 * 40.0**2)).astype(np.float32)
    a = np.deg2rad(rng.uniform(-30, 30))
    m = np.array([[0.12 * np.cos(a), -0.12 * np.sin(a), 10.0], [0.12 * np.sin(a), 0.12 * np.cos(a), 20.0]])
    crop = align.warp(img, m, 128).astype(np.float64)
    cy, cx = np.mgrid[0:128, 0:128]
    found = np.array([[(crop * cx).sum(), (crop * cy).sum()]]) / crop.sum()
    assert np.abs(align.apply(align.invert(m), found) - pts).max() < 0.3  # 0.3 image px = 0.04 crop px


def test_rescale_maps_pixel_centres_of_a_resized_image_back():
    """cv2.resize by 1/2 puts small pixel 0's centre between image pixels 0 and 1 (at 0.5); a plain
    multiply would put it at 0. The offset places a window's points in the whole image."""
    img = np.zeros((40, 60), np.uint8)
    img[20, 30] = img[21, 31] = img[20, 31] = img[21, 30] = 255  # a 2x2 dot whose centre is (30.5, 20.5)
    small = cv2.resize(img, (30, 20), interpolation=cv2.INTER_AREA)
    y, x = np.unravel_index(np.argmax(small), small.shape)
    assert np.allclose(align.rescale([[x, y]], (2, 2)), [[30.5, 20.5]])
    assert np.allclose(align.rescale([[0.0, 0.0], [1.0, 2.0]], (3.0, 0.5), (10, 20)), [[11.0, 19.75], [14.0, 20.75]])


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 5])
def test_a_pixel_of_a_quarter_turned_image_maps_back_to_where_it_was(turns):
    """``np.rot90(image, turns)`` then ``quarter_turn_back``: each marked pixel lands on itself."""
    h, w = 7, 11
    image = np.zeros((h, w), np.uint8)
    spots = np.array([[0, 0], [10, 0], [3, 5], [10, 6]])
    for i, (x, y) in enumerate(spots):
        image[y, x] = i + 1
    turned = np.rot90(image, turns)
    seen = np.array([np.argwhere(turned == i + 1)[0][::-1] for i in range(len(spots))], np.float64)  # (x, y)
    assert np.array_equal(align.quarter_turn_back(seen, turns, h, w), spots)

"""Colour profiles: a drawing carries its photo's RGB ICC profile, in every format it is written in."""
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemark.icc import _into_png, drawn_as, embedded, has_mark, profile_of, with_mark


def profile(size: int = 600, space: bytes = b"RGB ") -> bytes:
    """A stand-in profile with a well-formed header (libpng checks it) and no tags."""
    head = bytearray(128)
    head[0:4] = size.to_bytes(4, "big")
    head[8:12], head[12:16], head[16:20], head[20:24], head[36:40] = b"\x02\x10\x00\x00", b"mntr", space, b"XYZ ", b"acsp"
    head[68:80] = bytes.fromhex("0000F6D6000100000000D32D")  # D50, as the format requires
    body = bytes(range(256)) * size
    return bytes(head) + bytes(4) + body[:size - 132]


def tiff_with_profile(image: np.ndarray, icc: bytes) -> bytes:
    """An uncompressed little-endian RGB TIFF whose ICC profile (tag 34675) sits after the pixels."""
    h, w = image.shape[:2]
    pixels = image[:, :, ::-1].tobytes()
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 8),
            (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(pixels))]
    ifd_at = 8 + len(pixels)
    icc_at = ifd_at + 2 + 12 * (len(tags) + 1) + 4
    tags.append((34675, 7, len(icc), icc_at))
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) if t[1] != 3 else
                                                 struct.pack("<HHIHH", t[0], t[1], t[2], t[3], 0) for t in tags)
    return b"II*\x00" + struct.pack("<I", ifd_at) + pixels + ifd + bytes(4) + icc


@pytest.mark.parametrize("ext,channels,quality", [(".jpg", 3, None), (".png", 3, None), (".png", 4, None),
                                                  (".webp", 3, 80), (".webp", 3, 101), (".webp", 4, 101), (".webp", 4, 80)])
@pytest.mark.parametrize("size", [600, 70001])  # (over 64 KB: two JPEG segments)
def test_a_profile_put_into_an_encoded_image_reads_back_and_leaves_its_pixels(tmp_path, ext, channels, quality, size):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, channels), np.uint8)
    params = [cv2.IMWRITE_WEBP_QUALITY, quality] if quality else []
    plain = cv2.imencode(ext, image, params)[1].tobytes()
    icc = profile(size)
    (tmp_path / f"x{ext}").write_bytes(embedded(plain, icc))
    assert profile_of(tmp_path / f"x{ext}") == icc
    before = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_UNCHANGED)
    after = cv2.imread(str(tmp_path / f"x{ext}"), cv2.IMREAD_UNCHANGED)
    assert after is not None and after.shape == before.shape and (after == before).all()
    (tmp_path / f"plain{ext}").write_bytes(plain)
    assert profile_of(tmp_path / f"plain{ext}") is None


def test_a_jpeg_profile_follows_the_jfif_segment_that_must_lead():
    out = embedded(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), profile())
    assert out[2:4] == b"\xff\xe0" and out[6:11] == b"JFIF\x00"
    n = int.from_bytes(out[4:6], "big")
    assert out[4 + n:6 + n] == b"\xff\xe2" and out[8 + n:20 + n] == b"ICC_PROFILE\x00"


@pytest.mark.parametrize("space", [b"CMYK", b"GRAY"])
def test_only_rgb_profiles_travel(tmp_path, space):
    """A drawing is RGB: a CMYK or grey profile would make viewers misread its pixels."""
    plain = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    assert embedded(plain, profile(600, space)) == plain
    (tmp_path / "x.png").write_bytes(embedded(plain, profile()))
    assert profile_of(tmp_path / "x.png") == profile()


def test_a_tiff_profile_is_read_wherever_it_sits(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (9, 7, 3), np.uint8)
    (tmp_path / "x.tif").write_bytes(tiff_with_profile(image, profile(1000)))
    assert (cv2.imread(str(tmp_path / "x.tif")) == image).all()
    assert profile_of(tmp_path / "x.tif") == profile(1000)


def test_broken_or_missing_files_have_no_profile(tmp_path):
    png = embedded(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), profile())
    (tmp_path / "cut.png").write_bytes(png[:60])  # the compressed profile cut off
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "stub.jpg").write_bytes(b"\xff\xd8\xff\xe2\x00\x10ICC_PROFILE\x00")  # a segment with no numbers
    jpg = embedded(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), profile(70001))
    first = jpg.find(b"\xff\xe2")
    second = jpg.find(b"\xff\xe2", first + 2)
    n = int.from_bytes(jpg[second + 2:second + 4], "big")
    (tmp_path / "half.jpg").write_bytes(jpg[:second] + jpg[second + 2 + n:])  # part 2 of 2 lost
    short = bytearray(profile())
    short[:4] = (700).to_bytes(4, "big")  # its header says 700 bytes, it has 600
    plain = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    assert embedded(plain, bytes(short)) == plain  # never written by facemark; another program may have
    (tmp_path / "bad_size.png").write_bytes(_into_png(plain, bytes(short)))
    for name in ("cut.png", "empty.jpg", "stub.jpg", "half.jpg", "bad_size.png", "missing.png"):
        assert profile_of(tmp_path / name) is None, name
    assert cv2.imread(str(tmp_path / "half.jpg")) is not None


@pytest.fixture(scope="module")
def face(face_image):
    return cv2.resize(face_image, (200, 200), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", ["p3.png", "p3.webp", "p3.tif", "p3.jpg"])
def test_a_drawing_keeps_its_photos_profile(face, tmp_path, name):
    """OpenCV writes no ICC profile: the drawing of a Display P3 photo showed its colours shifted.
    A TIFF's drawing is a PNG, with the TIFF's profile."""
    icc, ext = profile(3000), Path(name).suffix
    data = tiff_with_profile(face, icc) if ext == ".tif" else embedded(cv2.imencode(ext, face)[1].tobytes(), icc)
    (tmp_path / name).write_bytes(data)
    cv2.imwrite(str(tmp_path / "plain.jpg"), face)
    r = subprocess.run([sys.executable, "-m", "facemark", "detect", name, "plain.jpg", "--out", "o", "--annotate",
                        "--model", "direct"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "2 face(s)" in r.stderr, r.stderr
    drawn = tmp_path / "o" / f"{name}.annotated{'.png' if ext == '.tif' else ext}"
    assert profile_of(drawn) == icc and cv2.imread(str(drawn)) is not None
    assert profile_of(tmp_path / "o" / "plain.jpg.annotated.jpg") is None


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_a_drawings_mark_keeps_its_pixels_and_profile_and_is_found_again(tmp_path, ext):
    """The tag that tells facemark's drawings from other files at their names: the image decodes
    as before, a colour profile put in with it still reads, and an untagged file is not taken."""
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)
    plain = cv2.imencode(ext, image)[1].tobytes()
    icc = profile()
    for data, tagged in ((plain, False), (with_mark(plain), True), (with_mark(embedded(plain, icc)), True)):
        path = tmp_path / f"x{ext}"
        path.write_bytes(data)
        assert has_mark(path) is tagged
        assert np.array_equal(cv2.imread(str(path)), cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR))
    assert profile_of(path) == icc
    assert not has_mark(tmp_path / "missing.jpg")
    path.write_bytes(with_mark(embedded(plain, icc), "points, no box, score"))
    assert has_mark(path) and drawn_as(path) == "points, no box, score" and profile_of(path) == icc
    assert np.array_equal(cv2.imread(str(path)), cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR))
    path.write_bytes(with_mark(plain))
    assert has_mark(path) and drawn_as(path) is None  # (tagged before styles were said)

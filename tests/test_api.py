"""The library as a programmer uses it: arguments checked before any work, results that compare
and pickle, a detector of the caller's held to its contract, notes on stderr."""
from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest

from facemark import FaceLandmarker
from facemark.batch import detect_files
from facemark.results import read


@pytest.fixture(scope="module")
def fl():
    return FaceLandmarker(model="direct")


@pytest.fixture(scope="module")
def photo(face_image):
    return face_image


def test_faces_compare_by_value_and_a_landmarker_pickles(fl, photo):
    faces = fl.detect(photo)
    twin = copy.deepcopy(faces[0])
    assert faces[0] == twin and twin in faces
    faces.remove(twin)
    assert faces == []
    moved = copy.deepcopy(twin)
    moved.landmarks = moved.landmarks + 1
    assert moved != twin
    again = pickle.loads(pickle.dumps(fl))  # e.g. sent to a multiprocessing pool
    assert again is not fl and again.spec == fl.spec
    assert again.detect(photo) == [twin]


def test_a_detected_face_can_be_landmarked_again_from_its_points(fl, photo):
    """``landmarks(image, boxes=faces)`` crops from each face's 98 points (roll and eye line), as
    the video tracker does; a bare box crops from the box alone."""
    face = fl.detect(photo)[0]
    again = fl.landmarks(photo, boxes=[face])[0]
    boxed = fl.landmarks(photo, boxes=[face.box])[0]
    iod = np.linalg.norm(face.landmarks[60] - face.landmarks[72])
    assert np.abs(again.landmarks - face.landmarks).max() < 0.05 * iod
    assert np.abs(again.landmarks - face.landmarks).mean() < np.abs(boxed.landmarks - face.landmarks).mean()
    with pytest.raises(TypeError):
        fl.landmarks(photo, boxes=face)  # one Face on its own is not a list of boxes


class _Boxes:
    def __init__(self, out):
        self.out = out

    def detect(self, image):
        return self.out


def test_a_detector_of_the_callers_is_held_to_its_contract(photo):
    import facemark
    from facemark.detector import Detection

    assert "Detection" in facemark.__all__  # what a detector of one's own returns
    h, w = photo.shape[:2]
    ok = FaceLandmarker(model="direct", detector=_Boxes(np.array([[100, 100, 400, 400, 0.9]])))
    faces = ok.detect(photo)  # an (N, 5) array: one face per row
    assert len(faces) == 1 and np.allclose(faces[0].box, [100, 100, 400, 400]) and faces[0].score == 0.9
    assert len(FaceLandmarker(model="direct", detector=_Boxes([Detection(np.array([100., 100, 400, 400]), 0.8)])).detect(photo)) == 1
    assert FaceLandmarker(model="direct", detector=_Boxes(None)).detect(photo) == []
    with pytest.raises(ValueError, match=r"_Boxes.detect\(image\)\[0\].*outside"):
        FaceLandmarker(model="direct", detector=_Boxes([[w + 100, h + 100, w + 200, h + 200]])).detect(photo)
    with pytest.raises(TypeError, match=r"_Boxes.detect\(image\) must be a list"):
        FaceLandmarker(model="direct", detector=_Boxes(5)).detect_batch([photo])


def test_detect_files_checks_its_arguments_before_making_anything(fl, photo, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.jpg"), photo)
    out = tmp_path / "out"
    bad = [
        (dict(inputs=None), TypeError, "inputs must be a list"),
        (dict(inputs=[photo]), TypeError, "not ndarray"),
        (dict(fl="direct"), TypeError, "fl must be a FaceLandmarker"),
        (dict(style="dots", annotate=True), ValueError, "--draw must be one of"),
        (dict(batch_images=2.5), TypeError, "batch_images must be an integer"),
        (dict(rows_per_shard=0, fmt="jsonl"), ValueError, "--shard-size must be a positive integer"),
    ]
    for change, kind, words in bad:
        args = dict(inputs=[str(tmp_path / "a.jpg")], fl=fl, out_dir=out, **{k: v for k, v in change.items()
                                                                              if k not in ("inputs", "fl")})
        args.update({k: v for k, v in change.items() if k in ("inputs", "fl")})
        with pytest.raises(kind, match=words):
            detect_files(args.pop("inputs"), args.pop("fl"), **args)
        assert not out.exists(), change


def test_detect_files_reads_a_generator_and_keeps_stdout_for_results(fl, photo, tmp_path, capsys):
    import cv2

    cv2.imwrite(str(tmp_path / "a.jpg"), photo)
    (tmp_path / "bad.jpg").write_text("not an image")
    paths = (str(tmp_path / n) for n in ("a.jpg", "bad.jpg", "missing.jpg"))
    s = detect_files(paths, fl)  # no out_dir: one JSON document per line on stdout
    assert s.written == 1 and s.failures == 2
    captured = capsys.readouterr()
    docs = [json.loads(line) for line in captured.out.splitlines()]
    assert [d["image"].rsplit("/", 1)[-1] for d in docs] == ["a.jpg"]
    assert "missing.jpg" in captured.err and "bad.jpg" in captured.err


def test_reading_a_video_json_file_says_what_it_is(tmp_path):
    (tmp_path / "v.jsonl").write_text(json.dumps({"frame": 0, "time": 0.0, "faces": []}) + "\n")
    with pytest.raises(ValueError, match="video --json file, one line per frame"):
        read(tmp_path / "v.jsonl")


def test_draw_refuses_points_it_cannot_draw_and_big_endian_images_are_read(fl, photo):
    from facemark import draw

    face = fl.detect(photo)[0]
    assert np.array_equal(fl.detect(photo.astype(">u2") * 257)[0].box, fl.detect(photo.astype(np.uint16) * 257)[0].box)
    for change in (dict(landmarks=face.landmarks68), dict(landmarks=np.full((98, 2), np.nan)),
                   dict(box=face.box * 1e6)):
        broken = copy.deepcopy(face)
        for k, v in change.items():
            setattr(broken, k, v)
        with pytest.raises(ValueError, match=r"faces\[0\]"):
            draw(photo, [broken])
    with pytest.raises(TypeError, match="model must be a name"):
        FaceLandmarker(model=None)

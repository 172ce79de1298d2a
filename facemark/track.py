"""Face tracks across video frames: detect every N frames (and when a track is lost), in between
align each face from its previous landmarks and confirm it with the detector on a small window
around it; keep stable ids; smooth each track's points."""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import align, labelmap
from .detector import Detection
from .landmarker import FaceLandmarker, track_matrix
from .layouts import IOD98, five_points
from .notes import LOOKS_TURNED_DEG, looks_turned
from .smooth import POSE_BETA, POSE_MIN_CUTOFF, SHAPE_BETA, SHAPE_MIN_CUTOFF, FaceSmoother


@dataclass
class Track:
    id: int
    landmarks: np.ndarray  # raw (98, 2), used to align the next frame
    smoothed: np.ndarray  # what is reported
    box: np.ndarray
    score: float
    filter: FaceSmoother | None = field(default=None, repr=False)
    unconfirmed: int = 0  # detection cycles in a row in which no detection covered this track
    # Where the detector puts this face's box relative to the box its landmarks place (centre
    # shift in face widths): a face's own pose and shape offset them, so a check compares with it.
    bias: np.ndarray = field(default_factory=lambda: np.zeros(2), repr=False)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2), repr=False)  # how far it moved last frame (px)
    # This frame's crop result, held back until a whole-frame detection says whether it is right
    # (a window check that missed the face, or a crop that jumped): (box, points, from a missed check).
    pending: tuple | None = field(default=None, repr=False)
    check_px: float = 0.0  # this face's window-check scale (0: the tracker's); raised when a check misses it
    check_age: int = 0  # frames in view since check_px was last raised (it falls back after CHECK_HOLD)
    # The box where a detection last saw this face: while it is hidden, its crop follows guesses on
    # whatever hides it (a box that shrinks frame by frame), and the face coming back is sought
    # near where it was seen too.
    seen_box: np.ndarray | None = field(default=None, repr=False)
    # The points the next crop is placed by: the smoother's, its shape smoothed hard (None: ``smoothed``).
    steady: np.ndarray | None = field(default=None, repr=False)
    last_box: np.ndarray | None = field(default=None, repr=False)  # ``box`` as this frame began (None: ``box``)

    @property
    def shown_box(self) -> np.ndarray:
        """The box reported and drawn: placed by the reported (smoothed) points on every frame, so
        it neither jumps between the detector's box (detection frames) and the landmarks' box
        (tracked frames) nor jitters more than the points do."""
        try:
            return box_from_landmarks(self.smoothed)
        except ValueError:
            return self.box


HIDDEN_HANDICAP = 0.3  # face widths; see Tracker._detect
CHECK_HOLD = 10  # frames a raised window-check scale is kept before it is halved again
NEIGHBOUR_FRAMES = 4  # frames an untracked face near a track is remembered (moved on as it moved) after it was last seen
NEIGHBOUR_REACH = 0.5  # face widths from where a neighbour was expected: farther, a face found is not it
OVERLAP_HOLD = 3  # NEIGHBOUR_FRAMES times this while it is within a face width of a followed face
SAME_DETECTION = 0.25  # face widths (``_offset``) within which two boxes are one face found twice
PASSING = 0.02  # a neighbour moving this share of its box side a frame or more is passing, not standing


@dataclass
class Neighbour:
    """A face seen beside a track that ``max_faces`` leaves untracked: remembered (where it was,
    how it moved) so that a check or detection that finds only it, off the track, while the
    tracked face is hidden behind it, does not move the track onto it (the track took the face
    and its id in front of the one followed, as two faces crossed)."""

    box: np.ndarray  # where it is, or is expected (moved on by ``velocity`` while unseen)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    age: int = 0  # frames since it was last seen
    seen: np.ndarray | None = None  # the box where it was last seen (``box`` when made)
    moves: int = 0  # how many motions ``velocity`` averages

    MOTIONS = 3  # its motion: the latest averaged with the mean of up to this many before

    def __post_init__(self) -> None:
        if self.seen is None:
            self.seen = self.box

    @property
    def guess(self) -> np.ndarray:
        """Where it is expected on the next frame."""
        return _moved(self.box, self.velocity)

    def saw(self, box: np.ndarray) -> None:
        """Seen at ``box``: its motion per frame since it was last seen, averaged with the motions
        before (a face half over another is boxed off-centre from frame to frame: one frame's
        motion was 3 px where it moved 5, and it was not found where it was expected)."""
        step = (box[:2] + box[2:] - self.seen[:2] - self.seen[2:]) / 2 / (self.age + 1)
        k = min(self.moves, self.MOTIONS)
        self.velocity = (self.velocity * k + step) / (k + 1)
        self.box, self.seen, self.age, self.moves = box, box, 0, self.moves + 1

    def unseen(self) -> None:
        """Not found this frame: moved on as it moved (the detector can see two crossing faces as one)."""
        self.box, self.age = self.guess, self.age + 1


def _nearest_pairs(expected: list[np.ndarray], found: list[np.ndarray], reach: float) -> dict[int, int]:
    """Each expected box's found box (index to index), nearest pairs first, within ``reach`` face
    widths (``_offset``), one to one."""
    pairs: dict[int, int] = {}
    for dist, i, j in sorted((_offset(b, e), i, j) for i, e in enumerate(expected) for j, b in enumerate(found)):
        if dist < reach and i not in pairs and j not in pairs.values():
            pairs[i] = j
    return pairs


def _crop_stands(d: Detection, box: np.ndarray | None) -> bool:
    """Whether a track's crop (its points' ``box``) stands where a detection ``d`` disagrees with
    it: ``d``'s keypoints put the face turned past ``LOOKS_TURNED_DEG`` with no upright turn of it
    found (such keypoints are often not on the features: re-seeded from them, single frames of a
    face rolled 135° flashed wrong), and ``d`` still puts the face within ``TURNED_REACH`` face
    widths of the crop. Further off, the crop has likely left the face: the detection re-seeds it."""
    return box is not None and d.kps is not None and not d.quarter_turns \
        and abs(align.roll_degrees(d.kps)) > LOOKS_TURNED_DEG and _offset(d.box, box) < TURNED_REACH


TURNED_REACH = 0.5  # face widths


def box_from_landmarks(landmarks98: np.ndarray) -> np.ndarray:
    """A detector-style box for tracked frames: the calibrated RetinaFace box placed by the face."""
    m = align.umeyama(five_points(landmarks98), align.TEMPLATES["landmarks98"])
    cx, cy, side = align.TEMPLATES["box"]
    inv = align.invert(m)
    c = align.apply(inv, np.array([[cx, cy]]))[0]
    half = side / align.scale_of(m) / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def inter_ocular(landmarks98: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks98[IOD98[0]] - landmarks98[IOD98[1]])) + 1e-6


def _side(box: np.ndarray) -> float:
    """A box's longer side (never 0: distances are measured in it)."""
    return float(max(box[2] - box[0], box[3] - box[1], 1e-6))


def _shift(det: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Centre of ``det`` minus centre of ``box``, in widths of ``box``."""
    side = _side(box)
    return np.array([det[0] + det[2] - box[0] - box[2], det[1] + det[3] - box[1] - box[3]]) / (2 * side)


def _resized(a: np.ndarray, b: np.ndarray) -> float:
    """How much larger or smaller box ``a`` is than ``b`` (|log| of the side ratio)."""
    return float(abs(np.log(_side(a) / _side(b))))


def _offset(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two boxes are, in face widths (centre distance, or a size change)."""
    return max(float(np.linalg.norm(_shift(a, b))), _resized(a, b))


def _bias(face) -> np.ndarray:
    """A detected face's detector box against the box its own landmarks place (see ``Track.bias``)."""
    try:
        return _shift(face.box, box_from_landmarks(face.landmarks))
    except ValueError:
        return np.zeros(2)


UNREACHED = 1e3  # the cost of a pair beyond reach (face widths): more than any assignment without one
UNPAIRED = 1.4  # a track left without a face costs this many reaches: two far pairs do not beat one near pair and a miss
MOTION_DOUBT = 0.5  # face widths added to a distance measured from where a track's last motion takes it
TIE_STEP = 1e-6  # added per track index to its pairs' costs: equal distances go to the older track


def least_cost_pairs(cost: np.ndarray) -> list[int | None]:
    """Each row's column in the one-to-one assignment of least total cost (the Hungarian method,
    on the matrix padded square), None for a row left without one."""
    n, m = cost.shape
    k = max(n, m)
    c = np.full((k, k), UNREACHED * 10)  # (padding: pairs with nothing)
    c[:n, :m] = cost
    u, v = np.zeros(k + 1), np.zeros(k + 1)
    owner, way = np.zeros(k + 1, int), np.zeros(k + 1, int)  # owner[j]: the row holding column j (1-based; 0: none)
    for i in range(1, k + 1):
        owner[0], j0 = i, 0
        least, used = np.full(k + 1, np.inf), np.zeros(k + 1, bool)
        while True:  # grow a path of tight edges from row i until it reaches a free column
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < least[1:])
            least[1:][better], way[1:][better] = reduced[better], j0
            j1 = 1 + int(np.argmin(np.where(free, least[1:], np.inf)))
            delta = least[j1]
            u[owner[used]] += delta
            v[used] -= delta
            least[~used] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs: list[int | None] = [None] * n
    for j in range(1, m + 1):
        if 0 < owner[j] <= n:
            pairs[owner[j] - 1] = j - 1
    return pairs


def _moved(box: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """``box`` shifted by ``velocity``: where a face in steady motion is expected next."""
    return np.asarray(box, np.float64) + np.tile(velocity, 2)


def _shape_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean difference of two brightness thumbnails, each scaled to zero mean and unit spread (what
    the picture shows, not how bright it is); a flat one (no spread) is all change."""
    sa, sb = float(a.std()), float(b.std())
    if sa <= 0 or sb <= 0:
        return float("inf")
    return float(np.abs((a - a.mean()) / sa - (b - b.mean()) / sb).mean())


@dataclass
class Tracker:
    landmarker: FaceLandmarker
    detect_every: int = 10
    max_faces: int = 0  # 0: no limit
    smooth: bool = True
    smooth_shape: bool = True  # False: the head's pose smoothed, the face's shape (blinks, speech) as the model gives it
    min_cutoff: float = POSE_MIN_CUTOFF  # see smooth.FaceSmoother
    beta: float = POSE_BETA
    shape_min_cutoff: float = SHAPE_MIN_CUTOFF
    shape_beta: float = SHAPE_BETA
    lost_motion: float = 0.6  # a jump beyond this many inter-ocular distances in one frame is a loss
    check_window: float = 3.0  # tracked frames: the detector looks at this many face widths around each face
    check_px: float = 48.0  # ... with the face shrunk to about this many pixels (RetinaFace finds 40 px)
    off_track: float = 0.1  # a check that puts the face this many face widths away re-seeds the track
    same_face: float = 0.5  # a detection within this many face widths of a track is that face
    max_unconfirmed: int = 5  # drop a hidden track after this many detections in a row missed it
    cut_level: float = 20.0  # mean change (0-255) of a small brightness thumbnail: a cut, where a side is flat
    cut_shape: float = 0.5  # mean change of the thumbnails scaled to unit spread: a cut (unrelated pictures ~1.1)
    flat_spread: float = 4.0  # a thumbnail's spread (0-255) below which the picture is flat (black, a fade's end)
    cut_pan: float = 4.0  # thumbnail px (of 32): the most a camera's motion moves the picture in a frame (an eighth;
    # a pan of 40 px a frame over 480 px frames is 2.7; 8, a quarter, passed jump cuts of a shot moved 40-120 px)
    tracks: list[Track] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)  # untracked faces near tracks (max_faces only)
    turned_frames: int = 0  # whole-frame detections that found a face looking turned (notes.looks_turned)
    _found: list = field(default_factory=list, repr=False)
    next_id: int = 0
    cut: bool = False  # whether the last frame stepped was a scene cut (or a cut to black)
    frames_since_detect: int = 0
    _thumb: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """The options checked as ``process_video`` checks them: a wrong one is a clear error, not
        a tracker that never reports a face (``max_faces=-1``) or gives NaN points (``beta=nan``)."""
        if not callable(getattr(self.landmarker, "find_faces", None)):
            raise TypeError(f"landmarker must be a FaceLandmarker, not {type(self.landmarker).__name__}")
        for name, least in (("detect_every", 1), ("max_faces", 0), ("max_unconfirmed", 1)):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < least:
                raise ValueError(f"{name} must be a whole number, at least {least}, not {v!r}")
        for name in ("min_cutoff", "beta", "shape_min_cutoff", "shape_beta"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v < 0 or \
                    (v == 0 and "cutoff" in name):
                raise ValueError(f"{name} must be a finite number, {'over' if 'cutoff' in name else 'at least'} 0, "
                                 f"not {v!r}")

    def _new_filter(self) -> FaceSmoother | None:
        if not self.smooth:
            return None
        return FaceSmoother(align.TEMPLATES["mean98"], self.min_cutoff, self.beta, self.shape_min_cutoff, self.shape_beta,
                            smooth_shape=self.smooth_shape)

    def step(self, image: np.ndarray, t: float) -> list[Track]:
        """Landmarks for one frame at time ``t`` (seconds); returns the tracks the latest detection
        saw (hidden ones are still followed, and keep their id if a detection finds them again).

        Existing faces are always followed from their previous landmarks (no jump on detection
        frames) and checked in a window around them; the detector runs on the whole frame every
        ``detect_every`` frames, at a cut, when a check lost a face, when there is none, on every
        frame while a track is hidden, and instead of the checks when they would cost more; it
        only adds faces that no track covers.

        ``image`` is read as ``FaceLandmarker.detect`` reads it (a path; a BGR, grey, BGRA or
        16-bit array); ``t`` must be a finite number (a frame index works, at the smoothing of a
        1 fps clip; milliseconds turn the smoothing nearly off)."""
        image = FaceLandmarker._load(image, "image")
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t):
            raise ValueError(f"t must be the frame's time in seconds, a finite number, not {t!r}")
        self.frames_since_detect += 1
        self._found = []  # every face the checks and detections find this frame (for the neighbours)
        before = {id(tr): tr.landmarks.mean(0) for tr in self.tracks}
        for tr in self.tracks:
            tr.pending, tr.last_box = None, tr.box
        cut = self.cut = self._cut(image)
        if cut:  # another shot: what the smoothers, the motion lead and the neighbours know belongs to the last one
            for tr in self.tracks:
                tr.filter, tr.velocity = self._new_filter(), np.zeros(2)
            self.neighbours = []
        full = cut or not self.tracks or any(tr.unconfirmed for tr in self.tracks) \
            or self.frames_since_detect >= self.detect_every or not self._checks_pay(image)
        lost = self._follow(image, check=not full) if self.tracks else False
        if full or lost:
            self._detect(image, cut)
            self.frames_since_detect = 0
        self._merge()
        self._remember_neighbours()
        for tr in self.tracks:  # how far each face moved this frame: the next crop leads by it (not across a cut)
            tr.velocity = tr.landmarks.mean(0) - before[id(tr)] if id(tr) in before and not cut else np.zeros(2)
            if tr.check_px and not tr.unconfirmed:  # a closer look is for a while: blur or a hand also
                tr.check_age += 1  # make a check miss, and a lasting one would cost a full detection a frame
                if tr.check_age >= CHECK_HOLD:
                    tr.check_px, tr.check_age = (tr.check_px / 2 if tr.check_px / 2 > self.check_px else 0.0), 0
            if tr.unconfirmed >= 2:  # hidden (not one blurred frame): its points may be drawn on whatever
                # hides it, and must not drag the face's smoothing: it starts again
                tr.filter, tr.smoothed, tr.steady = self._new_filter(), tr.landmarks, None
            else:
                tr.smoothed = tr.filter(tr.landmarks, t, inter_ocular(tr.landmarks)) if tr.filter else tr.landmarks
                tr.steady = tr.filter.steady if tr.filter else None
        # A track the last detection did not see is followed (it keeps its id if seen again on the
        # next frame) but not reported: the model draws a face in any crop, even an empty one.
        return [tr for tr in self.tracks if not tr.unconfirmed]

    def _check_px(self, tr: Track) -> float:
        return tr.check_px or self.check_px

    def _checks_pay(self, image: np.ndarray) -> bool:
        """Whether the window checks cost less than one whole-frame detection (many faces: no)."""
        h, w = image.shape[:2]
        det = self.landmarker.detector
        scale = det.scale_for(h, w) if hasattr(det, "scale_for") else min(1.0, 640 / max(h, w))
        windows = sum((self.check_window * min(self._check_px(tr), max(tr.box[2] - tr.box[0], tr.box[3] - tr.box[1])))
                      ** 2 for tr in self.tracks)
        return windows < 0.5 * h * w * scale * scale

    def _cut(self, image: np.ndarray) -> bool:
        """A scene cut (or a cut to black): the whole frame changed at once, so faces may be gone
        without moving; detect now instead of up to ``detect_every`` frames later."""
        green = image[..., 1] if image.ndim == 3 else image  # brightness enough to see a cut
        sy, sx = max(1, green.shape[0] // 128), max(1, green.shape[1] // 128)  # ~128 px sampled: 0.04 ms
        thumb = cv2.resize(np.ascontiguousarray(green[::sy, ::sx]), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        prev, self._thumb = self._thumb, thumb
        if prev is None:
            return False
        level = float(np.abs(thumb - prev).mean())
        spread, before = float(thumb.std()), float(prev.std())
        if min(spread, before) < self.flat_spread:  # a flat picture on a side (a cut to black): by level
            return level > self.cut_level
        if level <= self.cut_level / 3:  # (grain on a dim picture, scaled up to unit spread, is no cut)
            return False
        # Otherwise by what the picture shows, not how bright it is: a flickering lamp or an
        # exposure step changes every pixel at once without being another shot.
        if _shape_change(prev, thumb) <= self.cut_shape:
            return False
        # Nor where the camera moved: a pan or a hand-held shake over a detailed background moves
        # the whole picture, and unaligned thumbnails differed like another shot's (a pan of a few
        # % of the frame a frame was a cut frame after frame). Aligned by the shift that matches
        # them best, the same shot's thumbnails differ little, another shot's as much as before.
        (dx, dy), _ = cv2.phaseCorrelate(prev, thumb)
        if not (abs(dx) <= self.cut_pan and abs(dy) <= self.cut_pan):
            return True
        moved = cv2.warpAffine(prev, np.float32([[1, 0, dx], [0, 1, dy]]), prev.shape[::-1], flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        n = prev.shape[0]
        y0, x0 = int(np.ceil(max(dy, 0.0))), int(np.ceil(max(dx, 0.0)))  # (what both show: the edge the shift
        y1, x1 = n - int(np.ceil(max(-dy, 0.0))), n - int(np.ceil(max(-dx, 0.0)))  # brought in is left out)
        return _shape_change(moved[y0:y1, x0:x1], thumb[y0:y1, x0:x1]) > self.cut_shape

    def _follow(self, image: np.ndarray, check: bool = True) -> bool:
        """Move every track to this frame from its last landmarks; True if any was lost.

        The model draws a face in any crop, so a face that moved out of its crop, or went, would
        be followed onto empty background. With ``check`` (frames without a full detection) the
        detector looks at a small window around each face, and each face it finds goes to at most
        one track (the nearest, within a face width of where the track expected it): one found
        where the track says is confirmed; one found elsewhere (a fast move) re-seeds the track
        from that detection; a track left without one makes this a loss (a full detection runs now)."""
        size = self.landmarker.model.size
        mats = []
        for tr in self.tracks:
            try:
                # From the smoothed points (a steadier crop gives the model steadier input), moved on
                # as far as the face moved last frame: a face in steady motion stays centred.
                mats.append(track_matrix((tr.smoothed if tr.steady is None else tr.steady) + tr.velocity, size))
            except ValueError:
                mats.append(None)
        keep = [i for i, m in enumerate(mats) if m is not None]
        pts = self.landmarker.predict_crops([image] * len(keep), [mats[i] for i in keep]) if keep else []
        if keep:  # (a face that moved otherwise than its last motion, as in a shaking hand, is off its crop)
            pts = self.landmarker.settle([image] * len(keep), [mats[i] for i in keep], pts)
        followed = [self.tracks[i] for i in keep]
        if check:
            found = self._look_all(image, followed)
            seen = self._assign([(tr.box,) for tr in followed], found, led=[_moved(tr.box, tr.velocity) for tr in followed])
            self._found += found
        else:
            seen = [None] * len(followed)
        alive, reseed, unsure = [], [], False
        for k, tr in enumerate(followed):
            try:
                box = box_from_landmarks(pts[k]) if self._inside(pts[k], image) else None
            except ValueError:  # the points collapsed: no face there any more
                box = None
            if check:
                if seen[k] is None:  # nothing for it in the window: gone, too far, or a face the small
                    unsure = True  # window cannot show (a tilted head): a full detection decides, from where
                    tr.pending = None if box is None else (box, pts[k], True)  # it was last seen, whether
                    alive.append(tr)  # the crop's points stand
                    continue
                off = box is None or self._off_track(tr, seen[k].box, box)
                # (also where the crop's points agree with it: they may have slid onto the face in
                # front, and a check that found that face there confirmed the wrong one)
                if self._neighbours_face(tr, seen[k]):
                    unsure = True  # (not this face: a full detection decides)
                    tr.pending = None if box is None else (box, pts[k], True)
                    alive.append(tr)
                    continue
                if off and not _crop_stands(seen[k], box):
                    reseed.append((tr, seen[k]))  # moved faster than the crop could follow
                    alive.append(tr)
                    continue
                tr.score = seen[k].score  # (the bias stays as seeded: a slow drift adds up past off_track)
                tr.seen_box = np.asarray(seen[k].box, np.float64)[:4]
            if box is None:
                continue
            jump = np.linalg.norm(pts[k] - tr.landmarks, axis=1).mean() / inter_ocular(tr.landmarks)
            if not check and jump > self.lost_motion:
                tr.pending = (box, pts[k], False)  # the crop may have lost it: the detection now decides
                alive.append(tr)
                continue
            tr.box, tr.landmarks = box, pts[k]
            alive.append(tr)
        self._reseed(image, [(tr, self._closer(image, d)) for tr, d in reseed])
        lost = len(alive) < len(self.tracks) or unsure
        self.tracks = alive
        return lost

    def _remember_neighbours(self) -> None:
        """The faces found this frame that no track follows, remembered for ``NEIGHBOUR_FRAMES``
        frames after they were last seen (``OVERLAP_HOLD`` times that within a face width of a
        followed face), where each was and how it moved, with ``max_faces`` only: there a face
        beside the followed one has no track of its own to take its detections. A neighbour that
        becomes a track is forgotten then (``_detect``)."""
        if not self.max_faces:
            return
        ours = [b for tr in self.tracks if not self._hidden(tr) for b in (tr.box, tr.seen_box) if b is not None]
        # Where a hidden face was last seen is only a guess of where it is: a face found there is
        # the hidden one's unless a neighbour was expected nearer (the face in front of it, moving
        # on; dropped there, the neighbour was forgotten, and the next detection of it went to the
        # hidden face's track and id).
        stale = [tr.seen_box for tr in self.tracks if self._hidden(tr)]
        guesses = [nb.guess for nb in self.neighbours]
        found = [np.asarray(d.box, np.float64)[:4] for d in self._found]
        free = []
        for k, b in enumerate(found):
            # A face is a track's when it is that track's detection (one face found twice); a face
            # half in front of the followed one is within same_face of it, and still another.
            theirs = min([SAME_DETECTION] + [_offset(b, g) for g in guesses])
            if all(_offset(b, o) > SAME_DETECTION for o in ours) and all(_offset(b, o) > theirs for o in stale) \
                    and all(_offset(b, f) > SAME_DETECTION for f in found[:k]):  # (seen by a check and a detection)
                free.append(b)
        paired = _nearest_pairs(guesses, free, NEIGHBOUR_REACH)
        kept = []
        for i, nb in enumerate(self.neighbours):
            if i in paired:
                nb.saw(free[paired[i]])
            else:
                nb.unseen()
            # Near a followed face, the detector may see the two as one for several frames (the one
            # in front, or a blend of both): remembered longer there.
            near = any(np.linalg.norm(_shift(nb.box, o)) < 1.0 for o in ours + stale)
            if nb.age < NEIGHBOUR_FRAMES * (OVERLAP_HOLD if near else 1):
                kept.append(nb)  # (its guess may run over the followed face: it may be behind it, or in front)
        taken = set(paired.values())
        self.neighbours = kept + [Neighbour(b) for j, b in enumerate(free) if j not in taken]

    def _neighbours_face(self, tr: Track, det: Detection) -> bool:
        """Whether a face found for ``tr`` is the neighbour remembered there rather than ``tr``'s
        face: nearer where the neighbour's motion takes it than to where the track was as the frame
        began (a face passing in front of the followed one, found alone while that one is hidden,
        or where the followed face's crop slid onto it). Every whole-frame match is asked."""
        if self._hidden(tr):  # (its crop may lie on the very face in front of it: where it was last seen counts)
            own = _offset(det.box, tr.seen_box)
        else:  # (from where it was as this frame began: its crop may have slid onto the face in front since)
            was = tr.box if tr.last_box is None else tr.last_box
            own = min(_offset(det.box, was), _offset(det.box, _moved(was, tr.velocity)))
        # (by centre only: a face half in front of another is boxed larger or smaller from frame to frame)
        return any(float(np.linalg.norm(_shift(det.box, nb.guess))) < min(0.25, own / 2) for nb in self.neighbours)

    def _behind(self, tr: Track) -> bool:
        """Whether ``tr``'s face, missed by the last detection, may be behind a remembered
        neighbour passing in front of it: one seen moving (a few sightings, at least PASSING of its
        width a frame) and expected within a box side of where the face was last seen (by then
        often seen in part: its box shrinks to what still shows). A neighbour standing beside a
        face that left or was covered is no reason to hold its place (nothing was reported there
        for 13 frames, and a face then stepping near the spot was given the departed face's id)."""
        if not tr.unconfirmed or tr.seen_box is None:
            return False
        return any(nb.moves >= 2 and float(np.linalg.norm(nb.velocity)) >= PASSING * _side(nb.box)
                   and np.linalg.norm(_shift(nb.guess, tr.seen_box)) < 1.0 for nb in self.neighbours)

    @staticmethod
    def _hidden(tr: Track) -> bool:
        """Missed by two detections in a row (one miss is a blurred frame): its crop follows guesses
        on whatever hides it, so only where a detection last saw it says where the face is."""
        return tr.unconfirmed >= 2 and tr.seen_box is not None

    def _where(self, tr: Track) -> np.ndarray:
        return tr.seen_box if self._hidden(tr) else tr.box

    def _assign(self, expected: list[tuple[np.ndarray, ...]], found: list[Detection], reach: float = 1.0,
                handicap: list[float] | None = None, led: list[np.ndarray] | None = None,
                veto: Callable[[int, Detection], bool] | None = None) -> list[Detection | None]:
        """Each track's detection, one to one, within ``reach`` face widths of any of the track's
        expected boxes: two tracks never take the same face, and a far face is no track's. The
        pairs are those of least distance in all (``handicap``, face widths per track, added to a
        track's distances), a track left without a face counting UNPAIRED times ``reach``: nearest
        pairs first let a track whose expected box had run ahead onto its neighbour take the
        neighbour's face (two faces side by side in a shaking camera swapped ids every frame),
        while pairing all that can be paired chained far pairs through a face that had gone (a
        newcomer took a face's id, and that face a departed one's). UNPAIRED lies between those
        two (measured: 1.03 to 1.65 in the cases of test_video). Ties go to the older track.
        ``veto(i, face)``: a pair that may not be (a neighbour's face), so track ``i`` may take
        another (its own face back in view, beside the one that hid it)."""
        if not expected or not found:
            return [None] * len(expected)
        n, m = len(expected), len(found)
        extra = np.asarray(handicap or [0.0] * n, np.float64)[:, None]
        # ``led``: each track's box moved on by its last motion, a guess (a face shaking back and forth
        # turns; the guess then lies on its neighbour), so its distances count MOTION_DOUBT more
        guesses = led or [None] * n
        dist = np.array([[min([_offset(d.box, b) for b in boxes]
                              + ([_offset(d.box, g) + MOTION_DOUBT] if g is not None else [])) for d in found]
                         for boxes, g in zip(expected, guesses)])
        near = dist < reach  # (NaN: not near)
        if veto is not None:
            near &= np.array([[not veto(i, d) if near[i, j] else False for j, d in enumerate(found)] for i in range(n)])
        cost = np.full((n, m + n), UNREACHED)
        cost[:, :m] = np.where(near, dist + extra + TIE_STEP * np.arange(n)[:, None], UNREACHED)  # (a tie: the older)
        cost[np.arange(n), m + np.arange(n)] = UNPAIRED * reach  # each track's own "no face" (no handicap: that
        # makes a hidden track's pairs dearer than its going without)
        out: list[Detection | None] = [None] * n
        for i, j in enumerate(least_cost_pairs(cost)):
            if j is not None and j < m and near[i, j]:
                out[i] = found[j]
        return out

    def _reseed(self, image: np.ndarray, pairs: list[tuple[Track, Detection]]) -> None:
        """Put each track where its detection is, as a new face would be; the smoother restarts
        there, so the reported points do not lag behind a fast move."""
        if not pairs:
            return
        faces = self.landmarker.landmarks_for([image], [[d for _, d in pairs]])[0]
        for (tr, d), face in zip(pairs, faces):
            tr.landmarks, tr.smoothed, tr.box, tr.score, tr.filter, tr.steady = \
                face.landmarks, face.landmarks, face.box, face.score, self._new_filter(), None
            tr.bias, tr.seen_box = _bias(face), np.asarray(d.box, np.float64)[:4]

    def _closer(self, image: np.ndarray, d: Detection) -> Detection:
        """A window check's face with keypoints read again at the size the detector reads best:
        found at ~48 px, its keypoints can be rough (a face rolled 24° given a level eye line,
        scored 0.96; the points read through that crop were 44 % NME off, against 3.7 % from a full
        detection of the same frame). RetinaFace's faces only (others keep theirs), and only faces
        found upright: a face found in a turned view (``--turned``) would be looked at upright,
        where its keypoints come out as if it were upright."""
        det = self.landmarker.detector
        if not hasattr(det, "keypoints_in") or d.quarter_turns:
            return d
        kps = det.keypoints_in(image, d.box)
        side = max(d.box[2] - d.box[0], d.box[3] - d.box[1], 1e-9)
        return d if kps is None else Detection(np.asarray(d.box, np.float64), d.score, kps, d.template,
                                               seen_at=det.BOX_NET / side)

    def _merge(self) -> None:
        """Two tracks on one face (a re-seed onto a neighbour's face, a detection counted twice):
        the older id stays."""
        kept: list[Track] = []
        for tr in sorted(self.tracks, key=lambda tr: tr.id):
            if not any(_offset(tr.box, other.box) < SAME_DETECTION for other in kept
                       if not other.unconfirmed and not tr.unconfirmed):
                kept.append(tr)
        kept_ids = {id(tr) for tr in kept}  # (by identity: a Track holds arrays)
        self.tracks = [tr for tr in self.tracks if id(tr) in kept_ids]

    def _off_track(self, tr: Track, det: np.ndarray, box: np.ndarray) -> bool:
        """Whether the detector's box ``det`` says the face is elsewhere than the tracked ``box``
        (beyond the face's usual offset between the two, or at another size)."""
        return float(np.linalg.norm(_shift(det, box) - tr.bias)) > self.off_track or _resized(det, box) > 0.2

    def _look_all(self, image: np.ndarray, tracks: list[Track]) -> list[Detection]:
        """Every face the window checks find; one seen from two windows counts once."""
        found: list[Detection] = []
        for tr in tracks:
            for d in self._look(image, tr.box, tr.velocity, self._check_px(tr)):
                if all(_offset(d.box, f.box) > SAME_DETECTION for f in found):
                    found.append(d)
        return found

    def _look(self, image: np.ndarray, box: np.ndarray, velocity: np.ndarray, check_px: float) -> list[Detection]:
        """The detector's faces in a window of ``check_window`` face widths around ``box`` and
        where ``velocity`` would take it (both: the motion may have stopped or turned), the face
        shrunk to about ``check_px`` pixels: a few per cent of a full detection's time."""
        h, w = image.shape[:2]
        side = max(box[2] - box[0], box[3] - box[1], 1.0)
        half = side * self.check_window / 2 + float(np.abs(velocity).max()) / 2
        cx, cy = (box[0] + box[2] + velocity[0]) / 2, (box[1] + box[3] + velocity[1]) / 2
        x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
        x1, y1 = int(min(w, np.ceil(cx + half))), int(min(h, np.ceil(cy + half)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return []
        s = min(1.0, check_px / side)
        window = image[y0:y1, x0:x1]
        ww, wh = max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))
        small = np.ascontiguousarray(cv2.resize(window, (ww, wh), interpolation=cv2.INTER_AREA) if s < 1.0 else window)
        sx, sy = (x1 - x0) / ww, (y1 - y0) / wh
        edge = 2 * max(sx, sy)  # two window pixels
        out = []
        # At the window's own size: a --min-face setting would shrink the window below the face.
        for d in self.landmarker.find_faces(small, as_is=True):
            b = align.rescale(np.reshape(d.box, (2, 2)), (sx, sy), (x0, y0)).reshape(4)
            k = None if d.kps is None else align.rescale(np.reshape(d.kps, (-1, 2)), (sx, sy), (x0, y0))
            # A face cut by the window's edge (not the image's) is half a face: its box is no guide.
            if (x0 > 0 and b[0] <= x0 + edge) or (y0 > 0 and b[1] <= y0 + edge) or (x1 < w and b[2] >= x1 - edge) \
                    or (y1 < h and b[3] >= y1 - edge):
                continue
            out.append(Detection(b, d.score, k, d.template, None if d.seen_at is None else d.seen_at / max(sx, sy),
                                 d.quarter_turns))
        return out

    @staticmethod
    def _inside(pts: np.ndarray, image: np.ndarray) -> bool:
        h, w = image.shape[:2]
        c = pts.mean(0)
        return -0.1 * w < c[0] < 1.1 * w and -0.1 * h < c[1] < 1.1 * h

    def _detect(self, image: np.ndarray, cut: bool = False) -> None:
        """Confirm tracks the detector still sees (others are hidden at once, checked again on each
        next frame and dropped after ``max_unconfirmed`` misses in a row: the model finds a "face"
        in any crop, so a face that left would linger; a face the detector misses for a few blurred
        frames keeps its id), re-seed those it finds off their track (after a ``cut``, every one:
        the face there may be another person's, and a crop from the last shot's points fits it
        badly), and start tracks for detected faces that no track is near (``same_face``)."""
        fl = self.landmarker
        found: list[Detection] = fl.find_faces(image, drop_unseen=False)  # (a face's frames before weigh it here)
        self.turned_frames += looks_turned(fl, found)  # (said at the end: --turned reads such faces)
        reseed = []
        # A hidden face's crop may have slid onto the face in front of it (the model draws a face in
        # any crop) and must not take that face's detection, and its id, from the track following
        # it; so a hidden track counts as HIDDEN_HANDICAP face widths farther than it is, and wins a
        # face only where it is clearly nearer (its own face, with a neighbour's detection missed).
        # Each track is sought where it was followed to, where its last motion takes it (as the window
        # checks do: a fast face's followed box lags; a guess, see _assign), and, hidden, where a
        # detection last saw it.
        expected = [(tr.box,) + ((tr.seen_box,) if tr.unconfirmed and tr.seen_box is not None else ()) for tr in self.tracks]
        # Not the face beside it, found while this one is hidden behind it or its crop slid onto it.
        # A face behind one passing in front may take another face instead (its own, back in view
        # beside the one in front); any other track goes without (another face beside it, farther,
        # was taken for it).
        behind = {id(tr) for tr in self.tracks if self._behind(tr)}
        check = not cut and bool(self.neighbours)
        veto = (lambda k, d: id(self.tracks[k]) in behind and self._neighbours_face(self.tracks[k], d)) if check else None
        matches = self._assign(expected, found, handicap=[HIDDEN_HANDICAP if tr.unconfirmed else 0.0 for tr in self.tracks],
                               led=[_moved(tr.box, tr.velocity) for tr in self.tracks], veto=veto)
        self._found += found
        for k, (tr, match) in enumerate(zip(self.tracks, matches)):
            if match is not None and check and self._neighbours_face(tr, match):
                matches[k] = match = None
            if match is not None:
                was_hidden = tr.unconfirmed >= 2  # (one miss is a blurred frame: the crop was still on the face)
                tr.unconfirmed, tr.score = 0, match.score  # the score of the detection that last saw it
                tr.seen_box = np.asarray(match.box, np.float64)[:4]
                if was_hidden or cut:  # followed from guesses on whatever hid it, or from another shot: from the detection
                    reseed.append((tr, match))
                    continue
                if tr.pending is not None and not self._off_track(tr, match.box, tr.pending[0]):
                    tr.box, tr.landmarks = tr.pending[0], tr.pending[1]  # the crop was right
                    if tr.pending[2]:  # but the window check could not see the face: look closer next time
                        tr.check_px, tr.check_age = min(4 * self.check_px, 2 * self._check_px(tr)), 0
                    continue
                if tr.pending is not None and tr.pending[2] and _crop_stands(match, tr.pending[0]):
                    tr.box, tr.landmarks = tr.pending[0], tr.pending[1]  # (the window check missed it, as it
                    tr.check_px, tr.check_age = min(4 * self.check_px, 2 * self._check_px(tr)), 0  # may a turned face)
                    continue
                if tr.pending is not None:  # the crop went off the face: from the detection (keeping the last
                    reseed.append((tr, match))  # frame's points instead froze them while the face moved on)
                    continue
                try:
                    off = self._off_track(tr, match.box, box_from_landmarks(tr.landmarks))
                except ValueError:
                    off = True
                if off:
                    reseed.append((tr, match))
            else:
                tr.unconfirmed += 1
        self._reseed(image, reseed)
        # A face hidden behind a remembered neighbour (one passing in front of it) is kept longer,
        # and keeps its place: it comes back when the one in front has passed (it was dropped
        # and the face in front followed in its place, with max_faces 1 for good).
        behind = {id(tr) for tr in self.tracks if self._behind(tr)}  # (with this frame's misses)
        self.tracks = [tr for tr in self.tracks
                       if tr.unconfirmed < self.max_unconfirmed * (OVERLAP_HOLD if id(tr) in behind else 1)]
        taken = {id(m) for m in matches if m is not None}
        dets = [d for d in found if id(d) not in taken and all(_offset(d.box, self._where(tr)) >= self.same_face
                                                             for tr in self.tracks)]
        dets = sorted(dets, key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        if self.max_faces:  # a face missed twice in a row gives its place to a face in view (one miss
            # is a blurred frame: the face keeps its place and id; after a cut, one miss: another shot)
            # longest-missed first
            misses = 1 if cut else 2
            keep = [tr for tr in self.tracks if tr.unconfirmed < misses or id(tr) in behind]
            dets = dets[: max(0, self.max_faces - len(keep))]
            gone = sorted((tr for tr in self.tracks if tr.unconfirmed >= misses and id(tr) not in behind),
                          key=lambda tr: -tr.unconfirmed)
            gone = {id(tr) for tr in gone[: max(0, len(self.tracks) + len(dets) - self.max_faces)]}
            self.tracks = [tr for tr in self.tracks if id(tr) not in gone]
        if not dets:
            return
        # A face followed from now on is no neighbour: remembered as one, it was expected where the
        # new track's own detections are, took them (_neighbours_face), and the id changed every few frames.
        self.neighbours = [nb for nb in self.neighbours if all(_offset(d.box, nb.guess) >= NEIGHBOUR_REACH for d in dets)]
        for face in fl.landmarks_for([image], [dets])[0]:
            self.tracks.append(Track(self.next_id, face.landmarks, face.landmarks, face.box, face.score, self._new_filter(),
                                     bias=_bias(face), seen_box=np.asarray(face.box, np.float64)[:4]))
            self.next_id += 1

    def landmarks68(self, tr: Track) -> np.ndarray:
        return labelmap.to68(tr.smoothed, self.landmarker.map68)

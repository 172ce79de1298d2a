"""Face tracks across video frames: detect every N frames (and when a track is lost), in between
align each face from its previous landmarks; keep stable ids; smooth each track's points."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import align, labelmap
from .detector import Detection
from .landmarker import FaceLandmarker, track_matrix
from .layouts import five_points
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


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_from_landmarks(landmarks98: np.ndarray) -> np.ndarray:
    """A detector-style box for tracked frames: the calibrated RetinaFace box placed by the face."""
    m = align.umeyama(five_points(landmarks98), align.TEMPLATES["landmarks98"])
    cx, cy, side = align.TEMPLATES["box"]
    inv = align.invert(m)
    c = align.apply(inv, np.array([[cx, cy]]))[0]
    half = side / align.scale_of(m) / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def inter_ocular(landmarks98: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks98[60] - landmarks98[72])) + 1e-6


@dataclass
class Tracker:
    landmarker: FaceLandmarker
    detect_every: int = 10
    max_faces: int = 0  # 0: no limit
    smooth: bool = True
    min_cutoff: float = POSE_MIN_CUTOFF  # see smooth.FaceSmoother
    beta: float = POSE_BETA
    shape_min_cutoff: float = SHAPE_MIN_CUTOFF
    shape_beta: float = SHAPE_BETA
    lost_motion: float = 0.6  # a jump beyond this many inter-ocular distances in one frame is a loss
    max_unconfirmed: int = 5  # drop a hidden track after this many detections in a row missed it
    cut_level: float = 20.0  # mean change (0-255) of a small brightness thumbnail that counts as a cut
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    frames_since_detect: int = 0
    _thumb: np.ndarray | None = field(default=None, repr=False)

    def _new_filter(self) -> FaceSmoother | None:
        if not self.smooth:
            return None
        return FaceSmoother(align.TEMPLATES["mean98"], self.min_cutoff, self.beta, self.shape_min_cutoff, self.shape_beta)

    def step(self, image: np.ndarray, t: float) -> list[Track]:
        """Landmarks for one frame at time ``t`` (seconds); returns the tracks the latest detection
        saw (hidden ones are still followed, and keep their id if a detection finds them again).

        Existing faces are always followed from their previous landmarks (no jump on detection
        frames); the detector runs every ``detect_every`` frames, at a cut, when a face was lost,
        when there is none, and on every frame while a track is hidden; it only adds faces that
        no track covers."""
        lost = self._follow(image) if self.tracks else False
        self.frames_since_detect += 1
        doubt = any(tr.unconfirmed for tr in self.tracks)
        if self._cut(image) or not self.tracks or lost or doubt or self.frames_since_detect >= self.detect_every:
            self._detect(image)
            self.frames_since_detect = 0
        for tr in self.tracks:
            tr.smoothed = tr.filter(tr.landmarks, t, inter_ocular(tr.landmarks)) if tr.filter else tr.landmarks
        # A track the last detection did not see is followed (it keeps its id if seen again on the
        # next frame) but not reported: the model draws a face in any crop, even an empty one.
        return [tr for tr in self.tracks if not tr.unconfirmed]

    def _cut(self, image: np.ndarray) -> bool:
        """A scene cut (or a cut to black): the whole frame changed at once, so faces may be gone
        without moving; detect now instead of up to ``detect_every`` frames later."""
        green = image[..., 1] if image.ndim == 3 else image  # brightness enough to see a cut
        sy, sx = max(1, green.shape[0] // 128), max(1, green.shape[1] // 128)  # ~128 px sampled: 0.04 ms
        thumb = cv2.resize(np.ascontiguousarray(green[::sy, ::sx]), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        prev, self._thumb = self._thumb, thumb
        return prev is not None and float(np.abs(thumb - prev).mean()) > self.cut_level

    def _follow(self, image: np.ndarray) -> bool:
        """Move every track to this frame from its last landmarks; True if any was lost."""
        size = self.landmarker.model.size
        mats = []
        for tr in self.tracks:
            try:
                # From the smoothed points: a steadier crop gives the model steadier input.
                mats.append(track_matrix(tr.smoothed, size))
            except ValueError:
                mats.append(None)
        keep = [i for i, m in enumerate(mats) if m is not None]
        pts = self.landmarker.predict_crops([image] * len(keep), [mats[i] for i in keep]) if keep else []
        alive = []
        for k, i in enumerate(keep):
            tr = self.tracks[i]
            jump = np.linalg.norm(pts[k] - tr.landmarks, axis=1).mean() / inter_ocular(tr.landmarks)
            if jump > self.lost_motion or not self._inside(pts[k], image):
                continue  # lost: dropped now, found again by the detector
            try:
                tr.box = box_from_landmarks(pts[k])
            except ValueError:  # the points collapsed: no face there any more
                continue
            tr.landmarks = pts[k]
            alive.append(tr)
        lost = len(alive) < len(self.tracks)
        self.tracks = alive
        return lost

    @staticmethod
    def _inside(pts: np.ndarray, image: np.ndarray) -> bool:
        h, w = image.shape[:2]
        c = pts.mean(0)
        return -0.1 * w < c[0] < 1.1 * w and -0.1 * h < c[1] < 1.1 * h

    def _detect(self, image: np.ndarray) -> None:
        """Confirm tracks the detector still sees (others are hidden at once, checked again on each
        next frame and dropped after ``max_unconfirmed`` misses in a row: the model finds a "face"
        in any crop, so a face that left would linger; a face the detector misses for a few blurred
        frames keeps its id), and start
        tracks for detected faces that no track covers (box overlap <= 0.3)."""
        fl = self.landmarker
        found: list[Detection] = fl.detector.detect(image)
        for tr in self.tracks:
            match = max(found, key=lambda d: iou(d.box, tr.box), default=None)
            if match is not None and iou(match.box, tr.box) > 0.3:
                tr.unconfirmed, tr.score = 0, match.score  # the score of the detection that last saw it
            else:
                tr.unconfirmed += 1
        self.tracks = [tr for tr in self.tracks if tr.unconfirmed < self.max_unconfirmed]
        dets = [d for d in found if all(iou(d.box, tr.box) <= 0.3 for tr in self.tracks)]
        dets = sorted(dets, key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        if self.max_faces:  # a face missed twice in a row gives its place to a face in view (one miss
            # is a blurred frame: the face keeps its place and id); longest-missed first
            keep = [tr for tr in self.tracks if tr.unconfirmed < 2]
            dets = dets[: max(0, self.max_faces - len(keep))]
            gone = sorted((tr for tr in self.tracks if tr.unconfirmed >= 2), key=lambda tr: -tr.unconfirmed)
            gone = {id(tr) for tr in gone[: max(0, len(self.tracks) + len(dets) - self.max_faces)]}
            self.tracks = [tr for tr in self.tracks if id(tr) not in gone]
        if not dets:
            return
        for face in fl.landmarks_for([image], [dets])[0]:
            self.tracks.append(Track(self.next_id, face.landmarks, face.landmarks, face.box, face.score, self._new_filter()))
            self.next_id += 1

    def landmarks68(self, tr: Track) -> np.ndarray:
        return labelmap.to68(tr.smoothed, self.landmarker.map68)

"""PFLD-GhostOne (WFLW-trained, Apache-2.0) as a 98-point teacher for pseudo-labels.

Never shipped: users point ``--teacher`` at a directory holding the ONNX files. Their crop is the
face box made square (side = max(w, h), same centre, no margin), resized to 112, RGB scaled to
[-1, 1]; the output is 98 (x, y) pairs in [0, 1] of the crop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import align
from ..layouts import FLIP98
from ..runtime import ort_session, providers_for

SIZE = 112


def _session(path: Path):
    return ort_session(str(path), providers_for("cuda"))  # (the CPU where onnxruntime has no CUDA)


@dataclass
class Teacher:
    paths: list[Path]
    scales: tuple[float, ...] = (0.95, 1.0, 1.05)
    flip: bool = True
    _sessions: list = field(default_factory=list, init=False, repr=False)

    @classmethod
    def from_dir(cls, directory: str | Path, **kw) -> "Teacher":
        """The teacher models in ``directory``, loaded now: a missing or damaged one is a
        ``FileNotFoundError``/``ValueError`` before the long detector pass, not after it."""
        if Path(directory).is_file():
            raise FileNotFoundError(f"--teacher {directory} is a file: give the folder that holds the PFLD_*.onnx models")
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"teacher directory not found: {directory}")
        paths = sorted(Path(directory).glob("PFLD_*.onnx"))
        if not paths:
            raise FileNotFoundError(f"no PFLD_*.onnx teacher models in {directory}")
        teacher = cls(paths, **kw)
        for p in paths:
            try:
                teacher._sessions.append(_session(p))
            except MemoryError:  # (not the file's fault)
                raise
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for any unreadable file
                raise ValueError(f"{p} is not a valid ONNX model: onnxruntime cannot load it "
                                 f"({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})") from None
        return teacher

    def fingerprint(self) -> str:
        """What the teacher is, by its files' contents: cached targets of other weights never pass
        for these (a file of the same name with other weights gets another cache)."""
        import hashlib

        h = hashlib.sha1()
        for p in self.paths:
            h.update(p.name.encode() + b"\0" + hashlib.sha1(p.read_bytes()).digest())
        return h.hexdigest()

    @property
    def sessions(self):
        if not self._sessions:
            self._sessions = [_session(p) for p in self.paths]
        return self._sessions

    def _crops(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        x1, y1, x2, y2 = box
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
        batch, mats = [], []
        for s in self.scales:
            half = side * s / 2
            # Map the square [cx-half, cx+half] edge to edge onto the 112-px crop, the box read in edge
            # coordinates (pixel i covers i to i+1) and the matrix in centre ones (pixel i at i):
            # hence the half pixels. (The pseudo-labels were made so: the teacher's own crop.)
            k = SIZE / (2 * half)
            m = np.array([[k, 0, -0.5 - k * (cx - half - 0.5)], [0, k, -0.5 - k * (cy - half - 0.5)]])
            crop = cv2.warpAffine(image, m, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
            for flipped in (False, True) if self.flip else (False,):
                c = crop[:, ::-1] if flipped else crop
                batch.append(c)
                mats.append((m, flipped))
        x = np.stack(batch)[..., ::-1].astype(np.float32) / 127.5 - 1.0
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), mats

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Average of all models, scales and flips: (98, 2) image coordinates."""
        x, mats = self._crops(image, np.asarray(box, np.float64))
        preds = []
        for sess in self.sessions:
            name = sess.get_inputs()[0].name
            for i in range(len(x)):  # the teacher graphs have a fixed batch of 1
                out = sess.run(None, {name: x[i : i + 1]})[0].reshape(98, 2).astype(np.float64)
                m, flipped = mats[i]
                pts = out * SIZE - 0.5  # [0,1] of the crop -> crop pixels
                if flipped:
                    pts = pts[FLIP98]
                    pts[:, 0] = SIZE - 1 - pts[:, 0]
                preds.append(align.apply(align.invert(m), pts))
        return np.mean(preds, axis=0)

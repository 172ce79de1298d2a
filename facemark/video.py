"""Video in and out for ``facemark video``: frame sources (files, frame folders or globs,
cameras), an output writer that renames into place only when complete, and the per-frame loop."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .imageio import IMAGE_EXTS, ImageError, publish, read_image

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".webm": "VP80"}


class VideoError(ValueError):
    """Input that is not a readable video (or frames), or an output that cannot be written."""


@dataclass
class Source:
    name: str
    fps: float
    width: int
    height: int
    frames: int | None  # None when unknown (cameras)
    _cap: cv2.VideoCapture | None = None
    _files: list[Path] | None = None
    decode_errors: int = 0

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time in seconds, BGR frame) for every frame that decodes."""
        if self._files is not None:
            for i, f in enumerate(self._files):
                try:
                    frame = read_image(f)
                except ImageError:
                    self.decode_errors += 1
                    continue
                if frame.shape[:2] != (self.height, self.width):
                    frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
                yield i, i / self.fps, frame
            return
        cap = self._cap
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = msec / 1000.0 if msec and msec > 0 else i / self.fps
            yield i, t, frame
            i += 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


def open_source(spec: str, fps: float | None = None) -> Source:
    """A video file, a directory or glob of frames, or a camera index."""
    if spec.isdigit() and not Path(spec).exists():
        cap = cv2.VideoCapture(int(spec))
        if not cap.isOpened():
            raise VideoError(f"camera {spec} cannot be opened")
        f = fps or cap.get(cv2.CAP_PROP_FPS) or 30.0
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return Source(f"camera {spec}", f, w, h, None, _cap=cap)
    p = Path(spec)
    files = None
    if p.is_dir():
        files = sorted(x for x in p.iterdir() if x.is_file() and x.suffix.lower() in IMAGE_EXTS)
    elif any(c in spec for c in "*?[") and not p.exists():
        import glob

        files = sorted(Path(x) for x in glob.glob(spec) if Path(x).suffix.lower() in IMAGE_EXTS)
    if files is not None:
        if not files:
            raise VideoError(f"{spec}: no image frames found")
        first = None
        for f in files:
            try:
                first = read_image(f)
                break
            except ImageError:
                continue
        if first is None:
            raise VideoError(f"{spec}: none of the frames can be read")
        return Source(spec, fps or 30.0, first.shape[1], first.shape[0], len(files), _files=files)
    if not p.exists():
        raise VideoError(f"{spec}: no such file")
    if not p.is_file() or p.stat().st_size == 0:
        raise VideoError(f"{spec}: not a video file (empty or not a file)")
    cap = cv2.VideoCapture(str(p))
    ok = cap.isOpened()
    first_ok, first = cap.read() if ok else (False, None)
    if not ok or not first_ok or first is None:
        cap.release()
        raise VideoError(f"{spec}: not a video OpenCV can decode")
    cap.release()
    cap = cv2.VideoCapture(str(p))  # reopen: seeking back is unreliable on damaged files
    f = fps or cap.get(cv2.CAP_PROP_FPS)
    if not f or not np.isfinite(f) or f <= 0 or f > 1000:
        f = 30.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return Source(spec, f, first.shape[1], first.shape[0], n if n > 0 else None, _cap=cap)


class AtomicVideoWriter:
    """cv2.VideoWriter into a hidden temporary file beside the target; ``commit`` renames it."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        ext = path.suffix.lower()
        if ext not in FOURCC:
            raise VideoError(f"--out {path}: use one of {', '.join(sorted(FOURCC))}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=ext, dir=path.parent)
        os.close(fd)
        self.path, self.tmp = path, Path(tmp)
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*FOURCC[ext]), fps, size)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"cannot write {ext} video here (no encoder for {FOURCC[ext]})")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.frames += 1

    def commit(self) -> None:
        self.writer.release()
        publish(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.release()
        self.tmp.unlink(missing_ok=True)


class AtomicTextWriter:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self.path, self.tmp = path, Path(tmp)
        self.f = os.fdopen(fd, "w")

    def write_line(self, obj: dict) -> None:
        self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def commit(self) -> None:
        self.f.close()
        publish(self.tmp, self.path)

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


def mux_audio(video: Path, source: str) -> bool:
    """Copy the source's audio into ``video`` with ffmpeg, if ffmpeg exists; True if done."""
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg or not Path(source).is_file():
        return False
    tmp = video.with_name(f".{video.stem}.audio{video.suffix}")
    cmd = [ffmpeg, "-v", "error", "-y", "-i", str(video), "-i", source, "-map", "0:v:0", "-map", "1:a:0?",
           "-c:v", "copy", "-c:a", "aac", "-shortest", str(tmp)]
    try:
        ok = subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0 and tmp.is_file()
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if ok:
        os.replace(tmp, video)
    else:
        tmp.unlink(missing_ok=True)
    return ok


def frame_record(index: int, t: float, tracks, tracker) -> dict:
    r = lambda a: np.round(np.asarray(a, np.float64), 2).tolist()  # noqa: E731
    return {"frame": index, "time": round(float(t), 4),
            "faces": [{"id": tr.id, "box": r(tr.box), "score": round(float(tr.score), 4), "landmarks": r(tr.smoothed),
                       "landmarks68": r(tracker.landmarks68(tr))} for tr in tracks]}


@dataclass
class VideoSummary:
    frames: int  # frames processed and written
    seconds: float
    tracks: int  # face tracks started
    decode_errors: int  # frames that did not decode (counted once)
    interrupted: bool
    audio_kept: bool | None  # None: no audio to keep (or no --out)


def process_video(source: str, fl, out_path: Path | None = None, json_path: Path | None = None, *,
                  detect_every: int = 10, smooth: str = "one-euro", max_faces: int = 0, fps: float | None = None,
                  min_cutoff: float | None = None, beta: float | None = None, log=print, progress=None) -> VideoSummary:
    """Track, smooth and draw landmarks on every frame of ``source``; write the annotated video
    and/or JSON lines atomically (renamed into place when done, temp files removed otherwise).

    Ctrl-C finishes the current frame and keeps what was done (``interrupted=True``); a second one
    stops at once, still closing the outputs. Raises ``UsageError``/``VideoError`` for requests that
    cannot work, before any frame is decoded.
    """
    import signal
    import threading
    import time

    from .draw import draw
    from .errors import UsageError
    from .results import Face
    from .track import Tracker

    if out_path is None and json_path is None:
        raise UsageError("give --out VIDEO and/or --json FILE.jsonl")
    if smooth not in ("one-euro", "none"):
        raise UsageError("--smooth must be one-euro or none")
    if detect_every < 1:
        raise UsageError("--detect-every must be at least 1")
    if max_faces < 0:
        raise UsageError("--max-faces must be 0 (all) or more")
    if fps is not None and fps <= 0:
        raise UsageError("--fps must be positive")
    for p in (out_path, json_path):
        if p is not None and Path(source).exists() and p.resolve() == Path(source).resolve():
            raise UsageError(f"refusing to overwrite the input {source}")
    src = open_source(source, fps)
    writer = text = None
    try:
        if out_path is not None:
            writer = AtomicVideoWriter(out_path, src.fps, (src.width, src.height))
        if json_path is not None:
            text = AtomicTextWriter(json_path)
    except (VideoError, OSError) as e:
        if writer:
            writer.abort()
        src.close()
        raise VideoError(str(e)) from None
    tuned = {k: v for k, v in (("min_cutoff", min_cutoff), ("beta", beta)) if v is not None}  # else smooth.py's
    tracker = Tracker(fl, detect_every=detect_every, max_faces=max_faces, smooth=smooth == "one-euro", **tuned)
    stop = {"asked": False}

    def on_sigint(signum, frame):  # finish the current frame, then stop
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    done = 0
    start = time.perf_counter()
    try:
        for i, t, frame in src:
            tracks = tracker.step(frame, t)
            if writer is not None:
                faces = [Face(tr.box, tr.score, tr.smoothed, tracker.landmarks68(tr)) for tr in tracks]
                writer.write(draw(frame, faces, ids=[tr.id for tr in tracks]))
            if text is not None:
                text.write_line(frame_record(i, t, tracks, tracker))
            done += 1
            if progress:
                progress(done, src.frames, done / max(1e-9, time.perf_counter() - start))
            if stop["asked"]:
                break
    except BaseException:
        for w in (writer, text):
            if w is not None:
                w.abort()
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        src.close()
    elapsed = time.perf_counter() - start
    if done == 0:
        for w in (writer, text):
            if w is not None:
                w.abort()
        raise VideoError(f"{source}: no frame could be decoded")
    for w in (writer, text):
        if w is not None:
            w.commit()
    audio = None
    if out_path is not None and Path(source).is_file():
        audio = mux_audio(out_path, source)
    missing = (src.frames - done) if src.frames and not stop["asked"] else 0
    return VideoSummary(done, elapsed, tracker.next_id, src.decode_errors + max(0, missing), stop["asked"], audio)

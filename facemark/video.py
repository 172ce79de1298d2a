"""Video in and out for ``facemark video``: frame sources (files, frame folders or globs,
cameras), an output writer that renames into place only when complete, and the per-frame loop."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .align import letterbox, rescale
from .containers import (avi_empty_frames, avi_stated_rate, count_is_exact, cut_short, has_audio, looks_like_video,
                         matroska_has_no_frames, mp4_has_no_samples)
from .errors import SEEN, STOP_SIGNALS, FacemarkError, UsageError, stopped
from .imageio import (IMAGE_EXTS, ImageError, descriptor_named, make_temp, missing_folders, output_target, publish,
                      quiet_stderr, read_image, remove_stale_temps, standard_stream_file, too_long_name,
                      write_whole)
from .inputs import is_image_name, shown_name, utf8_name
from .results import Face

MAX_BAD_RUN = 250  # consecutive undecodable frames after which a file is taken to end there
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".webm": "VP80"}
VIDEO_EXTS = {*FOURCC, ".mpg", ".mpeg", ".wmv", ".gif"}  # (videos a folder or pattern of frames may hold instead)


class VideoError(FacemarkError, ValueError):
    """Input that is not a readable video (or frames), or an output that cannot be written."""


class VideoNotFound(VideoError, FileNotFoundError):
    """A video, frame folder or picture that is not there: a ``FileNotFoundError`` as for
    ``FaceLandmarker.detect``'s paths (and a ``VideoError``, as every bad input here), naming the
    path in ``filename`` as open()'s own does."""

    def __init__(self, message: str, filename: str | None = None):
        super().__init__(message)
        self.filename = filename
        self.errno, self.strerror = errno.ENOENT, os.strerror(errno.ENOENT)

    def __str__(self) -> str:  # (OSError's own, once filename is set: "[Errno None] None: 'x'")
        return str(self.args[0])

    def __reduce__(self):  # (from a worker process: the path too)
        return type(self), (self.args[0], self.filename), self.__dict__ or None


class VideoWriteError(VideoError):
    """The outputs could not be completed (a full disk, say): nothing was kept. Exit 1, not 2."""


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
    fixed_rate: bool = False  # --fps given: frame times are i / fps, whatever the file's timestamps say
    resized: int = 0  # frames of a folder whose size differs from the first frame's (fitted into it)
    most_shrunk: float = 1.0  # the most such a frame was scaled down by (its side over the fitted side)
    scale: tuple[float, float] = (1.0, 1.0)  # the last frame's own size over the size it was scaled to
    shift: tuple[int, int] = (0, 0)  # where that scaled picture starts in the first frame's size
    image: str | None = None  # a folder's frames: the last frame's file (its JSON line names it)
    count_exact: bool = True  # False: ``frames`` is the container's estimate (duration x rate), which may be high
    empty: int = 0  # an AVI's empty "dropped frame" chunks (a variable rate kept): counted frames that lose nothing
    cut_short: bool = False  # the file ends before the data it announces (see ``cut_short``)
    rate_doubted: float | None = None  # the stated rate, where neither it nor the frames' times could be believed
    bad_files: list[str] = field(default_factory=list)  # a folder's frames that did not decode (the first few)
    left_out: tuple[int, int] = (0, 0)  # a frames folder's subfolders and video files (not frames): said, not read

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time in seconds, BGR frame) for every frame that decodes."""
        if self._files is not None:
            for i, f in enumerate(self._files):
                try:
                    frame = read_image(f)
                except ImageError:
                    self.decode_errors += 1
                    if len(self.bad_files) < 3:
                        self.bad_files.append(f.name)
                    continue
                self.scale, self.shift, self.image = (1.0, 1.0), (0, 0), str(f)
                if frame.shape[:2] != (self.height, self.width):
                    self.resized += 1
                    frame, self.scale, self.shift = letterbox(frame, self.width, self.height)
                    self.most_shrunk = max(self.most_shrunk, *self.scale)
                yield i, i / self.fps, frame
            return
        cap = self._cap
        i = fails = 0
        # Times from the container where it gives them. OpenCV says 0 for a first few frames of some
        # files (their times not known yet): those wait, up to UNTIMED_WAIT frames, for the next
        # known time and are spread evenly up to it (i / fps for those frames had mixed two clocks:
        # 0.033, 0.067, then 0.001 in a 5000 fps file: times that went back).
        last_i, last_t, waiting = 0, 0.0, []

        def spread(until_i: int, until_t: float):
            for j, fr in waiting:
                yield j, last_t + (until_t - last_t) * (j - last_i) / max(until_i - last_i, 1), fr
            waiting.clear()

        while True:
            with quiet_stderr():  # FFmpeg's own complaints about damaged packets
                ok, frame = cap.read()
            if not ok:
                # A damaged stretch mid-file: the demuxer moves on, so keep reading while the
                # container promises more frames (a run of failures longer than MAX_BAD_RUN ends it).
                fails += 1
                if self.frames is None or i + fails >= self.frames or fails > MAX_BAD_RUN:  # i counts earlier bad frames
                    break
                continue
            self.decode_errors += fails
            i += fails  # frame numbers stay those of the file
            fails = 0
            if self.fixed_rate:
                yield i, i / self.fps, frame
                i += 1
                continue
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            if i > 0 and not (msec and msec > 0) and self.frames is None:  # (a camera: no time to wait for)
                yield i, i / self.fps, frame
                i += 1
                continue
            if i > 0 and not (msec and msec > 0):  # (not known yet)
                waiting.append((i, frame))
                if len(waiting) >= UNTIMED_WAIT:  # (never known: at the stated rate)
                    yield from spread(i, last_t + (i - last_i) / self.fps)
                    last_i, last_t = i, last_t + (i - last_i) / self.fps
                i += 1
                continue
            t = msec / 1000.0 if msec and msec > 0 else 0.0  # (frame 0: its own time, else 0; a damaged time
            # is the Timeline's to judge, and stays as the file says)
            yield from spread(i, t)
            last_i, last_t = i, t
            yield i, t, frame
            i += 1
        if waiting:
            end = waiting[-1][0]
            yield from spread(end, last_t + (end - last_i) / self.fps)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


MIN_RATE = 0.01  # fps: a container stating less (0.001 in a damaged header) is not believed; VideoWriter refuses it
UNTIMED_WAIT = 8  # frames without a known time held back for the next one (then timed at the stated rate)
FIRST_FRAME_TRIES = 50  # frames read to find one that decodes (and sets the size) before giving up
RATE_FRAMES = 48  # frames whose times check the rate the container states
MAX_PLAUSIBLE_RATE = 240.0  # fps: a container stating more than this and its frames' own rate is believed less
STANDARD_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 100.0, 119.88, 120.0)


def _video_bytes(path: Path) -> bool:
    """Whether a file starts as an MP4/MOV, AVI, Matroska/WebM, MPEG or FLV video does."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return looks_like_video(head)


PHOTO_BYTES = 256 << 20  # the most a file that is no video is read as a photo to say what it is


def _read_as_photo(p: Path) -> str | None:
    """What reading a file that is no video as a photo says of it (a phone's HEIC: convert it),
    for files of photo size (a damaged video of gigabytes is not read whole for that). A photo
    under another name decodes there (OpenCV's video reader opens it as one frame): None."""
    try:
        if p.suffix.lower() in VIDEO_EXTS or p.stat().st_size > PHOTO_BYTES:
            return None
        read_image(p)
    except ImageError as e:
        return str(e)
    except (OSError, MemoryError):
        pass
    return None


def _photo_said(said: str | None) -> str | None:
    """``said`` (reading a file as a photo) where it tells more than "not an image": empty, cut
    short, over the pixel limit, a format OpenCV does not read."""
    if said is None or "is not an image OpenCV can decode" in said or " is a video" in said:
        return None
    return said


def _animated(path: Path) -> bool:
    """An animated GIF: a video (its frames and their delays), not one picture."""
    if path.suffix.lower() != ".gif":
        return False
    with quiet_stderr():
        cap = cv2.VideoCapture(str(path))
        try:
            return cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_COUNT) > 1
        finally:
            cap.release()


def _codec_name(cap: cv2.VideoCapture) -> str:
    """The video's codec tag as text (``av01``, ``h264``), or "" where OpenCV does not say."""
    tag = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
    name = "".join(chr((tag >> 8 * k) & 0xFF) for k in range(4)).strip("\0 ")
    return name if name.isprintable() and name.isascii() and len(name) >= 3 else ""


def frame_rate(stated: float, times_ms: list[float]) -> float:
    """The annotated video's rate: the container's, unless the frames' own spacing (the first
    ones' steps two at a time, averaged near their median) is faster by over 5 %, or slower by over 1.5x
    than a stated rate over ``MAX_PLAUSIBLE_RATE``. Containers state 1000 fps for a browser's WebM
    (its clock's tick) and the average for a
    variable-rate MP4 (30 for a screen recording at 60 fps with pauses, 23 for a phone's 30 fps
    that dropped to 15 in the dark): on a grid slower than the frames, each frame would wait for
    its place and the picture fall ever further behind the sound; filling a 1000 fps grid repeats
    every frame 33 times. A rate within 1 % of a standard one is that one (an MP4 whose
    last frame has no length averages 30.1: a repeated frame every 10 s); a measured one within
    2 %, the higher of 29.97 and 30 (a repeated frame, never a dropped one)."""
    steps = np.diff([t for t in times_ms if t and np.isfinite(t)])
    steps = steps[(steps > 0) & (steps < 10_000)]
    seen = None
    if len(steps) >= 4:  # two steps together, near their median, averaged: pauses and a stretch at another
        # rate left out, a clock's jitter evened out (a 30 fps camera on a 60 Hz clock steps 17, 50,
        # 17, 50 ms), and whole-millisecond times averaged (a WebM's 30 fps steps 33 or 34 ms)
        pairs = steps[:-1] + steps[1:]
        mid = float(np.median(pairs))
        seen = 2000.0 / float(pairs[np.abs(pairs - mid) <= 0.2 * mid].mean())
    rate = stated if stated and np.isfinite(stated) and MIN_RATE <= stated <= 1000 else None  # (--fps's range)
    near_seen = min(STANDARD_RATES, key=lambda r: abs(r - seen)) if seen is not None else None
    faster = seen is not None and rate is not None and rate / seen <= 1 / 1.05 and abs(near_seen - seen) <= 0.01 * near_seen
    # Slower: only from a rate no camera records at (a clock's tick); a plausible one may be an
    # average over later, faster frames (a phone video whose first seconds were dark and slow).
    slower = seen is not None and rate is not None and rate / seen >= 1.5 and rate > MAX_PLAUSIBLE_RATE
    measured = seen is not None and (rate is None or faster or slower)
    if measured:  # (faster: only a standard rate, not a clock's noise or a burst)
        rate = seen
    rate = rate or 30.0
    near = [r for r in STANDARD_RATES if abs(r - rate) <= (0.02 if measured else 0.01) * r]
    if near:  # (measured: of 29.97 and 30 the higher, so a frame is now and then repeated, never dropped)
        return max(near) if measured else min(near, key=lambda r: abs(r - rate))
    if seen is not None and rate < STANDARD_RATES[-1] and (seen > 1.01 * rate or seen < rate / 1.05):
        # A stated rate that is no standard one, with first frames at another: slightly faster ones
        # (29 stated over 30 fps frames) would each run later, and slower ones are the start of a
        # variable-rate video stating its average (27.49 for a phone's dark 15 fps, then 30). The
        # standard rate at or above the faster of the two keeps the frames; the slower repeat some.
        up = next((r for r in STANDARD_RATES if r >= 0.99 * max(rate, seen)), None)
        if up is not None:
            return max(r for r in STANDARD_RATES if abs(r - up) <= 0.01 * up)  # (30, not 29.97)
    return min(rate, 1000.0)


def frame_order(path: Path) -> tuple:
    """Frames in number order: frame2.png before frame10.png (text order puts 10, 11, 12 first)."""
    path = Path(path)
    # The name without its extension: f1.jpg before f1.5.jpg (".jpg" sorted after ".").
    parts = re.split(r"(\d+)", str(path.with_suffix("")), flags=re.ASCII)  # (ASCII digits: int() of '²' fails)
    # (letters in any case alike: IMG_4.JPG comes after img_1.png, as a file manager shows them)
    return [int(t) if i % 2 else t.casefold() for i, t in enumerate(parts)], str(path)


def open_source(spec: str, fps: float | None = None) -> Source:
    """A video file, a directory or glob of frames, or a camera index."""
    # FFmpeg's decoder threads report damaged packets on stderr outside any window facemark can
    # silence (thousands of lines for one bad stretch); facemark counts such frames itself. Read
    # when the process opens its first capture; a user's own OPENCV_FFMPEG_LOGLEVEL wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if spec.isdigit() and not Path(spec).exists():
        try:
            with quiet_stderr():  # the capture backends list every camera they tried
                cap = cv2.VideoCapture(int(spec))
                opened = cap.isOpened()
        except (cv2.error, OverflowError):
            opened = False
        if not opened:
            raise VideoError(f"camera {spec} cannot be opened")
        f = fps or cap.get(cv2.CAP_PROP_FPS) or 30.0
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return Source(f"camera {spec}", f, w, h, None, _cap=cap)
    p = Path(spec)
    files, videos = None, []  # (videos: what a pattern matched that is a video)
    left_out = (0, 0)
    if p.is_dir():
        try:
            entries = [x for x in p.iterdir() if not x.name.startswith(".")]  # (a hidden file is no frame: an editor's)
            files = sorted((x for x in entries if x.is_file() and is_image_name(x.name)), key=frame_order)
            left_out = (sum(x.is_dir() for x in entries),
                        sum(x.is_file() and x.suffix.lower() in VIDEO_EXTS and not is_image_name(x.name) for x in entries))
        except OSError as e:  # (a folder we may not list: the input's fault, said as such)
            raise VideoError(f"{spec}: cannot list its frames: {e.strerror or e}") from None
    elif p.is_file() and p.suffix.lower() in IMAGE_EXTS and not _animated(p):
        files = [p]  # one picture: a one-frame folder (30 fps, EXIF turned)
    elif any(c in spec for c in "*?[") and not p.exists():
        import glob

        matched = glob.glob(spec)
        files = sorted((Path(x) for x in matched if is_image_name(Path(x).name)), key=frame_order)
        videos = [x for x in matched if Path(x).suffix.lower() in VIDEO_EXTS]
        if not files and len(videos) == 1:  # (a pattern naming one video: that video)
            files, spec, p = None, videos[0], Path(videos[0])
    if files is not None:
        if not files:
            clips = sorted(x.name for x in p.iterdir() if x.suffix.lower() in VIDEO_EXTS) if p.is_dir() else \
                sorted(Path(x).name for x in videos)
            if clips:  # (a folder is read as a video's frames; it cannot hold videos to run one by one)
                raise VideoError(f"{spec}: no image frames found, but {len(clips)} video(s) ({clips[0]}"
                                 f"{', ...' if len(clips) > 1 else ''}): give one video file at a time")
            raise VideoError(f"{spec}: no image frames found")
        first, said = None, None
        for f in files:
            try:
                first = read_image(f)
                break
            except ImageError as e:
                said = said or str(e)
                continue
        if first is not None:
            return Source(spec, fps or 30.0, first.shape[1], first.shape[0], len(files), _files=files, left_out=left_out)
        if files != [p] or not _video_bytes(p):  # (one file named like a picture that is a video: read as one below)
            raise VideoError(f"{spec}: none of the frames can be read" if files != [p] else
                             _photo_said(said) or
                             f"{spec}: not an image OpenCV can decode, nor a video (damaged, or another kind of file)")
    if not p.exists():
        if spec == "-":
            raise VideoError("-: a video is read from a file (or a camera's number), not from standard input; save "
                             "it to a file and name that")
        raise VideoNotFound(f"{spec}: no such file", spec)
    if not p.is_file() or p.stat().st_size == 0:
        if stat.S_ISFIFO(p.stat().st_mode) or stat.S_ISSOCK(p.stat().st_mode):  # (`cat v.mp4 | facemark video /dev/stdin`)
            raise VideoError(f"{spec}: a pipe: a video is read from a file (or a camera's number), which OpenCV reads "
                             f"back and forth; save it to a file and name that")
        raise VideoError(f"{spec}: not a video file (empty or not a file)")
    try:  # a file we may not read is said so, not called "not a video"
        open(p, "rb").close()
    except OSError as e:
        raise VideoError(f"{spec}: cannot read it: {e.strerror or e}") from None
    if utf8_name(str(p)) is None:  # OpenCV's video reader crashes the process (a segfault) on such a name
        raise VideoError(f"{shown_name(str(p))}: its name is not valid UTF-8, which OpenCV's video reader cannot "
                         f"open; rename it")
    with quiet_stderr():  # "moov atom not found" and the like: facemark says it in its own words
        cap = cv2.VideoCapture(str(p))
        ok = cap.isOpened()
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else -1
        first, times = None, []
        for _ in range(FIRST_FRAME_TRIES if ok else 0):  # a damaged first frame or few: the frames after them count
            good, frame = cap.read()
            if good and frame is not None:
                first = frame
                break
        while first is not None and len(times) < RATE_FRAMES and cap.grab():  # (grab: no decoding)
            times.append(cap.get(cv2.CAP_PROP_POS_MSEC))
        codec = _codec_name(cap) if ok and first is None else ""
        cap.release()
        if first is None and (ok and count == 0 or not ok and (
                mp4_has_no_samples(p) or matroska_has_no_frames(p) and not cut_short(p))):
            raise VideoError(f"{spec}: the video has no frames")
        if first is None and cut_short(p):
            raise VideoError(f"{spec}: the file ends before the data it announces (a download or copy that stopped?), "
                             f"and no frame of what is there decodes")
        if first is None and codec:  # opened, but no frame decodes: a codec this OpenCV lacks (AV1 here), or damage
            common = codec.lower() in ("h264", "avc1", "mp4v", "fmp4", "mjpg", "xvid", "divx")  # (decoders every build has)
            raise VideoError(f"{spec}: none of its {codec} frames decodes: " + (
                "the file is damaged" if common else f"this OpenCV's FFmpeg may have no decoder for {codec} "
                                                     f"(convert it to H.264, say), or the file is damaged"))
        if first is None:
            raise VideoError(_photo_said(_read_as_photo(p)) or f"{spec}: not a video OpenCV can decode (damaged, or not a video)")
        cap = cv2.VideoCapture(str(p))  # reopen: seeking back is unreliable on damaged files
    stated = cap.get(cv2.CAP_PROP_FPS)
    f = fps or frame_rate(stated, times)
    # A header stating no believable rate (0.005 fps: damaged) gives the frames' times too (200 s
    # apart, which also turns the smoothing off): then they are timed at the rate the video gets.
    # So does an AVI stating over 1000 (1,000,000: its frames, timed from that header alone, a
    # microsecond apart, every JSON time 0.0, the smoothing all but still), or no rate at all (0:
    # OpenCV's FFmpeg says 25 and times the frames at that). Other containers store each frame's
    # time: a 5000 fps MKV's 0.2 ms steps are its own clock, and a WebM states its clock's tick,
    # 1000, with frames 33 ms apart (frame_rate reads those).
    steps = np.diff([t for t in times if t and np.isfinite(t)])
    timed = int(((steps > 0) & (steps < 10_000)).sum()) >= 4
    avi_rate = avi_stated_rate(p)  # (None: no AVI; the frames' times are their own)
    doubted = fps is None and (avi_rate == 0.0 or bool(np.isfinite(stated)) and (
        (0 < stated < MIN_RATE and not timed)
        or (stated > 1000 and avi_rate is not None and (not timed or float(np.median(steps[steps > 0])) < 1.0))))
    if doubted:
        f = 30.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return Source(spec, f, first.shape[1], first.shape[0], n if n > 0 else None, _cap=cap,
                  fixed_rate=fps is not None or doubted, count_exact=count_is_exact(p), empty=avi_empty_frames(p),
                  cut_short=cut_short(p), rate_doubted=(0.0 if avi_rate == 0.0 else float(stated)) if doubted else None)


class AtomicVideoWriter:
    """cv2.VideoWriter into a hidden temporary file beside the target; ``finish`` checks it, ``publish`` renames it."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        ext = path.suffix.lower()
        if ext not in FOURCC:
            raise VideoError(f"--out {path}: use one of {', '.join(sorted(FOURCC))}")
        path = output_target(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)  # what a killed run left
        fd, tmp = make_temp(path.parent, suffix=ext)
        os.close(fd)
        self.path, self.tmp = path, Path(tmp)
        # The encoders drop an odd size's last column or row; repeating it instead keeps the whole picture.
        # OpenCV's MJPEG writer (.avi) corrupts its memory on frames under 8 px wide (the process
        # aborts): those are widened to 16 the same way.
        narrow = ext == ".avi" and size[0] < 8
        pad = (size[0] % 2 if not narrow else 16 - size[0], size[1] % 2)
        why = ["OpenCV's AVI writer takes frames 8 px wide or more"] if narrow else []
        if (size[0] % 2 and not narrow) or size[1] % 2:
            why.append("encoders take even sizes")
        if ext == ".webm" and (size[0] + pad[0]) * (size[1] + pad[1]) < 16:  # (VP8 writes no frame under 16 pixels)
            pad = (max(pad[0], 4 - size[0]), max(pad[1], 4 - size[1]))
            why = ["WebM's encoder takes frames of 16 pixels or more"]
        self.pad, self.pad_why = pad, " and ".join(why)
        self.size = (size[0] + self.pad[0], size[1] + self.pad[1])
        with quiet_stderr():  # FFmpeg's notes on codec tags ("tag ... is not supported"): not the user's
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*FOURCC[ext]), fps, self.size)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"cannot write {ext} video here (no encoder for {FOURCC[ext]})")
        self.frames = 0
        self.timeline = Timeline(fps)
        self._held: tuple | None = None  # (frame, time, index): placed once the next frame's time is known
        self._shown: np.ndarray | None = None

    def put(self, frame: np.ndarray, t: float, index: int | None = None) -> None:
        """Frame ``index`` of the file, of time ``t``, placed by ``Timeline`` (written when the next
        one comes, or at ``finish``)."""
        if self._held is not None:
            self._place(*self._held, after=t)
        self._held = (frame, t, index)

    def _place(self, frame: np.ndarray, t: float, index: int | None, after: float | None) -> None:
        gap = self.timeline.gap_before(t, after, index)
        if gap is None:  # (so far behind its time that the picture would fall behind the sound: left out)
            return
        for _ in range(gap):
            self.write(frame if self._shown is None else self._shown)
        self.write(frame)
        self._shown = frame

    def write(self, frame: np.ndarray) -> None:
        if any(self.pad):
            frame = cv2.copyMakeBorder(frame, 0, self.pad[1], 0, self.pad[0], cv2.BORDER_REPLICATE)
        with quiet_stderr():  # a full disk is one warning per frame from OpenCV; finish() says it once
            self.writer.write(frame)
        self.frames += 1

    def finish(self) -> None:
        """Close the file and check that it holds the frames written: OpenCV's writer reports no
        error (a full disk leaves a file without its index, or with a fraction of the frames)."""
        if self._held is not None:
            self._place(*self._held, after=None)
            self._held = None
        with quiet_stderr():
            self.writer.release()
            cap = cv2.VideoCapture(str(self.tmp))
            ok = cap.isOpened() and cap.read()[0]
            n = cap.get(cv2.CAP_PROP_FRAME_COUNT) if ok else 0
            cap.release()
            if ok and (self.tmp.suffix.lower() in (".avi", ".mkv", ".webm") or not 0 < n <= 2 * self.frames + 10):
                # An AVI, Matroska or WebM file cut short keeps a count in its header (or none, or a
                # garbage one) whatever is left after it: the frames that are there, counted. (An
                # MP4's count is its index, written last: a cut file has none and does not open.)
                counted = cv2.VideoCapture(str(self.tmp))
                counted.set(cv2.CAP_PROP_FORMAT, -1)  # packets, not decoded: an hour of 1080p in seconds
                n = 0
                while counted.grab():
                    n += 1
                counted.release()
                short = n < self.frames
            else:
                short = 0 < n < self.frames - max(1, self.frames // 50)  # (an MP4's count may be estimated)
        if not ok:
            raise OSError(f"the written video cannot be read back ({self.frames} frames were encoded; disk full?)")
        if short:
            raise OSError(f"the video encoder wrote {int(n)} of {self.frames} frames (disk full?)")

    def publish(self) -> None:
        publish(self.tmp, self.path)

    def abort(self) -> None:
        with quiet_stderr():
            self.writer.release()
        self.tmp.unlink(missing_ok=True)


def _is_stream(path: str) -> bool:
    """A pipe or a character device (process substitution, /dev/fd/N, /dev/null): written as a
    stream, never replaced by a renamed file."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def set_aside_names(paths: list[Path]) -> list[Path]:
    """``set_aside_name`` for all of one run's outputs with one suffix, the first free for every
    one of them: a video and its JSON lines from one interrupted run pair up by name."""
    n = 1
    while True:
        names = [p.with_name(f"{p.stem}.partial{'' if n == 1 else f'-{n}'}{p.suffix}") for p in paths]
        if not any(os.path.lexists(q) for q in names):
            return names
        n += 1


def set_aside_name(path: Path) -> Path:
    """Where an interrupted run's output goes instead of ``path`` (which only a complete run's
    output takes: a script or a rerun must be able to trust that name): NAME.partial.EXT, or
    NAME.partial-2.EXT and on where that is taken. Never a file that is there: it may be the
    input (a clip named x.partial.mp4) or an earlier partial output."""
    return set_aside_names([path])[0]


def json_line(obj: dict) -> str:
    """One frame's record as a compact, strict JSON line (no NaN)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n"


class StreamLines:
    """``--json -`` (stdout), or a pipe or device given by name (``>(wc -l)``, ``/dev/fd/3``,
    ``/dev/null``): each frame's line goes out as it is made (a pipe sees it at once), with no
    file to rename into place."""

    path = None
    closed = False  # the reader went away (`| head`): not an error; the other outputs still finish

    def __init__(self, target: str | None = None):
        self.f = None
        if target is not None:  # a FIFO nobody reads would block the open for ever (Ctrl-C included)
            try:
                fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    raise OSError(errno.ENXIO, "it is a pipe that no process is reading") from None
                raise
            os.set_blocking(fd, True)
            self.f = os.fdopen(fd, "w")

    def write_line(self, obj: dict) -> None:
        if self.closed:
            return
        out = self.f if self.f is not None else sys.stdout
        try:
            write_whole(out, json_line(obj))  # (a Ctrl-C waits for the frame's end: its line is not cut either)
        except BrokenPipeError:
            self.closed = True
            if self.f is None:
                sys.stdout = open(os.devnull, "w")  # Python's own flush at exit must not fail either

    def finish(self) -> None:
        if not self.closed:
            (self.f if self.f is not None else sys.stdout).flush()
        self.abort()

    def publish(self) -> None:
        pass

    def abort(self) -> None:
        if self.f is not None:
            try:
                self.f.close()
            except OSError:  # (a reader gone: its last flush fails)
                pass


class AtomicTextWriter:
    def __init__(self, path: Path):
        path = output_target(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)  # what a killed run left
        fd, tmp = make_temp(path.parent)
        self.path, self.tmp = path, Path(tmp)
        self.f = os.fdopen(fd, "w")

    def write_line(self, obj: dict) -> None:
        self.f.write(json_line(obj))

    def finish(self) -> None:
        self.f.close()  # the last flush: a full disk fails here

    def publish(self) -> None:
        publish(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.f.close()
        except OSError:  # a full disk fails the final flush too; the file goes anyway
            pass
        self.tmp.unlink(missing_ok=True)


AUDIO_CODECS = {".webm": "libopus"}  # WebM holds Opus or Vorbis only; the others take AAC


def mux_audio(video: Path, source: str) -> bool:
    """Copy the source's audio into ``video`` with ffmpeg, if ffmpeg exists; True if done."""
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg or not Path(source).is_file():
        return False
    fd, tmp = make_temp(video.parent, video.suffix)  # (a killed run's is removed by the next, like any other)
    os.close(fd)
    tmp = Path(tmp)
    cmd = [ffmpeg, "-v", "error", "-y", "-i", str(video), "-i", source, "-map", "0:v:0", "-map", "1:a:0?",
           "-c:v", "copy", "-c:a", AUDIO_CODECS.get(video.suffix.lower(), "aac"), str(tmp)]  # (no -shortest: a
    # shorter sound must not cut the picture)
    try:
        ok = subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0 and tmp.is_file()
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if ok:
        publish(tmp, video)  # (the usual permissions: the temporary file was made private)
    else:
        tmp.unlink(missing_ok=True)
    return ok


def tracked_faces(tracks, tracker) -> list[Face]:
    """The reported faces of one frame, made once for both the drawing and the JSON line (the
    box fit and the 68-point map are per track and frame). Copies: unsmoothed, ``smoothed`` is the
    track's own array, and a caller's edit of a face changed where the next frame was followed."""
    return [Face(np.array(tr.shown_box, np.float64), tr.score, np.array(tr.smoothed, np.float64),
                 tracker.landmarks68(tr)) for tr in tracks]


def frame_record(index: int, t: float, tracks, faces: list[Face], scale: tuple[float, float] = (1.0, 1.0),
                 shift: tuple[int, int] = (0, 0), image: str | None = None, cut: bool = False) -> dict:
    """One JSON line for ``tracks`` and their ``faces``; ``shift`` and ``scale`` map points from
    where the frame was fitted into the tracked size back to its own pixels (``letterbox``);
    ``image``: a folder's frame file, named in the line (which file a line is of, without sorting again);
    ``cut``: the frame starts a new shot (``"cut": true`` in the line: ids may go on across it)."""
    s, o = np.asarray(scale, np.float64), np.asarray(shift, np.float64)

    def r(a):
        return np.round(rescale(np.reshape(a, (-1, 2)) - o, s), 2).reshape(np.shape(a)).tolist()

    return {"frame": index, "time": round(float(t), 4), **({"image": image} if image is not None else {}),
            **({"cut": True} if cut else {}), "faces": [{"id": tr.id, "box": r(f.box), "score": round(float(f.score), 4), "landmarks": r(f.landmarks),
                       "landmarks68": r(f.landmarks68)} for tr, f in zip(tracks, faces)]}


@dataclass
class VideoSummary:
    frames: int  # frames processed and written
    seconds: float
    tracks: int  # face tracks started
    decode_errors: int  # frames that did not decode (counted once)
    interrupted: bool
    audio_kept: bool | None  # None: nothing to keep (no --out, or no audio track)
    had_audio: bool | None = None  # None: the container does not say (not MP4/MOV/AVI)
    resized: int = 0  # frames of a folder fitted into the first frame's size
    set_aside: tuple[str, ...] = ()  # interrupted: where the partial outputs went (NAME.partial.EXT)
    padded_to: tuple[int, int] | None = None  # the video's size, where the frames' size was padded for the encoder
    cut_short: bool = False  # the file ends before the data it announces (a stopped download)
    searched_shrunk: int = 0  # no face found in frames searched at half their size or less: the side searched
    # (-1: no face found, with a --min-face larger than the frames)
    reader_gone: bool = False  # the only output was a pipe whose reader left (`| head`): the run stopped there
    lines_stopped: int | None = None  # JSON lines' pipe reader left after this many frames; the video went on
    turned_frames: int = 0  # detections that found a face looking turned sideways or upside down (no --turned)
    most_shrunk: float = 1.0  # the most a folder's frame was scaled down by to fit the first frame's size
    rate_doubted: float | None = None  # the file's stated rate, not believed (nor its frames' times): timed at ``fps``
    fps: float = 0.0  # the rate the frames were timed at
    padded_why: str = ""  # why the frames were padded to ``padded_to`` (from ``frame_size``)
    frame_size: tuple[int, int] | None = None  # the frames' size, where they were padded
    bad_files: tuple[str, ...] = ()  # a folder's frames that did not decode (the first three)
    left_out: tuple[int, int] = (0, 0)  # a frames folder's subfolders and video files: not frames, left out
    unfound: str = ""  # no face in any frame, and no --min-face note for it: "tiny" frames (under
    # RetinaFace.LEAST_FACE: none fits), "small" ones (under notes.SMALL_SIDE: --min-face 20 may find
    # them), else "any" (a lost rotation: --turned may)


def _check_outputs(src, outputs: list[Path], out_path: Path | None, json_path: Path | None,
                   n: Callable[[str], str]) -> None:
    """Refuse outputs that would overwrite an input frame, a picture's name for JSON lines, or a
    file facemark did not write."""
    frames = {os.path.realpath(f) for f in (src._files or [])}  # (realpath: a link loop among them is no crash)
    for p in outputs:
        if os.path.realpath(p) in frames:
            raise UsageError(f"refusing to overwrite {p}: it is one of the input frames")
    if json_path is not None and json_path.suffix.lower() in IMAGE_EXTS | set(FOURCC) | {".gif"}:
        # (JSON lines under a picture's name: a frames folder's next run reads them as a broken frame)
        raise UsageError(f"{n('--json')} {json_path}: that names an image or video; JSON lines go in a .jsonl file")
    for p in outputs:
        option = "--out" if p is out_path else "--json"
        try:
            ours = not (os.path.isfile(p) and os.path.getsize(p)) or _replaceable(p, p is out_path)
        except OSError as e:  # (one we may not read: not looked at, so not replaced)
            raise UsageError(f"{n(option)} {p} exists and cannot be read ({e.strerror or e}); not overwritten: "
                             f"write it elsewhere") from None
        if not ours:
            what = "a video" if p is out_path else "facemark's video JSON lines"
            raise UsageError(f"{n(option)} {p} exists and is not {what}; not overwritten: write it elsewhere")


def _checked_request(source: str | os.PathLike | int, fl, out_path: str | os.PathLike | None,
                     json_path: str | os.PathLike | None, detect_every: int, smooth: str, max_faces: int,
                     fps: float | None, min_cutoff: float | None, beta: float | None,
                     n: Callable[[str], str] = str) -> tuple[str, Path | None, Path | None, str | None]:
    """``process_video``'s arguments checked, each wrong one a ``UsageError`` in one line before
    anything is opened: (source, video path, JSON path, JSON stream: "-", a pipe's name or None).
    ``n`` names an option as the caller knows it (``_argument``: Python's names)."""
    import math
    import numbers

    from .boxes import GivenBoxes

    if out_path is None and json_path is None:
        raise UsageError(f"give {n('--out')} VIDEO and/or {n('--json')} FILE.jsonl (or {n('--json')} - for stdout)")
    if not callable(getattr(fl, "find_faces", None)):
        raise TypeError(f"fl must be a FaceLandmarker (FaceLandmarker(model=...)), not {type(fl).__name__}")
    if isinstance(getattr(fl, "detector", None), GivenBoxes):
        raise UsageError("video needs a face detector: boxes given per image file cannot follow a video's frames")
    if isinstance(source, bytes):
        source = os.fsdecode(source)
    out_path, json_path = (os.fsdecode(p) if isinstance(p, bytes) else p for p in (out_path, json_path))  # (as detect takes them)
    if not isinstance(source, (str, os.PathLike, int)) or isinstance(source, bool):
        raise UsageError(f"source must be a path, a folder or glob of frames, or a camera index, not {type(source).__name__}")
    if not str(source).strip():
        raise UsageError("the input is an empty string: give a video file, a folder or glob of frames, or a camera index")
    source = str(source)
    out_path = Path(out_path) if out_path is not None else None
    # JSON lines streamed, not renamed into place: to stdout ("-", /dev/stdout, /dev/fd/1, a link to
    # them), or into a pipe or device named. Another descriptor's name, or the very file stdout or
    # stderr goes to, is refused: renamed over, that file would lose what was written into it.
    stream = None
    if out_path is not None and str(out_path) == "-":
        raise UsageError(f"{n('--out')} -: the video is written to a file, not standard output; give a file name "
                         f"({n('--json')} - streams the JSON lines)")
    for option, p in (("--json", json_path), ("--out", out_path)):
        if p is None:
            continue
        fd = descriptor_named(p) if str(p) != "-" else 1
        if option == "--json" and fd == 1:
            stream = "-"
        elif option == "--json" and _is_stream(str(p)):
            stream = str(p)
        elif fd is not None or standard_stream_file(p) is not None:
            where = "an open descriptor (standard output, say)" if fd is not None else \
                "the file standard output or error goes to"
            raise UsageError(f"{n(option)} {p} is {where}: give a file name"
                             + (f" (or {n('--json')} - for standard output)" if option == "--json" else ""))
    json_path = Path(json_path) if json_path is not None and stream is None else None
    if stream == "-" and sys.stdout is None:  # (started with stdout closed: `>&-`)
        raise UsageError("standard output is closed: give --json FILE")
    if smooth not in ("one-euro", "pose", "none"):
        raise UsageError(f"{n('--smooth')} must be one-euro, pose or none, not {smooth!r}")

    def whole(v) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not whole(detect_every) or detect_every < 1:
        raise UsageError(f"{n('--detect-every')} must be a whole number, at least 1, not {detect_every!r}")
    if not whole(max_faces) or max_faces < 0:
        raise UsageError(f"{n('--max-faces')} must be a whole number, 0 (all) or more, not {max_faces!r}")
    for name, v in (("--fps", fps), ("--min-cutoff", min_cutoff), ("--beta", beta)):
        if v is not None and (not isinstance(v, numbers.Real) or isinstance(v, bool)):
            raise UsageError(f"{n(name)} must be a number, not {v!r}")
    if fps is not None and not (math.isfinite(fps) and MIN_RATE <= fps <= 1000):  # (VideoWriter refuses 0.001)
        raise UsageError(f"{n('--fps')} must be a number of frames per second from 0.01 to 1000, not {fps}")
    if fps is not None and fps < 0.1 and out_path is not None and Path(out_path).suffix.lower() == ".webm":
        raise UsageError(f"{n('--fps')} {fps:g} is too slow for a .webm video (its encoder needs 0.1 or more): use .mp4")
    if min_cutoff is not None and not (math.isfinite(min_cutoff) and min_cutoff > 0):
        raise UsageError(f"{n('--min-cutoff')} must be a positive number of Hz, not {min_cutoff}")
    if beta is not None and not (math.isfinite(beta) and beta >= 0):
        raise UsageError(f"{n('--beta')} must be 0 or a positive number, not {beta}")
    outputs = [p for p in (out_path, json_path) if p is not None]
    try:  # a name too long for the file system, a folder we may not look into: one line, not a traceback
        for p in outputs:
            if long := too_long_name(p):
                raise UsageError(long)
            if p.is_dir():
                raise UsageError(f"{p} is a directory: give a file name (e.g. {p / ('out.mp4' if p is out_path else 'out.jsonl')})")
            if Path(source).exists() and os.path.realpath(p) == os.path.realpath(source):
                raise UsageError(f"refusing to overwrite the input {source}")
            if p.parent.exists() and not p.parent.is_dir():
                raise UsageError(f"{p}: {p.parent} is not a directory")
            if os.path.exists(p) and not os.path.isfile(p):  # /dev/null and the like: never replaced
                raise UsageError(f"{p} is not a regular file (a device or the like): give a file name")
        if out_path is not None and json_path is not None and os.path.realpath(out_path) == os.path.realpath(json_path):
            raise UsageError(f"{n('--out')} and {n('--json')} name the same file")
    except OSError as e:
        raise UsageError(f"{e.filename or p}: {e.strerror or e}") from None
    if out_path is not None and out_path.suffix.lower() not in FOURCC:
        raise UsageError(f"{n('--out')} {out_path}: use one of {', '.join(sorted(FOURCC))}")
    return source, out_path, json_path, stream


ARGUMENTS = {"--out": "out_path", "--json": "json_path", "--detect-every": "detect_every", "--smooth": "smooth",
             "--max-faces": "max_faces", "--fps": "fps", "--min-cutoff": "min_cutoff", "--beta": "beta",
             "--draw": "style", "--box": "show_box", "--ids": "show_ids"}


def _argument(option: str) -> str:
    """The command line's option as ``process_video``'s argument (``--detect-every``: ``detect_every``)."""
    return ARGUMENTS.get(option, option)


def _replaceable(path: Path, video: bool) -> bool:
    """Whether an existing output may be replaced by a whole run: a video (``--out``; whose, no
    file says), or JSON lines of facemark's frames (``--json``): a notes file or a photo given by
    mistake is another program's, or the user's, and was silently replaced."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        if video:
            return looks_like_video(head)
        f.seek(max(0, os.fstat(f.fileno()).st_size - (4 << 20)))  # (its last line: notes added after the frames)
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]

    def frame_line(line: bytes) -> bool:
        try:
            d = json.loads(line)
        except ValueError:
            return False
        return isinstance(d, dict) and {"frame", "faces"} <= set(d)

    return frame_line(head.split(b"\n", 1)[0]) and frame_line(last)


def process_video(source: str | os.PathLike, fl, out_path: str | os.PathLike | None = None,
                  json_path: str | os.PathLike | None = None, *,
                  detect_every: int = 10, smooth: str = "one-euro", max_faces: int = 0, fps: float | None = None,
                  min_cutoff: float | None = None, beta: float | None = None, log=print, progress=None,
                  keep_ignoring: bool = False, option_names: bool = False, style: str = "contours",
                  show_box: bool = True, show_ids: bool = True) -> VideoSummary:
    """Track, smooth and draw landmarks on every frame of ``source``; write the annotated video
    and/or JSON lines atomically (renamed into place when done, temp files removed otherwise).

    Ctrl-C or SIGTERM finishes the current frame and keeps what was done (``interrupted=True``)
    under NAME.partial.EXT (``set_aside``), never the names asked for; a second one stops at
    once, still closing the outputs. ``keep_ignoring`` (the CLI, which exits next) leaves signals
    ignored once the frames are done (the outputs closed and renamed, the sound copied), so a late
    one cannot cut that or the exit short. Raises ``UsageError``/``VideoError`` for requests that
    cannot work, before any frame is decoded; a wrong argument is named as such (``detect_every``),
    or as the command line's option with ``option_names`` (``--detect-every``). ``style``
    and ``show_box`` draw the video as ``detect_files`` draws photos; ``show_ids`` labels each
    face with its track's id (the JSON's ``id``). Faces that looked
    turned are a ``FacemarkWarning`` at the caller's line (the command line, ``option_names``,
    says so in its own note).
    """
    import signal
    import threading
    import time

    from .annotate import STYLES, draw
    from .track import Tracker

    n = str if option_names else _argument
    SEEN.clear()  # (a signal an earlier run in this process took is not this run's exit status)
    if style not in STYLES:
        raise UsageError(f"{n('--draw')} must be one of {', '.join(STYLES)}, not {style!r}")
    for name, v in (("--box", show_box), ("--ids", show_ids)):
        if not isinstance(v, (bool, np.bool_)):  # (as draw checks them: said before any frame is read)
            raise TypeError(f"{n(name)} must be True or False, not {v!r}")
    source, out_path, json_path, stream = _checked_request(source, fl, out_path, json_path, detect_every, smooth,
                                                          max_faces, fps, min_cutoff, beta, n)
    outputs = [p for p in (out_path, json_path) if p is not None]
    src = open_source(source, fps)
    try:
        _check_outputs(src, outputs, out_path, json_path, n)
    except BaseException:
        src.close()
        raise
    tuned = {k: v for k, v in (("min_cutoff", min_cutoff), ("beta", beta)) if v is not None}  # else smooth.py's
    tracker = Tracker(fl, detect_every=detect_every, max_faces=max_faces, smooth=smooth != "none",
                      smooth_shape=smooth == "one-euro", **tuned)
    stop = {"asked": 0, "armed": False}

    def on_signal(signum, frame):  # first: finish the current frame; second: stop now; both keep the output
        stopped(signum)
        stop["asked"] += 1
        if stop["asked"] > 1 and stop["armed"]:  # raised once at most, and only where it is caught
            stop["armed"] = False
            raise _StopNow

    main_thread = threading.current_thread() is threading.main_thread()
    # A signal ignored when this began (a script's background job, ``cmd &``, ignores SIGINT) stays ignored.
    signals = [sig for sig in STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN] \
        if main_thread else []
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}  # before any temp file exists
    writers: list = []
    made = [q for p in outputs for q in missing_folders(p.parent)]  # removed again if nothing is written
    set_aside: list[str] = []
    video_written: Path | None = None
    reader_gone = False
    lines_stopped: int | None = None
    whole = False  # the source ran to its end (an interrupt then leaves the outputs under their own names)
    done = 0
    total = src.frames - src.empty if src.frames else src.frames  # (an AVI's empty chunks never come)
    start = time.perf_counter()
    try:
        for path, make in ((out_path, lambda p: AtomicVideoWriter(p, src.fps, (src.width, src.height))),
                           (json_path, AtomicTextWriter), (stream, lambda p: StreamLines(None if p == "-" else p))):
            if path is None:
                continue
            try:
                writers.append(make(path))
            except OSError as e:  # named as the user gave it, not as the hidden temporary file
                raise VideoError(f"cannot write {path}: {e.strerror or e}") from None
        video_w = writers[0] if out_path is not None else None
        text_w = writers[-1] if json_path is not None or stream is not None else None
        lines_to = json_path if json_path is not None else "standard output" if stream == "-" else stream
        writing = None  # the output being written, as the user named it: a full disk's line says which
        try:
            try:
                stop["armed"] = True
                for i, t, frame in src:
                    tracks = tracker.step(frame, t)
                    stop["armed"] = False  # one frame's outputs are written together: a second signal
                    faces = tracked_faces(tracks, tracker)  # (a second signal that lands here stops
                    if video_w is not None:  # the run after both outputs of this frame, not between them)
                        drawn = draw(frame, faces, style=style, box=show_box, score=False,
                                     ids=[tr.id for tr in tracks] if show_ids else None)
                        writing = out_path
                        video_w.put(drawn, t, i)  # (placed by its time)
                        writing = None
                    if text_w is not None:
                        # Into a pipe whose reader stopped reading the write waits for ever: there a
                        # second signal stops the run at once (that line is cut; no file holds it).
                        stop["armed"] = isinstance(text_w, StreamLines)
                        record = frame_record(i, t, tracks, faces, src.scale, src.shift, src.image, tracker.cut)
                        writing = lines_to
                        text_w.write_line(record)
                        writing = None
                        stop["armed"] = False
                        if getattr(text_w, "closed", False) and len(writers) == 1:
                            reader_gone = True
                            break  # nobody reads the only output: stop
                        if getattr(text_w, "closed", False) and lines_stopped is None:
                            lines_stopped = done  # (the video goes on; the lines' reader is told at the end)
                    done += 1
                    if progress:
                        progress(done, total, done / max(1e-9, time.perf_counter() - start))
                    if stop["asked"]:
                        break
                    stop["armed"] = True
                else:
                    whole = True  # every frame done: a signal that lands as the outputs close cuts nothing
            finally:  # closing the outputs is not interrupted again (a signal that lands in here is caught below)
                stop["armed"] = False
                for sig in signals:
                    signal.signal(sig, signal.SIG_IGN)
        except _StopNow:
            pass
        except OSError as e:  # disk full or gone while writing: the temporaries are removed below
            raise VideoWriteError(f"cannot write {writing or 'the output'}: {e.strerror or e}; nothing was kept") from None
        if done == 0 and not reader_gone:  # (a reader that left before the first line saw none: no fault of the video)
            raise VideoError(f"{source}: no frame could be decoded")
        finished = []
        order = sorted(writers, key=lambda w: w is video_w)
        try:  # every output complete before any is renamed into place: the JSON lines first
            for w in order:
                w.finish()
                finished.append(w)
        except OSError as e:
            failed_video = next(w for w in order if w not in finished) is video_w
            named = out_path if failed_video else lines_to
            if isinstance(text_w, AtomicTextWriter) and text_w in finished and video_w not in finished:
                earlier = os.path.lexists(video_w.path)  # (the video's disk is full, say: the JSON lines are whole)
                _publish(finished, set_aside if stop["asked"] and not whole else None)
                writers.remove(text_w)
                raise VideoWriteError(f"cannot finish writing {named}: {e.strerror or e}; it was not kept" + (
                    f" (the {video_w.path} there is an earlier run's)" if earlier else "") +
                    f", and the JSON lines are complete in {text_w.path}") from None
            if isinstance(text_w, StreamLines) and failed_video:  # (its lines went out as they were made)
                raise VideoWriteError(f"cannot finish writing {named}: {e.strerror or e}; it was not kept (the JSON "
                                      f"lines went to {lines_to})") from None
            raise VideoWriteError(f"cannot finish writing {named}: {e.strerror or e}; nothing was kept") from None
        video_written, padded_to = _publish(writers, set_aside if stop["asked"] and not whole else None)
    finally:
        for w in writers:  # not committed: an error, or no frame at all
            w.abort()
        for q in made:  # a folder made for outputs that never came (rmdir: only where it is still empty)
            try:
                q.rmdir()
            except OSError:
                pass
        if not keep_ignoring:  # (the CLI: a signal while the outputs are finished, the sound copied or the
            for sig, handler in previous.items():  # summary made would report a whole run as cut short)
                signal.signal(sig, handler)
        src.close()
    elapsed = time.perf_counter() - start
    audio = had = None
    if video_written is not None and Path(source).is_file() and Path(source).suffix.lower() not in IMAGE_EXTS:
        had = has_audio(Path(source))
        if had is not False:
            audio = mux_audio(video_written, source)
    missing = (src.frames - done - src.decode_errors) if src.frames and (src.count_exact or src.cut_short) \
        and not stop["asked"] and not reader_gone else 0
    lost = src.decode_errors + max(0, missing - src.empty)  # (OpenCV passes over empty chunks: they are "missing")
    from .detector import RetinaFace
    from .notes import SMALL_SIDE

    det = fl.detector
    shrunk = tracker.next_id == 0 and done > 0 and not stop["asked"] and not reader_gone \
        and getattr(det, "min_face", 0) is None and hasattr(det, "scale_for") \
        and det.scale_for(src.height, src.width) <= 0.5  # (small faces there go unseen: --min-face)
    shrunk = det.max_side if shrunk else 0
    big = getattr(det, "min_face", None)  # (--min-face over the frame's long side: only a face filling it is sought)
    if tracker.next_id == 0 and done > 0 and not stop["asked"] and not reader_gone and big is not None \
            and big > min(src.width, src.height):
        shrunk = -1
    if tracker.turned_frames and not option_names:  # (the command line says it in its own words at the end)
        from .notes import TURNED, note

        note(TURNED, f"in {tracker.turned_frames} of the frames searched whole")
    unfound = "" if tracker.next_id or not done or shrunk or stop["asked"] or reader_gone \
        else "tiny" if min(src.width, src.height) < RetinaFace.LEAST_FACE else "small" if min(src.width, src.height) < SMALL_SIDE \
        else "any"
    return VideoSummary(
        frames=done, seconds=elapsed, tracks=tracker.next_id, decode_errors=lost,
        interrupted=bool(stop["asked"]) and not whole, audio_kept=audio, had_audio=had, resized=src.resized,
        set_aside=tuple(set_aside), padded_to=padded_to and padded_to[0], cut_short=src.cut_short and not reader_gone,
        searched_shrunk=shrunk, reader_gone=reader_gone, lines_stopped=lines_stopped, turned_frames=tracker.turned_frames,
        most_shrunk=src.most_shrunk, rate_doubted=src.rate_doubted, fps=src.fps,
        padded_why=padded_to[2] if padded_to else "", frame_size=padded_to[1] if padded_to else None,
        bad_files=tuple(src.bad_files), left_out=src.left_out, unfound=unfound)


def _publish(writers: list, set_aside: list[str] | None) -> tuple[Path | None, tuple | None]:
    """Rename each finished output into place, taking it off ``writers`` (what is left there is
    aborted by the caller). After an interrupt (``set_aside`` a list) each goes under its
    ``set_aside_names`` name instead (added to ``set_aside``): an output's own name is for a whole run's
    output, and an earlier one there stays. Returns the
    video's path and, where it was padded, (its size, the frames' size, why; else None)."""
    video, padded = None, None
    if set_aside is not None:
        named = [w for w in writers if w.path is not None]
        for w, part in zip(named, set_aside_names([Path(w.path) for w in named])):
            w.path = part
            set_aside.append(str(part))
    try:
        while writers:
            w = writers[0]
            w.publish()
            if isinstance(w, AtomicVideoWriter):
                video = w.path
                padded = (w.size, (w.size[0] - w.pad[0], w.size[1] - w.pad[1]), w.pad_why) if any(w.pad) else None
            writers.pop(0)
    except OSError as e:
        raise VideoWriteError(f"cannot rename {writers[0].path.name} into place: {e.strerror or e}") from None
    return video, padded


MAX_FILL_SECONDS = 60.0  # a longer gap between two frames is taken as a jump in the timestamps, not filled
MAX_LATE_SECONDS = 0.1  # frames coming faster than the video's rate wait at most this long (2 frames at least) for a place


@dataclass
class Timeline:
    """Frames placed in a constant-rate annotated video by their times, so it keeps the source's
    length and its sound stays in step: a frame that did not decode, or a pause of a variable-rate
    source (a screen recording, a phone's), is filled by showing the frame before it again (the
    first good one, for frames lost at the start). Frames that come faster than ``fps`` each get
    their own place, a little late, and the video catches up at the next pause; a frame that
    would be later than ``MAX_LATE_SECONDS`` (a rate slower than the frames for good) is left out
    of the video, so the picture never falls further behind the sound than that (the JSON lines
    keep every frame). Times that are wrong are not followed: one frame out of line with both
    neighbours (a damaged timestamp) takes the next place; a jump of over MAX_FILL_SECONDS forward, or of over a
    second back (a camera's clock, joined recordings), restarts the count from the next place."""

    fps: float
    last: int = -1  # place of the frame placed last
    offset: int = 0  # places the timestamps are off by, after jumps
    prev: float | None = None  # time of the last frame placed by its time

    def gap_before(self, t: float, after: float | None = None, index: int | None = None) -> int | None:
        """How many times the frame before must be shown again before the frame of time ``t``, or
        None where it is left out (too late); ``after``: the next frame's time (None for the last
        frame, or unknown); ``index``: its number in the file, which places the first frame (frames
        lost before it are filled), so a stream whose first time is a frame or two in (an AVI's
        B-frames) gains no repeats."""
        if self.last < 0 and index is not None:
            self.offset = int(round(t * self.fps)) - index
        place = int(round(t * self.fps)) - self.offset
        alone = self.prev is not None and after is not None and (self.prev <= after < t or t < self.prev <= after)
        if after is None and self.prev is not None and place - self.last - 1 > self.fps:
            alone = True  # the last frame over a second after the one before: likelier a damaged time than a pause
        if alone:  # (its neighbours agree with each other, not with it)
            place = self.last + 1
        else:
            if place - self.last - 1 > MAX_FILL_SECONDS * self.fps or place < self.last + 1 - self.fps:
                self.offset += place - self.last - 1
                place = self.last + 1
            elif self.last + 1 - place > max(2, round(MAX_LATE_SECONDS * self.fps)):
                self.prev = t  # (a time followed: the next frame's place counts from it)
                return None
            self.prev = t
        gap = max(0, place - self.last - 1)
        self.last = max(place, self.last + 1)
        return gap


class _StopNow(Exception):
    """Raised by a second Ctrl-C / SIGTERM: stop at once, still closing the outputs."""

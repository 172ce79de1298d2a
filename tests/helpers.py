"""Small builders for test inputs."""
from __future__ import annotations

import signal
import struct
import threading

import cv2
import numpy as np


def sigint_default() -> None:
    """``preexec_fn`` for a subprocess a test interrupts with SIGINT. A shell starts background
    jobs (``pytest ... &``) with SIGINT ignored, and Python keeps an ignored SIGINT, so without
    this the Ctrl-C tests fail whenever the suite itself runs in the background. SIGHUP too: a
    suite started under ``nohup`` (or by a runner that ignores it) passes the ignore on."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose APP1 segment carries an EXIF Orientation tag (IFD0 entry 0x0112)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    jpg = buf.tobytes()
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    data = b"Exif\x00\x00" + tiff
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(data) + 2) + data + jpg[2:]


def synthetic_faces(image: np.ndarray, n: int, seed: int = 0):
    """``n`` moved copies of a face photo with 98-point labels placed by the calibrated mean shape
    on the detector's keypoints (plausible, exactly known labels; no dataset needed)."""
    import json
    from pathlib import Path

    from facemark import align
    from facemark.detector import RetinaFace

    mean98 = np.asarray(json.loads((Path(align.__file__).parent / "calibration.json").read_text())["mean98"])
    det = RetinaFace().detect(image)[0]
    to_canon = align.umeyama(det.kps, align.TEMPLATES["retinaface"])
    labels = align.apply(align.invert(to_canon), mean98)
    rng = np.random.default_rng(seed)
    out = []
    h, w = image.shape[:2]
    for _ in range(n):
        a = np.deg2rad(rng.uniform(-15, 15))
        s = rng.uniform(0.5, 0.8)
        m = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0]])
        m[:, 2] = np.array([w, h]) * 0.4 - m[:, :2] @ np.array([w / 2, h / 2]) + rng.uniform(-10, 10, 2)
        size = (int(w * 0.8), int(h * 0.8))
        img = cv2.warpAffine(image, m, size, borderMode=cv2.BORDER_REFLECT)
        if rng.uniform() < 0.5:
            img = img[:, ::-1].copy()
            pts = align.apply(m, labels)
            pts[:, 0] = size[0] - 1 - pts[:, 0]
            from facemark.layouts import FLIP98

            pts = pts[FLIP98]
        else:
            pts = align.apply(m, labels)
        out.append((img, pts))
    return out


def write_wflw(root, faces_train, faces_test, tags=(1, 0, 0, 0, 0, 0)):
    ann = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True, exist_ok=True)
    for split, faces in (("train", faces_train), ("test", faces_test)):
        lines = []
        for i, (img, pts) in enumerate(faces):
            rel = f"0--Synthetic/{split}_{i}.jpg"
            p = root / "WFLW_images" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), img)
            x1, y1 = pts.min(0)
            x2, y2 = pts.max(0)
            flags = tags if i % 2 == 0 else (0, 0, 0, 0, 0, 0)
            lines.append(" ".join(f"{v:.3f}" for v in pts.reshape(-1)) + f" {x1:.0f} {y1:.0f} {x2:.0f} {y2:.0f} "
                         + " ".join(map(str, flags)) + " " + rel)
        (ann / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")


def write_300w(root, faces, split_dir):
    from facemark import labelmap
    from facemark.training.datasets import write_pts

    d = root / split_dir
    d.mkdir(parents=True, exist_ok=True)
    for i, (img, pts) in enumerate(faces):
        cv2.imwrite(str(d / f"face_{i}.jpg"), img)
        write_pts(d / f"face_{i}.pts", labelmap.to68(pts))


def landmarker_with(model, batch_size: int = 4):
    """A FaceLandmarker around a stand-in model object (the constructor loads models by name)."""
    from facemark import labelmap
    from facemark.detector import RetinaFace
    from facemark.landmarker import FaceLandmarker

    fl = FaceLandmarker.__new__(FaceLandmarker)
    fl.model, fl.detector, fl.batch_size, fl.refine, fl.flip = model, RetinaFace(), batch_size, 0, False
    fl.turned = False
    fl.spec, fl._box_finder = {"threads": None, "device": "cpu"}, None
    fl._finder_lock = threading.Lock()
    fl.map68 = labelmap.load()
    return fl


_MKV_MASTERS = {0x18538067, 0x1F43B675, 0x1549A966}  # Segment, Cluster, Info: elements that hold elements


def _ebml_number(data: bytes, at: int, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length number at ``at``: (value, bytes). IDs keep their length marker."""
    first, n = data[at], 1
    while n <= 8 and not first & (0x80 >> (n - 1)):
        n += 1
    value = first if keep_marker else first & (0xFF >> n)
    for b in data[at + 1:at + n]:
        value = value << 8 | b
    return value, n


def patch_mkv(data: bytearray, duration_ms: float | None = None, block_time=None) -> int:
    """Rewrite a Matroska file (as OpenCV writes it) in place: its Info Duration in ms, and each
    SimpleBlock's time (``block_time(k, ms) -> ms``, the k-th frame, relative to its cluster).
    What other writers make (a longer audio track, a variable frame rate) without their encoders.
    Returns the number of frames seen."""
    k = 0

    def walk(start: int, end: int) -> None:
        nonlocal k
        at = start
        while at < end:
            eid, n = _ebml_number(data, at, True)
            size, m = _ebml_number(data, at + n, False)
            body = at + n + m
            if size == (1 << (7 * m)) - 1:  # "unknown size": up to the end of the parent
                size = end - body
            if eid in _MKV_MASTERS:
                walk(body, min(end, body + size))
            elif eid == 0x4489 and duration_ms is not None:
                data[body:body + size] = struct.pack(">f" if size == 4 else ">d", duration_ms)
            elif eid == 0xA3:
                if block_time is not None:
                    t = body + _ebml_number(data, body, False)[1]  # (after the track number)
                    data[t:t + 2] = struct.pack(">h", block_time(k, struct.unpack(">h", data[t:t + 2])[0]))
                k += 1
            at = body + size

    walk(0, len(data))
    return k



def write_avi(path, frames: list, fps: int, scale: int = 1) -> None:
    """An MJPEG AVI as FFmpeg's AVI writer lays out a variable-rate video: one chunk per frame
    time, empty (a "dropped frame") where ``frames`` holds None, and an ``idx1`` index. Written
    by hand: OpenCV's writer makes no empty chunks. Its rate is ``fps / scale`` frames a second."""
    first = next(f for f in frames if f is not None)
    h, w = first.shape[:2]
    chunks = [b"" if f is None else cv2.imencode(".jpg", f)[1].tobytes() for f in frames]

    def chunk(fourcc: bytes, data: bytes) -> bytes:
        return fourcc + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)

    def lst(kind: bytes, body: bytes) -> bytes:
        return chunk(b"LIST", kind + body)

    big = max(len(c) for c in chunks)
    avih = struct.pack("<10I16x", 1_000_000 * scale // fps if fps else 0, 0, 0, 0x10, len(frames), 0, 1, big, w, h)
    strh = b"vidsMJPG" + struct.pack("<IHHIIIIIIiI4h", 0, 0, 0, 0, scale, fps, 0, len(frames), big, -1, 0, 0, 0, w, h)
    strf = struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 24, b"MJPG", w * h * 3, 0, 0, 0, 0)
    hdrl = lst(b"hdrl", chunk(b"avih", avih) + lst(b"strl", chunk(b"strh", strh) + chunk(b"strf", strf)))
    movi, index, at = b"", b"", 4  # index offsets count from the "movi" word
    for c in chunks:
        index += b"00dc" + struct.pack("<III", 0x10 if c else 0, at, len(c))
        piece = chunk(b"00dc", c)
        movi += piece
        at += len(piece)
    body = b"AVI " + hdrl + lst(b"movi", movi) + chunk(b"idx1", index)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def faststart(data: bytes) -> bytes:
    """An MP4 rewritten with its index (``moov``) before the media (``mdat``), as web downloads
    are laid out: the chunk offsets in ``stco``/``co64`` move by the index's size."""
    boxes, at = {}, 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        boxes[kind] = data[at:at + size]
        at += size
    moov = bytearray(boxes[b"moov"])
    shift = len(moov)
    for kind, width in ((b"stco", 4), (b"co64", 8)):
        at = moov.find(kind)
        while at >= 0:
            count = struct.unpack(">I", moov[at + 8:at + 12])[0]
            for k in range(count):
                p = at + 12 + k * width
                fmt = ">I" if width == 4 else ">Q"
                moov[p:p + width] = struct.pack(fmt, struct.unpack(fmt, moov[p:p + width])[0] + shift)
            at = moov.find(kind, at + 4)
    rest = b"".join(v for k, v in boxes.items() if k not in (b"ftyp", b"moov"))
    return boxes.get(b"ftyp", b"") + bytes(moov) + rest


def stuck_writing(pid: int, most: float) -> None:
    """Wait until process ``pid`` blocks writing to a full pipe (Linux names the wait in
    /proc/PID/wchan), or ``most`` seconds where that cannot be read."""
    import time

    until = time.monotonic() + most
    while time.monotonic() < until:
        try:
            with open(f"/proc/{pid}/wchan") as f:
                if "pipe_write" in f.read():
                    time.sleep(0.2)  # (settled there, not passing through)
                    return
        except OSError:
            pass
        time.sleep(0.05)

"""What a video file's own bytes say, read without decoding: whether it has audio, whether it
was cut short (a copy or download that stopped), whether its frame count is exact, and an AVI's
empty "dropped frame" chunks. MP4/MOV boxes, AVI chunks and Matroska's header; ``video.py``
asks these where OpenCV's reader cannot tell."""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator


def has_audio(path: Path) -> bool | None:
    """Whether a video file has an audio track: read from MP4/MOV track headers and AVI stream
    headers; None where the container is not one of those (then facemark cannot tell)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head.startswith(STILL_MAGIC) or head[8:12] == b"WEBP":  # a photo named .mp4: no audio
                return False
            if head[4:8] in MP4_BOXES:
                return _mp4_has_audio(f)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                f.seek(0)
                return b"auds" in f.read(1 << 20)  # stream headers sit in the first list
            if head[:4] == MATROSKA_MAGIC:
                f.seek(0)
                return _matroska_has_audio(f.read(1 << 20))
    except OSError:
        return None
    return None


MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"  # EBML: Matroska and WebM


def _ebml(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(ID, body start, body end) of each EBML element from ``start`` to ``end``; stops at one
    that does not parse. An ID keeps its length marker (Tracks is 0x1654AE6B); a size's is
    dropped; an unknown size runs to ``end``."""
    at = start
    while at < end:
        n = 9 - data[at].bit_length()  # (a number's length: its leading zero bits, plus one)
        if not 1 <= n <= 4 or at + n >= end:
            return
        eid, at = int.from_bytes(data[at:at + n], "big"), at + n
        m = 9 - data[at].bit_length()
        if not 1 <= m <= 8 or at + m > end:
            return
        size = int.from_bytes(bytes([data[at] & (0xFF >> m)]) + data[at + 1:at + m], "big")
        at += m
        if size == (1 << (7 * m)) - 1:
            size = end - at
        yield eid, at, min(at + size, end)
        at += size


def _matroska_has_audio(data: bytes) -> bool | None:
    """Whether the Tracks element (near the start, before the frames) has a track entry (0xAE)
    whose TrackType (0x83) is 2, audio: each entry's own fields, not bytes that happen to match in
    a codec's private data. None where no whole Tracks element was read."""
    at = data.find(b"\x16\x54\xae\x6b")  # Tracks, not a SeekHead's pointer to it (SeekID 0x53AB, 4 bytes)
    while at >= 3 and data[at - 3:at] == b"\x53\xab\x84":
        at = data.find(b"\x16\x54\xae\x6b", at + 4)
    tracks = next(_ebml(data, at, len(data)), None) if at >= 0 else None
    if tracks is None or tracks[0] != 0x1654AE6B or tracks[2] > len(data) or tracks[1] == tracks[2]:
        return None
    for eid, start, end in _ebml(data, tracks[1], tracks[2]):
        if eid == 0xAE and any(f == 0x83 and int.from_bytes(data[s:e], "big") == 2 for f, s, e in _ebml(data, start, end)):
            return True
    return False


def _mp4_has_audio(f) -> bool | None:
    """Look for a sound handler in the ``moov`` box."""
    data = _mp4_moov(f)
    if data is None:
        return None
    # hdlr: version/flags (4), pre_defined (4), then the handler type
    return any(data[at + 12:at + 16] == b"soun" for at in _find_all(data, b"hdlr"))


def count_is_exact(path: Path) -> bool:
    """Whether the container records its number of video frames: an MP4/MOV sample table (not a
    fragmented file's, nor one with an edit list, which hides samples: a trimmed copy) or an AVI
    header. For others (Matroska, WebM, MPEG-TS...) OpenCV's count is the duration times the frame
    rate: an estimate, too high where the audio runs longer or the rate varies, so frames it
    promises that never come are not "frames that did not decode"."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return True
            if head[4:8] not in MP4_BOXES:
                return False
            data = _mp4_moov(f, whole=True)
    except OSError:
        return False
    return data is not None and b"mvex" not in data and b"elst" not in data  # (an edit list hides some samples)


def avi_empty_frames(path: Path) -> int:
    """How many of an AVI's video chunks are empty: FFmpeg's AVI writer keeps a variable-rate
    video's timing with such "dropped frame" chunks in its gaps. They count as frames in the
    header, but none comes out of them; the frames after them carry their times, so the annotated
    video shows the frame before in their place and nothing is lost. Counted from the ``idx1``
    index (0 without one, or not an AVI)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
                return 0
            stream = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return 0
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"LIST" and stream is None:
                    kind = f.read(4)
                    if kind == b"hdrl":  # the stream headers: the first video stream's number names its chunks
                        header = f.read(min(size - 4, 1 << 20))
                        types = [header[k + 8:k + 12] for k in _find_all(header, b"strh")]
                        stream = types.index(b"vids") if b"vids" in types else -1
                        f.seek(size - 4 - len(header) + (size & 1), os.SEEK_CUR)
                    else:
                        f.seek(size - 4 + (size & 1), os.SEEK_CUR)
                elif chunk[:4] == b"idx1":
                    index = f.read(min(size, 1 << 28))
                    break
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return 0
    if stream is None or stream < 0:
        return 0
    ours = (f"{stream:02d}dc".encode(), f"{stream:02d}db".encode())
    return sum(1 for k in range(0, len(index) - 15, 16)  # entries: chunk id, flags, offset, size
               if index[k:k + 4] in ours and index[k + 12:k + 16] == b"\0\0\0\0")


def avi_stated_rate(path: Path) -> float | None:
    """The rate an AVI's first video stream header states (its rate over its scale); 0.0 where
    either is 0 (no rate: OpenCV's FFmpeg then says 25 and times the frames at that, unsaid);
    None for a file that is no AVI, or whose header cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
                return None
            data = f.read(1 << 16)  # (the header list comes first)
    except OSError:
        return None
    for k in _find_all(data, b"strh"):  # the chunk: fccType, handler, flags, priority, language, initial frames, scale, rate
        if data[k + 8:k + 12] == b"vids" and len(data) >= k + 36:
            scale, rate = struct.unpack("<II", data[k + 28:k + 36])
            return rate / scale if rate and scale else 0.0
    return None


def _find_all(data: bytes, word: bytes) -> list[int]:
    at, found = data.find(word), []
    while at >= 0:
        found.append(at)
        at = data.find(word, at + 4)
    return found


def mp4_has_no_samples(path: Path) -> bool:
    """An MP4/MOV whose tracks hold no samples at all (a recording stopped before its first frame),
    which OpenCV will not open: worth saying so rather than calling it undecodable."""
    import struct

    try:
        with open(path, "rb") as f:
            if f.read(12)[4:8] not in MP4_BOXES:
                return False
            data = _mp4_moov(f, whole=True)
    except OSError:
        return False
    if data is None or b"mvex" in data:  # (cut short, or fragmented: samples outside moov)
        return False
    if b"trak" not in data:  # a complete index without a single track
        return True
    # stsz/stz2: version/flags (4), sample size or field size (4), sample count (4)
    counts = [struct.unpack(">I", data[at + 12:at + 16])[0] for table in (b"stsz", b"stz2")
              for at in _find_all(data, table) if len(data) >= at + 16]
    return bool(counts) and not any(counts)  # tracks, every one empty


def matroska_has_no_frames(path: Path) -> bool:
    """A Matroska/WebM file with no Cluster (where its frames would be): a recording stopped before
    its first frame, which OpenCV will not open. Small files only (a frameless one is a header)."""
    try:
        if os.path.getsize(path) > 1 << 20:
            return False
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[:4] == MATROSKA_MAGIC and b"\x18\x53\x80\x67" in data and b"\x1f\x43\xb6\x75" not in data


STILL_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")  # JPEG, PNG, GIF, BMP, TIFF
MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")  # what an MP4/MOV file starts with
# ftyp brands of files in MP4's box format that hold no video: HEIF/AVIF images (also AVC-coded),
# a Canon CR3 raw, M4A/M4B audio.
NOT_VIDEO_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
                    b"avci", b"avcs", b"crx ", b"M4A ", b"M4B ", b"M4P "}


def looks_like_video(head: bytes) -> bool:
    """Whether a file's first bytes (64 are enough) are a video container's: MP4/MOV (its ftyp
    box naming no image, raw or audio brand among its brands, or a box of the media first), AVI,
    Matroska/WebM, MPEG program or elementary stream, FLV."""
    if head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")
        brands = [head[8:12]] + [head[i:i + 4] for i in range(16, min(size, len(head)) - 3, 4)]
        return not any(b in NOT_VIDEO_BRANDS for b in brands)
    return (head[4:8] in MP4_BOXES or head[:4] == b"RIFF" and head[8:12] == b"AVI " or head[:4] == MATROSKA_MAGIC
            or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3") or head[:3] == b"FLV")


DATA_BOXES = (b"mdat", b"moov", b"moof", b"mfra")  # media and index: a file that ends inside one is cut short


def cut_short(path: Path) -> bool:
    """Whether an MP4/MOV, Matroska/WebM or AVI file ends before the data its own boxes or header
    announce: a download or copy that stopped part-way. (An MP4 whose index comes first still
    opens, and with an edit list its frame count is taken as an estimate: without this, most of a
    cut clip could go missing with exit 0.)"""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if head[4:8] in MP4_BOXES:  # the media and index boxes must end within the file
                for at, kind, n, _ in _mp4_top_boxes(f):
                    if n is None or kind not in MP4_BOXES + DATA_BOXES:  # (to the end by definition; or bytes
                        return False  # after the last box, such as a camera's or tagger's trailer: not ours to judge)
                    if n == -1 or at + n > size:  # (a 64-bit size cut off, or a box past the end)
                        return kind in DATA_BOXES
                return False
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _avi_movi_cut(f, size)
            if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: the Segment after the header must end within the file
                f.seek(0)
                data = f.read(64)
                at = data.find(b"\x18\x53\x80\x67")
                if at < 0 or at + 5 > len(data):
                    return False
                first = data[at + 4]
                width = next((k + 1 for k in range(8) if first & (0x80 >> k)), 0)
                if not width or at + 4 + width > len(data):
                    return False
                value = first & (0xFF >> width)
                for b in data[at + 5:at + 4 + width]:
                    value = value << 8 | b
                if value == (1 << (7 * width)) - 1:  # "unknown size": a live recording's
                    return False
                return at + 4 + width + value > size
    except OSError:
        return False
    return False


def _avi_movi_cut(f, size: int) -> bool:
    """Whether a ``movi`` list (the frames) of an AVI's RIFF parts runs past the end of the file.
    The frames, not the RIFF size: some writers' sizes are a pad byte or two over a whole file,
    and a copy cut in its index alone still has every frame."""
    at = 0
    while at + 12 <= size:  # the RIFF parts: AVI, then AVIX for files over 1 GB (OpenDML)
        f.seek(at)
        head = f.read(12)
        if head[:4] != b"RIFF":
            return False
        end = at + 8 + int.from_bytes(head[4:8], "little")
        inner = at + 12
        while inner + 12 <= min(end, size):
            f.seek(inner)
            chunk = f.read(12)
            n = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"LIST" and chunk[8:12] == b"movi":
                if inner + 8 + n > size:
                    return True
            inner += 8 + n + (n & 1)
        at = end + (end - at) % 2
    return False


def _mp4_top_boxes(f) -> Iterator[tuple[int, bytes, int | None, int]]:
    """(offset, type, size, header length) of each top-level box of an MP4/MOV file: size None
    for a box that runs to the end of the file, -1 where its 64-bit size is cut off; the walk
    ends at the end of the file or at bytes that are no box."""
    import struct

    at = 0
    while True:
        f.seek(at)
        header = f.read(8)
        if len(header) < 8:
            return
        n, kind = struct.unpack(">I4s", header)
        head = 8
        if n == 1:
            large = f.read(8)
            if len(large) < 8:
                yield at, kind, -1, 16
                return
            n, head = struct.unpack(">Q", large)[0], 16
        if n == 0:
            yield at, kind, None, head
            return
        if n < head:
            return
        yield at, kind, n, head
        at += n


def _mp4_moov(f, whole: bool = False) -> bytes | None:
    """Walk the top-level boxes to ``moov`` (skipping ``mdat``) and return its body (64 MiB at
    most; with ``whole``, None unless all of it was read)."""
    for at, kind, n, head in _mp4_top_boxes(f):
        if kind == b"moov":
            if n == -1:
                return None
            body = -1 if n is None else n - head
            f.seek(at + head)
            data = f.read(body if 0 <= body < (64 << 20) else 64 << 20)
            return None if whole and len(data) != body else data
        if n is None or n < 0:
            return None
    return None

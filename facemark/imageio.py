"""Reading images as displayed (EXIF orientation applied) and writing outputs atomically (files)
or whole (lines into a stream)."""
from __future__ import annotations

import errno
import functools
import os
import re
import stat
import struct
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .containers import looks_like_video
from .errors import FacemarkError, no_files_left, out_of_memory
from .quiet import quiet_stderr

IMAGE_EXTS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".j2k", ".pbm",
              ".pgm", ".ppm", ".pnm", ".pfm"}


HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}


def _note(text: str) -> None:
    """A note about an input (a file's damage or odd values), as the API's other notes are
    (``notes.note``: a ``FacemarkWarning`` at the caller's line). Imported here when used:
    ``notes`` imports the detector, which reads images with this module."""
    from .notes import note_of_a_file

    note_of_a_file(text)


def _opencv_reads(ext: str) -> bool:
    """Whether the installed OpenCV writes and reads ``ext`` back: GIF (its first frame) from 4.11
    on, AVIF where it was built with libavif. Folders only offer files that can be read."""
    try:
        ok, buf = cv2.imencode(ext, np.zeros((8, 8, 3), np.uint8))
        return bool(ok) and cv2.imdecode(buf, cv2.IMREAD_COLOR) is not None
    except cv2.error:
        return False


IMAGE_EXTS |= {ext for ext in (".gif", ".avif") if _opencv_reads(ext)}
# Photos a folder may hold that OpenCV does not read (HEIF from phones, camera raw, layered
# formats): left out of a folder's search with a note naming them, never silently.
RAW_EXTS = {".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"}  # camera raw
UNREAD_PHOTO_EXTS = ({".heic", ".heif", ".avif", ".jxl", ".psd"} | RAW_EXTS) - IMAGE_EXTS


def _max_pixels() -> int:
    raw = os.environ.get("FACEMARK_MAX_PIXELS", "")
    try:
        value = int(float(raw)) if raw.strip() else 200_000_000
    except (ValueError, OverflowError):  # not a number, or inf
        value = 0
    if value <= 0:
        print(f"facemark: FACEMARK_MAX_PIXELS={raw!r} is not a positive number; using 200000000", file=sys.stderr)
        value = 200_000_000
    return value


MAX_PIXELS = _max_pixels()  # 200 MP by default: a 16000x12500 photo
MAX_BYTES = 1 << 30  # 1 GiB of compressed input


class ImageError(FacemarkError, ValueError):
    """An input that is not a readable image."""


JPEG_SCAN = 16 << 20  # bytes searched for a JPEG's frame header (EXIF, MPF and ICC segments come first)


def header_size(data: "bytes | memoryview | np.ndarray") -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP, GIF, WebP, TIFF, JPEG 2000, AVIF or PNM header without
    decoding; None if unknown. Given the whole file, a TIFF's directory (often at the end) and a JPEG's frame
    header behind large metadata are found too."""
    whole = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    data = bytes(whole[:65536])
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(whole)
    if data[:2] == b"\xff\xd8":
        data = bytes(whole[:JPEG_SCAN])
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if kind == b"VP8L":
            b = int.from_bytes(data[21:25], "little")
            return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
    # JPEG 2000, as a JP2 file (its image header box: height, width) or a bare codestream (its SIZ
    # marker: the grid's size less its offset); AVIF (where OpenCV reads it), by its largest image
    # spatial extents property. A few KB may claim 32000x32000 pixels, which OpenCV decoded in full
    # before the pixel limit could refuse them. Read by walking the boxes: an ``ihdr`` in an xml box
    # before the real one, or padding past 64 KB, must not stand for the size.
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":
        head = _box(whole, _box(whole, (0, len(whole)), b"jp2h"), b"ihdr")
        if head is None or head[1] - head[0] < 8:
            return None
        h, w = struct.unpack(">II", bytes(whole[head[0]:head[0] + 8]))
        return w, h
    if data[:4] == b"\xff\x4f\xff\x51" and len(data) >= 24:
        xs, ys, xo, yo = struct.unpack(">IIII", data[8:24])
        return max(0, xs - xo), max(0, ys - yo)
    if data[4:8] == b"ftyp" and (data[8:12] in (b"avif", b"avis") or b"avif" in data[16:int.from_bytes(data[:4], "big")]):
        ipco = _box(whole, _box(whole, _box(whole, (0, len(whole)), b"meta", full=True), b"iprp"), b"ipco")
        sizes = [struct.unpack(">II", bytes(whole[a + 4:a + 12])) for t, a, b in _boxes(whole, ipco)
                 if t == b"ispe" and b - a >= 12]  # (a full box: its version and flags, then width, height)
        return max(sizes, key=lambda wh: wh[0] * wh[1]) if sizes else None
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 3:
        fields = data[2:256].split(b"#")[0].split()  # "P6 <w> <h> ..." (comments before the size are rare)
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            return int(fields[0]), int(fields[1])
    if data[:2] == b"\xff\xd8":
        i, steps = 2, 0
        while i + 9 < len(data) and steps < 10_000:  # real files reach the frame header in tens of segments
            steps += 1
            if data[i] != 0xFF:
                i = data.find(b"\xff", i)  # (junk between segments: skipped at C speed)
                if i < 0:
                    break
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            if marker in (0xDA, 0xD9):  # the scan or the end before any frame header: no size to read
                break
            length = struct.unpack(">H", data[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + length
    return None


def _boxes(data, span: "tuple[int, int] | None", most: int = 1000):
    """(type, payload start, box end) of the boxes in ``span`` (start, end) of an ISO box file
    (JP2, AVIF): a 32-bit size and a type, a size of 1 followed by a 64-bit one, 0 running to the
    end; at most ``most`` of them (a crafted file's millions of empty boxes are no loop to follow)."""
    if span is None:
        return
    at, end = span
    for _ in range(most):
        if at + 8 > end:
            return
        size, kind, head = int.from_bytes(data[at:at + 4], "big"), bytes(data[at + 4:at + 8]), 8
        if size == 1 and at + 16 <= end:
            size, head = int.from_bytes(data[at + 8:at + 16], "big"), 16
        elif size == 0:
            size = end - at
        if size < head or at + size > end:
            return
        yield kind, at + head, at + size
        at += size


def _box(data, span: "tuple[int, int] | None", kind: bytes, full: bool = False) -> "tuple[int, int] | None":
    """The span of the first ``kind`` box's payload within ``span``; ``full``: a full box, whose
    version and flags come first."""
    return next(((start + (4 if full else 0), stop) for t, start, stop in _boxes(data, span) if t == kind), None)


def _tiff_tags(data: "bytes | memoryview | np.ndarray", wanted: tuple[int, ...], ifd: int | None = None
               ) -> dict[int, int]:
    """The first value of each ``wanted`` tag in a TIFF's IFD at ``ifd`` (None: the first) (SHORT
    or LONG; a tag with several values, such as BitsPerSample of RGB, gives its first); tags it
    cannot read are left out. Key 0 holds the offset of the next IFD (0: none)."""
    e = "<" if bytes(data[:2]) == b"II" else ">"
    out: dict[int, int] = {}
    try:
        if ifd is None:
            (ifd,) = struct.unpack_from(e + "I", data, 4)
        (n,) = struct.unpack_from(e + "H", data, ifd)
        for k in range(min(n, 4096)):
            tag, typ, count = struct.unpack_from(e + "HHI", data, ifd + 2 + 12 * k)
            if tag in wanted and typ in (3, 4):
                size = 2 if typ == 3 else 4
                at = ifd + 10 + 12 * k
                if count * size > 4:  # the values live elsewhere; the field holds their offset
                    (at,) = struct.unpack_from(e + "I", data, at)
                out[tag] = struct.unpack_from(e + ("H" if typ == 3 else "I"), data, at)[0]
        (out[0],) = struct.unpack_from(e + "I", data, ifd + 2 + 12 * n)
    except struct.error:
        pass  # an IFD beyond the file's end: OpenCV's own limit and the check after decoding still apply
    return out


def _tiff_pages(data: "bytes | memoryview | np.ndarray", most: int = 64) -> int:
    """How many full-size images a TIFF holds (its directories, less reduced-resolution ones:
    NewSubfileType bit 0, a camera's thumbnail), counted up to ``most``."""
    pages, seen, ifd = 0, set(), None
    while len(seen) < most:
        tags = _tiff_tags(data, (254,), ifd)  # (NewSubfileType)
        if not tags:  # (a directory beyond the end: the pages counted so far)
            break
        pages += not tags.get(254, 0) & 1
        seen.add(ifd)
        ifd = tags.get(0, 0)
        if not ifd or ifd in seen:
            break
    return pages


def _tiff_size(data: "bytes | memoryview") -> tuple[int, int] | None:
    """ImageWidth/ImageLength of a TIFF's first image (tags 256/257) from its first IFD."""
    tags = _tiff_tags(data, (256, 257))
    return (tags[256], tags[257]) if 256 in tags and 257 in tags else None


def _png_chunks(data: "bytes | np.ndarray", after_data: bool = False) -> set[bytes]:
    """The kinds of a PNG's chunks before its image data (IHDR, PLTE, tRNS, eXIf...); with
    ``after_data``, of all of them (an eXIf may also come after the image data, and still counts)."""
    kinds, at, walked = set(), 8, 0
    while at + 8 <= len(data) and walked < 100_000:  # (a PNG's chunks: a few hundred; a crafted one, bounded)
        kind = bytes(data[at + 4:at + 8])
        if kind == b"IDAT" and not after_data or kind == b"IEND":
            break
        kinds.add(kind)
        walked += 1
        at += 12 + int.from_bytes(bytes(data[at:at + 4]), "big")
    return kinds


def _alpha_kind(data: "bytes | np.ndarray") -> str | None:
    """From the header (no decoding): None (no alpha), "straight", "associated" (a TIFF's colours
    stored multiplied by alpha: ExtraSamples 1) or "unassociated" (ExtraSamples 2: OpenCV's 8-bit
    reading multiplies them, its 16-bit IMREAD_UNCHANGED does not). ExtraSamples 0 is padding
    (Pillow's RGBX); no tag (OpenCV's own TIFFs), straight. A grey TIFF's alpha OpenCV drops."""
    head = bytes(data[:32])
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        tags = _tiff_tags(data, (277, 338))
        if tags.get(277, 3) < 4 or tags.get(338) == 0:
            return None
        return {1: "associated", 2: "unassociated"}.get(tags.get(338), "straight")
    return "straight" if _may_have_straight_alpha(data) else None


def _never_turned(data: "bytes | np.ndarray") -> bool:
    """Whether the header rules out an EXIF orientation (so IMREAD_UNCHANGED shows the image as
    displayed): a PNG without eXIf, a WebP without EXIF, a TIFF without Orientation, a BMP."""
    head = bytes(data[:32])
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return b"eXIf" not in _png_chunks(data, after_data=True)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return head[12:16] != b"VP8X" or not head[20] & 0x08
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_tags(data, (274,)).get(274, 1) == 1
    return head[:2] == b"BM"


def _may_have_straight_alpha(data: "bytes | np.ndarray") -> bool:
    head = bytes(data[:32])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 25:
        return head[25] in (4, 6) or b"tRNS" in _png_chunks(data)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        if head[12:16] == b"VP8X":
            return bool(head[20] & 0x10)
        if head[12:16] == b"VP8L":
            return bool(int.from_bytes(head[21:25], "little") >> 28 & 1)
        return False  # simple lossy: colour only
    if head[:3] == b"\xff\xd8\xff" or head[:1] == b"P" and head[1:2] in b"123456":  # JPEG, PBM/PGM/PPM
        return False
    if head[:2] == b"BM" and len(head) >= 30:
        return int.from_bytes(head[28:30], "little") == 32  # bits per pixel: only 32 has room for alpha
    return True


def sixteen_bit(data: "bytes | np.ndarray") -> bool:
    """Whether a PNG, TIFF, JPEG 2000 or 16-bit PNM stores more than 8 bits per sample (from its
    header), so that OpenCV's 8-bit reading keeps only the top 8 of 16."""
    head = bytes(data[:48])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 24:
        return head[24] == 16
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_tags(data, (258,)).get(258) == 16
    if head[:4] == b"\xff\x4f\xff\x51" and len(head) > 42:  # a JPEG 2000 codestream: its SIZ, first component
        return (head[42] & 0x7F) + 1 > 8
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # a JP2 file: its ihdr box (0xFF: depths differ)
        at = bytes(data[:512]).find(b"ihdr")
        return at > 0 and at + 15 <= len(data) and (data[at + 14] == 0xFF or (data[at + 14] & 0x7F) + 1 > 8)
    return _pnm_maxval(data) == 65535


def _pnm_maxval(data: "bytes | np.ndarray") -> int | None:
    """A PGM/PPM/PAM's largest value, from its header (None: not one, or a bitmap). OpenCV reads the
    values as they are stored, whatever this says (1023 shows as 4 of 255), except in a text PGM/PPM
    of 255 or less, which it scales."""
    head = bytes(data[:512])
    if head[:2] in (b"P2", b"P3", b"P5", b"P6"):
        # width, height, maxval: digits between blanks and comments; the maxval ends at one blank,
        # and the pixel bytes after it may be anything (blanks too: a dark band's)
        found = re.match(rb"P[2356](?:(?:\s|#[^\n]*\n)+(\d+)){3}(?:\s|#[^\n]*\n)", head)  # (a comment may follow)
        value = found.group(1) if found else b""
    elif head[:3] == b"P7\n":
        found = re.search(rb"^MAXVAL\s+(\d+)", head, re.MULTILINE)
        value = found.group(1) if found else b""
    else:
        return None
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else None


def check_regular_file(path: Path, what: str = "an image") -> None:
    """Refuse what is not a regular file before opening it: a FIFO would block forever, a device
    read without end. ``what`` the file should have been, for the message."""
    try:
        st = path.stat()
    except FileNotFoundError:
        nowhere = broken_link(path)  # (a folder's broken link was "no such file": said as it is)
        raise ImageError(f"{path} {nowhere}" if nowhere else f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path} is a directory, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path} is not a regular file (a FIFO, socket or device), not read")
    if st.st_size > MAX_BYTES:
        raise ImageError(f"{path} is {st.st_size / 2**30:.1f} GiB, over facemark's 1 GiB input limit")


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """BGR uint8 image as displayed: EXIF orientation applied; grey, alpha and 16-bit inputs
    converted. ``imdecode`` on the raw bytes also copes with non-ASCII paths. Images over
    ``max_pixels`` (default ``MAX_PIXELS``) are refused from their header, before any decoding."""
    if not os.fspath(path):  # Path("") would be ".", the current folder
        raise ImageError("an empty path names no image")
    path = Path(path)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    check_regular_file(path)
    if path.suffix.lower() in RAW_EXTS:  # (TIFF containers: OpenCV would read their small preview as the photo)
        raise ImageError(f"{path} is a camera raw file ({path.suffix}), of which OpenCV reads only a small preview; "
                         f"convert it to JPEG or TIFF first")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise no_files_left(path, e) or ImageError(f"cannot read {path}: {e.strerror or e}") from None
    return decode_image(data, str(path), limit)


def decode_image(data: "bytes | np.ndarray", name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes -> BGR uint8 as displayed (EXIF applied); ``ImageError`` naming
    ``name`` if they are empty, too many pixels (checked from the header first) or undecodable."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if data.size == 0:
        raise ImageError(f"{name} is empty")
    size = header_size(data)
    if size is not None and size[0] * size[1] > limit:
        packed = bytes(data[:3]) not in (b"GIF",) and bytes(data[:2]) != b"BM"  # (GIF's screen, BMP's RLE: any size)
        if packed and size[0] * size[1] > 10_000_000 * data.size:  # (PNG, JPEG, WebP, TIFF: never that many a byte)
            raise ImageError(f"{name} is damaged: its header says {size[0]}x{size[1]} pixels, far more than its "
                             f"{data.size:,} bytes can hold")
        raise ImageError(f"{name} is {size[0]}x{size[1]} pixels, over the {limit:,}-pixel limit "
                         f"(FACEMARK_MAX_PIXELS raises it)")
    tiff = _tiff_tags(data, (258, 339)) if bytes(data[:4]) in (b"II*\x00", b"MM\x00*") else {}
    if tiff.get(339) == 2 and tiff.get(258, 8) <= 16:  # (32-bit ones are refused below, as all 32-bit integers)
        # (SampleFormat 2: OpenCV reads them as if unsigned, so a scan's values show black or garbled)
        raise ImageError(f"{name}: its pixels are signed integers, which facemark does not read; save it with "
                         f"unsigned 8 or 16 bits per channel")
    kind = _alpha_kind(data)
    said: list[bytes] | None = [] if bytes(data[:2]) == b"\xff\xd8" else None  # (libjpeg's words on damage)
    try:
        with quiet_stderr(said):  # (an 8-bit image with alpha that cannot be turned: one decoding gives both)
            raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if kind and _never_turned(data) else None
            if raw is not None and raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 4:
                planes = _planes(raw, kind, data)
                image = over_white(*planes[:2]) if planes is not None and planes[1].min() < 255 \
                    else cv2.cvtColor(raw, cv2.COLOR_BGRA2BGR)
                kind = None  # (done)
            elif bytes(data[:3]) in (b"PF\n", b"Pf\n"):  # (PFM: floats, which IMREAD_COLOR cast to 0 and 1: black)
                image = None  # (read below, as floating-point TIFFs are)
            else:
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:
        if out_of_memory(e):  # (the file is fine: this process could not hold its pixels, ulimit or a small machine)
            msg = "not enough memory to decode it" + (f" ({size[0]}x{size[1]} pixels)" if size else "")
        else:
            msg = "too many pixels for OpenCV" if "pixel" in str(e).lower() else "OpenCV cannot decode it"
        raise ImageError(f"{name}: {msg}") from None
    if image is None:  # floating-point TIFFs and the like: IMREAD_COLOR will not make them 8-bit
        try:
            with quiet_stderr():
                raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        except cv2.error:
            raw = None
        if raw is not None and raw.dtype.kind == "f" and raw.size and np.isfinite(raw).all():
            top = _bright_end(raw)
            if 1.0 < top < HDR_TOP:  # neither 0-1 nor 0-255: linear light (HDR), or nearly black read as 0-255
                _note(f"{name}: its floating-point pixels run to about {top:.3g}, neither 0-1 nor 0-255: "
                      f"read scaled so that its brightest are white (as 0-255 it was nearly black)")
                raw = raw * np.float32(255.0 / top)
            image = as_bgr(raw)  # [0, 1] scaled to 0..255, else clipped
        elif raw is not None and raw.dtype.kind == "f" and raw.size:
            raise ImageError(f"{name}: some of its floating-point pixels are not numbers (NaN or infinite); "
                             f"facemark cannot tell what they would show")
        elif raw is not None and raw.size and raw.dtype not in (np.uint8, np.uint16):  # (32-bit integer TIFFs)
            raise ImageError(f"{name}: its pixels are {raw.dtype.itemsize * 8}-bit "
                             f"{'integers' if raw.dtype.kind in 'iu' else raw.dtype.name}, which facemark does not "
                             f"read; save it with 8 or 16 bits per channel")
    if image is None and said is not None and b"\xff\xd9" not in bytes(data[-64:]):
        image = _without_end_marker(data)
        if image is not None and _progressive(data):  # (one cut between its scans decodes whole, with less detail)
            _note(f"{name}: a progressive JPEG without its end marker: it may have been cut short between "
                  f"scans and show less detail than the whole file")
    damage = _damaged_jpeg(said[0], data) if image is not None and said else None
    if damage:
        _note(f"{name}: its JPEG data is damaged ({damage}); the parts that did not decode are grey or "
              f"garbled, so its faces may be missed or their points off")
    if image is None and _cut_short(data):
        raise ImageError(f"{name} is cut short: its data ends before the image does (a copy or download "
                         f"that stopped?)")
    if image is None and bytes(data[4:8]) == b"ftyp" and bytes(data[8:12]) in HEIF_BRANDS:
        brand = bytes(data[8:12]).decode()
        if brand in ("avif", "avis") and ".avif" in IMAGE_EXTS:  # (this OpenCV reads AVIF: this one is damaged)
            raise ImageError(f"{name} is an AVIF image that did not decode (damaged or cut short)")
        raise ImageError(f"{name} is a HEIF image ({brand}: a phone's HEIC, or AVIF), which the installed OpenCV "
                         f"does not read; convert it to JPEG or PNG")
    if image is None and bytes(data[:4]) == b"8BPS":
        raise ImageError(f"{name} is a Photoshop document (PSD), which facemark does not read; export it as JPEG or PNG")
    if image is None and (bytes(data[:2]) == b"\xff\x0a" or bytes(data[:12]) == b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        raise ImageError(f"{name} is a JPEG XL image, which the installed OpenCV does not read; convert it to JPEG or PNG")
    if image is None and looks_like_video(bytes(data[:64])):
        raise ImageError(f"{name} is a video, not an image: facemark video reads it")
    if image is None:
        raise ImageError(f"{name} is not an image OpenCV can decode (damaged or not an image)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"{name} has no pixels")
    maxval = _pnm_maxval(data)
    scaled_already = bytes(data[:2]) in (b"P2", b"P3") and maxval is not None and maxval < 256  # (OpenCV's text PNM)
    if maxval not in (None, 255, 65535) and not scaled_already:  # (a 10- or 12-bit PGM/PPM, or fewer levels than 255)
        image = _pnm_scaled(data, maxval, image)
    elif image[::16, ::16].max() <= 16 and sixteen_bit(data) and image.max() <= 16:
        image = _fewer_bits_in_sixteen(data, name, image)
    if image.shape[0] * image.shape[1] > limit:
        raise ImageError(f"{name} is {image.shape[1]}x{image.shape[0]} pixels, over the {limit:,}-pixel limit "
                         f"(FACEMARK_MAX_PIXELS raises it)")
    if bytes(data[:4]) in (b"II*\x00", b"MM\x00*") and not _SAID.get("pages") and _tiff_pages(data) > 1:
        _SAID["pages"] = True  # (once per process: a folder of scanned documents is one line)
        _note(f"{name} holds several pages (a multi-page TIFF): only its first is searched, as on any "
              f"other such file")
    if kind:  # (IMREAD_COLOR gave the colours under the alpha, turned as EXIF says)
        image = _over_white(_turned_bgra(data, image, over=False, kind=kind), image)
    return image


def _first_scan(d: bytes) -> tuple[int | None, bool]:
    """Where a JPEG's first scan starts (None: none found) and whether a progressive frame header
    came before it: its segments walked, so an EXIF thumbnail's bytes are never read as its own."""
    at, progressive = 2, False
    while at + 4 <= len(d) and d[at] == 0xFF:
        marker = d[at + 1]
        if marker == 0xFF:  # (fill byte)
            at += 1
            continue
        if marker == 0xDA:
            return at, progressive
        progressive = progressive or marker in (0xC2, 0xC6, 0xCA, 0xCE)  # (Huffman or arithmetic)
        at += 2 + int.from_bytes(d[at + 2:at + 4], "big")
    return None, progressive


def _end_marker(d: bytes) -> int | None:
    """Where the image's own end marker (EOI) is: the first FF D9 after its first scan starts
    (scan data stuffs every FF with 00 or a restart number), not a later image's (an MPF preview,
    a motion photo's video) or an EXIF thumbnail's before it."""
    scan = _first_scan(d)[0]
    found = -1 if scan is None else d.find(b"\xff\xd9", scan)
    return None if found < 0 else found


def _progressive(data: np.ndarray) -> bool:
    return _first_scan(bytes(data))[1]


def _without_end_marker(data: np.ndarray) -> np.ndarray | None:
    """A JPEG whose only fault is its missing end marker (EOI), decoded with one put back: viewers
    show such files whole, OpenCV 5 refuses them. One cut short inside its data stays refused
    (libjpeg says the data ended early, and the rest would be grey)."""
    said: list[bytes] = []
    try:
        with quiet_stderr(said):
            image = cv2.imdecode(np.concatenate([data.ravel(), np.frombuffer(b"\xff\xd9", np.uint8)]),
                                 cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    words = said[0].decode("utf-8", "replace") if said else ""
    return None if "Corrupt JPEG" in words or "Premature end" in words else image


def _over_white(planes: "tuple[np.ndarray, np.ndarray, np.ndarray] | None", otherwise=None) -> np.ndarray:
    """The image as shown: its colours laid over white where it has alpha below 255."""
    if planes is None:
        return otherwise
    colour, alpha, as_read = planes
    return over_white(colour, alpha) if alpha.min() < 255 else np.ascontiguousarray(as_read)


def _damaged_jpeg(said: bytes, data: np.ndarray) -> str | None:
    """libjpeg's line about data it could not decode, or None. "Extraneous bytes before marker"
    is damage only where those bytes are scan data that libjpeg lost its place in (the rows after
    the damage come out garbled): a camera's or scanner's padding and trailers before the end
    marker decode whole, and libjpeg says the same of them."""
    import re

    for line in said.decode("utf-8", "replace").splitlines():
        if "Premature end of JPEG" in line:
            return line.strip()
        if "Corrupt JPEG data" not in line:
            continue
        extra = re.search(r"(\d+) extraneous bytes before marker 0x(\w+)", line)
        if extra is None:
            return line.strip()
        n, marker = int(extra.group(1)), extra.group(2).lower()
        restart = marker in ("d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7")
        if (marker == "d9" and _scan_data_before_end(data, n)) or (restart and n > 32):
            return line.strip()  # (before a restart marker: the rest of a damaged interval was skipped;
    return None  # before a header's marker, padding between segments: no scan data is lost there)


def _scan_data_before_end(data: np.ndarray, n: int) -> bool:
    """Whether the ``n`` bytes before a JPEG's own end marker look like entropy-coded scan data:
    about as many distinct values as random bytes have, not text, and every FF followed by 00 (the
    stuffing of scan data) or a restart marker. A camera's few stray bytes, padding (zeros, one
    byte repeated, FF fill) and vendor trailers (text, or binary whose FF bytes are followed by
    anything) are not."""
    d = bytes(data)
    end = _end_marker(d)
    stretch = np.frombuffer(d[max(0, end - n):end] if end is not None else b"", np.uint8)
    if n < 8 or len(stretch) < n:
        return False
    distinct = np.count_nonzero(np.bincount(stretch, minlength=256))
    random_like = 256 * (1 - (255 / 256) ** n)  # the distinct values n random bytes hold, on average
    text = np.isin(stretch, (9, 10, 13)) | ((stretch >= 32) & (stretch < 127))
    after_ff = stretch[1:][stretch[:-1] == 0xFF]
    stuffed = bool(np.all((after_ff == 0) | ((after_ff >= 0xD0) & (after_ff <= 0xD7)))) and stretch[-1] != 0xFF
    return distinct >= 0.6 * random_like and text.mean() < 0.9 and stuffed


def _cut_short(data: np.ndarray) -> bool:
    """Whether a JPEG or PNG that did not decode ends before its end marker (EOI, IEND). Its
    segments or chunks are walked, so bytes appended after the end, or an EXIF thumbnail's own
    EOI, say nothing either way; a walk thrown off by a damaged length calls the file short only
    if its last bytes hold no end marker: a damaged file that is whole is not called cut short."""
    d = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)  # (only for a file that failed)
    if d[:3] == b"\xff\xd8\xff":
        return _jpeg_stops_short(d) and b"\xff\xd9" not in d[-64:]
    if d[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_stops_short(d) and b"IEND" not in d[-64:]
    return False


def _jpeg_stops_short(d: bytes) -> bool:
    at = 2
    while at + 4 <= len(d):
        if d[at] != 0xFF:
            return False  # not a marker where one must be: damaged, not short
        marker = d[at + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, markers without length
            at += 1 if marker == 0xFF else 2
            continue
        if marker == 0xD9:
            return False
        end = at + 2 + int.from_bytes(d[at + 2:at + 4], "big")
        if marker == 0xDA:  # the image data: no FF D9 inside it (FF bytes there are escaped)
            return d.find(b"\xff\xd9", end) < 0
        at = end
    return True  # the file ends among the headers


def _png_stops_short(d: bytes) -> bool:
    at = 8
    while at + 8 <= len(d):
        n = int.from_bytes(d[at:at + 4], "big")
        if d[at + 4:at + 8] == b"IEND" or n >= 1 << 31:  # (over PNG's own limit: a damaged length)
            return False
        at += 12 + n
    return True


def _fewer_bits_in_sixteen(data: np.ndarray, name: str, image: np.ndarray) -> np.ndarray:
    """A 16-bit PNG, TIFF, JPEG 2000 or PNM that holds 8-bit values (a uint8 array cast up), or a 10- or
    12-bit camera's, reads black or nearly (16-bit spans 0..65535) and no face is found in it.
    Its values are read at the depth they use, with a warning. Looked at only when the usual 8-bit
    reading is nearly black (no value over 16: 4095 rounds to it)."""
    try:
        with quiet_stderr():
            deep = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)  # EXIF still applied
    except cv2.error:
        return image
    if deep is None or deep.dtype != np.uint16 or deep.shape[:2] != image.shape[:2] or not deep.max():
        return image
    # (with a little room over the depth's top: lossy JPEG 2000 overshoots it by a few values)
    bits = next(b for b in (8, 10, 12, 16) if int(deep.max()) < (1 << b) + (1 << b) // 64)
    if bits == 16:  # (not from a nearly black 8-bit reading; kept as it was read)
        return image
    said = "eight_in_sixteen" if bits == 8 else f"bits{bits}_in_sixteen"
    if not _SAID.get(said):  # once per process and depth: a folder of such frames is one line, not thousands
        _SAID[said] = True
        guess = "" if bits == 8 else f", the least depth that holds its values, so brightened {1 << (bits - 8)}x"
        top = (1 << bits) - 1
        _note(f"{name} is 16-bit but no value is {'' if deep.max() <= top else 'much '}over {top} (it would show "
              f"{'black' if bits == 8 else 'nearly black'}): read as {bits}-bit values{guess}, as any other "
              f"such file will be")
    return np.minimum(deep >> (bits - 8), 255).astype(np.uint8)


_SAID = {"eight_in_sixteen": False}


def _pnm_scaled(data: np.ndarray, maxval: int, image: np.ndarray) -> np.ndarray:
    """A PGM/PPM's values brought from its own scale (0..maxval) to 0..255, as its header says."""
    try:
        with quiet_stderr():
            stored = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error:
        return image
    if stored is None or stored.shape[:2] != image.shape[:2]:
        return image
    return np.clip(np.round(stored.astype(np.float32) * (255.0 / maxval)), 0, 255).astype(np.uint8)


def over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 colour laid over white by its uint8 alpha: what a page shows, and what the models see.
    An eraser often only zeroes alpha, so a face can lie under fully transparent pixels; it is not
    in the picture and must not be found. (Integers: c·a + 255·(255 - a) fits 16 bits.)"""
    out = np.array(colour, dtype=np.uint8, order="C")
    seen = alpha < 255  # (only those pixels change: most of a cut-out is opaque)
    a = alpha[seen].astype(np.uint16)[:, None]
    out[seen] = (colour[seen].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out


def bgra_as_shown(path: str | os.PathLike, shown: np.ndarray) -> np.ndarray | None:
    """The image file's own colours and alpha (BGRA uint8), turned as ``shown`` (what ``read_image``
    gave: laid over white), or None if it has no alpha. For drawing on: the colours under partly
    transparent pixels must stay the file's, not white-tinted."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    found = _turned_bgra(data, shown, over=True)
    return None if found is None else np.dstack(found[:2])


def _planes(raw: np.ndarray, kind: str, data) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(colour, alpha, as read) of an ``IMREAD_UNCHANGED`` BGRA decoding, uint8: the file's own
    colours (for drawing on, and for laying over white), its alpha, and the colours OpenCV's
    ``IMREAD_COLOR`` gives (multiplied by alpha where the file or libtiff does so). None: no alpha
    after all (not BGRA; an alpha of 0 everywhere, shown opaque)."""
    if raw is None or raw.ndim != 3 or raw.shape[2] != 4 or raw.dtype not in (np.uint8, np.uint16):
        return None
    stored, alpha = raw[..., :3], raw[..., 3]
    deep = raw.dtype == np.uint16
    if deep and stored.max() > 255:  # as decode_image reads it: 8-bit values stay
        stored, alpha = stored >> 8, alpha >> 8
    elif deep and alpha.max() > 255:
        alpha = alpha >> 8
    stored, alpha = stored.astype(np.uint8), alpha.astype(np.uint8)
    if not alpha.any():  # nothing shown at all: an unset alpha (a capture's, an export's; a 32-bit BMP's
        return None      # fourth bytes), not an invisible picture: opaque, as for a BGRA array
    if kind == "straight":
        return stored, alpha, stored
    a = alpha.astype(np.uint16)[..., None]
    if kind == "unassociated" and deep:  # stored straight; IMREAD_COLOR multiplies
        return stored, alpha, ((stored.astype(np.uint16) * a + 127) // 255).astype(np.uint8)
    # stored multiplied (by the file, or by libtiff at 8 bits): the file's own colours divided back out
    own = np.where(a > 0, np.minimum((stored.astype(np.uint32) * 255 + a // 2) // np.maximum(a, 1), 255), 0)
    return own.astype(np.uint8), alpha, stored


def _turned_bgra(data: np.ndarray, shown: np.ndarray, over: bool,
                 kind: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``_planes`` of encoded bytes turned as ``shown``, or None if they have no alpha. OpenCV keeps
    alpha only with ``IMREAD_UNCHANGED``, which skips EXIF orientation, so the planes are turned
    whichever of the 8 ways makes them match ``shown`` (``over``: laid over white, as
    ``decode_image`` shows them; else as ``IMREAD_COLOR`` reads them)."""
    kind = kind or _alpha_kind(data)  # (decode_image has read it from the header already)
    if kind is None:  # most files: told by the header, with no second decoding
        return None
    try:
        with quiet_stderr():
            planes = _planes(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), kind, data)
    except (cv2.error, MemoryError):
        return None
    if planes is None:
        return None
    colour, alpha, as_read = planes
    step = max(1, min(shown.shape[:2]) // 64)  # compared on a sample: colours decode alike, to a rounding
    found = []
    for k in range(4):
        for flip in (False, True):
            def turn(a: np.ndarray) -> np.ndarray:
                return np.rot90(a, k)[:, ::-1] if flip else np.rot90(a, k)
            if turn(colour).shape[:2] != shown.shape[:2]:
                continue
            sample = over_white(turn(colour)[::step, ::step], turn(alpha)[::step, ::step]) if over \
                else turn(as_read)[::step, ::step]
            if np.abs(sample.astype(np.int32) - shown[::step, ::step].astype(np.int32)).max() <= 1:
                found.append(tuple(np.ascontiguousarray(turn(x)) for x in (colour, alpha, as_read)))
    if not found or any(not np.array_equal(f[1], found[0][1]) for f in found[1:]):
        return None  # no turn fits, or several do and disagree (a flat image): no guess
    return found[0]


HDR_TOP = 16.0  # float pixels whose bright end is over 1 and under this are scaled by it (see decode_image)


def _bright_end(image: np.ndarray) -> float:
    """The 99.9th percentile of a float image's finite pixels (0 for none), not the maximum: linear
    and HDR exports keep a few highlights far above the rest."""
    sample = image[:: max(1, image.shape[0] // 256), :: max(1, image.shape[1] // 256)]
    finite = sample[np.isfinite(sample)]
    return float(np.quantile(finite, 0.999)) if finite.size else 0.0


def _unit_range(image: np.ndarray) -> bool:
    """Whether float pixels are on a 0-1 scale rather than 0-255 (by ``_bright_end``: one highlight
    above 1.0 must not turn the whole image black)."""
    return _bright_end(image) <= 1.0


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Accept grey (H, W), grey and alpha (H, W, 2: PIL's "LA"), BGR (H, W, 3) or BGRA (H, W, 4)
    arrays, uint8 or uint16; alpha laid over white."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 2:  # (as BGRA: one rule for alpha)
        image = image[..., [0, 0, 0, 1]]
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        if image.dtype.kind == "f" and image.size and _unit_range(image):
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:  # as a file with alpha is read
        if not image[..., 3].any():  # alpha all 0: a capture's unset byte, not an invisible picture
            return np.ascontiguousarray(image[..., :3])
        return over_white(image[..., :3], image[..., 3])
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise ImageError(f"unsupported image shape {image.shape}")


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    """This machine and pid namespace: the host name, the boot (a reused name after a reinstall),
    and the pid namespace (a container sharing the host's name sees other pids)."""
    import hashlib
    import socket

    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:  # not Linux: the host name alone
        pass
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]


def temp_prefix() -> str:
    """Temporary files name their machine and process (``.fm-<host>-<pid>-``), so a later run can
    tell the leftovers of a killed run from the files of a run still writing."""
    return f".fm-{_host_tag()}-{os.getpid()}-"


def make_temp(folder: str | os.PathLike, suffix: str = ".tmp") -> tuple[int, str]:
    return tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=folder)  # short: long names still fit


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete the temporary files that runs on this machine left in ``folder`` when they were
    killed (SIGKILL, a crash, a power cut: no chance to clean up). Files of live processes and of
    other machines are left alone (and on Windows, where liveness is not checked here, all are).
    Returns how many were removed."""
    if os.name == "nt":
        return 0
    mine = f".fm-{_host_tag()}-"
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(mine):
            continue
        head = name[len(mine):].split("-", 1)[0]
        if not head.isdigit() or not 0 < int(head) < 1 << 22:  # Linux pids are below 2**22
            continue
        pid = int(head)
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed run whose parent died too stays a zombie until init reaps it: dead, though
    ``kill(pid, 0)`` still finds it (its temp files were kept until then)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # (no /proc: macOS and the like; a process gone meanwhile is found by the next run)
        return False
    return stat[stat.rfind(b")") + 2:][:1] == b"Z"  # (the state follows the name, which may hold ")")


def missing_folders(folder: Path) -> list[Path]:
    """The folders that writing into ``folder`` will make, deepest first (removed again, where
    still empty, by a run that ends before writing anything)."""
    out = []
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def remove_empty(folders: list[Path]) -> None:
    """``missing_folders``' folders removed again where still empty (a run that wrote nothing)."""
    for q in folders:
        try:
            q.rmdir()  # (only where still empty)
        except OSError:
            pass


def current_umask() -> int:
    """The process's umask, read without setting it where the system tells it (Linux): setting it
    to read it, even for an instant, gave files other threads made then every permission."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)  # (elsewhere: the briefest window, and a strict one)
    os.umask(umask)
    return umask


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual permissions (mkstemp makes it 0600) and rename
    it into place in one step."""
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


_DESCRIPTOR = re.compile(r"/dev/(?:(stdin)|(stdout)|(stderr)|fd/(\d+))|/proc/(self|thread-self|\d+)(?:/task/\d+)?/fd/(\d+)")


def descriptor_named(path: str | os.PathLike) -> int | None:
    """The open file descriptor a name stands for: ``/dev/stdout`` 1, ``/dev/fd/N`` and
    ``/proc/self/fd/N`` N, through links to them or to their folders; -1 for another process's
    (``/proc/PID/fd/N``); None for a name of its own. Opening such a name gives a new handle, and
    renaming a file over it replaces the file the descriptor writes into (a redirected stdout's),
    so outputs that are written whole and renamed must not take them."""
    try:
        hop = os.path.abspath(path)
        for _ in range(40):  # (the kernel's own limit on a chain of links)
            hop = os.path.join(os.path.realpath(os.path.dirname(hop)), os.path.basename(hop))  # (its folder's links)
            m = _DESCRIPTOR.fullmatch(hop)
            if m:
                stdin, stdout, stderr, fd, pid, pfd = m.groups()
                if pid is not None:
                    return int(pfd) if pid in ("self", "thread-self") or int(pid) == os.getpid() else -1
                return 0 if stdin else 1 if stdout else 2 if stderr else int(fd)
            if not os.path.islink(hop):
                return None
            hop = os.path.join(os.path.dirname(hop), os.readlink(hop))
    except (OSError, ValueError):  # (no working folder any more, a name the system refuses: a name of its own)
        return None
    return None


def broken_link(path: str | os.PathLike) -> str | None:
    """How a symbolic link leads nowhere, to follow its path in a message (None: it is no such link)."""
    if not (os.path.islink(path) and not os.path.exists(path)):
        return None
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:  # (its target exists, as a link back: "does not exist" misled)
            return "is a loop of symbolic links"
    return f"is a link to {os.readlink(path)}, which does not exist"


def too_long_name(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be made, in a line that shows the path cut short: a part longer than its
    file system takes (255 bytes on most), or None. Said before the work: under a folder not made
    yet it was found only when the output was written, after the work (and the folder was left)."""
    try:
        absolute = Path(os.path.abspath(path))
    except OSError:  # (no working folder any more: said where the output is made)
        return None
    where = absolute.parent
    while where != where.parent and not _is_folder(where):
        where = where.parent
    try:
        most = os.pathconf(where, "PC_NAME_MAX")
    except (OSError, ValueError):
        most = 255
    most = most if most > 0 else 255  # (-1: no limit said)
    longest = max(len(os.fsencode(part)) for part in absolute.parts)
    if longest <= most:
        return None
    return f"{str(path)[:60]}...: a name in it is too long ({longest} bytes, {most} at most)"


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # (ENAMETOOLONG: Path.is_dir re-raises it)
        return False


def standard_stream_file(path: str | os.PathLike) -> int | None:
    """1 or 2 where ``path`` is the regular file standard output or error goes to
    (``--json r.txt > r.txt``), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    for fd in (1, 2):
        try:
            if os.path.samestat(st, os.fstat(fd)):
                return fd
        except OSError:  # (closed)
            pass
    return None


def dim_uint16(image: np.ndarray, name: str = "image") -> str | None:
    """What to tell a caller whose uint16 array holds no value over 4095 (8-bit values cast up, a
    10- or 12-bit camera's): it reads, and draws, as nearly black. None for any other array."""
    if image.dtype != np.uint16:
        return None
    colour = image[..., :-1] if image.ndim == 3 and image.shape[2] in (2, 4) else image  # (alpha may be 65535)
    top = int(colour.max())
    if not 0 < top < 4096:
        return None
    bits = next(b for b in (8, 10, 12) if top < 1 << b)
    scaled = f"{name}.astype(np.uint8)" if bits == 8 else f"({name} >> {bits - 8}).astype(np.uint8)"
    return (f"{name} is uint16 but no value is over {(1 << bits) - 1}, so it reads as nearly black "
            f"(uint16 spans 0..65535); if it holds {bits}-bit values, pass {scaled}")


def within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def output_target(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Where an atomic write to ``path`` really goes: through a symbolic link to its file (the link
    stays); a device, FIFO or folder is refused rather than replaced by a regular file, and so is a
    link to nothing (a dangling link at an output's name in ``--out`` wrote that image's result
    wherever it pointed, outside ``--out``), and, given the ``root`` folder outputs belong in, a
    link leading out of it (one planted at the name, to a file elsewhere, was written through)."""
    path = Path(path)
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if root is not None and not within(str(target), os.path.realpath(root)):
            raise OSError(errno.EPERM, f"{path} is a symbolic link out of {root} (to {target}): not written through",
                          str(path))
        if not target.parent.is_dir():  # (its folders are not made wherever it points)
            raise OSError(errno.ENOENT, f"{path} is a link to {target}, whose folder does not exist", str(path))
        if not target.exists():
            raise OSError(errno.ENOENT, f"{path} is a link to {target}, which does not exist: not written through "
                                        f"(remove the link, or make {target.name} first)", str(path))
        path = target
    if path.exists() and not path.is_file():
        raise OSError(errno.EEXIST, f"{path} exists and is not a regular file (a folder or a device)", str(path))
    return path


def atomic_write(path: str | os.PathLike, write, suffix: str = ".tmp", tidy: bool = False,
                 root: str | os.PathLike | None = None) -> None:
    """``write(temporary path)`` in the same folder, then rename into place: a full disk, Ctrl-C
    or a crash never leaves a half-written file under the real name. The temporary file is named
    for its machine and process, so a killed run's leftover can be told apart and removed
    (``remove_stale_temps``): by the runs that write into a folder, or here with ``tidy`` (for a
    one-off file such as a pack or a cache; a listing of the folder per write would be too slow
    for the outputs of a million images). ``suffix``: what the writer needs the name to end in
    (``np.savez`` adds ``.npz`` otherwise). ``root``: see ``output_target``."""
    path = output_target(path, root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file where a folder must go: say which ("File exists" did not)
        blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
        if blocker is None:
            raise
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is a file, not a folder") from None
    if tidy:
        remove_stale_temps(path.parent)
    fd, tmp = make_temp(path.parent, suffix)
    try:  # (from here: a Ctrl-C at any point removes the temporary file)
        os.close(fd)
        write(tmp)
        publish(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # (a writer's own, e.g. a zip's on a full disk: the file is named, not "standard output")
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_whole(stream, text: str) -> None:
    """``text`` written and flushed, every byte of it. Python's buffered writer (3.11) drops the
    rest of a write that a signal interrupted part-way when the handler returns (a 144 KB line
    into a full pipe, one Ctrl-C that is to wait for the line's end: 64 KB came out), so a plain
    text stream over a file descriptor (stdout, a pipe) is written with ``os.write`` until done.
    Any other stream (compressed, in memory, a notebook's, one that adds a byte-order mark or
    turns line ends) goes through its own ``write``."""
    fd = _plain_fd(stream)
    if fd is None:
        stream.write(text)
        stream.flush()
        return
    stream.flush()  # (whatever the stream holds goes first)
    view = memoryview(text.encode(stream.encoding, stream.errors or "strict"))
    while view:
        view = view[os.write(fd, view):]


def _plain_fd(stream) -> int | None:
    """The descriptor of a text stream whose bytes are its text encoded as is, or None."""
    import codecs
    import io

    buffer = getattr(stream, "buffer", None)
    raw = buffer if type(buffer) is io.FileIO else getattr(buffer, "raw", None) if type(buffer) is io.BufferedWriter \
        else None  # (python -u: the text layer writes to the file directly)
    if type(stream) is not io.TextIOWrapper or type(raw) is not io.FileIO or os.linesep != "\n":
        return None
    try:
        codec = codecs.lookup(stream.encoding).name
    except LookupError:
        return None
    if codec.startswith(("utf-16", "utf-32")) or codec == "utf-8-sig":  # (a byte-order mark per write)
        return None
    try:
        return raw.fileno()
    except (OSError, ValueError):
        return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes, root: str | os.PathLike | None = None) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), root=root)


def encode_image(ext: str, image: np.ndarray) -> bytes:
    """``image`` encoded as ``ext`` (``.jpg``, ``.png``...); ``ImageError`` if the format cannot hold it
    (e.g. a side over 65,500 px in JPEG or WebP)."""
    ext = ext.lower() or ".png"
    try:
        with quiet_stderr():
            ok, buf = cv2.imencode(ext, image)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError(f"{ext} cannot hold a {image.shape[1]}x{image.shape[0]} image (or no encoder)")
    return buf.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    atomic_write_bytes(path, encode_image(Path(path).suffix, image))

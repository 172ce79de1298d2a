"""Colour profiles carried from a photo to its annotated copy, and facemark's mark on that copy.

OpenCV reads pixels as stored and writes no ICC profile, so the drawing of a Display P3 or Adobe
RGB photo (a phone's, a Mac's screenshot) showed its colours shifted. ``profile_of`` takes the
profile out of a JPEG, PNG, WebP or TIFF; ``embedded`` puts it into a JPEG, PNG or WebP that
OpenCV encoded. Only RGB profiles travel: the drawing is always RGB, and a CMYK or grey profile
would tell viewers to read its pixels as something they are not.

A drawing's name (``photo.jpg.annotated.jpg``) can hold a file of someone else's; ``with_mark``
tags a JPEG or PNG drawing as facemark's (a JPEG comment, a PNG ``Software`` text chunk), so a
later run replaces its own drawings and refuses the others (``has_mark``).
"""
from __future__ import annotations

import os
import struct
import zlib

from .imageio import JPEG_SCAN

MAX_PROFILE = 8 << 20  # bytes; real profiles are 0.5-600 KB
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ICC_MARK = b"ICC_PROFILE\x00"


def _usable(profile: bytes | None) -> bytes | None:
    """An RGB profile whose header agrees with its length (a part lost on the way would give
    viewers a broken one), else None."""
    if profile is None or not 132 <= len(profile) <= MAX_PROFILE or profile[36:40] != b"acsp":
        return None
    if int.from_bytes(profile[:4], "big") != len(profile):
        return None
    return profile if profile[16:20] == b"RGB " else None


def profile_of(path: str | os.PathLike) -> bytes | None:
    """The RGB ICC profile embedded in the image at ``path``, or None (none, another kind, unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(0)
            if head[:2] == b"\xff\xd8":
                return _usable(_from_jpeg(f.read(JPEG_SCAN)))
            if head[:8] == PNG_SIGNATURE:
                return _usable(_from_png(f))
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return _usable(_from_webp(f))
            if head[:4] in (b"II*\x00", b"MM\x00*"):
                return _usable(_from_tiff(f, "<" if head[:2] == b"II" else ">"))
    except (OSError, ValueError, IndexError, struct.error, zlib.error):
        pass
    return None


def _jpeg_segments(data: bytes):
    """(marker, body) of a JPEG's header segments, up to its scan, in the ``data`` read of it."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] not in (0xDA, 0xD9):
        n = int.from_bytes(data[at + 2:at + 4], "big")
        yield data[at + 1], data[at + 4:at + 2 + n]
        at += 2 + n


def _from_jpeg(data: bytes) -> bytes | None:
    """APP2 ``ICC_PROFILE`` segments, joined in their sequence order (a profile over 64 KB is
    split); None unless parts 1 to their count are all there."""
    parts, count = {}, 0
    for marker, body in _jpeg_segments(data):
        if marker == 0xE2 and body[:12] == _ICC_MARK and len(body) >= 14:
            parts[body[12]], count = body[14:], body[13]
    if not parts or sorted(parts) != list(range(1, count + 1)):
        return None
    return b"".join(parts[k] for k in sorted(parts))


def _from_png(f) -> bytes | None:
    """The ``iCCP`` chunk (it must come before the image data)."""
    f.seek(8)
    for _ in range(1000):
        head = f.read(8)
        if len(head) < 8:
            return None
        n, kind = int.from_bytes(head[:4], "big"), head[4:]
        if kind in (b"IDAT", b"IEND") or n > MAX_PROFILE:
            return None
        if kind == b"iCCP":
            body = f.read(n)
            name_end = body.index(b"\x00")  # (a name, then the compression method's byte)
            return zlib.decompressobj().decompress(body[name_end + 2:], MAX_PROFILE + 1)  # (no zip bomb)
        f.seek(n + 4, os.SEEK_CUR)
    return None


def _riff_chunks(f):
    """(fourcc, offset of data, size) of a WebP's chunks."""
    f.seek(12)
    for _ in range(1000):
        head = f.read(8)
        if len(head) < 8:
            return
        kind, n = head[:4], int.from_bytes(head[4:], "little")
        at = f.tell()
        yield kind, at, n
        f.seek(at + n + (n & 1))


def _from_webp(f) -> bytes | None:
    """The ``ICCP`` chunk, which comes right after ``VP8X`` (the extended layout), before any image."""
    for kind, at, n in _riff_chunks(f):
        if kind == b"ICCP" and n <= MAX_PROFILE:
            f.seek(at)
            return f.read(n)
        if kind not in (b"VP8X", b"ICCP"):  # ICCP comes right after VP8X, before any image data
            return None
    return None


def _from_tiff(f, e: str) -> bytes | None:
    """Tag 34675 (InterColorProfile) of the first image; its bytes may sit anywhere in the file."""
    f.seek(4)
    (ifd,) = struct.unpack(e + "I", f.read(4))
    f.seek(ifd)
    (count,) = struct.unpack(e + "H", f.read(2))
    entries = f.read(12 * min(count, 4096))
    for k in range(len(entries) // 12):
        tag, _typ, n, where = struct.unpack_from(e + "HHII", entries, 12 * k)
        if tag == 34675 and 132 <= n <= MAX_PROFILE:
            f.seek(where)
            return f.read(n)
    return None


def embedded(encoded: bytes, profile: bytes | None) -> bytes:
    """``encoded`` (JPEG, PNG or WebP from OpenCV) carrying ``profile``; anything else unchanged."""
    if _usable(profile) is None:
        return encoded
    if encoded[:2] == b"\xff\xd8":
        return _into_jpeg(encoded, profile)
    if encoded[:8] == PNG_SIGNATURE:
        return _into_png(encoded, profile)
    if encoded[:4] == b"RIFF" and encoded[8:12] == b"WEBP":
        return _into_webp(encoded, profile)
    return encoded


def _into_jpeg(encoded: bytes, profile: bytes) -> bytes:
    """APP2 segments of at most 65,519 profile bytes each, after SOI and the JFIF APP0 that must lead."""
    step = 65519
    pieces = [profile[i:i + step] for i in range(0, len(profile), step)]
    if len(pieces) > 255:
        return encoded
    segments = b"".join(b"\xff\xe2" + (len(p) + 16).to_bytes(2, "big") + _ICC_MARK + bytes([k + 1, len(pieces)]) + p
                        for k, p in enumerate(pieces))
    at = 2
    if encoded[2:4] == b"\xff\xe0":
        at += 2 + int.from_bytes(encoded[4:6], "big")
    return encoded[:at] + segments + encoded[at:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def _into_png(encoded: bytes, profile: bytes) -> bytes:
    """An ``iCCP`` chunk right after IHDR (before any palette or image data, as PNG requires)."""
    if encoded[12:16] != b"IHDR":
        return encoded
    at = 8 + 12 + int.from_bytes(encoded[8:12], "big")
    return encoded[:at] + _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(profile)) + encoded[at:]


def _into_webp(encoded: bytes, profile: bytes) -> bytes:
    """The extended layout: a VP8X chunk saying an ICC profile follows, then ICCP, then the image."""
    kind, n = encoded[12:16], int.from_bytes(encoded[16:20], "little")
    body = encoded[20:20 + n]
    if kind == b"VP8X":
        vp8x = encoded[12:20] + bytes([body[0] | 0x20]) + body[1:]
        rest = encoded[20 + n + (n & 1):]
    else:
        if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            w, h, alpha = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, (bits >> 28) & 1
        elif kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
            w, h = int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(body[8:10], "little") & 0x3FFF
            alpha = 0
        else:
            return encoded
        flags = 0x20 | (0x10 if alpha else 0)
        vp8x = b"VP8X" + (10).to_bytes(4, "little") + bytes([flags, 0, 0, 0]) + (w - 1).to_bytes(3, "little") \
            + (h - 1).to_bytes(3, "little")
        rest = encoded[12:]
    iccp = b"ICCP" + len(profile).to_bytes(4, "little") + profile + (b"\x00" if len(profile) & 1 else b"")
    chunks = vp8x + iccp + rest
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WEBP" + chunks


_JPEG_MARK = b"facemark drawing"
_PNG_MARK = b"Software\x00facemark"
_PNG_WHAT = b"Comment\x00facemark drawing: "


def with_mark(encoded: bytes, what: str = "") -> bytes:
    """``encoded`` (a JPEG or PNG) tagged as facemark's drawing, ``what`` saying how it was drawn,
    right after its first header; anything else unchanged. Put in last (after ``embedded``): a
    profile put in after it would go before it, and one of over 64 KB would push it past what
    ``has_mark`` reads."""
    said = what.encode("utf-8", "replace")
    if encoded[:2] == b"\xff\xd8":
        at = 2
        if encoded[2:4] == b"\xff\xe0":  # (JFIF's APP0 must lead)
            at += 2 + int.from_bytes(encoded[4:6], "big")
        body = _JPEG_MARK + (b": " + said if said else b"")
        return encoded[:at] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + encoded[at:]
    if encoded[:8] == PNG_SIGNATURE and encoded[12:16] == b"IHDR":
        at = 8 + 12 + int.from_bytes(encoded[8:12], "big")
        chunks = _png_chunk(b"tEXt", _PNG_MARK) + (_png_chunk(b"tEXt", _PNG_WHAT + said) if said else b"")
        return encoded[:at] + chunks + encoded[at:]
    return encoded


def _tags(path: str | os.PathLike, size: int) -> list[bytes]:
    """The JPEG comments or PNG text chunks in the first ``size`` bytes of a file, before its image data."""
    try:
        with open(path, "rb") as f:
            head = f.read(size)
    except OSError:
        return []
    if head[:2] == b"\xff\xd8":
        return [body for marker, body in _jpeg_segments(head) if marker == 0xFE]
    found = []
    if head[:8] == PNG_SIGNATURE:
        at = 8
        while at + 8 <= len(head) and head[at + 4:at + 8] not in (b"IDAT", b"IEND"):
            n = int.from_bytes(head[at:at + 4], "big")
            if head[at + 4:at + 8] == b"tEXt":
                found.append(head[at + 8:at + 8 + n])
            at += 12 + n
    return found


def has_mark(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is a JPEG or PNG that ``with_mark`` tagged (read: its first
    64 KB of headers, where ``with_mark`` puts the tag)."""
    return any(t == _PNG_MARK or t == _JPEG_MARK or t.startswith(_JPEG_MARK + b": ") for t in _tags(path, 1 << 16))


def drawn_as(path: str | os.PathLike) -> str | None:
    """How ``with_mark`` says the drawing at ``path`` was drawn, or None (not said, or no drawing
    of facemark's). Reads its first 4 KB: called for every image a resumed run looks at."""
    for t in _tags(path, 4096):
        for prefix in (_JPEG_MARK + b": ", _PNG_WHAT):
            if t.startswith(prefix):
                return t[len(prefix):].decode("utf-8", "replace")
    return None

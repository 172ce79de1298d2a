"""Turning command-line inputs (files, directories, globs) into images and their output names.

Outputs mirror the inputs' layout below their deepest common folder: one file -> its name; one
directory -> the layout inside it; ``left/`` and ``right/`` -> ``left/...`` and ``right/...``;
absolute and ``../`` paths alike. Distinct inputs therefore never share an output name, and the
full file name is kept (``a.jpg`` -> ``a.jpg.json``), so ``a.jpg``, ``a.png`` and ``a.png.jpg``
never collide either. The same command always gives the same names (a resumed run finds them).
"""
from __future__ import annotations

import errno
import glob
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from .imageio import IMAGE_EXTS, UNREAD_PHOTO_EXTS, within


def utf8_name(path: str) -> str | None:
    """``path`` where it is valid UTF-8 (what Parquet's strings must be, and what OpenCV's video
    reader needs); None for a name with bytes that are not (Python keeps them as lone surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return path


def shown_name(path: str) -> str:
    """A name Parquet and a message can hold: bytes that are not UTF-8 written as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def recorded_path(path: str | os.PathLike) -> str:
    """The image path an output file records: absolute, so it names the image from any folder.
    A '..' is resolved through the file system (after a link it leads elsewhere than the text
    says); where a folder above has a name that is not UTF-8 (which Parquet cannot hold), the
    path as typed."""
    typed = os.fspath(path)
    full = typed if os.path.isabs(typed) else os.path.join(os.getcwd(), typed)  # (absolute: no need of a cwd, which may be gone)
    if ".." in full.split(os.sep):  # (the folder's real path; the file's own name kept, a link or not)
        head, name = os.path.split(full)
        full = os.path.join(os.path.realpath(head), name) if name not in ("", "..") else os.path.realpath(full)
    else:
        full = os.path.normpath(full)
    return full if utf8_name(full) is not None or utf8_name(typed) is None else typed


@dataclass(frozen=True)
class InputImage:
    path: Path  # where to read it
    root: Path  # the folder it was found under (a directory argument, or a file's own folder)


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def is_image_name(name: str) -> bool:
    # facemark's own annotated outputs are not inputs (a second run over the same folder), nor
    # macOS's ``._IMG.JPG`` files (AppleDouble: the metadata of IMG.JPG, left on every copy to
    # another file system).
    return Path(name).suffix.lower() in IMAGE_EXTS and ".annotated." not in name and not name.startswith("._")


def in_hidden_folder(relative: str) -> bool:
    """Whether a file's path below the searched folder passes through a hidden folder, which
    searches leave out as ``walk_images`` does."""
    return any(part.startswith(".") and part not in (".", "..") for part in relative.split("/")[:-1])


def is_drawing_name(name: str) -> bool:
    """An image named like facemark's annotated outputs (``x.jpg.annotated.jpg``)."""
    return ".annotated." in name and Path(name).suffix.lower() in IMAGE_EXTS


def _holds_images(folder: Path, look_at: int = 500) -> bool:
    """Whether a folder left out (hidden, or linked) holds image files in its first ``look_at``
    entries, two levels deep (thumbnails: ``.thumbnails/normal/x.png``): only such folders are
    worth a note, not every ``.git`` or ``.venv`` of a project tree, which is not walked through."""
    seen = 0
    level = [folder]
    for _ in range(2):
        below = []
        for f in level:
            try:
                with os.scandir(f) as entries:
                    for e in entries:
                        seen += 1
                        if seen > look_at:
                            return False
                        if is_image_name(e.name) and e.is_file():
                            return True
                        if e.is_dir(follow_symlinks=False):
                            below.append(Path(e.path))
            except OSError:
                continue
        level = below
    return False


@dataclass
class LeftOut:
    """What a search of the inputs passed over on purpose; each kind is said in one note, so a
    user who expected those files knows where they went and how to include them."""
    drawings: list[Path] = field(default_factory=list)  # named like facemark's annotated outputs
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (left out, kept): another name of a file
    hidden: list[Path] = field(default_factory=list)  # hidden folders holding images, not searched
    linked: list[Path] = field(default_factory=list)  # symbolic links to folders holding images, not followed
    unread: list[Path] = field(default_factory=list)  # photos in formats OpenCV does not read (HEIC, raw)

    def notes(self) -> list[str]:
        def some(paths: list[Path]) -> str:
            return ", ".join(shown_name(str(p)) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")

        said = []
        if self.unread:
            kinds = sorted({p.suffix.lower() for p in self.unread})
            said.append(f"note: left out {len(self.unread)} photo(s) in formats OpenCV does not read ({', '.join(kinds)}; "
                        f"e.g. {shown_name(str(self.unread[0]))}): convert them to JPEG or PNG")
        if self.hidden:
            said.append(f"note: {len(self.hidden)} hidden folder(s) not searched ({some(self.hidden)}); name one to search it")
        if self.linked:
            said.append(f"note: {len(self.linked)} linked folder(s) not followed (symbolic links: {some(self.linked)}); "
                        f"name one to search it")
        if self.drawings:
            said.append(f"note: left out {len(self.drawings)} file(s) named *.annotated.* (facemark's drawings, e.g. "
                        f"{shown_name(str(self.drawings[0]))}); name such a file to process it")
        repeats = [left for left, kept in self.duplicates if os.path.normpath(left) == os.path.normpath(kept)]
        others = [(left, kept) for left, kept in self.duplicates if os.path.normpath(left) != os.path.normpath(kept)]
        if repeats:
            said.append(f"note: left out {len(repeats)} repeat(s) of names already listed (e.g. "
                        f"{shown_name(str(repeats[0]))}); each file is done once")
        if others:
            left, kept = others[0]
            said.append(f"note: left out {len(others)} name(s) of files already listed under another name "
                        f"(e.g. {shown_name(str(left))}, the same file as {shown_name(str(kept))}); each file is done once")
        return said


def walk_images(root: Path, problems: list[str], left_out: LeftOut | None = None) -> list[Path]:
    """Image files below ``root``, sorted; symlinked folders are not followed (no loops), hidden
    folders below it (``.thumbnails``, ``.Trash``, ``.git``) are not searched, and a folder that
    cannot be listed is one problem line, not the end of the run. Files named like facemark's
    annotated outputs, such folders where they hold images, and photos in formats OpenCV does
    not read (HEIC, camera raw) go to ``left_out``."""
    found = []
    left_out = left_out if left_out is not None else LeftOut()

    def onerror(e: OSError) -> None:
        problems.append(f"{e.filename}: cannot list this folder ({e.strerror}); skipped")

    for folder, dirs, files in os.walk(root, onerror=onerror, followlinks=False):
        for d in sorted(dirs):
            below = Path(folder) / d
            if d.startswith(".") and _holds_images(below):
                left_out.hidden.append(below)
            elif not d.startswith(".") and os.path.islink(below):  # (looked into by expand, if not searched)
                left_out.linked.append(below)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):  # (one pass, each name's extension read once: folders of millions)
            ext = os.path.splitext(f)[1].lower()
            if f.startswith("._"):  # (AppleDouble metadata, whatever its extension)
                continue
            if ext in IMAGE_EXTS:
                if ".annotated." not in f:
                    found.append(Path(folder) / f)
                else:
                    left_out.drawings.append(Path(folder) / f)
            elif ext in UNREAD_PHOTO_EXTS:
                left_out.unread.append(Path(folder) / f)
    return found


def expand(args: list[str], left_out: LeftOut | None = None) -> tuple[list[InputImage], list[str]]:
    """Files as given; directories recursively (image extensions only); globs to the image files
    they match (a folder a glob matches is not searched). Returns the images (first occurrence wins) and one message per argument or
    folder that gave nothing usable; what the search passed over on purpose (facemark's own
    drawings ``*.annotated.*`` in a folder or glob, another name of a file already listed, hidden
    and linked folders, photos OpenCV does not read) goes to ``left_out``."""
    found: list[InputImage] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    left_out = left_out if left_out is not None else LeftOut()

    named: set[str] = set()  # files named as such (not found in a folder or by a quoted pattern)

    def add(path: Path, root: Path, given: bool = False) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen[key] = path
            found.append(InputImage(path, root))
        elif os.path.normpath(path) != os.path.normpath(seen[key]) or (given and key in named):
            left_out.duplicates.append((path, seen[key]))  # (a name typed twice, or another name of a file: said,
        if given:  # so a script mapping inputs to output lines knows; a folder's file named too is no news)
            named.add(key)

    for arg in args:
        try:
            _expand_one(arg, add, problems, left_out)
        except OSError as e:  # (a folder on the way that cannot be searched, a name too long: that input's failure)
            problems.append(f"{arg}: {e.strerror or e}")
    if left_out.linked:  # worth a note: links out of every folder searched (not a tree's own "latest"), to images
        searched = [os.path.realpath(a) for a in args if os.path.isdir(a)]
        left_out.linked = [p for p in left_out.linked
                           if not any(within(os.path.realpath(p), r) for r in searched) and _holds_images(p)]
    return found, problems


def _expand_one(arg: str, add, problems: list[str], left_out: LeftOut) -> None:
    """One command-line input into ``add`` (image, root) calls or a line in ``problems``."""
    p = Path(arg)
    if p.is_dir():
        for f in walk_images(p, problems, left_out):
            add(f, p)
    elif os.path.lexists(p):
        if p.is_symlink() and not p.exists():
            try:
                os.stat(p)
                looped = False
            except OSError as e:  # (a loop is not a missing target: say which)
                looped = e.errno == errno.ELOOP
            problems.append(f"{arg}: {'a loop of symbolic links' if looped else 'a broken symbolic link (its target is missing)'}")
        else:
            add(p, p.parent, True)  # read_image says what is wrong if it is no regular image file
    elif arg.startswith("file://"):
        problems.append(f"{arg}: a file URI; give its local path ({arg[len('file://'):] or '/'})")
    elif "://" in arg:  # (not a folder or file here)
        problems.append(f"{arg}: a URI; facemark reads those only with --ray (local paths otherwise)")
    elif _has_magic(arg):  # a quoted glob: the same as if the shell had expanded it
        hits = sorted(Path(x) for x in glob.glob(arg, recursive=True))
        drawn = [h for h in hits if is_drawing_name(h.name) and not h.is_dir()]
        left_out.drawings += drawn
        matched = hits
        hits = [h for h in hits if is_image_name(h.name) and not h.is_dir()]  # (the name first: no stat of other files)
        if not hits:
            folders = sum(h.is_dir() for h in matched)  # (counted only here: a big pattern's hits are not statted twice)
            others = len(matched) - folders - len(drawn)
            problems.append(f"{arg}: matches only facemark's drawings (*.annotated.*); name one to process it"
                            if drawn else
                            f"{arg}: matches {folders} folder(s) and no image file (a pattern's folders are not "
                            f"searched: give the folders themselves, or a pattern such as {arg.rstrip('/')}/*.jpg)"
                            if folders and not others else
                            f"{arg}: matches no image file ({others} other file(s))" if others else
                            f"{arg}: no file matches this pattern")
        for h in hits:
            add(h, h.parent)
    elif arg == "-":
        problems.append("-: images are read from files, not from standard input; save it to a file and name that")
    else:
        shown = repr(arg) if arg != arg.strip() else arg  # (a space at an end, from a list: seen, not guessed)
        problems.append(f"{shown}: no such file or directory")


LONGEST_PATH = 4096  # bytes (Linux's PATH_MAX): a longer entry means the file is no list of paths
SNIFFED = 1 << 16  # bytes of a list looked at before the rest is read (/dev/zero, a video given by mistake)


def listed_inputs(source: str, stdin=None) -> list[str]:
    """``--files-from``: the inputs a file lists (``-``: standard input), one per line as written
    but for the line end (CRLF too), or one per NUL where it holds any (``find -print0``: names
    with line breaks; several NULs that only end the file, a zero-filled end, are no separators).
    Blank entries are skipped; bytes that are not UTF-8 keep the file's own name; a UTF-8
    byte-order mark is dropped.
    Raises ``UsageError`` for a list that cannot be read, or is no text list of paths (UTF-16,
    whose NULs would split it into one-letter entries such as ``/``, or a binary file)."""
    from .errors import UsageError

    where = "standard input" if source == "-" else source
    try:
        if source != "-" and Path(source).suffix.lower() in IMAGE_EXTS and Path(source).is_file():
            raise UsageError(f"--files-from {source} is an image: give a text file listing the inputs, one per line")
        f = (stdin if stdin is not None else sys.stdin.buffer) if source == "-" else open(source, "rb")
        try:
            head = f.read(SNIFFED)
            body = head.rstrip(b"\0")  # (NULs that end a list cut short are no separators)
            if head and not body:
                raise UsageError(f"--files-from {where} is not a text list of paths (it holds only NUL bytes)")
            if body.startswith((b"\xff\xfe", b"\xfe\xff")) or body.count(b"\0") > len(body) / 4:
                raise UsageError(f"--files-from {where} is UTF-16 or UTF-32 text (one NUL every few bytes): save "
                                 f"it as UTF-8, one path per line")
            if re.search(rb"[\x01-\x08\x0e-\x1f]", head):
                raise UsageError(f"--files-from {where} is not a text list of paths (it holds binary bytes)")
            data = head + f.read()
        finally:
            if f is not stdin and source != "-":
                f.close()
    except UsageError:
        raise
    except (OSError, AttributeError, ValueError) as e:  # (no such file, a folder; stdin closed)
        raise UsageError(f"--files-from {where}: {getattr(e, 'strerror', None) or e}") from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    # One NUL ending it is find -print0's end of its last entry (with a single entry, its only
    # NUL: a name with line breaks was split at them); more are a file's zero-filled end.
    ended = data.endswith(b"\0") and not data.endswith((b"\0\0", b"\n\0"))  # (a line list's stray NUL: by lines)
    data = data.rstrip(b"\0")
    sep = b"\0" if b"\0" in data or ended else b"\n"
    entries = [e[:-1] if sep == b"\n" and e.endswith(b"\r") else e for e in data.split(sep)]
    if any(len(e) > LONGEST_PATH for e in entries):
        raise UsageError(f"--files-from {where} is not a list of paths (an entry of over {LONGEST_PATH} bytes)")
    return [name for name in map(os.fsdecode, entries) if name.strip()]


def our_drawings(entries: list[str]) -> list[str]:
    """The entries that are facemark's own drawings: named ``*.annotated.*`` and tagged as
    facemark's (``icc.has_mark``; a user's file of such a name is processed), in the list's order.
    A list is often a ``find`` over a folder that is also the output folder: its drawings were
    processed as photos, and drawn again, each run. (A FIFO's open would wait for a writer: files
    only; one that cannot be read is said later, as an input.)"""
    from .icc import has_mark

    return [e for e in entries if is_drawing_name(Path(e).name) and os.path.isfile(e) and has_mark(e)]


def beside_the_list(listing: str, entries: list[str], sample: int = 100) -> str | None:
    """A note for a list whose relative entries name files beside it, not in the current folder
    (where they are read from, as arguments are): each would only be "no such file". The first
    ``sample`` entries are looked at (a million-line list: no million extra lookups)."""
    if listing == "-":
        return None
    base = Path(listing).parent
    for e in entries[:sample]:
        if not os.path.isabs(e) and not os.path.lexists(e) and os.path.lexists(base / e):
            return (f"note: --files-from {listing}: its entries are read from the current folder, as arguments are, "
                    f"and {e} is not here but beside the list: run from {base}, or list absolute paths")
    return None


def refuse_when_each_failed(problems: list[str], inputs: list, log: Callable[[str], None]) -> None:
    """Where no input gave an image and each has its own reason (``problems``, one per input):
    every reason but the last through ``log``, the last raised, and no summary guessing at
    another (extensions, for files that are missing). ``MissingInput`` (a ``FileNotFoundError``
    to the API) when every input is a missing file. Otherwise returns (the caller goes on)."""
    from .errors import MissingInput, UsageError

    problems = list(dict.fromkeys(problems))  # (an input given twice is one problem: ``- -``)
    if not problems or len(problems) < len(set(map(str, inputs))):
        return
    for m in problems[:-1]:
        log(f"error: {m}")
    missing = all(p.endswith(": no such file or directory") for p in problems)
    raise (MissingInput if missing else UsageError)(problems[-1])


def missing_roots(args: list[str]) -> list[str]:
    """The folders that arguments naming nothing (yet) would have given their images: a missing
    file's folder, a missing folder itself, a glob's folder before its first wildcard. Counted
    in the common folder, so the outputs' names do not change once they appear."""
    out = []
    for arg in args:
        if os.path.lexists(arg) or arg == "-" or _has_magic(arg) and glob.glob(arg, recursive=True):
            continue  # (a glob that matches has its matches' folders, as before)
        if _has_magic(arg):
            fixed = Path(re.split(r"[*?\[]", arg, maxsplit=1)[0] + "x").parent  # (the text before the wildcard)
        else:
            fixed = Path(arg).parent if is_image_name(Path(arg).name) else Path(arg)
        out.append(str(fixed))
    return out


def output_names(images: list[InputImage], extra_roots: list[str] = ()) -> list[PurePosixPath]:
    """Each image's path below the deepest folder common to all the inputs (``extra_roots``: the
    folders of inputs that are missing now); ``.json`` or ``.annotated.<ext>`` is appended to it."""
    if not images:
        return []
    roots = sorted({os.path.abspath(im.root) for im in images} | {os.path.abspath(r) for r in extra_roots})
    try:
        base = os.path.commonpath(roots)
    except ValueError:  # different drives (Windows): keep each full path
        base = ""
    out = []
    for im in images:
        full = os.path.abspath(im.path)
        rel = os.path.relpath(full, base) if base else full.replace(":", "").lstrip("\\/")
        out.append(PurePosixPath(Path(rel).as_posix()))
    return out


def collisions(names: list[PurePosixPath]) -> list[tuple[int, int]]:
    """Pairs of images whose outputs would be the same file (a safety net: output_names gives
    distinct inputs distinct names)."""
    first: dict[str, int] = {}
    out = []
    for i, n in enumerate(names):
        key = n.as_posix()
        if key in first:
            out.append((first[key], i))
        else:
            first[key] = i
    return out

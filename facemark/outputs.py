"""Where a command may write a file, checked before any work: an hour of measuring is never lost
at the last step, and no input (a photo, a label file, a dataset's folder) is ever replaced by a
result. Used by the command line and by the Python functions it calls (``run_eval``), so both
refuse the same things; each refusal is a ``UsageError`` naming the option (or argument)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from .errors import UsageError

DATA_KINDS = ("300w", "pts", "wflw", "csv68")
DATA_FILE_EXTS = (".pts", ".txt", ".csv", ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # what --data reads


def eval_report(doc) -> bool:
    """Whether a JSON value is a ``facemark eval`` report (what ``--json`` may replace)."""
    return isinstance(doc, dict) and bool(doc) and all(isinstance(v, dict) and {"mode", "subsets"} <= v.keys()
                                                        for v in doc.values())


def check_output_file(path: Path | None, option: str, exts: tuple[str, ...] = (), inputs: Sequence[str] = (),
                      own: "tuple[str, object] | None" = None) -> None:
    """Before any work: an output file can be written where it is asked for, it is no folder,
    its extension is one facemark can write, and it is none of the inputs (``inputs``: paths,
    or ``KIND=PATH`` data whose folder is not written into). So an hour of measuring is never
    lost at the last step, and no photo or label file is ever replaced by a result. ``own``:
    (what, test) of the output: an existing file the test refuses (a JSON file of another kind,
    facemark's own calibration under an eval report) is not replaced. Nothing is created here: a
    later usage error leaves no folder behind."""
    if path is None:
        return
    path = Path(path)
    if str(path) == "-":
        raise UsageError(f"{option} -: give a file name (this option writes a file, not standard output)")
    from .imageio import broken_link, too_long_name

    try:
        if clash := _streams_file(path):  # (renamed over, a redirected stdout's file loses what was printed into it)
            raise UsageError(f"{option} {path} {clash}")
        if long := too_long_name(path):
            raise UsageError(f"{option} {long}")
        if nowhere := broken_link(path):  # (found now, not after the measuring)
            raise UsageError(f"{option} {path} {nowhere}")
        if path.is_dir():
            raise UsageError(f"{option} {path} is a directory: give a file name")
        if exts and path.suffix.lower() not in exts:
            raise UsageError(f"{option} {path}: use one of {', '.join(exts)}")
        if path.exists() and not Path(os.path.realpath(path)).is_file():
            raise UsageError(f"{option} {path} exists and is not a regular file (a device or a pipe); give a "
                             f"file name")
        if path.exists():
            target = Path(os.path.realpath(path))
            for given in inputs:
                kind, _, rest = given.partition("=")
                src = Path(os.path.realpath(rest if rest and kind.lower() in DATA_KINDS else given))
                inside = src.is_dir() and src in target.parents and target.suffix.lower() in DATA_FILE_EXTS
                if target == src or inside:  # (a data folder's other files: refuse_inside_data below)
                    raise UsageError(f"{option} {path} is one of the inputs ({given}); not overwritten: write it "
                                     f"elsewhere")
            as_json = path.suffix.lower() == ".json" or "json" in option  # (a report named r.txt is still JSON)
            if as_json:
                with open(path, "rb") as f:
                    head = f.read(4096).lstrip()
                if head and head[:1] not in (b"{", b"["):
                    raise UsageError(f"{option} {path} exists and is not JSON; not overwritten: write it elsewhere")
            if own is not None and path.stat().st_size:
                what, test = own
                if as_json:
                    try:
                        ours = test(json.loads(path.read_bytes()))
                    except ValueError:
                        ours = False
                else:
                    ours = test(path)
                if not ours:
                    raise UsageError(f"{option} {path} exists and is not {what}; not overwritten: write it elsewhere")
        refuse_inside_data(path, option, inputs)
        check_can_create(path.absolute().parent, option, path)
    except OSError as e:  # (paths go through os.path.realpath: a link loop is no RuntimeError here)
        raise UsageError(f"{option} {path} cannot be written: {e.strerror or e}") from None


def refuse_inside_data(path: Path | None, option: str, data: Sequence[str]) -> None:
    """Nothing facemark writes goes into a ``--data`` folder: a report, pack, cache or run there
    would sit among the labels, in every copy and listing of the dataset (and a shared dataset's
    folder is often read-only to all but its owner)."""
    if path is None:
        return
    target = Path(os.path.realpath(path))
    for given in data:
        kind, _, rest = given.partition("=")
        if rest and kind.strip().lower() in DATA_KINDS:  # (as the loader reads it; a csv68 FILE's folder is not guarded)
            folder = Path(os.path.realpath(rest))
            if folder.is_dir() and (folder == target or folder in target.parents):
                raise UsageError(f"{option} {path} is inside the data folder of --data {given}: facemark writes "
                                 f"nothing into its data; write it elsewhere")


def _streams_file(path: Path) -> str | None:
    """Why ``path`` cannot take a file written whole and renamed: it names an open descriptor, or
    it is the file standard output or error goes to (what was printed there would be lost)."""
    from .imageio import descriptor_named, standard_stream_file

    if descriptor_named(path) is not None:
        return "is an open descriptor (standard output, say), not a file name: give a file name"
    if standard_stream_file(path) is not None:
        return "is the file standard output or error goes to: give another file name"
    return None


def check_can_create(folder: Path, option: str, given: Path) -> None:
    """A file can be created in ``folder``, or, where it does not exist yet, in the nearest folder
    above it (which facemark would make it in): proved with a temporary file, nothing left."""
    import tempfile

    where = folder
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise UsageError(f"{option} {given}: {where} is not a folder")
    with tempfile.NamedTemporaryFile(dir=where, prefix=".fm-", suffix=".tmp"):
        pass


def check_cache_folder(cache: Path, option: str = "--cache") -> None:
    """Before any work: the cache is a folder (or can be made one) that facemark may write into."""
    try:
        if cache.exists() and not cache.is_dir():
            raise UsageError(f"{option} {cache} is not a folder")
        check_can_create(cache.absolute(), option, cache)
    except OSError as e:
        raise UsageError(f"{option} {cache} cannot be written: {e.strerror or e}") from None

"""Results for big runs: one row per image, written in shards (JSON lines or Parquet), each shard
renamed into place when complete, and one reader for every output format facemark writes.

A row: ``{"path", "width", "height", "model", "error", "faces": [{"box", "score", "landmarks",
"landmarks68"}]}``: the ``facemark/v1`` document's fields under the image's path, plus ``error``
(null, or why the image failed), so a failed image is a row, never a lost one.
"""
from __future__ import annotations

import calendar
import functools
import json
import math
import os
import re
import stat
import time
import uuid
from pathlib import Path
from typing import Iterator

from .errors import FacemarkError, UsageError

DEFAULT_SHARD_SIZE = 10_000  # rows per shard file
CLOCK_SLACK = 0.02  # s: the kernel stamps files from a coarse clock, which lags time.time() by up to a tick (1-10 ms)
SHARD_SECONDS = 300.0  # a shard is also closed once its first row is this old: a crash loses minutes, not hours


def row(path: str, width: int | None, height: int | None, model: str, faces=None, error: str | None = None) -> dict:
    """One image's result (``faces`` as ``Face`` objects or their dicts)."""
    fs = [f if isinstance(f, dict) else f.to_dict() for f in (faces or [])]
    return {"path": str(path), "width": None if width is None else int(width),
            "height": None if height is None else int(height), "model": model, "error": error, "faces": fs}


ROW_KEYS = frozenset({"path", "width", "height", "model", "error", "faces"})
DOC_KEYS = frozenset({"image", "width", "height", "model", "faces"})  # a facemark/v1 document's, besides schema


def arrow_schema():
    import pyarrow as pa

    point = pa.list_(pa.float64(), 2)
    face = pa.struct([("box", pa.list_(pa.float64(), 4)), ("score", pa.float64()),
                      ("landmarks", pa.list_(point, 98)), ("landmarks68", pa.list_(point, 68))])
    return pa.schema([("path", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("model", pa.string()),
                      ("error", pa.string()), ("faces", pa.list_(face))])


def require_pyarrow(what: str = "--format parquet"):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError(f'{what} needs pyarrow: pip install pyarrow (facemark\'s [parquet] extra)') from None


def json_or_lines(data: bytes):
    """One JSON value, or one per line (facemark's stdout or a --format jsonl shard) as a list."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        if not e.msg.startswith("Extra data"):
            raise
        try:
            return [json.loads(line) for line in data.splitlines() if line.strip()]
        except json.JSONDecodeError as e2:
            raise ValueError(f"neither one JSON value nor one per line ({e2.msg}, line {e.lineno})") from None


def run_name(prefix: str) -> str:
    """``PREFIX-<UTC start to the microsecond>-<process>-<random>``: a run's shards never overwrite
    another run's in one folder (concurrent, repeated, or two runs of one process within a clock
    tick), names sort in the order runs started, and the start dates the rows (``_written``)."""
    now = time.time() - CLOCK_SLACK  # (before any image is read, as the file system's clock sees it)
    return (f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{int(now % 1 * 1e6):06d}"
            f"-{os.getpid()}-{uuid.uuid4().hex[:6]}")


class ShardWriter:
    """Rows -> ``OUT/part-NNNNN.jsonl`` (or ``.parquet``), ``rows_per_shard`` rows each, or fewer
    when the first row of a shard is ``max_seconds`` old (what a SIGKILL or power cut can lose). A
    shard exists only once complete (temporary name, then rename), so after a crash every shard on
    disk is whole and ``done_paths`` says which images need no second run."""

    def __init__(self, out_dir: str | Path, fmt: str = "jsonl", rows_per_shard: int = DEFAULT_SHARD_SIZE, prefix: str = "part",
                 max_seconds: float = SHARD_SECONDS):
        if fmt not in ("jsonl", "parquet"):
            raise ValueError(f"shard format must be jsonl or parquet, not {fmt!r}")
        if fmt == "parquet":
            require_pyarrow()
        self.out, self.fmt, self.rows_per_shard, self.prefix = Path(out_dir), fmt, rows_per_shard, prefix
        self.max_seconds, self.opened = max_seconds, 0.0  # (when the shard being filled got its first row)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self.run = run_name(prefix)
        self.next_index = 0
        self.written = 0
        self.damaged: list[Path] = []  # shards done_paths could not read at all

    def shards(self) -> list[Path]:
        return sorted(self.out.glob(f"{self.prefix}-*.{self.fmt}"))

    def done_paths(self, model: str | None = None) -> dict[str, float]:
        """Images already done (resume skips them): those whose newest row (the one ``read`` gives)
        has no error and, if given, is ``model``'s, each with the time the run that wrote it
        started, before any of its images was read (an input changed since is done again, even
        one replaced while that run went on). So models A, B, then A again do A's rows again."""
        newest: dict[str, tuple[tuple, bool]] = {}
        theirs = sorted(self.out.glob("ray-*.parquet")) if self.fmt == "parquet" else []  # (a --ray run's rows)
        self.damaged = []  # (their images are done again)
        for p in self.shards() + theirs:
            written = _written(p)  # (time, name): the order read() picks the newest row by
            for path, row_model, error in _outcomes(p, self.damaged):
                if path not in newest or written >= newest[path][0]:
                    newest[path] = (written, not error and (model is None or row_model == model))
        return {path: written[0] for path, (written, ok) in newest.items() if ok}

    def add(self, r: dict) -> None:
        if not self.rows:
            self.opened = time.monotonic()
        self.rows.append(r)
        if len(self.rows) >= self.rows_per_shard or time.monotonic() - self.opened >= self.max_seconds:
            self.flush()

    def flush(self) -> Path | None:
        if not self.rows:
            return None
        path = self.out / f"{self.run}-{self.next_index:05d}.{self.fmt}"
        from .imageio import atomic_write

        def write(tmp: str) -> None:
            from .inputs import shown_name, utf8_name  # (not at the top: the CLI imports this module to start)

            # Every path as UTF-8 (a name that is not is an error row, written as \xNN): one lone
            # surrogate made pandas and pyarrow refuse a whole JSON-lines shard.
            rows = [r if utf8_name(r["path"]) is not None else {**r, "path": shown_name(r["path"])} for r in self.rows]
            if self.fmt == "jsonl":
                with open(tmp, "w", encoding="utf-8") as f:
                    for r in rows:
                        f.write(json.dumps(r, allow_nan=False) + "\n")
            else:
                import pyarrow as pa

                write_parquet(pa.Table.from_pylist(rows, schema=arrow_schema()), tmp)

        atomic_write(path, write, root=self.out)
        self.written += len(self.rows)
        self.rows = []
        self.next_index += 1
        return path


def write_parquet(table, path: str | Path) -> None:
    """A Parquet file, encoded in memory and written by Python: pyarrow cannot take a path that is
    not UTF-8, and a Python file object handed to it could abort the process at exit ("terminate
    called without an active exception", seen under load)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with open(path, "wb") as f:
        f.write(sink.getvalue().to_pybytes())


class NotRegular(OSError):
    """A FIFO, device or socket where an output is looked for."""


def open_regular(path: str | Path):
    """``path`` opened for reading (binary) if it is a regular file: a FIFO that has an output's
    name in --out blocked a resume's open for ever. Not opened at all otherwise (``NotRegular``)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))  # (a FIFO's open
    # returns at once, unread; Windows reads as text without O_BINARY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _parquet_file(path: str | Path):
    """A Parquet file opened from its bytes read by Python (see ``write_parquet``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_regular(path) as f:
        return pq.ParquetFile(pa.BufferReader(f.read()))


def read_parquet(path: str | Path, columns: list[str] | None = None):
    """A Parquet file's table (one thread: pyarrow's pool, started here and never used again,
    aborted the process at exit now and then: "terminate called without an active exception")."""
    return _parquet_file(path).read(columns=columns, use_threads=False)


def read_shard(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.suffix == ".parquet":
        require_pyarrow(f"{path}: reading Parquet results")
        return read_parquet(path).to_pylist()
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _from_document(doc: dict) -> dict:
    """A document's fields as a row, as they are (``_row_problem`` judges them)."""
    return {"path": doc["image"], "width": doc["width"], "height": doc["height"], "model": doc["model"],
            "error": None, "faces": doc["faces"]}


def _outcomes(path: Path, damaged: list | None = None) -> list[tuple[str, object, object]]:
    """(path, model, error) of each whole row of a shard, its faces not decoded: what a resume
    reads of every row there is, millions of them (Parquet: three columns; JSON lines: the text
    before ``"faces"``, the rest only checked to be whole). A shard or line damaged outside
    facemark gives nothing: its images are done again (a shard that cannot be read at all is
    added to ``damaged``)."""
    try:
        if path.suffix == ".parquet":
            rows = parquet_outcomes(path)
        else:
            rows = []
            with open_regular(path) as f:
                for line in f:
                    head, mark, faces = line.rstrip().partition(b', "faces": ')
                    if not (mark and faces.endswith(b"]}")):
                        continue
                    if faces.count(b"[") != faces.count(b"]"):  # (cut mid-row: its brackets do not close)
                        continue
                    try:
                        r = json.loads(head + b"}")
                    except ValueError:
                        continue
                    if isinstance(r, dict) and (r.get("error") is not None or _whole_shape(r, faces)):
                        rows.append((r.get("path"), r.get("model"), r.get("error")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # (pyarrow's errors are these kinds)
        if damaged is not None:
            damaged.append(path)
        return []
    return [r for r in rows if isinstance(r[0], str) and isinstance(r[1], str) and isinstance(r[2], (str, type(None)))]


def parquet_outcomes(path: str | Path) -> list[tuple]:
    """(path, model, error) of each row of a Parquet shard that ``read`` would keep, without
    decoding its points: in a shard of facemark's schema the point lists have fixed sizes, and
    the footer's null counts show any point left empty (each point list's leaf has as many nulls
    as the box's: one per row without faces). A shard of another schema (rewritten outside
    facemark) is judged in full, as ``read`` judges it. Raises pyarrow's errors for a bad file."""
    shard = _parquet_file(path)
    if shard.schema_arrow.equals(arrow_schema()) and _points_whole(shard.metadata):
        table = shard.read(columns=["path", "model", "error", "width", "height", "faces.list.element.box",
                                    "faces.list.element.score"], use_threads=False)
        rows = [r for r in table.to_pylist() if not _row_problem(r, check_points=False)]
    else:
        rows = [r for r in shard.read(use_threads=False).to_pylist() if not _row_problem(r)]
    return [(r["path"], r["model"], r["error"]) for r in rows]


def _points_whole(metadata) -> bool:
    """No null in any face's point lists, by the footer's statistics (absent: not known, False)."""
    if not _nulls_reach_the_leaves():
        return False
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        nulls = {}
        for c in range(group.num_columns):
            column = group.column(c)
            parts = column.path_in_schema.split(".")  # (faces.list.element.box.list.element)
            name = parts[3] if parts[:3] == ["faces", "list", "element"] else None
            if name in ("box", "landmarks", "landmarks68"):
                if column.statistics is None or not column.statistics.has_null_count:
                    return False
                nulls[name] = column.statistics.null_count
        if len(nulls) != 3 or len(set(nulls.values())) != 1:
            return False
    return True


@functools.lru_cache(maxsize=1)
def _nulls_reach_the_leaves() -> bool:
    """Whether this pyarrow counts a point list left empty (null) in its leaf column's null count,
    which ``_points_whole`` relies on: tried once on a two-face shard in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    face = {"box": [1.0, 2.0, 3.0, 4.0], "score": 0.5, "landmarks": [[1.0, 2.0]] * 98, "landmarks68": [[1.0, 2.0]] * 68}
    rows = [row("a", 1, 1, "m", [face, {**face, "landmarks": None}])]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), sink)
    group = pq.ParquetFile(pa.BufferReader(sink.getvalue())).metadata.row_group(0)
    nulls = {group.column(c).path_in_schema.split(".")[3]: group.column(c).statistics.null_count
             for c in range(group.num_columns) if group.column(c).path_in_schema.startswith("faces.")}
    return nulls.get("landmarks") == 1 and nulls.get("box") == 0


NUMBER_BYTES = b"0123456789.-+ "  # what a number is written with (and blanks): left out of a row's skeleton
FACE_SKELETON = (b'{"box":[,,,],"score":,"landmarks":[' + b",".join([b"[,]"] * 98) + b'],"landmarks68":['
                 + b",".join([b"[,]"] * 68) + b"]}").translate(None, NUMBER_BYTES)  # one face's text without its numbers
EXPONENT = re.compile(rb"(?<=\d)[eE][+-]?(\d+)")  # (1e-05: json writes tiny and huge numbers so)


@functools.lru_cache(maxsize=64)
def _skeleton(faces: int) -> bytes:
    return b"[" + b",".join([FACE_SKELETON] * faces) + b"]}"


def _whole_shape(head: dict, text: bytes) -> bool:
    """A done row's sizes, and its ``faces`` ``text`` being that of faces of numbers only, keys,
    lists and point counts as facemark writes them (its skeleton, the text without its numbers, is
    compared: one pass, nothing decoded, for a resume reads millions of rows), as ``read`` would
    find them: a row edited into another shape outside facemark is done again rather than counted
    done and skipped by ``read``."""
    sizes = (head.get("width"), head.get("height"))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
        return False
    faces = text.count(b"{")
    if text.translate(None, NUMBER_BYTES) == _skeleton(faces):
        return True
    # Numbers with an exponent leave an e (looked at only then); 3 digits of it may read as infinity.
    exponents = [m.group(1) for m in EXPONENT.finditer(text)]
    return bool(exponents) and all(len(e) < 3 for e in exponents) and \
        EXPONENT.sub(b"", text).translate(None, NUMBER_BYTES) == _skeleton(faces)


def _jsonl_rows(path: Path) -> tuple[list, int]:
    """The lines of a JSON-lines shard that are JSON, and how many are not (a file cut short or
    overwritten outside facemark): said by the caller once the file is known to be facemark's."""
    out, bad = [], 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    bad += 1
    if bad and not out:
        raise ValueError("no line of it is JSON")
    return out, bad


def _row_problem(r: dict, check_points: bool = True) -> str | None:
    """What is wrong with a row's shape (field types, face fields, points), or None: each point
    list is looked at as one array (x and y finite numbers), not pair by pair.
    ``check_points=False``: faces read without their point lists (their shape known otherwise)."""
    def whole(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    def number(v):  # (JSON lets NaN and Infinity through; validate() refuses them, and so does this)
        try:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        except OverflowError:  # (an integer of hundreds of digits)
            return False

    def points(v, n):  # n [x, y] pairs of finite numbers, looked at as one array
        import numpy as np  # (not at the top: the CLI imports this module to start)

        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):  # (text, pairs of other lengths, a 400-digit integer)
            return False
        if a.shape != (n, 2) or not np.isfinite(a).all():
            return False
        return not any(isinstance(x, bool) for p in v for x in p)  # (true and false are no coordinates)

    if not isinstance(r["path"], str) or not isinstance(r["model"], str):
        return "path and model must be text"
    if r["error"] is not None:
        return None if isinstance(r["error"], str) and isinstance(r["faces"], list) else "error must be text or null"
    if not (whole(r["width"]) and whole(r["height"])):
        return "width and height must be positive integers"
    if not isinstance(r["faces"], list):
        return "faces must be a list"
    for f in r["faces"]:
        if not (isinstance(f, dict) and isinstance(f.get("box"), list) and len(f["box"]) == 4
                and all(number(v) for v in f["box"]) and number(f.get("score"))
                and (not check_points or (isinstance(f.get("landmarks"), list) and points(f["landmarks"], 98)
                                          and isinstance(f.get("landmarks68"), list) and points(f["landmarks68"], 68)))):
            return "a face needs box (4 finite numbers), score (one), landmarks (98 points) and landmarks68 (68)"
    return None


class NotAnOutput(FacemarkError, ValueError):
    """A file given to ``read`` that is no facemark output."""


class DamagedOutput(NotAnOutput):
    """A file that is facemark's (a ``facemark/v1`` document or a row shard) but has no usable row."""


def _checked(rows: list[dict], path: Path, damaged) -> list[dict]:
    """The rows whose fields are sound; the others are said through ``damaged`` (or, if none is
    sound, ``DamagedOutput``). One rule for shards and documents alike."""
    problems = [_row_problem(r) for r in rows]
    bad = [(i, p) for i, p in enumerate(problems) if p]
    if bad and len(bad) == len(rows):
        raise DamagedOutput(f"{path}: a damaged facemark output (no usable row; row 1: {bad[0][1]})")
    if bad:  # edited or damaged outside facemark: said, and the other rows kept
        (damaged or _warn)(f"{path}: {len(bad)} malformed row(s) skipped, {len(rows) - len(bad)} kept "
                           f"(row {bad[0][0] + 1}: {bad[0][1]})")
    return [r for r, p in zip(rows, problems) if not p]


def _video_hint(items: list) -> str | None:
    """What to say of ``facemark video --json`` lines: frames of one video, not rows of images."""
    if items and all(isinstance(r, dict) and {"frame", "faces"} <= set(r) for r in items[:100]):
        return ("a facemark video --json file, one line per frame: read it with json.loads per line "
                "(facemark.results.validate_frame checks a line)")
    return None


def _rows_of(path: Path, damaged=None) -> list[dict]:
    """The rows of one output file; ``ValueError`` naming it if it is not one of facemark's
    (``DamagedOutput`` if it is, but no row of it can be used)."""
    from .imageio import ImageError, check_regular_file

    try:
        check_regular_file(path)  # a FIFO would block
        if path.suffix in (".jsonl", ".parquet"):
            lines, bad = _jsonl_rows(path) if path.suffix == ".jsonl" else (read_shard(path), 0)
            rows = [_from_document(r) if isinstance(r, dict) and "schema" in r and DOC_KEYS <= set(r) else r
                    for r in lines]
            if not rows and path.name.startswith(("part-", "ray-")):  # (facemark renames a shard into place with
                raise DamagedOutput(f"{path}: an empty facemark shard (no rows; a run redoes its images)")  # rows)
            is_row = [isinstance(r, dict) and ROW_KEYS <= set(r) for r in rows]
            kept = [r for r, ok in zip(rows, is_row) if ok]
            if rows and not kept:  # someone else's JSON lines (its damaged ones not said: it is not ours)
                raise ValueError(_video_hint(rows) or ("its lines are not facemark rows" if path.suffix == ".jsonl" else
                                                       f"its rows are not facemark rows (columns {', '.join(sorted(ROW_KEYS))} expected)"))
            if bad:
                (damaged or _warn)(f"{path}: {bad} damaged line(s) skipped, {len(kept)} kept")
            if len(kept) < len(rows):  # a line edited into something else: that line alone, as a resume redoes it
                first = is_row.index(False)
                (damaged or _warn)(f"{path}: {len(rows) - len(kept)} line(s) that are not facemark rows skipped, "
                                   f"{len(kept)} kept (row {first + 1}: not an object with {', '.join(sorted(ROW_KEYS))})")
                rows = kept
        else:
            docs = json_or_lines(path.read_bytes())  # one per line: what `facemark detect A B > F` prints
            docs = docs if isinstance(docs, list) else [docs]
            hint = _video_hint(docs)
            if hint:
                raise ValueError(hint)
            if not (docs and all(isinstance(d, dict) and d.get("schema") == "facemark/v1" for d in docs)):
                other = next((d["schema"] for d in docs if isinstance(d, dict) and isinstance(d.get("schema"), str)
                              and d["schema"].startswith("facemark/") and d["schema"] != "facemark/v1"), None)
                raise ValueError(f"a {other} document: this facemark reads facemark/v1 (a newer facemark wrote it?)"
                                 if other else "not a facemark/v1 document")
            if not all(DOC_KEYS <= set(d) for d in docs):
                raise DamagedOutput(f"{path}: a damaged facemark output (a document lacks "
                                    f"{', '.join(sorted(DOC_KEYS - set(next(d for d in docs if not DOC_KEYS <= set(d)))))})")
            rows = [_from_document(d) for d in docs]
    except (DamagedOutput, UsageError):  # (pyarrow missing: not a file that is not ours, nor an empty result)
        raise
    except (ImageError, OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise NotAnOutput(f"{path}: not a facemark output ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return _checked(rows, path, damaged)


def iter_results(path: str | Path, on_error=None) -> Iterator[dict]:
    """Rows from any facemark output: a ``facemark/v1`` JSON file, a JSON-lines or Parquet shard,
    or a folder of them (recursively; where a newer file has the same image again, as after
    ``--redo``, its row wins). In a folder, files that are not facemark outputs are passed to
    ``on_error(message)`` and skipped (by default: skipped silently, except facemark's own
    ``part-*`` and ``ray-*`` shards, which warn); damaged lines of a JSON-lines shard are skipped and said the
    same way, its other lines kept. A single bad file raises ``ValueError`` naming it, a missing
    path ``FileNotFoundError``; a Parquet file named, or a facemark shard in a folder, where pyarrow
    is not installed, ``UsageError`` (a ``ValueError``) saying how to install it."""
    if isinstance(path, bytes):  # (as detect takes them)
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read(path): a file or folder path (str or os.PathLike), not {type(path).__name__}")
    if not os.fspath(path).strip():  # (Path("") is the current folder: a run's results found by chance)
        raise ValueError("read(path): the path is an empty string; name a file or folder (use . for this folder)")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not path.is_dir():  # (one file may hold an image twice too: shards joined with cat after a --redo)
        yield from _one_per_file(_newest({}, _rows_of(path))).values()
        return
    files = [p for p in path.rglob("*") if p.suffix in (".json", ".jsonl", ".parquet")
             and not p.name.endswith(".tmp") and p.is_file()]
    latest: dict[str, dict] = {}
    for p in sorted(files, key=_written):  # the newest file's row of an image wins
        try:
            _newest(latest, _rows_of(p, on_error))
        except UsageError as e:  # (pyarrow missing: facemark's own shards cannot be left out; another
            if p.name.startswith(("part-", "ray-")):  # program's .parquet is passed over, as unread)
                raise
            if on_error:
                on_error(str(e))
        except ValueError as e:
            if on_error:
                on_error(str(e))
            elif isinstance(e, DamagedOutput) or p.name.startswith(("part-", "ray-")) and p.suffix in (".jsonl", ".parquet") \
                    or p.suffix == ".json" and _begins_as_ours(p):
                _warn(str(e))  # one of facemark's own outputs, damaged: never dropped without a word
    yield from _one_per_file(latest).values()


def _newest(latest: dict[str, dict], rows: list[dict]) -> dict[str, dict]:
    """``latest`` (path -> row) with ``rows``, each replacing an older row of its image: later rows
    win, and the dict's order stays the rows' age."""
    for r in rows:
        latest.pop(r["path"], None)
        latest[r["path"]] = r
    return latest


def _begins_as_ours(p: Path) -> bool:
    """Whether a file starts as a facemark/v1 document does (one cut short still does)."""
    try:
        with open_regular(p) as f:
            head = f.read(64)
    except OSError:
        return False
    return head.replace(b" ", b"").startswith(b'{"schema":"facemark/v1"')


def _one_per_file(latest: dict[str, dict]) -> dict[str, dict]:
    """``latest`` (path -> row, oldest first) with one row per local file: runs that spelled a path
    differently (relative and absolute, through a link) keep the newest row. Only paths that share
    a file name with another pay for a ``realpath``."""
    by_name: dict[str, list[str]] = {}
    for path in latest:
        if "://" not in path:
            by_name.setdefault(os.path.basename(path), []).append(path)
    folders: dict[str, str] = {}  # realpath of each folder once: a million rows share far fewer folders

    def real(path: str) -> str:
        head, name = os.path.split(path)
        if head not in folders:
            folders[head] = os.path.realpath(head or ".")
        joined = os.path.join(folders[head], name)
        return os.path.realpath(joined) if os.path.islink(joined) else joined

    for paths in by_name.values():
        if len(paths) > 1:
            newest: dict[str, str] = {}
            for path in paths:  # (oldest first, as ``latest`` lists them)
                r = real(path)
                if r in newest:
                    del latest[newest[r]]
                newest[r] = path
    return latest


def _written(p: Path) -> tuple:
    """When a file's rows were made: a shard's name carries its run's start (UTC, to the
    microsecond, or the second in older names; a copied folder keeps it, unlike file times), other
    files (and a name whose date is no date, renamed by hand) their modification time."""
    m = re.match(r"(?:part|ray)-(\d{8}T\d{6})(?:\.(\d{6}))?-", p.name)
    if m:
        try:
            return (calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S")) + int(m.group(2) or 0) / 1e6, str(p))
        except ValueError:  # (month 13 and the like)
            pass
    try:
        return (p.stat().st_mtime, str(p))
    except OSError:
        return (0.0, str(p))


def _warn(message: str) -> None:
    import warnings

    from .notes import callers_level

    warnings.warn(message, RuntimeWarning, stacklevel=callers_level())  # (at the caller's line, however deep)


def read(path: str | Path, on_error=None) -> list[dict]:
    """All rows of a facemark output (see ``iter_results``), one per image. A folder with none
    warns: a mistyped folder would otherwise pass for a run that found nothing."""
    rows = list(iter_results(path, on_error))
    if not rows and Path(path).is_dir():
        _warn(f"{path} holds no facemark output (no JSON, JSON-lines or Parquet results in it or below)")
    elif not rows:  # (facemark writes no empty shard: emptied, or another program's)
        _warn(f"{path} holds no rows (an empty file)")
    return rows


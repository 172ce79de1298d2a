"""Results for big runs: one row per image, written in shards (JSON lines or Parquet), each shard
renamed into place when complete, and one reader for every output format facemark writes.

A row: ``{"path", "width", "height", "model", "error", "faces": [{"box", "score", "landmarks",
"landmarks68"}]}``: the ``facemark/v1`` document's fields under the image's path, plus ``error``
(null, or why the image failed), so a failed image is a row, never a lost one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

FORMATS = ("json", "jsonl", "parquet")
SHARD_GLOB = "part-*.{ext}"


def row(path: str, width: int | None, height: int | None, model: str, faces=None, error: str | None = None) -> dict:
    """One image's result (``faces`` as ``Face`` objects or their dicts)."""
    fs = [f if isinstance(f, dict) else f.to_dict() for f in (faces or [])]
    return {"path": str(path), "width": None if width is None else int(width),
            "height": None if height is None else int(height), "model": model, "error": error, "faces": fs}


def arrow_schema():
    import pyarrow as pa

    point = pa.list_(pa.float64(), 2)
    face = pa.struct([("box", pa.list_(pa.float64(), 4)), ("score", pa.float64()),
                      ("landmarks", pa.list_(point, 98)), ("landmarks68", pa.list_(point, 68))])
    return pa.schema([("path", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("model", pa.string()),
                      ("error", pa.string()), ("faces", pa.list_(face))])


def _require_pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        from .errors import UsageError

        raise UsageError('--format parquet needs pyarrow: pip install "facemark[parquet]"') from None


class ShardWriter:
    """Rows -> ``OUT/part-NNNNN.jsonl`` (or ``.parquet``), ``rows_per_shard`` rows each. A shard
    exists only once complete (temporary name, then rename), so after a crash every shard on disk
    is whole and ``done_paths`` says which images need no second run."""

    def __init__(self, out_dir: str | Path, fmt: str = "jsonl", rows_per_shard: int = 10_000, prefix: str = "part"):
        if fmt not in ("jsonl", "parquet"):
            raise ValueError(f"shard format must be jsonl or parquet, not {fmt!r}")
        if fmt == "parquet":
            _require_pyarrow()
        self.out, self.fmt, self.rows_per_shard, self.prefix = Path(out_dir), fmt, rows_per_shard, prefix
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self.next_index = 1 + max((self._index(p) for p in self.shards()), default=-1)
        self.written = 0

    def _index(self, p: Path) -> int:
        try:
            return int(p.stem.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            return -1

    def shards(self) -> list[Path]:
        return sorted(self.out.glob(f"{self.prefix}-*.{self.fmt}"))

    def done_paths(self) -> set[str]:
        """Paths of the images already in complete shards (resume skips them)."""
        return {r["path"] for p in self.shards() for r in read_shard(p)}

    def add(self, r: dict) -> None:
        self.rows.append(r)
        if len(self.rows) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> Path | None:
        if not self.rows:
            return None
        path = self.out / f"{self.prefix}-{self.next_index:05d}.{self.fmt}"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.out)
        try:
            if self.fmt == "jsonl":
                with os.fdopen(fd, "w") as f:
                    for r in self.rows:
                        f.write(json.dumps(r, allow_nan=False) + "\n")
            else:
                os.close(fd)
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.Table.from_pylist(self.rows, schema=arrow_schema()), tmp)
            from .imageio import publish

            publish(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.written += len(self.rows)
        self.rows = []
        self.next_index += 1
        return path


def read_shard(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.suffix == ".parquet":
        _require_pyarrow()
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _from_document(doc: dict) -> dict:
    return row(doc["image"], doc["width"], doc["height"], doc["model"], doc["faces"])


def iter_results(path: str | Path) -> Iterator[dict]:
    """Rows from any facemark output: a ``facemark/v1`` JSON file, a JSON-lines or Parquet shard,
    or a directory of any of them (searched recursively, sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and (p.suffix in (".jsonl", ".parquet") or p.name.endswith(".json")))
        for p in files:
            yield from iter_results(p)
        return
    if path.suffix in (".jsonl", ".parquet"):
        for r in read_shard(path):
            yield _from_document(r) if "schema" in r else r
        return
    doc = json.loads(path.read_text())
    yield _from_document(doc) if isinstance(doc, dict) and "schema" in doc else doc


def read(path: str | Path) -> list[dict]:
    """All rows of a facemark output (see ``iter_results``), one per image."""
    return list(iter_results(path))


def write_rows(rows: Iterable[dict], out_dir: str | Path, fmt: str = "jsonl", rows_per_shard: int = 10_000) -> list[Path]:
    w = ShardWriter(out_dir, fmt, rows_per_shard)
    paths = []
    for r in rows:
        w.add(r)
        if not w.rows:
            paths.append(w.shards()[-1])
    last = w.flush()
    return paths + ([last] if last else [])

"""How long a resume takes to find what a shard folder already holds (``ShardWriter.done_paths``),
and its peak memory, for N rows of one face each: what every rerun of a big ``--format jsonl`` or
``parquet`` run pays before its first image.

    python scripts/resume_bench.py --rows 50000 --format jsonl
    PYTHONPATH=/path/to/older/checkout python scripts/resume_bench.py --rows 50000   # older code
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time

from facemark import shards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50000)
    ap.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    args = ap.parse_args()
    face = {"box": [1.0, 2.0, 30.0, 40.0], "score": 0.9, "landmarks": [[1.25, 2.5]] * 98,
            "landmarks68": [[1.25, 2.5]] * 68}
    with tempfile.TemporaryDirectory() as folder:
        w = shards.ShardWriter(folder, args.format, rows_per_shard=10000)
        for i in range(args.rows):
            w.add(shards.row(f"/data/img_{i:07d}.jpg", 640, 480, "direct", [face]))
        w.flush()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        done = shards.ShardWriter(folder, args.format).done_paths("direct")
        took = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.format}, {args.rows} rows: resume check {took:.2f} s, {len(done)} done; peak RSS {peak:.0f} MB "
          f"({before:.0f} MB after writing them)")


if __name__ == "__main__":
    main()

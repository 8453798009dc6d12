"""Time publishing the analytics file over synthetic marts (1,000,000 SendSMS records default).

    .venv/bin/python bench/publish_bench.py [--messages N] [--threads T] [--keep DIR]

Generates the raw tables with models_bench's generator, builds the models once, then
publishes twice (a first publish into an empty folder, and a republish over the file, as
every night after the first). Prints the seconds, the rows and the published file's size,
and the warehouse's size beside it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models_bench import GENERATE  # bench/ itself: run as a script

from pipelines.ops.history import ensure_table
from pipelines.warehouse.publish import default_publish_path, publish_analytics
from pipelines.warehouse.runner import build_models


def main(argv: list[str] | None = None) -> int:
    """Generate, build, publish twice, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2)")
    parser.add_argument("--keep", type=Path, help="write the files into this folder and keep them")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        warehouse = folder / "bench.duckdb"
        target = default_publish_path(warehouse)
        for path in (warehouse, target):
            path.unlink(missing_ok=True)
        started = time.perf_counter()
        with duckdb.connect(str(warehouse), config={"threads": str(args.threads)}) as connection:
            connection.execute(GENERATE.format(n=args.messages))
            ensure_table(connection)
        build = build_models(warehouse, threads=args.threads)
        print(
            f"generated {args.messages:,} records and built the models in "
            f"{time.perf_counter() - started:.1f} s ({build.seconds:.1f} s of build)"
        )
        for label in ("publish", "republish over the file"):
            cpu_started = time.process_time()
            result = publish_analytics(warehouse, target, threads=args.threads)
            cpu = time.process_time() - cpu_started
            print(
                f"{label}: {result.seconds:.2f} s wall, {cpu:.2f} s CPU, "
                f"{len(result.tables)} tables, {result.rows:,} rows, "
                f"{result.bytes / 1_048_576:.1f} MiB"
            )
            for table, rows in sorted(result.row_counts.items()):
                print(f"  {table}: {rows:,} rows")
        print(f"warehouse file: {warehouse.stat().st_size / 1_048_576:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

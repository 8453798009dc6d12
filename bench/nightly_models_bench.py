"""Time the nightly models + publish after 0.1 % of the warehouse changed: incremental vs full.

    .venv/bin/python bench/nightly_models_bench.py [--messages N] [--changed-fraction F]

Synthetic raw tables as in models_bench.py (each row stamped with a dlt load id), scaled as
history grows: per million records 90 more days, 2,000 more campaigns and 200,000 more
supporters (40 sender numbers whatever the size); a first full build and publish, then one
night of changes: `--changed-fraction` of the records updated
(status, opens; `--recent-share` of them sent in the last 3 days, the rest spread over the
whole history), late failure events
for half of those, new records worth half of it, and a few records deleted at the source.
Then, on two copies of that warehouse, the nightly step: `build_models` + `publish_analytics`
incrementally, and with a full rebuild and full publish. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from models_bench import GENERATE  # the same synthetic raw tables

from pipelines.ops.history import ensure_table
from pipelines.warehouse.publish import publish_analytics
from pipelines.warehouse.runner import build_models

FIRST_LOAD = "1780000000.0"
NIGHT_LOAD = "1780086400.0"

NIGHT = """
update quorum_raw.sendsms
set opens = opens + 1,
    current_status = case when current_status in (1, 2) then 3 else current_status end,
    updated = updated + interval 30 day,
    _dlt_load_id = '{load}'
where {chosen};

insert into quorum_raw.sendsms_events
select sendsms_id, 'failed', occurred_at + interval 1 day, '30099', 'late failure',
    'carrier-x', '{load}'
from quorum_raw.sendsms_events
where event_type = 'queued' and sendsms_id in (
    select id from quorum_raw.sendsms where _dlt_load_id = '{load}'
) and sendsms_id % 2 = 0;

insert into quorum_raw.sendsms
select * replace (
    id + {n} as id, 'uuid-new-' || id as message_uuid, '{load}' as _dlt_load_id,
    send_time + interval {days} day as send_time, created + interval {days} day as created
)
from quorum_raw.sendsms
where id <= {new};

update quorum_raw.sendsms set source_deleted_at = timestamptz '2026-04-01 00:00:00+00'
where id % 100003 = 17;
"""


def history_days(messages: int) -> int:
    """Days of history: 90 per million records."""
    return max(1, round(90 * messages / 1_000_000))


def generate(path: Path, messages: int, threads: int) -> None:
    """The raw tables, stamped with the first load's id, and the run history table."""
    scale = max(1.0, messages / 1_000_000)
    sql = (
        GENERATE.replace("% 200000", "% {supporters}")
        .replace("% 2000", "% {campaigns}")
        .replace("(90 * 86400)", "({days} * 86400)")
    )
    with duckdb.connect(str(path), config={"threads": str(threads)}) as connection:
        connection.execute(sql.format(
            n=messages, days=history_days(messages), supporters=round(200_000 * scale),
            campaigns=round(2000 * scale),
        ))
        for table in ("sendsms", "sendsms_events"):
            connection.execute(
                f"alter table quorum_raw.{table} add column _dlt_load_id varchar "
                f"default '{FIRST_LOAD}'"
            )
        ensure_table(connection)


def one_night(
    path: Path, messages: int, fraction: float, recent_share: float, threads: int
) -> int:
    """Apply one night's changes; return the number of changed or new records.

    `recent_share` of the updated records are among those sent in the last 3 days (texts
    progress, opens and late events come soon after a send); the rest anywhere in history.
    """
    every = max(1, round(1 / fraction))
    days = history_days(messages)
    recent_every = max(1, round(3 / days / fraction / max(recent_share, 1e-9)))
    old_every = max(1, round(1 / fraction / max(1 - recent_share, 1e-9)))
    chosen = (
        f"(send_time >= timestamptz '2026-01-01 00:00:00+00' + interval {days - 3} day "
        f"and hash(id * 31) % {recent_every} = 0) or hash(id * 37) % {old_every} = 0"
        if recent_share > 0 else f"hash(id * 31) % {every} = 0"
    )
    with duckdb.connect(str(path), config={"threads": str(threads)}) as connection:
        connection.execute(NIGHT.format(
            load=NIGHT_LOAD, chosen=chosen, n=messages, new=messages // every // 2, days=days,
        ))
        row = connection.execute(
            f"select count(*) from quorum_raw.sendsms where _dlt_load_id = '{NIGHT_LOAD}'"
        ).fetchone()
    return int(row[0]) if row else 0


def nightly(path: Path, target: Path, threads: int, *, full: bool) -> tuple[float, float, str]:
    """build_models + publish_analytics as the nightly run calls them; (build s, publish s)."""
    build = build_models(path, threads=threads, full_refresh=full)
    published = publish_analytics(path, target, threads=threads, full=full)
    slowest = sorted(build.model_seconds.items(), key=lambda item: -item[1])
    steps = ", ".join(f"{relation} {seconds:.2f} s" for relation, seconds in slowest)
    around = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in build.step_seconds.items())
    return build.seconds, published.seconds, (
        f"{build.summary()}\n    slowest: {steps}, checks {build.check_seconds:.2f} s\n"
        f"    steps: {around}\n"
        f"    {published.summary()}"
    )


def main(argv: list[str] | None = None) -> int:
    """Generate, build, change one night, then time the incremental and the full nightly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--changed-fraction", type=float, default=0.001)
    parser.add_argument(
        "--recent-share", type=float, default=0.0,
        help="share of the changed records sent in the last 3 days (default 0: spread "
        "uniformly over the whole history, the worst case)",
    )
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2)")
    parser.add_argument("--workdir", type=Path, help="where the files go (default: a temp dir)")
    parser.add_argument(
        "--raw-cache", type=Path,
        help="keep the generated raw tables in this DuckDB file and reuse them on the next "
        "run with the same --messages (generation takes minutes at 10M)",
    )
    parser.add_argument(
        "--skip-full", action="store_true", help="time the incremental nightly only",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        base, published = folder / "base.duckdb", folder / "base-analytics.duckdb"
        started = time.perf_counter()
        cache = args.raw_cache
        if cache is not None and cache.exists():
            shutil.copyfile(cache, base)
            print(f"raw tables copied from {cache}")
        else:
            generate(base, args.messages, args.threads)
            print(f"generated {args.messages:,} records in {time.perf_counter() - started:.1f} s")
            if cache is not None:
                shutil.copyfile(base, cache)
        build_s, publish_s, text = nightly(base, published, args.threads, full=True)
        print(f"first build + publish: {build_s:.2f} s + {publish_s:.2f} s\n    {text}")
        changed = one_night(
            base, args.messages, args.changed_fraction, args.recent_share, args.threads
        )
        print(f"one night: {changed:,} records changed or new "
              f"({changed / args.messages:.3%} of the warehouse)")

        results: dict[str, float] = {}
        runs = (("incremental", False),) if args.skip_full else (
            ("incremental", False), ("full", True)
        )
        for label, full in runs:
            copy, target = folder / f"{label}.duckdb", folder / f"{label}-analytics.duckdb"
            shutil.copyfile(base, copy)
            shutil.copyfile(published, target)
            # the copy's publish record names the base file: record it for this target
            publish_analytics(base, target, threads=args.threads)
            shutil.copyfile(base, copy)
            build_s, publish_s, text = nightly(copy, target, args.threads, full=full)
            results[label] = build_s + publish_s
            print(f"{label} nightly: build {build_s:.2f} s + publish {publish_s:.2f} s = "
                  f"{build_s + publish_s:.2f} s\n    {text}")
        if "full" in results:
            print(f"incremental / full: {results['incremental'] / results['full']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Time `build_models` over synthetic raw tables (1,000,000 SendSMS records by default).

    .venv/bin/python bench/models_bench.py [--messages N] [--threads T] [--keep PATH]
    .venv/bin/python bench/models_bench.py --engine postgres [--messages N]

The raw rows are generated in DuckDB SQL with range(): outbound texts spread over 90 days,
2,000 campaigns, 200,000 supporters and 40 sender numbers, with events for each status
and about 5 % inbound replies. Prints the time to generate and the time of each build (the
first build and a rebuild with nothing changed).

With `--engine postgres` the same raw tables are copied (COPY, not timed with the build)
into a throwaway PostgreSQL cluster started like the tests' fixture (Debian's package, as an
unprivileged user, on a free loopback port; `--pg-setting name=value` adds server settings),
and the models are built there; the cluster is removed afterwards.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.ops.history import ensure_table
from pipelines.warehouse.runner import build_models

GENERATE = """
create schema quorum_raw;
create table quorum_raw.sendsms as
with base as (
    select
        i as id,
        timestamptz '2026-01-01 00:00:00+00' + to_seconds(hash(i) % (90 * 86400)) as t,
        hash(i * 7) % 100 as roll,
        hash(i * 13) % 200000 as supporter,
        i % 20 = 0 as inbound
    from range(1, {n} + 1) as r(i)
)
select
    id,
    '/api/sendsms/' || id || '/' as resource_uri,
    t as created,
    t + interval 1 hour as updated,
    t as "timestamp",
    t as send_time,
    case when not inbound and id % 10 <> 0 then '/api/bulksms/' || (id % 2000) || '/' end
        as bulk_sms,
    case when not inbound and id % 10 <> 0 then id % 2000 end as bulk_sms_id,
    case when not inbound and id % 10 <> 0 then 'Campaign ' || (id % 2000) end
        as bulk_sms_description,
    case when not inbound and id % 10 <> 0 then timestamptz '2026-01-01 00:00:00+00' end
        as bulk_sms_send_time,
    '/api/newsupporter/' || supporter || '/' as supporter_uri,
    supporter as supporter_id,
    'Supporter ' || supporter as supporter_name,
    's' || supporter || '@example.org' as supporter_email,
    null::varchar as supporter_title,
    null::varchar as supporter_public_organization,
    '+1555000' || lpad(cast(id % 40 as varchar), 4, '0') as associated_number,
    'Hello' as message_content,
    'uuid-' || id as message_uuid,
    case when inbound then 1 else 2 end as message_direction,
    case
        when inbound then 7
        when roll < 80 then 3
        when roll < 85 then 4
        when roll < 90 then 5
        when roll < 93 then 6
        when roll < 97 then 2
        else 1
    end as current_status,
    1 + (roll % 3 = 0)::int as effective_message_count,
    case when not inbound and roll < 30 then 1 + roll % 3 else 0 end as opens,
    not inbound and roll < 8 as converted,
    id % 97 = 0 as archived,
    '{{}}'::json as rcpt_dict,
    '{{}}'::json as _extra,
    case when id % 1009 = 0 then t + interval 30 day end as source_deleted_at
from base;

create table quorum_raw.sendsms_events as
with s as (
    select id, send_time as t, current_status as st
    from quorum_raw.sendsms where message_direction = 2
)
select id as sendsms_id, 'queued' as event_type, t as occurred_at,
    null::varchar as error_code, null::varchar as error_message, null::varchar as carrier
from s
union all
select id, 'sent', t + to_seconds(1 + id % 5), null, null, 'carrier-' || (id % 4)
from s where st in (2, 3, 4, 5)
union all
select id, 'delivered', t + to_seconds(3 + id % 60), null, null, 'carrier-' || (id % 4)
from s where st = 3
union all
select id, case st when 4 then 'undelivered' when 5 then 'failed' else 'rejected' end,
    t + to_seconds(5 + id % 30), cast(30000 + id % 8 as varchar), 'provider error',
    'carrier-' || (id % 4)
from s where st in (4, 5, 6);
"""


# DuckDB types whose PostgreSQL name differs
PG_TYPES = {
    "JSON": "jsonb", "TIMESTAMP WITH TIME ZONE": "timestamptz", "VARCHAR": "text",
    # the generator's hash() values fit a signed bigint
    "UBIGINT": "bigint", "UINTEGER": "bigint",
}
RAW_COPY = (
    ("quorum_raw", "sendsms"), ("quorum_raw", "sendsms_events"), ("quorum_ops", "sync_runs"),
)
# Defaults sized for the bench machine (2 cores, 24 GiB): sorts and hashes of a 1M-row build
# fit in memory instead of spilling in 4 MB pieces.
DEFAULT_PG_SETTINGS = ("shared_buffers=2GB", "work_mem=512MB", "max_parallel_workers_per_gather=2")


@contextmanager
def postgres_target(settings: tuple[str, ...]) -> Iterator[str]:
    """A throwaway cluster (the tests' fixture code) and a fresh database on it."""
    from tests.postgres import create_database, create_test_role, start_cluster, stop_cluster

    cluster, user = start_cluster(settings)
    try:
        create_test_role(cluster)
        yield create_database(cluster)
    finally:
        stop_cluster(cluster, user)


def copy_to_postgres(duck: Path, credentials: str) -> None:
    """Copy the raw tables and the run history from the DuckDB file into PostgreSQL."""
    import psycopg2

    with (
        duckdb.connect(str(duck), read_only=True) as source,
        psycopg2.connect(credentials) as target,
        target.cursor() as cursor,
    ):
        for schema, table in RAW_COPY:
            columns = source.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, table],
            ).fetchall()
            ddl = ", ".join(f'"{name}" {PG_TYPES.get(kind, kind)}' for name, kind in columns)
            cursor.execute(f"create schema if not exists {schema}")
            cursor.execute(f"create table {schema}.{table} ({ddl})")
            with tempfile.NamedTemporaryFile(suffix=".csv") as csv_file:
                source.execute(
                    f"copy {schema}.{table} to '{csv_file.name}' (header false)"
                )
                with open(csv_file.name, encoding="utf-8") as handle:
                    cursor.copy_expert(f"copy {schema}.{table} from stdin (format csv)", handle)
        cursor.execute("analyze")


def main(argv: list[str] | None = None) -> int:
    """Generate the raw tables, build the models twice, print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2)")
    parser.add_argument("--keep", type=Path, help="write the database here and keep it")
    parser.add_argument("--engine", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument(
        "--pg-setting", action="append", default=None,
        help=f"a PostgreSQL server setting name=value (default {' '.join(DEFAULT_PG_SETTINGS)})",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.duckdb"
        path.unlink(missing_ok=True)
        started = time.perf_counter()
        with duckdb.connect(str(path), config={"threads": str(args.threads)}) as connection:
            connection.execute(GENERATE.format(n=args.messages))
            ensure_table(connection)  # the run history a sync creates (sync_freshness reads it)
            counts = connection.execute(
                "select (select count(*) from quorum_raw.sendsms),"
                " (select count(*) from quorum_raw.sendsms_events)"
            ).fetchone()
        generated = time.perf_counter() - started
        assert counts is not None
        print(
            f"generated {counts[0]:,} sendsms rows and {counts[1]:,} event rows "
            f"in {generated:.2f} s"
        )
        if args.engine == "duckdb":
            run_builds(path, args.threads)
        else:
            settings = tuple(args.pg_setting or DEFAULT_PG_SETTINGS)
            with postgres_target(settings) as credentials:
                started = time.perf_counter()
                copy_to_postgres(path, credentials)
                print(f"copied the raw tables into PostgreSQL in "
                      f"{time.perf_counter() - started:.2f} s (settings: {' '.join(settings)})")
                run_builds(credentials, args.threads)
    return 0


def run_builds(target: str | Path, threads: int) -> None:
    """Build twice (a first build, then a rebuild with nothing changed) and print timings."""
    for label in ("build", "rebuild (nothing changed)"):
        cpu_started = time.process_time()
        result = build_models(target, threads=threads)
        cpu = time.process_time() - cpu_started
        print(f"{label} on {result.dialect}: {result.seconds:.2f} s wall, {cpu:.2f} s CPU "
              f"in this process ({result.summary()})")
        for relation, seconds in result.model_seconds.items():
            rows = result.row_counts.get(relation)
            shown = f", {rows:,} rows" if rows is not None else ""
            print(f"  {relation}: {seconds:.2f} s{shown}")
        print(f"  data checks: {result.check_seconds:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())

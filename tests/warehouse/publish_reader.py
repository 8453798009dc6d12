"""A dashboard stand-in: holds the published file open read-only and queries it in a loop.

Runs under any DuckDB client (the project's, or the old one of tests/duckdb_legacy.py), so it
imports nothing but the standard library and duckdb.

    python publish_reader.py PATH           hold PATH open; commands on stdin, JSON on stdout
    python publish_reader.py PATH --once    print the build PATH holds now and exit
    python publish_reader.py PATH --export DIR   write every analytics table to DIR/<t>.parquet

While holding the file, the reader queries it over and over; between queries it reads one
command if one is waiting: `check` answers the build it sees now, `stop` answers how many
loop queries ran and every problem seen (an error, or a build other than the first) and exits.
"""

from __future__ import annotations

import json
import select
import sys

import duckdb

# One query over several marts: rows of two different builds could never give the same key.
BUILD = """
select
    (select count(*) from analytics.fct_sms_message) || '/'
    || (select count(*) from analytics.sms_supporter_engagement) || '/'
    || (select coalesce(sum(messages), 0) from analytics.sms_daily_overview) || '/'
    || (select epoch_us(max(built_at)) from analytics.sync_freshness)
"""


def build_of(connection: duckdb.DuckDBPyConnection) -> str:
    row = connection.execute(BUILD).fetchone()
    return str(row[0]) if row else ""


def analytics_tables(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """The names of the tables in the analytics schema, sorted."""
    return [
        str(row[0])
        for row in connection.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'analytics' order by table_name"
        ).fetchall()
    ]


def fingerprint(connection: duckdb.DuckDBPyConnection) -> str:
    """A digest of every row of every analytics table (reads every column's data)."""
    digests = []
    for table in analytics_tables(connection):
        row = connection.execute(
            f"select count(*), md5(coalesce(string_agg(cast(t as varchar), chr(10) "
            f"order by cast(t as varchar)), '')) from analytics.{table} as t"
        ).fetchone()
        digests.append(f"{table}:{row[0]}:{row[1]}" if row else table)
    return ";".join(digests)


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def hold(path: str) -> int:
    connection = duckdb.connect(path, read_only=True)
    first = build_of(connection)
    say(event="open", build=first, version=duckdb.__version__)
    loops = 0
    problems: list[str] = []
    while True:
        # The timeout only paces the loop; commands order the events.
        waiting, _, _ = select.select([sys.stdin], [], [], 0.005)
        if not waiting:
            try:
                seen = build_of(connection)
                if seen != first:
                    problems.append(f"build {seen} after {first}")
            except duckdb.Error as error:
                problems.append(str(error))
            loops += 1
            continue
        command = sys.stdin.readline().strip()
        if command == "check":
            say(event="check", build=build_of(connection), loops=loops)
        elif command == "verify":
            say(event="verify", build=build_of(connection), fingerprint=fingerprint(connection))
        elif command in ("stop", ""):
            connection.close()
            say(event="done", loops=loops, problems=problems)
            return 0


def export(path: str, folder: str) -> int:
    connection = duckdb.connect(path, read_only=True)
    tables = analytics_tables(connection)
    for table in tables:
        connection.execute(
            f"copy analytics.{table} to '{folder}/{table}.parquet' (format parquet)"
        )
    say(event="exported", tables=tables, version=duckdb.__version__)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[1] == "--export":
        return export(argv[0], argv[2])
    if len(argv) >= 2 and argv[1] == "--once":
        connection = duckdb.connect(argv[0], read_only=True)
        say(
            event="once",
            build=build_of(connection),
            fingerprint=fingerprint(connection),
            version=duckdb.__version__,
        )
        connection.close()
        return 0
    return hold(argv[0])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The nightly `quorum-sms sync` end to end, on DuckDB and on PostgreSQL, side by side.

    .venv/bin/python bench/nightly_bench.py --records 1000000,10000000 \
        --engines duckdb,postgres --out bench/results/nightly.json

For each world size (`--records`, comma-separated) the simulator serves a world of that many
SendSMS records (its own process, `bench/benchmark.py`'s launcher). Then, per engine, a
warehouse holding the whole world with its marts built is prepared (untimed), `--changed-
fraction` (0.1 %) of the simulator's records are touched once (its `touch` admin endpoint;
drawn from all records alike, or `--recent-share` of them from those of the last 3 days),
and the real nightly `quorum-sms sync` (with models; publishing on DuckDB, which alone has it)
runs on each engine in turn, timed from process start to exit with its own peak RSS
(`os.wait4`). On PostgreSQL the server's own process tree is sampled beside it (its memory
is not the client's RSS). One table and one JSON (`--out`) come out, with the 10M/1M ratio
per engine when both sizes ran.

`--rounds N` (DuckDB from `--warehouse-cache` only) runs the sizes in turn N times, each round
on a fresh copy of the cached warehouse and a fresh simulator (same seed: the same records
touched), and prints the median wall time and 10M/1M ratio with every round's value: one
nightly run wanders with the machine, and a slow stretch then falls on both sizes of a round.

`--duckdb-memory-limit` sets the timed DuckDB nightly's `duckdb_memory_limit` (the default is
the CLI's own, `auto`): what a night needs follows where its changes lie (`--recent-share`).

Preparing the warehouses:

* DuckDB: a real full `quorum-sms sync` (models and publishing included).
  `--prepare-memory-limit 2GB` gives that preparation sync (never the timed nightly) a higher
  `QUORUM_DUCKDB_MEMORY_LIMIT`, for as long as a 10M merge does not fit the default.
* PostgreSQL (`--pg-prepare`): `sync` runs a real first `quorum-sms sync --destination
  postgres --no-models` (timed: the first-sync rate) then `quorum-sms models`; `copy` copies
  the DuckDB warehouse instead, exactly as dlt would have written it: the raw schema's tables
  are created by dlt itself from the stored schema (`sync_schema`, the migration a first load
  runs), then every raw table's rows and dlt's `_dlt_loads` and `_dlt_pipeline_state` are
  copied (COPY, in a child process), so the nightly restores dlt's state and cursor from
  PostgreSQL (its working folder is new) and must read only what changed; the sync run
  history is copied too (not the DuckDB model-build bookkeeping), then the marts are built.
  `auto` (the default) syncs unless a rate measured at a smaller size in the same run
  projects more than `--pg-sync-limit-min` minutes (or no rate is known above 1M).

PostgreSQL runs in a throwaway cluster started like the tests' (`tests/postgres.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import (  # bench/ is a folder of scripts, not a package
    BIN,
    RESULTS,
    ROOT,
    Simulator,
    child_env,
    machine,
    run_child,
)
from treemem import TreeSampler

from pipelines.quorum.settings import PIPELINE_NAME, RAW_DATASET

ENGINES = ("duckdb", "postgres")
#: Sized for the bench machine (2 cores, 24 GiB), as in models_bench.py
DEFAULT_PG_SETTINGS = ("shared_buffers=2GB", "work_mem=512MB", "max_parallel_workers_per_gather=2")
#: What a sync writes outside dlt's raw dataset: the run history, and the superseded-events
#: clean-up's marker (it refers to the copied `_dlt_loads`; without it the first nightly joins
#: the last load window again); the model-build bookkeeping beside them is DuckDB's own and is
#: rebuilt by the PostgreSQL model build
OPS_SCHEMA = "quorum_ops"
OPS_TABLES = ("sync_runs", "event_cleanup")
#: DuckDB type names whose PostgreSQL name differs (for the run history, which dlt does not own)
PG_TYPES = {
    "JSON": "jsonb", "TIMESTAMP WITH TIME ZONE": "timestamptz", "VARCHAR": "text",
    "DOUBLE": "double precision", "UBIGINT": "bigint", "UINTEGER": "bigint",
    "HUGEINT": "numeric",
}  # fmt: skip
#: A nightly reading more than this share of the world did not continue from the cursor
FULL_READ_SHARE = 0.05
#: How the copying child gets the PostgreSQL credentials
COPY_CREDENTIALS = "NIGHTLY_BENCH_PG_CREDENTIALS"


@dataclass
class Nightly:
    """One engine's nightly run at one world size, and how its warehouse was prepared."""

    engine: str
    records: int
    #: which of `--rounds` it belongs to (1-based)
    round: int = 1
    prepare: str = ""
    prepare_s: float = 0.0
    first_sync_s: float | None = None
    first_sync_records_per_s: float | None = None
    warehouse_bytes: int = 0
    touched: int = 0
    records_fetched: int = 0
    #: of those, read again as stored (the lag window's re-reads): not loaded again
    records_unchanged: int = 0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    tree_pss_mb: float = 0.0
    tree_rss_mb: float = 0.0
    server_peak_pss_mb: float | None = None
    cpu_s: float = 0.0
    exit_code: int = 0
    ratio_to_smallest: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- PostgreSQL ------------------------------------------------------------------------------


@dataclass
class PgServer:
    """The throwaway cluster: how to make databases on it, and its postmaster's pid."""

    cluster: Any
    pid: int

    def new_database(self) -> str:
        """A fresh database owned by the tests' role; its credentials string."""
        from tests.postgres import create_database

        return str(create_database(self.cluster))


@contextmanager
def postgres_server(settings: tuple[str, ...]) -> Iterator[PgServer]:
    """Start a cluster the way the tests do; stop and remove it afterwards."""
    from tests.postgres import create_test_role, start_cluster, stop_cluster

    cluster, user = start_cluster(settings)
    try:
        create_test_role(cluster)
        pid = int((cluster.folder / "data" / "postmaster.pid").read_text().split()[0])
        yield PgServer(cluster, pid)
    finally:
        stop_cluster(cluster, user)


def pg_database_bytes(credentials: str) -> int:
    """The database's size on disk."""
    import psycopg2

    with psycopg2.connect(credentials) as connection, connection.cursor() as cursor:
        cursor.execute("select pg_database_size(current_database())")
        row = cursor.fetchone()
    connection.close()
    return int(row[0]) if row else 0


def _latest_schemas(source: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The newest stored dlt schema of each name in the raw dataset."""
    rows = source.execute(
        f"select schema_name, schema from {RAW_DATASET}._dlt_version "
        "qualify row_number() over (partition by schema_name order by inserted_at desc) = 1"
    ).fetchall()
    return [json.loads(schema) for _, schema in rows]


def _copy_table(
    source: duckdb.DuckDBPyConnection,
    cursor: Any,
    schema: str,
    table: str,
    columns: list[str],
    scratch: Path,
) -> int:
    """Copy the named columns of one table through a CSV file; returns the rows copied.

    DuckDB writes NULL as an empty field and an empty string as `""`, and PostgreSQL's csv
    format reads them back the same way, so empty strings and NULLs stay apart.
    """
    names = ", ".join(f'"{name}"' for name in columns)
    csv_path = scratch / f"{schema}.{table}.csv"
    source.execute(f"copy (select {names} from {schema}.{table}) to '{csv_path}' (header false)")
    with csv_path.open(encoding="utf-8") as handle:
        cursor.copy_expert(f"copy {schema}.{table} ({names}) from stdin (format csv)", handle)
    csv_path.unlink()
    return int(cursor.rowcount)


def copy_warehouse(duck: Path, credentials: str, scratch: Path) -> dict[str, int]:
    """Give PostgreSQL what a full sync of the same world would have written there.

    dlt creates the raw tables from the schema stored in the DuckDB warehouse (the migration
    its first load would run, so the columns and types are dlt's own), then the rows of every
    raw table and of `_dlt_loads` and `_dlt_pipeline_state` are copied: the nightly's dlt,
    starting without a working folder, restores its state (and the cursor) from them. The run
    history, which dlt does not own, gets tables of the same columns.

    Returns:
        rows copied per table.
    """
    import dlt
    import psycopg2
    from dlt.common.schema import Schema

    copied: dict[str, int] = {}
    with duckdb.connect(str(duck), read_only=True) as source:
        schemas = [Schema.from_dict(stored) for stored in _latest_schemas(source)]
        pipeline = dlt.pipeline(
            pipeline_name=f"{PIPELINE_NAME}_prepare",
            pipelines_dir=str(scratch / "prepare.dlt"),
            destination=dlt.destinations.postgres(credentials=credentials),
            dataset_name=RAW_DATASET,
        )
        for schema in schemas:
            pipeline._inject_schema(schema)  # no public way to hand dlt a stored schema
            pipeline.sync_schema(schema.name)
        connection = psycopg2.connect(credentials)
        with connection, connection.cursor() as cursor:
            for schema in schemas:
                for table in [*schema.data_table_names(), "_dlt_loads", "_dlt_pipeline_state"]:
                    columns = _pg_columns(cursor, RAW_DATASET, table)
                    copied[f"{RAW_DATASET}.{table}"] = _copy_table(
                        source, cursor, RAW_DATASET, table, columns, scratch
                    )
            for table, described in _duck_tables(source, OPS_SCHEMA).items():
                if table not in OPS_TABLES:
                    continue
                ddl = ", ".join(f'"{n}" {PG_TYPES.get(t, t)}' for n, t in described)
                cursor.execute(f"create schema if not exists {OPS_SCHEMA}")
                cursor.execute(f"create table {OPS_SCHEMA}.{table} ({ddl})")
                copied[f"{OPS_SCHEMA}.{table}"] = _copy_table(
                    source, cursor, OPS_SCHEMA, table, [n for n, _ in described], scratch
                )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("analyze")
        connection.close()
    return copied


def _pg_columns(cursor: Any, schema: str, table: str) -> list[str]:
    cursor.execute(
        "select column_name from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        [schema, table],
    )
    return [str(row[0]) for row in cursor.fetchall()]


def _duck_tables(
    source: duckdb.DuckDBPyConnection, schema: str
) -> dict[str, list[tuple[str, str]]]:
    rows = source.execute(
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_catalog = current_database() "
        "order by table_name, ordinal_position",
        [schema],
    ).fetchall()
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in rows:
        tables.setdefault(str(table), []).append((str(column), str(kind)))
    return tables


def copy_in_child(duck: Path, credentials: str, scratch: Path) -> dict[str, int]:
    """`copy_warehouse` in a child process, so this process stays small.

    Linux starts a child's `ru_maxrss` at its parent's high-water mark (kept across fork and
    exec), so a parent grown by a 10M-row copy would pass its peak to every later nightly.
    The credentials travel in the environment, never on a command line.
    """
    done = subprocess.run(
        [sys.executable, __file__, "_copy", str(duck), str(scratch)],
        env={**os.environ, COPY_CREDENTIALS: credentials},
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        (scratch.parent / "copy.log").write_text(done.stderr)
        raise SystemExit(f"copying the warehouse failed; see {scratch.parent / 'copy.log'}")
    copied: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return copied


# -- running quorum-sms ----------------------------------------------------------------------


@dataclass
class Child:
    """One finished `quorum-sms` process."""

    code: int
    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    tree_pss_mb: float
    tree_rss_mb: float
    out: str
    server_peak_pss_mb: float | None = None


def quorum_sms(
    args: Sequence[str],
    env: dict[str, str],
    sim: Simulator,
    log: Path,
    server_pid: int | None = None,
) -> Child:
    """Run `quorum-sms ARGS` to its end, measured (and the PostgreSQL server beside it)."""
    server = TreeSampler(server_pid, interval=0.2) if server_pid else None
    try:
        code, wall, rss, cpu, _, out, tree = run_child(
            [BIN / "quorum-sms", *args], env, sim.process, log
        )
    finally:
        if server is not None:
            server.stop()
    (log.with_suffix(".out")).write_text(out)  # the run's summary, beside its log
    return Child(code, wall, rss, cpu, tree.peak_pss_mb, tree.peak_rss_mb, out,
                 server.peak_pss_mb if server is not None else None)  # fmt: skip


def summary_number(out: str, label: str) -> int:
    """A number from the sync's summary (`records fetched   1,234`), 0 when absent."""
    for line in out.splitlines():
        if line.strip().startswith(label):
            digits = line.strip()[len(label) :].split()[0].replace(",", "")
            if digits.isdigit():
                return int(digits)
    return 0


def _check(child: Child, what: str, log: Path) -> None:
    if child.code not in (0, 5):
        raise SystemExit(f"{what} failed with exit {child.code}; see {log}")


def _dir_bytes(*paths: Path) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
    return total


# -- one world size --------------------------------------------------------------------------


def prepare_duckdb(sim: Simulator, workdir: Path, memory_limit: str | None) -> tuple[Path, Child]:
    """A full real sync with models and publishing into a new DuckDB file."""
    database = workdir / f"duck-{sim.records}.duckdb"
    extra = {"QUORUM_DUCKDB_MEMORY_LIMIT": memory_limit} if memory_limit else {}
    log = workdir / f"prepare-duckdb-{sim.records}.log"
    child = quorum_sms(
        ["sync", "--base-url", sim.base_url, "--database", str(database)],
        child_env(extra), sim, log,
    )  # fmt: skip
    _check(child, "the DuckDB preparation sync", log)
    return database, child


def _cached_duckdb(args: argparse.Namespace, records: int) -> Path | None:
    """benchmark.py's cached full warehouse of this world (`--warehouse-cache`), if any."""
    if args.warehouse_cache is None:
        return None
    found = args.warehouse_cache / f"records-{records}-seed-{args.seed}" / "ours-full.duckdb"
    return found if found.exists() else None


def _restore_duckdb(cached: Path, workdir: Path, round_no: int = 1) -> Path:
    """Copy a cached warehouse and dlt's folder beside it (the nightly changes both)."""
    folder_for_size = workdir / f"cached-{cached.parent.name}-round-{round_no}"
    folder_for_size.mkdir()
    database = folder_for_size / cached.name
    shutil.copy2(cached, database)
    folder = cached.with_name(cached.name + ".dlt")
    if folder.is_dir():
        shutil.copytree(folder, database.with_name(database.name + ".dlt"))
    return database


def run_size(
    records: int,
    args: argparse.Namespace,
    workdir: Path,
    pg: PgServer | None,
    rates: dict[str, float],
    round_no: int = 1,
) -> list[Nightly]:
    """Prepare every engine's warehouse for one world, touch it once, time each nightly.

    Each call starts its own simulator: the same seed serves the same world and touches the
    same records, so every round's nightly does the same work.
    """
    sim = Simulator(records, 0, args.seed, workdir / f"simulator-{records}-{round_no}.log")
    results: list[Nightly] = []
    try:
        sim.wait_ready()
        print(f"{records:,} records: simulator ready", flush=True)
        duck: Path | None = None
        duck_child: Child | None = None
        needs_duck = "duckdb" in args.engines or _pg_mode(args, records, rates) == "copy"
        cached = _cached_duckdb(args, records)
        if needs_duck and cached is not None:
            duck = _restore_duckdb(cached, workdir, round_no)
            # A published file is only updated in place where it was written (path, inode,
            # size and mtime are checked): one build here publishes the copy whole, so the
            # nightly meets a published file of its own, as every night after the first.
            log = workdir / f"prepare-publish-{records}.log"
            _check(quorum_sms(["models", "--database", str(duck)], child_env(), sim, log),
                   "the publish of the copied warehouse", log)  # fmt: skip
            print(f"  duckdb: copied from {cached.parent}, published", flush=True)
        elif needs_duck:
            duck, duck_child = prepare_duckdb(sim, workdir, args.prepare_memory_limit)
            print(f"  duckdb: prepared by a full sync in {duck_child.wall_s:.1f} s", flush=True)
        targets: list[tuple[Nightly, list[str], dict[str, str], int | None]] = []
        if "duckdb" in args.engines:
            assert duck is not None
            if duck_child is None:
                night = Nightly("duckdb", records, round=round_no,
                                prepare="full warehouse of benchmark.py's "
                                "--warehouse-cache (models built), copied")  # fmt: skip
            else:
                night = Nightly("duckdb", records, round=round_no,
                                prepare="full sync (models, publish)",
                                prepare_s=duck_child.wall_s, first_sync_s=duck_child.wall_s,
                                first_sync_records_per_s=records / duck_child.wall_s)  # fmt: skip
            if args.prepare_memory_limit and duck_child is not None:
                night.prepare += f", QUORUM_DUCKDB_MEMORY_LIMIT={args.prepare_memory_limit}"
            night.warehouse_bytes = _dir_bytes(duck)
            nightly_env = child_env({"QUORUM_DUCKDB_MEMORY_LIMIT": args.duckdb_memory_limit}
                                    if args.duckdb_memory_limit else None)
            targets.append((night, ["--database", str(duck)], nightly_env, None))
        if "postgres" in args.engines:
            assert pg is not None
            night, env, database = prepare_postgres(sim, args, workdir, pg, duck, rates)
            targets.append((night, ["--destination", "postgres", "--database", str(database)],
                            env, pg.pid))  # fmt: skip
        touched = sim.admin("POST", "touch", {"fraction": args.changed_fraction,
                                              "recent_share": args.recent_share})
        n_touched = len(touched.get("ids", []))
        print(f"  touched {n_touched:,} records", flush=True)
        for night, target_args, env, server_pid in targets:
            log = workdir / f"nightly-{night.engine}-{records}.log"
            child = quorum_sms(["sync", "--base-url", sim.base_url, *target_args], env, sim, log,
                               server_pid)  # fmt: skip
            night.touched = n_touched
            night.records_fetched = summary_number(child.out, "records fetched")
            night.records_unchanged = summary_number(child.out, "unchanged")
            night.wall_s, night.cpu_s = child.wall_s, child.cpu_s
            night.peak_rss_mb = child.peak_rss_mb
            night.tree_pss_mb = child.tree_pss_mb
            night.tree_rss_mb = child.tree_rss_mb
            night.server_peak_pss_mb = child.server_peak_pss_mb
            night.exit_code = child.code
            if child.code != 0:
                night.note = f"FAILED (exit {child.code}, see {log.name})"
            elif night.records_fetched > FULL_READ_SHARE * records:
                night.note = "read far more than changed: the cursor was not continued"
            results.append(night)
            print(f"  {night.engine} nightly: {night.wall_s:.1f} s, "
                  f"{night.records_fetched:,} fetched ({night.records_unchanged:,} unchanged), "
                  f"peak {night.peak_rss_mb:.0f} MB "
                  f"{night.note}", flush=True)  # fmt: skip
    finally:
        sim.stop()
    return results


def _pg_mode(args: argparse.Namespace, records: int, rates: dict[str, float]) -> str:
    """How the PostgreSQL warehouse is prepared at this size: "sync" or "copy"."""
    if "postgres" not in args.engines:
        return "none"
    if args.pg_prepare != "auto":
        return str(args.pg_prepare)
    rate = rates.get("postgres")
    if rate is None:
        return "sync" if records <= 1_000_000 else "copy"
    return "sync" if records / rate <= args.pg_sync_limit_min * 60 else "copy"


def prepare_postgres(
    sim: Simulator,
    args: argparse.Namespace,
    workdir: Path,
    pg: PgServer,
    duck: Path | None,
    rates: dict[str, float],
) -> tuple[Nightly, dict[str, str], Path]:
    """A PostgreSQL warehouse holding the whole world, marts built; by sync or by copy."""
    records = sim.records
    credentials = pg.new_database()
    env = child_env({"DESTINATION__POSTGRES__CREDENTIALS": credentials})
    # dlt's working folder goes beside this path; the file itself is never created
    database = workdir / f"pg-{records}.duckdb"
    target = ["--destination", "postgres", "--database", str(database)]
    night = Nightly("postgres", records)
    mode = _pg_mode(args, records, rates)
    started = time.perf_counter()
    if mode == "sync":
        log = workdir / f"prepare-postgres-{records}.log"
        child = quorum_sms(["sync", "--base-url", sim.base_url, *target, "--no-models"],
                           env, sim, log, pg.pid)  # fmt: skip
        _check(child, "the PostgreSQL first sync", log)
        night.first_sync_s = child.wall_s
        night.first_sync_records_per_s = records / child.wall_s
        night.extra["first_sync_peak_rss_mb"] = child.peak_rss_mb
        rates["postgres"] = night.first_sync_records_per_s
        night.prepare = "real first sync (--no-models), then models"
        print(f"  postgres: first sync in {child.wall_s:.1f} s "
              f"({night.first_sync_records_per_s:,.0f} records/s)", flush=True)  # fmt: skip
    else:
        assert duck is not None
        scratch = Path(tempfile.mkdtemp(prefix="copy-", dir=workdir))
        copied = copy_in_child(duck, credentials, scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        night.extra["copied_rows"] = copied
        night.prepare = "copy of the DuckDB warehouse (dlt-created tables, dlt state), then models"
        rate = rates.get("postgres")
        if rate:
            night.extra["projected_first_sync_s"] = records / rate
        print(f"  postgres: copied the DuckDB warehouse in {time.perf_counter() - started:.1f} s",
              flush=True)  # fmt: skip
    log = workdir / f"prepare-postgres-models-{records}.log"
    models = quorum_sms(["models", *target], env, sim, log, pg.pid)
    _check(models, "the PostgreSQL model build", log)
    night.extra["prepare_models_s"] = models.wall_s
    night.prepare_s = time.perf_counter() - started
    night.warehouse_bytes = pg_database_bytes(credentials)
    print(f"  postgres: prepared in {night.prepare_s:.1f} s (models {models.wall_s:.1f} s)",
          flush=True)  # fmt: skip
    return night, env, database


# -- output ----------------------------------------------------------------------------------


def add_ratios(results: list[Nightly]) -> None:
    """Each engine's nightly time over its time at the smallest size in the same round."""
    for engine in ENGINES:
        for round_no in sorted({r.round for r in results}):
            runs = sorted((r for r in results if r.engine == engine and r.round == round_no),
                          key=lambda r: r.records)  # fmt: skip
            if len(runs) > 1 and runs[0].wall_s:
                for run in runs[1:]:
                    run.ratio_to_smallest = run.wall_s / runs[0].wall_s


def medians(results: list[Nightly]) -> list[dict[str, Any]]:
    """Per engine and size over the rounds: the median wall time and ratio, and each value.

    One nightly run wanders with the machine (a 1M night took 4.0-5.6 s on one day), and a
    ratio of two single runs wanders with both; rounds run the sizes in turn, so a slow
    stretch of the machine falls on both sizes of a round.
    """
    out: list[dict[str, Any]] = []
    for engine in ENGINES:
        for records in sorted({r.records for r in results if r.engine == engine}):
            runs = [r for r in results if r.engine == engine and r.records == records]
            walls = [r.wall_s for r in runs]
            ratios = [r.ratio_to_smallest for r in runs if r.ratio_to_smallest is not None]
            out.append({
                "engine": engine, "records": records, "rounds": len(runs),
                "median_wall_s": statistics.median(walls), "wall_s": walls,
                "median_ratio": statistics.median(ratios) if ratios else None,
                "ratios": ratios,
                "peak_rss_mb": max(r.peak_rss_mb for r in runs),
            })  # fmt: skip
    return out


def print_medians(summary: list[dict[str, Any]]) -> None:
    """One line per engine and size: the median over the rounds, then every value."""
    print("medians over the rounds:")
    for row in summary:
        walls = ", ".join(f"{w:.1f}" for w in row["wall_s"])
        line = (f"  {row['engine']} {_size(row['records'])}: {row['median_wall_s']:.1f} s "
                f"({walls} s), peak {row['peak_rss_mb']:.0f} MB")  # fmt: skip
        if row["median_ratio"] is not None:
            ratios = ", ".join(f"{r:.2f}x" for r in row["ratios"])
            line += f"; vs the smallest size: median {row['median_ratio']:.2f}x ({ratios})"
        print(line)


def print_table(results: list[Nightly]) -> None:
    """One aligned table of the nightly runs."""
    smallest = min((r.records for r in results), default=0)
    cols = ("round", "engine", "warehouse", "on disk GB", "records read", "unchanged", "wall s",
            "peak RSS MB",
            "tree RSS MB",
        "tree PSS MB", "server PSS MB", f"vs {_size(smallest)}", "first sync rec/s",
            "prepared by", "note")  # fmt: skip
    rows = [
        (
            str(r.round), r.engine, _size(r.records), f"{r.warehouse_bytes / 1e9:.2f}",
            f"{r.records_fetched:,}", f"{r.records_unchanged:,}", f"{r.wall_s:.1f}",
            f"{r.peak_rss_mb:.0f}",
            f"{r.tree_rss_mb:.0f}",
            f"{r.tree_pss_mb:.0f}",
            "" if r.server_peak_pss_mb is None else f"{r.server_peak_pss_mb:.0f}",
            "" if r.ratio_to_smallest is None else f"{r.ratio_to_smallest:.2f}x",
            "" if r.first_sync_records_per_s is None else f"{r.first_sync_records_per_s:,.0f}",
            r.prepare, r.note,
        )
        for r in results
    ]  # fmt: skip
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    for cells in (cols, ["-" * w for w in widths], *rows):
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def _size(records: int) -> str:
    return f"{records / 1e6:g}M" if records >= 1_000_000 else f"{records:,}"


def check_night_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn `--records` into sorted sizes and check `--recent-share`, as the nightly benchmarks
    share them; a bad value ends the script with the parser's usage error (exit 2)."""
    try:
        args.records = sorted({int(n.replace("_", "")) for n in args.records.split(",")})
    except ValueError:
        parser.error(f"--records takes whole numbers separated by commas, not {args.records!r}")
    if not 0.0 <= args.recent_share <= 1.0:
        parser.error(f"--recent-share takes a share between 0 and 1, not {args.recent_share}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The script's options."""
    parser = argparse.ArgumentParser(
        prog="bench/nightly_bench.py",
        description="The nightly quorum-sms sync, end to end, on DuckDB and PostgreSQL.",
    )
    parser.add_argument(
        "--records", default="1000000", help="world sizes, comma-separated (e.g. 1000000,10000000)"
    )
    parser.add_argument(
        "--engines", default="duckdb,postgres", help="comma-separated: duckdb, postgres"
    )
    parser.add_argument(
        "--changed-fraction",
        type=float,
        default=0.001,
        help="share of the records touched before the nightly",
    )
    parser.add_argument(
        "--recent-share",
        type=float,
        default=0.0,
        help="share of the touched records drawn from those created in the simulator's last 3 "
        "days (default 0: all records alike, the worst case, which the issue's target uses)",
    )
    parser.add_argument(
        "--pg-prepare",
        choices=("auto", "sync", "copy"),
        default="auto",
        help="how the PostgreSQL warehouse is filled (see the module doc)",
    )
    parser.add_argument(
        "--pg-sync-limit-min",
        type=float,
        default=15,
        help="auto: copy instead when a first sync would take longer",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=None,
        help=f"server setting name=value (default {' '.join(DEFAULT_PG_SETTINGS)})",
    )
    parser.add_argument(
        "--prepare-memory-limit",
        help="QUORUM_DUCKDB_MEMORY_LIMIT of the DuckDB preparation sync only",
    )
    parser.add_argument(
        "--duckdb-memory-limit",
        help="[quorum_sms] duckdb_memory_limit of the timed DuckDB nightly (auto, 64MB, ...)",
    )
    parser.add_argument(
        "--warehouse-cache",
        type=Path,
        help="benchmark.py's --warehouse-cache folder: a full DuckDB warehouse of the same world "
        "found there is copied instead of syncing one (a 10M sync takes many minutes)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every size this many times, the sizes in turn, each round on a fresh copy of "
        "the cached warehouse and a fresh simulator; medians are printed (needs "
        "--warehouse-cache and --engines duckdb)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep warehouses and logs")
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args(argv)
    check_night_args(parser, args)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown or not args.engines:
        parser.error(f"--engines takes duckdb and/or postgres, not {','.join(unknown) or '-'}")
    if args.rounds < 1:
        parser.error("--rounds takes a whole number of at least 1")
    if args.rounds > 1 and (args.warehouse_cache is None or args.engines != ["duckdb"]):
        parser.error("--rounds above 1 needs --warehouse-cache and --engines duckdb: each round "
                     "restores the cached warehouse (a full sync or a PostgreSQL copy per round "
                     "would take far longer than the nightly it prepares)")
    return args


def main(argv: Sequence[str]) -> int:
    """Run every size; print the table and write the JSON."""
    if argv and argv[0] == "_copy":
        copied = copy_warehouse(Path(argv[1]), os.environ[COPY_CREDENTIALS], Path(argv[2]))
        print(json.dumps(copied))
        return 0
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"nightly-{stamp}-", dir=RESULTS))
    print(f"nightly bench: {', '.join(_size(n) for n in args.records)} records on "
          f"{', '.join(args.engines)}; work dir {workdir}", flush=True)  # fmt: skip
    started = time.perf_counter()
    settings = tuple(args.pg_setting or DEFAULT_PG_SETTINGS)
    results: list[Nightly] = []
    rates: dict[str, float] = {}
    with _maybe_postgres("postgres" in args.engines, settings) as pg:
        for round_no in range(1, args.rounds + 1):
            for records in args.records:
                results.extend(run_size(records, args, workdir, pg, rates, round_no))
    add_ratios(results)
    summary = medians(results)
    info = machine()
    drawn = (f" ({args.recent_share:.0%} of them from the last 3 days)" if args.recent_share
             else "")
    if args.duckdb_memory_limit:
        drawn += f", DuckDB's ceiling {args.duckdb_memory_limit}"
    print(f"\nnightly `quorum-sms sync` end to end after {args.changed_fraction:.1%} changed"
          f"{drawn}; "
          f"{info['cores']} cores ({info['cpu']}), {info['memory_gb']} GB; "
          f"{(time.perf_counter() - started) / 60:.1f} min in all")  # fmt: skip
    print_table(results)
    if args.rounds > 1:
        print_medians(summary)
    print(
        "wall s: process start to exit (sync, models; publishing on DuckDB). peak RSS: the "
        "quorum-sms process (wait4); server PSS: the PostgreSQL server's "
        "processes (shared buffers counted once), sampled. records read: the summary's "
        "`records fetched` (changed + lag window); unchanged: of those, the lag window's "
        "records read again as stored, not loaded again."
    )
    out = args.out or RESULTS / f"nightly-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "when": stamp, "machine": info, "pg_settings": list(settings),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": [asdict(r) for r in results], "medians": summary,
    }, indent=2))  # fmt: skip
    print(f"results: {out}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if results and all(r.exit_code == 0 and not r.note for r in results) else 1


@contextmanager
def _maybe_postgres(wanted: bool, settings: tuple[str, ...]) -> Iterator[PgServer | None]:
    if not wanted:
        yield None
        return
    with postgres_server(settings) as server:
        yield server


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main(sys.argv[1:]))

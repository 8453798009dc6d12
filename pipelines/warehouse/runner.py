"""Build the seeds, staging views, intermediate and mart tables all or none, then run the checks.

Everything happens in one transaction on the warehouse engine (DuckDB and PostgreSQL both
roll DDL back): if a model or a data check fails, the transaction is rolled back and the
marts of the previous build stay exactly as they were. Each model is compiled for the engine
by compiler.py.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from pipelines.errors import ConfigError, DataCheckError, ModelBuildError
from pipelines.interrupts import received
from pipelines.warehouse.checks import CheckFailure, run_checks
from pipelines.warehouse.compiler import compile_sql
from pipelines.warehouse.database import (
    DEFAULT_SQL_DIR,
    RAW_SCHEMA,
    configured_memory_limit,
)
from pipelines.warehouse.engine import (
    EngineError,
    Warehouse,
    is_postgres_target,
    open_warehouse,
)
from pipelines.warehouse.incremental import (
    CHANGED_RECORDS,
    ROOT_KEY,
    IncrementalBuild,
    TableBuild,
    high_water_mark,
    plan_build,
    record_build,
)
from pipelines.warehouse.memory import (
    DUCKDB_OUT_OF_MEMORY_WORDS,
    SMALL_LIMIT,
    is_auto,
    memory_limit_for,
    night_limit,
    raised_limit,
)
from pipelines.warehouse.models import (
    SEED_COLUMN_TYPES,
    Model,
    discover_checks,
    discover_models,
)
from pipelines.warehouse.pg_indexes import create_model_indexes, ensure_raw_indexes
from pipelines.warehouse.vectors import vectors_holding_sql

logger = logging.getLogger(__name__)

RAW_TABLES = ("sendsms", "sendsms_events")
T = TypeVar("T")


@dataclass(frozen=True)
class BuildResult:
    """What a successful build made."""

    target: str
    dialect: str
    models: tuple[Model, ...]
    row_counts: dict[str, int]
    checks_run: int
    seconds: float
    model_seconds: dict[str, float]
    check_seconds: float
    mode: str = "full"
    reason: str = ""
    changed_records: int | None = None
    build_id: int = 0
    incremental_tables: tuple[str, ...] = ()
    #: seconds of the steps around the models: planning, finding the changes, bookkeeping,
    #: counting rows, committing (to see what a build spends besides models and checks)
    step_seconds: dict[str, float] = field(default_factory=dict)
    #: per model recomputed by group (`recompute_together_by`): the other rows of the changed
    #: records' groups it read from its own columns (what the night's changes fanned out to)
    group_rows: dict[str, int] = field(default_factory=dict)
    #: what the build could not do and the reader should know (it still succeeded)
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for the terminal or a cron mail."""
        layers = {
            layer: sum(m.layer == layer for m in self.models)
            for layer in ("seeds", "staging", "intermediate", "marts")
        }
        notes = "".join(f"; {note}" for note in self.notes)
        if self.mode == "incremental":
            return (
                f"built incrementally in {self.seconds:.2f} s: {self.changed_records:,} "
                f"changed records, {len(self.incremental_tables)} tables updated by key, the "
                f"other tables rebuilt; {self.checks_run} data checks passed{notes}"
            )
        return (
            f"built {layers['seeds']} seeds, {layers['staging']} staging views, "
            f"{layers['intermediate']} intermediate and {layers['marts']} mart tables in "
            f"{self.seconds:.2f} s (full build: {self.reason}); {self.checks_run} data checks "
            f"passed{notes}"
        )


def build_models(
    database: str | os.PathLike[str],
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
    full_refresh: bool = False,
) -> BuildResult:
    """Build every model under `sql_dir` into the warehouse and run the data checks.

    Incremental when the last build is recorded and no model or seed file changed since:
    only the keys the changed records touch are recomputed (see incremental.py); otherwise,
    or with `full_refresh`, everything is rebuilt.

    Args:
        database: the DuckDB file holding the `quorum_raw` tables, or a PostgreSQL
            credentials string `postgresql://user:password@host:port/database`.
        sql_dir: the directory with `seeds/`, `staging/`, `intermediate/`, `marts/` and
            `checks/`; the project's `sql/` when None.
        threads: DuckDB worker threads; DuckDB's default (all cores) when None.
        full_refresh: rebuild everything even when an incremental build is possible.

    Returns:
        The models built, the row count of each table and the number of checks run.

    Under an `auto` DuckDB ceiling (`database.set_connection_defaults`) an incremental build
    takes the ceiling its deletes need (`memory.night_limit`: the vectors of the marts keyed
    by record that hold the changed records), a full one the file's share; a build that runs
    out of it is built again once at a larger ceiling (`memory.raised_limit`), with a note.

    Raises:
        ConfigError: no database, no raw tables, or an unreadable model, check or seed.
        ModelBuildError: a model failed; names the model file (and the line on DuckDB).
            Nothing changed.
        DataCheckError: a check found offending rows; names them. Nothing changed.
    """
    setting = configured_memory_limit()
    ceiling = _Ceiling(
        setting if not is_postgres_target(database) and is_auto(setting) else None
    )
    try:
        return _build(database, sql_dir, threads=threads, full_refresh=full_refresh,
                      ceiling=ceiling)
    except (ModelBuildError, DataCheckError) as error:
        if ceiling.setting is None or DUCKDB_OUT_OF_MEMORY_WORDS not in str(error):
            raise
        failed = ceiling.limit
    # the failed attempt's transaction was rolled back: nothing of it is left
    raised = raised_limit(failed)
    note = (
        f"DuckDB ran out of its memory ceiling ({failed}, duckdb_memory_limit = auto) in "
        f"the model build: built again at {raised}"
    )
    logger.warning(note)
    result = _build(database, sql_dir, threads=threads, full_refresh=full_refresh,
                    ceiling=_Ceiling(None, fixed=raised))
    return replace(result, notes=(note, *result.notes))


@dataclass
class _Ceiling:
    """DuckDB's ceiling for one build attempt.

    `setting` is `auto` when the attempt sizes its own ceiling (it opens at the floor and sets
    it once it knows the build), None otherwise; `fixed` opens the connection at that ceiling
    (a retry's); `limit` is the ceiling last set, for the retry to raise.
    """

    setting: str | None
    fixed: str | None = None
    limit: str = SMALL_LIMIT

    def choose(self, warehouse: Warehouse, limit: str) -> None:
        """Set the connection's ceiling to `limit` when this attempt sizes its own."""
        if self.setting is None:
            return
        self.limit = limit
        warehouse.execute(f"set memory_limit = '{limit}'")
        logger.debug("building the models at DuckDB's memory ceiling %s", limit)


def _build(
    database: str | os.PathLike[str],
    sql_dir: str | os.PathLike[str] | None,
    *,
    threads: int | None,
    full_refresh: bool,
    ceiling: _Ceiling,
) -> BuildResult:
    """One attempt at `build_models`, at the ceiling `ceiling` gives."""
    started = time.perf_counter()
    steps: dict[str, float] = {}
    step_started = started

    def step(name: str) -> None:
        nonlocal step_started
        now = time.perf_counter()
        steps[name] = steps.get(name, 0.0) + now - step_started
        step_started = now

    directory = Path(sql_dir) if sql_dir is not None else DEFAULT_SQL_DIR
    models = discover_models(directory)
    checks = discover_checks(directory, models)
    with open_warehouse(
        database, threads=threads, light=ceiling.setting is not None, memory_limit=ceiling.fixed
    ) as warehouse:
        # compile everything before touching the warehouse: an unportable model changes nothing
        compiled = {
            m.name: compile_sql(m.sql, warehouse.dialect, m.path) for m in models if m.sql
        }
        _require_raw_tables(warehouse)
        # PostgreSQL: the build finds the night's rows by load id and id (a warehouse synced
        # before the sync created these has none yet); no-op on DuckDB
        ensure_raw_indexes(warehouse)
        plan = plan_build(warehouse, models, checks, full_refresh=full_refresh)
        if ceiling.setting is not None and plan.mode != "incremental":
            ceiling.choose(warehouse, memory_limit_for(ceiling.setting, database))
        step("discover, compile and plan")
        with warehouse.transaction():
            for schema in sorted({m.schema for m in models}):
                warehouse.execute(f"create schema if not exists {schema}")
            incremental: IncrementalBuild | None = None
            changed: int | None = None
            if plan.mode == "incremental":
                previous_mark = plan.previous.high_water if plan.previous else None
                high_water = high_water_mark(warehouse, previous_mark or "")
                incremental = IncrementalBuild(warehouse, models, previous_mark)
                changed = _guarded(incremental.detect_changes)
                if ceiling.setting is not None:
                    vectors = _guarded(lambda: _changed_vectors(warehouse, models))
                    ceiling.choose(warehouse, night_limit(ceiling.setting, database, vectors))
            else:
                high_water = high_water_mark(warehouse)
                if warehouse.dialect != "duckdb":
                    _drop_previous(warehouse, models)
            step("find the changes")
            model_seconds: dict[str, float] = {}
            for model in models:
                model_started = time.perf_counter()
                if incremental is None:
                    _build_one(warehouse, model, compiled.get(model.name, ""))
                elif model.kind == "table":
                    # seeds and views are unchanged (same files): only tables follow the data
                    _build_incrementally(warehouse, incremental, model, compiled[model.name])
                model_seconds[model.relation] = time.perf_counter() - model_started
            step("models")
            checks_started = time.perf_counter()
            checks_run, failures = run_checks(
                warehouse, checks, {m.relation for m in models},
                # a new or edited check reads every row once
                incremental.recomputed
                if incremental is not None and not plan.checks_changed else None,
            )
            check_seconds = time.perf_counter() - checks_started
            if failures:
                raise _check_error(failures)
            tables = incremental.tables if incremental is not None else [
                TableBuild(m.relation, "full") for m in models if m.kind == "table"
            ]
            step("checks")
            build_id = _guarded(lambda: record_build(warehouse, plan, high_water, changed, tables))
            if incremental is not None:
                _guarded(incremental.drop_temporaries)
            step("bookkeeping")
            row_counts = {
                m.relation: _count(warehouse, m.relation) for m in models if m.kind == "table"
            }
            step("row counts")
        step("commit")
        notes: list[str] = []
        if plan.mode != "incremental" and warehouse.dialect == "duckdb":
            for model in models:
                if model.kind == "table" and model.stored_order:
                    notes.extend(_store_in_order(warehouse, model))
            step("stored order")
    return BuildResult(
        target=warehouse.label,
        dialect=warehouse.dialect,
        models=tuple(models),
        row_counts=row_counts,
        checks_run=checks_run,
        seconds=time.perf_counter() - started,
        model_seconds=model_seconds,
        check_seconds=check_seconds,
        mode=plan.mode,
        reason=plan.reason,
        changed_records=changed,
        build_id=build_id,
        incremental_tables=tuple(t.relation for t in tables if t.mode == "incremental"),
        step_seconds=steps,
        group_rows=dict(incremental.group_rows) if incremental is not None else {},
        notes=tuple(notes),
    )


def _build_incrementally(
    warehouse: Warehouse, incremental: IncrementalBuild, model: Model, sql: str
) -> None:
    """Recompute the model's changed keys, or rebuild it whole when it cannot be."""
    try:
        if incremental.build(model):
            return
        if warehouse.dialect != "duckdb":
            warehouse.execute(f"drop table if exists {model.relation}")
    except EngineError as error:
        raise _model_error(model, error, warehouse.dialect) from error
    _build_one(warehouse, model, sql)


def _changed_vectors(warehouse: Warehouse, models: list[Model]) -> int:
    """The vectors of the tables keyed by record that hold the changed records' rows: the
    rows the build deletes and writes again (`vectors.py`)."""
    tables = [
        m.relation for m in models
        if m.kind == "table" and m.unique_key is not None and m.unique_key.column == ROOT_KEY
    ]
    result = warehouse.query(
        vectors_holding_sql(CHANGED_RECORDS, ROOT_KEY, [(t, ROOT_KEY) for t in tables])
    )
    return int(result.rows[0][0] or 0) if result.rows else 0


def _guarded(step: Callable[[], T]) -> T:
    """Run a bookkeeping step; an engine error becomes a ModelBuildError (nothing changed)."""
    try:
        return step()
    except EngineError as error:
        raise ModelBuildError(
            f"The incremental build's bookkeeping failed: {error}. Nothing was changed: the "
            "marts of the previous build are still in place. Run `quorum-sms models "
            "--full-refresh` to rebuild everything."
        ) from error


def _require_raw_tables(warehouse: Warehouse) -> None:
    present = set(warehouse.table_names(RAW_SCHEMA))
    missing = [t for t in RAW_TABLES if t not in present]
    if missing:
        raise ConfigError(
            f"The database {warehouse.label} has no {RAW_SCHEMA}.{missing[0]} table, so there "
            "is nothing to model yet. Run `quorum-sms sync` first."
        )


def _count(warehouse: Warehouse, relation: str) -> int:
    result = warehouse.query(f"select count(*) from {relation}")
    return int(result.rows[0][0]) if result.rows else 0


def _drop_previous(warehouse: Warehouse, models: list[Model]) -> None:
    """PostgreSQL: drop the previous build's relations, dependents first.

    PostgreSQL has no `create or replace table`, replaces a view only with the same columns,
    and will not drop a seed a staging view reads; dropping everything in reverse build order
    (inside the build's transaction) clears the way without `cascade`, which would also drop
    a user's views silently. Those make the build fail with PostgreSQL's own explanation.
    """
    for model in reversed(models):
        kind = "view" if model.kind == "view" else "table"
        try:
            warehouse.execute(f"drop {kind} if exists {model.relation}")
        except EngineError as error:
            raise ModelBuildError(
                f"The previous {model.relation} cannot be replaced: {error}. Drop the objects "
                "that depend on it (or make them read a copy), then run `quorum-sms models` "
                "again. Nothing was changed."
            ) from error


def _build_one(warehouse: Warehouse, model: Model, sql: str) -> None:
    kind = "view" if model.kind == "view" else "table"
    try:
        if model.kind == "seed":
            _load_seed(warehouse, model)
        elif warehouse.dialect == "duckdb":
            # The prefix adds no newline, so DuckDB's "LINE n" is the line in the model file.
            warehouse.execute(f"create or replace {kind} {model.relation} as {sql}")
        else:
            warehouse.execute(f"create {kind} {model.relation} as\n{sql}")
            # the next incremental build looks the night's keys up in it
            create_model_indexes(warehouse, model)
    except EngineError as error:
        raise _model_error(model, error, warehouse.dialect) from error


def _store_in_order(warehouse: Warehouse, model: Model) -> list[str]:
    """Rewrite a table a full build made, sorted by its `-- stored_order` columns.

    In key order the timestamps of neighbouring rows are close and compress far better
    (fct_sms_message at 10M records: 392 instead of 560 MB), so every later scan of the table,
    the nightly build's and a dashboard's, reads less; rows a nightly build replaces go to the
    end. The sort runs after the build's commit, in its own transaction and at one thread:
    inside the build's transaction, or inside the model's query beside the hash tables of its
    joins, DuckDB's sort of fct's 34 columns does not fit the 64MB ceiling of a 1M-record
    warehouse, and at two threads it needs ~96MB even alone. Should the sort fail, the table
    stays in build order (correct, only larger); returns the note that says so.
    """
    ordered = f"{model.schema}.{model.name}__ordered"
    threads = int(warehouse.query("select current_setting('threads')").rows[0][0])
    try:
        warehouse.execute("set threads = 1")
        with warehouse.transaction():
            warehouse.execute(
                f"create or replace table {ordered} as select * from {model.relation} "
                f"order by {', '.join(model.stored_order)}"
            )
            warehouse.execute(f"drop table {model.relation}")
            warehouse.execute(f"alter table {ordered} rename to {model.name}")
    except EngineError as error:
        if received() is not None:
            raise  # DuckDB cancelled the sort for a signal: the command stops (exit 130)
        return [
            f"{model.relation} stays in build order, not sorted by "
            f"{', '.join(model.stored_order)} ({' '.join(str(error).split())[:200]}); the "
            "marts are complete, the table is only larger"
        ]
    finally:
        warehouse.execute(f"set threads = {threads}")
    return []


def _model_error(model: Model, error: EngineError, dialect: str) -> ModelBuildError:
    where = str(model.path)
    line_text = ""
    if error.line is not None and dialect == "duckdb":
        where = f"{model.path}, line {error.line}"
        lines = model.sql.splitlines()
        if 0 < error.line <= len(lines):
            line_text = f" (the line reads: {lines[error.line - 1].strip()!r})"
    elif dialect != "duckdb":
        where = f"{model.path} (compiled for {dialect})"
    advice = "Fix the model and run `quorum-sms models` again."
    if dialect == "duckdb" and DUCKDB_OUT_OF_MEMORY_WORDS in str(error):
        # the model is fine: the ceiling is too small for this warehouse
        advice = (
            "DuckDB ran out of its memory ceiling: raise [quorum_sms] duckdb_memory_limit "
            "(QUORUM_DUCKDB_MEMORY_LIMIT in the environment), say to twice the size above, "
            "and run `quorum-sms models` again."
        )
    return ModelBuildError(
        f"The SQL model {model.relation} failed to build at {where}: {error}{line_text}. "
        f"Nothing was changed: the marts of the previous build are still in place. {advice}"
    )


def _load_seed(warehouse: Warehouse, model: Model) -> None:
    """Load a seed CSV with its declared column types, reporting the file line of a bad value."""
    types = SEED_COLUMN_TYPES.get(model.name, {})
    try:
        with model.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            rows = [
                (reader.line_num, [v.strip() for v in row]) for row in reader if any(row)
            ]
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"The seed file {model.path} cannot be read: {error}.") from error
    if not header or any(not _is_identifier(h) for h in header):
        raise ConfigError(
            f"The seed file {model.path} needs a header line of column names (lowercase "
            f"letters, digits, underscores); it has {header!r}."
        )
    missing = [c for c in types if c not in header]
    if missing:
        raise ConfigError(
            f"The seed file {model.path} lacks the column {missing[0]!r}; its header must "
            f"hold {', '.join(types)}."
        )
    values: list[list[object]] = []
    for line_number, row in rows:
        if len(row) != len(header):
            raise ConfigError(
                f"The seed file {model.path}, line {line_number}, has {len(row)} values for "
                f"{len(header)} columns; fix that line."
            )
        converted: list[object] = []
        for column, value in zip(header, row, strict=True):
            if value == "":
                converted.append(None)
            elif types.get(column) == "BIGINT":
                try:
                    converted.append(int(value))
                except ValueError as error:
                    raise ConfigError(
                        f"The seed file {model.path}, line {line_number}: {column} must be an "
                        f"integer, not {value!r}."
                    ) from error
            else:
                converted.append(value)
        values.append(converted)
    columns = ", ".join(f"{c} {types.get(c, 'VARCHAR')}" for c in header)
    # on PostgreSQL the previous seed was dropped before the build (see _drop_previous)
    create = "create or replace table" if warehouse.dialect == "duckdb" else "create table"
    warehouse.execute(f"{create} {model.relation} ({columns})")
    if values:
        marks = ", ".join("?" for _ in header)
        warehouse.executemany(f"insert into {model.relation} values ({marks})", values)


def _is_identifier(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z][a-z0-9_]*", name))


def _check_error(failures: list[CheckFailure]) -> DataCheckError:
    details = " ".join(f.describe() for f in failures)
    return DataCheckError(
        f"{len(failures)} data check(s) failed, so the build was rolled back and the marts of "
        f"the previous build are still in place. {details}"
    )

"""Build the seeds, staging views and marts all or none, then run the data checks.

Everything happens in one DuckDB transaction (DuckDB's DDL is transactional): if a model or
a check fails, the transaction is rolled back and the marts of the previous build stay
exactly as they were.
"""

from __future__ import annotations

import csv
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.errors import ConfigError, DataCheckError, ModelBuildError
from pipelines.warehouse.checks import CheckFailure, run_checks
from pipelines.warehouse.database import DEFAULT_SQL_DIR, RAW_SCHEMA, connect
from pipelines.warehouse.models import SEED_COLUMN_TYPES, Model, discover_models

_LINE = re.compile(r"LINE (\d+):")
RAW_TABLES = ("sendsms", "sendsms_events")


@dataclass(frozen=True)
class BuildResult:
    """What a successful build made."""

    database_path: Path
    models: tuple[Model, ...]
    row_counts: dict[str, int]
    checks_run: int
    seconds: float
    model_seconds: dict[str, float]
    check_seconds: float

    def summary(self) -> str:
        """One line for the terminal or a cron mail."""
        kinds = {k: sum(m.kind == k for m in self.models) for k in ("seed", "view", "table")}
        return (
            f"built {kinds['seed']} seeds, {kinds['view']} staging views and {kinds['table']} "
            f"marts in {self.seconds:.2f} s; {self.checks_run} data checks passed"
        )


def build_models(
    database_path: str | os.PathLike[str],
    sql_dir: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
) -> BuildResult:
    """Build every model under `sql_dir` into the database and run the data checks.

    Args:
        database_path: the DuckDB file holding the `quorum_raw` tables.
        sql_dir: the directory with `seeds/`, `staging/` and `marts/`; the project's `sql/`
            when None.
        threads: DuckDB worker threads; DuckDB's default (all cores) when None.

    Returns:
        The models built, the row count of each mart and the number of checks run.

    Raises:
        ConfigError: no database, no raw tables, or an unreadable model directory or seed.
        ModelBuildError: a model failed; names the model file and the line. Nothing changed.
        DataCheckError: a check found offending rows; names them. Nothing changed.
    """
    started = time.perf_counter()
    path = Path(database_path)
    models = discover_models(Path(sql_dir) if sql_dir is not None else DEFAULT_SQL_DIR)
    connection = connect(path, read_only=False, threads=threads)
    try:
        _require_raw_tables(connection, path)
        connection.execute("begin transaction")
        try:
            for schema in sorted({m.schema for m in models}):
                connection.execute(f"create schema if not exists {schema}")
            model_seconds: dict[str, float] = {}
            for model in models:
                model_started = time.perf_counter()
                _build_one(connection, model)
                model_seconds[model.relation] = time.perf_counter() - model_started
            relations = {m.relation for m in models}
            checks_started = time.perf_counter()
            checks_run, failures = run_checks(connection, relations)
            check_seconds = time.perf_counter() - checks_started
            if failures:
                raise _check_error(failures)
            row_counts = {
                m.relation: _count(connection, m.relation) for m in models if m.kind == "table"
            }
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
    finally:
        connection.close()
    return BuildResult(
        database_path=path,
        models=tuple(models),
        row_counts=row_counts,
        checks_run=checks_run,
        seconds=time.perf_counter() - started,
        model_seconds=model_seconds,
        check_seconds=check_seconds,
    )


def _require_raw_tables(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    present = {
        str(row[0])
        for row in connection.execute(
            "select table_name from information_schema.tables where table_schema = ?",
            [RAW_SCHEMA],
        ).fetchall()
    }
    missing = [t for t in RAW_TABLES if t not in present]
    if missing:
        raise ConfigError(
            f"The database {path} has no {RAW_SCHEMA}.{missing[0]} table, so there is nothing "
            "to model yet. Run `quorum-sms sync` first."
        )


def _count(connection: duckdb.DuckDBPyConnection, relation: str) -> int:
    row = connection.execute(f"select count(*) from {relation}").fetchone()
    return int(row[0]) if row else 0


def _build_one(connection: duckdb.DuckDBPyConnection, model: Model) -> None:
    if model.kind == "seed":
        _load_seed(connection, model)
        return
    body = model.sql.rstrip().rstrip(";").rstrip()
    if not body.strip():
        raise ModelBuildError(f"The model {model.path} is empty; it must hold one select.")
    kind = "view" if model.kind == "view" else "table"
    # The prefix adds no newline, so DuckDB's "LINE n" is the line in the model file.
    statement = f"create or replace {kind} {model.relation} as {body}"
    try:
        connection.execute(statement)
    except duckdb.Error as error:
        raise _model_error(model, error) from error


def _model_error(model: Model, error: duckdb.Error) -> ModelBuildError:
    text = str(error)
    match = _LINE.search(text)
    where = f"{model.path}, line {match.group(1)}" if match else str(model.path)
    first = text.split("\n", 1)[0].strip()
    line_text = ""
    if match:
        lines = model.sql.splitlines()
        number = int(match.group(1))
        if 0 < number <= len(lines):
            line_text = f" (the line reads: {lines[number - 1].strip()!r})"
    return ModelBuildError(
        f"The SQL model {model.relation} failed to build at {where}: {first}{line_text}. "
        "Nothing was changed: the marts of the previous build are still in place. Fix the "
        "model and run `quorum-sms models` again."
    )


def _load_seed(connection: duckdb.DuckDBPyConnection, model: Model) -> None:
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
    connection.execute(f"create or replace table {model.relation} ({columns})")
    if values:
        marks = ", ".join("?" for _ in header)
        connection.executemany(f"insert into {model.relation} values ({marks})", values)


def _is_identifier(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z][a-z0-9_]*", name))


def _check_error(failures: list[CheckFailure]) -> DataCheckError:
    details = " ".join(f.describe() for f in failures)
    return DataCheckError(
        f"{len(failures)} data check(s) failed, so the build was rolled back and the marts of "
        f"the previous build are still in place. {details}"
    )

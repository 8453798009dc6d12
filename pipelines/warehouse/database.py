"""Where the warehouse lives and how this package opens it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb

from pipelines.errors import ConfigError
from pipelines.warehouse.memory import memory_limit_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SQL_DIR = PROJECT_ROOT / "sql"
RAW_SCHEMA = "quorum_raw"
MARTS_SCHEMA = "analytics"


#: Settings every warehouse connection of this process opens with (`memory_limit`,
#: `threads`). The nightly run sets them from [quorum_sms] (`set_connection_defaults`) so the
#: model build and the publish copy stay under the same ceiling as the load; without it a
#: connection may take DuckDB's default, 80 % of RAM, and spills nothing.
_connection_defaults: dict[str, str | int] = {}


def set_connection_defaults(
    *, memory_limit: str | None, threads: int | None, vacuum: bool = True
) -> None:
    """Cap DuckDB's memory and threads for every later `connect` in this process.

    `memory_limit` may be `auto`: each connection then gets the ceiling its file's size calls
    for (`pipelines.warehouse.memory`). `vacuum` as for `allow_vacuum`.
    """
    _connection_defaults.clear()
    if memory_limit:
        _connection_defaults["memory_limit"] = memory_limit
    if threads:
        _connection_defaults["threads"] = threads
    allow_vacuum(vacuum)


def configured_memory_limit() -> str | None:
    """The `duckdb_memory_limit` later connections open with (`set_connection_defaults`)."""
    value = _connection_defaults.get("memory_limit")
    return None if value is None else str(value)


#: Stops a connection's checkpoints merging row groups (DuckDB's vacuum).
NO_VACUUM: dict[str, int] = {"max_vacuum_tasks": 0}


def allow_vacuum(allowed: bool) -> None:
    """Let the checkpoints of every later connection of this process merge row groups, or not.

    DuckDB's checkpoint merges adjacent row groups whose live rows fit in fewer (its vacuum).
    A night deletes the rows it replaces from old row groups and appends the new versions
    as a row group of their own, so nearly every night finds the newest row groups mergeable,
    and a merge rewrites whole row groups to take in a few thousand rows. Without it they
    wait for a run that may merge (`duckdb_compact_every`), which merges them at once.
    """
    if allowed:
        for name in NO_VACUUM:
            _connection_defaults.pop(name, None)
    else:
        _connection_defaults.update(NO_VACUUM)


def vacuum_settings() -> dict[str, int]:
    """What `allow_vacuum` chose, as settings for a connection opened elsewhere (the load's)."""
    return dict(NO_VACUUM) if NO_VACUUM.keys() <= _connection_defaults.keys() else {}


def connect(
    database_path: str | os.PathLike[str],
    *,
    read_only: bool,
    threads: int | None = None,
    light: bool = False,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open an existing warehouse file, with UTC as the session time zone.

    Args:
        database_path: the DuckDB file; it must exist.
        read_only: open without taking the write lock (report, export).
        threads: DuckDB worker threads; DuckDB's default (all cores) when None.
        light: the connection touches a few rows: an `auto` ceiling is the floor
            (`memory.memory_limit_for`).
        memory_limit: DuckDB's ceiling for this connection instead of the defaults' (a
            retry's, after the defaults' ran out).

    Raises:
        ConfigError: the file does not exist or DuckDB cannot open it.
    """
    path = Path(database_path)
    if not path.is_file():
        raise ConfigError(
            f"There is no DuckDB database at {path}. Run `quorum-sms sync` first to load the "
            "raw tables, or point --database (or QUORUM_DATABASE) at the right file."
        )
    try:
        config: dict[str, str | bool | int | float | list[str]] = {
            **_connection_defaults,
            **({"threads": threads} if threads else {}),
        }
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        elif "memory_limit" in config:
            config["memory_limit"] = memory_limit_for(
                str(config["memory_limit"]), path, light=light
            )
        connection = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as error:
        raise ConfigError(
            f"DuckDB cannot open {path}: {error}. If another process (a sync, a BI tool) holds "
            "it open for writing, wait for it to finish and try again."
        ) from error
    # Dates derived at build time (send_date) must not depend on the machine's time zone.
    connection.execute("set TimeZone = 'UTC'")
    return connection


def schema_tables(connection: Any, schema: str) -> list[str]:
    """Names of the base tables of a schema, sorted (a DuckDB or marts_reader connection)."""
    rows = connection.execute(
        "select table_name from information_schema.tables "
        "where table_schema = ? and table_type = 'BASE TABLE' order by table_name",
        [schema],
    ).fetchall()
    return [str(row[0]) for row in rows]


def require_marts(connection: Any, path: Path | str, tables: list[str]) -> None:
    """Raise a ConfigError naming the fix when the marts have not been built yet."""
    present = set(schema_tables(connection, MARTS_SCHEMA))
    missing = [name for name in tables if name not in present]
    if missing:
        raise ConfigError(
            f"The database {path} has no {MARTS_SCHEMA}.{missing[0]} table"
            f"{' (and ' + str(len(missing) - 1) + ' more)' if len(missing) > 1 else ''}: "
            "the SQL models have not been built. Run `quorum-sms models` (or a sync) first."
        )

"""One small interface over the warehouse engines the SQL models build on: DuckDB and PostgreSQL.

A `Warehouse` is an open connection with a dialect name: `execute`, `executemany` and `query`
take SQL with `?` parameter marks on every engine, `transaction()` wraps a block in one
transaction (DDL included: both engines roll it back), and every error it raises is an
`EngineError` whose text has the database password removed.

Open one with `open_warehouse(target)`: a path is a DuckDB file, a string starting with
`postgresql://` is a dlt-style PostgreSQL credentials string
(`postgresql://user:password@host:port/database`).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import duckdb

from pipelines.errors import ConfigError

Dialect = Literal["duckdb", "postgres"]
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_REDACTED = "***"


class EngineError(Exception):
    """A statement failed in the engine. The text never holds the database password.

    Attributes:
        line: the line of the statement the engine blamed, when it said one.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class QueryResult:
    """The column names and rows of a query."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


class Warehouse(ABC):
    """An open connection to one warehouse database.

    Attributes:
        dialect: the engine's sqlglot dialect name, `duckdb` or `postgres`.
        label: where the warehouse is, safe to print (no password).
    """

    dialect: Dialect
    label: str

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement; `?` marks take `params` in order."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        """Run one query and fetch all its rows."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (an open transaction is rolled back)."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around the block: committed if it ends, rolled back if it raises."""
        self.execute("begin")
        try:
            yield
        except BaseException:
            self.execute("rollback")
            raise
        self.execute("commit")

    def table_names(self, schema: str) -> list[str]:
        """Names of the tables and views of a schema, sorted."""
        result = self.query(
            "select table_name from information_schema.tables where table_schema = ? "
            "order by table_name",
            [schema],
        )
        return [str(row[0]) for row in result.rows]

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def is_postgres_target(target: str | os.PathLike[str]) -> bool:
    """Whether a warehouse target is a PostgreSQL credentials string (not a DuckDB path)."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def open_warehouse(
    target: str | os.PathLike[str],
    *,
    read_only: bool = False,
    threads: int | None = None,
    light: bool = False,
    memory_limit: str | None = None,
) -> Warehouse:
    """Open the warehouse a target names.

    Args:
        target: a DuckDB file path (it must exist), or a PostgreSQL credentials string
            `postgresql://user:password@host:port/database`.
        read_only: DuckDB only: open without taking the write lock.
        threads: DuckDB only: worker threads; DuckDB's default (all cores) when None.
        light: DuckDB only: the connection touches a few rows (bookkeeping, a count), so
            an `auto` memory ceiling is the floor, not the file's share.
        memory_limit: DuckDB only: the ceiling instead of the process's default.

    Raises:
        ConfigError: the file is missing, or the database cannot be reached; the text names
            the fix and never the password.
    """
    if is_postgres_target(target):
        return PostgresWarehouse(str(target))
    return DuckDBWarehouse(
        Path(target), read_only=read_only, threads=threads, light=light,
        memory_limit=memory_limit,
    )


class DuckDBWarehouse(Warehouse):
    """A DuckDB file, with UTC as the session time zone."""

    dialect: Dialect = "duckdb"

    def __init__(
        self, path: Path, *, read_only: bool = False, threads: int | None = None,
        light: bool = False, memory_limit: str | None = None,
    ):
        from pipelines.warehouse.database import connect

        self.path = path
        self.label = str(path)
        self.connection = connect(
            path, read_only=read_only, threads=threads, light=light, memory_limit=memory_limit
        )

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement; `?` marks take `params` in order."""
        try:
            self.connection.execute(sql, params)
        except duckdb.Error as error:
            raise _duckdb_error(error) from error

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        try:
            self.connection.executemany(sql, rows)
        except duckdb.Error as error:
            raise _duckdb_error(error) from error

    def query(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        """Run one query and fetch all its rows."""
        try:
            cursor = self.connection.execute(sql, params)
            columns = tuple(str(d[0]) for d in cursor.description or ())
            return QueryResult(columns, [tuple(row) for row in cursor.fetchall()])
        except duckdb.Error as error:
            raise _duckdb_error(error) from error

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


_DUCKDB_LINE = re.compile(r"LINE (\d+):")


def _duckdb_error(error: duckdb.Error) -> EngineError:
    text = str(error)
    match = _DUCKDB_LINE.search(text)
    return EngineError(text.split("\n", 1)[0].strip(), int(match.group(1)) if match else None)


class PostgresWarehouse(Warehouse):
    """A PostgreSQL database reached with psycopg2; the session time zone is UTC.

    The connection runs in autocommit mode, so `transaction()` sends its own `begin`:
    PostgreSQL's DDL is transactional, and a failed build rolls every table back.
    """

    dialect: Dialect = "postgres"

    def __init__(self, credentials: str) -> None:
        import psycopg2

        self._secrets = _secrets_of(credentials)
        self.label = redact_credentials(credentials)
        try:
            parts = urlsplit(credentials)
            if not parts.hostname or not parts.path.strip("/"):
                raise ValueError("the string needs a host and a database name")
            self.connection = psycopg2.connect(
                credentials, options="-c TimeZone=UTC", connect_timeout=15
            )
        except (psycopg2.Error, ValueError) as error:
            reason = self.redact(str(error).strip().splitlines()[0] if str(error) else "")
            raise ConfigError(
                f"Cannot connect to the PostgreSQL warehouse {self.label}: {reason}. Check that "
                "the server is running and reachable, and that the credentials string has the "
                "form postgresql://user:password@host:port/database with a user allowed to "
                "create schemas in that database."
            ) from None
        self.connection.autocommit = True

    def redact(self, text: str) -> str:
        """The text with the password (plain and URL-encoded) replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement; `?` marks take `params` in order."""
        with self._cursor() as cursor:
            cursor.execute(*_pyformat(sql, params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        statement, _ = _pyformat(sql, rows[0] if rows else [])
        with self._cursor() as cursor:
            cursor.executemany(statement, [tuple(row) for row in rows])

    def query(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        """Run one query and fetch all its rows."""
        with self._cursor() as cursor:
            cursor.execute(*_pyformat(sql, params))
            columns = tuple(str(d[0]) for d in cursor.description or ())
            return QueryResult(columns, [tuple(row) for row in cursor.fetchall()])

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back by the server)."""
        self.connection.close()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        import psycopg2

        try:
            with self.connection.cursor() as cursor:
                yield cursor
        except psycopg2.Error as error:
            raise _postgres_error(error, self.redact) from None


def _postgres_error(error: Any, redact: Any) -> EngineError:
    text = str(getattr(error, "pgerror", None) or error)
    first = text.strip().split("\n", 1)[0].removeprefix("ERROR:").strip()
    match = re.search(r"LINE (\d+):", text)
    return EngineError(str(redact(first)), int(match.group(1)) if match else None)


def _pyformat(sql: str, params: Sequence[Any] | None) -> tuple[str, tuple[Any, ...] | None]:
    """psycopg2 takes %s marks: turn `?` into %s (and escape literal %) when there are params."""
    if params is None:
        return sql, None
    return sql.replace("%", "%%").replace("?", "%s"), tuple(params)


def _secrets_of(credentials: str) -> list[str]:
    try:
        password = urlsplit(credentials).password
    except ValueError:
        password = None
    if not password:
        return []
    # the longer form first, so a decoded password inside the encoded one leaves no trace
    return sorted({password, unquote(password)} - {""}, key=len, reverse=True)


def redact_credentials(credentials: str) -> str:
    """A credentials string with its password replaced by *** (for messages and logs)."""
    text = credentials
    for secret in _secrets_of(credentials):
        text = text.replace(f":{secret}@", f":{_REDACTED}@")
    # a string urlsplit cannot read: drop everything between the scheme and the host
    return re.sub(r"(://[^:/@]*:)[^@]*@", rf"\g<1>{_REDACTED}@", text)

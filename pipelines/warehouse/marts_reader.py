"""Read the `analytics` marts on either engine with the report's DuckDB SQL.

The report, the HTML page and the export are written against a DuckDB connection
(`execute(sql, params).fetchall()`). `open_marts` returns that connection for a DuckDB file;
for a PostgreSQL credentials string it returns `PostgresMarts`, which compiles each query
with sqlglot (as the models are) and runs it through `engine.PostgresWarehouse`, so one
report module serves both engines.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sqlglot
from sqlglot import exp

from pipelines.errors import ConfigError
from pipelines.warehouse.compiler import SOURCE_DIALECT
from pipelines.warehouse.database import connect
from pipelines.warehouse.engine import (
    EngineError,
    PostgresWarehouse,
    QueryResult,
    is_postgres_target,
)


class MartCursor(Protocol):
    """The part of a DuckDB result the readers use."""

    @property
    def description(self) -> Any:
        """Column descriptions; the name first in each."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """Every remaining row."""

    def fetchnumpy(self) -> dict[str, Any]:
        """Every remaining row, one array per column."""


class MartConnection(Protocol):
    """The part of a DuckDB connection the readers use."""

    def execute(self, sql: str, params: Sequence[Any] | None = ..., /) -> Any:
        """Run a query in DuckDB's SQL with `?` marks."""

    def close(self) -> None:
        """Close the connection."""


class _Rows:
    """A fetched result in the shape of a DuckDB cursor."""

    def __init__(self, result: QueryResult) -> None:
        self.description = [(name,) for name in result.columns]
        self._rows = list(result.rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        rows = self.fetchall()
        return {
            str(d[0]): np.array([row[i] for row in rows], dtype=object if not rows else None)
            for i, d in enumerate(self.description)
        }


class PostgresMarts:
    """The marts of a PostgreSQL warehouse, queried with the report's DuckDB SQL."""

    def __init__(self, credentials: str) -> None:
        self.warehouse = PostgresWarehouse(credentials)
        self.label = self.warehouse.label

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Rows:
        """Compile the query for PostgreSQL, run it, fetch its rows.

        Raises:
            ConfigError: the query failed (the text never holds the password).
        """
        try:
            return _Rows(self.warehouse.query(postgres_sql(sql), params))
        except EngineError as error:
            raise ConfigError(
                f"Reading the marts of {self.label} failed: {error}. Rebuild them with "
                "`quorum-sms models --destination postgres` and try again."
            ) from None

    def close(self) -> None:
        """Close the connection."""
        self.warehouse.close()


def postgres_sql(sql: str) -> str:
    """DuckDB SQL with `?` marks -> PostgreSQL SQL with `?` marks (engine.py maps them)."""
    tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    # sqlglot would write psycopg2's %s; engine.py wants `?` and escapes literal % itself
    tree = tree.transform(
        lambda node: exp.Var(this="?") if isinstance(node, exp.Placeholder) else node
    )
    return tree.sql(dialect="postgres")


def open_marts(target: str | os.PathLike[str]) -> MartConnection:
    """A read-only connection to the marts of a DuckDB file or a PostgreSQL database.

    Raises:
        ConfigError: the DuckDB file is missing, or PostgreSQL cannot be reached.
    """
    if is_postgres_target(target):
        return PostgresMarts(str(target))
    return connect(Path(target), read_only=True)


def target_name(target: str | os.PathLike[str]) -> str:
    """The target, safe to print."""
    from pipelines.warehouse.engine import redact_credentials

    return redact_credentials(str(target)) if is_postgres_target(target) else str(target)

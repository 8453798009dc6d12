"""Shared helpers of the ops tests: run the CLI in-process, read the run history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `quorum-sms ARGV` in-process; return the exit code, stdout and stderr.

    stderr comes with its whitespace collapsed: error paragraphs are wrapped for a terminal.
    """
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def history(database: Path) -> list[dict[str, Any]]:
    """Every row of quorum_ops.sync_runs, oldest first."""
    with duckdb.connect(str(database), read_only=True) as connection:
        cursor = connection.execute("select * from quorum_ops.sync_runs order by started_at")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only query."""
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql).fetchall()

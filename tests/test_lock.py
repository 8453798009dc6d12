"""The database lock is taken once: a second acquisition waits like another run would."""

from __future__ import annotations

import pytest

from pipelines.errors import BusyError
from pipelines.lock import database_lock


def test_the_lock_is_not_reentrant_and_is_released(tmp_path):
    database = tmp_path / "w.duckdb"
    with (
        database_lock(database, 0),
        pytest.raises(BusyError, match="Another quorum-sms run"),
        database_lock(database, 0),
    ):
        pass
    with database_lock(database, 0):  # released after the first holder left
        pass

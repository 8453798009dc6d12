"""The per-database run lock: one writer of a warehouse at a time.

Taken once per command that writes the warehouse (the nightly run, `models`, `reconcile`),
by the top of that command's call path, never again below it. A file beside the database,
locked with `flock`, so the lock is released when the process dies, however it dies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import filelock

from pipelines.errors import BusyError


def lock_path_for(database: Path) -> Path:
    """The lock file of a database: `<database>.lock`, beside it."""
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def database_lock(database: Path, wait_seconds: float) -> Iterator[None]:
    """Hold the database's run lock; raise BusyError when another run keeps it.

    Not re-entrant: a second acquisition, even in the same process, waits like any other
    run, so a call path that took it twice would fail loudly rather than work by accident.

    Raises:
        BusyError: another run held the lock for `wait_seconds`.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    lock_path = lock_path_for(database)
    lock = filelock.FileLock(str(lock_path), thread_local=False)
    try:
        lock.acquire(timeout=wait_seconds)
    except filelock.Timeout:
        raise BusyError(
            f"Another quorum-sms run is using {database} (it holds {lock_path}); this run waited "
            f"{wait_seconds:g} s and stopped without changing anything. Runs of one database "
            "never overlap: if a run is still going, let it finish; the lock is released as "
            "soon as that process ends."
        ) from None
    try:
        yield
    finally:
        lock.release()

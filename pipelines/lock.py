"""The per-warehouse run lock: one writer of a warehouse at a time.

Taken once per command that writes the warehouse (the nightly run, `models`, `reconcile`),
by the top of that command's call path, never again below it, through `warehouse_lock`. For
a DuckDB file: a file beside the database, locked with `flock`, released when the process
dies, however it dies. For PostgreSQL: a session advisory lock in the database itself, so
that hosts sharing one warehouse exclude each other too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from pipelines.dbfile import prepare_location
from pipelines.errors import BusyError, ConfigError


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
        ConfigError: the database's folder or lock file cannot be created (nothing changed).
    """
    prepare_location(database)
    lock_path = lock_path_for(database)
    # owner-only whatever the umask: the lock sits beside personal data
    lock = filelock.FileLock(str(lock_path), thread_local=False, mode=0o600)
    try:
        lock.acquire(timeout=wait_seconds)
    except filelock.Timeout:
        raise BusyError(
            f"Another quorum-sms run is using {database} (it holds {lock_path}); this run waited "
            f"{wait_seconds:g} s and stopped without changing anything. Runs of one database "
            "never overlap: if a run is still going, let it finish; the lock is released as "
            "soon as that process ends."
        ) from None
    except OSError as error:  # after Timeout, which is an OSError too
        raise ConfigError(
            f"The lock file {lock_path} cannot be created ({error.strerror}); the warehouse was "
            "not touched. Fix the folder's permissions, or point --database or QUORUM_DATABASE at "
            "a writable place."
        ) from None
    try:
        yield
    finally:
        lock.release()


def lock_is_held(database: Path) -> bool:
    """Whether a run holds the database's lock now; creates and changes nothing.

    `flock` on a descriptor opened read-only is allowed and leaves the file as it is.
    """
    try:
        descriptor = os.open(lock_path_for(database), os.O_RDONLY)
    except OSError:
        return False  # no lock file: no run has ever held it, or it cannot be read
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)


#: The advisory-lock key space of this program; the dataset name completes the key.
_ADVISORY_NAMESPACE = "quorum-sms run lock"
_POLL_SECONDS = 0.2


def advisory_key(dataset: str) -> int:
    """The 64-bit advisory-lock key of a dataset: stable across hosts and Python versions."""
    digest = hashlib.blake2b(f"{_ADVISORY_NAMESPACE}:{dataset}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


@contextlib.contextmanager
def advisory_lock(credentials: str, dataset: str, wait_seconds: float) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock for the whole block.

    The lock lives in the database, so two hosts sharing one warehouse never run at once; it
    is held by a dedicated connection and released by the server when that connection ends,
    however the process ends.

    Raises:
        BusyError: another session held the lock for `wait_seconds`.
        ConfigError: the database cannot be reached (the text never holds the password).
    """
    from pipelines.warehouse.engine import PostgresWarehouse

    key = advisory_key(dataset)
    holder = PostgresWarehouse(credentials)
    try:
        deadline = time.monotonic() + wait_seconds
        while not holder.query("select pg_try_advisory_lock(?)", [key]).rows[0][0]:
            if time.monotonic() >= deadline:
                raise BusyError(
                    f"Another quorum-sms run is using the PostgreSQL warehouse {holder.label} "
                    f"(it holds advisory lock {key} of dataset {dataset}); this run waited "
                    f"{wait_seconds:g} s and stopped without changing anything. Runs of one "
                    "warehouse never overlap, from any host: if a run is still going, let it "
                    "finish; the lock is released as soon as its connection ends."
                )
            time.sleep(_POLL_SECONDS)  # polling pace only; the lock state is what we wait on
        yield
    finally:
        holder.close()  # ends the session, which releases the lock


def warehouse_lock(
    target: str | Path, dataset: str, wait_seconds: float
) -> contextlib.AbstractContextManager[None]:
    """The run lock of a warehouse target: advisory lock for PostgreSQL, else the file lock.

    Args:
        target: the DuckDB file, or a PostgreSQL credentials string (`pipelines.target`).
        dataset: the raw dataset name; it keys the advisory lock.
        wait_seconds: how long to wait for another run.
    """
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        return advisory_lock(target, dataset, wait_seconds)
    return database_lock(Path(target), wait_seconds)

"""The per-database run lock: one writer of a warehouse at a time.

Taken once per command that writes the warehouse (the nightly run, `models`, `reconcile`),
by the top of that command's call path, never again below it. A file beside the database,
locked with `flock`, so the lock is released when the process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
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

"""Owner-only files: the warehouse, its lock and dlt's working folder hold personal data.

Two layers, because either alone leaves a gap: the process umask (`owner_only_umask`) makes
everything DuckDB, dlt and we create owner-only from the start, whatever the umask of the
shell, cron or systemd; `restrict` fixes what an earlier version or another tool left
readable by others.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

#: Group and others get nothing: files 0600, folders 0700.
OWNER_ONLY_UMASK = 0o077
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def set_owner_only_umask() -> int:
    """Add group and others to the process umask for good; return the previous umask."""
    previous = os.umask(OWNER_ONLY_UMASK)
    os.umask(previous | OWNER_ONLY_UMASK)
    return previous


@contextlib.contextmanager
def owner_only_umask() -> Iterator[None]:
    """Within the block, everything this process creates is owner-only; then as before.

    The umask is per process: entry points (`cli.main`, the orchestrator's runs) use this,
    library code below them does not need to.
    """
    previous = set_owner_only_umask()
    try:
        yield
    finally:
        os.umask(previous)


def database_companions(database: Path) -> list[Path]:
    """The files and folders that belong to a DuckDB warehouse, beside it."""
    names = (".wal", ".lock", ".dlt", ".tmp")
    return [database, *(database.with_name(database.name + suffix) for suffix in names)]


def _chmod(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.lstat().st_mode) != mode:
            path.chmod(mode)
    except FileNotFoundError:
        pass  # removed meanwhile (DuckDB's WAL after a checkpoint)


def restrict(database: Path) -> None:
    """Make the warehouse and everything beside it that belongs to it owner-only.

    Symbolic links are neither followed nor changed.
    """
    for top in database_companions(database):
        if top.is_symlink() or not top.exists():
            continue
        if not top.is_dir():
            _chmod(top, FILE_MODE)
            continue
        _chmod(top, FOLDER_MODE)
        for root, folders, files in os.walk(top):
            for name in folders:
                path = Path(root, name)
                if not path.is_symlink():
                    _chmod(path, FOLDER_MODE)
            for name in files:
                path = Path(root, name)
                if not path.is_symlink():
                    _chmod(path, FILE_MODE)

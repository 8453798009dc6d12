"""Is a path a usable DuckDB warehouse? Checks that write nothing, and a careful first write.

Every command resolves its database path through `pipelines.config.resolve_database`, which
calls `check_database_file`: a path that holds something other than a DuckDB database, or a
DuckDB file DuckDB cannot open, is a configuration error before any lock, folder or dlt
working folder is created beside it. Commands that write call `prepare_location` first, so a
folder that cannot be created or written is a clear error too, and leaves no half-made
folders behind.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import duckdb

from pipelines.errors import ConfigError

#: A DuckDB file carries these bytes at offset 8 of its first block (its main header).
DUCKDB_MAGIC = b"DUCK"
MAGIC_OFFSET = 8
#: Words in DuckDB's error when another process (or this one, read-write) holds the file:
#: not a defect of the file.
_LOCK_CONFLICT_WORDS = ("Could not set lock", "Conflicting lock", "different configuration")


def _first_bytes(path: Path, count: int) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(count)
    except OSError as error:
        raise ConfigError(
            f"The database {path} cannot be read ({error.strerror}); give this user read and "
            "write access to it, or point --database / QUORUM_DATABASE at another file."
        ) from None


def check_database_file(path: Path, *, try_open: bool = True) -> None:
    """Refuse a path that exists but is no usable DuckDB database; write nothing.

    A missing file is fine (the first sync creates it), and so is an empty one.

    Args:
        path: the resolved database path.
        try_open: also open the file read-only, which finds a corrupted header.

    Raises:
        ConfigError: a directory or special file, a file of another kind, an unreadable
            file, or a DuckDB file that DuckDB reports as corrupt.
    """
    if not os.path.lexists(path):
        return
    mode = path.stat().st_mode if path.exists() else 0
    if stat.S_ISDIR(mode):
        raise ConfigError(
            f"The database path {path} is a directory; give a file path such as "
            f"{path / 'quorum.duckdb'} with --database or QUORUM_DATABASE."
        )
    if not stat.S_ISREG(mode):
        raise ConfigError(
            f"The database path {path} is not a regular file (a broken link, a device or a "
            "pipe); point --database or QUORUM_DATABASE at a DuckDB file or a new file name."
        )
    header = _first_bytes(path, MAGIC_OFFSET + len(DUCKDB_MAGIC))
    if header and header[MAGIC_OFFSET:] != DUCKDB_MAGIC:
        raise ConfigError(
            f"The database path {path} holds a file that is not a DuckDB database, so nothing "
            "was read or written. Point --database or QUORUM_DATABASE at the warehouse file "
            "(or a new file name); quorum-sms never overwrites a file it did not create."
        )
    if header and try_open:
        _check_opens(path)


def _check_opens(path: Path) -> None:
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.Error as error:
        text = " ".join(str(error).split())
        if any(words in text for words in _LOCK_CONFLICT_WORDS):
            return  # a running sync or a BI tool holds it: the file itself is fine
        raise ConfigError(
            f"The database {path} is a DuckDB file that DuckDB cannot open ({text[:300]}); it "
            "is damaged, so nothing was read or written. Restore it from a backup, or move it "
            "aside and run `quorum-sms sync --full-refresh` to rebuild the warehouse from the "
            "API."
        ) from None


def _nearest_existing(path: Path) -> Path:
    current = path
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def location_problem(database: Path) -> str | None:
    """Why the database's folder could not be created or written, or None; writes nothing.

    Root passes every permission test, so a read-only mount is checked as well.
    """
    folder = database.parent
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return f"{existing} is not a folder, so {folder} cannot be created"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"this user may not write in {existing}"
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return f"{existing} is on a read-only file system"
    except OSError as error:
        return f"{existing} cannot be inspected ({error.strerror})"
    return None


def _location_error(database: Path, reason: str) -> ConfigError:
    return ConfigError(
        f"The database {database} cannot be written: {reason}. Nothing was changed. Fix the "
        "folder's permissions, or point --database or QUORUM_DATABASE at a writable place."
    )


def prepare_location(database: Path) -> None:
    """Create the database's folder (owner-only) if needed, or raise; undo a partial mkdir.

    Raises:
        ConfigError: the folder cannot be created or written.
    """
    problem = location_problem(database)
    if problem:
        raise _location_error(database, problem)
    created: list[Path] = []
    folder = database.parent
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        for part in reversed(missing):
            part.mkdir(mode=0o700)
            created.append(part)
    except OSError as error:
        for part in reversed(created):
            part.rmdir()
        raise _location_error(database, error.strerror or type(error).__name__) from None

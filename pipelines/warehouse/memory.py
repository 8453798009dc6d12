"""DuckDB's memory ceiling for one connection: a fixed size, or `auto`, sized by the warehouse.

Most of the ceiling is DuckDB's cache of table blocks: DuckDB fills whatever it is given, so
the ceiling is also the run's memory. Two steps need the room for real, and need more as the
warehouse grows: deleting a night's old event rows (DuckDB keeps ~14 KB of delete markers for
every 2,048-row vector it deletes from, until the next checkpoint; 160-192MB at 10M records)
and a full model build (`fct_sms_message`). At 1M records both pass at 64MB; at 10M the
deletes fail at 128MB, and the full build failed at 128MB on one day and passed on the next
(96MB failed it), so 256MB is kept there.

`auto` gives a sixth of the warehouse file's size (`FILE_SHARE`), at least `SMALL_LIMIT` and at
most `LARGE_LIMIT`, decided each time a connection opens, so a first sync's model build sees
the file the sync grew (its loads are sized otherwise: below). The share follows what the
deletes need: their markers grow with the events table, which grows with the file. It gives at
least the ceiling measured enough at each size: 64MB at 1M records (0.28 GiB), 139MB at 3.5M
(0.78 GiB; 128MB passed), 256MB at 10M (3 GiB). A window's load or a model build that still
runs out of memory is retried at a larger ceiling (`raised_limit`), so a step that outgrew its
share does not fail the night; the publish is not retried.

The file's share is what the worst night needs: one whose changed records lie in every vector
of the raw tables. A night that changes mostly recent texts reaches far fewer: its deletes'
markers follow the vectors its records' rows lie in, not the history (10,000 records of a 10M
warehouse reach 10,937 vectors of `sendsms` and `sendsms_events` when drawn uniformly, 3,066
when 90 % are from the last 3 days). So a nightly load, and an incremental model build, count
the vectors the night's records reach before they begin (`night_limit`), and take the floor
plus `MARKER_BYTES_PER_VECTOR` for each, never more than the file's share.

A load into a warehouse that held no records when the run began (a first sync, or
`--full-refresh`) has no history to delete from: its merges find only the records the same run
loaded before and changed since. What such a load needs follows its window, not the file: dlt's
merges sort the window's staged rows to keep one version of each key. `load_limit` gives it
`LOAD_BYTES_PER_RECORD` per record of the window, at least the floor: 64MB for a window of
`records_per_load` (250,000; windows hold equal counts), more where that setting is raised.
Measured on a 10M first sync: at a fixed 64MB a 490,631-record window (from when windows had
equal spans of time) ran out of memory in its merge, while windows of ~236,000 records loaded
the last 2.6M records at 64MB.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

AUTO = "auto"
#: DuckDB's own words when a statement needed more than the ceiling (`Out of Memory Error:
#: failed to pin ...`).
DUCKDB_OUT_OF_MEMORY_WORDS = "Out of Memory"
#: `auto`'s floor: a first sync's loads, warehouses up to ~1.35M records (measured enough at
#: 1M), and connections that touch a few rows whatever the size. Those need the ceiling too:
#: the checkpoint when a connection that wrote closes also merges the row groups the last
#: load's deletes thinned, and fills whatever ceiling it gets (the run history's close after a
#: 10M first sync: +230 MB at the file's 256MB, twelfth pass).
SMALL_LIMIT = "64MB"
#: `auto`'s cap, reached from a 1.5 GB file (~5M records); measured enough at 10M.
LARGE_LIMIT = "256MB"
#: What a window's load into an empty warehouse needs per record of the window: 250,000
#: records' merges passed at 64MB and failed at 48MB (the records' dedup sort: tenth pass).
LOAD_BYTES_PER_RECORD = 256
#: `auto` gives the warehouse file's size divided by this. A warehouse with its marts takes
#: 240-300 bytes per record (0.28 GiB at 1M records, 0.78 GiB at 3.5M, 3 GiB at 10M), so a
#: sixth is 40-50 bytes per record: over twice the ~19 bytes per record that deleting old
#: event rows from every vector of the events table takes at worst (2.7 event rows per record,
#: ~14 KB per 2,048-row vector, measured on DuckDB 2.0).
FILE_SHARE = 6

#: DuckDB's rows per vector: a delete keeps markers for the whole vector it reaches.
VECTOR_ROWS = 2048
#: What a vector a delete reaches holds until the next checkpoint (a transaction id for each of
#: its 2,048 rows: 16 KB), with a quarter more for the rest of the merge. Measured at 10M
#: records: a night reaching 3,066 vectors failed at 64MB and passed at 128MB; one reaching
#: 10,937 failed at 128MB and passed at 256MB; a night of only recent records passed at 64MB.
MARKER_BYTES_PER_VECTOR = 20_480

#: The smallest fixed ceiling taken: below a few MB DuckDB cannot run the run history's first
#: query (0MB failed there), and a run must fail where its message names the setting.
MINIMUM_BYTES = 8_000_000

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*$", re.IGNORECASE)


def is_auto(setting: str | None) -> bool:
    """Whether the setting asks for the ceiling sized by the warehouse."""
    return setting is not None and setting.strip().lower() == AUTO


def setting_problem(setting: str) -> str | None:
    """What is wrong with a `duckdb_memory_limit` value, or None when it can be used."""
    if is_auto(setting):
        return None
    if _parse(setting) is None:
        return "auto or a size such as 256MB or 1GB"
    if size_bytes(setting) < MINIMUM_BYTES:
        return "auto or a size of at least 8MB"
    return None


def memory_limit_for(
    setting: str, database: str | os.PathLike[str], *, light: bool = False
) -> str:
    """The ceiling a connection to `database` opens with.

    Args:
        setting: `duckdb_memory_limit` as configured: `auto` or a DuckDB size (`"256MB"`).
        database: the DuckDB file to open (it may not exist yet: a first sync).
        light: the connection reads or writes a few rows (the run history, a count): under
            `auto` it gets the floor, not the file's share (see `SMALL_LIMIT`).
    """
    if not is_auto(setting):
        return setting
    if light:
        return SMALL_LIMIT
    try:
        size = Path(database).stat().st_size
    except OSError:
        size = 0
    return _bounded(size // FILE_SHARE)


def load_limit(
    setting: str, database: str | os.PathLike[str], *, fills_empty: bool, window_records: int
) -> str:
    """The ceiling a window's load opens with.

    Args:
        setting: `duckdb_memory_limit` as configured: `auto` or a DuckDB size.
        database: the DuckDB file the load writes to.
        fills_empty: whether the warehouse held no records when the run began, so the load's
            deletes reach only rows this run loaded (see the module's docstring).
        window_records: the records the window's load merges.
    """
    if not (is_auto(setting) and fills_empty):
        return memory_limit_for(setting, database)
    return _bounded(window_records * LOAD_BYTES_PER_RECORD)


def night_limit(setting: str, database: str | os.PathLike[str], vectors: int) -> str:
    """The ceiling for a step whose deletes reach `vectors` vectors of the warehouse's tables.

    The floor plus `MARKER_BYTES_PER_VECTOR` for each vector, at most what `memory_limit_for`
    gives the file (the worst night's ceiling). A fixed setting is returned as it is.

    Args:
        setting: `duckdb_memory_limit` as configured: `auto` or a DuckDB size.
        database: the DuckDB file the step writes to.
        vectors: the 2,048-row vectors holding the rows the step deletes
            (`vectors.vectors_holding_sql`).
    """
    if not is_auto(setting):
        return setting
    share = size_bytes(memory_limit_for(setting, database))
    wanted = size_bytes(SMALL_LIMIT) + vectors * MARKER_BYTES_PER_VECTOR
    return _bounded(min(wanted, share))


def _bounded(wanted: int) -> str:
    """`wanted` bytes kept between `auto`'s floor and cap, as a DuckDB size."""
    share = min(max(wanted, size_bytes(SMALL_LIMIT)), size_bytes(LARGE_LIMIT))
    # whole decimal megabytes, as the fixed values read; DuckDB reads MB as 1000 * 1000
    return f"{share // 1_000_000}MB"


def raised_limit(limit: str) -> str:
    """The ceiling a retry after running out of memory at `limit` gets: twice `limit`, and at
    least LARGE_LIMIT."""
    found = _parse(limit)
    number, unit = found if found is not None else (0.0, "MB")
    doubled = f"{2 * number:g}{unit}"
    return doubled if size_bytes(doubled) > size_bytes(LARGE_LIMIT) else LARGE_LIMIT


def size_bytes(limit: str) -> int:
    """A DuckDB size in bytes, read as DuckDB reads it: `MB` in 1000s, `MiB` in 1024s; 0 for
    a value that is no size."""
    found = _parse(limit)
    if found is None:
        return 0
    number, unit = found
    base = 1024 if unit.lower().endswith("ib") else 1000
    return int(number * base ** ("KMGT".index(unit[0].upper()) + 1))


def _parse(limit: str) -> tuple[float, str] | None:
    found = _SIZE.match(limit)
    return None if found is None else (float(found.group(1)), found.group(2))

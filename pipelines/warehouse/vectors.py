"""How many of DuckDB's 2,048-row vectors hold a night's records: what its deletes will cost.

DuckDB keeps delete markers for every vector a delete reaches (16 KB each) until the next
checkpoint, and cannot spill them (`memory.py`). A night's load deletes the old versions of
its records from `sendsms` and their events from `sendsms_events`, and an incremental model
build deletes their rows from the marts, which are stored in the raw tables' key order. So
the vectors of the two raw tables holding the night's records say how much memory the night
needs, whatever the size of the history: `memory.night_limit` turns the count into a ceiling.

`rowid // VECTOR_ROWS` numbers a row's vector: row groups start at multiples of 122,880 rows
(60 vectors), and rows keep their ids when others are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.warehouse.database import RAW_SCHEMA
from pipelines.warehouse.memory import VECTOR_ROWS

#: The raw tables a night's load deletes from, and the column naming each row's record.
RAW_RECORD_COLUMNS = (
    (f"{RAW_SCHEMA}.sendsms", "id"),
    (f"{RAW_SCHEMA}.sendsms_events", "sendsms_id"),
)


def vectors_holding_sql(
    ids: str,
    id_column: str,
    tables: Sequence[tuple[str, str]] = RAW_RECORD_COLUMNS,
) -> str:
    """A DuckDB query of one row and column: the vectors of `tables` holding the records
    whose ids the relation `ids` lists in `id_column`.

    Args:
        ids: a table name or a table function (`read_parquet([...])`) listing record ids.
        id_column: the column of `ids` holding them.
        tables: (qualified table, its column naming the record) pairs; the raw tables a
            night's load deletes from by default.
    """
    counts = [
        f"(select count(distinct rowid // {VECTOR_ROWS}) from {table} "
        f"where {column} in (select {id_column} from {ids}))"
        for table, column in tables
    ]
    return "select " + (" + ".join(counts) if counts else "0")


def parquet_ids(paths: Sequence[str]) -> str:
    """The table function reading the record ids of a load package's `sendsms` files."""
    quoted = ", ".join("'" + path.replace("'", "''") + "'" for path in paths)
    return f"read_parquet([{quoted}])"

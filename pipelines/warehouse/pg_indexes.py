"""PostgreSQL indexes on the raw tables and the model tables, so a nightly follows the night.

dlt creates no index for a `primary_key` hint (only `unique` hints get a UNIQUE constraint),
and `create table ... as` gives a model table none, so on PostgreSQL every lookup of the
night's few thousand ids would be a sequential scan of the whole history: dlt's merge
deletes, the cleanup of superseded event rows, the incremental build's change detection and
its per-key deletes. The indexes here make those cost what the night costs.

DuckDB gets none: its zone maps already prune the row groups these lookups skip, and ART
indexes would slow its loads and hold memory. Every function is a no-op there.

Everything is idempotent (`create index if not exists`): a table that has its indexes costs
one catalog query, so the sync calls `ensure_raw_indexes` after every load (dlt creates the
tables in the first load and recreates them on `--full-refresh`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipelines.warehouse.database import RAW_SCHEMA
from pipelines.warehouse.engine import Warehouse
from pipelines.warehouse.models import Model

#: PostgreSQL truncates identifiers longer than this; a longer name is shortened with a hash.
_MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class RawIndex:
    """One index on a raw table, and the statements it exists for."""

    table: str
    name: str
    columns: str
    where: str = ""
    why: str = ""

    @property
    def requires(self) -> set[str]:
        """The table columns it is built on (its columns and its predicate's column)."""
        needed = {c.strip() for c in self.columns.split(",")}
        return needed | ({self.where.split()[0]} if self.where else set())

    def ddl(self, schema: str) -> str:
        """The idempotent `create index` statement."""
        predicate = f" where {self.where}" if self.where else ""
        return (
            f"create index if not exists {self.name} on {schema}.{self.table} "
            f"({self.columns}){predicate}"
        )


RAW_INDEXES = (
    RawIndex(
        "sendsms", "sendsms__id", "id",
        why="dlt's merge delete (`where exists (... d.id = s.id)`) and the superseded-events "
        "cleanup join tonight's staging rows to the history by id; the incremental build "
        "reads the changed records through stg_quorum__sendsms by id",
    ),
    RawIndex(
        "sendsms", "sendsms___dlt_load_id", "_dlt_load_id",
        why="`_dlt_load_id > <last build>` (the build's high-water mark and changed ids) and "
        "`>= <last load>` (the superseded-events cleanup) pick the night's rows; the index "
        "also gives the planner the true maximum beyond its statistics",
    ),
    RawIndex(
        "sendsms", "sendsms__updated", "updated",
        why="a nightly run reads the stored versions of its lag window's records by "
        "`updated` (`pipelines.sync.stored_versions`), so it does not load them again",
    ),
    RawIndex(
        "sendsms", "sendsms__deleted_id", "id", where="source_deleted_at is not null",
        why="the few records deleted at the source: the build's deleted-id bookkeeping and "
        "change detection read only them (partial, so it stays as small as they are)",
    ),
    RawIndex(
        "sendsms_events", "sendsms_events__sendsms_id_event_type", "sendsms_id, event_type",
        why="dlt merges events on (sendsms_id, event_type); the cleanup and the incremental "
        "build look events up by sendsms_id (the leading column)",
    ),
    RawIndex(
        "sendsms_events", "sendsms_events___dlt_load_id", "_dlt_load_id",
        why="the build's high-water mark and changed ids: events loaded since the last build",
    ),
)


def ensure_raw_indexes(warehouse: Warehouse, schema: str = RAW_SCHEMA) -> list[str]:
    """Create the raw tables' missing indexes on PostgreSQL; return the names created.

    A table that had none of them gets `analyze` afterwards: right after a large first load
    autovacuum may not have sampled it yet, and the planner would misjudge the new indexes.
    Tables that do not exist yet (before the first load), and an index whose column a table
    lacks, are skipped. No-op on DuckDB.
    """
    if warehouse.dialect != "postgres":
        return []
    columns = _columns_by_table(warehouse, schema)
    existing = _index_names(warehouse, schema)
    created: list[str] = []
    analyze: set[str] = set()
    for index in RAW_INDEXES:
        # a table not loaded yet, or written before dlt added `_dlt_load_id`: skipped
        if index.name in existing or not index.requires <= columns.get(index.table, set()):
            continue
        warehouse.execute(index.ddl(schema))
        created.append(index.name)
        if not any(i.name in existing for i in RAW_INDEXES if i.table == index.table):
            analyze.add(index.table)
    for table in sorted(analyze):
        warehouse.execute(f"analyze {schema}.{table}")
    return created


def model_index_columns(model: Model) -> list[str]:
    """The columns an incremental build looks a model's rows up by: one index each.

    Its key columns (each grain's key column of a grouping-sets model: the per-key delete is
    an `or` of one `in` per grain, one index per column lets it combine them) and its
    `recompute_together_by` column (the supporters of the night's records).
    """
    key = model.unique_key
    if model.kind != "table" or key is None:
        return []
    columns = list(dict.fromkeys(key.columns))
    if key.together_by and key.together_by not in columns:
        columns.append(key.together_by)
    return columns


def create_model_indexes(warehouse: Warehouse, model: Model) -> list[str]:
    """Index a model table just (re)built whole, then `analyze` it; the index names.

    Called inside the build's transaction, on a new table (a full build creates every table
    anew, so the indexes never exist already). The fresh statistics let the next incremental
    build's planner pick the indexes for its few keys. No-op on DuckDB.
    """
    if warehouse.dialect != "postgres":
        return []
    names = []
    for column in model_index_columns(model):
        name = index_name(model.name, column)
        warehouse.execute(f"create index if not exists {name} on {model.relation} ({column})")
        names.append(name)
    if names:
        warehouse.execute(f"analyze {model.relation}")
    return names


def index_name(table: str, column: str) -> str:
    """`<table>__<column>`, shortened with a hash when PostgreSQL would truncate it."""
    name = f"{table}__{column}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:_MAX_IDENTIFIER - 9]}_{digest}"


def _index_names(warehouse: Warehouse, schema: str) -> set[str]:
    result = warehouse.query("select indexname from pg_indexes where schemaname = ?", [schema])
    return {str(row[0]) for row in result.rows}


def _columns_by_table(warehouse: Warehouse, schema: str) -> dict[str, set[str]]:
    result = warehouse.query(
        "select table_name, column_name from information_schema.columns where table_schema = ?",
        [schema],
    )
    found: dict[str, set[str]] = {}
    for table, column in result.rows:
        found.setdefault(str(table), set()).add(str(column))
    return found

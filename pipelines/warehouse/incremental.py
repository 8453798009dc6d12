"""Incremental model builds: recompute only the keys the night's changes touch.

A build is incremental when the last build's bookkeeping (`quorum_ops.model_builds`) exists,
every model and seed file is unchanged since (same fingerprint), the raw tables carry dlt's
`_dlt_load_id`, every model (seed, view, table) exists and no raw table was recreated since
the last build (`sync --full-refresh` drops the staging views, then dlt the raw tables).
Otherwise, and with `--full-refresh`, the runner rebuilds everything.

What changed since the last build: the records (and events) whose `_dlt_load_id` is above
the last build's high-water mark, plus the records whose `source_deleted_at` went from NULL
to set or back (compared with the ids deleted at the last build,
`quorum_ops.model_build_deleted_ids`). From there, model by model in build order:

* the root model (it reads only staging views; its key must be `sendsms_id`) recomputes the
  changed records and, with `recompute_together_by: supporter_id`, every record of their
  supporters, old and new (a reply depends on the supporter's whole time line); with
  `together_reads`/`together_writes` the supporters' other records are fed from the model's
  own narrow columns instead of raw, and only those whose reply columns move are rewritten;
* any other model with a `unique_key` recomputes the key values found in the changed rows
  (old and new versions) of the models it reads;
* a model with `incremental_strategy: additive(...)` reading one changed table model keeps
  its sums up to date instead: its query runs over that input's added and removed rows only,
  and per key old + added - removed is written (a key whose min or max may be lost is
  recomputed as below);
* a model without a key, or one that reads a model rebuilt whole, is rebuilt whole.

Recomputing keys K of a model: delete its rows of K, then insert the model's query with
every input relation that has the key column replaced by `(select * from input where key in
K)`, keeping only output rows of K. That is exact when a row of key k depends only on input
rows of key k (and on inputs without the key column, read whole): what `unique_key` asserts.
The rows that really changed (old and new versions, `except` both ways) are the next
models' changes; the old versions are read with only the columns the readers name (and the
key), since a change elsewhere moves nothing downstream. The new rows of a mart's keys are
kept for the publisher (`quorum_ops.model_build_rows__<mart>`). Everything runs inside the
runner's one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from pipelines.warehouse.compiler import SOURCE_DIALECT, compile_sql, parse_model
from pipelines.warehouse.database import MARTS_SCHEMA, RAW_SCHEMA
from pipelines.warehouse.engine import EngineError, Warehouse
from pipelines.warehouse.models import CheckFile, Model, UniqueKey

BOOKKEEPING_SCHEMA = "quorum_ops"
BUILDS_TABLE = f"{BOOKKEEPING_SCHEMA}.model_builds"
DELETED_IDS_TABLE = f"{BOOKKEEPING_SCHEMA}.model_build_deleted_ids"
#: How the latest build made each published table; publish.py reads it.
BUILD_TABLES_TABLE = f"{BOOKKEEPING_SCHEMA}.model_build_tables"
#: Bump when the incremental logic changes meaning: the next build is then a full one.
LOGIC_VERSION = "1"
ROOT_KEY = "sendsms_id"
#: The temporary table of the records changed since the last build (`detect_changes`).
CHANGED_RECORDS = "incr_changed"
RAW_TABLES = ("sendsms", "sendsms_events")
LOAD_ID = "_dlt_load_id"


@dataclass(frozen=True)
class BuildState:
    """The bookkeeping row of the last successful build."""

    build_id: int
    fingerprint: str
    high_water: str | None
    checks_fingerprint: str = ""


@dataclass(frozen=True)
class Plan:
    """Whether this build is full or incremental, and why."""

    mode: str
    reason: str
    fingerprint: str
    previous: BuildState | None
    checks_fingerprint: str = ""

    @property
    def checks_changed(self) -> bool:
        """Whether a check file changed since the last build (then every check reads all)."""
        return self.previous is None or self.previous.checks_fingerprint != self.checks_fingerprint


@dataclass
class TableBuild:
    """How one table model was built: whole, or these key columns recomputed.

    `rows_table` (incremental only) holds the model's rows of the recomputed keys after the
    build: the publisher inserts them from there instead of finding them again in the model,
    which at scale is a read of every block of every column (the keys are spread over the
    whole history).
    """

    relation: str
    mode: str
    key_tables: dict[str, str] = field(default_factory=dict)
    rows_table: str | None = None


def fingerprint(models: Iterable[Model]) -> str:
    """One hash over every model and seed file: any edit makes the next build a full one."""
    digest = hashlib.sha256(f"logic {LOGIC_VERSION}\n".encode())
    for model in sorted(models, key=lambda m: m.relation):
        digest.update(f"{model.relation} {model.digest}\n".encode())
    return digest.hexdigest()


def checks_fingerprint(checks: Iterable[CheckFile]) -> str:
    """One hash over every check file: a new or edited check reads every row once."""
    digest = hashlib.sha256()
    for check in sorted(checks, key=lambda c: c.name):
        digest.update(f"{check.name} {hashlib.sha256(check.sql.encode()).hexdigest()}\n".encode())
    return digest.hexdigest()


def plan_build(
    warehouse: Warehouse, models: list[Model], checks: list[CheckFile], *, full_refresh: bool
) -> Plan:
    """Decide between a full and an incremental build (reads only)."""
    plan = _plan(warehouse, models, full_refresh=full_refresh)
    return Plan(plan.mode, plan.reason, plan.fingerprint, plan.previous, checks_fingerprint(checks))


def _plan(warehouse: Warehouse, models: list[Model], *, full_refresh: bool) -> Plan:
    current = fingerprint(models)
    previous = read_state(warehouse)
    if full_refresh:
        return Plan("full", "--full-refresh was asked for", current, previous)
    if previous is None:
        return Plan("full", "no earlier build is recorded", current, previous)
    if previous.fingerprint != current:
        return Plan("full", "a model or seed file changed since the last build", current, previous)
    for table in RAW_TABLES:
        if LOAD_ID not in _columns(warehouse, f"{RAW_SCHEMA}.{table}"):
            return Plan("full", f"{RAW_SCHEMA}.{table} has no {LOAD_ID}", current, previous)
    present: dict[str, list[str]] = {}
    for model in models:
        names = present.setdefault(model.schema, warehouse.table_names(model.schema))
        if model.name in names:
            continue
        if model.kind == "view":
            # an incremental build keeps the views; sync --full-refresh drops the staging
            # views before dlt drops the raw tables they read
            return Plan(
                "full",
                f"the view {model.relation} is missing (sync --full-refresh drops the staging "
                "views with the raw tables)",
                current, previous,
            )
        return Plan("full", f"{model.relation} is missing", current, previous)
    recreated = _recreated_raw_table(warehouse, previous.high_water)
    if recreated is not None:
        return Plan(
            "full",
            f"{recreated} was recreated since the last build (none of its rows is that old: "
            "sync --full-refresh)",
            current, previous,
        )
    return Plan("incremental", "only what changed since the last build", current, previous)


def _recreated_raw_table(warehouse: Warehouse, high_water: str | None) -> str | None:
    """`quorum_raw.sendsms` when it holds no row as old as the last build, else None.

    dlt drops and recreates the raw tables together on `sync --full-refresh`; every row is
    then newer than the last build's mark, and the records it did not load again are gone,
    which only a full build takes out of the models. `sendsms` tells: every record has a row
    there, and only a night that loaded every record again looks the same (then a full build
    costs more, and is just as right). The events table cannot tell: a night that reloads the
    few records with events rewrites them all. Cheap when not recreated: the first old row
    answers.
    """
    if high_water is None:
        return None
    relation = f"{RAW_SCHEMA}.sendsms"
    if _any_row(warehouse, relation, f"{LOAD_ID} <= ?", [high_water]):
        return None
    # written before the column existed: older than any build with a mark
    if _any_row(warehouse, relation, f"{LOAD_ID} is null"):
        return None
    # an empty table too: the records the last build saw are gone
    return relation


def _any_row(
    warehouse: Warehouse, relation: str, condition: str, params: list[object] | None = None
) -> bool:
    return bool(warehouse.query(f"select 1 from {relation} where {condition} limit 1", params).rows)


def read_state(warehouse: Warehouse) -> BuildState | None:
    """The last build's bookkeeping row, or None before the first recorded build."""
    if "model_builds" not in warehouse.table_names(BOOKKEEPING_SCHEMA):
        return None
    result = warehouse.query(
        f"select build_id, fingerprint, load_id_high_water, checks_fingerprint "
        f"from {BUILDS_TABLE} order by build_id desc limit 1"
    )
    if not result.rows:
        return None
    build_id, digest, high_water, checks = result.rows[0]
    return BuildState(
        int(build_id), str(digest), None if high_water is None else str(high_water), str(checks)
    )


def high_water_mark(warehouse: Warehouse, previous: str | None = None) -> str | None:
    """The newest `_dlt_load_id` in the raw tables (None when they have no such column).

    With the previous build's mark only the newer rows are read (their row groups are found
    by their statistics), so the cost follows the changes.
    """
    newer = " where _dlt_load_id > ?" if previous is not None else ""
    tables = [
        table for table in ("sendsms", "sendsms_events")
        if LOAD_ID in _columns(warehouse, f"{RAW_SCHEMA}.{table}")
    ]
    if not tables:
        return None
    parts = [f"select max({LOAD_ID}) as load_id from {RAW_SCHEMA}.{t}{newer}" for t in tables]
    result = warehouse.query(
        f"select max(load_id) from ({' union all '.join(parts)}) as marks",
        [previous] * len(tables) if previous is not None else None,
    )
    value = result.rows[0][0] if result.rows else None
    if value is None:
        return previous
    return str(value)


def record_build(
    warehouse: Warehouse, plan: Plan, high_water: str | None, changed: int | None,
    tables: list[TableBuild],
) -> int:
    """Write the bookkeeping of this build (inside the build's transaction); its build id."""
    warehouse.execute(f"create schema if not exists {BOOKKEEPING_SCHEMA}")
    warehouse.execute(
        f"create table if not exists {BUILDS_TABLE} (build_id bigint, built_at timestamptz, "
        "mode varchar, reason varchar, fingerprint varchar, load_id_high_water varchar, "
        "changed_records bigint, checks_fingerprint varchar)"
    )
    build_id = (plan.previous.build_id if plan.previous else 0) + 1
    warehouse.execute(
        f"insert into {BUILDS_TABLE} values (?, current_timestamp, ?, ?, ?, ?, ?, ?)",
        [build_id, plan.mode, plan.reason, plan.fingerprint, high_water, changed,
         plan.checks_fingerprint],
    )
    warehouse.execute(f"drop table if exists {DELETED_IDS_TABLE}")
    warehouse.execute(
        f"create table {DELETED_IDS_TABLE} as select id from {RAW_SCHEMA}.sendsms "
        "where source_deleted_at is not null"
    )
    _record_tables(warehouse, build_id, tables)
    return build_id


def _record_tables(warehouse: Warehouse, build_id: int, tables: list[TableBuild]) -> None:
    """Keep how each published table was built and its recomputed keys, for the publisher."""
    for name in warehouse.table_names(BOOKKEEPING_SCHEMA):
        if name.startswith(("model_build_keys__", "model_build_rows__")):
            warehouse.execute(f"drop table {BOOKKEEPING_SCHEMA}.{name}")
    warehouse.execute(f"drop table if exists {BUILD_TABLES_TABLE}")
    warehouse.execute(
        f"create table {BUILD_TABLES_TABLE} (build_id bigint, relation varchar, "
        "mode varchar, key_column varchar, key_table varchar, rows_table varchar)"
    )
    for table in tables:
        if not table.relation.startswith(f"{MARTS_SCHEMA}."):
            continue
        if table.mode != "incremental":
            warehouse.execute(
                f"insert into {BUILD_TABLES_TABLE} values (?, ?, 'full', null, null, null)",
                [build_id, table.relation],
            )
            continue
        name = table.relation.split(".", 1)[1]
        rows: str | None = None
        if table.rows_table is not None:
            rows = f"{BOOKKEEPING_SCHEMA}.model_build_rows__{name}"
            warehouse.execute(f"create table {rows} as select * from {table.rows_table}")
        for column, temp in table.key_tables.items():
            kept = f"{BOOKKEEPING_SCHEMA}.model_build_keys__{name}__{column}"
            warehouse.execute(f"create table {kept} as select {column} from {temp}")
            warehouse.execute(
                f"insert into {BUILD_TABLES_TABLE} values (?, ?, 'incremental', ?, ?, ?)",
                [build_id, table.relation, column, kept, rows],
            )


class IncrementalBuild:
    """One incremental build's working state: changed records, key sets, changed rows.

    Every working table is a temporary table of the build's session, dropped at the end.
    """

    def __init__(self, warehouse: Warehouse, models: list[Model], high_water: str | None):
        self.warehouse = warehouse
        self.models = {m.relation: m for m in models}
        self.high_water = high_water or ""
        self.readers = {
            m.relation: [r.relation for r in models if m.relation in r.reads] for m in models
        }
        self.with_changes: set[str] = set()
        self.temporary: list[str] = []
        self.tables: list[TableBuild] = []
        #: relation -> predicate choosing its recomputed keys (for checks scoped to them)
        self.recomputed: dict[str, str] = {}
        #: relation -> rows of the changed records' groups fed from the model's own columns
        self.group_rows: dict[str, int] = {}
        #: relation -> the columns its old rows were read with (the rest NULL)
        self.visible: dict[str, list[str]] = {}

    def detect_changes(self) -> int:
        """Collect the ids of the records changed since the last build; return their count."""
        raw = f"{RAW_SCHEMA}.sendsms"
        self._temporary(
            CHANGED_RECORDS,
            # A row without a load id was written before the column existed; the first build
            # with bookkeeping is a full one, which already covered it, and any later load of
            # that record gives it a load id. So NULL never means "changed since".
            # (separate selects, not `or`: each comparison prunes row groups by their stats)
            f"select id as {ROOT_KEY} from {raw} where {LOAD_ID} > ? "
            f"union select sendsms_id from {RAW_SCHEMA}.sendsms_events where {LOAD_ID} > ? "
            # deleted at the source since, or back again (reconcile changes no load id)
            f"union (select id from {raw} where source_deleted_at is not null "
            f"except select id from {DELETED_IDS_TABLE}) "
            f"union (select id from {DELETED_IDS_TABLE} "
            f"except select id from {raw} where source_deleted_at is not null)",
            [self.high_water, self.high_water],
        )
        return self._count(CHANGED_RECORDS)

    def build(self, model: Model) -> bool:
        """Recompute the model's changed keys; False when it must be rebuilt whole instead."""
        key = model.unique_key
        inputs = [r for r in model.reads if r in self.models]
        tables = [r for r in inputs if self.models[r].kind == "table"]
        if key is None or any(t not in self.with_changes for t in tables):
            self.tables.append(TableBuild(model.relation, "full"))
            return False
        if key.additive is not None and len(tables) == 1:
            key_tables = self._keys_from_inputs(model, key, tables)
            if key_tables is None:
                self.tables.append(TableBuild(model.relation, "full"))
                return False
            rows = self._maintain_additive(model, key, key_tables, tables[0], inputs)
            self.tables.append(TableBuild(model.relation, "incremental", key_tables, rows))
            return True
        if not tables and key.together_reads and key.column == ROOT_KEY:
            together = self._recompute_together(model, key, inputs)
            if together is not None:
                narrow, rows = together
                self.tables.append(TableBuild(model.relation, "incremental", narrow, rows))
                return True
        if tables:
            key_tables = self._keys_from_inputs(model, key, tables)
        else:
            key_tables = self._root_keys(model, key, inputs)
        if key_tables is None:
            self.tables.append(TableBuild(model.relation, "full"))
            return False
        rows = self._recompute(model, key, key_tables, inputs)
        self.tables.append(TableBuild(model.relation, "incremental", key_tables, rows))
        return True

    def drop_temporaries(self) -> None:
        """Drop the build's working tables."""
        for name in reversed(self.temporary):
            self.warehouse.execute(f"drop table if exists {name}")
        self.temporary.clear()

    # -- key sets ---------------------------------------------------------------------------

    def _root_keys(self, model: Model, key: UniqueKey, inputs: list[str]) -> dict[str, str] | None:
        if key.grains or key.column != ROOT_KEY:
            return None
        changed = self._changed_in_view()
        name = f"incr_keys_{model.name}_{ROOT_KEY}"
        if not key.together_by:
            self._temporary(name, f"select {ROOT_KEY} from {CHANGED_RECORDS}")
            return {ROOT_KEY: name}
        group = key.together_by
        sources = [model.relation] + [
            r for r in inputs if group in _columns(self.warehouse, r)
            and ROOT_KEY in _columns(self.warehouse, r)
        ]
        together = " union ".join(
            f"select {group} from {r} where {changed} and {group} is not null" for r in sources
        )
        self._temporary(
            name,
            f"select {ROOT_KEY} from {CHANGED_RECORDS} "
            f"union select {ROOT_KEY} from {model.relation} where {group} in ({together})",
        )
        return {ROOT_KEY: name}

    def _keys_from_inputs(
        self, model: Model, key: UniqueKey, tables: list[str]
    ) -> dict[str, str] | None:
        key_tables: dict[str, str] = {}
        for column in key.columns:
            parts = []
            for table in tables:
                delta = self._delta_name(table)
                if column not in _columns(self.warehouse, delta):
                    return None
                parts.append(f"select {column} from {delta}")
            name = f"incr_keys_{model.name}_{column}"
            self._temporary(name, " union ".join(parts))
            key_tables[column] = name
        return key_tables

    # -- recomputation ----------------------------------------------------------------------

    def _recompute(
        self, model: Model, key: UniqueKey, key_tables: dict[str, str], inputs: list[str]
    ) -> str:
        """Recompute the keys' rows; the temporary table holding their new rows."""
        target = model.relation
        chosen = self._chosen(key, key_tables)
        self.recomputed[target] = chosen
        old = self._old_rows(model, chosen)
        new = self._replace_keys(model, key, key_tables, inputs)
        self._record_delta(model, old, f"select * from {new}")
        return new

    def _chosen(self, key: UniqueKey, key_tables: dict[str, str]) -> str:
        """The predicate choosing the rows of the key tables' keys."""
        nulls = {
            column for column, table in key_tables.items()
            if self._count(f"{table} where {column} is null")
        }
        return _key_predicate(key, key_tables, nulls)

    def _replace_keys(
        self, model: Model, key: UniqueKey, key_tables: dict[str, str], inputs: list[str]
    ) -> str:
        """Delete the rows of the keys and insert them computed from their input rows.

        Returns the temporary table holding the inserted rows (typed as the target's).
        """
        target = model.relation
        nulls = {
            column for column, table in key_tables.items()
            if self._count(f"{table} where {column} is null")
        }
        chosen = _key_predicate(key, key_tables, nulls)
        self.warehouse.execute(f"delete from {target} where {chosen}")
        restrictions: dict[str, str] = {}
        for relation in inputs:
            present = [c for c in key.columns if c in _columns(self.warehouse, relation)]
            if present:
                restrictions[relation] = " or ".join(
                    _member(c, key_tables[c], c in nulls) for c in present
                )
        restricted = restrict_inputs(model.sql, model.path, restrictions)
        compiled = compile_sql(restricted, self.warehouse.dialect, model.path)
        new = self._empty_like(target, f"incr_new_{model.name}")
        self.warehouse.execute(
            f"insert into {new} select * from (\n{compiled}\n) as incr_new where {chosen}"
        )
        self.warehouse.execute(f"insert into {target} select * from {new}")
        return new

    def _record_delta(self, model: Model, old: str, new: str) -> None:
        """Keep the rows that really changed (added and removed versions) for the readers.

        `old` is the table of the recomputed keys' rows before, `new` the query of their rows
        after; both typed as the target's, so the set differences compare like with like.
        """
        target = model.relation
        if not self.readers.get(target):
            return
        visible = self.visible.get(target)
        if visible is not None:
            # the old rows hold only the columns the readers name: compare like with like
            new = f"select {self._narrowed(target, visible)} from ({new}) as incr_rows"
        added, removed = self._added_name(target), self._removed_name(target)
        self._temporary(added, f"{new} except select * from {old}")
        self._temporary(removed, f"select * from {old} except {new}")
        self._temporary(
            self._delta_name(target), f"select * from {added} union all select * from {removed}"
        )
        self.with_changes.add(target)

    def _old_rows(self, model: Model, chosen: str) -> str:
        """The target's rows of the chosen keys before this build, for the readers' delta.

        Only the columns some reader names are read, the others are left NULL (and the new
        rows are compared the same way, `_record_delta`): the keys are scattered over the
        whole history, so every column read costs a pass over all of its blocks. Without
        readers nothing is read. Returns the temporary table's name.
        """
        target = model.relation
        old = f"incr_old_{model.name}"
        visible = self._visible_columns(model) if self.readers.get(target) else []
        if visible is None:
            self._temporary(old, f"select * from {target} where {chosen}")
            return old
        self.visible[target] = visible
        self._empty_like(target, old)
        if visible:
            listed = ", ".join(visible)
            self.warehouse.execute(
                f"insert into {old} ({listed}) select {listed} from {target} where {chosen}"
            )
        return old

    def _visible_columns(self, model: Model) -> list[str] | None:
        """The model's columns its readers name, with its key; None when that is all of them.

        A change in a column no reader names moves nothing downstream. The key columns (and
        `grain`) keep the rows distinct, so the set differences of the delta lose none.
        """
        target = model.relation
        columns = _columns(self.warehouse, target)
        named: set[str] = {"grain"} if model.unique_key and model.unique_key.grains else set()
        if model.unique_key is not None:
            named.update(model.unique_key.columns)
            if model.unique_key.additive is not None:
                named.update(model.unique_key.additive.group)
        for relation in self.readers.get(target, []):
            reader = self.models[relation]
            found = referenced_columns(reader.sql, reader.path, target)
            if found is None:
                return None
            named |= found
        visible = [c for c in columns if c in named]
        return None if len(visible) == len(columns) else visible

    def _narrowed(self, target: str, visible: list[str]) -> str:
        """The select list of the target's columns with the invisible ones a typed NULL."""
        types = _column_types(self.warehouse, target)
        return ", ".join(
            c if c in visible else f"cast(null as {types[c]}) as {c}"
            for c in _columns(self.warehouse, target)
        )

    # -- group columns from the model's own rows -------------------------------------------

    def _recompute_together(
        self, model: Model, key: UniqueKey, inputs: list[str]
    ) -> tuple[dict[str, str], str] | None:
        """Recompute the changed records; refresh only the group columns of their groups.

        The changed records are computed from their input rows. The other rows of their
        groups (a supporter's unchanged records) are fed to the same query from the model's
        own `together_reads` columns (narrow, instead of every input column of the history),
        and only their `together_writes` columns are taken from the result; rows whose
        group columns did not change are left alone. Returns the recomputed keys' table and
        the temporary table of their new rows; None when no input carries the key, the group
        and every `together_reads` column (then the whole group is recomputed).
        """
        target, group = model.relation, key.together_by
        carried = [ROOT_KEY, group, *key.together_reads]
        carriers = [r for r in inputs if set(carried) <= set(_columns(self.warehouse, r))]
        own = _columns(self.warehouse, target)
        if len(carriers) != 1 or not set(carried + list(key.together_writes)) <= set(own):
            return None
        carrier = carriers[0]
        changed = f"{ROOT_KEY} in (select {ROOT_KEY} from {CHANGED_RECORDS})"
        # the changed records' input rows, read once (the scattered, costly read of the raw
        # history), with only the columns the model names
        rows: dict[str, str] = {}
        for relation in inputs:
            columns = _columns(self.warehouse, relation)
            if ROOT_KEY not in columns:
                continue
            named = referenced_columns(model.sql, model.path, relation)
            kept = [c for c in columns if named is None or c in named or c in carried]
            rows[relation] = f"incr_rows_{model.name}_{relation.split('.', 1)[1]}"
            self._temporary(
                rows[relation],
                f"select {', '.join(kept)} from {relation} where {self._changed_in_view()}",
            )
        # the changed records' group and time as the target holds them, read once for both
        # the groups and the changes' times (each read of the target's scattered rows passes
        # over all the blocks of the columns it takes)
        placed = f"incr_placed_{model.name}"
        placing = [group] + ([key.together_within[0]] if key.together_within else [])
        self._temporary(
            placed, f"select {', '.join(dict.fromkeys(placing))} from {target} where {changed}"
        )
        groups, others = f"incr_groups_{model.name}", f"incr_others_{model.name}"
        self._temporary(groups, " union ".join(
            [f"select {group} from {placed} where {group} is not null"] + [
                f"select {group} from {table} where {group} is not null"
                for relation, table in rows.items() if group in _columns(self.warehouse, relation)
            ]
        ))
        near = self._near_changes(model, key, rows, placed) if key.together_within else None
        # the other rows of those groups, read from the target once with everything the
        # steps below need of them (the carried and the written columns): the model's query
        # refers to its inputs several times, and every reference to the target would be
        # another scan of the whole history
        kept_columns = ", ".join(dict.fromkeys([*carried, *key.together_writes]))
        in_groups = f"{group} in (select {group} from {groups}) and not {changed}"
        if near is not None and self.warehouse.dialect == "duckdb":
            # First where those rows are, from the three columns the conditions name, joined
            # with the changes' times (as `exists`, DuckDB groups every row of the groups
            # first); then the kept columns of just those rows. The rows are scattered over
            # the whole history: every column read costs a pass over all of its blocks.
            places = f"incr_places_{model.name}"
            self._temporary(
                places,
                f"select distinct t.rowid as place from {target} as t {near.join('t', 2)} "
                f"where t.{in_groups}",
            )
            self._temporary(
                others,
                f"select {kept_columns} from {target} "
                f"where rowid in (select place from {places})",
            )
        else:
            self._temporary(
                others,
                f"select {kept_columns} from {target} as t where {in_groups}"
                + (f" and {near.predicate('t', 2)}" if near else ""),
            )
        self.group_rows[target] = self._count(others)
        # the other rows as the carrier's rows: the model's own values of the carried
        # columns, NULL for the rest (typed by the union's first branch)
        fed = ", ".join(
            c if c in carried else f"null as {c}" for c in _columns(self.warehouse, rows[carrier])
        )
        queries = {relation: f"select * from {table}" for relation, table in rows.items()}
        queries[carrier] = (
            f"select * from ({queries[carrier]} union all select {fed} from {others}) "
            "as incr_carried"
        )
        computed = f"incr_computed_{model.name}"
        replaced = replace_inputs(model.sql, model.path, queries)
        self._temporary(computed, compile_sql(replaced, self.warehouse.dialect, model.path))

        moved = f"incr_moved_{model.name}"
        differs = " or ".join(
            f"c.{w} is distinct from t.{w}" for w in key.together_writes
        )
        self._temporary(
            moved,
            f"select c.{ROOT_KEY} from {computed} as c inner join {others} as t "
            f"on t.{ROOT_KEY} = c.{ROOT_KEY} where ({differs})"
            # a row fed from farther than one span lacked some of its own neighbours: its
            # result is not trusted, and it cannot have moved anyway
            + (f" and {near.predicate('t', 1)}" if near else ""),
        )
        keys = f"incr_keys_{model.name}_{ROOT_KEY}"
        self._temporary(
            keys, f"select {ROOT_KEY} from {CHANGED_RECORDS} union select {ROOT_KEY} from {moved}"
        )
        chosen = _member(ROOT_KEY, keys, with_null=False)
        self.recomputed[target] = chosen
        old = self._old_rows(model, chosen)
        # a moved row keeps every column but the written ones: read it whole (a night's
        # changes seldom move another record's group columns; then nothing is read)
        moved_rows = f"incr_moved_rows_{model.name}"
        if self._count(moved):
            self._temporary(
                moved_rows,
                f"select * from {target} where {ROOT_KEY} in (select {ROOT_KEY} from {moved})",
            )
        else:
            self._empty_like(target, moved_rows)
        self.warehouse.execute(f"delete from {target} where {chosen}")
        listed = ", ".join(own)
        refreshed = ", ".join(
            f"c.{column}" if column in key.together_writes else f"o.{column}" for column in own
        )
        # the new rows are kept apart before they go in: the readers' delta compares them with
        # the old ones without another scattered read of the whole target
        new = self._empty_like(target, f"incr_new_{model.name}")
        self.warehouse.execute(
            f"insert into {new} ({listed}) select {listed} from {computed} where {changed} "
            f"union all select {refreshed} from {moved_rows} as o inner join {computed} as c "
            f"on c.{ROOT_KEY} = o.{ROOT_KEY}"
        )
        self.warehouse.execute(f"insert into {target} ({listed}) select {listed} from {new}")
        self._record_delta(model, old, f"select * from {new}")
        return {ROOT_KEY: keys}, new

    def _near_changes(
        self, model: Model, key: UniqueKey, rows: dict[str, str], placed: str
    ) -> _Near:
        """The rows of a group near a changed record's old or new time.

        With `-- together_within: c N hours`, a change at time T can only move the group
        columns of rows within N hours of T, and computing a row needs the rows within N
        hours of it: so the rows within 2N hours are fed to the query, and only those within
        N may be rewritten. The changed records' new times come from the query run over
        their own rows alone (the column may be computed, like fct's send_time), the old
        ones from `placed` (their group and time as the target holds them).
        """
        assert key.together_within is not None
        column, hours = key.together_within
        group = key.together_by
        alone = f"incr_alone_{model.name}"
        queries = {relation: f"select * from {table}" for relation, table in rows.items()}
        replaced = replace_inputs(model.sql, model.path, queries)
        self._temporary(alone, compile_sql(replaced, self.warehouse.dialect, model.path))
        times = f"incr_times_{model.name}"
        self._temporary(
            times,
            f"select {group} as near_group, {column} as near_time from {placed} "
            f"where {group} is not null and {column} is not null union "
            f"select {group}, {column} from {alone} "
            f"where {group} is not null and {column} is not null",
        )
        return _Near(times, group, column, hours)

    # -- additive maintenance ---------------------------------------------------------------

    def _maintain_additive(
        self, model: Model, key: UniqueKey, key_tables: dict[str, str], source: str,
        inputs: list[str],
    ) -> str:
        """Add the input's new rows to the model's sums and subtract its old rows.

        The model's query runs twice on the changed rows only: over the source's added
        versions and over its removed versions. Per key, the new row is old + added - removed
        for the sums, the least/greatest of old and added for the min/max columns; a key whose
        removed rows may have held its min or max (and whose added rows do not restore it) is
        recomputed from its input rows. Keys whose row count falls to 0 lose their row.
        Returns the temporary table of the keys' rows after the build.
        """
        additive = key.additive
        assert additive is not None
        target = model.relation
        identity = (["grain"] if key.grains else []) + list(key.columns) + list(additive.group)
        columns = list(_columns(self.warehouse, target))
        extremes = set(additive.minimum) | set(additive.maximum)
        summed = [c for c in columns if c not in identity and c not in extremes]
        chosen = self._chosen(key, key_tables)
        self.recomputed[target] = chosen
        old, plus, minus = (f"incr_{part}_{model.name}" for part in ("old", "plus", "minus"))
        self._temporary(old, f"select * from {target} where {chosen}")
        for name, rows in ((plus, self._added_name(source)), (minus, self._removed_name(source))):
            replaced = replace_inputs(model.sql, model.path, {source: f"select * from {rows}"})
            self._temporary(name, compile_sql(replaced, self.warehouse.dialect, model.path))

        same = " and ".join(f"{{a}}.{c} is not distinct from {{b}}.{c}" for c in identity)
        lost = [
            f"(m.{c} <= o.{c} and (p.{c} is null or p.{c} > o.{c}))" for c in additive.minimum
        ] + [
            f"(m.{c} >= o.{c} and (p.{c} is null or p.{c} < o.{c}))" for c in additive.maximum
        ]
        recompute = f"incr_recompute_{model.name}"
        self._temporary(
            recompute,
            f"select {', '.join(f'm.{c}' for c in identity)} from {minus} as m "
            f"inner join {old} as o on {same.format(a='m', b='o')} "
            f"left join {plus} as p on {same.format(a='m', b='p')} "
            f"where {' or '.join(lost) if lost else 'false'}",
        )

        types = _column_types(self.warehouse, target)

        def part(relation: str, sign: str, keep_extremes: bool) -> str:
            values = identity + [f"{sign}{c}" for c in summed] + [
                c if keep_extremes else f"cast(null as {types[c]})" for c in sorted(extremes)
            ]
            return f"select {', '.join(values)} from {relation}"

        aggregates = identity + [f"cast(sum({c}) as bigint) as {c}" for c in summed] + [
            f"{'min' if c in additive.minimum else 'max'}({c}) as {c}" for c in sorted(extremes)
        ]
        merged = f"incr_merged_{model.name}"
        self._temporary(
            merged,
            f"select {', '.join(aggregates)} from ({part(old, '', True)} union all "
            f"{part(plus, '', True)} union all {part(minus, '-', False)}) as incr_parts "
            f"group by {', '.join(identity)}",
        )
        self.warehouse.execute(f"delete from {target} where {chosen}")
        listed = ", ".join(columns)
        self.warehouse.execute(
            f"insert into {target} ({listed}) select {listed} from {merged} "
            f"where {additive.count} > 0"
        )
        if self._count(recompute):
            lost_keys: dict[str, str] = {}
            for value, column in key.grains or (("", key.column),):
                name = f"incr_lost_{model.name}_{column}"
                where = f" where grain = '{value}'" if key.grains else ""
                self._temporary(name, f"select {column} from {recompute}{where}")
                lost_keys[column] = name
            self._replace_keys(model, key, lost_keys, inputs)
        # the rows of the keys were written in two steps (merged, then the lost ones): read
        # them back (this model's table is small: one row per key)
        final = f"incr_final_{model.name}"
        self._temporary(final, f"select * from {target} where {chosen}")
        self._record_delta(model, old, f"select * from {final}")
        return final

    # -- helpers ----------------------------------------------------------------------------

    def _changed_in_view(self) -> str:
        """The predicate `sendsms_id` is one of the changed records', for reading a view.

        On PostgreSQL as `= any(array(...))`: PostgreSQL plans `in (select ...)` on a staging
        view as a hash join over the whole raw table, but pushes an array comparison down
        through the view to the raw table's index (at 1M records: 3 ms instead of 350 ms).
        Only where an index takes it: as a filter it is a linear search of the array per row.
        """
        keys = f"select {ROOT_KEY} from {CHANGED_RECORDS}"
        if self.warehouse.dialect == "postgres":
            return f"{ROOT_KEY} = any(array({keys}))"
        return f"{ROOT_KEY} in ({keys})"

    def _delta_name(self, relation: str) -> str:
        return f"incr_delta_{relation.split('.', 1)[1]}"

    def _added_name(self, relation: str) -> str:
        return f"incr_added_{relation.split('.', 1)[1]}"

    def _removed_name(self, relation: str) -> str:
        return f"incr_removed_{relation.split('.', 1)[1]}"

    def _empty_like(self, relation: str, name: str) -> str:
        """An empty temporary table with the columns and types of `relation`; its name."""
        self._temporary(name, f"select * from {relation} where false")
        return name

    def _temporary(self, name: str, query: str, params: list[object] | None = None) -> None:
        self.warehouse.execute(f"drop table if exists {name}")
        self.warehouse.execute(f"create temporary table {name} as {query}", params)
        self.temporary.append(name)

    def _count(self, relation: str) -> int:
        result = self.warehouse.query(f"select count(*) from {relation}")
        return int(result.rows[0][0]) if result.rows else 0


@dataclass(frozen=True)
class _Near:
    """Conditions on a group's rows near the changes' times (`together_within`).

    `times` holds a (near_group, near_time) row per change; a row is within `spans` spans
    of `hours` of a change of its group.
    """

    times: str
    group: str
    column: str
    hours: int

    def _within(self, alias: str, spans: int) -> str:
        # one second more, so an inclusive bound of the model (<= T + N hours) is inside
        reach = f"interval '{spans * self.hours * 3600 + 1} seconds'"
        return (
            f"n.near_group = {alias}.{self.group} and "
            f"{alias}.{self.column} between n.near_time - {reach} and n.near_time + {reach}"
        )

    def predicate(self, alias: str, spans: int) -> str:
        """A condition on the rows of `alias`: near a change of their group."""
        return f"exists (select 1 from {self.times} as n where {self._within(alias, spans)})"

    def join(self, alias: str, spans: int) -> str:
        """An inner join giving each row of `alias` once per change it is near."""
        return f"inner join {self.times} as n on {self._within(alias, spans)}"


def _member(column: str, key_table: str, with_null: bool = True) -> str:
    """`column` is one of the key table's values, NULL included (a NULL key is a group too).

    Without a NULL among the keys the plain `in` is left, which engines turn into a semi
    join (and DuckDB into a filter pushed into the scan).
    """
    if not with_null:
        return f"{column} in (select {column} from {key_table})"
    return (
        f"({column} in (select {column} from {key_table} where {column} is not null) or "
        f"({column} is null and exists (select 1 from {key_table} where {column} is null)))"
    )


def _key_predicate(key: UniqueKey, key_tables: dict[str, str], nulls: set[str]) -> str:
    if not key.grains:
        return _member(key.column, key_tables[key.column], key.column in nulls)
    return "(" + " or ".join(
        f"(grain = '{value}' and {_member(column, key_tables[column], column in nulls)})"
        for value, column in key.grains
    ) + ")"


def replace_inputs(sql: str, path: Path, queries: dict[str, str]) -> str:
    """The model's query (DuckDB's SQL) with each named input read from the given query.

    `from analytics.fct_sms_message` becomes `from (<query>) as fct_sms_message`.
    """
    tree = parse_model(sql, path)
    for table in list(tree.find_all(exp.Table)):
        relation = f"{table.db}.{table.name}".lower()
        if relation not in queries:
            continue
        inner = sqlglot.parse_one(queries[relation], read=SOURCE_DIALECT)
        assert isinstance(inner, exp.Select)
        table.replace(inner.subquery(table.alias_or_name))
    return tree.sql(dialect=SOURCE_DIALECT)


def referenced_columns(sql: str, path: Path, relation: str) -> set[str] | None:
    """The column names the model's query names anywhere; None when it reads `relation` by `*`.

    A superset of the columns it reads from `relation` (names are matched, not resolved),
    enough to read no column of it that the query cannot use.
    """
    tree = parse_model(sql, path)
    for table in tree.find_all(exp.Table):
        if f"{table.db}.{table.name}".lower() != relation:
            continue
        select = table.find_ancestor(exp.Select)
        if select is None or any(
            isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
            for e in select.expressions
        ):
            return None
    return {column.name.lower() for column in tree.find_all(exp.Column)}


def restrict_inputs(sql: str, path: Path, restrictions: dict[str, str]) -> str:
    """The model's query (DuckDB's SQL) with each restricted input read through a filter.

    `from analytics.fct_sms_message` becomes `from (select * from analytics.fct_sms_message
    where <restriction>) as fct_sms_message`, so the rest of the query reads it unchanged.
    """
    return replace_inputs(sql, path, {
        relation: f"select * from {relation} where {restriction}"
        for relation, restriction in restrictions.items()
    })


def _column_types(warehouse: Warehouse, relation: str) -> dict[str, str]:
    """The SQL type of each column of a table (for typed NULLs)."""
    schema, name = relation.split(".", 1)
    result = warehouse.query(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ?",
        [schema, name],
    )
    return {str(column): str(kind) for column, kind in result.rows}


def _columns(warehouse: Warehouse, relation: str) -> tuple[str, ...]:
    try:
        return warehouse.query(f"select * from {relation} limit 0").columns
    except EngineError:
        return ()

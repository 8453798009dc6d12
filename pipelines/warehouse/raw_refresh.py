"""Before `sync --full-refresh` drops the raw tables: our views on them go, others stop it.

dlt's `refresh="drop_sources"` drops the raw tables without `cascade`, and PostgreSQL refuses
to drop a table a view reads ("cannot drop table sendsms_events because other objects depend
on it"). So the model views that read the raw tables (the staging views, found by name among
the discovered models) are dropped just before that load. Only those: `cascade` would also
drop a user's own view on a raw table (or on a staging view) without a word, so such a view
stops the run instead, before anything is changed, with its name in the message.

DuckDB tracks no view dependencies (a view binds its tables by name when it is read), so
there nothing blocks the drop and nothing can be found to refuse; our views are dropped on
both engines all the same, which makes the next model build a full one
(`incremental.plan_build`: a missing view), as recreated raw tables need.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.warehouse.database import DEFAULT_SQL_DIR, RAW_SCHEMA
from pipelines.warehouse.engine import (
    EngineError,
    Warehouse,
    is_postgres_target,
    open_warehouse,
)
from pipelines.warehouse.models import Model, discover_models

#: Every view (and materialized view) that reads, directly or through other views, a table
#: of the raw schema that dlt's refresh drops (its own `_dlt_*` tables stay). A view's
#: dependency on a table is recorded against its rewrite rule; the rule also depends on its
#: own view, which the recursion leaves out.
_DEPENDENT_VIEWS = r"""
with recursive dependents (oid) as (
    select c.oid from pg_class as c
    join pg_namespace as n on n.oid = c.relnamespace
    where n.nspname = ? and c.relkind in ('r', 'p') and c.relname not like '\_dlt\_%'
    union
    select r.ev_class from pg_depend as d
    join pg_rewrite as r on r.oid = d.objid
    join dependents on d.refobjid = dependents.oid
    where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
        and r.ev_class <> d.refobjid
)
select distinct n.nspname || '.' || c.relname from dependents
join pg_class as c on c.oid = dependents.oid
join pg_namespace as n on n.oid = c.relnamespace
where c.relkind in ('v', 'm')
order by 1
"""


def views_on_raw(models: list[Model]) -> list[str]:
    """The model views that read a raw table, directly or through another such view, in the
    order they can be dropped (readers first)."""
    found: list[str] = []
    for model in models:  # build order: a view's inputs come before it
        if model.kind == "view" and any(
            relation.startswith(f"{RAW_SCHEMA}.") or relation in found
            for relation in model.reads
        ):
            found.append(model.relation)
    return found[::-1]


def foreign_views(warehouse: Warehouse, ours: list[str]) -> list[str]:
    """Views on the raw tables (or on ours) that are not ours; always empty on DuckDB."""
    if warehouse.dialect != "postgres":
        return []
    rows = warehouse.query(_DEPENDENT_VIEWS, [RAW_SCHEMA])
    return [str(row[0]) for row in rows.rows if str(row[0]) not in ours]


def refuse_foreign_views(
    target: str | os.PathLike[str], sql_dir: str | os.PathLike[str] | None = None
) -> None:
    """Refuse a full refresh that a view of someone else's would block or lose (reads only).

    Args:
        target: the DuckDB file or the PostgreSQL credentials string.
        sql_dir: the model directory; the project's `sql/` when None.

    Raises:
        ConfigError: such views exist; names them and says what to do. Nothing was changed.
    """
    if not is_postgres_target(target):
        return  # DuckDB: nothing blocks the drop, and no dependency can be looked up
    ours = views_on_raw(discover_models(_directory(sql_dir)))
    with open_warehouse(target) as warehouse:
        _refuse(warehouse, foreign_views(warehouse, ours))


def drop_views_on_raw(
    target: str | os.PathLike[str], sql_dir: str | os.PathLike[str] | None = None
) -> list[str]:
    """Drop our model views that read the raw tables, by name, in one transaction.

    Args:
        target: the DuckDB file or the PostgreSQL credentials string.
        sql_dir: the model directory; the project's `sql/` when None.

    Returns:
        The views dropped (those that existed).

    Raises:
        ConfigError: a view that is not ours reads the raw tables or ours; nothing dropped.
    """
    if _missing_duckdb_file(target):
        return []
    ours = views_on_raw(discover_models(_directory(sql_dir)))
    dropped: list[str] = []
    with open_warehouse(target) as warehouse, warehouse.transaction():
        # checked again inside the transaction that drops: a user's view found here keeps
        # ours in place too
        _refuse(warehouse, foreign_views(warehouse, ours))
        for relation in ours:
            schema, name = relation.split(".", 1)
            if name not in warehouse.table_names(schema):
                continue
            try:
                warehouse.execute(f"drop view {relation}")
            except EngineError as error:
                raise ConfigError(
                    f"The full refresh cannot drop the view {relation} before it recreates the "
                    f"raw tables: {error}. Nothing was changed. Drop what depends on it, then "
                    "run the sync again."
                ) from None
            dropped.append(relation)
    return dropped


def _refuse(warehouse: Warehouse, views: list[str]) -> None:
    if not views:
        return
    listed = ", ".join(views)
    raise ConfigError(
        f"`sync --full-refresh` drops and recreates the raw tables in {RAW_SCHEMA}, but "
        f"{warehouse.label} has views that are not this project's reading them (directly or "
        f"through a staging view): {listed}. PostgreSQL will not drop a table a view reads, "
        "and dropping those views for you would lose them, so nothing was changed: the raw "
        "tables, the saved cursor and the models are as they were. Save their definitions "
        "(`\\d+ <view>` in psql), drop them, run the full refresh again, then recreate them; "
        "or sync without --full-refresh."
    )


def _directory(sql_dir: str | os.PathLike[str] | None) -> Path:
    return Path(sql_dir) if sql_dir is not None else DEFAULT_SQL_DIR


def _missing_duckdb_file(target: str | os.PathLike[str]) -> bool:
    """A DuckDB warehouse not created yet: nothing reads raw tables that do not exist."""
    return not is_postgres_target(target) and not Path(target).exists()

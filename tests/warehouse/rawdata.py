"""Build the raw tables of docs/architecture.md in a real DuckDB file, from small row dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

SENDSMS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "BIGINT"),
    ("resource_uri", "VARCHAR"),
    ("created", "TIMESTAMPTZ"),
    ("updated", "TIMESTAMPTZ"),
    ("timestamp", "TIMESTAMPTZ"),
    ("send_time", "TIMESTAMPTZ"),
    ("bulk_sms", "VARCHAR"),
    ("bulk_sms_id", "BIGINT"),
    ("bulk_sms_description", "VARCHAR"),
    ("bulk_sms_send_time", "TIMESTAMPTZ"),
    ("supporter_uri", "VARCHAR"),
    ("supporter_id", "BIGINT"),
    ("supporter_name", "VARCHAR"),
    ("supporter_email", "VARCHAR"),
    ("supporter_title", "VARCHAR"),
    ("supporter_public_organization", "VARCHAR"),
    ("associated_number", "VARCHAR"),
    ("message_content", "VARCHAR"),
    ("message_uuid", "VARCHAR"),
    ("message_direction", "BIGINT"),
    ("current_status", "BIGINT"),
    ("effective_message_count", "BIGINT"),
    ("opens", "BIGINT"),
    ("converted", "BOOLEAN"),
    ("archived", "BOOLEAN"),
    ("rcpt_dict", "JSON"),
    ("_extra", "JSON"),
    ("source_deleted_at", "TIMESTAMPTZ"),
)
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sendsms_id", "BIGINT"),
    ("event_type", "VARCHAR"),
    ("occurred_at", "TIMESTAMPTZ"),
    ("error_code", "VARCHAR"),
    ("error_message", "VARCHAR"),
    ("carrier", "VARCHAR"),
)

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
STATUS = {"queued": 1, "sent": 2, "delivered": 3, "undelivered": 4, "failed": 5,
          "rejected": 6, "received": 7}


def at(hours: float = 0, seconds: float = 0) -> datetime:
    """T0 plus an offset, in UTC."""
    return T0 + timedelta(hours=hours, seconds=seconds)


def create_raw_tables(connection: duckdb.DuckDBPyConnection) -> None:
    """Create the empty quorum_raw tables with the exact columns of docs/architecture.md."""
    connection.execute("create schema if not exists quorum_raw")
    for table, columns in (("sendsms", SENDSMS_COLUMNS), ("sendsms_events", EVENT_COLUMNS)):
        cols = ", ".join(f'"{name}" {kind}' for name, kind in columns)
        connection.execute(f"create or replace table quorum_raw.{table} ({cols})")


def sms(
    id: int,
    *,
    status: str,
    direction: str = "outbound",
    campaign: int | None = None,
    supporter: int = 1,
    number: str = "+15550000001",
    send_time: datetime | None = None,
    segments: int = 1,
    opens: int = 0,
    converted: bool = False,
    archived: bool = False,
    deleted: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """One raw sendsms row with sensible defaults."""
    sent = send_time if send_time is not None else T0
    return {
        "id": id,
        "resource_uri": f"/api/sendsms/{id}/",
        "created": sent,
        "updated": sent + timedelta(hours=1),
        "timestamp": sent,
        "send_time": sent,
        "bulk_sms": f"/api/bulksms/{campaign}/" if campaign is not None else None,
        "bulk_sms_id": campaign,
        "bulk_sms_description": (description or f"Campaign {campaign}") if campaign else None,
        "bulk_sms_send_time": T0 if campaign is not None else None,
        "supporter_uri": f"/api/newsupporter/{supporter}/",
        "supporter_id": supporter,
        "supporter_name": "Ada",
        "supporter_email": "ada@example.org",
        "supporter_title": None,
        "supporter_public_organization": None,
        "associated_number": number,
        "message_content": "hello",
        "message_uuid": f"uuid-{id}",
        "message_direction": 1 if direction == "inbound" else 2,
        "current_status": STATUS[status],
        "effective_message_count": segments,
        "opens": opens,
        "converted": converted,
        "archived": archived,
        "rcpt_dict": "{}",
        "_extra": "{}",
        "source_deleted_at": at(hours=500) if deleted else None,
    }


def event(
    sendsms_id: int,
    event_type: str,
    occurred_at: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
    carrier: str | None = None,
) -> dict[str, Any]:
    """One raw sendsms_events row."""
    return {
        "sendsms_id": sendsms_id,
        "event_type": event_type,
        "occurred_at": occurred_at,
        "error_code": error_code,
        "error_message": error_message,
        "carrier": carrier,
    }


def insert(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    columns: tuple[tuple[str, str], ...],
    rows: Iterable[Mapping[str, Any]],
) -> None:
    """Insert row dicts into quorum_raw.<table>."""
    names = [name for name, _ in columns]
    values = [[row.get(name) for name in names] for row in rows]
    if not values:
        return
    cols = ", ".join(f'"{n}"' for n in names)
    marks = ", ".join("?" for _ in names)
    connection.executemany(f"insert into quorum_raw.{table} ({cols}) values ({marks})", values)


def write_raw(
    path: Path, messages: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]
) -> Path:
    """Create (or replace) the raw tables in the DuckDB file and fill them."""
    from pipelines.ops.history import ensure_table

    with duckdb.connect(str(path)) as connection:
        create_raw_tables(connection)
        # every sync creates the run history before the models build (sync_freshness reads it)
        ensure_table(connection)
        insert(connection, "sendsms", SENDSMS_COLUMNS, messages)
        insert(connection, "sendsms_events", EVENT_COLUMNS, events)
    return path


def write_raw_postgres(
    credentials: str, messages: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]
) -> str:
    """Create the same raw tables (and the run history) in a PostgreSQL database and fill them."""
    import psycopg2

    from pipelines.ops.history import COLUMNS as RUN_COLUMNS

    def pg_type(kind: str) -> str:
        return "jsonb" if kind == "JSON" else kind

    with psycopg2.connect(credentials) as connection, connection.cursor() as cursor:
        cursor.execute("create schema if not exists quorum_raw")
        cursor.execute("create schema if not exists quorum_ops")
        run_cols = ", ".join(f"{name} {kind}" for name, kind in RUN_COLUMNS.items())
        cursor.execute(f"create table if not exists quorum_ops.sync_runs ({run_cols})")
        for table, columns, rows in (
            ("sendsms", SENDSMS_COLUMNS, messages),
            ("sendsms_events", EVENT_COLUMNS, events),
        ):
            cols = ", ".join(f'"{name}" {pg_type(kind)}' for name, kind in columns)
            cursor.execute(f"drop table if exists quorum_raw.{table}")
            cursor.execute(f"create table quorum_raw.{table} ({cols})")
            names = [name for name, _ in columns]
            values = [[row.get(name) for name in names] for row in rows]
            if values:
                quoted = ", ".join(f'"{n}"' for n in names)
                marks = ", ".join("%s" for _ in names)
                cursor.executemany(
                    f"insert into quorum_raw.{table} ({quoted}) values ({marks})", values
                )
    connection.close()
    return credentials


def write_first_load(
    engine: str,
    target: str,
    messages: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
) -> None:
    """The raw tables on `engine` ("duckdb": a file path, else PostgreSQL credentials), every
    row stamped with load id 1, as the first dlt load writes them."""
    from pipelines.warehouse.engine import open_warehouse

    if engine == "duckdb":
        write_raw(Path(target), messages, events)
    else:
        write_raw_postgres(target, messages, events)
    with open_warehouse(target) as warehouse, warehouse.transaction():
        for table in ("sendsms", "sendsms_events"):
            warehouse.execute(f"alter table quorum_raw.{table} add column _dlt_load_id varchar")
            warehouse.execute(f"update quorum_raw.{table} set _dlt_load_id = '1'")


def write_second_load(
    target: str,
    messages: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    *,
    reloaded_records: Iterable[int],
    reloaded_events: Iterable[int],
) -> None:
    """Replace the raw rows by the next night's: rows of the reloaded records (by `id`, and
    events by `sendsms_id`) carry load id 2, the others keep load id 1."""
    from pipelines.warehouse.engine import open_warehouse

    with open_warehouse(target) as warehouse, warehouse.transaction():
        for table, columns, rows, key, again in (
            ("sendsms", SENDSMS_COLUMNS, messages, "id", set(reloaded_records)),
            ("sendsms_events", EVENT_COLUMNS, events, "sendsms_id", set(reloaded_events)),
        ):
            names = [name for name, _ in columns] + ["_dlt_load_id"]
            quoted = ", ".join(f'"{name}"' for name in names)
            marks = ", ".join("?" for _ in names)
            warehouse.execute(f"delete from quorum_raw.{table}")
            warehouse.executemany(
                f"insert into quorum_raw.{table} ({quoted}) values ({marks})",
                [[row.get(n) for n in names[:-1]] + ["2" if row[key] in again else "1"]
                 for row in rows],
            )

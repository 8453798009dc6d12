"""Write each mart as a Parquet file, for tools that read files rather than DuckDB."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import ConfigError
from pipelines.warehouse.database import MARTS_SCHEMA, schema_tables
from pipelines.warehouse.marts_reader import (
    MartConnection,
    PostgresMarts,
    open_marts,
    target_name,
)

# Row order in the files: by each mart's key, so that the same data gives the same files.
EXPORT_ORDER: dict[str, str] = {
    "fct_sms_message": "sendsms_id",
    "sms_campaign_performance": "bulk_sms_id",
    "sms_campaign_funnel": "bulk_sms_id, stage_order",
    "sms_daily_overview": "send_date",
    "sms_sender_number_health": "associated_number",
    "sms_delivery_errors": "failures desc, error_code nulls last, status",
    "sms_supporter_engagement": "supporter_id",
}


def export_marts(
    database_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write every table of the `analytics` schema to `out_dir/<table>.parquet`.

    Each file is written under a temporary name and renamed, so a reader never sees half a
    file and an interrupted export leaves the previous files whole.

    Returns:
        The files written, sorted by name.

    Raises:
        ConfigError: no database, no marts, or the directory cannot be written.
    """
    path = target_name(database_path)
    target = Path(out_dir)
    connection = open_marts(database_path)
    try:
        tables = schema_tables(connection, MARTS_SCHEMA)
        if not tables:
            raise ConfigError(
                f"The database {path} has no marts to export. Run `quorum-sms models` first."
            )
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"Cannot create the export directory {target}: {error}.") from error
        written: list[Path] = []
        for table in tables:
            final = target / f"{table}.parquet"
            partial = target / f".{table}.parquet.partial"
            order = EXPORT_ORDER.get(table)
            query = f"select * from {MARTS_SCHEMA}.{table}"
            if order:
                query += f" order by {order}"
            try:
                _write_parquet(connection, query, partial)
                partial.replace(final)
            except (duckdb.Error, OSError) as error:
                partial.unlink(missing_ok=True)
                raise ConfigError(f"Cannot write {final}: {error}.") from error
            written.append(final)
        return written
    finally:
        connection.close()


def _write_parquet(connection: MartConnection, query: str, path: Path) -> None:
    """DuckDB copies the query itself; from PostgreSQL the rows go through Arrow."""
    if isinstance(connection, PostgresMarts):
        result = connection.execute(query)
        names = [str(d[0]) for d in result.description]
        rows = result.fetchall()
        columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
        pq.write_table(pa.table(columns), path)
        return
    literal = "'" + str(path).replace("'", "''") + "'"
    connection.execute(f"copy ({query}) to {literal} (format parquet)")

"""Counting the 2,048-row vectors of the raw tables that hold a night's records."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.warehouse.vectors import parquet_ids, vectors_holding_sql


def test_the_count_is_the_vectors_holding_the_listed_records(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    ids = tmp_path / "night's ids.parquet"  # a quote in the path: the name is escaped
    with duckdb.connect(str(database)) as connection:
        connection.execute("create schema quorum_raw")
        # 10,000 records in id order (vectors 0-4), three event rows each (vectors 0-14)
        connection.execute("create table quorum_raw.sendsms as select range as id "
                           "from range(10000)")
        connection.execute("create table quorum_raw.sendsms_events as select range // 3 as "
                           "sendsms_id, 'e' || range % 3 as event_type from range(30000)")
        connection.execute(
            f"copy (select unnest([0, 1, 5000, 9999, 20000]) as id) to '{ids}' (format parquet)"
            .replace("night's", "night''s")
        )
        (count,) = connection.execute(
            vectors_holding_sql(parquet_ids([str(ids)]), "id")
        ).fetchall()[0]
    # records: 0 and 1 in vector 0, 5,000 in 2, 9,999 in 4; events: rows 0-5 in vector 0,
    # 15,000-15,002 in 7, 29,997-29,999 in 14; id 20,000 is in neither table
    assert count == 3 + 3

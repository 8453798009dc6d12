"""Additive maintenance of int_sms_outcome_totals equals a full rebuild in its hard cases.

A night removes the record holding a campaign's first send time, moves the one holding its
last send time earlier, deletes the only record of a sender number and a campaign, archives
the only record of a day and adds a new campaign: the sums are maintained by adding the new
versions and subtracting the old ones, the lost minimum and maximum are recomputed from the
records, and the emptied keys lose their rows. Real DuckDB files, rebuilt from scratch to
compare.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import duckdb

from pipelines.warehouse.runner import build_models
from tests.warehouse.rawdata import at, event, sms, write_raw
from tests.warehouse.test_incremental import assert_same_tables

LONELY_NUMBER = "+15550000009"


def first_night(path: Path) -> None:
    messages = [
        sms(1, status="delivered", campaign=10, supporter=1, send_time=at(0)),
        sms(2, status="sent", campaign=10, supporter=2, send_time=at(1)),
        sms(3, status="delivered", campaign=10, supporter=3, send_time=at(2), opens=2),
        sms(4, status="failed", campaign=11, supporter=4, send_time=at(3), number=LONELY_NUMBER),
        sms(5, status="delivered", campaign=11, supporter=5, send_time=at(48)),
        sms(7, status="received", direction="inbound", supporter=3, send_time=at(2.5)),
    ]
    events = [event(4, "failed", at(3.1), "30007", "filtered")]
    write_raw(path, messages, events)
    with duckdb.connect(str(path)) as connection:
        for table in ("sendsms", "sendsms_events"):
            connection.execute(
                f"alter table quorum_raw.{table} add column _dlt_load_id varchar default '1'"
            )


def second_night(path: Path) -> None:
    late: datetime = at(1.5)
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            "update quorum_raw.sendsms set source_deleted_at = ?, _dlt_load_id = '2' "
            "where id in (1, 4)", [at(100)],
        )
        connection.execute(
            "update quorum_raw.sendsms set send_time = ?, _dlt_load_id = '2' where id = 3",
            [late],
        )
        connection.execute(
            "update quorum_raw.sendsms set archived = true, _dlt_load_id = '2' where id = 5"
        )
        connection.execute(
            "update quorum_raw.sendsms set current_status = 3, _dlt_load_id = '2' where id = 2"
        )
        connection.execute(
            "insert into quorum_raw.sendsms_events values "
            "(2, 'failed', ?, '30003', 'unreachable', 'carrier-x', '2')", [at(1.2)]
        )
        connection.execute(
            "insert into quorum_raw.sendsms select * replace (8 as id, 12 as bulk_sms_id, "
            "'uuid-8' as message_uuid, ? as send_time, '2' as _dlt_load_id) "
            "from quorum_raw.sendsms where id = 2", [at(96)],
        )


def totals(path: Path, grain: str, key: str) -> dict[object, tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as connection:
        rows = connection.execute(
            f"select {key}, texts, messages, first_send_time, last_send_time "
            f"from intermediate.int_sms_outcome_totals where grain = ?", [grain]
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_additive_totals_follow_removed_extremes_and_emptied_keys(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    first_night(warehouse)
    assert build_models(warehouse).mode == "full"
    second_night(warehouse)

    result = build_models(warehouse)

    assert result.mode == "incremental", result.reason
    assert "intermediate.int_sms_outcome_totals" in result.incremental_tables
    campaigns = totals(warehouse, "campaign", "bulk_sms_id")
    # id 1 held campaign 10's first send time and is gone; id 3 held its last one and moved
    assert campaigns[10] == (2, 2, at(1), at(1.5))
    assert campaigns[11] == (1, 0, None, None)  # id 4 deleted, id 5 archived
    assert campaigns[12] == (1, 1, at(96), at(96))
    assert LONELY_NUMBER not in totals(warehouse, "sender", "associated_number")
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(warehouse, copy)
    assert build_models(copy, full_refresh=True).mode == "full"
    assert_same_tables(warehouse, copy)

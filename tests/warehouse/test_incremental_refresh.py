"""After `sync --full-refresh` the next model build is a full one (plan_build).

A full refresh drops the staging views and dlt recreates the raw tables: every raw row is new
and the records it did not load again are gone, which an incremental build (it follows load
ids up) would leave in the marts. A missing view, or a raw table holding no row as old as the
last build, makes the build full, with a reason the summary prints.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.warehouse.engine import open_warehouse
from pipelines.warehouse.runner import build_models
from tests.warehouse.conftest import hand_made_events, hand_made_messages
from tests.warehouse.rawdata import write_first_load, write_raw


def fct_ids(target: str) -> list[int]:
    with open_warehouse(target) as warehouse:
        rows = warehouse.query(
            "select sendsms_id from analytics.fct_sms_message order by sendsms_id"
        ).rows
    return [int(row[0]) for row in rows]


def test_a_missing_staging_view_makes_the_next_build_full(
    engine_target: tuple[str, str],
) -> None:
    engine, target = engine_target
    write_first_load(engine, target, hand_made_messages(), hand_made_events())
    assert build_models(target).mode == "full"
    assert build_models(target).mode == "incremental"
    with open_warehouse(target) as warehouse:
        warehouse.execute("drop view staging.stg_quorum__sendsms_events")

    result = build_models(target)

    assert result.mode == "full"
    assert "the view staging.stg_quorum__sendsms_events is missing" in result.reason
    assert "(full build: the view staging.stg_quorum__sendsms_events is missing" in (
        result.summary()
    )
    with open_warehouse(target) as warehouse:
        assert "stg_quorum__sendsms_events" in warehouse.table_names("staging")
    assert build_models(target).mode == "incremental"


def test_raw_tables_recreated_under_the_views_make_the_next_build_full(tmp_path: Path) -> None:
    """DuckDB lets raw tables be dropped under the views that read them (a plain dlt refresh
    outside `quorum-sms sync`): the views are all there, only the rows tell."""
    target = str(tmp_path / "warehouse.duckdb")
    messages, events = hand_made_messages(), hand_made_events()
    write_first_load("duckdb", target, messages, events)
    assert build_models(target).mode == "full"
    assert max(fct_ids(target)) >= 30
    kept = [m for m in messages if int(str(m["id"])) < 30]
    write_raw(Path(target), kept, [e for e in events if int(str(e["sendsms_id"])) < 30])
    with open_warehouse(target) as warehouse:
        for table in ("sendsms", "sendsms_events"):
            warehouse.execute(f"alter table quorum_raw.{table} add column _dlt_load_id varchar")
            warehouse.execute(f"update quorum_raw.{table} set _dlt_load_id = '2'")

    result = build_models(target)

    assert result.mode == "full", result.reason
    assert "quorum_raw.sendsms was recreated since the last build" in result.reason
    # an incremental build would have kept the records the new tables no longer hold
    ids = fct_ids(target)
    assert ids and max(ids) < 30, ids


def test_rows_from_the_last_builds_loads_keep_builds_incremental(tmp_path: Path) -> None:
    """Not every change is a recreation: a night that reloaded some records (and every event
    there is: none) leaves the next build incremental."""
    target = str(tmp_path / "warehouse.duckdb")
    write_first_load("duckdb", target, hand_made_messages(), [])
    assert build_models(target).mode == "full"
    with open_warehouse(target) as warehouse:
        warehouse.execute("update quorum_raw.sendsms set _dlt_load_id = '2' where id < 5")

    result = build_models(target)

    assert result.mode == "incremental", result.reason
    assert result.changed_records == 4

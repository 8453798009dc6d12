"""A record's events come from the version of the record that was kept (issue 12, item 10).

The simulator serves some ids twice on one page: first a version an hour older that says
`delivered`, then the current one that says `failed`. The warehouse keeps the current row;
its events, and `fct_sms_message`, must not keep the older version's `delivered`.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from pipelines.cli import main
from pipelines.simulator import Faults
from tests.e2e.truth import assert_warehouse_equals, utc
from tests.ops.helpers import query


def in_order_duplicates(truth: list[dict[str, Any]]) -> list[int]:
    """Failed texts whose older copy (an hour back) still sorts right before the current one.

    The sync checks every page is in `(updated, id)` order; a copy an hour older passes when
    no other record changed within that hour before the current version.
    """
    ordered = sorted(truth, key=lambda r: (utc(r["updated"]), r["id"]))
    return [
        current["id"]
        for previous, current in itertools.pairwise(ordered)
        if current["current_status"] == 5
        and utc(previous["updated"]) < utc(current["updated"]) - timedelta(hours=1)
    ]


def test_a_record_served_twice_on_a_page_keeps_only_the_newer_versions_events(
    sync_env, simulator_factory, capsys
):
    sim = simulator_factory(n_records=1500)
    failed = in_order_duplicates(sim.world.ground_truth())[:5]
    assert failed, "the world has no failed text to duplicate"
    sim.faults = Faults(duplicate_ids=tuple(failed))
    assert main(["sync", "--base-url", sim.base_url]) == 0, capsys.readouterr()
    assert sim.stats.faults_injected.get("duplicate", 0) >= len(failed)
    ids = ", ".join(str(i) for i in failed)
    assert query(
        sync_env,
        f"select count(*) from quorum_raw.sendsms_events "
        f"where sendsms_id in ({ids}) and event_type = 'delivered'",
    ) == [(0,)]
    assert query(
        sync_env,
        "select count(*) from analytics.fct_sms_message "
        "where delivered_at is not null and failed_at is not null",
    ) == [(0,)]
    assert query(
        sync_env,
        f"select count(*) from analytics.fct_sms_message "
        f"where sendsms_id in ({ids}) and failed_at is not null",
    ) == [(len(failed),)]
    sim.faults = Faults()
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_a_record_read_twice_in_one_run_keeps_the_events_of_its_last_read(
    sync_env, simulator_factory, capsys
):
    """The world moves while the run pages (texts progress): re-read records stay exact."""
    sim = simulator_factory(n_records=1500, faults=Faults(mutate_while_paging=20, seed=6))
    sim.world.advance(timedelta(hours=2))
    assert main(["sync", "--base-url", sim.base_url]) == 0, capsys.readouterr()
    sim.faults = Faults()
    assert query(
        sync_env,
        "select count(*) from quorum_raw.sendsms_events as e where not exists (select 1 "
        "from quorum_raw.sendsms as r where r.id = e.sendsms_id and r.updated = e.updated)",
    ) == [(0,)]
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_an_event_type_a_newer_version_lacks_is_deleted_by_the_next_load(
    sync_env, simulator_factory, capsys
):
    """Events merge on (record, event type) only: an older load's `delivered` row of a record
    that comes back without it (its `updated` is then the old one) goes after the load."""
    import duckdb

    sim = simulator_factory(n_records=1500)
    assert main(["sync", "--base-url", sim.base_url, "--no-models"]) == 0, capsys.readouterr()
    victim = in_order_duplicates(sim.world.ground_truth())[0]
    with duckdb.connect(str(sync_env)) as connection:
        # a `delivered` of an older version, as an earlier load would have left it
        connection.execute(
            "insert into quorum_raw.sendsms_events select * replace ('delivered' as "
            "event_type, updated - interval 1 hour as updated, '1000000000.0' as _dlt_load_id) "
            "from quorum_raw.sendsms_events where sendsms_id = ? and event_type = 'failed'",
            [victim],
        )
    stale = (
        f"select count(*) from quorum_raw.sendsms_events "
        f"where sendsms_id = {victim} and event_type = 'delivered'"
    )
    assert query(sync_env, stale) == [(1,)]
    sim.world.advance(timedelta(hours=2))
    sim.world.touch(ids=[victim])
    assert main(["sync", "--base-url", sim.base_url, "--no-models"]) == 0, capsys.readouterr()
    assert query(sync_env, stale) == [(0,)]
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_a_warehouse_written_with_the_old_merge_key_loses_it(
    sync_env, simulator_factory, capsys, monkeypatch
):
    """Warehouses of earlier versions stored `merge_key` on `sendsms_events.sendsms_id`; with
    it dlt deletes by `primary key OR merge key`, which groups the whole events table."""
    import dlt

    import pipelines.quorum as source_module
    from pipelines.config import load_sync_config
    from pipelines.sync import make_pipeline

    def old_hints() -> Any:
        return dlt.mark.make_hints(
            table_name="sendsms_events",
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            primary_key=["sendsms_id", "event_type"],
            merge_key="sendsms_id",
            columns={"updated": {"dedup_sort": "desc"}},
        )

    def merge_key_stored() -> bool:
        pipeline = make_pipeline(load_sync_config(base_url=sim.base_url))
        pipeline.sync_destination()
        column = pipeline.default_schema.tables["sendsms_events"]["columns"]["sendsms_id"]
        return bool(column.get("merge_key"))

    sim = simulator_factory(n_records=1500)
    with monkeypatch.context() as patched:
        patched.setattr(source_module, "_events_hints", old_hints)
        assert main(["sync", "--base-url", sim.base_url, "--no-models"]) == 0
    assert merge_key_stored(), "the old hints did not store a merge key"
    sim.world.advance(timedelta(hours=2))
    sim.world.touch(fraction=0.05)
    assert main(["sync", "--base-url", sim.base_url, "--no-models"]) == 0, capsys.readouterr()
    assert not merge_key_stored()
    assert_warehouse_equals(sync_env, sim.world.ground_truth())

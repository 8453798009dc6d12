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

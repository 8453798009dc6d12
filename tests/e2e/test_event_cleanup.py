"""The superseded-events clean-up remembers how far it got (DuckDB and PostgreSQL).

After each load the sync deletes event rows of record versions that were not kept, for the
records of the loads not yet cleaned, then writes the newest load it covered as a marker
(`quorum_ops.event_cleanup`). The next run joins only the loads after the marker: after a
finished clean-up, its own; after clean-ups that did not finish, every load since the last
one that did (a stale row is planted to see which records a clean-up joined).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import pipelines.sync as sync_module
from pipelines.errors import SyncFailed
from pipelines.sync import CLEANUP_MARKER_TABLE, CleanupScope, cleanup_scope
from pipelines.warehouse.engine import open_warehouse
from tests.e2e.test_full_refresh import engine_env
from tests.e2e.test_postgres import run_cli

__all__ = ["engine_env"]  # the fixture, used by name

EVENTS = "quorum_raw.sendsms_events"


def one(target: str | Path, sql: str, params: list[Any] | None = None) -> Any:
    with open_warehouse(target) as warehouse:
        rows = warehouse.query(sql, params).rows
    return rows[0][0] if rows else None


def marker(target: str | Path) -> str | None:
    """The newest load whose clean-up finished, as the warehouse holds it."""
    return one(target, f"select load_id from {CLEANUP_MARKER_TABLE}")


def newest_load(target: str | Path) -> str:
    return str(one(target, "select max(load_id) from quorum_raw._dlt_loads"))


def load_of(target: str | Path, record: int) -> str:
    """The load that last wrote a record."""
    return str(one(target, "select _dlt_load_id from quorum_raw.sendsms where id = ?", [record]))


def failed_records(target: str | Path) -> list[int]:
    """Records with a `failed` event and no `delivered` one, by id."""
    with open_warehouse(target) as warehouse:
        rows = warehouse.query(
            f"select sendsms_id from {EVENTS} group by sendsms_id having "
            "sum(case when event_type = 'failed' then 1 else 0 end) > 0 and "
            "sum(case when event_type = 'delivered' then 1 else 0 end) = 0 order by sendsms_id"
        ).rows
    return [int(row[0]) for row in rows]


def plant_stale_delivered(target: str | Path, record: int) -> None:
    """A `delivered` row of an older version of the record, as an earlier load left it."""
    with open_warehouse(target) as warehouse:
        columns = warehouse.query(f"select * from {EVENTS} limit 0").columns
        replaced = {
            "event_type": "'delivered'",
            "updated": "updated - interval '1 hour'",
            "_dlt_load_id": "'1000000000.0'",
            "_dlt_id": "'planted'",
        }
        listed = ", ".join(f'"{c}"' for c in columns)
        values = ", ".join(replaced.get(c, f'"{c}"') for c in columns)
        warehouse.execute(
            f"insert into {EVENTS} ({listed}) select {values} from {EVENTS} "
            "where sendsms_id = ? and event_type = 'failed'",
            [record],
        )


def stale(target: str | Path, record: int) -> int:
    return int(one(
        target,
        f"select count(*) from {EVENTS} where sendsms_id = ? and event_type = 'delivered'",
        [record],
    ))


def sync(capsys: pytest.CaptureFixture[str], sim: Any) -> tuple[int, str]:
    return run_cli(capsys, "sync", "--base-url", sim.base_url, "--no-models")


def other_records(sim: Any, but: int, night: int) -> list[int]:
    ids = [r["id"] for r in sim.world.ground_truth() if r["id"] != but]
    return ids[night * 7: night * 7 + 3]


def test_after_a_finished_cleanup_the_next_run_joins_only_its_own_loads(
    engine_env: str | Path, simulator_factory: Any, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = engine_env
    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "500")  # the first sync in three windows
    sim = simulator_factory(n_records=1500, seed=47)
    code, output = sync(capsys, sim)
    assert code == 0 and "windows" in output, output
    assert marker(target) == newest_load(target)
    first = newest_load(target)
    # a record of the newest load: what the rule before the marker joined again
    victim = next(r for r in failed_records(target) if load_of(target, r) == first)
    # a row the clean-up deletes only if it joins the victim's load again
    plant_stale_delivered(target, victim)
    assert stale(target, victim) == 1

    sim.world.advance(timedelta(hours=3))
    sim.world.touch(ids=other_records(sim, victim, night=1))
    code, output = sync(capsys, sim)
    assert code == 0, output
    assert load_of(target, victim) == first  # not read again
    assert newest_load(target) > first
    assert marker(target) == newest_load(target)
    # the first sync's loads were cleaned already: not joined again, the row is still there
    assert stale(target, victim) == 1

    # once the victim is loaded again, its clean-up takes the row
    sim.world.advance(timedelta(hours=3))
    sim.world.touch(ids=[victim])
    code, output = sync(capsys, sim)
    assert code == 0, output
    assert stale(target, victim) == 0
    assert marker(target) == newest_load(target)


def test_loads_whose_cleanup_failed_are_cleaned_by_the_next_run(
    engine_env: str | Path, simulator_factory: Any, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two runs in a row stop between their load and its clean-up (as a kill would leave
    them): the next run still deletes the stale row of the record the first of them loaded,
    though the newest load before it holds no version of that record."""
    target = engine_env
    sim = simulator_factory(n_records=1500, seed=53)
    code, output = sync(capsys, sim)
    assert code == 0, output
    cleaned = marker(target)
    assert cleaned == newest_load(target)
    victim = failed_records(target)[0]
    plant_stale_delivered(target, victim)

    def killed(*args: object, **kwargs: object) -> int:
        raise SyncFailed("the clean-up was stopped (simulated kill after the load)")

    with monkeypatch.context() as patched:
        patched.setattr(sync_module, "drop_superseded_events", killed)
        # the victim changes, then others more than the lag later: the next run's lag
        # window (from the saved cursor) leaves the victim out
        sim.world.advance(timedelta(hours=1))
        sim.world.touch(ids=[victim])
        sim.world.advance(timedelta(hours=3))
        sim.world.touch(ids=other_records(sim, victim, night=1))
        code, output = sync(capsys, sim)
        assert code == 1 and "simulated kill" in output, output
        victim_load = load_of(target, victim)
        assert victim_load > str(cleaned)
        sim.world.advance(timedelta(hours=3))
        sim.world.touch(ids=other_records(sim, victim, night=2))
        code, output = sync(capsys, sim)
        assert code == 1, output
    assert load_of(target, victim) == victim_load  # the newest load holds no version of it
    assert newest_load(target) > victim_load
    assert marker(target) == cleaned  # neither clean-up finished
    assert stale(target, victim) == 1

    sim.world.advance(timedelta(hours=3))
    code, output = sync(capsys, sim)
    assert code == 0, output
    assert stale(target, victim) == 0
    assert marker(target) == newest_load(target)


@pytest.mark.parametrize(
    ("newest_before", "marker_value", "remember", "expected"),
    [
        # no marker (another destination, or an older version cleaned): today's rule
        ("1.2", None, False, CleanupScope("1.2", inclusive=True)),
        ("1.2", None, True, CleanupScope("1.2", inclusive=True, remember=True)),
        # the last clean-up finished: only the loads after it
        ("1.2", "1.2", True, CleanupScope("1.2", inclusive=False, remember=True)),
        # it did not: from the marker, which covers every load left unclean
        ("1.5", "1.2", True, CleanupScope("1.2", inclusive=False, remember=True)),
    ],
)
def test_where_the_first_cleanup_of_a_run_starts(
    newest_before: str, marker_value: str | None, remember: bool, expected: CleanupScope
) -> None:
    assert cleanup_scope(newest_before, marker_value, remember=remember) == expected

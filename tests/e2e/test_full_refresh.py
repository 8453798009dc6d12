"""`sync --full-refresh` once the models exist, end to end on DuckDB and PostgreSQL.

dlt's refresh drops the raw tables, which PostgreSQL refuses while the staging views read them
(issue 14). The sync drops exactly our staging views first; the model build after it is a full
one (the views are missing, every raw row is new), so the marts equal a rebuild and hold no
record the refresh left out. A user's own view on the raw tables (or on a staging view) stops
the refresh before anything changes, with its name in the message.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import ConfigError
from pipelines.warehouse.engine import open_warehouse
from pipelines.warehouse.raw_refresh import drop_views_on_raw
from tests.e2e.test_postgres import raw_tables, run_cli
from tests.e2e.test_sync import saved_cursor
from tests.postgres import PG_PASSWORD
from tests.warehouse.test_engines import assert_same, snapshot

STAGING_VIEWS = {"stg_quorum__sendsms", "stg_quorum__sendsms_events"}


@pytest.fixture(params=["duckdb", "postgres"])
def engine_env(
    request: pytest.FixtureRequest, sync_env: Path, monkeypatch: pytest.MonkeyPatch
) -> str | Path:
    """Each warehouse engine in turn as the sync's destination: the DuckDB file, or the
    PostgreSQL credentials (given the dlt way) of a fresh database."""
    if request.param == "duckdb":
        monkeypatch.delenv("QUORUM_DESTINATION", raising=False)
        return sync_env
    credentials = str(request.getfixturevalue("postgres_database"))
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", credentials)
    monkeypatch.setenv("QUORUM_DESTINATION", "postgres")
    return credentials


def staging_views(target: str | Path) -> set[str]:
    with open_warehouse(target) as warehouse:
        return set(warehouse.table_names("staging"))


def count(target: str | Path, relation: str) -> int:
    with open_warehouse(target) as warehouse:
        return int(warehouse.query(f"select count(*) from {relation}").rows[0][0])


def vanish(sim: Any, n: int, night: int) -> list[int]:
    """The clock moves, some records change, and `n` vanish at the source: a plain sync never
    sees them go, a full refresh reloads without them."""
    ids = sorted(r["id"] for r in sim.world.ground_truth())
    sim.world.advance(timedelta(hours=5))
    sim.world.touch(fraction=0.05)
    gone = ids[night * 50: night * 50 + n]
    sim.world.delete(gone)
    return gone


def assert_models_hold_the_source(target: str | Path, sim: Any, gone: list[int]) -> None:
    """The raw tables and the fact table hold exactly the live records: none that vanished."""
    live = len(sim.world.ground_truth())
    assert count(target, "quorum_raw.sendsms") == live
    assert count(target, "analytics.fct_sms_message") == live
    listed = ", ".join(str(i) for i in gone)
    assert count(
        target, f"(select 1 from analytics.fct_sms_message where sendsms_id in ({listed})) as f"
    ) == 0


def assert_marts_equal_a_rebuild(capsys: pytest.CaptureFixture[str], target: str | Path) -> None:
    built = snapshot(target)
    code, output = run_cli(capsys, "models", "--full-refresh")
    assert code == 0, output
    assert_same(built, snapshot(target))


def test_full_refresh_after_a_model_build_rebuilds_the_models(
    engine_env: str | Path, simulator_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    target = engine_env
    sim = simulator_factory(n_records=900, seed=41)
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, output
    assert staging_views(target) == STAGING_VIEWS
    if isinstance(target, Path):
        # DuckDB binds a view's tables by name when it is read: a user's view survives
        with open_warehouse(target) as warehouse:
            warehouse.execute("create view main.my_sends as select id from quorum_raw.sendsms")

    # the nightly with --full-refresh: models built in the same run
    gone = vanish(sim, 12, night=1)
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url, "--full-refresh")
    assert code == 0, output
    assert "full build" in output, output
    assert staging_views(target) == STAGING_VIEWS
    assert_models_hold_the_source(target, sim, gone)
    assert_marts_equal_a_rebuild(capsys, target)
    if isinstance(target, Path):
        assert count(target, "main.my_sends") == count(target, "quorum_raw.sendsms")

    # --no-models: the views stay dropped, and the next `models` is a full build that says so
    gone = vanish(sim, 7, night=2)
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url, "--full-refresh",
                           "--no-models")
    assert code == 0, output
    assert staging_views(target) == set()
    code, output = run_cli(capsys, "models")
    assert code == 0, output
    assert "(full build: the view staging.stg_quorum__" in output, output
    assert_models_hold_the_source(target, sim, gone)
    assert_marts_equal_a_rebuild(capsys, target)

    # and the nightly after it is incremental again
    sim.world.advance(timedelta(hours=5))
    sim.world.touch(fraction=0.05)
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0 and "built incrementally" in output, output
    assert_marts_equal_a_rebuild(capsys, target)


def warehouse_state(credentials: str, database: Path) -> tuple[Any, ...]:
    """Everything a refused refresh must leave as it was: raw rows and table identities,
    dlt's loads, the saved cursor, the marts and the staging views."""
    with open_warehouse(credentials) as warehouse:
        oids = warehouse.query(
            "select c.relname, c.oid from pg_class as c join pg_namespace as n "
            "on n.oid = c.relnamespace where n.nspname in ('quorum_raw', 'staging') "
            "order by c.relname"
        ).rows
        loads = warehouse.query("select load_id from quorum_raw._dlt_loads order by 1").rows
    return (raw_tables(credentials), oids, loads, saved_cursor(database), snapshot(credentials),
            staging_views(credentials))


def test_a_users_view_on_the_raw_tables_stops_the_full_refresh_and_changes_nothing(
    sync_env: Path, postgres_database: str, simulator_factory: Any,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_database)
    monkeypatch.setenv("QUORUM_DESTINATION", "postgres")
    sim = simulator_factory(n_records=600, seed=43)
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, output
    user_views = ("public.my_sends", "public.my_delivery_times")
    with open_warehouse(postgres_database) as warehouse:
        # one on a raw table, one on a staging view: either would block or be lost
        warehouse.execute("create view public.my_sends as select id from quorum_raw.sendsms")
        warehouse.execute(
            "create view public.my_delivery_times as select sendsms_id, occurred_at "
            "from staging.stg_quorum__sendsms_events"
        )
    sim.world.advance(timedelta(hours=3))
    sim.world.touch(fraction=0.05)
    before = warehouse_state(postgres_database, sync_env)

    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url, "--full-refresh")

    assert code == 2, output
    paragraph = " ".join(output.split())
    assert all(view in paragraph for view in user_views), output
    assert "nothing was changed" in paragraph and "--full-refresh" in paragraph
    assert PG_PASSWORD not in output
    assert warehouse_state(postgres_database, sync_env) == before
    with open_warehouse(postgres_database) as warehouse:
        assert {"my_sends", "my_delivery_times"} <= set(warehouse.table_names("public"))

    # the drop itself checks again in its transaction, and drops none of ours either
    with pytest.raises(ConfigError, match="my_delivery_times"):
        drop_views_on_raw(postgres_database)
    assert staging_views(postgres_database) == STAGING_VIEWS

    # what the message says to do works
    with open_warehouse(postgres_database) as warehouse:
        for view in user_views:
            warehouse.execute(f"drop view {view}")
    code, output = run_cli(capsys, "sync", "--base-url", sim.base_url, "--full-refresh")
    assert code == 0 and "full build" in output, output
    assert_marts_equal_a_rebuild(capsys, postgres_database)

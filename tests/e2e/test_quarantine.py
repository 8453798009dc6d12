"""One bad record must not stop the night: simulator over HTTP -> a real DuckDB file.

The runs here are plain `pipeline.run(quorum_source(...))` with the known rejects read from
the warehouse before each run, as the nightly command does once it is wired to this source.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.cli import main
from pipelines.config import load_sync_config
from pipelines.errors import BadRecordError
from pipelines.quorum import SourceObserver, quorum_source
from pipelines.quorum.rejects import KNOWN_REJECTS_QUERY, KnownReject
from pipelines.simulator import Faults
from pipelines.sync import make_pipeline, unwrap
from tests.conftest import API_KEY
from tests.e2e.test_sync import saved_cursor, sync, table_digest
from tests.e2e.truth import assert_warehouse_equals, expected_sendsms, warehouse_sendsms


def known_rejects(database: Path) -> list[KnownReject]:
    """The rejects the warehouse holds (what the nightly run passes to the source)."""
    if not database.exists():
        return []
    with duckdb.connect(str(database), read_only=True) as connection:
        try:
            rows = connection.execute(KNOWN_REJECTS_QUERY).fetchall()
        except duckdb.CatalogException:
            return []
    return [KnownReject(*row) for row in rows]


def run(database: Path, base_url: str, **settings: Any) -> SourceObserver:
    """One sync of `database` from `base_url`; returns what the source observed.

    Keyword arguments override source settings (say `max_reject_fraction`).
    """
    config = load_sync_config(base_url=base_url, database=str(database))
    for name, value in settings.items():
        setattr(config.source, name, value)
    pipeline = make_pipeline(config)
    observer = SourceObserver()
    source = quorum_source(
        config.source,
        observer=observer,
        known_rejects=known_rejects(database),
    )
    pipeline.run(source, loader_file_format="parquet")
    return observer


def rejects(database: Path) -> dict[int | None, dict[str, Any]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        cursor = connection.execute("select * from quorum_raw.sendsms_rejects")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return {row["id"]: row for row in rows}


def pick_ids(truth: list[dict[str, Any]], count: int) -> tuple[int, ...]:
    ids = sorted(r["id"] for r in truth)
    step = len(ids) // (count + 1)
    return tuple(ids[step * (i + 1)] for i in range(count))


def test_bad_records_are_set_aside_retried_and_loaded_once_fixed(sync_env, simulator_factory):
    sim = simulator_factory(n_records=1500)
    truth = sim.world.ground_truth()
    bad = pick_ids(truth, 3)
    sim.faults = Faults(malformed_ids=bad)

    first = run(sync_env, sim.base_url)
    assert_warehouse_equals(sync_env, [r for r in truth if r["id"] not in bad])
    held = rejects(sync_env)
    assert set(held) == set(bad)
    for record_id, row in held.items():
        assert row["reject_key"] == f"id:{record_id}"
        assert row["status"] == "open"
        assert row["reason"] == "`updated` is not an ISO 8601 date-time ('not-a-date')"
        assert row["first_seen_at"] == row["last_seen_at"]
        assert row["run_id"] and row["updated"] is None and row["resolved_at"] is None
        stored = orjson.loads(row["record"])
        assert stored["id"] == record_id and stored["updated"] == "not-a-date"
        assert API_KEY not in repr(row) and "api_key" not in repr(row)
    assert (first.rejects.rejected, first.rejects.new) == (3, 3)
    assert sorted(i for i, _ in first.rejects.samples) == sorted(bad)

    # still bad the next night: retried by id, kept, first sighting kept
    sim.world.advance(timedelta(days=1))
    sim.stats.reset()
    second = run(sync_env, sim.base_url)
    assert sim.stats.requests_by_status.get(200, 0) >= len(bad)
    again = rejects(sync_env)
    assert set(again) == set(bad)
    for record_id in bad:
        assert again[record_id]["first_seen_at"] == held[record_id]["first_seen_at"]
        assert again[record_id]["last_seen_at"] > held[record_id]["last_seen_at"]
    assert (second.rejects.rejected, second.rejects.new) == (3, 0)

    # fixed at the source: the retry loads them (their `updated` is behind the cursor)
    sim.faults = Faults()
    cursor = saved_cursor(sync_env)
    third = run(sync_env, sim.base_url)
    assert third.rejects.resolved == 3 and third.rejects.rejected == 0
    assert rejects(sync_env) == {}
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    assert saved_cursor(sync_env) is not None and cursor is not None


def test_a_record_gone_at_the_source_is_marked_gone(sync_env, simulator_factory):
    sim = simulator_factory(n_records=600)
    (victim,) = pick_ids(sim.world.ground_truth(), 1)
    sim.faults = Faults(malformed_ids=(victim,))
    run(sync_env, sim.base_url, max_reject_fraction=0.05)
    sim.world.delete([victim])
    observer = run(sync_env, sim.base_url, max_reject_fraction=0.05)
    assert observer.rejects.gone == 1
    row = rejects(sync_env)[victim]
    assert row["status"] == "gone"
    assert row["reason"].startswith("gone: the API answered 404")
    assert "`updated`" in row["reason"] and orjson.loads(row["record"])["id"] == victim
    # a gone reject is not fetched again
    sim.stats.reset()
    run(sync_env, sim.base_url, max_reject_fraction=0.05)
    assert rejects(sync_env)[victim]["status"] == "gone"
    assert 404 not in sim.stats.requests_by_status


def test_a_good_version_stays_until_the_new_one_parses(sync_env, simulator_factory):
    sim = simulator_factory(n_records=1500)
    run(sync_env, sim.base_url)
    (victim,) = pick_ids(sim.world.ground_truth(), 1)
    before = warehouse_sendsms(sync_env)[victim]
    sim.world.advance(timedelta(hours=2))
    sim.world.touch(ids=[victim])  # a new version, served malformed
    sim.faults = Faults(malformed_ids=(victim,))
    observer = run(sync_env, sim.base_url, max_reject_fraction=1.0)
    assert observer.rejects.rejected == 1
    assert warehouse_sendsms(sync_env)[victim] == before
    assert rejects(sync_env)[victim]["updated"] is None
    sim.faults = Faults()
    run(sync_env, sim.base_url)
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    assert rejects(sync_env) == {}


def test_too_many_bad_records_fail_the_run_and_change_nothing(sync_env, simulator_factory):
    sim = simulator_factory(n_records=1500)
    run(sync_env, sim.base_url)
    before = (table_digest(sync_env), saved_cursor(sync_env))
    sim.world.advance(timedelta(days=1))
    sim.faults = Faults(malformed_rate=0.05, seed=4)
    with pytest.raises(PipelineStepFailed) as failure:
        run(sync_env, sim.base_url)
    error = unwrap(failure.value)
    assert isinstance(error, BadRecordError)
    message = str(error)
    assert "more than max_reject_fraction (1.0%)" in message
    assert "`updated` is not an ISO 8601 date-time" in message
    assert "saved cursor is unchanged" in message
    assert sim.stats.faults_injected.get("malformed", 0) > 0
    assert (table_digest(sync_env), saved_cursor(sync_env)) == before


def test_the_command_exits_1_above_the_threshold(sync_env, simulator_factory, capsys, monkeypatch):
    """The threshold is a source setting the command picks up from dlt's configuration."""
    sim = simulator_factory(n_records=800, faults=Faults(malformed_rate=0.005, seed=2))
    monkeypatch.setenv("SOURCES__QUORUM__MAX_REJECT_FRACTION", "0")
    code, output = sync(capsys, sim.base_url)
    assert code == 1, output
    assert "max_reject_fraction (0.0%)" in output
    assert API_KEY not in output


@pytest.mark.parametrize(
    "faults",
    [Faults(refuse_range_filters=True), Faults(ignore_order_by=True)],
    ids=["full-scan-by-offset", "full-scan-by-id"],
)
def test_bad_records_do_not_break_the_fallback_paging(sync_env, simulator_factory, faults):
    sim = simulator_factory(n_records=1200)
    truth = sim.world.ground_truth()
    bad = pick_ids(truth, 2)
    sim.faults = Faults(**{**faults.to_dict(), "malformed_ids": bad})
    observer = run(sync_env, sim.base_url)
    assert any(p.mode == "full-scan" for p in observer.pagers)
    assert_warehouse_equals(sync_env, [r for r in truth if r["id"] not in bad])
    assert set(rejects(sync_env)) == set(bad)


# -- the nightly command: exit 5, summary, history, status, freshness, mail and webhook --------


def test_the_nightly_command_loads_the_good_records_and_exits_5(
    sync_env, simulator_factory, capsys, monkeypatch
):
    from tests.ops.helpers import history, query
    from tests.ops.test_history import Receiver

    sim = simulator_factory(n_records=1500)
    truth = sim.world.ground_truth()
    kinds = ("updated", "event_timestamp", "wrong_type", "missing_id", "bad_uri",
             "lone_surrogate")
    chosen = dict(zip(pick_ids(truth, len(kinds)), kinds, strict=True))
    sim.faults = Faults(malformed_kinds=chosen)
    receiver = Receiver()
    monkeypatch.setenv("QUORUM_WEBHOOK_URL", receiver.url)
    try:
        code, output = sync_with_models(capsys, sim.base_url)
        # the lone surrogate is kept as the text of its escape and loads; the others wait
        unloadable = {i for i, kind in chosen.items() if kind != "lone_surrogate"}
        assert code == 5, output
        (surrogate,) = (i for i, kind in chosen.items() if kind == "lone_surrogate")
        loaded = warehouse_sendsms(sync_env)
        expected = expected_sendsms([r for r in truth if r["id"] not in unloadable])
        assert set(loaded) == set(expected)
        assert all(loaded[i] == expected[i] for i in expected if i != surrogate)
        assert "\\ud800" in loaded[surrogate]["message_content"]
        assert set(rejects(sync_env)) == unloadable
        assert f"{len(unloadable)} set aside in quorum_raw.sendsms_rejects" in output
        assert "LOADED WITH 5 REJECTED RECORD(S)" in output
        (row,) = history(sync_env)
        assert row["status"] == "succeeded" and row["exit_code"] == 5
        assert row["records_rejected"] == len(unloadable)
        assert str(min(unloadable)) in row["rejected_sample"]
        fresh = query(sync_env, "select rejected_records from analytics.sync_freshness")
        assert fresh == [(len(unloadable),)]
        assert len(receiver.bodies) == 1 and "REJECTED" in receiver.bodies[0]["text"]
        assert main(["status"]) == 0
        status = capsys.readouterr().out
        assert f"{len(unloadable)} rejected" in status and "rejected:" in status

        # Quorum fixes the records: the next night loads them and empties the rejects.
        sim.faults = Faults()
        code, output = sync_with_models(capsys, sim.base_url)
        assert code == 0, output
        assert rejects(sync_env) == {}
        # every record as served now; the surrogate one keeps the text it was served with
        # (unchanged at the source, so not read again)
        loaded = warehouse_sendsms(sync_env)
        expected = expected_sendsms(sim.world.ground_truth())
        assert set(loaded) == set(expected)
        assert all(loaded[i] == expected[i] for i in expected if i != surrogate)
        assert query(sync_env, "select rejected_records from analytics.sync_freshness") == [(0,)]
        assert len(receiver.bodies) == 1, "a clean night sends nothing"
        for text in (output, repr(history(sync_env)), repr(receiver.bodies)):
            assert API_KEY not in text
    finally:
        receiver.close()


def sync_with_models(capsys: pytest.CaptureFixture[str], base_url: str) -> tuple[int, str]:
    code = main(["sync", "--base-url", base_url])
    out, err = capsys.readouterr()
    return code, out + err

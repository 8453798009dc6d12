"""`quorum-sms sync` end to end: simulator over HTTP on loopback -> a real DuckDB file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.cli import main
from pipelines.errors import BusyError
from pipelines.lock import database_lock
from pipelines.simulator import Faults
from pipelines.sync import pipelines_dir_for
from tests.conftest import API_KEY
from tests.e2e.truth import assert_warehouse_equals, warehouse_sendsms

ROOT = Path(__file__).resolve().parents[2]


def sync(capsys: pytest.CaptureFixture[str], base_url: str, *extra: str) -> tuple[int, str]:
    """Run `quorum-sms sync` in-process; return the exit code and everything it printed."""
    code = main(["sync", "--base-url", base_url, "--no-models", *extra])
    out, err = capsys.readouterr()
    return code, out + err


def saved_cursor(database: Path) -> str | None:
    """The cursor as the destination holds it (what a fresh machine would restore)."""
    from pipelines.config import load_sync_config
    from pipelines.sync import make_pipeline
    from pipelines.sync import saved_cursor as read_cursor

    pipeline = make_pipeline(
        load_sync_config(base_url="http://127.0.0.1:1", database=str(database))
    )
    pipeline.sync_destination()
    return read_cursor(pipeline)


def schema_digest(database: Path, schema: str) -> tuple[str, int]:
    """A digest of every row of every table in `schema`, and how many tables it covers."""
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = connection.execute(
            "select table_name from information_schema.tables "
            "where table_schema = ? order by all",
            [schema],
        ).fetchall()
        digest = hashlib.sha256()
        for (table,) in tables:
            rows = connection.execute(f'select * from "{schema}"."{table}" order by all').fetchall()
            digest.update(f"{schema}.{table}:{rows!r}".encode())
    return digest.hexdigest(), len(tables)


def table_digest(database: Path) -> str:
    """A digest of every raw row and the dlt state table: 'exactly as before' made checkable."""
    if not database.exists():
        return "no database"
    return schema_digest(database, "quorum_raw")[0]


def test_first_sync_equals_ground_truth(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=2500)
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    assert "records fetched" in output and "2,500" in output
    assert saved_cursor(sync_env) is not None


def test_next_day_reads_only_what_changed(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=2500)
    assert sync(capsys, sim.base_url)[0] == 0
    cursor = warehouse_max_updated(sync_env)
    sim.world.advance(timedelta(days=1))
    truth = sim.world.ground_truth()
    lag = timedelta(hours=1)  # the default lag window of .dlt/config.toml
    changed = [r for r in truth if to_utc(r["updated"]) >= cursor - lag]
    assert 0 < len(changed) < len(truth) // 2, "the simulated day should change some records"
    sim.stats.reset()
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert_warehouse_equals(sync_env, truth)
    assert sim.stats.records_served <= len(changed) + 200 * 3, output
    assert sim.stats.requests <= len(changed) // 200 + 8, output


def to_utc(value: str) -> Any:
    from tests.e2e.truth import utc

    return utc(value)


def warehouse_max_updated(database: Path) -> Any:
    return max(row["updated"] for row in warehouse_sendsms(database).values())


def test_records_changing_while_paging_are_neither_lost_nor_duplicated(
    sync_env, simulator_factory, capsys
):
    sim = simulator_factory(n_records=2500, faults=Faults(mutate_while_paging=5, seed=3))
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    sim.faults = Faults()
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_naive_offset_paging_would_have_lost_records(simulator_factory):
    """The fault above is real: offset paging ordered by `updated` misses records under it."""
    import httpx

    from tests.conftest import API_USER

    sim = simulator_factory(n_records=1500, faults=Faults(mutate_while_paging=5, seed=3))
    seen: set[int] = set()
    offset = 0
    while True:
        body = httpx.get(
            f"{sim.base_url}/api/sendsms/",
            params={
                "limit": 200,
                "offset": offset,
                "order_by": "updated",
                "username": API_USER,
                "api_key": API_KEY,
            },
        ).json()
        seen.update(r["id"] for r in body["objects"])
        offset += 200
        if body["meta"]["next"] is None:
            break
    sim.faults = Faults()
    assert len(seen) < len(sim.world.ground_truth())


@pytest.mark.parametrize(
    "faults",
    [
        Faults(rate_limit_per_s=4, seed=1),
        Faults(error_rate=0.25, seed=2),
        Faults(drop_rate=0.2, seed=3),
        Faults(truncate_rate=0.2, seed=4),
    ],
    ids=["429", "5xx", "dropped-connections", "truncated-bodies"],
)
def test_transient_faults_still_give_the_exact_result(sync_env, simulator_factory, capsys, faults):
    sim = simulator_factory(n_records=1500, faults=faults)
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    sim.faults = Faults()
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    assert sum(sim.stats.faults_injected.values()) > 0, "no fault happened"


def test_api_failing_for_good_exits_4_and_changes_nothing(
    sync_env, simulator_factory, capsys, monkeypatch
):
    sim = simulator_factory(n_records=1500)
    assert sync(capsys, sim.base_url)[0] == 0
    before = (table_digest(sync_env), saved_cursor(sync_env))
    sim.world.advance(timedelta(days=1))
    monkeypatch.setenv("SOURCES__QUORUM__MAX_ATTEMPTS", "3")
    sim.faults = Faults(error_rate=1.0, seed=5)
    code, output = sync(capsys, sim.base_url)
    assert code == 4, output
    assert "kept failing" in output and "cursor is unchanged" in output
    assert (table_digest(sync_env), saved_cursor(sync_env)) == before


def test_malformed_record_fails_cleanly_and_changes_nothing(
    sync_env, simulator_factory, capsys, monkeypatch
):
    # strict mode: any new bad record fails the run (quarantine: tests/e2e/test_quarantine.py)
    monkeypatch.setenv("SOURCES__QUORUM__MAX_REJECT_FRACTION", "0")
    sim = simulator_factory(n_records=1500)
    assert sync(capsys, sim.base_url)[0] == 0
    before = (table_digest(sync_env), saved_cursor(sync_env))
    sim.world.advance(timedelta(days=1))
    victim = max(r["id"] for r in sim.world.ground_truth())
    sim.faults = Faults(malformed_ids=(victim,))
    code, output = sync(capsys, sim.base_url)
    assert code == 1, output
    assert f"record {victim}" in output and "not an ISO 8601" in output
    assert (table_digest(sync_env), saved_cursor(sync_env)) == before


@pytest.mark.parametrize(
    "faults",
    [
        Faults(refuse_range_filters=True),
        Faults(refuse_order_by=True),
        Faults(ignore_order_by=True),
        Faults(refuse_range_filters=True, refuse_order_by=True),
    ],
    ids=["refuse-filters", "refuse-order-by", "ignore-order-by", "refuse-both"],
)
def test_servers_without_keyset_support_still_give_the_exact_result(
    sync_env, simulator_factory, capsys, faults
):
    sim = simulator_factory(n_records=1500, faults=faults)
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert "full-scan" in output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    sim.world.advance(timedelta(days=1))
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_bad_credentials_exit_3_with_the_fix(sync_env, simulator_factory, capsys, monkeypatch):
    sim = simulator_factory(n_records=200)
    monkeypatch.setenv("QUORUM_API_KEY", "wrong-key-123")
    code, output = sync(capsys, sim.base_url)
    assert code == 3, output
    assert "QUORUM_API_KEY" in output and "wrong-key-123" not in output
    assert table_digest(sync_env) in ("no database", hashlib.sha256().hexdigest())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--base-url", "not a url"], "not a valid http(s) URL"),
        (["--base-url", "ftp://example.org"], "not a valid http(s) URL"),
        (["--base-url", "http://127.0.0.1:9", "--since", "last tuesday"], "is not a date"),
    ],
)
def test_bad_settings_exit_2(sync_env, capsys, args, needle):
    code = main(["sync", "--no-models", *args])
    output = "".join(capsys.readouterr())
    assert code == 2, output
    assert needle in output
    assert not sync_env.exists()


def test_missing_credentials_exit_2(sync_env, capsys, monkeypatch):
    monkeypatch.delenv("QUORUM_API_KEY")
    code = main(["sync", "--no-models", "--base-url", "http://127.0.0.1:9"])
    assert code == 2
    assert "QUORUM_API_KEY" in "".join(capsys.readouterr())


def run_sync_process(base_url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "sync", "--no-models", "--base-url", base_url],
        cwd="/",  # cron runs from anywhere
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(condition: Any, timeout: float = 60.0) -> None:
    """Poll an observable condition; the sleep only paces the poll, it orders nothing."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the run to get there"
        time.sleep(0.02)


#: dlt's folders (under the pipeline's working folder) of a package extracted but not loaded.
PENDING_PACKAGE_FOLDERS = ("normalize/extracted", "load/new", "load/normalized")


def load_packages(pipeline_dir: Path, *folders: str) -> list[Path]:
    """dlt load packages (one folder per load id) in the given stage folders."""
    return [
        package
        for folder in folders
        if (pipeline_dir / folder).is_dir()
        for package in (pipeline_dir / folder).iterdir()
        if package.is_dir()
    ]


@pytest.mark.parametrize("phase", ["while-paging", "after-paging"])
def test_killed_halfway_the_next_run_is_exact(sync_env, simulator_factory, phase):
    sim = simulator_factory(n_records=3000, faults=Faults(latency_ms=40))
    env = {**os.environ, "SOURCES__QUORUM__PAGE_SIZE": "100", "PYTHONPATH": str(ROOT)}
    process = run_sync_process(sim.base_url, env)
    packages = pipelines_dir_for(sync_env) / "quorum_sms"
    if phase == "while-paging":
        wait_until(lambda: sim.stats.records_served >= 1000)
    else:
        # paging is over once the extracted load package exists: it is normalizing or loading
        wait_until(lambda: bool(load_packages(packages, *PENDING_PACKAGE_FOLDERS)))
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    if phase == "after-paging":
        # proof that the kill landed before the load was done, not after the run's end
        assert not load_packages(packages, "load/loaded"), "the load finished before the kill"
        assert load_packages(packages, *PENDING_PACKAGE_FOLDERS)
    sim.world.advance(timedelta(hours=6))
    sim.faults = Faults()
    process = run_sync_process(sim.base_url, env)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def held_by_another_run(database: Path) -> bool:
    """Whether some other process holds the database's run lock right now."""
    try:
        with database_lock(database, wait_seconds=0):
            return False
    except BusyError:
        return True


def test_two_overlapping_runs_one_waits_then_exits(sync_env, simulator_factory):
    sim = simulator_factory(n_records=3000)
    env = {**os.environ, "SOURCES__QUORUM__PAGE_SIZE": "100", "PYTHONPATH": str(ROOT)}
    # The simulator's world lock (held while it renders a page) is held here, so the first
    # run cannot get a single page until the second run has given up: it provably still
    # holds the database lock then, on a fast idle machine and on a busy one alike.
    sim.world.lock.acquire()
    try:
        first = run_sync_process(sim.base_url, {**env, "QUORUM_SMS__LOCK_WAIT_SECONDS": "60"})
        wait_until(lambda: first.poll() is not None or held_by_another_run(sync_env))
        assert first.poll() is None, first.communicate()[0]
        second = run_sync_process(
            sim.base_url, {**env, "QUORUM_SMS__LOCK_WAIT_SECONDS": "0.5"}
        )
        second_output, _ = second.communicate(timeout=120)
        assert first.poll() is None and held_by_another_run(sync_env)
        assert sim.stats.records_served == 0, "the first run got data while it was held"
    finally:
        sim.world.lock.release()
    first_output, _ = first.communicate(timeout=180)
    assert first.returncode == 0, first_output
    assert second.returncode == 1, second_output
    assert "Another quorum-sms run is using" in second_output
    assert "waited 0.5 s" in second_output
    assert "quorum-sms sync FAILED" in second_output  # the summary a cron mail shows
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    # the run history holds the one run that ran; the one that never got the lock wrote nothing
    with duckdb.connect(str(sync_env), read_only=True) as connection:
        runs = connection.execute("select status, pid from quorum_ops.sync_runs").fetchall()
    assert runs == [("succeeded", first.pid)]


def test_api_key_never_leaks(sync_env, simulator_factory, capsys, monkeypatch):
    """Search every output and every file the runs wrote for the key."""
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "DEBUG")
    import logging

    logging.basicConfig(level=logging.DEBUG, force=True)
    sim = simulator_factory(n_records=1200, faults=Faults(error_rate=0.2, drop_rate=0.1, seed=9))
    outputs = [sync(capsys, sim.base_url)[1]]
    sim.faults = Faults(error_rate=1.0)
    monkeypatch.setenv("SOURCES__QUORUM__MAX_ATTEMPTS", "2")
    outputs.append(sync(capsys, sim.base_url)[1])
    sim.faults = Faults(refuse_range_filters=True)
    outputs.append(sync(capsys, sim.base_url)[1])
    logging.basicConfig(level=logging.WARNING, force=True)
    joined = "\n".join(outputs)
    assert "records fetched" in joined and "kept failing" in joined
    assert API_KEY not in joined
    written = [p for p in sync_env.parent.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in written)
    assert any("trace" in p.name for p in written), [p.name for p in written]
    leaks = [str(p) for p in written if API_KEY.encode() in p.read_bytes()]
    assert not leaks, f"the API key was written to {leaks}"
    with duckdb.connect(str(sync_env), read_only=True) as connection:
        tables = connection.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
        for schema, table in tables:
            dump = repr(connection.execute(f'select * from "{schema}"."{table}"').fetchall())
            assert API_KEY not in dump, f"the API key is in {schema}.{table}"


def test_a_load_left_pending_is_finished_first_then_new_data_is_read(
    sync_env, simulator_factory, capsys
):
    """Last night's run extracted and normalized but never loaded (the loader died)."""
    from pipelines.config import load_sync_config
    from pipelines.quorum import quorum_source
    from pipelines.sync import make_pipeline

    sim = simulator_factory(n_records=1500)
    assert sync(capsys, sim.base_url)[0] == 0
    sim.world.advance(timedelta(days=1))
    config = load_sync_config(base_url=sim.base_url, database=str(sync_env))
    pipeline = make_pipeline(config)
    pipeline.extract(quorum_source(config.source), loader_file_format="parquet")
    pipeline.normalize()
    assert pipeline.has_pending_data
    sim.world.advance(timedelta(days=1))
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert "finished the load a previous run left pending" in output, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_full_refresh_reloads_everything_from_since(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=1500)
    assert sync(capsys, sim.base_url)[0] == 0
    truth = sim.world.ground_truth()
    cut = sorted(to_utc(r["updated"]) for r in truth)[len(truth) // 2]
    code, output = sync(capsys, sim.base_url, "--full-refresh", "--since", cut.isoformat())
    assert code == 0, output
    expected = [r for r in truth if to_utc(r["updated"]) >= cut]
    assert_warehouse_equals(sync_env, expected)
    assert "cursor before      none" in output


def test_new_api_fields_are_kept(sync_env, simulator_factory, capsys):
    """A field the contract does not know lands as a column instead of being dropped."""
    sim = simulator_factory(n_records=300)
    assert sync(capsys, sim.base_url)[0] == 0
    with duckdb.connect(str(sync_env), read_only=True) as connection:
        columns = {
            row[0]
            for row in connection.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'quorum_raw' and table_name = 'sendsms_events'"
            ).fetchall()
        }
    # the simulator's events carry keys beyond the contract's minimum (provider details)
    assert {"occurred_at", "error_code", "carrier"} <= columns
    assert columns - {
        "sendsms_id",
        "event_type",
        "occurred_at",
        "error_code",
        "error_message",
        "carrier",
        "updated",
        "_dlt_load_id",
        "_dlt_id",
    }, columns


def test_full_scan_under_mutation_loses_nothing_over_two_runs(sync_env, simulator_factory, capsys):
    """A full scan cannot see changes behind it; the widened lag makes the next run see them."""
    sim = simulator_factory(
        n_records=1500, faults=Faults(refuse_range_filters=True, mutate_while_paging=5, seed=8)
    )
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert "full-scan" in output
    sim.faults = Faults(refuse_range_filters=True)
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


def test_a_full_scan_run_widens_the_next_runs_lag(sync_env, simulator_factory, capsys, monkeypatch):
    monkeypatch.setenv("SOURCES__QUORUM__LAG_SECONDS", "0")
    sim = simulator_factory(n_records=600, faults=Faults(refuse_range_filters=True, latency_ms=5))
    assert sync(capsys, sim.base_url)[0] == 0
    code, output = sync(capsys, sim.base_url)
    assert code == 0, output
    assert "lag widened to" in output

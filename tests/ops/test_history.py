"""The run history, failure summaries and the failure webhook, over real HTTP and DuckDB."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipelines.simulator import Faults
from pipelines.warehouse.runner import build_models
from tests.conftest import API_KEY
from tests.e2e.test_sync import ROOT, run_sync_process, wait_until
from tests.ops.helpers import history, query, run


class Receiver:
    """A tiny webhook receiver on loopback that records every JSON body it is sent."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[Any] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_a_successful_run_leaves_a_succeeded_row(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=600)
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, err
    (row,) = history(sync_env)
    assert row["command"] == "sync" and row["status"] == "succeeded"
    assert row["pid"] == os.getpid() and row["exit_code"] == 0 and row["error"] is None
    assert row["records_fetched"] == 600 and row["records_loaded"] == 600
    assert row["records_new"] == 600 and row["pages"] >= 3 and row["retries"] == 0
    assert row["cursor_before"] is None and row["cursor_after"] is not None
    assert row["finished_at"] >= row["started_at"]
    fresh = query(sync_env, "select last_successful_sync_at, newest_updated_loaded, "
                            "last_run_status, failed_runs_since_success, live_records "
                            "from analytics.sync_freshness")
    newest = query(sync_env, "select max(updated) from quorum_raw.sendsms")[0][0]
    assert fresh == [(row["finished_at"], newest, "succeeded", 0, 600)]


def test_a_failed_run_leaves_a_failed_row_a_summary_and_a_webhook_post(
    sync_env, simulator_factory, capsys, monkeypatch, receiver
):
    sim = simulator_factory(n_records=400)
    assert run(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    monkeypatch.setenv("QUORUM_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("SOURCES__QUORUM__MAX_ATTEMPTS", "2")
    sim.faults = Faults(error_rate=1.0, seed=1)
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 4
    rows = history(sync_env)
    assert [r["status"] for r in rows] == ["succeeded", "failed"]
    failed = rows[-1]
    assert failed["exit_code"] == 4 and "kept failing" in failed["error"]
    assert failed["cursor_before"] == rows[0]["cursor_after"] and failed["cursor_after"] is None
    assert "quorum-sms sync FAILED" in err and failed["run_id"] in err
    assert len(receiver.bodies) == 1
    text = receiver.bodies[0]["text"]
    assert set(receiver.bodies[0]) == {"text"}
    assert "FAILED" in text and "kept failing" in text and failed["run_id"] in text
    for output in (err, text, repr(rows)):
        assert API_KEY not in output and "secret" not in output.replace("secrets", "")


def test_an_unreachable_webhook_is_a_warning_not_a_new_failure(
    sync_env, simulator_factory, capsys, monkeypatch
):
    sim = simulator_factory(n_records=100)
    monkeypatch.setenv("QUORUM_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("QUORUM_API_KEY", "wrong-key-555")
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 3
    assert "warning: The failure webhook could not be reached" in err
    assert "127.0.0.1:9" not in err and "wrong-key-555" not in err


def test_a_killed_run_is_marked_interrupted_by_the_next(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=3000, faults=Faults(latency_ms=40))
    env = {**os.environ, "SOURCES__QUORUM__PAGE_SIZE": "100", "PYTHONPATH": str(ROOT)}
    process = run_sync_process(sim.base_url, env)
    wait_until(lambda: sim.stats.records_served >= 800)
    (row,) = history(sync_env)
    assert row["status"] == "running" and row["pid"] == process.pid
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    sim.faults = Faults()
    code, out, err = run(capsys, "status")
    assert code == 0 and "interrupted?" in out  # shown as such before any run marks it
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url, "--no-models")
    assert code == 0, err
    assert "1 earlier run(s) ended without recording it" in err
    rows = history(sync_env)
    assert [r["status"] for r in rows] == ["interrupted", "succeeded"]
    assert rows[0]["pid"] == process.pid and "killed" in rows[0]["error"]
    code, out, _ = run(capsys, "status")
    assert "interrupted " in out and "succeeded" in out


def test_freshness_builds_on_a_database_with_no_runs(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=100)
    assert run(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    import duckdb

    with duckdb.connect(str(sync_env)) as connection:
        connection.execute("delete from quorum_ops.sync_runs")
    build_models(sync_env)
    rows = query(sync_env, "select last_successful_sync_at, last_run_status, successful_runs, "
                           "live_records from analytics.sync_freshness")
    assert rows == [(None, None, 0, 100)]


def test_status_without_a_database_exits_2(sync_env, capsys):
    code, _, err = run(capsys, "status")
    assert code == 2 and "quorum-sms sync" in err


def test_busy_database_run_leaves_no_row_and_says_so(sync_env, simulator_factory, capsys,
                                                      monkeypatch, receiver):
    from pipelines.lock import database_lock

    sim = simulator_factory(n_records=100)
    monkeypatch.setenv("QUORUM_SMS__LOCK_WAIT_SECONDS", "0.2")
    monkeypatch.setenv("QUORUM_WEBHOOK_URL", receiver.url)
    held, done = threading.Event(), threading.Event()

    def other_run_holds_the_lock() -> None:
        with database_lock(Path(sync_env), 1):
            held.set()  # the lock is taken, not merely its file created
            done.wait(60)

    holder = threading.Thread(target=other_run_holds_the_lock)
    holder.start()
    try:
        assert held.wait(30), "the other run never got the lock"
        code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    finally:
        done.set()
        holder.join()
    assert code == 1 and "Another quorum-sms run is using" in err
    assert "Another quorum-sms run" in receiver.bodies[0]["text"]
    assert not sync_env.exists()


def test_the_run_history_opens_at_the_floor_of_auto_whatever_the_file(
    sync_env, simulator_factory, capsys, monkeypatch
):
    """The history writes a row, yet the checkpoint when its connection closes also merges
    the row groups the last load's deletes thinned, and DuckDB fills whatever ceiling it gets
    (after a 10M first sync: +230 MB at the file's share). Under `auto` it opens at the floor,
    where the model build, opened the same way otherwise, gets the file's share."""
    from pipelines.ops import history as history_module
    from pipelines.warehouse import database as database_module
    from pipelines.warehouse import memory
    from pipelines.warehouse.engine import open_warehouse

    # the run sets the process's connection defaults: they come back after the test
    monkeypatch.setattr(database_module, "_connection_defaults", {})
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", "auto")
    monkeypatch.setattr(memory, "FILE_SHARE", 0.000001)  # any file is then past the cap
    ceilings: list[str] = []
    real_open = history_module.open_warehouse

    def recording_open(target: Any, **options: Any) -> Any:
        warehouse = real_open(target, **options)
        ceilings.append(warehouse.query("select current_setting('memory_limit')").rows[0][0])
        return warehouse

    monkeypatch.setattr(history_module, "open_warehouse", recording_open)
    sim = simulator_factory(n_records=300)
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, err
    assert [row["status"] for row in history(sync_env)] == ["succeeded"]
    assert len(ceilings) >= 2, ceilings  # the row's start and its finish
    assert set(ceilings) == {"61.0 MiB"}, ceilings  # 64MB, read as DuckDB's decimal megabytes
    with open_warehouse(sync_env) as warehouse:  # as the model build opens it
        build_ceiling = warehouse.query("select current_setting('memory_limit')").rows[0][0]
    assert build_ceiling == "244.1 MiB"  # the cap, 256MB

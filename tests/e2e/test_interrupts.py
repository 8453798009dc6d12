"""Ctrl-C (SIGINT) or SIGTERM at any step of `quorum-sms sync`: exit 130 / 143, the history
row `interrupted`, the previous data and marts intact, and the next run exact.

Every signal is sent at a point the test observes (a request held by the simulator, a line on
stderr before a build that cannot finish on its own), never after a sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines.quorum.timestamps import parse_api_time
from pipelines.sync import pipelines_dir_for
from tests.e2e.test_sync import saved_cursor, schema_digest, table_digest, wait_until
from tests.e2e.truth import assert_warehouse_equals, warehouse_sendsms
from tests.ops.helpers import history

ROOT = Path(__file__).resolve().parents[2]
SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
SIGNAL_IDS = ["SIGINT", "SIGTERM"]

#: A model that runs for hours: a build that includes it can only end by the signal.
SLOW_MODEL = """-- depends_on:
-- test only: keeps the build busy until the test's signal lands
with numbers as (
    select i from range(1000000000000) as r(i)
),

final as (
    -- a sum nobody reads; its only job is to take long
    select sum(i) as total from numbers
)

select * from final
"""


def start_cli(*args: str) -> subprocess.Popen[str]:
    """`quorum-sms <args>` as its own process (signals go to it, not to pytest)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_sync(base_url: str, *extra: str) -> subprocess.Popen[str]:
    """`quorum-sms sync` against `base_url` as its own process."""
    return start_cli("sync", "--base-url", base_url, *extra)


def marts_digest(database: Path) -> str:
    """Every row of every analytics table: 'the marts are exactly as before' made checkable."""
    digest, tables = schema_digest(database, "analytics")
    assert tables, "no marts to compare"
    return digest


def synced_with_slow_model(base_url: str, database: Path, tmp_path: Path) -> tuple[str, Path]:
    """A first full sync (models built), then a copy of sql/ that also holds SLOW_MODEL.

    Returns:
        The digest of the marts the first sync built, and the copied model folder.
    """
    first = start_sync(base_url)
    assert first.wait(timeout=300) == 0, first.communicate()
    sql_dir = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql_dir)
    (sql_dir / "marts" / "zz_slow_for_tests.sql").write_text(SLOW_MODEL)
    return marts_digest(database), sql_dir


def last_run(database: Path) -> dict[str, Any]:
    return history(database)[-1]


@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=SIGNAL_IDS)
def test_interrupted_while_reading(sync_env, simulator_factory, signum, code):
    sim = simulator_factory(n_records=1500)
    first = start_sync(sim.base_url, "--no-models")
    assert first.wait(timeout=180) == 0, first.communicate()
    before = table_digest(sync_env)
    sim.world.advance(timedelta(days=1))
    sim.pause_api()
    process = start_sync(sim.base_url, "--no-models")
    try:
        # the run is reading: its first request of the night is held by the simulator
        assert sim.wait_for_held(1, timeout=120), "the run never asked for a page"
        process.send_signal(signum)
    finally:
        sim.resume_api()  # the held request may now finish; the signal is already pending
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert f"interrupted ({signal.Signals(signum).name})" in err
    assert "Traceback" not in err
    row = last_run(sync_env)
    assert (row["status"], row["exit_code"]) == ("interrupted", code), row
    assert "reading" in row["error"]
    assert table_digest(sync_env) == before
    again = start_sync(sim.base_url, "--no-models")
    assert again.wait(timeout=180) == 0, again.communicate()
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=SIGNAL_IDS)
def test_interrupted_while_reading_a_later_window(
    sync_env, simulator_factory, monkeypatch, signum, code
):
    """A window's load runs beside the next window's read: a signal during that read lets
    the load finish (it commits with its cursor), then the run stops; the next run is exact."""
    monkeypatch.setenv("QUORUM_RECORDS_PER_LOAD", "600")
    monkeypatch.setenv("SOURCES__QUORUM__PAGE_SIZE", "100")
    sim = simulator_factory(n_records=3000)
    state_file = pipelines_dir_for(sync_env) / "quorum_sms" / "state.json"
    process = start_sync(sim.base_url, "--no-models")
    try:
        # dlt writes the local state when a window's read ends; the next request is a later
        # window's, read while the window before it loads
        wait_until(lambda: state_file.exists() and '"last_value"' in state_file.read_text())
        sim.pause_api()
        assert sim.wait_for_held(1, timeout=120), "the run made no further request"
        process.send_signal(signum)
    finally:
        sim.resume_api()
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert f"interrupted ({signal.Signals(signum).name})" in err
    assert "Traceback" not in err
    assert last_run(sync_env)["status"] == "interrupted"
    cursor = saved_cursor(sync_env)
    assert cursor is not None, "the window loading beside the read was not committed"
    truth = sim.world.ground_truth()
    limit = parse_api_time(cursor)
    assert set(warehouse_sendsms(sync_env)) == {
        r["id"] for r in truth if parse_api_time(r["updated"]) <= limit
    }
    again = start_sync(sim.base_url, "--no-models")
    assert again.wait(timeout=180) == 0, again.communicate()
    assert_warehouse_equals(sync_env, sim.world.ground_truth())


@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=SIGNAL_IDS)
def test_interrupted_during_the_model_build(sync_env, simulator_factory, tmp_path, signum, code):
    sim = simulator_factory(n_records=1500)
    marts_before, sql_dir = synced_with_slow_model(sim.base_url, sync_env, tmp_path)
    sim.world.advance(timedelta(days=1))
    process = start_sync(sim.base_url, "--sql-dir", str(sql_dir))
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if "building the SQL models" in line:
            break
    else:
        pytest.fail(f"the run never reached the model build: {''.join(seen)}")
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    err = "".join(seen) + err
    assert process.returncode == code, out + err
    assert "Traceback" not in err, err
    assert f"interrupted ({signal.Signals(signum).name})" in err
    row = last_run(sync_env)
    assert (row["status"], row["exit_code"]) == ("interrupted", code), row
    assert "SQL model build" in row["error"] and "previous marts are unchanged" in row["error"]
    assert row["records_fetched"], "the loaded sync's counts were kept"
    assert marts_digest(sync_env) == marts_before
    # the data was loaded before the build: the next build shows it
    rebuilt = start_sync(sim.base_url)
    assert rebuilt.wait(timeout=300) == 0, rebuilt.communicate()
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    assert last_run(sync_env)["status"] == "succeeded"


@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=SIGNAL_IDS)
def test_models_command_interrupted(sync_env, simulator_factory, tmp_path, signum, code):
    sim = simulator_factory(n_records=600)
    marts_before, sql_dir = synced_with_slow_model(sim.base_url, sync_env, tmp_path)
    process = start_cli("models", "--sql-dir", str(sql_dir))
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "building the SQL models" in line, line
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, line + err
    assert "Traceback" not in err and f"interrupted ({signal.Signals(signum).name})" in err
    assert marts_digest(sync_env) == marts_before

"""Operator mistakes get one clear paragraph and exit 2, and change nothing on disk.

Issue 12, items 6 (the key over plain http), 7 (bad database paths, unknown destination) and
8 (`check` writes nothing). Every case runs the real command in-process against the
simulator over HTTP on loopback; "changes nothing" is a snapshot of every file and folder
(name, kind, mode, size, mtime, content digest) taken before and compared after.
"""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import UTC
from pathlib import Path

import duckdb
import pytest

from pipelines.lock import database_lock
from pipelines.simulator import SimulatorServer, World
from tests.conftest import API_KEY, API_USER
from tests.ops.helpers import query, run

Snapshot = dict[str, tuple[object, ...]]


def snapshot(root: Path) -> Snapshot:
    """Every path under `root` with what would show any change to it."""
    found: Snapshot = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        found[str(path.relative_to(root))] = (
            path.is_dir(), info.st_mode, info.st_size, info.st_mtime_ns, digest
        )
    return found


def api_args(command: str, base_url: str) -> list[str]:
    """The command line of `command`, with the API's address where the command takes one."""
    if command in ("sync", "check", "reconcile"):
        return [command, "--base-url", base_url]
    return [command]


# -- 6: the API key over plain http -------------------------------------------------------------

REMOTE_HTTP = "http://192.0.2.10:8000"  # TEST-NET-1: never routed, never answered


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "--base-url", REMOTE_HTTP],
        ["check", "--base-url", REMOTE_HTTP],
        ["reconcile", "--base-url", REMOTE_HTTP],
        ["send", "--supporter-id", "7", "--message", "hi", "--base-url", REMOTE_HTTP],
        ["send", "--supporter-id", "7", "--message", "hi", "--dry-run", "--base-url", REMOTE_HTTP],
    ],
    ids=["sync", "check", "reconcile", "send", "send-dry-run"],
)
def test_plain_http_to_another_host_is_refused(sync_env, capsys, tmp_path, argv):
    before = snapshot(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2, out + err
    assert "plain http to 192.0.2.10" in out + err and "allow_insecure_http" in out + err
    assert API_KEY not in out + err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "base_url", ["http://localhost:1", "http://127.9.9.9:1", "http://[::1]:1", "https://x.org"]
)
def test_loopback_and_https_are_allowed(sync_env, capsys, base_url):
    argv = ["send", "--supporter-id", "7", "--message", "hi", "--dry-run", "--base-url", base_url]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "Nothing was sent" in out


def outbound_address() -> str | None:
    """This machine's own non-loopback IPv4 address (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_allow_insecure_http_lets_a_sync_use_plain_http_on_the_network(
    sync_env, capsys, monkeypatch
):
    address = outbound_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    world = World(seed=5, n_records=300)
    with SimulatorServer(world, username=API_USER, api_key=API_KEY, host="0.0.0.0") as sim:
        base_url = f"http://{address}:{sim.port}"
        code, _, err = run(capsys, "sync", "--base-url", base_url, "--no-models")
        assert code == 2 and "plain http" in err
        assert sim.stats.requests == 0 and not sync_env.exists()
        monkeypatch.setenv("QUORUM_ALLOW_INSECURE_HTTP", "true")
        code, _, err = run(capsys, "sync", "--base-url", base_url, "--no-models")
        assert code == 0, err
    assert query(sync_env, "select count(*) from quorum_raw.sendsms")[0][0] == 300


# -- 7: database paths that cannot be used, an unknown destination ------------------------------

COMMANDS = ["sync", "models", "status", "report", "check"]


def not_a_database(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("id,name\n1,a spreadsheet someone saved here\n")


def damaged_database(path: Path) -> None:
    """A real DuckDB file whose first data blocks were overwritten (its main header survives)."""
    path.parent.mkdir(parents=True)
    with duckdb.connect(str(path)) as connection:
        connection.execute("create table t as select range as i from range(100000)")
    with path.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 8192)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("make", "needle"),
    [(not_a_database, "is not a DuckDB database"), (damaged_database, "damaged")],
    ids=["not-duckdb", "damaged"],
)
def test_a_database_path_that_holds_no_usable_database_is_exit_2_and_untouched(
    sync_env, simulator_factory, capsys, command, make, needle
):
    sim = simulator_factory(n_records=50)
    make(sync_env)
    before = snapshot(sync_env.parent)
    code, out, err = run(capsys, *api_args(command, sim.base_url))
    assert code == 2, out + err
    assert needle in out + err and str(sync_env) in " ".join((out + err).split())
    assert "Traceback" not in out + err
    assert snapshot(sync_env.parent) == before  # no .lock, no .dlt/, same bytes
    assert sim.stats.requests == 0


@pytest.mark.parametrize("command", ["sync", "models", "reconcile"])
def test_a_database_folder_that_cannot_be_created_is_exit_2_and_creates_nothing(
    sync_env, simulator_factory, capsys, monkeypatch, tmp_path, command
):
    sim = simulator_factory(n_records=50)
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    database = blocker / "nightly" / "quorum.duckdb"
    monkeypatch.setenv("QUORUM_DATABASE", str(database))
    before = snapshot(tmp_path)
    code, out, err = run(capsys, *api_args(command, sim.base_url))
    assert code == 2, out + err
    assert "cannot be written" in err and "is not a folder" in err
    assert snapshot(tmp_path) == before
    assert sim.stats.requests == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_a_read_only_folder_is_exit_2_and_creates_nothing(
    sync_env, simulator_factory, capsys, tmp_path
):
    sim = simulator_factory(n_records=50)
    sync_env.parent.mkdir()
    sync_env.parent.chmod(0o500)
    try:
        code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
        assert code == 2 and "may not write" in err
        assert list(sync_env.parent.iterdir()) == []
    finally:
        sync_env.parent.chmod(0o700)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_destination_is_exit_2_before_anything_is_written(
    sync_env, simulator_factory, capsys, monkeypatch, tmp_path, command
):
    sim = simulator_factory(n_records=50)
    monkeypatch.setenv("QUORUM_DESTINATION", "duckbd")
    before = snapshot(tmp_path)
    code, out, err = run(capsys, *api_args(command, sim.base_url))
    assert code == 2, out + err
    assert "'duckbd'" in out + err and "not a dlt destination" in out + err
    assert snapshot(tmp_path) == before
    assert sim.stats.requests == 0


# -- 8: check writes nothing --------------------------------------------------------------------


def test_check_on_a_new_database_creates_no_folder(sync_env, simulator_factory, capsys, tmp_path):
    sim = simulator_factory(n_records=50)
    before = snapshot(tmp_path)
    code, out, err = run(capsys, "check", "--base-url", sim.base_url)
    assert code == 0, out + err
    assert "will be created by the first sync" in out
    assert snapshot(tmp_path) == before and not sync_env.parent.exists()


def test_check_on_a_loaded_warehouse_changes_no_byte(
    sync_env, simulator_factory, capsys, tmp_path
):
    sim = simulator_factory(n_records=300)
    assert run(capsys, "sync", "--base-url", sim.base_url)[0] == 0
    (cursor,) = query(sync_env, "select max(updated) from quorum_raw.sendsms")[0]
    before = snapshot(tmp_path)
    code, out, err = run(capsys, "check", "--base-url", sim.base_url)
    assert code == 0, out + err
    assert "is writable" in out and "an incremental sync" in out
    assert f"the saved cursor {cursor.astimezone(UTC):%Y-%m-%d %H:%M:%S}" in out
    assert snapshot(tmp_path) == before


def test_check_while_a_run_holds_the_lock_says_so_and_writes_nothing(
    sync_env, simulator_factory, capsys, tmp_path
):
    sim = simulator_factory(n_records=100)
    assert run(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    with database_lock(sync_env, 0):
        before = snapshot(tmp_path)
        code, out, err = run(capsys, "check", "--base-url", sim.base_url)
        assert snapshot(tmp_path) == before
    assert code == 0, out + err
    assert "a run is using it right now" in out

"""`quorum-sms check` against the simulator."""

from __future__ import annotations

from tests.conftest import API_KEY
from tests.ops.helpers import run


def test_check_passes_and_describes_a_first_then_an_incremental_sync(
    sync_env, simulator_factory, capsys
):
    sim = simulator_factory(n_records=300)
    sim.stats.reset()
    code, out, err = run(capsys, "check", "--base-url", sim.base_url)
    assert code == 0, out + err
    assert sim.stats.requests == 1  # one small request proves the credentials
    assert "ok   credentials  accepted; the account holds 300 SendSMS records" in out
    assert "will be created by the first sync" in out
    assert "a first sync" in out and "2000-01-01" in out and str(sync_env) in out
    assert not sync_env.exists()  # a check writes nothing
    assert run(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    code, out, _ = run(capsys, "check", "--base-url", sim.base_url)
    assert code == 0
    assert f"{sync_env} is writable" in out
    assert "an incremental sync" in out and "minus the 3600 s lag window" in out
    assert API_KEY not in out


def test_check_reports_bad_credentials_with_exit_3(sync_env, simulator_factory, capsys,
                                                   monkeypatch):
    sim = simulator_factory(n_records=20)
    monkeypatch.setenv("QUORUM_API_KEY", "wrong-key-42")
    code, out, err = run(capsys, "check", "--base-url", sim.base_url)
    assert code == 3 and "FAIL credentials" in out and "wrong-key-42" not in out + err
    assert "ok   database" in out  # later steps still run


def test_check_reports_bad_settings_with_exit_2(sync_env, capsys, monkeypatch):
    monkeypatch.setenv("QUORUM_PII_PHONES", "hash")
    code, out, _ = run(capsys, "check", "--base-url", "http://127.0.0.1:9")
    assert code == 2 and "FAIL settings" in out and "pii_hash_key" in out


def test_check_reports_an_unwritable_database_folder(sync_env, simulator_factory, capsys,
                                                      monkeypatch, tmp_path):
    import os

    if os.geteuid() == 0:
        blocked = tmp_path / "file-not-folder"
        blocked.write_text("x")
        monkeypatch.setenv("QUORUM_DATABASE", str(blocked / "sub" / "quorum.duckdb"))
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        monkeypatch.setenv("QUORUM_DATABASE", str(locked / "quorum.duckdb"))
    sim = simulator_factory(n_records=20)
    code, out, _ = run(capsys, "check", "--base-url", sim.base_url)
    assert code == 2 and "FAIL database" in out

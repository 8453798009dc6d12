"""`quorum-sms send` against the simulator over HTTP."""

from __future__ import annotations

from pipelines.simulator import Faults
from tests.conftest import API_KEY
from tests.ops.helpers import query, run

MESSAGE = "Thanks for coming on Thursday \u2013 the next meeting is on the 14th. " * 3  # UCS-2


def test_a_send_appears_in_the_next_sync_with_its_segments(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=300)
    supporter = sim.world.supporter_ids()[3]
    code, dry, _ = run(capsys, "send", "--base-url", sim.base_url, "--supporter-id",
                       str(supporter), "--message", MESSAGE, "--dry-run")
    assert code == 0 and "3 segments (UCS-2, 195 UTF-16 units)" in dry
    code, out, err = run(capsys, "send", "--base-url", sim.base_url, "--supporter-id",
                         str(supporter), "--message", MESSAGE)
    assert code == 0, err
    record_id = int(out.split("record id ")[1].split(";")[0])
    assert f"texted supporter {supporter}" in out and "3 segments billed" in out
    assert "from +1" in out and "note:" not in err
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url, "--no-models")
    assert code == 0, err
    rows = query(sync_env, f"select supporter_id, effective_message_count, message_content "
                           f"from quorum_raw.sendsms where id = {record_id}")
    assert rows == [(supporter, 3, MESSAGE)]


def test_a_dry_run_sends_nothing(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=50)
    before = len(sim.world.ground_truth())
    sim.stats.reset()
    code, out, _ = run(capsys, "send", "--base-url", sim.base_url, "--supporter-id",
                       str(sim.world.supporter_ids()[0]), "--message", "Hi {there}", "--dry-run")
    assert code == 0
    assert "1 segment (GSM-7, 12 septets)" in out and "Nothing was sent" in out
    assert sim.stats.requests == 0
    assert len(sim.world.ground_truth()) == before


def test_a_5xx_is_not_retried_and_says_how_to_check(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=50)
    sim.faults = Faults(error_rate=1.0, error_statuses=(500,))
    sim.stats.reset()
    code, _, err = run(capsys, "send", "--base-url", sim.base_url, "--supporter-id",
                       str(sim.world.supporter_ids()[0]), "--message", "Hello")
    assert code == 4
    assert sim.stats.requests == 1 and sim.stats.requests_by_status == {500: 1}
    assert "NOT retried" in err and "quorum-sms sync" in err and API_KEY not in err


def test_a_timeout_is_an_unknown_outcome_and_not_retried(
    sync_env, simulator_factory, capsys, monkeypatch
):
    sim = simulator_factory(n_records=50)
    monkeypatch.setenv("SOURCES__QUORUM__TIMEOUT", "0.3")
    sim.faults = Faults(latency_ms=1500)
    sim.stats.reset()
    code, _, err = run(capsys, "send", "--base-url", sim.base_url, "--supporter-id",
                       str(sim.world.supporter_ids()[0]), "--message", "Hello")
    assert code == 4
    assert "may or may not have been sent" in err and "NOT retried" in err
    sim.faults = Faults()
    assert sim.stats.requests <= 1  # the one POST (counted once the server answers it)


def test_a_400_quotes_the_api_and_a_401_exits_3(sync_env, simulator_factory, capsys, monkeypatch):
    sim = simulator_factory(n_records=50)
    code, _, err = run(capsys, "send", "--base-url", sim.base_url, "--supporter-id", "12",
                       "--message", "Hello")
    assert code == 1 and "Nothing was sent" in err and "upporter" in err
    monkeypatch.setenv("QUORUM_API_KEY", "wrong-key-987")
    code, _, err = run(capsys, "send", "--base-url", sim.base_url, "--supporter-id",
                       str(sim.world.supporter_ids()[0]), "--message", "Hello")
    assert code == 3 and "QUORUM_API_KEY" in err and "wrong-key-987" not in err


def test_bad_usage_exits_2_without_a_request(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=50)
    sim.stats.reset()
    for args in (["--supporter-id", "0", "--message", "hi"],
                 ["--supporter-id", "880001", "--message", "   "],
                 ["--supporter-id", "880001", "--message", "x" * 1600]):
        code, _, err = run(capsys, "send", "--base-url", sim.base_url, *args)
        assert code == 2, err
        assert "Nothing was sent" in err
    assert sim.stats.requests == 0

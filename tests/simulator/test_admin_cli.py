"""The admin endpoints (`/_simulator/`) and the `quorum-sms simulate` command line."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from pipelines.errors import ApiUnavailableError, ConfigError
from pipelines.simulator import SimulatorServer
from pipelines.simulator import cli as sim_cli
from tests.simulator.conftest import KEY, USER, Api

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="quorum-sms")
    sim_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_admin_needs_the_credentials(fresh_api: Api) -> None:
    response = fresh_api.get("/_simulator/stats", auth=False)
    assert response.status_code == 401 and response.content == b""


def test_admin_advance_touch_delete(fresh: SimulatorServer, fresh_api: Api) -> None:
    world = fresh.world
    start = world.now
    response = fresh_api.client.post("/_simulator/advance", params={"username": USER,
                                     "api_key": KEY}, json={"days": 1, "hours": 2})
    assert response.status_code == 200
    assert world.now - start == timedelta(days=1, hours=2)
    assert response.json()["records"] == world.record_count()
    ids = [r["id"] for r in world.ground_truth()][:3]
    touched = fresh_api.client.post("/_simulator/touch", params={"username": USER,
                                    "api_key": KEY}, json={"ids": ids}).json()
    assert touched["ids"] == ids
    by_fraction = fresh_api.client.post("/_simulator/touch", params={
        "username": USER, "api_key": KEY, "fraction": "0.01"}).json()
    assert len(by_fraction["ids"]) == round(0.01 * world.record_count())
    count = world.record_count()
    fresh_api.client.post("/_simulator/delete", params={"username": USER, "api_key": KEY},
                          json={"ids": ids[:2]})
    assert world.record_count() == count - 2
    bad = fresh_api.client.post("/_simulator/touch", params={"username": USER, "api_key": KEY},
                                json={})
    assert bad.status_code == 400
    recent = fresh_api.client.post("/_simulator/touch", params={"username": USER, "api_key": KEY},
                                   json={"fraction": 0.01, "recent_share": 0.5})
    assert recent.status_code == 200
    assert len(recent.json()["ids"]) == round(0.01 * world.record_count())
    out_of_range = fresh_api.client.post(
        "/_simulator/touch", params={"username": USER, "api_key": KEY},
        json={"fraction": 0.01, "recent_share": 2})
    assert out_of_range.status_code == 400
    with_ids = fresh_api.client.post(
        "/_simulator/touch", params={"username": USER, "api_key": KEY},
        json={"ids": ids[2:], "recent_share": 0.5})
    assert with_ids.status_code == 400 and b"not with ids" in with_ids.content


def test_admin_ground_truth_streams_json_lines(fresh: SimulatorServer, fresh_api: Api) -> None:
    response = fresh_api.get("/_simulator/ground_truth")
    assert response.status_code == 200
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert lines == fresh.world.ground_truth()


def test_admin_faults_and_stats(fresh: SimulatorServer, fresh_api: Api) -> None:
    params = {"username": USER, "api_key": KEY}
    assert fresh_api.get("/_simulator/faults").json()["error_rate"] == 0.0
    changed = fresh_api.client.post("/_simulator/faults", params=params,
                                    json={"error_rate": 1.0, "error_statuses": [503]}).json()
    assert changed["error_statuses"] == [503] and fresh.faults.error_rate == 1.0
    assert fresh_api.get("/api/sendsms/").status_code == 503
    stats = fresh_api.get("/_simulator/stats").json()
    assert stats["requests_by_status"] == {"503": 1} and stats["now"].endswith("Z")
    fresh_api.client.post("/_simulator/faults", params=params, json={"reset": True})
    assert fresh.faults.error_rate == 0.0
    assert fresh_api.client.post("/_simulator/faults", params=params,
                                 json={"nonsense": 1}).status_code == 400
    fresh_api.client.post("/_simulator/stats", params=params, json={"reset": True})
    assert fresh.stats.requests == 0
    supporters = fresh_api.get("/_simulator/supporters").json()["supporter_ids"]
    assert supporters == fresh.world.supporter_ids()


def test_cli_drives_a_running_simulator(fresh: SimulatorServer, capsys: pytest.CaptureFixture
                                        ) -> None:
    url = ["--url", fresh.base_url]
    start = fresh.world.now
    args = parse(["simulate", "advance", "--days", "1", "--hours", "3", *url])
    assert args.handler(args) == 0
    assert fresh.world.now - start == timedelta(days=1, hours=3)
    assert "clock now" in capsys.readouterr().out
    ids = [r["id"] for r in fresh.world.ground_truth()][:2]
    args = parse(["simulate", "touch", "--ids", ",".join(map(str, ids)), *url])
    assert args.handler(args) == 0
    args = parse(["simulate", "touch", "--fraction", "0.01", "--recent-share", "0.9", *url])
    assert args.handler(args) == 0
    assert f"touched {round(0.01 * fresh.world.record_count())} records" in capsys.readouterr().out
    args = parse(["simulate", "delete", "--ids", str(ids[0]), *url])
    assert args.handler(args) == 0
    assert ids[0] not in {r["id"] for r in fresh.world.ground_truth()}
    args = parse(["simulate", "faults", "--error-rate", "0.5", "--refuse-order-by", *url])
    assert args.handler(args) == 0
    assert fresh.faults.error_rate == 0.5 and fresh.faults.refuse_order_by
    args = parse(["simulate", "faults", "--malformed-kinds", f"{ids[1]}:bad_uri",
                  "--duplicate-ids", str(ids[1]), *url])
    assert args.handler(args) == 0
    assert fresh.faults.malformed_kinds == {ids[1]: "bad_uri"}
    assert fresh.faults.duplicate_ids == (ids[1],) and fresh.faults.error_rate == 0.5
    args = parse(["simulate", "faults", "--reset", *url])
    assert args.handler(args) == 0 and fresh.faults.error_rate == 0.0
    assert fresh.faults.malformed_kinds == {}
    args = parse(["simulate", "stats", *url])
    assert args.handler(args) == 0
    assert '"requests"' in capsys.readouterr().out


def test_a_bad_malformed_kind_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(["simulate", "faults", "--malformed-kinds", "12:sideways"])
    assert exit_info.value.code == 2
    assert "KIND one of updated, event_timestamp" in capsys.readouterr().err


def test_cli_errors_are_typed(fresh: SimulatorServer) -> None:
    args = parse(["simulate", "advance", "--days", "1", "--url", fresh.base_url,
                  "--api-key", "wrong"])
    with pytest.raises(ConfigError):
        args.handler(args)
    args = parse(["simulate", "touch", "--ids", "1", "--recent-share", "0.5", "--url",
                  fresh.base_url])
    with pytest.raises(ConfigError, match="--fraction"):
        args.handler(args)
    args = parse(["simulate", "stats", "--url", "http://127.0.0.1:9"])
    with pytest.raises(ApiUnavailableError):
        args.handler(args)
    args = parse(["simulate", "--error-rate", "2"])
    with pytest.raises(ConfigError):
        sim_cli.build_faults(args)


def test_cli_flags_build_the_faults() -> None:
    args = parse(["simulate", "--latency-ms", "5", "--jitter-ms", "2", "--rate-limit", "10",
                  "--error-rate", "0.1", "--error-statuses", "500,504", "--drop-rate", "0.2",
                  "--truncate-rate", "0.3", "--malformed-ids", "7,8", "--malformed-rate",
                  "0.01", "--mutate-while-paging", "4", "--refuse-range-filters",
                  "--ignore-order-by", "--fault-seed", "9",
                  "--malformed-kinds", "11:missing_id,12:lone_surrogate", "--duplicate-ids", "13"])
    faults = sim_cli.build_faults(args)
    assert faults.to_dict() == {
        "latency_ms": 5.0, "jitter_ms": 2.0, "rate_limit_per_s": 10.0, "error_rate": 0.1,
        "error_statuses": [500, 504], "drop_rate": 0.2, "truncate_rate": 0.3,
        "malformed_ids": [7, 8], "malformed_rate": 0.01, "mutate_while_paging": 4,
        "refuse_range_filters": True, "refuse_order_by": False, "ignore_order_by": True,
        "seed": 9, "malformed_kinds": {"11": "missing_id", "12": "lone_surrogate"},
        "duplicate_ids": [13],
    }


def test_cli_runs_the_server_in_the_foreground_until_interrupted() -> None:
    script = (
        "import argparse, sys\n"
        "from pipelines.simulator import cli\n"
        "p = argparse.ArgumentParser(); cli.register(p.add_subparsers(dest='c'))\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "simulate", "--port", "0", "--records", "300",
         "--seed", "3", "--api-key", "s3cret"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for _ in range(10):
            line = proc.stdout.readline()
            if "listening on" in line:
                url = line.rsplit(" ", 1)[1].strip()
                break
        assert url.startswith("http://127.0.0.1:")
        response = httpx.get(f"{url}/api/sendsms/", params={"username": "demo",
                                                            "api_key": "s3cret"})
        assert response.json()["meta"]["total_count"] == 300
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "s3cret" not in out + err

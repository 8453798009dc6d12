"""Each fault switch, shown happening over real HTTP."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from pipelines.simulator import Faults, SimulatorServer, World
from tests.simulator.conftest import KEY, USER, Api


def test_latency_and_jitter_delay_every_api_request(fresh: SimulatorServer, fresh_api: Api
                                                    ) -> None:
    fresh.faults = Faults(latency_ms=150, jitter_ms=50)
    started = time.perf_counter()
    assert fresh_api.get("/api/sendsms/", {"limit": 1}).status_code == 200
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    assert fresh_api.get("/_simulator/stats").status_code == 200  # admin: no faults
    assert time.perf_counter() - started < 0.15


class ManualClock:
    """A monotonic clock the test moves by hand (the rate limiter reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_answers_429_with_retry_after() -> None:
    clock = ManualClock()
    world = World(seed=11, n_records=200)
    with SimulatorServer(world, username=USER, api_key=KEY, faults=Faults(rate_limit_per_s=2),
                         clock=clock) as sim:
        api = Api(sim.base_url)
        try:
            # The clock stands still: the burst of 2 passes, the rest is limited.
            responses = [api.get("/api/sendsms/", {"limit": 1}) for _ in range(8)]
            assert [r.status_code for r in responses] == [200, 200] + [429] * 6
            for response in responses[2:]:
                assert response.content == b""
                assert int(response.headers["Retry-After"]) == 1
            assert sim.stats.requests_by_status[429] == 6
            clock.now += 0.4  # under one token: still limited
            assert api.get("/api/sendsms/", {"limit": 1}).status_code == 429
            clock.now += 0.2  # 0.6 s in all at 2/s: a token
            assert api.get("/api/sendsms/", {"limit": 1}).status_code == 200
        finally:
            api.close()


def test_error_500_has_tastypies_body(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults = Faults(error_rate=1.0, error_statuses=(500,))
    response = fresh_api.get("/api/sendsms/")
    assert response.status_code == 500
    assert set(response.json()) == {"error_message"}
    post = fresh_api.post("/api/sendsms/send_individual_sms/",
                          {"supporter_id": fresh.world.supporter_ids()[0], "message": "hi"})
    assert post.status_code == 500 and "error_message" in post.json()


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_have_an_html_body(fresh: SimulatorServer, fresh_api: Api, status: int
                                          ) -> None:
    fresh.faults = Faults(error_rate=1.0, error_statuses=(status,))
    response = fresh_api.get("/api/sendsms/")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert b"<html>" in response.content


def test_error_rate_is_a_probability_and_reproducible(fresh: SimulatorServer, fresh_api: Api
                                                      ) -> None:
    def run() -> list[int]:
        fresh.faults = Faults(error_rate=0.3, seed=42)
        return [fresh_api.get("/api/sendsms/", {"limit": 1}).status_code for _ in range(40)]

    first = run()
    assert first == run()
    assert 0 < sum(s != 200 for s in first) < 40
    assert set(first) <= {200, 500, 502, 503}


def test_a_dropped_connection_cuts_the_body_short(fresh: SimulatorServer, fresh_api: Api
                                                  ) -> None:
    fresh.faults = Faults(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        fresh_api.get("/api/sendsms/", {"limit": 50})
    fresh.faults = Faults()
    assert fresh_api.get("/api/sendsms/", {"limit": 50}).status_code == 200
    assert fresh.stats.faults_injected["drop"] == 1


def test_a_truncated_body_is_a_complete_response_with_cut_json(fresh: SimulatorServer,
                                                               fresh_api: Api) -> None:
    fresh.faults = Faults(truncate_rate=1.0)
    response = fresh_api.get("/api/sendsms/", {"limit": 50})
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


def test_malformed_ids_serve_an_unparseable_updated(fresh: SimulatorServer, fresh_api: Api
                                                    ) -> None:
    truth = fresh.world.ground_truth()
    bad = truth[3]["id"]
    fresh.faults = Faults(malformed_ids=(bad,))
    objects = fresh_api.get("/api/sendsms/", {"limit": 10}).json()["objects"]
    assert [o["id"] for o in objects if o["updated"] == "not-a-date"] == [bad]
    assert fresh_api.get(f"/api/sendsms/{bad}/").json()["updated"] == "not-a-date"
    assert fresh.world.ground_truth()[3]["updated"] != "not-a-date"  # the truth stays clean


def test_malformed_rate_spoils_a_stable_share_of_records(fresh: SimulatorServer, fresh_api: Api
                                                         ) -> None:
    fresh.faults = Faults(malformed_rate=0.1, seed=3)
    first, _ = fresh_api.list_all({"limit": 1000})
    second, _ = fresh_api.list_all({"limit": 1000})
    spoiled = [o["id"] for o in first if o["updated"] == "not-a-date"]
    assert 0.05 * len(first) < len(spoiled) < 0.15 * len(first)
    assert spoiled == [o["id"] for o in second if o["updated"] == "not-a-date"]


def test_mutation_while_paging_makes_naive_offset_paging_lose_records(
    fresh: SimulatorServer, fresh_api: Api
) -> None:
    fresh.faults = Faults(mutate_while_paging=20, seed=1)
    started = fresh.world.now
    before = fresh.world.record_count()
    objects, metas = fresh_api.list_all([("limit", "100"), ("order_by", "updated"),
                                         ("order_by", "id")])
    truth_ids = {r["id"] for r in fresh.world.ground_truth()}
    seen = {o["id"] for o in objects}
    assert fresh.world.now > started  # a second passes between pages
    assert fresh.world.record_count() > before  # new records arrived
    assert truth_ids - seen, "naive offset paging must miss records that moved"
    assert len(objects) != len(seen) or truth_ids - seen  # duplicates or losses
    assert fresh.stats.faults_injected["mutate_while_paging"] == len(metas) - 1


def test_refuse_range_filters(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults = Faults(refuse_range_filters=True)
    for field in ("updated", "created", "id"):
        response = fresh_api.get("/api/sendsms/", {f"{field}__gte": "2026-01-01T00:00:00Z"
                                                   if field != "id" else "1"})
        assert response.status_code == 400
        assert response.json() == {"error": f"The '{field}' field does not allow filtering."}
    assert fresh_api.get("/api/sendsms/", {"opens__gt": 0}).status_code == 200


def test_refuse_order_by(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults = Faults(refuse_order_by=True)
    for order in ("updated", "id", "-created"):
        response = fresh_api.get("/api/sendsms/", {"order_by": order})
        assert response.status_code == 400
        assert response.json() == {
            "error": f"The '{order.lstrip('-')}' field does not allow ordering."
        }
    assert fresh_api.get("/api/sendsms/").status_code == 200


def test_ignore_order_by_serves_id_order(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults = Faults(ignore_order_by=True)
    objects = fresh_api.get("/api/sendsms/", [("order_by", "-updated"), ("limit", "200")]
                            ).json()["objects"]
    ids = [o["id"] for o in objects]
    assert ids == sorted(ids)


def test_faults_never_touch_the_admin_endpoints(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults = Faults(error_rate=1.0, drop_rate=1.0, rate_limit_per_s=0.001)
    for _ in range(3):
        assert fresh_api.get("/_simulator/stats").status_code == 200


def test_bad_fault_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Faults(error_rate=1.5)
    with pytest.raises(ValueError):
        Faults(rate_limit_per_s=0)
    with pytest.raises(ValueError):
        Faults().updated({"no_such_fault": 1})


def test_stats_count_requests_records_and_reset(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.stats.reset()
    fresh_api.get("/api/sendsms/", {"limit": 7})
    fresh_api.get("/api/sendsms/", {"limit": "bad"})
    fresh_api.get("/api/sendsms/", auth=False)
    assert fresh.stats.requests == 3
    assert fresh.stats.requests_by_status == {200: 1, 400: 1, 401: 1}
    assert fresh.stats.records_served == 7
    fresh.stats.reset()
    assert fresh.stats.requests == 0 and fresh.stats.requests_by_status == {}

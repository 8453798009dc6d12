"""The HTTP client against the simulator: retries, errors, redaction."""

from __future__ import annotations

import logging

import pytest

from pipelines.errors import ApiBadRequestError, ApiUnavailableError, AuthError, ConfigError
from pipelines.quorum.client import QuorumClient, validate_base_url
from pipelines.redaction import redact, register_secret
from pipelines.simulator import Faults
from tests.conftest import API_KEY, API_USER


def client_for(base_url: str, **kwargs) -> QuorumClient:
    return QuorumClient(
        base_url, API_USER, kwargs.pop("api_key", API_KEY), backoff_initial=0.01, **kwargs
    )


def test_redact_masks_the_key_in_urls_and_anywhere_else():
    register_secret("abc-secret-987")
    text = "GET /api/sendsms/?limit=1&username=u&api_key=abc-secret-987 failed; key abc-secret-987"
    assert redact(text) == "GET /api/sendsms/?limit=1&username=u&api_key=*** failed; key ***"
    assert redact("api_key=unregistered-value&x=1") == "api_key=***&x=1"


def test_401_is_not_retried_and_names_the_fix(simulator_factory):
    sim = simulator_factory(n_records=50)
    with (
        client_for(sim.base_url, api_key="wrong-key-xyz") as client,
        pytest.raises(AuthError) as caught,
    ):
        client.get_json("/api/sendsms/", [("limit", 1)])
    assert sim.stats.requests == 1
    assert "QUORUM_API_KEY" in str(caught.value)
    assert "wrong-key-xyz" not in str(caught.value)


def test_400_quotes_the_api_message(simulator_factory):
    sim = simulator_factory(n_records=50)
    with client_for(sim.base_url) as client, pytest.raises(ApiBadRequestError) as caught:
        client.get_json("/api/sendsms/", [("limit", -5)])
    assert sim.stats.requests == 1
    assert "HTTP 400" in str(caught.value)
    assert len(str(caught.value)) > 60


def test_retries_5xx_then_gives_up_with_exit_code_4(simulator_factory):
    sim = simulator_factory(n_records=50, faults=Faults(error_rate=1.0))
    with (
        client_for(sim.base_url, max_attempts=3) as client,
        pytest.raises(ApiUnavailableError) as caught,
    ):
        client.get_json("/api/sendsms/", [("limit", 1)])
    assert sim.stats.requests == 3
    assert caught.value.exit_code == 4
    assert API_KEY not in str(caught.value)
    assert client.stats.retries == 2


def test_retry_after_is_honoured(simulator_factory):
    import time

    sim = simulator_factory(n_records=50, faults=Faults(rate_limit_per_s=1))
    with client_for(sim.base_url) as client:
        # Requests back to back until one is answered 429: on a fast machine the second one
        # is; on a stalled one the bucket may have refilled in between, so look, don't assume.
        for _ in range(10):
            limited_before = sim.stats.requests_by_status.get(429, 0)
            started = time.monotonic()
            body = client.get_json("/api/sendsms/", [("limit", 1)])
            waited = time.monotonic() - started
            if sim.stats.requests_by_status.get(429, 0) > limited_before:
                break
        else:
            pytest.fail("the simulator never answered 429: the test proves nothing")
    assert body["meta"]["limit"] == 1
    assert client.stats.retries >= 1
    # backoff alone would retry within milliseconds; `Retry-After: 1` says at least a second
    # (a lower bound only: a busy machine may take longer)
    assert waited >= 1.0


def test_dropped_and_truncated_bodies_are_retried(simulator_factory):
    sim = simulator_factory(n_records=300, faults=Faults(drop_rate=0.5, truncate_rate=0.3, seed=1))
    with client_for(sim.base_url, max_attempts=20) as client:
        for offset in range(0, 300, 50):
            body = client.get_json("/api/sendsms/", [("limit", 50), ("offset", offset)])
            assert len(body["objects"]) == 50
    assert client.stats.retries > 0


def test_http_logs_never_show_the_key(simulator_factory, caplog):
    sim = simulator_factory(n_records=50)
    with caplog.at_level(logging.DEBUG), client_for(sim.base_url) as client:
        logging.getLogger("httpx").setLevel(logging.DEBUG)
        client.get_json("/api/sendsms/", [("limit", 1)])
    assert caplog.records, "the HTTP stack logged nothing at DEBUG: the test proves nothing"
    assert all(API_KEY not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("url", ["www.quorum.us", "https://quorum.us", "https://x/?a=1", ""])
def test_bad_base_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        validate_base_url(url)


def test_a_page_body_is_freed_when_the_caller_drops_it_not_by_the_cycle_collector(
    simulator_factory,
):
    # httpx responses sit in a reference cycle; a body they held stayed resident until the
    # cycle collector ran (dozens of ~1 MB bodies during a sync). With the collector off,
    # nothing may still hold the bytes once the decoded page is returned.
    import gc

    import httpx

    sim = simulator_factory(n_records=300)
    with client_for(sim.base_url) as client:
        gc.collect()
        gc.disable()
        try:
            body = client.get_decoded("/api/sendsms/", [("limit", 300)], lambda raw: len(raw))
            held = [
                obj
                for obj in gc.get_objects()
                if isinstance(obj, httpx.Response) and len(obj.__dict__.get("_content", b"")) > 1000
            ]
        finally:
            gc.enable()
    assert body is not None and body > 10_000  # a real page was read
    assert held == []

"""Fixtures: small simulated worlds served over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import orjson
import pytest

from pipelines.simulator import SimulatorServer, World

USER = "demo"
KEY = "demo-key"
N_RECORDS = 3000

Params = Sequence[tuple[str, Any]] | dict[str, Any] | None


class Api:
    """A bare httpx client that adds the credentials and follows `meta.next` links."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def get(self, path: str, params: Params = None, auth: bool = True) -> httpx.Response:
        pairs = list(params.items()) if isinstance(params, dict) else list(params or [])
        if auth:
            pairs += [("username", USER), ("api_key", KEY)]
        return self.client.get(path, params=pairs)

    def post(self, path: str, body: Any, auth: bool = True, raw: bytes | None = None
             ) -> httpx.Response:
        params = [("username", USER), ("api_key", KEY)] if auth else []
        content = raw if raw is not None else orjson.dumps(body)
        return self.client.post(path, params=params, content=content,
                                headers={"Content-Type": "application/json"})

    def list_all(self, params: Params = None) -> tuple[list[dict[str, Any]], list[dict]]:
        """Every object of a listing, following `next` to the end; also every page's meta."""
        first = self.get("/api/sendsms/", params)
        assert first.status_code == 200, first.text
        body = first.json()
        objects, metas = list(body["objects"]), [body["meta"]]
        while body["meta"]["next"]:
            response = self.client.get(body["meta"]["next"])
            assert response.status_code == 200, response.text
            body = response.json()
            objects.extend(body["objects"])
            metas.append(body["meta"])
        return objects, metas

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def world() -> World:
    """A shared world that tests must not change (use `fresh` for that)."""
    return World(seed=7, n_records=N_RECORDS)


@pytest.fixture(scope="module")
def sim(world: World) -> Iterator[SimulatorServer]:
    with SimulatorServer(world, username=USER, api_key=KEY) as server:
        yield server


@pytest.fixture(scope="module")
def truth(world: World) -> list[dict[str, Any]]:
    return world.ground_truth()


@pytest.fixture
def api(sim: SimulatorServer) -> Iterator[Api]:
    client = Api(sim.base_url)
    yield client
    client.close()


@pytest.fixture
def fresh() -> Iterator[SimulatorServer]:
    """A server over its own small world, for tests that change the world or the faults."""
    with SimulatorServer(World(seed=11, n_records=1500), username=USER, api_key=KEY) as server:
        yield server


@pytest.fixture
def fresh_api(fresh: SimulatorServer) -> Iterator[Api]:
    client = Api(fresh.base_url)
    yield client
    client.close()

"""The simulator's HTTP server: a threaded HTTP/1.1 (keep-alive) server over a `World`.

`/api/...` is the Quorum API of the contract, with authentication and faults. `/_simulator/...`
is the admin API (same credentials, never faulted) that drives a running simulator from another
process: move the clock, touch or delete records, read the ground truth, switch faults, stats.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from pipelines.simulator import api, spoil
from pipelines.simulator.faults import Faults, FaultState, Stats
from pipelines.simulator.timefmt import iso_z
from pipelines.simulator.world import World

_HTML_ERRORS = {
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _html_error(status: int) -> bytes:
    title = f"{status} {_HTML_ERRORS.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1>"
        "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


@dataclass(frozen=True)
class _Request:
    """One request as the handlers see it: the query parsed, the body read."""

    method: str
    path: str
    params: list[tuple[str, str]]
    body: bytes


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    sim: SimulatorServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "QuorumSimulator/1.0"
    timeout = 120  # idle keep-alive connections are closed after this
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.sim._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log (URLs carry the api_key)."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _write(self, response: api.Response, cut: int | None = None, drop: bool = False) -> None:
        body = response.body
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        if drop:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: cut or 0])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if cut is not None:
            body = body[:cut]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        sim = self.server.sim
        parts = urlsplit(self.path)
        request = _Request(
            method, parts.path, parse_qsl(parts.query, keep_blank_values=True), self._read_body()
        )
        if request.path.startswith("/api/"):
            self._api(sim, request)
        elif request.path.startswith("/_simulator/"):
            self._admin(sim, request)
        else:
            self._write(api.Response(404, content_type="text/html; charset=utf-8"))

    # ------------------------------------------------------------------ the Quorum API

    def _api(self, sim: SimulatorServer, request: _Request) -> None:
        sim._hold_if_paused()
        state = sim._fault_state
        stats = sim.stats
        delay = state.delay_s()
        if delay:
            time.sleep(delay)
        retry = state.retry_after()
        if retry is not None:
            stats.count(429, fault="rate_limit")
            self._write(api.Response(429, headers=[("Retry-After", str(retry))],
                                     content_type="text/html; charset=utf-8"))
            return
        if not sim._authorized(request.params):
            stats.count(401)
            self._write(api.Response(401, content_type="text/html; charset=utf-8"))
            return
        injected = state.error_status()
        if injected is not None:
            if injected == 500:
                response = api.Response(
                    500, orjson.dumps({"error_message": api.SERVER_ERROR_MESSAGE})
                )
            else:
                response = api.Response(
                    injected, _html_error(injected), content_type="text/html; charset=utf-8"
                )
            stats.count(injected, fault=f"error_{injected}")
            self._write(response)
            return
        response = self._route(sim, state, request)
        fault = state.body_fault(len(response.body)) if response.status < 300 else None
        if fault is not None:
            kind, cut = fault
            stats.count(response.status, response.records, fault=kind, page=response.page)
            self._write(response, cut=cut, drop=kind == "drop")
            return
        stats.count(response.status, response.records, page=response.page)
        self._write(response)

    def _route(self, sim: SimulatorServer, state: FaultState, request: _Request) -> api.Response:
        faults = state.faults
        caps = api.Capabilities(
            range_filters=not faults.refuse_range_filters,
            order_by=not faults.refuse_order_by,
            ignore_order_by=faults.ignore_order_by,
        )
        postprocess = sim._record_faults(state)
        method = request.method
        bits = [b for b in request.path.split("/") if b]
        if bits[:2] != ["api", "sendsms"]:
            return api.Response(404, content_type="text/html; charset=utf-8")
        rest = bits[2:]
        if not rest:
            if method != "GET":
                return api.Response(405, headers=[("Allow", "GET")])
            mutation = state.mutation()
            if mutation is not None:
                ids, created, seed = mutation
                sim.world.mutate(ids, created, seed)
                sim.stats.count_fault("mutate_while_paging")
            response = api.list_sendsms(sim.world, request.params, caps, postprocess)
            state.remember_served(response.record_ids)
            return response
        if rest == ["send_individual_sms"]:
            if method != "POST":
                return api.Response(405, headers=[("Allow", "POST")])
            return api.send_individual_sms(sim.world, request.body)
        if len(rest) == 1:
            if method != "GET":
                return api.Response(405, headers=[("Allow", "GET")])
            return api.detail_sendsms(sim.world, rest[0], postprocess)
        return api.Response(404, content_type="text/html; charset=utf-8")

    # ------------------------------------------------------------------ admin

    def _admin(self, sim: SimulatorServer, request: _Request) -> None:
        if not sim._authorized(request.params):
            self._write(api.Response(401, content_type="text/html; charset=utf-8"))
            return
        try:
            payload: dict[str, Any] = orjson.loads(request.body) if request.body else {}
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
        except (orjson.JSONDecodeError, ValueError) as exc:
            self._write(api.error(400, f"bad admin request body: {exc}"))
            return
        for key, value in request.params:
            if key not in ("username", "api_key"):
                payload.setdefault(key, value)
        action = request.path[len("/_simulator/") :].strip("/")
        try:
            if action == "ground_truth" and request.method == "GET":
                self._stream_ground_truth(sim.world)
                return
            result = sim.admin(request.method, action, payload)
        except (ValueError, TypeError) as exc:
            self._write(api.error(400, str(exc)))
            return
        if result is None:
            self._write(api.Response(404, content_type="text/html; charset=utf-8"))
            return
        self._write(api.Response(200, orjson.dumps(result)))

    def _stream_ground_truth(self, world: World) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with world.lock:
            for part in world.iter_ground_truth_json(chunk=5000):
                data = ("\n".join(part) + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


class SimulatorServer:
    """The simulator on a real socket, served from a background thread.

    Use as a context manager (`with SimulatorServer(world) as sim: ...`) or call `start()` and
    `stop()`. `port=0` binds a free port; `base_url` tells which.
    """

    def __init__(
        self,
        world: World,
        username: str = "demo",
        api_key: str = "demo-key",
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare a server (nothing is bound until `start()`).

        Args:
            world: the world to serve.
            username: the accepted `username`.
            api_key: the accepted `api_key`.
            faults: the faults in force at start (default none).
            host: the address to listen on.
            port: the port; 0 picks a free one.
            clock: monotonic seconds for the rate limiter; tests pass one they move by hand.
        """
        self.world = world
        self.username = username
        self.api_key = api_key
        self.host = host
        self.port = port
        self.stats = Stats()
        self._clock = clock
        self._fault_state = FaultState(faults or Faults(), clock)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self._held = 0
        self._held_changed = threading.Condition()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SimulatorServer:
        """Bind and serve in a background thread.

        Raises:
            OSError: when the address cannot be bound (port in use, bad host).
        """
        httpd = _HttpServer((self.host, self.port), _Handler)
        httpd.sim = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name="quorum-simulator", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        httpd = self._httpd
        if httpd is None:
            return
        self._open.set()  # let held requests finish so their threads can end
        httpd.shutdown()
        httpd.server_close()
        with self._connections_lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def pause_api(self) -> None:
        """Hold every `/api/` request from now on until `resume_api()` (admin stays open).

        A handshake for tests: freeze a client mid-run (say after `stats.wait_for_pages(2)`),
        do something else meanwhile, then let it go on, without timing luck.
        """
        self._open.clear()

    def resume_api(self) -> None:
        """Answer `/api/` requests again, the held ones first."""
        self._open.set()

    def wait_for_held(self, n: int, timeout: float) -> bool:
        """Block until `n` `/api/` requests are held by `pause_api()`; False on timeout."""
        with self._held_changed:
            return self._held_changed.wait_for(lambda: self._held >= n, timeout)

    def _hold_if_paused(self) -> None:
        if self._open.is_set():
            return
        with self._held_changed:
            self._held += 1
            self._held_changed.notify_all()
        self._open.wait()
        with self._held_changed:
            self._held -= 1

    # ------------------------------------------------------------------ properties

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running server."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    @property
    def faults(self) -> Faults:
        """The faults in force; assigning switches them (and restarts the fault RNG)."""
        return self._fault_state.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._fault_state = FaultState(faults, self._clock)

    def _authorized(self, params: Iterable[tuple[str, str]]) -> bool:
        given = dict(params)
        return given.get("username") == self.username and given.get("api_key") == self.api_key

    def _record_faults(self, state: FaultState) -> spoil.PagePostprocessor | None:
        if not state.spoils_records:
            return None
        return spoil.postprocessor(
            state.malformed_kind, frozenset(state.faults.duplicate_ids), self.stats.count_fault
        )

    # ------------------------------------------------------------------ admin actions

    def admin(self, method: str, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Run an admin action (the `/_simulator/` endpoints); None when there is no such one.

        Raises:
            ValueError: on a bad argument.
        """
        world = self.world
        if action == "advance" and method == "POST":
            span = timedelta(
                days=float(payload.get("days", 0)),
                hours=float(payload.get("hours", 0)),
                minutes=float(payload.get("minutes", 0)),
                seconds=float(payload.get("seconds", 0)),
            )
            world.advance(span)
            return self._state()
        if action == "touch" and method == "POST":
            ids = payload.get("ids")
            if isinstance(ids, str):
                ids = [int(i) for i in ids.split(",") if i]
            fraction = payload.get("fraction")
            if ids is None and fraction is None:
                raise ValueError("touch needs 'fraction' or 'ids'")
            touched = world.touch(
                fraction=float(fraction) if fraction is not None else None,
                ids=[int(i) for i in ids] if ids is not None else None,
                recent_share=float(payload.get("recent_share", 0.0)),
            )
            return {"ids": touched, **self._state()}
        if action == "delete" and method == "POST":
            ids = payload.get("ids")
            if isinstance(ids, str):
                ids = [int(i) for i in ids.split(",") if i]
            if not ids:
                raise ValueError("delete needs 'ids'")
            world.delete([int(i) for i in ids])
            return self._state()
        if action == "faults":
            if method == "POST":
                changes = dict(payload)
                base = Faults() if str(changes.pop("reset", "")).lower() in ("1", "true") else (
                    self.faults
                )
                self.faults = base.updated(changes)
            return self.faults.to_dict()
        if action == "stats":
            if method == "POST" and str(payload.get("reset", "")).lower() in ("1", "true"):
                self.stats.reset()
            return {**self.stats.as_dict(), **self._state()}
        if action == "supporters" and method == "GET":
            return {"supporter_ids": world.supporter_ids()}
        return None

    def _state(self) -> dict[str, Any]:
        with self.world.lock:
            return {
                "now": iso_z(self.world.now_us),
                "records": self.world.record_count(),
                "version": self.world.version,
                "seed": self.world.seed,
            }

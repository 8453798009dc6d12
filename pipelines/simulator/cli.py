"""`quorum-sms simulate`: run the local Quorum API simulator, or drive a running one.

    quorum-sms simulate [--port 8765] [--seed 7] [--records 5000] [fault flags ...]
    quorum-sms simulate advance --days 1 [--url http://127.0.0.1:8765]
    quorum-sms simulate touch --fraction 0.01 | --ids 1,2,3
    quorum-sms simulate delete --ids 1,2,3
    quorum-sms simulate faults [--error-rate 0.1 ...] [--reset]
    quorum-sms simulate stats [--reset]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson

from pipelines.errors import ApiUnavailableError, ConfigError
from pipelines.simulator.faults import Faults
from pipelines.simulator.server import SimulatorServer
from pipelines.simulator.spoil import MALFORMED_KINDS
from pipelines.simulator.world import World

DEFAULT_PORT = 8765
DEFAULT_USERNAME = "demo"
DEFAULT_API_KEY = "demo-key"
STATS_EVERY_S = 60.0


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _kind_map(text: str) -> dict[int, str]:
    pairs: dict[int, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        record_id, sep, kind = part.partition(":")
        if not sep or not record_id.strip().isdigit() or kind.strip() not in MALFORMED_KINDS:
            raise argparse.ArgumentTypeError(
                f"expected ID:KIND pairs separated by commas, KIND one of "
                f"{', '.join(MALFORMED_KINDS)}; got {part!r}"
            )
        pairs[int(record_id)] = kind.strip()
    return pairs


def _add_fault_flags(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Fault flags; with defaults=False every flag defaults to None (meaning: leave as is)."""

    def d(value: Any) -> Any:
        return value if defaults else None

    group = parser.add_argument_group("faults (only /api/ endpoints are affected)")
    group.add_argument("--latency-ms", type=float, default=d(0.0),
                       help="fixed delay added to every request, in ms")
    group.add_argument("--jitter-ms", type=float, default=d(0.0),
                       help="plus a random delay of 0..N ms")
    group.add_argument("--rate-limit", type=float, default=None, metavar="PER_S",
                       help="requests per second allowed; beyond: 429 with Retry-After")
    group.add_argument("--error-rate", type=float, default=d(0.0),
                       help="probability of an injected 5xx (0..1)")
    group.add_argument("--error-statuses", type=_int_list, default=d((500, 502, 503)),
                       metavar="500,502,503", help="statuses an injected error picks from")
    group.add_argument("--drop-rate", type=float, default=d(0.0),
                       help="probability that the connection drops mid-body")
    group.add_argument("--truncate-rate", type=float, default=d(0.0),
                       help="probability of a complete response with a cut JSON body")
    group.add_argument("--malformed-ids", type=_int_list, default=d(()), metavar="ID,ID",
                       help="records served with updated='not-a-date'")
    group.add_argument("--malformed-rate", type=float, default=d(0.0),
                       help="share of records (stable per id) served with a bad updated")
    group.add_argument("--malformed-kinds", type=_kind_map, default=d({}), metavar="ID:KIND,...",
                       help="records served malformed in a given way; KIND is one of "
                            + ", ".join(MALFORMED_KINDS))
    group.add_argument("--duplicate-ids", type=_int_list, default=d(()), metavar="ID,ID",
                       help="records served twice on a list page: an hour-older delivered "
                            "version, then the current one")
    group.add_argument("--mutate-while-paging", type=int, default=d(0), metavar="N",
                       help="between list requests: 1 s passes, N served records change, "
                            "N new ones appear")
    group.add_argument("--refuse-range-filters", action="store_true", default=d(False),
                       help="400 on filters over id, created, updated")
    group.add_argument("--refuse-order-by", action="store_true", default=d(False),
                       help="400 on any order_by")
    group.add_argument("--ignore-order-by", action="store_true", default=d(False),
                       help="silently ignore order_by (default id order)")
    group.add_argument("--fault-seed", type=int, default=d(0), help="seed of the fault RNG")


_FAULT_ARGS = {
    "latency_ms": "latency_ms", "jitter_ms": "jitter_ms", "rate_limit": "rate_limit_per_s",
    "error_rate": "error_rate", "error_statuses": "error_statuses", "drop_rate": "drop_rate",
    "truncate_rate": "truncate_rate", "malformed_ids": "malformed_ids",
    "malformed_rate": "malformed_rate", "malformed_kinds": "malformed_kinds",
    "duplicate_ids": "duplicate_ids", "mutate_while_paging": "mutate_while_paging",
    "refuse_range_filters": "refuse_range_filters", "refuse_order_by": "refuse_order_by",
    "ignore_order_by": "ignore_order_by", "fault_seed": "seed",
}


def _fault_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for arg, name in _FAULT_ARGS.items():
        value = getattr(args, arg, None)
        if isinstance(value, dict):
            changes[name] = {str(k): v for k, v in value.items()}  # JSON keys are strings
        elif value is not None:
            changes[name] = list(value) if isinstance(value, tuple) else value
    return changes


def register(subparsers: Any) -> None:
    """Add `simulate` (and its driving subcommands) to the CLI."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run the local Quorum API simulator (or drive a running one)",
        description="Run a local Quorum SendSMS API with a generated, deterministic world, so "
        "the pipeline can be tried without credentials. With a subcommand, drive a simulator "
        "that is already running.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated world")
    parser.add_argument("--records", type=int, default=5000,
                        help="records existing at the initial clock")
    parser.add_argument("--start", default=None, metavar="ISO",
                        help="initial simulated clock (default 2026-11-01T06:00:00Z)")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="simulated seconds per real second (0: the clock only moves "
                             "when told to, e.g. by `simulate advance`)")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--api-key", default=None,
                        help=f"API key to accept (default: $QUORUM_SIM_API_KEY or "
                             f"{DEFAULT_API_KEY})")
    _add_fault_flags(parser, defaults=True)
    parser.set_defaults(handler=run_server)

    actions = parser.add_subparsers(dest="sim_action", metavar="ACTION")

    def driver(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text,
                                                          description=help_text)
        sub.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}",
                         help="base URL of the running simulator")
        sub.add_argument("--username", dest="drive_username", default=DEFAULT_USERNAME)
        sub.add_argument("--api-key", dest="drive_api_key", default=None,
                         help=f"default: $QUORUM_SIM_API_KEY or {DEFAULT_API_KEY}")
        return sub

    sub = driver("advance", "move the running simulator's clock forward")
    sub.add_argument("--days", type=float, default=0.0)
    sub.add_argument("--hours", type=float, default=0.0)
    sub.add_argument("--minutes", type=float, default=0.0)
    sub.set_defaults(handler=run_advance)

    sub = driver("touch", "change records now (opens + 1, updated = the clock)")
    choice = sub.add_mutually_exclusive_group(required=True)
    choice.add_argument("--fraction", type=float)
    choice.add_argument("--ids", type=_int_list)
    sub.add_argument("--recent-share", type=float, default=0.0,
                     help="with --fraction: share drawn from the records of the last 3 days "
                          "(default 0: all records alike)")
    sub.set_defaults(handler=run_touch)

    sub = driver("delete", "hard-delete records (they vanish from the API)")
    sub.add_argument("--ids", type=_int_list, required=True)
    sub.set_defaults(handler=run_delete)

    sub = driver("faults", "show or switch the faults of the running simulator")
    sub.add_argument("--reset", action="store_true", help="back to no faults first")
    _add_fault_flags(sub, defaults=False)
    sub.set_defaults(handler=run_faults)

    sub = driver("stats", "show the running simulator's request statistics")
    sub.add_argument("--reset", action="store_true", help="clear the counters")
    sub.set_defaults(handler=run_stats)


def _api_key(value: str | None) -> str:
    return value or os.environ.get("QUORUM_SIM_API_KEY") or DEFAULT_API_KEY


def build_faults(args: argparse.Namespace) -> Faults:
    """The `Faults` of the server's command-line flags."""
    try:
        return Faults().updated(_fault_changes(args))
    except ValueError as exc:
        raise ConfigError(f"bad fault flag: {exc}.") from None


def _stats_line(sim: SimulatorServer) -> str:
    stats = sim.stats.as_dict()
    statuses = " ".join(f"{k}:{v}" for k, v in sorted(stats["requests_by_status"].items()))
    faults = " ".join(f"{k}:{v}" for k, v in sorted(stats["faults_injected"].items()))
    return (
        f"[{time.strftime('%H:%M:%S')}] clock {sim.world.now:%Y-%m-%dT%H:%M:%SZ}, "
        f"{sim.world.record_count()} records; {stats['requests']} requests ({statuses or '-'}), "
        f"{stats['records_served']} records served; faults: {faults or 'none'}"
    )


def run_server(args: argparse.Namespace) -> int:
    """Run the simulator in the foreground until interrupted."""
    if args.records < 0:
        raise ConfigError("--records must be 0 or more.")
    start = None
    if args.start:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise ConfigError(
                f"--start {args.start!r} is not an ISO 8601 date-time; "
                "use e.g. 2026-11-01T06:00:00Z."
            ) from None
    faults = build_faults(args)
    print(f"generating a world of {args.records} records (seed {args.seed}) ...", flush=True)
    world = World(seed=args.seed, n_records=args.records, start=start)
    api_key = _api_key(args.api_key)
    sim = SimulatorServer(world, username=args.username, api_key=api_key, faults=faults,
                          host=args.host, port=args.port)
    try:
        sim.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "choose another --port (0 picks a free one) or stop what uses it."
        ) from None
    key_hint = api_key if api_key == DEFAULT_API_KEY else "(the key you gave)"
    print(f"Quorum simulator listening on {sim.base_url}", flush=True)
    print(f"  credentials: username={args.username} api_key={key_hint}", flush=True)
    print(f"  clock: {world.now:%Y-%m-%dT%H:%M:%SZ}, speed x{args.speed:g}; "
          f"faults: {_describe(faults)}", flush=True)
    print("  press Ctrl-C to stop", flush=True)
    stop = threading.Event()
    try:
        last_tick = time.monotonic()
        next_stats = last_tick + STATS_EVERY_S
        while not stop.wait(1.0):
            now = time.monotonic()
            if args.speed > 0:
                world.advance(timedelta(seconds=(now - last_tick) * args.speed))
            last_tick = now
            if now >= next_stats:
                print(_stats_line(sim), flush=True)
                next_stats = now + STATS_EVERY_S
    except KeyboardInterrupt:
        print("\nstopping the simulator", flush=True)
    finally:
        sim.stop()
    return 0


def _describe(faults: Faults) -> str:
    default = Faults()
    changed = {k: v for k, v in faults.to_dict().items()
               if v != default.to_dict()[k] and k != "seed"}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "none"


def _drive(args: argparse.Namespace, method: str, action: str,
           payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call an admin endpoint of a running simulator."""
    url = args.url.rstrip("/") + f"/_simulator/{action}"
    params = {"username": args.drive_username, "api_key": _api_key(args.drive_api_key)}
    try:
        response = httpx.request(method, url, params=params,
                                 content=orjson.dumps(payload or {}), timeout=600)
    except httpx.HTTPError as exc:
        raise ApiUnavailableError(
            f"no simulator answered at {args.url} ({type(exc).__name__}); start one with "
            "`quorum-sms simulate` or pass its address with --url."
        ) from None
    if response.status_code == 401:
        raise ConfigError("the simulator refused the credentials; pass the --username and "
                          "--api-key it was started with.")
    if response.status_code != 200:
        raise ConfigError(f"the simulator refused the {action} request "
                          f"({response.status_code}): {response.text[:200]}")
    result: dict[str, Any] = response.json()
    return result


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def run_advance(args: argparse.Namespace) -> int:
    """`simulate advance`."""
    if args.days < 0 or args.hours < 0 or args.minutes < 0:
        raise ConfigError("the clock only moves forward: --days, --hours, --minutes must be >= 0.")
    result = _drive(args, "POST", "advance",
                    {"days": args.days, "hours": args.hours, "minutes": args.minutes})
    print(f"clock now {result['now']}, {result['records']} records")
    return 0


def run_touch(args: argparse.Namespace) -> int:
    """`simulate touch`."""
    if args.ids is not None and args.recent_share:
        raise ConfigError("--recent-share goes with --fraction, not with --ids.")
    payload: dict[str, Any] = (
        {"ids": list(args.ids)} if args.ids is not None
        else {"fraction": args.fraction, "recent_share": args.recent_share}
    )
    result = _drive(args, "POST", "touch", payload)
    print(f"touched {len(result['ids'])} records at {result['now']}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    """`simulate delete`."""
    result = _drive(args, "POST", "delete", {"ids": list(args.ids)})
    print(f"{result['records']} records left")
    return 0


def run_faults(args: argparse.Namespace) -> int:
    """`simulate faults`: show, or switch when any fault flag is given."""
    changes = _fault_changes(args)
    for flag in ("refuse_range_filters", "refuse_order_by", "ignore_order_by"):
        if changes.get(flag) is False:
            del changes[flag]
    if args.reset:
        changes["reset"] = True
    result = _drive(args, "POST" if changes else "GET", "faults", changes)
    _print_json(result)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """`simulate stats`."""
    result = _drive(args, "POST" if args.reset else "GET", "stats",
                    {"reset": True} if args.reset else {})
    _print_json(result)
    return 0

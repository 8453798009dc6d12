"""Serve a simulated Quorum in this process until killed (the benchmark's fallback launcher).

    .venv/bin/python bench/sim_launcher.py --records N --port P [--seed S]

`bench/benchmark.py` prefers `quorum-sms simulate --records N --port P`; it starts this script
instead only while that command does not take `--records` yet. Either way the simulator runs
in its own process, with its own GIL, so it does not steal the measured process's CPU time
slices through the interpreter lock (it still shares the machine's cores).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.simulator import SimulatorServer, World


def main(argv: list[str] | None = None) -> int:
    """Build the world, serve it on the port, stop on SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--username", default="demo")
    parser.add_argument("--api-key", default="demo-key")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    world = World(seed=args.seed, n_records=args.records)
    with SimulatorServer(
        world, username=args.username, api_key=args.api_key, host="127.0.0.1", port=args.port
    ) as server:
        print(f"serving {args.records:,} records on {server.base_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

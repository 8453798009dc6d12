"""Benchmark of the Quorum API simulator: records per second served, and the server's peak memory.

    .venv/bin/python bench/simulator_bench.py [--records 1000000] [--seed 7] [--limit 1000]

Starts the simulator in a child process (so its memory is measured alone), then one sequential
httpx client does a full scan, `order_by=updated&order_by=id&updated__gte=<far past>`, in pages of
`--limit`, following `meta.next` and decoding every page with orjson (as a real client must).
Prints the world generation time, the scan's records per second (wall clock), the CPU seconds
of server and client (records per server CPU-second does not depend on other load on the
machine) and the server's peak RSS (VmHWM on Linux).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
USER, KEY = "bench", "bench-key"


def serve(args: argparse.Namespace) -> int:
    """Child mode: generate the world, serve it, print the URL, wait for stdin to close."""
    sys.path.insert(0, str(ROOT))
    from pipelines.simulator import SimulatorServer, World

    started = time.perf_counter()
    world = World(seed=args.seed, n_records=args.records)
    generated = time.perf_counter() - started
    with SimulatorServer(world, username=USER, api_key=KEY, port=0) as sim:
        print(f"{sim.base_url} {generated:.2f}", flush=True)
        sys.stdin.read()
    return 0


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process, in MB (Linux /proc, else psutil's current RSS)."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args)
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--records", str(args.records),
         "--seed", str(args.seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        base_url, generated = child.stdout.readline().split()
        print(f"world: {args.records} records generated in {float(generated):.1f} s "
              f"(server RSS after generation {peak_rss_mb(child.pid):.0f} MB)")
        query = (f"/api/sendsms/?limit={args.limit}&order_by=updated&order_by=id"
                 f"&updated__gte=2000-01-01T00:00:00Z&username={USER}&api_key={KEY}")
        records = pages = 0
        server_cpu = cpu_seconds(child.pid)
        client_cpu = time.process_time()
        with httpx.Client(base_url=base_url, timeout=120) as client:
            started = time.perf_counter()
            url: str | None = query
            while url:
                response = client.get(url)
                response.raise_for_status()
                body = orjson.loads(response.content)
                records += len(body["objects"])
                pages += 1
                url = body["meta"]["next"]
            elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(child.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        print(f"scan: {records} records in {pages} pages of {args.limit} in {elapsed:.1f} s "
              f"= {records / elapsed:,.0f} records/s (sequential client, orjson decode included)")
        print(f"CPU: server {server_cpu:.1f} s ({records / server_cpu:,.0f} records per server "
              f"CPU-second), client {client_cpu:.1f} s; load average now "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"server peak RSS: {peak_rss_mb(child.pid):.0f} MB")
        if records != args.records:
            print(f"error: expected {args.records} records, got {records}", file=sys.stderr)
            return 1
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

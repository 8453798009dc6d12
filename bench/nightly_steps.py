"""Where a nightly `quorum-sms sync` spends its time, step by step and statement by statement.

    .venv/bin/python bench/nightly_steps.py --records 1000000,10000000 \
        --warehouse-cache bench/results/cache --out bench/results/steps.json

`bench/nightly_bench.py` times the nightly from process start to exit; this script says what
that time is made of, and which parts grow with the history. For each world size it copies
benchmark.py's cached full warehouse (`--warehouse-cache`, as nightly_bench does), publishes
it once, touches `--changed-fraction` of the records in the simulator, and runs the real
nightly (`quorum-sms sync`, models and publishing) in a child process of this script. The
child installs timers before it calls the CLI:

* each step of the orchestrator's nightly (sync, recording, models, publish);
* the sync's phases (`pipelines.sync`: extract, normalize, load with its clean-up) and the
  API's answers (`QuorumClient._get_body`, request to last byte; the reading threads overlap,
  so their sum can exceed the extract's wall time);
* every SQL statement, ours (`DuckDBWarehouse.execute`/`query`) and dlt's
  (`DuckDbSqlClient.execute_sql`).

The timers wrap functions and add a few microseconds per call; nothing else changes. The
report prints, per size, the wall time and the steps, then the statements grouped by their
text (literals and temporary-table numbering kept as they are: the same night runs the same
statements at every size) with their time at the smallest and the largest size, sorted by how
much they grew: the costs that follow the history rather than the night's changes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import RESULTS, ROOT, Simulator, child_env  # bench/: scripts, not a package
from nightly_bench import (
    _cached_duckdb,
    _check,
    _restore_duckdb,
    check_night_args,
    quorum_sms,
)

#: Characters of a statement kept as its name in the report.
STATEMENT_TEXT = 110
#: Load ids, timestamps and world sizes in a statement: masked, so a statement has one name
#: at every size.
_NUMBERS = re.compile(r"\d{6,}(?:\.\d+)?")
#: `pipelines.sync` functions timed as the sync's phases.
SYNC_PHASES = ("_extract_window", "_normalize_window", "_load_and_clean_up",
               "drop_superseded_events", "stored_versions", "records_before")  # fmt: skip


# -- the child: timers around the real CLI ----------------------------------------------------


def _timed(function: Callable[..., Any], name: str, out: list[Any]) -> Callable[..., Any]:
    """`function`, appending `[name, seconds]` to `out` after each call."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            out.append([name, time.perf_counter() - started])

    timed.__name__ = getattr(function, "__name__", name)
    return timed


def _time_statements(cls: type, method: str, source: str, out: list[Any]) -> None:
    original = getattr(cls, method)

    def timed(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, sql, *args, **kwargs)
        finally:
            text = _NUMBERS.sub("#", " ".join(str(sql).split()))[:STATEMENT_TEXT]
            out.append([source, text, time.perf_counter() - started])

    setattr(cls, method, timed)


def _time_steps(steps: list[Any]) -> None:
    """Time every nightly step where `run_nightly` and the sync command find them."""
    from pipelines import orchestrator
    from pipelines.commands import sync as sync_command

    timed = {step: _timed(step, step.__name__, steps) for step in orchestrator.NIGHTLY_STEPS}
    for step, wrapper in timed.items():
        orchestrator.STEP_NAMES[wrapper] = orchestrator.STEP_NAMES.get(step, step.__name__)
        # run_nightly looks the publish step up by its module name
        setattr(orchestrator, step.__name__, wrapper)
    original = orchestrator.run_nightly

    def run_nightly(config: Any, reporter: Any = None, **kwargs: Any) -> Any:
        chosen = kwargs.pop("steps", tuple(timed))
        return original(config, reporter, steps=tuple(timed.get(s, s) for s in chosen), **kwargs)

    orchestrator.run_nightly = run_nightly
    sync_command.run_nightly = run_nightly


def child(out_path: Path, cli_args: list[str]) -> int:
    """Run `quorum-sms CLI_ARGS` in this process with the timers; write them to `out_path`."""
    started = time.perf_counter()
    # as the CLI does first: the allocator and Arrow's pool are chosen before pyarrow loads
    from pipelines.process_memory import skip_unused_imports, tune_process_memory

    tune_process_memory()
    skip_unused_imports()
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

    from pipelines import cli
    from pipelines import sync as sync_module
    from pipelines.quorum.client import QuorumClient
    from pipelines.warehouse.engine import DuckDBWarehouse

    statements: list[Any] = []
    steps: list[Any] = []
    phases: list[Any] = []
    _time_statements(DuckDBWarehouse, "execute", "ours", statements)
    _time_statements(DuckDBWarehouse, "query", "ours", statements)
    _time_statements(DuckDbSqlClient, "execute_sql", "dlt", statements)
    _time_steps(steps)
    for name in SYNC_PHASES:
        setattr(sync_module, name, _timed(getattr(sync_module, name), name, phases))
    QuorumClient._get_body = _timed(QuorumClient._get_body, "api_requests_summed", phases)  # type: ignore[method-assign]
    imported = time.perf_counter()
    try:
        code = cli.main(cli_args)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finished = time.perf_counter()
    out_path.write_text(json.dumps({
        "exit_code": code, "timers_s": imported - started, "cli_s": finished - imported,
        "steps": steps, "phases": phases, "statements": statements,
    }))  # fmt: skip
    return int(code or 0)


# -- the parent: worlds, warehouses, the report --------------------------------------------


def night(records: int, cached: Path, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Copy one size's cached warehouse, touch its world, run the timed nightly; its timings."""
    sim = Simulator(records, 0, args.seed, workdir / f"simulator-{records}.log")
    database: Path | None = None
    try:
        sim.wait_ready()
        database = _restore_duckdb(cached, workdir)
        log = workdir / f"publish-{records}.log"
        _check(quorum_sms(["models", "--database", str(database)], child_env(), sim, log),
               "the publish of the copied warehouse", log)  # fmt: skip
        sim.admin("POST", "touch", {"fraction": args.changed_fraction,
                                    "recent_share": args.recent_share})
        timings = workdir / f"timings-{records}.json"
        os.sync()  # what the copy wrote is not this night's to write back
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(timings), "--", "sync",
             "--base-url", sim.base_url, "--database", str(database)],
            env={**child_env(), "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        (workdir / f"nightly-{records}.log").write_text(done.stdout + done.stderr)
    finally:
        sim.stop()
        if database is not None:
            shutil.rmtree(database.parent, ignore_errors=True)  # a 10M copy is ~3 GB
    # 5: loaded, with records set aside (as nightly_bench.py, a night that counts)
    if done.returncode not in (0, 5) or not timings.exists():
        raise SystemExit(f"the {records:,}-record nightly failed (exit {done.returncode}):\n"
                         f"{done.stderr[-2000:]}")  # fmt: skip
    result: dict[str, Any] = json.loads(timings.read_text())
    return {"records": records, "wall_s": wall, **result}


def _sums(pairs: list[Any]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for name, seconds in pairs:
        totals[name] += seconds
    return dict(totals)


def statement_totals(result: dict[str, Any]) -> dict[str, list[float]]:
    """`{source: text: [seconds, calls]}` summed over the night's statements."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for source, text, seconds in result["statements"]:
        entry = totals[f"{source}: {text}"]
        entry[0] += seconds
        entry[1] += 1
    return dict(totals)


def report(results: list[dict[str, Any]], top: int) -> None:
    """Print each size's steps, then the statements that grew most from smallest to largest."""
    for result in results:
        steps = ", ".join(f"{n.strip('_').removesuffix('_step')} {s:.2f}"
                          for n, s in _sums(result["steps"]).items())  # fmt: skip
        phases = ", ".join(f"{n.strip('_')} {s:.2f}" for n, s in _sums(result["phases"]).items())
        sql_s = sum(s for _, _, s in result["statements"])
        # the rest of the wall: the interpreter's start and exit, and the imports of dlt and
        # the warehouse code, which the timers make before the CLI runs
        outside = result["wall_s"] - result["cli_s"]
        print(f"{result['records']:>11,} records: wall {result['wall_s']:.2f} s; start, "
              f"imports and exit {outside:.2f} s; steps (s): {steps}")  # fmt: skip
        print(f"{'':>20}sync phases (s): {phases}")
        print(f"{'':>20}{len(result['statements'])} statements, {sql_s:.2f} s in all")
    if len(results) < 2:
        return
    small, large = statement_totals(results[0]), statement_totals(results[-1])
    grown = sorted(large, key=lambda k: large[k][0] - small.get(k, [0.0])[0], reverse=True)
    head = f"{results[0]['records']:,}"
    tail = f"{results[-1]['records']:,}"
    print(f"\nstatements that grew most ({head} -> {tail} records), ms:")
    print(f"{'grew':>7} {head:>11} {tail:>11} statement")
    for key in grown[:top]:
        before = small.get(key, [0.0])[0]
        print(f"{(large[key][0] - before) * 1000:7.0f} {before * 1000:11.0f} "
              f"{large[key][0] * 1000:11.0f} {key}")  # fmt: skip
    growth = sum(v[0] for v in large.values()) - sum(v[0] for v in small.values())
    print(f"all statements together grew {growth:.2f} s")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The script's options."""
    parser = argparse.ArgumentParser(
        prog="bench/nightly_steps.py",
        description="The nightly quorum-sms sync on DuckDB, timed step by step and by statement.",
    )
    parser.add_argument(
        "--records", default="1000000,10000000", help="world sizes, each with a cached warehouse"
    )
    parser.add_argument("--warehouse-cache", type=Path, required=True,
                        help="benchmark.py's --warehouse-cache folder")  # fmt: skip
    parser.add_argument("--changed-fraction", type=float, default=0.001)
    parser.add_argument("--recent-share", type=float, default=0.0,
                        help="share of the touched records drawn from the last 3 days' records "
                        "(default 0: all records alike)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--top", type=int, default=25, help="statements listed")
    parser.add_argument("--out", type=Path, help="JSON with every timing")
    args = parser.parse_args(argv)
    check_night_args(parser, args)
    args.warehouse_cache = args.warehouse_cache.resolve()
    return args


def main(argv: Sequence[str]) -> int:
    """Run the sizes in turn and report; `--child OUT -- ARGS` is the timed nightly itself."""
    if argv[:1] == ["--child"]:
        return child(Path(argv[1]), list(argv[3:]))
    args = parse_args(argv)
    caches = {records: _cached_duckdb(args, records) for records in args.records}
    missing = [f"{records:,}" for records, cached in caches.items() if cached is None]
    if missing:
        raise SystemExit(
            f"no cached warehouse of {', '.join(missing)} records in {args.warehouse_cache}: "
            "run bench/benchmark.py --records N --warehouse-cache with that folder first"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS / f"steps-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir()
    results = [night(n, cached, args, workdir) for n, cached in caches.items() if cached]
    report(results, args.top)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
        print(f"results: {args.out}")
    print(f"logs and timings: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

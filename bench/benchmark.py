"""Benchmark: our sync against a plain dlt `rest_api` pipeline, side by side, on one simulator.

    python3 tasks.py bench [--records 1000000] [--baseline-records 100000] [--latency-ms 100]
    .venv/bin/python bench/benchmark.py --records 100000          # a quicker run

What it does, in one invocation:

1. starts the simulator as its own process (`quorum-sms simulate --records N --port P`; while
   that command does not take `--records` yet, `bench/sim_launcher.py`), so it has its own GIL;
2. **full sync at zero latency**: (a) the baseline, a straightforward `dlt.sources.rest_api`
   pipeline (offset paginator on `meta.total_count`, `data_selector` `objects`, incremental on
   `updated`, merge on `id`, DuckDB's default `insert_values` loader), written below; it reads
   the first `--baseline-records` records only (its paginator's `maximum_offset`) because at
   ~1,500 records/s a million takes 11+ minutes; its records/s is measured on what it actually
   loaded, never extrapolated; (b) our sync, `quorum-sms sync --no-models`, on every record;
3. **decode workers**: the same full sync with `--compare-workers` (2) worker processes;
4. **as a user runs it**: a full `quorum-sms sync` with models and publishing, on a fresh
   warehouse (the memory target is about this run);
5. the full sync with `--latency-ms` added to every API request (the simulator's latency
   fault), when it is not 0;
6. **nightly, end to end**: the marts are built once on the full warehouse (untimed), then
   `--changed-fraction` (0.1 %) of the records change (the simulator's `touch` admin
   endpoint) and `quorum-sms sync` runs with models and publishing, start to exit;
7. times `pipelines.warehouse.runner.build_models` on our full warehouse.

Every pipeline runs as a child process, one at a time: its own peak resident memory is the
kernel's high-water mark (`os.wait4`, `ru_maxrss`), and the whole process tree (decode
workers included) is sampled for summed RSS and PSS (`bench/treemem.py`). The simulator's CPU
time during each run is recorded too. Then one table of runs and one of the issue's targets
are printed; the same figures go to `bench/results/bench-<timestamp>.json` (git-ignored).

`--warehouse-cache DIR` keeps the full warehouse (with its marts, before the nightly) per
world size and seed, and a later run with the same world copies it instead of syncing again.
`--reference JSON` names an earlier run (at 1M) whose full-sync rate and nightly time the
targets compare with, e.g. at 10M:

    .venv/bin/python bench/benchmark.py --records 10000000 --latency-ms 0 --skip-baseline \
        --warehouse-cache bench/results/cache --reference bench/results/1M.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from treemem import TreeSampler  # bench/ is a folder of scripts, not a package

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
USERNAME = "demo"
API_KEY = "demo-key"
#: Before any simulated record: both pipelines' first run reads everything.
INITIAL_VALUE = "2000-01-01T00:00:00+00:00"
BASELINE_DATASET = "baseline_raw"
OURS_DATASET = "quorum_raw"


# -- measuring a child process ---------------------------------------------------------------


@dataclass
class Run:
    """One measured pipeline run."""

    scenario: str
    pipeline: str
    records: int = 0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    simulator_cpu_s: float = 0.0
    requests: int | None = None
    #: peaks of the whole process tree (decode workers included), sampled: summed RSS
    #: (shared libraries counted once per process) and summed PSS (shared pages divided)
    tree_rss_mb: float = 0.0
    tree_pss_mb: float = 0.0
    exit_code: int = 0
    note: str = ""
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        """Records loaded per wall-clock second, start of the process to its end."""
        return self.records / self.wall_s if self.wall_s > 0 else 0.0


def run_child(
    cmd: Sequence[str | os.PathLike[str]],
    env: dict[str, str],
    simulator: psutil.Process | None,
    log: Path,
) -> tuple[int, float, float, float, float, str, TreeSampler]:
    """Run `cmd` to its end; return exit code, wall s, peak RSS MB, CPU s, simulator CPU s,
    stdout, and the sampler of its process tree's memory.

    `os.wait4` returns the rusage of exactly this child (not the maximum over every child ever
    waited for, as `getrusage(RUSAGE_CHILDREN)` would), so `ru_maxrss` is its own peak.

    Dirty pages are written out first: what earlier steps wrote (a restored 2.3 GB
    warehouse, a full sync) would otherwise be written back during this run and, through its
    fsyncs, be counted in its time. A user's nightly does not start right after gigabytes
    were copied.
    """
    os.sync()
    sim_before = _cpu_seconds(simulator)
    started = time.perf_counter()
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(c) for c in cmd], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdout is not None
        tree = TreeSampler(proc.pid)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        tree.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    sim_cpu = _cpu_seconds(simulator) - sim_before
    peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    return (
        proc.returncode,
        wall,
        peak_mb,
        usage.ru_utime + usage.ru_stime,
        sim_cpu,
        out.decode(errors="replace"),
        tree,
    )


def _cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


# -- the simulator ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Simulator:
    """The simulator as a separate process, with its admin API."""

    def __init__(self, records: int, port: int, seed: int, log: Path) -> None:
        self.records = records
        self.port = port or _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.launcher = "quorum-sms simulate"
        cmd = self._command(records, seed)
        self._log = log.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.process = psutil.Process(self.proc.pid)
        self.http = httpx.Client(base_url=self.base_url, timeout=120)

    def _command(self, records: int, seed: int) -> list[str]:
        cli = BIN / "quorum-sms"
        help_text = subprocess.run(
            [str(cli), "simulate", "--help"], capture_output=True, text=True, check=False
        ).stdout
        if "--records" in help_text and "--port" in help_text:
            cmd = [str(cli), "simulate", "--records", str(records), "--port", str(self.port)]
            for flag, value in (
                ("--seed", str(seed)),
                ("--username", USERNAME),
                ("--api-key", API_KEY),
                ("--host", "127.0.0.1"),
            ):
                if flag in help_text:
                    cmd += [flag, value]
            return cmd
        self.launcher = "bench/sim_launcher.py (quorum-sms simulate takes no --records yet)"
        return [
            sys.executable,
            str(ROOT / "bench" / "sim_launcher.py"),
            "--records", str(records), "--port", str(self.port), "--seed", str(seed),
            "--username", USERNAME, "--api-key", API_KEY,
        ]  # fmt: skip

    def wait_ready(self, timeout: float = 600) -> None:
        """Wait until the admin API answers (the world of a million takes seconds to build)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the simulator exited with {self.proc.returncode}; see its log")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/_simulator/stats", params=self._auth()).status_code == 200:
                    return
            time.sleep(0.3)
        raise SystemExit("the simulator did not answer in time")

    def _auth(self) -> dict[str, str]:
        return {"username": USERNAME, "api_key": API_KEY}

    def admin(self, method: str, action: str, payload: dict[str, Any] | None = None) -> Any:
        """Call a `/_simulator/` admin endpoint and return its JSON."""
        response = self.http.request(
            method, f"/_simulator/{action}", params=self._auth(), json=payload or {}
        )
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        """Terminate the simulator process (ours, by its pid)."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# -- the pipelines ---------------------------------------------------------------------------


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a pipeline child: credentials, no telemetry, no inherited settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUORUM_", "SOURCES__", "QUORUM_SMS__", "DATA_WRITER", "NORMALIZE"))
    }
    env.update(
        {
            "QUORUM_USERNAME": USERNAME,
            "QUORUM_API_KEY": API_KEY,
            "SOURCES__QUORUM__INITIAL_VALUE": INITIAL_VALUE,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def count_rows(database: Path, dataset: str, table: str = "sendsms") -> int:
    """Rows of `dataset.table` in a DuckDB file (0 when it does not exist)."""
    import duckdb

    if not database.exists():
        return 0
    with duckdb.connect(str(database), read_only=True) as con:
        try:
            row = con.execute(f"select count(*) from {dataset}.{table}").fetchone()
        except duckdb.CatalogException:
            return 0
    return int(row[0]) if row else 0


def run_ours(
    scenario: str,
    sim: Simulator,
    database: Path,
    workdir: Path,
    settings: dict[str, str],
    *,
    models: bool = False,
    pipeline: str = "ours",
) -> Run:
    """Our sync as `quorum-sms sync --no-models` (with `models`: as a user runs it, models
    and publishing included), measured from process start to exit."""
    before = count_rows(database, OURS_DATASET)
    sim.admin("POST", "stats", {"reset": True})
    code, wall, rss, cpu, sim_cpu, out, tree = run_child(
        [BIN / "quorum-sms", "sync", "--base-url", sim.base_url, "--database", database,
         *(() if models else ("--no-models",))],
        child_env(settings),
        sim.process,
        workdir / f"ours-{_slug(scenario)}.log",
    )  # fmt: skip
    fetched = _summary_number(out, "records fetched")
    after = count_rows(database, OURS_DATASET)
    run = Run(scenario, pipeline, wall_s=wall, peak_rss_mb=rss, cpu_s=cpu,
              simulator_cpu_s=sim_cpu, tree_rss_mb=tree.peak_rss_mb,
              tree_pss_mb=tree.peak_pss_mb)  # fmt: skip
    run.exit_code = code
    run.requests = _summary_number(out, "pages", r"[\d,]+\s+\(([\d,]+) requests")
    # a full sync loads every record; a nightly run's work is what it read
    run.records = fetched if before else after
    run.extra = {"rows_before": before, "rows_after": after, "records_fetched": fetched,
                 "records_unchanged": _summary_number(out, "unchanged")}
    if code != 0:
        run.note = f"FAILED (exit {code}, see ours-{_slug(scenario)}.log)"
    return run


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _summary_number(text: str, label: str, pattern: str = r"([\d,]+)") -> int:
    match = re.search(rf"{re.escape(label)}\s+{pattern}", text)
    return int(match.group(1).replace(",", "")) if match else 0


def run_baseline(
    scenario: str,
    sim: Simulator,
    database: Path,
    workdir: Path,
    max_records: int,
    loader: str,
) -> Run:
    """The plain `rest_api` pipeline (below, `baseline_main`) in a child process, measured."""
    before = count_rows(database, BASELINE_DATASET)
    sim.admin("POST", "stats", {"reset": True})
    code, wall, rss, cpu, sim_cpu, _, tree = run_child(
        [sys.executable, Path(__file__), "_baseline", "--base-url", sim.base_url,
         "--database", database, "--max-records", str(max_records), "--loader", loader],
        child_env(),
        sim.process,
        workdir / f"baseline-{_slug(scenario)}.log",
    )  # fmt: skip
    after = count_rows(database, BASELINE_DATASET)
    stats = sim.admin("GET", "stats")
    run = Run(scenario, f"baseline ({loader})", wall_s=wall, peak_rss_mb=rss, cpu_s=cpu,
              tree_rss_mb=tree.peak_rss_mb, tree_pss_mb=tree.peak_pss_mb)  # fmt: skip
    run.simulator_cpu_s = sim_cpu
    run.exit_code = code
    run.requests = _stats_requests(stats)
    run.records = after - before if before else after
    run.extra = {"rows_before": before, "rows_after": after}
    if code != 0:
        run.note = f"FAILED (exit {code}, see baseline-{_slug(scenario)}.log)"
    return run


def _stats_requests(stats: Any) -> int | None:
    """Requests served, from the simulator's stats (shape owned by the simulator)."""
    if isinstance(stats, dict):
        for key in ("requests", "list_requests", "total_requests"):
            if isinstance(stats.get(key), int):
                return int(stats[key])
        by_status = stats.get("by_status") or stats.get("status")
        if isinstance(by_status, dict):
            return sum(int(v) for v in by_status.values() if isinstance(v, int))
    return None


def baseline_main(argv: Sequence[str]) -> int:
    """What a dlt user would write with the declarative `rest_api` source (child process)."""
    parser = argparse.ArgumentParser(prog="benchmark.py _baseline")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--max-records", type=int, required=True)
    parser.add_argument("--loader", default="insert_values")
    args = parser.parse_args(argv)

    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": args.base_url,
                "auth": {
                    "type": "api_key",
                    "name": "api_key",
                    "api_key": os.environ["QUORUM_API_KEY"],
                    "location": "query",
                },
                "paginator": {
                    "type": "offset",
                    "limit": 1000,
                    "total_path": "meta.total_count",
                    # the cap on records read: the first max_records, in the API's id order
                    "maximum_offset": args.max_records,
                },
            },
            "resource_defaults": {
                "primary_key": "id",
                "write_disposition": "merge",
                "endpoint": {"data_selector": "objects"},
            },
            "resources": [
                {
                    "name": "sendsms",
                    "endpoint": {
                        "path": "api/sendsms/",
                        "params": {
                            "username": os.environ["QUORUM_USERNAME"],
                            "updated__gte": {
                                "type": "incremental",
                                "cursor_path": "updated",
                                "initial_value": INITIAL_VALUE,
                            },
                        },
                    },
                }
            ],
        }
    )
    database = Path(args.database)
    pipeline = dlt.pipeline(
        pipeline_name="bench_baseline",
        pipelines_dir=str(database.with_name(database.name + ".dlt")),
        destination=dlt.destinations.duckdb(credentials=str(database)),
        dataset_name=BASELINE_DATASET,
    )
    loader: Any = args.loader
    pipeline.run(source, loader_file_format=loader)
    return 0


# -- the benchmark ---------------------------------------------------------------------------


def build_models_seconds(database: Path) -> tuple[float | None, str]:
    """Time `build_models` on a warehouse in a child process; (seconds, note)."""
    probe = (
        "import sys, time\n"
        "from pipelines.warehouse.runner import build_models\n"
        "t = time.perf_counter(); build_models(sys.argv[1])\n"
        "print(time.perf_counter() - t)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(database)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"build_models failed: {last[:160]}"
    return float(done.stdout.strip().splitlines()[-1]), ""


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_table(runs: list[Run], header: str) -> None:
    """The results as one aligned table."""
    cols = ("scenario", "pipeline", "records", "wall s", "records/s", "peak RSS MB",
            "tree RSS MB", "tree PSS MB", "ours/base", "sim CPU", "requests",
            "note")  # fmt: skip
    rows = [
        (
            r.scenario,
            r.pipeline,
            f"{r.records:,}",
            f"{r.wall_s:.1f}",
            f"{r.records_per_s:,.0f}",
            f"{r.peak_rss_mb:.0f}",
            f"{r.tree_rss_mb:.0f}",
            f"{r.tree_pss_mb:.0f}",
            "" if r.ratio is None else f"{r.ratio:.1f}x",
            f"{r.simulator_cpu_s / r.wall_s:.0%}" if r.wall_s else "",
            "" if r.requests is None else f"{r.requests:,}",
            r.note,
        )
        for r in runs
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    right = {2, 3, 4, 5, 6, 7, 8, 9, 10}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(header)
    print(line(cols))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


# -- the targets ---------------------------------------------------------------------


@dataclass
class Target:
    """One figure of issue 14 beside its target."""

    figure: str
    measured: str
    target: str
    verdict: str


def _find(runs: list[Run], scenario_start: str, pipeline: str = "ours") -> Run | None:
    return next(
        (r for r in runs if r.scenario.startswith(scenario_start) and r.pipeline == pipeline),
        None,
    )


def _ref_run(reference: dict[str, Any] | None, scenario_start: str) -> dict[str, Any] | None:
    for run in (reference or {}).get("runs", []):
        if run["scenario"].startswith(scenario_start) and run["pipeline"] == "ours":
            return dict(run)
    return None


def _verdict(run: Run, met: bool) -> str:
    """"met" / "not met", or that the run failed (its figures then prove nothing)."""
    if run.exit_code:
        return f"FAILED (exit {run.exit_code}): see the scenario's log"
    return "met" if met else "not met"


def targets(runs: list[Run], records: int, reference: dict[str, Any] | None) -> list[Target]:
    """Every figure of the issue with its target and whether this run met it."""
    out: list[Target] = []
    size = f"{records / 1e6:g}M" if records >= 1_000_000 else f"{records:,}"
    ref_size = ""
    if reference is not None:
        ref_size = f"{int(reference['arguments']['records']) / 1e6:g}M"
    full = _find(runs, "full, 0 ms")
    if full is not None and full.ratio is not None:
        out.append(Target(f"full sync vs plain rest_api, {size}", f"{full.ratio:.1f}x",
                          ">= 25x", "met" if full.ratio >= 25 else "not met"))  # fmt: skip
    elif full is not None:
        out.append(Target(f"full sync vs plain rest_api, {size}", "baseline skipped", ">= 25x",
                          "not measured"))  # fmt: skip
    ref_full = _ref_run(reference, "full, 0 ms")
    if full is not None and ref_full is not None and ref_full["records_per_s"]:
        change = full.records_per_s / ref_full["records_per_s"] - 1
        out.append(Target(
            f"full-sync records/s, {size} vs {ref_size}",
            f"{full.records_per_s:,.0f} vs {ref_full['records_per_s']:,.0f} ({change:+.0%})",
            "within 10 %", _verdict(full, abs(change) <= 0.10)))  # fmt: skip
    else:
        out.append(Target("full-sync records/s vs 1M", f"{full.records_per_s:,.0f}/s"
                          if full else "no full sync this run", "within 10 %",
                          "needs a full sync and --reference"))  # fmt: skip
    pooled = _find(runs, "full, 0 ms, ")
    if pooled is not None and full is not None and full.records_per_s:
        gain = pooled.records_per_s / full.records_per_s
        out.append(Target(f"decode workers ({pooled.scenario.split(', ')[-1]})",
                          f"{gain:.2f}x in-process, tree PSS {pooled.tree_pss_mb:.0f} MB",
                          "faster than in-process", "met" if gain > 1 else "not met"))  # fmt: skip
    for run, what in ((_find(runs, "full `quorum-sms sync`"), "full `quorum-sms sync`"),
                      (_find(runs, "nightly"), "nightly `quorum-sms sync`")):  # fmt: skip
        if run is None:
            continue
        worst = max(run.tree_pss_mb, run.peak_rss_mb)
        out.append(Target(
            f"peak memory, {what}, {size} (models, publish)",
            f"tree PSS {run.tree_pss_mb:.0f} MB, main RSS {run.peak_rss_mb:.0f} MB, "
            f"tree RSS {run.tree_rss_mb:.0f} MB",
            "<= 300 MB", _verdict(run, worst <= 300)))  # fmt: skip
    nightly = _find(runs, "nightly")
    ref_nightly = _ref_run(reference, "nightly")
    if nightly is not None and ref_nightly is not None and ref_nightly["wall_s"]:
        factor = nightly.wall_s / ref_nightly["wall_s"]
        out.append(Target(f"nightly end to end, {size} vs {ref_size}",
                          f"{nightly.wall_s:.1f} s vs {ref_nightly['wall_s']:.1f} s "
                          f"({factor:.2f}x)", "<= 2x", _verdict(nightly, factor <= 2)))  # fmt: skip
    elif nightly is not None:
        out.append(Target(f"nightly end to end, {size}", f"{nightly.wall_s:.1f} s",
                          "<= 2x the 1M figure", "compare with --reference"))  # fmt: skip
    out.append(Target("nightly end to end on PostgreSQL", "-", "beside DuckDB's",
                      "bench/nightly_bench.py --engines duckdb,postgres"))  # fmt: skip
    return out


def print_targets(verdicts: list[Target]) -> None:
    """The issue's figures, each beside its target."""
    widths = [max(len(getattr(v, name)) for v in verdicts) for name in
              ("figure", "measured", "target")]  # fmt: skip
    print("\ntargets (issue 14)")
    for v in verdicts:
        print(f"  {v.figure:<{widths[0]}}  {v.measured:<{widths[1]}}  "
              f"{v.target:<{widths[2]}}  {v.verdict}")  # fmt: skip


# -- reusing a built warehouse ---------------------------------------------------------------


def _cache_dir(args: argparse.Namespace) -> Path | None:
    """The cache folder of this world (size and seed), or None without --warehouse-cache."""
    if args.warehouse_cache is None:
        return None
    return Path(args.warehouse_cache) / f"records-{args.records}-seed-{args.seed}"


def _warehouse_files(folder: Path) -> list[Path]:
    # the DuckDB file and dlt's working folder beside it (state, pending packages)
    return [folder / "ours-full.duckdb", folder / "ours-full.duckdb.dlt"]


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    elif source.exists():
        shutil.copy2(source, target)


def _save(workdir: Path, cache: Path) -> None:
    """Keep the full warehouse (models built, before the nightly) for later runs."""
    cache.mkdir(parents=True, exist_ok=True)
    for path in _warehouse_files(workdir):
        _copy(path, cache / path.name)


def _restore(cache: Path, workdir: Path) -> None:
    for path in _warehouse_files(cache):
        _copy(path, workdir / path.name)


def _drop(database: Path) -> None:
    """Delete a warehouse no later step reads (a 10M one takes gigabytes)."""
    for path in (database, database.with_name(database.name + ".dlt"),
                 database.with_name(database.stem + "-analytics.duckdb")):  # fmt: skip
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _prepare_models(database: Path, workdir: Path, settings: dict[str, str]) -> None:
    """Build the marts once, untimed: the nightly then meets a warehouse that has them."""
    with (workdir / "prepare-models.log").open("wb") as log:
        subprocess.run(
            [str(BIN / "quorum-sms"), "models", "--database", str(database)],
            env=child_env(settings), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            check=False,
        )  # fmt: skip


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(
        prog="bench/benchmark.py",
        description="Our sync vs a plain dlt rest_api pipeline, on one simulator.",
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="size of the world")
    parser.add_argument(
        "--baseline-records",
        type=int,
        default=50_000,
        help="records the baseline reads (its paginator's maximum_offset); its records/s is "
        "measured on those, never extrapolated (default 50,000: about 3 minutes at its ~300/s)",
    )
    parser.add_argument(
        "--baseline-loader",
        default="insert_values",
        choices=("insert_values", "parquet"),
        help="the baseline's loader file format (insert_values: DuckDB's default)",
    )
    parser.add_argument("--latency-ms", type=float, default=100, help="0 skips that scenario")
    parser.add_argument(
        "--changed-fraction", type=float, default=0.001, help="share touched before the nightly"
    )
    parser.add_argument(
        "--decode-workers", type=int, help="[sources.quorum] decode_workers of our runs"
    )
    parser.add_argument(
        "--compare-workers",
        type=int,
        default=2,
        help="one more full sync with this many decode workers (0 skips it)",
    )
    parser.add_argument(
        "--skip-user-run",
        action="store_true",
        help="skip the full `quorum-sms sync` with models and publishing (memory target)",
    )
    parser.add_argument(
        "--warehouse-cache",
        type=Path,
        help="folder keeping the full warehouse per (records, seed): a later run with the "
        "same world copies it instead of syncing again (a 10M full sync takes many minutes)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help="JSON of an earlier run (say at 1M) whose full-sync rate and nightly time the "
        "targets compare with",
    )
    parser.add_argument("--concurrency", type=int, help="[sources.quorum] concurrency")
    parser.add_argument("--requests-per-second", type=float, help="[sources.quorum] ceiling")
    parser.add_argument(
        "--duckdb-memory-limit", help="[quorum_sms] duckdb_memory_limit (auto, 128MB, ...)"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--port", type=int, default=0, help="simulator port (0: a free one)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the warehouses and logs")
    parser.add_argument("--out", type=Path, help="JSON results file")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Run every scenario; print the table and write the JSON."""
    if argv and argv[0] == "_baseline":
        return baseline_main(argv[1:])
    args = parse_args(argv)
    settings: dict[str, str] = {}
    if args.concurrency is not None:
        settings["SOURCES__QUORUM__CONCURRENCY"] = str(args.concurrency)
    if args.requests_per_second is not None:
        settings["SOURCES__QUORUM__REQUESTS_PER_SECOND"] = str(args.requests_per_second)
    if args.decode_workers is not None:
        settings["SOURCES__QUORUM__DECODE_WORKERS"] = str(args.decode_workers)
    if args.duckdb_memory_limit is not None:
        settings["QUORUM_DUCKDB_MEMORY_LIMIT"] = args.duckdb_memory_limit
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{stamp}-", dir=RESULTS))
    base_n = min(args.baseline_records, args.records)
    print(f"benchmark: {args.records:,} records, baseline on {base_n:,}; work dir {workdir}")
    started = time.perf_counter()
    sim = Simulator(args.records, args.port, args.seed, workdir / "simulator.log")
    runs: list[Run] = []
    models: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        sim.wait_ready()
        print(f"simulator ready in {time.perf_counter() - t0:.1f} s ({sim.launcher})", flush=True)

        def pair(scenario: str, tag: str) -> tuple[Run | None, Run]:
            base = None
            if not args.skip_baseline:
                base = run_baseline(
                    scenario, sim, workdir / f"baseline-{tag}.duckdb", workdir, base_n,
                    args.baseline_loader,
                )  # fmt: skip
                if base_n < args.records:
                    base.note = base.note or f"first {base_n:,} records only (maximum_offset)"
                _progress(base)
            ours = run_ours(scenario, sim, workdir / f"ours-{tag}.duckdb", workdir, settings)
            if base is not None and base.records_per_s:
                ours.ratio = ours.records_per_s / base.records_per_s
            _progress(ours)
            runs.extend(r for r in (base, ours) if r is not None)
            return base, ours

        cache = _cache_dir(args)
        full: Run | None = None
        restored = cache is not None and (cache / "ours-full.duckdb").exists()
        if cache is not None and restored:
            _restore(cache, workdir)
            print(f"full warehouse copied from {cache} (no full sync this run)", flush=True)
        else:
            _, full = pair("full, 0 ms", "full")
        if args.compare_workers:
            database = workdir / "ours-workers.duckdb"
            pooled = run_ours(
                f"full, 0 ms, {args.compare_workers} decode workers", sim, database, workdir,
                {**settings, "SOURCES__QUORUM__DECODE_WORKERS": str(args.compare_workers)},
            )  # fmt: skip
            if full is not None and full.records_per_s:
                pooled.note = f"{pooled.records_per_s / full.records_per_s:.2f}x ours in-process"
            _progress(pooled)
            runs.append(pooled)
            _drop(database)
        if not args.skip_user_run:
            database = workdir / "ours-user.duckdb"
            user = run_ours(
                "full `quorum-sms sync` (models, publish)", sim, database, workdir, settings,
                models=True,
            )  # fmt: skip
            _progress(user)
            runs.append(user)
            _drop(database)
        if args.latency_ms and full is not None:
            sim.admin("POST", "faults", {"latency_ms": args.latency_ms})
            pair(f"full, {args.latency_ms:g} ms latency", "latency")
            sim.admin("POST", "faults", {"reset": True})
        warehouse = workdir / "ours-full.duckdb"
        if full is not None:
            # the nightly below meets marts that exist, as every night after the first does
            _prepare_models(warehouse, workdir, settings)
            if cache is not None:
                _save(workdir, cache)
        elif restored:
            # a published file is updated in place only where it was written: publish the
            # copy once, so the nightly publishes a night's changes, as in production
            _prepare_models(warehouse, workdir, settings)
        touched = sim.admin("POST", "touch", {"fraction": args.changed_fraction})
        n_touched = len(touched.get("ids", []))
        scenario = f"nightly, {args.changed_fraction:.1%} changed"
        if not args.skip_baseline and base_n >= args.records and full is not None:
            base = run_baseline(
                scenario, sim, workdir / "baseline-full.duckdb", workdir, base_n,
                args.baseline_loader,
            )  # fmt: skip
            _progress(base)
            runs.append(base)
        nightly = run_ours(
            f"{scenario} (models, publish)", sim, warehouse, workdir, settings, models=True
        )
        nightly.extra["touched"] = n_touched
        nightly.note = f"{n_touched:,} touched"
        if full is not None and full.wall_s:
            nightly.extra["time_vs_full"] = nightly.wall_s / full.wall_s
            nightly.note += f"; {nightly.wall_s / full.wall_s:.1%} of the full sync's time"
            if full.requests and nightly.requests is not None:
                nightly.extra["requests_vs_full"] = nightly.requests / full.requests
                nightly.note += f", {nightly.requests / full.requests:.1%} of its requests"
        _progress(nightly)
        runs.append(nightly)
        if not args.skip_models:
            seconds, note = build_models_seconds(warehouse)
            models = {"seconds": seconds, "messages": count_rows(warehouse, OURS_DATASET),
                      "note": note}  # fmt: skip
            print(f"build_models: {seconds if seconds is None else f'{seconds:.2f} s'} {note}")
    finally:
        sim.stop()
    total = time.perf_counter() - started
    info = machine()
    header = (
        f"\nquorum-sms benchmark, {args.records:,} records; {info['cores']} cores "
        f"({info['cpu']}), {info['memory_gb']} GB; simulator and pipelines on the same machine; "
        f"{total / 60:.1f} min in all"
    )
    print_table(runs, header)
    reference = json.loads(args.reference.read_text()) if args.reference else None
    verdicts = targets(runs, args.records, reference)
    print_targets(verdicts)
    if models:
        text = "n/a" if models["seconds"] is None else f"{models['seconds']:.2f} s"
        print(f"build_models over {models['messages']:,} messages: {text} {models['note']}")
    print(
        "records/s: records loaded / wall time of the process (start, fetch, normalize, load, "
        "exit); peak RSS: the process's own high-water mark (wait4); sim CPU: the simulator's "
        "CPU time / wall time (100% = its one interpreter is saturated)."
    )
    out = args.out or RESULTS / f"bench-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "when": stamp,
                "machine": info,
                "arguments": {k: str(v) if isinstance(v, Path) else v
                              for k, v in vars(args).items()},
                "simulator": sim.launcher,
                "total_seconds": total,
                "runs": [
                    {**asdict(r), "records_per_s": r.records_per_s} for r in runs
                ],
                "build_models": models,
                "targets": [asdict(v) for v in verdicts],
                "reference": str(args.reference) if args.reference else None,
            },
            indent=2,
        )
    )  # fmt: skip
    print(f"results: {out}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r.exit_code == 0 for r in runs) else 1


def _progress(run: Run) -> None:
    print(
        f"  {run.scenario}: {run.pipeline}: {run.records:,} records in {run.wall_s:.1f} s "
        f"({run.records_per_s:,.0f}/s), peak {run.peak_rss_mb:.0f} MB {run.note}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run a command and measure its whole process tree: wall time and peak memory.

`ru_maxrss` sees one process; a sync with decode workers is several. A sampler thread reads
every process of the tree every `interval` seconds and keeps the peaks of two sums:

* **RSS**: resident pages per process, summed. Shared library pages (pyarrow's libraries
  are ~80 MB of file-backed pages in every process that imports them) count once per
  process, so this overstates what the tree takes;
* **PSS** (`/proc/<pid>/smaps_rollup`): each shared page divided among the processes that
  map it; the sum is what the tree really holds, and what the kernel would free on exit.

Sampling can miss a spike shorter than `interval`; the main process's own `ru_maxrss` (from
`os.wait4`) is kept beside them as a floor the sampled peak must reach.

    .venv/bin/python bench/treemem.py -- .venv/bin/quorum-sms sync --no-models
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

MB = 1024 * 1024


@dataclass
class TreeRun:
    """One measured command."""

    returncode: int
    wall_s: float
    peak_rss_mb: float
    peak_pss_mb: float
    main_maxrss_mb: float
    most_processes: int


def _pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class TreeSampler:
    """Samples a running process tree's summed RSS and PSS until `stop()`; keeps the peaks.

    Args:
        pid: the root of the tree.
        interval: seconds between samples.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self.most_processes = 0
        self._pid = pid
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            root = psutil.Process(self._pid)
        except psutil.Error:
            return
        # a polling loop on an observable condition (the child's exit), not an ordering sleep
        while not self._done.wait(self._interval):
            members = _tree(root)
            rss = 0
            for member in members:
                try:
                    rss += member.memory_info().rss
                except psutil.Error:
                    continue
            pss = sum(_pss_bytes(member.pid) for member in members)
            self.peak_rss_mb = max(self.peak_rss_mb, rss / MB)
            self.peak_pss_mb = max(self.peak_pss_mb, pss / MB)
            self.most_processes = max(self.most_processes, len(members))

    def stop(self) -> None:
        """Stop sampling (call once the process has exited)."""
        self._done.set()
        self._thread.join()


def measure(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | None = None,
    log: Path | None = None,
    interval: float = 0.05,
) -> TreeRun:
    """Run `command` to its exit and return its wall time and the tree's peak memory."""
    out = log.open("wb") if log is not None else None
    started = time.monotonic()
    process = subprocess.Popen(
        list(command),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=out if out is not None else stdout,
        stderr=subprocess.STDOUT if out is not None else None,
    )
    sampler = TreeSampler(process.pid, interval)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    sampler.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    if out is not None:
        out.close()
    return TreeRun(
        returncode=process.returncode,
        wall_s=wall,
        peak_rss_mb=sampler.peak_rss_mb,
        peak_pss_mb=sampler.peak_pss_mb,
        main_maxrss_mb=usage.ru_maxrss / 1024,
        most_processes=sampler.most_processes,
    )


def main(argv: Sequence[str]) -> int:
    """Measure the command after `--` and print the figures."""
    command = list(argv[argv.index("--") + 1 :]) if "--" in argv else list(argv)
    run = measure(command)
    print(
        f"exit {run.returncode}, {run.wall_s:.1f} s, peak tree RSS {run.peak_rss_mb:.0f} MB, "
        f"PSS {run.peak_pss_mb:.0f} MB, main ru_maxrss {run.main_maxrss_mb:.0f} MB, "
        f"up to {run.most_processes} processes",
        file=sys.stderr,
    )
    return run.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

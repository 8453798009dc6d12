#!/usr/bin/env python3
"""Bootstrap and run the project's two everyday jobs with nothing but Python installed.

    python3 tasks.py demo    simulator -> sync -> DuckDB -> SQL models -> report
    python3 tasks.py test    lint, type-check and the whole test suite
    python3 tasks.py bench   the performance benchmark (extra arguments are passed on)

Each job first makes sure `.venv/` exists and holds this project installed in editable mode
with its dev tools; it reinstalls only when `pyproject.toml` changed. Standard library only,
because this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".quorum-sms-installed"


def _venv_bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _run(*cmd: str | Path) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


def bootstrap() -> None:
    """Create the virtual environment and install the project when it is missing or stale."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted and _venv_bin("quorum-sms").exists():
        return
    if not _venv_bin("python").exists():
        print("setting up .venv (first run only) ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = _venv_bin("python")
    print("installing quorum-sms and its dependencies into .venv ...", flush=True)
    steps = [
        (python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"),
        (python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"),
    ]
    for step in steps:
        if _run(*step) != 0:
            sys.exit("installation failed: see pip's message above; fix it and run again")
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    """Dispatch `demo`, `test` or `bench`."""
    if not argv or argv[0] not in {"demo", "test", "bench"}:
        print(__doc__)
        return 2
    job, rest = argv[0], argv[1:]
    bootstrap()
    if job == "demo":
        return _run(_venv_bin("quorum-sms"), "demo", *rest)
    if job == "bench":
        return _run(_venv_bin("python"), ROOT / "bench" / "benchmark.py", *rest)
    for check in (
        (_venv_bin("ruff"), "check", "."),
        (_venv_bin("mypy"), "pipelines", "bench"),
    ):
        if _run(*check) != 0:
            return 1
    return _run(_venv_bin("python"), "-m", "pytest", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""An older DuckDB Python client (1.1.3, the kind BI drivers bundle) for compatibility tests.

It lives in its own virtual environment, built once per machine from PyPI and cached under
`~/.cache/quorum-sms-tests/` (or `$XDG_CACHE_HOME`), keyed by the DuckDB and Python versions.
A file lock makes two pytest processes that need it at once build it only once; a marker
written last tells a finished environment from one a killed build left half done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import filelock

LEGACY_DUCKDB_VERSION = "1.1.3"
_COMPLETE = ".complete"


def cache_root() -> Path:
    """The folder that holds the cached environments."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quorum-sms-tests"


def legacy_duckdb_python(version: str = LEGACY_DUCKDB_VERSION) -> Path:
    """The Python interpreter of a virtual environment holding `duckdb==version` only.

    Builds the environment on first use (PyPI must be reachable then), reuses it afterwards.

    Raises:
        RuntimeError: the environment could not be built; the message says why.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    home = root / f"duckdb-{version}-py{sys.version_info.major}{sys.version_info.minor}"
    python = home / "bin" / "python"
    if (home / _COMPLETE).is_file():
        return python
    with filelock.FileLock(str(home) + ".lock", timeout=900):
        if (home / _COMPLETE).is_file():  # another process built it while this one waited
            return python
        shutil.rmtree(home, ignore_errors=True)  # what a killed build left behind
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-input", f"duckdb=={version}"],
            capture_output=True, text=True, check=False,
        )
        if install.returncode != 0:
            raise RuntimeError(
                f"Could not install duckdb=={version} into {home} for the compatibility tests "
                f"(PyPI must be reachable the first time): {install.stderr.strip()[-2000:]}"
            )
        found = subprocess.run(
            [str(python), "-c", "import duckdb; print(duckdb.__version__)"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        if found != version:
            raise RuntimeError(f"{home} holds duckdb {found}, not {version}.")
        (home / _COMPLETE).write_text(version)
    return python

"""The systemd units, run the way systemd runs them, write the database where the docs say.

The units start in `WorkingDirectory=/` with only the variables of their `EnvironmentFile=`
(`deploy/quorum-sms.env.example`, where `QUORUM_DATABASE=data/quorum.duckdb` is documented
as `/opt/quorum-sms/data/quorum.duckdb`). The test installs a copy of the project as the
units' `/opt/quorum-sms`, runs each unit's `ExecStart` from `/` with that environment
against the simulator, and checks the database lands in the project's `data/` folder, the
one folder the units may write (`ReadWritePaths=`).
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb

from pipelines.config import PROJECT_ROOT, resolve_database
from tests.conftest import API_KEY, API_USER

DEPLOY = PROJECT_ROOT / "deploy"
#: Where the units and the environment example expect the project.
INSTALLED = "/opt/quorum-sms"


def unit_service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name)
    return parser["Service"]


def environment_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments, quotes)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def install_project(target: Path) -> None:
    """A copy of the project as the units find it at /opt/quorum-sms (code, SQL, settings)."""
    ignore = shutil.ignore_patterns("__pycache__", "secrets.toml")
    for part in ("pipelines", "sql", ".dlt"):
        shutil.copytree(PROJECT_ROOT / part, target / part, ignore=ignore)


def run_unit(
    name: str, installed: Path, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the unit's ExecStart as systemd would: its working directory, only its variables."""
    service = unit_service(name)
    words = shlex.split(service["ExecStart"])
    assert words[0] == f"{INSTALLED}/.venv/bin/quorum-sms", words
    assert service["EnvironmentFile"] == "/etc/quorum-sms.env"
    return subprocess.run(
        # the copy's code: the installed console script is `python -m pipelines.cli`
        [sys.executable, "-m", "pipelines.cli", *words[1:]],
        cwd=service["WorkingDirectory"],
        env={**environment, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_units_write_the_database_where_the_docs_say(simulator_factory, tmp_path):
    sim = simulator_factory(n_records=400)
    installed = tmp_path / "opt-quorum-sms"
    install_project(installed)
    documented = environment_file((DEPLOY / "quorum-sms.env.example").read_text())
    assert documented["QUORUM_DATABASE"] == "data/quorum.duckdb"
    # what the operator fills in (credentials) and what differs here (the API's address)
    environment = {
        **documented,
        "QUORUM_USERNAME": API_USER,
        "QUORUM_API_KEY": API_KEY,
        "QUORUM_BASE_URL": sim.base_url,
        "QUORUM_INITIAL_VALUE": "2000-01-01",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
    }
    stray = Path("/data/quorum.duckdb")
    stray_before = stray.exists()

    for name in ("quorum-sms-sync.service", "quorum-sms-reconcile.service"):
        assert unit_service(name)["WorkingDirectory"] == "/"
        done = run_unit(name, installed, environment)
        assert done.returncode == 0, done.stdout + done.stderr

    database = installed / "data" / "quorum.duckdb"
    assert database.is_file(), sorted(str(p) for p in installed.rglob("*.duckdb"))
    assert stray.exists() == stray_before  # not beside the working directory `/`
    for name in ("quorum-sms-sync.service", "quorum-sms-reconcile.service"):
        writable = unit_service(name)["ReadWritePaths"].replace(INSTALLED, str(installed))
        assert database.parent == Path(writable)
    with duckdb.connect(str(database), read_only=True) as connection:
        loaded = connection.execute("select count(*) from quorum_raw.sendsms").fetchone()
        runs = connection.execute(
            "select command, status from quorum_ops.sync_runs order by started_at"
        ).fetchall()
    assert loaded == (400,)
    assert runs == [("sync", "succeeded"), ("reconcile", "succeeded")]


def test_a_relative_path_means_the_project_in_settings_and_the_current_folder_in_the_flag(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUORUM_DATABASE", "data/nightly.duckdb")
    assert resolve_database(None) == PROJECT_ROOT / "data" / "nightly.duckdb"
    assert resolve_database("data/mine.duckdb") == tmp_path / "data" / "mine.duckdb"
    monkeypatch.setenv("QUORUM_DATABASE", "~/q.duckdb")
    assert resolve_database(None) == Path.home() / "q.duckdb"


def test_the_documented_initial_value_variable_starts_a_first_sync(
    sync_env, simulator_factory, monkeypatch
):
    """QUORUM_INITIAL_VALUE once reached dlt's incremental as a raw string (exit 1)."""
    from pipelines.cli import main

    sim = simulator_factory(n_records=120)
    monkeypatch.delenv("SOURCES__QUORUM__INITIAL_VALUE")
    monkeypatch.setenv("QUORUM_INITIAL_VALUE", "2000-01-01")
    assert main(["sync", "--base-url", sim.base_url, "--no-models"]) == 0
    with duckdb.connect(str(sync_env), read_only=True) as connection:
        assert connection.execute("select count(*) from quorum_raw.sendsms").fetchone() == (120,)

"""A throwaway PostgreSQL cluster for the tests, and a fresh database per test.

The cluster runs from Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`) as
an unprivileged user (initdb refuses root), on a free loopback port with its socket in its
own temporary folder, and is stopped and removed when the session ends. Each test gets a new
database owned by a password-protected role, so the credentials string has a password that
must stay secret. Without PostgreSQL the tests skip and name the install command; with
CI=true a missing PostgreSQL fails them instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Distinctive, so a search of every error text for it cannot match by accident.
PG_PASSWORD = "pgPW-7c1e5a93d2"
PG_ROLE = "quorum_tester"
INSTALL = "apt-get install postgresql"


@dataclass
class Cluster:
    """A running throwaway cluster: where it listens and how to reach it as superuser."""

    bin_dir: Path
    folder: Path
    port: int
    created: int = 0

    @property
    def socket_dir(self) -> str:
        """The folder holding the server's Unix socket."""
        return str(self.folder)

    def superuser_connection(self, dbname: str = "postgres") -> object:
        """A psycopg2 connection as the cluster's superuser, over the socket (autocommit)."""
        import psycopg2

        connection = psycopg2.connect(
            host=self.socket_dir, port=self.port, user="postgres", dbname=dbname
        )
        connection.autocommit = True
        return connection

    def credentials(self, database: str) -> str:
        """The dlt-style credentials string for a database, as the password-protected role."""
        return f"postgresql://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, if any."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as(user: str | None, *command: str) -> None:
    prefix = ["runuser", "-u", user, "--"] if user else []
    result = subprocess.run([*prefix, *command], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:1])} failed ({result.returncode}): {result.stderr.strip()}"
        )


def _server_user() -> str | None:
    """Who runs the server: ourselves unless we are root, then `postgres` (or `nobody`)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root, and there is no postgres or nobody user to run as")


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def start_cluster(settings: tuple[str, ...] = ()) -> tuple[Cluster, str | None]:
    """initdb and start a cluster in a new temporary folder; returns it and its OS user.

    Args:
        settings: extra `name=value` server settings (the benchmark gives more memory).

    Raises:
        PostgresMissing: PostgreSQL is not installed.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise PostgresMissing(f"PostgreSQL is not installed; install it with `{INSTALL}`.")
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="quorum-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = folder / "data"
    _run_as(user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
            "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256")
    port = _free_port()
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
        + "".join(f" -c {setting}" for setting in settings)
    )
    _run_as(user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
            "-o", options, "-w", "-t", "60", "start")
    return Cluster(bin_dir, folder, port), user


def stop_cluster(cluster: Cluster, user: str | None) -> None:
    """Stop the server and remove its folder."""
    try:
        _run_as(user, str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.folder / "data"),
                "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(cluster.folder, ignore_errors=True)


def create_test_role(cluster: Cluster) -> None:
    """Create the password-protected role that owns the test databases."""
    connection = cluster.superuser_connection()
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(f"create role {PG_ROLE} login password %s", [PG_PASSWORD])
    connection.close()  # type: ignore[attr-defined]


def create_database(cluster: Cluster) -> str:
    """A new, empty database owned by the test role; returns its credentials string."""
    cluster.created += 1
    name = f"test_{cluster.created}"
    connection = cluster.superuser_connection()
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(f"create database {name} owner {PG_ROLE}")
    connection.close()  # type: ignore[attr-defined]
    return cluster.credentials(name)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the whole session, with the test role created."""
    try:
        cluster, user = start_cluster()
    except PostgresMissing as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true: a missing PostgreSQL is a failure, not a skip.)")
        pytest.skip(str(missing))
    try:
        create_test_role(cluster)
        yield cluster
    finally:
        stop_cluster(cluster, user)


@pytest.fixture
def postgres_database(postgres_cluster: Cluster) -> str:
    """A new, empty database owned by the test role; returns its credentials string."""
    return create_database(postgres_cluster)

"""Which warehouse the commands work on: the DuckDB file, or the PostgreSQL database.

With `destination = "postgres"` the raw tables, the run history and the marts all live in
one PostgreSQL database whose credentials dlt resolves the usual way
(`DESTINATION__POSTGRES__CREDENTIALS=postgresql://...` or
`[destination.postgres.credentials]` in `.dlt/secrets.toml`). Every other destination
keeps the history and models in the DuckDB file. The password is registered with
`pipelines.redaction` as soon as it is read, so no log line or message can carry it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.destinations.impl.postgres.configuration import PostgresClientConfiguration

from pipelines.errors import ConfigError
from pipelines.redaction import register_secret

POSTGRES = "postgres"
#: What `destination` names where the models, history and report run (see docs/models.md).
MODEL_ENGINES = ("duckdb", POSTGRES)


def postgres_credentials() -> str:
    """The PostgreSQL credentials string dlt resolves for its postgres destination.

    Raises:
        ConfigError: no credentials are configured, or they cannot be read.
    """
    from pipelines.config import use_project_config

    use_project_config()
    try:
        resolved = resolve_configuration(
            PostgresClientConfiguration(), sections=("destination", POSTGRES), accept_partial=True
        )
        credentials = resolved.credentials
        if credentials is None or not credentials.is_resolved():
            raise ConfigError(_MISSING)
        if credentials.password:
            register_secret(str(credentials.password))
        # only what libpq reads: dlt adds its own query keys (client_encoding, ...)
        host = credentials.host or "localhost"
        port = credentials.port or 5432
        user = quote(str(credentials.username or ""), safe="")
        password = quote(str(credentials.password or ""), safe="")
        login = f"{user}:{password}" if password else user
        return f"postgresql://{login}@{host}:{port}/{credentials.database}"
    except ConfigurationException:
        raise ConfigError(_MISSING) from None


_MISSING = (
    "The destination is postgres but no PostgreSQL credentials are configured. Set "
    "DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host:5432/database, or "
    "put them under [destination.postgres.credentials] in .dlt/secrets.toml, then run again."
)


def warehouse_target(destination: str, database: Path) -> str | Path:
    """Where the history and the models live: the credentials string, or the DuckDB file.

    Args:
        destination: the `destination` setting.
        database: the resolved `database` path (the DuckDB file).

    Raises:
        ConfigError: the destination is postgres and its credentials are missing.
    """
    return postgres_credentials() if destination == POSTGRES else database


def builds_models(destination: str) -> bool:
    """Whether the models, history and report run for this destination (else raw tables only)."""
    return destination in MODEL_ENGINES


def model_target(destination: str, database: Path) -> str | Path:
    """The warehouse of `models`, `report`, `export`, `status` and `reconcile`.

    Raises:
        ConfigError: the destination is not one the models run on, or its credentials are
            missing.
    """
    if not builds_models(destination):
        raise ConfigError(
            f"The destination {destination} receives the raw tables only: the models, run "
            f"history, report, export and reconcile run on {' and '.join(MODEL_ENGINES)}. "
            "Query the raw tables in that warehouse directly, or choose --destination duckdb "
            "or postgres."
        )
    return warehouse_target(destination, database)


def target_label(target: str | Path) -> str:
    """Where a target is, safe to print: the DuckDB path, or the credentials without password."""
    from pipelines.warehouse.engine import redact_credentials

    return str(target) if isinstance(target, Path) else redact_credentials(target)

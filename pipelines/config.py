"""Settings of a run, from the command line, QUORUM_* variables and dlt's own config.

Precedence, highest first: a command-line flag; `QUORUM_BASE_URL`, `QUORUM_USERNAME`,
`QUORUM_API_KEY`, `QUORUM_DATABASE`; dlt's providers (`SOURCES__QUORUM__API_KEY`-style
environment variables, `.dlt/secrets.toml`, `.dlt/config.toml`); the defaults in
`pipelines.quorum.settings`. Every value is validated here, so a bad setting fails before any
request is sent or any file is touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
import pendulum

from pipelines.errors import ConfigError
from pipelines.quorum import settings
from pipelines.quorum.client import validate_base_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE = "data/quorum.duckdb"
SOURCE_SECTION = "sources.quorum"
APP_SECTION = "quorum_sms"


def use_project_config() -> None:
    """Point dlt at this project's `.dlt/` folder, so cron can run us from any directory."""
    if (PROJECT_ROOT / ".dlt").is_dir():
        os.environ.setdefault("DLT_PROJECT_DIR", str(PROJECT_ROOT))


def lookup(section: str, key: str, env: str | None = None, default: Any = None) -> Any:
    """One setting: the QUORUM_* variable, else dlt's providers, else the default."""
    if env and os.environ.get(env):
        return os.environ[env]
    value: Any = dlt.config.get(f"{section}.{key}")
    if value is None:
        value = dlt.secrets.get(f"{section}.{key}")
    return default if value is None or value == "" else value


def resolve_database(path: str | os.PathLike[str] | None) -> Path:
    """The DuckDB file: the flag, else QUORUM_DATABASE, else config, else data/quorum.duckdb.

    A relative `--database` or QUORUM_DATABASE is relative to the current directory, as a
    shell user expects; a relative path in the config files is relative to the project
    folder, so cron (started anywhere) and a shell agree on the file.
    """
    given = str(path).strip() if path is not None else ""
    if not given:
        given = os.environ.get("QUORUM_DATABASE", "").strip()
    if given:
        candidate = Path(given).expanduser().resolve()
    else:
        use_project_config()
        candidate = Path(str(lookup(APP_SECTION, "database", default=DEFAULT_DATABASE)))
        candidate = candidate.expanduser()
        if not candidate.is_absolute():
            candidate = PROJECT_ROOT / candidate
    if candidate.exists() and candidate.is_dir():
        raise ConfigError(
            f"The database path {candidate} is a directory; give a file path such as "
            f"{candidate / 'quorum.duckdb'} with --database or QUORUM_DATABASE."
        )
    return candidate


def parse_since(value: str) -> str:
    """Validate a `--since` date or date-time; return it as an ISO string in UTC."""
    try:
        parsed = pendulum.parse(value)
    except (ValueError, TypeError, pendulum.parsing.exceptions.ParserError):
        parsed = None
    if not isinstance(parsed, datetime):
        if isinstance(parsed, pendulum.Date):
            parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")
        else:
            raise ConfigError(
                f"{value!r} is not a date. Give --since (or [sources.quorum] initial_value) as "
                "an ISO date such as 2024-01-31 or a date-time such as 2024-01-31T12:00:00Z."
            )
    return pendulum.instance(parsed).in_timezone("UTC").isoformat()


def _number(section: str, key: str, default: float, *, minimum: float) -> float:
    raw = lookup(section, key, default=default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not value >= minimum:
        raise ConfigError(
            f"The setting {section}.{key} must be a number of at least {minimum}, not {raw!r}; "
            "fix it in .dlt/config.toml or its environment variable."
        )
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SyncConfig:
    """Everything one sync needs, validated."""

    base_url: str
    username: str
    api_key: str
    database: Path
    destination: str
    initial_value: str
    since_given: bool
    lag_seconds: float
    page_size: int
    concurrency: int
    requests_per_second: float | None
    max_attempts: int
    max_total_wait: float
    backoff_initial: float
    timeout: float
    lock_wait_seconds: float
    duckdb_memory_limit: str
    duckdb_threads: int
    full_refresh: bool
    force_full_scan: bool
    build_models: bool

    def source_kwargs(self) -> dict[str, Any]:
        """Arguments for `quorum_source`."""
        return {
            "base_url": self.base_url,
            "username": self.username,
            "api_key": self.api_key,
            "initial_value": self.initial_value,
            "lag_seconds": self.lag_seconds,
            "page_size": self.page_size,
            "concurrency": self.concurrency,
            "requests_per_second": self.requests_per_second,
            "max_attempts": self.max_attempts,
            "max_total_wait": self.max_total_wait,
            "backoff_initial": self.backoff_initial,
            "timeout": self.timeout,
            "force_full_scan": self.force_full_scan,
        }


def load_sync_config(
    *,
    base_url: str | None = None,
    database: str | None = None,
    since: str | None = None,
    full_refresh: bool = False,
    build_models: bool = True,
) -> SyncConfig:
    """Resolve and validate every setting of a sync (see the module docstring)."""
    use_project_config()
    url = validate_base_url(
        base_url
        or str(lookup(SOURCE_SECTION, "base_url", "QUORUM_BASE_URL", settings.DEFAULT_BASE_URL))
    )
    username = str(lookup(SOURCE_SECTION, "username", "QUORUM_USERNAME", ""))
    api_key = str(lookup(SOURCE_SECTION, "api_key", "QUORUM_API_KEY", ""))
    if not username or not api_key:
        raise ConfigError(
            "No Quorum credentials are configured. Set QUORUM_USERNAME and QUORUM_API_KEY, or "
            "username and api_key under [sources.quorum] in .dlt/secrets.toml (copy "
            ".dlt/secrets.toml.example)."
        )
    initial = since or str(
        lookup(SOURCE_SECTION, "initial_value", default=settings.DEFAULT_INITIAL_VALUE)
    )
    page_size = int(_number(SOURCE_SECTION, "page_size", settings.DEFAULT_PAGE_SIZE, minimum=1))
    rate = _number(SOURCE_SECTION, "requests_per_second", 0, minimum=0)
    destination = str(lookup(APP_SECTION, "destination", "QUORUM_DESTINATION", "duckdb"))
    return SyncConfig(
        base_url=url,
        username=username,
        api_key=api_key,
        database=resolve_database(database),
        destination=destination,
        initial_value=parse_since(initial),
        since_given=since is not None,
        lag_seconds=_number(SOURCE_SECTION, "lag_seconds", settings.DEFAULT_LAG_SECONDS, minimum=0),
        page_size=min(page_size, settings.MAX_PAGE_SIZE),
        concurrency=int(_number(SOURCE_SECTION, "concurrency", 4, minimum=1)),
        requests_per_second=rate or None,
        max_attempts=int(
            _number(SOURCE_SECTION, "max_attempts", settings.DEFAULT_MAX_ATTEMPTS, minimum=1)
        ),
        max_total_wait=_number(
            SOURCE_SECTION, "max_total_wait", settings.DEFAULT_MAX_TOTAL_WAIT_SECONDS, minimum=0
        ),
        backoff_initial=_number(
            SOURCE_SECTION,
            "backoff_initial",
            settings.DEFAULT_BACKOFF_INITIAL_SECONDS,
            minimum=0,
        ),
        timeout=_number(SOURCE_SECTION, "timeout", settings.DEFAULT_TIMEOUT_SECONDS, minimum=0.1),
        lock_wait_seconds=_number(APP_SECTION, "lock_wait_seconds", 10, minimum=0),
        duckdb_memory_limit=str(lookup(APP_SECTION, "duckdb_memory_limit", default="128MB")),
        duckdb_threads=int(_number(APP_SECTION, "duckdb_threads", 2, minimum=1)),
        full_refresh=full_refresh,
        force_full_scan=_flag(lookup(SOURCE_SECTION, "force_full_scan", default=False)),
        build_models=build_models,
    )


# -- operations: failure webhook and personal data ------------------------------------------

#: Groups of personal-data columns and what may be done with each (see docs/operations.md).
PII_GROUPS = ("phones", "emails", "names", "messages", "recipients")
PII_CHOICES = ("keep", "hash", "drop")
#: A shorter key could be guessed; 32 random characters are easy to generate (docs).
PII_KEY_MIN_LENGTH = 16


@dataclass(frozen=True)
class PiiSettings:
    """The personal-data policy: a choice per column group, and the HMAC key for `hash`."""

    choices: dict[str, str]
    hash_key: str | None = None

    def __repr__(self) -> str:  # the key must never reach a log line or a traceback
        return f"PiiSettings(choices={self.choices!r}, hash_key={'***' if self.hash_key else None})"

    @property
    def keeps_everything(self) -> bool:
        """True when every group is kept as it comes (no transform needed)."""
        return all(choice == "keep" for choice in self.choices.values())


def load_pii_settings() -> PiiSettings:
    """Read `[quorum_sms] pii_<group>` (keep/hash/drop) and the secret `pii_hash_key`.

    Raises:
        ConfigError: an unknown choice, or `hash` chosen without a (long enough) key.
    """
    use_project_config()
    choices: dict[str, str] = {}
    for group in PII_GROUPS:
        raw = str(lookup(APP_SECTION, f"pii_{group}", f"QUORUM_PII_{group.upper()}", "keep"))
        choice = raw.strip().lower()
        if choice not in PII_CHOICES:
            raise ConfigError(
                f"The setting {APP_SECTION}.pii_{group} must be keep, hash or drop, not {raw!r}; "
                "fix it in .dlt/config.toml or QUORUM_PII_" + group.upper() + "."
            )
        choices[group] = choice
    key = lookup(APP_SECTION, "pii_hash_key", "QUORUM_PII_HASH_KEY", None)
    key_text = None if key is None else str(key)
    if "hash" in choices.values():
        hashed = ", ".join(g for g, c in choices.items() if c == "hash")
        if not key_text:
            raise ConfigError(
                f"Personal data is set to be hashed ({hashed}) but no hash key is configured, so "
                "nothing was read or written. Put a long random secret as pii_hash_key under "
                "[quorum_sms] in .dlt/secrets.toml (or QUORUM_PII_HASH_KEY), for example the "
                "output of `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`; keep "
                "it: another key gives other hashes and breaks joins with earlier loads."
            )
        if len(key_text) < PII_KEY_MIN_LENGTH:
            raise ConfigError(
                f"The pii_hash_key is shorter than {PII_KEY_MIN_LENGTH} characters, so hashed "
                "phone numbers could be recovered by guessing the key. Use a long random secret "
                "(`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
            )
    return PiiSettings(choices=choices, hash_key=key_text)


def load_webhook_url() -> str | None:
    """The optional failure webhook (`[quorum_sms] webhook_url` or QUORUM_WEBHOOK_URL).

    Raises:
        ConfigError: the value is not an http(s) URL.
    """
    use_project_config()
    raw = lookup(APP_SECTION, "webhook_url", "QUORUM_WEBHOOK_URL", None)
    if raw is None or not str(raw).strip():
        return None
    url = str(raw).strip()
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            "The failure webhook (QUORUM_WEBHOOK_URL or [quorum_sms] webhook_url) is not an "
            "http(s) URL; fix it or remove it. Its value is not shown because webhook URLs are "
            "secrets."
        )
    return url

"""Settings of a run: one typed spec per section, resolved by dlt, with flags on top.

Where a value comes from, highest first: a command-line flag; the documented environment
variable of the setting (`QUORUM_<NAME>`, see `QuorumEnvironment`); dlt's own providers
(`SOURCES__QUORUM__<NAME>` / `QUORUM_SMS__<NAME>` variables, `.dlt/secrets.toml`,
`.dlt/config.toml`); the default written in the spec. The specs are
`pipelines.quorum.settings.QuorumSourceSettings` (`[sources.quorum]`, what the dlt source
needs) and `RunSettings` below (`[quorum_sms]`, what the commands around it need). Adding a
setting is adding one `setting(...)` field to one of them: its environment variable, its line
in `.dlt/config.toml` and its row in the README follow (`quorum-sms settings`).

Every value is validated here, so a bad setting fails before any request is sent or any file
is touched.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.container import Container
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationValueError,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.configuration.providers.provider import ConfigProvider
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import DestinationException
from dlt.common.typing import TSecretStrValue

from pipelines.dbfile import check_database_file
from pipelines.errors import ConfigError
from pipelines.quorum import check_settings
from pipelines.quorum.settings import (
    SOURCE_SECTION,
    QuorumSourceSettings,
    check_values,
    invalid_setting_message,
    setting,
)
from pipelines.warehouse.memory import setting_problem as memory_setting_problem

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_SECTION = ("quorum_sms",)
#: Prefix of every setting's documented environment variable: QUORUM_<NAME>.
ENV_PREFIX = "QUORUM_"

#: Groups of personal-data columns and what may be done with each (see docs/operations.md).
PII_GROUPS = ("phones", "emails", "names", "messages", "recipients")
PII_CHOICES = ("keep", "hash", "drop")
#: A shorter key could be guessed; 32 random characters are easy to generate (docs).
PII_KEY_MIN_LENGTH = 16
#: How far in the future a start date may be: clock skew between this machine and Quorum's.
FUTURE_SKEW = timedelta(minutes=5)


def _pii(what: str) -> Any:
    return setting("keep", f"Personal data: {what}. keep, hash or drop.", choices=PII_CHOICES)


@configspec
class RunSettings(BaseConfiguration):
    """Every setting of the commands around the source (section `[quorum_sms]`)."""

    database: str = setting(
        "data/quorum.duckdb",
        "The DuckDB file. A relative path is relative to the project folder, here and in "
        "QUORUM_DATABASE, wherever the command is started from; only the --database flag is "
        "relative to the current directory.",
        path=True,
    )
    publish_database: str = setting(
        "",
        "The published analytics file that report, export and BI tools read (a copy of the "
        "marts, replaced atomically after every successful model build). Empty: "
        "<warehouse stem>-analytics.duckdb beside the warehouse. Relative paths as for database.",
        path=True,
    )
    destination: str = setting(
        "duckdb",
        "Any dlt destination name (duckdb, postgres, snowflake, bigquery, ...); credentials of "
        "the others go in .dlt/secrets.toml under [destination.<name>.credentials]. The SQL "
        "models, run history, report and reconcile run on duckdb and postgres; other "
        "destinations get the raw tables only.",
    )
    lock_wait_seconds: float = setting(
        10.0,
        "How long a run waits for another run of the same database to finish before giving up.",
        minimum=0,
    )
    duckdb_memory_limit: str = setting(
        "auto",
        "DuckDB's memory ceiling while loading, building the models and publishing (a size "
        "such as 256MB, or auto); above it DuckDB spills to a temporary folder beside the "
        "database. DuckDB fills its ceiling, so this is also most of a run's peak memory. Two "
        "steps cannot spill and need more as the warehouse grows: deleting a night's old "
        "event rows and a full model build (at 10M records 128MB failed the deletes, and the "
        "build on one day of two; 96MB failed the build; 256MB passed both). auto: a sixth of the "
        "database file's size, at least 64MB (up to about 1.35M records) and at most 256MB "
        "(from about 5M records), the run history's connection 64MB; the loads of a run "
        "that began on an empty warehouse (a first sync, --full-refresh) have nothing to "
        "delete and take 256 bytes per record of their window at any size (64MB for a "
        "window of 250,000); a nightly load and an incremental model build take 64MB plus "
        "20 KB for each 2,048-row vector their deletes reach (counted first), at most the "
        "file's share; a load or a build that runs out of its ceiling is tried again at "
        "twice that.",
    )
    duckdb_threads: int = setting(
        2, "DuckDB's worker threads while loading, building the models and publishing.",
        minimum=1,
    )
    duckdb_compact_every: int = setting(
        7,
        "Every how many nightly runs DuckDB may merge row groups (its vacuum at a checkpoint). "
        "Between those runs a night's load appends its rows as a small row group of their own "
        "and leaves the rows it replaced marked deleted; the run that compacts merges what "
        "the nights since thinned or appended, at once. DuckDB merges at every checkpoint "
        "otherwise, and at 10M records a night's merge of the newest row groups rewrote two "
        "full ones (about 245,000 records) to take in 14,000: 1.5-1.9 s of the load. 1 "
        "merges on every run (DuckDB's default). A first sync, --full-refresh and the other "
        "commands always may.",
        minimum=1,
    )
    records_per_load: int = setting(
        250_000,
        "A sync that reads more records than this loads them in consecutive windows of "
        "`updated`, each its own dlt load that moves the cursor with its data: merges stay "
        "small however large the history, and a run stopped halfway keeps the windows it "
        "loaded. 0 loads every sync in one piece.",
        minimum=0,
    )
    load_beside_read: bool = setting(
        True,
        "In a sync loaded in windows (records_per_load), load each window while the next one "
        "is read: on two cores 5-9 % faster, with a peak ~20 MB higher at 1M records (about "
        "310 against 290 MB) and up to ~65 MB at 10M (DuckDB's buffers and the read's pages "
        "at once). false loads one window after the other.",
    )
    webhook_url: TSecretStrValue | None = setting(
        None,
        "Failure alerts: a Slack-compatible webhook gets the failure summary ({\"text\": ...}). "
        "A secret: .dlt/secrets.toml or the environment, not config.toml.",
    )
    pii_phones: str = _pii("recipient phone numbers (rcpt_dict phone keys, phone-named fields)")
    pii_emails: str = _pii("supporter_email and e-mail keys")
    pii_names: str = _pii("supporter_name, supporter_title, supporter_public_organization")
    pii_messages: str = _pii("message_content")
    pii_recipients: str = _pii("rcpt_dict as a whole")
    pii_hash_key: TSecretStrValue | None = setting(
        None,
        f"Key of the `hash` personal-data choice (a secret, at least {PII_KEY_MIN_LENGTH} "
        "characters; keep it: another key gives other hashes and breaks joins).",
    )


#: Every settings spec and its section, in the order the docs list them.
SPECS: tuple[tuple[tuple[str, ...], type[BaseConfiguration]], ...] = (
    (SOURCE_SECTION, QuorumSourceSettings),
    (RUN_SECTION, RunSettings),
)


def env_name(name: str) -> str:
    """The documented environment variable of a setting: QUORUM_<NAME>."""
    return ENV_PREFIX + name.upper()


def spec_fields(spec: type[BaseConfiguration]) -> Iterator[dataclasses.Field[Any]]:
    """The settings of a spec (dlt's own bookkeeping fields left out)."""
    return (f for f in dataclasses.fields(spec) if "doc" in f.metadata)


class QuorumEnvironment(ConfigProvider):
    """dlt config provider for the documented names: `QUORUM_<NAME>` for every setting.

    It sits above dlt's own providers, so `QUORUM_BASE_URL` beats `SOURCES__QUORUM__BASE_URL`
    and the toml files. An empty variable counts as unset. A relative path setting given here
    means what it means in the config files, relative to the project folder: an environment
    file (cron, systemd) is read from whatever working directory the scheduler uses.
    """

    def __init__(self) -> None:
        self._fields = {
            section: {f.name: f for f in spec_fields(spec)} for section, spec in SPECS
        }

    def get_value(
        self, key: str, hint: type[Any], pipeline_name: str | None, *sections: str
    ) -> tuple[Any | None, str]:
        """The value of `QUORUM_<KEY>` when `key` is a setting of the given section."""
        name = env_name(key)
        for section, fields in self._fields.items():
            # exactly the spec's section: dlt's incremental looks up its own `initial_value`
            # under sources.quorum.sendsms.updated, which is not this setting
            if tuple(sections) == section and key in fields:
                value = os.environ.get(name, "").strip()
                if not value:
                    return None, name
                if fields[key].metadata.get("path"):
                    value = str(Path(value).expanduser())
                return value, name
        return None, name

    @property
    def supports_secrets(self) -> bool:
        """Credentials come from the environment too (cron, systemd EnvironmentFile)."""
        return True

    @property
    def supports_sections(self) -> bool:
        """Sections decide which spec a key belongs to."""
        return True

    @property
    def name(self) -> str:
        """Shown in dlt's lookup traces."""
        return "QUORUM_* environment variables"

    @property
    def is_empty(self) -> bool:
        """Never skipped: whether a variable is set is decided per lookup."""
        return False


def use_project_config() -> None:
    """Point dlt at this project's `.dlt/` and put the QUORUM_* names above dlt's own.

    Idempotent; called before every resolution, so cron can run us from any directory.
    """
    if (PROJECT_ROOT / ".dlt").is_dir():
        os.environ.setdefault("DLT_PROJECT_DIR", str(PROJECT_ROOT))
    providers = Container()[PluggableRunContext].providers.providers
    if not any(isinstance(p, QuorumEnvironment) for p in providers):
        providers.insert(0, QuorumEnvironment())


TSpec = TypeVar("TSpec", bound=BaseConfiguration)


def resolve(spec: TSpec, section: tuple[str, ...]) -> TSpec:
    """Resolve a spec with dlt's providers (and the QUORUM_* names); validate its values.

    Raises:
        ConfigError: a value that cannot be read as its type, or one out of range.
    """
    use_project_config()
    where = ".".join(section)
    try:
        resolved = resolve_configuration(spec, sections=section)
    except ConfigValueCannotBeCoercedException as error:
        field = next(f for f in dataclasses.fields(spec) if f.name == error.field_name)
        raise ConfigError(
            invalid_setting_message(
                where,
                error.field_name,
                error.field_value,
                minimum=field.metadata.get("minimum"),
                choices=field.metadata.get("choices") or (),
            )
        ) from None
    except (ConfigFieldMissingException, ConfigurationValueError) as error:
        raise ConfigError(
            f"The settings under [{where}] could not be read ({type(error).__name__}); check "
            ".dlt/config.toml, .dlt/secrets.toml and the QUORUM_* environment variables."
        ) from None
    check_values(resolved, where)
    return resolved


def resolve_database(
    path: str | os.PathLike[str] | None,
    configured: str | None = None,
    *,
    inspect: bool = True,
) -> Path:
    """The DuckDB file: the flag, else QUORUM_DATABASE, else config, else data/quorum.duckdb.

    A relative `--database` is relative to the current directory, as a shell user expects; a
    relative path in a setting (QUORUM_DATABASE, the config files) is relative to the project
    folder, so cron and systemd (started anywhere, systemd from `/`) and a shell agree.

    Args:
        path: the `--database` flag, if given.
        configured: the resolved `database` setting (read here when not given).
        inspect: refuse an existing file that is no usable DuckDB database (see
            `pipelines.dbfile.check_database_file`); a command that never opens it skips this.

    Raises:
        ConfigError: the path is a directory, another kind of file, or a damaged database.
    """
    given = str(path).strip() if path is not None else ""
    if given:
        candidate = Path(given).expanduser().resolve()
    else:
        if configured is None:
            configured = resolve(RunSettings(), RUN_SECTION).database
        candidate = Path(configured).expanduser()
        if not candidate.is_absolute():
            candidate = (PROJECT_ROOT / candidate).resolve()
    if inspect:
        check_database_file(candidate)
    return candidate


def resolve_publish_database(
    path: str | os.PathLike[str] | None, configured: str | None, database: Path
) -> Path:
    """The published analytics file: the flag, else QUORUM_PUBLISH_DATABASE or config, else
    `<warehouse stem>-analytics.duckdb` beside the warehouse.

    Relative paths follow the rule of `resolve_database`.

    Raises:
        ConfigError: the path is a directory, or the warehouse file itself.
    """
    from pipelines.warehouse.publish import default_publish_path

    given = str(path).strip() if path is not None else ""
    if given:
        candidate = Path(given).expanduser().resolve()
    elif configured:
        candidate = Path(configured).expanduser()
        if not candidate.is_absolute():
            candidate = PROJECT_ROOT / candidate
    else:
        candidate = default_publish_path(database)
    if candidate.exists() and candidate.is_dir():
        raise ConfigError(
            f"The published analytics path {candidate} is a directory; give a file path such as "
            f"{candidate / 'quorum-analytics.duckdb'} with --publish-database or "
            "QUORUM_PUBLISH_DATABASE."
        )
    if candidate.resolve() == database.resolve():
        raise ConfigError(
            f"The published analytics file cannot be the warehouse itself ({database}): BI tools "
            "holding it open would block the nightly job. Leave --publish-database "
            "(QUORUM_PUBLISH_DATABASE) empty for the default beside the warehouse."
        )
    return candidate


def check_destination(name: str) -> None:
    """Refuse a destination dlt does not know before anything is read or written.

    Raises:
        ConfigError: `name` is neither a dlt destination nor a configured named destination.
    """
    try:
        Destination.from_reference(name)
    except (DestinationException, ImportError, ValueError):
        raise ConfigError(
            f"The destination {name!r} (QUORUM_DESTINATION or [quorum_sms] destination) is not "
            "a dlt destination, so nothing was read or written. Use duckdb (the default, which "
            "the models, the report and the run history need), postgres, or another dlt "
            "destination name such as snowflake or bigquery."
        ) from None


@dataclass(frozen=True)
class SyncConfig:
    """Everything a command needs, validated: the source's settings, the run's, and flags."""

    source: QuorumSourceSettings
    run: RunSettings
    database: Path
    publish_database: Path
    since_given: bool = False
    full_refresh: bool = False
    build_models: bool = True
    #: the model directory of the nightly build; None is the project's sql/
    sql_dir: Path | None = None

    @property
    def is_duckdb(self) -> bool:
        """Whether the warehouse is the DuckDB file (else PostgreSQL or another destination)."""
        return self.run.destination == "duckdb"


def load_run_settings(
    database: str | None = None,
    destination: str | None = None,
    *,
    inspect: bool = True,
) -> tuple[RunSettings, Path]:
    """The `[quorum_sms]` settings and the database path, for commands without the API.

    Args:
        database: the `--database` flag, if given.
        destination: the `--destination` flag, if given (over QUORUM_DESTINATION).

    Raises:
        ConfigError: a bad value, an unknown destination, or a database path that holds no
            usable DuckDB database (see `resolve_database`).
    """
    run = resolve(RunSettings(), RUN_SECTION)
    if destination:
        run.destination = destination.strip()
    check_destination(run.destination)
    wanted = memory_setting_problem(run.duckdb_memory_limit)
    if wanted is not None:
        # DuckDB's own refusal would come at the first connection, mid-run, in its words
        raise ConfigError(
            invalid_setting_message(RUN_SECTION[-1], "duckdb_memory_limit",
                                    run.duckdb_memory_limit).replace("a valid value", wanted)
        )
    return run, resolve_database(database, run.database, inspect=inspect)


def load_published_paths(
    database: str | None = None,
    publish_database: str | None = None,
    destination: str | None = None,
) -> tuple[RunSettings, Path, Path]:
    """The `[quorum_sms]` settings, the warehouse file and the published analytics file.

    Raises:
        ConfigError: a bad value.
    """
    run, path = load_run_settings(database, destination)
    return run, path, resolve_publish_database(publish_database, run.publish_database, path)


def load_sync_config(
    *,
    base_url: str | None = None,
    database: str | None = None,
    destination: str | None = None,
    since: str | None = None,
    full_refresh: bool = False,
    build_models: bool = True,
    publish_database: str | None = None,
    inspect_database: bool = True,
    sql_dir: str | os.PathLike[str] | None = None,
) -> SyncConfig:
    """Resolve and validate every setting of a command that talks to the API.

    Args:
        inspect_database: refuse a database path that holds no usable DuckDB file; `send`,
            which never opens the warehouse, turns it off.

    Raises:
        ConfigError: no credentials, a bad value (see the module docstring), or a start
            date (`--since`, `initial_value`) in the future.
    """
    source = resolve(QuorumSourceSettings(), SOURCE_SECTION)
    if base_url:
        source.base_url = base_url
    if since is not None:
        source.initial_value = since
    run, path = load_run_settings(database, destination, inspect=inspect_database)
    checked = check_settings(source)
    refuse_future_start(checked.initial_value, "--since" if since is not None else
                        "[sources.quorum] initial_value (QUORUM_INITIAL_VALUE)")
    return SyncConfig(
        source=checked,
        run=run,
        database=path,
        publish_database=resolve_publish_database(publish_database, run.publish_database, path),
        since_given=since is not None,
        full_refresh=full_refresh,
        build_models=build_models,
        sql_dir=Path(sql_dir).expanduser().resolve() if sql_dir is not None else None,
    )


def refuse_future_start(start: str, where: str) -> None:
    """Refuse a start date later than now (plus clock skew): it would freeze the cursor.

    A sync from the future reads nothing, yet saves that date as its cursor, so every later
    run would read nothing either. The bound is this machine's clock.

    Raises:
        ConfigError: the start is later than now plus `FUTURE_SKEW`.
    """
    parsed = datetime.fromisoformat(start)
    now = datetime.now(UTC)
    if parsed > now + FUTURE_SKEW:
        raise ConfigError(
            f"The start date {parsed.isoformat()} given as {where} is in the future (this "
            f"machine's clock says {now.replace(microsecond=0).isoformat()}). A sync from there "
            "would read nothing and save that date as its cursor, so every later run would read "
            "nothing either; nothing was changed. Give a date in the past, or leave it out to "
            "continue from the saved cursor."
        )


# -- operations: failure webhook and personal data ------------------------------------------


@dataclass(frozen=True)
class PiiSettings:
    """The personal-data policy: a choice per column group, and the HMAC key for `hash`."""

    choices: dict[str, str]
    hash_key: str | None = None

    def __repr__(self) -> str:  # the key must never reach a log line or a traceback
        return f"PiiSettings(choices={self.choices!r}, hash_key={'***' if self.hash_key else None})"

    @property
    def keeps_everything(self) -> bool:
        """True when every group is kept as it comes (no policy needed)."""
        return all(choice == "keep" for choice in self.choices.values())


def load_pii_settings(run: RunSettings | None = None) -> PiiSettings:
    """The `pii_<group>` choices (keep/hash/drop) and the secret `pii_hash_key`.

    Raises:
        ConfigError: an unknown choice, or `hash` chosen without a (long enough) key.
    """
    if run is None:
        run = resolve(RunSettings(), RUN_SECTION)
    choices = {group: str(getattr(run, f"pii_{group}")) for group in PII_GROUPS}
    key_text = run.pii_hash_key or None
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


def load_webhook_url(run: RunSettings | None = None) -> str | None:
    """The optional failure webhook (`webhook_url`, QUORUM_WEBHOOK_URL), or None.

    Raises:
        ConfigError: the value is not an http(s) URL.
    """
    if run is None:
        run = resolve(RunSettings(), RUN_SECTION)
    url = str(run.webhook_url or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            "The failure webhook (QUORUM_WEBHOOK_URL or [quorum_sms] webhook_url) is not an "
            "http(s) URL; fix it or remove it. Its value is not shown because webhook URLs are "
            "secrets."
        )
    return url

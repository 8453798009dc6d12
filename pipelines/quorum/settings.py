"""The Quorum SendSMS API's constants, and the source's settings with their defaults.

Field names follow `docs/quorum-api.md`, the contract the client and the simulator share.

`QuorumSourceSettings` is the one place where a source setting and its default are written:
dlt resolves it (environment variables such as `SOURCES__QUORUM__PAGE_SIZE`, then
`.dlt/secrets.toml` and `.dlt/config.toml` under `[sources.quorum]`), the command line adds
its own names and flags on top (`pipelines.config`), and `.dlt/config.toml` and the README's
table of settings are rendered from it (`quorum-sms settings`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from dlt.common.configuration import configspec
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue

DEFAULT_BASE_URL: Final = "https://www.quorum.us"
LIST_PATH: Final = "/api/sendsms/"
SEND_PATH: Final = "/api/sendsms/send_individual_sms/"

#: The API caps `limit` at 1000; asking for the cap costs the fewest round trips.
MAX_PAGE_SIZE: Final = 1000
#: Rows of consecutive pages handed to dlt as one item (`normalize.TableBatch`): dlt's extract
#: costs per item as well as per row, and 8 pages of 1000 per item took ~5 % less CPU of a 1M
#: sync than one page per item (docs/performance.md).
ROWS_PER_EXTRACT_ITEM: Final = 8000
#: The ceiling of one backoff; not a setting (max_total_wait bounds the whole wait).
BACKOFF_MAX_SECONDS: Final = 60.0

CURSOR_FIELD: Final = "updated"
TIMESTAMP_FIELDS: Final = ("created", "updated", "timestamp", "send_time", "bulk_sms_send_time")
EVENT_FIELDS: Final = (
    "queued_event",
    "sent_event",
    "delivered_event",
    "failed_event",
    "undelivered_event",
    "rejected_event",
)
#: Fields kept whole as JSON text; their keys are arbitrary (and may be personal data).
JSON_FIELDS: Final = ("rcpt_dict", "_extra")

RAW_DATASET: Final = "quorum_raw"
SENDSMS_TABLE: Final = "sendsms"
EVENTS_TABLE: Final = "sendsms_events"
PIPELINE_NAME: Final = "quorum_sms"
#: The dlt config section of the source: `[sources.quorum]`, `SOURCES__QUORUM__<KEY>`.
SOURCE_SECTION: Final = ("sources", "quorum")


def setting(
    default: Any,
    doc: str,
    *,
    minimum: float | None = None,
    choices: tuple[str, ...] = (),
    path: bool = False,
) -> Any:
    """Declare one setting of a settings spec: its default and what it means.

    Args:
        default: the default value (None: unset).
        doc: one or two sentences for `.dlt/config.toml` and the README's table.
        minimum: the smallest valid number, for numeric settings.
        choices: the valid values, for settings that take one of a few words.
        path: a file path (relative ones given in the environment are made absolute).

    Returns:
        A dataclass field that dlt's `@configspec` accepts.
    """
    metadata = {
        "doc": doc,
        "minimum": minimum,
        "choices": choices,
        "path": path,
    }
    return dataclasses.field(default=default, metadata=metadata)


@configspec
class QuorumSourceSettings(BaseConfiguration):
    """Every setting of the `quorum` source (section `[sources.quorum]`)."""

    base_url: str = setting(
        DEFAULT_BASE_URL,
        "The API's scheme and host. Always https://www.quorum.us (with www): the bare host "
        "answers GET but not POST. `quorum-sms demo` and the tests point it at the simulator.",
    )
    allow_insecure_http: bool = setting(
        False,
        "Allow a base_url that starts with http:// to a host other than this machine "
        "(loopback: 127.0.0.0/8, ::1, localhost). The API key travels in every URL, so it "
        "would cross the network unencrypted; leave it false.",
    )
    username: TSecretStrValue | None = setting(
        None, "The Quorum API user (a secret: .dlt/secrets.toml or the environment)."
    )
    api_key: TSecretStrValue | None = setting(
        None,
        "The Quorum API key (a secret: .dlt/secrets.toml or the environment); it travels in "
        "every URL and is redacted from every message, log line and table.",
    )
    initial_value: str = setting(
        "2010-01-01T00:00:00+00:00",
        "Where the very first sync starts (ISO date or date-time; naive means UTC). "
        "--since overrides it.",
    )
    lag_seconds: float = setting(
        3600.0,
        "Later runs start this many seconds before the saved cursor, so changes the API "
        "committed late (with an older `updated`) are still read; merging on id makes "
        "re-reads harmless.",
        minimum=0,
    )
    page_size: int = setting(
        MAX_PAGE_SIZE,
        "Records per request; the API caps it at 1000, which costs the fewest round trips.",
        minimum=1,
    )
    concurrency: int = setting(
        4,
        "Slices of the `updated` range read side by side (threads); 1 reads strictly "
        "sequentially.",
        minimum=1,
    )
    decode_workers: int = setting(
        0,
        "Processes that decode and normalize pages beside the loading interpreter during a "
        "read of 50 pages or more (JSON decoding and normalizing hold Python's GIL, so "
        "threads cannot); they get response bodies, never URLs or the API key. 0 (the "
        "default, see docs/performance.md) decodes in-process; try 2 against a slow remote "
        "API on a machine with idle cores.",
        minimum=0,
    )
    requests_per_second: float = setting(
        0.0,
        "Ceiling on requests per second across all slices; 0 means no ceiling. Quorum "
        "documents no rate limit, so stay polite on the live API.",
        minimum=0,
    )
    max_attempts: int = setting(
        8,
        "Attempts of one request (the first included) on 429, 5xx, dropped connections, "
        "timeouts and bodies that are not JSON.",
        minimum=1,
    )
    max_total_wait: float = setting(
        600.0, "Seconds one request may spend waiting between its retries.", minimum=0
    )
    backoff_initial: float = setting(
        0.5, "First backoff in seconds; it doubles per attempt, with jitter.", minimum=0
    )
    timeout: float = setting(
        60.0, "Seconds for one request (connect, read, write).", minimum=0.1
    )
    force_full_scan: bool = setting(
        False,
        "Skip keyset paging and scan every record, applying the cursor on the client. The "
        "sync picks this path by itself when the API refuses or ignores `updated` filters "
        "or ordering.",
    )

    max_reject_fraction: float = setting(
        0.01,
        "Records that cannot be loaded are set aside in quorum_raw.sendsms_rejects and retried "
        "by id every run (exit 5). When more than this share of a run's records are new "
        "rejects, the API's format changed: the run fails with nothing (of that load window) "
        "loaded. 0 makes any new bad record fail the run.",
        minimum=0,
    )

    @property
    def rate_ceiling(self) -> float | None:
        """`requests_per_second` as the client takes it: None when there is no ceiling."""
        return self.requests_per_second or None


#: The defaults, for the few signatures that take a setting as a plain argument.
DEFAULT_SETTINGS: Final = QuorumSourceSettings()


def invalid_setting_message(section: str, name: str, value: Any, *, minimum: float | None = None,
                            choices: tuple[str, ...] = ()) -> str:
    """The one-paragraph ConfigError text for a setting that has a value it cannot have."""
    if choices:
        wanted = ", ".join(choices[:-1]) + f" or {choices[-1]}"
    elif minimum is not None:
        wanted = f"a number of at least {minimum:g}"
    else:
        wanted = "a valid value"
    return (
        f"The setting {section}.{name} must be {wanted}, not {value!r}; fix it in "
        f".dlt/config.toml or its environment variable (QUORUM_{name.upper()})."
    )


def check_values(spec: BaseConfiguration, section: str) -> None:
    """Enforce the `minimum` and `choices` declared with `setting` on a resolved spec.

    Raises:
        ConfigError: a number below its minimum (or not a number), or an unknown choice.
    """
    from pipelines.errors import ConfigError

    for field in dataclasses.fields(spec):
        minimum, choices = field.metadata.get("minimum"), field.metadata.get("choices")
        value = getattr(spec, field.name)
        if minimum is not None:
            number = value if isinstance(value, int | float) else float("nan")
            if not number >= minimum:  # also refuses NaN
                raise ConfigError(invalid_setting_message(section, field.name, value,
                                                          minimum=minimum))
        if choices and value not in choices:
            raise ConfigError(invalid_setting_message(section, field.name, value,
                                                      choices=choices))

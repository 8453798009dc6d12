"""Typed errors of quorum-sms, each carrying the exit code the CLI turns it into.

Every message is one paragraph that says what happened and what to do about it, and never
contains a URL with credentials (see `pipelines.redaction.redact`).
"""

from __future__ import annotations

#: Exit code of a sync that loaded everything it could but set records aside as rejects.
EXIT_LOADED_WITH_REJECTS = 5


class QuorumSmsError(Exception):
    """Base class: an error the CLI reports as one paragraph and turns into `exit_code`."""

    exit_code: int = 1


class ConfigError(QuorumSmsError):
    """Bad configuration or usage: a malformed URL, a date that is not a date, a bad path."""

    exit_code = 2


class AuthError(QuorumSmsError):
    """The API refused the credentials (401/403)."""

    exit_code = 3


class ApiUnavailableError(QuorumSmsError):
    """The API kept failing (5xx, 429, dropped connections, bad bodies) past every retry."""

    exit_code = 4


class ApiRequestError(QuorumSmsError):
    """The API rejected a request (400) or answered something the contract does not allow."""

    exit_code = 1

    def __init__(self, message: str, api_message: str = "") -> None:
        super().__init__(message)
        #: the API's own words (`error` or `error_message` of the body), when it gave any
        self.api_message = api_message


class ApiBadRequestError(ApiRequestError):
    """The API answered 400: a parameter, filter or ordering it does not accept."""


class BadRecordError(QuorumSmsError):
    """A record from the API cannot be loaded as it is (say an unparseable `updated`)."""

    exit_code = 1


class SendOutcomeUnknownError(QuorumSmsError):
    """A send may or may not have happened (timeout, 5xx): it is never retried automatically."""

    exit_code = 4


class BusyError(QuorumSmsError):
    """Another run holds the database's lock."""

    exit_code = 1


class ModelBuildError(QuorumSmsError):
    """A SQL model failed to build; the previous marts are left in place."""

    exit_code = 1


class DataCheckError(QuorumSmsError):
    """A data check on the built marts failed."""

    exit_code = 1


class SyncFailed(QuorumSmsError):
    """A failure inside dlt that is none of ours; carries a redacted message."""

    exit_code = 1


class NotifyError(QuorumSmsError):
    """The failure webhook could not be delivered (reported, never the run's own outcome)."""

    exit_code = 1


class ReconcileRefusedError(QuorumSmsError):
    """Reconcile would mark an implausible share of the warehouse as deleted, so it stopped."""

    exit_code = 1


class PublishError(QuorumSmsError):
    """The analytics file could not be published; the previously published file is unchanged."""

    exit_code = 1

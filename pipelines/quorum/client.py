"""HTTP access to the Quorum API: credentials, timeouts, retries, rate limiting.

This is the only module that sees URLs and the API key. Quorum authenticates with the query
parameters `username` and `api_key`, so every URL (including the API's own `meta.next`) holds
the key: nothing here ever puts a URL into an exception or a log line without `redact`
(`pipelines.redaction`).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote_plus, urlsplit

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from pipelines.errors import (
    ApiBadRequestError,
    ApiRequestError,
    ApiUnavailableError,
    AuthError,
    ConfigError,
    SendOutcomeUnknownError,
)
from pipelines.quorum import settings
from pipelines.quorum.jsontext import loads_tolerant
from pipelines.redaction import install_log_redaction, redact, register_secret

Params = Sequence[tuple[str, str | int | float | bool | None]]
T = TypeVar("T")


class NotJsonError(ValueError):
    """A response body that is not JSON: a decoder raises it and the request is retried."""


def decode_json(content: bytes) -> Any:
    """A body as JSON: orjson, else the tolerant parser (lone surrogates kept as text).

    Raises:
        NotJsonError: the body is not JSON at all (a truncated body, an HTML error page).
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:
        return loads_tolerant(content)
    except ValueError:
        raise NotJsonError("the response body was not valid JSON") from None

class TransientApiError(Exception):
    """A failure worth retrying: 429, 5xx, a dropped connection, a timeout, a bad body."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class ClientStats:
    """Counters a sync reports in its summary; safe to update from several threads."""

    requests: int = 0
    retries: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_request(self) -> None:
        """Count one HTTP request sent."""
        with self._lock:
            self.requests += 1

    def count_retry(self, reason: str) -> None:
        """Count one retry and why it happened."""
        with self._lock:
            self.retries += 1
            self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1


class RateLimiter:
    """Spaces requests so that at most `per_second` start in any second, across threads."""

    def __init__(self, per_second: float | None) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this caller may send its request."""
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


def validate_base_url(base_url: str) -> str:
    """Return the base URL without a trailing slash, or raise ConfigError if it is malformed."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(
            f"The API base URL {redact(base_url)!r} is not a valid http(s) URL without a query. "
            "Set it with --base-url, QUORUM_BASE_URL or [sources.quorum] base_url in "
            ".dlt/config.toml, for example https://www.quorum.us."
        )
    if parts.hostname == "quorum.us":
        raise ConfigError(
            "The API base URL must be https://www.quorum.us (with www): the bare host answers GET "
            "but not POST. Fix --base-url, QUORUM_BASE_URL or .dlt/config.toml."
        )
    return base_url.strip().rstrip("/")


def is_loopback_host(host: str | None) -> bool:
    """Whether `host` is this machine: `localhost`, 127.0.0.0/8 or ::1."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_secure_transport(base_url: str, *, allow_insecure_http: bool = False) -> None:
    """Refuse plain http to another machine: the API key would cross the network in clear.

    Raises:
        ConfigError: `base_url` is http:// to a host that is not loopback and
            `allow_insecure_http` is not set.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme != "http" or allow_insecure_http or is_loopback_host(parts.hostname):
        return
    raise ConfigError(
        f"The API base URL {redact(base_url)!r} uses plain http to {parts.hostname}, so the "
        "API key (which travels in every URL) would cross the network unencrypted; nothing "
        "was sent. Use https://, or, for a test server you trust on a private network, set "
        "allow_insecure_http = true under [sources.quorum] (QUORUM_ALLOW_INSECURE_HTTP=true). "
        "Plain http to this machine (localhost, 127.0.0.1, ::1) is always allowed."
    )


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class QuorumClient:
    """A small, thread-safe client for the two SendSMS endpoints the product uses.

    Args:
        base_url: scheme and host of the API, e.g. `https://www.quorum.us`.
        username: the Quorum API user.
        api_key: the Quorum API key; it is redacted from everything this client raises or logs.
        timeout: seconds for connect, read and write of one request.
        max_attempts: attempts per request, the first included, for transient failures.
        max_total_wait: seconds one request may spend in retries before giving up.
        backoff_initial: first backoff in seconds; it doubles per attempt, with full jitter.
        backoff_max: ceiling of one backoff.
        requests_per_second: optional ceiling on the request rate, shared by all threads.
        max_connections: size of the connection pool (the concurrency of a sync).
        on_retry: called with a short reason and the seconds to wait before each retry.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        api_key: str,
        *,
        timeout: float = settings.DEFAULT_SETTINGS.timeout,
        max_attempts: int = settings.DEFAULT_SETTINGS.max_attempts,
        max_total_wait: float = settings.DEFAULT_SETTINGS.max_total_wait,
        backoff_initial: float = settings.DEFAULT_SETTINGS.backoff_initial,
        backoff_max: float = settings.BACKOFF_MAX_SECONDS,
        requests_per_second: float | None = None,
        max_connections: int = 8,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        if not username or not api_key:
            raise ConfigError(
                "No Quorum credentials are configured. Set QUORUM_USERNAME and QUORUM_API_KEY "
                "(or [sources.quorum] username and api_key in .dlt/secrets.toml; see "
                ".dlt/secrets.toml.example)."
            )
        register_secret(api_key)
        install_log_redaction()
        self.base_url = validate_base_url(base_url)
        self._auth = {"username": username, "api_key": api_key}
        self.max_attempts = max_attempts
        self.max_total_wait = max_total_wait
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stats = ClientStats()
        self._on_retry = on_retry
        self._rate = RateLimiter(requests_per_second)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"Accept": "application/json", "User-Agent": "quorum-sms"},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> QuorumClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def get_json(self, path: str, params: Params, *, missing_ok: bool = False) -> Any:
        """GET `path` with `params` plus the credentials; return the decoded JSON body.

        The same as `get_decoded` with `decode_json`; see there.
        """
        return self.get_decoded(path, params, decode_json, missing_ok=missing_ok)

    def get_decoded(
        self, path: str, params: Params, decode: Callable[[bytes], T], *, missing_ok: bool = False
    ) -> T | None:
        """GET `path` with `params` plus the credentials; return `decode(body)`.

        Transient failures are retried with exponential backoff and full jitter, honouring
        `Retry-After`, within `max_attempts` and `max_total_wait`. A body orjson refuses but
        that is valid JSON (a lone surrogate) is parsed by `loads_tolerant`, not retried.

        `decode` runs inside the retry loop, so a body it refuses with `NotJsonError` is
        fetched again like any transient failure; it may hand the body to a worker process
        (see `without_key`).

        Args:
            path: the API path.
            params: query parameters (the credentials are added).
            decode: turns the body's bytes into the result.
            missing_ok: return None on 404 instead of raising (a detail that is gone).

        Raises:
            AuthError: 401 or 403 (never retried).
            ApiRequestError: 400 or another non-retryable status; quotes the API's message.
            ApiUnavailableError: the API kept failing past every retry.
        """
        retrying = Retrying(
            retry=retry_if_exception_type(TransientApiError),
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_total_wait),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._get_once, path, params, decode, missing_ok)
        except TransientApiError as error:
            raise ApiUnavailableError(
                f"The Quorum API kept failing on {path}: {error} (gave up after "
                f"{retrying.statistics.get('attempt_number', self.max_attempts)} attempts). "
                "Nothing from this run was loaded and the saved cursor is unchanged; run the "
                "sync again later, and check the API's status if it keeps happening."
            ) from None

    def get_sendsms(self, record_id: int) -> Any:
        """`GET /api/sendsms/{id}/`: the record as the API serves it, or None when it is gone."""
        return self.get_json(f"{settings.LIST_PATH}{int(record_id)}/", [], missing_ok=True)

    def _get_once(
        self, path: str, params: Params, decode: Callable[[bytes], T], missing_ok: bool = False
    ) -> T | None:
        self._rate.wait()
        self.stats.count_request()
        query: list[tuple[str, str | int | float | bool | None]] = [*params, *self._auth.items()]
        try:
            content = self._get_body(path, query, missing_ok)
        except httpx.TimeoutException:
            raise TransientApiError("the request timed out") from None
        except httpx.TransportError as error:
            raise TransientApiError(
                f"the connection failed ({type(error).__name__})"
            ) from None
        if content is None:
            return None
        try:
            return decode(content)
        except NotJsonError:
            raise TransientApiError("the response body was not valid JSON") from None

    def _get_body(
        self,
        path: str,
        query: list[tuple[str, str | int | float | bool | None]],
        missing_ok: bool,
    ) -> bytes | None:
        """The body of a successful GET, or None on a 404 that `missing_ok` allows.

        An httpx response is in a reference cycle (its stream points back at it), so a body
        it holds lives until Python's cycle collector runs, long after the page was used: a
        sync would keep dozens of ~1 MB bodies resident. Read through the stream, the body is
        only ever held here and freed when the caller is done with it.
        """
        with self._http.stream("GET", path, params=query) as response:
            if missing_ok and response.status_code == 404:
                return None
            if response.status_code >= 300:
                response.read()  # the error's message quotes the body
                self._raise_for_status(response, path)
            return b"".join(response.iter_bytes())

    def without_key(self, body: bytes) -> bytes | None:
        """A list body with the API key cut out of its `meta` block, or None if unsure.

        Tastypie repeats the request's query string, key included, in `meta.next` and
        `meta.previous`. A body handed to another process must not carry the key; only the
        `meta` part is scrubbed, so a record whose text happens to contain the key's
        characters is not altered. None when `meta` is not where a list body has it.
        """
        if body.startswith(b'{"meta":'):
            cut = body.find(b'"objects":')  # meta first: it ends where the objects begin
            meta_first = True
        else:
            cut = body.rfind(b'"meta":')  # objects first: meta is the tail
            meta_first = False
        if cut < 0:
            return None
        head, tail = body[:cut], body[cut:]
        meta = head if meta_first else tail
        key = self._auth["api_key"]
        for form in {key, quote_plus(key)}:
            meta = meta.replace(form.encode(), b"[redacted]")
        return meta + tail if meta_first else head + meta

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        if status < 300:
            return
        if status in (401, 403):
            raise AuthError(
                f"The Quorum API refused the credentials ({status} on {path}). Check "
                "QUORUM_USERNAME and QUORUM_API_KEY (or [sources.quorum] username and api_key in "
                ".dlt/secrets.toml): the key must belong to that user and have API access."
            )
        if status == 429 or status >= 500:
            raise TransientApiError(f"HTTP {status}", retry_after=_retry_after_seconds(response))
        error_class = ApiBadRequestError if status == 400 else ApiRequestError
        reason = _api_message(response)
        raise error_class(
            f"The Quorum API rejected the request to {path} with HTTP {status}: "
            f"{reason.rstrip('.')}. This is a bug or an unsupported setting; report it "
            "with this message.",
            api_message=reason,
        )

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max)
        seconds = float(backoff(state))
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, TransientApiError) and error.retry_after is not None:
            seconds = max(seconds, error.retry_after)
        return seconds

    def _before_sleep(self, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        reason = str(error) if error is not None else "unknown"
        self.stats.count_retry(reason)
        if self._on_retry is not None:
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            self._on_retry(reason, sleep)

    # -- sending -----------------------------------------------------------------------------

    def send_individual_sms(self, supporter_id: int, message: str) -> dict[str, Any]:
        """POST one text to one supporter and return the API's 201 body.

        Never retried: when the outcome is unknown (timeout, dropped connection, 5xx) the text
        may have gone out, and texting a supporter twice is worse than failing.

        Raises:
            AuthError: 401/403.
            ApiRequestError: 400 (the API's reason is quoted) or another unexpected status.
            SendOutcomeUnknownError: the outcome cannot be known.
        """
        self._rate.wait()
        self.stats.count_request()
        check = (
            "Check whether it went out with `quorum-sms sync` and a look at the newest texts "
            f"of supporter {supporter_id} before sending again."
        )
        try:
            response = self._http.post(
                settings.SEND_PATH,
                params=list(self._auth.items()),
                json={"supporter_id": supporter_id, "message": message},
            )
        except httpx.TransportError as error:
            raise SendOutcomeUnknownError(
                f"The send request failed before an answer arrived ({type(error).__name__}); "
                f"the text may or may not have been sent, so it was NOT retried. {check}"
            ) from None
        status = response.status_code
        if status >= 500:
            raise SendOutcomeUnknownError(
                f"The Quorum API answered HTTP {status} ({_api_message(response)}); the text may "
                f"or may not have been sent, so it was NOT retried. {check}"
            )
        if status in (400, 401, 403, 404) or status >= 300:
            if status in (401, 403):
                self._raise_for_status(response, settings.SEND_PATH)
            reason = _api_message(response)
            raise ApiRequestError(
                f"The Quorum API refused the text (HTTP {status}): {reason.rstrip('.')}. "
                "Nothing was sent; fix the supporter id or the message and try again.",
                api_message=reason,
            )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise SendOutcomeUnknownError(
                f"The API accepted the text (HTTP {status}) but its answer was not JSON. {check}"
            ) from None
        if not isinstance(body, dict):
            raise SendOutcomeUnknownError(f"The API's answer was not an object. {check}")
        return body


def _api_message(response: httpx.Response) -> str:
    """The API's own error text (`error` or `error_message`), or a short excerpt of the body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "error_message"):
            if isinstance(body.get(key), str):
                return redact(body[key])
    text = response.text.strip()
    if not text:
        return "an empty body"
    return redact(" ".join(text.split())[:200])

"""Text one supporter: validate, count the segments, POST once (never retried), report.

`plan_send` checks everything that can be checked without the network, so `--dry-run`
sends no request at all; `send` then makes exactly one POST through
`QuorumClient.send_individual_sms`, which never retries: when the outcome is unknown (a
timeout, a 5xx) the text may have gone out, and texting a supporter twice is worse than
failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config import load_sync_config
from pipelines.errors import ConfigError, SendOutcomeUnknownError
from pipelines.ops.segments import SegmentInfo, count_segments
from pipelines.quorum.client import QuorumClient

#: A longer text is refused before sending: 10 concatenated segments is what carriers
#: reliably deliver, and a longer one is almost surely a mistake (a pasted document).
MAX_SEGMENTS = 10


@dataclass(frozen=True)
class SendPlan:
    """A validated text, ready to send."""

    supporter_id: int
    message: str
    segments: SegmentInfo
    base_url: str


@dataclass(frozen=True)
class SendResult:
    """What the API answered (201)."""

    plan: SendPlan
    record_id: Any
    from_number: str | None
    to_number: str | None
    segments_billed: Any


def plan_send(supporter_id: int, message: str, *, base_url: str | None = None) -> SendPlan:
    """Validate a send without any request.

    Raises:
        ConfigError: a bad supporter id or message, or bad settings.
    """
    if supporter_id <= 0:
        raise ConfigError(
            f"--supporter-id must be a positive integer (the number in the supporter's "
            f"/api/newsupporter/N/ URI), not {supporter_id}. Nothing was sent."
        )
    if not message.strip():
        raise ConfigError("The message is empty; give the text with --message. Nothing was sent.")
    segments = count_segments(message)
    if segments.segments > MAX_SEGMENTS:
        raise ConfigError(
            f"The message would be billed as {segments.describe()}, more than {MAX_SEGMENTS} "
            "segments; shorten it. Nothing was sent."
        )
    config = load_sync_config(base_url=base_url, inspect_database=False)
    return SendPlan(supporter_id, message, segments, config.source.base_url)


def send(plan: SendPlan, *, timeout: float | None = None) -> SendResult:
    """Send the planned text with exactly one POST.

    Raises:
        AuthError: the credentials were refused (nothing was sent).
        ApiRequestError: the API refused the text (400, its reason quoted; nothing was sent).
        SendOutcomeUnknownError: timeout, dropped connection or 5xx: it may have been sent,
            and it was not retried.
    """
    config = load_sync_config(base_url=plan.base_url, inspect_database=False)
    with QuorumClient(
        config.source.base_url,
        config.source.username or "",
        config.source.api_key or "",
        timeout=timeout if timeout is not None else config.source.timeout,
        max_attempts=1,
    ) as client:
        body = client.send_individual_sms(plan.supporter_id, plan.message)
    if body.get("success") is False or "id" not in body:
        raise SendOutcomeUnknownError(
            "The API answered 201 but without success and a record id, so whether the text "
            "went out is unknown; it was NOT retried. Run `quorum-sms sync` and look at the "
            f"newest texts of supporter {plan.supporter_id} before sending again."
        )
    return SendResult(
        plan=plan,
        record_id=body.get("id"),
        from_number=body.get("from"),
        to_number=body.get("to"),
        segments_billed=body.get("num_segments"),
    )

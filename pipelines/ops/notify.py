"""The optional failure webhook: a Slack-compatible `{"text": ...}` POST.

The webhook URL itself is a secret (whoever has a Slack webhook URL can post to the
channel), so it appears in no message; the text is redacted of the API key before it leaves.
"""

from __future__ import annotations

import httpx

from pipelines.errors import NotifyError
from pipelines.redaction import redact

TIMEOUT_SECONDS = 10.0
MAX_TEXT_CHARS = 3500  # Slack shows ~4000 characters of a message; keep room for the title


def post_webhook(url: str, text: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
    """POST `{"text": text}` to the webhook once (a missed alert beats a duplicated one).

    Raises:
        NotifyError: the receiver could not be reached or answered an error status.
    """
    body = {"text": redact(text)[:MAX_TEXT_CHARS]}
    try:
        response = httpx.post(url, json=body, timeout=timeout)
    except httpx.HTTPError as error:
        raise NotifyError(
            f"The failure webhook could not be reached ({type(error).__name__}); the failure is "
            "in this output and the run history only. Check QUORUM_WEBHOOK_URL / "
            "[quorum_sms] webhook_url."
        ) from None
    if response.status_code >= 300:
        raise NotifyError(
            f"The failure webhook answered HTTP {response.status_code}; the failure is in this "
            "output and the run history only. Check QUORUM_WEBHOOK_URL / [quorum_sms] "
            "webhook_url."
        )

"""Keeping secrets out of text: the API key travels in every URL, so any text may hold it.

`redact` masks every registered secret (the API key, the personal-data hash key) and every
`api_key=` query value; `install_log_redaction` applies it to the loggers of the HTTP stack.
The client registers the key; the run history, the failure summary and the webhook redact
what they write.
"""

from __future__ import annotations

import logging
import re
import threading

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"'#]+", re.IGNORECASE)


def register_secret(value: str) -> None:
    """Remember a secret so that `redact` masks it wherever it appears."""
    if value:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Mask every registered secret and every `api_key=` query value in `text`."""
    text = _KEY_IN_QUERY.sub(r"\1***", text)
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """Logging filter that redacts credentials from every record that passes through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets masked; never drop the record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Redact the loggers of the HTTP stack, which log full request URLs at INFO level."""
    for name in ("httpx", "httpcore", "dlt", "urllib3"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
    # httpx logs "HTTP Request: GET <url with api_key>" at INFO: keep it out of cron mails.
    logging.getLogger("httpx").setLevel(logging.WARNING)

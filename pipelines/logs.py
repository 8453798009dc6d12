"""dlt's log lines as a terminal and a cron mail should show them: one line per event.

dlt logs a failed load job twice, each time with the whole Python traceback (an ERROR with the
exception attached, then a WARNING whose message is the traceback as text): ~90 lines per
attempt, ~260 for one DuckDB out-of-memory failure, before the run's own one-paragraph error.
What a person needs of it is the database's own words, the traceback's last exception line.
"""

from __future__ import annotations

import logging
import re

_TRACEBACK = "Traceback (most recent call last)"
#: A traceback's exception line: `package.SomeError: the message`.
_EXCEPTION_LINE = re.compile(r"^[\w.]+(?:Error|Exception): (.+)$")


def exception_words(text: str) -> str | None:
    """The message of the last exception line of a formatted traceback, if any."""
    lines = (_EXCEPTION_LINE.match(line.strip()) for line in text.splitlines())
    found = [match.group(1) for match in lines if match]
    return found[-1] if found else None


class OneLineFilter(logging.Filter):
    """Shortens a record carrying a traceback (attached or in its text) to one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        message = record.getMessage()
        words: str | None = None
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            text = str(error).strip()
            words = text.splitlines()[0] if text else type(error).__name__
            record.exc_info, record.exc_text = None, None
        if _TRACEBACK in message:
            words = exception_words(message) or words
            message = message.split(_TRACEBACK)[0].rstrip(" :")
        elif words is None:
            return True
        record.msg, record.args = f"{message} ({words})" if words else message, None
        return True


def install_one_line_dlt_errors() -> None:
    """Put `OneLineFilter` on dlt's logger (once)."""
    logger = logging.getLogger("dlt")
    if not any(isinstance(f, OneLineFilter) for f in logger.filters):
        logger.addFilter(OneLineFilter())

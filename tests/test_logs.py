"""dlt's failure logs shortened to one line each (the traceback's last words kept)."""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Iterator

import pytest

from pipelines.logs import OneLineFilter, install_one_line_dlt_errors


@pytest.fixture
def dlt_log() -> Iterator[io.StringIO]:
    """dlt's logger, shortened as the command line installs it, into a string."""
    logger = logging.getLogger("dlt")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    filters, level = list(logger.filters), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    install_one_line_dlt_errors()
    install_one_line_dlt_errors()  # once only
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.filters[:] = filters
        logger.setLevel(level)


def _failure() -> BaseException:
    try:
        try:
            raise MemoryError("Out of Memory Error: no allocation\n\nPossible solutions:")
        except MemoryError as inner:
            words = "DatabaseTransientException: Out of Memory Error: no block"
            raise RuntimeError(words) from inner
    except RuntimeError as error:
        return error


def test_a_logged_exception_becomes_one_line_with_its_words(dlt_log: io.StringIO) -> None:
    error = _failure()
    logging.getLogger("dlt").error("Transient exception in job %s", "sendsms.sql",
                                   exc_info=(type(error), error, error.__traceback__))
    assert dlt_log.getvalue() == (
        "ERROR|Transient exception in job sendsms.sql "
        "(DatabaseTransientException: Out of Memory Error: no block)\n"
    )


def test_a_traceback_in_the_text_becomes_its_last_exception_line(dlt_log: io.StringIO) -> None:
    error = _failure()
    text = "".join(traceback.format_exception(error))
    assert text.count("Traceback (most recent call last)") == 2
    logging.getLogger("dlt").warning("Job for sendsms.sql retried in load 17 with message %s", text)
    assert dlt_log.getvalue() == (
        "WARNING|Job for sendsms.sql retried in load 17 with message "
        "(DatabaseTransientException: Out of Memory Error: no block)\n"
    )


def test_other_records_pass_unchanged(dlt_log: io.StringIO) -> None:
    logging.getLogger("dlt").warning("Package %s was not fully loaded", "17")
    assert dlt_log.getvalue() == "WARNING|Package 17 was not fully loaded\n"
    assert any(isinstance(f, OneLineFilter) for f in logging.getLogger("dlt").filters)
    assert sum(isinstance(f, OneLineFilter) for f in logging.getLogger("dlt").filters) == 1

"""`BackgroundStep`: one call in a thread, collected by `wait()` (result or error)."""

from __future__ import annotations

import threading

import pytest

from pipelines.background import BackgroundStep


def test_wait_returns_the_result_and_nothing_runs_after():
    step: BackgroundStep[int] = BackgroundStep("test-step")
    assert step.wait() is None and not step.running
    step.start(lambda: 41 + 1)
    assert step.running
    assert step.wait() == 42
    assert not step.running and step.wait() is None


def test_the_calls_error_is_raised_by_wait_once():
    step: BackgroundStep[int] = BackgroundStep("test-step")

    def fail() -> int:
        raise ValueError("the load failed")

    step.start(fail)
    with pytest.raises(ValueError, match="the load failed"):
        step.wait()
    assert step.wait() is None  # collected: a later wait does not raise it again


def test_close_waits_for_the_call_and_returns_its_error():
    release = threading.Event()
    finished = threading.Event()
    step: BackgroundStep[None] = BackgroundStep("test-step")

    def slow_failure() -> None:
        release.wait(timeout=30)
        finished.set()
        raise RuntimeError("late failure")

    step.start(slow_failure)
    # close() must block until the call has finished, not return while it still runs
    threading.Thread(target=release.set).start()
    error = step.close()
    assert finished.is_set()
    assert isinstance(error, RuntimeError)
    assert step.close() is None


def test_a_second_start_before_wait_is_refused():
    release = threading.Event()
    step: BackgroundStep[None] = BackgroundStep("test-step")

    def hold() -> None:
        release.wait(timeout=30)

    step.start(hold)
    try:
        with pytest.raises(RuntimeError, match="still running"):
            step.start(lambda: None)
    finally:
        release.set()
        step.wait()

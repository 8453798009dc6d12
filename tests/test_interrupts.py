"""SIGINT and SIGTERM become one `Interrupted` per command; the previous handlers come back."""

from __future__ import annotations

import signal

import pytest

from pipelines.interrupts import Interrupted, handled, interruption, received


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_raises_interrupted_once_and_handlers_are_restored(signum, code):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as caught, handled():
        try:
            signal.raise_signal(signum)
        finally:
            # the cleanup after an interruption is not cut short by a second signal
            signal.raise_signal(signum)
            assert received() == signum
    assert caught.value.exit_code == code and caught.value.signal_name in str(caught.value)
    assert {s: signal.getsignal(s) for s in before} == before
    assert received() is None


def test_only_signals_and_ctrl_c_count_as_interruptions():
    with handled():
        assert interruption(RuntimeError("a failure of its own")) is None
        stopped = interruption(KeyboardInterrupt())
    assert stopped is not None and stopped.exit_code == 130

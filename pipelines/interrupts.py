"""Ctrl-C (SIGINT) and SIGTERM end a command the same way: an `Interrupted` exception.

A signal can land anywhere: in Python code (the handler raises `Interrupted`), inside dlt's
normalize or load (dlt swaps in its own handlers there and stops its job pools gracefully), or
inside a DuckDB query (DuckDB polls SIGINT itself, cancels the query and raises an error of its
own; the Python handler then never runs). So the handlers are not the only witness: CPython
also writes every signal's number to a wakeup pipe, which this module reads, and
`received()` answers "did a signal arrive during this command?" whichever code swallowed it.
A SIGTERM is turned into a simulated SIGINT as well, because that is the only signal a
running DuckDB query notices.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: The signals that stop a command cleanly, and the shell's exit code for each (128 + number).
HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The command was stopped by a signal; `exit_code` is 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {self.signal_name}")


class _State:
    """What the handlers, the pipe reader and the main thread share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: int | None = None
        self.raised = False
        self.read_fd: int | None = None


_state = _State()


def received() -> int | None:
    """The first signal that arrived in the current `handled()` block, or None.

    Reads the wakeup pipe first, so a signal that DuckDB or dlt consumed is seen even when the
    reader thread has not run yet.
    """
    _drain()
    return _state.first


def raise_if_received() -> None:
    """Raise `Interrupted` when a signal arrived that no code turned into an exception.

    dlt's normalize and load steps take SIGINT/SIGTERM themselves, finish their job pools and
    return normally; a command checks this between its steps so that the stop still happens.

    Raises:
        Interrupted: a signal arrived in this `handled()` block.
    """
    signum = received()
    if signum is not None:
        with _state.lock:
            _state.raised = True
        raise Interrupted(signum)


def interruption(error: BaseException) -> Interrupted | None:
    """The `Interrupted` this error stands for: itself, or any error raised after a signal."""
    if isinstance(error, Interrupted):
        return error
    signum = received()
    if signum is not None:
        return Interrupted(signum)
    if isinstance(error, KeyboardInterrupt):
        return Interrupted(signal.SIGINT)
    return None


def _note(signum: int) -> None:
    with _state.lock:
        if _state.first is None and signum in HANDLED:
            _state.first = signum


def _drain(*, wake_duckdb: bool = False) -> bool:
    """Read pending signal numbers from the wakeup pipe; True when it was closed."""
    fd = _state.read_fd
    if fd is None:
        return True
    while True:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not data:
            return True
        for signum in data:
            _note(signum)
            if wake_duckdb and signum == signal.SIGTERM:
                # DuckDB only checks SIGINT while a query runs; make it see one
                _thread.interrupt_main(signal.SIGINT)


def _watch(fd: int) -> None:
    while True:
        try:
            select.select([fd], [], [])
        except (OSError, ValueError):
            return
        if _drain(wake_duckdb=True):
            return


def _handler(signum: int, _frame: FrameType | None) -> None:
    _note(signum)
    with _state.lock:
        if _state.raised:
            return  # one interruption per command: the cleanup after it must run to its end
        _state.raised = True
        first = _state.first or signum
    raise Interrupted(first)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Within this block, SIGINT and SIGTERM raise `Interrupted` (main thread only).

    Outside the main thread (an embedding application's worker) nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    _state.first, _state.raised, _state.read_fd = None, False, read_fd
    watcher = threading.Thread(target=_watch, args=(read_fd,), name="signals", daemon=True)
    watcher.start()
    for signum in HANDLED:
        signal.signal(signum, _handler)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)  # the watcher sees end of file and returns
        watcher.join(timeout=5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.read_fd = None
        _state.first = None  # a later command in this process starts with a clean slate
        os.close(read_fd)

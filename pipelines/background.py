"""One step of work run in a thread beside the main thread, at most one at a time.

The sync loads a finished window while it reads the next: the load is mostly DuckDB (or the
PostgreSQL server) working outside the GIL, the read is mostly Python, so on two cores the two
overlap. `BackgroundStep` is the little that needs: start one call, wait for it (its error is
raised in the waiting thread, with its traceback), and never leave it running behind a
failure or a Ctrl-C of the main thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackgroundStep(Generic[T]):
    """At most one call running in a named thread; `wait()` collects it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._result: T | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        """Whether a call was started and not yet collected by `wait()`."""
        return self._thread is not None

    def start(self, call: Callable[[], T]) -> None:
        """Run `call` in a new thread.

        Raises:
            RuntimeError: the last call was not collected yet.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: the last call is still running, wait() for it")
        self._result, self._error = None, None

        def run() -> None:
            try:
                self._result = call()
            except BaseException as error:
                self._error = error

        # not a daemon: an interpreter that exits (after an error in the main thread) waits
        # for the call instead of cutting it off halfway through a transaction
        self._thread = threading.Thread(target=run, name=self.name)
        self._thread.start()

    def wait(self) -> T | None:
        """The running call's result (None when none runs); its error is raised here.

        Raises:
            BaseException: whatever the call raised.
        """
        error = self.close()
        if error is not None:
            raise error
        result, self._result = self._result, None
        return result

    def close(self) -> BaseException | None:
        """Wait for a running call and return its error, if any, without raising it: after a
        failure of the caller's own, the call must still finish before the caller goes on.
        A Ctrl-C that arrives while waiting is raised once the call has finished."""
        thread = self._thread
        if thread is None:
            return None
        self._join(thread)
        self._thread = None
        error, self._error = self._error, None
        return error

    @staticmethod
    def _join(thread: threading.Thread) -> None:
        # A Ctrl-C raises in the main thread while it waits (only the first: see
        # `interrupts`); the call is still running, so the wait goes on before it propagates
        try:
            thread.join()
        except BaseException:
            thread.join()
            raise

"""Copy the published analytics file in the background while the night's sync and build run.

An incremental publish starts from a copy of the previous published file (readers may hold
that file open, so it is never changed in place). At 10M records the file is ~600 MB, and
copying and syncing it to disk took 0.4 s of the nightly's 1 s publish, work that does not
depend on the night's data at all. So the nightly starts the copy, in a thread, as soon as it
holds the warehouse lock; the publish then only applies the build's changes to it.

The copy sits in a staging folder like a publish's own (same name prefix, private, `flock`ed
while in use), so `remove_stale_temporaries` clears what a killed run left and leaves a
running one alone. The publish uses the copy only when the published file is still exactly
the one copied (inode, size and modification time, the same identity the incremental publish
checks); otherwise, or when the copy failed, it copies the file itself as before. Every way
out of the run removes the folder (`close`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
from pathlib import Path

from pipelines.private_files import FILE_MODE

FileIdentity = tuple[int, int, int]


def staging_prefix(target: Path) -> str:
    """Name prefix of the staging folders that publishes to `target` create beside it."""
    return f".{target.name}.publishing-"


def identity(path: Path) -> FileIdentity:
    """The (inode, size, mtime_ns) that says a file was not replaced or written since."""
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class PublishedCopy:
    """A copy of the published file made in a background thread; see the module docstring."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.used = False
        self._copied: FileIdentity | None = None
        self._error: BaseException | None = None
        self._folder = Path(
            tempfile.mkdtemp(prefix=staging_prefix(target), dir=target.parent)
        )
        self._descriptor = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._descriptor, fcntl.LOCK_EX)
        self.path = self._folder / target.name
        # a daemon: a process stopped in the middle never waits for a copy nobody will use
        self._thread = threading.Thread(target=self._copy, name="publish-prefetch", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, target: Path) -> PublishedCopy | None:
        """Start copying `target`; None when there is no published file (or no folder for it)."""
        if not target.is_file():
            return None
        try:
            return cls(target)
        except OSError:
            return None  # the publish copies the file itself and reports any real problem

    def _copy(self) -> None:
        try:
            before = identity(self.target)
            shutil.copyfile(self.target, self.path)
            os.chmod(self.path, FILE_MODE)
            descriptor = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            if identity(self.target) == before:
                self._copied = before
        except BaseException as error:  # reported as "not usable"; the publish copies instead
            self._error = error

    def take(self, expected: FileIdentity) -> Path | None:
        """Wait for the copy; its path when it is a copy of the file `expected` identifies.

        The caller moves the file away (it then belongs to the caller); None means the copy
        is not usable and the caller copies the published file itself.
        """
        self._thread.join()
        # the file had `expected`'s identity before and after the copy: the copy is of it
        if self._error is not None or self._copied != expected:
            return None
        self.used = True
        return self.path

    def close(self) -> None:
        """Wait for the copy and remove it with its folder, used or not."""
        self._thread.join()
        shutil.rmtree(self._folder, ignore_errors=True)
        os.close(self._descriptor)

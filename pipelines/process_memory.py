"""Allocator settings that let a long sync give freed memory back to the OS.

A sync's memory churns: every page is a ~1 MB body, a few MB of decoded records and a few
Arrow buffers, freed a moment later, by several threads at once. With the allocators'
defaults most of that stays resident after it is freed (measured in docs/performance.md):

* glibc's malloc gives each thread its own arena (up to 8 per core) and raises its mmap
  threshold to 32 MB after the first large free, so 1 MB bodies land in the arenas and their
  freed pages stay there, fragmented, never returned;
* pyarrow's default pool (mimalloc or jemalloc) keeps freed segments cached per thread.

`tune_process_memory` is called once at process start, before pyarrow is imported: blocks
of 128 KiB and more are mapped and unmapped on their own (returned at once), two arenas
serve every thread, and Arrow allocates through the same malloc. A setting already present
in the environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `ARROW_DEFAULT_MEMORY_POOL`)
is the user's and is left alone. On a C library other than glibc nothing is changed.

`skip_unused_imports`, called beside it, keeps out modules that libraries import at start but
this program never runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Blocks from this size up are mapped on their own and unmapped when freed. Fixing it also
#: stops glibc raising it after each large free (its dynamic threshold, up to 32 MB).
MMAP_THRESHOLD_BYTES = 128 * 1024
#: Arenas for all threads: the slice threads, dlt's and DuckDB's contend little for malloc.
ARENA_MAX = 2
#: Imported by a library at start, never used here. `import httpx` imports its own command
#: line, `httpx._main`, and with it rich, click and pygments (4 MB resident, measured); httpx
#: falls back to a stub `httpx.main` when that import fails, as it does for a None entry.
UNUSED_MODULES = ("httpx._main",)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl and others have no mallopt/malloc_trim with these meanings
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


def tune_process_memory() -> None:
    """Make this process (and the processes it spawns) return freed memory to the OS.

    Call it first thing in an entry point: the Arrow pool is chosen when pyarrow is first
    used, and glibc's arena limit applies to arenas created after it.
    """
    # the spawned decode workers inherit it through the environment
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if "pyarrow" in sys.modules:
        logger.debug("pyarrow was imported before tune_process_memory: its pool is unchanged")
    libc = _glibc()
    if libc is None:
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD_BYTES)
    if "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
        os.environ["MALLOC_ARENA_MAX"] = str(ARENA_MAX)


def skip_unused_imports() -> None:
    """Make the imports of `UNUSED_MODULES` fail, so their memory is never taken.

    Call it before the libraries that import them are imported; a module already imported
    is left alone.
    """
    for name in UNUSED_MODULES:
        # a None entry makes `import name` raise ImportError (Python's documented behaviour)
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def release_free_memory() -> None:
    """Return the free pages inside malloc's arenas to the OS (`malloc_trim`); glibc only.

    Worth its few milliseconds between phases that free much and allocate differently.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
